//! The OpenAPI document, generated from the handlers' annotations, and a page to try it at
//! `/docs` (Swagger UI, with its assets built into the binary, so it works offline).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
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
        tenants::list_tenants, tenants::put_tenant, tenants::get_tenant, tenants::delete_tenant, tenants::create_key,
        entities::put_entities, entities::list_entities, entities::get_entity, entities::delete_entity,
        interactions::post_interactions, recommendations::similar,
        recommendations::user_recommendations, recommendations::user_history, recommendations::recommend,
        recommendations::recommend_batch, recommendations::trending, model::get_model,
        model::train_model, model::start_evaluation, model::get_evaluation, health::live,
        health::ready, health::metrics,
    ),
    components(schemas(
        api::TenantBody, api::TenantView, api::TenantList, api::EntityPage, api::KeyView, api::EntityBody, api::EntitiesBody,
        api::Upserted, api::EntityOut, api::InteractionBody, api::InteractionsBody, api::Accepted,
        api::ScoredOut, api::Results, api::UserResults, api::ExampleBody, api::ExampleObject,
        api::FilterBody, api::RecommendBody, api::RecommendOut, api::BatchBody, api::BatchItem,
        api::ErrorOut, api::ErrorBody, api::MetricName, api::BatchOut, api::ModelStatus,
        api::UserHistoryOut, api::HistoryItemOut, api::EvaluationStatus, api::EvaluationOut,
        api::StrategyScoreOut, api::ColdScoreOut, api::SearchView,
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
pub fn service(retention: Duration) -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").external_url_unchecked("/openapi.json", document(retention))
}

/// The document as served: the annotations' document, made exact where annotations cannot say
/// it (JSON Schema's `oneOf`, `anyOf`, recursion and `format`), with the trending window's
/// pattern drawn from the server's `retention`. A schema fuzzer (schemathesis) checks both
/// ways: what the document allows is accepted, and what it forbids is refused.
/// (utoipa's types hold no `propertyNames` and read no `anyOf` beside `properties`, so the
/// result stays JSON.)
pub fn document(retention: Duration) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
    exact(&mut doc, retention);
    doc
}

/// No NUL anywhere in the string (ECMA-262, as JSON Schema's `pattern` is).
const NO_NUL: &str = "^[^\\x00]*$";

/// An id or a label: 1 to 256 bytes of UTF-8 without NUL. JSON Schema counts characters, not
/// bytes, so the document says 256 characters and the description says bytes.
fn name(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL,
           "description": description})
}

/// The bound of the numbers that read as a finite f32: below it they round to at most
/// `f32::MAX`, from it on to infinity (2^128 - 2^103, halfway past `f32::MAX`).
fn f32_bound() -> f64 {
    2f64.powi(128) - 2f64.powi(103)
}

/// Any finite f32.
fn float() -> Value {
    json!({"type": "number", "exclusiveMinimum": -f32_bound(), "exclusiveMaximum": f32_bound()})
}

