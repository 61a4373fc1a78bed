//! Training runs from start to finish, for a group of K ≥ 1 runs trained as one model (a single
//! run is K = 1): the data, the trainer, a probe every `probe.every` epochs, checkpoints, the run
//! folders and the figures. Results are rewritten atomically after every probe, so a killed run
//! leaves its last complete state behind, and a run resumes from its last checkpoint.
//!
//! Checkpoints of a group are written in three steps: every run's state file, then every run's
//! checkpoint.json, then the older state files are removed. A kill at any moment leaves each run
//! a checkpoint.json that names a complete file, and every run the previous state too until all
//! have the new one, so the group resumes together from the epoch they all have.
//!
//! A stop signal (`interrupt.rs` of the crate `depthprobe-sweep`) ends training after the
//! current step: every run checkpoints that step, is marked "interrupted" and returns
//! [`Interrupted`]; resuming continues at the next step exactly as if nothing had happened.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use depthprobe_config::{BoundSplit, Config, DatasetName, Numerics};
use depthprobe_measures::{ProbeResult, Split};
use depthprobe_runfolder::{
    metric_rows, BatchInfo, CorruptionInfo, CpuUse, MetricBlock, MetricRow, NetworkMetrics, Position, RunFolder,
    Source, Status, Summary,
};
use rayon::prelude::*;

use crate::data::{self, Dataset, Prepared};
use crate::engine::trainer::{EpochCursor, EpochEnd, EpochStats, Group, HostState, ProbeOutcome, Trainer};
use crate::engine::{check_device, init_runtime};
use crate::figures;
use crate::interrupt::{self, Interrupted};
use crate::phases::Phases;
use crate::progress::Progress;
use crate::schedule::lr_at;
use crate::tensorboard;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub data_dir: Option<PathBuf>,
    /// Overwrite an output folder that already holds a run.
    pub force: bool,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Write TensorBoard event files into this folder as the run goes (tensorboard.rs).
    pub tensorboard: Option<PathBuf>,
}

/// What a finished run returns: its summary.json and its last probe's results.
pub struct RunResult {
    pub summary: Summary,
    pub result: ProbeResult,
}

/// One run of a group: its config, its folder, and whether it continues from its checkpoint
/// (or starts afresh).
pub struct RunSpec {
    pub cfg: Config,
    pub opts: RunOptions,
    pub resume: bool,
}

/// Which runs can train as one model (defined with the sweep runner, which groups them).
pub use depthprobe_sweep::batch_key;

/// Train as configured and probe every `probe.every` epochs.
pub fn train(cfg: &Config, opts: &RunOptions) -> Result<RunResult> {
    let spec = RunSpec { cfg: cfg.clone(), opts: opts.clone(), resume: false };
    train_group(vec![spec])?.pop().expect("one run")
}

/// Continue the interrupted run in `opts.out` from its last checkpoint. The final metrics.csv
/// equals that of an uninterrupted run with the same config on CPU.
pub fn resume(opts: &RunOptions) -> Result<RunResult> {
    let folder = RunFolder::new(&opts.out);
    let cfg = folder.config()?;
    if folder.summary()?.is_some_and(|s| s.is_done()) {
        bail!("{}: the run is already done; nothing to resume", opts.out.display());
    }
    let spec = RunSpec { cfg, opts: opts.clone(), resume: true };
    train_group(vec![spec])?.pop().expect("one run")
}

/// Where a run starts: its position, the state to load, and the metrics it already has.
struct Start {
    at: Position,
    state: Option<PathBuf>,
    blocks: Vec<MetricBlock>,
}

