//! The statistics a probe accumulates, one accumulator per file, and the two types every
//! reduction (the host engine here, a device in the engine) speaks:
//!
//! * [`SplitPlan`]: what to accumulate for one split in the current pass, per layer;
//! * [`SplitStats`]: what was accumulated, per layer.
//!
//! Adding a measure = one accumulator here + a field in [`LayerStats`] + one pure function
//! that turns it into the measure + its result field. Every reduction builds `LayerStats` with
//! all its fields named, so a statistic a reduction does not implement does not compile, and the
//! probe refuses statistics that do not match the plan, naming the one that is missing.

mod agreement;
mod cka_hsic;
mod class_moments;
mod gram;
mod ncc_decisions;
mod syrk;
mod within_scatter;

use std::sync::Arc;

pub use agreement::Agreement;
pub use cka_hsic::{batch_gram, CkaBatcher, CkaHsic, CKA_BATCH_ROWS, CKA_MIN_ROWS};
pub use class_moments::ClassMoments;
pub use gram::Gram;
pub use ncc_decisions::NccDecisions;
pub use within_scatter::WithinClassProjection;

use crate::ncc::NccClassifier;
use crate::spec::{Pass, Split};

/// What pass 2 needs on one layer: the NCC decision is argmin_c ‖x‖² − 2x·μ_c + ‖μ_c‖² (lowest
/// index on ties), with x·μ_c the first `classes` columns of x·joint; the projection on the
/// between-class subspace is the next `rank` columns minus `mean_proj[y]`; with a linear probe,
/// the last `classes` columns plus `linear_bias` are the ridge classifier's scores (argmax,
/// lowest index on ties).
#[derive(Clone, Debug)]
pub struct DecisionOperands {
    pub dim: usize,
    pub classes: usize,
    pub rank: usize,
    /// [μ_1 … μ_C | Q | W], D × width() row-major: one GEMM gives the NCC dot products, the
    /// projections and the linear probe's scores.
    pub joint: Vec<f64>,
    /// The ridge classifier's intercepts (C), when the layer has a linear probe.
    pub linear_bias: Option<Vec<f64>>,
    /// μ_c·Q, C × r row-major.
    pub mean_proj: Vec<f64>,
    /// The train means as a classifier (NC4 on the host predicts with it).
    pub ncc: NccClassifier,
}

impl DecisionOperands {
    /// Columns of `joint`.
    pub fn width(&self) -> usize {
        self.classes + self.rank + if self.linear_bias.is_some() { self.classes } else { 0 }
    }

    /// The linear probe's class for a row whose x·joint is `scores` (width() values).
    pub fn linear_decide(&self, scores: &[f64]) -> Option<usize> {
        let b = self.linear_bias.as_ref()?;
        let s = &scores[self.classes + self.rank..self.classes + self.rank + self.classes];
        let mut best = 0;
        for c in 1..self.classes {
            if s[c] + b[c] > s[best] + b[best] {
                best = c;
            }
        }
        Some(best)
    }

    /// ‖μ_c‖² of every class.
    pub fn mean_sq_norms(&self) -> &[f64] {
        self.ncc.mean_sq_norms()
    }
}

/// What one layer accumulates over one split in one pass.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    pub dim: usize,
    /// Per-class moments.
    pub moments: bool,
    /// The Gram matrix (pass 1, train, layers within `rank_max_dim`).
    pub gram: bool,
    /// NCC decisions against the train means (pass 2).
    pub decisions: Option<Arc<DecisionOperands>>,
    /// The projected within-class scatter (pass 2, train; needs `decisions`).
    pub within: bool,
}

/// What a reduction accumulates for one network over one split in one pass.
#[derive(Clone, Debug)]
pub struct SplitPlan {
    pub pass: Pass,
    pub split: Split,
    /// All labels run over 0..num_classes.
    pub num_classes: usize,
    /// Label → index among the measured classes (None: outside a class subset).
    pub class_map: Arc<Vec<Option<usize>>>,
    /// Measured index → label (NC4 compares the NCC label with the network's argmax over all C).
    pub classes: Arc<Vec<usize>>,
    pub layers: Vec<LayerPlan>,
    /// NC4 agreement at the top layer (needs the logits).
    pub agreement: bool,
    /// CKA between every pair of layers: the unbiased HSIC summed over minibatches of
    /// CKA_BATCH_ROWS rows cut in arrival order (a cross-layer statistic: it needs every layer's
    /// rows of one batch together).
    pub cka: bool,
}

/// One layer's statistics of one split in one pass, however they were reduced.
#[derive(Clone, Debug)]
pub struct LayerStats {
    /// Rows fed (all of them, in measured classes or not).
    pub rows: u64,
    pub moments: Option<ClassMoments>,
    pub gram: Option<Gram>,
    pub decisions: Option<NccDecisions>,
    pub within: Option<WithinClassProjection>,
}

/// One network's statistics of one split in one pass.
#[derive(Clone, Debug)]
pub struct SplitStats {
    pub layers: Vec<LayerStats>,
    pub agreement: Option<Agreement>,
    pub cka: Option<CkaHsic>,
}

impl SplitStats {
    /// Add the statistics of other rows of the same split and pass (another shard of the data,
    /// reduced elsewhere): what a data-parallel probe combines before the probe absorbs it.
    pub fn merge(&mut self, other: &SplitStats) -> Result<(), crate::error::ProbeError> {
        use crate::error::ProbeError;
        let bad = |what: &str| Err(ProbeError::InvalidSpec(format!("cannot merge statistics: {what}")));
        if self.layers.len() != other.layers.len() {
            return bad(&format!("{} layers against {}", self.layers.len(), other.layers.len()));
        }
        for (i, (a, b)) in self.layers.iter_mut().zip(&other.layers).enumerate() {
            let layer = i + 1;
            a.rows += b.rows;
            match (&mut a.moments, &b.moments) {
                (Some(x), Some(y)) if x.dim == y.dim && x.counts.len() == y.counts.len() => x.merge(y),
                (None, None) => {}
                _ => return bad(&format!("layer {layer}: class moments of different shapes, or on one side only")),
            }
            match (&mut a.gram, &b.gram) {
                (Some(x), Some(y)) if x.dim == y.dim => x.merge(y),
                (None, None) => {}
                _ => return bad(&format!("layer {layer}: Gram matrices of different shapes, or on one side only")),
            }
            match (&mut a.decisions, &b.decisions) {
                (Some(x), Some(y)) => x.merge(y),
                (None, None) => {}
                _ => return bad(&format!("layer {layer}: NCC decisions on one side only")),
            }
            match (&mut a.within, &b.within) {
                (Some(x), Some(y)) if x.rank == y.rank => x.merge(y),
                (None, None) => {}
                _ => return bad(&format!("layer {layer}: projected scatter of different ranks, or on one side only")),
            }
        }
        match (&mut self.agreement, &other.agreement) {
            (Some(x), Some(y)) => x.merge(y),
            (None, None) => {}
            _ => return bad("NC4 agreement on one side only"),
        }
        match (&mut self.cka, &other.cka) {
            (Some(x), Some(y)) if x.layers == y.layers => x.merge(y),
            (None, None) => {}
            _ => return bad("CKA statistics of different layer counts, or on one side only"),
        }
        Ok(())
    }
}
