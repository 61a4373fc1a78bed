//! K MLP-L-H networks of one architecture trained as one batched model: weights stacked
//! [K, out, in] and applied with one batched GEMM per layer, each network's BatchNorm over its
//! own batch (the K·H features are the channels of one BatchNorm), the loss the sum of the K
//! networks' mean losses (so each gets exactly its own gradient), one fused SGD step over the
//! stacked parameters. Network k starts from the parameters `Trainer` would draw with its seed
//! and sees its own data order and labels, so it follows the same trajectory as when trained
//! alone (up to floating-point rounding of the batched kernels; tests/batched.rs checks it).
//! The paper's sweeps are many small networks; on a GPU they are launch-bound one at a time.

use anyhow::{bail, Result};
use depthprobe_measures::{LayerProbe, Split as ProbeSplit};
use rayon::prelude::*;
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use super::device_probe::DeviceProbe;
use super::model::Net;
use super::sgd::Sgd;
use super::trainer::{new_probe, seed_for, EpochStats, ProbeOutcome, ProbeReduction};
use super::{augments, copy_f32, host_f64};
use crate::config::{Arch, Config, EmbeddingPoint, Loss};
use crate::data::Dataset;
use crate::rng::Rng;
use crate::schedule::lr_at;

struct Layer {
    w: Tensor,
    b: Tensor,
    /// γ, β, running mean, running var: [K·H] each.
    bn: Option<[Tensor; 4]>,
}

pub struct BatchedTrainer {
    _vs: VarStore,
    layers: Vec<Layer>,
    head_w: Tensor,
    head_b: Tensor,
    opt: Sgd,
    device: Device,
    cfgs: Vec<Config>,
    dims: Vec<usize>,
    xbuf: Vec<f32>,
    /// When every network trains on the same inputs without augmentation (seeds, corruption
    /// draws), the normalised train inputs [N, ...] live on the device once and each step
    /// gathers its K batches there; labels [K, N] likewise. Otherwise (None) batches are
    /// assembled on the host.
    resident: Option<(Tensor, Tensor)>,
    /// Whether all networks see the same inputs in the train / test split: the probe then
    /// sends one copy of each batch and the first layer is one GEMM against all K weights.
    probe_shared: [bool; 2],
}

/// Why `cfgs` cannot train as one batched model, if they cannot: everything but the seeds,
/// the corruption and the data subset must agree.
fn check_batchable(cfgs: &[Config], datasets: &[&Dataset]) -> Result<()> {
    let Some(first) = cfgs.first() else { bail!("batched training needs at least one network") };
    if cfgs.len() != datasets.len() {
        bail!("{} configs for {} data sets", cfgs.len(), datasets.len());
    }
    if first.model.arch != Arch::Mlp {
        bail!("batched training covers MLP-L-H; CONV-L-H networks train one at a time");
    }
    let shape = |c: &Config| {
        let mut t = c.train.clone();
        t.seed = 0;
        (c.model.clone(), t, c.probe.clone(), c.data.augment)
    };
    for (i, (c, d)) in cfgs.iter().zip(datasets).enumerate() {
        if shape(c) != shape(first) {
            bail!("network {i} differs from network 0 in model, train (other than seed) or probe settings");
        }
        let d0 = datasets[0];
        if (d.shape.as_slice(), d.num_classes, d.train.len(), d.test.len())
            != (d0.shape.as_slice(), d0.num_classes, d0.train.len(), d0.test.len())
        {
            bail!("network {i}: its data set differs from network 0's in shape, classes or split sizes");
        }
    }
    Ok(())
}

