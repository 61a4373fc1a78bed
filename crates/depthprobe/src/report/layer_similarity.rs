//! What the layers above the effective depth look like, in a sweep whose runs measured CKA
//! (`probe.cka`) and weight spectra (`probe.weight_spectra`), per group of seeds on the study
//! axis, each judged on its 95% bootstrap interval (docs/method.md, "Layer similarity (CKA)" and
//! "Weight spectra"):
//!
//! * (h) the layers at and above the ε = 0.01 effective depth form a CKA block: the mean CKA
//!   among them exceeds the mean CKA across the depth (train CKA of the final probe);
//! * (i) the weights above the effective depth have lower stable rank than those below it
//!   (layers 2..d against d+1..L: layer 1's weight reads the input, of another dimension).
//!
//! Figures: the final CKA heatmaps side by side along the study axis, the block outlined; the
//! weights' stable rank against the layer at the end and against the epoch.

use std::fmt::Write as _;

use anyhow::Result;
use depthprobe_measures::{eps_key, Split};

use super::checks::Check;
use super::figures::Figure;
use super::{cells, fmt, x_text, EPS_MAIN};
use crate::figures::heatmap::{render_heatmaps, Heatmap};
use crate::figures::{ramp_color, render_svg, Panel, Series};
use crate::stats::{mean, mean_interval, seeds_note, Interval, Verdict};
use crate::sweep::plan::SweepDir;
use crate::sweep::record::RunRecord;

/// (mean CKA among the layers at or above the ε-effective depth, mean CKA across it); None when
/// the run measured no CKA, is not ε-separable, or one of the two is undefined (depth 1 or L).
pub(crate) fn cka_block_of(r: &RunRecord, eps: f64) -> Option<(f64, f64)> {
    let b = r.cka.as_ref()?.block_train.get(&eps_key(eps))?;
    Some((b.within?, b.across?))
}

/// (mean of `values` over layers d+1..L, over layers 2..d), layer l at index l − 1: the weights
/// above the depth d against those below it, layer 1 (which reads the input) left out; None
/// when d < 2, d ≥ L, or a value there is not finite.
pub(crate) fn rank_split(values: &[f64], d: usize) -> Option<(f64, f64)> {
    if d < 2 || d >= values.len() || values[1..].iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some((mean(&values[d..]), mean(&values[1..d])))
}

/// [`rank_split`] of a run's final weights at its ε-effective depth; None without weight
/// spectra or when the run is not ε-separable.
pub(crate) fn rank_split_of(
    r: &RunRecord,
    eps: f64,
    pick: fn(&crate::sweep::record::LayerFinal) -> f64,
) -> Option<(f64, f64)> {
    let (d, not_separable) = r.depth_at(eps)?;
    if not_separable {
        return None;
    }
    rank_split(&r.layers.iter().map(pick).collect::<Vec<_>>(), d)
}

/// The verdicts of one observation over its cells: each cell's claim is "statistic ≤ 0" on one
/// value per run, judged on the 95% interval of their mean (one run: inconclusive).
#[derive(Default)]
struct Tally {
    verdicts: Vec<Verdict>,
    held: usize,
    notes: Vec<String>,
}

impl Tally {
    fn judge(&mut self, values: &[f64]) -> (Interval, Verdict) {
        let iv = mean_interval(values);
        let v = if values.len() < 2 { Verdict::Inconclusive } else { Verdict::at_most(&iv, 0.0) };
        self.held += (v == Verdict::Holds) as usize;
        if values.len() >= 2 {
            self.notes.push(seeds_note(&iv, 0.0, values.len()));
        }
        self.verdicts.push(v);
        (iv, v)
    }

    /// The overall verdict (inconclusive when no cell was judged), the held count, the number of
    /// cells judged and the first power note.
    fn summary(self) -> (Verdict, usize, usize, String) {
        let judged = self.verdicts.len();
        let v = if judged == 0 { Verdict::Inconclusive } else { Verdict::all(self.verdicts) };
        (v, self.held, judged, self.notes.into_iter().find(|n| !n.is_empty()).unwrap_or_default())
    }
}

