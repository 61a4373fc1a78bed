//! He & Su's law of equi-separation in a sweep: per group of seeds, the per-layer decay ratio of
//! the separation fuzziness and the r² of its log-linear fit over the layers up to saturation
//! (summary.json's `fuzziness_fit`, docs/method.md), judged on their 95% bootstrap intervals, and
//! a figure of both against the study axis.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::checks::Check;
use super::figures::Figure;
use super::{fmt, x_text};
use crate::figures::{ramp_color, render_svg, Panel, Series};
use crate::stats::{mean, mean_interval, seeds_to_decide, Interval, Verdict};
use crate::sweep::record::RunRecord;

/// The observation holds in a group when the mean r² over its seeds is at least this, beyond
/// doubt (the lower end of its interval).
pub const GEOMETRIC_R2: f64 = 0.9;

struct Cell {
    group: String,
    x: f64,
    ratio: Vec<f64>,
    r2: Vec<f64>,
    last_layer: Vec<f64>,
    layers: usize,
}

/// Observation (g) and its figure; None when no finished run has a fit. `study` is the sweep's
/// study axis and its short label (L, p, H), if it has one.
pub fn equi_separation(recs: &[&RunRecord], study: Option<(&str, &str)>) -> Option<(Check, Option<Figure>)> {
    // Each (group, x) cell's fits, one per seed.
    let cells: Vec<Cell> = super::cells(recs, study)
        .into_iter()
        .filter_map(|((group, x), runs)| {
            let fits: Vec<_> = runs
                .iter()
                .filter_map(|r| r.fuzziness_fit.as_ref().and_then(|f| Some((f, f.r_squared?, r.layers.len()))))
                .collect();
            Some(Cell {
                group,
                x,
                ratio: fits.iter().map(|f| f.0.ratio).collect(),
                r2: fits.iter().map(|f| f.1).collect(),
                last_layer: fits.iter().map(|f| f.0.last_layer as f64).collect(),
                layers: fits.last()?.2,
            })
        })
        .collect();
    if cells.is_empty() {
        return None;
    }
    let label = study.map_or("", |s| s.1);
    let mut table = format!(
        "| group | {} | runs | ratio D(l+1)/D(l): mean [95%] | r²: mean [95%] | layers fitted (last, mean of L) | verdict |\n|---|---|---|---|---|---|---|\n",
        if label.is_empty() { "x" } else { label }
    );
    let mut verdicts = Vec::new();
    let mut notes = Vec::new();
    let mut held = 0;
    for c in &cells {
        let g = &c.group;
        let iv = mean_interval(&c.r2);
        let ratio = mean_interval(&c.ratio);
        // r² ≥ 0.9 is "0.9 − r² ≤ 0": the shortfall's interval is the mirror of r²'s.
        let short = Interval { value: GEOMETRIC_R2 - iv.value, lo: GEOMETRIC_R2 - iv.hi, hi: GEOMETRIC_R2 - iv.lo };
        let v = if c.r2.len() < 2 { Verdict::Inconclusive } else { Verdict::at_most(&short, 0.0) };
        if v == Verdict::Holds {
            held += 1;
        }
        if v == Verdict::Inconclusive && c.r2.len() >= 2 {
            if let Some(n) = seeds_to_decide(&short, 0.0, c.r2.len()) {
                notes.push(n);
            }
        }
        verdicts.push(v);
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} [{}, {}] | {} [{}, {}] | {} of {} | {}{} |",
            if g.is_empty() { "all" } else { g },
            x_text(c.x),
            c.r2.len(),
            fmt(ratio.value, 3),
            fmt(ratio.lo, 3),
            fmt(ratio.hi, 3),
            fmt(iv.value, 3),
            fmt(iv.lo, 3),
            fmt(iv.hi, 3),
            fmt(mean(&c.last_layer), 1),
            c.layers,
            v.word(),
            if c.r2.len() < 2 { " (one seed)" } else { "" }
        );
    }
    let n = cells.len();
    let verdict = Verdict::all(verdicts);
    let text = format!(
        "**(g) equi-separation: fuzziness decays geometrically with depth (r² ≥ {GEOMETRIC_R2} over the layers up to saturation): {}.** Holds beyond doubt in {held} of {n} group(s) of seeds; each group's mean r² is judged on its 95% bootstrap interval (one seed: inconclusive).{} Per-layer decay ratio and r² per group in the table \"(g) equi-separation\".",
        verdict.word(),
        notes.iter().max().map_or(String::new(), |m| format!(
            " At the spread observed, about {m} seeds per group would decide the inconclusive ones."
        ))
    );
    let check = Check { text, tables: vec![("(g) equi-separation per group (docs/method.md)".into(), table)] };
    let figure = study.and_then(|(_, label)| figure(&cells, label));
    Some((check, figure))
}

/// The mean ratio and r² over seeds against the study axis, one line per group.
fn figure(cells: &[Cell], label: &str) -> Option<Figure> {
    let mut lines: BTreeMap<&str, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for c in cells.iter().filter(|c| !c.x.is_nan()) {
        lines.entry(c.group.as_str()).or_default().push((c.x, mean(&c.ratio), mean(&c.r2)));
    }
    if lines.values().all(|p| p.len() < 2) {
        return None;
    }
    let k = lines.len();
    let series = |pick: &dyn Fn(&(f64, f64, f64)) -> f64| -> Vec<Series> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (g, pts))| Series {
                name: if g.is_empty() { "all".into() } else { g.to_string() },
                points: pts.iter().map(|p| (p.0, pick(p))).collect(),
                color: ramp_color(i, k),
                dashed: false,
            })
            .collect()
    };
    let ratio = Panel {
        title: "per-layer decay ratio of fuzziness".into(),
        x_label: label.into(),
        y_label: "D(l+1) / D(l)".into(),
        series: series(&|p| p.1),
        y_range: None,
        integer_x: false,
    };
    let r2 = Panel {
        title: "r² of the log-linear fit".into(),
        x_label: label.into(),
        y_label: "r²".into(),
        series: series(&|p| p.2),
        y_range: Some((0.0, 1.0)),
        integer_x: false,
    };
    Some(Figure {
        stem: "equi_separation".into(),
        caption: format!(
            "He and Su's law of equi-separation against {label}: the ratio D(l+1)/D(l) of the log-linear fit of the separation fuzziness over the layers up to saturation (left), and the fit's r² (right), mean over seeds. A geometric decay has r² near 1."
        ),
        svg: render_svg("Equi-separation: fuzziness decay per layer", &[ratio, r2], 2),
    })
}
