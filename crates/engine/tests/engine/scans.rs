//! Scans that are not one f32 pass per query: the int8 codes of tenants without a graph, and
//! the pass shared by many exact questions (`Prepared::answer_all`).

use reco_engine::{
    CacheStatus, Engine, EngineConfig, EntityId, Example, ExampleStrategy, Filter, Metric,
    NewEntity, Prepared, RecommendRequest, SearchConfig, SearchOptions, TenantName, TenantSpec,
};

use crate::approximate::{clustered, id, ids, recall_over};

const DIM: usize = 32;
/// Fewer than the graph's threshold.
const N: usize = 4_000;

fn engine_with(metric: Metric, search: SearchConfig, cache: bool) -> (Engine, TenantName) {
    let mut config = EngineConfig {
        search,
        ..EngineConfig::default()
    };
    config.cache.enabled = cache;
    let engine = Engine::new(config).unwrap();
    let t = TenantName::parse("flat").unwrap();
    engine
        .create_tenant(t.clone(), TenantSpec::new(DIM, metric).unwrap())
        .unwrap();
    engine.upsert(&t, clustered(N, 3)).unwrap();
    assert!(!engine.has_graph(&t).unwrap());
    (engine, t)
}

fn exact(options: SearchOptions) -> SearchOptions {
    SearchOptions {
        exact: true,
        ..options
    }
}

#[test]
fn the_codes_scan_finds_what_exact_search_finds() {
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
        let (engine, t) = engine_with(metric, SearchConfig::default(), false);
        let r = recall_over(&engine, &t, &SearchOptions::top(10), N);
        assert!(r >= 0.99, "{metric:?}: recall@10 {r}");
        // Scores are exact: the codes only pick the candidates.
        let found = engine.similar(&t, &id(5), &SearchOptions::top(10)).unwrap();
        let all = engine
            .similar(&t, &id(5), &exact(SearchOptions::top(1000)))
            .unwrap();
        for s in &found.ranking.results {
            let same = all.ranking.results.iter().find(|e| e.id == s.id).unwrap();
            assert_eq!(s.score, same.score, "{metric:?}");
        }
        // So are thresholds: nothing under one, and the page is filled from above it.
        let floor = all.ranking.results[40].score;
        let above = SearchOptions {
            score_threshold: Some(floor),
            ..SearchOptions::top(100)
        };
        let got = engine.similar(&t, &id(5), &above).unwrap();
        let got = got.ranking.results.clone();
        let want = engine.similar(&t, &id(5), &exact(above)).unwrap();
        let want = want.ranking.results.clone();
        assert_eq!(got, want, "{metric:?}");
    }
}

#[test]
fn the_codes_cost_a_byte_per_component_and_can_be_turned_off() {
    let (coded, t) = engine_with(Metric::Cosine, SearchConfig::default(), false);
    let plain_config = SearchConfig {
        quantized: false,
        ..SearchConfig::default()
    };
    let (plain, _) = engine_with(Metric::Cosine, plain_config, false);
    let extra = coded.entity_heap_bytes(&t).unwrap() - plain.entity_heap_bytes(&t).unwrap();
    assert!(
        (N * (DIM + 4)..N * (DIM + 4) * 5 / 4).contains(&extra),
        "{extra} bytes for {N} codes"
    );
    assert_eq!(recall_over(&plain, &t, &SearchOptions::top(10), N), 1.0);
}

#[test]
fn the_default_search_of_a_small_tenant_reads_the_codes() {
    // Rows differing only in a component a hundred times smaller than their largest: their
    // codes keep 14 steps of it, so the codes cannot tell the best few apart. Exact search,
    // or a tenant without codes, can.
    let rows = (0..1_000).map(|i| NewEntity {
        id: EntityId::parse(&format!("r{i:04}")).unwrap(),
        vector: vec![1.0, 1e-4 * i as f32],
        category: None,
        tags: Vec::new(),
        attributes: None,
    });
    let rows: Vec<NewEntity> = rows.collect();
    let up = RecommendRequest {
        positive: vec![Example::vector(vec![0.0, 1.0])],
        negative: Vec::new(),
        strategy: ExampleStrategy::AverageVector,
        options: SearchOptions::top(1),
    };
    let best = |quantized: bool, exact: bool| {
        let engine = Engine::new(EngineConfig {
            search: SearchConfig {
                quantized,
                ..SearchConfig::default()
            },
            ..EngineConfig::default()
        })
        .unwrap();
        let t = TenantName::parse("t").unwrap();
        engine
            .create_tenant(t.clone(), TenantSpec::new(2, Metric::Dot).unwrap())
            .unwrap();
        engine.upsert(&t, rows.clone()).unwrap();
        let mut request = up.clone();
        request.options.exact = exact;
        let answer = engine.recommend(&t, &request).unwrap();
        answer.ranking.results[0].id.to_string()
    };
    assert_eq!(best(false, false), "r0999");
    assert_eq!(best(true, true), "r0999");
    assert_ne!(best(true, false), "r0999", "the codes were not read");
}

