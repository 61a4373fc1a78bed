//! A training run's two figures, drawn from its metrics (so a resumed run draws its whole
//! history): `ncc_by_epoch` (NCC train and test accuracy of every layer against epoch, the
//! network's accuracy dashed: the paper's Fig. 1 layout) and `layer_profile` (final per-layer
//! NCC accuracy, log10 CDNV, and log10 fuzziness with its equi-separation fit); with
//! `probe.cka` / `probe.weight_spectra`, `cka` and `weight_spectra` ([`draw_similarity`]).

use std::path::Path;

use anyhow::Result;
use depthprobe_config::Config;
use depthprobe_measures::{fit_equi_separation, ProbeResult, Split};
use depthprobe_runfolder::MetricBlock;

use super::heatmap::{render_heatmaps, Heatmap};
use super::{ramp_color, render_svg, write_figure, Panel, Series};

/// Draw both figures of a run with `layers` probed layers into `out`.
pub fn draw(out: &Path, cfg: &Config, layers: usize, blocks: &[MetricBlock]) -> Result<()> {
    let title = format!(
        "{} on {}{}",
        cfg.model.name(),
        cfg.data.dataset,
        if cfg.corruption.p > 0.0 {
            format!(", {:.0}% corrupted labels", cfg.corruption.p * 100.0)
        } else {
            String::new()
        }
    );
    draw_titled(out, &title, layers, blocks)
}

/// Both figures under `title` (a run without a config: one a Python training loop probed).
pub fn draw_titled(out: &Path, title: &str, layers: usize, blocks: &[MetricBlock]) -> Result<()> {
    let Some(last) = blocks.last() else { return Ok(()) };
    let nl = layers;
    let color = |l: usize| ramp_color(l - 1, nl);
    let epoch_of = |b: &MetricBlock| b.epoch.unwrap_or(0) as f64;
    let by_epoch = |split: Split| -> Panel {
        let mut series: Vec<Series> = (1..=nl)
            .map(|l| Series {
                name: format!("layer {l}"),
                points: blocks.iter().map(|b| (epoch_of(b), b.value(Some(l), split, "ncc_acc"))).collect(),
                color: color(l),
                dashed: false,
            })
            .collect();
        let net: Vec<(f64, f64)> = blocks.iter().map(|b| (epoch_of(b), b.value(None, split, "acc"))).collect();
        // A run probed from a Python loop may not record the network's accuracy.
        if net.iter().any(|p| p.1.is_finite()) {
            series.push(Series {
                name: format!("net {split} acc"),
                points: net,
                color: "#000000".into(),
                dashed: true,
            });
        }
        Panel {
            title: format!("NCC {split} accuracy per layer"),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            series,
            y_range: Some((0.0, 1.0)),
            integer_x: true,
        }
    };
    write_figure(
        out,
        "ncc_by_epoch",
        &render_svg(
            &format!("Intermediate NCC separability: {title}"),
            &[by_epoch(Split::Train), by_epoch(Split::Test)],
            2,
        ),
    )?;
    let prof = |name: &str, color: &str, pts: Vec<(f64, f64)>| Series {
        name: name.into(),
        points: pts,
        color: color.into(),
        dashed: false,
    };
    let layer_pts = |split: Split, name: &str, f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (1..=nl).map(|l| (l as f64, f(last.value(Some(l), split, name)))).collect()
    };
    let log10 = |v: f64| if v > 0.0 && v.is_finite() { v.log10() } else { f64::NAN };
    let mut acc_series = vec![
        prof("train", "#1f77b4", layer_pts(Split::Train, "ncc_acc", &|v| v)),
        prof("test", "#d62728", layer_pts(Split::Test, "ncc_acc", &|v| v)),
    ];
    // The linear probe beside the NCC one, dashed, when the run has one.
    for (split, color) in [(Split::Train, "#1f77b4"), (Split::Test, "#d62728")] {
        let pts = layer_pts(split, "linear_acc", &|v| v);
        if pts.iter().any(|p| p.1.is_finite()) {
            acc_series.push(Series { name: format!("linear {split}"), points: pts, color: color.into(), dashed: true });
        }
    }
    let has_linear = acc_series.len() > 2;
    let acc = Panel {
        title: if has_linear {
            "NCC (solid) and linear-probe (dashed) accuracy by layer"
        } else {
            "NCC accuracy by layer"
        }
        .into(),
        x_label: "layer".into(),
        y_label: "accuracy".into(),
        series: acc_series,
        y_range: Some((0.0, 1.0)),
        integer_x: true,
    };
    let cdnv = Panel {
        title: "CDNV by layer".into(),
        x_label: "layer".into(),
        y_label: "log10 CDNV".into(),
        series: vec![
            prof("train", "#1f77b4", layer_pts(Split::Train, "cdnv", &log10)),
            prof("test", "#d62728", layer_pts(Split::Test, "cdnv", &log10)),
        ],
        y_range: None,
        integer_x: true,
    };
    let mut panels = vec![acc, cdnv];
    panels.extend(fuzziness_panel(last, nl));
    let epoch = last.epoch.unwrap_or(0);
    write_figure(out, "layer_profile", &render_svg(&format!("Per-layer profile at epoch {epoch}: {title}"), &panels, 2))
}

