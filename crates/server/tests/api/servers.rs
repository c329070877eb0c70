//! More than one server, restarts, and parts going down.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestApp, error_code, ids, mall, model_at, seeded, train};

/// Polls `check` until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn another_server_sees_writes_within_a_second() {
    let a = seeded(Backend::Postgres).await;
    let b = TestApp::start(a.settings.clone()).await;
    assert_eq!(
        ids(b.similar("shop", "a", "k=1").await).await,
        ["b"],
        "b loaded a's data"
    );
    // Warm b's cache, then change the data on a.
    assert_eq!(
        b.similar("shop", "a", "k=1").await.headers()["x-cache"],
        "hit"
    );
    a.admin(Method::DELETE, "/v1/tenants/shop/entities/b")
        .send()
        .await
        .unwrap();
    a.upsert("shop", json!([{"id": "new", "vector": [0.8, 0.0, 0.0]}]))
        .await;
    a.interact(
        "shop",
        json!([{"user": "ann", "entity": "c", "kind": "purchase"}]),
    )
    .await;
    eventually(Duration::from_secs(1), || async {
        ids(b.similar("shop", "a", "k=1").await).await == ["new"]
    })
    .await;
    eventually(Duration::from_secs(1), || async {
        let info: Value = b.get("/v1/tenants/shop").await.json().await.unwrap();
        info["interactions"] == 1
    })
    .await;
    assert_eq!(ids(b.get("/v1/tenants/shop/trending").await).await, ["c"]);
    assert_eq!(b.create_tenant("blog", 2, "dot").await.status(), 201);
    eventually(Duration::from_secs(1), || async {
        a.get("/v1/tenants/blog").await.status() == 200
    })
    .await;
    b.admin(Method::DELETE, "/v1/tenants/blog")
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(1), || async {
        a.get("/v1/tenants/blog").await.status() == 404
    })
    .await;
}

/// Two servers writing one tenant at once: each applies its own changes and, from the feed, the
/// other's, all in one order, so both end with the same entities and counts, and neither had to
/// reload the tenant (which a change applied out of its turn forces).
#[tokio::test]
async fn two_servers_writing_one_tenant_at_once_end_alike_without_reloads() {
    let a = seeded(Backend::Postgres).await;
    let b = TestApp::start(a.settings.clone()).await;
    let before = (loads(&a, "storage").await, loads(&b, "storage").await);
    let writes = (0..60u16).map(|n| {
        let app = if n % 2 == 0 { &a } else { &b };
        async move {
            // Ten ids written by both servers, so that the last write decides each one.
            let entity =
                json!([{"id": format!("w{}", n % 10), "vector": [f32::from(n), 1.0, 0.0]}]);
            assert_eq!(app.upsert("shop", entity).await.status(), 200);
            let interaction = json!([{"user": format!("u{n}"), "entity": "a", "kind": "view"}]);
            assert_eq!(app.interact("shop", interaction).await.status(), 200);
        }
    });
    futures::future::join_all(writes).await;
    eventually(Duration::from_secs(5), || async {
        let (x, y): (Value, Value) = (
            a.get("/v1/tenants/shop").await.json().await.unwrap(),
            b.get("/v1/tenants/shop").await.json().await.unwrap(),
        );
        x["interactions"] == 60 && y["interactions"] == 60 && x["entities"] == y["entities"]
    })
    .await;
    let listing = "/v1/tenants/shop/entities?vectors=true&limit=100";
    let (x, y): (Value, Value) = (
        a.get(listing).await.json().await.unwrap(),
        b.get(listing).await.json().await.unwrap(),
    );
    assert_eq!(x["entities"].as_array().unwrap().len(), 5 + 10);
    assert_eq!(x, y, "the same entities");
    assert_eq!(
        (loads(&a, "storage").await, loads(&b, "storage").await),
        before,
        "no tenant was reloaded"
    );
}

/// The body of a similar-query on `app`, with its `X-Cache`.
async fn similar_with_cache(app: &TestApp, query: &str) -> (String, Value) {
    let r = app.similar("shop", "a", query).await;
    assert_eq!(r.status(), 200);
    let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    (cache, r.json().await.unwrap())
}

