//! The 128-wide top layers the early paper versions put between ResNet-18's or VGG's fc-128
//! layer and the classifier (`model.top_layers`, `model.top_kind`).

use depthprobe_config::TopKind;
use tch::nn;
use tch::Tensor;

use crate::engine::layers::{Builder, Linear};

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
