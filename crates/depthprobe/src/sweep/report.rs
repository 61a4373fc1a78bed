//! `depthprobe report DIR`: every run of a sweep in one table (results.csv, results.parquet,
//! layers.csv) and the paper's figures for whichever axes the sweep varies:
//!
//! * model.depth → per-layer NCC train accuracy against epoch, one panel per depth (Fig. 1),
//!   and final per-layer NCC accuracy / log-CDNV profiles across depths;
//! * corruption.p → effective depth against p, mean and min–max over seeds (Fig. 2);
//! * model.width → the same against width, and per-layer profiles across widths (App. Fig. 7);
//! * [bound] → the bound table against the measured test error (Tab. 1).
//!
//! The checks of the paper's claims are computed here from the numbers, pass or fail, and
//! written into the report as they come out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::bound::{self, BoundRow};
use super::plan::{value_text, Plan, Role, SweepDir};
use super::record::{load_all, RunRecord};
use super::{distinct, mean, min_max};
use crate::figures::{ramp_color, render_svg, svg_to_png, Panel, Series};
use crate::results::{write_all_atomic, MetricBlock};

/// Axes that only repeat a setting (averaged over, never a study axis).
const SEED_AXES: [&str; 2] = ["train.seed", "corruption.seed"];
/// The main ε for checks and the effective-depth plots (the paper's strict reading).
const EPS_MAIN: f64 = 0.01;

fn axis_value(r: &RunRecord, key: &str) -> Option<f64> {
    r.run.values.iter().find(|(k, _)| k == key).and_then(|(_, v)| match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    })
}

/// The label of a run's group for a study axis: the other non-seed axes' values.
fn group_of(r: &RunRecord, study: &str) -> String {
    r.run
        .values
        .iter()
        .filter(|(k, _)| k != study && !SEED_AXES.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt(v: f64, d: usize) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.d$}")
    }
}

/// One figure of the report: its stem, caption and SVG.
struct Figure {
    stem: String,
    caption: String,
    svg: String,
}

/// Per (group, x) statistics of the effective depth and train accuracy over seeds.
struct AxisPoint {
    x: f64,
    depths: Vec<f64>,
    not_separable: usize,
    train_acc: Vec<f64>,
    test_acc: Vec<f64>,
}

fn axis_study(recs: &[&RunRecord], study: &str, eps: f64) -> BTreeMap<String, Vec<AxisPoint>> {
    let mut out: BTreeMap<String, Vec<AxisPoint>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done()) {
        let Some(x) = axis_value(r, study) else { continue };
        let pts = out.entry(group_of(r, study)).or_default();
        let i = match pts.iter().position(|p| p.x == x) {
            Some(i) => i,
            None => {
                pts.push(AxisPoint { x, depths: vec![], not_separable: 0, train_acc: vec![], test_acc: vec![] });
                pts.len() - 1
            }
        };
        if let Some((d, ns)) = r.depth_at(eps) {
            pts[i].depths.push(d as f64);
            pts[i].not_separable += ns as usize;
        }
        pts[i].train_acc.push(r.train_acc);
        pts[i].test_acc.push(r.test_acc);
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    out
}

/// Effective depth (mean, min, max over seeds) and train accuracy against a study axis.
fn axis_figure(recs: &[&RunRecord], study: &str, label: &str, stem: &str) -> Option<(Figure, String)> {
    let groups = axis_study(recs, study, EPS_MAIN);
    if groups.is_empty() {
        return None;
    }
    let n = groups.len();
    let mut dser = Vec::new();
    let mut aser = Vec::new();
    let mut table = format!(
        "| group | {label} | runs | ε={EPS_MAIN} effective depth: mean (min–max) | not separable | train acc (min) | test acc (mean) |\n|---|---|---|---|---|---|---|\n"
    );
    for (gi, (g, pts)) in groups.iter().enumerate() {
        let c = ramp_color(gi, n);
        let name = if g.is_empty() { String::new() } else { format!(" {g}") };
        let stat = |f: &dyn Fn(&AxisPoint) -> f64| pts.iter().map(|p| (p.x, f(p))).collect::<Vec<_>>();
        dser.push(Series {
            name: format!("mean{name}"),
            points: stat(&|p| mean(&p.depths)),
            color: c.clone(),
            dashed: false,
        });
        dser.push(Series {
            name: format!("min/max{name}"),
            points: stat(&|p| min_max(p.depths.iter().copied()).0),
            color: c.clone(),
            dashed: true,
        });
        dser.push(Series {
            name: String::new(),
            points: stat(&|p| min_max(p.depths.iter().copied()).1),
            color: c.clone(),
            dashed: true,
        });
        aser.push(Series {
            name: format!("train{name}"),
            points: stat(&|p| mean(&p.train_acc)),
            color: c.clone(),
            dashed: false,
        });
        aser.push(Series { name: format!("test{name}"), points: stat(&|p| mean(&p.test_acc)), color: c, dashed: true });
        for p in pts {
            let (lo, hi) = min_max(p.depths.iter().copied());
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} ({}–{}) | {} | {} | {} |",
                if g.is_empty() { "all" } else { g },
                p.x,
                p.train_acc.len(),
                fmt(mean(&p.depths), 2),
                lo,
                hi,
                p.not_separable,
                fmt(min_max(p.train_acc.iter().copied()).0, 4),
                fmt(mean(&p.test_acc), 4)
            );
        }
    }
    let panels = [
        Panel {
            title: format!("ε={EPS_MAIN} effective depth vs {label}"),
            x_label: label.into(),
            y_label: "effective depth (layer)".into(),
            series: dser,
            y_range: None,
            integer_x: false,
        },
        Panel {
            title: format!("network accuracy vs {label}"),
            x_label: label.into(),
            y_label: "accuracy".into(),
            series: aser,
            y_range: None,
            integer_x: false,
        },
    ];
    let svg = render_svg(&format!("Effective depth against {label} (not separable counts as L)"), &panels, 2);
    Some((
        Figure {
            stem: stem.into(),
            caption: format!("ε={EPS_MAIN} effective depth against {label}: mean over seeds (solid) and min/max (dashed); right: network train (solid) and test (dashed) accuracy."),
            svg,
        },
        table,
    ))
}

