//! Fused message passing on the fully connected particle graph (MPGAN's hot path), as two
//! tape ops that never build the pair inputs `[x_i, x_j]` by broadcasting and concatenating:
//!
//! * **edge input** — the first layer of the edge MLP on every ordered pair (i, j), with
//!   W = [W_i | W_j] split by columns so the per-node products are computed once:
//!   `e_bij = φ(a_bi + c_bj)` with `a = x W_iᵀ + bias`, `c = x W_jᵀ` (`[B, N, H]` each) and
//!   φ = LeakyReLU(α) (α = 1: identity). Output `[B, N, N, H]`.
//!   Backward: s_bij = φ′(a_bi + c_bj) (1 where the pre-activation is > 0, else α);
//!   ∂a_bi = Σ_j s_bij ⊙ g_bij, ∂c_bj = Σ_i s_bij ⊙ g_bij.
//! * **aggregate** — the masked sum of messages over senders: `m [B, N, M, H]`,
//!   `mask [B, M]` (non-zero = a real particle) → `out_bi = Σ_{j: mask_bj ≠ 0} m_bij`, `[B, N, H]`.
//!   Padded senders are *skipped*, not multiplied by 0, so a padded particle holding ±∞ or NaN
//!   still cannot reach a real one. Backward: ∂m_bij = [mask_bj ≠ 0] g_bi.
//!   With N = 1 it is the masked sum pooling over particles (`[B, 1, M, H] → [B, 1, H]`).
//!
//! Both are twice (and any times) differentiable: their `backward_graph` records the same
//! gradients in differentiable ops (φ′ is piecewise constant, so the slopes enter as a
//! constant `[B, N, N, H]` tensor), so a gradient penalty through a message-passing critic is
//! the true second-order gradient.
//!
//! CPU: one task per receiving row (b, i) (rayon), the H-long inner loops contiguous and
//! compiled for AVX2 + FMA where the CPU has them ([`crate::simd::dispatch!`]); f32 and f64.
//! CUDA (f32): `kernels/message.cu`, one thread per output element with h fastest
//! (coalesced), sums in a fixed order (deterministic, no atomics).

use std::any::Any;

use cudarc::driver::PushKernelArg;

use crate::autograd::{CustomForward, CustomOp, Var};
use crate::device::cuda::grid_for;
use crate::error::{Error, Result};
use crate::ops::{expect_shape, n_u32, PAR_MIN};
use crate::real::Real;
use crate::tensor::{Storage, Tensor};
use crate::with_real;

/// What [`edge_input`] writes per pair: the activation or its slope φ′.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeMode {
    /// φ(a_bi + c_bj).
    Value,
    /// φ′(a_bi + c_bj) ∈ {α, 1}.
    Slope,
}

fn dims3(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize, usize)> {
    match t.shape() {
        &[b, n, h] => Ok((b, n, h)),
        s => Err(Error::shape(
            op,
            format!("{what} must be [B, N, H], got {s:?}"),
        )),
    }
}

fn check_alpha(alpha: f64) -> Result<()> {
    if alpha.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "edge_input: slope α must be finite, got {alpha}"
        )))
    }
}