/// Observation (h) and the heatmaps; None when no finished run measured CKA.
pub fn cka_block(recs: &[&RunRecord], study: Option<(&str, &str)>) -> Option<(Check, Option<Figure>)> {
    let with: Vec<&RunRecord> = recs.iter().copied().filter(|r| r.done() && r.cka.is_some()).collect();
    if with.is_empty() {
        return None;
    }
    let label = study.map_or("x", |s| s.1);
    let mut table = format!(
        "| group | {label} | runs | judged | within: mean | across: mean | within − across: mean [95%] | verdict |\n|---|---|---|---|---|---|---|---|\n"
    );
    let mut tally = Tally::default();
    let cs = cells(&with, study);
    for ((g, x), runs) in &cs {
        let pairs: Vec<(f64, f64)> = runs.iter().filter_map(|r| cka_block_of(r, EPS_MAIN)).collect();
        if pairs.is_empty() {
            let _ = writeln!(
                table,
                "| {} | {} | {} | 0 | – | – | – | not judged: no run separable at ε = {EPS_MAIN} below its top layer |",
                if g.is_empty() { "all" } else { g },
                x_text(*x),
                runs.len()
            );
            continue;
        }
        // "across − within ≤ 0" is the claim's mirror: the block is at least as alike inside.
        let gap: Vec<f64> = pairs.iter().map(|(w, a)| a - w).collect();
        let (iv, v) = tally.judge(&gap);
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} [{}, {}] | {}{} |",
            if g.is_empty() { "all" } else { g },
            x_text(*x),
            runs.len(),
            pairs.len(),
            fmt(mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()), 3),
            fmt(mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()), 3),
            fmt(-iv.value, 3),
            fmt(-iv.hi, 3),
            fmt(-iv.lo, 3),
            v.word(),
            if pairs.len() < 2 { " (one run)" } else { "" }
        );
    }
    let (verdict, held, judged, note) = tally.summary();
    let text = format!(
        "**(h) the layers at and above the effective depth form a CKA block (mean train CKA among them > mean CKA across the ε = {EPS_MAIN} depth, final probe): {}.** Holds beyond doubt in {held} of {judged} judged group(s); a run is judged when it separates at ε = {EPS_MAIN} below its top layer and above layer 1 (both means defined).{} Table \"(h) CKA block\".",
        verdict.word(),
        note
    );
    let check = Check { text, tables: vec![("(h) CKA block at the effective depth (docs/method.md)".into(), table)] };
    Some((check, heatmaps(&cs, label)))
}

/// The mean final train CKA over each cell's seeds, side by side, the block from the median
/// ε = 0.01 depth of its separable runs outlined.
fn heatmaps(cs: &[((String, f64), Vec<&RunRecord>)], label: &str) -> Option<Figure> {
    let mut maps = Vec::new();
    for ((g, x), runs) in cs {
        let mats: Vec<&Vec<Vec<Option<f64>>>> = runs.iter().filter_map(|r| r.cka.as_ref().map(|c| &c.train)).collect();
        let Some(first) = mats.first() else { continue };
        let l = first.len();
        if mats.iter().any(|m| m.len() != l) {
            continue;
        }
        let values: Vec<Vec<Option<f64>>> = (0..l)
            .map(|a| {
                (0..l)
                    .map(|b| {
                        let v: Vec<f64> = mats.iter().filter_map(|m| m[a][b]).collect();
                        (v.len() == mats.len()).then(|| mean(&v))
                    })
                    .collect()
            })
            .collect();
        let mut depths: Vec<usize> =
            runs.iter().filter_map(|r| r.depth_at(EPS_MAIN).filter(|d| !d.1).map(|d| d.0)).collect();
        depths.sort_unstable();
        let block_from = depths.get(depths.len() / 2).copied();
        let title = format!(
            "{}{label} = {} ({} run{}){}",
            if g.is_empty() { String::new() } else { format!("{g}, ") },
            x_text(*x),
            mats.len(),
            if mats.len() == 1 { "" } else { "s" },
            block_from.map_or(", not separable".to_string(), |d| format!(", d = {d}"))
        );
        maps.push(Heatmap { title, values, block_from });
    }
    if maps.is_empty() {
        return None;
    }
    Some(Figure {
        stem: "cka_by_layer".into(),
        caption: format!(
            "Linear CKA between every pair of layers on the train split at the final probe (minibatch estimator, mean over seeds), one map per {label}; layer 1 at the bottom left. The red square outlines the layers at and above the ε = {EPS_MAIN} effective depth d (median over the separable seeds)."
        ),
        svg: render_heatmaps("Layer similarity (linear CKA, train)", &maps, 4),
    })
}

