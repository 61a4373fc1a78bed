//! MLP-L-H and CONV-L-H exactly as the paper's code (spec §2.2), returning the embedding of
//! every counted layer. PyTorch default initialisation: weights and biases of every Linear and
//! Conv ~ U(−1/√fan_in, 1/√fan_in); BatchNorm γ = 1, β = 0, eps 1e-5, momentum 0.1.

use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

use crate::config::{Arch, EmbeddingPoint, ModelConfig};

fn pytorch_uniform(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// PyTorch's BatchNorm: γ = 1, β = 0, eps 1e-5, momentum 0.1 (tch's default draws γ ~ U(0, 1)).
fn bn_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        eps: 1e-5,
        momentum: 0.1,
        ..Default::default()
    }
}

fn linear(p: nn::Path, din: usize, dout: usize) -> nn::Linear {
    let init = pytorch_uniform(din);
    nn::linear(p, din as i64, dout as i64, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

fn conv(p: nn::Path, cin: usize, cout: usize, k: usize, stride: usize, padding: usize) -> nn::Conv2D {
    let init = pytorch_uniform(cin * k * k);
    let cfg = nn::ConvConfig {
        stride: stride as i64,
        padding: padding as i64,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    nn::conv2d(p, cin as i64, cout as i64, k as i64, cfg)
}

enum Op {
    Linear(nn::Linear),
    Conv(nn::Conv2D),
}

impl Op {
    fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            Op::Linear(l) => x.apply(l),
            Op::Conv(c) => x.apply(c),
        }
    }
}

/// One counted layer: linear/conv → BatchNorm → ReLU.
struct Block {
    op: Op,
    bn: Option<nn::BatchNorm>,
}

pub struct Net {
    arch: Arch,
    /// CONV stem: conv 2×2/2 → BN (no ReLU), conv 2×2/2 → BN → ReLU. Not counted or embedded.
    stem: Vec<(nn::Conv2D, Option<nn::BatchNorm>)>,
    blocks: Vec<Block>,
    head: nn::Linear,
    embedding: EmbeddingPoint,
    dims: Vec<usize>,
}

impl Net {
    /// `input` is the per-sample shape ([C, H, W] or [D]).
    pub fn new(root: &nn::Path, cfg: &ModelConfig, input: &[usize], num_classes: usize) -> anyhow::Result<Net> {
        let h = cfg.width;
        let bn1 = |p: nn::Path| cfg.batch_norm.then(|| nn::batch_norm1d(p, h as i64, bn_config()));
        let bn2 = |p: nn::Path| cfg.batch_norm.then(|| nn::batch_norm2d(p, h as i64, bn_config()));
        let (stem, blocks, head_in, dims) = match cfg.arch {
            Arch::Mlp => {
                let din: usize = input.iter().product();
                let blocks = (0..cfg.depth)
                    .map(|i| Block {
                        op: Op::Linear(linear(root / "layers" / i / "linear", if i == 0 { din } else { h }, h)),
                        bn: bn1(root / "layers" / i / "bn"),
                    })
                    .collect();
                (Vec::new(), blocks, h, vec![h; cfg.depth])
            }
            Arch::Conv => {
                if input.len() != 3 || !input[1].is_multiple_of(4) || !input[2].is_multiple_of(4) {
                    anyhow::bail!("CONV-L-H needs image input [C, H, W] with H and W divisible by 4, got {input:?}");
                }
                let stem = vec![
                    (conv(root / "stem" / 0 / "conv", input[0], h, 2, 2, 0), bn2(root / "stem" / 0 / "bn")),
                    (conv(root / "stem" / 1 / "conv", h, h, 2, 2, 0), bn2(root / "stem" / 1 / "bn")),
                ];
                let blocks = (0..cfg.depth)
                    .map(|i| Block {
                        op: Op::Conv(conv(root / "layers" / i / "conv", h, h, 3, 1, 1)),
                        bn: bn2(root / "layers" / i / "bn"),
                    })
                    .collect();
                let spatial = (input[1] / 4) * (input[2] / 4);
                (stem, blocks, h * spatial, vec![h * spatial; cfg.depth])
            }
        };
        let head = linear(root / "head", head_in, num_classes);
        Ok(Net { arch: cfg.arch, stem, blocks, head, embedding: cfg.embedding, dims })
    }

    /// Embedding dimension of each counted layer.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The classifier's weight (C × H_in) as a tensor.
    pub fn head_weight(&self) -> &Tensor {
        &self.head.ws
    }

    /// Logits, and with `collect` the flattened embedding of every counted layer.
    pub fn forward(&self, x: &Tensor, train: bool, collect: bool) -> (Tensor, Vec<Tensor>) {
        let mut x = match self.arch {
            Arch::Mlp => x.flatten(1, -1),
            Arch::Conv => x.shallow_clone(),
        };
        for (i, (c, bn)) in self.stem.iter().enumerate() {
            x = x.apply(c);
            if let Some(bn) = bn {
                x = bn.forward_t(&x, train);
            }
            if i == 1 {
                x = x.relu();
            }
        }
        let mut embeddings = Vec::new();
        for b in &self.blocks {
            x = b.op.apply(&x);
            if collect && self.embedding == EmbeddingPoint::PreBn {
                embeddings.push(x.flatten(1, -1));
            }
            if let Some(bn) = &b.bn {
                x = bn.forward_t(&x, train);
            }
            x = x.relu();
            if collect && self.embedding == EmbeddingPoint::PostActivation {
                embeddings.push(x.flatten(1, -1));
            }
        }
        (x.flatten(1, -1).apply(&self.head), embeddings)
    }
}