/// Train `runs` (which must share a `batch_key`) as one model, each into its own folder; runs
/// resuming from different epochs train in separate groups. A run that fails (diverges, a bad
/// probe) fails alone; the others go on. `Err` only when nothing could start (bad data, no GPU).
pub fn train_group(runs: Vec<RunSpec>) -> Result<Vec<Result<RunResult>>> {
    let t0 = Instant::now();
    let phases = Phases::from_env();
    let Some(first) = runs.first() else { return Ok(Vec::new()) };
    if let Some(r) = runs.iter().find(|r| batch_key(&r.cfg) != batch_key(&first.cfg)) {
        bail!(
            "{} and {} cannot train as one model: their configs differ in more than seeds and label corruption",
            first.opts.out.display(),
            r.opts.out.display()
        );
    }
    check_device(first.cfg.train.device)?;
    let data = load_group_data(&runs)?;
    phases.lap("load data");
    let mut starts = Vec::new();
    for (r, p) in runs.iter().zip(&data) {
        starts.push(start_of(r, p)?);
    }
    align(&runs, &mut starts);
    phases.lap("start folders");
    let mut results: Vec<Option<Result<RunResult>>> = runs.iter().map(|_| None).collect();
    let mut positions: Vec<Position> = starts.iter().map(|s| s.at).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut starts: Vec<Option<Start>> = starts.into_iter().map(Some).collect();
    for at in positions {
        if let Some(sig) = interrupt::requested() {
            // Stopped before this part of the group began: its runs stay as they are.
            for (i, s) in starts.iter_mut().enumerate() {
                if s.take().is_some() {
                    results[i] = Some(Err(anyhow::Error::new(Interrupted { signal: sig })));
                }
            }
            break;
        }
        let idx: Vec<usize> = (0..runs.len()).filter(|&i| starts[i].as_ref().is_some_and(|s| s.at == at)).collect();
        let members: Vec<Member> = idx
            .iter()
            .map(|&i| Member::new(&runs[i], &data[i], starts[i].take().expect("each run starts once")))
            .collect();
        for (i, r) in idx.into_iter().zip(train_members(members, &phases, t0)) {
            results[i] = Some(r);
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every run trained")).collect())
}

/// What identifies a run's samples: the data set's name, the seed (the synthetic set only), the
/// folder, and the selection (train and test samples per class, the bound's halves).
type DataKey = (DatasetName, Option<u64>, Option<PathBuf>, (usize, usize, BoundSplit));

/// Each run's data, loading every distinct data set once and selecting its samples once (a
/// group's runs share both; the synthetic set depends on the seed).
fn load_group_data(runs: &[RunSpec]) -> Result<Vec<Prepared>> {
    let mut loaded: Vec<(DataKey, data::Selected)> = Vec::new();
    let mut out = Vec::new();
    for r in runs {
        let c = &r.cfg;
        let key = (
            c.data.dataset,
            (c.data.dataset == DatasetName::Synthetic).then_some(c.train.seed),
            data::data_root(c, r.opts.data_dir.as_deref()),
            (c.data.train_per_class, c.data.test_per_class, c.data.bound_split),
        );
        let i = match loaded.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let base = data::load(c.data.dataset, key.2.as_deref(), c.train.seed)?;
                loaded.push((key.clone(), data::Selected::new(c, &base)?));
                loaded.len() - 1
            }
        };
        out.push(loaded[i].1.corrupted(c)?);
    }
    Ok(out)
}

/// A fresh run's folder is made ready; a resumed run continues from its checkpoint (or from
/// the start, in the same folder, when it was killed before its first one).
fn start_of(r: &RunSpec, p: &Prepared) -> Result<Start> {
    let folder = RunFolder::new(&r.opts.out);
    if !r.resume {
        folder.start(&r.cfg, &p.changed, r.opts.force)?;
        return Ok(Start { at: Position::default(), state: None, blocks: Vec::new() });
    }
    match folder.checkpoint()? {
        Some(c) => {
            let blocks = folder.metrics()?.into_iter().filter(|b| b.epoch.unwrap_or(0) <= c.epoch).collect();
            Ok(Start { at: c.position(), state: Some(folder.file(&c.file)), blocks })
        }
        None => Ok(Start { at: Position::default(), state: None, blocks: Vec::new() }),
    }
}

