//! The host reduction: f32 rows in memory, every statistic accumulated in f64 in Rust, networks
//! and layers in parallel. Used by `measure`, by Python, and by training on the CPU.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::{PassPlans, PassStats, Reducer};
use crate::error::ProbeError;
use crate::spec::Split;
use crate::statistics::{
    Agreement, CkaBatcher, ClassMoments, Gram, LayerPlan, LayerStats, NccDecisions, SplitPlan, SplitStats,
    WithinClassProjection,
};

/// Rows per block: a block is checked and reduced while in cache, and in pass 2 its f64 copy
/// (256 × D × 8 bytes) stays in L2 for D ≤ 512. The NCC decisions' GEMM runs on such blocks,
/// so changing this may change rounding in them.
const BLOCK_ROWS: usize = 256;
/// Rows per group of the class moments (two-pass inside, Chan merges between): a group is read
/// twice, and 512 rows stay in L2 for D ≤ 512. Batches up to this size (training's) reduce as one
/// group, so their numbers do not depend on it; a multiple of BLOCK_ROWS.
const GROUP_ROWS: usize = 1024;

/// One network's rows of one batch.
pub struct NetworkRows<'a> {
    /// Every layer's rows, row-major [n, D_i], layer 1 first.
    pub layers: Vec<&'a [f32]>,
    /// The network's logits [n, C], for NC4 (without them NC4 is not measured).
    pub logits: Option<&'a [f32]>,
    pub labels: &'a [u32],
}

/// Takes one batch of a layer stream: rows, labels, and the logits where asked for.
pub type LayerSink<'s> = dyn FnMut(&[f32], &[u32], Option<&[f32]>) -> Result<(), ProbeError> + 's;

/// One network's whole split, each layer readable on its own (as `measure`'s files are).
pub trait LayerStreams: Sync {
    /// Stream layer `layer` (1 = first) from the split's first row to its last, in batches, into
    /// `sink(rows, labels, logits)`; with `logits` the batches carry the network's logits too
    /// (where there are any). Stop at the first error, the sink's included.
    fn stream(&self, layer: usize, logits: bool, sink: &mut LayerSink<'_>) -> Result<(), ProbeError>;

    /// Stream every layer's rows of the same batches together, from the first row to the last,
    /// into `sink(layers, labels)`: what a cross-layer statistic (CKA) needs.
    fn stream_all(&self, sink: &mut AllLayersSink<'_>) -> Result<(), ProbeError>;
}

/// Takes one batch of every layer at once (layer 1 first) and its labels.
pub type AllLayersSink<'s> = dyn FnMut(&[&[f32]], &[u32]) -> Result<(), ProbeError> + 's;

/// What the host reduction takes.
#[derive(Clone, Copy)]
pub enum HostBatch<'a> {
    /// One batch of rows of every network, every layer at once (network k's at index k).
    Rows(&'a [NetworkRows<'a>]),
    /// The whole split of the one network (K = 1), each layer streamed on its own, in parallel.
    Streams(&'a dyn LayerStreams),
}

/// Index of the first NaN/±∞, scanning branch-free first (it vectorises) and locating only
/// on failure.
fn first_non_finite(x: &[f32]) -> Option<usize> {
    if crate::kernels::all_finite(x) {
        None
    } else {
        x.iter().position(|v| !v.is_finite())
    }
}

/// One layer's accumulators for one split in the current pass.
struct HostLayer {
    layer: usize,
    plan: LayerPlan,
    rows: u64,
    moments: Option<ClassMoments>,
    gram: Option<Gram>,
    decisions: Option<NccDecisions>,
    within: Option<WithinClassProjection>,
    x64: Vec<f64>,
    x_sq: Vec<f64>,
    proj: Vec<f64>,
    scores: Vec<f64>,
    labels: Vec<usize>,
    class_of_row: Vec<Option<usize>>,
}

impl HostLayer {
    fn new(layer: usize, plan: &LayerPlan, classes: usize) -> HostLayer {
        HostLayer {
            layer,
            rows: 0,
            moments: plan.moments.then(|| ClassMoments::new(classes, plan.dim)),
            gram: plan.gram.then(|| Gram::new(plan.dim)),
            decisions: plan.decisions.as_ref().map(|_| NccDecisions::default()),
            within: plan.decisions.as_ref().filter(|_| plan.within).map(|o| WithinClassProjection::new(o.rank)),
            plan: plan.clone(),
            x64: Vec::new(),
            x_sq: Vec::new(),
            proj: Vec::new(),
            scores: Vec::new(),
            labels: Vec::new(),
            class_of_row: Vec::new(),
        }
    }

