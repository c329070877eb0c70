//! A tenant: made (or found), read, deleted, and its keys.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use rand::RngCore;
use reco_engine::{Created, Stamp, TenantName};

use super::{Data, model};
use crate::admission::{Admitted, Refusals};
use crate::api::{
    ErrorBody, KeyView, SearchView, TenantBody, TenantList, TenantSettings, TenantView,
};
use crate::error::ApiError;
use crate::state::{Access, hash_key};
use crate::sync;

#[utoipa::path(put, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), request_body = TenantBody, responses((status = 201, description = "Made", body = TenantView), (status = 200, description = "Exists with these settings", body = TenantView), (status = 409, description = "Exists with other settings", body = ErrorBody), Refusals))]
pub async fn put_tenant(
    state: Data,
    admitted: Admitted,
    body: web::Json<TenantBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let TenantSettings {
        spec,
        learning,
        rate_limit,
    } = body.settings()?;
    let (created, lineage) = state
        .store
        .create_tenant_with(&tenant, spec, &learning, rate_limit)
        .await?;
    state.set_rate_limit(&tenant, rate_limit);
    // The engine may know it already (made by another server, heard through the feed); when it
    // knows another incarnation, storage's is loaded in its place.
    let known = state.engine.lineage(&tenant).ok();
    if known != Some(lineage) {
        match created {
            Created::Created if known.is_none() => {
                state
                    .engine
                    .create_tenant_at(tenant.clone(), spec, lineage, Stamp::ZERO)?;
                state.engine.set_learning(&tenant, learning)?;
            }
            Created::Created | Created::Existed => sync::reload_tenant(&state, &tenant).await?,
        }
    }
    let view = view(&state, &tenant)?;
    Ok(match created {
        Created::Created => HttpResponse::Created().json(view),
        Created::Existed => HttpResponse::Ok().json(view),
    })
}

/// A tenant as the API shows it, with its model's status.
pub(crate) fn view(state: &Data, tenant: &TenantName) -> Result<TenantView, ApiError> {
    let estimate = state
        .engine
        .recall_estimate(tenant, state.settings.recall_target)?;
    let search = state
        .engine
        .search_breadth(tenant)?
        .map(|breadth| SearchView {
            breadth,
            recall: estimate.map(|e| e.recall),
            samples: estimate.map(|e| e.samples),
        });
    Ok(TenantView::new(
        &state.engine.tenant_info(tenant)?,
        state.engine.lineage(tenant)?,
        model::status(state, tenant)?,
        state.own_rate_limit(tenant),
        search,
    ))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, description = "Every tenant by name (the admin key), or the key's own tenant", body = TenantList), (status = 401, description = "No valid key", body = ErrorBody), (status = 429, description = "Over the budget (a tenant key), or too many unknown keys from this address", body = ErrorBody), (status = 503, description = "Loading", body = ErrorBody)))]
pub async fn list_tenants(state: Data, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = req.peer_addr().map(|a| a.ip());
    let (access, budget) = state.admit_listing(authorization, peer).await?;
    let names = match access {
        Access::Admin => state.engine.tenants(),
        Access::Tenant(own) => vec![own],
    };
    // A tenant dropped between the names and its view is left out.
    let tenants = names
        .iter()
        .filter_map(|name| view(&state, name).ok())
        .collect();
    let mut response = HttpResponse::Ok().json(TenantList { tenants });
    if let Some(budget) = budget {
        crate::admission::headers(response.headers_mut(), budget);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 200, description = "The tenant", body = TenantView), (status = 404, description = "No such tenant", body = ErrorBody), Refusals))]
pub async fn get_tenant(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(&state, &admitted.tenant)?))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 204, description = "Gone, with all its data"), (status = 404, description = "No such tenant", body = ErrorBody), Refusals))]
pub async fn delete_tenant(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    if !state.store.delete_tenant(&tenant).await? {
        return Err(ApiError::NotFound(format!(
            "tenant `{tenant}` does not exist"
        )));
    }
    // Gone from storage; the engine may already have dropped it on another path. Marked
    // first, so that a load of it running now cannot bring it back.
    if let Ok(lineage) = state.engine.lineage(&tenant) {
        state.mark_deleted(&tenant, lineage);
    }
    let _ = state.engine.drop_tenant(&tenant);
    crate::images::remove(&state, &tenant).await;
    state.forget_keys();
    state.set_rate_limit(&tenant, None);
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), responses((status = 201, description = "A new key, shown once", body = KeyView), (status = 404, description = "No such tenant", body = ErrorBody), Refusals))]
pub async fn create_key(state: Data, admitted: Admitted) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let key = format!(
        "reco_{}",
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let hash = hash_key(&key);
    state.store.add_api_key(&tenant, hash).await?;
    state.remember_key(hash, tenant);
    Ok(HttpResponse::Created().json(KeyView { key }))
}
