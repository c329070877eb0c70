//! Every endpoint, status and error code of the contract, on both backends.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, Backend, TestApp, error_code, fresh_database, ids, mall, seeded};

both!(
    tenants_are_made_found_and_deleted,
    keys_open_one_tenant_only,
    entities_are_stored_as_given,
    a_bad_entity_rejects_the_whole_batch,
    interactions_are_accepted_and_counted,
    similar_follows_the_contract,
    users_get_personal_or_trending_answers,
    recommend_reports_missing_examples,
    batches_answer_in_order,
    trending_counts_recent_weight,
    writes_are_visible_at_once_despite_the_cache,
    collaborative_models_train_in_the_background_and_answer,
    enough_new_interactions_train_a_model_by_themselves,
    a_stream_of_interactions_trains_once_per_interval,
    a_tenant_without_content_vectors_learns_from_its_log,
    weights_past_1e6_and_timestamps_from_the_future_are_refused,
    the_scheme_is_case_insensitive_and_cosine_lengths_fit_in_f32,
    collaborative_settings_are_the_tenants_own,
);

async fn tenants_are_made_found_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.create_tenant("shop", 4, "cosine").await.status(), 201);
    assert_eq!(app.create_tenant("shop", 4, "cosine").await.status(), 200);
    assert_eq!(
        error_code(app.create_tenant("shop", 8, "cosine").await, 409).await,
        "conflict"
    );
    assert_eq!(
        error_code(app.create_tenant("Shop!", 4, "cosine").await, 400).await,
        "bad_request"
    );
    assert_eq!(
        error_code(app.create_tenant("x", 4, "manhattan").await, 400).await,
        "bad_request"
    );
    assert_eq!(
        error_code(app.create_tenant("x", 0, "dot").await, 400).await,
        "bad_request"
    );
    let mut info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    // The incarnation's name: random, 64 bits in hex.
    let lineage = info
        .as_object_mut()
        .unwrap()
        .remove("lineage")
        .expect("a lineage");
    let lineage = lineage.as_str().unwrap();
    assert!(
        !lineage.is_empty()
            && lineage.len() <= 16
            && lineage.chars().all(|c| c.is_ascii_hexdigit()),
        "{lineage}"
    );
    assert_eq!(
        info,
        json!({
            "name": "shop", "dimension": 4, "metric": "cosine", "entities": 0, "interactions": 0,
            "collaborative": {
                "enabled": true, "algorithm": "auto", "ease_regularization": 8.0, "factors": 64, "iterations": 10, "regularization": 0.01,
                "unobserved_weight": 1.0, "confidence": 0.25, "frequency_scaling": 1.0, "seed": 42
            },
            "model": null, "rate_limit": null, "search": null
        })
    );
    assert_eq!(
        error_code(app.get("/v1/tenants/nope").await, 404).await,
        "not_found"
    );
    let gone = app
        .admin(Method::DELETE, "/v1/tenants/shop")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        error_code(app.get("/v1/tenants/shop").await, 404).await,
        "not_found"
    );
    let again = app
        .admin(Method::DELETE, "/v1/tenants/shop")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(again, 404).await, "not_found");
}

