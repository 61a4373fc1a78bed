//! A 1-D or 2-D array stored in a file (an `.npy` file or one tensor of a `.safetensors` file),
//! read a block of rows at a time: mapped from the file when it holds aligned little-endian
//! float32 (no copy; the window is unmapped when dropped), otherwise with positioned reads into
//! reused buffers. Either way memory, RSS included, stays bounded whatever the row count is.

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

    /// Rows [start, start+n) mapped from the file, without copying them, when the matrix is
    /// little-endian float32 whose data start 4-byte aligned (every `.npy` file numpy writes);
    /// None otherwise (use `read_f32`). The window's pages count in RSS only while it lives.
    /// (Mapping beats reading: a read copies every value once more, and that copy cost a quarter
    /// of `measure`'s time; populating the window up front was slower than faulting it in.)
    ///
    /// A mapping assumes the file is not truncated while it is read: another process cutting it
    /// short then would stop this one with SIGBUS rather than an error.
    pub fn map_f32(&self, start: usize, n: usize) -> Result<Option<MappedF32>> {
        let row_bytes = self.cols * 4;
        if self.dtype != Dtype::F32 || !cfg!(target_endian = "little") || !self.offset.is_multiple_of(4) || n == 0 {
            return Ok(None);
        }
        assert!(start + n <= self.rows, "rows {start}..{} of {}", start + n, self.rows);
        let offset = self.offset + (start * row_bytes) as u64;
        // SAFETY: the mapping is read-only and private; see the note on truncation above.
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(n * row_bytes).map(&*self.file) }
            .with_context(|| format!("{}: cannot map rows {start}..{}", self.origin, start + n))?;
        Ok(Some(MappedF32 { map, len: n * self.cols }))
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

/// Rows of a float32 matrix mapped from its file (`Matrix::map_f32`), read as a slice.
pub struct MappedF32 {
    map: memmap2::Mmap,
    len: usize,
}

impl std::ops::Deref for MappedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: the map holds len·4 bytes starting 4-byte aligned (a page boundary plus an
        // offset that map_f32 checked is a multiple of 4), and every bit pattern is an f32.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const f32, self.len) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::{npy_bytes, npy_bytes_f32, open_npy};

    fn rows(m: &Matrix, start: usize, n: usize) -> Vec<f32> {
        let mut v = Vec::new();
        m.read_f32(start, n, &mut v).unwrap();
        v
    }

    #[test]
    fn mapped_rows_are_the_rows_read() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<f32> = (0..7 * 1031).map(|i| (i as f32 * 0.01).sin()).collect();
        let p = dir.path().join("x.npy");
        std::fs::write(&p, npy_bytes_f32(&[1031, 7], &data)).unwrap();
        let m = open_npy(&p).unwrap();
        // Windows that start and end inside pages, and the whole file.
        for (start, n) in [(0, 1031), (1, 1), (585, 446), (1030, 1), (100, 600)] {
            let mapped = m.map_f32(start, n).unwrap().expect("aligned float32 maps");
            assert_eq!(&mapped[..], &data[start * 7..(start + n) * 7]);
            assert_eq!(&mapped[..], &rows(&m, start, n)[..]);
        }
        // float64 is converted, so it is read, never mapped.
        let bytes: Vec<u8> = data.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect();
        let p64 = dir.path().join("x64.npy");
        std::fs::write(&p64, npy_bytes("<f8", &[1031, 7], bytes)).unwrap();
        let m64 = open_npy(&p64).unwrap();
        assert!(m64.map_f32(0, 10).unwrap().is_none());
        assert_eq!(rows(&m64, 3, 5), &data[21..56]);
        // Data that do not start 4-byte aligned (possible in a .safetensors file) are read.
        let mut raw = vec![0u8; 3];
        raw.extend(data.iter().flat_map(|v| v.to_le_bytes()));
        let praw = dir.path().join("odd.bin");
        std::fs::write(&praw, &raw).unwrap();
        let (f, len) = open_file(&praw).unwrap();
        let odd = matrix_from("odd".into(), Dtype::F32, &[1031, 7], f, len, 3).unwrap();
        assert!(odd.map_f32(0, 10).unwrap().is_none());
        assert_eq!(rows(&odd, 2, 4), &data[14..42]);
    }
}
