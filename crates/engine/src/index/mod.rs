//! A tenant's entities: one immutable snapshot that writers copy, change and swap.
//!
//! Rows live in chunks of [`CHUNK_ROWS`] behind `Arc`s. Cloning a snapshot clones a vector of
//! `Arc`s and a few persistent maps (`imbl`), so a write pays for the chunks it touches, not for
//! the whole tenant. Slots of deleted entities are reused. Category and tag filters are roaring
//! bitmaps of slots, so a filter is a few bitmap operations rather than a string compare per
//! candidate.
//!
//! This file holds the snapshot and its reads; `writes` the one check of a batch and every
//! change, `filters` the bitmaps and candidates, `scans` the graph's plan and the scans.

mod filters;
mod image;
mod recall;
mod scans;
mod writes;

use std::sync::Arc;

use reco_hnsw::Graph;
use roaring::RoaringBitmap;

pub(crate) use filters::Candidates;
pub use filters::Filter;
pub use recall::{LADDER, RecallEstimate};
pub(crate) use recall::{RecallMonitor, Sample};

use crate::config::SearchConfig;
use crate::distance::prefetch;
use crate::model::{EntityId, EntityView, TenantSpec};
use crate::stamp::{Generation, Stamp};

/// The slot of row `r` of chunk `c`, for a row that exists: `allocate` hands out only slots
/// that fit in a `u32`.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "every allocated slot fits in u32; allocate checks it"
)]
pub(crate) fn slot_at(c: usize, r: usize) -> u32 {
    ((c << CHUNK_SHIFT) + r) as u32
}

/// Rows per chunk. A write copies at most this many rows of each chunk it touches.
pub(crate) const CHUNK_ROWS: usize = 512;
const CHUNK_SHIFT: u32 = CHUNK_ROWS.trailing_zeros();

/// What ranking does not need of an entity, kept beside its row.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: EntityId,
    pub category: Option<Arc<str>>,
    pub tags: Box<[Arc<str>]>,
    pub attributes: Option<Arc<str>>,
}

#[derive(Debug, Clone, Default)]
struct Chunk {
    /// `records.len() * dimension` components, row after row.
    vectors: Vec<f32>,
    inverse_norms: Vec<f32>,
    /// The int8 code of each row, row after row, when the tenant keeps codes
    /// (`SearchConfig::quantized`); empty otherwise.
    codes: Vec<i8>,
    /// The scale of each row's code (see `distance::quantize`).
    code_scales: Vec<f32>,
    /// `None` marks a free slot.
    records: Vec<Option<Record>>,
}

impl Chunk {
    /// The f32 vector of row `r`.
    #[inline]
    fn vector(&self, r: usize, dim: usize) -> &[f32] {
        &self.vectors[r * dim..(r + 1) * dim]
    }

    /// The int8 code of row `r`, when the tenant keeps codes.
    #[inline]
    fn code(&self, r: usize, dim: usize) -> Option<&[i8]> {
        self.codes.get(r * dim..(r + 1) * dim)
    }
}

/// A snapshot of a tenant's entities.
#[derive(Debug, Clone)]
pub(crate) struct EntityIndex {
    spec: TenantSpec,
    /// Unique across the engine's life; cached answers carry it in their key.
    pub generation: Generation,
    /// The host's stamp of the last change written to this snapshot (see `Engine::upsert_at`).
    pub stamp: Stamp,
    /// How searches run, and the graph once the tenant is large enough: shared by every
    /// snapshot of the tenant (see `graph`).
    search: SearchConfig,
    graph: Option<Arc<Graph>>,
    /// The questions kept for recall audits and what the audits found (see `recall`): shared
    /// by every snapshot of the tenant, as the graph is.
    recall: Arc<RecallMonitor>,
    chunks: Vec<Arc<Chunk>>,
    /// Ordered by id (bytes), so entities can be listed a page at a time.
    slots: imbl::OrdMap<EntityId, u32>,
    free: Vec<u32>,
    categories: imbl::HashMap<Arc<str>, Arc<RoaringBitmap>>,
    tags: imbl::HashMap<Arc<str>, Arc<RoaringBitmap>>,
}