/// Resuming runs of one group that a kill left at different checkpoints go back to the
/// earliest one where they still have its state file, so they train together again.
fn align(runs: &[RunSpec], starts: &mut [Start]) {
    let Some(low) = runs.iter().zip(starts.iter()).filter(|(r, _)| r.resume).map(|(_, s)| s.at).min() else {
        return;
    };
    let origin = Position::default();
    for (r, s) in runs.iter().zip(starts.iter_mut()) {
        if !r.resume || s.at == low {
            continue;
        }
        let folder = RunFolder::new(&r.opts.out);
        let state = if low == origin { None } else { folder.state_at(low) };
        if low == origin || state.is_some() {
            s.at = low;
            s.state = state;
            s.blocks.retain(|b| b.epoch.unwrap_or(0) <= low.epoch);
        }
    }
}

/// One run while its group trains.
struct Member<'a> {
    spec: &'a RunSpec,
    folder: RunFolder,
    data: &'a Prepared,
    start: Start,
    /// The latest probe of this process: (epoch, outcome).
    last: Option<(usize, ProbeOutcome)>,
    failed: Option<String>,
    /// How this process uses the CPU (set when LibTorch is set up).
    cpu: Option<CpuUse>,
    /// The run's TensorBoard event file, when asked for (dropped, with a warning, if writing fails).
    tb: Option<tensorboard::EventWriter>,
}

impl<'a> Member<'a> {
    fn new(spec: &'a RunSpec, data: &'a Prepared, start: Start) -> Member<'a> {
        Member {
            spec,
            folder: RunFolder::new(&spec.opts.out),
            data,
            start,
            last: None,
            failed: None,
            cpu: None,
            tb: None,
        }
    }

    /// Log to TensorBoard, if the run does; a failure to write stops the logging, not the run.
    fn log(&mut self, what: impl FnOnce(&mut tensorboard::EventWriter) -> Result<()>) {
        if let Some(w) = &mut self.tb {
            if let Err(e) = what(w) {
                eprintln!("{}: TensorBoard logging stopped: {e:#}", self.folder.path().display());
                self.tb = None;
            }
        }
    }

    fn record(&mut self, epoch: usize, o: ProbeOutcome, epoch_loss: Option<f64>, lr: Option<f64>) {
        let mut rows = metric_rows(&o.result);
        rows.extend(network_rows(&o, epoch_loss, lr));
        self.start.blocks.push(MetricBlock { epoch: Some(epoch), rows });
        self.last = Some((epoch, o));
        let block = self.start.blocks.last().cloned();
        self.log(|w| block.map_or(Ok(()), |b| tensorboard::log_block(w, &b)));
    }

    fn summary(
        &self,
        status: Status,
        reason: Option<&str>,
        epochs: usize,
        wall_s: f64,
        batch: &Option<BatchInfo>,
    ) -> Summary {
        let cfg = &self.spec.cfg;
        let mut s = Summary::of_probe_opt(self.last.as_ref().map(|(_, o)| o.result.clone()), wall_s);
        s.network = self.last.as_ref().map(|(_, o)| network_metrics(o));
        s.probe_epoch = self.last.as_ref().map(|(e, _)| *e);
        s.status = Some(status);
        s.reason = reason.map(str::to_string);
        s.epochs = Some(epochs);
        s.epochs_planned = Some(cfg.train.epochs);
        s.device = Some(cfg.train.device.to_string());
        s.dataset = Some(cfg.data.dataset);
        s.model = Some(cfg.model.clone());
        s.corruption =
            Some(CorruptionInfo { p: cfg.corruption.p, mode: cfg.corruption.mode, changed: self.data.changed.len() });
        s.batch = batch.clone();
        s.producer = Some(crate::BUILD.to_string());
        s.machine = Some(crate::machine::describe().to_string());
        s.cpu = self.cpu.clone();
        s
    }

    fn write(
        &self,
        status: Status,
        reason: Option<&str>,
        epochs: usize,
        t0: Instant,
        batch: &Option<BatchInfo>,
    ) -> Result<Summary> {
        let s = self.summary(status, reason, epochs, t0.elapsed().as_secs_f64(), batch);
        self.folder.write_results(&s, &self.start.blocks)?;
        Ok(s)
    }
}

