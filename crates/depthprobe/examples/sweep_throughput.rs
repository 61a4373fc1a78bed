//! Sweep throughput: K MLP-L-H+BN (or CONV-L-H) networks (seeds 0..K) trained as one model
//! (engine/trainer.rs) on MNIST-shaped random data, batch 128 each, for bench/sweep_bench.py.
//!
//!     sweep_throughput --k 32 [--arch mlp|conv] [--depth 10] [--width 100] [--batches 50]
//!                      [--rounds 3] [--threads 2] [--device cpu|cuda]
//! prints one JSON line: {"k": …, "network_steps_per_s": [...]}

mod common;

use depthprobe::config::{Arch, Numerics};
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: &str| common::arg(&args, k, d);
    let num = |k: &str, d: &str| -> usize { arg(k, d).parse().unwrap() };
    let (k, batches, rounds) = (num("--k", "8"), num("--batches", "50"), num("--rounds", "3"));
    let arch = if arg("--arch", "mlp") == "conv" { Arch::Conv } else { Arch::Mlp };
    let cfg = common::bench_config(arch, num("--depth", "10"), num("--width", "100"), &arg("--device", "cpu"));
    let ds = common::random_dataset(vec![1, 32, 32], 128 * batches);
    init_runtime(0, num("--threads", "2"), Numerics::Native);
    let g = Group { model: &cfg.model, train: &cfg.train, seeds: (0..k as u64).collect(), augment: false };
    let data = vec![&ds; k];
    let mut t = Trainer::new(&g, &data).unwrap();
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
