//! The engine: tenants, their snapshots, and every query mode.

use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use arc_swap::ArcSwap;
use roaring::RoaringBitmap;

use crate::cache::{CacheTier, Caches, Key, PreferenceKey, QueryKey};
use crate::config::{Clock, EngineConfig, SystemClock, millis};
use crate::distance::{Probe, goodness_floor, inverse_norm, score_of};
use crate::error::{EngineError, Result};
use crate::index::{Candidates, EntityIndex, Filter, prepare};
use crate::interactions::{InteractionLog, UserProfile, Weighted};
use crate::mmr;
use crate::model::{
    Embedding, EntityId, EntityView, Interaction, Metric, Millis, NewEntity, Scored, TenantInfo,
    TenantName, TenantSpec, UserId,
};
use crate::query::{
    Answer, CacheStatus, Example, ExampleStrategy, ExampleTarget, Ranking, RecommendRequest,
    SearchOptions, Strategy, TrendingQuery, Window,
};
use crate::topk::TopK;

/// Whether [`Engine::create_tenant`] made the tenant or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It was made now.
    Created,
    /// It existed already with the same settings.
    Existed,
}

/// A tenant being loaded off to the side (see [`Engine::stage_tenant`]).
#[derive(Debug)]
pub struct StagedTenant(Tenant);

/// Whether a stamped change was applied now or had been applied before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied<T> {
    /// Applied now, with what the write returns.
    Done(T),
    /// Its stamp was applied before: nothing changed.
    Already,
}

/// One tenant: its settings and the current snapshots. Readers load a snapshot and never wait;
/// a writer copies the current one, changes the copy and swaps it in, one writer at a time.
#[derive(Debug)]
struct Tenant {
    name: TenantName,
    spec: TenantSpec,
    /// The host's name for this incarnation of the tenant (0 for hosts that have none).
    lineage: u64,
    entities: ArcSwap<EntityIndex>,
    interactions: ArcSwap<InteractionLog>,
    /// Held by the one writer; holds the stamp of the last change applied.
    writer: Mutex<u64>,
}

/// The in-memory recommendation engine. It is `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: Arc<EngineConfig>,
    clock: Arc<dyn Clock>,
    tenants: RwLock<HashMap<TenantName, Arc<Tenant>>>,
    generations: AtomicU64,
    caches: Arc<Caches>,
}

impl Engine {
    /// An engine on the system clock.
    pub fn new(config: EngineConfig) -> Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// An engine that reads the time from `clock`.
    pub fn with_clock(config: EngineConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            caches: Arc::new(Caches::new(&config.cache)),
            config: Arc::new(config),
            clock,
            tenants: RwLock::new(HashMap::new()),
            generations: AtomicU64::new(1),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }

