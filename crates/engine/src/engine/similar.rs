//! Similar entities: the nearest neighbours of one entity, never the entity itself.

use roaring::RoaringBitmap;

use super::prepared::Question;
use super::{Engine, Prepared, plans, prepared};
use crate::distance::Probe;
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::model::{EntityId, TenantName};
use crate::query::{Ranking, SearchOptions, Space, Strategy};

pub(super) fn prepare(
    engine: &Engine,
    name: &TenantName,
    id: &EntityId,
    options: &SearchOptions,
) -> Result<Prepared> {
    options.validate()?;
    let prepared = prepared::bind(
        engine,
        name,
        false,
        options.space,
        Question::Similar(id.clone(), options.clone()),
    )?;
    // Refused before any cache is asked: there is no answer to look for.
    if prepared.index.slot_of(id.as_str()).is_none() {
        let exists = prepared
            .tenant
            .entities
            .load()
            .slot_of(id.as_str())
            .is_some();
        return Err(if exists && options.space == Space::Collaborative {
            EngineError::NotLearnt(id.to_string())
        } else {
            EngineError::EntityNotFound(id.to_string())
        });
    }
    Ok(prepared)
}

/// Ranks the entities nearest `id`'s vector, through the chain of plans.
pub(super) fn rank(index: &EntityIndex, id: &EntityId, options: &SearchOptions) -> Result<Ranking> {
    let slot = index
        .slot_of(id.as_str())
        .ok_or_else(|| EngineError::EntityNotFound(id.to_string()))?;
    let row = index.row(slot).expect("a mapped slot is live");
    let probe = Probe::new(row.vector, index.spec().metric);
    let mut excluded = RoaringBitmap::new();
    excluded.insert(slot);
    Ok(Ranking {
        results: plans::rank(index, options, excluded, Some(row.vector), |v, n| {
            probe.goodness(v, n)
        }),
        missing: Vec::new(),
        strategy: Strategy::Similar,
    })
}
