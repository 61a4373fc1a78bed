//! One training run: data, label corruption, training with a probe every K epochs, and the run
//! directory (config.toml, metrics.csv, summary.json, cdnv_pairs.csv, corrupted_labels.csv,
//! figures). Results are rewritten atomically after every probe, so a killed run leaves the
//! last complete state behind.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::config::{BoundSplit, Config};
use crate::data::corruption::Relabel;
use crate::data::{self, corruption, Dataset};

use crate::engine::batched::BatchedTrainer;
use crate::engine::trainer::EpochStats;
use crate::engine::trainer::{ProbeOutcome, Trainer};
use crate::engine::{device_name, init_runtime, resolve_device};
use crate::figures::{ramp_color, render_svg, write_figure, Panel, Series};
use crate::results::{self, write_atomic, MetricBlock, MetricRow};

#[derive(Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    pub data_dir: Option<PathBuf>,
    /// Overwrite an output folder that already holds a run.
    pub force: bool,
    /// Print nothing but errors.
    pub quiet: bool,
}

/// The data folder: --data-dir, else $DEPTHPROBE_DATA, else data.root.
pub fn data_root(cfg: &Config, flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("DEPTHPROBE_DATA").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(|| (!cfg.data.root.is_empty()).then(|| PathBuf::from(&cfg.data.root)))
}

/// Load, subset and corrupt the data as the config says. Returns the data set and the changed
/// train labels (index, original, new).
pub fn prepare_data(cfg: &Config, data_dir: Option<&Path>) -> Result<(Dataset, Vec<Relabel>)> {
    derive_data(cfg, &load_data(cfg, data_dir)?)
}

/// The data set as loaded, before subsetting and corruption.
fn load_data(cfg: &Config, data_dir: Option<&Path>) -> Result<Dataset> {
    let root = data_root(cfg, data_dir);
    data::load(&cfg.data.dataset, root.as_deref(), cfg.train.seed)
}

/// Subset and corrupt a loaded data set as the config says. Only what the run keeps is copied
/// (a batched group derives many runs from one loaded set).
fn derive_data(cfg: &Config, base: &Dataset) -> Result<(Dataset, Vec<Relabel>)> {
    let split = |s: &data::Split, per_class: usize, which: &str| -> Result<data::Split> {
        if per_class > 0 {
            data::balanced_subset(base, s, per_class, which)
        } else {
            Ok(s.clone())
        }
    };
    let mut ds = Dataset {
        name: base.name.clone(),
        shape: base.shape.clone(),
        num_classes: base.num_classes,
        train: split(&base.train, cfg.data.train_per_class, "train")?,
        test: split(&base.test, cfg.data.test_per_class, "test")?,
    };
    // Corruption acts on train labels from `first` on: all of them, or S2 alone for the bound.
    let mut first = 0;
    match cfg.data.bound_split {
        BoundSplit::None => {}
        BoundSplit::S1 => {
            let (s1, _) = data::bound_halves(&ds.train, ds.num_classes);
            ds.train = data::select(&ds, &ds.train, &s1);
        }
        BoundSplit::S1S2 => {
            let (s1, s2) = data::bound_halves(&ds.train, ds.num_classes);
            first = s1.len();
            ds.train = data::select(&ds, &ds.train, &[s1, s2].concat());
        }
    }
    let changed = if cfg.corruption.p > 0.0 {
        let mut ch = corruption::corrupt(
            &mut ds.train.labels[first..],
            ds.num_classes,
            cfg.corruption.p,
            cfg.corruption.mode,
            cfg.corruption.seed,
        );
        for r in &mut ch {
            r.index += first;
        }
        ch
    } else {
        Vec::new()
    };
    data::check_classes_present(&ds.train, ds.num_classes, &format!("train split of {}", ds.name))?;
    data::check_classes_present(&ds.test, ds.num_classes, &format!("test split of {}", ds.name))?;
    Ok((ds, changed))
}

#[derive(Default)]
struct History {
    /// metrics.csv, one block per probe (restored from disk on resume).
    blocks: Vec<MetricBlock>,
    /// The latest probe of this process: (epoch, outcome).
    last: Option<(usize, ProbeOutcome)>,
}

