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
//! CPU: pairs in parallel (rayon), one sweep over y per pair with branch-free per-lane
//! updates of x's best matches (see `PairScratch::nearest_both`). CUDA: `kernels/chamfer.cu`,
//! point coordinates in registers and the other cloud streamed through shared memory in
//! tiles, so any N, M work and no B×N×M matrix is ever stored. D ≤ 8 on CUDA.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use rayon::prelude::*;

use crate::autograd::{Op, Var};
use crate::device::cuda::CudaBackend;
use crate::error::{Error, Result};
use crate::ops::index::Indices;
use crate::ops::n_u32;
use crate::real::Real;
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
    x.check_finite("chamfer x")?;
    y.check_finite("chamfer y")?;
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
        let mut nn_xy = vec![NO_NEIGHBOUR; b * n];
        let mut nn_yx = vec![NO_NEIGHBOUR; b * m];
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
                    let (sum_x, sum_y) = s.nearest_both(xp, yp, nxy, nyx);
                    let (cx, cy) = (s.vx.iter().filter(|&&v| v).count() as f64, s.vy.iter().filter(|&&v| v).count() as f64);
                    let value = if cx == 0.0 || cy == 0.0 { 0.0 } else if mean { sum_x / cx + sum_y / cy } else { sum_x + sum_y };
                    *dist = T::from_f64(value);
                    cnt[0] = T::from_f64(cx);
                    cnt[1] = T::from_f64(cy);
                },
            );
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

/// One worker's buffers for a pair of clouds, reused across pairs. x is stored
/// coordinate-major and padded to a multiple of [`LANES`] with +∞ penalties, so every loop
/// over the x points runs on whole lanes without branches.
struct PairScratch<T> {
    d: usize,
    /// Valid flags of this pair's points.
    vx: Vec<bool>,
    vy: Vec<bool>,
    /// `xs[k * n_pad + i]` = coordinate k of x_i.
    xs: Vec<T>,
    /// 0 for valid x points, +∞ for masked ones and the padding lanes.
    penalty: Vec<T>,
    /// d(x_i, y_j) for the current j.
    dist: Vec<T>,
    /// min_j d(x_i, y_j) so far and its argmin.
    best_x: Vec<T>,
    arg_x: Vec<u32>,
}

impl<T: Real> PairScratch<T> {
    fn new(n: usize, m: usize, d: usize) -> Self {
        let n_pad = n.div_ceil(LANES).max(1) * LANES;
        PairScratch {
            d,
            vx: vec![false; n],
            vy: vec![false; m],
            xs: vec![T::zero(); d * n_pad],
            penalty: vec![T::zero(); n_pad],
            dist: vec![T::zero(); n_pad],
            best_x: vec![T::zero(); n_pad],
            arg_x: vec![NO_NEIGHBOUR; n_pad],
        }
    }

