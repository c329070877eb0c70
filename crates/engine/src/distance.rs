//! Distance kernels.
//!
//! The kernels come from `simsimd`, which picks the widest SIMD the CPU offers at run time
//! (AVX2 + FMA, AVX-512, NEON, SVE) without compiling for one target CPU. A hand-written
//! loop would only get the baseline SSE2 of a portable build.
//!
//! Inside the engine every comparison is a *goodness*, where higher is always better:
//! cosine similarity, dot product, or minus the Euclidean distance. Only the edge turns a
//! goodness into the score the API reports.

use simsimd::SpatialSimilarity;

use crate::model::Metric;

/// The dot product of two slices of equal length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    // simsimd returns None only for slices of different lengths, which callers rule out.
    f32::dot(a, b).unwrap_or(f64::NAN) as f32
}

/// The squared Euclidean distance of two slices of equal length.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    f32::l2sq(a, b).unwrap_or(f64::NAN) as f32
}

/// The reciprocal of a vector's length, or 0 for the zero vector.
pub fn inverse_norm(v: &[f32]) -> f32 {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 { 1.0 / norm } else { 0.0 }
}

/// A query prepared for one metric: the vector and what scoring needs of it.
#[derive(Debug, Clone)]
pub(crate) struct Probe<'a> {
    pub vector: &'a [f32],
    pub metric: Metric,
    pub inverse_norm: f32,
}

impl<'a> Probe<'a> {
    pub fn new(vector: &'a [f32], metric: Metric) -> Self {
        Self {
            vector,
            metric,
            inverse_norm: inverse_norm(vector),
        }
    }

    /// The goodness of a stored row, given that row's inverse norm.
    #[inline]
    pub fn goodness(&self, row: &[f32], row_inverse_norm: f32) -> f32 {
        match self.metric {
            Metric::Cosine => dot(self.vector, row) * self.inverse_norm * row_inverse_norm,
            Metric::Dot => dot(self.vector, row),
            Metric::Euclidean => -l2sq(self.vector, row).sqrt(),
        }
    }
}

/// Turns a goodness into the score the API reports.
#[inline]
pub fn score_of(metric: Metric, goodness: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => goodness,
        Metric::Euclidean => -goodness,
    }
}

/// Turns a score threshold into the least goodness a result may have.
pub fn goodness_floor(metric: Metric, threshold: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => threshold,
        Metric::Euclidean => -threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn kernels_agree_with_plain_loops() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        assert!((f64::from(dot(&a, &b)) - naive_dot(&a, &b)).abs() < 1e-4);
        let l2: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
        assert!((f64::from(l2sq(&a, &b)) - l2).abs() < 1e-3);
    }

    #[test]
    fn probes_score_per_metric() {
        let q = [3.0, 4.0];
        let row = [6.0, 8.0];
        let inv = inverse_norm(&row);
        let cos = Probe::new(&q, Metric::Cosine).goodness(&row, inv);
        assert!((cos - 1.0).abs() < 1e-6);
        assert_eq!(Probe::new(&q, Metric::Dot).goodness(&row, inv), 50.0);
        let euclid = Probe::new(&q, Metric::Euclidean).goodness(&row, inv);
        assert_eq!(euclid, -5.0);
        assert_eq!(score_of(Metric::Euclidean, euclid), 5.0);
        assert_eq!(goodness_floor(Metric::Euclidean, 5.0), -5.0);
        assert_eq!(inverse_norm(&[0.0, 0.0]), 0.0);
    }
}