    fn tenant(&self, name: &TenantName) -> Result<Arc<Tenant>> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        tenants
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::TenantNotFound(name.clone()))
    }

    /// Makes a tenant, or finds it when it exists with the same settings.
    pub fn create_tenant(&self, name: TenantName, spec: TenantSpec) -> Result<Created> {
        self.create_tenant_at(name, spec, 0, 0)
    }

    /// Makes a tenant for a host that orders its changes (see [`Engine::upsert_at`]): `lineage`
    /// names this incarnation of the tenant (a tenant deleted and made again gets another), and
    /// `stamp` is the stamp of the last change the tenant's data already holds. It finds the
    /// tenant when it exists with the same settings and lineage.
    pub fn create_tenant_at(
        &self,
        name: TenantName,
        spec: TenantSpec,
        lineage: u64,
        stamp: u64,
    ) -> Result<Created> {
        let spec = TenantSpec::new(spec.dimension, spec.metric)?;
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = tenants.get(&name) {
            return if existing.spec == spec && existing.lineage == lineage {
                Ok(Created::Existed)
            } else {
                Err(EngineError::TenantConflict {
                    name,
                    dimension: existing.spec.dimension,
                    metric: existing.spec.metric,
                })
            };
        }
        let tenant = self.new_tenant(name.clone(), spec, lineage, stamp);
        tenants.insert(name, Arc::new(tenant));
        Ok(Created::Created)
    }

    fn new_tenant(&self, name: TenantName, spec: TenantSpec, lineage: u64, stamp: u64) -> Tenant {
        let mut entities = EntityIndex::new(spec, self.next_generation(), self.config.search);
        entities.stamp = stamp;
        let mut interactions = InteractionLog::new(self.next_generation());
        interactions.stamp = stamp;
        Tenant {
            name,
            spec,
            lineage,
            entities: ArcSwap::from_pointee(entities),
            interactions: ArcSwap::from_pointee(interactions),
            writer: Mutex::new(stamp),
        }
    }

    /// Removes a tenant and everything in it.
    pub fn drop_tenant(&self, name: &TenantName) -> Result<()> {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        tenants
            .remove(name)
            .map(drop)
            .ok_or_else(|| EngineError::TenantNotFound(name.clone()))
    }

    /// The names of every tenant, sorted.
    pub fn tenants(&self) -> Vec<TenantName> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<TenantName> = tenants.keys().cloned().collect();
        names.sort();
        names
    }

    /// A tenant's settings and sizes.
    pub fn tenant_info(&self, name: &TenantName) -> Result<TenantInfo> {
        let tenant = self.tenant(name)?;
        Ok(TenantInfo {
            name: tenant.name.clone(),
            spec: tenant.spec,
            entities: tenant.entities.load().len(),
            interactions: tenant.interactions.load().total(),
        })
    }

    /// Whether a tenant's searches may use its graph (it has grown past the threshold, and
    /// exact search is not forced).
    pub fn has_graph(&self, name: &TenantName) -> Result<bool> {
        Ok(self.tenant(name)?.entities.load().has_graph())
    }

    /// Changes how many candidates a tenant's graph considers per search (HNSW's ef), for
    /// benchmarks that compare settings.
    pub fn set_search_breadth(&self, name: &TenantName, ef: usize) -> Result<()> {
        self.tenant(name)?.entities.load().set_expansion_search(ef);
        Ok(())
    }

    /// Roughly how many heap bytes a tenant's entity snapshot holds.
    pub fn entity_heap_bytes(&self, name: &TenantName) -> Result<usize> {
        Ok(self.tenant(name)?.entities.load().heap_bytes())
    }

    /// The engine's clock, in milliseconds since the Unix epoch.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Checks a batch as [`Engine::upsert`] would, without writing it: a host that persists
    /// first can refuse a bad batch before it reaches storage.
    pub fn check_entities(&self, name: &TenantName, batch: &[NewEntity]) -> Result<()> {
        crate::index::check(self.tenant(name)?.spec, batch)
    }

    /// The lineage a tenant was made with (see [`Engine::create_tenant_at`]).
    pub fn lineage(&self, name: &TenantName) -> Result<u64> {
        Ok(self.tenant(name)?.lineage)
    }

    /// Starts a tenant off to the side, for a host loading it from storage: made at the
    /// `stamp` of the version read, filled with [`Engine::restore_entities`] and
    /// [`Engine::restore_interactions`] (rows that version accounts for), then swapped in whole
    /// by [`Engine::install`]. Readers and writers see the tenant they had until then.
    pub fn stage_tenant(
        &self,
        name: TenantName,
        spec: TenantSpec,
        lineage: u64,
        stamp: u64,
    ) -> Result<StagedTenant> {
        let spec = TenantSpec::new(spec.dimension, spec.metric)?;
        Ok(StagedTenant(self.new_tenant(name, spec, lineage, stamp)))
    }

    /// Adds entities to a staged tenant.
    pub fn restore_entities(&self, staged: &StagedTenant, batch: Vec<NewEntity>) -> Result<usize> {
        let tenant = &staged.0;
        let batch = prepare(tenant.spec, batch)?;
        let count = batch.len();
        let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_entities(tenant, *applied, |index| index.upsert(batch));
        Ok(count)
    }

    /// Adds interactions to a staged tenant, in the order they were recorded.
    pub fn restore_interactions(
        &self,
        staged: &StagedTenant,
        batch: Vec<Interaction>,
    ) -> Result<usize> {
        let tenant = &staged.0;
        let batch = self.weigh(batch)?;
        let count = batch.len();
        let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_interactions(tenant, *applied, batch);
        Ok(count)
    }

    /// Swaps a staged tenant in, in place of any tenant of that name, unless the current one is
    /// the same incarnation and has applied changes past the staged stamp: then the staged one
    /// is older than what is served, nothing changes, and the answer is false (load again).
    /// When the current one is the same incarnation at the same stamp it holds the same data,
    /// so it stays (with its snapshots' generations, and so its cached answers) and the answer
    /// is true: a reload that raced the writes it would have fetched changes nothing.
    pub fn install(&self, staged: StagedTenant) -> bool {
        let staged = staged.0;
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = tenants.get(&staged.name) {
            let applied = *current
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let staged_stamp = *staged.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if current.lineage == staged.lineage && applied >= staged_stamp {
                return applied == staged_stamp;
            }
        }
        tenants.insert(staged.name.clone(), Arc::new(staged));
        true
    }

    /// The stamp of the last change applied to a tenant.
    pub fn applied(&self, name: &TenantName) -> Result<u64> {
        let tenant = self.tenant(name)?;
        let applied = *tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(applied)
    }

    /// Inserts or replaces a batch of entities: all of them, or none when any is invalid.
    /// Returns how many were written.
    pub fn upsert(&self, name: &TenantName, batch: Vec<NewEntity>) -> Result<usize> {
        self.upsert_stamped(name, None, batch).map(done)
    }

    /// [`Engine::upsert`] as the change stamped `stamp` in the host's order of changes.
    ///
    /// A host whose changes come from several places (its own writes, and other servers' heard
    /// through a feed) numbers each tenant's changes 1, 2, 3, ... in the order storage committed
    /// them, and applies them with these `*_at` methods. A stamp applied before answers
    /// [`Applied::Already`] and changes nothing; a stamp past the next one is refused with
    /// [`EngineError::OutOfOrder`]. So every engine that applied the same stamps holds the same
    /// data, and the stamps of a snapshot name its data across processes (see
    /// [`Prepared::shared_key`]).
    pub fn upsert_at(
        &self,
        name: &TenantName,
        stamp: u64,
        batch: Vec<NewEntity>,
    ) -> Result<Applied<usize>> {
        self.upsert_stamped(name, Some(stamp), batch)
    }

    fn upsert_stamped(
        &self,
        name: &TenantName,
        stamp: Option<u64>,
        batch: Vec<NewEntity>,
    ) -> Result<Applied<usize>> {
        let tenant = self.tenant(name)?;
        let batch = prepare(tenant.spec, batch)?;
        let count = batch.len();
        self.ordered(&tenant, stamp, |stamp| {
            self.write_entities(&tenant, stamp, |index| index.upsert(batch));
            count
        })
    }

    /// Deletes an entity; false when it did not exist.
    pub fn delete(&self, name: &TenantName, id: &EntityId) -> Result<bool> {
        let tenant = self.tenant(name)?;
        if tenant.entities.load().slot_of(id.as_str()).is_none() {
            return Ok(false);
        }
        self.delete_stamped(&tenant, None, id).map(done)
    }

    /// [`Engine::delete`] as the change stamped `stamp` (see [`Engine::upsert_at`]). The stamp
    /// is taken even when the entity is not there.
    pub fn delete_at(&self, name: &TenantName, stamp: u64, id: &EntityId) -> Result<Applied<bool>> {
        let tenant = self.tenant(name)?;
        self.delete_stamped(&tenant, Some(stamp), id)
    }

    fn delete_stamped(
        &self,
        tenant: &Tenant,
        stamp: Option<u64>,
        id: &EntityId,
    ) -> Result<Applied<bool>> {
        self.ordered(tenant, stamp, |stamp| {
            tenant.entities.load().slot_of(id.as_str()).is_some()
                && self.write_entities(tenant, stamp, |index| index.delete(id.as_str()))
        })
    }

    /// Runs `write` as the tenant's next change, holding the writer lock: `stamp` is the
    /// host's, or the next one when the host has none.
    fn ordered<T>(
        &self,
        tenant: &Tenant,
        stamp: Option<u64>,
        write: impl FnOnce(u64) -> T,
    ) -> Result<Applied<T>> {
        let mut applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let expected = *applied + 1;
        let stamp = match stamp {
            None => expected,
            Some(s) if s < expected => return Ok(Applied::Already),
            Some(s) if s == expected => s,
            Some(stamp) => {
                return Err(EngineError::OutOfOrder {
                    tenant: tenant.name.clone(),
                    stamp,
                    expected,
                });
            }
        };
        let out = write(stamp);
        *applied = stamp;
        Ok(Applied::Done(out))
    }

    /// Swaps in a copy of the entity snapshot changed by `change`. The caller holds the writer
    /// lock.
    fn write_entities<T>(
        &self,
        tenant: &Tenant,
        stamp: u64,
        change: impl FnOnce(&mut EntityIndex) -> T,
    ) -> T {
        let mut next = EntityIndex::clone(&tenant.entities.load());
        let out = change(&mut next);
        next.generation = self.next_generation();
        next.stamp = stamp;
        tenant.entities.store(Arc::new(next));
        out
    }

    /// An entity as it was stored.
    pub fn get(&self, name: &TenantName, id: &EntityId) -> Result<EntityView> {
        self.tenant(name)?
            .entities
            .load()
            .get(id.as_str())
            .ok_or_else(|| EngineError::EntityNotFound(id.to_string()))
    }

    /// Records a batch of interactions: all of them, or none when any is invalid.
    pub fn record(&self, name: &TenantName, batch: Vec<Interaction>) -> Result<usize> {
        self.record_stamped(name, None, batch).map(done)
    }

    /// [`Engine::record`] as the change stamped `stamp` (see [`Engine::upsert_at`]).
    pub fn record_at(
        &self,
        name: &TenantName,
        stamp: u64,
        batch: Vec<Interaction>,
    ) -> Result<Applied<usize>> {
        self.record_stamped(name, Some(stamp), batch)
    }

    fn record_stamped(
        &self,
        name: &TenantName,
        stamp: Option<u64>,
        batch: Vec<Interaction>,
    ) -> Result<Applied<usize>> {
        let tenant = self.tenant(name)?;
        let batch = self.weigh(batch)?;
        let count = batch.len();
        self.ordered(&tenant, stamp, |stamp| {
            self.write_interactions(&tenant, stamp, batch);
            count
        })
    }

    /// Checks a batch of interactions and weighs each by its kind and factor.
    fn weigh(&self, batch: Vec<Interaction>) -> Result<Vec<Weighted>> {
        let weights = self.config.kind_weights;
        batch
            .into_iter()
            .enumerate()
            .map(|(index, i)| {
                let factor = i.weight.unwrap_or(1.0);
                if !factor.is_finite() {
                    return Err(EngineError::InvalidArgument(
                        "an interaction's weight must be a finite number".into(),
                    )
                    .at(index));
                }
                Ok(Weighted {
                    user: i.user,
                    entity: i.entity,
                    weight: f64::from(weights.of(i.kind)) * f64::from(factor),
                    at: i.timestamp,
                })
            })
            .collect()
    }

    /// Swaps in a copy of the interaction snapshot with `batch` recorded. The caller holds the
    /// writer lock.
    fn write_interactions(&self, tenant: &Tenant, stamp: u64, batch: Vec<Weighted>) {
        let half_life = millis(self.config.half_life);
        let retention = millis(self.config.trending_retention);
        let now = self.clock.now();
        let mut next = InteractionLog::clone(&tenant.interactions.load());
        next.record(batch, half_life, now, retention);
        next.generation = self.next_generation();
        next.stamp = stamp;
        tenant.interactions.store(Arc::new(next));
    }

    /// Entities most like `id`, never `id` itself.
    pub fn similar(
        &self,
        name: &TenantName,
        id: &EntityId,
        options: &SearchOptions,
    ) -> Result<Answer> {
        self.prepare_similar(name, id, options)?.answer()
    }

    /// Entities like the positive examples and unlike the negative ones.
    pub fn recommend(&self, name: &TenantName, request: &RecommendRequest) -> Result<Answer> {
        self.prepare_recommend(name, request)?.answer()
    }

    /// Recommendations for a user from their history, or what is trending when they have none.
    pub fn recommend_for_user(
        &self,
        name: &TenantName,
        user: &UserId,
        options: &SearchOptions,
    ) -> Result<Answer> {
        self.prepare_user(name, user, options)?.answer()
    }

    /// What users interacted with most in a window, time-decayed.
    pub fn trending(&self, name: &TenantName, query: &TrendingQuery) -> Result<Answer> {
        self.prepare_trending(name, query)?.answer()
    }

    /// [`Engine::similar`], checked and bound to the current snapshot, not yet answered.
    pub fn prepare_similar(
        &self,
        name: &TenantName,
        id: &EntityId,
        options: &SearchOptions,
    ) -> Result<Prepared> {
        options.validate()?;
        let prepared = self.prepare(name, false, Question::Similar(id.clone(), options.clone()))?;
        // Refused before any cache is asked: there is no answer to look for.
        if prepared.index.slot_of(id.as_str()).is_none() {
            return Err(EngineError::EntityNotFound(id.to_string()));
        }
        Ok(prepared)
    }

    /// [`Engine::recommend`], checked and bound to the current snapshot, not yet answered.
    pub fn prepare_recommend(
        &self,
        name: &TenantName,
        request: &RecommendRequest,
    ) -> Result<Prepared> {
        request.options.validate()?;
        let question = Question::Recommend(request.clone());
        let prepared = self.prepare(name, false, question)?;
        check_examples(request, prepared.tenant.spec)?;
        Ok(prepared)
    }

    /// [`Engine::recommend_for_user`], checked and bound to the current snapshots, not yet
    /// answered.
    pub fn prepare_user(
        &self,
        name: &TenantName,
        user: &UserId,
        options: &SearchOptions,
    ) -> Result<Prepared> {
        options.validate()?;
        self.prepare(name, true, Question::User(user.clone(), options.clone()))
    }

    /// [`Engine::trending`], checked and bound to the current snapshots, not yet answered.
    pub fn prepare_trending(&self, name: &TenantName, query: &TrendingQuery) -> Result<Prepared> {
        query.validate(millis(self.config.trending_retention))?;
        self.prepare(name, true, Question::Trending(query.clone()))
    }

    fn prepare(&self, name: &TenantName, with_log: bool, question: Question) -> Result<Prepared> {
        let tenant = self.tenant(name)?;
        let index = tenant.entities.load_full();
        let log = with_log.then(|| tenant.interactions.load_full());
        Ok(Prepared {
            config: self.config.clone(),
            clock: self.clock.clone(),
            caches: self.caches.clone(),
            tenant,
            index,
            log,
            question,
        })
    }
}

