//! Approximate search on tenants large enough to get a graph: recall against exact search,
//! filters applied during the search, writes seen at once, and readers during writes.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reco_engine::{
    Engine, EngineConfig, EntityId, Filter, Metric, NewEntity, SearchOptions, TenantName,
    TenantSpec,
};

const DIM: usize = 32;
const N: usize = 8_000;

pub fn id(i: usize) -> EntityId {
    EntityId::parse(&format!("e{i}")).unwrap()
}

/// `n` vectors around 40 centres, every other one in category `even`.
pub fn clustered(n: usize, seed: u64) -> Vec<NewEntity> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|i| NewEntity {
            id: id(i),
            vector: centres[i % 40]
                .iter()
                .map(|x| x + rng.random_range(-0.4..0.4))
                .collect(),
            category: Some(if i % 2 == 0 { "even" } else { "odd" }.to_owned()),
            tags: vec![format!("t{}", i % 10)],
            attributes: None,
        })
        .collect()
}

fn engine(metric: Metric) -> (Engine, TenantName) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let t = TenantName::parse("big").unwrap();
    engine
        .create_tenant(t.clone(), TenantSpec::new(DIM, metric).unwrap())
        .unwrap();
    for part in clustered(N, 1).chunks(2_000) {
        engine.upsert(&t, part.to_vec()).unwrap();
    }
    assert!(engine.has_graph(&t).unwrap(), "{N} entities get a graph");
    (engine, t)
}

pub fn ids(engine: &Engine, t: &TenantName, i: usize, options: &SearchOptions) -> Vec<String> {
    let answer = engine.similar(t, &id(i), options).unwrap();
    answer
        .ranking
        .results
        .iter()
        .map(|s| s.id.to_string())
        .collect()
}

/// Recall@k of the default search against `exact=true`, over 200 queries.
fn recall(engine: &Engine, t: &TenantName, options: &SearchOptions) -> f64 {
    recall_over(engine, t, options, N)
}

/// Recall@k of `options` against the same with `exact=true`, over 200 of the first `n` ids.
pub fn recall_over(engine: &Engine, t: &TenantName, options: &SearchOptions, n: usize) -> f64 {
    let exact = SearchOptions {
        exact: true,
        ..options.clone()
    };
    let (mut found, mut total) = (0, 0);
    for q in (0..n).step_by(n / 200) {
        if engine.get(t, &id(q)).is_err() {
            continue;
        }
        let truth = ids(engine, t, q, &exact);
        let got = ids(engine, t, q, options);
        total += truth.len();
        found += truth.iter().filter(|i| got.contains(i)).count();
    }
    found as f64 / total as f64
}

#[test]
fn the_graph_finds_what_exact_search_finds() {
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
        let (engine, t) = engine(metric);
        let r = recall(&engine, &t, &SearchOptions::top(10));
        assert!(r >= 0.99, "{metric:?}: recall@10 {r}");
        // Scores are exact: the graph's results carry the same score exact search gives them.
        let approximate = engine.similar(&t, &id(3), &SearchOptions::top(10)).unwrap();
        let exact = SearchOptions {
            exact: true,
            ..SearchOptions::top(1000)
        };
        let all = engine.similar(&t, &id(3), &exact).unwrap();
        for s in &approximate.ranking.results {
            let same = all.ranking.results.iter().find(|e| e.id == s.id).unwrap();
            assert_eq!(s.score, same.score);
        }
    }
}

#[test]
fn filters_apply_during_the_search() {
    let (engine, t) = engine(Metric::Cosine);
    // Half the catalogue: the graph searches with the filter.
    let even = SearchOptions {
        filter: Filter {
            category: Some("even".into()),
            ..Filter::default()
        },
        ..SearchOptions::top(10)
    };
    for q in (0..N).step_by(397) {
        let got = ids(&engine, &t, q, &even);
        assert_eq!(got.len(), 10);
        assert!(
            got.iter()
                .all(|i| i[1..].parse::<usize>().unwrap() % 2 == 0),
            "{got:?}"
        );
    }
    assert!(recall(&engine, &t, &even) >= 0.99);
    // A tenth of it: too few for the graph, so their int8 codes are scanned and rescored.
    let one_tag = SearchOptions {
        filter: Filter {
            tags_any: vec!["t3".into()],
            ..Filter::default()
        },
        ..SearchOptions::top(10)
    };
    assert_eq!(recall(&engine, &t, &one_tag), 1.0);
    // Exclusions and offsets hold too.
    let page = SearchOptions {
        offset: 5,
        filter: Filter {
            exclude: vec![id(40), id(80)],
            ..Filter::default()
        },
        ..SearchOptions::top(5)
    };
    let got = ids(&engine, &t, 0, &page);
    assert!(!got.contains(&"e40".to_owned()) && !got.contains(&"e80".to_owned()));
    assert!(recall(&engine, &t, &page) >= 0.99);
}

