//! The trainer of K ≥ 1 networks of one architecture as one model (a single run is K = 1): the
//! networks, SGD epochs and steps (eager or a replayed CUDA graph). Its other jobs are beside it:
//! batches (`batches.rs`), the probe (`probe_stream.rs`), checkpoints (`checkpoint.rs`) and the
//! thread count while it runs on a shared CPU (`threads.rs`).
//!
//! Network k starts from the parameters a lone network draws with its seed and sees its own data
//! order, augmentation and labels, so it follows the trajectory it follows alone, up to the
//! rounding of the batched kernels (tests/batched.rs). The loss is the sum of the K networks'
//! mean losses, so each gets exactly its own gradient; one fused SGD step updates all of them.

use anyhow::{bail, Context, Result};
use depthprobe_config::{Graph, Loss, ModelConfig, Precision, TrainConfig};
use std::time::Instant;

use depthprobe_sweep::governor::{ThreadGovernor, Work};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::batches::{resident_inputs, same_inputs};
use super::device_data::DeviceImages;
use super::layers::Builder;
use super::network::{build, EmbeddedLayer, Forward, Network};
use super::sgd::{Lr, Sgd};
use super::shim::CudaGraph;
use super::step_graph::{self, GraphState, StepGraph};
use super::{host_f64, resolve_device};
use crate::data::Dataset;
use crate::rng::Rng;
use crate::schedule::lr_at;

pub use super::checkpoint::HostState;
pub use super::probe_stream::ProbeOutcome;

pub struct EpochStats {
    pub loss: f64,
    pub acc: f64,
}

/// An epoch stopped after `step` steps: every network's running loss sum [K] and correct count
/// [K] on the device, the samples each has seen, and each network's augmentation generator. A
/// checkpoint holds it, so training continues at the next step exactly as if it had not stopped.
pub struct EpochCursor {
    pub step: usize,
    pub(super) loss_sum: Tensor,
    pub(super) correct: Tensor,
    pub(super) seen: usize,
    pub(super) augment: Vec<Option<u64>>,
}

/// Network k's part of an [`EpochCursor`], as a checkpoint stores it.
pub struct CursorPart {
    pub step: usize,
    pub loss_sum: f32,
    pub correct: i64,
    pub seen: usize,
    /// The augmentation generator's state (None without augmentation).
    pub augment: Option<u64>,
}

/// How `train_epoch` ended.
pub enum EpochEnd {
    Done(Vec<EpochStats>),
    /// `stop` asked to stop after this many steps.
    Stopped(EpochCursor),
}

/// The seed of epoch `epoch`'s shuffle (salt 1) or augmentation (salt 2) for a run seeded `base`.
pub(crate) fn seed_for(base: u64, salt: u64, epoch: usize) -> u64 {
    base.wrapping_mul(0x9E37_79B9).wrapping_add(salt.wrapping_mul(1_000_003)).wrapping_add(epoch as u64)
}

/// What the trainer needs besides the data: the architecture, the shared training settings, and
/// each network's seed.
pub struct Group<'a> {
    pub model: &'a ModelConfig,
    pub train: &'a TrainConfig,
    /// Network k's `train.seed`: its initial parameters, data order and augmentation.
    pub seeds: Vec<u64>,
    /// CIFAR training augmentation.
    pub augment: bool,
}

