//! Weight spectra at a training probe (engine/weight_spectra.rs): K networks trained as one
//! model each get the spectrum of their own slice of every layer's weight, equal to
//! `weight_spectrum` of that network's variable as a checkpoint names it, and the first Linear's
//! alignment uses the class means of the inputs under that network's own labels; inputs the
//! probe does not see get their class means from an extra pass, equal to the probed ones.

use depthprobe::config::{Arch, Config, EmbeddingPoint, Numerics};
use depthprobe::data::{self, Dataset};
use depthprobe::engine::trainer::{Group, Trainer};
use depthprobe_measures::weight_spectrum;
use tch::Kind;

fn host(t: &tch::Tensor) -> (Vec<f32>, usize, usize) {
    let t = t.to_kind(Kind::Float).contiguous();
    let rows = t.size()[0] as usize;
    let mut v = vec![0f32; t.numel()];
    t.copy_data(&mut v, t.numel());
    let cols = v.len() / rows;
    (v, rows, cols)
}

/// Class means of the train inputs (flattened) under the split's labels, C × D.
fn data_means(ds: &Dataset) -> Vec<f64> {
    let d = ds.sample_len();
    let idx: Vec<usize> = (0..ds.train.len()).collect();
    let mut x = Vec::new();
    ds.fill_batch(&ds.train, &idx, None, &mut x);
    let c = ds.num_classes;
    let mut sums = vec![0.0; c * d];
    let mut n = vec![0.0; c];
    for (row, &y) in x.chunks_exact(d).zip(&ds.train.labels) {
        n[y as usize] += 1.0;
        for (s, &v) in sums[y as usize * d..(y as usize + 1) * d].iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    sums.iter().enumerate().map(|(i, s)| s / n[i / d]).collect()
}

#[test]
fn each_network_of_a_group_gets_the_spectra_of_its_own_weights() {
    depthprobe::engine::init_runtime(0, 1, Numerics::Native);
    for (arch, name) in [(Arch::Mlp, "layers.{}.linear.weight"), (Arch::Conv, "layers.{}.conv.weight")] {
        let mut cfg = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
        cfg.model.arch = arch;
        cfg.model.embedding = EmbeddingPoint::PostActivation;
        cfg.model.depth = 3;
        cfg.model.width = 24;
        cfg.probe.weight_spectra = true;
        let mut a = data::synthetic::generate(3);
        if arch == Arch::Conv {
            a.shape = vec![2, 4, 4];
        }
        // Network 1 trains on other labels: its data class means differ.
        let mut b = a.clone();
        let c = b.num_classes as i64;
        b.train.labels.iter_mut().enumerate().for_each(|(i, y)| *y = (*y + (i % 3) as i64) % c);
        let g = Group { model: &cfg.model, train: &cfg.train, seeds: vec![0, 1], augment: false };
        let mut t = Trainer::new(&g, &[&a, &b]).unwrap();
        t.train_epoch(&[&a, &b], 1);
        let out = t.probe_with(&[&a, &b], &cfg.probe, false).unwrap();
        for (k, (o, ds)) in out.iter().zip([&a, &b]).enumerate() {
            let res = &o.as_ref().unwrap().result;
            let vars = t.network_variables(k);
            for (i, l) in res.layers.iter().enumerate() {
                let (w, rows, cols) = host(&vars[&name.replace("{}", &i.to_string())]);
                let means = (arch == Arch::Mlp && i == 0).then(|| data_means(ds));
                let s = weight_spectrum(&w, rows, cols, means.as_deref().map(|m| (m, ds.num_classes))).unwrap();
                let what = format!("{arch:?} network {k} layer {}", i + 1);
                assert_eq!(l.weight_rank, Some(s.numerical_rank as f64), "{what}");
                assert_eq!(l.weight_singular_values.len(), rows.min(cols), "{what}");
                for (a, b) in l.weight_singular_values.iter().zip(&s.singular_values) {
                    assert!((a - b).abs() <= 1e-12 * s.singular_values[0], "{what}: σ {a} vs {b}");
                }
                let close = |x: Option<f64>, y: Option<f64>| (x.unwrap() - y.unwrap()).abs() <= 1e-9 * y.unwrap().abs();
                assert!(
                    close(l.weight_stable_rank, s.stable_rank),
                    "{what}: {:?} vs {:?}",
                    l.weight_stable_rank,
                    s.stable_rank
                );
                assert!(close(l.weight_effective_rank, s.effective_rank), "{what}");
                if let Some(want) = s.class_mean_alignment {
                    let got = l.weight_alignment.unwrap();
                    assert!((got - want).abs() < 1e-6, "{what}: alignment {got} vs {want}");
                }
                // Every layer's input has class means: the data, a probed layer, or the extra pass.
                assert!(l.weight_alignment.is_some(), "{what}: no alignment");
            }
        }
        let r0 = &out[0].as_ref().unwrap().result.layers[0];
        let r1 = &out[1].as_ref().unwrap().result.layers[0];
        assert_ne!(r0.weight_stable_rank, r1.weight_stable_rank, "two networks, two weights");
    }
}

/// Where the probe does not see a weight's input (the activation after a pre-BN embedding, a
/// CONV's stem output), one more eval pass gives its class means: on the same trained weights,
/// they must give the alignment that the probe's own post-activation class means give.
#[test]
fn hidden_inputs_give_the_alignment_the_probed_ones_give() {
    depthprobe::engine::init_runtime(0, 1, Numerics::Native);
    for arch in [Arch::Mlp, Arch::Conv] {
        let run = |emb: EmbeddingPoint| {
            let mut cfg = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
            cfg.model.arch = arch;
            cfg.model.embedding = emb;
            cfg.model.depth = 3;
            cfg.model.width = 16;
            cfg.probe.weight_spectra = true;
            cfg.probe.batch_size = 300; // the extra pass in several batches
            let mut a = data::synthetic::generate(4);
            if arch == Arch::Conv {
                a.shape = vec![2, 4, 4];
            }
            let g = Group { model: &cfg.model, train: &cfg.train, seeds: vec![7], augment: false };
            let mut t = Trainer::new(&g, &[&a]).unwrap();
            t.train_epoch(&[&a], 1);
            t.probe_with(&[&a], &cfg.probe, false).unwrap().pop().unwrap().unwrap().result
        };
        let (pre, post) = (run(EmbeddingPoint::PreBn), run(EmbeddingPoint::PostActivation));
        for (i, (a, b)) in pre.layers.iter().zip(&post.layers).enumerate() {
            // The same weights either way.
            assert_eq!(a.weight_stable_rank, b.weight_stable_rank, "{arch:?} layer {}", i + 1);
            let (x, y) = (a.weight_alignment.unwrap(), b.weight_alignment.unwrap());
            assert!((x - y).abs() < 1e-9, "{arch:?} layer {}: hidden-pass alignment {x} vs probed {y}", i + 1);
        }
    }
}
