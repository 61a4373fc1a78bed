//! The probe's reduction on the training device, for K networks at once: the measures'
//! [`Reducer`] on tensors. On a GPU the embeddings never leave it: per network, layer and split
//! only O(C·D + D² + r²) statistics come back, and each network's probe computes the measures
//! from them exactly as from the host reduction's. The arithmetic mirrors the host's (f64
//! throughout, the same Chan merge per batch, distances in GEMM form with the lowest class index
//! on ties), so the two differ by summation order only. Every tensor carries the network index
//! first, so K networks cost the launches of one.
//!
//! Rows of classes outside a measured subset, and every row of a network whose probe has
//! failed, are masked (a zero one-hot row), not removed: the networks of a batch may have
//! different labels.

use depthprobe_measures::{
    Agreement, CkaHsic, ClassMoments, Gram, LayerStats, NccDecisions, PassPlans, PassStats, ProbeError, Reducer, Split,
    SplitPlan, SplitStats, WithinClassProjection,
};
use tch::{Device, Kind, Tensor};

use super::device_cka::DeviceCka;
use super::host_f64;

const F64: Kind = Kind::Double;

/// One batch for the device: every layer's embeddings [K, n, D_i] and the logits [K, n, C] on
/// the device, and each network's labels.
pub struct DeviceBatch<'a> {
    pub embeddings: &'a [Tensor],
    pub logits: &'a Tensor,
    pub labels: &'a [Vec<u32>],
}

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
}

/// Pass-2 operands of one layer for all K networks, uploaded at the start of the pass. Networks
/// whose between-class subspaces differ in rank are padded with zero columns to the largest.
struct Operands {
    r: i64,
    /// The linear probe's intercepts [K, 1, C] when the layer has one (its weights are the last
    /// C columns of `joint`).
    linear_bias: Option<Tensor>,
    /// [K, D, C + r], [K, C, r], [K, 1, C].
    joint: Tensor,
    mean_proj: Tensor,
    mean_sq_norms: Tensor,
    /// Network k's own rank.
    ranks: Vec<usize>,
}

/// One layer's running statistics for one split, every network at once.
struct LayerAcc {
    dim: usize,
    moments: Option<DeviceMoments>,
    gram: Option<Tensor>,
    correct: Option<Tensor>,
    linear_correct: Option<Tensor>,
    within: Option<Tensor>,
    ops: Option<Operands>,
}

/// One split's statistics of the current pass.
struct SplitAcc {
    layers: Vec<LayerAcc>,
    rows: u64,
    /// Per network: measured rows decided, and those whose top-layer NCC label equals the
    /// network's argmax (NC4).
    counted: Tensor,
    agree: Tensor,
    /// CKA between the layers, when planned.
    cka: Option<DeviceCka>,
}

/// The device reduction of K networks.
pub struct DeviceReducer {
    device: Device,
    k: usize,
    plans: PassPlans,
    failed: Vec<Option<ProbeError>>,
    splits: [Option<SplitAcc>; 2],
}

impl DeviceReducer {
    pub fn new(device: Device, k: usize) -> DeviceReducer {
        DeviceReducer { device, k, plans: Vec::new(), failed: vec![None; k], splits: [None, None] }
    }

    /// The plan of the first live network for `split` (all live networks share its layout).
    fn lead(&self, split: Split) -> Option<&SplitPlan> {
        self.plans.iter().flatten().next().map(|p| &p[split_idx(split)])
    }

    fn live(&self, k: usize) -> bool {
        self.failed[k].is_none() && self.plans[k].is_some()
    }