impl BatchedTrainer {
    pub fn new(cfgs: &[Config], datasets: &[&Dataset], device: Device) -> Result<BatchedTrainer> {
        check_batchable(cfgs, datasets)?;
        let ds = datasets[0];
        let vs = VarStore::new(device);
        // Network k's parameters are what Trainer draws after seeding with its seed.
        let mut nets: Vec<std::collections::HashMap<String, Tensor>> = Vec::new();
        let mut dims = Vec::new();
        for c in cfgs {
            let tmp = VarStore::new(device);
            let net = super::with_seed(c.train.seed, || Net::new(&tmp.root(), &c.model, &ds.shape, ds.num_classes))?;
            dims = net.dims().to_vec();
            nets.push(tmp.variables());
        }
        let root = vs.root();
        let stack = |name: &str, train: bool| -> Tensor {
            let parts: Vec<Tensor> = nets.iter().map(|v| v[name].detach()).collect();
            // Matrices stack as [K, out, in]; vectors concatenate as [K·n] (the BN channels).
            let t = if parts[0].dim() == 1 && !name.ends_with("linear.bias") && !name.starts_with("head") {
                Tensor::cat(&parts, 0)
            } else {
                Tensor::stack(&parts, 0)
            };
            // The same dotted names as the single network (its checkpoints' names).
            let (dir, leaf) = name.rsplit_once('.').expect("dotted variable name");
            let p = dir.split('.').fold(root.clone(), |p, part| p / part);
            if train {
                p.var_copy(leaf, &t)
            } else {
                let mut v = p.zeros_no_train(leaf, &t.size());
                tch::no_grad(|| v.copy_(&t));
                v
            }
        };
        let layers = (0..cfgs[0].model.depth)
            .map(|i| Layer {
                w: stack(&format!("layers.{i}.linear.weight"), true),
                b: stack(&format!("layers.{i}.linear.bias"), true),
                bn: cfgs[0].model.batch_norm.then(|| {
                    let p = format!("layers.{i}.bn");
                    [
                        stack(&format!("{p}.weight"), true),
                        stack(&format!("{p}.bias"), true),
                        stack(&format!("{p}.running_mean"), false),
                        stack(&format!("{p}.running_var"), false),
                    ]
                }),
            })
            .collect();
        let (head_w, head_b) = (stack("head.weight", true), stack("head.bias", true));
        let t = &cfgs[0].train;
        let opt = Sgd::new(&vs, t.momentum, t.weight_decay);
        let probe_shared = [same_inputs(datasets, false), same_inputs(datasets, true)];
        let resident = resident_inputs(&cfgs[0], datasets, probe_shared[0], device);
        Ok(BatchedTrainer {
            _vs: vs,
            layers,
            head_w,
            head_b,
            opt,
            device,
            cfgs: cfgs.to_vec(),
            dims,
            xbuf: Vec::new(),
            resident,
            probe_shared,
        })
    }

    /// Whether the train inputs live on the device.
    pub fn inputs_resident(&self) -> bool {
        self.resident.is_some()
    }

    pub fn networks(&self) -> usize {
        self.cfgs.len()
    }

    /// Logits [K, B, C] and, with `collect`, every counted layer's embeddings [K, B, H]. `x` is
    /// [K, B, ...], or [1, B, ...] when all K networks take the same inputs.
    fn forward(&self, x: &Tensor, train: bool, collect: bool) -> (Tensor, Vec<Tensor>) {
        let (k, b) = (self.networks() as i64, x.size()[1]);
        let emb = self.cfgs[0].model.embedding;
        let mut h = x.flatten(2, -1);
        let mut embs = Vec::new();
        for l in &self.layers {
            h = if h.size()[0] == k {
                l.b.unsqueeze(1).baddbmm(&h, &l.w.transpose(1, 2), 1.0, 1.0)
            } else {
                // Shared inputs: [B, in] × [in, K·out] in one GEMM, no K copies of the batch.
                let (i, o) = (h.size()[2], l.w.size()[1]);
                let y = h.view([b, i]).matmul(&l.w.reshape([k * o, i]).transpose(0, 1));
                y.view([b, k, o]).permute([1, 0, 2]) + l.b.unsqueeze(1)
            };
            if collect && emb == EmbeddingPoint::PreBn {
                embs.push(h.shallow_clone());
            }
            if let Some([g, beta, rm, rv]) = &l.bn {
                let o = h.size()[2];
                let flat = h.permute([1, 0, 2]).reshape([b, k * o]);
                let y = Tensor::batch_norm(&flat, Some(g), Some(beta), Some(rm), Some(rv), train, 0.1, 1e-5, true);
                h = y.view([b, k, o]).permute([1, 0, 2]);
            }
            h = h.relu();
            if collect && emb == EmbeddingPoint::PostActivation {
                embs.push(h.shallow_clone());
            }
        }
        (self.head_b.unsqueeze(1).baddbmm(&h, &self.head_w.transpose(1, 2), 1.0, 1.0), embs)
    }

    /// Each network's mean loss over its batch: [K].
    fn losses(&self, logits: &Tensor, y: &Tensor) -> Tensor {
        let s = logits.size();
        let (k, b, c) = (s[0], s[1], s[2]);
        match self.cfgs[0].train.loss {
            Loss::CrossEntropy => logits
                .view([k * b, c])
                .cross_entropy_loss::<Tensor>(&y.view([k * b]), None, Reduction::None, -100, 0.0)
                .view([k, b])
                .mean_dim(1, false, Kind::Float),
            Loss::Mse => {
                (logits - y.onehot(c).to_kind(Kind::Float)).square().mean_dim([1, 2].as_slice(), false, Kind::Float)
            }
        }
    }

