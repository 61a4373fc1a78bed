//! A run folder as types: every file depthprobe writes into it is a type here, used both to write
//! it and to read it back (training, resume, the sweep tools, the report, Python's `read_run`).
//! File formats are in docs/result-files.md and docs/checkpoints.md.
//!
//! | file | type |
//! |---|---|
//! | `summary.json` | [`Summary`] (with [`Status`]) |
//! | `metrics.csv` | [`MetricBlock`] rows |
//! | `cdnv_pairs.csv` | written from the probe result |
//! | `checkpoint.json` | [`CheckpointMeta`] |
//! | `config.toml` | `depthprobe_config::Config` |
//! | `corrupted_labels.csv` | [`Relabel`] rows |
//! | `s2_predictions.csv` | (label, predicted) per sample of the bound's held-out half S2 |

mod atomic;
mod checkpoint;
mod metrics;
mod summary;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use depthprobe_config::Config;
use depthprobe_measures::ProbeResult;

pub use atomic::{json_text, write_all_atomic, write_atomic};
pub use checkpoint::{state_file, CheckpointMeta, Position, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_STEP};
pub use metrics::{cdnv_pairs_csv, metric_rows, metrics_csv, read_metrics, MetricBlock, MetricRow};
pub use summary::{AdaptiveThreads, BatchInfo, CorruptionInfo, CpuUse, NetworkMetrics, Source, Status, Summary};

/// A train label that corruption changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relabel {
    pub index: usize,
    pub original: i64,
    pub corrupted: i64,
}

/// A clean bound run's predictions on S2 (docs/result-files.md).
const S2_PREDICTIONS: &str = "s2_predictions.csv";

/// The files a run folder can hold; a fresh run removes the ones an earlier run left.
const RUN_FILES: [&str; 7] = [
    "summary.json",
    "metrics.csv",
    "cdnv_pairs.csv",
    "corrupted_labels.csv",
    S2_PREDICTIONS,
    "config.toml",
    "checkpoint.json",
];

/// A run folder (or a `measure` / `probe` output folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFolder(pub PathBuf);

impl RunFolder {
    pub fn new(path: impl Into<PathBuf>) -> RunFolder {
        RunFolder(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The folder's last component: how a batched group names its runs.
    pub fn name(&self) -> String {
        self.0.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| self.0.display().to_string())
    }

    /// Whether the folder holds a run (a config or a summary).
    pub fn holds_run(&self) -> bool {
        self.file("summary.json").exists() || self.file("config.toml").exists()
    }

    /// Make the folder ready for a fresh run: refuse to overwrite an earlier run unless `force`,
    /// then write config.toml and, with corruption, corrupted_labels.csv.
    pub fn start(&self, cfg: &Config, changed: &[Relabel], force: bool) -> Result<()> {
        let out = self.path();
        if self.holds_run() {
            if !force {
                bail!("{} already holds a run (config.toml / summary.json); pass --force to overwrite it or choose another --out", out.display());
            }
            for f in RUN_FILES {
                let _ = std::fs::remove_file(out.join(f));
            }
            let _ = std::fs::remove_dir_all(out.join("checkpoints"));
        }
        std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create run folder", out.display()))?;
        write_atomic(&self.file("config.toml"), cfg.to_toml().as_bytes())?;
        if cfg.corruption.p > 0.0 {
            let mut s = String::from("index,original_label,corrupted_label\n");
            for r in changed {
                let _ = writeln!(s, "{},{},{}", r.index, r.original, r.corrupted);
            }
            write_atomic(&self.file("corrupted_labels.csv"), s.as_bytes())?;
        }
        Ok(())
    }

    /// Write `s2_predictions.csv`: (true label, predicted label) for each sample of S2, in order.
    pub fn write_s2_predictions(&self, rows: &[(u32, u32)]) -> Result<()> {
        let mut s = String::from("index,label,predicted\n");
        for (i, (l, p)) in rows.iter().enumerate() {
            let _ = writeln!(s, "{i},{l},{p}");
        }
        write_atomic(&self.file(S2_PREDICTIONS), s.as_bytes())
    }

    /// `s2_predictions.csv` as written by `write_s2_predictions`, or None when there is none.
    pub fn s2_predictions(&self) -> Result<Option<Vec<(u32, u32)>>> {
        let path = self.file(S2_PREDICTIONS);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!("{}: {e}", path.display()),
        };
        let mut lines = text.lines();
        if lines.next() != Some("index,label,predicted") {
            bail!("{}: line 1: expected the header 'index,label,predicted'", path.display());
        }
        let mut out = Vec::new();
        for (i, line) in lines.enumerate() {
            let f: Vec<&str> = line.split(',').collect();
            let num = |s: &str, what: &str| -> Result<u32> {
                s.trim().parse().map_err(|_| {
                    anyhow::anyhow!("{}: line {}: {what} '{s}' is not a class number", path.display(), i + 2)
                })
            };
            if f.len() != 3 || f[0].trim().parse::<usize>().ok() != Some(i) {
                bail!("{}: line {}: expected '{i},label,predicted', found '{line}'", path.display(), i + 2);
            }
            out.push((num(f[1], "label")?, num(f[2], "predicted")?));
        }
        Ok(Some(out))
    }

