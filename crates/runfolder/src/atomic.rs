//! Every result file is written to a temporary file beside its target, fsynced and renamed, so
//! a reader never sees half a file and a failure keeps the earlier one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Write `bytes` to `path` atomically: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_all_atomic(&[(path.to_path_buf(), bytes.to_vec())])
}

/// Write several files as one unit: every file goes to a temporary file first (written and
/// fsynced); only when all succeeded are they renamed into place. A failure (disk full, file
/// size limit) removes the temporaries and leaves the earlier files untouched.
pub fn write_all_atomic(files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    let mut staged = Vec::new();
    let mut result = Ok(());
    for (path, bytes) in files {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().context("result path has no file name")?.to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let w = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        staged.push(tmp.clone());
        if let Err(e) = w {
            result = Err(e).with_context(|| format!("{}: could not write (earlier results are kept)", path.display()));
            break;
        }
    }
    if result.is_ok() {
        for ((path, _), tmp) in files.iter().zip(&staged) {
            if let Err(e) = std::fs::rename(tmp, path) {
                result = Err(e).with_context(|| format!("{}: could not rename into place", path.display()));
                break;
            }
        }
    }
    for tmp in &staged {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Pretty JSON with a final newline and keys in sorted order: how every JSON file is written.
pub fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    // Through a Value: its map keeps keys sorted, so files do not depend on struct field order.
    let mut s = serde_json::to_string_pretty(&serde_json::to_value(v)?)?;
    s.push('\n');
    Ok(s)
}
