//! Linear CKA between layers: the streaming minibatch estimator against the definitions written
//! out in f64 (HSIC₁ per minibatch, and exact full-data linear CKA), and its invariances.
#![allow(clippy::needless_range_loop)]

use depthprobe_measures::{LayerProbe, ProbeResult, ProbeSpec, Split, CKA_BATCH_ROWS};

mod common;
use common::Rng;

/// Probe `layers` (row-major, dims `dims`) with CKA on, the same rows as train and test, fed in
/// batches of `batch`.
fn probe(layers: &[Vec<f32>], dims: &[usize], y: &[u32], c: usize, batch: usize) -> ProbeResult {
    let mut spec = ProbeSpec::new(c, dims.to_vec());
    spec.cka = true;
    let mut p = LayerProbe::new(spec).unwrap();
    let n = y.len();
    let feed = |p: &mut LayerProbe, split: Split| {
        for s in (0..n).step_by(batch) {
            let e = (s + batch).min(n);
            let xs: Vec<&[f32]> = layers.iter().zip(dims).map(|(x, &d)| &x[s * d..e * d]).collect();
            p.update_all(split, &xs, &y[s..e]).unwrap();
        }
    };
    feed(&mut p, Split::Train);
    p.next_pass().unwrap();
    feed(&mut p, Split::Train);
    feed(&mut p, Split::Test);
    p.finish().unwrap()
}

fn labels(n: usize, c: usize, r: &mut Rng) -> Vec<u32> {
    (0..n).map(|i| if i < c { i as u32 } else { (r.next() % c as u64) as u32 }).collect()
}

/// Class offsets plus noise, d features.
fn layer(y: &[u32], c: usize, d: usize, sep: f64, r: &mut Rng) -> Vec<f32> {
    let centres: Vec<f64> = (0..c * d).map(|_| r.normal() * sep).collect();
    y.iter()
        .flat_map(|&k| (0..d).map(|j| (centres[k as usize * d + j] + r.normal()) as f32).collect::<Vec<_>>())
        .collect()
}

/// HSIC₁ of one minibatch, from the definition: K = XXᵀ with a zero diagonal, then
/// [tr(KL) + 1ᵀK1·1ᵀL1/((n−1)(n−2)) − 2/(n−2)·1ᵀKL1] / (n(n−3)), with KL formed in full.
fn hsic1(x: &[f64], dx: usize, z: &[f64], dz: usize, n: usize) -> f64 {
    let gram = |v: &[f64], d: usize| {
        let mut k = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    k[i][j] = (0..d).map(|t| v[i * d + t] * v[j * d + t]).sum();
                }
            }
        }
        k
    };
    let (k, l) = (gram(x, dx), gram(z, dz));
    let mut kl = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            kl[i][j] = (0..n).map(|t| k[i][t] * l[t][j]).sum();
        }
    }
    let tr: f64 = (0..n).map(|i| kl[i][i]).sum();
    let sk: f64 = k.iter().flatten().sum();
    let sl: f64 = l.iter().flatten().sum();
    let skl: f64 = kl.iter().flatten().sum();
    let nf = n as f64;
    (tr + sk * sl / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * skl) / (nf * (nf - 3.0))
}

/// Exact linear CKA of two full data matrices: ‖ZcᵀXc‖²_F / (‖XcᵀXc‖_F ‖ZcᵀZc‖_F), centred columns.
fn exact_linear_cka(x: &[f32], dx: usize, z: &[f32], dz: usize, n: usize) -> f64 {
    let centred = |v: &[f32], d: usize| {
        let mean: Vec<f64> = (0..d).map(|j| (0..n).map(|i| v[i * d + j] as f64).sum::<f64>() / n as f64).collect();
        (0..n * d).map(|t| v[t] as f64 - mean[t % d]).collect::<Vec<f64>>()
    };
    let (xc, zc) = (centred(x, dx), centred(z, dz));
    let cross = |a: &[f64], da: usize, b: &[f64], db: usize| {
        let mut s = 0.0;
        for p in 0..da {
            for q in 0..db {
                let v: f64 = (0..n).map(|i| a[i * da + p] * b[i * db + q]).sum();
                s += v * v;
            }
        }
        s
    };
    cross(&zc, dz, &xc, dx) / (cross(&xc, dx, &xc, dx).sqrt() * cross(&zc, dz, &zc, dz).sqrt())
}

