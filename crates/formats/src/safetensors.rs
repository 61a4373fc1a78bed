//! The `.safetensors` format: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets}}`, then the data. Every tensor opens as a [`Matrix`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::matrix::{checked_numel, matrix_from, open_file, read_at, Dtype, Matrix, MAX_HEADER};

/// Open every tensor of a `.safetensors` file as a Matrix (8-byte little-endian header length,
/// JSON header `{name: {dtype, shape, data_offsets}}`, then the data).
pub fn open_safetensors(path: &Path) -> Result<BTreeMap<String, Matrix>> {
    let (file, len) = open_file(path)?;
    let origin = path.display().to_string();
    if len < 8 {
        bail!("{origin}: not a safetensors file (only {len} bytes)");
    }
    let n = u64::from_le_bytes(read_at(&file, 0, 8, &origin, "safetensors header")?.try_into().unwrap());
    if n > MAX_HEADER as u64 || 8 + n > len {
        bail!("{origin}: not a valid safetensors file: header length {n} does not fit in {len} bytes");
    }
    let hbytes = read_at(&file, 8, n as usize, &origin, "safetensors header")?;
    let header: serde_json::Value =
        serde_json::from_slice(&hbytes).with_context(|| format!("{origin}: safetensors header is not valid JSON"))?;
    let obj = header.as_object().with_context(|| format!("{origin}: safetensors header is not a JSON object"))?;
    let mut out = BTreeMap::new();
    for (name, info) in obj.iter().filter(|(k, _)| *k != "__metadata__") {
        let bad = || anyhow::anyhow!("{origin}: tensor '{name}' has a malformed header entry");
        let dtype = match info["dtype"].as_str().ok_or_else(bad)? {
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            "I8" => Dtype::I8,
            "I16" => Dtype::I16,
            "I32" => Dtype::I32,
            "I64" => Dtype::I64,
            "U8" => Dtype::U8,
            "U16" => Dtype::U16,
            "U32" => Dtype::U32,
            "U64" => Dtype::U64,
            other => bail!("{origin}: tensor '{name}' has unsupported dtype {other}"),
        };
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|v| v.as_u64().map(|v| v as usize).ok_or_else(bad))
            .collect::<Result<_>>()?;
        let (begin, end) = match info["data_offsets"].as_array().map(Vec::as_slice) {
            Some([a, b]) => (a.as_u64().ok_or_else(bad)?, b.as_u64().ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        let bytes = checked_numel(&shape).and_then(|n| n.checked_mul(dtype.size()));
        if end < begin || bytes != Some((end - begin) as usize) {
            bail!(
                "{origin}: tensor '{name}': data_offsets {begin}..{end} do not match shape {shape:?} of {}",
                dtype.name()
            );
        }
        let offset = (8 + n)
            .checked_add(begin)
            .with_context(|| format!("{origin}: tensor '{name}': offset {begin} is too large"))?;
        let m = matrix_from(format!("{origin} (tensor '{name}')"), dtype, &shape, file.clone(), len, offset)?;
        out.insert(name.to_string(), m);
    }
    Ok(out)
}
