//! The one error type of the storage crate.

use reco_engine::TenantName;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A setting is out of range.
    #[error("invalid storage setting: {0}")]
    InvalidSetting(String),
    /// The database cannot be reached now (connection refused or lost, pool exhausted); the same
    /// call may succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The tenant does not exist.
    #[error("tenant `{0}` does not exist")]
    TenantNotFound(TenantName),
    /// The tenant exists with other settings.
    #[error("tenant `{name}` already exists with other settings: {settings}")]
    TenantConflict {
        /// The tenant.
        name: TenantName,
        /// The settings it has, in words.
        settings: String,
    },
    /// A row to write is invalid for its tenant (item `index` of the batch); nothing was written.
    #[error("item {index} of the batch is invalid: {reason}")]
    InvalidRow {
        /// The position of the first invalid item.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored row cannot be read back into valid values.
    #[error("a stored row is corrupt: {0}")]
    Corrupt(String),
    /// A tenant image could not be written, or a file is not a whole image of this version.
    #[error("tenant image: {0}")]
    Image(String),
    /// The backend cannot do this (the embedded database does not rank).
    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),
    /// Redis cannot be reached now; callers serve without it.
    #[error("redis is unavailable: {0}")]
    RedisUnavailable(String),
    /// Redis answered with an error.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        // `sqlx::Error` is non-exhaustive: name the unreachable kinds, keep the rest.
        // SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57
        // (operator intervention: shutdown, cannot connect now) mean "not now", not "wrong".
        let transient_code = e.as_database_error().is_some_and(|db| {
            db.code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57"))
        });
        let unreachable = transient_code
            || matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            );
        if unreachable {
            StorageError::Unavailable(e.to_string())
        } else {
            StorageError::Database(e)
        }
    }
}

/// Any failure to get a connection means the database cannot be reached now, whatever the
/// server said while refusing it.
#[allow(clippy::needless_pass_by_value)] // It is the shape `map_err` calls.
pub(crate) fn unavailable(e: sqlx::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

impl StorageError {
    /// Whether the same call may succeed later: the database or Redis is unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unavailable(_) | StorageError::RedisUnavailable(_) => true,
            StorageError::InvalidSetting(_)
            | StorageError::Database(_)
            | StorageError::Migrate(_)
            | StorageError::TenantNotFound(_)
            | StorageError::TenantConflict { .. }
            | StorageError::InvalidRow { .. }
            | StorageError::Corrupt(_)
            | StorageError::Image(_)
            | StorageError::Unsupported(_)
            | StorageError::Redis(_) => false,
        }
    }
}

/// The storage crate's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