/// Fig. 1: per-layer NCC train accuracy against epoch, one panel per depth (first seed).
fn depth_epoch_figure(dir: &SweepDir, recs: &[&RunRecord]) -> Result<Option<Figure>> {
    let mut by_depth: BTreeMap<usize, &RunRecord> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && r.config.corruption.p == 0.0) {
        by_depth.entry(r.config.model.depth).or_insert(r);
    }
    if by_depth.len() < 2 {
        return Ok(None);
    }
    let mut panels = Vec::new();
    for (&l, r) in &by_depth {
        let h = r.history(dir)?;
        let ep = |b: &MetricBlock| b.epoch.unwrap_or(0) as f64;
        let mut series: Vec<Series> = (1..=l)
            .map(|i| Series {
                name: if l <= 12 || i == 1 || i == l { format!("layer {i}") } else { String::new() },
                points: h.iter().map(|b| (ep(b), b.value(Some(i), "train", "ncc_acc"))).collect(),
                color: ramp_color(i - 1, l),
                dashed: false,
            })
            .collect();
        series.push(Series {
            name: "net train acc".into(),
            points: h.iter().map(|b| (ep(b), b.value(None, "train", "acc"))).collect(),
            color: "#000000".into(),
            dashed: true,
        });
        panels.push(Panel {
            title: format!("{} ({})", r.config.model.name(), r.run.id),
            x_label: "epoch".into(),
            y_label: "NCC train accuracy".into(),
            series,
            y_range: Some((0.0, 1.0)),
            integer_x: true,
        });
    }
    let svg = render_svg("Intermediate NCC separability (per-layer NCC train accuracy vs epoch)", &panels, 3);
    Ok(Some(Figure {
        stem: "ncc_by_epoch_per_depth".into(),
        caption: "Per-layer NCC train accuracy against epoch, one panel per depth (the first seed of each depth; the paper's Fig. 1). Dashed: the network's train accuracy.".into(),
        svg,
    }))
}

/// Final per-layer NCC accuracy and log10 CDNV, one line per value of `study` (mean over seeds).
fn profile_figure(recs: &[&RunRecord], study: &str, label: &str, stem: &str) -> Option<Figure> {
    let mut groups: BTreeMap<String, (f64, Vec<&RunRecord>)> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && !r.layers.is_empty()) {
        let Some(x) = axis_value(r, study) else { continue };
        let key = format!("{} {label}={x}", group_of(r, study));
        groups.entry(format!("{:020.6}{key}", x)).or_insert((x, Vec::new())).1.push(r);
    }
    if groups.len() < 2 {
        return None;
    }
    let n = groups.len();
    let mut panels: Vec<Panel> = [("train", "ncc"), ("test", "ncc"), ("train", "cdnv"), ("test", "cdnv")]
        .iter()
        .map(|(split, m)| Panel {
            title: format!("{} {split}", if *m == "ncc" { "NCC accuracy" } else { "CDNV" }),
            x_label: "layer".into(),
            y_label: if *m == "ncc" { "accuracy".into() } else { "log10 CDNV".into() },
            series: Vec::new(),
            y_range: if *m == "ncc" { Some((0.0, 1.0)) } else { None },
            integer_x: true,
        })
        .collect();
    for (gi, (key, (x, rs))) in groups.iter().enumerate() {
        let name = key[20..].trim().to_string();
        let _ = x;
        let layers = rs.iter().map(|r| r.layers.len()).max().unwrap_or(0);
        let per_layer = |f: &dyn Fn(&super::record::LayerFinal) -> f64| -> Vec<(f64, f64)> {
            (0..layers)
                .map(|i| {
                    let v: Vec<f64> =
                        rs.iter().filter_map(|r| r.layers.get(i)).map(f).filter(|v| v.is_finite()).collect();
                    ((i + 1) as f64, mean(&v))
                })
                .collect()
        };
        let log = |v: f64| if v > 0.0 && v.is_finite() { v.log10() } else { f64::NAN };
        let pts = [
            per_layer(&|l| l.ncc_train_acc),
            per_layer(&|l| l.ncc_test_acc),
            per_layer(&|l| log(l.cdnv_train)),
            per_layer(&|l| log(l.cdnv_test)),
        ];
        for (p, points) in panels.iter_mut().zip(pts) {
            p.series.push(Series { name: name.clone(), points, color: ramp_color(gi, n), dashed: false });
        }
    }
    let svg = render_svg(&format!("Final per-layer profiles across {label} (mean over seeds)"), &panels, 2);
    Some(Figure {
        stem: stem.into(),
        caption: format!(
            "Final per-layer NCC accuracy and log10 CDNV (train and test), one line per {label}, mean over seeds."
        ),
        svg,
    })
}

