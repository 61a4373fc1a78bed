//! Reading the data sets from files: MNIST / Fashion-MNIST IDX (ours or torchvision's layout,
//! gzipped or raw) and CIFAR-10's binary batches. The parsers are in `depthprobe-formats`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use depthprobe_config::DatasetName;
use depthprobe_formats::{cifar, idx};

use super::{synthetic, Dataset, Split, Storage};

/// The paper's statistics: MNIST's for both MNIST and Fashion-MNIST, CIFAR-100's for CIFAR-10.
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;
pub const CIFAR_MEAN: [f32; 3] = [0.50708, 0.48655, 0.44092];
pub const CIFAR_STD: [f32; 3] = [0.26733, 0.25644, 0.27615];

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
        storage: Storage::bytes(pad_to_32(n, r, c, &px), vec![MNIST_MEAN], vec![MNIST_STD]),
        labels: labels.into_iter().map(|l| l as i64).collect(),
    })
}

/// Load a data set from `root` (one subfolder per data set, or torchvision's layout); the
/// synthetic set is generated from `seed`.
pub fn load(name: DatasetName, root: Option<&Path>, seed: u64) -> Result<Dataset> {
    if name == DatasetName::Synthetic {
        return Ok(synthetic::generate(seed));
    }
    let Some(root) = root else {
        bail!("data set '{name}' needs a data folder: pass --data-dir DIR, set DEPTHPROBE_DATA, or set data.root in the config (HOME is not set, so there is no default)")
    };
    if !root.is_dir() {
        bail!("data folder {} does not exist; {}", root.display(), fetch_hint(name, root));
    }
    load_from(name, root)
        .map_err(|e| e.context(format!("data set '{name}' in {}; {}", root.display(), fetch_hint(name, root))))
}

/// The command that puts `name` where it was looked for.
fn fetch_hint(name: DatasetName, root: &Path) -> String {
    let at = if depthprobe_download::default_root().as_deref() == Some(root) {
        String::new()
    } else {
        format!(" --root {}", root.display())
    };
    format!("fetch it with `depthprobe data download {name}{at}`")
}

fn load_from(name: DatasetName, root: &Path) -> Result<Dataset> {
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => {
            let tv = if name == DatasetName::Mnist { "MNIST" } else { "FashionMNIST" };
            let dirs = vec![root.join(name.as_str()), root.join(tv).join("raw"), root.to_path_buf()];
            Ok(Dataset {
                name,
                shape: vec![1, 32, 32],
                num_classes: name.num_classes(),
                train: load_idx_split(&dirs, "train")?,
                test: load_idx_split(&dirs, "t10k")?,
            })
        }
        DatasetName::Cifar10 => {
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
                storage: Storage::bytes(px, CIFAR_MEAN.to_vec(), CIFAR_STD.to_vec()),
                labels: l.into_iter().map(|v| v as i64).collect(),
            };
            Ok(Dataset {
                name,
                shape: vec![3, 32, 32],
                num_classes: name.num_classes(),
                train: split(train),
                test: split(test),
            })
        }
        DatasetName::Synthetic => unreachable!("generated above"),
    }
}