    /// Both nearest-neighbour directions of one pair in a single sweep over the y points:
    /// for each valid y_j the distances to all x_i form one vector, which updates every
    /// x_i's best match (a select per lane) and yields y_j's best match (a per-lane argmin,
    /// then a reduction over the lanes). Writes the indices into `nn_xy [N]`, `nn_yx [M]`
    /// (first index on ties, [`NO_NEIGHBOUR`] at masked points) and returns
    /// (Σ_i min_j d_ij, Σ_j min_i d_ij), summed in f64.
    fn nearest_both(
        &mut self,
        xp: &[T],
        yp: &[T],
        nn_xy: &mut [u32],
        nn_yx: &mut [u32],
    ) -> (f64, f64) {
        let (n, d) = (self.vx.len(), self.d);
        let n_pad = self.penalty.len();
        let inf = T::from_f64(f64::INFINITY);
        for i in 0..n_pad {
            let valid = i < n && self.vx[i];
            self.penalty[i] = if valid { T::zero() } else { inf };
            for k in 0..d {
                self.xs[k * n_pad + i] = if i < n { xp[i * d + k] } else { T::zero() };
            }
        }
        self.best_x.fill(inf);
        self.arg_x.fill(NO_NEIGHBOUR);
        let mut sum_y = 0f64;
        for (j, yj) in yp.chunks_exact(d).enumerate() {
            nn_yx[j] = NO_NEIGHBOUR;
            if !self.vy[j] {
                continue;
            }
            self.dist.copy_from_slice(&self.penalty);
            for (k, &yk) in yj.iter().enumerate() {
                let col = &self.xs[k * n_pad..(k + 1) * n_pad];
                for (di, &xk) in self.dist.iter_mut().zip(col) {
                    *di += (xk - yk) * (xk - yk);
                }
            }
            // per-lane select on local copies, stored back whole: written as a conditional
            // update in place, LLVM emits masked stores, which are microcoded (slow) on AMD
            let ju = j as u32;
            for ((bc, ac), dc) in self
                .best_x
                .chunks_exact_mut(LANES)
                .zip(self.arg_x.chunks_exact_mut(LANES))
                .zip(self.dist.chunks_exact(LANES))
            {
                let (mut bv, mut av) = ([T::zero(); LANES], [0u32; LANES]);
                bv.copy_from_slice(bc);
                av.copy_from_slice(ac);
                for l in 0..LANES {
                    let better = dc[l] < bv[l];
                    bv[l] = if better { dc[l] } else { bv[l] };
                    av[l] = if better { ju } else { av[l] };
                }
                bc.copy_from_slice(&bv);
                ac.copy_from_slice(&av);
            }
            let (mut lane_v, mut lane_i) = ([inf; LANES], [NO_NEIGHBOUR; LANES]);
            for (c, chunk) in self.dist.chunks_exact(LANES).enumerate() {
                for l in 0..LANES {
                    let better = chunk[l] < lane_v[l];
                    lane_v[l] = if better { chunk[l] } else { lane_v[l] };
                    lane_i[l] = if better {
                        (c * LANES + l) as u32
                    } else {
                        lane_i[l]
                    };
                }
            }
            let mut best = (inf, NO_NEIGHBOUR);
            for l in 0..LANES {
                if lane_v[l] < best.0 || (lane_v[l] == best.0 && lane_i[l] < best.1) {
                    best = (lane_v[l], lane_i[l]);
                }
            }
            if best.1 != NO_NEIGHBOUR {
                nn_yx[j] = best.1;
                sum_y += best.0.to_f64();
            }
        }
        let mut sum_x = 0f64;
        for i in 0..n {
            nn_xy[i] = if self.vx[i] {
                self.arg_x[i]
            } else {
                NO_NEIGHBOUR
            };
            if nn_xy[i] != NO_NEIGHBOUR {
                sum_x += self.best_x[i].to_f64();
            }
        }
        (sum_x, sum_y)
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
    let (b, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let m = y.shape()[1];
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
    let (nn_xy, nn_yx) = (out.nn_xy.to_vec()?, out.nn_yx.to_vec()?);
    let counts = out.counts.to_vec_f64()?;
    let gs = g.to_vec_f64()?;
    with_real!(x, T => {
        let (xs, ys) = (x.cpu::<T>()?, y.cpu::<T>()?);
        let mut gx = vec![T::zero(); b * n * d];
        let mut gy = vec![T::zero(); b * m * d];
        gx.par_chunks_mut(n * d.max(1)).zip(gy.par_chunks_mut(m * d.max(1))).enumerate().with_min_len(16).for_each(|(p, (gxp, gyp))| {
            let (cx, cy) = (counts[2 * p], counts[2 * p + 1]);
            if cx == 0.0 || cy == 0.0 {
                return;
            }
            let wx = T::from_f64(2.0 * gs[p] * if mean { 1.0 / cx } else { 1.0 });
            let wy = T::from_f64(2.0 * gs[p] * if mean { 1.0 / cy } else { 1.0 });
            let (xp, yp) = (&xs[p * n * d..(p + 1) * n * d], &ys[p * m * d..(p + 1) * m * d]);
            // term Σ_i c_x ‖x_i − y_nn(i)‖²
            for i in 0..n {
                let j = nn_xy[p * n + i];
                if j == NO_NEIGHBOUR { continue; }
                for k in 0..d {
                    let diff = wx * (xp[i * d + k] - yp[j as usize * d + k]);
                    gxp[i * d + k] += diff;
                    gyp[j as usize * d + k] += -diff;
                }
            }
            // term Σ_j c_y ‖y_j − x_nn'(j)‖²
            for j in 0..m {
                let i = nn_yx[p * m + j];
                if i == NO_NEIGHBOUR { continue; }
                for k in 0..d {
                    let diff = wy * (yp[j * d + k] - xp[i as usize * d + k]);
                    gyp[j * d + k] += diff;
                    gxp[i as usize * d + k] += -diff;
                }
            }
        });
        Ok((Tensor::from_cpu_vec(gx, x.shape())?, Tensor::from_cpu_vec(gy, y.shape())?))
    })
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
        if len_q == 0 {
            continue;
        }
        let cfg = LaunchConfig {
            grid_dim: (len_q.div_ceil(256), batch, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
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
        let cfg = LaunchConfig {
            grid_dim: ((n as u32).div_ceil(256), b as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: shapes as in the forward; g [B], gq [B, N, D].
        be.check_launch("chamfer_grad", unsafe { lb.launch(cfg) })?;
    }
    Ok(Tensor::from_cuda(gq, be.clone(), q.shape()))
}

impl Var {
    /// Chamfer distance between `self [B, N, D]` and `other [B, M, D]` (see the module doc),
    /// reduced over the batch as asked; gradients flow to both clouds.
    pub fn chamfer(
        &self,
        other: &Var,
        mask_x: Option<&Tensor>,
        mask_y: Option<&Tensor>,
        points: PointReduction,
        batch: BatchReduction,
    ) -> Result<Var> {
        let out = chamfer(self.value(), other.value(), mask_x, mask_y, points)?;
        let value = out.distance.clone();
        let per_pair = self.tape().push(
            Op::Chamfer {
                output: Box::new(out),
                reduction: points,
            },
            &[self, other],
            value,
        )?;
        match batch {
            BatchReduction::None => Ok(per_pair),
            BatchReduction::Sum => per_pair.sum_all(),
            BatchReduction::Mean => per_pair.mean_all(),
        }
    }
}

/// Backward of [`Op::Chamfer`].
pub(crate) fn backward_chamfer(
    x: &[&Tensor],
    out: &ChamferOutput,
    reduction: PointReduction,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let (gx, gy) = chamfer_backward(x[0], x[1], out, reduction, g)?;
    Ok(vec![Some(gx), Some(gy)])
}
