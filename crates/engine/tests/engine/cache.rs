//! The cache never changes an answer: an engine with it and one without, fed the same writes
//! and queries, answer alike, and a repeated query with no write between is a hit.

use proptest::prelude::*;
use reco_engine::{
    CacheStatus, Engine, Interaction, InteractionKind, NewEntity, SearchOptions, TenantName,
    TrendingQuery, UserId,
};

use crate::support::{IDS, engine, entity, id};

#[derive(Debug, Clone)]
enum Step {
    Upsert(NewEntity),
    Delete(usize),
    Interact(usize, usize, InteractionKind),
    Similar(usize),
    User(usize),
    Trending,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        2 => entity(3, reco_engine::Metric::Dot).prop_map(Step::Upsert),
        1 => (0..IDS).prop_map(Step::Delete),
        2 => (0..3usize, 0..IDS, prop::sample::select(InteractionKind::ALL.to_vec()))
            .prop_map(|(u, e, k)| Step::Interact(u, e, k)),
        3 => (0..IDS).prop_map(Step::Similar),
        3 => (0..3usize).prop_map(Step::User),
        2 => Just(Step::Trending),
    ];
    prop::collection::vec(step, 1..60)
}

fn query(
    engine: &Engine,
    tenant: &TenantName,
    step: &Step,
) -> Option<reco_engine::Result<reco_engine::Answer>> {
    let options = SearchOptions::top(5);
    match step {
        Step::Similar(n) => Some(engine.similar(tenant, &id(*n), &options)),
        Step::User(u) => Some(engine.recommend_for_user(
            tenant,
            &UserId::parse(&format!("u{u}")).unwrap(),
            &options,
        )),
        Step::Trending => Some(engine.trending(tenant, &TrendingQuery::default())),
        Step::Upsert(_) | Step::Delete(_) | Step::Interact(..) => None,
    }
}

fn write(engine: &Engine, tenant: &TenantName, step: &Step) {
    match step {
        Step::Upsert(e) => {
            engine.upsert(tenant, vec![e.clone()]).unwrap();
        }
        Step::Delete(n) => {
            engine.delete(tenant, &id(*n)).unwrap();
        }
        Step::Interact(u, e, kind) => {
            let interaction = Interaction {
                user: UserId::parse(&format!("u{u}")).unwrap(),
                entity: id(*e),
                kind: *kind,
                weight: None,
                timestamp: crate::support::START,
            };
            engine.record(tenant, vec![interaction]).unwrap();
        }
        Step::Similar(_) | Step::User(_) | Step::Trending => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn cached_answers_are_never_stale(steps in steps()) {
        let (cached, tenant, _) = engine(reco_engine::Metric::Dot, 3, true);
        let (fresh, _, _) = engine(reco_engine::Metric::Dot, 3, false);
        for step in &steps {
            write(&cached, &tenant, step);
            write(&fresh, &tenant, step);
            if let Some(expected) = query(&fresh, &tenant, step) {
                let got = query(&cached, &tenant, step).unwrap();
                match (got, expected) {
                    (Ok(got), Ok(expected)) => {
                        prop_assert_eq!(&got.ranking, &expected.ranking);
                        let again = query(&cached, &tenant, step).unwrap().unwrap();
                        prop_assert_eq!(again.cache, CacheStatus::Hit);
                        prop_assert_eq!(&again.ranking, &expected.ranking);
                    }
                    (Err(got), Err(expected)) => prop_assert_eq!(got, expected),
                    (got, expected) => prop_assert!(false, "cached {got:?}, fresh {expected:?}"),
                }
            }
        }
    }
}

/// Entity `n` with vector `v`, and nothing else.
fn e(n: usize, v: [f32; 3]) -> NewEntity {
    NewEntity {
        id: id(n),
        vector: v.to_vec(),
        category: None,
        tags: Vec::new(),
        attributes: None,
    }
}

#[test]
fn a_write_misses_only_what_it_affects() {
    let (engine, tenant, _) = engine(reco_engine::Metric::Dot, 3, true);
    engine
        .upsert(&tenant, vec![e(0, [1.0, 0.0, 0.0]), e(1, [0.0, 1.0, 0.0])])
        .unwrap();
    let similar = || {
        engine
            .similar(&tenant, &id(0), &SearchOptions::top(5))
            .unwrap()
            .cache
    };
    assert_eq!(similar(), CacheStatus::Miss);
    assert_eq!(similar(), CacheStatus::Hit);
    let interaction = Interaction {
        user: UserId::parse("u").unwrap(),
        entity: id(0),
        kind: InteractionKind::Like,
        weight: None,
        timestamp: crate::support::START,
    };
    engine.record(&tenant, vec![interaction]).unwrap();
    assert_eq!(
        similar(),
        CacheStatus::Hit,
        "similar does not depend on interactions"
    );
    engine.upsert(&tenant, vec![e(2, [1.0, 1.0, 0.0])]).unwrap();
    assert_eq!(
        similar(),
        CacheStatus::Miss,
        "an upsert changes similar answers"
    );
    let answer = engine
        .similar(&tenant, &id(0), &SearchOptions::top(5))
        .unwrap();
    assert_eq!(answer.ranking.results[0].id, id(2));
}

/// A similar question found in the cache is not checked against the id map (the answer proves
/// its entity was in the snapshot): once the entity is deleted, the new snapshot's key finds
/// nothing, and the question is refused as before.
#[test]
fn a_cached_similar_answer_ends_with_its_entity() {
    let (engine, tenant, _) = engine(reco_engine::Metric::Dot, 3, true);
    engine
        .upsert(&tenant, vec![e(0, [1.0, 0.0, 0.0]), e(1, [0.0, 1.0, 0.0])])
        .unwrap();
    let options = SearchOptions::top(5);
    let first = engine.prepare_similar(&tenant, &id(0), &options).unwrap();
    assert!(first.cached().is_none());
    let ranked = first.answer().unwrap();
    let hit = engine
        .prepare_similar(&tenant, &id(0), &options)
        .unwrap()
        .cached()
        .expect("kept");
    assert_eq!(hit.cache, CacheStatus::Hit);
    assert_eq!(hit.ranking, ranked.ranking);
    engine.delete(&tenant, &id(0)).unwrap();
    assert_eq!(
        engine
            .prepare_similar(&tenant, &id(0), &options)
            .unwrap_err(),
        reco_engine::EngineError::EntityNotFound(id(0).to_string())
    );
}
