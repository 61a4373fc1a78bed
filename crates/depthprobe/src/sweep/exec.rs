//! Training planned runs by index (`sweep run`: what `sweep local`'s child processes and each
//! SLURM array task call) and the SLURM submission script. Statuses, locks and `sweep local`
//! itself are in the crate `depthprobe-sweep` (no LibTorch), re-exported here. Every runner is
//! idempotent: a done run is skipped, an interrupted one resumes from its checkpoint, a failed
//! one reruns.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use depthprobe_config::{Config, Device};
use depthprobe_runfolder::Status;

use depthprobe_sweep::runner::{batch_groups, summary_status, this_exe, try_lock};
pub use depthprobe_sweep::runner::{
    batch_key, local, run_local, run_status, status, status_report, LocalArgs, RunStatus, RunnerCmd, StatusArgs,
    Workers,
};

use super::plan::{Plan, PlannedRun, SweepDir};
use crate::interrupt::{self, Interrupted};
use crate::pipeline::{train_group, RunOptions, RunSpec};

/// What `run_indices` did with one run.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    AlreadyDone,
    /// Another process holds the run's lock.
    Busy,
    Trained,
    Failed(String),
    /// Stopped by a signal (checkpointed, or not started yet): it resumes next time.
    Interrupted,
}

/// Planned run `index`, or an error naming the sweep and the valid range.
fn planned<'a>(dir: &SweepDir, plan: &'a Plan, index: usize) -> Result<&'a PlannedRun> {
    plan.runs.get(index).with_context(|| {
        format!(
            "{}: --index {index} is out of range: the sweep has {} runs (0–{})",
            dir.0.display(),
            plan.runs.len(),
            plan.runs.len().saturating_sub(1)
        )
    })
}

/// Run the planned runs `indices` to completion (what `sweep run` and each SLURM task do):
/// done runs are skipped, runs another process holds are left alone, an interrupted run
/// resumes from its checkpoint, any other starts afresh. Runs that differ only in seeds and
/// label corruption train as one batched model (`pipeline.rs`); others train one group each.
/// `device`, when given, replaces each run's `train.device` (what `sweep local --devices` passes
/// to its workers); a run interrupted on one device resumes on another.
pub fn run_indices(
    dir: &SweepDir,
    indices: &[usize],
    device: Option<Device>,
    data_dir: Option<&Path>,
    quiet: bool,
    tensorboard: Option<&Path>,
) -> Result<Vec<(usize, Outcome)>> {
    let plan = dir.read_plan()?;
    std::fs::create_dir_all(dir.0.join("runs"))?;
    let mut outcomes = Vec::new();
    let mut specs: Vec<(usize, RunSpec)> = Vec::new();
    let mut locks = Vec::new();
    for &index in indices {
        let r = planned(dir, &plan, index)?;
        let out = dir.run_dir(&r.id);
        if summary_status(&out).is_some_and(|s| s.0 == Status::Done) {
            outcomes.push((index, Outcome::AlreadyDone));
            continue;
        }
        let Some(lock) = try_lock(&dir.lock_path(&r.id))? else {
            if !quiet {
                eprintln!("{}: another process is running it; skipped", r.id);
            }
            outcomes.push((index, Outcome::Busy));
            continue;
        };
        locks.push(lock);
        // A config that leaves the threads to depthprobe gets sweep local's share of the CPUs or
        // SLURM's allotment when the engine starts (engine::init_runtime).
        let mut cfg = dir.run_config(&r.id)?;
        if let Some(d) = device {
            cfg.train.device = d;
        }
        let resume = summary_status(&out).is_some_and(|s| matches!(s.0, Status::Running | Status::Interrupted))
            && out.join("checkpoint.json").exists()
            && same_config(&out, &cfg);
        let opts = RunOptions {
            out,
            data_dir: data_dir.map(Path::to_path_buf),
            force: true,
            quiet,
            // --tensorboard, else the config's [log]: either way a folder per run.
            tensorboard: tensorboard
                .map(Path::to_path_buf)
                .or_else(|| cfg.log.tensorboard_dir())
                .map(|t| t.join(&r.id)),
        };
        specs.push((index, RunSpec { cfg, opts, resume }));
    }
    // One group per batch key, in plan order.
    let mut groups: Vec<(String, Vec<(usize, RunSpec)>)> = Vec::new();
    for (i, s) in specs {
        let key = batch_key(&s.cfg);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push((i, s)),
            None => groups.push((key, vec![(i, s)])),
        }
    }
    for (_, g) in groups {
        let (idx, runs): (Vec<usize>, Vec<RunSpec>) = g.into_iter().unzip();
        if interrupt::requested().is_some() {
            outcomes.extend(idx.into_iter().map(|i| (i, Outcome::Interrupted)));
            continue;
        }
        let ids: Vec<String> = idx.iter().map(|&i| format!("run {i} ({})", plan.runs[i].id)).collect();
        let results = train_group(runs).with_context(|| ids.join(", "))?;
        for ((i, id), r) in idx.into_iter().zip(ids).zip(results) {
            let o = match r {
                Ok(_) => Outcome::Trained,
                Err(e) if e.chain().any(|c| c.is::<Interrupted>()) => Outcome::Interrupted,
                Err(e) => Outcome::Failed(format!("{id}: {e:#}")),
            };
            outcomes.push((i, o));
        }
    }
    drop(locks);
    Ok(outcomes)
}

