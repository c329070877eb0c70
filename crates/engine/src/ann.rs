//! The approximate index: an HNSW graph (usearch) over compact copies of a tenant's vectors.
//!
//! One graph serves every snapshot of a tenant: snapshots are immutable, the graph is not. A
//! writer (holding the tenant's writer lock) adds and removes nodes as it changes a snapshot;
//! readers search concurrently. The graph only proposes candidates, keyed by slot: each is
//! checked against the reader's own snapshot (is the slot live there, does the filter allow it)
//! and scored exactly from that snapshot's f32 vector. So an answer never holds a stale score or
//! a row the snapshot lacks, and the compact copies cost recall only where the exact rescoring
//! of a few extra candidates cannot repair it.
//!
//! Under cosine the graph holds int8 copies of unit vectors (128 bytes at 128 dimensions, a
//! quarter of f32); under dot and euclidean, whose vectors have no fixed range, f16 copies.
//! Any failure of the graph (it is C++, and allocates) only turns it off: searches fall back to
//! the exact scan, which is always right.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::config::SearchConfig;
use crate::distance::inverse_norm;
use crate::model::{Metric, TenantSpec};

/// How many threads may search or add at once; usearch keeps a context per thread.
const THREADS: usize = 64;

/// A tenant's graph.
pub(crate) struct Ann {
    graph: RwLock<Index>,
    metric: Metric,
    broken: AtomicBool,
}

impl std::fmt::Debug for Ann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ann")
            .field("metric", &self.metric)
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Ann {
    /// An empty graph for `spec`, with room for `capacity` nodes; `None` if usearch fails.
    pub fn new(spec: TenantSpec, config: &SearchConfig, capacity: usize) -> Option<Self> {
        let (metric, quantization) = match spec.metric {
            Metric::Cosine => (MetricKind::Cos, ScalarKind::I8),
            Metric::Dot => (MetricKind::IP, ScalarKind::F16),
            Metric::Euclidean => (MetricKind::L2sq, ScalarKind::F16),
        };
        let options = IndexOptions {
            dimensions: spec.dimension,
            metric,
            quantization,
            connectivity: config.connectivity,
            expansion_add: config.expansion_add,
            expansion_search: config.expansion_search,
            multi: false,
        };
        let graph = Index::new(&options).ok()?;
        graph
            .reserve_capacity_and_threads(capacity.max(1024), THREADS)
            .ok()?;
        Some(Self {
            graph: RwLock::new(graph),
            metric: spec.metric,
            broken: AtomicBool::new(false),
        })
    }

    /// Whether the graph can be trusted; after a failure it cannot, and searches scan.
    pub fn usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
    }

    fn fail(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// The vector as the graph holds it: unit length under cosine, so that int8 keeps its
    /// precision.
    fn prepared<'v>(&self, vector: &'v [f32], buffer: &'v mut Vec<f32>) -> &'v [f32] {
        if self.metric != Metric::Cosine {
            return vector;
        }
        let scale = inverse_norm(vector);
        buffer.clear();
        buffer.extend(vector.iter().map(|x| x * scale));
        buffer
    }

    /// Puts the rows' vectors in the graph, in place of any they had, on up to two threads.
    pub fn put_many(&self, rows: &[(u32, &[f32])]) {
        if !self.usable() || rows.is_empty() {
            return;
        }
        if self.grow(rows.len()).is_err() {
            return self.fail();
        }
        let graph = self
            .graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let work = |part: &[(u32, &[f32])]| {
            let mut buffer = Vec::new();
            part.iter().all(|(slot, vector)| {
                let key = u64::from(*slot);
                if graph.contains(key) && graph.remove(key).is_err() {
                    return false;
                }
                graph.add(key, self.prepared(vector, &mut buffer)).is_ok()
            })
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(2);
        let ok = if rows.len() < 256 || threads < 2 {
            work(rows)
        } else {
            let (left, right) = rows.split_at(rows.len() / 2);
            std::thread::scope(|s| {
                let other = s.spawn(|| work(right));
                work(left) & other.join().unwrap_or(false)
            })
        };
        if !ok {
            self.fail();
        }
    }

    /// Makes room for `more` nodes, a quarter more than needed at a time (memory is the
    /// graph's main cost), under the write lock (searches wait for it).
    fn grow(&self, more: usize) -> Result<(), ()> {
        let needed = {
            let graph = self
                .graph
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let needed = graph.size() + more;
            (needed > graph.capacity()).then_some(needed)
        };
        if let Some(needed) = needed {
            let graph = self
                .graph
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let target = needed.max(graph.capacity() + graph.capacity() / 4);
            graph
                .reserve_capacity_and_threads(target, THREADS)
                .map_err(drop)?;
        }
        Ok(())
    }

    /// Takes `slot` out of the graph.
    pub fn remove(&self, slot: u32) {
        if !self.usable() {
            return;
        }
        let graph = self
            .graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if graph.remove(u64::from(slot)).is_err() {
            self.fail();
        }
    }

    /// Slots near `query` that `allowed` accepts (at least `count`, and the whole final beam of
    /// the search), best first by the graph's own (approximate) distance; `None` when the graph
    /// is not usable.
    ///
    /// Without `allowed` the walk calls back into Rust for nothing; the caller then drops what
    /// it does not want from the answer.
    pub fn search(
        &self,
        query: &[f32],
        count: usize,
        allowed: Option<&dyn Fn(u32) -> bool>,
    ) -> Option<Vec<u32>> {
        if !self.usable() {
            return None;
        }
        let mut buffer = Vec::new();
        let query = self.prepared(query, &mut buffer);
        let graph = self
            .graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The whole beam the walk ends with: it costs nothing more to return, and rescoring it
        // exactly repairs what the compact copies misordered.
        let count = count.max(graph.expansion_search());
        let found = match allowed {
            Some(allowed) => {
                graph.filtered_search(query, count, |key| u32::try_from(key).is_ok_and(allowed))
            }
            None => graph.search(query, count),
        };
        match found {
            Ok(matches) => Some(
                matches
                    .keys
                    .iter()
                    .filter_map(|k| u32::try_from(*k).ok())
                    .collect(),
            ),
            Err(_) => None,
        }
    }

    /// Bytes the graph holds: nodes, links and compact vectors.
    pub fn heap_bytes(&self) -> usize {
        self.graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .memory_usage()
    }

    /// Changes how many candidates a search considers (HNSW's ef).
    pub fn set_expansion_search(&self, ef: usize) {
        self.graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .change_expansion_search(ef);
    }
}