async fn keys_open_one_tenant_only(backend: Backend) {
    let app = seeded(backend).await;
    assert_eq!(app.create_tenant("blog", 3, "dot").await.status(), 201);
    let shop_key = app.create_key("shop").await;
    let blog_key = app.create_key("blog").await;
    assert!(shop_key.len() >= 32 && shop_key != blog_key);
    let get = |path: &str, key: Option<&str>| app.request(Method::GET, path, key).send();
    assert_eq!(
        get("/v1/tenants/shop", Some(&shop_key))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/v1/tenants/blog", Some(&blog_key))
            .await
            .unwrap()
            .status(),
        200
    );
    // Each tenant's key is refused by the other, both ways.
    assert_eq!(
        error_code(get("/v1/tenants/blog", Some(&shop_key)).await.unwrap(), 403).await,
        "forbidden"
    );
    assert_eq!(
        error_code(
            get("/v1/tenants/shop/entities/a", Some(&blog_key))
                .await
                .unwrap(),
            403
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        error_code(get("/v1/tenants/shop", None).await.unwrap(), 401).await,
        "unauthorized"
    );
    assert_eq!(
        error_code(get("/v1/tenants/shop", Some("made-up")).await.unwrap(), 401).await,
        "unauthorized"
    );
    // Admission comes before the body is read: without a key, a malformed body is refused as
    // unauthorized, not as bad input, and a tenant key's write to another tenant is forbidden
    // whatever it carries.
    let r = app
        .request(Method::PUT, "/v1/tenants/shop/entities", None)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = app
        .request(
            Method::POST,
            "/v1/tenants/blog/interactions",
            Some(&shop_key),
        )
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
    // A tenant key cannot do what needs the admin key.
    let r = app
        .request(Method::POST, "/v1/tenants/shop/keys", Some(&shop_key))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = app
        .request(Method::DELETE, "/v1/tenants/shop", Some(&shop_key))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = app
        .admin(Method::POST, "/v1/tenants/ghost/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    // Deleting a tenant retires its keys.
    app.admin(Method::DELETE, "/v1/tenants/blog")
        .send()
        .await
        .unwrap();
    assert_eq!(app.create_tenant("blog", 3, "dot").await.status(), 201);
    assert_eq!(
        error_code(get("/v1/tenants/blog", Some(&blog_key)).await.unwrap(), 401).await,
        "unauthorized"
    );
}

async fn entities_are_stored_as_given(backend: Backend) {
    let app = seeded(backend).await;
    let a: Value = app
        .get("/v1/tenants/shop/entities/a")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        a,
        json!({"id": "a", "vector": [1.0, 0.0, 0.0], "category": "books", "tags": ["new", "sale"], "attributes": {"price": 12}})
    );
    let e: Value = app
        .get("/v1/tenants/shop/entities/e")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        e,
        json!({"id": "e", "vector": [0.0, 0.0, 1.0], "category": null, "tags": [], "attributes": null})
    );
    assert_eq!(
        error_code(app.get("/v1/tenants/shop/entities/zz").await, 404).await,
        "not_found"
    );
    let gone = app
        .admin(Method::DELETE, "/v1/tenants/shop/entities/e")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        error_code(app.get("/v1/tenants/shop/entities/e").await, 404).await,
        "not_found"
    );
    let again = app
        .admin(Method::DELETE, "/v1/tenants/shop/entities/e")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(again, 404).await, "not_found");
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["entities"], 4);
}

async fn a_bad_entity_rejects_the_whole_batch(backend: Backend) {
    let app = seeded(backend).await;
    let cases = [
        (
            json!([{"id": "a", "vector": [9, 9, 9]}, {"id": "new", "vector": [1, 2]}]),
            "invalid_vector",
        ),
        (
            json!([{"id": "a", "vector": [9, 9, 9]}, {"id": "new", "vector": [1e39, 0, 0]}]),
            "invalid_vector",
        ),
        (
            json!([{"id": "a", "vector": [9, 9, 9]}, {"id": "", "vector": [1, 0, 0]}]),
            "bad_request",
        ),
        (
            json!([{"id": "a", "vector": [9, 9, 9]}, {"id": "a", "vector": [1, 0, 0]}]),
            "bad_request",
        ),
        (
            json!([{"id": "a", "vector": [9, 9, 9]}, {"id": "x", "vector": [1, 0, 0], "attributes": [1]}]),
            "bad_request",
        ),
        (
            json!([{"id": "a", "vector": [9, 9, 9]}, {"id": "x", "vector": [1, 0, 0], "color": "red"}]),
            "bad_request",
        ),
    ];
    for (batch, code) in cases {
        let r = app.upsert("shop", batch.clone()).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (400, Some(code)),
            "{batch}: {body}"
        );
        if code == "invalid_vector" {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("item 1"),
                "{body}"
            );
        }
        let a: Value = app
            .get("/v1/tenants/shop/entities/a")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(a["vector"], json!([1.0, 0.0, 0.0]), "nothing changed");
    }
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"id": format!("n{i}"), "vector": [1, 0, 0]}))
        .collect();
    assert_eq!(
        error_code(app.upsert("shop", Value::from(too_many)).await, 400).await,
        "bad_request"
    );
    let not_json = app
        .admin(Method::PUT, "/v1/tenants/shop/entities")
        .header("content-type", "application/json")
        .body("{\"entities\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(not_json, 400).await, "bad_request");
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["entities"], 5);
}