fn network_metrics(o: &ProbeOutcome) -> NetworkMetrics {
    NetworkMetrics { train_acc: o.train_acc, test_acc: o.test_acc, train_loss: o.train_loss, test_loss: o.test_loss }
}

fn network_rows(o: &ProbeOutcome, epoch_loss: Option<f64>, lr: Option<f64>) -> Vec<MetricRow> {
    let mut rows = vec![
        MetricRow::network(Split::Train, "loss", o.train_loss),
        MetricRow::network(Split::Train, "acc", o.train_acc),
        MetricRow::network(Split::Test, "loss", o.test_loss),
        MetricRow::network(Split::Test, "acc", o.test_acc),
    ];
    if let Some(l) = epoch_loss {
        rows.push(MetricRow::network(Split::Train, "epoch_loss", l));
    }
    if let Some(lr) = lr {
        rows.push(MetricRow::network(Split::Train, "lr", lr));
    }
    rows
}

/// Train the members (one start epoch) as one model to the last epoch.
fn train_members(mut m: Vec<Member>, phases: &Phases, t0: Instant) -> Vec<Result<RunResult>> {
    let k = m.len();
    let cfg0 = m[0].spec.cfg.clone();
    let start = m[0].start.at;
    let quiet = m.iter().all(|x| x.spec.opts.quiet);
    let batch = (k > 1).then(|| BatchInfo { size: k, runs: m.iter().map(|x| x.folder.name()).collect() });
    let refs: Vec<&Dataset> = m.iter().map(|x| &x.data.data).collect();
    let ds = refs[0];
    let cpu = init_runtime(cfg0.train.seed, cfg0.train.threads, cfg0.train.numerics);
    for x in m.iter_mut() {
        x.cpu = Some(cpu.clone());
    }
    let group = Group {
        model: &cfg0.model,
        train: &cfg0.train,
        seeds: m.iter().map(|x| x.spec.cfg.train.seed).collect(),
        augment: cfg0.data.augment,
    };
    let built = Trainer::new(&group, &refs).and_then(|mut t| {
        let mut parts = Vec::new();
        for (i, x) in m.iter().enumerate() {
            if let Some(p) = &x.start.state {
                parts.extend(t.load(i, p)?);
            }
        }
        // Inside an epoch the checkpoints also hold where the epoch stood.
        let cursor = if start.step > 0 { Some(t.cursor(&parts)?) } else { None };
        Ok((t, cursor))
    });
    let (mut trainer, mut cursor) = match built {
        Ok(t) => t,
        Err(e) => {
            let why = format!("{e:#}");
            return m
                .iter()
                .map(|x| {
                    let _ = x.write(Status::Failed, Some(&why), start.epoch, t0, &batch);
                    Err(anyhow::anyhow!("{}: run failed: {why}", x.folder.path().display()))
                })
                .collect();
        }
    };
    phases.lap("build model");
    // A thread count depthprobe chose may give way on a shared CPU (engine/threads.rs); one the
    // config fixes, or portable numerics' single thread, stays.
    if cfg0.train.threads == 0 && cfg0.train.numerics == Numerics::Native {
        trainer.adapt_threads(cpu.threads);
    }
    let layers = trainer.layers().len();
    let progress = Progress::new("epoch", cfg0.train.epochs, start.epoch, quiet);
    let what = if k == 1 { String::new() } else { format!("{k} networks batched · ") };
    if start != Position::default() {
        progress.line(&format!("{what}resuming from {start} of {}", cfg0.train.epochs));
    }
    if cfg0.train.device == depthprobe_config::Device::Cpu {
        progress
            .line(&format!("{} threads: {} · OpenMP threads wait: {}", cpu.threads, cpu.threads_from, cpu.omp_wait));
    }
    progress.line(&format!(
        "{what}{} · {} train / {} test · {} · {} · {} epochs, probe every {}",
        ds.name,
        ds.train.len(),
        ds.test.len(),
        cfg0.model.name(),
        cfg0.train.device,
        cfg0.train.epochs,
        cfg0.probe.every
    ));
    for x in m.iter_mut() {
        // --tensorboard, else the config's [log] (a sweep has already given each run its folder).
        let dir = x.spec.opts.tensorboard.clone().or_else(|| x.spec.cfg.log.tensorboard_dir());
        if let Some(dir) = &dir {
            match tensorboard::EventWriter::create(dir, "depthprobe") {
                Ok(w) => {
                    progress.line(&format!("TensorBoard: {}", w.path().display()));
                    x.tb = Some(w);
                }
                Err(e) => progress.line(&format!("{}: no TensorBoard logging: {e:#}", x.folder.path().display())),
            }
        }
    }
    // From here on a failure is recorded in summary.json (status "failed" and the reason)
    // before it is returned, so a run folder never claims to be running.
    let fail = |x: &mut Member, epoch: usize, why: String| {
        let _ = x.write(Status::Failed, Some(&why), epoch, t0, &batch);
        progress.line(&format!("{}: failed in epoch {epoch}: {why}", x.folder.path().display()));
        x.failed = Some(why);
    };
    // What the thread count's changes say goes to the log once; how it adapted, to summary.json.
    let adapted = |trainer: &mut Trainer, m: &mut Vec<Member>| {
        for note in trainer.thread_notes() {
            progress.line(&note);
        }
        let a = trainer.thread_adaptation();
        for x in m.iter_mut() {
            if let Some(c) = &mut x.cpu {
                c.adaptive = a.clone();
            }
        }
    };
    let probe_all =
        |trainer: &mut Trainer, m: &mut Vec<Member>, epoch: usize, stats: Option<&[EpochStats]>, record: bool| {
            let outcomes = trainer.probe(&refs, &cfg0.probe);
            phases.lap("probe");
            adapted(trainer, m);
            let lr = stats.map(|_| lr_at(&cfg0.train, epoch, 0, 1));
            for (i, (x, o)) in m.iter_mut().zip(outcomes).enumerate() {
                if x.failed.is_some() {
                    continue;
                }
                match o {
                    Ok(o) if record => {
                        x.record(epoch, o, stats.map(|s| s[i].loss), lr);
                        if let Err(e) = x.write(Status::Running, None, epoch, t0, &batch) {
                            fail(x, epoch, format!("{e:#}"));
                        }
                    }
                    Ok(o) => x.last = Some((epoch, o)),
                    Err(e) => fail(x, epoch, format!("{e:#}")),
                }
            }
            phases.lap("write state");
        };
    if start == Position::default() && cfg0.probe.at_init {
        probe_all(&mut trainer, &mut m, 0, None, true);
    }
    let mut stopped: Option<(i32, Position)> = None;
    for epoch in start.epoch + 1..=cfg0.train.epochs {
        if m.iter().all(|x| x.failed.is_some()) {
            break;
        }
        let mut stop = |step: usize| {
            interrupt::maybe_raise_at(epoch, step);
            interrupt::requested().is_some()
        };
        let stats = match trainer.train_epoch_from(&refs, epoch, cursor.take(), &mut stop) {
            EpochEnd::Done(stats) => stats,
            EpochEnd::Stopped(c) => {
                let at = Position { epoch: epoch - 1, step: c.step };
                checkpoint(&trainer, &mut m, at, Some(&c), &fail);
                stopped = interrupt::requested().map(|s| (s, at));
                break;
            }
        };
        phases.lap("train");
        adapted(&mut trainer, &mut m);
        for (x, s) in m.iter_mut().zip(&stats) {
            if x.failed.is_none() && !s.loss.is_finite() {
                fail(x, epoch, format!("training loss became {} (diverged)", s.loss));
            }
        }
        let probed = epoch % cfg0.probe.every == 0 || epoch == cfg0.train.epochs;
        // The epoch's running loss and accuracy as it trains; a probed epoch's block carries its
        // loss and rate itself (as metrics.csv does).
        let lr = lr_at(&cfg0.train, epoch, 0, 1);
        for (x, s) in m.iter_mut().zip(&stats) {
            let mut v = vec![("net/train_epoch_acc".to_string(), s.acc)];
            if !probed {
                v.extend([("net/train_epoch_loss".to_string(), s.loss), ("net/lr".to_string(), lr)]);
            }
            x.log(|w| w.scalars(epoch as i64, &v));
        }
        if probed {
            probe_all(&mut trainer, &mut m, epoch, Some(&stats), true);
        }
        let every = cfg0.train.checkpoint_every;
        let last = epoch == cfg0.train.epochs;
        let signalled = interrupt::requested().filter(|_| !last);
        if (every > 0 && epoch % every == 0) || last || signalled.is_some() {
            checkpoint(&trainer, &mut m, Position::end_of(epoch), None, &fail);
            phases.lap("checkpoints");
        }
        progress.step(epoch, &epoch_message(&m, &stats, probed));
        if let Some(sig) = signalled {
            stopped = Some((sig, Position::end_of(epoch)));
            break;
        }
    }
    progress.finish();
    let epochs = cfg0.train.epochs;
    if let Some((signal, at)) = stopped {
        // Every live run has a checkpoint of `at`: say so in summary.json and stop.
        let why = format!("{} at {at}; resumes from its checkpoint", Interrupted { signal });
        return m
            .iter_mut()
            .map(|x| {
                if let Some(f) = &x.failed {
                    bail!("{}: run failed: {f}", x.folder.path().display());
                }
                x.write(Status::Interrupted, Some(&why), at.epoch, t0, &batch)?;
                progress.line(&format!("{}: {why}", x.folder.path().display()));
                Err(anyhow::Error::new(Interrupted { signal }).context(format!("{}", x.folder.path().display())))
            })
            .collect();
    }
    if m.iter().any(|x| x.failed.is_none() && x.last.is_none()) {
        // Resumed after the last epoch's checkpoint: the trained networks are there; probe them
        // again (deterministic) for the final result, without adding a metrics block.
        probe_all(&mut trainer, &mut m, epochs, None, false);
    }
    write_s2_predictions(&mut trainer, &mut m, cfg0.probe.batch_size, &fail);
    drop(trainer);
    // Figures and result files are plain Rust: in parallel (a figure pair takes ~0.1 s, most of
    // a short run's tail).
    let results = m
        .into_par_iter()
        .map(|mut x| {
            if let Some(why) = &x.failed {
                bail!("{}: run failed: {why}", x.folder.path().display());
            }
            figures::run::draw(x.folder.path(), &x.spec.cfg, layers, &x.start.blocks)?;
            if let Some((_, o)) = &x.last {
                figures::run::draw_similarity(x.folder.path(), &o.result, &x.start.blocks)?;
            }
            let dir = x.folder.path().to_path_buf();
            x.log(|w| tensorboard::log_figures(w, &dir, epochs as i64));
            let summary = x.write(Status::Done, None, epochs, t0, &batch)?;
            let result = x.last.take().context("no probe")?.1.result;
            Ok(RunResult { summary, result })
        })
        .collect();
    phases.lap("figures and results");
    phases.report(&if k == 1 { "one network".to_string() } else { format!("{k} networks batched") });
    results
}

