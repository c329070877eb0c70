//! Group commit: concurrent writers share one transaction.
//!
//! Callers queue their batch and wait. One task takes everything queued, writes it in one
//! transaction, and answers every caller after the commit, so an acknowledged write is durable.
//! While a commit runs, new batches queue up and go together in the next: the busier the
//! service, the bigger (and cheaper per row) each commit, with no timer adding latency.
//! If a shared commit fails, each batch is retried alone, so one bad batch cannot fail the
//! others.

use std::future::Future;

use reco_engine::{Interaction, TenantName};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StorageError};

/// One caller's batch.
#[derive(Debug)]
pub(crate) struct Pending {
    pub tenant: TenantName,
    pub rows: Vec<Interaction>,
    done: oneshot::Sender<Result<()>>,
}

/// The most rows one shared commit takes.
const MAX_ROWS: usize = 20_000;

/// The queue in front of the writer task.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer task; `commit` writes a group in one transaction.
    pub fn start<F, Fut>(commit: F) -> Self
    where
        F: Fn(Vec<(TenantName, Vec<Interaction>)>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                let mut rows = group[0].rows.len();
                while rows < MAX_ROWS {
                    match rx.try_recv() {
                        Ok(p) => {
                            rows += p.rows.len();
                            group.push(p);
                        }
                        Err(_) => break,
                    }
                }
                if let [only] = &group[..] {
                    let result = commit(vec![(only.tenant.clone(), only.rows.clone())]).await;
                    let only = group.pop().expect("one batch");
                    let _ = only.done.send(result);
                    continue;
                }
                let batches = group
                    .iter()
                    .map(|p| (p.tenant.clone(), p.rows.clone()))
                    .collect();
                if commit(batches).await.is_ok() {
                    for p in group {
                        let _ = p.done.send(Ok(()));
                    }
                } else {
                    for p in group {
                        let alone = commit(vec![(p.tenant.clone(), p.rows.clone())]).await;
                        let _ = p.done.send(alone);
                    }
                }
            }
        });
        Self { queue }
    }

    /// Queues a batch and waits until it is committed.
    pub async fn write(&self, tenant: TenantName, rows: Vec<Interaction>) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { tenant, rows, done })
            .await
            .map_err(|_| StorageError::Unavailable("the interaction writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Unavailable("the interaction writer has stopped".into()))?
    }
}
