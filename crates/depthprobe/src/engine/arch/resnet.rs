//! The early paper versions' CIFAR-style ResNet-18 (docs/method.md, "Networks"): conv 3×3-64 →
//! BN → ReLU; four stages (64, 128, 256, 512 channels; strides 1, 2, 2, 2) of two BasicBlocks
//! (conv-BN-ReLU-conv-BN plus the shortcut, a 1×1 conv-BN where the shape changes, then ReLU);
//! global average pooling; Linear(512, 128); `model.top_layers` top layers; Linear(128, C). Convs
//! have no bias.
//!
//! Embedded layers (7 + top_layers): 1 the conv1 block's output, 2–5 each stage's output, 6 the
//! pooled vector, 7 the fc-128 output (before its ReLU), then each top layer's output.
//!
//! Variables follow the published module's names: `conv1.{0,1}`, `conv2_x.{j}.residual_function.
//! {0,1,3,4}`, `conv2_x.{j}.shortcut.{0,1}` … `conv5_x`, `fc`, `top_layers.{i}`, `top_linear`.

use anyhow::Result;
use depthprobe_config::ModelConfig;
use tch::nn;
use tch::Tensor;

use super::top::Head;
use crate::engine::layers::{BatchNorm, Builder, Conv2d, Kernel};
use crate::engine::network::{image_input, EmbeddedLayer, Forward, LayerWeight, Network};

struct BasicBlock {
    conv_a: Conv2d,
    bn_a: BatchNorm,
    conv_b: Conv2d,
    bn_b: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(b: Builder, p: nn::Path, cin: usize, cout: usize, stride: usize) -> BasicBlock {
        let r = &p / "residual_function";
        let conv_a = b.conv2d(&r / 0, cin, cout, Kernel::new(3, stride, 1), false);
        let bn_a = b.batch_norm(&r / 1, cout);
        let conv_b = b.conv2d(&r / 3, cout, cout, Kernel::new(3, 1, 1), false);
        let bn_b = b.batch_norm(&r / 4, cout);
        let shortcut = (stride != 1 || cin != cout).then(|| {
            let s = &p / "shortcut";
            (b.conv2d(&s / 0, cin, cout, Kernel::new(1, stride, 0), false), b.batch_norm(&s / 1, cout))
        });
        BasicBlock { conv_a, bn_a, conv_b, bn_b, shortcut }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let r = self.bn_a.forward(&self.conv_a.forward(x, false), train).relu();
        let r = self.bn_b.forward(&self.conv_b.forward(&r, false), train);
        let s = match &self.shortcut {
            Some((c, bn)) => bn.forward(&c.forward(x, false), train),
            None => x.shallow_clone(),
        };
        (r + s).relu()
    }
}

pub struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm,
    stages: Vec<Vec<BasicBlock>>,
    head: Head,
    layers: Vec<EmbeddedLayer>,
}

impl ResNet18 {
    pub fn new(b: Builder, root: &nn::Path, cfg: &ModelConfig, input: &[usize], classes: usize) -> Result<ResNet18> {
        let (c, h, w) = image_input("ResNet-18", input, 8)?;
        let conv1 = b.conv2d(root / "conv1" / 0, c, 64, Kernel::new(3, 1, 1), false);
        let bn1 = b.batch_norm(root / "conv1" / 1, 64);
        let mut layers = vec![EmbeddedLayer { name: "conv1".into(), dim: 64 * h * w }];
        let mut stages = Vec::new();
        let mut cin = 64;
        let (mut hh, mut ww) = (h, w);
        for (i, (cout, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].into_iter().enumerate() {
            let p = root / format!("conv{}_x", i + 2);
            stages.push(vec![BasicBlock::new(b, &p / 0, cin, cout, stride), BasicBlock::new(b, &p / 1, cout, cout, 1)]);
            cin = cout;
            (hh, ww) = (hh / stride, ww / stride);
            layers.push(EmbeddedLayer { name: format!("conv{}_x", i + 2), dim: cout * hh * ww });
        }
        layers.push(EmbeddedLayer { name: "avg_pool".into(), dim: 512 });
        let head = Head::new(b, root, 512, cfg, classes);
        layers.extend(head.layers());
        Ok(ResNet18 { conv1, bn1, stages, head, layers })
    }
}

impl Network for ResNet18 {
    fn forward(&self, x: &Tensor, shared: bool, train: bool, collect: bool) -> Forward {
        let mut embeddings = Vec::new();
        let mut keep = |t: &Tensor| {
            if collect {
                embeddings.push(t.flatten(1, -1));
            }
        };
        let mut h = self.bn1.forward(&self.conv1.forward(x, shared), train).relu();
        keep(&h);
        for stage in &self.stages {
            for block in stage {
                h = block.forward(&h, train);
            }
            keep(&h);
        }
        let pooled = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        keep(&pooled);
        let logits = self.head.forward(&pooled, &mut keep);
        Forward { logits, embeddings }
    }

    fn layers(&self) -> &[EmbeddedLayer] {
        &self.layers
    }

    fn nc3_classifier(&self) -> Option<&Tensor> {
        self.head.nc3_classifier()
    }

    fn layer_weights(&self) -> Vec<LayerWeight> {
        // A stage's embedding is the output of several convolutions, not of one weight.
        Vec::new()
    }

    fn weight_inputs(&self, _x: &Tensor) -> Vec<Option<Tensor>> {
        Vec::new()
    }
}
