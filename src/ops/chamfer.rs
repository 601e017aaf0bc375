//! Batched Chamfer distance between point clouds, with padding masks.
//!
//! For each pair b, with d_ij = ‖x_i − y_j‖² (squared Euclidean, no square root) over the
//! valid points only:
//! ```text
//! sum:   C_b = Σ_i min_j d_ij + Σ_j min_i d_ij
//! mean:  C_b = (1/N_b) Σ_i min_j d_ij + (1/M_b) Σ_j min_i d_ij      (N_b, M_b = valid counts)
//! ```
//! Shapes: `x [B, N, D]`, `y [B, M, D]`, masks `[B, N]`, `[B, M]` (non-zero = valid; `None`
//! = all valid). Outputs: `C [B]` and the nearest-neighbour indices `nn_xy [B, N]`,
//! `nn_yx [B, M]` (first index on ties; `u32::MAX` at masked points). A pair in which
//! either cloud has no valid point contributes 0 (and gradient 0), never NaN.
//!
//! Gradient (nearest neighbours held fixed, which is exact almost everywhere):
//! ∂C/∂x_i = c_x·2(x_i − y_nn(i)) + Σ_{j: nn'(j)=i} c_y·2(x_i − y_j), with c = 1 or 1/count;
//! symmetric for y. Deterministic on both devices (no float atomics).
//!
//! CPU: pairs in parallel (rayon); per pair and direction, groups of up to four 8-point SIMD
//! blocks keep their nearest distances in registers while the other cloud streams past,
//! branch-free (see `nearest_sweep`).
//! CUDA: `kernels/chamfer.cu`, point coordinates in registers and the other cloud streamed
//! through shared memory in tiles, so any N, M work and no B×N×M matrix is ever stored.
//! D ≤ 8 on CUDA.
//!
//! Counted work (operations, transcendentals, bytes) and the roofline bound it gives:
//! [`crate::ops::work::chamfer`].

use cudarc::driver::{LaunchConfig, PushKernelArg};
use rayon::prelude::*;

use std::any::Any;

use crate::autograd::{saved_as, CustomForward, CustomOp, Var};
use crate::device::cuda::CudaBackend;
use crate::error::{Error, Result};
use crate::ops::index::Indices;
use crate::ops::{expect_shape, n_u32};
use crate::real::Real;
use crate::simd::Lanes;
use crate::tensor::{Storage, Tensor};
use crate::with_real;

/// How the per-point nearest distances are combined within a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointReduction {
    Sum,
    /// Each direction divided by its number of valid points (pytorch3d's default).
    Mean,
}

/// How per-pair distances are combined over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchReduction {
    /// Keep `[B]`.
    None,
    Sum,
    Mean,
}

/// Result of [`chamfer`].
#[derive(Clone, Debug)]
pub struct ChamferOutput {
    /// `[B]` per-pair distance.
    pub distance: Tensor,
    /// `[B, N]` index of each x point's nearest valid y point (`u32::MAX` if masked).
    pub nn_xy: Indices,
    /// `[B, M]` index of each y point's nearest valid x point.
    pub nn_yx: Indices,
    /// `[B, 2]` valid counts (N_b, M_b), kept for the backward.
    pub counts: Tensor,
}

/// Marker for "no neighbour" in the index outputs.
pub const NO_NEIGHBOUR: u32 = u32::MAX;

/// Largest cloud (2^24 points): point indices are carried exactly in f32 on the CPU.
pub const MAX_POINTS: usize = 1 << 24;