/// Whether the run in `out` was started with `cfg`, the device and thread count aside (a
/// checkpoint resumes on any; builds before the CPU budget wrote SLURM's thread count here).
fn same_config(out: &Path, cfg: &Config) -> bool {
    Config::from_file(&out.join("config.toml"), &[])
        .map(|mut c| {
            c.train.device = cfg.train.device;
            c.train.threads = cfg.train.threads;
            c.log = cfg.log.clone();
            &c == cfg
        })
        .unwrap_or(false)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether the user's sbatch arguments already ask for GPUs (then none is added).
fn asks_for_gpus(args: &[String]) -> bool {
    args.iter().any(|a| a.starts_with("--gres") || a.starts_with("--gpus") || a.starts_with("-G"))
}

/// Write `submit.sbatch`, a job array over the runs not yet done, and return its path and the
/// array size; nothing when every run is done. Each task runs one run (task id = run index) or,
/// with `batch` > 1, one group of up to `batch` runs that train as one model. Tasks ask for a
/// GPU when the runs train on one, are requeueable, and get SIGUSR1 two minutes before their
/// time limit: the runs checkpoint their current step and the task requeues itself.
pub fn write_slurm(
    dir: &SweepDir,
    max_parallel: Option<usize>,
    batch: usize,
    sbatch_args: &[String],
    data_dir: Option<&Path>,
) -> Result<Option<(PathBuf, usize)>> {
    let plan = dir.read_plan()?;
    let mut todo = Vec::new();
    for r in &plan.runs {
        if run_status(dir, r)? != RunStatus::Done {
            todo.push(r);
        }
    }
    if todo.is_empty() {
        return Ok(None);
    }
    let groups = batch_groups(dir, todo, batch.max(1))?;
    let abs = std::fs::canonicalize(&dir.0).with_context(|| format!("{}: cannot resolve", dir.0.display()))?;
    // The launcher beside the engine, when there is one: it sets how LibTorch's threads wait
    // before the engine starts (depthprobe_sweep::cpus::omp_environment).
    let exe = this_exe()?;
    let exe = Some(exe.with_file_name("depthprobe")).filter(|l| l.is_file()).unwrap_or(exe);
    std::fs::create_dir_all(abs.join("logs"))?;
    let configs = plan.runs.iter().map(|r| dir.run_config(&r.id)).collect::<Result<Vec<_>>>()?;
    let cpus = configs.iter().map(|c| c.train.threads).max().unwrap_or(0).max(1);
    let gpu = configs.iter().any(|c| matches!(c.train.device, depthprobe_config::Device::Cuda(_)));
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "#SBATCH --job-name=depthprobe-{}", plan.name);
    let limit = max_parallel.map(|m| format!("%{m}")).unwrap_or_default();
    let tasks: Vec<String> = if batch > 1 {
        (0..groups.len()).map(|g| g.to_string()).collect()
    } else {
        groups.iter().map(|g| g[0].index.to_string()).collect()
    };
    let _ = writeln!(s, "#SBATCH --array={}{limit}", tasks.join(","));
    let _ = writeln!(s, "#SBATCH --output={}/logs/slurm-%A_%a.log", abs.display());
    // A requeued task appends to its log instead of truncating it.
    let _ = writeln!(s, "#SBATCH --open-mode=append");
    let _ = writeln!(s, "#SBATCH --cpus-per-task={cpus}");
    if gpu && !asks_for_gpus(sbatch_args) {
        let _ = writeln!(s, "#SBATCH --gres=gpu:1");
    }
    let _ = writeln!(s, "#SBATCH --requeue");
    let _ = writeln!(s, "#SBATCH --signal=B:USR1@120");
    for a in sbatch_args {
        let _ = writeln!(s, "#SBATCH {a}");
    }
    s.push_str(
        "# Written by `depthprobe sweep slurm`. Each array task trains its runs (idempotent: done runs\n\
         # are skipped, interrupted ones continue from their checkpoint). Near the time limit SLURM sends\n\
         # USR1: the runs checkpoint the step they are at, and the task requeues itself. A preemption's or\n\
         # scancel's SIGTERM also ends in a checkpoint.\nset -uo pipefail\n",
    );
    let _ = writeln!(s, "export {}=1", super::plan::CHILD_ENV);
    if batch > 1 {
        let list: Vec<String> = groups
            .iter()
            .map(|g| format!("\"{}\"", g.iter().map(|r| r.index.to_string()).collect::<Vec<_>>().join(",")))
            .collect();
        let _ = writeln!(s, "# Task t trains runs ${{RUN_GROUPS[t]}} as one model.\nRUN_GROUPS=({})", list.join(" "));
        s.push_str("runs=${RUN_GROUPS[$SLURM_ARRAY_TASK_ID]}\n");
    } else {
        s.push_str("runs=$SLURM_ARRAY_TASK_ID\n");
    }
    let mut cmd = format!(
        "{} sweep run {} --index \"$runs\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&abs.display().to_string())
    );
    if let Some(d) = data_dir {
        let d = std::fs::canonicalize(d).with_context(|| format!("--data-dir {}: not found", d.display()))?;
        let _ = write!(cmd, " --data-dir {}", shell_quote(&d.display().to_string()));
    }
    let _ = writeln!(s, "{cmd} &");
    s.push_str(
        "pid=$!\n\
         trap 'kill -USR1 \"$pid\" 2>/dev/null; wait \"$pid\"; scontrol requeue \"$SLURM_JOB_ID\"; exit 0' USR1\n\
         trap 'kill -TERM \"$pid\" 2>/dev/null; wait \"$pid\"; exit 143' TERM\n\
         wait \"$pid\"\n",
    );
    let path = abs.join("submit.sbatch");
    depthprobe_runfolder::write_atomic(&path, s.as_bytes())?;
    Ok(Some((path, tasks.len())))
}

/// Submit with sbatch; returns the job id.
pub fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .with_context(|| format!("cannot run sbatch on {}", script.display()))?;
    if !out.status.success() {
        bail!("sbatch {} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
    Ok(id)
}

/// Is `sbatch` on PATH?
pub fn have_sbatch() -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file())).unwrap_or(false)
}