async fn metrics(app: &TestApp) -> String {
    let r = app.client.get(format!("{}/metrics", app.base)).send().await;
    r.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn servers_share_answers_through_redis_and_never_serve_one_past_a_write() {
    let a = seeded(Backend::Postgres).await;
    let b = TestApp::start(a.settings.clone()).await;
    // A query no test has asked: a's answer goes to Redis in the background.
    let query = "k=3&offset=0";
    let (cache, answer) = similar_with_cache(&a, query).await;
    assert_eq!(cache, "miss");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cache, shared) = similar_with_cache(&b, query).await;
    assert_eq!(cache, "hit", "b found a's answer in Redis");
    assert_eq!(shared, answer);
    let text = metrics(&b).await;
    assert!(
        text.contains(
            r#"reco_cache_requests_total{level="redis",result="hit",tier="recommendations"} 1"#
        ),
        "{text}"
    );
    let best = answer["results"][0]["id"].as_str().unwrap().to_owned();

    // a deletes the best result. From then on a never names it, and b stops naming it within a
    // second and never names it again: no cached answer, in either cache, outlives the write.
    let deleted = a
        .admin(Method::DELETE, &format!("/v1/tenants/shop/entities/{best}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (_, after) = similar_with_cache(&a, query).await;
    assert!(
        !after.to_string().contains(&format!("\"{best}\"")),
        "{after}"
    );
    let started = Instant::now();
    eventually(Duration::from_secs(1), || async {
        let (_, now) = similar_with_cache(&b, query).await;
        !now.to_string().contains(&format!("\"{best}\""))
    })
    .await;
    settle(started).await;
    for server in [&a, &b] {
        let (_, now) = similar_with_cache(server, query).await;
        assert!(!now.to_string().contains(&format!("\"{best}\"")), "{now}");
        assert_eq!(now["results"], after["results"], "both servers agree");
    }
}

/// Lets a little time pass after `since`, so that late cache writes would have landed.
async fn settle(since: Instant) {
    let until = since + Duration::from_millis(300);
    tokio::time::sleep_until(until.into()).await;
}

// Two workers, as the `reco` binary runs: on the single thread of a plain `#[tokio::test]`,
// the second server's load built its graph inline (`sync::blocking_here` has no other worker
// to hand tasks to) while this client and the first server's tasks waited on that same thread;
// a write then stalled for seconds and its connection was sometimes cut (`IncompleteMessage`),
// in one of three full test runs in one session, with or without generic plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starting_while_another_writes_misses_nothing() {
    let a = seeded(Backend::Postgres).await;
    // A catalogue large enough that b's load takes a while.
    for part in 0..2 {
        let entities: Vec<Value> = (0..10_000)
            .map(|n| json!({"id": format!("bulk{part}-{n}"), "vector": [1.0, n as f32, 0.5]}))
            .collect();
        assert_eq!(a.upsert("shop", json!(entities)).await.status(), 200);
    }
    // b loads while a writes, and a stops writing when b is ready: b must hear the writes
    // that land after its load began, with no later write to reveal a gap.
    let b = TestApp::start_loading(a.settings.clone()).await;
    let mut writes = 0;
    while !b.is_ready().await {
        let r = a
            .upsert(
                "shop",
                json!([{"id": format!("w{writes}"), "vector": [0.1, 0.2, 0.3]}]),
            )
            .await;
        assert_eq!(r.status(), 200);
        writes += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(writes > 0);
    let expected = json!(5 + 20_000 + writes);
    // What this test asks is that nothing is missed: once the first server stops writing, the
    // second must reach the count. It catches up the writes that landed during its load through
    // the feed, in 0.34 to 0.91 s in eight runs on the two CI cores (with PostgreSQL and both
    // servers on them), too close to one second to bound it there; how fast the feed carries
    // a single write is `another_server_sees_writes_within_a_second`'s question.
    eventually(Duration::from_secs(3), || async {
        let info: Value = b.get("/v1/tenants/shop").await.json().await.unwrap();
        info["entities"] == expected
    })
    .await;
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let first = seeded(backend).await;
        first
            .interact(
                "shop",
                json!([{"user": "ann", "entity": "a", "kind": "like"}]),
            )
            .await;
        let key = first.create_key("shop").await;
        let settings = first.settings.clone();
        drop(first);
        let second = TestApp::start(settings).await;
        let info: Value = second.get("/v1/tenants/shop").await.json().await.unwrap();
        assert_eq!(
            (info["entities"].clone(), info["interactions"].clone()),
            (json!(5), json!(1)),
            "{backend:?}"
        );
        let r = second
            .request(Method::GET, "/v1/tenants/shop", Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{backend:?}: keys survive");
        let ann: Value = second
            .get("/v1/tenants/shop/users/ann/recommendations")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(ann["strategy"], "personalized");
    }
}

#[tokio::test]
async fn without_redis_requests_still_succeed() {
    let mut settings = crate::helpers::fresh_database(Backend::Postgres).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    settings.redis_url = Some(format!("redis://127.0.0.1:{dead}"));
    let app = TestApp::start(settings).await;
    assert_eq!(app.create_tenant("shop", 2, "dot").await.status(), 201);
    app.upsert(
        "shop",
        json!([{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [1, 1]}]),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(ids(app.similar("shop", "a", "").await).await, ["b"]);
    }
    let ready: Value = app.public_json("/health/ready").await;
    assert_eq!(
        (ready["status"].clone(), ready["redis"].clone()),
        (json!("ready"), json!("down"))
    );
}

#[tokio::test]
async fn without_postgres_reads_are_served_and_writes_refused() {
    let app = seeded(Backend::Postgres).await;
    let url = app.settings.database_url.clone().unwrap();
    let db = url.rsplit_once('/').unwrap().1.to_owned();
    let admin_url = crate::helpers::required_env("RECO_TEST_DATABASE_URL");
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let cut = |allow: bool| format!("ALTER DATABASE {db} ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(cut(false)))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db)
        .execute(&mut admin)
        .await
        .unwrap();

    assert_eq!(
        ids(app.similar("shop", "a", "k=1").await).await,
        ["b"],
        "reads come from memory"
    );
    let write = app
        .upsert("shop", json!([{"id": "x", "vector": [1, 1, 1]}]))
        .await;
    assert!(write.headers().contains_key("retry-after"));
    assert_eq!(error_code(write, 503).await, "unavailable");
    let interaction = app
        .interact(
            "shop",
            json!([{"user": "u", "entity": "a", "kind": "view"}]),
        )
        .await;
    assert_eq!(error_code(interaction, 503).await, "unavailable");
    assert_eq!(
        app.get("/v1/tenants/shop/entities/x").await.status(),
        404,
        "the refused write is not visible"
    );

    sqlx::query(sqlx::AssertSqlSafe(cut(true)))
        .execute(&mut admin)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        app.upsert("shop", json!([{"id": "x", "vector": [1, 1, 1]}]))
            .await
            .status()
            == 200
    })
    .await;
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["interactions"], 0, "nothing refused was counted");
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let app = seeded(Backend::Sqlite).await;
    let big: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("n{i}"), "vector": [1, 0, i]}))
        .collect();
    let request = app.upsert("shop", Value::from(big));
    let stop = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        app.stop().await;
    };
    let (response, ()) = tokio::join!(request, stop);
    assert_eq!(response.status(), 200, "the request in flight was answered");
    let after = app
        .client
        .get(format!("{}/health/live", app.base))
        .send()
        .await;
    assert!(after.is_err(), "the server stopped");
}

