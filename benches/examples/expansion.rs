//! What an insert's breadth (HNSW's efConstruction, `SearchConfig::expansion_add`) buys: for
//! each breadth, the time to load a clustered catalogue, the mean time of 2,000 single new
//! entities inserted after it (as a server applies writes), and recall@10 against exact
//! answers at several search breadths, on 200 questions.
//!
//! ```bash
//! cargo run --release -p reco-benches --example expansion -- 20k 100k
//! ```
//!
//! A graph is built on every core, so two builds of the same catalogue differ, and so does
//! their recall (at 20k by as much as 0.995 against 1.0). Each breadth is therefore built
//! `RECO_BENCH_REPEATS` times (3 by default), the breadths in turn in each round, so that a
//! drift of the machine touches them alike. A measurement, not a criterion benchmark: recall
//! is the point, and each breadth needs its own graph (100k takes about half a minute each on
//! two cores).

#![allow(clippy::print_stdout, reason = "its report is its output")]

use std::time::Instant;

use reco_benches::{
    SCALE_100K, SCALES, clustered, entity_id, loaded_with, questions, recall, top10s,
};
use reco_engine::{EngineConfig, Metric, NewEntity, SearchOptions};

const INSERT_BREADTHS: [usize; 4] = [64, 100, 128, 200];
const SEARCH_BREADTHS: [usize; 5] = [16, 24, 32, 48, 64];
const INSERTS: usize = 2_000;
const QUESTIONS: usize = 200;

fn main() {
    let scales = [SCALES[2], SCALE_100K];
    let asked: Vec<String> = std::env::args().skip(1).collect();
    let repeats: usize = std::env::var("RECO_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for scale in scales {
        if !asked.is_empty() && !asked.iter().any(|a| a == scale.label) {
            continue;
        }
        for (round, breadth) in
            (1..=repeats).flat_map(|round| INSERT_BREADTHS.map(|breadth| (round, breadth)))
        {
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
            let rows = questions(scale.entities + INSERTS, QUESTIONS);
            let exact = SearchOptions {
                exact: true,
                ..SearchOptions::top(10)
            };
            let truth = top10s(&engine, &tenant, &rows, &exact);
            let mut line = format!(
                "{} round {round} expansion_add={breadth}: load {load:.1} s, insert {insert_us:.0} us, recall@10",
                scale.label
            );
            for ef in SEARCH_BREADTHS {
                engine.set_search_breadth(&tenant, ef).expect("the tenant");
                let options = SearchOptions::top(10);
                let found = top10s(&engine, &tenant, &rows, &options);
                line += &format!(" ef={ef} {:.4}", recall(&truth, &found));
            }
            println!("{line}");
        }
    }
}
