//! The OpenAPI document, generated from the handlers' annotations, and a page to try it at
//! `/docs` (Swagger UI, with its assets built into the binary, so it works offline).

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::{health, routes};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "reco", description = "A high-throughput recommendation engine: HTTP API version 1."),
    paths(
        routes::put_tenant, routes::get_tenant, routes::delete_tenant, routes::create_key,
        routes::put_entities, routes::get_entity, routes::delete_entity, routes::post_interactions,
        routes::similar, routes::user_recommendations, routes::recommend, routes::recommend_batch,
        routes::trending, health::live, health::ready, health::metrics,
    ),
    components(schemas(
        api::TenantBody, api::TenantView, api::KeyView, api::EntityBody, api::EntitiesBody,
        api::Upserted, api::EntityOut, api::InteractionBody, api::InteractionsBody, api::Accepted,
        api::ScoredOut, api::Results, api::UserResults, api::ExampleBody, api::ExampleObject,
        api::FilterBody, api::RecommendBody, api::RecommendOut, api::BatchBody, api::BatchItem,
        api::ErrorOut, api::BatchOut,
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
    }
}

/// The try-it page under `/docs/`, which also serves `/openapi.json`.
pub fn service() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi())
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