impl History {
    fn record(&mut self, epoch: usize, o: ProbeOutcome, epoch_loss: Option<f64>, lr: Option<f64>) {
        let mut rows = results::metric_rows(&o.result);
        rows.extend(network_rows(&o, epoch_loss, lr));
        self.blocks.push(MetricBlock { epoch: Some(epoch), rows });
        self.last = Some((epoch, o));
    }
}

fn network_rows(o: &ProbeOutcome, epoch_loss: Option<f64>, lr: Option<f64>) -> Vec<MetricRow> {
    let mut rows = vec![
        MetricRow::network("train", "loss", o.train_loss),
        MetricRow::network("train", "acc", o.train_acc),
        MetricRow::network("test", "loss", o.test_loss),
        MetricRow::network("test", "acc", o.test_acc),
    ];
    if let Some(l) = epoch_loss {
        rows.push(MetricRow::network("train", "epoch_loss", l));
    }
    if let Some(lr) = lr {
        rows.push(MetricRow::network("train", "lr", lr));
    }
    rows
}

/// Where a run stands, for summary.json.
struct RunState<'a> {
    status: &'a str,
    reason: Option<&'a str>,
    epochs_done: usize,
    wall_s: f64,
    device: &'a str,
    corrupted: usize,
}

fn summary(cfg: &Config, h: &History, st: &RunState) -> Value {
    let mut extra = Map::new();
    extra.insert("status".into(), json!(st.status));
    if let Some(r) = st.reason {
        extra.insert("reason".into(), json!(r));
    }
    extra.insert("epochs".into(), json!(st.epochs_done));
    extra.insert("epochs_planned".into(), json!(cfg.train.epochs));
    extra.insert("wall_s".into(), json!(st.wall_s));
    extra.insert("device".into(), json!(st.device));
    extra.insert("dataset".into(), json!(cfg.data.dataset));
    extra.insert("model".into(), json!({"arch": cfg.model.arch, "depth": cfg.model.depth, "width": cfg.model.width, "embedding": cfg.model.embedding}));
    extra.insert(
        "corruption".into(),
        json!({"p": cfg.corruption.p, "mode": cfg.corruption.mode, "changed": st.corrupted}),
    );
    match &h.last {
        Some((epoch, o)) => {
            extra.insert("probe_epoch".into(), json!(epoch));
            network_fields(&mut extra, o);
            results::summary_value(&o.result, extra)
        }
        None => Value::Object(extra),
    }
}

/// The network's own accuracy and loss in summary.json (null when not finite).
fn network_fields(extra: &mut Map<String, Value>, o: &ProbeOutcome) {
    for (k, v) in
        [("train_acc", o.train_acc), ("test_acc", o.test_acc), ("train_loss", o.train_loss), ("test_loss", o.test_loss)]
    {
        extra.insert(k.into(), if v.is_finite() { json!(v) } else { Value::Null });
    }
}

fn write_state(out: &Path, cfg: &Config, h: &History, st: &RunState) -> Result<Value> {
    let s = summary(cfg, h, st);
    let mut files = vec![
        (out.join("metrics.csv"), results::metrics_csv(&h.blocks).into_bytes()),
        (out.join("summary.json"), results::json_text(&s)?.into_bytes()),
    ];
    if let Some((_, o)) = &h.last {
        files.push((out.join("cdnv_pairs.csv"), results::cdnv_pairs_csv(&o.result).into_bytes()));
    }
    results::write_all_atomic(&files)?;
    Ok(s)
}

