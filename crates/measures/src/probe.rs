//! `LayerProbe`: streams every layer's embeddings of a train and a test split through the
//! accumulators, in the fewest passes the measures allow, and computes the per-layer measures.
//!
//! Pass 1 (`Pass::Moments`): train batches: per-class counts, means and variances (Chan
//!   merges), and the Gram matrix for the rank measures. Test batches fed here are optional:
//!   they give the test moments early.
//! Pass 2 (`Pass::Decisions`): the train split again (NCC decisions against the final means,
//!   within-class scatter projected on the between-class subspace) and the test split (NCC
//!   decisions against the train means, plus its moments unless pass 1 already had them). The
//!   test split can thus be seen once (trainer) or in both passes (a `for pass in passes()`
//!   loop), with the same results.

use std::collections::BTreeMap;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;
use serde::Serialize;

use crate::cdnv::{cdnv_mean, cdnv_pairs};
use crate::collapse::{
    fuzziness, nc1, nc2_equiangularity, nc2_equinorm, nc3_self_duality, BetweenClassSubspace, WithinClassProjection,
};
use crate::effective_depth::effective_depth;
use crate::error::ProbeError;
use crate::json;
pub use crate::moments::ClassMoments;
use crate::ncc::NccClassifier;
use crate::rank::{effective_rank, numerical_rank};
use crate::separation::{fit_log_linear, LogLinearFit};

/// Rows per block in pass 2: a block's f64 copy (256 × D × 8 bytes) stays in L2 for D ≤ 512.
const BLOCK_ROWS: usize = 256;

/// Index of the first NaN/±∞, scanning branch-free first (it vectorises) and locating only
/// on failure.
fn first_non_finite(x: &[f32]) -> Option<usize> {
    if x.iter().fold(true, |ok, v| ok & v.is_finite()) {
        None
    } else {
        x.iter().position(|v| !v.is_finite())
    }
}

/// The default ε list for effective depth.
pub const DEFAULT_EPS: [f64; 3] = [0.01, 0.05, 0.1];
/// Rank measures need a D×D Gram matrix; above this dimension they are skipped (null).
pub const DEFAULT_RANK_MAX_DIM: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Moments,
    Decisions,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    /// Labels run over 0..num_classes.
    pub num_classes: usize,
    /// Embedding dimension of each layer (layer i+1 at index i).
    pub dims: Vec<usize>,
    /// ε values for effective depth.
    pub eps: Vec<f64>,
    /// Restrict every measure to these classes (samples of other classes are ignored).
    pub classes: Option<Vec<usize>>,
    /// NC1, fuzziness (projections on the between-class subspace; O(C·D)).
    pub collapse_measures: bool,
    /// Numerical / effective rank for layers with dim ≤ this (0 disables; D×D memory).
    pub rank_max_dim: usize,
}

impl ProbeSpec {
    pub fn new(num_classes: usize, dims: Vec<usize>) -> Self {
        ProbeSpec {
            num_classes,
            dims,
            eps: DEFAULT_EPS.to_vec(),
            classes: None,
            collapse_measures: true,
            rank_max_dim: DEFAULT_RANK_MAX_DIM,
        }
    }
}

/// Per-layer results. Keys are stable; see docs/result-files.md.
#[derive(Clone, Debug, Serialize)]
pub struct LayerResult {
    pub layer: usize,
    pub dim: usize,
    #[serde(serialize_with = "json::f64_value")]
    pub ncc_train_acc: f64,
    #[serde(serialize_with = "json::opt_f64")]
    pub ncc_test_acc: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub cdnv_train: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub cdnv_test: Option<f64>,
    /// Mean over classes of the within-class variance Var_f(S_c) on train.
    #[serde(serialize_with = "json::opt_f64")]
    pub within_class_variance_train: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub nc1: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub fuzziness: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub nc2_equinorm: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub nc2_equiangularity: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub nc3_self_duality: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub nc4_agreement_train: Option<f64>,
    #[serde(serialize_with = "json::opt_f64")]
    pub nc4_agreement_test: Option<f64>,
    pub numerical_rank: Option<usize>,
    #[serde(serialize_with = "json::opt_f64")]
    pub effective_rank: Option<f64>,
    /// CDNV of every class pair (C×C row-major, NaN on the diagonal); written to cdnv_pairs.csv.
    #[serde(skip)]
    pub cdnv_pairs_train: Vec<f64>,
    #[serde(skip)]
    pub cdnv_pairs_test: Vec<f64>,
}

