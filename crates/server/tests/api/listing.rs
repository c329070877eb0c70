//! Looking around (issue 15): the list of tenants, and a tenant's entities a page at a time.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, error_code, seeded};

both!(
    entities_page_through_in_id_order,
    tenants_are_listed_by_name_to_whom_may_see_them
);

async fn entities_page_through_in_id_order(backend: Backend) {
    let app = seeded(backend).await;
    let page = |query: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/v1/tenants/shop/entities?{query}")).await;
            assert_eq!(r.status(), 200, "{query}");
            r.json::<Value>().await.unwrap()
        }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = page("limit=2").await;
    assert_eq!(
        (ids(&first), &first["next"]),
        (vec!["a".into(), "b".into()], &Value::from("b"))
    );
    assert!(
        first["entities"][0].get("vector").is_none(),
        "vectors only when asked"
    );
    assert_eq!(first["entities"][0]["category"], "books");
    assert_eq!(first["entities"][0]["attributes"]["price"], 12);
    let second = page("limit=2&after=b&vectors=true").await;
    assert_eq!(ids(&second), ["c", "d"]);
    assert_eq!(
        second["entities"][0]["vector"],
        serde_json::json!([0.5, 0.5, 0.0])
    );
    let last = page("limit=2&after=d").await;
    assert_eq!(
        (ids(&last), &last["next"]),
        (vec!["e".into()], &Value::Null)
    );
    let all = page("").await;
    assert_eq!(ids(&all), ["a", "b", "c", "d", "e"]);
    assert_eq!(all["next"], Value::Null);
    // A deleted entity leaves the list.
    let r = app
        .admin(Method::DELETE, "/v1/tenants/shop/entities/c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(ids(&page("after=b&limit=1").await), ["d"]);
    for bad in [
        "limit=0",
        "limit=1001",
        "after=",
        "after=a%00b",
        "colour=red",
    ] {
        let r = app.get(&format!("/v1/tenants/shop/entities?{bad}")).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{bad}");
    }
}

async fn tenants_are_listed_by_name_to_whom_may_see_them(backend: Backend) {
    let app = seeded(backend).await;
    assert_eq!(app.create_tenant("alpha", 2, "cosine").await.status(), 201);
    let names = |body: &Value| -> Vec<String> {
        body["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = app.get("/v1/tenants").await;
    assert_eq!(r.status(), 200);
    let all: Value = r.json().await.unwrap();
    assert_eq!(names(&all), ["alpha", "shop"]);
    assert_eq!(all["tenants"][1]["entities"], 5);
    assert_eq!(all["tenants"][0]["dimension"], 2);
    // A tenant key sees its own tenant, charged to its budget.
    let key = app.create_key("shop").await;
    let r = app
        .request(Method::GET, "/v1/tenants", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    assert_eq!(names(&r.json().await.unwrap()), ["shop"]);
    let r = app
        .request(Method::GET, "/v1/tenants", None)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = app
        .request(Method::GET, "/v1/tenants", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
}
