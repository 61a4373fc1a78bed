//! `depthprobe report RUN`: the report of one run folder (a `train` run, or one a Python
//! training loop filled with `depthprobe.torch.ProbeEvery`): its two figures, the per-layer
//! table of the latest probe with the linear probe beside NCC when it was measured, and the
//! effective depths.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use depthprobe_runfolder::{write_all_atomic, RunFolder};

use super::render::{html_escape, md_table_html, page_head};
use super::{ReportOutput, EPS_MAIN};
use crate::figures::run::{draw_similarity, draw_titled};

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

fn depth(d: Option<usize>) -> String {
    d.map_or("not separable".into(), |d| d.to_string())
}

/// What the run's CKA and weight spectra say about the layers above the ε = 0.01 effective
/// depth (the sweep report's (h) and (i) for one run), as paragraphs with their heading.
fn similarity_text(result: &depthprobe_measures::ProbeResult) -> Vec<String> {
    let mut out = Vec::new();
    let d = result.effective_depth_at(EPS_MAIN);
    let nl = result.layers.len();
    if let Some(c) = &result.cka {
        let b = d.and_then(|d| c.block_train.get(&depthprobe_measures::eps_key(EPS_MAIN)).filter(|b| b.depth == d));
        out.push(match (d, b.and_then(|b| Some((b.within?, b.across?)))) {
            (Some(d), Some((w, a))) => format!(
                "Layer similarity (linear CKA, train, {} minibatches of {} rows): the layers at and above the ε = {EPS_MAIN} effective depth {d} have mean CKA {w:.3} among themselves and {a:.3} with the layers below ({}).",
                c.train_batches,
                c.batch_rows,
                if w > a { "a block" } else { "no block" }
            ),
            (Some(d), None) => format!(
                "Layer similarity (linear CKA): the ε = {EPS_MAIN} effective depth is {d} of {nl}, so the block above it has no {} to compare.",
                if d == nl { "pair" } else { "layers below" }
            ),
            (None, _) => format!("Layer similarity (linear CKA): no layer is separable at ε = {EPS_MAIN}, so there is no block to compare."),
        });
    }
    let sr: Vec<f64> = result.layers.iter().map(|l| l.weight_stable_rank.unwrap_or(f64::NAN)).collect();
    if sr.iter().any(|v| v.is_finite()) {
        out.push(match d.and_then(|d| Some((d, super::layer_similarity::rank_split(&sr, d)?))) {
            Some((d, (above, below))) => format!(
                "Weight spectra: the weights of layers {}–{nl}, above the ε = {EPS_MAIN} effective depth, have mean stable rank {above:.2}; layers 2–{d} have {below:.2} ({}; layer 1 reads the input and is left out).",
                d + 1,
                if above < below { "lower above" } else { "not lower above" }
            ),
            None => format!("Weight spectra: the ε = {EPS_MAIN} effective depth leaves no layers both above it and from layer 2 below it to compare."),
        });
    }
    out
}