async fn interactions_are_accepted_and_counted(backend: Backend) {
    let app = seeded(backend).await;
    let r = app
        .interact(
            "shop",
            json!([
                {"user": "ann", "entity": "a", "kind": "purchase"},
                {"user": "ann", "entity": "b", "kind": "view", "weight": 2.0, "timestamp": "2026-11-20T10:00:00Z"},
                {"user": "bob", "entity": "c", "kind": "dislike", "timestamp": "2026-11-20T10:00:00+02:00"}
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"accepted": 3, "duplicates": 0})
    );
    for (bad, why) in [
        (
            json!([{"user": "ann", "entity": "a", "kind": "share"}]),
            "kind",
        ),
        (
            json!([{"user": "ann", "entity": "a", "kind": "view", "timestamp": "yesterday"}]),
            "timestamp",
        ),
        (json!([{"user": "", "entity": "a", "kind": "view"}]), "user"),
    ] {
        assert_eq!(
            error_code(app.interact("shop", bad).await, 400).await,
            "bad_request",
            "{why}"
        );
    }
    assert_eq!(
        error_code(app.interact("ghost", json!([])).await, 404).await,
        "not_found"
    );
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["interactions"], 3);
}

async fn similar_follows_the_contract(backend: Backend) {
    let app = seeded(backend).await;
    assert_eq!(
        ids(app.similar("shop", "a", "").await).await,
        ["b", "c", "d", "e"]
    );
    assert_eq!(ids(app.similar("shop", "a", "k=2").await).await, ["b", "c"]);
    assert_eq!(
        ids(app.similar("shop", "a", "k=2&offset=1").await).await,
        ["c", "d"]
    );
    assert_eq!(
        ids(app.similar("shop", "a", "category=music").await).await,
        ["c", "d"]
    );
    assert_eq!(
        ids(app.similar("shop", "a", "tags=sale,new").await).await,
        ["b", "c"]
    );
    assert_eq!(
        ids(app.similar("shop", "a", "exclude=b,c").await).await,
        ["d", "e"]
    );
    assert_eq!(
        ids(app.similar("shop", "a", "score_threshold=0.5").await).await,
        ["b", "c"]
    );
    assert_eq!(
        ids(app.similar("shop", "a", "exact=true&k=1").await).await,
        ["b"]
    );
    let scores: Value = app.similar("shop", "a", "k=1").await.json().await.unwrap();
    assert_eq!(scores, json!({"results": [{"id": "b", "score": 0.9}]}));
    for bad in [
        "k=0",
        "k=1001",
        "offset=10001",
        "k=ten",
        "score_threshold=x",
        "unknown=1",
    ] {
        assert_eq!(
            error_code(app.similar("shop", "a", bad).await, 400).await,
            "bad_request",
            "{bad}"
        );
    }
    assert_eq!(
        error_code(app.similar("shop", "zz", "").await, 404).await,
        "not_found"
    );
    assert_eq!(
        error_code(app.similar("ghost", "a", "").await, 404).await,
        "not_found"
    );
}

