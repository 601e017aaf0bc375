//! The EPiC layer (Buhmann et al., "EPiC-ly fast particle cloud generation") as two fused
//! tape ops through [`CustomOp`]: the **global update** (masked mean and sum pooling of the
//! particles, then the global MLP with its residual) and the **particle update** (the
//! per-particle MLP on [particle, global, time] with its residual and the mask). One EPiC
//! layer is `g ← epic_global(h, g, …)` then `h ← epic_particle(h, g, …)`.
//!
//! ```text
//! global:   cnt = max(Σ_p m_p, 1),  S = Σ_p m_p h_p,  q = [S/cnt, s·S, g, e]
//!           g′ = σ(W₂ σ(W₁ q + b₁) + b₂ + g)                       [B, G]
//! particle: a_p = W₃ [h_p, g′, τ] + b₃,  h′_p = m_p · σ(W₄ σ(a_p) + b₄ + h_p)   [B, P, H]
//! ```
//! σ = leaky ReLU (slope α), s = sum scale, e = the extra global inputs (time embedding,
//! context). Shapes: h `[B, P, H]`, mask `[B, P]` (a constant), g `[B, G]`, e `[B, E]`,
//! τ `[B, T]`; W₁ `[H₁, 2H + G + E]`, W₂ `[G, H₁]`, W₃ `[H₂, H + G + T]`, W₄ `[H, H₂]`.
//!
//! What fusing buys on the CPU: the particle MLP's global and time columns are applied once
//! per jet (W₃[:, H:]·[g′, τ]) instead of once per particle after broadcasting and
//! concatenating, padded particles are skipped, and no intermediate tensor is recorded —
//! one tape node per update. On CUDA each update is one block per jet (`kernels/epic.cu`,
//! [`cuda`]) plus a weight-gradient kernel. Both ops are once-differentiable; their backward
//! is hand-written (the pre-activations are saved).

mod cuda;

use std::any::Any;

use crate::autograd::{saved_as, CustomForward, CustomOp, Var};
use crate::error::{Error, Result};
use crate::ops::expect_shape;
use crate::real::Real;
use crate::tensor::{DType, Tensor};

/// Jets per parallel work item (weight gradients are summed per item).
const JETS_PER_TASK: usize = 16;

#[inline(always)]
fn act<T: Real>(u: T, slope: T) -> T {
    if u > T::zero() {
        u
    } else {
        slope * u
    }
}

#[inline(always)]
fn act_grad<T: Real>(u: T, slope: T) -> T {
    if u > T::zero() {
        T::one()
    } else {
        slope
    }
}

/// out = b + W x for W `[rows, cols]` (row-major) and x of `cols` values.
#[inline]
fn affine<T: Real>(w: &[T], b: &[T], x: &[T], out: &mut [T]) {
    let cols = x.len();
    for (i, o) in out.iter_mut().enumerate() {
        let row = &w[i * cols..(i + 1) * cols];
        let mut s = b[i];
        for (wv, xv) in row.iter().zip(x) {
            s += *wv * *xv;
        }
        *o = s;
    }
}

/// The sizes of a global update, checked against the inputs.
#[derive(Clone, Copy, Debug)]
struct GlobalDims {
    b: usize,
    p: usize,
    h: usize,
    g: usize,
    e: usize,
    h1: usize,
}

impl GlobalDims {
    fn q(&self) -> usize {
        2 * self.h + self.g + self.e
    }
    fn of(inputs: &[&Tensor], mask: &Tensor) -> Result<GlobalDims> {
        const OP: &str = "epic_global";
        if inputs.len() != 7 {
            return Err(Error::invalid("epic_global takes h, g, e, W1, b1, W2, b2"));
        }
        let hs = inputs[0].shape();
        if hs.len() != 3 {
            return Err(Error::shape(OP, format!("h must be [B, P, H], got {hs:?}")));
        }
        let (b, p, h) = (hs[0], hs[1], hs[2]);
        let g = inputs[1].shape().last().copied().unwrap_or(0);
        let e = inputs[2].shape().last().copied().unwrap_or(0);
        let h1 = inputs[3].shape().first().copied().unwrap_or(0);
        let d = GlobalDims { b, p, h, g, e, h1 };
        expect_shape(OP, "mask", mask.shape(), &[b, p])?;
        expect_shape(OP, "g", inputs[1].shape(), &[b, g])?;
        expect_shape(OP, "e", inputs[2].shape(), &[b, e])?;
        expect_shape(OP, "W1", inputs[3].shape(), &[h1, d.q()])?;
        expect_shape(OP, "b1", inputs[4].shape(), &[h1])?;
        expect_shape(OP, "W2", inputs[5].shape(), &[g, h1])?;
        expect_shape(OP, "b2", inputs[6].shape(), &[g])?;
        Ok(d)
    }
}

