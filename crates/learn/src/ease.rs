//! EASE (Steck 2019, "Embarrassingly shallow autoencoders for sparse data"): an item-item model
//! in closed form, `B = I − P · diag(1/diag(P))` with `P = (XᵀX + λI)⁻¹` and `B`'s diagonal
//! zero, where `X` says which items each user interacted with. A user's score of item `j` is
//! `Σᵢ xᵢ Bᵢⱼ` for their history `x`; so item `j`'s vector is `B`'s column `j` (one component
//! per item) and a user's "factors" are their history itself, with no solve at all. It needs
//! `n²` numbers for `n` items, which is why it serves catalogues up to [`EASE_MAX_ITEMS`].

use faer::linalg::solvers::{Llt, Solve};
use faer::{Mat, Side};

use crate::{Algorithm, LearnError, Model, Params, Rows};

/// The most items an EASE model is trained for (its `B` is `n × n`: 25 MB of f32 at 2,500).
pub const EASE_MAX_ITEMS: usize = 2_500;

/// Trains an EASE model of `users × items` from the users' rows. Every observed pair counts once
/// in `XᵀX`, whatever its weight (a disliked item was still seen with the others); `λ` is
/// `params.ease_regularization` times the mean of `XᵀX`'s diagonal, so it does not depend on
/// how many users there are.
pub(crate) fn train(
    users: &Rows,
    user_count: usize,
    items: usize,
    params: &Params,
) -> Result<Model, LearnError> {
    let n = items;
    let mut g = Mat::<f64>::zeros(n, n);
    for u in 0..user_count {
        let row = users.row(u);
        for &(a, _) in row {
            for &(b, _) in row {
                g[(a as usize, b as usize)] += 1.0;
            }
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "at most EASE_MAX_ITEMS items")]
    let mean_diagonal = (0..n).map(|i| g[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let lambda = params.ease_regularization * mean_diagonal.max(1.0);
    for i in 0..n {
        g[(i, i)] += lambda;
    }
    let p = match Llt::new(g.as_ref(), Side::Lower) {
        Ok(llt) => llt.solve(Mat::<f64>::identity(n, n)),
        // λ > 0 makes XᵀX + λI positive definite.
        Err(_) => return Err(LearnError::InvalidParams("ease_regularization is above 0")),
    };
    // Item j's vector is B's column j: B[i][j] = −P[i][j] / P[j][j], and 0 on the diagonal.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the model is kept in f32; the solve runs in f64"
    )]
    let vectors: Vec<f32> = (0..n * n)
        .map(|at| {
            let (j, i) = (at / n, at % n);
            if i == j {
                0.0
            } else {
                (-p[(i, j)] / p[(j, j)]) as f32
            }
        })
        .collect();
    Ok(Model {
        params: Params {
            algorithm: Algorithm::Ease,
            factors: n,
            ..*params
        },
        users: Vec::new(),
        items: vectors,
        item_gramian: Vec::new(),
        item_count: n,
    })
}

/// A user's vector against an EASE model: their history, one component per item, repeats
/// summed; items past the model's are left out.
pub(crate) fn fold_in(history: &[(u32, f32)], items: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; items];
    for &(item, weight) in history {
        if let Some(slot) = x.get_mut(item as usize)
            && weight.is_finite()
        {
            *slot += weight;
        }
    }
    x
}
