//! Numerical rank and effective rank of a layer's embedding matrix X (N×D), from the
//! eigenvalues of its Gram matrix XᵀX (σᵢ² = λᵢ).

/// Numerical rank with the tolerance of `torch.linalg.matrix_rank` for float32 input:
/// σᵢ > σ_max · max(N, D) · ε_f32.
pub fn numerical_rank(singular_values: &[f64], rows: usize, cols: usize) -> usize {
    let smax = singular_values.iter().cloned().fold(0.0, f64::max);
    let tol = smax * rows.max(cols) as f64 * f32::EPSILON as f64;
    singular_values.iter().filter(|&&s| s > tol).count()
}

/// Effective rank (Roy & Vetterli 2007): exp of the entropy of σᵢ / Σσ.
pub fn effective_rank(singular_values: &[f64]) -> Option<f64> {
    let total: f64 = singular_values.iter().filter(|s| **s > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let h: f64 = singular_values
        .iter()
        .filter(|s| **s > 0.0)
        .map(|s| {
            let p = s / total;
            -p * p.ln()
        })
        .sum();
    Some(h.exp())
}
