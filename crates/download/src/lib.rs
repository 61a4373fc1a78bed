//! `depthprobe data download`: fetch MNIST, Fashion-MNIST and CIFAR-10 from their public
//! mirrors (or the ones `DEPTHPROBE_MIRROR` names), check every file against its published MD5,
//! continue a partial download where it stopped, and put files where `train` reads them only
//! once they are verified (a rename, so a reader never sees half a file).
//!
//! Layout under the data root: `mnist/` and `fashion-mnist/` hold the official `.gz` files;
//! `cifar-10-batches-bin/` the unpacked CIFAR-10 binary version. Work in progress (partial
//! files, the CIFAR archive) lives in `ROOT/.download/` and is removed when done.

mod catalog;
mod fetch;

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

pub use catalog::{catalog, lookup, DataSet, Member, Remote, Unpack};

/// The environment variable that replaces the mirrors: one or more base URLs (http://,
/// https:// or file://), separated by commas; files are `BASE/<folder>/<official name>`.
pub const MIRROR_ENV: &str = "DEPTHPROBE_MIRROR";

/// Failed tries in a row, with no new byte, before a mirror is given up.
const TRIES_WITHOUT_PROGRESS: usize = 3;

/// Where data lives when nothing else says: `$XDG_DATA_HOME/depthprobe`, else
/// `~/.local/share/depthprobe`.
pub fn default_root() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = xdg.filter(|p| p.is_absolute()).or_else(|| {
        std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share"))
    })?;
    Some(base.join("depthprobe"))
}

/// The folder URLs to try for `ds`, in order: those of `mirror` (the value of
/// `DEPTHPROBE_MIRROR`) when given, else the data set's public mirrors.
pub fn sources(ds: &DataSet, mirror: Option<&str>) -> Result<Vec<String>> {
    let Some(m) = mirror.filter(|m| !m.trim().is_empty()) else {
        return Ok(ds.mirrors.clone());
    };
    m.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            let ok = ["http://", "https://", "file:///"].iter().any(|s| b.starts_with(s));
            if !ok {
                bail!("{MIRROR_ENV}: '{b}' is not an http://, https:// or file:///absolute/path URL");
            }
            Ok(format!("{}/{}/", b.trim_end_matches('/'), ds.folder))
        })
        .collect()
}

/// The MD5 of a file, as lowercase hex.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn verified(path: &Path, md5: &str, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == size) && md5_file(path).is_ok_and(|h| h == md5)
}

/// Whether `root` already holds `ds`, every file verified.
pub fn present(ds: &DataSet, root: &Path) -> bool {
    let dir = ds.target_dir(root);
    match &ds.unpack {
        Unpack::AsIs => ds.files.iter().all(|f| verified(&dir.join(&f.name), &f.md5, f.size)),
        Unpack::TarGz { members, .. } => members.iter().all(|m| verified(&dir.join(&m.name), &m.md5, m.size)),
    }
}

