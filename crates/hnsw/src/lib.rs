//! reco's approximate index: an HNSW graph (Malkov and Yashunin) of slots that holds links
//! only. It is a crate of its own, compute only, and knows nothing of the engine: it talks to
//! its caller through two traits, [`Space`] (distances from a query) and [`Vectors`]
//! (distances between two nodes).
//!
//! # The key design decision: links only, distances from the caller
//!
//! The graph keeps no vectors. Every distance it needs comes from a [`Space`] the caller
//! passes in: a search reads the int8 codes of the reader's own snapshot, and an insert reads
//! those of the snapshot being written. So the graph costs its links alone (about 140 bytes
//! a node at 16 links), a search never sees a row its snapshot lacks, and one graph serves
//! every snapshot of a tenant while a writer changes it.
//!
//! The layout is flat, which is why the engine has its own graph rather than usearch's (the
//! crate it used before): nodes live in segments of [`SEGMENT`] slots, and a node's links on
//! the bottom layer are one run of `u32`s at a fixed place. A step of a walk reads one list,
//! marks the unvisited neighbours in a per-thread array of epochs, prefetches all of their
//! vectors, and only then scores them, so the cache misses of a large tenant overlap instead
//! of following one another. usearch reached each node and each vector through a pointer of
//! its own and prefetched nothing; at 1M entities it took twice faiss's time per search.
//!
//! Concurrency: a writer inserts while readers search. Links are atomics, and a list is
//! written before its length is published, so a reader sees an old list, a new one, or a mix
//! of the two: every entry is a node of the graph either way, which is all a walk needs.
//! Inserts may run on several threads at once (a tenant's first build does); each list is
//! changed under a lock striped by node. A node is marked [`LINKING`] until its insert has
//! written all its lists, and no greedy descent steps onto it meanwhile. Selections running at
//! once can take every in-link from a node, so a build on several threads ends with a pass
//! that adopts the nodes no walk reaches. Nodes are never taken out: a deleted slot is marked
//! and walked through but not returned, and its slot's next entity takes its place.
//!
//! # Layout
//!
//! Split by role, as Qdrant's `hnsw_index` is: `links` (the container: segments, one node's
//! lists), `search` (the greedy descent and the beam walk), `build` (level draws, neighbour
//! selection, inserts on several threads), `heal` (the pass that adopts unreached nodes),
//! `parts` (the graph as plain data and back, for a host's files) and `visited` (the
//! per-thread visited marks). This file holds the graph itself and its
//! constants.

#![warn(missing_docs)]

use std::cmp::Ordering as Order;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

mod build;
mod heal;
mod links;
mod parts;
mod search;
mod visited;

use links::{Links, Segment};
pub use parts::{GraphParts, SegmentParts};

/// Slots per segment of the graph's storage. Growing the graph adds segments; nothing is
/// copied, and readers wait only for a pointer to be pushed.
pub const SEGMENT: usize = 4096;
pub(crate) const SEGMENT_SHIFT: u32 = SEGMENT.trailing_zeros();

/// The highest layer a node may reach (far above what the level distribution draws).
pub(crate) const TOP_LAYER: usize = 15;

/// Striped locks for writers: a list is changed under the lock of its node's stripe.
pub(crate) const STRIPES: usize = 1024;

pub(crate) const EMPTY: u64 = u64::MAX;
pub(crate) const DELETED: u8 = 0x80;
/// Set while a node's lists are being written. A greedy descent never steps onto such a node:
/// during its insert it is linked on its upper layers before its bottom list is written, and a
/// descent that ended on it would start the bottom walk from a node with no links.
pub(crate) const LINKING: u8 = 0x40;
pub(crate) const LEVEL_MASK: u8 = 0x1f;

/// Where a graph reads distances from.
pub trait Space {
    /// The distance from the query to `node`, lower being nearer; `None` when `node` has no
    /// vector here (a slot newer than the reader's snapshot).
    fn distance(&self, node: u32) -> Option<f32>;
    /// Asks the CPU to start loading what `distance(node)` will read.
    fn prefetch(&self, node: u32);
}

/// The stored vectors, for inserts: distances between two nodes.
pub trait Vectors: Sync {
    /// The distance between two nodes, lower being nearer; `None` when either has no vector.
    fn between(&self, a: u32, b: u32) -> Option<f32>;
    /// Asks the CPU to start loading what `between` will read of `node`.
    fn prefetch(&self, node: u32);
}

/// How the graph is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Links per node on the upper layers; the bottom layer has twice as many.
    pub connectivity: usize,
    /// How many candidates an insert considers (HNSW's efConstruction).
    pub expansion_add: usize,
    /// How many candidates a search considers (HNSW's ef).
    pub expansion_search: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Near {
    pub(crate) distance: f32,
    pub(crate) node: u32,
}

impl Eq for Near {}