async fn users_get_personal_or_trending_answers(backend: Backend) {
    let app = seeded(backend).await;
    app.interact(
        "shop",
        json!([{"user": "ann", "entity": "a", "kind": "purchase"}]),
    )
    .await;
    let ann: Value = app
        .get("/v1/tenants/shop/users/ann/recommendations?k=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ann["strategy"], "personalized");
    assert_eq!(ann["results"][0]["id"], "b", "never what ann bought: {ann}");
    let new: Value = app
        .get("/v1/tenants/shop/users/newcomer/recommendations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(new["strategy"], "trending");
    assert_eq!(new["results"][0]["id"], "a");
}

async fn recommend_reports_missing_examples(backend: Backend) {
    let app = seeded(backend).await;
    let r = app
        .recommend(
            "shop",
            json!({"positive": ["a", {"id": "ghost", "weight": 2.0}], "negative": ["d"], "k": 2}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["missing"], json!(["ghost"]));
    assert_eq!(body["results"][0]["id"], "b");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "a" && r["id"] != "d")
    );
    let raw = app
        .recommend(
            "shop",
            json!({"positive": [{"vector": [0, 0, 1]}], "strategy": "best_score", "k": 1}),
        )
        .await;
    assert_eq!(ids(raw).await, ["e"]);
    let diverse = app
        .recommend("shop", json!({"positive": ["a"], "k": 2, "diversity": 0.9, "filter": {"tags_any": ["new", "sale"]}}))
        .await;
    assert_eq!(diverse.status(), 200);
    assert_eq!(
        error_code(
            app.recommend("shop", json!({"positive": ["ghost"]})).await,
            404
        )
        .await,
        "not_found"
    );
    assert_eq!(
        error_code(app.recommend("shop", json!({"positive": []})).await, 400).await,
        "bad_request"
    );
    let short = app
        .recommend("shop", json!({"positive": [{"vector": [1, 0]}]}))
        .await;
    assert_eq!(error_code(short, 400).await, "invalid_vector");
    let strategy = app
        .recommend("shop", json!({"positive": ["a"], "strategy": "magic"}))
        .await;
    assert_eq!(error_code(strategy, 400).await, "bad_request");
}

async fn batches_answer_in_order(backend: Backend) {
    let app = seeded(backend).await;
    let r = app
        .recommend_batch(
            "shop",
            json!([
                {"positive": ["a"], "k": 1},
                {"positive": ["ghost"]},
                {"positive": ["d"], "k": 1}
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses[0]["results"][0]["id"], "b");
    assert_eq!(responses[1]["error"]["code"], "not_found");
    assert_eq!(responses[2]["results"][0]["id"], "c");
}

async fn trending_counts_recent_weight(backend: Backend) {
    let app = seeded(backend).await;
    app.interact(
        "shop",
        json!([
            {"user": "u1", "entity": "c", "kind": "purchase"},
            {"user": "u2", "entity": "c", "kind": "view"},
            {"user": "u3", "entity": "a", "kind": "like"},
            {"user": "u4", "entity": "d", "kind": "purchase", "timestamp": "2020-01-01T00:00:00Z"}
        ]),
    )
    .await;
    assert_eq!(
        ids(app.get("/v1/tenants/shop/trending").await).await,
        ["c", "a"]
    );
    assert_eq!(
        ids(app.get("/v1/tenants/shop/trending?category=books").await).await,
        ["a"]
    );
    assert_eq!(
        ids(app.get("/v1/tenants/shop/trending?window=1h&k=1").await).await,
        ["c"]
    );
    let body: Value = app
        .get("/v1/tenants/shop/trending?k=1")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        (body["results"][0]["score"].as_f64().unwrap() - 9.0).abs() < 0.01,
        "{body}"
    );
    for bad in ["window=1w", "window=0h", "k=0", "window=400d"] {
        let r = app.get(&format!("/v1/tenants/shop/trending?{bad}")).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{bad}");
    }
}

async fn writes_are_visible_at_once_despite_the_cache(backend: Backend) {
    let app = seeded(backend).await;
    let first = app.similar("shop", "a", "k=1").await;
    assert_eq!(first.headers()["x-cache"], "miss");
    let second = app.similar("shop", "a", "k=1").await;
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(ids(second).await, ["b"]);
    app.admin(Method::DELETE, "/v1/tenants/shop/entities/b")
        .send()
        .await
        .unwrap();
    let after = app.similar("shop", "a", "k=1").await;
    assert_eq!(after.headers()["x-cache"], "miss");
    assert_eq!(
        ids(after).await,
        ["c"],
        "no cached answer names a deleted entity"
    );
    app.upsert("shop", json!([{"id": "z", "vector": [2.0, 0.0, 0.0]}]))
        .await;
    assert_eq!(ids(app.similar("shop", "a", "k=1").await).await, ["z"]);
}

/// Entities 0..10 are liked together by one group of users, 10..20 by another; their content
/// vectors say nothing of it. A model is trained on request, in the background, and then
/// answers "also liked" and user recommendations by the documented strategies.
async fn collaborative_models_train_in_the_background_and_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    mall(&app).await;
    let status = |path: &'static str| {
        let app = &app;
        async move { app.get(path).await.status().as_u16() }
    };
    assert_eq!(status("/v1/tenants/mall/model").await, 404);
    assert_eq!(
        status("/v1/tenants/mall/entities/e0/similar?space=collaborative").await,
        404
    );
    assert_eq!(
        status("/v1/tenants/mall/users/u0/recommendations?strategy=collaborative").await,
        404
    );
    assert_eq!(
        status("/v1/tenants/mall/users/u0/recommendations?strategy=bogus").await,
        400
    );
    assert_eq!(
        status("/v1/tenants/mall/entities/e0/similar?space=elsewhere").await,
        400
    );
    let started = app
        .admin(Method::POST, "/v1/tenants/mall/model/train")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let body: Value = started.json().await.unwrap();
    assert!(
        ["training", "ready"].contains(&body["state"].as_str().unwrap()),
        "{body}"
    );
    let model = crate::helpers::model_at(&app, "mall", 1).await;
    assert_eq!(model["version"], 1);
    assert_eq!(
        (model["users"].as_u64(), model["items"].as_u64()),
        (Some(30), Some(20))
    );
    // Twenty entities: EASE by default, one component per entity.
    assert_eq!(model["factors"], 20);
    // "Also liked": the group, not the content vectors' parity.
    let similar = app
        .get("/v1/tenants/mall/entities/e0/similar?space=collaborative&k=5")
        .await;
    assert_eq!(similar.status(), 200);
    let found = ids(similar).await;
    assert!(
        found
            .iter()
            .all(|id| id[1..].parse::<usize>().unwrap() < 10),
        "{found:?}"
    );
    let strategy = |query: &'static str| {
        let app = &app;
        async move {
            let answer: Value = app
                .get(&format!("/v1/tenants/mall/users/u0/recommendations{query}"))
                .await
                .json()
                .await
                .unwrap();
            answer["strategy"].as_str().unwrap().to_owned()
        }
    };
    // With content vectors and a model, `auto` blends them (`hybrid`).
    assert_eq!(strategy("").await, "hybrid");
    assert_eq!(strategy("?strategy=collaborative").await, "collaborative");
    assert_eq!(strategy("?strategy=hybrid").await, "hybrid");
    assert_eq!(strategy("?strategy=content").await, "personalized");
    assert_eq!(strategy("?strategy=trending").await, "trending");
    // The model's measures are in the metrics: one user folded in so far.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"reco_model{measure="fold_ins",tenant="mall"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reco_model{measure="training_seconds",tenant="mall"}"#));
}

