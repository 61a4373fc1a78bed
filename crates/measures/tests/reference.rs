//! The streaming engine against a brute-force f64 reference that holds all data in memory and
//! follows the textbook definitions directly (full D×D covariances, SVD of the data matrix).
// The reference is written as index loops on purpose: it should read like the formulas.
#![allow(clippy::needless_range_loop)]

use depthprobe_measures::{LayerProbe, ProbeResult, ProbeSpec, Split};
use faer::{Mat, Side};

mod common;
use common::Rng;

struct Data {
    x: Vec<Vec<f32>>, // per layer, row-major
    y: Vec<u32>,
    dims: Vec<usize>,
}

/// Class-structured data: layer l has class offsets of scale `sep[l]` plus unit noise.
fn make_data(seed: u64, n: usize, c: usize, dims: &[usize], sep: &[f64]) -> Data {
    let mut r = Rng(seed);
    let y: Vec<u32> = (0..n).map(|i| if i < c { i as u32 } else { (r.next() % c as u64) as u32 }).collect();
    let mut x = Vec::new();
    for (l, &d) in dims.iter().enumerate() {
        let centers: Vec<f64> = (0..c * d).map(|_| r.normal() * sep[l]).collect();
        let shift = 3.0 * r.normal();
        let mut v = Vec::with_capacity(n * d);
        for &yi in &y {
            for j in 0..d {
                v.push((centers[yi as usize * d + j] + r.normal() + shift) as f32);
            }
        }
        x.push(v);
    }
    Data { x, y, dims: dims.to_vec() }
}

/// Run the probe with the given batch size and row order (a permutation of 0..n).
fn run_probe(
    train: &Data,
    test: &Data,
    c: usize,
    batch: usize,
    order: &[usize],
    spec_edit: impl Fn(&mut ProbeSpec),
) -> ProbeResult {
    let mut spec = ProbeSpec::new(c, train.dims.clone());
    spec.eps = vec![0.01, 0.05, 0.1, 0.3];
    spec_edit(&mut spec);
    let mut probe = LayerProbe::new(spec).unwrap();
    let feed = |probe: &mut LayerProbe, data: &Data, split: Split, order: &[usize]| {
        for chunk in order.chunks(batch) {
            let y: Vec<u32> = chunk.iter().map(|&i| data.y[i]).collect();
            let xs: Vec<Vec<f32>> = data
                .dims
                .iter()
                .enumerate()
                .map(|(l, &d)| chunk.iter().flat_map(|&i| data.x[l][i * d..(i + 1) * d].iter().copied()).collect())
                .collect();
            let refs: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
            probe.update_all(split, &refs, &y).unwrap();
        }
    };
    feed(&mut probe, train, Split::Train, order);
    probe.next_pass().unwrap();
    feed(&mut probe, train, Split::Train, order);
    let test_order: Vec<usize> = (0..test.y.len()).rev().collect();
    feed(&mut probe, test, Split::Test, &test_order);
    probe.finish().unwrap()
}

// ---------- brute-force reference ----------

struct RefLayer {
    means: Vec<Vec<f64>>,
    vars: Vec<f64>,
}

fn rows(data: &Data, l: usize) -> Vec<Vec<f64>> {
    let d = data.dims[l];
    data.x[l].chunks(d).map(|r| r.iter().map(|&v| v as f64).collect()).collect()
}

fn ref_moments(x: &[Vec<f64>], y: &[u32], c: usize) -> RefLayer {
    let d = x[0].len();
    let mut means = vec![vec![0.0; d]; c];
    let mut n = vec![0usize; c];
    for (r, &k) in x.iter().zip(y) {
        n[k as usize] += 1;
        for j in 0..d {
            means[k as usize][j] += r[j];
        }
    }
    for k in 0..c {
        for j in 0..d {
            means[k][j] /= n[k] as f64;
        }
    }
    let mut vars = vec![0.0; c];
    for (r, &k) in x.iter().zip(y) {
        vars[k as usize] += (0..d).map(|j| (r[j] - means[k as usize][j]).powi(2)).sum::<f64>();
    }
    for k in 0..c {
        vars[k] /= n[k] as f64;
    }
    RefLayer { means, vars }
}

