//! Recommend by example: entities like the positive examples and unlike the negative ones,
//! by the average vector or by each candidate's best score.

use roaring::RoaringBitmap;

use super::prepared::Question;
use super::{Engine, Prepared, plans, prepared};
use crate::distance::{Probe, inverse_norm, narrow};
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::model::{Embedding, EntityId, Metric, TenantName, TenantSpec};
use crate::query::{
    Example, ExampleStrategy, ExampleTarget, Ranking, RecommendRequest, Space, Strategy,
};

pub(super) fn prepare(
    engine: &Engine,
    name: &TenantName,
    request: &RecommendRequest,
) -> Result<Prepared> {
    request.options.validate()?;
    if request.options.space == Space::Collaborative {
        return Err(EngineError::InvalidArgument(
            "recommendations by example search the content vectors; the collaborative space \
             answers similar and user recommendations"
                .into(),
        ));
    }
    let question = Question::Recommend(request.clone());
    let prepared = prepared::bind(engine, name, false, Space::Content, question)?;
    check_examples(request, prepared.tenant.spec)?;
    Ok(prepared)
}

/// Checks what can be checked of examples without the data: counts, weights and raw vectors.
fn check_examples(request: &RecommendRequest, spec: TenantSpec) -> Result<()> {
    match request.strategy {
        ExampleStrategy::AverageVector if request.positive.is_empty() => {
            return Err(EngineError::InvalidArgument(
                "average_vector needs at least one positive example".into(),
            ));
        }
        ExampleStrategy::BestScore
            if request.positive.is_empty() && request.negative.is_empty() =>
        {
            return Err(EngineError::InvalidArgument(
                "best_score needs at least one positive or negative example".into(),
            ));
        }
        ExampleStrategy::AverageVector | ExampleStrategy::BestScore => {}
    }
    for (list, examples) in [
        ("positive", &request.positive),
        ("negative", &request.negative),
    ] {
        for (index, example) in examples.iter().enumerate() {
            if !(example.weight.is_finite() && example.weight > 0.0) {
                return Err(EngineError::InvalidArgument(format!(
                    "{list} example {index}: a weight is a finite number above 0, not {}",
                    example.weight
                )));
            }
            if let ExampleTarget::Vector(v) = &example.target {
                Embedding::new(v.clone(), spec).map_err(|e| {
                    EngineError::InvalidVector(format!("{list} example {index}: {e}"))
                })?;
            }
        }
    }
    Ok(())
}

/// An example found in the snapshot or given raw: its vector, inverse norm and weight.
struct Resolved {
    vector: Vec<f32>,
    inverse_norm: f32,
    weight: f32,
}

impl Resolved {
    fn probe(&self, metric: Metric) -> Probe<'_> {
        Probe {
            vector: &self.vector,
            metric,
            inverse_norm: self.inverse_norm,
        }
    }
}

/// Looks up examples by id, noting the slots to exclude and the ids that do not exist.
fn resolve(
    index: &EntityIndex,
    examples: &[Example],
    excluded: &mut RoaringBitmap,
    missing: &mut Vec<EntityId>,
) -> Vec<Resolved> {
    let mut out = Vec::with_capacity(examples.len());
    for example in examples {
        let (vector, inverse_norm) = match &example.target {
            ExampleTarget::Vector(v) => (v.clone(), inverse_norm(v)),
            ExampleTarget::Id(id) => {
                let found = index
                    .slot_of(id.as_str())
                    .and_then(|s| Some((s, index.row(s)?)));
                let Some((slot, row)) = found else {
                    if !missing.contains(id) {
                        missing.push(id.clone());
                    }
                    continue;
                };
                excluded.insert(slot);
                (row.vector.to_vec(), row.inverse_norm)
            }
        };
        out.push(Resolved {
            vector,
            inverse_norm,
            weight: example.weight,
        });
    }
    out
}

pub(super) fn rank(index: &EntityIndex, request: &RecommendRequest) -> Result<Ranking> {
    let metric = index.spec().metric;
    let mut missing = Vec::new();
    let mut excluded = RoaringBitmap::new();
    let positive = resolve(index, &request.positive, &mut excluded, &mut missing);
    let negative = resolve(index, &request.negative, &mut excluded, &mut missing);
    let none_left = |what: &str| {
        let ids: Vec<&str> = missing.iter().map(EntityId::as_str).collect();
        EngineError::NoUsableExamples(format!("{what}; missing: {}", ids.join(", ")))
    };
    let options = &request.options;
    let results = match request.strategy {
        ExampleStrategy::AverageVector => {
            if positive.is_empty() {
                return Err(none_left("no positive example exists"));
            }
            let query = average(&positive, &negative, index.spec().dimension, metric);
            if metric == Metric::Cosine && query.iter().all(|x| *x == 0.0) {
                return Err(EngineError::InvalidArgument(
                    "the positive and negative examples cancel out, leaving no direction to search"
                        .into(),
                ));
            }
            let probe = Probe::new(&query, metric);
            plans::rank(index, options, excluded, Some(&query), |v, n| {
                probe.goodness(v, n)
            })
        }
        ExampleStrategy::BestScore => {
            if positive.is_empty() && negative.is_empty() {
                return Err(none_left("no example exists"));
            }
            let best = |list: &[Resolved], v: &[f32], n: f32| {
                (!list.is_empty()).then(|| {
                    list.iter()
                        .map(|r| r.probe(metric).goodness(v, n))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
            };
            plans::rank(index, options, excluded, None, |v, n| {
                best_score(best(&positive, v, n), best(&negative, v, n))
            })
        }
    };
    let strategy = match request.strategy {
        ExampleStrategy::AverageVector => Strategy::AverageVector,
        ExampleStrategy::BestScore => Strategy::BestScore,
    };
    Ok(Ranking {
        results,
        missing,
        strategy,
    })
}

/// Combines a candidate's goodness against its best positive and best negative example.
/// With both, a candidate closer to a negative than to any positive is pushed down by the gap;
/// with negatives only, the farther from every negative the better.
pub(crate) fn best_score(positive: Option<f32>, negative: Option<f32>) -> f32 {
    match (positive, negative) {
        (Some(p), Some(n)) if n > p => p - (n - p),
        (Some(p), Some(_) | None) => p,
        (None, Some(n)) => -n,
        (None, None) => f32::NEG_INFINITY,
    }
}

/// The weighted mean of positives minus the weighted mean of negatives. Under cosine each
/// example counts by direction: it is scaled to unit length first.
fn average(positive: &[Resolved], negative: &[Resolved], dim: usize, metric: Metric) -> Vec<f32> {
    let mut query = vec![0.0f64; dim];
    for (list, sign) in [(positive, 1.0), (negative, -1.0)] {
        let total: f64 = list.iter().map(|r| f64::from(r.weight)).sum();
        for r in list {
            let unit = if metric == Metric::Cosine {
                r.inverse_norm
            } else {
                1.0
            };
            let scale = sign * f64::from(r.weight) / total * f64::from(unit);
            for (q, x) in query.iter_mut().zip(&r.vector) {
                *q += scale * f64::from(*x);
            }
        }
    }
    query.into_iter().map(narrow).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_score_pushes_down_by_the_nearer_negative() {
        assert_eq!(best_score(Some(0.9), None), 0.9);
        assert_eq!(best_score(Some(0.9), Some(0.5)), 0.9);
        assert!((best_score(Some(0.5), Some(0.9)) - 0.1).abs() < 1e-6);
        assert_eq!(best_score(None, Some(0.9)), -0.9);
    }
}
