//! The collaborative space: a tenant's model, learnt from its interactions by `reco-learn`, and
//! its item factors kept as a second [`EntityIndex`] of the tenant's entities. That index is an
//! ordinary snapshot (dot product, the content rows' categories and tags), so the graph, the
//! int8 codes, filters, exact search, diversity and the cache serve it as they serve content
//! vectors. A user's factors are folded in at request time from their current history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use reco_learn::{Algorithm, ContentMap, EASE_MAX_ITEMS, Model, Observation, Params};

use super::Engine;
use super::tenants::Tenant;
use crate::checked::CheckedEntities;
use crate::config::{SearchConfig, millis};
use crate::error::{EngineError, Result};
use crate::index::{EntityIndex, Row};
use crate::interactions::UserProfile;
use crate::model::{EntityId, Metric, Millis, NewEntity, TenantName, TenantSpec};

/// What a trained model is: for status pages and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Counts the tenant's trainings, from 1.
    pub version: u64,
    /// When it was trained, in milliseconds since the Unix epoch (the engine's clock).
    pub trained_at: Millis,
    /// The (user, entity) pairs it learnt from.
    pub interactions: usize,
    /// Users it learnt.
    pub users: usize,
    /// Entities it learnt: those with interactions that existed then.
    pub items: usize,
    /// Factors per user and entity.
    pub factors: usize,
    /// How long the training took.
    pub seconds: f64,
    /// Users folded in against it so far (cached fold-ins not counted).
    pub fold_ins: u64,
    /// The tenant's interactions recorded when it was trained (all of them, not pairs).
    pub recorded: u64,
}

/// How a tenant's collaborative model is trained: whether at all (`enabled`, on by default),
/// and with which parameters. The engine keeps it with the tenant for its host, which starts
/// trainings; [`crate::Engine::train_collaborative`] takes the parameters it is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learning {
    /// Whether the tenant gets a model. Default true.
    pub enabled: bool,
    /// The training's parameters (see `reco_learn::Params`).
    pub params: Params,
}

impl Default for Learning {
    fn default() -> Self {
        Self {
            enabled: true,
            params: Params::default(),
        }
    }
}

/// A trained model as a host keeps it: what it was, the parameters it was trained with, and
/// its item factors, in the order of `items`. Plain data with no engine state, so storage can
/// write it down and another process serve it ([`crate::Engine::install_model`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParts {
    /// What the model is (its `fold_ins` counts nothing for a stored model).
    pub info: ModelInfo,
    /// The parameters it was trained with, which a fold-in solves with too.
    pub params: Params,
    /// The entities it learnt, in item order.
    pub items: Vec<EntityId>,
    /// Their factors, row-major: `info.factors` per item.
    pub factors: Vec<f32>,
}

/// A tenant's trained model and its space. Everything but the space is shared by the copies a
/// write makes when it keeps the space in step with the entities.
#[derive(Debug, Clone)]
pub(crate) struct Collaborative {
    pub(super) model: Arc<Model>,
    /// The entities it learnt, in item order.
    items: Arc<[EntityId]>,
    /// The model's item number of each entity it learnt.
    pub(super) item_of: Arc<HashMap<EntityId, u32>>,
    /// The item factors as a snapshot of entities: those learnt that exist now, each with its
    /// current category and tags.
    pub(super) index: Arc<EntityIndex>,
    pub(super) info: ModelInfo,
    /// Fold-ins computed against this model.
    pub(super) fold_ins: Arc<AtomicU64>,
    /// From content vectors to factors, fitted on the learnt entities, when the tenant has
    /// content vectors (of at most `MAX_CONTENT_DIMENSION` components) and the model items.
    content_map: Option<Arc<ContentMap>>,
    /// The estimated factors of every entity the model did not learn (see `content_map`):
    /// what the hybrid strategy searches besides `index`. Empty without a map.
    pub(super) cold: Arc<EntityIndex>,
}

