//! SGD with momentum and weight decay, PyTorch's update written out:
//!     d = ∇p + wd·p;   buf = momentum·buf + d;   p = p − lr·buf
//! (dampening 0, no Nesterov; buf starts at 0, so the first step is buf = d as in PyTorch).
//! Written here rather than through tch's optimizer because checkpoints need the momentum
//! buffers, which tch does not expose.

use tch::nn::VarStore;
use tch::Tensor;

pub struct Sgd {
    /// Trainable variables by name, sorted (a fixed order: deterministic, and names for checkpoints).
    params: Vec<(String, Tensor)>,
    momentum_buffers: Vec<Tensor>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    pub fn new(vs: &VarStore, momentum: f64, weight_decay: f64) -> Sgd {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let momentum_buffers = params.iter().map(|(_, p)| tch::no_grad(|| p.zeros_like())).collect();
        Sgd { params, momentum_buffers, momentum, weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    pub fn step(&mut self, lr: f64) {
        // Four in-place kernels per parameter and no per-parameter allocation: the scalars are
        // 0-dim tensors so that addcmul_ fuses the scaling into the addition.
        let Some((_, first)) = self.params.first() else { return };
        let opts = (first.kind(), first.device());
        let wd = Tensor::from(self.weight_decay).to_kind(opts.0).to_device(opts.1);
        let neg_lr = Tensor::from(-lr).to_kind(opts.0).to_device(opts.1);
        tch::no_grad(|| {
            for ((_, p), buf) in self.params.iter_mut().zip(self.momentum_buffers.iter_mut()) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    let _ = g.addcmul_(p, &wd); // g += wd·p (the gradient is zeroed before the next step)
                }
                let _ = buf.g_mul_scalar_(self.momentum);
                let _ = buf.g_add_(&g);
                let _ = p.addcmul_(buf, &neg_lr); // p −= lr·buf
            }
        });
    }

    /// Momentum buffers by parameter name (for checkpoints).
    pub fn state(&self) -> Vec<(String, &Tensor)> {
        self.params.iter().zip(&self.momentum_buffers).map(|((n, _), b)| (n.clone(), b)).collect()
    }

    /// Restore momentum buffers; every parameter must have one.
    pub fn load_state(&mut self, get: &mut dyn FnMut(&str) -> Option<Tensor>) -> anyhow::Result<()> {
        for ((name, _), buf) in self.params.iter().zip(self.momentum_buffers.iter_mut()) {
            let t = get(name).ok_or_else(|| anyhow::anyhow!("checkpoint has no momentum buffer for '{name}'"))?;
            if t.size() != buf.size() {
                anyhow::bail!(
                    "checkpoint momentum buffer '{name}' has shape {:?}, the model {:?}",
                    t.size(),
                    buf.size()
                );
            }
            tch::no_grad(|| buf.copy_(&t));
        }
        Ok(())
    }
}
