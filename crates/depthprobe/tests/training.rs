//! Models, training runs and data loading (issue: train the paper's networks and probe them).

mod common;

use std::path::Path;

use depthprobe::config::{Arch, Config, DatasetName, Device as Dev, EmbeddingPoint, ModelConfig};
use depthprobe::data;
use depthprobe::engine::layers::Builder;
use depthprobe::engine::network::build;
use depthprobe::pipeline::{train, RunOptions};
use depthprobe_formats::{cifar, idx};
use depthprobe_measures::{LayerProbe, ProbeSpec, Split};
use tch::{nn, Device, Kind, Tensor};

#[test]
fn model_shapes_and_embedding_count_per_depth() {
    for arch in [Arch::Mlp, Arch::Conv] {
        for depth in [1usize, 3, 5] {
            for emb in [EmbeddingPoint::PreBn, EmbeddingPoint::PostActivation] {
                let vs = nn::VarStore::new(Device::Cpu);
                let cfg = ModelConfig { arch, depth, width: 8, embedding: emb, ..Default::default() };
                let net = build(Builder { k: 1, draw: true }, &vs.root(), &cfg, &[3, 32, 32], 10).unwrap();
                let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
                let out = net.forward(&x, false, false, true);
                let (logits, embs) = (out.logits, out.embeddings);
                assert_eq!(logits.size(), vec![4, 10]);
                assert_eq!(embs.len(), depth, "{arch:?} L={depth}");
                let d = if arch == Arch::Mlp { 8 } else { 8 * 8 * 8 };
                for e in &embs {
                    assert_eq!(e.size(), vec![4, d as i64]);
                }
                assert_eq!(net.layers().iter().map(|l| l.dim).collect::<Vec<_>>(), vec![d; depth]);
                if emb == EmbeddingPoint::PostActivation {
                    assert!(
                        embs.iter().all(|e| e.min().double_value(&[]) >= 0.0),
                        "post-ReLU embeddings are non-negative"
                    );
                } else {
                    assert!(embs[0].min().double_value(&[]) < 0.0, "pre-BN embeddings take negative values");
                }
                // Parameter count: MLP = Σ linear + BN + head; CONV adds the two-conv stem.
                let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
                let h = 8i64;
                let want = match arch {
                    Arch::Mlp => {
                        (3072 * h + h) + (depth as i64 - 1) * (h * h + h) + depth as i64 * 2 * h + (h * 10 + 10)
                    }
                    Arch::Conv => {
                        (3 * 4 * h + h)
                            + 2 * h
                            + (h * h * 4 + h)
                            + 2 * h
                            + depth as i64 * (h * h * 9 + h + 2 * h)
                            + (h * 64 * 10 + 10)
                    }
                    _ => unreachable!("MLP and CONV only here; tests/architectures.rs has the others"),
                };
                assert_eq!(n, want, "{arch:?} L={depth} parameter count");
            }
        }
    }
}

#[test]
fn init_is_pytorch_default_uniform() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = ModelConfig { arch: Arch::Mlp, depth: 2, width: 400, ..Default::default() };
    let _net = build(Builder { k: 1, draw: true }, &vs.root(), &cfg, &[1, 32, 32], 10).unwrap();
    let vars = vs.variables();
    let w = &vars["layers.1.linear.weight"];
    let bound = 1.0 / (400f64).sqrt();
    let (lo, hi) = (w.min().double_value(&[]), w.max().double_value(&[]));
    assert!(lo >= -bound && hi <= bound && hi > 0.95 * bound && lo < -0.95 * bound, "[{lo}, {hi}] vs ±{bound}");
    let b = &vars["layers.1.linear.bias"];
    assert!(
        b.abs().max().double_value(&[]) <= bound && b.abs().max().double_value(&[]) > 0.0,
        "bias uniform, not zero"
    );
    assert_eq!(vars["layers.0.bn.weight"].mean(Kind::Float).double_value(&[]), 1.0);
}