fn check(
    x: &Tensor,
    y: &Tensor,
    mask_x: Option<&Tensor>,
    mask_y: Option<&Tensor>,
) -> Result<(usize, usize, usize, usize)> {
    if x.ndim() != 3 || y.ndim() != 3 {
        return Err(Error::shape(
            "chamfer",
            format!(
                "clouds must be [B, N, D], got {:?} and {:?}",
                x.shape(),
                y.shape()
            ),
        ));
    }
    let (b, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let m = y.shape()[1];
    if y.shape()[0] != b || y.shape()[2] != d {
        return Err(Error::shape(
            "chamfer",
            format!(
                "x {:?} and y {:?} differ in batch or dimension",
                x.shape(),
                y.shape()
            ),
        ));
    }
    if d == 0 {
        return Err(Error::shape(
            "chamfer",
            "points need at least one coordinate",
        ));
    }
    x.same_place("chamfer", y)?;
    for (name, mask, len) in [("mask_x", mask_x, n), ("mask_y", mask_y, m)] {
        if let Some(mk) = mask {
            if mk.shape() != [b, len] {
                return Err(Error::shape(
                    "chamfer",
                    format!("{name} must be [{b}, {len}], got {:?}", mk.shape()),
                ));
            }
            mk.same_place("chamfer", x)?;
        }
    }
    Tensor::check_all_finite(&[("chamfer x", x), ("chamfer y", y)])?;
    if n.max(m) > MAX_POINTS {
        return Err(Error::shape(
            "chamfer",
            format!("clouds of up to {MAX_POINTS} points, got {}", n.max(m)),
        ));
    }
    if x.device().is_cuda() && d > 8 {
        return Err(Error::shape(
            "chamfer",
            format!("CUDA Chamfer supports D ≤ 8, got {d}"),
        ));
    }
    Ok((b, n, m, d))
}

/// Per-pair Chamfer distance and nearest-neighbour indices; see the module doc.
pub fn chamfer(
    x: &Tensor,
    y: &Tensor,
    mask_x: Option<&Tensor>,
    mask_y: Option<&Tensor>,
    reduction: PointReduction,
) -> Result<ChamferOutput> {
    let (b, n, m, d) = check(x, y, mask_x, mask_y)?;
    let mean = reduction == PointReduction::Mean;
    if let Storage::Cuda(buf) = x.storage() {
        return cuda_forward(&buf.backend, x, y, mask_x, mask_y, mean, (b, n, m, d));
    }
    with_real!(x, T => {
        let (xs, ys) = (x.cpu::<T>()?, y.cpu::<T>()?);
        let mx = mask_x.map(|t| t.to_vec_f64()).transpose()?;
        let my = mask_y.map(|t| t.to_vec_f64()).transpose()?;
        let valid = |mask: &Option<Vec<f64>>, k: usize| mask.as_ref().is_none_or(|v| v[k] != 0.0);
        let mut distance = vec![T::zero(); b];
        // at least one neighbour slot per pair, so that every pair gets its task even when
        // a cloud has no points (the spare slots are cut off below)
        let mut nn_xy = vec![NO_NEIGHBOUR; b * n.max(1)];
        let mut nn_yx = vec![NO_NEIGHBOUR; b * m.max(1)];
        let mut counts = vec![T::zero(); 2 * b];
        distance
            .par_iter_mut()
            .zip(nn_xy.par_chunks_mut(n.max(1)))
            .zip(nn_yx.par_chunks_mut(m.max(1)))
            .zip(counts.par_chunks_mut(2))
            .enumerate()
            // enough pairs per task that the scratch set-up (once per task) is amortised
            .with_min_len((4096 / (n * m).max(1)).clamp(1, 64))
            .for_each_init(
                || PairScratch::new(n, m, d),
                |s, (p, (((dist, nxy), nyx), cnt))| {
                    let xp = &xs[p * n * d..(p + 1) * n * d];
                    let yp = &ys[p * m * d..(p + 1) * m * d];
                    for (i, v) in s.vx.iter_mut().enumerate() { *v = valid(&mx, p * n + i); }
                    for (j, v) in s.vy.iter_mut().enumerate() { *v = valid(&my, p * m + j); }
                    let (sum_x, sum_y) = s.nearest_both(xp, yp, &mut nxy[..n], &mut nyx[..m]);
                    let (cx, cy) = (s.vx.iter().filter(|&&v| v).count() as f64, s.vy.iter().filter(|&&v| v).count() as f64);
                    let value = if cx == 0.0 || cy == 0.0 { 0.0 } else if mean { sum_x / cx + sum_y / cy } else { sum_x + sum_y };
                    *dist = T::from_f64(value);
                    cnt[0] = T::from_f64(cx);
                    cnt[1] = T::from_f64(cy);
                },
            );
        nn_xy.truncate(b * n);
        nn_yx.truncate(b * m);
        Ok(ChamferOutput {
            distance: Tensor::from_cpu_vec(distance, &[b])?,
            nn_xy: Indices::new(nn_xy, &[b, n])?,
            nn_yx: Indices::new(nn_yx, &[b, m])?,
            counts: Tensor::from_cpu_vec(counts, &[b, 2])?,
        })
    })
}

/// Lanes of the branch-free nearest-neighbour sweeps (a multiple of every SIMD width used).
const LANES: usize = 8;

/// One worker's buffers for a pair of clouds, reused across pairs: both clouds copied
/// coordinate-major and padded to a multiple of [`LANES`], so a block of LANES points of one
/// cloud is one SIMD vector per coordinate.
struct PairScratch<T> {
    d: usize,
    /// Valid flags of this pair's points.
    vx: Vec<bool>,
    vy: Vec<bool>,
    /// `xs[k * n_pad + i]` = coordinate k of x_i (zeros in the padding lanes).
    xs: Vec<T>,
    /// Likewise for y, with stride m_pad.
    ys: Vec<T>,
    /// The nearest squared distance of each lane point (scratch for one direction).
    best: Vec<T>,
}

impl<T: Real> PairScratch<T> {
    fn new(n: usize, m: usize, d: usize) -> Self {
        let pad = |k: usize| k.div_ceil(LANES).max(1) * LANES;
        PairScratch {
            d,
            vx: vec![false; n],
            vy: vec![false; m],
            xs: vec![T::zero(); d * pad(n)],
            ys: vec![T::zero(); d * pad(m)],
            best: vec![T::zero(); pad(n.max(m))],
        }
    }

    /// Both nearest-neighbour directions of one pair: x's matches in y, then y's in x (two
    /// sweeps of the same kind, see [`nearest_sweep`]). Writes the indices into `nn_xy [N]`,
    /// `nn_yx [M]` (first index on ties, [`NO_NEIGHBOUR`] at masked points or when the other
    /// cloud is empty) and returns (Σ_i min_j d_ij, Σ_j min_i d_ij), summed in f64.
    fn nearest_both(
        &mut self,
        xp: &[T],
        yp: &[T],
        nn_xy: &mut [u32],
        nn_yx: &mut [u32],
    ) -> (f64, f64) {
        nearest_both_on(crate::simd::isa(), self, xp, yp, nn_xy, nn_yx)
    }
}

crate::simd::dispatch! {
    /// [`PairScratch::nearest_both`] compiled for `isa`: the whole pair — the copies into
    /// lanes, both sweeps and their sums — is one function, so on an AVX2 machine none of
    /// it runs as baseline x86-64 code and the sweeps inline into it.
    fn nearest_both_on<T: Real>(
        isa: Isa,
        s: &mut PairScratch<T>,
        xp: &[T],
        yp: &[T],
        nn_xy: &mut [u32],
        nn_yx: &mut [u32],
    ) -> (f64, f64) = nearest_both_lanes::<lanes>;
}

/// The body of [`nearest_both_on`] on the lane type `V` (used by the f32 sweeps).
#[inline(always)]
fn nearest_both_lanes<T: Real, V: Lanes>(
    s: &mut PairScratch<T>,
    xp: &[T],
    yp: &[T],
    nn_xy: &mut [u32],
    nn_yx: &mut [u32],
) -> (f64, f64) {
    let d = s.d;
    to_lanes(xp, d, &mut s.xs);
    to_lanes(yp, d, &mut s.ys);
    let sum_x = nearest_sweep::<T, V>(&s.xs, &s.vx, yp, &s.vy, d, &mut s.best, nn_xy);
    let sum_y = nearest_sweep::<T, V>(&s.ys, &s.vy, xp, &s.vx, d, &mut s.best, nn_yx);
    (sum_x, sum_y)
}

/// Copy point-major `points [P, D]` into coordinate-major `lanes [D, P_pad]` (P_pad =
/// lanes.len() / D), zeros in the padding.
#[inline(always)]
fn to_lanes<T: Real>(points: &[T], d: usize, lanes: &mut [T]) {
    match d {
        3 => to_lanes_d::<T, 3>(points, 3, lanes),
        _ => to_lanes_d::<T, 0>(points, d, lanes),
    }
}

/// [`to_lanes`] with the coordinate count fixed at compile time (`DC` > 0) or not (0).
#[inline(always)]
fn to_lanes_d<T: Real, const DC: usize>(points: &[T], d: usize, lanes: &mut [T]) {
    let d = if DC > 0 { DC } else { d };
    let pad = lanes.len() / d;
    let count = points.len() / d;
    for (i, p) in points.chunks_exact(d).enumerate() {
        for (k, &v) in p.iter().enumerate() {
            lanes[k * pad + i] = v;
        }
    }
    for k in 0..d {
        lanes[k * pad + count..(k + 1) * pad].fill(T::zero());
    }
}

/// For every valid point p_i of the *lane* cloud (coordinate-major, padded, see
/// [`to_lanes`]), its nearest valid point of the *streamed* cloud (point-major): writes the
/// index into `nn` and returns Σ_i min_j ‖p_i − q_j‖² over valid i (f64).
///
/// Blocks of [`LANES`] lane points, up to [`GROUP`] at a time, keep their nearest distances
/// and indices in registers while the streamed points go by once: per streamed point, D
/// subtract-multiply-adds and one compare-and-select per lane, with no reduction across
/// lanes. Streaming in index order with a strict `<` keeps the first
/// index on ties. The first valid streamed point seeds every lane, so a distance that
/// overflows to +∞ still gets its neighbour (and the sum is +∞, not a silent finite number).
/// f32 runs on the lane type `V`, f64 on arrays of [`LANES`].
#[inline(always)]
fn nearest_sweep<T: Real, V: Lanes>(
    lanes: &[T],
    lane_valid: &[bool],
    stream: &[T],
    stream_valid: &[bool],
    d: usize,
    best: &mut [T],
    nn: &mut [u32],
) -> f64 {
    let count = lane_valid.len();
    let Some(first) = stream_valid.iter().position(|&v| v) else {
        nn.fill(NO_NEIGHBOUR);
        return 0.0;
    };
    let simd = (
        T::as_f32_slice(lanes),
        T::as_f32_slice(stream),
        T::as_f32_slice_mut(best),
    );
    if let (Some(lanes), Some(stream), Some(best)) = simd {
        sweep_f32_lanes::<V>(lanes, stream, stream_valid, first, d, best, nn);
    } else {
        sweep_blocks::<T>(lanes, stream, stream_valid, first, d, best, nn);
    }
    let mut sum = 0f64;
    for i in 0..count {
        if lane_valid[i] {
            sum += best[i].to_f64();
        } else {
            nn[i] = NO_NEIGHBOUR;
        }
    }
    sum
}

/// The register-blocked loop of [`nearest_sweep`] for f32 on explicit 8-lane vectors `V`
/// ([`crate::simd`]), the coordinate loop unrolled for D = 2, 3, 4. Writes `best` and `nn`
/// for every lane point below `nn.len()`.
#[inline(always)]
fn sweep_f32_lanes<V: Lanes>(
    lanes: &[f32],
    stream: &[f32],
    stream_valid: &[bool],
    first: usize,
    d: usize,
    best: &mut [f32],
    nn: &mut [u32],
) {
    match d {
        2 => sweep_blocks_f32::<2, V>(lanes, stream, stream_valid, first, 2, best, nn),
        3 => sweep_blocks_f32::<3, V>(lanes, stream, stream_valid, first, 3, best, nn),
        4 => sweep_blocks_f32::<4, V>(lanes, stream, stream_valid, first, 4, best, nn),
        _ => sweep_blocks_f32::<0, V>(lanes, stream, stream_valid, first, d, best, nn),
    }
}

/// [`sweep_f32_lanes`] for `DC` = D known at compile time (0 = `d` at run time): the lane
/// blocks in groups of up to [`GROUP`], each group swept by the stream once.
#[inline(always)]
fn sweep_blocks_f32<const DC: usize, V: Lanes>(
    lanes: &[f32],
    stream: &[f32],
    stream_valid: &[bool],
    first: usize,
    d: usize,
    best: &mut [f32],
    nn: &mut [u32],
) {
    let d = if DC > 0 { DC } else { d };
    let pad = lanes.len() / d;
    let blocks = pad / LANES;
    let sweep = Sweep {
        lanes,
        pad,
        stream,
        stream_valid,
        first,
        d,
    };
    let mut b0 = 0;
    while b0 < blocks {
        // (no closures or dyn here: they would not be compiled for AVX2, see `simd::dispatch!`)
        let g = (blocks - b0).min(GROUP);
        match g {
            1 => sweep.group::<DC, V, 1>(b0, best, nn),
            2 => sweep.group::<DC, V, 2>(b0, best, nn),
            3 => sweep.group::<DC, V, 3>(b0, best, nn),
            _ => sweep.group::<DC, V, GROUP>(b0, best, nn),
        }
        b0 += g;
    }
}

/// Lane blocks swept together: per streamed point, the point's coordinates are broadcast
/// once and G independent distance / compare / select chains run side by side (they hide
/// each other's latency); the lane cloud is read from L1 as memory operands, so the
/// registers hold only the G best distances and indices.
const GROUP: usize = 4;

/// What one f32 sweep reads (see [`nearest_sweep`]).
#[derive(Clone, Copy)]
struct Sweep<'a> {
    lanes: &'a [f32],
    pad: usize,
    stream: &'a [f32],
    stream_valid: &'a [bool],
    first: usize,
    d: usize,
}

