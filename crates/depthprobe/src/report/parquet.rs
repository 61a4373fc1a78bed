//! A minimal Parquet writer for the report's per-run table: one row group, required columns of
//! INT64, DOUBLE or UTF-8 strings, PLAIN encoding, no compression, metadata in Thrift's compact
//! protocol (format spec: github.com/apache/parquet-format). A few hundred rows do not need
//! more, and it spares the build a large dependency. pandas/pyarrow read it (tested).

use anyhow::{bail, Result};

pub enum Column {
    I64(Vec<i64>),
    F64(Vec<f64>),
    Str(Vec<String>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::I64(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::Str(v) => v.len(),
        }
    }
    /// Parquet physical type: INT64 = 2, DOUBLE = 5, BYTE_ARRAY = 6.
    fn physical(&self) -> i32 {
        match self {
            Column::I64(_) => 2,
            Column::F64(_) => 5,
            Column::Str(_) => 6,
        }
    }
    fn plain(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Column::I64(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
            Column::F64(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
            Column::Str(v) => v.iter().for_each(|s| {
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
            }),
        }
        b
    }
}

/// Thrift compact protocol writer (only what the metadata needs).
#[derive(Default)]
struct Thrift {
    buf: Vec<u8>,
    last: Vec<i16>,
}

const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const STRUCT: u8 = 12;

impl Thrift {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last_mut().expect("inside a struct");
        let delta = id - *last;
        *last = id;
        if (1..=15).contains(&delta) {
            self.buf.push(((delta as u8) << 4) | ty);
        } else {
            self.buf.push(ty);
            self.zigzag(id as i64);
        }
    }
    fn begin(&mut self) {
        self.last.push(0);
    }
    fn end(&mut self) {
        self.buf.push(0);
        self.last.pop();
    }
    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, I32);
        self.zigzag(v as i64);
    }
    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, I64);
        self.zigzag(v);
    }
    fn string(&mut self, id: i16, s: &str) {
        self.field(id, BINARY);
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn list_header(&mut self, id: i16, elem: u8, n: usize) {
        self.field(id, LIST);
        if n < 15 {
            self.buf.push(((n as u8) << 4) | elem);
        } else {
            self.buf.push(0xf0 | elem);
            self.varint(n as u64);
        }
    }
    fn struct_field(&mut self, id: i16) {
        self.field(id, STRUCT);
        self.begin();
    }
}

/// The file bytes for these named columns (all of one length).
pub fn write(cols: &[(String, Column)]) -> Result<Vec<u8>> {
    let rows = cols.first().map(|c| c.1.len()).unwrap_or(0);
    if let Some((name, c)) = cols.iter().find(|c| c.1.len() != rows) {
        bail!("parquet: column '{name}' has {} values, the first has {rows}", c.len());
    }
    let mut file = b"PAR1".to_vec();
    // (offset of the page, its total size with header) per column.
    let mut chunks = Vec::new();
    for (_, c) in cols {
        let data = c.plain();
        let mut h = Thrift::default();
        h.begin();
        h.i32(1, 0); // DATA_PAGE
        h.i32(2, data.len() as i32);
        h.i32(3, data.len() as i32);
        h.struct_field(5);
        h.i32(1, rows as i32);
        h.i32(2, 0); // PLAIN
        h.i32(3, 3); // RLE definition levels (none: required)
        h.i32(4, 3); // RLE repetition levels (none)
        h.end();
        h.end();
        let offset = file.len();
        file.extend_from_slice(&h.buf);
        file.extend_from_slice(&data);
        chunks.push((offset, h.buf.len() + data.len()));
    }
    let mut m = Thrift::default();
    m.begin();
    m.i32(1, 1); // version
    m.list_header(2, STRUCT, cols.len() + 1);
    m.begin();
    m.string(4, "schema");
    m.i32(5, cols.len() as i32);
    m.end();
    for (name, c) in cols {
        m.begin();
        m.i32(1, c.physical());
        m.i32(3, 0); // REQUIRED
        m.string(4, name);
        if let Column::Str(_) = c {
            m.i32(6, 0); // converted type UTF8
        }
        m.end();
    }
    m.i64(3, rows as i64);
    m.list_header(4, STRUCT, 1);
    m.begin();
    m.list_header(1, STRUCT, cols.len());
    for ((name, c), (offset, size)) in cols.iter().zip(&chunks) {
        m.begin();
        m.i64(2, *offset as i64);
        m.struct_field(3);
        m.i32(1, c.physical());
        m.list_header(2, I32, 2);
        m.zigzag(0); // PLAIN
        m.zigzag(3); // RLE
        m.list_header(3, BINARY, 1);
        m.varint(name.len() as u64);
        m.buf.extend_from_slice(name.as_bytes());
        m.i32(4, 0); // UNCOMPRESSED
        m.i64(5, rows as i64);
        m.i64(6, *size as i64);
        m.i64(7, *size as i64);
        m.i64(9, *offset as i64);
        m.end();
        m.end();
    }
    m.i64(2, chunks.iter().map(|c| c.1 as i64).sum());
    m.i64(3, rows as i64);
    m.end();
    m.string(6, concat!("depthprobe ", env!("CARGO_PKG_VERSION")));
    m.end();
    file.extend_from_slice(&m.buf);
    file.extend_from_slice(&(m.buf.len() as u32).to_le_bytes());
    file.extend_from_slice(b"PAR1");
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_protocol_encodings() {
        let mut t = Thrift::default();
        t.zigzag(-1);
        t.zigzag(1);
        t.zigzag(300);
        assert_eq!(t.buf, vec![1, 2, 0xd8, 0x04]);
        let mut t = Thrift::default();
        t.begin();
        t.i32(1, 5);
        t.i32(17, 1); // delta 16: long form
        t.end();
        assert_eq!(t.buf, vec![0x15, 10, 0x05, 34, 2, 0]);
    }

    #[test]
    fn file_frame_and_column_lengths() {
        let cols = vec![
            ("a".to_string(), Column::I64(vec![1, 2, 3])),
            ("b".to_string(), Column::F64(vec![0.5, f64::NAN, 2.0])),
            ("c".to_string(), Column::Str(vec!["x".into(), "".into(), "zz".into()])),
        ];
        let f = write(&cols).unwrap();
        assert_eq!(&f[..4], b"PAR1");
        assert_eq!(&f[f.len() - 4..], b"PAR1");
        let meta_len = u32::from_le_bytes(f[f.len() - 8..f.len() - 4].try_into().unwrap()) as usize;
        assert!(meta_len > 0 && meta_len < f.len() - 12);
        let bad = vec![("a".to_string(), Column::I64(vec![1])), ("b".to_string(), Column::I64(vec![]))];
        assert!(write(&bad).unwrap_err().to_string().contains("'b'"));
    }
}
