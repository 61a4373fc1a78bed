//! The Gram matrix's inner loop: a symmetric rank-k update (BLAS calls it SYRK) of the lower
//! triangle, S += Σₖ xₖxₖᵀ, over f32 rows, in f64.
//!
//! Why every variant gives the same bits: the product of two f32 values is exact in f64 (24 + 24
//! significant bits ≤ 53, and no f32 product overflows or underflows f64), so a fused
//! multiply-add rounds exactly as a multiply then an add would. Each entry is summed over the rows
//! one at a time, in row order, starting from its staged value. So the AVX-512 kernel, the AVX2
//! kernel, the plain loop and any tiling of them give the naive loop's result, bit for bit.
//!
//! Layout: the rows are first packed into panels of PANEL columns ([panel][row][PANEL] f64,
//! zero-padded past D), so a kernel reads contiguous vectors instead of striding over rows of
//! 4 KiB (which all fall in one L1 set). The staged sum is column-major with Dp = D rounded up to
//! PANEL; the kernels update whole PANEL-wide tiles on and below the diagonal, so the upper
//! entries of diagonal tiles are computed too and never read.

// The tiles index accumulators by (row, column) as the maths does; iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

/// Columns per packed panel: one AVX-512 vector of f64.
pub const PANEL: usize = 8;

/// Rows packed and multiplied at a time: the packed rows (CHUNK × Dp × 8 bytes, 512 KiB at D =
/// 512) stay in L2 while every tile of the triangle passes over them.
pub const CHUNK: usize = 128;

/// Values from one packed panel to the next: a cache line more than the panel's rows, so that
/// the same row of consecutive panels does not fall in one L1 set (the rows span 8 KiB at
/// CHUNK rows, a multiple of the 4 KiB that maps to one set).
pub fn panel_stride(rows: usize) -> usize {
    rows * PANEL + PANEL
}

/// `dim` rounded up to whole panels.
pub fn padded(dim: usize) -> usize {
    dim.div_ceil(PANEL) * PANEL
}

/// Pack rows (each `dim` f32 values) into `pack`, widened to f64: Dp/PANEL panels of
/// `rows.len() × PANEL`, the columns past `dim` zero. `widen` converts one full panel's 8 values
/// (each kernel passes its vector instructions).
#[inline(always)]
fn pack_rows(rows: &[&[f32]], dim: usize, pack: &mut [f64], widen: impl Fn(&[f32; PANEL], &mut [f64; PANEL])) {
    let kc = rows.len();
    let full = dim / PANEL;
    assert_eq!(pack.len(), padded(dim) / PANEL * panel_stride(kc));
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), dim, "a row of the layer's dimension");
        for p in 0..full {
            let src: &[f32; PANEL] = row[p * PANEL..][..PANEL].try_into().unwrap();
            let dst: &mut [f64; PANEL] = (&mut pack[p * panel_stride(kc) + k * PANEL..][..PANEL]).try_into().unwrap();
            widen(src, dst);
        }
        if full * PANEL < dim {
            let dst = &mut pack[full * panel_stride(kc) + k * PANEL..][..PANEL];
            let tail = &row[full * PANEL..];
            for c in 0..PANEL {
                dst[c] = tail.get(c).map_or(0.0, |&v| v as f64);
            }
        }
    }
}

fn widen_plain(src: &[f32; PANEL], dst: &mut [f64; PANEL]) {
    for c in 0..PANEL {
        dst[c] = src[c] as f64;
    }
}

/// Which kernel; `best()` is what the CPU runs, the others are for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Plain,
}

