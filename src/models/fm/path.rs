//! The straight (OT) probability path of flow matching (Lipman et al. 2023) and its loss:
//! ```text
//! x_t = (1 − (1 − σ_min) t)·x₀ + t·x₁,     u_t = x₁ − (1 − σ_min)·x₀
//! L   = Σ_{b,p,f} m_bp (v_θ(x_t, t)_bpf − u_bpf)² / (3 Σ_{b,p} m_bp)
//! ```
//! x₀ ~ N(0, I) noise, x₁ a (standardised) jet, t ~ U(0, 1) per jet, m the jet's mask: the
//! mean squared velocity error over the real particles' features. With σ_min = 0 this is
//! x_t = (1 − t)x₀ + t x₁ with target x₁ − x₀; σ_min > 0 keeps a width σ_min at t = 1.

use crate::autograd::Var;
use crate::error::{Error, Result};

/// (x_t, u_t) of the path for noise `x0`, jets `x1` (both `[B, P, 3]` flattened) and times
/// `t [B]`; each jet's rows are `x0.len() / t.len()` long.
pub fn interpolate(
    x0: &[f32],
    x1: &[f32],
    t: &[f32],
    sigma_min: f64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if x0.len() != x1.len() || t.is_empty() || !x0.len().is_multiple_of(t.len()) {
        return Err(Error::shape(
            "flow-matching path",
            format!(
                "noise {} / jets {} values for {} times",
                x0.len(),
                x1.len(),
                t.len()
            ),
        ));
    }
    let d = x0.len() / t.len();
    let k = (1.0 - sigma_min) as f32;
    let mut xt = Vec::with_capacity(x0.len());
    let mut u = Vec::with_capacity(x0.len());
    for (i, (a, b)) in x0.iter().zip(x1).enumerate() {
        let tt = t[i / d];
        xt.push((1.0 - k * tt) * a + tt * b);
        u.push(b - k * a);
    }
    Ok((xt, u))
}

/// The masked mean squared error of the module doc: `v`, `u` `[B, P, 3]`, `mask [B, P, 1]`
/// (constant); a scalar.
pub fn fm_loss(v: &Var, u: &Var, mask: &Var) -> Result<Var> {
    let real: f64 = mask.value().to_vec_f64()?.iter().sum();
    if real <= 0.0 {
        return Err(Error::invalid(
            "a flow-matching batch needs at least one real particle",
        ));
    }
    v.sub(u)?
        .square()?
        .mul(mask)?
        .sum_all()?
        .mul_scalar(1.0 / (3.0 * real))
}
