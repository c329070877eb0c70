//! The scans and the graph's plan: the graph search, the int8 scan rescored in f32, the exact
//! scan, and many queries at once (a matrix product per chunk).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, s};
use reco_hnsw::Space;
use roaring::RoaringBitmap;

use super::{CHUNK_ROWS, Candidates, Chunk, EntityIndex, Record, slot_at};
use crate::distance::{CodeProbe, Probe, dot, squared_norm};
use crate::interrupt;
use crate::model::Metric;
use crate::topk::TopK;

/// The fewest candidates a graph search returns for `want` results: half as many again, and at
/// least ten more. The graph returns its whole final beam (the search breadth, when that is
/// more), and the exact rescoring of the beam is what repairs the int8 codes' misorderings.
/// At 20k entities the tripled page the int8 scan keeps cost a quarter more time here for no
/// recall (1.0 against 0.9995 at ef = 16).
fn beam(want: usize) -> usize {
    want + (want / 2).max(10)
}

impl EntityIndex {
    /// Offers the candidates the graph proposes near `query` (about `want` of them, times the
    /// oversampling), each checked against this snapshot and `candidates` and scored exactly
    /// by `goodness`, searching at `breadth` (the graph's own when `None`). False, having offered nothing, when there is no usable graph or the
    /// filter is so selective that scanning what it allows is the better plan.
    #[expect(
        clippy::too_many_arguments,
        reason = "the plan chain's common arguments, and the breadth an audit overrides"
    )]
    pub fn search_approximate<'s>(
        &'s self,
        query: &[f32],
        candidates: &Candidates,
        want: usize,
        floor: f32,
        top: &mut TopK<'s>,
        mut goodness: impl FnMut(&[f32], f32) -> f32,
        breadth: Option<usize>,
    ) -> bool {
        let Some(graph) = self.graph.as_deref() else {
            return false;
        };
        let breadth = breadth.unwrap_or_else(|| graph.expansion_search());
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
                graph.search_at(&space, count + bitmap_len(excluded), None, breadth)
            }
            Candidates::All { .. } | Candidates::Only(_) => {
                graph.search_at(&space, count, Some(&allowed), breadth)
            }
        };
        if found.is_empty() {
            // The reader's snapshot holds none of the graph's entry points yet: scan instead.
            return false;
        }
        for &slot in &found {
            self.prefetch_row(slot);
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
    pub(super) fn rescored(&self, want: usize) -> usize {
        (want * self.search.oversample).max(want + 10)
    }
    /// How many slots `candidates` allows.
    pub(super) fn count(&self, candidates: &Candidates) -> usize {
        match candidates {
            Candidates::All { excluded } => self.len().saturating_sub(bitmap_len(excluded)),
            Candidates::Only(slots) => bitmap_len(slots),
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
                    if interrupt::stopped() {
                        return true;
                    }
                    for (r, record) in chunk.records.iter().enumerate() {
                        let Some(record) = record else { continue };
                        let slot = slot_at(c, r);
                        if excluded.is_empty() || !excluded.contains(slot) {
                            offer(chunk, slot, r, record);
                        }
                    }
                }
            }
            Candidates::Only(slots) => {
                for (n, slot) in slots.iter().enumerate() {
                    if n % CHUNK_ROWS == 0 && interrupt::stopped() {
                        return true;
                    }
                    if let Some((chunk, r)) = self.allocated(slot)
                        && let Some(record) = &chunk.records[r]
                    {
                        offer(chunk, slot, r, record);
                    }
                }
            }
        }
        let rough = rough.into_sorted();
        for candidate in &rough {
            self.prefetch_row(candidate.slot);
        }
        for candidate in rough {
            let row = self.row(candidate.slot).expect("scanned slots are live");
            let g = goodness(row.vector, row.inverse_norm);
            if g >= floor {
                top.offer(g, candidate.slot, || row.record.id.as_str());
            }
        }
        true
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
                    if interrupt::stopped() {
                        return;
                    }
                    let rows = chunk.vectors.chunks_exact(dim);
                    for (r, (row, record)) in rows.zip(&chunk.records).enumerate() {
                        let Some(record) = record else { continue };
                        let slot = slot_at(c, r);
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
                for (n, slot) in slots.iter().enumerate() {
                    if n % CHUNK_ROWS == 0 && interrupt::stopped() {
                        return;
                    }
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
                    let slot = slot_at(c, r);
                    if g >= top.bar() && !excluded[i].contains(slot) {
                        top.offer(g, slot, || record.id.as_str());
                    }
                }
            }
        }
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

/// How many slots a bitmap holds, as a count of rows (a tenant's slots fit in `usize`).
fn bitmap_len(bitmap: &RoaringBitmap) -> usize {
    usize::try_from(bitmap.len()).unwrap_or(usize::MAX)
}
