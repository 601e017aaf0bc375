//! Exact log-likelihoods of a continuous normalising flow dx/dt = v(x, t) (the
//! instantaneous change of variables, Chen et al. 2018): d log p_t(x_t)/dt = −∇·v(x_t, t),
//! so with a(1) = 0, da/dt = ∇·v, integrated from the jet x₁ at t = 1 back to t = 0:
//! ```text
//! log p₁(x₁) = log N(x₀; 0, I) + a(0)
//! ```
//! over the real particles' dimensions. The divergence is either exact — Σᵢ ∂vᵢ/∂xᵢ from
//! one vector–Jacobian product per particle feature (3P of them, input-only gradients on
//! the tape; all jets of a batch at once, since jets do not interact) — or Hutchinson's
//! estimate εᵀ(∂v/∂x)ε with a Rademacher ε (masked, fixed along the trajectory), one
//! product per evaluation, unbiased.
//!
//! [`log_prob_jets`] scores JetNet jets with a trained model, in the units of the particle
//! features: log p(x | n) (standardised density minus n·Σ_f log σ_f; conditioned on the
//! jet's own mass for the mass-conditioned model) plus log p̂(n), the training jets'
//! multiplicity frequency (−∞ for a multiplicity they never had).

use crate::autograd::{CreateGraph, Var};
use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::models::fm::checkpoint::TrainedFm;
use crate::models::fm::sampling::context_var;
use crate::nn::Ctx;
use crate::ode::{solve, SolverSettings};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// How the divergence ∇·v is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// Σᵢ ∂vᵢ/∂xᵢ, one vector–Jacobian product per particle feature.
    Exact,
    /// Hutchinson: the mean of εᵀ(∂v/∂x)ε over `probes` Rademacher vectors drawn from `seed`.
    Hutchinson { probes: usize, seed: u64 },
}

/// A velocity field on a tape: (ctx, x `[B, P, 3]`, t) → v `[B, P, 3]`.
pub type Field<'a> = dyn Fn(&Ctx, &Var, f64) -> Result<Var> + 'a;

/// Rademacher probes ±1 `[B, P, 3]` on the real particles of `mask [B, P]` (0 on padding),
/// f32 on `device`.
pub fn rademacher(rng: &mut Rng, mask: &[f32], device: Device, shape: &[usize]) -> Result<Tensor> {
    let e: Vec<f32> = (0..mask.len() * 3)
        .map(|k| {
            let s = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
            s * mask[k / 3]
        })
        .collect();
    Tensor::from_slice(&e, shape, device)
}

/// `values` as a tensor of `shape` with `like`'s dtype and device.
fn tensor_like(like: &Tensor, values: &[f32], shape: &[usize]) -> Result<Tensor> {
    let t = Tensor::from_slice(values, shape, like.device())?;
    if t.dtype() == like.dtype() {
        Ok(t)
    } else {
        t.to_dtype(like.dtype())
    }
}

/// (v, ∇·v per jet `[B]`) of `field` at `x [B, P, 3]`, time `t`, for jets with `mask`.
/// `probes` are the Hutchinson vectors (empty: the exact divergence).
pub fn divergence(
    field: &Field<'_>,
    x: &Tensor,
    t: f64,
    mask: &[f32],
    probes: &[Tensor],
) -> Result<(Tensor, Vec<f64>)> {
    let shape = x.shape().to_vec();
    if shape.len() != 3 || shape[2] != 3 || mask.len() != shape[0] * shape[1] {
        return Err(Error::shape(
            "divergence",
            format!("x {shape:?} with a mask of {} values", mask.len()),
        ));
    }
    let (b, p) = (shape[0], shape[1]);
    let ctx = Ctx::new(false, 0);
    let xv = ctx.tape.var(x.clone());
    let v = field(&ctx, &xv, t)?;
    if v.shape() != shape.as_slice() {
        return Err(Error::shape(
            "divergence",
            format!("the field returned {:?} for x {shape:?}", v.shape()),
        ));
    }
    let mut div = vec![0f64; b];
    let vjp = |cot: Tensor| -> Result<Vec<f64>> {
        let cot = if cot.dtype() == x.dtype() {
            cot
        } else {
            cot.to_dtype(x.dtype())?
        };
        let g = ctx
            .tape
            .vjp(&v, &ctx.tape.constant(cot), &[&xv], CreateGraph::No)?;
        g[0].value().to_vec_f64()
    };
    if probes.is_empty() {
        for j in 0..p {
            // particles padded in every jet have no dimensions
            if (0..b).all(|i| mask[i * p + j] == 0.0) {
                continue;
            }
            for f in 0..3 {
                let mut e = vec![0f32; b * p * 3];
                for i in 0..b {
                    e[(i * p + j) * 3 + f] = mask[i * p + j];
                }
                let g = vjp(tensor_like(x, &e, &shape)?)?;
                for (i, d) in div.iter_mut().enumerate() {
                    *d += g[(i * p + j) * 3 + f];
                }
            }
        }
    } else {
        for eps in probes {
            let g = vjp(eps.clone())?;
            let e = eps.to_vec_f64()?;
            for (i, d) in div.iter_mut().enumerate() {
                let row = i * p * 3..(i + 1) * p * 3;
                *d += g[row.clone()]
                    .iter()
                    .zip(&e[row])
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    / probes.len() as f64;
            }
        }
    }
    Ok((v.value().clone(), div))
}

