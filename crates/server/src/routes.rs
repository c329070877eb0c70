//! The handlers of `../shared/API.md`.
//!
//! Writes go to storage first and to the engine after the commit, so what the engine serves was
//! acknowledged durable; a refused write changes neither. Reads never touch storage (except in
//! the `database` ranking mode, which exists to measure the reference design).

use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use rand::RngCore;
use reco_engine::{
    Answer, CacheStatus, CheckedInteractions, Created, EntityId, Stamp, Strategy, TenantName,
    TenantSpec, TrendingQuery, UserId, Window,
};
use reco_storage::DbSearch;

use crate::answers;
use crate::api::{
    Accepted, BatchBody, BatchItem, BatchOut, EntitiesBody, EntityOut, ErrorOut, InteractionsBody,
    KeyView, RecommendBody, RecommendOut, Results, SearchQuery, TenantBody, TenantView,
    TrendingParams, Upserted, UserResults, batch_limit_check, metric,
};
use crate::error::ApiError;
use crate::settings::RankingMode;
use crate::state::{AppState, Budget, hash_key};
use crate::sync;

type Data = web::Data<AppState>;

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn tenant_name(name: &str) -> Result<TenantName, ApiError> {
    TenantName::parse(name).map_err(ApiError::from)
}

/// Admits the request for `tenant` and remembers its budget for the response headers.
async fn admit(
    state: &AppState,
    req: &HttpRequest,
    tenant: &TenantName,
    admin_only: bool,
) -> Result<(), ApiError> {
    let budget = state.admit(authorization(req), tenant, admin_only).await?;
    req.extensions_mut().insert(budget);
    Ok(())
}

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

