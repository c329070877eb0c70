//! Building: level draws, neighbour selection, and inserts on one or several threads.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::links::Links;
use crate::{
    DELETED, EMPTY, Graph, LEVEL_MASK, LINKING, Near, SEGMENT, STRIPES, Space, TOP_LAYER, Vectors,
    entry_of,
};

/// An inserted node as the query.
pub(crate) struct FromNode<'a, V> {
    pub(crate) vectors: &'a V,
    pub(crate) node: u32,
}

impl<V: Vectors> Space for FromNode<'_, V> {
    fn distance(&self, other: u32) -> Option<f32> {
        self.vectors.between(self.node, other)
    }
    fn prefetch(&self, node: u32) {
        self.vectors.prefetch(node);
    }
}

impl Links<'_> {
    /// HNSW's neighbour selection: from `candidates` (nearest first, by their distance to the
    /// node), keeps each one nearer the node than to every one kept before it, up to `width`.
    /// This keeps links pointing in different directions, which is what lets a walk cross
    /// between clusters. Room left over goes to the nearest of the candidates passed over
    /// (hnswlib's `keepPrunedConnections`). Without that, data with hubs (a member on its
    /// cluster's centre, nearest to all the others) left members linked to the hub alone:
    /// recall@10 0.95 on such data (usearch: 0.66), 1.0 with it; and on the bench data it buys
    /// more recall per microsecond at 100k (0.9935 in 78 µs against 0.9745 in 59 µs at ef 16).
    ///
    /// A full list offered one more candidate, the usual case of a link back, is answered by
    /// [`Links::select_one_out`], which finds the same list at a fraction of the distances.
    pub(crate) fn select(vectors: &impl Vectors, candidates: &[Near], width: usize) -> Vec<Near> {
        match candidates.len() {
            n if n <= width => candidates.to_vec(),
            n if n == width + 1 => Self::select_one_out(vectors, candidates),
            _ => Self::select_in_full(vectors, candidates, width),
        }
    }

    /// [`Links::select`] done as it is defined: every candidate in turn against those kept.
    pub(crate) fn select_in_full(
        vectors: &impl Vectors,
        candidates: &[Near],
        width: usize,
    ) -> Vec<Near> {
        let mut kept: Vec<Near> = Vec::with_capacity(width);
        for &c in candidates {
            if kept.len() == width {
                break;
            }
            let diverse = kept.iter().all(|k| {
                vectors
                    .between(c.node, k.node)
                    .is_none_or(|d| d >= c.distance)
            });
            if diverse {
                kept.push(c);
            }
        }
        if kept.len() < width {
            for &c in candidates {
                if kept.len() == width {
                    break;
                }
                if !kept.contains(&c) {
                    kept.push(c);
                }
            }
            kept.sort_unstable();
        }
        kept
    }

    /// [`Links::select_in_full`]'s answer for a full list offered one more candidate
    /// (`candidates.len() == width + 1`, nearest first), found by asking only what decides
    /// which candidate goes.
    ///
    /// The selection keeps the diverse candidates (those nearer the node than to every nearer
    /// diverse candidate), then fills the room left with the nearest of the others. So with
    /// one candidate too many it leaves out the farthest candidate that is not diverse, or the
    /// farthest of all when every one is. Whether a candidate is diverse depends only on the
    /// nearer candidates that block it (it is nearer to them than to the node): it is, unless
    /// one of them is. A walk from the farthest candidate asks that of its blockers, nearest
    /// first, and remembers each answer: when the nearest candidate (diverse by definition)
    /// blocks it, one distance decides, and a candidate known not to be diverse blocks nothing.
    /// Building 20,000 clustered 16-d rows at 32 bottom links, a full list's selection took 75
    /// distances instead of 154, and an insert 5,038 instead of 7,551, for the same lists.
    pub(crate) fn select_one_out(vectors: &impl Vectors, candidates: &[Near]) -> Vec<Near> {
        let mut known = vec![None; candidates.len()];
        let out = (0..candidates.len())
            .rev()
            .find(|&c| !diverse(vectors, candidates, c, &mut known))
            .unwrap_or(candidates.len() - 1);
        let mut kept = candidates.to_vec();
        kept.remove(out);
        kept
    }

    /// Gives `node` the best of `found` (nearest first) as its links on `layer`, together with
    /// what its list holds now: links other inserts added since this one began (they reached
    /// `node` through a layer above), or the old links of a node that moved. Selection keeps
    /// those of them that still belong.
    ///
    /// A node takes a full list on every layer, the bottom one's twice `connectivity`. Each
    /// link chosen is also a link back, into a list that is usually full and is selected
    /// again, so taking fewer makes writes cheaper, but it costs recall (measured at 128
    /// dimensions, `perf/results/issue17.md`, seventh part): taking 24 of 32 saved 19% of the
    /// server's CPU per write, for recall@10 at 100k of 0.9885 instead of 0.9900 at breadth 32
    /// and 0.9985 instead of 0.9995 at 64; hnswlib's 16 saved 30% for 0.9740 and 0.9925. Reads
    /// outnumber writes, and a breadth raised to hold recall costs every read.
    pub(crate) fn set(
        &self,
        vectors: &impl Vectors,
        node: u32,
        layer: usize,
        found: &[Near],
    ) -> Vec<Near> {
        let _stripe = self.graph.stripe(node);
        let mut current = Vec::new();
        self.neighbours(node, layer, &mut current);
        let mut candidates = found.to_vec();
        for n in current {
            if n != node
                && !found.iter().any(|f| f.node == n)
                && let Some(distance) = vectors.between(node, n)
            {
                candidates.push(Near { distance, node: n });
            }
        }
        candidates.sort_unstable();
        let chosen = Self::select(vectors, &candidates, self.graph.width(layer));
        self.write(node, layer, &chosen);
        chosen
    }

    /// Adds `node` to `to`'s list on `layer`, at `distance` from it; a full list is selected
    /// again with `node` among the candidates.
    pub(crate) fn link(
        &self,
        vectors: &impl Vectors,
        to: u32,
        node: u32,
        distance: f32,
        layer: usize,
    ) {
        self.add(to, layer, node, |links| {
            let mut candidates: Vec<Near> = links
                .iter()
                .filter_map(|l| {
                    let n = l.load(Ordering::Relaxed);
                    Some(Near {
                        distance: vectors.between(to, n)?,
                        node: n,
                    })
                })
                .collect();
            candidates.push(Near { distance, node });
            candidates.sort_unstable();
            let kept = Self::select(vectors, &candidates, links.len());
            self.write(to, layer, &kept);
            kept.iter().any(|k| k.node == node)
        });
    }
}

