//! The one error type of the engine.
//!
//! Every variant is a caller mistake or a missing object: the engine does no I/O, so nothing here
//! can be transient.

use crate::model::{Metric, TenantName};
use crate::stamp::Stamp;

/// Why an engine operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A tenant name, entity id or user id is malformed.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// A vector has the wrong length, a non-finite component, or is all zeros under cosine.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// An item of a batch is invalid; the whole batch was rejected.
    #[error("item {index} of the batch is invalid: {source}")]
    InvalidItem {
        /// The position of the first invalid item in the batch.
        index: usize,
        /// What is wrong with it.
        source: Box<EngineError>,
    },
    /// A query or setting is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The tenant does not exist.
    #[error("tenant `{0}` does not exist")]
    TenantNotFound(TenantName),
    /// The tenant exists with other settings.
    #[error("tenant `{name}` already exists with dimension {dimension} and metric {metric}")]
    TenantConflict {
        /// The tenant.
        name: TenantName,
        /// Its existing dimension.
        dimension: usize,
        /// Its existing metric.
        metric: Metric,
    },
    /// The entity does not exist in the tenant.
    #[error("entity `{0}` does not exist")]
    EntityNotFound(String),
    /// A stamped change came before the changes it follows were applied: the host must apply
    /// the missing ones first (or reload the tenant).
    #[error("change {stamp} of tenant `{tenant}` came before change {expected}")]
    OutOfOrder {
        /// The tenant.
        tenant: TenantName,
        /// The stamp the change carried.
        stamp: Stamp,
        /// The stamp the tenant expects next.
        expected: Stamp,
    },
    /// The entity exists, but the collaborative model did not learn it: it had no interactions
    /// when the model was trained, or was made since.
    #[error(
        "entity `{0}` is not in the collaborative model: it had no interactions when the model was trained"
    )]
    NotLearnt(String),
    /// The tenant has no collaborative model yet: it has not been trained.
    #[error("tenant `{0}` has no collaborative model yet")]
    NoModel(TenantName),
    /// The question needs content vectors, and the tenant keeps none.
    #[error(
        "tenant `{0}` keeps no content vectors: ask in the collaborative space (`space=collaborative`, or a user's `strategy=auto` or `collaborative`)"
    )]
    NoContentVectors(TenantName),
    /// None of the examples of a recommendation exist, so there is nothing to rank against.
    #[error("none of the examples exist: {0}")]
    NoUsableExamples(String),
    /// The host stopped the ranking (see [`Interrupt`](crate::Interrupt)) before it finished.
    #[error("the ranking was stopped before it finished")]
    Interrupted,
    /// The question's ranking would take more work than the engine's budget allows
    /// (`EngineConfig::work_budget`).
    #[error(
        "this question would read about {cost} vector components, over the budget of {budget}: {lower}"
    )]
    OverBudget {
        /// The estimated work, in vector components read.
        cost: u64,
        /// The budget.
        budget: u64,
        /// What to lower.
        lower: String,
    },
}

impl EngineError {
    /// Wraps `self` as the error of item `index` of a batch.
    pub(crate) fn at(self, index: usize) -> Self {
        EngineError::InvalidItem {
            index,
            source: Box::new(self),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
