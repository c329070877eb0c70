//! Recommend by examples (both strategies, with diversity) and recommendations for users, from
//! content vectors, from the collaborative model, and hybrid.

use std::hint::black_box;

use criterion::{BenchmarkId, criterion_group, criterion_main};
use reco_benches::{Cycle, SCALES, criterion, entity_id, loaded, user_id};
use reco_engine::{
    Example, ExampleStrategy, LearnParams, Metric, Prepared, RecommendRequest, SearchOptions,
    UserStrategy,
};

fn by_examples(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("recommend");
    for scale in SCALES {
        let (engine, tenant) = loaded(scale, Metric::Cosine, false);
        let mut cycle = Cycle::new(scale.entities);
        let cases = [
            ("average_vector", ExampleStrategy::AverageVector, 0.0),
            ("best_score", ExampleStrategy::BestScore, 0.0),
            (
                "average_vector+diversity",
                ExampleStrategy::AverageVector,
                0.5,
            ),
        ];
        for (name, strategy, diversity) in cases {
            group.bench_function(
                BenchmarkId::new(scale.label, format!("{name}/3+1/k=10")),
                |b| {
                    b.iter(|| {
                        let mut example = || Example::id(entity_id(cycle.next_index()));
                        let request = RecommendRequest {
                            positive: vec![example(), example(), example().weighted(2.0)],
                            negative: vec![example()],
                            strategy,
                            options: SearchOptions {
                                diversity,
                                ..SearchOptions::top(10)
                            },
                        };
                        black_box(engine.recommend(&tenant, &request).expect("an answer"))
                    })
                },
            );
        }
    }
    group.finish();
}

fn for_users(c: &mut criterion::Criterion) {
    let mut group = c.benchmark_group("user");
    for scale in SCALES {
        let (engine, tenant) = loaded(scale, Metric::Cosine, false);
        let mut cycle = Cycle::new(2_000);
        let options = SearchOptions::top(10);
        group.bench_function(BenchmarkId::new(scale.label, "k=10"), |b| {
            b.iter(|| {
                let user = user_id(cycle.next_index());
                black_box(
                    engine
                        .recommend_for_user(&tenant, &user, &options)
                        .expect("an answer"),
                )
            })
        });
        // The same users from the collaborative model: a fold-in, then the same plans over the
        // model's item factors (64 of them, against the content vectors' dimension).
        engine
            .train_collaborative(&tenant, &LearnParams::default())
            .expect("a model");
        // The model's space keeps the service's recall: approximate against exact top 10 for
        // 200 users, printed beside the timings.
        let ids = |strategy, exact: bool, u: usize| -> Vec<String> {
            let options = SearchOptions {
                exact,
                ..SearchOptions::top(10)
            };
            engine
                .prepare_user_by(&tenant, &user_id(u), &options, strategy)
                .and_then(Prepared::answer)
                .expect("an answer")
                .ranking
                .results
                .iter()
                .map(|r| r.id.to_string())
                .collect()
        };
        for strategy in [UserStrategy::Collaborative, UserStrategy::Hybrid] {
            let (mut found, mut wanted) = (0usize, 0usize);
            for u in 0..200 {
                let truth = ids(strategy, true, u);
                let approximate = ids(strategy, false, u);
                wanted += truth.len();
                found += approximate.iter().filter(|id| truth.contains(id)).count();
            }
            #[expect(clippy::cast_precision_loss, reason = "counts of a few thousand")]
            let recall = found as f64 / wanted.max(1) as f64;
            eprintln!("user/{}/{strategy:?}: recall@10 {recall:.4}", scale.label);
        }
        group.bench_function(BenchmarkId::new(scale.label, "collaborative/k=10"), |b| {
            b.iter(|| {
                let user = user_id(cycle.next_index());
                black_box(
                    engine
                        .prepare_user_by(&tenant, &user, &options, UserStrategy::Collaborative)
                        .and_then(Prepared::answer)
                        .expect("an answer"),
                )
            })
        });
        // Hybrid: the same fold-in, searched over the learnt entities and over the estimated
        // factors of those the model did not learn (here the entities no user touched).
        group.bench_function(BenchmarkId::new(scale.label, "hybrid/k=10"), |b| {
            b.iter(|| {
                let user = user_id(cycle.next_index());
                black_box(
                    engine
                        .prepare_user_by(&tenant, &user, &options, UserStrategy::Hybrid)
                        .and_then(Prepared::answer)
                        .expect("an answer"),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = by_examples, for_users
}
criterion_main!(benches);
