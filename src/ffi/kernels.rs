//! The kernel half of the C ABI: batched Chamfer and Sinkhorn on caller-owned host buffers
//! (run on the context's device: CUDA contexts copy in, run the CUDA kernel and copy out),
//! and the exact EMD / transport solver (CPU).

use std::ffi::c_int;

use super::{checked_size, err, fail, guard, slice_in, JetgenContext, JetgenStatus};
use crate::metrics::{jet_emd, transport_exact, Particle};
use crate::ops::chamfer::{chamfer, PointReduction};
use crate::ops::sinkhorn::{sinkhorn, Cost, SinkhornConfig};
use crate::tensor::Tensor;

/// Options of [`jetgen_sinkhorn`] (C struct `jetgen_sinkhorn_options`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JetgenSinkhornOptions {
    /// 0: |x−y| (p = 1), 1: |x−y|², 2: ½|x−y|² (geomloss' p = 2).
    pub cost: c_int,
    /// Target ε (blur^p in geomloss' terms), in cost units; > 0.
    pub epsilon: f64,
    /// Iterations at the target ε (an upper bound when `tolerance` > 0).
    pub max_iters: usize,
    /// Stop when the marginal L1 error is below this; ≤ 0 = run max_iters.
    pub tolerance: f64,
    /// ε-scaling factor in (0, 1) (0.7–0.9 recommended); ≤ 0 = no annealing.
    pub scaling: f64,
    /// 1: also solve OT(a,a), OT(b,b) and return the debiased divergence.
    pub debias: c_int,
}

/// Fill `*out` with the defaults: cost ½|x−y|², ε = 0.01, 200 iterations, tolerance 1e-4,
/// scaling 0.8, debiased.
///
/// # Safety
/// `out` must be a valid pointer (NULL is a no-op).
#[no_mangle]
pub unsafe extern "C" fn jetgen_sinkhorn_default_options(out: *mut JetgenSinkhornOptions) {
    if !out.is_null() {
        // SAFETY: checked non-NULL.
        unsafe {
            *out = JetgenSinkhornOptions {
                cost: 2,
                epsilon: 0.01,
                max_iters: 200,
                tolerance: 1e-4,
                scaling: 0.8,
                debias: 1,
            }
        };
    }
}

fn context<'a>(ctx: *const JetgenContext) -> Result<&'a JetgenContext, (JetgenStatus, String)> {
    if ctx.is_null() {
        return fail(JetgenStatus::NullPointer, "context is NULL");
    }
    // SAFETY: checked non-NULL; alive per the contract.
    Ok(unsafe { &*ctx })
}

/// Copies a tensor's values into a caller buffer of exactly its size.
///
/// # Safety
/// `out` must hold `t.numel()` floats.
unsafe fn copy_out(t: &Tensor, out: *mut f32) -> Result<(), (JetgenStatus, String)> {
    let v = t.to_vec().map_err(err)?;
    // SAFETY: per the contract.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out, v.len()) };
    Ok(())
}

/// Where a kernel call's buffers live: caller host memory (copied to the context's device
/// if that is a GPU), or caller CUDA memory on the context's GPU.
enum Place {
    Host,
    Device(std::sync::Arc<crate::device::cuda::CudaBackend>),
}

impl Place {
    /// Device-pointer calls need a CUDA context.
    fn device(c: &JetgenContext) -> Result<Place, (JetgenStatus, String)> {
        match c.device {
            crate::device::Device::Cuda(n) => Ok(Place::Device(crate::device::cuda::backend(n).map_err(err)?)),
            crate::device::Device::Cpu => fail(
                JetgenStatus::InvalidArgument,
                "device-pointer functions need a CUDA context (jetgen_context_create with a GPU ordinal)",
            ),
        }
    }

