//! Mathematical properties the measures must have (docs/method.md, "Checks of the measures").

use depthprobe_measures::{LayerProbe, ProbeError, ProbeResult, ProbeSpec, Split};

mod common;
use common::Rng;

/// One layer, train = test.
fn probe_one(x: &[f32], y: &[u32], c: usize, d: usize) -> ProbeResult {
    let mut probe = LayerProbe::new(ProbeSpec::new(c, vec![d])).unwrap();
    for chunk in 0..y.len().div_ceil(256) {
        let (s, e) = (chunk * 256, ((chunk + 1) * 256).min(y.len()));
        probe.update(Split::Train, 1, &x[s * d..e * d], &y[s..e]).unwrap();
    }
    probe.next_pass().unwrap();
    probe.update(Split::Train, 1, x, y).unwrap();
    probe.update(Split::Test, 1, x, y).unwrap();
    probe.finish().unwrap()
}

fn gaussians(seed: u64, n: usize, d: usize, sigma: f64, mus: &[Vec<f64>]) -> (Vec<f32>, Vec<u32>) {
    let mut r = Rng(seed);
    let c = mus.len();
    let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
    let x = y
        .iter()
        .flat_map(|&k| (0..d).map(|j| (mus[k as usize][j] + sigma * r.normal()) as f32).collect::<Vec<_>>())
        .collect();
    (x, y)
}

#[test]
fn two_isotropic_gaussians_give_d_sigma2_over_dist2() {
    let (d, sigma) = (16, 0.7);
    let mus = vec![vec![0.0; d], (0..d).map(|j| if j < 4 { 1.5 } else { 0.0 }).collect()];
    let dist2: f64 = 4.0 * 1.5 * 1.5;
    let (x, y) = gaussians(1, 20_000, d, sigma, &mus);
    let res = probe_one(&x, &y, 2, d);
    let want = d as f64 * sigma * sigma / dist2;
    let got = res.layers[0].cdnv_train.unwrap();
    assert!((got - want).abs() / want < 0.02, "CDNV {got}, theory {want}");
}

