//! The report's figures: the paper's Fig. 1 per depth, effective depth against a study axis
//! (depth, label noise, width), final per-layer profiles, and the bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use depthprobe_measures::Split;
use depthprobe_runfolder::MetricBlock;

use super::{axis_study, axis_value, fmt, group_of, AxisPoint, EPS_MAIN};
use crate::bound::BoundRow;
use crate::figures::{ramp_color, render_svg, Panel, Series};
use crate::stats::{distinct, mean, min_max};
use crate::sweep::plan::SweepDir;
use crate::sweep::record::{LayerFinal, RunRecord};

/// One figure of the report: its stem, caption and SVG.
pub struct Figure {
    pub stem: String,
    pub caption: String,
    pub svg: String,
}

/// Effective depth (mean, min, max over seeds) and train accuracy against a study axis.
pub fn axis_figure(recs: &[&RunRecord], study: &str, label: &str, stem: &str) -> Option<(Figure, String)> {
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
pub fn depth_epoch_figure(dir: &SweepDir, recs: &[&RunRecord]) -> Result<Option<Figure>> {
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
                points: h.iter().map(|b| (ep(b), b.value(Some(i), Split::Train, "ncc_acc"))).collect(),
                color: ramp_color(i - 1, l),
                dashed: false,
            })
            .collect();
        series.push(Series {
            name: "net train acc".into(),
            points: h.iter().map(|b| (ep(b), b.value(None, Split::Train, "acc"))).collect(),
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
pub fn profile_figure(recs: &[&RunRecord], study: &str, label: &str, stem: &str) -> Option<Figure> {
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
        let per_layer = |f: &dyn Fn(&LayerFinal) -> f64| -> Vec<(f64, f64)> {
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

pub fn bound_figure(rows: &[BoundRow]) -> Option<Figure> {
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

/// The ε grid of the sensitivity curve.
pub const EPS_GRID: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2];

/// Effective depth at ε from final per-layer NCC train accuracies: the first layer with train
/// error ≤ ε, or L when none (as `RunRecord::depth_at` counts "not separable").
pub fn depth_from_layers(layers: &[LayerFinal], eps: f64) -> f64 {
    layers.iter().position(|l| 1.0 - l.ncc_train_acc <= eps).map_or(layers.len(), |i| i + 1) as f64
}

/// ε sensitivity: the mean effective depth over seeds against ε (log scale) for each value of
/// the study axis (or all runs), from every finished run's final per-layer NCC train accuracy;
/// with its CSV (group, ε, runs, mean, min, max). None without finished runs.
pub fn eps_sensitivity(recs: &[&RunRecord], study: Option<(&str, &str)>) -> Option<(Figure, String)> {
    let done: Vec<&&RunRecord> = recs.iter().filter(|r| r.done() && !r.layers.is_empty()).collect();
    if done.is_empty() {
        return None;
    }
    let key = |r: &RunRecord| -> String {
        match study {
            Some((axis, label)) => axis_value(r, axis).map_or("–".into(), |v| format!("{label}={v}")),
            None => "all runs".into(),
        }
    };
    let mut groups: Vec<(String, f64, Vec<&RunRecord>)> = Vec::new();
    for r in &done {
        let k = key(r);
        let x = study.and_then(|(axis, _)| axis_value(r, axis)).unwrap_or(0.0);
        match groups.iter_mut().find(|g| g.0 == k) {
            Some(g) => g.2.push(r),
            None => groups.push((k, x, vec![r])),
        }
    }
    groups.sort_by(|a, b| a.1.total_cmp(&b.1));
    let n = groups.len();
    let mut csv = String::from("group,eps,runs,mean_depth,min_depth,max_depth\n");
    let mut series = Vec::new();
    for (gi, (name, _, rs)) in groups.iter().enumerate() {
        let mut pts = Vec::new();
        for &e in &EPS_GRID {
            let d: Vec<f64> = rs.iter().map(|r| depth_from_layers(&r.layers, e)).collect();
            let (lo, hi) = min_max(d.iter().copied());
            let _ = writeln!(csv, "{name},{e},{},{},{lo},{hi}", d.len(), mean(&d));
            pts.push((e.log10(), mean(&d)));
        }
        series.push(Series { name: name.clone(), points: pts, color: ramp_color(gi, n), dashed: false });
    }
    let panel = Panel {
        title: "mean effective depth over seeds against ε".into(),
        x_label: "log10 ε".into(),
        y_label: "effective depth (layer)".into(),
        series,
        y_range: None,
        integer_x: false,
    };
    let svg = render_svg("ε sensitivity of the effective depth (not separable counts as L)", &[panel], 1);
    Some((
        Figure {
            stem: "eps_sensitivity".into(),
            caption: format!(
                "Mean effective depth over seeds against ε from {} to {} (log scale), from each run's final per-layer NCC train accuracy: a verdict that changes along a curve depends on the choice of ε.",
                EPS_GRID[0],
                EPS_GRID[EPS_GRID.len() - 1]
            ),
            svg,
        },
        csv,
    ))
}
