//! `reco demo`: a playground from nothing. It starts the service on the embedded database in a
//! folder of its own, makes a tenant `demo` with a generated catalogue (categories, tags,
//! 16-dimensional vectors that cluster by category, attributes), records a log of interactions
//! with a realistic skew (a few entities take most of the traffic; each user keeps to one or
//! two categories; views outnumber purchases), trains the tenant's model, and prints a curl
//! line for every endpoint with ids that exist. Then it serves until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reco_server::{Application, Settings};
use serde_json::{Value, json};

use super::client::Client;

/// The flags of `reco demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// The folder of the demo's embedded database (made if missing; emptied first).
    #[arg(long, default_value = "demo-data")]
    pub data_dir: PathBuf,
    /// Entities in the catalogue.
    #[arg(long, default_value_t = 2_000)]
    pub entities: usize,
    /// Interactions in the log.
    #[arg(long, default_value_t = 6_000)]
    pub interactions: usize,
    /// Stop once the curl lines are printed (for scripts and tests) instead of serving on.
    #[arg(long)]
    pub exit: bool,
}

const CATEGORIES: [&str; 8] = [
    "books", "music", "films", "games", "garden", "kitchen", "sports", "toys",
];
const TAGS: [&str; 6] = ["new", "sale", "gift", "eco", "premium", "bestseller"];
const DIMENSION: usize = 16;
const USERS: usize = 400;

/// The catalogue: entity `i` belongs to a category, and its vector lies near that category's
/// centre.
fn catalogue(n: usize, rng: &mut StdRng) -> Vec<Value> {
    let centres: Vec<Vec<f32>> = (0..CATEGORIES.len())
        .map(|_| {
            (0..DIMENSION)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| {
            let c = i % CATEGORIES.len();
            let vector: Vec<f32> = centres[c]
                .iter()
                .map(|x| x + rng.random_range(-0.35..0.35))
                .collect();
            let tags: Vec<&str> = TAGS
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.25))
                .collect();
            json!({
                "id": format!("item-{i}"),
                "vector": vector,
                "category": CATEGORIES[c],
                "tags": tags,
                "attributes": {
                    "title": format!("{} #{i}", CATEGORIES[c]),
                    "price": (rng.random_range(3.0..120.0_f64) * 100.0).round() / 100.0,
                },
            })
        })
        .collect()
}

/// The log: entities drawn by a Zipf-like popularity within each user's favourite categories;
/// views, clicks, likes and purchases in falling numbers; timestamps over the last two weeks.
fn log(entities: usize, count: usize, rng: &mut StdRng) -> Vec<Value> {
    let per_category = entities.div_ceil(CATEGORIES.len()).max(1);
    // Rank r of a category is entity r * CATEGORIES.len() + c; weights 1 / (r + 1)^1.1.
    let weights: Vec<f64> = (0..per_category)
        .map(|r| 1.0 / ((r + 1) as f64).powf(1.1))
        .collect();
    let total: f64 = weights.iter().sum();
    let draw_rank = |rng: &mut StdRng| {
        let mut x = rng.random_range(0.0..total);
        for (r, w) in weights.iter().enumerate() {
            if x < *w {
                return r;
            }
            x -= w;
        }
        0
    };
    let now = time::OffsetDateTime::now_utc();
    (0..count)
        .map(|_| {
            let user = rng.random_range(0..USERS);
            // Each user keeps to two categories, the first three times as often.
            let favourite = user % CATEGORIES.len();
            let second = (user / CATEGORIES.len() + favourite + 1) % CATEGORIES.len();
            let c = if rng.random_bool(0.75) {
                favourite
            } else {
                second
            };
            let entity = (draw_rank(rng) * CATEGORIES.len() + c).min(entities - 1);
            let kind = match rng.random_range(0..100) {
                0..60 => "view",
                60..85 => "click",
                85..95 => "like",
                _ => "purchase",
            };
            let at = now - time::Duration::seconds(rng.random_range(0..14 * 86_400));
            let timestamp = at
                .format(&time::format_description::well_known::Rfc3339)
                .expect("a time formats");
            json!({"user": format!("user-{user}"), "entity": format!("item-{entity}"),
                   "kind": kind, "timestamp": timestamp})
        })
        .collect()
}

