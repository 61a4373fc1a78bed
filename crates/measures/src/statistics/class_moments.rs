//! Accumulator: per-class first and second moments (count, mean, sum of squared deviations).
//!
//! Batches are merged with Chan et al.'s pairwise update in f64, so the result does not depend
//! on batch size or order beyond rounding, and never suffers the cancellation of
//! E‖x‖² − ‖μ‖² (which the paper's published code computes in f32).

/// Per-class moments of one layer's embeddings: counts, means (C×D, row-major) and the
/// within-class sum of squared distances to the class mean (M2, a scalar per class).
#[derive(Clone, Debug)]
pub struct ClassMoments {
    pub dim: usize,
    pub counts: Vec<u64>,
    pub means: Vec<f64>,
    pub m2: Vec<f64>,
    // Scratch for the batch being merged (kept to avoid per-batch allocation).
    batch_sum: Vec<f64>,
    batch_count: Vec<u64>,
    batch_m2: Vec<f64>,
}

impl ClassMoments {
    pub fn new(num_classes: usize, dim: usize) -> Self {
        ClassMoments {
            dim,
            counts: vec![0; num_classes],
            means: vec![0.0; num_classes * dim],
            m2: vec![0.0; num_classes],
            batch_sum: vec![0.0; num_classes * dim],
            batch_count: vec![0; num_classes],
            batch_m2: vec![0.0; num_classes],
        }
    }

    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// Merge a batch. `x` is row-major [rows, dim]; `class[i]` is the class index of row i,
    /// or `None` for rows that this accumulator ignores (classes outside a subset).
    pub fn update(&mut self, x: &[f32], class: &[Option<usize>]) {
        let d = self.dim;
        self.batch_sum.iter_mut().for_each(|v| *v = 0.0);
        self.batch_count.iter_mut().for_each(|v| *v = 0);
        self.batch_m2.iter_mut().for_each(|v| *v = 0.0);
        for (row, c) in x.chunks_exact(d).zip(class) {
            let Some(c) = *c else { continue };
            self.batch_count[c] += 1;
            crate::kernels::add_widened(&mut self.batch_sum[c * d..(c + 1) * d], row);
        }
        // Batch means in place of the sums.
        for c in 0..self.num_classes() {
            let n = self.batch_count[c];
            if n > 0 {
                let inv = 1.0 / n as f64;
                self.batch_sum[c * d..(c + 1) * d].iter_mut().for_each(|v| *v *= inv);
            }
        }
        // Two-pass M2 inside the batch, against the batch mean.
        for (row, c) in x.chunks_exact(d).zip(class) {
            let Some(c) = *c else { continue };
            self.batch_m2[c] += crate::kernels::sq_dist(row, &self.batch_sum[c * d..(c + 1) * d]);
        }
        for c in 0..self.num_classes() {
            merge_class(
                (&mut self.counts[c], &mut self.means[c * d..(c + 1) * d], &mut self.m2[c]),
                (self.batch_count[c], &self.batch_sum[c * d..(c + 1) * d], self.batch_m2[c]),
            );
        }
    }

    /// Assemble moments reduced elsewhere (an accelerator): counts, C×D means, per-class M2.
    pub fn from_parts(dim: usize, counts: Vec<u64>, means: Vec<f64>, m2: Vec<f64>) -> Self {
        assert_eq!(means.len(), counts.len() * dim, "means must be C × dim");
        assert_eq!(m2.len(), counts.len(), "one M2 per class");
        let mut m = ClassMoments::new(counts.len(), dim);
        (m.counts, m.means, m.m2) = (counts, means, m2);
        m
    }

    /// Merge another accumulator of the same classes and dimension (Chan et al.).
    pub fn merge(&mut self, other: &ClassMoments) {
        assert_eq!((self.dim, self.num_classes()), (other.dim, other.num_classes()), "moments of different shapes");
        let d = self.dim;
        for c in 0..self.num_classes() {
            merge_class(
                (&mut self.counts[c], &mut self.means[c * d..(c + 1) * d], &mut self.m2[c]),
                (other.counts[c], other.mean(c), other.m2[c]),
            );
        }
    }

    /// True when every mean and M2 is finite.
    pub fn is_finite(&self) -> bool {
        self.means.iter().chain(&self.m2).all(|v| v.is_finite())
    }

    pub fn mean(&self, c: usize) -> &[f64] {
        &self.means[c * self.dim..(c + 1) * self.dim]
    }

    /// Population (1/n) variance Var_f(S_c) = mean squared distance to the class mean.
    pub fn variance(&self, c: usize) -> Option<f64> {
        (self.counts[c] > 0).then(|| self.m2[c] / self.counts[c] as f64)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Global mean of all samples (the count-weighted mean of the class means).
    pub fn global_mean(&self) -> Vec<f64> {
        let d = self.dim;
        let total = self.total() as f64;
        let mut g = vec![0.0; d];
        for c in 0..self.num_classes() {
            let w = self.counts[c] as f64 / total;
            for (a, &m) in g.iter_mut().zip(self.mean(c)) {
                *a += w * m;
            }
        }
        g
    }
}

/// Chan merge of (n_b, mean_b, M2_b) into the running (n_a, mean_a, M2_a) of one class.
fn merge_class(a: (&mut u64, &mut [f64], &mut f64), b: (u64, &[f64], f64)) {
    let (na, mean, m2) = a;
    let (nb, mb, m2b) = b;
    if nb == 0 {
        return;
    }
    let n = *na + nb;
    let (fa, fb, fnn) = (*na as f64, nb as f64, n as f64);
    let mut delta2 = 0.0;
    for (a, &b) in mean.iter_mut().zip(mb) {
        let delta = b - *a;
        delta2 += delta * delta;
        *a += delta * (fb / fnn);
    }
    *m2 += m2b + delta2 * fa * fb / fnn;
    *na = n;
}
