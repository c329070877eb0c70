//! The `reco` commands that talk to a running service.

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{ADMIN, Backend, TestApp};

async fn reco(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reco"))
        .args(args)
        .env("RECO_URL", &app.base)
        .env("RECO_ADMIN_KEY", ADMIN)
        .env("RECO_KEY", ADMIN)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "reco_cli_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn counts(app: &TestApp) -> (u64, u64) {
    let info: Value = app.get("/v1/tenants/shop").await.json().await.unwrap();
    (
        info["entities"].as_u64().unwrap(),
        info["interactions"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_keys_are_made_from_the_command_line() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (ok, out, err) = reco(
        &app,
        &[
            "tenant",
            "create",
            "shop",
            "--dimension",
            "3",
            "--metric",
            "dot",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"dimension\":3"), "{out}");
    let (ok, key, err) = reco(&app, &["key", "create", "shop"]).await;
    assert!(ok, "{err}");
    let r = app
        .request(reqwest::Method::GET, "/v1/tenants/shop", Some(key.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ok, _, err) = reco(&app, &["key", "create", "ghost"]).await;
    assert!(!ok && err.contains("(not_found)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_a_bad_line_writes_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_tenant("shop", 3, "cosine").await;
    let file = write(
        "entities.jsonl",
        "{\"id\": \"a\", \"vector\": [1, 0, 0]}\n{\"id\": \"b\", \"vector\": [0, 1, 0]}\n{\"id\": \"c\", \"vector\": [1, 2]}\n{\"id\": \"d\"}\n{\"id\": \"e\", \"vector\": [0, 0, 0]}\n",
    );
    let (ok, _, err) = reco(
        &app,
        &[
            "import",
            file.to_str().unwrap(),
            "--tenant",
            "shop",
            "--kind",
            "entities",
        ],
    )
    .await;
    assert!(!ok);
    for line in ["line 3:", "line 4:", "line 5:"] {
        assert!(err.contains(line), "{line} is not reported in\n{err}");
    }
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(counts(&app).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_go_in_batches_and_resume() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_tenant("shop", 2, "dot").await;
    let csv = write(
        "entities.csv",
        "id,vector,category,tags\na,1 0,books,new|sale\nb,\"[0, 1]\",,\nc,1 1,music,\n",
    );
    let (ok, out, err) = reco(
        &app,
        &[
            "import",
            csv.to_str().unwrap(),
            "--tenant",
            "shop",
            "--kind",
            "entities",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("imported 3 line(s)"), "{out}");
    let a: Value = app
        .get("/v1/tenants/shop/entities/a")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["tags"], serde_json::json!(["new", "sale"]));

    let lines: String = (0..25)
        .map(|i| format!("{{\"user\": \"u{i}\", \"entity\": \"a\", \"kind\": \"view\"}}\n"))
        .collect();
    let file = write("interactions.jsonl", &lines);
    let path = file.to_str().unwrap();
    let args = [
        "import",
        path,
        "--tenant",
        "shop",
        "--kind",
        "interactions",
        "--batch-size",
        "10",
    ];
    let (ok, out, err) = reco(&app, &args).await;
    assert!(ok, "{err}");
    assert!(out.contains("imported 25 line(s)"), "{out}");
    assert_eq!(counts(&app).await, (3, 25));
    // Run again: everything was sent, so nothing is sent twice.
    let (ok, out, _) = reco(&app, &args).await;
    assert!(
        ok && out.contains("imported 0 line(s)") && out.contains("25 sent by an earlier run"),
        "{out}"
    );
    assert_eq!(counts(&app).await, (3, 25));
    // A run that stopped after the first batch resumes after it; had it sent more than it
    // noted, the ids keep those from counting twice.
    let marker = format!("{path}.reco-import");
    let progress: Value = serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    let mut stopped = progress.clone();
    stopped[0]["lines_sent"] = 10.into();
    std::fs::write(&marker, stopped.to_string()).unwrap();
    let (ok, out, _) = reco(&app, &args).await;
    assert!(
        ok && out.contains("imported 15 line(s)") && out.contains("15 recorded before, not again"),
        "{out}"
    );
    assert_eq!(counts(&app).await, (3, 25));
}

/// Issue 15's import: the same file into two tenants, a whole-file check by the server's
/// rules that names file lines, and reruns (restarted, or after fixing the file) that never
/// count an interaction twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_check_the_whole_file_and_never_count_twice() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for tenant in ["shop", "shop2"] {
        assert_eq!(app.create_tenant(tenant, 2, "dot").await.status(), 201);
    }
    let import = |file: &std::path::Path, tenant: &str, kind: &str, extra: &[&str]| {
        let mut args = vec![
            "import".to_owned(),
            file.to_str().unwrap().to_owned(),
            "--tenant".into(),
            tenant.into(),
            "--kind".into(),
            kind.into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let app = &app;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            reco(app, &args).await
        }
    };
    let count = |tenant: &'static str| {
        let app = &app;
        async move {
            let info: Value = app
                .get(&format!("/v1/tenants/{tenant}"))
                .await
                .json()
                .await
                .unwrap();
            (
                info["entities"].as_u64().unwrap(),
                info["interactions"].as_u64().unwrap(),
            )
        }
    };
    // A duplicate id on the last line refuses the whole file, naming that line.
    let mut lines: String = (0..30)
        .map(|i| format!("{{\"id\": \"e{i}\", \"vector\": [1, {i}]}}\n"))
        .collect();
    lines.push_str("{\"id\": \"e3\", \"vector\": [1, 1]}\n");
    let entities = write("entities.jsonl", &lines);
    let (ok, _, err) = import(&entities, "shop", "entities", &["--batch-size", "5"]).await;
    assert!(
        !ok && err.contains("line 31:") && err.contains("twice"),
        "{err}"
    );
    assert_eq!(count("shop").await, (0, 0));
    // Interactions: a bad kind and a timestamp far ahead, on the last lines, write nothing.
    let good: String = (0..30)
        .map(|i| format!("{{\"user\": \"u{i}\", \"entity\": \"e{i}\", \"kind\": \"view\"}}\n"))
        .collect();
    let bad = format!(
        "{good}{{\"user\": \"x\", \"entity\": \"e1\", \"kind\": \"stare\"}}\n\
         {{\"user\": \"y\", \"entity\": \"e1\", \"kind\": \"view\", \"timestamp\": \"9999-12-31T00:00:00Z\"}}\n"
    );
    let file = write("interactions.jsonl", &bad);
    let (ok, _, err) = import(&file, "shop", "interactions", &[]).await;
    assert!(
        !ok && err.contains("line 31:") && err.contains("line 32:"),
        "{err}"
    );
    assert!(err.contains("hour in the future"), "{err}");
    assert_eq!(count("shop").await, (0, 0));
    // Fixed (the bad lines dropped), it goes in; into a second tenant as well, from line 1.
    std::fs::write(&file, &good).unwrap();
    for tenant in ["shop", "shop2"] {
        let (ok, out, err) = import(&file, tenant, "interactions", &["--batch-size", "7"]).await;
        assert!(ok && out.contains("imported 30 line(s)"), "{out}{err}");
        assert_eq!(count(tenant).await.1, 30);
    }
    // Edited again (a line added, the file's hash changes): only the new line counts.
    std::fs::write(
        &file,
        format!("{good}{{\"user\": \"z\", \"entity\": \"e2\", \"kind\": \"like\"}}\n"),
    )
    .unwrap();
    let (ok, out, err) = import(&file, "shop", "interactions", &[]).await;
    assert!(
        ok && out.contains("30 recorded before, not again"),
        "{out}{err}"
    );
    assert_eq!(count("shop").await.1, 31);
    let (ok, out, _) = import(&file, "shop", "interactions", &["--restart"]).await;
    assert!(
        ok && out.contains("imported 31 line(s)") && out.contains("31 recorded before"),
        "{out}"
    );
    assert_eq!(count("shop").await.1, 31);
    // A tenant deleted and made again is another incarnation: the import starts over.
    let r = app
        .admin(reqwest::Method::DELETE, "/v1/tenants/shop2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.create_tenant("shop2", 2, "dot").await.status(), 201);
    let (ok, out, _) = import(&file, "shop2", "interactions", &[]).await;
    assert!(ok && out.contains("imported 31 line(s)"), "{out}");
    assert_eq!(count("shop2").await.1, 31);
    // Many bad lines: the first 20 are shown, the rest counted.
    let many: String = (0..45).map(|i| format!("{{\"id\": \"b{i}\"}}\n")).collect();
    let (ok, _, err) = import(&write("many.jsonl", &many), "shop", "entities", &[]).await;
    assert!(
        !ok && err.contains("45 bad line(s)") && err.contains("... and 25 more"),
        "{err}"
    );
    assert!(!err.contains("line 21:"), "{err}");
}

/// `reco evaluate` on a tenant as the database holds it, and on files: a table of every
/// strategy that applies, JSON and a chart when asked, and a clear refusal of bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_compares_strategies_on_a_tenant_and_on_files() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    crate::helpers::mall(&app).await;
    let database = format!("sqlite://{}", app.settings.sqlite.path.display());
    let json = write("report.json", "");
    let chart = json.with_file_name("report.svg");
    let (ok, out, err) = reco(
        &app,
        &[
            "evaluate",
            "--tenant",
            "mall",
            "--database-url",
            &database,
            "--split",
            "random",
            "--json",
            json.to_str().unwrap(),
            "--chart",
            chart.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{err}");
    for row in [
        "| trending |",
        "| content |",
        "| collaborative |",
        "| hybrid |",
        "| auto |",
    ] {
        assert!(out.contains(row), "{row} missing from {out}");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["entities"], 20);
    let collaborative = report["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["strategy"] == "collaborative")
        .unwrap();
    let hr = collaborative["hr@10"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&hr), "{report}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.contains("<svg"));
    for measure in ["HR@10", "NDCG@10", "recall@20"] {
        assert_eq!(
            svg.matches(measure).count(),
            1,
            "{measure} once, in the legend"
        );
    }
    // Files without vectors: no content strategy; a bad line is named.
    let entities = write(
        "entities.jsonl",
        &(0..6)
            .map(|n| format!("{{\"id\": \"e{n}\"}}\n"))
            .collect::<String>(),
    );
    let log: String = (0..24)
        .map(|n| {
            format!(
                "{{\"user\": \"u{}\", \"entity\": \"e{}\", \"kind\": \"like\", \"timestamp\": \"2024-01-01T00:{:02}:00Z\"}}\n",
                n % 4,
                n % 6,
                n
            )
        })
        .collect();
    let interactions = entities.with_file_name("interactions.jsonl");
    std::fs::write(&interactions, log).unwrap();
    let files = [
        "evaluate",
        "--entities",
        entities.to_str().unwrap(),
        "--interactions",
        interactions.to_str().unwrap(),
    ];
    let (ok, out, err) = reco(&app, &files).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("| collaborative |") && !out.contains("| content |"),
        "{out}"
    );
    std::fs::write(&interactions, "{\"user\": \"u1\"}\n").unwrap();
    let (ok, _, err) = reco(&app, &files).await;
    assert!(!ok);
    assert!(err.contains("line 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_entities_are_listed_and_deleted_from_the_command_line() {
    let app = crate::helpers::seeded(Backend::Sqlite).await;
    assert_eq!(app.create_tenant("alpha", 2, "cosine").await.status(), 201);
    let (ok, out, err) = reco(&app, &["tenant", "list"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("alpha\t2-d cosine\t0 entities"),
        "{out}"
    );
    assert!(lines[1].starts_with("shop\t3-d dot\t5 entities"), "{out}");

    // One page, and where to go on; then every page.
    let (ok, out, err) = reco(&app, &["entities", "list", "shop", "--limit", "2"]).await;
    assert!(ok, "{err}");
    let ids = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ids(&out), ["a", "b"]);
    assert!(err.contains("--after 'b'"), "{err}");
    let (ok, out, _) = reco(&app, &["entities", "list", "shop", "--limit", "2", "--all"]).await;
    assert!(ok);
    assert_eq!(ids(&out), ["a", "b", "c", "d", "e"]);

    let (ok, out, err) = reco(&app, &["tenant", "delete", "alpha"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "deleted alpha");
    assert_eq!(app.get("/v1/tenants/alpha").await.status(), 404);
}

/// Errors are one line a person can act on: the message, its code, a hint; no JSON, no
/// backtrace; an address without a scheme is taken as http.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_errors_are_one_line_with_a_hint() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let bare = app.base.trim_start_matches("http://").to_owned();
    let (ok, _, err) = reco(&app, &["entities", "list", "nobody", "--url", &bare]).await;
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: tenant `nobody` does not exist (not_found); `reco tenant list` shows the \
         tenants, `reco tenant create` makes one"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_reco"))
        .args(["tenant", "list", "--url", &bare, "--key", "wrong"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: this key is not valid (unauthorized); check the key"),
        "{err}"
    );
    let (ok, _, err) = reco(&app, &["tenant", "list", "--url", "127.0.0.1:1"]).await;
    assert!(!ok);
    assert!(err.contains("is `reco serve` running there?"), "{err}");
}

/// `reco demo` starts from nothing: its own service and data, a trained tenant, and a tour of
/// curl lines that all work against it; Ctrl-C stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_starts_from_nothing_and_every_line_of_its_tour_works() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = std::env::temp_dir().join(format!("reco_demo_{}", rand::random::<u64>()));
    let mut demo = Command::new(env!("CARGO_BIN_EXE_reco"))
        // Past 1,024 entities: the model is EASE over more items than iALS has factors.
        .args(["demo", "--bind", "127.0.0.1:0", "--entities", "1100"])
        .args(["--interactions", "2000", "--data-dir"])
        .arg(&dir)
        .env("RECO_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut tour = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.ends_with("/docs/");
            tour.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), read)
        .await
        .expect("the tour within two minutes");
    assert!(
        tour.iter()
            .any(|l| l.starts_with("reco demo: tenant `demo` is ready at http://127.0.0.1:")),
        "{tour:?}"
    );
    let curls: Vec<&String> = tour.iter().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 15, "{tour:?}");
    for line in curls {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; curl() {{ command curl -fsS -o /dev/null \"$@\"; }}; {line}"
            ))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pid = demo.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(std::time::Duration::from_secs(30), demo.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
