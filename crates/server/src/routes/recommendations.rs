//! The questions: similar entities, a user's recommendations, recommendations by example (one
//! or a batch) and trending.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, web};
use reco_engine::{
    EngineError, EntityId, Prepared, Space, Strategy, TenantName, TrendingQuery, UserId, Window,
};
use reco_storage::DbSearch;

use super::{Data, cached};
use crate::admission::{Admitted, Refusals};
use crate::answers;
use crate::api::{
    BatchBody, BatchItem, BatchOut, ErrorBody, ErrorOut, HistoryParams, RecommendBody,
    RecommendOut, Results, SearchQuery, TrendingParams, UserHistoryOut, UserResults,
    batch_limit_check,
};
use crate::error::ApiError;
use crate::settings::RankingMode;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{id}/similar", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), ("id" = String, Path, description = "The entity id"), SearchQuery), responses((status = 200, description = "Most similar first; never the entity itself", body = Results), (status = 404, description = "No such entity (in the collaborative space: not learnt by the model), or no model yet", body = ErrorBody), Refusals))]
pub async fn similar(
    state: Data,
    admitted: Admitted,
    path: web::Path<(String, String)>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let (_, id) = path.into_inner();
    let id = EntityId::parse(&id)?;
    if query.strategy.is_some() {
        return Err(ApiError::BadRequest(
            "strategy applies to user recommendations; similar takes a space".into(),
        ));
    }
    // A tenant without content vectors is asked in its collaborative space by default.
    let default_space = if state.engine.spec(&tenant)?.has_vectors() {
        Space::Content
    } else {
        Space::Collaborative
    };
    let options = query.options(default_space)?;
    // The database mode ranks content vectors in PostgreSQL; the collaborative space is the
    // engine's alone.
    if state.settings.ranking == RankingMode::Database && options.space == Space::Content {
        // Boxed: its storage futures are large, and kept inline they would make every
        // similar request's future (moved into a box by actix on each request) as large.
        return Box::pin(similar_in_database(&state, &tenant, &id, &options)).await;
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
    if !info.spec.has_vectors() {
        return Err(EngineError::NoContentVectors(tenant.clone()).into());
    }
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
        .iter()
        .map(|(id, score)| crate::api::ScoredOut {
            id: id.as_str(),
            score: *score,
        })
        .collect();
    let mut response = HttpResponse::Ok().json(Results { results });
    response.headers_mut().insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static("miss"),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/recommendations", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), ("user" = String, Path, description = "The user id"), SearchQuery), responses((status = 200, description = "Collaborative, personalized from content vectors, or trending, as the strategy and the user's history allow", body = UserResults), (status = 404, description = "strategy=collaborative, and the tenant has no model yet", body = ErrorBody), Refusals))]
pub async fn user_recommendations(
    state: Data,
    admitted: Admitted,
    path: web::Path<(String, String)>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let (_, user) = path.into_inner();
    let user = UserId::parse(&user)?;
    if query.space.is_some() {
        return Err(ApiError::BadRequest(
            "user recommendations take a strategy, not a space".into(),
        ));
    }
    let prepared = state.engine.prepare_user_by(
        &tenant,
        &user,
        &query.options(Space::Content)?,
        query.user_strategy()?,
    )?;
    let answer = answers::answer(&state, &tenant, prepared).await?;
    let response = HttpResponse::Ok().json(UserResults::from_ranking(&answer.ranking));
    Ok(cached(&answer, response))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), ("user" = String, Path, description = "The user id"), HistoryParams), responses((status = 200, description = "The user's history as their recommendations read it, the most recent entities first", body = UserHistoryOut), (status = 404, description = "The tenant holds no interaction of this user", body = ErrorBody), Refusals))]
