//! Small statistics over runs shared by the bound and the report.

/// Mean of the values; NaN for none.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// (smallest, largest) of the values; (+∞, −∞) for none.
pub fn min_max(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    v.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

/// The distinct values, in the order first seen (groups of a sweep, in plan order).
pub fn distinct<T: PartialEq>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Sample standard deviation (n − 1); NaN for fewer than two values.
pub fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Resamples per bootstrap interval, and its fixed seed: a report is the same every time.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
const BOOTSTRAP_SEED: u64 = 0x5eed_b007;

/// A statistic with its 95% percentile-bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// `stat` of `groups` (the seeds of each setting), with the 2.5% and 97.5% percentiles of
/// `stat` over resamples in which every group is drawn again, with replacement, from itself.
pub fn bootstrap(groups: &[Vec<f64>], stat: impl Fn(&[Vec<f64>]) -> f64) -> Interval {
    let value = stat(groups);
    let mut rng = bootstrap_rng();
    let draws: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let re: Vec<Vec<f64>> =
                groups.iter().map(|g| (0..g.len()).map(|_| g[rng.below(g.len() as u64) as usize]).collect()).collect();
            stat(&re)
        })
        .collect();
    interval_of(value, draws)
}

/// `value` with the 2.5% and 97.5% percentiles of its bootstrap `draws`.
pub fn interval_of(value: f64, mut draws: Vec<f64>) -> Interval {
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    Interval { value, lo: at(0.025), hi: at(0.975) }
}

/// A bootstrap generator with the report's fixed seed.
pub fn bootstrap_rng() -> crate::rng::Rng {
    crate::rng::Rng::new(BOOTSTRAP_SEED)
}

/// The 95% interval of one group's mean.
pub fn mean_interval(v: &[f64]) -> Interval {
    bootstrap(&[v.to_vec()], |g| mean(&g[0]))
}

/// A claim judged with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Fails,
    /// The interval straddles the threshold: more seeds could go either way.
    Inconclusive,
}

impl Verdict {
    /// The claim "statistic ≤ threshold", judged on its interval.
    pub fn at_most(iv: &Interval, threshold: f64) -> Verdict {
        if iv.hi <= threshold {
            Verdict::Holds
        } else if iv.lo > threshold {
            Verdict::Fails
        } else {
            Verdict::Inconclusive
        }
    }