    /// Check and reduce one batch of this layer. Nothing is changed when the batch is refused:
    /// every statistic is staged and committed only once the whole batch has been checked.
    /// The batch goes through in blocks of BLOCK_ROWS rows, each checked and reduced while it
    /// is in cache, so its rows are read from memory once.
    fn update(&mut self, split: Split, x: &[f32], y: &[u32], map: &[Option<usize>]) -> Result<(), ProbeError> {
        let d = self.plan.dim;
        let rows = y.len();
        if x.len() != rows * d {
            return Err(ProbeError::Shape { split: split.name(), layer: self.layer, values: x.len(), rows, dim: d });
        }
        let base = self.rows;
        self.class_of_row.clear();
        for (i, &label) in y.iter().enumerate() {
            let c = map.get(label as usize).ok_or(ProbeError::LabelOutOfRange {
                split: split.name(),
                row: base + i as u64,
                label: label as u64,
                num_classes: map.len(),
            })?;
            self.class_of_row.push(*c);
        }
        if let Some(m) = self.moments.as_mut() {
            m.begin_batch();
        }
        if let Some(g) = self.gram.as_mut() {
            g.begin_batch();
        }
        let mut decided = NccDecisions::default();
        // r×r (r ≤ C): staged as a copy, updated block by block.
        let mut within = self.within.clone();
        let class_of_row = std::mem::take(&mut self.class_of_row);
        let result = (|| {
            let groups = x.chunks(GROUP_ROWS * d).zip(class_of_row.chunks(GROUP_ROWS));
            for (g, (xg, cg)) in groups.enumerate() {
                if let Some(m) = self.moments.as_mut() {
                    m.begin_group();
                }
                for (b, (xb, cb)) in xg.chunks(BLOCK_ROWS * d).zip(cg.chunks(BLOCK_ROWS)).enumerate() {
                    // The block is checked in the same read that first reduces it.
                    let finite = match (self.moments.as_mut(), self.decisions.is_some()) {
                        (Some(m), _) => m.add_sums(xb, cb),
                        (None, true) => self.widen(xb, cb),
                        (None, false) => crate::kernels::all_finite(xb),
                    };
                    if !finite {
                        let p = first_non_finite(xb).expect("a non-finite value");
                        return Err(ProbeError::NonFinite {
                            split: split.name(),
                            layer: self.layer,
                            row: base + (g * GROUP_ROWS + b * BLOCK_ROWS + p / d) as u64,
                            col: p % d,
                            value: xb[p],
                        });
                    }
                    if let Some(gram) = self.gram.as_mut() {
                        // Rank is of the measured classes' rows only.
                        let kept: Vec<&[f32]> =
                            xb.chunks_exact(d).zip(cb).filter(|(_, c)| c.is_some()).map(|(r, _)| r).collect();
                        gram.stage(&kept);
                    }
                    if self.decisions.is_some() {
                        if self.moments.is_some() {
                            self.widen(xb, cb);
                        }
                        self.decide_and_project(&mut decided, within.as_mut());
                    }
                }
                if let Some(m) = self.moments.as_mut() {
                    // The M2 sweep reads the group a second time, from cache.
                    m.end_group(xg, cg);
                }
            }
            Ok(())
        })();
        self.class_of_row = class_of_row;
        result?;
        self.rows += rows as u64;
        if let Some(m) = self.moments.as_mut() {
            m.commit();
        }
        if let Some(g) = self.gram.as_mut() {
            g.commit();
        }
        if let Some(dec) = self.decisions.as_mut() {
            dec.merge(&decided);
            self.within = within;
        }
        Ok(())
    }

    /// The block's rows of measured classes widened to f64 (x64, with x_sq and labels), for the
    /// decisions; false when the block holds a non-finite value.
    fn widen(&mut self, xb: &[f32], cb: &[Option<usize>]) -> bool {
        self.x64.clear();
        self.x_sq.clear();
        self.labels.clear();
        crate::kernels::widen_rows(xb, cb, self.plan.dim, &mut self.x64, &mut self.x_sq, &mut self.labels)
    }

