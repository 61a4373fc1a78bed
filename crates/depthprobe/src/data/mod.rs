//! Data sets as the paper uses them (docs/method.md, "Data"): MNIST and Fashion-MNIST
//! zero-padded 28→32 and normalised with the MNIST statistics; CIFAR-10 normalised with the
//! CIFAR-100 statistics and optionally augmented; plus a procedural set for `demo` that needs
//! no files.
//!
//! | stage | file |
//! |---|---|
//! | a data set in memory and its batches | `mod.rs` |
//! | reading the files (parsers in `depthprobe-formats`) | `load.rs` |
//! | CIFAR augmentation | `augment.rs` |
//! | the built-in data set | `synthetic.rs` |
//! | label corruption | `corruption.rs` |
//! | preparing a run's data: subset, bound halves, corruption | `prepare.rs` |

mod augment;
pub mod corruption;
mod load;
mod prepare;
pub mod synthetic;

use std::sync::Arc;

use anyhow::{bail, Result};
use depthprobe_config::DatasetName;

pub use augment::Transform;
pub use corruption::Relabel;
pub use load::{load, CIFAR_MEAN, CIFAR_STD, MNIST_MEAN, MNIST_STD};
pub use prepare::{data_root, derive, prepare, Prepared, Selected};

use crate::rng::Rng;

/// Pixels are kept as bytes and normalised batch by batch (4× less memory than f32). The
/// samples are shared, not copied, between clones: the runs of a batched group hold one copy
/// of their common subset (they differ in labels only).
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    Bytes { pixels: Arc<Vec<u8>>, mean: Vec<f32>, std: Vec<f32> },
    Floats(Arc<Vec<f32>>),
}

impl Storage {
    /// Images as bytes, with each channel's mean and standard deviation for normalising.
    pub fn bytes(pixels: Vec<u8>, mean: Vec<f32>, std: Vec<f32>) -> Storage {
        Storage::Bytes { pixels: Arc::new(pixels), mean, std }
    }

    /// Inputs used as they are.
    pub fn floats(values: Vec<f32>) -> Storage {
        Storage::Floats(Arc::new(values))
    }

