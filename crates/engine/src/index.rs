//! A tenant's entities: one immutable snapshot that writers copy, change and swap.
//!
//! Rows live in chunks of [`CHUNK_ROWS`] behind `Arc`s. Cloning a snapshot clones a vector of
//! `Arc`s and a few persistent maps (`imbl`), so a write pays for the chunks it touches, not for
//! the whole tenant. Slots of deleted entities are reused. Category and tag filters are roaring
//! bitmaps of slots, so a filter is a few bitmap operations rather than a string compare per
//! candidate.

use std::collections::HashSet;
use std::sync::Arc;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, s};
use roaring::RoaringBitmap;

use crate::config::SearchConfig;
use crate::distance::{
    CodeProbe, Probe, dot, dot_i8, inverse_norm, prefetch, quantize, squared_norm,
};
use crate::error::{EngineError, Result};
use crate::model::{Embedding, EntityId, EntityView, Metric, NewEntity, TenantSpec, check_label};
use crate::topk::TopK;
use reco_hnsw::{Graph, Shape, Space, Vectors};

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

/// Which slots a scan visits.
#[derive(Debug)]
pub(crate) enum Candidates {
    /// Every live slot but the excluded ones.
    All { excluded: RoaringBitmap },
    /// Exactly these live slots.
    Only(RoaringBitmap),
}

/// The category, tag and id conditions a result must meet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only entities of this category.
    pub category: Option<String>,
    /// Only entities with at least one of these tags (no condition when empty).
    pub tags_any: Vec<String>,
    /// Only entities with every one of these tags.
    pub tags_all: Vec<String>,
    /// Never these entities. Ids that do not exist are ignored.
    pub exclude: Vec<EntityId>,
}

/// An entity checked against the tenant, ready to apply.
#[derive(Debug)]
pub(crate) struct Prepared {
    id: EntityId,
    vector: Vec<f32>,
    category: Option<String>,
    tags: Vec<String>,
    attributes: Option<Arc<str>>,
}

/// Checks a batch: every vector, label and id, with no id twice. Errors name the item.
pub(crate) fn check(spec: TenantSpec, batch: &[NewEntity]) -> Result<()> {
    let mut seen = HashSet::with_capacity(batch.len());
    for (index, entity) in batch.iter().enumerate() {
        let mut item = || -> Result<()> {
            if !seen.insert(&entity.id) {
                return Err(EngineError::InvalidArgument(format!(
                    "entity `{}` appears twice in the batch",
                    entity.id
                )));
            }
            Embedding::check(&entity.vector, spec)?;
            if let Some(category) = &entity.category {
                check_label("a category", category)?;
            }
            entity
                .tags
                .iter()
                .try_for_each(|tag| check_label("a tag", tag))
        };
        item().map_err(|e| e.at(index))?;
    }
    Ok(())
}

/// Checks a batch and readies it to apply, folding repeated tags.
pub(crate) fn prepare(spec: TenantSpec, batch: Vec<NewEntity>) -> Result<Vec<Prepared>> {
    check(spec, &batch)?;
    Ok(batch
        .into_iter()
        .map(|entity| {
            let mut tags = entity.tags;
            let mut unique = HashSet::with_capacity(tags.len());
            tags.retain(|t| unique.insert(t.clone()));
            Prepared {
                id: entity.id,
                vector: entity.vector,
                category: entity.category,
                tags,
                attributes: entity.attributes,
            }
        })
        .collect())
}

/// How much wider than `SearchConfig::expansion_search` a graph of `entities` searches: twice
/// from 50,000 entities, three times from 500,000. On clustered 128-d data recall@10 at a fixed
/// breadth falls as the graph grows (ef = 64: 0.994 at 100k, 0.90 at 1M), and this keeps it
/// at about 0.99 to 100k and 0.97 at 1M (ef = 192, 0.71 ms on one core).
fn breadth_factor(entities: usize) -> usize {
    match entities {
        0..50_000 => 1,
        50_000..500_000 => 2,
        _ => 3,
    }
}

