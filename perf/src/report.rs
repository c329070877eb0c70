//! The results: JSON for machines, markdown for people, and a chart of throughput and p99.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::wrk::WrkResult;

/// One mode at one scale.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub scale: String,
    pub entities: usize,
    pub backend: String,
    pub mode: String,
    pub duration_s: f64,
    pub wrk: WrkResult,
    pub recall: Option<f64>,
    /// The server's peak resident set, bytes.
    pub peak_rss: u64,
    pub note: String,
}

/// A whole run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Run {
    pub machine: String,
    pub connections: u32,
    pub rows: Vec<Row>,
}

impl Run {
    pub fn new(connections: u32) -> Self {
        Self {
            machine: machine(),
            connections,
            rows: Vec::new(),
        }
    }

    fn find(&self, scale: &str, mode: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scale == scale && r.mode == mode)
    }
}

/// The CPU, its cores and the memory, as `/proc` tells them.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|m| m.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024 / 1024);
    format!("{model}, {cores} cores, {memory} GiB")
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1e3)
}

fn per_entity(r: &Row) -> String {
    format!("{:.0} B", r.peak_rss as f64 / r.entities as f64)
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1048576.0)
}

/// The reference report's figures: entities, req/s, p95 ms, memory MB.
const REFERENCE: [(&str, f64, f64, f64); 3] = [
    ("1k", 5_638.0, 10.0, 118.0),
    ("10k", 3_733.0, 14.0, 204.0),
    ("20k", 2_073.0, 22.0, 261.0),
];

pub fn markdown(run: &Run) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {}. wrk, 2 threads, {} connections, on the same 2 cores as the server \
         (neither pinned). Latencies in ms; errors are answers of 400 or more, then socket \
         errors (connect, read, write, timeout).\n",
        run.machine, run.connections
    );
    md.push_str(
        "| scale | mode | storage | requests | req/s | p50 | p95 | p99 | max | non-2xx | socket errors | recall@10 | peak RSS (MiB) | RSS per entity | note |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &run.rows {
        let w = &r.wrk;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scale,
            r.mode,
            r.backend,
            w.requests,
            w.throughput(),
            ms(w.p50_us),
            ms(w.p95_us),
            ms(w.p99_us),
            ms(w.max_us),
            w.status,
            w.socket_errors(),
            r.recall
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.4}")),
            mib(r.peak_rss),
            per_entity(r),
            r.note
        );
    }
    md.push_str("\n### Against the reference report\n\n");
    md.push_str("| scale | reference req/s | reco memory req/s | × | reference p95 | reco p95 | reference memory | reco peak RSS |\n|---|---|---|---|---|---|---|---|\n");
    for (scale, rps, p95, memory) in REFERENCE {
        if let Some(r) = run.find(scale, "memory") {
            let _ = writeln!(
                md,
                "| {scale} | {rps:.0} | {:.0} | {:.1} | {p95:.0} ms | {} ms | {memory:.0} MB | {} MiB |",
                r.wrk.throughput(),
                r.wrk.throughput() / rps,
                ms(r.wrk.p95_us),
                mib(r.peak_rss)
            );
        }
    }
    md.push_str("\n### Targets\n\n");
    for line in targets(run) {
        let _ = writeln!(md, "- {line}");
    }
    md
}

