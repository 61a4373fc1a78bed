//! Run configuration (TOML). Defaults are the paper's training protocol (docs/method.md,
//! "Training protocol"); every key can be set in the file or with `--set section.key=value`.
//! Unknown keys are refused with the nearest valid key suggested, and out-of-range values are
//! refused before anything runs. No tensor library here: the engine takes the parts it needs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

mod enums;
pub mod fuzz;
mod identity;

pub use enums::{
    Arch, BoundSplit, CorruptionMode, DatasetName, Device, EmbeddingPoint, Graph, Loss, Numerics, Precision, Reduction,
    TopKind, Warmup,
};
pub use identity::{identity_hash, identity_text};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub corruption: CorruptionConfig,
    pub probe: ProbeConfig,
    /// Where a run also reports, besides its folder. Not part of what the run is: left out of
    /// its identity (run ids) and of the written config when empty, so older builds read it.
    #[serde(skip_serializing_if = "LogConfig::is_empty")]
    pub log: LogConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// TensorBoard log folder ("" = none); a sweep's run logs into <this>/<run id>
    /// (docs/result-files.md, "TensorBoard").
    pub tensorboard: String,
}

impl LogConfig {
    pub fn is_empty(&self) -> bool {
        self.tensorboard.is_empty()
    }

