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
//! CPU (`cpu.rs`): pairs in parallel; per pair and direction, groups of up to two 8-point
//! SIMD blocks keep their nearest distances in registers while the other cloud's valid
//! points stream past, branch-free. CUDA (`cuda.rs`, `kernels/chamfer.cu`): point
//! coordinates in registers and the other cloud streamed through shared memory in tiles, so
//! any N, M work and no B×N×M matrix is ever stored; D ≤ 8 on CUDA.
//!
//! Counted work (operations, transcendentals, bytes) and the roofline bound it gives:
//! [`crate::ops::work::chamfer`].

mod cpu;
mod cuda;

use std::any::Any;

use crate::autograd::{saved_as, CustomForward, CustomOp, Var};
use crate::error::{Error, Result};
use crate::ops::expect_shape;
use crate::ops::index::Indices;
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
        Tensor::check_all_finite(&[("chamfer x", x), ("chamfer y", y)])?;
        return cuda::cuda_forward(&buf.backend, x, y, mask_x, mask_y, mean, (b, n, m, d));
    }
    let valid = (cpu::Valid::of(mask_x)?, cpu::Valid::of(mask_y)?);
    with_real!(x, T => {
        let (xs, ys) = (x.cpu::<T>()?, y.cpu::<T>()?);
        let f = cpu::forward(xs, ys, valid, (b, n, m, d), mean);
        if !f.finite {
            // the sweeps saw NaN or ∞: the error names the input and counts its values
            Tensor::check_all_finite(&[("chamfer x", x), ("chamfer y", y)])?;
        }
        Ok(ChamferOutput {
            distance: Tensor::from_cpu_vec(f.distance, &[b])?,
            nn_xy: Indices::new(f.nn_xy, &[b, n])?,
            nn_yx: Indices::new(f.nn_yx, &[b, m])?,
            counts: Tensor::from_cpu_vec(f.counts, &[b, 2])?,
        })
    })
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
        let gx = cuda::cuda_grad(
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
        let gy = cuda::cuda_grad(
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
        let (gx, gy) = cpu::backward(xs, ys, nn_xy, nn_yx, &counts, &gs, (b, n, m, d), mean);
        Ok((Tensor::from_cpu_vec(gx, x.shape())?, Tensor::from_cpu_vec(gy, y.shape())?))
    })
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
