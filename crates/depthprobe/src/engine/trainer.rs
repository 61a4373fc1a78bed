//! The trainer of K ≥ 1 networks of one architecture as one model (a single run is K = 1):
//! SGD epochs, the probe of every network through the measures' two-pass driver (reduced on the
//! host or on the device), and per-network checkpoints.
//!
//! Network k starts from the parameters a lone network draws with its seed and sees its own data
//! order, augmentation and labels, so it follows the trajectory it follows alone, up to the
//! rounding of the batched kernels (tests/batched.rs). The loss is the sum of the K networks'
//! mean losses, so each gets exactly its own gradient; one fused SGD step updates all of them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use depthprobe_config::{Graph, Loss, ModelConfig, Precision, ProbeConfig, Reduction, TrainConfig};
use depthprobe_measures::{
    drive, HostBatch, NetworkRows, Pass, Probe, ProbeError, ProbeResult, ProbeSpec, Split as ProbeSplit,
};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::device_data::DeviceImages;
use super::device_reducer::{DeviceBatch, DeviceReducer};
use super::layers::Builder;
use super::network::{build, EmbeddedLayer, Forward, Network};
use super::sgd::{Lr, Sgd};
use super::shim::CudaGraph;
use super::step_graph::{self, GraphState, StepGraph};
use super::{copy_f32, host_f32, host_f64, resolve_device};
use crate::data::Dataset;
use crate::rng::Rng;
use crate::schedule::lr_at;

pub struct EpochStats {
    pub loss: f64,
    pub acc: f64,
}

/// An epoch stopped after `step` steps: every network's running loss sum [K] and correct count
/// [K] on the device, the samples each has seen, and each network's augmentation generator. A
/// checkpoint holds it, so training continues at the next step exactly as if it had not stopped.
pub struct EpochCursor {
    pub step: usize,
    loss_sum: Tensor,
    correct: Tensor,
    seen: usize,
    augment: Vec<Option<u64>>,
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

/// One network's probe: the layer measures and the network's own loss and accuracy (eval mode).
pub struct ProbeOutcome {
    pub result: ProbeResult,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
}

/// Where the probe sends each batch: every layer's embeddings [B, K·D_i], the logits [B, K·C]
/// and each network's labels.
type BatchSink<'a> = dyn FnMut(&[Tensor], &Tensor, &[Vec<u32>]) -> Result<(), ProbeError> + 'a;

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
    vs: VarStore,
    net: Box<dyn Network>,
    opt: Sgd,
    device: Device,
    train: TrainConfig,
    seeds: Vec<u64>,
    augment: bool,
    /// Inputs and convolution weights in channels-last strides (bf16 ConvNets).
    channels_last: bool,
    shape: Vec<i64>,
    num_classes: usize,
    xbuf: Vec<f32>,
    one: Vec<f32>,
    /// The shared train inputs [N, …] on the device, for unaugmented batches (see `new`).
    resident: Option<Tensor>,
    /// The shared train images on the device, for augmented batches; bit for bit the host's
    /// (engine/device_data.rs), so where batches are made changes no number.
    images: Option<DeviceImages>,
    /// Whether all networks see the same inputs in the train / test split: the probe then sends
    /// one copy of each batch through the first layer against all K weights.
    shared: [bool; 2],
    /// Full-size steps as a replayed CUDA graph (step_graph.rs), or not.
    graph: GraphState,
    /// Probe batches run through the networks so far (pass 2 on train replays pass 1's when
    /// they were kept: `probe.cache_mib`).
    probe_forwards: usize,
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

