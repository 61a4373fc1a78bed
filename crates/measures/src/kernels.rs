//! Small inner loops written so the compiler vectorises them. f64 additions cannot be reordered
//! by the compiler, so reductions keep four independent partial sums (a fixed order per row:
//! results do not depend on batching).

/// Σ (a_i − m_i)² for an f32 row against an f64 centre.
#[inline]
pub fn sq_dist(a: &[f32], m: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ac, ar) = a.split_at(a.len() / 4 * 4);
    let (mc, mr) = m.split_at(ac.len());
    for (x, y) in ac.chunks_exact(4).zip(mc.chunks_exact(4)) {
        for k in 0..4 {
            let e = x[k] as f64 - y[k];
            acc[k] += e * e;
        }
    }
    let mut tail = 0.0;
    for (&x, &y) in ar.iter().zip(mr) {
        let e = x as f64 - y;
        tail += e * e;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Convert an f32 row to f64 into `out` (appending) and return its squared norm.
#[inline]
pub fn widen_with_sq_norm(a: &[f32], out: &mut Vec<f64>) -> f64 {
    let start = out.len();
    out.resize(start + a.len(), 0.0);
    let dst = &mut out[start..];
    for (o, &v) in dst.iter_mut().zip(a) {
        *o = v as f64;
    }
    let mut acc = [0.0f64; 4];
    let (c, r) = dst.split_at(dst.len() / 4 * 4);
    for x in c.chunks_exact(4) {
        for k in 0..4 {
            acc[k] += x[k] * x[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + r.iter().map(|v| v * v).sum::<f64>()
}

/// acc += a (f32 row widened to f64).
#[inline]
pub fn add_widened(acc: &mut [f64], a: &[f32]) {
    for (s, &v) in acc.iter_mut().zip(a) {
        *s += v as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_loops() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let m: Vec<f64> = (0..37).map(|i| (i as f64 * 0.11).cos()).collect();
        let plain: f64 = a.iter().zip(&m).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
        assert!((sq_dist(&a, &m) - plain).abs() < 1e-12 * plain);
        let mut out = vec![1.0];
        let n = widen_with_sq_norm(&a, &mut out);
        assert_eq!(out.len(), 38);
        assert!(out[1..].iter().zip(&a).all(|(&o, &v)| o == v as f64));
        let plain: f64 = a.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!((n - plain).abs() < 1e-12 * plain);
    }
}
