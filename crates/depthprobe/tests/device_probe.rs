//! The probe's device reduction (engine/device_reducer.rs) against the host reduction: the same
//! embeddings must give the same measures. Run on CPU tensors here; bench/gpu/check.sh repeats
//! the comparison on a GPU.

use depthprobe::config::{Arch, Config, EmbeddingPoint, Numerics};
use depthprobe::data::{self, Dataset};
use depthprobe::engine::device_reducer::{DeviceBatch, DeviceReducer};
use depthprobe::engine::trainer::{Group, Trainer};
use depthprobe_measures::{LayerProbe, Probe, ProbeResult, ProbeSpec, Reducer, Split};
use tch::{Device, Kind, Tensor};

fn close(a: Option<f64>, b: Option<f64>, rel: f64, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12), "{what}: {a} vs {b}"),
        (None, None) => {}
        _ => panic!("{what}: {a:?} vs {b:?}"),
    }
}

/// Every measure of every layer agrees: decisions exactly (a tie broken differently by
/// rounding would show up here, and does not on these data), the rest to 1e-9 relative.
fn assert_same(host: &ProbeResult, dev: &ProbeResult) {
    assert_eq!(host.train_samples, dev.train_samples);
    assert_eq!(host.test_samples, dev.test_samples);
    assert_eq!(host.effective_depth, dev.effective_depth);
    assert_eq!(host.linear_effective_depth, dev.linear_effective_depth);
    for (h, d) in host.layers.iter().zip(&dev.layers) {
        let l = h.layer;
        assert_eq!(h.ncc_train_acc, d.ncc_train_acc, "layer {l} NCC train");
        assert_eq!(h.ncc_test_acc, d.ncc_test_acc, "layer {l} NCC test");
        assert_eq!(h.nc4_agreement_train, d.nc4_agreement_train, "layer {l} NC4 train");
        assert_eq!(h.nc4_agreement_test, d.nc4_agreement_test, "layer {l} NC4 test");
        assert_eq!(h.numerical_rank, d.numerical_rank, "layer {l} rank");
        assert_eq!(h.linear_train_acc, d.linear_train_acc, "layer {l} linear train");
        assert_eq!(h.linear_test_acc, d.linear_test_acc, "layer {l} linear test");
        for (name, a, b) in [
            ("cdnv_train", h.cdnv_train, d.cdnv_train),
            ("cdnv_test", h.cdnv_test, d.cdnv_test),
            ("within_class_variance", h.within_class_variance_train, d.within_class_variance_train),
            ("nc1", h.nc1, d.nc1),
            ("fuzziness", h.fuzziness, d.fuzziness),
            ("nc2_equinorm", h.nc2_equinorm, d.nc2_equinorm),
            ("nc2_equiangularity", h.nc2_equiangularity, d.nc2_equiangularity),
            ("nc3", h.nc3_self_duality, d.nc3_self_duality),
            ("effective_rank", h.effective_rank, d.effective_rank),
        ] {
            close(a, b, 1e-9, &format!("layer {l} {name}"));
        }
        for (a, b) in h.cdnv_pairs_train.iter().zip(&d.cdnv_pairs_train) {
            assert!(a.is_nan() && b.is_nan() || (a - b).abs() <= 1e-9 * a.abs(), "layer {l} pair CDNV {a} vs {b}");
        }
        // The weight spectra read the same weights and the same class means.
        assert_eq!(h.weight_rank, d.weight_rank, "layer {l} weight rank");
        close(h.weight_stable_rank, d.weight_stable_rank, 1e-12, &format!("layer {l} stable rank"));
        close(h.weight_alignment, d.weight_alignment, 1e-9, &format!("layer {l} alignment"));
        close(h.cka_top_train, d.cka_top_train, 1e-9, &format!("layer {l} CKA with the top"));
        close(h.cka_top_test, d.cka_top_test, 1e-9, &format!("layer {l} CKA with the top, test"));
    }
    // CKA: the same minibatches (cut from the measured rows in order), every pair.
    match (&host.cka, &dev.cka) {
        (Some(a), Some(b)) => {
            assert_eq!((a.train_batches, a.test_batches), (b.train_batches, b.test_batches));
            let l = a.layers();
            for split in [Split::Train, Split::Test] {
                for i in 1..=l {
                    for j in 1..=l {
                        close(a.get(split, i, j), b.get(split, i, j), 1e-9, &format!("{split:?} CKA({i}, {j})"));
                    }
                }
            }
            assert_eq!(a.block_train.len(), b.block_train.len());
            for ((ea, x), (eb, y)) in a.block_train.iter().zip(&b.block_train) {
                assert_eq!((ea, x.depth), (eb, y.depth));
                close(x.within, y.within, 1e-9, &format!("block within at ε = {ea}"));
                close(x.across, y.across, 1e-9, &format!("block across at ε = {ea}"));
            }
        }
        (None, None) => {}
        (a, b) => panic!("CKA on one side only: {} vs {}", a.is_some(), b.is_some()),
    }
}