fn bound_figure(rows: &[BoundRow]) -> Option<Figure> {
    if rows.is_empty() {
        return None;
    }
    let groups = distinct(rows.iter().map(|r| r.group.as_str()));
    let n = groups.len();
    let mut series = Vec::new();
    let mut depth_series = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let rs: Vec<&BoundRow> = rows.iter().filter(|r| r.group == *g).collect();
        let c = ramp_color(gi, n);
        let name = if g.is_empty() { String::new() } else { format!(" {g}") };
        let spread = |r: &BoundRow| min_max(r.noisy_depths.iter().map(|&d| d as f64));
        depth_series.push(Series {
            name: format!("clean D̄{name}"),
            points: rs.iter().map(|r| (r.p, r.clean_mean_depth)).collect(),
            color: "#1f77b4".into(),
            dashed: true,
        });
        depth_series.push(Series {
            name: format!("noisy d_min mean{name}"),
            points: rs
                .iter()
                .map(|r| (r.p, r.noisy_depths.iter().sum::<usize>() as f64 / r.noisy_depths.len() as f64))
                .collect(),
            color: c.clone(),
            dashed: false,
        });
        depth_series.push(Series {
            name: format!("min/max{name}"),
            points: rs.iter().map(|r| (r.p, spread(r).0)).collect(),
            color: c.clone(),
            dashed: true,
        });
        depth_series.push(Series {
            name: String::new(),
            points: rs.iter().map(|r| (r.p, spread(r).1)).collect(),
            color: c.clone(),
            dashed: true,
        });
        series.push(Series {
            name: format!("bound{name}"),
            points: rs.iter().map(|r| (r.p, r.bound)).collect(),
            color: c.clone(),
            dashed: false,
        });
        series.push(Series {
            name: format!("first term{name}"),
            points: rs.iter().map(|r| (r.p, r.first_term)).collect(),
            color: c.clone(),
            dashed: true,
        });
        series.push(Series {
            name: format!("test error{name}"),
            points: rs.iter().map(|r| (r.p, r.test_error)).collect(),
            color: "#d62728".into(),
            dashed: true,
        });
    }
    let panel = Panel {
        title: "bound vs p".into(),
        x_label: "p (corrupted fraction of S2)".into(),
        y_label: "error".into(),
        series,
        y_range: Some((0.0, 1.0)),
        integer_x: false,
    };
    let depths = Panel {
        title: "effective depths behind the first term".into(),
        x_label: "p (corrupted fraction of S2)".into(),
        y_label: "ε effective depth (layer)".into(),
        series: depth_series,
        y_range: None,
        integer_x: false,
    };
    Some(Figure {
        stem: "bound".into(),
        caption: "Left: the comparative bound first term + (1+α)p against p, its first term (dashed) and the clean networks' measured test error (red, dashed). Right: the clean networks' mean effective depth D̄ on S1 and the noisy networks' effective depths on S1 ∪ S̃2 (the d_min estimates; the first term counts those ≤ D̄).".into(),
        svg: render_svg("Comparative generalization bound (Proposition 1)", &[panel, depths], 2),
    })
}

