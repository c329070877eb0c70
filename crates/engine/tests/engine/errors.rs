//! Every refusal: its error, and that it changed nothing.

use reco_engine::{
    Created, Engine, EngineConfig, EngineError, EntityId, Example, ExampleStrategy, Interaction,
    InteractionKind, Metric, NewEntity, RecommendRequest, SearchOptions, TenantName, TenantSpec,
    TrendingQuery, UserId, Window,
};

use crate::support::{engine, id};

fn entity(n: usize, vector: Vec<f32>) -> NewEntity {
    NewEntity {
        id: id(n),
        vector,
        category: None,
        tags: Vec::new(),
        attributes: None,
    }
}

fn seeded() -> (Engine, TenantName) {
    let (engine, tenant, _) = engine(Metric::Cosine, 2, true);
    engine
        .upsert(
            &tenant,
            vec![entity(0, vec![1.0, 0.0]), entity(1, vec![0.0, 1.0])],
        )
        .unwrap();
    (engine, tenant)
}

#[test]
fn unknown_tenants_are_not_found() {
    let (engine, _) = seeded();
    let ghost = TenantName::parse("ghost").unwrap();
    let not_found = |r: Result<(), EngineError>| {
        assert_eq!(r.unwrap_err(), EngineError::TenantNotFound(ghost.clone()));
    };
    not_found(engine.tenant_info(&ghost).map(drop));
    not_found(engine.upsert(&ghost, vec![]).map(drop));
    not_found(engine.delete(&ghost, &id(0)).map(drop));
    not_found(engine.get(&ghost, &id(0)).map(drop));
    not_found(engine.record(&ghost, vec![]).map(drop));
    not_found(
        engine
            .similar(&ghost, &id(0), &SearchOptions::default())
            .map(drop),
    );
    not_found(engine.trending(&ghost, &TrendingQuery::default()).map(drop));
    not_found(engine.drop_tenant(&ghost));
}

