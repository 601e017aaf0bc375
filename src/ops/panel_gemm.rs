//! An f32 GEMM against a pre-packed weight matrix, on lanes: `C[m, n] = A[m, k] · Wᵀ`
//! (or `C += …`), where `W [n, k]` is a linear layer's weight (`[out, in]`, row-major) and
//! A's rows are its inputs. Two entry points: [`gemm_packed`] (one call on the calling thread
//! against weights packed once — the tape-free inference paths call it per task) and
//! [`gemm_strided_f32`] (any strided `A·B`: B packed per call, rows split over rayon), which
//! every f32 `matmul` on the AVX2 + FMA path goes through.
//!
//! Why not `matrixmultiply`: at the network shapes (k, n ≈ 128, m a few hundred rows per
//! thread) its packing of A costs about as much as its micro-kernel (measured: 22 % packing
//! against 30 % kernel in the EPiC generation profile), and its thread hand-off spins. Here
//! A is read in place: each k step broadcasts one value of each row of a tile and multiplies
//! it into a packed 32-column panel of W, so a tile's accumulators stay in registers and the
//! panel (k × 32 values) stays in L1 while all row tiles pass over it.
//!
//! ```text
//! packed W: panel p (columns 32p..32p+32, zero-padded) = [k][32], W[32p + j, k]
//! AVX-512:  tiles of 8 rows × 32 columns (2 registers per row, 16 accumulators)
//! 8 lanes:  tiles of 6 rows × 16 columns (half a panel; 12 accumulators)
//! tile:     acc[r][j] = Σ_k A[r0 + r, k] · Wp[k][j]
//! ```
//! Work: 2·m·n·k FLOPs; A is read ⌈n/32⌉ (AVX-512) or ⌈n/16⌉ times from L2, W once per call.
//! Results agree with any other summation order to f32 rounding (each dot product is one
//! FMA chain in k order). `JETGEN_SIMD=avx2` keeps the 8-lane kernel on AVX-512 CPUs.

use rayon::prelude::*;

use crate::simd::{dispatch, isa, Isa, Lanes};

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
        if n == 0 || k == 0 {
            return PackedW::pack_strided(&[], 1, 1, k, n);
        }
        PackedW::pack_strided(&w[off..], 1, ld, k, n)
    }

    /// Packs the right operand `B [k, n]` of `A·B` with element (kk, j) at
    /// `b[kk·rsb + j·csb]` (so `W = Bᵀ`). Panics (a bug) if `b` is too short.
    pub fn pack_strided(b: &[f32], rsb: usize, csb: usize, k: usize, n: usize) -> PackedW {
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * k * NR];
        if n == 0 || k == 0 {
            return PackedW { n, k, data };
        }
        assert!(
            b.len() > (k - 1) * rsb + (n - 1) * csb,
            "PackedW::pack_strided: operand too short"
        );
        // Walk the operand along its unit stride: B's rows are copied 32 values at a time
        // (csb = 1, the plain right operand); a weight's rows (rsb = 1, B = Wᵀ) are read
        // whole and scattered into the panel, which stays in L1.
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let cols = NR.min(n - p * NR);
            if csb == 1 {
                for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    let src = &b[kk * rsb + p * NR..][..cols];
                    dst[..cols].copy_from_slice(src);
                }
            } else if rsb == 1 {
                for j in 0..cols {
                    let src = &b[(p * NR + j) * csb..][..k];
                    for (kk, &v) in src.iter().enumerate() {
                        panel[kk * NR + j] = v;
                    }
                }
            } else {
                for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    let row = &b[kk * rsb + p * NR * csb..];
                    for (j, d) in dst[..cols].iter_mut().enumerate() {
                        *d = row[j * csb];
                    }
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
    assert!(lda >= w.k || m <= 1, "gemm_packed: A's rows overlap");
    gemm_packed_strided(isa, (a, lda, 1), m, w, c, ldc, accumulate)
}

/// [`gemm_packed`] with A's element (i, kk) at `a[i·rsa + kk·csa]` (a transposed A, rsa = 1,
/// is read in place: a tile's rows are then adjacent values).
#[allow(clippy::too_many_arguments)]
fn gemm_packed_strided(
    isa: Isa,
    (a, lda, csa): (&[f32], usize, usize),
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
        k == 0 || a.len() > (m - 1) * lda + (k - 1) * csa,
        "gemm_packed: A too short"
    );
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm_packed: C too short"
    );
    if k == 0 {
        // an empty sum: C = 0 (or unchanged)
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        return;
    }
    let shape = Shape {
        lda,
        csa,
        ldc,
        k,
        m,
        n,
    };
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2_fma() && avx512::available() {
        // SAFETY: the CPU has AVX-512F (checked); the asserts above bound A and C, and the
        // packed panels hold ⌈n/32⌉·k·32 values.
        unsafe { avx512::gemm(a, &w.data, c, shape, accumulate) };
        return;
    }
    gemm_dispatch(isa, a, &w.data, c, shape, accumulate);
}

