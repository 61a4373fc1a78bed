//! `depthprobe._native`: the measures engine for Python. Thin: input checks and conversion
//! happen here, everything else in `depthprobe-measures`, so numbers equal the CLI's.

mod stats;

use depthprobe_measures::{LayerProbe, ProbeError, ProbeSpec, Split};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    _native,
    DepthprobeError,
    PyValueError,
    "Bad input to a depthprobe measure (same messages as the CLI)."
);

fn err(e: ProbeError) -> PyErr {
    DepthprobeError::new_err(e.to_string())
}

/// Labels as u32: any integer array, negative values refused with their row.
fn labels(y: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    let arr: PyReadonlyArray1<'_, i64> = y
        .extract()
        .map_err(|_| DepthprobeError::new_err("labels must be a 1-D integer array (int64 after conversion)"))?;
    arr.as_slice()?
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u32::try_from(v).map_err(|_| {
                DepthprobeError::new_err(format!("label {v} at row {i} is out of range (labels are class indices ≥ 0)"))
            })
        })
        .collect()
}

#[pyclass(module = "depthprobe._native")]
struct NativeProbe {
    probe: Option<LayerProbe>,
    /// The result once computed: a run folder gets it whole (summary.json leaves out the CDNV
    /// pairs that cdnv_pairs.csv needs).
    result: Option<depthprobe_measures::ProbeResult>,
}

impl NativeProbe {
    fn probe(&mut self) -> PyResult<&mut LayerProbe> {
        self.probe.as_mut().ok_or_else(|| DepthprobeError::new_err("this probe has already produced its result"))
    }
}

