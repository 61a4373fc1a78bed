//! A layer's weight spectrum: the singular values of its weight matrix W (out × in; a
//! convolution reshaped to out × in·k·k), its numerical rank at a relative threshold, its stable
//! rank, its entropy effective rank, and how well its top right singular directions align with
//! the class means of the layer's input (docs/method.md, "Weight spectra").

use faer::Mat;
use serde::{Deserialize, Serialize};

use crate::rank::effective_rank;

/// A singular value counts toward the numerical rank of a weight when it exceeds this fraction
/// of the largest (weights are never exactly low-rank; f32's rounding floor would count nearly
/// every direction).
pub const WEIGHT_RANK_RTOL: f64 = 1e-3;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WeightSpectrum {
    pub rows: usize,
    pub cols: usize,
    /// Nonincreasing.
    pub singular_values: Vec<f64>,
    /// σᵢ > WEIGHT_RANK_RTOL · σ_max.
    pub numerical_rank: usize,
    /// ‖W‖²_F / ‖W‖²₂ = Σσᵢ² / σ_max² (None for W = 0).
    pub stable_rank: Option<f64>,
    /// exp of the entropy of σᵢ / Σσ (Roy & Vetterli).
    pub effective_rank: Option<f64>,
    /// Mean cosine of the principal angles between the top-C right singular subspace of W and
    /// the span of the input's centred class means (C classes; None without class means).
    pub class_mean_alignment: Option<f64>,
}

/// Orthonormal columns spanning the columns of `a` (those with a singular value above 1e-10 of
/// the largest), from its thin SVD.
fn orthonormal_span(a: &Mat<f64>) -> Option<Mat<f64>> {
    let svd = a.thin_svd().ok()?;
    let s = svd.S().column_vector();
    let smax = (0..s.nrows()).map(|i| s[i]).fold(0.0, f64::max);
    let keep = (0..s.nrows()).filter(|&i| s[i] > 1e-10 * smax).count();
    (keep > 0).then(|| svd.U().subcols(0, keep).to_owned())
}

/// The spectrum of `w` (row-major, `rows` × `cols`), and with `class_means` (row-major, C ×
/// `cols`: the class means of the layer's input) the alignment of its top-C right singular
/// subspace with their span, centred on their mean. None when the SVD fails (non-finite input).
pub fn weight_spectrum(
    w: &[f32],
    rows: usize,
    cols: usize,
    class_means: Option<(&[f64], usize)>,
) -> Option<WeightSpectrum> {
    assert_eq!(w.len(), rows * cols, "weight of {rows} × {cols} has {} values", w.len());
    let m = Mat::from_fn(rows, cols, |i, j| w[i * cols + j] as f64);
    let svd = m.thin_svd().ok()?;
    let s = svd.S().column_vector();
    let sv: Vec<f64> = (0..s.nrows()).map(|i| s[i]).collect();
    let smax = sv.first().copied().unwrap_or(0.0);
    let numerical_rank = sv.iter().filter(|&&x| x > WEIGHT_RANK_RTOL * smax).count();
    let stable_rank = (smax > 0.0).then(|| sv.iter().map(|x| x * x).sum::<f64>() / (smax * smax));
    let class_mean_alignment = class_means.and_then(|(means, c)| {
        assert_eq!(means.len(), c * cols, "class means of {c} × {cols} have {} values", means.len());
        // The centred means as columns (cols × C).
        let centre: Vec<f64> = (0..cols).map(|j| (0..c).map(|k| means[k * cols + j]).sum::<f64>() / c as f64).collect();
        let centred = Mat::from_fn(cols, c, |j, k| means[k * cols + j] - centre[j]);
        let q_means = orthonormal_span(&centred)?;
        // The top-C right singular vectors (V's first columns: orthonormal already).
        let top = c.min(sv.len());
        let v = svd.V().subcols(0, top);
        let cross = v.transpose() * q_means.as_ref();
        let cosines = cross.thin_svd().ok()?;
        let cs = cosines.S().column_vector();
        let n = cs.nrows();
        (n > 0).then(|| (0..n).map(|i| cs[i].min(1.0)).sum::<f64>() / n as f64)
    });
    Some(WeightSpectrum {
        rows,
        cols,
        effective_rank: effective_rank(&sv),
        singular_values: sv,
        numerical_rank,
        stable_rank,
        class_mean_alignment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_spectrum() {
        // diag(3, 2, 1e-4) padded to 3 × 4: singular values 3, 2, 1e-4; rank 2 at 1e-3.
        let mut w = vec![0.0f32; 12];
        w[0] = 3.0;
        w[5] = 2.0;
        w[10] = 1e-4;
        let s = weight_spectrum(&w, 3, 4, None).unwrap();
        assert!((s.singular_values[0] - 3.0).abs() < 1e-12 && (s.singular_values[1] - 2.0).abs() < 1e-12);
        assert_eq!(s.numerical_rank, 2);
        assert!((s.stable_rank.unwrap() - (9.0 + 4.0 + 1e-8) / 9.0).abs() < 1e-9);
        assert!(s.class_mean_alignment.is_none());
    }

    #[test]
    fn alignment_is_one_on_the_means_span_and_zero_orthogonal_to_it() {
        // Input dimension 4; class means (3 classes) spanning e1, e2 after centring.
        let means = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        // W's rows read e1 and e2 (its top right singular subspace is span(e1, e2)) ...
        let on = [2.0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let a = weight_spectrum(&on, 2, 4, Some((&means, 3))).unwrap().class_mean_alignment.unwrap();
        assert!((a - 1.0).abs() < 1e-12, "{a}");
        // ... or e3 and e4, orthogonal to every centred mean.
        let off = [0.0f32, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let a = weight_spectrum(&off, 2, 4, Some((&means, 3))).unwrap().class_mean_alignment.unwrap();
        assert!(a.abs() < 1e-12, "{a}");
    }
}
