//! reco's learner: a collaborative model of a tenant's interaction log, by implicit-feedback
//! matrix factorisation (iALS: Hu, Koren and Volinsky 2008, with the frequency-scaled
//! regularization and the small weight on unobserved pairs of Rendle et al. 2022), or, for a
//! catalogue of up to [`EASE_MAX_ITEMS`] items, by EASE (Steck 2019; see `ease`), the
//! closed-form item-item model, which [`Algorithm::Auto`] prefers there (on MovieLens-100K it
//! ranks better: 0.085 against 0.080 NDCG@10). Compute only: it knows nothing of the engine,
//! of storage or of time. Both are a [`Model`] of item vectors and a fold-in; so is a
//! [`ContentMap`], the ridge regression that gives an item never learnt a vector from its
//! content.
//!
//! # The key design decision: one solve serves training and serving (iALS)
//!
//! A user's factors are the solution of one small `k × k` system built from the user's
//! observed items and the item factors (`solve_row`). Training alternates that solve over every
//! user and then every item; serving runs the very same solve for one user at request time
//! ([`Model::fold_in`]), against the trained item factors and their Gramian, which the model
//! keeps. So a user's fold-in equals their trained factors, a new interaction changes the next
//! answer without a training, and a user the model never saw is served from their first
//! interaction with a known item.
//!
//! # The objective
//!
//! For an observed pair (user `u`, item `i`) with net weight `w` (repeated interactions sum,
//! dislikes subtract): preference `p = 1` when `w > 0` and `0` otherwise, with confidence
//! `c = 1 + confidence · |w|`. So a dislike is a *confident zero*: the user said "not this",
//! which weighs more than an item they never saw. Every unobserved pair is a zero of weight
//! `unobserved_weight` (`α₀`). Each row minimises
//!
//! `Σ_observed c (p − x·y)² + α₀ Σ_unobserved (x·y)² + λ (|observed| + α₀ · n)^ν |x|²`
//!
//! whose normal equations, with `G = YᵀY` computed once per sweep, are
//! `(α₀ G + Σ_observed (c − α₀) y yᵀ + λ_u I) x = Σ_observed c p y`.
//!
//! The defaults (`λ` 0.01, `α₀` 1, confidence 0.25, 64 factors, 10 sweeps) are the best of a
//! small grid on MovieLens-100K's validation split (`examples/movielens.rs` with
//! `RECO_ML_VALIDATE`; `benches/movielens/run.sh` sets them beside the baselines).
//!
//! Results are deterministic for a seed: the initial factors come from a counter hashed per
//! component, each row is solved on its own (the threads only split the rows), and sums run in
//! a fixed order.

#![warn(missing_docs)]

mod content;
mod ease;

pub use content::{ContentMap, MAX_CONTENT_DIMENSION};
pub use ease::EASE_MAX_ITEMS;

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::{Llt, Solve};
use faer::{Accum, Mat, MatRef, Par, Side};

/// Which model a training makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// EASE for up to [`EASE_MAX_ITEMS`] items with observations, iALS beyond (the engine also
    /// takes iALS for a wider catalogue, however few of its items were observed). The default.
    #[default]
    Auto,
    /// Implicit-feedback matrix factorisation: `factors` per user and item.
    Ials,
    /// The closed-form item-item model (see `ease`): one component per item.
    Ease,
}

impl Algorithm {
    /// `auto`, `ials` or `ease`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Auto => "auto",
            Algorithm::Ials => "ials",
            Algorithm::Ease => "ease",
        }
    }

    /// The algorithm of a name [`Algorithm::as_str`] gives.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Algorithm::Auto),
            "ials" => Some(Algorithm::Ials),
            "ease" => Some(Algorithm::Ease),
            _ => None,
        }
    }
}

/// How a model is trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Which model. Default [`Algorithm::Auto`].
    pub algorithm: Algorithm,
    /// EASE's `λ`, as a multiple of the mean number of users per item. Default 8.
    pub ease_regularization: f64,
    /// iALS: factors per user and per item (`k`). Default 64. A trained EASE model says its
    /// item count here (one component per item).
    pub factors: usize,
    /// Sweeps over users and items. Default 10.
    pub iterations: usize,
    /// `λ`, the regularization. Default 0.01.
    pub regularization: f64,
    /// `ν`, how the regularization grows with a row's observations (Rendle et al.). Default 1.
    pub frequency_scaling: f64,
    /// `α₀`, the weight of each unobserved pair. Default 1.
    pub unobserved_weight: f64,
    /// How much an observation's weight adds to its confidence. Default 0.25.
    pub confidence: f64,
    /// The spread of the initial factors, divided by `√k`. Default 0.1.
    pub init_scale: f64,
    /// The seed of the initial factors.
    pub seed: u64,
    /// Threads a sweep runs on (1 or more).
    pub threads: usize,
}