/// Rows per parallel block of [`gemm_strided_f32`] for inner size k: about 128 KiB of A
/// (a multiple of 8, 8..=512), so a block's rows stay in L2 while every panel passes.
fn block_rows(k: usize) -> usize {
    ((32768 / k.max(1)) / 8 * 8).clamp(8, 512)
}

/// Multiply-adds from which [`gemm_strided_f32`] splits its rows over rayon (~20 µs of one
/// thread's work, several times a task hand-off).
const PARALLEL_WORK: usize = 1 << 21;

/// A `[m, k]` row-major copy of the strided A (element (i, kk) at `a[i·rsa + kk·csa]`),
/// copied in 16 × 16 tiles so a transposed operand is read and written a cache line at a
/// time.
fn row_major_copy(a: &[f32], rsa: usize, csa: usize, m: usize, k: usize) -> Vec<f32> {
    const T: usize = 16;
    let mut out = vec![0.0f32; m * k];
    for i0 in (0..m).step_by(T) {
        for k0 in (0..k).step_by(T) {
            for kk in k0..(k0 + T).min(k) {
                for i in i0..(i0 + T).min(m) {
                    out[i * k + kk] = a[i * rsa + kk * csa];
                }
            }
        }
    }
    out
}

/// True where [`gemm_strided_f32`] runs on this process's lane path (AVX2 + FMA, and AVX-512
/// where the CPU has it); on the portable path the caller keeps its own GEMM.
pub fn fast_path_available() -> bool {
    isa().is_avx2_fma()
}

/// `C[m, n] = A[m, k] · B[k, n]` (`accumulate`: `C +=`) for strided f32 operands — element
/// (i, kk) of A at `a[i·rsa + kk·csa]`, (kk, j) of B at `b[kk·rsb + j·csb]`, (i, j) of C at
/// `c[i·rsc + j]`: B is packed once, A is read in place when its rows or its columns are
/// contiguous (else copied row-major), and products of ≥ 2²¹ multiply-adds with more rows than one block
/// run in row blocks over rayon (about one block per thread, at most 512 rows each).
/// Panics (a bug, never user input) if a slice is too short for its strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided_f32(
    m: usize,
    k: usize,
    n: usize,
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    c: &mut [f32],
    rsc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(m == 1 || rsc >= n, "gemm_strided_f32: C's rows overlap");
    let packed = PackedW::pack_strided(b, rsb, csb, k, n);
    let copy;
    let (a, lda, csa) = if k == 0 {
        (&[][..], 0, 1)
    } else if csa == 1 && (m == 1 || rsa >= k) {
        (a, if m == 1 { k } else { rsa }, 1)
    } else if rsa == 1 && (k == 1 || csa >= m) {
        // transposed: read in place
        (a, 1, if k == 1 { m } else { csa })
    } else {
        assert!(
            a.len() > (m - 1) * rsa + (k - 1) * csa,
            "gemm_strided_f32: A too short"
        );
        copy = row_major_copy(a, rsa, csa, m, k);
        (&copy[..], k, 1)
    };
    let isa = isa();
    let threads = rayon::current_num_threads().max(1);
    let block = block_rows(k).min(m.div_ceil(threads).div_ceil(8) * 8);
    let rsc = if m == 1 { n } else { rsc };
    if m * n * k < PARALLEL_WORK || m <= block {
        gemm_packed_strided(isa, (a, lda, csa), m, &packed, c, rsc, accumulate);
        return;
    }
    let c_len = ((m - 1) * rsc + n).min(c.len());
    c[..c_len]
        .par_chunks_mut(block * rsc)
        .enumerate()
        .for_each(|(bi, cb)| {
            let r0 = bi * block;
            let rows = block.min(m - r0);
            let ab = if k == 0 { a } else { &a[r0 * lda..] };
            gemm_packed_strided(isa, (ab, lda, csa), rows, &packed, cb, rsc, accumulate);
        });
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
    /// Row and column strides of A (`csa` = 1: rows contiguous; `lda` = 1: A transposed).
    lda: usize,
    csa: usize,
    ldc: usize,
    k: usize,
    m: usize,
    n: usize,
}

