//! Recall measured on live questions, and the search breadth chosen from it.
//!
//! The graph's breadth (HNSW's ef) trades recall for time, and the recall a breadth gives
//! depends on the data: clustered catalogues need less than uniform noise, hubs need more,
//! and the same tenant drifts as it grows. So the breadth is not fixed: one graph question in
//! [`EVERY`] is kept (its query vector, filter, exclusions and page size, copied; at most
//! [`QUEUE`] wait), and a host re-answers kept questions off the request path
//! ([`EntityIndex::audit`]): exactly, and through the graph at each breadth of [`LADDER`]
//! until one finds every exact result. The last [`WINDOW`] audits give each breadth a mean
//! recall, and the least breadth whose mean holds the target serves ([`RecallMonitor::estimate`]).
//! Questions keep being audited at every breadth, so when the data drifts the choice follows.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use roaring::RoaringBitmap;

use super::{EntityIndex, Filter};
use crate::distance::Probe;
use crate::topk::TopK;

/// The breadths tried, narrowest first. A search never walks fewer candidates than its page
/// needs (`scans::beam`), so the narrowest act alike for small pages.
pub const LADDER: [usize; 14] = [16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 192, 256, 384, 512];

/// One graph question in this many is kept for an audit.
const EVERY: u64 = 32;
/// Kept questions waiting for an audit, at most; more are not kept.
const QUEUE: usize = 32;
/// Audits the estimate reads, the newest.
const WINDOW: usize = 200;
/// Audits needed before the estimate is trusted (until then the configured breadth serves).
pub const MIN_SAMPLES: usize = 50;

/// A graph question, kept to be answered again.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub query: Vec<f32>,
    pub filter: Filter,
    pub excluded: RoaringBitmap,
    pub want: usize,
}

/// Kept questions, and the recall each breadth had on the last [`WINDOW`] of them: shared by
/// every snapshot of a tenant's entities.
#[derive(Debug, Default)]
pub(crate) struct RecallMonitor {
    seen: AtomicU64,
    queue: Mutex<VecDeque<Sample>>,
    window: Mutex<VecDeque<[f32; LADDER.len()]>>,
}

/// What the audits say: the least breadth that holds the target (or the widest tried), its mean
/// recall, and over how many questions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecallEstimate {
    /// The breadth chosen.
    pub breadth: usize,
    /// The mean recall of the audited questions at that breadth (recall@k of each question's
    /// own page size: the share of its exact results the graph found).
    pub recall: f64,
    /// How many questions the estimate reads.
    pub samples: usize,
}

impl RecallMonitor {
    /// Called for every question the graph may answer: whether to keep this one (one in
    /// [`EVERY`], picked by a hash of the question's number, so that traffic with a period of
    /// its own, such as a client cycling through ids, is not sampled in step with it).
    pub fn due(&self) -> bool {
        splitmix(self.seen.fetch_add(1, Ordering::Relaxed)).is_multiple_of(EVERY)
    }

    /// Keeps a question the graph answered, never waiting (a busy or full queue drops it).
    pub fn keep(&self, sample: Sample) {
        if let Ok(mut queue) = self.queue.try_lock()
            && queue.len() < QUEUE
        {
            queue.push_back(sample);
        }
    }

    /// The oldest kept question.
    pub fn take(&self) -> Option<Sample> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    /// Adds one audit: the recall at each breadth of [`LADDER`].
    pub fn record(&self, recalls: [f32; LADDER.len()]) {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        window.push_back(recalls);
        while window.len() > WINDOW {
            window.pop_front();
        }
    }

    /// The least breadth whose mean recall over the window is at least `target`, or the widest
    /// when none is; `None` before [`MIN_SAMPLES`] audits.
    pub fn estimate(&self, target: f64) -> Option<RecallEstimate> {
        let window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let samples = window.len();
        if samples < MIN_SAMPLES {
            return None;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "at most WINDOW audits, far below 2^52"
        )]
        let mean =
            |level: usize| window.iter().map(|r| f64::from(r[level])).sum::<f64>() / samples as f64;
        let level = (0..LADDER.len())
            .find(|&level| mean(level) >= target)
            .unwrap_or(LADDER.len() - 1);
        Some(RecallEstimate {
            breadth: LADDER[level],
            recall: mean(level),
            samples,
        })
    }
}