pub struct Trainer {
    pub(super) vs: VarStore,
    pub(super) net: Box<dyn Network>,
    pub(super) opt: Sgd,
    pub(super) device: Device,
    pub(super) train: TrainConfig,
    pub(super) seeds: Vec<u64>,
    pub(super) augment: bool,
    /// Inputs and convolution weights in channels-last strides (bf16 ConvNets).
    pub(super) channels_last: bool,
    pub(super) shape: Vec<i64>,
    pub(super) num_classes: usize,
    pub(super) xbuf: Vec<f32>,
    pub(super) one: Vec<f32>,
    /// The shared train inputs [N, …] on the device, for unaugmented batches (see `new`).
    pub(super) resident: Option<Tensor>,
    /// The shared train images on the device, for augmented batches; bit for bit the host's
    /// (engine/device_data.rs), so where batches are made changes no number.
    pub(super) images: Option<DeviceImages>,
    /// Whether all networks see the same inputs in the train / test split: the probe then sends
    /// one copy of each batch through the first layer against all K weights.
    pub(super) shared: [bool; 2],
    /// Full-size steps as a replayed CUDA graph (step_graph.rs), or not.
    pub(super) graph: GraphState,
    /// Probe batches run through the networks so far (pass 2 on train replays pass 1's when
    /// they were kept: `probe.cache_mib`).
    pub(super) probe_forwards: usize,
    /// On a shared CPU, the thread count chosen as it trains (`threads.rs`); None: fixed.
    pub(super) governor: Option<ThreadGovernor>,
}

impl Trainer {
    /// K = `g.seeds.len()` networks on `data[k]` (same shapes and sizes; only labels and, for
    /// generated data, inputs may differ).
    pub fn new(g: &Group, data: &[&Dataset]) -> Result<Trainer> {
        let k = g.seeds.len();
        if k == 0 || k != data.len() {
            bail!("{k} networks for {} data sets", data.len());
        }
        let d0 = data[0];
        for (i, d) in data.iter().enumerate() {
            if (d.shape.as_slice(), d.num_classes, d.train.len(), d.test.len())
                != (d0.shape.as_slice(), d0.num_classes, d0.train.len(), d0.test.len())
            {
                bail!("network {i}: its data set differs from network 0's in shape, classes or split sizes");
            }
        }
        let device = resolve_device(g.train.device)?;
        let vs = VarStore::new(device);
        let (input, classes) = (&d0.shape, d0.num_classes);
        let net = if k == 1 {
            // The lone network draws its parameters in place, under its seed.
            super::with_seed(g.seeds[0], || build(Builder { k: 1, draw: true }, &vs.root(), g.model, input, classes))?
        } else {
            let net = build(Builder { k: k as i64, draw: false }, &vs.root(), g.model, input, classes)?;
            // Network k's slice gets exactly what a lone network draws with its seed.
            let mut vars = vs.variables();
            for (i, &seed) in g.seeds.iter().enumerate() {
                let one = VarStore::new(device);
                super::with_seed(seed, || build(Builder { k: 1, draw: true }, &one.root(), g.model, input, classes))?;
                for (name, t) in one.variables() {
                    let v = vars.get_mut(&name).with_context(|| format!("variable {name} missing in the stack"))?;
                    tch::no_grad(|| slice(v, i, k).copy_(&t));
                }
            }
            net
        };
        let t = g.train;
        // TF32 switches are process-wide: set them for every trainer (one precision per group).
        let (tf32_matmul, tf32_conv) = match t.precision {
            Precision::Default => (false, true), // LibTorch's own defaults
            Precision::Fp32 => (false, false),
            Precision::Tf32 | Precision::Bf16 => (true, true),
        };
        super::shim::set_tf32(tf32_matmul, tf32_conv)?;
        // bf16 ConvNets run channels-last (NHWC strides): oneDNN's and cuDNN's bfloat16
        // convolutions are fastest so. Logical shapes, checkpoints and embeddings are unchanged.
        let mut channels_last = false;
        for (_, mut v) in vs.variables() {
            if t.precision == Precision::Bf16 && v.dim() == 4 {
                let cl = to_channels_last(&v);
                tch::no_grad(|| v.set_data(&cl));
                channels_last = true;
            }
        }
        let opt = Sgd::new(&vs, t.momentum, t.weight_decay);
        let graph = graph_state(t.graph, device)?;
        let shared = [same_inputs(data, false), same_inputs(data, true)];
        let augment = g.augment && d0.shape.len() == 3;
        // Train batches are put together on the device when every network trains on the same
        // inputs and there is something to gain: several networks gathering their batches there,
        // or a GPU. A lone CPU network assembles its batches on the host.
        let on_device = shared[0] && (k > 1 || device != Device::Cpu);
        let resident = (on_device && !augment).then(|| resident_inputs(d0, device));
        let images = if on_device && augment { DeviceImages::new(d0, device) } else { None };
        Ok(Trainer {
            vs,
            net,
            opt,
            device,
            train: t.clone(),
            seeds: g.seeds.clone(),
            augment,
            channels_last,
            shape: d0.shape.iter().map(|&s| s as i64).collect(),
            num_classes: classes,
            xbuf: Vec::new(),
            one: Vec::new(),
            resident,
            images,
            shared,
            graph,
            probe_forwards: 0,
            governor: None,
        })
    }

