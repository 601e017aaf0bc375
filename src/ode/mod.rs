//! Integrators for dy/dt = f(t, y) from t₀ to t₁ (either direction), with the state a list
//! of tensors (so an augmented state such as (x, log-density change) is one state):
//! * [`fixed`] — Euler (order 1), explicit midpoint (order 2) and classical RK4 (order 4)
//!   with a fixed number of equal steps;
//! * [`adaptive`] — Dormand–Prince 5(4) with error control (relative and absolute
//!   tolerances, the embedded 4th-order estimate, FSAL).
//!
//! Every solve reports its number of function evaluations (NFE): for a flow-matching model
//! each one is a network pass, which is what generation costs. The module knows tensors and
//! nothing above them (no tape, no models); the flow-matching family uses it for sampling
//! and likelihoods, and any later continuous-time model can.

pub mod adaptive;
pub mod fixed;

use crate::error::{Error, Result};
use crate::ops::elementwise::{binary, unary, BinaryOp, UnaryOp};
use crate::tensor::Tensor;

/// The state of an ODE: one or more tensors integrated together.
pub type State = Vec<Tensor>;

/// The right-hand side f(t, y) → dy/dt (same shapes as y).
pub type Rhs<'a> = dyn FnMut(f64, &[Tensor]) -> Result<State> + 'a;

/// Which integrator.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// y ← y + h f(t, y): 1 evaluation per step, global error O(h).
    Euler,
    /// y ← y + h f(t + h/2, y + h/2 f(t, y)): 2 evaluations per step, O(h²).
    Midpoint,
    /// Classical Runge–Kutta: 4 evaluations per step, O(h⁴).
    Rk4,
    /// Dormand–Prince 5(4), adaptive steps under `rtol`/`atol` (about 6 evaluations per
    /// accepted step thanks to FSAL).
    Dopri5,
}

impl Method {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Midpoint => "midpoint",
            Method::Rk4 => "rk4",
            Method::Dopri5 => "dopri5",
        }
    }
    /// Parse [`Method::name`].
    pub fn parse(s: &str) -> Result<Method> {
        [Method::Euler, Method::Midpoint, Method::Rk4, Method::Dopri5]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown ODE solver '{s}' (euler, midpoint, rk4, dopri5)"
                ))
            })
    }
    /// Function evaluations per step of the fixed-step methods (None for the adaptive one).
    pub fn evals_per_step(self) -> Option<usize> {
        match self {
            Method::Euler => Some(1),
            Method::Midpoint => Some(2),
            Method::Rk4 => Some(4),
            Method::Dopri5 => None,
        }
    }
}

/// How to integrate: the method, its step count (fixed methods) or tolerances (adaptive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolverSettings {
    pub method: Method,
    /// Equal steps over [t₀, t₁] for Euler, midpoint and RK4.
    pub steps: usize,
    /// Dopri5: relative tolerance.
    pub rtol: f64,
    /// Dopri5: absolute tolerance.
    pub atol: f64,
    /// Dopri5: the most steps (accepted + rejected) before giving up with an error.
    pub max_steps: usize,
}

impl Default for SolverSettings {
    /// Midpoint with 100 steps (the EPiC-FM paper's `midpoint_100`, 200 evaluations);
    /// tolerances 1e-5 for Dopri5.
    fn default() -> Self {
        SolverSettings {
            method: Method::Midpoint,
            steps: 100,
            rtol: 1e-5,
            atol: 1e-5,
            max_steps: 10_000,
        }
    }
}

impl SolverSettings {
    /// A fixed-step solver.
    pub fn fixed(method: Method, steps: usize) -> SolverSettings {
        SolverSettings {
            method,
            steps,
            ..Default::default()
        }
    }
    /// Dopri5 with the given tolerances.
    pub fn adaptive(rtol: f64, atol: f64) -> SolverSettings {
        SolverSettings {
            method: Method::Dopri5,
            rtol,
            atol,
            ..Default::default()
        }
    }
    /// Steps ≥ 1 (and ≤ 10⁶), tolerances positive and finite.
    pub fn validate(&self) -> Result<()> {
        if self.method != Method::Dopri5 && !(1..=1_000_000).contains(&self.steps) {
            return Err(Error::invalid(format!(
                "--steps must be in 1..=1000000, got {}",
                self.steps
            )));
        }
        for (name, v) in [("--rtol", self.rtol), ("--atol", self.atol)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!(
                    "{name} must be positive and finite, got {v}"
                )));
            }
        }
        if self.max_steps == 0 {
            return Err(Error::invalid("max_steps must be at least 1"));
        }
        Ok(())
    }
}

/// The end state and what it cost.
#[derive(Clone, Debug)]
pub struct Solution {
    /// y(t₁).
    pub y: State,
    /// Evaluations of f.
    pub nfe: usize,
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps (adaptive only).
    pub rejected: usize,
}

/// Integrate dy/dt = f(t, y) from (t₀, y₀) to t₁ with `settings`; t₁ < t₀ integrates
/// backwards. Errors for invalid settings, an empty state, non-finite times, a state that
/// becomes non-finite, or (adaptive) a step size underflow / too many steps.
pub fn solve(
    f: &mut Rhs<'_>,
    y0: State,
    t0: f64,
    t1: f64,
    settings: &SolverSettings,
) -> Result<Solution> {
    settings.validate()?;
    if y0.is_empty() {
        return Err(Error::invalid("an ODE state needs at least one tensor"));
    }
    if !(t0.is_finite() && t1.is_finite()) {
        return Err(Error::invalid(format!(
            "ODE time span must be finite, got [{t0}, {t1}]"
        )));
    }
    match settings.method {
        Method::Dopri5 => adaptive::dopri5(f, y0, t0, t1, settings),
        m => fixed::integrate(f, y0, t0, t1, m, settings.steps),
    }
}

/// y + Σᵢ cᵢ·kᵢ, component by component (terms with cᵢ = 0 are skipped).
pub(crate) fn combine(y: &[Tensor], terms: &[(f64, &[Tensor])]) -> Result<State> {
    y.iter()
        .enumerate()
        .map(|(j, yj)| {
            let mut acc = yj.clone();
            for (c, k) in terms {
                if *c == 0.0 {
                    continue;
                }
                let kj = k.get(j).ok_or_else(|| {
                    Error::invalid("the ODE right-hand side returned fewer tensors than the state")
                })?;
                acc = binary(BinaryOp::Add, &acc, &unary(UnaryOp::MulScalar(*c), kj)?)?;
            }
            Ok(acc)
        })
        .collect()
}

/// Evaluate f and check that it returned tensors of the state's shapes.
pub(crate) fn eval(f: &mut Rhs<'_>, t: f64, y: &[Tensor], nfe: &mut usize) -> Result<State> {
    *nfe += 1;
    let k = f(t, y)?;
    if k.len() != y.len() || k.iter().zip(y).any(|(a, b)| a.shape() != b.shape()) {
        return Err(Error::shape(
            "ode",
            format!(
                "the right-hand side returned {:?}, the state is {:?}",
                k.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>(),
                y.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
            ),
        ));
    }
    Ok(k)
}

/// An error unless every value of the state is finite.
pub(crate) fn check_state(y: &[Tensor], t: f64) -> Result<()> {
    for part in y {
        if part.count_non_finite()? > 0 {
            return Err(Error::invalid(format!(
                "the ODE state became non-finite at t = {t}"
            )));
        }
    }
    Ok(())
}