/// Panel-outer loop: each packed panel of W stays in L1 while every row tile passes over it
/// (two 16-column halves per panel).
#[inline(always)]
fn gemm_lanes<V: Lanes>(a: &[f32], wp: &[f32], c: &mut [f32], s: Shape, accumulate: bool) {
    if s.csa == 1 {
        gemm_lanes_on::<V, true>(a, wp, c, s, accumulate)
    } else {
        gemm_lanes_on::<V, false>(a, wp, c, s, accumulate)
    }
}

/// [`gemm_lanes`] for A's column stride 1 (`UNIT`) or `s.csa`.
#[inline(always)]
fn gemm_lanes_on<V: Lanes, const UNIT: bool>(
    a: &[f32],
    wp: &[f32],
    c: &mut [f32],
    s: Shape,
    accumulate: bool,
) {
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
                tile::<V, MR, UNIT>(a, panel, c, r, cols, s, accumulate);
                r += MR;
            }
            match m - r {
                1 => tile::<V, 1, UNIT>(a, panel, c, r, cols, s, accumulate),
                2 => tile::<V, 2, UNIT>(a, panel, c, r, cols, s, accumulate),
                3 => tile::<V, 3, UNIT>(a, panel, c, r, cols, s, accumulate),
                4 => tile::<V, 4, UNIT>(a, panel, c, r, cols, s, accumulate),
                5 => tile::<V, 5, UNIT>(a, panel, c, r, cols, s, accumulate),
                _ => {}
            }
        }
    }
}

/// Offset of A's element (row `r0 + r` counted from the tile's first row pointer, column kk).
#[inline(always)]
fn a_at<const UNIT: bool>(s: Shape, r: usize, kk: usize) -> usize {
    if UNIT {
        r * s.lda + kk
    } else {
        r * s.lda + kk * s.csa
    }
}

