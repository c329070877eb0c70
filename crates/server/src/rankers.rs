//! The rankers: a bounded pool of threads every costly ranking runs on, off the HTTP workers,
//! so that a worker only parses, authenticates, writes answers and ranks what costs less than
//! sending it away, and `/health/live` is answered in milliseconds whatever is being ranked.
//!
//! Cheap questions stay on the worker: a question whose estimated work
//! ([`Prepared::cost`]) is at most `inline` (`RECO_INLINE_WORK`) is ranked where it was
//! asked. A graph search at 20,000 entities takes the engine a few tens of microseconds, and
//! the hop to a ranker and back (a queue, two thread wake-ups, a waker) cost the two cores
//! about as much again under load; a search of a larger tenant, a full scan, a batch, or a
//! best-score question over many examples still hops, so no worker is held for longer than
//! about a tenth of a millisecond by one question.
//!
//! Work arrives on two bounded queues: questions that can share a pass (exact similar
//! questions, `Prepared::batchable`) and everything else (one question, or a whole batch
//! request). A full queue is refused at once (503, retry), never waited on. Every piece of work
//! carries an [`Interrupt`]: the handler that waits for it stops it when it stops waiting (its
//! time limit passed, its client left: its future is dropped), and its deadline stops it by
//! itself, so the work behind an abandoned request ends with it, in the middle of a scan or
//! between a batch's questions.
//!
//! Micro-batching: each thread takes the first shareable question waiting and every other one
//! queued behind it, up to `max`, and answers them at once (`Prepared::answer_all`, one pass
//! over the rows). Nothing waits on a timer: under light load a pass holds one question; under
//! load the queue fills while a pass runs and the next pass takes all of it.
//!
//! The queues are crossbeam channels (many handlers send, several threads receive), and answers
//! return through tokio oneshot channels, so a handler awaits without holding an HTTP worker.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus::Histogram;
use reco_engine::{Answer, EngineError, Interrupt, Prepared};
use tokio::sync::oneshot;

use crate::error::ApiError;

thread_local! {
    /// The writes whose handlers wait on this thread (an HTTP worker) for their commit.
    static WRITES_WAITING: Cell<usize> = const { Cell::new(0) };
}

/// Marks a write waiting on this thread while it lives: meanwhile cheap questions hop to the
/// rankers too.
///
/// A worker runs its tasks in turn, so a write's handler, woken when its commit is applied,
/// waits behind every task queued on the worker before it. A question ranked on the worker
/// holds it for tens of microseconds, and under load hundreds are queued: measured in the
/// mixed run (900 connections reading, 100 writing), writes answered at a p99 of 0.3 to 1.7 s
/// with reads ranked on the workers, 0.12 to 0.15 s with every read hopping. So while a write
/// waits, reads queue at the rankers and the worker stays free to answer it: writes keep pace
/// and reads pay the hop only then.
///
/// It is not `Send`: it must end on the thread it began on.
#[derive(Debug)]
pub struct WriteWaiting(std::marker::PhantomData<*const ()>);

impl WriteWaiting {
    /// Marks a write waiting on the calling thread until dropped.
    pub fn begin() -> Self {
        WRITES_WAITING.set(WRITES_WAITING.get() + 1);
        Self(std::marker::PhantomData)
    }
}

impl Drop for WriteWaiting {
    fn drop(&mut self) {
        WRITES_WAITING.set(WRITES_WAITING.get() - 1);
    }
}

/// A shareable question and where its answer goes.
struct Shared {
    prepared: Prepared,
    interrupt: Arc<Interrupt>,
    reply: oneshot::Sender<Result<Answer, EngineError>>,
}

/// Any other work: it replies by itself.
type Work = Box<dyn FnOnce() + Send>;

/// The pool; see the module's documentation.
pub struct Rankers {
    shared: Sender<Shared>,
    single: Sender<Work>,
    batching: bool,
    inline: u64,
}

impl std::fmt::Debug for Rankers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rankers")
            .field("queued", &(self.shared.len() + self.single.len()))
            .finish()
    }
}

