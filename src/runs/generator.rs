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
    /// `family/variant`, for messages.
    fn name(&self) -> String {
        format!("{}/{}", self.family(), self.variant())
    }
}
