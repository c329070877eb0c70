//! Open-loop latency and the soak (issue 17), both with k6 at a constant arrival rate against
//! one server on the embedded database, cache off, graph on, the catalogue of `data`.
//!
//! - `--open-loop`: uncached similar questions at the reference's 2,073 req/s and at rising
//!   rates, each for its own run after a warm-up (which also lets the server settle its search
//!   breadth), reporting p50/p95/p99/max, failures and requests k6 could not start on time, and
//!   the highest rate whose p99 stays at or under 10 ms; and, at the first rate, the floor:
//!   the same generator against a bare responder and against reco's `/health/live` (see
//!   `floor`). Written to `open-loop.{json,md,svg}`.
//! - `--soak`: mixed traffic (one request in ten a write: new entities and interactions) at a
//!   fixed rate for a long run (30 minutes by default), the server's resident memory sampled
//!   every 10 s; reports the growth after the warm-up (the first fifth) and the errors. The
//!   400,000 requests repeat: the first pass (about 3 minutes at 2,073 req/s, inside the
//!   warm-up) grows the data by 20,000 entities and 20,000 interactions, and later passes
//!   replace those entities and repeat those interactions' ids (acknowledged, not recorded
//!   again), so after the warm-up the data holds still and growth is the server's own. Written
//!   to `soak.{json,md,svg}`. Not part of CI.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;

use crate::data::{self, Catalogue, Draw};
use crate::floor::Floor;
use crate::k6::{self, Arrival, K6Result};
use crate::report::{Key, draw_legend, legend_height, read_if_there};
use crate::server::{self, Config, KEY, Server};

/// What the open-loop and soak modes need of the command line.
#[derive(Debug)]
pub struct Setup<'a> {
    pub reco: &'a Path,
    pub k6: &'a Path,
    pub work: &'a Path,
    pub out: &'a Path,
    pub port: u16,
    pub scale: &'a str,
    pub entities: usize,
}

/// The p99 the open-loop report looks for the highest rate under.
const P99_BOUND_MS: f64 = 10.0;

async fn seeded(setup: &Setup<'_>, label: &str) -> Result<(Server, Catalogue)> {
    let dir = server::fresh_dir(setup.work, &format!("{label}-{}", setup.scale))?;
    let config = Config {
        reco: setup.reco.to_owned(),
        database_url: None,
        data_dir: dir,
        port: setup.port,
        cache: false,
        database_ranking: false,
        ef_search: 40,
        graph: true,
        images: false,
    };
    let catalogue = Catalogue::new(setup.entities, 7);
    let server = Server::start(&config).await?;
    let bar = ProgressBar::new(setup.entities as u64).with_message("seeding through the API");
    bar.set_style(ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} ({elapsed}, {eta} left)",
    )?);
    server.seed(&catalogue, &bar).await?;
    bar.finish_and_clear();
    Ok((server, catalogue))
}

/// Runs k6 with a spinner.
async fn drive(
    k6: &Path,
    work: &Path,
    base: &str,
    lines: &[data::Line],
    rate: u32,
    duration: Duration,
    label: &str,
) -> Result<K6Result> {
    let spinner = ProgressBar::new_spinner().with_message(format!("{label}: {duration:?}"));
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})")?);
    let (k6, base, work, lines) = (
        k6.to_owned(),
        base.to_owned(),
        work.to_owned(),
        lines.to_vec(),
    );
    let result = tokio::task::spawn_blocking(move || {
        k6::run(&Arrival {
            k6: &k6,
            base: &base,
            key: KEY,
            lines: &lines,
            rate,
            duration,
            work: &work,
        })
    })
    .await??;
    spinner.finish_and_clear();
    Ok(result)
}

