//! Accumulator: per-class first and second moments (count, mean, sum of squared deviations).
//!
//! Batches are merged with Chan et al.'s pairwise update in f64, so the result does not depend
//! on batch size or order beyond rounding, and never suffers the cancellation of
//! E‖x‖² − ‖μ‖² (which the paper's published code computes in f32).

/// Per-class moments of one layer's embeddings: counts, means (C×D, row-major) and the
/// within-class sum of squared distances to the class mean (M2, a scalar per class).
///
/// Rows arrive in groups (`begin_group`, `add_sums` of its blocks, `end_group`): two-pass inside a
/// group, Chan merges between groups. Groups are staged and reach the moments at `commit`, so a
/// batch refused half-way changes nothing. A batch that is one group merges exactly as a batch
/// always has (merging into empty staged moments copies it).
#[derive(Clone, Debug)]
pub struct ClassMoments {
    pub dim: usize,
    pub counts: Vec<u64>,
    pub means: Vec<f64>,
    pub m2: Vec<f64>,
    // Scratch kept to avoid per-batch allocation: the open group's sums, then its means.
    group_sum: Vec<f64>,
    group_count: Vec<u64>,
    group_m2: Vec<f64>,
    // The batch's groups merged so far.
    staged: Moments,
}

/// Counts, means and M2 of some rows, per class.
#[derive(Clone, Debug)]
struct Moments {
    counts: Vec<u64>,
    means: Vec<f64>,
    m2: Vec<f64>,
}

impl ClassMoments {
    pub fn new(num_classes: usize, dim: usize) -> Self {
        ClassMoments {
            dim,
            counts: vec![0; num_classes],
            means: vec![0.0; num_classes * dim],
            m2: vec![0.0; num_classes],
            group_sum: vec![0.0; num_classes * dim],
            group_count: vec![0; num_classes],
            group_m2: vec![0.0; num_classes],
            staged: Moments {
                counts: vec![0; num_classes],
                means: vec![0.0; num_classes * dim],
                m2: vec![0.0; num_classes],
            },
        }
    }

    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// Merge a batch as one group. `x` is row-major [rows, dim]; `class[i]` is the class index
    /// of row i, or `None` for rows that this accumulator ignores (classes outside a subset).
    pub fn update(&mut self, x: &[f32], class: &[Option<usize>]) {
        self.begin_batch();
        self.begin_group();
        let finite = self.add_sums(x, class);
        debug_assert!(finite, "ClassMoments::update takes rows checked to be finite");
        self.end_group(x, class);
        self.commit();
    }

    /// Start staging a batch; a batch begun anew before `commit` is dropped.
    pub fn begin_batch(&mut self) {
        let s = &mut self.staged;
        s.counts.iter_mut().for_each(|v| *v = 0);
        s.means.iter_mut().for_each(|v| *v = 0.0);
        s.m2.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Open a group of rows.
    pub fn begin_group(&mut self) {
        self.group_sum.iter_mut().for_each(|v| *v = 0.0);
        self.group_count.iter_mut().for_each(|v| *v = 0);
        self.group_m2.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Add a block of the open group's rows (in order) to its per-class sums. Returns whether
    /// every value of the block was finite; when not, the batch must be dropped (begun anew).
    pub fn add_sums(&mut self, x: &[f32], class: &[Option<usize>]) -> bool {
        crate::kernels::add_rows_by_class(x, class, self.dim, &mut self.group_sum, &mut self.group_count)
    }

    /// Close the group (all its rows, as summed): its means, its two-pass M2 against them, and a
    /// Chan merge into the staged batch.
    pub fn end_group(&mut self, x: &[f32], class: &[Option<usize>]) {
        let d = self.dim;
        // Group means in place of the sums.
        for c in 0..self.num_classes() {
            let n = self.group_count[c];
            if n > 0 {
                let inv = 1.0 / n as f64;
                self.group_sum[c * d..(c + 1) * d].iter_mut().for_each(|v| *v *= inv);
            }
        }
        crate::kernels::sq_dist_by_class(x, class, d, &self.group_sum, &mut self.group_m2);
        let s = &mut self.staged;
        for c in 0..s.counts.len() {
            merge_class(
                (&mut s.counts[c], &mut s.means[c * d..(c + 1) * d], &mut s.m2[c]),
                (self.group_count[c], &self.group_sum[c * d..(c + 1) * d], self.group_m2[c]),
            );
        }
    }

    /// Merge the staged batch into the moments.
    pub fn commit(&mut self) {
        let d = self.dim;
        for c in 0..self.num_classes() {
            let s = &self.staged;
            merge_class(
                (&mut self.counts[c], &mut self.means[c * d..(c + 1) * d], &mut self.m2[c]),
                (s.counts[c], &s.means[c * d..(c + 1) * d], s.m2[c]),
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