/// SplitMix64's finaliser: a well-mixed hash of a counter.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl EntityIndex {
    /// Answers `sample` again on this snapshot: exactly, and through the graph at each breadth
    /// of [`LADDER`] until one finds the whole exact page (wider ones are then counted as
    /// finding it too). A result counts when it is as good as the exact page's last, so that
    /// ties do not count as misses. `None` when there is no graph, or nothing to find.
    pub(crate) fn audit(&self, sample: &Sample) -> Option<[f32; LADDER.len()]> {
        self.graph.as_ref()?;
        let probe = Probe::new(&sample.query, self.spec().metric);
        let goodness = |v: &[f32], n: f32| probe.goodness(v, n);
        let candidates = self.candidates(&sample.filter, sample.excluded.clone());
        let mut exact = TopK::new(sample.want);
        self.scan(&candidates, f32::NEG_INFINITY, &mut exact, goodness);
        let exact = exact.into_sorted();
        // A result counts as found when it is as good as the exact page's last (ann-benchmarks'
        // rule): among equally good entities, which ones fill the page is a matter of ties.
        let last = exact.last().map(|c| c.goodness)?;
        let bar = last - 1e-6 * last.abs().max(1.0);
        let mut recalls = [1.0; LADDER.len()];
        for (level, &breadth) in LADDER.iter().enumerate() {
            let mut top = TopK::new(sample.want);
            if !self.search_approximate(
                &sample.query,
                &candidates,
                sample.want,
                f32::NEG_INFINITY,
                &mut top,
                goodness,
                Some(breadth),
            ) {
                return None;
            }
            let found = top
                .into_sorted()
                .iter()
                .filter(|c| c.goodness >= bar)
                .count()
                .min(exact.len());
            #[expect(
                clippy::cast_precision_loss,
                reason = "page sizes are at most a few thousand"
            )]
            let recall = found as f32 / exact.len() as f32;
            recalls[level] = recall;
            if found == exact.len() {
                break;
            }
        }
        Some(recalls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audit in which every breadth below `full` found `recall` of the exact results, and
    /// every breadth from `full` on found them all.
    fn ramp(full: usize, recall: f32) -> [f32; LADDER.len()] {
        std::array::from_fn(|level| if level < full { recall } else { 1.0 })
    }

    /// The estimate waits for enough audits, then picks the least breadth that holds the
    /// target, and follows the window when later audits say otherwise.
    #[test]
    fn the_least_breadth_that_holds_the_target_is_chosen_from_the_window() {
        let monitor = RecallMonitor::default();
        for _ in 0..MIN_SAMPLES - 1 {
            monitor.record(ramp(3, 0.9));
        }
        assert_eq!(monitor.estimate(0.99), None);
        monitor.record(ramp(3, 0.9));
        let estimate = monitor.estimate(0.99).unwrap();
        assert_eq!(estimate.breadth, LADDER[3]);
        assert!((estimate.recall - 1.0).abs() < 1e-9);
        assert_eq!(estimate.samples, MIN_SAMPLES);
        assert_eq!(monitor.estimate(0.85).unwrap().breadth, LADDER[0]);
        // Half the questions need more: the mean at breadth 3 is 0.95 now.
        for _ in 0..MIN_SAMPLES {
            monitor.record(ramp(5, 0.9));
        }
        let estimate = monitor.estimate(0.99).unwrap();
        assert_eq!(estimate.breadth, LADDER[5]);
        let estimate = monitor.estimate(0.94).unwrap();
        assert_eq!(estimate.breadth, LADDER[3]);
        assert!((estimate.recall - 0.95).abs() < 1e-6);
        // The data drifts: a whole window of harder questions moves the choice up.
        for _ in 0..WINDOW {
            monitor.record(ramp(8, 0.97));
        }
        let estimate = monitor.estimate(0.99).unwrap();
        assert_eq!(estimate.breadth, LADDER[8]);
        assert_eq!(estimate.samples, WINDOW);
        // Nothing holds the target: the widest, with what it found.
        for _ in 0..WINDOW {
            monitor.record(ramp(LADDER.len(), 0.9));
        }
        let estimate = monitor.estimate(0.99).unwrap();
        assert_eq!(estimate.breadth, LADDER[LADDER.len() - 1]);
        assert!((estimate.recall - 0.9).abs() < 1e-6);
    }

    /// About one question in `EVERY` is kept, never more than the queue holds, and not in step
    /// with a periodic stream of questions.
    #[test]
    fn about_one_question_in_every_is_kept_up_to_the_queue() {
        let monitor = RecallMonitor::default();
        let due: Vec<bool> = (0..EVERY * 1000).map(|_| monitor.due()).collect();
        let kept = due.iter().filter(|d| **d).count();
        assert!((800..1200).contains(&kept), "{kept} of {} kept", due.len());
        // Every residue of a period of 32 is sampled, not only one.
        for residue in 0..32 {
            assert!(
                due.iter().skip(residue).step_by(32).any(|d| *d),
                "residue {residue}"
            );
        }
        let sample = || Sample {
            query: vec![1.0],
            filter: Filter::default(),
            excluded: RoaringBitmap::new(),
            want: 10,
        };
        for _ in 0..QUEUE + 10 {
            monitor.keep(sample());
        }
        let mut waiting = 0;
        while monitor.take().is_some() {
            waiting += 1;
        }
        assert_eq!(waiting, QUEUE);
    }
}
