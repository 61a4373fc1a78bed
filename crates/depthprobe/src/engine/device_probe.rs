//! The probe's reductions on the training device, for K networks at once (K = 1 for `Trainer`,
//! K for `BatchedTrainer`). On a GPU the embeddings never leave it: per network, layer and split
//! only O(C·D + D² + r²) statistics come back, and each network's `LayerProbe` computes the
//! measures from them exactly as from host-streamed batches. The arithmetic mirrors the host
//! path (f64 throughout, the same Chan merge per batch, distances in GEMM form with the lowest
//! class index on ties), so the two differ by summation order only. Every tensor carries the
//! network index first, so K networks cost the launches of one.
//!
//! Rows of classes outside a measured subset are masked (a zero one-hot row), not removed: the
//! networks of a batch may have different labels.

use depthprobe_measures::{ClassMoments, LayerProbe, LayerReduction, Pass, ProbeError, Split};
use tch::{Device, Kind, Tensor};

use super::host_f64;

const F64: Kind = Kind::Double;

/// Per-network, per-class count, mean and M2: [K, C], [K, C, D], [K, C], Chan-merged per batch
/// like `ClassMoments`.
struct DeviceMoments {
    counts: Tensor,
    means: Tensor,
    m2: Tensor,
}

impl DeviceMoments {
    fn new(k: i64, c: i64, d: i64, dev: Device) -> Self {
        DeviceMoments {
            counts: Tensor::zeros([k, c], (F64, dev)),
            means: Tensor::zeros([k, c, d], (F64, dev)),
            m2: Tensor::zeros([k, c], (F64, dev)),
        }
    }

    /// `x` f64 [K, n, D]; `onehot` f64 [K, n, C] (a zero row for a masked row). Per-class sums
    /// are one-hot GEMMs (deterministic on a GPU, unlike atomic index_add).
    fn update(&mut self, x: &Tensor, onehot: &Tensor) {
        let oh_t = onehot.transpose(1, 2);
        let nb = onehot.sum_dim_intlist(1, false, F64);
        let mb = oh_t.bmm(x) / nb.clamp_min(1.0).unsqueeze(2);
        let diff = x - onehot.bmm(&mb);
        let m2b = oh_t.bmm(&diff.square().sum_dim_intlist(2, true, F64)).squeeze_dim(2);
        let n = &self.counts + &nb;
        let delta = &mb - &self.means;
        let inv_n = n.clamp_min(1.0).reciprocal();
        self.means += &delta * (&nb * &inv_n).unsqueeze(2);
        self.m2 += m2b + delta.square().sum_dim_intlist(2, false, F64) * &self.counts * &nb * inv_n;
        self.counts = n;
    }

    /// Network k's moments from the host copies of the three tensors.
    fn network(host: &(Vec<f64>, Vec<f64>, Vec<f64>), k: usize, c: usize, d: usize) -> ClassMoments {
        let (counts, means, m2) = host;
        ClassMoments::from_parts(
            d,
            counts[k * c..(k + 1) * c].iter().map(|v| v.round() as u64).collect(),
            means[k * c * d..(k + 1) * c * d].to_vec(),
            m2[k * c..(k + 1) * c].to_vec(),
        )
    }
}

/// Pass-2 operands of one layer for all K networks, uploaded once after `next_pass`.
struct Operands {
    r: i64,
    /// [K, D, C + r], [K, C, r], [K, 1, C].
    joint: Tensor,
    mean_proj: Tensor,
    mean_sq_norms: Tensor,
}

/// One layer's running statistics for the current (pass, split), every network at once.
struct LayerAcc {
    dim: usize,
    moments: Option<DeviceMoments>,
    gram: Option<Tensor>,
    correct: Tensor,
    within: Option<Tensor>,
    ops: Option<Operands>,
}

/// Device-side accumulators for the layers of K `LayerProbe`s of the same spec, one split and
/// pass at a time: `begin`, `update` per batch, `flush` into the probes.
pub struct DeviceProbe {
    device: Device,
    k: usize,
    dims: Vec<usize>,
    classes: i64,
    /// Measured index → original class label (NC4 compares with the network's argmax).
    labels: Tensor,
    rank_max_dim: usize,
    layers: Vec<LayerAcc>,
    rows: u64,
    /// Per network: measured rows decided, and those whose top-layer NCC label equals the
    /// network's argmax (NC4).
    counted: Tensor,
    agree: Tensor,
    split: Split,
    pass: Pass,
}

