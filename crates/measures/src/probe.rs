//! The probe of one network: which statistics each pass needs ([`Probe::plan`]), merging what a
//! reduction returns ([`Probe::absorb`]), fixing the train means between the passes
//! ([`Probe::next_pass`]) and turning the statistics into measures ([`Probe::finish`]); and
//! [`drive`], the one two-pass loop every caller runs (measure, training on the host or on a
//! device). Python's push-style `LayerProbe` runs the same `Probe` (`layer_probe.rs`).
//!
//! Pass 1 (`Pass::Moments`): the train split: per-class counts, means and variances (Chan
//!   merges) and the Gram matrix for the rank measures. Test rows fed here are optional: they
//!   give the test moments early.
//! Pass 2 (`Pass::Decisions`): the train split again (NCC decisions against the final means,
//!   the within-class scatter projected on the between-class subspace) and the test split (NCC
//!   decisions against the train means, plus its moments unless pass 1 had them), NC4 agreement
//!   at the top layer on both.

use std::sync::Arc;

use rayon::prelude::*;

use crate::collapse::BetweenClassSubspace;
use crate::error::ProbeError;
use crate::ncc::NccClassifier;
use crate::reducer::Reducer;
use crate::result::{assemble, ProbeResult};
use crate::spec::{Pass, ProbeSpec, Split};
use crate::statistics::{
    Agreement, CkaHsic, ClassMoments, DecisionOperands, Gram, LayerPlan, LayerStats, NccDecisions, SplitPlan,
    SplitStats, WithinClassProjection,
};

/// One layer's statistics accumulated so far.
pub(crate) struct LayerAccum {
    pub layer: usize,
    pub dim: usize,
    pub train: ClassMoments,
    pub test: ClassMoments,
    pub gram: Option<Gram>,
    /// The rank measures use `gram` (dim ≤ rank_max_dim); the linear probe may keep it alone.
    pub rank: bool,
    /// A linear probe on this layer (dim ≤ linear_max_dim), and its fit once pass 1 is done.
    pub linear: bool,
    pub ridge: Option<crate::linear::RidgeClassifier>,
    pub decisions: [NccDecisions; 2],
    pub within: Option<WithinClassProjection>,
    pub subspace: Option<BetweenClassSubspace>,
    pub operands: Option<Arc<DecisionOperands>>,
    /// Rows fed in the current pass, per split (all rows, measured or not).
    rows: [u64; 2],
    rows_pass1: u64,
    test_rows_pass1: u64,
}

/// The probe of one network (see the module docs for the passes).
pub struct Probe {
    spec: ProbeSpec,
    class_map: Arc<Vec<Option<usize>>>,
    classes: Arc<Vec<usize>>,
    pass: Pass,
    layers: Vec<LayerAccum>,
    classifier: Option<Vec<f32>>,
    agreement: [Agreement; 2],
    /// CKA's HSIC sums, train (pass 1) and test (pass 2), when the spec asks for CKA.
    cka: [Option<CkaHsic>; 2],
}

impl Probe {
    pub fn new(spec: ProbeSpec) -> Result<Probe, ProbeError> {
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
            .map(|(i, &dim)| LayerAccum {
                layer: i + 1,
                dim,
                train: ClassMoments::new(k, dim),
                test: ClassMoments::new(k, dim),
                gram: (dim <= spec.rank_max_dim || dim <= spec.linear_max_dim).then(|| Gram::new(dim)),
                rank: dim <= spec.rank_max_dim,
                linear: dim <= spec.linear_max_dim,
                ridge: None,
                decisions: [NccDecisions::default(); 2],
                within: None,
                subspace: None,
                operands: None,
                rows: [0; 2],
                rows_pass1: 0,
                test_rows_pass1: 0,
            })
            .collect();
        Ok(Probe {
            class_map: Arc::new(class_map),
            classes: Arc::new(classes),
            pass: Pass::Moments,
            layers,
            classifier: None,
            agreement: [Agreement::default(); 2],
            cka: [(); 2].map(|_| spec.cka.then(|| CkaHsic::new(spec.dims.len()))),
            spec,
        })
    }

