//! The probe's reductions on the training device. On a GPU the embeddings never leave it: per
//! layer and split only O(C·D + D² + r²) statistics come back, and `LayerProbe` computes the
//! measures from them exactly as from host-streamed batches. The arithmetic mirrors the host
//! path (f64 throughout, the same Chan merge per batch, distances in GEMM form with the lowest
//! class index on ties), so the two differ by summation order only.

use depthprobe_measures::{ClassMoments, LayerProbe, LayerReduction, Pass, Split};
use tch::{Device, Kind, Tensor};

const F64: Kind = Kind::Double;

/// Per-class count, mean and M2 on the device, Chan-merged per batch like `ClassMoments`.
struct DeviceMoments {
    counts: Tensor,
    means: Tensor,
    m2: Tensor,
}

impl DeviceMoments {
    fn new(k: i64, d: i64, dev: Device) -> Self {
        DeviceMoments {
            counts: Tensor::zeros([k], (F64, dev)),
            means: Tensor::zeros([k, d], (F64, dev)),
            m2: Tensor::zeros([k], (F64, dev)),
        }
    }

    /// `x` f64 [n, D], `onehot` f64 [n, C] of the rows' classes. Per-class sums are a one-hot
    /// GEMM (deterministic on a GPU, unlike atomic index_add).
    fn update(&mut self, x: &Tensor, onehot: &Tensor, y: &Tensor) {
        let nb = onehot.sum_dim_intlist(0, false, F64);
        let mb = onehot.tr().mm(x) / nb.clamp_min(1.0).unsqueeze(1);
        let diff = x - mb.index_select(0, y);
        let m2b = onehot.tr().mv(&diff.square().sum_dim_intlist(1, false, F64));
        let n = &self.counts + &nb;
        let delta = &mb - &self.means;
        let inv_n = n.clamp_min(1.0).reciprocal();
        self.means += &delta * (&nb * &inv_n).unsqueeze(1);
        self.m2 += m2b + delta.square().sum_dim_intlist(1, false, F64) * &self.counts * &nb * inv_n;
        self.counts = n;
    }

    fn to_host(&self) -> ClassMoments {
        ClassMoments::from_parts(
            self.means.size()[1] as usize,
            to_vec(&self.counts).into_iter().map(|c| c.round() as u64).collect(),
            to_vec(&self.means),
            to_vec(&self.m2),
        )
    }
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    let t = t.to_device(Device::Cpu).to_kind(F64).contiguous().view([-1]);
    let mut v = vec![0.0; t.numel()];
    t.copy_data(&mut v, t.numel());
    v
}

fn upload(v: &[f64], shape: [i64; 2], dev: Device) -> Tensor {
    Tensor::from_slice(v).view(shape).to_device(dev)
}

/// Pass-2 operands of one layer, uploaded once after `next_pass`.
struct Operands {
    k: i64,
    r: i64,
    joint: Tensor,
    mean_proj: Tensor,
    mean_sq_norms: Tensor,
}

/// One layer's running statistics for the current (pass, split).
struct LayerAcc {
    rows: u64,
    moments: Option<DeviceMoments>,
    gram: Option<Tensor>,
    correct: Tensor,
    counted: u64,
    within: Option<Tensor>,
    ops: Option<Operands>,
}

/// Device-side accumulators for every layer of a `LayerProbe`, for one split and pass at a time:
/// `begin`, `update` per batch, `flush` into the probe.
pub struct DeviceProbe {
    device: Device,
    dims: Vec<usize>,
    classes: i64,
    /// Measured index → original class label (NC4 compares with the network's argmax).
    labels: Tensor,
    rank_max_dim: usize,
    layers: Vec<LayerAcc>,
    /// Rows of measured classes whose top-layer NCC label equals the network's argmax.
    agree: Tensor,
    agree_total: u64,
    split: Split,
    pass: Pass,
}

impl DeviceProbe {
    pub fn new(device: Device, probe: &LayerProbe) -> Self {
        let labels: Vec<i64> = probe.classes().iter().map(|&c| c as i64).collect();
        DeviceProbe {
            device,
            dims: probe.spec().dims.clone(),
            classes: labels.len() as i64,
            labels: Tensor::from_slice(&labels).to_device(device),
            rank_max_dim: probe.spec().rank_max_dim,
            layers: Vec::new(),
            agree: Tensor::zeros([], (Kind::Int64, device)),
            agree_total: 0,
            split: Split::Train,
            pass: Pass::Moments,
        }
    }

