//! Training throughput of depthprobe's real epoch loop (batch assembly, forward, backward, SGD),
//! for bench/train_bench.py. Random inputs and labels keep the loss near ln 10, so no denormal
//! gradients skew CPU timings.
//!
//!     train_throughput --model mlp|conv [--rounds 5] [--threads 2] [--device cpu|cuda] [--batches N]
//! prints one JSON line: {"model": …, "samples_per_s": [...], "batch": 128}

mod common;

use depthprobe::config::Arch;
use depthprobe::engine::trainer::Trainer;
use depthprobe::engine::{init_runtime, resolve_device};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: &str| common::arg(&args, k, d);
    let model = arg("--model", "mlp");
    let rounds: usize = arg("--rounds", "5").parse().unwrap();
    let threads: usize = arg("--threads", "2").parse().unwrap();
    let device = resolve_device(&arg("--device", "cpu")).unwrap();
    let (shape, default_batches) = if model == "conv" { (vec![3, 32, 32], 6) } else { (vec![1, 32, 32], 40) };
    let batches: usize = arg("--batches", &default_batches.to_string()).parse().unwrap();
    let cfg = if model == "conv" {
        common::bench_config(Arch::Conv, 8, 64)
    } else {
        common::bench_config(Arch::Mlp, 10, 512)
    };
    let n = 128 * batches;
    let ds = common::random_dataset(shape, n);
    init_runtime(0, threads);
    let mut trainer = Trainer::new(&cfg, &ds, device).unwrap();
    trainer.train_epoch(&ds, 1); // warm-up
    let rates: Vec<f64> = (0..rounds)
        .map(|i| {
            let t0 = std::time::Instant::now();
            trainer.train_epoch(&ds, i + 2);
            n as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    println!("{}", serde_json::json!({"model": model, "samples_per_s": rates, "batch": 128}));
}