impl Isa {
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2].into_iter().find(|i| i.available()).unwrap_or(Isa::Plain)
    }

    pub fn available(self) -> bool {
        match self {
            Isa::Plain => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// Where an update's sums start.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    /// From zero: S's old values are not read (the same bits as adding to zeros, without
    /// clearing S first).
    Zero,
    /// From S's own values.
    Same,
    /// From another Dp×Dp matrix of the same layout (S's old values are not read).
    From(&'a [f64]),
}

/// S = start + XᵀX on the tiles on and below the diagonal, X the f32 `rows` (each `dim` values,
/// at least one row), packed into `pack` first; S is Dp×Dp column-major.
pub fn update_lower(isa: Isa, s: &mut [f64], start: Start, rows: &[&[f32]], dim: usize, pack: &mut Vec<f64>) {
    assert!(isa.available(), "{isa:?} kernel on a CPU without it");
    let (dp, kc) = (padded(dim), rows.len());
    assert!(kc > 0, "an update of no rows");
    assert_eq!(s.len(), dp * dp);
    if let Start::From(a) = start {
        assert_eq!(a.len(), dp * dp);
    }
    // Every value read is overwritten by pack_rows: no need to zero it.
    let len = dp / PANEL * panel_stride(kc);
    pack.resize(len, 0.0);
    let pack = &mut pack[..len];
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has the features (asserted above); the kernels index only inside
        // s (dp × dp) and pack (dp × kc), as the asserts above and the resize ensure.
        Isa::Avx512 => unsafe { x86::avx512(s, dp, start, rows, dim, pack) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::avx2(s, dp, start, rows, dim, pack) },
        _ => {
            pack_rows(rows, dim, pack, widen_plain);
            plain(s, dp, start, pack, kc)
        }
    }
}

/// The reference loop, in the order every kernel keeps: per entry, rows in order.
fn plain(s: &mut [f64], dp: usize, start: Start, pack: &[f64], kc: usize) {
    let np = dp / PANEL;
    let panel = |p: usize| &pack[p * panel_stride(kc)..][..kc * PANEL];
    for pj in 0..np {
        let b = panel(pj);
        for pi in pj..np {
            let a = panel(pi);
            for c in 0..PANEL {
                for r in 0..PANEL {
                    let at = (pj * PANEL + c) * dp + pi * PANEL + r;
                    let mut acc = match start {
                        Start::Zero => 0.0,
                        Start::Same => s[at],
                        Start::From(m) => m[at],
                    };
                    for k in 0..kc {
                        acc += a[k * PANEL + r] * b[k * PANEL + c];
                    }
                    s[at] = acc;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{pack_rows, Start, PANEL};
    use std::arch::x86_64::*;

    /// Where a tile's sums start: None for zero, else the same offset in this matrix.
    fn start_ptr(start: Start, s: &[f64]) -> Option<*const f64> {
        match start {
            Start::Zero => None,
            Start::Same => Some(s.as_ptr()),
            Start::From(m) => Some(m.as_ptr()),
        }
    }

    /// Tiles of 3 panels of rows (24) × one panel of columns (8): 24 accumulators of the 32
    /// registers, 3 row vectors, each column value broadcast from memory.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(s: &mut [f64], dp: usize, start: Start, rows: &[&[f32]], dim: usize, pack: &mut [f64]) {
        // SAFETY (both): 8 f32 read and 8 f64 written, the arrays' sizes.
        pack_rows(rows, dim, pack, |x, y| unsafe {
            _mm512_storeu_pd(y.as_mut_ptr(), _mm512_cvtps_pd(_mm256_loadu_ps(x.as_ptr())))
        });
        let (np, kc) = (dp / PANEL, rows.len());
        let src = start_ptr(start, s);
        let (s, p) = (s.as_mut_ptr(), pack.as_ptr());
        for pj in 0..np {
            let mut pi = pj;
            while pi < np {
                let r = (np - pi).min(3);
                // SAFETY: panels pi..pi+r and pj exist; the tile lies inside s.
                unsafe {
                    match r {
                        3 => tile512::<3>(s, dp, p, kc, pi, pj, src),
                        2 => tile512::<2>(s, dp, p, kc, pi, pj, src),
                        _ => tile512::<1>(s, dp, p, kc, pi, pj, src),
                    }
                }
                pi += r;
            }
        }
    }

    /// R panels of rows (8·R, R vectors) × one panel of columns (8): 8·R accumulators (24 of
    /// the 32 registers at R = 3); each column value is broadcast once and used R times.
    #[inline(always)]
    unsafe fn tile512<const R: usize>(
        s: *mut f64,
        dp: usize,
        p: *const f64,
        kc: usize,
        pi: usize,
        pj: usize,
        src: Option<*const f64>,
    ) {
        unsafe {
            let stride = super::panel_stride(kc);
            let a = p.add(pi * stride);
            let b = p.add(pj * stride);
            let at = |c: usize, r: usize| (pj * PANEL + c) * dp + (pi + r) * PANEL;
            let mut acc = [[_mm512_setzero_pd(); PANEL]; R];
            if let Some(src) = src {
                for c in 0..PANEL {
                    for r in 0..R {
                        acc[r][c] = _mm512_loadu_pd(src.add(at(c, r)));
                    }
                }
            }
            for k in 0..kc {
                let mut x = [_mm512_setzero_pd(); R];
                for r in 0..R {
                    x[r] = _mm512_loadu_pd(a.add(r * stride + k * PANEL));
                }
                for c in 0..PANEL {
                    let y = _mm512_set1_pd(*b.add(k * PANEL + c));
                    for r in 0..R {
                        acc[r][c] = _mm512_fmadd_pd(x[r], y, acc[r][c]);
                    }
                }
            }
            for c in 0..PANEL {
                for r in 0..R {
                    _mm512_storeu_pd(s.add(at(c, r)), acc[r][c]);
                }
            }
        }
    }

    /// Tiles of one panel of rows (8, two vectors) × 4 columns: 8 accumulators of the 16
    /// registers, with room for the row vectors and a broadcast.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(s: &mut [f64], dp: usize, start: Start, rows: &[&[f32]], dim: usize, pack: &mut [f64]) {
        // SAFETY (both): 8 f32 read and 8 f64 written, the arrays' sizes.
        pack_rows(rows, dim, pack, |x, y| unsafe {
            _mm256_storeu_pd(y.as_mut_ptr(), _mm256_cvtps_pd(_mm_loadu_ps(x.as_ptr())));
            _mm256_storeu_pd(y.as_mut_ptr().add(4), _mm256_cvtps_pd(_mm_loadu_ps(x.as_ptr().add(4))));
        });
        let (np, kc) = (dp / PANEL, rows.len());
        let src = start_ptr(start, s);
        let (s, p) = (s.as_mut_ptr(), pack.as_ptr());
        let stride = super::panel_stride(kc);
        for pj in 0..np {
            for half in [0, 4] {
                for pi in pj..np {
                    // SAFETY: panels pi and pj exist; the tile lies inside s.
                    unsafe {
                        let a = p.add(pi * stride);
                        let b = p.add(pj * stride + half);
                        let at = |c: usize, v: usize| (pj * PANEL + half + c) * dp + pi * PANEL + 4 * v;
                        let mut acc = [[_mm256_setzero_pd(); 4]; 2];
                        if let Some(src) = src {
                            for c in 0..4 {
                                for v in 0..2 {
                                    acc[v][c] = _mm256_loadu_pd(src.add(at(c, v)));
                                }
                            }
                        }
                        for k in 0..kc {
                            let x = [_mm256_loadu_pd(a.add(k * PANEL)), _mm256_loadu_pd(a.add(k * PANEL + 4))];
                            for c in 0..4 {
                                let y = _mm256_broadcast_sd(&*b.add(k * PANEL + c));
                                for v in 0..2 {
                                    acc[v][c] = _mm256_fmadd_pd(x[v], y, acc[v][c]);
                                }
                            }
                        }
                        for c in 0..4 {
                            for v in 0..2 {
                                _mm256_storeu_pd(s.add(at(c, v)), acc[v][c]);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 values spread over many binades, signs and exact zeros, so a rounding that differs
    /// anywhere shows.
    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let m = ((s >> 40) as u32 & 0xFFFFFF) as f32 / (1 << 24) as f32 - 0.5;
                let e = ((s >> 20) % 40) as i32 - 20;
                if s.is_multiple_of(17) {
                    0.0
                } else {
                    m * 2f32.powi(e)
                }
            })
            .collect()
    }

    #[test]
    fn every_kernel_gives_the_naive_loops_bits() {
        for (d, n) in [(1usize, 5usize), (7, 33), (8, 1), (24, 70), (37, 130), (64, 9), (83, 200)] {
            let x = rows(n, d, d as u64 * 31 + n as u64);
            let dp = padded(d);
            // Naive: every (i ≥ j) entry, rows in order, in chunks as the Gram stages them.
            let mut naive = vec![0.0f64; d * d];
            for k in 0..n {
                for j in 0..d {
                    for i in j..d {
                        naive[j * d + i] += x[k * d + i] as f64 * x[k * d + j] as f64;
                    }
                }
            }
            for isa in [Isa::Avx512, Isa::Avx2, Isa::Plain].into_iter().filter(|i| i.available()) {
                // The first chunk starts from zero over stale values (which it must not read), the
                // second from another matrix (the same sums, copied), the rest from S itself.
                let mut s = vec![f64::NAN; dp * dp];
                let mut other = vec![f64::NAN; dp * dp];
                let mut p = Vec::new();
                // Chunks of different sizes, as the Gram's batches come.
                for (i, chunk) in x.chunks(29 * d).enumerate() {
                    let rs: Vec<&[f32]> = chunk.chunks(d).collect();
                    match i {
                        0 => update_lower(isa, &mut s, Start::Zero, &rs, d, &mut p),
                        1 => {
                            other.copy_from_slice(&s);
                            s.fill(f64::NAN);
                            update_lower(isa, &mut s, Start::From(&other), &rs, d, &mut p)
                        }
                        _ => update_lower(isa, &mut s, Start::Same, &rs, d, &mut p),
                    }
                }
                for j in 0..d {
                    for i in j..d {
                        assert_eq!(
                            s[j * dp + i].to_bits(),
                            naive[j * d + i].to_bits(),
                            "{isa:?}, D = {d}, N = {n}, entry ({i}, {j})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packing_widens_and_pads_with_zeros() {
        let x: Vec<f32> = (0..2 * 10).map(|v| v as f32 + 0.5).collect();
        let rs: Vec<&[f32]> = x.chunks(10).collect();
        // Stale values where the padding goes.
        let stride = panel_stride(2);
        let mut p = vec![7.0; 2 * stride];
        pack_rows(&rs, 10, &mut p, widen_plain);
        // Panel 0: rows 0 and 1, columns 0..8; panel 1: columns 8, 9 then zeros.
        assert_eq!(&p[0..8], &[0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
        assert_eq!(&p[8..16], &[10.5, 11.5, 12.5, 13.5, 14.5, 15.5, 16.5, 17.5]);
        assert_eq!(&p[stride..stride + 8], &[8.5, 9.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&p[stride + 8..stride + 16], &[18.5, 19.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
