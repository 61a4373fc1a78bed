//! A run's data: the data set as loaded, then the balanced subset, the bound's halves and the
//! label corruption its config asks for.

use std::path::{Path, PathBuf};

use anyhow::Result;
use depthprobe_config::{BoundSplit, Config};

use super::{balanced_subset, bound_halves, check_classes_present, corruption, load, select, Dataset, Relabel};

/// A run's data set and the train labels its corruption changed (index, original, new).
pub struct Prepared {
    pub data: Dataset,
    pub changed: Vec<Relabel>,
    /// A clean bound run's held-out half S2 (fresh data it never trains on): its predictions
    /// there are what the uniform-errors check reads (docs/method.md, "The comparative bound").
    pub s2: Option<super::Split>,
}

/// The data folder: --data-dir, else $DEPTHPROBE_DATA, else data.root, else the user's data
/// directory where `depthprobe data download` puts data sets by default.
pub fn data_root(cfg: &Config, flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("DEPTHPROBE_DATA").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(|| (!cfg.data.root.is_empty()).then(|| PathBuf::from(&cfg.data.root)))
        .or_else(depthprobe_download::default_root)
}

/// Load, subset and corrupt the data as the config says.
pub fn prepare(cfg: &Config, data_dir: Option<&Path>) -> Result<Prepared> {
    let root = data_root(cfg, data_dir);
    derive(cfg, &load(cfg.data.dataset, root.as_deref(), cfg.train.seed)?)
}

/// Subset and corrupt a loaded data set as the config says. Only what the run keeps is copied
/// (a batched group derives many runs from one loaded set).
pub fn derive(cfg: &Config, base: &Dataset) -> Result<Prepared> {
    let split = |s: &super::Split, per_class: usize, which: &str| -> Result<super::Split> {
        if per_class > 0 {
            balanced_subset(base, s, per_class, which)
        } else {
            Ok(s.clone())
        }
    };
    let mut ds = Dataset {
        name: base.name,
        shape: base.shape.clone(),
        num_classes: base.num_classes,
        train: split(&base.train, cfg.data.train_per_class, "train")?,
        test: split(&base.test, cfg.data.test_per_class, "test")?,
    };
    // Corruption acts on train labels from `first` on: all of them, or S2 alone for the bound.
    let mut first = 0;
    let mut held_out = None;
    match cfg.data.bound_split {
        BoundSplit::None => {}
        BoundSplit::S1 => {
            let (s1, s2) = bound_halves(&ds.train, ds.num_classes);
            held_out = Some(select(&ds, &ds.train, &s2));
            ds.train = select(&ds, &ds.train, &s1);
        }
        BoundSplit::S1S2 => {
            let (s1, s2) = bound_halves(&ds.train, ds.num_classes);
            first = s1.len();
            ds.train = select(&ds, &ds.train, &[s1, s2].concat());
        }
    }
    let changed = if cfg.corruption.p > 0.0 {
        let mut ch = corruption::corrupt(
            &mut ds.train.labels[first..],
            ds.num_classes,
            cfg.corruption.p,
            cfg.corruption.mode,
            cfg.corruption.seed,
        );
        for r in &mut ch {
            r.index += first;
        }
        ch
    } else {
        Vec::new()
    };
    check_classes_present(&ds.train, ds.num_classes, &format!("train split of {}", ds.name))?;
    check_classes_present(&ds.test, ds.num_classes, &format!("test split of {}", ds.name))?;
    Ok(Prepared { data: ds, changed, s2: held_out })
}