/// A clean bound run's predictions on its held-out half S2, `s2_predictions.csv` (index into S2,
/// true label, predicted label): the uniform-errors check compares them across seeds.
fn write_s2_predictions(trainer: &mut Trainer, m: &mut [Member], pb: usize, fail: &dyn Fn(&mut Member, usize, String)) {
    let sets: Option<Vec<Dataset>> = m
        .iter()
        .map(|x| {
            let d = &x.data.data;
            let s2 = x.data.s2.clone()?;
            let empty = data::Split { storage: s2.storage.emptied(), labels: Vec::new() };
            Some(Dataset { name: d.name, shape: d.shape.clone(), num_classes: d.num_classes, train: empty, test: s2 })
        })
        .collect();
    let Some(sets) = sets else { return };
    let refs: Vec<&Dataset> = sets.iter().collect();
    let predicted = trainer.predict(&refs, pb);
    let epochs = m[0].spec.cfg.train.epochs;
    for ((x, set), pred) in m.iter_mut().zip(&sets).zip(predicted) {
        if x.failed.is_some() {
            continue;
        }
        let rows: Vec<(u32, u32)> = set.test.labels.iter().zip(pred).map(|(&l, p)| (l as u32, p)).collect();
        if let Err(e) = x.folder.write_s2_predictions(&rows) {
            fail(x, epochs, format!("{e:#}"));
        }
    }
}