    /// Whether full-size training steps are replayed from a captured CUDA graph now.
    pub fn graph_captured(&self) -> bool {
        matches!(self.graph, GraphState::Ready(_))
    }

    pub fn networks(&self) -> usize {
        self.seeds.len()
    }

    /// Probe batches run through the networks since the trainer was made.
    pub fn probe_forwards(&self) -> usize {
        self.probe_forwards
    }

    pub fn layers(&self) -> &[EmbeddedLayer] {
        self.net.layers()
    }

    /// Whether the train inputs live on the device.
    pub fn inputs_resident(&self) -> bool {
        self.resident.is_some()
    }

    /// Whether augmented train batches are assembled on the device.
    pub fn augments_on_device(&self) -> bool {
        self.images.is_some()
    }

    /// The networks' forward pass at the run's precision: under bf16, matrix products and
    /// convolutions autocast to bfloat16 and the outputs come back as f32 (the loss, the
    /// probes' reductions and their copies to the host take f32).
    pub(super) fn forward(&self, x: &Tensor, shared: bool, train: bool, embeddings: bool) -> Forward {
        if self.train.precision != Precision::Bf16 {
            return self.net.forward(x, shared, train, embeddings);
        }
        let x = if self.channels_last && x.dim() == 4 { to_channels_last(x) } else { x.shallow_clone() };
        let out = {
            let _amp = super::shim::AutocastBf16::enter(self.device.is_cuda());
            self.net.forward(&x, shared, train, embeddings)
        };
        Forward {
            logits: out.logits.to_kind(Kind::Float),
            embeddings: out.embeddings.iter().map(|e| e.to_kind(Kind::Float)).collect(),
        }
    }

    /// The loss to differentiate (the sum of the networks' mean losses) and each network's mean
    /// loss over its batch, [K]; `logits` [B, K·C], `y` [B·K].
    pub(super) fn losses(&self, logits: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
        let k = self.networks() as i64;
        let c = self.num_classes as i64;
        if k == 1 {
            // The lone network's loss exactly as it was always computed.
            let l = match self.train.loss {
                Loss::CrossEntropy => logits.cross_entropy_for_logits(y),
                Loss::Mse => logits.mse_loss(&y.onehot(c).to_kind(Kind::Float), tch::Reduction::Mean),
            };
            let per = l.view([1]);
            return (l, per);
        }
        let b = logits.size()[0];
        let per =
            match self.train.loss {
                Loss::CrossEntropy => logits
                    .view([b * k, c])
                    .cross_entropy_loss::<Tensor>(y, None, tch::Reduction::None, -100, 0.0)
                    .view([b, k])
                    .mean_dim(0, false, Kind::Float),
                Loss::Mse => (logits.view([b, k, c]) - y.view([b, k]).onehot(c).to_kind(Kind::Float))
                    .square()
                    .mean_dim([0, 2].as_slice(), false, Kind::Float),
            };
        (per.sum(Kind::Float), per)
    }