/// `e [B, N, N, H]` with e_bij = φ(a_bi + c_bj) (or φ′ for [`EdgeMode::Slope`]), from
/// `a`, `c [B, N, H]`; see the module doc.
pub fn edge_input(a: &Tensor, c: &Tensor, alpha: f64, mode: EdgeMode) -> Result<Tensor> {
    let (b, n, h) = dims3("edge_input", "a", a)?;
    expect_shape("edge_input", "c", c.shape(), a.shape())?;
    a.same_place("edge_input", c)?;
    check_alpha(alpha)?;
    let out_shape = [b, n, n, h];
    if let Storage::Cuda(buf) = a.storage() {
        let be = buf.backend.clone();
        let total = b * n * n * h;
        let mut out = be.alloc::<f32>(total)?;
        if total > 0 {
            let f = be.function("message", "edge_input_fwd")?;
            let (nu, hu, tu) = (
                n_u32("edge_input", n)?,
                n_u32("edge_input", h)?,
                n_u32("edge_input", total)?,
            );
            let (al, slope) = (alpha as f32, (mode == EdgeMode::Slope) as i32);
            let mut lb = be.stream.launch_builder(&f);
            lb.arg(&tu)
                .arg(&nu)
                .arg(&hu)
                .arg(&a.cuda()?.slice)
                .arg(&c.cuda()?.slice)
                .arg(&al)
                .arg(&slope)
                .arg(&mut out);
            // SAFETY: a, c hold B·N·H floats, out B·N·N·H; one thread per output element.
            be.check_launch("edge_input_fwd", unsafe { lb.launch(grid_for(total)) })?;
        }
        return Ok(Tensor::from_cuda(out, be, &out_shape));
    }
    with_real!(a, T => {
        let (av, cv) = (a.cpu::<T>()?, c.cpu::<T>()?);
        let mut out = vec![T::zero(); b * n * n * h];
        let al = T::from_f64(alpha);
        let slope = mode == EdgeMode::Slope;
        rows(&mut out, n * h, |row, o| {
            let bb = row / n.max(1);
            let ar = &av[row * h..(row + 1) * h];
            for j in 0..n {
                let cr = &cv[(bb * n + j) * h..(bb * n + j + 1) * h];
                edge_row(crate::simd::isa(), ar, cr, al, slope, &mut o[j * h..(j + 1) * h]);
            }
        });
        Tensor::from_cpu_vec(out, &out_shape)
    })
}

/// `f(row, chunk)` over `chunk`-long rows of `out`, in parallel when the work is large.
fn rows<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    use rayon::prelude::*;
    if chunk == 0 {
        return;
    }
    if out.len() <= PAR_MIN {
        out.chunks_mut(chunk).enumerate().for_each(|(r, c)| f(r, c));
    } else {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(r, c)| f(r, c));
    }
}

crate::simd::dispatch! {
    /// One pair's H values: `o = φ(a + c)` (or φ′).
    fn edge_row<T: Real>(isa: Isa, a: &[T], c: &[T], alpha: T, slope: bool, o: &mut [T]) = edge_row_plain;
}

#[inline(always)]
fn edge_row_plain<T: Real>(a: &[T], c: &[T], alpha: T, slope: bool, o: &mut [T]) {
    let (zero, one) = (T::zero(), T::one());
    if slope {
        for k in 0..o.len() {
            o[k] = if a[k] + c[k] > zero { one } else { alpha };
        }
    } else {
        for k in 0..o.len() {
            let x = a[k] + c[k];
            o[k] = if x > zero { x } else { alpha * x };
        }
    }
}

crate::simd::dispatch! {
    /// `acc += φ′(a + c) ⊙ g` over one pair's H values.
    fn edge_grad_row<T: Real>(isa: Isa, a: &[T], c: &[T], g: &[T], alpha: T, acc: &mut [T]) = edge_grad_row_plain;
}

#[inline(always)]
fn edge_grad_row_plain<T: Real>(a: &[T], c: &[T], g: &[T], alpha: T, acc: &mut [T]) {
    let zero = T::zero();
    for k in 0..acc.len() {
        let s = if a[k] + c[k] > zero {
            g[k]
        } else {
            alpha * g[k]
        };
        acc[k] += s;
    }
}

