//! Embeddings dumped by any framework: a folder with `labels.npy` and `layer_1.npy` …
//! `layer_L.npy` (optionally `logits.npy`, `classifier_weight.npy`), or one `.safetensors` file
//! holding tensors of the same names. Only headers are parsed up front; rows are read a chunk at
//! a time with positioned reads into reused buffers, so memory (RSS included: no file pages are
//! mapped) stays bounded whatever N is.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64)
    }
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
        }
    }
}

/// A 1-D or 2-D (rows × cols, trailing dimensions flattened) little-endian array stored at
/// `offset` in a file.
#[derive(Clone)]
pub struct Matrix {
    /// What to call it in messages: the file, and the tensor name for safetensors.
    pub origin: String,
    pub dtype: Dtype,
    pub rows: usize,
    pub cols: usize,
    pub ndim: usize,
    file: Arc<File>,
    offset: u64,
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Matrix {
    /// Raw bytes of rows [start, start+n), read into a reused per-thread buffer, handed to `f`.
    fn with_bytes<R>(&self, start: usize, n: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        READ_BUF.with(|b| {
            let mut b = b.borrow_mut();
            b.resize(n * self.cols * self.dtype.size(), 0);
            self.read_rows(start, n, &mut b)?;
            Ok(f(&b))
        })
    }

    /// The raw bytes of rows [start, start+n) into `buf` (exactly that many bytes long).
    fn read_rows(&self, start: usize, n: usize, buf: &mut [u8]) -> Result<()> {
        let offset = self.offset + (start * self.cols * self.dtype.size()) as u64;
        self.file.read_exact_at(buf, offset).with_context(|| {
            format!("{}: reading rows {start}..{} failed (file truncated while reading?)", self.origin, start + n)
        })
    }

    /// Rows [start, start+n) as f32 (float64 is rounded to float32: embeddings are f32 batches).
    pub fn read_f32(&self, start: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        if self.dtype == Dtype::F32 && cfg!(target_endian = "little") {
            // Read straight into the output: no intermediate copy, no per-value decoding.
            out.resize(n * self.cols, 0.0);
            // SAFETY: every bit pattern is a valid f32, and u8 has no alignment requirement.
            let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 4) };
            return self.read_rows(start, n, bytes);
        }
        out.clear();
        self.with_bytes(start, n, |b| match self.dtype {
            Dtype::F32 => out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()))),
            Dtype::F64 => out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)),
            _ => unreachable!("checked at open"),
        })
    }

    /// Labels [start, start+n) as u32; a negative or huge label is an error naming the row.
    pub fn read_labels(&self, start: usize, n: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        self.with_bytes(start, n, |b| self.decode_labels(start, b, out))?
    }

    fn decode_labels(&self, start: usize, b: &[u8], out: &mut Vec<u32>) -> Result<()> {
        let sz = self.dtype.size();
        for (i, c) in b.chunks_exact(sz).enumerate() {
            let v: i128 = match self.dtype {
                Dtype::I8 => c[0] as i8 as i128,
                Dtype::U8 => c[0] as i128,
                Dtype::I16 => i16::from_le_bytes(c.try_into().unwrap()) as i128,
                Dtype::U16 => u16::from_le_bytes(c.try_into().unwrap()) as i128,
                Dtype::I32 => i32::from_le_bytes(c.try_into().unwrap()) as i128,
                Dtype::U32 => u32::from_le_bytes(c.try_into().unwrap()) as i128,
                Dtype::I64 => i64::from_le_bytes(c.try_into().unwrap()) as i128,
                Dtype::U64 => u64::from_le_bytes(c.try_into().unwrap()) as i128,
                _ => unreachable!("checked at open"),
            };
            if v < 0 || v > u32::MAX as i128 {
                bail!("{}: label {v} at row {} is out of range (labels are class indices ≥ 0)", self.origin, start + i);
            }
            out.push(v as u32);
        }
        Ok(())
    }

    fn expect_float(&self) -> Result<()> {
        if !self.dtype.is_float() {
            bail!("{}: embeddings must be float32 (or float64), found {}", self.origin, self.dtype.name());
        }
        if self.ndim < 2 {
            bail!("{}: embeddings must have shape [N, D] (or [N, ...]), found a {}-D array", self.origin, self.ndim);
        }
        Ok(())
    }

    fn expect_labels(&self) -> Result<()> {
        if self.dtype.is_float() {
            bail!("{}: labels must be integers, found {}", self.origin, self.dtype.name());
        }
        if self.ndim != 1 {
            bail!("{}: labels must have shape [N], found a {}-D array", self.origin, self.ndim);
        }
        Ok(())
    }
}

/// Largest header accepted (numpy writes a few hundred bytes; safetensors some KB per tensor).
const MAX_HEADER: usize = 100 << 20;

fn open_file(path: &Path) -> Result<(Arc<File>, u64)> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = f.metadata().with_context(|| format!("{}: cannot stat", path.display()))?.len();
    Ok((Arc::new(f), len))
}

