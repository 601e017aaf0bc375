//! The CUDA dispatch of the fused EPiC updates (`kernels/epic.cu`): f32, one block of 128
//! threads per jet for the forward and input-gradient kernels (their vectors in dynamic
//! shared memory), a grid-stride weight-gradient kernel summing over jets in order.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::{GlobalDims, GlobalSaved, ParticleDims, ParticleSaved};
use crate::autograd::CustomForward;
use crate::device::cuda::{grid_for, CudaBackend};
use crate::error::{Error, Result};
use crate::ops::n_u32;
use crate::tensor::Tensor;

/// Threads per block of the per-jet kernels.
const THREADS: u32 = 128;
/// The most dynamic shared memory a per-jet kernel asks for (the default 48 KiB).
const MAX_SHARED: usize = 48 * 1024;

fn per_jet(op: &'static str, b: usize, floats: usize) -> Result<LaunchConfig> {
    let bytes = floats * 4;
    if bytes > MAX_SHARED {
        return Err(Error::shape(
            op,
            format!("layer too wide for the fused CUDA kernel ({bytes} bytes of shared memory)"),
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (n_u32(op, b)?, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: bytes as u32,
    })
}

fn slice(t: &Tensor) -> Result<&CudaSlice<f32>> {
    Ok(&t.cuda()?.slice)
}

fn backend(t: &Tensor) -> Result<std::sync::Arc<CudaBackend>> {
    Ok(t.cuda()?.backend.clone())
}

/// The global update's forward on CUDA.
pub(super) fn global_forward(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: GlobalDims,
    sum_scale: f64,
    slope: f64,
) -> Result<CustomForward> {
    const OP: &str = "epic_global";
    let be = backend(inputs[0])?;
    let nq = d.q();
    let mut y = be.alloc::<f32>(d.b * d.g)?;
    let mut q = be.alloc::<f32>(d.b * nq)?;
    let mut a = be.alloc::<f32>(d.b * d.h1)?;
    let mut c = be.alloc::<f32>(d.b * d.g)?;
    if d.b > 0 {
        let f = be.function("epic", "epic_global_fwd")?;
        let u = |n: usize| n_u32(OP, n);
        let (p, h, g, e, h1) = (u(d.p)?, u(d.h)?, u(d.g)?, u(d.e)?, u(d.h1)?);
        let (s, sl) = (sum_scale as f32, slope as f32);
        let mut lb = be.stream.launch_builder(&f);
        lb.arg(&p).arg(&h).arg(&g).arg(&e).arg(&h1).arg(&s).arg(&sl);
        lb.arg(slice(inputs[0])?).arg(slice(mask)?);
        for t in &inputs[1..7] {
            lb.arg(slice(t)?);
        }
        lb.arg(&mut y).arg(&mut q).arg(&mut a).arg(&mut c);
        let cfg = per_jet(OP, d.b, nq + d.h1)?;
        // SAFETY: every buffer has the size GlobalDims::of checked; one block per jet.
        be.check_launch("epic_global_fwd", unsafe { lb.launch(cfg) })?;
    }
    Ok(CustomForward {
        value: Tensor::from_cuda(y, be.clone(), &[d.b, d.g]),
        saved: Box::new(GlobalSaved {
            q: Tensor::from_cuda(q, be.clone(), &[d.b, nq]),
            a: Tensor::from_cuda(a, be.clone(), &[d.b, d.h1]),
            c: Tensor::from_cuda(c, be.clone(), &[d.b, d.g]),
        }),
    })
}

/// The global update's backward on CUDA: gradients of h, g, e, W₁, b₁, W₂, b₂.
pub(super) fn global_backward(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: GlobalDims,
    (sum_scale, slope): (f64, f64),
    saved: &GlobalSaved,
    gy: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    const OP: &str = "epic_global";
    let be = backend(inputs[0])?;
    let nq = d.q();
    let mut gh = be.alloc::<f32>(d.b * d.p * d.h)?;
    let mut gg = be.alloc::<f32>(d.b * d.g)?;
    let mut ge = be.alloc::<f32>(d.b * d.e)?;
    let mut ga = be.alloc::<f32>(d.b * d.h1)?;
    let mut gc = be.alloc::<f32>(d.b * d.g)?;
    let mut gw1 = be.alloc::<f32>(d.h1 * nq)?;
    let mut gb1 = be.alloc::<f32>(d.h1)?;
    let mut gw2 = be.alloc::<f32>(d.g * d.h1)?;
    let mut gb2 = be.alloc::<f32>(d.g)?;
    let u = |n: usize| n_u32(OP, n);
    let (p, h, g, e, h1) = (u(d.p)?, u(d.h)?, u(d.g)?, u(d.e)?, u(d.h1)?);
    let (s, sl) = (sum_scale as f32, slope as f32);
    if d.b > 0 {
        let f = be.function("epic", "epic_global_bwd")?;
        let mut lb = be.stream.launch_builder(&f);
        lb.arg(&p).arg(&h).arg(&g).arg(&e).arg(&h1).arg(&s).arg(&sl);
        lb.arg(slice(mask)?)
            .arg(slice(inputs[3])?)
            .arg(slice(inputs[5])?)
            .arg(slice(&saved.a)?)
            .arg(slice(&saved.c)?)
            .arg(slice(gy)?);
        lb.arg(&mut gh)
            .arg(&mut gg)
            .arg(&mut ge)
            .arg(&mut ga)
            .arg(&mut gc);
        let cfg = per_jet(OP, d.b, d.g + d.h1 + nq)?;
        // SAFETY: as in the forward; one block per jet.
        be.check_launch("epic_global_bwd", unsafe { lb.launch(cfg) })?;
    }
    let n = d.h1 * nq + d.h1 + d.g * d.h1 + d.g;
    let f = be.function("epic", "epic_global_wgrad")?;
    let (bb, qq) = (u(d.b)?, u(nq)?);
    let mut lb = be.stream.launch_builder(&f);
    lb.arg(&bb).arg(&qq).arg(&g).arg(&h1).arg(&sl);
    lb.arg(slice(&saved.q)?)
        .arg(slice(&saved.a)?)
        .arg(&ga)
        .arg(&gc);
    lb.arg(&mut gw1).arg(&mut gb1).arg(&mut gw2).arg(&mut gb2);
    // SAFETY: one thread per weight element; the four outputs hold exactly those elements.
    be.check_launch("epic_global_wgrad", unsafe { lb.launch(grid_for(n)) })?;
    let t = |s: CudaSlice<f32>, shape: &[usize]| Some(Tensor::from_cuda(s, be.clone(), shape));
    Ok(vec![
        t(gh, &[d.b, d.p, d.h]),
        t(gg, &[d.b, d.g]),
        t(ge, &[d.b, d.e]),
        t(gw1, &[d.h1, nq]),
        t(gb1, &[d.h1]),
        t(gw2, &[d.g, d.h1]),
        t(gb2, &[d.g]),
    ])
}

/// The particle update's forward on CUDA.
pub(super) fn particle_forward(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: ParticleDims,
    slope: f64,
) -> Result<CustomForward> {
    const OP: &str = "epic_particle";
    let be = backend(inputs[0])?;
    let mut y = be.alloc::<f32>(d.b * d.p * d.h)?;
    let mut a = be.alloc::<f32>(d.b * d.p * d.h2)?;
    let mut c = be.alloc::<f32>(d.b * d.p * d.h)?;
    if d.b > 0 {
        let f = be.function("epic", "epic_particle_fwd")?;
        let u = |n: usize| n_u32(OP, n);
        let (p, h, g, t, h2) = (u(d.p)?, u(d.h)?, u(d.g)?, u(d.t)?, u(d.h2)?);
        let sl = slope as f32;
        let mut lb = be.stream.launch_builder(&f);
        lb.arg(&p).arg(&h).arg(&g).arg(&t).arg(&h2).arg(&sl);
        lb.arg(slice(inputs[0])?).arg(slice(mask)?);
        for x in &inputs[1..7] {
            lb.arg(slice(x)?);
        }
        lb.arg(&mut y).arg(&mut a).arg(&mut c);
        let cfg = per_jet(OP, d.b, 2 * d.h2 + d.h)?;
        // SAFETY: every buffer has the size ParticleDims::of checked; one block per jet.
        be.check_launch("epic_particle_fwd", unsafe { lb.launch(cfg) })?;
    }
    Ok(CustomForward {
        value: Tensor::from_cuda(y, be.clone(), &[d.b, d.p, d.h]),
        saved: Box::new(ParticleSaved {
            a: Tensor::from_cuda(a, be.clone(), &[d.b, d.p, d.h2]),
            c: Tensor::from_cuda(c, be.clone(), &[d.b, d.p, d.h]),
        }),
    })
}

/// The particle update's backward on CUDA: gradients of h, g, τ, W₃, b₃, W₄, b₄.
pub(super) fn particle_backward(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: ParticleDims,
    slope: f64,
    saved: &ParticleSaved,
    gy: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    const OP: &str = "epic_particle";
    let be = backend(inputs[0])?;
    let nx = d.x();
    let mut gh = be.alloc::<f32>(d.b * d.p * d.h)?;
    let mut gg = be.alloc::<f32>(d.b * d.g)?;
    let mut gt = be.alloc::<f32>(d.b * d.t)?;
    let mut gc = be.alloc::<f32>(d.b * d.p * d.h)?;
    let mut ga = be.alloc::<f32>(d.b * d.p * d.h2)?;
    let mut gw3 = be.alloc::<f32>(d.h2 * nx)?;
    let mut gb3 = be.alloc::<f32>(d.h2)?;
    let mut gw4 = be.alloc::<f32>(d.h * d.h2)?;
    let mut gb4 = be.alloc::<f32>(d.h)?;
    let u = |n: usize| n_u32(OP, n);
    let (p, h, g, t, h2) = (u(d.p)?, u(d.h)?, u(d.g)?, u(d.t)?, u(d.h2)?);
    let sl = slope as f32;
    if d.b > 0 {
        let f = be.function("epic", "epic_particle_bwd")?;
        let mut lb = be.stream.launch_builder(&f);
        lb.arg(&p).arg(&h).arg(&g).arg(&t).arg(&h2).arg(&sl);
        lb.arg(slice(mask)?)
            .arg(slice(inputs[3])?)
            .arg(slice(inputs[5])?)
            .arg(slice(&saved.a)?)
            .arg(slice(&saved.c)?)
            .arg(slice(gy)?);
        lb.arg(&mut gh)
            .arg(&mut gg)
            .arg(&mut gt)
            .arg(&mut gc)
            .arg(&mut ga);
        let cfg = per_jet(OP, d.b, d.h + 2 * d.h2)?;
        // SAFETY: as in the forward; one block per jet.
        be.check_launch("epic_particle_bwd", unsafe { lb.launch(cfg) })?;
    }
    let n = d.h2 * nx + d.h2 + d.h * d.h2 + d.h;
    let f = be.function("epic", "epic_particle_wgrad")?;
    let bb = u(d.b)?;
    let mut lb = be.stream.launch_builder(&f);
    lb.arg(&bb)
        .arg(&p)
        .arg(&h)
        .arg(&g)
        .arg(&t)
        .arg(&h2)
        .arg(&sl);
    lb.arg(slice(inputs[0])?)
        .arg(slice(inputs[1])?)
        .arg(slice(inputs[2])?)
        .arg(slice(&saved.a)?)
        .arg(&ga)
        .arg(&gc);
    lb.arg(&mut gw3).arg(&mut gb3).arg(&mut gw4).arg(&mut gb4);
    // SAFETY: one thread per weight element; the four outputs hold exactly those elements.
    be.check_launch("epic_particle_wgrad", unsafe { lb.launch(grid_for(n)) })?;
    let tt = |s: CudaSlice<f32>, shape: &[usize]| Some(Tensor::from_cuda(s, be.clone(), shape));
    Ok(vec![
        tt(gh, &[d.b, d.p, d.h]),
        tt(gg, &[d.b, d.g]),
        tt(gt, &[d.b, d.t]),
        tt(gw3, &[d.h2, nx]),
        tt(gb3, &[d.h2]),
        tt(gw4, &[d.h, d.h2]),
        tt(gb4, &[d.h]),
    ])
}
