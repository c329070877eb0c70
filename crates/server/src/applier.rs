//! Committed changes on their way from storage to the engine: this server's own writes, and
//! the changes the feed brings.
//!
//! Storage stamps each tenant's changes in commit order and the engine takes them in that
//! order, each once (see `sync`). A write committed here does not apply itself: it queues its
//! change with its tenant, and one drain at a time per tenant, on a blocking thread, applies
//! every queued change whose turn has come, in stamp order. Writes that committed together
//! (a group commit hands out consecutive stamps) then reach the engine in one pass, with no
//! thread hop per change and no waking of every waiting write at each step. A change whose
//! turn waits for another server's change waits for the change feed, which kicks the drain
//! after it applies one (as does a reload of the tenant). Changes the feed brings from other
//! servers take the same way, so that the tenant's changes meet in one order whoever brought
//! them; a change queued here already is not fetched again by the feed.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use reco_engine::{ChangeId, Engine, EngineError, Lineage, Stamp, TenantName};
use tokio::sync::oneshot;

/// A change's way into the engine: runs on the drain's thread, in the change's turn.
pub type Apply = Box<dyn FnOnce(&Engine, &TenantName) -> Result<(), EngineError> + Send>;

/// What the engine said of a queued change; the sender is dropped, unsent, when applying it
/// panicked.
pub type Outcome = oneshot::Receiver<Result<(), EngineError>>;

/// A committed change waiting for its turn, and everyone waiting for it: its own write, and
/// the change feed when the notice came before the write queued it (the first to queue it
/// gives the way to apply it; both are the same change).
struct Own {
    change: ChangeId,
    apply: Apply,
    done: Vec<oneshot::Sender<Result<(), EngineError>>>,
}

/// One tenant's queue: its changes by stamp, and whether a drain is running for it.
#[derive(Default)]
struct Queue {
    draining: bool,
    pending: BTreeMap<(Stamp, Lineage), Own>,
}

/// The queues of every tenant with changes on their way.
#[derive(Default)]
pub struct Applier {
    queues: Mutex<HashMap<TenantName, Queue>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Applier")
            .field("tenants", &queues.len())
            .field(
                "pending",
                &queues.values().map(|q| q.pending.len()).sum::<usize>(),
            )
            .finish()
    }
}

impl Applier {
    /// Queues `change` of `tenant`, starting a drain if none runs, and returns where the
    /// engine's answer comes.
    pub fn submit(
        self: &Arc<Self>,
        engine: &Arc<Engine>,
        tenant: &TenantName,
        change: ChangeId,
        apply: Apply,
    ) -> Outcome {
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let queue = queues.entry(tenant.clone()).or_default();
            queue
                .pending
                .entry((change.stamp, change.lineage))
                .or_insert_with(|| Own {
                    change,
                    apply,
                    done: Vec::new(),
                })
                .done
                .push(done);
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            self.spawn_drain(engine, tenant);
        }
        outcome
    }

    /// Whether `change` of `tenant` is queued (its write, or the feed, will see it applied).
    pub fn holds(&self, tenant: &TenantName, change: ChangeId) -> bool {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .get(tenant)
            .is_some_and(|queue| queue.pending.contains_key(&(change.stamp, change.lineage)))
    }

    /// Takes `change` back if no drain has taken it yet: true when it was still waiting (its
    /// waiters then reload the tenant instead), false when it is being applied or was.
    pub fn withdraw(&self, tenant: &TenantName, change: ChangeId) -> bool {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.get_mut(tenant).is_some_and(|queue| {
            queue
                .pending
                .remove(&(change.stamp, change.lineage))
                .is_some()
        })
    }

    /// Changes reached `tenant` another way (the feed, a reload): the queued changes whose turn
    /// came are applied.
    pub fn kick(self: &Arc<Self>, engine: &Arc<Engine>, tenant: &TenantName) {
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            queues.get_mut(tenant).is_some_and(|queue| {
                !queue.pending.is_empty() && !std::mem::replace(&mut queue.draining, true)
            })
        };
        if start {
            self.spawn_drain(engine, tenant);
        }
    }

    /// [`Applier::kick`] for every tenant with changes queued (after a reload of everything).
    pub fn kick_all(self: &Arc<Self>, engine: &Arc<Engine>) {
        let tenants: Vec<TenantName> = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for tenant in &tenants {
            self.kick(engine, tenant);
        }
    }

    fn spawn_drain(self: &Arc<Self>, engine: &Arc<Engine>, tenant: &TenantName) {
        let (this, engine, tenant) = (Arc::clone(self), Arc::clone(engine), tenant.clone());
        tokio::task::spawn_blocking(move || this.drain(&engine, &tenant));
    }

    /// Applies the tenant's queued changes whose turn has come, until none has.
    fn drain(&self, engine: &Engine, tenant: &TenantName) {
        loop {
            let ready = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(queue) = queues.get_mut(tenant) else {
                    return;
                };
                let ready = take_ready(engine, tenant, &mut queue.pending);
                if ready.is_empty() {
                    queue.draining = false;
                    if queue.pending.is_empty() {
                        queues.remove(tenant);
                    }
                    return;
                }
                ready
            };
            for own in ready {
                let Own { apply, done, .. } = own;
                match std::panic::catch_unwind(AssertUnwindSafe(|| apply(engine, tenant))) {
                    Ok(result) => {
                        for done in done {
                            let _ = done.send(result.clone());
                        }
                    }
                    // The write reloads the tenant from storage, which holds its change.
                    Err(_) => tracing::error!(%tenant, "applying a change panicked"),
                }
            }
        }
    }
}