impl Params {
    /// Refuses parameters out of their ranges: factors from 1 to 1024, iterations from 1 to
    /// 1000, a regularization above 0, an unobserved weight from 0 to 1, the rest at least 0.
    pub fn check(&self) -> Result<(), LearnError> {
        // A trained EASE model says its item count in `factors`.
        let most = if self.algorithm == Algorithm::Ease {
            EASE_MAX_ITEMS
        } else {
            1024
        };
        if !(1..=most).contains(&self.factors) {
            return Err(LearnError::InvalidParams("factors is from 1 to 1024"));
        }
        if !(self.ease_regularization.is_finite() && self.ease_regularization > 0.0) {
            return Err(LearnError::InvalidParams("ease_regularization is above 0"));
        }
        if self.iterations == 0 || self.iterations > 1000 {
            return Err(LearnError::InvalidParams("iterations is from 1 to 1000"));
        }
        let finite_non_negative = |x: f64| x.is_finite() && x >= 0.0;
        if !(finite_non_negative(self.regularization)
            && self.regularization > 0.0
            && finite_non_negative(self.frequency_scaling)
            && finite_non_negative(self.unobserved_weight)
            && self.unobserved_weight <= 1.0
            && finite_non_negative(self.confidence)
            && finite_non_negative(self.init_scale))
        {
            return Err(LearnError::InvalidParams(
                "regularization is above 0, unobserved_weight from 0 to 1, the others at least 0",
            ));
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Auto,
            ease_regularization: 8.0,
            factors: 64,
            iterations: 10,
            regularization: 0.01,
            frequency_scaling: 1.0,
            unobserved_weight: 1.0,
            confidence: 0.25,
            init_scale: 0.1,
            seed: 42,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Why a model could not be trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    /// A parameter is out of its range.
    #[error("invalid training parameter: {0}")]
    InvalidParams(&'static str),
    /// An observation names a user or an item past the counts given.
    #[error("observation {index} names a user or item past the {users} users and {items} items")]
    OutOfRange {
        /// The observation's position.
        index: usize,
        /// Users given.
        users: usize,
        /// Items given.
        items: usize,
    },
    /// An observation's weight is not a finite number.
    #[error("observation {0} has a weight that is not a finite number")]
    NotFinite(usize),
}

/// One observed (user, item) pair and its weight; pairs given more than once add up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The user's index, below the user count.
    pub user: u32,
    /// The item's index, below the item count.
    pub item: u32,
    /// The weight: positive for interest, negative for a dislike.
    pub weight: f32,
}

/// A trained model: user and item factors, row-major, and what a fold-in needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    params: Params,
    users: Vec<f32>,
    items: Vec<f32>,
    /// `YᵀY` of the item factors, lower triangle, for fold-ins.
    item_gramian: Vec<f64>,
    item_count: usize,
}

/// The observations of one side: for each row, its (column, net weight) pairs, by column.
struct Rows {
    starts: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl Rows {
    /// Groups observations by `key`, summing repeated pairs, in column order.
    fn group(count: usize, observations: &[Observation], by_user: bool) -> Self {
        let mut pairs: Vec<(u32, u32, f32)> = observations
            .iter()
            .map(|o| {
                if by_user {
                    (o.user, o.item, o.weight)
                } else {
                    (o.item, o.user, o.weight)
                }
            })
            .collect();
        pairs.sort_by_key(|&(row, column, _)| (row, column));
        let mut starts = vec![0; count + 1];
        let mut entries: Vec<(u32, f32)> = Vec::with_capacity(pairs.len());
        let mut last: Option<(u32, u32)> = None;
        for (row, column, weight) in pairs {
            if last == Some((row, column)) {
                if let Some(entry) = entries.last_mut() {
                    entry.1 += weight;
                }
                continue;
            }
            last = Some((row, column));
            entries.push((column, weight));
            starts[row as usize + 1] = entries.len();
        }
        // Rows without observations start where the previous one ended.
        for r in 1..=count {
            starts[r] = starts[r].max(starts[r - 1]);
        }
        Self { starts, entries }
    }

    fn row(&self, r: usize) -> &[(u32, f32)] {
        &self.entries[self.starts[r]..self.starts[r + 1]]
    }
}

/// A number from a counter, uniform in `[-1, 1)`: the initial factors, repeatable for a seed.
fn uniform(seed: u64, n: u64) -> f64 {
    let mut x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let unit = f64::from(u32::try_from(x >> 40).expect("24 bits")) / f64::from(1u32 << 24);
    unit * 2.0 - 1.0
}

/// `YᵀY` of `factors` (rows of `k`), lower triangle, summed in row order.
fn gramian(factors: &[f32], k: usize) -> Mat<f64> {
    let rows = factors.len() / k;
    let y = MatRef::from_row_major_slice(factors, rows, k);
    let y = Mat::<f64>::from_fn(rows, k, |r, c| f64::from(y[(r, c)]));
    let mut g = Mat::<f64>::zeros(k, k);
    triangular::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        y.transpose(),
        BlockStructure::Rectangular,
        y.as_ref(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    g
}

/// The factors of one row (a user, or an item) from its observations against the other side's
/// factors and their Gramian: the normal equations of the module's objective, by Cholesky.
fn solve_row(
    observed: &[(u32, f32)],
    other: &[f32],
    other_count: usize,
    gram: MatRef<'_, f64>,
    params: &Params,
) -> Vec<f32> {
    let k = params.factors;
    if observed.is_empty() {
        return vec![0.0; k];
    }
    let alpha0 = params.unobserved_weight;
    #[expect(
        clippy::cast_precision_loss,
        reason = "counts of observations and items are far below 2^52"
    )]
    let mass = observed.len() as f64 + alpha0 * other_count as f64;
    let lambda = params.regularization * mass.powf(params.frequency_scaling);
    // A = α₀ G + λ_u I + Bᵀ B, B's rows being √(c − α₀) y; b = Σ c p y.
    let mut a = Mat::<f64>::from_fn(k, k, |r, c| {
        alpha0 * gram[(r, c)] + if r == c { lambda } else { 0.0 }
    });
    let mut b = Mat::<f64>::zeros(k, 1);
    let mut rows = Mat::<f64>::zeros(observed.len(), k);
    for (n, &(column, weight)) in observed.iter().enumerate() {
        let y = &other[column as usize * k..(column as usize + 1) * k];
        let c = 1.0 + params.confidence * f64::from(weight).abs();
        let scale = (c - alpha0).max(0.0).sqrt();
        let preference = if weight > 0.0 { 1.0 } else { 0.0 };
        for (d, &v) in y.iter().enumerate() {
            rows[(n, d)] = scale * f64::from(v);
            b[(d, 0)] += c * preference * f64::from(v);
        }
    }
    triangular::matmul(
        a.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Add,
        rows.transpose(),
        BlockStructure::Rectangular,
        rows.as_ref(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    match Llt::new(a.as_ref(), Side::Lower) {
        Ok(llt) => {
            let x = llt.solve(&b);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "factors are kept in f32; the solve runs in f64"
            )]
            let x: Vec<f32> = (0..k).map(|d| x[(d, 0)] as f32).collect();
            x
        }
        // λ_u > 0 makes A positive definite; a failure can only come from values that are
        // not finite, and a row of zeros is the safe answer.
        Err(_) => vec![0.0; k],
    }
}

/// Solves every row of one side into `out` (rows of `k`), on `threads` threads, each taking a
/// contiguous run of rows. Each row is solved on its own, so the result does not depend on how
/// the rows are split.
fn sweep(rows: &Rows, other: &[f32], other_count: usize, out: &mut [f32], params: &Params) {
    let k = params.factors;
    let gram = gramian(other, k);
    let count = out.len() / k;
    let per_thread = count.div_ceil(params.threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (part, chunk) in out.chunks_mut(per_thread * k).enumerate() {
            let gram = gram.as_ref();
            s.spawn(move || {
                for (i, row) in chunk.chunks_mut(k).enumerate() {
                    let r = part * per_thread + i;
                    row.copy_from_slice(&solve_row(rows.row(r), other, other_count, gram, params));
                }
            });
        }
    });
}

