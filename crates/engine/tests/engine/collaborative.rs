//! The collaborative space: a model learnt from interactions, searched by the same engine, with
//! users folded in at request time.

use reco_engine::{
    EngineError, Filter, Interaction, InteractionKind, LearnParams as Params, Metric, NewEntity,
    SearchOptions, Space, Strategy, UserId,
};

use crate::support::{START, engine, id};

/// Entities 0..10 are liked by the users of group `a`, 10..20 by those of group `b`; their
/// content vectors say nothing of that (they alternate between two directions), and their
/// categories are the parity of their number.
fn entities() -> Vec<NewEntity> {
    (0..20)
        .map(|n| NewEntity {
            id: id(n),
            vector: if n % 2 == 0 {
                vec![1.0, 0.1]
            } else {
                vec![0.1, 1.0]
            },
            category: Some(if n % 2 == 0 { "even" } else { "odd" }.to_owned()),
            tags: Vec::new(),
            attributes: None,
        })
        .collect()
}

fn like(user: &str, n: usize) -> Interaction {
    Interaction {
        user: UserId::parse(user).unwrap(),
        entity: id(n),
        kind: InteractionKind::Like,
        weight: None,
        timestamp: START,
    }
}

/// Fifteen users in each group, each with about four in five of their group's entities.
fn history() -> Vec<Interaction> {
    let mut out = Vec::new();
    for u in 0..30usize {
        let (group, base) = if u < 15 { ("a", 0) } else { ("b", 10) };
        for n in base..base + 10 {
            if !(u * 7 + n * 3).is_multiple_of(5) {
                out.push(like(&format!("{group}{u}"), n));
            }
        }
    }
    out
}

/// iALS with 8 factors (the default would take EASE for a catalogue this small; it has a test
/// of its own below).
fn params() -> Params {
    Params {
        algorithm: reco_engine::Algorithm::Ials,
        factors: 8,
        iterations: 15,
        regularization: 0.01,
        unobserved_weight: 0.1,
        threads: 2,
        ..Params::default()
    }
}

fn collaborative(k: usize) -> SearchOptions {
    SearchOptions {
        space: Space::Collaborative,
        ..SearchOptions::top(k)
    }
}

fn numbers(results: &[reco_engine::Scored]) -> Vec<usize> {
    results
        .iter()
        .map(|r| r.id.as_str()[1..].parse().unwrap())
        .collect()
}

#[test]
fn similar_in_the_collaborative_space_answers_also_liked() {
    let (engine, t, _) = engine(Metric::Dot, 2, true);
    engine.upsert(&t, entities()).unwrap();
    engine.record(&t, history()).unwrap();
    assert!(matches!(
        engine.similar(&t, &id(0), &collaborative(5)),
        Err(EngineError::NoModel(_))
    ));
    assert_eq!(engine.model_info(&t).unwrap(), None);
    let info = engine.train_collaborative(&t, &params()).unwrap();
    assert_eq!(
        (info.version, info.users, info.items, info.factors),
        (1, 30, 20, 8)
    );
    assert_eq!(engine.model_info(&t).unwrap(), Some(info));
    for item in [0usize, 13] {
        let group = item / 10;
        let answer = engine.similar(&t, &id(item), &collaborative(5)).unwrap();
        let found = numbers(&answer.ranking.results);
        assert_eq!(found.len(), 5);
        assert!(
            found.iter().all(|n| n / 10 == group && *n != item),
            "entity {item}: {found:?}"
        );
    }
    // The content space still answers by the vectors: entity 0's neighbours are the even ones.
    let content = engine.similar(&t, &id(0), &SearchOptions::top(5)).unwrap();
    assert!(numbers(&content.ranking.results).iter().all(|n| n % 2 == 0));
    // Filters apply in the collaborative space as in the content one.
    let mut odd = collaborative(3);
    odd.filter = Filter {
        category: Some("odd".into()),
        ..Filter::default()
    };
    let found = numbers(&engine.similar(&t, &id(0), &odd).unwrap().ranking.results);
    assert!(found.iter().all(|n| n % 2 == 1 && *n < 10), "{found:?}");
}

