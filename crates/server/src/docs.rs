//! The OpenAPI document, generated from the handlers' annotations, and a page to try it at
//! `/docs` (Swagger UI, with its assets built into the binary, so it works offline).

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::health;
use crate::routes::{entities, interactions, model, recommendations, tenants};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "reco", description = "A high-throughput recommendation engine: HTTP API version 1."),
    paths(
        tenants::put_tenant, tenants::get_tenant, tenants::delete_tenant, tenants::create_key,
        entities::put_entities, entities::get_entity, entities::delete_entity,
        interactions::post_interactions, recommendations::similar,
        recommendations::user_recommendations, recommendations::recommend,
        recommendations::recommend_batch, recommendations::trending, model::get_model,
        model::train_model, health::live,
        health::ready, health::metrics,
    ),
    components(schemas(
        api::TenantBody, api::TenantView, api::KeyView, api::EntityBody, api::EntitiesBody,
        api::Upserted, api::EntityOut, api::InteractionBody, api::InteractionsBody, api::Accepted,
        api::ScoredOut, api::Results, api::UserResults, api::ExampleBody, api::ExampleObject,
        api::FilterBody, api::RecommendBody, api::RecommendOut, api::BatchBody, api::BatchItem,
        api::ErrorOut, api::ErrorBody, api::MetricName, api::BatchOut, api::ModelStatus,
    )),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Health and metrics need no key (metrics off loopback need the admin key, which the
        // operation's 403 says): `security: []` overrides the document's default.
        for path in ["/health/live", "/health/ready", "/metrics"] {
            if let Some(item) = openapi.paths.paths.get_mut(path)
                && let Some(get) = item.get.as_mut()
            {
                get.security = Some(Vec::new());
            }
        }
    }
}

/// The try-it page under `/docs/`, which also serves `/openapi.json`.
pub fn service() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi())
}

/// Each path of the document (as segments, `{...}` matching any one segment) and the methods it
/// answers, in the `Allow` header's order.
fn routes() -> &'static [(Vec<String>, Vec<&'static str>)] {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, present)| present.then_some(name))
                .collect();
                let segments = path.split('/').map(str::to_owned).collect();
                (segments, methods)
            })
            .collect()
    })
}

/// The methods the document lists for a request path (empty when it names no path of it).
pub(crate) fn allowed(path: &str) -> Vec<&'static str> {
    let asked: Vec<&str> = path.split('/').collect();
    routes()
        .iter()
        .find(|(segments, _)| {
            segments.len() == asked.len()
                && segments.iter().zip(&asked).all(|(template, segment)| {
                    (template.starts_with('{') && !segment.is_empty()) || template == segment
                })
        })
        .map(|(_, methods)| methods.clone())
        .unwrap_or_default()
}

/// What no route answered: `405` with `Allow` for a path of the document asked with another
/// method, else `404`; both in the error envelope, as every answer of 400 or more is.
pub async fn fallback(req: actix_web::HttpRequest) -> HttpResponse {
    let methods = allowed(req.path());
    let error = if methods.is_empty() {
        crate::error::ApiError::NotFound(format!("there is no `{}` here", req.path()))
    } else {
        crate::error::ApiError::MethodNotAllowed(methods.join(", "))
    };
    actix_web::ResponseError::error_response(&error)
}

/// `/docs` without the slash goes to the page.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("location", "/docs/"))
        .finish()
}

/// Registers the page and the redirect.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/docs", web::get().to(docs_redirect))
        .service(service());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admission's refusals are declared once, and every tenant route documents all of them.
    #[test]
    fn every_tenant_route_documents_admissions_refusals() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut operations = 0;
        for (path, item) in paths {
            if !path.starts_with("/v1/tenants/{tenant}") {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                let responses = &operation["responses"];
                for status in ["400", "401", "403", "429"] {
                    assert!(
                        responses.get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
                assert!(
                    responses["400"]["content"]["application/json"].is_object(),
                    "{method} {path}: a 400 carries the error body"
                );
            }
        }
        assert_eq!(operations, 15);
    }
}
