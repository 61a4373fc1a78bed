//! The checks of the paper's claims, computed from the numbers and written into the report as
//! they come out: (a) depth, (b) label noise, (d) width; (c), the bound, is in `bound.rs`.

use std::collections::BTreeMap;

use super::axis_study;
use crate::stats::{
    bootstrap, group_rows, max_drop, mean, min_max, range_of_means, seeds_note, seeds_to_decide, Interval, Verdict,
};
use crate::sweep::record::{LayerFinal, RunRecord};

/// A check's verdict paragraph and the per-group tables behind it.
pub struct Check {
    pub text: String,
    pub tables: Vec<(String, String)>,
}

fn interval_text(iv: &Interval) -> String {
    format!("{:.2} (95% interval [{:.2}, {:.2}])", iv.value, iv.lo, iv.hi)
}

/// Check (a): above the smallest L whose runs all separate (L₀), the mean ε effective depths of
/// the depths stay within ±1 layer of a common value: their range ≤ 2, judged on its bootstrap
/// interval over seeds (a run that does not separate counts as L).
pub fn check_depth(recs: &[&RunRecord], eps: f64, label: &str) -> Option<Check> {
    let mut by_l: BTreeMap<usize, Vec<(Option<usize>, usize)>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && r.config.corruption.p == 0.0) {
        let d = r.effective_depth.iter().find(|(e, _)| (e - eps).abs() < 1e-12).and_then(|x| x.1);
        let Some((as_l, _)) = r.depth_at(eps) else { continue };
        by_l.entry(r.config.model.depth).or_default().push((d, as_l));
    }
    if by_l.len() < 2 {
        return None;
    }
    let l0 = by_l.iter().find(|(_, ds)| ds.iter().all(|d| d.0.is_some())).map(|(l, _)| *l);
    let Some(l0) = l0 else {
        return Some(Check {
            text: format!(
                "**({label}) depth sweep at ε={eps}: FAILS.** No depth separates the training data at ε={eps} in every seed."
            ),
            tables: Vec::new(),
        });
    };
    let above: Vec<(usize, Vec<f64>)> =
        by_l.iter().filter(|(l, _)| **l >= l0).map(|(l, d)| (*l, d.iter().map(|x| x.1 as f64).collect())).collect();
    let groups: Vec<Vec<f64>> = above.iter().map(|a| a.1.clone()).collect();
    let iv = bootstrap(&groups, range_of_means);
    let verdict = Verdict::at_most(&iv, 2.0);
    let (lo, hi) = min_max(groups.iter().flatten().copied());
    let seeds = min_max(groups.iter().map(|g| g.len() as f64));
    let not_sep = by_l.iter().filter(|(l, _)| **l >= l0).flat_map(|(_, d)| d).filter(|d| d.0.is_none()).count();
    let labels: Vec<String> = above.iter().map(|a| format!("L={}", a.0)).collect();
    Some(Check {
        text: format!(
            "**({label}) depth sweep at ε={eps}: {}.** Smallest depth whose runs all separate at ε={eps}: L₀={l0}. For L ≥ L₀ the mean effective depths span {} layers (the claim needs ≤ 2, within ±1 layer; inconclusive when the interval straddles 2); single runs range over {}–{}{}; {}–{} seeds per depth.{}",
            verdict.word(),
            interval_text(&iv),
            lo,
            hi,
            if not_sep > 0 { format!(" ({not_sep} run(s) not separable, counted as L)") } else { String::new() },
            seeds.0,
            seeds.1,
            seeds_note(&iv, 2.0, seeds.0 as usize)
        ),
        tables: vec![(format!("({label}) effective depth at ε={eps} per depth L ≥ L₀ over seeds"), group_rows(&labels, &groups))],
    })
}

/// The one layer a run's effective depth may move, as the paper allows: the noise check lets the
/// mean fall by at most this between consecutive p (a plateau at L could never be shown
/// non-decreasing at a threshold of 0).
pub const NOISE_TOLERANCE: f64 = 1.0;

