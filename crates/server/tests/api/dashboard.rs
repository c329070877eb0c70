//! The dashboard at `/ui`: its files, the two endpoints it added to the API (a user's history and
//! an offline evaluation), and the page itself in headless Chromium (`browser`).

mod browser;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_code, group_likes, mall, train};

/// `GET /v1/tenants/{tenant}/users/{user}`: the entities a user touched, the most recent first,
/// with what each counts for now; 404 for a user without interactions.
async fn a_users_history_lists_their_entities_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    mall(&app).await;
    let r = app
        .interact(
            "mall",
            json!([
                {"user": "ann", "entity": "e1", "kind": "view", "timestamp": "2026-01-01T00:00:00Z"},
                {"user": "ann", "entity": "e2", "kind": "purchase", "timestamp": "2026-01-03T00:00:00Z"},
                {"user": "ann", "entity": "e1", "kind": "click", "timestamp": "2026-01-02T00:00:00Z"},
                {"user": "ann", "entity": "e3", "kind": "dislike", "timestamp": "2026-01-03T00:00:00Z"},
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let history: Value = app
        .get("/v1/tenants/mall/users/ann")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["user"], "ann");
    assert_eq!(history["entities"], 3);
    assert_eq!(history["newest"], "2026-01-03T00:00:00Z");
    let entities: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["entity"].as_str().unwrap())
        .collect();
    assert_eq!(entities, ["e2", "e3", "e1"]);
    let e1 = &history["history"][2];
    assert_eq!(e1["last"], "2026-01-02T00:00:00Z");
    // A view (1) and a click (2), a day and two days before the newest interaction.
    assert!((e1["given"].as_f64().unwrap() - 3.0).abs() < 1e-6, "{e1}");
    assert!(e1["weight"].as_f64().unwrap() < 3.0);
    assert!(history["history"][1]["given"].as_f64().unwrap() < 0.0);

    let one: Value = app
        .get("/v1/tenants/mall/users/ann?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["entities"], 3);
    assert_eq!(one["history"].as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=1001", "limit=x", "other=1"] {
        let r = app.get(&format!("/v1/tenants/mall/users/ann?{bad}")).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{bad}");
    }
    let r = app.get("/v1/tenants/mall/users/nobody").await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.get("/v1/tenants/none/users/ann").await;
    assert_eq!(error_code(r, 404).await, "not_found");
    // A key of another tenant opens nothing here.
    assert_eq!(app.create_tenant("other", 2, "dot").await.status(), 201);
    let key = app.create_key("other").await;
    let r = app
        .request(Method::GET, "/v1/tenants/mall/users/ann", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
}

/// Waits (at most 60 s) until the tenant's evaluation is no longer running.
async fn evaluation_done(app: &TestApp, tenant: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app
            .get(&format!("/v1/tenants/{tenant}/model/evaluation"))
            .await;
        assert_eq!(r.status(), 200);
        let status: Value = r.json().await.unwrap();
        if status["state"] != "running" {
            return status;
        }
        assert!(Instant::now() < deadline, "the evaluation never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST .../model/evaluation` runs `reco evaluate` on the tenant in the background; `GET`
/// shows its progress and then its report, with the same fields the command's JSON has. A
/// tenant made again has no evaluation.
async fn an_evaluation_runs_in_the_background_and_reports_each_strategy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    mall(&app).await;
    let path = "/v1/tenants/mall/model/evaluation";
    let r = app.get(path).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.admin(Method::POST, path).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().await.unwrap();
    assert!(
        ["running", "ready"].contains(&started["state"].as_str().unwrap()),
        "{started}"
    );
    assert!(started["started_at"].is_string());
    let done = evaluation_done(&app, "mall").await;
    assert_eq!(done["state"], "ready", "{done}");
    assert!(done["finished_at"].is_string());
    assert_eq!(done["answered"], done["answers"]);
    let report = &done["report"];
    assert_eq!(report["split"], "leave-last-out");
    assert_eq!(report["users"], 30);
    assert_eq!(
        report["tested"], 30,
        "every user's last like is a test item"
    );
    assert_eq!(report["entities"], 20);
    let strategies: Vec<&str> = report["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        strategies,
        ["trending", "content", "collaborative", "hybrid", "auto"]
    );
    for s in report["strategies"].as_array().unwrap() {
        for measure in ["hr@10", "ndcg@10", "recall@20", "coverage"] {
            let v = s[measure].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{measure} {v}");
        }
    }
    // The groups' likes are what the model learns: it finds each user's held-out like far
    // more often than what is trending over both groups.
    let hr = |name: &str| {
        report["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["strategy"] == name)
            .unwrap()["hr@10"]
            .as_f64()
            .unwrap()
    };
    assert!(hr("collaborative") > hr("trending"), "{report}");

    // Made again, the tenant is another: the old evaluation is not its.
    let r = app
        .admin(Method::DELETE, "/v1/tenants/mall")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    mall(&app).await;
    let r = app.get(path).await;
    assert_eq!(error_code(r, 404).await, "not_found");
}

/// The page and its files are served without a key, with a policy that keeps everything on
/// this server; a file the dashboard lacks is the API's 404.
async fn the_dashboard_is_served_from_the_binary(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/charts.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = app.request(Method::GET, path, None).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let tag = headers["etag"].to_str().unwrap().to_owned();
        let again = app
            .request(Method::GET, path, None)
            .header("If-None-Match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let r = app
        .request(Method::GET, "/ui/missing.js", None)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let page = app
        .request(Method::GET, "/ui", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<script type="module" src="/ui/app.js">"#));
}

/// A tenant for the browser tests: 60 entities in three categories with tags and attributes,
/// the two groups of `group_likes` with purchases on top, skewed views of visitors, and its
/// model trained.
pub async fn shop(app: &TestApp) {
    assert_eq!(app.create_tenant("shop", 4, "cosine").await.status(), 201);
    let categories = ["books", "music", "games"];
    let entities: Vec<Value> = (0..60u32)
        .map(|n| {
            let angle = f64::from(n) * 0.37;
            json!({
                "id": format!("e{n}"),
                "vector": [angle.cos(), angle.sin(), f64::from(n % 7) / 7.0, 1.0],
                "category": categories[(n % 3) as usize],
                "tags": if n % 2 == 0 { vec!["sale"] } else { vec!["new", "gift"] },
                "attributes": {"title": format!("Item {n}"), "price": 5 + n},
            })
        })
        .collect();
    assert_eq!(
        app.upsert("shop", Value::from(entities)).await.status(),
        200
    );
    assert_eq!(app.interact("shop", group_likes()).await.status(), 200);
    let purchases: Vec<Value> = (0..30)
        .map(|u| json!({"user": format!("u{u}"), "entity": format!("e{}", 20 + u % 10), "kind": "purchase"}))
        .collect();
    assert_eq!(
        app.interact("shop", Value::from(purchases)).await.status(),
        200
    );
    // Visitors who only look, with a skew: a few entities take most of the views.
    let views: Vec<Value> = (0..30u32)
        .flat_map(|n| {
            (0..30 / (n + 1)).map(move |i| {
                json!({"user": format!("visitor{i}"), "entity": format!("e{}", (n * 7) % 60), "kind": "view"})
            })
        })
        .collect();
    assert_eq!(app.interact("shop", Value::from(views)).await.status(), 200);
    train(app, "shop", 1).await;
}

both!(
    a_users_history_lists_their_entities_newest_first,
    an_evaluation_runs_in_the_background_and_reports_each_strategy,
    the_dashboard_is_served_from_the_binary,
);