/// The queued changes whose turn has come, in stamp order: the engine's next stamp and those
/// after it without a gap, any the engine has already (it says so and changes nothing), and
/// changes of another incarnation of the tenant, or of a tenant the engine no longer has
/// (the engine refuses them, and their writes say why).
fn take_ready(
    engine: &Engine,
    tenant: &TenantName,
    pending: &mut BTreeMap<(Stamp, Lineage), Own>,
) -> Vec<Own> {
    let served = engine.lineage(tenant).ok().zip(engine.applied(tenant).ok());
    let mut next = served.map(|(_, applied)| applied.next());
    let mut keys = Vec::new();
    for (key, own) in pending.iter() {
        let ready = match (served, next.as_mut()) {
            (Some((lineage, _)), Some(next)) if own.change.lineage == lineage => {
                if own.change.stamp == *next {
                    *next = next.next();
                }
                own.change.stamp < *next
            }
            _ => true,
        };
        if ready {
            keys.push(*key);
        }
    }
    keys.iter().filter_map(|key| pending.remove(key)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use reco_engine::{
        ChangeId, CheckedEntities, Engine, EngineConfig, EntityId, Lineage, Metric, NewEntity,
        Stamp, TenantName, TenantSpec,
    };

    use super::Applier;

    fn setup() -> (Arc<Engine>, TenantName, TenantSpec) {
        let engine = Arc::new(Engine::new(EngineConfig::default()).unwrap());
        let tenant = TenantName::parse("queued").unwrap();
        let spec = TenantSpec::new(2, Metric::Dot).unwrap();
        engine
            .create_tenant_at(tenant.clone(), spec, Lineage::new(3), Stamp::ZERO)
            .unwrap();
        (engine, tenant, spec)
    }

    /// Change `n` writes entity `e` with the vector `[n, 0]`, so the last writer shows.
    fn write(
        applier: &Arc<Applier>,
        engine: &Arc<Engine>,
        t: &TenantName,
        spec: TenantSpec,
        n: u64,
    ) -> super::Outcome {
        let batch = CheckedEntities::new(
            spec,
            vec![NewEntity {
                id: EntityId::parse("e").unwrap(),
                vector: vec![n as f32, 0.0],
                category: None,
                tags: Vec::new(),
                attributes: None,
            }],
        )
        .unwrap();
        let change = ChangeId::new(Lineage::new(3), Stamp::new(n));
        applier.submit(
            engine,
            t,
            change,
            Box::new(move |engine, tenant| engine.upsert_at(tenant, change, batch).map(drop)),
        )
    }

    #[tokio::test]
    async fn changes_submitted_out_of_order_reach_the_engine_in_stamp_order() {
        let (engine, t, spec) = setup();
        let applier = Arc::new(Applier::default());
        let third = write(&applier, &engine, &t, spec, 3);
        let second = write(&applier, &engine, &t, spec, 2);
        // Neither can be applied before change 1.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(engine.applied(&t).unwrap(), Stamp::ZERO);
        let first = write(&applier, &engine, &t, spec, 1);
        for outcome in [first, second, third] {
            outcome.await.unwrap().unwrap();
        }
        assert_eq!(engine.applied(&t).unwrap(), Stamp::new(3));
        let (page, _) = engine.entities(&t, None, 10).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].vector, vec![3.0, 0.0]);
        // The queue is gone once drained (the drain answers each change, then looks again).
        let drained = async {
            while !applier.queues.lock().unwrap().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("the drain ends and forgets the tenant");
    }

    #[tokio::test]
    async fn a_change_whose_turn_never_comes_can_be_withdrawn_once() {
        let (engine, t, spec) = setup();
        let applier = Arc::new(Applier::default());
        let _late = write(&applier, &engine, &t, spec, 2);
        let change = ChangeId::new(Lineage::new(3), Stamp::new(2));
        assert!(applier.withdraw(&t, change));
        assert!(!applier.withdraw(&t, change));
        // Change 1 applies alone: nothing waits behind it any more.
        write(&applier, &engine, &t, spec, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(engine.applied(&t).unwrap(), Stamp::new(1));
    }
}