fn quick_cfg(epochs: usize) -> Config {
    let mut c = Config::from_toml(depthprobe::DEMO_CONFIG, "demo", &[]).unwrap();
    c.train.epochs = epochs;
    c.train.threads = 1;
    c.model.depth = 4;
    c.model.width = 64;
    c.train.milestones = vec![];
    c.probe.every = 1;
    c
}

fn run(cfg: &Config, dir: &Path) -> depthprobe::pipeline::RunResult {
    train(cfg, &RunOptions { out: dir.into(), data_dir: None, force: true, quiet: true, tensorboard: None }).unwrap()
}

#[test]
fn same_seed_gives_identical_metrics_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = quick_cfg(2);
    run(&cfg, &tmp.path().join("a"));
    run(&cfg, &tmp.path().join("b"));
    let a = std::fs::read(tmp.path().join("a/metrics.csv")).unwrap();
    let b = std::fs::read(tmp.path().join("b/metrics.csv")).unwrap();
    assert!(a.len() > 1000);
    assert!(a == b, "metrics.csv differs between two runs with the same seed");
    let mut other = cfg.clone();
    other.train.seed = 1;
    run(&other, &tmp.path().join("c"));
    assert_ne!(a, std::fs::read(tmp.path().join("c/metrics.csv")).unwrap(), "a different seed must change the run");
}

#[test]
fn training_reduces_loss_and_raises_top_layer_ncc() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = quick_cfg(6);
    let r = run(&cfg, tmp.path());
    let csv = std::fs::read_to_string(tmp.path().join("metrics.csv")).unwrap();
    let get = |epoch: usize, layer: &str, split: &str, metric: &str| -> f64 {
        let prefix = format!("{epoch},{layer},{split},{metric},");
        csv.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {prefix}")).parse().unwrap()
    };
    let (loss0, loss6) = (get(0, "", "train", "loss"), get(6, "", "train", "loss"));
    let (ncc0, ncc6) = (get(0, "4", "train", "ncc_acc"), get(6, "4", "train", "ncc_acc"));
    assert!(loss6 < 0.5 * loss0, "loss {loss0} → {loss6}");
    assert!(ncc6 > ncc0 + 0.2 && ncc6 > 0.9, "top-layer NCC {ncc0} → {ncc6}");
    assert_eq!(r.summary.status, Some(depthprobe_runfolder::Status::Done));
    assert_eq!(r.summary.epochs, Some(6));
    for f in [
        "config.toml",
        "summary.json",
        "cdnv_pairs.csv",
        "ncc_by_epoch.svg",
        "ncc_by_epoch.png",
        "layer_profile.svg",
        "layer_profile.png",
    ] {
        assert!(tmp.path().join(f).exists(), "{f} missing");
    }
    // The run folder's config is the resolved config and reproduces it.
    let again = Config::from_file(&tmp.path().join("config.toml"), &[]).unwrap();
    assert_eq!(again, cfg);
}

#[test]
fn an_existing_run_folder_is_refused_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = quick_cfg(1);
    run(&cfg, tmp.path());
    let e = train(
        &cfg,
        &RunOptions { out: tmp.path().into(), data_dir: None, force: false, quiet: true, tensorboard: None },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("already holds a run") && e.to_string().contains("--force"), "{e}");
}

#[test]
fn corrupted_run_records_changed_indices() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = quick_cfg(1);
    cfg.corruption.p = 0.2;
    let r = run(&cfg, tmp.path());
    let n = data::synthetic::CLASSES * data::synthetic::TRAIN_PER_CLASS;
    let rows = std::fs::read_to_string(tmp.path().join("corrupted_labels.csv")).unwrap().lines().count() - 1;
    assert_eq!(rows, (0.2 * n as f64).floor() as usize);
    assert_eq!(r.summary.corruption.as_ref().unwrap().changed, rows);
}