/// Refuse to overwrite an earlier run unless forced.
fn prepare_out(out: &Path, force: bool) -> Result<()> {
    if out.join("summary.json").exists() || out.join("config.toml").exists() {
        if !force {
            bail!("{} already holds a run (config.toml / summary.json); pass --force to overwrite it or choose another --out", out.display());
        }
        for f in
            ["summary.json", "metrics.csv", "cdnv_pairs.csv", "corrupted_labels.csv", "config.toml", "checkpoint.json"]
        {
            let _ = std::fs::remove_file(out.join(f));
        }
        let _ = std::fs::remove_dir_all(out.join("checkpoints"));
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create run folder", out.display()))
}

/// The figures, drawn from the metrics rows (so a resumed run draws its whole history).
fn figures(out: &Path, cfg: &Config, blocks: &[MetricBlock]) -> Result<()> {
    let Some(last) = blocks.last() else { return Ok(()) };
    let nl = cfg.model.depth;
    let color = |l: usize| ramp_color(l - 1, nl);
    let epoch_of = |b: &MetricBlock| b.epoch.unwrap_or(0) as f64;
    let by_epoch = |test: bool| -> Panel {
        let split = if test { "test" } else { "train" };
        let mut series: Vec<Series> = (1..=nl)
            .map(|l| Series {
                name: format!("layer {l}"),
                points: blocks.iter().map(|b| (epoch_of(b), b.value(Some(l), split, "ncc_acc"))).collect(),
                color: color(l),
                dashed: false,
            })
            .collect();
        series.push(Series {
            name: format!("net {split} acc"),
            points: blocks.iter().map(|b| (epoch_of(b), b.value(None, split, "acc"))).collect(),
            color: "#000000".into(),
            dashed: true,
        });
        Panel {
            title: format!("NCC {split} accuracy per layer"),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            series,
            y_range: Some((0.0, 1.0)),
            integer_x: true,
        }
    };
    let title = format!(
        "{} on {}{}",
        cfg.model.name(),
        cfg.data.dataset,
        if cfg.corruption.p > 0.0 {
            format!(", {:.0}% corrupted labels", cfg.corruption.p * 100.0)
        } else {
            String::new()
        }
    );
    write_figure(
        out,
        "ncc_by_epoch",
        &render_svg(&format!("Intermediate NCC separability: {title}"), &[by_epoch(false), by_epoch(true)], 2),
    )?;
    let prof = |name: &str, color: &str, pts: Vec<(f64, f64)>| Series {
        name: name.into(),
        points: pts,
        color: color.into(),
        dashed: false,
    };
    let layer_pts = |split: &str, name: &str, f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (1..=nl).map(|l| (l as f64, f(last.value(Some(l), split, name)))).collect()
    };
    let log10 = |v: f64| if v > 0.0 && v.is_finite() { v.log10() } else { f64::NAN };
    let acc = Panel {
        title: "NCC accuracy by layer".into(),
        x_label: "layer".into(),
        y_label: "accuracy".into(),
        series: vec![
            prof("train", "#1f77b4", layer_pts("train", "ncc_acc", &|v| v)),
            prof("test", "#d62728", layer_pts("test", "ncc_acc", &|v| v)),
        ],
        y_range: Some((0.0, 1.0)),
        integer_x: true,
    };
    let cdnv = Panel {
        title: "CDNV by layer".into(),
        x_label: "layer".into(),
        y_label: "log10 CDNV".into(),
        series: vec![
            prof("train", "#1f77b4", layer_pts("train", "cdnv", &log10)),
            prof("test", "#d62728", layer_pts("test", "cdnv", &log10)),
        ],
        y_range: None,
        integer_x: true,
    };
    let epoch = last.epoch.unwrap_or(0);
    write_figure(
        out,
        "layer_profile",
        &render_svg(&format!("Per-layer profile at epoch {epoch}: {title}"), &[acc, cdnv], 2),
    )
}

/// Checkpoint after `epoch`: the state file first (temp + fsync + rename), then checkpoint.json
/// pointing at it, then older state files are removed. A kill at any moment leaves a
/// checkpoint.json that names a complete file.
fn checkpoint(out: &Path, trainer: &Trainer, epoch: usize) -> Result<()> {
    checkpoint_with(out, epoch, &|p| trainer.save(p))
}