    /// A tensor of `shape` from `len` floats at `ptr` (host or device per `self`).
    ///
    /// # Safety
    /// `ptr` must address `len` readable floats in the memory `self` names.
    unsafe fn input(
        &self,
        c: &JetgenContext,
        ptr: *const f32,
        len: usize,
        shape: &[usize],
        what: &str,
    ) -> Result<Tensor, (JetgenStatus, String)> {
        match self {
            // SAFETY: per the contract.
            Place::Host => {
                Tensor::from_slice(unsafe { slice_in(ptr, len, what)? }, shape, c.device)
                    .map_err(err)
            }
            Place::Device(be) => {
                if ptr.is_null() {
                    return fail(JetgenStatus::NullPointer, format!("{what} is NULL"));
                }
                // SAFETY: per the contract (device memory of this GPU).
                let slice = unsafe { be.copy_from_raw::<f32>(ptr as u64, len) }.map_err(err)?;
                Ok(Tensor::from_cuda(slice, be.clone(), shape))
            }
        }
    }

    /// Writes `t` (all its elements) to `out` (host or device per `self`); device writes
    /// have finished when this returns.
    ///
    /// # Safety
    /// `out` must address `t.numel()` writable floats in the memory `self` names.
    unsafe fn output(&self, t: &Tensor, out: *mut f32) -> Result<(), (JetgenStatus, String)> {
        match self {
            // SAFETY: per the contract.
            Place::Host => unsafe { copy_out(t, out) },
            Place::Device(be) => {
                let buf = t.cuda().map_err(err)?;
                // SAFETY: per the contract.
                unsafe { be.copy_to_raw(&buf.slice, out as u64, t.numel()) }.map_err(err)
            }
        }
    }
}

/// Batched Chamfer distance of clouds `x[batch·n·dim]` and `y[batch·m·dim]` (row-major,
/// float) with optional validity masks `mask_x[batch·n]`, `mask_y[batch·m]` (1 = real point,
/// 0 = padding; NULL = all valid): for each pair Σ_i min_j |x_i−y_j|² + Σ_j min_i |x_i−y_j|²
/// over valid points (`mean` ≠ 0: each sum divided by its count) into `out[batch]`. A cloud
/// with no valid points contributes 0. On a CUDA context dim ≤ 8.
///
/// # Safety
/// Every non-NULL pointer must hold the number of floats stated.
#[no_mangle]
pub unsafe extern "C" fn jetgen_chamfer(
    ctx: *const JetgenContext,
    x: *const f32,
    y: *const f32,
    batch: usize,
    n: usize,
    m: usize,
    dim: usize,
    mask_x: *const f32,
    mask_y: *const f32,
    mean: c_int,
    out: *mut f32,
) -> JetgenStatus {
    guard(|| {
        let c = context(ctx)?;
        // SAFETY: forwarded caller contract (host memory).
        unsafe {
            chamfer_impl(
                c,
                &Place::Host,
                x,
                y,
                [batch, n, m, dim],
                mask_x,
                mask_y,
                mean,
                out,
            )
        }
    })
}

/// [`jetgen_chamfer`] on caller CUDA memory: every pointer is a device pointer on the
/// context's GPU (which must be a CUDA context). Stream semantics: jetgen reads the inputs
/// and writes `out` on its own stream for that device and returns only after that work has
/// finished; make sure whatever produced the inputs has completed first (e.g. synchronise
/// your stream), and do not touch `out` from another stream during the call.
///
/// # Safety
/// Every non-NULL pointer must address the stated number of floats in device memory.
#[no_mangle]
pub unsafe extern "C" fn jetgen_chamfer_device(
    ctx: *const JetgenContext,
    x: *const f32,
    y: *const f32,
    batch: usize,
    n: usize,
    m: usize,
    dim: usize,
    mask_x: *const f32,
    mask_y: *const f32,
    mean: c_int,
    out: *mut f32,
) -> JetgenStatus {
    guard(|| {
        let c = context(ctx)?;
        let place = Place::device(c)?;
        // SAFETY: forwarded caller contract (device memory).
        unsafe {
            chamfer_impl(
                c,
                &place,
                x,
                y,
                [batch, n, m, dim],
                mask_x,
                mask_y,
                mean,
                out,
            )
        }
    })
}

