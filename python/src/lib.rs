//! `depthprobe._native`: the measures engine for Python. Thin: input checks and conversion
//! happen here, everything else in `depthprobe-measures`, so numbers equal the CLI's.

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
}

impl NativeProbe {
    fn probe(&mut self) -> PyResult<&mut LayerProbe> {
        self.probe.as_mut().ok_or_else(|| DepthprobeError::new_err("this probe has already produced its result"))
    }
}

#[pymethods]
impl NativeProbe {
    #[new]
    #[pyo3(signature = (num_classes, dims, eps, classes=None, rank_max_dim=depthprobe_measures::DEFAULT_RANK_MAX_DIM))]
    fn new(
        num_classes: usize,
        dims: Vec<usize>,
        eps: Vec<f64>,
        classes: Option<Vec<usize>>,
        rank_max_dim: usize,
    ) -> PyResult<Self> {
        let mut spec = ProbeSpec::new(num_classes, dims);
        spec.eps = eps;
        spec.classes = classes;
        spec.rank_max_dim = rank_max_dim;
        Ok(NativeProbe { probe: Some(LayerProbe::new(spec).map_err(err)?) })
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

    fn next_pass(&mut self) -> PyResult<()> {
        self.probe()?.next_pass().map_err(err)
    }

    /// The result as JSON text with the keys of the CLI's summary.json.
    fn finish_json(&mut self) -> PyResult<String> {
        let probe =
            self.probe.take().ok_or_else(|| DepthprobeError::new_err("this probe has already produced its result"))?;
        let res = probe.finish().map_err(err)?;
        serde_json::to_string(&res).map_err(|e| DepthprobeError::new_err(e.to_string()))
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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeProbe>()?;
    m.add("DepthprobeError", m.py().get_type::<DepthprobeError>())?;
    m.add("DEFAULT_EPS", depthprobe_measures::DEFAULT_EPS.to_vec())?;
    m.add("DEFAULT_RANK_MAX_DIM", depthprobe_measures::DEFAULT_RANK_MAX_DIM)?;
    m.add_function(wrap_pyfunction!(read_summary, m)?)?;
    m.add_function(wrap_pyfunction!(read_metrics, m)?)?;
    Ok(())
}