fn checkpoint_with(out: &Path, epoch: usize, save: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    let dir = out.join("checkpoints");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let name = format!("epoch-{epoch:05}.safetensors");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    save(&tmp)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("{}: fsync", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(&name)).with_context(|| format!("{}: rename", tmp.display()))?;
    let meta = json!({"epoch": epoch, "file": format!("checkpoints/{name}"), "format": "depthprobe-checkpoint-1"});
    results::write_json(&out.join("checkpoint.json"), &meta)?;
    for e in std::fs::read_dir(&dir)?.flatten() {
        if e.file_name().to_string_lossy() != name {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// Read metrics.csv back into blocks (for resume). Values round-trip exactly.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricBlock>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some("epoch,layer,split,metric,value") {
        bail!("{}: not a training metrics.csv (header must be epoch,layer,split,metric,value)", path.display());
    }
    let mut blocks: Vec<MetricBlock> = Vec::new();
    for (i, line) in lines.enumerate() {
        let bad = || anyhow::anyhow!("{}: line {}: cannot parse '{line}'", path.display(), i + 2);
        let f: Vec<&str> = line.split(',').collect();
        let [epoch, layer, split, name, value] = f[..] else { return Err(bad()) };
        let epoch: usize = epoch.parse().map_err(|_| bad())?;
        let layer = if layer.is_empty() { None } else { Some(layer.parse().map_err(|_| bad())?) };
        let split = match split {
            "train" => "train",
            "test" => "test",
            _ => return Err(bad()),
        };
        let value = match value {
            "" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad())?,
        };
        let row = MetricRow { layer, split, metric: name.to_string(), value };
        match blocks.last_mut() {
            Some(b) if b.epoch == Some(epoch) => b.rows.push(row),
            _ => blocks.push(MetricBlock { epoch: Some(epoch), rows: vec![row] }),
        }
    }
    Ok(blocks)
}

/// What a finished run returns: the summary.json object and the last probe's results.
pub struct RunResult {
    pub summary: Value,
    pub result: depthprobe_measures::ProbeResult,
}

/// Wall time per phase of a run, printed to stderr at the end when `DEPTHPROBE_PHASES` is set:
/// how the fixed costs of a sweep were found on a GPU machine that has no profiler.
struct Phases {
    on: bool,
    last: std::cell::Cell<Instant>,
    totals: std::cell::RefCell<Vec<(&'static str, f64, usize)>>,
}

impl Phases {
    fn from_env() -> Phases {
        let on = std::env::var_os("DEPTHPROBE_PHASES").is_some_and(|v| !v.is_empty());
        Phases { on, last: std::cell::Cell::new(Instant::now()), totals: Default::default() }
    }
    /// Charge the time since the previous lap to `name`.
    fn lap(&self, name: &'static str) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        let dt = (now - self.last.replace(now)).as_secs_f64();
        let mut t = self.totals.borrow_mut();
        match t.iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += dt;
                e.2 += 1
            }
            None => t.push((name, dt, 1)),
        }
    }
    fn report(&self, what: &str) {
        if !self.on {
            return;
        }
        let t = self.totals.borrow();
        let all: f64 = t.iter().map(|e| e.1).sum();
        let parts: Vec<String> = t.iter().map(|(n, s, c)| format!("{n} {s:.3} s ×{c}")).collect();
        eprintln!("phases ({what}, {all:.3} s): {}", parts.join(" · "));
    }
}

/// Train as configured and probe every `probe.every` epochs.
pub fn train(cfg: &Config, opts: &RunOptions) -> Result<RunResult> {
    resolve_device(&cfg.train.device)?;
    let phases = Phases::from_env();
    // Check the data before touching the output folder.
    let (ds, changed) = prepare_data(cfg, opts.data_dir.as_deref())?;
    phases.lap("load data");
    start_folder(cfg, opts, &changed)?;
    phases.lap("start folder");
    run_from(cfg, opts, (ds, changed), 0, History::default(), None, phases)
}

/// A fresh run folder: config.toml and, with corruption, corrupted_labels.csv.
fn start_folder(cfg: &Config, opts: &RunOptions, changed: &[Relabel]) -> Result<()> {
    prepare_out(&opts.out, opts.force)?;
    let out = opts.out.as_path();
    write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())?;
    if cfg.corruption.p > 0.0 {
        let mut s = String::from("index,original_label,corrupted_label\n");
        for r in changed {
            let _ = writeln!(s, "{},{},{}", r.index, r.original, r.corrupted);
        }
        write_atomic(&out.join("corrupted_labels.csv"), s.as_bytes())?;
    }
    Ok(())
}

