//! Offline evaluation on a log with a known structure: two groups of users, each liking its
//! own half of the catalogue, in an order that puts each user's last like last in time.

use reco_engine::evaluate::{Evaluation, Progress, Split, evaluate};
use reco_engine::{
    EntityId, Interaction, InteractionKind, LearnParams, Metric, NewEntity, TenantSpec, UserId,
    UserStrategy,
};

use crate::support::START;

const ITEMS: usize = 40;
const USERS: usize = 60;

fn entity(n: usize) -> NewEntity {
    NewEntity {
        id: EntityId::parse(&format!("e{n}")).unwrap(),
        // The content vectors know the groups too, more weakly: a direction per half, blurred.
        vector: if n < ITEMS / 2 {
            vec![1.0, 0.3 + (n % 3) as f32 * 0.2]
        } else {
            vec![0.3 + (n % 3) as f32 * 0.2, 1.0]
        },
        category: None,
        tags: Vec::new(),
        attributes: None,
    }
}

/// Users of group `g` like about three in four of their half, a minute apart in an order of
/// their own (so each user's last like, their test item, is another entity).
fn log() -> Vec<Interaction> {
    let mut out = Vec::new();
    for u in 0..USERS {
        let base = if u < USERS / 2 { 0 } else { ITEMS / 2 };
        let start = START + i64::try_from(u).unwrap() * 3_600_000;
        for n in base..base + ITEMS / 2 {
            if (u * 7 + n * 3) % 4 == 0 {
                continue;
            }
            let place = i64::try_from((u * 13 + n * 7) % (ITEMS / 2)).unwrap();
            let at = start + place * 60_000;
            out.push(Interaction {
                user: UserId::parse(&format!("u{u}")).unwrap(),
                entity: EntityId::parse(&format!("e{n}")).unwrap(),
                kind: InteractionKind::Like,
                weight: None,
                timestamp: at,
            });
        }
    }
    out
}

fn setup() -> Evaluation {
    Evaluation {
        learning: LearnParams {
            factors: 8,
            iterations: 10,
            threads: 2,
            ..LearnParams::default()
        },
        ..Evaluation::new(Split::LeaveLastOut)
    }
}

#[test]
fn leave_last_out_scores_every_strategy_and_the_model_learns_the_groups() {
    let spec = TenantSpec::new(2, Metric::Cosine).unwrap();
    let entities: Vec<NewEntity> = (0..ITEMS).map(entity).collect();
    let started = std::sync::atomic::AtomicUsize::new(0);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let report = evaluate(spec, entities, log(), &setup(), &|p| match p {
        Progress::Start(n) => started.store(n, std::sync::atomic::Ordering::Relaxed),
        Progress::Answered => {
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .unwrap();
    assert_eq!(
        (report.users, report.tested, report.entities),
        (USERS, USERS, ITEMS)
    );
    assert_eq!(report.training_interactions, log().len() - USERS);
    assert!(report.training_seconds.is_some());
    let names: Vec<UserStrategy> = report.scores.iter().map(|s| s.strategy).collect();
    assert_eq!(names, setup().strategies, "every strategy applies here");
    assert_eq!(started.into_inner(), USERS * names.len());
    assert_eq!(answered.into_inner(), USERS * names.len());
    let by = |s: UserStrategy| report.scores.iter().find(|x| x.strategy == s).unwrap();
    for score in &report.scores {
        for measure in [score.hit_rate, score.ndcg, score.recall, score.coverage] {
            assert!((0.0..=1.0).contains(&measure), "{score:?}");
        }
        assert_eq!(score.answered_by.values().sum::<usize>(), USERS);
    }
    // Each user has a handful of unseen entities of their group, the test item among them: a
    // model of the groups finds it in the top 10, trending (everyone's recent likes) far less.
    let collaborative = by(UserStrategy::Collaborative);
    assert!(collaborative.hit_rate > 0.9, "{collaborative:?}");
    assert!(collaborative.hit_rate > by(UserStrategy::Trending).hit_rate);
    assert_eq!(collaborative.answered_by.get("collaborative"), Some(&USERS));
    assert_eq!(
        by(UserStrategy::Hybrid).answered_by.get("hybrid"),
        Some(&USERS)
    );
    // HR@10 and recall@20 agree with one test item each: recall counts the top 20.
    assert!(collaborative.recall >= collaborative.hit_rate);
}

#[test]
fn a_random_split_is_the_same_for_a_seed_and_strategies_that_cannot_apply_are_left_out() {
    let run = |seed: u64| {
        let evaluation = Evaluation {
            strategies: vec![UserStrategy::Content, UserStrategy::Collaborative],
            ..Evaluation {
                split: Split::Random { seed },
                ..setup()
            }
        };
        let entities: Vec<NewEntity> = (0..ITEMS)
            .map(|n| NewEntity {
                vector: Vec::new(),
                ..entity(n)
            })
            .collect();
        evaluate(
            TenantSpec::WITHOUT_VECTORS,
            entities,
            log(),
            &evaluation,
            &|_| {},
        )
        .unwrap()
    };
    let one = run(7);
    assert_eq!(one, {
        let mut again = run(7);
        for (a, b) in again.scores.iter_mut().zip(&one.scores) {
            a.seconds = b.seconds;
        }
        again.training_seconds = one.training_seconds;
        again
    });
    assert_eq!(
        one.scores.iter().map(|s| s.strategy).collect::<Vec<_>>(),
        [UserStrategy::Collaborative],
        "no content vectors: content does not apply"
    );
    // About a tenth of each user's likes are tested; most users have some.
    assert!(one.tested > USERS / 2, "{one:?}");
    assert!(one.training_interactions < log().len() * 9 / 10);
}

/// Entities too new to have interactions: no model learns them, so `collaborative` never finds
/// them; `hybrid` places them by the factors their content maps to, and here the content knows
/// the groups, so it finds them, and `auto` blends as `hybrid` does.
#[test]
fn new_entities_come_from_their_content_in_hybrid_only() {
    let spec = TenantSpec::new(2, Metric::Cosine).unwrap();
    let entities: Vec<NewEntity> = (0..ITEMS).map(entity).collect();
    let evaluation = Evaluation {
        new_entities: 0.3,
        new_seed: 3,
        ..setup()
    };
    let report = evaluate(spec, entities, log(), &evaluation, &|_| {}).unwrap();
    let by = |s: UserStrategy| report.scores.iter().find(|x| x.strategy == s).unwrap();
    let cold_users = by(UserStrategy::Collaborative).cold.users;
    assert!(cold_users > 5, "{report:?}");
    assert_eq!(by(UserStrategy::Collaborative).cold.hit_rate, 0.0);
    let hybrid = by(UserStrategy::Hybrid);
    assert!(hybrid.cold.hit_rate > 0.3, "{hybrid:?}");
    assert!(hybrid.hit_rate > by(UserStrategy::Collaborative).hit_rate);
    assert_eq!(
        by(UserStrategy::Auto).answered_by.get("hybrid"),
        Some(&USERS)
    );
}
