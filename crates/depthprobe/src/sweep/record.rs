//! One planned run of a sweep as the bound and the report read it: its config, its
//! summary.json (through the run folder's types) and its metrics history.

use anyhow::{bail, Result};
use depthprobe_config::Config;
use depthprobe_runfolder::{MetricBlock, RunFolder, Status};

use super::plan::{value_text, PlannedRun, SweepDir};
use crate::bound::{self, BoundRow, BoundRun};

/// Final per-layer values of a run.
#[derive(Clone, Debug)]
pub struct LayerFinal {
    pub ncc_train_acc: f64,
    pub ncc_test_acc: f64,
    pub cdnv_train: f64,
    pub cdnv_test: f64,
    /// NaN without a linear probe on the layer.
    pub linear_train_acc: f64,
    pub linear_test_acc: f64,
    /// The spectrum of the weight producing the layer (NaN without `probe.weight_spectra`).
    pub weight_rank: f64,
    pub weight_stable_rank: f64,
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub run: PlannedRun,
    pub config: Config,
    /// None: the run never started (pending).
    pub status: Option<Status>,
    pub reason: Option<String>,
    pub train_acc: f64,
    pub test_acc: f64,
    pub wall_s: f64,
    /// ε → effective depth (None: not separable), as in summary.json.
    pub effective_depth: Vec<(f64, Option<usize>)>,
    /// The same from the linear probe (empty without one).
    pub linear_effective_depth: Vec<(f64, Option<usize>)>,
    pub layers: Vec<LayerFinal>,
    /// The equi-separation fit of the final probe's fuzziness (docs/method.md).
    pub fuzziness_fit: Option<depthprobe_measures::LogLinearFit>,
    /// CKA between the layers at the final probe (with `probe.cka`).
    pub cka: Option<depthprobe_measures::CkaResult>,
    /// The depthprobe build that trained it.
    pub producer: Option<String>,
    /// The machine it trained on (summary.json's `machine`), when recorded.
    pub machine: Option<String>,
    /// A clean bound run's predictions on S2, (label, predicted) per sample, when it wrote them.
    pub s2_predictions: Option<Vec<(u32, u32)>>,
}

impl RunRecord {
    pub fn done(&self) -> bool {
        self.status == Some(Status::Done)
    }

    /// The ε-effective depth, with "not separable" counted as L (docs/method.md, "Effective
    /// depth"); the flag says whether that happened.
    pub fn depth_at(&self, eps: f64) -> Option<(usize, bool)> {
        let (_, d) = self.effective_depth.iter().find(|(e, _)| (e - eps).abs() < 1e-12)?;
        Some(match d {
            Some(d) => (*d, false),
            // L: the layers probed (the model's depth for a run without a probe).
            None => (if self.layers.is_empty() { self.config.model.depth } else { self.layers.len() }, true),
        })
    }

    /// Read a planned run.
    pub fn load(dir: &SweepDir, run: &PlannedRun) -> Result<RunRecord> {
        let config = dir.run_config(&run.id)?;
        let mut rec = RunRecord {
            run: run.clone(),
            config,
            status: None,
            reason: None,
            train_acc: f64::NAN,
            test_acc: f64::NAN,
            wall_s: f64::NAN,
            effective_depth: Vec::new(),
            linear_effective_depth: Vec::new(),
            layers: Vec::new(),
            fuzziness_fit: None,
            cka: None,
            producer: None,
            machine: None,
            s2_predictions: None,
        };
        let folder = RunFolder::new(dir.run_dir(&run.id));
        let Some(s) = folder.summary()? else { return Ok(rec) };
        if matches!(run.role, bound::Role::Clean { .. }) {
            rec.s2_predictions = folder.s2_predictions()?;
        }
        rec.status = s.status;
        rec.reason = s.reason;
        rec.wall_s = s.wall_s;
        rec.producer = s.producer;
        rec.machine = s.machine;
        if let Some(n) = s.network {
            rec.train_acc = n.train_acc;
            rec.test_acc = n.test_acc;
        }
        if let Some(r) = s.result {
            for (k, d) in &r.effective_depth {
                rec.effective_depth.push((k.parse().unwrap_or(f64::NAN), *d));
            }
            for (k, d) in &r.linear_effective_depth {
                rec.linear_effective_depth.push((k.parse().unwrap_or(f64::NAN), *d));
            }
            // Fitted again from the layers, so that runs written before the fit stopped at
            // saturation are read by today's rule.
            rec.fuzziness_fit = r.equi_separation_fit();
            rec.layers = r
                .layers
                .iter()
                .map(|l| LayerFinal {
                    ncc_train_acc: l.ncc_train_acc,
                    ncc_test_acc: l.ncc_test_acc.unwrap_or(f64::NAN),
                    cdnv_train: l.cdnv_train.unwrap_or(f64::NAN),
                    cdnv_test: l.cdnv_test.unwrap_or(f64::NAN),
                    linear_train_acc: l.linear_train_acc.unwrap_or(f64::NAN),
                    linear_test_acc: l.linear_test_acc.unwrap_or(f64::NAN),
                    weight_rank: l.weight_rank.unwrap_or(f64::NAN),
                    weight_stable_rank: l.weight_stable_rank.unwrap_or(f64::NAN),
                })
                .collect();
            rec.cka = r.cka.clone();
        }
        Ok(rec)
    }

    /// The run's metrics.csv, one block per probe (empty when it has none).
    pub fn history(&self, dir: &SweepDir) -> Result<Vec<MetricBlock>> {
        RunFolder::new(dir.run_dir(&self.run.id)).metrics()
    }
}

/// Every planned run of the sweep, in plan order.
pub fn load_all(dir: &SweepDir) -> Result<Vec<RunRecord>> {
    let plan = dir.read_plan()?;
    plan.runs.iter().map(|r| RunRecord::load(dir, r)).collect()
}

impl RunRecord {
    /// The axis values it shares with its group of the bound, e.g. "model.depth=8" (empty
    /// without axes).
    pub fn bound_group(&self) -> String {
        self.run.values.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(" ")
    }

    /// What the bound's estimate needs of this run, at `eps`.
    pub fn bound_run(&self, eps: f64) -> BoundRun {
        BoundRun {
            group: self.bound_group(),
            role: self.run.role,
            done: self.done(),
            depth: self.depth_at(eps),
            train_acc: self.train_acc,
            test_acc: self.test_acc,
        }
    }
}

/// The bound table of a sweep planned with a `[bound]` section, from its runs so far.
pub fn bound_rows(dir: &SweepDir) -> Result<Vec<BoundRow>> {
    let plan = dir.read_plan()?;
    let Some(spec) = plan.bound else {
        bail!(
            "{}: this sweep has no [bound] section; plan one with a [bound] section to estimate the bound",
            dir.0.display()
        );
    };
    let runs: Vec<BoundRun> = load_all(dir)?.iter().map(|r| r.bound_run(spec.eps)).collect();
    Ok(bound::compute(&spec, &runs))
}