/// The shared body of the Chamfer entry points.
///
/// # Safety
/// As the entry points: every non-NULL pointer holds the stated floats in `place`'s memory.
#[allow(clippy::too_many_arguments)]
unsafe fn chamfer_impl(
    c: &JetgenContext,
    place: &Place,
    x: *const f32,
    y: *const f32,
    [batch, n, m, dim]: [usize; 4],
    mask_x: *const f32,
    mask_y: *const f32,
    mean: c_int,
    out: *mut f32,
) -> Result<(), (JetgenStatus, String)> {
    if out.is_null() {
        return fail(JetgenStatus::NullPointer, "jetgen_chamfer: out is NULL");
    }
    if batch == 0 || n == 0 || m == 0 || dim == 0 {
        return fail(
            JetgenStatus::InvalidArgument,
            "jetgen_chamfer: sizes must be ≥ 1",
        );
    }
    let (nx, ny) = (
        checked_size("x", &[batch, n, dim])?,
        checked_size("y", &[batch, m, dim])?,
    );
    // SAFETY (all inputs): the caller promises the sizes.
    let xt = unsafe { place.input(c, x, nx, &[batch, n, dim], "x")? };
    let yt = unsafe { place.input(c, y, ny, &[batch, m, dim], "y")? };
    let mx = match mask_x.is_null() {
        true => None,
        false => Some(unsafe { place.input(c, mask_x, batch * n, &[batch, n], "mask_x")? }),
    };
    let my = match mask_y.is_null() {
        true => None,
        false => Some(unsafe { place.input(c, mask_y, batch * m, &[batch, m], "mask_y")? }),
    };
    let reduction = if mean != 0 {
        PointReduction::Mean
    } else {
        PointReduction::Sum
    };
    let r = c
        .run(|| chamfer(&xt, &yt, mx.as_ref(), my.as_ref(), reduction))
        .map_err(err)?;
    // SAFETY: out holds batch floats per the contract.
    unsafe { place.output(&r.distance, out) }
}

/// Batched log-domain Sinkhorn between weighted clouds `x[batch·n·dim]`, `y[batch·m·dim]`
/// with weights `a[batch·n]`, `b[batch·m]` (≥ 0, zero = padding; pass probability vectors,
/// e.g. pT fractions, for the usual normalised OT). Any output may be NULL:
/// `out_divergence[batch]` (needs `debias`), `out_ot[batch]` (entropic OT value),
/// `out_f[batch·n]`, `out_g[batch·m]` (dual potentials).
///
/// # Safety
/// Every non-NULL pointer must hold the number of elements stated.
#[no_mangle]
pub unsafe extern "C" fn jetgen_sinkhorn(
    ctx: *const JetgenContext,
    x: *const f32,
    y: *const f32,
    a: *const f32,
    b: *const f32,
    batch: usize,
    n: usize,
    m: usize,
    dim: usize,
    options: *const JetgenSinkhornOptions,
    out_divergence: *mut f32,
    out_ot: *mut f32,
    out_f: *mut f32,
    out_g: *mut f32,
) -> JetgenStatus {
    guard(|| {
        let c = context(ctx)?;
        // SAFETY: forwarded caller contract (host memory).
        unsafe {
            sinkhorn_impl(
                c,
                &Place::Host,
                [x, y, a, b],
                [batch, n, m, dim],
                options,
                [out_divergence, out_ot, out_f, out_g],
            )
        }
    })
}

