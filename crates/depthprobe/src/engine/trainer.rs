//! SGD training and the in-training probe. Batches are built from the data set on the host and
//! moved to the device; per-epoch statistics stay on the device until the epoch ends (one sync).

use anyhow::{Context, Result};
use depthprobe_measures::{LayerProbe, ProbeResult, ProbeSpec, Split as ProbeSplit};
use tch::nn;
use tch::{Device, Kind, Reduction, Tensor};

use super::device_probe::DeviceProbe;
use super::model::Net;
use super::sgd::Sgd;
use super::{augments, copy_f32, host_f32};
use crate::config::{Config, EmbeddingPoint, Loss};
use crate::data::{Dataset, Split};
use crate::rng::Rng;
use crate::schedule::lr_at;

pub struct EpochStats {
    pub loss: f64,
    pub acc: f64,
}

pub struct ProbeOutcome {
    pub result: ProbeResult,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
}

pub struct Trainer {
    vs: nn::VarStore,
    net: Net,
    opt: Sgd,
    device: Device,
    cfg: Config,
    shape: Vec<i64>,
    num_classes: usize,
    xbuf: Vec<f32>,
}

pub(crate) fn seed_for(base: u64, salt: u64, epoch: usize) -> u64 {
    base.wrapping_mul(0x9E37_79B9).wrapping_add(salt.wrapping_mul(1_000_003)).wrapping_add(epoch as u64)
}

impl Trainer {
    pub fn new(cfg: &Config, ds: &Dataset, device: Device) -> Result<Trainer> {
        let vs = nn::VarStore::new(device);
        // The parameters train.seed draws, whatever other threads do with the generator.
        let net = super::with_seed(cfg.train.seed, || Net::new(&vs.root(), &cfg.model, &ds.shape, ds.num_classes))?;
        let t = &cfg.train;
        let opt = Sgd::new(&vs, t.momentum, t.weight_decay);
        Ok(Trainer {
            vs,
            net,
            opt,
            device,
            cfg: cfg.clone(),
            shape: ds.shape.iter().map(|&s| s as i64).collect(),
            num_classes: ds.num_classes,
            xbuf: Vec::new(),
        })
    }

    /// Model variables by name (parameters and BatchNorm statistics).
    pub fn variables(&self) -> std::collections::HashMap<String, Tensor> {
        self.vs.variables()
    }

    pub fn dims(&self) -> &[usize] {
        self.net.dims()
    }

    /// Write model variables (parameters and BatchNorm statistics, under `model.<name>`) and
    /// momentum buffers (`momentum.<name>`) to a safetensors file. Model names follow the
    /// PyTorch module layout (docs/checkpoints.md).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let vars = self.vs.variables();
        let mut named: Vec<(String, Tensor)> =
            vars.iter().map(|(n, t)| (format!("model.{n}"), t.to_device(Device::Cpu))).collect();
        for (n, b) in self.opt.state() {
            named.push((format!("momentum.{n}"), b.to_device(Device::Cpu)));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Tensor::write_safetensors(&named, path).with_context(|| format!("{}: writing checkpoint", path.display()))
    }