/// The open-loop run: every rate of `rates`, `duration` each.
pub async fn open_loop(setup: &Setup<'_>, rates: &[u32], duration: Duration) -> Result<()> {
    let (server, _) = seeded(setup, "open-loop").await?;
    let lines = data::similar_requests(setup.entities, 200_000, Draw::Uniform, false, 5);
    let first = rates.first().copied().unwrap_or(2073);
    drive(
        setup.k6,
        setup.work,
        &server.base,
        &lines,
        first,
        Duration::from_secs(5),
        "warm-up",
    )
    .await?;
    // The floor at the first rate: the same generator against a responder that does nothing,
    // then against reco's cheapest route, each its own run.
    let bare = Floor::start().await?;
    let nothing: [data::Line; 1] = [("GET", "/".to_owned(), String::new())];
    let live: [data::Line; 1] = [("GET", "/health/live".to_owned(), String::new())];
    let mut floor = Vec::new();
    for (what, base, lines) in [
        ("bare responder", bare.base.as_str(), &nothing),
        ("reco /health/live", server.base.as_str(), &live),
    ] {
        let r = drive(setup.k6, setup.work, base, lines, first, duration, what).await?;
        println!(
            "  floor, {what:<18} at {first} req/s: p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>7.2} ms  max {:>8.1} ms",
            r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms
        );
        floor.push(FloorRow {
            what: what.to_owned(),
            result: r,
        });
    }
    drop(bare);
    let mut rows = Vec::new();
    for &rate in rates {
        let label = format!("{rate} req/s");
        let r = drive(
            setup.k6,
            setup.work,
            &server.base,
            &lines,
            rate,
            duration,
            &label,
        )
        .await?;
        println!(
            "  {rate:>6} req/s: answered {:>8.0}/s  p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>7.2} ms  max {:>8.1} ms  failed {}  dropped {}",
            r.achieved, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.failed, r.dropped
        );
        rows.push(r);
    }
    let breadth = server
        .metric("reco_search", "measure=\"breadth\"")
        .await
        .ok();
    std::fs::write(
        setup.out.join("open-loop.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "floor": floor, "rates": rows }))?,
    )?;
    std::fs::write(
        setup.out.join("open-loop.md"),
        open_loop_markdown(setup, &rows, &floor, breadth),
    )?;
    open_loop_chart(&rows, &floor, &setup.out.join("open-loop.svg"))?;
    Ok(())
}

/// The highest rate whose p99 is at most the bound, with nothing failed or dropped.
fn highest_within(rows: &[K6Result]) -> Option<u32> {
    rows.iter()
        .filter(|r| r.p99_ms <= P99_BOUND_MS && r.failed == 0 && r.dropped == 0)
        .map(|r| r.rate)
        .max()
}

/// Draws `open-loop.svg` again from `open-loop.json` in `out` (after a change to the chart);
/// false when there is no such file.
pub fn redraw(out: &Path) -> Result<bool> {
    #[derive(serde::Deserialize)]
    struct Written {
        floor: Vec<FloorRow>,
        rates: Vec<K6Result>,
    }
    let Some(text) = read_if_there(&out.join("open-loop.json"))? else {
        return Ok(false);
    };
    let written: Written = serde_json::from_str(&text)?;
    open_loop_chart(&written.rates, &written.floor, &out.join("open-loop.svg"))?;
    Ok(true)
}

/// One run of the floor: what was asked, and what k6 measured.
#[derive(Debug, Serialize, serde::Deserialize)]
struct FloorRow {
    what: String,
    result: K6Result,
}

fn open_loop_markdown(
    setup: &Setup<'_>,
    rows: &[K6Result],
    floor: &[FloorRow],
    breadth: Option<f64>,
) -> String {
    let mut md = format!(
        "Open loop (k6 `constant-arrival-rate`, on the same 2 cores as the server): uncached \
         similar questions (k = 10) over {} entities x {}, embedded database, cache off, graph \
         on (search breadth after the warm-up: {}). Latencies in ms, measured from each \
         request's scheduled start, so a slow answer delays no later request.\n\n\
         | rate (req/s) | answered (req/s) | p50 | p95 | p99 | max | failed | not started on time |\n\
         |---|---|---|---|---|---|---|---|\n",
        setup.entities,
        data::DIMENSION,
        breadth.map_or_else(|| "-".to_owned(), |b| format!("{b:.0}")),
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
            r.rate, r.achieved, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.failed, r.dropped
        ));
    }
    md.push_str(&format!(
        "\nHighest rate with p99 at most {P99_BOUND_MS} ms and nothing failed or dropped: {}.\n",
        highest_within(rows)
            .map_or_else(|| "none of those run".to_owned(), |r| format!("{r} req/s"))
    ));
    if !floor.is_empty() {
        md.push_str(
            "\nThe floor, the same generator at the first rate against what does no work: a bare \
             HTTP responder (reco-perf's own, a fixed 200 to every request) and reco's \
             `/health/live`: what the generator, loopback and the scheduler cost by themselves \
             at this rate, which varies from run to run as much as reco's figures do.\n\n\
             | asked of | rate (req/s) | p50 | p95 | p99 | max | failed |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for f in floor {
            let r = &f.result;
            md.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {} |\n",
                f.what, r.rate, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.failed
            ));
        }
    }
    md
}