impl Sweep<'_> {
    /// Blocks `b0 .. b0 + G`: writes their `best` and `nn` (indices below `nn.len()`).
    #[inline(always)]
    fn group<const DC: usize, V: Lanes, const G: usize>(
        &self,
        b0: usize,
        best: &mut [f32],
        nn: &mut [u32],
    ) {
        let (d, first) = (self.d, self.first);
        let q0 = &self.stream[first * d..];
        let mut bv = [V::zero(); G];
        for (g, b) in bv.iter_mut().enumerate() {
            *b = distance_lanes::<DC, V>(self.lanes, self.pad, b0 + g, q0, d);
        }
        // the index rides along as f32 (exact below 2^24, see `check`), selected by the same
        // compare mask as the distance
        let mut av = [V::splat(first as f32); G];
        let mut jf = first as f32;
        for (j, q) in self.stream.chunks_exact(d).enumerate().skip(first + 1) {
            jf += 1.0; // = j, counted in f32 (no int → float conversion in the loop)
            if !self.stream_valid[j] {
                continue;
            }
            let jv = V::splat(jf);
            for g in 0..G {
                let dv = distance_lanes::<DC, V>(self.lanes, self.pad, b0 + g, q, d);
                let better = dv.lt(bv[g]);
                bv[g] = V::select(better, dv, bv[g]);
                av[g] = V::select(better, jv, av[g]);
            }
        }
        let count = nn.len();
        for g in 0..G {
            let lo = (b0 + g) * LANES;
            bv[g].store(&mut best[lo..]);
            for (dst, a) in nn[lo.min(count)..(lo + LANES).min(count)]
                .iter_mut()
                .zip(av[g].to_array())
            {
                *dst = a as u32;
            }
        }
    }
}

