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
use serde_json::Value;

use super::plan::{Plan, PlannedRun, SweepDir};
use crate::run::{resume, train, RunOptions};

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

fn summary_status(run_dir: &Path) -> Option<(String, Option<String>)> {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some((v["status"].as_str()?.to_string(), v["reason"].as_str().map(str::to_string)))
}

pub fn run_status(dir: &SweepDir, r: &PlannedRun) -> Result<RunStatus> {
    let rd = dir.run_dir(&r.id);
    let st = summary_status(&rd);
    if let Some((s, reason)) = &st {
        if s == "done" {
            return Ok(RunStatus::Done);
        }
        if s == "failed" {
            return Ok(RunStatus::Failed(reason.clone().unwrap_or_default()));
        }
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

/// What `run_index` did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    AlreadyDone,
    Busy,
    Trained,
}

/// Run planned run `index` to completion (or skip it). Errors carry the run id.
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

pub fn run_index(dir: &SweepDir, index: usize, data_dir: Option<&Path>, quiet: bool) -> Result<Outcome> {
    let plan = dir.read_plan()?;
    let r = planned(dir, &plan, index)?;
    std::fs::create_dir_all(dir.0.join("runs"))?;
    let Some(_lock) = try_lock(&dir.lock_path(&r.id))? else {
        if !quiet {
            eprintln!("{}: another process is running it; skipped", r.id);
        }
        return Ok(Outcome::Busy);
    };
    let out = dir.run_dir(&r.id);
    let mut cfg = dir.run_config(&r.id)?;
    let opts = RunOptions { out: out.clone(), data_dir: data_dir.map(Path::to_path_buf), force: true, quiet };
    // A SLURM task gets the CPUs it was allotted when the config leaves threads to us.
    if cfg.train.threads == 0 {
        if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse().ok()) {
            cfg.train.threads = n;
        }
    }
    match summary_status(&out).map(|s| s.0) {
        Some(s) if s == "done" => return Ok(Outcome::AlreadyDone),
        Some(s) if s == "running" && out.join("checkpoint.json").exists() && same_config(&out, &cfg) => {
            resume(&opts).with_context(|| format!("run {} ({})", r.index, r.id))?;
            return Ok(Outcome::Trained);
        }
        _ => {}
    }
    train(&cfg, &opts).with_context(|| format!("run {} ({})", r.index, r.id))?;
    Ok(Outcome::Trained)
}

/// Run the planned runs `indices` as one batched model (engine/batched.rs): they must differ
/// only in seeds and label corruption. Done and busy runs are left out; one run left trains
/// alone. Returns the runs trained.
pub fn run_batched(dir: &SweepDir, indices: &[usize], data_dir: Option<&Path>, quiet: bool) -> Result<usize> {
    let plan = dir.read_plan()?;
    std::fs::create_dir_all(dir.0.join("runs"))?;
    let (mut ids, mut runs, mut locks) = (Vec::new(), Vec::new(), Vec::new());
    for &index in indices {
        let r = planned(dir, &plan, index)?;
        let out = dir.run_dir(&r.id);
        if summary_status(&out).is_some_and(|s| s.0 == "done") {
            continue;
        }
        let Some(lock) = try_lock(&dir.lock_path(&r.id))? else { continue };
        locks.push(lock);
        ids.push((r.index, format!("{} ({})", r.index, r.id)));
        let opts = RunOptions { out, data_dir: data_dir.map(Path::to_path_buf), force: true, quiet };
        runs.push((dir.run_config(&r.id)?, opts));
    }
    match ids.len() {
        0 => return Ok(0),
        1 => {
            drop(locks);
            run_index(dir, ids[0].0, data_dir, quiet)?;
            return Ok(1);
        }
        _ => {}
    }
    let ids: Vec<String> = ids.into_iter().map(|i| i.1).collect();
    let results = crate::run::train_batched(&runs).with_context(|| format!("batched runs {}", ids.join(", ")))?;
    let failed: Vec<String> =
        results.iter().zip(&ids).filter_map(|(r, id)| r.as_ref().err().map(|e| format!("{id}: {e:#}"))).collect();
    if !failed.is_empty() {
        bail!("{} of {} batched runs failed:\n  {}", failed.len(), ids.len(), failed.join("\n  "));
    }
    Ok(ids.len())
}

/// Runs that can share one batched model have equal configs once seeds and corruption are set
/// aside (and an MLP architecture); None for a run that trains alone.
fn batch_key(cfg: &crate::config::Config) -> Option<String> {
    if cfg.model.arch != crate::config::Arch::Mlp {
        return None;
    }
    let mut c = cfg.clone();
    c.train.seed = 0;
    c.corruption = Default::default();
    Some(c.to_toml())
}

/// The queue as groups of at most `batch` runs that can train batched, in plan order.
fn batch_groups<'a>(dir: &SweepDir, queue: Vec<&'a PlannedRun>, batch: usize) -> Result<Vec<Vec<&'a PlannedRun>>> {
    let mut groups: Vec<(Option<String>, Vec<&PlannedRun>)> = Vec::new();
    for r in queue {
        let key = if batch > 1 { batch_key(&dir.run_config(&r.id)?) } else { None };
        match groups.iter_mut().find(|(k, g)| key.is_some() && *k == key && g.len() < batch) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    Ok(groups.into_iter().map(|g| g.1).collect())
}

