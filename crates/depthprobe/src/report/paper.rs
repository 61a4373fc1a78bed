//! The paper's Fig. 1 beside a CONV depth sweep on CIFAR-10: final NCC train accuracy layer by
//! layer and L by L, and the ε = 0.01 / 0.05 effective depths against the paper's ≈ 7 and ≈ 6.
//! The values are read off the published figure (± 0.02); docs/method.md, "The paper's figures",
//! holds the same table.

use depthprobe_config::{Arch, DatasetName};

use super::{axis_value, fmt, RunRecord};
use crate::stats::{mean, min_max};

/// A value read off the figure: about `v`, or at least `v` (the top layers of deep nets, which
/// the figure's inset shows only as "near 1").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Read {
    About(f64),
    AtLeast(f64),
}

/// Fig. 1 at epoch ≈ 500: per L, layers 1–7, then layers 8 and up (one value), then the
/// network's train accuracy.
pub const FIG1: [(usize, [Option<Read>; 8], f64); 6] = {
    use Read::{About as A, AtLeast as L};
    [
        (3, [Some(A(0.36)), Some(A(0.41)), Some(A(0.84)), None, None, None, None, None], 0.993),
        (5, [Some(A(0.37)), Some(A(0.46)), Some(A(0.57)), Some(A(0.70)), Some(A(0.997)), None, None, None], 0.999),
        (
            8,
            [
                Some(A(0.36)),
                Some(A(0.45)),
                Some(A(0.56)),
                Some(A(0.71)),
                Some(A(0.93)),
                Some(A(0.975)),
                Some(A(0.955)),
                Some(A(0.975)),
            ],
            0.998,
        ),
        (
            12,
            [
                Some(A(0.36)),
                Some(A(0.46)),
                Some(A(0.58)),
                Some(A(0.76)),
                Some(A(0.93)),
                Some(A(0.978)),
                Some(A(0.988)),
                Some(L(0.993)),
            ],
            0.998,
        ),
        (
            16,
            [
                Some(A(0.36)),
                Some(A(0.45)),
                Some(A(0.57)),
                Some(A(0.75)),
                Some(A(0.92)),
                Some(A(0.975)),
                Some(A(0.992)),
                Some(L(0.995)),
            ],
            0.998,
        ),
        (
            20,
            [
                Some(A(0.36)),
                Some(A(0.45)),
                Some(A(0.58)),
                Some(A(0.77)),
                Some(A(0.92)),
                Some(A(0.975)),
                Some(A(0.99)),
                Some(L(0.995)),
            ],
            0.998,
        ),
    ]
};

/// The paper's effective depths read off Fig. 1 for L ≥ 12: ε = 0.01 → ≈ 7, ε = 0.05 → ≈ 6.
pub const FIG1_DEPTH_001: f64 = 7.0;
pub const FIG1_DEPTH_005: f64 = 6.0;

/// 12345 → "12,345".
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn read_text(r: Read) -> String {
    match r {
        Read::About(v) => format!("{v:.3}"),
        Read::AtLeast(v) => format!("≥ {v:.3}"),
    }
}