/// Coordinate `k` of lane block `block` (8 points; coordinate-major lanes of stride `pad`).
#[inline(always)]
fn lane_column<V: Lanes>(lanes: &[f32], pad: usize, block: usize, k: usize) -> V {
    V::load(&lanes[k * pad + block * LANES..])
}

/// ‖p_l − q‖² for the 8 points p_l of a lane block, one FMA per coordinate (`DC` = D when
/// known at compile time, else 0 and `d`). (q − p)² = (p − q)² exactly.
#[inline(always)]
fn distance_lanes<const DC: usize, V: Lanes>(
    lanes: &[f32],
    pad: usize,
    block: usize,
    q: &[f32],
    d: usize,
) -> V {
    let d = if DC > 0 { DC } else { d };
    let mut acc = V::zero();
    for (k, &qk) in q.iter().enumerate().take(d) {
        let diff = V::splat(qk) - lane_column(lanes, pad, block, k);
        acc = diff.mul_add(diff, acc);
    }
    acc
}

/// The register-blocked loop of [`nearest_sweep`] on arrays of [`LANES`] (the f64 path; f32
/// takes [`sweep_f32_lanes`]). Writes `best` and `nn` for every lane point below `nn.len()`.
#[inline(always)]
fn sweep_blocks<T: Real>(
    lanes: &[T],
    stream: &[T],
    stream_valid: &[bool],
    first: usize,
    d: usize,
    best: &mut [T],
    nn: &mut [u32],
) {
    let pad = lanes.len() / d;
    let count = nn.len();
    let dist = |block: usize, q: &[T]| {
        let mut acc = [T::zero(); LANES];
        for (k, &qk) in q.iter().enumerate().take(d) {
            let col = &lanes[k * pad + block * LANES..][..LANES];
            for l in 0..LANES {
                let diff = col[l] - qk;
                acc[l] += diff * diff;
            }
        }
        acc
    };
    for block in 0..pad / LANES {
        let mut bv = dist(block, &stream[first * d..(first + 1) * d]);
        let mut av = [first as u32; LANES];
        for (j, q) in stream.chunks_exact(d).enumerate().skip(first + 1) {
            if !stream_valid[j] {
                continue;
            }
            let dv = dist(block, q);
            for l in 0..LANES {
                if dv[l] < bv[l] {
                    (bv[l], av[l]) = (dv[l], j as u32);
                }
            }
        }
        let lo = block * LANES;
        best[lo..lo + LANES].copy_from_slice(&bv);
        let hi = (lo + LANES).min(count);
        nn[lo..hi].copy_from_slice(&av[..hi - lo]);
    }
}

