//! Label corruption, both variants (docs/method.md, "Label corruption").
//!
//! * `Exact` (the bound's): exactly ⌊p·m⌋ indices, drawn uniformly without replacement, each
//!   given a uniformly drawn *wrong* label.
//! * `PerSample` (the published code's `corrupt_labels`): each label independently, with
//!   probability p, is redrawn uniformly from all C classes (it may stay the same), so about
//!   p(1 − 1/C)·m labels change.

pub use depthprobe_config::CorruptionMode;
pub use depthprobe_runfolder::Relabel;

use crate::rng::Rng;

/// Corrupt `labels` in place; returns the labels that changed, by ascending index.
pub fn corrupt(labels: &mut [i64], num_classes: usize, p: f64, mode: CorruptionMode, seed: u64) -> Vec<Relabel> {
    let mut r = Rng::new(seed);
    let m = labels.len();
    let c = num_classes as u64;
    let mut changed = Vec::new();
    match mode {
        CorruptionMode::Exact => {
            let k = (p * m as f64).floor() as usize;
            // Partial Fisher–Yates: the first k entries are a uniform k-subset.
            let mut idx: Vec<usize> = (0..m).collect();
            for i in 0..k {
                let j = i + r.below((m - i) as u64) as usize;
                idx.swap(i, j);
            }
            let mut chosen = idx[..k].to_vec();
            chosen.sort_unstable();
            for i in chosen {
                let old = labels[i];
                let new = ((old as u64 + 1 + r.below(c - 1)) % c) as i64;
                labels[i] = new;
                changed.push(Relabel { index: i, original: old, corrupted: new });
            }
        }
        CorruptionMode::PerSample => {
            for (i, l) in labels.iter_mut().enumerate() {
                if r.uniform() < p {
                    let new = r.below(c) as i64;
                    if new != *l {
                        changed.push(Relabel { index: i, original: *l, corrupted: new });
                        *l = new;
                    }
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_changes_exactly_floor_pm_labels_to_wrong_ones() {
        for (m, p) in [(1000usize, 0.1), (999, 0.333), (60_000, 0.5), (10, 1.0), (10, 0.0), (7, 0.99)] {
            let orig: Vec<i64> = (0..m).map(|i| (i % 10) as i64).collect();
            let mut l = orig.clone();
            let ch = corrupt(&mut l, 10, p, CorruptionMode::Exact, 3);
            let k = (p * m as f64).floor() as usize;
            assert_eq!(ch.len(), k, "m={m} p={p}");
            let differ = orig.iter().zip(&l).filter(|(a, b)| a != b).count();
            assert_eq!(differ, k, "every chosen label must change");
            assert!(ch
                .iter()
                .all(|r| orig[r.index] == r.original && l[r.index] == r.corrupted && r.original != r.corrupted));
        }
    }

    #[test]
    fn exact_draws_wrong_labels_uniformly() {
        let mut l = vec![3i64; 90_000];
        corrupt(&mut l, 10, 1.0, CorruptionMode::Exact, 5);
        let mut hist = [0usize; 10];
        for v in &l {
            hist[*v as usize] += 1;
        }
        assert_eq!(hist[3], 0);
        for (c, &h) in hist.iter().enumerate().filter(|(c, _)| *c != 3) {
            assert!((h as f64 - 10_000.0).abs() < 400.0, "class {c}: {h}");
        }
    }

    #[test]
    fn per_sample_changes_about_p_times_one_minus_one_over_c() {
        let m = 100_000;
        let orig: Vec<i64> = (0..m).map(|i| (i % 10) as i64).collect();
        let mut l = orig.clone();
        let ch = corrupt(&mut l, 10, 0.4, CorruptionMode::PerSample, 1);
        let expect = 0.4 * 0.9 * m as f64;
        let sd = (m as f64 * 0.36 * 0.64).sqrt();
        assert!((ch.len() as f64 - expect).abs() < 5.0 * sd, "{} vs {expect}", ch.len());
        assert_eq!(orig.iter().zip(&l).filter(|(a, b)| a != b).count(), ch.len());
    }

    #[test]
    fn same_seed_same_corruption() {
        let mut a = vec![0i64; 500];
        let mut b = vec![0i64; 500];
        assert_eq!(
            corrupt(&mut a, 10, 0.3, CorruptionMode::Exact, 9),
            corrupt(&mut b, 10, 0.3, CorruptionMode::Exact, 9)
        );
        let mut c = vec![0i64; 500];
        assert_ne!(
            corrupt(&mut c, 10, 0.3, CorruptionMode::Exact, 10),
            corrupt(&mut a.clone(), 10, 0.3, CorruptionMode::Exact, 9)
        );
    }
}