/// The comparison as (text, markdown table), for a depth sweep of CONV-L-H on CIFAR-10 whose L
/// values meet Fig. 1's; None otherwise.
pub fn fig1_comparison(grid: &[&RunRecord]) -> Option<(String, String)> {
    let done: Vec<&&RunRecord> = grid
        .iter()
        .filter(|r| r.done() && r.config.model.arch == Arch::Conv && r.config.data.dataset == DatasetName::Cifar10)
        .collect();
    let first = done.first()?;
    let (width, train_n) = (first.config.model.width, first.config.data.train_per_class);
    let mut table = String::from(
        "| L | source | runs | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8+ (lowest) | net train acc | ε=0.01 depth | ε=0.05 depth |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    let mut diffs: Vec<f64> = Vec::new();
    let mut ours_deep: Vec<(usize, f64, f64, String)> = Vec::new();
    for (l, paper, net) in FIG1 {
        let runs: Vec<&&&RunRecord> =
            done.iter().filter(|r| axis_value(r, "model.depth") == Some(l as f64) && r.layers.len() == l).collect();
        if runs.is_empty() {
            continue;
        }
        any = true;
        // Ours: the mean over seeds of each layer's final NCC train accuracy; "8+" is the lowest
        // of layers 8..L (what "≥" in the figure bounds).
        let layer_mean = |i: usize| mean(&runs.iter().map(|r| r.layers[i].ncc_train_acc).collect::<Vec<_>>());
        let mut ours: Vec<String> = Vec::new();
        for (c, p) in paper.iter().enumerate() {
            let v = if c < 7 {
                (c < l).then(|| layer_mean(c))
            } else {
                (l >= 8).then(|| (7..l).map(layer_mean).fold(f64::INFINITY, f64::min))
            };
            if let (Some(v), Some(Read::About(p))) = (v, p) {
                diffs.push(v - p);
            }
            ours.push(v.map_or("".into(), |v| fmt(v, 3)));
        }
        // Not separable counts as L (docs/method.md, "Effective depth") and is said.
        let depth_at = |eps: f64| {
            let got: Vec<(usize, bool)> = runs.iter().filter_map(|r| r.depth_at(eps)).collect();
            let ds: Vec<f64> = got.iter().map(|(d, _)| *d as f64).collect();
            let (lo, hi) = min_max(ds.iter().cloned());
            (mean(&ds), lo, hi, got.iter().filter(|(_, n)| *n).count())
        };
        let (d1, d5) = (depth_at(0.01), depth_at(0.05));
        let note = |n: usize| if n > 0 { format!("; {n} not separable") } else { String::new() };
        if l >= 12 {
            let both = if d1.3 + d5.3 > 0 {
                format!(" ({} and {} of {} runs not separable, counted as L)", d1.3, d5.3, runs.len())
            } else {
                String::new()
            };
            ours_deep.push((l, d1.0, d5.0, both));
        }
        let net_ours = mean(&runs.iter().map(|r| r.train_acc).collect::<Vec<_>>());
        let paper_cells: Vec<String> = paper.iter().map(|p| p.map_or("".into(), read_text)).collect();
        let (pd1, pd5) = if l >= 12 {
            (format!("≈ {FIG1_DEPTH_001}"), format!("≈ {FIG1_DEPTH_005}"))
        } else {
            Default::default()
        };
        table.push_str(&format!(
            "| {l} | Fig. 1 (H = 400, 50,000 images) | – | {} | ≈ {net:.3} | {pd1} | {pd5} |\n",
            paper_cells.join(" | ")
        ));
        table.push_str(&format!(
            "| {l} | this sweep | {} | {} | {} | {} ({}–{}{}) | {} ({}–{}{}) |\n",
            runs.len(),
            ours.join(" | "),
            fmt(net_ours, 3),
            fmt(d1.0, 2),
            d1.1,
            d1.2,
            note(d1.3),
            fmt(d5.0, 2),
            d5.1,
            d5.2,
            note(d5.3)
        ));
    }
    if !any {
        return None;
    }
    let data = if train_n > 0 {
        format!("{} images ({train_n} per class)", thousands(train_n * 10))
    } else {
        "all 50,000 images".into()
    };
    let mad = mean(&diffs.iter().map(|d| d.abs()).collect::<Vec<_>>());
    let deep = if ours_deep.is_empty() {
        format!("No L ≥ 12 here, where the paper reads ε = 0.01 / 0.05 effective depths of ≈ {FIG1_DEPTH_001} / ≈ {FIG1_DEPTH_005}.")
    } else {
        format!(
            "Where the paper reads ε = 0.01 / 0.05 effective depths of ≈ {FIG1_DEPTH_001} / ≈ {FIG1_DEPTH_005} (L ≥ 12), this sweep has {}.",
            ours_deep.iter().map(|(l, a, b, n)| format!("L = {l}: {a:.2} / {b:.2}{n}")).collect::<Vec<_>>().join("; ")
        )
    };
    let same = width == 400 && train_n == 0;
    let text = format!(
        "**Against the paper's Fig. 1.** Final NCC train accuracy per layer, mean over seeds, beside the values read off Fig. 1 (± 0.02; docs/method.md, \"The paper's figures\"). {} Mean absolute difference over the cells the figure gives a value for: {:.3} ({} cells). {deep}",
        if same {
            "This sweep has the paper's width and data.".to_string()
        } else {
            format!("This sweep is CONV-L-{width} on {data}, not CONV-L-400 on all 50,000 images, so the numbers are not expected to match; the shape (which layer separates, and whether it depends on L) is what compares.")
        },
        mad,
        diffs.len()
    );
    Some((text, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sweep::plan::{PlannedRun, Role};
    use crate::sweep::record::LayerFinal;

    /// A finished CONV-L-8 run on CIFAR-10 whose layer i has NCC train accuracy `acc(i)`.
    fn rec(depth: usize, seed: i64, acc: impl Fn(usize) -> f64, eff: Option<usize>) -> RunRecord {
        let mut config = Config::default();
        config.model.arch = Arch::Conv;
        config.model.depth = depth;
        config.model.width = 8;
        config.data.dataset = DatasetName::Cifar10;
        config.data.train_per_class = 1200;
        let values = vec![
            ("model.depth".to_string(), toml::Value::Integer(depth as i64)),
            ("train.seed".to_string(), toml::Value::Integer(seed)),
        ];
        let layer = |i: usize| LayerFinal {
            ncc_train_acc: acc(i),
            ncc_test_acc: f64::NAN,
            cdnv_train: f64::NAN,
            cdnv_test: f64::NAN,
            linear_train_acc: f64::NAN,
            linear_test_acc: f64::NAN,
            weight_rank: f64::NAN,
            weight_stable_rank: f64::NAN,
        };
        RunRecord {
            run: PlannedRun { index: 0, id: format!("d{depth}-s{seed}"), values, role: Role::Grid },
            config,
            status: Some(depthprobe_runfolder::Status::Done),
            reason: None,
            train_acc: 1.0,
            test_acc: 0.5,
            wall_s: 1.0,
            effective_depth: vec![(0.01, eff), (0.05, eff)],
            linear_effective_depth: Vec::new(),
            layers: (0..depth).map(layer).collect(),
            fuzziness_fit: None,
            cka: None,
            producer: None,
            machine: None,
            s2_predictions: None,
        }
    }

    #[test]
    fn each_layer_is_the_mean_over_seeds_and_eight_up_the_lowest() {
        // Seed 0 and 1 differ by 0.1 at every layer; layer 10 (index 9) is the lowest above 7.
        let acc = |s: f64| move |i: usize| if i == 9 { 0.5 + s } else { 0.3 + 0.05 * i as f64 + s };
        let runs = [rec(12, 0, acc(0.0), Some(9)), rec(12, 1, acc(0.1), None), rec(7, 0, acc(0.0), Some(6))];
        let refs: Vec<&RunRecord> = runs.iter().collect();
        let (text, table) = fig1_comparison(&refs).unwrap();
        let ours = table.lines().find(|l| l.starts_with("| 12 | this sweep")).unwrap();
        let cells: Vec<&str> = ours.split('|').map(str::trim).collect();
        assert_eq!(cells[3], "2");
        assert_eq!(cells[4], "0.350"); // layer 1: (0.3 + 0.4) / 2
        assert_eq!(cells[10], "0.650"); // layer 7: 0.6 + 0.05
        assert_eq!(cells[11], "0.550"); // 8+: the lowest of layers 8..12 = layer 10
                                        // Effective depth 9 and not separable (counted as 12): mean 10.5, one not separable.
        assert_eq!(cells[13], "10.50 (9–12; 1 not separable)");
        // L = 7 is not in the figure; the figure's own row is there for L = 12 only.
        assert!(!table.contains("\n| 7 |") && table.contains("\n| 12 | Fig. 1"));
        assert!(text.contains("CONV-L-8 on 12,000 images (1200 per class)"), "{text}");
        assert!(text.contains("L = 12: 10.50 / 10.50 (1 and 1 of 2 runs not separable, counted as L)"), "{text}");
        // Every cell with an "about" value: 7 layers + 8+ is "at least" (not counted) → 7 cells.
        assert!(text.contains("(7 cells)"), "{text}");
        let mlp: Vec<RunRecord> = runs
            .iter()
            .cloned()
            .map(|mut r| {
                r.config.model.arch = Arch::Mlp;
                r
            })
            .collect();
        assert!(fig1_comparison(&mlp.iter().collect::<Vec<_>>()).is_none());
    }
}