    /// Allocate one split's accumulators at its first batch, from the networks' plans.
    fn start(&self, split: Split) -> SplitAcc {
        let (dev, kn) = (self.device, self.k as i64);
        let lead = self.lead(split).expect("a live network");
        let c = lead.classes.len() as i64;
        let s = split_idx(split);
        let layers = lead
            .layers
            .iter()
            .enumerate()
            .map(|(i, lp)| {
                let d = lp.dim;
                let ops = lp.decisions.as_ref().map(|first| {
                    let r = self
                        .plans
                        .iter()
                        .flatten()
                        .filter_map(|p| p[s].layers[i].decisions.as_ref().map(|o| o.rank))
                        .max()
                        .unwrap_or(0);
                    let cu = c as usize;
                    let lin = if first.linear_bias.is_some() { cu } else { 0 };
                    let w = cu + r + lin;
                    let (mut joint, mut mean_proj, mut msq, mut ranks, mut bias) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for (k, p) in self.plans.iter().enumerate() {
                        match p.as_ref().filter(|_| self.live(k)).and_then(|p| p[s].layers[i].decisions.clone()) {
                            Some(o) => {
                                assert_eq!(o.classes, first.classes, "networks of one probe share their classes");
                                let ow = o.width();
                                assert_eq!(
                                    o.linear_bias.is_some(),
                                    lin > 0,
                                    "networks of one probe share the linear probe"
                                );
                                for row in 0..d {
                                    let at = row * ow;
                                    joint.extend_from_slice(&o.joint[at..at + cu]);
                                    joint.extend_from_slice(&o.joint[at + cu..at + cu + o.rank]);
                                    joint.extend(std::iter::repeat_n(0.0, r - o.rank));
                                    joint.extend_from_slice(&o.joint[at + cu + o.rank..at + ow]);
                                }
                                bias.extend(o.linear_bias.clone().unwrap_or_default());
                                for cl in 0..cu {
                                    mean_proj.extend_from_slice(&o.mean_proj[cl * o.rank..(cl + 1) * o.rank]);
                                    mean_proj.extend(std::iter::repeat_n(0.0, r - o.rank));
                                }
                                msq.extend_from_slice(o.mean_sq_norms());
                                ranks.push(o.rank);
                            }
                            None => {
                                joint.extend(std::iter::repeat_n(0.0, d * w));
                                mean_proj.extend(std::iter::repeat_n(0.0, cu * r));
                                msq.extend(std::iter::repeat_n(0.0, cu));
                                bias.extend(std::iter::repeat_n(0.0, lin));
                                ranks.push(0);
                            }
                        }
                    }
                    let up = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).view(shape).to_device(dev);
                    Operands {
                        r: r as i64,
                        joint: up(&joint, &[kn, d as i64, w as i64]),
                        mean_proj: up(&mean_proj, &[kn, c, r as i64]),
                        mean_sq_norms: up(&msq, &[kn, 1, c]),
                        linear_bias: (lin > 0).then(|| up(&bias, &[kn, 1, c])),
                        ranks,
                    }
                });
                let within = ops.as_ref().filter(|o| lp.within && o.r > 0).map(|o| o.r);
                LayerAcc {
                    dim: d,
                    moments: lp.moments.then(|| DeviceMoments::new(kn, c, d as i64, dev)),
                    gram: lp.gram.then(|| Tensor::zeros([kn, d as i64, d as i64], (F64, dev))),
                    correct: lp.decisions.as_ref().map(|_| Tensor::zeros([kn], (Kind::Int64, dev))),
                    linear_correct: ops
                        .as_ref()
                        .and_then(|o| o.linear_bias.as_ref())
                        .map(|_| Tensor::zeros([kn], (Kind::Int64, dev))),
                    within: within.map(|r| Tensor::zeros([kn, r, r], (F64, dev))),
                    ops,
                }
            })
            .collect();
        SplitAcc {
            layers,
            rows: 0,
            counted: Tensor::zeros([kn], (Kind::Int64, dev)),
            agree: Tensor::zeros([kn], (Kind::Int64, dev)),
            cka: lead.cka.then(|| DeviceCka::new(self.k, lead.layers.len(), dev)),
        }
    }
}

fn split_idx(s: Split) -> usize {
    match s {
        Split::Train => 0,
        Split::Test => 1,
    }
}

impl Reducer for DeviceReducer {
    type Batch<'a> = DeviceBatch<'a>;

    fn begin(&mut self, plans: PassPlans) {
        assert_eq!(plans.len(), self.k, "one plan per network");
        self.plans = plans;
        self.failed = vec![None; self.k];
        self.splits = [None, None];
    }

