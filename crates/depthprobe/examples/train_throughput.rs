//! Training throughput of depthprobe's real epoch loop (batch assembly, forward, backward, SGD),
//! for bench/train_bench.py. Random inputs and labels keep the loss near ln 10, so no denormal
//! gradients skew CPU timings.
//!
//!     train_throughput --model mlp|conv [--rounds 5] [--threads 2] [--device cpu|cuda] [--batches N]
//! prints one JSON line: {"model": …, "samples_per_s": [...], "batch": 128}

use depthprobe::config::{Arch, Config};
use depthprobe::data::{Dataset, Split, Storage};
use depthprobe::engine::trainer::Trainer;
use depthprobe::engine::{init_runtime, resolve_device};
use depthprobe::rng::Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: &str| {
        args.iter().position(|a| a == k).map(|i| args[i + 1].clone()).unwrap_or_else(|| d.to_string())
    };
    let model = arg("--model", "mlp");
    let rounds: usize = arg("--rounds", "5").parse().unwrap();
    let threads: usize = arg("--threads", "2").parse().unwrap();
    let device = resolve_device(&arg("--device", "cpu")).unwrap();
    let (shape, default_batches) = if model == "conv" { (vec![3, 32, 32], 6) } else { (vec![1, 32, 32], 40) };
    let batches: usize = arg("--batches", &default_batches.to_string()).parse().unwrap();
    let mut cfg = Config::default();
    cfg.model.arch = if model == "conv" { Arch::Conv } else { Arch::Mlp };
    (cfg.model.depth, cfg.model.width) = if model == "conv" { (8, 64) } else { (10, 512) };
    cfg.train.lr = 0.01;
    cfg.train.warmup_epochs = 0;
    cfg.train.milestones = vec![];
    let n = 128 * batches;
    let per: usize = shape.iter().product();
    let mut r = Rng::new(1);
    let split = |r: &mut Rng, n: usize| Split {
        storage: Storage::Floats((0..n * per).map(|_| r.normal() as f32).collect()),
        labels: (0..n).map(|_| r.below(10) as i64).collect(),
    };
    let train = split(&mut r, n);
    let test = split(&mut r, 128);
    let ds = Dataset { name: "random".into(), shape, num_classes: 10, train, test };
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
