//! Redis, the cache shared by servers (L2): a bb8 pool and TTL tiers. Entries are named by the
//! data they were made from (the engine's shared key), so nothing here is ever invalidated:
//! entries about old data are simply never asked for again, and age out.
//!
//! A cache must never slow a request down more than it saves. So every call has a short
//! budget (retries included), and after a failure the breaker opens: calls fail at once with
//! [`StorageError::RedisUnavailable`] instead of each waiting out a timeout. While it is open, a
//! background task (not a request) pings Redis every `down_for`, and the first answer closes it,
//! so no request ever waits on a Redis that is down.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use reco_engine::{CacheConfig, TenantName};
use redis::aio::MultiplexedConnection;

use crate::error::{Result, StorageError};
use crate::settings::RedisSettings;

/// The TTL tiers of the shared cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Similar, recommend and per-user answers.
    Recommendations,
    /// Trending answers.
    Trending,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Recommendations => "rec",
            Tier::Trending => "trend",
        }
    }

    fn ttl(self, ttls: &CacheConfig) -> Duration {
        match self {
            Tier::Recommendations => ttls.recommendations_ttl,
            Tier::Trending => ttls.trending_ttl,
        }
    }
}

/// Fails fast from a failure until the background probe finds Redis answering again.
#[derive(Debug, Default)]
struct Breaker {
    open: AtomicBool,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens the breaker; true when it was closed (the caller then starts the probe).
    fn trip(&self) -> bool {
        !self.open.swap(true, Ordering::AcqRel)
    }

    fn reset(&self) {
        self.open.store(false, Ordering::Release);
    }
}

/// The shared cache.
#[derive(Debug, Clone)]
pub struct RedisCache {
    pool: bb8::Pool<RedisConnectionManager>,
    settings: RedisSettings,
    ttls: CacheConfig,
    breaker: std::sync::Arc<Breaker>,
}

fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

impl RedisCache {
    /// A pool for `url` (`redis://host:port`). No connection is made until the first call, so
    /// reco starts whether Redis is up or not.
    pub fn new(url: &str, settings: RedisSettings, ttls: CacheConfig) -> Result<Self> {
        let manager = RedisConnectionManager::new(url)
            .map_err(|e| StorageError::InvalidSetting(format!("REDIS_URL: {e}")))?;
        let pool = bb8::Pool::builder()
            .max_size(settings.max_connections)
            .connection_timeout(settings.connect_timeout)
            .build_unchecked(manager);
        let breaker = std::sync::Arc::new(Breaker::default());
        Ok(Self {
            pool,
            settings,
            ttls,
            breaker,
        })
    }

    /// Runs `op` on a connection, with retries and backoff inside the command budget; refused
    /// at once while the breaker is open, and opens it on a transient failure.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.is_open() {
            return Err(StorageError::RedisUnavailable(
                "it failed; it is probed in the background and used again once it answers".into(),
            ));
        }
        let result = self.attempt(op).await;
        if let Err(e) = &result
            && e.is_transient()
        {
            self.open();
        }
        result
    }

    /// Opens the breaker, and starts the probe that closes it when Redis answers again.
    fn open(&self) {
        if !self.breaker.trip() {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(cache.settings.down_for).await;
                let ping = cache
                    .attempt(|mut c| async move {
                        redis::cmd("PING").query_async::<String>(&mut c).await
                    })
                    .await;
                if ping.is_ok() {
                    cache.breaker.reset();
                    return;
                }
            }
        });
    }

    /// `op` on a connection, with retries and backoff inside the command budget.
    async fn attempt<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempts = async {
            let mut delay = self.settings.backoff;
            let mut last = String::new();
            for attempt in 0..=self.settings.retries {
                if attempt > 0 {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                let conn = match self.pool.get().await {
                    Ok(conn) => (*conn).clone(),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
                match op(conn).await {
                    Ok(value) => return Ok(value),
                    Err(e) if transient(&e) => last = e.to_string(),
                    Err(e) => return Err(StorageError::Redis(e)),
                }
            }
            Err(StorageError::RedisUnavailable(last))
        };
        match tokio::time::timeout(self.settings.command_timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::RedisUnavailable(format!(
                "no answer within {} ms",
                self.settings.command_timeout.as_millis()
            ))),
        }
    }

    /// Where an entry lives: `reco:{tenant}:{tier}:{key}`. The key names the data an answer
    /// read (the engine's shared key), so a write needs no invalidation here.
    fn key(tier: Tier, tenant: &TenantName, key: &str) -> String {
        format!("reco:{tenant}:{}:{key}", tier.name())
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// One entry, or `None` when there is none.
    pub async fn get(&self, tier: Tier, tenant: &TenantName, key: &str) -> Result<Option<Vec<u8>>> {
        let key = Self::key(tier, tenant, key);
        self.run(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            }
        })
        .await
    }

    /// One entry, with its tier's TTL; a value over `max_value_bytes` is not kept (false).
    pub async fn set(
        &self,
        tier: Tier,
        tenant: &TenantName,
        key: &str,
        value: &[u8],
    ) -> Result<bool> {
        if value.len() > self.settings.max_value_bytes {
            return Ok(false);
        }
        let key = Self::key(tier, tenant, key);
        let ttl = tier.ttl(&self.ttls).as_secs().max(1);
        self.run(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
        .map(|()| true)
    }
}
