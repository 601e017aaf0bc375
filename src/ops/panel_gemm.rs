//! An f32 GEMM against a pre-packed weight matrix, on lanes: `C[m, n] = A[m, k] · Wᵀ`
//! (or `C += …`), where `W [n, k]` is a linear layer's weight (`[out, in]`, row-major) and
//! A's rows are its inputs. It is the inner product of every fused inference path: one call
//! per chunk of rows on one thread, with W packed once and shared by all chunks.
//!
//! Why not `matrixmultiply`: at the network shapes (k, n ≈ 128, m a few hundred rows per
//! thread) its packing of A costs about as much as its micro-kernel (measured: 22 % packing
//! against 30 % kernel in the EPiC generation profile), and its thread hand-off spins. Here
//! A is read in place: each k step broadcasts one value of each of [`MR`] rows and multiplies
//! it into two lanes of a packed column panel of W, so a tile keeps 2·MR accumulators in
//! registers and B's panel (k × 16 values) stays in L1 while all row tiles pass over it.
//!
//! ```text
//! packed W: panel p (columns 16p..16p+16, zero-padded) = [k][16], W[16p + j, k]
//! tile:     acc[r][j] = Σ_k A[r0 + r, k] · Wp[k][j]        (r < MR, j < 16)
//! ```
//! Work: 2·m·n·k FLOPs; A is read n/16 times from L2, W once per chunk.
//! Results agree with any other summation order to f32 rounding (each dot product is one
//! FMA chain in k order).

use crate::simd::{dispatch, Isa, Lanes};

/// Columns per packed panel (two AVX-512 registers, four lanes of eight).
pub const NR: usize = 32;
/// Rows per register tile on eight-wide lanes (each tile is half a panel: 16 columns).
const MR: usize = 6;
/// Columns per eight-wide-lane tile.
const HALF: usize = 16;
/// Rows per register tile of the AVX-512 kernel (a whole panel: 2 registers per row).
const MR512: usize = 8;

/// A weight matrix `W [n, k]` packed into column panels of [`NR`] (see the module doc).
#[derive(Clone, Debug)]
pub struct PackedW {
    n: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedW {
    /// Packs columns `off..off + k` of the `n` rows of `w` (row stride `ld`), i.e. the
    /// block `W[:, off..off + k]` of a weight whose rows are `ld` long. Panics (a bug, never
    /// user input) if `w` is too short.
    pub fn pack(w: &[f32], ld: usize, off: usize, n: usize, k: usize) -> PackedW {
        assert!(
            n == 0 || k == 0 || (off + k <= ld && w.len() >= (n - 1) * ld + off + k),
            "PackedW::pack: weight too short"
        );
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * k * NR];
        for (p, panel) in data
            .chunks_exact_mut((k * NR).max(1))
            .enumerate()
            .take(panels)
        {
            for j in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + j) * ld + off..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        PackedW { n, k, data }
    }

    /// Output columns (n).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension (k).
    pub fn k(&self) -> usize {
        self.k
    }
}

/// `C[m, n] = A[m, k] · Wᵀ` (`accumulate`: `C += …`) with A's rows `lda` apart and C's
/// `ldc` apart, on the lane path `isa` (AVX-512 where `isa` is the AVX2 + FMA path and the
/// CPU also has AVX-512F), on the calling thread. Panics (a bug, never user input) if a
/// slice is too short for its shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &PackedW,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (n, k) = (w.n, w.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lda >= k && a.len() >= (m - 1) * lda + k,
        "gemm_packed: A too short"
    );
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm_packed: C too short"
    );
    let shape = Shape { lda, ldc, k, m, n };
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2_fma() && avx512::available() {
        // SAFETY: the CPU has AVX-512F (checked); the asserts above bound A and C, and the
        // packed panels hold ⌈n/32⌉·k·32 values.
        unsafe { avx512::gemm(a, &w.data, c, shape, accumulate) };
        return;
    }
    gemm_dispatch(isa, a, &w.data, c, shape, accumulate);
}

dispatch! {
    /// [`gemm_packed`] on the eight-wide lanes `isa` names.
    fn gemm_dispatch(
        isa: Isa,
        a: &[f32],
        wp: &[f32],
        c: &mut [f32],
        shape: Shape,
        accumulate: bool,
    ) = gemm_lanes::<lanes>;
}

/// Shape and strides of one call.
#[derive(Clone, Copy)]
struct Shape {
    lda: usize,
    ldc: usize,
    k: usize,
    m: usize,
    n: usize,
}