pub fn report_run(dir: &Path) -> Result<ReportOutput> {
    let folder = RunFolder::new(dir);
    let summary = folder.summary()?.with_context(|| format!("{}: no summary.json", dir.display()))?;
    let result = summary
        .result
        .as_ref()
        .with_context(|| format!("{}: the run has not been probed yet (summary.json holds no probe)", dir.display()))?;
    let blocks = folder.metrics()?;
    let out = dir.join("report");
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let name = folder.name();
    let title = match (&summary.model, summary.dataset) {
        (Some(m), Some(d)) => format!("{} on {d}", m.name()),
        _ => name.clone(),
    };
    draw_titled(&out, &title, result.layers.len(), &blocks)?;
    let extra = draw_similarity(&out, result, &blocks)?;
    let similarity = similarity_text(result);

    let linear = result.layers.iter().any(|l| l.linear_train_acc.is_some());
    let mut layers = String::from("| layer | dim | NCC train | NCC test | CDNV train | CDNV test |");
    layers.push_str(if linear { " linear train | linear test |\n" } else { "\n" });
    layers.push_str(&"|---".repeat(if linear { 8 } else { 6 }));
    layers.push_str("|\n");
    for l in &result.layers {
        let _ = write!(
            layers,
            "| {} | {} | {:.4} | {} | {} | {} |",
            l.layer,
            l.dim,
            l.ncc_train_acc,
            cell(l.ncc_test_acc),
            cell(l.cdnv_train),
            cell(l.cdnv_test)
        );
        if linear {
            let _ = write!(layers, " {} | {} |", cell(l.linear_train_acc), cell(l.linear_test_acc));
        }
        layers.push('\n');
    }
    let mut depths =
        String::from(if linear { "| ε | NCC | linear probe |\n|---|---|---|\n" } else { "| ε | NCC |\n|---|---|\n" });
    for (eps, d) in &result.effective_depth {
        let _ = write!(depths, "| {eps} | {} |", depth(*d));
        if linear {
            let _ = write!(depths, " {} |", depth(result.linear_effective_depth.get(eps).copied().flatten()));
        }
        depths.push('\n');
    }
    let status = format!(
        "{}: status {}, latest probe at epoch {}, {} train and {} test samples, {} layers.",
        name,
        summary.status.map_or("not recorded", |s| s.as_str()),
        summary.probe_epoch.map_or("–".into(), |e| e.to_string()),
        result.train_samples,
        result.test_samples,
        result.layers.len()
    );
    // Fitted from the layers, not read from summary.json: a run probed before the fit stopped
    // at saturation gets today's rule.
    let equi = match &result.equi_separation_fit() {
        Some(f) => format!(
            "The separation fuzziness D changes by a factor {:.3} per layer over layers {}–{} (least squares of log D on the layer; r² {}); {}.",
            f.ratio,
            f.first_layer,
            f.last_layer,
            f.r_squared.map_or("–".into(), |r| format!("{r:.3}")),
            if f.last_layer >= result.layers.len() {
                "it keeps falling to the top layer".to_string()
            } else {
                format!(
                    "layer {} is the first within {}× of the smallest D any layer reaches, so the fit stops there",
                    f.last_layer,
                    depthprobe_measures::SATURATION_FACTOR
                )
            }
        ),
        None => "No equi-separation fit: fewer than two layers before the fuzziness saturates.".into(),
    };
    let mut producer = summary.producer.clone().unwrap_or_else(|| "not recorded".into());
    if let Some(m) = &summary.machine {
        producer.push_str(&format!(" on {m}, in {:.0} s wall", summary.wall_s));
    }
    let md = format!(
        "# Run report: {name}\n\n{status}\n\n## Effective depth (first layer whose train error is ≤ ε)\n\n{depths}\n## Equi-separation (He and Su)\n\n{equi}\n\n{similarity_md}## Figures\n\n![NCC accuracy per layer against epoch](ncc_by_epoch.png)\n\n![Per-layer profile](layer_profile.png)\n\n{extra_md}## Per-layer measures at the latest probe\n\n{layers}\n## Provenance\n\nProbed by depthprobe {producer}; report written by depthprobe {}. Definitions: docs/method.md.\n",
        crate::BUILD,
        similarity_md = similarity.iter().map(|p| format!("{p}\n\n")).collect::<String>(),
        extra_md = extra.iter().map(|s| format!("![{s}]({s}.png)\n\n")).collect::<String>(),
    );
    let svg = |stem: &str| std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap_or_default();
    let html = format!(
        "{}<p>{}</p>\n<h2>Effective depth (first layer whose train error is ≤ ε)</h2>\n{}<h2>Equi-separation (He and Su)</h2>\n<p>{}</p>\n{}<h2>Figures</h2>\n<figure>{}</figure>\n<figure>{}</figure>\n{}<h2>Per-layer measures at the latest probe</h2>\n{}<h2>Provenance</h2>\n<p>Probed by depthprobe {}; report written by depthprobe {}.</p>\n</body></html>\n",
        page_head("Run report", &name),
        html_escape(&status),
        md_table_html(&depths),
        html_escape(&equi),
        similarity.iter().map(|p| format!("<p>{}</p>\n", html_escape(p))).collect::<String>(),
        svg("ncc_by_epoch"),
        svg("layer_profile"),
        extra.iter().map(|s| format!("<figure>{}</figure>\n", svg(s))).collect::<String>(),
        md_table_html(&layers),
        html_escape(&producer),
        html_escape(crate::BUILD)
    );
    let files = vec![(out.join("report.md"), md.into_bytes()), (out.join("index.html"), html.into_bytes())];
    write_all_atomic(&files)?;
    let mut written: Vec<_> = files.into_iter().map(|f| f.0).collect();
    for stem in ["ncc_by_epoch", "layer_profile"].into_iter().chain(extra) {
        for ext in ["svg", "png"] {
            written.push(out.join(format!("{stem}.{ext}")));
        }
    }
    Ok(ReportOutput { dir: out, files: written, checks: Vec::new() })
}
