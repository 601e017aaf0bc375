//! The CPU twin of the fused EPiC updates (f32 and f64). The real particles of the whole
//! batch are gathered into one matrix, so the particle MLP is a few large GEMMs
//! (`ops::matmul`'s f32 GEMM, threaded) on the real rows only; the global and time columns of W₃ are
//! applied once per jet; the global MLP is a GEMM over the jets. Saved pre-activations keep
//! the `[B, P, ·]` layout (zeros on padded particles), as the CUDA kernels write them.

use super::{GlobalDims, GlobalSaved, ParticleDims, ParticleSaved};
use crate::autograd::CustomForward;
use crate::error::Result;
use crate::ops::matmul::gemm_strided as mm;
use crate::ops::{leaky_relu, leaky_relu_grad};
use crate::real::Real;
use crate::tensor::Tensor;

/// Σ over the rows of `x [rows, n]`.
fn column_sums<T: Real>(x: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n];
    for row in x.chunks_exact(n.max(1)) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
    }
    out
}

/// The global update's forward: Q `[B, Q]` by masked pooling, A = Q W₁ᵀ + b₁,
/// C = σ(A) W₂ᵀ + b₂ + g, g′ = σ(C).
pub(super) fn global_forward<T: Real>(
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
    let mut q = vec![T::zero(); d.b * nq];
    for j in 0..d.b {
        let qj = &mut q[j * nq..(j + 1) * nq];
        let mut cnt = T::zero();
        for pp in 0..d.p {
            let mv = m[j * d.p + pp];
            if mv == T::zero() {
                continue;
            }
            cnt += mv;
            let row = &h[(j * d.p + pp) * d.h..(j * d.p + pp + 1) * d.h];
            qj[..d.h]
                .iter_mut()
                .zip(row)
                .for_each(|(acc, &v)| *acc += mv * v);
        }
        let cnt = if cnt > T::one() { cnt } else { T::one() };
        for k in 0..d.h {
            let sum = qj[k];
            qj[k] = sum / cnt;
            qj[d.h + k] = s * sum;
        }
        qj[2 * d.h..2 * d.h + d.g].copy_from_slice(&g[j * d.g..(j + 1) * d.g]);
        qj[2 * d.h + d.g..].copy_from_slice(&e[j * d.e..(j + 1) * d.e]);
    }
    let mut a = vec![T::zero(); d.b * d.h1];
    mm(d.b, nq, d.h1, (&q, nq, 1), (w1, 1, nq), &mut a, d.h1);
    for row in a.chunks_exact_mut(d.h1.max(1)) {
        row.iter_mut().zip(b1).for_each(|(v, &bv)| *v += bv);
    }
    let z: Vec<T> = a.iter().map(|&v| leaky_relu(v, slope)).collect();
    let mut c = vec![T::zero(); d.b * d.g];
    mm(d.b, d.h1, d.g, (&z, d.h1, 1), (w2, 1, d.h1), &mut c, d.g);
    for (k, v) in c.iter_mut().enumerate() {
        *v += b2[k % d.g] + g[k];
    }
    let y: Vec<T> = c.iter().map(|&v| leaky_relu(v, slope)).collect();
    Ok(CustomForward {
        value: Tensor::from_cpu_vec(y, &[d.b, d.g])?,
        saved: Box::new(GlobalSaved {
            q: Tensor::from_cpu_vec(q, &[d.b, nq])?,
            a: Tensor::from_cpu_vec(a, &[d.b, d.h1])?,
            c: Tensor::from_cpu_vec(c, &[d.b, d.g])?,
        }),
    })
}

