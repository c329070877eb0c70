//! Issue 14: every request bounded, every input total. One test (or more) per finding, each
//! failing before its fix.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestApp, error_code, fresh_database};

both!(
    nul_and_deep_nesting_are_refused_alike,
    attributes_come_back_as_sent_and_keys_twice_are_refused,
    tenants_set_their_own_budget,
    interaction_counts_survive_a_restart,
);

/// A cosine tenant `big` of `n` entities of `dim` components, in one batch.
async fn big(app: &TestApp, n: usize, dim: usize) {
    assert_eq!(app.create_tenant("big", dim, "cosine").await.status(), 201);
    let entities: Vec<Value> = (0..n)
        .map(|i| {
            let v: Vec<f32> = (0..dim)
                .map(|d| ((i * 31 + d * 7) % 97) as f32 + 1.0)
                .collect();
            json!({"id": format!("e{i}"), "vector": v})
        })
        .collect();
    assert_eq!(app.upsert("big", Value::from(entities)).await.status(), 200);
}

/// The question of finding F1: best score, a deep page, full diversity.
fn heavy() -> Value {
    json!({"positive": ["e1", "e2"], "strategy": "best_score", "k": 1000, "offset": 5000,
           "diversity": 1.0, "exact": true})
}

async fn live_within(app: &TestApp, bound: Duration) {
    let started = Instant::now();
    let live = app
        .client
        .get(format!("{}/health/live", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        started.elapsed() < bound,
        "/health/live took {:?}",
        started.elapsed()
    );
}

/// F1: a ranking that would take seconds is refused by the budget, naming what to lower.
#[tokio::test]
async fn work_over_the_budget_is_refused_naming_what_to_lower() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.engine.work_budget = 50_000_000;
    settings.batch_work_budget = 20_000_000;
    let app = TestApp::start(settings).await;
    big(&app, 2_000, 16).await;
    let refused = app.recommend("big", heavy()).await;
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("diversity"), "{message}");
    // A batch whose questions are each within the budget but together are not.
    let light = json!({"positive": ["e1"], "k": 10, "exact": true});
    let r = app
        .recommend_batch("big", Value::from(vec![light.clone(); 1000]))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fewer requests"),
        "{body}"
    );
    // Within both budgets, both are answered.
    assert_eq!(app.recommend("big", light).await.status(), 200);
}

/// F1 and F2: a ranking past the time limit answers 503 and stops there, in its middle: the one
/// ranking thread is free at once for the next question. `/health/live` answers meanwhile.
#[tokio::test]
async fn work_past_the_time_limit_stops_with_its_answer() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.engine.work_budget = u64::MAX;
    settings.batch_work_budget = u64::MAX;
    settings.request_timeout = Duration::from_millis(300);
    settings.rank_threads = 1;
    // Every question hops to the one ranker, so the light ones below find it free or not.
    settings.inline_work = 0;
    let app = TestApp::start(settings).await;
    big(&app, 8_000, 256).await;
    for _ in 0..2 {
        let started = Instant::now();
        let slow = {
            let app = &app;
            async move { app.recommend("big", heavy()).await }
        };
        let probe = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            live_within(&app, Duration::from_millis(500)).await;
        };
        let (slow, ()) = tokio::join!(slow, probe);
        assert_eq!(error_code(slow, 503).await, "unavailable");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Uncut, the ranking above holds the only thread for many seconds (billions of
        // multiply-adds); stopped, the thread answers this at once.
        let started = Instant::now();
        let light = json!({"positive": ["e1"], "k": 5});
        assert_eq!(app.recommend("big", light).await.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the thread was still busy: {:?}",
            started.elapsed()
        );
    }
    // A batch of such questions stops between or inside them the same way.
    let r = app
        .recommend_batch("big", Value::from(vec![heavy(); 50]))
        .await;
    assert_eq!(error_code(r, 503).await, "unavailable");
    let started = Instant::now();
    let light = json!({"positive": ["e2"], "k": 5});
    assert_eq!(app.recommend("big", light).await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Issue 17: a question cheaper than the hop to a ranker is answered on the HTTP worker, so
/// it is not queued behind a long ranking that holds the only ranker.
#[tokio::test]
async fn cheap_questions_do_not_wait_behind_a_busy_ranker() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.engine.work_budget = u64::MAX;
    settings.request_timeout = Duration::from_secs(10);
    settings.rank_threads = 1;
    // Above a scan of the whole tenant (8,000 x 256 components), far below the heavy question.
    settings.inline_work = 4_000_000;
    let app = TestApp::start(settings).await;
    big(&app, 8_000, 256).await;
    let slow = async {
        let started = Instant::now();
        // Three times the examples of `heavy`: a second or more of one core.
        let mut question = heavy();
        question["positive"] = json!(["e1", "e2", "e3", "e4", "e5", "e6"]);
        let r = app.recommend("big", question).await;
        (r.status(), started.elapsed())
    };
    let light = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        for (i, exact) in [(1, false), (2, true), (3, false)] {
            let question = json!({"positive": [format!("e{i}")], "k": 5, "exact": exact});
            assert_eq!(app.recommend("big", question).await.status(), 200);
        }
        started.elapsed()
    };
    let ((status, slow_took), light_took) = tokio::join!(slow, light);
    // The heavy question held the ranker long past the light ones.
    assert_eq!(status, 200);
    assert!(slow_took > Duration::from_millis(500), "{slow_took:?}");
    assert!(
        light_took < slow_took / 4,
        "the light questions waited for the ranker: {light_took:?} (heavy {slow_took:?})"
    );
}

