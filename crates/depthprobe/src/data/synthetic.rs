//! The built-in data set for `demo`: every class is a mixture of several Gaussian blobs at random
//! places, centred on the origin, so the class means nearly coincide and NCC on the raw inputs is poor, while an MLP
//! learns the blobs and separates the classes in its hidden layers.

use depthprobe_config::DatasetName;

use super::{Dataset, Split, Storage};
use crate::rng::Rng;

pub const DIM: usize = 32;
pub const CLASSES: usize = 10;
pub const MODES_PER_CLASS: usize = 4;
pub const TRAIN_PER_CLASS: usize = 400;
pub const TEST_PER_CLASS: usize = 100;
/// Blob spread relative to the spread of blob centres.
pub const NOISE: f64 = 0.3;

pub fn generate(seed: u64) -> Dataset {
    let mut r = Rng::new(seed ^ 0xDA7A);
    let mut centres: Vec<f64> = (0..CLASSES * MODES_PER_CLASS * DIM).map(|_| r.normal()).collect();
    // Centre each class's blobs on the origin: every class mean is then ≈ 0 and only the blob
    // structure, which a network must learn, tells the classes apart.
    for c in 0..CLASSES {
        let blobs = c * MODES_PER_CLASS..(c + 1) * MODES_PER_CLASS;
        for j in 0..DIM {
            let m = blobs.clone().map(|k| centres[k * DIM + j]).sum::<f64>() / MODES_PER_CLASS as f64;
            blobs.clone().for_each(|k| centres[k * DIM + j] -= m);
        }
    }
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
        Split { storage: Storage::floats(x), labels: y }
    };
    let train = make(TRAIN_PER_CLASS);
    let test = make(TEST_PER_CLASS);
    Dataset { name: DatasetName::Synthetic, shape: vec![DIM], num_classes: CLASSES, train, test }
}
