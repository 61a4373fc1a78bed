//! Sweeps: families of runs planned from one file (`plan.rs`), run locally in parallel or as a
//! SLURM job array (`exec.rs`), and read back for the bound and the report (`record.rs`).

pub mod exec;
pub mod plan;
pub mod record;

pub use exec::{run_indices, run_local, status_report, submit, write_slurm, Outcome, RunStatus, Workers};
pub use plan::{write_plan, Plan, PlannedRun, Role, SweepDir};
pub use record::bound_rows;