fn exact(doc: &mut Value, retention: Duration) {
    let schemas = &mut doc["components"]["schemas"];
    let id = "1 to 256 bytes of UTF-8, without NUL.";
    let vector = json!({"type": "array", "items": float()});
    // Attributes: any JSON object whose strings and keys carry no NUL (at most 32 deep, which
    // the description says: JSON Schema cannot count depth).
    schemas["AttributeValue"] = json!({
        "description": "Any JSON value whose strings and keys carry no NUL.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL},
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": {"$ref": "#/components/schemas/AttributeValue"}},
            {"type": "object", "propertyNames": {"pattern": NO_NUL},
             "additionalProperties": {"$ref": "#/components/schemas/AttributeValue"}},
        ],
    });
    let entity = &mut schemas["EntityBody"]["properties"];
    entity["id"] = name(id);
    entity["category"] = json!({"oneOf": [{"type": "null"}, name("1 to 256 bytes, without NUL.")]});
    entity["tags"] = json!({"oneOf": [{"type": "null"},
        {"type": "array", "items": name("1 to 256 bytes, without NUL.")}]});
    entity["vector"] = json!({"oneOf": [{"type": "null"}, vector],
        "description": "Required when the tenant has a dimension (and then of that length), \
                        refused when it has none."});
    entity["attributes"] = json!({"oneOf": [{"type": "null"}, {
        "type": "object", "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": "#/components/schemas/AttributeValue"}}],
        "description": "Any JSON object, at most 32 deep, without NUL; stored as given."});
    let interaction = &mut schemas["InteractionBody"]["properties"];
    interaction["id"] = json!({"oneOf": [{"type": "null"}, name(
        "The interaction's own id (1 to 256 bytes, without NUL): sent again, it is \
         acknowledged and not recorded twice.")]});
    interaction["user"] = name(id);
    interaction["entity"] = name(id);
    interaction["timestamp"] = json!({"type": ["string", "null"], "format": "date-time",
        "description": "RFC 3339, at most an hour ahead; now when absent."});
    // An example names an entity or gives a vector, never both.
    let weight = json!({"oneOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0,
        "exclusiveMaximum": f32_bound()}], "description": "Above 0; 1 when absent."});
    schemas["ExampleBody"]["oneOf"][0] = name(id);
    schemas["ExampleObject"] = json!({
        "description": "An example by id or by vector, with an optional weight.",
        "oneOf": [
            {"type": "object", "required": ["id"], "additionalProperties": false,
             "properties": {"id": name(id), "vector": {"type": "null"}, "weight": weight}},
            {"type": "object", "required": ["vector"], "additionalProperties": false,
             "properties": {"vector": vector, "id": {"type": "null"}, "weight": weight}},
        ],
    });
    // `dimension` and `metric` come together, or neither does.
    schemas["TenantBody"]["anyOf"] = json!([
        {"required": ["dimension", "metric"],
         "properties": {"dimension": {"type": "integer"}, "metric": {"type": "string"}}},
        {"properties": {"dimension": {"type": "null"}, "metric": {"type": "null"}}},
    ]);
    schemas["RecommendBody"]["properties"]["score_threshold"] =
        json!({"oneOf": [{"type": "null"}, float()]});
    for path in [
        "/v1/tenants/{tenant}/entities/{id}/similar",
        "/v1/tenants/{tenant}/users/{user}/recommendations",
    ] {
        let parameters = doc["paths"][path]["get"]["parameters"].as_array_mut();
        for parameter in parameters.into_iter().flatten() {
            if parameter["name"] == "score_threshold" {
                parameter["schema"] = float();
            }
        }
    }
    for (path, drop) in [
        ("/v1/tenants/{tenant}/entities/{id}/similar", "strategy"),
        ("/v1/tenants/{tenant}/users/{user}/recommendations", "space"),
    ] {
        if let Some(parameters) = doc["paths"][path]["get"]["parameters"].as_array_mut() {
            parameters.retain(|p| p["name"] != drop);
        }
    }
    for (path, method) in [
        ("/v1/tenants/{tenant}/entities", "get"),
        ("/v1/tenants/{tenant}/entities/{id}", "get"),
        ("/v1/tenants/{tenant}/entities/{id}", "delete"),
        ("/v1/tenants/{tenant}/entities/{id}/similar", "get"),
        ("/v1/tenants/{tenant}/users/{user}/recommendations", "get"),
        ("/v1/tenants/{tenant}/users/{user}", "get"),
    ] {
        let parameters = doc["paths"][path][method]["parameters"].as_array_mut();
        for parameter in parameters.into_iter().flatten() {
            if parameter["name"] == "after" {
                parameter["schema"] = name(id);
                parameter["description"] =
                    Value::from("The page starts after this id (the `next` of the page before).");
            } else if parameter["name"] == "id" || parameter["name"] == "user" {
                parameter["schema"] = name(id);
            }
        }
    }
    examples(doc);
    let trending = doc["paths"]["/v1/tenants/{tenant}/trending"]["get"]["parameters"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "window");
    if let Some(window) = trending {
        window["schema"]["pattern"] = Value::from(window_pattern(retention));
        window["description"] = Value::from(format!(
            "A whole number and a unit (s, m, h or d), such as `24h` or `7d`, at most the \
             retention of {} hours; `24h` by default.",
            retention.as_secs() / 3600
        ));
    }
}

