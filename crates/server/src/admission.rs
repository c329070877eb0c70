//! Admission: every request about a tenant (`/v1/tenants/{tenant}/...`) passes here before any
//! handler runs, and before its body is read. One middleware on the tenant scope parses the
//! tenant's name, authenticates the key, checks that it opens the tenant (or is the admin key,
//! where only that will do), takes the request from the tenant's budget, and writes the
//! rate-limit headers on whatever answer follows, its own refusals included. Handlers take the
//! admitted tenant as an extractor ([`Admitted`]) and never see an unadmitted request.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use reco_engine::TenantName;
use utoipa::IntoResponses;

use crate::api::ErrorOut;
use crate::error::ApiError;
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
    /// The tenant's name (or another part of the request) is invalid.
    #[response(status = 400, description = "Bad input")]
    BadRequest(ErrorOut),
    /// No key, or an unknown one.
    #[response(status = 401, description = "No valid key")]
    Unauthorized(ErrorOut),
    /// The key opens another tenant, or this needs the admin key.
    #[response(status = 403, description = "The key does not open this tenant")]
    Forbidden(ErrorOut),
    /// The tenant spent its budget; `Retry-After` says when to come back.
    #[response(status = 429, description = "Over the tenant's budget")]
    RateLimited(ErrorOut),
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
    let limit = state.settings.rate_limit;
    let admitted = async {
        let name = req.match_info().get("tenant").unwrap_or_default();
        let tenant = TenantName::parse(name)?;
        let authorization = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let admin = admin_only(req.method(), req.path(), tenant.as_str());
        let budget = state.admit(authorization, &tenant, admin).await?;
        Ok::<_, ApiError>((tenant, budget))
    }
    .await;
    match admitted {
        Ok((tenant, budget)) => {
            req.extensions_mut().insert(Admitted { tenant });
            let mut res = next.call(req).await?.map_into_left_body();
            let status = res.status();
            headers(res.headers_mut(), Some(budget), status, limit);
            Ok(res)
        }
        Err(refused) => {
            let mut res = req
                .into_response(refused.error_response())
                .map_into_right_body();
            let status = res.status();
            headers(res.headers_mut(), None, status, limit);
            Ok(res)
        }
    }
}

/// `X-RateLimit-Limit` and `X-RateLimit-Remaining`: the budget after an admitted request, or
/// none left on a 429.
fn headers(headers: &mut HeaderMap, budget: Option<Budget>, status: StatusCode, limit: u32) {
    let (limit, remaining) = match budget {
        Some(b) => (b.limit, b.remaining),
        None if status == StatusCode::TOO_MANY_REQUESTS => (limit, 0),
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
