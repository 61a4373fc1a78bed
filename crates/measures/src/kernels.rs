//! The host reduction's inner loops over a block of rows, written so the compiler vectorises
//! them, and compiled three times: for AVX-512, for AVX2 and for the baseline instruction set,
//! chosen once per call by what the CPU has.
//!
//! Every variant gives bit-identical results, so the choice changes speed and never a number:
//! f64 additions cannot be reordered by the compiler and none is fused into an FMA (Rust never
//! contracts a·b + c), so each reduction keeps its one fixed order: per row, LANES partial sums
//! combined as (s0 + s1) + (s2 + s3), then the tail. That order is the one these measures have
//! always used (the golden digests pin it). A single row's sums form one short dependency chain,
//! so rows are reduced ROWS at a time, interleaved, each still in its own order.

/// Partial sums per row.
const LANES: usize = 4;
/// Rows reduced together (independent chains for the adders).
const ROWS: usize = 4; // as sq_dist4 and sq_norm4 are written

/// `pub fn $name(args) -> ret { body }`, compiled for AVX-512 / AVX2 / baseline and dispatched.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the CPU has the features the variant was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// (s0 + s1) + (s2 + s3) + tail.
#[inline(always)]
fn combine(acc: [f64; LANES], tail: f64) -> f64 {
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// acc[k] += (x[k] − m[k])², k < LANES.
#[inline(always)]
fn step_dist(acc: &mut [f64; LANES], x: &[f32], m: &[f64]) {
    for k in 0..LANES {
        let e = x[k] as f64 - m[k];
        acc[k] += e * e;
    }
}

/// acc[k] += x[k]², k < LANES.
#[inline(always)]
fn step_sq(acc: &mut [f64; LANES], x: &[f64]) {
    for k in 0..LANES {
        acc[k] += x[k] * x[k];
    }
}

/// Σ (x_i − m_i)² of an f32 row against an f64 centre, in the fixed order.
#[inline(always)]
fn sq_dist(x: &[f32], m: &[f64]) -> f64 {
    let mut acc = [0.0; LANES];
    let full = x.len() / LANES * LANES;
    for (xc, mc) in x[..full].chunks_exact(LANES).zip(m[..full].chunks_exact(LANES)) {
        step_dist(&mut acc, xc, mc);
    }
    let mut tail = 0.0;
    for (&v, &c) in x[full..].iter().zip(&m[full..]) {
        let e = v as f64 - c;
        tail += e * e;
    }
    combine(acc, tail)
}

/// sq_dist of four rows at once: four independent chains, each in the fixed order.
#[inline(always)]
fn sq_dist4(x: [&[f32]; 4], m: [&[f64]; 4]) -> [f64; 4] {
    let full = x[0].len() / LANES * LANES;
    let mut acc = [[0.0; LANES]; 4];
    let xs = x.map(|r| r[..full].chunks_exact(LANES));
    let ms = m.map(|r| r[..full].chunks_exact(LANES));
    let [x0, x1, x2, x3] = xs;
    let [m0, m1, m2, m3] = ms;
    for ((((x0, x1), (x2, x3)), (m0, m1)), (m2, m3)) in x0.zip(x1).zip(x2.zip(x3)).zip(m0.zip(m1)).zip(m2.zip(m3)) {
        step_dist(&mut acc[0], x0, m0);
        step_dist(&mut acc[1], x1, m1);
        step_dist(&mut acc[2], x2, m2);
        step_dist(&mut acc[3], x3, m3);
    }
    let mut out = [0.0; 4];
    for r in 0..4 {
        let mut tail = 0.0;
        for (&v, &c) in x[r][full..].iter().zip(&m[r][full..]) {
            let e = v as f64 - c;
            tail += e * e;
        }
        out[r] = combine(acc[r], tail);
    }
    out
}

/// ‖x‖² of an f64 row, in the fixed order.
#[inline(always)]
fn sq_norm(x: &[f64]) -> f64 {
    let mut acc = [0.0; LANES];
    let full = x.len() / LANES * LANES;
    for xc in x[..full].chunks_exact(LANES) {
        step_sq(&mut acc, xc);
    }
    let mut tail = 0.0;
    for v in &x[full..] {
        tail += v * v;
    }
    combine(acc, tail)
}

/// sq_norm of four rows at once.
#[inline(always)]
fn sq_norm4(x: [&[f64]; 4]) -> [f64; 4] {
    let full = x[0].len() / LANES * LANES;
    let mut acc = [[0.0; LANES]; 4];
    let [x0, x1, x2, x3] = x.map(|r| r[..full].chunks_exact(LANES));
    for ((x0, x1), (x2, x3)) in x0.zip(x1).zip(x2.zip(x3)) {
        step_sq(&mut acc[0], x0);
        step_sq(&mut acc[1], x1);
        step_sq(&mut acc[2], x2);
        step_sq(&mut acc[3], x3);
    }
    let mut out = [0.0; 4];
    for r in 0..4 {
        let mut tail = 0.0;
        for v in &x[r][full..] {
            tail += v * v;
        }
        out[r] = combine(acc[r], tail);
    }
    out
}

multiversion! {
    /// True when every value is finite (branch-free, so it vectorises; callers locate the
    /// culprit only on failure).
    pub fn all_finite(x: &[f32]) -> bool {
        x.iter().fold(true, |ok, v| ok & v.is_finite())
    }
}

multiversion! {
    /// Per-class sums of a block of rows (row-major, `d` wide) into `sums` (C × d) and their
    /// counts; rows of class None are skipped. Returns whether every value of the block, skipped
    /// rows included, is finite: the check rides on the one read of the rows.
    pub fn add_rows_by_class(
        x: &[f32],
        class: &[Option<usize>],
        d: usize,
        sums: &mut [f64],
        counts: &mut [u64],
    ) -> bool {
        let mut ok = true;
        for (row, c) in x.chunks_exact(d).zip(class) {
            let Some(c) = *c else {
                ok &= row.iter().fold(true, |ok, v| ok & v.is_finite());
                continue;
            };
            counts[c] += 1;
            for (s, &v) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                *s += v as f64;
                ok &= v.is_finite();
            }
        }
        ok
    }
}

