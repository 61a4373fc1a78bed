//! One finished run of a sweep as the bound and the report read it: its config, its final
//! summary.json values and its metrics history.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::plan::{PlannedRun, SweepDir};
use crate::config::Config;
use crate::results::MetricBlock;

/// Final per-layer values of a run.
#[derive(Clone, Debug)]
pub struct LayerFinal {
    pub ncc_train_acc: f64,
    pub ncc_test_acc: f64,
    pub cdnv_train: f64,
    pub cdnv_test: f64,
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub run: PlannedRun,
    pub config: Config,
    pub status: String,
    pub reason: Option<String>,
    pub train_acc: f64,
    pub test_acc: f64,
    pub wall_s: f64,
    /// ε → effective depth (None: not separable), as in summary.json.
    pub effective_depth: Vec<(f64, Option<usize>)>,
    pub layers: Vec<LayerFinal>,
}

/// A number from summary.json: numbers as they are, "inf" as +∞, anything else NaN.
pub fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

impl RunRecord {
    pub fn done(&self) -> bool {
        self.status == "done"
    }

    /// The ε-effective depth, with "not separable" counted as L (spec §1.5); the flag says
    /// whether that happened.
    pub fn depth_at(&self, eps: f64) -> Option<(usize, bool)> {
        let (_, d) = self.effective_depth.iter().find(|(e, _)| (e - eps).abs() < 1e-12)?;
        Some(match d {
            Some(d) => (*d, false),
            None => (self.config.model.depth, true),
        })
    }

    /// Read a planned run (status "pending" when it never started).
    pub fn load(dir: &SweepDir, run: &PlannedRun) -> Result<RunRecord> {
        let config = dir.run_config(&run.id)?;
        let path = dir.run_dir(&run.id).join("summary.json");
        let mut rec = RunRecord {
            run: run.clone(),
            config,
            status: "pending".into(),
            reason: None,
            train_acc: f64::NAN,
            test_acc: f64::NAN,
            wall_s: f64::NAN,
            effective_depth: Vec::new(),
            layers: Vec::new(),
        };
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(rec) };
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        rec.status = v["status"].as_str().unwrap_or("unknown").to_string();
        rec.reason = v["reason"].as_str().map(str::to_string);
        rec.train_acc = num(&v["train_acc"]);
        rec.test_acc = num(&v["test_acc"]);
        rec.wall_s = num(&v["wall_s"]);
        if let Some(m) = v["effective_depth"].as_object() {
            for (k, d) in m {
                let e: f64 = k.parse().with_context(|| format!("{}: effective_depth key '{k}'", path.display()))?;
                rec.effective_depth.push((e, d.as_u64().map(|d| d as usize)));
            }
        }
        if let Some(ls) = v["layers"].as_array() {
            rec.layers = ls
                .iter()
                .map(|l| LayerFinal {
                    ncc_train_acc: num(&l["ncc_train_acc"]),
                    ncc_test_acc: num(&l["ncc_test_acc"]),
                    cdnv_train: num(&l["cdnv_train"]),
                    cdnv_test: num(&l["cdnv_test"]),
                })
                .collect();
        }
        Ok(rec)
    }

    /// The run's metrics.csv, one block per probe (empty when it has none).
    pub fn history(&self, dir: &SweepDir) -> Result<Vec<MetricBlock>> {
        let p = dir.run_dir(&self.run.id).join("metrics.csv");
        if !Path::new(&p).exists() {
            return Ok(Vec::new());
        }
        crate::run::read_metrics(&p)
    }
}

/// Every planned run of the sweep, in plan order.
pub fn load_all(dir: &SweepDir) -> Result<Vec<RunRecord>> {
    let plan = dir.read_plan()?;
    plan.runs.iter().map(|r| RunRecord::load(dir, r)).collect()
}