/// Gradients (∂L/∂x, ∂L/∂y) of L = Σ_b g_b C_b given the forward's neighbours and counts.
pub fn chamfer_backward(
    x: &Tensor,
    y: &Tensor,
    out: &ChamferOutput,
    reduction: PointReduction,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "chamfer_backward";
    if x.ndim() != 3 || y.ndim() != 3 {
        return Err(Error::shape(
            OP,
            format!(
                "clouds must be [B, N, D], got {:?} and {:?}",
                x.shape(),
                y.shape()
            ),
        ));
    }
    let (b, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let m = y.shape()[1];
    expect_shape(OP, "y", y.shape(), &[b, m, d])?;
    expect_shape(OP, "the x→y neighbours", out.nn_xy.shape(), &[b, n])?;
    expect_shape(OP, "the y→x neighbours", out.nn_yx.shape(), &[b, m])?;
    expect_shape(OP, "the valid counts", out.counts.shape(), &[b, 2])?;
    expect_shape(OP, "the upstream gradient", g.shape(), &[b])?;
    x.same_place(OP, y)?;
    // g and the counts are read as f64 values, so only their device must match
    for t in [&out.counts, g] {
        if t.device() != x.device() {
            return Err(Error::DeviceMismatch {
                op: OP,
                a: x.device().to_string(),
                b: t.device().to_string(),
            });
        }
    }
    let mean = reduction == PointReduction::Mean;
    if let Storage::Cuda(buf) = x.storage() {
        let be = &buf.backend;
        let gx = cuda_grad(
            be,
            x,
            y,
            &out.nn_xy,
            &out.nn_yx,
            &out.counts,
            g,
            mean,
            true,
            (b, n, m, d),
        )?;
        let gy = cuda_grad(
            be,
            y,
            x,
            &out.nn_yx,
            &out.nn_xy,
            &out.counts,
            g,
            mean,
            false,
            (b, m, n, d),
        )?;
        return Ok((gx, gy));
    }
    let (nn_xy, nn_yx) = (out.nn_xy.cpu()?, out.nn_yx.cpu()?);
    let counts = out.counts.to_vec_f64()?;
    let gs = g.to_vec_f64()?;
    with_real!(x, T => {
        let (xs, ys) = (x.cpu::<T>()?, y.cpu::<T>()?);
        let mut gx = vec![T::zero(); b * n * d];
        let mut gy = vec![T::zero(); b * m * d];
        // (chunks of at least 1: with an empty cloud there is no gradient to write, and the
        // other cloud's rows stay zero because the pair's counts say it is empty)
        gx.par_chunks_mut((n * d).max(1)).zip(gy.par_chunks_mut((m * d).max(1))).enumerate().with_min_len(16).for_each(|(p, (gxp, gyp))| {
            let (cx, cy) = (counts[2 * p], counts[2 * p + 1]);
            if cx == 0.0 || cy == 0.0 {
                return; // an empty pair: its gradient rows stay zero
            }
            let wx = T::from_f64(2.0 * gs[p] * if mean { 1.0 / cx } else { 1.0 });
            let wy = T::from_f64(2.0 * gs[p] * if mean { 1.0 / cy } else { 1.0 });
            let (xp, yp) = (&xs[p * n * d..(p + 1) * n * d], &ys[p * m * d..(p + 1) * m * d]);
            let (nx, ny) = (&nn_xy[p * n..(p + 1) * n], &nn_yx[p * m..(p + 1) * m]);
            match d {
                3 => pair_grad::<T, 3>(xp, yp, nx, ny, wx, wy, 3, gxp, gyp),
                _ => pair_grad::<T, 0>(xp, yp, nx, ny, wx, wy, d, gxp, gyp),
            }
        });
        Ok((Tensor::from_cpu_vec(gx, x.shape())?, Tensor::from_cpu_vec(gy, y.shape())?))
    })
}

/// One pair's gradients (`DC` = D fixed at compile time, or 0 for `d` at run time), written
/// into `gxp [N·D]`, `gyp [M·D]`: first each point's own term, w·(p − nn(p)) (0 where masked),
/// then the cross terms −w·(p − nn(p)) scattered onto the neighbours, x's then y's.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pair_grad<T: Real, const DC: usize>(
    xp: &[T],
    yp: &[T],
    nn_x: &[u32],
    nn_y: &[u32],
    wx: T,
    wy: T,
    d: usize,
    gxp: &mut [T],
    gyp: &mut [T],
) {
    let d = if DC > 0 { DC } else { d };
    let own = |g: &mut [T], p: &[T], q: &[T], nn: &[u32], w: T| {
        for ((gi, pi), &j) in g.chunks_exact_mut(d).zip(p.chunks_exact(d)).zip(nn) {
            if j == NO_NEIGHBOUR {
                gi.fill(T::zero());
            } else {
                let qj = &q[j as usize * d..][..d];
                for k in 0..d {
                    gi[k] = w * (pi[k] - qj[k]);
                }
            }
        }
    };
    own(gxp, xp, yp, nn_x, wx);
    own(gyp, yp, xp, nn_y, wy);
    // x_i's term pulls its neighbour y_j the other way: gxp still holds only own terms
    for (gi, &j) in gxp.chunks_exact(d).zip(nn_x) {
        if j != NO_NEIGHBOUR {
            let gj = &mut gyp[j as usize * d..][..d];
            for k in 0..d {
                gj[k] += -gi[k];
            }
        }
    }
    // y_j's term on x_i, recomputed (gyp now holds the x terms as well)
    for (yj, &i) in yp.chunks_exact(d).zip(nn_y) {
        if i != NO_NEIGHBOUR {
            let xi = &xp[i as usize * d..][..d];
            let gi = &mut gxp[i as usize * d..][..d];
            for k in 0..d {
                gi[k] += -(wy * (yj[k] - xi[k]));
            }
        }
    }
}

