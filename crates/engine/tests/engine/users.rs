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
        // Up to an hour ahead, the most the contract takes (`MAX_FUTURE`).
        -1i64..400,
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
            match model.preference(&user, half_life, config.history_floor) {
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

const YEAR: i64 = 365 * 24 * HOUR;

fn entity(n: usize, vector: [f32; 2]) -> reco_engine::NewEntity {
    reco_engine::NewEntity {
        id: id(n),
        vector: vector.to_vec(),
        category: None,
        tags: Vec::new(),
        attributes: None,
    }
}

fn event(user: &str, n: usize, kind: InteractionKind, at: i64) -> Interaction {
    Interaction {
        user: UserId::parse(user).unwrap(),
        entity: id(n),
        kind,
        weight: None,
        timestamp: at,
    }
}

/// A history ranks the same whatever its age: decay runs from the user's newest interaction,
/// not from the clock. The same interactions made 28 years ago (a log imported from 1998) and
/// made this week give the same answer with the same scores. Decay from the clock once left
/// such a user with nothing (every weight underflowed), and the answer fell back to an empty
/// trending list.
#[test]
fn a_log_from_decades_ago_personalizes_like_a_fresh_one() {
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
        let (engine, t, _) = engine(metric, 2, false);
        let rows = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-0.7, 0.7]];
        let entities = rows
            .iter()
            .enumerate()
            .map(|(n, v)| entity(n, *v))
            .collect();
        engine.upsert(&t, entities).unwrap();
        let history = |user: &str, newest: i64| {
            vec![
                event(user, 0, InteractionKind::Like, newest - 3 * 24 * HOUR),
                event(user, 3, InteractionKind::View, newest - 40 * 24 * HOUR),
                event(user, 1, InteractionKind::Click, newest),
            ]
        };
        engine.record(&t, history("fresh", START)).unwrap();
        engine
            .record(&t, history("ancient", START - 28 * YEAR))
            .unwrap();
        let options = reco_engine::SearchOptions::top(3);
        let answer = |user: &str| {
            engine
                .recommend_for_user(&t, &UserId::parse(user).unwrap(), &options)
                .unwrap()
        };
        let (fresh, ancient) = (answer("fresh"), answer("ancient"));
        assert_eq!(ancient.ranking.strategy, Made::Personalized, "{metric:?}");
        assert_eq!(ancient.ranking.results.len(), 2, "{metric:?}");
        assert_eq!(fresh.ranking.results, ancient.ranking.results, "{metric:?}");
        assert!(
            ancient.ranking.results.iter().all(|r| r.score != 0.0),
            "{metric:?}: {:?}",
            ancient.ranking.results
        );
    }
}

/// An interaction years older than the user's newest still counts, by the history floor
/// (1/20 of its weight): a user who liked an entity two years ago and came back for another one
/// today is not treated as if the old like had never happened.
#[test]
fn a_returning_users_old_history_still_counts() {
    let (engine, t, _) = engine(Metric::Dot, 2, false);
    let rows = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]];
    let entities = rows
        .iter()
        .enumerate()
        .map(|(n, v)| entity(n, *v))
        .collect();
    engine.upsert(&t, entities).unwrap();
    engine
        .record(
            &t,
            vec![
                event("back", 0, InteractionKind::Like, START - 2 * YEAR),
                event("back", 1, InteractionKind::View, START),
                event("new", 1, InteractionKind::View, START),
            ],
        )
        .unwrap();
    let score_of_2 = |user: &str| {
        let answer = engine
            .recommend_for_user(
                &t,
                &UserId::parse(user).unwrap(),
                &reco_engine::SearchOptions::top(4),
            )
            .unwrap();
        answer
            .ranking
            .results
            .iter()
            .find(|r| r.id == id(2))
            .map(|r| r.score)
            .unwrap()
    };
    // The like (weight 4) keeps 1/20 of itself: the preference is [0.2, 1], against [0, 1].
    assert!(
        (score_of_2("back") - 0.3).abs() < 1e-6,
        "{}",
        score_of_2("back")
    );
    assert!(
        (score_of_2("new") - 0.1).abs() < 1e-6,
        "{}",
        score_of_2("new")
    );
}

/// A user's history lists each entity they touched once, the most recent first, with every
/// weight given and the weight their recommendations read now (decayed towards their newest
/// interaction, one half-life per week by default), cut at the limit asked; a user without
/// interactions has none.
#[test]
fn a_users_history_is_their_entities_newest_first_with_their_weights() {
    let (engine, tenant, _clock) = engine(Metric::Cosine, 2, false);
    let interaction = |entity: usize, kind, weight, days_ago: i64| Interaction {
        user: UserId::parse("ann").unwrap(),
        entity: id(entity),
        kind,
        weight,
        timestamp: START - days_ago * 24 * HOUR,
    };
    engine
        .record(
            &tenant,
            vec![
                interaction(1, InteractionKind::View, None, 14),
                interaction(2, InteractionKind::Purchase, None, 7),
                interaction(1, InteractionKind::Click, Some(2.0), 7),
                interaction(3, InteractionKind::Dislike, None, 0),
            ],
        )
        .unwrap();
    let weights = EngineConfig::default().kind_weights;
    let ann = UserId::parse("ann").unwrap();
    let history = engine.user_history(&tenant, &ann, 10).unwrap().unwrap();
    assert_eq!(history.newest, START);
    assert_eq!(history.entities, 3);
    let order: Vec<&str> = history.items.iter().map(|i| i.entity.as_str()).collect();
    // Entities 1 and 2 were last touched at the same time: by id.
    assert_eq!(order, [id(3).as_str(), id(1).as_str(), id(2).as_str()]);
    let [three, one, two] = &history.items[..] else {
        panic!("three entities");
    };
    assert_eq!(one.last, START - 7 * 24 * HOUR);
    let (view, click) = (f64::from(weights.view), f64::from(weights.click));
    assert!((one.given - (view + 2.0 * click)).abs() < 1e-9);
    // The view is two weeks old, the click one: a quarter and a half of each, a week later.
    let now = view / 4.0 + 2.0 * click / 2.0;
    assert!((one.weight - now).abs() < 1e-9, "{} != {now}", one.weight);
    assert!((two.weight - f64::from(weights.purchase) / 2.0).abs() < 1e-9);
    assert!(three.given < 0.0 && (three.weight - three.given).abs() < 1e-9);

    let latest = engine.user_history(&tenant, &ann, 1).unwrap().unwrap();
    assert_eq!(latest.entities, 3);
    assert_eq!(latest.items, history.items[..1]);
    let nobody = UserId::parse("bob").unwrap();
    assert_eq!(engine.user_history(&tenant, &nobody, 10).unwrap(), None);
}
