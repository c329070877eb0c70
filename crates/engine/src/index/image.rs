//! The index as an image's rows, and back (see `engine::image`): slot for slot, so the graph's
//! links, which name slots, stay right.

use std::sync::Arc;

use reco_hnsw::{Graph, GraphParts};

use super::EntityIndex;
use crate::distance::{inverse_norm, quantize};
use crate::model::NewEntity;

/// The rows of an image: how many slots, each entity's slot, the entities, and the free slots
/// with their last vectors.
pub(crate) type ImageRows = (usize, Vec<u32>, Vec<NewEntity>, Vec<(u32, Vec<f32>)>);

impl EntityIndex {
    /// Every slot's row, as an image holds them.
    pub fn image_rows(&self) -> ImageRows {
        let dim = self.spec.dimension;
        let mut slots = Vec::with_capacity(self.len());
        let mut entities = Vec::with_capacity(self.len());
        let mut free = Vec::new();
        let mut count = 0;
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (r, record) in chunk.records.iter().enumerate() {
                let slot = super::slot_at(c, r);
                count += 1;
                let vector = chunk.vector(r, dim).to_vec();
                match record {
                    Some(record) => {
                        slots.push(slot);
                        entities.push(NewEntity {
                            id: record.id.clone(),
                            vector,
                            category: record.category.as_deref().map(str::to_owned),
                            tags: record.tags.iter().map(|t| t.to_string()).collect(),
                            attributes: record.attributes.clone(),
                        });
                    }
                    None => free.push((slot, vector)),
                }
            }
        }
        (count, slots, entities, free)
    }

    /// The graph's parts, when there is a graph.
    pub fn graph_parts(&self) -> Option<GraphParts> {
        self.graph.as_deref().map(Graph::to_parts)
    }

    /// Fills an empty index from an image's rows, checked by the caller (every slot below
    /// `slot_count` named once, vectors of the tenant's dimension), and puts the graph in; a
    /// tenant past the graph's threshold whose image had none gets one built.
    pub fn restore_image(
        &mut self,
        slot_count: usize,
        entities: Vec<(NewEntity, u32)>,
        free: Vec<(u32, Vec<f32>)>,
        graph: Option<Graph>,
    ) {
        debug_assert!(self.slots.is_empty(), "an image fills an empty index");
        for _ in 0..slot_count {
            self.allocate();
        }
        for (entity, slot) in entities {
            self.put(slot, entity);
        }
        let dim = self.spec.dimension;
        self.free = Vec::with_capacity(free.len());
        for (slot, vector) in free {
            let (chunk, r) = self.chunk_mut(slot);
            chunk.vectors[r * dim..(r + 1) * dim].copy_from_slice(&vector);
            chunk.inverse_norms[r] = inverse_norm(&vector);
            if let Some(code) = chunk.codes.get_mut(r * dim..(r + 1) * dim) {
                chunk.code_scales[r] = quantize(&vector, code);
            }
            self.free.push(slot);
        }
        // A server now set to search exactly (or a tenant without vectors) keeps no graph.
        let graph = graph.filter(|_| !self.search.exact && self.spec.has_vectors());
        match graph {
            Some(graph) => {
                graph.set_expansion_search(
                    self.search.expansion_search * super::writes::breadth_factor(self.len()),
                );
                self.graph = Some(Arc::new(graph));
            }
            None => {
                let all: Vec<u32> = self.slots.values().copied().collect();
                self.index_rows(&all);
            }
        }
    }
}
