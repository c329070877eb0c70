//! Durable state and the shared cache of reco.
//!
//! # The key design decision: storage is never on the hot path
//!
//! The engine ranks from memory; this crate keeps what the engine holds durable and shared.
//! A write is acknowledged only once it is committed here, and start-up streams everything back
//! into the engine. The settings below are the reference design's, kept as defaults so that the
//! two can be compared like for like.

use std::time::Duration;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A setting is out of range.
    #[error("invalid storage setting: {0}")]
    InvalidSetting(String),
}

/// The PostgreSQL pool and the settings of each of its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Most connections in the pool. Default 100.
    pub max_connections: u32,
    /// Connections opened at start and kept. Default 20.
    pub min_connections: u32,
    /// How long a request may wait for a connection. Default 5 s.
    pub acquire_timeout: Duration,
    /// `statement_timeout` of every session. Default 10 s.
    pub statement_timeout: Duration,
    /// `work_mem` of every session, in megabytes. Default 16.
    pub work_mem_mb: u32,
    /// `max_parallel_workers_per_gather` of every session. Default 4.
    pub max_parallel_workers_per_gather: u32,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            max_connections: 100,
            min_connections: 20,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            work_mem_mb: 16,
            max_parallel_workers_per_gather: 4,
        }
    }
}

impl PostgresSettings {
    /// Checks that the pool can be built.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.max_connections == 0 || self.min_connections > self.max_connections {
            return Err(StorageError::InvalidSetting(format!(
                "the pool needs 1 <= min ({}) <= max ({}) connections",
                self.min_connections, self.max_connections
            )));
        }
        if self.acquire_timeout.is_zero() || self.statement_timeout.is_zero() {
            return Err(StorageError::InvalidSetting(
                "acquire and statement timeouts must be above zero".into(),
            ));
        }
        Ok(())
    }

    /// The statements run on every new connection, in order.
    pub fn session_statements(&self) -> [String; 3] {
        [
            format!(
                "SET statement_timeout = '{}ms'",
                self.statement_timeout.as_millis()
            ),
            format!("SET work_mem = '{}MB'", self.work_mem_mb),
            format!(
                "SET max_parallel_workers_per_gather = {}",
                self.max_parallel_workers_per_gather
            ),
        ]
    }
}

/// The Redis pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Most connections. Default 50.
    pub max_connections: u32,
    /// How long to wait for a connection. Default 3 s.
    pub connect_timeout: Duration,
    /// How many times to retry a failed command, with backoff. Default 3.
    pub retries: u32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            max_connections: 50,
            connect_timeout: Duration::from_secs(3),
            retries: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_design() {
        let pg = PostgresSettings::default();
        assert!(pg.validate().is_ok());
        assert_eq!(
            pg.session_statements(),
            [
                "SET statement_timeout = '10000ms'".to_owned(),
                "SET work_mem = '16MB'".to_owned(),
                "SET max_parallel_workers_per_gather = 4".to_owned(),
            ]
        );
        let redis = RedisSettings::default();
        assert_eq!((redis.max_connections, redis.retries), (50, 3));
        assert_eq!(redis.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn impossible_pools_are_refused() {
        let inverted = PostgresSettings {
            min_connections: 200,
            ..PostgresSettings::default()
        };
        assert!(inverted.validate().is_err());
        let empty = PostgresSettings {
            max_connections: 0,
            min_connections: 0,
            ..PostgresSettings::default()
        };
        assert!(empty.validate().is_err());
        let instant = PostgresSettings {
            acquire_timeout: Duration::ZERO,
            ..PostgresSettings::default()
        };
        assert!(instant.validate().is_err());
    }
}
