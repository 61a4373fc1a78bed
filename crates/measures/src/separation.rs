//! He & Su's law of equi-separation: log D_l is linear in the layer index l, up to the layer
//! where the fuzziness D stops falling.

use serde::Serialize;

/// A layer whose fuzziness is within this factor of the smallest any layer reaches has
/// saturated: the equi-separation fit ends at the first such layer (docs/method.md).
pub const SATURATION_FACTOR: f64 = 1.1;

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct LogLinearFit {
    /// Slope of ln D_l against l: ln ρ, the per-layer decay.
    pub slope: f64,
    pub intercept: f64,
    /// exp(slope): the ratio D_{l+1}/D_l the fit implies.
    pub ratio: f64,
    /// Pearson correlation of log D_l with l (≈ −1 under the law).
    pub pearson_r: Option<f64>,
    /// Coefficient of determination of the fit, r² (1 for an exact geometric decay).
    #[serde(default)]
    pub r_squared: Option<f64>,
    pub layers_used: usize,
    /// The first and last layer the fit used (0 in results written before these were recorded).
    #[serde(default)]
    pub first_layer: usize,
    #[serde(default)]
    pub last_layer: usize,
}

/// Least-squares fit of ln D_l on l over every layer with a finite, positive D_l. `None` with
/// fewer than two such layers.
pub fn fit_log_linear(layer_values: &[(usize, f64)]) -> Option<LogLinearFit> {
    let pts: Vec<(usize, f64)> = layer_values.iter().copied().filter(|(_, v)| v.is_finite() && *v > 0.0).collect();
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let xs: Vec<f64> = pts.iter().map(|p| p.0 as f64).collect();
    let ys: Vec<f64> = pts.iter().map(|p| p.1.ln()).collect();
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let pearson_r = (syy > 0.0).then(|| sxy / (sxx * syy).sqrt());
    Some(LogLinearFit {
        slope,
        intercept: my - slope * mx,
        ratio: slope.exp(),
        pearson_r,
        r_squared: pearson_r.map(|r| r * r),
        layers_used: n,
        first_layer: pts[0].0,
        last_layer: pts[n - 1].0,
    })
}

/// The equi-separation fit: `fit_log_linear` over the layers up to saturation, the first layer
/// whose D is within `SATURATION_FACTOR` of the smallest D of any layer. The layers above it no
/// longer separate the classes further (or separate them less), and would bend the line.
pub fn fit_equi_separation(layer_values: &[(usize, f64)]) -> Option<LogLinearFit> {
    let pts: Vec<(usize, f64)> = layer_values.iter().copied().filter(|(_, v)| v.is_finite() && *v > 0.0).collect();
    let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let end = pts.iter().position(|p| p.1 <= SATURATION_FACTOR * min)?;
    fit_log_linear(&pts[..=end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_geometric_decay_is_fitted_exactly() {
        let pts: Vec<(usize, f64)> = (1..=6).map(|l| (l, 40.0 * 0.5f64.powi(l as i32))).collect();
        let f = fit_equi_separation(&pts).unwrap();
        assert!((f.ratio - 0.5).abs() < 1e-12 && (f.r_squared.unwrap() - 1.0).abs() < 1e-12, "{f:?}");
        assert_eq!((f.first_layer, f.last_layer, f.layers_used), (1, 6, 6));
    }

    #[test]
    fn the_fit_stops_at_the_first_saturated_layer() {
        // Decays by 1/4 per layer to layer 4, then flat within 10%, then rises again.
        let d = [64.0, 16.0, 4.0, 1.0, 1.05, 0.98, 1.5];
        let pts: Vec<(usize, f64)> = d.iter().enumerate().map(|(i, &v)| (i + 1, v)).collect();
        let f = fit_equi_separation(&pts).unwrap();
        // min 0.98 at layer 6; 1.1 × 0.98 = 1.078 ≥ 1.0 at layer 4: layers 1–4, ratio exactly 1/4.
        assert_eq!((f.first_layer, f.last_layer, f.layers_used), (1, 4, 4));
        assert!((f.ratio - 0.25).abs() < 1e-12, "{f:?}");
        // Against a brute-force least squares over the same points (normal equations).
        let (x, y): (Vec<f64>, Vec<f64>) = pts[..4].iter().map(|&(l, v)| (l as f64, v.ln())).unzip();
        let n = 4.0;
        let (sx, sy) = (x.iter().sum::<f64>(), y.iter().sum::<f64>());
        let sxx: f64 = x.iter().map(|a| a * a).sum();
        let sxy: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
        assert!((f.slope - slope).abs() < 1e-12);
        // All layers: the rise at the top bends the line and lowers r².
        let all = fit_log_linear(&pts).unwrap();
        assert!(all.r_squared.unwrap() < 0.9 && all.layers_used == 7, "{all:?}");
    }

    #[test]
    fn saturation_at_the_first_layer_leaves_nothing_to_fit() {
        let pts = [(1, 1.0), (2, 1.02), (3, 1.5)];
        assert!(fit_equi_separation(&pts).is_none());
        // Non-finite and non-positive values are skipped, not fitted.
        let pts = [(1, f64::NAN), (2, 8.0), (3, 0.0), (4, 2.0), (5, 0.5)];
        let f = fit_equi_separation(&pts).unwrap();
        assert_eq!((f.first_layer, f.last_layer, f.layers_used), (2, 5, 3));
    }
}
