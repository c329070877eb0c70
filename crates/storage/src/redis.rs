//! Redis, the cache shared by servers (L2): a bb8 pool, TTL tiers, pipelining, and per-tenant
//! generation keys for invalidation.
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
    /// Users' preference vectors.
    UserPreferences,
    /// Entity rows.
    EntityFeatures,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Recommendations => "rec",
            Tier::Trending => "trend",
            Tier::UserPreferences => "pref",
            Tier::EntityFeatures => "ent",
        }
    }

    fn ttl(self, ttls: &CacheConfig) -> Duration {
        match self {
            Tier::Recommendations => ttls.recommendations_ttl,
            Tier::Trending => ttls.trending_ttl,
            Tier::UserPreferences => ttls.user_preferences_ttl,
            Tier::EntityFeatures => ttls.entity_features_ttl,
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

    /// Whether calls are being refused after a recent failure.
    pub fn is_down(&self) -> bool {
        self.breaker.is_open()
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

    fn key(tier: Tier, tenant: &TenantName, generation: u64, key: &str) -> String {
        format!("reco:{tenant}:{generation}:{}:{key}", tier.name())
    }

    fn generation_key(tenant: &TenantName) -> String {
        format!("reco:{tenant}:gen")
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// A tenant's cache generation: part of every key, so bumping it orphans every entry.
    pub async fn generation(&self, tenant: &TenantName) -> Result<u64> {
        let key = Self::generation_key(tenant);
        self.run(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<u64>>(&mut c)
                    .await
            }
        })
        .await
        .map(Option::unwrap_or_default)
    }

    /// Moves a tenant to a new generation; every earlier entry becomes unreachable.
    pub async fn bump_generation(&self, tenant: &TenantName) -> Result<u64> {
        let key = Self::generation_key(tenant);
        self.run(|mut c| {
            let key = key.clone();
            async move { redis::cmd("INCR").arg(key).query_async::<u64>(&mut c).await }
        })
        .await
    }

    /// One entry.
    pub async fn get(
        &self,
        tier: Tier,
        tenant: &TenantName,
        generation: u64,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let mut found = self.get_many(tier, tenant, generation, &[key]).await?;
        Ok(found.pop().flatten())
    }

    /// Several entries in one round trip (`MGET`), in the order asked.
    pub async fn get_many(
        &self,
        tier: Tier,
        tenant: &TenantName,
        generation: u64,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys
            .iter()
            .map(|k| Self::key(tier, tenant, generation, k))
            .collect();
        self.run(|mut c| {
            let keys = keys.clone();
            async move {
                redis::cmd("MGET")
                    .arg(keys)
                    .query_async::<Vec<Option<Vec<u8>>>>(&mut c)
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
        generation: u64,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        self.set_many(tier, tenant, generation, &[(key, value)])
            .await
    }

    /// Several entries in one pipelined round trip, each with its tier's TTL.
    pub async fn set_many(
        &self,
        tier: Tier,
        tenant: &TenantName,
        generation: u64,
        items: &[(&str, &[u8])],
    ) -> Result<()> {
        let ttl = tier.ttl(&self.ttls).as_secs().max(1);
        let mut pipe = redis::pipe();
        for (key, value) in items {
            pipe.cmd("SET")
                .arg(Self::key(tier, tenant, generation, key))
                .arg(*value)
                .arg("EX")
                .arg(ttl)
                .ignore();
        }
        self.run(|mut c| {
            let pipe = pipe.clone();
            async move { pipe.query_async::<()>(&mut c).await }
        })
        .await
    }

    /// The seconds an entry has left, or `None` when it is absent (for tests and operators).
    pub async fn ttl(
        &self,
        tier: Tier,
        tenant: &TenantName,
        generation: u64,
        key: &str,
    ) -> Result<Option<u64>> {
        let key = Self::key(tier, tenant, generation, key);
        let left: i64 = self
            .run(|mut c| {
                let key = key.clone();
                async move { redis::cmd("TTL").arg(key).query_async::<i64>(&mut c).await }
            })
            .await?;
        Ok(u64::try_from(left).ok())
    }
}