#[test]
fn cdnv_invariant_to_translation_and_scaling() {
    let d = 8;
    let mus: Vec<Vec<f64>> = (0..3).map(|k| (0..d).map(|j| ((k * 7 + j) % 5) as f64).collect()).collect();
    let (x, y) = gaussians(2, 3000, d, 1.0, &mus);
    let base = probe_one(&x, &y, 3, d).layers[0].clone();
    let shift: Vec<f32> = (0..d).map(|j| 100.0 + j as f32 * 3.0).collect();
    let translated: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + shift[i % d]).collect();
    let scaled: Vec<f32> = x.iter().map(|v| v * 37.5).collect();
    for (name, xs) in [("translated", translated), ("scaled", scaled)] {
        let r = probe_one(&xs, &y, 3, d).layers[0].clone();
        // f32 inputs: translation by ~100 rounds each value at ~1e-5 relative.
        let rel = (r.cdnv_train.unwrap() - base.cdnv_train.unwrap()).abs() / base.cdnv_train.unwrap();
        assert!(rel < 1e-4, "{name}: {} vs {}", r.cdnv_train.unwrap(), base.cdnv_train.unwrap());
        assert_eq!(r.ncc_train_acc, base.ncc_train_acc, "{name}");
    }
    // Power-of-two scaling is exact in floating point: equality to 1e-12.
    let x4: Vec<f32> = x.iter().map(|v| v * 4.0).collect();
    let r = probe_one(&x4, &y, 3, d).layers[0].clone();
    assert!((r.cdnv_train.unwrap() / base.cdnv_train.unwrap() - 1.0).abs() < 1e-12);
    assert!((r.nc1.unwrap() / base.nc1.unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn collapsed_features_give_perfect_ncc_and_zero_cdnv() {
    let d = 5;
    let mus: Vec<Vec<f64>> = (0..4).map(|k| (0..d).map(|j| if j == k { 2.0 } else { -0.5 }).collect()).collect();
    let (x, y) = gaussians(3, 400, d, 0.0, &mus);
    let l = probe_one(&x, &y, 4, d).layers[0].clone();
    assert_eq!(l.ncc_train_acc, 1.0);
    assert_eq!(l.ncc_test_acc, Some(1.0));
    assert_eq!(l.cdnv_train, Some(0.0));
    assert_eq!(l.nc1, Some(0.0));
}

#[test]
fn coincident_means_give_infinite_cdnv_not_nan() {
    let d = 3;
    let (x, y) = gaussians(4, 600, d, 1.0, &[vec![0.0; d], vec![0.0; d], vec![5.0; d]]);
    // Force classes 0 and 1 to the exact same rows so their means coincide.
    let mut x = x;
    for i in (0..600).step_by(3) {
        for j in 0..d {
            x[(i + 1) * d + j] = x[i * d + j];
        }
    }
    let l = probe_one(&x, &y, 3, d).layers[0].clone();
    assert_eq!(l.cdnv_pairs_train[1], f64::INFINITY);
    assert_eq!(l.cdnv_train, Some(f64::INFINITY));
    let json = serde_json::to_string(&l).unwrap();
    assert!(json.contains("\"cdnv_train\":\"inf\""), "{json}");
    assert!(!json.contains("NaN"));
}

#[test]
fn ordered_and_unordered_pair_averages_agree() {
    let d = 6;
    let mus: Vec<Vec<f64>> = (0..4).map(|k| (0..d).map(|j| (k as f64) * (j as f64 + 1.0) * 0.3).collect()).collect();
    let (x, y) = gaussians(5, 2000, d, 1.0, &mus);
    let l = probe_one(&x, &y, 4, d).layers[0].clone();
    let c = 4;
    let ordered: f64 = (0..c)
        .flat_map(|i| (0..c).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| l.cdnv_pairs_train[i * c + j])
        .sum::<f64>()
        / 12.0;
    assert!((ordered - l.cdnv_train.unwrap()).abs() < 1e-12 * ordered);
}

#[test]
fn bad_input_is_named() {
    let mut probe = LayerProbe::new(ProbeSpec::new(3, vec![2])).unwrap();
    let e = probe.update(Split::Train, 1, &[0.0; 4], &[0, 7]).unwrap_err();
    assert_eq!(e, ProbeError::LabelOutOfRange { split: "train", row: 1, label: 7, num_classes: 3 });
    let e = probe.update(Split::Train, 1, &[0.0, 1.0, f32::NAN, 0.0], &[0, 1]).unwrap_err();
    assert!(e.to_string().contains("row 1, column 0"), "{e}");
    let e = probe.update(Split::Train, 1, &[0.0; 5], &[0, 1]).unwrap_err();
    assert!(matches!(e, ProbeError::Shape { .. }));
    assert!(matches!(probe.update(Split::Train, 2, &[0.0; 2], &[0]), Err(ProbeError::NoSuchLayer { .. })));
    probe.update(Split::Train, 1, &[0.0, 1.0, 2.0, 3.0], &[0, 1]).unwrap();
    // Class 2 never appeared in train.
    assert_eq!(probe.next_pass().unwrap_err(), ProbeError::EmptyClass { class: 2 });
}

/// A batch refused for a non-finite value changes nothing, in either pass, even when the value
/// sits in a late block of a large batch whose earlier blocks were already reduced.
#[test]
fn a_refused_batch_leaves_every_statistic_as_it_was() {
    let (d, c) = (8, 3);
    let mus: Vec<Vec<f64>> = (0..c).map(|k| (0..d).map(|j| ((k * d + j) as f64 * 0.7).sin()).collect()).collect();
    let (x, y) = gaussians(5, 600, d, 0.5, &mus);
    let mut bad = x[..500 * d].to_vec();
    bad[470 * d + 3] = f32::INFINITY;
    let spec = || {
        let mut s = ProbeSpec::new(c, vec![d]);
        s.rank_max_dim = d;
        s.linear_max_dim = d;
        s
    };
    let run = |with_refusals: bool| {
        let mut p = LayerProbe::new(spec()).unwrap();
        p.update(Split::Train, 1, &x, &y).unwrap();
        if with_refusals {
            let e = p.update(Split::Train, 1, &bad, &y[..500]).unwrap_err();
            assert!(e.to_string().contains("row 1070, column 3"), "{e}");
        }
        p.next_pass().unwrap();
        p.update(Split::Train, 1, &x, &y).unwrap();
        if with_refusals {
            assert!(p.update(Split::Train, 1, &bad, &y[..500]).is_err());
            assert!(p.update(Split::Test, 1, &bad, &y[..500]).is_err());
        }
        p.update(Split::Test, 1, &x[..300 * d], &y[..300]).unwrap();
        format!("{:?}", p.finish().unwrap())
    };
    assert_eq!(run(true), run(false));
}