    /// The TensorBoard folder, when one is set.
    pub fn tensorboard_dir(&self) -> Option<std::path::PathBuf> {
        (!self.tensorboard.is_empty()).then(|| std::path::PathBuf::from(&self.tensorboard))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetName,
    /// Folder with one subfolder per data set ("" = use --data-dir or DEPTHPROBE_DATA).
    pub root: String,
    /// Balanced subset: first n samples of each class (0 = all).
    pub train_per_class: usize,
    pub test_per_class: usize,
    /// CIFAR-10 training augmentation (crop with padding 4, flip, rotation 15°).
    pub augment: bool,
    /// The comparative bound's balanced halves of the train set (docs/method.md, "The
    /// comparative bound"): `s1` trains on S1 only; `s1_s2` trains on S1 ∪ S2 with label
    /// corruption applied to S2 alone, so `corruption.p` is then the fraction of m = |S2|.
    pub bound_split: BoundSplit,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// L: hidden layers (MLP) or 3×3 conv blocks after the stem (CONV). Not used by resnet18/vgg*.
    pub depth: usize,
    /// H: hidden width (MLP) or channels (CONV). Not used by resnet18/vgg*.
    pub width: usize,
    pub batch_norm: bool,
    /// Where MLP/CONV layers are embedded (resnet18/vgg* have fixed embedding points).
    pub embedding: EmbeddingPoint,
    /// resnet18/vgg*: extra 128-wide top layers between the fc-128 layer and the classifier.
    pub top_layers: usize,
    /// resnet18/vgg*: `res` (Linear 128→50, ReLU, Linear 50→128, plus the identity, ReLU) or `fc`.
    pub top_kind: TopKind,
}

impl ModelConfig {
    /// The network's name as the paper writes it: MLP-L-H, CONV-L-H, ResNet-18+2res, VGG-11-BN+2res.
    pub fn name(&self) -> String {
        let top = format!("+{}{}", self.top_layers, self.top_kind.as_str());
        match self.arch {
            Arch::Mlp => format!("MLP-{}-{}", self.depth, self.width),
            Arch::Conv => format!("CONV-{}-{}", self.depth, self.width),
            Arch::Resnet18 => format!("ResNet-18{top}"),
            Arch::Vgg11 | Arch::Vgg13 | Arch::Vgg16 | Arch::Vgg19 => {
                format!("VGG-{}-BN{top}", self.arch.vgg_depth().unwrap_or(0))
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// MultiStepLR milestones (epochs, 1-based: the LR drops from that epoch on).
    pub milestones: Vec<usize>,
    pub gamma: f64,
    /// Epochs of warm-up (0 = none).
    pub warmup_epochs: usize,
    /// "linear" (the default: the rate rises step by step to its base value) or "published"
    /// (the published code's: the warm-up epochs at rate 0, momentum accumulating; docs/method.md,
    /// "Training protocol"). Left out of the written config when linear, so that builds that
    /// predate the key read the configs of runs that do not use it.
    #[serde(skip_serializing_if = "is_linear_warmup")]
    pub warmup: Warmup,
    pub loss: Loss,
    pub seed: u64,
    /// cpu | cuda | cuda:N
    pub device: Device,
    /// CPU threads for LibTorch (0 = the CPUs this process may use: its affinity mask and cgroup
    /// quota, or its share under `sweep local -j N`, or SLURM's allotment; docs/experiments.md).
    pub threads: usize,
    /// CPU kernels: "native" (the fastest this CPU has; results repeat exactly on the same kind
    /// of CPU and thread count) or "portable" (one thread, ATen's AVX2 kernels and MKL's
    /// COMPATIBLE branch: results repeat exactly on every x86-64 CPU with AVX2, Intel or not;
    /// slower, see docs/method.md, "Reproducibility").
    pub numerics: Numerics,
    /// Arithmetic of the matrix products and convolutions: "default" (LibTorch's: TF32 in a GPU's
    /// convolutions, fp32 elsewhere), "fp32", "tf32" or "bf16" (autocast; docs/method.md,
    /// "Precision"). Left out of the written config when default, so that builds that predate the
    /// key still read the configs of runs that do not use it.
    #[serde(skip_serializing_if = "is_default_precision")]
    pub precision: Precision,
    /// Each full training step on a GPU as one replayed CUDA graph: "off" (the default), "auto"
    /// or "on" (docs/method.md, "CUDA graphs"). Left out of the written config when "off".
    #[serde(skip_serializing_if = "is_graph_off")]
    pub graph: Graph,
    /// Write a checkpoint (model, momentum buffers, epoch) every N epochs and after the last
    /// (0 = after the last only); `depthprobe train --resume DIR` continues from it.
    pub checkpoint_every: usize,
    /// A key that exists only in this crate's own unit tests: a key added with its default must
    /// move no run id (`identity.rs`).
    #[cfg(test)]
    pub added_in_test: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CorruptionConfig {
    /// Fraction of corrupted train labels.
    pub p: f64,
    pub mode: CorruptionMode,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Probe every K epochs (and always after the last epoch).
    pub every: usize,
    /// Also probe the network at initialisation (epoch 0).
    pub at_init: bool,
    pub eps: Vec<f64>,
    /// Rows per forward pass while probing.
    pub batch_size: usize,
    /// Numerical/effective rank for layers of at most this dimension (0 = never, the default:
    /// they need a D×D Gram matrix, N·D² work per probe).
    pub rank_max_dim: usize,
    /// Linear-probe (ridge classifier) accuracy for layers of at most this dimension (0 = never,
    /// the default: a D×D Gram matrix and a D³ solve per layer; docs/method.md, "Linear probe").
    pub linear_max_dim: usize,
    /// The ridge's relative regularisation α: λ = α · tr(centred scatter) / D.
    pub linear_ridge: f64,
    /// Where embeddings are reduced: "auto" (default), "host" or "device".
    pub reduction: Reduction,
    /// Keep pass 1's train embeddings on the training device for pass 2 when they take at most
    /// this many MiB, so pass 2 needs no second forward pass over the train split (0 = never;
    /// docs/method.md, "How a probe runs").
    pub cache_mib: u64,
    /// Linear CKA between every pair of probed layers, train and test (minibatches of 256 rows;
    /// off by default: docs/method.md, "Layer similarity (CKA)", gives its cost). Left out of the
    /// written config when off.
    #[serde(skip_serializing_if = "is_false")]
    pub cka: bool,
    /// Each probed layer's weight spectrum at every probe: ranks, stable rank, alignment with
    /// its input's class means (docs/method.md, "Weight spectra"). Left out when off.
    #[serde(skip_serializing_if = "is_false")]
    pub weight_spectra: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetName::Mnist,
            root: String::new(),
            train_per_class: 0,
            test_per_class: 0,
            augment: false,
            bound_split: BoundSplit::None,
        }
    }
}
impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Mlp,
            depth: 10,
            width: 512,
            batch_norm: true,
            embedding: EmbeddingPoint::PreBn,
            top_layers: 2,
            top_kind: TopKind::Res,
        }
    }
}
fn is_default_precision(p: &Precision) -> bool {
    *p == Precision::Default
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_graph_off(g: &Graph) -> bool {
    *g == Graph::Off
}
fn is_linear_warmup(w: &Warmup) -> bool {
    *w == Warmup::Linear
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 500,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            milestones: vec![60, 100, 200],
            gamma: 0.2,
            warmup_epochs: 1,
            warmup: Warmup::Linear,
            loss: Loss::CrossEntropy,
            seed: 0,
            device: Device::Cpu,
            threads: 0,
            numerics: Numerics::Native,
            precision: Precision::Default,
            graph: Graph::Off,
            checkpoint_every: 10,
            #[cfg(test)]
            added_in_test: 0,
        }
    }
}
impl Default for CorruptionConfig {
    fn default() -> Self {
        CorruptionConfig { p: 0.0, mode: CorruptionMode::Exact, seed: 12345 }
    }
}
impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            every: 10,
            at_init: true,
            eps: depthprobe_measures::DEFAULT_EPS.to_vec(),
            batch_size: 1000,
            rank_max_dim: depthprobe_measures::DEFAULT_RANK_MAX_DIM,
            linear_max_dim: depthprobe_measures::DEFAULT_LINEAR_MAX_DIM,
            linear_ridge: depthprobe_measures::DEFAULT_LINEAR_RIDGE,
            reduction: Reduction::Auto,
            cache_mib: 2048,
            cka: false,
            weight_spectra: false,
        }
    }
}