/// The run's last checkpoint from its checkpoint.json: (epoch, state file); None when there is
/// no checkpoint.json yet.
fn last_checkpoint(out: &Path) -> Result<Option<(usize, PathBuf)>> {
    let Ok(text) = std::fs::read_to_string(out.join("checkpoint.json")) else { return Ok(None) };
    let c: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: checkpoint.json is not valid JSON", out.display()))?;
    let e = c["epoch"].as_u64().with_context(|| format!("{}: checkpoint.json has no epoch", out.display()))? as usize;
    let file = c["file"].as_str().with_context(|| format!("{}: checkpoint.json has no file", out.display()))?;
    Ok(Some((e, out.join(file))))
}

/// Continue an interrupted run in `opts.out` from its last checkpoint. The final metrics.csv
/// equals that of an uninterrupted run with the same config on CPU.
pub fn resume(opts: &RunOptions) -> Result<RunResult> {
    let out = opts.out.as_path();
    let cfg = Config::from_file(&out.join("config.toml"), &[])?;
    if let Ok(text) = std::fs::read_to_string(out.join("summary.json")) {
        let s: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: summary.json is not valid JSON", out.display()))?;
        if s["status"] == "done" {
            bail!("{}: the run is already done; nothing to resume", out.display());
        }
    }
    let (epoch, file) = match last_checkpoint(out)? {
        Some((e, f)) => (e, Some(f)),
        // Killed before the first checkpoint: start over in the same folder.
        None => (0, None),
    };
    let mut h = History::default();
    if file.is_some() {
        h.blocks =
            read_metrics(&out.join("metrics.csv"))?.into_iter().filter(|b| b.epoch.unwrap_or(0) <= epoch).collect();
    }
    if !opts.quiet {
        eprintln!("resuming {} from epoch {epoch} of {}", out.display(), cfg.train.epochs);
    }
    let phases = Phases::from_env();
    let data = prepare_data(&cfg, opts.data_dir.as_deref())?;
    phases.lap("load data");
    run_from(&cfg, opts, data, epoch, h, file.as_deref(), phases)
}