/// Check (a): for every L at or above the smallest L whose runs all separate, the ε effective
/// depth of every run stays within ±1 layer of a common value (max − min ≤ 2).
fn check_depth(recs: &[&RunRecord], eps: f64, label: &str) -> Option<String> {
    let mut by_l: BTreeMap<usize, Vec<Option<usize>>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && r.config.corruption.p == 0.0) {
        let d = r.effective_depth.iter().find(|(e, _)| (e - eps).abs() < 1e-12).and_then(|x| x.1);
        by_l.entry(r.config.model.depth).or_default().push(d);
    }
    if by_l.len() < 2 {
        return None;
    }
    let l0 = by_l.iter().find(|(_, ds)| ds.iter().all(|d| d.is_some())).map(|(l, _)| *l);
    let Some(l0) = l0 else {
        return Some(format!(
            "**({label}) depth sweep at ε={eps}: FAILS.** No depth separates the training data at ε={eps} in every seed."
        ));
    };
    let above: Vec<(usize, Vec<Option<usize>>)> =
        by_l.iter().filter(|(l, _)| **l >= l0).map(|(l, d)| (*l, d.clone())).collect();
    let all: Vec<usize> = above.iter().flat_map(|(_, d)| d.iter().map(|x| x.unwrap_or(usize::MAX))).collect();
    let (lo, hi) = (*all.iter().min().unwrap(), *all.iter().max().unwrap());
    let detail: Vec<String> = above
        .iter()
        .map(|(l, d)| {
            let v: Vec<String> =
                d.iter().map(|x| x.map(|x| x.to_string()).unwrap_or_else(|| "not separable".into())).collect();
            format!("L={l}: {}", v.join(", "))
        })
        .collect();
    let ok = hi != usize::MAX && hi - lo <= 2;
    Some(format!(
        "**({label}) depth sweep at ε={eps}: {}.** Smallest depth whose runs all separate at ε={eps}: L₀={l0}. Effective depths for L ≥ L₀ range over {}–{} (need max − min ≤ 2, i.e. within ±1 layer): {}.",
        if ok { "holds" } else { "FAILS" },
        lo,
        if hi == usize::MAX { "not separable".to_string() } else { hi.to_string() },
        detail.join("; ")
    ))
}

/// Check (b): mean effective depth over seeds non-decreasing in p, train accuracy ≥ 0.99.
fn check_noise(recs: &[&RunRecord], eps: f64, label: &str) -> Option<String> {
    let groups = axis_study(recs, "corruption.p", eps);
    if groups.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    for (g, pts) in &groups {
        let means: Vec<f64> = pts.iter().map(|p| mean(&p.depths)).collect();
        let mono = means.windows(2).all(|w| w[1] >= w[0] - 1e-12);
        let min_train = min_max(pts.iter().flat_map(|p| p.train_acc.iter().copied())).0;
        let seeds = pts.iter().map(|p| p.depths.len()).min().unwrap_or(0);
        let ok = mono && min_train >= 0.99 && seeds >= 3;
        let seq: Vec<String> = pts.iter().zip(&means).map(|(p, m)| format!("p={}: {:.2}", p.x, m)).collect();
        lines.push(format!(
            "**({label}) noise sweep at ε={eps}{}: {}.** Mean ε={eps} effective depth over ≥{seeds} seeds: {} ({}); lowest network train accuracy (on the corrupted labels) {:.4} (need ≥ 0.99){}.",
            if g.is_empty() { String::new() } else { format!(" ({g})") },
            if ok { "holds" } else { "FAILS" },
            seq.join(", "),
            if mono { "non-decreasing" } else { "NOT non-decreasing" },
            min_train,
            if seeds < 3 { "; fewer than 3 seeds" } else { "" }
        ));
    }
    Some(lines.join("\n\n"))
}

