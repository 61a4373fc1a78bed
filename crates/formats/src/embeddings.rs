//! Embeddings dumped by any framework: a folder with `labels.npy` and `layer_1.npy` …
//! `layer_L.npy` (optionally `logits.npy`, `classifier_weight.npy`), or one `.safetensors` file
//! holding tensors of the same names. Only headers are parsed up front; rows are read a chunk at
//! a time with positioned reads into reused buffers, so memory (RSS included: no file pages are
//! mapped) stays bounded whatever N is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::matrix::Matrix;
use crate::npy::open_npy;
use crate::safetensors::open_safetensors;

/// One split's embeddings: labels, every layer, optional logits and classifier weight.
pub struct SplitEmbeddings {
    pub source: PathBuf,
    pub labels: Matrix,
    pub layers: Vec<Matrix>,
    pub logits: Option<Matrix>,
    pub classifier_weight: Option<Matrix>,
}

impl SplitEmbeddings {
    pub fn rows(&self) -> usize {
        self.labels.rows
    }
    pub fn dims(&self) -> Vec<usize> {
        self.layers.iter().map(|m| m.cols).collect()
    }

    /// Open a folder of `.npy` files, or a folder holding one `.safetensors` file, or that file.
    pub fn open(path: &Path) -> Result<Self> {
        let tensors = if path.is_file() {
            open_safetensors(path)?
        } else if path.is_dir() {
            let entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot list folder", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            let st: Vec<&PathBuf> =
                entries.iter().filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect();
            let has_npy = entries.iter().any(|p| p.extension().is_some_and(|e| e == "npy"));
            match (st.len(), has_npy) {
                (0, true) => {
                    let mut t = BTreeMap::new();
                    for p in &entries {
                        if p.extension().is_some_and(|e| e == "npy") {
                            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
                            t.insert(stem, open_npy(p)?);
                        }
                    }
                    t
                }
                (1, false) => open_safetensors(st[0])?,
                (0, false) => {
                    bail!("{}: no labels.npy / layer_*.npy files and no .safetensors file here", path.display())
                }
                _ => bail!(
                    "{}: holds both .npy and .safetensors files, or several .safetensors; keep one format",
                    path.display()
                ),
            }
        } else {
            bail!("{}: no such file or folder", path.display());
        };
        Self::from_tensors(path, tensors)
    }

    fn from_tensors(path: &Path, mut t: BTreeMap<String, Matrix>) -> Result<Self> {
        let labels = t
            .remove("labels")
            .with_context(|| format!("{}: no 'labels' (labels.npy or a 'labels' tensor)", path.display()))?;
        labels.expect_labels()?;
        let mut layers = Vec::new();
        for i in 1.. {
            match t.remove(&format!("layer_{i}")) {
                Some(m) => layers.push(m),
                None => break,
            }
        }
        if layers.is_empty() {
            bail!("{}: no 'layer_1' (layer_1.npy or a 'layer_1' tensor); layers are numbered from 1", path.display());
        }
        if let Some(extra) = t.keys().find(|k| k.starts_with("layer_")) {
            bail!(
                "{}: found '{extra}' but layers must be numbered 1..L without gaps (layer_{} is missing)",
                path.display(),
                layers.len() + 1
            );
        }
        for m in &layers {
            m.expect_float()?;
            if m.rows != labels.rows {
                bail!("{}: has {} rows but {} has {}", m.origin, m.rows, labels.origin, labels.rows);
            }
        }
        let logits = t.remove("logits");
        if let Some(m) = &logits {
            m.expect_float()?;
            if m.rows != labels.rows {
                bail!("{}: has {} rows but {} has {}", m.origin, m.rows, labels.origin, labels.rows);
            }
        }
        let classifier_weight = t.remove("classifier_weight");
        if let Some(m) = &classifier_weight {
            m.expect_float()?;
        }
        Ok(SplitEmbeddings { source: path.to_path_buf(), labels, layers, logits, classifier_weight })
    }
}