    /// Restore what `save` wrote.
    pub fn load(&mut self, path: &std::path::Path) -> Result<()> {
        let mut saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("{}: reading checkpoint", path.display()))?
            .into_iter()
            .collect();
        for (name, mut var) in self.vs.variables() {
            let t = saved
                .remove(&format!("model.{name}"))
                .with_context(|| format!("{}: no tensor 'model.{name}'", path.display()))?;
            if t.size() != var.size() {
                anyhow::bail!(
                    "{}: 'model.{name}' has shape {:?}, the model {:?}",
                    path.display(),
                    t.size(),
                    var.size()
                );
            }
            tch::no_grad(|| var.copy_(&t));
        }
        self.opt.load_state(&mut |n| saved.remove(&format!("momentum.{n}"))).with_context(|| path.display().to_string())
    }

    fn batch(&mut self, ds: &Dataset, split: &Split, idx: &[usize], aug: Option<&mut Rng>) -> (Tensor, Tensor) {
        ds.fill_batch(split, idx, aug, &mut self.xbuf);
        let mut shape = vec![idx.len() as i64];
        shape.extend(&self.shape);
        let x = Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device);
        let y: Vec<i64> = idx.iter().map(|&i| split.labels[i]).collect();
        (x, Tensor::from_slice(&y).to_device(self.device))
    }

    fn loss(&self, logits: &Tensor, y: &Tensor) -> Tensor {
        match self.cfg.train.loss {
            Loss::CrossEntropy => logits.cross_entropy_for_logits(y),
            Loss::Mse => logits.mse_loss(&y.onehot(self.num_classes as i64).to_kind(Kind::Float), Reduction::Mean),
        }
    }

    /// One epoch (1-based) of SGD over the train split in a seeded random order.
    pub fn train_epoch(&mut self, ds: &Dataset, epoch: usize) -> EpochStats {
        let n = ds.train.len();
        let bs = self.cfg.train.batch_size;
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(seed_for(self.cfg.train.seed, 1, epoch)).shuffle(&mut order);
        let mut aug = augments(&self.cfg, ds).then(|| Rng::new(seed_for(self.cfg.train.seed, 2, epoch)));
        // A trailing batch of one sample is dropped: BatchNorm cannot normalise it in training.
        let batches: Vec<&[usize]> = order.chunks(bs).filter(|c| c.len() > 1).collect();
        let iters = batches.len();
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut correct = Tensor::zeros([], (Kind::Int64, self.device));
        let mut seen = 0usize;
        for (it, idx) in batches.into_iter().enumerate() {
            let (x, y) = self.batch(ds, &ds.train, idx, aug.as_mut());
            let (logits, _) = self.net.forward(&x, true, false);
            let loss = self.loss(&logits, &y);
            self.opt.zero_grad();
            loss.backward();
            self.opt.step(lr_at(&self.cfg.train, epoch, it, iters));
            tch::no_grad(|| {
                loss_sum += loss.detach() * idx.len() as f64;
                correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            });
            seen += idx.len();
        }
        EpochStats {
            loss: loss_sum.double_value(&[]) / seen as f64,
            acc: correct.int64_value(&[]) as f64 / seen as f64,
        }
    }

    /// Stream one split through the network in eval mode; each batch's embeddings and logits
    /// (still on the device) and its labels go to `sink`. Returns the split's loss and accuracy;
    /// both accumulate on the device (one sync per split).
    fn stream(
        &mut self,
        ds: &Dataset,
        split: &Split,
        mut sink: impl FnMut(&[Tensor], &Tensor, &[u32]) -> Result<()>,
    ) -> Result<(f64, f64)> {
        let pb = self.cfg.probe.batch_size;
        let n = split.len();
        let mut loss_sum = Tensor::zeros([], (Kind::Double, self.device));
        let mut correct = Tensor::zeros([], (Kind::Int64, self.device));
        let mut start = 0;
        while start < n {
            let idx: Vec<usize> = (start..(start + pb).min(n)).collect();
            let (x, y) = self.batch(ds, split, &idx, None);
            let (logits, embs) = tch::no_grad(|| self.net.forward(&x, false, true));
            tch::no_grad(|| {
                loss_sum += self.loss(&logits, &y).to_kind(Kind::Double) * idx.len() as f64;
                correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            });
            let labels: Vec<u32> = idx.iter().map(|&i| split.labels[i] as u32).collect();
            sink(&embs, &logits, &labels)?;
            start += idx.len();
        }
        Ok((loss_sum.double_value(&[]) / n as f64, correct.int64_value(&[]) as f64 / n as f64))
    }

    /// The full probe: train split twice (moments, then NCC decisions), test split once. On a
    /// GPU the reductions run there (`ProbeReduction::Device`); on the CPU the host engine is faster.
    pub fn probe(&mut self, ds: &Dataset) -> Result<ProbeOutcome> {
        self.probe_with(ds, ProbeReduction::configured(&self.cfg, self.device))
    }

    pub fn probe_with(&mut self, ds: &Dataset, reduction: ProbeReduction) -> Result<ProbeOutcome> {
        let mut probe = new_probe(&self.cfg, ds.num_classes, self.net.dims(), self.net.head_weight())?;
        let ((train_loss, train_acc), (test_loss, test_acc)) = match reduction {
            ProbeReduction::Host => self.probe_on_host(ds, &mut probe)?,
            ProbeReduction::Device => self.probe_on_device(ds, &mut probe)?,
        };
        Ok(ProbeOutcome { result: probe.finish()?, train_loss, train_acc, test_loss, test_acc })
    }

    /// Every batch's embeddings copied to the host and streamed through the probe.
    fn probe_on_host(&mut self, ds: &Dataset, probe: &mut LayerProbe) -> Result<((f64, f64), (f64, f64))> {
        let mut bufs: Vec<Vec<f32>> = self.net.dims().iter().map(|_| Vec::new()).collect();
        let mut lbuf = Vec::new();
        let train = self
            .stream(ds, &ds.train, |e, _, y| Ok(probe.update_all(ProbeSplit::Train, &to_host(e, &mut bufs), y)?))?;
        probe.next_pass()?;
        let mut decide = |s: ProbeSplit, e: &[Tensor], lg: &Tensor, y: &[u32]| -> Result<()> {
            let refs = to_host(e, &mut bufs);
            copy_f32(lg, &mut lbuf);
            probe.update_all(s, &refs, y)?;
            Ok(probe.update_agreement(s, refs.last().unwrap(), &lbuf, y)?)
        };
        self.stream(ds, &ds.train, |e, lg, y| decide(ProbeSplit::Train, e, lg, y))?;
        let test = self.stream(ds, &ds.test, |e, lg, y| decide(ProbeSplit::Test, e, lg, y))?;
        Ok((train, test))
    }

    /// Reductions on the device; only per-class statistics come back (engine/device_probe.rs).
    fn probe_on_device(&mut self, ds: &Dataset, probe: &mut LayerProbe) -> Result<((f64, f64), (f64, f64))> {
        let mut dp = DeviceProbe::new(self.device, probe, 1);
        let mut out = Vec::new();
        for (split, s) in [(&ds.train, ProbeSplit::Train), (&ds.train, ProbeSplit::Train), (&ds.test, ProbeSplit::Test)]
        {
            if out.len() == 1 {
                probe.next_pass()?;
            }
            dp.begin(&[Some(&*probe)], s);
            let p = &*probe;
            out.push(self.stream(ds, split, |e, lg, y| {
                let classes = y
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| {
                        p.class_index(l as usize)
                            .with_context(|| format!("{} label {l} at row {i} is out of range", s.name()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let e: Vec<Tensor> = e.iter().map(|t| t.unsqueeze(0)).collect();
                dp.update(&e, &lg.unsqueeze(0), &[classes]);
                Ok(())
            })?);
            dp.flush(&mut [Some(&mut *probe)]).into_iter().try_for_each(|r| r)?;
        }
        Ok((out[0], out[2]))
    }
}

/// How the probe reduces embeddings: streamed to the host engine, or reduced on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeReduction {
    Host,
    Device,
}

impl ProbeReduction {
    /// `probe.reduction` of the config; "auto" is the device's own on a GPU, the host's on the CPU.
    pub fn configured(cfg: &Config, device: Device) -> ProbeReduction {
        use crate::config::Reduction as R;
        match cfg.probe.reduction {
            R::Host => ProbeReduction::Host,
            R::Device => ProbeReduction::Device,
            R::Auto if device == Device::Cpu => ProbeReduction::Host,
            R::Auto => ProbeReduction::Device,
        }
    }
}

/// Every layer's batch copied into reused host buffers.
fn to_host<'a>(embs: &[Tensor], bufs: &'a mut [Vec<f32>]) -> Vec<&'a [f32]> {
    for (b, e) in bufs.iter_mut().zip(embs) {
        copy_f32(e, b);
    }
    bufs.iter().map(|b| b.as_slice()).collect()
}

/// The probe a config asks for, over layers of `dims`; `head_weight` is the classifier (C × D_L)
/// that NC3 compares with the class means of its own input (post-activation embeddings).
pub(crate) fn new_probe(cfg: &Config, num_classes: usize, dims: &[usize], head_weight: &Tensor) -> Result<LayerProbe> {
    let mut spec = ProbeSpec::new(num_classes, dims.to_vec());
    spec.eps = cfg.probe.eps.clone();
    spec.rank_max_dim = cfg.probe.rank_max_dim;
    let mut probe = LayerProbe::new(spec)?;
    if cfg.model.embedding == EmbeddingPoint::PostActivation {
        probe.set_classifier(&host_f32(head_weight))?;
    }
    Ok(probe)
}
