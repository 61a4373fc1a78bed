//! The early paper versions' architectures (engine/arch/resnet.rs, engine/arch/vgg.rs): their
//! embedded layers and shapes, any input channel count, K networks stacked in one model equal K
//! lone ones, a few SGD steps lower the loss, and a checkpoint loads into the equivalent PyTorch
//! module (tests/torch_models.py) and gives the same logits.

mod common;

use std::process::Command;

use depthprobe::config::{Arch, Config, DatasetName, ModelConfig, Numerics, TopKind};
use depthprobe::data::{Dataset, Split, Storage};
use depthprobe::engine::init_runtime;
use depthprobe::engine::layers::Builder;
use depthprobe::engine::network::build;
use depthprobe::engine::trainer::{Group, Trainer};
use depthprobe::rng::Rng;
use depthprobe_formats::npy_bytes_f32;
use tch::{nn, Device, Kind, Tensor};

fn model(arch: Arch, top_layers: usize, top_kind: TopKind) -> ModelConfig {
    ModelConfig { arch, top_layers, top_kind, ..Default::default() }
}

/// Random 1×32×32 inputs (MNIST's shape) with random labels.
fn gray(n: usize) -> Dataset {
    let mut r = Rng::new(5);
    let mut split = |n: usize| Split {
        storage: Storage::floats((0..n * 1024).map(|_| r.normal() as f32).collect()),
        labels: (0..n).map(|i| (i % 10) as i64).collect(),
    };
    let (train, test) = (split(n), split(n / 2));
    Dataset { name: DatasetName::Synthetic, shape: vec![1, 32, 32], num_classes: 10, train, test }
}

fn config(m: &ModelConfig) -> Config {
    let mut c = Config { model: m.clone(), ..Default::default() };
    c.train.threads = 2;
    c.train.lr = 0.02;
    c.train.warmup_epochs = 0;
    c.train.milestones = vec![];
    c.train.batch_size = 16;
    c.probe.batch_size = 40;
    c
}

fn group<'a>(c: &'a Config, seeds: Vec<u64>) -> Group<'a> {
    Group { model: &c.model, train: &c.train, seeds, augment: false }
}

#[test]
fn embedded_layers_and_shapes() {
    init_runtime(0, 2, Numerics::Native);
    let conv = |c: usize, s: usize| c * s * s;
    let cases = [
        (
            model(Arch::Resnet18, 2, TopKind::Res),
            3,
            vec![conv(64, 32), conv(64, 32), conv(128, 16), conv(256, 8), conv(512, 4), 512, 128, 128, 128],
        ),
        (
            model(Arch::Resnet18, 0, TopKind::Fc),
            1,
            vec![conv(64, 32), conv(64, 32), conv(128, 16), conv(256, 8), conv(512, 4), 512, 128],
        ),
        (
            model(Arch::Vgg11, 1, TopKind::Fc),
            3,
            vec![conv(64, 16), conv(128, 8), conv(256, 4), conv(512, 2), 512, 4096, 4096, 128, 128],
        ),
        (
            model(Arch::Vgg16, 2, TopKind::Res),
            1,
            vec![conv(64, 16), conv(128, 8), conv(256, 4), conv(512, 2), 512, 4096, 4096, 128, 128, 128],
        ),
    ];
    for (m, cin, dims) in cases {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(Builder { k: 1, draw: true }, &vs.root(), &m, &[cin, 32, 32], 10).unwrap();
        let got: Vec<usize> = net.layers().iter().map(|l| l.dim).collect();
        assert_eq!(got, dims, "{}", m.name());
        let x = Tensor::randn([2, cin as i64, 32, 32], (Kind::Float, Device::Cpu));
        let out = tch::no_grad(|| net.forward(&x, false, false, true));
        assert_eq!(out.logits.size(), vec![2, 10]);
        let sizes: Vec<Vec<i64>> = out.embeddings.iter().map(|e| e.size()).collect();
        assert_eq!(sizes, dims.iter().map(|&d| vec![2, d as i64]).collect::<Vec<_>>(), "{}", m.name());
        // NC3 is measured exactly when the classifier reads the last embedding (a residual top).
        let reads_last = m.top_layers > 0 && m.top_kind == TopKind::Res;
        assert_eq!(net.nc3_classifier().is_some(), reads_last, "{}", m.name());
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let e = build(Builder { k: 1, draw: true }, &vs.root(), &model(Arch::Vgg11, 2, TopKind::Res), &[3, 24, 24], 10)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("VGG-11") && e.contains("divisible by 32"), "{e}");
}