#[pymethods]
impl NativeProbe {
    #[new]
    #[pyo3(signature = (num_classes, dims, eps, classes=None, rank_max_dim=depthprobe_measures::DEFAULT_RANK_MAX_DIM,
                        linear_max_dim=depthprobe_measures::DEFAULT_LINEAR_MAX_DIM,
                        linear_ridge=depthprobe_measures::DEFAULT_LINEAR_RIDGE, cka=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        num_classes: usize,
        dims: Vec<usize>,
        eps: Vec<f64>,
        classes: Option<Vec<usize>>,
        rank_max_dim: usize,
        linear_max_dim: usize,
        linear_ridge: f64,
        cka: bool,
    ) -> PyResult<Self> {
        if linear_ridge.is_nan() || linear_ridge <= 0.0 {
            return Err(DepthprobeError::new_err(format!("linear_ridge = {linear_ridge}: must be > 0")));
        }
        let mut spec = ProbeSpec::new(num_classes, dims);
        spec.eps = eps;
        spec.classes = classes;
        spec.rank_max_dim = rank_max_dim;
        spec.linear_max_dim = linear_max_dim;
        spec.linear_ridge = linear_ridge;
        spec.cka = cka;
        Ok(NativeProbe { probe: Some(LayerProbe::new(spec).map_err(err)?), result: None })
    }

    /// Feed one batch of one layer. `x` is a C-contiguous 2-D float32 array (the Python layer
    /// converts and flattens), `y` int64 labels. The GIL is released while accumulating.
    fn update(
        &mut self,
        py: Python<'_>,
        train: bool,
        layer: usize,
        x: PyReadonlyArray2<'_, f32>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let y = labels(y)?;
        if x.shape()[0] != y.len() {
            return Err(DepthprobeError::new_err(format!("x has {} rows but y has {} labels", x.shape()[0], y.len())));
        }
        let xs = x.as_slice().map_err(|_| DepthprobeError::new_err("x must be C-contiguous"))?;
        let split = if train { Split::Train } else { Split::Test };
        let probe = self.probe()?;
        py.detach(|| probe.update(split, layer, xs, &y)).map_err(err)
    }

    /// Feed one batch of every layer at once (`xs[i]` is layer i+1, each C-contiguous 2-D
    /// float32): what CKA needs, since it pairs the rows of every layer.
    fn update_all(
        &mut self,
        py: Python<'_>,
        train: bool,
        xs: Vec<PyReadonlyArray2<'_, f32>>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let y = labels(y)?;
        let mut slices = Vec::with_capacity(xs.len());
        for (i, x) in xs.iter().enumerate() {
            if x.shape()[0] != y.len() {
                return Err(DepthprobeError::new_err(format!(
                    "layer {}: x has {} rows but y has {} labels",
                    i + 1,
                    x.shape()[0],
                    y.len()
                )));
            }
            slices.push(x.as_slice().map_err(|_| DepthprobeError::new_err("x must be C-contiguous"))?);
        }
        let split = if train { Split::Train } else { Split::Test };
        let probe = self.probe()?;
        py.detach(|| probe.update_all(split, &slices, &y)).map_err(err)
    }

    fn update_agreement(
        &mut self,
        py: Python<'_>,
        train: bool,
        x_top: PyReadonlyArray2<'_, f32>,
        logits: PyReadonlyArray2<'_, f32>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let y = labels(y)?;
        let xs = x_top.as_slice().map_err(|_| DepthprobeError::new_err("x must be C-contiguous"))?;
        let lg = logits.as_slice().map_err(|_| DepthprobeError::new_err("logits must be C-contiguous"))?;
        let split = if train { Split::Train } else { Split::Test };
        let probe = self.probe()?;
        py.detach(|| probe.update_agreement(split, xs, lg, &y)).map_err(err)
    }

    fn set_classifier(&mut self, weight: PyReadonlyArray2<'_, f32>) -> PyResult<()> {
        let w = weight.as_slice().map_err(|_| DepthprobeError::new_err("weight must be C-contiguous"))?;
        self.probe()?.set_classifier(w).map_err(err)
    }

    /// What the current pass accumulates, as a dict (`stats.rs`), for a reduction done in Python.
    fn plan<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let plans = self.probe()?.plan();
        stats::plan_to_py(py, &plans)
    }

    /// The statistics fed through `update` so far in this pass, taken out as a dict of arrays.
    fn take_stats<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let st = self.probe()?.take_stats().map_err(err)?;
        stats::stats_to_py(py, &st)
    }

    /// Add statistics of this pass (from `take_stats` or a reduction that followed `plan`).
    fn absorb(&mut self, stats: &Bound<'_, PyAny>) -> PyResult<()> {
        let probe = self.probe()?;
        let st = stats::stats_from_py(stats, &probe.plan())?;
        probe.absorb(st).map_err(err)
    }

    /// Merge statistics dicts of this pass (data-parallel shards) into one.
    fn merge_stats<'py>(
        &mut self,
        py: Python<'py>,
        parts: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let plans = self.probe()?.plan();
        let mut it = parts.iter();
        let first = it.next().ok_or_else(|| DepthprobeError::new_err("merge_stats: nothing to merge"))?;
        let mut acc = stats::stats_from_py(first, &plans)?;
        for p in it {
            let next = stats::stats_from_py(p, &plans)?;
            for (a, b) in acc.iter_mut().zip(&next) {
                a.merge(b).map_err(err)?;
            }
        }
        stats::stats_to_py(py, &acc)
    }

    fn next_pass(&mut self) -> PyResult<()> {
        self.probe()?.next_pass().map_err(err)
    }

    /// The result as JSON text with the keys of the CLI's summary.json.
    fn finish_json(&mut self) -> PyResult<String> {
        let probe =
            self.probe.take().ok_or_else(|| DepthprobeError::new_err("this probe has already produced its result"))?;
        let res = probe.finish().map_err(err)?;
        let text = serde_json::to_string(&res).map_err(|e| DepthprobeError::new_err(e.to_string()))?;
        self.result = Some(res);
        Ok(text)
    }

    /// Add this probe's result at `epoch` to the run folder `run_dir` (`append_probe`), with the
    /// network's own (train acc, test acc, train loss, test loss) when given (NaN: not known).
    #[pyo3(signature = (run_dir, epoch, wall_s, done, network=None))]
    fn append_to_run(
        &self,
        run_dir: std::path::PathBuf,
        epoch: usize,
        wall_s: f64,
        done: bool,
        network: Option<(f64, f64, f64, f64)>,
    ) -> PyResult<()> {
        let res = self.result.clone().ok_or_else(|| DepthprobeError::new_err("the probe has no result yet"))?;
        append_probe(run_dir, epoch, res, wall_s, done, network)
    }
}

/// A run, probe or measure folder's summary.json, read through the run folder's types (the
/// same code the CLI writes it with) and returned as JSON text; None when there is none.
#[pyfunction]
fn read_summary(path: std::path::PathBuf) -> PyResult<Option<String>> {
    let s =
        depthprobe_runfolder::RunFolder::new(path).summary().map_err(|e| DepthprobeError::new_err(format!("{e:#}")))?;
    s.map(|s| depthprobe_runfolder::json_text(&s).map_err(|e| DepthprobeError::new_err(format!("{e:#}")))).transpose()
}

/// A metrics.csv read through the run folder's types: rows of (epoch or None, layer or None,
/// split, metric, value); undefined values are NaN.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn read_metrics(path: std::path::PathBuf) -> PyResult<Vec<(Option<usize>, Option<usize>, String, String, f64)>> {
    let blocks = depthprobe_runfolder::read_metrics(&path).map_err(|e| DepthprobeError::new_err(format!("{e:#}")))?;
    Ok(blocks
        .into_iter()
        .flat_map(|b| {
            b.rows.into_iter().map(move |r| (b.epoch, r.layer, r.split.name().to_string(), r.metric, r.value))
        })
        .collect())
}

