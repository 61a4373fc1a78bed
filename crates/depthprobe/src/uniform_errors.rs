//! The bound's uniform-errors assumption, checked (docs/method.md, "The comparative bound"): the
//! mistakes that the clean networks make on the fresh half S2 should fall on uniformly random
//! samples, and with uniformly random wrong labels, as the initialization changes.
//!
//! * **Indices.** With K clean networks, c_i counts the networks that get sample i wrong. Under
//!   the assumption each network's mistakes are a uniformly random subset of S2 of its own size,
//!   independently, so X² = Σ (c_i − c̄)² / v (v: the variance of c_i under it) is only as large
//!   as chance makes it. The p-value is the share of 2,000 simulated draws of that null (fixed
//!   seed) with an X² at least as large: exact up to Monte Carlo error, however few errors.
//! * **Wrong labels.** Every mistake pooled over the networks: for true class y, the predicted
//!   class should be uniform over the C − 1 others; Pearson's χ² over the C × (C − 1) cells, with
//!   C(C − 2) degrees of freedom (each row's total is given).
//!
//! Rejected at the 5% level: **FAILS**; not rejected: **holds** (consistent with it, no more);
//! too little to test (fewer than 2 networks, no mistakes, or an expected wrong-label count below
//! 1): **inconclusive**.

use crate::rng::Rng;
use crate::stats::{chi2_sf, Verdict};

/// Simulated draws of the null for the index test, and their fixed seed (a report is the same
/// every time).
pub const NULL_DRAWS: usize = 2000;
const NULL_SEED: u64 = 0x00e1_2e55;
/// The level at which a test rejects.
pub const LEVEL: f64 = 0.05;

/// One clean network's predictions on S2: (true label, predicted label) per sample, in S2 order.
pub type Predictions = Vec<(u32, u32)>;

/// The index test's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexTest {
    pub networks: usize,
    pub samples: usize,
    /// Each network's number of mistakes.
    pub errors: Vec<usize>,
    pub x2: f64,
    pub p_value: f64,
    /// Samples wrong in exactly c networks, c = 0..=K: observed, and the mean over the null draws.
    pub observed: Vec<usize>,
    pub expected: Vec<f64>,
}

/// The wrong-label test's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelTest {
    pub mistakes: usize,
    /// counts[y][ŷ]: mistakes of true class y predicted as ŷ (diagonal zero).
    pub counts: Vec<Vec<usize>>,
    pub x2: f64,
    pub df: f64,
    pub p_value: f64,
    /// The smallest expected count of a cell (the χ² approximation wants it ≳ 5).
    pub min_expected: f64,
}

/// X² of the per-sample error counts `c` for networks with error rates `q` (v = Σ q(1 − q)).
fn dispersion(c: &[u32], q: &[f64]) -> f64 {
    let n = c.len() as f64;
    let mean = c.iter().map(|&v| v as f64).sum::<f64>() / n;
    let v: f64 = q.iter().map(|q| q * (1.0 - q)).sum();
    if v <= 0.0 {
        return 0.0;
    }
    c.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v
}

/// Whether every network saw the same S2 (same length, same labels): the check compares them
/// sample by sample.
pub fn consistent(runs: &[Predictions]) -> Result<(), String> {
    let Some(first) = runs.first() else { return Ok(()) };
    for (k, r) in runs.iter().enumerate().skip(1) {
        if r.len() != first.len() || r.iter().zip(first).any(|(a, b)| a.0 != b.0) {
            return Err(format!("network {k}'s S2 differs from network 0's (length or labels)"));
        }
    }
    Ok(())
}