#[test]
fn cuda_without_gpu_is_a_clear_error() {
    if tch::Cuda::device_count() > 0 {
        return; // Only meaningful where there is no GPU (CI and the development machines).
    }
    let mut cfg = quick_cfg(1);
    cfg.train.device = Dev::Cuda(0);
    let e = train(
        &cfg,
        &RunOptions {
            out: tempfile::tempdir().unwrap().path().into(),
            data_dir: None,
            force: true,
            quiet: true,
            tensorboard: None,
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("no CUDA GPU"), "{e}");
}

#[test]
fn demo_data_is_not_ncc_separable_at_the_input() {
    let ds = data::synthetic::generate(0);
    let n = ds.train.len();
    let d = ds.sample_len();
    let mut x = Vec::new();
    ds.fill_batch(&ds.train, &(0..n).collect::<Vec<_>>(), None, &mut x);
    let y: Vec<u32> = ds.train.labels.iter().map(|&v| v as u32).collect();
    let mut p = LayerProbe::new(ProbeSpec::new(ds.num_classes, vec![d])).unwrap();
    p.update(Split::Train, 1, &x, &y).unwrap();
    p.next_pass().unwrap();
    p.update(Split::Train, 1, &x, &y).unwrap();
    let acc = p.finish().unwrap().layers[0].ncc_train_acc;
    assert!(acc < 0.7, "raw-input NCC accuracy {acc}");
}

#[test]
fn real_mnist_and_fashion_mnist_load_with_paper_preprocessing() {
    let root = common::test_data();
    let m = data::load(DatasetName::Mnist, Some(&root), 0).unwrap();
    assert_eq!((m.train.len(), m.test.len(), m.shape.clone()), (60_000, 10_000, vec![1, 32, 32]));
    let mut hist = [0usize; 10];
    for &l in &m.train.labels {
        hist[l as usize] += 1;
    }
    assert_eq!(hist, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    // Zero padding: the 2-pixel border normalises to −mean/std exactly.
    let mut x = Vec::new();
    m.fill_batch(&m.train, &[0], None, &mut x);
    let border = -data::MNIST_MEAN / data::MNIST_STD;
    assert!(x[..64].iter().all(|&v| v == border) && x[1024 - 64..].iter().all(|&v| v == border));
    // Normalised train pixels (the 28×28 part) have mean ≈ 0 and std ≈ 1.
    let mut all = Vec::new();
    m.fill_batch(&m.train, &(0..2000).collect::<Vec<_>>(), None, &mut all);
    let inner: Vec<f64> = all
        .chunks(1024)
        .flat_map(|img| (2..30).flat_map(move |r| img[r * 32 + 2..r * 32 + 30].iter().map(|&v| v as f64)))
        .collect();
    let mean = inner.iter().sum::<f64>() / inner.len() as f64;
    assert!(mean.abs() < 0.05, "mean {mean}");
    let f = data::load(DatasetName::FashionMnist, Some(&root), 0).unwrap();
    assert_eq!((f.train.len(), f.test.len()), (60_000, 10_000));
    let sub = data::balanced_subset(&f, &f.train, 100, "train").unwrap();
    let mut h = [0usize; 10];
    for &l in &sub.labels {
        h[l as usize] += 1;
    }
    assert_eq!(h, [100; 10]);
}

#[test]
fn torchvision_layout_and_raw_files_work() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("MNIST/raw");
    std::fs::create_dir_all(&raw).unwrap();
    for f in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        // Uncompressed copies: the loader must read raw IDX too.
        let bytes = idx::read_maybe_gz(&common::test_data().join("mnist").join(format!("{f}.gz"))).unwrap();
        std::fs::write(raw.join(f), bytes).unwrap();
    }
    let m = data::load(DatasetName::Mnist, Some(tmp.path()), 0).unwrap();
    assert_eq!(m.train.len(), 60_000);
    let e = format!("{:#}", data::load(DatasetName::FashionMnist, Some(tmp.path()), 0).unwrap_err());
    assert!(e.contains("fashion-mnist/train-images-idx3-ubyte.gz") && e.contains("FashionMNIST/raw"), "{e}");
    assert!(e.contains("fetch it with `depthprobe data download fashion-mnist --root"), "{e}");
}