/// Two networks in one model (grouped convolutions, per-network BatchNorm, residual adds,
/// pooling, K-wide fc and top layers) are the two networks alone: the same initial parameters,
/// the same outputs, independent of each other, and the same SGD steps. The steps are compared
/// by direction and size, not element by element: a ReLU whose input is within rounding of zero
/// flips between the batched and the lone kernels, and in these deep BatchNorm networks such
/// flips move single gradient entries by a few percent (measured: up to 2% after one step for
/// ResNet-18, while no entry of a network changes when the other network of its model does).
#[test]
fn stacked_networks_equal_lone_networks() {
    let ds = common::cifar_sample(6, 3);
    let flat = |t: &Tensor| t.to_kind(Kind::Double).view([-1]);
    for m in [model(Arch::Resnet18, 1, TopKind::Res), model(Arch::Vgg11, 1, TopKind::Fc)] {
        let mut c = config(&m);
        c.train.batch_size = 60; // one step: the flips compound over steps
        init_runtime(0, 2, Numerics::Native);
        let pair = |seeds: Vec<u64>| Trainer::new(&group(&c, seeds), &[&ds, &ds]).unwrap();
        let mut two = pair(vec![3, 4]);
        let rows: Vec<usize> = (0..8).collect();
        let outs = two.eval_outputs(&[&ds, &ds], false, &rows);
        let st = two.train_epoch(&[&ds, &ds], 1);
        let mut other = pair(vec![3, 5]);
        other.train_epoch(&[&ds, &ds], 1);
        // Network 0 does not see network 1: its parameters do not depend on the other's seed.
        let (a, b) = (two.network_variables(0), other.network_variables(0));
        for (name, v) in &a {
            assert_eq!((v - &b[name]).abs().max().double_value(&[]), 0.0, "{} {name}: networks interact", m.name());
        }
        for (k, seed) in [3u64, 4].into_iter().enumerate() {
            let mut one = Trainer::new(&group(&c, vec![seed]), &[&ds]).unwrap();
            // Copies: the variables are views of the live parameters.
            let init: std::collections::HashMap<String, Tensor> =
                one.network_variables(0).into_iter().map(|(n, v)| (n, v.copy())).collect();
            let o = one.eval_outputs(&[&ds], false, &rows).pop().unwrap();
            let close = |x: &[f32], y: &[f32]| {
                let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5 * scale)
            };
            assert!(close(&outs[k].0, &o.0), "{} net {k}: logits at initialisation", m.name());
            for (i, (x, y)) in outs[k].1.iter().zip(&o.1).enumerate() {
                assert!(close(x, y), "{} net {k}: layer {} at initialisation", m.name(), i + 1);
            }
            let s = &one.train_epoch(&[&ds], 1)[0];
            let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(1e-12);
            assert!(rel(s.loss, st[k].loss) < 1e-4, "{} net {k}: loss {} vs {}", m.name(), s.loss, st[k].loss);
            let lone = one.network_variables(0);
            for (name, v) in two.network_variables(k) {
                let (du, dl) = (flat(&(&v - &init[&name])), flat(&(&lone[&name] - &init[&name])));
                let (nu, nl) = (du.norm().double_value(&[]), dl.norm().double_value(&[]));
                if nl == 0.0 {
                    assert_eq!(nu, 0.0, "{} net {k} {name}", m.name());
                    continue;
                }
                let cos = du.dot(&dl).double_value(&[]) / (nu * nl);
                assert!(
                    cos > 0.999 && rel(nu, nl) < 0.01,
                    "{} net {k} {name}: step cos {cos}, sizes {nu} vs {nl}",
                    m.name()
                );
            }
        }
    }
}

