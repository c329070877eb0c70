//! Healing: the pass that adopts the nodes no walk reaches after a build on several threads.

use std::sync::atomic::Ordering;

use crate::build::FromNode;
use crate::links::Links;
use crate::{DELETED, EMPTY, Graph, LEVEL_MASK, Near, SEGMENT, Vectors, nodes, unpack};

impl Links<'_> {
    /// Marks in `reached` every node a walk from `from` reaches, through links on any layer.
    pub(crate) fn reach(&self, from: u32, reached: &mut [bool]) {
        let mut stack = vec![from];
        let mut buffer = Vec::new();
        reached[from as usize] = true;
        while let Some(node) = stack.pop() {
            for layer in 0..usize::from(self.state(node) & LEVEL_MASK) {
                self.neighbours(node, layer, &mut buffer);
                for &n in &buffer {
                    if !std::mem::replace(&mut reached[n as usize], true) {
                        stack.push(n);
                    }
                }
            }
        }
    }

    /// Puts `node` in `to`'s bottom list: in spare room, or in place of the link whose target
    /// has the most in-links (when that is more than one). False when neither can be done.
    pub(crate) fn adopt(&self, to: u32, node: u32, incoming: &mut [u32]) -> bool {
        let added = self.add(to, 0, node, |links| {
            let Some(most) = links
                .iter()
                .max_by_key(|l| incoming[l.load(Ordering::Relaxed) as usize])
                .filter(|l| incoming[l.load(Ordering::Relaxed) as usize] > 1)
            else {
                return false;
            };
            incoming[most.load(Ordering::Relaxed) as usize] -= 1;
            most.store(node, Ordering::Release);
            true
        });
        if added {
            incoming[node as usize] += 1;
        }
        added
    }
}

impl Graph {
    /// Links every node that no walk could reach from the entry into the graph: after a build
    /// on several threads, a few nodes (none to a handful in 6,000) have lost all their in-links
    /// to selections that ran at the same time, and a search could never return them. Each one
    /// is added to the bottom list of its nearest reachable node, in place of the link whose
    /// target has the most other in-links. Costs one pass over the links, and a walk per node
    /// adopted.
    pub(crate) fn adopt_unreached(&self, links: &Links<'_>, vectors: &impl Vectors) {
        let entry = self.entry.load(Ordering::Acquire);
        if entry == EMPTY {
            return;
        }
        let slots = links.segments.len() * SEGMENT;
        let mut incoming = vec![0u32; slots];
        let mut buffer = Vec::new();
        for node in nodes(slots) {
            links.neighbours(node, 0, &mut buffer);
            for &n in &buffer {
                incoming[n as usize] += 1;
            }
        }
        let mut reached = vec![false; slots];
        links.reach(unpack(entry).1, &mut reached);
        for node in nodes(slots) {
            let state = links.state(node);
            if reached[node as usize] || state & LEVEL_MASK == 0 || state & DELETED != 0 {
                continue;
            }
            // Its nearest reachable nodes: those of its own links, else a walk's from the entry.
            let mut own: Vec<Near> = Vec::new();
            links.neighbours(node, 0, &mut buffer);
            for &n in &buffer {
                if reached[n as usize]
                    && let Some(distance) = vectors.between(node, n)
                {
                    own.push(Near { distance, node: n });
                }
            }
            own.sort_unstable();
            let mut adopt = |near: &[Near]| {
                near.iter()
                    .any(|c| links.adopt(c.node, node, &mut incoming))
            };
            let adopted = adopt(&own) || {
                let space = FromNode { vectors, node };
                links.descend(&space, 0).is_some_and(|(at, _)| {
                    adopt(&links.walk(&space, &[at], self.shape.expansion_add, 0, |n| n != node))
                })
            };
            if adopted {
                links.reach(node, &mut reached);
            }
        }
    }
}
