//! Running a planned sweep: one run by index (what a SLURM array task calls), all runs locally
//! N at a time, status counts, and the SLURM submission script. Every runner is idempotent:
//! a done run is skipped, an interrupted one resumes from its checkpoint, a failed one reruns.
//! A per-run lock (flock, released by the kernel when the process dies) keeps two processes
//! from ever training the same run at once.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use depthprobe_config::{Config, Device};
use depthprobe_runfolder::{RunFolder, Status};

use super::plan::{Plan, PlannedRun, SweepDir};
use crate::interrupt::{self, Interrupted};
use crate::pipeline::{batch_key, train_group, RunOptions, RunSpec};
use crate::progress::Progress;

/// Where a run stands, read from its folder.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    Pending,
    /// Another process holds the run's lock.
    Running,
    /// Started, not finished, and nobody is running it (killed): resumes from its checkpoint.
    Interrupted,
    Done,
    Failed(String),
}

impl RunStatus {
    pub fn label(&self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Done => "done",
            RunStatus::Failed(_) => "failed",
        }
    }
}

/// An exclusive, non-blocking lock on `path`; None when another process holds it.
struct RunLock(#[allow(dead_code)] File);

fn try_lock(path: &Path) -> Result<Option<RunLock>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open lock file", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(Some(RunLock(f)))
    } else {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e).with_context(|| format!("{}: flock", path.display()))
        }
    }
}

/// A run folder's summary status and reason, if it has a readable summary.json.
fn summary_status(run_dir: &Path) -> Option<(Status, Option<String>)> {
    let s = RunFolder::new(run_dir).summary().ok()??;
    Some((s.status?, s.reason))
}

pub fn run_status(dir: &SweepDir, r: &PlannedRun) -> Result<RunStatus> {
    let rd = dir.run_dir(&r.id);
    match summary_status(&rd) {
        Some((Status::Done, _)) => return Ok(RunStatus::Done),
        Some((Status::Failed, reason)) => return Ok(RunStatus::Failed(reason.unwrap_or_default())),
        _ => {}
    }
    if !rd.exists() {
        return Ok(RunStatus::Pending);
    }
    let lp = dir.lock_path(&r.id);
    if lp.exists() && try_lock(&lp)?.is_none() {
        return Ok(RunStatus::Running);
    }
    Ok(if rd.join("config.toml").exists() { RunStatus::Interrupted } else { RunStatus::Pending })
}

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
        let mut cfg = dir.run_config(&r.id)?;
        // A SLURM task gets the CPUs it was allotted when the config leaves threads to us.
        if cfg.train.threads == 0 {
            if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse().ok()) {
                cfg.train.threads = n;
            }
        }
        if let Some(d) = device {
            cfg.train.device = d;
        }
        let resume = summary_status(&out).is_some_and(|s| matches!(s.0, Status::Running | Status::Interrupted))
            && out.join("checkpoint.json").exists()
            && same_config(&out, &cfg);
        let opts = RunOptions { out, data_dir: data_dir.map(Path::to_path_buf), force: true, quiet };
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

/// The queue as groups of at most `batch` runs that can train as one model, in plan order.
fn batch_groups<'a>(dir: &SweepDir, queue: Vec<&'a PlannedRun>, batch: usize) -> Result<Vec<Vec<&'a PlannedRun>>> {
    let mut groups: Vec<(Option<String>, Vec<&PlannedRun>)> = Vec::new();
    for r in queue {
        let key = if batch > 1 { Some(batch_key(&dir.run_config(&r.id)?)) } else { None };
        match groups.iter_mut().find(|(k, g)| key.is_some() && *k == key && g.len() < batch) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    Ok(groups.into_iter().map(|g| g.1).collect())
}

/// Whether the run in `out` was started with `cfg`, the device aside (a checkpoint resumes on any).
fn same_config(out: &Path, cfg: &Config) -> bool {
    Config::from_file(&out.join("config.toml"), &[])
        .map(|mut c| {
            c.train.device = cfg.train.device;
            &c == cfg
        })
        .unwrap_or(false)
}

