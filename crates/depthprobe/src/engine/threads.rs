//! LibTorch's CPU thread count while a run trains on a CPU it may share (docs/performance.md,
//! "Sharing the CPU"): the trainer times its training steps and probe batches, and
//! `depthprobe_sweep::governor` says when fewer threads (or again all of them) are faster.

use std::time::Instant;

use depthprobe_runfolder::AdaptiveThreads;
use depthprobe_sweep::governor::{ThreadGovernor, Work};
use tch::Device;

use super::trainer::Trainer;

impl Trainer {
    /// From now on, on a CPU, use `threads` (the count set now) or half of them, whichever its
    /// steps and probe batches show to be faster at the time.
    pub fn adapt_threads(&mut self, threads: usize) {
        if self.device == Device::Cpu {
            self.governor = ThreadGovernor::new(threads);
        }
    }

    /// What the thread count's changes have to tell the user (each thing once).
    pub fn thread_notes(&mut self) -> Vec<String> {
        self.governor.as_mut().map(|g| g.take_notes()).unwrap_or_default()
    }

    /// How the thread count has adapted so far (None when it is fixed).
    pub fn thread_adaptation(&self) -> Option<AdaptiveThreads> {
        self.governor.as_ref().map(|g| AdaptiveThreads {
            fewer: g.fewer(),
            changes: g.adaptation.changes,
            fewer_s: g.adaptation.reduced_secs,
            timed_s: g.adaptation.total_secs,
        })
    }

    /// Work of this kind begins (an epoch, a probe's pass over a split).
    pub(super) fn starting(&mut self, work: Work) {
        if let Some(n) = self.governor.as_mut().and_then(|g| g.starting(work)) {
            tch::set_num_threads(n as i32);
        }
    }

    /// One unit of `work`, begun at `since`, is done: change the thread count if told to.
    pub(super) fn timed(&mut self, work: Work, since: Instant) {
        if let Some(n) = self.governor.as_mut().and_then(|g| g.record(work, since.elapsed().as_secs_f64())) {
            tch::set_num_threads(n as i32);
        }
    }
}
