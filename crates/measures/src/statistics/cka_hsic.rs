//! Linear CKA between every pair of layers, as a streaming statistic: the sum over minibatches
//! of the unbiased HSIC of each pair's Gram matrices (Nguyen, Raghu & Kornblith 2021), from
//! which `cka.rs` forms CKA. Minibatches are cut from the rows in the order they arrive, every
//! [`CKA_BATCH_ROWS`] rows of the measured classes, whatever batches the caller feeds, so every
//! reduction (host, device, Python) sees the same minibatches and a data-parallel probe only
//! changes where the last, shorter one falls (docs/method.md, "Layer similarity (CKA)").

use rayon::prelude::*;

use super::syrk::{self, Isa, Start};

/// Rows per CKA minibatch. A minibatch costs n²·Σ D_i for the Gram matrices and n²·L(L+1)/2 for
/// the pairs; the estimator is unbiased at any n ≥ 4, and n sets its variance.
pub const CKA_BATCH_ROWS: usize = 256;

/// The unbiased HSIC needs at least this many rows in a minibatch (its 1/(n(n−3)) factor); a
/// trailing minibatch with fewer is left out.
pub const CKA_MIN_ROWS: usize = 4;

/// Σ over minibatches of HSIC₁(K_a, K_b), every pair of layers a ≤ b.
#[derive(Clone, Debug, PartialEq)]
pub struct CkaHsic {
    pub layers: usize,
    /// Minibatches summed.
    pub batches: u64,
    /// Rows in them.
    pub rows: u64,
    /// L×L row-major, symmetric.
    pub hsic: Vec<f64>,
}

impl CkaHsic {
    pub fn new(layers: usize) -> CkaHsic {
        CkaHsic { layers, batches: 0, rows: 0, hsic: vec![0.0; layers * layers] }
    }

    pub fn from_parts(layers: usize, batches: u64, rows: u64, hsic: Vec<f64>) -> Option<CkaHsic> {
        (hsic.len() == layers * layers).then_some(CkaHsic { layers, batches, rows, hsic })
    }

    pub fn merge(&mut self, other: &CkaHsic) {
        assert_eq!(self.layers, other.layers, "CKA statistics of different layer counts");
        self.batches += other.batches;
        self.rows += other.rows;
        for (a, b) in self.hsic.iter_mut().zip(&other.hsic) {
            *a += *b;
        }
    }

    pub fn is_finite(&self) -> bool {
        self.hsic.iter().all(|v| v.is_finite())
    }

    /// Add one minibatch: every layer's n×n Gram matrix with its diagonal set to zero
    /// ([`batch_gram`]).
    pub fn add_batch(&mut self, grams: &[Vec<f64>], n: usize) {
        assert_eq!(grams.len(), self.layers, "one Gram matrix per layer");
        if n < CKA_MIN_ROWS {
            return;
        }
        let sums: Vec<(Vec<f64>, f64)> = grams
            .par_iter()
            .map(|k| {
                let r: Vec<f64> = k.chunks_exact(n).map(|row| row.iter().sum()).collect();
                let s = r.iter().sum();
                (r, s)
            })
            .collect();
        let l = self.layers;
        let pairs: Vec<(usize, usize)> = (0..l).flat_map(|a| (a..l).map(move |b| (a, b))).collect();
        let values: Vec<f64> =
            pairs.par_iter().map(|&(a, b)| hsic_unbiased(&grams[a], &sums[a], &grams[b], &sums[b], n)).collect();
        for (&(a, b), v) in pairs.iter().zip(values) {
            self.hsic[a * l + b] += v;
            if a != b {
                self.hsic[b * l + a] += v;
            }
        }
        self.batches += 1;
        self.rows += n as u64;
    }
}

/// HSIC₁ of Song et al. (2012) for Gram matrices with zero diagonals:
/// [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)).
fn hsic_unbiased(k: &[f64], (kr, ks): &(Vec<f64>, f64), l: &[f64], (lr, ls): &(Vec<f64>, f64), n: usize) -> f64 {
    let nf = n as f64;
    let trace: f64 = k.iter().zip(l).map(|(a, b)| a * b).sum();
    let cross: f64 = kr.iter().zip(lr).map(|(a, b)| a * b).sum();
    (trace + ks * ls / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * cross) / (nf * (nf - 3.0))
}