    fn update(&mut self, split: Split, batch: DeviceBatch<'_>) -> Result<(), ProbeError> {
        let (dev, kn) = (self.device, self.k as i64);
        let s = split_idx(split);
        if self.splits[s].is_none() {
            if self.lead(split).is_none() {
                return Err(ProbeError::WrongPass("every network's probe has failed".into()));
            }
            self.splits[s] = Some(self.start(split));
        }
        let base = self.splits[s].as_ref().map_or(0, |a| a.rows);
        let n = batch.labels[0].len();
        // Each network's class index per row (0 and masked for rows not measured).
        let mut y = vec![0i64; self.k * n];
        let mut mask = vec![0.0f64; self.k * n];
        for k in 0..self.k {
            if !self.live(k) {
                continue;
            }
            let plan = &self.plans[k].as_ref().expect("live")[s];
            for (i, &label) in batch.labels[k].iter().enumerate() {
                match plan.class_map.get(label as usize) {
                    None => {
                        self.failed[k] = Some(ProbeError::LabelOutOfRange {
                            split: split.name(),
                            row: base + i as u64,
                            label: label as u64,
                            num_classes: plan.num_classes,
                        });
                        break;
                    }
                    Some(Some(c)) => {
                        y[k * n + i] = *c as i64;
                        mask[k * n + i] = 1.0;
                    }
                    Some(None) => {}
                }
            }
            if !self.live(k) {
                mask[k * n..(k + 1) * n].iter_mut().for_each(|m| *m = 0.0);
            }
        }
        if (0..self.k).all(|k| !self.live(k)) {
            return Err(self.failed.iter().flatten().next().cloned().expect("a failure"));
        }
        let acc = self.splits[s].as_mut().expect("started");
        let classes = self.plans.iter().flatten().next().map(|p| p[s].classes.len() as i64).expect("live");
        let all_kept = mask.iter().all(|&m| m == 1.0);
        let y = Tensor::from_slice(&y).view([kn, n as i64]).to_device(dev);
        let m = Tensor::from_slice(&mask).view([kn, n as i64]).to_device(dev);
        let mut onehot = y.onehot(classes).to_kind(F64);
        if !all_kept {
            onehot *= m.unsqueeze(2);
        }
        let kept = m.sum_dim_intlist(1, false, Kind::Int64);
        let keep = m.gt(0.5);
        acc.rows += n as u64;
        let top = acc.layers.len() - 1;
        let labels_map: Vec<i64> =
            self.plans.iter().flatten().next().map(|p| p[s].classes.iter().map(|&c| c as i64).collect()).expect("live");
        let mut cka_rows = Vec::new();
        for (i, (la, e)) in acc.layers.iter_mut().zip(batch.embeddings).enumerate() {
            let x = e.to_kind(F64);
            if acc.cka.is_some() {
                cka_rows.push(x.shallow_clone());
            }
            if let Some(mo) = la.moments.as_mut() {
                mo.update(&x, &onehot);
            }
            if let Some(g) = la.gram.as_mut() {
                let xm = if all_kept { x.shallow_clone() } else { &x * m.unsqueeze(2) };
                *g += xm.transpose(1, 2).bmm(&xm);
            }
            if let (Some(o), Some(correct)) = (la.ops.as_ref(), la.correct.as_mut()) {
                let scores = x.bmm(&o.joint);
                let xsq = x.square().sum_dim_intlist(2, true, F64);
                let dist = xsq - scores.narrow(2, 0, classes) * 2.0 + &o.mean_sq_norms;
                let pred = dist.argmin(2, false);
                let hit = pred.eq_tensor(&y).logical_and(&keep);
                *correct += hit.sum_dim_intlist(1, false, Kind::Int64);
                if let (Some(b), Some(lc)) = (o.linear_bias.as_ref(), la.linear_correct.as_mut()) {
                    let lin = scores.narrow(2, classes + o.r, classes) + b;
                    let hit = lin.argmax(2, false).eq_tensor(&y).logical_and(&keep);
                    *lc += hit.sum_dim_intlist(1, false, Kind::Int64);
                }
                if let Some(w) = la.within.as_mut() {
                    let mut p = scores.narrow(2, classes, o.r) - onehot.bmm(&o.mean_proj);
                    if !all_kept {
                        p *= m.unsqueeze(2);
                    }
                    *w += p.transpose(1, 2).bmm(&p);
                }
                if i == top {
                    let net = batch.logits.argmax(2, false);
                    let labels = Tensor::from_slice(&labels_map).to_device(dev);
                    let same =
                        labels.index_select(0, &pred.view([-1])).view([kn, -1]).eq_tensor(&net).logical_and(&keep);
                    acc.agree += same.sum_dim_intlist(1, false, Kind::Int64);
                    acc.counted += &kept;
                }
            }
        }
        if let Some(cka) = acc.cka.as_mut() {
            for k in 0..self.k {
                if self.failed[k].is_some() || self.plans[k].is_none() {
                    continue;
                }
                // Network k's measured rows, in order.
                let idx: Vec<i64> = (0..n).filter(|&i| mask[k * n + i] == 1.0).map(|i| i as i64).collect();
                let rows: Vec<Tensor> = match idx.len() == n {
                    true => cka_rows.iter().map(|x| x.select(0, k as i64)).collect(),
                    false => {
                        let idx = Tensor::from_slice(&idx).to_device(dev);
                        cka_rows.iter().map(|x| x.select(0, k as i64).index_select(0, &idx)).collect()
                    }
                };
                cka.push(k, rows, idx.len());
            }
        }
        Ok(())
    }

    fn end(&mut self) -> PassStats {
        let splits: Vec<Option<HostSplit>> =
            std::mem::take(&mut self.splits).into_iter().map(|a| a.map(|a| HostSplit::from(a, &self.failed))).collect();
        (0..self.k)
            .map(|k| {
                let plans = self.plans[k].as_ref()?;
                if let Some(e) = self.failed[k].take() {
                    return Some(Err(e));
                }
                Some(Ok([0, 1].map(|s| match &splits[s] {
                    Some(h) => h.network(k, &plans[s]),
                    None => empty(&plans[s]),
                })))
            })
            .collect()
    }
}

