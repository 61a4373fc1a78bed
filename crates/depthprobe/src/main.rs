//! `depthprobe`: runs `measure`, `sweep local` and `sweep status` itself and hands every other
//! command, unchanged, to `depthprobe-engine` beside it (docs/architecture.md, "Two binaries").
//! This binary does not link LibTorch, so these commands do not pay LibTorch's start-up (about
//! half a second): `measure` needs none, and `sweep local` only starts the runs' processes (the
//! engine, which trains) and watches their folders. It uses crates without LibTorch only, never
//! the `depthprobe` library. It also sets how LibTorch's OpenMP threads wait when the user asks
//! (`DEPTHPROBE_OMP_WAIT=passive`), which must be in the environment before LibTorch loads.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use clap::Parser;
use depthprobe_sweep::{cpus, interrupt, runner};

/// This build, as the engine's `depthprobe::BUILD` says it.
const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DEPTHPROBE_COMMIT"), ")");

/// `depthprobe measure`: the same arguments and help as the engine's.
#[derive(Parser)]
#[command(name = "depthprobe measure", bin_name = "depthprobe measure", version = BUILD)]
struct Measure {
    #[command(flatten)]
    args: depthprobe_measure_cli::MeasureArgs,
}

/// `depthprobe sweep local|status`: the same commands as the engine's.
#[derive(Parser)]
#[command(name = "depthprobe sweep", bin_name = "depthprobe sweep", version = BUILD)]
struct Sweep {
    #[command(subcommand)]
    cmd: runner::RunnerCmd,
}

fn main() -> ExitCode {
    // Before LibTorch starts anywhere (the engine this execs, the runs `sweep local` starts):
    // its OpenMP runtime reads how its threads wait once, when it loads (DEPTHPROBE_OMP_WAIT).
    for (k, v) in cpus::omp_environment(&|k| std::env::var(k).ok().filter(|v| !v.is_empty())) {
        std::env::set_var(k, v);
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let word = |i: usize| args.get(i).and_then(|a| a.to_str());
    if word(1) == Some("measure") {
        let m = Measure::parse_from(args[1..].iter());
        return interrupt::exit_status(depthprobe_measure_cli::run(m.args, BUILD));
    }
    if word(1) == Some("sweep") && matches!(word(2), Some("local" | "status")) {
        match Sweep::parse_from(args[1..].iter()).cmd {
            runner::RunnerCmd::Status(a) => return interrupt::exit_status(runner::status(&a)),
            // --devices are checked through LibTorch before anything starts: the engine does it.
            runner::RunnerCmd::Local(a) if a.devices.is_some() => {}
            runner::RunnerCmd::Local(a) => {
                // As in the engine: a stop signal stops the runs cleanly (they checkpoint).
                interrupt::install();
                return interrupt::exit_status(runner::local(&a, &runner::Workers::jobs(a.jobs), BUILD));
            }
        }
    }
    let engine = match std::env::current_exe() {
        Ok(p) => p.with_file_name("depthprobe-engine"),
        Err(e) => {
            eprintln!("error: cannot locate this executable to find depthprobe-engine beside it: {e}");
            return ExitCode::FAILURE;
        }
    };
    // exec: the engine takes this process over (its pid, signals and exit status).
    let err = Command::new(&engine).arg0(&args[0]).args(&args[1..]).exec();
    eprintln!(
        "error: cannot run {}: {err} (it is built with this binary: cargo build --release -p depthprobe)",
        engine.display()
    );
    ExitCode::FAILURE
}