    /// Rows each network's argmax gets right, [K].
    pub(super) fn correct(&self, logits: &Tensor, y: &Tensor) -> Tensor {
        let k = self.networks() as i64;
        let b = logits.size()[0];
        logits.view([b, k, -1]).argmax(-1, false).eq_tensor(&y.view([b, k])).sum_dim_intlist(0, false, Kind::Int64)
    }

    /// One whole epoch (1-based) of SGD for every network, each in its own seeded order.
    pub fn train_epoch(&mut self, data: &[&Dataset], epoch: usize) -> Vec<EpochStats> {
        match self.train_epoch_from(data, epoch, None, &mut |_| false) {
            EpochEnd::Done(stats) => stats,
            EpochEnd::Stopped(_) => unreachable!("nothing asked to stop"),
        }
    }

    /// One epoch from the start or from where `from` stopped. After every step but the last,
    /// `stop(step)` may end the epoch early: the cursor it returns continues it.
    pub fn train_epoch_from(
        &mut self,
        data: &[&Dataset],
        epoch: usize,
        from: Option<EpochCursor>,
        stop: &mut dyn FnMut(usize) -> bool,
    ) -> EpochEnd {
        let k = self.networks();
        let n = data[0].train.len();
        let bs = self.train.batch_size;
        let orders: Vec<Vec<usize>> = self
            .seeds
            .iter()
            .map(|&s| {
                let mut o: Vec<usize> = (0..n).collect();
                Rng::new(seed_for(s, 1, epoch)).shuffle(&mut o);
                o
            })
            .collect();
        // A trailing batch of one sample is dropped: BatchNorm cannot normalise it in training.
        let starts: Vec<usize> = (0..n).step_by(bs).filter(|&s| (s + bs).min(n) - s > 1).collect();
        let iters = starts.len();
        let (first, mut loss_sum, mut correct, mut seen, mut aug) = match from {
            Some(c) => {
                let aug: Vec<Option<Rng>> = c.augment.iter().map(|a| a.map(Rng::from_state)).collect();
                (c.step, c.loss_sum.to_device(self.device), c.correct.to_device(self.device), c.seen, aug)
            }
            None => (
                0,
                Tensor::zeros([k as i64], (Kind::Float, self.device)),
                Tensor::zeros([k as i64], (Kind::Int64, self.device)),
                0,
                self.seeds.iter().map(|&s| self.augment.then(|| Rng::new(seed_for(s, 2, epoch)))).collect(),
            ),
        };
        self.starting(Work::TrainStep);
        for (it, &s) in starts.iter().enumerate().skip(first) {
            let began = Instant::now();
            let e = (s + bs).min(n);
            let rows: Vec<&[usize]> = orders.iter().map(|o| &o[s..e]).collect();
            let (x, y) = if self.resident.is_none() && self.images.is_none() {
                self.batch(data, false, &rows, &mut aug)
            } else {
                // Row b of network k at b·K + k: the batch lands channel-stacked.
                let y: Vec<i64> =
                    (s..e).flat_map(|i| orders.iter().zip(data).map(move |(o, d)| d.train.labels[o[i]])).collect();
                let x = match (&self.images, &self.resident) {
                    (Some(images), _) => images.batch(&rows, &mut aug),
                    (None, xr) => {
                        let xr = xr.as_ref().expect("the host path is taken above");
                        let idx: Vec<i64> = (s..e).flat_map(|i| orders.iter().map(move |o| o[i] as i64)).collect();
                        let mut shape = vec![(e - s) as i64, k as i64 * self.shape[0]];
                        shape.extend(&self.shape[1..]);
                        xr.index_select(0, &Tensor::from_slice(&idx).to_device(self.device)).view(shape.as_slice())
                    }
                };
                (x, Tensor::from_slice(&y).to_device(self.device))
            };
            let (per, right) = self.step(&x, &y, lr_at(&self.train, epoch, it, iters), e - s == bs);
            tch::no_grad(|| {
                loss_sum += per * (e - s) as f64;
                correct += right;
            });
            seen += e - s;
            self.timed(Work::TrainStep, began);
            if it + 1 < iters && stop(it + 1) {
                let augment = aug.iter().map(|a| a.as_ref().map(Rng::state)).collect();
                return EpochEnd::Stopped(EpochCursor { step: it + 1, loss_sum, correct, seen, augment });
            }
        }
        let (l, c) = (host_f64(&loss_sum), host_f64(&correct));
        EpochEnd::Done((0..k).map(|i| EpochStats { loss: l[i] / seen as f64, acc: c[i] / seen as f64 }).collect())
    }