/// Trains a model of the tenant's interactions as they are now, with `params`, and puts it in
/// place of the last one. A pair's weight is the one the user's preference reads: decayed
/// towards the user's newest interaction, kept above the history floor. Compute only, and as
/// long as the training takes: a host calls it off its request path.
pub(super) fn train(engine: &Engine, name: &TenantName, params: &Params) -> Result<ModelInfo> {
    let started = Instant::now();
    let tenant = engine.tenant(name)?;
    let entities = tenant.entities.load_full();
    let log = tenant.interactions.load_full();
    let half_life = millis(engine.config.half_life);
    let floor = engine.config.history_floor;
    let mut items: Vec<EntityId> = Vec::new();
    let mut item_of: HashMap<EntityId, u32> = HashMap::new();
    let mut observations = Vec::new();
    let mut users = 0u32;
    for (_, profile) in log.users() {
        let before = observations.len();
        for (entity, weight) in profile.weights(half_life, floor) {
            if entities.slot_of(entity.as_str()).is_none() {
                continue;
            }
            let next = u32::try_from(items.len()).expect("fewer than 2^32 entities");
            let item = *item_of.entry(entity.clone()).or_insert_with(|| {
                items.push(entity.clone());
                next
            });
            observations.push(Observation {
                user: users,
                item,
                weight: crate::distance::narrow(weight),
            });
        }
        if observations.len() > before {
            users += 1;
        }
    }
    // `Auto` takes EASE for a small catalogue only: one whose every entity fits EASE's width,
    // so that the entities it did not learn never make a wide cold space.
    let params = &Params {
        algorithm: match params.algorithm {
            Algorithm::Auto if entities.len() > EASE_MAX_ITEMS => Algorithm::Ials,
            chosen @ (Algorithm::Auto | Algorithm::Ials | Algorithm::Ease) => chosen,
        },
        ..*params
    };
    let model = reco_learn::train(users as usize, items.len(), &observations, params, |_| {})
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    let version = tenant
        .collaborative
        .load()
        .as_ref()
        .map_or(1, |c| c.info.version + 1);
    let info = ModelInfo {
        version,
        trained_at: engine.clock.now(),
        interactions: observations.len(),
        users: users as usize,
        items: items.len(),
        factors: model.factors(),
        seconds: started.elapsed().as_secs_f64(),
        fold_ins: 0,
        recorded: log.total(),
    };
    serve(engine, name, Arc::new(model), items.into(), info.clone())?;
    Ok(info)
}

/// Serves a model kept by the host (see [`ModelParts`]) unless the tenant serves this version
/// or a later one already. Returns the model served now, `None` when the tenant's stayed.
pub(super) fn install(
    engine: &Engine,
    name: &TenantName,
    parts: ModelParts,
) -> Result<Option<ModelInfo>> {
    let served = engine
        .tenant(name)?
        .collaborative
        .load()
        .as_ref()
        .map_or(0, |c| c.info.version);
    if parts.info.version <= served {
        return Ok(None);
    }
    if parts.items.len() != parts.info.items || parts.params.factors != parts.info.factors {
        return Err(EngineError::InvalidArgument(format!(
            "a stored model of {} items and {} factors came with {} items and {} factors a row",
            parts.info.items,
            parts.info.factors,
            parts.items.len(),
            parts.params.factors
        )));
    }
    let model = Model::from_item_factors(parts.params, parts.factors)
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    if model.item_count() != parts.items.len() {
        return Err(EngineError::InvalidArgument(format!(
            "a stored model names {} items and holds factors for {}",
            parts.items.len(),
            model.item_count()
        )));
    }
    let info = ModelInfo {
        fold_ins: 0,
        ..parts.info
    };
    serve(
        engine,
        name,
        Arc::new(model),
        parts.items.into(),
        info.clone(),
    )?;
    Ok(Some(info))
}

/// The tenant's model as a host keeps it, when it has one.
pub(super) fn parts(engine: &Engine, name: &TenantName) -> Result<Option<ModelParts>> {
    Ok(engine
        .tenant(name)?
        .collaborative
        .load()
        .as_ref()
        .map(|c| ModelParts {
            info: c.info.clone(),
            params: *c.model.params(),
            items: c.items.to_vec(),
            factors: c.model.item_factors().to_vec(),
        }))
}

