//! Health, metrics, documentation, headers, limits and compression.

use reqwest::Method;
use serde_json::{Value, json};

use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestApp, error_code, fresh_database, ids, seeded};

#[tokio::test]
async fn health_reports_each_part() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let live = app
        .client
        .get(format!("{}/health/live", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready: Value = app.public_json("/health/ready").await;
    assert_eq!(
        ready,
        json!({"status": "ready", "indexes": "loaded", "storage": "up", "redis": "up"})
    );
    let sqlite = TestApp::spawn(Backend::Sqlite).await;
    let ready: Value = sqlite.public_json("/health/ready").await;
    assert_eq!(ready["redis"], "off");
}

#[tokio::test]
async fn metrics_count_requests_cache_pools_and_indexes() {
    let app = seeded(Backend::Postgres).await;
    for _ in 0..3 {
        app.similar("shop", "a", "k=2").await;
    }
    app.similar("shop", "zz", "").await;
    let text = app.metrics().await;
    let has = |needle: &str| assert!(text.contains(needle), "{needle} is missing from\n{text}");
    has(
        r#"reco_http_requests_total{method="GET",route="/v1/tenants/{tenant}/entities/{id}/similar",status="200"} 3"#,
    );
    has(
        r#"reco_http_requests_total{method="GET",route="/v1/tenants/{tenant}/entities/{id}/similar",status="404"} 1"#,
    );
    has("reco_http_request_duration_seconds_bucket");
    has(r#"reco_cache_requests_total{level="memory",result="hit",tier="recommendations"} 2"#);
    has(r#"reco_cache_requests_total{level="memory",result="miss",tier="recommendations"} 1"#);
    has(r#"reco_cache_requests_total{level="redis",result="miss",tier="recommendations"} 1"#);
    has(r#"reco_db_pool_connections{state="max"} 10"#);
    has(r#"reco_index_entities{tenant="shop"} 5"#);
}

#[tokio::test]
async fn the_api_documents_itself() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc: Value = app.public_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/tenants/{tenant}",
        "/v1/tenants/{tenant}/keys",
        "/v1/tenants/{tenant}/entities",
        "/v1/tenants/{tenant}/entities/{id}",
        "/v1/tenants/{tenant}/entities/{id}/similar",
        "/v1/tenants/{tenant}/interactions",
        "/v1/tenants/{tenant}/users/{user}/recommendations",
        "/v1/tenants/{tenant}/recommend",
        "/v1/tenants/{tenant}/recommend/batch",
        "/v1/tenants/{tenant}/trending",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let page = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = redirect
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let r = app
        .admin(Method::GET, "/v1/tenants/x")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app
        .admin(Method::GET, "/v1/tenants/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 36, "a UUID");
    let live = app
        .client
        .get(format!("{}/health/live", app.base))
        .send()
        .await
        .unwrap();
    assert!(live.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn each_tenant_has_its_own_budget() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.rate_limit = Some(5);
    let app = TestApp::start(settings).await;
    for name in ["shop", "blog"] {
        // Creating the tenant spends one request of its budget.
        assert_eq!(app.create_tenant(name, 2, "dot").await.status(), 201);
    }
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let r = app.get("/v1/tenants/shop").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "5");
        remaining.push(
            r.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    let over = app.get("/v1/tenants/shop").await;
    assert!(
        over.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(over.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(error_code(over, 429).await, "rate_limited");
    assert_eq!(
        app.get("/v1/tenants/blog").await.status(),
        200,
        "another tenant is not affected"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.body_limit = 4096;
    let app = TestApp::start(settings).await;
    app.create_tenant("shop", 2, "dot").await;
    let big: Vec<Value> = (0..500)
        .map(|i| json!({"id": format!("e{i}"), "vector": [1, 2]}))
        .collect();
    assert_eq!(
        error_code(app.upsert("shop", Value::from(big)).await, 413).await,
        "payload_too_large"
    );
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["entities"], 0);
}

#[tokio::test]
async fn large_answers_are_gzipped_when_asked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_tenant("shop", 2, "dot").await;
    let many: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("entity-{i:04}"), "vector": [1, i]}))
        .collect();
    app.upsert("shop", Value::from(many)).await;
    let zipped = app
        .admin(
            Method::GET,
            "/v1/tenants/shop/entities/entity-0000/similar?k=200",
        )
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let plain = app
        .admin(
            Method::GET,
            "/v1/tenants/shop/entities/entity-0000/similar?k=200",
        )
        .send()
        .await
        .unwrap();
    assert!(!plain.headers().contains_key("content-encoding"));
    let decoding = reqwest::Client::new();
    let r = decoding
        .get(format!(
            "{}/v1/tenants/shop/entities/entity-0000/similar?k=200",
            app.base
        ))
        .bearer_auth(crate::helpers::ADMIN)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 200);
}

#[tokio::test]
async fn the_database_mode_ranks_with_pgvector_alike() {
    let memory = seeded(Backend::Postgres).await;
    let mut settings = memory.settings.clone();
    settings.ranking = reco_server::RankingMode::Database;
    let database = TestApp::start(settings).await;
    for query in [
        "exact=true",
        "exact=true&k=2&offset=1",
        "exact=true&category=music",
        "k=3",
        "exact=true&score_threshold=0.5",
    ] {
        let from_memory: Value = memory
            .similar("shop", "a", query)
            .await
            .json()
            .await
            .unwrap();
        let r = database.similar("shop", "a", query).await;
        assert_eq!(
            r.headers()["x-cache"],
            "miss",
            "the database mode does not cache"
        );
        let from_database: Value = r.json().await.unwrap();
        let ids = |v: &Value| -> Vec<String> {
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(&from_database), ids(&from_memory), "{query}");
    }
    assert_eq!(
        error_code(database.similar("shop", "a", "k=0").await, 400).await,
        "bad_request"
    );
    assert_eq!(
        error_code(database.similar("shop", "zz", "").await, 404).await,
        "not_found"
    );
}

#[tokio::test]
async fn a_read_over_the_time_limit_is_answered_503_and_writes_are_not_cut() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.request_timeout = Duration::from_millis(5);
    let app = TestApp::start(settings).await;
    // Writes are not time-limited: 10,000 entities take far longer than 5 ms, and all land.
    assert_eq!(app.create_tenant("shop", 64, "dot").await.status(), 201);
    let vector: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let big: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("e{i}"), "vector": vector}))
        .collect();
    assert_eq!(app.upsert("shop", Value::from(big)).await.status(), 200);
    // A batch of 2,000 exact recommendations, each scanning all 10,000 entities, is a read
    // far longer than 5 ms on any machine. (Approximate ones are not: the graph answers each in
    // microseconds, and 500 of them once fitted in the limit.)
    let requests: Vec<Value> = (0..2_000)
        .map(|i| json!({"positive": [format!("e{i}")], "k": 5, "exact": true}))
        .collect();
    let r = app
        .admin(Method::POST, "/v1/tenants/shop/recommend/batch")
        .header("x-request-id", "slow-1")
        .json(&json!({ "requests": requests }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "slow-1",
        "the id survives the time limit"
    );
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, 503).await, "unavailable");
}