pub async fn user_history(
    state: Data,
    admitted: Admitted,
    path: web::Path<(String, String)>,
    query: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let (_, user) = path.into_inner();
    let user = UserId::parse(&user)?;
    let limit = query.limit()?;
    match state.engine.user_history(&tenant, &user, limit)? {
        Some(history) => Ok(HttpResponse::Ok().json(UserHistoryOut::new(&user, history))),
        None => Err(ApiError::NotFound(format!(
            "tenant `{tenant}` holds no interaction of user `{user}`"
        ))),
    }
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/recommend", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), request_body = RecommendBody, responses((status = 200, description = "Results and missing example ids", body = RecommendOut), (status = 404, description = "No example exists", body = ErrorBody), Refusals))]
pub async fn recommend(
    state: Data,
    admitted: Admitted,
    body: web::Json<RecommendBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    let request = body.into_inner().into_request()?;
    let prepared = state.engine.prepare_recommend(&tenant, &request)?;
    let answer = answers::answer(&state, &tenant, prepared).await?;
    let response = HttpResponse::Ok().json(RecommendOut::from_ranking(&answer.ranking));
    Ok(cached(&answer, response))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/recommend/batch", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$")), request_body = BatchBody, responses((status = 200, description = "One answer or error per request, in order", body = BatchOut), Refusals))]
pub async fn recommend_batch(
    state: Data,
    admitted: Admitted,
    body: web::Json<BatchBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
    state.engine.tenant_info(&tenant)?;
    let body = body.into_inner();
    batch_limit_check(body.requests.len())?;
    // A request that does not match the body's shape (the document's schema) refuses the
    // whole batch, as any malformed body is refused; what only the tenant's data can answer
    // (a missing example, a vector of another length) is that request's own error.
    let requests = body
        .requests
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            r.into_request().map_err(|e| {
                let ApiError::BadRequest(message) = e else {
                    return e;
                };
                ApiError::BadRequest(format!("request {index} of the batch: {message}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Each question is checked and bound here (cheap); their work together is checked against
    // the batch budget before any is ranked.
    let prepared: Vec<Result<Prepared, ApiError>> = requests
        .iter()
        .map(|request| Ok(state.engine.prepare_recommend(&tenant, request)?))
        .collect();
    let cost = prepared
        .iter()
        .flatten()
        .fold(0u64, |sum, p| sum.saturating_add(p.cost().components));
    let budget = state.settings.batch_work_budget;
    if cost > budget {
        return Err(ApiError::BadRequest(format!(
            "the batch's questions would read about {cost} vector components together, over \
             the batch budget of {budget}: send fewer requests, or lower their `k` + `offset`, \
             diversity or examples"
        )));
    }
    // The batch runs on the rankers' threads, its questions one after another, and stops
    // between them (or inside one) when the time limit passes.
    let worker = state.clone();
    let deadline = std::time::Instant::now() + state.settings.request_timeout;
    let responses = state
        .rankers
        .run(deadline, move |interrupt| {
            let mut responses = Vec::with_capacity(prepared.len());
            for item in prepared {
                if interrupt.is_stopped() {
                    return Err(ApiError::from(EngineError::Interrupted));
                }
                let answer = item.and_then(|p| Ok(p.answer_until(interrupt)?));
                responses.push(match answer {
                    Ok(answer) => {
                        worker
                            .metrics
                            .observe_cache("recommendations", "memory", answer.cache);
                        Ok(answer)
                    }
                    Err(e) => Err(ErrorOut {
                        code: e.parts().1,
                        message: e.message(),
                    }),
                });
            }
            // The last question may have been the one stopped.
            if interrupt.is_stopped() {
                return Err(ApiError::from(EngineError::Interrupted));
            }
            Ok(responses)
        })
        .await??;
    let responses = responses
        .iter()
        .map(|answer| match answer {
            Ok(answer) => BatchItem::Answer(RecommendOut::from_ranking(&answer.ranking)),
            Err(error) => BatchItem::Error {
                error: error.clone(),
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(BatchOut { responses }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/trending", tag = "recommendations", params(("tenant" = String, Path, description = "The tenant: 1 to 64 of [a-z0-9_-]", pattern = "^[a-z0-9_-]{1,64}$"), TrendingParams), responses((status = 200, description = "Time-decayed interaction weight, best first", body = Results), Refusals))]
pub async fn trending(
    state: Data,
    admitted: Admitted,
    query: web::Query<TrendingParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admitted.tenant;
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