/// Check (b): the mean effective depth over seeds does not fall as p grows (the largest drop
/// between consecutive p ≤ NOISE_TOLERANCE, judged on its bootstrap interval), the networks fit
/// their (corrupted) training labels (train accuracy ≥ 0.99) and at least 3 seeds per p.
pub fn check_noise(recs: &[&RunRecord], eps: f64, label: &str) -> Option<Check> {
    let groups = axis_study(recs, "corruption.p", eps);
    if groups.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    let mut tables = Vec::new();
    for (g, pts) in &groups {
        let samples: Vec<Vec<f64>> = pts.iter().map(|p| p.depths.clone()).collect();
        let iv = bootstrap(&samples, max_drop);
        let min_train = min_max(pts.iter().flat_map(|p| p.train_acc.iter().copied())).0;
        let seeds = pts.iter().map(|p| p.depths.len()).min().unwrap_or(0);
        let mut verdict = Verdict::at_most(&iv, NOISE_TOLERANCE);
        let mut power = seeds_note(&iv, NOISE_TOLERANCE, seeds);
        if min_train < 0.99 {
            verdict = Verdict::Fails;
            power.clear();
        } else if seeds < 3 && verdict == Verdict::Holds {
            verdict = Verdict::Inconclusive;
            power = " 3 seeds per p would decide it.".into();
        }
        let seq: Vec<String> = pts.iter().map(|p| format!("p={}: {:.2}", p.x, mean(&p.depths))).collect();
        let gname = if g.is_empty() { String::new() } else { format!(" ({g})") };
        lines.push(format!(
            "**({label}) noise sweep at ε={eps}{gname}: {}.** Mean ε={eps} effective depth over seeds: {}; largest drop between consecutive p: {} (the claim needs ≤ {NOISE_TOLERANCE}: the one layer a run may move); lowest network train accuracy (on the corrupted labels) {:.4} (need ≥ 0.99){}.{power}",
            verdict.word(),
            seq.join(", "),
            interval_text(&iv),
            min_train,
            if seeds < 3 { "; fewer than 3 seeds" } else { "" }
        ));
        let labels: Vec<String> = pts.iter().map(|p| format!("p={}", p.x)).collect();
        tables.push((
            format!("({label}) effective depth at ε={eps} per p{gname} over seeds"),
            group_rows(&labels, &samples),
        ));
    }
    Some(Check { text: lines.join("\n\n"), tables })
}

/// Check (d), the width claim (docs/method.md, "Claims checked"): per layer, CDNV (train, test)
/// does not rise and NCC accuracy (train, test) does not fall with width, on the means over
/// seeds, each judged on the bootstrap interval of its largest step the wrong way.
pub fn check_width(recs: &[&RunRecord]) -> Option<Check> {
    // Widths are compared within each setting of the other axes (a ladder's train size, say).
    let mut groups: BTreeMap<String, Vec<&RunRecord>> = BTreeMap::new();
    for r in recs {
        groups.entry(super::group_of(r, "model.width")).or_default().push(r);
    }
    let checks: Vec<Check> = groups.iter().filter_map(|(g, rs)| check_width_in(rs, g)).collect();
    (!checks.is_empty()).then(|| Check {
        text: checks.iter().map(|c| c.text.clone()).collect::<Vec<_>>().join("\n\n"),
        tables: checks.into_iter().flat_map(|c| c.tables).collect(),
    })
}

