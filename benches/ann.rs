//! Approximate search beside exact search, one query at a time on one core:
//! - `ann/<scale>/exact` scans every row in f32;
//! - `ann/<scale>/exact-batched` answers 64 exact questions in one shared pass
//!   (`Prepared::answer_all`) and reports the time per question;
//! - `ann/<scale>/quantized` scans int8 codes and rescores the best 30 in f32 (a tenant
//!   without a graph);
//! - `ann/<scale>/ef=N` asks the HNSW graph (int8 copies, candidates rescored in f32) with a
//!   search breadth of N.
//!
//! Recall@10 of each setting against exact, and the bytes per entity, are measured on 200
//! queries before timing and written to `target/criterion/ann.json`.
//!
//! With `RECO_BENCH_DUMP=DIR` the vectors and query rows are written there too, so that
//! `benches/faiss_compare.py` runs faiss on the very same data. `RECO_BENCH_1M=1` adds 1M × 128
//! (its graph takes minutes to build on two cores); `RECO_BENCH_SCALES=20k,1m` picks scales.

use std::hint::black_box;
use std::io::Write;

use criterion::{BenchmarkId, Throughput, criterion_group, criterion_main};
use reco_benches::{
    SCALE_100K, SCALES, Scale, catalogue, criterion, entity_id, loaded, loaded_with, questions,
    recall, top10s,
};
use reco_engine::{EngineConfig, Metric, Prepared, SearchOptions};

const SAMPLE: usize = 200;
const EFS: [usize; 5] = [16, 32, 64, 128, 256];
/// More breadths at 1M only.
const EFS_1M: [usize; 2] = [192, 512];
/// Questions per shared pass in `exact-batched`.
const BATCH: usize = 64;

fn scales() -> Vec<Scale> {
    let mut scales = vec![SCALES[2], SCALE_100K, SCALES[3]];
    if std::env::var_os("RECO_BENCH_1M").is_some() {
        scales.push(Scale {
            entities: 1_000_000,
            dimension: 128,
            label: "1m",
        });
    }
    // `RECO_BENCH_SCALES=100k,1m` runs those only.
    if let Ok(only) = std::env::var("RECO_BENCH_SCALES") {
        scales.retain(|s| only.split(',').any(|o| o == s.label));
    }
    scales
}

/// Writes the scale's vectors (f32, little-endian, row-major) and query rows (u32).
fn dump(scale: Scale, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("a dump folder");
    let mut vectors = std::io::BufWriter::new(
        std::fs::File::create(dir.join(format!("{}.f32", scale.label))).expect("a file"),
    );
    for entity in catalogue(scale) {
        for x in entity.vector {
            vectors.write_all(&x.to_le_bytes()).expect("written");
        }
    }
    let rows: Vec<u8> = questions(scale.entities, SAMPLE)
        .iter()
        .flat_map(|&q| u32::try_from(q).expect("a row").to_le_bytes())
        .collect();
    std::fs::write(dir.join(format!("{}.queries", scale.label)), rows).expect("written");
}

fn ann(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("ann");
    group.throughput(Throughput::Elements(1));
    let mut report = Vec::new();
    for scale in scales() {
        if let Some(dir) = std::env::var_os("RECO_BENCH_DUMP") {
            dump(scale, std::path::Path::new(&dir));
        }
        let (engine, tenant) = loaded(scale, Metric::Cosine, false);
        assert!(engine.has_graph(&tenant).expect("the tenant"));
        let rows = questions(scale.entities, SAMPLE);
        let exact = SearchOptions {
            exact: true,
            ..SearchOptions::top(10)
        };
        let truth = top10s(&engine, &tenant, &rows, &exact);
        let bytes =
            engine.entity_heap_bytes(&tenant).expect("the tenant") as f64 / scale.entities as f64;
        let mut next = 0;
        let ids: Vec<_> = rows.iter().map(|&r| entity_id(r)).collect();
        group.bench_function(BenchmarkId::new(scale.label, "exact"), |b| {
            b.iter(|| {
                next = (next + 1) % ids.len();
                black_box(
                    engine
                        .similar(&tenant, &ids[next], &exact)
                        .expect("an answer"),
                )
            })
        });
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new(scale.label, "exact-batched"), |b| {
            b.iter(|| {
                let batch = (0..BATCH)
                    .map(|_| {
                        next = (next + 1) % ids.len();
                        engine
                            .prepare_similar(&tenant, &ids[next], &exact)
                            .expect("a question")
                    })
                    .collect();
                black_box(Prepared::answer_all(batch))
            })
        });
        group.throughput(Throughput::Elements(1));
        {
            // The same catalogue in a tenant that never gets a graph: its searches scan codes.
            let mut config = EngineConfig::default();
            config.cache.enabled = false;
            config.search.threshold = usize::MAX;
            let (flat, flat_tenant) = loaded_with(scale, Metric::Cosine, config);
            let options = SearchOptions::top(10);
            let found = top10s(&flat, &flat_tenant, &rows, &options);
            let r = recall(&truth, &found);
            let flat_bytes = flat.entity_heap_bytes(&flat_tenant).expect("the tenant") as f64
                / scale.entities as f64;
            eprintln!(
                "ann/{}/quantized: recall@10 {r:.4}, {flat_bytes:.0} bytes per entity",
                scale.label
            );
            report.push(line(scale.label, "quantized", r, flat_bytes));
            group.bench_function(BenchmarkId::new(scale.label, "quantized"), |b| {
                b.iter(|| {
                    next = (next + 1) % ids.len();
                    black_box(
                        flat.similar(&flat_tenant, &ids[next], &options)
                            .expect("an answer"),
                    )
                })
            });
        }
        let wide = if scale.entities >= 1_000_000 {
            &EFS_1M[..]
        } else {
            &[]
        };
        for &ef in EFS.iter().chain(wide) {
            engine.set_search_breadth(&tenant, ef).expect("the tenant");
            let options = SearchOptions::top(10);
            let found = top10s(&engine, &tenant, &rows, &options);
            let r = recall(&truth, &found);
            eprintln!(
                "ann/{}/ef={ef}: recall@10 {r:.4}, {bytes:.0} bytes per entity",
                scale.label
            );
            report.push(line(scale.label, &format!("ef={ef}"), r, bytes));
            group.bench_function(BenchmarkId::new(scale.label, format!("ef={ef}")), |b| {
                b.iter(|| {
                    next = (next + 1) % ids.len();
                    black_box(
                        engine
                            .similar(&tenant, &ids[next], &options)
                            .expect("an answer"),
                    )
                })
            });
        }
    }
    group.finish();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("ann.json"), format!("[{}]", report.join(",")));
    }
}

/// One line of `ann.json`.
fn line(label: &str, setting: &str, recall: f64, bytes: f64) -> String {
    format!(
        r#"{{"scale":"{label}","setting":"{setting}","recall":{recall:.4},"bytes_per_entity":{bytes:.0}}}"#
    )
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = ann
}
criterion_main!(benches);