/// Observation (i) and the rank figures; None when no finished run measured weight spectra.
pub fn weight_rank(
    dir: &SweepDir,
    recs: &[&RunRecord],
    study: Option<(&str, &str)>,
) -> Result<Option<(Check, Option<Figure>)>> {
    let has = |r: &&RunRecord| r.done() && r.layers.iter().any(|l| l.weight_stable_rank.is_finite());
    let with: Vec<&RunRecord> = recs.iter().copied().filter(has).collect();
    if with.is_empty() {
        return Ok(None);
    }
    let label = study.map_or("x", |s| s.1);
    let mut table = format!(
        "| group | {label} | runs | judged | stable rank above d: mean | below (layers 2..d): mean | above − below: mean [95%] | numerical rank above − below: mean | verdict |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut tally = Tally::default();
    let cs = cells(&with, study);
    for ((g, x), runs) in &cs {
        let pairs: Vec<(f64, f64)> =
            runs.iter().filter_map(|r| rank_split_of(r, EPS_MAIN, |l| l.weight_stable_rank)).collect();
        let numeric: Vec<f64> =
            runs.iter().filter_map(|r| rank_split_of(r, EPS_MAIN, |l| l.weight_rank)).map(|(a, b)| a - b).collect();
        let name = if g.is_empty() { "all" } else { g.as_str() };
        if pairs.is_empty() {
            let _ = writeln!(
                table,
                "| {name} | {} | {} | 0 | – | – | – | – | not judged: no run with 2 ≤ d < L at ε = {EPS_MAIN} |",
                x_text(*x),
                runs.len()
            );
            continue;
        }
        let diff: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
        let (iv, v) = tally.judge(&diff);
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {} | {} | {} | {} [{}, {}] | {} | {}{} |",
            x_text(*x),
            runs.len(),
            pairs.len(),
            fmt(mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()), 2),
            fmt(mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()), 2),
            fmt(iv.value, 2),
            fmt(iv.lo, 2),
            fmt(iv.hi, 2),
            fmt(mean(&numeric), 1),
            v.word(),
            if pairs.len() < 2 { " (one run)" } else { "" }
        );
    }
    let (verdict, held, judged, note) = tally.summary();
    let text = format!(
        "**(i) the weights above the effective depth have lower rank than those below (mean stable rank ‖W‖²_F/‖W‖²₂ of layers d+1..L < that of layers 2..d, d the ε = {EPS_MAIN} effective depth, final probe): {}.** Holds beyond doubt in {held} of {judged} judged group(s); a run is judged when 2 ≤ d < L (layer 1's weight reads the input, whose dimension differs). The numerical rank (σ > 10⁻³ σ₁) is shown beside it.{} Table \"(i) weight rank\".",
        verdict.word(),
        note
    );
    let check = Check {
        text,
        tables: vec![("(i) weight rank above and below the effective depth (docs/method.md)".into(), table)],
    };
    Ok(Some((check, rank_figure(dir, &cs, label)?)))
}

/// Stable rank against the layer at the end (mean over seeds, one line per study value) and
/// against the epoch for the deepest (last) cell's first run, one line per layer.
fn rank_figure(dir: &SweepDir, cs: &[((String, f64), Vec<&RunRecord>)], label: &str) -> Result<Option<Figure>> {
    let n = cs.len();
    let by_layer: Vec<Series> = cs
        .iter()
        .enumerate()
        .map(|(i, ((g, x), runs))| {
            let l = runs.iter().map(|r| r.layers.len()).max().unwrap_or(0);
            let points = (0..l)
                .map(|k| {
                    let v: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.layers.get(k).map(|x| x.weight_stable_rank))
                        .filter(|v| v.is_finite())
                        .collect();
                    ((k + 1) as f64, if v.is_empty() { f64::NAN } else { mean(&v) })
                })
                .collect();
            Series {
                name: format!("{}{label} = {}", if g.is_empty() { String::new() } else { format!("{g} ") }, x_text(*x)),
                points,
                color: ramp_color(i, n),
                dashed: false,
            }
        })
        .collect();
    let mut panels = vec![Panel {
        title: "at the end (mean over seeds)".into(),
        x_label: "layer".into(),
        y_label: "stable rank of the weight".into(),
        series: by_layer,
        y_range: None,
        integer_x: true,
    }];
    let mut epoch_note = String::new();
    if let Some(((_, x), runs)) = cs.last() {
        if let Some(r) = runs.first() {
            let blocks = r.history(dir)?;
            let l = r.layers.len();
            let series: Vec<Series> = (1..=l)
                .map(|k| Series {
                    name: format!("layer {k}"),
                    points: blocks
                        .iter()
                        .filter_map(|b| Some((b.epoch? as f64, b.value(Some(k), Split::Train, "weight_stable_rank"))))
                        .filter(|p| p.1.is_finite())
                        .collect(),
                    color: ramp_color(k - 1, l),
                    dashed: false,
                })
                .collect();
            if series.iter().any(|s| s.points.len() > 1) {
                epoch_note = format!(
                    " Right: every layer's stable rank against the epoch in run {} ({label} = {}).",
                    r.run.id,
                    x_text(*x)
                );
                panels.push(Panel {
                    title: format!("against the epoch ({label} = {}, run {})", x_text(*x), r.run.index),
                    x_label: "epoch".into(),
                    y_label: "stable rank of the weight".into(),
                    series,
                    y_range: None,
                    integer_x: false,
                });
            }
        }
    }
    let cols = panels.len();
    Ok(Some(Figure {
        stem: "weight_rank_by_layer".into(),
        caption: format!(
            "The stable rank ‖W‖²_F / ‖W‖²₂ of the weight that produces each layer (a convolution reshaped to out × in·k·k). Left: at the final probe, mean over seeds, one line per {label}.{epoch_note}"
        ),
        svg: render_svg("Weight spectra: stable rank per layer", &panels, cols),
    }))
}