/// A question, as [`Prepared`] keeps it.
#[derive(Debug)]
enum Question {
    Similar(EntityId, SearchOptions),
    Recommend(RecommendRequest),
    User(UserId, SearchOptions),
    Trending(TrendingQuery),
}

/// A question checked and bound to the snapshots it will be answered from.
///
/// It lets a host put a cache of its own behind the engine's: look in the engine's cache
/// ([`Prepared::cached`]), then in the host's under [`Prepared::shared_key`], keeping what it
/// finds there ([`Prepared::keep`]), and only then rank ([`Prepared::answer`]). It owns what
/// it reads, so a host may hand it to another thread and answer many together
/// ([`Prepared::answer_all`]).
#[derive(Debug)]
pub struct Prepared {
    config: Arc<EngineConfig>,
    clock: Arc<dyn Clock>,
    caches: Arc<Caches>,
    tenant: Arc<Tenant>,
    index: Arc<EntityIndex>,
    log: Option<Arc<InteractionLog>>,
    question: Question,
}

impl Prepared {
    /// The TTL tier its answer is cached in.
    pub fn tier(&self) -> CacheTier {
        match self.question {
            Question::Trending(_) => CacheTier::Trending,
            Question::Similar(..) | Question::Recommend(_) | Question::User(..) => {
                CacheTier::Recommendations
            }
        }
    }

