//! Sweeps: families of runs planned from one file, run one at a time, locally in parallel or
//! as a SLURM job array, and the comparative bound computed from them.

pub mod bound;
pub mod exec;
pub mod parquet;
pub mod plan;
pub mod record;
pub mod report;

/// Mean of the values; NaN for none.
pub(crate) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// (smallest, largest) of the values; (+∞, −∞) for none.
pub(crate) fn min_max(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    v.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

/// The distinct values, in the order first seen (groups of a sweep, in plan order).
pub(crate) fn distinct<T: PartialEq>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

pub use exec::{run_batched, run_index, run_local, status_report, submit, write_slurm, Outcome, RunStatus};
pub use plan::{write_plan, Plan, PlannedRun, Role, SweepDir};
