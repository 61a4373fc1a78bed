//! Plans and statistics as Python dicts of NumPy arrays, so a reduction can run outside Rust (on
//! a PyTorch model's device, `depthprobe.torch`) and statistics can be pickled, sent between
//! data-parallel workers and merged. Only the conversion is here; the statistics and their
//! merge are `depthprobe-measures`'.

use depthprobe_measures::{
    Agreement, CkaHsic, ClassMoments, Gram, LayerStats, NccDecisions, SplitPlan, SplitStats, WithinClassProjection,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::DepthprobeError;

fn bad(msg: String) -> PyErr {
    DepthprobeError::new_err(msg)
}

/// A float64 array of `shape` from row-major values.
fn array<'py>(py: Python<'py>, v: Vec<f64>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, v).reshape(shape.to_vec())?.into_any())
}

fn mat_rows(m: &faer::Mat<f64>) -> Vec<f64> {
    let (r, c) = (m.nrows(), m.ncols());
    (0..r).flat_map(|i| (0..c).map(move |j| m[(i, j)])).collect()
}

pub fn plan_to_py<'py>(py: Python<'py>, plans: &[SplitPlan; 2]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let pass = match plans[0].pass {
        depthprobe_measures::Pass::Moments => 1,
        depthprobe_measures::Pass::Decisions => 2,
    };
    out.set_item("pass", pass)?;
    for plan in plans {
        let d = PyDict::new(py);
        d.set_item("num_classes", plan.num_classes)?;
        let map: Vec<i64> = plan.class_map.iter().map(|c| c.map_or(-1, |c| c as i64)).collect();
        d.set_item("class_map", map)?;
        d.set_item("classes", plan.classes.to_vec())?;
        d.set_item("agreement", plan.agreement)?;
        d.set_item("cka", plan.cka)?;
        d.set_item("cka_batch_rows", depthprobe_measures::CKA_BATCH_ROWS)?;
        d.set_item("cka_min_rows", depthprobe_measures::CKA_MIN_ROWS)?;
        let layers = PyList::empty(py);
        for lp in &plan.layers {
            let l = PyDict::new(py);
            l.set_item("dim", lp.dim)?;
            l.set_item("moments", lp.moments)?;
            l.set_item("gram", lp.gram)?;
            l.set_item("within", lp.within)?;
            match &lp.decisions {
                None => l.set_item("decisions", py.None())?,
                Some(o) => {
                    let ops = PyDict::new(py);
                    ops.set_item("rank", o.rank)?;
                    ops.set_item("joint", array(py, o.joint.clone(), &[o.dim, o.width()])?)?;
                    match &o.linear_bias {
                        None => ops.set_item("linear_bias", py.None())?,
                        Some(b) => ops.set_item("linear_bias", array(py, b.clone(), &[o.classes])?)?,
                    }
                    ops.set_item("mean_proj", array(py, o.mean_proj.clone(), &[o.classes, o.rank])?)?;
                    ops.set_item("mean_sq_norms", array(py, o.mean_sq_norms().to_vec(), &[o.classes])?)?;
                    l.set_item("decisions", ops)?;
                }
            }
            layers.append(l)?;
        }
        d.set_item("layers", layers)?;
        out.set_item(plan.split.name(), d)?;
    }
    Ok(out)
}

pub fn stats_to_py<'py>(py: Python<'py>, stats: &[SplitStats; 2]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (name, st) in ["train", "test"].iter().zip(stats) {
        let d = PyDict::new(py);
        let layers = PyList::empty(py);
        for ls in &st.layers {
            let l = PyDict::new(py);
            l.set_item("rows", ls.rows)?;
            match &ls.moments {
                None => l.set_item("moments", py.None())?,
                Some(m) => {
                    let md = PyDict::new(py);
                    let c = m.counts.len();
                    md.set_item("counts", array(py, m.counts.iter().map(|&v| v as f64).collect(), &[c])?)?;
                    md.set_item("means", array(py, m.means.clone(), &[c, m.dim])?)?;
                    md.set_item("m2", array(py, m.m2.clone(), &[c])?)?;
                    l.set_item("moments", md)?;
                }
            }
            match &ls.gram {
                None => l.set_item("gram", py.None())?,
                Some(g) => l.set_item("gram", array(py, mat_rows(&g.sum), &[g.dim, g.dim])?)?,
            }
            match &ls.decisions {
                None => l.set_item("decisions", py.None())?,
                Some(n) => l.set_item("decisions", (n.correct, n.counted, n.linear_correct))?,
            }
            match &ls.within {
                None => l.set_item("within", py.None())?,
                Some(w) => {
                    let wd = PyDict::new(py);
                    wd.set_item("sum", array(py, mat_rows(&w.sum), &[w.rank, w.rank])?)?;
                    wd.set_item("count", w.count)?;
                    l.set_item("within", wd)?;
                }
            }
            layers.append(l)?;
        }
        d.set_item("layers", layers)?;
        match &st.agreement {
            None => d.set_item("agreement", py.None())?,
            Some(a) => d.set_item("agreement", (a.agree, a.total))?,
        }
        match &st.cka {
            None => d.set_item("cka", py.None())?,
            Some(c) => {
                let cd = PyDict::new(py);
                cd.set_item("hsic", array(py, c.hsic.clone(), &[c.layers, c.layers])?)?;
                cd.set_item("batches", c.batches)?;
                cd.set_item("rows", c.rows)?;
                d.set_item("cka", cd)?;
            }
        }
        out.set_item(*name, d)?;
    }
    Ok(out)
}

