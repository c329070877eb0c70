//! `TestApp`: a server of its own on a fresh database, and typed requests.

use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use rand::Rng;
use reco_server::{Application, Settings};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use sqlx::Connection;

pub const ADMIN: &str = "test-admin-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test, which starts the services")
    })
}

fn random_name() -> String {
    format!("reco_test_{:016x}", rand::rng().random::<u64>())
}

/// Makes an empty PostgreSQL database on the test server and answers its URL.
pub async fn create_pg_database() -> String {
    let admin = required_env("RECO_TEST_DATABASE_URL");
    let name = random_name();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// A fresh, empty database: a PostgreSQL URL, or a SQLite folder.
pub async fn fresh_database(backend: Backend) -> Settings {
    let mut settings = Settings::default();
    match backend {
        Backend::Postgres => {
            settings.database_url = Some(create_pg_database().await);
            settings.redis_url = Some(required_env("RECO_TEST_REDIS_URL"));
            settings.postgres.max_connections = 10;
            settings.postgres.min_connections = 1;
        }
        Backend::Sqlite => {
            settings.sqlite.path = std::env::temp_dir().join(random_name()).join("reco.db");
        }
    }
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.admin_key = Some(ADMIN.to_owned());
    settings.rate_limit = None;
    settings
}

#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    handle: ServerHandle,
    /// The served application, until it stops (and has written its tenant images).
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::start(fresh_database(backend).await).await
    }

    /// A server on the given settings (another server on the same database, say), ready.
    pub async fn start(settings: Settings) -> Self {
        let test = Self::start_loading(settings).await;
        test.wait_ready().await;
        test
    }

    /// A server on the given settings, still loading its indexes.
    pub async fn start_loading(settings: Settings) -> Self {
        let app = Application::build(settings.clone())
            .await
            .expect("the server builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let running = std::sync::Mutex::new(Some(tokio::spawn(app.run_until_stopped())));
        let client = reqwest::Client::builder().no_gzip().build().unwrap();
        Self {
            base,
            client,
            settings,
            handle,
            running,
        }
    }

    /// Stops the server gracefully and waits until it is done, its images written.
    pub async fn stop_and_finish(&self) {
        self.stop().await;
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.await.unwrap().unwrap();
        }
    }

    /// Whether `/health/ready` answers 200.
    pub async fn is_ready(&self) -> bool {
        let ready = self
            .client
            .get(format!("{}/health/ready", self.base))
            .send()
            .await;
        ready.is_ok_and(|r| r.status() == 200)
    }

    /// Stops the server gracefully: requests in flight are answered first.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if self.is_ready().await {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server never became ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path, Some(ADMIN))
    }

    pub async fn create_tenant(&self, tenant: &str, dimension: usize, metric: &str) -> Response {
        self.admin(Method::PUT, &format!("/v1/tenants/{tenant}"))
            .json(&json!({ "dimension": dimension, "metric": metric }))
            .send()
            .await
            .unwrap()
    }

    pub async fn create_key(&self, tenant: &str) -> String {
        let r = self
            .admin(Method::POST, &format!("/v1/tenants/{tenant}/keys"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn upsert(&self, tenant: &str, entities: Value) -> Response {
        self.admin(Method::PUT, &format!("/v1/tenants/{tenant}/entities"))
            .json(&json!({ "entities": entities }))
            .send()
            .await
            .unwrap()
    }

    /// An upsert whose body is sent as written (to keep what a JSON value would lose: keys
    /// given twice, the spelling of numbers, nesting past a parser's limit).
    pub async fn upsert_text(&self, tenant: &str, body: impl Into<String>) -> Response {
        self.admin(Method::PUT, &format!("/v1/tenants/{tenant}/entities"))
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap()
    }

    pub async fn interact(&self, tenant: &str, interactions: Value) -> Response {
        self.admin(Method::POST, &format!("/v1/tenants/{tenant}/interactions"))
            .json(&json!({ "interactions": interactions }))
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus text of `/metrics`, asked from loopback without a key.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A public document (health, the OpenAPI document) as JSON, asked without a key.
    pub async fn public_json(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.admin(Method::GET, path).send().await.unwrap()
    }

    pub async fn similar(&self, tenant: &str, id: &str, query: &str) -> Response {
        self.get(&format!(
            "/v1/tenants/{tenant}/entities/{id}/similar?{query}"
        ))
        .await
    }

    pub async fn recommend(&self, tenant: &str, body: Value) -> Response {
        self.admin(Method::POST, &format!("/v1/tenants/{tenant}/recommend"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST .../recommend/batch` with `requests`.
    pub async fn recommend_batch(&self, tenant: &str, requests: Value) -> Response {
        self.admin(
            Method::POST,
            &format!("/v1/tenants/{tenant}/recommend/batch"),
        )
        .json(&json!({ "requests": requests }))
        .send()
        .await
        .unwrap()
    }
}

/// A small catalogue of `shop` (dot product, 3 dimensions) whose order is known.
pub async fn seeded(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.create_tenant("shop", 3, "dot").await.status(), 201);
    let r = app
        .upsert(
            "shop",
            json!([
                {"id": "a", "vector": [1.0, 0.0, 0.0], "category": "books", "tags": ["new", "sale"], "attributes": {"price": 12}},
                {"id": "b", "vector": [0.9, 0.1, 0.0], "category": "books", "tags": ["new"]},
                {"id": "c", "vector": [0.5, 0.5, 0.0], "category": "music", "tags": ["sale"]},
                {"id": "d", "vector": [0.0, 1.0, 0.0], "category": "music"},
                {"id": "e", "vector": [0.0, 0.0, 1.0]}
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    app
}

/// `mall` (dot product, 2 dimensions): entities 0..10 are liked together by users `u0`..`u14`,
/// 10..20 by `u15`..`u29`, about four in five each; the content vectors say nothing of it
/// (they alternate between two directions by parity).
pub async fn mall(app: &TestApp) {
    assert_eq!(app.create_tenant("mall", 2, "dot").await.status(), 201);
    let entities: Vec<Value> = (0..20)
        .map(|n| json!({"id": format!("e{n}"), "vector": if n % 2 == 0 { [1.0, 0.1] } else { [0.1, 1.0] }}))
        .collect();
    assert_eq!(
        app.upsert("mall", Value::from(entities)).await.status(),
        200
    );
    assert_eq!(app.interact("mall", group_likes()).await.status(), 200);
}

/// The likes of `mall` (and of any tenant with entities `e0`..`e19`): users `u0`..`u14` like
/// about four in five of `e0`..`e9`, `u15`..`u29` of `e10`..`e19`.
pub fn group_likes() -> Value {
    let mut likes = Vec::new();
    for u in 0..30usize {
        let base = if u < 15 { 0 } else { 10 };
        for n in base..base + 10 {
            if !(u * 7 + n * 3).is_multiple_of(5) {
                likes.push(
                    json!({"user": format!("u{u}"), "entity": format!("e{n}"), "kind": "like"}),
                );
            }
        }
    }
    Value::from(likes)
}

/// Asks `app` to train `tenant`'s model and waits until its status is ready at `version`.
pub async fn train(app: &TestApp, tenant: &str, version: u64) -> Value {
    let started = app
        .admin(Method::POST, &format!("/v1/tenants/{tenant}/model/train"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    model_at(app, tenant, version).await
}

/// Waits (at most 20 s) until `app` serves `tenant`'s model at `version`, ready.
pub async fn model_at(app: &TestApp, tenant: &str, version: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = app.get(&format!("/v1/tenants/{tenant}/model")).await;
        if response.status() == 200 {
            let model: Value = response.json().await.unwrap();
            if model["state"] == "ready" && model["version"] == version {
                return model;
            }
            assert!(model["state"] != "failed", "the training failed: {model}");
        }
        assert!(
            Instant::now() < deadline,
            "{tenant}'s model never reached version {version}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The ids of a `{"results": [...]}` answer.
pub async fn ids(response: Response) -> Vec<String> {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The error code of an error answer, after checking the status.
pub async fn error_code(response: Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    body["error"]["code"].as_str().unwrap().to_owned()
}
