//! `depthprobe measure`: the layer measures over embeddings dumped by any framework.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use depthprobe_measures::{LayerProbe, ProbeError, ProbeResult, ProbeSpec, Split};
use rayon::prelude::*;
use serde_json::{json, Map};

use crate::embeddings::SplitEmbeddings;
use crate::results;

/// Rows read per chunk and layer: bounds memory at CHUNK × Σ D_i × 4 bytes.
pub const CHUNK_ROWS: usize = 4096;

pub struct MeasureOptions {
    pub train: PathBuf,
    pub test: PathBuf,
    pub eps: Vec<f64>,
    pub num_classes: Option<usize>,
    pub classes: Option<Vec<usize>>,
    pub rank_max_dim: usize,
}

/// Name the file behind a probe error (the probe itself only knows layer numbers).
fn locate(e: ProbeError, train: &SplitEmbeddings, test: &SplitEmbeddings) -> anyhow::Error {
    let data = |split: &str| if split == "test" { test } else { train };
    match &e {
        ProbeError::NonFinite { split, layer, .. } | ProbeError::Shape { split, layer, .. } => {
            anyhow::anyhow!("{}: {e}", data(split).layers[layer - 1].origin)
        }
        ProbeError::LabelOutOfRange { split, .. } => {
            anyhow::anyhow!("{}: {e}", data(split).labels.origin)
        }
        ProbeError::EmptyClass { .. } => anyhow::anyhow!("{}: {e}", train.labels.origin),
        _ => anyhow::anyhow!(e),
    }
}

/// Stream one split through the probe, chunk by chunk, layers in parallel.
fn feed(
    probe: &mut LayerProbe,
    split: Split,
    data: &SplitEmbeddings,
    other: &SplitEmbeddings,
    agreement: bool,
) -> Result<()> {
    let (train, test) = if split == Split::Train { (data, other) } else { (other, data) };
    let mut labels = Vec::new();
    let mut bufs: Vec<Vec<f32>> = vec![Vec::new(); data.layers.len()];
    let mut logits = Vec::new();
    let mut start = 0;
    while start < data.rows() {
        let n = CHUNK_ROWS.min(data.rows() - start);
        data.labels.read_labels(start, n, &mut labels)?;
        bufs.par_iter_mut()
            .zip(data.layers.par_iter())
            .map(|(b, m)| m.read_f32(start, n, b))
            .collect::<Result<Vec<()>>>()?;
        let refs: Vec<&[f32]> = bufs.iter().map(|b| b.as_slice()).collect();
        probe.update_all(split, &refs, &labels).map_err(|e| locate(e, train, test))?;
        if agreement {
            if let Some(lg) = &data.logits {
                lg.read_f32(start, n, &mut logits)?;
                probe
                    .update_agreement(split, refs.last().unwrap(), &logits, &labels)
                    .map_err(|e| locate(e, train, test))?;
            }
        }
        start += n;
    }
    Ok(())
}

/// Largest label in a split (one streaming pass over the labels only).
fn max_label(d: &SplitEmbeddings) -> Result<u32> {
    let mut labels = Vec::new();
    let mut m = 0;
    let mut start = 0;
    while start < d.rows() {
        let n = CHUNK_ROWS.min(d.rows() - start);
        d.labels.read_labels(start, n, &mut labels)?;
        m = labels.iter().copied().fold(m, u32::max);
        start += n;
    }
    Ok(m)
}

pub fn run_probe(opts: &MeasureOptions) -> Result<(ProbeResult, SplitEmbeddings, SplitEmbeddings)> {
    let train = SplitEmbeddings::open(&opts.train)?;
    let test = SplitEmbeddings::open(&opts.test)?;
    if train.dims() != test.dims() {
        bail!(
            "layers differ between {} (dims {:?}) and {} (dims {:?})",
            train.source.display(),
            train.dims(),
            test.source.display(),
            test.dims()
        );
    }
    if train.rows() == 0 {
        bail!("{}: the train split has no rows", train.labels.origin);
    }
    let num_classes = match opts.num_classes {
        Some(c) => c,
        None => max_label(&train)? as usize + 1,
    };
    let mut spec = ProbeSpec::new(num_classes, train.dims());
    spec.eps = opts.eps.clone();
    spec.classes = opts.classes.clone();
    spec.rank_max_dim = opts.rank_max_dim;
    let mut probe = LayerProbe::new(spec)?;
    if let Some(w) = &train.classifier_weight {
        let mut buf = Vec::new();
        w.read_f32(0, w.rows, &mut buf)?;
        probe.set_classifier(&buf).with_context(|| w.origin.clone())?;
    }
    feed(&mut probe, Split::Train, &train, &test, false)?;
    probe.next_pass().map_err(|e| locate(e, &train, &test))?;
    feed(&mut probe, Split::Train, &train, &test, true)?;
    feed(&mut probe, Split::Test, &test, &train, true)?;
    let res = probe.finish().map_err(|e| locate(e, &train, &test))?;
    Ok((res, train, test))
}

/// Write summary.json, metrics.csv and cdnv_pairs.csv into `out`.
pub fn write_outputs(out: &Path, res: &ProbeResult, extra: Map<String, serde_json::Value>) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let summary = results::json_text(&results::summary_value(res, extra))?;
    let metrics = results::metrics_csv(&[results::MetricBlock { epoch: None, rows: results::metric_rows(res) }]);
    results::write_all_atomic(&[
        (out.join("summary.json"), summary.into_bytes()),
        (out.join("metrics.csv"), metrics.into_bytes()),
        (out.join("cdnv_pairs.csv"), results::cdnv_pairs_csv(res).into_bytes()),
    ])?;
    Ok(())
}

pub fn measure(opts: &MeasureOptions, out: &Path) -> Result<ProbeResult> {
    let t0 = std::time::Instant::now();
    let (res, train, test) = run_probe(opts)?;
    let mut extra = Map::new();
    extra.insert("source".into(), json!({"train": train.source, "test": test.source}));
    extra.insert("wall_s".into(), json!(t0.elapsed().as_secs_f64()));
    write_outputs(out, &res, extra)?;
    Ok(res)
}