/// The global update's saved state: q `[B, Q]`, the pre-activations a `[B, H₁]`, c `[B, G]`
/// (on the inputs' device).
struct GlobalSaved {
    q: Tensor,
    a: Tensor,
    c: Tensor,
}

fn same_dtype(op: &'static str, inputs: &[&Tensor], mask: &Tensor) -> Result<DType> {
    let dt = inputs[0].dtype();
    if inputs.iter().any(|t| t.dtype() != dt) || mask.dtype() != dt {
        return Err(Error::DType {
            op,
            msg: "all inputs (and the mask) must have one dtype".into(),
        });
    }
    Ok(dt)
}

/// The global update's forward on the CPU (module doc): (g′, saved).
fn global_forward_cpu<T: Real>(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: GlobalDims,
    sum_scale: f64,
    slope: f64,
) -> Result<CustomForward> {
    let (h, g, e) = (
        inputs[0].cpu::<T>()?,
        inputs[1].cpu::<T>()?,
        inputs[2].cpu::<T>()?,
    );
    let (w1, b1, w2, b2) = (
        inputs[3].cpu::<T>()?,
        inputs[4].cpu::<T>()?,
        inputs[5].cpu::<T>()?,
        inputs[6].cpu::<T>()?,
    );
    let m = mask.cpu::<T>()?;
    let (s, slope) = (T::from_f64(sum_scale), T::from_f64(slope));
    let nq = d.q();
    let work = d.b * (d.p * d.h + d.h1 * nq);
    let per_jet = super::map_range(d.b, work, |j| {
        let mut q = vec![T::zero(); nq];
        let mut cnt = T::zero();
        for pp in 0..d.p {
            let mv = m[j * d.p + pp];
            if mv == T::zero() {
                continue;
            }
            cnt += mv;
            let row = &h[(j * d.p + pp) * d.h..(j * d.p + pp + 1) * d.h];
            for (acc, &v) in q[..d.h].iter_mut().zip(row) {
                *acc += mv * v;
            }
        }
        let cnt = if cnt > T::one() { cnt } else { T::one() };
        for k in 0..d.h {
            let sum = q[k];
            q[k] = sum / cnt;
            q[d.h + k] = s * sum;
        }
        q[2 * d.h..2 * d.h + d.g].copy_from_slice(&g[j * d.g..(j + 1) * d.g]);
        q[2 * d.h + d.g..].copy_from_slice(&e[j * d.e..(j + 1) * d.e]);
        let mut a = vec![T::zero(); d.h1];
        affine(w1, b1, &q, &mut a);
        let z: Vec<T> = a.iter().map(|&v| act(v, slope)).collect();
        let mut c = vec![T::zero(); d.g];
        affine(w2, b2, &z, &mut c);
        for (cv, &gv) in c.iter_mut().zip(&g[j * d.g..(j + 1) * d.g]) {
            *cv += gv;
        }
        (q, a, c)
    });
    let mut out = Vec::with_capacity(d.b * d.g);
    let (mut qs, mut as_, mut cs) = (Vec::new(), Vec::new(), Vec::new());
    for (q, a, c) in per_jet {
        out.extend(c.iter().map(|&v| act(v, slope)));
        qs.extend(q);
        as_.extend(a);
        cs.extend(c);
    }
    Ok(CustomForward {
        value: Tensor::from_cpu_vec(out, &[d.b, d.g])?,
        saved: Box::new(GlobalSaved {
            q: Tensor::from_cpu_vec(qs, &[d.b, nq])?,
            a: Tensor::from_cpu_vec(as_, &[d.b, d.h1])?,
            c: Tensor::from_cpu_vec(cs, &[d.b, d.g])?,
        }),
    })
}