#[test]
fn tenants_are_created_once_and_conflicts_are_named() {
    let (engine, tenant) = seeded();
    let same = TenantSpec::new(2, Metric::Cosine).unwrap();
    assert_eq!(
        engine.create_tenant(tenant.clone(), same).unwrap(),
        Created::Existed
    );
    let other = TenantSpec::new(3, Metric::Cosine).unwrap();
    assert!(matches!(
        engine.create_tenant(tenant.clone(), other),
        Err(EngineError::TenantConflict {
            dimension: 2,
            metric: Metric::Cosine,
            ..
        })
    ));
    assert_eq!(
        engine.tenant_info(&tenant).unwrap().entities,
        2,
        "nothing changed"
    );
    // Dimension 0 is only the spec of a tenant without content vectors (metric dot).
    let bad = TenantSpec {
        dimension: 0,
        metric: Metric::Cosine,
    };
    let fresh = TenantName::parse("fresh").unwrap();
    assert!(matches!(
        engine.create_tenant(fresh.clone(), bad),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(engine.tenant_info(&fresh).is_err());
    assert_eq!(engine.tenants(), std::slice::from_ref(&tenant));
    engine.drop_tenant(&tenant).unwrap();
    assert!(engine.tenants().is_empty());
    engine.create_tenant(tenant.clone(), same).unwrap();
    assert_eq!(
        engine.tenant_info(&tenant).unwrap().entities,
        0,
        "a new tenant starts empty"
    );
    let answer = engine.similar(&tenant, &id(0), &SearchOptions::default());
    assert!(
        matches!(answer, Err(EngineError::EntityNotFound(_))),
        "no cached answer survives"
    );
}

#[test]
fn a_bad_batch_changes_nothing() {
    let (engine, tenant) = seeded();
    let cases = [
        (entity(5, vec![1.0]), "wrong length"),
        (entity(5, vec![f32::NAN, 1.0]), "NaN"),
        (entity(5, vec![f32::NEG_INFINITY, 1.0]), "infinity"),
        (entity(5, vec![0.0, 0.0]), "zeros under cosine"),
    ];
    for (bad, why) in cases {
        let batch = vec![entity(0, vec![0.5, 0.5]), entity(9, vec![1.0, 1.0]), bad];
        let err = engine.upsert(&tenant, batch).unwrap_err();
        let EngineError::InvalidItem { index, source } = err else {
            panic!("{why}: {err:?}");
        };
        assert_eq!(index, 2, "{why}");
        assert!(matches!(*source, EngineError::InvalidVector(_)), "{why}");
        assert_eq!(
            engine.get(&tenant, &id(0)).unwrap().vector,
            [1.0, 0.0],
            "{why}"
        );
        assert!(engine.get(&tenant, &id(9)).is_err(), "{why}");
    }
    let mut labelled = entity(3, vec![1.0, 1.0]);
    labelled.category = Some(String::new());
    assert!(matches!(
        engine.upsert(&tenant, vec![labelled]),
        Err(EngineError::InvalidItem { index: 0, .. })
    ));
    assert_eq!(engine.tenant_info(&tenant).unwrap().entities, 2);
}

#[test]
fn a_bad_interaction_batch_changes_nothing() {
    let (engine, tenant) = seeded();
    let interaction = |weight| Interaction {
        user: UserId::parse("u").unwrap(),
        entity: id(0),
        kind: InteractionKind::Like,
        weight,
        timestamp: 0,
    };
    let err = engine
        .record(
            &tenant,
            vec![interaction(None), interaction(Some(f32::INFINITY))],
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidItem { index: 1, .. }));
    assert_eq!(engine.tenant_info(&tenant).unwrap().interactions, 0);
}

#[test]
fn missing_entities_are_not_found() {
    let (engine, tenant) = seeded();
    assert!(matches!(
        engine.get(&tenant, &id(7)),
        Err(EngineError::EntityNotFound(_))
    ));
    assert!(matches!(
        engine.similar(&tenant, &id(7), &SearchOptions::default()),
        Err(EngineError::EntityNotFound(_))
    ));
    assert!(!engine.delete(&tenant, &id(7)).unwrap());
}

#[test]
fn query_limits_are_enforced() {
    let (engine, tenant) = seeded();
    for options in [
        SearchOptions::top(0),
        SearchOptions::top(1001),
        SearchOptions {
            offset: 10_001,
            ..SearchOptions::default()
        },
        SearchOptions {
            score_threshold: Some(f32::INFINITY),
            ..SearchOptions::default()
        },
        SearchOptions {
            diversity: -0.1,
            ..SearchOptions::default()
        },
    ] {
        assert!(
            matches!(
                engine.similar(&tenant, &id(0), &options),
                Err(EngineError::InvalidArgument(_))
            ),
            "{options:?}"
        );
    }
    let long = TrendingQuery {
        window: Window::parse("60d").unwrap(),
        ..TrendingQuery::default()
    };
    assert!(matches!(
        engine.trending(&tenant, &long),
        Err(EngineError::InvalidArgument(_))
    ));
    let zero_k = TrendingQuery {
        k: 0,
        ..TrendingQuery::default()
    };
    assert!(matches!(
        engine.trending(&tenant, &zero_k),
        Err(EngineError::InvalidArgument(_))
    ));
}

#[test]
fn recommend_refuses_what_it_cannot_rank() {
    let (engine, tenant) = seeded();
    let request = |positive: Vec<Example>, negative: Vec<Example>, strategy| RecommendRequest {
        positive,
        negative,
        strategy,
        options: SearchOptions::default(),
    };
    let ghost = || Example::id(EntityId::parse("ghost").unwrap());
    let cases = [
        (
            request(
                vec![],
                vec![Example::id(id(0))],
                ExampleStrategy::AverageVector,
            ),
            "no positive",
        ),
        (
            request(vec![], vec![], ExampleStrategy::BestScore),
            "no example",
        ),
        (
            request(
                vec![Example::id(id(0)).weighted(0.0)],
                vec![],
                ExampleStrategy::AverageVector,
            ),
            "zero weight",
        ),
        (
            request(
                vec![Example::id(id(0)).weighted(f32::NAN)],
                vec![],
                ExampleStrategy::BestScore,
            ),
            "NaN weight",
        ),
        (
            request(
                vec![Example::vector(vec![1.0])],
                vec![],
                ExampleStrategy::AverageVector,
            ),
            "short vector",
        ),
        (
            request(
                vec![Example::id(id(0))],
                vec![Example::id(id(0))],
                ExampleStrategy::AverageVector,
            ),
            "cancel out",
        ),
    ];
    for (r, why) in cases {
        let err = engine.recommend(&tenant, &r).unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::InvalidArgument(_) | EngineError::InvalidVector(_)
            ),
            "{why}: {err:?}"
        );
    }
    let only_missing = request(
        vec![ghost()],
        vec![Example::id(id(1))],
        ExampleStrategy::AverageVector,
    );
    assert!(matches!(
        engine.recommend(&tenant, &only_missing),
        Err(EngineError::NoUsableExamples(_))
    ));
    let partly = request(
        vec![ghost(), Example::id(id(0))],
        vec![],
        ExampleStrategy::AverageVector,
    );
    let answer = engine.recommend(&tenant, &partly).unwrap();
    assert_eq!(answer.ranking.missing, [EntityId::parse("ghost").unwrap()]);
    assert_eq!(
        answer.ranking.results.len(),
        1,
        "the example itself never comes back"
    );
}

#[test]
fn bad_engine_settings_are_refused() {
    let config = EngineConfig {
        half_life: std::time::Duration::ZERO,
        ..EngineConfig::default()
    };
    assert!(matches!(
        Engine::new(config),
        Err(EngineError::InvalidArgument(_))
    ));
    for floor in [-0.1, 1.5, f64::NAN] {
        let config = EngineConfig {
            history_floor: floor,
            ..EngineConfig::default()
        };
        assert!(
            matches!(Engine::new(config), Err(EngineError::InvalidArgument(_))),
            "history_floor {floor}"
        );
    }
}