/// [`jetgen_sinkhorn`] on caller CUDA memory: positions, weights and outputs are device
/// pointers on the context's GPU (`options` stays a host pointer). Stream semantics as
/// [`jetgen_chamfer_device`]: inputs must be ready before the call; outputs are written when
/// it returns.
///
/// # Safety
/// Every non-NULL pointer must address the stated number of floats in device memory.
#[no_mangle]
pub unsafe extern "C" fn jetgen_sinkhorn_device(
    ctx: *const JetgenContext,
    x: *const f32,
    y: *const f32,
    a: *const f32,
    b: *const f32,
    batch: usize,
    n: usize,
    m: usize,
    dim: usize,
    options: *const JetgenSinkhornOptions,
    out_divergence: *mut f32,
    out_ot: *mut f32,
    out_f: *mut f32,
    out_g: *mut f32,
) -> JetgenStatus {
    guard(|| {
        let c = context(ctx)?;
        let place = Place::device(c)?;
        // SAFETY: forwarded caller contract (device memory).
        unsafe {
            sinkhorn_impl(
                c,
                &place,
                [x, y, a, b],
                [batch, n, m, dim],
                options,
                [out_divergence, out_ot, out_f, out_g],
            )
        }
    })
}

/// The shared body of the Sinkhorn entry points.
///
/// # Safety
/// As the entry points: every non-NULL pointer holds the stated floats in `place`'s memory;
/// `options` is a host pointer.
unsafe fn sinkhorn_impl(
    c: &JetgenContext,
    place: &Place,
    [x, y, a, b]: [*const f32; 4],
    [batch, n, m, dim]: [usize; 4],
    options: *const JetgenSinkhornOptions,
    [out_divergence, out_ot, out_f, out_g]: [*mut f32; 4],
) -> Result<(), (JetgenStatus, String)> {
    if options.is_null() {
        return fail(
            JetgenStatus::NullPointer,
            "jetgen_sinkhorn: options is NULL",
        );
    }
    // SAFETY: checked non-NULL (host memory).
    let o = unsafe { *options };
    if batch == 0 || n == 0 || m == 0 || dim == 0 {
        return fail(
            JetgenStatus::InvalidArgument,
            "jetgen_sinkhorn: sizes must be ≥ 1",
        );
    }
    let cost = match o.cost {
        0 => Cost::Euclidean,
        1 => Cost::SquaredEuclidean,
        2 => Cost::HalfSquaredEuclidean,
        k => {
            return fail(
                JetgenStatus::InvalidArgument,
                format!("unknown cost {k} (0, 1, 2)"),
            )
        }
    };
    if o.debias == 0 && !out_divergence.is_null() {
        return fail(
            JetgenStatus::InvalidArgument,
            "the divergence needs debias = 1",
        );
    }
    let cfg = SinkhornConfig {
        cost,
        epsilon: o.epsilon,
        max_iters: o.max_iters,
        tolerance: (o.tolerance > 0.0).then_some(o.tolerance),
        scaling: (o.scaling > 0.0).then_some(o.scaling),
        debias: o.debias != 0,
    };
    let (nx, ny) = (
        checked_size("x", &[batch, n, dim])?,
        checked_size("y", &[batch, m, dim])?,
    );
    // SAFETY (all inputs): the caller promises the sizes.
    let xt = unsafe { place.input(c, x, nx, &[batch, n, dim], "x")? };
    let yt = unsafe { place.input(c, y, ny, &[batch, m, dim], "y")? };
    let at = unsafe { place.input(c, a, batch * n, &[batch, n], "a")? };
    let bt = unsafe { place.input(c, b, batch * m, &[batch, m], "b")? };
    let r = c.run(|| sinkhorn(&xt, &yt, &at, &bt, &cfg)).map_err(err)?;
    // SAFETY: each non-NULL output holds its stated size per the contract.
    unsafe {
        if let (false, Some(d)) = (out_divergence.is_null(), r.divergence.as_ref()) {
            place.output(d, out_divergence)?;
        }
        if !out_ot.is_null() {
            place.output(&r.ot, out_ot)?;
        }
        if !out_f.is_null() {
            place.output(&r.f, out_f)?;
        }
        if !out_g.is_null() {
            place.output(&r.g, out_g)?;
        }
    }
    Ok(())
}

