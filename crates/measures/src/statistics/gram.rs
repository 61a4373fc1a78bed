//! Accumulator: the Gram matrix Σ x xᵀ of one layer's train rows (measured classes only), from
//! which the numerical and effective rank are computed (`rank.rs`). D×D memory, so it is kept
//! only for layers of dimension ≤ `rank_max_dim`.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};

#[derive(Clone, Debug)]
pub struct Gram {
    pub dim: usize,
    pub sum: Mat<f64>,
    /// The batch being staged (lower triangle), added to `sum` once the batch is accepted.
    staged: Option<Mat<f64>>,
}

impl Gram {
    pub fn new(dim: usize) -> Self {
        Gram { dim, sum: Mat::zeros(dim, dim), staged: None }
    }

    /// A D×D row-major sum reduced elsewhere (a device).
    pub fn from_row_major(dim: usize, v: &[f64]) -> Self {
        assert_eq!(v.len(), dim * dim, "a Gram matrix is D×D");
        Gram { dim, sum: Mat::from_fn(dim, dim, |i, j| v[i * dim + j]), staged: None }
    }

    /// Add `rows` rows of f64 values (row-major [rows, dim]).
    pub fn update(&mut self, x64: &[f64], rows: usize) {
        self.begin_batch();
        self.stage(x64, rows);
        self.commit();
        self.mirror();
    }

    /// Start staging a batch (`stage` its blocks, then `commit`, or drop it by beginning anew).
    pub fn begin_batch(&mut self) {
        let d = self.dim;
        let s = self.staged.get_or_insert_with(|| Mat::zeros(d, d));
        for j in 0..d {
            s.col_mut(j).subrows_mut(j, d - j).fill(0.0);
        }
    }

    /// Stage `rows` rows of f64 values (row-major [rows, dim]). In f64 throughout: the rank's
    /// threshold sits near f32 rounding (rank.rs), so the Gram must not add f32 rounding of its
    /// own. Only the lower triangle is multiplied (half the work).
    pub fn stage(&mut self, x64: &[f64], rows: usize) {
        let xm = MatRef::from_row_major_slice(x64, rows, self.dim);
        triangular::matmul(
            self.staged.as_mut().expect("begin_batch first").as_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            xm.transpose(),
            BlockStructure::Rectangular,
            xm,
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
    }

    /// Add the staged batch to the sum's lower triangle (`mirror` makes the sum whole again).
    pub fn commit(&mut self) {
        let d = self.dim;
        let s = self.staged.as_ref().expect("begin_batch first");
        for j in 0..d {
            // Column j from the diagonal down: contiguous in both (column-major).
            let (dst, src) = (self.sum.col_mut(j).subrows_mut(j, d - j), s.col(j).subrows(j, d - j));
            for (a, b) in dst.iter_mut().zip(src.iter()) {
                *a += *b;
            }
        }
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
        for i in 0..self.dim {
            for j in 0..self.dim {
                self.sum[(i, j)] += other.sum[(i, j)];
            }
        }
    }

    pub fn is_finite(&self) -> bool {
        (0..self.dim).all(|i| (0..self.dim).all(|j| self.sum[(i, j)].is_finite()))
    }
}