    /// All of several claims: fails if one fails, holds if all hold.
    pub fn all(vs: impl IntoIterator<Item = Verdict>) -> Verdict {
        let vs: Vec<Verdict> = vs.into_iter().collect();
        if vs.contains(&Verdict::Fails) {
            Verdict::Fails
        } else if vs.iter().all(|v| *v == Verdict::Holds) {
            Verdict::Holds
        } else {
            Verdict::Inconclusive
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Fails => "FAILS",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// How many seeds per group would make an inconclusive verdict on "statistic ≤ threshold"
/// decisive at the spread observed with `seeds` per group: the interval's half-width on the side
/// of the threshold shrinks as 1/√n, so n = seeds · (half-width / distance to the threshold)²,
/// rounded up. It is where such a sample would be decisive about half the time (its spread is the
/// one measured, its mean may move). None when the statistic sits on the threshold (no number of
/// seeds decides it) or the verdict is not inconclusive.
pub fn seeds_to_decide(iv: &Interval, threshold: f64, seeds: usize) -> Option<usize> {
    if Verdict::at_most(iv, threshold) != Verdict::Inconclusive {
        return None;
    }
    let (half, distance) = if iv.value <= threshold {
        (iv.hi - iv.value, threshold - iv.value)
    } else {
        (iv.value - iv.lo, iv.value - threshold)
    };
    if distance <= 0.0 || !half.is_finite() {
        return None;
    }
    let n = (seeds as f64 * (half / distance).powi(2)).ceil();
    Some((n as usize).max(seeds + 1))
}

/// The power estimate as report text: " About N seeds per group would decide it at this spread."
pub fn seeds_note(iv: &Interval, threshold: f64, seeds: usize) -> String {
    match (Verdict::at_most(iv, threshold), seeds_to_decide(iv, threshold, seeds)) {
        (Verdict::Inconclusive, Some(n)) => {
            format!(" At the spread observed, about {n} seeds per group (now {seeds}) would decide it.")
        }
        (Verdict::Inconclusive, None) => {
            " The statistic sits on the threshold: more seeds at this spread would not decide it.".to_string()
        }
        _ => String::new(),
    }
}

/// The largest drop between consecutive groups' means (≤ 0: the means never fall).
pub fn max_drop(groups: &[Vec<f64>]) -> f64 {
    let m: Vec<f64> = groups.iter().map(|g| mean(g)).collect();
    m.windows(2).map(|w| w[0] - w[1]).fold(f64::NEG_INFINITY, f64::max)
}

/// The range of the groups' means (largest − smallest).
pub fn range_of_means(groups: &[Vec<f64>]) -> f64 {
    let (lo, hi) = min_max(groups.iter().map(|g| mean(g)));
    hi - lo
}

/// One markdown row per group: its label, number of seeds, mean, spread (sample std) and 95%
/// interval of the mean.
pub fn group_rows(labels: &[String], groups: &[Vec<f64>]) -> String {
    let mut s = String::from("| group | seeds | mean | std | 95% interval of the mean |\n|---|---|---|---|---|\n");
    for (l, g) in labels.iter().zip(groups) {
        let iv = mean_interval(g);
        let sd = std_dev(g);
        s.push_str(&format!(
            "| {l} | {} | {:.3} | {} | [{:.3}, {:.3}] |\n",
            g.len(),
            iv.value,
            if sd.is_nan() { "–".into() } else { format!("{sd:.3}") },
            iv.lo,
            iv.hi
        ));
    }
    s
}

/// P(X ≥ x) for X ~ χ² with `df` degrees of freedom: the regularized upper incomplete gamma
/// Q(df/2, x/2), by its series below a + 1 and its continued fraction above (to ~1e-14).
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let (a, x) = (df / 2.0, x / 2.0);
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        // P(a, x) = e^{-x} x^a / Γ(a) · Σ x^n / (a (a+1) … (a+n)).
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * front).max(0.0)
    } else {
        // Modified Lentz for the continued fraction of Q(a, x).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (front * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The power estimate against the closed form for a normal mean, and by simulation: with the
    /// number of seeds it names, the verdict is decisive about half the time or more.
    #[test]
    fn seeds_to_decide_matches_the_normal_closed_form_and_a_simulation() {
        let mut rng = crate::rng::Rng::new(7);
        let mut normal = || rng.normal();
        let (sigma, d) = (1.0, 0.25);
        // A pilot of 40 seeds, mean d below the threshold 0: the closed form for the 95% interval
        // of a mean, 1.96·s/√n < d, needs n ≥ (1.96·s/d)².
        let pilot: Vec<f64> = (0..40).map(|_| -d + sigma * normal()).collect();
        let iv = mean_interval(&pilot);
        assert_eq!(Verdict::at_most(&iv, 0.0), Verdict::Inconclusive, "{iv:?}");
        let n = seeds_to_decide(&iv, 0.0, pilot.len()).unwrap();
        let s = std_dev(&pilot);
        let closed = (1.96 * s / (0.0 - iv.value)).powi(2);
        assert!((n as f64 / closed - 1.0).abs() < 0.2, "{n} seeds against the closed form's {closed:.1}");
        // Simulation at the true mean and spread: the interval at n seeds is decisive (holds)
        // about half the time when n is the closed form's at the true values.
        let n_true = (1.96 * sigma / d).powi(2).ceil() as usize;
        let decisive = (0..200)
            .filter(|_| {
                let g: Vec<f64> = (0..n_true).map(|_| -d + sigma * normal()).collect();
                Verdict::at_most(&mean_interval(&g), 0.0) == Verdict::Holds
            })
            .count();
        assert!((70..=130).contains(&decisive), "{decisive} of 200 decisive at {n_true} seeds");
        // Sides and edge cases: heading to "fails", on the threshold, already decided.
        let up = Interval { value: 1.0, lo: 0.5, hi: 1.5 };
        assert_eq!(seeds_to_decide(&up, 0.8, 3), Some(19)); // 3 · (0.5 / 0.2)² = 18.75
        assert_eq!(seeds_to_decide(&Interval { value: 0.8, lo: 0.5, hi: 1.5 }, 0.8, 3), None);
        assert_eq!(seeds_to_decide(&Interval { value: 0.2, lo: 0.1, hi: 0.3 }, 0.8, 3), None);
        assert!(seeds_note(&up, 0.8, 3).contains("about 19 seeds per group (now 3)"));
        assert!(seeds_note(&Interval { value: 0.8, lo: 0.5, hi: 1.5 }, 0.8, 3).contains("would not decide"));
        assert_eq!(seeds_note(&Interval { value: 0.2, lo: 0.1, hi: 0.3 }, 0.8, 3), "");
    }

    #[test]
    fn bootstrap_intervals_cover_and_verdicts_follow_them() {
        // Constant groups: no uncertainty at all.
        let iv = bootstrap(&[vec![3.0; 5], vec![4.0; 5]], max_drop);
        assert_eq!((iv.value, iv.lo, iv.hi), (-1.0, -1.0, -1.0));
        assert_eq!(Verdict::at_most(&iv, 0.0), Verdict::Holds);
        // A clear drop: every resample shows it.
        let iv = bootstrap(&[vec![6.0, 6.0, 7.0], vec![3.0, 3.0, 4.0]], max_drop);
        assert!(iv.lo > 0.0 && Verdict::at_most(&iv, 0.0) == Verdict::Fails, "{iv:?}");
        // Overlapping groups: the interval straddles 0.
        let iv = bootstrap(&[vec![3.0, 5.0, 4.0, 6.0], vec![4.0, 3.0, 6.0, 5.0]], max_drop);
        assert!(iv.lo < 0.0 && iv.hi > 0.0 && Verdict::at_most(&iv, 0.0) == Verdict::Inconclusive, "{iv:?}");
        // The mean's interval of a sample from a known distribution covers its mean, and narrows
        // as n grows (about 1.96·σ/√n each side).
        let mut r = crate::rng::Rng::new(7);
        let draw = |r: &mut crate::rng::Rng, n: usize| -> Vec<f64> { (0..n).map(|_| r.uniform()).collect() };
        let (a, b) = (mean_interval(&draw(&mut r, 50)), mean_interval(&draw(&mut r, 800)));
        assert!(a.lo < 0.5 && a.hi > 0.5 && b.lo < 0.5 && b.hi > 0.5, "{a:?} {b:?}");
        let half = (1.0f64 / 12.0).sqrt() * 1.96 / 800f64.sqrt();
        assert!(((b.hi - b.lo) / 2.0 - half).abs() < 0.3 * half, "{b:?} vs ±{half}");
        assert!(b.hi - b.lo < (a.hi - a.lo) / 2.0);
        assert_eq!(Verdict::all([Verdict::Holds, Verdict::Inconclusive]), Verdict::Inconclusive);
        assert_eq!(Verdict::all([Verdict::Holds, Verdict::Fails, Verdict::Inconclusive]), Verdict::Fails);
        assert!(std_dev(&[1.0]).is_nan() && (std_dev(&[1.0, 3.0]) - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn chi2_tail_matches_closed_forms() {
        // ln Γ at integers and half-integers: ln (n−1)! and ln(√π (2n)! / (4^n n!)).
        let mut fact = 1.0f64;
        for n in 1..30 {
            assert!((ln_gamma(n as f64) - fact.ln()).abs() < 1e-12 * fact.ln().abs().max(1.0), "Γ({n})");
            fact *= n as f64;
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        // df = 2: Q = e^{−x/2} exactly; df = 4: e^{−x/2} (1 + x/2); df = 1: erfc(√(x/2)) = 2 (1 − Φ(√x)).
        for &x in &[0.01, 0.5, 1.0, 2.0, 3.0, 7.5, 20.0, 60.0, 200.0] {
            let e = (-x / 2.0f64).exp();
            assert!((chi2_sf(x, 2.0) - e).abs() < 1e-13 * e.max(1e-300) + 1e-300, "df=2 x={x}");
            let e4 = e * (1.0 + x / 2.0);
            assert!((chi2_sf(x, 4.0) - e4).abs() <= 1e-12 * e4, "df=4 x={x}: {} vs {e4}", chi2_sf(x, 4.0));
        }
        // df = 1 at x = 3.841458820694124 (the 95% point) and 6.634896601021214 (99%).
        assert!((chi2_sf(3.841_458_820_694_124, 1.0) - 0.05).abs() < 1e-12);
        assert!((chi2_sf(6.634_896_601_021_214, 1.0) - 0.01).abs() < 1e-12);
        // Large df: the mean df has tail ≈ 1/2 (a bit below, the median is df(1 − 2/(9df))³).
        let df: f64 = 2000.0;
        let median = df * (1.0 - 2.0 / (9.0 * df)).powi(3);
        assert!((chi2_sf(median, df) - 0.5).abs() < 1e-3);
        assert_eq!(chi2_sf(0.0, 3.0), 1.0);
        assert!(chi2_sf(1e4, 3.0) < 1e-300 || chi2_sf(1e4, 3.0) == 0.0);
    }
}