#[test]
fn the_streamed_estimator_is_the_sum_of_hsic1_over_minibatches_cut_in_row_order() {
    let mut r = Rng(7);
    let (n, c) = (CKA_BATCH_ROWS + 45, 3);
    let y = labels(n, c, &mut r);
    let dims = [5, 7, 4];
    let layers: Vec<Vec<f32>> = dims.iter().map(|&d| layer(&y, c, d, 1.5, &mut r)).collect();
    // Batches that straddle the minibatch boundary: the minibatches are rows 0..256 and 256..n.
    let res = probe(&layers, &dims, &y, c, 100);
    let cka = res.cka.as_ref().unwrap();
    assert_eq!((cka.train_batches, cka.test_batches), (2, 2));
    let wide: Vec<Vec<f64>> = layers.iter().map(|x| x.iter().map(|&v| v as f64).collect()).collect();
    let sums = |a: usize, b: usize| {
        [(0, CKA_BATCH_ROWS), (CKA_BATCH_ROWS, n)]
            .iter()
            .map(|&(s, e)| {
                let (da, db) = (dims[a], dims[b]);
                hsic1(&wide[a][s * da..e * da], da, &wide[b][s * db..e * db], db, e - s)
            })
            .sum::<f64>()
    };
    for a in 0..3 {
        for b in 0..3 {
            let want = sums(a, b) / (sums(a, a) * sums(b, b)).sqrt();
            for split in [Split::Train, Split::Test] {
                let got = cka.get(split, a + 1, b + 1).unwrap();
                assert!((got - want).abs() < 1e-10, "{split:?} CKA({}, {}) = {got}, want {want}", a + 1, b + 1);
            }
        }
    }
    // Any other batching feeds the same minibatches.
    let other = probe(&layers, &dims, &y, c, 7);
    assert_eq!(other.cka, res.cka);
    // The per-layer column is CKA with the top layer.
    for l in &res.layers {
        assert_eq!(l.cka_top_train, cka.get(Split::Train, l.layer, 3));
    }
}

