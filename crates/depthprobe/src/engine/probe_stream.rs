//! The trainer's probe: every network's batches streamed through the measures' two-pass driver
//! (reduced on the host or on the device), pass 1's train batches kept for pass 2 when they fit
//! (`ProbeCache`), and the networks' outputs in eval mode (`eval_outputs`, `predict`).

use std::time::Instant;

use anyhow::Result;
use depthprobe_config::{ProbeConfig, Reduction};
use depthprobe_measures::{
    drive, HostBatch, NetworkRows, Pass, Probe, ProbeError, ProbeResult, ProbeSpec, Split as ProbeSplit,
};
use depthprobe_sweep::governor::Work;
use tch::{Device, Kind, Tensor};

use super::device_reducer::{DeviceBatch, DeviceReducer};
use super::trainer::Trainer;
use super::{copy_f32, host_f32, host_f64};
use crate::data::Dataset;

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

impl Trainer {
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
                spec.cka = cfg.cka;
                spec.keep_class_means = cfg.weight_spectra;
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
        let mut results = results;
        if cfg.weight_spectra {
            let mut ok: Vec<Option<&mut ProbeResult>> = results.iter_mut().map(|r| r.as_mut().ok()).collect();
            self.add_weight_spectra(data, cfg.batch_size, &mut ok);
        }
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
        self.starting(Work::ProbeBatch);
        while start < n {
            let began = Instant::now();
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
            self.timed(Work::ProbeBatch, began);
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