fn read_at(f: &File, offset: u64, n: usize, origin: &str, what: &str) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut b, offset).with_context(|| format!("{origin}: truncated {what}"))?;
    Ok(b)
}

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

fn matrix_from(
    origin: String,
    dtype: Dtype,
    shape: &[usize],
    file: Arc<File>,
    file_len: u64,
    offset: u64,
) -> Result<Matrix> {
    if shape.is_empty() {
        bail!("{origin}: a 0-D array holds no rows");
    }
    let rows = shape[0];
    let cols = checked_numel(&shape[1..]).with_context(|| format!("{origin}: shape {shape:?} is too large"))?;
    let need = rows
        .checked_mul(cols)
        .and_then(|v| v.checked_mul(dtype.size()))
        .with_context(|| format!("{origin}: shape {shape:?} is too large"))?;
    let have = file_len.saturating_sub(offset);
    if have < need as u64 {
        bail!("{origin}: truncated: shape {shape:?} needs {need} data bytes but the file holds {have}");
    }
    Ok(Matrix { origin, dtype, rows, cols, ndim: shape.len(), file, offset })
}

/// The number of elements of `shape`, or None when it overflows (hostile headers; fuzzing).
fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Value text of `'key': value` in a Python dict literal (the .npy header).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

/// Open every tensor of a `.safetensors` file as a Matrix (8-byte little-endian header length,
/// JSON header `{name: {dtype, shape, data_offsets}}`, then the data).
fn open_safetensors(path: &Path) -> Result<BTreeMap<String, Matrix>> {
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

/// One split's embeddings: labels, every layer, optional logits and classifier weight.
pub struct SplitEmbeddings {
    pub source: PathBuf,
    pub labels: Matrix,
    pub layers: Vec<Matrix>,
    pub logits: Option<Matrix>,
    pub classifier_weight: Option<Matrix>,
}

impl SplitEmbeddings {
    pub fn rows(&self) -> usize {
        self.labels.rows
    }
    pub fn dims(&self) -> Vec<usize> {
        self.layers.iter().map(|m| m.cols).collect()
    }

    /// Open a folder of `.npy` files, or a folder holding one `.safetensors` file, or that file.
    pub fn open(path: &Path) -> Result<Self> {
        let tensors = if path.is_file() {
            open_safetensors(path)?
        } else if path.is_dir() {
            let entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot list folder", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            let st: Vec<&PathBuf> =
                entries.iter().filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect();
            let has_npy = entries.iter().any(|p| p.extension().is_some_and(|e| e == "npy"));
            match (st.len(), has_npy) {
                (0, true) => {
                    let mut t = BTreeMap::new();
                    for p in &entries {
                        if p.extension().is_some_and(|e| e == "npy") {
                            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
                            t.insert(stem, open_npy(p)?);
                        }
                    }
                    t
                }
                (1, false) => open_safetensors(st[0])?,
                (0, false) => {
                    bail!("{}: no labels.npy / layer_*.npy files and no .safetensors file here", path.display())
                }
                _ => bail!(
                    "{}: holds both .npy and .safetensors files, or several .safetensors; keep one format",
                    path.display()
                ),
            }
        } else {
            bail!("{}: no such file or folder", path.display());
        };
        Self::from_tensors(path, tensors)
    }

    fn from_tensors(path: &Path, mut t: BTreeMap<String, Matrix>) -> Result<Self> {
        let labels = t
            .remove("labels")
            .with_context(|| format!("{}: no 'labels' (labels.npy or a 'labels' tensor)", path.display()))?;
        labels.expect_labels()?;
        let mut layers = Vec::new();
        for i in 1.. {
            match t.remove(&format!("layer_{i}")) {
                Some(m) => layers.push(m),
                None => break,
            }
        }
        if layers.is_empty() {
            bail!("{}: no 'layer_1' (layer_1.npy or a 'layer_1' tensor); layers are numbered from 1", path.display());
        }
        if let Some(extra) = t.keys().find(|k| k.starts_with("layer_")) {
            bail!(
                "{}: found '{extra}' but layers must be numbered 1..L without gaps (layer_{} is missing)",
                path.display(),
                layers.len() + 1
            );
        }
        for m in &layers {
            m.expect_float()?;
            if m.rows != labels.rows {
                bail!("{}: has {} rows but {} has {}", m.origin, m.rows, labels.origin, labels.rows);
            }
        }
        let logits = t.remove("logits");
        if let Some(m) = &logits {
            m.expect_float()?;
            if m.rows != labels.rows {
                bail!("{}: has {} rows but {} has {}", m.origin, m.rows, labels.origin, labels.rows);
            }
        }
        let classifier_weight = t.remove("classifier_weight");
        if let Some(m) = &classifier_weight {
            m.expect_float()?;
        }
        Ok(SplitEmbeddings { source: path.to_path_buf(), labels, layers, logits, classifier_weight })
    }
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