/// Each target of the load runs (issues 5 and 17), met or not, with the figures that say so.
pub fn targets(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let errors: Vec<String> = run
        .rows
        .iter()
        .filter(|r| r.wrk.status + r.wrk.socket_errors() > 0)
        .map(|r| {
            format!(
                "{} {} ({} + {})",
                r.scale,
                r.mode,
                r.wrk.status,
                r.wrk.socket_errors()
            )
        })
        .collect();
    out.push(if errors.is_empty() {
        "zero errors in every run: **met**".to_owned()
    } else {
        format!(
            "zero errors in every run: **not met**: {}",
            errors.join(", ")
        )
    });
    if let (Some(memory), Some(exact)) =
        (run.find("20k", "memory"), run.find("20k", "database exact"))
    {
        let ratio = memory.wrk.throughput() / exact.wrk.throughput();
        let verdict = if ratio >= 10.0 { "met" } else { "not met" };
        out.push(format!(
            "memory ranking at least 10× the exact database design at 20k: **{verdict}** ({ratio:.1}×)"
        ));
    }
    let ceiling = run.find("20k", "ceiling").map(|r| r.wrk.throughput());
    if let (Some(memory), Some(top)) = (run.find("20k", "memory"), ceiling) {
        let share = memory.wrk.throughput() / top;
        let recall = memory.recall.unwrap_or(0.0);
        let verdict = if share >= 0.35 && recall >= 0.99 {
            "met"
        } else {
            "not met"
        };
        out.push(format!(
            "uncached ranking at least 35% of the ceiling at 20k, recall@10 at least 0.99: \
             **{verdict}** ({:.0}%, recall {recall:.3})",
            share * 100.0
        ));
    }
    if let (Some(cached), Some(top)) = (run.find("20k", "memory cached (Zipf 1.0)"), ceiling) {
        let share = cached.wrk.throughput() / top;
        let verdict = if share >= 0.8 { "met" } else { "not met" };
        out.push(format!(
            "cached Zipf traffic at least 80% of the ceiling at 20k: **{verdict}** ({:.0}%)",
            share * 100.0
        ));
    }
    if let Some(writes) = run.find("20k", "memory mixed: writes") {
        let verdict = if writes.wrk.p99_us <= 100_000 {
            "met"
        } else {
            "not met"
        };
        out.push(format!(
            "mixed traffic at 20k, write p99 at most 100 ms: **{verdict}** ({} ms)",
            ms(writes.wrk.p99_us)
        ));
    }
    if let (Some(reads), Some(alone)) = (
        run.find("20k", "memory mixed: reads"),
        run.find("20k", "memory"),
    ) {
        let share = reads.wrk.throughput() / alone.wrk.throughput();
        let verdict = if share >= 0.8 { "met" } else { "not met" };
        out.push(format!(
            "mixed traffic at 20k, reads at least 80% of the read-only run: **{verdict}** ({:.0}%)",
            share * 100.0
        ));
    }
    let slow: Vec<String> = run
        .rows
        .iter()
        .filter(|r| r.wrk.p99_us > 50_000)
        .map(|r| format!("{} {} ({} ms)", r.scale, r.mode, ms(r.wrk.p99_us)))
        .collect();
    out.push(if slow.is_empty() {
        "p99 at most 50 ms at 1,000 connections: **met** in every run".to_owned()
    } else {
        format!(
            "p99 at most 50 ms at 1,000 connections: **not met** in {}",
            slow.join(", ")
        )
    });
    out
}

/// Modes per row of the chart's legend.
const LEGEND_COLUMNS: usize = 4;

/// Throughput and p99 per mode against the catalogue size, both on log scales, with the
/// legend in a strip of its own below both charts (inside either, it hid points).
pub fn chart(run: &Run, path: &Path) -> Result<()> {
    let mut modes: Vec<&str> = run.rows.iter().map(|r| r.mode.as_str()).collect();
    modes.sort_unstable();
    modes.dedup();
    let root = SVGBackend::new(
        path,
        (1100, 480 + legend_height(modes.len(), LEGEND_COLUMNS)?),
    )
    .into_drawing_area();
    root.fill(&WHITE)?;
    let (charts, legend) = root.split_vertically(480);
    let (left, right) = charts.split_horizontally(550);
    let entities = |r: &Row| r.entities as f64;
    let max_n = run.rows.iter().map(entities).fold(1_000.0, f64::max) * 1.5;
    let throughput: fn(&Row) -> f64 = |r| r.wrk.throughput().max(1.0);
    let p99: fn(&Row) -> f64 = |r| (r.wrk.p99_us as f64 / 1e3).max(0.1);
    for (area, title, value) in [
        (&left, "requests per second", throughput),
        (&right, "p99 latency, ms", p99),
    ] {
        let top = run.rows.iter().map(value).fold(1.0, f64::max) * 2.0;
        let bottom = run.rows.iter().map(value).fold(top, f64::min) / 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((700.0..max_n).log_scale(), (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("entities")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (i, mode) in modes.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = run
                .rows
                .iter()
                .filter(|r| r.mode == *mode)
                .map(|r| (entities(r), value(r)))
                .collect();
            chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )?;
        }
    }
    let keys: Vec<_> = modes
        .iter()
        .enumerate()
        .map(|(i, mode)| (*mode, Palette99::pick(i).to_rgba(), Key::Line))
        .collect();
    draw_legend(&legend, &keys, LEGEND_COLUMNS, 260)?;
    root.present()?;
    Ok(())
}

/// How a legend's entry is keyed: by a line, or by a triangle (a single point).
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Line,
    Triangle,
}

/// The height of a legend strip of `entries` in rows of `columns`.
pub fn legend_height(entries: usize, columns: usize) -> Result<u32> {
    Ok(16 + 22 * u32::try_from(entries.div_ceil(columns).max(1))?)
}

/// Draws a legend in a strip of its own (below a chart, so that it hides no point):
/// `columns` entries a row, each `width` pixels wide.
pub fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(&str, RGBAColor, Key)],
    columns: usize,
    width: i32,
) -> Result<()> {
    for (i, &(name, colour, key)) in entries.iter().enumerate() {
        let column = i32::try_from(i % columns)?;
        let row = i32::try_from(i / columns)?;
        let (x, y) = (70 + width * column, 14 + 22 * row);
        match key {
            Key::Line => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 24, y)],
                    colour.stroke_width(2),
                ))?;
            }
            Key::Triangle => {
                area.draw(&TriangleMarker::new((x + 12, y), 5, colour.filled()))?;
            }
        }
        area.draw(&Text::new(
            name.to_owned(),
            (x + 32, y - 7),
            ("sans-serif", 13),
        ))?;
    }
    Ok(())
}

