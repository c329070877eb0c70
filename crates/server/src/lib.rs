//! The HTTP service of reco: a thin actix-web layer over the engine (which ranks) and storage
//! (which keeps data durable and shared).
//!
//! # The key design decision: the engine answers, storage remembers
//!
//! A read is answered from the engine's memory and never waits on PostgreSQL or Redis. A write
//! goes to storage first and reaches the engine only after it is committed, so everything the
//! service shows was acknowledged durable, and a write that storage refuses (or cannot take, when
//! it is down: 503 with `Retry-After`) changes nothing. At start-up the engine is loaded from
//! storage (or, for a tenant whose image in the data folder is of the version storage holds,
//! from that image, graph and all), and other servers' writes arrive through the change feed.
//!
//! Only this crate knows HTTP and JSON ([`api`] converts), and [`error::ApiError`] is the one
//! place errors become status codes.

pub mod admission;
mod answers;
pub mod api;
mod applier;
pub mod attributes;
mod background;
mod breadth;
pub mod docs;
pub mod error;
mod evaluation;
mod health;
pub mod images;
pub mod metrics;
mod progress;
mod rankers;
mod routes;
pub mod settings;
mod startup;
pub mod state;
pub mod sync;
pub mod telemetry;
mod ui;

pub use settings::{RankingMode, ServeArgs, Settings, SettingsError};
pub use startup::{Application, StartupError};