/// The global update's backward on the CPU: gradients of h, g, e, W₁, b₁, W₂, b₂.
fn global_backward_cpu<T: Real>(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: GlobalDims,
    sum_scale: f64,
    slope: f64,
    saved: &GlobalSaved,
    gy: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let (w1, w2) = (inputs[3].cpu::<T>()?, inputs[5].cpu::<T>()?);
    let m = mask.cpu::<T>()?;
    let (q, a, c) = (
        saved.q.cpu::<T>()?,
        saved.a.cpu::<T>()?,
        saved.c.cpu::<T>()?,
    );
    let gy = gy.cpu::<T>()?;
    let (s, slope) = (T::from_f64(sum_scale), T::from_f64(slope));
    let nq = d.q();
    let tasks = d.b.div_ceil(JETS_PER_TASK);
    let work = d.b * d.h1 * nq * 2;
    // per task: (gh rows, gg rows, ge rows, gW1, gb1, gW2, gb2)
    let parts = super::map_range(tasks, work, |task| {
        let jets = task * JETS_PER_TASK..((task + 1) * JETS_PER_TASK).min(d.b);
        let nj = jets.len();
        let mut gh = vec![T::zero(); nj * d.p * d.h];
        let mut gg = vec![T::zero(); nj * d.g];
        let mut ge = vec![T::zero(); nj * d.e];
        let mut gw1 = vec![T::zero(); d.h1 * nq];
        let mut gb1 = vec![T::zero(); d.h1];
        let mut gw2 = vec![T::zero(); d.g * d.h1];
        let mut gb2 = vec![T::zero(); d.g];
        for (k, j) in jets.enumerate() {
            let qj = &q[j * nq..(j + 1) * nq];
            let aj = &a[j * d.h1..(j + 1) * d.h1];
            let gc: Vec<T> = (0..d.g)
                .map(|i| gy[j * d.g + i] * act_grad(c[j * d.g + i], slope))
                .collect();
            let z: Vec<T> = aj.iter().map(|&v| act(v, slope)).collect();
            let mut gz = vec![T::zero(); d.h1];
            for i in 0..d.g {
                gb2[i] += gc[i];
                gg[k * d.g + i] += gc[i];
                for r in 0..d.h1 {
                    gw2[i * d.h1 + r] += gc[i] * z[r];
                    gz[r] += w2[i * d.h1 + r] * gc[i];
                }
            }
            let ga: Vec<T> = (0..d.h1).map(|r| gz[r] * act_grad(aj[r], slope)).collect();
            let mut gq = vec![T::zero(); nq];
            for r in 0..d.h1 {
                gb1[r] += ga[r];
                let row = &w1[r * nq..(r + 1) * nq];
                for col in 0..nq {
                    gw1[r * nq + col] += ga[r] * qj[col];
                    gq[col] += row[col] * ga[r];
                }
            }
            let mut cnt = T::zero();
            for pp in 0..d.p {
                cnt += m[j * d.p + pp];
            }
            let cnt = if cnt > T::one() { cnt } else { T::one() };
            for pp in 0..d.p {
                let mv = m[j * d.p + pp];
                if mv == T::zero() {
                    continue;
                }
                for col in 0..d.h {
                    gh[(k * d.p + pp) * d.h + col] = mv * (gq[col] / cnt + s * gq[d.h + col]);
                }
            }
            for i in 0..d.g {
                gg[k * d.g + i] += gq[2 * d.h + i];
            }
            ge[k * d.e..(k + 1) * d.e].copy_from_slice(&gq[2 * d.h + d.g..]);
        }
        (gh, gg, ge, gw1, gb1, gw2, gb2)
    });
    let (mut gh, mut gg, mut ge) = (Vec::new(), Vec::new(), Vec::new());
    let mut gw1 = vec![T::zero(); d.h1 * nq];
    let mut gb1 = vec![T::zero(); d.h1];
    let mut gw2 = vec![T::zero(); d.g * d.h1];
    let mut gb2 = vec![T::zero(); d.g];
    for (h_, g_, e_, w1_, b1_, w2_, b2_) in parts {
        gh.extend(h_);
        gg.extend(g_);
        ge.extend(e_);
        for (acc, v) in [
            (&mut gw1, w1_),
            (&mut gb1, b1_),
            (&mut gw2, w2_),
            (&mut gb2, b2_),
        ] {
            acc.iter_mut().zip(v).for_each(|(x, y)| *x += y);
        }
    }
    Ok(vec![
        Some(Tensor::from_cpu_vec(gh, &[d.b, d.p, d.h])?),
        Some(Tensor::from_cpu_vec(gg, &[d.b, d.g])?),
        Some(Tensor::from_cpu_vec(ge, &[d.b, d.e])?),
        Some(Tensor::from_cpu_vec(gw1, &[d.h1, nq])?),
        Some(Tensor::from_cpu_vec(gb1, &[d.h1])?),
        Some(Tensor::from_cpu_vec(gw2, &[d.g, d.h1])?),
        Some(Tensor::from_cpu_vec(gb2, &[d.g])?),
    ])
}

