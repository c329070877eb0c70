//! Offline evaluation: how well each user strategy would have recommended on a tenant's own
//! log, so that a user picks one with evidence.
//!
//! The log is split per user, either leave-last-out in time (each user's last interaction is
//! their test item when its kind is a test kind: a like or a purchase by default) or at random,
//! 80/10/10 (train, validation, test; RecBole's default), with the test kinds' interactions of
//! the last tenth as the relevant items. A fresh engine with this engine's code and settings
//! is filled with the catalogue and the training part only, its clock set just after the last
//! training interaction (so trending reads the log's own time), the collaborative model trained
//! as the tenant would train it, and then every tested user is asked for the top 20 of each
//! strategy, ranked exactly over every entity they have not touched in training. Reported per
//! strategy: HR@10, NDCG@10, recall@20 and the share of the catalogue that appears in some top
//! 10 (coverage), plus what `auto` chose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::LearnParams;
use crate::config::{EngineConfig, ManualClock};
use crate::engine::Engine;
use crate::error::Result;
use crate::model::{
    EntityId, Interaction, InteractionKind, Millis, NewEntity, TenantName, TenantSpec, UserId,
};
use crate::query::{SearchOptions, Strategy, UserStrategy};

/// How a log is split into training and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Each user's last interaction in time (ties by entity id) is their test item, when its
    /// kind is a test kind; everything before it trains.
    LeaveLastOut,
    /// Each user's interactions in a random order of this seed: the first 80% train, the next
    /// 10% are validation (held out of training and not tested), the last 10% test.
    Random {
        /// The order's seed.
        seed: u64,
    },
}

/// What to evaluate, and how.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The split.
    pub split: Split,
    /// The kinds an interaction must have to be a test item. Default: like and purchase.
    pub test_kinds: Vec<InteractionKind>,
    /// The strategies to compare; each needs what it ranks by (content vectors, a model).
    pub strategies: Vec<UserStrategy>,
    /// How the model is trained.
    pub learning: LearnParams,
    /// The engine's settings (half-life, kind weights, hybrid weight, ...). Its cache is not
    /// used.
    pub config: EngineConfig,
    /// Scores the validation part instead of the test, which is then left out entirely: for
    /// choosing settings without looking at the test. Leave-last-out takes each user's last
    /// test item away first and holds out the one before it; the random split scores its
    /// validation tenth.
    pub validate: bool,
    /// The share of entities (from 0 to 1, picked at random by `new_seed`) made new: every
    /// training interaction with them is dropped, so no model learns them, while they stay in
    /// the catalogue and may be test items. It measures what a shop sees between trainings,
    /// when entities too new to have interactions must come from their content. Default 0.
    pub new_entities: f64,
    /// The seed of the pick of new entities.
    pub new_seed: u64,
}

impl Evaluation {
    /// Leave-last-out, likes and purchases as test items, every strategy, the default model
    /// and engine.
    pub fn new(split: Split) -> Self {
        Self {
            split,
            test_kinds: vec![InteractionKind::Like, InteractionKind::Purchase],
            strategies: vec![
                UserStrategy::Trending,
                UserStrategy::Content,
                UserStrategy::Collaborative,
                UserStrategy::Hybrid,
                UserStrategy::Auto,
            ],
            learning: LearnParams::default(),
            config: EngineConfig::default(),
            validate: false,
            new_entities: 0.0,
            new_seed: 42,
        }
    }
}

/// The cut-off of HR and NDCG.
pub const CUTOFF: usize = 10;

/// The cut-off of recall.
pub const RECALL_CUTOFF: usize = 20;

/// How one strategy did.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyScore {
    /// The strategy asked for.
    pub strategy: UserStrategy,
    /// Tested users with a relevant entity in their top 10.
    pub hit_rate: f64,
    /// NDCG@10, averaged over tested users.
    pub ndcg: f64,
    /// The share of each user's relevant entities found in their top 20, averaged.
    pub recall: f64,
    /// The share of the catalogue in some tested user's top 10.
    pub coverage: f64,
    /// Tested users whose relevant entities no training interaction names (entities too new
    /// for a model to have learnt), and HR@10 and NDCG@10 over them alone.
    pub cold: ColdScore,
    /// How many users each answering strategy served (a strategy falls back when it cannot
    /// serve a user, and `auto` chooses).
    pub answered_by: BTreeMap<&'static str, usize>,
    /// How long answering every tested user took, in seconds.
    pub seconds: f64,
}

