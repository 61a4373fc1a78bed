//! The comparative generalization bound (spec §1.10, Proposition 1), estimated from a sweep
//! planned with a `[bound]` section:
//!
//! * K clean networks on S1: D̄ = mean ε-effective depth on S1, test error = mean over them;
//! * for each p, K' networks on S1 ∪ S̃2 (exactly ⌊p·m⌋ wrong labels in S2): their effective
//!   depths estimate d_min; first term = fraction j with D̄ ≥ d_min,j;
//! * bound(p) = first term + (1+α)·p (the δ terms are not estimated, as in the paper).
//!
//! Not separable counts as L (spec §1.5) and is reported. Taking the smallest bound over the p
//! grid is our extension (it costs a union bound in theory) and is marked as such.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::Serialize;

use super::plan::{value_text, Role, SweepDir};
use super::record::{load_all, RunRecord};
use super::{distinct, mean, min_max};

#[derive(Clone, Debug, Serialize)]
pub struct BoundRow {
    /// The axis values this row is for (empty without axes), e.g. "depth=8".
    pub group: String,
    pub p: f64,
    pub alpha: f64,
    pub eps: f64,
    /// Clean networks done / planned, their mean effective depth D̄ and how many were not separable.
    pub clean_done: usize,
    pub clean_planned: usize,
    pub clean_mean_depth: f64,
    pub clean_not_separable: usize,
    /// Mean (and min, max) test error of the clean networks: what the bound bounds.
    pub test_error: f64,
    pub test_error_min: f64,
    pub test_error_max: f64,
    pub noisy_done: usize,
    pub noisy_planned: usize,
    /// Effective depths of the noisy networks (d_min estimates), in draw order.
    pub noisy_depths: Vec<usize>,
    pub noisy_not_separable: usize,
    /// Mean train accuracy of the noisy networks on their (corrupted) labels.
    pub noisy_train_acc: f64,
    pub first_term: f64,
    pub bound: f64,
    /// Bound ≥ measured test error (the claim to check).
    pub holds: bool,
    /// This row is the smallest bound of its group (our extension; union bound not applied).
    pub best: bool,
}

fn group_key(r: &RunRecord) -> String {
    r.run.values.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(" ")
}

/// Bound rows for every group and p. Runs that are not done are left out and counted.
pub fn compute(dir: &SweepDir) -> Result<Vec<BoundRow>> {
    let plan = dir.read_plan()?;
    let Some(spec) = plan.bound.clone() else {
        bail!(
            "{}: this sweep has no [bound] section; plan one with a [bound] section to estimate the bound",
            dir.0.display()
        );
    };
    let recs = load_all(dir)?;
    let groups = distinct(recs.iter().map(group_key));
    let mut rows = Vec::new();
    for g in &groups {
        let in_group: Vec<&RunRecord> = recs.iter().filter(|r| &group_key(r) == g).collect();
        let clean: Vec<&RunRecord> =
            in_group.iter().copied().filter(|r| matches!(r.run.role, Role::Clean { .. })).collect();
        let clean_done: Vec<&RunRecord> = clean.iter().copied().filter(|r| r.done()).collect();
        if clean_done.is_empty() {
            continue;
        }
        let depths: Vec<(usize, bool)> = clean_done.iter().filter_map(|r| r.depth_at(spec.eps)).collect();
        let dbar = mean(&depths.iter().map(|d| d.0 as f64).collect::<Vec<_>>());
        let errs: Vec<f64> = clean_done.iter().map(|r| 1.0 - r.test_acc).collect();
        let test_error = mean(&errs);
        let mut group_rows = Vec::new();
        for &p in &spec.p {
            let noisy: Vec<&RunRecord> = in_group
                .iter()
                .copied()
                .filter(|r| matches!(r.run.role, Role::Noisy { p: q, .. } if (q - p).abs() < 1e-12))
                .collect();
            let done: Vec<&RunRecord> = noisy.iter().copied().filter(|r| r.done()).collect();
            if done.is_empty() {
                continue;
            }
            let nd: Vec<(usize, bool)> = done.iter().filter_map(|r| r.depth_at(spec.eps)).collect();
            let first_term = nd.iter().filter(|(d, _)| dbar >= *d as f64).count() as f64 / nd.len() as f64;
            let bound = first_term + (1.0 + spec.alpha) * p;
            group_rows.push(BoundRow {
                group: g.clone(),
                p,
                alpha: spec.alpha,
                eps: spec.eps,
                clean_done: clean_done.len(),
                clean_planned: clean.len(),
                clean_mean_depth: dbar,
                clean_not_separable: depths.iter().filter(|d| d.1).count(),
                test_error,
                test_error_min: min_max(errs.iter().copied()).0,
                test_error_max: min_max(errs.iter().copied()).1,
                noisy_done: done.len(),
                noisy_planned: noisy.len(),
                noisy_depths: nd.iter().map(|d| d.0).collect(),
                noisy_not_separable: nd.iter().filter(|d| d.1).count(),
                noisy_train_acc: mean(&done.iter().map(|r| r.train_acc).collect::<Vec<_>>()),
                first_term,
                bound,
                holds: bound >= test_error,
                best: false,
            });
        }
        if let Some(b) =
            group_rows.iter_mut().min_by(|a, b| a.bound.partial_cmp(&b.bound).unwrap_or(std::cmp::Ordering::Equal))
        {
            b.best = true;
        }
        rows.extend(group_rows);
    }
    Ok(rows)
}

