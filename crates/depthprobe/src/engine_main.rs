//! `depthprobe-engine`: every command of the `depthprobe` command line (the `depthprobe` binary hands
//! all but `measure` to it; docs/architecture.md, "Two binaries"). A thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use depthprobe::config::Config;
use depthprobe::console;
use depthprobe::interrupt::{self, Interrupted};
use depthprobe::pipeline::{train, RunOptions, RunResult};
use depthprobe::sweep::RunnerCmd;

#[derive(Parser)]
#[command(
    name = "depthprobe",
    version = depthprobe::BUILD,
    about = "Train deep classifiers and measure, layer by layer, how class structure forms inside them.",
    long_about = "Train deep classifiers and measure, layer by layer, how class structure forms inside them: \
NCC separability, CDNV, neural-collapse measures and the effective depth. Definitions: docs/method.md in \
the repository."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a network as CONFIG says and probe every layer while it learns.
    Train {
        /// Run configuration (TOML); see configs/. Not with --resume.
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Continue the interrupted run in DIR from its last checkpoint (its config.toml is used).
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Train a small MLP on built-in data (no files needed) and show its per-layer profile.
    Demo {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Layer measures of embeddings dumped by any framework (.npy folders or .safetensors).
    Measure(depthprobe_measure_cli::MeasureArgs),
    /// Probe the last checkpoint of a run again, e.g. on another device (CPU against GPU).
    Probe {
        /// Run folder (with config.toml and checkpoint.json).
        run: PathBuf,
        /// cpu, cuda or cuda:N (default: the run's device).
        #[arg(long)]
        device: Option<String>,
        /// Output folder (default: RUN/probe-<device>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data folder (one subfolder per data set); else $DEPTHPROBE_DATA, else the run's data.root.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Fetch the data sets `train` reads (MNIST, Fashion-MNIST, CIFAR-10), checksums verified.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Families of runs: plan a sweep file, run it locally or on SLURM, see where it stands.
    Sweep {
        #[command(subcommand)]
        cmd: SweepCmd,
    },
    /// Aggregate a sweep into DIR/report: results.csv/.parquet, figures, report.md, index.html.
    Report {
        /// Sweep folder.
        dir: PathBuf,
    },
    /// The comparative generalization bound (docs/method.md, "The comparative bound") from a sweep
    /// planned with a [bound] section.
    Bound {
        /// Sweep folder.
        dir: PathBuf,
    },
    /// Write runs that exist into other tools' formats.
    Export {
        #[command(subcommand)]
        cmd: ExportCmd,
    },
}

#[derive(Subcommand)]
enum ExportCmd {
    /// TensorBoard event files from a run folder's metrics.csv and figures, or from every run of a
    /// sweep folder (into OUT/<run id>/); the tags are those `train --tensorboard` writes.
    Tensorboard {
        /// Run folder or sweep folder.
        path: PathBuf,
        /// Log folder to write (`tensorboard --logdir OUT`).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SweepCmd {
    /// Expand a sweep file into one resolved config per run under DIR (stable run ids). Into a
    /// folder planned before, it says which runs the folder already has and keeps their ids.
    Plan {
        /// Sweep file (TOML): base config, [config] overrides, [axes] grid, optional [bound].
        sweep: PathBuf,
        /// Sweep folder to write (plan.json, configs/, later runs/ and logs/); with --dry-run, the
        /// folder whose runs to show beside the plan's.
        #[arg(long, required_unless_present = "dry_run")]
        out: Option<PathBuf>,
        /// List the runs and their count (with --out, where each stands in that folder); write
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// Override a config key of every run (not an axis), e.g. --set train.epochs=2 for a
        /// quick trial of a recipe; repeatable. Recorded at the top of the folder's sweep.toml.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Run planned runs I,J,... (what a SLURM array task calls). Done runs are skipped, interrupted
    /// ones resume; runs that differ only in seeds and label corruption train as one batched model.
    Run {
        /// Sweep folder (written by `sweep plan`).
        dir: PathBuf,
        /// Run indices in plan order (0-based), comma-separated.
        #[arg(long, value_delimiter = ',', required = true, value_name = "I,J,...")]
        index: Vec<usize>,
        /// cpu, cuda or cuda:N: train these runs there, whatever their train.device says.
        #[arg(long)]
        device: Option<String>,
        /// Data folder (one subfolder per data set); else $DEPTHPROBE_DATA, else data.root.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print only errors.
        #[arg(long)]
        quiet: bool,
        /// Each run also writes TensorBoard event files into LOGDIR/<run id> as it trains.
        #[arg(long, value_name = "LOGDIR")]
        tensorboard: Option<PathBuf>,
    },
    /// `local` and `status`, which the `depthprobe` binary also runs itself (without LibTorch).
    #[command(flatten)]
    Runner(depthprobe::sweep::RunnerCmd),
    /// Write DIR/submit.sbatch (a job array over the runs not done) and submit it with sbatch.
    Slurm {
        /// Sweep folder (written by `sweep plan`; the cluster's nodes must see it at the same path).
        dir: PathBuf,
        /// At most M array tasks at once (%M).
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Each array task trains up to K runs that differ only in seeds and label corruption as
        /// one batched model (as `sweep local --batch`).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Extra #SBATCH line, e.g. --sbatch-arg=--partition=gpu (repeatable).
        #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
        sbatch_args: Vec<String>,
        /// Data folder as the cluster's nodes see it; else $DEPTHPROBE_DATA there, else data.root.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write the script only.
        #[arg(long)]
        no_submit: bool,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// Download data sets from their public mirrors (those torchvision uses, next one on failure)
    /// or from $DEPTHPROBE_MIRROR (http(s):// or file:// base URLs, comma-separated; files are
    /// BASE/<mnist|fashion-mnist|cifar-10>/<official name>). Every file is checked against its
    /// published MD5; an interrupted download continues where it stopped.
    Download {
        /// mnist, fashion-mnist, cifar10 or all.
        #[arg(required = true, value_name = "DATASET")]
        names: Vec<String>,
        /// Data folder to fill (default: $DEPTHPROBE_DATA, else the user's data directory,
        /// $XDG_DATA_HOME/depthprobe or ~/.local/share/depthprobe, which `train` also reads).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print only errors.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Override a config value: section.key=value (TOML syntax), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run folder (default: runs/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Data folder (one subfolder per data set); else $DEPTHPROBE_DATA, else data.root.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// cpu, cuda or cuda:N (overrides train.device).
    #[arg(long)]
    device: Option<String>,
    /// Overwrite a run folder that already holds a run.
    #[arg(long)]
    force: bool,
    /// Print only errors and the final table.
    #[arg(long)]
    quiet: bool,
    /// Also write TensorBoard event files into DIR as the run goes: the loss and accuracy per
    /// epoch, every per-layer measure and the effective depths at each probe, the figures at the
    /// end (docs/result-files.md, "TensorBoard"). `tensorboard --logdir DIR` shows them.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
}

fn run_training(cfg_text: &str, origin: &str, default_out: PathBuf, mut args: RunArgs) -> Result<()> {
    if let Some(d) = &args.device {
        args.sets.push(format!("train.device=\"{d}\""));
    }
    let cfg = Config::from_toml(cfg_text, origin, &args.sets)?;
    let out = args.out.unwrap_or(default_out);
    let opts = RunOptions {
        out: out.clone(),
        data_dir: args.data_dir,
        force: args.force,
        quiet: args.quiet,
        tensorboard: args.tensorboard,
    };
    let run = train(&cfg, &opts).inspect_err(|e| resume_hint(e, &out))?;
    report(&run, &out);
    Ok(())
}

fn resume_hint(e: &anyhow::Error, out: &std::path::Path) {
    if interrupt::signal_of(e).is_some() {
        eprintln!(
            "the run has a checkpoint of the step it stopped at; continue it with `depthprobe train --resume {}`",
            out.display()
        );
    }
}

fn report(run: &RunResult, out: &std::path::Path) {
    print!("{}", console::table(&run.result));
    println!("{}", console::network_line(&run.summary));
    println!(
        "wrote {}/{{summary.json, metrics.csv, cdnv_pairs.csv, config.toml, checkpoint.json, ncc_by_epoch.svg/.png, layer_profile.svg/.png}} in {:.1}s",
        out.display(),
        run.summary.wall_s
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that train stop cleanly on SIGTERM, SIGINT and SIGUSR1 (crates/sweep/src/
    // interrupt.rs); the others keep the default: a signal ends them at once, which loses nothing.
    if matches!(
        cli.cmd,
        Cmd::Train { .. }
            | Cmd::Demo { .. }
            | Cmd::Sweep { cmd: SweepCmd::Run { .. } | SweepCmd::Runner(RunnerCmd::Local(_)) }
    ) {
        interrupt::install();
    }
    let res = match cli.cmd {
        Cmd::Train { resume: Some(dir), run, .. } => {
            if !run.sets.is_empty() || run.out.is_some() || run.force || run.device.is_some() {
                Err(anyhow::anyhow!("--resume continues the run exactly as configured in DIR/config.toml: --set, --out, --force and --device do not apply"))
            } else {
                let opts = RunOptions {
                    out: dir,
                    data_dir: run.data_dir,
                    force: false,
                    quiet: run.quiet,
                    tensorboard: run.tensorboard,
                };
                depthprobe::pipeline::resume(&opts)
                    .inspect_err(|e| resume_hint(e, &opts.out))
                    .map(|r| report(&r, &opts.out))
            }
        }
        Cmd::Train { config: Some(config), run, .. } => {
            let stem = config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
            match std::fs::read_to_string(&config) {
                Ok(text) => run_training(&text, &config.display().to_string(), PathBuf::from("runs").join(stem), run),
                Err(e) => Err(anyhow::anyhow!("{}: cannot read config: {e}", config.display())),
            }
        }
        Cmd::Train { .. } => unreachable!("clap requires CONFIG or --resume"),
        Cmd::Demo { mut run } => {
            // The demo reruns freely: its folder is overwritten.
            run.force = true;
            run_training(depthprobe::DEMO_CONFIG, "demo config (configs/demo.toml)", PathBuf::from("runs/demo"), run)
        }
        Cmd::Measure(args) => depthprobe_measure_cli::run(args, depthprobe::BUILD),
        Cmd::Probe { run, device, out, data_dir } => {
            let out = out.unwrap_or_else(|| {
                run.join(format!("probe-{}", device.as_deref().unwrap_or("default").replace(':', "")))
            });
            depthprobe::pipeline::probe_checkpoint(&run, device.as_deref(), &out, data_dir.as_deref()).map(|r| {
                print!("{}", console::table(&r.result));
                println!("wrote {}/{{summary.json, metrics.csv, cdnv_pairs.csv}}", out.display());
            })
        }
        Cmd::Sweep { cmd } => sweep(cmd),
        Cmd::Data { cmd: DataCmd::Download { names, root, quiet } } => download(&names, root, quiet),
        Cmd::Bound { dir } => bound(&dir),
        Cmd::Export { cmd: ExportCmd::Tensorboard { path, out } } => {
            depthprobe::tensorboard::export(&path, &out).map(|files| {
                for f in &files {
                    println!("wrote {}", f.display());
                }
            })
        }
        Cmd::Report { dir } => depthprobe::report::report(&dir).map(|r| {
            for c in &r.checks {
                println!("{}", c.replace("**", ""));
            }
            println!("wrote {} files to {} (open index.html or report.md)", r.files.len(), r.dir.display());
        }),
    };
    interrupt::exit_status(res)
}

fn sweep(cmd: SweepCmd) -> Result<()> {
    use depthprobe::sweep::{self, SweepDir};
    match cmd {
        SweepCmd::Plan { sweep, out, dry_run, sets } => {
            if dry_run {
                let (mut plan, configs) = sweep::plan::expand_with(&sweep, &sets)?;
                let existing = match &out {
                    Some(o) => sweep::plan::reconcile(o, &mut plan, &configs)?,
                    None => Default::default(),
                };
                print!("{}", sweep::plan::describe(&plan, &existing));
                if let Some(o) = &out {
                    print!("{}", existing.describe(&plan, o));
                }
                println!("{}: {} runs (dry run: nothing written)", plan.name, plan.runs.len());
            } else {
                let out = out.expect("clap requires --out without --dry-run");
                let (plan, existing) = sweep::write_plan(&sweep, &out, &sets)?;
                SweepDir(out.clone()).log_command(depthprobe::BUILD);
                print!("{}", existing.describe(&plan, &out));
                println!("{}: {} runs planned in {}", plan.name, plan.runs.len(), out.display());
            }
            Ok(())
        }
        SweepCmd::Run { dir, index, device, data_dir, quiet, tensorboard } => {
            let device = device
                .map(|d| depthprobe::config::Device::parse(&d).map_err(|e| anyhow::anyhow!("--device: {e}")))
                .transpose()?;
            let mut failed = Vec::new();
            let d = SweepDir(dir);
            d.log_command(depthprobe::BUILD);
            let mut stopped = 0;
            for (i, o) in sweep::run_indices(&d, &index, device, data_dir.as_deref(), quiet, tensorboard.as_deref())? {
                match o {
                    sweep::Outcome::AlreadyDone if !quiet => eprintln!("run {i} is already done; skipped"),
                    sweep::Outcome::Failed(why) => failed.push(why),
                    sweep::Outcome::Interrupted => stopped += 1,
                    _ => {}
                }
            }
            if !failed.is_empty() {
                anyhow::bail!("{} of {} runs failed:\n  {}", failed.len(), index.len(), failed.join("\n  "));
            }
            if let (Some(signal), true) = (interrupt::requested(), stopped > 0) {
                return Err(anyhow::Error::new(Interrupted { signal }).context(format!(
                    "{stopped} of {} runs stopped (checkpointed); the same command continues them",
                    index.len()
                )));
            }
            Ok(())
        }
        SweepCmd::Runner(RunnerCmd::Local(args)) => {
            let workers = match &args.devices {
                Some(list) => sweep::Workers::devices(list, &depthprobe::engine::check_device)?,
                None => sweep::Workers::jobs(args.jobs),
            };
            sweep::local(&args, &workers, depthprobe::BUILD)
        }
        SweepCmd::Runner(RunnerCmd::Status(args)) => sweep::status(&args),
        SweepCmd::Slurm { dir, max_parallel, batch, sbatch_args, data_dir, no_submit } => {
            let d = SweepDir(dir);
            d.log_command(depthprobe::BUILD);
            match sweep::write_slurm(&d, max_parallel, batch, &sbatch_args, data_dir.as_deref())? {
                None => println!("every run is done; nothing to submit"),
                Some((script, n)) => {
                    println!("wrote {} ({n} array tasks)", script.display());
                    if no_submit {
                    } else if sweep::exec::have_sbatch() {
                        let id = sweep::submit(&script)?;
                        println!(
                            "submitted job {id}; follow it with `squeue -j {id}` and `depthprobe sweep status {}`",
                            d.0.display()
                        );
                    } else {
                        println!("sbatch is not on PATH; submit with: sbatch {}", script.display());
                    }
                }
            }
            Ok(())
        }
    }
}

fn download(names: &[String], root: Option<PathBuf>, quiet: bool) -> Result<()> {
    use depthprobe_download as dl;
    let root = root
        .or_else(|| std::env::var_os("DEPTHPROBE_DATA").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(dl::default_root)
        .ok_or_else(|| anyhow::anyhow!("no data folder: pass --root DIR (HOME is not set, so there is no default)"))?;
    let mut sets: Vec<dl::DataSet> = Vec::new();
    for n in names {
        let Some(found) = dl::lookup(&n.to_ascii_lowercase()) else {
            anyhow::bail!("unknown data set '{n}': choose from mnist, fashion-mnist, cifar10, all");
        };
        for d in found {
            if !sets.iter().any(|s| s.name == d.name) {
                sets.push(d);
            }
        }
    }
    let mirror = std::env::var(dl::MIRROR_ENV).ok();
    for ds in &sets {
        let sources = dl::sources(ds, mirror.as_deref())?;
        match dl::download(ds, &root, &sources, quiet)? {
            dl::Fetched::AlreadyThere => {
                println!("{}: already in {}, every file verified", ds.name, ds.target_dir(&root).display())
            }
            dl::Fetched::Downloaded => {
                println!("{}: downloaded and verified in {}", ds.name, ds.target_dir(&root).display())
            }
        }
    }
    Ok(())
}

fn bound(dir: &std::path::Path) -> Result<()> {
    use depthprobe::bound;
    use depthprobe::sweep::SweepDir;
    let rows = depthprobe::sweep::bound_rows(&SweepDir(dir.to_path_buf()))?;
    if rows.is_empty() {
        anyhow::bail!("{}: no finished clean and noisy runs yet; run the sweep first", dir.display());
    }
    print!("{}", bound::markdown(&rows));
    depthprobe_runfolder::write_all_atomic(&[
        (dir.join("bound.csv"), bound::csv(&rows).into_bytes()),
        (dir.join("bound.json"), depthprobe_runfolder::json_text(&rows)?.into_bytes()),
    ])?;
    println!("wrote {}/bound.csv and bound.json", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is in --help.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "depthprobe", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