    pub fn config(&self) -> Result<Config> {
        Config::from_file(&self.file("config.toml"), &[])
    }

    /// summary.json, or None when there is none yet.
    pub fn summary(&self) -> Result<Option<Summary>> {
        let p = self.file("summary.json");
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", p.display())),
        };
        serde_json::from_str(&text).map(Some).with_context(|| format!("{}: not a depthprobe summary.json", p.display()))
    }

    /// metrics.csv (empty when there is none yet).
    pub fn metrics(&self) -> Result<Vec<MetricBlock>> {
        let p = self.file("metrics.csv");
        if !p.exists() {
            return Ok(Vec::new());
        }
        read_metrics(&p)
    }

    /// Write summary.json, metrics.csv and (with a probe) cdnv_pairs.csv as one unit.
    pub fn write_results(&self, summary: &Summary, metrics: &[MetricBlock]) -> Result<()> {
        let mut files = vec![
            (self.file("metrics.csv"), metrics_csv(metrics).into_bytes()),
            (self.file("summary.json"), json_text(summary)?.into_bytes()),
        ];
        if let Some(r) = &summary.result {
            files.push((self.file("cdnv_pairs.csv"), cdnv_pairs_csv(r).into_bytes()));
        }
        write_all_atomic(&files)
    }

    /// What `measure` and `probe` write: summary.json, metrics.csv, cdnv_pairs.csv.
    pub fn write_probe(&self, summary: &Summary, epoch: Option<usize>) -> Result<()> {
        let result: &ProbeResult = summary.result.as_ref().context("a probe summary holds a result")?;
        std::fs::create_dir_all(self.path()).with_context(|| format!("{}: cannot create", self.path().display()))?;
        self.write_results(summary, &[MetricBlock { epoch, rows: metric_rows(result) }])
    }

    /// checkpoint.json, or None before the first checkpoint.
    pub fn checkpoint(&self) -> Result<Option<CheckpointMeta>> {
        let p = self.file("checkpoint.json");
        let Ok(text) = std::fs::read_to_string(&p) else { return Ok(None) };
        let c: CheckpointMeta = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a depthprobe checkpoint.json", p.display()))?;
        if c.format != CHECKPOINT_FORMAT && c.format != CHECKPOINT_FORMAT_STEP {
            bail!("{}: format '{}' is not {CHECKPOINT_FORMAT} or {CHECKPOINT_FORMAT_STEP}", p.display(), c.format);
        }
        Ok(Some(c))
    }

    /// The state file saved at `at`, if it is still there.
    pub fn state_at(&self, at: Position) -> Option<PathBuf> {
        let p = self.file(&state_file(at));
        p.is_file().then_some(p)
    }

    /// Where the state of `at` goes (the checkpoints/ folder is created).
    pub fn new_state_path(&self, at: Position) -> Result<PathBuf> {
        let dir = self.file("checkpoints");
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        Ok(self.file(&state_file(at)))
    }

    /// Point checkpoint.json at the state of `at` (which must be complete on disk).
    pub fn commit_checkpoint(&self, at: Position) -> Result<()> {
        write_atomic(&self.file("checkpoint.json"), json_text(&CheckpointMeta::new(at))?.as_bytes())
    }

    /// Remove every state file but the one of `keep`.
    pub fn prune_states(&self, keep: Position) {
        let keep = self.file(&state_file(keep));
        if let Ok(entries) = std::fs::read_dir(self.file("checkpoints")) {
            for e in entries.flatten() {
                if e.path() != keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use depthprobe_measures::{LayerProbe, ProbeSpec, Split};

    fn probe_result() -> ProbeResult {
        let mut p = LayerProbe::new(ProbeSpec::new(2, vec![2])).unwrap();
        let x = [0.0f32, 0.0, 1.0, 0.0, 5.0, 5.0, 6.0, 5.0];
        let y = [0u32, 0, 1, 1];
        p.update(Split::Train, 1, &x, &y).unwrap();
        p.next_pass().unwrap();
        p.update(Split::Train, 1, &x, &y).unwrap();
        p.update(Split::Test, 1, &x, &y).unwrap();
        p.finish().unwrap()
    }

    #[test]
    fn summary_round_trips_through_its_type() {
        let mut s = Summary::of_probe(probe_result(), 1.5);
        s.status = Some(Status::Running);
        s.epochs = Some(3);
        s.network = Some(NetworkMetrics { train_acc: 1.0, test_acc: f64::NAN, train_loss: 0.1, test_loss: 0.2 });
        s.batch = Some(BatchInfo { size: 2, runs: vec!["a".into(), "b".into()] });
        s.source = Some(Source::Embeddings { train: "tr".into(), test: "te".into() });
        let text = json_text(&s).unwrap();
        assert!(text.contains("\"test_acc\": null") && text.contains("\"status\": \"running\""), "{text}");
        let back: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(back.status, Some(Status::Running));
        assert_eq!(back.batch, s.batch);
        assert!(back.network.unwrap().test_acc.is_nan());
        assert_eq!(back.result.unwrap().layers[0].ncc_train_acc, 1.0);
        assert_eq!(json_text(&serde_json::from_str::<Summary>(&text).unwrap()).unwrap(), text);
        // A run that failed before its first probe has neither a result nor network metrics.
        let bare = r#"{"status": "failed", "reason": "no data", "wall_s": 0.1}"#;
        let b: Summary = serde_json::from_str(bare).unwrap();
        assert!(b.result.is_none() && b.network.is_none() && b.status == Some(Status::Failed));
        // Infinite CDNV is the string "inf" in the file and +∞ again when read.
        let inf = text.replace("\"cdnv_train\": 0.", "\"cdnv_train\": \"inf\", \"x\": 0.");
        if inf != text {
            let r: Summary = serde_json::from_str(&inf).unwrap();
            assert_eq!(r.result.unwrap().layers[0].cdnv_train, Some(f64::INFINITY));
        }
        let e = serde_json::from_str::<Summary>(r#"{"status": "paused", "wall_s": 1}"#).unwrap_err().to_string();
        assert!(e.contains("paused"), "{e}");
    }

    #[test]
    fn metrics_round_trip_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let f = RunFolder::new(tmp.path());
        let rows = metric_rows(&probe_result());
        let blocks = vec![
            MetricBlock { epoch: Some(0), rows: rows.clone() },
            MetricBlock { epoch: Some(2), rows: vec![MetricRow::network(Split::Test, "acc", 1.0 / 3.0)] },
        ];
        let s = Summary::of_probe(probe_result(), 0.0);
        f.write_results(&s, &blocks).unwrap();
        assert_eq!(f.metrics().unwrap(), blocks);
        std::fs::write(f.file("metrics.csv"), "epoch,layer,split,metric,value\n1,1,val,ncc_acc,1\n").unwrap();
        let e = f.metrics().unwrap_err().to_string();
        assert!(e.contains("metrics.csv: line 2") && e.contains("split must be train or test"), "{e}");
    }

    #[test]
    fn s2_predictions_round_trip_and_a_fresh_run_removes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let f = RunFolder::new(tmp.path());
        assert!(f.s2_predictions().unwrap().is_none());
        let rows = vec![(0, 0), (3, 7), (9, 9)];
        f.write_s2_predictions(&rows).unwrap();
        assert_eq!(f.s2_predictions().unwrap(), Some(rows));
        std::fs::write(f.file("s2_predictions.csv"), "index,label,predicted\n0,1,1\n2,1,x\n").unwrap();
        let e = f.s2_predictions().unwrap_err().to_string();
        assert!(e.contains("s2_predictions.csv: line 3: expected '1,label,predicted'"), "{e}");
        std::fs::write(f.file("s2_predictions.csv"), "index,label,predicted\n0,1,-1\n").unwrap();
        let e = f.s2_predictions().unwrap_err().to_string();
        assert!(e.contains("line 2: predicted '-1' is not a class number"), "{e}");
        // A forced fresh run in the folder of an earlier run leaves none of its predictions.
        f.start(&Config::default(), &[], false).unwrap();
        f.write_s2_predictions(&[(1, 2)]).unwrap();
        f.start(&Config::default(), &[], true).unwrap();
        assert!(!f.file("s2_predictions.csv").exists());
    }

    #[test]
    fn checkpoint_meta_names_its_state_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = RunFolder::new(tmp.path());
        assert!(f.checkpoint().unwrap().is_none());
        let p = f.new_state_path(Position::end_of(7)).unwrap();
        std::fs::write(&p, b"x").unwrap();
        f.commit_checkpoint(Position::end_of(7)).unwrap();
        let c = f.checkpoint().unwrap().unwrap();
        assert_eq!((c.epoch, c.step, c.file.as_str()), (7, 0, "checkpoints/epoch-00007.safetensors"));
        // An end-of-epoch checkpoint.json stays readable by builds that know no steps.
        let text = std::fs::read_to_string(tmp.path().join("checkpoint.json")).unwrap();
        assert!(!text.contains("step") && text.contains(CHECKPOINT_FORMAT), "{text}");
        assert_eq!(f.state_at(Position::end_of(7)), Some(p.clone()));
        assert_eq!(f.state_at(Position::end_of(6)), None);
        // Inside an epoch: its own file and format; pruning keeps only it.
        let mid = Position { epoch: 7, step: 12 };
        let q = f.new_state_path(mid).unwrap();
        std::fs::write(&q, b"y").unwrap();
        f.commit_checkpoint(mid).unwrap();
        let c = f.checkpoint().unwrap().unwrap();
        assert_eq!((c.position(), c.file.as_str()), (mid, "checkpoints/epoch-00007-step-000012.safetensors"));
        assert_eq!(c.format, CHECKPOINT_FORMAT_STEP);
        f.prune_states(mid);
        assert!(!p.exists() && q.exists());
        assert!(Position::end_of(7) < mid && mid < Position::end_of(8));
    }
}
