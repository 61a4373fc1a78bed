//! `depthprobe measure`: the layer measures of embeddings dumped by any framework, streamed from
//! the files through the measures' two-pass driver and the host reduction.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use depthprobe_formats::{MappedF32, Matrix, SplitEmbeddings};
use depthprobe_measures::{
    drive, AllLayersSink, HostBatch, HostReducer, LayerSink, LayerStreams, Probe, ProbeError, ProbeResult, ProbeSpec,
    Split,
};
use depthprobe_runfolder::{RunFolder, Source, Summary};

/// Rows read per chunk of a layer: bounds memory at CHUNK × Σ D_i × 4 bytes.
pub const CHUNK_ROWS: usize = 1024;

pub struct MeasureOptions {
    pub train: PathBuf,
    pub test: PathBuf,
    pub eps: Vec<f64>,
    pub num_classes: Option<usize>,
    pub classes: Option<Vec<usize>>,
    pub rank_max_dim: usize,
    pub linear_max_dim: usize,
    pub linear_ridge: f64,
    /// Linear CKA between every pair of layers.
    pub cka: bool,
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

/// One chunk of one layer: mapped from its file where the format allows, else read.
enum Rows {
    Mapped(MappedF32),
    Read(Vec<f32>),
}

impl Rows {
    fn load(&mut self, m: &Matrix, start: usize, n: usize) -> Result<()> {
        // Unmap the previous window first: at most one chunk per layer is resident.
        if let Rows::Mapped(_) = self {
            *self = Rows::Read(Vec::new());
        }
        if let Some(map) = m.map_f32(start, n)? {
            *self = Rows::Mapped(map);
        } else if let Rows::Read(b) = self {
            m.read_f32(start, n, b)?;
        }
        Ok(())
    }

    fn as_slice(&self) -> &[f32] {
        match self {
            Rows::Mapped(m) => m,
            Rows::Read(b) => b,
        }
    }
}

/// One split's files as layer streams: each layer reads its own file (and the labels, and with
/// the top layer the logits) chunk by chunk, so the layers run in parallel without waiting for
/// one another.
struct Streams<'a> {
    data: &'a SplitEmbeddings,
}

impl LayerStreams for Streams<'_> {
    fn stream(&self, layer: usize, logits: bool, sink: &mut LayerSink<'_>) -> Result<(), ProbeError> {
        let input = |e: anyhow::Error| ProbeError::Input(format!("{e:#}"));
        let m = &self.data.layers[layer - 1];
        let logits = self.data.logits.as_ref().filter(|_| logits);
        let (mut rows, mut lg, mut labels) = (Rows::Read(Vec::new()), Rows::Read(Vec::new()), Vec::new());
        let mut start = 0;
        while start < self.data.rows() {
            let n = CHUNK_ROWS.min(self.data.rows() - start);
            self.data.labels.read_labels(start, n, &mut labels).map_err(input)?;
            rows.load(m, start, n).map_err(input)?;
            if let Some(lm) = logits {
                lg.load(lm, start, n).map_err(input)?;
            }
            sink(rows.as_slice(), &labels, logits.map(|_| lg.as_slice()))?;
            start += n;
        }
        Ok(())
    }

    fn stream_all(&self, sink: &mut AllLayersSink<'_>) -> Result<(), ProbeError> {
        let input = |e: anyhow::Error| ProbeError::Input(format!("{e:#}"));
        let mut rows: Vec<Rows> = self.data.layers.iter().map(|_| Rows::Read(Vec::new())).collect();
        let mut labels = Vec::new();
        let mut start = 0;
        while start < self.data.rows() {
            let n = CHUNK_ROWS.min(self.data.rows() - start);
            self.data.labels.read_labels(start, n, &mut labels).map_err(input)?;
            for (r, m) in rows.iter_mut().zip(&self.data.layers) {
                r.load(m, start, n).map_err(input)?;
            }
            let xs: Vec<&[f32]> = rows.iter().map(Rows::as_slice).collect();
            sink(&xs, &labels)?;
            start += n;
        }
        Ok(())
    }
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
    spec.linear_max_dim = opts.linear_max_dim;
    spec.linear_ridge = opts.linear_ridge;
    spec.cka = opts.cka;
    let mut probe = Probe::new(spec)?;
    if let Some(w) = &train.classifier_weight {
        let mut buf = Vec::new();
        w.read_f32(0, w.rows, &mut buf)?;
        probe.set_classifier(&buf).with_context(|| w.origin.clone())?;
    }
    let mut reducer = HostReducer::new(1);
    // NC4 needs the final train means, so the probe plans it (and the top layer's stream reads
    // the logits) in pass 2 only.
    let results = drive(vec![Ok(probe)], &mut reducer, |_, split, sink| {
        sink(HostBatch::Streams(&Streams { data: if split == Split::Train { &train } else { &test } }))
    })?;
    let res = results.into_iter().next().expect("one network").map_err(|e| locate(e, &train, &test))?;
    Ok((res, train, test))
}

/// Write summary.json, metrics.csv and cdnv_pairs.csv into `out`.
pub fn write_outputs(out: &Path, summary: &Summary) -> Result<()> {
    RunFolder::new(out).write_probe(summary, None)
}

/// Measure, and write the results into `out`; `producer` (the build) goes into summary.json.
pub fn measure(opts: &MeasureOptions, out: &Path, producer: &str) -> Result<ProbeResult> {
    let t0 = std::time::Instant::now();
    let (res, train, test) = run_probe(opts)?;
    let mut s = Summary::of_probe(res.clone(), t0.elapsed().as_secs_f64());
    s.source =
        Some(Source::Embeddings { train: train.source.display().to_string(), test: test.source.display().to_string() });
    s.producer = Some(producer.to_string());
    write_outputs(out, &s)?;
    Ok(res)
}