/// One latency figure of a run.
type Measure = fn(&K6Result) -> f64;

fn open_loop_chart(rows: &[K6Result], floor: &[FloorRow], path: &Path) -> Result<()> {
    let series: [(&str, Measure); 4] = [
        ("p50", |r| r.p50_ms),
        ("p95", |r| r.p95_ms),
        ("p99", |r| r.p99_ms),
        ("max", |r| r.max_ms),
    ];
    let mut keys: Vec<_> = series
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (*name, Palette99::pick(i).to_rgba(), Key::Line))
        .collect();
    if !floor.is_empty() {
        keys.push((
            "p99 of a bare responder (the floor)",
            BLACK.to_rgba(),
            Key::Triangle,
        ));
    }
    let root =
        SVGBackend::new(path, (720, 420 + legend_height(keys.len(), 3)?)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_vertically(420);
    let max_rate = rows.iter().map(|r| f64::from(r.rate)).fold(1.0, f64::max) * 1.1;
    let top = rows.iter().map(|r| r.max_ms).fold(P99_BOUND_MS, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&plot)
        .caption("open-loop latency by arrival rate", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_rate, (0.05..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("requests started per second")
        .y_desc("ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (i, (_, value)) in series.into_iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (f64::from(r.rate), value(r).max(0.05)))
            .collect();
        chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    if let Some(bare) = floor.first() {
        chart.draw_series(std::iter::once(TriangleMarker::new(
            (f64::from(bare.result.rate), bare.result.p99_ms.max(0.05)),
            6,
            BLACK.filled(),
        )))?;
    }
    chart.draw_series(LineSeries::new(
        vec![(0.0, P99_BOUND_MS), (max_rate, P99_BOUND_MS)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    draw_legend(&legend, &keys, 3, 220)?;
    root.present()?;
    Ok(())
}

/// One memory sample of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct RssSample {
    pub at_s: f64,
    pub rss_bytes: u64,
}

/// What the soak found.
#[derive(Debug, Serialize)]
pub struct Soak {
    pub rate: u32,
    pub minutes: f64,
    pub entities: usize,
    pub traffic: K6Result,
    pub samples: Vec<RssSample>,
    /// The resident memory at the end of the warm-up (the first fifth) and at the end.
    pub rss_after_warm_up: u64,
    pub rss_at_end: u64,
    pub growth: f64,
}

/// The soak: mixed traffic at `rate` for `duration`, memory every 10 s.
pub async fn soak(setup: &Setup<'_>, rate: u32, duration: Duration) -> Result<()> {
    let (server, catalogue) = seeded(setup, "soak").await?;
    let lines = data::mixed_requests(&catalogue, 400_000, 9, true);
    let pid = server.pid();
    let started = Instant::now();
    let traffic = tokio::spawn({
        let (k6, work, base) = (
            setup.k6.to_owned(),
            setup.work.to_owned(),
            server.base.clone(),
        );
        async move {
            let label = format!("soak at {rate} req/s");
            drive(&k6, &work, &base, &lines, rate, duration, &label).await
        }
    });
    let mut samples = Vec::new();
    while !traffic.is_finished() {
        samples.push(RssSample {
            at_s: started.elapsed().as_secs_f64(),
            rss_bytes: server::rss_of(pid)?,
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let traffic = traffic.await??;
    samples.push(RssSample {
        at_s: started.elapsed().as_secs_f64(),
        rss_bytes: server::rss_of(pid)?,
    });
    let warm_up = duration.as_secs_f64() / 5.0;
    let after_warm_up = samples
        .iter()
        .find(|s| s.at_s >= warm_up)
        .map_or(0, |s| s.rss_bytes);
    let at_end = samples.last().map_or(0, |s| s.rss_bytes);
    #[expect(clippy::cast_precision_loss, reason = "bytes far below 2^52")]
    let growth = if after_warm_up == 0 {
        0.0
    } else {
        (at_end as f64 - after_warm_up as f64) / after_warm_up as f64
    };
    let soak = Soak {
        rate,
        minutes: duration.as_secs_f64() / 60.0,
        entities: setup.entities,
        traffic,
        samples,
        rss_after_warm_up: after_warm_up,
        rss_at_end: at_end,
        growth,
    };
    println!(
        "  soak: {:.0} min at {rate} req/s, {} requests, failed {}, dropped {}, p99 {:.2} ms; \
         RSS {:.0} MiB after the warm-up, {:.0} MiB at the end ({:+.1}%)",
        soak.minutes,
        soak.traffic.requests,
        soak.traffic.failed,
        soak.traffic.dropped,
        soak.traffic.p99_ms,
        mib(soak.rss_after_warm_up),
        mib(soak.rss_at_end),
        soak.growth * 100.0
    );
    std::fs::write(
        setup.out.join("soak.json"),
        serde_json::to_string_pretty(&soak)?,
    )?;
    std::fs::write(setup.out.join("soak.md"), soak_markdown(&soak))?;
    soak_chart(&soak, &setup.out.join("soak.svg"))?;
    Ok(())
}

#[expect(clippy::cast_precision_loss, reason = "bytes far below 2^52")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn soak_markdown(soak: &Soak) -> String {
    let t = &soak.traffic;
    format!(
        "Soak (k6 `constant-arrival-rate`, on the same 2 cores as the server): {:.0} minutes at \
         {} req/s of mixed traffic (one request in ten a write: half new entities, half \
         interactions with ids; the rest uncached similar questions) over {} entities x {}, \
         embedded database. The 400,000 requests repeat: after the first pass (inside the \
         warm-up) upserts replace and interactions are duplicates, so the data holds still. \
         Resident memory sampled every 10 s.\n\n\
         | requests | failed | not started on time | p50 | p95 | p99 | max | RSS after the warm-up (first fifth) | RSS at the end | growth |\n\
         |---|---|---|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.0} MiB | {:.0} MiB | {:+.1}% |\n\n\
         Targets: growth under 5%: {}; zero errors: {}.\n",
        soak.minutes,
        soak.rate,
        soak.entities,
        data::DIMENSION,
        t.requests,
        t.failed,
        t.dropped,
        t.p50_ms,
        t.p95_ms,
        t.p99_ms,
        t.max_ms,
        mib(soak.rss_after_warm_up),
        mib(soak.rss_at_end),
        soak.growth * 100.0,
        if soak.growth < 0.05 { "met" } else { "not met" },
        if t.failed == 0 { "met" } else { "not met" },
    )
}

fn soak_chart(soak: &Soak, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (720, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = soak.samples.last().map_or(1.0, |s| s.at_s / 60.0).max(1.0);
    let top = soak
        .samples
        .iter()
        .map(|s| mib(s.rss_bytes))
        .fold(1.0, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption("resident memory during the soak", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("MiB")
        .draw()?;
    chart.draw_series(LineSeries::new(
        soak.samples
            .iter()
            .map(|s| (s.at_s / 60.0, mib(s.rss_bytes))),
        BLUE.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rate: u32, p99_ms: f64) -> K6Result {
        K6Result {
            rate,
            duration_s: 20.0,
            requests: u64::from(rate) * 20,
            achieved: f64::from(rate),
            p50_ms: p99_ms / 10.0,
            p95_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms * 3.0,
            failed: 0,
            dropped: 0,
        }
    }

    #[test]
    fn the_chart_is_drawn_again_from_its_json_with_the_legend_below() {
        let dir = std::env::temp_dir().join(format!("reco-perf-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!redraw(&dir).unwrap(), "no open-loop.json yet");
        let floor = vec![FloorRow {
            what: "bare responder".into(),
            result: result(2073, 3.0),
        }];
        let rates = vec![result(2073, 6.0), result(4000, 30.0)];
        std::fs::write(
            dir.join("open-loop.json"),
            serde_json::json!({ "floor": floor, "rates": rates }).to_string(),
        )
        .unwrap();
        assert!(redraw(&dir).unwrap());
        let svg = std::fs::read_to_string(dir.join("open-loop.svg")).unwrap();
        assert!(svg.contains("open-loop latency by arrival rate"));
        for name in ["p50", "p95", "p99 of a bare responder (the floor)", "max"] {
            assert!(svg.contains(name), "{name} in the legend");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