/// The backward of [`edge_input`] (value mode): `(∂a, ∂c)`, each `[B, N, H]`, from
/// `g [B, N, N, H]`.
pub fn edge_input_backward(
    a: &Tensor,
    c: &Tensor,
    alpha: f64,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (b, n, h) = dims3("edge_input_backward", "a", a)?;
    expect_shape("edge_input_backward", "c", c.shape(), a.shape())?;
    expect_shape("edge_input_backward", "g", g.shape(), &[b, n, n, h])?;
    a.same_place("edge_input_backward", c)?;
    a.same_place("edge_input_backward", g)?;
    check_alpha(alpha)?;
    if let Storage::Cuda(buf) = a.storage() {
        let be = buf.backend.clone();
        let half = b * n * h;
        let mut da = be.alloc::<f32>(half)?;
        let mut dc = be.alloc::<f32>(half)?;
        if half > 0 {
            let f = be.function("message", "edge_input_grad")?;
            let (nu, hu, tu) = (
                n_u32("edge_input", n)?,
                n_u32("edge_input", h)?,
                n_u32("edge_input", 2 * half)?,
            );
            n_u32("edge_input", g.numel())?;
            let al = alpha as f32;
            let mut lb = be.stream.launch_builder(&f);
            lb.arg(&tu)
                .arg(&nu)
                .arg(&hu)
                .arg(&a.cuda()?.slice)
                .arg(&c.cuda()?.slice)
                .arg(&g.cuda()?.slice)
                .arg(&al)
                .arg(&mut da)
                .arg(&mut dc);
            // SAFETY: a, c, da, dc hold B·N·H floats, g B·N·N·H; threads cover 2·B·N·H.
            be.check_launch("edge_input_grad", unsafe { lb.launch(grid_for(2 * half)) })?;
        }
        let shape = [b, n, h];
        return Ok((
            Tensor::from_cuda(da, be.clone(), &shape),
            Tensor::from_cuda(dc, be, &shape),
        ));
    }
    with_real!(a, T => {
        let (av, cv, gv) = (a.cpu::<T>()?, c.cpu::<T>()?, g.cpu::<T>()?);
        let al = T::from_f64(alpha);
        let isa = crate::simd::isa();
        let mut da = vec![T::zero(); b * n * h];
        let mut dc = vec![T::zero(); b * n * h];
        // ∂a_bi: row (b, i) of g, summed over j
        rows(&mut da, h, |row, acc| {
            let bb = row / n.max(1);
            let ar = &av[row * h..(row + 1) * h];
            for j in 0..n {
                let cr = &cv[(bb * n + j) * h..(bb * n + j + 1) * h];
                let gr = &gv[(row * n + j) * h..(row * n + j + 1) * h];
                edge_grad_row(isa, ar, cr, gr, al, acc);
            }
        });
        // ∂c_bj: column (b, ·, j) of g, summed over i
        rows(&mut dc, h, |col, acc| {
            let (bb, j) = (col / n.max(1), col % n.max(1));
            let cr = &cv[col * h..(col + 1) * h];
            for i in 0..n {
                let ar = &av[(bb * n + i) * h..(bb * n + i + 1) * h];
                let k = ((bb * n + i) * n + j) * h;
                edge_grad_row(isa, ar, cr, &gv[k..k + h], al, acc);
            }
        });
        let shape = [b, n, h];
        Ok((Tensor::from_cpu_vec(da, &shape)?, Tensor::from_cpu_vec(dc, &shape)?))
    })
}

fn check_aggregate(m: &Tensor, mask: &Tensor) -> Result<(usize, usize, usize, usize)> {
    let &[b, n, mm, h] = m.shape() else {
        return Err(Error::shape(
            "aggregate",
            format!("messages must be [B, N, M, H], got {:?}", m.shape()),
        ));
    };
    expect_shape("aggregate", "mask", mask.shape(), &[b, mm])?;
    m.same_place("aggregate", mask)?;
    Ok((b, n, mm, h))
}