#[test]
fn users_are_folded_in_at_request_time() {
    let (engine, t, _) = engine(Metric::Dot, 2, true);
    engine.upsert(&t, entities()).unwrap();
    engine.record(&t, history()).unwrap();
    let user = |name: &str| UserId::parse(name).unwrap();
    assert!(matches!(
        engine.recommend_for_user(&t, &user("a0"), &collaborative(2)),
        Err(EngineError::NoModel(_))
    ));
    engine.train_collaborative(&t, &params()).unwrap();
    // A trained user gets the unseen entities of their group.
    let answer = engine
        .recommend_for_user(&t, &user("a0"), &collaborative(2))
        .unwrap();
    assert_eq!(answer.ranking.strategy, Strategy::Collaborative);
    let found = numbers(&answer.ranking.results);
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|n| *n < 10), "{found:?}");
    // A user the model never saw is steered by their first interaction, with no training.
    engine.record(&t, vec![like("newcomer", 12)]).unwrap();
    let answer = engine
        .recommend_for_user(&t, &user("newcomer"), &collaborative(5))
        .unwrap();
    assert_eq!(answer.ranking.strategy, Strategy::Collaborative);
    let found = numbers(&answer.ranking.results);
    assert!(found.iter().all(|n| *n >= 10 && *n != 12), "{found:?}");
    // A new interaction changes the next answer (and the cache does not hide it).
    engine
        .record(
            &t,
            vec![
                like("newcomer", 3),
                like("newcomer", 4),
                like("newcomer", 5),
            ],
        )
        .unwrap();
    let after = engine
        .recommend_for_user(&t, &user("newcomer"), &collaborative(5))
        .unwrap();
    assert_ne!(numbers(&after.ranking.results), found);
    // A user with nothing the model knows falls back as before (here: trending).
    let answer = engine
        .recommend_for_user(&t, &user("nobody"), &collaborative(2))
        .unwrap();
    assert_eq!(answer.ranking.strategy, Strategy::Trending);
}

#[test]
fn training_again_serves_the_new_model_and_is_deterministic() {
    let (one, t, _) = engine(Metric::Dot, 2, true);
    let (two, _, _) = engine(Metric::Dot, 2, true);
    for e in [&one, &two] {
        e.upsert(&t, entities()).unwrap();
        e.record(&t, history()).unwrap();
        e.train_collaborative(&t, &params()).unwrap();
    }
    let similar =
        |e: &reco_engine::Engine| e.similar(&t, &id(0), &collaborative(5)).unwrap().ranking;
    assert_eq!(
        similar(&one),
        similar(&two),
        "the same data and seed, the same model"
    );
    // Cached, then retrained: the answer comes from the new model (version 2, other seed).
    let before = similar(&one);
    let other = Params {
        seed: 7,
        ..params()
    };
    assert_eq!(one.train_collaborative(&t, &other).unwrap().version, 2);
    let after = similar(&one);
    assert_ne!(
        before.results, after.results,
        "an answer of the old model was served"
    );
}

/// A tenant with no interactions trains an empty model without failing; its entities are not in
/// the collaborative space, which says why, and an entity that does not exist at all is still
/// not found.
#[test]
fn a_model_of_no_interactions_is_empty() {
    let (engine, t, _) = engine(Metric::Dot, 2, false);
    engine.upsert(&t, entities()).unwrap();
    let info = engine.train_collaborative(&t, &params()).unwrap();
    assert_eq!((info.users, info.items, info.interactions), (0, 0, 0));
    assert!(matches!(
        engine.similar(&t, &id(0), &collaborative(3)),
        Err(EngineError::NotLearnt(_))
    ));
    assert!(matches!(
        engine.similar(&t, &id(99), &collaborative(3)),
        Err(EngineError::EntityNotFound(_))
    ));
    let answer = engine
        .recommend_for_user(&t, &UserId::parse("u").unwrap(), &collaborative(3))
        .unwrap();
    assert_eq!(answer.ranking.strategy, Strategy::Trending);
}

