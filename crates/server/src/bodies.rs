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
//! freed ranking's allocation its `Weak` holds. They are kept in two generations: new bodies
//! go to the young one, and a body found in the old one moves to the young one; when the young
//! one holds half the bound it becomes the old one and the old one is forgotten. So the bodies
//! asked for again stay, and the others go within two turns. The bound is small: with 4 MiB a
//! worker, the server under Zipf-like traffic at 20k entities grew 18 MB more than without
//! kept bodies (the allocator keeps more than what is live), with 1 MiB 7 MB.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use actix_web::web::Bytes;
use reco_engine::{Answer, Ranking};

use crate::api::{RecommendOut, Results, UserResults};

/// The memory one worker's kept bodies take at most, in bytes.
pub const KEPT_BYTES: usize = 1 << 20;

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

fn write(ranking: &Ranking, form: Form) -> Vec<u8> {
    let written = match form {
        Form::Results => serde_json::to_vec(&Results::from_ranking(ranking)),
        Form::User => serde_json::to_vec(&UserResults::from_ranking(ranking)),
        Form::Recommend => serde_json::to_vec(&RecommendOut::from_ranking(ranking)),
    };
    written.expect("an answer serializes")
}

type Bodies = HashMap<(usize, Form), (Weak<Ranking>, Bytes), foldhash::fast::RandomState>;

#[derive(Default)]
struct Kept {
    young: Bodies,
    young_bytes: usize,
    old: Bodies,
    old_bytes: usize,
}

fn size(body: &Bytes) -> usize {
    body.len() + ENTRY_BYTES
}

impl Kept {
    fn keep(&mut self, key: (usize, Form), entry: (Weak<Ranking>, Bytes)) {
        let size = size(&entry.1);
        if self.young_bytes + size > KEPT_BYTES / 2 {
            self.old = std::mem::take(&mut self.young);
            self.old_bytes = self.young_bytes;
            self.young_bytes = 0;
        }
        self.young_bytes += size;
        self.young.insert(key, entry);
    }
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// The JSON body of `answer` in `form`: written now, or (when `keep`, as it is when the cache
/// is on) taken from what this worker wrote for the same ranking before.
pub fn body(answer: &Answer, form: Form, keep: bool) -> Bytes {
    let ranking = &answer.ranking;
    if !keep {
        return Bytes::from(write(ranking, form));
    }
    let key = (Arc::as_ptr(ranking) as usize, form);
    KEPT.with_borrow_mut(|kept| {
        if let Some((_, body)) = kept.young.get(&key) {
            return body.clone();
        }
        if let Some(entry) = kept.old.remove(&key) {
            kept.old_bytes -= size(&entry.1);
            let body = entry.1.clone();
            kept.keep(key, entry);
            return body;
        }
        // Kept at its length: `Bytes` keeps all of a vector's capacity, which serializing
        // leaves up to twice the length.
        let body = Bytes::from(write(ranking, form).into_boxed_slice());
        kept.keep(key, (Arc::downgrade(ranking), body.clone()));
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

    /// A body asked for between turns stays kept; the others go.
    #[test]
    fn bodies_asked_for_again_stay() {
        let hot = answer(&["hot"]);
        body(&hot, Form::Results, true);
        let long: Vec<String> = (0..2_000).map(|n| format!("entity-{n:08}")).collect();
        let ids: Vec<&str> = long.iter().map(String::as_str).collect();
        let cold: Vec<Answer> = (0..150).map(|_| answer(&ids)).collect();
        for a in &cold {
            body(a, Form::Results, true);
            body(&hot, Form::Results, true);
        }
        let hot_key = (Arc::as_ptr(&hot.ranking) as usize, Form::Results);
        let first_key = (Arc::as_ptr(&cold[0].ranking) as usize, Form::Results);
        KEPT.with_borrow(|kept| {
            assert!(kept.young.contains_key(&hot_key) || kept.old.contains_key(&hot_key));
            assert!(!kept.young.contains_key(&first_key) && !kept.old.contains_key(&first_key));
        });
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
            let sum = |bodies: &Bodies| bodies.values().map(|(_, b)| size(b)).sum::<usize>();
            assert_eq!(kept.young_bytes, sum(&kept.young));
            assert_eq!(kept.old_bytes, sum(&kept.old));
            assert!(kept.young_bytes + kept.old_bytes <= KEPT_BYTES);
            assert!(kept.young.len() + kept.old.len() < answers.len());
        });
    }
}
