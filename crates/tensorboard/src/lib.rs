//! TensorBoard event files, written as a run goes.
//!
//! An event file is a TFRecord stream of `Event` protobufs (TensorFlow's `event.proto` and
//! `summary.proto`, the fields TensorBoard reads for scalars and images). A record is its
//! length (u64, little-endian), the masked CRC-32C of those 8 bytes, the bytes, and their masked
//! CRC-32C. The protobuf encoding is prost's and the CRC crc32c's; the masking is the format's
//! own rotation and offset. Every record is flushed when written, so TensorBoard shows a
//! training run live and a killed run keeps what it wrote.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prost::Message;

/// tensorflow.Event: only the fields written here.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// tensorflow.Summary.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// tensorflow.Summary.Value: a tag with a scalar or an image.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<SummaryImage>,
}

/// tensorflow.Summary.Image: an encoded PNG with its size.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryImage {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 4: RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// The TFRecord CRC: CRC-32C, rotated right by 15 bits, plus a constant (so that a CRC of data
/// that holds CRCs is not degenerate).
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An event file in a log folder, appended to and flushed record by record.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), named as TensorBoard expects
    /// (`events.out.tfevents.<seconds>.<host>.<pid>.<suffix>`), starting with the file-version
    /// record. Each writer gets its own file, so a resumed run adds a file beside the first.
    pub fn create(dir: &Path, suffix: &str) -> Result<EventWriter> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the TensorBoard folder", dir.display()))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let name = format!(
            "events.out.tfevents.{}.{}.{}.{suffix}",
            now() as u64,
            if host.is_empty() { "localhost" } else { host },
            std::process::id()
        );
        let path = dir.join(name);
        let f = File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = EventWriter { path, out: BufWriter::new(f) };
        w.write(&Event { wall_time: now(), step: 0, file_version: Some("brain.Event:2".into()), summary: None })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, e: &Event) -> Result<()> {
        self.out
            .write_all(&record(&e.encode_to_vec()))
            .and_then(|_| self.out.flush())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }

    /// Scalars at `step`, one event for all of them; NaN and infinite values are left out.
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        let value: Vec<SummaryValue> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| SummaryValue { tag: tag.clone(), simple_value: Some(*v as f32), image: None })
            .collect();
        if value.is_empty() {
            return Ok(());
        }
        self.write(&Event { wall_time: now(), step, file_version: None, summary: Some(Summary { value }) })
    }

    /// A PNG image at `step` (its size read from the PNG header).
    pub fn png(&mut self, step: i64, tag: &str, png: &[u8]) -> Result<()> {
        let (width, height) = png_size(png).with_context(|| format!("{tag}: not a PNG"))?;
        let image = SummaryImage { height, width, colorspace: 4, encoded_image_string: png.to_vec() };
        let value = vec![SummaryValue { tag: tag.into(), simple_value: None, image: Some(image) }];
        self.write(&Event { wall_time: now(), step, file_version: None, summary: Some(Summary { value }) })
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(i32, i32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |i: usize| i32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    Some((be(16), be(20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TFRecord's CRC on known input: CRC-32C("123456789") = 0xE3069283 (the standard check
    /// value), masked by the format's rule.
    #[test]
    fn the_crc_is_crc32c_masked() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let want = 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), want);
    }

    #[test]
    fn records_frame_and_decode_back() {
        let t = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(t.path(), "test").unwrap();
        w.scalars(3, &[("a/b".into(), 0.5), ("skipped".into(), f64::NAN)]).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let mut events = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let len = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap()) as usize;
            assert_eq!(u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap()), masked_crc(&bytes[i..i + 8]));
            let data = &bytes[i + 12..i + 12 + len];
            assert_eq!(u32::from_le_bytes(bytes[i + 12 + len..i + 16 + len].try_into().unwrap()), masked_crc(data));
            events.push(Event::decode(data).unwrap());
            i += 16 + len;
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        let v = &events[1].summary.as_ref().unwrap().value;
        assert_eq!((events[1].step, v.len(), v[0].tag.as_str(), v[0].simple_value), (3, 1, "a/b", Some(0.5)));
    }
}