/// Builds a model's space from the entities as they are, with the map from content to factors
/// and the estimated factors of the entities it did not learn, then puts it in place under the
/// tenant's writer lock, after bringing it up to the entities written meanwhile: so the space
/// never holds an entity deleted before it was served, nor one's old category or tags.
fn serve(
    engine: &Engine,
    name: &TenantName,
    model: Arc<Model>,
    items: Arc<[EntityId]>,
    info: ModelInfo,
) -> Result<()> {
    let spec = TenantSpec::new(model.factors(), Metric::Dot)?;
    let item_of: HashMap<EntityId, u32> = items
        .iter()
        .enumerate()
        .map(|(n, id)| (id.clone(), u32::try_from(n).expect("fewer than 2^32 items")))
        .collect();
    let tenant = engine.tenant(name)?;
    let content = tenant.entities.load_full();
    let rows = items
        .iter()
        .enumerate()
        .filter_map(|(n, id)| {
            Some(labelled(
                content.row_of(id.as_str())?,
                model.item(n)?.to_vec(),
            ))
        })
        .collect();
    let mut index = EntityIndex::new(
        spec,
        engine.next_generation(),
        model_search(engine, spec.dimension),
    );
    index.upsert(CheckedEntities::new(spec, rows)?);
    // The space's stamp is its entities': a shared answer from it names the entities it read.
    index.stamp = content.stamp;
    let content_map = fit_content_map(&model, &items, &content);
    let mut collaborative = Collaborative {
        model,
        items,
        item_of: Arc::new(item_of),
        index: Arc::new(index),
        info,
        fold_ins: Arc::new(AtomicU64::new(0)),
        content_map,
        cold: Arc::new(EntityIndex::new(
            spec,
            engine.next_generation(),
            model_search(engine, spec.dimension),
        )),
    };
    // The spaces are built off the writer lock, from the entities as they are; when entities
    // were written meanwhile they are built again from the newer snapshot, a few times, before
    // the last catch-up is done under the lock (where writes wait for it).
    let mut content = content;
    let mut attempts = 0;
    loop {
        collaborative.cold = Arc::new(collaborative.cold_space(engine, &content)?);
        let tenant = engine.tenant(name)?;
        let _writer = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if tenant.retired.load(Ordering::Acquire) {
            continue;
        }
        let now = tenant.entities.load_full();
        if now.generation != content.generation {
            let items = collaborative.items.clone();
            collaborative = collaborative.following(engine, &now, items.iter());
            attempts += 1;
            if attempts < 3 {
                content = now;
                continue;
            }
            collaborative.cold = Arc::new(collaborative.cold_space(engine, &now)?);
        }
        tenant.collaborative.store(Some(Arc::new(collaborative)));
        return Ok(());
    }
}

/// How the model's spaces are searched: as the engine's settings say, but never by a graph, and
/// without int8 codes for narrow vectors (iALS factors).
///
/// On the engine's fixture (10k and 20k entities, 64 factors), a graph of inner products walked
/// by users' factors found 0.82 to 0.84 of the exact top 10 at the default breadth, 0.94 and
/// 0.85 at a breadth of 256 and 0.98 at 1,024 (557 µs at 20k), under the 0.99 the service
/// promises; HNSW assumes a metric, which inner products of vectors of unequal norms are not.
/// Lengthening every row to one norm (the Euclidean transform of Bachrach et al. 2014) made
/// it worse (0.52 to 0.62): the extra component swamps the int8 codes the walk reads. A scan
/// finds them all; over 64 factors the exact f32 scan (300 µs at 20k) beats the int8 scan and
/// its rescoring (590 µs), and the codes are not kept. Wide vectors (EASE's, one component per
/// entity) keep their codes: at 1,000 components the int8 scan was the faster (68 µs against
/// 91 for 1k entities).
fn model_search(engine: &Engine, dimension: usize) -> SearchConfig {
    SearchConfig {
        threshold: usize::MAX,
        quantized: engine.config.search.quantized && dimension > 256,
        ..engine.config.search
    }
}

/// The ridge of the map from content to factors, relative to the content's scale (see
/// `ContentMap::fit`).
const CONTENT_RIDGE: f64 = 0.1;