    /// Rows `rows[k]` of each network's split as one channel-stacked batch [B, K·C, …] on the
    /// device, and the labels [B·K] (row b, network k at b·K + k).
    fn batch(&mut self, data: &[&Dataset], test: bool, rows: &[&[usize]], aug: &mut [Option<Rng>]) -> (Tensor, Tensor) {
        let k = rows.len();
        let b = rows[0].len();
        let n: usize = self.shape.iter().product::<i64>() as usize;
        let mut y = vec![0i64; b * k];
        if k == 1 {
            let split = data[0].split(test);
            data[0].fill_batch(split, rows[0], aug[0].as_mut(), &mut self.xbuf);
            for (o, &i) in y.iter_mut().zip(rows[0]) {
                *o = split.labels[i];
            }
        } else {
            self.xbuf.resize(b * k * n, 0.0);
            for (j, (ds, r)) in data.iter().zip(rows).enumerate() {
                let split = ds.split(test);
                ds.fill_batch(split, r, aug[j].as_mut(), &mut self.one);
                for (i, &row) in r.iter().enumerate() {
                    self.xbuf[(i * k + j) * n..(i * k + j + 1) * n].copy_from_slice(&self.one[i * n..(i + 1) * n]);
                    y[i * k + j] = split.labels[row];
                }
            }
        }
        let mut shape = vec![b as i64, k as i64 * self.shape[0]];
        shape.extend(&self.shape[1..]);
        let x = Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device);
        (x, Tensor::from_slice(&y).to_device(self.device))
    }

    /// Rows start..start+n of a split all networks share: [n, C, …] on the device (a slice of the
    /// resident train inputs when they are there).
    fn shared_batch(&mut self, ds: &Dataset, test: bool, start: usize, n: usize) -> Tensor {
        if let (Some(xr), false) = (&self.resident, test) {
            return xr.narrow(0, start as i64, n as i64);
        }
        let rows: Vec<usize> = (start..start + n).collect();
        ds.fill_batch(ds.split(test), &rows, None, &mut self.xbuf);
        let mut shape = vec![n as i64];
        shape.extend(&self.shape);
        Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device)
    }

    /// The networks' forward pass at the run's precision: under bf16, matrix products and
    /// convolutions autocast to bfloat16 and the outputs come back as f32 (the loss, the
    /// probes' reductions and their copies to the host take f32).
    fn forward(&self, x: &Tensor, shared: bool, train: bool, embeddings: bool) -> Forward {
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
    fn losses(&self, logits: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
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
    fn correct(&self, logits: &Tensor, y: &Tensor) -> Tensor {
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
        for (it, &s) in starts.iter().enumerate().skip(first) {
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

    /// Every network's full probe: the measures' two-pass driver over the train and test
    /// splits, one batched forward per batch. `probe.reduction` picks where embeddings are
    /// reduced: on a GPU all K networks together there (`device_reducer.rs`), on the CPU by the
    /// host engine, networks in parallel. A network whose probe fails (a diverged one:
    /// non-finite embeddings) gets its error; the others are unaffected.
    pub fn probe(&mut self, data: &[&Dataset], cfg: &ProbeConfig) -> Vec<Result<ProbeOutcome>> {
        let use_device = match cfg.reduction {
            Reduction::Host => false,
            Reduction::Device => true,
            Reduction::Auto => self.device != Device::Cpu,
        };
        match self.probe_with(data, cfg, use_device) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("{e:#}");
                (0..self.networks()).map(|_| Err(anyhow::anyhow!("{msg}"))).collect()
            }
        }
    }

    pub fn probe_with(
        &mut self,
        data: &[&Dataset],
        cfg: &ProbeConfig,
        on_device: bool,
    ) -> Result<Vec<Result<ProbeOutcome>>> {
        let k = self.networks();
        let dims: Vec<usize> = self.net.layers().iter().map(|l| l.dim).collect();
        // The stacked [K·C, D] weight on the host in one copy; network i's is rows i·C..(i+1)·C.
        let classifier = self.net.nc3_classifier().map(host_f32);
        let c = self.num_classes;
        let probes: Vec<Result<Probe, ProbeError>> = (0..k)
            .map(|i| {
                let mut spec = ProbeSpec::new(c, dims.clone());
                spec.eps = cfg.eps.clone();
                spec.rank_max_dim = cfg.rank_max_dim;
                spec.linear_max_dim = cfg.linear_max_dim;
                spec.linear_ridge = cfg.linear_ridge;
                let mut p = Probe::new(spec)?;
                if let Some(w) = &classifier {
                    let per = w.len() / k;
                    p.set_classifier(&w[i * per..(i + 1) * per])?;
                }
                Ok(p)
            })
            .collect();
        let pb = cfg.batch_size;
        let mut state = StreamState { metrics: Default::default(), cache: ProbeCache::new(cfg.cache_mib) };
        let results = if on_device {
            let mut reducer = DeviceReducer::new(self.device, k);
            drive(probes, &mut reducer, |pass, split, sink| {
                self.stream(data, pass, split, pb, &mut state, &mut |embs, logits, labels| {
                    let e: Vec<Tensor> = embs.iter().map(|t| per_network(t, k)).collect();
                    sink(DeviceBatch { embeddings: &e, logits: &per_network(logits, k), labels })
                })
            })?
        } else {
            let mut reducer = depthprobe_measures::HostReducer::new(k);
            let mut host: Vec<Vec<Vec<f32>>> = vec![vec![Vec::new(); dims.len()]; k];
            let mut host_logits: Vec<Vec<f32>> = vec![Vec::new(); k];
            drive(probes, &mut reducer, |pass, split, sink| {
                self.stream(data, pass, split, pb, &mut state, &mut |embs, logits, labels| {
                    let nb = logits.size()[0];
                    for j in 0..k {
                        for (b, e) in host[j].iter_mut().zip(embs) {
                            copy_f32(&network_slice(e, nb, j, k), b);
                        }
                        copy_f32(&network_slice(logits, nb, j, k), &mut host_logits[j]);
                    }
                    let rows: Vec<NetworkRows> = (0..k)
                        .map(|j| NetworkRows {
                            layers: host[j].iter().map(|v| v.as_slice()).collect(),
                            logits: Some(&host_logits[j]),
                            labels: &labels[j],
                        })
                        .collect();
                    sink(HostBatch::Rows(&rows))
                })
            })?
        };
        let [(train_loss, train_acc), (test_loss, test_acc)] = state.metrics;
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let result = r?;
                Ok(ProbeOutcome {
                    result,
                    train_loss: train_loss[i],
                    train_acc: train_acc[i],
                    test_loss: test_loss[i],
                    test_acc: test_acc[i],
                })
            })
            .collect())
    }

    /// Stream one split through the networks in eval mode, a probe batch at a time; each batch's
    /// embeddings, logits and every network's labels go to `sink`. In the pass where a split is
    /// seen first (train in pass 1, test in pass 2) the networks' loss and accuracy accumulate on
    /// the device into `state.metrics` (one sync per split). Pass 1's train batches go into
    /// `state.cache` when they fit, and pass 2 on train then replays them instead of running the
    /// networks.
    fn stream(
        &mut self,
        data: &[&Dataset],
        pass: Pass,
        split: ProbeSplit,
        pb: usize,
        state: &mut StreamState,
        sink: &mut BatchSink,
    ) -> Result<()> {
        let StreamState { metrics, cache } = state;
        if (pass, split) == (Pass::Decisions, ProbeSplit::Train) {
            // Taken either way: a cache that pass 1 did not finish is dropped here.
            if let ProbeCache::Ready(kept) = std::mem::replace(cache, ProbeCache::Off) {
                for (start, len, labels) in &kept.batches {
                    let e: Vec<Tensor> = kept.embeddings.iter().map(|t| t.narrow(0, *start, *len)).collect();
                    sink(&e, &kept.logits.narrow(0, *start, *len), labels)?;
                }
                return Ok(());
            }
        }
        let fill = (pass, split) == (Pass::Moments, ProbeSplit::Train);
        let k = self.networks();
        let test = split == ProbeSplit::Test;
        let measure = matches!((pass, split), (Pass::Moments, ProbeSplit::Train) | (Pass::Decisions, ProbeSplit::Test));
        let n = data[0].split(test).len();
        let mut loss_sum = Tensor::zeros([k as i64], (Kind::Double, self.device));
        let mut correct = Tensor::zeros([k as i64], (Kind::Int64, self.device));
        let mut start = 0;
        while start < n {
            let rows: Vec<usize> = (start..(start + pb).min(n)).collect();
            let labels: Vec<Vec<u32>> =
                data.iter().map(|d| rows.iter().map(|&r| d.split(test).labels[r] as u32).collect()).collect();
            let shared = self.shared[test as usize];
            let (x, y) = if shared {
                let y: Vec<i64> = (0..rows.len()).flat_map(|i| labels.iter().map(move |l| l[i] as i64)).collect();
                (self.shared_batch(data[0], test, start, rows.len()), Tensor::from_slice(&y).to_device(self.device))
            } else {
                let r: Vec<&[usize]> = vec![&rows[..]; k];
                self.batch(data, test, &r, &mut vec![None; k])
            };
            let out = tch::no_grad(|| self.forward(&x, shared, false, true));
            self.probe_forwards += 1;
            if measure {
                tch::no_grad(|| {
                    loss_sum += self.losses(&out.logits, &y).1.to_kind(Kind::Double) * rows.len() as f64;
                    correct += self.correct(&out.logits, &y);
                });
            }
            sink(&out.embeddings, &out.logits, &labels)?;
            if fill {
                cache.keep(&out.embeddings, &out.logits, labels, n);
            }
            start += rows.len();
        }
        if fill {
            cache.finish();
        }
        if measure {
            let (l, c) = (host_f64(&loss_sum), host_f64(&correct));
            metrics[test as usize] =
                (l.iter().map(|v| v / n as f64).collect(), c.iter().map(|v| v / n as f64).collect());
        }
        Ok(())
    }

    /// Every network's logits [n, C] and embeddings ([n, D_i] per layer) on rows `rows` of its
    /// split, in eval mode, copied to the host: what a checkpoint must reproduce elsewhere.
    pub fn eval_outputs(&mut self, data: &[&Dataset], test: bool, rows: &[usize]) -> Vec<(Vec<f32>, Vec<Vec<f32>>)> {
        let k = self.networks();
        let r: Vec<&[usize]> = vec![rows; k];
        let (x, _) = self.batch(data, test, &r, &mut vec![None; k]);
        let out = tch::no_grad(|| self.forward(&x, false, false, true));
        let n = rows.len() as i64;
        (0..k)
            .map(|j| {
                let logits = host_f32(&network_slice(&out.logits, n, j, k));
                let embs = out.embeddings.iter().map(|e| host_f32(&network_slice(e, n, j, k))).collect();
                (logits, embs)
            })
            .collect()
    }

    /// Every network's predicted class (argmax of its logits, eval mode) for each sample of its
    /// test split, `pb` samples at a time.
    pub fn predict(&mut self, data: &[&Dataset], pb: usize) -> Vec<Vec<u32>> {
        let k = self.networks();
        let n = data[0].test.len();
        let mut out = vec![Vec::with_capacity(n); k];
        let mut start = 0;
        while start < n {
            let rows: Vec<usize> = (start..(start + pb.max(1)).min(n)).collect();
            let r: Vec<&[usize]> = vec![&rows[..]; k];
            let (x, _) = self.batch(data, true, &r, &mut vec![None; k]);
            let logits = tch::no_grad(|| self.forward(&x, false, false, false).logits);
            // Every network's argmax at once and one copy to the host: [nb, K], row-major.
            let nb = rows.len() as i64;
            let pred = logits.reshape([nb, k as i64, -1]).argmax(2, false).to_kind(Kind::Int64).view([-1]);
            let v: Vec<i64> = Vec::<i64>::try_from(pred.to_device(Device::Cpu)).expect("predictions to the host");
            for (j, o) in out.iter_mut().enumerate() {
                o.extend(v.iter().skip(j).step_by(k).map(|&c| c as u32));
            }
            start += rows.len();
        }
        out
    }

    /// Network k's variables under their PyTorch names and shapes.
    pub fn network_variables(&self, k: usize) -> HashMap<String, Tensor> {
        let n = self.networks();
        self.vs.variables().into_iter().map(|(name, t)| (name, slice(&t, k, n))).collect()
    }

    /// Write network k's checkpoint between epochs ([`HostState::save`]).
    pub fn save(&self, k: usize, path: &Path) -> Result<()> {
        self.host_state(None).save(k, path)
    }

    /// What every network's checkpoint holds, on the host: one device-to-host copy per stacked
    /// tensor whatever K is, where saving network by network would copy each network's slice of
    /// each tensor on its own (about 3,000 small synchronous copies for 32 MLP-10-100 networks
    /// on a GPU). It borrows the trainer, so no step can change the variables while it lives: on
    /// a CPU it shares their storage.
    pub fn host_state(&self, cursor: Option<&EpochCursor>) -> HostState<'_> {
        let host = |t: &Tensor| t.to_device(Device::Cpu);
        let mut stacked: Vec<(String, Tensor)> =
            self.vs.variables().into_iter().map(|(name, t)| (format!("model.{name}"), host(&t))).collect();
        stacked.extend(self.opt.state().into_iter().map(|(name, b)| (format!("momentum.{name}"), host(b))));
        HostState {
            networks: self.networks(),
            stacked,
            cursor: cursor.map(|c| HostCursor {
                step: c.step,
                seen: c.seen,
                loss_sum: host(&c.loss_sum),
                correct: host(&c.correct),
                augment: c.augment.clone(),
            }),
            _trainer: std::marker::PhantomData,
        }
    }

    /// Restore network k from what `save` wrote; its part of the epoch cursor when the
    /// checkpoint is inside an epoch.
    pub fn load(&mut self, k: usize, path: &Path) -> Result<Option<CursorPart>> {
        let n = self.networks();
        let mut saved: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("{}: reading checkpoint", path.display()))?
            .into_iter()
            .collect();
        let mut put = |key: String, var: &Tensor| -> Result<()> {
            let t = saved.remove(&key).with_context(|| format!("{}: no tensor '{key}'", path.display()))?;
            let mut dst = slice(var, k, n);
            if t.size() != dst.size() {
                bail!("{}: '{key}' has shape {:?}, the model {:?}", path.display(), t.size(), dst.size());
            }
            tch::no_grad(|| dst.copy_(&t));
            Ok(())
        };
        for (name, var) in self.vs.variables() {
            put(format!("model.{name}"), &var)?;
        }
        for (name, buf) in self.opt.state_mut() {
            put(format!("momentum.{name}"), buf)?;
        }
        let Some(step) = saved.remove("progress.step") else { return Ok(None) };
        let mut int = |key: &str| -> Result<i64> {
            let t = saved.remove(key).with_context(|| format!("{}: no tensor '{key}'", path.display()))?;
            Ok(t.int64_value(&[0]))
        };
        let (seen, correct) = (int("progress.seen")?, int("progress.correct")?);
        let augment = saved.remove("progress.augment_rng").map(|t| t.int64_value(&[0]) as u64);
        let loss = saved
            .remove("progress.loss_sum")
            .with_context(|| format!("{}: no tensor 'progress.loss_sum'", path.display()))?;
        Ok(Some(CursorPart {
            step: step.int64_value(&[0]) as usize,
            loss_sum: loss.double_value(&[0]) as f32, // saved from f32: exact
            correct,
            seen: seen as usize,
            augment,
        }))
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