#[tokio::test]
async fn concurrent_exact_questions_share_passes_and_answer_as_one_by_one() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.cache = false;
    settings.engine.cache.enabled = false;
    // Scans of this small tenant cost less than the hop to the rankers, so they would be
    // answered on the HTTP workers; here every question goes to the rankers, where the shared
    // passes are.
    settings.inline_work = 0;
    let batched = TestApp::start(settings.clone()).await;
    assert_eq!(
        batched.create_tenant("shop", 8, "cosine").await.status(),
        201
    );
    // 1,500 entities: enough for the shared pass (it skips tenants under 1,000).
    let entities: Vec<Value> = (0..1_500)
        .map(|i| {
            let vector: Vec<f32> = (0..8)
                .map(|d| ((i * 31 + d * 7) % 97) as f32 / 97.0 - 0.5)
                .collect();
            json!({"id": format!("e{i}"), "vector": vector})
        })
        .collect();
    assert_eq!(batched.upsert("shop", json!(entities)).await.status(), 200);
    settings.batch_max = 0;
    let alone = TestApp::start(settings).await;

    let query = |i: usize| match i % 3 {
        0 => "exact=true&k=5",
        1 => "exact=true&k=3&offset=2",
        _ => "exact=true&k=4&exclude=e7,e8",
    };
    let app = &batched;
    let answers = futures::future::join_all((0..60).map(|i| async move {
        let r = app.similar("shop", &format!("e{i}"), query(i)).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        let r = alone.similar("shop", &format!("e{i}"), query(i)).await;
        let one: Value = r.json().await.unwrap();
        assert_eq!(answer, &one, "e{i}: {}", query(i));
    }
    // Every question went through the batcher once, in passes of one or more; none did on the
    // server that batches nothing. An approximate question does not go through it.
    assert_eq!(batched.similar("shop", "e1", "k=5").await.status(), 200);
    let text = |app: &TestApp| {
        let get = app.client.get(format!("{}/metrics", app.base)).send();
        async move { get.await.unwrap().text().await.unwrap() }
    };
    let metrics = text(&batched).await;
    assert!(
        metrics.contains("reco_batch_questions_sum 60\n"),
        "{metrics}"
    );
    assert!(
        text(&alone)
            .await
            .contains("reco_batch_questions_count 0\n")
    );
}

/// Issue 14, F11: an unknown path is a `404` in the error envelope, and a known path asked with
/// another method a `405` with `Allow` (the methods come from the OpenAPI document), in and out
/// of the tenant scope.
#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405_with_allow() {
    let app = seeded(Backend::Sqlite).await;
    assert_eq!(error_code(app.get("/nope").await, 404).await, "not_found");
    assert_eq!(
        error_code(app.get("/v1/tenants/shop/nothing/here").await, 404).await,
        "not_found"
    );
    for (method, path, allow) in [
        (Method::PATCH, "/health/live", "GET"),
        (Method::POST, "/metrics", "GET"),
        (Method::POST, "/v1/tenants/shop", "GET, PUT, DELETE"),
        (Method::GET, "/v1/tenants/shop/keys", "POST"),
        (Method::PATCH, "/v1/tenants/shop/entities/a", "GET, DELETE"),
    ] {
        let response = app.admin(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
    }
}

/// The graph's breadth follows the recall measured on the tenant's own questions: before
/// enough were audited the view shows the configured breadth and no estimate; after, the
/// least breadth that holds the server's target (on clustered data, less than the configured
/// 64), the recall measured at it, and how many questions it reads, in the tenant's view and
/// in `/metrics`; recall measured independently at that breadth holds the target too.
#[tokio::test]
async fn the_search_breadth_follows_measured_recall() {
    use rand::{Rng, SeedableRng};
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.cache = false;
    let app = TestApp::start(settings).await;
    assert_eq!(app.create_tenant("big", 32, "cosine").await.status(), 201);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..32).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let entities: Vec<Value> = (0..8_000)
        .map(|i| {
            let vector: Vec<f32> = centres[i % 40]
                .iter()
                .map(|x| x + rng.random_range(-0.4..0.4))
                .collect();
            json!({"id": format!("e{i}"), "vector": vector})
        })
        .collect();
    assert_eq!(app.upsert("big", Value::from(entities)).await.status(), 200);
    let view: Value = app.get("/v1/tenants/big").await.json().await.unwrap();
    assert_eq!(view["search"]["breadth"], 64, "{view}");
    assert_eq!(view["search"]["recall"], Value::Null);
    let started = Instant::now();
    let mut asked = 0;
    let view = loop {
        for _ in 0..64 {
            let id = (asked * 7919) % 8_000;
            asked += 1;
            let r = app.similar("big", &format!("e{id}"), "").await;
            assert_eq!(r.status(), 200);
        }
        let view: Value = app.get("/v1/tenants/big").await.json().await.unwrap();
        if view["search"]["recall"].is_f64() {
            break view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no estimate after {asked} questions: {view}"
        );
    };
    let search = &view["search"];
    assert!(search["recall"].as_f64().unwrap() >= 0.99, "{view}");
    assert!(search["samples"].as_u64().unwrap() >= 50, "{view}");
    // The tuner sets the breadth within a second or two of its estimate.
    let deadline = Instant::now() + Duration::from_secs(5);
    let breadth = loop {
        let view: Value = app.get("/v1/tenants/big").await.json().await.unwrap();
        let breadth = view["search"]["breadth"].as_u64().unwrap();
        if breadth < 64 {
            break breadth;
        }
        assert!(
            Instant::now() < deadline,
            "the breadth was never lowered: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reco_engine::LADDER.contains(&usize::try_from(breadth).unwrap()));
    // Recall at the chosen breadth on other questions, against exact answers.
    let (mut found, mut wanted) = (0, 0);
    for id in (1..8_000).step_by(97) {
        let path = format!("e{id}");
        let exact = ids(app.similar("big", &path, "exact=true").await).await;
        let graph = ids(app.similar("big", &path, "").await).await;
        found += graph.iter().filter(|g| exact.contains(g)).count();
        wanted += exact.len();
    }
    let recall =
        f64::from(u32::try_from(found).unwrap()) / f64::from(u32::try_from(wanted).unwrap());
    assert!(recall >= 0.98, "recall {recall} at breadth {breadth}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("reco_search{measure=\"breadth\",tenant=\"big\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("reco_search{measure=\"recall\",tenant=\"big\"}"));
}