#[test]
fn the_estimator_agrees_with_exact_linear_cka_within_its_sampling_error() {
    // 16 minibatches of 256 rows. Layer 2 is a nonlinear map of layer 1 plus noise, layer 3 is
    // independent of both: their population CKAs are far apart.
    let mut r = Rng(11);
    let (n, c) = (16 * CKA_BATCH_ROWS, 5);
    let y = labels(n, c, &mut r);
    let (d1, d2, d3) = (12, 9, 6);
    let x1 = layer(&y, c, d1, 2.0, &mut r);
    let a: Vec<f64> = (0..d1 * d2).map(|_| r.normal() / (d1 as f64).sqrt()).collect();
    let x2: Vec<f32> = (0..n)
        .flat_map(|i| {
            let row = &x1[i * d1..(i + 1) * d1];
            (0..d2)
                .map(|j| ((0..d1).map(|t| row[t] as f64 * a[t * d2 + j]).sum::<f64>().tanh() + 0.3 * r.normal()) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let x3: Vec<f32> = (0..n * d3).map(|_| r.normal() as f32).collect();
    let res = probe(&[x1.clone(), x2.clone(), x3.clone()], &[d1, d2, d3], &y, c, 1000);
    let cka = res.cka.unwrap();
    // Sampling error, measured: the spread of the 16 single-minibatch CKAs, over √16.
    let per_batch: Vec<f64> = (0..16)
        .map(|b| {
            let (s, e) = (b * CKA_BATCH_ROWS, (b + 1) * CKA_BATCH_ROWS);
            let one = probe(&[x1[s * d1..e * d1].to_vec(), x2[s * d2..e * d2].to_vec()], &[d1, d2], &y[s..e], c, e - s);
            one.cka.unwrap().get(Split::Train, 1, 2).unwrap()
        })
        .collect();
    let mean = per_batch.iter().sum::<f64>() / 16.0;
    let sd = (per_batch.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 15.0).sqrt();
    let se = sd / 4.0;
    let exact12 = exact_linear_cka(&x1, d1, &x2, d2, n);
    let exact13 = exact_linear_cka(&x1, d1, &x3, d3, n);
    let got12 = cka.get(Split::Train, 1, 2).unwrap();
    let got13 = cka.get(Split::Train, 1, 3).unwrap();
    eprintln!("CKA(1,2) {got12:.5} exact {exact12:.5} se {se:.5}; CKA(1,3) {got13:.5} exact {exact13:.5}");
    assert!(exact12 > 0.5 && exact13 < 0.05, "the data are not what the test needs: {exact12}, {exact13}");
    assert!((got12 - exact12).abs() < 3.0 * se, "CKA(1,2) {got12} vs exact {exact12}, standard error {se}");
    // Independent layers: the unbiased estimator is near 0; the full-data biased CKA sits above
    // it by its O(D/n) bias, so both are small.
    assert!(got13.abs() < 0.02 && got13 < exact13 + 3.0 * se, "CKA(1,3) {got13} vs exact {exact13}");
}

#[test]
fn cka_is_one_between_a_layer_and_its_rotated_scaled_copy_and_invariant_to_both() {
    let mut r = Rng(3);
    let (n, c, d) = (600, 4, 6);
    let y = labels(n, c, &mut r);
    let x = layer(&y, c, d, 1.0, &mut r);
    let other = layer(&y, c, 5, 1.0, &mut r);
    // An orthogonal Q from Gram–Schmidt, and an isotropic scale.
    let mut q: Vec<Vec<f64>> = (0..d).map(|_| (0..d).map(|_| r.normal()).collect()).collect();
    for i in 0..d {
        for j in 0..i {
            let dot: f64 = (0..d).map(|t| q[i][t] * q[j][t]).sum();
            for t in 0..d {
                q[i][t] -= dot * q[j][t];
            }
        }
        let norm = q[i].iter().map(|v| v * v).sum::<f64>().sqrt();
        q[i].iter_mut().for_each(|v| *v /= norm);
    }
    let xq: Vec<f32> = (0..n)
        .flat_map(|i| {
            let row = &x[i * d..(i + 1) * d];
            let q = &q;
            (0..d).map(move |j| (3.7 * (0..d).map(|t| row[t] as f64 * q[t][j]).sum::<f64>()) as f32)
        })
        .collect();
    let res = probe(&[x.clone(), xq, x.clone(), other], &[d, d, d, 5], &y, c, 128);
    let cka = res.cka.unwrap();
    for split in [Split::Train, Split::Test] {
        // A layer against itself fed twice: 1 to rounding.
        assert!((cka.get(split, 1, 3).unwrap() - 1.0).abs() < 1e-12);
        // Against its rotated, scaled copy: 1 up to the f32 rounding of the copy.
        assert!((cka.get(split, 1, 2).unwrap() - 1.0).abs() < 1e-6);
        // A third layer sees the two alike.
        let (a, b) = (cka.get(split, 1, 4).unwrap(), cka.get(split, 2, 4).unwrap());
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        // Symmetric.
        assert_eq!(cka.get(split, 4, 1), cka.get(split, 1, 4));
    }
}

#[test]
fn a_probe_without_cka_has_none_and_single_layer_feeding_is_refused_with_cka() {
    let mut r = Rng(5);
    let y = labels(50, 2, &mut r);
    let x = layer(&y, 2, 3, 1.0, &mut r);
    let mut spec = ProbeSpec::new(2, vec![3]);
    let mut p = LayerProbe::new(spec.clone()).unwrap();
    p.update(Split::Train, 1, &x, &y).unwrap();
    p.next_pass().unwrap();
    p.update(Split::Train, 1, &x, &y).unwrap();
    p.update(Split::Test, 1, &x, &y).unwrap();
    let res = p.finish().unwrap();
    assert!(res.cka.is_none() && res.layers[0].cka_top_train.is_none());
    spec.cka = true;
    let mut p2 = LayerProbe::new(spec).unwrap();
    let e = p2.update(Split::Train, 1, &x, &y).unwrap_err().to_string();
    assert!(e.contains("update_all"), "{e}");
}