/// What one probe's passes carry from split to split.
struct StreamState {
    /// The networks' own loss and accuracy: on train from pass 1, on test from pass 2.
    metrics: [(Vec<f64>, Vec<f64>); 2],
    cache: ProbeCache,
}

/// Pass 1's train split as the networks saw it, kept where they run for pass 2
/// (`probe.cache_mib`; docs/method.md, "How a probe runs"): every layer's embeddings and the
/// logits in one tensor each, rows in split order, so memory is what the rows take.
enum ProbeCache {
    /// Nothing kept: off, over the budget, or taken by pass 2.
    Off,
    /// Pass 1 is filling it (None before its first batch); `budget` bytes at most.
    Filling { budget: u64, kept: Option<Kept> },
    /// Pass 1 streamed the whole train split into it.
    Ready(Kept),
}

struct Kept {
    /// [n, K·D_i] per layer and [n, K·C], as the networks return them.
    embeddings: Vec<Tensor>,
    logits: Tensor,
    /// Each batch's first row, row count and every network's labels, in order.
    batches: Vec<(i64, i64, Vec<Vec<u32>>)>,
    rows: i64,
}

impl ProbeCache {
    fn new(mib: u64) -> ProbeCache {
        match mib {
            0 => ProbeCache::Off,
            _ => ProbeCache::Filling { budget: mib.saturating_mul(1 << 20), kept: None },
        }
    }

