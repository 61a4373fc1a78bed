//! CDNV, the class-distance normalized variance (Galanti, György & Hutter, ICLR 2022;
//! docs/method.md, "CDNV"):
//! V(S_i, S_j) = (Var(S_i) + Var(S_j)) / (2 ‖μ_i − μ_j‖²).

use crate::statistics::ClassMoments;

/// Relative distance below which two class means are treated as the same point.
pub const COINCIDENT_RELATIVE: f64 = 1e-12;

fn sq_norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum()
}

/// CDNV of every unordered class pair (i < j), as a C×C symmetric matrix with NaN on the
/// diagonal and for pairs involving a class without samples. Coincident means give +∞:
/// means closer than COINCIDENT_RELATIVE × their norm count as coincident, because streamed f64
/// means of identical data can differ by rounding (~1e-16 relative) depending on batching.
pub fn cdnv_pairs(m: &ClassMoments) -> Vec<f64> {
    let c = m.num_classes();
    let mut out = vec![f64::NAN; c * c];
    for i in 0..c {
        for j in (i + 1)..c {
            let (Some(vi), Some(vj)) = (m.variance(i), m.variance(j)) else {
                continue;
            };
            // Difference first, then square: no ‖a‖² + ‖b‖² − 2a·b cancellation.
            let dist2: f64 = m.mean(i).iter().zip(m.mean(j)).map(|(a, b)| (a - b) * (a - b)).sum();
            let scale2 = sq_norm(m.mean(i)).max(sq_norm(m.mean(j)));
            let v = if dist2 > COINCIDENT_RELATIVE * COINCIDENT_RELATIVE * scale2 && dist2 > 0.0 {
                (vi + vj) / (2.0 * dist2)
            } else {
                f64::INFINITY
            };
            out[i * c + j] = v;
            out[j * c + i] = v;
        }
    }
    out
}

/// Average CDNV over all unordered pairs of classes that have samples (the layer score).
/// `None` when fewer than two classes have samples.
pub fn cdnv_mean(pairs: &[f64], num_classes: usize) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for i in 0..num_classes {
        for j in (i + 1)..num_classes {
            let v = pairs[i * num_classes + j];
            if !v.is_nan() {
                sum += v;
                n += 1;
            }
        }
    }
    (n > 0).then(|| sum / n as f64)
}
