//! The collaborative model: its status, and a training started now, in the background.

use actix_web::HttpResponse;
use reco_engine::LearnParams;

use super::Data;
use crate::admission::{Admitted, Refusals};
use crate::api::ModelStatus;
use crate::error::ApiError;
use crate::state::Training;

/// The status to show: the served model and the training state, `None` when neither exists.
fn status(state: &Data, tenant: &reco_engine::TenantName) -> Result<Option<ModelStatus>, ApiError> {
    let model = state.engine.model_info(tenant)?;
    let trainings = state
        .trainings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let training = trainings.get(tenant);
    Ok((model.is_some() || training.is_some()).then(|| ModelStatus::new(model.as_ref(), training)))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/model", tag = "model", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), responses((status = 200, description = "The collaborative model's status", body = ModelStatus), (status = 404, description = "No model yet, and no training"), Refusals))]
pub async fn get_model(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    match status(&state, &admitted.tenant)? {
        Some(status) => Ok(HttpResponse::Ok().json(status)),
        None => Err(ApiError::NotFound(format!(
            "tenant `{}` has no collaborative model yet",
            admitted.tenant
        ))),
    }
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/model/train", tag = "model", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), responses((status = 202, description = "A training runs (started now, or already running)", body = ModelStatus), (status = 404, description = "No such tenant"), Refusals))]
pub async fn train_model(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    state.engine.tenant_info(&tenant)?;
    let start = {
        let mut trainings = state
            .trainings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = trainings.get(&tenant) == Some(&Training::Running);
        if !running {
            trainings.insert(tenant.clone(), Training::Running);
        }
        !running
    };
    if start {
        // The training computes for as long as it takes, on the blocking pool and its own
        // threads: never on a request's path.
        let (worker, name) = (state.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = worker
                .engine
                .train_collaborative(&name, &LearnParams::default());
            let mut trainings = worker
                .trainings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match outcome {
                Ok(info) => {
                    trainings.remove(&name);
                    tracing::info!(tenant = %name, version = info.version, seconds = info.seconds, "collaborative model trained");
                }
                Err(e) => {
                    tracing::warn!(tenant = %name, error = %e, "collaborative training failed");
                    trainings.insert(name, Training::Failed(e.to_string()));
                }
            }
        });
    }
    let status = status(&state, &tenant)?
        .unwrap_or_else(|| ModelStatus::new(None, Some(&Training::Running)));
    Ok(HttpResponse::Accepted().json(status))
}