impl LayerResult {
    /// (metric name, split, value) for every scalar measure, in a fixed order (metrics.csv).
    pub fn scalar_metrics(&self) -> Vec<(&'static str, &'static str, Option<f64>)> {
        vec![
            ("ncc_acc", "train", Some(self.ncc_train_acc)),
            ("ncc_acc", "test", self.ncc_test_acc),
            ("cdnv", "train", self.cdnv_train),
            ("cdnv", "test", self.cdnv_test),
            ("within_class_variance", "train", self.within_class_variance_train),
            ("nc1", "train", self.nc1),
            ("fuzziness", "train", self.fuzziness),
            ("nc2_equinorm", "train", self.nc2_equinorm),
            ("nc2_equiangularity", "train", self.nc2_equiangularity),
            ("nc3_self_duality", "train", self.nc3_self_duality),
            ("nc4_agreement", "train", self.nc4_agreement_train),
            ("nc4_agreement", "test", self.nc4_agreement_test),
            ("numerical_rank", "train", self.numerical_rank.map(|r| r as f64)),
            ("effective_rank", "train", self.effective_rank),
        ]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    pub num_classes: usize,
    /// The classes measured (all, or the requested subset), in the order of the pair matrices.
    pub classes: Vec<usize>,
    pub train_samples: u64,
    pub test_samples: u64,
    pub layers: Vec<LayerResult>,
    /// ε → first layer with NCC train error ≤ ε; null when no layer is ε-separable.
    pub effective_depth: BTreeMap<String, Option<usize>>,
    /// He–Su log-linear fit of fuzziness across layers.
    pub fuzziness_fit: Option<LogLinearFit>,
}

/// Format ε as a JSON key: the shortest decimal that round-trips ("0.01").
pub fn eps_key(eps: f64) -> String {
    format!("{eps}")
}

#[derive(Default, Clone, Copy)]
struct Agreement {
    agree: u64,
    total: u64,
}

struct LayerState {
    layer: usize,
    dim: usize,
    train: ClassMoments,
    test: ClassMoments,
    gram: Option<Mat<f64>>,
    ncc: Option<NccClassifier>,
    subspace: Option<BetweenClassSubspace>,
    within: Option<WithinClassProjection>,
    correct: [u64; 2],
    counted: [u64; 2],
    /// Rows fed in the current pass, per split (all rows, counted or not).
    rows: [u64; 2],
    rows_pass1: u64,
    test_rows_pass1: u64,
    /// Pass 2: [μ_1 … μ_C | Q], D × (C + r) row-major, so one GEMM gives both the NCC dot
    /// products and the projections on the between-class subspace.
    joint: Vec<f64>,
    /// μ_c·Q, C × r: subtracted from x·Q to get Qᵀ(x − μ_y).
    mean_proj: Vec<f64>,
    x64: Vec<f64>,
    x_sq: Vec<f64>,
    proj: Vec<f64>,
    scores: Vec<f64>,
    class_of_row: Vec<Option<usize>>,
}

/// One layer's statistics of a whole split in one pass, reduced elsewhere (on an accelerator:
/// `depthprobe`'s device probe) from the same rows `LayerProbe::update` would have seen. Only
/// these O(C·D + D² + r²) numbers cross to the host, never the embeddings.
#[derive(Clone, Debug, Default)]
pub struct LayerReduction {
    /// Rows fed (all of them, in measured classes or not).
    pub rows: u64,
    /// Per-class moments of the measured rows: train in pass 1, test wherever `update` would
    /// accumulate them (pass 1, or pass 2 when pass 1 saw no test rows).
    pub moments: Option<ClassMoments>,
    /// Σ x xᵀ over the measured train rows, D×D row-major (pass 1, layers with a Gram matrix).
    pub gram: Option<Vec<f64>>,
    /// Pass 2: rows whose NCC decision equals their class, and rows decided.
    pub correct: u64,
    pub counted: u64,
    /// Pass 2 on train: Σ pᵀp of p = Qᵀ(x − μ_y), r×r row-major, and its row count.
    pub within: Option<(Vec<f64>, u64)>,
}

/// What a device needs for pass 2 on one layer: the decisions are argmin_c ‖x‖² − 2x·μ_c +
/// ‖μ_c‖² (lowest index on ties) with x·μ_c the first `classes` columns of x·joint, and the
/// projection is the other `rank` columns minus `mean_proj[y]`.
pub struct DecisionOperands<'a> {
    pub dim: usize,
    pub classes: usize,
    pub rank: usize,
    /// [μ_1 … μ_C | Q], D × (C + r) row-major.
    pub joint: &'a [f64],
    /// μ_c·Q, C × r row-major.
    pub mean_proj: &'a [f64],
    pub mean_sq_norms: &'a [f64],
    /// Whether pass 2 on the test split must also reduce its moments.
    pub test_moments: bool,
}