/// With `train_after` at 50, the 50th interaction starts a training with nobody asking, and the
/// status says how many more start the next one.
async fn enough_new_interactions_train_a_model_by_themselves(backend: Backend) {
    let mut settings = fresh_database(backend).await;
    settings.train_after = 50;
    let app = TestApp::start(settings).await;
    mall_of(&app, 10).await;
    let likes = |from, to| likes(from, to, 7, 10);
    assert_eq!(app.interact("mall", likes(0, 49)).await.status(), 200);
    assert_eq!(
        app.get("/v1/tenants/mall/model").await.status(),
        404,
        "49 are not enough"
    );
    assert_eq!(app.interact("mall", likes(49, 50)).await.status(), 200);
    let model = model_ready(&app, "mall", 1).await;
    assert_eq!(model["next_training"], 50);
    assert_eq!(app.interact("mall", likes(50, 60)).await.status(), 200);
    let model: Value = app
        .get("/v1/tenants/mall/model")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(model["next_training"], 40);
}

/// Tenant `mall` (2-d, dot) with entities `e0` to `e{n-1}`.
async fn mall_of(app: &TestApp, n: u32) {
    assert_eq!(app.create_tenant("mall", 2, "dot").await.status(), 201);
    let entities: Vec<Value> = (0..n)
        .map(|n| json!({"id": format!("e{n}"), "vector": [1.0, f64::from(n)]}))
        .collect();
    assert_eq!(
        app.upsert("mall", Value::from(entities)).await.status(),
        200
    );
}

