//! Searching: the greedy descent through the upper layers and the beam walk on a layer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;

use crate::links::Links;
use crate::visited::VISITED;
use crate::{EMPTY, Graph, Near, SEGMENT, Space, unpack};

impl Links<'_> {
    /// Moves greedily towards the query on one layer.
    #[inline]
    pub(crate) fn greedy(
        &self,
        space: &impl Space,
        mut at: Near,
        layer: usize,
        buffer: &mut Vec<u32>,
    ) -> Near {
        loop {
            self.neighbours(at.node, layer, buffer);
            let before = at;
            for &n in buffer.iter() {
                if let Some(distance) = space.distance(n)
                    && distance < at.distance
                    && !self.is_linking(n)
                {
                    at = Near { distance, node: n };
                }
            }
            if at == before {
                return at;
            }
        }
    }

    /// The best `ef` nodes near the query on one layer, walking from `entry`, nearest first.
    /// Only nodes that `keep` accepts are returned; the walk passes through the others.
    pub(crate) fn walk(
        &self,
        space: &impl Space,
        entry: &[Near],
        ef: usize,
        layer: usize,
        keep: impl Fn(u32) -> bool,
    ) -> Vec<Near> {
        VISITED.with_borrow_mut(|visited| {
            visited.start(self.segments.len() * SEGMENT);
            let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
            let mut found: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
            for &e in entry {
                if visited.insert(e.node) {
                    candidates.push(Reverse(e));
                    if keep(e.node) {
                        found.push(e);
                    }
                }
            }
            let mut buffer = Vec::with_capacity(self.graph.width(layer));
            let mut fresh = Vec::with_capacity(self.graph.width(layer));
            // The distance a node must beat to join `found` once it is full.
            let mut bar = found.peek().map_or(f32::INFINITY, |f| f.distance);
            while let Some(Reverse(nearest)) = candidates.pop() {
                if nearest.distance > bar && found.len() >= ef {
                    break;
                }
                self.neighbours(nearest.node, layer, &mut buffer);
                // Mark and prefetch first, then score: the loads of all neighbours overlap.
                fresh.clear();
                for &n in &buffer {
                    if visited.insert(n) {
                        space.prefetch(n);
                        fresh.push(n);
                    }
                }
                for &n in &fresh {
                    let Some(distance) = space.distance(n) else {
                        continue;
                    };
                    if found.len() < ef || distance < bar {
                        let near = Near { distance, node: n };
                        if layer == 0 {
                            self.prefetch_bottom(n);
                        }
                        candidates.push(Reverse(near));
                        if keep(n) {
                            found.push(near);
                            if found.len() > ef {
                                found.pop();
                            }
                            bar = found.peek().map_or(f32::INFINITY, |f| f.distance);
                        }
                    }
                }
            }
            found.into_sorted_vec()
        })
    }

    /// The entry node, as a point of the query's space: the graph's entry, or when the reader's
    /// snapshot lacks it (it was just added), one of its links that the snapshot has.
    #[inline]
    pub(crate) fn entry(&self, space: &impl Space) -> Option<(Near, usize)> {
        let entry = self.graph.entry.load(Ordering::Acquire);
        if entry == EMPTY {
            return None;
        }
        let (layer, node) = unpack(entry);
        if let Some(distance) = space.distance(node) {
            return Some((Near { distance, node }, layer));
        }
        let mut buffer = Vec::new();
        (0..=layer).rev().find_map(|l| {
            self.neighbours(node, l, &mut buffer);
            buffer.iter().find_map(|&n| {
                let distance = space.distance(n)?;
                Some((Near { distance, node: n }, l))
            })
        })
    }

    /// The entry, then a greedy descent through the layers above `layer`: where a walk on
    /// `layer` starts, and the graph's top layer.
    #[inline]
    pub(crate) fn descend(&self, space: &impl Space, layer: usize) -> Option<(Near, usize)> {
        let (mut at, top) = self.entry(space)?;
        let mut buffer = Vec::new();
        for l in (layer + 1..=top).rev() {
            at = self.greedy(space, at, l, &mut buffer);
        }
        Some((at, top))
    }
}

impl Graph {
    /// The nodes nearest the query of `space` that `allowed` accepts (all, without it),
    /// nearest first: the whole final beam of at least `count` (and the search breadth).
    pub fn search(
        &self,
        space: &impl Space,
        count: usize,
        allowed: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<u32> {
        self.search_at(space, count, allowed, self.expansion_search())
    }

    /// [`Graph::search`] at a breadth of its own instead of the graph's (for measuring what
    /// another breadth would find).
    pub fn search_at(
        &self,
        space: &impl Space,
        count: usize,
        allowed: Option<&dyn Fn(u32) -> bool>,
        breadth: usize,
    ) -> Vec<u32> {
        self.with_links(|links| {
            let Some((at, _)) = links.descend(space, 0) else {
                return Vec::new();
            };
            let ef = count.max(breadth);
            let deletions = self.deleted.load(Ordering::Relaxed) > 0;
            let found = match (allowed, deletions) {
                (None, false) => links.walk(space, &[at], ef, 0, |_| true),
                (None, true) => links.walk(space, &[at], ef, 0, |n| !links.is_deleted(n)),
                (Some(allowed), false) => links.walk(space, &[at], ef, 0, allowed),
                (Some(allowed), true) => {
                    links.walk(space, &[at], ef, 0, |n| !links.is_deleted(n) && allowed(n))
                }
            };
            found.into_iter().map(|f| f.node).collect()
        })
    }
}
