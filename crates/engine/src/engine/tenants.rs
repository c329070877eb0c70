//! The tenant registry: making, finding and dropping tenants, and staging a tenant off to the
//! side while it loads, then installing it whole.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::Engine;
use super::writes;
use crate::checked::{CheckedEntities, CheckedInteractions};
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::interactions::InteractionLog;
use crate::model::{Interaction, NewEntity, TenantInfo, TenantName, TenantSpec};

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
pub struct StagedTenant(pub(super) Tenant);

/// One tenant: its settings and the current snapshots. Readers load a snapshot and never wait;
/// a writer copies the current one, changes the copy and swaps it in, one writer at a time.
#[derive(Debug)]
pub(super) struct Tenant {
    pub(super) name: TenantName,
    pub(super) spec: TenantSpec,
    /// The host's name for this incarnation of the tenant (0 for hosts that have none).
    pub(super) lineage: u64,
    pub(super) entities: ArcSwap<EntityIndex>,
    pub(super) interactions: ArcSwap<InteractionLog>,
    /// Held by the one writer; holds the stamp of the last change applied.
    pub(super) writer: Mutex<u64>,
}

pub(super) fn create(
    engine: &Engine,
    name: TenantName,
    spec: TenantSpec,
    lineage: u64,
    stamp: u64,
) -> Result<Created> {
    let spec = TenantSpec::new(spec.dimension, spec.metric)?;
    let mut tenants = engine
        .tenants
        .write()
        .unwrap_or_else(PoisonError::into_inner);
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
    let tenant = new_tenant(engine, name.clone(), spec, lineage, stamp);
    tenants.insert(name, Arc::new(tenant));
    Ok(Created::Created)
}

pub(super) fn remove(engine: &Engine, name: &TenantName) -> Result<()> {
    let mut tenants = engine
        .tenants
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    tenants
        .remove(name)
        .map(drop)
        .ok_or_else(|| EngineError::TenantNotFound(name.clone()))
}

pub(super) fn names(engine: &Engine) -> Vec<TenantName> {
    let tenants = engine
        .tenants
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let mut names: Vec<TenantName> = tenants.keys().cloned().collect();
    names.sort();
    names
}

pub(super) fn info(engine: &Engine, name: &TenantName) -> Result<TenantInfo> {
    let tenant = engine.tenant(name)?;
    Ok(TenantInfo {
        name: tenant.name.clone(),
        spec: tenant.spec,
        entities: tenant.entities.load().len(),
        interactions: tenant.interactions.load().total(),
    })
}

pub(super) fn stage(
    engine: &Engine,
    name: TenantName,
    spec: TenantSpec,
    lineage: u64,
    stamp: u64,
) -> Result<StagedTenant> {
    let spec = TenantSpec::new(spec.dimension, spec.metric)?;
    Ok(StagedTenant(new_tenant(engine, name, spec, lineage, stamp)))
}

pub(super) fn restore_entities(
    engine: &Engine,
    staged: &StagedTenant,
    batch: Vec<NewEntity>,
) -> Result<usize> {
    let tenant = &staged.0;
    let batch = CheckedEntities::new(tenant.spec, batch)?;
    let count = batch.len();
    let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
    writes::write_entities(engine, tenant, *applied, |index| index.upsert(batch));
    Ok(count)
}

pub(super) fn restore_interactions(
    engine: &Engine,
    staged: &StagedTenant,
    batch: Vec<Interaction>,
) -> Result<usize> {
    let tenant = &staged.0;
    let batch = writes::weigh(engine, CheckedInteractions::new(batch)?);
    let count = batch.len();
    let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
    writes::write_interactions(engine, tenant, *applied, batch);
    Ok(count)
}

pub(super) fn install(engine: &Engine, staged: StagedTenant) -> bool {
    let staged = staged.0;
    let mut tenants = engine
        .tenants
        .write()
        .unwrap_or_else(PoisonError::into_inner);
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

pub(super) fn new_tenant(
    engine: &Engine,
    name: TenantName,
    spec: TenantSpec,
    lineage: u64,
    stamp: u64,
) -> Tenant {
    let mut entities = EntityIndex::new(spec, engine.next_generation(), engine.config.search);
    entities.stamp = stamp;
    let mut interactions = InteractionLog::new(engine.next_generation());
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
