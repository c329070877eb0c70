//! The shared pass: exact similar questions about one snapshot answered together, one matrix
//! product per chunk of rows, then rescored exactly as a lone question would be.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::Prepared;
use super::plans::{page, pool_size};
use super::prepared::Question;
use crate::distance::{Probe, goodness_floor};
use crate::error::{EngineError, Result};
use crate::query::{Answer, Ranking, Strategy};
use crate::topk::TopK;

/// Extra candidates a shared scan keeps per question beyond its page, so that rounding in the
/// matrix product cannot push a true result out before the exact rescoring.
const SHARED_MARGIN: usize = 8;
/// Tenants smaller than this are scanned one question at a time: a shared pass saves little.
const SHARED_MIN_ROWS: usize = 1_000;

impl Prepared {
    /// Whether [`Prepared::answer_all`] answers this question in a pass shared with others: an
    /// exact search (asked for, or configured) for the neighbours of an entity, with no
    /// category or tag filter, in a tenant of at least 1,000 entities. Searches a graph
    /// answers gain nothing from sharing, and neither do filtered ones, which read few rows.
    pub fn batchable(&self) -> bool {
        let Question::Similar { options, .. } = &self.question else {
            return false;
        };
        let filter = &options.filter;
        (options.exact || self.config.search.exact)
            && filter.category.is_none()
            && filter.tags_any.is_empty()
            && filter.tags_all.is_empty()
            && self.index.len() >= SHARED_MIN_ROWS
    }

    /// Answers many questions, in order. Cached answers are taken from the cache. Batchable
    /// questions (see [`Prepared::batchable`]) that read the same snapshot are answered in one
    /// pass over its rows: each row is read once for all of them, through a matrix product.
    /// Their best candidates are then rescored exactly, so the answers and scores are the ones
    /// [`Prepared::answer`] gives. Every other question is answered on its own.
    pub fn answer_all(batch: Vec<Prepared>) -> Vec<Result<Answer>> {
        let mut answers: Vec<Option<Result<Answer>>> =
            batch.iter().map(|p| p.cached().map(Ok)).collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, prepared) in batch.iter().enumerate() {
            if answers[i].is_some() || !prepared.batchable() {
                continue;
            }
            match groups
                .iter_mut()
                .find(|g| Arc::ptr_eq(&batch[g[0]].index, &prepared.index))
            {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        for group in groups.iter().filter(|g| g.len() > 1) {
            let members: Vec<&Prepared> = group.iter().map(|&i| &batch[i]).collect();
            for (&i, ranking) in group.iter().zip(similar_together(&members)) {
                answers[i] = Some(ranking.map(|r| batch[i].store(r)));
            }
        }
        batch
            .into_iter()
            .zip(answers)
            .map(|(prepared, answer)| answer.unwrap_or_else(|| prepared.answer()))
            .collect()
    }
}

/// Batchable similar questions about one snapshot, answered in one pass over its rows.
fn similar_together(members: &[&Prepared]) -> Vec<Result<Ranking>> {
    let index = &members[0].index;
    let metric = index.spec().metric;
    let mut rankings: Vec<Option<Result<Ranking>>> = members.iter().map(|_| None).collect();
    let mut live = Vec::with_capacity(members.len());
    for (m, prepared) in members.iter().enumerate() {
        let Question::Similar { id, slot, options } = &prepared.question else {
            rankings[m] = Some(prepared.rank());
            continue;
        };
        match slot.or_else(|| index.slot_of(id.as_str())) {
            Some(slot) => live.push((m, slot, options)),
            None => rankings[m] = Some(Err(EngineError::EntityNotFound(id.to_string()))),
        }
    }
    let probes: Vec<Probe<'_>> = live
        .iter()
        .map(|&(_, slot, _)| {
            Probe::new(
                index.row(slot).expect("a mapped slot is live").vector,
                metric,
            )
        })
        .collect();
    let excluded: Vec<RoaringBitmap> = live
        .iter()
        .map(|&(_, slot, options)| {
            let mut own = RoaringBitmap::new();
            own.insert(slot);
            index.excluding(&options.filter.exclude, own)
        })
        .collect();
    let pools: Vec<usize> = live
        .iter()
        .map(|(_, _, options)| pool_size(options))
        .collect();
    let mut tops: Vec<TopK<'_>> = pools
        .iter()
        .map(|&p| TopK::new(p + SHARED_MARGIN))
        .collect();
    index.scan_many(&probes, &excluded, &mut tops);
    for ((&(m, _, options), probe), (rough, &pool)) in
        live.iter().zip(&probes).zip(tops.into_iter().zip(&pools))
    {
        let floor = options
            .score_threshold
            .map_or(f32::NEG_INFINITY, |t| goodness_floor(metric, t));
        let mut top = TopK::new(pool);
        for candidate in rough.into_sorted() {
            let row = index.row(candidate.slot).expect("scanned slots are live");
            let g = probe.goodness(row.vector, row.inverse_norm);
            if g >= floor {
                top.offer(g, candidate.slot, || row.record.id.as_str());
            }
        }
        rankings[m] = Some(Ok(Ranking {
            results: page(index, options, top),
            missing: Vec::new(),
            strategy: Strategy::Similar,
        }));
    }
    rankings
        .into_iter()
        .map(|r| r.expect("every member is answered"))
        .collect()
}
