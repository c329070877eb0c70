//! Building and running the service.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Compress, Next, from_fn};
use actix_web::{App, HttpMessage, HttpServer, ResponseError, web};
use reco_engine::{Engine, EngineError};
use reco_storage::{RedisCache, StorageError, Store};
use tracing::Instrument;

use crate::admission;
use crate::error::ApiError;
use crate::routes::{entities, interactions, model, recommendations, tenants};
use crate::settings::{AccessLog, Settings};
use crate::state::AppState;
use crate::{health, sync};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Storage could not be opened or migrated.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The engine refused its settings.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The batch threads could not be started.
    #[error("cannot start the batch threads: {0}")]
    Threads(std::io::Error),
}

/// A built service: listening, warming up, and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens storage (migrating it), binds the listener (port 0 picks a free one), and starts
    /// loading the indexes in the background; `/health/ready` answers 503 until they are loaded.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = Store::open(
            settings.database_url.as_deref(),
            settings.postgres_for_ranking(),
            settings.sqlite.clone(),
        )
        .await?;
        store.migrate().await?;
        let engine = Arc::new(Engine::new(settings.engine.clone())?);
        let redis = settings
            .redis_url
            .as_deref()
            .map(|url| RedisCache::new(url, settings.redis.clone(), settings.engine.cache.clone()))
            .transpose()?;
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            address: settings.bind,
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: settings.bind,
                source,
            })?
            .port();
        // The banner, before anything is served: a person reads where to go from here.
        let host = match settings.bind.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let base = format!("http://{host}:{port}");
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            url = %base,
            docs = %format!("{base}/docs/"),
            storage = %settings.storage_description(),
            redis = %settings.redis_description(),
            "reco is listening; loading the indexes (ready when /health/ready says so)"
        );
        let settings = Arc::new(settings);
        let state =
            AppState::new(engine, store, redis, settings.clone()).map_err(StartupError::Threads)?;
        let state = web::Data::new(state);
        let app_state = state.clone();
        let body_limit = settings.body_limit;
        let routes = settings.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(query_config())
                .app_data(path_config())
                .configure(|cfg| configure(cfg, &routes))
                .default_service(web::to(crate::docs::fallback))
                .wrap(from_fn(time_limit))
                .wrap(from_fn(envelope))
                .wrap(Compress::default())
        })
        .workers(settings.http_workers)
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            address: settings.bind,
            source,
        })?
        .shutdown_timeout(30)
        // Signals are the binary's (`run_until_signalled`): actix would force a stop on
        // SIGINT, cutting requests in flight.
        .disable_signals()
        .run();
        tokio::spawn(sync::warm_up_then_follow(state.clone()));
        tokio::spawn(crate::breadth::keep_tuning(state.clone()));
        tokio::spawn(crate::images::keep_writing(
            state.clone(),
            state.settings.image_interval,
        ));
        Ok(Self {
            port,
            server,
            state,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop it gracefully: in-flight requests finish first.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    /// The shared state, for tests that look inside.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until stopped through [`Application::handle`], then writes the images of the
    /// tenants that changed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        write_images(&self.state).await;
        served
    }

    /// Serves until SIGINT or SIGTERM, which stop it gracefully: it accepts nothing more and
    /// answers the requests in flight (a write among them commits and is answered) for up to
    /// 30 s. A second signal stops it at once.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let handle = self.server.handle();
        let watcher = tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!(
                "stopping: answering the requests in flight (a second signal stops at once)"
            );
            let graceful = tokio::spawn({
                let handle = handle.clone();
                async move { handle.stop(true).await }
            });
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::warn!("stopping at once: requests in flight are cut");
            graceful.abort();
            handle.stop(false).await;
        });
        let served = self.server.await;
        watcher.abort();
        write_images(&self.state).await;
        tracing::info!("stopped");
        served
    }
}

/// Writes the images of changed tenants, once the indexes were loaded (a server stopped while
/// loading has nothing newer than what it read).
async fn write_images(state: &AppState) {
    if state.is_ready() {
        crate::images::write_changed(state).await;
    }
}

/// The routes. Actix tries them in order, and each pattern with a `{segment}` is a regular
/// expression run on the path, so the order is part of every request's cost (measured: routing
/// was 7% of a similar request's server time with `regex-lite`; with actix's `unicode` feature
/// the `regex` crate matches them with a one-pass DFA, 1% of a cached request's time where
/// `regex-lite`'s PikeVM took 6.5%): the tenant scope comes before the dashboard's and the
/// docs' patterns, its hottest routes come first, and each path is one resource with all its
/// methods (one match, not one per method). A method a path lacks reaches `fallback`
/// (`405` with `Allow`), as an unknown path does (`404`).
fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    let retention = settings.engine.trending_retention;
    let resource = |path: &str| web::resource(path).default_service(web::to(crate::docs::fallback));
    cfg.service(
        web::scope("/v1/tenants/{tenant}")
            .wrap(from_fn(admission::admit))
            .service(resource("/entities/{id}/similar").get(recommendations::similar))
            .service(
                resource("/users/{user}/recommendations")
                    .get(recommendations::user_recommendations),
            )
            .service(resource("/recommend").post(recommendations::recommend))
            .service(resource("/recommend/batch").post(recommendations::recommend_batch))
            .service(resource("/trending").get(recommendations::trending))
            .service(resource("/interactions").post(interactions::post_interactions))
            .service(
                resource("/entities")
                    .put(entities::put_entities)
                    .get(entities::list_entities),
            )
            .service(
                resource("/entities/{id}")
                    .get(entities::get_entity)
                    .delete(entities::delete_entity),
            )
            .service(
                resource("")
                    .put(tenants::put_tenant)
                    .get(tenants::get_tenant)
                    .delete(tenants::delete_tenant),
            )
            .service(resource("/users/{user}").get(recommendations::user_history))
            .service(resource("/model").get(model::get_model))
            .service(resource("/model/train").post(model::train_model))
            .service(
                resource("/model/evaluation")
                    .get(model::get_evaluation)
                    .post(model::start_evaluation),
            )
            .service(resource("/keys").post(tenants::create_key)),
    )
    .route("/v1/tenants", web::get().to(tenants::list_tenants))
    .route("/health/live", web::get().to(health::live))
    .route("/health/ready", web::get().to(health::ready))
    .route("/metrics", web::get().to(health::metrics))
    .configure(crate::ui::configure)
    .configure(|cfg| crate::docs::configure(cfg, retention));
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let overflow = matches!(
                err,
                JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. }
            );
            let api = if overflow {
                ApiError::PayloadTooLarge(format!("a request body is at most {limit} bytes"))
            } else {
                ApiError::BadRequest(format!("the body is not valid: {err}"))
            };
            actix_web::error::InternalError::from_response(err, api.error_response()).into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        let api = ApiError::BadRequest(format!("the query string is not valid: {err}"));
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        let api = ApiError::BadRequest(format!("the path is not valid: {err}"));
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    })
}