/// The rows of an earlier run's `results.json`; none when there is no file.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    Ok(read_run(path)?.map(|run| run.rows).unwrap_or_default())
}

/// An earlier run's `results.json`, whole; `None` when there is no file.
pub fn read_run(path: &Path) -> Result<Option<Run>> {
    Ok(read_if_there(path)?
        .map(|text| serde_json::from_str(&text))
        .transpose()?)
}

/// A file's text; `None` when there is no such file.
pub fn read_if_there(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `results.json`, `results.md` and `chart.svg` into `out`.
pub fn write(run: &Run, out: &Path) -> Result<()> {
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(run)?)?;
    std::fs::write(out.join("results.md"), markdown(run))?;
    chart(run, &out.join("chart.svg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scale: &str, mode: &str, requests: u64, p99_us: u64, status: u64) -> Row {
        Row {
            scale: scale.to_owned(),
            entities: 20_000,
            backend: "postgres".to_owned(),
            mode: mode.to_owned(),
            duration_s: 1.0,
            wrk: WrkResult {
                requests,
                duration_us: 1_000_000,
                connect: 0,
                read: 0,
                write: 0,
                timeout: 0,
                status,
                p50_us: 1,
                p95_us: 2,
                p99_us,
                max_us: 4,
            },
            recall: None,
            peak_rss: 100 << 20,
            note: String::new(),
        }
    }

    #[test]
    fn targets_say_met_or_not_with_their_figures() {
        let mut run = Run::new(1000);
        let mut memory = row("20k", "memory", 20_000, 30_000, 0);
        memory.recall = Some(0.995);
        run.rows = vec![
            memory,
            row("20k", "database exact", 1_000, 60_000, 0),
            row("20k", "ceiling", 50_000, 10_000, 0),
            row("20k", "memory cached (Zipf 1.0)", 20_000, 10_000, 3),
            row("20k", "memory mixed: reads", 17_000, 30_000, 0),
            row("20k", "memory mixed: writes", 2_000, 120_000, 0),
        ];
        let t = targets(&run);
        assert!(t[0].contains("not met") && t[0].contains("Zipf"), "{t:?}");
        assert!(t[1].contains("**met** (20.0×)"), "{t:?}");
        assert!(
            t[2].contains("**met** (40%, recall 0.995)"),
            "uncached share: {t:?}"
        );
        assert!(t[3].contains("not met") && t[3].contains("40%"), "{t:?}");
        assert!(
            t[4].contains("not met") && t[4].contains("120.0 ms"),
            "{t:?}"
        );
        assert!(t[5].contains("**met** (85%)"), "{t:?}");
        assert!(
            t[6].contains("not met")
                && t[6].contains("database exact (60.0 ms)")
                && t[6].contains("mixed: writes (120.0 ms)"),
            "{t:?}"
        );
        let md = markdown(&run);
        assert!(
            md.contains("| 20k | memory | postgres | 20000 | 20000 |"),
            "{md}"
        );
        assert!(md.contains("| 20k | 2073 | 20000 | 9.6 |"), "{md}");
    }

    #[test]
    fn results_read_back() {
        let mut run = Run::new(1000);
        run.rows = vec![row("20k", "memory", 20_000, 30_000, 0)];
        let dir = std::env::temp_dir().join(format!("reco-perf-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(&run, &dir).unwrap();
        let rows = read_rows(&dir.join("results.json")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].wrk, run.rows[0].wrk);
        assert!(read_rows(&dir.join("none.json")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_chart_is_an_svg() {
        let mut run = Run::new(1000);
        run.rows = vec![
            row("20k", "memory", 20_000, 30_000, 0),
            row("20k", "ceiling", 60_000, 20_000, 0),
        ];
        let dir = std::env::temp_dir().join(format!("reco-perf-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        chart(&run, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("requests per second"));
        // The legend names each mode once, in its strip below the charts.
        assert_eq!(svg.matches("memory").count(), 1, "{svg}");
        assert_eq!(svg.matches("ceiling").count(), 1, "{svg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_written_run_reads_back_whole() {
        let mut run = Run::new(1000);
        run.rows = vec![row("1k", "memory", 9_000, 40_000, 3)];
        let dir = std::env::temp_dir().join(format!("reco-perf-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(&run, &dir).unwrap();
        let read = read_run(&dir.join("results.json")).unwrap().expect("a run");
        assert_eq!(read.machine, run.machine);
        assert_eq!(read.connections, 1000);
        assert_eq!(
            serde_json::to_string(&read.rows).unwrap(),
            serde_json::to_string(&run.rows).unwrap()
        );
        let markdown_again = std::fs::read_to_string(dir.join("results.md")).unwrap();
        assert_eq!(markdown_again, markdown(&read));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
