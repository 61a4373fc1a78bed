//! K networks trained as one model (engine/trainer.rs) follow the trajectories they follow when
//! trained one by one: same per-epoch losses, same parameters, same probe results, up to the
//! rounding of batched kernels (batched GEMMs, grouped convolutions). Like any change of kernel
//! (or GPU nondeterminism) that rounding is eventually amplified where a ReLU or a decision
//! flips, so the comparison covers two epochs, where every parameter agrees to ~1e-7
//! (docs/performance.md has the long-run measurement). MLPs and ConvNets alike.

use depthprobe::config::{Arch, Config, EmbeddingPoint, Numerics};
use depthprobe::data::{self, Dataset};
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};
use tch::Kind;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

fn base_config(arch: Arch, emb: EmbeddingPoint) -> Config {
    let mut base = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
    base.model.arch = arch;
    base.model.depth = 3;
    base.model.width = if arch == Arch::Conv { 8 } else { 48 };
    base.model.embedding = emb;
    base.train.threads = 1;
    base.train.warmup_epochs = 1;
    base.train.lr = 0.05;
    base
}

/// The demo data as 2×4×4 images for a ConvNet (CONV-L-H needs [C, H, W]); vectors otherwise.
fn shaped(mut ds: Dataset, arch: Arch) -> Dataset {
    if arch == Arch::Conv {
        ds.shape = vec![2, 4, 4];
    }
    ds
}

fn group<'a>(cfgs: &'a [Config]) -> Group<'a> {
    Group {
        model: &cfgs[0].model,
        train: &cfgs[0].train,
        seeds: cfgs.iter().map(|c| c.train.seed).collect(),
        augment: false,
    }
}