/// `out [B, N, H]`: out_bi = Σ_{j: mask_bj ≠ 0} m_bij for `m [B, N, M, H]`, `mask [B, M]`.
pub fn aggregate(m: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, n, mm, h) = check_aggregate(m, mask)?;
    let out_shape = [b, n, h];
    if let Storage::Cuda(buf) = m.storage() {
        let be = buf.backend.clone();
        let total = b * n * h;
        let mut out = be.alloc::<f32>(total)?;
        if total > 0 {
            let f = be.function("message", "aggregate_fwd")?;
            let (nu, mu, hu, tu) = (
                n_u32("aggregate", n)?,
                n_u32("aggregate", mm)?,
                n_u32("aggregate", h)?,
                n_u32("aggregate", total)?,
            );
            n_u32("aggregate", m.numel())?;
            let mut lb = be.stream.launch_builder(&f);
            lb.arg(&tu)
                .arg(&nu)
                .arg(&mu)
                .arg(&hu)
                .arg(&m.cuda()?.slice)
                .arg(&mask.cuda()?.slice)
                .arg(&mut out);
            // SAFETY: m holds B·N·M·H floats, mask B·M, out B·N·H (one thread each).
            be.check_launch("aggregate_fwd", unsafe { lb.launch(grid_for(total)) })?;
        }
        return Ok(Tensor::from_cuda(out, be, &out_shape));
    }
    with_real!(m, T => {
        let mv = m.cpu::<T>()?;
        let valid: Vec<bool> = mask.to_vec_f64()?.iter().map(|&v| v != 0.0).collect();
        let mut out = vec![T::zero(); b * n * h];
        let isa = crate::simd::isa();
        rows(&mut out, h, |row, acc| {
            let bb = row / n.max(1);
            for j in 0..mm {
                if valid[bb * mm + j] {
                    let k = (row * mm + j) * h;
                    add_row(isa, &mv[k..k + h], acc);
                }
            }
        });
        Tensor::from_cpu_vec(out, &out_shape)
    })
}

crate::simd::dispatch! {
    /// `acc += x`.
    fn add_row<T: Real>(isa: Isa, x: &[T], acc: &mut [T]) = add_row_plain;
}

#[inline(always)]
fn add_row_plain<T: Real>(x: &[T], acc: &mut [T]) {
    for k in 0..acc.len() {
        acc[k] += x[k];
    }
}

/// The backward of [`aggregate`]: `∂m [B, N, M, H]`, ∂m_bij = [mask_bj ≠ 0] g_bi, from
/// `g [B, N, H]`.
pub fn aggregate_backward(g: &Tensor, mask: &Tensor, n_senders: usize) -> Result<Tensor> {
    let (b, n, h) = dims3("aggregate_backward", "g", g)?;
    expect_shape("aggregate_backward", "mask", mask.shape(), &[b, n_senders])?;
    g.same_place("aggregate_backward", mask)?;
    let mm = n_senders;
    let out_shape = [b, n, mm, h];
    if let Storage::Cuda(buf) = g.storage() {
        let be = buf.backend.clone();
        let total = b * n * mm * h;
        let mut out = be.alloc::<f32>(total)?;
        if total > 0 {
            let f = be.function("message", "aggregate_grad")?;
            let (nu, mu, hu, tu) = (
                n_u32("aggregate", n)?,
                n_u32("aggregate", mm)?,
                n_u32("aggregate", h)?,
                n_u32("aggregate", total)?,
            );
            let mut lb = be.stream.launch_builder(&f);
            lb.arg(&tu)
                .arg(&nu)
                .arg(&mu)
                .arg(&hu)
                .arg(&g.cuda()?.slice)
                .arg(&mask.cuda()?.slice)
                .arg(&mut out);
            // SAFETY: g holds B·N·H floats, mask B·M, out B·N·M·H (one thread each).
            be.check_launch("aggregate_grad", unsafe { lb.launch(grid_for(total)) })?;
        }
        return Ok(Tensor::from_cuda(out, be, &out_shape));
    }
    with_real!(g, T => {
        let gv = g.cpu::<T>()?;
        let valid: Vec<bool> = mask.to_vec_f64()?.iter().map(|&v| v != 0.0).collect();
        let mut out = vec![T::zero(); b * n * mm * h];
        rows(&mut out, mm * h, |row, o| {
            let bb = row / n.max(1);
            let gr = &gv[row * h..(row + 1) * h];
            for j in 0..mm {
                if valid[bb * mm + j] {
                    o[j * h..(j + 1) * h].copy_from_slice(gr);
                }
            }
        });
        Tensor::from_cpu_vec(out, &out_shape)
    })
}

