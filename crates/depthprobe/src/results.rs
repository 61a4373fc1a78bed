//! Result files shared by `measure` and `train` (schema in docs/result-files.md):
//! `summary.json`, `metrics.csv` (long format), `cdnv_pairs.csv`. Every file is written to a
//! temporary file beside its target and renamed, so a reader never sees half a result.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use depthprobe_measures::json::f64_text;
use depthprobe_measures::ProbeResult;
use serde_json::{Map, Value};

/// Write `bytes` to `path` atomically: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_all_atomic(&[(path.to_path_buf(), bytes.to_vec())])
}

/// Write several files as one unit: every file goes to a temporary file first (written and
/// fsynced); only when all succeeded are they renamed into place. A failure (disk full, file
/// size limit) removes the temporaries and leaves the earlier files untouched.
pub fn write_all_atomic(files: &[(std::path::PathBuf, Vec<u8>)]) -> Result<()> {
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

/// The probe result as the `summary.json` object, with `extra` top-level fields merged in.
pub fn summary_value(res: &ProbeResult, extra: Map<String, Value>) -> Value {
    let mut v = serde_json::to_value(res).expect("probe results serialize");
    let obj = v.as_object_mut().unwrap();
    for (k, x) in extra {
        obj.insert(k, x);
    }
    v
}

/// Pretty JSON with a final newline: how every JSON result file is written.
pub fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

pub fn write_json(path: &Path, v: &Value) -> Result<()> {
    write_atomic(path, json_text(v)?.as_bytes())
}

/// One row of metrics.csv; `layer` is None for network-level metrics (loss, accuracy, …).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub layer: Option<usize>,
    pub split: &'static str,
    pub metric: String,
    pub value: f64,
}

impl MetricRow {
    pub fn network(split: &'static str, metric: &str, value: f64) -> Self {
        MetricRow { layer: None, split, metric: metric.to_string(), value }
    }
}

/// The rows of metrics.csv that come from one probe, optionally tagged with its epoch.
pub struct MetricBlock {
    pub epoch: Option<usize>,
    pub rows: Vec<MetricRow>,
}

impl MetricBlock {
    /// One value: (layer, or None for the network, split, metric); NaN when absent.
    pub fn value(&self, layer: Option<usize>, split: &str, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.layer == layer && r.split == split && r.metric == name)
            .map(|r| r.value)
            .unwrap_or(f64::NAN)
    }
}

/// Long-format rows for one probe: every scalar measure of every layer, then effective depth.
pub fn metric_rows(res: &ProbeResult) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for l in &res.layers {
        for (name, split, v) in l.scalar_metrics() {
            if let Some(v) = v {
                rows.push(MetricRow { layer: Some(l.layer), split, metric: name.to_string(), value: v });
            }
        }
    }
    for (eps, d) in &res.effective_depth {
        // NaN (written empty) marks "not separable at any layer".
        rows.push(MetricRow::network(
            "train",
            &format!("effective_depth_{eps}"),
            d.map(|d| d as f64).unwrap_or(f64::NAN),
        ));
    }
    rows
}

/// `metrics.csv` text; when blocks carry epochs, the first column is the epoch.
pub fn metrics_csv(blocks: &[MetricBlock]) -> String {
    let with_epoch = blocks.iter().any(|b| b.epoch.is_some());
    let mut s =
        String::from(if with_epoch { "epoch,layer,split,metric,value\n" } else { "layer,split,metric,value\n" });
    for b in blocks {
        for r in &b.rows {
            if let Some(e) = b.epoch {
                let _ = write!(s, "{e},");
            }
            let layer = r.layer.map(|l| l.to_string()).unwrap_or_default();
            let _ = writeln!(s, "{layer},{},{},{}", r.split, r.metric, f64_text(r.value));
        }
    }
    s
}

/// `cdnv_pairs.csv`: CDNV of every class pair, per layer and split.
pub fn cdnv_pairs_csv(res: &ProbeResult) -> String {
    let k = res.classes.len();
    let mut s = String::from("layer,split,class_a,class_b,cdnv\n");
    for l in &res.layers {
        for (split, pairs) in [("train", &l.cdnv_pairs_train), ("test", &l.cdnv_pairs_test)] {
            for i in 0..k {
                for j in (i + 1)..k {
                    let v = pairs[i * k + j];
                    if !v.is_nan() {
                        let _ =
                            writeln!(s, "{},{split},{},{},{}", l.layer, res.classes[i], res.classes[j], f64_text(v));
                    }
                }
            }
        }
    }
    s
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.is_infinite() => "inf".into(),
        Some(x) if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) => {
            format!("{x:.prec$e}", prec = prec.saturating_sub(1))
        }
        Some(x) => format!("{x:.prec$}"),
    }
}

/// The concise per-layer table printed to the terminal.
pub fn table(res: &ProbeResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "layer", "dim", "NCC train", "NCC test", "CDNV train", "CDNV test", "NC1", "fuzziness"
    );
    for l in &res.layers {
        let _ = writeln!(
            s,
            "{:>5} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
            l.layer,
            l.dim,
            fmt_opt(Some(l.ncc_train_acc), 4),
            fmt_opt(l.ncc_test_acc, 4),
            fmt_opt(l.cdnv_train, 4),
            fmt_opt(l.cdnv_test, 4),
            fmt_opt(l.nc1, 4),
            fmt_opt(l.fuzziness, 4),
        );
    }
    let depths: Vec<String> = res
        .effective_depth
        .iter()
        .map(|(e, d)| format!("ε={e}: {}", d.map(|d| d.to_string()).unwrap_or_else(|| "not separable".into())))
        .collect();
    let _ = writeln!(s, "effective depth (of {} layers): {}", res.layers.len(), depths.join(", "));
    s
}
