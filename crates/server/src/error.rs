//! The one place errors become HTTP answers.
//!
//! Engine and storage errors turn into an [`ApiError`] by exhaustive matches, so a new variant
//! cannot slip through unmapped; `ApiError` then names its status and code. Internal details
//! (SQL, Redis) go to the log with the request id, never to the client.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use reco_engine::EngineError;
use reco_storage::StorageError;
use serde::Serialize;

/// An answer other than success, in the API's terms.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `bad_request`.
    BadRequest(String),
    /// 400 `invalid_vector`.
    InvalidVector(String),
    /// 401 `unauthorized`.
    Unauthorized(&'static str),
    /// 403 `forbidden`.
    Forbidden(&'static str),
    /// 404 `not_found`.
    NotFound(String),
    /// 405 `method_not_allowed`, with the methods the path answers (the `Allow` header).
    MethodNotAllowed(String),
    /// 409 `conflict`.
    Conflict(String),
    /// 413 `payload_too_large`.
    PayloadTooLarge(String),
    /// 429 `rate_limited`, with the seconds to wait.
    RateLimited { retry_after: u64 },
    /// 429 `rate_limited`: this client address sent too many keys unknown here.
    UnknownKeys { retry_after: u64 },
    /// 503 `unavailable`, with the seconds to wait.
    Unavailable { message: String, retry_after: u64 },
    /// 503 `unavailable`: the request took longer than the limit. Answered from outside the
    /// handler, so it carries the request id itself.
    TimedOut {
        after_ms: u64,
        request_id: Option<HeaderValue>,
    },
    /// 408 `request_timeout`: the body did not arrive within its deadline.
    BodyTimedOut { after_ms: u64 },
    /// 500 `internal`; the detail is logged, not sent.
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidVector(_) => (StatusCode::BAD_REQUEST, "invalid_vector"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited { .. } | ApiError::UnknownKeys { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            ApiError::Unavailable { .. } | ApiError::TimedOut { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::BodyTimedOut { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::InvalidVector(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m) => m.clone(),
            ApiError::Unauthorized(m) | ApiError::Forbidden(m) => (*m).to_owned(),
            ApiError::MethodNotAllowed(allow) => {
                format!("this path answers {allow} only")
            }
            ApiError::RateLimited { retry_after } => {
                format!("this tenant's request budget is spent; retry in {retry_after} s")
            }
            ApiError::UnknownKeys { retry_after } => format!(
                "too many unknown keys from this address; retry in {retry_after} s with a valid key"
            ),
            ApiError::BodyTimedOut { after_ms } => {
                format!("the request's body did not arrive within {after_ms} ms")
            }
            ApiError::Unavailable { message, .. } => message.clone(),
            ApiError::TimedOut { after_ms, .. } => {
                format!("the request took longer than {after_ms} ms; retry, or ask for less")
            }
            ApiError::Internal(_) => {
                "something went wrong on our side; the request id is in the log".to_owned()
            }
        }
    }

    /// Storage cannot take writes now: retry shortly.
    pub fn storage_down(detail: impl fmt::Display) -> Self {
        tracing::warn!(%detail, "storage unavailable");
        ApiError::Unavailable {
            message: "storage is unavailable; the write was not made, retry shortly".into(),
            retry_after: 1,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (status, code) = self.parts();
        write!(f, "{status} {code}: {}", self.message())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.parts();
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let message = self.message();
        let mut response = HttpResponse::build(status).json(Body {
            error: Detail {
                code,
                message: &message,
            },
        });
        let retry_after = match self {
            ApiError::RateLimited { retry_after }
            | ApiError::UnknownKeys { retry_after }
            | ApiError::Unavailable { retry_after, .. } => Some(*retry_after),
            ApiError::TimedOut { request_id, .. } => {
                if let Some(id) = request_id {
                    response.headers_mut().insert(
                        actix_web::http::header::HeaderName::from_static("x-request-id"),
                        id.clone(),
                    );
                }
                Some(1)
            }
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response
                        .headers_mut()
                        .insert(actix_web::http::header::ALLOW, value);
                }
                None
            }
            ApiError::BadRequest(_)
            | ApiError::InvalidVector(_)
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::Conflict(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::BodyTimedOut { .. }
            | ApiError::Internal(_) => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidName(m) | EngineError::InvalidArgument(m) => {
                ApiError::BadRequest(m)
            }
            EngineError::InvalidVector(m) => ApiError::InvalidVector(m),
            EngineError::InvalidItem { index, source } => {
                let message = format!("item {index} of the batch: {source}");
                match *source {
                    EngineError::InvalidVector(_) => ApiError::InvalidVector(message),
                    EngineError::InvalidName(_)
                    | EngineError::InvalidArgument(_)
                    | EngineError::InvalidItem { .. }
                    | EngineError::TenantNotFound(_)
                    | EngineError::TenantConflict { .. }
                    | EngineError::EntityNotFound(_)
                    | EngineError::OutOfOrder { .. }
                    | EngineError::NoModel(_)
                    | EngineError::NotLearnt(_)
                    | EngineError::NoContentVectors(_)
                    | EngineError::NoUsableExamples(_)
                    | EngineError::Interrupted
                    | EngineError::OverBudget { .. } => ApiError::BadRequest(message),
                }
            }
            EngineError::TenantNotFound(t) => {
                ApiError::NotFound(format!("tenant `{t}` does not exist"))
            }
            EngineError::TenantConflict { .. } => ApiError::Conflict(e.to_string()),
            EngineError::EntityNotFound(id) => {
                ApiError::NotFound(format!("entity `{id}` does not exist"))
            }
            EngineError::NoModel(_) | EngineError::NotLearnt(_) => {
                ApiError::NotFound(e.to_string())
            }
            EngineError::NoContentVectors(_) => ApiError::BadRequest(e.to_string()),
            EngineError::NoUsableExamples(m) => {
                ApiError::NotFound(format!("none of the examples exist: {m}"))
            }
            EngineError::OverBudget { .. } => ApiError::BadRequest(e.to_string()),
            // Only the time limit stops a ranking (or a client that left, who reads nothing).
            EngineError::Interrupted => ApiError::Unavailable {
                message: "the ranking was stopped at the server's time limit; ask for less work \
                          or retry"
                    .into(),
                retry_after: 1,
            },
            // The server applies changes in order; this is its own mistake, not the client's.
            EngineError::OutOfOrder { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => ApiError::storage_down(e),
            StorageError::TenantNotFound(t) => {
                ApiError::NotFound(format!("tenant `{t}` does not exist"))
            }
            StorageError::TenantConflict { .. } => ApiError::Conflict(e.to_string()),
            StorageError::InvalidRow { index, reason } => {
                ApiError::BadRequest(format!("item {index} of the batch: {reason}"))
            }
            StorageError::Unsupported(what) => {
                ApiError::BadRequest(format!("{what} is not supported by this database"))
            }
            StorageError::InvalidSetting(_)
            | StorageError::Database(_)
            | StorageError::Migrate(_)
            | StorageError::Corrupt(_)
            | StorageError::Image(_)
            | StorageError::RedisUnavailable(_)
            | StorageError::Redis(_) => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_contract_shape() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (ApiError::InvalidVector("x".into()), 400, "invalid_vector"),
            (ApiError::Unauthorized("x"), 401, "unauthorized"),
            (ApiError::Forbidden("x"), 403, "forbidden"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (
                ApiError::PayloadTooLarge("x".into()),
                413,
                "payload_too_large",
            ),
            (
                ApiError::RateLimited { retry_after: 2 },
                429,
                "rate_limited",
            ),
            (
                ApiError::Unavailable {
                    message: "x".into(),
                    retry_after: 1,
                },
                503,
                "unavailable",
            ),
            (ApiError::Internal("SELECT secret".into()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(error.parts().1, code);
            assert!(
                !error.message().contains("SELECT"),
                "internal details stay in the log"
            );
            let retry = response.headers().get(RETRY_AFTER).is_some();
            assert_eq!(retry, status == 429 || status == 503, "{code}");
        }
    }

    #[test]
    fn engine_errors_map_to_their_codes() {
        let bad_vector = EngineError::InvalidItem {
            index: 3,
            source: Box::new(EngineError::InvalidVector("NaN".into())),
        };
        let api = ApiError::from(bad_vector);
        assert!(
            matches!(&api, ApiError::InvalidVector(m) if m.starts_with("item 3")),
            "{api:?}"
        );
        let none = ApiError::from(EngineError::NoUsableExamples("a".into()));
        assert_eq!(none.parts().0, StatusCode::NOT_FOUND);
    }
}
