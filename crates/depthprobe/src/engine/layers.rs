//! Layers of K networks at once (docs/architecture.md, "K networks in one model").
//!
//! Every parameter of network k is a slice of one tensor concatenated along dimension 0: a
//! Linear's weight is [K·out, in], a Conv2d's [K·out, in, kh, kw], a BatchNorm's vectors [K·C].
//! Activations are channel-stacked, [B, K·C, …], network k's channels at k·C..(k+1)·C. So:
//! * a convolution of K networks is one grouped convolution (groups = K);
//! * a BatchNorm over the K·C channels keeps every network's own statistics;
//! * a linear layer of K networks is one batched GEMM;
//! * inputs all K networks share (a probe batch) go through the first layer as one GEMM or
//!   convolution against the stacked weight;
//! * K = 1 runs exactly the single network's kernels (same results to the bit).
//!
//! PyTorch's default initialisation: weights and biases of every Linear and Conv ~
//! U(−1/√fan_in, 1/√fan_in), drawn bias first then weight as tch does; BatchNorm γ = 1, β = 0,
//! eps 1e-5, momentum 0.1.

use tch::nn::{self, Init};
use tch::Tensor;

/// How a model's variables are created: K networks, and whether their values are drawn here
/// (one network built under its seed) or filled in afterwards (K networks stacked from K draws).
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    pub k: i64,
    pub draw: bool,
}

impl Builder {
    fn init(&self, fan_in: i64) -> Init {
        if self.draw {
            let b = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -b, up: b }
        } else {
            Init::Const(0.0)
        }
    }

    pub fn linear(&self, p: nn::Path, inp: usize, out: usize, bias: bool) -> Linear {
        let (k, inp, out) = (self.k, inp as i64, out as i64);
        // Bias before weight: the order in which tch, and so a lone network, draws them.
        let b = bias.then(|| p.var("bias", &[k * out], self.init(inp)));
        let w = p.var("weight", &[k * out, inp], self.init(inp));
        Linear { w, b, k, inp, out }
    }

    pub fn conv2d(&self, p: nn::Path, cin: usize, cout: usize, kernel: Kernel, bias: bool) -> Conv2d {
        let Kernel { size: ksize, stride, pad } = kernel;
        let (k, cin, cout, ks) = (self.k, cin as i64, cout as i64, ksize as i64);
        let fan_in = cin * ks * ks;
        let b = bias.then(|| p.var("bias", &[k * cout], self.init(fan_in)));
        let w = p.var("weight", &[k * cout, cin, ks, ks], self.init(fan_in));
        Conv2d { w, b, k, stride: stride as i64, pad: pad as i64 }
    }

    pub fn batch_norm(&self, p: nn::Path, c: usize) -> BatchNorm {
        let n = self.k * c as i64;
        BatchNorm {
            w: p.var("weight", &[n], Init::Const(1.0)),
            b: p.var("bias", &[n], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[n]),
            running_var: p.ones_no_train("running_var", &[n]),
        }
    }
}

/// A square convolution kernel: its size, stride and zero padding.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub size: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Kernel {
    pub const fn new(size: usize, stride: usize, pad: usize) -> Kernel {
        Kernel { size, stride, pad }
    }
}

/// K linear maps: [B, K·in] (or [B, in] shared by all networks) → [B, K·out].
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
    k: i64,
    inp: i64,
    out: i64,
}

impl Linear {
    pub fn forward(&self, x: &Tensor, shared: bool) -> Tensor {
        if self.k == 1 || shared {
            // One GEMM: the lone network, or the shared input against all K weights at once.
            return x.linear(&self.w, self.b.as_ref());
        }
        let n = x.size()[0];
        let xs = x.view([n, self.k, self.inp]).transpose(0, 1);
        let w = self.w.view([self.k, self.out, self.inp]).transpose(1, 2);
        let y = match &self.b {
            Some(b) => b.view([self.k, 1, self.out]).baddbmm(&xs, &w, 1.0, 1.0),
            None => xs.bmm(&w),
        };
        y.transpose(0, 1).reshape([n, self.k * self.out])
    }
}

/// K convolutions: [B, K·cin, H, W] (or [B, cin, H, W] shared) → [B, K·cout, H′, W′].
pub struct Conv2d {
    pub w: Tensor,
    pub b: Option<Tensor>,
    k: i64,
    stride: i64,
    pad: i64,
}

impl Conv2d {
    pub fn forward(&self, x: &Tensor, shared: bool) -> Tensor {
        let groups = if shared { 1 } else { self.k };
        x.conv2d(&self.w, self.b.as_ref(), [self.stride; 2], [self.pad; 2], [1, 1], groups)
    }
}

/// BatchNorm over K·C channels (1-D or 2-D by the input's shape).
pub struct BatchNorm {
    pub w: Tensor,
    pub b: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm {
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        Tensor::batch_norm(
            x,
            Some(&self.w),
            Some(&self.b),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            1e-5,
            true,
        )
    }
}

/// An optional BatchNorm, then ReLU: how an MLP or CONV block activates its Linear's or
/// convolution's output.
pub fn bn_relu(bn: Option<&BatchNorm>, h: &Tensor, train: bool) -> Tensor {
    match bn {
        Some(bn) => bn.forward(h, train).relu(),
        None => h.relu(),
    }
}
