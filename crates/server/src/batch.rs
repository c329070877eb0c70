//! Micro-batching: exact similar questions that arrive while others are being answered are
//! answered together, in one pass over the tenant's rows (`Prepared::answer_all`).
//!
//! Handlers queue batchable questions (`Prepared::batchable`) and await their answers. Each
//! batch thread takes the first question waiting and every other one queued behind it, up to
//! `max`, and answers them at once. Nothing waits on a timer: under light load a batch holds one
//! question; under load the queue fills while a pass runs and the next pass takes all of it, so
//! the window is the time the previous pass took. Graph searches are not queued: they read a few
//! hundred rows each and share nothing.
//!
//! The queue is a crossbeam channel (many handlers send, several threads receive), and answers
//! return through tokio oneshot channels, so a handler awaits without holding an HTTP worker.

use crossbeam_channel::{Receiver, Sender};
use prometheus::Histogram;
use reco_engine::{Answer, EngineError, Prepared};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// A question and where its answer goes.
struct Job {
    prepared: Prepared,
    reply: oneshot::Sender<Result<Answer, EngineError>>,
}

/// The queue of batchable questions and the threads that answer them.
pub struct Batcher {
    sender: Sender<Job>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queued", &self.sender.len())
            .finish()
    }
}

impl Batcher {
    /// Starts `threads` batch threads taking up to `max` questions a pass, recording each
    /// pass's size in `sizes`. They stop when the batcher is dropped.
    pub fn start(threads: usize, max: usize, sizes: &Histogram) -> std::io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            let sizes = sizes.clone();
            std::thread::Builder::new()
                .name(format!("reco-batch-{n}"))
                .spawn(move || run(&receiver, max.max(1), &sizes))?;
        }
        Ok(Self { sender })
    }

    /// The answer to a batchable question, from the next pass.
    pub async fn answer(&self, prepared: Prepared) -> Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.sender.send(Job { prepared, reply }) {
            // No thread is left to take it (they only stop when the batcher goes): answer here.
            return Ok(refused.0.prepared.answer()?);
        }
        match answer.await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ApiError::Internal(
                "the batch thread answering this question stopped".into(),
            )),
        }
    }
}

/// A batch thread: waits for a question, takes those queued behind it, answers them together.
fn run(receiver: &Receiver<Job>, max: usize, sizes: &Histogram) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        sizes.observe(jobs.len() as f64);
        let (questions, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.prepared, j.reply)).unzip();
        for (reply, answer) in replies.into_iter().zip(Prepared::answer_all(questions)) {
            // A handler that gave up (its client left) no longer wants the answer.
            let _ = reply.send(answer);
        }
    }
}