#[utoipa::path(put, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), request_body = TenantBody, responses((status = 201, description = "Made", body = TenantView), (status = 200, description = "Exists with these settings", body = TenantView), (status = 409, description = "Exists with other settings"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn put_tenant(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<TenantBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, true).await?;
    let spec = TenantSpec::new(body.dimension, metric(&body.metric)?)?;
    let (created, lineage) = state.store.create_tenant(&tenant, spec).await?;
    // The engine may know it already (made by another server, heard through the feed); when it
    // knows another incarnation, storage's is loaded in its place.
    let known = state.engine.lineage(&tenant).ok();
    if known != Some(lineage) {
        match created {
            Created::Created if known.is_none() => {
                state
                    .engine
                    .create_tenant_at(tenant.clone(), spec, lineage, Stamp::ZERO)?;
            }
            Created::Created | Created::Existed => sync::reload_tenant(&state, &tenant).await?,
        }
    }
    let view = TenantView::from(state.engine.tenant_info(&tenant)?);
    Ok(match created {
        Created::Created => HttpResponse::Created().json(view),
        Created::Existed => HttpResponse::Ok().json(view),
    })
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), responses((status = 200, description = "The tenant", body = TenantView), (status = 404, description = "No such tenant"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn get_tenant(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, false).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(state.engine.tenant_info(&tenant)?)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), responses((status = 204, description = "Gone, with all its data"), (status = 404, description = "No such tenant"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn delete_tenant(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, true).await?;
    if !state.store.delete_tenant(&tenant).await? {
        return Err(ApiError::NotFound(format!(
            "tenant `{tenant}` does not exist"
        )));
    }
    // Gone from storage; the engine may already have dropped it on another path.
    let _ = state.engine.drop_tenant(&tenant);
    state.forget_keys();
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "tenants", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), responses((status = 201, description = "A new key, shown once", body = KeyView), (status = 404, description = "No such tenant"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn create_key(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, true).await?;
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

#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), request_body = EntitiesBody, responses((status = 200, description = "All written", body = Upserted), (status = 413, description = "Body too large"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn put_entities(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<EntitiesBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, false).await?;
    // Checked once, here: storage writes the checked batch and the engine applies it as is.
    let batch = state
        .engine
        .check_entities(&tenant, body.into_inner().into_entities()?)?;
    let upserted = batch.len();
    committed(&state, move |state| async move {
        let change = state.store.upsert_entities(&tenant, &batch).await?;
        sync::apply_own(&state, &tenant, change, move |engine, tenant| {
            engine.upsert_at(tenant, change, batch).map(drop)
        })
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(Upserted { upserted }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{id}", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]"), ("id" = String, Path, description = "The entity id")), responses((status = 200, description = "The entity as stored", body = EntityOut), (status = 404, description = "No such entity"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn get_entity(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let tenant = tenant_name(&tenant)?;
    admit(&state, &req, &tenant, false).await?;
    let id = EntityId::parse(&id)?;
    Ok(HttpResponse::Ok().json(EntityOut::from(state.engine.get(&tenant, &id)?)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/entities/{id}", tag = "entities", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]"), ("id" = String, Path, description = "The entity id")), responses((status = 204, description = "Deleted"), (status = 404, description = "No such entity"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn delete_entity(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let tenant = tenant_name(&tenant)?;
    admit(&state, &req, &tenant, false).await?;
    let id = EntityId::parse(&id)?;
    state.engine.tenant_info(&tenant)?;
    committed(&state, move |state| async move {
        let Some(change) = state.store.delete_entity(&tenant, &id).await? else {
            return Err(ApiError::NotFound(format!("entity `{id}` does not exist")));
        };
        sync::apply_own(&state, &tenant, change, move |engine, tenant| {
            engine.delete_at(tenant, change, &id).map(drop)
        })
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/interactions", tag = "interactions", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), request_body = InteractionsBody, responses((status = 200, description = "Durable", body = Accepted), (status = 503, description = "Storage is down; retry"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn post_interactions(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<InteractionsBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, false).await?;
    state.engine.tenant_info(&tenant)?;
    let batch = CheckedInteractions::new(body.into_inner().into_interactions(state.engine.now())?)?;
    let accepted = batch.len();
    committed(&state, move |state| async move {
        let change = state
            .store
            .record_interactions(&tenant, batch.clone())
            .await?;
        // An empty batch is no change: its "stamp" is the tenant's current version.
        if !batch.is_empty() {
            sync::apply_own(&state, &tenant, change, move |engine, tenant| {
                engine.record_at(tenant, change, batch).map(drop)
            })
            .await?;
        }
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(Accepted { accepted }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{id}/similar", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]"), ("id" = String, Path, description = "The entity id"), SearchQuery), responses((status = 200, description = "Most similar first; never the entity itself", body = Results), (status = 404, description = "No such entity"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn similar(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let tenant = tenant_name(&tenant)?;
    admit(&state, &req, &tenant, false).await?;
    let id = EntityId::parse(&id)?;
    let options = query.options()?;
    if state.settings.ranking == RankingMode::Database {
        return similar_in_database(&state, &tenant, &id, &options).await;
    }
    let prepared = state.engine.prepare_similar(&tenant, &id, &options)?;
    let answer = answers::answer(&state, &tenant, prepared).await?;
    let response = HttpResponse::Ok().json(Results::from_ranking(&answer.ranking));
    Ok(cached(&answer, response))
}

/// The reference design: the query vector from memory, the ranking by pgvector.
async fn similar_in_database(
    state: &AppState,
    tenant: &TenantName,
    id: &EntityId,
    options: &reco_engine::SearchOptions,
) -> Result<HttpResponse, ApiError> {
    let info = state.engine.tenant_info(tenant)?;
    let entity = state.engine.get(tenant, id)?;
    let search = DbSearch {
        vector: &entity.vector,
        k: options.k,
        offset: options.offset,
        filter: &options.filter,
        exclude: std::slice::from_ref(id),
        score_threshold: options.score_threshold,
        exact: options.exact,
    };
    // The same limits as the engine's, checked before the database is asked.
    options.validate()?;
    let found = state.store.search(tenant, info.spec, &search).await?;
    let results = found
        .into_iter()
        .map(|(id, score)| crate::api::ScoredOut {
            id: id.to_string(),
            score,
        })
        .collect();
    let mut response = HttpResponse::Ok().json(Results { results });
    response.headers_mut().insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static("miss"),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/recommendations", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]"), ("user" = String, Path, description = "The user id"), SearchQuery), responses((status = 200, description = "Personalized, or trending for a user with no history", body = UserResults), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn user_recommendations(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, user) = path.into_inner();
    let tenant = tenant_name(&tenant)?;
    admit(&state, &req, &tenant, false).await?;
    let user = UserId::parse(&user)?;
    let prepared = state
        .engine
        .prepare_user(&tenant, &user, &query.options()?)?;
    let answer = answers::answer(&state, &tenant, prepared).await?;
    let response = HttpResponse::Ok().json(UserResults::from_ranking(&answer.ranking));
    Ok(cached(&answer, response))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/recommend", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), request_body = RecommendBody, responses((status = 200, description = "Results and missing example ids", body = RecommendOut), (status = 404, description = "No example exists"), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn recommend(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<RecommendBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, false).await?;
    let request = body.into_inner().into_request()?;
    let prepared = state.engine.prepare_recommend(&tenant, &request)?;
    let answer = answers::answer(&state, &tenant, prepared).await?;
    let response = HttpResponse::Ok().json(RecommendOut::from_ranking(&answer.ranking));
    Ok(cached(&answer, response))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/recommend/batch", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]")), request_body = BatchBody, responses((status = 200, description = "One answer or error per request, in order", body = BatchOut), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn recommend_batch(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<BatchBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, false).await?;
    state.engine.tenant_info(&tenant)?;
    let body = body.into_inner();
    batch_limit_check(body.requests.len())?;
    // A batch can hold thousands of rankings: it runs on the blocking pool, so that it neither
    // holds up this worker's other requests nor escapes the time limit.
    let worker = state.clone();
    let responses = web::block(move || {
        body.requests
            .into_iter()
            .map(|r| {
                let answer = r.into_request().and_then(|request| {
                    worker
                        .engine
                        .recommend(&tenant, &request)
                        .map_err(ApiError::from)
                });
                match answer {
                    Ok(answer) => {
                        worker
                            .metrics
                            .observe_cache("recommendations", "memory", answer.cache);
                        BatchItem::Answer(RecommendOut::from_ranking(&answer.ranking))
                    }
                    Err(e) => BatchItem::Error {
                        error: ErrorOut {
                            code: e.parts().1,
                            message: e.message(),
                        },
                    },
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the batch worker failed: {e}")))?;
    Ok(HttpResponse::Ok().json(BatchOut { responses }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/trending", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]"), TrendingParams), responses((status = 200, description = "Time-decayed interaction weight, best first", body = Results), (status = 400, description = "Bad input", body = ErrorOut), (status = 401, description = "No valid key"), (status = 403, description = "The key does not open this tenant"), (status = 429, description = "Over the tenant's budget")))]
pub async fn trending(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<TrendingParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_name(&path)?;
    admit(&state, &req, &tenant, false).await?;
    let window = match query.window.as_deref() {
        Some(w) => Window::parse(w)?,
        None => Window::DEFAULT,
    };
    let trending = TrendingQuery {
        k: query.k.unwrap_or(10),
        offset: query.offset.unwrap_or(0),
        category: query.category.clone(),
        window,
    };
    let prepared = state.engine.prepare_trending(&tenant, &trending)?;
    let answer = answers::answer(&state, &tenant, prepared).await?;
    debug_assert_eq!(answer.ranking.strategy, Strategy::Trending);
    let response = HttpResponse::Ok().json(Results::from_ranking(&answer.ranking));
    Ok(cached(&answer, response))
}

/// Runs a write, from storage to the engine, to its end on a task of its own on the writer
/// runtime (see `AppState::writer`): a client that hangs up cannot cut it between the commit
/// and the engine, and its round trips to storage do not wait behind the reads an HTTP worker
/// has queued.
async fn committed<F, Fut>(state: &Data, write: F) -> Result<(), ApiError>
where
    F: FnOnce(Data) -> Fut + 'static,
    Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
{
    state
        .writer
        .spawn(write(state.clone()))
        .await
        .map_err(|e| ApiError::Internal(format!("a write task failed: {e}")))?
}

/// Adds the rate-limit headers of the request's tenant, when it had one.
pub fn budget_headers(
    headers: &mut actix_web::http::header::HeaderMap,
    status: u16,
    budget: Option<Budget>,
    limit: u32,
) {
    let (limit, remaining) = match budget {
        Some(b) => (b.limit, b.remaining),
        None if status == 429 => (limit, 0),
        None => return,
    };
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(limit),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(remaining),
    );
}
