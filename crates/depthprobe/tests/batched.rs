//! K networks trained as one batched model follow the trajectories they follow when trained one
//! by one (engine/batched.rs): same per-epoch losses, same parameters, same probe results, up to
//! the rounding of batched GEMMs. Like any change of kernel (or GPU nondeterminism) that
//! rounding is eventually amplified where a ReLU or a decision flips, so the comparison covers
//! two epochs, where every parameter agrees to ~1e-7 (docs/performance.md has the long-run
//! measurement).

use depthprobe::config::{Config, EmbeddingPoint};
use depthprobe::data::Dataset;
use depthprobe::engine::batched::BatchedTrainer;
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{ProbeReduction, Trainer};
use depthprobe::run::prepare_data;
use tch::Device;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

fn base_config(emb: EmbeddingPoint) -> Config {
    let mut base = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
    base.model.depth = 3;
    base.model.width = 48;
    base.model.embedding = emb;
    base.train.threads = 1;
    base.train.warmup_epochs = 1;
    base.train.lr = 0.05;
    base
}

/// Train `cfgs` on `data` batched and one by one for 2 epochs; compare losses, parameters,
/// probes, and the checkpoint a batched network writes.
fn check_against_one_by_one(cfgs: &[Config], data: &[Dataset], resident: bool) {
    let refs: Vec<&Dataset> = data.iter().collect();
    init_runtime(99, 1);
    let mut batched = BatchedTrainer::new(cfgs, &refs, Device::Cpu).unwrap();
    let mut b_stats = Vec::new();
    for epoch in 1..=2 {
        b_stats.push(batched.train_epoch(&refs, epoch));
    }
    assert_eq!(batched.inputs_resident(), resident);
    // Both reductions of the batched probe: the host engine per network (the CPU default) and
    // the device one for all K (the GPU default).
    let b_probes: Vec<Vec<_>> = [ProbeReduction::Host, ProbeReduction::Device]
        .iter()
        .map(|&r| batched.probe_with(&refs, r).into_iter().map(|r| r.unwrap()).collect())
        .collect();
    let emb = cfgs[0].model.embedding;
    for (k, (cfg, ds)) in cfgs.iter().zip(data).enumerate() {
        init_runtime(cfg.train.seed, 1);
        let mut t = Trainer::new(cfg, ds, Device::Cpu).unwrap();
        for epoch in 1..=2 {
            let s = t.train_epoch(ds, epoch);
            let b = &b_stats[epoch - 1][k];
            assert!(rel(s.loss, b.loss) < 1e-4, "{emb:?} net {k} epoch {epoch}: loss {} vs {}", s.loss, b.loss);
            assert!(
                (s.acc - b.acc).abs() <= 2.0 / ds.train.len() as f64,
                "net {k} epoch {epoch}: acc {} vs {}",
                s.acc,
                b.acc
            );
        }
        let single = t.variables();
        for (name, bt) in batched.network_variables(k) {
            let st = &single[&name];
            let d = (st - &bt).abs().max().double_value(&[]);
            let scale = st.abs().max().double_value(&[]).max(1e-3);
            assert!(d <= 1e-4 * scale, "{emb:?} net {k} {name}: parameters differ by {d} (scale {scale})");
        }
        let p = t.probe_with(ds, ProbeReduction::Device).unwrap();
        for q in b_probes.iter().map(|b| &b[k]) {
            assert!(rel(p.train_loss, q.train_loss) < 1e-4 && rel(p.test_loss, q.test_loss) < 1e-4);
            assert_eq!(p.result.train_samples, q.result.train_samples);
            assert_eq!(p.result.layers.len(), q.result.layers.len());
            for (a, b) in p.result.layers.iter().zip(&q.result.layers) {
                let n = ds.train.len() as f64;
                assert!((a.ncc_train_acc - b.ncc_train_acc).abs() <= 2.0 / n, "net {k} layer {}: NCC", a.layer);
                let nt = ds.test.len() as f64;
                assert!(
                    (a.ncc_test_acc.unwrap() - b.ncc_test_acc.unwrap()).abs() <= 2.0 / nt,
                    "net {k} layer {}: NCC test",
                    a.layer
                );
                assert!(rel(a.cdnv_train.unwrap(), b.cdnv_train.unwrap()) < 1e-3, "net {k} layer {}: CDNV", a.layer);
                assert_eq!(a.nc3_self_duality.is_some(), b.nc3_self_duality.is_some());
                if let (Some(x), Some(y)) = (a.nc3_self_duality, b.nc3_self_duality) {
                    assert!(rel(x, y) < 1e-3, "net {k} layer {}: NC3 {x} vs {y}", a.layer);
                }
            }
        }
        // The checkpoint of a batched network loads into a single-network Trainer unchanged.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        batched.save(k, tmp.path()).unwrap();
        let mut loaded = Trainer::new(cfg, ds, Device::Cpu).unwrap();
        loaded.load(tmp.path()).unwrap();
        let lv = loaded.variables();
        for (name, bt) in batched.network_variables(k) {
            assert_eq!((&lv[&name] - &bt).abs().max().double_value(&[]), 0.0, "net {k} {name} after save/load");
        }
    }
    // The networks really differ from each other (so matching them one by one means something).
    let (w0, w1) = (&batched.network_variables(0)[0].1, &batched.network_variables(1)[0].1);
    assert!((w0 - w1).abs().max().double_value(&[]) > 1e-3);
}

