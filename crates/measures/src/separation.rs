//! He & Su's law of equi-separation: log D_l is linear in the layer index l.

use serde::Serialize;

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct LogLinearFit {
    /// Slope of log D_l against l: log ρ, the per-layer decay.
    pub slope: f64,
    pub intercept: f64,
    /// exp(slope): the ratio D_{l+1}/D_l the fit implies.
    pub ratio: f64,
    /// Pearson correlation of log D_l with l (≈ −1 under the law).
    pub pearson_r: Option<f64>,
    pub layers_used: usize,
}

/// Least-squares fit of log D_l on l over layers with a finite, positive D_l. `None` with fewer
/// than two such layers.
pub fn fit_log_linear(layer_values: &[(usize, f64)]) -> Option<LogLinearFit> {
    let pts: Vec<(f64, f64)> =
        layer_values.iter().filter(|(_, v)| v.is_finite() && *v > 0.0).map(|&(l, v)| (l as f64, v.ln())).collect();
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let pearson_r = (syy > 0.0).then(|| sxy / (sxx * syy).sqrt());
    Some(LogLinearFit { slope, intercept: my - slope * mx, ratio: slope.exp(), pearson_r, layers_used: n })
}
