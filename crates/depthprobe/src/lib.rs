//! depthprobe: train deep classifiers and measure, layer by layer, how class structure forms
//! inside them (Galanti, Galanti & Ben-Shaul; effective depth, NCC separability, CDNV).
//!
//! | concept | module |
//! |---|---|
//! | the layer measures (framework-free) | crate `depthprobe-measures` |
//! | run configuration and its checks | `config` |
//! | MNIST / Fashion-MNIST / CIFAR-10 / demo data, label corruption | `data` |
//! | models and SGD (the only tch code) | `engine` |
//! | learning-rate schedule | `schedule` |
//! | a training run and its run directory | `run` |
//! | `measure` on dumped embeddings (.npy / .safetensors) | `measure`, `embeddings` |
//! | result files (summary.json, metrics.csv) | `results` |
//! | figures (SVG + PNG) | `figures` |
//! | sweeps: plan, run locally or on SLURM | `sweep::plan`, `sweep::exec` |
//! | the comparative generalization bound | `sweep::bound` |

pub mod config;
pub mod data;
pub mod embeddings;
pub mod engine;
pub mod figures;
pub mod fuzz_entry;
pub mod measure;
pub mod results;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod sweep;

/// The configuration `depthprobe demo` trains (also in configs/demo.toml).
pub const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");
