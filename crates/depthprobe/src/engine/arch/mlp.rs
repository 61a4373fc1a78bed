//! MLP-L-H as the paper's code builds it (docs/method.md, "Networks"): flatten, then L blocks
//! Linear(·, H) → BatchNorm1d → ReLU, then Linear(H, C). Layer i is embedded at its Linear's
//! output (pre-BN, the paper's choice) or after its ReLU (`model.embedding`).
//!
//! Variables (PyTorch names): `layers.{i}.linear.{weight,bias}`, `layers.{i}.bn.*`, `head.*`.

use anyhow::Result;
use depthprobe_config::{EmbeddingPoint, ModelConfig};
use tch::nn;
use tch::Tensor;

use crate::engine::layers::{bn_relu, BatchNorm, Builder, Linear};
use crate::engine::network::{EmbeddedLayer, Forward, LayerWeight, Network, WeightInput};

struct Block {
    linear: Linear,
    bn: Option<BatchNorm>,
}

pub struct Mlp {
    blocks: Vec<Block>,
    head: Linear,
    embedding: EmbeddingPoint,
    layers: Vec<EmbeddedLayer>,
}

impl Mlp {
    pub fn new(b: Builder, root: &nn::Path, cfg: &ModelConfig, input: &[usize], classes: usize) -> Result<Mlp> {
        let din: usize = input.iter().product();
        let h = cfg.width;
        let blocks = (0..cfg.depth)
            .map(|i| {
                let p = root / "layers" / i;
                Block {
                    linear: b.linear(&p / "linear", if i == 0 { din } else { h }, h, true),
                    bn: cfg.batch_norm.then(|| b.batch_norm(&p / "bn", h)),
                }
            })
            .collect();
        let layers = (1..=cfg.depth).map(|i| EmbeddedLayer { name: format!("linear {i}"), dim: h }).collect();
        Ok(Mlp { blocks, head: b.linear(root / "head", h, classes, true), embedding: cfg.embedding, layers })
    }
}

impl Network for Mlp {
    fn forward(&self, x: &Tensor, shared: bool, train: bool, collect: bool) -> Forward {
        let mut h = x.flatten(1, -1);
        let mut embeddings = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.linear.forward(&h, shared && i == 0);
            if collect && self.embedding == EmbeddingPoint::PreBn {
                embeddings.push(h.shallow_clone());
            }
            h = bn_relu(b.bn.as_ref(), &h, train);
            if collect && self.embedding == EmbeddingPoint::PostActivation {
                embeddings.push(h.shallow_clone());
            }
        }
        Forward { logits: self.head.forward(&h, false), embeddings }
    }

    fn layers(&self) -> &[EmbeddedLayer] {
        &self.layers
    }

    fn nc3_classifier(&self) -> Option<&Tensor> {
        (self.embedding == EmbeddingPoint::PostActivation).then_some(&self.head.w)
    }

    fn layer_weights(&self) -> Vec<LayerWeight> {
        let post = self.embedding == EmbeddingPoint::PostActivation;
        (0..self.blocks.len())
            .map(|i| LayerWeight {
                weight: self.blocks[i].linear.w.shallow_clone(),
                input: match (i, post) {
                    // Post-activation embeddings are the next Linear's input; the flattened
                    // input and a pre-BN embedding's activation are not probed.
                    (i, true) if i > 0 => WeightInput::Layer(i),
                    _ => WeightInput::Hidden { patches: None },
                },
            })
            .collect()
    }

    fn weight_inputs(&self, x: &Tensor) -> Vec<Option<Tensor>> {
        let mut h = x.flatten(1, -1);
        let mut out = vec![Some(h.shallow_clone())];
        if self.embedding == EmbeddingPoint::PostActivation {
            // The later inputs are probed: no forward pass needed.
            out.resize_with(self.blocks.len(), || None);
            return out;
        }
        // The last block's output feeds the head, not a probed layer's weight.
        let below_top = self.blocks.split_last().map_or(&[][..], |(_, below)| below);
        for b in below_top {
            h = bn_relu(b.bn.as_ref(), &b.linear.forward(&h, false), false);
            out.push(Some(h.shallow_clone()));
        }
        out
    }
}