/// Panel-outer loop: each packed panel of W stays in L1 while every row tile passes over it
/// (two 16-column halves per panel).
#[inline(always)]
fn gemm_lanes<V: Lanes>(a: &[f32], wp: &[f32], c: &mut [f32], s: Shape, accumulate: bool) {
    let (m, n, k) = (s.m, s.n, s.k);
    for p in 0..n.div_ceil(NR) {
        let panel = &wp[p * k * NR..(p + 1) * k * NR];
        for half in 0..2 {
            let c0 = p * NR + half * HALF;
            if c0 >= n {
                break;
            }
            let cols = (c0, HALF.min(n - c0));
            let panel = &panel[half * HALF..];
            let mut r = 0;
            while r + MR <= m {
                tile::<V, MR>(a, panel, c, r, cols, s, accumulate);
                r += MR;
            }
            match m - r {
                1 => tile::<V, 1>(a, panel, c, r, cols, s, accumulate),
                2 => tile::<V, 2>(a, panel, c, r, cols, s, accumulate),
                3 => tile::<V, 3>(a, panel, c, r, cols, s, accumulate),
                4 => tile::<V, 4>(a, panel, c, r, cols, s, accumulate),
                5 => tile::<V, 5>(a, panel, c, r, cols, s, accumulate),
                _ => {}
            }
        }
    }
}

/// One R × 16 tile: rows `r0..r0 + R` of C, columns `cols.0..cols.0 + cols.1` (≤ 16);
/// `panel` starts at the tile's first column inside a packed panel (row stride [`NR`]).
#[inline(always)]
fn tile<V: Lanes, const R: usize>(
    a: &[f32],
    panel: &[f32],
    c: &mut [f32],
    r0: usize,
    cols: (usize, usize),
    s: Shape,
    accumulate: bool,
) {
    let k = s.k;
    assert!(k == 0 || panel.len() >= (k - 1) * NR + HALF);
    debug_assert!(a.len() >= (r0 + R - 1) * s.lda + k);
    let mut lo = [V::zero(); R];
    let mut hi = [V::zero(); R];
    let a0 = a[r0 * s.lda..].as_ptr();
    let bp = panel.as_ptr();
    for kk in 0..k {
        // SAFETY: kk < k, inside the panel (asserted above); row r0 + r < m and kk < k ≤ lda,
        // inside A (checked by `gemm_packed`).
        let (b0, b1) = unsafe {
            (
                V::load(std::slice::from_raw_parts(bp.add(kk * NR), 8)),
                V::load(std::slice::from_raw_parts(bp.add(kk * NR + 8), 8)),
            )
        };
        for r in 0..R {
            let av = V::splat(unsafe { *a0.add(r * s.lda + kk) });
            lo[r] = av.mul_add(b0, lo[r]);
            hi[r] = av.mul_add(b1, hi[r]);
        }
    }
    let (c0, nc) = cols;
    for r in 0..R {
        let row = &mut c[(r0 + r) * s.ldc + c0..];
        if nc == HALF {
            let (mut x0, mut x1) = (lo[r], hi[r]);
            if accumulate {
                x0 += V::load(&row[..8]);
                x1 += V::load(&row[8..16]);
            }
            x0.store(&mut row[..8]);
            x1.store(&mut row[8..16]);
        } else {
            let (v0, v1) = (lo[r].to_array(), hi[r].to_array());
            for j in 0..nc {
                let v = if j < 8 { v0[j] } else { v1[j - 8] };
                if accumulate {
                    row[j] += v;
                } else {
                    row[j] = v;
                }
            }
        }
    }
}

