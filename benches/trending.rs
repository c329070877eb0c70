//! Trending over 40,000 interactions, overall and within a category.

use std::hint::black_box;

use criterion::{BenchmarkId, criterion_group, criterion_main};
use reco_benches::{SCALES, criterion, loaded};
use reco_engine::{Metric, TrendingQuery, Window};

fn trending(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("trending");
    for scale in SCALES.iter().filter(|s| s.dimension == 128) {
        let (engine, tenant) = loaded(*scale, Metric::Cosine, false);
        for (name, window, category) in [
            ("24h", "24h", None),
            ("7d", "7d", None),
            ("7d/category", "7d", Some("category-3".to_owned())),
        ] {
            let query = TrendingQuery {
                window: Window::parse(window).expect("a window"),
                category,
                ..TrendingQuery::default()
            };
            group.bench_function(BenchmarkId::new(scale.label, format!("{name}/k=10")), |b| {
                b.iter(|| black_box(engine.trending(&tenant, &query).expect("an answer")))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = trending
}
criterion_main!(benches);