/// Every valid dotted key, from the default config's own serialisation (one source of truth).
pub fn valid_keys() -> Vec<String> {
    // Keys left out of a written config when default (so older builds can read it) are set to
    // something else here, so that every key is written.
    let mut every = Config::default();
    every.train.precision = Precision::Bf16;
    every.train.graph = Graph::Auto;
    every.train.warmup = Warmup::Published;
    every.log.tensorboard = "tb".into();
    every.probe.cka = true;
    every.probe.weight_spectra = true;
    let v = toml::Value::try_from(every).expect("the config serializes");
    let mut keys = Vec::new();
    if let toml::Value::Table(t) = v {
        for (s, sub) in t {
            if let toml::Value::Table(st) = sub {
                keys.extend(st.keys().map(|k| format!("{s}.{k}")));
            }
        }
    }
    keys
}

/// "; did you mean 'X'?" when a candidate is a likely misspelling of `key` (an edit distance of at
/// most a quarter of its length, at least 1), else nothing: a far-fetched guess misleads.
fn suggest(key: &str, candidates: &[String]) -> String {
    let best = candidates.iter().map(|c| (strsim::damerau_levenshtein(key, c), c)).min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= (key.chars().count() / 4).max(1) => format!("; did you mean '{c}'?"),
        _ => String::new(),
    }
}

/// Why `key` is not a config key: the closest valid key, or else the keys of its section, or
/// else the sections.
fn unknown_key(key: &str, keys: &[String]) -> String {
    let hint = suggest(key, keys);
    if !hint.is_empty() {
        return hint;
    }
    let section = key.split('.').next().unwrap_or("");
    let in_section: Vec<&str> =
        keys.iter().filter_map(|k| k.strip_prefix(section).and_then(|r| r.strip_prefix('.'))).collect();
    if in_section.is_empty() {
        format!(" (sections: {})", sections(keys).join(", "))
    } else {
        format!(" (keys of [{section}]: {})", in_section.join(", "))
    }
}