/// A float array (any float dtype converts) as row-major f64 values, with its shape checked.
fn values(obj: &Bound<'_, PyAny>, what: &str, shape: &[usize]) -> PyResult<Vec<f64>> {
    let np = obj.py().import("numpy")?;
    let a = np.call_method1("ascontiguousarray", (obj, "float64"))?;
    let arr: PyReadonlyArrayDyn<'_, f64> = a.extract().map_err(|_| bad(format!("{what}: not a float array")))?;
    if arr.shape() != shape {
        return Err(bad(format!("{what}: shape {:?}, expected {shape:?}", arr.shape())));
    }
    Ok(arr.as_slice()?.to_vec())
}

fn item<'py>(d: &Bound<'py, PyDict>, key: &str, what: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?.ok_or_else(|| bad(format!("{what}: no '{key}'")))
}

fn opt<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(d.get_item(key)?.filter(|v| !v.is_none()))
}

/// Statistics from their dict form, shaped by the probe's current plan (which fixes every
/// dimension, so a malformed dict is refused naming the field).
pub fn stats_from_py(obj: &Bound<'_, PyAny>, plans: &[SplitPlan; 2]) -> PyResult<[SplitStats; 2]> {
    let top = obj.cast::<PyDict>().map_err(|_| bad("statistics must be a dict".into()))?;
    let one = |plan: &SplitPlan| -> PyResult<SplitStats> {
        let name = plan.split.name();
        let d = item(top, name, "statistics")?;
        let d = d.cast::<PyDict>().map_err(|_| bad(format!("statistics['{name}'] must be a dict")))?;
        let layers_obj = item(d, "layers", name)?;
        let layers_list = layers_obj.cast::<PyList>().map_err(|_| bad(format!("{name}: 'layers' must be a list")))?;
        if layers_list.len() != plan.layers.len() {
            return Err(bad(format!("{name}: {} layers, the probe has {}", layers_list.len(), plan.layers.len())));
        }
        let c = plan.classes.len();
        let mut layers = Vec::new();
        for (i, (lo, lp)) in layers_list.iter().zip(&plan.layers).enumerate() {
            let what = format!("{name} layer {}", i + 1);
            let l = lo.cast::<PyDict>().map_err(|_| bad(format!("{what}: must be a dict")))?;
            let d_ = lp.dim;
            let moments = match opt(l, "moments")? {
                None => None,
                Some(m) => {
                    let m = m.cast::<PyDict>().map_err(|_| bad(format!("{what}: 'moments' must be a dict")))?;
                    let counts = values(&item(m, "counts", &what)?, &format!("{what} counts"), &[c])?;
                    if counts.iter().any(|&v| v < 0.0 || v.fract() != 0.0) {
                        return Err(bad(format!("{what}: class counts must be whole numbers ≥ 0")));
                    }
                    Some(ClassMoments::from_parts(
                        d_,
                        counts.iter().map(|&v| v as u64).collect(),
                        values(&item(m, "means", &what)?, &format!("{what} means"), &[c, d_])?,
                        values(&item(m, "m2", &what)?, &format!("{what} m2"), &[c])?,
                    ))
                }
            };
            let gram = match opt(l, "gram")? {
                None => None,
                Some(g) => Some(Gram::from_row_major(d_, &values(&g, &format!("{what} gram"), &[d_, d_])?)),
            };
            let decisions = match opt(l, "decisions")? {
                None => None,
                Some(t) => {
                    let (correct, counted, linear_correct): (u64, u64, u64) = t
                        .extract()
                        .map_err(|_| bad(format!("{what}: 'decisions' must be (correct, counted, linear_correct)")))?;
                    Some(NccDecisions { correct, counted, linear_correct })
                }
            };
            let within = match opt(l, "within")? {
                None => None,
                Some(w) => {
                    let w = w.cast::<PyDict>().map_err(|_| bad(format!("{what}: 'within' must be a dict")))?;
                    let r = lp.decisions.as_ref().map_or(0, |o| o.rank);
                    let count: u64 = item(w, "count", &what)?.extract()?;
                    Some(WithinClassProjection::from_row_major(
                        r,
                        &values(&item(w, "sum", &what)?, &format!("{what} within"), &[r, r])?,
                        count,
                    ))
                }
            };
            let rows: u64 = item(l, "rows", &what)?.extract()?;
            layers.push(LayerStats { rows, moments, gram, decisions, within });
        }
        let agreement = match opt(d, "agreement")? {
            None => None,
            Some(t) => {
                let (agree, total): (u64, u64) = t.extract()?;
                Some(Agreement { agree, total })
            }
        };
        let cka = match opt(d, "cka")? {
            None => None,
            Some(cobj) => {
                let cd = cobj.cast::<PyDict>().map_err(|_| bad(format!("{name}: 'cka' must be a dict")))?;
                let l = plan.layers.len();
                let hsic = values(&item(cd, "hsic", name)?, &format!("{name} cka hsic"), &[l, l])?;
                let batches: u64 = item(cd, "batches", name)?.extract()?;
                let rows: u64 = item(cd, "rows", name)?.extract()?;
                CkaHsic::from_parts(l, batches, rows, hsic)
            }
        };
        Ok(SplitStats { layers, agreement, cka })
    };
    Ok([one(&plans[0])?, one(&plans[1])?])
}
