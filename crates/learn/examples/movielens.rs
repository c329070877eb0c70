//! The learner alone on MovieLens-100K, by the protocol of issue 13: each user's last rating in
//! time is their test item when it is 4 or more; everything else trains; every item the user
//! has not rated is ranked. Prints HR@10 and NDCG@10 of iALS, of EASE (a user's vector being
//! their kind-weighted history, no time decay) and of most-popular.
//!
//! The data ships inside the `recbole` wheel on PyPI (never in this repository):
//!
//! ```text
//! pip download --no-deps recbole -d /tmp/rb && cd /tmp/rb && unzip -o recbole-*.whl \
//!     'recbole/dataset_example/ml-100k/*'
//! cargo run --release -p reco-learn --example movielens -- \
//!     /tmp/rb/recbole/dataset_example/ml-100k/ml-100k.inter [factors] [iterations] \
//!     [regularization] [unobserved_weight] [confidence]
//! ```
//!
//! `RECO_ML_VALIDATE=1` holds out each user's last *training* rating of 4 or more instead (the
//! validation split the baselines tune on), for choosing parameters without the test.
//! `RECO_ML_NO_DISLIKES=1` counts every rating as interest (1 and 2 as views) instead of
//! ratings of 1 and 2 as dislikes; on this data it made no difference (0.073 against 0.075).

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::collections::HashMap;

use reco_learn::{Algorithm, Observation, Params, train};

