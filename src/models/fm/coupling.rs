//! Mini-batch optimal-transport pairing of noise and jets (OT-CFM, Tong et al. 2023;
//! Pooladian et al. 2023): instead of independent pairs (x₀, x₁), the noise rows of a batch
//! are matched to its jets by the transport plan of the cost
//! ```text
//! C_ij = Σ_{p,f} m_jp (x₀_ipf − x₁_jpf)²          (jet j's real particles only)
//! ```
//! — exactly (the assignment from our transportation simplex,
//! [`crate::metrics::emd::transport_exact`], with unit weights so the optimal vertex is a
//! permutation) or through an entropic plan (log-domain Sinkhorn at ε = 0.05·mean C, noise
//! for jet j drawn from the plan's column j). Straighter pairings give straighter paths:
//! fewer ODE steps for the same quality.

use crate::error::{Error, Result};
use crate::models::fm::settings::Coupling;
use crate::rng::Rng;

/// The cost matrix `[B, B]` (row = noise i, column = jet j) of the module doc; `x0`, `x1`
/// are `[B, P, 3]`, `mask [B, P]`.
pub fn cost_matrix(x0: &[f32], x1: &[f32], mask: &[f32], b: usize) -> Vec<f64> {
    let d = x0.len() / b.max(1);
    let p = mask.len() / b.max(1);
    let mut c = vec![0f64; b * b];
    for i in 0..b {
        for j in 0..b {
            let mut s = 0f64;
            for k in 0..d {
                if mask[j * p + k / 3] != 0.0 {
                    let e = (x0[i * d + k] - x1[j * d + k]) as f64;
                    s += e * e;
                }
            }
            c[i * b + j] = s;
        }
    }
    c
}

/// For every jet j, the noise row paired with it (`pairing[j]`), by `kind`.
pub fn pair(
    x0: &[f32],
    x1: &[f32],
    mask: &[f32],
    b: usize,
    kind: Coupling,
    rng: &mut Rng,
) -> Result<Vec<usize>> {
    if b == 0
        || x0.len() != x1.len()
        || !x0.len().is_multiple_of(b)
        || !mask.len().is_multiple_of(b)
    {
        return Err(Error::shape(
            "ot coupling",
            format!(
                "{} noise / {} jet values for a batch of {b}",
                x0.len(),
                x1.len()
            ),
        ));
    }
    match kind {
        Coupling::Independent => Ok((0..b).collect()),
        Coupling::Exact => {
            let cost = cost_matrix(x0, x1, mask, b);
            let ones = vec![1.0; b];
            let sol = crate::metrics::emd::transport_exact(&ones, &ones, &cost)?;
            let mut best = vec![(usize::MAX, 0f64); b];
            for &(i, j, f) in &sol.flows {
                if f > best[j].1 {
                    best[j] = (i, f);
                }
            }
            let pairing: Vec<usize> = best.iter().map(|&(i, _)| i).collect();
            let mut seen = vec![false; b];
            for &i in &pairing {
                if i >= b || std::mem::replace(&mut seen[i], true) {
                    return Err(Error::invalid(
                        "internal: the exact OT plan of the batch is not a permutation",
                    ));
                }
            }
            Ok(pairing)
        }
        Coupling::Sinkhorn => {
            let cost = cost_matrix(x0, x1, mask, b);
            let plan = sinkhorn_plan(&cost, b, 200)?;
            Ok((0..b)
                .map(|j| {
                    let col: f64 = (0..b).map(|i| plan[i * b + j]).sum();
                    let mut u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * col;
                    for i in 0..b {
                        u -= plan[i * b + j];
                        if u <= 0.0 {
                            return i;
                        }
                    }
                    b - 1
                })
                .collect())
        }
    }
}

/// The entropic plan `[B, B]` of uniform marginals for `cost`, ε = 0.05·mean(C), by
/// `iters` log-domain Sinkhorn iterations (f64).
pub fn sinkhorn_plan(cost: &[f64], b: usize, iters: usize) -> Result<Vec<f64>> {
    let mean = cost.iter().sum::<f64>() / cost.len().max(1) as f64;
    if !mean.is_finite() {
        return Err(Error::invalid("non-finite OT cost"));
    }
    let eps = (0.05 * mean).max(1e-12);
    let log_w = -(b as f64).ln();
    let (mut f, mut g) = (vec![0f64; b], vec![0f64; b]);
    let lse = |vals: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = vals.collect();
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    for _ in 0..iters {
        for i in 0..b {
            f[i] = -eps * lse(&mut (0..b).map(|j| (g[j] - cost[i * b + j]) / eps + log_w));
        }
        for j in 0..b {
            g[j] = -eps * lse(&mut (0..b).map(|i| (f[i] - cost[i * b + j]) / eps + log_w));
        }
    }
    Ok((0..b * b)
        .map(|k| {
            let (i, j) = (k / b, k % b);
            ((f[i] + g[j] - cost[k]) / eps + 2.0 * log_w).exp()
        })
        .collect())
}