/// Whether `candidates[at]` is diverse in [`Links::select_in_full`]'s sense: no nearer diverse
/// candidate blocks it. `known` holds the answers found so far.
fn diverse(
    vectors: &impl Vectors,
    candidates: &[Near],
    at: usize,
    known: &mut [Option<bool>],
) -> bool {
    if let Some(answer) = known[at] {
        return answer;
    }
    let c = candidates[at];
    // A candidate known not to be diverse blocks nothing: its distance is not needed.
    let answer = !(0..at).any(|k| {
        known[k] != Some(false)
            && vectors
                .between(c.node, candidates[k].node)
                .is_some_and(|d| d < c.distance)
            && diverse(vectors, candidates, k, known)
    });
    known[at] = Some(answer);
    answer
}

impl Graph {
    pub(crate) fn stripe(&self, node: u32) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[node as usize % STRIPES]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A level from HNSW's distribution (layer l is reached with probability
    /// connectivity^-l), from a hash of a counter: repeatable for one insertion order.
    pub(crate) fn draw_level(&self) -> usize {
        let mut x = self
            .draws
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        // A uniform draw in (0, 1].
        let uniform = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let scale = 1.0 / (self.shape.connectivity as f64).ln();
        let level = -uniform.ln() * scale;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "the level is finite and at least 0 (uniform is in (0, 1]); the cast floors it"
        )]
        let level = level as usize;
        level.min(TOP_LAYER - 1)
    }

    /// Puts `nodes` in the graph with the vectors `vectors` holds for them now, in place of
    /// any links they had, on up to `threads` threads (the caller's setting; one when 0).
    pub fn insert_many(&self, vectors: &impl Vectors, nodes: &[u32], threads: usize) {
        let Some(&highest) = nodes.iter().max() else {
            return;
        };
        self.reserve(highest as usize + 1);
        self.with_links(|links| {
            let threads = threads.max(1);
            if threads == 1 || nodes.len() < 256 {
                nodes.iter().for_each(|&n| self.insert(links, vectors, n));
                return;
            }
            // The first nodes go in alone, so the others find a graph to join.
            let (first, rest) = nodes.split_at(64);
            first.iter().for_each(|&n| self.insert(links, vectors, n));
            let next = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        loop {
                            let at = next.fetch_add(64, Ordering::Relaxed);
                            let Some(part) = rest.get(at..rest.len().min(at + 64)) else {
                                break;
                            };
                            part.iter().for_each(|&n| self.insert(links, vectors, n));
                        }
                    });
                }
            });
            // The pass costs about a quarter of a microsecond per node of the graph (72 ms at
            // 300,000), against tens of microseconds per insert: it runs after builds and
            // batches of at least a 32nd of the graph, where it adds a few percent at most.
            if nodes.len() * 32 >= links.segments.len() * SEGMENT {
                self.adopt_unreached(links, vectors);
            }
        });
    }

    pub(crate) fn insert(&self, links: &Links<'_>, vectors: &impl Vectors, node: u32) {
        let Some((segment, r)) = links.segment(node) else {
            return;
        };
        let state = segment.state[r].load(Ordering::Acquire);
        let level = if state & LEVEL_MASK == 0 {
            // A new node: its upper lists (if any) come from its segment's reserve, and a node
            // that would not fit stays on the bottom layer.
            let mut level = self.draw_level();
            if level > 0 {
                let w = self.width(1) + 1;
                let at = segment.upper_used.fetch_add(level * w, Ordering::Relaxed);
                if at + level * w <= segment.upper.len() {
                    let at = u32::try_from(at).expect("a segment's upper lists fit in u32");
                    segment.upper_at[r].store(at, Ordering::Release);
                } else {
                    level = 0;
                }
            }
            let top = u8::try_from(level + 1).expect("levels are below TOP_LAYER");
            segment.state[r].store(top | LINKING, Ordering::Release);
            level
        } else {
            if state & DELETED != 0 {
                self.deleted.fetch_sub(1, Ordering::Relaxed);
            }
            segment.state[r].store((state & LEVEL_MASK) | LINKING, Ordering::Release);
            usize::from(state & LEVEL_MASK) - 1
        };
        self.link_node(links, vectors, node, level);
        segment.state[r].fetch_and(!LINKING, Ordering::Release);
    }

    /// Finds the neighbours of `node` (its lists already reach `level`) on each of its layers,
    /// and links it with them both ways.
    pub(crate) fn link_node(
        &self,
        links: &Links<'_>,
        vectors: &impl Vectors,
        node: u32,
        level: usize,
    ) {
        let space = FromNode { vectors, node };
        let entry = self.entry.load(Ordering::Acquire);
        if entry == EMPTY {
            let _entry = self
                .entry_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.entry.load(Ordering::Acquire) == EMPTY {
                self.entry.store(entry_of(level, node), Ordering::Release);
                return;
            }
        }
        let Some((at, top)) = links.descend(&space, level) else {
            return;
        };
        let mut entry_points = vec![at];
        for layer in (0..=level.min(top)).rev() {
            let mut found = links.walk(
                &space,
                &entry_points,
                self.shape.expansion_add,
                layer,
                |_| true,
            );
            found.retain(|f| f.node != node);
            let chosen = links.set(vectors, node, layer, &found);
            for c in &chosen {
                links.link(vectors, c.node, node, c.distance, layer);
            }
            if !found.is_empty() {
                entry_points = found;
            }
        }
        if level > top {
            let _entry = self
                .entry_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let current = self.entry.load(Ordering::Acquire);
            if current == EMPTY || (current >> 32) < level as u64 {
                self.entry.store(entry_of(level, node), Ordering::Release);
            }
        }
    }
}
