//! Correctness of the device-side pieces on a given device, for a machine without a Rust
//! toolchain (bench/gpu/paper_scale.sh runs it first on the GPU; `--device cpu` is its dry run):
//!
//! 1. augmented batches assembled on the device equal the host's bit for bit (K = 3, 3×32×32
//!    random bytes, the CIFAR normalisation), and the generators advance alike;
//! 2. a bf16 ConvNet (channels-last) and a bf16 MLP train on the device: finite, falling losses,
//!    bfloat16 logits, fp32 weights; and fp32 / bf16 logits at initialisation differ by
//!    bfloat16 rounding only.
//!
//!     device_checks [--device cuda]
//!
//! Prints one JSON line, {"device": …, "checks": [{"name", "ok", "detail"}], "all_ok": bool}, and
//! exits 1 if a check failed.

mod common;

use depthprobe::config::{Arch, Numerics, Precision};
use depthprobe::data::{self, Dataset, Split, Storage};
use depthprobe::engine::device_data::DeviceImages;
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};
use depthprobe::rng::Rng;
use tch::Kind;

fn byte_images(n: usize) -> Dataset {
    let mut r = Rng::new(11);
    let split = |r: &mut Rng, n: usize| Split {
        storage: Storage::bytes(
            (0..n * 3072).map(|_| r.below(256) as u8).collect(),
            data::CIFAR_MEAN.to_vec(),
            data::CIFAR_STD.to_vec(),
        ),
        labels: (0..n).map(|i| (i % 10) as i64).collect(),
    };
    let train = split(&mut r, n);
    let test = split(&mut r, 40);
    Dataset { name: depthprobe::config::DatasetName::Cifar10, shape: vec![3, 32, 32], num_classes: 10, train, test }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let device_name = common::arg(&args, "--device", "cuda");
    let device = depthprobe::engine::resolve_device(depthprobe::config::Device::parse(&device_name).unwrap()).unwrap();
    init_runtime(0, 0, Numerics::Native);
    let mut checks: Vec<serde_json::Value> = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(serde_json::json!({"name": name, "ok": ok, "detail": detail}));
    };

    // 1. Device-assembled augmented batches.
    let ds = byte_images(400);
    let images = DeviceImages::new(&ds, device).expect("bytes");
    let k = 3;
    let mut order = Rng::new(5);
    let rows: Vec<Vec<usize>> = (0..k).map(|_| (0..128).map(|_| order.below(400) as usize).collect()).collect();
    let rows: Vec<&[usize]> = rows.iter().map(|r| &r[..]).collect();
    let gens = || -> Vec<Option<Rng>> { (0..k).map(|j| Some(Rng::new(100 + j as u64))).collect() };
    let (mut on_host, mut on_device) = (gens(), gens());
    let n = ds.sample_len();
    let mut want = vec![0f32; 128 * k * n];
    let mut one = Vec::new();
    for (j, r) in rows.iter().enumerate() {
        ds.fill_batch(&ds.train, r, on_host[j].as_mut(), &mut one);
        for i in 0..128 {
            want[(i * k + j) * n..(i * k + j + 1) * n].copy_from_slice(&one[i * n..(i + 1) * n]);
        }
    }
    let got = Vec::<f32>::try_from(images.batch(&rows, &mut on_device).to_device(tch::Device::Cpu).view([-1])).unwrap();
    let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    let same_state =
        on_host.iter().zip(&on_device).all(|(a, b)| a.as_ref().map(Rng::state) == b.as_ref().map(Rng::state));
    check(
        "augmented batch: device == host, bit for bit",
        differ == 0 && same_state,
        format!("{differ} of {} values differ; generators alike: {same_state}", want.len()),
    );

    // 2. bf16 training on the device.
    for (arch, depth, width) in [(Arch::Conv, 3, 32), (Arch::Mlp, 4, 64)] {
        let run = |p: Precision| {
            let mut c = common::bench_config(arch, depth, width, &device_name);
            c.train.precision = p;
            c.train.batch_size = 40;
            let g = Group { model: &c.model, train: &c.train, seeds: vec![3], augment: false };
            let mut t = Trainer::new(&g, &[&ds]).unwrap();
            let first = t.eval_outputs(&[&ds], false, &(0..40).collect::<Vec<_>>()).remove(0).0;
            let losses: Vec<f64> = (1..=8).map(|e| t.train_epoch(&[&ds], e)[0].loss).collect();
            let fp32 = t.network_variables(0).values().all(|v| v.kind() != Kind::BFloat16);
            (first, losses, fp32)
        };
        let (l32, _, _) = run(Precision::Fp32);
        let (l16, losses, fp32_weights) = run(Precision::Bf16);
        let scale = l32.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let rel = l16.iter().zip(&l32).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale;
        let bf16_logits = l16.iter().all(|v| v.to_bits() & 0xffff == 0);
        let trains = losses.iter().all(|l| l.is_finite()) && losses[7] < losses[0];
        check(
            &format!("bf16 {arch:?}: trains, bfloat16 logits, fp32 weights, close to fp32"),
            trains && bf16_logits && fp32_weights && rel > 0.0 && rel < 0.05,
            format!(
                "losses {:.4} -> {:.4}; bf16 logits {bf16_logits}; fp32 weights {fp32_weights}; logits vs fp32 {rel:.2e}",
                losses[0], losses[7]
            ),
        );
    }
    let all_ok = checks.iter().all(|c| c["ok"] == true);
    println!("{}", serde_json::json!({"device": device_name, "checks": checks, "all_ok": all_ok}));
    std::process::exit(if all_ok { 0 } else { 1 });
}
