//! Fixtures shared by the benchmarks: clustered random catalogues, users with histories, and
//! the scales every group runs at.

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reco_engine::{
    Engine, EngineConfig, EntityId, Interaction, InteractionKind, ManualClock, Metric, NewEntity,
    SearchOptions, TenantName, TenantSpec, UserId,
};

/// Clusters in every catalogue, so that neighbours are meaningful.
pub const CENTRES: usize = 50;
/// Categories, spread evenly: a category filter keeps a tenth.
pub const CATEGORIES: usize = 10;
/// Tags; each entity has two.
pub const TAGS: usize = 20;
/// The clock every fixture reads: a fixed day, so runs compare.
pub const NOW: i64 = 1_760_000_000_000;
const HOUR: i64 = 3_600_000;

/// A catalogue size and dimension, with the label used in benchmark ids.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub entities: usize,
    pub dimension: usize,
    pub label: &'static str,
}

/// The scales of the issue: 1k, 10k and 20k at 128 dimensions, and 20k at 384.
pub const SCALES: [Scale; 4] = [
    Scale {
        entities: 1_000,
        dimension: 128,
        label: "1k",
    },
    Scale {
        entities: 10_000,
        dimension: 128,
        label: "10k",
    },
    Scale {
        entities: 20_000,
        dimension: 128,
        label: "20k",
    },
    Scale {
        entities: 20_000,
        dimension: 384,
        label: "20k-384d",
    },
];

/// 100k at 128 dimensions: where the graph's recall starts to depend on its breadths (`ann`,
/// `examples/expansion.rs`).
pub const SCALE_100K: Scale = Scale {
    entities: 100_000,
    dimension: 128,
    label: "100k",
};

/// `count` rows spread over a catalogue of `n`: the questions recall is measured on.
pub fn questions(n: usize, count: usize) -> Vec<usize> {
    (0..count).map(|i| (i * 7919 + 13) % n).collect()
}

/// For each row, the ids of the top 10 similar to its entity, best first.
pub fn top10s(
    engine: &Engine,
    tenant: &TenantName,
    rows: &[usize],
    options: &SearchOptions,
) -> Vec<Vec<String>> {
    rows.iter()
        .map(|&row| {
            engine
                .similar(tenant, &entity_id(row), options)
                .expect("an answer")
                .ranking
                .results
                .iter()
                .map(|s| s.id.to_string())
                .collect()
        })
        .collect()
}

/// The share of the true answers' ids that were found, over all questions.
pub fn recall(truth: &[Vec<String>], found: &[Vec<String>]) -> f64 {
    let hits: usize = truth
        .iter()
        .zip(found)
        .map(|(t, f)| t.iter().filter(|id| f.contains(id)).count())
        .sum();
    hits as f64 / truth.iter().map(Vec::len).sum::<usize>() as f64
}

/// Short runs: the whole suite fits in a few minutes on two cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

pub fn entity_id(n: usize) -> EntityId {
    EntityId::parse(&format!("item-{n}")).expect("a valid id")
}

pub fn user_id(n: usize) -> UserId {
    UserId::parse(&format!("user-{n}")).expect("a valid id")
}

/// `n` vectors around [`CENTRES`] random centres.
pub fn clustered(n: usize, dimension: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..CENTRES)
        .map(|_| {
            (0..dimension)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| {
            centres[i % CENTRES]
                .iter()
                .map(|c| c + rng.random_range(-0.35..0.35))
                .collect()
        })
        .collect()
}

/// The entities of a catalogue: clustered vectors, a category and two tags each.
pub fn catalogue(scale: Scale) -> Vec<NewEntity> {
    clustered(scale.entities, scale.dimension, 7)
        .into_iter()
        .enumerate()
        .map(|(n, vector)| NewEntity {
            id: entity_id(n),
            vector,
            category: Some(format!("category-{}", n % CATEGORIES)),
            tags: vec![
                format!("tag-{}", n % TAGS),
                format!("tag-{}", (n / 3) % TAGS),
            ],
            attributes: None,
        })
        .collect()
}

/// Interactions of `users` users, 20 each, over the last two weeks, mostly within one cluster.
pub fn histories(entities: usize, users: usize) -> Vec<Interaction> {
    let mut rng = StdRng::seed_from_u64(11);
    let kinds = InteractionKind::ALL;
    (0..users)
        .flat_map(|u| {
            let cluster = u % CENTRES;
            (0..20)
                .map(|_| {
                    let member = rng.random_range(0..entities / CENTRES);
                    Interaction {
                        user: user_id(u),
                        entity: entity_id(member * CENTRES + cluster),
                        kind: kinds[rng.random_range(0..kinds.len())],
                        weight: None,
                        timestamp: NOW - rng.random_range(0..14 * 24) * HOUR,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A tenant `bench` loaded with a catalogue of `scale` and 2,000 users' histories.
pub fn loaded(scale: Scale, metric: Metric, cache: bool) -> (Engine, TenantName) {
    let mut config = EngineConfig::default();
    config.cache.enabled = cache;
    loaded_with(scale, metric, config)
}

/// [`loaded`], with the engine's settings given.
pub fn loaded_with(scale: Scale, metric: Metric, config: EngineConfig) -> (Engine, TenantName) {
    let engine =
        Engine::with_clock(config, Arc::new(ManualClock::new(NOW))).expect("valid settings");
    let tenant = TenantName::parse("bench").expect("a valid name");
    let spec = TenantSpec::new(scale.dimension, metric).expect("a valid spec");
    engine
        .create_tenant(tenant.clone(), spec)
        .expect("a new tenant");
    engine
        .upsert(&tenant, catalogue(scale))
        .expect("a valid catalogue");
    engine
        .record(&tenant, histories(scale.entities, 2_000))
        .expect("valid interactions");
    (engine, tenant)
}

/// Cycles through `n` query targets, so a benchmark does not ask one question only.
#[derive(Debug)]
pub struct Cycle {
    next: usize,
    n: usize,
    step: usize,
}

impl Cycle {
    pub fn new(n: usize) -> Self {
        Self {
            next: 0,
            n,
            step: 7919,
        }
    }

    pub fn next_index(&mut self) -> usize {
        self.next = (self.next + self.step) % self.n;
        self.next
    }
}