    /// Copy one batch of a split of `n` rows in. The first batch decides: if the split would
    /// take more than the budget, nothing is kept and no memory is spent on it.
    fn keep(&mut self, embeddings: &[Tensor], logits: &Tensor, labels: Vec<Vec<u32>>, n: usize) {
        let ProbeCache::Filling { budget, kept } = self else { return };
        let b = logits.size()[0];
        if kept.is_none() {
            let row_bytes = |t: &Tensor| (t.numel() as u64 / b as u64) * t.kind().elt_size_in_bytes() as u64;
            let bytes = (embeddings.iter().map(row_bytes).sum::<u64>() + row_bytes(logits)) * n as u64;
            if bytes > *budget {
                *self = ProbeCache::Off;
                return;
            }
            let like = |t: &Tensor| Tensor::empty([n as i64, t.numel() as i64 / b], (t.kind(), t.device()));
            *kept = Some(Kept {
                embeddings: embeddings.iter().map(like).collect(),
                logits: like(logits),
                batches: Vec::new(),
                rows: 0,
            });
        }
        let k = kept.as_mut().expect("made above");
        tch::no_grad(|| {
            for (dst, e) in k.embeddings.iter().zip(embeddings) {
                dst.narrow(0, k.rows, b).copy_(&e.reshape([b, -1]));
            }
            k.logits.narrow(0, k.rows, b).copy_(logits);
        });
        k.batches.push((k.rows, b, labels));
        k.rows += b;
    }

