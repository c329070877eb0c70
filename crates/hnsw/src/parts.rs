//! A graph as plain data, and back: what a host writes to a file so that a restart does not
//! build the graph again. The parts are the graph's own arrays, copied out under its read lock;
//! putting them back checks every length and every link, so parts that do not describe a graph
//! of their shape are refused rather than walked.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use crate::links::Segment;
use crate::{EMPTY, Graph, LEVEL_MASK, SEGMENT, STRIPES, Shape, TOP_LAYER, unpack};

/// One segment's arrays (see `links::Segment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentParts {
    /// Per slot: its bottom list's length, then room for `2 * connectivity` links.
    pub bottom: Vec<u32>,
    /// Per slot: 0 when not in the graph, else its top layer plus one, with the deleted mark.
    pub state: Vec<u8>,
    /// Per slot with upper layers: where its lists start in `upper`.
    pub upper_at: Vec<u32>,
    /// The upper layers' lists (length, then `connectivity` links).
    pub upper: Vec<u32>,
    /// How much of `upper` is in use.
    pub upper_used: usize,
}

/// A graph as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphParts {
    /// Links per node on the upper layers.
    pub connectivity: usize,
    /// HNSW's efConstruction.
    pub expansion_add: usize,
    /// HNSW's ef, as the graph searched when it was taken.
    pub expansion_search: usize,
    /// The entry node and its layer, packed (`layer << 32 | node`), or `u64::MAX` when empty.
    pub entry: u64,
    /// Draws of the level distribution so far.
    pub draws: u64,
    /// Nodes marked deleted.
    pub deleted: usize,
    /// The segments, in order.
    pub segments: Vec<SegmentParts>,
}

impl Graph {
    /// The graph as plain data. A host takes it while no insert runs (under its own writer
    /// lock), so the parts are one state of the graph.
    pub fn to_parts(&self) -> GraphParts {
        let load32 = |a: &[AtomicU32]| a.iter().map(|x| x.load(Ordering::Acquire)).collect();
        let segments = self
            .read()
            .iter()
            .map(|s| SegmentParts {
                bottom: load32(&s.bottom),
                state: s.state.iter().map(|x| x.load(Ordering::Acquire)).collect(),
                upper_at: load32(&s.upper_at),
                upper: load32(&s.upper),
                upper_used: s.upper_used.load(Ordering::Acquire),
            })
            .collect();
        GraphParts {
            connectivity: self.shape.connectivity,
            expansion_add: self.shape.expansion_add,
            expansion_search: self.expansion_search(),
            entry: self.entry.load(Ordering::Acquire),
            draws: self.draws.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            segments,
        }
    }

    /// The graph the parts describe, or `None` when they do not describe one of their shape:
    /// an array of the wrong length, a link or an entry past the graph's slots, a list longer
    /// than its room, a level past the top layer, or upper lists outside their array.
    pub fn from_parts(parts: GraphParts) -> Option<Self> {
        let connectivity = parts.connectivity;
        if !(2..=256).contains(&connectivity) {
            return None;
        }
        let slots = parts.segments.len().checked_mul(SEGMENT)?;
        let template = Segment::new(connectivity);
        let bottom_width = 2 * connectivity + 1;
        let upper_width = connectivity + 1;
        let link_ok = |link: u32| (link as usize) < slots;
        for s in &parts.segments {
            let lengths_ok = s.bottom.len() == template.bottom.len()
                && s.state.len() == SEGMENT
                && s.upper_at.len() == SEGMENT
                && s.upper.len() == template.upper.len()
                && s.upper_used <= s.upper.len();
            if !lengths_ok {
                return None;
            }
            for (r, &state) in s.state.iter().enumerate() {
                let level = usize::from(state & LEVEL_MASK);
                if level == 0 {
                    continue;
                }
                if level > TOP_LAYER + 1 {
                    return None;
                }
                let bottom = &s.bottom[r * bottom_width..(r + 1) * bottom_width];
                let len = bottom[0] as usize;
                if len > bottom_width - 1 || !bottom[1..=len].iter().all(|&l| link_ok(l)) {
                    return None;
                }
                // Layers 1 to level - 1 live in `upper`, one list each, from `upper_at`.
                let start = s.upper_at[r] as usize;
                let end = start.checked_add((level - 1) * upper_width)?;
                if level > 1 && end > s.upper_used {
                    return None;
                }
                for list in s.upper.get(start..end)?.chunks(upper_width) {
                    let len = list[0] as usize;
                    if len > connectivity || !list[1..=len].iter().all(|&l| link_ok(l)) {
                        return None;
                    }
                }
            }
        }
        if parts.entry != EMPTY {
            let (layer, node) = unpack(parts.entry);
            if layer > TOP_LAYER || !link_ok(node) {
                return None;
            }
        }
        let atomic32 = |v: Vec<u32>| v.into_iter().map(AtomicU32::new).collect();
        let segments = parts
            .segments
            .into_iter()
            .map(|s| Segment {
                bottom: atomic32(s.bottom),
                state: s.state.into_iter().map(AtomicU8::new).collect(),
                upper_at: atomic32(s.upper_at),
                upper: atomic32(s.upper),
                upper_used: AtomicUsize::new(s.upper_used),
            })
            .collect();
        Some(Self {
            shape: Shape {
                connectivity,
                expansion_add: parts.expansion_add,
                expansion_search: parts.expansion_search,
            },
            expansion_search: AtomicUsize::new(parts.expansion_search.max(1)),
            segments: RwLock::new(segments),
            entry: AtomicU64::new(parts.entry),
            entry_lock: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            draws: AtomicU64::new(parts.draws),
            deleted: AtomicUsize::new(parts.deleted),
        })
    }
}
