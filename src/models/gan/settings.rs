//! The GAN family's settings: one struct for `jetgen train gan`, its `--config` files and
//! the run's `config.json` (see [`crate::runs::settings`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runs::settings::{defaults, RunSettings, Settings};

/// The generator architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorArch {
    /// Fully connected: latent vector → all particles at once (the r-GAN / IML-talk style);
    /// in the MPGAN family it also reads the drawn multiplicity N/P and outputs tanh features.
    Fc,
    /// Message passing on the particle graph (MPGAN).
    Mp,
}

/// The discriminator (critic) architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscriminatorArch {
    /// Fully connected on the flattened cloud.
    Fc,
    /// Message passing (MPGAN).
    Mp,
    /// PointNet-Mix (per-particle MLP, max ⊕ mean pooling, MLP).
    Pointnet,
}

/// The optimizer of both networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanOptimizer {
    /// RMSprop for the MPGAN family (any mp or pointnet network), Adam for fc-fc.
    Auto,
    /// Adam, β = (0.5, 0.9).
    Adam,
    /// RMSprop (PyTorch defaults α 0.99, ε 1e-8), MPGAN's optimizer.
    Rmsprop,
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
///
/// A GAN with an mp generator or an mp/pointnet discriminator ("the MPGAN family") works on
/// MPGAN's particle representation (`[η, φ, pT, mask]` per particle, multiplicities drawn
/// from the data) and by default uses MPGAN's released gluon recipe: RMSprop, 1 critic step
/// per generator step, LSGAN, lr 1e-5 (G) / 3e-5 (D) (`trained_models/mp_g/args.txt`; quark
/// 5e-6/1.5e-5, top 2e-5/6e-5). fc-fc works on standardised flat vectors with WGAN-GP, Adam,
/// 5 critic steps and lr 1e-4 / 1e-4.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct GanSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunSettings,
    /// Generator: fc (r-GAN style) or mp (MPGAN)
    #[arg(long, value_enum, default_value_t = GeneratorArch::Fc)]
    pub generator: GeneratorArch,
    /// Discriminator: fc, mp (MPGAN) or pointnet (PointNet-Mix)
    #[arg(long, value_enum, default_value_t = DiscriminatorArch::Fc)]
    pub discriminator: DiscriminatorArch,
    /// Loss: ls, wgan-gp or cramer [default: ls (MPGAN's) for the MPGAN family, wgan-gp for fc-fc]
    #[arg(long, value_enum)]
    pub loss: Option<GanLoss>,
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
    /// Discriminator steps per generator step [default: 1 for the MPGAN family, 5 for fc-fc]
    #[arg(long)]
    pub critic_steps: Option<usize>,
    /// λ of the gradient penalty (wgan-gp, cramer)
    #[arg(long, default_value_t = 10.0)]
    pub gp_lambda: f64,
    /// Generator learning rate [default: 1e-5 for the MPGAN family, 1e-4 for fc-fc]
    #[arg(long)]
    pub lr_g: Option<f64>,
    /// Discriminator learning rate [default: 3e-5 for the MPGAN family, 1e-4 for fc-fc]
    #[arg(long)]
    pub lr_d: Option<f64>,
    /// Optimizer: auto (RMSprop for the MPGAN family, Adam for fc-fc), adam or rmsprop
    #[arg(long, value_enum, default_value_t = GanOptimizer::Auto)]
    pub optimizer: GanOptimizer,
    /// Node features of the message-passing networks (and the MP generator's per-particle
    /// noise size)
    #[arg(long, default_value_t = 32)]
    pub node_features: usize,
    /// Edge MLP widths of every message-passing layer
    #[arg(long, value_delimiter = ',', default_value = "96,160,192")]
    pub edge_mlp: Vec<usize>,
    /// Node MLP hidden widths of every message-passing layer
    #[arg(long, value_delimiter = ',', default_value = "256,256")]
    pub node_mlp: Vec<usize>,
    /// Message-passing layers of the mp generator and the mp discriminator
    #[arg(long, default_value_t = 2)]
    pub mp_iters: usize,
    /// σ of the MP generator's per-particle Gaussian noise
    #[arg(long, default_value_t = 0.2)]
    pub noise_sd: f64,
    /// Dropout in the mp discriminator's MLPs (MPGAN's PointNet-Mix has none)
    #[arg(long, default_value_t = 0.5)]
    pub d_dropout: f64,
    /// PointNet-Mix per-particle MLP widths (MPGAN's `--pointnetd-pointfc`)
    #[arg(long, value_delimiter = ',', default_value = "64,128,1024")]
    pub pointnet_mlp: Vec<usize>,
    /// PointNet-Mix MLP widths after the pooling (MPGAN's `--pointnetd-fc`)
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub pointnet_head: Vec<usize>,
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
        format!("{g}-{d}-{}", self.loss().name())
    }

    /// True for the MPGAN family (an mp generator or an mp/pointnet discriminator): MPGAN's
    /// particle representation, masks and recipe.
    pub fn particle_layout(&self) -> bool {
        self.generator == GeneratorArch::Mp || self.discriminator != DiscriminatorArch::Fc
    }

    /// (generator, discriminator) learning rates, defaults resolved.
    pub fn learning_rates(&self) -> (f64, f64) {
        let (g, d) = if self.particle_layout() {
            (1e-5, 3e-5)
        } else {
            (1e-4, 1e-4)
        };
        (self.lr_g.unwrap_or(g), self.lr_d.unwrap_or(d))
    }

    /// The loss, default resolved.
    pub fn loss(&self) -> GanLoss {
        self.loss.unwrap_or(if self.particle_layout() {
            GanLoss::Ls
        } else {
            GanLoss::WganGp
        })
    }

    /// Critic steps per generator step, default resolved.
    pub fn critic_steps(&self) -> usize {
        self.critic_steps
            .unwrap_or(if self.particle_layout() { 1 } else { 5 })
    }

    /// The optimizer, `auto` resolved.
    pub fn optimizer(&self) -> GanOptimizer {
        match self.optimizer {
            GanOptimizer::Auto if self.particle_layout() => GanOptimizer::Rmsprop,
            GanOptimizer::Auto => GanOptimizer::Adam,
            other => other,
        }
    }

    /// The message-passing sizes.
    pub fn mp_config(&self) -> crate::models::gan::mp::MpConfig {
        crate::models::gan::mp::MpConfig {
            node_features: self.node_features,
            edge: self.edge_mlp.clone(),
            node: self.node_mlp.clone(),
            iters: self.mp_iters,
        }
    }

    /// One line saying what will be trained on what.
    pub fn describe(&self, data: &crate::data::JetNetData) -> String {
        format!(
            "training a {} GAN (latent {}, {}×{} layers, {} critic steps per generator step, {:?}, lr {:?}) on {} ({} jets × {} particles) on {}, {} generator steps of {} jets",
            self.variant(),
            self.latent,
            self.depth,
            self.hidden,
            self.critic_steps(),
            self.optimizer(),
            self.learning_rates(),
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
        self.mp_config().validate()?;
        for (name, v, max) in [
            ("--latent", self.latent, 4096),
            ("--hidden", self.hidden, 8192),
            ("--depth", self.depth, 16),
            ("--cramer-dim", self.cramer_dim, 8192),
            ("--critic-steps", self.critic_steps(), 100),
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
        let (lr_g, lr_d) = self.learning_rates();
        for (name, v) in [("--lr-g", lr_g), ("--lr-d", lr_d)] {
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
        if !(self.noise_sd.is_finite() && self.noise_sd > 0.0) {
            return bad(format!("--noise-sd must be > 0, got {}", self.noise_sd));
        }
        if !(0.0..1.0).contains(&self.d_dropout) {
            return bad(format!(
                "--d-dropout must be in [0, 1), got {}",
                self.d_dropout
            ));
        }
        if self.pointnet_mlp.is_empty()
            || self.pointnet_mlp.len() > 8
            || self.pointnet_head.len() > 8
            || self
                .pointnet_mlp
                .iter()
                .chain(&self.pointnet_head)
                .any(|&v| v == 0 || v > 4096)
        {
            return bad(
                "--pointnet-mlp / --pointnet-head: 1..=8 and ≤ 8 widths in 1..=4096".into(),
            );
        }
        if !(0.0..1.0).contains(&self.ema) {
            return bad(format!("--ema must be in [0, 1), got {}", self.ema));
        }
        Ok(())
    }
}