/// Checkpoint every live member at `at` (see the module docs for the three steps); inside an
/// epoch, with the epoch's cursor.
fn checkpoint(
    trainer: &Trainer,
    m: &mut [Member],
    at: Position,
    cursor: Option<&EpochCursor>,
    fail: &dyn Fn(&mut Member, usize, String),
) {
    let state = trainer.host_state(cursor);
    for (i, x) in m.iter_mut().enumerate() {
        if x.failed.is_some() {
            continue;
        }
        let saved = x.folder.new_state_path(at).and_then(|p| save_state(&state, i, &p));
        if let Err(e) = saved {
            fail(x, at.epoch, format!("{e:#}"));
        }
    }
    for x in m.iter_mut().filter(|x| x.failed.is_none()) {
        if let Err(e) = x.folder.commit_checkpoint(at) {
            fail(x, at.epoch, format!("{e:#}"));
        }
    }
    for x in m.iter().filter(|x| x.failed.is_none()) {
        x.folder.prune_states(at);
    }
}

/// Network i's state to `path`: a temporary file beside it, fsynced, renamed.
fn save_state(state: &HostState, i: usize, path: &Path) -> Result<()> {
    let name = path.file_name().context("state file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    state.save(i, &tmp)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("{}: fsync", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: rename", tmp.display()))
}

