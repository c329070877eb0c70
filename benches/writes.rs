//! Writes one at a time into a loaded tenant, as a server under mixed traffic applies them:
//! a new entity (linked into the graph), an existing entity replaced, one interaction. What
//! each costs the engine bounds how many writes a second leave room for ranking.

use std::hint::black_box;

use criterion::{BenchmarkId, Throughput, criterion_group, criterion_main};
use reco_benches::{NOW, SCALES, clustered, criterion, entity_id, loaded, user_id};
use reco_engine::{Interaction, InteractionKind, Metric, NewEntity};

fn writes(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("writes");
    group.throughput(Throughput::Elements(1));
    // 20k at 128 dimensions: the scale of the service's mixed run.
    let scale = SCALES[2];
    let (engine, tenant) = loaded(scale, Metric::Cosine, false);
    let vectors = clustered(4_096, scale.dimension, 13);
    let entity = |id: usize, n: usize| NewEntity {
        id: entity_id(id),
        vector: vectors[n % vectors.len()].clone(),
        category: Some("category-1".into()),
        tags: vec!["tag-1".into()],
        attributes: None,
    };
    let mut next = scale.entities;
    group.bench_function(BenchmarkId::new(scale.label, "upsert_new"), |b| {
        b.iter(|| {
            next += 1;
            black_box(
                engine
                    .upsert(&tenant, vec![entity(next, next)])
                    .expect("written"),
            )
        })
    });
    let mut n = 0;
    group.bench_function(BenchmarkId::new(scale.label, "upsert_replace"), |b| {
        b.iter(|| {
            n += 7;
            let id = n % scale.entities;
            black_box(
                engine
                    .upsert(&tenant, vec![entity(id, n)])
                    .expect("written"),
            )
        })
    });
    let mut m = 0;
    group.bench_function(BenchmarkId::new(scale.label, "record_one"), |b| {
        b.iter(|| {
            m += 1;
            let interaction = Interaction {
                user: user_id(m % 5_000),
                entity: entity_id((m * 31) % scale.entities),
                kind: InteractionKind::View,
                weight: None,
                timestamp: NOW,
            };
            black_box(engine.record(&tenant, vec![interaction]).expect("recorded"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = writes
}
criterion_main!(benches);
