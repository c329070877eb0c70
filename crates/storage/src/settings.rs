//! Settings of the backends. The defaults are the reference design's, so that the two can be
//! compared like for like.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, StorageError};

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
    /// `hnsw.ef_search` of every session: candidates the HNSW index visits. Default 100.
    pub hnsw_ef_search: u32,
    /// Keep a pgvector HNSW index per tenant, for ranking in the database. Every write pays to
    /// maintain it, so a server that ranks in memory turns it off, and `migrate` then drops the
    /// indexes a server that ranked in the database left. Default on.
    pub vector_index: bool,
    /// Plan each prepared statement once per session (`plan_cache_mode = force_generic_plan`)
    /// instead of again at every execution. The writes are single statements over arrays
    /// (`UNNEST`) whose custom plans PostgreSQL kept choosing: planning was a fifth of its time
    /// under writes, and generic plans cut its CPU per write by a tenth. A search in the
    /// database is better planned for its parameters, so only a server that ranks in memory
    /// turns this on. Default off.
    pub generic_plans: bool,
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
            hnsw_ef_search: 100,
            vector_index: true,
            generic_plans: false,
        }
    }
}

impl PostgresSettings {
    /// Checks that the pool can be built.
    pub fn validate(&self) -> Result<()> {
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
        if !(1..=1000).contains(&self.hnsw_ef_search) {
            return Err(StorageError::InvalidSetting(
                "hnsw_ef_search is from 1 to 1000".into(),
            ));
        }
        Ok(())
    }

    /// The statements run on every new connection, in order. Iterative HNSW scans (pgvector
    /// 0.8) keep a filtered index search from coming back short.
    pub fn session_statements(&self) -> Vec<String> {
        let mut statements = vec![
            format!(
                "SET statement_timeout = '{}ms'",
                self.statement_timeout.as_millis()
            ),
            format!("SET work_mem = '{}MB'", self.work_mem_mb),
            format!(
                "SET max_parallel_workers_per_gather = {}",
                self.max_parallel_workers_per_gather
            ),
            format!("SET hnsw.ef_search = {}", self.hnsw_ef_search),
            "SET hnsw.iterative_scan = relaxed_order".to_owned(),
        ];
        if self.generic_plans {
            statements.push("SET plan_cache_mode = force_generic_plan".to_owned());
        }
        statements
    }
}

/// The embedded database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSettings {
    /// The database file. Default `./data/reco.db`.
    pub path: PathBuf,
    /// Connections for readers. Default 4.
    pub max_connections: u32,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/reco.db"),
            max_connections: 4,
        }
    }
}

/// The Redis pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Most connections. Default 50.
    pub max_connections: u32,
    /// How long the pool waits to connect. Default 3 s.
    pub connect_timeout: Duration,
    /// How many times a failed command is retried, with doubling backoff. Default 3.
    pub retries: u32,
    /// The first backoff. Default 10 ms.
    pub backoff: Duration,
    /// The longest one command may take, retries included, before the caller gets an error.
    /// Default 250 ms: a cache that is slower than that is worse than none.
    pub command_timeout: Duration,
    /// How often a Redis that failed is probed (in the background) until it answers again.
    /// Default 1 s.
    pub down_for: Duration,
    /// The largest value kept; larger ones are not written. Redis is shared by every tenant
    /// and server, and a deep page is cheaper to rank again than to ship. Default 16 KiB
    /// (about 500 results).
    pub max_value_bytes: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            max_connections: 50,
            connect_timeout: Duration::from_secs(3),
            retries: 3,
            backoff: Duration::from_millis(10),
            command_timeout: Duration::from_millis(250),
            down_for: Duration::from_secs(1),
            max_value_bytes: 16 * 1024,
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
        let statements = pg.session_statements();
        assert_eq!(statements[0], "SET statement_timeout = '10000ms'");
        assert_eq!(statements[1], "SET work_mem = '16MB'");
        assert_eq!(statements[2], "SET max_parallel_workers_per_gather = 4");
        assert!(!statements.iter().any(|s| s.contains("plan_cache_mode")));
        let generic = PostgresSettings {
            generic_plans: true,
            ..PostgresSettings::default()
        };
        assert_eq!(
            generic.session_statements().last().map(String::as_str),
            Some("SET plan_cache_mode = force_generic_plan")
        );
        assert_eq!((pg.max_connections, pg.min_connections), (100, 20));
        assert_eq!(pg.acquire_timeout, Duration::from_secs(5));
        let redis = RedisSettings::default();
        assert_eq!((redis.max_connections, redis.retries), (50, 3));
        assert_eq!(redis.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn impossible_pools_are_refused() {
        for bad in [
            PostgresSettings {
                min_connections: 200,
                ..PostgresSettings::default()
            },
            PostgresSettings {
                max_connections: 0,
                min_connections: 0,
                ..PostgresSettings::default()
            },
            PostgresSettings {
                acquire_timeout: Duration::ZERO,
                ..PostgresSettings::default()
            },
            PostgresSettings {
                hnsw_ef_search: 0,
                ..PostgresSettings::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
