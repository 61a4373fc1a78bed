//! Linear CKA between layers from the minibatch HSIC sums (`statistics/cka_hsic.rs`), and the
//! block scalar that asks whether the layers above the effective depth are alike
//! (docs/method.md, "Layer similarity (CKA)").

use serde::{Deserialize, Serialize};

use crate::statistics::{CkaHsic, CKA_BATCH_ROWS};

/// CKA(a, b) = Σ_batches HSIC₁(K_a, K_b) / √(Σ HSIC₁(K_a, K_a) · Σ HSIC₁(K_b, K_b)), L×L
/// row-major; None for a pair with a layer whose HSIC with itself is not positive (a layer
/// constant on every minibatch), or with no minibatch.
pub fn cka_matrix(h: &CkaHsic) -> Vec<Option<f64>> {
    let l = h.layers;
    let diag = |a: usize| h.hsic[a * l + a];
    let mut m = vec![None; l * l];
    if h.batches == 0 {
        return m;
    }
    for a in 0..l {
        for b in 0..l {
            let (da, db) = (diag(a), diag(b));
            if da > 0.0 && db > 0.0 {
                m[a * l + b] = Some(if a == b { 1.0 } else { h.hsic[a * l + b] / (da * db).sqrt() });
            }
        }
    }
    m
}

/// Mean CKA among the layers at or above `depth` (pairs a < b, both ≥ depth) and across it
/// (a < depth ≤ b); layers count from 1.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct CkaBlock {
    pub depth: usize,
    /// None when fewer than two layers are at or above `depth`.
    pub within: Option<f64>,
    /// None when `depth` is layer 1.
    pub across: Option<f64>,
}

pub fn cka_block(matrix: &[Option<f64>], layers: usize, depth: usize) -> CkaBlock {
    let mean = |pairs: &mut dyn Iterator<Item = (usize, usize)>| {
        let (mut s, mut n, mut undefined) = (0.0, 0usize, false);
        for (a, b) in pairs {
            match matrix[a * layers + b] {
                Some(v) => {
                    s += v;
                    n += 1;
                }
                None => undefined = true,
            }
        }
        (n > 0 && !undefined).then(|| s / n as f64)
    };
    let d = depth.max(1) - 1; // 0-based first layer at or above the depth
    let within = mean(&mut (d..layers).flat_map(|a| (a + 1..layers).map(move |b| (a, b))));
    let across = mean(&mut (0..d).flat_map(|a| (d..layers).map(move |b| (a, b))));
    CkaBlock { depth, within, across }
}

/// CKA of one probe: both splits' matrices, how many minibatches each had, and the block at each
/// ε-effective depth (train CKA, the split the effective depth is measured on).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CkaResult {
    pub batch_rows: usize,
    pub train_batches: u64,
    pub test_batches: u64,
    /// L×L, row a is layer a + 1.
    pub train: Vec<Vec<Option<f64>>>,
    pub test: Vec<Vec<Option<f64>>>,
    /// ε → the block at that ε-effective depth (absent where no layer is ε-separable).
    pub block_train: std::collections::BTreeMap<String, CkaBlock>,
}

impl CkaResult {
    pub fn layers(&self) -> usize {
        self.train.len()
    }

    /// CKA(a, b) on `split`, layers from 1.
    pub fn get(&self, split: crate::spec::Split, a: usize, b: usize) -> Option<f64> {
        let m = match split {
            crate::spec::Split::Train => &self.train,
            crate::spec::Split::Test => &self.test,
        };
        *m.get(a.checked_sub(1)?)?.get(b.checked_sub(1)?)?
    }
}

pub(crate) fn cka_result(
    train: &CkaHsic,
    test: &CkaHsic,
    depths: &std::collections::BTreeMap<String, Option<usize>>,
) -> CkaResult {
    let l = train.layers;
    let rows = |m: Vec<Option<f64>>| m.chunks(l).map(|r| r.to_vec()).collect::<Vec<_>>();
    let tm = cka_matrix(train);
    let block_train = depths.iter().filter_map(|(e, d)| Some((e.clone(), cka_block(&tm, l, (*d)?)))).collect();
    CkaResult {
        batch_rows: CKA_BATCH_ROWS,
        train_batches: train.batches,
        test_batches: test.batches,
        train: rows(tm),
        test: rows(cka_matrix(test)),
        block_train,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_means_take_the_pairs_above_and_across_the_depth() {
        // 4 layers; CKA(a, b) = 10a + b (0-based) off the diagonal.
        let l = 4;
        let m: Vec<Option<f64>> = (0..l * l)
            .map(|i| Some(if i / l == i % l { 1.0 } else { (10 * (i / l).min(i % l) + (i / l).max(i % l)) as f64 }))
            .collect();
        let b = cka_block(&m, l, 3);
        // Within: pair (2, 3) → 23; across: (0,2),(0,3),(1,2),(1,3) → 2, 3, 12, 13.
        assert_eq!(b.within, Some(23.0));
        assert_eq!(b.across, Some(7.5));
        assert_eq!(cka_block(&m, l, 4).within, None);
        assert_eq!(cka_block(&m, l, 1).across, None);
        assert_eq!(cka_block(&m, l, 1).within, Some((1.0 + 2.0 + 3.0 + 12.0 + 13.0 + 23.0) / 6.0));
    }
}
