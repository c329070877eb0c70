//! Writes: entity upserts and deletes, and interactions, each applied as a tenant's next
//! stamped change under its writer lock, to a copy of the snapshot that is then swapped in.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::tenants::Tenant;
use super::{Engine, collaborative};
use crate::checked::{CheckedEntities, CheckedInteractions};
use crate::config::millis;
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::interactions::{InteractionLog, Weighted};
use crate::model::{EntityId, Interaction, NewEntity, TenantName};
use crate::stamp::{ChangeId, Stamp};

/// Whether a stamped change was applied now or had been applied before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied<T> {
    /// Applied now, with what the write returns.
    Done(T),
    /// Its stamp was applied before: nothing changed.
    Already,
    /// It was made in another incarnation of the tenant (deleted, or made again, since):
    /// nothing changed, since the tenant it was made in is not here.
    OtherLineage,
}

pub(super) fn upsert(engine: &Engine, name: &TenantName, batch: Vec<NewEntity>) -> Result<usize> {
    let batch = CheckedEntities::new(engine.tenant(name)?.spec, batch)?;
    upsert_stamped(engine, name, None, batch).map(done)
}

pub(super) fn delete(engine: &Engine, name: &TenantName, id: &EntityId) -> Result<bool> {
    if engine
        .tenant(name)?
        .entities
        .load()
        .slot_of(id.as_str())
        .is_none()
    {
        return Ok(false);
    }
    delete_stamped(engine, name, None, id).map(done)
}

pub(super) fn record(engine: &Engine, name: &TenantName, batch: Vec<Interaction>) -> Result<usize> {
    let batch = CheckedInteractions::new_at(batch, engine.clock.now())?;
    record_stamped(engine, name, None, batch).map(done)
}

/// An upsert as the host's `change` (see `Engine::upsert_at`), or as the next change.
pub(super) fn upsert_stamped(
    engine: &Engine,
    name: &TenantName,
    change: Option<ChangeId>,
    batch: CheckedEntities,
) -> Result<Applied<usize>> {
    ordered(engine, name, change, |tenant, stamp| {
        // Checked against another spec (the tenant was made again since): check it again.
        let batch = if batch.spec() == tenant.spec {
            batch
        } else {
            CheckedEntities::new(tenant.spec, batch.into_entities())?
        };
        let count = batch.len();
        // The model's space follows its entities' categories and tags.
        let learnt: Vec<EntityId> = if tenant.collaborative.load().is_some() {
            batch.entities().iter().map(|e| e.id.clone()).collect()
        } else {
            Vec::new()
        };
        write_entities(engine, tenant, stamp, |index| index.upsert(batch));
        collaborative::follow(engine, tenant, learnt.iter());
        Ok(count)
    })
}

/// A delete as the host's `change`, or as the next change.
pub(super) fn delete_stamped(
    engine: &Engine,
    name: &TenantName,
    change: Option<ChangeId>,
    id: &EntityId,
) -> Result<Applied<bool>> {
    ordered(engine, name, change, |tenant, stamp| {
        let deleted = tenant.entities.load().slot_of(id.as_str()).is_some()
            && write_entities(engine, tenant, stamp, |index| index.delete(id.as_str()));
        // A deleted entity leaves the model's space at once.
        collaborative::follow(engine, tenant, std::iter::once(id));
        Ok(deleted)
    })
}

/// Interactions as the host's `change`, or as the next change.
pub(super) fn record_stamped(
    engine: &Engine,
    name: &TenantName,
    change: Option<ChangeId>,
    batch: CheckedInteractions,
) -> Result<Applied<usize>> {
    let batch = weigh(engine, batch);
    let count = batch.len();
    ordered(engine, name, change, |tenant, stamp| {
        write_interactions(engine, tenant, stamp, batch);
        Ok(count)
    })
}

/// Runs `write` as the tenant's next change, holding its writer lock: `stamp` is the host's,
/// or the next one when the host has none. A tenant that [`Engine::install`] replaced while
/// this waited for its lock is looked up again, so the change lands on the tenant that is
/// served, never on one nobody reads any more. A write that fails takes no stamp.
fn ordered<T>(
    engine: &Engine,
    name: &TenantName,
    change: Option<ChangeId>,
    write: impl FnOnce(&Tenant, Stamp) -> Result<T>,
) -> Result<Applied<T>> {
    loop {
        let tenant = engine.tenant(name)?;
        let mut applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if tenant.retired.load(Ordering::Acquire) {
            continue;
        }
        let expected = applied.next();
        let stamp = match change {
            None => expected,
            Some(change) if change.lineage != tenant.lineage => {
                return Ok(Applied::OtherLineage);
            }
            Some(change) if change.stamp < expected => return Ok(Applied::Already),
            Some(change) if change.stamp == expected => change.stamp,
            Some(change) => {
                return Err(EngineError::OutOfOrder {
                    tenant: tenant.name.clone(),
                    stamp: change.stamp,
                    expected,
                });
            }
        };
        let out = write(&tenant, stamp)?;
        *applied = stamp;
        tenant.applied.store(stamp.get(), Ordering::Release);
        return Ok(Applied::Done(out));
    }
}

/// Swaps in a copy of the entity snapshot changed by `change`. The caller holds the writer
/// lock.
pub(super) fn write_entities<T>(
    engine: &Engine,
    tenant: &Tenant,
    stamp: Stamp,
    change: impl FnOnce(&mut EntityIndex) -> T,
) -> T {
    let mut next = EntityIndex::clone(&tenant.entities.load());
    let out = change(&mut next);
    next.generation = engine.next_generation();
    next.stamp = stamp;
    tenant.entities.store(Arc::new(next));
    out
}

/// Weighs each interaction of a checked batch by its kind and factor.
pub(super) fn weigh(engine: &Engine, batch: CheckedInteractions) -> Vec<Weighted> {
    let weights = engine.config.kind_weights;
    batch
        .into_interactions()
        .into_iter()
        .map(|i| Weighted {
            user: i.user,
            entity: i.entity,
            weight: f64::from(weights.of(i.kind)) * f64::from(i.weight.unwrap_or(1.0)),
            at: i.timestamp,
        })
        .collect()
}

/// Swaps in a copy of the interaction snapshot with `batch` recorded. The caller holds the
/// writer lock.
pub(super) fn write_interactions(
    engine: &Engine,
    tenant: &Tenant,
    stamp: Stamp,
    batch: Vec<Weighted>,
) {
    let half_life = millis(engine.config.half_life);
    let retention = millis(engine.config.trending_retention);
    let now = engine.clock.now();
    let mut next = InteractionLog::clone(&tenant.interactions.load());
    next.record(batch, half_life, now, retention);
    next.generation = engine.next_generation();
    next.stamp = stamp;
    tenant.interactions.store(Arc::new(next));
}

/// What a write without a host stamp returns.
pub(super) fn done<T>(applied: Applied<T>) -> T {
    match applied {
        Applied::Done(out) => out,
        Applied::Already | Applied::OtherLineage => {
            unreachable!("a write without a stamp takes the next one")
        }
    }
}
