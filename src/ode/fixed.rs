//! Fixed-step explicit Runge–Kutta methods over [t₀, t₁] in `steps` equal steps of
//! h = (t₁ − t₀)/steps:
//! ```text
//! Euler     y ← y + h k₁,                         k₁ = f(t, y)
//! midpoint  y ← y + h k₂,                         k₂ = f(t + h/2, y + h/2 k₁)
//! RK4       y ← y + h/6 (k₁ + 2k₂ + 2k₃ + k₄),   k₃ = f(t + h/2, y + h/2 k₂), k₄ = f(t + h, y + h k₃)
//! ```

use super::{check_state, combine, eval, Method, Rhs, Solution, State};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Integrate with `method` (not Dopri5) in `steps` equal steps.
pub fn integrate(
    f: &mut Rhs<'_>,
    y0: State,
    t0: f64,
    t1: f64,
    method: Method,
    steps: usize,
) -> Result<Solution> {
    if steps == 0 {
        return Err(Error::invalid("a fixed-step solve needs at least 1 step"));
    }
    let h = (t1 - t0) / steps as f64;
    let mut y = y0;
    let mut nfe = 0;
    for s in 0..steps {
        let t = t0 + s as f64 * h;
        y = step(f, &y, t, h, method, &mut nfe)?;
    }
    check_state(&y, t1)?;
    Ok(Solution {
        y,
        nfe,
        steps,
        rejected: 0,
    })
}

/// One step of `method` from (t, y) with step h.
pub fn step(
    f: &mut Rhs<'_>,
    y: &[Tensor],
    t: f64,
    h: f64,
    method: Method,
    nfe: &mut usize,
) -> Result<State> {
    let k1 = eval(f, t, y, nfe)?;
    match method {
        Method::Euler => combine(y, &[(h, &k1)]),
        Method::Midpoint => {
            let mid = combine(y, &[(0.5 * h, &k1)])?;
            let k2 = eval(f, t + 0.5 * h, &mid, nfe)?;
            combine(y, &[(h, &k2)])
        }
        Method::Rk4 => {
            let k2 = eval(f, t + 0.5 * h, &combine(y, &[(0.5 * h, &k1)])?, nfe)?;
            let k3 = eval(f, t + 0.5 * h, &combine(y, &[(0.5 * h, &k2)])?, nfe)?;
            let k4 = eval(f, t + h, &combine(y, &[(h, &k3)])?, nfe)?;
            combine(
                y,
                &[
                    (h / 6.0, &k1),
                    (h / 3.0, &k2),
                    (h / 3.0, &k3),
                    (h / 6.0, &k4),
                ],
            )
        }
        Method::Dopri5 => Err(Error::invalid(
            "dopri5 is adaptive: use ode::solve, not a fixed step",
        )),
    }
}
