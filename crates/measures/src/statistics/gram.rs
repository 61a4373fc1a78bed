//! Accumulator: the Gram matrix Σ x xᵀ of one layer's train rows (measured classes only), from
//! which the numerical and effective rank are computed (`rank.rs`). D×D memory, so it is kept
//! only for layers of dimension ≤ `rank_max_dim`.

use faer::Mat;

use super::syrk::{self, Isa};

#[derive(Clone, Debug)]
pub struct Gram {
    pub dim: usize,
    pub sum: Mat<f64>,
    /// The batch being staged: Dp×Dp column-major, lower tiles (syrk.rs), added to `sum` once
    /// the batch is accepted. Holds values only once `staged_rows` (not cleared between
    /// batches: the first update of a batch overwrites it).
    staged: Vec<f64>,
    staged_rows: bool,
    /// The rows being multiplied, packed (syrk.rs).
    packed: Vec<f64>,
}

impl Gram {
    pub fn new(dim: usize) -> Self {
        Gram { dim, sum: Mat::zeros(dim, dim), staged: Vec::new(), staged_rows: false, packed: Vec::new() }
    }

    /// A D×D row-major sum reduced elsewhere (a device).
    pub fn from_row_major(dim: usize, v: &[f64]) -> Self {
        assert_eq!(v.len(), dim * dim, "a Gram matrix is D×D");
        Gram {
            dim,
            sum: Mat::from_fn(dim, dim, |i, j| v[i * dim + j]),
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
        let dp = syrk::padded(self.dim);
        self.staged.resize(dp * dp, 0.0);
        self.staged_rows = false;
    }

    /// Stage f32 rows of `dim` values. Summed in f64 from products that are exact, so the Gram
    /// adds no f32 rounding of its own (the rank's threshold sits near f32 rounding, rank.rs),
    /// and only the lower triangle is multiplied (half the work).
    pub fn stage(&mut self, rows: &[&[f32]]) {
        let dp = syrk::padded(self.dim);
        assert_eq!(self.staged.len(), dp * dp, "begin_batch first");
        let isa = Isa::best();
        for chunk in rows.chunks(syrk::CHUNK) {
            syrk::update_lower(isa, &mut self.staged, chunk, self.dim, &mut self.packed, !self.staged_rows);
            self.staged_rows = true;
        }
    }

    /// Add the staged batch to the sum's lower triangle (`mirror` makes the sum whole again).
    pub fn commit(&mut self) {
        let (d, dp) = (self.dim, syrk::padded(self.dim));
        assert_eq!(self.staged.len(), dp * dp, "begin_batch first");
        if !self.staged_rows {
            return;
        }
        for j in 0..d {
            // Column j from the diagonal down: contiguous in both (column-major).
            let src = &self.staged[j * dp + j..j * dp + d];
            for (a, b) in self.sum.col_mut(j).subrows_mut(j, d - j).iter_mut().zip(src) {
                *a += *b;
            }
        }
        self.staged_rows = false;
    }

    /// Copy the lower triangle onto the upper one, once the batches are in.
    pub fn mirror(&mut self) {
        for j in 1..self.dim {
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
    fn a_dropped_or_empty_batch_adds_nothing() {
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
        // Two batches sum as one stream of rows.
        let mut h = Gram::new(d);
        h.update(&x[..150 * d], 150);
        h.update(&x[150 * d..], 150);
        let all = naive(&x, d);
        let tol = 1e-12 * all.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..d {
            for j in 0..d {
                assert!((h.sum[(i, j)] - all[i * d + j]).abs() <= tol, "({i}, {j})");
            }
        }
    }
}