#[test]
fn writes_reach_the_graph_at_once() {
    let (engine, t) = engine(Metric::Cosine);
    let before = ids(&engine, &t, 0, &SearchOptions::top(10));
    // The best ten go; a twin of the query arrives.
    for gone in &before {
        assert!(engine.delete(&t, &EntityId::parse(gone).unwrap()).unwrap());
    }
    let query = engine.get(&t, &id(0)).unwrap().vector;
    let twin = NewEntity {
        id: EntityId::parse("twin").unwrap(),
        vector: query.iter().map(|x| x * 2.0).collect(),
        category: None,
        tags: Vec::new(),
        attributes: None,
    };
    engine.upsert(&t, vec![twin]).unwrap();
    let after = ids(&engine, &t, 0, &SearchOptions::top(10));
    assert_eq!(after[0], "twin");
    assert!(after.iter().all(|i| !before.contains(i)), "{after:?}");
    // A moved entity is found where it now is.
    let flipped = SearchOptions::top(3);
    engine
        .upsert(
            &t,
            vec![NewEntity {
                id: id(1),
                vector: query,
                category: None,
                tags: Vec::new(),
                attributes: None,
            }],
        )
        .unwrap();
    assert_eq!(&ids(&engine, &t, 0, &flipped)[..2], ["e1", "twin"]);
}

#[test]
fn readers_search_while_a_writer_changes_the_graph() {
    let (engine, t) = engine(Metric::Dot);
    let engine = Arc::new(engine);
    let fresh = clustered(2_000, 9);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for (n, e) in fresh.iter().enumerate() {
                let mut e = e.clone();
                e.id = EntityId::parse(&format!("new{n}")).unwrap();
                engine.upsert(&t, vec![e]).unwrap();
                if n % 3 == 0 {
                    engine.delete(&t, &id(n)).unwrap();
                }
            }
        });
        for reader in 0..2 {
            let engine = engine.clone();
            let t = t.clone();
            s.spawn(move || {
                for q in 0..400 {
                    let i = 1 + 3 * ((q * 7 + reader) % 2_000);
                    let got = engine.similar(&t, &id(i), &SearchOptions::top(10)).unwrap();
                    assert_eq!(got.ranking.results.len(), 10);
                }
            });
        }
        writer.join().unwrap();
    });
    assert_eq!(engine.tenant_info(&t).unwrap().entities, N + 2_000 - 667);
    assert!(recall(&engine, &t, &SearchOptions::top(10)) >= 0.99);
}

#[test]
fn a_graph_grown_batch_by_batch_finds_what_exact_search_finds() {
    // As a server loads a tenant: the graph is made at the threshold and grows with each batch.
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let t = TenantName::parse("grown").unwrap();
    let spec = TenantSpec::new(DIM, Metric::Cosine).unwrap();
    let staged = engine
        .stage_tenant(
            t.clone(),
            spec,
            reco_engine::Lineage::new(1),
            reco_engine::Stamp::ZERO,
        )
        .unwrap();
    for part in clustered(20_000, 5).chunks(5_000) {
        engine.restore_entities(&staged, part.to_vec()).unwrap();
    }
    assert_eq!(engine.install(staged), reco_engine::Installed::Replaced);
    assert!(engine.has_graph(&t).unwrap());
    let r = recall(&engine, &t, &SearchOptions::top(10));
    assert!(r >= 0.99, "recall@10 {r}");
}

#[test]
fn clusters_with_a_member_on_their_centre_are_still_found() {
    // Each of the 40 centres is itself an entity: a hub that every member of its cluster is
    // nearest to. HNSW's neighbour selection keeps the hub and prunes the rest, which left
    // usearch's graph (the engine's first) at recall 0.66 on such data, and the graph without
    // its pruned candidates at 0.95. Walks must still get past hubs.
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let t = TenantName::parse("hubs").unwrap();
    engine
        .create_tenant(t.clone(), TenantSpec::new(DIM, Metric::Cosine).unwrap())
        .unwrap();
    let mut entities = clustered(N, 11);
    let mut rng = StdRng::seed_from_u64(12);
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    for (i, e) in entities.iter_mut().enumerate() {
        let centre = &centres[i % 40];
        e.vector = if i < 40 {
            centre.clone()
        } else {
            centre
                .iter()
                .map(|x| x + rng.random_range(-0.4..0.4))
                .collect()
        };
    }
    for part in entities.chunks(2_000) {
        engine.upsert(&t, part.to_vec()).unwrap();
    }
    assert!(engine.has_graph(&t).unwrap());
    let r = recall(&engine, &t, &SearchOptions::top(10));
    assert!(r >= 0.99, "recall@10 with hubs {r}");
}