/// Exact questions of every shape a batch may hold.
fn questions() -> Vec<SearchOptions> {
    let mut out = Vec::new();
    for k in [1, 10, 25] {
        out.push(exact(SearchOptions::top(k)));
    }
    out.push(exact(SearchOptions {
        offset: 7,
        ..SearchOptions::top(5)
    }));
    out.push(exact(SearchOptions {
        diversity: 0.5,
        ..SearchOptions::top(10)
    }));
    out.push(exact(SearchOptions {
        filter: Filter {
            exclude: vec![id(40), id(80), id(999_999)],
            ..Filter::default()
        },
        ..SearchOptions::top(10)
    }));
    out.push(exact(SearchOptions {
        score_threshold: Some(0.5),
        ..SearchOptions::top(50)
    }));
    out
}

#[test]
fn a_shared_pass_answers_as_questions_one_by_one_do() {
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
        let (engine, t) = engine_with(metric, SearchConfig::default(), false);
        let (other, u) = engine_with(metric, SearchConfig::default(), false);
        let mut asked: Vec<(&Engine, &TenantName, EntityId, SearchOptions)> = Vec::new();
        for (n, options) in questions().iter().enumerate() {
            for q in [n, 100 + 37 * n, 3_999 - n] {
                asked.push((&engine, &t, id(q), options.clone()));
            }
            asked.push((&other, &u, id(11 * n), options.clone()));
        }
        let batchable = asked.len();
        // Not batchable: approximate, or filtered by category.
        asked.push((&engine, &t, id(3), SearchOptions::top(10)));
        let by_category = SearchOptions {
            filter: Filter {
                category: Some("even".into()),
                ..Filter::default()
            },
            ..exact(SearchOptions::top(10))
        };
        asked.push((&engine, &t, id(3), by_category));
        // Batchable again, after the others.
        asked.push((&engine, &t, id(4), exact(SearchOptions::top(3))));
        let prepare = || -> Vec<Prepared> {
            asked
                .iter()
                .map(|(e, t, q, o)| e.prepare_similar(t, q, o).unwrap())
                .collect()
        };
        let batch = prepare();
        let alone = prepare();
        for (n, prepared) in batch.iter().enumerate() {
            assert_eq!(
                prepared.batchable(),
                n < batchable || n == asked.len() - 1,
                "{n}"
            );
        }
        let together = Prepared::answer_all(batch);
        assert_eq!(together.len(), alone.len());
        for (shared, one) in together.into_iter().zip(alone) {
            match (shared, one.answer()) {
                (Ok(a), Ok(b)) => assert_eq!(a.ranking, b.ranking, "{metric:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{metric:?}: {a:?} against {b:?}"),
            }
        }
    }
}

#[test]
fn a_shared_pass_fills_the_cache() {
    let (engine, t) = engine_with(Metric::Cosine, SearchConfig::default(), true);
    let (uncached, _) = engine_with(Metric::Cosine, SearchConfig::default(), false);
    let options = exact(SearchOptions::top(10));
    let batch = (0..8)
        .map(|q| engine.prepare_similar(&t, &id(q), &options).unwrap())
        .collect();
    for answer in Prepared::answer_all(batch) {
        assert_eq!(answer.unwrap().cache, CacheStatus::Miss);
    }
    for q in 0..8 {
        let again = engine.similar(&t, &id(q), &options).unwrap();
        assert_eq!(again.cache, CacheStatus::Hit);
        assert_eq!(
            ids(&engine, &t, q, &options),
            ids(&uncached, &t, q, &options)
        );
    }
}