/// Likes numbered `from` to `to` (excluded), of `users` users in turn on `entities` entities
/// in turn.
fn likes(from: usize, to: usize, users: usize, entities: usize) -> Value {
    (from..to)
        .map(|n| json!({"user": format!("u{}", n % users), "entity": format!("e{}", n % entities), "kind": "like"}))
        .collect::<Vec<_>>()
        .into()
}

/// The tenant's model once version `version` of it is ready (within 20 s).
async fn model_ready(app: &TestApp, tenant: &str, version: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = app.get(&format!("/v1/tenants/{tenant}/model")).await;
        if response.status() == 200 {
            let model: Value = response.json().await.unwrap();
            if model["state"] == "ready" && model["version"] == version {
                return model;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "version {version} of the model did not come"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// With `train_after` at 5 and `train_interval` at 4 s, interactions that become due sooner
/// than 4 s after the last training by itself started do not start one at once: it starts
/// when the 4 s have passed, with no interaction arriving then.
async fn a_stream_of_interactions_trains_once_per_interval(backend: Backend) {
    let interval = std::time::Duration::from_secs(4);
    let mut settings = fresh_database(backend).await;
    settings.train_after = 5;
    settings.train_interval = interval;
    let app = TestApp::start(settings).await;
    mall_of(&app, 4).await;
    let likes = |from, to| likes(from, to, 3, 4);
    let first = std::time::Instant::now();
    assert_eq!(app.interact("mall", likes(0, 5)).await.status(), 200);
    model_ready(&app, "mall", 1).await;
    assert_eq!(app.interact("mall", likes(5, 10)).await.status(), 200);
    let model: Value = app
        .get("/v1/tenants/mall/model")
        .await
        .json()
        .await
        .unwrap();
    if first.elapsed() < interval {
        assert_eq!(
            (&model["version"], &model["state"], &model["next_training"]),
            (&json!(1), &json!("ready"), &json!(0)),
            "due, and waiting for the interval"
        );
    }
    model_ready(&app, "mall", 2).await;
    assert!(
        first.elapsed() >= interval,
        "the second training started {:?} after the first",
        first.elapsed()
    );
}

/// A shop with only a catalogue of ids and an interaction log: no dimension, entities without
/// vectors (one with a vector is refused), trending until its model is trained, then the
/// collaborative space by default, and a clear error where content vectors are needed.
async fn a_tenant_without_content_vectors_learns_from_its_log(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let made = app
        .admin(Method::PUT, "/v1/tenants/log")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let view: Value = made.json().await.unwrap();
    assert_eq!(
        (view["dimension"].clone(), view["metric"].clone()),
        (Value::Null, Value::Null)
    );
    let half = app
        .admin(Method::PUT, "/v1/tenants/other")
        .json(&json!({"dimension": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(half, 400).await, "bad_request");
    assert_eq!(
        error_code(
            app.upsert("log", json!([{"id": "x", "vector": [1.0]}]))
                .await,
            400
        )
        .await,
        "invalid_vector"
    );
    let entities: Vec<Value> = (0..20)
        .map(
            |n| json!({"id": format!("e{n}"), "category": if n % 2 == 0 { "even" } else { "odd" }}),
        )
        .collect();
    assert_eq!(app.upsert("log", Value::from(entities)).await.status(), 200);
    let stored: Value = app
        .get("/v1/tenants/log/entities/e4")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored,
        json!({"id": "e4", "category": "even", "tags": [], "attributes": null})
    );
    assert_eq!(
        app.interact("log", crate::helpers::group_likes())
            .await
            .status(),
        200
    );
    let before: Value = app
        .get("/v1/tenants/log/users/u16/recommendations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["strategy"], "trending");
    assert_eq!(
        error_code(
            app.get("/v1/tenants/log/entities/e0/similar?space=content")
                .await,
            400
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        error_code(
            app.get("/v1/tenants/log/users/u16/recommendations?strategy=content")
                .await,
            400
        )
        .await,
        "bad_request"
    );
    crate::helpers::train(&app, "log", 1).await;
    let after: Value = app
        .get("/v1/tenants/log/users/u16/recommendations?k=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["strategy"], "collaborative");
    // u16 liked every entity of group b but 11 and 16.
    let found: Vec<&str> = after["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["e11", "e16"]);
    // Similar asks the collaborative space by default here.
    let similar = ids(app.get("/v1/tenants/log/entities/e12/similar?k=5").await).await;
    assert!(
        similar
            .iter()
            .all(|id| id[1..].parse::<usize>().unwrap() >= 10),
        "{similar:?}"
    );
    let view: Value = app.get("/v1/tenants/log").await.json().await.unwrap();
    assert_eq!(view["model"]["version"], 1);
}

/// `"collaborative"` in a tenant's settings: its factors are the model's, other settings on an
/// existing tenant are a conflict, bad ones are refused, and a tenant made with learning off
/// trains nothing.
async fn collaborative_settings_are_the_tenants_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let put = |tenant: &'static str, body: Value| {
        let app = &app;
        async move {
            app.admin(Method::PUT, &format!("/v1/tenants/{tenant}"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let small = json!({"dimension": 2, "metric": "dot", "collaborative": {"algorithm": "ials", "factors": 8, "iterations": 4}});
    assert_eq!(put("mall", small.clone()).await.status(), 201);
    assert_eq!(put("mall", small).await.status(), 200);
    assert_eq!(
        error_code(
            put(
                "mall",
                json!({"dimension": 2, "metric": "dot", "collaborative": {"factors": 9}})
            )
            .await,
            409
        )
        .await,
        "conflict"
    );
    assert_eq!(
        error_code(
            put("mall", json!({"dimension": 2, "metric": "dot"})).await,
            409
        )
        .await,
        "conflict",
        "the default factors are other settings"
    );
    for bad in [
        json!({"collaborative": {"factors": 0}}),
        json!({"collaborative": {"regularization": -1.0}}),
        json!({"collaborative": {"unobserved_weight": 2.0}}),
        json!({"collaborative": {"colour": "red"}}),
        json!({"collaborative": {"algorithm": "svd"}}),
        json!({"collaborative": {"ease_regularization": 0.0}}),
    ] {
        assert_eq!(
            error_code(put("bad", bad.clone()).await, 400).await,
            "bad_request",
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/v1/tenants/bad").await.status(),
        404,
        "nothing was made"
    );
    let entities: Vec<Value> = (0..6)
        .map(|n| json!({"id": format!("e{n}"), "vector": [1.0, f64::from(n)]}))
        .collect();
    assert_eq!(
        app.upsert("mall", Value::from(entities)).await.status(),
        200
    );
    let likes: Vec<Value> = (0..12)
        .map(|n| json!({"user": format!("u{}", n % 4), "entity": format!("e{}", n % 6), "kind": "like"}))
        .collect();
    assert_eq!(app.interact("mall", Value::from(likes)).await.status(), 200);
    let model = crate::helpers::train(&app, "mall", 1).await;
    assert_eq!(model["factors"], 8);
    // Learning off: no training, on request or by itself.
    assert_eq!(
        put("quiet", json!({"collaborative": {"enabled": false}}))
            .await
            .status(),
        201
    );
    let refused = app
        .admin(Method::POST, "/v1/tenants/quiet/model/train")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(refused, 409).await, "conflict");
    let view: Value = app.get("/v1/tenants/quiet").await.json().await.unwrap();
    assert_eq!(view["collaborative"]["enabled"], false);
}

/// Issue 14, F6 and F7: a weight of 1e38 made a trending score infinite (and -1e38 NaN), and a
/// timestamp of 9999-12-31 pinned an entity at full weight in every window. Both are refused
/// whole, naming the item, and change nothing; a weight of 1e6 and an hour ahead are fine.
async fn weights_past_1e6_and_timestamps_from_the_future_are_refused(backend: Backend) {
    let app = seeded(backend).await;
    for bad in [
        json!([{"user": "u", "entity": "a", "kind": "like"}, {"user": "u", "entity": "a", "kind": "like", "weight": 1e38}]),
        json!([{"user": "u", "entity": "a", "kind": "like"}, {"user": "u", "entity": "a", "kind": "like", "weight": -1e38}]),
        json!([{"user": "u", "entity": "a", "kind": "like"}, {"user": "u", "entity": "b", "kind": "view", "timestamp": "9999-12-31T00:00:00Z"}]),
    ] {
        let response = app.interact("shop", bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("item 1"),
            "{body}"
        );
    }
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    assert_eq!(info["interactions"], 0, "nothing was recorded");
    let soon = time::OffsetDateTime::now_utc() + time::Duration::minutes(50);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let fine = json!([
        {"user": "u", "entity": "a", "kind": "like", "weight": 1e6},
        {"user": "u", "entity": "b", "kind": "view", "timestamp": soon}
    ]);
    assert_eq!(app.interact("shop", fine).await.status(), 200);
    let trending: Value = app
        .get("/v1/tenants/shop/trending")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        trending["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["score"].as_f64().is_some_and(f64::is_finite)),
        "{trending}"
    );
}

/// Issue 14, F13 and F10 over HTTP: `bearer` in lower case opens as `Bearer` does (a wrong key
/// is still refused), and a cosine vector whose length does not fit in f32 is `invalid_vector`.
async fn the_scheme_is_case_insensitive_and_cosine_lengths_fit_in_f32(backend: Backend) {
    let app = seeded(backend).await;
    let with = |header: String| {
        app.request(Method::GET, "/v1/tenants/shop", None)
            .header("authorization", header)
            .send()
    };
    assert_eq!(with(format!("bearer {ADMIN}")).await.unwrap().status(), 200);
    assert_eq!(with(format!("BEARER {ADMIN}")).await.unwrap().status(), 200);
    assert_eq!(with("bearer nope".to_owned()).await.unwrap().status(), 401);
    assert_eq!(app.create_tenant("round", 3, "cosine").await.status(), 201);
    for vector in [json!([1e-45, 0.0, 0.0]), json!([3e38, 3e38, 3e38])] {
        let response = app
            .upsert("round", json!([{"id": "x", "vector": vector}]))
            .await;
        assert_eq!(
            error_code(response, 400).await,
            "invalid_vector",
            "{vector}"
        );
    }
}
