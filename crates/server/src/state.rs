//! What every handler shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reco_engine::{Engine, TenantName};
use reco_storage::{RedisCache, Store};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::rankers::Rankers;
use crate::settings::Settings;

/// A tenant's token bucket: its limit, the bucket, and what it held after the last request.
struct Bucket {
    limit: NonZeroU32,
    limiter: RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>,
    remaining: AtomicU32,
}

/// Unknown-key lookups per client address.
type AddressLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// What the rate-limit headers say of a tenant's budget. A tenant without a limit reports
/// `u32::MAX` for both: a number every client can parse, and one it never runs down.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
}

impl Budget {
    const UNLIMITED: Budget = Budget {
        limit: u32::MAX,
        remaining: u32::MAX,
    };
}

/// Handlers' shared state.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub store: Store,
    pub redis: Option<RedisCache>,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// Committed changes on their way to the engine, own and the feed's (see `applier`).
    pub applier: Arc<crate::applier::Applier>,
    /// The runtime writes run on: the one the application was built on, which otherwise only
    /// follows the change feed. HTTP workers are busy ranking under load; a write's several
    /// round trips to storage would each wait behind every read a worker has queued.
    pub writer: tokio::runtime::Handle,
    /// The threads every costly ranking runs on (see `rankers`).
    pub rankers: Rankers,
    /// Collaborative trainings running, or failed last, per tenant (see `routes::model`).
    pub trainings: std::sync::Mutex<HashMap<TenantName, Training>>,
    /// When each tenant's interactions last started its training, and whether a later start
    /// is waiting for `Settings::train_interval` to pass (see `routes::model`).
    pub auto_trainings: std::sync::Mutex<HashMap<TenantName, AutoTraining>>,
    /// Each tenant's last offline evaluation here (see `evaluation`).
    pub evaluations: std::sync::Mutex<HashMap<TenantName, crate::evaluation::EvaluationRun>>,
    /// Key hash to tenant; `None` remembers briefly that a key opens nothing.
    keys: moka::sync::Cache<[u8; 32], Option<TenantName>>,
    admin_hash: Option<[u8; 32]>,
    /// The limits tenants set for themselves (`rate_limit`); others take the server's default.
    own_limits: RwLock<HashMap<TenantName, NonZeroU32>>,
    /// Every limited tenant's bucket, made at its first request.
    buckets: RwLock<HashMap<TenantName, Arc<Bucket>>>,
    /// Lookups in storage of keys not known here, per client address.
    unknown_keys: AddressLimiter,
    clock: DefaultClock,
    ready: AtomicBool,
    /// Where tenant images are kept, when they are (see `images`).
    pub images: Option<reco_storage::ImageFiles>,
    /// The incarnation and stamp of each tenant's image on disk, so that an unchanged tenant
    /// is not written again.
    pub imaged: std::sync::Mutex<HashMap<TenantName, (reco_engine::Lineage, reco_engine::Stamp)>>,
    /// Incarnations deleted while this server runs: a load that read one before its delete
    /// committed must not bring it back (see `sync::load_tenant`).
    deleted: std::sync::Mutex<std::collections::HashSet<(TenantName, reco_engine::Lineage)>>,
}

/// The last training a tenant's interactions started by themselves.
#[derive(Debug, Clone, Copy)]
pub struct AutoTraining {
    /// When it started.
    pub started: tokio::time::Instant,
    /// Whether the next start waits for its time.
    pub waiting: bool,
}

