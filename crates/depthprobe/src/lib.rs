//! depthprobe: train deep classifiers and measure, layer by layer, how class structure forms
//! inside them (effective depth, NCC separability, CDNV; docs/method.md). The data flow and which
//! files a change touches are in docs/architecture.md.
//!
//! | stage | module or crate |
//! |---|---|
//! | run configuration and its checks | crate `depthprobe-config` |
//! | file formats (IDX, CIFAR, .npy, .safetensors) | crate `depthprobe-formats` |
//! | data sets, subsets, label corruption | `data` |
//! | networks and training, K ≥ 1 at once (the only tch code) | `engine` |
//! | learning-rate schedule | `schedule` |
//! | the layer measures and the two-pass probe (framework-free) | crate `depthprobe-measures` |
//! | a run (or a batched group of runs) from start to finish | `pipeline` |
//! | the run folder as types (summary.json, metrics.csv, checkpoints) | crate `depthprobe-runfolder` |
//! | `measure` on dumped embeddings, and the console table (no LibTorch) | crate `depthprobe-measure-cli` |
//! | figures (SVG + PNG) | `figures` |
//! | sweeps: plan, train a planned run, SLURM | `sweep` |
//! | a sweep's runs as processes: statuses, locks, `sweep local`, signals, progress (no LibTorch) | crate `depthprobe-sweep` |
//! | the comparative generalization bound | `bound` |
//! | the bound's uniform-errors assumption, tested | `uniform_errors` |
//! | the sweep report: tables, figures, checks of the claims | `report` |
//! | what the terminal shows | `progress` (from `depthprobe-sweep`), `console` (from `depthprobe-measure-cli`) |

pub mod bound;
pub mod data;
pub mod engine;
pub mod figures;
pub mod phases;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod schedule;
pub mod stats;
pub mod sweep;
pub mod tensorboard;
pub mod uniform_errors;

pub use depthprobe_config as config;
/// `measure` and the console table live in a crate without LibTorch (the `depthprobe` binary).
pub use depthprobe_measure_cli::{console, measure};
/// Stop signals, the progress view and the machine's description live with the sweep runner, in a
/// crate without LibTorch (the `depthprobe` binary runs `sweep local` from it).
pub use depthprobe_sweep::{interrupt, machine, progress};

/// The configuration `depthprobe demo` trains (also in configs/demo.toml).
pub const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");

/// This build: the version and the commit it was built from ("+dirty" with uncommitted changes).
pub const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DEPTHPROBE_COMMIT"), ")");
