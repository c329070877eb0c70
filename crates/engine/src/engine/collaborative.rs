//! The collaborative space: a tenant's model, learnt from its interactions by `reco-learn`, and
//! its item factors kept as a second [`EntityIndex`] of the tenant's entities. That index is an
//! ordinary snapshot (dot product, the content rows' categories and tags), so the graph, the
//! int8 codes, filters, exact search, diversity and the cache serve it as they serve content
//! vectors. A user's factors are folded in at request time from their current history.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use reco_learn::{Model, Observation, Params};

use super::Engine;
use crate::checked::CheckedEntities;
use crate::config::millis;
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::interactions::UserProfile;
use crate::model::{EntityId, Metric, Millis, NewEntity, TenantName, TenantSpec};
use crate::stamp::Stamp;

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

/// A tenant's trained model and its space.
#[derive(Debug)]
pub(crate) struct Collaborative {
    pub(super) model: Model,
    /// The model's item number of each entity it learnt.
    pub(super) item_of: HashMap<EntityId, u32>,
    /// The item factors as a snapshot of entities.
    pub(super) index: Arc<EntityIndex>,
    pub(super) info: ModelInfo,
    /// Fold-ins computed against this model.
    pub(super) fold_ins: AtomicU64,
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
    let model = reco_learn::train(users as usize, items.len(), &observations, params, |_| {})
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    let spec = TenantSpec::new(model.factors(), Metric::Dot)?;
    let rows = items
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let view = entities.get(id.as_str());
            NewEntity {
                id: id.clone(),
                vector: model.item(n).expect("a learnt item").to_vec(),
                category: view
                    .as_ref()
                    .and_then(|v| v.category.as_deref().map(str::to_owned)),
                tags: view
                    .map_or_else(Vec::new, |v| v.tags.iter().map(|t| t.to_string()).collect()),
                attributes: None,
            }
        })
        .collect();
    let version = tenant
        .collaborative
        .load()
        .as_ref()
        .map_or(1, |c| c.info.version + 1);
    let mut index = EntityIndex::new(spec, engine.next_generation(), engine.config.search);
    index.upsert(CheckedEntities::new(spec, rows)?);
    index.stamp = Stamp::new(version);
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
    tenant.collaborative.store(Some(Arc::new(Collaborative {
        model,
        item_of,
        index: Arc::new(index),
        info: info.clone(),
        fold_ins: AtomicU64::new(0),
    })));
    Ok(info)
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

impl Collaborative {
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