/// The index test over K ≥ 2 networks' predictions on the same S2; None without mistakes.
pub fn index_test(runs: &[Predictions]) -> Option<IndexTest> {
    let k = runs.len();
    let n = runs.first()?.len();
    if k < 2 || n < 2 {
        return None;
    }
    let errors: Vec<usize> = runs.iter().map(|r| r.iter().filter(|(l, p)| l != p).count()).collect();
    if errors.iter().all(|&e| e == 0) {
        return None;
    }
    let q: Vec<f64> = errors.iter().map(|&e| e as f64 / n as f64).collect();
    let mut c = vec![0u32; n];
    for r in runs {
        for (ci, (l, p)) in c.iter_mut().zip(r) {
            *ci += (l != p) as u32;
        }
    }
    let x2 = dispersion(&c, &q);
    let histogram = |c: &[u32]| -> Vec<usize> {
        let mut h = vec![0usize; k + 1];
        for &v in c {
            h[v as usize] += 1;
        }
        h
    };
    let observed = histogram(&c);
    // The null: each network's mistakes a uniformly random subset of its size (partial
    // Fisher–Yates picks it).
    let mut rng = Rng::new(NULL_SEED);
    let mut expected = vec![0.0; k + 1];
    let mut at_least = 0usize;
    let mut idx: Vec<usize> = (0..n).collect();
    let mut sim = vec![0u32; n];
    for _ in 0..NULL_DRAWS {
        sim.iter_mut().for_each(|v| *v = 0);
        for &e in &errors {
            for i in 0..e {
                let j = i + rng.below((n - i) as u64) as usize;
                idx.swap(i, j);
                sim[idx[i]] += 1;
            }
        }
        if dispersion(&sim, &q) >= x2 - 1e-9 * x2.abs() {
            at_least += 1;
        }
        for (e, h) in expected.iter_mut().zip(histogram(&sim)) {
            *e += h as f64 / NULL_DRAWS as f64;
        }
    }
    let p_value = (1 + at_least) as f64 / (1 + NULL_DRAWS) as f64;
    Some(IndexTest { networks: k, samples: n, errors, x2, p_value, observed, expected })
}

/// The wrong-label test over every mistake of the networks; None without mistakes.
pub fn label_test(runs: &[Predictions], classes: usize) -> Option<LabelTest> {
    if classes < 3 {
        return None; // with two classes the wrong label is forced
    }
    let mut counts = vec![vec![0usize; classes]; classes];
    for r in runs {
        for &(l, p) in r {
            if l != p && (l as usize) < classes && (p as usize) < classes {
                counts[l as usize][p as usize] += 1;
            }
        }
    }
    let mistakes: usize = counts.iter().flatten().sum();
    if mistakes == 0 {
        return None;
    }
    let (mut x2, mut df, mut min_expected) = (0.0, 0.0, f64::INFINITY);
    for (y, row) in counts.iter().enumerate() {
        let total: usize = row.iter().sum();
        if total == 0 {
            continue;
        }
        let e = total as f64 / (classes - 1) as f64;
        min_expected = min_expected.min(e);
        df += (classes - 2) as f64;
        x2 += row.iter().enumerate().filter(|(p, _)| *p != y).map(|(_, &o)| (o as f64 - e).powi(2) / e).sum::<f64>();
    }
    Some(LabelTest { mistakes, counts, x2, df, p_value: chi2_sf(x2, df), min_expected })
}

impl IndexTest {
    pub fn verdict(&self) -> Verdict {
        if self.p_value < LEVEL {
            Verdict::Fails
        } else {
            Verdict::Holds
        }
    }
}

impl LabelTest {
    pub fn verdict(&self) -> Verdict {
        if self.min_expected < 1.0 {
            Verdict::Inconclusive
        } else if self.p_value < LEVEL {
            Verdict::Fails
        } else {
            Verdict::Holds
        }
    }
}