/// Trains a model of `users × items` from `observations`, calling `progress` after each
/// iteration with how many are done.
pub fn train(
    users: usize,
    items: usize,
    observations: &[Observation],
    params: &Params,
    mut progress: impl FnMut(usize),
) -> Result<Model, LearnError> {
    params.check()?;
    for (index, o) in observations.iter().enumerate() {
        if o.user as usize >= users || o.item as usize >= items {
            return Err(LearnError::OutOfRange {
                index,
                users,
                items,
            });
        }
        if !o.weight.is_finite() {
            return Err(LearnError::NotFinite(index));
        }
    }
    let by_user = Rows::group(users, observations, true);
    let ease = match params.algorithm {
        Algorithm::Ease => true,
        Algorithm::Auto => (1..=EASE_MAX_ITEMS).contains(&items),
        Algorithm::Ials => false,
    };
    if ease {
        if !(1..=EASE_MAX_ITEMS).contains(&items) {
            return Err(LearnError::InvalidParams(
                "EASE trains catalogues of 1 to 2,500 items with interactions",
            ));
        }
        let model = ease::train(&by_user, users, items, params)?;
        progress(params.iterations);
        return Ok(model);
    }
    let params = &Params {
        algorithm: Algorithm::Ials,
        ..*params
    };
    let k = params.factors;
    let by_item = Rows::group(items, observations, false);
    #[expect(clippy::cast_precision_loss, reason = "k is at most 1024")]
    let spread = params.init_scale / (k as f64).sqrt();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "initial factors are small numbers kept in f32"
    )]
    let mut item_factors: Vec<f32> = (0..items * k)
        .map(|n| (uniform(params.seed, n as u64) * spread) as f32)
        .collect();
    let mut user_factors = vec![0.0f32; users * k];
    for done in 1..=params.iterations {
        sweep(&by_user, &item_factors, items, &mut user_factors, params);
        sweep(&by_item, &user_factors, users, &mut item_factors, params);
        progress(done);
    }
    // A last user sweep, so that the user factors are the ones the final item factors give:
    // exactly what a fold-in computes.
    sweep(&by_user, &item_factors, items, &mut user_factors, params);
    let g = gramian(&item_factors, k);
    let item_gramian = (0..k * k).map(|n| g[(n / k, n % k)]).collect();
    Ok(Model {
        params: *params,
        users: user_factors,
        items: item_factors,
        item_gramian,
        item_count: items,
    })
}

