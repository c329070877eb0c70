//! Admission: every request about a tenant (`/v1/tenants/{tenant}/...`) passes here before any
//! handler runs, and before its body is read. One middleware on the tenant scope parses the
//! tenant's name, authenticates the key, checks that it opens the tenant (or is the admin key,
//! where only that will do), takes the request from the tenant's budget, answers 404 for a
//! tenant that does not exist (but on the routes that make or delete it), and writes the
//! rate-limit headers on whatever answer follows, its own refusals included. Handlers take the
//! admitted tenant as an extractor ([`Admitted`]) and never see an unadmitted request.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use reco_engine::TenantName;
use utoipa::IntoResponses;

use crate::api::ErrorBody;
use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::{AppState, Budget};

/// The tenant a request was admitted for.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The tenant of the request's path.
    pub tenant: TenantName,
}

impl FromRequest for Admitted {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Admitted>().cloned().ok_or_else(|| {
            ApiError::Internal("a tenant's route was reached without admission".into())
        }))
    }
}

/// The answers admission gives instead of the handler's, for the OpenAPI document of every
/// tenant route.
#[derive(Debug, IntoResponses)]
pub enum Refusals {
    /// The tenant's name, the body, the query or a path segment is invalid, or the work
    /// asked for is over the budget.
    #[response(status = 400, description = "Bad input")]
    BadRequest(ErrorBody),
    /// No key, or an unknown one.
    #[response(status = 401, description = "No valid key")]
    Unauthorized(ErrorBody),
    /// The key opens another tenant, or this needs the admin key.
    #[response(status = 403, description = "The key does not open this tenant")]
    Forbidden(ErrorBody),
    /// The tenant (or what the path names in it) does not exist.
    #[response(status = 404, description = "Not found")]
    NotFound(ErrorBody),
    /// The body did not arrive within its deadline.
    #[response(status = 408, description = "The body came too slowly")]
    RequestTimeout(ErrorBody),
    /// The body is over the server's limit.
    #[response(status = 413, description = "The body is too large")]
    PayloadTooLarge(ErrorBody),
    /// The tenant spent its budget (or this address sent too many unknown keys);
    /// `Retry-After` says when to come back.
    #[response(status = 429, description = "Over the budget")]
    RateLimited(ErrorBody),
    /// Loading, storage down for a write, the time limit passed, or too much queued;
    /// `Retry-After` says when to come back.
    #[response(status = 503, description = "Unavailable for now")]
    Unavailable(ErrorBody),
}

/// Routes that only the admin key opens: the tenant itself (made or deleted) and its keys.
fn admin_only(method: &Method, path: &str, tenant: &str) -> bool {
    let own = path
        .strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.strip_prefix(tenant))
        .unwrap_or_default();
    match own {
        "" => method == Method::PUT || method == Method::DELETE,
        "/keys" => method == Method::POST,
        _ => false,
    }
}

/// The middleware of the tenant scope; see the module's documentation.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the state is registered");
    let name = req.match_info().get("tenant").unwrap_or_default();
    let tenant = TenantName::parse(name);
    let admitted = async {
        let tenant = tenant.clone()?;
        let authorization = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let peer = req.peer_addr().map(|a| a.ip());
        let admin = admin_only(req.method(), req.path(), tenant.as_str());
        let budget = state.admit(authorization, peer, &tenant, admin).await?;
        // Beyond the tenant itself and its keys, every route is about a tenant that exists:
        // one this server does not know is answered 404 before the body is read, since no
        // body can be right about it.
        if !admin {
            state.engine.spec(&tenant)?;
        }
        Ok::<_, ApiError>((tenant, budget))
    }
    .await;
    match admitted {
        Ok((tenant, budget)) => {
            req.extensions_mut().insert(Admitted { tenant });
            // The body is read only now, after authentication, and within its own deadline.
            let mut req = req;
            if let Err(refused) = buffer_body(&mut req, &state.settings).await {
                let mut res = req
                    .into_response(refused.error_response())
                    .map_into_right_body();
                headers(res.headers_mut(), budget);
                return Ok(res);
            }
            let mut res = next.call(req).await?.map_into_left_body();
            headers(res.headers_mut(), budget);
            Ok(res)
        }
        Err(refused) => {
            let mut res = req
                .into_response(refused.error_response())
                .map_into_right_body();
            // A refusal about a valid tenant's name still tells the budget, untouched by it.
            if let Ok(tenant) = tenant {
                headers(res.headers_mut(), state.budget(&tenant));
            }
            Ok(res)
        }
    }
}

/// Reads a request's whole body within `deadline` and hands the request on with it, or
/// answers 408: a body that trickles in (one byte a second) would otherwise hold a connection
/// and a handler for ever. The size limit still applies where the body is parsed; bodies past
/// the server's limit are refused here already, without being kept.
async fn buffer_body(req: &mut ServiceRequest, settings: &Settings) -> Result<(), ApiError> {
    use futures::StreamExt;

    let (limit, deadline) = (settings.body_limit, settings.body_timeout);
    let mut payload = req.take_payload();
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(format!(
                    "a request body is at most {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // Every body of the API is a JSON object; serde would take an array for a struct.
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        Ok(body.freeze())
    };
    let body =
        tokio::time::timeout(deadline, read)
            .await
            .map_err(|_| ApiError::BodyTimedOut {
                after_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            })??;
    req.set_payload(Payload::from(body));
    Ok(())
}

/// `X-RateLimit-Limit` and `X-RateLimit-Remaining`.
pub(crate) fn headers(headers: &mut HeaderMap, budget: Budget) {
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(budget.limit),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(budget.remaining),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tenant_itself_and_its_keys_need_the_admin_key() {
        let admin = |method: Method, path: &str| admin_only(&method, path, "shop");
        assert!(admin(Method::PUT, "/v1/tenants/shop"));
        assert!(admin(Method::DELETE, "/v1/tenants/shop"));
        assert!(admin(Method::POST, "/v1/tenants/shop/keys"));
        assert!(!admin(Method::GET, "/v1/tenants/shop"));
        assert!(!admin(Method::PUT, "/v1/tenants/shop/entities"));
        assert!(!admin(Method::DELETE, "/v1/tenants/shop/entities/a"));
        assert!(!admin(Method::POST, "/v1/tenants/shop/keysx"));
    }
}
