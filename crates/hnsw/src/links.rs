//! The links container: segments of slots, and the reads and writes of one node's lists.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};

use crate::{
    DELETED, Graph, LEVEL_MASK, LINKING, List, Near, SEGMENT, SEGMENT_SHIFT, TOP_LAYER, list_length,
};

/// The links of [`SEGMENT`] slots.
pub(crate) struct Segment {
    /// Per slot: its list length, then room for `2 * connectivity` links.
    pub(crate) bottom: Box<[AtomicU32]>,
    /// Per slot: 0 when not in the graph, else its top layer plus one, with [`DELETED`].
    pub(crate) state: Box<[AtomicU8]>,
    /// Per slot with upper layers: where its lists start in `upper`.
    pub(crate) upper_at: Box<[AtomicU32]>,
    /// The upper layers' lists (length, then `connectivity` links) of this segment's slots.
    pub(crate) upper: Box<[AtomicU32]>,
    pub(crate) upper_used: AtomicUsize,
}

impl Segment {
    pub(crate) fn new(connectivity: usize) -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU32::new(0)).collect();
        // A node reaches layer l with probability connectivity^-l, so a segment's nodes need
        // SEGMENT / (connectivity - 1) upper lists on average; twice that, plus one tall
        // node, is never short in practice, and a node that would not fit stays below.
        let lists = 2 * SEGMENT / (connectivity - 1) + TOP_LAYER;
        Self {
            bottom: zeros(SEGMENT * (2 * connectivity + 1)),
            state: (0..SEGMENT).map(|_| AtomicU8::new(0)).collect(),
            upper_at: zeros(SEGMENT),
            upper: zeros(lists * (connectivity + 1)),
            upper_used: AtomicUsize::new(0),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        (self.bottom.len() + self.upper_at.len() + self.upper.len()) * 4 + self.state.len()
    }
}

/// The graph's storage as one reader or writer sees it, under the segments' read lock.
pub(crate) struct Links<'g> {
    pub(crate) graph: &'g Graph,
    pub(crate) segments: &'g [Segment],
}

impl<'g> Links<'g> {
    #[inline]
    pub(crate) fn segment(&self, node: u32) -> Option<(&'g Segment, usize)> {
        let segment = self.segments.get((node >> SEGMENT_SHIFT) as usize)?;
        Some((segment, node as usize & (SEGMENT - 1)))
    }

    /// The node's top layer plus one (0 when it is not in the graph), and its deleted mark.
    #[inline]
    pub(crate) fn state(&self, node: u32) -> u8 {
        self.segment(node)
            .map_or(0, |(s, r)| s.state[r].load(Ordering::Acquire))
    }

    #[inline]
    pub(crate) fn is_deleted(&self, node: u32) -> bool {
        self.state(node) & DELETED != 0
    }

    #[inline]
    pub(crate) fn is_linking(&self, node: u32) -> bool {
        self.state(node) & LINKING != 0
    }

    /// The node's list on `layer`, when it reaches that layer.
    #[inline]
    pub(crate) fn list(&self, node: u32, layer: usize) -> Option<&'g List> {
        let (segment, r) = self.segment(node)?;
        let level = segment.state[r].load(Ordering::Acquire) & LEVEL_MASK;
        if usize::from(level) <= layer {
            return None;
        }
        if layer == 0 {
            let w = self.graph.width(0) + 1;
            return segment.bottom.get(r * w..(r + 1) * w);
        }
        let w = self.graph.width(1) + 1;
        let at = segment.upper_at[r].load(Ordering::Acquire) as usize + (layer - 1) * w;
        segment.upper.get(at..at + w)
    }

    /// Starts loading what expanding the node on layer 0 reads first: its state and its
    /// list. A walk asks this of each node it queues, so that by the time the node is
    /// expanded its list is (usually) in the cache: expanding read each list cold, and in a
    /// profile of uncached traffic two thirds of [`Links::neighbours`]' samples waited on it.
    #[inline]
    pub(crate) fn prefetch_bottom(&self, node: u32) {
        if let Some((segment, r)) = self.segment(node) {
            let w = self.graph.width(0) + 1;
            crate::prefetch(&segment.state[r..=r]);
            if let Some(list) = segment.bottom.get(r * w..(r + 1) * w) {
                crate::prefetch(list);
            }
        }
    }

    /// Copies the node's links on `layer` to `out`.
    #[inline]
    pub(crate) fn neighbours(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        if let Some(list) = self.list(node, layer) {
            let length = (list[0].load(Ordering::Acquire) as usize).min(list.len() - 1);
            out.extend(list[1..=length].iter().map(|l| l.load(Ordering::Relaxed)));
        }
    }

    /// Replaces the node's links on `layer` (the caller holds the node's stripe).
    pub(crate) fn write(&self, node: u32, layer: usize, links: &[Near]) {
        if let Some(list) = self.list(node, layer) {
            let length = links.len().min(list.len() - 1);
            for (slot, near) in list[1..].iter().zip(&links[..length]) {
                slot.store(near.node, Ordering::Relaxed);
            }
            list[0].store(list_length(length), Ordering::Release);
        }
    }

    /// Adds `node` to `to`'s list on `layer`, under `to`'s stripe: true at once when it is there
    /// already or there is room; a full list (all of it) goes to `full`, which says whether
    /// it took `node`. False when `to` has no list on `layer`.
    pub(crate) fn add(
        &self,
        to: u32,
        layer: usize,
        node: u32,
        full: impl FnOnce(&List) -> bool,
    ) -> bool {
        let Some(list) = self.list(to, layer) else {
            return false;
        };
        let _stripe = self.graph.stripe(to);
        let length = (list[0].load(Ordering::Acquire) as usize).min(list.len() - 1);
        let links = &list[1..];
        if links[..length]
            .iter()
            .any(|l| l.load(Ordering::Relaxed) == node)
        {
            return true;
        }
        if length < links.len() {
            links[length].store(node, Ordering::Relaxed);
            list[0].store(list_length(length + 1), Ordering::Release);
            return true;
        }
        full(links)
    }
}
