//! Dormand–Prince 5(4) (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4–5): seven stages,
//! the 5th-order solution propagated, the embedded 4th-order one for the error estimate,
//! and the last stage reused as the next step's first (FSAL).
//!
//! Error control per step: e = h Σᵢ (bᵢ − b̂ᵢ) kᵢ, sc = atol + rtol·max(|y|, |y_new|),
//! ‖e‖ = √(mean((e/sc)²)) over every component of the state; a step is accepted when
//! ‖e‖ ≤ 1, and h ← h·min(5, max(0.2, 0.9·‖e‖^(−1/5))) (no growth right after a rejection).
//! The first step size follows Hairer's starting-step heuristic.

use super::{check_state, combine, eval, Rhs, Solution, SolverSettings, State};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The Butcher tableau: stage nodes c, coefficients a (lower triangle).
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    // the 5th-order weights b (FSAL: stage 7 is evaluated at the new solution)
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// b − b̂ (5th minus embedded 4th-order weights), the error estimate's weights.
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// ‖e‖ of the module doc over every component.
fn error_norm(err: &[Tensor], y: &[Tensor], y_new: &[Tensor], rtol: f64, atol: f64) -> Result<f64> {
    let (mut sum, mut count) = (0f64, 0usize);
    for ((e, a), b) in err.iter().zip(y).zip(y_new) {
        let (e, a, b) = (e.to_vec_f64()?, a.to_vec_f64()?, b.to_vec_f64()?);
        for ((e, a), b) in e.iter().zip(&a).zip(&b) {
            let sc = atol + rtol * a.abs().max(b.abs());
            sum += (e / sc).powi(2);
        }
        count += e.len();
    }
    Ok((sum / count.max(1) as f64).sqrt())
}

/// RMS norm of a state scaled by sc = atol + rtol·|y| (for the starting step).
fn scaled_norm(v: &[Tensor], y: &[Tensor], rtol: f64, atol: f64) -> Result<f64> {
    error_norm(v, y, y, rtol, atol)
}

/// Hairer's initial step: h₀ = 0.01·‖y‖/‖f‖, one Euler probe for the second derivative,
/// h = min(100 h₀, (0.01 / max(‖f‖, ‖f′‖))^(1/5)); never more than the interval.
fn initial_step(
    f: &mut Rhs<'_>,
    t0: f64,
    y0: &[Tensor],
    k1: &[Tensor],
    span: f64,
    s: &SolverSettings,
    nfe: &mut usize,
) -> Result<f64> {
    let d0 = scaled_norm(y0, y0, s.rtol, s.atol)?;
    let d1 = scaled_norm(k1, y0, s.rtol, s.atol)?;
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let h0 = h0.min(span.abs());
    let dir = span.signum();
    let y1 = combine(y0, &[(dir * h0, k1)])?;
    let k2 = eval(f, t0 + dir * h0, &y1, nfe)?;
    let diff = combine(&k2, &[(-1.0, k1)])?;
    let d2 = scaled_norm(&diff, y0, s.rtol, s.atol)? / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 5.0)
    };
    Ok((100.0 * h0).min(h1).min(span.abs()))
}

/// Integrate with Dormand–Prince 5(4) under `s.rtol`/`s.atol` (see the module doc).
pub fn dopri5(
    f: &mut Rhs<'_>,
    y0: State,
    t0: f64,
    t1: f64,
    s: &SolverSettings,
) -> Result<Solution> {
    let span = t1 - t0;
    let mut nfe = 0;
    if span == 0.0 {
        return Ok(Solution {
            y: y0,
            nfe,
            steps: 0,
            rejected: 0,
        });
    }
    let dir = span.signum();
    let mut y = y0;
    let mut t = t0;
    let mut k1 = eval(f, t, &y, &mut nfe)?;
    let mut h = initial_step(f, t0, &y, &k1, span, s, &mut nfe)?;
    let (mut steps, mut rejected) = (0usize, 0usize);
    let mut just_rejected = false;
    while dir * (t1 - t) > 0.0 {
        if steps + rejected >= s.max_steps {
            return Err(Error::invalid(format!(
                "dopri5 needed more than {} steps to reach t = {t1} (at t = {t}); loosen \
                 --rtol/--atol or use a fixed-step solver",
                s.max_steps
            )));
        }
        // do not step past t1 (and do not leave a sliver behind)
        let remaining = (t1 - t).abs();
        if h >= remaining || h > 0.99 * remaining {
            h = remaining;
        }
        if h <= 1e-14 * t.abs().max(1.0) {
            return Err(Error::invalid(format!(
                "dopri5 step size underflow at t = {t}: the velocity field is too stiff"
            )));
        }
        let hs = dir * h;
        let mut ks: Vec<State> = vec![k1.clone()];
        for stage in 1..7 {
            let terms: Vec<(f64, &[Tensor])> = (0..stage)
                .map(|j| (hs * A[stage][j], ks[j].as_slice()))
                .collect();
            let ys = combine(&y, &terms)?;
            if stage == 6 {
                // stage 7 of the tableau is the new solution itself (FSAL)
                let k7 = eval(f, t + hs * C[6], &ys, &mut nfe)?;
                ks.push(k7);
                let y_new = ys;
                let err_terms: Vec<(f64, &[Tensor])> =
                    (0..7).map(|j| (hs * E[j], ks[j].as_slice())).collect();
                let zero = combine(&y, &[(-1.0, &y)])?;
                let err = combine(&zero, &err_terms)?;
                let norm = error_norm(&err, &y, &y_new, s.rtol, s.atol)?;
                if !norm.is_finite() {
                    // a non-finite trial: shrink hard and retry
                    rejected += 1;
                    h *= 0.2;
                    just_rejected = true;
                    break;
                }
                let factor = if norm == 0.0 {
                    5.0
                } else {
                    (0.9 * norm.powf(-0.2)).clamp(0.2, 5.0)
                };
                if norm <= 1.0 {
                    t = if (t1 - (t + hs)) * dir <= 0.0 {
                        t1
                    } else {
                        t + hs
                    };
                    y = y_new;
                    k1 = ks.pop().unwrap_or_default();
                    steps += 1;
                    h *= if just_rejected {
                        factor.min(1.0)
                    } else {
                        factor
                    };
                    just_rejected = false;
                } else {
                    rejected += 1;
                    h *= factor.min(1.0);
                    just_rejected = true;
                }
                break;
            }
            let k = eval(f, t + hs * C[stage], &ys, &mut nfe)?;
            ks.push(k);
        }
    }
    check_state(&y, t1)?;
    Ok(Solution {
        y,
        nfe,
        steps,
        rejected,
    })
}
