//! Interrupting a ranking: a host that stops waiting for an answer (its time limit passed, its
//! client left) stops the work behind it too.
//!
//! A host answers a question with [`Prepared::answer_until`](crate::Prepared::answer_until) and
//! an [`Interrupt`] it may [`stop`](Interrupt::stop) from any thread; the interrupt may also carry
//! a deadline. While the answer is ranked, the interrupt is the ranking thread's current one
//! (a thread-local, installed for exactly that call), and the long loops look at it: the scans
//! once per chunk of rows, maximal marginal relevance once per pick, a batch between its
//! questions. A loop that sees it stopped ends early, and the answer is then
//! [`EngineError::Interrupted`](crate::EngineError::Interrupted), never a partial ranking, and
//! nothing is cached. The loops need no parameter for it: a ranking runs on one thread, and the
//! check is a thread-local read and an atomic load every few thousand rows.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A flag a host raises to stop the rankings it was set for, and an optional deadline that
/// raises it by itself.
#[derive(Debug, Default)]
pub struct Interrupt {
    stopped: AtomicBool,
    deadline: Option<Instant>,
}

impl Interrupt {
    /// An interrupt that stops only when told to.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An interrupt that also stops by itself at `deadline`.
    pub fn until(deadline: Instant) -> Arc<Self> {
        Arc::new(Self {
            stopped: AtomicBool::new(false),
            deadline: Some(deadline),
        })
    }

    /// Stops every ranking under this interrupt, at its next check.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether it was stopped, or its deadline passed.
    pub fn is_stopped(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop();
            return true;
        }
        false
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Interrupt>>> = const { RefCell::new(None) };
}

/// Runs `work` with `interrupt` as this thread's current interrupt, restoring the one before
/// (none, unless a host nests answers) afterwards, also when `work` panics.
pub(crate) fn within<T>(interrupt: &Arc<Interrupt>, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<Interrupt>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|current| current.borrow_mut().replace(interrupt.clone()));
    let _restore = Restore(previous);
    work()
}

/// Whether the current ranking should stop: its interrupt was stopped or its deadline passed.
/// False outside [`within`].
pub(crate) fn stopped() -> bool {
    CURRENT.with(|current| current.borrow().as_ref().is_some_and(|i| i.is_stopped()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_interrupt_counts_and_it_is_restored() {
        assert!(!stopped());
        let stop = Interrupt::new();
        stop.stop();
        let outer = Interrupt::new();
        within(&outer, || {
            assert!(!stopped());
            within(&stop, || assert!(stopped()));
            assert!(!stopped());
        });
        assert!(!stopped());
        let late = Interrupt::until(Instant::now());
        assert!(within(&late, stopped));
    }
}
