//! The JSON bodies of ranked answers, written once per cached answer on each HTTP worker.
//!
//! A cached answer is one `Arc<Ranking>` for as long as the engine's cache keeps it, and every
//! hit on it would write the same JSON again: at 20k entities under Zipf-like traffic that was
//! about 8% of the server's samples, most of it waiting for the ids' text to come from memory
//! (they lie wherever each entity's id was allocated). Each worker keeps the bodies it wrote,
//! keyed by the ranking's address and the answer's form, beside a `Weak` reference to that
//! ranking. The `Weak` keeps the allocation (not the ranking) alive, so no other ranking can be
//! at that address while the entry exists: a matching address is the same, unchanged ranking.
//! Bodies are kept only when the cache is on (uncached rankings are new every time), within
//! [`KEPT_BYTES`] per worker, each counted with [`ENTRY_BYTES`] more for its entry and the
//! freed ranking's allocation its `Weak` holds; when that is passed the worker forgets them
//! all and starts again, which costs each popular answer one more write. At 20k entities under
//! Zipf-like traffic the hottest 8,000 or so answers fit, about nine questions in ten.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use actix_web::web::Bytes;
use reco_engine::{Answer, Ranking};

use crate::api::{RecommendOut, Results, UserResults};

/// The memory one worker's kept bodies take at most, in bytes.
pub const KEPT_BYTES: usize = 4 << 20;

/// What an entry takes beside its body: the map's slot (the key, the `Weak`, the `Bytes`),
/// the body's allocation header, and the ranking's allocation once the cache dropped it.
pub const ENTRY_BYTES: usize = 160;

/// The JSON forms of a ranked answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// `{"results": [...]}`: similar and trending.
    Results,
    /// `{"strategy", "results"}`: a user's recommendations.
    User,
    /// `{"results", "missing"}`: recommendations by example.
    Recommend,
}

fn write(ranking: &Ranking, form: Form) -> Bytes {
    let written = match form {
        Form::Results => serde_json::to_vec(&Results::from_ranking(ranking)),
        Form::User => serde_json::to_vec(&UserResults::from_ranking(ranking)),
        Form::Recommend => serde_json::to_vec(&RecommendOut::from_ranking(ranking)),
    };
    Bytes::from(written.expect("an answer serializes"))
}

#[derive(Default)]
struct Kept {
    bodies: HashMap<(usize, Form), (Weak<Ranking>, Bytes), foldhash::fast::RandomState>,
    bytes: usize,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// The JSON body of `answer` in `form`: written now, or (when `keep`, as it is when the cache
/// is on) taken from what this worker wrote for the same ranking before.
pub fn body(answer: &Answer, form: Form, keep: bool) -> Bytes {
    let ranking = &answer.ranking;
    if !keep {
        return write(ranking, form);
    }
    let key = (Arc::as_ptr(ranking) as usize, form);
    KEPT.with_borrow_mut(|kept| {
        if let Some((_, body)) = kept.bodies.get(&key) {
            return body.clone();
        }
        let body = write(ranking, form);
        let size = body.len() + ENTRY_BYTES;
        if kept.bytes + size > KEPT_BYTES {
            kept.bodies.clear();
            kept.bytes = 0;
        }
        kept.bytes += size;
        kept.bodies
            .insert(key, (Arc::downgrade(ranking), body.clone()));
        body
    })
}

#[cfg(test)]
mod tests {
    use reco_engine::{CacheStatus, EntityId, Scored, Strategy};

    use super::*;

    fn answer(ids: &[&str]) -> Answer {
        Answer {
            ranking: Arc::new(Ranking {
                results: ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| Scored {
                        id: EntityId::parse(id).unwrap(),
                        score: 1.0 / (i as f32 + 1.0),
                    })
                    .collect(),
                missing: vec![EntityId::parse("gone").unwrap()],
                strategy: Strategy::Hybrid,
            }),
            cache: CacheStatus::Hit,
        }
    }

    #[test]
    fn a_kept_body_is_the_one_written_now() {
        let a = answer(&["a", "b"]);
        for form in [Form::Results, Form::User, Form::Recommend] {
            let fresh = body(&a, form, false);
            assert_eq!(body(&a, form, true), fresh);
            assert_eq!(body(&a, form, true), fresh, "taken from what was kept");
        }
        assert_eq!(
            body(&a, Form::Results, true),
            r#"{"results":[{"id":"a","score":1.0},{"id":"b","score":0.5}]}"#
        );
        assert_eq!(
            body(&a, Form::User, true),
            r#"{"strategy":"hybrid","results":[{"id":"a","score":1.0},{"id":"b","score":0.5}]}"#
        );
        assert_eq!(
            body(&a, Form::Recommend, true),
            r#"{"results":[{"id":"a","score":1.0},{"id":"b","score":0.5}],"missing":["gone"]}"#
        );
    }

    /// Rankings made and dropped one after another are often allocated at the same address;
    /// each is still answered with its own body.
    #[test]
    fn a_new_ranking_at_a_freed_address_gets_its_own_body() {
        for n in 0..1_000 {
            let id = format!("e{n}");
            let a = answer(&[&id]);
            let expected = format!(r#"{{"results":[{{"id":"{id}","score":1.0}}]}}"#);
            assert_eq!(body(&a, Form::Results, true), expected);
        }
    }

    #[test]
    fn the_kept_bodies_stay_within_their_bound() {
        let long: Vec<String> = (0..2_000).map(|n| format!("entity-{n:08}")).collect();
        let ids: Vec<&str> = long.iter().map(String::as_str).collect();
        let answers: Vec<Answer> = (0..150).map(|_| answer(&ids)).collect();
        for a in &answers {
            body(a, Form::Results, true);
        }
        KEPT.with_borrow(|kept| {
            assert!(kept.bytes <= KEPT_BYTES);
            assert!(kept.bodies.len() < answers.len());
            assert_eq!(
                kept.bytes,
                kept.bodies
                    .values()
                    .map(|(_, b)| b.len() + ENTRY_BYTES)
                    .sum::<usize>()
            );
        });
    }
}