/// Push an optional mask pointer (a null pointer when absent).
fn mask_arg<'a>(
    b: &mut cudarc::driver::LaunchArgs<'a>,
    mask: Option<&'a Tensor>,
    null: &'a u64,
) -> Result<()> {
    match mask {
        Some(mk) => {
            b.arg(&mk.cuda()?.slice);
        }
        None => {
            b.arg(null);
        }
    }
    Ok(())
}

fn cuda_forward(
    be: &std::sync::Arc<CudaBackend>,
    x: &Tensor,
    y: &Tensor,
    mask_x: Option<&Tensor>,
    mask_y: Option<&Tensor>,
    mean: bool,
    (b, n, m, d): (usize, usize, usize, usize),
) -> Result<ChamferOutput> {
    let null = 0u64;
    let (nu, mu, du) = (n_u32("chamfer", n)?, n_u32("chamfer", m)?, d as u32);
    let mut min_xy = be.alloc::<f32>(b * n)?;
    let mut min_yx = be.alloc::<f32>(b * m)?;
    let mut nn_xy = be.alloc::<u32>(b * n)?;
    let mut nn_yx = be.alloc::<u32>(b * m)?;
    let f = be.function("chamfer", "chamfer_nn")?;
    let batch = n_u32("chamfer", b)?;
    for (q, r, mq, mr, len_q, len_r, out_min, out_idx) in [
        (x, y, mask_x, mask_y, nu, mu, &mut min_xy, &mut nn_xy),
        (y, x, mask_y, mask_x, mu, nu, &mut min_yx, &mut nn_yx),
    ] {
        if len_q == 0 || batch == 0 {
            continue; // no points (a grid with a 0 dimension is a launch error)
        }
        let cfg = point_blocks(len_q, batch);
        let mut lb = be.stream.launch_builder(&f);
        lb.arg(&len_q)
            .arg(&len_r)
            .arg(&du)
            .arg(&q.cuda()?.slice)
            .arg(&r.cuda()?.slice);
        mask_arg(&mut lb, mq, &null)?;
        mask_arg(&mut lb, mr, &null)?;
        lb.arg(out_min).arg(out_idx);
        // SAFETY: clouds are [B, len, D]; masks [B, len] or null; outputs [B, len_q].
        be.check_launch("chamfer_nn", unsafe { lb.launch(cfg) })?;
    }
    let mut distance = be.alloc::<f32>(b)?;
    let mut counts = be.alloc::<f32>(2 * b)?;
    let f = be.function("chamfer", "chamfer_reduce")?;
    let mean_flag = mean as i32;
    let mut lb = be.stream.launch_builder(&f);
    lb.arg(&nu)
        .arg(&mu)
        .arg(&mean_flag)
        .arg(&min_xy)
        .arg(&min_yx);
    mask_arg(&mut lb, mask_x, &null)?;
    mask_arg(&mut lb, mask_y, &null)?;
    lb.arg(&mut distance).arg(&mut counts);
    let cfg = LaunchConfig {
        grid_dim: (batch.max(1), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    if b > 0 {
        // SAFETY: as above; one block per pair.
        be.check_launch("chamfer_reduce", unsafe { lb.launch(cfg) })?;
    }
    Ok(ChamferOutput {
        distance: Tensor::from_cuda(distance, be.clone(), &[b]),
        nn_xy: Indices::from_cuda(nn_xy, be.clone(), &[b, n]),
        nn_yx: Indices::from_cuda(nn_yx, be.clone(), &[b, m]),
        counts: Tensor::from_cuda(counts, be.clone(), &[b, 2]),
    })
}

/// Launch shape of the per-point kernels (`chamfer_nn`, `chamfer_grad`): grid (⌈len/T⌉, B)
/// with T = len rounded up to a warp, at most 256 threads. Jet clouds have 30–150 points, so
/// a fixed 256 would leave most threads of every block idle (226 of 256 at N = 30); both
/// kernels stride their shared-memory loads by `blockDim.x`, so any T works.
fn point_blocks(len: u32, batch: u32) -> LaunchConfig {
    let threads = len.div_ceil(32).clamp(1, 8) * 32;
    LaunchConfig {
        grid_dim: (len.div_ceil(threads), batch, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn cuda_grad(
    be: &std::sync::Arc<CudaBackend>,
    q: &Tensor,
    r: &Tensor,
    nn_q: &Indices,
    nn_r: &Indices,
    counts: &Tensor,
    g: &Tensor,
    mean: bool,
    q_is_x: bool,
    (b, n, m, d): (usize, usize, usize, usize),
) -> Result<Tensor> {
    let mut gq = be.alloc::<f32>(b * n * d)?;
    if b * n > 0 {
        let f = be.function("chamfer", "chamfer_grad")?;
        let (nu, mu, du, mf, qx) = (
            n_u32("chamfer", n)?,
            n_u32("chamfer", m)?,
            d as u32,
            mean as i32,
            q_is_x as i32,
        );
        let (nn_q, nn_r) = (nn_q.to_device(q.device())?, nn_r.to_device(q.device())?);
        let mut lb = be.stream.launch_builder(&f);
        lb.arg(&nu)
            .arg(&mu)
            .arg(&du)
            .arg(&mf)
            .arg(&qx)
            .arg(&q.cuda()?.slice)
            .arg(&r.cuda()?.slice);
        lb.arg(nn_q.cuda()?)
            .arg(nn_r.cuda()?)
            .arg(&counts.cuda()?.slice)
            .arg(&g.cuda()?.slice)
            .arg(&mut gq);
        let cfg = point_blocks(nu, n_u32("chamfer", b)?);
        // SAFETY: shapes as in the forward; g [B], gq [B, N, D].
        be.check_launch("chamfer_grad", unsafe { lb.launch(cfg) })?;
    }
    Ok(Tensor::from_cuda(gq, be.clone(), q.shape()))
}

/// The Chamfer distance as a fused tape op (inputs x, y; the masks are constants). Its
/// backward is the fused nearest-neighbour kernel, so it is once-differentiable.
struct ChamferOp {
    mask_x: Option<Tensor>,
    mask_y: Option<Tensor>,
    reduction: PointReduction,
}

impl ChamferOp {
    fn forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let out = chamfer(
            inputs[0],
            inputs[1],
            self.mask_x.as_ref(),
            self.mask_y.as_ref(),
            self.reduction,
        )?;
        Ok(CustomForward {
            value: out.distance.clone(),
            saved: Box::new(out),
        })
    }
}

impl CustomOp for ChamferOp {
    fn name(&self) -> &'static str {
        "chamfer"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        self.forward(inputs)
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        self.forward(inputs)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let out = saved_as::<ChamferOutput>(saved, "chamfer")?;
        let (gx, gy) = chamfer_backward(inputs[0], inputs[1], out, self.reduction, g)?;
        Ok(vec![Some(gx), Some(gy)])
    }
}

impl Var {
    /// Chamfer distance between `self [B, N, D]` and `other [B, M, D]` (see the module doc),
    /// reduced over the batch as asked; gradients flow to both clouds (once-differentiable).
    pub fn chamfer(
        &self,
        other: &Var,
        mask_x: Option<&Tensor>,
        mask_y: Option<&Tensor>,
        points: PointReduction,
        batch: BatchReduction,
    ) -> Result<Var> {
        let op = ChamferOp {
            mask_x: mask_x.cloned(),
            mask_y: mask_y.cloned(),
            reduction: points,
        };
        let per_pair = Var::custom(op, &[self, other])?;
        match batch {
            BatchReduction::None => Ok(per_pair),
            BatchReduction::Sum => per_pair.sum_all(),
            BatchReduction::Mean => per_pair.mean_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Isa;

    /// The f32 sweep gives the same bits (distances and neighbours) on every instruction set
    /// this CPU has, for D = 2..5 and with masked points, and agrees with the f64 sweep.
    #[test]
    fn pair_sweeps_are_the_same_on_every_isa() {
        let mut rng = crate::rng::Rng::new(11);
        for d in 2..=5 {
            let (n, m) = (37, 29);
            let draw = |rng: &mut crate::rng::Rng, len: usize| -> Vec<f32> {
                let t = rng.normal(&[len], 0.0, 1.0, crate::device::Device::Cpu);
                t.unwrap().to_vec().unwrap()
            };
            let (xs, ys) = (draw(&mut rng, n * d), draw(&mut rng, m * d));
            // masked points on both sides, the first of y among them
            let vx: Vec<bool> = (0..n).map(|i| i % 5 != 3).collect();
            let vy: Vec<bool> = (0..m).map(|j| j % 7 != 0).collect();
            fn run<T: Real>(
                isa: Isa,
                (xs, ys): (&[T], &[T]),
                (vx, vy): (&[bool], &[bool]),
                d: usize,
            ) -> (f64, f64, Vec<u32>, Vec<u32>) {
                let (n, m) = (vx.len(), vy.len());
                let mut s = PairScratch::<T>::new(n, m, d);
                s.vx.copy_from_slice(vx);
                s.vy.copy_from_slice(vy);
                let (mut nxy, mut nyx) = (vec![0u32; n], vec![0u32; m]);
                let (sx, sy) = nearest_both_on(isa, &mut s, xs, ys, &mut nxy, &mut nyx);
                (sx, sy, nxy, nyx)
            }
            let reference = run::<f32>(Isa::PORTABLE, (&xs, &ys), (&vx, &vy), d);
            for isa in Isa::available() {
                let got = run::<f32>(isa, (&xs, &ys), (&vx, &vy), d);
                assert_eq!(got, reference, "{isa}, D {d}");
            }
            let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let (xs64, ys64) = (widen(&xs), widen(&ys));
            let got = run::<f64>(crate::simd::isa(), (&xs64, &ys64), (&vx, &vy), d);
            assert_eq!(
                (&got.2, &got.3),
                (&reference.2, &reference.3),
                "D {d}: f64 neighbours"
            );
            for (b, r) in [(got.0, reference.0), (got.1, reference.1)] {
                assert!((b - r).abs() <= 1e-5 * (1.0 + b), "D {d}: {b} vs {r}");
            }
        }
    }
}