    /// Pass 1 ended without an error: what it kept is ready for pass 2.
    fn finish(&mut self) {
        if let ProbeCache::Filling { kept: Some(k), .. } = std::mem::replace(self, ProbeCache::Off) {
            *self = ProbeCache::Ready(k);
        }
    }
}

/// Every network's checkpoint contents on the host ([`Trainer::host_state`]): the stacked
/// variables and momentum buffers, and a stopped epoch's counters.
pub struct HostState<'a> {
    networks: usize,
    /// `model.<name>` and `momentum.<name>`, each stacked for all networks along dimension 0.
    stacked: Vec<(String, Tensor)>,
    cursor: Option<HostCursor>,
    _trainer: std::marker::PhantomData<&'a Trainer>,
}

/// An [`EpochCursor`] with its counters on the host.
struct HostCursor {
    step: usize,
    seen: usize,
    loss_sum: Tensor,
    correct: Tensor,
    augment: Vec<Option<u64>>,
}

impl HostState<'_> {
    /// Write network k's variables (`model.<name>`, parameters and BatchNorm statistics) and
    /// momentum buffers (`momentum.<name>`), and its part of the cursor if there is one, to a
    /// safetensors file; names and shapes are those of the PyTorch module (docs/checkpoints.md),
    /// whatever K is.
    pub fn save(&self, k: usize, path: &Path) -> Result<()> {
        let n = self.networks;
        let mut named: Vec<(String, Tensor)> =
            self.stacked.iter().map(|(name, t)| (name.clone(), slice(t, k, n).contiguous())).collect();
        // Inside an epoch: where it stopped (docs/checkpoints.md, "Inside an epoch").
        if let Some(c) = &self.cursor {
            let one = |v: i64| Tensor::from_slice(&[v]);
            named.push(("progress.step".into(), one(c.step as i64)));
            named.push(("progress.seen".into(), one(c.seen as i64)));
            named.push(("progress.loss_sum".into(), c.loss_sum.narrow(0, k as i64, 1)));
            named.push(("progress.correct".into(), c.correct.narrow(0, k as i64, 1)));
            if let Some(a) = c.augment[k] {
                named.push(("progress.augment_rng".into(), one(a as i64)));
            }
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Tensor::write_safetensors(&named, path).with_context(|| format!("{}: writing checkpoint", path.display()))
    }
}