/// One split's statistics copied to the host (one sync).
struct HostSplit {
    rows: u64,
    counted: Vec<f64>,
    agree: Vec<f64>,
    layers: Vec<HostLayer>,
    /// Per network (None for a failed one), when planned.
    cka: Option<Vec<Option<CkaHsic>>>,
}

struct HostLayer {
    dim: usize,
    moments: Option<(Vec<f64>, Vec<f64>, Vec<f64>)>,
    gram: Option<Vec<f64>>,
    correct: Option<Vec<f64>>,
    linear_correct: Option<Vec<f64>>,
    within: Option<(usize, Vec<f64>, Vec<usize>)>,
}

impl HostSplit {
    fn from(mut acc: SplitAcc, failed: &[Option<ProbeError>]) -> HostSplit {
        let cka =
            acc.cka.as_mut().map(|c| (0..failed.len()).map(|k| failed[k].is_none().then(|| c.finish(k))).collect());
        HostSplit {
            cka,
            rows: acc.rows,
            counted: host_f64(&acc.counted),
            agree: host_f64(&acc.agree),
            layers: acc
                .layers
                .into_iter()
                .map(|l| HostLayer {
                    dim: l.dim,
                    moments: l.moments.map(|m| (host_f64(&m.counts), host_f64(&m.means), host_f64(&m.m2))),
                    gram: l.gram.as_ref().map(host_f64),
                    correct: l.correct.as_ref().map(host_f64),
                    linear_correct: l.linear_correct.as_ref().map(host_f64),
                    within: match (l.within.as_ref(), l.ops.as_ref()) {
                        (Some(w), Some(o)) => Some((o.r as usize, host_f64(w), o.ranks.clone())),
                        _ => None,
                    },
                })
                .collect(),
        }
    }

    /// Network k's statistics, in the form its plan asked for.
    fn network(&self, k: usize, plan: &SplitPlan) -> SplitStats {
        let c = plan.classes.len();
        let counted = self.counted[k] as u64;
        let layers = self
            .layers
            .iter()
            .zip(&plan.layers)
            .map(|(l, lp)| {
                let d = l.dim;
                LayerStats {
                    rows: self.rows,
                    moments: l.moments.as_ref().map(|(counts, means, m2)| {
                        ClassMoments::from_parts(
                            d,
                            counts[k * c..(k + 1) * c].iter().map(|v| v.round() as u64).collect(),
                            means[k * c * d..(k + 1) * c * d].to_vec(),
                            m2[k * c..(k + 1) * c].to_vec(),
                        )
                    }),
                    gram: l.gram.as_ref().map(|g| Gram::from_row_major(d, &g[k * d * d..(k + 1) * d * d])),
                    decisions: l.correct.as_ref().map(|cr| NccDecisions {
                        correct: cr[k] as u64,
                        counted,
                        linear_correct: l.linear_correct.as_ref().map_or(0, |lc| lc[k] as u64),
                    }),
                    within: if lp.within {
                        Some(match &l.within {
                            // Network k's own r×r block of the padded R×R sum.
                            Some((r_max, w, ranks)) => {
                                let (r, rr) = (ranks[k], *r_max);
                                let block = &w[k * rr * rr..(k + 1) * rr * rr];
                                let v: Vec<f64> = (0..r).flat_map(|i| block[i * rr..i * rr + r].to_vec()).collect();
                                WithinClassProjection::from_row_major(r, &v, counted)
                            }
                            None => WithinClassProjection::from_row_major(0, &[], counted),
                        })
                    } else {
                        None
                    },
                }
            })
            .collect();
        SplitStats {
            layers,
            agreement: plan.agreement.then_some(Agreement { agree: self.agree[k] as u64, total: counted }),
            cka: match (plan.cka, &self.cka) {
                (true, Some(c)) => c[k].clone(),
                (true, None) => Some(CkaHsic::new(plan.layers.len())),
                (false, _) => None,
            },
        }
    }
}

/// The statistics of a split no batch of which was seen in this pass (test in pass 1).
fn empty(plan: &SplitPlan) -> SplitStats {
    let c = plan.classes.len();
    SplitStats {
        layers: plan
            .layers
            .iter()
            .map(|lp| LayerStats {
                rows: 0,
                moments: lp.moments.then(|| ClassMoments::new(c, lp.dim)),
                gram: lp.gram.then(|| Gram::new(lp.dim)),
                decisions: lp.decisions.as_ref().map(|_| NccDecisions::default()),
                within: lp.decisions.as_ref().filter(|_| lp.within).map(|o| WithinClassProjection::new(o.rank)),
            })
            .collect(),
        agreement: plan.agreement.then(Agreement::default),
        cka: plan.cka.then(|| CkaHsic::new(plan.layers.len())),
    }
}
