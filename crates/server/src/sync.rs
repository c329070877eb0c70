//! Keeping the engine in step with storage: the warm-up at start, the change feed after it, and
//! the order in which this server's own writes reach the engine.
//!
//! Storage numbers each tenant's changes 1, 2, 3, ... in commit order (its version), and the
//! engine applies them in that order, each once (see `Engine::upsert_at`). A handler applies
//! its own change as soon as the changes before it are in; the feed brings every change, this
//! server's too, and applies what is not in yet; both go through the `applier`'s queue. So
//! every server that applied the same stamps holds the same data, which is what lets servers
//! share cached answers in Redis.

use std::time::{Duration, Instant};

use actix_web::web;
use reco_engine::{
    ChangeId, CheckedInteractions, Engine, EngineError, EntityId, Installed, Interaction,
    NewEntity, StagedTenant, Stamp, TenantImage, TenantName,
};
use reco_storage::{Change, ChangeFeed, LoadSink, PgStore, StorageError, Store, TenantRecord};

use crate::error::ApiError;
use crate::images;
use crate::progress::progress_bar;
use crate::state::AppState;

/// How long a write waits for the changes before it to reach the engine before it reloads the
/// tenant instead.
const TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The engine refused what storage held.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A change that could not be applied answers as its cause would.
impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Storage(e) => e.into(),
            SyncError::Engine(e) => e.into(),
        }
    }
}

