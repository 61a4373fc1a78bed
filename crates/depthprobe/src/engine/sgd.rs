//! SGD with momentum and weight decay, PyTorch's update written out:
//!     d = ∇p + wd·p;   buf = momentum·buf + d;   p = p − lr·buf
//! (dampening 0, no Nesterov; buf starts at 0, so the first step is buf = d as in PyTorch).
//! Written here rather than through tch's optimizer because checkpoints need the momentum
//! buffers, which tch does not expose.

use tch::nn::VarStore;
use tch::Tensor;

pub use super::shim::Lr;

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

    /// Clear the gradients before a backward pass. On a GPU they are released (PyTorch's
    /// set_to_none: no kernel per parameter; the caching allocator makes the next ones cheap);
    /// on the CPU they are kept and zeroed in place, because fresh multi-MB gradients there cost
    /// page faults (measured: ~6% of an MLP-10-512 step on 2 cores).
    pub fn zero_grad(&mut self) {
        if self.release_grads() {
            super::shim::grads_to_none(self.params.iter_mut().map(|(_, p)| p)).expect("releasing gradients");
        } else {
            for (_, p) in self.params.iter_mut() {
                p.zero_grad();
            }
        }
    }

    fn release_grads(&self) -> bool {
        self.params.first().is_some_and(|(_, p)| p.device() != tch::Device::Cpu)
    }

    /// One step as a single fused multi-tensor kernel (csrc/shim.cpp: at::_fused_sgd_, the
    /// update above computed in one pass over each parameter); on a GPU it also releases the
    /// gradients (see `zero_grad`). The rate is a value, or a one-element float32 tensor on the
    /// parameters' device read when the step runs, as a captured CUDA graph needs it.
    pub fn step(&mut self, lr: Lr) {
        let release = self.release_grads();
        let params = self.params.iter_mut().map(|(_, p)| p);
        super::shim::fused_sgd(params, self.momentum_buffers.iter_mut(), self.weight_decay, self.momentum, lr, release)
            .expect("fused SGD step");
    }

    /// The same step as separate in-place kernels per parameter: the reference the fused step
    /// is tested against (the step used before the fused kernel).
    #[cfg(test)]
    fn step_unfused(&mut self, lr: f64) {
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

    /// Momentum buffers by parameter name, to restore them from a checkpoint.
    pub fn state_mut(&mut self) -> Vec<(&str, &mut Tensor)> {
        self.params.iter().zip(self.momentum_buffers.iter_mut()).map(|((n, _), b)| (n.as_str(), b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};
    use tch::{Device, Kind};

    /// One step per rate in `lrs` of a small linear model (and a parameter without gradient),
    /// `step` doing the update: every variable and momentum buffer afterwards, by name.
    fn steps(lrs: &[f64], mut step: impl FnMut(&mut Sgd, f64)) -> Vec<(String, Tensor)> {
        let vs = VarStore::new(Device::Cpu);
        let (lin, x) = crate::engine::with_seed(7, || {
            (nn::linear(vs.root() / "a", 6, 4, Default::default()), Tensor::randn([8, 6], (Kind::Float, Device::Cpu)))
        });
        let _unused = vs.root().var("unused", &[3], nn::Init::Const(1.0));
        let mut opt = Sgd::new(&vs, 0.9, 5e-4);
        for (i, &lr) in lrs.iter().enumerate() {
            opt.zero_grad();
            lin.forward(&(&x * (i + 1) as f64)).square().mean(Kind::Float).backward();
            step(&mut opt, lr);
        }
        let mut vals: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vals.extend(opt.state().into_iter().map(|(n, b)| (format!("momentum.{n}"), b.copy())));
        vals.sort_by(|a, b| a.0.cmp(&b.0));
        vals
    }

    /// The learning rate as a tensor (what a CUDA graph replays) gives the scalar rate's bits.
    #[test]
    fn tensor_learning_rate_matches_the_scalar_one() {
        let lrs = [0.1, 0.05, 0.02];
        let mut lr_t = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let a = steps(&lrs, |opt, lr| {
            let _ = lr_t.fill_(lr);
            opt.step(Lr::Tensor(&mut lr_t));
        });
        let b = steps(&lrs, |opt, lr| opt.step(Lr::Value(lr)));
        assert_eq!(a.len(), b.len());
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            assert!(x.equal(y), "{n}: tensor lr {x:?} vs scalar lr {y:?}");
        }
        let moved = &a.iter().find(|(n, _)| n == "a.weight").unwrap().1;
        assert!(moved.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    /// The fused kernel and the per-parameter kernels give the same parameters and momentum
    /// buffers over several steps (weight decay, momentum, a parameter without gradient).
    #[test]
    fn fused_step_matches_the_unfused_update() {
        let a = steps(&[0.1; 4], |opt, lr| opt.step(Lr::Value(lr)));
        let b = steps(&[0.1; 4], |opt, lr| opt.step_unfused(lr));
        assert_eq!(a.len(), b.len());
        for ((na, ta), (_, tb)) in a.iter().zip(&b) {
            let diff = (ta - tb).abs().max().double_value(&[]);
            assert!(diff <= 1e-6 * (1.0 + tb.abs().max().double_value(&[])), "{na}: differs by {diff}");
        }
        let moved = &a.iter().find(|(n, _)| n == "a.weight").unwrap().1;
        assert!(moved.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let unused = &a.iter().find(|(n, _)| n == "unused").unwrap().1;
        assert_eq!(unused.sum(Kind::Float).double_value(&[]), 3.0, "no gradient: not updated");
    }
}
