//! Restart times (issue 15): how long a server takes to be ready again after a graceful stop,
//! from its tenant images and, side by side, from storage alone (rows read, graph built).
//!
//! Per scale, on the embedded database: seed the catalogue through the API (the graph built as
//! it arrives), ask a sample of similar questions, stop with SIGTERM (the stop writes the
//! image), start again and time `/health/ready`, ask the sample again (the answers must be the
//! same: same slots, same links), stop, and start once more with images off.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::data::{self, Catalogue};
use crate::server::{self, Config, Server, answers, recall};

/// One scale's restart.
#[derive(Debug, Serialize)]
pub struct RestartRow {
    pub scale: String,
    pub entities: usize,
    pub dimension: usize,
    /// SIGTERM to exit, the image's write included.
    pub stop_s: f64,
    pub image_bytes: u64,
    /// Start to ready, from the image.
    pub ready_from_image_s: f64,
    /// Start to ready, images off: every row read from storage and the graph built.
    pub ready_from_storage_s: f64,
    /// The sample's answers after the restart from the image, against before (1.0: the same).
    pub same_answers_image: f64,
    /// The same after the full load (a graph built again differs a little).
    pub same_answers_storage: f64,
}

pub async fn measure(
    reco: &Path,
    work: &Path,
    port: u16,
    name: &str,
    n: usize,
) -> Result<RestartRow> {
    let dir = server::fresh_dir(work, &format!("restart-{name}"))?;
    let config = Config {
        reco: reco.to_owned(),
        database_url: None,
        data_dir: dir.clone(),
        port,
        cache: false,
        database_ranking: false,
        ef_search: 40,
        graph: true,
        images: true,
    };
    let catalogue = Catalogue::new(n, 7);
    let sample: Vec<usize> = (0..100).map(|i| (i * 7919) % n).collect();
    let server = Server::start(&config).await?;
    let bar = ProgressBar::new(n as u64).with_message("seeding (graph built as it arrives)");
    bar.set_style(ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} ({elapsed}, {eta} left)",
    )?);
    server.seed(&catalogue, &bar).await?;
    bar.finish_and_clear();
    let before = answers(&server, &sample, false).await?;
    let stop = server.stop_gracefully()?;
    let image = dir.join("images").join(format!("{}.img", data::TENANT));
    let image_bytes = std::fs::metadata(&image)?.len();

    let started = Instant::now();
    let server = Server::start(&config).await?;
    let ready_from_image = started.elapsed();
    let from_image = server
        .metric("reco_tenant_loads_total", "from=\"image\"")
        .await?;
    ensure!(from_image == 1.0, "the restart did not read the image");
    let same_image = recall(&before, &answers(&server, &sample, false).await?);
    server.stop_gracefully()?;

    let started = Instant::now();
    let server = Server::start(&Config {
        images: false,
        ..config
    })
    .await?;
    let ready_from_storage = started.elapsed();
    let same_storage = recall(&before, &answers(&server, &sample, false).await?);
    drop(server);
    let row = RestartRow {
        scale: name.to_owned(),
        entities: n,
        dimension: data::DIMENSION,
        stop_s: secs(stop),
        image_bytes,
        ready_from_image_s: secs(ready_from_image),
        ready_from_storage_s: secs(ready_from_storage),
        same_answers_image: same_image,
        same_answers_storage: same_storage,
    };
    println!(
        "  {name}: stop {:.1} s (image {:.0} MB); ready from the image {:.2} s, from storage {:.1} s; \
         same answers {:.3} / {:.3}",
        row.stop_s,
        row.image_bytes as f64 / 1e6,
        row.ready_from_image_s,
        row.ready_from_storage_s,
        row.same_answers_image,
        row.same_answers_storage
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(row)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The rows as JSON and as a markdown table, in `out`.
pub fn write(rows: &[RestartRow], out: &Path) -> Result<()> {
    std::fs::write(
        out.join("restarts.json"),
        serde_json::to_string_pretty(rows)?,
    )?;
    let mut md = String::from(
        "| scale | entities | dim | stop (image written) | image | ready from the image | \
         ready from storage | same answers (image / storage) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} s | {:.0} MB | {:.2} s | {:.1} s | {:.3} / {:.3} |\n",
            r.scale,
            r.entities,
            r.dimension,
            r.stop_s,
            r.image_bytes as f64 / 1e6,
            r.ready_from_image_s,
            r.ready_from_storage_s,
            r.same_answers_image,
            r.same_answers_storage
        ));
    }
    std::fs::write(out.join("restarts.md"), md)?;
    Ok(())
}
