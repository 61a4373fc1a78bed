//! `LayerProbe`: the push-style probe of one network on the host, for callers that hold the
//! batches themselves (Python, tests): feed every batch of every layer, call `next_pass` after
//! the first train pass, feed again, `finish`. It runs the same [`Probe`] and host reduction as
//! [`crate::probe::drive`].

use crate::error::ProbeError;
use crate::probe::Probe;
use crate::reducer::{HostReducer, Reducer};
use crate::result::ProbeResult;
use crate::spec::{Pass, ProbeSpec, Split};
use crate::statistics::{SplitPlan, SplitStats};

pub struct LayerProbe {
    probe: Probe,
    reducer: HostReducer,
}

impl LayerProbe {
    pub fn new(spec: ProbeSpec) -> Result<Self, ProbeError> {
        let probe = Probe::new(spec)?;
        let mut reducer = HostReducer::new(1);
        reducer.begin(vec![Some(probe.plan())]);
        Ok(LayerProbe { probe, reducer })
    }

    pub fn num_layers(&self) -> usize {
        self.probe.spec().dims.len()
    }

    pub fn spec(&self) -> &ProbeSpec {
        self.probe.spec()
    }

    /// The measured classes (original labels), in index order.
    pub fn classes(&self) -> &[usize] {
        self.probe.classes()
    }

    pub fn pass(&self) -> Pass {
        self.probe.pass()
    }

    /// Top-layer classifier weights (C×D_L row-major) for NC3.
    pub fn set_classifier(&mut self, weight: &[f32]) -> Result<(), ProbeError> {
        self.probe.set_classifier(weight)
    }

    /// Feed one batch of one layer (1-based `layer`): `x` row-major [rows, dim], `y` labels.
    pub fn update(&mut self, split: Split, layer: usize, x: &[f32], y: &[u32]) -> Result<(), ProbeError> {
        self.reducer.update_layer(0, split, layer, x, y)
    }

    /// Feed one batch of every layer at once (`xs[i]` is layer i+1), layers in parallel.
    pub fn update_all(&mut self, split: Split, xs: &[&[f32]], y: &[u32]) -> Result<(), ProbeError> {
        self.reducer.update_all(0, split, xs, y)
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
        self.reducer.update_agreement(0, split, x_top, logits, y)
    }

    /// End pass 1: fix the train class means and prepare pass 2.
    pub fn next_pass(&mut self) -> Result<(), ProbeError> {
        if self.probe.pass() != Pass::Moments {
            return Err(ProbeError::WrongPass("next_pass called twice: the probe has two passes".into()));
        }
        self.absorb_reducer()?;
        self.probe.next_pass()?;
        self.reducer.begin(vec![Some(self.probe.plan())]);
        Ok(())
    }

    /// Compute every measure. Requires pass 2 to have seen the whole train split again.
    pub fn finish(mut self) -> Result<ProbeResult, ProbeError> {
        if self.probe.pass() != Pass::Decisions {
            return Err(ProbeError::WrongPass(
                "finish called before pass 2 (call next_pass after the first train pass)".into(),
            ));
        }
        self.absorb_reducer()?;
        self.probe.finish()
    }

    /// What the current pass accumulates (train, test): for a reduction done elsewhere (the
    /// Python package's reduction on a model's device).
    pub fn plan(&self) -> [SplitPlan; 2] {
        self.probe.plan()
    }

    /// The statistics fed through `update` so far in this pass (train, test), taken out: the
    /// probe continues the pass from empty accumulators. A data-parallel worker takes its
    /// shard's statistics, they are merged (`SplitStats::merge`), and one probe absorbs them.
    pub fn take_stats(&mut self) -> Result<[SplitStats; 2], ProbeError> {
        let stats = self.reducer.end().pop().flatten();
        self.reducer.begin(vec![Some(self.probe.plan())]);
        stats.ok_or_else(|| ProbeError::WrongPass("the probe has no pass in progress".into()))?
    }

    /// Add statistics of this pass reduced elsewhere (`plan`) or taken from other probes
    /// (`take_stats`); checked against the plan.
    pub fn absorb(&mut self, stats: [SplitStats; 2]) -> Result<(), ProbeError> {
        self.probe.absorb(stats)
    }

    fn absorb_reducer(&mut self) -> Result<(), ProbeError> {
        match self.reducer.end().pop().flatten() {
            Some(stats) => self.probe.absorb(stats?),
            None => Err(ProbeError::WrongPass("the probe has no pass in progress".into())),
        }
    }
}