fn request_id(req: &ServiceRequest) -> HeaderValue {
    req.headers()
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a header value")
        })
}

/// The id of a request, for the layers inside the envelope.
#[derive(Debug, Clone)]
struct RequestId(HeaderValue);

/// Around every request: a request id (echoed or made), a span for the logs, the rate-limit
/// headers, and the request metrics.
async fn envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the state is registered");
    let method = req.method().clone();
    // A path whose percent-encoding is not UTF-8 would be decoded with replacement characters,
    // and different bytes would alias one id: refused before routing.
    if let Some(refused) = undecodable(req.path()) {
        let mut res = req.into_response(refused.error_response());
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), id);
        return Ok(res.map_into_right_body());
    }
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or("-"),
        method = %method,
        path = %req.path(),
    );
    let served = next
        .call(req)
        .instrument(span.clone())
        .await
        .map(ServiceResponse::map_into_left_body);
    let elapsed = started.elapsed();
    let mut res = match served {
        Ok(res) => res,
        Err(e) => {
            // Only the time limit answers with an error here; its response carries the id.
            let code = e.as_response_error().status_code();
            let status = code.as_u16();
            state.metrics.observe_request(
                "timed out",
                method.as_str(),
                code.as_str(),
                elapsed.as_secs_f64(),
            );
            span.in_scope(|| tracing::warn!(status, error = %e, "served"));
            return Err(e);
        }
    };
    let code = res.status();
    let status = code.as_u16();
    res.headers_mut()
        .insert(HeaderName::from_static("x-request-id"), id);
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    state.metrics.observe_request(
        &route,
        method.as_str(),
        code.as_str(),
        elapsed.as_secs_f64(),
    );
    access_log(
        &span,
        &state.settings,
        &route,
        status,
        elapsed,
        res.request().match_info().get("tenant"),
    );
    Ok(res)
}

/// The access log's line about one answered request, in the request's span (request id,
/// method, path): its route, status, time and tenant. Server errors are warnings; health and
/// metrics polls (a readiness poll answers 503 while loading) are at debug, so a load
/// balancer's polling does not fill the log.
fn access_log(
    span: &tracing::Span,
    settings: &Settings,
    route: &str,
    status: u16,
    elapsed: std::time::Duration,
    tenant: Option<&str>,
) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    let tenant = tenant.unwrap_or("-");
    let poll = route.starts_with("/health/") || route == "/metrics";
    span.in_scope(
        || match (status >= 500 && !poll, poll, settings.access_log) {
            (true, _, _) => tracing::warn!(route, status, ms, tenant, "served"),
            (false, true, _) | (false, false, AccessLog::Debug) => {
                tracing::debug!(route, status, ms, tenant, "served");
            }
            (false, false, AccessLog::Info) => tracing::info!(route, status, ms, tenant, "served"),
            (false, false, AccessLog::Off) => {}
        },
    );
}

/// The refusal of a path that is not valid percent-encoded UTF-8, if it is not.
fn undecodable(path: &str) -> Option<ApiError> {
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .err()
        .map(|_| {
            ApiError::BadRequest(
                "the path is not valid percent-encoded UTF-8 (an id is UTF-8 text)".into(),
            )
        })
}

/// Whether a request writes. A write is never cut short: cancelled after its commit and before
/// the engine applied it, it would leave memory behind storage, and a client retrying the 503
/// would record its interactions twice. Writes are bounded by the database's own limits
/// (acquire and statement timeouts) instead.
fn writes(req: &ServiceRequest) -> bool {
    let method = req.method();
    method == actix_web::http::Method::PUT
        || method == actix_web::http::Method::DELETE
        || (method == actix_web::http::Method::POST
            && (req.path().ends_with("/interactions") || req.path().ends_with("/keys")))
}

/// Inside the envelope: a read that takes longer than the limit is answered 503.
async fn time_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if writes(&req) {
        return next.call(req).await;
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the state is registered");
    let limit = state.settings.request_timeout;
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(served) => served,
        Err(_) => Err(ApiError::TimedOut {
            after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            request_id,
        }
        .into()),
    }
}
