//! The flow-matching family's settings: one struct for `jetgen train fm`, its `--config`
//! files and the run's `config.json` (see [`crate::runs::settings`]). The EPiC-FM reference
//! trains with AdamW at lr 1e-3 and a cosine schedule (`jetgen train fm` defaults
//! `--lr-schedule` to cosine), EMA 0.999, σ_min = 1e-4.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::fm::network::EpicConfig;
use crate::ode::{Method, SolverSettings};
use crate::runs::settings::{defaults, RunSettings, Settings};

/// What the velocity network is conditioned on besides time (the multiplicity always
/// enters through the mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FmCondition {
    /// Nothing: jets are drawn with multiplicities like the training jets'.
    None,
    /// The relative jet mass m/pT (standardised), drawn at generation like the training
    /// jets' for the drawn multiplicity (or given: `sample --mass`).
    Mass,
    /// The relative jet mass and the jet pT (GeV, the JetNet jet feature), both
    /// standardised; generation draws (m, pT, n) of a training jet (with `sample --mass`: the
    /// pT of a training jet of nearby mass).
    MassPt,
}

impl FmCondition {
    /// The name on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            FmCondition::None => "none",
            FmCondition::Mass => "mass",
            FmCondition::MassPt => "mass-pt",
        }
    }
    /// Parse [`FmCondition::name`].
    pub fn parse(s: &str) -> Result<FmCondition> {
        match s {
            "none" => Ok(FmCondition::None),
            "mass" => Ok(FmCondition::Mass),
            "mass-pt" => Ok(FmCondition::MassPt),
            _ => Err(Error::invalid(format!(
                "unknown flow-matching condition '{s}' (none, mass, mass-pt)"
            ))),
        }
    }
    /// Context features it feeds the network.
    pub fn context_dim(self) -> usize {
        match self {
            FmCondition::None => 0,
            FmCondition::Mass => 1,
            FmCondition::MassPt => 2,
        }
    }
    /// True when the relative mass is a condition.
    pub fn uses_mass(self) -> bool {
        self != FmCondition::None
    }
    /// True when the jet pT is a condition.
    pub fn uses_pt(self) -> bool {
        self == FmCondition::MassPt
    }
}

/// How training pairs noise with jets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coupling {
    /// Independent pairs (plain conditional flow matching).
    Independent,
    /// Mini-batch OT (OT-CFM): the exact assignment minimising Σ‖x₀ − x₁‖² over the batch.
    Exact,
    /// Mini-batch OT through an entropic (Sinkhorn) plan; the noise of each jet is drawn
    /// from the plan's column.
    Sinkhorn,
}

impl Coupling {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Coupling::Independent => "independent",
            Coupling::Exact => "exact",
            Coupling::Sinkhorn => "sinkhorn",
        }
    }
}

/// Everything a flow-matching training run is configured by.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct FmSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunSettings,
    /// EPiC layers of the velocity network
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// Width of the per-particle path
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Size of the global vector
    #[arg(long, default_value_t = 10)]
    pub global: usize,
    /// Size of the cosine time embedding (even)
    #[arg(long, default_value_t = 32)]
    pub time_embed: usize,
    /// Scale of the masked sum pooling
    #[arg(long, default_value_t = 1e-2)]
    pub sum_scale: f64,
    /// none, mass (the relative jet mass) or mass-pt (and the jet pT); the multiplicity always
    /// enters through the mask
    #[arg(long, value_enum, default_value_t = FmCondition::None)]
    pub condition: FmCondition,
    /// independent, exact (mini-batch OT-CFM) or sinkhorn pairing of noise and jets
    #[arg(long, value_enum, default_value_t = Coupling::Independent)]
    pub coupling: Coupling,
    /// σ_min of the straight probability path x_t = (1 − (1 − σ_min)t)x₀ + t x₁
    #[arg(long, default_value_t = 1e-4)]
    pub sigma_min: f64,
    /// Decay of the EMA of the weights (0 = no EMA); the EMA weights are validated,
    /// checkpointed and sampled
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// The checkpoint's default ODE solver for generation
    #[arg(long, value_enum, default_value_t = Method::Midpoint)]
    pub solver: Method,
    /// Steps of the default solver (midpoint 100 = 200 network evaluations)
    #[arg(long, default_value_t = 100)]
    pub solver_steps: usize,
    /// Midpoint steps of the generation behind the validation FPD
    #[arg(long, default_value_t = 10)]
    pub val_steps: usize,
    /// Generated jets for the validation FPD (checkpoint selection)
    #[arg(long, default_value_t = 1000)]
    pub val_jets: usize,
}

impl Default for FmSettings {
    fn default() -> Self {
        defaults()
    }
}

impl Settings for FmSettings {
    fn run(&self) -> &RunSettings {
        &self.run
    }
    fn run_mut(&mut self) -> &mut RunSettings {
        &mut self.run
    }
    fn validate(&self) -> Result<()> {
        FmSettings::validate(self)
    }
}

impl FmSettings {
    /// The network for `particles` particles per jet.
    pub fn network(&self, particles: usize) -> EpicConfig {
        EpicConfig {
            particles,
            layers: self.layers,
            hidden: self.hidden,
            global: self.global,
            time_embed: self.time_embed,
            context: self.condition.context_dim(),
            sum_scale: self.sum_scale,
        }
    }

    /// The default generation solver.
    pub fn sampler(&self) -> SolverSettings {
        SolverSettings::fixed(self.solver, self.solver_steps)
    }

    /// Every option in range, before anything is read or written.
    pub fn validate(&self) -> Result<()> {
        self.run.validate()?;
        self.network(30).validate()?;
        let bad = |m: String| Err(Error::invalid(m));
        if !(self.sigma_min.is_finite() && (0.0..1.0).contains(&self.sigma_min)) {
            return bad(format!(
                "--sigma-min must be in [0, 1), got {}",
                self.sigma_min
            ));
        }
        if !(self.ema.is_finite() && (0.0..1.0).contains(&self.ema)) {
            return bad(format!("--ema must be in [0, 1), got {}", self.ema));
        }
        self.sampler().validate()?;
        for (name, v, hi) in [
            ("--val-steps", self.val_steps, 100_000),
            ("--val-jets", self.val_jets, 1 << 20),
        ] {
            if v == 0 || v > hi {
                return bad(format!("{name} must be in 1..={hi}, got {v}"));
            }
        }
        Ok(())
    }

    /// One line saying what will be trained on what.
    pub fn describe(&self, data: &crate::data::JetNetData) -> String {
        format!(
            "training an EPiC flow-matching model ({} layers × {}, global {}, condition {}, \
             coupling {}) on {} ({} jets × {} particles) on {}, {} steps of {} jets",
            self.layers,
            self.hidden,
            self.global,
            self.condition.name(),
            self.coupling.name(),
            self.run.data_path().display(),
            data.n_jets,
            data.n_particles,
            self.run.device,
            self.run.steps_for(data.n_jets * 7 / 10),
            self.run.batch
        )
    }
}