/// X·Xᵀ of `n` f32 rows of `d` values, in f64, full n×n row-major with its diagonal set to
/// zero. Through the Gram kernel on Xᵀ, so each entry is one f64 sum of exact products over the
/// features in order: the same bits on every instruction set.
pub fn batch_gram(x: &[f32], n: usize, d: usize) -> Vec<f64> {
    assert_eq!(x.len(), n * d, "{n} rows of {d} values");
    if n == 0 {
        return Vec::new();
    }
    let mut xt = vec![0f32; n * d];
    for (i, row) in x.chunks_exact(d).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            xt[k * n + i] = v;
        }
    }
    let cols: Vec<&[f32]> = xt.chunks_exact(n).collect();
    let np = syrk::padded(n);
    let mut s = vec![0.0; np * np];
    let mut pack = Vec::new();
    let isa = Isa::best();
    for (c, chunk) in cols.chunks(syrk::CHUNK).enumerate() {
        let start = if c == 0 { Start::Zero } else { Start::Same };
        syrk::update_lower(isa, &mut s, start, chunk, n, &mut pack);
    }
    let mut g = vec![0.0; n * n];
    for j in 0..n {
        for i in j + 1..n {
            let v = s[j * np + i];
            g[i * n + j] = v;
            g[j * n + i] = v;
        }
    }
    g
}

/// Cuts the rows a reduction receives into minibatches of [`CKA_BATCH_ROWS`] rows of the measured
/// classes and adds each to a [`CkaHsic`].
#[derive(Clone, Debug)]
pub struct CkaBatcher {
    dims: Vec<usize>,
    rows: Vec<Vec<f32>>,
    n: usize,
    pub hsic: CkaHsic,
}

impl CkaBatcher {
    pub fn new(dims: &[usize]) -> CkaBatcher {
        CkaBatcher {
            dims: dims.to_vec(),
            rows: dims.iter().map(|&d| Vec::with_capacity(CKA_BATCH_ROWS * d)).collect(),
            n: 0,
            hsic: CkaHsic::new(dims.len()),
        }
    }

    /// Feed one batch: every layer's rows (row-major), and which rows to keep (measured classes).
    pub fn push(&mut self, layers: &[&[f32]], keep: &[bool]) {
        assert_eq!(layers.len(), self.dims.len(), "one batch per layer");
        for (i, &kept) in keep.iter().enumerate() {
            if !kept {
                continue;
            }
            for ((buf, x), &d) in self.rows.iter_mut().zip(layers).zip(&self.dims) {
                buf.extend_from_slice(&x[i * d..(i + 1) * d]);
            }
            self.n += 1;
            if self.n == CKA_BATCH_ROWS {
                self.flush();
            }
        }
    }

    /// Add the rows held as one minibatch (left out when fewer than CKA_MIN_ROWS).
    pub fn flush(&mut self) {
        let n = self.n;
        if n >= CKA_MIN_ROWS {
            let grams: Vec<Vec<f64>> =
                self.rows.par_iter().zip(&self.dims).map(|(x, &d)| batch_gram(x, n, d)).collect();
            self.hsic.add_batch(&grams, n);
        }
        for buf in &mut self.rows {
            buf.clear();
        }
        self.n = 0;
    }

    /// The statistic, with the rows still held added as a last minibatch.
    pub fn finish(mut self) -> CkaHsic {
        self.flush();
        self.hsic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_gram_is_the_naive_product_with_a_zero_diagonal() {
        let (n, d) = (37, 13);
        let x: Vec<f32> = (0..n * d).map(|v| ((v * 7919) % 1000) as f32 / 97.0 - 5.0).collect();
        let g = batch_gram(&x, n, d);
        for i in 0..n {
            for j in 0..n {
                let want =
                    if i == j { 0.0 } else { (0..d).fold(0.0, |s, k| s + x[i * d + k] as f64 * x[j * d + k] as f64) };
                assert_eq!(g[i * n + j], want, "({i}, {j})");
            }
        }
    }

    #[test]
    fn batcher_cuts_the_same_minibatches_from_any_feeding() {
        let dims = [3, 5];
        let n = 2 * CKA_BATCH_ROWS + 10;
        let a: Vec<f32> = (0..n * 3).map(|v| ((v * 31) % 17) as f32 - 8.0).collect();
        let b: Vec<f32> = (0..n * 5).map(|v| ((v * 13) % 23) as f32 / 3.0).collect();
        let keep: Vec<bool> = (0..n).map(|i| i % 7 != 3).collect();
        let mut one = CkaBatcher::new(&dims);
        one.push(&[&a, &b], &keep);
        let one = one.finish();
        let mut many = CkaBatcher::new(&dims);
        for (s, e) in [(0, 1), (1, 100), (100, 300), (300, n)] {
            many.push(&[&a[s * 3..e * 3], &b[s * 5..e * 5]], &keep[s..e]);
        }
        let many = many.finish();
        assert_eq!(one, many);
        let kept = keep.iter().filter(|&&k| k).count() as u64;
        assert_eq!(one.rows, kept);
        assert_eq!(one.batches, kept.div_ceil(CKA_BATCH_ROWS as u64));
    }
}