/// log p₁(x₁) per jet (module doc) of jets `x1 [B, P, 3]` with `mask [B, P]` under `field`,
/// in the field's units, and the evaluations it took.
pub fn log_density(
    field: &Field<'_>,
    x1: &Tensor,
    mask: &[f32],
    estimator: Divergence,
    solver: &SolverSettings,
) -> Result<(Vec<f64>, usize)> {
    let shape = x1.shape().to_vec();
    let b = shape.first().copied().unwrap_or(0);
    let device = x1.device();
    let probes: Vec<Tensor> = match estimator {
        Divergence::Exact => vec![],
        Divergence::Hutchinson { probes, seed } => {
            if probes == 0 {
                return Err(Error::invalid("Hutchinson needs at least one probe"));
            }
            let mut rng = Rng::new(seed);
            (0..probes)
                .map(|_| rademacher(&mut rng, mask, device, &shape))
                .collect::<Result<_>>()?
        }
    };
    let a0 = tensor_like(x1, &vec![0.0; b], &[b])?;
    let mut rhs = |t: f64, y: &[Tensor]| -> Result<Vec<Tensor>> {
        let (v, div) = divergence(field, &y[0], t, mask, &probes)?;
        let div: Vec<f32> = div.iter().map(|&d| d as f32).collect();
        Ok(vec![v, tensor_like(x1, &div, &[b])?])
    };
    let sol = solve(&mut rhs, vec![x1.clone(), a0], 1.0, 0.0, solver)?;
    let x0 = sol.y[0].to_vec_f64()?;
    let a = sol.y[1].to_vec_f64()?;
    let per = x0.len() / b.max(1);
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let lp = (0..b)
        .map(|i| {
            let base: f64 = (0..per)
                .filter(|k| mask[(i * per + k) / 3] != 0.0)
                .map(|k| -0.5 * x0[i * per + k].powi(2) - half_log_2pi)
                .sum();
            base + a[i]
        })
        .collect();
    Ok((lp, sol.nfe))
}

/// Jets per likelihood solve.
const LOGP_CHUNK: usize = 256;

/// log p(jet) for every jet of `jets` under `m` (module doc), in the units of the
/// particle features.
pub fn log_prob_jets(
    m: &TrainedFm,
    jets: &JetNetData,
    estimator: Divergence,
    solver: &SolverSettings,
    device: Device,
) -> Result<Vec<f64>> {
    let p = m.particles();
    if jets.n_particles != p {
        return Err(Error::invalid(format!(
            "the model scores jets of {p} particles, these have {}",
            jets.n_particles
        )));
    }
    let s = &m.standardizer;
    let log_sigma: f64 = s.std.iter().map(|&v| (v as f64).ln()).sum();
    let train_n = &m.conditions.n;
    let pmf = |k: usize| {
        let c = train_n.iter().filter(|&&v| v as usize == k).count();
        (c as f64 / train_n.len().max(1) as f64).ln()
    };
    let masses = Conditions::of(jets, &(0..jets.n_jets).collect::<Vec<_>>()).mass;
    let mut out = Vec::with_capacity(jets.n_jets);
    for start in (0..jets.n_jets).step_by(LOGP_CHUNK) {
        let b = LOGP_CHUNK.min(jets.n_jets - start);
        let mut rows = Vec::with_capacity(b * p * 3);
        let mut mask = Vec::with_capacity(b * p);
        for i in start..start + b {
            for j in 0..p {
                let r = jets.particle(i, j);
                let real = r[3] != 0.0;
                for f in 0..3 {
                    rows.push(if real {
                        (r[f] - s.mean[f]) / s.std[f]
                    } else {
                        0.0
                    });
                }
                mask.push(f32::from(real));
            }
        }
        if let Some(k) = rows.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "jet {}: non-finite particle feature",
                start + k / (p * 3)
            )));
        }
        if m.condition.uses_pt() {
            if let Some(i) = (start..start + b).find(|&i| !(jets.jet(i)[0] > 0.0)) {
                return Err(Error::invalid(format!(
                    "a mass-pt model scores jets given their pT: jet {i} has jet pT {} \
                     (the jet features must hold it)",
                    jets.jet(i)[0]
                )));
            }
        }
        let context: Vec<f32> = (start..start + b)
            .flat_map(|i| {
                crate::models::fm::sampling::context_of(m, masses[i], jets.jet(i)[0] as f64)
            })
            .collect();
        let mask_t = Tensor::from_slice(&mask, &[b, p], device)?;
        let field = |ctx: &Ctx, x: &Var, t: f64| -> Result<Var> {
            let frame = m.net.frame(ctx, &vec![t as f32; b], &mask_t)?;
            let c = context_var(ctx, m, &context, b, device)?;
            m.net.forward(ctx, x, &frame, c.as_ref())
        };
        let x1 = Tensor::from_slice(&rows, &[b, p, 3], device)?;
        let (lp, _) = log_density(&field, &x1, &mask, estimator, solver)?;
        for (i, l) in lp.into_iter().enumerate() {
            let n_real = mask[i * p..(i + 1) * p]
                .iter()
                .filter(|&&v| v != 0.0)
                .count();
            out.push(l - n_real as f64 * log_sigma + pmf(n_real));
        }
    }
    Ok(out)
}
