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

/// An `f64` sum or score as the `f32` the engine ranks by: the nearest `f32`, and infinite
/// where it is out of range (the callers that accumulate in `f64` check for that).
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "narrowing to the nearest f32 is the point: sums run in f64, scores are f32"
)]
pub(crate) fn narrow(x: f64) -> f32 {
    x as f32
}

/// The dot product of two slices of equal length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    // simsimd returns None only for slices of different lengths, which callers rule out.
    narrow(f32::dot(a, b).unwrap_or(f64::NAN))
}

/// The squared Euclidean distance of two slices of equal length.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    narrow(f32::l2sq(a, b).unwrap_or(f64::NAN))
}

/// The dot product of two int8 codes of equal length, exactly (it fits in an `f32` for any
/// dimension the engine accepts).
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    narrow(i8::dot(a, b).unwrap_or(f64::NAN))
}

/// The graph's prefetch (every cache line a slice touches, a hint only), which the engine uses
/// for its rows and an answer's ids.
pub use reco_hnsw::prefetch;

/// Writes the int8 code of `v` to `code` and returns its scale: each component is about
/// `code[i] * scale`. The scale is per vector (the largest component maps to ±127), so the
/// code keeps about 8 bits of every vector whatever its length; the zero vector has scale 0.
pub fn quantize(v: &[f32], code: &mut [i8]) -> f32 {
    debug_assert_eq!(v.len(), code.len());
    let largest = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if largest == 0.0 || !largest.is_finite() {
        code.fill(0);
        return 0.0;
    }
    let inverse = 127.0 / largest;
    for (c, x) in code.iter_mut().zip(v) {
        // In range by construction: |x| * 127 / largest is at most 127.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "rounded and clamped to -127..=127 first"
        )]
        let q = (x * inverse).round().clamp(-127.0, 127.0) as i8;
        *c = q;
    }
    largest / 127.0
}

/// A vector's squared length, from the reciprocal of its length ([`inverse_norm`]): 0 for the
/// zero vector.
#[inline]
pub fn squared_norm(inverse_norm: f32) -> f32 {
    if inverse_norm > 0.0 {
        1.0 / (inverse_norm * inverse_norm)
    } else {
        0.0
    }
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

/// A query prepared for scanning int8 codes: an estimate of [`Probe::goodness`] that orders
/// rows nearly as the exact one does, for a first pass whose best candidates are rescored.
#[derive(Debug, Clone)]
pub(crate) struct CodeProbe {
    code: Vec<i8>,
    scale: f32,
    metric: Metric,
    inverse_norm: f32,
    squared_norm: f32,
}

impl CodeProbe {
    pub fn new(vector: &[f32], metric: Metric) -> Self {
        let mut code = vec![0; vector.len()];
        let scale = quantize(vector, &mut code);
        Self {
            code,
            scale,
            metric,
            inverse_norm: inverse_norm(vector),
            squared_norm: dot(vector, vector),
        }
    }

    /// The estimated goodness of a row from its code, its code's scale and its inverse norm.
    /// Under euclidean it is minus the squared distance, which orders rows the same way.
    #[inline]
    pub fn estimate(&self, code: &[i8], scale: f32, row_inverse_norm: f32) -> f32 {
        let dot = dot_i8(&self.code, code) * self.scale * scale;
        match self.metric {
            Metric::Cosine => dot * self.inverse_norm * row_inverse_norm,
            Metric::Dot => dot,
            Metric::Euclidean => 2.0 * dot - self.squared_norm - squared_norm(row_inverse_norm),
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
    fn codes_keep_about_eight_bits_of_each_vector() {
        let v: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut code = vec![0; 128];
        let scale = quantize(&v, &mut code);
        let largest = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(code.iter().any(|c| c.abs() == 127));
        for (c, x) in code.iter().zip(&v) {
            assert!((f32::from(*c) * scale - x).abs() <= largest / 254.0 + 1e-6);
        }
        assert_eq!(quantize(&[0.0, 0.0], &mut [1, 1]), 0.0);
        assert_eq!(dot_i8(&[127, -127, 3], &[127, 127, 2]), 6.0);
    }

    #[test]
    fn estimates_follow_the_exact_goodness() {
        let a: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        let near: Vec<f32> = a.iter().map(|x| x * 2.0 + 0.05).collect();
        let far: Vec<f32> = (0..64).map(|i| (i as f32 * 1.7).cos()).collect();
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            let probe = Probe::new(&a, metric);
            let codes = CodeProbe::new(&a, metric);
            let estimate = |v: &[f32]| {
                let mut code = vec![0; v.len()];
                let scale = quantize(v, &mut code);
                codes.estimate(&code, scale, inverse_norm(v))
            };
            let exact = |v: &[f32]| probe.goodness(v, inverse_norm(v));
            assert_eq!(
                estimate(&near) > estimate(&far),
                exact(&near) > exact(&far),
                "{metric:?}"
            );
            if metric != Metric::Euclidean {
                let relative = (estimate(&near) - exact(&near)).abs() / exact(&near).abs();
                assert!(relative < 0.02, "{metric:?}: {relative}");
            } else {
                let squared = exact(&near).powi(2);
                assert!((estimate(&near) + squared).abs() < 0.02 * squared.max(1.0));
            }
        }
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