    fn query_key(&self) -> QueryKey {
        match &self.question {
            Question::Similar(id, options) => QueryKey::Similar(id.clone(), options.into()),
            Question::Recommend(r) => {
                QueryKey::recommend(&r.positive, &r.negative, r.strategy, &r.options)
            }
            Question::User(user, options) => QueryKey::User(user.clone(), options.into()),
            Question::Trending(query) => QueryKey::trending(query),
        }
    }

    fn key(&self) -> Key {
        Key {
            tenant: self.tenant.name.clone(),
            generations: [
                self.index.generation,
                self.log.as_ref().map_or(0, |log| log.generation),
            ],
            query: self.query_key(),
        }
    }

    /// A name for the question and the data it reads that means the same in every engine
    /// applying the same stamped changes (see [`Engine::upsert_at`]): the tenant's lineage, the
    /// stamps of the snapshots read, and the question. A host may share answers between
    /// processes under it. The tenant's name is not part of it.
    pub fn shared_key(&self) -> String {
        format!(
            "{:x}/{}/{}/{:?}",
            self.tenant.lineage,
            self.index.stamp,
            self.log.as_ref().map_or(0, |log| log.stamp),
            self.query_key()
        )
    }

    /// The answer from the engine's cache, when it holds one.
    pub fn cached(&self) -> Option<Answer> {
        self.caches
            .peek(self.tier(), &self.key())
            .map(|ranking| Answer {
                ranking,
                cache: CacheStatus::Hit,
            })
    }

