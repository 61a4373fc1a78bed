//! Data sets as the paper uses them (spec §2.1): MNIST and Fashion-MNIST zero-padded 28→32 and
//! normalised with the MNIST statistics; CIFAR-10 normalised with the CIFAR-100 statistics and
//! optionally augmented; plus a procedural set for `demo` that needs no files.

pub mod cifar;
pub mod corruption;
pub mod idx;
pub mod synthetic;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::rng::Rng;

/// Pixels are kept as bytes and normalised batch by batch (4× less memory than f32).
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    Bytes { pixels: Vec<u8>, mean: Vec<f32>, std: Vec<f32> },
    Floats(Vec<f32>),
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
    pub name: String,
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
                            augment_image(src, &self.shape, r, &mut aug_buf);
                            &aug_buf
                        }
                        None => src,
                    };
                    for ch in 0..c {
                        let (m, s) = (mean[ch], std[ch]);
                        out.extend(img[ch * plane..(ch + 1) * plane].iter().map(|&p| (p as f32 / 255.0 - m) / s));
                    }
                }
            }
        }
    }
}

/// torchvision's RandomCrop(32, padding=4) → RandomHorizontalFlip → RandomRotation(15), on bytes,
/// zero fill, nearest-neighbour rotation (torchvision's default interpolation).
fn augment_image(src: &[u8], shape: &[usize], r: &mut Rng, out: &mut [u8]) {
    let (c, h, w) = (shape[0], shape[1] as i64, shape[2] as i64);
    let dy = r.below(9) as i64 - 4;
    let dx = r.below(9) as i64 - 4;
    let flip = r.below(2) == 1;
    let angle = (r.uniform() * 30.0 - 15.0).to_radians();
    let (sin, cos) = angle.sin_cos();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    for y in 0..h {
        for x in 0..w {
            // Inverse-map the output pixel through rotation, flip and crop offset.
            let (fy, fx) = (y as f64 - cy, x as f64 - cx);
            let ry = (cos * fy - sin * fx + cy).round() as i64;
            let rx = (sin * fy + cos * fx + cx).round() as i64;
            let rx = if flip { w - 1 - rx } else { rx };
            let (sy, sx) = (ry + dy, rx + dx);
            for ch in 0..c {
                let o = ch * (h * w) as usize + (y * w + x) as usize;
                out[o] = if (0..h).contains(&ry) && (0..w).contains(&rx) && (0..h).contains(&sy) && (0..w).contains(&sx)
                {
                    src[ch * (h * w) as usize + (sy * w + sx) as usize]
                } else {
                    0
                };
            }
        }
    }
}

/// The paper's statistics (spec §2.1): MNIST's for both MNIST and Fashion-MNIST, CIFAR-100's
/// for CIFAR-10.
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;
pub const CIFAR_MEAN: [f32; 3] = [0.50708, 0.48655, 0.44092];
pub const CIFAR_STD: [f32; 3] = [0.26733, 0.25644, 0.27615];

pub const DATASETS: [&str; 4] = ["mnist", "fashion-mnist", "cifar10", "synthetic"];

/// First file among `names` in any of `dirs`; the error lists every place looked.
fn find_file(dirs: &[PathBuf], names: &[String]) -> Result<PathBuf> {
    let mut tried = Vec::new();
    for d in dirs {
        for n in names {
            let p = d.join(n);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        }
    }
    bail!("data file not found; looked for:\n  {}", tried.join("\n  "))
}

/// Zero-pad 28×28 images to 32×32 (2 pixels each side).
fn pad_to_32(n: usize, r: usize, c: usize, px: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; n * 32 * 32];
    let (oy, ox) = ((32 - r) / 2, (32 - c) / 2);
    for i in 0..n {
        for y in 0..r {
            let src = &px[i * r * c + y * c..i * r * c + (y + 1) * c];
            let o = i * 1024 + (y + oy) * 32 + ox;
            out[o..o + c].copy_from_slice(src);
        }
    }
    out
}