/// Train `cfgs` on `data` batched and one by one for 2 epochs; compare losses, parameters,
/// probes (both reductions), and the checkpoint a batched network writes.
fn check_against_one_by_one(cfgs: &[Config], data: &[Dataset], resident: bool) {
    let refs: Vec<&Dataset> = data.iter().collect();
    init_runtime(99, 1, Numerics::Native);
    let mut batched = Trainer::new(&group(cfgs), &refs).unwrap();
    let mut b_stats = Vec::new();
    for epoch in 1..=2 {
        b_stats.push(batched.train_epoch(&refs, epoch));
    }
    assert_eq!(batched.inputs_resident(), resident);
    // Both reductions of the batched probe: the host engine per network (the CPU default) and
    // the device one for all K (the GPU default).
    let b_probes: Vec<Vec<_>> = [false, true]
        .iter()
        .map(|&dev| batched.probe_with(&refs, &cfgs[0].probe, dev).unwrap().into_iter().map(|r| r.unwrap()).collect())
        .collect();
    let what = format!("{:?} {:?}", cfgs[0].model.arch, cfgs[0].model.embedding);
    for (k, (cfg, ds)) in cfgs.iter().zip(data).enumerate() {
        init_runtime(cfg.train.seed, 1, Numerics::Native);
        let one = [cfg.clone()];
        let mut t = Trainer::new(&group(&one), &[ds]).unwrap();
        for epoch in 1..=2 {
            let s = &t.train_epoch(&[ds], epoch)[0];
            let b = &b_stats[epoch - 1][k];
            assert!(rel(s.loss, b.loss) < 1e-4, "{what} net {k} epoch {epoch}: loss {} vs {}", s.loss, b.loss);
            assert!(
                (s.acc - b.acc).abs() <= 2.0 / ds.train.len() as f64,
                "{what} net {k} epoch {epoch}: acc {} vs {}",
                s.acc,
                b.acc
            );
        }
        let single = t.network_variables(0);
        for (name, bt) in batched.network_variables(k) {
            let st = &single[&name];
            assert_eq!(st.size(), bt.size(), "{name}: a batched network's variable has the lone network's shape");
            let d = (st - &bt).abs().max().double_value(&[]);
            let scale = st.abs().max().double_value(&[]).max(1e-3);
            assert!(d <= 1e-4 * scale, "{what} net {k} {name}: parameters differ by {d} (scale {scale})");
        }
        let p = t.probe_with(&[ds], &cfg.probe, true).unwrap().pop().unwrap().unwrap();
        for q in b_probes.iter().map(|b| &b[k]) {
            assert!(rel(p.train_loss, q.train_loss) < 1e-4 && rel(p.test_loss, q.test_loss) < 1e-4);
            assert_eq!(p.result.train_samples, q.result.train_samples);
            assert_eq!(p.result.layers.len(), q.result.layers.len());
            for (a, b) in p.result.layers.iter().zip(&q.result.layers) {
                let n = ds.train.len() as f64;
                assert!((a.ncc_train_acc - b.ncc_train_acc).abs() <= 2.0 / n, "{what} net {k} layer {}: NCC", a.layer);
                let nt = ds.test.len() as f64;
                assert!(
                    (a.ncc_test_acc.unwrap() - b.ncc_test_acc.unwrap()).abs() <= 2.0 / nt,
                    "{what} net {k} layer {}: NCC test",
                    a.layer
                );
                assert!(
                    rel(a.cdnv_train.unwrap(), b.cdnv_train.unwrap()) < 1e-3,
                    "{what} net {k} layer {}: CDNV",
                    a.layer
                );
                assert_eq!(a.nc3_self_duality.is_some(), b.nc3_self_duality.is_some());
                if let (Some(x), Some(y)) = (a.nc3_self_duality, b.nc3_self_duality) {
                    assert!(rel(x, y) < 1e-3, "{what} net {k} layer {}: NC3 {x} vs {y}", a.layer);
                }
            }
        }
        // The checkpoint of a batched network loads into a lone network unchanged.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        batched.save(k, tmp.path()).unwrap();
        let mut loaded = Trainer::new(&group(&one), &[ds]).unwrap();
        loaded.load(0, tmp.path()).unwrap();
        let lv = loaded.network_variables(0);
        for (name, bt) in batched.network_variables(k) {
            assert_eq!((&lv[&name] - &bt).abs().max().double_value(&[]), 0.0, "net {k} {name} after save/load");
        }
        // And a lone network's checkpoint loads into slot k of a batched model.
        let lone = tempfile::NamedTempFile::new().unwrap();
        t.save(0, lone.path()).unwrap();
        let mut again = Trainer::new(&group(cfgs), &refs).unwrap();
        again.load(k, lone.path()).unwrap();
        for (name, v) in again.network_variables(k) {
            assert_eq!((&single[&name] - &v).abs().max().double_value(&[]), 0.0, "slot {k} {name}");
        }
    }
    // The networks really differ from each other (so matching them one by one means something).
    let (v0, v1) = (batched.network_variables(0), batched.network_variables(1));
    let name = v0.keys().find(|n| n.ends_with("weight") && v0[*n].size().len() > 1).unwrap().clone();
    assert!((&v0[&name] - &v1[&name]).abs().max().double_value(&[]) > 1e-3);
}

fn seeds_and_corruption(base: &Config) -> Vec<Config> {
    // Three networks: two seeds on clean labels, one with 30% of its labels corrupted.
    [(0u64, 0.0), (1, 0.0), (2, 0.3)]
        .iter()
        .map(|&(seed, p)| {
            let mut c = base.clone();
            c.train.seed = seed;
            c.corruption.p = p;
            c.corruption.seed = seed + 10;
            c
        })
        .collect()
}

/// Seeds change the demo data too, so these networks see different inputs: batches are
/// assembled on the host. MLPs at both embedding points, and ConvNets.
#[test]
fn batched_networks_match_networks_trained_one_by_one() {
    for (arch, emb) in [
        (Arch::Mlp, EmbeddingPoint::PreBn),
        (Arch::Mlp, EmbeddingPoint::PostActivation),
        (Arch::Conv, EmbeddingPoint::PreBn),
        (Arch::Conv, EmbeddingPoint::PostActivation),
    ] {
        let cfgs = seeds_and_corruption(&base_config(arch, emb));
        let data: Vec<Dataset> = cfgs.iter().map(|c| shaped(data::prepare(c, None).unwrap().data, arch)).collect();
        assert_ne!(data[0].train.labels, data[2].train.labels, "network 2 has its own corrupted labels");
        check_against_one_by_one(&cfgs, &data, false);
    }
}

