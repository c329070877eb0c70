//! Maximal marginal relevance: re-rank a pool of candidates so that each pick is relevant and
//! unlike the picks before it.
//!
//! With diversity `d`, a candidate's value is `(1 - d) * relevance - d * max_similarity`, where
//! relevance is its goodness scaled to [0, 1] over the pool and `max_similarity` is its greatest
//! cosine similarity to an earlier pick. `d = 0` keeps the relevance order.

use crate::distance::dot;
use crate::index::EntityIndex;
use crate::topk::Candidate;

/// How many candidates MMR chooses from, for `want` results.
pub(crate) fn pool_size(want: usize) -> usize {
    (want * 4).max(want + 50).min(want + 1000)
}

/// Picks up to `want` of `pool` (best first) in MMR order.
pub(crate) fn rerank<'a>(
    index: &EntityIndex,
    pool: Vec<Candidate<'a>>,
    want: usize,
    diversity: f32,
) -> Vec<Candidate<'a>> {
    if diversity <= 0.0 || pool.len() <= 1 {
        return pool.into_iter().take(want).collect();
    }
    let rows: Vec<_> = pool
        .iter()
        .map(|c| {
            index
                .row(c.slot)
                .expect("pool slots are live in this snapshot")
        })
        .collect();
    let (lo, hi) = pool
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(c.goodness), hi.max(c.goodness))
        });
    let relevance = |g: f32| if hi > lo { (g - lo) / (hi - lo) } else { 1.0 };
    // The similarity of each candidate to its closest pick so far.
    let mut closest = vec![f32::NEG_INFINITY; pool.len()];
    let mut taken = vec![false; pool.len()];
    let mut picks = Vec::with_capacity(want.min(pool.len()));
    while picks.len() < want {
        // Each pick reads the whole pool: a page of thousands is seconds of work.
        if crate::interrupt::stopped() {
            break;
        }
        let mut best: Option<(usize, f32)> = None;
        for (i, c) in pool.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let penalty = if picks.is_empty() { 0.0 } else { closest[i] };
            let value = (1.0 - diversity) * relevance(c.goodness) - diversity * penalty;
            // Strictly greater: on equal value the earlier (better ranked) candidate wins.
            if best.is_none_or(|(_, v)| value > v) {
                best = Some((i, value));
            }
        }
        let Some((pick, _)) = best else { break };
        taken[pick] = true;
        picks.push(pool[pick]);
        let p = rows[pick];
        for (i, row) in rows.iter().enumerate() {
            if !taken[i] {
                let sim = dot(p.vector, row.vector) * p.inverse_norm * row.inverse_norm;
                closest[i] = closest[i].max(sim);
            }
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checked::CheckedEntities;
    use crate::model::{EntityId, Metric, NewEntity, TenantSpec};

    #[test]
    fn near_duplicates_are_pushed_down() {
        let spec = TenantSpec::new(2, Metric::Cosine).unwrap();
        let mut index = EntityIndex::new(
            spec,
            crate::stamp::Generation(1),
            crate::config::SearchConfig::default(),
        );
        let entity = |id: &str, v: [f32; 2]| NewEntity {
            id: EntityId::parse(id).unwrap(),
            vector: v.to_vec(),
            category: None,
            tags: Vec::new(),
            attributes: None,
        };
        index.upsert(
            CheckedEntities::new(
                spec,
                vec![
                    entity("a", [1.0, 0.0]),
                    entity("a2", [1.0, 0.01]),
                    entity("b", [0.6, 0.8]),
                ],
            )
            .unwrap(),
        );
        let ids = ["a", "a2", "b"];
        let pool: Vec<Candidate<'_>> = [1.0, 0.99, 0.6]
            .into_iter()
            .zip(ids)
            .map(|(goodness, id)| Candidate {
                goodness,
                slot: index.slot_of(id).unwrap(),
                id,
            })
            .collect();
        let order = |d: f32| -> Vec<&str> {
            rerank(&index, pool.clone(), 3, d)
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(order(0.0), ["a", "a2", "b"]);
        assert_eq!(order(0.9), ["a", "b", "a2"]);
        assert_eq!(rerank(&index, pool.clone(), 2, 0.9).len(), 2);
        assert_eq!(pool_size(10), 60);
        assert_eq!(pool_size(1000), 2000);
    }
}
