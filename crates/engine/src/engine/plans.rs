//! The chain of search plans every vector question goes through: the graph, the int8 scan
//! rescored in f32, and the exact scan, the first that fills the page answering; then the page
//! itself (diversity, offset, scores).

use roaring::RoaringBitmap;

use crate::distance::{goodness_floor, score_of};
use crate::index::{EntityIndex, Sample};
use crate::mmr;
use crate::model::Scored;
use crate::query::SearchOptions;
use crate::topk::TopK;

/// How many candidates a search keeps before paging: the page, or more for diversity to
/// choose from.
pub(super) fn pool_size(options: &SearchOptions) -> usize {
    let want = options.k + options.offset;
    if options.diversity > 0.0 {
        mmr::pool_size(want)
    } else {
        want
    }
}

/// Ranks the candidates of `options` by `goodness`, with threshold, offset and diversity. With
/// a `query` vector (every mode but `best_score` has one) and no call for exactness, the first
/// plan that fills the page answers: the graph, when the tenant has one; the scan of int8 codes
/// rescored in f32, when it keeps them; and last the exact scan of every candidate.
pub(super) fn rank(
    index: &EntityIndex,
    options: &SearchOptions,
    excluded: RoaringBitmap,
    query: Option<&[f32]>,
    mut goodness: impl FnMut(&[f32], f32) -> f32,
) -> Vec<Scored> {
    let metric = index.spec().metric;
    let floor = options
        .score_threshold
        .map_or(f32::NEG_INFINITY, |t| goodness_floor(metric, t));
    let pool = pool_size(options);
    let exact = options.exact || index.search_config().exact;
    // One graph question in so many is kept for a recall audit (see `index::recall`); one
    // with a score threshold has no fixed page to measure.
    let audited = (query.is_some()
        && !exact
        && options.score_threshold.is_none()
        && index.has_graph()
        && index.recall().due())
    .then(|| excluded.clone());
    let candidates = index.candidates(&options.filter, excluded);
    let mut top = TopK::new(pool);
    // An approximate plan that could not fill the page (a threshold, or a filter, left too few
    // near the query) is no proof that the page cannot be filled: the next plan runs.
    let mut filled = false;
    if let Some(query) = query.filter(|_| !exact) {
        filled = index.search_approximate(
            query,
            &candidates,
            pool,
            floor,
            &mut top,
            &mut goodness,
            None,
        ) && top.is_full();
        if filled && let Some(excluded) = audited {
            index.recall().keep(Sample {
                query: query.to_vec(),
                filter: options.filter.clone(),
                excluded,
                want: pool,
            });
        }
        if !filled {
            top = TopK::new(pool);
            filled =
                index.search_quantized(query, &candidates, pool, floor, &mut top, &mut goodness)
                    && top.is_full();
        }
    }
    if !filled {
        top = TopK::new(pool);
        index.scan(&candidates, floor, &mut top, goodness);
    }
    page(index, options, top)
}

/// The page `options` asks for from the best candidates: re-ranked for diversity, offset, and
/// turned into ids and scores.
pub(super) fn page(index: &EntityIndex, options: &SearchOptions, top: TopK<'_>) -> Vec<Scored> {
    let metric = index.spec().metric;
    let want = options.k + options.offset;
    let mut picked = top.into_sorted();
    if options.diversity > 0.0 {
        picked = mmr::rerank(index, picked, want, options.diversity);
    }
    picked
        .iter()
        .skip(options.offset)
        .map(|c| Scored {
            id: index
                .row(c.slot)
                .expect("picked slots are live")
                .record
                .id
                .clone(),
            score: score_of(metric, c.goodness),
        })
        .collect()
}
