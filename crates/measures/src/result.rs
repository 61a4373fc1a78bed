//! What a probe returns: per-layer measures and the effective depths, as written to
//! summary.json and metrics.csv (keys in docs/result-files.md), and [`assemble`], which turns
//! the accumulated statistics into them through the pure functions of each measure's file.

use std::collections::BTreeMap;

use faer::Side;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cdnv::{cdnv_mean, cdnv_pairs};
use crate::cka::{cka_result, CkaResult};
use crate::collapse::{fuzziness, nc1, nc2_equiangularity, nc2_equinorm, nc3_self_duality};
use crate::effective_depth::effective_depth;
use crate::json;
use crate::linear::linear_accuracy;
use crate::ncc::ncc_accuracy;
use crate::probe::LayerAccum;
use crate::rank::{effective_rank, numerical_rank};
use crate::separation::{fit_equi_separation, LogLinearFit};
use crate::spec::{eps_key, ProbeSpec, Split};
use crate::statistics::{Agreement, CkaHsic};

/// Per-layer results. Keys are stable; see docs/result-files.md.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerResult {
    pub layer: usize,
    pub dim: usize,
    #[serde(serialize_with = "json::f64_value", deserialize_with = "json::de_f64")]
    pub ncc_train_acc: f64,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub ncc_test_acc: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub cdnv_train: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub cdnv_test: Option<f64>,
    /// Mean over classes of the within-class variance Var_f(S_c) on train.
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub within_class_variance_train: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub nc1: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub fuzziness: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub nc2_equinorm: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub nc2_equiangularity: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub nc3_self_duality: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub nc4_agreement_train: Option<f64>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub nc4_agreement_test: Option<f64>,
    #[serde(default)]
    pub numerical_rank: Option<usize>,
    #[serde(serialize_with = "json::opt_f64", deserialize_with = "json::de_opt_f64", default)]
    pub effective_rank: Option<f64>,
    /// Linear-probe (ridge classifier) accuracy, for layers within `linear_max_dim`; absent
    /// otherwise, so files without a linear probe are unchanged.
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub linear_train_acc: Option<f64>,
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub linear_test_acc: Option<f64>,
    /// Linear CKA with the top layer (minibatch estimator), where the probe measures CKA.
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cka_top_train: Option<f64>,
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cka_top_test: Option<f64>,
    /// The spectrum of the weight that produces this layer (training probes with
    /// `probe.weight_spectra`; spectra.rs): numerical rank at WEIGHT_RANK_RTOL, stable rank,
    /// entropy effective rank, alignment of the top right singular subspace with the class means
    /// of the layer's input (where that input is the data or a probed layer).
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weight_rank: Option<f64>,
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weight_stable_rank: Option<f64>,
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weight_effective_rank: Option<f64>,
    #[serde(
        serialize_with = "json::opt_f64",
        deserialize_with = "json::de_opt_f64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weight_alignment: Option<f64>,
    /// The weight's singular values, largest first (summary.json only, not metrics.csv).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_singular_values: Vec<f64>,
    /// CDNV of every class pair (C×C row-major, NaN on the diagonal); written to cdnv_pairs.csv.
    #[serde(skip)]
    pub cdnv_pairs_train: Vec<f64>,
    #[serde(skip)]
    pub cdnv_pairs_test: Vec<f64>,
}