/// The most components the cold space may hold (2^26 f32: 256 MiB): past it, entities the model
/// did not learn get no estimate (hybrid then answers as collaborative).
const COLD_BUDGET: usize = 1 << 26;

/// The map from content vectors to factors, fitted on the learnt entities that have content
/// vectors; `None` when the tenant keeps none, they are too long, or no entity has both.
fn fit_content_map(
    model: &Model,
    items: &[EntityId],
    content: &EntityIndex,
) -> Option<Arc<ContentMap>> {
    let spec = content.spec();
    let cold = content.len().saturating_sub(items.len());
    if !spec.has_vectors()
        || spec.dimension > reco_learn::MAX_CONTENT_DIMENSION
        || cold.saturating_mul(model.factors()) > COLD_BUDGET
    {
        return None;
    }
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (n, id) in items.iter().enumerate() {
        let Some(row) = content.row_of(id.as_str()) else {
            continue;
        };
        xs.extend(content_vector(spec.metric, row.vector, row.inverse_norm));
        ys.extend_from_slice(model.item(n)?);
    }
    if ys.is_empty() {
        return None;
    }
    ContentMap::fit(&xs, &ys, spec.dimension, model.factors(), CONTENT_RIDGE)
        .ok()
        .map(Arc::new)
}

/// A content vector as the map reads it: the unit vector under cosine, else as stored.
fn content_vector(metric: Metric, vector: &[f32], inverse_norm: f32) -> Vec<f32> {
    match metric {
        Metric::Cosine => vector.iter().map(|x| x * inverse_norm).collect(),
        Metric::Dot | Metric::Euclidean => vector.to_vec(),
    }
}

/// A content entity's row in a model's space: `vector` (its factors, or their estimate), with
/// the entity's category and tags, so filters read what the entity says now.
fn labelled(entity: Row<'_>, vector: Vec<f32>) -> NewEntity {
    NewEntity {
        id: entity.record.id.clone(),
        vector,
        category: entity.record.category.as_deref().map(str::to_owned),
        tags: entity.record.tags.iter().map(|t| t.to_string()).collect(),
        attributes: None,
    }
}

/// A copy of `space` with `gone` deleted and `changed` written, at the entities' stamp; `None`
/// when there is nothing to change.
fn written(
    engine: &Engine,
    space: &EntityIndex,
    content: &EntityIndex,
    gone: &[EntityId],
    changed: Vec<NewEntity>,
) -> Option<EntityIndex> {
    if gone.is_empty() && changed.is_empty() {
        return None;
    }
    let mut next = space.clone();
    for id in gone {
        next.delete(id.as_str());
    }
    if !changed.is_empty() {
        let spec = next.spec();
        next.upsert(CheckedEntities::new(spec, changed).expect("rows of the model's own factors"));
    }
    next.generation = engine.next_generation();
    next.stamp = content.stamp;
    Some(next)
}

/// The tenant's model, when it has one.
pub(super) fn model_info(engine: &Engine, name: &TenantName) -> Result<Option<ModelInfo>> {
    Ok(engine
        .tenant(name)?
        .collaborative
        .load()
        .as_ref()
        .map(|c| ModelInfo {
            fold_ins: c.fold_ins.load(Ordering::Relaxed),
            ..c.info.clone()
        }))
}

/// After a write to the tenant's entities (under its writer lock): the model's space follows
/// it for the entities `written`, so a deleted entity leaves the space at once and a changed
/// one is filtered by its new category and tags.
pub(super) fn follow<'a>(
    engine: &Engine,
    tenant: &Tenant,
    written: impl Iterator<Item = &'a EntityId>,
) {
    if let Some(current) = tenant.collaborative.load_full() {
        let content = tenant.entities.load();
        let next = current.following(engine, &content, written);
        if !Arc::ptr_eq(&next.index, &current.index) {
            tenant.collaborative.store(Some(Arc::new(next)));
        }
    }
}

/// When a tenant is loaded again in place of the same incarnation: the staged one, which has
/// no model yet, serves the live one's, brought up to the staged entities.
pub(super) fn carry(engine: &Engine, live: &Tenant, staged: &Tenant) {
    if staged.collaborative.load().is_some() {
        return;
    }
    if let Some(model) = live.collaborative.load_full() {
        let content = staged.entities.load();
        let items = model.items.clone();
        let mut carried = model.following(engine, &content, items.iter());
        if let Ok(cold) = carried.cold_space(engine, &content) {
            carried.cold = Arc::new(cold);
        }
        staged.collaborative.store(Some(Arc::new(carried)));
    }
}