fn same_config(out: &Path, cfg: &crate::config::Config) -> bool {
    crate::config::Config::from_file(&out.join("config.toml"), &[]).map(|c| &c == cfg).unwrap_or(false)
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

fn spawn_run(dir: &SweepDir, group: &[&PlannedRun], data_dir: Option<&Path>) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the depthprobe executable")?;
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
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
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

/// Run every run that is not done, at most `jobs` processes at once, with one progress view;
/// with `batch` > 1, up to `batch` runs that differ only in seeds and corruption train as one
/// batched model in one process. Returns the number of failed runs.
pub fn run_local(dir: &SweepDir, jobs: usize, batch: usize, data_dir: Option<&Path>, quiet: bool) -> Result<usize> {
    let plan: Plan = dir.read_plan()?;
    let jobs = jobs.max(1);
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
    let progress = Progress::new(total, done_before, quiet);
    progress.line(&format!(
        "{}: {total} runs, {done_before} already done, {} to run, {jobs} at a time (logs in {}/logs)",
        plan.name,
        queue.len(),
        dir.0.display()
    ));
    let mut queue = batch_groups(dir, queue, batch)?;
    queue.reverse();
    let mut running: Vec<(Vec<&PlannedRun>, Child, Instant)> = Vec::new();
    let (mut finished, mut failed) = (done_before, 0usize);
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some(g) = queue.pop() else { break };
            let child = spawn_run(dir, &g, data_dir)?;
            running.push((g, child, Instant::now()));
        }
        progress.update(finished, failed, running.iter().flat_map(|x| x.0.iter().map(|r| r.id.as_str())));
        std::thread::sleep(Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            if let Some(code) = running[i].1.try_wait()? {
                let (g, _, t) = running.swap_remove(i);
                let secs = t.elapsed().as_secs_f64();
                for r in &g {
                    finished += 1;
                    match run_status(dir, r)? {
                        RunStatus::Done => progress.line(&format!("done   {:>4} {} ({secs:.1}s)", r.index, r.id)),
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

struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Progress {
    fn new(total: usize, done: usize, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs · {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b.set_position(done as u64);
            b
        });
        Progress { bar, quiet }
    }
    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }
    fn update<'a>(&self, finished: usize, failed: usize, running: impl Iterator<Item = &'a str>) {
        if let Some(b) = &self.bar {
            b.set_position(finished as u64);
            let names: Vec<&str> = running.collect();
            b.set_message(format!("{failed} failed · running {}", names.join(", ")));
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Write `submit.sbatch` (a job array over the runs not yet done, a log per task) and return
/// its path and the array size; nothing when every run is done.
pub fn write_slurm(
    dir: &SweepDir,
    max_parallel: Option<usize>,
    sbatch_args: &[String],
    data_dir: Option<&Path>,
) -> Result<Option<(PathBuf, usize)>> {
    let plan = dir.read_plan()?;
    let mut todo = Vec::new();
    for r in &plan.runs {
        if run_status(dir, r)? != RunStatus::Done {
            todo.push(r.index.to_string());
        }
    }
    if todo.is_empty() {
        return Ok(None);
    }
    let abs = std::fs::canonicalize(&dir.0).with_context(|| format!("{}: cannot resolve", dir.0.display()))?;
    let exe = std::env::current_exe().context("cannot find the depthprobe executable")?;
    std::fs::create_dir_all(abs.join("logs"))?;
    let threads =
        plan.runs.iter().map(|r| dir.run_config(&r.id).map(|c| c.train.threads)).collect::<Result<Vec<_>>>()?;
    let cpus = threads.into_iter().max().unwrap_or(0).max(1);
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "#SBATCH --job-name=depthprobe-{}", plan.name);
    let limit = max_parallel.map(|m| format!("%{m}")).unwrap_or_default();
    let _ = writeln!(s, "#SBATCH --array={}{limit}", todo.join(","));
    let _ = writeln!(s, "#SBATCH --output={}/logs/slurm-%A_%a.log", abs.display());
    let _ = writeln!(s, "#SBATCH --cpus-per-task={cpus}");
    for a in sbatch_args {
        let _ = writeln!(s, "#SBATCH {a}");
    }
    s.push_str("# Written by `depthprobe sweep slurm`: each array task runs one planned run (idempotent).\nset -euo pipefail\n");
    let mut cmd = format!(
        "exec {} sweep run {} --index \"$SLURM_ARRAY_TASK_ID\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&abs.display().to_string())
    );
    if let Some(d) = data_dir {
        let d = std::fs::canonicalize(d).with_context(|| format!("--data-dir {}: not found", d.display()))?;
        let _ = write!(cmd, " --data-dir {}", shell_quote(&d.display().to_string()));
    }
    s.push_str(&cmd);
    s.push('\n');
    let path = abs.join("submit.sbatch");
    crate::results::write_atomic(&path, s.as_bytes())?;
    Ok(Some((path, todo.len())))
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
