//! Factors for items a model never learnt, from their content: a ridge regression from content
//! vectors to item factors, fitted on the items that have both. An entity too new to have
//! interactions then gets estimated factors and competes in the model's space; the ridge's
//! shrinkage makes such estimates modest next to learnt factors, as they should be.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::{Llt, Solve};
use faer::{Accum, Mat, Par, Side};

use crate::LearnError;

/// The largest content dimension a map is fitted for: the fit solves a `d × d` system.
pub const MAX_CONTENT_DIMENSION: usize = 2048;

/// A linear map from content vectors (`d` components) to item factors (`k`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContentMap {
    dimension: usize,
    factors: usize,
    /// `d × k`, row-major: factors = contentᵀ · W.
    weights: Vec<f32>,
}

impl ContentMap {
    /// Fits `W = (XᵀX + μI)⁻¹ XᵀY` for the `n` items of `content` (`n × d`, row-major) and
    /// `factors` (`n × k`), with `μ` the ridge times the mean of `XᵀX`'s diagonal (so it does
    /// not depend on the content's scale). Deterministic: sums run in a fixed order.
    pub fn fit(
        content: &[f32],
        factors: &[f32],
        dimension: usize,
        k: usize,
        ridge: f64,
    ) -> Result<Self, LearnError> {
        if !(1..=MAX_CONTENT_DIMENSION).contains(&dimension) || k == 0 {
            return Err(LearnError::InvalidParams(
                "a content map needs a dimension from 1 to 2048 and factors",
            ));
        }
        if !(content.len().is_multiple_of(dimension)
            && factors.len().is_multiple_of(k)
            && content.len() / dimension == factors.len() / k)
        {
            return Err(LearnError::InvalidParams(
                "content and factors name different numbers of items",
            ));
        }
        if !(ridge.is_finite() && ridge > 0.0) {
            return Err(LearnError::InvalidParams("the ridge is above 0"));
        }
        let n = content.len() / dimension;
        let x = Mat::<f64>::from_fn(n, dimension, |r, c| f64::from(content[r * dimension + c]));
        let y = Mat::<f64>::from_fn(n, k, |r, c| f64::from(factors[r * k + c]));
        let mut a = Mat::<f64>::zeros(dimension, dimension);
        triangular::matmul(
            a.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            x.transpose(),
            BlockStructure::Rectangular,
            x.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        #[expect(clippy::cast_precision_loss, reason = "a dimension of at most 2048")]
        let mean_diagonal = (0..dimension).map(|d| a[(d, d)]).sum::<f64>() / dimension as f64;
        let mu = ridge * mean_diagonal.max(f64::MIN_POSITIVE);
        for d in 0..dimension {
            a[(d, d)] += mu;
        }
        let b = x.transpose() * &y;
        let w = match Llt::new(a.as_ref(), Side::Lower) {
            Ok(llt) => llt.solve(&b),
            // μ > 0 makes the system positive definite; only values that are not finite fail.
            Err(_) => return Err(LearnError::InvalidParams("content vectors are finite")),
        };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "factors are kept in f32; the fit runs in f64"
        )]
        let weights = (0..dimension * k)
            .map(|i| w[(i / k, i % k)] as f32)
            .collect();
        Ok(Self {
            dimension,
            factors: k,
            weights,
        })
    }

    /// Estimated factors of an item with content `x` (zeros for a vector of another length).
    pub fn project(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.factors];
        if x.len() != self.dimension {
            return out;
        }
        for (d, &v) in x.iter().enumerate() {
            let row = &self.weights[d * self.factors..(d + 1) * self.factors];
            for (o, w) in out.iter_mut().zip(row) {
                *o += v * w;
            }
        }
        out
    }

    /// The content dimension it maps from.
    pub fn dimension(&self) -> usize {
        self.dimension
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_relation_is_recovered_and_shrunk_a_little() {
        // Factors are exactly a linear function of two-dimensional content.
        let content: Vec<f32> = (0..50)
            .flat_map(|i| {
                let t = f32::from(u8::try_from(i).unwrap()) / 10.0;
                [t.sin(), t.cos()]
            })
            .collect();
        let factors: Vec<f32> = content
            .chunks(2)
            .flat_map(|c| [2.0 * c[0] - c[1], 0.5 * c[1], c[0] + c[1]])
            .collect();
        let map = ContentMap::fit(&content, &factors, 2, 3, 1e-4).unwrap();
        let got = map.project(&[0.6, -0.8]);
        let want = [2.0 * 0.6 + 0.8, -0.4, -0.2];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 0.02, "{got:?} against {want:?}");
        }
        // More ridge, smaller estimates.
        let shrunk = ContentMap::fit(&content, &factors, 2, 3, 10.0).unwrap();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
        assert!(norm(&shrunk.project(&[0.6, -0.8])) < norm(&got));
        assert_eq!(
            map.project(&[1.0]),
            vec![0.0; 3],
            "a vector of another length"
        );
        assert!(ContentMap::fit(&content, &factors[3..], 2, 3, 1.0).is_err());
        assert!(ContentMap::fit(&content, &factors, 2, 3, 0.0).is_err());
    }
}
