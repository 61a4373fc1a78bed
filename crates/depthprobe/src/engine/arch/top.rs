//! The head the early paper versions put on ResNet-18 and VGG: a Linear(·, 128) layer, then
//! `model.top_layers` 128-wide top layers of `model.top_kind`, then the classifier.

use depthprobe_config::{ModelConfig, TopKind};
use tch::nn;
use tch::Tensor;

use crate::engine::layers::{Builder, Linear};
use crate::engine::network::EmbeddedLayer;

/// The width of the fc layer and the top layers, and the bottleneck of a residual top layer.
pub const TOP_WIDTH: usize = 128;
const RES_WIDTH: usize = 50;

pub enum TopLayer {
    /// Linear(128, 128): the embedding is its output (a ReLU follows).
    Fc(Linear),
    /// Linear(128, 50) → ReLU → Linear(50, 128), plus the identity, → ReLU: the embedding is that.
    Res(Linear, Linear),
}

impl TopLayer {
    pub fn new(b: Builder, p: nn::Path, kind: TopKind) -> TopLayer {
        match kind {
            TopKind::Fc => TopLayer::Fc(b.linear(p, TOP_WIDTH, TOP_WIDTH, true)),
            TopKind::Res => TopLayer::Res(
                b.linear(&p / "fc1", TOP_WIDTH, RES_WIDTH, true),
                b.linear(&p / "fc2", RES_WIDTH, TOP_WIDTH, true),
            ),
        }
    }

    /// The layer's output (its embedding) for input `x` (already through a ReLU).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            TopLayer::Fc(l) => l.forward(x, false),
            TopLayer::Res(a, b) => (x + b.forward(&a.forward(x, false).relu(), false)).relu(),
        }
    }

    /// Whether the output is already non-negative (so the ReLU after it changes nothing).
    pub fn ends_in_relu(&self) -> bool {
        matches!(self, TopLayer::Res(..))
    }
}

/// fc-128 → top layers → classifier, with ReLUs between; embedded at the fc-128 output (before
/// its ReLU) and at each top layer's output.
pub struct Head {
    fc: Linear,
    top: Vec<TopLayer>,
    classifier: Linear,
}

impl Head {
    /// Variables `fc`, `top_layers.{i}`, `top_linear` (the published modules' names).
    pub fn new(b: Builder, root: &nn::Path, inp: usize, cfg: &ModelConfig, classes: usize) -> Head {
        Head {
            fc: b.linear(root / "fc", inp, TOP_WIDTH, true),
            top: (0..cfg.top_layers).map(|i| TopLayer::new(b, root / "top_layers" / i, cfg.top_kind)).collect(),
            classifier: b.linear(root / "top_linear", TOP_WIDTH, classes, true),
        }
    }

    /// The head's embedded layers.
    pub fn layers(&self) -> Vec<EmbeddedLayer> {
        let mut v = vec![EmbeddedLayer { name: "fc".into(), dim: TOP_WIDTH }];
        v.extend((0..self.top.len()).map(|i| EmbeddedLayer { name: format!("top_layers.{i}"), dim: TOP_WIDTH }));
        v
    }

    /// The logits of `x` [B, K·inp]; each embedding goes to `keep`.
    pub fn forward(&self, x: &Tensor, keep: &mut dyn FnMut(&Tensor)) -> Tensor {
        let mut h = self.fc.forward(x, false);
        keep(&h);
        for t in &self.top {
            h = t.forward(&h.relu());
            keep(&h);
        }
        self.classifier.forward(&h.relu(), false)
    }

    /// The classifier reads the last embedding only behind a residual top layer (which ends in a
    /// ReLU, so the ReLU before the classifier changes nothing): only then is NC3 measured.
    pub fn nc3_classifier(&self) -> Option<&Tensor> {
        self.top.last().filter(|t| t.ends_in_relu()).map(|_| &self.classifier.w)
    }
}