/// Subscribes to the change feed (PostgreSQL only), loads every tenant (retrying until storage
/// answers), marks the service ready, then applies changes as they come. The feed is subscribed
/// before the load, so a change committed while the load runs is heard afterwards: if the load
/// saw it already, its stamp is simply not applied again.
pub async fn warm_up_then_follow(state: web::Data<AppState>) {
    let feed = match &state.store {
        Store::Postgres(_) => Some(subscribe(&state).await),
        Store::Sqlite(_) => None,
    };
    let mut delay = Duration::from_millis(200);
    while let Err(e) = load_all(&state).await {
        tracing::warn!(error = %e, "loading the indexes failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    state.set_ready();
    if let (Store::Postgres(pg), Some(feed)) = (&state.store, feed) {
        follow(&state, pg, feed).await;
    }
}

/// Subscribes to the change feed, retrying until the database answers.
async fn subscribe(state: &AppState) -> ChangeFeed {
    loop {
        match state.store.subscribe().await {
            Ok(Some(feed)) => return feed,
            Ok(None) => unreachable!("only PostgreSQL is followed"),
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to the change feed failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Replaces the engine's tenants with what storage holds: entities, and interactions within
/// the history window. Tenants storage no longer has are dropped.
async fn load_all(state: &AppState) -> Result<(), SyncError> {
    let started = Instant::now();
    let tenants = state.store.tenants().await?;
    for gone in state.engine.tenants() {
        if !tenants.iter().any(|(name, _)| *name == gone) {
            let _ = state.engine.drop_tenant(&gone);
            state.set_rate_limit(&gone, None);
        }
    }
    let bar = progress_bar();
    let (mut entities, mut interactions) = (0, 0);
    for (n, (name, _)) in tenants.iter().enumerate() {
        bar.set_prefix(format!("tenant {} of {}", n + 1, tenants.len()));
        // Images are read at start only: a reload later is of a tenant that moved on since.
        let image = images::read(state, name).await;
        if let Some(loaded) = load_tenant(state, name, &bar, image).await? {
            entities += loaded.entities;
            interactions += loaded.interactions;
        }
    }
    bar.finish_and_clear();
    // Writes queued for tenants storage no longer has learn so.
    state.applier.kick_all(&state.engine);
    tracing::info!(
        tenants = tenants.len(),
        entities,
        interactions,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "ready: the indexes are loaded"
    );
    Ok(())
}

/// Puts what storage reads into a tenant staged off to the side: made at the version read,
/// then filled with the rows that version accounts for.
struct Restore<'a> {
    engine: &'a Engine,
    tenant: &'a TenantName,
    staged: Option<StagedTenant>,
    /// The tenant's own request budget, which the server keeps (not the engine).
    rate_limit: Option<std::num::NonZeroU32>,
    /// The tenant's image from the data folder, if any: used when it is of the version read.
    image: Option<TenantImage>,
    /// How many entities the image brought, when it was used.
    from_image: Option<usize>,
    /// Whether storage can say what changed since an image's stamp (PostgreSQL keeps each
    /// row's stamp; the embedded database does not, and has one server only).
    can_catch_up: bool,
    /// An image older than the record: its stamp and its entities' ids, to catch up from.
    behind: Option<(Stamp, Vec<EntityId>)>,
    /// Whether the image used was of the record's version (the file on disk is current).
    image_current: bool,
}

fn refused(e: &EngineError) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

impl Restore<'_> {
    fn staged(&self) -> reco_storage::Result<&StagedTenant> {
        self.staged
            .as_ref()
            .ok_or_else(|| StorageError::Corrupt("rows came before their tenant".into()))
    }

    /// The tenant staged from its image, when the image is of the incarnation storage holds
    /// and of its version, or behind it where storage can say what changed since: then it is
    /// staged at storage's version and caught up in `caught_up`. `None` (with a warning) for
    /// any other image, or one the engine refuses: the tenant then loads from storage.
    fn stage_image(
        &mut self,
        mut image: TenantImage,
        record: &TenantRecord,
    ) -> Option<StagedTenant> {
        let current = image.stamp == record.version;
        let behind = image.stamp < record.version && self.can_catch_up;
        if image.lineage != record.lineage || !(current || behind) {
            tracing::warn!(
                tenant = %self.tenant,
                image = %format!("{} {}", image.lineage, image.stamp),
                storage = %format!("{} {}", record.lineage, record.version),
                "the tenant's image is stale or of another incarnation; loading from storage"
            );
            return None;
        }
        let entities = image.entities.len();
        let from = image.stamp;
        let ids: Vec<EntityId> = if behind {
            image.entities.iter().map(|e| e.id.clone()).collect()
        } else {
            Vec::new()
        };
        image.stamp = record.version;
        match blocking_here(|| self.engine.stage_image(image)) {
            Ok(staged) => {
                self.from_image = Some(entities);
                self.behind = (!current).then_some((from, ids));
                self.image_current = current;
                Some(staged)
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "the tenant's image is ignored; loading from storage");
                None
            }
        }
    }
}

impl LoadSink for Restore<'_> {
    fn tenant(&mut self, record: TenantRecord) -> reco_storage::Result<()> {
        let from_image = self
            .image
            .take()
            .and_then(|image| self.stage_image(image, &record));
        let staged = match from_image {
            Some(staged) => staged,
            None => self
                .engine
                .stage_tenant(
                    self.tenant.clone(),
                    record.spec,
                    record.lineage,
                    record.version,
                )
                .map_err(|e| refused(&e))?,
        };
        staged.set_learning(record.learning);
        self.staged = Some(staged);
        self.rate_limit = record.rate_limit;
        Ok(())
    }

    fn older_interactions(&mut self, count: u64) -> reco_storage::Result<()> {
        self.staged()?.count_unrestored(count);
        Ok(())
    }

    fn wants_entities(&self) -> bool {
        self.from_image.is_none()
    }

    fn catch_up_from(&self) -> Option<Stamp> {
        self.behind.as_ref().map(|(stamp, _)| *stamp)
    }

    fn caught_up(
        &mut self,
        changed: Vec<NewEntity>,
        present: Vec<EntityId>,
    ) -> reco_storage::Result<()> {
        let Some((from, ids)) = self.behind.take() else {
            return Ok(());
        };
        let present: std::collections::HashSet<EntityId> = present.into_iter().collect();
        let gone: Vec<EntityId> = ids.into_iter().filter(|id| !present.contains(id)).collect();
        let staged = self.staged()?;
        let written = changed.len();
        blocking_here(|| {
            self.engine.restore_deletes(staged, &gone);
            self.engine.restore_entities(staged, changed)
        })
        .map_err(|e| refused(&e))?;
        tracing::info!(
            tenant = %self.tenant,
            image = %from,
            written,
            gone = gone.len(),
            "the tenant's image was behind storage: caught up"
        );
        Ok(())
    }

    fn entities(&mut self, batch: Vec<NewEntity>) -> reco_storage::Result<()> {
        let staged = self.staged()?;
        blocking_here(|| self.engine.restore_entities(staged, batch))
            .map(drop)
            .map_err(|e| refused(&e))
    }

    fn interactions(&mut self, batch: Vec<Interaction>) -> reco_storage::Result<()> {
        let staged = self.staged()?;
        blocking_here(|| self.engine.restore_interactions(staged, batch))
            .map(drop)
            .map_err(|e| refused(&e))
    }
}

/// Runs engine work that may take seconds (a graph build while a tenant loads) from inside the
/// load's async loop: on a multi-threaded runtime the worker hands its other tasks to the
/// others first (`block_in_place`), so writes waiting on that runtime are not held up. A
/// single-threaded runtime (some tests) has no other worker to hand them to, and runs it as is.
fn blocking_here<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        Ok(_) | Err(_) => work(),
    }
}