#[test]
fn cifar_sample_loads_and_augments() {
    let p = common::test_data().join("cifar-10-sample/test_batch_first500.bin");
    let (labels, px) = cifar::parse_batch(&p).unwrap();
    assert_eq!(labels.len(), 500);
    assert_eq!(&labels[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    assert_eq!(px.len(), 500 * 3072);
    let ds = data::Dataset {
        name: DatasetName::Cifar10,
        shape: vec![3, 32, 32],
        num_classes: 10,
        train: data::Split {
            storage: data::Storage::bytes(px, data::CIFAR_MEAN.to_vec(), data::CIFAR_STD.to_vec()),
            labels: labels.iter().map(|&l| l as i64).collect(),
        },
        test: data::Split { storage: data::Storage::floats(vec![]), labels: vec![] },
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    ds.fill_batch(&ds.train, &[0, 1], None, &mut a);
    let mut r = depthprobe::rng::Rng::new(1);
    ds.fill_batch(&ds.train, &[0, 1], Some(&mut r), &mut b);
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "augmentation changes the image");
    // Wrong record size is refused with the file named.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("data_batch_1.bin");
    std::fs::write(&bad, vec![0u8; 3073 * 2 + 5]).unwrap();
    let e = cifar::parse_batch(&bad).unwrap_err().to_string();
    assert!(e.contains("data_batch_1.bin") && e.contains("3073"), "{e}");
}

#[test]
fn broken_idx_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = std::fs::read(common::test_data().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let p = tmp.path().join("t.gz");
    std::fs::write(&p, &src[..src.len() / 2]).unwrap();
    let e = format!("{:#}", idx::read_maybe_gz(&p).unwrap_err());
    assert!(e.contains("t.gz") && e.contains("truncated"), "{e}");
    let raw = idx::read_maybe_gz(&common::test_data().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let e = idx::parse_images(&p, &raw).unwrap_err().to_string();
    assert!(e.contains("wrong IDX magic 0x00000801"), "{e}");
    let e = idx::parse_labels(&p, &raw[..raw.len() - 3]).unwrap_err().to_string();
    assert!(e.contains("10000 labels but the file holds 9997"), "{e}");
}

#[test]
fn every_shipped_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for sub in ["", "quick", "paper"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Config::from_file(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
            }
        }
    }
    assert!(n >= 8, "found only {n} configs");
    // Paper configs carry the paper's protocol.
    let c = Config::from_file(&root.join("paper/conv-cifar10.toml"), &[]).unwrap();
    assert_eq!((c.model.arch, c.model.width, c.train.epochs, c.data.augment), (Arch::Conv, 400, 500, true));
}

#[test]
fn divergence_stops_the_run_with_status_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = quick_cfg(3);
    cfg.train.lr = 1e6; // guaranteed to blow up
    cfg.train.warmup_epochs = 0;
    let e = train(
        &cfg,
        &RunOptions { out: tmp.path().into(), data_dir: None, force: true, quiet: true, tensorboard: None },
    )
    .err()
    .unwrap();
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "failed", "{e:#}");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("diverged") || reason.contains("non-finite"), "{reason}");
    // serde_json parsed it above, so it holds no bare NaN token; undefined values are null.
    let text = std::fs::read_to_string(tmp.path().join("summary.json")).unwrap();
    assert!(!text.contains(": NaN") && !text.contains(":NaN"), "summary.json must never hold a NaN value");
}

