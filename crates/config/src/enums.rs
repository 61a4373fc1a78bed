//! The closed sets of choices a config makes: each is an enum, written in the TOML as the
//! lower-case names below (serde refuses anything else, listing the valid names).

use serde::{Deserialize, Serialize};

/// The data sets depthprobe reads (docs/method.md, "Data").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatasetName {
    #[serde(rename = "mnist")]
    Mnist,
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
    #[serde(rename = "cifar10")]
    Cifar10,
    /// The built-in procedural set of `depthprobe demo` (no files).
    #[serde(rename = "synthetic")]
    Synthetic,
}

impl DatasetName {
    pub const ALL: [DatasetName; 4] =
        [DatasetName::Mnist, DatasetName::FashionMnist, DatasetName::Cifar10, DatasetName::Synthetic];

    /// The name in configs, folders and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Synthetic => "synthetic",
        }
    }

    /// Its number of classes (every data set here has 10).
    pub fn num_classes(self) -> usize {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist | DatasetName::Cifar10 | DatasetName::Synthetic => 10,
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Network architectures; each is one file under the engine's `arch/` (docs/architecture.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// MLP-L-H: L × (Linear → BatchNorm → ReLU), then the classifier.
    Mlp,
    /// CONV-L-H: a two-conv stride-2 stem, L × (3×3 conv → BatchNorm → ReLU), the classifier.
    Conv,
    /// CIFAR-style ResNet-18 with a 128-wide fc layer and `model.top_layers` top layers.
    Resnet18,
    Vgg11,
    Vgg13,
    Vgg16,
    Vgg19,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Conv => "conv",
            Arch::Resnet18 => "resnet18",
            Arch::Vgg11 => "vgg11",
            Arch::Vgg13 => "vgg13",
            Arch::Vgg16 => "vgg16",
            Arch::Vgg19 => "vgg19",
        }
    }

    /// 11, 13, 16 or 19 for the VGG variants.
    pub fn vgg_depth(self) -> Option<usize> {
        match self {
            Arch::Vgg11 => Some(11),
            Arch::Vgg13 => Some(13),
            Arch::Vgg16 => Some(16),
            Arch::Vgg19 => Some(19),
            _ => None,
        }
    }
}

/// The kind of ResNet/VGG top layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopKind {
    /// Linear(128, 128); the embedding is its output, a ReLU follows.
    Fc,
    /// Linear(128, 50) → ReLU → Linear(50, 128), plus the identity, → ReLU; the embedding is its output.
    Res,
}

impl TopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopKind::Fc => "fc",
            TopKind::Res => "res",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingPoint {
    /// Output of each linear/conv before BatchNorm (the paper's code).
    PreBn,
    /// Output of each block after its ReLU.
    PostActivation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    CrossEntropy,
    /// MSE between softmax-free outputs and one-hot targets.
    Mse,
}

/// The two label-corruption variants (docs/method.md, "Label corruption").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptionMode {
    /// Exactly ⌊p·m⌋ labels, each changed to a uniformly drawn wrong label (the bound's).
    Exact,
    /// Each label redrawn uniformly from all C classes with probability p (the published code's).
    PerSample,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundSplit {
    /// The whole (subset) train split.
    None,
    S1,
    S1S2,
}

/// Where the probe reduces embeddings to per-class statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// On a GPU there, on the CPU the host engine (the faster one on each).
    Auto,
    /// Every batch's embeddings copied to the host engine (f64 accumulation in Rust).
    Host,
    /// LibTorch f64 reductions where the network is; only per-class statistics come back.
    Device,
}

/// Which CPU kernels train the network (docs/method.md, "Reproducibility").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Numerics {
    /// The fastest kernels this CPU has, `train.threads` threads.
    Native,
    /// One thread, ATen's AVX2 kernels, MKL's COMPATIBLE branch, oneDNN capped at AVX2.
    Portable,
}

/// The arithmetic of training's matrix products and convolutions (docs/method.md, "Precision").
/// The probes' reductions are f64 whatever this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// LibTorch's own choice: on a GPU, cuDNN convolutions in TF32 and matrix products in fp32;
    /// on a CPU, fp32.
    #[default]
    Default,
    /// fp32 everywhere (no TF32 on a GPU).
    Fp32,
    /// TF32 for a GPU's matrix products and convolutions (on a CPU: fp32).
    Tf32,
    /// Matrix products and convolutions autocast to bfloat16, on a GPU or a CPU (AMX or
    /// AVX-512 BF16 where there is one); weights, BatchNorm and the loss stay fp32.
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Default => "default",
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// How the warm-up epochs run (docs/method.md, "Training protocol").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    /// The learning rate rises linearly, step by step, to its base value on the last warm-up step.
    #[default]
    Linear,
    /// As the published code runs: its warm-up scheduler is built but never stepped, so the
    /// warm-up epochs run at learning rate 0 (the weights stay; SGD's momentum buffers still
    /// take every gradient) and the base rate starts after them with those buffers.
    Published,
}

/// Whether a GPU replays each training step as one captured CUDA graph (docs/method.md, "CUDA
/// graphs"). The numbers are eager training's; only the kernel launches change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Graph {
    /// Eager steps. The default until capture has been verified on a GPU.
    #[default]
    Off,
    /// Capture on a CUDA device and check the first replayed step against an eager one; if
    /// capture or that check fails, train eagerly and say why, once. On a CPU: eager.
    Auto,
    /// As `auto`, but a failure is an error, and so is a CPU device.
    On,
}

/// A compute device: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. Whether it exists is checked by
/// the engine when a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    pub fn parse(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Cuda(n)),
                _ => Err(format!("device '{s}': expected cpu, cuda or cuda:N")),
            },
        }
    }
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(s: String) -> Result<Device, String> {
        Device::parse(&s)
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