    /// Start accumulating `split` in the probe's current pass.
    pub fn begin(&mut self, probe: &LayerProbe, split: Split) {
        let (dev, k) = (self.device, self.classes);
        self.split = split;
        self.pass = probe.pass();
        self.agree = Tensor::zeros([], (Kind::Int64, dev));
        self.agree_total = 0;
        self.layers = self
            .dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let ops = probe.decision_operands(i + 1);
                let moments = match (self.pass, &ops) {
                    (Pass::Moments, _) => true,
                    (Pass::Decisions, Some(o)) => split == Split::Test && o.test_moments,
                    (Pass::Decisions, None) => false,
                };
                let pass1_train = self.pass == Pass::Moments && split == Split::Train;
                let ops = ops.map(|o| Operands {
                    k: o.classes as i64,
                    r: o.rank as i64,
                    joint: upload(o.joint, [o.dim as i64, (o.classes + o.rank) as i64], dev),
                    mean_proj: upload(o.mean_proj, [o.classes as i64, o.rank as i64], dev),
                    mean_sq_norms: Tensor::from_slice(o.mean_sq_norms).to_device(dev),
                });
                let within = ops.as_ref().filter(|o| split == Split::Train && o.r > 0);
                LayerAcc {
                    rows: 0,
                    moments: moments.then(|| DeviceMoments::new(k, d as i64, dev)),
                    gram: (pass1_train && d <= self.rank_max_dim)
                        .then(|| Tensor::zeros([d as i64, d as i64], (F64, dev))),
                    correct: Tensor::zeros([], (Kind::Int64, dev)),
                    counted: 0,
                    within: within.map(|o| Tensor::zeros([o.r, o.r], (F64, dev))),
                    ops,
                }
            })
            .collect();
    }

    /// One batch: every layer's embeddings [n, D_i] and the logits [n, C] on the device, and the
    /// rows' measured-class indices (`None`: a class outside the measured subset).
    pub fn update(&mut self, embeddings: &[Tensor], logits: &Tensor, class_of_row: &[Option<usize>]) {
        let dev = self.device;
        let n = class_of_row.len();
        let kept: Vec<i64> = (0..n as i64).filter(|&i| class_of_row[i as usize].is_some()).collect();
        let all_kept = kept.len() == n;
        let keep = (!all_kept).then(|| Tensor::from_slice(&kept).to_device(dev));
        let select = |t: &Tensor| match &keep {
            Some(idx) => t.index_select(0, idx),
            None => t.shallow_clone(),
        };
        let y: Vec<i64> = class_of_row.iter().flatten().map(|&c| c as i64).collect();
        let y = Tensor::from_slice(&y).to_device(dev);
        let onehot = y.onehot(self.classes).to_kind(F64);
        let top = self.layers.len() - 1;
        for (i, (acc, e)) in self.layers.iter_mut().zip(embeddings).enumerate() {
            acc.rows += n as u64;
            if kept.is_empty() {
                continue;
            }
            let x = select(e).to_kind(F64);
            if let Some(m) = acc.moments.as_mut() {
                m.update(&x, &onehot, &y);
            }
            if let Some(g) = acc.gram.as_mut() {
                *g += x.tr().mm(&x);
            }
            if self.pass == Pass::Decisions {
                let o = acc.ops.as_ref().expect("pass 2 has operands");
                let scores = x.mm(&o.joint);
                let xsq = x.square().sum_dim_intlist(1, false, F64).unsqueeze(1);
                let dist = xsq - scores.narrow(1, 0, o.k) * 2.0 + o.mean_sq_norms.unsqueeze(0);
                let pred = dist.argmin(1, false);
                acc.correct += pred.eq_tensor(&y).sum(Kind::Int64);
                acc.counted += kept.len() as u64;
                if let Some(w) = acc.within.as_mut() {
                    let p = scores.narrow(1, o.k, o.r) - o.mean_proj.index_select(0, &y);
                    *w += p.tr().mm(&p);
                }
                if i == top {
                    let net = select(logits).argmax(1, false);
                    self.agree += self.labels.index_select(0, &pred).eq_tensor(&net).sum(Kind::Int64);
                    self.agree_total += kept.len() as u64;
                }
            }
        }
    }

    /// Bring the small statistics back and merge them into `probe` (one sync per split).
    pub fn flush(&mut self, probe: &mut LayerProbe) -> Result<(), depthprobe_measures::ProbeError> {
        for (i, acc) in std::mem::take(&mut self.layers).into_iter().enumerate() {
            let red = LayerReduction {
                rows: acc.rows,
                moments: acc.moments.as_ref().map(DeviceMoments::to_host),
                gram: acc.gram.as_ref().map(to_vec),
                correct: acc.correct.int64_value(&[]) as u64,
                counted: acc.counted,
                within: acc.within.as_ref().map(|w| (to_vec(w), acc.counted)),
            };
            probe.absorb(self.split, i + 1, red)?;
        }
        if self.pass == Pass::Decisions {
            probe.absorb_agreement(self.split, self.agree.int64_value(&[]) as u64, self.agree_total)?;
        }
        Ok(())
    }
}