    /// Pass 2 on one widened block: NCC decisions against the train means, counted into
    /// `decided`, and, where planned, the within-class scatter of the rows projected on Q added
    /// to `within`.
    fn decide_and_project(&mut self, decided: &mut NccDecisions, within: Option<&mut WithinClassProjection>) {
        let d = self.plan.dim;
        let ops = self.plan.decisions.as_ref().expect("pass 2 has decision operands");
        let ncc = &ops.ncc;
        let k = ops.classes;
        let r = ops.rank;
        let w = ops.width();
        let kept = self.labels.len();
        if kept == 0 {
            return;
        }
        self.scores.resize(kept * w, 0.0);
        let dst = MatMut::from_row_major_slice_mut(&mut self.scores, kept, w);
        let xs = MatRef::from_row_major_slice(&self.x64, kept, d);
        matmul(dst, Accum::Replace, xs, MatRef::from_row_major_slice(&ops.joint, d, w), 1.0, Par::Seq);
        for (i, &label) in self.labels.iter().enumerate() {
            if ncc.decide(self.x_sq[i], &self.scores[i * w..i * w + k]) == label {
                decided.correct += 1;
            }
            if ops.linear_decide(&self.scores[i * w..(i + 1) * w]) == Some(label) {
                decided.linear_correct += 1;
            }
        }
        decided.counted += kept as u64;
        if let Some(within) = within {
            self.proj.clear();
            for (i, &label) in self.labels.iter().enumerate() {
                let xq = &self.scores[i * w + k..i * w + k + r];
                let mq = &ops.mean_proj[label * r..(label + 1) * r];
                self.proj.extend(xq.iter().zip(mq).map(|(a, b)| a - b));
            }
            within.update(&self.proj, kept);
        }
    }

    fn stats(&mut self) -> LayerStats {
        if let Some(g) = self.gram.as_mut() {
            g.mirror();
        }
        LayerStats {
            rows: self.rows,
            moments: self.moments.take(),
            gram: self.gram.take(),
            decisions: self.decisions.take(),
            within: self.within.take(),
        }
    }
}

/// One network's accumulators for one split in the current pass.
struct HostSplit {
    plan: SplitPlan,
    layers: Vec<HostLayer>,
    agreement: Option<Agreement>,
    cka: Option<CkaBatcher>,
    scratch: (Vec<f64>, Vec<f64>, Vec<usize>),
}

impl HostSplit {
    fn new(plan: SplitPlan) -> HostSplit {
        let c = plan.classes.len();
        let layers = plan.layers.iter().enumerate().map(|(i, l)| HostLayer::new(i + 1, l, c)).collect();
        let dims: Vec<usize> = plan.layers.iter().map(|l| l.dim).collect();
        HostSplit {
            agreement: plan.agreement.then(Agreement::default),
            cka: plan.cka.then(|| CkaBatcher::new(&dims)),
            plan,
            layers,
            scratch: Default::default(),
        }
    }

    fn update_layer(&mut self, layer: usize, x: &[f32], y: &[u32]) -> Result<(), ProbeError> {
        if self.cka.is_some() {
            return Err(ProbeError::InvalidSpec(
                "CKA pairs the rows of every layer of a batch: feed every layer at once (update_all)".into(),
            ));
        }
        let nl = self.layers.len();
        if layer == 0 || layer > nl {
            return Err(ProbeError::NoSuchLayer { layer, layers: nl });
        }
        let split = self.plan.split;
        let map = self.plan.class_map.clone();
        self.layers[layer - 1].update(split, x, y, &map)
    }

