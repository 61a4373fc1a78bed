//! What the throughput examples share: a random data set and their command-line lookup.

use depthprobe::data::{Dataset, Split, Storage};
use depthprobe::rng::Rng;

/// Random N(0, 1) inputs of `shape` with random labels of 10 classes: `n` train and 128 test
/// samples. The loss stays near ln 10, so no denormal gradients skew CPU timings.
#[allow(dead_code)] // not every example uses every helper
pub fn random_dataset(shape: Vec<usize>, n: usize) -> Dataset {
    let per: usize = shape.iter().product();
    let mut r = Rng::new(1);
    let split = |r: &mut Rng, n: usize| Split {
        storage: Storage::floats((0..n * per).map(|_| r.normal() as f32).collect()),
        labels: (0..n).map(|_| r.below(10) as i64).collect(),
    };
    let train = split(&mut r, n);
    let test = split(&mut r, 128);
    // Generated data: the synthetic kind (no file behind it).
    Dataset { name: depthprobe::config::DatasetName::Synthetic, shape, num_classes: 10, train, test }
}

/// The value after flag `key` in the command line, or `default`.
pub fn arg(args: &[String], key: &str, default: &str) -> String {
    args.iter().position(|a| a == key).map(|i| args[i + 1].clone()).unwrap_or_else(|| default.to_string())
}

/// A config enum from a command-line value, by the config's own serde names (a bad value lists
/// the valid ones).
#[allow(dead_code)] // not every example uses every helper
pub fn config_value<T: serde::de::DeserializeOwned>(flag: &str, value: &str) -> T {
    serde_json::from_value(serde_json::json!(value)).unwrap_or_else(|e| panic!("{flag} {value}: {e}"))
}

/// The benchmark networks' training settings, as bench/torch_train_ref.py uses them: SGD at a
/// constant lr 0.01 (momentum 0.9, weight decay 5e-4 by default), batch 128.
pub fn bench_config(
    arch: depthprobe::config::Arch,
    depth: usize,
    width: usize,
    device: &str,
) -> depthprobe::config::Config {
    let mut cfg = depthprobe::config::Config::default();
    cfg.train.device = depthprobe::config::Device::parse(device).unwrap();
    cfg.model.arch = arch;
    (cfg.model.depth, cfg.model.width) = (depth, width);
    cfg.train.lr = 0.01;
    cfg.train.warmup_epochs = 0;
    cfg.train.milestones = vec![];
    cfg
}