/// Runs the demo; see the module's documentation.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.entities >= 10, "--entities is at least 10");
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("emptying {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let defaults = Settings::default();
    let settings = Settings {
        bind: args.bind,
        sqlite: reco_storage::SqliteSettings {
            path: args.data_dir.join("reco.db"),
            ..defaults.sqlite.clone()
        },
        image_dir: Some(args.data_dir.join("images")),
        ..defaults
    };
    let app = Application::build(settings)
        .await
        .context("starting the service")?;
    let base = format!("http://{}:{}", args.bind.ip(), app.port());
    let handle = app.handle();
    let served = tokio::spawn(app.run_until_signalled());
    let client = Client::new(&base, None);
    for _ in 0..100 {
        if client.get("/health/ready").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut rng = StdRng::seed_from_u64(2026);
    client
        .send(
            reqwest::Method::PUT,
            "/v1/tenants/demo",
            &json!({"dimension": DIMENSION, "metric": "cosine"}),
        )
        .await?;
    for batch in catalogue(args.entities, &mut rng).chunks(1_000) {
        client
            .send(
                reqwest::Method::PUT,
                "/v1/tenants/demo/entities",
                &json!({ "entities": batch }),
            )
            .await?;
    }
    for batch in log(args.entities, args.interactions, &mut rng).chunks(5_000) {
        client
            .send(
                reqwest::Method::POST,
                "/v1/tenants/demo/interactions",
                &json!({ "interactions": batch }),
            )
            .await?;
    }
    client
        .send(
            reqwest::Method::POST,
            "/v1/tenants/demo/model/train",
            &json!({}),
        )
        .await?;
    let mut model = Value::Null;
    for _ in 0..1200 {
        model = client
            .get("/v1/tenants/demo/model")
            .await
            .unwrap_or_default();
        if model["state"] != "training" && model["version"].is_u64() || model["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        model["state"] == "ready",
        "the demo's model did not train: {model}"
    );
    let trending = client
        .get("/v1/tenants/demo/trending?window=14d&k=1")
        .await?;
    let top = trending["results"][0]["id"]
        .as_str()
        .unwrap_or("item-0")
        .to_owned();
    print_tour(&base, &top);
    if args.exit {
        handle.stop(true).await;
    }
    served.await??;
    Ok(())
}

/// A curl line for every endpoint, on the demo's data.
fn print_tour(base: &str, top: &str) {
    let json = "-H 'content-type: application/json'";
    let lines = [
        (
            "The tenant: sizes, settings, model",
            format!("curl {base}/v1/tenants/demo"),
        ),
        ("Every tenant", format!("curl {base}/v1/tenants")),
        (
            "A page of entities",
            format!("curl '{base}/v1/tenants/demo/entities?limit=3'"),
        ),
        (
            "The most popular entity",
            format!("curl {base}/v1/tenants/demo/entities/{top}"),
        ),
        (
            "Similar by content",
            format!("curl '{base}/v1/tenants/demo/entities/{top}/similar?k=5'"),
        ),
        (
            "Also liked (the model)",
            format!("curl '{base}/v1/tenants/demo/entities/{top}/similar?space=collaborative&k=5'"),
        ),
        (
            "Similar, filtered",
            format!("curl '{base}/v1/tenants/demo/entities/{top}/similar?k=5&tags=sale'"),
        ),
        (
            "For a user (auto)",
            format!("curl '{base}/v1/tenants/demo/users/user-7/recommendations?k=5'"),
        ),
        (
            "For a user, by content",
            format!(
                "curl '{base}/v1/tenants/demo/users/user-7/recommendations?k=5&strategy=content'"
            ),
        ),
        (
            "By example",
            format!(
                "curl -X POST {base}/v1/tenants/demo/recommend {json} -d '{{\"positive\": [\"{top}\"], \"negative\": [\"item-1\"], \"k\": 5, \"diversity\": 0.3}}'"
            ),
        ),
        (
            "A batch",
            format!(
                "curl -X POST {base}/v1/tenants/demo/recommend/batch {json} -d '{{\"requests\": [{{\"positive\": [\"item-2\"], \"k\": 3}}, {{\"positive\": [\"item-3\"], \"k\": 3}}]}}'"
            ),
        ),
        (
            "Trending this week, in books",
            format!("curl '{base}/v1/tenants/demo/trending?window=7d&category=books&k=5'"),
        ),
        (
            "Record a purchase (sent twice, counted once)",
            format!(
                "curl -X POST {base}/v1/tenants/demo/interactions {json} -d '{{\"interactions\": [{{\"id\": \"order-1\", \"user\": \"user-7\", \"entity\": \"{top}\", \"kind\": \"purchase\"}}]}}'"
            ),
        ),
        (
            "The model's status",
            format!("curl {base}/v1/tenants/demo/model"),
        ),
        (
            "Train again",
            format!("curl -X POST {base}/v1/tenants/demo/model/train"),
        ),
        (
            "A key for this tenant",
            format!("curl -X POST {base}/v1/tenants/demo/keys"),
        ),
        (
            "Health and metrics",
            format!("curl {base}/health/ready; curl {base}/metrics"),
        ),
        ("Try it all in a browser", format!("{base}/docs/")),
    ];
    println!("\nreco demo: tenant `demo` is ready at {base}. Try:\n");
    for (what, line) in lines {
        println!("# {what}\n{line}\n");
    }
}
