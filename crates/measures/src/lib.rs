//! depthprobe's layer measures engine: framework-free, streaming, exact. Definitions and
//! conventions are in docs/method.md.
//!
//! Embeddings go in as f32 batches; every statistic accumulates in f64. Each concept lives in
//! one file:
//!
//! | concept | file |
//! |---|---|
//! | what to measure, and the defaults | `spec.rs` |
//! | the statistics (accumulators), one per file: class moments, Gram matrix, NCC decisions, projected within-class scatter, NC4 agreement | `statistics/` |
//! | the reductions that fill them: host (here) and device (the engine) | `reducer/` |
//! | the probe and its two-pass driver | `probe.rs` |
//! | the push-style probe for Python and tests | `layer_probe.rs` |
//! | results, and their assembly from the statistics | `result.rs` |
//! | NCC classifier and accuracy | `ncc.rs` |
//! | CDNV | `cdnv.rs` |
//! | linear CKA between layers (minibatch HSIC: `statistics/cka_hsic.rs`) and its block scalar | `cka.rs` |
//! | NC1, He–Su fuzziness, NC2, NC3 | `collapse.rs` |
//! | a layer weight's singular values, ranks and alignment with class means | `spectra.rs` |
//! | numerical / effective rank | `rank.rs` |
//! | ε-effective depth | `effective_depth.rs` |
//! | He–Su log-linear fit | `separation.rs` |

pub mod cdnv;
pub mod cka;
pub mod collapse;
pub mod effective_depth;
pub mod error;
pub mod json;
pub mod kernels;
pub mod layer_probe;
pub mod linear;
pub mod ncc;
pub mod probe;
pub mod rank;
pub mod reducer;
pub mod result;
pub mod separation;
pub mod spec;
mod spectra;
pub mod statistics;

pub use cka::{cka_block, cka_matrix, CkaBlock, CkaResult};
pub use effective_depth::effective_depth;
pub use error::ProbeError;
pub use layer_probe::LayerProbe;
pub use probe::{drive, Probe};
pub use reducer::{
    AllLayersSink, HostBatch, HostReducer, LayerSink, LayerStreams, NetworkRows, PassPlans, PassStats, Reducer,
};
pub use result::{LayerResult, ProbeResult};
pub use separation::{fit_equi_separation, fit_log_linear, LogLinearFit, SATURATION_FACTOR};
pub use spec::{
    eps_key, Pass, ProbeSpec, Split, DEFAULT_EPS, DEFAULT_LINEAR_MAX_DIM, DEFAULT_LINEAR_RIDGE, DEFAULT_RANK_MAX_DIM,
};
pub use spectra::{weight_spectrum, WeightSpectrum, WEIGHT_RANK_RTOL};
pub use statistics::{
    batch_gram, Agreement, CkaBatcher, CkaHsic, ClassMoments, DecisionOperands, Gram, LayerPlan, LayerStats,
    NccDecisions, SplitPlan, SplitStats, WithinClassProjection, CKA_BATCH_ROWS, CKA_MIN_ROWS,
};
