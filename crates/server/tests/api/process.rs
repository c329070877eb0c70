//! The `reco serve` process (issue 15): SIGINT is as graceful as SIGTERM, and its logs say
//! what a person needs (a banner, one line per request) and not what they do not (polls).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::ADMIN;

/// A `reco serve` process on the embedded database in `dir`.
struct Process {
    child: Child,
    base: String,
    client: reqwest::Client,
    /// Where its stderr goes.
    log: std::path::PathBuf,
}

impl Process {
    async fn start(dir: &std::path::Path) -> Self {
        Self::start_with(dir, &[]).await
    }

    /// A process with more environment; its stderr goes to a file of its own in `dir`.
    async fn start_with(dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_reco"))
            .arg("serve")
            .env("RECO_DATA_DIR", dir)
            .env("RECO_BIND", format!("127.0.0.1:{port}"))
            .env("RECO_ADMIN_KEY", ADMIN)
            .env("RECO_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("stderr-{port}.log"))).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            log: dir.join(format!("stderr-{port}.log")),
        };
        let started = Instant::now();
        while !process.ready().await {
            assert!(started.elapsed() < Duration::from_secs(30), "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    async fn ready(&self) -> bool {
        let r = self
            .client
            .get(format!("{}/health/ready", self.base))
            .send()
            .await;
        r.is_ok_and(|r| r.status() == 200)
    }

    fn send(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// SIGINT while a 10,000-entity write is in flight: the write is answered in full, the process
/// then exits cleanly, and storage holds exactly what the answer said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_large_write_answers_it_then_stops() {
    let dir = std::env::temp_dir().join(format!("reco_stop_{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Process::start(&dir).await;
    let made = server
        .send(reqwest::Method::PUT, "/v1/tenants/big")
        .json(&json!({"dimension": 64, "metric": "cosine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let entities: Vec<Value> = (0..10_000)
        .map(|i| {
            let v: Vec<f32> = (0..64)
                .map(|d| ((i * 7 + d * 13) % 31) as f32 + 1.0)
                .collect();
            json!({"id": format!("e{i}"), "vector": v})
        })
        .collect();
    let write = server
        .send(reqwest::Method::PUT, "/v1/tenants/big/entities")
        .json(&json!({ "entities": entities }))
        .send();
    let answered = tokio::spawn(async move {
        let response = write.await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        (status, body, Instant::now())
    });
    // The body is sent and being written when the signal comes (a debug build takes far
    // longer than this to check and commit 10,000 entities).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let signalled = Instant::now();
    server.signal("INT");
    let (status, body, at) = answered.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upserted"], 10_000);
    assert!(
        at > signalled,
        "the write was answered before the signal: the test proves nothing"
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("the process stops after answering")
        .unwrap();
    assert!(exit.success(), "{exit:?}");

    let again = Process::start(&dir).await;
    let info: Value = again
        .send(reqwest::Method::GET, "/v1/tenants/big")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["entities"], 10_000);
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

/// JSON lines off a terminal: a banner naming the version, the URLs and the storage (an
/// absolute path); one access line per request with its route, status, time, tenant and
/// request id; readiness polls not logged. Text into a file carries no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_a_banner_and_a_line_per_request_but_not_per_poll() {
    let dir = std::env::temp_dir().join(format!("reco_log_{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Process::start_with(&dir, &[("RECO_LOG", "info")]).await;
    for _ in 0..5 {
        assert!(server.ready().await);
    }
    let made = server
        .send(reqwest::Method::PUT, "/v1/tenants/shop")
        .header("x-request-id", "req-42")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let text = std::fs::read_to_string(&server.log).unwrap();
    drop(server);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let banner = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reco is listening"))
        })
        .unwrap_or_else(|| panic!("no banner in\n{text}"));
    assert_eq!(banner["version"], env!("CARGO_PKG_VERSION"));
    let url = banner["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{banner}");
    assert_eq!(banner["docs"], format!("{url}/docs/"));
    let storage = banner["storage"].as_str().unwrap();
    assert!(
        storage.starts_with("SQLite at /") && storage.ends_with("reco.db"),
        "{banner}"
    );
    let served: Vec<&Value> = lines.iter().filter(|l| l["message"] == "served").collect();
    assert_eq!(
        served.len(),
        1,
        "one line for the PUT, none for the polls:\n{text}"
    );
    let line = served[0];
    assert_eq!(
        (
            &line["level"],
            &line["route"],
            &line["status"],
            &line["tenant"]
        ),
        (
            &json!("INFO"),
            &json!("/v1/tenants/{tenant}"),
            &json!(201),
            &json!("shop")
        )
    );
    assert_eq!(line["span"]["request_id"], "req-42");
    assert!(line["ms"].as_f64().is_some());

    // Text asked for, into a file: no escape codes.
    let server =
        Process::start_with(&dir, &[("RECO_LOG", "info"), ("RECO_LOG_FORMAT", "text")]).await;
    assert!(server.ready().await);
    let text = std::fs::read_to_string(&server.log).unwrap();
    drop(server);
    assert!(text.contains("reco is listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
