//! `train.graph` (engine/step_graph.rs): a training step captured as a CUDA graph and replayed
//! gives eager training's losses and parameters. On a machine without a CUDA GPU only the CPU
//! behaviour is checked ("on" refused with the reason, "auto" eager and bit-identical); the
//! graph-against-eager comparisons need a GPU and say so when skipped.

use depthprobe::config::{Arch, Config, EmbeddingPoint, Graph, Numerics, Precision};
use depthprobe::data::{self, Dataset};
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};

fn config(arch: Arch, graph: Graph, device: &str) -> Config {
    let mut c = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[format!("train.device=\"{device}\"")]).unwrap();
    c.model.arch = arch;
    c.model.depth = 3;
    c.model.width = if arch == Arch::Conv { 8 } else { 48 };
    c.model.embedding = EmbeddingPoint::PreBn;
    c.train.threads = 1;
    c.train.numerics = Numerics::Native;
    c.train.warmup_epochs = 1;
    c.train.lr = 0.05;
    c.train.graph = graph;
    c
}

fn demo_data(cfg: &Config, arch: Arch) -> Dataset {
    let mut ds = data::prepare(cfg, None).unwrap().data;
    if arch == Arch::Conv {
        ds.shape = vec![2, 4, 4];
    }
    ds
}

/// Per epoch, every network's loss; per network, its variables by name; whether a graph was
/// captured.
struct Trained {
    losses: Vec<Vec<f64>>,
    vars: Vec<Vec<(String, tch::Tensor)>>,
    captured: bool,
}

/// `epochs` epochs of K = seeds.len() networks.
fn train(cfg: &Config, seeds: &[u64], ds: &Dataset, epochs: usize) -> Trained {
    init_runtime(7, 1, Numerics::Native);
    let refs: Vec<&Dataset> = seeds.iter().map(|_| ds).collect();
    let g = Group { model: &cfg.model, train: &cfg.train, seeds: seeds.to_vec(), augment: false };
    let mut t = Trainer::new(&g, &refs).unwrap();
    let losses = (1..=epochs).map(|e| t.train_epoch(&refs, e).iter().map(|s| s.loss).collect()).collect();
    let vars = (0..seeds.len())
        .map(|k| {
            let mut v: Vec<(String, tch::Tensor)> = t.network_variables(k).into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        })
        .collect();
    Trained { losses, vars, captured: t.graph_captured() }
}

#[test]
fn on_a_cpu_on_is_refused_and_auto_trains_eagerly() {
    let cfg = config(Arch::Mlp, Graph::On, "cpu");
    let ds = demo_data(&cfg, Arch::Mlp);
    let g = Group { model: &cfg.model, train: &cfg.train, seeds: vec![0], augment: false };
    let e = format!("{:#}", Trainer::new(&g, &[&ds]).err().expect("graph = on on a CPU is an error"));
    assert!(e.contains("train.graph") && e.contains("CUDA"), "{e}");

    let auto = train(&config(Arch::Mlp, Graph::Auto, "cpu"), &[0], &ds, 2);
    let off = train(&config(Arch::Mlp, Graph::Off, "cpu"), &[0], &ds, 2);
    assert!(!auto.captured);
    assert_eq!(auto.losses, off.losses);
    for ((n, a), (_, b)) in auto.vars[0].iter().zip(&off.vars[0]) {
        assert!(a.equal(b), "{n}");
    }
}

#[test]
fn a_replayed_graph_trains_as_eager_steps_do() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA GPU (the graph-against-eager comparison runs on a GPU)");
        return;
    }
    for (arch, seeds, precision) in [
        (Arch::Mlp, vec![0u64], Precision::Default),
        (Arch::Conv, vec![0, 1], Precision::Default),
        (Arch::Conv, vec![2], Precision::Bf16),
    ] {
        let mut on = config(arch, Graph::On, "cuda");
        on.train.precision = precision;
        let mut off = on.clone();
        off.train.graph = Graph::Off;
        let ds = demo_data(&on, arch);
        // Enough full batches per epoch for the warm-up, the capture and replays.
        let graph = train(&on, &seeds, &ds, 2);
        let eager = train(&off, &seeds, &ds, 2);
        let what = format!("{arch:?} K = {} {precision:?}", seeds.len());
        assert!(graph.captured, "{what}: the step was not captured");
        for (a, b) in graph.losses.iter().flatten().zip(eager.losses.iter().flatten()) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-12), "{what}: loss {a} vs {b}");
        }
        for (gk, ek) in graph.vars.iter().zip(&eager.vars) {
            for ((n, a), (_, b)) in gk.iter().zip(ek) {
                let d = (a - b).abs().max().double_value(&[]);
                let scale = b.abs().max().double_value(&[]).max(1e-3);
                assert!(d <= 1e-4 * scale, "{what} {n}: graph and eager parameters differ by {d} (scale {scale})");
            }
        }
    }
}