fn ref_cdnv(m: &RefLayer) -> f64 {
    let c = m.means.len();
    let mut s = 0.0;
    let mut n = 0;
    for i in 0..c {
        for j in 0..c {
            if i == j {
                continue;
            }
            let dist: f64 = m.means[i].iter().zip(&m.means[j]).map(|(a, b)| (a - b).powi(2)).sum();
            s += (m.vars[i] + m.vars[j]) / (2.0 * dist);
            n += 1;
        }
    }
    s / n as f64 // ordered pairs: same value as unordered
}

fn ref_ncc_acc(x: &[Vec<f64>], y: &[u32], means: &[Vec<f64>]) -> f64 {
    let mut correct = 0;
    for (r, &k) in x.iter().zip(y) {
        let d: Vec<f64> = means.iter().map(|m| r.iter().zip(m).map(|(a, b)| (a - b).powi(2)).sum()).collect();
        let best = (0..d.len()).fold(0, |b, i| if d[i] < d[b] { i } else { b });
        correct += (best == k as usize) as usize;
    }
    correct as f64 / x.len() as f64
}

fn pinv_trace(w: &Mat<f64>, b: &Mat<f64>, max_rank: usize) -> f64 {
    let e = b.self_adjoint_eigen(Side::Lower).unwrap();
    let n = b.nrows();
    let vals: Vec<f64> = (0..n).map(|i| e.S()[i]).collect();
    let lmax = vals.iter().cloned().fold(0.0, f64::max);
    // Pseudo-inverse with the same convention: top ≤ C−1 eigenvalues above 1e-10·λmax.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| vals[b].partial_cmp(&vals[a]).unwrap());
    let mut pinv = Mat::<f64>::zeros(n, n);
    for &k in idx.iter().take(max_rank) {
        if vals[k] <= 1e-10 * lmax {
            break;
        }
        for a in 0..n {
            for bb in 0..n {
                pinv[(a, bb)] += e.U()[(a, k)] * e.U()[(bb, k)] / vals[k];
            }
        }
    }
    let prod = w * &pinv;
    (0..n).map(|i| prod[(i, i)]).sum()
}

/// (nc1, fuzziness, equinorm, equiangularity)
fn ref_collapse(x: &[Vec<f64>], y: &[u32], m: &RefLayer) -> (f64, f64, f64, f64) {
    let c = m.means.len();
    let d = x[0].len();
    let n = x.len() as f64;
    let counts: Vec<f64> = (0..c).map(|k| y.iter().filter(|&&v| v as usize == k).count() as f64).collect();
    let g: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let mut sw = Mat::<f64>::zeros(d, d);
    for (r, &k) in x.iter().zip(y) {
        for a in 0..d {
            for b in 0..d {
                sw[(a, b)] += (r[a] - m.means[k as usize][a]) * (r[b] - m.means[k as usize][b]) / n;
            }
        }
    }
    let mut sb = Mat::<f64>::zeros(d, d);
    let mut ssb = Mat::<f64>::zeros(d, d);
    for k in 0..c {
        for a in 0..d {
            for b in 0..d {
                let v = (m.means[k][a] - g[a]) * (m.means[k][b] - g[b]);
                sb[(a, b)] += v / c as f64;
                ssb[(a, b)] += v * counts[k] / n;
            }
        }
    }
    let nc1 = pinv_trace(&sw, &sb, c - 1) / c as f64;
    let fz = pinv_trace(&sw, &ssb, c - 1);
    let cm: Vec<Vec<f64>> = m.means.iter().map(|mu| mu.iter().zip(&g).map(|(a, b)| a - b).collect()).collect();
    let norms: Vec<f64> = cm.iter().map(|v| v.iter().map(|a| a * a).sum::<f64>().sqrt()).collect();
    let mean = norms.iter().sum::<f64>() / c as f64;
    let std = (norms.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64).sqrt();
    let mut ang = 0.0;
    for i in 0..c {
        for j in 0..c {
            if i != j {
                let cos = cm[i].iter().zip(&cm[j]).map(|(a, b)| a * b).sum::<f64>() / (norms[i] * norms[j]);
                ang += (cos + 1.0 / (c as f64 - 1.0)).abs();
            }
        }
    }
    (nc1, fz, std / mean, ang / (c * (c - 1)) as f64)
}

