//! A full-size training step captured once as a CUDA graph and then replayed (`train.graph`,
//! docs/method.md, "CUDA graphs"): forward, loss, backward and the fused SGD step of all K
//! networks become one launch. The graph reads a batch from static input buffers, the learning
//! rate from a device tensor (so the schedule needs no new capture), and leaves each network's
//! mean loss and correct count in static outputs. The trainer (trainer.rs) decides when.
//!
//! Capture runs no kernel: it records them. So the first graph step is checked against the
//! same step done eagerly from the same state, and the graph is kept only if they agree.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

use super::shim::CudaGraph;

/// Eager full-size steps before the capture, on the capture stream: cuBLAS and cuDNN set up
/// their handles and workspaces outside the graph (PyTorch's recipe uses 3).
pub const WARM_UP_STEPS: usize = 3;

/// How far the replayed step may be from the eager one, relative to each tensor's scale: the
/// batched-against-alone tolerance (tests/batched.rs). The same kernels normally agree exactly;
/// atomics in some backward kernels may not.
pub const AGREEMENT: f64 = 1e-4;

pub enum GraphState {
    /// Eager steps only.
    Off,
    /// Eager full-size steps left before the capture.
    WarmUp(usize),
    Ready(StepGraph),
}

/// The captured step and its static buffers.
pub struct StepGraph {
    pub graph: CudaGraph,
    /// The batch's inputs [B, K·C, …] and labels [B·K].
    pub x: Tensor,
    pub y: Tensor,
    /// The learning rate, [1] float32.
    pub lr: Tensor,
    /// Each network's mean loss [K] and correct count [K] of the last replayed step.
    pub per: Tensor,
    pub correct: Tensor,
}

impl StepGraph {
    /// One step on batch (x, y) at rate `lr`: (each network's mean loss, correct counts).
    pub fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            self.x.copy_(x);
            self.y.copy_(y);
            let _ = self.lr.fill_(lr);
        });
        self.graph.replay().expect("replaying the captured training step");
        (self.per.shallow_clone(), self.correct.shallow_clone())
    }
}

/// Largest difference between `a[i]` and `b[i]`, relative to `b[i]`'s largest magnitude (at
/// least 1e-3, as in tests/batched.rs); infinite where a value is not finite.
pub fn max_relative_difference(a: &[Tensor], b: &[Tensor]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double)).abs().max().double_value(&[]);
            let scale = y.abs().max().to_kind(tch::Kind::Double).double_value(&[]).max(1e-3);
            if d.is_finite() {
                d / scale
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// Copy `from` into `to`, tensor by tensor, in place (the variables keep their storage, which a
/// captured graph holds on to).
pub fn restore(to: &[Tensor], from: &[Tensor]) {
    tch::no_grad(|| {
        for (t, f) in to.iter().zip(from) {
            t.shallow_clone().copy_(f);
        }
    });
}

/// Say why graphs are not used, once per process (a sweep makes many trainers).
pub fn fall_back(why: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("depthprobe: train.graph = \"auto\": training eagerly: {why}");
    }
}
