//! CIFAR-10, official binary version: records of 1 label byte + 3×1024 pixel bytes (R, G, B planes).

use std::path::Path;

use anyhow::{bail, Context, Result};

pub const RECORD: usize = 3073;

/// Parse one `.bin` batch into (labels, pixels [n, 3, 32, 32]).
pub fn parse_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_batch_bytes(path, &bytes)
}

/// Parse the bytes of one batch; `path` names it in messages.
pub fn parse_batch_bytes(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        bail!("{}: size {} is not a positive multiple of the CIFAR record size {RECORD}", path.display(), bytes.len());
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * 3072);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            bail!("{}: record {i} has label {} (CIFAR-10 labels are 0..=9)", path.display(), rec[0]);
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((labels, pixels))
}