/// Check (d) among runs that differ only in width and seeds (`group`: the other axes' values).
fn check_width_in(recs: &[&RunRecord], group: &str) -> Option<Check> {
    let gname = if group.is_empty() { String::new() } else { format!(" ({group})") };
    let mut by_h: BTreeMap<usize, Vec<&RunRecord>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.done() && !r.layers.is_empty()) {
        by_h.entry(r.config.model.width).or_default().push(r);
    }
    if by_h.len() < 2 {
        return None;
    }
    let layers = by_h.values().flat_map(|rs| rs.iter().map(|r| r.layers.len())).min().unwrap_or(0);
    type Get = fn(&LayerFinal) -> f64;
    let curves: [(&str, Get, bool); 4] = [
        ("CDNV train", |l| l.cdnv_train, false),
        ("CDNV test", |l| l.cdnv_test, false),
        ("NCC train", |l| l.ncc_train_acc, true),
        ("NCC test", |l| l.ncc_test_acc, true),
    ];
    let mut lines = Vec::new();
    let mut verdicts = Vec::new();
    let mut tables = Vec::new();
    let seeds = by_h.values().map(|rs| rs.len()).min().unwrap_or(0);
    let widths: Vec<usize> = by_h.keys().copied().collect();
    // Per layer and curve: the verdict and the largest step the wrong way, where it is.
    let mut per_layer = vec![Vec::new(); layers];
    for (name, get, rising) in curves {
        let mut ok_layers = Vec::new();
        let mut failed = Vec::new();
        let mut unsure = 0;
        // Seeds per width that would decide every inconclusive layer (None: one sits on 0).
        let mut needed: Option<Option<usize>> = None;
        for (i, cells) in per_layer.iter_mut().enumerate() {
            // Rising curves must not drop; falling ones must not rise (a drop of the negation).
            let samples: Vec<Vec<f64>> = by_h
                .values()
                .map(|rs| rs.iter().map(|r| if rising { get(&r.layers[i]) } else { -get(&r.layers[i]) }).collect())
                .collect();
            let iv = bootstrap(&samples, max_drop);
            let v = Verdict::at_most(&iv, 0.0);
            let means: Vec<f64> = samples.iter().map(|g| mean(g)).collect();
            let step =
                (0..means.len() - 1).max_by(|&a, &b| (means[a] - means[a + 1]).total_cmp(&(means[b] - means[b + 1])));
            cells.push(format!(
                "{}: {:+.4} at H={}→{} [{:+.4}, {:+.4}]",
                v.word(),
                iv.value,
                step.map_or(0, |k| widths[k]),
                step.map_or(0, |k| widths[k + 1]),
                iv.lo,
                iv.hi
            ));
            match v {
                Verdict::Holds => ok_layers.push(i + 1),
                Verdict::Inconclusive => {
                    unsure += 1;
                    let n = seeds_to_decide(&iv, 0.0, seeds);
                    needed = Some(match (needed, n) {
                        (None, n) => n,
                        (Some(Some(a)), Some(b)) => Some(a.max(b)),
                        _ => None,
                    });
                }
                Verdict::Fails => failed.push(i + 1),
            }
            verdicts.push(v);
        }
        let top_groups: Vec<Vec<f64>> =
            by_h.values().map(|rs| rs.iter().map(|r| get(&r.layers[layers - 1])).collect()).collect();
        let top: Vec<String> = by_h.keys().zip(&top_groups).map(|(h, g)| format!("H={h}: {:.4}", mean(g))).collect();
        tables.push((
            format!("(d) top-layer {name} per width over seeds{gname}"),
            group_rows(&by_h.keys().map(|h| format!("H={h}")).collect::<Vec<_>>(), &top_groups),
        ));
        let list = |ls: &[usize]| ls.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ");
        lines.push(format!(
            "{name} monotone in H at {} of {layers} layers ({}){}{}; top layer {}",
            ok_layers.len(),
            if ok_layers.is_empty() { "none".to_string() } else { format!("layers {}", list(&ok_layers)) },
            if failed.is_empty() { String::new() } else { format!(", fails at layers {}", list(&failed)) },
            match needed {
                None => String::new(),
                Some(Some(n)) => format!(
                    ", inconclusive at {unsure} (at the spread observed, about {n} seeds per width, now {seeds}, would decide them all)"
                ),
                Some(None) => format!(
                    ", inconclusive at {unsure} (one sits on the threshold: more seeds at this spread would not decide it)"
                ),
            },
            top.join(", ")
        ));
    }
    let mut rows = String::from("| layer | CDNV train | CDNV test | NCC train | NCC test |\n|---|---|---|---|---|\n");
    for (i, cells) in per_layer.iter().enumerate() {
        rows.push_str(&format!("| {} | {} |\n", i + 1, cells.join(" | ")));
    }
    tables.insert(
        0,
        (
            format!(
                "(d) per layer: verdict and the largest step the wrong way between neighbouring widths (mean over seeds; > 0 is the wrong way), with its 95% bootstrap interval{gname}"
            ),
            rows,
        ),
    );
    // One seed per width has no spread: its intervals are points, and would judge anything.
    let (verdict, why) = if seeds < 2 {
        (Verdict::Inconclusive, " (one seed per width: no spread to judge the steps by; at least 2 are needed)")
    } else {
        (Verdict::all(verdicts), "")
    };
    Some(Check {
        text: format!(
            "**(d) width{gname}: {}{why}.** Per-layer means over seeds, required monotone at every layer (CDNV not rising, NCC accuracy not falling with H; each step judged on its 95% bootstrap interval): {}.",
            verdict.word(),
            lines.join("; ")
        ),
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sweep::plan::PlannedRun;
    use crate::sweep::plan::Role;

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
            status: Some(depthprobe_runfolder::Status::Done),
            reason: None,
            train_acc,
            test_acc: 0.9,
            wall_s: 1.0,
            effective_depth: vec![(0.01, eff)],
            linear_effective_depth: Vec::new(),
            layers: Vec::new(),
            fuzziness_fit: None,
            cka: None,
            producer: None,
            machine: None,
            s2_predictions: None,
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
        let c = check_depth(&refs, 0.01, "a").unwrap().text;
        assert!(c.contains("holds") && c.contains("L₀=4") && c.contains("3–5"), "{c}");
        let bad = [rec(4, 0.0, 0, Some(3), 1.0), rec(8, 0.0, 0, Some(4), 1.0), rec(12, 0.0, 1, Some(6), 1.0)];
        let refs: Vec<&RunRecord> = bad.iter().collect();
        assert!(check_depth(&refs, 0.01, "a").unwrap().text.contains("FAILS"));
        // Several seeds: close means hold; means whose spread could be above or below 2 are
        // inconclusive; far apart means fail.
        let many = |l4: [usize; 4], l8: [usize; 4]| -> Vec<RunRecord> {
            (0..4)
                .flat_map(|s| [rec(4, 0.0, s, Some(l4[s as usize]), 1.0), rec(8, 0.0, s, Some(l8[s as usize]), 1.0)])
                .collect()
        };
        for (l4, l8, want) in [
            ([3, 3, 4, 4], [3, 4, 4, 3], "holds"),
            ([2, 3, 2, 3], [3, 6, 2, 6], "inconclusive"),
            ([2, 2, 3, 2], [7, 6, 7, 8], "FAILS"),
        ] {
            let rs = many(l4, l8);
            let refs: Vec<&RunRecord> = rs.iter().collect();
            let c = check_depth(&refs, 0.01, "a").unwrap();
            assert!(c.text.contains(&format!(": {want}.")), "{l4:?} {l8:?}: {}", c.text);
            assert!(c.tables[0].1.contains("| L=4 | 4 |"), "{}", c.tables[0].1);
        }
        // A deeper net that is not separable breaks the claim.
        let ns = [rec(4, 0.0, 0, Some(3), 1.0), rec(8, 0.0, 0, None, 1.0)];
        let refs: Vec<&RunRecord> = ns.iter().collect();
        assert!(check_depth(&refs, 0.01, "a").unwrap().text.contains("FAILS"));
    }

    #[test]
    fn width_check_wants_every_layer_monotone() {
        use crate::sweep::record::LayerFinal;
        let mk = |h: usize, c: [f64; 2], a: [f64; 2]| {
            let mut r = rec(2, 0.0, 0, Some(2), 1.0);
            r.config.model.width = h;
            r.layers = (0..2)
                .map(|i| LayerFinal {
                    ncc_train_acc: a[i],
                    ncc_test_acc: a[i],
                    cdnv_train: c[i],
                    cdnv_test: c[i],
                    linear_train_acc: f64::NAN,
                    linear_test_acc: f64::NAN,
                    weight_rank: f64::NAN,
                    weight_stable_rank: f64::NAN,
                })
                .collect();
            r
        };
        // Two seeds per width, a little apart.
        let two = |h: usize, c: [f64; 2], a: [f64; 2]| [mk(h, c, a), mk(h, c.map(|x| x + 0.01), a.map(|x| x - 0.01))];
        let good: Vec<RunRecord> = [two(32, [1.0, 0.5], [0.8, 0.9]), two(64, [0.9, 0.4], [0.85, 0.95])].concat();
        let refs: Vec<&RunRecord> = good.iter().collect();
        let c = check_width(&refs).unwrap();
        assert!(c.text.contains("holds") && c.text.contains("CDNV train monotone in H at 2 of 2 layers"), "{}", c.text);
        let bad: Vec<RunRecord> = [two(32, [1.0, 0.5], [0.8, 0.9]), two(64, [1.1, 0.4], [0.85, 0.95])].concat();
        let refs: Vec<&RunRecord> = bad.iter().collect();
        let c = check_width(&refs).unwrap();
        assert!(
            c.text.contains("FAILS")
                && c.text.contains("CDNV train monotone in H at 1 of 2 layers (layers 2), fails at layers 1;"),
            "{}",
            c.text
        );
        // The per-layer table names the wrong step: layer 1's CDNV train rose by 0.1 from 32 to 64.
        let (title, rows) = &c.tables[0];
        assert!(title.starts_with("(d) per layer"), "{title}");
        assert!(rows.contains("| 1 | FAILS: +0.1000 at H=32→64 [+0.0900, +0.1100] |"), "{rows}");
        assert!(rows.contains("| 2 | holds: -0.1000 at H=32→64"), "{rows}");
        // One seed per width cannot judge a step.
        let one = [mk(32, [1.0, 0.5], [0.8, 0.9]), mk(64, [0.9, 0.4], [0.85, 0.95])];
        let refs: Vec<&RunRecord> = one.iter().collect();
        assert!(check_width(&refs).unwrap().text.contains("inconclusive (one seed per width"));
    }

    #[test]
    fn noise_check_wants_monotone_means_fitted_nets_and_three_seeds() {
        let mk = |d: [usize; 3], acc: f64| -> Vec<RunRecord> {
            [0.0, 0.1, 0.2].iter().zip(d).flat_map(|(&p, d)| (0..3).map(move |s| rec(10, p, s, Some(d), acc))).collect()
        };
        let good = mk([3, 5, 5], 0.995);
        let refs: Vec<&RunRecord> = good.iter().collect();
        let c = check_noise(&refs, 0.01, "b").unwrap();
        assert!(c.text.contains(": holds") && c.tables[0].1.contains("| p=0.1 | 3 | 5.000 |"), "{}", c.text);
        let dip = mk([3, 6, 4], 0.995);
        let refs: Vec<&RunRecord> = dip.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().text.contains("FAILS"));
        // A fall of at most one layer is within the tolerance.
        let plateau = mk([3, 6, 5], 0.995);
        let refs: Vec<&RunRecord> = plateau.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().text.contains(": holds"));
        let unfit = mk([3, 5, 6], 0.98);
        let refs: Vec<&RunRecord> = unfit.iter().collect();
        assert!(check_noise(&refs, 0.01, "b").unwrap().text.contains("FAILS"));
        let two: Vec<RunRecord> = good.into_iter().filter(|r| !r.run.id.ends_with("s2")).collect();
        let refs: Vec<&RunRecord> = two.iter().collect();
        let c = check_noise(&refs, 0.01, "b").unwrap().text;
        assert!(c.contains("fewer than 3 seeds") && c.contains("inconclusive"), "{c}");
    }
}
