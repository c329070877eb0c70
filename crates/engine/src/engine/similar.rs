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
    let mut prepared = prepared::bind(
        engine,
        name,
        false,
        options.space,
        Question::Similar {
            id: id.clone(),
            slot: None,
            options: options.clone(),
        },
    )?;
    // An answer kept about this snapshot proves the entity is in it: a hit needs no lookup of
    // the id (a search of the ordered id map, a few percent of a cached answer's time).
    let found = prepared.peek();
    let hit = found.is_some();
    prepared.looked_up = Some(found);
    if hit {
        return Ok(prepared);
    }
    let slot = prepared.index.slot_of(id.as_str());
    if let Question::Similar { slot: known, .. } = &mut prepared.question {
        *known = slot;
    }
    // Refused before ranking: there is no answer to look for.
    if slot.is_none() {
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

/// Ranks the entities nearest `id`'s vector (in `slot`, when known), through the chain of
/// plans.
pub(super) fn rank(
    index: &EntityIndex,
    id: &EntityId,
    slot: Option<u32>,
    options: &SearchOptions,
) -> Result<Ranking> {
    let slot = slot
        .or_else(|| index.slot_of(id.as_str()))
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
