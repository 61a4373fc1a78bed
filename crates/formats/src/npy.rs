//! The `.npy` format (versions 1–3): a reader of its header and a minimal writer.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::matrix::{matrix_from, open_file, read_at, Dtype, Matrix, MAX_HEADER};

/// Parse an `.npy` file's header (format versions 1–3).
pub fn open_npy(path: &Path) -> Result<Matrix> {
    let (file, len) = open_file(path)?;
    let origin = path.display().to_string();
    if len < 12 {
        bail!("{origin}: not an .npy file (only {len} bytes)");
    }
    let m = read_at(&file, 0, 12, &origin, ".npy header")?;
    if &m[..6] != b"\x93NUMPY" {
        bail!("{origin}: not an .npy file (bad magic)");
    }
    let (hlen, hstart) = match m[6] {
        1 => (u16::from_le_bytes([m[8], m[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([m[8], m[9], m[10], m[11]]) as usize, 12),
        v => bail!("{origin}: unsupported .npy format version {v}"),
    };
    if hlen > MAX_HEADER || len < (hstart + hlen) as u64 {
        bail!("{origin}: truncated .npy header");
    }
    let hbytes = read_at(&file, hstart as u64, hlen, &origin, ".npy header")?;
    let header = std::str::from_utf8(&hbytes).with_context(|| format!("{origin}: .npy header is not text"))?;
    let descr = dict_value(header, "descr").with_context(|| format!("{origin}: .npy header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran =
        dict_value(header, "fortran_order").with_context(|| format!("{origin}: .npy header has no 'fortran_order'"))?;
    if fortran.trim() == "True" {
        bail!("{origin}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
    }
    let shape_txt = dict_value(header, "shape").with_context(|| format!("{origin}: .npy header has no 'shape'"))?;
    let shape: Vec<usize> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().with_context(|| format!("{origin}: bad shape entry '{s}'")))
        .collect::<Result<_>>()?;
    // The byte-order character, then the kind ('<f4', '|u1'); found by fuzzing: an empty or
    // non-ASCII descr must be an error, not a panic.
    let Some((split, _)) = descr.char_indices().nth(1) else {
        bail!("{origin}: bad dtype '{descr}' in the .npy header");
    };
    let (order, kind) = descr.split_at(split);
    if order == ">" {
        bail!("{origin}: big-endian dtype '{descr}' is not supported; convert with .astype('<{kind}')");
    }
    let dtype = match kind {
        "f4" => Dtype::F32,
        "f8" => Dtype::F64,
        "i1" => Dtype::I8,
        "i2" => Dtype::I16,
        "i4" => Dtype::I32,
        "i8" => Dtype::I64,
        "u1" => Dtype::U8,
        "u2" => Dtype::U16,
        "u4" => Dtype::U32,
        "u8" => Dtype::U64,
        _ => bail!("{origin}: unsupported dtype '{descr}' (need float32/float64 embeddings or integer labels)"),
    };
    matrix_from(origin, dtype, &shape, file, len, (hstart + hlen) as u64)
}

/// Value text of `'key': value` in a Python dict literal (the .npy header).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

/// Minimal `.npy` writer (format 1.0, little-endian), used by tests and by users' tooling.
pub fn npy_bytes_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    npy_bytes("<f4", shape, data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

pub fn npy_bytes_i64(data: &[i64]) -> Vec<u8> {
    npy_bytes("<i8", &[data.len()], data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

pub fn npy_bytes(descr: &str, shape: &[usize], data: Vec<u8>) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_bytes(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        std::fs::write(&p, bytes).unwrap();
        format!("{:#}", open_npy(&p).err().expect("must be refused"))
    }

    #[test]
    fn hostile_npy_headers_are_errors_not_panics() {
        // Shapes whose element count overflows 64 bits, and dtypes too short to split.
        let huge = usize::MAX / 2;
        assert!(open_bytes(&npy_bytes("<f4", &[2, huge, 4], vec![])).contains("too large"));
        assert!(open_bytes(&npy_bytes("<f4", &[huge, 4], vec![])).contains("too large"));
        assert!(open_bytes(&npy_bytes("", &[2], vec![0; 8])).contains("bad dtype ''"));
        assert!(open_bytes(&npy_bytes("é", &[2], vec![0; 8])).contains("bad dtype"));
    }
}