    pub fn spec(&self) -> &ProbeSpec {
        &self.spec
    }

    pub fn pass(&self) -> Pass {
        self.pass
    }

    /// The measured classes (original labels), in index order.
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

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
        for &c in self.classes.iter() {
            w.extend_from_slice(&weight[c * d..(c + 1) * d]);
        }
        self.classifier = Some(w);
        Ok(())
    }

    /// The pass in which CKA is accumulated on `split`: train in pass 1, test in pass 2 (the
    /// one pass that always sees it).
    fn cka_pass(split: Split) -> Pass {
        match split {
            Split::Train => Pass::Moments,
            Split::Test => Pass::Decisions,
        }
    }

    /// What the current pass accumulates, for the train and the test split.
    pub fn plan(&self) -> [SplitPlan; 2] {
        Split::BOTH.map(|split| {
            let layers = self
                .layers
                .iter()
                .map(|l| {
                    let (moments, gram) = match (self.pass, split) {
                        (Pass::Moments, Split::Train) => (true, l.gram.is_some()),
                        (Pass::Moments, Split::Test) => (true, false),
                        (Pass::Decisions, Split::Train) => (false, false),
                        (Pass::Decisions, Split::Test) => (l.test_rows_pass1 == 0, false),
                    };
                    LayerPlan {
                        dim: l.dim,
                        moments,
                        gram,
                        decisions: l.operands.clone(),
                        within: split == Split::Train && l.within.is_some() && l.operands.is_some(),
                    }
                })
                .collect();
            SplitPlan {
                pass: self.pass,
                split,
                num_classes: self.spec.num_classes,
                class_map: self.class_map.clone(),
                classes: self.classes.clone(),
                layers,
                agreement: self.pass == Pass::Decisions,
                cka: self.spec.cka && Self::cka_pass(split) == self.pass,
            }
        })
    }

    /// Merge the statistics a reduction returned for the current pass (train, test), checking
    /// that they are what `plan` asked for.
    pub fn absorb(&mut self, stats: [SplitStats; 2]) -> Result<(), ProbeError> {
        let plan = self.plan();
        let k = self.classes.len();
        for (split, (st, pl)) in Split::BOTH.into_iter().zip(stats.into_iter().zip(&plan)) {
            if st.layers.len() != self.layers.len() {
                return Err(ProbeError::InvalidSpec(format!(
                    "{}: statistics of {} layers for a probe of {}",
                    split.name(),
                    st.layers.len(),
                    self.layers.len()
                )));
            }
            let s = split.idx();
            for ((l, lp), red) in self.layers.iter_mut().zip(&pl.layers).zip(st.layers) {
                absorb_layer(l, lp, red, split, k)?;
            }
            match (pl.agreement, st.agreement) {
                (true, Some(a)) => {
                    if a.agree > a.total {
                        return Err(ProbeError::InvalidSpec(format!("NC4 agreement {} of {} rows", a.agree, a.total)));
                    }
                    self.agreement[s].merge(&a);
                }
                (false, None) => {}
                (true, None) => return Err(missing(split, self.layers.len(), "the NC4 agreement counts")),
                (false, Some(_)) => {
                    return Err(ProbeError::WrongPass(
                        "NC4 agreement is fed in pass 2, once the train means are final".into(),
                    ))
                }
            }
            match (pl.cka, st.cka) {
                (true, Some(c)) => {
                    if c.layers != self.layers.len() {
                        return Err(ProbeError::InvalidSpec(format!(
                            "{}: CKA statistics of {} layers for a probe of {}",
                            split.name(),
                            c.layers,
                            self.layers.len()
                        )));
                    }
                    if !c.is_finite() {
                        return Err(ProbeError::InvalidSpec(format!(
                            "{}: the reduction returned non-finite CKA statistics",
                            split.name()
                        )));
                    }
                    if let Some(acc) = self.cka[s].as_mut() {
                        acc.merge(&c);
                    }
                }
                (false, None) => {}
                (true, None) => return Err(missing(split, 1, "CKA statistics")),
                (false, Some(_)) => {
                    return Err(ProbeError::InvalidSpec(format!(
                        "{}: CKA statistics are not expected in this pass (train: pass 1, test: pass 2)",
                        split.name()
                    )))
                }
            }
        }
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
        let alpha = self.spec.linear_ridge;
        self.layers.par_iter_mut().for_each(|l| {
            if l.linear {
                l.ridge = l.gram.as_ref().and_then(|g| crate::linear::fit_ridge(g, &l.train, alpha));
            }
            let k = l.train.num_classes();
            let d = l.dim;
            let ncc = NccClassifier::new(l.train.means.clone(), k, d);
            let r = if collapse {
                let sub = BetweenClassSubspace::new(&l.train);
                l.within = Some(WithinClassProjection::new(sub.rank));
                let r = sub.rank;
                l.subspace = Some(sub);
                r
            } else {
                0
            };
            let lin = l.ridge.as_ref().map_or(0, |_| k);
            let w = k + r + lin;
            let mut joint = vec![0.0; d * w];
            let mut mean_proj = vec![0.0; k * r];
            for i in 0..d {
                for c in 0..k {
                    joint[i * w + c] = l.train.mean(c)[i];
                }
            }
            if let Some(sub) = &l.subspace {
                for i in 0..d {
                    for j in 0..r {
                        let q = sub.basis[i * r + j];
                        joint[i * w + k + j] = q;
                        for c in 0..k {
                            mean_proj[c * r + j] += l.train.mean(c)[i] * q;
                        }
                    }
                }
            }
            if let Some(rc) = &l.ridge {
                for i in 0..d {
                    joint[i * w + k + r..(i + 1) * w].copy_from_slice(&rc.weights[i * k..(i + 1) * k]);
                }
            }
            let linear_bias = l.ridge.as_ref().map(|rc| rc.bias.clone());
            l.operands =
                Some(Arc::new(DecisionOperands { dim: d, classes: k, rank: r, joint, mean_proj, ncc, linear_bias }));
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
        Ok(assemble(&self.spec, &self.classes, &self.layers, self.classifier.as_deref(), &self.agreement, &self.cka))
    }
}

fn missing(split: Split, layer: usize, what: &str) -> ProbeError {
    ProbeError::InvalidSpec(format!(
        "{} layer {layer}: the reduction returned no {what}, which this pass needs (a reduction that does not compute it?)",
        split.name()
    ))
}

/// Merge one layer's reduced statistics of `split`, checked against its plan.
fn absorb_layer(
    l: &mut LayerAccum,
    plan: &LayerPlan,
    red: LayerStats,
    split: Split,
    k: usize,
) -> Result<(), ProbeError> {
    let layer = l.layer;
    let d = l.dim;
    let bad = |what: String| Err(ProbeError::InvalidSpec(format!("{} layer {layer}: {what}", split.name())));
    let non_finite = || Err(ProbeError::NonFiniteReduced { split: split.name(), layer });
    match (plan.moments, &red.moments) {
        (true, Some(m)) => {
            if (m.dim, m.num_classes()) != (d, k) {
                return bad(format!("reduced moments are {} classes × {}, expected {k} × {d}", m.num_classes(), m.dim));
            }
            if !m.is_finite() {
                return non_finite();
            }
        }
        (false, None) => {}
        (true, None) => return Err(missing(split, layer, "per-class moments")),
        (false, Some(_)) => return bad("per-class moments are not expected in this pass".into()),
    }
    match (plan.gram, &red.gram) {
        (true, Some(g)) => {
            if g.dim != d {
                return bad(format!("a Gram matrix of dimension {}, expected {d}", g.dim));
            }
            if !g.is_finite() {
                return non_finite();
            }
        }
        (false, None) => {}
        (true, None) => return Err(missing(split, layer, "Gram matrix")),
        (false, Some(_)) => return bad("a Gram matrix is not expected here".into()),
    }
    match (plan.decisions.is_some(), &red.decisions) {
        (true, Some(n)) if n.correct > n.counted || n.linear_correct > n.counted => {
            return bad(format!("{} (linear: {}) of {} correct", n.correct, n.linear_correct, n.counted))
        }
        (true, Some(_)) | (false, None) => {}
        (true, None) => return Err(missing(split, layer, "NCC decision counts")),
        (false, Some(_)) => return bad("NCC decisions belong to pass 2".into()),
    }
    match (plan.within, &red.within) {
        (true, Some(w)) => {
            let r = l.within.as_ref().map_or(0, |w| w.rank);
            if w.rank != r {
                return bad(format!("the within-class projection has rank {}, expected {r}", w.rank));
            }
            if !w.is_finite() {
                return non_finite();
            }
        }
        (false, None) => {}
        (true, None) => return Err(missing(split, layer, "projected within-class scatter")),
        (false, Some(_)) => return bad("the within-class projection is needed on train in pass 2 only".into()),
    }
    // Checked: merge.
    if let Some(m) = &red.moments {
        match split {
            Split::Train => l.train.merge(m),
            Split::Test => l.test.merge(m),
        }
    }
    if let (Some(g), Some(rg)) = (l.gram.as_mut(), &red.gram) {
        g.merge(rg);
    }
    if let Some(n) = &red.decisions {
        l.decisions[split.idx()].merge(n);
    }
    if let (Some(w), Some(rw)) = (l.within.as_mut(), &red.within) {
        w.merge(rw);
    }
    l.rows[split.idx()] += red.rows;
    Ok(())
}

/// The two-pass probe of K networks through `reducer`: pass 1 streams the train split, pass 2
/// the train split again and then the test split. `stream(pass, split, sink)` feeds every batch
/// of `split` to `sink`, the same batches in the same order each time. A network whose probe
/// fails (bad rows, an empty class) gets its error and the others go on; an error of the stream
/// itself (a file that cannot be read) ends the probe.
pub fn drive<R, E>(
    probes: Vec<Result<Probe, ProbeError>>,
    reducer: &mut R,
    mut stream: impl FnMut(Pass, Split, &mut dyn FnMut(R::Batch<'_>) -> Result<(), ProbeError>) -> Result<(), E>,
) -> Result<Vec<Result<ProbeResult, ProbeError>>, E>
where
    R: Reducer,
    E: From<ProbeError>,
{
    let mut probes = probes;
    for (pass, splits) in [(Pass::Moments, &[Split::Train][..]), (Pass::Decisions, &[Split::Train, Split::Test][..])] {
        reducer.begin(probes.iter().map(|p| p.as_ref().ok().map(Probe::plan)).collect());
        let mut stopped = false;
        for &split in splits {
            let result = {
                let mut sink = |b: R::Batch<'_>| {
                    let r = reducer.update(split, b);
                    stopped |= r.is_err();
                    r
                };
                stream(pass, split, &mut sink)
            };
            if let Err(e) = result {
                // Every network failed (the sink said stop): their errors come from `end`.
                if !stopped {
                    return Err(e);
                }
                break;
            }
        }
        for (p, stats) in probes.iter_mut().zip(reducer.end()) {
            let (Ok(probe), Some(stats)) = (p.as_mut(), stats) else { continue };
            let r = stats.and_then(|s| probe.absorb(s)).and_then(|()| match pass {
                Pass::Moments => probe.next_pass(),
                Pass::Decisions => Ok(()),
            });
            if let Err(e) = r {
                *p = Err(e);
            }
        }
    }
    Ok(probes.into_iter().map(|p| p.and_then(Probe::finish)).collect())
}