/// Examples that work when tried in `/docs` in the document's order: a tenant `shop` of
/// three-dimensional vectors, two entities, a click, and questions about them.
fn examples(doc: &mut Value) {
    let bodies = [
        (
            "/v1/tenants/{tenant}",
            "put",
            json!({"dimension": 3, "metric": "cosine"}),
        ),
        (
            "/v1/tenants/{tenant}/entities",
            "put",
            json!({"entities": [
                {"id": "a", "vector": [0.1, 0.2, 0.3], "category": "shoes", "tags": ["red"],
                 "attributes": {"title": "Red runner", "price": 40}},
                {"id": "b", "vector": [0.2, 0.1, 0.3], "category": "shoes", "tags": ["blue"]},
            ]}),
        ),
        (
            "/v1/tenants/{tenant}/interactions",
            "post",
            json!({"interactions": [
                {"user": "u1", "entity": "a", "kind": "click"},
            ]}),
        ),
        (
            "/v1/tenants/{tenant}/recommend",
            "post",
            json!({"positive": ["a"], "k": 5}),
        ),
        (
            "/v1/tenants/{tenant}/recommend/batch",
            "post",
            json!({"requests": [
                {"positive": ["a"], "k": 5},
                {"positive": [{"vector": [0.1, 0.2, 0.3], "weight": 2}], "negative": ["b"], "k": 3},
            ]}),
        ),
    ];
    for (path, method, example) in bodies {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"] =
            example;
    }
    let names = [("tenant", "shop"), ("id", "a"), ("user", "u1")];
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        // `get_mut`, not indexing: indexing a missing key would add it as null.
        let parameters = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut);
        for parameter in parameters.into_iter().flatten() {
            if let Some((_, example)) = names.iter().find(|(name, _)| parameter["name"] == *name) {
                parameter["example"] = Value::from(*example);
            }
        }
    }
}

/// The windows a trending question may ask for: a whole number of s, m, h or d, at most
/// `retention`, as a regular expression.
fn window_pattern(retention: Duration) -> String {
    let units = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];
    let forms: Vec<String> = units
        .iter()
        .filter_map(|(unit, seconds)| {
            let most = retention.as_secs() / seconds;
            (most > 0).then(|| format!("(?:{}){unit}", at_most(most)))
        })
        .collect();
    format!("^(?:{})$", forms.join("|"))
}

/// A regular expression for the whole numbers 1 to `n`, written without leading zeros.
fn at_most(n: u64) -> String {
    let digits: Vec<u8> = n.to_string().bytes().map(|b| b - b'0').collect();
    let len = digits.len();
    let mut forms = Vec::new();
    // Every number with fewer digits.
    for shorter in 1..len {
        forms.push(format!("[1-9][0-9]{{{}}}", shorter - 1));
    }
    // Numbers as long as n: n's first i digits, a smaller digit, then any digits.
    for (i, &d) in digits.iter().enumerate() {
        let low = u8::from(i == 0);
        if d > low {
            let prefix: String = digits[..i].iter().map(|d| char::from(b'0' + d)).collect();
            forms.push(format!("{prefix}[{low}-{}][0-9]{{{}}}", d - 1, len - i - 1));
        }
    }
    forms.push(n.to_string());
    forms.join("|")
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

/// Registers the page and the redirect; `retention` bounds the trending window.
pub fn configure(cfg: &mut web::ServiceConfig, retention: Duration) {
    cfg.route("/docs", web::get().to(docs_redirect))
        .service(service(retention));
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
        assert_eq!(operations, 19);
    }

    #[test]
    fn the_numbers_up_to_n_and_no_others_match() {
        for n in [1, 9, 10, 30, 99, 100, 720, 1000, 43_200, 2_592_000] {
            let re = regex::Regex::new(&format!("^(?:{})$", at_most(n))).unwrap();
            for k in 0..=(n + 1000) {
                assert_eq!(
                    re.is_match(&k.to_string()),
                    (1..=n).contains(&k),
                    "{k} against {n}"
                );
            }
            assert!(!re.is_match(&format!("0{n}")), "no leading zeros");
        }
    }

    #[test]
    fn numbers_below_the_bound_read_as_finite_f32_and_from_it_on_as_infinity() {
        let read = |x: f64| serde_json::from_str::<f32>(&x.to_string()).unwrap();
        let bound = f32_bound();
        assert_eq!(read(bound.next_down()), f32::MAX);
        assert_eq!(read(-bound.next_down()), f32::MIN);
        assert!(read(bound).is_infinite());
    }

    #[test]
    fn the_window_pattern_follows_the_retention() {
        let re = regex::Regex::new(&window_pattern(Duration::from_secs(720 * 3600))).unwrap();
        for ok in ["1s", "2592000s", "43200m", "720h", "24h", "30d", "7d"] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["2592001s", "721h", "31d", "0h", "07d", "24", "h", "24w"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
