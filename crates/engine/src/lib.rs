//! The ranking core of reco: per-tenant vector indexes in memory, and every recommendation mode
//! on top of them. It does no I/O, so nothing in it fails for I/O reasons.
//!
//! # The key design decision: immutable snapshots, swapped
//!
//! Each tenant's entities and interactions are immutable snapshots behind an [`arc_swap`]
//! pointer. A reader loads the current snapshot and ranks against it without taking a lock; a
//! writer copies the snapshot (cheaply: rows sit in `Arc`-shared chunks and the maps are
//! persistent), applies a whole batch to the copy, and swaps it in. So a reader never sees half a
//! batch and never waits for a writer, and every snapshot carries a generation that makes the
//! cache's keys exact: no cached answer can outlive the data it came from.
//!
//! # Layout
//!
//! [`Engine`] is a thin facade over one module per feature (the `engine` module's own docs list
//! them); what a question reads of a snapshot lives in `index`, and the one check of a write in
//! [`CheckedEntities`].
//!
//! # Exact and approximate search
//!
//! A tenant past a few thousand entities also gets an HNSW graph of its own making (the
//! `reco-hnsw` crate, which knows nothing of the engine), shared by its snapshots. The graph
//! holds links only and scores the nodes it walks from the reader's snapshot's int8 codes. It
//! only proposes candidates; each is checked
//! against the reader's snapshot and the filter, and scored exactly from the f32 row, so scores
//! are always exact and only recall is approximate (0.99 or more at the default settings).
//! `SearchOptions::exact`, or `SearchConfig::exact` for every query, scans every candidate.
//!
//! Where an approximate search scans instead (a tenant without a graph, a filter too selective
//! for it), it scans int8 codes of the rows first, a quarter of the bytes, and rescores the best
//! few in f32. Exact questions about one snapshot can be answered together
//! ([`Prepared::answer_all`]): one pass over the rows, a matrix product per chunk, then the same
//! exact rescoring, so the answers are those of each question alone.
//!
//! # Using it
//!
//! ```
//! use reco_engine::{
//!     Engine, EngineConfig, EntityId, Metric, NewEntity, SearchOptions, TenantName, TenantSpec,
//! };
//!
//! let engine = Engine::new(EngineConfig::default())?;
//! let shop = TenantName::parse("shop")?;
//! engine.create_tenant(shop.clone(), TenantSpec::new(2, Metric::Cosine)?)?;
//! let entity = |id: &str, vector: Vec<f32>| NewEntity {
//!     id: EntityId::parse(id).unwrap(),
//!     vector,
//!     category: None,
//!     tags: Vec::new(),
//!     attributes: None,
//! };
//! engine.upsert(&shop, vec![entity("a", vec![1.0, 0.0]), entity("b", vec![0.9, 0.1])])?;
//! let answer = engine.similar(&shop, &EntityId::parse("a")?, &SearchOptions::top(5))?;
//! assert_eq!(answer.ranking.results[0].id.as_str(), "b");
//! # Ok::<(), reco_engine::EngineError>(())
//! ```

#![warn(missing_docs)]

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

mod cache;
mod checked;
mod config;
pub mod distance;
mod engine;
mod error;
pub mod evaluate;
mod index;
mod interactions;
mod interrupt;
mod mmr;
mod model;
mod query;
mod stamp;
mod topk;

pub use cache::CacheTier;
pub use checked::{CheckedEntities, CheckedInteractions, MAX_FUTURE, MAX_WEIGHT};
pub use config::{
    CacheConfig, Clock, DEFAULT_WORK_BUDGET, EngineConfig, KindWeights, ManualClock, SearchConfig,
    SystemClock,
};
pub use engine::{
    Applied, Cost, CostPart, Created, Engine, Installed, Learning, ModelInfo, ModelParts, Prepared,
    StagedTenant, TenantImage,
};
pub use error::{EngineError, Result};
pub use index::{Filter, LADDER, RecallEstimate};
pub use interrupt::Interrupt;
pub use model::{
    Embedding, EntityId, EntityView, HistoryItem, Interaction, InteractionId, InteractionKind,
    MAX_DIMENSION, MAX_ID_BYTES, Metric, Millis, NewEntity, Scored, TenantInfo, TenantName,
    TenantSpec, UserHistory, UserId,
};
pub use query::{
    Answer, CacheStatus, Example, ExampleStrategy, ExampleTarget, MAX_K, MAX_OFFSET, Ranking,
    RecommendRequest, SearchOptions, Space, Strategy, TrendingQuery, UserStrategy, Window,
};
pub use reco_hnsw::{GraphParts, SegmentParts};
/// How a collaborative model is trained (see [`Engine::train_collaborative`]).
pub use reco_learn::Params as LearnParams;
/// Which collaborative model a training makes (EASE for small catalogues, iALS beyond).
pub use reco_learn::{Algorithm, EASE_MAX_ITEMS};
pub use stamp::{ChangeId, Lineage, Stamp};
