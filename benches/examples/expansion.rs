//! What an insert's breadth (HNSW's efConstruction, `SearchConfig::expansion_add`) buys: for
//! each breadth, the time to load a clustered catalogue, the mean time of 2,000 single new
//! entities inserted after it (as a server applies writes), and recall@10 against exact
//! answers at several search breadths, on 200 questions.
//!
//! ```bash
//! cargo run --release -p reco-benches --example expansion -- 20k 100k
//! ```
//!
//! A measurement, not a criterion benchmark: recall is the point, and each breadth needs its
//! own graph (100k takes about a minute each on two cores).

#![allow(clippy::print_stdout, reason = "its report is its output")]

use std::time::Instant;

use reco_benches::{Scale, clustered, entity_id, loaded_with};
use reco_engine::{Engine, EngineConfig, Metric, NewEntity, SearchOptions, TenantName};

const INSERT_BREADTHS: [usize; 4] = [64, 100, 128, 200];
const SEARCH_BREADTHS: [usize; 5] = [16, 24, 32, 48, 64];
const INSERTS: usize = 2_000;
const QUESTIONS: usize = 200;

fn top10(engine: &Engine, tenant: &TenantName, row: usize, options: &SearchOptions) -> Vec<String> {
    engine
        .similar(tenant, &entity_id(row), options)
        .expect("an answer")
        .ranking
        .results
        .iter()
        .map(|s| s.id.to_string())
        .collect()
}

fn main() {
    let scales = [
        Scale {
            entities: 20_000,
            dimension: 128,
            label: "20k",
        },
        Scale {
            entities: 100_000,
            dimension: 128,
            label: "100k",
        },
    ];
    let asked: Vec<String> = std::env::args().skip(1).collect();
    for scale in scales {
        if !asked.is_empty() && !asked.iter().any(|a| a == scale.label) {
            continue;
        }
        for breadth in INSERT_BREADTHS {
            let mut config = EngineConfig::default();
            config.cache.enabled = false;
            config.search.expansion_add = breadth;
            let started = Instant::now();
            let (engine, tenant) = loaded_with(scale, Metric::Cosine, config);
            let load = started.elapsed().as_secs_f64();
            let vectors = clustered(4_096, scale.dimension, 13);
            let started = Instant::now();
            for i in 0..INSERTS {
                let entity = NewEntity {
                    id: entity_id(scale.entities + i),
                    vector: vectors[i % vectors.len()].clone(),
                    category: None,
                    tags: Vec::new(),
                    attributes: None,
                };
                engine.upsert(&tenant, vec![entity]).expect("written");
            }
            let insert_us = started.elapsed().as_secs_f64() * 1e6 / INSERTS as f64;
            let rows: Vec<usize> = (0..QUESTIONS)
                .map(|i| (i * 7919 + 13) % (scale.entities + INSERTS))
                .collect();
            let exact = SearchOptions {
                exact: true,
                ..SearchOptions::top(10)
            };
            let truth: Vec<_> = rows
                .iter()
                .map(|&r| top10(&engine, &tenant, r, &exact))
                .collect();
            let mut line = format!(
                "{} expansion_add={breadth}: load {load:.1} s, insert {insert_us:.0} us, recall@10",
                scale.label
            );
            for ef in SEARCH_BREADTHS {
                engine.set_search_breadth(&tenant, ef).expect("the tenant");
                let options = SearchOptions::top(10);
                let hits: usize = rows
                    .iter()
                    .zip(&truth)
                    .map(|(&r, t)| {
                        let found = top10(&engine, &tenant, r, &options);
                        t.iter().filter(|id| found.contains(id)).count()
                    })
                    .sum();
                let total: usize = truth.iter().map(Vec::len).sum();
                line += &format!(" ef={ef} {:.4}", hits as f64 / total as f64);
            }
            println!("{line}");
        }
    }
}
