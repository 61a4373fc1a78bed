//! CONV-L-H as the paper's code builds it (docs/method.md, "Networks"): a stem that is neither
//! counted nor embedded (Conv 2×2/2 → BN, no ReLU; Conv 2×2/2 → BN → ReLU; 32 → 8 pixels), then L
//! blocks Conv 3×3 (H → H, padding 1) → BatchNorm2d → ReLU, then flatten and Linear(H·8·8, C).
//! Layer i is embedded at its conv's output (pre-BN) or after its ReLU, flattened to H·8·8.
//!
//! Variables: `stem.{0,1}.conv.*`, `stem.{0,1}.bn.*`, `layers.{i}.conv.*`, `layers.{i}.bn.*`, `head.*`.

use anyhow::Result;
use depthprobe_config::{EmbeddingPoint, ModelConfig};
use tch::nn;
use tch::Tensor;

use crate::engine::layers::{bn_relu, BatchNorm, Builder, Conv2d, Kernel, Linear};
use crate::engine::network::{image_input, EmbeddedLayer, Forward, LayerWeight, Network, WeightInput};

struct Block {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

pub struct Conv {
    stem: Vec<Block>,
    blocks: Vec<Block>,
    head: Linear,
    embedding: EmbeddingPoint,
    layers: Vec<EmbeddedLayer>,
    /// Channels and the feature map's height and width after the stem.
    width: usize,
    map: (usize, usize),
}

impl Conv {
    /// The two stride-2 stem convolutions (BatchNorm after each, ReLU after the second): the map
    /// every probed layer works on.
    fn stem(&self, x: &Tensor, shared: bool, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, s) in self.stem.iter().enumerate() {
            h = s.conv.forward(&h, shared && i == 0);
            if let Some(bn) = &s.bn {
                h = bn.forward(&h, train);
            }
            if i == 1 {
                h = h.relu();
            }
        }
        h
    }

    pub fn new(b: Builder, root: &nn::Path, cfg: &ModelConfig, input: &[usize], classes: usize) -> Result<Conv> {
        let (c, hh, ww) = image_input("CONV-L-H", input, 4)?;
        let h = cfg.width;
        let block = |p: nn::Path, cin: usize, kernel: Kernel| Block {
            conv: b.conv2d(&p / "conv", cin, h, kernel, true),
            bn: cfg.batch_norm.then(|| b.batch_norm(&p / "bn", h)),
        };
        let stem =
            vec![block(root / "stem" / 0, c, Kernel::new(2, 2, 0)), block(root / "stem" / 1, h, Kernel::new(2, 2, 0))];
        let blocks = (0..cfg.depth).map(|i| block(root / "layers" / i, h, Kernel::new(3, 1, 1))).collect();
        let dim = h * (hh / 4) * (ww / 4);
        let layers = (1..=cfg.depth).map(|i| EmbeddedLayer { name: format!("conv {i}"), dim }).collect();
        Ok(Conv {
            stem,
            blocks,
            head: b.linear(root / "head", dim, classes, true),
            embedding: cfg.embedding,
            layers,
            width: h,
            map: (hh / 4, ww / 4),
        })
    }
}

impl Network for Conv {
    fn forward(&self, x: &Tensor, shared: bool, train: bool, collect: bool) -> Forward {
        let mut h = self.stem(x, shared, train);
        let mut embeddings = Vec::new();
        for b in &self.blocks {
            h = b.conv.forward(&h, false);
            if collect && self.embedding == EmbeddingPoint::PreBn {
                embeddings.push(h.flatten(1, -1));
            }
            h = bn_relu(b.bn.as_ref(), &h, train);
            if collect && self.embedding == EmbeddingPoint::PostActivation {
                embeddings.push(h.flatten(1, -1));
            }
        }
        Forward { logits: self.head.forward(&h.flatten(1, -1), false), embeddings }
    }

    fn layers(&self) -> &[EmbeddedLayer] {
        &self.layers
    }

    fn nc3_classifier(&self) -> Option<&Tensor> {
        (self.embedding == EmbeddingPoint::PostActivation).then_some(&self.head.w)
    }

    fn layer_weights(&self) -> Vec<LayerWeight> {
        let post = self.embedding == EmbeddingPoint::PostActivation;
        let patches = Some((self.width, self.map.0, self.map.1));
        (0..self.blocks.len())
            .map(|i| LayerWeight {
                weight: self.blocks[i].conv.w.shallow_clone(),
                input: match (i, post) {
                    (0, _) | (_, false) => WeightInput::Hidden { patches },
                    (_, true) => WeightInput::Patches3x3 {
                        layer: i,
                        channels: self.width,
                        height: self.map.0,
                        width: self.map.1,
                    },
                },
            })
            .collect()
    }

    fn weight_inputs(&self, x: &Tensor) -> Vec<Option<Tensor>> {
        let mut h = self.stem(x, false, false);
        let mut out = vec![Some(h.flatten(1, -1))];
        if self.embedding == EmbeddingPoint::PostActivation {
            // The later inputs are probed: the stem is all that needs to run.
            out.resize_with(self.blocks.len(), || None);
            return out;
        }
        // The last block's output feeds the head, not a probed layer's weight.
        let below_top = self.blocks.split_last().map_or(&[][..], |(_, below)| below);
        for b in below_top {
            h = bn_relu(b.bn.as_ref(), &b.conv.forward(&h, false), false);
            out.push(Some(h.flatten(1, -1)));
        }
        out
    }
}