    /// Keeps an answer found elsewhere (under [`Prepared::shared_key`]) in the engine's cache,
    /// and returns it as a hit.
    pub fn keep(&self, ranking: Ranking) -> Answer {
        let ranking = Arc::new(ranking);
        self.caches.keep(self.tier(), self.key(), ranking.clone());
        Answer {
            ranking,
            cache: CacheStatus::Hit,
        }
    }

    /// The answer: from the engine's cache, or ranked now and kept there.
    pub fn answer(self) -> Result<Answer> {
        let key = || self.key();
        self.caches.ranking(self.tier(), key, || self.rank())
    }

    fn rank(&self) -> Result<Ranking> {
        let index = &self.index;
        match &self.question {
            Question::Similar(id, options) => {
                let slot = index
                    .slot_of(id.as_str())
                    .ok_or_else(|| EngineError::EntityNotFound(id.to_string()))?;
                let row = index.row(slot).expect("a mapped slot is live");
                let probe = Probe::new(row.vector, index.spec().metric);
                let mut excluded = RoaringBitmap::new();
                excluded.insert(slot);
                Ok(Ranking {
                    results: rank(index, options, excluded, Some(row.vector), |v, n| {
                        probe.goodness(v, n)
                    }),
                    missing: Vec::new(),
                    strategy: Strategy::Similar,
                })
            }
            Question::Recommend(request) => recommend(index, request),
            Question::User(user, options) => {
                let log = self.log.as_ref().expect("user questions read the log");
                self.rank_user(index, log, user, options)
            }
            Question::Trending(query) => {
                let log = self.log.as_ref().expect("trending reads the log");
                let trend = Trend {
                    now: self.clock.now(),
                    window: query.window,
                    half_life: millis(self.config.trending_half_life),
                };
                let filter = Filter {
                    category: query.category.clone(),
                    ..Filter::default()
                };
                Ok(Ranking {
                    results: trend.rank(
                        index,
                        log,
                        &filter,
                        RoaringBitmap::new(),
                        query.k,
                        query.offset,
                    ),
                    missing: Vec::new(),
                    strategy: Strategy::Trending,
                })
            }
        }
    }
}

impl Prepared {
    fn rank_user(
        &self,
        index: &EntityIndex,
        log: &InteractionLog,
        user: &UserId,
        options: &SearchOptions,
    ) -> Result<Ranking> {
        let now = self.clock.now();
        let profile = log.user(user);
        let mut interacted = RoaringBitmap::new();
        if let Some(profile) = profile {
            interacted.extend(
                profile
                    .items
                    .keys()
                    .filter_map(|e| index.slot_of(e.as_str())),
            );
        }
        let preference = profile.map_or_else(
            || Arc::new(None),
            |profile| {
                let key = || PreferenceKey {
                    tenant: self.tenant.name.clone(),
                    user: user.clone(),
                    entity_generation: index.generation,
                    user_version: profile.version,
                };
                let half_life = millis(self.config.half_life);
                self.caches
                    .preference(key, || Arc::new(preference(index, profile, now, half_life)))
            },
        );
        if let Some(vector) = preference.as_ref() {
            let probe = Probe::new(vector, index.spec().metric);
            return Ok(Ranking {
                results: rank(index, options, interacted, Some(vector), |v, n| {
                    probe.goodness(v, n)
                }),
                missing: Vec::new(),
                strategy: Strategy::Personalized,
            });
        }
        let window = Window::from_millis(millis(self.config.cold_start_window))?;
        let trend = Trend {
            now,
            window,
            half_life: millis(self.config.trending_half_life),
        };
        Ok(Ranking {
            results: trend.rank(
                index,
                log,
                &options.filter,
                interacted,
                options.k,
                options.offset,
            ),
            missing: Vec::new(),
            strategy: Strategy::Trending,
        })
    }
}

/// Extra candidates a shared scan keeps per question beyond its page, so that rounding in the
/// matrix product cannot push a true result out before the exact rescoring.
const SHARED_MARGIN: usize = 8;
/// Tenants smaller than this are scanned one question at a time: a shared pass saves little.
const SHARED_MIN_ROWS: usize = 1_000;

impl Prepared {
    /// Whether [`Prepared::answer_all`] answers this question in a pass shared with others: an
    /// exact search (asked for, or configured) for the neighbours of an entity, with no
    /// category or tag filter, in a tenant of at least 1,000 entities. Searches a graph
    /// answers gain nothing from sharing, and neither do filtered ones, which read few rows.
    pub fn batchable(&self) -> bool {
        let Question::Similar(_, options) = &self.question else {
            return false;
        };
        let filter = &options.filter;
        (options.exact || self.config.search.exact)
            && filter.category.is_none()
            && filter.tags_any.is_empty()
            && filter.tags_all.is_empty()
            && self.index.len() >= SHARED_MIN_ROWS
    }