/// The tape op of [`edge_input`] (value mode).
struct EdgeInputOp {
    alpha: f64,
}

impl CustomOp for EdgeInputOp {
    fn name(&self) -> &'static str {
        "edge_input"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        Ok(CustomForward::new(edge_input(
            inputs[0],
            inputs[1],
            self.alpha,
            EdgeMode::Value,
        )?))
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        self.cpu_forward(inputs)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        _saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let (da, dc) = edge_input_backward(inputs[0], inputs[1], self.alpha, g)?;
        Ok(vec![Some(da), Some(dc)])
    }
    fn backward_graph(
        &self,
        inputs: &[Var],
        _saved: &dyn Any,
        _output: &Var,
        g: &Var,
        _needs: &[bool],
    ) -> Option<Result<Vec<Option<Var>>>> {
        Some((|| {
            let slopes = edge_input(
                inputs[0].value(),
                inputs[1].value(),
                self.alpha,
                EdgeMode::Slope,
            )?;
            let gs = g.mul(&g.constant(slopes))?;
            Ok(vec![Some(gs.sum(&[2], false)?), Some(gs.sum(&[1], false)?)])
        })())
    }
}

/// The tape op of [`aggregate`] (the mask is a constant).
struct AggregateOp {
    mask: Tensor,
}

impl CustomOp for AggregateOp {
    fn name(&self) -> &'static str {
        "aggregate"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        Ok(CustomForward::new(aggregate(inputs[0], &self.mask)?))
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        self.cpu_forward(inputs)
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        _saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let senders = inputs[0].shape()[2];
        Ok(vec![Some(aggregate_backward(g, &self.mask, senders)?)])
    }
    fn backward_graph(
        &self,
        inputs: &[Var],
        _saved: &dyn Any,
        _output: &Var,
        g: &Var,
        _needs: &[bool],
    ) -> Option<Result<Vec<Option<Var>>>> {
        Some((|| {
            let &[b, n, mm, h] = inputs[0].shape() else {
                return Err(Error::invalid("internal: aggregate input is not 4-d"));
            };
            let valid: Vec<f32> = self
                .mask
                .to_vec_f64()?
                .iter()
                .map(|&v| (v != 0.0) as u8 as f32)
                .collect();
            let valid = Tensor::from_slice(&valid, &[b, 1, mm, 1], g.value().device())?
                .to_dtype(g.value().dtype())?;
            let spread = g.reshape(&[b, n, 1, h])?.mul(&g.constant(valid))?;
            Ok(vec![Some(spread)])
        })())
    }
}

impl Var {
    /// Edge-MLP first layer on all pairs: `self = a [B, N, H]` (receiver part, bias
    /// included), `c [B, N, H]` (sender part) → `φ_α(a_i + c_j)` `[B, N, N, H]`; see the module
    /// doc. Differentiable to any order.
    pub fn edge_input(&self, c: &Var, alpha: f64) -> Result<Var> {
        Var::custom(EdgeInputOp { alpha }, &[self, c])
    }

    /// Masked sum over senders: `self = m [B, N, M, H]`, `mask [B, M]` → `[B, N, H]`; padded
    /// senders are skipped. Differentiable to any order.
    pub fn aggregate(&self, mask: &Tensor) -> Result<Var> {
        check_aggregate(self.value(), mask)?;
        Var::custom(AggregateOp { mask: mask.clone() }, &[self])
    }
}
