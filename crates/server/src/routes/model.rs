//! The collaborative model: its status, a training started now, in the background, and an
//! offline evaluation of the tenant's strategies (see `crate::evaluation`).

use actix_web::HttpResponse;
use reco_engine::{LearnParams, ModelInfo};

use super::Data;
use crate::admission::{Admitted, Refusals};
use crate::api::{ErrorBody, EvaluationStatus, ModelStatus};
use crate::error::ApiError;
use crate::state::{AutoTraining, Training};
use crate::sync::{self, SyncError};

/// Interactions still to arrive before a training starts by itself, counted from the served
/// model's training (or from none); `None` when trainings start only when asked.
fn until_training(
    state: &Data,
    tenant: &reco_engine::TenantName,
    model: Option<&ModelInfo>,
) -> Result<Option<u64>, ApiError> {
    let every = state.settings.train_after;
    let info = state.engine.tenant_info(tenant)?;
    if every == 0 || !info.learning.enabled {
        return Ok(None);
    }
    let recorded = info.interactions;
    let since = model.map_or(0, |m| m.recorded);
    Ok(Some(every.saturating_sub(recorded.saturating_sub(since))))
}

/// The status to show: the served model and the training state, `None` when neither exists.
pub(crate) fn status(
    state: &Data,
    tenant: &reco_engine::TenantName,
) -> Result<Option<ModelStatus>, ApiError> {
    let model = state.engine.model_info(tenant)?;
    let trainings = state
        .trainings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let training = trainings.get(tenant);
    let next = until_training(state, tenant, model.as_ref())?;
    Ok((model.is_some() || training.is_some())
        .then(|| ModelStatus::new(model.as_ref(), training, next)))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/model", tag = "model", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 200, description = "The collaborative model's status", body = ModelStatus), (status = 404, description = "No model yet, and no training", body = ErrorBody), Refusals))]
pub async fn get_model(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    match status(&state, &admitted.tenant)? {
        Some(status) => Ok(HttpResponse::Ok().json(status)),
        None => Err(ApiError::NotFound(format!(
            "tenant `{}` has no collaborative model yet",
            admitted.tenant
        ))),
    }
}

/// Starts a training of `tenant`'s model in the background unless one runs here; true when it
/// started one.
pub(crate) fn start_training(state: &Data, tenant: &reco_engine::TenantName) -> bool {
    {
        let mut trainings = state
            .trainings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if trainings.get(tenant) == Some(&Training::Running) {
            return false;
        }
        trainings.insert(tenant.clone(), Training::Running);
    }
    let (worker, name) = (state.clone(), tenant.clone());
    tokio::spawn(async move {
        let outcome = train(&worker, &name).await;
        let mut trainings = worker
            .trainings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(Some(info)) => {
                trainings.remove(&name);
                tracing::info!(tenant = %name, version = info.version, seconds = info.seconds, "collaborative model trained");
            }
            Ok(None) => {
                trainings.remove(&name);
                tracing::info!(tenant = %name, "another server trains this tenant's model; its model will be loaded when kept");
            }
            Err(e) => {
                tracing::warn!(tenant = %name, error = %e, "collaborative training failed");
                trainings.insert(name, Training::Failed(e.to_string()));
            }
        }
    });
    true
}

/// One training: under the tenant's training lock (servers sharing PostgreSQL train a tenant
/// one at a time; `None` when another holds it), after loading any newer model another server
/// kept (so versions follow each other), computed at the background priority on a thread of
/// its own and the learner's threads (see `crate::background`), never on a request's path, and then kept in storage, which tells the other servers.
async fn train(
    state: &Data,
    tenant: &reco_engine::TenantName,
) -> Result<Option<ModelInfo>, SyncError> {
    let Some(lock) = state.store.training_lock(tenant).await? else {
        return Ok(None);
    };
    sync::load_model(state, tenant).await?;
    // The tenant's parameters, on every core of this machine.
    let params = LearnParams {
        threads: LearnParams::default().threads,
        ..state.engine.tenant_info(tenant)?.learning.params
    };
    let (engine, name) = (state.engine.clone(), tenant.clone());
    let info = crate::background::run("reco-train", move || {
        engine.train_collaborative(&name, &params)
    })
    .await?;
    if let Some(parts) = state.engine.model_parts(tenant)?
        && parts.info.version == info.version
    {
        state.store.save_model(tenant, &parts).await?;
    }
    drop(lock);
    Ok(Some(info))
}

