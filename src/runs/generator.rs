//! [`Generator`]: the one interface through which any trained model makes jets. The CLI's
//! `sample`, `eval` and `bench generate`, the end of every training run and the C API all
//! go through it, so a family added later works everywhere without new code there.

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;

/// What a model's jets can be conditioned on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditioning {
    /// The relative jet mass m/pT.
    pub mass: bool,
    /// The number of particles.
    pub multiplicity: bool,
}

/// A trained generative model of jets with `particles()` particles each, in JetNet layout
/// (`particle_features [n, P, 4]` = η_rel, φ_rel, pT_rel, mask; `jet_features [n, 4]`).
/// Implementations are deterministic per seed and safe to share between threads.
pub trait Generator: Send + Sync {
    /// The model family: `flow`, … (recorded in checkpoints as `jetgen_model`).
    fn family(&self) -> &'static str;
    /// The family's variant (e.g. `vnf`, `cnf-m` for flows).
    fn variant(&self) -> String;
    /// Particles per generated jet (P).
    fn particles(&self) -> usize;
    /// What [`Generator::generate_conditional`] takes.
    fn conditioning(&self) -> Conditioning;
    /// The device the model runs on.
    fn device(&self) -> Device;
    /// `n` jets; conditional models draw their conditions like the training jets'.
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData>;
    /// One jet per given condition (`given.mass[i]`, and `given.n[i]` for models conditioned
    /// on the multiplicity). Unconditional models refuse.
    fn generate_conditional(&self, given: &Conditions, seed: u64) -> Result<JetNetData> {
        let _ = (given, seed);
        Err(Error::invalid(format!(
            "a {} {} model is not conditional",
            self.variant(),
            self.family()
        )))
    }
    /// log p(x) of each jet (natural log, in the units of the particle features), for
    /// models with a tractable density; others refuse.
    fn log_prob(&self, jets: &JetNetData) -> Result<Vec<f64>> {
        let _ = jets;
        Err(Error::invalid(format!(
            "a {} model has no tractable log-density",
            self.family()
        )))
    }
    /// The smallest and largest relative mass of the training jets, for conditional models
    /// that know it (`sample --mass` warns outside it: the model extrapolates).
    fn training_mass_range(&self) -> Option<(f64, f64)> {
        None
    }
    /// Choose the ODE solver generation integrates with (continuous-time models such as
    /// flow matching); models without one refuse.
    fn set_solver(&mut self, solver: &crate::ode::SolverSettings) -> Result<()> {
        let _ = solver;
        Err(Error::invalid(format!(
            "a {} model does not generate by integrating an ODE (--solver/--steps)",
            self.family()
        )))
    }
    /// The ODE solver generation currently uses (`None` for models without one).
    fn solver(&self) -> Option<crate::ode::SolverSettings> {
        None
    }
    /// Network evaluations along each jet's trajectory in the last generation, for models
    /// that integrate an ODE (`None` for the others).
    fn last_evaluations(&self) -> Option<usize> {
        None
    }
    /// `family/variant`, for messages.
    fn name(&self) -> String {
        format!("{}/{}", self.family(), self.variant())
    }
}

/// The most bytes of particle and jet features one generated sample may hold in memory
/// (2 GiB): `sample` and `eval --model` refuse a larger `--n` up front instead of failing
/// on an allocation.
pub const MAX_SAMPLE_BYTES: usize = 2 << 30;

/// Jets per generation call when a large sample is made in pieces: the model's working
/// memory stays bounded whatever `n` is.
pub const GENERATION_CHUNK: usize = 50_000;

/// The most jets of `particles` particles a sample may have: [`MAX_SAMPLE_BYTES`] over the
/// bytes per jet (P × 4 + 4 floats).
pub fn max_sample_jets(particles: usize) -> usize {
    MAX_SAMPLE_BYTES / ((particles.max(1) * 4 + 4) * 4)
}

/// An error naming the limit when `n` jets of `particles` particles are more than one
/// sample may hold, or when `n` is 0.
pub fn check_sample_size(n: usize, particles: usize) -> Result<()> {
    let max = max_sample_jets(particles);
    if n == 0 {
        return Err(Error::invalid("--n must be at least 1"));
    }
    if n > max {
        return Err(Error::invalid(format!(
            "--n {n} is too many: at most {max} jets of {particles} particles fit in one \
             sample ({} GiB of features); generate several files with different --seed",
            MAX_SAMPLE_BYTES >> 30
        )));
    }
    Ok(())
}

/// The seed of piece `k` of a sample generated in pieces: `seed` itself for the first, so
/// a sample of at most [`GENERATION_CHUNK`] jets is exactly `generate(n, seed)`.
fn piece_seed(seed: u64, k: usize) -> u64 {
    match k {
        0 => seed,
        _ => seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

/// `n` jets from `model` (size checked by [`check_sample_size`]), made in pieces of at
/// most [`GENERATION_CHUNK`] jets so the model's working memory does not grow with `n`;
/// deterministic per seed. With `given` conditions (one per jet), each piece gets its slice.
pub fn generate_in_pieces(
    model: &dyn Generator,
    n: usize,
    seed: u64,
    given: Option<&Conditions>,
) -> Result<JetNetData> {
    check_sample_size(n, model.particles())?;
    let mut pieces = Vec::with_capacity(n.div_ceil(GENERATION_CHUNK));
    for (k, start) in (0..n).step_by(GENERATION_CHUNK).enumerate() {
        let len = GENERATION_CHUNK.min(n - start);
        let s = piece_seed(seed, k);
        pieces.push(match given {
            None => model.generate(len, s)?,
            Some(c) => {
                let slice = |v: &[f64]| v.get(start..start + len).map(<[f64]>::to_vec);
                let part = Conditions {
                    mass: slice(&c.mass).unwrap_or_default(),
                    n: slice(&c.n).unwrap_or_default(),
                };
                model.generate_conditional(&part, s)?
            }
        });
    }
    JetNetData::concat(pieces)
}

/// (min, max) of `values`; `None` when empty.
pub fn range_of(values: &[f64]) -> Option<(f64, f64)> {
    let first = *values.first()?;
    Some(
        values
            .iter()
            .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
    )
}
