//! Sweeps: families of runs planned from one file (`plan.rs`), trained by index or as a SLURM
//! job array (`exec.rs`), and read back for the bound and the report (`record.rs`). The planned
//! runs' types, their statuses and `sweep local` are in the crate `depthprobe-sweep` (no
//! LibTorch: the `depthprobe` binary runs them), re-exported here.

pub mod exec;
pub mod plan;
pub mod record;

pub use exec::{
    local, run_indices, run_local, status, status_report, submit, write_slurm, LocalArgs, Outcome, RunStatus,
    RunnerCmd, StatusArgs, Workers,
};
pub use plan::{write_plan, Plan, PlannedRun, Role, SweepDir};
pub use record::bound_rows;
