//! A reduction turns batches of embeddings into the statistics of `statistics/`, for K networks
//! at once. Two implement [`Reducer`]: [`HostReducer`] here (f32 rows in host memory, f64
//! accumulation in Rust) and the engine's device reduction (tensors where the network is). The
//! probe's driver (`probe::drive`) runs either the same way.

mod host;

pub use host::{AllLayersSink, HostBatch, HostReducer, LayerSink, LayerStreams, NetworkRows};

use crate::error::ProbeError;
use crate::spec::Split;
use crate::statistics::{SplitPlan, SplitStats};

/// Network k's plans for one pass, train then test; None for a network whose probe has failed
/// (its batches are carried along and ignored).
pub type PassPlans = Vec<Option<[SplitPlan; 2]>>;

/// Network k's statistics of one pass, train then test, or the error its batches raised.
pub type PassStats = Vec<Option<Result<[SplitStats; 2], ProbeError>>>;

pub trait Reducer {
    /// One batch of one split: every network's embeddings (every layer), logits and labels.
    type Batch<'a>;

    /// Start a pass.
    fn begin(&mut self, plans: PassPlans);

    /// Reduce one batch. A network whose rows are bad (a label out of range, a non-finite value)
    /// fails alone and is skipped from then on; `Err` means every network has failed, so the
    /// caller can stop streaming.
    fn update(&mut self, split: Split, batch: Self::Batch<'_>) -> Result<(), ProbeError>;

    /// End the pass: each network's statistics (None where `begin` had no plan).
    fn end(&mut self) -> PassStats;
}
