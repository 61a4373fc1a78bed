//! The comparative generalization bound (docs/method.md, "The comparative bound"), all of it:
//! the `[bound]` section of a sweep file, the run families it plans (K clean networks on S1;
//! for each p, K' networks on S1 ∪ S̃2 with exactly ⌊p·m⌋ wrong labels in S2), the balanced halves
//! S1, S2 of the train split, the estimate from the finished runs, its tables and the check of
//! the paper's claim.
//!
//! * D̄ = mean ε-effective depth of the clean networks on S1; test error = their mean;
//! * first term(p) = fraction of noisy networks j with D̄ ≥ d_min,j (their effective depths
//!   estimate the minimal depth);
//! * bound(p) = first term + (1+α)·p (the δ terms are not estimated, as in the paper).
//!
//! Not separable counts as L and is reported. Taking the smallest bound over the p grid is our
//! extension (it costs a union bound in theory) and is marked as such.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use depthprobe_config::{set_key, Config};
use serde::Serialize;

pub use depthprobe_sweep::{BoundSpec, Role};

use crate::stats::{distinct, interval_of, mean, min_max, Interval, Verdict};

/// Refuse a `[bound]` section that cannot give an estimate, naming the value.
pub fn validate(b: &BoundSpec, base: &Config, axes: &[String], origin: &str) -> Result<()> {
    let bad = |m: String| -> Result<()> { bail!("{origin}: [bound] {m}") };
    if b.clean_seeds < 1 || b.noisy_draws < 1 {
        bad(format!("clean_seeds = {} and noisy_draws = {} must both be ≥ 1", b.clean_seeds, b.noisy_draws))?;
    }
    if b.p.is_empty() || !b.p.iter().all(|p| *p > 0.0 && *p < 0.5) {
        bad(format!("p = {:?}: need at least one value, each in (0, 0.5) (Proposition 1)", b.p))?;
    }
    if !(b.alpha > 0.0 && b.alpha < 1.0) {
        bad(format!("alpha = {}: must be in (0, 1)", b.alpha))?;
    }
    if !base.probe.eps.iter().any(|e| (e - b.eps).abs() < 1e-12) {
        bad(format!("eps = {} is not among probe.eps = {:?}; add it there", b.eps, base.probe.eps))?;
    }
    for k in ["train.seed", "corruption.p", "corruption.seed", "corruption.mode", "data.bound_split"] {
        if axes.iter().any(|a| a == k) {
            bad(format!("'{k}' is set by the bound itself and cannot be an axis"))?;
        }
    }
    Ok(())
}

/// The bound's settings for one run: clean runs train on S1; noisy runs on S1 ∪ S̃2 with exactly
/// ⌊p·m⌋ wrong labels in S2. Returns the label the run's id gets.
pub fn apply_role(t: &mut toml::Table, role: &Role, base: &Config) -> Result<Option<String>> {
    let seed0 = base.train.seed as i64;
    Ok(match *role {
        Role::Grid => None,
        Role::Clean { seed } => {
            set_key(t, "data.bound_split", "s1".into())?;
            set_key(t, "corruption.p", 0.0.into())?;
            set_key(t, "train.seed", (seed0 + seed as i64).into())?;
            Some(format!("clean-seed{seed}"))
        }
        Role::Noisy { p, draw } => {
            set_key(t, "data.bound_split", "s1_s2".into())?;
            set_key(t, "corruption.p", p.into())?;
            set_key(t, "corruption.mode", "exact".into())?;
            set_key(t, "corruption.seed", (base.corruption.seed as i64 + draw as i64).into())?;
            set_key(t, "train.seed", (seed0 + draw as i64).into())?;
            Some(format!("p{p}-draw{draw}"))
        }
    })
}

/// What the estimate needs of one planned run.
#[derive(Clone, Debug)]
pub struct BoundRun {
    /// The axis values it shares with its group, e.g. "model.depth=8" (empty without axes).
    pub group: String,
    pub role: Role,
    pub done: bool,
    /// Its ε-effective depth, "not separable" counted as L (the flag says so).
    pub depth: Option<(usize, bool)>,
    pub train_acc: f64,
    pub test_acc: f64,
}

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
    /// The samples behind the row, for its bootstrap intervals: each clean run's (effective
    /// depth, test error), not separable counted as L.
    #[serde(skip)]
    pub clean_runs: Vec<(f64, f64)>,
    /// This row is the smallest bound of its group (our extension; union bound not applied).
    pub best: bool,
}

