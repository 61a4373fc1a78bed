//! Training throughput of depthprobe's real epoch loop (batch assembly, forward, backward, SGD),
//! for bench/train_bench.py. Random inputs and labels keep the loss near ln 10, so no denormal
//! gradients skew CPU timings.
//!
//!     train_throughput --model mlp|conv [--depth L] [--width H] [--rounds 5] [--threads 2]
//!                      [--device cpu|cuda] [--batches N] [--precision default|fp32|tf32|bf16]
//!                      [--graph off|auto|on]
//! (defaults: MLP-10-512 on 1×32×32 input, CONV-8-64 on 3×32×32; both with BatchNorm)
//! prints one JSON line: {"model": …, "samples_per_s": [...], "cpu_samples_per_s": [...], "batch": 128}
//! where cpu_samples_per_s counts the process's CPU time (all threads, user + system) instead of
//! wall time: on a shared machine it does not count time other tenants took from us.

mod common;

use depthprobe::config::{Arch, Numerics};
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: &str| common::arg(&args, k, d);
    let model = arg("--model", "mlp");
    let rounds: usize = arg("--rounds", "5").parse().unwrap();
    let threads: usize = arg("--threads", "2").parse().unwrap();
    let device = arg("--device", "cpu");
    let (shape, default_batches) = if model == "conv" { (vec![3, 32, 32], 6) } else { (vec![1, 32, 32], 40) };
    let batches: usize = arg("--batches", &default_batches.to_string()).parse().unwrap();
    let (arch, depth, width) = if model == "conv" { (Arch::Conv, "8", "64") } else { (Arch::Mlp, "10", "512") };
    let depth: usize = arg("--depth", depth).parse().unwrap();
    let width: usize = arg("--width", width).parse().unwrap();
    let mut cfg = common::bench_config(arch, depth, width, &device);
    cfg.train.precision = common::config_value("--precision", &arg("--precision", "default"));
    let graph = arg("--graph", "off");
    cfg.train.graph = common::config_value("--graph", &graph);
    let n = 128 * batches;
    let ds = common::random_dataset(shape, n);
    init_runtime(0, threads, Numerics::Native);
    let g = Group { model: &cfg.model, train: &cfg.train, seeds: vec![0], augment: false };
    let mut trainer = Trainer::new(&g, &[&ds]).unwrap();
    trainer.train_epoch(&[&ds], 1); // warm-up
    let (rates, cpu_rates): (Vec<f64>, Vec<f64>) = (0..rounds)
        .map(|i| {
            let (t0, c0) = (std::time::Instant::now(), cpu_seconds());
            trainer.train_epoch(&[&ds], i + 2);
            (n as f64 / t0.elapsed().as_secs_f64(), n as f64 / (cpu_seconds() - c0))
        })
        .unzip();
    println!(
        "{}",
        serde_json::json!({"model": model, "depth": depth, "width": width,
            "precision": cfg.train.precision.as_str(), "graph": graph, "captured": trainer.graph_captured(),
            "samples_per_s": rates,
            "cpu_samples_per_s": cpu_rates, "batch": 128})
    );
}

/// User + system CPU time of the whole process so far (as Python's time.process_time()).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
