//! Interactions: recorded in checked batches, durable when acknowledged.

use actix_web::{HttpResponse, web};
use reco_engine::CheckedInteractions;

use super::{Data, committed, model};
use crate::admission::{Admitted, Refusals};
use crate::api::{Accepted, InteractionsBody};
use crate::error::ApiError;
use crate::sync;

#[utoipa::path(post, path = "/v1/tenants/{tenant}/interactions", tag = "interactions", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), request_body = InteractionsBody, responses((status = 200, description = "Durable", body = Accepted), (status = 503, description = "Storage is down; retry"), Refusals))]
pub async fn post_interactions(
    state: Data,
    admitted: Admitted,
    body: web::Json<InteractionsBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    state.engine.tenant_info(&tenant)?;
    let now = state.engine.now();
    let (interactions, ids) = body.into_inner().into_interactions(now)?;
    let mut batch = CheckedInteractions::new_at(interactions, now)?;
    let accepted = batch.len();
    let duplicates = committed(&state, move |state| async move {
        let empty = batch.is_empty();
        let recorded = state
            .store
            .record_interactions(&tenant, batch.clone(), ids)
            .await?;
        // An empty batch is no change: its "stamp" is the tenant's current version. A batch
        // of duplicates alone is a change with nothing in it, applied all the same, since
        // every server applies each stamp of a tenant in order.
        if !empty {
            let change = recorded.change;
            batch.retain(&recorded.fresh);
            sync::apply_in_turn(&state, &tenant, change, move |engine, tenant| {
                engine.record_at(tenant, change, batch).map(drop)
            })
            .await?;
            model::train_if_due(&state, &tenant);
        }
        Ok(recorded.duplicates())
    })
    .await?;
    Ok(HttpResponse::Ok().json(Accepted {
        accepted,
        duplicates,
    }))
}