fn wait_for_checkpoint(dir: &Path, at_least: u64, timeout: std::time::Duration) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < timeout {
        if let Ok(text) = std::fs::read_to_string(dir.join("checkpoint.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if v["epoch"].as_u64().unwrap_or(0) >= at_least {
                    return true;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

#[test]
fn kill_9_and_resume_gives_the_same_metrics_as_an_uninterrupted_run() {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_depthprobe");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = quick_cfg(10);
    cfg.probe.every = 2;
    cfg.train.checkpoint_every = 1;
    let cfg_path = tmp.path().join("run.toml");
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let st = Command::new(bin)
        .args(["train", "--quiet", "--out"])
        .arg(&a)
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    // Kill at a random moment after the third checkpoint, in the middle of a later epoch: within
    // four times the time the third epoch took, while seven epochs are still to come (so the
    // kill lands before the end however fast this machine trains).
    let mut child = Command::new(bin)
        .args(["train", "--quiet", "--out"])
        .arg(&b)
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_checkpoint(&b, 2, std::time::Duration::from_secs(120)), "no checkpoint appeared");
    let t2 = std::time::Instant::now();
    assert!(wait_for_checkpoint(&b, 3, std::time::Duration::from_secs(120)), "no third checkpoint appeared");
    let epoch = t2.elapsed().as_millis() as u64;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let delay = depthprobe::rng::Rng::new(nanos).below(4 * epoch + 1);
    std::thread::sleep(std::time::Duration::from_millis(delay));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "running", "the kill must land before the run finished (delay {delay} ms)");
    let st = Command::new(bin).args(["train", "--quiet", "--resume"]).arg(&b).stdout(Stdio::null()).status().unwrap();
    assert!(st.success());
    let (ma, mb) = (std::fs::read(a.join("metrics.csv")).unwrap(), std::fs::read(b.join("metrics.csv")).unwrap());
    assert!(ma == mb, "metrics.csv after kill -9 (delay {delay} ms) and resume differs from the uninterrupted run");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "done");
    // A finished run is not resumed again.
    let o = Command::new(bin).args(["train", "--resume"]).arg(&b).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("already done"));
}

#[test]
fn checkpoint_holds_pytorch_named_tensors_and_momentum() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = quick_cfg(2);
    cfg.train.checkpoint_every = 1;
    run(&cfg, tmp.path());
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(c["epoch"], 2);
    let file = tmp.path().join(c["file"].as_str().unwrap());
    let names: Vec<String> = Tensor::read_safetensors(&file).unwrap().into_iter().map(|(n, _)| n).collect();
    for want in [
        "model.layers.0.linear.weight",
        "model.layers.0.bn.running_mean",
        "model.head.bias",
        "momentum.layers.3.linear.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // Only the latest state file is kept.
    assert_eq!(std::fs::read_dir(tmp.path().join("checkpoints")).unwrap().count(), 1);
}

/// A temporary MNIST folder: the real test split, with its label file replaced by `labels`.
fn mnist_with_labels(labels: &[u8]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"] {
        std::fs::copy(common::test_data().join("mnist").join(f), d.join(f)).unwrap();
    }
    let mut raw = vec![0, 0, 8, 1];
    raw.extend((labels.len() as u32).to_be_bytes());
    raw.extend(labels);
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), raw).unwrap();
    tmp
}

#[test]
fn image_and_label_count_mismatch_is_named() {
    let real = idx::read_maybe_gz(&common::test_data().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let tmp = mnist_with_labels(&real[8..8 + 9_999]);
    let e = format!("{:#}", data::load(DatasetName::Mnist, Some(tmp.path()), 0).unwrap_err());
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz has 10000 images")
            && e.contains("t10k-labels-idx1-ubyte has 9999 labels"),
        "{e}"
    );
}

#[test]
fn idx_label_beyond_the_class_count_is_named() {
    let real = idx::read_maybe_gz(&common::test_data().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let mut labels = real[8..].to_vec();
    labels[1234] = 10;
    let tmp = mnist_with_labels(&labels);
    let e = format!("{:#}", data::load(DatasetName::Mnist, Some(tmp.path()), 0).unwrap_err());
    assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("label 10 at index 1234"), "{e}");
}