/// `Auto` takes the model when there is one and it knows the user's entities, the content
/// vectors before any training, and trending for a user with nothing usable; `Trending` leaves
/// out what the user touched.
#[test]
fn user_strategies_choose_as_documented() {
    use reco_engine::UserStrategy;
    let (engine, t, _) = engine(Metric::Dot, 2, true);
    engine.upsert(&t, entities()).unwrap();
    engine.record(&t, history()).unwrap();
    let ask = |user: &str, strategy| {
        engine
            .prepare_user_by(
                &t,
                &UserId::parse(user).unwrap(),
                &SearchOptions::top(3),
                strategy,
            )
            .and_then(reco_engine::Prepared::answer)
    };
    let strategy_of = |user: &str, strategy| ask(user, strategy).unwrap().ranking.strategy;
    assert_eq!(
        strategy_of("a0", UserStrategy::Auto),
        Strategy::Personalized
    );
    assert!(matches!(
        ask("a0", UserStrategy::Collaborative),
        Err(EngineError::NoModel(_))
    ));
    engine.train_collaborative(&t, &params()).unwrap();
    // With content vectors and a model, `auto` blends: the model, with the entities it did not
    // learn placed by their content (here it learnt them all, so it answers as the model).
    assert_eq!(strategy_of("a0", UserStrategy::Auto), Strategy::Hybrid);
    assert_eq!(
        ask("a0", UserStrategy::Auto).unwrap().ranking.results,
        ask("a0", UserStrategy::Collaborative)
            .unwrap()
            .ranking
            .results
    );
    assert_eq!(
        strategy_of("a0", UserStrategy::Collaborative),
        Strategy::Collaborative
    );
    assert_eq!(
        strategy_of("a0", UserStrategy::Content),
        Strategy::Personalized
    );
    assert_eq!(
        strategy_of("nobody", UserStrategy::Auto),
        Strategy::Trending
    );
    let trending = ask("a0", UserStrategy::Trending).unwrap();
    assert_eq!(trending.ranking.strategy, Strategy::Trending);
    let touched: Vec<usize> = history()
        .iter()
        .filter(|i| i.user.as_str() == "a0")
        .map(|i| i.entity.as_str()[1..].parse().unwrap())
        .collect();
    let found = numbers(&trending.ranking.results);
    assert!(!found.is_empty());
    assert!(found.iter().all(|n| !touched.contains(n)), "{found:?}");
}

/// A model kept by a host (its parts) and served by another engine answers exactly as the
/// engine that trained it, users folded in included; an older or equal version is not taken.
#[test]
fn a_kept_model_served_by_another_engine_answers_alike() {
    let (one, t, _) = engine(Metric::Dot, 2, true);
    let (two, _, _) = engine(Metric::Dot, 2, true);
    for e in [&one, &two] {
        e.upsert(&t, entities()).unwrap();
        e.record(&t, history()).unwrap();
    }
    let trained = one.train_collaborative(&t, &params()).unwrap();
    let parts = one.model_parts(&t).unwrap().unwrap();
    assert_eq!((parts.items.len(), parts.factors.len()), (20, 20 * 8));
    let served = two.install_model(&t, parts.clone()).unwrap().unwrap();
    assert_eq!(served, trained);
    assert_eq!(
        two.install_model(&t, parts.clone()).unwrap(),
        None,
        "not twice"
    );
    let user = UserId::parse("a3").unwrap();
    for e in [&one, &two] {
        assert_eq!(e.model_info(&t).unwrap().unwrap().version, 1);
    }
    assert_eq!(
        one.similar(&t, &id(4), &collaborative(5)).unwrap().ranking,
        two.similar(&t, &id(4), &collaborative(5)).unwrap().ranking
    );
    assert_eq!(
        one.recommend_for_user(&t, &user, &collaborative(5))
            .unwrap()
            .ranking,
        two.recommend_for_user(&t, &user, &collaborative(5))
            .unwrap()
            .ranking
    );
    // Parts that do not fit together are refused and change nothing.
    let mut ragged = parts;
    ragged.info.version = 2;
    ragged.factors.pop();
    assert!(two.install_model(&t, ragged).is_err());
    assert_eq!(two.model_info(&t).unwrap().unwrap().version, 1);
}

/// The model's space follows the entities: a deleted entity leaves it at once (for similar and
/// for users), and a changed category is what filters read, without a training.
#[test]
fn the_collaborative_space_follows_deletes_and_new_categories() {
    let (engine, t, _) = engine(Metric::Dot, 2, true);
    engine.upsert(&t, entities()).unwrap();
    engine.record(&t, history()).unwrap();
    engine.train_collaborative(&t, &params()).unwrap();
    let user = UserId::parse("a0").unwrap();
    let before = numbers(
        &engine
            .similar(&t, &id(0), &collaborative(9))
            .unwrap()
            .ranking
            .results,
    );
    assert!(before.contains(&1), "{before:?}");
    assert!(engine.delete(&t, &id(1)).unwrap());
    let after = numbers(
        &engine
            .similar(&t, &id(0), &collaborative(9))
            .unwrap()
            .ranking
            .results,
    );
    assert!(
        !after.contains(&1),
        "a deleted entity was answered: {after:?}"
    );
    let for_user = engine
        .recommend_for_user(&t, &user, &collaborative(19))
        .unwrap();
    assert!(!numbers(&for_user.ranking.results).contains(&1));
    // Entity 2 becomes odd: a filter on `odd` finds it now.
    let mut two = entities().swap_remove(2);
    two.category = Some("odd".into());
    engine.upsert(&t, vec![two]).unwrap();
    let mut odd = collaborative(10);
    odd.filter = Filter {
        category: Some("odd".into()),
        ..Filter::default()
    };
    let found = numbers(&engine.similar(&t, &id(0), &odd).unwrap().ranking.results);
    assert!(found.contains(&2), "{found:?}");
}