impl Ord for Near {
    #[inline]
    fn cmp(&self, other: &Self) -> Order {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for Near {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

/// A graph of slots: a tenant's, in reco.
pub struct Graph {
    pub(crate) shape: Shape,
    pub(crate) expansion_search: AtomicUsize,
    pub(crate) segments: RwLock<Vec<Segment>>,
    /// The entry node and its layer, packed (`layer << 32 | node`), or [`EMPTY`].
    pub(crate) entry: AtomicU64,
    pub(crate) entry_lock: Mutex<()>,
    pub(crate) stripes: Box<[Mutex<()>]>,
    /// Draws of the level distribution so far (a counter hashed per draw).
    pub(crate) draws: AtomicU64,
    pub(crate) deleted: AtomicUsize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("shape", &self.shape)
            .field("bytes", &self.heap_bytes())
            .finish_non_exhaustive()
    }
}

/// Asks the CPU to start loading every cache line `data` touches, for a read a little later:
/// one element every 64 bytes, and the last (a slice that does not start on a line can end on
/// one more line than its length fills). A hint only, which does nothing where the target has
/// no prefetch instruction. The graph prefetches its link lists with it, the engine its rows.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for element in data
        .iter()
        .step_by((64 / size_of::<T>().max(1)).max(1))
        .chain(data.last())
    {
        safe_arch::prefetch_t0(element);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The entry node on `layer`, packed as `Graph::entry` holds it.
pub(crate) fn entry_of(layer: usize, node: u32) -> u64 {
    ((layer as u64) << 32) | u64::from(node)
}

/// The layer and node of a packed entry (not [`EMPTY`]), as [`entry_of`] packed them.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the low 32 bits are the node and the high ones a layer below TOP_LAYER"
)]
pub(crate) fn unpack(entry: u64) -> (usize, u32) {
    ((entry >> 32) as usize, entry as u32)
}

/// A list's length as its first slot holds it: at most the list's width, far below `u32::MAX`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "a list holds at most 2 * connectivity + 1 slots, and connectivity is at most 256"
)]
pub(crate) fn list_length(length: usize) -> u32 {
    length as u32
}

/// Every node id of `slots` slots: node ids are `u32` by design.
pub(crate) fn nodes(slots: usize) -> std::ops::Range<u32> {
    0..u32::try_from(slots).expect("a graph holds fewer than 2^32 slots")
}

/// A list: its length, then its links.
pub(crate) type List = [AtomicU32];

impl Graph {
    /// An empty graph of the given shape (at least two links per node).
    pub fn new(shape: Shape) -> Self {
        let shape = Shape {
            connectivity: shape.connectivity.max(2),
            ..shape
        };
        Self {
            expansion_search: AtomicUsize::new(shape.expansion_search.max(1)),
            shape,
            segments: RwLock::new(Vec::new()),
            entry: AtomicU64::new(EMPTY),
            entry_lock: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            draws: AtomicU64::new(0),
            deleted: AtomicUsize::new(0),
        }
    }

    /// Changes how many candidates a search considers (HNSW's ef).
    pub fn set_expansion_search(&self, ef: usize) {
        self.expansion_search.store(ef.max(1), Ordering::Relaxed);
    }

    /// How many candidates a search considers now.
    #[inline]
    pub fn expansion_search(&self) -> usize {
        self.expansion_search.load(Ordering::Relaxed)
    }

    /// Bytes the graph holds.
    pub fn heap_bytes(&self) -> usize {
        let segments = self.read();
        segments.iter().map(|s| s.bytes()).sum::<usize>()
            + self.stripes.len() * size_of::<Mutex<()>>()
    }

    #[inline]
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Segment>> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the graph's storage, under the segments' read lock.
    #[inline]
    pub(crate) fn with_links<R>(&self, f: impl FnOnce(&Links<'_>) -> R) -> R {
        let segments = self.read();
        f(&Links {
            graph: self,
            segments: &segments,
        })
    }

    /// Makes room for slots below `slots`.
    pub(crate) fn reserve(&self, slots: usize) {
        let needed = slots.div_ceil(SEGMENT);
        if self.read().len() >= needed {
            return;
        }
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        while segments.len() < needed {
            segments.push(Segment::new(self.shape.connectivity));
        }
    }

    /// Links per node on `layer`.
    #[inline]
    pub(crate) fn width(&self, layer: usize) -> usize {
        if layer == 0 {
            2 * self.shape.connectivity
        } else {
            self.shape.connectivity
        }
    }
}

impl Graph {
    /// Marks `node` deleted: walks pass through it but never return it.
    pub fn remove(&self, node: u32) {
        self.with_links(|links| {
            if let Some((segment, r)) = links.segment(node) {
                let state = segment.state[r].load(Ordering::Acquire);
                if state & LEVEL_MASK != 0 && state & DELETED == 0 {
                    segment.state[r].store(state | DELETED, Ordering::Release);
                    self.deleted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