/// The training loop from `start` (0 = a fresh network) on data already prepared (loaded,
/// subset, corrupted), optionally restoring a checkpoint; `phases` has timed the data so far.
fn run_from(
    cfg: &Config,
    opts: &RunOptions,
    (ds, changed): (Dataset, Vec<Relabel>),
    start: usize,
    mut h: History,
    ckpt: Option<&Path>,
    phases: Phases,
) -> Result<RunResult> {
    let t0 = Instant::now();
    let out = opts.out.as_path();
    let device = resolve_device(&cfg.train.device)?;
    init_runtime(cfg.train.seed, cfg.train.threads);
    let mut trainer = Trainer::new(cfg, &ds, device)?;
    if let Some(p) = ckpt {
        trainer.load(p)?;
    }
    phases.lap("build model");
    let dev = device_name(device);
    let log = Logger::new(cfg.train.epochs, opts.quiet);
    log.line(&format!(
        "{} · {} train / {} test · {} · {} · {} epochs, probe every {}",
        ds.name,
        ds.train.len(),
        ds.test.len(),
        cfg.model.name(),
        dev,
        cfg.train.epochs,
        cfg.probe.every
    ));
    let state = |status, reason, epochs_done| RunState {
        status,
        reason,
        epochs_done,
        wall_s: t0.elapsed().as_secs_f64(),
        device: &dev,
        corrupted: changed.len(),
    };
    // From here on a failure is recorded in summary.json (status "failed" and the reason)
    // before it is returned, so the run folder never claims to be running.
    let fail = |h: &History, epoch: usize, e: anyhow::Error| -> anyhow::Error {
        let reason = format!("{e:#}");
        let st = RunState {
            status: "failed",
            reason: Some(&reason),
            epochs_done: epoch,
            wall_s: t0.elapsed().as_secs_f64(),
            device: &dev,
            corrupted: changed.len(),
        };
        let _ = write_state(out, cfg, h, &st);
        log.finish();
        anyhow::anyhow!("{}: run failed in epoch {epoch}: {reason}", out.display())
    };
    if start == 0 && cfg.probe.at_init {
        let o = trainer.probe(&ds).map_err(|e| fail(&h, 0, e))?;
        phases.lap("probe");
        h.record(0, o, None, None);
        write_state(out, cfg, &h, &state("running", None, 0))?;
        phases.lap("write state");
    }
    for epoch in start + 1..=cfg.train.epochs {
        let st = trainer.train_epoch(&ds, epoch);
        phases.lap("train");
        if !st.loss.is_finite() {
            return Err(fail(&h, epoch, anyhow::anyhow!("training loss became {} (diverged)", st.loss)));
        }
        let mut msg = format!("loss {:.4} acc {:.4}", st.loss, st.acc);
        if epoch % cfg.probe.every == 0 || epoch == cfg.train.epochs {
            let o = trainer.probe(&ds).map_err(|e| fail(&h, epoch, e))?;
            phases.lap("probe");
            let top = o.result.layers.last().map(|l| l.ncc_train_acc).unwrap_or(f64::NAN);
            let _ = write!(msg, " · test acc {:.4} · top NCC train {:.4}", o.test_acc, top);
            // The LR in force at the end of this epoch.
            let lr = crate::schedule::lr_at(&cfg.train, epoch, 0, 1);
            h.record(epoch, o, Some(st.loss), Some(lr));
            write_state(out, cfg, &h, &state("running", None, epoch))?;
            phases.lap("write state");
        }
        let every = cfg.train.checkpoint_every;
        if (every > 0 && epoch % every == 0) || epoch == cfg.train.epochs {
            checkpoint(out, &trainer, epoch).map_err(|e| fail(&h, epoch, e))?;
            phases.lap("checkpoints");
        }
        log.epoch(epoch, &msg);
    }
    log.finish();
    if h.last.is_none() {
        // Resumed after the last epoch's checkpoint: the trained network is there; probe it again
        // (deterministic) for the final result, without adding a metrics block.
        let o = trainer.probe(&ds).map_err(|e| fail(&h, cfg.train.epochs, e))?;
        h.last = Some((cfg.train.epochs, o));
        phases.lap("probe");
    }
    figures(out, cfg, &h.blocks)?;
    let summary = write_state(out, cfg, &h, &state("done", None, cfg.train.epochs))?;
    phases.lap("figures and results");
    phases.report("one network");
    let result = h.last.take().expect("probed above").1.result;
    Ok(RunResult { summary, result })
}

/// A progress bar on a terminal, plain lines otherwise.
struct Logger {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    start: Instant,
    epochs: usize,
}

