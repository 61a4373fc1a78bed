//! The nearest-class-center classifier (docs/method.md, "NCC accuracy"): argmin_c ‖f(x) − μ_c‖
//! with the class means of the training split, distances in GEMM form ‖x‖² − 2x·μ + ‖μ‖², lowest
//! index on ties; and the NCC accuracy from the decisions counted in pass 2.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::statistics::NccDecisions;

/// NCC accuracy: the fraction of decided rows assigned to their own class (None: no rows).
pub fn ncc_accuracy(d: &NccDecisions) -> Option<f64> {
    (d.counted > 0).then(|| d.correct as f64 / d.counted as f64)
}

/// Class means prepared for fast NCC decisions.
#[derive(Clone, Debug)]
pub struct NccClassifier {
    pub dim: usize,
    pub num_classes: usize,
    /// Means, row-major C×D.
    means: Vec<f64>,
    mean_sq_norms: Vec<f64>,
}

impl NccClassifier {
    pub fn new(means: Vec<f64>, num_classes: usize, dim: usize) -> Self {
        let mean_sq_norms = means.chunks_exact(dim).map(|m| m.iter().map(|v| v * v).sum()).collect();
        NccClassifier { dim, num_classes, means, mean_sq_norms }
    }

    /// ‖μ_c‖² of every class, in class order.
    pub fn mean_sq_norms(&self) -> &[f64] {
        &self.mean_sq_norms
    }

    /// The NCC decision for one row from ‖x‖² and the dot products x·μ_c.
    #[inline]
    pub fn decide(&self, x_sq_norm: f64, dots: &[f64]) -> usize {
        let mut best = 0;
        let mut best_d = f64::INFINITY;
        for (k, (&dot, &m)) in dots.iter().zip(&self.mean_sq_norms).enumerate() {
            let dist = x_sq_norm - 2.0 * dot + m;
            if dist < best_d {
                best_d = dist;
                best = k;
            }
        }
        best
    }

    /// Predict the class of every row of `x` (row-major f64 [rows, dim]); `scores` is scratch.
    pub fn predict_into(&self, x: &[f64], rows: usize, scores: &mut Vec<f64>, out: &mut Vec<usize>) {
        let (d, c) = (self.dim, self.num_classes);
        scores.resize(rows * c, 0.0);
        let xs = MatRef::from_row_major_slice(x, rows, d);
        let mu = MatRef::from_row_major_slice(&self.means, c, d);
        let dst = MatMut::from_row_major_slice_mut(scores, rows, c);
        matmul(dst, Accum::Replace, xs, mu.transpose(), 1.0, Par::Seq);
        out.clear();
        for (r, row) in x.chunks_exact(d).enumerate() {
            let xn: f64 = row.iter().map(|v| v * v).sum();
            out.push(self.decide(xn, &scores[r * c..(r + 1) * c]));
        }
    }
}
