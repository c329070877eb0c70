//! The types both backends and the facade share: what a load brings back, the sink it goes
//! to, a tenant's record, pool statistics, and the database ranking mode's question. They live
//! here, apart from [`crate::Store`], so that the backends depend on this module and not on the
//! facade that depends on them.

use reco_engine::{
    ChangeId, EntityId, Filter, Interaction, InteractionId, Learning, Lineage, NewEntity, Stamp,
    TenantSpec,
};
use std::num::NonZeroU32;

use crate::error::Result;

/// A top-k question for the database ranking mode.
#[derive(Debug, Clone)]
pub struct DbSearch<'a> {
    /// The query vector, of the tenant's dimension.
    pub vector: &'a [f32],
    /// How many results.
    pub k: usize,
    /// How many of the best to skip.
    pub offset: usize,
    /// Category, tags and excluded ids.
    pub filter: &'a Filter,
    /// More ids to leave out (the query's own entity, examples, what a user has seen).
    pub exclude: &'a [EntityId],
    /// A least score (cosine, dot) or a greatest distance (euclidean).
    pub score_threshold: Option<f32>,
    /// Scan every row instead of using the HNSW index.
    pub exact: bool,
}

/// The state of a connection pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Requests waiting for a connection.
    pub waiting: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

/// How much a load brought back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loaded {
    /// The tenant's record at the moment read.
    pub record: TenantRecord,
    /// Entities read.
    pub entities: u64,
    /// Interactions read.
    pub interactions: u64,
}

/// A tenant as storage holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantRecord {
    /// Its dimension and metric.
    pub spec: TenantSpec,
    /// How its collaborative model is trained.
    pub learning: Learning,
    /// Its own request budget, requests per second; `None` for the server's default.
    pub rate_limit: Option<NonZeroU32>,
    /// The random name of this incarnation of the tenant.
    pub lineage: Lineage,
    /// How many changes it has had: the stamp of the last one.
    pub version: Stamp,
}

/// Held while this server trains a tenant's model: with PostgreSQL, a transaction-scoped
/// advisory lock, so servers sharing the database train a tenant one at a time (dropping it
/// ends the transaction and frees the lock, also when the process dies); with SQLite, whose
/// file one server owns, nothing more than the server's own guard.
#[derive(Debug)]
pub struct TrainingLock {
    pub(crate) _held: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

/// A tenant's whole data as storage holds it at one moment: its record, every entity and
/// every interaction whatever its age (see [`Store::read_tenant`]).
#[derive(Debug, Clone)]
pub struct TenantData {
    pub record: TenantRecord,
    pub entities: Vec<NewEntity>,
    pub interactions: Vec<Interaction>,
}

/// Where [`Store::load_tenant`] puts what it reads.
pub trait LoadSink {
    /// The tenant's record, before any row.
    fn tenant(&mut self, record: TenantRecord) -> Result<()>;
    /// A batch of entities.
    fn entities(&mut self, batch: Vec<NewEntity>) -> Result<()>;
    /// A batch of interactions, in the order they were recorded.
    fn interactions(&mut self, batch: Vec<Interaction>) -> Result<()>;
    /// How many interactions the tenant holds before the window loaded (told once, after the
    /// record): not read, but part of the tenant's count.
    fn older_interactions(&mut self, count: u64) -> Result<()> {
        let _ = count;
        Ok(())
    }
    /// Whether the entities are wanted, asked after the record: a sink that holds them as of
    /// the record's version already (from a tenant image) says no, and they are not read.
    fn wants_entities(&self) -> bool {
        true
    }
    /// The stamp of the change the sink's entities are at, when it holds them from an image
    /// older than the record: storage then tells it what changed since (`caught_up`).
    fn catch_up_from(&self) -> Option<Stamp> {
        None
    }
    /// The entities written after `catch_up_from`'s stamp, and the ids of every entity the
    /// tenant holds now.
    fn caught_up(&mut self, changed: Vec<NewEntity>, present: Vec<EntityId>) -> Result<()> {
        let _ = (changed, present);
        Ok(())
    }
}

/// An interaction as storage writes it: with the id its client gave, if any.
pub(crate) type KeyedInteraction = (Interaction, Option<InteractionId>);

/// What storage made of a batch of interactions: the change's stamp, and which of them it
/// recorded (`fresh[i]`); the others carry an id the tenant already held, or an id given
/// earlier in the same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub change: ChangeId,
    pub fresh: Vec<bool>,
}

impl Recorded {
    /// How many of the batch were held already.
    pub fn duplicates(&self) -> usize {
        self.fresh.iter().filter(|fresh| !**fresh).count()
    }
}
