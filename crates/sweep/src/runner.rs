//! A sweep's runs as processes: each run's status (from its folder and its lock), `sweep local`
//! (groups of runs, each in a child process that the engine runs, N at a time, with one progress
//! view) and `sweep status`. Every runner is idempotent: a done run is skipped, an interrupted
//! one resumes from its checkpoint, a failed one reruns. A per-run lock (flock, released by the
//! kernel when the process dies) keeps two processes from ever training the same run at once.
//! What trains a run (`sweep run`, a SLURM task) is `depthprobe`'s `sweep/exec.rs`.

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

use crate::plan::{Plan, PlannedRun, SweepDir};
use crate::progress::Progress;
use crate::{cpus, interrupt};

/// Runs train as one model when their configs agree once seeds and label corruption are set
/// aside (data subsets, architecture, schedule and probe settings all equal): this key.
pub fn batch_key(cfg: &Config) -> String {
    let mut c = cfg.clone();
    c.train.seed = 0;
    c.corruption = Default::default();
    // Each run logs into its own folder; that does not keep runs from training together.
    c.log = Default::default();
    c.to_toml()
}

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
pub struct RunLock(#[allow(dead_code)] File);

pub fn try_lock(path: &Path) -> Result<Option<RunLock>> {
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
pub fn summary_status(run_dir: &Path) -> Option<(Status, Option<String>)> {
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

/// The queue as groups of at most `batch` runs that can train as one model, in plan order.
pub fn batch_groups<'a>(dir: &SweepDir, queue: Vec<&'a PlannedRun>, batch: usize) -> Result<Vec<Vec<&'a PlannedRun>>> {
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
pub fn this_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the depthprobe executable")?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) if !exe.exists() => PathBuf::from(p),
        _ => exe,
    })
}

fn spawn_run(
    dir: &SweepDir,
    group: &[&PlannedRun],
    device: Option<Device>,
    data_dir: Option<&Path>,
    threads: usize,
    tensorboard: Option<&Path>,
) -> Result<Child> {
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
    cmd.env(cpus::THREADS_ENV, threads.to_string());
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if let Some(d) = device {
        cmd.arg("--device").arg(d.to_string());
    }
    if let Some(t) = tensorboard {
        cmd.arg("--tensorboard").arg(t);
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
    /// `check` is the engine's device check (it needs LibTorch, which this crate does not link).
    pub fn devices(list: &[String], check: &dyn Fn(Device) -> Result<()>) -> Result<Workers> {
        if list.is_empty() {
            bail!("--devices: give at least one device (cpu, cuda or cuda:N)");
        }
        let mut out = Vec::new();
        for d in list {
            let dev = Device::parse(d.trim()).map_err(|e| anyhow::anyhow!("--devices: {e}"))?;
            check(dev).with_context(|| format!("--devices: {dev}"))?;
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
    tensorboard: Option<&Path>,
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
    // Runs that leave their thread count to depthprobe share the CPUs equally among the workers.
    let budget = cpus::budget();
    let threads = cpus::share(budget.usable(), workers.len());
    if !queue.is_empty() {
        progress.line(&format!(
            "each run with train.threads = 0 uses {threads} thread(s): {} shared by {} worker(s)",
            budget.describe(),
            workers.len()
        ));
    }
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
            let child = spawn_run(dir, &g, workers.0[w], data_dir, threads, tensorboard)?;
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

/// `sweep local` and `sweep status`: one definition for both binaries (the engine flattens it
/// into its `sweep` commands), so their help is the same from either.
#[derive(clap::Subcommand, Debug)]
pub enum RunnerCmd {
    /// Run every run not yet done, at most N at once, with one progress view.
    Local(LocalArgs),
    /// Count done / failed / running / interrupted / pending runs; list failures.
    Status(StatusArgs),
}

/// `sweep local`'s arguments.
#[derive(clap::Args, Debug)]
pub struct LocalArgs {
    /// Sweep folder (written by `sweep plan`).
    pub dir: PathBuf,
    /// Runs at once. A run whose train.threads is 0 gets an equal share of the CPUs this process
    /// may use (its affinity mask and cgroup CPU quota, not the machine's core count), at least
    /// one thread each.
    #[arg(short = 'j', long = "jobs", default_value_t = 1, conflicts_with = "devices")]
    pub jobs: usize,
    /// One worker per device, e.g. cuda:0,cuda:1,cuda:2 (a device listed twice gets two);
    /// groups of runs go to whichever worker is free. Default: --jobs workers, each run on its
    /// config's train.device.
    #[arg(long, value_delimiter = ',', value_name = "DEV,DEV,...")]
    pub devices: Option<Vec<String>>,
    /// Train up to K runs that differ only in seeds and label corruption as one batched model
    /// per process: on a GPU many times the runs per hour (docs/performance.md).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Data folder (one subfolder per data set); else $DEPTHPROBE_DATA, else data.root.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No live progress view; print the final status only.
    #[arg(long)]
    pub quiet: bool,
    /// Each run also writes TensorBoard event files into LOGDIR/<run id> as it trains
    /// (`tensorboard --logdir LOGDIR` shows the runs side by side).
    #[arg(long, value_name = "LOGDIR")]
    pub tensorboard: Option<PathBuf>,
}

/// `sweep status`'s arguments.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Sweep folder.
    pub dir: PathBuf,
}

/// `sweep local` on `workers` (the caller builds them from `args`: checking `--devices` needs the
/// engine); `build` names the binary in the sweep's command log.
pub fn local(args: &LocalArgs, workers: &Workers, build: &str) -> Result<()> {
    let d = SweepDir(args.dir.clone());
    d.log_command(build);
    let t0 = Instant::now();
    let failed = run_local(&d, workers, args.batch, args.data_dir.as_deref(), args.quiet, args.tensorboard.as_deref())?;
    let (text, _) = status_report(&d)?;
    // The wall time of this command, for the report's provenance.
    d.log_line(&format!(
        "sweep local ended after {:.0} s wall: {}",
        t0.elapsed().as_secs_f64(),
        text.lines().last().unwrap_or("").trim()
    ));
    print!("{text}");
    if let Some(sig) = interrupt::requested() {
        eprintln!("stopped by {}: run the same command again to continue", interrupt::name(sig));
    }
    if failed > 0 {
        bail!("{failed} run(s) failed (the others finished); fix the cause and run again to retry them");
    }
    Ok(())
}

/// `sweep status`.
pub fn status(args: &StatusArgs) -> Result<()> {
    let (text, _) = status_report(&SweepDir(args.dir.clone()))?;
    print!("{text}");
    Ok(())
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