fn load_idx_split(dirs: &[PathBuf], prefix: &str) -> Result<Split> {
    let names = |kind: &str| vec![format!("{prefix}-{kind}.gz"), format!("{prefix}-{kind}")];
    let ip = find_file(dirs, &names("images-idx3-ubyte"))?;
    let lp = find_file(dirs, &names("labels-idx1-ubyte"))?;
    let (n, r, c, px) = idx::parse_images(&ip, &idx::read_maybe_gz(&ip)?)?;
    let labels = idx::parse_labels(&lp, &idx::read_maybe_gz(&lp)?)?;
    if labels.len() != n {
        bail!("{} has {n} images but {} has {} labels", ip.display(), lp.display(), labels.len());
    }
    if r > 32 || c > 32 {
        bail!("{}: images are {r}×{c}; expected at most 32×32", ip.display());
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        bail!("{}: label {l} at index {i} is ≥ the class count 10", lp.display());
    }
    Ok(Split {
        storage: Storage::Bytes { pixels: pad_to_32(n, r, c, &px), mean: vec![MNIST_MEAN], std: vec![MNIST_STD] },
        labels: labels.into_iter().map(|l| l as i64).collect(),
    })
}

/// Load a data set by name from `root` (one subfolder per data set, or torchvision's layout).
pub fn load(name: &str, root: Option<&Path>, seed: u64) -> Result<Dataset> {
    if name == "synthetic" {
        return Ok(synthetic::generate(seed));
    }
    let Some(root) = root else {
        bail!("data set '{name}' needs a data folder: pass --data-dir DIR, set DEPTHPROBE_DATA, or set data.root in the config")
    };
    if !root.is_dir() {
        bail!("data folder {} does not exist", root.display());
    }
    match name {
        "mnist" | "fashion-mnist" => {
            let tv = if name == "mnist" { "MNIST" } else { "FashionMNIST" };
            let dirs = vec![root.join(name), root.join(tv).join("raw"), root.to_path_buf()];
            Ok(Dataset {
                name: name.into(),
                shape: vec![1, 32, 32],
                num_classes: 10,
                train: load_idx_split(&dirs, "train")?,
                test: load_idx_split(&dirs, "t10k")?,
            })
        }
        "cifar10" => {
            let dir = root.join("cifar-10-batches-bin");
            let mut train = (Vec::new(), Vec::new());
            for b in 1..=5 {
                let p = find_file(std::slice::from_ref(&dir), &[format!("data_batch_{b}.bin")])?;
                let (l, px) = cifar::parse_batch(&p)?;
                train.0.extend(l);
                train.1.extend(px);
            }
            let tp = find_file(std::slice::from_ref(&dir), &["test_batch.bin".to_string()])?;
            let test = cifar::parse_batch(&tp)?;
            let split = |(l, px): (Vec<u8>, Vec<u8>)| Split {
                storage: Storage::Bytes { pixels: px, mean: CIFAR_MEAN.to_vec(), std: CIFAR_STD.to_vec() },
                labels: l.into_iter().map(|v| v as i64).collect(),
            };
            Ok(Dataset {
                name: name.into(),
                shape: vec![3, 32, 32],
                num_classes: 10,
                train: split(train),
                test: split(test),
            })
        }
        other => bail!("unknown data set '{other}'; known: {}", DATASETS.join(", ")),
    }
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
    // Whole samples by memcpy: a batched sweep group selects its subset once per run.
    fn rows<T: Copy>(v: &[T], keep: &[usize], n: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(keep.len() * n);
        for &i in keep {
            out.extend_from_slice(&v[i * n..(i + 1) * n]);
        }
        out
    }
    let storage = match &split.storage {
        Storage::Floats(v) => Storage::Floats(rows(v, keep, n)),
        Storage::Bytes { pixels, mean, std } => {
            Storage::Bytes { pixels: rows(pixels, keep, n), mean: mean.clone(), std: std.clone() }
        }
    };
    Split { storage, labels: keep.iter().map(|&i| split.labels[i]).collect() }
}

/// The bound's balanced halves (spec §1.10): within each class, the first ⌊n_c/2⌋ samples go
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
        let split = Split { storage: Storage::Floats(vec![0.0; labels.len()]), labels };
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
