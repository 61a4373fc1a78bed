//! Getting one file's bytes into a partial file: HTTP(S) with `Range` to resume, or a local
//! `file://` mirror. The partial file only grows; checking it is the caller's job.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The source does not have the file (HTTP 4xx, no such local file): trying again will not help.
#[derive(Debug)]
pub struct NotThere(pub String);

impl std::fmt::Display for NotThere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotThere {}

/// Bytes already in `part` (0 when it does not exist).
pub fn have(part: &Path) -> u64 {
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

/// Append the bytes of `url` from offset `have(part)` to `part` until the file is whole or the
/// source ends. `size` is the file's size when it must be exactly that (the official files);
/// None takes the size the source gives (a mirror's own copy of an archive, judged afterwards by
/// its members). `on_bytes` sees the running total. An error leaves what arrived in `part`, so
/// the next call continues from there.
pub fn fetch(url: &str, part: &Path, size: Option<u64>, on_bytes: &mut dyn FnMut(u64)) -> Result<()> {
    let mut start = have(part);
    if let Some(size) = size {
        if start > size {
            // Longer than the file can be: not a prefix of it.
            File::create(part)?;
            start = 0;
        }
        if start == size {
            return Ok(());
        }
    }
    if let Some(path) = url.strip_prefix("file://") {
        let mut src = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NotThere(format!("{url}: no such file")).into())
            }
            Err(e) => bail!("{url}: cannot open: {e}"),
        };
        let total = src.metadata()?.len();
        if start > total {
            File::create(part)?;
            start = 0;
        }
        src.seek(SeekFrom::Start(start))?;
        return copy(&mut src, part, start, size.unwrap_or(total), on_bytes);
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(20))
        .timeout_read(Duration::from_secs(60))
        .user_agent(concat!("depthprobe/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut req = agent.get(url);
    if start > 0 {
        req = req.set("Range", &format!("bytes={start}-"));
    }
    let resp = match req.call() {
        // Nothing left after the bytes we have: the part is whole (or longer: the checksum says).
        Err(ureq::Error::Status(416, _)) if start > 0 && size.is_none() => return Ok(()),
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) if (400..500).contains(&code) && code != 408 && code != 429 => {
            return Err(NotThere(format!("{url}: HTTP {code} {}", r.status_text())).into())
        }
        Err(ureq::Error::Status(code, r)) => bail!("{url}: HTTP {code} {}", r.status_text()),
        Err(e) => bail!("{url}: {e}"),
    };
    let from = match resp.status() {
        206 => start,
        // The server ignored the range: start over.
        _ => {
            File::create(part)?;
            0
        }
    };
    let length = resp.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let total = match (size, length) {
        (Some(s), _) => s,
        (None, Some(n)) => from + n,
        (None, None) => u64::MAX,
    };
    let ends_early_ok = size.is_none() && length.is_none();
    match copy(&mut resp.into_reader(), part, from, total, on_bytes) {
        // No length given: the end of the body is the end of the file.
        Err(e) if ends_early_ok && e.downcast_ref::<Short>().is_some() => Ok(()),
        r => r.with_context(|| url.to_string()),
    }
}

/// The source ended before the file was whole.
#[derive(Debug)]
struct Short(u64, u64);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection ended after {} of {} bytes", self.0, self.1)
    }
}

impl std::error::Error for Short {}

fn copy(src: &mut dyn Read, part: &Path, mut n: u64, size: u64, on_bytes: &mut dyn FnMut(u64)) -> Result<()> {
    let mut out = OpenOptions::new().create(true).append(true).open(part)?;
    let mut buf = vec![0u8; 1 << 16];
    while n < size {
        let k = src.read(&mut buf)?;
        if k == 0 {
            break;
        }
        // Never past the expected size: a longer source is caught by the checksum.
        let k = k.min((size - n) as usize);
        out.write_all(&buf[..k])?;
        n += k as u64;
        on_bytes(n);
    }
    out.sync_all()?;
    if n < size {
        return Err(Short(n, size).into());
    }
    Ok(())
}