/// The demo's synthetic data as 2×4×4 images (CONV-L-H needs [C, H, W]).
fn as_images(mut ds: Dataset) -> Dataset {
    ds.shape = vec![2, 4, 4];
    ds
}

#[test]
fn trained_networks_probe_the_same_on_host_and_device_reductions() {
    depthprobe::engine::init_runtime(0, 1, Numerics::Native);
    for (arch, emb) in [(Arch::Mlp, EmbeddingPoint::PreBn), (Arch::Conv, EmbeddingPoint::PostActivation)] {
        let mut cfg = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
        cfg.model.arch = arch;
        cfg.model.embedding = emb;
        cfg.model.depth = 3;
        cfg.model.width = 48;
        cfg.probe.batch_size = 700; // batches that split classes unevenly, and a ragged last one
        cfg.probe.cka = true;
        cfg.probe.weight_spectra = true;
        let ds = data::synthetic::generate(3);
        let ds = if arch == Arch::Conv { as_images(ds) } else { ds };
        let g = Group { model: &cfg.model, train: &cfg.train, seeds: vec![0], augment: false };
        let mut t = Trainer::new(&g, &[&ds]).unwrap();
        t.train_epoch(&[&ds], 1);
        t.train_epoch(&[&ds], 2);
        let host = t.probe_with(&[&ds], &cfg.probe, false).unwrap().pop().unwrap().unwrap();
        let dev = t.probe_with(&[&ds], &cfg.probe, true).unwrap().pop().unwrap().unwrap();
        assert_eq!((host.train_loss, host.test_acc), (dev.train_loss, dev.test_acc));
        let accs: Vec<f64> = host.result.layers.iter().map(|l| l.ncc_train_acc).collect();
        assert!(accs.iter().any(|&a| a > 0.3 && a < 0.99), "{arch:?}: a probe with decisions to get wrong: {accs:?}");
        let top = host.result.layers.last().unwrap();
        assert_eq!(top.nc3_self_duality.is_some(), emb == EmbeddingPoint::PostActivation);
        assert!(host.result.cka.as_ref().is_some_and(|c| c.train_batches > 1), "CKA over several minibatches");
        let first = &host.result.layers[0];
        assert!(first.weight_rank.is_some() && first.weight_stable_rank.is_some());
        // Every layer's weight has the class means of its input: the data, a probed layer or its
        // patches, or the extra pass over what the probe does not see.
        assert!(host.result.layers.iter().all(|l| l.weight_alignment.is_some()), "{arch:?}: an alignment missing");
        assert_same(&host.result, &dev.result);
    }
}

