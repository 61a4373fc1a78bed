//! The checks of the paper's claims, computed from the numbers and written into the report as
//! they come out: (a) depth, (b) label noise, (d) width; (c), the bound, is in `bound.rs`.

use std::collections::BTreeMap;

use super::axis_study;
use crate::stats::{mean, min_max};
use crate::sweep::record::{LayerFinal, RunRecord};

/// Check (a): for every L at or above the smallest L whose runs all separate, the ε effective
/// depth of every run stays within ±1 layer of a common value (max − min ≤ 2).
pub fn check_depth(recs: &[&RunRecord], eps: f64, label: &str) -> Option<String> {
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
pub fn check_noise(recs: &[&RunRecord], eps: f64, label: &str) -> Option<String> {
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

/// Check (d), the width claim (docs/method.md, "Claims checked"): per layer, CDNV (train, test) non-increasing and NCC accuracy
/// (train, test) non-decreasing in width, on the mean over seeds. Counted over layers × curves.
pub fn check_width(recs: &[&RunRecord]) -> Option<String> {
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
            producer: None,
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
                .map(|i| LayerFinal {
                    ncc_train_acc: a[i],
                    ncc_test_acc: a[i],
                    cdnv_train: c[i],
                    cdnv_test: c[i],
                    linear_train_acc: f64::NAN,
                    linear_test_acc: f64::NAN,
                })
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
