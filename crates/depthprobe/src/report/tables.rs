//! The report's tables: one row per run (results.csv, results.parquet) and every run's final
//! per-layer values (layers.csv, layers.parquet).

use depthprobe_measures::Split;

use super::parquet::Column;
use crate::sweep::plan::{value_text, Plan, Role};
use crate::sweep::record::{LayerFinal, RunRecord};

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The per-run table, as columns (shared by results.csv and results.parquet).
pub fn run_table(plan: &Plan, recs: &[RunRecord]) -> Vec<(String, Column)> {
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
        ("status".into(), s(&|r| r.status.map_or("pending", |s| s.as_str()).to_string())),
        ("reason".into(), s(&|r| r.reason.clone().unwrap_or_default())),
        ("dataset".into(), s(&|r| r.config.data.dataset.to_string())),
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
        // He–Su equi-separation: the fit's per-layer ratio, r², and the last layer it used.
        ("fuzziness_ratio".into(), f(&|r| r.fuzziness_fit.as_ref().map_or(f64::NAN, |x| x.ratio))),
        ("fuzziness_r2".into(), f(&|r| r.fuzziness_fit.as_ref().and_then(|x| x.r_squared).unwrap_or(f64::NAN))),
        ("fuzziness_last_layer".into(), i(&|r| r.fuzziness_fit.as_ref().map_or(-1, |x| x.last_layer as i64))),
        ("wall_s".into(), f(&|r| r.wall_s)),
    ]);
    for e in &eps {
        let e = *e;
        // -1: not separable (or not probed at this ε); the depth itself otherwise.
        cols.push((
            format!("effective_depth_{e}"),
            i(&move |r| match r.effective_depth.iter().find(|(x, _)| (x - e).abs() < 1e-12) {
                Some((_, Some(d))) => *d as i64,
                _ => -1,
            }),
        ));
    }
    // CKA's block and the weights' stable rank around the ε = 0.01 depth, only when some run
    // measured them (other reports keep their columns).
    if recs.iter().any(|r| r.cka.is_some()) {
        let pick = |k: usize| {
            move |r: &RunRecord| {
                super::layer_similarity::cka_block_of(r, super::EPS_MAIN).map_or(f64::NAN, |p| [p.0, p.1][k])
            }
        };
        cols.push(("cka_within_0.01".into(), f(&pick(0))));
        cols.push(("cka_across_0.01".into(), f(&pick(1))));
    }
    if recs.iter().any(|r| r.layers.iter().any(|l| l.weight_stable_rank.is_finite())) {
        let pick = |k: usize| {
            move |r: &RunRecord| {
                super::layer_similarity::rank_split_of(r, super::EPS_MAIN, |l| l.weight_stable_rank)
                    .map_or(f64::NAN, |p| [p.0, p.1][k])
            }
        };
        cols.push(("weight_stable_rank_above_0.01".into(), f(&pick(0))));
        cols.push(("weight_stable_rank_below_0.01".into(), f(&pick(1))));
    }
    // The linear probe's, only when some run has one (other reports keep their columns).
    if recs.iter().any(|r| !r.linear_effective_depth.is_empty()) {
        for e in eps {
            cols.push((
                format!("linear_effective_depth_{e}"),
                i(&move |r| match r.linear_effective_depth.iter().find(|(x, _)| (x - e).abs() < 1e-12) {
                    Some((_, Some(d))) => *d as i64,
                    _ => -1,
                }),
            ));
        }
    }
    cols
}

/// The report's table of NCC against linear-probe effective depth per finished run, when some
/// run has a linear probe.
pub fn linear_markdown(plan: &Plan, recs: &[&RunRecord]) -> Option<String> {
    let runs: Vec<&&RunRecord> = recs.iter().filter(|r| r.done() && !r.linear_effective_depth.is_empty()).collect();
    if runs.is_empty() {
        return None;
    }
    let eps: Vec<f64> = runs[0].linear_effective_depth.iter().map(|e| e.0).collect();
    let show = |d: Option<&(f64, Option<usize>)>| d.and_then(|x| x.1).map_or("–".to_string(), |d| d.to_string());
    let mut s = String::from("| run |");
    for a in &plan.axes {
        s.push_str(&format!(" {a} |"));
    }
    for e in &eps {
        s.push_str(&format!(" NCC ε={e} | linear ε={e} |"));
    }
    s.push_str(" top linear test acc |\n|---|");
    s.push_str(&"---|".repeat(plan.axes.len() + 2 * eps.len() + 1));
    s.push('\n');
    for r in runs {
        s.push_str(&format!("| {} |", r.run.id));
        for a in &plan.axes {
            let v = r.run.values.iter().find(|(k, _)| k == a).map(|(_, v)| value_text(v)).unwrap_or_default();
            s.push_str(&format!(" {v} |"));
        }
        for e in &eps {
            let find = |v: &[(f64, Option<usize>)]| v.iter().find(|(x, _)| (x - e).abs() < 1e-12).copied();
            s.push_str(&format!(
                " {} | {} |",
                show(find(&r.effective_depth).as_ref()),
                show(find(&r.linear_effective_depth).as_ref())
            ));
        }
        let top = r.layers.last().map_or(f64::NAN, |l| l.linear_test_acc);
        s.push_str(&if top.is_finite() { format!(" {top:.4} |\n") } else { " – |\n".to_string() });
    }
    Some(s)
}

pub fn columns_csv(cols: &[(String, Column)]) -> String {
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
pub fn layer_table(recs: &[RunRecord]) -> Vec<(String, Column)> {
    let rows: Vec<(&RunRecord, usize)> = recs.iter().flat_map(|r| (0..r.layers.len()).map(move |i| (r, i))).collect();
    let f = |g: fn(&LayerFinal) -> f64| Column::F64(rows.iter().map(|(r, i)| g(&r.layers[*i])).collect());
    let mut cols = vec![
        ("id".into(), Column::Str(rows.iter().map(|(r, _)| r.run.id.clone()).collect())),
        ("layer".into(), Column::I64(rows.iter().map(|(_, i)| *i as i64 + 1).collect())),
        ("ncc_train_acc".into(), f(|l| l.ncc_train_acc)),
        ("ncc_test_acc".into(), f(|l| l.ncc_test_acc)),
        ("cdnv_train".into(), f(|l| l.cdnv_train)),
        ("cdnv_test".into(), f(|l| l.cdnv_test)),
    ];
    if rows.iter().any(|(r, i)| r.layers[*i].linear_train_acc.is_finite()) {
        cols.push(("linear_train_acc".into(), f(|l| l.linear_train_acc)));
        cols.push(("linear_test_acc".into(), f(|l| l.linear_test_acc)));
    }
    if rows.iter().any(|(r, i)| r.layers[*i].weight_stable_rank.is_finite()) {
        cols.push(("weight_rank".into(), f(|l| l.weight_rank)));
        cols.push(("weight_stable_rank".into(), f(|l| l.weight_stable_rank)));
    }
    if rows.iter().any(|(r, _)| r.cka.is_some()) {
        // CKA of the layer with the top layer, train.
        let v = rows
            .iter()
            .map(|(r, i)| r.cka.as_ref().and_then(|c| c.get(Split::Train, i + 1, r.layers.len())).unwrap_or(f64::NAN))
            .collect();
        cols.push(("cka_top_train".into(), Column::F64(v)));
    }
    cols
}
