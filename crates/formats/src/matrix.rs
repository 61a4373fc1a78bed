//! A 1-D or 2-D array stored in a file (an `.npy` file or one tensor of a `.safetensors` file),
//! read a block of rows at a time with positioned reads into reused buffers: memory (RSS
//! included: no file pages are mapped) stays bounded whatever the row count is.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
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
    pub fn name(self) -> &'static str {
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
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
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

    pub(crate) fn expect_float(&self) -> Result<()> {
        if !self.dtype.is_float() {
            bail!("{}: embeddings must be float32 (or float64), found {}", self.origin, self.dtype.name());
        }
        if self.ndim < 2 {
            bail!("{}: embeddings must have shape [N, D] (or [N, ...]), found a {}-D array", self.origin, self.ndim);
        }
        Ok(())
    }

    pub(crate) fn expect_labels(&self) -> Result<()> {
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
pub(crate) const MAX_HEADER: usize = 100 << 20;

pub(crate) fn open_file(path: &Path) -> Result<(Arc<File>, u64)> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = f.metadata().with_context(|| format!("{}: cannot stat", path.display()))?.len();
    Ok((Arc::new(f), len))
}

pub(crate) fn read_at(f: &File, offset: u64, n: usize, origin: &str, what: &str) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut b, offset).with_context(|| format!("{origin}: truncated {what}"))?;
    Ok(b)
}

pub(crate) fn matrix_from(
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
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}