/// The measures over the tested users whose relevant entities are cold: no training
/// interaction names them, so only content can find them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColdScore {
    /// How many such users.
    pub users: usize,
    /// Their HR@10.
    pub hit_rate: f64,
    /// Their NDCG@10.
    pub ndcg: f64,
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationReport {
    /// The split used.
    pub split: Split,
    /// Users in the log.
    pub users: usize,
    /// Users with a test item.
    pub tested: usize,
    /// Entities in the catalogue.
    pub entities: usize,
    /// Interactions that trained.
    pub training_interactions: usize,
    /// How long the model's training took, when one was trained.
    pub training_seconds: Option<f64>,
    /// One score per strategy that applies, in the order asked.
    pub scores: Vec<StrategyScore>,
}

/// One user's part of the split.
struct Tested {
    user: UserId,
    relevant: HashSet<EntityId>,
    /// No training interaction names any relevant entity.
    cold: bool,
}

/// A splitmix64 step: the random order of [`Split::Random`], the same on every machine.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Splits the log into training interactions and tested users.
fn split(
    interactions: Vec<Interaction>,
    evaluation: &Evaluation,
) -> (Vec<Interaction>, Vec<Tested>, usize) {
    let mut by_user: HashMap<UserId, Vec<Interaction>> = HashMap::new();
    for interaction in interactions {
        by_user
            .entry(interaction.user.clone())
            .or_default()
            .push(interaction);
    }
    let users = by_user.len();
    let mut ordered: Vec<(UserId, Vec<Interaction>)> = by_user.into_iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    let is_test = |i: &Interaction| evaluation.test_kinds.contains(&i.kind);
    let mut train = Vec::new();
    let mut tested = Vec::new();
    for (number, (user, mut events)) in ordered.into_iter().enumerate() {
        events.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then(a.entity.cmp(&b.entity)));
        let mut relevant = HashSet::new();
        match evaluation.split {
            Split::LeaveLastOut => {
                if evaluation.validate && events.last().is_some_and(is_test) {
                    events.pop();
                }
                if events.last().is_some_and(is_test) {
                    let last = events.pop().expect("a last event");
                    relevant.insert(last.entity);
                }
                train.extend(events);
            }
            Split::Random { seed } => {
                let salt = mix(seed ^ mix(number as u64));
                let mut keyed: Vec<(u64, Interaction)> = events
                    .into_iter()
                    .enumerate()
                    .map(|(n, e)| (mix(salt ^ n as u64), e))
                    .collect();
                keyed.sort_by_key(|(key, _)| *key);
                let n = keyed.len();
                let training = (n * 8).div_ceil(10);
                let validation = n / 10;
                let mut rest = keyed.into_iter().map(|(_, e)| e);
                let trained: Vec<Interaction> = rest.by_ref().take(training).collect();
                let seen: HashSet<&EntityId> = trained.iter().map(|e| &e.entity).collect();
                let scored: Vec<Interaction> = if evaluation.validate {
                    rest.take(validation).collect()
                } else {
                    rest.skip(validation).collect()
                };
                for event in scored {
                    // An entity the user touched in training is never recommended to them, so
                    // it cannot be a test item.
                    if is_test(&event) && !seen.contains(&event.entity) {
                        relevant.insert(event.entity);
                    }
                }
                train.extend(trained);
            }
        }
        if !relevant.is_empty() {
            tested.push(Tested {
                user,
                relevant,
                cold: false,
            });
        }
    }
    if evaluation.new_entities > 0.0 {
        // An entity is new when its seeded hash falls in the lowest share of the range.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a share of the u64 range, clamped to it"
        )]
        let cut = (evaluation.new_entities.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        let is_new = |e: &EntityId| {
            let mut h = mix(evaluation.new_seed);
            for b in e.as_str().bytes() {
                h = mix(h ^ u64::from(b));
            }
            h < cut
        };
        train.retain(|i| !is_new(&i.entity));
    }
    let trained: HashSet<&EntityId> = train.iter().map(|i| &i.entity).collect();
    for t in &mut tested {
        t.cold = t.relevant.iter().all(|e| !trained.contains(e));
    }
    (train, tested, users)
}

