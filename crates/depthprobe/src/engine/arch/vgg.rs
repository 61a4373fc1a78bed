//! The early paper versions' VGG-11/13/16/19 with BatchNorm (docs/method.md, "Networks"): the
//! conv stages of the configuration (3×3 conv → BN → ReLU, max-pool 2×2 after each stage), then
//! Linear(512·h·w, 4096) → ReLU → BN1d → Linear(4096, 4096) → ReLU → BN1d, Linear(4096, 128),
//! `model.top_layers` top layers and Linear(128, C).
//!
//! Embedded layers (8 + top_layers): 1–5 each conv stage's output (after its max-pool), 6–7 the
//! two 4096-wide blocks' outputs (after BN), 8 the fc-128 output (before its ReLU; the published
//! code's first embedding), then each top layer's output.
//!
//! Variables follow the published module's names: `features.{n}` (the Sequential index of each
//! conv and BN), `bottom_layers.{0,2,3,5}`, `fc`, `top_layers.{i}`, `top_linear`.

use anyhow::Result;
use depthprobe_config::ModelConfig;
use tch::nn;
use tch::Tensor;

use super::top::Head;
use crate::engine::layers::{BatchNorm, Builder, Conv2d, Kernel, Linear};
use crate::engine::network::{image_input, EmbeddedLayer, Forward, LayerWeight, Network};

const WIDE: usize = 4096;

/// Channels of each conv, per stage (a max-pool ends every stage).
fn stages(depth: usize) -> Vec<Vec<usize>> {
    let per_stage: [usize; 5] = match depth {
        11 => [1, 1, 2, 2, 2],
        13 => [2, 2, 2, 2, 2],
        16 => [2, 2, 3, 3, 3],
        _ => [2, 2, 4, 4, 4],
    };
    [64, 128, 256, 512, 512].iter().zip(per_stage).map(|(&c, n)| vec![c; n]).collect()
}

pub struct Vgg {
    features: Vec<Vec<(Conv2d, BatchNorm)>>,
    bottom: [(Linear, BatchNorm); 2],
    head: Head,
    layers: Vec<EmbeddedLayer>,
}

impl Vgg {
    pub fn new(b: Builder, root: &nn::Path, cfg: &ModelConfig, input: &[usize], classes: usize) -> Result<Vgg> {
        let depth = cfg.arch.vgg_depth().expect("a VGG architecture");
        let name = format!("VGG-{depth}");
        let (c, h, w) = image_input(&name, input, 32)?;
        let f = root / "features";
        let (mut idx, mut cin) = (0, c);
        let (mut hh, mut ww) = (h, w);
        let mut layers = Vec::new();
        let mut features = Vec::new();
        for (s, convs) in stages(depth).into_iter().enumerate() {
            let mut stage = Vec::new();
            for cout in convs {
                // Sequential indices: conv, BN, ReLU per conv; then the max-pool.
                stage.push((
                    b.conv2d(&f / idx, cin, cout, Kernel::new(3, 1, 1), true),
                    b.batch_norm(&f / (idx + 1), cout),
                ));
                idx += 3;
                cin = cout;
            }
            idx += 1;
            (hh, ww) = (hh / 2, ww / 2);
            layers.push(EmbeddedLayer { name: format!("stage {}", s + 1), dim: cin * hh * ww });
            features.push(stage);
        }
        let flat = cin * hh * ww;
        let bl = root / "bottom_layers";
        let bottom = [
            (b.linear(&bl / 0, flat, WIDE, true), b.batch_norm(&bl / 2, WIDE)),
            (b.linear(&bl / 3, WIDE, WIDE, true), b.batch_norm(&bl / 5, WIDE)),
        ];
        layers.push(EmbeddedLayer { name: "bottom 1".into(), dim: WIDE });
        layers.push(EmbeddedLayer { name: "bottom 2".into(), dim: WIDE });
        let head = Head::new(b, root, WIDE, cfg, classes);
        layers.extend(head.layers());
        Ok(Vgg { features, bottom, head, layers })
    }
}

impl Network for Vgg {
    fn forward(&self, x: &Tensor, shared: bool, train: bool, collect: bool) -> Forward {
        let mut embeddings = Vec::new();
        let mut keep = |t: &Tensor| {
            if collect {
                embeddings.push(t.flatten(1, -1));
            }
        };
        let mut h = x.shallow_clone();
        let mut first = shared;
        for stage in &self.features {
            for (conv, bn) in stage {
                h = bn.forward(&conv.forward(&h, first), train).relu();
                first = false;
            }
            h = h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            keep(&h);
        }
        let mut h = h.flatten(1, -1);
        for (lin, bn) in &self.bottom {
            h = bn.forward(&lin.forward(&h, false).relu(), train);
            keep(&h);
        }
        let logits = self.head.forward(&h, &mut keep);
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
