//! Neural-collapse measures built on class means (docs/method.md, "Neural-collapse measures"):
//! NC1 trace ratio, He–Su separation fuzziness, NC2 equinorm / equiangularity, NC3 self-duality.
//!
//! Σ_B and SS_b have rank ≤ C−1 and live in the span of the centred class means, so
//! Tr(Σ_W Σ_B⁺) = Tr(QᵀΣ_W Q · (QᵀΣ_B Q)⁺) for an orthonormal basis Q (D×r, r ≤ C) of that span.
//! Only the r×r matrix QᵀΣ_W Q is accumulated (from the centred rows projected on Q), so these
//! measures cost O(C·D) memory, never a D×D covariance.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, Par, Side};

use crate::statistics::{ClassMoments, WithinClassProjection};

/// Eigenvalues of Σ_B below this fraction of the largest are treated as zero by the
/// pseudo-inverse (in addition to keeping at most C−1 of them).
pub const PINV_RELATIVE_TOLERANCE: f64 = 1e-10;

/// The span of the centred class means and the centred means expressed in it.
#[derive(Clone, Debug)]
pub struct BetweenClassSubspace {
    pub dim: usize,
    pub num_classes: usize,
    /// Global mean μ_G of all samples.
    pub global_mean: Vec<f64>,
    /// Orthonormal basis Q, row-major D×r.
    pub basis: Vec<f64>,
    pub rank: usize,
    /// qᶜ = Qᵀ(μ_c − μ_G), row-major C×r.
    pub centred_coords: Vec<f64>,
    pub counts: Vec<u64>,
}

impl BetweenClassSubspace {
    pub fn new(m: &ClassMoments) -> Self {
        let (d, c) = (m.dim, m.num_classes());
        let g = m.global_mean();
        let centred = Mat::<f64>::from_fn(d, c, |i, k| m.mean(k)[i] - g[i]);
        let svd = centred.thin_svd().expect("SVD of the centred class means did not converge");
        let u = svd.U();
        let r = u.ncols();
        let mut basis = vec![0.0; d * r];
        for i in 0..d {
            for j in 0..r {
                basis[i * r + j] = u[(i, j)];
            }
        }
        let mut coords = vec![0.0; c * r];
        let dst = MatMut::from_row_major_slice_mut(&mut coords, c, r);
        matmul(dst, Accum::Replace, centred.transpose(), u, 1.0, Par::Seq);
        BetweenClassSubspace {
            dim: d,
            num_classes: c,
            global_mean: g,
            basis,
            rank: r,
            centred_coords: coords,
            counts: m.counts.clone(),
        }
    }

    /// Between-class matrix in the basis: Σ_k w_k q_k q_kᵀ.
    fn between(&self, weights: &[f64]) -> Mat<f64> {
        let r = self.rank;
        Mat::from_fn(r, r, |a, b| {
            (0..self.num_classes)
                .map(|k| weights[k] * self.centred_coords[k * r + a] * self.centred_coords[k * r + b])
                .sum()
        })
    }
}

/// Tr(W B⁺) with B symmetric PSD, keeping at most `max_rank` eigenvalues, each above
/// PINV_RELATIVE_TOLERANCE × the largest.
fn trace_with_pinv(w: &Mat<f64>, b: &Mat<f64>, max_rank: usize) -> Option<f64> {
    let evd = b.self_adjoint_eigen(Side::Lower).ok()?;
    let s = evd.S();
    let v = evd.U();
    let n = b.nrows();
    let vals: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let lmax = vals.iter().cloned().fold(0.0, f64::max);
    if lmax <= 0.0 {
        return None;
    }
    // Eigenvalues come in nondecreasing order; walk from the top.
    let mut acc = 0.0;
    for (kept, k) in (0..n).rev().enumerate() {
        if kept >= max_rank || vals[k] <= PINV_RELATIVE_TOLERANCE * lmax {
            break;
        }
        let mut quad = 0.0;
        for a in 0..n {
            for bb in 0..n {
                quad += v[(a, k)] * w[(a, bb)] * v[(bb, k)];
            }
        }
        acc += quad / vals[k];
    }
    Some(acc)
}

