//! The GAN family's settings: one struct for `jetgen train gan`, its `--config` files and
//! the run's `config.json` (see [`crate::runs::settings`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runs::settings::{defaults, RunSettings, Settings};

/// The generator architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorArch {
    /// Fully connected: latent vector → all particles at once (the r-GAN / IML-talk style).
    Fc,
    /// Message passing on the particle graph (MPGAN) — not in this build.
    Mp,
}

/// The discriminator (critic) architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscriminatorArch {
    /// Fully connected on the flattened cloud.
    Fc,
    /// Message passing (MPGAN) — not in this build.
    Mp,
    /// PointNet-Mix — not in this build.
    Pointnet,
}

/// The adversarial loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Least squares on a sigmoid output (LSGAN; MPGAN's `ls`).
    Ls,
    /// Wasserstein with gradient penalty λ·E(‖∇D(x̂)‖ − 1)².
    WganGp,
    /// Cramér (energy-distance) critic f(x) = ‖h(x) − h(x′_g)‖ − ‖h(x)‖ with gradient penalty.
    Cramer,
}

impl GanLoss {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GanLoss::Ls => "ls",
            GanLoss::WganGp => "wgan-gp",
            GanLoss::Cramer => "cramer",
        }
    }
}

/// Everything a GAN training run is configured by. `--steps` counts generator steps; each
/// is preceded by `--critic-steps` discriminator steps. The learning rates are `--lr-g` and
/// `--lr-d` (the shared `--lr` is not used by GANs); `--lr-schedule` scales both.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct GanSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunSettings,
    /// Generator: fc (mp is not in this build)
    #[arg(long, value_enum, default_value_t = GeneratorArch::Fc)]
    pub generator: GeneratorArch,
    /// Discriminator: fc (mp and pointnet are not in this build)
    #[arg(long, value_enum, default_value_t = DiscriminatorArch::Fc)]
    pub discriminator: DiscriminatorArch,
    /// Loss: ls, wgan-gp or cramer
    #[arg(long, value_enum, default_value_t = GanLoss::WganGp)]
    pub loss: GanLoss,
    /// Latent dimension of the FC generator
    #[arg(long, default_value_t = 128)]
    pub latent: usize,
    /// Width of the hidden layers (generator and critic)
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Hidden layers of the generator and of the critic
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Output dimension of the Cramér critic's h
    #[arg(long, default_value_t = 256)]
    pub cramer_dim: usize,
    /// Discriminator steps per generator step
    #[arg(long, default_value_t = 5)]
    pub critic_steps: usize,
    /// λ of the gradient penalty (wgan-gp, cramer)
    #[arg(long, default_value_t = 10.0)]
    pub gp_lambda: f64,
    /// Generator learning rate (Adam, β = (0.5, 0.9))
    #[arg(long, default_value_t = 1e-4)]
    pub lr_g: f64,
    /// Discriminator learning rate
    #[arg(long, default_value_t = 1e-4)]
    pub lr_d: f64,
    /// Keep an exponential moving average of the generator weights with this decay (e.g.
    /// 0.999) and validate, checkpoint and generate with it; 0 = off
    #[arg(long, default_value_t = 0.0)]
    pub ema: f64,
    /// Also write checkpoint-step<N>.safetensors every this many generator steps; 0 = never
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Validation jets generated for the FPD that selects the best checkpoint (at most the
    /// validation split)
    #[arg(long, default_value_t = 1000)]
    pub val_jets: usize,
}

impl Default for GanSettings {
    fn default() -> Self {
        defaults()
    }
}

impl Settings for GanSettings {
    fn run(&self) -> &RunSettings {
        &self.run
    }
    fn run_mut(&mut self) -> &mut RunSettings {
        &mut self.run
    }
    fn validate(&self) -> Result<()> {
        GanSettings::validate(self)
    }
}

impl GanSettings {
    /// `fc-fc-wgan-gp` and the like.
    pub fn variant(&self) -> String {
        let g = match self.generator {
            GeneratorArch::Fc => "fc",
            GeneratorArch::Mp => "mp",
        };
        let d = match self.discriminator {
            DiscriminatorArch::Fc => "fc",
            DiscriminatorArch::Mp => "mp",
            DiscriminatorArch::Pointnet => "pointnet",
        };
        format!("{g}-{d}-{}", self.loss.name())
    }

    /// One line saying what will be trained on what.
    pub fn describe(&self, data: &crate::data::JetNetData) -> String {
        format!(
            "training a {} GAN (latent {}, {}×{} layers, {} critic steps per generator step) on {} ({} jets × {} particles) on {}, {} generator steps of {} jets",
            self.variant(),
            self.latent,
            self.depth,
            self.hidden,
            self.critic_steps,
            self.run.data_path().display(),
            data.n_jets,
            data.n_particles,
            self.run.device,
            self.run.steps_for(data.n_jets * 7 / 10),
            self.run.batch
        )
    }

    /// Every option in range, before any file is read or written.
    pub fn validate(&self) -> Result<()> {
        self.run.validate()?;
        let bad = |m: String| Err(Error::invalid(m));
        if self.generator != GeneratorArch::Fc || self.discriminator != DiscriminatorArch::Fc {
            return bad(format!(
                "--generator {:?} --discriminator {:?}: only the fc generator and fc \
                 discriminator are in this build (MPGAN's message passing and PointNet-Mix are not yet)",
                self.generator, self.discriminator
            )
            .to_lowercase());
        }
        for (name, v, max) in [
            ("--latent", self.latent, 4096),
            ("--hidden", self.hidden, 8192),
            ("--depth", self.depth, 16),
            ("--cramer-dim", self.cramer_dim, 8192),
            ("--critic-steps", self.critic_steps, 100),
            (
                "--val-jets",
                self.val_jets,
                crate::runs::settings::MAX_BATCH,
            ),
        ] {
            if v == 0 || v > max {
                return bad(format!("{name} must be in 1..={max}, got {v}"));
            }
        }
        for (name, v) in [("--lr-g", self.lr_g), ("--lr-d", self.lr_d)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be positive and finite, got {v}"));
            }
        }
        if !(self.gp_lambda.is_finite() && self.gp_lambda >= 0.0) {
            return bad(format!(
                "--gp-lambda must be ≥ 0 and finite, got {}",
                self.gp_lambda
            ));
        }
        if !(0.0..1.0).contains(&self.ema) {
            return bad(format!("--ema must be in [0, 1), got {}", self.ema));
        }
        Ok(())
    }
}