impl Model {
    /// A model for serving, from item factors kept elsewhere (row-major, `params.factors` per
    /// item) and the parameters they were trained with: it folds users in exactly as the
    /// trained model did, and knows no trained users.
    pub fn from_item_factors(params: Params, items: Vec<f32>) -> Result<Self, LearnError> {
        params.check()?;
        let k = params.factors;
        if params.algorithm == Algorithm::Ease {
            if items.len() != k * k || !items.iter().all(|x| x.is_finite()) {
                return Err(LearnError::InvalidParams(
                    "an EASE model holds one finite component per item for each item",
                ));
            }
            return Ok(Self {
                params,
                users: Vec::new(),
                item_count: k,
                item_gramian: Vec::new(),
                items,
            });
        }
        if !items.len().is_multiple_of(k) {
            return Err(LearnError::InvalidParams(
                "the item factors are not a whole number of rows of `factors`",
            ));
        }
        if !items.iter().all(|x| x.is_finite()) {
            return Err(LearnError::InvalidParams("item factors are finite numbers"));
        }
        let g = gramian(&items, k);
        Ok(Self {
            params,
            users: Vec::new(),
            item_count: items.len() / k,
            item_gramian: (0..k * k).map(|n| g[(n / k, n % k)]).collect(),
            items,
        })
    }

    /// Factors per user and item.
    pub fn factors(&self) -> usize {
        self.params.factors
    }

    /// The parameters it was trained with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// How many users it was trained on.
    pub fn user_count(&self) -> usize {
        self.users.len() / self.params.factors
    }

    /// How many items it was trained on.
    pub fn item_count(&self) -> usize {
        self.item_count
    }

    /// A trained user's factors.
    pub fn user(&self, user: usize) -> Option<&[f32]> {
        let k = self.params.factors;
        self.users.get(user * k..(user + 1) * k)
    }

    /// An item's factors.
    pub fn item(&self, item: usize) -> Option<&[f32]> {
        let k = self.params.factors;
        self.items.get(item * k..(item + 1) * k)
    }

    /// Every item's factors, row-major.
    pub fn item_factors(&self) -> &[f32] {
        &self.items
    }

    /// A user's factors from their history (item index, net weight) against the trained item
    /// factors: the training's own user solve, for one user, now. Items past the model's are
    /// left out (they were made after the training). Zeros for a history with no known item.
    pub fn fold_in(&self, history: &[(u32, f32)]) -> Vec<f32> {
        if self.params.algorithm == Algorithm::Ease {
            return ease::fold_in(history, self.item_count);
        }
        let k = self.params.factors;
        let mut observed: Vec<(u32, f32)> = history
            .iter()
            .copied()
            .filter(|&(item, weight)| (item as usize) < self.item_count && weight.is_finite())
            .collect();
        observed.sort_by_key(|&(item, _)| item);
        observed.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 += later.1;
                true
            } else {
                false
            }
        });
        let gram = MatRef::from_row_major_slice(&self.item_gramian, k, k);
        solve_row(&observed, &self.items, self.item_count, gram, &self.params)
    }
}

#[cfg(test)]
mod tests;