/// Network k's slice of a variable stacked for `n` networks along dimension 0 (a view).
fn slice(t: &Tensor, k: usize, n: usize) -> Tensor {
    let rows = t.size()[0] / n as i64;
    t.narrow(0, k as i64 * rows, rows)
}

/// A channel-stacked [B, K·D] batch as [K, B, D] (a view).
fn per_network(t: &Tensor, k: usize) -> Tensor {
    let b = t.size()[0];
    t.reshape([b, k as i64, -1]).transpose(0, 1)
}

/// Network k's [B, D] of a channel-stacked [B, K·D] batch.
fn network_slice(t: &Tensor, b: i64, k: usize, n: usize) -> Tensor {
    if n == 1 {
        return t.shallow_clone();
    }
    t.reshape([b, n as i64, -1]).select(1, k as i64)
}

/// The same 4-D tensor with channels-last strides (NHWC in memory, NCHW logically), as
/// PyTorch's `memory_format=torch.channels_last` gives it.
fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether every data set holds the same inputs in the split (seeds and corruption draws
/// change only labels and order).
fn same_inputs(data: &[&Dataset], test: bool) -> bool {
    let d0 = data[0];
    data.iter().all(|d| d.shape == d0.shape && d.split(test).storage == d0.split(test).storage)
}

/// The shared train inputs [N, …] on the device, normalised, for unaugmented batches.
fn resident_inputs(d0: &Dataset, device: Device) -> Tensor {
    let all: Vec<usize> = (0..d0.train.len()).collect();
    let mut x0 = Vec::new();
    d0.fill_batch(&d0.train, &all, None, &mut x0);
    let mut shape = vec![all.len() as i64];
    shape.extend(d0.shape.iter().map(|&s| s as i64));
    Tensor::from_slice(&x0).view(shape.as_slice()).to_device(device)
}