/// A p-value as text: "< 0.001" below that.
fn p_text(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// The report's check (f) for one group of clean networks: its text and tables.
pub fn check(group: &str, runs: &[Predictions], classes: usize) -> (String, Vec<(String, String)>) {
    let gname = if group.is_empty() { String::new() } else { format!(" ({group})") };
    if let Err(why) = consistent(runs) {
        return (
            format!("**(f) uniform errors on S2{gname}: inconclusive.** Cannot compare the networks: {why}."),
            vec![],
        );
    }
    let mut tables = Vec::new();
    let index = match index_test(runs) {
        None => format!(
            "**(f) uniform errors on S2{gname}: inconclusive.** Needs ≥ 2 clean networks with predictions on S2 and at least one mistake ({} networks).",
            runs.len()
        ),
        Some(t) => {
            let k = t.networks;
            let mut tab = String::from("| wrong in c of the networks | samples | expected if uniform |\n|---|---|---|\n");
            for c in 0..=k {
                tab.push_str(&format!("| {c} | {} | {:.1} |\n", t.observed[c], t.expected[c]));
            }
            tables.push((format!("(f) S2 samples by how many of the {k} clean networks get them wrong{gname}"), tab));
            let rate: f64 = t.errors.iter().sum::<usize>() as f64 / (k * t.samples) as f64;
            format!(
                "**(f) uniform error indices on S2{gname}: {}.** {k} clean networks on the same {} S2 samples, error rate {:.3} (mistakes per network {}); {} samples are wrong in all {k} networks where chance predicts {:.1}. Dispersion X² = {:.1}, p {} over {NULL_DRAWS} draws of the uniform null ({}).",
                t.verdict().word(),
                t.samples,
                rate,
                t.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
                t.observed[k],
                t.expected[k],
                t.x2,
                if t.p_value < 0.001 { "< 0.001".to_string() } else { format!("= {:.3}", t.p_value) },
                if t.p_value < LEVEL { "rejected at 5%: the same samples are hard for every initialization" } else { "not rejected at 5%" }
            )
        }
    };
    let label = match label_test(runs, classes) {
        None => format!(
            "**(f′) uniform wrong labels on S2{gname}: inconclusive.** No mistakes to test, or fewer than 3 classes."
        ),
        Some(t) => {
            let mut tab = String::from("| true \\ predicted |");
            for p in 0..classes {
                tab.push_str(&format!(" {p} |"));
            }
            tab.push_str("\n|---|");
            tab.push_str(&"---|".repeat(classes));
            tab.push('\n');
            for (y, row) in t.counts.iter().enumerate() {
                tab.push_str(&format!("| {y} |"));
                for (p, v) in row.iter().enumerate() {
                    tab.push_str(&if p == y { " – |".to_string() } else { format!(" {v} |") });
                }
                tab.push('\n');
            }
            tables.push((format!("(f′) the clean networks' mistakes on S2 by true and predicted class{gname}"), tab));
            // The most frequent confusion against its uniform share.
            let (mut best, mut by, mut bp) = (0.0, 0, 0);
            for (y, row) in t.counts.iter().enumerate() {
                let total: usize = row.iter().sum();
                for (p, &v) in row.iter().enumerate() {
                    if p != y && total > 0 && v as f64 / total as f64 > best {
                        (best, by, bp) = (v as f64 / total as f64, y, p);
                    }
                }
            }
            format!(
                "**(f′) uniform wrong labels on S2{gname}: {}.** {} mistakes pooled over the networks; Pearson χ² = {:.1} on {} degrees of freedom, p {}{}; the most lopsided: class {by} taken for {bp} in {:.0}% of its mistakes (uniform: {:.0}%).{}",
                t.verdict().word(),
                t.mistakes,
                t.x2,
                t.df,
                if t.p_value < 0.001 { String::new() } else { "= ".into() },
                p_text(t.p_value),
                100.0 * best,
                100.0 / (classes - 1) as f64,
                if t.min_expected < 5.0 {
                    format!(" Smallest expected cell {:.1}: the χ² approximation is rough below 5.", t.min_expected)
                } else {
                    String::new()
                }
            )
        }
    };
    (format!("{index}\n\n{label}"), tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// K networks on n samples of `classes` classes; network k errs on the samples `wrong(k)`,
    /// predicting `pick(k, i, y)`.
    fn nets(
        k: usize,
        n: usize,
        classes: u32,
        wrong: impl Fn(usize, &mut Rng) -> Vec<usize>,
        pick: impl Fn(usize, usize, u32, &mut Rng) -> u32,
    ) -> Vec<Predictions> {
        let mut rng = Rng::new(11);
        (0..k)
            .map(|j| {
                let mut r: Predictions = (0..n).map(|i| (i as u32 % classes, i as u32 % classes)).collect();
                for i in wrong(j, &mut rng) {
                    let y = r[i].0;
                    r[i].1 = pick(j, i, y, &mut rng);
                }
                r
            })
            .collect()
    }

    fn random_subset(n: usize, e: usize, rng: &mut Rng) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut idx);
        idx.truncate(e);
        idx
    }

    fn uniform_wrong(y: u32, c: u32, rng: &mut Rng) -> u32 {
        (y + 1 + rng.below(c as u64 - 1) as u32) % c
    }

    #[test]
    fn uniform_mistakes_are_not_rejected_and_shared_ones_are() {
        // Mistakes drawn exactly as the null says: a p-value that is not small, both tests.
        let uni = nets(5, 2000, 10, |j, r| random_subset(2000, 100 + 10 * j, r), |_, _, y, r| uniform_wrong(y, 10, r));
        let t = index_test(&uni).unwrap();
        assert!(t.p_value > 0.01, "{t:?}");
        assert_eq!(t.observed.iter().sum::<usize>(), 2000);
        assert!((t.expected.iter().sum::<f64>() - 2000.0).abs() < 1e-6);
        let l = label_test(&uni, 10).unwrap();
        assert_eq!(l.mistakes, 100 + 110 + 120 + 130 + 140);
        assert_eq!(l.df, 80.0);
        assert!(l.p_value > 0.01 && l.verdict() == Verdict::Holds, "{l:?}");
        // Every network errs on the same hard samples (plus a few of its own): rejected.
        let hard = nets(
            5,
            2000,
            10,
            |_, r| {
                let mut v: Vec<usize> = (0..80).collect();
                v.extend(random_subset(2000, 20, r).into_iter().filter(|&i| i >= 80));
                v
            },
            |_, _, y, r| uniform_wrong(y, 10, r),
        );
        let t = index_test(&hard).unwrap();
        assert!(t.p_value < 0.001 && t.verdict() == Verdict::Fails, "{t:?}");
        assert!(t.observed[5] >= 80 && t.expected[5] < 1.0, "{t:?}");
        // Mistakes always to the next class: the label test rejects, the index test does not care.
        let skew = nets(5, 2000, 10, |j, r| random_subset(2000, 100 + 10 * j, r), |_, _, y, _| (y + 1) % 10);
        let l = label_test(&skew, 10).unwrap();
        assert!(l.p_value < 1e-10 && l.verdict() == Verdict::Fails, "{l:?}");
        assert!(index_test(&skew).unwrap().p_value > 0.01);
    }

    #[test]
    fn the_statistics_match_a_brute_force_count() {
        // Three networks on six samples, by hand: c = [3, 1, 0, 1, 0, 1], errors 2, 2, 2.
        let r = |wrong: &[usize]| -> Predictions {
            (0..6u32).map(|i| (i % 3, if wrong.contains(&(i as usize)) { (i + 1) % 3 } else { i % 3 })).collect()
        };
        let runs = vec![r(&[0, 1]), r(&[0, 3]), r(&[0, 5])];
        let t = index_test(&runs).unwrap();
        assert_eq!(t.observed, vec![2, 3, 0, 1]);
        // c̄ = 1, Σ (c − 1)² = 4 + 0 + 1 + 0 + 1 + 0 = 6; v = 3 · (1/3)(2/3) = 2/3; X² = 9.
        assert!((t.x2 - 9.0).abs() < 1e-12, "{}", t.x2);
        // Exact null: the chance that three random pairs of 6 all share one sample is small but
        // not tiny; the Monte Carlo p-value stays in (0, 1].
        assert!(t.p_value > 0.0 && t.p_value <= 1.0);
        // Labels: every mistake y → y + 1 mod 3. Class 0 has 4 (all taken for 1; expected 2 and
        // 2), classes 1 and 2 one each (expected ½ and ½): χ² = 4 + 1 + 1 = 6 on 3 · 1 df.
        let l = label_test(&runs, 3).unwrap();
        assert_eq!((l.mistakes, l.df), (6, 3.0));
        assert!((l.x2 - 6.0).abs() < 1e-12 && (l.p_value - chi2_sf(6.0, 3.0)).abs() < 1e-15);
        assert!(consistent(&runs).is_ok());
        let mut other = runs.clone();
        other[1][2].0 = 1;
        assert!(consistent(&other).is_err());
        assert!(index_test(&runs[..1]).is_none());
    }
}