/// The fused global update (module doc) as a tape op.
struct EpicGlobalOp {
    mask: Tensor,
    sum_scale: f64,
    slope: f64,
}

impl CustomOp for EpicGlobalOp {
    fn name(&self) -> &'static str {
        "epic_global"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = GlobalDims::of(inputs, &self.mask)?;
        match same_dtype("epic_global", inputs, &self.mask)? {
            DType::F32 => {
                global_forward_cpu::<f32>(inputs, &self.mask, d, self.sum_scale, self.slope)
            }
            DType::F64 => {
                global_forward_cpu::<f64>(inputs, &self.mask, d, self.sum_scale, self.slope)
            }
        }
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = GlobalDims::of(inputs, &self.mask)?;
        self.mask.same_place("epic_global", inputs[0])?;
        cuda::global_forward(inputs, &self.mask, d, self.sum_scale, self.slope)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let d = GlobalDims::of(inputs, &self.mask)?;
        expect_shape("epic_global", "gradient", g.shape(), &[d.b, d.g])?;
        let s = saved_as::<GlobalSaved>(saved, "epic_global")?;
        let (m, sc, sl) = (&self.mask, self.sum_scale, self.slope);
        if inputs[0].device().is_cuda() {
            return cuda::global_backward(inputs, m, d, (sc, sl), s, g);
        }
        match same_dtype("epic_global", inputs, m)? {
            DType::F32 => global_backward_cpu::<f32>(inputs, m, d, sc, sl, s, g),
            DType::F64 => global_backward_cpu::<f64>(inputs, m, d, sc, sl, s, g),
        }
    }
}

/// The sizes of a particle update, checked against the inputs.
#[derive(Clone, Copy, Debug)]
struct ParticleDims {
    b: usize,
    p: usize,
    h: usize,
    g: usize,
    t: usize,
    h2: usize,
}

impl ParticleDims {
    fn x(&self) -> usize {
        self.h + self.g + self.t
    }
    fn of(inputs: &[&Tensor], mask: &Tensor) -> Result<ParticleDims> {
        const OP: &str = "epic_particle";
        if inputs.len() != 7 {
            return Err(Error::invalid(
                "epic_particle takes h, g, τ, W3, b3, W4, b4",
            ));
        }
        let hs = inputs[0].shape();
        if hs.len() != 3 {
            return Err(Error::shape(OP, format!("h must be [B, P, H], got {hs:?}")));
        }
        let (b, p, h) = (hs[0], hs[1], hs[2]);
        let g = inputs[1].shape().last().copied().unwrap_or(0);
        let t = inputs[2].shape().last().copied().unwrap_or(0);
        let h2 = inputs[3].shape().first().copied().unwrap_or(0);
        let d = ParticleDims { b, p, h, g, t, h2 };
        expect_shape(OP, "mask", mask.shape(), &[b, p])?;
        expect_shape(OP, "g", inputs[1].shape(), &[b, g])?;
        expect_shape(OP, "τ", inputs[2].shape(), &[b, t])?;
        expect_shape(OP, "W3", inputs[3].shape(), &[h2, d.x()])?;
        expect_shape(OP, "b3", inputs[4].shape(), &[h2])?;
        expect_shape(OP, "W4", inputs[5].shape(), &[h, h2])?;
        expect_shape(OP, "b4", inputs[6].shape(), &[h])?;
        Ok(d)
    }
}

