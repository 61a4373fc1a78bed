//! K networks trained as one batched model follow the trajectories they follow when trained one
//! by one (engine/batched.rs): same per-epoch losses, same parameters, same probe results, up to
//! the rounding of batched GEMMs. Like any change of kernel (or GPU nondeterminism) that
//! rounding is eventually amplified where a ReLU or a decision flips, so the comparison covers
//! two epochs, where every parameter agrees to ~1e-7 (docs/performance.md has the long-run
//! measurement).

use depthprobe::config::{Config, EmbeddingPoint};
use depthprobe::engine::batched::BatchedTrainer;
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{ProbeReduction, Trainer};
use depthprobe::run::prepare_data;
use tch::{Device, Kind};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn batched_networks_match_networks_trained_one_by_one() {
    for emb in [EmbeddingPoint::PreBn, EmbeddingPoint::PostActivation] {
        let mut base = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
        base.model.depth = 3;
        base.model.width = 48;
        base.model.embedding = emb;
        base.train.threads = 1;
        base.train.warmup_epochs = 1;
        base.train.lr = 0.05;
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
        let refs: Vec<_> = data.iter().collect();
        assert_ne!(data[0].train.labels, data[2].train.labels, "network 2 has its own corrupted labels");
        init_runtime(99, 1);
        let mut batched = BatchedTrainer::new(&cfgs, &refs, Device::Cpu).unwrap();
        let mut b_stats = Vec::new();
        for epoch in 1..=2 {
            b_stats.push(batched.train_epoch(&refs, epoch));
        }
        let b_probe: Vec<_> = batched.probe(&refs).into_iter().map(|r| r.unwrap()).collect();
        for (k, (cfg, ds)) in cfgs.iter().zip(&data).enumerate() {
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
                eprintln!("DBG {emb:?} net {k} {name} {:.3e}", d / scale);
                assert!(d <= 1e-4 * scale, "{emb:?} net {k} {name}: parameters differ by {d} (scale {scale})");
                assert!(bt.to_kind(Kind::Float).isfinite().all().int64_value(&[]) == 1);
            }
            let p = t.probe_with(ds, ProbeReduction::Device).unwrap();
            let q = &b_probe[k];
            assert!(rel(p.train_loss, q.train_loss) < 1e-4 && rel(p.test_loss, q.test_loss) < 1e-4);
            assert_eq!(p.result.train_samples, q.result.train_samples);
            for (a, b) in p.result.layers.iter().zip(&q.result.layers) {
                let n = ds.train.len() as f64;
                assert!((a.ncc_train_acc - b.ncc_train_acc).abs() <= 2.0 / n, "net {k} layer {}: NCC", a.layer);
                assert!(rel(a.cdnv_train.unwrap(), b.cdnv_train.unwrap()) < 1e-3, "net {k} layer {}: CDNV", a.layer);
                assert_eq!(a.nc3_self_duality.is_some(), b.nc3_self_duality.is_some());
                if let (Some(x), Some(y)) = (a.nc3_self_duality, b.nc3_self_duality) {
                    assert!(rel(x, y) < 1e-3, "net {k} layer {}: NC3 {x} vs {y}", a.layer);
                }
            }
        }
        // The networks really differ from each other (so matching them one by one means something).
        let (w0, w1) = (&batched.network_variables(0)[0].1, &batched.network_variables(1)[0].1);
        assert!((w0 - w1).abs().max().double_value(&[]) > 1e-3);
    }
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