/// A tenant without content vectors: entities are ids, categories and tags; before a model a
/// user gets trending, after one the collaborative space serves similar and users, and every
/// question that needs content vectors says so.
#[test]
fn a_tenant_without_content_vectors_is_served_by_its_model() {
    let engine = reco_engine::Engine::new(reco_engine::EngineConfig::default()).unwrap();
    let t = reco_engine::TenantName::parse("log").unwrap();
    engine
        .create_tenant(t.clone(), reco_engine::TenantSpec::WITHOUT_VECTORS)
        .unwrap();
    let with_vector = entities();
    assert!(matches!(
        engine.upsert(&t, with_vector[..1].to_vec()),
        Err(EngineError::InvalidItem { .. })
    ));
    let bare: Vec<NewEntity> = entities()
        .into_iter()
        .map(|e| NewEntity {
            vector: Vec::new(),
            ..e
        })
        .collect();
    assert_eq!(engine.upsert(&t, bare).unwrap(), 20);
    engine.record(&t, history()).unwrap();
    let user = UserId::parse("b16").unwrap();
    let auto = |options: &SearchOptions| {
        engine
            .prepare_user_by(&t, &user, options, reco_engine::UserStrategy::Auto)
            .unwrap()
            .answer()
            .unwrap()
            .ranking
    };
    assert_eq!(auto(&SearchOptions::top(3)).strategy, Strategy::Trending);
    assert!(matches!(
        engine.similar(&t, &id(0), &SearchOptions::top(3)),
        Err(EngineError::NoContentVectors(_))
    ));
    assert!(matches!(
        engine.prepare_user_by(
            &t,
            &user,
            &SearchOptions::top(3),
            reco_engine::UserStrategy::Content
        ),
        Err(EngineError::NoContentVectors(_))
    ));
    engine.train_collaborative(&t, &params()).unwrap();
    let answer = auto(&SearchOptions::top(5));
    assert_eq!(answer.strategy, Strategy::Collaborative);
    // b16 liked every entity of group b but 11 and 16: those come first.
    assert_eq!(numbers(&answer.results)[..2], [11, 16], "{answer:?}");
    let similar = engine.similar(&t, &id(12), &collaborative(4)).unwrap();
    assert!(numbers(&similar.ranking.results).iter().all(|n| *n >= 10));
}

/// By default a catalogue this small gets EASE: one component per entity, "also liked" and
/// users served by the same engine, a user's vector being their history.
#[test]
fn a_small_catalogue_gets_ease_by_default() {
    let (engine, t, _) = engine(Metric::Dot, 2, true);
    engine.upsert(&t, entities()).unwrap();
    engine.record(&t, history()).unwrap();
    let info = engine.train_collaborative(&t, &Params::default()).unwrap();
    assert_eq!((info.items, info.factors), (20, 20));
    let parts = engine.model_parts(&t).unwrap().unwrap();
    assert_eq!(parts.params.algorithm, reco_engine::Algorithm::Ease);
    let found = numbers(
        &engine
            .similar(&t, &id(13), &collaborative(5))
            .unwrap()
            .ranking
            .results,
    );
    assert!(found.iter().all(|n| *n >= 10 && *n != 13), "{found:?}");
    let user = UserId::parse("b16").unwrap();
    let answer = engine
        .recommend_for_user(&t, &user, &collaborative(2))
        .unwrap();
    assert_eq!(answer.ranking.strategy, Strategy::Collaborative);
    assert_eq!(numbers(&answer.ranking.results), [11, 16]);
}

/// A catalogue wider than EASE's limit gets iALS by default, even when few of its entities
/// have interactions: EASE's width would otherwise be the cold space's too.
#[test]
fn a_wide_catalogue_gets_ials_by_default() {
    let (engine, t, _) = engine(Metric::Dot, 2, false);
    let wide: Vec<NewEntity> = (0..reco_engine::EASE_MAX_ITEMS + 1)
        .map(|n| NewEntity {
            id: id(n),
            vector: vec![1.0, f32::from(u16::try_from(n % 7).unwrap())],
            category: None,
            tags: Vec::new(),
            attributes: None,
        })
        .collect();
    engine.upsert(&t, wide).unwrap();
    engine.record(&t, history()).unwrap();
    let info = engine.train_collaborative(&t, &Params::default()).unwrap();
    assert_eq!((info.items, info.factors), (20, 64));
    let parts = engine.model_parts(&t).unwrap().unwrap();
    assert_eq!(parts.params.algorithm, reco_engine::Algorithm::Ials);
}
