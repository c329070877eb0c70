//! The engine's facade. [`Engine`] owns the tenants, the cache and the clock, and hands each
//! feature to a module of its own, as rust-analyzer's `ide` crate does; a new feature gets a
//! module here and a one-line method on `Engine`.
//!
//! - `tenants`: the registry, staging a tenant off to the side and installing it whole.
//! - `writes`: stamped writes of entities and interactions.
//! - `prepared`: a question bound to its snapshots; its cache keys; the dispatch to each mode.
//! - `plans`: the chain of search plans (graph, int8 scan, exact) and the page.
//! - `similar`, `recommend`, `users`, `trending`: one query mode each.
//! - `shared`: many exact similar questions answered in one pass over the rows.
//! - `collaborative`: the model learnt from interactions, its space, and the fold-in.

mod collaborative;
mod cost;
mod image;
mod plans;
mod prepared;
mod recommend;
mod shared;
mod similar;
mod tenants;
mod trending;
mod users;
mod writes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub use collaborative::{Learning, ModelInfo, ModelParts};
pub use cost::{Cost, CostPart};
pub use image::TenantImage;
pub use prepared::Prepared;
use tenants::Tenant;
pub use tenants::{Created, Installed, StagedTenant};
pub use writes::Applied;

use crate::cache::Caches;
use crate::checked::{CheckedEntities, CheckedInteractions};
use crate::config::{Clock, EngineConfig, SystemClock};
use crate::error::{EngineError, Result};
use crate::index::RecallEstimate;
use crate::model::{
    EntityId, EntityView, Interaction, Millis, NewEntity, TenantInfo, TenantName, TenantSpec,
    UserHistory, UserId,
};
use crate::query::{Answer, RecommendRequest, SearchOptions, Space, TrendingQuery, UserStrategy};
use crate::stamp::{ChangeId, Generation, Lineage, Stamp};

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

    fn next_generation(&self) -> Generation {
        Generation(self.generations.fetch_add(1, Ordering::Relaxed))
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
        self.create_tenant_at(name, spec, Lineage::NONE, Stamp::ZERO)
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

    /// Answers again, off the request path, one of the questions the tenant's graph answered
    /// lately (one in 32 is kept): exactly, and through the graph at each breadth of
    /// [`crate::LADDER`], for [`Engine::tune_search_breadth`]. False when none was waiting. It costs an
    /// exact scan of the tenant and a few graph searches: a host calls it from a background
    /// task, as often as it can spare the time.
    pub fn audit_recall(&self, name: &TenantName) -> Result<bool> {
        let index = self.tenant(name)?.entities.load_full();
        let Some(sample) = index.recall().take() else {
            return Ok(false);
        };
        if let Some(recalls) = index.audit(&sample) {
            index.recall().record(recalls);
        }
        Ok(true)
    }

    /// What the tenant's recall audits say at `target` (recall@k of the questions audited
    /// lately), and the least breadth of [`crate::LADDER`] that holds it, which the tenant's graph
    /// then searches with; `None`, the breadth unchanged, until enough questions were audited.
    pub fn tune_search_breadth(
        &self,
        name: &TenantName,
        target: f64,
    ) -> Result<Option<RecallEstimate>> {
        let index = self.tenant(name)?.entities.load();
        let estimate = index.recall().estimate(target);
        if let Some(estimate) = estimate
            && index.has_graph()
            && index.search_breadth() != estimate.breadth
        {
            index.set_expansion_search(estimate.breadth);
        }
        Ok(estimate)
    }

    /// What the tenant's recall audits say at `target`, as [`Engine::tune_search_breadth`]
    /// would choose, without changing anything.
    pub fn recall_estimate(
        &self,
        name: &TenantName,
        target: f64,
    ) -> Result<Option<RecallEstimate>> {
        Ok(self.tenant(name)?.entities.load().recall().estimate(target))
    }

    /// How many candidates the tenant's graph considers per search now (HNSW's ef); `None`
    /// when it has no graph.
    pub fn search_breadth(&self, name: &TenantName) -> Result<Option<usize>> {
        let index = self.tenant(name)?.entities.load();
        Ok(index.has_graph().then(|| index.search_breadth()))
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
    /// first checks once, writes the checked batch to storage, and applies the same batch with
    /// [`Engine::upsert_at`], which does not check it again.
    pub fn check_entities(
        &self,
        name: &TenantName,
        batch: Vec<NewEntity>,
    ) -> Result<CheckedEntities> {
        CheckedEntities::new(self.tenant(name)?.spec, batch)
    }

    /// A tenant's content spec ([`TenantSpec::WITHOUT_VECTORS`] when it keeps none).
    pub fn spec(&self, name: &TenantName) -> Result<TenantSpec> {
        Ok(self.tenant(name)?.spec)
    }

    /// The lineage a tenant was made with (see [`Engine::create_tenant_at`]).
    pub fn lineage(&self, name: &TenantName) -> Result<Lineage> {
        Ok(self.tenant(name)?.lineage)
    }

    /// The stamp of the last change applied to a tenant. It never waits for a write in
    /// progress (async hosts ask it while a graph build may hold the writer for seconds).
    pub fn applied(&self, name: &TenantName) -> Result<Stamp> {
        Ok(Stamp::new(
            self.tenant(name)?.applied.load(Ordering::Acquire),
        ))
    }

    /// An entity as it was stored.
    pub fn get(&self, name: &TenantName, id: &EntityId) -> Result<EntityView> {
        self.tenant(name)?
            .entities
            .load()
            .get(id.as_str())
            .ok_or_else(|| EngineError::EntityNotFound(id.to_string()))
    }

    /// A page of a tenant's entities in id order (by bytes): up to `limit` whose ids come
    /// after `after`, and whether more follow the last.
    pub fn entities(
        &self,
        name: &TenantName,
        after: Option<&EntityId>,
        limit: usize,
    ) -> Result<(Vec<EntityView>, bool)> {
        let index = self.tenant(name)?.entities.load();
        let mut page = index.page(after.map(EntityId::as_str), limit.saturating_add(1));
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
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

    /// A user's history as their recommendations read it, the most recent `limit` entities
    /// first; `None` when the tenant holds no interaction of the user.
    pub fn user_history(
        &self,
        name: &TenantName,
        user: &UserId,
        limit: usize,
    ) -> Result<Option<UserHistory>> {
        users::history(self, name, user, limit)
    }

    /// What users interacted with most in a window, time-decayed.
    pub fn trending(&self, name: &TenantName, query: &TrendingQuery) -> Result<Answer> {
        self.prepare_trending(name, query)?.answer()
    }

    /// Makes a tenant for a host that orders its changes (see [`Engine::upsert_at`]): `lineage`
    /// names this incarnation of the tenant (a tenant deleted and made again gets another), and
    /// `stamp` is the stamp of the last change the tenant's data already holds. It finds the
    /// tenant when it exists with the same settings and lineage.
    pub fn create_tenant_at(
        &self,
        name: TenantName,
        spec: TenantSpec,
        lineage: Lineage,
        stamp: Stamp,
    ) -> Result<Created> {
        tenants::create(self, name, spec, lineage, stamp)
    }

    /// Removes a tenant and everything in it.
    pub fn drop_tenant(&self, name: &TenantName) -> Result<()> {
        tenants::remove(self, name)
    }

    /// The names of every tenant, sorted.
    pub fn tenants(&self) -> Vec<TenantName> {
        tenants::names(self)
    }

    /// A tenant's settings and sizes.
    pub fn tenant_info(&self, name: &TenantName) -> Result<TenantInfo> {
        tenants::info(self, name)
    }

    /// Starts a tenant off to the side, for a host loading it from storage: made at the
    /// `stamp` of the version read, filled with [`Engine::restore_entities`] and
    /// [`Engine::restore_interactions`] (rows that version accounts for), then swapped in whole
    /// by [`Engine::install`]. Readers and writers see the tenant they had until then.
    pub fn stage_tenant(
        &self,
        name: TenantName,
        spec: TenantSpec,
        lineage: Lineage,
        stamp: Stamp,
    ) -> Result<StagedTenant> {
        tenants::stage(self, name, spec, lineage, stamp)
    }

    /// A tenant's entities as plain data, slot by slot, with its graph, for a host to keep in
    /// a file (see [`TenantImage`]); taken while no write to the tenant runs.
    pub fn image(&self, name: &TenantName) -> Result<TenantImage> {
        image::take(self, name)
    }

    /// Stages a tenant from an image, as [`Engine::stage_tenant`] and
    /// [`Engine::restore_entities`] would from storage's rows, without building its graph
    /// again; the host restores its interactions and installs it. An image that does not
    /// describe a valid tenant is refused whole.
    pub fn stage_image(&self, image: TenantImage) -> Result<StagedTenant> {
        image::stage(self, image)
    }

    /// Adds entities to a staged tenant.
    pub fn restore_entities(&self, staged: &StagedTenant, batch: Vec<NewEntity>) -> Result<usize> {
        tenants::restore_entities(self, staged, batch)
    }

    /// Deletes entities from a staged tenant (a host catching an image up with storage);
    /// returns how many it held.
    pub fn restore_deletes(&self, staged: &StagedTenant, ids: &[EntityId]) -> usize {
        tenants::restore_deletes(self, staged, ids)
    }

    /// Adds interactions to a staged tenant, in the order they were recorded.
    pub fn restore_interactions(
        &self,
        staged: &StagedTenant,
        batch: Vec<Interaction>,
    ) -> Result<usize> {
        tenants::restore_interactions(self, staged, batch)
    }

    /// Swaps a staged tenant in, in place of any tenant of that name, unless the live one is
    /// the same incarnation and has applied every change the staged one holds (it is at or past
    /// the staged stamp): then the live one stays, with its cached answers, and holds all the
    /// staged one would. Writes waiting for the replaced tenant land on the new one. It waits
    /// for the live tenant's writer, never holding up readers or writers of other tenants.
    pub fn install(&self, staged: StagedTenant) -> Installed {
        tenants::install(self, staged)
    }

    /// Inserts or replaces a batch of entities: all of them, or none when any is invalid.
    /// Returns how many were written.
    pub fn upsert(&self, name: &TenantName, batch: Vec<NewEntity>) -> Result<usize> {
        writes::upsert(self, name, batch)
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
        change: ChangeId,
        batch: CheckedEntities,
    ) -> Result<Applied<usize>> {
        writes::upsert_stamped(self, name, Some(change), batch)
    }

    /// Deletes an entity; false when it did not exist.
    pub fn delete(&self, name: &TenantName, id: &EntityId) -> Result<bool> {
        writes::delete(self, name, id)
    }

    /// [`Engine::delete`] as the change stamped `stamp` (see [`Engine::upsert_at`]). The stamp
    /// is taken even when the entity is not there.
    pub fn delete_at(
        &self,
        name: &TenantName,
        change: ChangeId,
        id: &EntityId,
    ) -> Result<Applied<bool>> {
        writes::delete_stamped(self, name, Some(change), id)
    }

    /// Records a batch of interactions: all of them, or none when any is invalid.
    pub fn record(&self, name: &TenantName, batch: Vec<Interaction>) -> Result<usize> {
        writes::record(self, name, batch)
    }

    /// [`Engine::record`] as the change stamped `stamp` (see [`Engine::upsert_at`]).
    pub fn record_at(
        &self,
        name: &TenantName,
        change: ChangeId,
        batch: CheckedInteractions,
    ) -> Result<Applied<usize>> {
        writes::record_stamped(self, name, Some(change), batch)
    }

    /// [`Engine::similar`], checked and bound to the current snapshot, not yet answered.
    pub fn prepare_similar(
        &self,
        name: &TenantName,
        id: &EntityId,
        options: &SearchOptions,
    ) -> Result<Prepared> {
        similar::prepare(self, name, id, options)
    }

    /// [`Engine::recommend`], checked and bound to the current snapshot, not yet answered.
    pub fn prepare_recommend(
        &self,
        name: &TenantName,
        request: &RecommendRequest,
    ) -> Result<Prepared> {
        recommend::prepare(self, name, request)
    }

    /// [`Engine::recommend_for_user`], checked and bound to the current snapshots, not yet
    /// answered.
    pub fn prepare_user(
        &self,
        name: &TenantName,
        user: &UserId,
        options: &SearchOptions,
    ) -> Result<Prepared> {
        let strategy = match options.space {
            Space::Content => UserStrategy::Content,
            Space::Collaborative => UserStrategy::Collaborative,
        };
        users::prepare(self, name, user, options, strategy)
    }

    /// [`Engine::prepare_user`] by `strategy` (the `space` of `options` is then not read).
    pub fn prepare_user_by(
        &self,
        name: &TenantName,
        user: &UserId,
        options: &SearchOptions,
        strategy: UserStrategy,
    ) -> Result<Prepared> {
        users::prepare(self, name, user, options, strategy)
    }

    /// [`Engine::trending`], checked and bound to the current snapshots, not yet answered.
    pub fn prepare_trending(&self, name: &TenantName, query: &TrendingQuery) -> Result<Prepared> {
        trending::prepare(self, name, query)
    }

    /// Trains the tenant's collaborative model on its interactions as they are now (see
    /// `reco_learn`), and serves it in place of the last one: `similar` and user
    /// recommendations in [`Space::Collaborative`](crate::Space) search its item factors. It
    /// computes for as long as the training takes, on the calling thread: call it off the
    /// request path.
    pub fn train_collaborative(
        &self,
        name: &TenantName,
        params: &reco_learn::Params,
    ) -> Result<ModelInfo> {
        collaborative::train(self, name, params)
    }

    /// Serves a model a host kept (see [`ModelParts`]), from this process or another, unless
    /// the tenant serves that version or a later one: `None` then. Its space is built now,
    /// from the entities as they are.
    pub fn install_model(&self, name: &TenantName, parts: ModelParts) -> Result<Option<ModelInfo>> {
        collaborative::install(self, name, parts)
    }

    /// Sets how the tenant's collaborative model is trained (see [`Learning`]); the host reads
    /// it back in [`Engine::tenant_info`].
    pub fn set_learning(&self, name: &TenantName, learning: Learning) -> Result<()> {
        self.tenant(name)?.learning.store(Arc::new(learning));
        Ok(())
    }

    /// The tenant's collaborative model as a host keeps it, when it has one.
    pub fn model_parts(&self, name: &TenantName) -> Result<Option<ModelParts>> {
        collaborative::parts(self, name)
    }

    /// The tenant's collaborative model, when it has been trained.
    pub fn model_info(&self, name: &TenantName) -> Result<Option<ModelInfo>> {
        collaborative::model_info(self, name)
    }
}
