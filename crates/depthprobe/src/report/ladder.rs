//! A scale ladder: a sweep over the train size (`data.train_per_class`), with other axes such as
//! the width beside it. Per cell: the network's accuracy, the top layer's and every layer's final
//! NCC accuracy, the effective depths, and the epoch after which the top layer's NCC train
//! accuracy stopped rising; and a figure of the top layer's NCC train accuracy against the train
//! size, one line per value of the other axes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use depthprobe_measures::Split;
use depthprobe_runfolder::MetricBlock;

use super::figures::Figure;
use super::{axis_value, fmt, group_of};
use crate::figures::{ramp_color, render_svg, Panel, Series};
use crate::stats::mean;
use crate::sweep::plan::SweepDir;
use crate::sweep::record::RunRecord;

/// The axis a ladder climbs.
pub const LADDER_AXIS: &str = "data.train_per_class";

/// A rise of the top layer's NCC train accuracy smaller than this after a probe does not count:
/// the accuracy "stops rising" at the first probe no later one beats by more.
pub const STILL_RISING: f64 = 0.005;

/// The first probed epoch after which the top layer's NCC train accuracy never rises by more than
/// [`STILL_RISING`] (None without probes).
pub fn stops_rising(history: &[(usize, f64)]) -> Option<usize> {
    let best_after = |i: usize| history[i + 1..].iter().map(|h| h.1).fold(f64::NEG_INFINITY, f64::max);
    (0..history.len()).find(|&i| best_after(i) <= history[i].1 + STILL_RISING).map(|i| history[i].0)
}

/// The top layer's NCC train accuracy at each probe of a run.
fn top_history(blocks: &[MetricBlock], layers: usize) -> Vec<(usize, f64)> {
    blocks
        .iter()
        .filter_map(|b| Some((b.epoch?, b.value(Some(layers), Split::Train, "ncc_acc"))))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// The ladder's table and figure, when the sweep varies the train size.
pub fn ladder(dir: &SweepDir, recs: &[&RunRecord]) -> Result<Option<(Figure, String)>> {
    // (group, n) → the runs of the cell.
    let mut cells: BTreeMap<(String, usize), Vec<&RunRecord>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && !r.layers.is_empty()) {
        let Some(per) = axis_value(r, LADDER_AXIS) else { continue };
        cells
            .entry((group_of(r, LADDER_AXIS), per as usize * r.config.data.dataset.num_classes()))
            .or_default()
            .push(r);
    }
    if cells.len() < 2 {
        return Ok(None);
    }
    let eps: Vec<f64> =
        recs.iter().find(|r| r.done()).map(|r| r.effective_depth.iter().map(|e| e.0).collect()).unwrap_or_default();
    let mut table = format!(
        "| group | n | runs | train acc | top layer NCC train / test | {} | top NCC train stops rising | every layer's NCC train / test |\n|---|---|---|---|---|{}---|---|\n",
        eps.iter().map(|e| format!("ε={e} effective depth")).collect::<Vec<_>>().join(" | "),
        "---|".repeat(eps.len())
    );
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for ((g, n), rs) in &cells {
        let m = |f: &dyn Fn(&RunRecord) -> f64| mean(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
        let top_train = m(&|r| r.layers.last().map_or(f64::NAN, |l| l.ncc_train_acc));
        let top_test = m(&|r| r.layers.last().map_or(f64::NAN, |l| l.ncc_test_acc));
        lines.entry(g.clone()).or_default().push((*n as f64, top_train));
        let depths: Vec<String> = eps
            .iter()
            .map(|&e| {
                rs.iter()
                    .map(|r| match r.effective_depth.iter().find(|(x, _)| (x - e).abs() < 1e-12).and_then(|x| x.1) {
                        Some(d) => d.to_string(),
                        None => "–".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let mut stop = Vec::new();
        for r in rs {
            let h = top_history(&r.history(dir)?, r.layers.len());
            stop.push(stops_rising(&h).map_or("–".into(), |e| e.to_string()));
        }
        let layers = rs.iter().map(|r| r.layers.len()).min().unwrap_or(0);
        let per_layer: Vec<String> = (0..layers)
            .map(|i| {
                let t = mean(&rs.iter().map(|r| r.layers[i].ncc_train_acc).collect::<Vec<_>>());
                let v = mean(&rs.iter().map(|r| r.layers[i].ncc_test_acc).collect::<Vec<_>>());
                format!("{} / {}", fmt(t, 2), fmt(v, 2))
            })
            .collect();
        let _ = writeln!(
            table,
            "| {} | {n} | {} | {} | {} / {} | {} | {} | {} |",
            if g.is_empty() { "all" } else { g },
            rs.len(),
            fmt(m(&|r| r.train_acc), 4),
            fmt(top_train, 4),
            fmt(top_test, 4),
            depths.join(" | "),
            stop.join(", "),
            per_layer.join(", ")
        );
    }
    let k = lines.len();
    let series: Vec<Series> = lines
        .into_iter()
        .enumerate()
        .map(|(i, (g, mut points))| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name: if g.is_empty() { "all".into() } else { g }, points, color: ramp_color(i, k), dashed: false }
        })
        .collect();
    let panel = Panel {
        title: "top layer".into(),
        x_label: "train size n".into(),
        y_label: "NCC train accuracy".into(),
        series,
        y_range: Some((0.0, 1.0)),
        integer_x: false,
    };
    let fig = Figure {
        stem: "top_ncc_by_train_size".into(),
        caption: format!(
            "The top layer's final NCC train accuracy against the train size n, one line per value of the other axes (mean over seeds). A top layer that separates the classes is at 1; the effective depth at ε needs 1 − ε. \"Stops rising\" in the table: the first probe after which the accuracy never rises by more than {STILL_RISING}."
        ),
        svg: render_svg("The scale ladder: top-layer NCC train accuracy against train size", &[panel], 1),
    };
    Ok(Some((fig, table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_layer_stops_rising_at_the_first_probe_no_later_one_beats() {
        let h = [(0, 0.1), (5, 0.5), (10, 0.8), (15, 0.802), (20, 0.79), (25, 0.804)];
        assert_eq!(stops_rising(&h), Some(10), "later probes are within 0.005");
        let h = [(0, 0.1), (5, 0.5), (10, 0.8), (15, 0.81), (20, 0.79)];
        assert_eq!(stops_rising(&h), Some(15));
        let h = [(0, 0.2), (10, 0.3), (20, 0.4)];
        assert_eq!(stops_rising(&h), Some(20), "still rising at the end: the last probe");
        assert_eq!(stops_rising(&[]), None);
    }
}