fn ref_ranks(x: &[Vec<f64>]) -> (usize, f64) {
    let (n, d) = (x.len(), x[0].len());
    let m = Mat::<f64>::from_fn(n, d, |i, j| x[i][j]);
    let sv = m.singular_values().unwrap();
    let tol = sv[0] * n.max(d) as f64 * f32::EPSILON as f64;
    let total: f64 = sv.iter().sum();
    let h: f64 = sv.iter().filter(|s| **s > 0.0).map(|s| -(s / total) * (s / total).ln()).sum();
    (sv.iter().filter(|&&s| s > tol).count(), h.exp())
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(1e-300)
    }
}

#[test]
fn every_measure_matches_brute_force_reference() {
    let c = 4;
    let dims = [3, 7, 12];
    let train = make_data(1, 400, c, &dims, &[0.3, 1.0, 3.0]);
    let test = make_data(2, 150, c, &dims, &[0.3, 1.0, 3.0]);
    let order: Vec<usize> = (0..400).collect();
    let res = run_probe(&train, &test, c, 37, &order, |s| s.rank_max_dim = 1024);
    let mut errs = Vec::new();
    for (l, lr) in res.layers.iter().enumerate() {
        let xtr = rows(&train, l);
        let xte = rows(&test, l);
        let mtr = ref_moments(&xtr, &train.y, c);
        let mte = ref_moments(&xte, &test.y, c);
        let (nc1, fz, eqn, eqa) = ref_collapse(&xtr, &train.y, &mtr);
        let (nrank, erank) = ref_ranks(&xtr);
        let vmean = mtr.vars.iter().sum::<f64>() / c as f64;
        let checks = [
            ("ncc_train_acc", lr.ncc_train_acc, ref_ncc_acc(&xtr, &train.y, &mtr.means)),
            ("ncc_test_acc", lr.ncc_test_acc.unwrap(), ref_ncc_acc(&xte, &test.y, &mtr.means)),
            ("cdnv_train", lr.cdnv_train.unwrap(), ref_cdnv(&mtr)),
            ("cdnv_test", lr.cdnv_test.unwrap(), ref_cdnv(&mte)),
            ("within_var", lr.within_class_variance_train.unwrap(), vmean),
            ("nc1", lr.nc1.unwrap(), nc1),
            ("fuzziness", lr.fuzziness.unwrap(), fz),
            ("nc2_equinorm", lr.nc2_equinorm.unwrap(), eqn),
            ("nc2_equiangularity", lr.nc2_equiangularity.unwrap(), eqa),
            ("numerical_rank", lr.numerical_rank.unwrap() as f64, nrank as f64),
            ("effective_rank", lr.effective_rank.unwrap(), erank),
        ];
        for (name, got, want) in checks {
            let within = rel(got, want) < 1e-9; // false for NaN too
            if !within {
                errs.push(format!("layer {} {name}: got {got}, reference {want}", l + 1));
            }
        }
        // Per-pair CDNV too.
        for i in 0..c {
            for j in (i + 1)..c {
                let dist: f64 = mtr.means[i].iter().zip(&mtr.means[j]).map(|(a, b)| (a - b).powi(2)).sum();
                let want = (mtr.vars[i] + mtr.vars[j]) / (2.0 * dist);
                let got = lr.cdnv_pairs_train[i * c + j];
                let within = rel(got, want) < 1e-9; // false for NaN too
                if !within {
                    errs.push(format!("layer {} pair ({i},{j}): {got} vs {want}", l + 1));
                }
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    // The three layers have increasing separation, so accuracies must differ: guards against a
    // degenerate data set that would make the comparison vacuous.
    assert!(res.layers[0].ncc_train_acc < 0.9 && res.layers[2].ncc_train_acc > 0.99);
}

#[test]
fn effective_depth_is_first_layer_within_eps() {
    let c = 4;
    let dims = [5, 5, 5];
    let train = make_data(3, 300, c, &dims, &[0.2, 1.5, 6.0]);
    let order: Vec<usize> = (0..300).collect();
    let res = run_probe(&train, &train, c, 64, &order, |_| {});
    let errs: Vec<f64> = res.layers.iter().map(|l| 1.0 - l.ncc_train_acc).collect();
    for (key, got) in &res.effective_depth {
        let eps: f64 = key.parse().unwrap();
        let want = errs.iter().position(|&e| e <= eps).map(|i| i + 1);
        assert_eq!(*got, want, "eps {eps}, errors {errs:?}");
    }
    // A strict ε no layer reaches gives "not separable".
    assert!(errs.iter().all(|&e| e > 0.0) || res.effective_depth["0.01"].is_some());
}

#[test]
fn nc3_and_nc4_match_reference() {
    let c = 3;
    let dims = [4, 6];
    let train = make_data(5, 200, c, &dims, &[1.0, 2.0]);
    let mut spec = ProbeSpec::new(c, dims.to_vec());
    spec.rank_max_dim = 0;
    let mut probe = LayerProbe::new(spec).unwrap();
    let mut r = Rng(9);
    let w: Vec<f32> = (0..c * 6).map(|_| r.normal() as f32).collect();
    let logits: Vec<f32> = (0..200 * c).map(|_| r.normal() as f32).collect();
    probe.set_classifier(&w).unwrap();
    let refs: Vec<&[f32]> = train.x.iter().map(|v| v.as_slice()).collect();
    probe.update_all(Split::Train, &refs, &train.y).unwrap();
    probe.next_pass().unwrap();
    probe.update_all(Split::Train, &refs, &train.y).unwrap();
    probe.update_agreement(Split::Train, &train.x[1], &logits, &train.y).unwrap();
    let res = probe.finish().unwrap();
    let top = &res.layers[1];
    let x = rows(&train, 1);
    let m = ref_moments(&x, &train.y, c);
    let n = x.len() as f64;
    let g: Vec<f64> = (0..6).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let wn: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let mn: f64 = m.means.iter().flat_map(|mu| mu.iter().zip(&g).map(|(a, b)| (a - b).powi(2))).sum::<f64>().sqrt();
    let mut nc3 = 0.0;
    for k in 0..c {
        for j in 0..6 {
            nc3 += (w[k * 6 + j] as f64 / wn - (m.means[k][j] - g[j]) / mn).powi(2);
        }
    }
    assert!(rel(top.nc3_self_duality.unwrap(), nc3) < 1e-9);
    let mut agree = 0;
    for (i, r) in x.iter().enumerate() {
        let d: Vec<f64> = m.means.iter().map(|mu| r.iter().zip(mu).map(|(a, b)| (a - b).powi(2)).sum()).collect();
        let ncc = (0..c).fold(0, |b, k| if d[k] < d[b] { k } else { b });
        let lg = &logits[i * c..(i + 1) * c];
        let arg = (0..c).fold(0, |b, k| if lg[k] > lg[b] { k } else { b });
        agree += (ncc == arg) as usize;
    }
    assert!(rel(top.nc4_agreement_train.unwrap(), agree as f64 / n) < 1e-12);
    assert!(res.layers[0].nc4_agreement_train.is_none(), "NC4 belongs to the top layer only");
}

#[test]
fn batch_size_and_order_do_not_change_results() {
    let c = 5;
    let dims = [6, 9];
    let train = make_data(11, 600, c, &dims, &[0.5, 2.0]);
    let test = make_data(12, 200, c, &dims, &[0.5, 2.0]);
    let seq: Vec<usize> = (0..600).collect();
    let mut shuffled = seq.clone();
    let mut r = Rng(4);
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, (r.next() % (i as u64 + 1)) as usize);
    }
    let a = run_probe(&train, &test, c, 600, &seq, |_| {});
    let b = run_probe(&train, &test, c, 7, &shuffled, |_| {});
    let cc = run_probe(&train, &test, c, 1, &seq, |_| {});
    for other in [&b, &cc] {
        for (la, lb) in a.layers.iter().zip(&other.layers) {
            for ((name, split, va), (_, _, vb)) in la.scalar_metrics().into_iter().zip(lb.scalar_metrics()) {
                if let (Some(va), Some(vb)) = (va, vb) {
                    assert!(rel(vb, va) < 1e-12, "layer {} {name}/{split}: {va} vs {vb}", la.layer);
                } else {
                    assert_eq!(va.is_some(), vb.is_some(), "{name}/{split}");
                }
            }
        }
    }
}

#[test]
fn class_subset_equals_probe_on_filtered_data() {
    let c = 5;
    let dims = [4, 8];
    let train = make_data(21, 500, c, &dims, &[1.0, 2.0]);
    let test = make_data(22, 200, c, &dims, &[1.0, 2.0]);
    let subset = [1usize, 3, 4];
    let order: Vec<usize> = (0..500).collect();
    let sub = run_probe(&train, &test, c, 50, &order, |s| s.classes = Some(subset.to_vec()));
    // Same thing by hand: keep only the subset's rows, relabel 0..3.
    let filter = |d: &Data| {
        let keep: Vec<usize> = (0..d.y.len()).filter(|&i| subset.contains(&(d.y[i] as usize))).collect();
        Data {
            y: keep.iter().map(|&i| subset.iter().position(|&s| s == d.y[i] as usize).unwrap() as u32).collect(),
            x: d.dims
                .iter()
                .enumerate()
                .map(|(l, &dd)| keep.iter().flat_map(|&i| d.x[l][i * dd..(i + 1) * dd].to_vec()).collect())
                .collect(),
            dims: d.dims.clone(),
        }
    };
    let (ftr, fte) = (filter(&train), filter(&test));
    let forder: Vec<usize> = (0..ftr.y.len()).collect();
    let full = run_probe(&ftr, &fte, 3, 50, &forder, |_| {});
    assert_eq!(sub.classes, subset.to_vec());
    for (a, b) in sub.layers.iter().zip(&full.layers) {
        for ((name, split, va), (_, _, vb)) in a.scalar_metrics().into_iter().zip(b.scalar_metrics()) {
            match (va, vb) {
                (Some(va), Some(vb)) => assert!(rel(va, vb) < 1e-9, "{name}/{split}: {va} vs {vb}"),
                (va, vb) => assert_eq!(va.is_some(), vb.is_some(), "{name}/{split}"),
            }
        }
    }
}

#[test]
fn test_split_in_both_passes_equals_test_split_once() {
    let c = 3;
    let dims = [4, 6];
    let train = make_data(31, 300, c, &dims, &[1.0, 2.0]);
    let test = make_data(32, 120, c, &dims, &[1.0, 2.0]);
    let once = run_probe(&train, &test, c, 50, &(0..300).collect::<Vec<_>>(), |_| {});
    let mut probe = LayerProbe::new(ProbeSpec::new(c, dims.to_vec())).unwrap();
    let tr: Vec<&[f32]> = train.x.iter().map(|v| v.as_slice()).collect();
    let te: Vec<&[f32]> = test.x.iter().map(|v| v.as_slice()).collect();
    for pass in 0..2 {
        probe.update_all(Split::Train, &tr, &train.y).unwrap();
        probe.update_all(Split::Test, &te, &test.y).unwrap();
        if pass == 0 {
            probe.next_pass().unwrap();
        }
    }
    let both = probe.finish().unwrap();
    for (a, b) in once.layers.iter().zip(&both.layers) {
        for ((name, split, va), (_, _, vb)) in a.scalar_metrics().into_iter().zip(b.scalar_metrics()) {
            match (va, vb) {
                (Some(va), Some(vb)) => assert!(rel(va, vb) < 1e-12, "{name}/{split}: {va} vs {vb}"),
                (va, vb) => assert_eq!(va.is_some(), vb.is_some()),
            }
        }
    }
    // A different test split in pass 2 than in pass 1 is refused.
    let mut probe = LayerProbe::new(ProbeSpec::new(c, dims.to_vec())).unwrap();
    probe.update_all(Split::Train, &tr, &train.y).unwrap();
    probe.update_all(Split::Test, &te, &test.y).unwrap();
    probe.next_pass().unwrap();
    probe.update_all(Split::Train, &tr, &train.y).unwrap();
    let half: Vec<&[f32]> = te.iter().zip(dims).map(|(x, d)| &x[..60 * d]).collect();
    probe.update_all(Split::Test, &half, &test.y[..60]).unwrap();
    assert!(probe.finish().is_err());
}

/// The ridge classifier by brute force: the centred normal equations solved by Gaussian
/// elimination with partial pivoting, in f64 from the raw rows.
fn ref_ridge_acc(xtr: &[Vec<f64>], ytr: &[u32], xte: &[Vec<f64>], yte: &[u32], c: usize, alpha: f64) -> (f64, f64) {
    let (n, d) = (xtr.len(), xtr[0].len());
    let xbar: Vec<f64> = (0..d).map(|j| xtr.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    let ybar: Vec<f64> = (0..c).map(|k| ytr.iter().filter(|&&y| y as usize == k).count() as f64 / n as f64).collect();
    let mut a = vec![vec![0.0; d + c]; d]; // [X̄ᵀX̄ + λI | X̄ᵀȲ]
    for (r, &y) in xtr.iter().zip(ytr) {
        for i in 0..d {
            for j in 0..d {
                a[i][j] += (r[i] - xbar[i]) * (r[j] - xbar[j]);
            }
            for k in 0..c {
                let t = if y as usize == k { 1.0 } else { 0.0 };
                a[i][d + k] += (r[i] - xbar[i]) * (t - ybar[k]);
            }
        }
    }
    let lambda = alpha * (0..d).map(|i| a[i][i]).sum::<f64>() / d as f64;
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += lambda;
    }
    for col in 0..d {
        let p = (col..d).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap();
        a.swap(col, p);
        for r in 0..d {
            if r != col {
                let f = a[r][col] / a[col][col];
                for j in col..d + c {
                    a[r][j] -= f * a[col][j];
                }
            }
        }
    }
    let w = |i: usize, k: usize| a[i][d + k] / a[i][i];
    let bias: Vec<f64> = (0..c).map(|k| ybar[k] - (0..d).map(|i| xbar[i] * w(i, k)).sum::<f64>()).collect();
    let acc = |x: &[Vec<f64>], y: &[u32]| {
        let hits = x
            .iter()
            .zip(y)
            .filter(|(r, &y)| {
                let s: Vec<f64> = (0..c).map(|k| (0..d).map(|i| r[i] * w(i, k)).sum::<f64>() + bias[k]).collect();
                let best = (0..c).fold(0, |b, k| if s[k] > s[b] { k } else { b });
                best == y as usize
            })
            .count();
        hits as f64 / y.len() as f64
    };
    (acc(xtr, ytr), acc(xte, yte))
}

#[test]
fn linear_probe_matches_brute_force_ridge() {
    let c = 4;
    let dims = [3, 7, 12];
    let train = make_data(5, 400, c, &dims, &[0.3, 0.6, 1.5]);
    let test = make_data(6, 150, c, &dims, &[0.3, 0.6, 1.5]);
    let order: Vec<usize> = (0..400).collect();
    for alpha in [1e-3, 0.1, 2.0] {
        // Layer 3 (dim 12) is beyond linear_max_dim: no linear probe there.
        let res = run_probe(&train, &test, c, 53, &order, |s| {
            s.linear_max_dim = 7;
            s.linear_ridge = alpha;
        });
        for l in 0..2 {
            let (want_tr, want_te) = ref_ridge_acc(&rows(&train, l), &train.y, &rows(&test, l), &test.y, c, alpha);
            let lr = &res.layers[l];
            assert_eq!(lr.linear_train_acc, Some(want_tr), "layer {} α {alpha}", l + 1);
            assert_eq!(lr.linear_test_acc, Some(want_te), "layer {} α {alpha}", l + 1);
            assert!(lr.numerical_rank.is_none(), "the linear probe's Gram matrix does not switch on the rank");
        }
        assert_eq!((res.layers[2].linear_train_acc, res.layers[2].linear_test_acc), (None, None));
        // Linear effective depth: first layer with linear train error ≤ ε; layer 3 never counts.
        for (eps, d) in &res.linear_effective_depth {
            let e: f64 = eps.parse().unwrap();
            let want = (0..2).find(|&l| 1.0 - res.layers[l].linear_train_acc.unwrap() <= e).map(|l| l + 1);
            assert_eq!(*d, want, "ε {eps}");
        }
    }
    // Off by default: no linear fields at all.
    let res = run_probe(&train, &test, c, 53, &order, |_| {});
    assert!(res.layers.iter().all(|l| l.linear_train_acc.is_none()) && res.linear_effective_depth.is_empty());
}

/// The rank's Gram matrix on badly conditioned data. X = U·diag(s)·Vᵀ (N × D, random orthonormal
/// U, V) with singular values from 1 down to 1e-7 across the f32 rank threshold
/// σ_max·max(N, D)·ε_f32 (≈ 2.4e-4 here), stored in f32 as embeddings are. Stated bound: each
/// eigenvalue of the streamed f64 Gram matrix is within N·u·‖X‖_F² of the exact σ_i² (u = 2⁻⁵³;
/// Weyl, with the f64 rounding of every product and sum), so the numerical rank is exact unless a
/// σ_i² lies within that of the threshold (it is ~1e-12 of it here); compared with an exact f64
/// SVD of the same f32 data, fed in uneven batches.
#[test]
fn rank_gram_holds_its_error_bound_on_badly_conditioned_data() {
    let (n, d) = (2000usize, 48usize);
    let mut r = Rng(5);
    let orth = |m: usize, k: usize, r: &mut Rng| -> Mat<f64> {
        let g = Mat::<f64>::from_fn(m, k, |_, _| r.normal());
        g.qr().compute_thin_Q()
    };
    let (u, v) = (orth(n, d, &mut r), orth(d, d, &mut r));
    // 1 → 1e-7, log-spaced, then 8 exact zeros (a collapsed layer's null directions).
    let s: Vec<f64> = (0..d).map(|i| if i < 40 { 10f64.powf(-7.0 * i as f64 / 39.0) } else { 0.0 }).collect();
    let x = Mat::<f64>::from_fn(n, d, |i, j| (0..d).map(|k| u[(i, k)] * s[k] * v[(j, k)]).sum::<f64>());
    let x32: Vec<f32> = (0..n).flat_map(|i| (0..d).map(move |j| (i, j))).map(|(i, j)| x[(i, j)] as f32).collect();
    let exact = Mat::<f64>::from_fn(n, d, |i, j| x32[i * d + j] as f64).singular_values().unwrap();

    let mut gram = depthprobe_measures::Gram::new(d);
    let mut start = 0;
    for b in [1usize, 7, 300, 1000, 692].iter().cycle() {
        if start >= n {
            break;
        }
        let rows = (*b).min(n - start);
        gram.update(&x32[start * d..(start + rows) * d], rows);
        start += rows;
    }
    for i in 0..d {
        for j in 0..d {
            assert_eq!(gram.sum[(i, j)], gram.sum[(j, i)], "symmetric at ({i}, {j})");
        }
    }
    let mut eig: Vec<f64> = gram.sum.self_adjoint_eigenvalues(Side::Lower).unwrap();
    eig.sort_by(|a, b| b.total_cmp(a));
    let frob2: f64 = exact.iter().map(|s| s * s).sum();
    // Products and sums of N rows, plus the eigensolver's own backward error (D·u·‖G‖).
    let bound = (n + d) as f64 * f64::EPSILON / 2.0 * frob2 * 4.0;
    for (i, (e, s)) in eig.iter().zip(&exact).enumerate() {
        assert!((e - s * s).abs() <= bound, "eigenvalue {i}: {e} vs σ² = {} (bound {bound})", s * s);
    }
    // The probe's ranks from this Gram equal those of the exact SVD.
    let tol = exact[0] * n.max(d) as f64 * f32::EPSILON as f64;
    assert!(exact.iter().all(|s| (s * s - tol * tol).abs() > 1e3 * bound), "no σ² near the threshold");
    let sv: Vec<f64> = eig.iter().map(|e| e.max(0.0).sqrt()).collect();
    let want = exact.iter().filter(|&&s| s > tol).count();
    assert!(want > 10 && want < 40, "the threshold falls inside the spectrum: {want}");
    assert_eq!(depthprobe_measures::rank::numerical_rank(&sv, n, d), want);
    let (er, er_exact) = (
        depthprobe_measures::rank::effective_rank(&sv).unwrap(),
        depthprobe_measures::rank::effective_rank(&exact).unwrap(),
    );
    assert!((er - er_exact).abs() < 1e-6 * er_exact, "effective rank {er} vs {er_exact}");
}