/// Random embeddings straight into both paths, for two networks at once (different embeddings
/// and labels, as in a batched group): a class subset (rows of other classes are masked), a
/// test split fed in both passes, one layer too wide for the rank's Gram matrix, a linear probe
/// on both.
#[test]
fn device_reduction_handles_class_subsets_and_test_in_both_passes() {
    let dims = vec![5usize, 40];
    let mut spec = ProbeSpec::new(6, dims.clone());
    spec.classes = Some(vec![0, 2, 3, 5]);
    spec.rank_max_dim = 16;
    spec.linear_max_dim = 40;
    spec.cka = true;
    type Batch = (Vec<Tensor>, Tensor, Vec<u32>);
    let batches = |seed: i64, n: i64| -> Vec<Batch> {
        depthprobe::engine::with_seed(seed as u64, || {
            (0..3)
                .map(|b| {
                    let y: Vec<u32> = (0..n).map(|i| ((i * 7 + b * 3 + seed) % 6) as u32).collect();
                    let yt = Tensor::from_slice(&y.iter().map(|&v| v as i64).collect::<Vec<_>>());
                    let embs = dims
                        .iter()
                        .map(|&d| {
                            let centre = yt.to_kind(Kind::Float).unsqueeze(1) * 0.4;
                            Tensor::randn([n, d as i64], (Kind::Float, Device::Cpu)) + centre
                        })
                        .collect();
                    (embs, Tensor::randn([n, 6], (Kind::Float, Device::Cpu)), y)
                })
                .collect()
        })
    };
    // Network 0 and network 1: their own embeddings and labels, the same row counts.
    let nets = [(batches(1, 197), batches(2, 41)), (batches(3, 197), batches(4, 41))];
    let host_f32 = |t: &Tensor| {
        let t = t.contiguous();
        let mut v = vec![0f32; t.numel()];
        t.copy_data(&mut v, t.numel());
        v
    };
    let host: Vec<ProbeResult> = nets
        .iter()
        .map(|(train, test)| {
            let mut hp = LayerProbe::new(spec.clone()).unwrap();
            for (split, data) in [(Split::Train, train), (Split::Test, test)] {
                for (e, _, y) in data {
                    let xs: Vec<Vec<f32>> = e.iter().map(host_f32).collect();
                    hp.update_all(split, &xs.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), y).unwrap();
                }
            }
            hp.next_pass().unwrap();
            for (split, data) in [(Split::Train, train), (Split::Test, test)] {
                for (e, lg, y) in data {
                    let xs: Vec<Vec<f32>> = e.iter().map(host_f32).collect();
                    hp.update_all(split, &xs.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), y).unwrap();
                    hp.update_agreement(split, xs.last().unwrap(), &host_f32(lg), y).unwrap();
                }
            }
            hp.finish().unwrap()
        })
        .collect();
    // The device reduction, both networks at once (tensors stacked [K, n, ...]), test rows fed
    // in both passes.
    let mut ps = vec![Probe::new(spec.clone()).unwrap(), Probe::new(spec).unwrap()];
    let mut dr = DeviceReducer::new(Device::Cpu, 2);
    for pass in 0..2 {
        dr.begin(ps.iter().map(|p| Some(p.plan())).collect());
        for s in [Split::Train, Split::Test] {
            for b in 0..3 {
                let pick = |n: usize| if s == Split::Train { &nets[n].0[b] } else { &nets[n].1[b] };
                let (b0, b1) = (pick(0), pick(1));
                let embs: Vec<Tensor> = (0..dims.len()).map(|l| Tensor::stack(&[&b0.0[l], &b1.0[l]], 0)).collect();
                let logits = Tensor::stack(&[&b0.1, &b1.1], 0);
                let labels = vec![b0.2.clone(), b1.2.clone()];
                dr.update(s, DeviceBatch { embeddings: &embs, logits: &logits, labels: &labels }).unwrap();
            }
        }
        for (p, st) in ps.iter_mut().zip(dr.end()) {
            p.absorb(st.unwrap().unwrap()).unwrap();
            if pass == 0 {
                p.next_pass().unwrap();
            }
        }
    }
    for (h, p) in host.iter().zip(ps) {
        let dev = p.finish().unwrap();
        assert_eq!(h.classes, vec![0, 2, 3, 5]);
        assert!(h.layers[0].numerical_rank.is_some() && h.layers[1].numerical_rank.is_none());
        assert!(h.layers[1].nc4_agreement_test.is_some());
        let lin = h.layers[1].linear_train_acc.expect("a linear probe on the 40-wide layer");
        assert!(lin > 0.3 && lin < 1.0, "a linear probe that decides something: {lin}");
        assert_same(h, &dev);
    }
    assert_ne!(host[0].layers[1].cdnv_train, host[1].layers[1].cdnv_train, "two different networks");
}

#[test]
fn non_finite_embeddings_are_named_by_split_and_layer() {
    let ps = [Probe::new(ProbeSpec::new(2, vec![3, 3])).unwrap(), Probe::new(ProbeSpec::new(2, vec![3, 3])).unwrap()];
    let mut dr = DeviceReducer::new(Device::Cpu, 2);
    dr.begin(ps.iter().map(|p| Some(p.plan())).collect());
    let good = Tensor::ones([2, 4, 3], (Kind::Float, Device::Cpu));
    let bad = good.copy();
    let _ = bad.get(1).get(2).get(1).fill_(f64::NAN); // network 1, row 2, layer 2
    let lg = Tensor::zeros([2, 4, 2], (Kind::Float, Device::Cpu));
    let labels = vec![vec![0, 1, 0, 1]; 2];
    dr.update(Split::Train, DeviceBatch { embeddings: &[good, bad], logits: &lg, labels: &labels }).unwrap();
    let r: Vec<_> = ps.into_iter().zip(dr.end()).map(|(mut p, s)| p.absorb(s.unwrap().unwrap())).collect();
    assert!(r[0].is_ok(), "network 0 is finite: {:?}", r[0]);
    let e = r[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("train layer 2") && e.contains("non-finite"), "{e}");
}

