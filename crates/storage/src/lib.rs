//! Durable state and the shared cache of reco.
//!
//! # The key design decision: storage is never on the hot path
//!
//! The engine ranks from memory; this crate keeps what the engine holds durable and shared. A
//! write is acknowledged only once it is committed here, and start-up streams everything back
//! into the engine ([`Store::load_tenant`]). Several servers sharing one PostgreSQL database stay
//! in step through the [`ChangeFeed`]. Redis ([`RedisCache`]) is a cache only: when it is down,
//! calls fail fast and reco serves from memory.
//!
//! Two backends sit behind one interface, [`Store`]: PostgreSQL with pgvector (which can also
//! rank, for the `database` mode that reproduces the reference design) and an embedded SQLite
//! file, the default when no database URL is given. Settings default to the reference design's
//! (a pool of 100, 5 s acquire timeout, 10 s statements; Redis 50 connections, 3 s, 3 retries).

mod error;
mod feed;
mod group_commit;
mod images;
mod load;
mod model;
mod notice;
mod postgres;
mod redis;
mod rows;
mod settings;
mod sqlite;
mod store;
mod trained;

pub use crate::redis::{RedisCache, Tier};
pub use error::{Result, StorageError};
pub use feed::ChangeFeed;
pub use images::ImageFiles;
pub use model::{
    DbSearch, LoadSink, Loaded, PoolStats, Recorded, TenantData, TenantRecord, TrainingLock,
};
pub use notice::Change;
pub use postgres::PgStore;
pub use settings::{PostgresSettings, RedisSettings, SqliteSettings};
pub use sqlite::SqliteStore;
pub use store::Store;