/// F4: a body that trickles in is answered 408 at its deadline, after authentication.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.body_timeout = Duration::from_millis(1_000);
    let app = TestApp::start(settings).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    let address = app.base.trim_start_matches("http://").to_owned();
    let head = |key: &str| {
        format!(
            "PUT /v1/tenants/shop/entities HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"entit"
        )
    };
    let answer = |key: String| {
        let address = address.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream.write_all(head(&key).as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut text = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut text))
                .await
                .expect("the server answered before the client gave up")
                .unwrap();
            (
                String::from_utf8_lossy(&text[..n]).into_owned(),
                started.elapsed(),
            )
        }
    };
    let (text, waited) = answer(crate::helpers::ADMIN.to_owned()).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // Without a valid key the body is not waited for at all.
    let (text, waited) = answer("wrong".to_owned()).await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(waited < Duration::from_millis(800), "{waited:?}");
}

/// F5: NUL in any name or label, and attributes nested past 32, are 400 on both backends
/// (PostgreSQL answered 500, the embedded database accepted them).
async fn nul_and_deep_nesting_are_refused_alike(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    for entity in [
        json!({"id": "a\u{0}b", "vector": [1, 0]}),
        json!({"id": "a", "vector": [1, 0], "category": "x\u{0}"}),
        json!({"id": "a", "vector": [1, 0], "tags": ["ok", "\u{0}"]}),
        json!({"id": "a", "vector": [1, 0], "attributes": {"k": "v\u{0}"}}),
        json!({"id": "a", "vector": [1, 0], "attributes": {"k\u{0}": 1}}),
    ] {
        let r = app.upsert("shop", json!([entity])).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{entity}");
    }
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(
        r#"{{"entities": [{{"id": "a", "vector": [1, 0], "attributes": {{"k": {deep}}}}}]}}"#
    );
    let r = app.upsert_text("shop", body).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    let nested = format!("{}1{}", "[".repeat(32), "]".repeat(32));
    let body = format!(
        r#"{{"entities": [{{"id": "a", "vector": [1, 0], "attributes": {{"k": {nested}}}}}]}}"#
    );
    let r = app.upsert_text("shop", body).await;
    assert_eq!(
        error_code(r, 400).await,
        "bad_request",
        "33 deep with the object"
    );
    let r = app
        .interact(
            "shop",
            json!([{"user": "u\u{0}", "entity": "a", "kind": "view"}]),
        )
        .await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    // Nothing was stored.
    let view: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(
        (view["entities"].as_u64(), view["interactions"].as_u64()),
        (Some(0), Some(0))
    );
}

/// F9: attributes come back as the text sent (PostgreSQL turned `1e2` into `100` and kept one
/// of two equal keys); a key given twice is refused.
async fn attributes_come_back_as_sent_and_keys_twice_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    let attributes = r#"{"price":1e2,"b":{"z":[1,2.50,"x"],"a":null},"é":true}"#;
    let body =
        format!(r#"{{"entities": [{{"id": "a", "vector": [1, 0], "attributes": {attributes}}}]}}"#);
    let r = app.upsert_text("shop", body).await;
    assert_eq!(r.status(), 200);
    let text = app
        .get("/v1/tenants/shop/entities/a")
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains(attributes), "{text}");
    let twice = r#"{"entities": [{"id": "b", "vector": [1, 0], "attributes": {"a": 1, "a": 2}}]}"#;
    let r = app.upsert_text("shop", twice).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    assert_eq!(app.get("/v1/tenants/shop/entities/b").await.status(), 404);
}