/// A tenant's collaborative training, while it runs or after it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Training {
    /// Running now.
    Running,
    /// The last one failed, and why.
    Failed(String),
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Who a request speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The admin key, or any request when the server runs open.
    Admin,
    /// A tenant key.
    Tenant(TenantName),
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        store: Store,
        redis: Option<RedisCache>,
        settings: Arc<Settings>,
    ) -> std::io::Result<Self> {
        let lookups = NonZeroU32::new(settings.unknown_key_rate).unwrap_or(NonZeroU32::MIN);
        let metrics = Metrics::new();
        let rankers = Rankers::start(
            settings.rank_threads,
            settings.rank_queue,
            settings.batch_max,
            settings.inline_work,
            &metrics.batch_sizes(),
        )?;
        Ok(Self {
            engine,
            store,
            redis,
            metrics,
            rankers,
            applier: Arc::default(),
            trainings: std::sync::Mutex::new(HashMap::new()),
            auto_trainings: std::sync::Mutex::new(HashMap::new()),
            evaluations: std::sync::Mutex::new(HashMap::new()),
            writer: tokio::runtime::Handle::current(),
            keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            admin_hash: settings.admin_key.as_deref().map(hash_key),
            own_limits: RwLock::new(HashMap::new()),
            buckets: RwLock::new(HashMap::new()),
            unknown_keys: RateLimiter::keyed(Quota::per_second(lookups)),
            clock: DefaultClock::default(),
            ready: AtomicBool::new(false),
            images: settings
                .image_dir
                .clone()
                .map(reco_storage::ImageFiles::new),
            imaged: std::sync::Mutex::new(HashMap::new()),
            deleted: std::sync::Mutex::new(std::collections::HashSet::new()),
            settings,
        })
    }

    /// Remembers that an incarnation of a tenant was deleted. Called before the engine drops
    /// it, so that a load which installs it afterwards sees the mark and drops it again.
    pub fn mark_deleted(&self, tenant: &TenantName, lineage: reco_engine::Lineage) {
        self.deleted
            .lock()
            .expect("never poisoned")
            .insert((tenant.clone(), lineage));
    }

    /// Whether an incarnation of a tenant was deleted while this server runs.
    pub fn was_deleted(&self, tenant: &TenantName, lineage: reco_engine::Lineage) -> bool {
        self.deleted
            .lock()
            .expect("never poisoned")
            .contains(&(tenant.clone(), lineage))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Forgets every cached key: a tenant and its keys were deleted.
    pub fn forget_keys(&self) {
        self.keys.invalidate_all();
    }

    /// Remembers a key just made, so its first use needs no database.
    pub fn remember_key(&self, hash: [u8; 32], tenant: TenantName) {
        self.keys.insert(hash, Some(tenant));
    }

    /// Who the bearer key speaks for. Keys are looked up by hash in memory first (a key found
    /// to open nothing is remembered as such for a minute), then in the database, at most
    /// `unknown_key_rate` times a second per client address (`peer`); a known key keeps
    /// working while the database is down.
    pub async fn access(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Access, ApiError> {
        let Some(admin_hash) = self.admin_hash else {
            return Ok(Access::Admin);
        };
        let key = authorization
            .and_then(bearer_key)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized(
                "send the key as `Authorization: Bearer <key>`",
            ))?;
        let hash = hash_key(key);
        if hash == admin_hash {
            return Ok(Access::Admin);
        }
        let tenant = match self.keys.get(&hash) {
            Some(known) => known,
            None => {
                if let Some(peer) = peer
                    && let Err(not_until) = self.unknown_keys.check_key(&peer)
                {
                    let wait = not_until.wait_time_from(self.clock.now());
                    return Err(ApiError::UnknownKeys {
                        retry_after: wait.as_secs().max(1),
                    });
                }
                // Boxed: a storage lookup's future is large, and it would make every
                // admitted request's future as large.
                let found = Box::pin(self.store.find_api_key(hash)).await?;
                self.keys.insert(hash, found.clone());
                found
            }
        };
        tenant
            .map(Access::Tenant)
            .ok_or(ApiError::Unauthorized("this key is not valid"))
    }

    /// Admits `GET /v1/tenants`, the one route about no single tenant: the admin key sees
    /// every tenant; a tenant key sees its own, and the request is charged to its budget.
    pub async fn admit_listing(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<(Access, Option<Budget>), ApiError> {
        self.ensure_ready()?;
        let access = self.access(authorization, peer).await?;
        let budget = match &access {
            Access::Admin => None,
            Access::Tenant(own) => Some(self.spend(own)?),
        };
        Ok((access, budget))
    }

    fn ensure_ready(&self) -> Result<(), ApiError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ApiError::Unavailable {
                message: "the service is loading its indexes; retry shortly".into(),
                retry_after: 1,
            })
        }
    }

    /// Admits a request about `tenant`: the key must open it (or be the admin key, when
    /// `admin_only` the admin key only), and the tenant's budget must allow it.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
        tenant: &TenantName,
        admin_only: bool,
    ) -> Result<Budget, ApiError> {
        self.ensure_ready()?;
        match self.access(authorization, peer).await? {
            Access::Admin => {}
            Access::Tenant(_) if admin_only => {
                return Err(ApiError::Forbidden("this needs the admin key"));
            }
            Access::Tenant(own) if &own == tenant => {}
            Access::Tenant(_) => return Err(ApiError::Forbidden("this key opens another tenant")),
        }
        self.spend(tenant)
    }

    /// Sets the limit a tenant named for itself (or none), as storage holds it.
    pub fn set_rate_limit(&self, tenant: &TenantName, own: Option<NonZeroU32>) {
        let mut limits = self.own_limits.write().expect("limits are never poisoned");
        let changed = match own {
            Some(limit) => limits.insert(tenant.clone(), limit) != Some(limit),
            None => limits.remove(tenant).is_some(),
        };
        drop(limits);
        if changed {
            self.buckets
                .write()
                .expect("buckets are never poisoned")
                .remove(tenant);
        }
    }

    /// The limit a tenant named for itself, if any.
    pub fn own_rate_limit(&self, tenant: &TenantName) -> Option<NonZeroU32> {
        self.own_limits
            .read()
            .expect("limits are never poisoned")
            .get(tenant)
            .copied()
    }

    /// A tenant's bucket, made at its first request; none when it has no limit.
    fn bucket(&self, tenant: &TenantName) -> Option<Arc<Bucket>> {
        if let Some(bucket) = self
            .buckets
            .read()
            .expect("buckets are never poisoned")
            .get(tenant)
        {
            return Some(bucket.clone());
        }
        let server_default = self.settings.rate_limit.and_then(NonZeroU32::new);
        let limit = self.own_rate_limit(tenant).or(server_default)?;
        let bucket = Arc::new(Bucket {
            limit,
            limiter: RateLimiter::direct(Quota::per_second(limit))
                .with_middleware::<StateInformationMiddleware>(),
            remaining: AtomicU32::new(limit.get()),
        });
        let mut buckets = self.buckets.write().expect("buckets are never poisoned");
        Some(buckets.entry(tenant.clone()).or_insert(bucket).clone())
    }

    /// Takes one request from a tenant's budget.
    pub fn spend(&self, tenant: &TenantName) -> Result<Budget, ApiError> {
        let Some(bucket) = self.bucket(tenant) else {
            return Ok(Budget::UNLIMITED);
        };
        match bucket.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                bucket.remaining.store(remaining, Ordering::Relaxed);
                Ok(Budget {
                    limit: bucket.limit.get(),
                    remaining,
                })
            }
            Err(not_until) => {
                bucket.remaining.store(0, Ordering::Relaxed);
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::RateLimited {
                    retry_after: wait.as_secs().max(1),
                })
            }
        }
    }

    /// A tenant's budget as its last request left it, without taking from it: for the headers
    /// of answers refused before the budget was asked (bad key, wrong tenant, over budget).
    pub fn budget(&self, tenant: &TenantName) -> Budget {
        self.bucket(tenant)
            .map_or(Budget::UNLIMITED, |bucket| Budget {
                limit: bucket.limit.get(),
                remaining: bucket.remaining.load(Ordering::Relaxed),
            })
    }
}

/// The key of an `Authorization` header: the scheme `Bearer` in any case (RFC 9110: schemes are
/// case-insensitive), then the key.
pub(crate) fn bearer_key(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Whether an address is this machine's own: 127.0.0.0/8, `::1`, and IPv4 loopback mapped into
/// IPv6 (`::ffff:127.0.0.1`, what a server bound to `[::]` sees of an IPv4 client).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, F12 and F13.
    #[test]
    fn schemes_in_any_case_and_loopback_in_every_form() {
        assert_eq!(bearer_key("Bearer abc"), Some("abc"));
        assert_eq!(bearer_key("bearer abc"), Some("abc"));
        assert_eq!(bearer_key("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_key("Basic abc"), None);
        assert_eq!(bearer_key("Bearerabc"), None);
        for local in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(local.parse().unwrap()), "{local}");
        }
        for remote in ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(!is_loopback(remote.parse().unwrap()), "{remote}");
        }
    }
}
