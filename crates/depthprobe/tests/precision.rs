//! `train.precision` (docs/method.md, "Precision"): under bf16 the networks' matrix products and
//! convolutions run in bfloat16 while the weights stay fp32; on a CPU, fp32, tf32 and LibTorch's
//! default are one and the same arithmetic.

mod common;

use depthprobe::config::{Arch, Config, ModelConfig, Numerics, Precision};
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};
use tch::Kind;

fn config(arch: Arch, precision: Precision) -> Config {
    let mut c = Config { model: ModelConfig { arch, depth: 3, width: 32, ..Default::default() }, ..Default::default() };
    c.train.threads = 2;
    c.train.lr = 0.02;
    c.train.warmup_epochs = 0;
    c.train.milestones = vec![];
    c.train.batch_size = 20;
    c.train.precision = precision;
    c
}

/// Largest |x − y| over the largest |y|.
fn rel_diff(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len());
    let scale = y.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-12);
    x.iter().zip(y).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max) / scale
}

/// Whether a value is a bfloat16 number (its low 16 bits are zero).
fn is_bf16(v: f32) -> bool {
    v.to_bits() & 0xffff == 0
}

#[test]
fn bf16_computes_in_bfloat16_keeps_fp32_weights_and_still_trains() {
    init_runtime(0, 2, Numerics::Native);
    let ds = common::cifar_sample(4, 2);
    let rows: Vec<usize> = (0..20).collect();
    for arch in [Arch::Conv, Arch::Mlp] {
        let trainer = |p: Precision| {
            let c = config(arch, p);
            let g = Group { model: &c.model, train: &c.train, seeds: vec![7], augment: false };
            Trainer::new(&g, &[&ds]).unwrap()
        };
        let mut by: Vec<(Precision, Trainer)> =
            [Precision::Default, Precision::Fp32, Precision::Tf32, Precision::Bf16].map(|p| (p, trainer(p))).into();
        let outs: Vec<_> = by.iter_mut().map(|(_, t)| t.eval_outputs(&[&ds], false, &rows).pop().unwrap()).collect();
        let (reference, bf16) = (&outs[0], &outs[3]);
        // On a CPU the TF32 switches change nothing: the same bits.
        for o in &outs[1..3] {
            assert!(o.0 == reference.0 && o.1 == reference.1, "{arch:?}: fp32/tf32 differ from default on a CPU");
        }
        // bf16: every layer differs (the autocast is in effect) but only by bfloat16's rounding,
        // and a layer's output that comes straight from a bf16 product is a bfloat16 number.
        assert!(!reference.1.is_empty());
        for (i, (x, y)) in bf16.1.iter().zip(&reference.1).enumerate() {
            let d = rel_diff(x, y);
            assert!(d > 0.0 && d < 0.05, "{arch:?} layer {}: bf16 vs fp32 differ by {d:.2e}", i + 1);
        }
        let d = rel_diff(&bf16.0, &reference.0);
        assert!(d > 0.0 && d < 0.05, "{arch:?} logits: bf16 vs fp32 differ by {d:.2e}");
        assert!(bf16.0.iter().all(|&v| is_bf16(v)), "{arch:?}: bf16 logits must be bfloat16 numbers");
        assert!(!reference.0.iter().all(|&v| is_bf16(v)), "{arch:?}: fp32 logits are not all bfloat16 numbers");

        // Training in bf16: finite, falling losses, fp32 master weights that move away from the
        // fp32 run's.
        let mut losses = Vec::new();
        for e in 1..=5 {
            losses.push([0, 3].map(|j| by[j].1.train_epoch(&[&ds], e)[0].loss));
        }
        assert!(losses.iter().flatten().all(|l| l.is_finite()), "{arch:?}: {losses:?}");
        for j in 0..2 {
            assert!(losses[4][j] < 0.8 * losses[0][j], "{arch:?}: the loss must fall in both: {losses:?}");
        }
        let (w32, w16) = (by[0].1.network_variables(0), by[3].1.network_variables(0));
        let mut moved = 0.0f64;
        for (name, v) in &w16 {
            if v.kind() != Kind::Int64 {
                assert_eq!(v.kind(), Kind::Float, "{arch:?} {name}: master weights stay fp32");
                moved = moved.max((v - &w32[name]).abs().max().double_value(&[]));
            }
        }
        assert!(moved > 0.0, "{arch:?}: bf16 training must differ from fp32 training");
    }
}

/// bf16 ConvNets run channels-last: their convolution weights have NHWC strides, and neither a
/// batched group nor a checkpoint notices (a saved network loads into a fresh trainer and gives
/// the same outputs bit for bit; the file holds the logical NCHW order, as PyTorch expects).
#[test]
fn bf16_convnets_run_channels_last_and_checkpoint_as_usual() {
    init_runtime(0, 2, Numerics::Native);
    let ds = common::cifar_sample(4, 2);
    let rows: Vec<usize> = (0..20).collect();
    let c = config(Arch::Conv, Precision::Bf16);
    let make = |seeds: Vec<u64>| {
        let data: Vec<&depthprobe::data::Dataset> = seeds.iter().map(|_| &ds).collect();
        Trainer::new(&Group { model: &c.model, train: &c.train, seeds, augment: true }, &data).unwrap()
    };
    let mut pair = make(vec![1, 2]);
    let weight = &pair.network_variables(0)["layers.0.conv.weight"];
    let (size, stride) = (weight.size(), weight.stride());
    assert_eq!(stride[1], 1, "channels-last: the channel is the fastest dimension ({size:?}, {stride:?})");
    let losses: Vec<Vec<f64>> =
        (1..=4).map(|e| pair.train_epoch(&[&ds, &ds], e).iter().map(|s| s.loss).collect()).collect();
    assert!(losses.iter().flatten().all(|l| l.is_finite()) && losses[3][0] < losses[0][0], "{losses:?}");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("net1.safetensors");
    pair.save(1, &path).unwrap();
    let saved = tch::Tensor::read_safetensors(&path).unwrap();
    let w = &saved.iter().find(|(n, _)| n == "model.layers.0.conv.weight").unwrap().1;
    assert!(w.is_contiguous(), "the file holds NCHW order");
    let want = pair.eval_outputs(&[&ds, &ds], false, &rows).remove(1);
    let mut lone = make(vec![9]);
    lone.load(0, &path).unwrap();
    let got = lone.eval_outputs(&[&ds], false, &rows).remove(0);
    assert!(got.0 == want.0 && got.1 == want.1, "a reloaded bf16 network must compute what it computed");
}
