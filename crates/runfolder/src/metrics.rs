//! `metrics.csv`: one value per row, in long format, one block of rows per probe
//! (docs/result-files.md). Written and read back here; values round-trip exactly.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use depthprobe_measures::json::f64_text;
use depthprobe_measures::{ProbeResult, Split};

/// One row; `layer` is None for network-level metrics (loss, accuracy, effective depth, lr).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub layer: Option<usize>,
    pub split: Split,
    pub metric: String,
    pub value: f64,
}

impl MetricRow {
    pub fn network(split: Split, metric: &str, value: f64) -> Self {
        MetricRow { layer: None, split, metric: metric.to_string(), value }
    }
}

/// The rows that come from one probe, with its epoch in training runs.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricBlock {
    pub epoch: Option<usize>,
    pub rows: Vec<MetricRow>,
}

impl MetricBlock {
    /// One value: (layer, or None for the network, split, metric); NaN when absent.
    pub fn value(&self, layer: Option<usize>, split: Split, name: &str) -> f64 {
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
            Split::Train,
            &format!("effective_depth_{eps}"),
            d.map(|d| d as f64).unwrap_or(f64::NAN),
        ));
    }
    if let Some(c) = &res.cka {
        // The CKA block at each ε-effective depth (train); NaN where a mean is undefined.
        for (eps, b) in &c.block_train {
            for (what, v) in [("within", b.within), ("across", b.across)] {
                rows.push(MetricRow::network(Split::Train, &format!("cka_block_{what}_{eps}"), v.unwrap_or(f64::NAN)));
            }
        }
    }
    for (eps, d) in &res.linear_effective_depth {
        rows.push(MetricRow::network(
            Split::Train,
            &format!("linear_effective_depth_{eps}"),
            d.map(|d| d as f64).unwrap_or(f64::NAN),
        ));
    }
    rows
}

const HEADER_EPOCH: &str = "epoch,layer,split,metric,value";
const HEADER: &str = "layer,split,metric,value";

/// `metrics.csv` text; when blocks carry epochs, the first column is the epoch.
pub fn metrics_csv(blocks: &[MetricBlock]) -> String {
    let with_epoch = blocks.iter().any(|b| b.epoch.is_some());
    let mut s = format!("{}\n", if with_epoch { HEADER_EPOCH } else { HEADER });
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

/// Read metrics.csv back into blocks (one per epoch in training runs, one in all otherwise).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricBlock>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines();
    let with_epoch = match lines.next() {
        Some(HEADER_EPOCH) => true,
        Some(HEADER) => false,
        _ => bail!("{}: not a depthprobe metrics.csv (the header must be {HEADER_EPOCH} or {HEADER})", path.display()),
    };
    let mut blocks: Vec<MetricBlock> = Vec::new();
    for (i, line) in lines.enumerate() {
        let bad = |what: &str| anyhow::anyhow!("{}: line {}: {what} in '{line}'", path.display(), i + 2);
        let f: Vec<&str> = line.split(',').collect();
        let (epoch, rest) = match (with_epoch, f.as_slice()) {
            (true, [e, rest @ ..]) => (Some(e.parse::<usize>().map_err(|_| bad("bad epoch"))?), rest),
            (false, rest) => (None, rest),
            _ => return Err(bad("missing fields")),
        };
        let [layer, split, name, value] = rest[..] else { return Err(bad("expected 5 fields")) };
        let layer = if layer.is_empty() { None } else { Some(layer.parse().map_err(|_| bad("bad layer"))?) };
        let split = Split::parse(split).ok_or_else(|| bad("split must be train or test"))?;
        let value = match value {
            "" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("bad value"))?,
        };
        let row = MetricRow { layer, split, metric: name.to_string(), value };
        match blocks.last_mut() {
            Some(b) if b.epoch == epoch => b.rows.push(row),
            _ => blocks.push(MetricBlock { epoch, rows: vec![row] }),
        }
    }
    Ok(blocks)
}

/// `cdnv_pairs.csv`: CDNV of every class pair, per layer and split.
pub fn cdnv_pairs_csv(res: &ProbeResult) -> String {
    let k = res.classes.len();
    let mut s = String::from("layer,split,class_a,class_b,cdnv\n");
    for l in &res.layers {
        for (split, pairs) in [("train", &l.cdnv_pairs_train), ("test", &l.cdnv_pairs_test)] {
            for i in 0..k {
                for j in (i + 1)..k {
                    // A result read back from JSON has no pairs (they are not in summary.json).
                    let v = pairs.get(i * k + j).copied().unwrap_or(f64::NAN);
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
