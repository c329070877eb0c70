//! Entities: written in checked batches, listed a page at a time, read and deleted one by one.

use actix_web::{HttpResponse, web};
use reco_engine::EntityId;

use super::{Data, committed};
use crate::admission::{Admitted, Refusals};
use crate::api::{EntitiesBody, EntityOut, EntityPage, ErrorBody, ListParams, Upserted};
use crate::error::ApiError;
use crate::sync;

#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), request_body = EntitiesBody, responses((status = 200, description = "All written", body = Upserted), (status = 413, description = "Body too large"), Refusals))]
pub async fn put_entities(
    state: Data,
    admitted: Admitted,
    body: web::Json<EntitiesBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    // Checked once, here: storage writes the checked batch and the engine applies it as is.
    let batch = state
        .engine
        .check_entities(&tenant, body.into_inner().into_entities()?)?;
    let upserted = batch.len();
    committed(&state, move |state| async move {
        let change = state.store.upsert_entities(&tenant, &batch).await?;
        sync::apply_in_turn(&state, &tenant, change, move |engine, tenant| {
            engine.upsert_at(tenant, change, batch).map(drop)
        })
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(Upserted { upserted }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), ListParams), responses((status = 200, description = "A page of entities in id order (by bytes)", body = EntityPage), Refusals))]
pub async fn list_entities(
    state: Data,
    admitted: Admitted,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = query.page()?;
    let (page, more) = state
        .engine
        .entities(&admitted.tenant, after.as_ref(), limit)?;
    let next = more
        .then(|| page.last().map(|e| e.id.to_string()))
        .flatten();
    let vectors = query.vectors.unwrap_or(false);
    let entities = page
        .into_iter()
        .map(|mut e| {
            if !vectors {
                e.vector = Vec::new();
            }
            EntityOut::from(e)
        })
        .collect();
    Ok(HttpResponse::Ok().json(EntityPage { entities, next }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{id}", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), ("id" = String, Path, description = "The entity id")), responses((status = 200, description = "The entity as stored", body = EntityOut), (status = 404, description = "No such entity", body = ErrorBody), Refusals))]
pub async fn get_entity(
    state: Data,
    admitted: Admitted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let (_, id) = path.into_inner();
    let id = EntityId::parse(&id)?;
    Ok(HttpResponse::Ok().json(EntityOut::from(state.engine.get(&tenant, &id)?)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/entities/{id}", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), ("id" = String, Path, description = "The entity id")), responses((status = 204, description = "Deleted"), (status = 404, description = "No such entity", body = ErrorBody), Refusals))]
pub async fn delete_entity(
    state: Data,
    admitted: Admitted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let (_, id) = path.into_inner();
    let id = EntityId::parse(&id)?;
    state.engine.tenant_info(&tenant)?;
    committed(&state, move |state| async move {
        let Some(change) = state.store.delete_entity(&tenant, &id).await? else {
            return Err(ApiError::NotFound(format!("entity `{id}` does not exist")));
        };
        sync::apply_in_turn(&state, &tenant, change, move |engine, tenant| {
            engine.delete_at(tenant, change, &id).map(drop)
        })
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
