//! Bounded top-k selection.
//!
//! A min-heap of the best `capacity` candidates seen so far: each candidate costs one comparison
//! with the worst kept one, and only a better one pays `O(log k)`. Equal goodness is ordered by
//! id, smaller first, so results are deterministic; the id is only looked at on an exact tie.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate: its goodness (higher is better), its slot, and its id for ties.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub goodness: f32,
    pub slot: u32,
    pub id: &'a str,
}

impl Candidate<'_> {
    /// Whether `self` ranks before `other`: higher goodness, then smaller id.
    #[inline]
    fn rank_cmp(&self, other: &Self) -> Ordering {
        other
            .goodness
            .total_cmp(&self.goodness)
            .then_with(|| self.id.cmp(other.id))
    }
}

/// Heap order: the *worst* candidate is the greatest, so it sits on top of the max-heap.
struct Worst<'a>(Candidate<'a>);

impl PartialEq for Worst<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst<'_> {}
impl PartialOrd for Worst<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank_cmp(&other.0)
    }
}

/// Keeps the best `capacity` candidates offered to it.
pub(crate) struct TopK<'a> {
    capacity: usize,
    heap: BinaryHeap<Worst<'a>>,
}

impl<'a> TopK<'a> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            heap: BinaryHeap::with_capacity(capacity.min(4096) + 1),
        }
    }

    /// Whether `capacity` candidates are kept.
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.capacity
    }

    /// The goodness a candidate must reach to be considered once the heap is full.
    #[inline]
    pub fn bar(&self) -> f32 {
        if self.heap.len() < self.capacity {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.goodness)
        }
    }

    /// Offers a candidate. `id` is called only when the candidate may be kept.
    #[inline]
    pub fn offer(&mut self, goodness: f32, slot: u32, id: impl FnOnce() -> &'a str) {
        // Adding +0 turns -0 into +0, so that the two zeros tie (and break the tie by id) under
        // the total order rather than ranking -0 below +0.
        let goodness = goodness + 0.0;
        if self.capacity == 0 || goodness.is_nan() || goodness < self.bar() {
            return;
        }
        let candidate = Candidate {
            goodness,
            slot,
            id: id(),
        };
        if self.heap.len() < self.capacity {
            self.heap.push(Worst(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate.rank_cmp(&worst.0) == Ordering::Less
        {
            *worst = Worst(candidate);
        }
    }

    /// The kept candidates, best first.
    pub fn into_sorted(self) -> Vec<Candidate<'a>> {
        let mut out: Vec<Candidate<'a>> = self.heap.into_iter().map(|w| w.0).collect();
        out.sort_unstable_by(Candidate::rank_cmp);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_and_breaks_ties_by_id() {
        let ids = ["e", "d", "c", "b", "a", "f"];
        let goodness = [1.0, 3.0, 3.0, 0.5, 3.0, 2.0];
        let mut top = TopK::new(3);
        for (slot, (id, g)) in (0u32..).zip(ids.iter().zip(goodness)) {
            top.offer(g, slot, || id);
        }
        let kept: Vec<&str> = top.into_sorted().iter().map(|c| c.id).collect();
        assert_eq!(kept, ["a", "c", "d"]);
    }

    #[test]
    fn the_two_zeros_tie() {
        let mut top = TopK::new(2);
        top.offer(-0.0, 0, || "a");
        top.offer(0.0, 1, || "b");
        top.offer(0.0, 2, || "c");
        let kept: Vec<&str> = top.into_sorted().iter().map(|c| c.id).collect();
        assert_eq!(kept, ["a", "b"]);
    }

    #[test]
    fn zero_capacity_and_nan_keep_nothing() {
        let mut top = TopK::new(0);
        top.offer(1.0, 0, || "a");
        assert!(top.into_sorted().is_empty());
        let mut top = TopK::new(2);
        top.offer(f32::NAN, 0, || "a");
        assert!(top.into_sorted().is_empty());
    }
}
