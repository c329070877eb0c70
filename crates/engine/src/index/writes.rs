//! Writes to a snapshot: upserts of checked batches and deletes, slots and their reuse, labels,
//! and the graph's inserts.

use std::sync::Arc;

use reco_hnsw::{Graph, Shape, Vectors};
use roaring::RoaringBitmap;

use super::{CHUNK_ROWS, CHUNK_SHIFT, Chunk, EntityIndex, Record};
use crate::checked::CheckedEntities;
use crate::distance::{dot, dot_i8, inverse_norm, quantize, squared_norm};
use crate::model::{Metric, NewEntity};

/// How much wider than `SearchConfig::expansion_search` a graph of `entities` searches: twice
/// from 50,000 entities, three times from 500,000. On clustered 128-d data recall@10 at a fixed
/// breadth falls as the graph grows (ef = 64: 0.994 at 100k, 0.90 at 1M), and this keeps it
/// at about 0.99 to 100k and 0.97 at 1M (ef = 192, 0.71 ms on one core).
pub(super) fn breadth_factor(entities: usize) -> usize {
    match entities {
        0..50_000 => 1,
        50_000..500_000 => 2,
        _ => 3,
    }
}

impl EntityIndex {
    /// Inserts or replaces each entity of a checked batch, in the graph too.
    pub fn upsert(&mut self, batch: CheckedEntities) {
        let mut written = Vec::with_capacity(batch.len());
        for entity in batch.into_entities() {
            let slot = match self.slots.get(&entity.id) {
                Some(&slot) => {
                    self.unlabel(slot);
                    slot
                }
                None => self.allocate(),
            };
            self.put(slot, entity);
            written.push(slot);
        }
        self.index_rows(&written);
    }

    /// Writes an entity into an allocated slot whose labels are cleared: its labels, its row
    /// and its id.
    pub(super) fn put(&mut self, slot: u32, entity: NewEntity) {
        let category = entity
            .category
            .map(|c| Self::label(&mut self.categories, &c, slot));
        let tags = entity
            .tags
            .iter()
            .map(|t| Self::label(&mut self.tags, t, slot))
            .collect();
        let record = Record {
            id: entity.id.clone(),
            category,
            tags,
            attributes: entity.attributes,
        };
        self.write_row(slot, &entity.vector, record);
        self.slots.insert(entity.id, slot);
    }