/// The AVX-512 kernel: tiles of [`MR512`] rows × one whole 32-column panel (two registers
/// per row, 16 accumulators), columns past n masked on store.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{Shape, MR512, NR};

    /// True where the CPU has AVX-512F (detected once).
    pub(super) fn available() -> bool {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }

    /// # Safety
    /// The CPU must have AVX-512F; A, C and the panels must hold the shape `s` describes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(a: &[f32], wp: &[f32], c: &mut [f32], s: Shape, acc: bool) {
        for p in 0..s.n.div_ceil(NR) {
            let panel = wp.as_ptr().add(p * s.k * NR);
            let c0 = p * NR;
            let nc = NR.min(s.n - c0);
            let mut r = 0;
            while r + MR512 <= s.m {
                tile::<MR512>(a.as_ptr(), panel, c.as_mut_ptr(), r, (c0, nc), s, acc);
                r += MR512;
            }
            let (a, c) = (a.as_ptr(), c.as_mut_ptr());
            match s.m - r {
                1 => tile::<1>(a, panel, c, r, (c0, nc), s, acc),
                2 => tile::<2>(a, panel, c, r, (c0, nc), s, acc),
                3 => tile::<3>(a, panel, c, r, (c0, nc), s, acc),
                4 => tile::<4>(a, panel, c, r, (c0, nc), s, acc),
                5 => tile::<5>(a, panel, c, r, (c0, nc), s, acc),
                6 => tile::<6>(a, panel, c, r, (c0, nc), s, acc),
                7 => tile::<7>(a, panel, c, r, (c0, nc), s, acc),
                _ => {}
            }
        }
    }

    /// Lanes of a 16-wide half that lie below column count `nc - off`.
    #[inline(always)]
    fn mask(nc: usize, off: usize) -> __mmask16 {
        let live = nc.saturating_sub(off).min(16);
        ((1u32 << live) - 1) as __mmask16
    }

    #[inline(always)]
    unsafe fn tile<const R: usize>(
        a: *const f32,
        panel: *const f32,
        c: *mut f32,
        r0: usize,
        (c0, nc): (usize, usize),
        s: Shape,
        acc: bool,
    ) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let a0 = a.add(r0 * s.lda);
        for kk in 0..s.k {
            let b0 = _mm512_loadu_ps(panel.add(kk * NR));
            let b1 = _mm512_loadu_ps(panel.add(kk * NR + 16));
            for r in 0..R {
                let av = _mm512_set1_ps(*a0.add(r * s.lda + kk));
                lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
            }
        }
        let (m0, m1) = (mask(nc, 0), mask(nc, 16));
        for r in 0..R {
            let row = c.add((r0 + r) * s.ldc + c0);
            let (mut x0, mut x1) = (lo[r], hi[r]);
            if acc {
                x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, row));
                x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, x0);
            _mm512_mask_storeu_ps(row.add(16), m1, x1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], lda: usize, m: usize, w: &[f32], n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| f64::from(a[i * lda + kk]) * f64::from(w[j * k + kk]))
                    .sum();
            }
        }
        out
    }

    #[test]
    fn odd_shapes_match_the_f64_product_on_every_path() {
        let isas = Isa::available();
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (13, 16, 128),
            (6, 3, 33),
            (20, 40, 170),
        ] {
            let lda = k + 3;
            let a: Vec<f32> = (0..m * lda)
                .map(|i| crate::rng::uniform_at(1, i as u64) - 0.5)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| crate::rng::uniform_at(2, i as u64) - 0.5)
                .collect();
            let want = reference(&a, lda, m, &w, n, k);
            let packed = PackedW::pack(&w, k, 0, n, k);
            for &isa in &isas {
                let ldc = n + 2;
                let mut c = vec![1.0f32; m * ldc];
                gemm_packed(isa, &a, lda, m, &packed, &mut c, ldc, true);
                for i in 0..m {
                    for j in 0..n {
                        let got = f64::from(c[i * ldc + j]) - 1.0;
                        assert!(
                            (got - want[i * n + j]).abs() < 1e-5 * (k as f64).sqrt(),
                            "{isa} m{m} n{n} k{k} ({i},{j}): {got} vs {}",
                            want[i * n + j]
                        );
                    }
                    // the padding columns of C are untouched
                    assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 1.0));
                }
                let mut c2 = vec![7.0f32; m * ldc];
                gemm_packed(isa, &a, lda, m, &packed, &mut c2, ldc, false);
                for i in 0..m {
                    for j in 0..n {
                        let d = (f64::from(c2[i * ldc + j]) - want[i * n + j]).abs();
                        assert!(d < 1e-5 * (k as f64).sqrt());
                    }
                }
            }
        }
    }

    #[test]
    fn a_column_block_of_a_wider_weight_is_packed() {
        // W [3, 5]; pack columns 2..5 → the product uses only those.
        let w: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let packed = PackedW::pack(&w, 5, 2, 3, 3);
        let a = [1.0f32, 0.0, 2.0];
        let mut c = [0.0f32; 3];
        gemm_packed(crate::simd::isa(), &a, 3, 1, &packed, &mut c, 3, false);
        // row j of the block: [w[j,2], w[j,3], w[j,4]] · [1, 0, 2]
        assert_eq!(c, [2.0 + 8.0, 7.0 + 18.0, 12.0 + 28.0]);
    }

    #[test]
    fn empty_shapes_write_nothing() {
        let packed = PackedW::pack(&[], 0, 0, 0, 0);
        let mut c: Vec<f32> = vec![];
        gemm_packed(crate::simd::isa(), &[], 0, 0, &packed, &mut c, 0, false);
        let packed = PackedW::pack(&[], 0, 0, 4, 0);
        let mut c = vec![5.0f32; 8];
        gemm_packed(crate::simd::isa(), &[], 0, 2, &packed, &mut c, 4, false);
        assert_eq!(c, vec![0.0; 8], "k = 0 gives a zero product");
    }
}
