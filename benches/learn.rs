//! The learner: iALS training time at 100k interactions (and, on request, 1M and 10M), EASE's
//! at 100k (500 items), and the fold-in of one user at request time.
//!
//! The logs are synthetic and popularity-skewed as real ones are: one user for every 50
//! interactions, one item for every 200, items drawn from a Zipf law (exponent 1), users
//! uniformly, kinds' weights from 1 to 8. `RECO_BENCH_TRAIN=1m` (or `1m,10m`) adds the larger
//! logs, each trained once outside criterion (a 10M log takes minutes on two cores), with its
//! time and the process's peak memory printed.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use reco_benches::criterion;
use reco_learn::{Algorithm, Model, Observation, Params, train};

/// A log of `n` interactions: (users, items, observations).
fn log(n: usize) -> (usize, usize, Vec<Observation>) {
    let users = (n / 50).max(1);
    let items = (n / 200).max(1);
    let mut rng = StdRng::seed_from_u64(n as u64);
    #[expect(clippy::cast_precision_loss, reason = "item counts are far below 2^52")]
    let zipf = Zipf::new(items as f64, 1.0).expect("a valid law");
    let observations = (0..n)
        .map(|_| {
            let rank: f64 = zipf.sample(&mut rng);
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "Zipf draws whole numbers from 1 to the item count"
            )]
            let item = rank as u32 - 1;
            Observation {
                user: rng.random_range(0..u32::try_from(users).expect("users fit")),
                item,
                weight: [1.0, 2.0, 4.0, 8.0][rng.random_range(0..4)],
            }
        })
        .collect();
    (users, items, observations)
}

/// The process's peak resident memory, in MiB, from `/proc/self/status` (`VmHWM`).
fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn trained(n: usize, params: &Params) -> Model {
    let (users, items, observations) = log(n);
    train(users, items, &observations, params, |_| {}).expect("a model")
}

fn learn(c: &mut criterion::Criterion) {
    let params = Params {
        algorithm: Algorithm::Ials,
        ..Params::default()
    };
    let ease = Params {
        algorithm: Algorithm::Ease,
        ..Params::default()
    };
    let mut group = c.benchmark_group("learn");
    group.sample_size(10);
    let (users, items, observations) = log(100_000);
    group.bench_function(BenchmarkId::new("train", "100k"), |b| {
        b.iter(|| black_box(train(users, items, &observations, &params, |_| {})))
    });
    group.bench_function(BenchmarkId::new("train", "ease/100k"), |b| {
        b.iter(|| black_box(train(users, items, &observations, &ease, |_| {})))
    });
    let model = train(users, items, &observations, &params, |_| {}).expect("a model");
    let history: Vec<(u32, f32)> = observations
        .iter()
        .take(50)
        .map(|o| (o.item, o.weight))
        .collect();
    group.bench_function(BenchmarkId::new("fold_in", "k=64/history=50"), |b| {
        b.iter(|| black_box(model.fold_in(&history)))
    });
    group.finish();

    let larger = std::env::var("RECO_BENCH_TRAIN").unwrap_or_default();
    for (label, n) in [("1m", 1_000_000), ("10m", 10_000_000)] {
        if larger.split(',').any(|s| s.trim() == label) {
            let started = Instant::now();
            let model = trained(n, &params);
            eprintln!(
                "learn/train/{label}: {:.1} s, {} users x {} items, peak RSS {} MiB",
                started.elapsed().as_secs_f64(),
                model.user_count(),
                model.item_count(),
                peak_mib().unwrap_or_default()
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = learn
}
criterion_main!(benches);