#[test]
fn empty_class_after_subsetting_or_corruption_is_refused() {
    let ds = data::synthetic::generate(0);
    let e = data::balanced_subset(&ds, &ds.train, 10_000, "train").unwrap_err().to_string();
    assert!(e.contains("class 0 has only 400 samples") && e.contains("10000 per class"), "{e}");
    let mut split = ds.train.clone();
    split.labels.iter_mut().filter(|l| **l == 7).for_each(|l| *l = 3);
    let e = data::check_classes_present(&split, ds.num_classes, "train split of synthetic").unwrap_err().to_string();
    assert!(e.contains("train split of synthetic: class 7 has no samples"), "{e}");
}

/// `train.warmup = "published"` runs the warm-up epoch at rate 0, as the published code does (its
/// scheduler is never stepped): every parameter is the same after epoch 1 while SGD's momentum
/// buffers have taken its gradients, and epoch 2 starts from there at the base rate. The linear
/// warm-up moves the parameters in epoch 1.
#[test]
fn the_published_warmup_keeps_the_weights_through_epoch_one_but_not_the_momentum() {
    use depthprobe::config::Warmup;
    use depthprobe::engine::trainer::{Group, Trainer};
    let tmp = tempfile::tempdir().unwrap();
    let state = |warmup: Warmup, epochs: usize| {
        let mut cfg = quick_cfg(2);
        cfg.train.warmup = warmup;
        depthprobe::engine::init_runtime(cfg.train.seed, 1, cfg.train.numerics);
        let p = data::prepare(&cfg, None).unwrap();
        let g = Group { model: &cfg.model, train: &cfg.train, seeds: vec![cfg.train.seed], augment: false };
        let mut t = Trainer::new(&g, &[&p.data]).unwrap();
        let copy = |m: std::collections::HashMap<String, Tensor>| -> Vec<(String, Tensor)> {
            let mut v: Vec<(String, Tensor)> = m.into_iter().map(|(n, t)| (n, t.copy())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let before = copy(t.network_variables(0));
        for epoch in 1..=epochs {
            t.train_epoch(&[&p.data], epoch);
        }
        let file = tmp.path().join(format!("{warmup:?}-{epochs}.safetensors"));
        t.save(0, &file).unwrap();
        let saved: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&file).unwrap().into_iter().collect();
        (before, saved)
    };
    // BatchNorm's running statistics follow the batches at any rate; parameters do not.
    let is_parameter = |n: &str| !n.contains("running_") && !n.contains("num_batches");
    let moved = |before: &[(String, Tensor)], saved: &std::collections::HashMap<String, Tensor>| {
        before.iter().filter(|(n, _)| is_parameter(n)).filter(|(n, t)| !saved[&format!("model.{n}")].equal(t)).count()
    };
    let momentum_norm = |saved: &std::collections::HashMap<String, Tensor>| -> f64 {
        saved
            .iter()
            .filter(|(n, _)| n.starts_with("momentum."))
            .map(|(_, t)| t.abs().sum(Kind::Double).double_value(&[]))
            .sum()
    };

    let (before, after1) = state(Warmup::Published, 1);
    let params = before.iter().filter(|(n, _)| is_parameter(n)).count();
    assert!(params >= 10);
    assert_eq!(moved(&before, &after1), 0, "published warm-up: no parameter moves in epoch 1");
    assert!(momentum_norm(&after1) > 1.0, "the momentum buffers took epoch 1's gradients");
    let running = before.iter().find(|(n, _)| n.ends_with("running_mean")).unwrap();
    assert!(
        !after1[&format!("model.{}", running.0)].equal(&running.1),
        "BatchNorm statistics still follow the batches"
    );

    let (_, after2) = state(Warmup::Published, 2);
    assert_eq!(moved(&before, &after2), params, "epoch 2 runs at the base rate");

    let (before, linear1) = state(Warmup::Linear, 1);
    assert_eq!(moved(&before, &linear1), params, "the linear warm-up moves every parameter in epoch 1");
}