    /// The same kind of storage with no samples.
    pub fn emptied(&self) -> Storage {
        match self {
            Storage::Bytes { mean, std, .. } => Storage::bytes(Vec::new(), mean.clone(), std.clone()),
            Storage::Floats(_) => Storage::floats(Vec::new()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Split {
    pub storage: Storage,
    pub labels: Vec<i64>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: DatasetName,
    /// Per-sample shape: [C, H, W] for images, [D] for vectors.
    pub shape: Vec<usize>,
    pub num_classes: usize,
    pub train: Split,
    pub test: Split,
}

impl Dataset {
    /// The test split if `test`, else the train split.
    pub fn split(&self, test: bool) -> &Split {
        if test {
            &self.test
        } else {
            &self.train
        }
    }

    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Normalised inputs of the given rows into `out` ([rows, sample_len]), augmented when
    /// `augment` holds a generator (CIFAR: crop with padding 4, horizontal flip, rotation ≤15°).
    pub fn fill_batch(&self, split: &Split, idx: &[usize], augment: Option<&mut Rng>, out: &mut Vec<f32>) {
        let n = self.sample_len();
        out.clear();
        out.reserve(idx.len() * n);
        match &split.storage {
            Storage::Floats(v) => {
                for &i in idx {
                    out.extend_from_slice(&v[i * n..(i + 1) * n]);
                }
            }
            Storage::Bytes { pixels, mean, std } => {
                let c = self.shape[0];
                let plane = n / c;
                let mut aug_buf = vec![0u8; n];
                let mut rng = augment;
                for &i in idx {
                    let src = &pixels[i * n..(i + 1) * n];
                    let img: &[u8] = match rng.as_deref_mut() {
                        Some(r) => {
                            augment::augment_image(src, &self.shape, r, &mut aug_buf);
                            &aug_buf
                        }
                        None => src,
                    };
                    for ch in 0..c {
                        let (m, s) = (mean[ch], std[ch]);
                        out.extend(img[ch * plane..(ch + 1) * plane].iter().map(|&p| normalised(p, m, s)));
                    }
                }
            }
        }
    }
}

/// A pixel byte as the network sees it: scaled to [0, 1], then standardised with its channel's
/// mean and standard deviation. The device path tabulates this very function
/// (engine/device_data.rs), so both give the same bits.
pub fn normalised(p: u8, mean: f32, std: f32) -> f32 {
    (p as f32 / 255.0 - mean) / std
}

/// Balanced subset: the first `per_class` samples of each class, in their original order.
pub fn balanced_subset(ds: &Dataset, split: &Split, per_class: usize, which: &str) -> Result<Split> {
    let mut taken = vec![0usize; ds.num_classes];
    let mut keep = Vec::new();
    for (i, &l) in split.labels.iter().enumerate() {
        if taken[l as usize] < per_class {
            taken[l as usize] += 1;
            keep.push(i);
        }
    }
    if let Some(c) = taken.iter().position(|&t| t < per_class) {
        bail!(
            "{which} split of {}: class {c} has only {} samples, fewer than the {per_class} per class asked for",
            ds.name,
            taken[c]
        );
    }
    Ok(select(ds, split, &keep))
}

/// The samples `keep` (indices into `split`), in that order.
pub fn select(ds: &Dataset, split: &Split, keep: &[usize]) -> Split {
    let n = ds.sample_len();
    // Whole samples by memcpy.
    fn rows<T: Copy>(v: &[T], keep: &[usize], n: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(keep.len() * n);
        for &i in keep {
            out.extend_from_slice(&v[i * n..(i + 1) * n]);
        }
        out
    }
    let storage = match &split.storage {
        Storage::Floats(v) => Storage::floats(rows(v, keep, n)),
        Storage::Bytes { pixels, mean, std } => Storage::bytes(rows(pixels, keep, n), mean.clone(), std.clone()),
    };
    Split { storage, labels: keep.iter().map(|&i| split.labels[i]).collect() }
}

/// The comparative bound's balanced halves S1, S2 (docs/method.md, "The comparative bound"): within
/// each class, the first ⌊n_c/2⌋ samples go
/// to S1 and the next ⌊n_c/2⌋ to S2 (an odd one out is dropped), so |S1| = |S2| and both are
/// balanced when the split is. Returns (S1 indices, S2 indices) into `split`, each in order.
pub fn bound_halves(split: &Split, num_classes: usize) -> (Vec<usize>, Vec<usize>) {
    let mut count = vec![0usize; num_classes];
    for &l in &split.labels {
        count[l as usize] += 1;
    }
    let mut seen = vec![0usize; num_classes];
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    for (i, &l) in split.labels.iter().enumerate() {
        let c = l as usize;
        let half = count[c] / 2;
        if seen[c] < half {
            s1.push(i);
        } else if seen[c] < 2 * half {
            s2.push(i);
        }
        seen[c] += 1;
    }
    (s1, s2)
}

/// Every class must have at least one sample (class means are undefined otherwise).
pub fn check_classes_present(split: &Split, num_classes: usize, what: &str) -> Result<()> {
    let mut seen = vec![false; num_classes];
    for &l in &split.labels {
        seen[l as usize] = true;
    }
    if let Some(c) = seen.iter().position(|s| !s) {
        bail!("{what}: class {c} has no samples (after subsetting/corruption); NCC needs every class");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_halves_are_balanced_disjoint_and_ordered() {
        // Class 0 five times (one is left over), class 1 four times, interleaved.
        let labels = vec![0, 1, 0, 1, 0, 0, 1, 1, 0];
        let split = Split { storage: Storage::floats(vec![0.0; labels.len()]), labels };
        let (s1, s2) = bound_halves(&split, 2);
        assert_eq!(s1, vec![0, 1, 2, 3]);
        assert_eq!(s2, vec![4, 5, 6, 7]);
        let count = |ix: &[usize], c: i64| ix.iter().filter(|&&i| split.labels[i] == c).count();
        for c in 0..2 {
            assert_eq!(count(&s1, c), 2);
            assert_eq!(count(&s2, c), 2);
        }
    }
}