/// The particle update's saved pre-activations a `[B, P, H₂]` and c `[B, P, H]`.
struct ParticleSaved {
    a: Tensor,
    c: Tensor,
}

/// The particle update's forward on the CPU (module doc).
fn particle_forward_cpu<T: Real>(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: ParticleDims,
    slope: f64,
) -> Result<CustomForward> {
    let (h, g, tau) = (
        inputs[0].cpu::<T>()?,
        inputs[1].cpu::<T>()?,
        inputs[2].cpu::<T>()?,
    );
    let (w3, b3, w4, b4) = (
        inputs[3].cpu::<T>()?,
        inputs[4].cpu::<T>()?,
        inputs[5].cpu::<T>()?,
        inputs[6].cpu::<T>()?,
    );
    let m = mask.cpu::<T>()?;
    let slope = T::from_f64(slope);
    let nx = d.x();
    let work = d.b * d.p * d.h2 * (d.h * 2);
    let per_jet = super::map_range(d.b, work, |j| {
        // the global and time columns once per jet: base = b₃ + W₃[:, H:]·[g, τ]
        let mut base = b3.to_vec();
        for (i, bv) in base.iter_mut().enumerate() {
            let row = &w3[i * nx + d.h..(i + 1) * nx];
            let (rg, rt) = row.split_at(d.g);
            for (wv, xv) in rg.iter().zip(&g[j * d.g..(j + 1) * d.g]) {
                *bv += *wv * *xv;
            }
            for (wv, xv) in rt.iter().zip(&tau[j * d.t..(j + 1) * d.t]) {
                *bv += *wv * *xv;
            }
        }
        let mut y = vec![T::zero(); d.p * d.h];
        let mut a = vec![T::zero(); d.p * d.h2];
        let mut c = vec![T::zero(); d.p * d.h];
        let mut z = vec![T::zero(); d.h2];
        for pp in 0..d.p {
            let mv = m[j * d.p + pp];
            if mv == T::zero() {
                continue;
            }
            let hp = &h[(j * d.p + pp) * d.h..(j * d.p + pp + 1) * d.h];
            let ap = &mut a[pp * d.h2..(pp + 1) * d.h2];
            for i in 0..d.h2 {
                let row = &w3[i * nx..i * nx + d.h];
                let mut sum = base[i];
                for (wv, xv) in row.iter().zip(hp) {
                    sum += *wv * *xv;
                }
                ap[i] = sum;
                z[i] = act(sum, slope);
            }
            let cp = &mut c[pp * d.h..(pp + 1) * d.h];
            affine(w4, b4, &z, cp);
            for k in 0..d.h {
                cp[k] += hp[k];
                y[pp * d.h + k] = mv * act(cp[k], slope);
            }
        }
        (y, a, c)
    });
    let (mut ys, mut as_, mut cs) = (Vec::new(), Vec::new(), Vec::new());
    for (y, a, c) in per_jet {
        ys.extend(y);
        as_.extend(a);
        cs.extend(c);
    }
    Ok(CustomForward {
        value: Tensor::from_cpu_vec(ys, &[d.b, d.p, d.h])?,
        saved: Box::new(ParticleSaved {
            a: Tensor::from_cpu_vec(as_, &[d.b, d.p, d.h2])?,
            c: Tensor::from_cpu_vec(cs, &[d.b, d.p, d.h])?,
        }),
    })
}

