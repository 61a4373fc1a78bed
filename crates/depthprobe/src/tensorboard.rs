//! A run's numbers as TensorBoard scalars and images (docs/result-files.md, "TensorBoard"):
//! the tag of each metrics.csv row, what a training run logs as it goes (pipeline.rs), and
//! `depthprobe export tensorboard` for runs that already exist. The event-file format is in
//! the `depthprobe-tensorboard` crate.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use depthprobe_runfolder::{MetricBlock, MetricRow, RunFolder};
pub use depthprobe_tensorboard::EventWriter;

use crate::sweep::plan::SweepDir;

/// The figures a run draws, logged as images at its last epoch (the last two only with
/// `probe.cka` / `probe.weight_spectra`).
pub const FIGURES: [&str; 4] = ["layer_profile", "ncc_by_epoch", "cka", "weight_spectra"];

/// `ncc_acc` of split train → `ncc_train_acc` (summary.json's names); other measures get the
/// split appended (`cdnv_train`).
fn with_split(metric: &str, split: &str) -> String {
    match metric.strip_suffix("_acc") {
        Some(p) => format!("{p}_{split}_acc"),
        None => format!("{metric}_{split}"),
    }
}

/// The tag of a metrics.csv row: `layer_03/ncc_train_acc`, `layer_03/weight_stable_rank` (a
/// weight has no split), `net/train_acc`, `net/lr`, `effective_depth/eps_0.01`,
/// `linear_effective_depth/eps_0.01`, `cka_block/within_eps_0.01` (summary.json's and the
/// Python callbacks' names).
pub fn tag(row: &MetricRow) -> String {
    let split = row.split.to_string();
    match row.layer {
        Some(l) if row.metric.starts_with("weight_") => format!("layer_{l:02}/{}", row.metric),
        Some(l) => format!("layer_{l:02}/{}", with_split(&row.metric, &split)),
        None => {
            for kind in ["within", "across"] {
                if let Some(eps) = row.metric.strip_prefix(&format!("cka_block_{kind}_")) {
                    return format!("cka_block/{kind}_eps_{eps}");
                }
            }
            for kind in ["linear_effective_depth", "effective_depth"] {
                if let Some(eps) = row.metric.strip_prefix(kind).and_then(|r| r.strip_prefix('_')) {
                    return format!("{kind}/eps_{eps}");
                }
            }
            if row.metric == "lr" {
                "net/lr".into()
            } else {
                format!("net/{split}_{}", row.metric)
            }
        }
    }
}

/// A probe's rows as (tag, value); an effective depth that is not reached (NaN) has no point.
pub fn block_scalars(block: &MetricBlock) -> Vec<(String, f64)> {
    block.rows.iter().map(|r| (tag(r), r.value)).collect()
}

/// Log one probe's block at its epoch.
pub fn log_block(w: &mut EventWriter, block: &MetricBlock) -> Result<()> {
    w.scalars(block.epoch.unwrap_or(0) as i64, &block_scalars(block))
}

/// Log the figures found in `run_dir` at `step`.
pub fn log_figures(w: &mut EventWriter, run_dir: &Path, step: i64) -> Result<()> {
    for f in FIGURES {
        let p = run_dir.join(format!("{f}.png"));
        if let Ok(png) = std::fs::read(&p) {
            w.png(step, &format!("figures/{f}"), &png).with_context(|| p.display().to_string())?;
        }
    }
    Ok(())
}

/// One run folder's metrics.csv and figures into a new event file in `out`.
fn export_run(run_dir: &Path, out: &Path) -> Result<PathBuf> {
    let folder = RunFolder::new(run_dir);
    let blocks = folder.metrics()?;
    if blocks.is_empty() {
        bail!("{}: no metrics.csv to export (the run has not been probed yet)", run_dir.display());
    }
    let mut w = EventWriter::create(out, "depthprobe-export")?;
    for b in &blocks {
        log_block(&mut w, b)?;
    }
    let last = blocks.iter().filter_map(|b| b.epoch).max().unwrap_or(0);
    log_figures(&mut w, run_dir, last as i64)?;
    Ok(w.path().to_path_buf())
}

/// `depthprobe export tensorboard`: a run folder into `out`, or every run of a sweep folder
/// that has metrics into `out/<run id>/` (TensorBoard shows each as its own run).
pub fn export(path: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    if path.join("plan.json").exists() {
        let sd = SweepDir(path.to_path_buf());
        let plan = sd.read_plan()?;
        let mut files = Vec::new();
        for r in &plan.runs {
            let rd = sd.run_dir(&r.id);
            if rd.join("metrics.csv").exists() {
                files.push(export_run(&rd, &out.join(&r.id))?);
            }
        }
        if files.is_empty() {
            bail!("{}: no run of this sweep has metrics yet", path.display());
        }
        Ok(files)
    } else if path.join("metrics.csv").exists() {
        Ok(vec![export_run(path, out)?])
    } else {
        bail!("{}: neither a run folder (metrics.csv) nor a sweep folder (plan.json)", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use depthprobe_measures::Split;

    #[test]
    fn tags_follow_summary_json_names() {
        let row = |layer, split, metric: &str| MetricRow { layer, split, metric: metric.into(), value: 1.0 };
        assert_eq!(tag(&row(Some(3), Split::Train, "ncc_acc")), "layer_03/ncc_train_acc");
        assert_eq!(tag(&row(Some(12), Split::Test, "cdnv")), "layer_12/cdnv_test");
        assert_eq!(tag(&row(None, Split::Train, "acc")), "net/train_acc");
        assert_eq!(tag(&row(None, Split::Test, "loss")), "net/test_loss");
        assert_eq!(tag(&row(None, Split::Train, "lr")), "net/lr");
        assert_eq!(tag(&row(None, Split::Train, "effective_depth_0.01")), "effective_depth/eps_0.01");
        assert_eq!(tag(&row(None, Split::Train, "linear_effective_depth_0.1")), "linear_effective_depth/eps_0.1");
        assert_eq!(tag(&row(Some(2), Split::Train, "weight_stable_rank")), "layer_02/weight_stable_rank");
        assert_eq!(tag(&row(Some(2), Split::Test, "cka_top")), "layer_02/cka_top_test");
        assert_eq!(tag(&row(None, Split::Train, "cka_block_within_0.01")), "cka_block/within_eps_0.01");
        assert_eq!(tag(&row(None, Split::Train, "cka_block_across_0.05")), "cka_block/across_eps_0.05");
    }
}