#[test]
fn a_few_sgd_steps_lower_the_loss() {
    init_runtime(0, 2, Numerics::Native);
    for (m, ds) in [
        (model(Arch::Resnet18, 2, TopKind::Res), common::cifar_sample(2, 1)),
        (model(Arch::Vgg13, 1, TopKind::Fc), gray(20)),
    ] {
        let mut c = config(&m);
        c.train.batch_size = 20;
        let mut t = Trainer::new(&group(&c, vec![0]), &[&ds]).unwrap();
        let losses: Vec<f64> = (1..=6).map(|e| t.train_epoch(&[&ds], e)[0].loss).collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{}: {losses:?}", m.name());
        assert!(
            losses.windows(2).all(|w| w[1] < w[0]) && losses[5] < 0.8 * losses[0],
            "{}: the loss on 20 images must fall: {losses:?}",
            m.name()
        );
    }
}

/// After a step (so BatchNorm's running statistics are not the initial ones), network k's
/// checkpoint loads into the PyTorch module with the published names and gives the same logits
/// and last embedding as depthprobe, for networks trained alone and in a batched model.
#[test]
fn checkpoints_load_into_the_equivalent_pytorch_modules() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (model(Arch::Resnet18, 2, TopKind::Res), common::cifar_sample(2, 1), 1),
        (model(Arch::Resnet18, 1, TopKind::Fc), gray(16), 2),
        (model(Arch::Vgg11, 2, TopKind::Res), common::cifar_sample(2, 1), 2),
        (model(Arch::Vgg19, 0, TopKind::Fc), gray(16), 1),
    ];
    init_runtime(0, 2, Numerics::Native);
    for (i, (m, ds, k)) in cases.into_iter().enumerate() {
        let c = config(&m);
        let seeds: Vec<u64> = (0..k as u64).collect();
        let data = vec![&ds; k];
        let mut t = Trainer::new(&group(&c, seeds), &data).unwrap();
        t.train_epoch(&data, 1);
        let rows: Vec<usize> = (0..4).collect();
        let outs = t.eval_outputs(&data, true, &rows);
        // `predict` (what a clean bound run writes for S2), in chunks of 3, is each network's
        // argmax of these logits.
        let predicted = t.predict(&data, 3);
        for (j, (logits, _)) in outs.iter().enumerate() {
            assert_eq!(predicted[j].len(), ds.test.len());
            for (r, row) in logits.chunks(10).enumerate() {
                let arg = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32;
                assert_eq!(predicted[j][r], arg, "{} network {j} sample {r}: {row:?}", m.name());
            }
        }
        for (j, (logits, embs)) in outs.iter().enumerate() {
            let dir = tmp.path().join(format!("{i}-{j}"));
            std::fs::create_dir_all(&dir).unwrap();
            t.save(j, &dir.join("ckpt.safetensors")).unwrap();
            let mut x = Vec::new();
            ds.fill_batch(&ds.test, &rows, None, &mut x);
            let mut shape = vec![4];
            shape.extend(&ds.shape);
            std::fs::write(dir.join("x.npy"), npy_bytes_f32(&shape, &x)).unwrap();
            std::fs::write(dir.join("logits.npy"), npy_bytes_f32(&[4, 10], logits)).unwrap();
            let last = embs.last().unwrap();
            std::fs::write(dir.join("emb.npy"), npy_bytes_f32(&[4, last.len() / 4], last)).unwrap();
            let o = Command::new(common::python())
                .arg(common::repo_root().join("tests/torch_models.py"))
                .arg(m.arch.as_str())
                .args(["ckpt.safetensors", "x.npy", "logits.npy", "emb.npy"].map(|f| dir.join(f)))
                .args(["--top-layers", &m.top_layers.to_string(), "--top-kind", m.top_kind.as_str()])
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "{} (network {j} of {k}): {report}{}",
                m.name(),
                String::from_utf8_lossy(&o.stderr)
            );
            // The PyTorch module has exactly our trainable parameters.
            let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
            let ours: i64 = t
                .network_variables(j)
                .iter()
                .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
                .map(|(_, t)| t.numel() as i64)
                .sum();
            assert_eq!(v["params"].as_i64().unwrap(), ours, "{}: parameter count", m.name());
        }
    }
}
