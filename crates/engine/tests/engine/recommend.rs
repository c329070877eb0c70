//! Recommend-by-example against the reference: both strategies, raw vectors, missing ids.

use proptest::prelude::*;
use reco_engine::{
    EngineError, EntityId, Example, ExampleStrategy, Metric, RecommendRequest, Strategy as Made,
};

use crate::reference::{Model, assert_agrees};
use crate::support::{
    IDS, Op, QuerySpec, all_scores, apply, engine, metric, ops, query, tolerance, vector,
};

#[derive(Debug, Clone)]
enum Ex {
    Id(usize, f32),
    Raw(Vec<f32>, f32),
}

fn examples(dim: usize, metric: Metric) -> impl Strategy<Value = Vec<Ex>> {
    // Ids past IDS never exist, so some examples are missing.
    let one = prop_oneof![
        4 => (0..IDS + 4, 1..4u8).prop_map(|(n, w)| Ex::Id(n, f32::from(w))),
        1 => (vector(dim, metric), 1..4u8).prop_map(|(v, w)| Ex::Raw(v, f32::from(w))),
    ];
    prop::collection::vec(one, 0..4)
}

type Scenario = (Metric, usize, Vec<Op>, Vec<Ex>, Vec<Ex>, bool, QuerySpec);

fn scenario() -> impl Strategy<Value = Scenario> {
    (metric(), 1..6usize).prop_flat_map(|(m, d)| {
        (
            Just(m),
            Just(d),
            ops(d, m),
            examples(d, m),
            examples(d, m),
            any::<bool>(),
            query(),
        )
    })
}

fn to_request(list: &[Ex]) -> Vec<Example> {
    list.iter()
        .map(|e| match e {
            Ex::Id(n, w) => Example::id(EntityId::parse(&format!("e{n}")).unwrap()).weighted(*w),
            Ex::Raw(v, w) => Example::vector(v.clone()).weighted(*w),
        })
        .collect()
}

/// The examples that exist, as (vector, weight), noting missing and used ids.
fn resolve(
    model: &Model,
    list: &[Ex],
    missing: &mut Vec<String>,
    used: &mut Vec<String>,
) -> Vec<(Vec<f32>, f32)> {
    let mut out = Vec::new();
    for e in list {
        match e {
            Ex::Raw(v, w) => out.push((v.clone(), *w)),
            Ex::Id(n, w) => {
                let id = format!("e{n}");
                match model.items.get(&id) {
                    Some(item) => {
                        out.push((item.vector.clone(), *w));
                        used.push(id);
                    }
                    None if !missing.contains(&id) => missing.push(id),
                    None => {}
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn recommend_matches_the_reference((metric, dim, ops, pos, neg, best, spec) in scenario()) {
        let (engine, tenant, _) = engine(metric, dim, false);
        let mut model = Model::new(metric);
        apply(&engine, &tenant, &mut model, &ops);
        let spec = if best { spec } else { spec.without_threshold() };
        let strategy = if best { ExampleStrategy::BestScore } else { ExampleStrategy::AverageVector };
        let request = RecommendRequest {
            positive: to_request(&pos),
            negative: to_request(&neg),
            strategy,
            options: spec.options(metric),
        };
        let answer = engine.recommend(&tenant, &request);

        let (mut missing, mut used) = (Vec::new(), Vec::new());
        let positive = resolve(&model, &pos, &mut missing, &mut used);
        let negative = resolve(&model, &neg, &mut missing, &mut used);
        let conditions = spec.conditions.and_exclude(used);
        let threshold = spec.threshold(metric);
        if best {
            if pos.is_empty() && neg.is_empty() {
                prop_assert!(matches!(answer, Err(EngineError::InvalidArgument(_))));
                return Ok(());
            }
            if positive.is_empty() && negative.is_empty() {
                prop_assert!(matches!(answer, Err(EngineError::NoUsableExamples(_))));
                return Ok(());
            }
            // Goodness is higher-is-better in every metric; euclidean reports its negation.
            let sign = if metric == Metric::Euclidean { -1.0 } else { 1.0 };
            let goodness = |q: &[f32], v: &[f32]| sign * model.score(q, v);
            let best_of = |list: &[(Vec<f32>, f32)], v: &[f32]| {
                (!list.is_empty()).then(|| list.iter().map(|(q, _)| goodness(q, v)).fold(f32::NEG_INFINITY, f32::max))
            };
            let score = |v: &[f32]| {
                let g = match (best_of(&positive, v), best_of(&negative, v)) {
                    (Some(p), Some(n)) if n > p => p - (n - p),
                    (Some(p), _) => p,
                    (None, Some(n)) => -n,
                    (None, None) => unreachable!(),
                };
                sign * g
            };
            let expected = model.rank(&conditions, threshold, spec.k, spec.offset, |item| score(&item.vector));
            let scores = all_scores(&model, |id| score(&model.items[id].vector));
            let answer = answer.unwrap();
            prop_assert_eq!(answer.ranking.strategy, Made::BestScore);
            let got_missing: Vec<String> = answer.ranking.missing.iter().map(|m| m.to_string()).collect();
            prop_assert_eq!(got_missing, missing);
            assert_agrees(&answer.ranking.results, &expected, &scores, tolerance(metric) * 10.0);
        } else {
            if pos.is_empty() {
                prop_assert!(matches!(answer, Err(EngineError::InvalidArgument(_))));
                return Ok(());
            }
            if positive.is_empty() {
                prop_assert!(matches!(answer, Err(EngineError::NoUsableExamples(_))));
                return Ok(());
            }
            let q = model.average(&positive, &negative);
            if metric == Metric::Cosine && q.iter().all(|x| *x == 0.0) {
                prop_assert!(matches!(answer, Err(EngineError::InvalidArgument(_))));
                return Ok(());
            }
            let expected = model.rank(&conditions, threshold, spec.k, spec.offset, |item| model.score(&q, &item.vector));
            let scores = all_scores(&model, |id| model.score(&q, &model.items[id].vector));
            let answer = answer.unwrap();
            prop_assert_eq!(answer.ranking.strategy, Made::AverageVector);
            let got_missing: Vec<String> = answer.ranking.missing.iter().map(|m| m.to_string()).collect();
            prop_assert_eq!(got_missing, missing);
            let scale = q.iter().map(|x| x.abs()).sum::<f32>().max(1.0) * 3.0;
            assert_agrees(&answer.ranking.results, &expected, &scores, 1e-6 * scale);
        }
    }
}