    /// Network k's rows `idx[k]` of its split, stacked as [K, B, ...] on the device, and labels [K, B].
    fn batch(
        &mut self,
        datasets: &[&Dataset],
        test: bool,
        idx: &[Vec<usize>],
        aug: &mut [Option<Rng>],
    ) -> (Tensor, Tensor) {
        self.xbuf.clear();
        let mut one = Vec::new();
        let mut y = Vec::with_capacity(idx.len() * idx[0].len());
        for (k, (ds, rows)) in datasets.iter().zip(idx).enumerate() {
            let split = ds.split(test);
            ds.fill_batch(split, rows, aug[k].as_mut(), &mut one);
            self.xbuf.extend_from_slice(&one);
            y.extend(rows.iter().map(|&i| split.labels[i]));
        }
        let mut shape = vec![idx.len() as i64, idx[0].len() as i64];
        shape.extend(datasets[0].shape.iter().map(|&s| s as i64));
        let x = Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device);
        let y = Tensor::from_slice(&y).view([idx.len() as i64, -1]).to_device(self.device);
        (x, y)
    }

    /// Rows start..start+n of `ds`'s split, one copy for all networks: [1, n, ...] on the device
    /// (a slice of the resident train inputs when they are there).
    fn shared_batch(&mut self, ds: &Dataset, test: bool, start: usize, n: usize) -> Tensor {
        if let (Some((xr, _)), false) = (&self.resident, test) {
            return xr.narrow(0, start as i64, n as i64).unsqueeze(0);
        }
        let rows: Vec<usize> = (start..start + n).collect();
        ds.fill_batch(ds.split(test), &rows, None, &mut self.xbuf);
        let mut shape = vec![1, n as i64];
        shape.extend(ds.shape.iter().map(|&s| s as i64));
        Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device)
    }

    /// One epoch (1-based) for every network, each in its own seeded order.
    pub fn train_epoch(&mut self, datasets: &[&Dataset], epoch: usize) -> Vec<EpochStats> {
        let k = self.networks();
        let n = datasets[0].train.len();
        let bs = self.cfgs[0].train.batch_size;
        let orders: Vec<Vec<usize>> = self
            .cfgs
            .iter()
            .map(|c| {
                let mut o: Vec<usize> = (0..n).collect();
                Rng::new(seed_for(c.train.seed, 1, epoch)).shuffle(&mut o);
                o
            })
            .collect();
        let mut aug: Vec<Option<Rng>> = self
            .cfgs
            .iter()
            .map(|c| augments(c, datasets[0]).then(|| Rng::new(seed_for(c.train.seed, 2, epoch))))
            .collect();
        // As in Trainer: a trailing batch of one sample is dropped.
        let starts: Vec<usize> = (0..n).step_by(bs).filter(|&s| (s + bs).min(n) - s > 1).collect();
        let iters = starts.len();
        let mut loss_sum = Tensor::zeros([k as i64], (Kind::Float, self.device));
        let mut correct = Tensor::zeros([k as i64], (Kind::Int64, self.device));
        let mut seen = 0usize;
        for (it, &s) in starts.iter().enumerate() {
            let e = (s + bs).min(n);
            let (x, y) = match &self.resident {
                Some((xr, yr)) => {
                    let idx: Vec<i64> = orders.iter().flat_map(|o| o[s..e].iter().map(|&i| i as i64)).collect();
                    let idx = Tensor::from_slice(&idx).view([k as i64, -1]).to_device(self.device);
                    let mut shape = vec![k as i64, (e - s) as i64];
                    shape.extend(&xr.size()[1..]);
                    (xr.index_select(0, &idx.view([-1])).view(shape.as_slice()), yr.gather(1, &idx, false))
                }
                None => {
                    let idx: Vec<Vec<usize>> = orders.iter().map(|o| o[s..e].to_vec()).collect();
                    self.batch(datasets, false, &idx, &mut aug)
                }
            };
            let (logits, _) = self.forward(&x, true, false);
            let per = self.losses(&logits, &y);
            self.opt.zero_grad();
            per.sum(Kind::Float).backward();
            self.opt.step(lr_at(&self.cfgs[0].train, epoch, it, iters));
            tch::no_grad(|| {
                loss_sum += per.detach() * (e - s) as f64;
                correct += logits.argmax(-1, false).eq_tensor(&y).sum_dim_intlist(1, false, Kind::Int64);
            });
            seen += e - s;
        }
        let (l, c) = (host_f64(&loss_sum), host_f64(&correct));
        (0..k).map(|i| EpochStats { loss: l[i] / seen as f64, acc: c[i] / seen as f64 }).collect()
    }

    /// Every network's full probe (as `Trainer::probe`): one batched forward per batch; on a GPU
    /// all K networks' embeddings are reduced together there by one `DeviceProbe`, on the CPU
    /// by the host engine, networks in parallel (about 2× faster there than the f64 LibTorch
    /// reductions). A network whose probe fails (a diverged one: non-finite embeddings) gets
    /// its error; the others are unaffected.
    pub fn probe(&mut self, datasets: &[&Dataset]) -> Vec<Result<ProbeOutcome>> {
        self.probe_with(datasets, ProbeReduction::configured(&self.cfgs[0], self.device))
    }

    pub fn probe_with(&mut self, datasets: &[&Dataset], reduction: ProbeReduction) -> Vec<Result<ProbeOutcome>> {
        let k = self.networks();
        let ds = datasets[0];
        let mut probes: Vec<Result<LayerProbe>> =
            (0..k).map(|i| new_probe(&self.cfgs[0], ds.num_classes, &self.dims, &self.head_w.get(i as i64))).collect();
        let Some(first) = probes.iter().find_map(|p| p.as_ref().ok()) else {
            return probes.into_iter().map(|p| Err(p.err().expect("no live probe"))).collect();
        };
        // One DeviceProbe for all K networks: every reduction is one batched kernel.
        let mut dp = DeviceProbe::new(self.device, first, k);
        let class_map: Vec<Option<usize>> = (0..ds.num_classes).map(|l| first.class_index(l).flatten()).collect();
        let num_classes = ds.num_classes;
        let mut host: Vec<Vec<f32>> = self.dims.iter().map(|_| Vec::new()).collect();
        let mut host_logits = Vec::new();
        let mut stats = Vec::new();
        for (pass, test) in [(0, false), (1, false), (1, true)] {
            let s = if test { ProbeSplit::Test } else { ProbeSplit::Train };
            if pass == 1 && !test {
                for p in probes.iter_mut() {
                    let r = match p {
                        Ok(pr) => pr.next_pass(),
                        Err(_) => Ok(()),
                    };
                    if let Err(e) = r {
                        *p = Err(e.into());
                    }
                }
            }
            if probes.iter().all(|p| p.is_err()) {
                break;
            }
            if reduction == ProbeReduction::Device {
                dp.begin(&probes.iter().map(|p| p.as_ref().ok()).collect::<Vec<_>>(), s);
            }
            let n = ds.split(test).len();
            let pb = self.cfgs[0].probe.batch_size;
            let mut loss_sum = Tensor::zeros([k as i64], (Kind::Double, self.device));
            let mut correct = Tensor::zeros([k as i64], (Kind::Int64, self.device));
            let mut start = 0;
            while start < n {
                let rows: Vec<usize> = (start..(start + pb).min(n)).collect();
                // Every network's labels of these rows, for the host engine and the device.
                let labels: Vec<Vec<u32>> =
                    datasets.iter().map(|d| rows.iter().map(|&r| d.split(test).labels[r] as u32).collect()).collect();
                let (x, y) = if self.probe_shared[test as usize] {
                    let flat: Vec<i64> = labels.iter().flatten().map(|&l| l as i64).collect();
                    let y = Tensor::from_slice(&flat).view([k as i64, -1]).to_device(self.device);
                    (self.shared_batch(datasets[0], test, start, rows.len()), y)
                } else {
                    self.batch(datasets, test, &vec![rows.clone(); k], &mut vec![None; k])
                };
                let (logits, embs) = tch::no_grad(|| self.forward(&x, false, true));
                tch::no_grad(|| {
                    loss_sum += self.losses(&logits, &y).to_kind(Kind::Double) * rows.len() as f64;
                    correct += logits.argmax(-1, false).eq_tensor(&y).sum_dim_intlist(1, false, Kind::Int64);
                });
                match reduction {
                    ProbeReduction::Device => {
                        let classes: Vec<Vec<Option<usize>>> = labels
                            .iter()
                            .map(|ys| ys.iter().map(|&l| class_map.get(l as usize).copied().flatten()).collect())
                            .collect();
                        dp.update(&embs, &logits, &classes);
                    }
                    ProbeReduction::Host => {
                        // [K, n, D] per layer to the host, then each network's slice through its
                        // own probe, networks in parallel.
                        for (b, e) in host.iter_mut().zip(&embs) {
                            copy_f32(e, b);
                        }
                        copy_f32(&logits, &mut host_logits);
                        let (nr, dims, host, lg) = (rows.len(), &self.dims, &host, &host_logits);
                        probes.par_iter_mut().zip(&labels).enumerate().for_each(|(i, (p, ys))| {
                            let Ok(pr) = p else { return };
                            let xs: Vec<&[f32]> =
                                host.iter().zip(dims).map(|(h, &d)| &h[i * nr * d..(i + 1) * nr * d]).collect();
                            let mut r = pr.update_all(s, &xs, ys);
                            if pass == 1 && r.is_ok() {
                                let l = &lg[i * nr * num_classes..(i + 1) * nr * num_classes];
                                r = pr.update_agreement(s, xs.last().expect("a layer"), l, ys);
                            }
                            if let Err(e) = r {
                                *p = Err(e.into());
                            }
                        });
                    }
                }
                start += rows.len();
            }
            if reduction == ProbeReduction::Device {
                let mut live: Vec<Option<&mut LayerProbe>> = probes.iter_mut().map(|p| p.as_mut().ok()).collect();
                let flushed = dp.flush(&mut live);
                for (p, r) in probes.iter_mut().zip(flushed) {
                    if let Err(e) = r {
                        *p = Err(e.into());
                    }
                }
            }
            let (l, c) = (host_f64(&loss_sum), host_f64(&correct));
            stats.push((0..k).map(|i| (l[i] / n as f64, c[i] / n as f64)).collect::<Vec<_>>());
        }
        probes
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let result = p?.finish()?;
                let ((train_loss, train_acc), (test_loss, test_acc)) = (stats[0][i], stats[2][i]);
                Ok(ProbeOutcome { result, train_loss, train_acc, test_loss, test_acc })
            })
            .collect()
    }

    /// Network k's slice of a stacked variable: [K, ...] → index k; BatchNorm's [K·H] → its H.
    fn slice(&self, name: &str, t: &Tensor, k: usize) -> Tensor {
        if name.contains(".bn.") {
            let h = t.size()[0] / self.networks() as i64;
            t.narrow(0, k as i64 * h, h)
        } else {
            t.get(k as i64)
        }
    }

    /// Network k's variables under the single-network names (as `Trainer` has them).
    pub fn network_variables(&self, k: usize) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            self._vs.variables().into_iter().map(|(n, t)| (n.clone(), self.slice(&n, &t, k))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Network k's checkpoint, in exactly the format of `Trainer::save` (so `Trainer::load`,
    /// `depthprobe probe` and `--resume` read it).
    pub fn save(&self, k: usize, path: &std::path::Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = self
            .network_variables(k)
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t.to_device(Device::Cpu).contiguous()))
            .collect();
        for (n, b) in self.opt.state() {
            named.push((format!("momentum.{n}"), self.slice(&n, b, k).to_device(Device::Cpu).contiguous()));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Tensor::write_safetensors(&named, path)
            .map_err(|e| anyhow::anyhow!("{}: writing checkpoint: {e}", path.display()))
    }
}