#[derive(Debug, PartialEq)]
pub enum Fetched {
    /// Every file was there and verified; nothing was fetched.
    AlreadyThere,
    /// Fetched, verified and placed.
    Downloaded,
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

/// What the user sees while bytes arrive: a bar on a terminal, a line per file otherwise.
struct Ui {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Ui {
    fn start(&mut self, label: &str, url: &str, size: u64, have: u64) {
        if self.quiet {
            return;
        }
        if std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(size);
            let style = "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
            b.set_style(indicatif::ProgressStyle::with_template(style).unwrap().progress_chars("=> "));
            b.set_message(label.to_string());
            b.set_position(have);
            self.bar = Some(b);
        } else {
            let from = if have > 0 { format!(", continuing at byte {have}") } else { String::new() };
            eprintln!("{label}: fetching {url} ({}{from})", human(size));
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    fn line(&mut self, s: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if !self.quiet {
            eprintln!("{s}");
        }
    }
}

/// What a fetched file turned out to be.
enum Verdict {
    /// The official file: its published MD5.
    Official,
    /// An archive with another MD5 (a mirror that packed the files itself) whose every member
    /// matches its published MD5: its MD5.
    Repacked(String),
    /// Neither: why.
    Wrong(String),
}

/// Fetch `ds` into `root` from `sources` (see [`sources`]), trying each in turn. A file whose
/// checksum does not match is deleted and refused with both checksums; a partial file is kept
/// and continued by the next call. An archive is judged by what is in it: the official one, or a
/// mirror's own packing whose every member matches its published MD5, is unpacked; any other is
/// refused.
pub fn download(ds: &DataSet, root: &Path, sources: &[String], quiet: bool) -> Result<Fetched> {
    if present(ds, root) {
        return Ok(Fetched::AlreadyThere);
    }
    let stage = root.join(".download").join(&ds.folder);
    std::fs::create_dir_all(&stage).with_context(|| format!("{}: cannot create", stage.display()))?;
    let mut ui = Ui { quiet, bar: None };
    for f in &ds.files {
        let label = format!("{}/{}", ds.folder, f.name);
        let part = stage.join(format!("{}.part", f.name));
        match &ds.unpack {
            Unpack::AsIs => {
                let placed = ds.target_dir(root).join(&f.name);
                if verified(&placed, &f.md5, f.size) {
                    continue;
                }
                let judge = |p: &Path| {
                    let md5 = md5_file(p)?;
                    Ok(if md5 == f.md5 {
                        Verdict::Official
                    } else {
                        Verdict::Wrong(format!("checksum mismatch: expected MD5 {}, got {md5}", f.md5))
                    })
                };
                fetch_verified(f, &label, sources, &part, &mut ui, Some(f.size), &judge)?;
                if let Some(parent) = placed.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::rename(&part, &placed)
                    .with_context(|| format!("cannot move {} into place", part.display()))?;
                ui.line(&format!("{label}: MD5 {} verified; {}", f.md5, placed.display()));
            }
            Unpack::TarGz { dir, members } => {
                // Unpacked while it is judged: a mirror's own packing has its own size and MD5.
                let judge = |p: &Path| {
                    let md5 = md5_file(p)?;
                    Ok(match unpack(p, dir, members, root, &stage) {
                        Ok(()) if md5 == f.md5 => Verdict::Official,
                        Ok(()) => Verdict::Repacked(md5),
                        Err(e) if md5 == f.md5 => Verdict::Wrong(format!("{e:#}")),
                        Err(e) => Verdict::Wrong(format!(
                            "checksum mismatch: expected MD5 {}, got {md5}, and it is not a packing of the \
                             official files either ({e:#})",
                            f.md5
                        )),
                    })
                };
                let how = fetch_verified(f, &label, sources, &part, &mut ui, None, &judge)?;
                std::fs::remove_file(&part)?;
                let n = members.len();
                let target = ds.target_dir(root);
                ui.line(&match how {
                    Verdict::Repacked(md5) => format!(
                        "{label}: not the official archive (MD5 {md5}, the official one's is {}: a mirror's own \
                         packing), but each of its {n} files matches its published MD5; unpacked in {}",
                        f.md5,
                        target.display()
                    ),
                    _ => format!(
                        "{label}: MD5 {} verified; {n} files unpacked and verified in {}",
                        f.md5,
                        target.display()
                    ),
                });
            }
        }
    }
    let _ = std::fs::remove_dir(&stage);
    let _ = std::fs::remove_dir(root.join(".download"));
    Ok(Fetched::Downloaded)
}

/// Bring `part` to a whole file from the first source that gives one `judge` accepts. `size`:
/// the size the file must have (None: whatever the source has).
fn fetch_verified(
    f: &Remote,
    label: &str,
    sources: &[String],
    part: &Path,
    ui: &mut Ui,
    size: Option<u64>,
    judge: &dyn Fn(&Path) -> Result<Verdict>,
) -> Result<Verdict> {
    let mut failures = Vec::new();
    for base in sources {
        let url = format!("{base}{}", f.name);
        let mut tries = 0;
        loop {
            let before = fetch::have(part);
            ui.start(label, &url, f.size, before);
            let got = fetch::fetch(&url, part, size, &mut |n| ui.bytes(n));
            match got {
                Ok(()) => {
                    let why = match judge(part)? {
                        Verdict::Wrong(why) => why,
                        ok => return Ok(ok),
                    };
                    std::fs::remove_file(part)?;
                    let why = format!("{label}: {why} (from {url}); the file was deleted");
                    ui.line(&why);
                    failures.push(why);
                    if before > 0 {
                        // The part kept from an earlier try may be what was wrong: once more, whole.
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    let now = fetch::have(part);
                    tries = if now > before { 1 } else { tries + 1 };
                    let gone = e.is::<fetch::NotThere>();
                    if gone || tries >= TRIES_WITHOUT_PROGRESS {
                        ui.line(&format!("{label}: {e:#}"));
                        failures.push(format!("{e:#}"));
                        break;
                    }
                    let of = size.map_or(String::new(), |s| format!(" of {s}"));
                    ui.line(&format!("{label}: {e:#}; {now}{of} bytes kept, trying again"));
                }
            }
        }
    }
    if sources.is_empty() {
        bail!("{label}: no mirror to fetch from");
    }
    let kept = fetch::have(part);
    let keep =
        if kept > 0 { format!("; {kept} bytes kept in {} for the next try", part.display()) } else { String::new() };
    bail!("{label}: could not be fetched{keep}:\n  {}", failures.join("\n  "))
}

/// Unpack `dir/<member>` of a .tar.gz into `root/dir`, every member verified before the folder
/// is put in place. Nothing else in the archive is written.
fn unpack(archive: &Path, dir: &str, members: &[Member], root: &Path, stage: &Path) -> Result<()> {
    let tmp = stage.join(format!("{dir}.unpacking"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let gz = flate2::read::GzDecoder::new(File::open(archive)?);
    let mut tar = tar::Archive::new(gz);
    for entry in tar.entries().with_context(|| format!("{}: not a tar.gz archive", archive.display()))? {
        let mut e = entry.with_context(|| format!("{}: damaged archive", archive.display()))?;
        let path = e.path()?.into_owned();
        let mut parts = path.components().map(|c| c.as_os_str().to_string_lossy().to_string());
        let (Some(d), Some(name), None) = (parts.next(), parts.next(), parts.next()) else { continue };
        if d != dir || !e.header().entry_type().is_file() {
            continue;
        }
        let mut out = File::create(tmp.join(&name))?;
        std::io::copy(&mut e, &mut out)?;
        out.sync_all()?;
    }
    for m in members {
        let p = tmp.join(&m.name);
        if !p.exists() {
            bail!("{}: the archive has no {dir}/{}", archive.display(), m.name);
        }
        let md5 = md5_file(&p)?;
        if md5 != m.md5 {
            std::fs::remove_dir_all(&tmp)?;
            bail!("{}: {dir}/{}: checksum mismatch: expected MD5 {}, got {md5}", archive.display(), m.name, m.md5);
        }
    }
    let target = root.join(dir);
    if target.exists() {
        // Incomplete or damaged (present() said so): the verified copy replaces it.
        let old = stage.join(format!("{dir}.replaced"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&target, &old)?;
        std::fs::rename(&tmp, &target)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, &target)?;
    }
    Ok(())
}
