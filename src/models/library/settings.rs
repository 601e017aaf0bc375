//! The library generator's settings: one struct for `jetgen train library`, its `--config`
//! files and the run's `config.json` (see [`crate::runs::settings`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runs::settings::{defaults, RunSettings, Settings};

/// A jet-level quantity the library looks its neighbours up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LibraryCondition {
    /// The relative jet mass m/pT from the constituents (as W1M measures it).
    Mass,
    /// The jet pT in GeV (`jet_features[0]`, the full jet's).
    Pt,
    /// The number of real particles in the cloud.
    Multiplicity,
}

impl LibraryCondition {
    /// The name on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            LibraryCondition::Mass => "mass",
            LibraryCondition::Pt => "pt",
            LibraryCondition::Multiplicity => "multiplicity",
        }
    }
    /// Parse [`LibraryCondition::name`].
    pub fn parse(s: &str) -> Result<LibraryCondition> {
        match s {
            "mass" => Ok(LibraryCondition::Mass),
            "pt" => Ok(LibraryCondition::Pt),
            "multiplicity" => Ok(LibraryCondition::Multiplicity),
            _ => Err(Error::invalid(format!(
                "unknown library condition '{s}' (mass, pt, multiplicity)"
            ))),
        }
    }
}

/// Largest accepted `--k`.
pub const MAX_K: usize = 64;

/// Everything a library run is configured by. The optimisation options of the shared
/// settings (steps, lr, …) do not apply: a library is built, not trained.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct LibrarySettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunSettings,
    /// Neighbours per generated jet: 1 returns a training jet as it is; k > 1 moves between
    /// the k nearest along their optimal transport plans (random convex weights)
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// The jet quantities neighbours are nearest in (comma-separated: mass, pt, multiplicity;
    /// each standardised over the training jets)
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [LibraryCondition::Mass, LibraryCondition::Multiplicity])]
    pub condition: Vec<LibraryCondition>,
}

impl Default for LibrarySettings {
    fn default() -> Self {
        defaults()
    }
}

impl Settings for LibrarySettings {
    fn run(&self) -> &RunSettings {
        &self.run
    }
    fn run_mut(&mut self) -> &mut RunSettings {
        &mut self.run
    }
    fn validate(&self) -> Result<()> {
        LibrarySettings::validate(self)
    }
}

impl LibrarySettings {
    /// Every option in range, before any file is read or written.
    pub fn validate(&self) -> Result<()> {
        self.run.validate()?;
        validate_choice(self.k, &self.condition)
    }

    /// One line saying what will be built from what.
    pub fn describe(&self, data: &crate::data::JetNetData) -> String {
        format!(
            "building a k = {} library generator on {} ({} jets × {} particles; 70% kept as the library), nearest in {}",
            self.k,
            self.run.data_path().display(),
            data.n_jets,
            data.n_particles,
            condition_names(&self.condition)
        )
    }
}

/// `k` in 1..=[`MAX_K`] and a non-empty list of distinct conditions.
pub fn validate_choice(k: usize, conditions: &[LibraryCondition]) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(Error::invalid(format!(
            "--k must be in 1..={MAX_K}, got {k}"
        )));
    }
    if conditions.is_empty() {
        return Err(Error::invalid(
            "--condition needs at least one of mass, pt, multiplicity",
        ));
    }
    for (i, c) in conditions.iter().enumerate() {
        if conditions[..i].contains(c) {
            return Err(Error::invalid(format!(
                "--condition names '{}' twice",
                c.name()
            )));
        }
    }
    Ok(())
}

/// `mass,multiplicity`.
pub fn condition_names(conditions: &[LibraryCondition]) -> String {
    conditions
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(",")
}
