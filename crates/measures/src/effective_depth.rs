//! ε-effective depth (docs/method.md, "Effective depth"): the first layer (1-based) whose NCC
//! train error is ≤ ε.

/// `ncc_train_err[i]` is the NCC train error of layer i+1. Returns `None` ("not separable")
/// when no layer qualifies.
pub fn effective_depth(ncc_train_err: &[f64], eps: f64) -> Option<usize> {
    ncc_train_err.iter().position(|&e| e <= eps).map(|i| i + 1)
}
