//! Tenant images in the data folder: written at shutdown and every `image_interval` (the
//! tenants that changed since their last image), read at start in place of storage's rows and
//! the graph's build (see `sync::load_tenant`). An image is used only when it is of the
//! tenant's incarnation and of the version storage holds, or behind it on PostgreSQL, which
//! then says what changed since; any other is ignored with a warning and the tenant loads from
//! storage, so an image never makes an answer wrong. A tenant loaded from a current image is
//! not written again at the next stop unless it changes.

use std::time::{Duration, Instant};

use reco_engine::{TenantImage, TenantName};
use reco_storage::{ImageFiles, StorageError};

use crate::state::AppState;

/// Writes the image of every tenant whose incarnation or stamp changed since its last image,
/// one tenant at a time on the blocking pool; returns how many were written. A tenant that
/// fails is logged and left for the next time.
pub async fn write_changed(state: &AppState) -> usize {
    let Some(files) = state.images.clone() else {
        return 0;
    };
    let started = Instant::now();
    let mut written = 0;
    let mut bytes = 0;
    for tenant in state.engine.tenants() {
        let (Ok(lineage), Ok(stamp)) =
            (state.engine.lineage(&tenant), state.engine.applied(&tenant))
        else {
            continue;
        };
        let unchanged = state
            .imaged
            .lock()
            .expect("never poisoned")
            .get(&tenant)
            .is_some_and(|kept| *kept == (lineage, stamp));
        if unchanged {
            continue;
        }
        let engine = state.engine.clone();
        let files = files.clone();
        let name = tenant.clone();
        let result = tokio::task::spawn_blocking(move || {
            let image = engine
                .image(&name)
                .map_err(|e| StorageError::Image(e.to_string()))?;
            let kept = (image.lineage, image.stamp);
            files.write(&image).map(|size| (kept, size))
        })
        .await;
        match result {
            Ok(Ok((kept, size))) => {
                state
                    .imaged
                    .lock()
                    .expect("never poisoned")
                    .insert(tenant, kept);
                written += 1;
                bytes += size;
            }
            Ok(Err(e)) => tracing::warn!(%tenant, error = %e, "the tenant's image was not written"),
            Err(e) => tracing::warn!(%tenant, error = %e, "writing the tenant's image failed"),
        }
    }
    if written > 0 {
        tracing::info!(
            tenants = written,
            bytes,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            dir = %files.dir().display(),
            "tenant images written"
        );
    }
    written
}

/// Writes the images of changed tenants every `interval` once the service is ready, for ever.
pub async fn keep_writing(state: actix_web::web::Data<AppState>, interval: Duration) {
    if state.images.is_none() || interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if state.is_ready() {
            write_changed(&state).await;
        }
    }
}

/// A tenant's image, if there is a readable one; an unreadable file is logged and ignored.
pub async fn read(state: &AppState, tenant: &TenantName) -> Option<TenantImage> {
    let files: ImageFiles = state.images.clone()?;
    let name = tenant.clone();
    match tokio::task::spawn_blocking(move || files.read(&name)).await {
        Ok(Ok(image)) => image,
        Ok(Err(e)) => {
            tracing::warn!(%tenant, error = %e, "the tenant's image is ignored; loading from storage");
            None
        }
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "reading the tenant's image failed");
            None
        }
    }
}

/// Forgets a deleted tenant's image, file and all.
pub async fn remove(state: &AppState, tenant: &TenantName) {
    state.imaged.lock().expect("never poisoned").remove(tenant);
    let Some(files) = state.images.clone() else {
        return;
    };
    let name = tenant.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || files.remove(&name)).await {
        tracing::warn!(%tenant, error = %e, "the deleted tenant's image could not be removed");
    }
}