/// Loads one tenant from one consistent snapshot of storage and swaps it in whole; `None` (and
/// the tenant dropped from the engine) when storage no longer has it. When the engine has
/// applied the snapshot's changes already (the feed got there first), it holds everything the
/// snapshot holds, and the live tenant stays: there is nothing to load again.
async fn load_tenant(
    state: &AppState,
    tenant: &TenantName,
    bar: &indicatif::ProgressBar,
    image: Option<TenantImage>,
) -> Result<Option<reco_storage::Loaded>, SyncError> {
    let since =
        state.engine.now() - i64::try_from(state.settings.history.as_millis()).unwrap_or(i64::MAX);
    let mut sink = Restore {
        engine: &state.engine,
        tenant,
        staged: None,
        rate_limit: None,
        image,
        from_image: None,
        can_catch_up: matches!(state.store, Store::Postgres(_)),
        behind: None,
        image_current: false,
    };
    let started = Instant::now();
    let mut loaded = state
        .store
        .load_tenant(tenant, since, 5_000, bar, &mut sink)
        .await?;
    if loaded.is_some() {
        state.metrics.observe_load(sink.from_image.is_some());
    }
    if let (Some(entities), Some(loaded)) = (sink.from_image, loaded.as_mut()) {
        loaded.entities = entities as u64;
        if sink.image_current {
            // The file on disk is this tenant as loaded: nothing to write until it changes.
            state.imaged.lock().expect("never poisoned").insert(
                tenant.clone(),
                (loaded.record.lineage, loaded.record.version),
            );
        }
        tracing::info!(
            %tenant,
            entities,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "loaded from its image (entities and graph), interactions from storage"
        );
    }
    let lineage = loaded.as_ref().map(|l| l.record.lineage);
    match sink.staged {
        Some(staged) => {
            state.set_rate_limit(tenant, sink.rate_limit);
            if state.engine.install(staged) == Installed::Kept {
                tracing::debug!(%tenant, "the engine holds the snapshot's changes already");
            }
            // Checked after the install: a delete marks before it drops, so either its drop
            // comes after this install, or this sees its mark.
            if let Some(lineage) = lineage
                && state.was_deleted(tenant, lineage)
            {
                tracing::debug!(%tenant, "deleted while it loaded");
                if state.engine.lineage(tenant).ok() == Some(lineage) {
                    let _ = state.engine.drop_tenant(tenant);
                }
                state.applier.kick(&state.engine, tenant);
                return Ok(None);
            }
            // A model that cannot be loaded leaves the tenant served without it (trained
            // again when due), rather than the whole service unready.
            if let Err(e) = load_model(state, tenant).await {
                tracing::warn!(%tenant, error = %e, "the stored collaborative model could not be loaded");
            }
        }
        None => {
            let _ = state.engine.drop_tenant(tenant);
            state.set_rate_limit(tenant, None);
            images::remove(state, tenant).await;
        }
    }
    state.applier.kick(&state.engine, tenant);
    Ok(loaded)
}

