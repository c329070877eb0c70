//! Bounded work: questions over the budget are refused before they start, and an interrupted
//! ranking stops, answers `Interrupted` and caches nothing (issue 14, F1 and F2).

use std::sync::Arc;

use reco_engine::{
    CostPart, Engine, EngineConfig, EngineError, Example, ExampleStrategy, Interrupt, Metric,
    NewEntity, RecommendRequest, SearchOptions, TenantName, TenantSpec,
};

use crate::support::id;

const DIM: usize = 16;
const ENTITIES: usize = 4_000;

/// An engine with one cosine tenant of `ENTITIES` entities and the given budget.
fn engine(budget: u64) -> (Engine, TenantName) {
    let config = EngineConfig {
        work_budget: budget,
        ..EngineConfig::default()
    };
    let engine = Engine::new(config).unwrap();
    let tenant = TenantName::parse("t").unwrap();
    engine
        .create_tenant(
            tenant.clone(),
            TenantSpec::new(DIM, Metric::Cosine).unwrap(),
        )
        .unwrap();
    let entities = (0..ENTITIES)
        .map(|n| NewEntity {
            id: id(n),
            vector: (0..DIM)
                .map(|d| ((n * 31 + d * 7) % 97) as f32 + 1.0)
                .collect(),
            category: None,
            tags: Vec::new(),
            attributes: None,
        })
        .collect();
    engine.upsert(&tenant, entities).unwrap();
    (engine, tenant)
}

/// The question of finding F1: best score of many examples, a deep page, full diversity.
fn heavy(examples: usize) -> RecommendRequest {
    RecommendRequest {
        positive: (0..examples).map(|n| Example::id(id(n))).collect(),
        negative: Vec::new(),
        strategy: ExampleStrategy::BestScore,
        options: SearchOptions {
            k: 1000,
            offset: 2000,
            diversity: 1.0,
            exact: true,
            ..SearchOptions::default()
        },
    }
}

#[test]
fn a_question_over_the_budget_is_refused_naming_what_to_lower() {
    let (engine, tenant) = engine(10_000_000);
    let refused = engine.prepare_recommend(&tenant, &heavy(2)).unwrap_err();
    let EngineError::OverBudget {
        cost,
        budget,
        lower,
    } = &refused
    else {
        panic!("{refused:?}");
    };
    assert!(cost > budget, "{cost} {budget}");
    assert!(lower.contains("diversity"), "{lower}");
    // Without diversity, many examples are what costs.
    let mut examples = heavy(200);
    examples.options.diversity = 0.0;
    let refused = engine.prepare_recommend(&tenant, &examples).unwrap_err();
    assert!(refused.to_string().contains("fewer examples"), "{refused}");
    // A question within the budget is answered; its cost says where it comes from.
    let light = RecommendRequest {
        options: SearchOptions::top(10),
        ..heavy(2)
    };
    let prepared = engine.prepare_recommend(&tenant, &light).unwrap();
    assert_eq!(prepared.cost().largest, CostPart::Search);
    assert!(prepared.answer().is_ok());
}

#[test]
fn an_interrupted_ranking_stops_and_caches_nothing() {
    let (engine, tenant) = engine(u64::MAX);
    let request = heavy(2);
    let stopped = Interrupt::new();
    stopped.stop();
    let prepared = engine.prepare_recommend(&tenant, &request).unwrap();
    assert_eq!(
        prepared.answer_until(&stopped).unwrap_err(),
        EngineError::Interrupted
    );
    // Nothing was cached: the same question is ranked again, and whole.
    let prepared = engine.prepare_recommend(&tenant, &request).unwrap();
    assert!(prepared.cached().is_none());
    let answer = prepared.answer_until(&Interrupt::new()).unwrap();
    assert_eq!(answer.ranking.results.len(), 1000);
}

#[test]
fn a_deadline_stops_a_ranking_in_its_middle() {
    let (engine, tenant) = engine(u64::MAX);
    // Long enough that it cannot finish within the deadline (seconds of MMR), and interrupted
    // long before that: the test's own time limit would catch a ranking that did not stop.
    let mut request = heavy(2);
    request.options.k = 1000;
    request.options.offset = 3000;
    let prepared = engine.prepare_recommend(&tenant, &request).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
    let interrupt: Arc<Interrupt> = Interrupt::until(deadline);
    assert_eq!(
        prepared.answer_until(&interrupt).unwrap_err(),
        EngineError::Interrupted
    );
    assert!(interrupt.is_stopped());
}
