//! What a question costs before it is ranked: an estimate of the vector components its ranking
//! reads (one multiply-add each), checked against the engine's budget
//! (`EngineConfig::work_budget`) when the question is prepared, so a question that would hold a
//! core for seconds is refused with what to lower instead of being started. A host adds up the
//! costs of the questions of a batch for a budget of its own.
//!
//! The estimate is an upper bound of the plan the question could end on: the whole scan when
//! it is exact or the tenant has no graph (a filter can turn a graph search into a scan too, but
//! a scan of every candidate is what the estimate already allows for), the graph's breadth times
//! its links otherwise; each example of `best_score` scores every candidate; maximal marginal
//! relevance compares each candidate of its pool with each pick.

use super::Prepared;
use super::plans;
use super::prepared::Question;
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::query::{ExampleStrategy, SearchOptions};

/// The estimated work of a question, and which part of it is the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Vector components read, about.
    pub components: u64,
    /// The part most of it comes from.
    pub largest: CostPart,
}

/// The parts of a question's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostPart {
    /// Scoring the candidates (a scan or a graph's walk), once per query vector.
    Search,
    /// Re-ranking for diversity.
    Diversity,
}

/// The search and diversity parts of searching `index` with `options` for `queries` vectors.
fn search_cost(index: &EntityIndex, options: &SearchOptions, queries: usize) -> (u64, u64) {
    let n = index.len() as u64;
    let dim = index.spec().dimension.max(1) as u64;
    let pool = (plans::pool_size(options) as u64).min(n);
    let config = index.search_config();
    let per_query = if options.exact || config.exact || !index.has_graph() {
        n * dim
    } else {
        let walked = (index.search_breadth() as u64).max(pool) * 2 * config.connectivity as u64;
        walked.min(n) * dim
    };
    let search = per_query.saturating_mul(queries as u64);
    let diversity = if options.diversity > 0.0 {
        let want = ((options.k + options.offset) as u64).min(pool);
        pool.saturating_mul(want).saturating_mul(dim)
    } else {
        0
    };
    (search, diversity)
}

impl Prepared {
    /// The estimated work of ranking this question (see the module's documentation).
    pub fn cost(&self) -> Cost {
        let (search, diversity) = match &self.question {
            Question::Similar { options, .. } => search_cost(&self.index, options, 1),
            Question::Recommend(request) => {
                let queries = match request.strategy {
                    ExampleStrategy::AverageVector => 1,
                    ExampleStrategy::BestScore => request.positive.len() + request.negative.len(),
                };
                search_cost(&self.index, &request.options, queries)
            }
            Question::User(_, options, _) => {
                // The user is answered in one space: the larger one bounds it.
                let content = search_cost(&self.index, options, 1);
                let model = self
                    .collaborative
                    .as_ref()
                    .map_or((0, 0), |m| search_cost(&m.index, options, 1));
                (content.0.max(model.0), content.1.max(model.1))
            }
            Question::Trending(_) => (self.index.len() as u64, 0),
        };
        Cost {
            components: search.saturating_add(diversity),
            largest: if diversity > search {
                CostPart::Diversity
            } else {
                CostPart::Search
            },
        }
    }

    /// Refuses the question when its cost is over the engine's budget, naming what to lower.
    pub(super) fn within_budget(&self) -> Result<()> {
        let cost = self.cost();
        let budget = self.config.work_budget;
        if cost.components <= budget {
            return Ok(());
        }
        let lower = match (&self.question, cost.largest) {
            (_, CostPart::Diversity) => {
                "lower `k` + `offset`, or `diversity` to 0 (diversity compares every pick with \
                 a pool of up to four times the page)"
            }
            (Question::Recommend(r), CostPart::Search)
                if r.strategy == ExampleStrategy::BestScore =>
            {
                "use fewer examples, or `average_vector` (best_score scores every candidate \
                 against each example)"
            }
            (_, CostPart::Search) => {
                "leave `exact` off, or narrow the question (the tenant is too large to scan \
                 exactly within the budget)"
            }
        };
        Err(EngineError::OverBudget {
            cost: cost.components,
            budget,
            lower: lower.to_owned(),
        })
    }
}
