//! Sweeps: families of runs planned from one file, run one at a time, locally in parallel or
//! as a SLURM job array, and the comparative bound computed from them.

pub mod bound;
pub mod exec;
pub mod parquet;
pub mod plan;
pub mod record;
pub mod report;

pub use exec::{run_index, run_local, status_report, submit, write_slurm, Outcome, RunStatus};
pub use plan::{write_plan, Plan, PlannedRun, Role, SweepDir};
