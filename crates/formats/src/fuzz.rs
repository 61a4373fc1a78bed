//! Entry points for the fuzz targets (`fuzz/`, run with `scripts/fuzz.sh`) and for the test that
//! replays their stored corpus (`tests/fuzz_corpus.rs`): each feeds arbitrary bytes to one
//! parser, which must return (Ok or a clear error), never panic or hang.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::embeddings::SplitEmbeddings;
use crate::matrix::Matrix;
use crate::npy::open_npy;
use crate::{cifar, idx};

/// IDX images and labels, gzipped or raw.
pub fn idx(data: &[u8]) {
    let p = Path::new("fuzz.idx");
    if let Ok(bytes) = idx::decode_maybe_gz(p, data.to_vec()) {
        let _ = idx::parse_images(p, &bytes);
        let _ = idx::parse_labels(p, &bytes);
    }
}

/// One CIFAR-10 binary batch.
pub fn cifar(data: &[u8]) {
    let _ = cifar::parse_batch_bytes(Path::new("fuzz.bin"), data);
}

/// The parsers read files with positioned reads, so the input goes through a temp file.
fn with_file(data: &[u8], ext: &str, f: impl FnOnce(&Path)) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "depthprobe-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::create_dir_all(&dir);
    let p: PathBuf = dir.join(format!("input.{ext}"));
    if std::fs::write(&p, data).is_ok() {
        f(&p);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Read back (a bounded part of) what was opened.
fn read_some(m: &Matrix) {
    let rows = m.rows.min(64);
    if m.cols.saturating_mul(rows) > 1 << 20 {
        return;
    }
    if m.dtype.is_float() {
        let _ = m.read_f32(0, rows, &mut Vec::new());
    } else {
        let _ = m.read_labels(0, rows, &mut Vec::new());
    }
}

/// A `.npy` file.
pub fn npy(data: &[u8]) {
    with_file(data, "npy", |p| {
        if let Ok(m) = open_npy(p) {
            read_some(&m);
        }
    });
}

/// A `.safetensors` file of embeddings.
pub fn safetensors(data: &[u8]) {
    with_file(data, "safetensors", |p| {
        if let Ok(s) = SplitEmbeddings::open(p) {
            read_some(&s.labels);
            s.layers.iter().for_each(read_some);
        }
    });
}
