//! Sweep throughput: K MLP-L-H+BN networks (seeds 0..K) trained as one batched model
//! (engine/batched.rs) on MNIST-shaped random data, batch 128 each, for bench/sweep_bench.py.
//!
//!     sweep_throughput --k 32 [--depth 10] [--width 100] [--batches 50] [--rounds 3]
//!                      [--threads 2] [--device cpu|cuda]
//! prints one JSON line: {"k": …, "network_steps_per_s": [...]}

use depthprobe::config::{Arch, Config};
use depthprobe::data::{Dataset, Split, Storage};
use depthprobe::engine::batched::BatchedTrainer;
use depthprobe::engine::{init_runtime, resolve_device};
use depthprobe::rng::Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: &str| {
        args.iter().position(|a| a == k).map(|i| args[i + 1].clone()).unwrap_or_else(|| d.to_string())
    };
    let num = |k: &str, d: &str| -> usize { arg(k, d).parse().unwrap() };
    let (k, batches, rounds) = (num("--k", "8"), num("--batches", "50"), num("--rounds", "3"));
    let device = resolve_device(&arg("--device", "cpu")).unwrap();
    let mut cfg = Config::default();
    cfg.model.arch = Arch::Mlp;
    (cfg.model.depth, cfg.model.width) = (num("--depth", "10"), num("--width", "100"));
    cfg.train.lr = 0.01;
    cfg.train.warmup_epochs = 0;
    cfg.train.milestones = vec![];
    let n = 128 * batches;
    let per = 32 * 32;
    let mut r = Rng::new(1);
    let split = |r: &mut Rng, n: usize| Split {
        storage: Storage::Floats((0..n * per).map(|_| r.normal() as f32).collect()),
        labels: (0..n).map(|_| r.below(10) as i64).collect(),
    };
    let train = split(&mut r, n);
    let test = split(&mut r, 128);
    let ds = Dataset { name: "random".into(), shape: vec![1, 32, 32], num_classes: 10, train, test };
    init_runtime(0, num("--threads", "2"));
    let cfgs: Vec<Config> = (0..k)
        .map(|s| {
            let mut c = cfg.clone();
            c.train.seed = s as u64;
            c
        })
        .collect();
    let data = vec![&ds; k];
    let mut t = BatchedTrainer::new(&cfgs, &data, device).unwrap();
    t.train_epoch(&data, 1); // warm-up (and the device-resident copy of the inputs)
    let rates: Vec<f64> = (0..rounds)
        .map(|i| {
            let t0 = std::time::Instant::now();
            let s = t.train_epoch(&data, i + 2); // reads the losses back: the epoch has finished
            assert!(s.iter().all(|e| e.loss.is_finite()));
            (k * batches) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    println!("{}", serde_json::json!({"k": k, "network_steps_per_s": rates}));
}