/// The particle update's backward on the CPU: gradients of h, g, τ, W₃, b₃, W₄, b₄.
fn particle_backward_cpu<T: Real>(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: ParticleDims,
    slope: f64,
    saved: &ParticleSaved,
    gy: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let (h, g, tau) = (
        inputs[0].cpu::<T>()?,
        inputs[1].cpu::<T>()?,
        inputs[2].cpu::<T>()?,
    );
    let (w3, w4) = (inputs[3].cpu::<T>()?, inputs[5].cpu::<T>()?);
    let m = mask.cpu::<T>()?;
    let (a, c) = (saved.a.cpu::<T>()?, saved.c.cpu::<T>()?);
    let gy = gy.cpu::<T>()?;
    let slope = T::from_f64(slope);
    let nx = d.x();
    let tasks = d.b.div_ceil(JETS_PER_TASK);
    let work = d.b * d.p * d.h2 * d.h * 4;
    let parts = super::map_range(tasks, work, |task| {
        let jets = task * JETS_PER_TASK..((task + 1) * JETS_PER_TASK).min(d.b);
        let nj = jets.len();
        let mut gh = vec![T::zero(); nj * d.p * d.h];
        let mut gg = vec![T::zero(); nj * d.g];
        let mut gt = vec![T::zero(); nj * d.t];
        let mut gw3 = vec![T::zero(); d.h2 * nx];
        let mut gb3 = vec![T::zero(); d.h2];
        let mut gw4 = vec![T::zero(); d.h * d.h2];
        let mut gb4 = vec![T::zero(); d.h];
        let mut gc = vec![T::zero(); d.h];
        let mut z = vec![T::zero(); d.h2];
        let mut ga = vec![T::zero(); d.h2];
        for (k, j) in jets.enumerate() {
            // Σ_p ∂L/∂a_p, for the global and time columns (applied once per jet)
            let mut ga_sum = vec![T::zero(); d.h2];
            for pp in 0..d.p {
                let mv = m[j * d.p + pp];
                if mv == T::zero() {
                    continue;
                }
                let row = (j * d.p + pp) * d.h;
                let ap = &a[(j * d.p + pp) * d.h2..(j * d.p + pp + 1) * d.h2];
                for q in 0..d.h {
                    gc[q] = gy[row + q] * mv * act_grad(c[row + q], slope);
                }
                for (zi, &av) in z.iter_mut().zip(ap) {
                    *zi = act(av, slope);
                }
                ga.iter_mut().for_each(|v| *v = T::zero());
                for q in 0..d.h {
                    gb4[q] += gc[q];
                    let wrow = &w4[q * d.h2..(q + 1) * d.h2];
                    let grow = &mut gw4[q * d.h2..(q + 1) * d.h2];
                    for i in 0..d.h2 {
                        grow[i] += gc[q] * z[i];
                        ga[i] += wrow[i] * gc[q];
                    }
                }
                let hp = &h[row..row + d.h];
                let ghp = &mut gh[(k * d.p + pp) * d.h..(k * d.p + pp + 1) * d.h];
                ghp.copy_from_slice(&gc);
                for i in 0..d.h2 {
                    ga[i] = ga[i] * act_grad(ap[i], slope);
                    gb3[i] += ga[i];
                    ga_sum[i] += ga[i];
                    let wrow = &w3[i * nx..i * nx + d.h];
                    let grow = &mut gw3[i * nx..i * nx + d.h];
                    for q in 0..d.h {
                        grow[q] += ga[i] * hp[q];
                        ghp[q] += wrow[q] * ga[i];
                    }
                }
            }
            let (gj, tj) = (&g[j * d.g..(j + 1) * d.g], &tau[j * d.t..(j + 1) * d.t]);
            for i in 0..d.h2 {
                let s = ga_sum[i];
                let wrow = &w3[i * nx + d.h..(i + 1) * nx];
                let grow = &mut gw3[i * nx + d.h..(i + 1) * nx];
                for q in 0..d.g {
                    grow[q] += s * gj[q];
                    gg[k * d.g + q] += wrow[q] * s;
                }
                for q in 0..d.t {
                    grow[d.g + q] += s * tj[q];
                    gt[k * d.t + q] += wrow[d.g + q] * s;
                }
            }
        }
        (gh, gg, gt, gw3, gb3, gw4, gb4)
    });
    let (mut gh, mut gg, mut gt) = (Vec::new(), Vec::new(), Vec::new());
    let mut gw3 = vec![T::zero(); d.h2 * nx];
    let mut gb3 = vec![T::zero(); d.h2];
    let mut gw4 = vec![T::zero(); d.h * d.h2];
    let mut gb4 = vec![T::zero(); d.h];
    for (h_, g_, t_, w3_, b3_, w4_, b4_) in parts {
        gh.extend(h_);
        gg.extend(g_);
        gt.extend(t_);
        for (acc, v) in [
            (&mut gw3, w3_),
            (&mut gb3, b3_),
            (&mut gw4, w4_),
            (&mut gb4, b4_),
        ] {
            acc.iter_mut().zip(v).for_each(|(x, y)| *x += y);
        }
    }
    Ok(vec![
        Some(Tensor::from_cpu_vec(gh, &[d.b, d.p, d.h])?),
        Some(Tensor::from_cpu_vec(gg, &[d.b, d.g])?),
        Some(Tensor::from_cpu_vec(gt, &[d.b, d.t])?),
        Some(Tensor::from_cpu_vec(gw3, &[d.h2, nx])?),
        Some(Tensor::from_cpu_vec(gb3, &[d.h2])?),
        Some(Tensor::from_cpu_vec(gw4, &[d.h, d.h2])?),
        Some(Tensor::from_cpu_vec(gb4, &[d.h])?),
    ])
}