/// log10 of the separation fuzziness by layer, with the equi-separation fit over the layers up
/// to saturation dashed (docs/method.md); None when the probe has no fuzziness to fit.
fn fuzziness_panel(last: &MetricBlock, nl: usize) -> Option<Panel> {
    let d: Vec<(usize, f64)> = (1..=nl).map(|l| (l, last.value(Some(l), Split::Train, "fuzziness"))).collect();
    let fit = fit_equi_separation(&d)?;
    let measured: Vec<(f64, f64)> =
        d.iter().filter(|(_, v)| v.is_finite() && *v > 0.0).map(|&(l, v)| (l as f64, v.log10())).collect();
    let line: Vec<(f64, f64)> = [fit.first_layer, fit.last_layer]
        .iter()
        .map(|&l| (l as f64, (fit.intercept + fit.slope * l as f64) / std::f64::consts::LN_10))
        .collect();
    Some(Panel {
        title: format!(
            "Fuzziness by layer: ×{:.2} per layer to layer {}, r² {:.3}",
            fit.ratio,
            fit.last_layer,
            fit.r_squared.unwrap_or(f64::NAN)
        ),
        x_label: "layer".into(),
        y_label: "log10 fuzziness (train)".into(),
        series: vec![
            Series { name: "measured".into(), points: measured, color: "#1f77b4".into(), dashed: false },
            Series { name: "equi-separation fit".into(), points: line, color: "#000000".into(), dashed: true },
        ],
        y_range: None,
        integer_x: true,
    })
}

/// The figures of the measures a run may add (`probe.cka`, `probe.weight_spectra`), from its
/// latest probe and its metrics: `cka` (train and test CKA between every pair of layers, the
/// layers at and above the ε = 0.01 effective depth outlined) and `weight_spectra` (each
/// layer's weight stable rank at the end, and against the epoch). Returns the stems written.
pub fn draw_similarity(out: &Path, result: &ProbeResult, blocks: &[MetricBlock]) -> Result<Vec<&'static str>> {
    let mut stems = Vec::new();
    let nl = result.layers.len();
    if let Some(c) = &result.cka {
        let d = result.effective_depth_at(0.01);
        let map = |split: &str, values: &Vec<Vec<Option<f64>>>, batches: u64| Heatmap {
            title: format!("{split} ({batches} minibatches of {})", c.batch_rows),
            values: values.clone(),
            block_from: d,
        };
        let title = format!(
            "Linear CKA between layers{}",
            d.map_or(" (not separable at ε = 0.01)".to_string(), |d| format!(
                ", ε = 0.01 effective depth {d} outlined"
            ))
        );
        let svg = render_heatmaps(
            &title,
            &[map("train", &c.train, c.train_batches), map("test", &c.test, c.test_batches)],
            2,
        );
        write_figure(out, "cka", &svg)?;
        stems.push("cka");
    }
    if result.layers.iter().any(|l| l.weight_stable_rank.is_some()) {
        let end = Series {
            name: "stable rank".into(),
            points: result.layers.iter().map(|l| (l.layer as f64, l.weight_stable_rank.unwrap_or(f64::NAN))).collect(),
            color: "#1f77b4".into(),
            dashed: false,
        };
        let by_epoch: Vec<Series> = (1..=nl)
            .map(|l| Series {
                name: format!("layer {l}"),
                points: blocks
                    .iter()
                    .map(|b| (b.epoch.unwrap_or(0) as f64, b.value(Some(l), Split::Train, "weight_stable_rank")))
                    .collect(),
                color: ramp_color(l - 1, nl),
                dashed: false,
            })
            .collect();
        let panels = [
            Panel {
                title: "at the latest probe".into(),
                x_label: "layer".into(),
                y_label: "stable rank ‖W‖²_F / ‖W‖²₂".into(),
                series: vec![end],
                y_range: None,
                integer_x: true,
            },
            Panel {
                title: "against the epoch".into(),
                x_label: "epoch".into(),
                y_label: "stable rank".into(),
                series: by_epoch,
                y_range: None,
                integer_x: false,
            },
        ];
        write_figure(out, "weight_spectra", &render_svg("Weight spectra: each layer's stable rank", &panels, 2))?;
        stems.push("weight_spectra");
    }
    Ok(stems)
}
