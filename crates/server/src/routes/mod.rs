//! The handlers of `../shared/API.md`, one module per resource: `tenants`, `entities`,
//! `interactions`, `recommendations` and `model`. Every one of them is reached only through admission
//! (`crate::admission`), which has authenticated the request and charged its tenant's budget.
//!
//! Writes go to storage first and to the engine after the commit, so what the engine serves was
//! acknowledged durable; a refused write changes neither. Reads never touch storage (except in
//! the `database` ranking mode, which exists to measure the reference design).

pub mod entities;
pub mod interactions;
pub mod model;
pub mod recommendations;
pub mod tenants;

use std::future::Future;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, web};
use reco_engine::{Answer, CacheStatus};

use crate::error::ApiError;
use crate::state::AppState;

type Data = web::Data<AppState>;

/// Adds `X-Cache`: `hit` when the answer came from either cache.
fn cached(answer: &Answer, mut response: HttpResponse) -> HttpResponse {
    let value = match answer.cache {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
    };
    response.headers_mut().insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(value),
    );
    response
}

/// Runs a write, from storage to the engine, to its end on a task of its own on the writer
/// runtime (see `AppState::writer`): a client that hangs up cannot cut it between the commit
/// and the engine, and its round trips to storage do not wait behind the reads an HTTP worker
/// has queued.
pub(crate) async fn committed<F, Fut, T>(state: &Data, write: F) -> Result<T, ApiError>
where
    F: FnOnce(Data) -> Fut + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    // Cheap questions asked of this worker meanwhile hop to the rankers (see `WriteWaiting`).
    let _waiting = crate::rankers::WriteWaiting::begin();
    state
        .writer
        .spawn(write(state.clone()))
        .await
        .map_err(|e| ApiError::Internal(format!("a write task failed: {e}")))?
}