/// The fused particle update (module doc) as a tape op.
struct EpicParticleOp {
    mask: Tensor,
    slope: f64,
}

impl CustomOp for EpicParticleOp {
    fn name(&self) -> &'static str {
        "epic_particle"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = ParticleDims::of(inputs, &self.mask)?;
        match same_dtype("epic_particle", inputs, &self.mask)? {
            DType::F32 => particle_forward_cpu::<f32>(inputs, &self.mask, d, self.slope),
            DType::F64 => particle_forward_cpu::<f64>(inputs, &self.mask, d, self.slope),
        }
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = ParticleDims::of(inputs, &self.mask)?;
        self.mask.same_place("epic_particle", inputs[0])?;
        cuda::particle_forward(inputs, &self.mask, d, self.slope)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let d = ParticleDims::of(inputs, &self.mask)?;
        expect_shape("epic_particle", "gradient", g.shape(), &[d.b, d.p, d.h])?;
        let s = saved_as::<ParticleSaved>(saved, "epic_particle")?;
        if inputs[0].device().is_cuda() {
            return cuda::particle_backward(inputs, &self.mask, d, self.slope, s, g);
        }
        match same_dtype("epic_particle", inputs, &self.mask)? {
            DType::F32 => particle_backward_cpu::<f32>(inputs, &self.mask, d, self.slope, s, g),
            DType::F64 => particle_backward_cpu::<f64>(inputs, &self.mask, d, self.slope, s, g),
        }
    }
}

/// The weights of one MLP of an EPiC update: (W_in, b_in, W_out, b_out).
pub type EpicWeights<'a> = [&'a Var; 4];

/// The fused global update g′ `[B, G]` of particles `h [B, P, H]` with `mask [B, P]`, the
/// global vector `g [B, G]` and extra inputs `e [B, E]` (module doc); CPU (f32, f64) or
/// CUDA (f32).
pub fn epic_global(
    h: &Var,
    g: &Var,
    e: &Var,
    w: EpicWeights<'_>,
    mask: &Tensor,
    sum_scale: f64,
    slope: f64,
) -> Result<Var> {
    let op = EpicGlobalOp {
        mask: mask.clone(),
        sum_scale,
        slope,
    };
    Var::custom(op, &[h, g, e, w[0], w[1], w[2], w[3]])
}

/// The fused particle update h′ `[B, P, H]` of `h [B, P, H]` with `mask [B, P]`, the new
/// global vector `g [B, G]` and the time embedding `tau [B, T]` (module doc); CPU (f32,
/// f64) or CUDA (f32).
pub fn epic_particle(
    h: &Var,
    g: &Var,
    tau: &Var,
    w: EpicWeights<'_>,
    mask: &Tensor,
    slope: f64,
) -> Result<Var> {
    let op = EpicParticleOp {
        mask: mask.clone(),
        slope,
    };
    Var::custom(op, &[h, g, tau, w[0], w[1], w[2], w[3]])
}
