//! The `depthprobe` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use depthprobe::config::Config;
use depthprobe::measure::{measure, MeasureOptions};
use depthprobe::results;
use depthprobe::run::{train, RunOptions};

#[derive(Parser)]
#[command(
    name = "depthprobe",
    version,
    about = "Train deep classifiers and measure, layer by layer, how class structure forms inside them."
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
    Measure {
        /// Train split: folder with labels.npy, layer_1.npy … layer_L.npy, or a .safetensors file.
        #[arg(long)]
        train: PathBuf,
        /// Test split, same layout.
        #[arg(long)]
        test: PathBuf,
        /// Output folder for summary.json, metrics.csv, cdnv_pairs.csv.
        #[arg(long)]
        out: PathBuf,
        /// ε values for effective depth.
        #[arg(long, value_delimiter = ',', default_values_t = depthprobe_measures::DEFAULT_EPS.to_vec())]
        eps: Vec<f64>,
        /// Number of classes (default: largest train label + 1).
        #[arg(long)]
        num_classes: Option<usize>,
        /// Measure only these classes (comma-separated labels).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<usize>>,
        /// Rank measures for layers of at most this dimension (D×D memory; 0 = never).
        #[arg(long, default_value_t = 1024)]
        rank_max_dim: usize,
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
}

fn run_training(cfg_text: &str, origin: &str, default_out: PathBuf, mut args: RunArgs) -> Result<()> {
    if let Some(d) = &args.device {
        args.sets.push(format!("train.device=\"{d}\""));
    }
    let cfg = Config::from_toml(cfg_text, origin, &args.sets)?;
    let out = args.out.unwrap_or(default_out);
    let opts = RunOptions { out: out.clone(), data_dir: args.data_dir, force: args.force, quiet: args.quiet };
    let run = train(&cfg, &opts)?;
    report(&run, &out);
    Ok(())
}

fn report(run: &depthprobe::run::RunResult, out: &std::path::Path) {
    let summary = &run.summary;
    print!("{}", results::table(&run.result));
    let f = |k: &str| summary[k].as_f64().map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    println!(
        "network: train acc {} · test acc {} · train loss {} · test loss {}",
        f("train_acc"),
        f("test_acc"),
        f("train_loss"),
        f("test_loss")
    );
    println!(
        "wrote {}/{{summary.json, metrics.csv, cdnv_pairs.csv, config.toml, checkpoint.json, ncc_by_epoch.svg/.png, layer_profile.svg/.png}} in {:.1}s",
        out.display(),
        summary["wall_s"].as_f64().unwrap_or(0.0)
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Train { resume: Some(dir), run, .. } => {
            if !run.sets.is_empty() || run.out.is_some() || run.force || run.device.is_some() {
                Err(anyhow::anyhow!("--resume continues the run exactly as configured in DIR/config.toml: --set, --out, --force and --device do not apply"))
            } else {
                let opts = RunOptions { out: dir, data_dir: run.data_dir, force: false, quiet: run.quiet };
                depthprobe::run::resume(&opts).map(|r| report(&r, &opts.out))
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
        Cmd::Measure { train, test, out, eps, num_classes, classes, rank_max_dim } => {
            let opts = MeasureOptions { train, test, eps, num_classes, classes, rank_max_dim };
            measure(&opts, &out).map(|r| {
                print!("{}", results::table(&r));
                println!("wrote {}/{{summary.json, metrics.csv, cdnv_pairs.csv}}", out.display());
            })
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