impl DeviceProbe {
    /// For `k` networks whose probes share `probe`'s spec.
    pub fn new(device: Device, probe: &LayerProbe, k: usize) -> Self {
        let labels: Vec<i64> = probe.classes().iter().map(|&c| c as i64).collect();
        DeviceProbe {
            device,
            k,
            dims: probe.spec().dims.clone(),
            classes: labels.len() as i64,
            labels: Tensor::from_slice(&labels).to_device(device),
            rank_max_dim: probe.spec().rank_max_dim,
            layers: Vec::new(),
            rows: 0,
            counted: Tensor::zeros([k as i64], (Kind::Int64, device)),
            agree: Tensor::zeros([k as i64], (Kind::Int64, device)),
            split: Split::Train,
            pass: Pass::Moments,
        }
    }

    /// Start accumulating `split` in the probes' current pass. `probes[k]` is None for a network
    /// whose probe already failed: it is carried along and its statistics are dropped.
    pub fn begin(&mut self, probes: &[Option<&LayerProbe>], split: Split) {
        assert_eq!(probes.len(), self.k, "one probe per network");
        let (dev, c, kn) = (self.device, self.classes, self.k as i64);
        let live = probes.iter().flatten().next().expect("at least one live probe");
        self.split = split;
        self.pass = live.pass();
        self.rows = 0;
        self.counted = Tensor::zeros([kn], (Kind::Int64, dev));
        self.agree = Tensor::zeros([kn], (Kind::Int64, dev));
        self.layers = self
            .dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let first = live.decision_operands(i + 1);
                let moments = match (self.pass, &first) {
                    (Pass::Moments, _) => true,
                    (Pass::Decisions, Some(o)) => split == Split::Test && o.test_moments,
                    (Pass::Decisions, None) => false,
                };
                let ops = first.map(|f| {
                    let (w, r) = (f.classes + f.rank, f.rank);
                    let (mut joint, mut mean_proj, mut msq) = (Vec::new(), Vec::new(), Vec::new());
                    for p in probes {
                        match p.and_then(|p| p.decision_operands(i + 1)) {
                            Some(o) => {
                                assert_eq!((o.classes, o.rank), (f.classes, r), "networks of one spec share C and r");
                                joint.extend_from_slice(o.joint);
                                mean_proj.extend_from_slice(o.mean_proj);
                                msq.extend_from_slice(o.mean_sq_norms);
                            }
                            None => {
                                joint.extend(std::iter::repeat_n(0.0, d * w));
                                mean_proj.extend(std::iter::repeat_n(0.0, f.classes * r));
                                msq.extend(std::iter::repeat_n(0.0, f.classes));
                            }
                        }
                    }
                    let up = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).view(shape).to_device(dev);
                    Operands {
                        r: r as i64,
                        joint: up(&joint, &[kn, d as i64, w as i64]),
                        mean_proj: up(&mean_proj, &[kn, c, r as i64]),
                        mean_sq_norms: up(&msq, &[kn, 1, c]),
                    }
                });
                let pass1_train = self.pass == Pass::Moments && split == Split::Train;
                let within = ops.as_ref().filter(|o| split == Split::Train && o.r > 0);
                LayerAcc {
                    dim: d,
                    moments: moments.then(|| DeviceMoments::new(kn, c, d as i64, dev)),
                    gram: (pass1_train && d <= self.rank_max_dim)
                        .then(|| Tensor::zeros([kn, d as i64, d as i64], (F64, dev))),
                    correct: Tensor::zeros([kn], (Kind::Int64, dev)),
                    within: within.map(|o| Tensor::zeros([kn, o.r, o.r], (F64, dev))),
                    ops,
                }
            })
            .collect();
    }

    /// One batch: every layer's embeddings [K, n, D_i] and the logits [K, n, C] on the device,
    /// and each network's rows' measured-class indices (`None`: outside the measured subset).
    pub fn update(&mut self, embeddings: &[Tensor], logits: &Tensor, class_of_row: &[Vec<Option<usize>>]) {
        let dev = self.device;
        let n = class_of_row[0].len();
        let y: Vec<i64> = class_of_row.iter().flatten().map(|c| c.map_or(0, |c| c as i64)).collect();
        let y = Tensor::from_slice(&y).view([self.k as i64, n as i64]).to_device(dev);
        let all_kept = class_of_row.iter().flatten().all(Option::is_some);
        let mask = (!all_kept).then(|| {
            let m: Vec<f64> = class_of_row.iter().flatten().map(|c| if c.is_some() { 1.0 } else { 0.0 }).collect();
            Tensor::from_slice(&m).view([self.k as i64, n as i64]).to_device(dev)
        });
        let mut onehot = y.onehot(self.classes).to_kind(F64);
        if let Some(m) = &mask {
            onehot *= m.unsqueeze(2);
        }
        let kept = match &mask {
            Some(m) => m.sum_dim_intlist(1, false, Kind::Int64),
            None => Tensor::full([self.k as i64], n as i64, (Kind::Int64, dev)),
        };
        self.rows += n as u64;
        let top = self.layers.len() - 1;
        let pass = self.pass;
        for (i, (acc, e)) in self.layers.iter_mut().zip(embeddings).enumerate() {
            let x = e.to_kind(F64);
            if let Some(m) = acc.moments.as_mut() {
                m.update(&x, &onehot);
            }
            if let Some(g) = acc.gram.as_mut() {
                let xm = match &mask {
                    Some(m) => &x * m.unsqueeze(2),
                    None => x.shallow_clone(),
                };
                *g += xm.transpose(1, 2).bmm(&xm);
            }
            if pass == Pass::Decisions {
                let o = acc.ops.as_ref().expect("pass 2 has operands");
                let c = self.classes;
                let scores = x.bmm(&o.joint);
                let xsq = x.square().sum_dim_intlist(2, true, F64);
                let dist = xsq - scores.narrow(2, 0, c) * 2.0 + &o.mean_sq_norms;
                let pred = dist.argmin(2, false);
                let hit = pred.eq_tensor(&y);
                let hit = match &mask {
                    Some(m) => hit.logical_and(&m.gt(0.5)),
                    None => hit,
                };
                acc.correct += hit.sum_dim_intlist(1, false, Kind::Int64);
                if let Some(w) = acc.within.as_mut() {
                    let mut p = scores.narrow(2, c, o.r) - onehot.bmm(&o.mean_proj);
                    if let Some(m) = &mask {
                        p *= m.unsqueeze(2);
                    }
                    *w += p.transpose(1, 2).bmm(&p);
                }
                if i == top {
                    let net = logits.argmax(2, false);
                    let same = self.labels.index_select(0, &pred.view([-1])).view([self.k as i64, -1]).eq_tensor(&net);
                    let same = match &mask {
                        Some(m) => same.logical_and(&m.gt(0.5)),
                        None => same,
                    };
                    self.agree += same.sum_dim_intlist(1, false, Kind::Int64);
                    self.counted += &kept;
                }
            }
        }
    }

    /// Bring the small statistics back (one sync per split) and merge network k's into
    /// `probes[k]`; a network's error (non-finite embeddings) is its own.
    pub fn flush(&mut self, probes: &mut [Option<&mut LayerProbe>]) -> Vec<Result<(), ProbeError>> {
        let c = self.classes as usize;
        let counted: Vec<f64> = host_f64(&self.counted);
        let agree: Vec<f64> = host_f64(&self.agree);
        let layers: Vec<_> = std::mem::take(&mut self.layers)
            .into_iter()
            .map(|acc| {
                let m = acc.moments.as_ref().map(|m| (host_f64(&m.counts), host_f64(&m.means), host_f64(&m.m2)));
                (acc.dim, m, acc.gram.as_ref().map(host_f64), host_f64(&acc.correct), acc.within.as_ref().map(host_f64))
            })
            .collect();
        probes
            .iter_mut()
            .enumerate()
            .map(|(k, p)| {
                let Some(p) = p.as_deref_mut() else { return Ok(()) };
                for (i, (d, m, gram, correct, within)) in layers.iter().enumerate() {
                    let d = *d;
                    let decided = self.pass == Pass::Decisions;
                    let n = if decided { counted[k] as u64 } else { 0 };
                    let red = LayerReduction {
                        rows: self.rows,
                        moments: m.as_ref().map(|h| DeviceMoments::network(h, k, c, d)),
                        gram: gram.as_ref().map(|g| g[k * d * d..(k + 1) * d * d].to_vec()),
                        correct: correct[k] as u64,
                        counted: n,
                        within: within.as_ref().map(|w| {
                            let rr = w.len() / self.k;
                            (w[k * rr..(k + 1) * rr].to_vec(), n)
                        }),
                    };
                    p.absorb(self.split, i + 1, red)?;
                }
                if self.pass == Pass::Decisions {
                    p.absorb_agreement(self.split, agree[k] as u64, counted[k] as u64)?;
                }
                Ok(())
            })
            .collect()
    }
}