/// Stops an interrupt when dropped: the handler awaiting the work went away, or the work is
/// done (when stopping it is harmless).
struct StopOnDrop(Arc<Interrupt>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn busy() -> ApiError {
    ApiError::Unavailable {
        message: "the server has more rankings queued than it takes; retry shortly".into(),
        retry_after: 1,
    }
}

fn gone() -> ApiError {
    ApiError::Internal("the ranking thread answering this request stopped".into())
}

/// Why a queue did not take a piece of work.
fn refused<T>(e: &TrySendError<T>) -> ApiError {
    match e {
        TrySendError::Full(_) => busy(),
        TrySendError::Disconnected(_) => gone(),
    }
}

impl Rankers {
    /// Starts `threads` ranking threads with room for `queue` waiting pieces of work on each
    /// queue; shared passes take up to `batch_max` questions (0 turns sharing off), and each
    /// pass's size is recorded in `sizes`; questions of at most `inline` work are answered on
    /// the caller's thread. The threads stop when the pool is dropped.
    pub fn start(
        threads: usize,
        queue: usize,
        batch_max: usize,
        inline: u64,
        sizes: &Histogram,
    ) -> std::io::Result<Self> {
        let (shared, shared_rx) = crossbeam_channel::bounded(queue.max(1));
        let (single, single_rx) = crossbeam_channel::bounded(queue.max(1));
        for n in 0..threads.max(1) {
            let shared_rx = shared_rx.clone();
            let single_rx = single_rx.clone();
            let sizes = sizes.clone();
            let max = batch_max.max(1);
            std::thread::Builder::new()
                .name(format!("reco-rank-{n}"))
                .spawn(move || run(&shared_rx, &single_rx, max, &sizes))?;
        }
        Ok(Self {
            shared,
            single,
            batching: batch_max > 0,
            inline,
        })
    }

    /// The answer to `prepared`, ranked here when it is cheap, else on the pool and stopped at
    /// `deadline` or when this future is dropped.
    pub async fn answer(&self, prepared: Prepared, deadline: Instant) -> Result<Answer, ApiError> {
        let interrupt = Interrupt::until(deadline);
        if self.stays(&prepared) {
            return Ok(prepared.answer_until(&interrupt)?);
        }
        let _stop = StopOnDrop(interrupt.clone());
        let (reply, answer) = oneshot::channel();
        if self.batching && prepared.batchable() {
            let job = Shared {
                prepared,
                interrupt,
                reply,
            };
            self.shared.try_send(job).map_err(|e| refused(&e))?;
        } else {
            let work = Box::new(move || {
                // A handler that gave up no longer wants the answer.
                let _ = reply.send(prepared.answer_until(&interrupt));
            });
            self.submit(work)?;
        }
        match answer.await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(gone()),
        }
    }

    /// Runs `work` on the pool with an interrupt stopped at `deadline` or when this future is
    /// dropped; `work` should look at it between its parts.
    pub async fn run<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl FnOnce(&Arc<Interrupt>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let interrupt = Interrupt::until(deadline);
        let _stop = StopOnDrop(interrupt.clone());
        let (reply, done) = oneshot::channel();
        self.submit(Box::new(move || {
            let _ = reply.send(work(&interrupt));
        }))?;
        done.await.map_err(|_| gone())
    }

    /// Whether `prepared` is ranked on the calling thread: its estimated work is within
    /// `inline`, and no write waits on this thread (see [`WriteWaiting`]).
    fn stays(&self, prepared: &Prepared) -> bool {
        self.inline > 0 && WRITES_WAITING.get() == 0 && prepared.cost().components <= self.inline
    }

    fn submit(&self, work: Work) -> Result<(), ApiError> {
        self.single.try_send(work).map_err(|e| refused(&e))
    }
}

/// A ranking thread: takes whichever queue has work; a shareable question with those queued
/// behind it, answered together.
fn run(shared: &Receiver<Shared>, single: &Receiver<Work>, max: usize, sizes: &Histogram) {
    loop {
        crossbeam_channel::select! {
            recv(single) -> work => match work {
                Ok(work) => work(),
                Err(_) => return,
            },
            recv(shared) -> first => match first {
                Ok(first) => pass(first, shared, max, sizes),
                Err(_) => return,
            },
        }
    }
}

/// Answers `first` and the shareable questions queued behind it (up to `max`) in one pass;
/// those whose handlers stopped waiting are left out.
fn pass(first: Shared, queue: &Receiver<Shared>, max: usize, sizes: &Histogram) {
    let mut jobs = vec![first];
    while jobs.len() < max {
        match queue.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    let (jobs, stopped): (Vec<_>, Vec<_>) =
        jobs.into_iter().partition(|j| !j.interrupt.is_stopped());
    for job in stopped {
        let _ = job.reply.send(Err(EngineError::Interrupted));
    }
    if jobs.is_empty() {
        return;
    }
    sizes.observe(jobs.len() as f64);
    let (questions, replies): (Vec<_>, Vec<_>) =
        jobs.into_iter().map(|j| (j.prepared, j.reply)).unzip();
    for (reply, answer) in replies.into_iter().zip(Prepared::answer_all(questions)) {
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use reco_engine::{Engine, EngineConfig, EntityId, Metric, NewEntity, SearchOptions};
    use reco_engine::{TenantName, TenantSpec};

    use super::*;

    #[test]
    fn cheap_questions_stay_unless_a_write_waits_on_the_thread() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let tenant = TenantName::parse("shop").unwrap();
        let spec = TenantSpec::new(2, Metric::Dot).unwrap();
        engine.create_tenant(tenant.clone(), spec).unwrap();
        let entity = |id: &str| NewEntity {
            id: EntityId::parse(id).unwrap(),
            vector: vec![1.0, 0.5],
            category: None,
            tags: Vec::new(),
            attributes: None,
        };
        engine
            .upsert(&tenant, vec![entity("a"), entity("b")])
            .unwrap();
        let question = || {
            let id = EntityId::parse("a").unwrap();
            engine
                .prepare_similar(&tenant, &id, &SearchOptions::default())
                .unwrap()
        };
        let sizes = crate::metrics::Metrics::new().batch_sizes();
        let rankers = Rankers::start(1, 4, 0, 1 << 20, &sizes).unwrap();
        assert!(rankers.stays(&question()));
        {
            let _write = WriteWaiting::begin();
            let _another = WriteWaiting::begin();
            assert!(!rankers.stays(&question()));
        }
        assert!(rankers.stays(&question()));
        // Elsewhere a write waiting on another thread changes nothing here.
        let other = std::thread::spawn(|| {
            let write = WriteWaiting::begin();
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(write);
        });
        assert!(rankers.stays(&question()));
        other.join().unwrap();
        // Nothing stays when nothing may, and nothing costlier than the threshold does.
        let never = Rankers::start(1, 4, 0, 0, &sizes).unwrap();
        assert!(!never.stays(&question()));
        let tiny = Rankers::start(1, 4, 0, question().cost().components - 1, &sizes).unwrap();
        assert!(!tiny.stays(&question()));
    }
}
