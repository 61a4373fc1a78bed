//! Accumulator: the within-class scatter projected on the between-class subspace, QᵀΣ_W Q as
//! Σ over train rows of (Qᵀ(x − μ_y))(Qᵀ(x − μ_y))ᵀ (pass 2). Σ_B has rank ≤ C − 1 and lives in
//! span(Q), so NC1 and He–Su fuzziness need only this r×r matrix (r ≤ C), never a D×D one
//! (`collapse.rs`).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

#[derive(Clone, Debug)]
pub struct WithinClassProjection {
    pub rank: usize,
    pub sum: Mat<f64>,
    pub count: u64,
}

impl WithinClassProjection {
    pub fn new(rank: usize) -> Self {
        WithinClassProjection { rank, sum: Mat::zeros(rank, rank), count: 0 }
    }

    /// An r×r row-major sum over `count` rows reduced elsewhere (a device).
    pub fn from_row_major(rank: usize, v: &[f64], count: u64) -> Self {
        assert_eq!(v.len(), rank * rank, "the projected scatter is r×r");
        WithinClassProjection { rank, sum: Mat::from_fn(rank, rank, |i, j| v[i * rank + j]), count }
    }

    /// `projected` is row-major [rows, r] holding Qᵀ(x − μ_y) for each counted row.
    pub fn update(&mut self, projected: &[f64], rows: usize) {
        if rows == 0 {
            return;
        }
        let p = MatRef::from_row_major_slice(projected, rows, self.rank);
        matmul(self.sum.as_mut(), Accum::Add, p.transpose(), p, 1.0, Par::Seq);
        self.count += rows as u64;
    }

    pub fn merge(&mut self, other: &WithinClassProjection) {
        assert_eq!(self.rank, other.rank, "projections on subspaces of different rank");
        for i in 0..self.rank {
            for j in 0..self.rank {
                self.sum[(i, j)] += other.sum[(i, j)];
            }
        }
        self.count += other.count;
    }

    pub fn is_finite(&self) -> bool {
        (0..self.rank).all(|i| (0..self.rank).all(|j| self.sum[(i, j)].is_finite()))
    }
}