/// Seeds change the demo data too, so these networks see different inputs: batches are
/// assembled on the host.
#[test]
fn batched_networks_match_networks_trained_one_by_one() {
    for emb in [EmbeddingPoint::PreBn, EmbeddingPoint::PostActivation] {
        let base = base_config(emb);
        // Three networks: two seeds on clean labels, one with 30% of its labels corrupted.
        let cfgs: Vec<Config> = [(0u64, 0.0), (1, 0.0), (2, 0.3)]
            .iter()
            .map(|&(seed, p)| {
                let mut c = base.clone();
                c.train.seed = seed;
                c.corruption.p = p;
                c.corruption.seed = seed + 10;
                c
            })
            .collect();
        let data: Vec<_> = cfgs.iter().map(|c| prepare_data(c, None).unwrap().0).collect();
        assert_ne!(data[0].train.labels, data[2].train.labels, "network 2 has its own corrupted labels");
        check_against_one_by_one(&cfgs, &data, false);
    }
}

/// Same inputs, different seeds and labels (as MNIST with seeds × corruption): the inputs stay on
/// the device and each step gathers its batches there.
#[test]
fn batched_networks_on_shared_device_resident_inputs_match_too() {
    let base = base_config(EmbeddingPoint::PreBn);
    let ds = prepare_data(&base, None).unwrap().0;
    let cfgs: Vec<Config> = (0..3)
        .map(|seed| {
            let mut c = base.clone();
            c.train.seed = seed;
            c
        })
        .collect();
    let mut data = vec![ds.clone(), ds.clone(), ds];
    let changed = depthprobe::data::corruption::corrupt(
        &mut data[2].train.labels,
        10,
        0.3,
        depthprobe::data::corruption::CorruptionMode::Exact,
        5,
    );
    assert!(changed.len() > 100);
    check_against_one_by_one(&cfgs, &data, true);
}

#[test]
fn networks_that_cannot_share_a_batch_are_refused() {
    let base = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
    let ds = prepare_data(&base, None).unwrap().0;
    let mut other = base.clone();
    other.train.lr *= 2.0;
    let e = BatchedTrainer::new(&[base.clone(), other], &[&ds, &ds], Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("network 1 differs"), "{e}");
    let mut conv = base.clone();
    conv.model.arch = depthprobe::config::Arch::Conv;
    let e = BatchedTrainer::new(&[conv], &[&ds], Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("MLP-L-H"), "{e}");
}

/// LibTorch's generator is process-global: networks built on several threads at once must
/// still get exactly their own seed's parameters (tests run in parallel; this raced once in CI).
#[test]
fn trainers_built_on_several_threads_get_their_own_seeds_parameters() {
    let base = base_config(EmbeddingPoint::PreBn);
    let ds = prepare_data(&base, None).unwrap().0;
    let build = |seed: u64| {
        let mut c = base.clone();
        c.train.seed = seed;
        let t = Trainer::new(&c, &ds, Device::Cpu).unwrap();
        t.variables().into_iter().map(|(n, v)| (n, v.copy())).collect::<std::collections::BTreeMap<_, _>>()
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
}