/// Whether every data set holds the same inputs in the split (seeds and corruption draws
/// change only labels and order).
fn same_inputs(datasets: &[&Dataset], test: bool) -> bool {
    let d0 = datasets[0];
    datasets.iter().all(|d| d.shape == d0.shape && d.split(test).storage == d0.split(test).storage)
}

/// The shared train inputs and every network's labels on the device, when all networks train on
/// the same inputs (`shared`, from `same_inputs`) without augmentation (see
/// `BatchedTrainer::resident`).
fn resident_inputs(cfg: &Config, datasets: &[&Dataset], shared: bool, device: Device) -> Option<(Tensor, Tensor)> {
    let d0 = datasets[0];
    if !shared || augments(cfg, d0) {
        return None;
    }
    let all: Vec<usize> = (0..d0.train.len()).collect();
    let mut x0 = Vec::new();
    d0.fill_batch(&d0.train, &all, None, &mut x0);
    let mut shape = vec![all.len() as i64];
    shape.extend(d0.shape.iter().map(|&s| s as i64));
    let x = Tensor::from_slice(&x0).view(shape.as_slice()).to_device(device);
    let y: Vec<i64> = datasets.iter().flat_map(|d| d.train.labels.iter().copied()).collect();
    let y = Tensor::from_slice(&y).view([datasets.len() as i64, -1]).to_device(device);
    Some((x, y))
}