/// Whether `tenant` is due a training by itself: `train_after` interactions arrived since the
/// last one (or since none), and no training runs or failed last (a failed one is retried only
/// when asked).
fn is_due(state: &Data, tenant: &reco_engine::TenantName) -> bool {
    let Ok(model) = state.engine.model_info(tenant) else {
        return false;
    };
    if !matches!(until_training(state, tenant, model.as_ref()), Ok(Some(0))) {
        return false;
    }
    state
        .trainings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(tenant)
        .is_none()
}

/// After interactions were recorded: starts a training when one is due, at most once per
/// `train_interval` from the start of the last one the interactions started. One due sooner
/// starts when the interval has passed, whether or not more interactions come: a stream of
/// interactions then retrains a tenant once per interval, not after every `train_after` of
/// them, which on a busy shop kept a training running all the time.
pub(crate) fn train_if_due(state: &Data, tenant: &reco_engine::TenantName) {
    if !is_due(state, tenant) {
        return;
    }
    let now = tokio::time::Instant::now();
    let at = {
        let mut autos = state
            .auto_trainings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match autos.get_mut(tenant) {
            Some(last) if last.waiting => return,
            Some(last) if now < last.started + state.settings.train_interval => {
                last.waiting = true;
                last.started + state.settings.train_interval
            }
            Some(_) | None => {
                autos.insert(
                    tenant.clone(),
                    AutoTraining {
                        started: now,
                        waiting: false,
                    },
                );
                drop(autos);
                start_training(state, tenant);
                return;
            }
        }
    };
    let (state, tenant) = (state.clone(), tenant.clone());
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let due = is_due(&state, &tenant);
        let mut autos = state
            .auto_trainings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due {
            autos.insert(
                tenant.clone(),
                AutoTraining {
                    started: tokio::time::Instant::now(),
                    waiting: false,
                },
            );
            drop(autos);
            start_training(&state, &tenant);
        } else if let Some(last) = autos.get_mut(&tenant) {
            last.waiting = false;
        }
    });
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/model/train", tag = "model", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 202, description = "A training runs (started now, or already running)", body = ModelStatus), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "The tenant's collaborative learning is off", body = ErrorBody), Refusals))]
pub async fn train_model(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    if !state.engine.tenant_info(&tenant)?.learning.enabled {
        return Err(ApiError::Conflict(format!(
            "tenant `{tenant}` was made with collaborative learning off (\"collaborative\": {{\"enabled\": false}})"
        )));
    }
    start_training(&state, &tenant);
    let status = status(&state, &tenant)?
        .unwrap_or_else(|| ModelStatus::new(None, Some(&Training::Running), None));
    Ok(HttpResponse::Accepted().json(status))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/model/evaluation", tag = "model", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 202, description = "An evaluation runs (started now, or already running): each user's last like or purchase is held out, and every strategy the data allows ranks for them", body = EvaluationStatus), (status = 404, description = "No such tenant", body = ErrorBody), Refusals))]
pub async fn start_evaluation(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    let status = crate::evaluation::start(&state, &admitted.tenant)?;
    Ok(HttpResponse::Accepted().json(status))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/model/evaluation", tag = "model", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 200, description = "The tenant's last evaluation on this server: running, or its report", body = EvaluationStatus), (status = 404, description = "No evaluation of this tenant has run on this server", body = ErrorBody), Refusals))]
pub async fn get_evaluation(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    match crate::evaluation::status(&state, &admitted.tenant)? {
        Some(status) => Ok(HttpResponse::Ok().json(status)),
        None => Err(ApiError::NotFound(format!(
            "no evaluation of tenant `{}` has run on this server (POST starts one)",
            admitted.tenant
        ))),
    }
}