fn sections(keys: &[String]) -> Vec<String> {
    let mut s: Vec<String> = keys.iter().map(|k| k.split('.').next().unwrap().to_string()).collect();
    s.dedup();
    s
}

/// Refuse keys that are not in the schema, naming the closest valid one.
fn check_keys(table: &toml::Table, origin: &str) -> Result<()> {
    let keys = valid_keys();
    let sections = sections(&keys);
    for (s, v) in table {
        if !sections.contains(s) {
            bail!("{origin}: unknown section '{s}'{} (sections: {})", suggest(s, &sections), sections.join(", "));
        }
        let toml::Value::Table(sub) = v else {
            bail!("{origin}: '{s}' must be a section ([{s}]), not a value");
        };
        for k in sub.keys() {
            let full = format!("{s}.{k}");
            if !keys.contains(&full) {
                bail!("{origin}: unknown key '{full}'{}", unknown_key(&full, &keys));
            }
        }
    }
    Ok(())
}

/// Set the dotted `section.key` in a config table to `value`.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let (sec, k) =
        key.split_once('.').with_context(|| format!("'{key}': key must be section.key, e.g. train.epochs"))?;
    let entry = table.entry(sec.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(k.to_string(), value);
            Ok(())
        }
        _ => bail!("'{key}': '{sec}' is not a section"),
    }
}

/// Check that a dotted key names a config value (with a suggestion when it does not).
pub fn check_key(key: &str, origin: &str) -> Result<()> {
    let keys = valid_keys();
    if !keys.iter().any(|k| k == key) {
        bail!("{origin}: unknown config key '{key}'{}", unknown_key(key, &keys));
    }
    Ok(())
}

/// Apply `key=value` overrides (value in TOML syntax; bare words are taken as strings). Each is
/// checked on its own first (its key and its value's type), so that a bad `--set` is reported as
/// the `--set`, not as the file's fault; ranges and combinations are checked on the whole.
pub fn apply_sets(table: &mut toml::Table, sets: &[String]) -> Result<()> {
    for s in sets {
        let origin = format!("--set '{s}'");
        let (key, val) = s.split_once('=').with_context(|| format!("{origin}: expected section.key=value"))?;
        let key = key.trim();
        check_key(key, &origin)?;
        let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {}", val.trim())) {
            Ok(mut t) => t.remove("v").unwrap(),
            Err(_) => toml::Value::String(val.trim().to_string()),
        };
        let mut alone = toml::Table::new();
        set_key(&mut alone, key, value.clone()).with_context(|| origin.clone())?;
        Config::parse_table(alone, &origin)?;
        set_key(table, key, value).with_context(|| origin.clone())?;
    }
    Ok(())
}

