//! Generators of random tenants and queries, and helpers to build engines from them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use reco_engine::{
    Engine, EngineConfig, EntityId, Filter, ManualClock, Metric, NewEntity, SearchOptions,
    TenantName, TenantSpec,
};

use crate::reference::{Conditions, Model};

/// Ids are drawn from a small pool so that upserts overwrite and deletes hit.
pub const IDS: usize = 24;
const CATEGORIES: [&str; 3] = ["c0", "c1", "c2"];
const TAGS: [&str; 4] = ["t0", "t1", "t2", "t3"];
/// The clock of every test engine starts here.
pub const START: i64 = 1_750_000_000_000;
pub const HOUR: i64 = 3_600_000;

pub fn id(n: usize) -> EntityId {
    EntityId::parse(&format!("e{n}")).unwrap()
}

pub fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        Just(Metric::Cosine),
        Just(Metric::Dot),
        Just(Metric::Euclidean)
    ]
}

/// Small integer components: dot products and squared distances are exact in f32, and ties
/// are common, so the tie rule is exercised.
pub fn vector(dim: usize, metric: Metric) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-3i8..=3, dim).prop_map(move |v| {
        let mut v: Vec<f32> = v.into_iter().map(f32::from).collect();
        if metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
            v[0] = 1.0;
        }
        v
    })
}

fn labels<const N: usize>(pool: [&'static str; N]) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(pool.to_vec(), 0..=N)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

pub fn entity(dim: usize, metric: Metric) -> impl Strategy<Value = NewEntity> {
    (
        0..IDS,
        vector(dim, metric),
        prop::option::of(prop::sample::select(CATEGORIES.to_vec())),
        labels(TAGS),
    )
        .prop_map(|(n, vector, category, tags)| NewEntity {
            id: id(n),
            vector,
            category: category.map(str::to_owned),
            tags,
            attributes: Some(format!("{{\"n\":{n}}}").into()),
        })
}

/// A batch with no id twice (the engine refuses repeats).
pub fn batch(dim: usize, metric: Metric) -> impl Strategy<Value = Vec<NewEntity>> {
    prop::collection::vec(entity(dim, metric), 0..14).prop_map(|batch| {
        let mut seen = BTreeSet::new();
        batch
            .into_iter()
            .filter(|e| seen.insert(e.id.clone()))
            .collect()
    })
}

#[derive(Debug, Clone)]
pub enum Op {
    Upsert(Vec<NewEntity>),
    Delete(usize),
}

pub fn ops(dim: usize, metric: Metric) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => batch(dim, metric).prop_map(Op::Upsert),
        1 => (0..IDS).prop_map(Op::Delete),
    ];
    prop::collection::vec(op, 1..8)
}

/// The filter of a query, with the same conditions as plain values for the reference.
pub fn conditions() -> impl Strategy<Value = Conditions> {
    (
        prop::option::of(prop::sample::select(CATEGORIES.to_vec())),
        labels(TAGS),
        prop::sample::subsequence(TAGS.to_vec(), 0..=2),
        prop::collection::vec(0..IDS + 2, 0..4),
        0..4u8,
    )
        .prop_map(
            |(category, tags_any, tags_all, exclude, shape)| Conditions {
                // Most queries have no filter, so that the unfiltered scan is covered too.
                category: category.filter(|_| shape == 1).map(str::to_owned),
                tags_any: if shape == 2 { tags_any } else { Vec::new() },
                tags_all: if shape == 3 {
                    tags_all.into_iter().map(str::to_owned).collect()
                } else {
                    Vec::new()
                },
                exclude: exclude.into_iter().map(|n| format!("e{n}")).collect(),
            },
        )
}

impl Conditions {
    pub fn filter(&self) -> Filter {
        Filter {
            category: self.category.clone(),
            tags_any: self.tags_any.clone(),
            tags_all: self.tags_all.clone(),
            exclude: self
                .exclude
                .iter()
                .map(|e| EntityId::parse(e).unwrap())
                .collect(),
        }
    }

    pub fn and_exclude(&self, more: impl IntoIterator<Item = String>) -> Conditions {
        let mut c = self.clone();
        c.exclude.extend(more);
        c
    }
}

/// Page, threshold (in the metric's units) and the filter of a query.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub k: usize,
    pub offset: usize,
    pub threshold: Option<i8>,
    pub conditions: Conditions,
}

pub fn query() -> impl Strategy<Value = QuerySpec> {
    (
        1..12usize,
        0..6usize,
        prop::option::of(-3i8..=3),
        conditions(),
    )
        .prop_map(|(k, offset, threshold, conditions)| QuerySpec {
            k,
            offset,
            threshold,
            conditions,
        })
}

impl QuerySpec {
    /// The same query without a threshold. Where the query vector is not made of small
    /// integers (averages, preferences), a score can land on the threshold in one arithmetic
    /// and a hair beside it in the other; thresholds are checked exactly in the integer modes,
    /// which share the code.
    pub fn without_threshold(&self) -> Self {
        Self {
            threshold: None,
            ..self.clone()
        }
    }

    pub fn threshold(&self, metric: Metric) -> Option<f32> {
        self.threshold.map(|t| match metric {
            // Off the round values that cosines of small integer vectors hit exactly.
            Metric::Cosine => f32::from(t) / 4.0 + 0.0123,
            Metric::Dot => f32::from(t) * 3.0,
            Metric::Euclidean => f32::from(t.unsigned_abs()) * 1.5,
        })
    }

    pub fn options(&self, metric: Metric) -> SearchOptions {
        SearchOptions {
            k: self.k,
            offset: self.offset,
            filter: self.conditions.filter(),
            score_threshold: self.threshold(metric),
            diversity: 0.0,
            exact: true,
            ..SearchOptions::default()
        }
    }
}

/// An engine (cache on or off) with one tenant `t`, on a manual clock at [`START`].
pub fn engine(metric: Metric, dim: usize, cache: bool) -> (Engine, TenantName, Arc<ManualClock>) {
    let mut config = EngineConfig::default();
    config.cache.enabled = cache;
    let clock = Arc::new(ManualClock::new(START));
    let engine = Engine::with_clock(config, clock.clone()).unwrap();
    let name = TenantName::parse("t").unwrap();
    engine
        .create_tenant(name.clone(), TenantSpec::new(dim, metric).unwrap())
        .unwrap();
    (engine, name, clock)
}

/// Applies `ops` to the engine and the model alike.
pub fn apply(engine: &Engine, tenant: &TenantName, model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Upsert(batch) => {
                assert_eq!(engine.upsert(tenant, batch.clone()).unwrap(), batch.len());
                model.upsert(batch);
            }
            Op::Delete(n) => {
                let existed = model.items.remove(&format!("e{n}")).is_some();
                assert_eq!(engine.delete(tenant, &id(*n)).unwrap(), existed);
            }
        }
    }
}

/// Every candidate's reference score, for checking order up to float ties.
pub fn all_scores(model: &Model, score: impl Fn(&str) -> f32) -> BTreeMap<String, f32> {
    model
        .items
        .keys()
        .map(|id| (id.clone(), score(id)))
        .collect()
}

/// How closely float scores must agree where the engine's arithmetic differs from the
/// reference's: exactly for integer data under dot and euclidean, else relatively.
pub fn tolerance(metric: Metric) -> f32 {
    match metric {
        Metric::Cosine => 1e-5,
        Metric::Dot | Metric::Euclidean => 0.0,
    }
}
