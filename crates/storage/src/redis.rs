//! Redis, the cache shared by servers (L2): a bb8 pool and TTL tiers. Entries are named by the
//! data they were made from (the engine's shared key), so nothing here is ever invalidated:
//! entries about old data are simply never asked for again, and age out.
//!
//! A cache must never slow a request down more than it saves. So every call has a short
//! budget (retries included), and after a failure Redis is left alone for a while: calls fail at
//! once with [`StorageError::RedisUnavailable`] instead of each waiting out a timeout. The first
//! call after that tries again, and success closes the breaker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Fails fast for a while after Redis failed.
#[derive(Debug)]
struct Breaker {
    start: Instant,
    /// Milliseconds since `start` until which calls are refused.
    open_until: AtomicU64,
    down_for: Duration,
}

impl Breaker {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_open(&self) -> bool {
        self.now() < self.open_until.load(Ordering::Relaxed)
    }

    fn trip(&self) {
        let until = self.now() + u64::try_from(self.down_for.as_millis()).unwrap_or(u64::MAX);
        self.open_until.store(until, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.open_until.store(0, Ordering::Relaxed);
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
        let breaker = std::sync::Arc::new(Breaker {
            start: Instant::now(),
            open_until: AtomicU64::new(0),
            down_for: settings.down_for,
        });
        Ok(Self {
            pool,
            settings,
            ttls,
            breaker,
        })
    }

    /// Runs `op` on a connection, with retries and backoff inside the command budget.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.is_open() {
            return Err(StorageError::RedisUnavailable(
                "it failed moments ago; it will be tried again shortly".into(),
            ));
        }
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
            Ok(Ok(value)) => {
                self.breaker.reset();
                Ok(value)
            }
            Ok(Err(e)) => {
                if e.is_transient() {
                    self.breaker.trip();
                }
                Err(e)
            }
            Err(_) => {
                self.breaker.trip();
                Err(StorageError::RedisUnavailable(format!(
                    "no answer within {} ms",
                    self.settings.command_timeout.as_millis()
                )))
            }
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

    /// One entry, with its tier's TTL.
    pub async fn set(
        &self,
        tier: Tier,
        tenant: &TenantName,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
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
    }
}
