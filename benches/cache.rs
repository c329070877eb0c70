//! A cached hit: the cost of answering from the in-process cache, beside computing.

use std::hint::black_box;

use criterion::{BenchmarkId, criterion_group, criterion_main};
use reco_benches::{Cycle, SCALES, criterion, entity_id, loaded, user_id};
use reco_engine::{CacheStatus, Metric, SearchOptions};

fn cached(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("cached");
    for scale in SCALES {
        let (engine, tenant) = loaded(scale, Metric::Cosine, true);
        let options = SearchOptions::top(10);
        // 100 distinct questions, each asked once before measuring: every measured call hits.
        let mut cycle = Cycle::new(100);
        for _ in 0..100 {
            let n = cycle.next_index();
            engine
                .similar(&tenant, &entity_id(n), &options)
                .expect("an answer");
            engine
                .recommend_for_user(&tenant, &user_id(n), &options)
                .expect("an answer");
        }
        group.bench_function(BenchmarkId::new(scale.label, "similar/k=10"), |b| {
            b.iter(|| {
                let answer = engine
                    .similar(&tenant, &entity_id(cycle.next_index()), &options)
                    .expect("an answer");
                assert_eq!(answer.cache, CacheStatus::Hit);
                black_box(answer)
            })
        });
        group.bench_function(BenchmarkId::new(scale.label, "user/k=10"), |b| {
            b.iter(|| {
                let answer = engine
                    .recommend_for_user(&tenant, &user_id(cycle.next_index()), &options)
                    .expect("an answer");
                assert_eq!(answer.cache, CacheStatus::Hit);
                black_box(answer)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = cached
}
criterion_main!(benches);