    /// Answers many questions, in order. Cached answers are taken from the cache. Batchable
    /// questions (see [`Prepared::batchable`]) that read the same snapshot are answered in one
    /// pass over its rows: each row is read once for all of them, through a matrix product.
    /// Their best candidates are then rescored exactly, so the answers and scores are the ones
    /// [`Prepared::answer`] gives. Every other question is answered on its own.
    pub fn answer_all(batch: Vec<Prepared>) -> Vec<Result<Answer>> {
        let mut answers: Vec<Option<Result<Answer>>> =
            batch.iter().map(|p| p.cached().map(Ok)).collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, prepared) in batch.iter().enumerate() {
            if answers[i].is_some() || !prepared.batchable() {
                continue;
            }
            match groups
                .iter_mut()
                .find(|g| Arc::ptr_eq(&batch[g[0]].index, &prepared.index))
            {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        for group in groups.iter().filter(|g| g.len() > 1) {
            let members: Vec<&Prepared> = group.iter().map(|&i| &batch[i]).collect();
            for (&i, ranking) in group.iter().zip(similar_together(&members)) {
                answers[i] = Some(ranking.map(|r| batch[i].store(r)));
            }
        }
        batch
            .into_iter()
            .zip(answers)
            .map(|(prepared, answer)| answer.unwrap_or_else(|| prepared.answer()))
            .collect()
    }

    /// Keeps a ranking made now in the engine's cache, and returns it as a miss.
    fn store(&self, ranking: Ranking) -> Answer {
        let ranking = Arc::new(ranking);
        self.caches.keep(self.tier(), self.key(), ranking.clone());
        Answer {
            ranking,
            cache: CacheStatus::Miss,
        }
    }
}

/// Batchable similar questions about one snapshot, answered in one pass over its rows.
fn similar_together(members: &[&Prepared]) -> Vec<Result<Ranking>> {
    let index = &members[0].index;
    let metric = index.spec().metric;
    let mut rankings: Vec<Option<Result<Ranking>>> = members.iter().map(|_| None).collect();
    let mut live = Vec::with_capacity(members.len());
    for (m, prepared) in members.iter().enumerate() {
        let Question::Similar(id, options) = &prepared.question else {
            rankings[m] = Some(prepared.rank());
            continue;
        };
        match index.slot_of(id.as_str()) {
            Some(slot) => live.push((m, slot, options)),
            None => rankings[m] = Some(Err(EngineError::EntityNotFound(id.to_string()))),
        }
    }
    let probes: Vec<Probe<'_>> = live
        .iter()
        .map(|&(_, slot, _)| {
            Probe::new(
                index.row(slot).expect("a mapped slot is live").vector,
                metric,
            )
        })
        .collect();
    let excluded: Vec<RoaringBitmap> = live
        .iter()
        .map(|&(_, slot, options)| {
            let mut own = RoaringBitmap::new();
            own.insert(slot);
            index.excluding(&options.filter.exclude, own)
        })
        .collect();
    let pools: Vec<usize> = live
        .iter()
        .map(|(_, _, options)| pool_size(options))
        .collect();
    let mut tops: Vec<TopK<'_>> = pools
        .iter()
        .map(|&p| TopK::new(p + SHARED_MARGIN))
        .collect();
    index.scan_many(&probes, &excluded, &mut tops);
    for ((&(m, _, options), probe), (rough, &pool)) in
        live.iter().zip(&probes).zip(tops.into_iter().zip(&pools))
    {
        let floor = options
            .score_threshold
            .map_or(f32::NEG_INFINITY, |t| goodness_floor(metric, t));
        let mut top = TopK::new(pool);
        for candidate in rough.into_sorted() {
            let row = index.row(candidate.slot).expect("scanned slots are live");
            let g = probe.goodness(row.vector, row.inverse_norm);
            if g >= floor {
                top.offer(g, candidate.slot, || row.record.id.as_str());
            }
        }
        rankings[m] = Some(Ok(Ranking {
            results: page(index, options, top),
            missing: Vec::new(),
            strategy: Strategy::Similar,
        }));
    }
    rankings
        .into_iter()
        .map(|r| r.expect("every member is answered"))
        .collect()
}

/// How many candidates a search keeps before paging: the page, or more for diversity to
/// choose from.
fn pool_size(options: &SearchOptions) -> usize {
    let want = options.k + options.offset;
    if options.diversity > 0.0 {
        mmr::pool_size(want)
    } else {
        want
    }
}

/// What a write without a host stamp returns.
fn done<T>(applied: Applied<T>) -> T {
    match applied {
        Applied::Done(out) => out,
        Applied::Already => unreachable!("a write without a stamp takes the next one"),
    }
}

/// Ranks the candidates of `options` by `goodness`, with threshold, offset and diversity. With
/// a `query` vector (every mode but `best_score` has one) and no call for exactness, the first
/// plan that fills the page answers: the graph, when the tenant has one; the scan of int8 codes
/// rescored in f32, when it keeps them; and last the exact scan of every candidate.
fn rank(
    index: &EntityIndex,
    options: &SearchOptions,
    excluded: RoaringBitmap,
    query: Option<&[f32]>,
    mut goodness: impl FnMut(&[f32], f32) -> f32,
) -> Vec<Scored> {
    let metric = index.spec().metric;
    let floor = options
        .score_threshold
        .map_or(f32::NEG_INFINITY, |t| goodness_floor(metric, t));
    let pool = pool_size(options);
    let candidates = index.candidates(&options.filter, excluded);
    let exact = options.exact || index.search_config().exact;
    let mut top = TopK::new(pool);
    // An approximate plan that could not fill the page (a threshold, or a filter, left too few
    // near the query) is no proof that the page cannot be filled: the next plan runs.
    let mut filled = false;
    if let Some(query) = query.filter(|_| !exact) {
        filled = index.search_approximate(query, &candidates, pool, floor, &mut top, &mut goodness)
            && top.is_full();
        if !filled {
            top = TopK::new(pool);
            filled =
                index.search_quantized(query, &candidates, pool, floor, &mut top, &mut goodness)
                    && top.is_full();
        }
    }
    if !filled {
        top = TopK::new(pool);
        index.scan(&candidates, floor, &mut top, goodness);
    }
    page(index, options, top)
}

/// The page `options` asks for from the best candidates: re-ranked for diversity, offset, and
/// turned into ids and scores.
fn page(index: &EntityIndex, options: &SearchOptions, top: TopK<'_>) -> Vec<Scored> {
    let metric = index.spec().metric;
    let want = options.k + options.offset;
    let mut picked = top.into_sorted();
    if options.diversity > 0.0 {
        picked = mmr::rerank(index, picked, want, options.diversity);
    }
    picked
        .iter()
        .skip(options.offset)
        .map(|c| Scored {
            id: index
                .row(c.slot)
                .expect("picked slots are live")
                .record
                .id
                .clone(),
            score: score_of(metric, c.goodness),
        })
        .collect()
}

/// Checks what can be checked of examples without the data: counts, weights and raw vectors.
fn check_examples(request: &RecommendRequest, spec: TenantSpec) -> Result<()> {
    match request.strategy {
        ExampleStrategy::AverageVector if request.positive.is_empty() => {
            return Err(EngineError::InvalidArgument(
                "average_vector needs at least one positive example".into(),
            ));
        }
        ExampleStrategy::BestScore
            if request.positive.is_empty() && request.negative.is_empty() =>
        {
            return Err(EngineError::InvalidArgument(
                "best_score needs at least one positive or negative example".into(),
            ));
        }
        ExampleStrategy::AverageVector | ExampleStrategy::BestScore => {}
    }
    for (list, examples) in [
        ("positive", &request.positive),
        ("negative", &request.negative),
    ] {
        for (index, example) in examples.iter().enumerate() {
            if !(example.weight.is_finite() && example.weight > 0.0) {
                return Err(EngineError::InvalidArgument(format!(
                    "{list} example {index}: a weight is a finite number above 0, not {}",
                    example.weight
                )));
            }
            if let ExampleTarget::Vector(v) = &example.target {
                Embedding::new(v.clone(), spec).map_err(|e| {
                    EngineError::InvalidVector(format!("{list} example {index}: {e}"))
                })?;
            }
        }
    }
    Ok(())
}

/// An example found in the snapshot or given raw: its vector, inverse norm and weight.
struct Resolved {
    vector: Vec<f32>,
    inverse_norm: f32,
    weight: f32,
}

impl Resolved {
    fn probe(&self, metric: Metric) -> Probe<'_> {
        Probe {
            vector: &self.vector,
            metric,
            inverse_norm: self.inverse_norm,
        }
    }
}