/// The global update's backward: GC = ∂L/∂g′ ⊙ σ′(C), ∂W₂ = GCᵀσ(A), GA = GC W₂ ⊙ σ′(A),
/// ∂W₁ = GAᵀQ, GQ = GA W₁ → ∂h (through the pooling), ∂g (+ GC, the residual), ∂e.
pub(super) fn global_backward<T: Real>(
    inputs: &[&Tensor],
    mask: &Tensor,
    d: GlobalDims,
    (sum_scale, slope): (f64, f64),
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
    let gc: Vec<T> = gy
        .iter()
        .zip(c)
        .map(|(&gv, &cv)| gv * leaky_relu_grad(cv, slope))
        .collect();
    let z: Vec<T> = a.iter().map(|&v| leaky_relu(v, slope)).collect();
    let mut gw2 = vec![T::zero(); d.g * d.h1];
    mm(d.g, d.b, d.h1, (&gc, 1, d.g), (&z, d.h1, 1), &mut gw2, d.h1);
    let gb2 = column_sums(&gc, d.g);
    let mut ga = vec![T::zero(); d.b * d.h1];
    mm(d.b, d.g, d.h1, (&gc, d.g, 1), (w2, d.h1, 1), &mut ga, d.h1);
    ga.iter_mut()
        .zip(a)
        .for_each(|(v, &av)| *v = *v * leaky_relu_grad(av, slope));
    let mut gw1 = vec![T::zero(); d.h1 * nq];
    mm(d.h1, d.b, nq, (&ga, 1, d.h1), (q, nq, 1), &mut gw1, nq);
    let gb1 = column_sums(&ga, d.h1);
    let mut gq = vec![T::zero(); d.b * nq];
    mm(d.b, d.h1, nq, (&ga, d.h1, 1), (w1, nq, 1), &mut gq, nq);
    let mut gh = vec![T::zero(); d.b * d.p * d.h];
    let mut gg = vec![T::zero(); d.b * d.g];
    let mut ge = vec![T::zero(); d.b * d.e];
    for j in 0..d.b {
        let gqj = &gq[j * nq..(j + 1) * nq];
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
            let row = &mut gh[(j * d.p + pp) * d.h..(j * d.p + pp + 1) * d.h];
            for (k, v) in row.iter_mut().enumerate() {
                *v = mv * (gqj[k] / cnt + s * gqj[d.h + k]);
            }
        }
        for i in 0..d.g {
            gg[j * d.g + i] = gc[j * d.g + i] + gqj[2 * d.h + i];
        }
        ge[j * d.e..(j + 1) * d.e].copy_from_slice(&gqj[2 * d.h + d.g..]);
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

/// The rows `(jet, particle)` of the real particles, in order.
fn real_rows<T: Real>(m: &[T], p: usize) -> Vec<(usize, usize)> {
    (0..m.len())
        .filter(|&k| m[k] != T::zero())
        .map(|k| (k / p, k % p))
        .collect()
}

/// [g, τ] per jet `[B, G + T]`.
fn global_time<T: Real>(g: &[T], tau: &[T], d: ParticleDims) -> Vec<T> {
    (0..d.b)
        .flat_map(|j| {
            g[j * d.g..(j + 1) * d.g]
                .iter()
                .chain(&tau[j * d.t..(j + 1) * d.t])
                .copied()
        })
        .collect()
}

/// The particle update's forward on the real rows R: base = [g, τ] W₃[:, H:]ᵀ + b₃ per jet,
/// A = H_R W₃[:, :H]ᵀ + base, C = σ(A) W₄ᵀ + b₄ + H_R, h′ = m σ(C).
pub(super) fn particle_forward<T: Real>(
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
    let (nx, gt) = (d.x(), d.g + d.t);
    let rows = real_rows(m, d.p);
    let n = rows.len();
    let hr: Vec<T> = rows
        .iter()
        .flat_map(|&(j, pp)| {
            h[(j * d.p + pp) * d.h..(j * d.p + pp + 1) * d.h]
                .iter()
                .copied()
        })
        .collect();
    let xg = global_time(g, tau, d);
    let mut base = vec![T::zero(); d.b * d.h2];
    if gt > 0 {
        mm(
            d.b,
            gt,
            d.h2,
            (&xg, gt, 1),
            (&w3[d.h..], 1, nx),
            &mut base,
            d.h2,
        );
    }
    for row in base.chunks_exact_mut(d.h2.max(1)) {
        row.iter_mut().zip(b3).for_each(|(v, &bv)| *v += bv);
    }
    let mut ar = vec![T::zero(); n * d.h2];
    mm(n, d.h, d.h2, (&hr, d.h, 1), (w3, 1, nx), &mut ar, d.h2);
    for (r, &(j, _)) in rows.iter().enumerate() {
        let bj = &base[j * d.h2..(j + 1) * d.h2];
        ar[r * d.h2..(r + 1) * d.h2]
            .iter_mut()
            .zip(bj)
            .for_each(|(v, &bv)| *v += bv);
    }
    let zr: Vec<T> = ar.iter().map(|&v| leaky_relu(v, slope)).collect();
    let mut cr = vec![T::zero(); n * d.h];
    mm(n, d.h2, d.h, (&zr, d.h2, 1), (w4, 1, d.h2), &mut cr, d.h);
    let mut y = vec![T::zero(); d.b * d.p * d.h];
    let mut a = vec![T::zero(); d.b * d.p * d.h2];
    let mut c = vec![T::zero(); d.b * d.p * d.h];
    for (r, &(j, pp)) in rows.iter().enumerate() {
        let full = j * d.p + pp;
        let mv = m[full];
        for k in 0..d.h {
            let v = cr[r * d.h + k] + b4[k] + hr[r * d.h + k];
            c[full * d.h + k] = v;
            y[full * d.h + k] = mv * leaky_relu(v, slope);
        }
        a[full * d.h2..(full + 1) * d.h2].copy_from_slice(&ar[r * d.h2..(r + 1) * d.h2]);
    }
    Ok(CustomForward {
        value: Tensor::from_cpu_vec(y, &[d.b, d.p, d.h])?,
        saved: Box::new(ParticleSaved {
            a: Tensor::from_cpu_vec(a, &[d.b, d.p, d.h2])?,
            c: Tensor::from_cpu_vec(c, &[d.b, d.p, d.h])?,
        }),
    })
}

/// The particle update's backward on the real rows: GC = ∂L/∂h′ ⊙ m σ′(C), ∂W₄ = GCᵀσ(A),
/// GA = GC W₄ ⊙ σ′(A), ∂W₃[:, :H] = GAᵀH_R, ∂W₃[:, H:] = (Σ_p GA)ᵀ[g, τ],
/// ∂h = GC + GA W₃[:, :H], ∂[g, τ] = (Σ_p GA) W₃[:, H:].
pub(super) fn particle_backward<T: Real>(
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
    let (nx, gt) = (d.x(), d.g + d.t);
    let rows = real_rows(m, d.p);
    let n = rows.len();
    let mut hr = Vec::with_capacity(n * d.h);
    let mut gcr = Vec::with_capacity(n * d.h);
    let mut ar = Vec::with_capacity(n * d.h2);
    for &(j, pp) in &rows {
        let full = j * d.p + pp;
        let mv = m[full];
        hr.extend_from_slice(&h[full * d.h..(full + 1) * d.h]);
        ar.extend_from_slice(&a[full * d.h2..(full + 1) * d.h2]);
        for k in 0..d.h {
            gcr.push(gy[full * d.h + k] * mv * leaky_relu_grad(c[full * d.h + k], slope));
        }
    }
    let zr: Vec<T> = ar.iter().map(|&v| leaky_relu(v, slope)).collect();
    let mut gw4 = vec![T::zero(); d.h * d.h2];
    mm(d.h, n, d.h2, (&gcr, 1, d.h), (&zr, d.h2, 1), &mut gw4, d.h2);
    let gb4 = column_sums(&gcr, d.h);
    let mut gar = vec![T::zero(); n * d.h2];
    mm(n, d.h, d.h2, (&gcr, d.h, 1), (w4, d.h2, 1), &mut gar, d.h2);
    gar.iter_mut()
        .zip(&ar)
        .for_each(|(v, &av)| *v = *v * leaky_relu_grad(av, slope));
    let gb3 = column_sums(&gar, d.h2);
    let mut gw3 = vec![T::zero(); d.h2 * nx];
    mm(d.h2, n, d.h, (&gar, 1, d.h2), (&hr, d.h, 1), &mut gw3, nx);
    let mut ga_sum = vec![T::zero(); d.b * d.h2];
    for (r, &(j, _)) in rows.iter().enumerate() {
        ga_sum[j * d.h2..(j + 1) * d.h2]
            .iter_mut()
            .zip(&gar[r * d.h2..(r + 1) * d.h2])
            .for_each(|(s, &v)| *s += v);
    }
    let xg = global_time(g, tau, d);
    let mut ggt = vec![T::zero(); d.b * gt];
    if gt > 0 {
        mm(
            d.h2,
            d.b,
            gt,
            (&ga_sum, 1, d.h2),
            (&xg, gt, 1),
            &mut gw3[d.h..],
            nx,
        );
        mm(
            d.b,
            d.h2,
            gt,
            (&ga_sum, d.h2, 1),
            (&w3[d.h..], nx, 1),
            &mut ggt,
            gt,
        );
    }
    let mut ghr = vec![T::zero(); n * d.h];
    mm(n, d.h2, d.h, (&gar, d.h2, 1), (w3, nx, 1), &mut ghr, d.h);
    let mut gh = vec![T::zero(); d.b * d.p * d.h];
    for (r, &(j, pp)) in rows.iter().enumerate() {
        let full = j * d.p + pp;
        for k in 0..d.h {
            gh[full * d.h + k] = gcr[r * d.h + k] + ghr[r * d.h + k];
        }
    }
    let mut gg = Vec::with_capacity(d.b * d.g);
    let mut gt_out = Vec::with_capacity(d.b * d.t);
    for row in ggt.chunks_exact(gt.max(1)).take(d.b) {
        gg.extend_from_slice(&row[..d.g]);
        gt_out.extend_from_slice(&row[d.g..]);
    }
    Ok(vec![
        Some(Tensor::from_cpu_vec(gh, &[d.b, d.p, d.h])?),
        Some(Tensor::from_cpu_vec(gg, &[d.b, d.g])?),
        Some(Tensor::from_cpu_vec(gt_out, &[d.b, d.t])?),
        Some(Tensor::from_cpu_vec(gw3, &[d.h2, nx])?),
        Some(Tensor::from_cpu_vec(gb3, &[d.h2])?),
        Some(Tensor::from_cpu_vec(gw4, &[d.h, d.h2])?),
        Some(Tensor::from_cpu_vec(gb4, &[d.h])?),
    ])
}