    /// Every layer at once, layers in parallel.
    fn update_all(&mut self, xs: &[&[f32]], y: &[u32]) -> Result<(), ProbeError> {
        if xs.len() != self.layers.len() {
            return Err(ProbeError::InvalidSpec(format!(
                "got {} layer batches for a probe of {} layers",
                xs.len(),
                self.layers.len()
            )));
        }
        let split = self.plan.split;
        let map = &self.plan.class_map;
        self.layers
            .par_iter_mut()
            .zip(xs.par_iter())
            .map(|(l, x)| l.update(split, x, y, map))
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    /// NC4: how often the top layer's NCC label equals the network's argmax.
    fn update_agreement(&mut self, x_top: &[f32], logits: &[f32], y: &[u32]) -> Result<(), ProbeError> {
        let top = self.layers.last().expect("at least one layer");
        let Some(agreement) = self.agreement.as_mut() else {
            return Err(ProbeError::WrongPass("NC4 agreement is fed in pass 2, once the train means are final".into()));
        };
        agree(top, &self.plan, agreement, &mut self.scratch, x_top, logits, y)
    }

    /// Every layer's whole split, each streamed on its own, layers in parallel: no layer waits
    /// for another between batches. The top layer's stream also brings the logits for NC4.
    fn update_streams(&mut self, streams: &dyn LayerStreams) -> Result<(), ProbeError> {
        let split = self.plan.split;
        let plan = &self.plan;
        let nc4 = std::sync::Mutex::new((self.agreement.as_mut(), &mut self.scratch));
        let top = self.layers.len();
        self.layers
            .par_iter_mut()
            .map(|l| {
                let is_top = l.layer == top;
                streams.stream(l.layer, is_top && plan.agreement, &mut |x, y, logits| {
                    l.update(split, x, y, &plan.class_map)?;
                    match (is_top, logits) {
                        (true, Some(lg)) => {
                            let mut g = nc4.lock().expect("only the top layer takes it");
                            let (agreement, scratch) = &mut *g;
                            match agreement.as_deref_mut() {
                                Some(a) => agree(l, plan, a, scratch, x, lg, y),
                                None => Ok(()),
                            }
                        }
                        _ => Ok(()),
                    }
                })
            })
            .collect::<Result<Vec<()>, _>>()?;
        // CKA pairs rows of every layer: one more read of the split, every layer together,
        // once each layer's own stream has checked its rows.
        if self.cka.is_some() {
            streams.stream_all(&mut |xs, y| {
                self.update_cka(xs, y);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// CKA's minibatches from a batch of every layer whose rows have been checked.
    fn update_cka(&mut self, xs: &[&[f32]], y: &[u32]) {
        if let Some(cka) = self.cka.as_mut() {
            let map = &self.plan.class_map;
            let keep: Vec<bool> = y.iter().map(|&l| map.get(l as usize).is_some_and(|c| c.is_some())).collect();
            cka.push(xs, &keep);
        }
    }

    /// Every layer's rows of one batch, and CKA's minibatches from them once all are checked.
    fn update_rows(&mut self, xs: &[&[f32]], y: &[u32]) -> Result<(), ProbeError> {
        self.update_all(xs, y)?;
        self.update_cka(xs, y);
        Ok(())
    }

    fn update(&mut self, rows: &NetworkRows<'_>) -> Result<(), ProbeError> {
        self.update_rows(&rows.layers, rows.labels)?;
        if let (true, Some(lg)) = (self.agreement.is_some(), rows.logits) {
            self.update_agreement(rows.layers.last().expect("at least one layer"), lg, rows.labels)?;
        }
        Ok(())
    }

    fn stats(&mut self) -> SplitStats {
        SplitStats {
            layers: self.layers.iter_mut().map(HostLayer::stats).collect(),
            agreement: self.agreement,
            cka: self.cka.take().map(CkaBatcher::finish),
        }
    }
}

/// NC4 on one batch of the top layer: count the rows whose NCC class (train means) is the
/// network's argmax.
fn agree(
    top: &HostLayer,
    plan: &SplitPlan,
    agreement: &mut Agreement,
    scratch: &mut (Vec<f64>, Vec<f64>, Vec<usize>),
    x_top: &[f32],
    logits: &[f32],
    y: &[u32],
) -> Result<(), ProbeError> {
    let ops = top.plan.decisions.as_ref().expect("NC4 is planned with the decisions");
    let c = plan.num_classes;
    let d = top.plan.dim;
    let rows = y.len();
    if x_top.len() != rows * d || logits.len() != rows * c {
        return Err(ProbeError::Shape {
            split: plan.split.name(),
            layer: top.layer,
            values: x_top.len(),
            rows,
            dim: d,
        });
    }
    let (x64, scores, preds) = scratch;
    x64.clear();
    x64.extend(x_top.iter().map(|&v| v as f64));
    ops.ncc.predict_into(x64, rows, scores, preds);
    for (i, &label) in y.iter().enumerate() {
        if (label as usize) >= c || plan.class_map[label as usize].is_none() {
            continue;
        }
        let row = &logits[i * c..(i + 1) * c];
        let mut best = 0;
        for k in 1..c {
            if row[k] > row[best] {
                best = k;
            }
        }
        agreement.total += 1;
        if plan.classes[preds[i]] == best {
            agreement.agree += 1;
        }
    }
    Ok(())
}

#[derive(Default)]
struct HostNetwork {
    failed: Option<ProbeError>,
    splits: Option<[HostSplit; 2]>,
}

/// The host reduction of K networks (K = 1 for `measure` and Python).
pub struct HostReducer {
    nets: Vec<HostNetwork>,
}

impl HostReducer {
    pub fn new(networks: usize) -> HostReducer {
        HostReducer { nets: (0..networks).map(|_| HostNetwork::default()).collect() }
    }

    fn split(&mut self, k: usize, split: Split) -> Result<&mut HostSplit, ProbeError> {
        let net = &mut self.nets[k];
        if let Some(e) = &net.failed {
            return Err(e.clone());
        }
        net.splits
            .as_mut()
            .map(|s| &mut s[split.idx()])
            .ok_or_else(|| ProbeError::WrongPass("no pass has begun (the probe has finished)".into()))
    }

    /// Push one layer's batch of network k (the Python and single-layer path). An error leaves
    /// the accumulators as they were.
    pub fn update_layer(
        &mut self,
        k: usize,
        split: Split,
        layer: usize,
        x: &[f32],
        y: &[u32],
    ) -> Result<(), ProbeError> {
        self.split(k, split)?.update_layer(layer, x, y)
    }

    /// Push every layer's batch of network k at once.
    pub fn update_all(&mut self, k: usize, split: Split, xs: &[&[f32]], y: &[u32]) -> Result<(), ProbeError> {
        self.split(k, split)?.update_rows(xs, y)
    }

    /// Push the top layer's rows with the network's logits for NC4 (pass 2).
    pub fn update_agreement(
        &mut self,
        k: usize,
        split: Split,
        x_top: &[f32],
        logits: &[f32],
        y: &[u32],
    ) -> Result<(), ProbeError> {
        self.split(k, split)?.update_agreement(x_top, logits, y)
    }
}

impl Reducer for HostReducer {
    type Batch<'a> = HostBatch<'a>;

    fn begin(&mut self, plans: PassPlans) {
        assert_eq!(plans.len(), self.nets.len(), "one plan per network");
        for (net, plan) in self.nets.iter_mut().zip(plans) {
            net.splits = plan.map(|[train, test]| [HostSplit::new(train), HostSplit::new(test)]);
        }
    }

    fn update(&mut self, split: Split, batch: Self::Batch<'_>) -> Result<(), ProbeError> {
        let update = |net: &mut HostNetwork, f: &dyn Fn(&mut HostSplit) -> Result<(), ProbeError>| {
            if net.failed.is_some() {
                return;
            }
            if let Some(s) = net.splits.as_mut() {
                if let Err(e) = f(&mut s[split.idx()]) {
                    net.failed = Some(e);
                    net.splits = None;
                }
            }
        };
        match batch {
            HostBatch::Rows(batch) => {
                assert_eq!(batch.len(), self.nets.len(), "one batch of rows per network");
                self.nets.par_iter_mut().zip(batch.par_iter()).for_each(|(net, rows)| update(net, &|s| s.update(rows)));
            }
            HostBatch::Streams(streams) => {
                assert_eq!(self.nets.len(), 1, "layer streams are of one network");
                update(&mut self.nets[0], &|s| s.update_streams(streams));
            }
        }
        let planned = self.nets.iter().filter(|n| n.failed.is_some() || n.splits.is_some());
        match planned.clone().all(|n| n.failed.is_some()) && planned.count() > 0 {
            true => Err(self.nets.iter().find_map(|n| n.failed.clone()).expect("a failure")),
            false => Ok(()),
        }
    }

    fn end(&mut self) -> PassStats {
        self.nets
            .iter_mut()
            .map(|net| {
                if let Some(e) = net.failed.take() {
                    net.splits = None;
                    return Some(Err(e));
                }
                net.splits.take().map(|mut s| Ok([s[0].stats(), s[1].stats()]))
            })
            .collect()
    }
}