/// The body of a GET on `app`, after checking it answered 200.
async fn body(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// What the collaborative model answers on `app`: "also liked" for one entity, and a user's
/// recommendations.
async fn collaborative_answers(app: &TestApp) -> (Value, Value) {
    let similar = body(
        app,
        "/v1/tenants/mall/entities/e3/similar?space=collaborative&k=6",
    )
    .await;
    let user = body(
        app,
        "/v1/tenants/mall/users/u17/recommendations?strategy=collaborative&k=6",
    )
    .await;
    (similar["results"].clone(), user)
}

/// A model trained on one server is kept in PostgreSQL: another server loads it through the
/// feed and answers alike, a model trained there comes back the other way with the next
/// version, and a restarted server serves the newest without training.
#[tokio::test]
async fn a_model_trained_on_one_server_is_served_by_the_others_and_after_restarts() {
    let a = TestApp::spawn(Backend::Postgres).await;
    mall(&a).await;
    let b = TestApp::start(a.settings.clone()).await;
    let trained = train(&a, "mall", 1).await;
    let loaded = model_at(&b, "mall", 1).await;
    for field in ["trained_at", "users", "items", "factors", "interactions"] {
        assert_eq!(loaded[field], trained[field], "{field}");
    }
    let on_a = collaborative_answers(&a).await;
    assert_eq!(collaborative_answers(&b).await, on_a);
    assert_eq!(on_a.1["strategy"], "collaborative");
    // b trains the next version; a loads it.
    train(&b, "mall", 2).await;
    model_at(&a, "mall", 2).await;
    let newest = collaborative_answers(&b).await;
    assert_eq!(collaborative_answers(&a).await, newest);
    // Restarted, a server serves the newest model as soon as it is ready, with no training.
    let settings = a.settings.clone();
    drop(a);
    drop(b);
    let c = TestApp::start(settings).await;
    let model = body(&c, "/v1/tenants/mall/model").await;
    assert_eq!(
        (model["version"].clone(), model["state"].clone()),
        (json!(2), json!("ready"))
    );
    assert_eq!(collaborative_answers(&c).await, newest);
}

#[tokio::test]
async fn the_embedded_database_keeps_the_model_across_a_restart() {
    let first = TestApp::spawn(Backend::Sqlite).await;
    mall(&first).await;
    train(&first, "mall", 1).await;
    let before = collaborative_answers(&first).await;
    let settings = first.settings.clone();
    drop(first);
    let second = TestApp::start(settings).await;
    let model = body(&second, "/v1/tenants/mall/model").await;
    assert_eq!(model["version"], 1);
    assert_eq!(collaborative_answers(&second).await, before);
}

/// Interactions with an id are recorded once per tenant, across requests, restarts and
/// servers; a batch of duplicates alone does not hold up another server's feed.
#[tokio::test]
async fn interactions_with_an_id_count_once_across_servers_and_restarts() {
    let a = seeded(Backend::Postgres).await;
    let b = TestApp::start(a.settings.clone()).await;
    let post = |app: &TestApp, body: Value| {
        let request = app
            .admin(Method::POST, "/v1/tenants/shop/interactions")
            .json(&json!({ "interactions": body }));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let click = |id: &str, entity: &str| json!({"id": id, "user": "ann", "entity": entity, "kind": "click"});
    assert_eq!(
        post(
            &a,
            json!([click("k1", "c"), click("k2", "d"), click("k1", "c")])
        )
        .await,
        json!({"accepted": 3, "duplicates": 1})
    );
    // The same ids through the other server: nothing new, and a change all the same.
    assert_eq!(
        post(&b, json!([click("k1", "c"), click("k2", "d")])).await,
        json!({"accepted": 2, "duplicates": 2})
    );
    assert_eq!(
        post(&a, json!([click("k3", "e")])).await,
        json!({"accepted": 1, "duplicates": 0})
    );
    for app in [&a, &b] {
        eventually(Duration::from_secs(1), || async {
            let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
            info["interactions"] == 3
        })
        .await;
    }
    let scores: Value = b
        .get("/v1/tenants/shop/trending")
        .await
        .json()
        .await
        .unwrap();
    let score = |id: &str| {
        scores["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let (c, e) = (score("c"), score("e"));
    assert!(
        (c - e).abs() < 1e-3 * e,
        "c was counted once, as e was: {scores}"
    );
    let settings = a.settings.clone();
    a.stop().await;
    drop(a);
    let again = TestApp::start(settings).await;
    assert_eq!(
        post(&again, json!([click("k3", "e"), click("k4", "e")])).await,
        json!({"accepted": 2, "duplicates": 1})
    );
    let info: Value = again.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["interactions"], 4);
}

both!(restarts_read_tenant_images_and_never_a_stale_one);

/// The answers to `questions`, without the model's status (not part of an image).
async fn answers(app: &TestApp, questions: &[&str]) -> Vec<Value> {
    let mut all = Vec::new();
    for q in questions {
        let mut body: Value = app.get(q).await.json().await.unwrap();
        if let Some(view) = body.as_object_mut() {
            view.remove("model");
        }
        all.push(body);
    }
    all
}

/// Stops a server and waits until its stop has written the image of `tenant`.
async fn stop_and_wait_for_the_image(app: TestApp, dir: &std::path::Path, tenant: &str) {
    app.stop_and_finish().await;
    assert!(
        dir.join(format!("{tenant}.img")).exists(),
        "no image of {tenant}"
    );
    drop(app);
}

async fn loads(app: &TestApp, from: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("reco_tenant_loads_total{{from=\"{from}\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Issue 15's snapshots: a restart reads each tenant's image (entities and graph) instead of
/// storage's rows and answers exactly as before; an image that is stale (writes made while the
/// server was down), damaged or of another incarnation is ignored and the tenant loads from
/// storage, with those writes.
async fn restarts_read_tenant_images_and_never_a_stale_one(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("reco_img_{}", rand::random::<u64>()));
    let mut settings = crate::helpers::fresh_database(backend).await;
    settings.image_dir = Some(dir.clone());
    settings.image_interval = Duration::ZERO;
    settings.engine.search.threshold = 200;
    let app = TestApp::start(settings.clone()).await;
    assert_eq!(app.create_tenant("big", 8, "cosine").await.status(), 201);
    let entities: Vec<Value> = (0..600)
        .map(|i: usize| {
            let v: Vec<f32> = (0..8)
                .map(|d| ((i * 31 + d * 7) % 41) as f32 - 20.5)
                .collect();
            json!({"id": format!("e{i}"), "vector": v, "category": format!("c{}", i % 3)})
        })
        .collect();
    assert_eq!(app.upsert("big", Value::from(entities)).await.status(), 200);
    for i in [3, 30, 300] {
        let r = app
            .admin(Method::DELETE, &format!("/v1/tenants/big/entities/e{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    app.interact(
        "big",
        json!([{"user": "u", "entity": "e1", "kind": "like"}]),
    )
    .await;
    let questions = [
        "/v1/tenants/big/entities/e1/similar?k=10",
        "/v1/tenants/big/entities/e77/similar?k=5&category=c1",
        "/v1/tenants/big/users/u/recommendations?k=5&strategy=content",
        "/v1/tenants/big/trending",
        "/v1/tenants/big",
    ];
    let before = answers(&app, &questions).await;
    stop_and_wait_for_the_image(app, &dir, "big").await;

    let app = TestApp::start(settings.clone()).await;
    assert_eq!(
        (loads(&app, "image").await, loads(&app, "storage").await),
        (1, 0)
    );
    assert_eq!(answers(&app, &questions).await[..3], before[..3]);
    assert_eq!(answers(&app, &questions).await[4], before[4]);
    // Loaded from a current image and not changed since: the stop does not write it again.
    let modified = || {
        std::fs::metadata(dir.join("big.img"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let written = modified();
    stop_and_wait_for_the_image(app, &dir, "big").await;
    assert_eq!(modified(), written);

    // Writes made while this server is down (by another without images): its image is behind.
    // PostgreSQL keeps each row's stamp, so the image is caught up from its own; the embedded
    // database (one server) keeps none, and the tenant loads from storage.
    let mut other = settings.clone();
    other.image_dir = None;
    let writer = TestApp::start(other.clone()).await;
    writer
        .upsert(
            "big",
            json!([{"id": "late", "vector": [1, 1, 1, 1, 1, 1, 1, 1]}]),
        )
        .await;
    let r = writer
        .admin(Method::DELETE, "/v1/tenants/big/entities/e1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let truth = answers(&writer, &questions[1..3]).await;
    writer.stop().await;
    drop(writer);
    let app = TestApp::start(settings.clone()).await;
    let caught_up = matches!(backend, Backend::Postgres);
    assert_eq!(
        (loads(&app, "image").await, loads(&app, "storage").await),
        if caught_up { (1, 0) } else { (0, 1) }
    );
    assert_eq!(app.get("/v1/tenants/big/entities/late").await.status(), 200);
    assert_eq!(app.get("/v1/tenants/big/entities/e1").await.status(), 404);
    assert_eq!(answers(&app, &questions[1..3]).await, truth);
    let info: Value = app.get("/v1/tenants/big").await.json().await.unwrap();
    assert_eq!(info["entities"], 600 - 3 + 1 - 1);
    stop_and_wait_for_the_image(app, &dir, "big").await;

    // A damaged image: ignored.
    let path = dir.join("big.img");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let app = TestApp::start(settings.clone()).await;
    assert_eq!(
        (loads(&app, "image").await, loads(&app, "storage").await),
        (0, 1)
    );
    assert_eq!(app.get("/v1/tenants/big/entities/late").await.status(), 200);
    stop_and_wait_for_the_image(app, &dir, "big").await;

    // Another incarnation of the tenant (deleted and made again elsewhere): ignored.
    let writer = TestApp::start(other).await;
    let r = writer
        .admin(Method::DELETE, "/v1/tenants/big")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(writer.create_tenant("big", 8, "cosine").await.status(), 201);
    writer.stop().await;
    drop(writer);
    let app = TestApp::start(settings).await;
    assert_eq!(
        (loads(&app, "image").await, loads(&app, "storage").await),
        (0, 1)
    );
    let info: Value = app.get("/v1/tenants/big").await.json().await.unwrap();
    assert_eq!(info["entities"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