/// A tenant's own `rate_limit`: made with it, shown, applied, kept across a restart, and a
/// conflict when asked again with another. Without one, the server's default: no limit.
async fn tenants_set_their_own_budget(backend: Backend) {
    let settings = fresh_database(backend).await;
    let app = TestApp::start(settings.clone()).await;
    let put = |body: Value| {
        app.admin(Method::PUT, "/v1/tenants/slow")
            .json(&body)
            .send()
    };
    let r = put(json!({"dimension": 2, "metric": "dot", "rate_limit": 0}))
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
    let made = put(json!({"dimension": 2, "metric": "dot", "rate_limit": 1}))
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let view: Value = made.json().await.unwrap();
    assert_eq!(view["rate_limit"], 1);
    // The limit holds from the next request on: this one takes its one token.
    let r = put(json!({"dimension": 2, "metric": "dot", "rate_limit": 2}))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-ratelimit-limit"], "1");
    assert_eq!(error_code(r, 409).await, "conflict");
    let over = app.get("/v1/tenants/slow").await;
    assert_eq!(over.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(error_code(over, 429).await, "rate_limited");
    // Another tenant, with no limit of its own and none by default, is never throttled.
    assert_eq!(app.create_tenant("free", 2, "dot").await.status(), 201);
    for _ in 0..50 {
        let r = app.get("/v1/tenants/free").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-ratelimit-limit"],
            u32::MAX.to_string().as_str()
        );
    }
    app.stop().await;
    drop(app);
    let again = TestApp::start(settings).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(again.get("/v1/tenants/slow").await.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 429, 429],
        "the limit is stored with the tenant"
    );
}

/// F14: keys this server does not know are looked up in storage at most `unknown_key_rate`
/// times a second per client address; a key known to open nothing is answered from memory.
#[tokio::test]
async fn unknown_keys_are_throttled_per_address() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.unknown_key_rate = 3;
    let app = TestApp::start(settings).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    let mut statuses = Vec::new();
    for n in 0..10 {
        let r = app
            .request(Method::GET, "/v1/tenants/shop", Some(&format!("guess-{n}")))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..3], [401, 401, 401]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // Remembered as opening nothing: no lookup needed, so not throttled.
    let r = app
        .request(Method::GET, "/v1/tenants/shop", Some("guess-0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The admin key never needs a lookup.
    assert_eq!(app.get("/v1/tenants/shop").await.status(), 200);
}

/// F15: every answer about a tenant carries the rate-limit headers, refusals included, and a
/// refusal does not spend the budget.
#[tokio::test]
async fn refusals_about_a_tenant_carry_the_budget() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.rate_limit = Some(100);
    let app = TestApp::start(settings).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    assert_eq!(app.create_tenant("blog", 2, "dot").await.status(), 201);
    let blog_key = app.create_key("blog").await;
    let no_key = app
        .request(Method::GET, "/v1/tenants/shop", None)
        .send()
        .await
        .unwrap();
    let other = app
        .request(Method::GET, "/v1/tenants/shop", Some(&blog_key))
        .send()
        .await
        .unwrap();
    let bad_body = app.upsert("shop", json!([{"id": ""}])).await;
    for (r, status) in [(no_key, 401), (other, 403), (bad_body, 400)] {
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["x-ratelimit-limit"], "100", "{status}");
        let remaining: u32 = r.headers()["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((97..=99).contains(&remaining), "{status}: {remaining}");
    }
}

/// F8: interactions older than the history a server loads still count: the tenant's count is
/// the same after a restart.
async fn interaction_counts_survive_a_restart(backend: Backend) {
    let mut settings = fresh_database(backend).await;
    settings.history = Duration::from_secs(86_400);
    let app = TestApp::start(settings.clone()).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    assert_eq!(
        app.upsert("shop", json!([{"id": "a", "vector": [1, 0]}]))
            .await
            .status(),
        200
    );
    let r = app
        .interact(
            "shop",
            json!([
                {"user": "u", "entity": "a", "kind": "view", "timestamp": "2020-01-01T00:00:00Z"},
                {"user": "u", "entity": "a", "kind": "like", "timestamp": "2021-06-01T00:00:00Z"},
                {"user": "v", "entity": "a", "kind": "view"}
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let count = |view: Value| view["interactions"].as_u64();
    assert_eq!(
        count(app.get("/v1/tenants/shop").await.json().await.unwrap()),
        Some(3)
    );
    app.stop().await;
    drop(app);
    let again = TestApp::start(settings).await;
    assert_eq!(
        count(again.get("/v1/tenants/shop").await.json().await.unwrap()),
        Some(3)
    );
}

/// F16: `%FF` in a path is not UTF-8: 400, where it was decoded to U+FFFD and aliased every
/// other invalid byte. Valid percent-encoded UTF-8 reaches the id as text.
#[tokio::test]
async fn paths_that_are_not_percent_encoded_utf8_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    assert_eq!(
        app.upsert("shop", json!([{"id": "é", "vector": [1, 0]}]))
            .await
            .status(),
        200
    );
    let r = app.get("/v1/tenants/shop/entities/%C3%A9").await;
    assert_eq!(r.status(), 200);
    for path in [
        "/v1/tenants/shop/entities/%FF",
        "/v1/tenants/shop/entities/%C3",
    ] {
        let r = app.get(path).await;
        assert!(r.headers().contains_key("x-request-id"));
        assert_eq!(error_code(r, 400).await, "bad_request", "{path}");
    }
}