/// Serves the tenant's stored collaborative model when it is newer than the one served (or
/// there is none): at start, after a reload, when the feed announces one, and before a
/// training. Its space is built on the blocking pool.
pub async fn load_model(state: &AppState, tenant: &TenantName) -> Result<(), SyncError> {
    let served = state.engine.model_info(tenant)?.map_or(0, |m| m.version);
    if state
        .store
        .model_version(tenant)
        .await?
        .is_none_or(|stored| stored <= served)
    {
        return Ok(());
    }
    let Some(parts) = state.store.load_model(tenant).await? else {
        return Ok(());
    };
    let version = parts.info.version;
    if blocking(state, tenant, move |engine, tenant| {
        engine.install_model(tenant, parts)
    })
    .await?
    .is_some()
    {
        tracing::info!(%tenant, version, "collaborative model loaded from storage");
    }
    Ok(())
}

/// Reloads one tenant, for a change that could not be applied in order. Readers see the tenant
/// they had until the reloaded one is swapped in.
pub async fn reload_tenant(state: &AppState, tenant: &TenantName) -> Result<(), SyncError> {
    tracing::warn!(%tenant, "reloading the tenant from storage");
    load_tenant(state, tenant, &indicatif::ProgressBar::hidden(), None)
        .await
        .map(drop)
}

