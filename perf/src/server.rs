//! reco servers under test: started as processes of the release binary, seeded and asked
//! through the API like any client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde_json::{Value, json};

use crate::data::{Catalogue, DIMENSION, TENANT};

/// The admin key of every server under test.
pub const KEY: &str = "perf-admin-key";

/// How one server runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub reco: PathBuf,
    /// `postgres://...`, or `None` for the embedded database in `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub cache: bool,
    /// Rank in PostgreSQL (the reference design) instead of in memory.
    pub database_ranking: bool,
    pub ef_search: u32,
    /// Build the engine's graph (the default); off for a server that only seeds.
    pub graph: bool,
    /// Keep tenant images in the data folder (the default of `reco serve`).
    pub images: bool,
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub base: String,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server and waits until it has loaded its indexes.
    pub async fn start(config: &Config) -> Result<Self> {
        let mut command = Command::new(&config.reco);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RECO_BIND", format!("127.0.0.1:{}", config.port))
            .env("RECO_ADMIN_KEY", KEY)
            .env("RECO_DATA_DIR", &config.data_dir)
            .env("RECO_CACHE", if config.cache { "on" } else { "off" })
            .env(
                "RECO_RANKING",
                if config.database_ranking {
                    "database"
                } else {
                    "memory"
                },
            )
            .env("RECO_HNSW_EF_SEARCH", config.ef_search.to_string())
            .env(
                "RECO_ANN_THRESHOLD",
                if config.graph { "5000" } else { "1000000000" },
            )
            // A budget far above what two cores serve, so the limiter does not shape figures.
            .env("RECO_RATE_LIMIT", "100000000")
            // The load is measured against the reference design, which learns nothing: no
            // training starts by itself during a run.
            .env("RECO_TRAIN_AFTER", "0")
            .env("RECO_IMAGES", if config.images { "on" } else { "off" })
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                config.data_dir.join("server.log"),
            )?));
        if let Some(url) = &config.database_url {
            command.env("DATABASE_URL", url);
        }
        let child = command.spawn().context("starting reco serve")?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{}", config.port),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
        };
        server
            .wait_ready(Duration::from_secs(1800), &config.data_dir)
            .await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, within: Duration, dir: &Path) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!("the server exited ({status}) while starting: {tail:?}");
            }
            let ready = self
                .client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!("the server was not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server as an operator does (SIGTERM) and waits until it exits: it answers
    /// what is in flight and writes its tenant images first. Returns how long that took.
    pub fn stop_gracefully(mut self) -> Result<Duration> {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        anyhow::ensure!(exit.success(), "the server exited with {exit}");
        Ok(started.elapsed())
    }

    /// A counter of the server's metrics, summed over its series that carry `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> Result<f64> {
        let text = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident set (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    /// Makes the tenant and writes the catalogue through the API, in batches.
    pub async fn seed(&self, catalogue: &Catalogue, bar: &ProgressBar) -> Result<()> {
        let r = self
            .request(reqwest::Method::PUT, &format!("/v1/tenants/{TENANT}"))
            .json(&json!({"dimension": DIMENSION, "metric": "cosine"}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating the tenant: {}", r.text().await?);
        }
        bar.set_length(catalogue.n as u64);
        let batch = 5_000;
        for start in (0..catalogue.n).step_by(batch) {
            let end = (start + batch).min(catalogue.n);
            let r = self
                .request(
                    reqwest::Method::PUT,
                    &format!("/v1/tenants/{TENANT}/entities"),
                )
                .json(&catalogue.entities(start, end))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("seeding entities {start}..{end}: {}", r.text().await?);
            }
            bar.set_position(end as u64);
        }
        Ok(())
    }

    /// The ids of the ten entities most similar to entity `i`.
    pub async fn similar(&self, i: usize, exact: bool) -> Result<Vec<String>> {
        let path = format!(
            "/v1/tenants/{TENANT}/entities/{}/similar?k=10{}",
            Catalogue::id(i),
            if exact { "&exact=true" } else { "" }
        );
        let r = self.request(reqwest::Method::GET, &path).send().await?;
        if !r.status().is_success() {
            bail!("{path}: {}", r.status());
        }
        let body: Value = r.json().await?;
        Ok(body["results"]
            .as_array()
            .context("no results")?
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect())
    }
}

/// Recall@10: the share of the true ten found, over every sampled query.
pub fn recall(truth: &[Vec<String>], found: &[Vec<String>]) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for (t, f) in truth.iter().zip(found) {
        total += t.len();
        hit += t.iter().filter(|id| f.contains(id)).count();
    }
    if total == 0 {
        return 1.0;
    }
    hit as f64 / total as f64
}

/// Answers to the sampled queries.
pub async fn answers(server: &Server, sample: &[usize], exact: bool) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::with_capacity(sample.len());
    for &i in sample {
        out.push(server.similar(i, exact).await?);
    }
    Ok(out)
}

/// A process's resident set now (`VmRSS`), in bytes.
pub fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// A fresh PostgreSQL database named `name` on the server of `admin_url`; its URL.
pub async fn fresh_pg_database(admin_url: &str, name: &str) -> Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await?;
    }
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("a database URL ends in /NAME")?;
    Ok(format!("{base}/{name}"))
}

/// A folder for one scale's files.
pub fn fresh_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = parent.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_true_neighbours_found() {
        let v = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let truth = vec![v(&["a", "b"]), v(&["c", "d"])];
        assert_eq!(recall(&truth, &truth), 1.0);
        assert_eq!(recall(&truth, &[v(&["b", "x"]), v(&["y", "z"])]), 0.25);
        assert_eq!(recall(&[], &[]), 1.0);
    }
}