/// Looks up examples by id, noting the slots to exclude and the ids that do not exist.
fn resolve(
    index: &EntityIndex,
    examples: &[Example],
    excluded: &mut RoaringBitmap,
    missing: &mut Vec<EntityId>,
) -> Vec<Resolved> {
    let mut out = Vec::with_capacity(examples.len());
    for example in examples {
        let (vector, inverse_norm) = match &example.target {
            ExampleTarget::Vector(v) => (v.clone(), inverse_norm(v)),
            ExampleTarget::Id(id) => {
                let found = index
                    .slot_of(id.as_str())
                    .and_then(|s| Some((s, index.row(s)?)));
                let Some((slot, row)) = found else {
                    if !missing.contains(id) {
                        missing.push(id.clone());
                    }
                    continue;
                };
                excluded.insert(slot);
                (row.vector.to_vec(), row.inverse_norm)
            }
        };
        out.push(Resolved {
            vector,
            inverse_norm,
            weight: example.weight,
        });
    }
    out
}

fn recommend(index: &EntityIndex, request: &RecommendRequest) -> Result<Ranking> {
    let metric = index.spec().metric;
    let mut missing = Vec::new();
    let mut excluded = RoaringBitmap::new();
    let positive = resolve(index, &request.positive, &mut excluded, &mut missing);
    let negative = resolve(index, &request.negative, &mut excluded, &mut missing);
    let none_left = |what: &str| {
        let ids: Vec<&str> = missing.iter().map(EntityId::as_str).collect();
        EngineError::NoUsableExamples(format!("{what}; missing: {}", ids.join(", ")))
    };
    let options = &request.options;
    let results = match request.strategy {
        ExampleStrategy::AverageVector => {
            if positive.is_empty() {
                return Err(none_left("no positive example exists"));
            }
            let query = average(&positive, &negative, index.spec().dimension, metric);
            if metric == Metric::Cosine && query.iter().all(|x| *x == 0.0) {
                return Err(EngineError::InvalidArgument(
                    "the positive and negative examples cancel out, leaving no direction to search"
                        .into(),
                ));
            }
            let probe = Probe::new(&query, metric);
            rank(index, options, excluded, Some(&query), |v, n| {
                probe.goodness(v, n)
            })
        }
        ExampleStrategy::BestScore => {
            if positive.is_empty() && negative.is_empty() {
                return Err(none_left("no example exists"));
            }
            let best = |list: &[Resolved], v: &[f32], n: f32| {
                (!list.is_empty()).then(|| {
                    list.iter()
                        .map(|r| r.probe(metric).goodness(v, n))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
            };
            rank(index, options, excluded, None, |v, n| {
                best_score(best(&positive, v, n), best(&negative, v, n))
            })
        }
    };
    let strategy = match request.strategy {
        ExampleStrategy::AverageVector => Strategy::AverageVector,
        ExampleStrategy::BestScore => Strategy::BestScore,
    };
    Ok(Ranking {
        results,
        missing,
        strategy,
    })
}

/// Combines a candidate's goodness against its best positive and best negative example.
/// With both, a candidate closer to a negative than to any positive is pushed down by the gap;
/// with negatives only, the farther from every negative the better.
pub(crate) fn best_score(positive: Option<f32>, negative: Option<f32>) -> f32 {
    match (positive, negative) {
        (Some(p), Some(n)) if n > p => p - (n - p),
        (Some(p), Some(_) | None) => p,
        (None, Some(n)) => -n,
        (None, None) => f32::NEG_INFINITY,
    }
}

/// The weighted mean of positives minus the weighted mean of negatives. Under cosine each
/// example counts by direction: it is scaled to unit length first.
fn average(positive: &[Resolved], negative: &[Resolved], dim: usize, metric: Metric) -> Vec<f32> {
    let mut query = vec![0.0f64; dim];
    for (list, sign) in [(positive, 1.0), (negative, -1.0)] {
        let total: f64 = list.iter().map(|r| f64::from(r.weight)).sum();
        for r in list {
            let unit = if metric == Metric::Cosine {
                r.inverse_norm
            } else {
                1.0
            };
            let scale = sign * f64::from(r.weight) / total * f64::from(unit);
            for (q, x) in query.iter_mut().zip(&r.vector) {
                *q += scale * f64::from(*x);
            }
        }
    }
    query.into_iter().map(|x| x as f32).collect()
}

/// A user's preference vector at `now`: the time-decayed, weighted sum of the vectors of the
/// entities they touched (unit vectors under cosine), negatives subtracting. Under euclidean it
/// is divided by the total positive weight, so that it is a point among the entities. `None`
/// when no entity with a positive weight is left.
fn preference(
    index: &EntityIndex,
    profile: &UserProfile,
    now: Millis,
    half_life: Millis,
) -> Option<Vec<f32>> {
    let metric = index.spec().metric;
    let mut sum = vec![0.0f64; index.spec().dimension];
    let mut positive_total = 0.0f64;
    for (entity, decayed) in &profile.items {
        let Some(row) = index.slot_of(entity.as_str()).and_then(|s| index.row(s)) else {
            continue;
        };
        let weight = decayed.value_at(now, half_life);
        if weight > 0.0 {
            positive_total += weight;
        }
        let unit = if metric == Metric::Cosine {
            row.inverse_norm
        } else {
            1.0
        };
        let scale = weight * f64::from(unit);
        for (s, x) in sum.iter_mut().zip(row.vector) {
            *s += scale * f64::from(*x);
        }
    }
    if positive_total <= 0.0 {
        return None;
    }
    let divisor = if metric == Metric::Euclidean {
        positive_total
    } else {
        1.0
    };
    let vector: Vec<f32> = sum.into_iter().map(|s| (s / divisor) as f32).collect();
    let usable = vector.iter().all(|x| x.is_finite())
        && !(metric == Metric::Cosine && vector.iter().all(|x| *x == 0.0));
    usable.then_some(vector)
}

/// A trending score, ordered for a max-heap.
struct ByScore<'a>(f32, &'a EntityId);

impl PartialEq for ByScore<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for ByScore<'_> {}
impl PartialOrd for ByScore<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByScore<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// How trending is measured for one query.
struct Trend {
    now: Millis,
    window: Window,
    half_life: Millis,
}

impl Trend {
    fn rank(
        &self,
        index: &EntityIndex,
        log: &InteractionLog,
        filter: &Filter,
        excluded: RoaringBitmap,
        k: usize,
        offset: usize,
    ) -> Vec<Scored> {
        let candidates = index.candidates(filter, excluded);
        let mut top = TopK::new(k + offset);
        // Highest score first, so that only as many ids are looked up as it takes to fill the
        // page: the lookups, not the sums, are what cost. Once the page is full a lower score
        // cannot enter, but an equal one can (ties go by id), so stop only below the bar.
        let mut heap: BinaryHeap<ByScore<'_>> = log
            .trending(self.now, self.window.millis(), self.half_life)
            .into_iter()
            .map(|(id, score)| ByScore(score as f32, id))
            .collect();
        while let Some(ByScore(score, id)) = heap.pop() {
            if top.is_full() && score < top.bar() {
                break;
            }
            let Some(slot) = index.slot_of(id.as_str()) else {
                continue;
            };
            let allowed = match &candidates {
                Candidates::All { excluded } => !excluded.contains(slot),
                Candidates::Only(slots) => slots.contains(slot),
            };
            if allowed {
                top.offer(score, slot, || id.as_str());
            }
        }
        top.into_sorted()
            .iter()
            .skip(offset)
            .map(|c| Scored {
                id: index
                    .row(c.slot)
                    .expect("a mapped slot is live")
                    .record
                    .id
                    .clone(),
                score: c.goodness,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_score_pushes_down_by_the_nearer_negative() {
        assert_eq!(best_score(Some(0.9), None), 0.9);
        assert_eq!(best_score(Some(0.9), Some(0.5)), 0.9);
        assert!((best_score(Some(0.5), Some(0.9)) - 0.1).abs() < 1e-6);
        assert_eq!(best_score(None, Some(0.9)), -0.9);
    }
}
