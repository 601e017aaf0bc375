//! The flow family's settings: one struct for `jetgen train flow`, its `--config` files and
//! the run's `config.json` (see [`crate::runs::settings`]).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::models::conditions::Variant;
use crate::models::flow::network::{FlowConfig, MaskKind};
use crate::nn::CouplingKind;
use crate::ops::rqs::RqsConfig;
use crate::runs::settings::{defaults, RunSettings, Settings};

/// Coupling transform of every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CouplingChoice {
    /// Rational-quadratic splines (`--bins`, `--tail-bound`).
    Rqs,
    /// Affine (RealNVP) couplings.
    Affine,
}

/// Which features each coupling layer transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskChoice {
    /// Even/odd features in alternating layers.
    Alternating,
    /// A random half per layer, seeded by `--seed`.
    Random,
}

/// Everything a flow training run is configured by.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct FlowSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunSettings,
    /// vnf (unconditional), cnf-m (jet mass), cnf-mn (mass and multiplicity), ccnf-m /
    /// ccnf-mn (the same with the mass constraint)
    #[arg(long, value_enum, default_value_t = Variant::Vnf)]
    pub variant: Variant,
    /// rqs or affine coupling layers
    #[arg(long, value_enum, default_value_t = CouplingChoice::Rqs)]
    pub coupling: CouplingChoice,
    /// Coupling masks: alternating (even/odd features) or random (seeded by --seed)
    #[arg(long, value_enum, default_value_t = MaskChoice::Alternating)]
    pub masks: MaskChoice,
    /// Coupling layers
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// RQS bins per spline
    #[arg(long, default_value_t = 8)]
    pub bins: usize,
    /// Width of the conditioners' residual blocks
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Residual blocks per conditioner
    #[arg(long, default_value_t = 2)]
    pub blocks: usize,
    /// Spline range [−B, B] in standardised units
    #[arg(long, default_value_t = 8.0)]
    pub tail_bound: f64,
    /// Dropout probability inside the conditioners' residual blocks
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Reflect training jets at random about their axis (η_rel → −η_rel, φ_rel → −φ_rel):
    /// mass, pT fractions and multiplicity unchanged, four times the distinct jets
    /// (`--reflect false` trains on the jets as they are)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reflect: bool,
    /// λ of the CCNF mass constraint (loss = NLL per jet + λ·MSE of the relative mass)
    #[arg(long, default_value_t = 1000.0)]
    pub mass_lambda: f64,
    /// Steps before the CCNF mass constraint switches on
    #[arg(long, default_value_t = 0)]
    pub mass_delay: usize,
}

impl Default for FlowSettings {
    fn default() -> Self {
        defaults()
    }
}

impl Settings for FlowSettings {
    fn run(&self) -> &RunSettings {
        &self.run
    }
    fn run_mut(&mut self) -> &mut RunSettings {
        &mut self.run
    }
    fn validate(&self) -> Result<()> {
        FlowSettings::validate(self)
    }
}

impl FlowSettings {
    /// The flow architecture for vectors of `features` dimensions (3 per particle), with the
    /// variant's context size; validated.
    pub fn flow_config(&self, features: usize) -> Result<FlowConfig> {
        let config = FlowConfig {
            features,
            context: self.variant.context_dim(),
            layers: self.layers,
            coupling: match self.coupling {
                CouplingChoice::Rqs => {
                    CouplingKind::Rqs(RqsConfig::new(self.bins, self.tail_bound))
                }
                CouplingChoice::Affine => CouplingKind::Affine,
            },
            hidden: self.hidden,
            blocks: self.blocks,
            dropout: self.dropout,
            batch_norm: false,
            masks: match self.masks {
                MaskChoice::Alternating => MaskKind::Alternating,
                MaskChoice::Random => MaskKind::Random {
                    seed: self.run.seed,
                },
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// One line saying what will be trained on what.
    pub fn describe(&self, data: &crate::data::JetNetData) -> String {
        format!(
            "training a {} {}-layer {} coupling flow on {} ({} jets × {} particles → {} dims) on {}, {} steps of {} jets",
            self.variant.name(),
            self.layers,
            match self.coupling {
                CouplingChoice::Rqs => "rqs",
                CouplingChoice::Affine => "affine",
            },
            self.run.data_path().display(),
            data.n_jets,
            data.n_particles,
            data.n_particles * 3,
            self.run.device,
            self.run.steps_for(data.n_jets * 7 / 10),
            self.run.batch
        )
    }

    /// Every option in range (the shared ones, the architecture for 30-particle jets, λ),
    /// before any file is read or written.
    pub fn validate(&self) -> Result<()> {
        self.run.validate()?;
        self.flow_config(90)?;
        if !(self.mass_lambda.is_finite() && self.mass_lambda >= 0.0) {
            return Err(crate::error::Error::invalid(format!(
                "--mass-lambda must be ≥ 0 and finite, got {}",
                self.mass_lambda
            )));
        }
        Ok(())
    }
}