/// The bound table in Markdown (the paper's Tab. 1 columns plus the counts behind them).
pub fn markdown(rows: &[BoundRow]) -> String {
    let mut s = String::from(
        "| group | test error (mean, min–max) | p | α | ε | clean D̄ (K) | noisy d_min per draw (K') | noisy train acc | first term | bound | bound ≥ test error |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let depths: Vec<String> = r.noisy_depths.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            s,
            "| {} | {:.4} ({:.4}–{:.4}) | {} | {} | {} | {:.2} ({}/{}{}) | {} ({}/{}{}) | {:.4} | {:.3} | {}{:.4}{} | {} |",
            if r.group.is_empty() { "all" } else { &r.group },
            r.test_error,
            r.test_error_min,
            r.test_error_max,
            r.p,
            r.alpha,
            r.eps,
            r.clean_mean_depth,
            r.clean_done,
            r.clean_planned,
            if r.clean_not_separable > 0 { format!(", {} not separable", r.clean_not_separable) } else { String::new() },
            depths.join(", "),
            r.noisy_done,
            r.noisy_planned,
            if r.noisy_not_separable > 0 { format!(", {} not separable", r.noisy_not_separable) } else { String::new() },
            r.noisy_train_acc,
            r.first_term,
            if r.best { "**" } else { "" },
            r.bound,
            if r.best { "**" } else { "" },
            if r.holds { "yes" } else { "NO" },
        );
    }
    s
}

/// bound.csv: one row per group and p.
pub fn csv(rows: &[BoundRow]) -> String {
    let mut s = String::from("group,p,alpha,eps,clean_done,clean_planned,clean_mean_depth,clean_not_separable,test_error,test_error_min,test_error_max,noisy_done,noisy_planned,noisy_depths,noisy_not_separable,noisy_train_acc,first_term,bound,holds,best\n");
    for r in rows {
        let depths: Vec<String> = r.noisy_depths.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            s,
            "\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},\"{}\",{},{},{},{},{},{}",
            r.group,
            r.p,
            r.alpha,
            r.eps,
            r.clean_done,
            r.clean_planned,
            r.clean_mean_depth,
            r.clean_not_separable,
            r.test_error,
            r.test_error_min,
            r.test_error_max,
            r.noisy_done,
            r.noisy_planned,
            depths.join(" "),
            r.noisy_not_separable,
            r.noisy_train_acc,
            r.first_term,
            r.bound,
            r.holds,
            r.best
        );
    }
    s
}
