//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::http::header::{AUTHORIZATION, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::{Access, AppState};

/// `200` while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "live" }))
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    indexes: &'static str,
    storage: &'static str,
    redis: &'static str,
}

/// `200` once the indexes are loaded and storage answers; `503` otherwise. Redis is reported
/// but does not make the service unready: without it, reco serves from memory.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses((status = 200, description = "Ready, with the state of each part"), (status = 503, description = "Loading, or storage is down")))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let indexes = if state.is_ready() {
        "loaded"
    } else {
        "loading"
    };
    let storage = match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => "up",
        Ok(Err(_)) | Err(_) => "down",
    };
    let redis = match &state.redis {
        None => "off",
        Some(redis) => match redis.ping().await {
            Ok(()) => "up",
            Err(_) => "down",
        },
    };
    let ready = indexes == "loaded" && storage == "up";
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        indexes,
        storage,
        redis,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text, for callers on loopback or with the admin key.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text"), (status = 403, description = "Off loopback without the admin key")))]
pub async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let local = req
        .peer_addr()
        .is_some_and(|a| crate::state::is_loopback(a.ip()));
    if !local {
        let authorization = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if state
            .access(authorization, req.peer_addr().map(|a| a.ip()))
            .await?
            != Access::Admin
        {
            return Err(ApiError::Forbidden(
                "metrics need the admin key off loopback",
            ));
        }
    }
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(
            state
                .metrics
                .render(&state.engine, &state.store, state.settings.recall_target),
        ))
}