impl Config {
    /// Parse TOML text (plus overrides); `origin` names the source in messages.
    pub fn from_toml(text: &str, origin: &str, sets: &[String]) -> Result<Config> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: invalid TOML: {e}"))?;
        apply_sets(&mut table, sets)?;
        if sets.is_empty() {
            Self::from_table(table, origin)
        } else {
            // What is left to fail is the combination (e.g. an image network on synthetic data).
            Self::from_table(table, &format!("{origin} with --set {}", sets.join(" --set ")))
        }
    }

    /// Build from a parsed table (keys checked, values validated); `origin` names the source.
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Config> {
        let cfg = Self::parse_table(table, origin)?;
        cfg.validate().with_context(|| format!("{origin}: invalid value"))?;
        Ok(cfg)
    }

    /// Keys and value types only; `validate` checks ranges and combinations.
    fn parse_table(table: toml::Table, origin: &str) -> Result<Config> {
        check_keys(&table, origin)?;
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{origin}: {}", e.message()))
    }

    pub fn from_file(path: &Path, sets: &[String]) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::from_toml(&text, &path.display().to_string(), sets)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let m = &self.model;
        let image_arch = !matches!(m.arch, Arch::Mlp);
        let checks: Vec<(bool, String)> = vec![
            (m.depth >= 1, format!("model.depth = {}: must be ≥ 1", m.depth)),
            (m.width >= 1, format!("model.width = {}: must be ≥ 1", m.width)),
            (t.epochs >= 1, format!("train.epochs = {}: must be ≥ 1", t.epochs)),
            (
                t.batch_size >= 2,
                format!("train.batch_size = {}: must be ≥ 2 (BatchNorm needs 2 samples)", t.batch_size),
            ),
            (t.lr > 0.0 && t.lr.is_finite(), format!("train.lr = {}: must be > 0", t.lr)),
            ((0.0..1.0).contains(&t.momentum), format!("train.momentum = {}: must be in [0, 1)", t.momentum)),
            (
                t.weight_decay >= 0.0 && t.weight_decay.is_finite(),
                format!("train.weight_decay = {}: must be ≥ 0", t.weight_decay),
            ),
            (t.gamma > 0.0 && t.gamma <= 1.0, format!("train.gamma = {}: must be in (0, 1]", t.gamma)),
            (
                t.milestones.windows(2).all(|w| w[0] < w[1]) && t.milestones.iter().all(|&m| m >= 1),
                format!("train.milestones = {:?}: must be increasing epochs ≥ 1", t.milestones),
            ),
            (
                (0.0..=1.0).contains(&self.corruption.p),
                format!("corruption.p = {}: must be in [0, 1]", self.corruption.p),
            ),
            (self.probe.every >= 1, format!("probe.every = {}: must be ≥ 1", self.probe.every)),
            (self.probe.batch_size >= 1, format!("probe.batch_size = {}: must be ≥ 1", self.probe.batch_size)),
            (
                self.probe.linear_ridge > 0.0 && self.probe.linear_ridge.is_finite(),
                format!("probe.linear_ridge = {}: must be > 0", self.probe.linear_ridge),
            ),
            (
                !self.probe.eps.is_empty() && self.probe.eps.iter().all(|e| (0.0..=1.0).contains(e)),
                format!("probe.eps = {:?}: need at least one value, each in [0, 1]", self.probe.eps),
            ),
            (
                !(t.precision == Precision::Bf16 && t.numerics == Numerics::Portable),
                "train.precision = \"bf16\" with train.numerics = \"portable\": bfloat16 kernels round \
                 differently on each CPU, so they cannot give portable numbers; use one or the other"
                    .to_string(),
            ),
            (
                self.data.dataset != DatasetName::Synthetic || !image_arch,
                format!("model.arch = '{}' needs image data; the synthetic set is vectors", m.arch.as_str()),
            ),
        ];
        for (ok, msg) in checks {
            if !ok {
                bail!(msg);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_config_round_trips() {
        let cfg = Config::from_toml(
            "[model]\ndepth = 4\n[train]\nlr = 0.05\nmilestones = [3, 7]\n",
            "t",
            &["corruption.p=0.25".into(), "data.dataset=fashion-mnist".into(), "train.device=cuda:1".into()],
        )
        .unwrap();
        assert_eq!(cfg.model.depth, 4);
        assert_eq!(cfg.corruption.p, 0.25);
        assert_eq!(cfg.data.dataset, DatasetName::FashionMnist);
        assert_eq!(cfg.train.device, Device::Cuda(1));
        let again = Config::from_toml(&cfg.to_toml(), "resolved", &[]).unwrap();
        assert_eq!(cfg, again);
        assert!(cfg.to_toml().contains("dataset = \"fashion-mnist\"") && cfg.to_toml().contains("device = \"cuda:1\""));
    }

    #[test]
    fn defaults_are_the_papers() {
        let c = Config::default();
        assert_eq!((c.train.batch_size, c.train.lr, c.train.momentum, c.train.weight_decay), (128, 0.1, 0.9, 5e-4));
        assert_eq!((c.train.milestones.clone(), c.train.gamma, c.train.epochs), (vec![60, 100, 200], 0.2, 500));
        assert_eq!(c.probe.eps, depthprobe_measures::DEFAULT_EPS.to_vec());
        assert_eq!(c.probe.rank_max_dim, depthprobe_measures::DEFAULT_RANK_MAX_DIM);
    }

    #[test]
    fn unknown_key_names_it_and_suggests() {
        let e = Config::from_toml("[train]\nlearning_rat = 0.1\n", "cfg.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("cfg.toml") && e.contains("train.learning_rat"), "{e}");
        let e = Config::from_toml("[train]\nepoch = 3\n", "cfg.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("did you mean 'train.epochs'"), "{e}");
        let e = Config::from_toml("[modle]\ndepth = 3\n", "cfg.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("did you mean 'model'"), "{e}");
    }

    #[test]
    fn a_bad_set_is_blamed_on_the_set_and_far_guesses_are_not_offered() {
        let file = "[train]\nepochs = 3\nmilestones = [2]\n";
        let e = format!("{:#}", Config::from_toml(file, "cfg.toml", &["optim.lerning_rate=0.1".into()]).unwrap_err());
        assert!(e.starts_with("--set 'optim.lerning_rate=0.1': unknown config key 'optim.lerning_rate'"), "{e}");
        assert!(!e.contains("cfg.toml") && !e.contains("did you mean") && e.contains("sections: data, model"), "{e}");
        let e = format!("{:#}", Config::from_toml(file, "cfg.toml", &["train.lerning_rate=0.1".into()]).unwrap_err());
        assert!(!e.contains("did you mean") && e.contains("keys of [train]: ") && e.contains(" lr,"), "{e}");
        let e = format!("{:#}", Config::from_toml(file, "cfg.toml", &["train.epoch=3".into()]).unwrap_err());
        assert!(e.contains("--set 'train.epoch=3'") && e.contains("did you mean 'train.epochs'"), "{e}");
        let e = format!("{:#}", Config::from_toml(file, "cfg.toml", &["train.epochs=many".into()]).unwrap_err());
        assert!(e.starts_with("--set 'train.epochs=many'") && !e.contains("cfg.toml"), "{e}");
        // A range error is judged on the whole config, which names both sources.
        let e = format!("{:#}", Config::from_toml(file, "cfg.toml", &["train.lr=-1".into()]).unwrap_err());
        assert!(e.contains("cfg.toml with --set train.lr=-1") && e.contains("train.lr = -1"), "{e}");
        // A set is checked on its own only for its key and type: epochs = 2 with the file's
        // milestones is fine even though the defaults' milestones are later.
        assert_eq!(Config::from_toml(file, "cfg.toml", &["train.epochs=2".into()]).unwrap().train.epochs, 2);
        let e = Config::from_toml("[optim]\nlr = 1\n", "cfg.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("cfg.toml: unknown section 'optim'") && !e.contains("did you mean"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (set, needle) in [
            ("train.lr=0", "train.lr"),
            ("train.lr=-1", "train.lr"),
            ("corruption.p=1.5", "corruption.p"),
            ("model.depth=0", "model.depth"),
            ("train.batch_size=1", "train.batch_size"),
            ("train.milestones=[5, 3]", "milestones"),
            ("train.device=tpu", "tpu"),
            ("train.device=cuda:x", "cuda:x"),
            ("data.dataset=imagenet", "imagenet"),
            ("model.arch=resnet50", "resnet50"),
            ("train.numerics=exact", "exact"),
        ] {
            let e = format!("{:#}", Config::from_toml("", "c", &[set.into()]).unwrap_err());
            assert!(e.contains(needle), "{set}: {e}");
        }
        let e = format!(
            "{:#}",
            Config::from_toml("", "c", &["model.arch=vgg11".into(), "data.dataset=synthetic".into()]).unwrap_err()
        );
        assert!(e.contains("vgg11") && e.contains("image data"), "{e}");
    }

    #[test]
    fn probe_reduction_is_auto_unless_set() {
        assert_eq!(Config::default().probe.reduction, Reduction::Auto);
        for (v, want) in [("host", Reduction::Host), ("device", Reduction::Device), ("auto", Reduction::Auto)] {
            let c = Config::from_toml("", "c", &[format!("probe.reduction=\"{v}\"")]).unwrap();
            assert_eq!(c.probe.reduction, want);
        }
        let e = format!("{:#}", Config::from_toml("[probe]\nreduction = \"gpu\"\n", "c.toml", &[]).unwrap_err());
        assert!(e.contains("c.toml") && e.contains("gpu") && e.contains("host"), "{e}");
    }

    #[test]
    fn precision_is_parsed_checked_and_left_out_of_a_default_config() {
        for (v, want) in [
            ("default", Precision::Default),
            ("fp32", Precision::Fp32),
            ("tf32", Precision::Tf32),
            ("bf16", Precision::Bf16),
        ] {
            let c = Config::from_toml(&format!("[train]\nprecision = \"{v}\"\n"), "c.toml", &[]).unwrap();
            assert_eq!(c.train.precision, want);
            assert_eq!(Config::from_toml(&c.to_toml(), "again", &[]).unwrap(), c, "{v} round-trips");
            // Only a chosen precision appears in the written config: older builds read the rest.
            assert_eq!(c.to_toml().contains("precision"), want != Precision::Default, "{v}");
        }
        assert!(valid_keys().iter().any(|k| k == "train.precision"));
        let e = format!("{:#}", Config::from_toml("[train]\nprecision = \"fp16\"\n", "c.toml", &[]).unwrap_err());
        assert!(e.contains("c.toml") && e.contains("fp16") && e.contains("bf16"), "{e}");
        let e = format!(
            "{:#}",
            Config::from_toml("", "c", &["train.precision=\"bf16\"".into(), "train.numerics=\"portable\"".into()])
                .unwrap_err()
        );
        assert!(e.contains("train.precision") && e.contains("portable"), "{e}");
        let c = Config::from_toml("", "c", &["train.precision=\"tf32\"".into(), "train.numerics=\"portable\"".into()]);
        assert!(c.is_ok(), "tf32 is fp32 on a CPU, so it goes with portable numerics");
    }

    #[test]
    fn graph_is_parsed_and_left_out_when_off() {
        for (v, want) in [("off", Graph::Off), ("auto", Graph::Auto), ("on", Graph::On)] {
            let c = Config::from_toml(&format!("[train]\ngraph = \"{v}\"\n"), "c.toml", &[]).unwrap();
            assert_eq!(c.train.graph, want);
            assert_eq!(Config::from_toml(&c.to_toml(), "again", &[]).unwrap(), c, "{v} round-trips");
            assert_eq!(c.to_toml().contains("graph"), want != Graph::Off, "{v}");
        }
        assert_eq!(Config::default().train.graph, Graph::Off);
        assert!(valid_keys().iter().any(|k| k == "train.graph"));
        let e = format!("{:#}", Config::from_toml("[train]\ngraph = \"yes\"\n", "c.toml", &[]).unwrap_err());
        assert!(e.contains("c.toml") && e.contains("yes") && e.contains("auto"), "{e}");
    }

    #[test]
    fn names_follow_the_paper() {
        let mut m = ModelConfig { depth: 8, width: 400, arch: Arch::Conv, ..Default::default() };
        assert_eq!(m.name(), "CONV-8-400");
        m.arch = Arch::Resnet18;
        assert_eq!(m.name(), "ResNet-18+2res");
        m.arch = Arch::Vgg16;
        m.top_kind = TopKind::Fc;
        m.top_layers = 0;
        assert_eq!(m.name(), "VGG-16-BN+0fc");
    }
}