impl Logger {
    fn new(epochs: usize, quiet: bool) -> Logger {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(epochs as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] epoch {pos}/{len} · {msg} · ETA {eta}",
                )
                .unwrap()
                .progress_chars("=> "),
            );
            b
        });
        Logger { bar, quiet, start: Instant::now(), epochs }
    }
    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }
    fn epoch(&self, epoch: usize, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(epoch as u64);
                b.set_message(msg.to_string());
            }
            None if !self.quiet => {
                eprintln!("epoch {epoch}/{} · {msg} · {:.1}s", self.epochs, self.start.elapsed().as_secs_f64())
            }
            None => {}
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Probe the last checkpoint of the run in `run_dir` again, on `device` (default: the run's),
/// into `out`: summary.json, metrics.csv, cdnv_pairs.csv. The same checkpoint probed on CPU
/// and on a GPU must agree (the GPU check in bench/gpu/ compares them).
pub fn probe_checkpoint(
    run_dir: &Path,
    device: Option<&str>,
    out: &Path,
    data_dir: Option<&Path>,
) -> Result<RunResult> {
    let t0 = Instant::now();
    let mut cfg = Config::from_file(&run_dir.join("config.toml"), &[])?;
    if let Some(d) = device {
        cfg.train.device = d.to_string();
    }
    let (epoch, file) = last_checkpoint(run_dir)?.with_context(|| {
        format!("{}: no checkpoint.json (a run folder with a checkpoint is needed)", run_dir.display())
    })?;
    let dev = resolve_device(&cfg.train.device)?;
    let (ds, _) = prepare_data(&cfg, data_dir)?;
    init_runtime(cfg.train.seed, cfg.train.threads);
    let mut trainer = Trainer::new(&cfg, &ds, dev)?;
    trainer.load(&file)?;
    let o = trainer.probe(&ds)?;
    let mut rows = results::metric_rows(&o.result);
    rows.extend(network_rows(&o, None, None));
    let blocks = [MetricBlock { epoch: Some(epoch), rows }];
    let mut extra = Map::new();
    extra.insert("source".into(), json!(file.display().to_string()));
    extra.insert("probe_epoch".into(), json!(epoch));
    extra.insert("device".into(), json!(device_name(dev)));
    network_fields(&mut extra, &o);
    extra.insert("wall_s".into(), json!(t0.elapsed().as_secs_f64()));
    let summary = results::summary_value(&o.result, extra);
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    results::write_all_atomic(&[
        (out.join("summary.json"), results::json_text(&summary)?.into_bytes()),
        (out.join("metrics.csv"), results::metrics_csv(&blocks).into_bytes()),
        (out.join("cdnv_pairs.csv"), results::cdnv_pairs_csv(&o.result).into_bytes()),
    ])?;
    Ok(RunResult { summary, result: o.result })
}

/// What identifies a loaded data set: name, seed (synthetic data only), data folder.
type DataKey = (String, Option<u64>, Option<PathBuf>);

/// Train runs that differ only in seeds and label corruption as one batched model
/// (engine/batched.rs), writing into each run folder what `train` writes: config.toml,
/// corrupted_labels.csv, metrics.csv and summary.json after every probe, the final checkpoint,
/// the figures. A network that diverges fails alone; the others go on. Batched groups keep no
/// mid-run checkpoints: an interrupted group starts again from epoch 0.
pub fn train_batched(runs: &[(Config, RunOptions)]) -> Result<Vec<Result<RunResult>>> {
    let t0 = Instant::now();
    let phases = Phases::from_env();
    let cfg0 = &runs[0].0;
    let device = resolve_device(&cfg0.train.device)?;
    // Load each distinct data set once (a group shares it; the synthetic one depends on the seed).
    let mut loaded: Vec<(DataKey, Dataset)> = Vec::new();
    let mut data: Vec<(Dataset, Vec<Relabel>)> = Vec::new();
    for (c, o) in runs {
        let key = (
            c.data.dataset.clone(),
            (c.data.dataset == "synthetic").then_some(c.train.seed),
            data_root(c, o.data_dir.as_deref()),
        );
        let i = match loaded.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                loaded.push((key, load_data(c, o.data_dir.as_deref())?));
                loaded.len() - 1
            }
        };
        data.push(derive_data(c, &loaded[i].1)?);
    }
    drop(loaded);
    phases.lap("load data");
    let cfgs: Vec<Config> = runs.iter().map(|r| r.0.clone()).collect();
    let refs: Vec<&Dataset> = data.iter().map(|d| &d.0).collect();
    init_runtime(cfg0.train.seed, cfg0.train.threads);
    let mut bt = BatchedTrainer::new(&cfgs, &refs, device)?;
    phases.lap("build model");
    for ((cfg, opts), (_, changed)) in runs.iter().zip(&data) {
        start_folder(cfg, opts, changed)?;
    }
    phases.lap("start folders");
    let k = runs.len();
    let dev = device_name(device);
    let quiet = runs.iter().all(|r| r.1.quiet);
    let log = Logger::new(cfg0.train.epochs, quiet);
    log.line(&format!(
        "{} networks batched · {} · {} train / {} test · {} · {} · {} epochs, probe every {}",
        k,
        refs[0].name,
        refs[0].train.len(),
        refs[0].test.len(),
        cfg0.model.name(),
        dev,
        cfg0.train.epochs,
        cfg0.probe.every
    ));
    let mut hs: Vec<History> = (0..k).map(|_| History::default()).collect();
    let mut failed: Vec<Option<String>> = vec![None; k];
    let write = |i: usize, h: &History, status: &str, reason: Option<&str>, epoch: usize| {
        let st = RunState {
            status,
            reason,
            epochs_done: epoch,
            wall_s: t0.elapsed().as_secs_f64(),
            device: &dev,
            corrupted: data[i].1.len(),
        };
        write_state(&runs[i].1.out, &runs[i].0, h, &st)
    };
    let fail = |i: usize, h: &History, epoch: usize, why: String, failed: &mut Vec<Option<String>>| {
        let _ = write(i, h, "failed", Some(&why), epoch);
        log.line(&format!("{}: failed in epoch {epoch}: {why}", runs[i].1.out.display()));
        failed[i] = Some(why);
    };
    let probe_all = |bt: &mut BatchedTrainer,
                     hs: &mut Vec<History>,
                     failed: &mut Vec<Option<String>>,
                     epoch: usize,
                     losses: Option<&[f64]>|
     -> Result<()> {
        let lr = losses.map(|_| crate::schedule::lr_at(&cfg0.train, epoch, 0, 1));
        let outcomes = bt.probe(&refs);
        phases.lap("probe");
        for (i, o) in outcomes.into_iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            match o {
                Ok(o) => {
                    hs[i].record(epoch, o, losses.map(|l| l[i]), lr);
                    write(i, &hs[i], "running", None, epoch)?;
                }
                Err(e) => fail(i, &hs[i], epoch, format!("{e:#}"), failed),
            }
        }
        phases.lap("write state");
        Ok(())
    };
    if cfg0.probe.at_init {
        probe_all(&mut bt, &mut hs, &mut failed, 0, None)?;
    }
    for epoch in 1..=cfg0.train.epochs {
        let st = bt.train_epoch(&refs, epoch);
        phases.lap("train");
        for (i, s) in st.iter().enumerate() {
            if failed[i].is_none() && !s.loss.is_finite() {
                fail(i, &hs[i], epoch, format!("training loss became {} (diverged)", s.loss), &mut failed);
            }
        }
        if failed.iter().all(Option::is_some) {
            break;
        }
        if epoch % cfg0.probe.every == 0 || epoch == cfg0.train.epochs {
            let losses: Vec<f64> = st.iter().map(|s| s.loss).collect();
            probe_all(&mut bt, &mut hs, &mut failed, epoch, Some(&losses))?;
        }
        let live: Vec<&EpochStats> = st.iter().zip(&failed).filter(|(_, f)| f.is_none()).map(|(s, _)| s).collect();
        let mean = |f: &dyn Fn(&EpochStats) -> f64| live.iter().map(|s| f(s)).sum::<f64>() / live.len().max(1) as f64;
        log.epoch(
            epoch,
            &format!("mean loss {:.4} mean acc {:.4} · {} live", mean(&|s| s.loss), mean(&|s| s.acc), live.len()),
        );
    }
    log.finish();
    let epochs = cfg0.train.epochs;
    // Checkpoints read the model (sequential, ~10 ms each); figures and result files are plain
    // Rust and render in parallel (a figure pair takes ~0.1 s: most of a short run's tail).
    let ckpts: Vec<Result<()>> = (0..k)
        .map(|i| match failed[i] {
            Some(_) => Ok(()),
            None => checkpoint_with(&runs[i].1.out, epochs, &|p| bt.save(i, p)),
        })
        .collect();
    phases.lap("checkpoints");
    let results = hs
        .into_par_iter()
        .zip(ckpts)
        .enumerate()
        .map(|(i, (mut h, ckpt))| {
            let (cfg, opts) = &runs[i];
            if let Some(why) = &failed[i] {
                bail!("{}: run failed: {why}", opts.out.display());
            }
            ckpt?;
            figures(&opts.out, cfg, &h.blocks)?;
            let summary = write(i, &h, "done", None, epochs)?;
            let result = h.last.take().context("no probe")?.1.result;
            Ok(RunResult { summary, result })
        })
        .collect();
    phases.lap("figures and results");
    phases.report(&format!("{k} networks batched"));
    Ok(results)
}
