//! `depthprobe report DIR`: every run of a sweep in one table (results.csv, results.parquet,
//! layers.csv) and the paper's figures for whichever axes the sweep varies:
//!
//! * model.depth → per-layer NCC train accuracy against epoch, one panel per depth (Fig. 1),
//!   and final per-layer NCC accuracy / log-CDNV profiles across depths;
//! * corruption.p → effective depth against p, mean and min–max over seeds (Fig. 2);
//! * model.width → the same against width, and per-layer profiles across widths (App. Fig. 7);
//! * data.train_per_class → the scale ladder: per cell, what every layer reached and when the top
//!   layer stopped rising, and the top layer's NCC train accuracy against the train size;
//! * [bound] → the bound table against the measured test error (Tab. 1);
//! * every sweep → (g) equi-separation: the fuzziness decay ratio and its fit's r² per group;
//! * runs with `probe.cka` / `probe.weight_spectra` → (h) the CKA block above the effective
//!   depth, (i) lower weight rank above it, the CKA heatmaps and the rank figures.
//!
//! | stage | file |
//! |---|---|
//! | figures | `figures.rs` |
//! | checks of the paper's claims | `checks.rs` (the bound's: `bound.rs`, `uniform_errors.rs`) |
//! | a CONV depth sweep on CIFAR-10 against the paper's Fig. 1 | `paper.rs` |
//! | a scale ladder (train size against the other axes) | `ladder.rs` |
//! | He–Su equi-separation per group of seeds | `equi_separation.rs` |
//! | CKA block and weight rank at the effective depth | `layer_similarity.rs` |
//! | results and layers tables | `tables.rs`, `parquet.rs` |
//! | Markdown and HTML | `render.rs` |

mod checks;
pub use checks::NOISE_TOLERANCE;
mod equi_separation;
mod figures;
mod ladder;
mod layer_similarity;
mod paper;
mod parquet;
mod render;
mod run;
mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use depthprobe_runfolder::{write_all_atomic, Status};

use crate::bound;
use crate::figures::svg_to_png;
use crate::sweep::plan::{value_text, Role, SweepDir};
use crate::sweep::record::{load_all, RunRecord};

/// Axes that only repeat a setting (averaged over, never a study axis).
pub(crate) const SEED_AXES: [&str; 2] = ["train.seed", "corruption.seed"];
/// The main ε for checks and the effective-depth plots (the paper's strict reading).
pub(crate) const EPS_MAIN: f64 = 0.01;

pub(crate) fn axis_value(r: &RunRecord, key: &str) -> Option<f64> {
    r.run.values.iter().find(|(k, _)| k == key).and_then(|(_, v)| match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    })
}

/// The label of a run's group for a study axis: the other non-seed axes' values.
pub(crate) fn group_of(r: &RunRecord, study: &str) -> String {
    r.run
        .values
        .iter()
        .filter(|(k, _)| k != study && !SEED_AXES.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A study axis value as a table shows it: 8, 0.05, or – without one.
pub(crate) fn x_text(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// The finished runs grouped by (group, study value; NaN without a study axis), in order of the
/// group and then the value: the cells a per-group observation judges.
pub(crate) fn cells<'a>(
    recs: &[&'a RunRecord],
    study: Option<(&str, &str)>,
) -> Vec<((String, f64), Vec<&'a RunRecord>)> {
    let mut out: Vec<((String, f64), Vec<&RunRecord>)> = Vec::new();
    for r in recs.iter().filter(|r| r.done()) {
        let (g, x) = match study {
            Some((k, _)) => (group_of(r, k), axis_value(r, k).unwrap_or(f64::NAN)),
            None => (group_of(r, ""), f64::NAN),
        };
        match out.iter_mut().find(|((gg, xx), _)| *gg == g && (xx == &x || (xx.is_nan() && x.is_nan()))) {
            Some((_, v)) => v.push(r),
            None => out.push(((g, x), vec![r])),
        }
    }
    out.sort_by(|a, b| a.0 .0.cmp(&b.0 .0).then(a.0 .1.total_cmp(&b.0 .1)));
    out
}

pub(crate) fn fmt(v: f64, d: usize) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.d$}")
    }
}

