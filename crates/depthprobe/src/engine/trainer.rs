//! SGD training and the in-training probe. Batches are built from the data set on the host and
//! moved to the device; per-epoch statistics stay on the device until the epoch ends (one sync).

use anyhow::{Context, Result};
use depthprobe_measures::{LayerProbe, ProbeResult, ProbeSpec, Split as ProbeSplit};
use tch::nn;
use tch::{Device, Kind, Reduction, Tensor};

use super::model::Net;
use super::sgd::Sgd;
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

fn seed_for(base: u64, salt: u64, epoch: usize) -> u64 {
    base.wrapping_mul(0x9E37_79B9).wrapping_add(salt.wrapping_mul(1_000_003)).wrapping_add(epoch as u64)
}

impl Trainer {
    pub fn new(cfg: &Config, ds: &Dataset, device: Device) -> Result<Trainer> {
        let vs = nn::VarStore::new(device);
        let net = Net::new(&vs.root(), &cfg.model, &ds.shape, ds.num_classes)?;
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
        let mut aug =
            (self.cfg.data.augment && ds.shape.len() == 3).then(|| Rng::new(seed_for(self.cfg.train.seed, 2, epoch)));
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

    /// Stream one split through the network in eval mode; each batch's embeddings go to `sink`.
    fn stream(
        &mut self,
        ds: &Dataset,
        split: &Split,
        mut sink: impl FnMut(&[&[f32]], &[f32], &[u32]) -> Result<()>,
    ) -> Result<(f64, f64)> {
        let pb = self.cfg.probe.batch_size;
        let n = split.len();
        let c = self.num_classes;
        let mut loss_sum = 0.0;
        let mut correct = 0i64;
        let mut bufs: Vec<Vec<f32>> = self.net.dims().iter().map(|_| Vec::new()).collect();
        let mut logits_buf = Vec::new();
        let mut start = 0;
        while start < n {
            let idx: Vec<usize> = (start..(start + pb).min(n)).collect();
            let (x, y) = self.batch(ds, split, &idx, None);
            let (logits, embs) = tch::no_grad(|| self.net.forward(&x, false, true));
            loss_sum += tch::no_grad(|| self.loss(&logits, &y)).double_value(&[]) * idx.len() as f64;
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            for (b, e) in bufs.iter_mut().zip(&embs) {
                let e = e.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                b.resize(e.numel(), 0.0);
                e.copy_data(b, e.numel());
            }
            let lg = logits.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            logits_buf.resize(idx.len() * c, 0.0);
            lg.copy_data(&mut logits_buf, idx.len() * c);
            let labels: Vec<u32> = idx.iter().map(|&i| split.labels[i] as u32).collect();
            let refs: Vec<&[f32]> = bufs.iter().map(|b| b.as_slice()).collect();
            sink(&refs, &logits_buf, &labels)?;
            start += idx.len();
        }
        Ok((loss_sum / n as f64, correct as f64 / n as f64))
    }

    /// The full probe: train split twice (moments, then NCC decisions), test split once.
    pub fn probe(&mut self, ds: &Dataset) -> Result<ProbeOutcome> {
        let mut spec = ProbeSpec::new(ds.num_classes, self.net.dims().to_vec());
        spec.eps = self.cfg.probe.eps.clone();
        spec.rank_max_dim = self.cfg.probe.rank_max_dim;
        let mut probe = LayerProbe::new(spec)?;
        if self.cfg.model.embedding == EmbeddingPoint::PostActivation {
            // NC3 compares the classifier with the class means of its own input.
            let w = self.net.head_weight().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let mut wv = vec![0f32; w.numel()];
            w.copy_data(&mut wv, w.numel());
            probe.set_classifier(&wv)?;
        }
        let (train_loss, train_acc) =
            self.stream(ds, &ds.train, |xs, _, y| Ok(probe.update_all(ProbeSplit::Train, xs, y)?))?;
        probe.next_pass()?;
        self.stream(ds, &ds.train, |xs, lg, y| {
            probe.update_all(ProbeSplit::Train, xs, y)?;
            Ok(probe.update_agreement(ProbeSplit::Train, xs.last().unwrap(), lg, y)?)
        })?;
        let (test_loss, test_acc) = self.stream(ds, &ds.test, |xs, lg, y| {
            probe.update_all(ProbeSplit::Test, xs, y)?;
            Ok(probe.update_agreement(ProbeSplit::Test, xs.last().unwrap(), lg, y)?)
        })?;
        Ok(ProbeOutcome { result: probe.finish()?, train_loss, train_acc, test_loss, test_acc })
    }
}
