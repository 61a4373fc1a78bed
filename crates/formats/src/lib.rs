//! The file formats depthprobe reads, parsed without any tensor library so that each parser can
//! be fuzzed on its own (`fuzz/`, replayed by `tests/fuzz_corpus.rs`).
//!
//! | format | file |
//! |---|---|
//! | MNIST / Fashion-MNIST IDX, gzipped or raw | `idx.rs` |
//! | CIFAR-10 binary batches | `cifar.rs` |
//! | `.npy` (reader and a minimal writer) | `npy.rs` |
//! | `.safetensors` | `safetensors.rs` |
//! | a file-backed array read a block of rows at a time | `matrix.rs` |
//! | one split of dumped embeddings (labels, layers, logits) | `embeddings.rs` |
//!
//! Every error names the file (and the tensor, row or field) it is about.

pub mod cifar;
pub mod embeddings;
pub mod fuzz;
pub mod idx;
pub mod matrix;
pub mod npy;
pub mod safetensors;

pub use embeddings::SplitEmbeddings;
pub use matrix::{Dtype, MappedF32, Matrix};
pub use npy::{npy_bytes, npy_bytes_f32, npy_bytes_i64, open_npy};
