//! Sweeps: families of runs planned from one file (`plan.rs`), run locally in parallel or as a
//! SLURM job array (`exec.rs`), and read back for the bound and the report (`record.rs`).

pub mod exec;
pub mod plan;
pub mod record;

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

pub use exec::{run_indices, run_local, status_report, submit, write_slurm, Outcome, RunStatus};
pub use plan::{write_plan, Plan, PlannedRun, Role, SweepDir};
