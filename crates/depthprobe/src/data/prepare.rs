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

/// Subset and corrupt a loaded data set as the config says. Only what the run keeps is copied.
pub fn derive(cfg: &Config, base: &Dataset) -> Result<Prepared> {
    Selected::new(cfg, base)?.corrupted(cfg)
}

/// The samples a config keeps (balanced subsets, the bound's halves), before its label
/// corruption. Runs that differ only in seeds and corruption (a batched group) keep the same
/// samples: they select once and share the inputs (`Storage` clones share them).
pub struct Selected {
    data: Dataset,
    /// Corruption acts on train labels from this one on: all of them, or S2 alone for the bound.
    first: usize,
    held_out: Option<super::Split>,
}

impl Selected {
    pub fn new(cfg: &Config, base: &Dataset) -> Result<Selected> {
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
        Ok(Selected { data: ds, first, held_out })
    }

    /// This run's data: the selected samples (shared) with its own corrupted train labels.
    pub fn corrupted(&self, cfg: &Config) -> Result<Prepared> {
        let mut ds = self.data.clone();
        let first = self.first;
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
        Ok(Prepared { data: ds, changed, s2: self.held_out.clone() })
    }
}

#[cfg(test)]
mod tests {
    use depthprobe_config::CorruptionMode;

    use super::*;
    use crate::data::{synthetic, Storage};

    fn shares(a: &Storage, b: &Storage) -> bool {
        match (a, b) {
            (Storage::Floats(a), Storage::Floats(b)) => std::sync::Arc::ptr_eq(a, b),
            (Storage::Bytes { pixels: a, .. }, Storage::Bytes { pixels: b, .. }) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Runs of a batched group select once: each gets its own corrupted labels, the inputs are
    /// one shared copy, and the result is what deriving each run alone gives.
    #[test]
    fn runs_selected_once_share_inputs_and_keep_their_own_labels() {
        let base = synthetic::generate(0);
        let mut cfg = Config::default();
        cfg.data.train_per_class = 50;
        cfg.data.test_per_class = 20;
        cfg.data.bound_split = BoundSplit::S1S2;
        cfg.corruption.mode = CorruptionMode::PerSample;
        let runs: Vec<Config> = [(0.0, 1), (0.3, 2), (0.3, 3)]
            .into_iter()
            .map(|(p, seed)| {
                let mut c = cfg.clone();
                c.corruption.p = p;
                c.corruption.seed = seed;
                c
            })
            .collect();
        let selected = Selected::new(&runs[0], &base).unwrap();
        let got: Vec<Prepared> = runs.iter().map(|c| selected.corrupted(c).unwrap()).collect();
        for (g, c) in got.iter().zip(&runs) {
            let alone = derive(c, &base).unwrap();
            assert_eq!(g.data.train.labels, alone.data.train.labels);
            assert_eq!(g.data.train.storage, alone.data.train.storage);
            assert_eq!(g.data.test.labels, alone.data.test.labels);
            assert_eq!(g.data.test.storage, alone.data.test.storage);
            assert_eq!(g.changed, alone.changed);
            assert!(shares(&g.data.train.storage, &got[0].data.train.storage));
            assert!(shares(&g.data.test.storage, &got[0].data.test.storage));
        }
        // Corruption is the run's own: the clean run is untouched, the two seeds differ, and only
        // S2 (the second half of the train split) changes.
        assert!(got[0].changed.is_empty());
        assert!(!got[1].changed.is_empty() && got[1].changed != got[2].changed);
        let half = got[0].data.train.len() / 2;
        assert!(got[1].changed.iter().all(|r| r.index >= half));
        assert_eq!(got[0].data.train.labels[..half], got[1].data.train.labels[..half]);
    }
}
