//! The HTTP service of reco: a thin layer that parses requests, asks the engine, persists through
//! storage, and turns every error into the API's shape in one place.
//!
//! This first piece is the typed configuration, read from the environment names of the API
//! contract (`../shared/API.md`); the HTTP layer builds on it.

use std::net::SocketAddr;

/// A setting that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A variable has a value it cannot take.
    #[error("{name} cannot be `{value}`: {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it was.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
}

/// Where recommendations are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankingMode {
    /// In the engine, in memory: the default.
    Memory,
    /// In PostgreSQL with pgvector: the reference design, for comparison.
    Database,
}

/// Everything `reco serve` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DATABASE_URL`: none means the embedded database under `./data`.
    pub database_url: Option<String>,
    /// `REDIS_URL`: none means the in-process cache only.
    pub redis_url: Option<String>,
    /// `RECO_BIND`: default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// `RECO_ADMIN_KEY`: none runs open, on loopback only.
    pub admin_key: Option<String>,
    /// `RECO_CACHE`: `on` (default) or `off`.
    pub cache: bool,
    /// `RECO_RANKING`: `memory` (default) or `database`.
    pub ranking: RankingMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            redis_url: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_key: None,
            cache: true,
            ranking: RankingMode::Memory,
        }
    }
}

impl Settings {
    /// The defaults, overridden by whichever variables `lookup` knows. Empty values count as
    /// unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let mut settings = Settings {
            database_url: get("DATABASE_URL"),
            redis_url: get("REDIS_URL"),
            admin_key: get("RECO_ADMIN_KEY"),
            ..Settings::default()
        };
        if let Some(bind) = get("RECO_BIND") {
            settings.bind = bind.parse().map_err(|_| SettingsError::Invalid {
                name: "RECO_BIND",
                value: bind.clone(),
                expected: "an address and port such as 127.0.0.1:8080",
            })?;
        }
        if let Some(cache) = get("RECO_CACHE") {
            settings.cache = match cache.as_str() {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(SettingsError::Invalid {
                        name: "RECO_CACHE",
                        value: cache,
                        expected: "on or off",
                    });
                }
            };
        }
        if let Some(ranking) = get("RECO_RANKING") {
            settings.ranking = match ranking.as_str() {
                "memory" => RankingMode::Memory,
                "database" => RankingMode::Database,
                _ => {
                    return Err(SettingsError::Invalid {
                        name: "RECO_RANKING",
                        value: ranking,
                        expected: "memory or database",
                    });
                }
            };
        }
        Ok(settings)
    }

    /// The defaults, overridden by the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let settings = from(&[]).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert!(settings.cache);
        assert_eq!(settings.ranking, RankingMode::Memory);
    }

    #[test]
    fn variables_override_defaults() {
        let settings = from(&[
            ("DATABASE_URL", "postgres://localhost/reco"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("RECO_BIND", "0.0.0.0:9000"),
            ("RECO_ADMIN_KEY", "secret"),
            ("RECO_CACHE", "off"),
            ("RECO_RANKING", "database"),
            ("RECO_UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(
            settings.database_url.as_deref(),
            Some("postgres://localhost/reco")
        );
        assert_eq!(settings.bind.port(), 9000);
        assert!(!settings.cache);
        assert_eq!(settings.ranking, RankingMode::Database);
        assert_eq!(from(&[("DATABASE_URL", "")]).unwrap().database_url, None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("RECO_BIND", "localhost"),
            ("RECO_CACHE", "yes"),
            ("RECO_RANKING", "gpu"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }
}