/// A stored row, borrowed from a snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row<'a> {
    pub vector: &'a [f32],
    pub inverse_norm: f32,
    pub record: &'a Record,
}

impl EntityIndex {
    pub fn new(spec: TenantSpec, generation: Generation, search: SearchConfig) -> Self {
        Self {
            spec,
            generation,
            stamp: Stamp::ZERO,
            search,
            graph: None,
            recall: Arc::new(RecallMonitor::default()),
            chunks: Vec::new(),
            slots: imbl::OrdMap::new(),
            free: Vec::new(),
            categories: imbl::HashMap::new(),
            tags: imbl::HashMap::new(),
        }
    }

    pub fn spec(&self) -> TenantSpec {
        self.spec
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.slots.get(id).copied()
    }

    /// The row of a live slot.
    pub fn row(&self, slot: u32) -> Option<Row<'_>> {
        let (chunk, r) = self.allocated(slot)?;
        let record = chunk.records[r].as_ref()?;
        let dim = self.spec.dimension;
        Some(Row {
            vector: chunk.vector(r, dim),
            inverse_norm: chunk.inverse_norms[r],
            record,
        })
    }

    /// The row of an entity, by id.
    pub fn row_of(&self, id: &str) -> Option<Row<'_>> {
        self.row(self.slot_of(id)?)
    }

    /// Every live row, in slot order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        let dim = self.spec.dimension;
        self.chunks.iter().flat_map(move |chunk| {
            chunk
                .records
                .iter()
                .enumerate()
                .filter_map(move |(r, record)| {
                    Some(Row {
                        vector: chunk.vector(r, dim),
                        inverse_norm: chunk.inverse_norms[r],
                        record: record.as_ref()?,
                    })
                })
        })
    }

    pub fn get(&self, id: &str) -> Option<EntityView> {
        let row = self.row(self.slot_of(id)?)?;
        Some(EntityView {
            id: row.record.id.clone(),
            vector: row.vector.to_vec(),
            category: row.record.category.clone(),
            tags: row.record.tags.to_vec(),
            attributes: row.record.attributes.clone(),
        })
    }

    /// Up to `limit` entities whose ids come after `after` (all, without it), in id order
    /// (by bytes).
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<EntityView> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.slots
            .range::<_, str>((from, Bound::Unbounded))
            .take(limit)
            .filter_map(|(id, _)| self.get(id.as_str()))
            .collect()
    }

    /// The chunk and row of an allocated slot, live or not: the graph walks through the rows of
    /// deleted entities too (their vectors stay until the slot is reused).
    #[inline]
    fn allocated(&self, slot: u32) -> Option<(&Chunk, usize)> {
        let chunk = self.chunks.get((slot >> CHUNK_SHIFT) as usize)?;
        let r = slot as usize & (CHUNK_ROWS - 1);
        (r < chunk.inverse_norms.len()).then_some((chunk, r))
    }

    /// Starts loading what the graph reads of a slot: its code (or row), scale and norm.
    #[inline]
    fn prefetch(&self, slot: u32) {
        let Some((chunk, r)) = self.allocated(slot) else {
            return;
        };
        let dim = self.spec.dimension;
        if let Some(code) = chunk.code(r, dim) {
            prefetch(code);
            prefetch(&chunk.code_scales[r..=r]);
        } else {
            prefetch(chunk.vector(r, dim));
        }
        prefetch(&chunk.inverse_norms[r..=r]);
    }

    /// Starts loading a slot's row (its vector, norm and record), for an exact score a little
    /// later. The candidates a search rescores lie anywhere in memory: scored one after the
    /// other, each waited for its vector in turn (in a profile of uncached traffic, 83% of the
    /// exact dot product's samples were on its loads); asked for together, the loads overlap.
    #[inline]
    pub(super) fn prefetch_row(&self, slot: u32) {
        let Some((chunk, r)) = self.allocated(slot) else {
            return;
        };
        prefetch(chunk.vector(r, self.spec.dimension));
        prefetch(&chunk.inverse_norms[r..=r]);
        prefetch(&chunk.records[r..=r]);
    }

    /// How many candidates a graph search considers now (HNSW's ef, widened with the tenant's
    /// size or set by [`crate::Engine::set_search_breadth`]); the setting when there is no
    /// graph.
    pub fn search_breadth(&self) -> usize {
        self.graph
            .as_deref()
            .map_or(self.search.expansion_search, Graph::expansion_search)
    }

    /// The settings searches run with.
    pub fn search_config(&self) -> &SearchConfig {
        &self.search
    }

    /// Changes the graph's search breadth (HNSW's ef), for benchmarks that compare settings.
    pub fn set_expansion_search(&self, ef: usize) {
        if let Some(graph) = &self.graph {
            graph.set_expansion_search(ef);
        }
    }

    /// The tenant's recall audits.
    pub fn recall(&self) -> &RecallMonitor {
        &self.recall
    }

    /// Whether searches may use a graph now.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Bytes this snapshot holds on the heap, roughly: rows, records, ids, maps and bitmaps.
    /// Shared chunks are counted in full.
    pub fn heap_bytes(&self) -> usize {
        let rows: usize = self
            .chunks
            .iter()
            .map(|c| {
                c.vectors.capacity() * 4
                    + c.inverse_norms.capacity() * 4
                    + c.codes.capacity()
                    + c.code_scales.capacity() * 4
                    + c.records.capacity() * size_of::<Option<Record>>()
            })
            .sum();
        let ids: usize = self.slots.keys().map(|id| id.as_str().len() + 16).sum();
        let map = self.slots.len() * (size_of::<(EntityId, u32)>() + 8);
        let bitmaps: usize = self
            .categories
            .values()
            .chain(self.tags.values())
            .map(|b| b.serialized_size())
            .sum();
        let graph = self.graph.as_deref().map_or(0, Graph::heap_bytes);
        rows + ids + map + bitmaps + self.free.capacity() * 4 + graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checked::CheckedEntities;
    use crate::error::EngineError;
    use crate::model::{Metric, NewEntity};
    use crate::topk::TopK;

    fn spec() -> TenantSpec {
        TenantSpec::new(2, Metric::Dot).unwrap()
    }

    fn entity(id: &str, v: [f32; 2], category: Option<&str>, tags: &[&str]) -> NewEntity {
        NewEntity {
            id: EntityId::parse(id).unwrap(),
            vector: v.to_vec(),
            category: category.map(str::to_owned),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            attributes: None,
        }
    }

    fn index(entities: Vec<NewEntity>) -> EntityIndex {
        let mut index = EntityIndex::new(spec(), Generation(1), SearchConfig::default());
        index.upsert(CheckedEntities::new(spec(), entities).unwrap());
        index
    }

    fn allowed(index: &EntityIndex, filter: &Filter) -> Vec<String> {
        let mut top = TopK::new(100);
        let candidates = index.candidates(filter, RoaringBitmap::new());
        index.scan(&candidates, f32::NEG_INFINITY, &mut top, |_, _| 0.0);
        top.into_sorted().iter().map(|c| c.id.to_owned()).collect()
    }

    #[test]
    fn batches_with_a_bad_item_name_it() {
        let batch = vec![
            entity("a", [1.0, 0.0], None, &[]),
            entity("b", [f32::NAN, 0.0], None, &[]),
        ];
        let Err(EngineError::InvalidItem { index, source }) = CheckedEntities::new(spec(), batch)
        else {
            panic!("a NaN was accepted");
        };
        assert_eq!(index, 1);
        assert!(matches!(*source, EngineError::InvalidVector(_)));
        let twice = vec![
            entity("a", [1.0, 0.0], None, &[]),
            entity("a", [1.0, 0.0], None, &[]),
        ];
        assert!(matches!(
            CheckedEntities::new(spec(), twice),
            Err(EngineError::InvalidItem { index: 1, .. })
        ));
        let long_tag = "t".repeat(300);
        let bad_tag = vec![entity("a", [1.0, 0.0], None, &[&long_tag])];
        assert!(CheckedEntities::new(spec(), bad_tag).is_err());
    }

    #[test]
    fn upserts_replace_and_deletes_free_slots() {
        let mut index = index(vec![
            entity("a", [1.0, 0.0], Some("x"), &["t", "t", "u"]),
            entity("b", [0.0, 1.0], Some("y"), &["u"]),
        ]);
        assert_eq!(
            index.get("a").unwrap().tags.len(),
            2,
            "repeated tags are folded"
        );
        index.upsert(
            CheckedEntities::new(spec(), vec![entity("a", [2.0, 2.0], Some("y"), &[])]).unwrap(),
        );
        let a = index.get("a").unwrap();
        assert_eq!(a.vector, [2.0, 2.0]);
        assert_eq!(a.category.as_deref(), Some("y"));
        let in_x = Filter {
            category: Some("x".into()),
            ..Filter::default()
        };
        assert!(
            allowed(&index, &in_x).is_empty(),
            "the old category is gone"
        );
        assert!(index.delete("a"));
        assert!(!index.delete("a"));
        assert!(index.get("a").is_none());
        assert_eq!(index.len(), 1);
        index.upsert(
            CheckedEntities::new(spec(), vec![entity("c", [3.0, 3.0], None, &[])]).unwrap(),
        );
        assert_eq!(index.slot_of("c"), Some(0), "the freed slot is reused");
    }

    #[test]
    fn filters_combine() {
        let index = index(vec![
            entity("a", [1.0, 0.0], Some("x"), &["t", "u"]),
            entity("b", [1.0, 0.0], Some("x"), &["u"]),
            entity("c", [1.0, 0.0], Some("y"), &["t"]),
            entity("d", [1.0, 0.0], None, &[]),
        ]);
        let f = |category: Option<&str>, any: &[&str], all: &[&str], exclude: &[&str]| Filter {
            category: category.map(str::to_owned),
            tags_any: any.iter().map(|t| (*t).to_owned()).collect(),
            tags_all: all.iter().map(|t| (*t).to_owned()).collect(),
            exclude: exclude
                .iter()
                .map(|e| EntityId::parse(e).unwrap())
                .collect(),
        };
        assert_eq!(
            allowed(&index, &f(None, &[], &[], &[])),
            ["a", "b", "c", "d"]
        );
        assert_eq!(allowed(&index, &f(Some("x"), &[], &[], &[])), ["a", "b"]);
        assert_eq!(allowed(&index, &f(None, &["t"], &[], &[])), ["a", "c"]);
        assert_eq!(allowed(&index, &f(None, &[], &["t", "u"], &[])), ["a"]);
        assert_eq!(
            allowed(&index, &f(Some("x"), &["t", "nope"], &[], &[])),
            ["a"]
        );
        assert_eq!(
            allowed(&index, &f(None, &[], &[], &["b", "zz"])),
            ["a", "c", "d"]
        );
        assert!(allowed(&index, &f(Some("zz"), &[], &[], &[])).is_empty());
    }

    #[test]
    fn writes_to_a_clone_leave_the_original_alone() {
        let original = index(vec![entity("a", [1.0, 0.0], None, &[])]);
        let mut next = original.clone();
        next.upsert(
            CheckedEntities::new(spec(), vec![entity("a", [5.0, 5.0], None, &[])]).unwrap(),
        );
        next.delete("a");
        assert_eq!(original.get("a").unwrap().vector, [1.0, 0.0]);
    }
}
