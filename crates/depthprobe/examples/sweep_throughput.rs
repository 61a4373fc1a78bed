//! Sweep throughput: K MLP-L-H+BN networks (seeds 0..K) trained as one batched model
//! (engine/batched.rs) on MNIST-shaped random data, batch 128 each, for bench/sweep_bench.py.
//!
//!     sweep_throughput --k 32 [--depth 10] [--width 100] [--batches 50] [--rounds 3]
//!                      [--threads 2] [--device cpu|cuda]
//! prints one JSON line: {"k": …, "network_steps_per_s": [...]}

mod common;

use depthprobe::config::{Arch, Config};
use depthprobe::engine::batched::BatchedTrainer;
use depthprobe::engine::{init_runtime, resolve_device};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: &str| common::arg(&args, k, d);
    let num = |k: &str, d: &str| -> usize { arg(k, d).parse().unwrap() };
    let (k, batches, rounds) = (num("--k", "8"), num("--batches", "50"), num("--rounds", "3"));
    let device = resolve_device(&arg("--device", "cpu")).unwrap();
    let cfg = common::bench_config(Arch::Mlp, num("--depth", "10"), num("--width", "100"));
    let ds = common::random_dataset(vec![1, 32, 32], 128 * batches);
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