    /// Puts written rows in the graph, or builds the graph when the tenant has grown past the
    /// threshold (all its rows then).
    pub(super) fn index_rows(&mut self, written: &[u32]) {
        // Without content vectors there is nothing to search by.
        if self.search.exact || !self.spec.has_vectors() {
            return;
        }
        let (graph, slots) = match &self.graph {
            Some(graph) => (graph.clone(), written.to_vec()),
            None if self.len() >= self.search.threshold => {
                let graph = Arc::new(Graph::new(Shape {
                    connectivity: self.search.connectivity,
                    expansion_add: self.search.expansion_add,
                    expansion_search: self.search.expansion_search,
                }));
                self.graph = Some(graph.clone());
                let mut slots: Vec<u32> = self.slots.values().copied().collect();
                slots.sort_unstable();
                (graph, slots)
            }
            None => return,
        };
        graph.insert_many(&Stored { index: self }, &slots, self.search.build_threads);
        graph.set_expansion_search(self.search.expansion_search * breadth_factor(self.len()));
    }
    /// Removes an entity; false when it did not exist.
    pub fn delete(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        self.unlabel(slot);
        let (chunk, r) = self.chunk_mut(slot);
        chunk.records[r] = None;
        self.free.push(slot);
        if let Some(graph) = &self.graph {
            graph.remove(slot);
        }
        true
    }
    pub(super) fn chunk_mut(&mut self, slot: u32) -> (&mut Chunk, usize) {
        let chunk = Arc::make_mut(&mut self.chunks[(slot >> CHUNK_SHIFT) as usize]);
        (chunk, slot as usize & (CHUNK_ROWS - 1))
    }
    /// A free slot, or a new one at the end.
    pub(super) fn allocate(&mut self) -> u32 {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        let dim = self.spec.dimension;
        let quantized = self.search.quantized;
        if self
            .chunks
            .last()
            .is_none_or(|c| c.records.len() == CHUNK_ROWS)
        {
            self.chunks.push(Arc::new(Chunk::default()));
        }
        let chunk = Arc::make_mut(self.chunks.last_mut().expect("a chunk was just ensured"));
        let rows = chunk.records.len();
        if rows == chunk.records.capacity() {
            // Grow by doubling but never past a full chunk. A chunk copied on write has no spare
            // room, and plain `Vec` growth would then leave up to half of it unused.
            let target = (rows * 2).clamp(8, CHUNK_ROWS);
            chunk
                .vectors
                .reserve_exact(target * dim - chunk.vectors.len());
            chunk.inverse_norms.reserve_exact(target - rows);
            chunk.records.reserve_exact(target - rows);
            if quantized {
                chunk.codes.reserve_exact(target * dim - chunk.codes.len());
                chunk.code_scales.reserve_exact(target - rows);
            }
        }
        chunk.vectors.resize(chunk.vectors.len() + dim, 0.0);
        chunk.inverse_norms.push(0.0);
        chunk.records.push(None);
        if quantized {
            chunk.codes.resize(chunk.codes.len() + dim, 0);
            chunk.code_scales.push(0.0);
        }
        let (c, r) = (self.chunks.len() - 1, rows);
        u32::try_from((c << CHUNK_SHIFT) + r)
            .expect("a tenant holds fewer than 2^32 entities: slots are u32")
    }
    pub(super) fn write_row(&mut self, slot: u32, vector: &[f32], record: Record) {
        let dim = self.spec.dimension;
        let (chunk, r) = self.chunk_mut(slot);
        chunk.vectors[r * dim..(r + 1) * dim].copy_from_slice(vector);
        chunk.inverse_norms[r] = inverse_norm(vector);
        chunk.records[r] = Some(record);
        if let Some(code) = chunk.codes.get_mut(r * dim..(r + 1) * dim) {
            chunk.code_scales[r] = quantize(vector, code);
        }
    }
    /// Adds `slot` to a label's bitmap and returns the shared label text.
    pub(super) fn label(
        labels: &mut imbl::HashMap<Arc<str>, Arc<RoaringBitmap>>,
        label: &str,
        slot: u32,
    ) -> Arc<str> {
        if let Some((key, bitmap)) = labels.get_key_value_mut(label) {
            Arc::make_mut(bitmap).insert(slot);
            return key.clone();
        }
        let key: Arc<str> = label.into();
        let mut bitmap = RoaringBitmap::new();
        bitmap.insert(slot);
        labels.insert(key.clone(), Arc::new(bitmap));
        key
    }
    /// Takes a live slot out of its category and tag bitmaps.
    pub(super) fn unlabel(&mut self, slot: u32) {
        let Some(row) = self.row(slot) else {
            return;
        };
        let category = row.record.category.clone();
        let tags = row.record.tags.clone();
        let drop_slot = |labels: &mut imbl::HashMap<Arc<str>, Arc<RoaringBitmap>>, l: &str| {
            if let Some(bitmap) = labels.get_mut(l) {
                let bitmap = Arc::make_mut(bitmap);
                bitmap.remove(slot);
                if bitmap.is_empty() {
                    labels.remove(l);
                }
            }
        };
        if let Some(category) = category {
            drop_slot(&mut self.categories, &category);
        }
        for tag in tags.iter() {
            drop_slot(&mut self.tags, tag);
        }
    }
}

/// A snapshot's stored vectors as the graph sees them on insert: int8 codes when the tenant
/// keeps them, f32 rows otherwise. A distance is minus the goodness (minus the squared
/// distance under euclidean), so nearer is lower.
struct Stored<'a> {
    index: &'a EntityIndex,
}

impl Vectors for Stored<'_> {
    fn between(&self, a: u32, b: u32) -> Option<f32> {
        let index = self.index;
        let dim = index.spec.dimension;
        let (ca, ra) = index.allocated(a)?;
        let (cb, rb) = index.allocated(b)?;
        let (ia, ib) = (ca.inverse_norms[ra], cb.inverse_norms[rb]);
        let product = match (ca.code(ra, dim), cb.code(rb, dim)) {
            (Some(a), Some(b)) => dot_i8(a, b) * ca.code_scales[ra] * cb.code_scales[rb],
            _ => dot(ca.vector(ra, dim), cb.vector(rb, dim)),
        };
        Some(match index.spec.metric {
            Metric::Cosine => -product * ia * ib,
            Metric::Dot => -product,
            Metric::Euclidean => squared_norm(ia) + squared_norm(ib) - 2.0 * product,
        })
    }

    fn prefetch(&self, node: u32) {
        self.index.prefetch(node);
    }
}
