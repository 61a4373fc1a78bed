//! Accumulator: the Gram matrix Σ x xᵀ of one layer's train rows (measured classes only), from
//! which the numerical and effective rank are computed (`rank.rs`). D×D memory, so it is kept
//! only for layers of dimension ≤ `rank_max_dim`.

use faer::Mat;

use super::syrk::{self, Isa, Start};

#[derive(Clone, Debug)]
pub struct Gram {
    pub dim: usize,
    /// The whole D×D sum once `mirror` has run (the accepted rows are moved into it then).
    pub sum: Mat<f64>,
    /// The accepted rows' running sums, Dp×Dp column-major, lower tiles (syrk.rs); holds values
    /// only when `accepted_rows`.
    accepted: Vec<f64>,
    accepted_rows: bool,
    /// The batch being staged: `accepted` plus its rows so far, same layout; holds values only
    /// when `staged_rows`. Committing swaps the two, so accepting a batch copies nothing and a
    /// refused one (never committed) leaves `accepted` as it was.
    staged: Vec<f64>,
    staged_rows: bool,
    /// The rows being multiplied, packed (syrk.rs).
    packed: Vec<f64>,
}

impl Gram {
    pub fn new(dim: usize) -> Self {
        Gram::from_sum(dim, Mat::zeros(dim, dim))
    }

    /// A D×D row-major sum reduced elsewhere (a device).
    pub fn from_row_major(dim: usize, v: &[f64]) -> Self {
        assert_eq!(v.len(), dim * dim, "a Gram matrix is D×D");
        Gram::from_sum(dim, Mat::from_fn(dim, dim, |i, j| v[i * dim + j]))
    }

    fn from_sum(dim: usize, sum: Mat<f64>) -> Self {
        Gram {
            dim,
            sum,
            accepted: Vec::new(),
            accepted_rows: false,
            staged: Vec::new(),
            staged_rows: false,
            packed: Vec::new(),
        }
    }

    /// Add `rows` f32 rows (row-major [rows, dim]).
    pub fn update(&mut self, x: &[f32], rows: usize) {
        assert_eq!(x.len(), rows * self.dim, "rows × dim values");
        self.begin_batch();
        let rs: Vec<&[f32]> = x.chunks_exact(self.dim.max(1)).take(rows).collect();
        self.stage(&rs);
        self.commit();
        self.mirror();
    }

    /// Start staging a batch (`stage` its rows, then `commit`, or drop it by beginning anew).
    pub fn begin_batch(&mut self) {
        self.staged_rows = false;
    }

    /// Stage f32 rows of `dim` values. Each entry is one running f64 sum over the accepted rows
    /// in order, from products that are exact, so the Gram adds no f32 rounding of its own (the
    /// rank's threshold sits near f32 rounding, rank.rs) and its bits do not depend on how the
    /// rows were batched. Only the lower triangle is multiplied (half the work).
    pub fn stage(&mut self, rows: &[&[f32]]) {
        let dp = syrk::padded(self.dim);
        self.staged.resize(dp * dp, 0.0);
        let isa = Isa::best();
        for chunk in rows.chunks(syrk::CHUNK) {
            let start = match (self.staged_rows, self.accepted_rows) {
                (true, _) => Start::Same,
                (false, true) => Start::From(&self.accepted),
                (false, false) => Start::Zero,
            };
            syrk::update_lower(isa, &mut self.staged, start, chunk, self.dim, &mut self.packed);
            self.staged_rows = true;
        }
    }

    /// Accept the staged batch (`mirror` moves the accepted rows into `sum`).
    pub fn commit(&mut self) {
        if self.staged_rows {
            std::mem::swap(&mut self.accepted, &mut self.staged);
            self.accepted_rows = true;
            self.staged_rows = false;
        }
    }

    /// Add the accepted rows to `sum` and make it whole (lower triangle copied onto the upper),
    /// once the batches are in.
    pub fn mirror(&mut self) {
        let (d, dp) = (self.dim, syrk::padded(self.dim));
        if self.accepted_rows {
            for j in 0..d {
                // Column j from the diagonal down: contiguous in both (column-major).
                let src = &self.accepted[j * dp + j..j * dp + d];
                for (a, b) in self.sum.col_mut(j).subrows_mut(j, d - j).iter_mut().zip(src) {
                    *a += *b;
                }
            }
            self.accepted_rows = false;
        }
        for j in 1..d {
            for i in 0..j {
                self.sum[(i, j)] = self.sum[(j, i)];
            }
        }
    }

    pub fn merge(&mut self, other: &Gram) {
        assert_eq!(self.dim, other.dim, "Gram matrices of different dimensions");
        for j in 0..self.dim {
            for (a, b) in self.sum.col_mut(j).iter_mut().zip(other.sum.col(j).iter()) {
                *a += *b;
            }
        }
    }

    pub fn is_finite(&self) -> bool {
        (0..self.dim).all(|j| self.sum.col(j).iter().all(|v| v.is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], d: usize) -> Vec<f64> {
        let mut g = vec![0.0; d * d];
        for row in x.chunks_exact(d) {
            for i in 0..d {
                for j in 0..d {
                    g[i * d + j] += row[i] as f64 * row[j] as f64;
                }
            }
        }
        g
    }

    #[test]
    fn batches_give_the_naive_sum_and_a_dropped_or_empty_batch_adds_nothing() {
        let d = 11;
        let x: Vec<f32> = (0..300 * d).map(|v| ((v * 7919) % 1000) as f32 / 97.0 - 5.0).collect();
        let rows: Vec<&[f32]> = x.chunks_exact(d).collect();
        let mut g = Gram::new(d);
        // Dropped: staged, then a new batch begun without a commit.
        g.begin_batch();
        g.stage(&rows[..200]);
        g.begin_batch();
        g.stage(&rows[200..]);
        g.commit();
        // A second commit of the same batch, and an empty batch, add nothing.
        g.commit();
        g.begin_batch();
        g.commit();
        g.mirror();
        let want = naive(&x[200 * d..], d);
        for i in 0..d {
            for j in 0..d {
                assert_eq!(g.sum[(i, j)], want[i * d + j], "({i}, {j})");
            }
        }
        // Batches of any sizes give one running sum over the rows, the naive loop's bits.
        let mut h = Gram::new(d);
        for (a, b) in [(0, 1), (1, 130), (130, 131), (131, 300)] {
            h.begin_batch();
            h.stage(&rows[a..b]);
            h.commit();
        }
        h.mirror();
        let all = naive(&x, d);
        for i in 0..d {
            for j in 0..d {
                assert_eq!(h.sum[(i, j)], all[i * d + j], "({i}, {j})");
            }
        }
    }
}