impl LayerResult {
    /// (metric name, split, value) for every scalar measure, in a fixed order (metrics.csv).
    pub fn scalar_metrics(&self) -> Vec<(&'static str, Split, Option<f64>)> {
        use Split::{Test, Train};
        vec![
            ("ncc_acc", Train, Some(self.ncc_train_acc)),
            ("ncc_acc", Test, self.ncc_test_acc),
            ("cdnv", Train, self.cdnv_train),
            ("cdnv", Test, self.cdnv_test),
            ("within_class_variance", Train, self.within_class_variance_train),
            ("nc1", Train, self.nc1),
            ("fuzziness", Train, self.fuzziness),
            ("nc2_equinorm", Train, self.nc2_equinorm),
            ("nc2_equiangularity", Train, self.nc2_equiangularity),
            ("nc3_self_duality", Train, self.nc3_self_duality),
            ("nc4_agreement", Train, self.nc4_agreement_train),
            ("nc4_agreement", Test, self.nc4_agreement_test),
            ("numerical_rank", Train, self.numerical_rank.map(|r| r as f64)),
            ("effective_rank", Train, self.effective_rank),
            ("linear_acc", Train, self.linear_train_acc),
            ("linear_acc", Test, self.linear_test_acc),
            ("cka_top", Train, self.cka_top_train),
            ("cka_top", Test, self.cka_top_test),
            ("weight_rank", Train, self.weight_rank),
            ("weight_stable_rank", Train, self.weight_stable_rank),
            ("weight_effective_rank", Train, self.weight_effective_rank),
            ("weight_alignment", Train, self.weight_alignment),
        ]
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeResult {
    pub num_classes: usize,
    /// The classes measured (all, or the requested subset), in the order of the pair matrices.
    pub classes: Vec<usize>,
    pub train_samples: u64,
    pub test_samples: u64,
    pub layers: Vec<LayerResult>,
    /// ε → first layer with NCC train error ≤ ε; null when no layer is ε-separable.
    pub effective_depth: BTreeMap<String, Option<usize>>,
    /// ε → first layer whose linear probe's train error is ≤ ε (layers without a linear probe
    /// never qualify); present only with a linear probe.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub linear_effective_depth: BTreeMap<String, Option<usize>>,
    /// He–Su law of equi-separation: log-linear fit of fuzziness over the layers up to saturation.
    pub fuzziness_fit: Option<LogLinearFit>,
    /// Linear CKA between every pair of layers, where the probe measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cka: Option<CkaResult>,
    /// Per layer, the measured classes' train means (C×D row-major), with
    /// `ProbeSpec::keep_class_means`; not written.
    #[serde(skip)]
    pub train_class_means: Vec<Vec<f64>>,
}

impl ProbeResult {
    /// The equi-separation fit of the layers' fuzziness by today's rule (a result written before
    /// the fit stopped at saturation carries an older `fuzziness_fit`).
    pub fn equi_separation_fit(&self) -> Option<LogLinearFit> {
        let fz: Vec<(usize, f64)> = self.layers.iter().filter_map(|l| Some((l.layer, l.fuzziness?))).collect();
        fit_equi_separation(&fz)
    }

    /// The ε-effective depth for `eps` (None: not separable, or ε not measured).
    pub fn effective_depth_at(&self, eps: f64) -> Option<usize> {
        self.effective_depth.get(&eps_key(eps)).copied().flatten()
    }
}

/// Every measure of every layer from the statistics of both passes.
pub(crate) fn assemble(
    spec: &ProbeSpec,
    classes: &[usize],
    layers: &[LayerAccum],
    classifier: Option<&[f32]>,
    agreement: &[Agreement; 2],
    cka: &[Option<CkaHsic>; 2],
) -> ProbeResult {
    let k = classes.len();
    let nl = layers.len();
    let mut results: Vec<LayerResult> =
        layers.par_iter().map(|l| layer_result(l, k, l.layer == nl, classifier, agreement)).collect();
    let errs: Vec<f64> = results.iter().map(|l| 1.0 - l.ncc_train_acc).collect();
    let ncc_depth = spec.eps.iter().map(|&e| (eps_key(e), effective_depth(&errs, e))).collect();
    let linear_effective_depth = if results.iter().any(|l| l.linear_train_acc.is_some()) {
        let lin: Vec<f64> = results.iter().map(|l| l.linear_train_acc.map_or(f64::NAN, |a| 1.0 - a)).collect();
        spec.eps.iter().map(|&e| (eps_key(e), effective_depth(&lin, e))).collect()
    } else {
        BTreeMap::new()
    };
    let cka = match cka {
        [Some(train), Some(test)] => Some(cka_result(train, test, &ncc_depth)),
        _ => None,
    };
    if let Some(c) = &cka {
        for l in results.iter_mut() {
            l.cka_top_train = c.get(Split::Train, l.layer, nl);
            l.cka_top_test = c.get(Split::Test, l.layer, nl);
        }
    }
    let mut result = ProbeResult {
        num_classes: spec.num_classes,
        classes: classes.to_vec(),
        train_samples: layers[0].decisions[0].counted,
        test_samples: layers[0].decisions[1].counted,
        layers: results,
        effective_depth: ncc_depth,
        linear_effective_depth,
        fuzziness_fit: None,
        cka,
        train_class_means: if spec.keep_class_means {
            layers.iter().map(|l| l.train.means.clone()).collect()
        } else {
            Vec::new()
        },
    };
    result.fuzziness_fit = result.equi_separation_fit();
    result
}

fn layer_result(
    l: &LayerAccum,
    k: usize,
    is_top: bool,
    classifier: Option<&[f32]>,
    agreement: &[Agreement; 2],
) -> LayerResult {
    let pairs_train = cdnv_pairs(&l.train);
    let pairs_test = cdnv_pairs(&l.test);
    let vars: Vec<f64> = (0..k).filter_map(|c| l.train.variance(c)).collect();
    let (nc1v, fz, eqn, eqa) = match (&l.subspace, &l.within) {
        (Some(sub), Some(w)) => (nc1(sub, w), fuzziness(sub, w), nc2_equinorm(sub), nc2_equiangularity(sub)),
        _ => (None, None, None, None),
    };
    let nc3 =
        if is_top { classifier.and_then(|w| nc3_self_duality(&l.train, &l.train.global_mean(), w)) } else { None };
    let agree = |s: usize| {
        let a = agreement[s];
        (is_top && a.total > 0).then(|| a.agree as f64 / a.total as f64)
    };
    let (nrank, erank) = match l.gram.as_ref().filter(|_| l.rank) {
        Some(g) => {
            let sv: Vec<f64> = g
                .sum
                .self_adjoint_eigenvalues(Side::Lower)
                .map(|ev| ev.into_iter().map(|v| v.max(0.0).sqrt()).collect())
                .unwrap_or_default();
            let n = l.train.total() as usize;
            (Some(numerical_rank(&sv, n, l.dim)), effective_rank(&sv))
        }
        None => (None, None),
    };
    LayerResult {
        layer: l.layer,
        dim: l.dim,
        ncc_train_acc: ncc_accuracy(&l.decisions[0]).unwrap_or(f64::NAN),
        ncc_test_acc: ncc_accuracy(&l.decisions[1]),
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
        linear_train_acc: l.ridge.as_ref().and_then(|_| linear_accuracy(&l.decisions[0])),
        linear_test_acc: l.ridge.as_ref().and_then(|_| linear_accuracy(&l.decisions[1])),
        cka_top_train: None,
        cka_top_test: None,
        weight_rank: None,
        weight_stable_rank: None,
        weight_effective_rank: None,
        weight_alignment: None,
        weight_singular_values: Vec::new(),
        cdnv_pairs_train: pairs_train,
        cdnv_pairs_test: pairs_test,
    }
}
