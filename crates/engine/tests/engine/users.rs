//! Users and trending against the reference: decayed preferences, exclusion of what a user
//! touched, the trending fallback, and trending windows.

use proptest::prelude::*;
use reco_engine::{
    EngineConfig, Interaction, InteractionKind, Metric, Strategy as Made, TrendingQuery, UserId,
    Window,
};

use crate::reference::{Conditions, Model, assert_agrees};
use crate::support::{
    HOUR, IDS, Op, QuerySpec, START, all_scores, apply, engine, id, metric, ops, query,
};

const USERS: usize = 4;

fn kind() -> impl Strategy<Value = InteractionKind> {
    prop::sample::select(InteractionKind::ALL.to_vec())
}

/// Batches of interactions, each recorded after the clock moved on by some hours.
fn interactions() -> impl Strategy<Value = Vec<(u8, Vec<Interaction>)>> {
    let one = (
        0..USERS,
        0..IDS + 2,
        kind(),
        prop::sample::select(vec![None, Some(0.5f32), Some(2.0)]),
        -24i64..400,
    )
        .prop_map(|(u, e, kind, weight, hours_ago)| (u, e, kind, weight, hours_ago));
    prop::collection::vec((0..48u8, prop::collection::vec(one, 0..10)), 1..4).prop_map(|batches| {
        let mut elapsed = 0i64;
        batches
            .into_iter()
            .map(|(advance, list)| {
                elapsed += i64::from(advance);
                let now = START + elapsed * HOUR;
                let list = list
                    .into_iter()
                    .map(|(u, e, kind, weight, hours_ago)| Interaction {
                        user: UserId::parse(&format!("u{u}")).unwrap(),
                        entity: id(e),
                        kind,
                        weight,
                        timestamp: now - hours_ago * HOUR,
                    })
                    .collect();
                (advance, list)
            })
            .collect()
    })
}

type Scenario = (
    Metric,
    usize,
    Vec<Op>,
    Vec<(u8, Vec<Interaction>)>,
    QuerySpec,
    u8,
);

fn scenario() -> impl Strategy<Value = Scenario> {
    (metric(), 1..6usize)
        .prop_flat_map(|(m, d)| (Just(m), Just(d), ops(d, m), interactions(), query(), 0..4u8))
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).expect("test durations are short")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn users_and_trending_match_the_reference((metric, dim, ops, batches, spec, window) in scenario()) {
        let spec = spec.without_threshold();
        let (engine, tenant, clock) = engine(metric, dim, false);
        let config = EngineConfig::default();
        let mut model = Model::new(metric);
        apply(&engine, &tenant, &mut model, &ops);
        for (advance, batch) in &batches {
            clock.advance(std::time::Duration::from_millis(u64::from(*advance) * HOUR as u64));
            prop_assert_eq!(engine.record(&tenant, batch.clone()).unwrap(), batch.len());
            model.record(&config.kind_weights, batch);
        }
        let now = START + batches.iter().map(|(a, _)| i64::from(*a)).sum::<i64>() * HOUR;
        prop_assert_eq!(engine.tenant_info(&tenant).unwrap().interactions, model.events.len() as u64);
        let half_life = millis(config.half_life);
        let trend_half_life = millis(config.trending_half_life);

        for u in 0..=USERS {
            let user = format!("u{u}");
            let answer = engine.recommend_for_user(&tenant, &UserId::parse(&user).unwrap(), &spec.options(metric)).unwrap();
            let conditions = spec.conditions.and_exclude(model.interacted(&user));
            match model.preference(&user, now, half_life) {
                Some(q) => {
                    prop_assert_eq!(answer.ranking.strategy, Made::Personalized);
                    let expected = model.rank(&conditions, spec.threshold(metric), spec.k, spec.offset, |item| model.score(&q, &item.vector));
                    let scores = all_scores(&model, |id| model.score(&q, &model.items[id].vector));
                    let scale = q.iter().map(|x| x.abs()).sum::<f32>().max(1.0) * 3.0;
                    assert_agrees(&answer.ranking.results, &expected, &scores, 1e-6 * scale);
                }
                None => {
                    prop_assert_eq!(answer.ranking.strategy, Made::Trending);
                    let window = millis(config.cold_start_window);
                    let expected = model.trending(now, window, trend_half_life, &conditions, spec.k, spec.offset);
                    assert_agrees(&answer.ranking.results, &expected, &Default::default(), 0.0);
                }
            }
        }

        let window = [Window::parse("1h"), Window::parse("24h"), Window::parse("7d"), Window::parse("30d")][usize::from(window)].clone().unwrap();
        let query = TrendingQuery { k: spec.k, offset: spec.offset, category: spec.conditions.category.clone(), window };
        let answer = engine.trending(&tenant, &query).unwrap();
        let conditions = Conditions { category: spec.conditions.category.clone(), ..Conditions::default() };
        let expected = model.trending(now, window.millis(), trend_half_life, &conditions, spec.k, spec.offset);
        prop_assert_eq!(answer.ranking.strategy, Made::Trending);
        assert_agrees(&answer.ranking.results, &expected, &Default::default(), 0.0);
    }
}
