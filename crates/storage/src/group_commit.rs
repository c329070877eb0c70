//! Group commit: concurrent writers share one transaction.
//!
//! Callers queue their batch and wait. One task takes everything queued, writes it in one
//! transaction, and answers every caller after the commit, so an acknowledged write is durable.
//! While a commit runs, new batches queue up and go together in the next: the busier the
//! service, the bigger (and cheaper per row) each commit, with no timer adding latency.
//! If a shared commit fails, each batch is retried alone, so one bad batch cannot fail the
//! others.

use std::future::Future;

use reco_engine::{ChangeId, TenantName};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StorageError};

/// What a caller queues: rows of one tenant, counted toward a commit's limit.
pub(crate) trait Batch: Clone + Send + 'static {
    /// The rows it holds.
    fn rows(&self) -> usize;
}

impl<R: Clone + Send + 'static> Batch for Vec<R> {
    fn rows(&self) -> usize {
        self.len()
    }
}

impl Batch for reco_engine::CheckedEntities {
    fn rows(&self) -> usize {
        self.len()
    }
}

/// One caller's batch.
#[derive(Debug)]
pub(crate) struct Pending<B, O> {
    pub tenant: TenantName,
    pub batch: B,
    done: oneshot::Sender<Result<O>>,
}

/// The most rows one shared commit takes.
const MAX_ROWS: usize = 20_000;

/// The queue in front of the writer task, for batches of type `B`.
#[derive(Debug)]
pub(crate) struct GroupCommit<B, O = ChangeId> {
    queue: mpsc::Sender<Pending<B, O>>,
}

impl<B, O> Clone for GroupCommit<B, O> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<B: Batch, O: Send + 'static> GroupCommit<B, O> {
    /// Starts the writer task; `commit` writes a group in one transaction and returns each
    /// batch's stamp, in order.
    pub fn start<F, Fut>(commit: F) -> Self
    where
        F: Fn(Vec<(TenantName, B)>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<Pending<B, O>>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                let mut rows = group[0].batch.rows();
                while rows < MAX_ROWS {
                    match rx.try_recv() {
                        Ok(p) => {
                            rows += p.batch.rows();
                            group.push(p);
                        }
                        Err(_) => break,
                    }
                }
                if let [only] = &group[..] {
                    let result = commit(vec![(only.tenant.clone(), only.batch.clone())])
                        .await
                        .and_then(only_stamp);
                    let only = group.pop().expect("one batch");
                    let _ = only.done.send(result);
                    continue;
                }
                let batches = group
                    .iter()
                    .map(|p| (p.tenant.clone(), p.batch.clone()))
                    .collect();
                match commit(batches).await {
                    Ok(stamps) if stamps.len() == group.len() => {
                        for (p, stamp) in group.into_iter().zip(stamps) {
                            let _ = p.done.send(Ok(stamp));
                        }
                    }
                    Ok(_) | Err(_) => {
                        for p in group {
                            let result = commit(vec![(p.tenant.clone(), p.batch.clone())])
                                .await
                                .and_then(only_stamp);
                            let _ = p.done.send(result);
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Queues a batch and waits until it is committed; returns its stamp.
    pub async fn write(&self, tenant: TenantName, batch: B) -> Result<O> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                tenant,
                batch,
                done,
            })
            .await
            .map_err(|_| StorageError::Unavailable("the interaction writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Unavailable("the interaction writer has stopped".into()))?
    }
}

/// The one stamp of a commit of one batch.
fn only_stamp<O>(mut stamps: Vec<O>) -> Result<O> {
    let n = stamps.len();
    match stamps.pop() {
        Some(one) if n == 1 => Ok(one),
        Some(_) | None => Err(StorageError::Corrupt(format!(
            "a commit of one batch returned {n} results"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use reco_engine::{EntityId, Interaction, InteractionKind, Lineage, Stamp, UserId};

    use super::*;

    fn rows(n: usize) -> Vec<Interaction> {
        (0..n)
            .map(|i| Interaction {
                user: UserId::parse("u").unwrap(),
                entity: EntityId::parse(&format!("e{i}")).unwrap(),
                kind: InteractionKind::View,
                weight: None,
                timestamp: 0,
            })
            .collect()
    }

    /// A writer whose commits take a while and fail for tenant `bad`, recording each group.
    /// The tenants of each group committed, in order.
    type Groups = Arc<Mutex<Vec<Vec<String>>>>;

    fn recording() -> (GroupCommit<Vec<Interaction>>, Groups) {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let seen = groups.clone();
        let writer = GroupCommit::start(move |group: Vec<(TenantName, Vec<Interaction>)>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let names: Vec<String> = group.iter().map(|(t, _)| t.to_string()).collect();
                let failed = names.iter().any(|n| n == "bad");
                let count = names.len();
                seen.lock().unwrap().push(names);
                if failed {
                    Err(StorageError::TenantNotFound(
                        TenantName::parse("bad").unwrap(),
                    ))
                } else {
                    // Each batch's stamp is its place in the group, plus 100.
                    Ok((100..)
                        .take(count)
                        .map(|n| ChangeId::new(Lineage::new(1), Stamp::new(n)))
                        .collect())
                }
            }
        });
        (writer, groups)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_commits() {
        let (writer, groups) = recording();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(TenantName::parse(&format!("t{i}")).unwrap(), rows(3))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let groups = groups.lock().unwrap();
        let written: usize = groups.iter().map(Vec::len).sum();
        assert_eq!(written, 20, "every batch was committed once");
        assert!(
            groups.len() < 20,
            "writers waiting behind a commit go together: {groups:?}"
        );
        assert!(groups.iter().any(|g| g.len() > 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_bad_batch_fails_alone() {
        let (writer, groups) = recording();
        // Hold the writer busy so that the next three queue up and share a group.
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(TenantName::parse("first").unwrap(), rows(1))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let names = ["good", "bad", "fine"];
        let tasks: Vec<_> = names
            .iter()
            .map(|name| {
                let writer = writer.clone();
                let tenant = TenantName::parse(name).unwrap();
                tokio::spawn(async move { writer.write(tenant, rows(2)).await })
            })
            .collect();
        first.await.unwrap().unwrap();
        let results: Vec<_> = futures::future::join_all(tasks).await;
        for (name, result) in names.iter().zip(results) {
            match (name, result.unwrap()) {
                (&"bad", Err(StorageError::TenantNotFound(_))) => {}
                (&"bad", other) => panic!("bad: {other:?}"),
                (_, Ok(change)) => {
                    assert!(change.stamp.get() >= 100, "{name} got {change:?}");
                }
                (name, Err(e)) => panic!("{name} failed with the bad batch: {e}"),
            }
        }
        let groups = groups.lock().unwrap();
        assert!(
            groups.iter().any(|g| g.len() == 3),
            "the three shared a group first: {groups:?}"
        );
        assert!(groups.iter().any(|g| g == &["good"]) && groups.iter().any(|g| g == &["fine"]));
    }
}