multiversion! {
    /// Per-class Σ ‖x − μ_c‖² of a block of rows against `means` (C × d) into `m2`, row by row
    /// in order.
    pub fn sq_dist_by_class(x: &[f32], class: &[Option<usize>], d: usize, means: &[f64], m2: &mut [f64]) {
        let mut group: [(&[f32], usize); ROWS] = [(&[][..], 0); ROWS];
        let mut n = 0;
        for (row, c) in x.chunks_exact(d).zip(class) {
            let Some(c) = *c else { continue };
            group[n] = (row, c);
            n += 1;
            if n == ROWS {
                let s = sq_dist4(group.map(|g| g.0), group.map(|g| &means[g.1 * d..(g.1 + 1) * d]));
                for (v, g) in s.iter().zip(&group) {
                    m2[g.1] += v;
                }
                n = 0;
            }
        }
        for &(row, c) in &group[..n] {
            m2[c] += sq_dist(row, &means[c * d..(c + 1) * d]);
        }
    }
}

multiversion! {
    /// The rows of measured classes widened to f64 (appended to `x64`), with their squared
    /// norms (to `sq`) and classes (to `labels`). Returns whether every value of the block is
    /// finite (a row's squared norm is finite exactly when its values are: f32 squares cannot
    /// overflow f64), skipped rows included.
    pub fn widen_rows(
        x: &[f32],
        class: &[Option<usize>],
        d: usize,
        x64: &mut Vec<f64>,
        sq: &mut Vec<f64>,
        labels: &mut Vec<usize>,
    ) -> bool {
        let mut ok = true;
        let start = x64.len();
        let first = sq.len();
        for (row, c) in x.chunks_exact(d).zip(class) {
            let Some(c) = *c else {
                ok &= row.iter().fold(true, |ok, v| ok & v.is_finite());
                continue;
            };
            x64.extend(row.iter().map(|&v| v as f64));
            labels.push(c);
        }
        let all = &x64[start..];
        let n = all.len() / d;
        let row = |i: usize| &all[i * d..(i + 1) * d];
        let mut i = 0;
        while i + ROWS <= n {
            sq.extend(sq_norm4([row(i), row(i + 1), row(i + 2), row(i + 3)]));
            i += ROWS;
        }
        for i in i..n {
            sq.push(sq_norm(row(i)));
        }
        ok & sq[first..].iter().fold(true, |ok, v| ok & v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, salt: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + salt) * 0.37).sin() * 3.0).collect()
    }

    #[test]
    fn kernels_match_plain_loops() {
        for d in [1, 15, 16, 37, 64] {
            let x = data(5 * d, 0.5);
            let class = [Some(1), None, Some(0), Some(1), Some(1)];
            let mut sums = vec![0.0; 2 * d];
            let mut counts = vec![0; 2];
            add_rows_by_class(&x, &class, d, &mut sums, &mut counts);
            assert_eq!(counts, [1, 3]);
            for j in 0..d {
                assert_eq!(sums[j], x[2 * d + j] as f64);
                let plain = [0, 3, 4].iter().map(|&r| x[r * d + j] as f64).sum::<f64>();
                assert!((sums[d + j] - plain).abs() <= 1e-12 * plain.abs().max(1.0));
            }
            let means: Vec<f64> = (0..2 * d).map(|i| (i as f64 * 0.11).cos()).collect();
            let mut m2 = vec![0.0; 2];
            sq_dist_by_class(&x, &class, d, &means, &mut m2);
            let plain =
                |r: usize, c: usize| (0..d).map(|j| (x[r * d + j] as f64 - means[c * d + j]).powi(2)).sum::<f64>();
            assert!((m2[0] - plain(2, 0)).abs() <= 1e-12 * m2[0]);
            let p1 = plain(0, 1) + plain(3, 1) + plain(4, 1);
            assert!((m2[1] - p1).abs() <= 1e-12 * p1);
            let (mut x64, mut sq, mut labels) = (vec![], vec![], vec![]);
            widen_rows(&x, &class, d, &mut x64, &mut sq, &mut labels);
            assert_eq!(labels, [1, 0, 1, 1]);
            assert_eq!(x64.len(), 4 * d);
            for (i, &r) in [0, 2, 3, 4].iter().enumerate() {
                assert!(x64[i * d..(i + 1) * d].iter().zip(&x[r * d..(r + 1) * d]).all(|(&a, &b)| a == b as f64));
                let p: f64 = x[r * d..(r + 1) * d].iter().map(|&v| (v as f64).powi(2)).sum();
                assert!((sq[i] - p).abs() <= 1e-12 * p);
            }
        }
    }

    #[test]
    fn all_finite_finds_every_kind_of_non_finite_value() {
        let mut x = data(1000, 0.0);
        assert!(all_finite(&x));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 17, 999] {
                let keep = x[at];
                x[at] = bad;
                assert!(!all_finite(&x));
                x[at] = keep;
            }
        }
    }

    /// What this CPU dispatches to gives the bits of the fixed order written out plainly
    /// (compiled here for the baseline instruction set, one element at a time), with rows in
    /// groups of ROWS and a remainder, and skipped rows among them.
    #[test]
    fn dispatched_kernels_are_bit_identical_to_the_plain_order() {
        for d in [53, 512] {
            let n = 11;
            let x = data(n * d, 1.5);
            let class: Vec<Option<usize>> = (0..n).map(|i| (i % 5 != 2).then_some(i % 2)).collect();
            let means: Vec<f64> = (0..2 * d).map(|i| (i as f64 * 0.3).sin()).collect();
            let mut m2 = vec![0.0; 2];
            sq_dist_by_class(&x, &class, d, &means, &mut m2);
            let (mut x64, mut sq, mut labels) = (vec![], vec![], vec![]);
            widen_rows(&x, &class, d, &mut x64, &mut sq, &mut labels);
            let mut want = [0.0f64; 2];
            let mut kept = 0;
            for r in 0..n {
                let Some(c) = class[r] else { continue };
                let row = &x[r * d..(r + 1) * d];
                let (mut acc, mut acc_sq) = ([0.0f64; 4], [0.0f64; 4]);
                let (mut tail, mut tail_sq) = (0.0, 0.0);
                for j in 0..d {
                    let e = row[j] as f64 - means[c * d + j];
                    let v = row[j] as f64;
                    if j < d / 4 * 4 {
                        acc[j % 4] += e * e;
                        acc_sq[j % 4] += v * v;
                    } else {
                        tail += e * e;
                        tail_sq += v * v;
                    }
                }
                want[c] += (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
                let plain_sq = (acc_sq[0] + acc_sq[1]) + (acc_sq[2] + acc_sq[3]) + tail_sq;
                assert_eq!(sq[kept].to_bits(), plain_sq.to_bits(), "d {d}, row {r}");
                kept += 1;
            }
            assert_eq!(kept, sq.len());
            assert_eq!(m2[0].to_bits(), want[0].to_bits(), "d {d}");
            assert_eq!(m2[1].to_bits(), want[1].to_bits(), "d {d}");
        }
    }
}