/// Counts and the failed runs' reasons.
pub fn status_report(dir: &SweepDir) -> Result<(String, Vec<RunStatus>)> {
    let plan = dir.read_plan()?;
    let sts: Vec<RunStatus> = plan.runs.iter().map(|r| run_status(dir, r)).collect::<Result<_>>()?;
    let count = |l: &str| sts.iter().filter(|s| s.label() == l).count();
    let mut s = format!(
        "{}: {} runs · {} done · {} failed · {} running · {} interrupted · {} pending\n",
        plan.name,
        plan.runs.len(),
        count("done"),
        count("failed"),
        count("running"),
        count("interrupted"),
        count("pending")
    );
    for (r, st) in plan.runs.iter().zip(&sts) {
        if let RunStatus::Failed(why) = st {
            let _ = writeln!(s, "  failed {:>4} {}: {why}", r.index, r.id);
        }
    }
    Ok((s, sts))
}

/// This executable's path. Rebuilt while a sweep runs, Linux names the running (old) file
/// "PATH (deleted)"; the runs still to start then use the new build at PATH.
fn this_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the depthprobe executable")?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) if !exe.exists() => PathBuf::from(p),
        _ => exe,
    })
}

fn spawn_run(dir: &SweepDir, group: &[&PlannedRun], device: Option<Device>, data_dir: Option<&Path>) -> Result<Child> {
    let exe = this_exe()?;
    std::fs::create_dir_all(dir.0.join("logs"))?;
    let r = group[0];
    let log_path = dir.log_path(&r.id);
    for other in &group[1..] {
        let note = format!("trained in one batched model with run {}: its log is {}\n", r.id, log_path.display());
        std::fs::write(dir.log_path(&other.id), note)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("{}: cannot open log", log_path.display()))?;
    let mut cmd = Command::new(exe);
    let indices: Vec<String> = group.iter().map(|r| r.index.to_string()).collect();
    cmd.arg("sweep").arg("run").arg(&dir.0).arg("--index").arg(indices.join(","));
    cmd.env(super::plan::CHILD_ENV, "1");
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if let Some(d) = device {
        cmd.arg("--device").arg(d.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: prctl is async-signal-safe. The child dies with `sweep local`, so killing the
    // sweep never leaves orphans training behind (they would also be harmless: runs are locked).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("cannot start run {}", r.id))
}

/// The worker slots of `sweep local`: each runs one process (one batched group) at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Workers(Vec<Option<Device>>);

impl Workers {
    /// `n` workers, each run on its own config's device (`--jobs N`).
    pub fn jobs(n: usize) -> Workers {
        Workers(vec![None; n.max(1)])
    }

    /// One worker per listed device (`--devices cuda:0,cuda:1`; list one twice for two workers
    /// on it). Every device is checked before anything starts.
    pub fn devices(list: &[String]) -> Result<Workers> {
        if list.is_empty() {
            bail!("--devices: give at least one device (cpu, cuda or cuda:N)");
        }
        let mut out = Vec::new();
        for d in list {
            let dev = Device::parse(d.trim()).map_err(|e| anyhow::anyhow!("--devices: {e}"))?;
            crate::engine::check_device(dev).with_context(|| format!("--devices: {dev}"))?;
            out.push(Some(dev));
        }
        Ok(Workers(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first worker not in `busy`: groups go to whichever worker frees up first.
    pub fn free(&self, busy: &[usize]) -> Option<usize> {
        (0..self.0.len()).find(|w| !busy.contains(w))
    }

    fn describe(&self) -> String {
        match self.0.iter().map(|d| d.map(|d| d.to_string())).collect::<Option<Vec<_>>>() {
            Some(devs) => format!("one worker on each of {}", devs.join(", ")),
            None => format!("{} at a time", self.0.len()),
        }
    }

    /// How a finished run names where it ran ("" for plain `--jobs`).
    fn label(&self, w: usize) -> String {
        self.0[w].map(|d| format!(", worker {} on {d}", w + 1)).unwrap_or_default()
    }
}

/// Run every run that is not done, one process per worker at a time, with one progress view;
/// with `batch` > 1, up to `batch` runs that differ only in seeds and corruption train as one
/// batched model in one process. Returns the number of failed runs. On a stop signal no new run
/// starts, the running ones are asked to stop (SIGTERM: each checkpoints its current step) and
/// are waited for; they count as interrupted, not failed.
pub fn run_local(
    dir: &SweepDir,
    workers: &Workers,
    batch: usize,
    data_dir: Option<&Path>,
    quiet: bool,
) -> Result<usize> {
    let plan: Plan = dir.read_plan()?;
    let mut queue: Vec<&PlannedRun> = Vec::new();
    let mut done_before = 0;
    for r in &plan.runs {
        match run_status(dir, r)? {
            RunStatus::Done => done_before += 1,
            RunStatus::Running => bail!(
                "{}: run {} is being run by another process; wait for it or stop that process",
                dir.0.display(),
                r.id
            ),
            _ => queue.push(r),
        }
    }
    let total = plan.runs.len();
    let progress = Progress::new("runs", total, done_before, quiet);
    progress.line(&format!(
        "{}: {total} runs, {done_before} already done, {} to run, {} (logs in {}/logs)",
        plan.name,
        queue.len(),
        workers.describe(),
        dir.0.display()
    ));
    let mut queue = batch_groups(dir, queue, batch)?;
    queue.reverse();
    let mut running: Vec<(Vec<&PlannedRun>, Child, Instant, usize)> = Vec::new();
    let (mut finished, mut failed) = (done_before, 0usize);
    let mut stopping = false;
    while !queue.is_empty() || !running.is_empty() {
        if let (Some(sig), false) = (interrupt::requested(), stopping) {
            stopping = true;
            queue.clear();
            progress.line(&format!(
                "{}: stopping; {} running process(es) checkpoint their current step",
                interrupt::name(sig),
                running.len()
            ));
            // SIGTERM, whatever arrived: a child that also got the terminal's SIGINT must not
            // take a second SIGINT as "stop at once".
            for (_, c, _, _) in &running {
                // SAFETY: signalling our own child by its pid.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            }
        }
        while !stopping && !queue.is_empty() {
            let busy: Vec<usize> = running.iter().map(|x| x.3).collect();
            let Some(w) = workers.free(&busy) else { break };
            let g = queue.pop().expect("queue is not empty");
            let child = spawn_run(dir, &g, workers.0[w], data_dir)?;
            running.push((g, child, Instant::now(), w));
        }
        let names: Vec<&str> = running.iter().flat_map(|x| x.0.iter().map(|r| r.id.as_str())).collect();
        progress.step(finished, &format!("{failed} failed · running {}", names.join(", ")));
        // A finished group is noticed within 20 ms: on a GPU a batched group of 32 runs takes a
        // few seconds, so a longer poll would show in the runs per hour.
        std::thread::sleep(Duration::from_millis(20));
        let mut i = 0;
        while i < running.len() {
            if let Some(code) = running[i].1.try_wait()? {
                let (g, _, t, w) = running.swap_remove(i);
                let on = workers.label(w);
                let secs = t.elapsed().as_secs_f64();
                for r in &g {
                    finished += 1;
                    match run_status(dir, r)? {
                        RunStatus::Done => progress.line(&format!("done   {:>4} {} ({secs:.1}s{on})", r.index, r.id)),
                        _ if stopping && summary_status(&dir.run_dir(&r.id)).is_none_or(|s| s.0 != Status::Failed) => {
                            finished -= 1;
                            progress.line(&format!("stopped {:>3} {}: resumes next time", r.index, r.id));
                        }
                        other => {
                            failed += 1;
                            let why = match other {
                                RunStatus::Failed(w) => w,
                                _ => format!("exited with {code}; see {}", dir.log_path(&g[0].id).display()),
                            };
                            progress.line(&format!("FAILED {:>4} {}: {why}", r.index, r.id));
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
    }
    progress.finish();
    Ok(failed)
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
    let exe = this_exe()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated sweep over three devices: groups finish in a scrambled order, yet no worker
    /// ever holds two groups, every group gets a worker, and all three devices work.
    #[test]
    fn each_group_goes_to_a_free_worker() {
        let w = Workers(vec![Some(Device::Cuda(0)), Some(Device::Cuda(1)), Some(Device::Cuda(2))]);
        let mut busy: Vec<(usize, usize)> = Vec::new(); // (group, worker)
        let mut used = [0usize; 3];
        let mut next = 0;
        let mut rng = 12345u64;
        while next < 20 || !busy.is_empty() {
            while next < 20 {
                let Some(k) = w.free(&busy.iter().map(|b| b.1).collect::<Vec<_>>()) else { break };
                assert!(busy.iter().all(|b| b.1 != k), "worker {k} given two groups");
                busy.push((next, k));
                used[k] += 1;
                next += 1;
            }
            assert!(busy.len() <= 3);
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            busy.swap_remove((rng >> 33) as usize % busy.len());
        }
        assert_eq!(used.iter().sum::<usize>(), 20);
        assert!(used.iter().all(|&u| u > 0), "{used:?}");
        assert_eq!(w.describe(), "one worker on each of cuda:0, cuda:1, cuda:2");
        assert_eq!(Workers::jobs(0).len(), 1);
        assert_eq!(Workers::jobs(4).describe(), "4 at a time");
    }
}
