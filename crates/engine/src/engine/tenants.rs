//! The tenant registry: making, finding and dropping tenants, and staging a tenant off to the
//! side while it loads, then installing it whole.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::collaborative::{self, Collaborative, Learning};

use super::Engine;
use super::writes;
use crate::checked::{CheckedEntities, CheckedInteractions};
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::interactions::InteractionLog;
use crate::model::{EntityId, Interaction, NewEntity, TenantInfo, TenantName, TenantSpec};
use crate::stamp::{Lineage, Stamp};

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

/// What [`Engine::install`] did with a staged tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// It is served now, in place of any tenant of that name.
    Replaced,
    /// The live tenant is the same incarnation and has applied every change the staged one
    /// holds, and maybe more: it stays, with its snapshots' generations and so its cached
    /// answers, and nothing needs loading again.
    Kept,
}

/// One tenant: its settings and the current snapshots. Readers load a snapshot and never wait;
/// a writer copies the current one, changes the copy and swaps it in, one writer at a time.
#[derive(Debug)]
pub(super) struct Tenant {
    pub(super) name: TenantName,
    pub(super) spec: TenantSpec,
    /// The host's name for this incarnation of the tenant ([`Lineage::NONE`] for hosts that
    /// have none).
    pub(super) lineage: Lineage,
    pub(super) entities: ArcSwap<EntityIndex>,
    pub(super) interactions: ArcSwap<InteractionLog>,
    /// Held by the one writer; holds the stamp of the last change applied.
    pub(super) writer: Mutex<Stamp>,
    /// The stamp `writer` holds, for readers that must not wait for a write in progress
    /// ([`Engine::applied`]): stored under the writer lock after each change.
    pub(super) applied: AtomicU64,
    /// Set, under the writer lock, when [`Engine::install`] replaces this tenant.
    pub(super) retired: AtomicBool,
    /// The collaborative model and its space, once trained.
    pub(super) collaborative: ArcSwapOption<Collaborative>,
    /// How its model is trained, as the host set it.
    pub(super) learning: ArcSwap<Learning>,
}

impl StagedTenant {
    /// Sets how the tenant's model is trained, before it is installed.
    pub fn set_learning(&self, learning: Learning) {
        self.0.learning.store(Arc::new(learning));
    }

    /// Counts `count` interactions the host keeps but did not restore (older than the history
    /// it loads), so the tenant's interaction count is the same as before a restart.
    pub fn count_unrestored(&self, count: u64) {
        let mut log = InteractionLog::clone(&self.0.interactions.load());
        log.count_unrestored(count);
        self.0.interactions.store(Arc::new(log));
    }
}

pub(super) fn create(
    engine: &Engine,
    name: TenantName,
    spec: TenantSpec,
    lineage: Lineage,
    stamp: Stamp,
) -> Result<Created> {
    let spec = spec.checked()?;
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
        learning: **tenant.learning.load(),
        entities: tenant.entities.load().len(),
        interactions: tenant.interactions.load().total(),
    })
}

pub(super) fn stage(
    engine: &Engine,
    name: TenantName,
    spec: TenantSpec,
    lineage: Lineage,
    stamp: Stamp,
) -> Result<StagedTenant> {
    let spec = spec.checked()?;
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

pub(super) fn restore_deletes(engine: &Engine, staged: &StagedTenant, ids: &[EntityId]) -> usize {
    let tenant = &staged.0;
    let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
    writes::write_entities(engine, tenant, *applied, |index| {
        ids.iter().filter(|id| index.delete(id.as_str())).count()
    })
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

pub(super) fn install(engine: &Engine, staged: StagedTenant) -> Installed {
    let staged = Arc::new(staged.0);
    let staged_stamp = *staged.writer.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let current = engine
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&staged.name)
            .cloned();
        // The live tenant's writer lock is taken before the registry's, and the registry's is
        // held only to swap: a long write to this tenant never stalls readers of the others.
        let applied = current
            .as_ref()
            .map(|c| c.writer.lock().unwrap_or_else(PoisonError::into_inner));
        if let (Some(current), Some(applied)) = (&current, &applied)
            && current.lineage == staged.lineage
            && **applied >= staged_stamp
        {
            return Installed::Kept;
        }
        let mut tenants = engine
            .tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let unchanged = match (&current, tenants.get(&staged.name)) {
            (Some(current), Some(now)) => Arc::ptr_eq(current, now),
            (None, None) => true,
            (Some(_), None) | (None, Some(_)) => false,
        };
        if !unchanged {
            // Made, dropped or replaced meanwhile: decide again against what is there now.
            continue;
        }
        if let Some(current) = &current {
            if current.lineage == staged.lineage {
                collaborative::carry(engine, current, &staged);
            }
            // Writers waiting for its lock look the tenant up again when they get it.
            current.retired.store(true, Ordering::Release);
        }
        tenants.insert(staged.name.clone(), staged);
        return Installed::Replaced;
    }
}

pub(super) fn new_tenant(
    engine: &Engine,
    name: TenantName,
    spec: TenantSpec,
    lineage: Lineage,
    stamp: Stamp,
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
        applied: AtomicU64::new(stamp.get()),
        retired: AtomicBool::new(false),
        collaborative: ArcSwapOption::empty(),
        learning: ArcSwap::from_pointee(Learning::default()),
    }
}