    /// One SGD step of every network on batch (x, y) at rate `lr`: each network's mean loss [K]
    /// and correct count [K]. A full-size batch goes through the captured graph once there is
    /// one (step_graph.rs); the last, smaller batch of an epoch always runs eagerly.
    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64, full: bool) -> (Tensor, Tensor) {
        if full {
            match std::mem::replace(&mut self.graph, GraphState::Off) {
                GraphState::Off => {}
                GraphState::WarmUp(0) => {
                    let (graph, out) = self.capture(x, y, lr);
                    match graph {
                        Ok(g) => self.graph = GraphState::Ready(g),
                        Err(e) if self.train.graph == Graph::On => panic!("train.graph = \"on\": {e:#}"),
                        Err(e) => step_graph::fall_back(&format!("{e:#}")),
                    }
                    return out;
                }
                GraphState::WarmUp(n) => self.graph = GraphState::WarmUp(n - 1),
                GraphState::Ready(mut g) => {
                    let out = g.step(x, y, lr);
                    self.graph = GraphState::Ready(g);
                    return out;
                }
            }
        }
        self.sgd_step(x, y, Lr::Value(lr))
    }

    /// Forward, loss, backward and the SGD step: run eagerly, or recorded by a capture (with the
    /// rate as a tensor), so that the graph replays the very step eager training does.
    fn sgd_step(&mut self, x: &Tensor, y: &Tensor, lr: Lr) -> (Tensor, Tensor) {
        let logits = self.forward(x, false, true, false).logits;
        let (loss, per) = self.losses(&logits, y);
        self.opt.zero_grad();
        loss.backward();
        self.opt.step(lr);
        tch::no_grad(|| (per.detach(), self.correct(&logits, y)))
    }

    /// Capture the step on batch (x, y) and replay it once, checked against the same step done
    /// eagerly from the same state. The step is done either way: the outputs returned are the
    /// graph's when it is kept, the eager step's (and its state) when it is not.
    fn capture(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> (Result<StepGraph>, (Tensor, Tensor)) {
        // Every tensor a step changes: variables (parameters, BatchNorm statistics), momentum.
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut state: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        state.extend(self.opt.state().into_iter().map(|(_, b)| b.shallow_clone()));
        let copy = |ts: &[Tensor]| -> Vec<Tensor> { ts.iter().map(|t| t.copy()).collect() };
        let before = copy(&state);
        let eager = self.sgd_step(x, y, Lr::Value(lr));
        let after = copy(&state);
        step_graph::restore(&state, &before);
        let (sx, sy) = (x.copy(), y.copy());
        let mut lr_t = Tensor::from_slice(&[lr as f32]).to_device(self.device);
        let mut tried = || -> Result<StepGraph> {
            // Gradients released, so that the captured backward allocates them from the graph's
            // own memory pool, at the addresses every replay reuses.
            self.opt.zero_grad();
            let mut graph = CudaGraph::begin().context("starting the capture")?;
            let captured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.sgd_step(&sx, &sy, Lr::Tensor(&mut lr_t))
            }));
            // The capture is ended whatever happened inside it.
            let ended = graph.end();
            let (per, correct) = match captured {
                Ok(out) => out,
                Err(p) => {
                    let what =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    bail!("a step could not be captured: {}", what.unwrap_or_else(|| "unknown error".into()))
                }
            };
            ended.context("ending the capture")?;
            graph.replay().context("replaying the captured step")?;
            let mut got = copy(&state);
            got.extend([per.copy(), correct.to_kind(Kind::Double)]);
            let mut want: Vec<Tensor> = after.iter().map(|t| t.shallow_clone()).collect();
            want.extend([eager.0.copy(), eager.1.to_kind(Kind::Double)]);
            let d = step_graph::max_relative_difference(&got, &want);
            if d > step_graph::AGREEMENT {
                bail!(
                    "the replayed step differs from the eager one by {d:.2e} (relative; at most {:.0e} allowed)",
                    step_graph::AGREEMENT
                );
            }
            Ok(StepGraph {
                graph,
                x: sx.shallow_clone(),
                y: sy.shallow_clone(),
                lr: lr_t.shallow_clone(),
                per,
                correct,
            })
        };
        match tried() {
            Ok(g) => {
                let out = (g.per.shallow_clone(), g.correct.shallow_clone());
                (Ok(g), out)
            }
            Err(e) => {
                // Training continues from the eager step, as if no capture had been tried.
                step_graph::restore(&state, &after);
                (Err(e), eager)
            }
        }
    }

    /// The cursor of a stopped epoch rebuilt from every network's checkpointed part (all must
    /// have stopped at the same step).
    pub fn cursor(&self, parts: &[CursorPart]) -> Result<EpochCursor> {
        let p0 = parts.first().context("no cursor parts")?;
        if parts.iter().any(|p| p.step != p0.step || p.seen != p0.seen) || parts.len() != self.networks() {
            bail!("the networks' checkpoints stopped at different steps");
        }
        let loss: Vec<f32> = parts.iter().map(|p| p.loss_sum).collect();
        let correct: Vec<i64> = parts.iter().map(|p| p.correct).collect();
        Ok(EpochCursor {
            step: p0.step,
            loss_sum: Tensor::from_slice(&loss).to_device(self.device),
            correct: Tensor::from_slice(&correct).to_device(self.device),
            seen: p0.seen,
            augment: parts.iter().map(|p| p.augment).collect(),
        })
    }
}

