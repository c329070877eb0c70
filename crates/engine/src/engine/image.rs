//! A tenant's entities as plain data, and back: what a host writes to a file at shutdown (and
//! now and then) so that a restart neither reads every row from storage nor builds the graph
//! again. The image holds every slot of the index (live entities at their slots, and the
//! vectors of free slots, which the graph still walks through) and the graph's own arrays, so
//! the tenant comes back slot for slot, link for link. Interactions and the collaborative model are not
//! in it: the host restores them from storage as before.

use std::sync::PoisonError;

use reco_hnsw::{Graph, GraphParts};

use super::Engine;
use super::tenants::{self, StagedTenant};
use super::writes;
use crate::checked::CheckedEntities;
use crate::error::{EngineError, Result};
use crate::model::{NewEntity, TenantName, TenantSpec};
use crate::stamp::{Lineage, Stamp};

/// A tenant's entities, slot by slot, with its graph.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantImage {
    /// The tenant.
    pub name: TenantName,
    /// Its content spec.
    pub spec: TenantSpec,
    /// The incarnation it was taken of.
    pub lineage: Lineage,
    /// The stamp of the last change it holds.
    pub stamp: Stamp,
    /// How many slots the index has, live and free.
    pub slot_count: usize,
    /// The entities, each at its slot (`entity_slots`, in the same order).
    pub entities: Vec<NewEntity>,
    /// The slot of each entity.
    pub entity_slots: Vec<u32>,
    /// The free slots, with the vector each last held (graph walks pass through them).
    pub free: Vec<(u32, Vec<f32>)>,
    /// The graph, when the tenant has one.
    pub graph: Option<GraphParts>,
}

/// The image of a tenant. The snapshot, its stamp and the graph's parts are taken under the
/// writer lock (writers change the graph in place, so its parts match the snapshot only while
/// no write runs); the rows are copied after it is released, from the snapshot, which is
/// immutable. Writes wait for the graph's copy only.
pub(super) fn take(engine: &Engine, name: &TenantName) -> Result<TenantImage> {
    let tenant = engine.tenant(name)?;
    let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
    let index = tenant.entities.load_full();
    let stamp = *applied;
    let graph = index.graph_parts();
    drop(applied);
    let (slot_count, entity_slots, entities, free) = index.image_rows();
    Ok(TenantImage {
        name: tenant.name.clone(),
        spec: tenant.spec,
        lineage: tenant.lineage,
        stamp,
        slot_count,
        entities,
        entity_slots,
        free,
        graph,
    })
}

/// A tenant staged from an image, to be filled with interactions and installed as one loaded
/// from storage is. Every live entity is checked as a write is, every slot is named once,
/// every free slot's vector has the tenant's dimension, and the graph's parts describe a
/// graph: an image that fails any of these is refused whole.
pub(super) fn stage(engine: &Engine, image: TenantImage) -> Result<StagedTenant> {
    let bad = |what: &str| EngineError::InvalidArgument(format!("the tenant's image: {what}"));
    if let Some((_, problem)) = CheckedEntities::problems(image.spec, &image.entities)
        .into_iter()
        .next()
    {
        return Err(bad(&problem.to_string()));
    }
    if image.entity_slots.len() != image.entities.len() {
        return Err(bad("an entity without a slot"));
    }
    let mut named = vec![false; image.slot_count];
    let slots = image
        .entity_slots
        .iter()
        .copied()
        .chain(image.free.iter().map(|(slot, _)| *slot));
    for slot in slots {
        match named.get_mut(slot as usize) {
            Some(seen @ false) => *seen = true,
            Some(true) | None => return Err(bad("a slot named twice, or past the slots")),
        }
    }
    if named.contains(&false) {
        return Err(bad("a slot named by nothing"));
    }
    let dimension = image.spec.dimension;
    if image
        .free
        .iter()
        .any(|(_, vector)| vector.len() != dimension)
    {
        return Err(bad("a free slot's vector has another dimension"));
    }
    let graph = match image.graph {
        Some(parts) => Some(Graph::from_parts(parts).ok_or_else(|| bad("the graph's parts"))?),
        None => None,
    };
    let staged = tenants::stage(engine, image.name, image.spec, image.lineage, image.stamp)?;
    let tenant = &staged.0;
    let applied = tenant.writer.lock().unwrap_or_else(PoisonError::into_inner);
    writes::write_entities(engine, tenant, *applied, |index| {
        index.restore_image(
            image.slot_count,
            image.entities.into_iter().zip(image.entity_slots).collect(),
            image.free,
            graph,
        );
    });
    drop(applied);
    Ok(staged)
}