/// Bound rows for every group and p, from the runs' effective depths at `spec.eps`. Runs that
/// are not done are left out and counted.
pub fn compute(spec: &BoundSpec, runs: &[BoundRun]) -> Vec<BoundRow> {
    let groups = distinct(runs.iter().map(|r| r.group.clone()));
    let mut rows = Vec::new();
    for g in &groups {
        let in_group: Vec<&BoundRun> = runs.iter().filter(|r| &r.group == g).collect();
        let clean: Vec<&BoundRun> = in_group.iter().copied().filter(|r| matches!(r.role, Role::Clean { .. })).collect();
        let clean_done: Vec<&BoundRun> = clean.iter().copied().filter(|r| r.done).collect();
        if clean_done.is_empty() {
            continue;
        }
        let depths: Vec<(usize, bool)> = clean_done.iter().filter_map(|r| r.depth).collect();
        let dbar = mean(&depths.iter().map(|d| d.0 as f64).collect::<Vec<_>>());
        let errs: Vec<f64> = clean_done.iter().map(|r| 1.0 - r.test_acc).collect();
        let test_error = mean(&errs);
        let mut group_rows = Vec::new();
        for &p in &spec.p {
            let noisy: Vec<&BoundRun> = in_group
                .iter()
                .copied()
                .filter(|r| matches!(r.role, Role::Noisy { p: q, .. } if (q - p).abs() < 1e-12))
                .collect();
            let done: Vec<&BoundRun> = noisy.iter().copied().filter(|r| r.done).collect();
            if done.is_empty() {
                continue;
            }
            let nd: Vec<(usize, bool)> = done.iter().filter_map(|r| r.depth).collect();
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
                clean_runs: clean_done.iter().filter_map(|r| r.depth.map(|d| (d.0 as f64, 1.0 - r.test_acc))).collect(),
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
    rows
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

/// Check (c): the bound is < 1 and ≥ the measured test error, at every p of the grid (each p
/// is its own estimate of Proposition 1; the smallest over the grid is reported alongside).
/// One row's claims, bound < 1 and bound ≥ the clean networks' test error, judged on bootstrap
/// intervals: clean runs are resampled as (depth, test error) pairs, the noisy draws at p on their
/// own. Returns the verdict and the intervals of the bound and of the test error.
fn judge(r: &BoundRow) -> (Verdict, Interval, Interval, String) {
    let mut rng = crate::stats::bootstrap_rng();
    let noisy: Vec<f64> = r.noisy_depths.iter().map(|&d| d as f64).collect();
    let stat = |clean: &[(f64, f64)], noisy: &[f64]| -> (f64, f64) {
        let dbar = mean(&clean.iter().map(|c| c.0).collect::<Vec<_>>());
        let err = mean(&clean.iter().map(|c| c.1).collect::<Vec<_>>());
        let first = noisy.iter().filter(|&&d| dbar >= d).count() as f64 / noisy.len().max(1) as f64;
        (first + (1.0 + r.alpha) * r.p, err)
    };
    let (mut bounds, mut errs, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..crate::stats::BOOTSTRAP_RESAMPLES {
        let c: Vec<(f64, f64)> =
            (0..r.clean_runs.len()).map(|_| r.clean_runs[rng.below(r.clean_runs.len() as u64) as usize]).collect();
        let n: Vec<f64> = (0..noisy.len()).map(|_| noisy[rng.below(noisy.len() as u64) as usize]).collect();
        let (b, e) = stat(&c, &n);
        bounds.push(b);
        errs.push(e);
        gaps.push(e - b);
    }
    let (b0, e0) = stat(&r.clean_runs, &noisy);
    let (bi, ei, gi) = (interval_of(b0, bounds), interval_of(e0, errs), interval_of(e0 - b0, gaps));
    // Not vacuous (bound < 1), and not below the test error (test error − bound ≤ 0).
    let vacuity = Interval { value: b0, lo: bi.lo, hi: bi.hi };
    let v = Verdict::all([Verdict::at_most(&vacuity, 1.0 - 1e-12), Verdict::at_most(&gi, 0.0)]);
    // The power estimate of the part that is undecided, at the smaller of the two sample sizes.
    let n = r.clean_runs.len().min(noisy.len());
    let (iv, t) = if Verdict::at_most(&gi, 0.0) == Verdict::Inconclusive { (gi, 0.0) } else { (vacuity, 1.0 - 1e-12) };
    let power = match (v, crate::stats::seeds_to_decide(&iv, t, n)) {
        (Verdict::Inconclusive, Some(m)) => {
            format!(
                " (at the spread observed, about {m} clean networks and noisy draws each, now {n}, would decide it)"
            )
        }
        (Verdict::Inconclusive, None) => " (on the threshold: more runs at this spread would not decide it)".into(),
        _ => String::new(),
    };
    (v, bi, ei, power)
}

/// Check (e): the bound assumes the minimal depth d_min needed to fit partially corrupted labels
/// grows with p. Its estimates, the noisy networks' effective depths, must not fall between
/// consecutive p by more than the one layer a run may move (as check (b)), judged on bootstrap
/// intervals over the noisy draws; with each p's mean, spread and interval as a table.
pub fn check_dmin(rows: &[BoundRow]) -> Option<(String, Vec<(String, String)>)> {
    let groups = distinct(rows.iter().map(|r| r.group.as_str()));
    let (mut lines, mut tables) = (Vec::new(), Vec::new());
    for g in groups {
        let mut rs: Vec<&BoundRow> = rows.iter().filter(|r| r.group == g && !r.noisy_depths.is_empty()).collect();
        if rs.len() < 2 {
            continue;
        }
        rs.sort_by(|a, b| a.p.total_cmp(&b.p));
        let samples: Vec<Vec<f64>> = rs.iter().map(|r| r.noisy_depths.iter().map(|&d| d as f64).collect()).collect();
        let iv = crate::stats::bootstrap(&samples, crate::stats::max_drop);
        let tol = crate::report::NOISE_TOLERANCE;
        let v = Verdict::at_most(&iv, tol);
        let gname = if g.is_empty() { String::new() } else { format!(" ({g})") };
        let seq: Vec<String> = rs.iter().zip(&samples).map(|(r, s)| format!("p={}: {:.2}", r.p, mean(s))).collect();
        let draws = samples.iter().map(|s| s.len()).min().unwrap_or(0);
        lines.push(format!(
            "**(e) minimal depth against p{gname}: {}.** Mean d_min (effective depth of the networks fitted to partly corrupted labels) over the draws: {}; largest fall between consecutive p: {:.2} (95% interval [{:.2}, {:.2}]; the claim needs ≤ {tol}).{}",
            v.word(),
            seq.join(", "),
            iv.value,
            iv.lo,
            iv.hi,
            crate::stats::seeds_note(&iv, tol, draws).replace("seeds per group", "draws per p")
        ));
        let labels: Vec<String> = rs.iter().map(|r| format!("p={}", r.p)).collect();
        tables.push((format!("(e) d_min per p{gname} over noisy draws"), crate::stats::group_rows(&labels, &samples)));
    }
    (!lines.is_empty()).then(|| (lines.join("\n\n"), tables))
}

pub fn check(rows: &[BoundRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let groups = distinct(rows.iter().map(|r| r.group.as_str()));
    let mut lines = Vec::new();
    for g in groups {
        let rs: Vec<&BoundRow> = rows.iter().filter(|r| r.group == g).collect();
        let judged: Vec<(Verdict, Interval, Interval, String)> = rs.iter().map(|r| judge(r)).collect();
        let with = |v: Verdict| -> Vec<String> {
            rs.iter().zip(&judged).filter(|(_, j)| j.0 == v).map(|(r, _)| format!("p={}", r.p)).collect()
        };
        let (failing, unsure) = (with(Verdict::Fails), with(Verdict::Inconclusive));
        let verdict = if failing.is_empty() && unsure.is_empty() {
            "holds at every p".to_string()
        } else if failing.len() == rs.len() {
            "FAILS at every p".to_string()
        } else if unsure.len() == rs.len() {
            "inconclusive at every p".to_string()
        } else {
            let mut parts = Vec::new();
            if !failing.is_empty() {
                parts.push(format!("FAILS at {}", failing.join(", ")));
            }
            if !unsure.is_empty() {
                parts.push(format!("inconclusive at {}", unsure.join(", ")));
            }
            format!("{} (holds at the other p)", parts.join(", "))
        };
        let per_p: Vec<String> = rs
            .iter()
            .zip(&judged)
            .map(|(r, (v, b, e, power))| {
                format!(
                    "p={}: first term {:.3} + (1+α)p = {:.4} (95% interval [{:.4}, {:.4}]) against test error [{:.4}, {:.4}]: {}{}{}",
                    r.p,
                    r.first_term,
                    r.bound,
                    b.lo,
                    b.hi,
                    e.lo,
                    e.hi,
                    v.word(),
                    if *v == Verdict::Holds {
                        ""
                    } else if r.bound >= 1.0 {
                        " (vacuous)"
                    } else if r.bound < r.test_error {
                        " (below the test error)"
                    } else {
                        ""
                    },
                    power
                )
            })
            .collect();
        let best = rs.iter().find(|r| r.best).expect("one best row per group");
        lines.push(format!(
            "**(c) bound{}: {verdict}.** Measured test error of the clean networks {:.4}; {}. Smallest bound over the grid: {:.4} at p={} (α={}, ε={}).",
            if g.is_empty() { String::new() } else { format!(" ({g})") },
            best.test_error,
            per_p.join("; "),
            best.bound,
            best.p,
            best.alpha,
            best.eps
        ));
    }
    Some(lines.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: f64, clean: &[(f64, f64)], noisy: &[usize]) -> BoundRow {
        let dbar = mean(&clean.iter().map(|c| c.0).collect::<Vec<_>>());
        let first = noisy.iter().filter(|&&d| dbar >= d as f64).count() as f64 / noisy.len() as f64;
        let err = mean(&clean.iter().map(|c| c.1).collect::<Vec<_>>());
        let bound = first + 1.1 * p;
        BoundRow {
            group: String::new(),
            p,
            alpha: 0.1,
            eps: 0.01,
            clean_done: clean.len(),
            clean_planned: clean.len(),
            clean_mean_depth: dbar,
            clean_not_separable: 0,
            test_error: err,
            test_error_min: 0.0,
            test_error_max: 0.0,
            noisy_done: noisy.len(),
            noisy_planned: noisy.len(),
            noisy_depths: noisy.to_vec(),
            noisy_not_separable: 0,
            noisy_train_acc: 1.0,
            first_term: first,
            bound,
            holds: bound >= err,
            clean_runs: clean.to_vec(),
            best: false,
        }
    }

    /// d_min must not fall with p beyond one layer: rising draws hold, a clear fall fails.
    #[test]
    fn dmin_check_follows_the_noisy_depths() {
        let clean = [(4.0, 0.08), (4.0, 0.09)];
        let rising = [row(0.05, &clean, &[5, 6, 5]), row(0.1, &clean, &[7, 8, 7]), row(0.2, &clean, &[9, 9, 10])];
        let (t, tables) = check_dmin(&rising).unwrap();
        assert!(
            t.contains("(e) minimal depth against p: holds") && tables[0].1.contains("| p=0.1 | 3 | 7.333 |"),
            "{t}"
        );
        let falling = [row(0.05, &clean, &[9, 9, 9]), row(0.1, &clean, &[5, 6, 5])];
        assert!(check_dmin(&falling).unwrap().0.contains(": FAILS"));
        assert!(check_dmin(&rising[..1]).is_none(), "one p is no trend");
    }

    /// The bound's verdict follows the intervals: clearly above the test error holds, clearly
    /// below fails, a test error whose interval reaches across the bound is inconclusive, and a
    /// first term that some resamples push to 1 makes the bound possibly vacuous.
    #[test]
    fn bound_verdicts_follow_their_intervals() {
        let clean = [(4.0, 0.08), (4.0, 0.09), (4.0, 0.085)];
        assert_eq!(judge(&row(0.2, &clean, &[8, 9, 9])).0, Verdict::Holds);
        assert_eq!(judge(&row(0.05, &clean, &[8, 9, 9])).0, Verdict::Fails);
        let spread = [(4.0, 0.03), (4.0, 0.05), (4.0, 0.09), (4.0, 0.11)];
        let (v, b, e, power) = judge(&row(0.06, &spread, &[8, 9, 9]));
        assert!(power.contains("clean networks and noisy draws each"), "{power}");
        assert!(v == Verdict::Inconclusive && e.lo < b.value && e.hi > b.value, "{v:?} {b:?} {e:?}");
        // Noisy depths at or below D̄ half the time: resamples put the first term near 1.
        let (v, b, _, _) = judge(&row(0.4, &[(5.0, 0.1), (5.0, 0.1)], &[4, 9, 5, 9]));
        assert!(v == Verdict::Inconclusive && b.hi >= 1.0, "{v:?} {b:?}");
    }
}
