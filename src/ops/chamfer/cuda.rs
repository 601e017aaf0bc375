//! The CUDA side of [`super::chamfer`]: launches of `kernels/chamfer.cu` (nearest neighbours
//! per direction, the per-pair reduction, and the gradient), with the point coordinates in
//! registers and the other cloud streamed through shared memory in tiles, so any N, M work
//! and no B×N×M matrix is ever stored. D ≤ 8.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::device::cuda::CudaBackend;
use crate::error::Result;
use crate::ops::index::Indices;
use crate::ops::n_u32;
use crate::tensor::Tensor;

use super::ChamferOutput;

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

pub(super) fn cuda_forward(
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
pub(super) fn cuda_grad(
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