/// One R × 16 tile: rows `r0..r0 + R` of C, columns `cols.0..cols.0 + cols.1` (≤ 16);
/// `panel` starts at the tile's first column inside a packed panel (row stride [`NR`]).
#[inline(always)]
fn tile<V: Lanes, const R: usize, const UNIT: bool>(
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
    debug_assert!(a.len() > a_at::<false>(s, r0 + R - 1, k - 1));
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
            let av = V::splat(unsafe { *a0.add(a_at::<UNIT>(s, r, kk)) });
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
pub(crate) mod avx512 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{Shape, MR512, NR};

    /// True where the CPU has AVX-512F (detected once), unless `JETGEN_SIMD=avx2` asks for
    /// exactly the 8-lane path.
    pub(crate) fn available() -> bool {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            let forced = std::env::var(crate::simd::ENV_VAR).ok();
            forced.as_deref() != Some("avx2") && std::arch::is_x86_feature_detected!("avx512f")
        })
    }

    /// # Safety
    /// The CPU must have AVX-512F; A, C and the panels must hold the shape `s` describes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(a: &[f32], wp: &[f32], c: &mut [f32], s: Shape, acc: bool) {
        if s.csa == 1 {
            gemm_on::<true>(a, wp, c, s, acc)
        } else {
            gemm_on::<false>(a, wp, c, s, acc)
        }
    }

    /// [`gemm`] for A's column stride 1 (`UNIT`) or `s.csa`.
    #[target_feature(enable = "avx512f")]
    unsafe fn gemm_on<const UNIT: bool>(a: &[f32], wp: &[f32], c: &mut [f32], s: Shape, acc: bool) {
        for p in 0..s.n.div_ceil(NR) {
            let panel = wp.as_ptr().add(p * s.k * NR);
            let c0 = p * NR;
            let nc = NR.min(s.n - c0);
            let mut r = 0;
            while r + MR512 <= s.m {
                tile::<MR512, UNIT>(a.as_ptr(), panel, c.as_mut_ptr(), r, (c0, nc), s, acc);
                r += MR512;
            }
            let (a, c) = (a.as_ptr(), c.as_mut_ptr());
            match s.m - r {
                1 => tile::<1, UNIT>(a, panel, c, r, (c0, nc), s, acc),
                2 => tile::<2, UNIT>(a, panel, c, r, (c0, nc), s, acc),
                3 => tile::<3, UNIT>(a, panel, c, r, (c0, nc), s, acc),
                4 => tile::<4, UNIT>(a, panel, c, r, (c0, nc), s, acc),
                5 => tile::<5, UNIT>(a, panel, c, r, (c0, nc), s, acc),
                6 => tile::<6, UNIT>(a, panel, c, r, (c0, nc), s, acc),
                7 => tile::<7, UNIT>(a, panel, c, r, (c0, nc), s, acc),
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
    unsafe fn tile<const R: usize, const UNIT: bool>(
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
                let av = _mm512_set1_ps(*a0.add(super::a_at::<UNIT>(s, r, kk)));
                lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
            }
        }
        let (m0, m1) = (mask(nc, 0), mask(nc, 16));
        for r in 0..R {
            let row = c.add((r0 + r) * s.ldc + c0);
            // the high half may lie past the end of C when nc ≤ 16 (its mask is then empty
            // and nothing is accessed), so its address is formed without `add`'s in-bounds
            // promise
            let high = row.wrapping_add(16);
            let (mut x0, mut x1) = (lo[r], hi[r]);
            if acc {
                x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, row));
                x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, high));
            }
            _mm512_mask_storeu_ps(row, m0, x0);
            _mm512_mask_storeu_ps(high, m1, x1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` values uniform in [−½, ½) from stream `seed`.
    fn noise(seed: u64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| crate::rng::uniform_at(seed, i as u64) - 0.5)
            .collect()
    }

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
            let a = noise(1, m * lda);
            let w = noise(2, n * k);
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
                // and the eight-wide lane kernel itself (which the AVX-512 one replaces on
                // CPUs that have it)
                let mut c3 = vec![7.0f32; m * ldc];
                let shape = Shape {
                    lda,
                    csa: 1,
                    ldc,
                    k,
                    m,
                    n,
                };
                gemm_dispatch(isa, &a, &packed.data, &mut c3, shape, false);
                for i in 0..m {
                    for j in 0..n {
                        for got in [c2[i * ldc + j], c3[i * ldc + j]] {
                            let d = (f64::from(got) - want[i * n + j]).abs();
                            assert!(d < 1e-5 * (k as f64).sqrt(), "{isa} m{m} n{n} k{k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strided_operands_and_the_parallel_split_match_the_f64_product() {
        // A transposed (read in place), B plain or transposed, C with padding,
        // and a product large enough to split its rows over rayon (m·n·k ≥ 2²¹)
        let cases = [
            (3, 5, 7, false),
            (700, 40, 96, true),
            (1, 9, 33, false),
            (260, 64, 130, true),
        ];
        for &(m, n, k, a_transposed) in &cases {
            let a = noise(5, m * k);
            let b = noise(6, k * n);
            // logical A[i, kk] = a[i·k + kk]; stored transposed as at[kk·m + i] when asked
            let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
            let (a_op, rsa, csa) = if a_transposed {
                (&at, 1, m)
            } else {
                (&a, k, 1)
            };
            for b_transposed in [false, true] {
                // logical B[kk, j] = b[kk·n + j]
                let bt: Vec<f32> = (0..k * n).map(|i| b[(i % k) * n + i / k]).collect();
                let (b_op, rsb, csb) = if b_transposed {
                    (&bt, 1, k)
                } else {
                    (&b, n, 1)
                };
                let ldc = n + 1;
                let mut c = vec![0.5f32; m * ldc];
                gemm_strided_f32(
                    m,
                    k,
                    n,
                    (a_op, rsa, csa),
                    (b_op, rsb, csb),
                    &mut c,
                    ldc,
                    true,
                );
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|kk| f64::from(a[i * k + kk]) * f64::from(b[kk * n + j]))
                            .sum();
                        let got = f64::from(c[i * ldc + j]) - 0.5;
                        assert!((got - want).abs() < 2e-5 * (k as f64).sqrt(),
                            "m{m} n{n} k{k} aT {a_transposed} bT {b_transposed} ({i},{j}): {got} vs {want}");
                    }
                    assert_eq!(c[i * ldc + n], 0.5, "the padding column is untouched");
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
        for isa in Isa::available() {
            for n in [4, 40] {
                let packed = PackedW::pack(&[], 0, 0, n, 0);
                let mut c = vec![5.0f32; 2 * n];
                gemm_packed(isa, &[], 0, 2, &packed, &mut c, n, false);
                assert_eq!(c, vec![0.0; 2 * n], "k = 0 gives a zero product");
                gemm_packed(isa, &[], 0, 2, &packed, &mut c, n, true);
                assert_eq!(c, vec![0.0; 2 * n], "and adds nothing");
            }
        }
    }
}