/// Check (c): the bound is < 1 and ≥ the measured test error, at every p of the grid (each p
/// is its own estimate of Proposition 1; the smallest over the grid is reported alongside).
fn check_bound(rows: &[BoundRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let groups = distinct(rows.iter().map(|r| r.group.as_str()));
    let mut lines = Vec::new();
    for g in groups {
        let rs: Vec<&BoundRow> = rows.iter().filter(|r| r.group == g).collect();
        let holds = |r: &BoundRow| r.bound < 1.0 && r.bound >= r.test_error;
        let failing: Vec<String> = rs.iter().filter(|r| !holds(r)).map(|r| format!("p={}", r.p)).collect();
        let verdict = if failing.is_empty() {
            "holds at every p".to_string()
        } else if failing.len() == rs.len() {
            "FAILS at every p".to_string()
        } else {
            format!("FAILS at {} (holds at the other p)", failing.join(", "))
        };
        let per_p: Vec<String> = rs
            .iter()
            .map(|r| {
                format!(
                    "p={}: first term {:.3} + (1+α)p = {:.4}{}",
                    r.p,
                    r.first_term,
                    r.bound,
                    if holds(r) {
                        ""
                    } else if r.bound >= 1.0 {
                        " (vacuous)"
                    } else {
                        " (below the test error)"
                    }
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

/// Check (d), spec §5 item 8: per layer, CDNV (train, test) non-increasing and NCC accuracy
/// (train, test) non-decreasing in width, on the mean over seeds. Counted over layers × curves.
fn check_width(recs: &[&RunRecord]) -> Option<String> {
    let mut by_h: BTreeMap<usize, Vec<&RunRecord>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && !r.layers.is_empty()) {
        by_h.entry(r.config.model.width).or_default().push(r);
    }
    if by_h.len() < 2 {
        return None;
    }
    let layers = by_h.values().flat_map(|rs| rs.iter().map(|r| r.layers.len())).min().unwrap_or(0);
    type Get = fn(&super::record::LayerFinal) -> f64;
    let curves: [(&str, Get, bool); 4] = [
        ("CDNV train", |l| l.cdnv_train, false),
        ("CDNV test", |l| l.cdnv_test, false),
        ("NCC train", |l| l.ncc_train_acc, true),
        ("NCC test", |l| l.ncc_test_acc, true),
    ];
    let mut lines = Vec::new();
    let mut all_ok = true;
    for (name, get, rising) in curves {
        let mut ok_layers = Vec::new();
        for i in 0..layers {
            let means: Vec<f64> =
                by_h.values().map(|rs| mean(&rs.iter().map(|r| get(&r.layers[i])).collect::<Vec<_>>())).collect();
            let ok = means.windows(2).all(|w| if rising { w[1] >= w[0] } else { w[1] <= w[0] });
            if ok {
                ok_layers.push(i + 1);
            }
        }
        all_ok &= ok_layers.len() == layers;
        let top: Vec<String> = by_h
            .iter()
            .map(|(h, rs)| {
                format!("H={h}: {:.4}", mean(&rs.iter().map(|r| get(&r.layers[layers - 1])).collect::<Vec<_>>()))
            })
            .collect();
        lines.push(format!(
            "{name} monotone in H at {} of {layers} layers ({}); top layer {}",
            ok_layers.len(),
            if ok_layers.is_empty() {
                "none".to_string()
            } else {
                format!("layers {}", ok_layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", "))
            },
            top.join(", ")
        ));
    }
    Some(format!(
        "**(d) width: {}.** Per-layer means over seeds, required monotone at every layer (CDNV falling, NCC accuracy rising with H): {}.",
        if all_ok { "holds" } else { "does not hold at every layer" },
        lines.join("; ")
    ))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The per-run table, as columns (shared by results.csv and results.parquet).
pub fn run_table(plan: &Plan, recs: &[RunRecord]) -> Vec<(String, super::parquet::Column)> {
    use super::parquet::Column;
    let mut eps: Vec<f64> = recs.iter().flat_map(|r| r.config.probe.eps.iter().cloned()).collect();
    eps.sort_by(f64::total_cmp);
    eps.dedup();
    let f = |g: &dyn Fn(&RunRecord) -> f64| Column::F64(recs.iter().map(g).collect());
    let i = |g: &dyn Fn(&RunRecord) -> i64| Column::I64(recs.iter().map(g).collect());
    let s = |g: &dyn Fn(&RunRecord) -> String| Column::Str(recs.iter().map(g).collect());
    let mut cols: Vec<(String, Column)> = vec![
        ("index".into(), i(&|r| r.run.index as i64)),
        ("id".into(), s(&|r| r.run.id.clone())),
        (
            "role".into(),
            s(&|r| match r.run.role {
                Role::Grid => "grid".into(),
                Role::Clean { .. } => "bound_clean".into(),
                Role::Noisy { .. } => "bound_noisy".into(),
            }),
        ),
    ];
    for a in &plan.axes {
        let a2 = a.clone();
        cols.push((
            format!("axis:{a}"),
            s(&move |r| r.run.values.iter().find(|(k, _)| *k == a2).map(|(_, v)| value_text(v)).unwrap_or_default()),
        ));
    }
    cols.extend([
        ("status".into(), s(&|r| r.status.clone())),
        ("reason".into(), s(&|r| r.reason.clone().unwrap_or_default())),
        ("dataset".into(), s(&|r| r.config.data.dataset.clone())),
        ("model".into(), s(&|r| r.config.model.name())),
        ("depth".into(), i(&|r| r.config.model.depth as i64)),
        ("width".into(), i(&|r| r.config.model.width as i64)),
        ("train_seed".into(), i(&|r| r.config.train.seed as i64)),
        ("corruption_p".into(), f(&|r| r.config.corruption.p)),
        ("corruption_seed".into(), i(&|r| r.config.corruption.seed as i64)),
        ("bound_split".into(), s(&|r| format!("{:?}", r.config.data.bound_split).to_lowercase())),
        ("epochs".into(), i(&|r| r.config.train.epochs as i64)),
        ("train_acc".into(), f(&|r| r.train_acc)),
        ("test_acc".into(), f(&|r| r.test_acc)),
        ("top_ncc_train_acc".into(), f(&|r| r.layers.last().map(|l| l.ncc_train_acc).unwrap_or(f64::NAN))),
        ("top_ncc_test_acc".into(), f(&|r| r.layers.last().map(|l| l.ncc_test_acc).unwrap_or(f64::NAN))),
        ("top_cdnv_train".into(), f(&|r| r.layers.last().map(|l| l.cdnv_train).unwrap_or(f64::NAN))),
        ("wall_s".into(), f(&|r| r.wall_s)),
    ]);
    for e in eps {
        // -1: not separable (or not probed at this ε); the depth itself otherwise.
        cols.push((
            format!("effective_depth_{e}"),
            i(&move |r| match r.effective_depth.iter().find(|(x, _)| (x - e).abs() < 1e-12) {
                Some((_, Some(d))) => *d as i64,
                _ => -1,
            }),
        ));
    }
    cols
}

fn columns_csv(cols: &[(String, super::parquet::Column)]) -> String {
    use super::parquet::Column;
    let n = cols.first().map(|c| c.1.len()).unwrap_or(0);
    let mut s = cols.iter().map(|c| csv_field(&c.0)).collect::<Vec<_>>().join(",");
    s.push('\n');
    for i in 0..n {
        let row: Vec<String> = cols
            .iter()
            .map(|(_, c)| match c {
                Column::F64(v) if v[i].is_nan() => String::new(),
                Column::F64(v) => format!("{}", v[i]),
                Column::I64(v) => v[i].to_string(),
                Column::Str(v) => csv_field(&v[i]),
            })
            .collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

/// Final per-layer values of every run (layers.csv and layers.parquet).
fn layer_table(recs: &[RunRecord]) -> Vec<(String, super::parquet::Column)> {
    use super::parquet::Column;
    let rows: Vec<(&RunRecord, usize)> = recs.iter().flat_map(|r| (0..r.layers.len()).map(move |i| (r, i))).collect();
    let f =
        |g: fn(&super::record::LayerFinal) -> f64| Column::F64(rows.iter().map(|(r, i)| g(&r.layers[*i])).collect());
    vec![
        ("id".into(), Column::Str(rows.iter().map(|(r, _)| r.run.id.clone()).collect())),
        ("layer".into(), Column::I64(rows.iter().map(|(_, i)| *i as i64 + 1).collect())),
        ("ncc_train_acc".into(), f(|l| l.ncc_train_acc)),
        ("ncc_test_acc".into(), f(|l| l.ncc_test_acc)),
        ("cdnv_train".into(), f(|l| l.cdnv_train)),
        ("cdnv_test".into(), f(|l| l.cdnv_test)),
    ]
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Markdown table as HTML (the report's tables are simple: no pipes inside cells).
fn md_table_html(md: &str) -> String {
    let mut s = String::from("<table>\n");
    for (i, line) in md.lines().enumerate() {
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in cells {
            let c = html_escape(c);
            let c = match c.strip_prefix("**").and_then(|c| c.strip_suffix("**")) {
                Some(b) => format!("<b>{b}</b>"),
                None => c,
            };
            let _ = write!(s, "<{tag}>{c}</{tag}>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

fn md_inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in html_escape(s).split("**").enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<b>{part}</b>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// What `report` wrote.
pub struct ReportOutput {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub checks: Vec<String>,
}

/// Aggregate the sweep in `dir` and write its report into `dir/report`.
pub fn report(dir: &Path) -> Result<ReportOutput> {
    let sd = SweepDir(dir.to_path_buf());
    let plan = sd.read_plan()?;
    let recs = load_all(&sd)?;
    let out = dir.join("report");
    std::fs::create_dir_all(&out)?;
    let grid: Vec<&RunRecord> = recs.iter().filter(|r| r.run.role == Role::Grid).collect();
    let has = |k: &str| plan.axes.iter().any(|a| a == k);

    let mut figures: Vec<Figure> = Vec::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    if has("model.depth") {
        if let Some(f) = depth_epoch_figure(&sd, &grid)? {
            figures.push(f);
        }
        if let Some(f) = profile_figure(&grid, "model.depth", "L", "layer_profiles_by_depth") {
            figures.push(f);
        }
        if let Some((f, t)) = axis_figure(&grid, "model.depth", "L", "effective_depth_vs_depth") {
            figures.push(f);
            tables.push(("Effective depth against network depth L".into(), t));
        }
    }
    if has("corruption.p") {
        if let Some((f, t)) = axis_figure(&grid, "corruption.p", "p", "effective_depth_vs_noise") {
            figures.push(f);
            tables.push(("Effective depth against the corrupted fraction p".into(), t));
        }
        if let Some(f) = profile_figure(&grid, "corruption.p", "p", "layer_profiles_by_noise") {
            figures.push(f);
        }
    }
    if has("model.width") {
        if let Some((f, t)) = axis_figure(&grid, "model.width", "H", "effective_depth_vs_width") {
            figures.push(f);
            tables.push(("Effective depth against width H".into(), t));
        }
        if let Some(f) = profile_figure(&grid, "model.width", "H", "layer_profiles_by_width") {
            figures.push(f);
        }
    }
    let bound_rows = if plan.bound.is_some() { bound::compute(&sd)? } else { Vec::new() };
    if let Some(f) = bound_figure(&bound_rows) {
        figures.push(f);
        tables.push((
            "The comparative bound (Tab. 1; bold: smallest over the p grid)".into(),
            bound::markdown(&bound_rows),
        ));
    }
    let mut checks = Vec::new();
    if has("model.depth") {
        // The claim is stated at ε = 0.01; the looser ε = 0.05 reading is reported beside it.
        checks.extend(check_depth(&grid, EPS_MAIN, "a"));
        checks.extend(check_depth(&grid, 0.05, "a′"));
    }
    if has("corruption.p") {
        checks.extend(check_noise(&grid, EPS_MAIN, "b"));
        checks.extend(check_noise(&grid, 0.05, "b′"));
    }
    if has("model.width") {
        checks.extend(check_width(&grid));
    }
    checks.extend(check_bound(&bound_rows));

    let counts = |st: &str| recs.iter().filter(|r| r.status == st).count();
    let status_line = format!(
        "{} runs: {} done, {} failed, {} running or interrupted, {} pending.",
        recs.len(),
        counts("done"),
        counts("failed"),
        counts("running"),
        counts("pending")
    );
    let failed: Vec<String> = recs
        .iter()
        .filter(|r| r.status == "failed")
        .map(|r| format!("{} ({}): {}", r.run.index, r.run.id, r.reason.clone().unwrap_or_default()))
        .collect();
    let sweep_src = std::fs::read_to_string(dir.join("sweep.toml")).unwrap_or_default();

    // Markdown (figures as PNG files next to it) and HTML (the same figures inline as SVG).
    let mut md = format!("# Sweep report: {}\n\n{status_line}\n\n", plan.name);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>depthprobe report: {0}</title><style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}figure{{margin:1em 0}}svg{{max-width:100%;height:auto}}</style></head><body>\n<h1>Sweep report: {0}</h1>\n<p>{1}</p>\n",
        html_escape(&plan.name),
        html_escape(&status_line)
    );
    if !failed.is_empty() {
        md.push_str("Failed runs:\n\n");
        html.push_str("<p>Failed runs:</p><ul>");
        for f in &failed {
            let _ = writeln!(md, "- {f}");
            let _ = write!(html, "<li>{}</li>", html_escape(f));
        }
        md.push('\n');
        html.push_str("</ul>\n");
    }
    if !checks.is_empty() {
        md.push_str("## Checks of the paper's claims\n\n");
        html.push_str("<h2>Checks of the paper's claims</h2>\n");
        for c in &checks {
            let _ = write!(md, "{c}\n\n");
            let _ = writeln!(html, "<p>{}</p>", md_inline_html(c));
        }
    }
    md.push_str("## Figures\n\n");
    html.push_str("<h2>Figures</h2>\n");
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for f in &figures {
        let _ = write!(md, "![{0}]({0}.png)\n\n{1}\n\n", f.stem, f.caption);
        let _ = writeln!(html, "<figure>{}<figcaption>{}</figcaption></figure>", f.svg, html_escape(&f.caption));
        files.push((out.join(format!("{}.svg", f.stem)), f.svg.clone().into_bytes()));
        files.push((out.join(format!("{}.png", f.stem)), svg_to_png(&f.svg)?));
    }
    for (title, t) in &tables {
        let _ = write!(md, "## {title}\n\n{t}\n");
        let _ = write!(html, "<h2>{}</h2>\n{}", html_escape(title), md_table_html(t));
    }
    let _ = write!(
        md,
        "## Files\n\n`results.csv` / `results.parquet`: one row per run (effective depth −1 = not separable); `layers.csv` / `layers.parquet`: final per-layer values of every run{}.\n\n## Sweep file\n\n```toml\n{}```\n",
        if bound_rows.is_empty() { "" } else { "; `bound.csv`: the bound table" },
        sweep_src
    );
    let _ = write!(html, "<h2>Sweep file</h2><pre>{}</pre>\n</body></html>\n", html_escape(&sweep_src));

    let cols = run_table(&plan, &recs);
    files.push((out.join("results.csv"), columns_csv(&cols).into_bytes()));
    files.push((out.join("results.parquet"), super::parquet::write(&cols)?));
    let layers = layer_table(&recs);
    files.push((out.join("layers.csv"), columns_csv(&layers).into_bytes()));
    files.push((out.join("layers.parquet"), super::parquet::write(&layers)?));
    if !bound_rows.is_empty() {
        files.push((out.join("bound.csv"), bound::csv(&bound_rows).into_bytes()));
    }
    files.push((out.join("report.md"), md.into_bytes()));
    files.push((out.join("index.html"), html.into_bytes()));
    write_all_atomic(&files)?;
    Ok(ReportOutput { dir: out, files: files.into_iter().map(|f| f.0).collect(), checks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sweep::plan::PlannedRun;

    fn rec(depth: usize, p: f64, seed: i64, eff: Option<usize>, train_acc: f64) -> RunRecord {
        let mut config = Config::default();
        config.model.depth = depth;
        config.corruption.p = p;
        let values = vec![
            ("model.depth".to_string(), toml::Value::Integer(depth as i64)),
            ("corruption.p".to_string(), toml::Value::Float(p)),
            ("train.seed".to_string(), toml::Value::Integer(seed)),
        ];
        RunRecord {
            run: PlannedRun { index: 0, id: format!("d{depth}-p{p}-s{seed}"), values, role: Role::Grid },
            config,
            status: "done".into(),
            reason: None,
            train_acc,
            test_acc: 0.9,
            wall_s: 1.0,
            effective_depth: vec![(0.01, eff)],
            layers: Vec::new(),
        }
    }

    #[test]
    fn depth_check_needs_every_depth_above_l0_within_one_layer() {
        let ok = [
            rec(2, 0.0, 0, None, 1.0),
            rec(4, 0.0, 0, Some(3), 1.0),
            rec(8, 0.0, 0, Some(4), 1.0),
            rec(12, 0.0, 0, Some(5), 1.0),
        ];
        let refs: Vec<&RunRecord> = ok.iter().collect();
        let c = check_depth(&refs, 0.01, "a").unwrap();
        assert!(c.contains("holds") && c.contains("L₀=4") && c.contains("3–5"), "{c}");
        let bad = [rec(4, 0.0, 0, Some(3), 1.0), rec(8, 0.0, 0, Some(4), 1.0), rec(12, 0.0, 1, Some(6), 1.0)];
        let refs: Vec<&RunRecord> = bad.iter().collect();
        assert!(check_depth(&refs, 0.01, "a").unwrap().contains("FAILS"));
        // A deeper net that is not separable breaks the claim.
        let ns = [rec(4, 0.0, 0, Some(3), 1.0), rec(8, 0.0, 0, None, 1.0)];
        let refs: Vec<&RunRecord> = ns.iter().collect();
        assert!(check_depth(&refs, 0.01, "a").unwrap().contains("FAILS"));
    }

    #[test]
    fn width_check_wants_every_layer_monotone() {
        use crate::sweep::record::LayerFinal;
        let mk = |h: usize, c: [f64; 2], a: [f64; 2]| {
            let mut r = rec(2, 0.0, 0, Some(2), 1.0);
            r.config.model.width = h;
            r.layers = (0..2)
                .map(|i| LayerFinal { ncc_train_acc: a[i], ncc_test_acc: a[i], cdnv_train: c[i], cdnv_test: c[i] })
                .collect();
            r
        };
        let good = [mk(32, [1.0, 0.5], [0.8, 0.9]), mk(64, [0.9, 0.4], [0.85, 0.95])];
        let refs: Vec<&RunRecord> = good.iter().collect();
        let c = check_width(&refs).unwrap();
        assert!(c.contains("holds") && c.contains("CDNV train monotone in H at 2 of 2 layers"), "{c}");
        let bad = [mk(32, [1.0, 0.5], [0.8, 0.9]), mk(64, [1.1, 0.4], [0.85, 0.95])];
        let refs: Vec<&RunRecord> = bad.iter().collect();
        let c = check_width(&refs).unwrap();
        assert!(
            c.contains("does not hold") && c.contains("CDNV train monotone in H at 1 of 2 layers (layers 2)"),
            "{c}"
        );
    }

    #[test]
    fn noise_check_wants_monotone_means_fitted_nets_and_three_seeds() {
        let mk = |d: [usize; 3], acc: f64| -> Vec<RunRecord> {
            [0.0, 0.1, 0.2].iter().zip(d).flat_map(|(&p, d)| (0..3).map(move |s| rec(10, p, s, Some(d), acc))).collect()
        };
        let good = mk([3, 5, 5], 0.995);
        let refs: Vec<&RunRecord> = good.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().contains("holds"), "{}", check_noise(&refs, 0.01, "b").unwrap());
        let dip = mk([3, 6, 5], 0.995);
        let refs: Vec<&RunRecord> = dip.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().contains("FAILS"));
        let unfit = mk([3, 5, 6], 0.98);
        let refs: Vec<&RunRecord> = unfit.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().contains("FAILS"));
        let two: Vec<RunRecord> = good.into_iter().filter(|r| !r.run.id.ends_with("s2")).collect();
        let refs: Vec<&RunRecord> = two.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().contains("fewer than 3 seeds"));
    }
}