/// The fewest candidates a graph search returns for `want` results: half as many again, and at
/// least ten more. The graph returns its whole final beam (the search breadth, when that is
/// more), and the exact rescoring of the beam is what repairs the int8 codes' misorderings.
/// At 20k entities the tripled page the int8 scan keeps cost a quarter more time here for no
/// recall (1.0 against 0.9995 at ef = 16).
fn beam(want: usize) -> usize {
    want + (want / 2).max(10)
}

/// A snapshot of a tenant's entities.
#[derive(Debug, Clone)]
pub(crate) struct EntityIndex {
    spec: TenantSpec,
    /// Unique across the engine's life; cached answers carry it in their key.
    pub generation: u64,
    /// The host's stamp of the last change written to this snapshot (see `Engine::upsert_at`).
    pub stamp: u64,
    /// How searches run, and the graph once the tenant is large enough: shared by every
    /// snapshot of the tenant (see `graph`).
    search: SearchConfig,
    graph: Option<Arc<Graph>>,
    chunks: Vec<Arc<Chunk>>,
    slots: imbl::HashMap<EntityId, u32>,
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
    pub fn new(spec: TenantSpec, generation: u64, search: SearchConfig) -> Self {
        Self {
            spec,
            generation,
            stamp: 0,
            search,
            graph: None,
            chunks: Vec::new(),
            slots: imbl::HashMap::new(),
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

    /// Inserts or replaces each entity of a checked batch, in the graph too.
    pub fn upsert(&mut self, batch: Vec<Prepared>) {
        let mut written = Vec::with_capacity(batch.len());
        for entity in batch {
            let slot = match self.slots.get(&entity.id) {
                Some(&slot) => {
                    self.unlabel(slot);
                    slot
                }
                None => self.allocate(),
            };
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
            written.push(slot);
        }
        self.index_rows(&written);
    }

    /// Puts written rows in the graph, or builds the graph when the tenant has grown past the
    /// threshold (all its rows then).
    fn index_rows(&mut self, written: &[u32]) {
        if self.search.exact {
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

    /// The settings searches run with.
    pub fn search_config(&self) -> &SearchConfig {
        &self.search
    }

    /// Offers the candidates the graph proposes near `query` (about `want` of them, times the
    /// oversampling), each checked against this snapshot and `candidates` and scored exactly
    /// by `goodness`. False, having offered nothing, when there is no usable graph or the
    /// filter is so selective that scanning what it allows is the better plan.
    pub fn search_approximate<'s>(
        &'s self,
        query: &[f32],
        candidates: &Candidates,
        want: usize,
        floor: f32,
        top: &mut TopK<'s>,
        mut goodness: impl FnMut(&[f32], f32) -> f32,
    ) -> bool {
        let Some(graph) = self.graph.as_deref() else {
            return false;
        };
        if let Candidates::Only(slots) = candidates
            && slots.len() * 4 < self.len() as u64
        {
            return false;
        }
        // The walk's filter reads bitmaps only: a row lookup per visited node is a cache miss
        // in a large tenant, and cost half the search time at 1M. Rows are looked up for the
        // beam alone, below. `Only` holds live slots of this snapshot already.
        let allowed = |slot: u32| match candidates {
            Candidates::All { excluded } => !excluded.contains(slot),
            Candidates::Only(slots) => slots.contains(slot),
        };
        let count = beam(want);
        let space = QuerySpace::new(self, query);
        let found = match candidates {
            // No filter but a few exclusions (the query's own entity, say): a walk asked for
            // that many more needs no filter at all.
            Candidates::All { excluded } if excluded.len() <= 64 => {
                graph.search(&space, count + excluded.len() as usize, None)
            }
            Candidates::All { .. } | Candidates::Only(_) => {
                graph.search(&space, count, Some(&allowed))
            }
        };
        if found.is_empty() {
            // The reader's snapshot holds none of the graph's entry points yet: scan instead.
            return false;
        }
        for slot in found.into_iter().filter(|&slot| allowed(slot)) {
            if let Some(row) = self.row(slot) {
                let g = goodness(row.vector, row.inverse_norm);
                if g >= floor {
                    top.offer(g, slot, || row.record.id.as_str());
                }
            }
        }
        true
    }

    /// How many candidates the int8 scan proposes for `want` results, to be rescored exactly:
    /// the oversampling, and at least ten more than wanted.
    fn rescored(&self, want: usize) -> usize {
        (want * self.search.oversample).max(want + 10)
    }

    /// How many slots `candidates` allows.
    fn count(&self, candidates: &Candidates) -> usize {
        match candidates {
            Candidates::All { excluded } => self.len().saturating_sub(excluded.len() as usize),
            Candidates::Only(slots) => slots.len() as usize,
        }
    }

    /// Scans the int8 codes of `candidates`, keeps the best `want` times the oversampling by
    /// their estimated goodness, and offers those to `top` scored exactly by `goodness` (when
    /// they reach `floor`). False, having offered nothing, when the tenant keeps no codes or
    /// when so few candidates are allowed that an exact scan costs no more.
    pub fn search_quantized<'s>(
        &'s self,
        query: &[f32],
        candidates: &Candidates,
        want: usize,
        floor: f32,
        top: &mut TopK<'s>,
        mut goodness: impl FnMut(&[f32], f32) -> f32,
    ) -> bool {
        let count = self.rescored(want);
        if !self.search.quantized || self.count(candidates) <= count {
            return false;
        }
        let probe = CodeProbe::new(query, self.spec.metric);
        let dim = self.spec.dimension;
        let mut rough = TopK::new(count);
        let mut offer = |chunk: &'s Chunk, slot: u32, r: usize, record: &'s Record| {
            let code = &chunk.codes[r * dim..(r + 1) * dim];
            let estimate = probe.estimate(code, chunk.code_scales[r], chunk.inverse_norms[r]);
            rough.offer(estimate, slot, || record.id.as_str());
        };
        match candidates {
            Candidates::All { excluded } => {
                for (c, chunk) in self.chunks.iter().enumerate() {
                    let base = (c << CHUNK_SHIFT) as u32;
                    for (r, record) in chunk.records.iter().enumerate() {
                        let Some(record) = record else { continue };
                        let slot = base + r as u32;
                        if excluded.is_empty() || !excluded.contains(slot) {
                            offer(chunk, slot, r, record);
                        }
                    }
                }
            }
            Candidates::Only(slots) => {
                for slot in slots {
                    if let Some((chunk, r)) = self.allocated(slot)
                        && let Some(record) = &chunk.records[r]
                    {
                        offer(chunk, slot, r, record);
                    }
                }
            }
        }
        for candidate in rough.into_sorted() {
            let row = self.row(candidate.slot).expect("scanned slots are live");
            let g = goodness(row.vector, row.inverse_norm);
            if g >= floor {
                top.offer(g, candidate.slot, || row.record.id.as_str());
            }
        }
        true
    }

    /// Changes the graph's search breadth (HNSW's ef), for benchmarks that compare settings.
    pub fn set_expansion_search(&self, ef: usize) {
        if let Some(graph) = &self.graph {
            graph.set_expansion_search(ef);
        }
    }

    /// Whether searches may use a graph now.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
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

    fn chunk_mut(&mut self, slot: u32) -> (&mut Chunk, usize) {
        let chunk = Arc::make_mut(&mut self.chunks[(slot >> CHUNK_SHIFT) as usize]);
        (chunk, slot as usize & (CHUNK_ROWS - 1))
    }

    /// A free slot, or a new one at the end.
    fn allocate(&mut self) -> u32 {
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
        let base = ((self.chunks.len() - 1) << CHUNK_SHIFT) as u32;
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
        base + (chunk.records.len() - 1) as u32
    }

    fn write_row(&mut self, slot: u32, vector: &[f32], record: Record) {
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
    fn label(
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
    fn unlabel(&mut self, slot: u32) {
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

    /// `excluded` and the slots of `ids` (those that exist).
    pub fn excluding(&self, ids: &[EntityId], mut excluded: RoaringBitmap) -> RoaringBitmap {
        excluded.extend(ids.iter().filter_map(|id| self.slot_of(id.as_str())));
        excluded
    }

    /// The slots a filter allows, less `excluded`.
    pub fn candidates(&self, filter: &Filter, excluded: RoaringBitmap) -> Candidates {
        let excluded = self.excluding(&filter.exclude, excluded);
        let lookup = |labels: &imbl::HashMap<Arc<str>, Arc<RoaringBitmap>>, l: &str| {
            labels.get(l).map(|b| (**b).clone()).unwrap_or_default()
        };
        let mut allowed: Option<RoaringBitmap> = filter
            .category
            .as_deref()
            .map(|c| lookup(&self.categories, c));
        let intersect = |allowed: Option<RoaringBitmap>, other: RoaringBitmap| match allowed {
            Some(a) => a & other,
            None => other,
        };
        if !filter.tags_any.is_empty() {
            let mut any = RoaringBitmap::new();
            for tag in &filter.tags_any {
                if let Some(b) = self.tags.get(tag.as_str()) {
                    any |= &**b;
                }
            }
            allowed = Some(intersect(allowed, any));
        }
        for tag in &filter.tags_all {
            allowed = Some(intersect(allowed, lookup(&self.tags, tag)));
        }
        match allowed {
            Some(mut only) => {
                only -= excluded;
                Candidates::Only(only)
            }
            None => Candidates::All { excluded },
        }
    }

    /// Offers every candidate that reaches `floor` to `top`, scored by `goodness(row)`.
    #[inline]
    pub fn scan<'s>(
        &'s self,
        candidates: &Candidates,
        floor: f32,
        top: &mut TopK<'s>,
        mut goodness: impl FnMut(&[f32], f32) -> f32,
    ) {
        let dim = self.spec.dimension;
        match candidates {
            Candidates::All { excluded } => {
                for (c, chunk) in self.chunks.iter().enumerate() {
                    let base = (c << CHUNK_SHIFT) as u32;
                    let rows = chunk.vectors.chunks_exact(dim);
                    for (r, (row, record)) in rows.zip(&chunk.records).enumerate() {
                        let Some(record) = record else { continue };
                        let slot = base + r as u32;
                        if !excluded.is_empty() && excluded.contains(slot) {
                            continue;
                        }
                        let g = goodness(row, chunk.inverse_norms[r]);
                        if g >= floor {
                            top.offer(g, slot, || record.id.as_str());
                        }
                    }
                }
            }
            Candidates::Only(slots) => {
                for slot in slots {
                    if let Some(row) = self.row(slot) {
                        let g = goodness(row.vector, row.inverse_norm);
                        if g >= floor {
                            top.offer(g, slot, || row.record.id.as_str());
                        }
                    }
                }
            }
        }
    }

    /// Scans every live row once for many queries: per chunk, one matrix product of the queries
    /// and the chunk's rows (matrixmultiply's SIMD kernels, through `ndarray`), so a row is
    /// read once for all of them and every multiply-add runs in registers. Each query's
    /// goodness is computed from the product, not by `Probe::goodness`: equal up to rounding,
    /// so callers keep a few more than they need and rescore those exactly. `tops[i]` receives
    /// the rows of query `i` that `excluded[i]` does not name.
    pub fn scan_many<'s>(
        &'s self,
        probes: &[Probe<'_>],
        excluded: &[RoaringBitmap],
        tops: &mut [TopK<'s>],
    ) {
        let dim = self.spec.dimension;
        let n = probes.len();
        debug_assert!(excluded.len() == n && tops.len() == n);
        let mut queries = Array2::<f32>::zeros((n, dim));
        for (mut row, probe) in queries.rows_mut().into_iter().zip(probes) {
            row.assign(&ArrayView1::from(probe.vector));
        }
        let squared: Vec<f32> = probes.iter().map(|p| dot(p.vector, p.vector)).collect();
        let mut products = Array2::<f32>::zeros((n, CHUNK_ROWS));
        for (c, chunk) in self.chunks.iter().enumerate() {
            let rows = chunk.records.len();
            let Ok(block) = ArrayView2::from_shape((rows, dim), &chunk.vectors[..rows * dim])
            else {
                continue;
            };
            let mut out = products.slice_mut(s![.., ..rows]);
            general_mat_mul(1.0, &queries, &block.t(), 0.0, &mut out);
            let base = (c << CHUNK_SHIFT) as u32;
            for (i, (probe, top)) in probes.iter().zip(tops.iter_mut()).enumerate() {
                let line = out.row(i);
                for (r, (&d, record)) in line.iter().zip(&chunk.records).enumerate() {
                    let Some(record) = record else { continue };
                    let inverse = chunk.inverse_norms[r];
                    let g = match probe.metric {
                        Metric::Cosine => d * probe.inverse_norm * inverse,
                        Metric::Dot => d,
                        Metric::Euclidean => -(squared[i] + squared_norm(inverse) - 2.0 * d)
                            .max(0.0)
                            .sqrt(),
                    };
                    // The exclusions are looked up only for rows good enough to keep.
                    let slot = base + r as u32;
                    if g >= top.bar() && !excluded[i].contains(slot) {
                        top.offer(g, slot, || record.id.as_str());
                    }
                }
            }
        }
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

/// A query against a snapshot, as the graph sees it on a search: estimated from the int8
/// codes when the tenant keeps them, exact from the f32 rows otherwise.
struct QuerySpace<'a> {
    index: &'a EntityIndex,
    probe: Probe<'a>,
    codes: Option<CodeProbe>,
}

impl<'a> QuerySpace<'a> {
    fn new(index: &'a EntityIndex, query: &'a [f32]) -> Self {
        let metric = index.spec.metric;
        Self {
            index,
            probe: Probe::new(query, metric),
            codes: index
                .search
                .quantized
                .then(|| CodeProbe::new(query, metric)),
        }
    }
}

impl Space for QuerySpace<'_> {
    #[inline]
    fn distance(&self, node: u32) -> Option<f32> {
        let (chunk, r) = self.index.allocated(node)?;
        let dim = self.index.spec.dimension;
        let inverse = chunk.inverse_norms[r];
        Some(match (&self.codes, chunk.code(r, dim)) {
            (Some(codes), Some(code)) => -codes.estimate(code, chunk.code_scales[r], inverse),
            (Some(_) | None, _) => -self.probe.goodness(chunk.vector(r, dim), inverse),
        })
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        self.index.prefetch(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut index = EntityIndex::new(spec(), 1, SearchConfig::default());
        index.upsert(prepare(spec(), entities).unwrap());
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
        let Err(EngineError::InvalidItem { index, source }) = prepare(spec(), batch) else {
            panic!("a NaN was accepted");
        };
        assert_eq!(index, 1);
        assert!(matches!(*source, EngineError::InvalidVector(_)));
        let twice = vec![
            entity("a", [1.0, 0.0], None, &[]),
            entity("a", [1.0, 0.0], None, &[]),
        ];
        assert!(matches!(
            prepare(spec(), twice),
            Err(EngineError::InvalidItem { index: 1, .. })
        ));
        let long_tag = "t".repeat(300);
        let bad_tag = vec![entity("a", [1.0, 0.0], None, &[&long_tag])];
        assert!(prepare(spec(), bad_tag).is_err());
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
        index.upsert(prepare(spec(), vec![entity("a", [2.0, 2.0], Some("y"), &[])]).unwrap());
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
        index.upsert(prepare(spec(), vec![entity("c", [3.0, 3.0], None, &[])]).unwrap());
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
        next.upsert(prepare(spec(), vec![entity("a", [5.0, 5.0], None, &[])]).unwrap());
        next.delete("a");
        assert_eq!(original.get("a").unwrap().vector, [1.0, 0.0]);
    }
}
