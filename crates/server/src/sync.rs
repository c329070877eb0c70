//! Keeping the engine in step with storage: the warm-up at start, and the change feed after it.

use std::time::{Duration, Instant};

use actix_web::web;
use reco_engine::EngineError;
use reco_storage::{Change, PgStore, StorageError, Store};

use crate::startup::progress_bar;
use crate::state::AppState;

/// Why a change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The engine refused what storage held.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Loads every tenant (retrying until storage answers), marks the service ready, then applies
/// other servers' changes as they come.
pub async fn warm_up_then_follow(state: web::Data<AppState>) {
    let mut delay = Duration::from_millis(200);
    while let Err(e) = load_all(&state).await {
        tracing::warn!(error = %e, "loading the indexes failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    state.set_ready();
    if let Store::Postgres(pg) = &state.store {
        follow(&state, pg).await;
    }
}

/// Replaces the engine's tenants with what storage holds: entities, and interactions within
/// the history window.
async fn load_all(state: &AppState) -> Result<(), SyncError> {
    let started = Instant::now();
    let since =
        state.engine.now() - i64::try_from(state.settings.history.as_millis()).unwrap_or(i64::MAX);
    let tenants = state.store.tenants().await?;
    let bar = progress_bar();
    let (mut entities, mut interactions) = (0, 0);
    for (name, spec) in &tenants {
        // A reload starts from nothing, so interactions are never counted twice.
        let _ = state.engine.drop_tenant(name);
        state.engine.create_tenant(name.clone(), *spec)?;
        let engine = &state.engine;
        let loaded = state
            .store
            .load_tenant(
                name,
                since,
                5_000,
                &bar,
                |batch| {
                    engine
                        .upsert(name, batch)
                        .map(drop)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))
                },
                |batch| {
                    engine
                        .record(name, batch)
                        .map(drop)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))
                },
            )
            .await?;
        entities += loaded.entities;
        interactions += loaded.interactions;
    }
    bar.finish_and_clear();
    tracing::info!(
        tenants = tenants.len(),
        entities,
        interactions,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "indexes loaded"
    );
    Ok(())
}

/// Applies other servers' changes for as long as the process runs, resubscribing (and
/// reloading, since notices may have been missed) when the feed breaks.
async fn follow(state: &AppState, pg: &PgStore) {
    loop {
        let mut feed = match state.store.subscribe().await {
            Ok(Some(feed)) => feed,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to the change feed failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match feed.next().await {
                Ok(Change::Resync) => {
                    tracing::warn!("the change feed lost notices; reloading");
                    resync(state).await;
                }
                Ok(change) => {
                    if let Err(e) = apply(state, pg, change.clone()).await {
                        tracing::warn!(error = %e, ?change, "a change could not be applied");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the change feed broke; reloading");
                    resync(state).await;
                    break;
                }
            }
        }
    }
}

async fn resync(state: &AppState) {
    while let Err(e) = load_all(state).await {
        tracing::warn!(error = %e, "reloading failed; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn apply(state: &AppState, pg: &PgStore, change: Change) -> Result<(), SyncError> {
    let engine = &state.engine;
    match change {
        Change::TenantCreated(tenant) => {
            if let Some(spec) = state.store.tenant(&tenant).await? {
                engine.create_tenant(tenant, spec)?;
            }
        }
        Change::TenantDeleted(tenant) => {
            let _ = engine.drop_tenant(&tenant);
            state.forget_keys();
        }
        Change::Entities { tenant, batch } => {
            let rows = pg.entities_in_batch(&tenant, batch).await?;
            if !rows.is_empty() {
                engine.upsert(&tenant, rows)?;
            }
        }
        Change::EntityDeleted { tenant, id } => {
            engine.delete(&tenant, &id)?;
        }
        Change::Interactions { tenant, batch } => {
            let rows = pg.interactions_in_batch(&tenant, batch).await?;
            engine.record(&tenant, rows)?;
        }
        Change::Resync => resync(state).await,
    }
    Ok(())
}