/// Streams embeddings of every layer through the measures. See the module docs for the passes.
pub struct LayerProbe {
    spec: ProbeSpec,
    /// Original label → index among the measured classes.
    class_map: Vec<Option<usize>>,
    classes: Vec<usize>,
    layers: Vec<LayerState>,
    pass: Pass,
    classifier: Option<Vec<f32>>,
    agreement: [Agreement; 2],
    agreement_scratch: (Vec<f64>, Vec<f64>, Vec<usize>),
}

impl LayerProbe {
    pub fn new(spec: ProbeSpec) -> Result<Self, ProbeError> {
        if spec.num_classes < 2 {
            return Err(ProbeError::InvalidSpec(format!("num_classes is {}; at least 2 are needed", spec.num_classes)));
        }
        if spec.dims.is_empty() {
            return Err(ProbeError::InvalidSpec("no layers".into()));
        }
        if let Some(l) = spec.dims.iter().position(|&d| d == 0) {
            return Err(ProbeError::InvalidSpec(format!("layer {} has dimension 0", l + 1)));
        }
        if let Some(e) = spec.eps.iter().find(|e| !(0.0..=1.0).contains(*e)) {
            return Err(ProbeError::InvalidSpec(format!("eps {e} is outside [0, 1]")));
        }
        let classes: Vec<usize> = match &spec.classes {
            None => (0..spec.num_classes).collect(),
            Some(cs) => {
                let mut cs = cs.clone();
                cs.sort_unstable();
                cs.dedup();
                if let Some(c) = cs.iter().find(|&&c| c >= spec.num_classes) {
                    return Err(ProbeError::InvalidSpec(format!(
                        "class subset names class {c}, but there are {} classes",
                        spec.num_classes
                    )));
                }
                if cs.len() < 2 {
                    return Err(ProbeError::InvalidSpec("a class subset needs at least 2 classes".into()));
                }
                cs
            }
        };
        let mut class_map = vec![None; spec.num_classes];
        for (i, &c) in classes.iter().enumerate() {
            class_map[c] = Some(i);
        }
        let k = classes.len();
        let layers = spec
            .dims
            .iter()
            .enumerate()
            .map(|(i, &dim)| LayerState {
                layer: i + 1,
                dim,
                train: ClassMoments::new(k, dim),
                test: ClassMoments::new(k, dim),
                gram: (dim <= spec.rank_max_dim).then(|| Mat::zeros(dim, dim)),
                ncc: None,
                subspace: None,
                within: None,
                correct: [0; 2],
                counted: [0; 2],
                rows: [0; 2],
                rows_pass1: 0,
                test_rows_pass1: 0,
                joint: Vec::new(),
                mean_proj: Vec::new(),
                x64: Vec::new(),
                x_sq: Vec::new(),
                proj: Vec::new(),
                scores: Vec::new(),
                class_of_row: Vec::new(),
            })
            .collect();
        Ok(LayerProbe {
            spec,
            class_map,
            classes,
            layers,
            pass: Pass::Moments,
            classifier: None,
            agreement: [Agreement::default(); 2],
            agreement_scratch: Default::default(),
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn spec(&self) -> &ProbeSpec {
        &self.spec
    }

    /// The measured classes (original labels), in index order.
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

    pub fn pass(&self) -> Pass {
        self.pass
    }

    /// Number of passes over the train split (the test split is needed in the last one only).
    pub const PASSES: usize = 2;

    /// Top-layer classifier weights (C×D_L row-major) for NC3.
    pub fn set_classifier(&mut self, weight: &[f32]) -> Result<(), ProbeError> {
        let d = *self.spec.dims.last().unwrap();
        if weight.len() != self.spec.num_classes * d {
            return Err(ProbeError::InvalidSpec(format!(
                "classifier weight has {} values, expected num_classes {} × top-layer dim {d}",
                weight.len(),
                self.spec.num_classes
            )));
        }
        // Keep only the measured classes' rows, in the order of `classes`.
        let mut w = Vec::with_capacity(self.classes.len() * d);
        for &c in &self.classes {
            w.extend_from_slice(&weight[c * d..(c + 1) * d]);
        }
        self.classifier = Some(w);
        Ok(())
    }

    /// Feed one batch of one layer (1-based `layer`): `x` row-major [rows, dim], `y` labels.
    pub fn update(&mut self, split: Split, layer: usize, x: &[f32], y: &[u32]) -> Result<(), ProbeError> {
        let nl = self.layers.len();
        if layer == 0 || layer > nl {
            return Err(ProbeError::NoSuchLayer { layer, layers: nl });
        }
        let (pass, map) = (self.pass, &self.class_map);
        self.layers[layer - 1].update(pass, split, x, y, map)
    }

    /// Feed one batch of every layer at once (`xs[i]` is layer i+1), layers in parallel.
    pub fn update_all(&mut self, split: Split, xs: &[&[f32]], y: &[u32]) -> Result<(), ProbeError> {
        if xs.len() != self.layers.len() {
            return Err(ProbeError::InvalidSpec(format!(
                "got {} layer batches for a probe of {} layers",
                xs.len(),
                self.layers.len()
            )));
        }
        let (pass, map) = (self.pass, &self.class_map);
        self.layers
            .par_iter_mut()
            .zip(xs.par_iter())
            .map(|(l, x)| l.update(pass, split, x, y, map))
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    /// NC4: feed the top layer's embeddings with the network's logits [rows, num_classes]
    /// (pass 2). Counts how often the top-layer NCC label equals the network's argmax.
    pub fn update_agreement(
        &mut self,
        split: Split,
        x_top: &[f32],
        logits: &[f32],
        y: &[u32],
    ) -> Result<(), ProbeError> {
        if self.pass != Pass::Decisions {
            return Err(ProbeError::WrongPass("NC4 agreement is fed in pass 2, once the train means are final".into()));
        }
        let c = self.spec.num_classes;
        let top = self.layers.last().unwrap();
        let d = top.dim;
        let rows = y.len();
        if x_top.len() != rows * d || logits.len() != rows * c {
            return Err(ProbeError::Shape { split: split.name(), layer: top.layer, values: x_top.len(), rows, dim: d });
        }
        let ncc = top.ncc.as_ref().expect("pass 2 has NCC means");
        let (x64, scores, preds) = &mut self.agreement_scratch;
        x64.clear();
        x64.extend(x_top.iter().map(|&v| v as f64));
        ncc.predict_into(x64, rows, scores, preds);
        let a = &mut self.agreement[split.idx()];
        for (i, &label) in y.iter().enumerate() {
            if (label as usize) >= c || self.class_map[label as usize].is_none() {
                continue;
            }
            let row = &logits[i * c..(i + 1) * c];
            let mut best = 0;
            for k in 1..c {
                if row[k] > row[best] {
                    best = k;
                }
            }
            a.total += 1;
            if self.classes[preds[i]] == best {
                a.agree += 1;
            }
        }
        Ok(())
    }

    /// Label → index among the measured classes (None: a class outside the subset); labels
    /// ≥ num_classes are out of range.
    pub fn class_index(&self, label: usize) -> Option<Option<usize>> {
        self.class_map.get(label).copied()
    }

    /// Pass-2 operands of a layer (1-based) for a device; None before `next_pass`.
    pub fn decision_operands(&self, layer: usize) -> Option<DecisionOperands<'_>> {
        let l = self.layers.get(layer.checked_sub(1)?)?;
        let ncc = l.ncc.as_ref()?;
        Some(DecisionOperands {
            dim: l.dim,
            classes: ncc.num_classes,
            rank: l.subspace.as_ref().map_or(0, |s| s.rank),
            joint: &l.joint,
            mean_proj: &l.mean_proj,
            mean_sq_norms: ncc.mean_sq_norms(),
            test_moments: l.test_rows_pass1 == 0,
        })
    }

    /// Merge one layer's (1-based) reduced statistics of `split` in the current pass, as if its
    /// rows had gone through `update`.
    pub fn absorb(&mut self, split: Split, layer: usize, red: LayerReduction) -> Result<(), ProbeError> {
        let nl = self.layers.len();
        if layer == 0 || layer > nl {
            return Err(ProbeError::NoSuchLayer { layer, layers: nl });
        }
        let pass = self.pass;
        let k = self.classes.len();
        let l = &mut self.layers[layer - 1];
        let d = l.dim;
        let s = split.idx();
        let bad = |what: String| Err(ProbeError::InvalidSpec(format!("{} layer {layer}: {what}", split.name())));
        if let Some(m) = &red.moments {
            if (m.dim, m.num_classes()) != (d, k) {
                return bad(format!("reduced moments are {} classes × {}, expected {k} × {d}", m.num_classes(), m.dim));
            }
            if !m.is_finite() {
                return Err(ProbeError::NonFiniteReduced { split: split.name(), layer });
            }
        }
        let wants_moments = match (pass, split) {
            (Pass::Moments, _) => true,
            (Pass::Decisions, Split::Test) => l.test_rows_pass1 == 0,
            (Pass::Decisions, Split::Train) => false,
        };
        if wants_moments != red.moments.is_some() {
            return bad(format!(
                "moments {} in this pass",
                if wants_moments { "are needed" } else { "are not expected" }
            ));
        }
        match pass {
            Pass::Moments => {
                if red.counted != 0 || red.within.is_some() {
                    return bad("NCC decisions belong to pass 2".into());
                }
                match (l.gram.as_mut(), &red.gram, split) {
                    (Some(g), Some(rg), Split::Train) if rg.len() == d * d => {
                        if rg.iter().any(|v| !v.is_finite()) {
                            return Err(ProbeError::NonFiniteReduced { split: split.name(), layer });
                        }
                        for i in 0..d {
                            for j in 0..d {
                                g[(i, j)] += rg[i * d + j];
                            }
                        }
                    }
                    (None, None, _) | (_, None, Split::Test) => {}
                    _ => return bad(format!("a D×D Gram matrix (D = {d}) is needed exactly when the layer keeps one")),
                }
            }
            Pass::Decisions => {
                if red.gram.is_some() {
                    return bad("the Gram matrix belongs to pass 1".into());
                }
                let r = l.subspace.as_ref().map_or(0, |sub| sub.rank);
                match (l.within.as_mut(), red.within, split) {
                    (Some(w), Some((sum, n)), Split::Train) if sum.len() == r * r => {
                        if sum.iter().any(|v| !v.is_finite()) {
                            return Err(ProbeError::NonFiniteReduced { split: split.name(), layer });
                        }
                        for i in 0..r {
                            for j in 0..r {
                                w.sum[(i, j)] += sum[i * r + j];
                            }
                        }
                        w.count += n;
                    }
                    (None, None, _) | (_, None, Split::Test) => {}
                    _ => return bad(format!("the within-class projection (r = {r}) is needed exactly on train")),
                }
                l.correct[s] += red.correct;
                l.counted[s] += red.counted;
            }
        }
        if let Some(m) = &red.moments {
            match split {
                Split::Train => l.train.merge(m),
                Split::Test => l.test.merge(m),
            }
        }
        l.rows[s] += red.rows;
        Ok(())
    }

    /// NC4 counts reduced on a device for one split (pass 2): `agree` of `total` measured rows
    /// whose top-layer NCC label equals the network's argmax.
    pub fn absorb_agreement(&mut self, split: Split, agree: u64, total: u64) -> Result<(), ProbeError> {
        if self.pass != Pass::Decisions {
            return Err(ProbeError::WrongPass("NC4 agreement is fed in pass 2, once the train means are final".into()));
        }
        if agree > total {
            return Err(ProbeError::InvalidSpec(format!("NC4 agreement {agree} of {total} rows")));
        }
        let a = &mut self.agreement[split.idx()];
        a.agree += agree;
        a.total += total;
        Ok(())
    }

    /// End pass 1: fix the train class means and prepare pass 2.
    pub fn next_pass(&mut self) -> Result<(), ProbeError> {
        if self.pass != Pass::Moments {
            return Err(ProbeError::WrongPass("next_pass called twice: the probe has two passes".into()));
        }
        let expected = self.layers[0].rows[0];
        for l in &self.layers {
            if l.rows[0] != expected {
                return Err(ProbeError::RowCountMismatch { split: "train", layer: l.layer, rows: l.rows[0], expected });
            }
        }
        if let Some(k) = self.layers[0].train.counts.iter().position(|&n| n == 0) {
            return Err(ProbeError::EmptyClass { class: self.classes[k] });
        }
        let collapse = self.spec.collapse_measures;
        self.layers.par_iter_mut().for_each(|l| {
            let k = l.train.num_classes();
            let d = l.dim;
            l.ncc = Some(NccClassifier::new(l.train.means.clone(), k, d));
            let r = if collapse {
                let sub = BetweenClassSubspace::new(&l.train);
                l.within = Some(WithinClassProjection::new(sub.rank));
                let r = sub.rank;
                l.subspace = Some(sub);
                r
            } else {
                0
            };
            let w = k + r;
            l.joint = vec![0.0; d * w];
            l.mean_proj = vec![0.0; k * r];
            for i in 0..d {
                for c in 0..k {
                    l.joint[i * w + c] = l.train.mean(c)[i];
                }
            }
            if let Some(sub) = &l.subspace {
                for i in 0..d {
                    for j in 0..r {
                        let q = sub.basis[i * r + j];
                        l.joint[i * w + k + j] = q;
                        for c in 0..k {
                            l.mean_proj[c * r + j] += l.train.mean(c)[i] * q;
                        }
                    }
                }
            }
            l.rows_pass1 = l.rows[0];
            l.test_rows_pass1 = l.rows[1];
            l.rows = [0; 2];
        });
        self.pass = Pass::Decisions;
        Ok(())
    }

    /// Compute every measure. Requires pass 2 to have seen the whole train split again.
    pub fn finish(self) -> Result<ProbeResult, ProbeError> {
        if self.pass != Pass::Decisions {
            return Err(ProbeError::WrongPass(
                "finish called before pass 2 (call next_pass after the first train pass)".into(),
            ));
        }
        for l in &self.layers {
            if l.rows[0] != l.rows_pass1 {
                return Err(ProbeError::WrongPass(format!(
                    "layer {}: pass 2 saw {} train rows but pass 1 saw {}; both passes must see the same train split",
                    l.layer, l.rows[0], l.rows_pass1
                )));
            }
        }
        for l in &self.layers {
            if l.test_rows_pass1 > 0 && l.rows[1] != l.test_rows_pass1 {
                return Err(ProbeError::WrongPass(format!(
                    "layer {}: pass 2 saw {} test rows but pass 1 saw {}; feed the same test split in both passes, or only in pass 2",
                    l.layer, l.rows[1], l.test_rows_pass1
                )));
            }
        }
        let test_rows = self.layers[0].rows[1];
        for l in &self.layers {
            if l.rows[1] != test_rows {
                return Err(ProbeError::RowCountMismatch {
                    split: "test",
                    layer: l.layer,
                    rows: l.rows[1],
                    expected: test_rows,
                });
            }
        }
        let k = self.classes.len();
        let nl = self.layers.len();
        let classifier = self.classifier.as_deref();
        let agreement = self.agreement;
        let layers: Vec<LayerResult> =
            self.layers.par_iter().map(|l| l.result(k, l.layer == nl, classifier, &agreement)).collect();
        let errs: Vec<f64> = layers.iter().map(|l| 1.0 - l.ncc_train_acc).collect();
        let effective_depth = self.spec.eps.iter().map(|&e| (eps_key(e), effective_depth(&errs, e))).collect();
        let fz: Vec<(usize, f64)> = layers.iter().filter_map(|l| l.fuzziness.map(|f| (l.layer, f))).collect();
        Ok(ProbeResult {
            num_classes: self.spec.num_classes,
            classes: self.classes,
            train_samples: self.layers[0].counted[0],
            test_samples: self.layers[0].counted[1],
            layers,
            effective_depth,
            fuzziness_fit: fit_log_linear(&fz),
        })
    }
}

impl LayerState {
    fn update(
        &mut self,
        pass: Pass,
        split: Split,
        x: &[f32],
        y: &[u32],
        map: &[Option<usize>],
    ) -> Result<(), ProbeError> {
        let d = self.dim;
        let rows = y.len();
        let s = split.idx();
        if x.len() != rows * d {
            return Err(ProbeError::Shape { split: split.name(), layer: self.layer, values: x.len(), rows, dim: d });
        }
        let base = self.rows[s];
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
        if let Some(p) = first_non_finite(x) {
            return Err(ProbeError::NonFinite {
                split: split.name(),
                layer: self.layer,
                row: base + (p / d) as u64,
                col: p % d,
                value: x[p],
            });
        }
        self.rows[s] += rows as u64;
        match (pass, split) {
            (Pass::Moments, Split::Test) => self.test.update(x, &self.class_of_row),
            (Pass::Moments, Split::Train) => {
                self.train.update(x, &self.class_of_row);
                if let Some(g) = self.gram.as_mut() {
                    // Rank is of the measured classes' rows only.
                    self.x64.clear();
                    let mut kept = 0;
                    for (row, c) in x.chunks_exact(d).zip(&self.class_of_row) {
                        if c.is_some() {
                            self.x64.extend(row.iter().map(|&v| v as f64));
                            kept += 1;
                        }
                    }
                    let xm = MatRef::from_row_major_slice(&self.x64, kept, d);
                    matmul(g.as_mut(), Accum::Add, xm.transpose(), xm, 1.0, Par::Seq);
                }
            }
            (Pass::Decisions, _) => {
                if split == Split::Test && self.test_rows_pass1 == 0 {
                    self.test.update(x, &self.class_of_row);
                }
                self.decide_and_project(split, x);
            }
        }
        Ok(())
    }

    /// Pass 2 on one batch, in blocks of BLOCK_ROWS rows that stay in cache: NCC decisions
    /// against the train means and, on train, the within-class scatter projected on Q.
    fn decide_and_project(&mut self, split: Split, x: &[f32]) {
        let d = self.dim;
        let s = split.idx();
        let ncc = self.ncc.as_ref().expect("pass 2 has NCC means");
        let k = ncc.num_classes;
        let r = self.subspace.as_ref().map_or(0, |sub| sub.rank);
        let w = k + r;
        let project = split == Split::Train && self.within.is_some();
        let mut labels = Vec::with_capacity(BLOCK_ROWS);
        for (xb, cb) in x.chunks(BLOCK_ROWS * d).zip(self.class_of_row.chunks(BLOCK_ROWS)) {
            self.x64.clear();
            self.x_sq.clear();
            labels.clear();
            for (row, c) in xb.chunks_exact(d).zip(cb) {
                if let Some(c) = *c {
                    self.x_sq.push(crate::kernels::widen_with_sq_norm(row, &mut self.x64));
                    labels.push(c);
                }
            }
            let kept = labels.len();
            if kept == 0 {
                continue;
            }
            self.scores.resize(kept * w, 0.0);
            let dst = MatMut::from_row_major_slice_mut(&mut self.scores, kept, w);
            let xs = MatRef::from_row_major_slice(&self.x64, kept, d);
            matmul(dst, Accum::Replace, xs, MatRef::from_row_major_slice(&self.joint, d, w), 1.0, Par::Seq);
            for (i, &label) in labels.iter().enumerate() {
                if ncc.decide(self.x_sq[i], &self.scores[i * w..i * w + k]) == label {
                    self.correct[s] += 1;
                }
            }
            self.counted[s] += kept as u64;
            if project {
                self.proj.clear();
                for (i, &label) in labels.iter().enumerate() {
                    let xq = &self.scores[i * w + k..(i + 1) * w];
                    let mq = &self.mean_proj[label * r..(label + 1) * r];
                    self.proj.extend(xq.iter().zip(mq).map(|(a, b)| a - b));
                }
                self.within.as_mut().unwrap().update(&self.proj, kept);
            }
        }
    }

    fn result(&self, k: usize, is_top: bool, classifier: Option<&[f32]>, agreement: &[Agreement; 2]) -> LayerResult {
        let acc = |s: usize| (self.counted[s] > 0).then(|| self.correct[s] as f64 / self.counted[s] as f64);
        let pairs_train = cdnv_pairs(&self.train);
        let pairs_test = cdnv_pairs(&self.test);
        let vars: Vec<f64> = (0..k).filter_map(|c| self.train.variance(c)).collect();
        let (nc1v, fz, eqn, eqa) = match (&self.subspace, &self.within) {
            (Some(sub), Some(w)) => (nc1(sub, w), fuzziness(sub, w), nc2_equinorm(sub), nc2_equiangularity(sub)),
            _ => (None, None, None, None),
        };
        let nc3 = if is_top {
            classifier.and_then(|w| nc3_self_duality(&self.train, &self.train.global_mean(), w))
        } else {
            None
        };
        let agree = |s: usize| {
            let a = agreement[s];
            (is_top && a.total > 0).then(|| a.agree as f64 / a.total as f64)
        };
        let (nrank, erank) = match &self.gram {
            Some(g) => {
                let sv: Vec<f64> = g
                    .self_adjoint_eigenvalues(Side::Lower)
                    .map(|ev| ev.into_iter().map(|l| l.max(0.0).sqrt()).collect())
                    .unwrap_or_default();
                let n = self.train.total() as usize;
                (Some(numerical_rank(&sv, n, self.dim)), effective_rank(&sv))
            }
            None => (None, None),
        };
        LayerResult {
            layer: self.layer,
            dim: self.dim,
            ncc_train_acc: acc(0).unwrap_or(f64::NAN),
            ncc_test_acc: acc(1),
            cdnv_train: cdnv_mean(&pairs_train, k),
            cdnv_test: cdnv_mean(&pairs_test, k),
            within_class_variance_train: (!vars.is_empty()).then(|| vars.iter().sum::<f64>() / vars.len() as f64),
            nc1: nc1v,
            fuzziness: fz,
            nc2_equinorm: eqn,
            nc2_equiangularity: eqa,
            nc3_self_duality: nc3,
            nc4_agreement_train: agree(0),
            nc4_agreement_test: agree(1),
            numerical_rank: nrank,
            effective_rank: erank,
            cdnv_pairs_train: pairs_train,
            cdnv_pairs_test: pairs_test,
        }
    }
}