/// Per (group, x) statistics of the effective depth and train accuracy over seeds.
pub(crate) struct AxisPoint {
    pub x: f64,
    pub depths: Vec<f64>,
    pub not_separable: usize,
    pub train_acc: Vec<f64>,
    pub test_acc: Vec<f64>,
}

pub(crate) fn axis_study(recs: &[&RunRecord], study: &str, eps: f64) -> BTreeMap<String, Vec<AxisPoint>> {
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

/// What `report` wrote.
pub struct ReportOutput {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub checks: Vec<String>,
}

/// Aggregate the sweep in `dir` and write its report into `dir/report`; a run folder (no
/// plan.json, a summary.json) gets the report of its one run (`run.rs`).
pub fn report(dir: &Path) -> Result<ReportOutput> {
    if !dir.join("plan.json").exists() && dir.join("summary.json").exists() {
        return run::report_run(dir);
    }
    let sd = SweepDir(dir.to_path_buf());
    let plan = sd.read_plan()?;
    let recs = load_all(&sd)?;
    let out = dir.join("report");
    std::fs::create_dir_all(&out)?;
    let grid: Vec<&RunRecord> = recs.iter().filter(|r| r.run.role == Role::Grid).collect();
    let has = |k: &str| plan.axes.iter().any(|a| a == k);

    let mut figs: Vec<figures::Figure> = Vec::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    if has("model.depth") {
        figs.extend(figures::depth_epoch_figure(&sd, &grid)?);
        figs.extend(figures::profile_figure(&grid, "model.depth", "L", "layer_profiles_by_depth"));
        if let Some((f, t)) = figures::axis_figure(&grid, "model.depth", "L", "effective_depth_vs_depth") {
            figs.push(f);
            tables.push(("Effective depth against network depth L".into(), t));
        }
    }
    if has("corruption.p") {
        if let Some((f, t)) = figures::axis_figure(&grid, "corruption.p", "p", "effective_depth_vs_noise") {
            figs.push(f);
            tables.push(("Effective depth against the corrupted fraction p".into(), t));
        }
        figs.extend(figures::profile_figure(&grid, "corruption.p", "p", "layer_profiles_by_noise"));
    }
    if has("model.width") {
        if let Some((f, t)) = figures::axis_figure(&grid, "model.width", "H", "effective_depth_vs_width") {
            figs.push(f);
            tables.push(("Effective depth against width H".into(), t));
        }
        figs.extend(figures::profile_figure(&grid, "model.width", "H", "layer_profiles_by_width"));
    }
    if has(ladder::LADDER_AXIS) {
        if let Some((f, t)) = ladder::ladder(&sd, &grid)? {
            figs.push(f);
            tables.push(("The scale ladder: per cell (train size n × the other axes)".into(), t));
        }
    }
    let bound_rows = if plan.bound.is_some() { crate::sweep::bound_rows(&sd)? } else { Vec::new() };
    if let Some(f) = figures::bound_figure(&bound_rows) {
        figs.push(f);
        tables.push((
            "The comparative bound (Tab. 1; bold: smallest over the p grid)".into(),
            bound::markdown(&bound_rows),
        ));
    }
    let study = [("model.depth", "L"), ("corruption.p", "p"), ("model.width", "H")].into_iter().find(|(k, _)| has(k));
    let sensitivity = figures::eps_sensitivity(&grid, study);
    if let Some((f, _)) = &sensitivity {
        figs.push(figures::Figure { stem: f.stem.clone(), caption: f.caption.clone(), svg: f.svg.clone() });
    }
    if let Some(t) = tables::linear_markdown(&plan, &grid) {
        tables.push(("Linear probe: effective depth beside the NCC one (finished runs)".into(), t));
    }
    let mut judged: Vec<checks::Check> = Vec::new();
    if has("model.depth") {
        // The claim is stated at ε = 0.01; the looser ε = 0.05 reading is reported beside it.
        judged.extend(checks::check_depth(&grid, EPS_MAIN, "a"));
        judged.extend(checks::check_depth(&grid, 0.05, "a′"));
        if let Some((text, table)) = paper::fig1_comparison(&grid) {
            judged.push(checks::Check {
                text,
                tables: vec![("Final NCC train accuracy per layer against the paper's Fig. 1".into(), table)],
            });
        }
    }
    if has("corruption.p") {
        judged.extend(checks::check_noise(&grid, EPS_MAIN, "b"));
        judged.extend(checks::check_noise(&grid, 0.05, "b′"));
    }
    if has("model.width") {
        judged.extend(checks::check_width(&grid));
    }
    if let Some((c, f)) = equi_separation::equi_separation(&grid, study) {
        judged.push(c);
        figs.extend(f);
    }
    if let Some((c, f)) = layer_similarity::cka_block(&grid, study) {
        judged.push(c);
        figs.extend(f);
    }
    if let Some((c, f)) = layer_similarity::weight_rank(&sd, &grid, study)? {
        judged.push(c);
        figs.extend(f);
    }
    let mut found = Vec::new();
    for c in judged {
        found.push(c.text);
        tables.extend(c.tables);
    }
    found.extend(bound::check(&bound_rows));
    if let Some((text, t)) = bound::check_dmin(&bound_rows) {
        found.push(text);
        tables.extend(t);
    }
    if plan.bound.is_some() {
        // (f): the uniform-errors assumption, from the clean networks' predictions on S2.
        let clean: Vec<&RunRecord> =
            recs.iter().filter(|r| r.done() && matches!(r.run.role, bound::Role::Clean { .. })).collect();
        for g in crate::stats::distinct(clean.iter().map(|r| r.bound_group())) {
            let runs: Vec<Vec<(u32, u32)>> =
                clean.iter().filter(|r| r.bound_group() == g).filter_map(|r| r.s2_predictions.clone()).collect();
            if runs.is_empty() {
                found.push(format!(
                    "**(f) uniform errors on S2{}: not checked.** Its clean runs wrote no `s2_predictions.csv` (trained by a build before it existed).",
                    if g.is_empty() { String::new() } else { format!(" ({g})") }
                ));
                continue;
            }
            let classes = runs.iter().flatten().map(|&(l, p)| l.max(p) as usize + 1).max().unwrap_or(0);
            let (text, t) = crate::uniform_errors::check(&g, &runs, classes);
            found.push(text);
            tables.extend(t);
        }
    }

    let count = |st: Option<Status>| recs.iter().filter(|r| r.status == st).count();
    let status_line = format!(
        "{} runs: {} done, {} failed, {} running or interrupted, {} pending.",
        recs.len(),
        count(Some(Status::Done)),
        count(Some(Status::Failed)),
        count(Some(Status::Running)),
        count(None)
    );
    let failed: Vec<String> = recs
        .iter()
        .filter(|r| r.status == Some(Status::Failed))
        .map(|r| format!("{} ({}): {}", r.run.index, r.run.id, r.reason.clone().unwrap_or_default()))
        .collect();
    let page = render::Page {
        name: &plan.name,
        status_line,
        failed,
        checks: &found,
        figures: &figs,
        tables: &tables,
        provenance: provenance(dir, &recs),
        bound_table: !bound_rows.is_empty(),
        sweep_src: std::fs::read_to_string(dir.join("sweep.toml")).unwrap_or_default(),
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for f in &figs {
        files.push((out.join(format!("{}.svg", f.stem)), f.svg.clone().into_bytes()));
        files.push((out.join(format!("{}.png", f.stem)), svg_to_png(&f.svg)?));
    }
    if let Some((_, csv)) = &sensitivity {
        files.push((out.join("eps_sensitivity.csv"), csv.clone().into_bytes()));
    }
    let cols = tables::run_table(&plan, &recs);
    files.push((out.join("results.csv"), tables::columns_csv(&cols).into_bytes()));
    files.push((out.join("results.parquet"), parquet::write(&cols)?));
    let layers = tables::layer_table(&recs);
    files.push((out.join("layers.csv"), tables::columns_csv(&layers).into_bytes()));
    files.push((out.join("layers.parquet"), parquet::write(&layers)?));
    if !bound_rows.is_empty() {
        files.push((out.join("bound.csv"), bound::csv(&bound_rows).into_bytes()));
    }
    files.push((out.join("report.md"), render::markdown(&page).into_bytes()));
    files.push((out.join("index.html"), render::html(&page).into_bytes()));
    write_all_atomic(&files)?;
    Ok(ReportOutput { dir: out, files: files.into_iter().map(|f| f.0).collect(), checks: found })
}

/// A logged command with the path after `--data-dir` replaced by DATA: the report is read on other
/// machines, where this machine's folders mean nothing.
fn data_dir_as_placeholder(line: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut words = line.split(' ').peekable();
    while let Some(w) = words.next() {
        if w == "--data-dir" && words.peek().is_some() {
            words.next();
            out.push("--data-dir DATA".into());
        } else if w.starts_with("--data-dir=") {
            out.push("--data-dir=DATA".into());
        } else {
            out.push(w.to_string());
        }
    }
    out.join(" ")
}

/// Where the numbers come from: the depthprobe build that wrote this report and the command,
/// and the builds that trained the runs (from their summary.json).
fn provenance(dir: &Path, recs: &[RunRecord]) -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut trained: BTreeMap<String, usize> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.status.is_some()) {
        *trained.entry(r.producer.clone().unwrap_or_else(|| "not recorded".into())).or_default() += 1;
    }
    let mut lines = vec![format!(
        "Report written by depthprobe {} with `depthprobe {}` (sweep folder `{}`).",
        crate::BUILD,
        args.join(" "),
        dir.display()
    )];
    for (who, n) in trained {
        lines.push(format!("{n} run(s) trained by depthprobe {who}."));
    }
    let mut machines: BTreeMap<String, usize> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.status.is_some()) {
        *machines.entry(r.machine.clone().unwrap_or_else(|| "not recorded".into())).or_default() += 1;
    }
    for (m, n) in machines {
        lines.push(format!("{n} run(s) trained on: {m}."));
    }
    let walls: Vec<f64> = recs.iter().filter(|r| r.done()).map(|r| r.wall_s).filter(|w| w.is_finite()).collect();
    if !walls.is_empty() {
        // Runs of a batched group share their wall time; a sweep's own is in commands.log.
        let longest = walls.iter().cloned().fold(0.0, f64::max);
        lines.push(format!(
            "Wall time of the longest run (or batched group): {longest:.0} s. The sweep's own wall time is the `sweep local … ended after` line below, when the sweep was run by a build that writes it."
        ));
    }
    match std::fs::read_to_string(SweepDir(dir.to_path_buf()).commands_path()) {
        Ok(log) => {
            lines.push("Commands run on the sweep folder (`commands.log`; the data folder shown as DATA):".into());
            lines.extend(log.lines().map(|l| format!("`{}`", data_dir_as_placeholder(l))));
        }
        Err(_) => {
            lines.push("No `commands.log` in the sweep folder: the commands that ran it were not recorded.".into())
        }
    }
    lines
}

#[cfg(test)]
mod provenance_tests {
    #[test]
    fn data_folders_are_shown_as_data() {
        let l = "t · depthprobe sweep local d -j 2 --data-dir /some/where/data --quiet";
        assert_eq!(super::data_dir_as_placeholder(l), "t · depthprobe sweep local d -j 2 --data-dir DATA --quiet");
        assert_eq!(super::data_dir_as_placeholder("x --data-dir=/a/b y"), "x --data-dir=DATA y");
        assert_eq!(super::data_dir_as_placeholder("no data dir here"), "no data dir here");
    }
}
