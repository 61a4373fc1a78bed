//! A sweep's runs as processes, without LibTorch (docs/architecture.md, "Two binaries"): the
//! planned runs of a sweep folder (`plan.rs`), their statuses and locks, `sweep local` and
//! `sweep status` (`runner.rs`), and what they share with training: stop signals
//! (`interrupt.rs`), the progress view (`progress.rs`), the machine's description
//! (`machine.rs`), the CPUs a process may use and how its threads wait (`cpus.rs`), and the
//! thread count a training run gives way with when the CPU is shared (`governor.rs`). The `depthprobe` binary runs `sweep local` and `sweep status` from here, so
//! the process that only starts and watches the runs' processes does not pay LibTorch's start-up;
//! the engine (`depthprobe-engine`) trains them.

pub mod cpus;
pub mod governor;
pub mod interrupt;
pub mod machine;
pub mod plan;
pub mod progress;
pub mod runner;

pub use plan::{BoundSpec, Plan, PlannedRun, Role, SweepDir, CHILD_ENV, PLAN_FORMAT};
pub use runner::{
    batch_key, local, run_local, run_status, status, status_report, LocalArgs, RunStatus, RunnerCmd, StatusArgs,
    Workers,
};
