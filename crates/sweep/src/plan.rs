//! A planned sweep's folder: the plan's runs (written by `sweep plan`, in `depthprobe`'s
//! `sweep/plan.rs`), where each run's files are, and the sweep's command log. The plan records
//! each run's role and the `[bound]` section as these types; what they mean for the comparative
//! bound (validation, the runs' configs, the estimate) is `depthprobe`'s `bound.rs`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use depthprobe_config::Config;

pub const PLAN_FORMAT: &str = "depthprobe-sweep-1";

/// Set for the processes a sweep starts itself (`sweep local`'s children, SLURM tasks), so that
/// only the user's commands go to commands.log.
pub const CHILD_ENV: &str = "DEPTHPROBE_SWEEP_CHILD";

/// The current UTC time as 2026-11-28T08:40:00Z.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlannedRun {
    pub index: usize,
    pub id: String,
    /// The axis values of this run (dotted key → value), in axis order.
    pub values: Vec<(String, toml::Value)>,
    #[serde(flatten)]
    pub role: Role,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub format: String,
    pub name: String,
    pub axes: Vec<String>,
    pub bound: Option<BoundSpec>,
    pub runs: Vec<PlannedRun>,
}

/// What a planned run is for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// A point of the axes grid.
    Grid,
    /// The bound's clean network `seed` trained on S1.
    Clean { seed: usize },
    /// The bound's network trained on S1 ∪ S̃2 with corruption fraction `p`, draw `draw`.
    Noisy { p: f64, draw: usize },
}

/// The `[bound]` section: K clean networks on S1, K' noisy networks on S1 ∪ S̃2 per p.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoundSpec {
    /// K: clean networks trained on S1 (train seeds 0..K, offset by the base train.seed).
    pub clean_seeds: usize,
    /// K': corruption draws per p, each with its own train seed and corruption seed.
    pub noisy_draws: usize,
    /// The grid of corruption fractions p ∈ (0, 1/2).
    pub p: Vec<f64>,
    /// α ∈ (0, 1) of Proposition 1.
    pub alpha: f64,
    /// ε of the effective depth; must be one of probe.eps.
    pub eps: f64,
}

/// Folder layout of a planned sweep.
pub struct SweepDir(pub PathBuf);

impl SweepDir {
    pub fn plan_path(&self) -> PathBuf {
        self.0.join("plan.json")
    }
    pub fn config_path(&self, id: &str) -> PathBuf {
        self.0.join("configs").join(format!("{id}.toml"))
    }
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.0.join("runs").join(id)
    }
    /// Held (flock) by the process training the run.
    pub fn lock_path(&self, id: &str) -> PathBuf {
        self.0.join("runs").join(format!("{id}.lock"))
    }
    /// Every command run on the sweep (plan, local, run, slurm), one line each: its provenance.
    pub fn commands_path(&self) -> PathBuf {
        self.0.join("commands.log")
    }

    /// Append this process's command line to commands.log (not for the runs a sweep starts
    /// itself: they say `DEPTHPROBE_SWEEP_CHILD`), with `build` (the binary's version and commit).
    /// A failure to write is not an error.
    pub fn log_command(&self, build: &str) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        self.log_line(&format!(
            "depthprobe {build} · depthprobe {} · on {}",
            args.join(" "),
            crate::machine::describe()
        ));
    }

    /// Append a time-stamped line to commands.log (best effort, as `log_command`).
    pub fn log_line(&self, text: &str) {
        if std::env::var_os(CHILD_ENV).is_some() {
            return;
        }
        let line = format!("{} · {text}\n", utc_now());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.commands_path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.0.join("logs").join(format!("{id}.log"))
    }
    pub fn read_plan(&self) -> Result<Plan> {
        let p = self.plan_path();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!("{}: cannot read the sweep plan (run `depthprobe sweep plan` first)", p.display())
        })?;
        let plan: Plan = serde_json::from_str(&text).with_context(|| format!("{}: not a sweep plan", p.display()))?;
        if plan.format != PLAN_FORMAT {
            bail!("{}: format '{}' is not {PLAN_FORMAT}", p.display(), plan.format);
        }
        Ok(plan)
    }
    pub fn run_config(&self, id: &str) -> Result<Config> {
        Config::from_file(&self.config_path(id), &[])
    }
}
