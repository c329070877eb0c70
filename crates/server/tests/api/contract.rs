//! The OpenAPI document states the contract exactly (issue 14, point 5): its examples work in
//! order, and what its schemas allow (whole numbers written as `5.0`) or forbid (a batch
//! request of the wrong shape) is what the server accepts or refuses.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_code, seeded};

both!(the_documents_examples_work_in_order);

/// Every request body's example, and the path parameters' examples, tried in the document's
/// order as a person would in `/docs`: each is answered 2xx, and the questions find the
/// examples' entities.
async fn the_documents_examples_work_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc: Value = app.public_json("/openapi.json").await;
    let fill = |path: &str, method: &str| -> String {
        let mut filled = path.to_owned();
        for parameter in doc["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if parameter["in"] == "path" {
                let name = parameter["name"].as_str().unwrap();
                let example = parameter["example"].as_str().expect("a path example");
                filled = filled.replace(&format!("{{{name}}}"), example);
            }
        }
        filled
    };
    let steps = [
        ("/v1/tenants/{tenant}", "put", Method::PUT),
        ("/v1/tenants/{tenant}/entities", "put", Method::PUT),
        ("/v1/tenants/{tenant}/interactions", "post", Method::POST),
        ("/v1/tenants/{tenant}/recommend", "post", Method::POST),
        ("/v1/tenants/{tenant}/recommend/batch", "post", Method::POST),
    ];
    let mut answers = Vec::new();
    for (path, method, verb) in steps {
        let example =
            &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"];
        assert!(example.is_object(), "{method} {path} has an example body");
        let response = app
            .admin(verb, &fill(path, method))
            .json(example)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        answers.push(body);
    }
    assert_eq!(answers[1]["upserted"], 2);
    assert_eq!(answers[2]["accepted"], 1);
    assert_eq!(answers[3]["results"][0]["id"], "b");
    let batch = answers[4]["responses"].as_array().unwrap();
    assert_eq!(batch.len(), 2);
    assert!(
        batch.iter().all(|r| r.get("results").is_some()),
        "{batch:?}"
    );
    for (path, method) in [
        ("/v1/tenants/{tenant}/entities/{id}", "get"),
        ("/v1/tenants/{tenant}/entities/{id}/similar", "get"),
        ("/v1/tenants/{tenant}/users/{user}/recommendations", "get"),
        ("/v1/tenants/{tenant}/trending", "get"),
    ] {
        let response = app.get(&fill(path, method)).await;
        assert_eq!(response.status(), 200, "{method} {path}");
    }
}

/// JSON Schema counts `5.0` as an integer, so the server does too; `2.5` is not one.
#[tokio::test]
async fn whole_numbers_may_be_written_with_a_fraction_of_zero() {
    let app = seeded(Backend::Sqlite).await;
    let r = app
        .recommend("shop", json!({"positive": ["a"], "k": 2.0, "offset": 0.0}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = app
        .recommend("shop", json!({"positive": ["a"], "k": 2.5}))
        .await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    let made = app
        .admin(Method::PUT, "/v1/tenants/wholes")
        .json(&json!({"dimension": 4.0, "metric": "dot", "rate_limit": 100.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let view: Value = made.json().await.unwrap();
    assert_eq!(
        (view["dimension"].clone(), view["rate_limit"].clone()),
        (json!(4), json!(100))
    );
}

/// A body about a tenant that does not exist cannot be right: 404, whatever the body holds.
#[tokio::test]
async fn a_tenant_that_does_not_exist_is_404_before_its_body_is_read() {
    let app = seeded(Backend::Sqlite).await;
    for (method, path) in [
        (Method::POST, "/v1/tenants/nobody/interactions"),
        (Method::PUT, "/v1/tenants/nobody/entities"),
        (Method::POST, "/v1/tenants/nobody/recommend"),
    ] {
        let r = app
            .admin(method, path)
            .header("content-type", "application/json")
            .body("{\"not\": \"the shape\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r, 404).await, "not_found", "{path}");
    }
    // Making it is still possible, and a malformed body for it is still a 400.
    let r = app.recommend("shop", json!({"positive": 3})).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
}

/// A batch request that does not match the recommend body's shape refuses the batch, naming
/// it; what only the tenant's data can answer stays that request's own error.
#[tokio::test]
async fn a_batch_request_of_the_wrong_shape_refuses_the_batch() {
    let app = seeded(Backend::Sqlite).await;
    for (bad, says) in [
        (json!({"positive": ["a"], "strategy": "nope"}), "strategy"),
        (json!({"positive": ["a"], "k": 1001}), "k is from 1 to 1000"),
        (json!({"positive": [{"id": "a", "weight": 0}]}), "weight"),
        (
            json!({"positive": [{"id": "a", "vector": [1, 0, 0]}]}),
            "either an id or a vector",
        ),
        (
            json!({"positive": ["a"], "score_threshold": 1e39}),
            "score_threshold",
        ),
    ] {
        let r = app
            .recommend_batch("shop", json!([{"positive": ["a"]}, bad]))
            .await;
        assert_eq!(r.status(), 400, "{bad}");
        let message = r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("request 1 of the batch") && message.contains(says),
            "{message}"
        );
    }
    let r = app
        .recommend_batch("shop", json!([{"positive": ["a"]}, {"positive": ["gone"]}]))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["responses"][1]["error"]["code"], "not_found");
}

/// The collaborative settings' ranges are the document's: factors 1 to 1024 whatever the
/// algorithm, a seed JSON holds exactly.
#[tokio::test]
async fn collaborative_settings_keep_to_the_documents_ranges() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for collaborative in [
        json!({"algorithm": "ease", "factors": 1025}),
        json!({"seed": 9_007_199_254_740_992_u64}),
    ] {
        let r = app
            .admin(Method::PUT, "/v1/tenants/learner")
            .json(&json!({"collaborative": collaborative}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r, 400).await, "bad_request", "{collaborative}");
    }
    let r = app
        .admin(Method::PUT, "/v1/tenants/learner")
        .json(&json!({"collaborative": {"seed": 9_007_199_254_740_991_u64, "factors": 1024}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// The README's quick start, as written: every line of its curl block answers 2xx (curl's
/// `-f`) against a server in open mode, on the embedded database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_runs_as_written() {
    let mut settings = crate::helpers::fresh_database(Backend::Sqlite).await;
    settings.admin_key = None;
    let app = TestApp::start(settings).await;
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("RECO=http://127.0.0.1:8080\n")
        .expect("the quick start sets RECO");
    let end = start + readme[start..].find("```").expect("the block ends");
    let block = readme[start..end].replacen("RECO=http://127.0.0.1:8080", "", 1);
    let script = format!(
        "set -e\nRECO={}\ncurl() {{ command curl -fsS -o /dev/null \"$@\"; }}\n\
         xdg-open() {{ :; }}\n{block}",
        app.base
    );
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
