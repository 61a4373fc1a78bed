//! The MNIST / Fashion-MNIST IDX format, gzipped or raw.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Read a whole file, gunzipping when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode_maybe_gz(path, raw)
}

/// Gunzip `raw` when it starts with the gzip magic; `path` names it in messages.
pub fn decode_maybe_gz(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// IDX images (magic 0x00000803): returns (count, rows, cols, pixels).
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 {
        bail!("{}: too short for an IDX image header ({} bytes)", path.display(), bytes.len());
    }
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    if be(0) != 0x0803 {
        bail!("{}: wrong IDX magic 0x{:08x}: expected 0x00000803 (images)", path.display(), be(0));
    }
    let (n, r, c) = (be(4), be(8), be(12));
    // checked: the three u32 sizes can overflow a u64 product (found by fuzzing).
    let need = n.checked_mul(r).and_then(|v| v.checked_mul(c));
    if need != Some(bytes.len() - 16) {
        let need = need.map(|v| v.to_string()).unwrap_or_else(|| "more than 2^64".into());
        bail!(
            "{}: header says {n} images of {r}×{c} ({need} bytes) but the file holds {} data bytes",
            path.display(),
            bytes.len() - 16
        );
    }
    Ok((n, r, c, bytes[16..].to_vec()))
}

/// IDX labels (magic 0x00000801).
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() < 8 {
        bail!("{}: too short for an IDX label header ({} bytes)", path.display(), bytes.len());
    }
    let magic = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
    if magic != 0x0801 {
        bail!("{}: wrong IDX magic 0x{magic:08x}: expected 0x00000801 (labels)", path.display());
    }
    let n = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    if bytes.len() - 8 != n {
        bail!("{}: header says {n} labels but the file holds {}", path.display(), bytes.len() - 8);
    }
    Ok(bytes[8..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_header_sizes_are_an_error_not_an_overflow() {
        let mut b = vec![0, 0, 8, 3];
        for _ in 0..3 {
            b.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        b.extend_from_slice(&[0; 8]);
        let e = parse_images(Path::new("x.idx"), &b).unwrap_err().to_string();
        assert!(e.contains("x.idx") && e.contains("more than 2^64"), "{e}");
    }
}