/// Add a probe at `epoch` to the run folder `run_dir` (created if needed): metrics.csv gets the
/// probe's block (replacing a block of the same epoch or later: a rerun after a crash),
/// cdnv_pairs.csv its class pairs, and summary.json the probe as the latest, with status running
/// or done. Written as one unit, as the CLI writes a run.
fn append_probe(
    run_dir: std::path::PathBuf,
    epoch: usize,
    result: depthprobe_measures::ProbeResult,
    wall_s: f64,
    done: bool,
    network: Option<(f64, f64, f64, f64)>,
) -> PyResult<()> {
    use depthprobe_measures::Split;
    use depthprobe_runfolder::{metric_rows, MetricBlock, MetricRow, NetworkMetrics, RunFolder, Status, Summary};
    let fail = |e: anyhow::Error| DepthprobeError::new_err(format!("{e:#}"));
    let folder = RunFolder::new(run_dir);
    std::fs::create_dir_all(folder.path())
        .map_err(|e| DepthprobeError::new_err(format!("{}: cannot create: {e}", folder.path().display())))?;
    let mut blocks = folder.metrics().map_err(fail)?;
    blocks.retain(|b| b.epoch.is_some_and(|e| e < epoch));
    let mut rows = metric_rows(&result);
    if let Some((train_acc, test_acc, train_loss, test_loss)) = network {
        // As a training run writes them (pipeline.rs); values not given are left out.
        for (split, name, v) in [
            (Split::Train, "loss", train_loss),
            (Split::Train, "acc", train_acc),
            (Split::Test, "loss", test_loss),
            (Split::Test, "acc", test_acc),
        ] {
            if !v.is_nan() {
                rows.push(MetricRow::network(split, name, v));
            }
        }
    }
    blocks.push(MetricBlock { epoch: Some(epoch), rows });
    let previous = folder.summary().map_err(fail)?.map_or(0.0, |s| s.wall_s);
    let mut s = Summary::of_probe(result, previous + wall_s);
    s.probe_epoch = Some(epoch);
    s.network = network.map(|(train_acc, test_acc, train_loss, test_loss)| NetworkMetrics {
        train_acc,
        test_acc,
        train_loss,
        test_loss,
    });
    s.epochs = Some(epoch);
    s.status = Some(if done { Status::Done } else { Status::Running });
    s.producer = Some(format!("depthprobe (Python) {}", env!("CARGO_PKG_VERSION")));
    folder.write_results(&s, &blocks).map_err(fail)
}

/// A weight matrix's spectrum (depthprobe_measures::weight_spectrum) as JSON text; with the
/// class means of the layer's input (C × in, float64), its alignment with them.
#[pyfunction]
#[pyo3(signature = (w, class_means=None))]
fn weight_spectrum(w: PyReadonlyArray2<'_, f32>, class_means: Option<PyReadonlyArray2<'_, f64>>) -> PyResult<String> {
    let (rows, cols) = (w.shape()[0], w.shape()[1]);
    let w = w.as_array();
    let flat: Vec<f32> = w.iter().copied().collect();
    let means = class_means.map(|m| {
        let c = m.shape()[0];
        (m.shape()[1], c, m.as_array().iter().copied().collect::<Vec<f64>>())
    });
    if let Some((d, _, _)) = &means {
        if *d != cols {
            return Err(DepthprobeError::new_err(format!(
                "class_means has {d} columns, the weight {cols}: give the class means of the layer's input"
            )));
        }
    }
    let s = depthprobe_measures::weight_spectrum(&flat, rows, cols, means.as_ref().map(|(_, c, v)| (v.as_slice(), *c)))
        .ok_or_else(|| DepthprobeError::new_err("the weight has non-finite values: no spectrum"))?;
    serde_json::to_string(&s).map_err(|e| DepthprobeError::new_err(e.to_string()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeProbe>()?;
    m.add("DepthprobeError", m.py().get_type::<DepthprobeError>())?;
    m.add("DEFAULT_EPS", depthprobe_measures::DEFAULT_EPS.to_vec())?;
    m.add("DEFAULT_RANK_MAX_DIM", depthprobe_measures::DEFAULT_RANK_MAX_DIM)?;
    m.add("DEFAULT_LINEAR_MAX_DIM", depthprobe_measures::DEFAULT_LINEAR_MAX_DIM)?;
    m.add("DEFAULT_LINEAR_RIDGE", depthprobe_measures::DEFAULT_LINEAR_RIDGE)?;
    m.add_function(wrap_pyfunction!(read_summary, m)?)?;
    m.add_function(wrap_pyfunction!(read_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(weight_spectrum, m)?)?;
    Ok(())
}