/// Runs an engine write on the blocking pool, never on an async worker: a write may build a
/// tenant's graph for seconds, and the workers serve requests meanwhile.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    tenant: &TenantName,
    write: impl FnOnce(&Engine, &TenantName) -> T + Send + 'static,
) -> T {
    let (engine, tenant) = (state.engine.clone(), tenant.clone());
    tokio::task::spawn_blocking(move || write(&engine, &tenant))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Applies a committed change once the changes before it are in: `apply` runs then, on the
/// tenant's drain (see `applier`; it may find the change applied already). Writes apply their
/// own changes so, and the feed the changes it brings.
/// When the turn does not come within [`TURN_TIMEOUT`] (a change before it was lost on its
/// way, or the feed is down), or applying it failed unexpectedly, the tenant is reloaded from
/// storage, which holds the change. A change that is being applied is waited for however long
/// it takes (a large batch builds graph links for seconds).
pub async fn apply_in_turn(
    state: &AppState,
    tenant: &TenantName,
    change: ChangeId,
    apply: impl FnOnce(&Engine, &TenantName) -> Result<(), EngineError> + Send + 'static,
) -> Result<(), SyncError> {
    let mut outcome = state
        .applier
        .submit(&state.engine, tenant, change, Box::new(apply));
    let applied = match tokio::time::timeout(TURN_TIMEOUT, &mut outcome).await {
        Ok(applied) => applied.ok(),
        Err(_) if state.applier.withdraw(tenant, change) => {
            tracing::warn!(%tenant, stamp = %change.stamp, "earlier changes did not arrive in time");
            None
        }
        Err(_) => outcome.await.ok(),
    };
    match applied {
        Some(result) => result?,
        None => reload_tenant(state, tenant).await?,
    }
    Ok(())
}

/// Applies changes for as long as the process runs. After notices may have been lost (the
/// listener reconnected) it reloads everything; a change that cannot be applied in order
/// reloads its tenant.
async fn follow(state: &AppState, pg: &PgStore, mut feed: ChangeFeed) {
    loop {
        match feed.next().await {
            Ok(Change::Resync) => {
                tracing::warn!("the change feed lost notices; reloading");
                resync(state).await;
            }
            Ok(change) => {
                if let Err(e) = apply(state, pg, change.clone()).await {
                    tracing::warn!(error = %e, ?change, "a change could not be applied");
                    if let Some(tenant) = tenant_of(&change)
                        && let Err(e) = reload_tenant(state, tenant).await
                    {
                        tracing::warn!(error = %e, %tenant, "reloading the tenant failed");
                    }
                }
                if let Some(tenant) = tenant_of(&change) {
                    state.applier.kick(&state.engine, tenant);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the change feed broke; subscribing again");
                feed = subscribe(state).await;
                resync(state).await;
            }
        }
    }
}

fn tenant_of(change: &Change) -> Option<&TenantName> {
    match change {
        Change::TenantCreated { tenant, .. }
        | Change::TenantDeleted { tenant, .. }
        | Change::Entities { tenant, .. }
        | Change::EntityDeleted { tenant, .. }
        | Change::Interactions { tenant, .. }
        | Change::Model { tenant, .. } => Some(tenant),
        Change::Resync => None,
    }
}

async fn resync(state: &AppState) {
    while let Err(e) = load_all(state).await {
        tracing::warn!(error = %e, "reloading failed; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the feed must fetch and apply change `stamp` of `tenant`: not when the engine has it
/// already or does not know the tenant at all (there is nothing to apply it to), and not when
/// this server queued it already (its own write, whose handler applies it).
fn needs(state: &AppState, tenant: &TenantName, change: ChangeId) -> bool {
    let engine = &state.engine;
    engine
        .lineage(tenant)
        .is_ok_and(|lineage| lineage == change.lineage)
        && engine
            .applied(tenant)
            .is_ok_and(|applied| change.stamp > applied)
        && !state.applier.holds(tenant, change)
}

async fn apply(state: &AppState, pg: &PgStore, change: Change) -> Result<(), SyncError> {
    let engine = &state.engine;
    match change {
        Change::TenantCreated { tenant, lineage } => {
            if engine.lineage(&tenant).ok() != Some(lineage) {
                load_tenant(state, &tenant, &indicatif::ProgressBar::hidden(), None).await?;
            }
        }
        Change::TenantDeleted { tenant, lineage } => {
            state.mark_deleted(&tenant, lineage);
            if engine.lineage(&tenant).ok() == Some(lineage) {
                let _ = engine.drop_tenant(&tenant);
                state.set_rate_limit(&tenant, None);
            }
            state.forget_keys();
        }
        // A change is fetched and applied in its turn, through the applier.
        Change::Entities { tenant, change } => {
            if needs(state, &tenant, change) {
                let rows = pg.entities_in_batch(&tenant, change).await?;
                apply_in_turn(state, &tenant, change, move |engine, tenant| {
                    engine
                        .upsert_at(tenant, change, engine.check_entities(tenant, rows)?)
                        .map(drop)
                })
                .await?;
            }
        }
        Change::EntityDeleted { tenant, change, id } => {
            if needs(state, &tenant, change) {
                apply_in_turn(state, &tenant, change, move |engine, tenant| {
                    engine.delete_at(tenant, change, &id).map(drop)
                })
                .await?;
            }
        }
        Change::Interactions { tenant, change } => {
            if needs(state, &tenant, change) {
                let rows = pg.interactions_in_batch(&tenant, change).await?;
                apply_in_turn(state, &tenant, change, move |engine, tenant| {
                    engine
                        .record_at(tenant, change, CheckedInteractions::new(rows)?)
                        .map(drop)
                })
                .await?;
            }
        }
        Change::Model {
            tenant,
            lineage,
            version,
        } => {
            let served = engine.model_info(&tenant).ok().flatten();
            if engine.lineage(&tenant).ok() == Some(lineage)
                && served.is_none_or(|m| m.version < version)
            {
                load_model(state, &tenant).await?;
            }
        }
        Change::Resync => resync(state).await,
    }
    Ok(())
}
