//! A naive reference model of the engine: every query is a full scan with a full sort, filters
//! are string comparisons, sums are in f64. The engine must agree with it.

#![expect(
    clippy::cast_possible_truncation,
    reason = "the model sums in f64 and rounds to f32 where the engine does"
)]

use std::collections::{BTreeMap, BTreeSet};

use reco_engine::distance::inverse_norm;
use reco_engine::{KindWeights, Metric, Millis, NewEntity};

#[derive(Debug, Clone)]
pub struct Item {
    pub vector: Vec<f32>,
    pub category: Option<String>,
    pub tags: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub user: String,
    pub entity: String,
    pub weight: f64,
    pub at: Millis,
}

/// The conditions of a query, as plain values.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub category: Option<String>,
    pub tags_any: Vec<String>,
    pub tags_all: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub metric: Metric,
    pub items: BTreeMap<String, Item>,
    pub events: Vec<Event>,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

pub fn decay(age: Millis, half_life: Millis) -> f64 {
    if age <= 0 {
        1.0
    } else {
        (-(age as f64) / half_life as f64).exp2()
    }
}

impl Model {
    pub fn new(metric: Metric) -> Self {
        Self {
            metric,
            items: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    pub fn upsert(&mut self, batch: &[NewEntity]) {
        for e in batch {
            self.items.insert(
                e.id.to_string(),
                Item {
                    vector: e.vector.clone(),
                    category: e.category.clone(),
                    tags: e.tags.iter().cloned().collect(),
                },
            );
        }
    }

    pub fn record(&mut self, weights: &KindWeights, batch: &[reco_engine::Interaction]) {
        for i in batch {
            self.events.push(Event {
                user: i.user.to_string(),
                entity: i.entity.to_string(),
                weight: f64::from(weights.of(i.kind)) * f64::from(i.weight.unwrap_or(1.0)),
                at: i.timestamp,
            });
        }
    }

    /// The score the API reports of `v` against the query `q`, computed as the engine must
    /// round it: exactly for integer data under dot and euclidean.
    pub fn score(&self, q: &[f32], v: &[f32]) -> f32 {
        match self.metric {
            Metric::Cosine => (dot(q, v) / (norm(q) * norm(v))) as f32,
            Metric::Dot => dot(q, v) as f32,
            Metric::Euclidean => {
                let l2: f64 = q
                    .iter()
                    .zip(v)
                    .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                    .sum();
                (l2 as f32).sqrt()
            }
        }
    }

    pub fn passes(&self, id: &str, item: &Item, c: &Conditions) -> bool {
        c.category
            .as_ref()
            .is_none_or(|cat| item.category.as_ref() == Some(cat))
            && (c.tags_any.is_empty() || c.tags_any.iter().any(|t| item.tags.contains(t)))
            && c.tags_all.iter().all(|t| item.tags.contains(t))
            && !c.exclude.iter().any(|e| e == id)
    }

    /// Scores every passing item, sorts best first with ties by id, applies threshold and page.
    pub fn rank(
        &self,
        conditions: &Conditions,
        threshold: Option<f32>,
        k: usize,
        offset: usize,
        score: impl Fn(&Item) -> f32,
    ) -> Vec<(String, f32)> {
        let higher = self.metric != Metric::Euclidean;
        let mut all: Vec<(String, f32)> = self
            .items
            .iter()
            .filter(|(id, item)| self.passes(id, item, conditions))
            // +0 folds -0 into +0: equal scores, ordered by id.
            .map(|(id, item)| (id.clone(), score(item) + 0.0))
            .filter(|(_, s)| threshold.is_none_or(|t| if higher { *s >= t } else { *s <= t }))
            .collect();
        all.sort_by(|a, b| {
            let by_score = if higher {
                b.1.total_cmp(&a.1)
            } else {
                a.1.total_cmp(&b.1)
            };
            by_score.then_with(|| a.0.cmp(&b.0))
        });
        all.into_iter().skip(offset).take(k).collect()
    }

    /// The weighted mean of positives minus that of negatives (unit vectors under cosine),
    /// summed in the same order and association as the engine documents.
    pub fn average(&self, positive: &[(Vec<f32>, f32)], negative: &[(Vec<f32>, f32)]) -> Vec<f32> {
        let dim = positive[0].0.len();
        let mut query = vec![0.0f64; dim];
        for (list, sign) in [(positive, 1.0), (negative, -1.0)] {
            let total: f64 = list.iter().map(|(_, w)| f64::from(*w)).sum();
            for (v, w) in list {
                let unit = if self.metric == Metric::Cosine {
                    inverse_norm(v)
                } else {
                    1.0
                };
                let scale = sign * f64::from(*w) / total * f64::from(unit);
                for (q, x) in query.iter_mut().zip(v) {
                    *q += scale * f64::from(*x);
                }
            }
        }
        query.into_iter().map(|x| x as f32).collect()
    }

    /// Each (user, entity) pair folds its events in arrival order: the documented semantics of a
    /// decayed weight (a later event decays the sum up to its own time, an earlier one is decayed
    /// to the sum's time). Each sum then decays to the user's newest event, and keeps at least
    /// `floor` of the weights given. Entities sum in id order.
    pub fn preference(&self, user: &str, half_life: Millis, floor: f64) -> Option<Vec<f32>> {
        let mut per_entity: BTreeMap<&str, (f64, Millis, f64)> = BTreeMap::new();
        let mut newest = Millis::MIN;
        for e in self.events.iter().filter(|e| e.user == user) {
            let weight = e.weight;
            newest = newest.max(e.at);
            per_entity
                .entry(&e.entity)
                .and_modify(|(value, at, mass)| {
                    if e.at >= *at {
                        *value = *value * decay(e.at - *at, half_life) + weight;
                        *at = e.at;
                    } else {
                        *value += weight * decay(*at - e.at, half_life);
                    }
                    *mass += weight;
                })
                .or_insert((weight, e.at, weight));
        }
        let dim = self.items.values().next()?.vector.len();
        let mut sum = vec![0.0f64; dim];
        let mut positive = 0.0;
        for (entity, (value, at, mass)) in per_entity {
            let Some(item) = self.items.get(entity) else {
                continue;
            };
            let decayed = value * decay(newest - at, half_life);
            let w = if decayed.abs() < (floor * mass).abs() {
                floor * mass
            } else {
                decayed
            };
            if w > 0.0 {
                positive += w;
            }
            let unit = if self.metric == Metric::Cosine {
                f64::from(inverse_norm(&item.vector))
            } else {
                1.0
            };
            for (s, x) in sum.iter_mut().zip(&item.vector) {
                *s += w * unit * f64::from(*x);
            }
        }
        if positive <= 0.0 {
            return None;
        }
        let divisor = if self.metric == Metric::Euclidean {
            positive
        } else {
            1.0
        };
        let v: Vec<f32> = sum.iter().map(|s| (s / divisor) as f32).collect();
        (!(self.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0))).then_some(v)
    }

    pub fn interacted(&self, user: &str) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .events
            .iter()
            .filter(|e| e.user == user)
            .map(|e| e.entity.as_str())
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }

    pub fn trending(
        &self,
        now: Millis,
        window: Millis,
        half_life: Millis,
        conditions: &Conditions,
        k: usize,
        offset: usize,
    ) -> Vec<(String, f32)> {
        let mut scores: BTreeMap<&str, f64> = BTreeMap::new();
        for e in self.events.iter().filter(|e| e.at >= now - window) {
            *scores.entry(&e.entity).or_default() += e.weight * decay(now - e.at, half_life);
        }
        let mut all: Vec<(String, f32)> = scores
            .into_iter()
            .filter(|(id, s)| {
                *s > 0.0
                    && self
                        .items
                        .get(*id)
                        .is_some_and(|item| self.passes(id, item, conditions))
            })
            .map(|(id, s)| (id.to_owned(), s as f32))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.into_iter().skip(offset).take(k).collect()
    }
}

/// Checks an engine ranking against a reference one. Scores agree within a relative `tolerance`
/// (0: exactly), and so do ids, except that within a run of scores tied up to the tolerance any
/// order of those ids is accepted.
pub fn assert_agrees(
    engine: &[reco_engine::Scored],
    reference: &[(String, f32)],
    all_scores: &BTreeMap<String, f32>,
    tolerance: f32,
) {
    let got: Vec<(&str, f32)> = engine.iter().map(|s| (s.id.as_str(), s.score)).collect();
    let context = || format!("engine {got:?}\nreference {reference:?}");
    assert_eq!(
        engine.len(),
        reference.len(),
        "lengths differ\n{}",
        context()
    );
    let close = |a: f32, b: f32| (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0);
    let mut seen = BTreeSet::new();
    for (i, (s, (ref_id, ref_score))) in engine.iter().zip(reference).enumerate() {
        assert!(
            seen.insert(s.id.as_str()),
            "{} repeats\n{}",
            s.id,
            context()
        );
        assert!(
            close(s.score, *ref_score),
            "score {i} differs\n{}",
            context()
        );
        if tolerance == 0.0 {
            assert_eq!(s.id.as_str(), ref_id, "id {i} differs\n{}", context());
        } else {
            let own = all_scores
                .get(s.id.as_str())
                .unwrap_or_else(|| panic!("{} is not a candidate\n{}", s.id, context()));
            assert!(
                close(*own, *ref_score),
                "{} at {i} is out of order\n{}",
                s.id,
                context()
            );
        }
    }
}
