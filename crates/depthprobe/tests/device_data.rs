//! Augmented batches assembled on the device (engine/device_data.rs) are the host's batches bit
//! for bit, and leave every network's generator where the host path leaves it.

mod common;

use depthprobe::config::{Arch, Config, ModelConfig, Numerics};
use depthprobe::data::{Dataset, Transform};
use depthprobe::engine::device_data::DeviceImages;
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{Group, Trainer};
use depthprobe::rng::Rng;
use tch::{Device, Kind};

/// The host path: each network's rows filled (and augmented) on its own, then channel-stacked
/// with row b of network j at b·K + j, as the trainer stacks them.
fn host_batch(ds: &Dataset, rows: &[&[usize]], aug: &mut [Option<Rng>]) -> Vec<f32> {
    let (k, b, n) = (rows.len(), rows[0].len(), ds.sample_len());
    let mut out = vec![0f32; b * k * n];
    let mut one = Vec::new();
    for (j, r) in rows.iter().enumerate() {
        ds.fill_batch(&ds.train, r, aug[j].as_mut(), &mut one);
        for i in 0..b {
            out[(i * k + j) * n..(i * k + j + 1) * n].copy_from_slice(&one[i * n..(i + 1) * n]);
        }
    }
    out
}

#[test]
fn device_batches_are_the_host_batches_bit_for_bit() {
    init_runtime(0, 2, Numerics::Native);
    let ds = common::cifar_sample(30, 0);
    let images = DeviceImages::new(&ds, Device::Cpu).expect("CIFAR images are bytes");
    let n = ds.train.len();
    for (k, augment, seed) in [(1usize, true, 1u64), (3, true, 2), (2, false, 3), (4, true, 4)] {
        let mut order = Rng::new(seed);
        let rows: Vec<Vec<usize>> = (0..k).map(|_| (0..64).map(|_| order.below(n as u64) as usize).collect()).collect();
        let rows: Vec<&[usize]> = rows.iter().map(|r| &r[..]).collect();
        let gens =
            |s: u64| -> Vec<Option<Rng>> { (0..k).map(|j| augment.then(|| Rng::new(s * 10 + j as u64))).collect() };
        let (mut on_host, mut on_device) = (gens(seed), gens(seed));
        let want = host_batch(&ds, &rows, &mut on_host);
        let got = images.batch(&rows, &mut on_device);
        assert_eq!(got.size(), [64, 3 * k as i64, 32, 32]);
        assert_eq!(got.kind(), Kind::Float);
        let got = Vec::<f32>::try_from(got.view([-1])).unwrap();
        let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "K = {k}, augment {augment}: {differ} of {} values differ", want.len());
        let states = |g: &[Option<Rng>]| g.iter().map(|r| r.as_ref().map(Rng::state)).collect::<Vec<_>>();
        assert_eq!(states(&on_host), states(&on_device), "K = {k}: the generators must advance alike");
    }
}

/// The mapping itself at the edges: the identity leaves every pixel where it is, a flip mirrors,
/// a crop offset shifts and zero-fills, and a quarter turn turns.
#[test]
fn transforms_map_pixels_as_torchvision_does() {
    let (h, w) = (32, 32);
    for y in 0..h {
        for x in 0..w {
            assert_eq!(Transform::IDENTITY.source(y, x, h, w), Some((y, x)));
            let flip = Transform { flip: true, ..Transform::IDENTITY };
            assert_eq!(flip.source(y, x, h, w), Some((y, w - 1 - x)));
            let shift = Transform { dy: 4, dx: -3, ..Transform::IDENTITY };
            let want = (y + 4 < h && x >= 3).then_some((y + 4, x - 3));
            assert_eq!(shift.source(y, x, h, w), want, "({y}, {x})");
        }
    }
    // A quarter turn: the output pixel (y, x) reads (h − 1 − x, y).
    let quarter = Transform { sin: 1.0, cos: 0.0, ..Transform::IDENTITY };
    assert_eq!(quarter.source(0, 0, h, w), Some((31, 0)));
    assert_eq!(quarter.source(5, 9, h, w), Some((22, 5)));
    // Draws stay within the published ranges.
    let mut r = Rng::new(9);
    for _ in 0..2000 {
        let t = Transform::draw(&mut r);
        assert!((-4..=4).contains(&t.dy) && (-4..=4).contains(&t.dx));
        let deg = t.sin.atan2(t.cos).to_degrees();
        assert!((-15.0..=15.0).contains(&deg), "{deg}");
    }
}

/// A batched group with augmentation assembles its batches on the device; a lone CPU network
/// keeps assembling them on the host.
#[test]
fn batched_augmented_groups_assemble_on_the_device() {
    init_runtime(0, 2, Numerics::Native);
    let ds = common::cifar_sample(4, 1);
    let mut c = Config {
        model: ModelConfig { arch: Arch::Conv, depth: 2, width: 8, ..Default::default() },
        ..Default::default()
    };
    c.train.batch_size = 10;
    for (seeds, on_device) in [(vec![0u64, 1], true), (vec![0], false)] {
        let data: Vec<&Dataset> = seeds.iter().map(|_| &ds).collect();
        let g = Group { model: &c.model, train: &c.train, seeds, augment: true };
        let t = Trainer::new(&g, &data).unwrap();
        assert_eq!(t.augments_on_device(), on_device);
    }
}
