//! depthprobe's layer measures engine: framework-free, streaming, exact.
//!
//! Feed `f32` batches of every layer's embeddings with integer labels to a [`LayerProbe`]; all
//! accumulation is in `f64`. Each concept lives in one file:
//!
//! | concept | file |
//! |---|---|
//! | per-class moments (Chan merges) | `moments.rs` |
//! | NCC classifier and accuracy | `ncc.rs` |
//! | CDNV | `cdnv.rs` |
//! | NC1, He–Su fuzziness, NC2, NC3 | `collapse.rs` |
//! | numerical / effective rank | `rank.rs` |
//! | ε-effective depth | `effective_depth.rs` |
//! | He–Su log-linear fit | `separation.rs` |
//! | the two-pass driver | `probe.rs` |
//!
//! Definitions follow `shared/docs/paper-spec.md` §1, §2.4 and §4.

pub mod cdnv;
pub mod collapse;
pub mod effective_depth;
pub mod error;
pub mod json;
pub mod kernels;
pub mod moments;
pub mod ncc;
pub mod probe;
pub mod rank;
pub mod separation;

pub use effective_depth::effective_depth;
pub use error::ProbeError;
pub use probe::{
    eps_key, ClassMoments, DecisionOperands, LayerProbe, LayerReduction, LayerResult, Pass, ProbeResult, ProbeSpec,
    Split, DEFAULT_EPS,
};
pub use separation::LogLinearFit;
