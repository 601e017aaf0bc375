//! `jetgen sample`: jets from any trained model, through its [`Generator`].
//!
//! [`Generator`]: crate::runs::generator::Generator

use std::path::PathBuf;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::runs::generator::{check_sample_size, generate_in_pieces};
use crate::runs::load_generator;

/// `sample --solver/--steps/--tol`: how ODE-based models integrate (unset: the checkpoint's).
#[derive(Clone, Copy, Debug, Default)]
pub struct SolverChoice {
    pub solver: Option<crate::ode::Method>,
    pub steps: Option<usize>,
    pub tol: Option<f64>,
}

impl SolverChoice {
    /// The model's solver with the options given applied (`None` when none was given).
    fn settings(&self, current: crate::ode::SolverSettings) -> Option<crate::ode::SolverSettings> {
        if self.solver.is_none() && self.steps.is_none() && self.tol.is_none() {
            return None;
        }
        let mut s = current;
        if let Some(m) = self.solver {
            s.method = m;
        }
        if let Some(k) = self.steps {
            s.steps = k;
        }
        if let Some(t) = self.tol {
            s.rtol = t;
            s.atol = t;
        }
        Some(s)
    }
}

/// Generate `n` jets from a trained run directory (or checkpoint file) into a JetNet file;
/// with `mass` (and `multiplicity`) every jet gets those conditions. A sample larger than
/// [`crate::runs::generator::MAX_SAMPLE_BYTES`] is refused before anything is generated;
/// the model works in pieces of [`crate::runs::generator::GENERATION_CHUNK`] jets.
pub fn run(
    model: PathBuf,
    n: usize,
    seed: u64,
    out: PathBuf,
    device: &str,
    mass: Option<f64>,
    multiplicity: Option<usize>,
    solver: SolverChoice,
) -> Result<()> {
    let device = Device::parse(device)?;
    if n == 0 {
        return Err(Error::invalid("--n must be at least 1"));
    }
    if let Some(m) = mass {
        if !(m.is_finite() && m >= 0.0) {
            return Err(Error::invalid(format!(
                "--mass must be finite and ≥ 0, got {m}"
            )));
        }
    }
    crate::io::refuse_input_as_output(&out, &[&crate::runs::dir::checkpoint_of(&model)])?;
    device.ensure_available()?;
    let mut model = load_generator(&model, device)?;
    let given = solver.solver.is_some() || solver.steps.is_some() || solver.tol.is_some();
    if given {
        let current = model.solver().ok_or_else(|| {
            Error::invalid(format!(
                "a {} model does not generate by integrating an ODE: --solver, --steps and \
                 --tol do not apply",
                model.name()
            ))
        })?;
        if let Some(s) = solver.settings(current) {
            model.set_solver(&s)?;
        }
    }
    check_sample_size(n, model.particles())?;
    let wants = model.conditioning();
    let jets = match (mass, multiplicity) {
        (None, None) => crate::on_thread_pool(|| generate_in_pieces(&*model, n, seed, None))?,
        (Some(m), k) => {
            if !wants.mass {
                return Err(Error::invalid(format!(
                    "a {} model is not conditioned on the jet mass",
                    model.name()
                )));
            }
            if k.is_some() && !wants.multiplicity {
                return Err(Error::invalid(format!(
                    "a {} model is not conditioned on the multiplicity",
                    model.name()
                )));
            }
            if let Some((lo, hi)) = model.training_mass_range() {
                if m < lo || m > hi {
                    eprintln!(
                        "warning: --mass {m} is outside the training jets' range \
                         [{lo:.4}, {hi:.4}]: the model extrapolates"
                    );
                }
            }
            let given = Conditions {
                mass: vec![m; n],
                n: vec![k.unwrap_or(model.particles()) as f64; n],
            };
            crate::on_thread_pool(|| generate_in_pieces(&*model, n, seed, Some(&given)))?
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--multiplicity needs --mass too (models condition on m, or on m and n)",
            ))
        }
    };
    jets.write_hdf5(&out)?;
    let cost = match model.last_evaluations() {
        Some(k) => format!(", {k} network evaluations per jet"),
        None => String::new(),
    };
    println!(
        "wrote {n} jets ({} particles each, {} model{cost}) to {}",
        model.particles(),
        model.name(),
        out.display()
    );
    Ok(())
}