/// energyflow's exact jet EMD (R = 1, β = 1, unnormalised pT: Σ F_ij θ_ij + |ΣpT − ΣpT'|)
/// between jets given as rows (pT, η, φ): `jet_x[nx·3]`, `jet_y[ny·3]` (nx or ny may be 0,
/// then the pointer may be NULL); pT must be ≥ 0. CPU; thread-safe.
///
/// # Safety
/// The arrays must hold the stated number of doubles and `out` one double.
#[no_mangle]
pub unsafe extern "C" fn jetgen_emd(
    jet_x: *const f64,
    nx: usize,
    jet_y: *const f64,
    ny: usize,
    out: *mut f64,
) -> JetgenStatus {
    guard(|| {
        if out.is_null() {
            return fail(JetgenStatus::NullPointer, "jetgen_emd: out is NULL");
        }
        let read = |p: *const f64,
                    k: usize,
                    what: &str|
         -> Result<Vec<Particle>, (JetgenStatus, String)> {
            if k == 0 {
                return Ok(Vec::new());
            }
            let len = checked_size(what, &[k, 3])?;
            // SAFETY: the caller promises k·3 doubles.
            let rows = unsafe { slice_in(p, len, what)? };
            let parts: Vec<Particle> = rows
                .chunks_exact(3)
                .map(|r| Particle {
                    pt: r[0],
                    eta: r[1],
                    phi: r[2],
                })
                .collect();
            if let Some(q) = parts.iter().find(|q| {
                !(q.pt >= 0.0 && q.pt.is_finite() && q.eta.is_finite() && q.phi.is_finite())
            }) {
                return fail(
                    JetgenStatus::InvalidArgument,
                    format!("{what}: invalid particle {q:?}"),
                );
            }
            Ok(parts.into_iter().filter(|q| q.pt > 0.0).collect())
        };
        let (x, y) = (read(jet_x, nx, "jet_x")?, read(jet_y, ny, "jet_y")?);
        let v = jet_emd(&x, &y).map_err(err)?;
        // SAFETY: checked non-NULL.
        unsafe { *out = v };
        Ok(())
    })
}

/// Exact balanced optimal transport: minimise ⟨F, C⟩ over F ≥ 0 with row sums `a[n]` and
/// column sums `b[m]` (Σa = Σb to 1e-9 relative), `cost[n·m]` row-major. Writes the optimal
/// cost to `*out_cost` and, if `out_flow` is not NULL, the plan F into `out_flow[n·m]`. CPU.
///
/// # Safety
/// The arrays must hold the stated number of doubles.
#[no_mangle]
pub unsafe extern "C" fn jetgen_transport(
    a: *const f64,
    n: usize,
    b: *const f64,
    m: usize,
    cost: *const f64,
    out_cost: *mut f64,
    out_flow: *mut f64,
) -> JetgenStatus {
    guard(|| {
        if out_cost.is_null() {
            return fail(
                JetgenStatus::NullPointer,
                "jetgen_transport: out_cost is NULL",
            );
        }
        if n == 0 || m == 0 {
            return fail(
                JetgenStatus::InvalidArgument,
                "jetgen_transport: n and m must be ≥ 1",
            );
        }
        let nm = checked_size("cost", &[n, m])?;
        // SAFETY: the caller promises the sizes.
        let (a, b, c) = unsafe {
            (
                slice_in(a, n, "a")?,
                slice_in(b, m, "b")?,
                slice_in(cost, nm, "cost")?,
            )
        };
        let sol = transport_exact(a, b, c).map_err(err)?;
        // SAFETY: checked non-NULL; out_flow holds n·m doubles when non-NULL.
        unsafe {
            *out_cost = sol.cost;
            if !out_flow.is_null() {
                let plan = std::slice::from_raw_parts_mut(out_flow, nm);
                plan.fill(0.0);
                for &(i, j, f) in &sol.flows {
                    plan[i * m + j] = f;
                }
            }
        }
        Ok(())
    })
}
