//! `depthprobe`: runs `measure` itself and hands every other command, unchanged, to
//! `depthprobe-engine` beside it (docs/architecture.md, "Two binaries"). This binary does not link
//! LibTorch, so `measure` does not pay LibTorch's start-up (about half a second); the engine,
//! which trains, does.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use clap::Parser;

/// This build, as the engine's `depthprobe::BUILD` says it.
const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DEPTHPROBE_COMMIT"), ")");

/// `depthprobe measure`: the same arguments and help as the engine's.
#[derive(Parser)]
#[command(name = "depthprobe measure", version = BUILD)]
struct Measure {
    #[command(flatten)]
    args: depthprobe_measure_cli::MeasureArgs,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "measure") {
        let m = Measure::parse_from(args[1..].iter());
        return match depthprobe_measure_cli::run(m.args, BUILD) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
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