impl Collaborative {
    /// This model with its space brought up to `content` for the entities `ids`: each learnt
    /// one that no longer exists leaves the space, and each learnt one whose category or tags
    /// changed is written again. The same model (the same space) when nothing changed.
    fn following<'a>(
        &self,
        engine: &Engine,
        content: &EntityIndex,
        ids: impl Iterator<Item = &'a EntityId>,
    ) -> Self {
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        let mut cold_gone = Vec::new();
        let mut cold_changed = Vec::new();
        for id in ids {
            let Some(&item) = self.item_of.get(id) else {
                // An entity the model did not learn: its estimate follows its content.
                if let Some(map) = &self.content_map {
                    match content.row_of(id.as_str()) {
                        Some(now) => cold_changed.push(self.estimate(map, content, now)),
                        None if self.cold.slot_of(id.as_str()).is_some() => {
                            cold_gone.push(id.clone());
                        }
                        None => {}
                    }
                }
                continue;
            };
            // Rows are borrowed: only their labels are compared.
            match (content.row_of(id.as_str()), self.index.row_of(id.as_str())) {
                (None, Some(_)) => gone.push(id.clone()),
                (Some(now), was) => {
                    let same = was.is_some_and(|w| {
                        w.record.category == now.record.category && w.record.tags == now.record.tags
                    });
                    if !same && let Some(factors) = self.model.item(item as usize) {
                        changed.push(labelled(now, factors.to_vec()));
                    }
                }
                (None, None) => {}
            }
        }
        let mut next = self.clone();
        if let Some(index) = written(engine, &self.index, content, &gone, changed) {
            next.index = Arc::new(index);
        }
        if let Some(cold) = written(engine, &self.cold, content, &cold_gone, cold_changed) {
            next.cold = Arc::new(cold);
        }
        next
    }

    /// Whether entities it did not learn get factors from their content.
    pub(super) fn blends_content(&self) -> bool {
        self.content_map.is_some()
    }

    /// The estimated row of an entity the model did not learn: its content mapped to factors.
    fn estimate(&self, map: &ContentMap, content: &EntityIndex, row: Row<'_>) -> NewEntity {
        let x = content_vector(content.spec().metric, row.vector, row.inverse_norm);
        labelled(row, map.project(&x))
    }

    /// The estimated factors of every entity of `content` the model did not learn, as a space
    /// of its own; empty without a map.
    fn cold_space(&self, engine: &Engine, content: &EntityIndex) -> Result<EntityIndex> {
        let spec = self.index.spec();
        let mut cold = EntityIndex::new(
            spec,
            engine.next_generation(),
            model_search(engine, spec.dimension),
        );
        if let Some(map) = &self.content_map {
            let rows: Vec<NewEntity> = content
                .rows()
                .filter(|row| !self.item_of.contains_key(&row.record.id))
                .map(|row| self.estimate(map, content, row))
                .collect();
            cold.upsert(CheckedEntities::new(spec, rows)?);
        }
        cold.stamp = content.stamp;
        Ok(cold)
    }

    /// A user's factors from their history now, against the model's items: the training's own
    /// solve for one user. `None` when no entity of theirs is known to the model with a positive
    /// weight, so there is nothing to steer by.
    pub(super) fn fold_in(
        &self,
        profile: &UserProfile,
        half_life: Millis,
        floor: f64,
    ) -> Option<Vec<f32>> {
        let mut positive = false;
        let history: Vec<(u32, f32)> = profile
            .weights(half_life, floor)
            .filter_map(|(entity, weight)| {
                let item = *self.item_of.get(entity)?;
                let weight = crate::distance::narrow(weight);
                positive |= weight > 0.0;
                Some((item, weight))
            })
            .collect();
        positive.then(|| {
            self.fold_ins.fetch_add(1, Ordering::Relaxed);
            self.model.fold_in(&history)
        })
    }
}
