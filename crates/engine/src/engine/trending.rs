//! Trending: what users interacted with most in a window, time-decayed on the wall clock.

use std::collections::BinaryHeap;

use roaring::RoaringBitmap;

use super::prepared::Question;
use super::{Engine, Prepared, prepared};
use crate::config::millis;
use crate::distance::narrow;
use crate::error::Result;
use crate::index::{Candidates, EntityIndex, Filter};
use crate::interactions::InteractionLog;
use crate::model::{EntityId, Millis, Scored, TenantName};
use crate::query::{Ranking, Space, Strategy, TrendingQuery, Window};
use crate::topk::TopK;

pub(super) fn prepare(
    engine: &Engine,
    name: &TenantName,
    query: &TrendingQuery,
) -> Result<Prepared> {
    query.validate(millis(engine.config.trending_retention))?;
    prepared::bind(
        engine,
        name,
        true,
        Space::Content,
        Question::Trending(query.clone()),
    )
}

impl Prepared {
    pub(super) fn rank_trending(&self, query: &TrendingQuery) -> Result<Ranking> {
        let index = &self.index;
        let log = self.log.as_ref().expect("trending reads the log");
        let trend = Trend {
            now: self.clock.now(),
            window: query.window,
            half_life: millis(self.config.trending_half_life),
        };
        let filter = Filter {
            category: query.category.clone(),
            ..Filter::default()
        };
        Ok(Ranking {
            results: trend.rank(
                index,
                log,
                &filter,
                RoaringBitmap::new(),
                query.k,
                query.offset,
            ),
            missing: Vec::new(),
            strategy: Strategy::Trending,
        })
    }
}

/// A trending score, ordered for a max-heap.
struct ByScore<'a>(f32, &'a EntityId);
impl PartialEq for ByScore<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for ByScore<'_> {}
impl PartialOrd for ByScore<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByScore<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// How trending is measured for one query.
pub(super) struct Trend {
    pub(super) now: Millis,
    pub(super) window: Window,
    pub(super) half_life: Millis,
}

impl Trend {
    pub(super) fn rank(
        &self,
        index: &EntityIndex,
        log: &InteractionLog,
        filter: &Filter,
        excluded: RoaringBitmap,
        k: usize,
        offset: usize,
    ) -> Vec<Scored> {
        let candidates = index.candidates(filter, excluded);
        let mut top = TopK::new(k + offset);
        // Highest score first, so that only as many ids are looked up as it takes to fill the
        // page: the lookups, not the sums, are what cost. Once the page is full a lower score
        // cannot enter, but an equal one can (ties go by id), so stop only below the bar.
        let mut heap: BinaryHeap<ByScore<'_>> = log
            .trending(self.now, self.window.millis(), self.half_life)
            .into_iter()
            .map(|(id, score)| ByScore(narrow(score), id))
            .collect();
        while let Some(ByScore(score, id)) = heap.pop() {
            if top.is_full() && score < top.bar() {
                break;
            }
            let Some(slot) = index.slot_of(id.as_str()) else {
                continue;
            };
            let allowed = match &candidates {
                Candidates::All { excluded } => !excluded.contains(slot),
                Candidates::Only(slots) => slots.contains(slot),
            };
            if allowed {
                top.offer(score, slot, || id.as_str());
            }
        }
        top.into_sorted()
            .iter()
            .skip(offset)
            .map(|c| Scored {
                id: index
                    .row(c.slot)
                    .expect("a mapped slot is live")
                    .record
                    .id
                    .clone(),
                score: c.goodness,
            })
            .collect()
    }
}