/// A label beyond the class count fails its own network only; the other goes on.
#[test]
fn a_bad_label_fails_only_its_network() {
    let ps = [Probe::new(ProbeSpec::new(2, vec![3])).unwrap(), Probe::new(ProbeSpec::new(2, vec![3])).unwrap()];
    let mut dr = DeviceReducer::new(Device::Cpu, 2);
    dr.begin(ps.iter().map(|p| Some(p.plan())).collect());
    let x = Tensor::ones([2, 4, 3], (Kind::Float, Device::Cpu));
    let lg = Tensor::zeros([2, 4, 2], (Kind::Float, Device::Cpu));
    let labels = vec![vec![0, 1, 0, 1], vec![0, 1, 7, 1]];
    dr.update(Split::Train, DeviceBatch { embeddings: std::slice::from_ref(&x), logits: &lg, labels: &labels })
        .unwrap();
    let ends = dr.end();
    assert!(ends[0].as_ref().unwrap().is_ok());
    let e = ends[1].as_ref().unwrap().as_ref().unwrap_err().to_string();
    assert!(e.contains("label 7 at row 2"), "{e}");
}

/// `probe.cache_mib`: pass 1's train batches replayed in pass 2 give the probe's result to the
/// bit, on both reductions and for a batched group, with one forward pass over the train split
/// instead of two; a budget too small for the split keeps nothing.
#[test]
fn the_probe_cache_changes_no_number_and_saves_a_forward_pass_over_train() {
    depthprobe::engine::init_runtime(0, 1, Numerics::Native);
    let mut cfg = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
    cfg.model.depth = 3;
    cfg.model.width = 48;
    cfg.probe.batch_size = 700; // a ragged last batch
    let (a, b) = (data::synthetic::generate(3), data::synthetic::generate(4));
    let (n_train, n_test, pb) = (a.train.len(), a.test.len(), cfg.probe.batch_size);
    let (train_batches, test_batches) = (n_train.div_ceil(pb), n_test.div_ceil(pb));
    // What pass 1 keeps, per network: every layer's embeddings and the logits, f32.
    let row_bytes = (3 * 48 + a.num_classes) * 4;
    assert!(n_train * row_bytes > 1 << 20, "the 1 MiB budget below must be too small for the split");
    for data in [vec![&a], vec![&a, &b]] {
        let g = Group { model: &cfg.model, train: &cfg.train, seeds: (0..data.len() as u64).collect(), augment: false };
        let mut t = Trainer::new(&g, &data).unwrap();
        t.train_epoch(&data, 1);
        for on_device in [false, true] {
            let mut probe = |mib: u64| {
                let mut p = cfg.probe.clone();
                p.cache_mib = mib;
                let before = t.probe_forwards();
                let out = t.probe_with(&data, &p, on_device).unwrap();
                let outcomes: Vec<(String, [f64; 4])> = out
                    .into_iter()
                    .map(|o| {
                        let o = o.unwrap();
                        (
                            serde_json::to_string(&o.result).unwrap(),
                            [o.train_loss, o.train_acc, o.test_loss, o.test_acc],
                        )
                    })
                    .collect();
                (outcomes, t.probe_forwards() - before)
            };
            let (off, forwards_off) = probe(0);
            let (kept, forwards_kept) = probe(64);
            let (over, forwards_over) = probe(1);
            let what = format!("K = {}, device reduction {on_device}", data.len());
            assert_eq!(forwards_off, 2 * train_batches + test_batches, "{what}");
            assert_eq!(forwards_kept, train_batches + test_batches, "{what}: pass 2 replays the train split");
            assert_eq!(forwards_over, forwards_off, "{what}: over the budget, nothing is kept");
            assert_eq!(kept, off, "{what}: the same result with the cache");
            assert_eq!(over, off, "{what}");
            let top = serde_json::from_str::<serde_json::Value>(&off[0].0).unwrap()["layers"][2]["ncc_train_acc"]
                .as_f64()
                .unwrap();
            assert!(top > 0.0 && top < 1.0, "{what}: decisions that pass 2 can get wrong ({top})");
        }
    }
}