/// The graph's breadth follows the recall measured on its own questions: audits of the
/// questions it answered (one in 32, re-answered exactly and at each breadth) choose the least
/// breadth whose mean recall holds the target, and recall measured independently at that
/// breadth holds it too. A stricter target chooses a breadth at least as wide.
#[test]
fn the_breadth_is_chosen_from_recall_measured_on_live_questions() {
    let (engine, t) = engine(Metric::Cosine);
    let configured = engine.search_breadth(&t).unwrap().unwrap();
    let options = SearchOptions::default();
    // About one question in 32 is kept; audits run until the estimate has enough of them.
    let mut asked = 0;
    while engine.recall_estimate(&t, 0.99).unwrap().is_none() {
        for _ in 0..64 {
            ids(&engine, &t, (asked * 7919) % N, &options);
            asked += 1;
        }
        while engine.audit_recall(&t).unwrap() {}
        assert!(asked < 64 * 200, "no estimate after {asked} questions");
    }
    let estimate = engine.tune_search_breadth(&t, 0.99).unwrap().unwrap();
    assert!(
        (asked / 64..=asked / 16).contains(&estimate.samples),
        "{} audits of {asked} questions",
        estimate.samples
    );
    assert!(estimate.recall >= 0.99, "{estimate:?}");
    assert_eq!(engine.search_breadth(&t).unwrap(), Some(estimate.breadth));
    assert!(
        estimate.breadth <= configured,
        "clustered data needs no more than the configured {configured}: {estimate:?}"
    );
    // Recall at the chosen breadth, on other questions, against exact answers.
    let exact = SearchOptions {
        exact: true,
        ..SearchOptions::default()
    };
    let (mut found, mut wanted) = (0, 0);
    for i in (0..N).step_by(41) {
        let truth = ids(&engine, &t, i, &exact);
        let approximate = ids(&engine, &t, i, &options);
        found += approximate.iter().filter(|id| truth.contains(id)).count();
        wanted += truth.len();
    }
    let recall = found as f64 / wanted as f64;
    assert!(
        recall >= 0.985,
        "recall {recall} at breadth {}",
        estimate.breadth
    );
    let strict = engine.tune_search_breadth(&t, 0.9999).unwrap().unwrap();
    assert!(
        strict.breadth >= estimate.breadth,
        "{strict:?} {estimate:?}"
    );
    assert_eq!(engine.search_breadth(&t).unwrap(), Some(strict.breadth));
}

/// Data a graph finds hard: every vector repeated some 80 times (97 patterns over 8,000
/// entities), so that a page is ties among copies, which a graph's pruned links barely join.
/// The configured breadth misses much of each page; the audits raise the breadth.
#[test]
fn data_a_graph_finds_hard_raises_the_breadth() {
    let mut config = EngineConfig::default();
    config.cache.enabled = false;
    let engine = Engine::new(config).unwrap();
    let t = TenantName::parse("hubs").unwrap();
    engine
        .create_tenant(t.clone(), TenantSpec::new(DIM, Metric::Cosine).unwrap())
        .unwrap();
    let entities: Vec<NewEntity> = (0..N)
        .map(|i| NewEntity {
            id: id(i),
            vector: (0..DIM)
                .map(|d| f32::from(u8::try_from((i * 31 + d * 7) % 97).unwrap()) + 1.0)
                .collect(),
            category: None,
            tags: Vec::new(),
            attributes: None,
        })
        .collect();
    engine.upsert(&t, entities).unwrap();
    let configured = engine.search_breadth(&t).unwrap().unwrap();
    let options = SearchOptions::default();
    while engine.recall_estimate(&t, 0.99).unwrap().is_none() {
        for i in 0..64 {
            ids(&engine, &t, (i * 7919 + 13) % N, &options);
        }
        while engine.audit_recall(&t).unwrap() {}
    }
    let estimate = engine.tune_search_breadth(&t, 0.99).unwrap().unwrap();
    assert!(estimate.breadth > configured, "{estimate:?}");
    assert_eq!(engine.search_breadth(&t).unwrap(), Some(estimate.breadth));
}