/// Runs an evaluation of `entities` (with vectors under `spec`, or none) and their
/// `interactions`. `progress` is told how many answers there are to compute, then each one
/// done. Refuses a catalogue or log the engine would refuse.
pub fn evaluate(
    spec: TenantSpec,
    entities: Vec<NewEntity>,
    interactions: Vec<Interaction>,
    evaluation: &Evaluation,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<EvaluationReport> {
    let catalogue = entities.len();
    let (train, tested, users) = split(interactions, evaluation);
    let start: Millis = train.iter().map(|i| i.timestamp).max().unwrap_or(0) + 1;
    let mut config = evaluation.config.clone();
    config.cache.enabled = false;
    let engine = Engine::with_clock(config, Arc::new(ManualClock::new(start)))?;
    let tenant = TenantName::parse("evaluation")?;
    engine.create_tenant(tenant.clone(), spec)?;
    let mut entities = entities;
    while !entities.is_empty() {
        let rest = entities.split_off(entities.len().min(10_000));
        engine.upsert(&tenant, entities)?;
        entities = rest;
    }
    let training_interactions = train.len();
    for batch in train.chunks(10_000) {
        engine.record(&tenant, batch.to_vec())?;
    }
    let wanted = |s: UserStrategy| evaluation.strategies.contains(&s);
    let needs_model = [
        UserStrategy::Collaborative,
        UserStrategy::Hybrid,
        UserStrategy::Auto,
    ]
    .into_iter()
    .any(wanted);
    let training_seconds = if needs_model && training_interactions > 0 {
        let started = Instant::now();
        engine.train_collaborative(&tenant, &evaluation.learning)?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let applies = |s: &UserStrategy| match s {
        UserStrategy::Content => spec.has_vectors(),
        UserStrategy::Collaborative => training_seconds.is_some(),
        UserStrategy::Hybrid => spec.has_vectors() && training_seconds.is_some(),
        UserStrategy::Auto | UserStrategy::Trending => true,
    };
    let strategies: Vec<UserStrategy> = evaluation
        .strategies
        .iter()
        .copied()
        .filter(applies)
        .collect();
    progress(Progress::Start(tested.len() * strategies.len()));
    let mut scores = Vec::with_capacity(strategies.len());
    for strategy in strategies {
        scores.push(score(
            &engine, &tenant, &tested, strategy, catalogue, progress,
        )?);
    }
    Ok(EvaluationReport {
        split: evaluation.split,
        users,
        tested: tested.len(),
        entities: catalogue,
        training_interactions,
        training_seconds,
        scores,
    })
}

/// What [`evaluate`] says as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// This many answers are to be computed.
    Start(usize),
    /// One more is done.
    Answered,
}

/// A tested user's number, the strategy that answered them, and the ids of the answer.
type Answered = (usize, Strategy, Vec<EntityId>);

/// Asks every tested user for `strategy`'s top 20 on all cores and scores the answers.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and ranks are far below 2^52"
)]
fn score(
    engine: &Engine,
    tenant: &TenantName,
    tested: &[Tested],
    strategy: UserStrategy,
    catalogue: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<StrategyScore> {
    let started = Instant::now();
    let options = SearchOptions {
        exact: true,
        ..SearchOptions::top(RECALL_CUTOFF)
    };
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let answers: Vec<Result<Vec<Answered>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(user) = tested.get(n) else {
                            return Ok(mine);
                        };
                        let ranking = engine
                            .prepare_user_by(tenant, &user.user, &options, strategy)?
                            .answer()?
                            .ranking;
                        let ids = ranking.results.iter().map(|s| s.id.clone()).collect();
                        mine.push((n, ranking.strategy, ids));
                        progress(Progress::Answered);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let (mut hits, mut ndcg, mut recall) = (0.0f64, 0.0f64, 0.0f64);
    let mut covered: HashSet<EntityId> = HashSet::new();
    let mut answered_by: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut cold = ColdScore::default();
    // Summed in the users' order, so that a report is the same whatever the threads did.
    let mut answers: Vec<Answered> = answers.into_iter().collect::<Result<Vec<_>>>()?.concat();
    answers.sort_by_key(|(n, _, _)| *n);
    for (n, answered, ids) in answers {
        let relevant = &tested[n].relevant;
        *answered_by.entry(answered.as_str()).or_default() += 1;
        let top = &ids[..ids.len().min(CUTOFF)];
        covered.extend(top.iter().cloned());
        let mut dcg = 0.0;
        for (rank, id) in top.iter().enumerate() {
            if relevant.contains(id) {
                dcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let ideal: f64 = (0..relevant.len().min(CUTOFF))
            .map(|rank| 1.0 / ((rank + 2) as f64).log2())
            .sum();
        if dcg > 0.0 {
            hits += 1.0;
        }
        ndcg += dcg / ideal;
        if tested[n].cold {
            cold.users += 1;
            cold.hit_rate += if dcg > 0.0 { 1.0 } else { 0.0 };
            cold.ndcg += dcg / ideal;
        }
        let found = ids.iter().filter(|id| relevant.contains(*id)).count();
        recall += found as f64 / relevant.len() as f64;
    }
    let users = tested.len().max(1) as f64;
    if cold.users > 0 {
        cold.hit_rate /= cold.users as f64;
        cold.ndcg /= cold.users as f64;
    }
    Ok(StrategyScore {
        strategy,
        hit_rate: hits / users,
        ndcg: ndcg / users,
        recall: recall / users,
        coverage: covered.len() as f64 / catalogue.max(1) as f64,
        cold,
        answered_by,
        seconds: started.elapsed().as_secs_f64(),
    })
}