/// NC1 = Tr(Σ_W Σ_B⁺)/C (Papyan et al.), Σ_B = (1/C)Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ.
pub fn nc1(sub: &BetweenClassSubspace, within: &WithinClassProjection) -> Option<f64> {
    let c = sub.num_classes;
    let sw = &within.sum * (1.0 / within.count as f64);
    let sb = sub.between(&vec![1.0 / c as f64; c]);
    trace_with_pinv(&sw, &sb, c.saturating_sub(1)).map(|t| t / c as f64)
}

/// He–Su separation fuzziness D = Tr(SS_w SS_b⁺), SS_b = (1/n)Σ_k n_k (x̄_k − x̄)(x̄_k − x̄)ᵀ.
pub fn fuzziness(sub: &BetweenClassSubspace, within: &WithinClassProjection) -> Option<f64> {
    let n = within.count as f64;
    let sw = &within.sum * (1.0 / n);
    let weights: Vec<f64> = sub.counts.iter().map(|&k| k as f64 / n).collect();
    trace_with_pinv(&sw, &sub.between(&weights), sub.num_classes.saturating_sub(1))
}

/// Norms ‖μ_c − μ_G‖ of the centred class means.
fn centred_norms(sub: &BetweenClassSubspace) -> Vec<f64> {
    let r = sub.rank;
    sub.centred_coords.chunks_exact(r).map(|q| q.iter().map(|v| v * v).sum::<f64>().sqrt()).collect()
}

/// NC2 equinorm: std_c ‖μ_c − μ_G‖ / mean_c ‖μ_c − μ_G‖ (population std).
pub fn nc2_equinorm(sub: &BetweenClassSubspace) -> Option<f64> {
    let norms = centred_norms(sub);
    let c = norms.len() as f64;
    let mean = norms.iter().sum::<f64>() / c;
    let var = norms.iter().map(|n| (n - mean).powi(2)).sum::<f64>() / c;
    (mean > 0.0).then(|| var.sqrt() / mean)
}

/// NC2 equiangularity: mean over c ≠ c′ of |cos(μ_c − μ_G, μ_c′ − μ_G) + 1/(C−1)|.
pub fn nc2_equiangularity(sub: &BetweenClassSubspace) -> Option<f64> {
    let (c, r) = (sub.num_classes, sub.rank);
    if c < 2 {
        return None;
    }
    let norms = centred_norms(sub);
    let q = &sub.centred_coords;
    let mut sum = 0.0;
    let mut n = 0usize;
    for i in 0..c {
        for j in 0..c {
            if i == j || norms[i] == 0.0 || norms[j] == 0.0 {
                continue;
            }
            let dot: f64 = (0..r).map(|k| q[i * r + k] * q[j * r + k]).sum();
            sum += (dot / (norms[i] * norms[j]) + 1.0 / (c as f64 - 1.0)).abs();
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// NC3 self-duality ‖W/‖W‖_F − Ṁ/‖Ṁ‖_F‖²_F, with W the classifier (C×D, row-major) and Ṁ the
/// centred class means (rows μ_c − μ_G).
pub fn nc3_self_duality(m: &ClassMoments, global_mean: &[f64], weight: &[f32]) -> Option<f64> {
    let (c, d) = (m.num_classes(), m.dim);
    if weight.len() != c * d {
        return None;
    }
    let wn: f64 = weight.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let mut mn = 0.0;
    for k in 0..c {
        for (i, &g) in global_mean.iter().enumerate() {
            mn += (m.mean(k)[i] - g).powi(2);
        }
    }
    let mn = mn.sqrt();
    if wn == 0.0 || mn == 0.0 {
        return None;
    }
    let mut acc = 0.0;
    for k in 0..c {
        for i in 0..d {
            let diff = weight[k * d + i] as f64 / wn - (m.mean(k)[i] - global_mean[i]) / mn;
            acc += diff * diff;
        }
    }
    Some(acc)
}