/// Where `train.graph` leaves a new trainer: "on" on a CPU, or in a build without graph support,
/// is an error; "auto" there trains eagerly (saying why once); on a CUDA device the steps run
/// on a side stream from now on, the capture after the warm-up steps.
fn graph_state(mode: Graph, device: Device) -> Result<GraphState> {
    let why = match (mode, device) {
        (Graph::Off, _) => return Ok(GraphState::Off),
        (_, Device::Cuda(_)) if !super::shim::cuda_graphs_built() => {
            "this build has no CUDA graph support (CUDA's headers were not found when it was built)".to_string()
        }
        (_, Device::Cuda(i)) => {
            super::shim::cuda_use_side_stream(i)?;
            return Ok(GraphState::WarmUp(step_graph::WARM_UP_STEPS));
        }
        (_, Device::Cpu) => "CUDA graphs need a CUDA device, and this run trains on the CPU".to_string(),
        (_, d) => format!("CUDA graphs need a CUDA device, and this run trains on {d:?}"),
    };
    match mode {
        Graph::On => bail!("train.graph = \"on\": {why}"),
        _ if device == Device::Cpu => Ok(GraphState::Off),
        _ => {
            step_graph::fall_back(&why);
            Ok(GraphState::Off)
        }
    }
}

/// Network k's slice of a variable stacked for `n` networks along dimension 0 (a view).
pub(super) fn slice(t: &Tensor, k: usize, n: usize) -> Tensor {
    let rows = t.size()[0] / n as i64;
    t.narrow(0, k as i64 * rows, rows)
}

/// The same 4-D tensor with channels-last strides (NHWC in memory, NCHW logically), as
/// PyTorch's `memory_format=torch.channels_last` gives it.
pub(super) fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
