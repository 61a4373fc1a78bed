//! What every architecture is to the trainer: K networks of one architecture as one model that
//! returns the logits and the embedding of every probed layer. An architecture is one file in
//! `arch/` plus its line in [`build`].

use anyhow::Result;
use depthprobe_config::{Arch, ModelConfig};
use tch::nn;
use tch::Tensor;

use super::arch;
use super::layers::Builder;

/// A probed layer: its name (for tables and docs) and its embedding dimension per network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedLayer {
    pub name: String,
    pub dim: usize,
}

/// What a forward pass returns: logits [B, K·C] and, when collected, every embedded layer's
/// output flattened per network, [B, K·D_i] (network k's block at k·D_i).
pub struct Forward {
    pub logits: Tensor,
    pub embeddings: Vec<Tensor>,
}

/// What a layer's weight multiplies, for the alignment of its spectrum with class means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightInput {
    /// The embedding of probed layer j (1-based), as the weight's columns see it.
    Layer(usize),
    /// 3×3 patches (stride 1, padding 1) of probed layer j's feature map [C, H, W]: the
    /// columns are the weight reshaped to out × C·3·3.
    Patches3x3 { layer: usize, channels: usize, height: usize, width: usize },
    /// Something the probe does not see (the network's input, a stem's output, the activation
    /// after a pre-BN embedding): `Network::weight_inputs` gives it, flattened per network; with `patches`
    /// (channels, height, width) it is a feature map whose 3×3 patches the weight reads.
    Hidden { patches: Option<(usize, usize, usize)> },
}

/// The weight that produces an embedded layer: [K·out, in, …] (network k's rows k·out..), and
/// what it multiplies.
pub struct LayerWeight {
    pub weight: Tensor,
    pub input: WeightInput,
}

pub trait Network {
    /// `x` is [B, K·C_in, …] (network k's inputs in its channel block), or [B, C_in, …] when all K
    /// networks take the same inputs (`shared`). `train` selects BatchNorm's batch statistics.
    fn forward(&self, x: &Tensor, shared: bool, train: bool, collect: bool) -> Forward;

    /// The embedded layers, in order: layer 1 is the first.
    fn layers(&self) -> &[EmbeddedLayer];

    /// The classifier's weight [K·C, D_L] when its input is the last embedding (NC3 compares it
    /// with that layer's class means); None otherwise.
    fn nc3_classifier(&self) -> Option<&Tensor>;

    /// The weight behind each embedded layer, in order, for the weight spectra; empty when an
    /// embedded layer is not the output of one weight (ResNet's and VGG's stages).
    fn layer_weights(&self) -> Vec<LayerWeight>;

    /// In eval mode on K-stacked inputs: for each embedded layer whose weight's input is
    /// `WeightInput::Hidden`, that input flattened per network, [B, K·in] (network k's block at
    /// k·in); None for the others.
    fn weight_inputs(&self, x: &Tensor) -> Vec<Option<Tensor>>;
}

/// Build `cfg`'s architecture for inputs of per-sample shape `input` ([C, H, W] or [D]) and
/// `classes` outputs, K = `b.k` networks wide, its variables under `root`.
pub fn build(
    b: Builder,
    root: &nn::Path,
    cfg: &ModelConfig,
    input: &[usize],
    classes: usize,
) -> Result<Box<dyn Network>> {
    Ok(match cfg.arch {
        Arch::Mlp => Box::new(arch::mlp::Mlp::new(b, root, cfg, input, classes)?),
        Arch::Conv => Box::new(arch::conv::Conv::new(b, root, cfg, input, classes)?),
        Arch::Resnet18 => Box::new(arch::resnet::ResNet18::new(b, root, cfg, input, classes)?),
        Arch::Vgg11 | Arch::Vgg13 | Arch::Vgg16 | Arch::Vgg19 => {
            Box::new(arch::vgg::Vgg::new(b, root, cfg, input, classes)?)
        }
    })
}

/// Image input [C, H, W] with H and W divisible by `by`, or an error naming the architecture.
pub(crate) fn image_input(name: &str, input: &[usize], by: usize) -> Result<(usize, usize, usize)> {
    match input {
        [c, h, w] if h % by == 0 && w % by == 0 && *h >= by && *w >= by => Ok((*c, *h, *w)),
        _ => anyhow::bail!("{name} needs image input [C, H, W] with H and W divisible by {by}, got {input:?}"),
    }
}
