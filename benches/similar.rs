//! Similar-by-id: exact search with and without filters, beside a pass that only reads the same
//! bytes, so exact search can be stated as a multiple of memory speed.

use std::hint::black_box;

use criterion::{BenchmarkId, Throughput, criterion_group, criterion_main};
use reco_benches::{Cycle, SCALES, clustered, criterion, entity_id, loaded};
use reco_engine::{Filter, Metric, SearchOptions};

/// Sums every component with eight lanes the compiler vectorises: the least work that still
/// reads every byte an exact scan reads.
fn read_all(rows: &[Vec<f32>]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for row in rows {
        for chunk in row.chunks_exact(8) {
            for (l, x) in lanes.iter_mut().zip(chunk) {
                *l += x;
            }
        }
    }
    lanes.iter().sum()
}

fn similar(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("similar");
    for scale in SCALES {
        let (engine, tenant) = loaded(scale, Metric::Cosine, false);
        let mut cycle = Cycle::new(scale.entities);
        group.throughput(Throughput::Elements(1));
        for k in [10, 100] {
            let options = SearchOptions::top(k);
            group.bench_function(BenchmarkId::new(scale.label, format!("k={k}")), |b| {
                b.iter(|| {
                    let id = entity_id(cycle.next_index());
                    black_box(engine.similar(&tenant, &id, &options).expect("an answer"))
                })
            });
        }
    }
    group.finish();
}

fn filtered(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("similar_filtered");
    for scale in SCALES {
        let (engine, tenant) = loaded(scale, Metric::Cosine, false);
        let mut cycle = Cycle::new(scale.entities);
        let filters = [
            (
                "category",
                Filter {
                    category: Some("category-3".into()),
                    ..Filter::default()
                },
            ),
            (
                "tags_any",
                Filter {
                    tags_any: vec!["tag-1".into(), "tag-2".into()],
                    ..Filter::default()
                },
            ),
            (
                "category+tags_all",
                Filter {
                    category: Some("category-3".into()),
                    tags_all: vec!["tag-3".into()],
                    ..Filter::default()
                },
            ),
        ];
        for (name, filter) in filters {
            let options = SearchOptions {
                filter,
                ..SearchOptions::top(10)
            };
            group.bench_function(BenchmarkId::new(scale.label, format!("{name}/k=10")), |b| {
                b.iter(|| {
                    let id = entity_id(cycle.next_index());
                    black_box(engine.similar(&tenant, &id, &options).expect("an answer"))
                })
            });
        }
    }
    group.finish();
}

fn memory_speed(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("read");
    for scale in SCALES {
        let rows = clustered(scale.entities, scale.dimension, 7);
        let bytes = (scale.entities * scale.dimension * 4) as u64;
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::new(scale.label, "all vectors"), |b| {
            b.iter(|| black_box(read_all(black_box(&rows))))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = similar, filtered, memory_speed
}
criterion_main!(benches);