fn epoch_message(m: &[Member], stats: &[EpochStats], probed: bool) -> String {
    if m.len() == 1 {
        let s = &stats[0];
        let mut msg = format!("loss {:.4} acc {:.4}", s.loss, s.acc);
        if let (true, Some((_, o))) = (probed, &m[0].last) {
            let top = o.result.layers.last().map(|l| l.ncc_train_acc).unwrap_or(f64::NAN);
            msg.push_str(&format!(" · test acc {:.4} · top NCC train {top:.4}", o.test_acc));
        }
        return msg;
    }
    let live: Vec<&EpochStats> = stats.iter().zip(m).filter(|(_, x)| x.failed.is_none()).map(|(s, _)| s).collect();
    let mean = |f: &dyn Fn(&EpochStats) -> f64| live.iter().map(|s| f(s)).sum::<f64>() / live.len().max(1) as f64;
    format!("mean loss {:.4} mean acc {:.4} · {} live", mean(&|s| s.loss), mean(&|s| s.acc), live.len())
}

/// Probe the last checkpoint of the run in `run_dir` again, on `device` (default: the run's),
/// into `out`: summary.json, metrics.csv, cdnv_pairs.csv. The same checkpoint probed on CPU and
/// on a GPU must agree (the GPU check in bench/gpu/ compares them).
pub fn probe_checkpoint(
    run_dir: &Path,
    device: Option<&str>,
    out: &Path,
    data_dir: Option<&Path>,
) -> Result<RunResult> {
    let t0 = Instant::now();
    let folder = RunFolder::new(run_dir);
    let mut cfg = folder.config()?;
    if let Some(d) = device {
        cfg.train.device = depthprobe_config::Device::parse(d).map_err(|e| anyhow::anyhow!(e))?;
    }
    let c = folder.checkpoint()?.with_context(|| {
        format!("{}: no checkpoint.json (a run folder with a checkpoint is needed)", run_dir.display())
    })?;
    check_device(cfg.train.device)?;
    let p = data::prepare(&cfg, data_dir)?;
    init_runtime(cfg.train.seed, cfg.train.threads, cfg.train.numerics);
    let group = Group { model: &cfg.model, train: &cfg.train, seeds: vec![cfg.train.seed], augment: cfg.data.augment };
    let mut trainer = Trainer::new(&group, &[&p.data])?;
    trainer.load(0, &folder.file(&c.file))?;
    let o = trainer.probe(&[&p.data], &cfg.probe).pop().expect("one network")?;
    let mut s = Summary::of_probe(o.result.clone(), t0.elapsed().as_secs_f64());
    s.network = Some(network_metrics(&o));
    s.source = Some(Source::Checkpoint(folder.file(&c.file).display().to_string()));
    s.probe_epoch = Some(c.epoch);
    s.device = Some(cfg.train.device.to_string());
    s.producer = Some(crate::BUILD.to_string());
    let out_folder = RunFolder::new(out);
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut rows = metric_rows(&o.result);
    rows.extend(network_rows(&o, None, None));
    out_folder.write_results(&s, &[MetricBlock { epoch: Some(c.epoch), rows }])?;
    Ok(RunResult { summary: s, result: o.result })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kill between the group's checkpoint steps leaves runs at different epochs: they go back
    /// to the earliest one they all still have; a run that no longer has it keeps its own.
    #[test]
    fn resuming_runs_align_on_the_checkpoint_they_all_have() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = |name: &str| RunSpec {
            cfg: Config::default(),
            opts: RunOptions {
                out: tmp.path().join(name),
                data_dir: None,
                force: false,
                quiet: true,
                tensorboard: None,
            },
            resume: true,
        };
        let runs = vec![spec("a"), spec("b"), spec("c")];
        // a: committed epoch 4, still has epoch 2's state; b: committed 2; c: committed 4 only.
        for (r, states) in runs.iter().zip([&[2usize, 4][..], &[2], &[4]]) {
            let f = RunFolder::new(&r.opts.out);
            for &e in states {
                std::fs::write(f.new_state_path(Position::end_of(e)).unwrap(), b"state").unwrap();
            }
        }
        let start = |e: usize, out: &Path| Start {
            at: Position::end_of(e),
            state: Some(out.join(depthprobe_runfolder::state_file(Position::end_of(e)))),
            blocks: (0..=e).step_by(2).map(|ep| MetricBlock { epoch: Some(ep), rows: Vec::new() }).collect(),
        };
        let mut starts = vec![start(4, &runs[0].opts.out), start(2, &runs[1].opts.out), start(4, &runs[2].opts.out)];
        align(&runs, &mut starts);
        assert_eq!(starts.iter().map(|s| s.at.epoch).collect::<Vec<_>>(), vec![2, 2, 4]);
        assert_eq!(starts[0].state, RunFolder::new(&runs[0].opts.out).state_at(Position::end_of(2)));
        assert_eq!(starts[0].blocks.last().unwrap().epoch, Some(2), "metrics after the epoch are dropped");
        assert_eq!(starts[2].blocks.last().unwrap().epoch, Some(4));
    }
}
