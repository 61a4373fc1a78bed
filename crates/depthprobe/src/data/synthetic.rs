//! The built-in data set for `demo`: every class is a mixture of several Gaussian blobs at random
//! places, so the class means sit close together and NCC on the raw inputs is poor, while an MLP
//! learns the blobs and separates the classes in its hidden layers.

use super::{Dataset, Split, Storage};
use crate::rng::Rng;

pub const DIM: usize = 32;
pub const CLASSES: usize = 10;
pub const MODES_PER_CLASS: usize = 6;
pub const TRAIN_PER_CLASS: usize = 400;
pub const TEST_PER_CLASS: usize = 100;
/// Blob spread relative to the spread of blob centres.
pub const NOISE: f64 = 0.25;

pub fn generate(seed: u64) -> Dataset {
    let mut r = Rng::new(seed ^ 0xDA7A);
    let centres: Vec<f64> = (0..CLASSES * MODES_PER_CLASS * DIM)
        .map(|_| r.normal())
        .collect();
    let mut make = |per_class: usize| {
        let mut x = Vec::with_capacity(CLASSES * per_class * DIM);
        let mut y = Vec::with_capacity(CLASSES * per_class);
        // Interleave classes so the order carries no class blocks.
        for i in 0..per_class {
            for c in 0..CLASSES {
                let mode = (i + r.below(MODES_PER_CLASS as u64) as usize) % MODES_PER_CLASS;
                let base = (c * MODES_PER_CLASS + mode) * DIM;
                x.extend((0..DIM).map(|j| (centres[base + j] + NOISE * r.normal()) as f32));
                y.push(c as i64);
            }
        }
        Split {
            storage: Storage::Floats(x),
            labels: y,
        }
    };
    let train = make(TRAIN_PER_CLASS);
    let test = make(TEST_PER_CLASS);
    Dataset {
        name: "synthetic".into(),
        shape: vec![DIM],
        num_classes: CLASSES,
        train,
        test,
    }
}