/// A rating as the kinds' weights would give it: 4 and 5 a like (4), 3 a view (1), 1 and 2 a
/// dislike (-4), or a view with `RECO_ML_NO_DISLIKES`.
fn weight(rating: f32) -> f32 {
    if std::env::var_os("RECO_ML_NO_DISLIKES").is_some() {
        return if rating >= 4.0 { 4.0 } else { 1.0 };
    }
    if rating >= 4.0 {
        4.0
    } else if rating >= 3.0 {
        1.0
    } else {
        -4.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("the path of ml-100k.inter");
    let arg = |n: usize, default: f64| {
        args.get(n)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let count = |n: usize, default: usize| {
        args.get(n)
            .map_or(default, |a| a.parse().expect("a whole number"))
    };
    let text = std::fs::read_to_string(path).expect("the file reads");
    let mut users: HashMap<&str, u32> = HashMap::new();
    let mut items: HashMap<&str, u32> = HashMap::new();
    let mut rows: Vec<(u32, u32, f32, i64)> = Vec::new();
    // An item's id, for breaking ties in time as the baselines and `reco evaluate` do (by the
    // id as text).
    let mut item_number: Vec<String> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let n = users.len();
        let u = *users.entry(f[0]).or_insert(u32::try_from(n).unwrap());
        let n = items.len();
        let i = *items.entry(f[1]).or_insert(u32::try_from(n).unwrap());
        if i as usize == item_number.len() {
            item_number.push(f[1].to_owned());
        }
        let rating: f32 = f[2].parse().unwrap();
        let at: f64 = f[3].parse().unwrap();
        #[expect(clippy::cast_possible_truncation, reason = "unix seconds")]
        rows.push((u, i, rating, at as i64));
    }
    // Each user's last rating in time (ties by the item's id as text) is the test when it is 4
    // or more.
    let mut by_user: Vec<Vec<(i64, u32, f32)>> = vec![Vec::new(); users.len()];
    for &(u, i, r, at) in &rows {
        by_user[u as usize].push((at, i, r));
    }
    for events in &mut by_user {
        events.sort_by(|a, b| {
            (a.0, &item_number[a.1 as usize]).cmp(&(b.0, &item_number[b.1 as usize]))
        });
    }
    // With RECO_ML_VALIDATE, the same split once more inside training: the last training rating
    // becomes the held-out item, for choosing parameters without looking at the test.
    if std::env::var_os("RECO_ML_VALIDATE").is_some() {
        for events in &mut by_user {
            if events.last().is_some_and(|e| e.2 >= 4.0) {
                events.pop();
            }
        }
    }
    let mut train_set = Vec::new();
    let mut tests: Vec<(u32, u32)> = Vec::new();
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); users.len()];
    for (u, events) in by_user.iter().enumerate() {
        let u = u32::try_from(u).unwrap();
        let last = events.last().copied();
        for (n, &(_, i, r)) in events.iter().enumerate() {
            if n + 1 == events.len() && r >= 4.0 {
                continue;
            }
            train_set.push(Observation {
                user: u,
                item: i,
                weight: weight(r),
            });
            seen[u as usize].push(i);
        }
        if let Some((_, i, r)) = last
            && r >= 4.0
        {
            tests.push((u, i));
        }
    }
    let params = Params {
        algorithm: Algorithm::Ials,
        factors: count(2, 64),
        iterations: count(3, 10),
        regularization: arg(4, Params::default().regularization),
        unobserved_weight: arg(5, Params::default().unobserved_weight),
        confidence: arg(6, Params::default().confidence),
        ..Params::default()
    };
    let started = std::time::Instant::now();
    let model = train(users.len(), items.len(), &train_set, &params, |_| {}).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let mut popularity = vec![0usize; items.len()];
    for o in &train_set {
        if o.weight > 0.0 {
            popularity[o.item as usize] += 1;
        }
    }
    let evaluate = |score: &dyn Fn(u32, u32) -> f32| {
        let (mut hits, mut ndcg) = (0.0, 0.0);
        for &(u, test) in &tests {
            let own = score(u, test);
            let better = (0..u32::try_from(items.len()).unwrap())
                .filter(|&i| i != test && !seen[u as usize].contains(&i))
                .filter(|&i| score(u, i) > own)
                .count();
            if better < 10 {
                hits += 1.0;
                ndcg += 1.0 / ((better + 2) as f64).log2();
            }
        }
        let n = tests.len() as f64;
        (hits / n, ndcg / n)
    };
    let ials = |u: u32, i: u32| -> f32 {
        let x = model.user(u as usize).unwrap();
        model
            .item(i as usize)
            .unwrap()
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum()
    };
    // EASE on the same rows, a user's vector being their kind-weighted history (no decay).
    let started = std::time::Instant::now();
    let ease = train(
        users.len(),
        items.len(),
        &train_set,
        &Params {
            algorithm: Algorithm::Ease,
            ..Params::default()
        },
        |_| {},
    )
    .unwrap();
    let ease_seconds = started.elapsed().as_secs_f64();
    let histories: Vec<Vec<f32>> = (0..users.len())
        .map(|u| {
            let u = u32::try_from(u).unwrap();
            let history: Vec<(u32, f32)> = train_set
                .iter()
                .filter(|o| o.user == u)
                .map(|o| (o.item, o.weight))
                .collect();
            ease.fold_in(&history)
        })
        .collect();
    let ease_score = |u: u32, i: u32| -> f32 {
        let x = &histories[u as usize];
        ease.item(i as usize)
            .unwrap()
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum()
    };
    let popular = |_: u32, i: u32| -> f32 { popularity[i as usize] as f32 };
    let (hr, ndcg) = evaluate(&ials);
    let (phr, pndcg) = evaluate(&popular);
    let (ehr, endcg) = evaluate(&ease_score);
    println!(
        "{} users ({} tested), {} items, {} training rows; {params:?}",
        users.len(),
        tests.len(),
        items.len(),
        train_set.len()
    );
    println!("iALS:         HR@10 {hr:.4}  NDCG@10 {ndcg:.4}  ({seconds:.2} s)");
    println!("EASE:         HR@10 {ehr:.4}  NDCG@10 {endcg:.4}  ({ease_seconds:.2} s)");
    println!("most popular: HR@10 {phr:.4}  NDCG@10 {pndcg:.4}");
}