/// Same inputs, different seeds and labels (as MNIST with seeds × corruption): the inputs stay on
/// the device, each step gathers its K batches there, and the probe sends each batch once
/// through the first layer against all K weights.
#[test]
fn batched_networks_on_shared_device_resident_inputs_match_too() {
    for arch in [Arch::Mlp, Arch::Conv] {
        let base = base_config(arch, EmbeddingPoint::PreBn);
        let ds = shaped(data::prepare(&base, None).unwrap().data, arch);
        let cfgs: Vec<Config> = (0..3)
            .map(|seed| {
                let mut c = base.clone();
                c.train.seed = seed;
                c
            })
            .collect();
        let mut data = vec![ds.clone(), ds.clone(), ds];
        let changed =
            data::corruption::corrupt(&mut data[2].train.labels, 10, 0.3, data::corruption::CorruptionMode::Exact, 5);
        assert!(changed.len() > 100);
        check_against_one_by_one(&cfgs, &data, true);
    }
}

#[test]
fn networks_that_cannot_share_a_model_are_refused() {
    let base = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
    let mut other = base.clone();
    other.data.train_per_class = 100;
    let a = data::prepare(&base, None).unwrap().data;
    let b = data::prepare(&other, None).unwrap().data;
    let cfgs = [base.clone(), base.clone()];
    let e = Trainer::new(&group(&cfgs), &[&a, &b]).err().unwrap().to_string();
    assert!(e.contains("network 1") && e.contains("split sizes"), "{e}");
    // The pipeline refuses runs whose configs differ in more than seeds and corruption.
    let mut lr = base.clone();
    lr.train.lr *= 2.0;
    let tmp = tempfile::tempdir().unwrap();
    let spec = |c: &Config, d: &str| depthprobe::pipeline::RunSpec {
        cfg: c.clone(),
        opts: depthprobe::pipeline::RunOptions {
            out: tmp.path().join(d),
            data_dir: None,
            force: true,
            quiet: true,
            tensorboard: None,
        },
        resume: false,
    };
    let e = depthprobe::pipeline::train_group(vec![spec(&base, "a"), spec(&lr, "b")]).err().unwrap().to_string();
    assert!(e.contains("cannot train as one model"), "{e}");
}

/// LibTorch's generator is process-global: networks built on several threads at once must
/// still get exactly their own seed's parameters (tests run in parallel; this raced once in CI).
#[test]
fn trainers_built_on_several_threads_get_their_own_seeds_parameters() {
    let base = base_config(Arch::Mlp, EmbeddingPoint::PreBn);
    let ds = data::prepare(&base, None).unwrap().data;
    let build = |seed: u64| {
        let mut c = base.clone();
        c.train.seed = seed;
        let one = [c];
        let t = Trainer::new(&group(&one), &[&ds]).unwrap();
        t.network_variables(0).into_iter().map(|(n, v)| (n, v.copy())).collect::<std::collections::BTreeMap<_, _>>()
    };
    let alone: Vec<_> = (0..4).map(build).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..4u64).map(|seed| s.spawn(move || (0..25).map(|_| build(seed)).collect::<Vec<_>>())).collect();
        for (seed, h) in handles.into_iter().enumerate() {
            for got in h.join().unwrap() {
                for (name, v) in &alone[seed] {
                    assert_eq!((v - &got[name]).abs().max().double_value(&[]), 0.0, "seed {seed} {name}");
                }
            }
        }
    });
    assert!(alone[0]["layers.0.linear.weight"].sum(Kind::Double).double_value(&[]) != 0.0);
}
