//! Linear probe (docs/method.md, "Linear probe"): a ridge classifier fitted in closed form on one
//! layer's train embeddings, from the statistics pass 1 already has: the uncentred Gram matrix
//! Σ x xᵀ of the measured rows, and the per-class counts and means. With one-hot targets and an
//! unpenalised intercept (the data centred, as scikit-learn's `RidgeClassifier` does),
//!
//!   W = (X̄ᵀX̄ + λI)⁻¹ X̄ᵀȲ,   X̄ᵀX̄ = Σ x xᵀ − n x̄ x̄ᵀ,   (X̄ᵀȲ)_c = n_c (μ_c − x̄),
//!   b_c = n_c / n − x̄ᵀ W_c,   class(x) = argmax_c xᵀW_c + b_c (lowest index on ties),
//!
//! with λ = α · tr(X̄ᵀX̄) / D, so α is scale-free across layers. Pass 2 counts the rows each split
//! gets right, in the same GEMM as the NCC decisions. Cost: D² per train row in pass 1 (the Gram
//! matrix), one D³/3 Cholesky per layer, D·C per row in pass 2.

use faer::linalg::solvers::Solve;
use faer::{Mat, Side};

use crate::statistics::{ClassMoments, Gram, NccDecisions};

/// A fitted ridge classifier: weights D × C (row-major) and intercepts.
#[derive(Clone, Debug)]
pub struct RidgeClassifier {
    pub weights: Vec<f64>,
    pub bias: Vec<f64>,
    /// The λ used.
    pub lambda: f64,
}

/// Fit on the measured train rows whose Gram matrix and class moments are given. None when
/// there are no rows or the system cannot be solved (non-finite statistics).
pub fn fit_ridge(gram: &Gram, moments: &ClassMoments, alpha: f64) -> Option<RidgeClassifier> {
    let d = gram.dim;
    let k = moments.num_classes();
    let n = moments.total() as f64;
    if n == 0.0 {
        return None;
    }
    let xbar = moments.global_mean();
    let mut a = Mat::from_fn(d, d, |i, j| gram.sum[(i, j)] - n * xbar[i] * xbar[j]);
    let trace: f64 = (0..d).map(|i| a[(i, i)]).sum();
    let lambda = if trace > 0.0 { alpha * trace / d as f64 } else { alpha.max(f64::MIN_POSITIVE) };
    for i in 0..d {
        a[(i, i)] += lambda;
    }
    let b = Mat::from_fn(d, k, |i, c| moments.counts[c] as f64 * (moments.mean(c)[i] - xbar[i]));
    let w = a.llt(Side::Lower).ok()?.solve(&b);
    let weights: Vec<f64> = (0..d).flat_map(|i| (0..k).map(move |c| (i, c))).map(|(i, c)| w[(i, c)]).collect();
    if !weights.iter().all(|v| v.is_finite()) {
        return None;
    }
    let bias = (0..k)
        .map(|c| moments.counts[c] as f64 / n - (0..d).map(|i| xbar[i] * weights[i * k + c]).sum::<f64>())
        .collect();
    Some(RidgeClassifier { weights, bias, lambda })
}

/// The linear probe's accuracy from its decision counts (None when nothing was decided).
pub fn linear_accuracy(d: &NccDecisions) -> Option<f64> {
    (d.counted > 0).then(|| d.linear_correct as f64 / d.counted as f64)
}
