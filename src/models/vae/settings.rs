//! The VAE/AE families' settings: one struct for `jetgen train vae` / `jetgen train ae`,
//! their `--config` files and the run's `config.json` (see [`crate::runs::settings`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runs::settings::{defaults, RunSettings, Settings};

/// The reconstruction loss (per jet, averaged over the batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconLoss {
    /// Σ over the P × 3 standardised entries of (x̂ − x)² (not permutation invariant).
    Mse,
    /// Chamfer distance of the standardised particle clouds (squared Euclidean, summed
    /// over the particles in both directions; permutation invariant).
    Chamfer,
    /// Chamfer + γ_pT·((pT − pT′)/s_pT)² + γ_m·((m − m′)/s_m)² of the summed massless
    /// 4-momenta (s = the training jets' standard deviations).
    ChamferPhysics,
    /// Sinkhorn approximation of the EMD in (η, φ) with pT-fraction weights (the
    /// EMD-VAE; 30-particle relative jets only); loss = EMD/(2β²) + KL.
    Sinkhorn,
}

impl ReconLoss {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ReconLoss::Mse => "mse",
            ReconLoss::Chamfer => "chamfer",
            ReconLoss::ChamferPhysics => "chamfer-physics",
            ReconLoss::Sinkhorn => "sinkhorn",
        }
    }
    /// Parse [`ReconLoss::name`].
    pub fn parse(s: &str) -> Result<ReconLoss> {
        [
            ReconLoss::Mse,
            ReconLoss::Chamfer,
            ReconLoss::ChamferPhysics,
            ReconLoss::Sinkhorn,
        ]
        .into_iter()
        .find(|l| l.name() == s)
        .ok_or_else(|| Error::invalid(format!("unknown reconstruction loss '{s}'")))
    }
}

/// How β moves during training (log-linear between `--beta` and `--beta-end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// β = --beta throughout.
    Constant,
    /// log β moves linearly from --beta to --beta-end over the run.
    Anneal,
    /// From --beta to --beta-end in the first half, back in the second (Collins' down and
    /// up sweeps).
    AnnealAndBack,
}

/// How padded particles (zero rows) enter the Chamfer loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChamferPadding {
    /// As points at zero momentum (the study's zero-padded clouds).
    Points,
    /// Masked out of the input cloud (every decoded particle must match a real one).
    Masked,
}

/// Everything a VAE or AE training run is configured by.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct VaeSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunSettings,
    /// mse, chamfer, chamfer-physics or sinkhorn (EMD-VAE)
    #[arg(long, value_enum, default_value_t = ReconLoss::Chamfer)]
    pub loss: ReconLoss,
    /// Weight of the KL term: loss = recon + β·KL; with --loss sinkhorn the dimensionful
    /// β of loss = EMD/(2β²) + KL (units of the EMD: radians × pT fraction)
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// β at the end of an annealing schedule (--beta-schedule anneal or anneal-and-back)
    #[arg(long)]
    pub beta_end: Option<f64>,
    /// constant, anneal (log-linear --beta → --beta-end) or anneal-and-back
    #[arg(long, value_enum, default_value_t = BetaSchedule::Constant)]
    pub beta_schedule: BetaSchedule,
    /// Latent dimensions
    #[arg(long, default_value_t = 20)]
    pub latent: usize,
    /// Particles per jet (the first, highest-pT ones): 100 with the Cartesian
    /// g100_cartesian.npy, ≤ 30 with JetNet files
    #[arg(long, default_value_t = 30)]
    pub particles: usize,
    /// Hidden layer widths of the encoder (the decoder mirrors them), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "512,256")]
    pub hidden: Vec<usize>,
    /// Weight α of the Chamfer term
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Weight γ_pT of the jet-pT term (chamfer-physics)
    #[arg(long, default_value_t = 1.0)]
    pub gamma_pt: f64,
    /// Weight γ_m of the jet-mass term (chamfer-physics)
    #[arg(long, default_value_t = 1.0)]
    pub gamma_mass: f64,
    /// points (padded rows are zero-momentum points) or masked (left out of the input cloud)
    #[arg(long, value_enum, default_value_t = ChamferPadding::Points)]
    pub chamfer_padding: ChamferPadding,
    /// Sinkhorn: the final ε (radians × pT fraction)
    #[arg(long, default_value_t = 0.01)]
    pub epsilon: f64,
    /// Sinkhorn: ε-annealing factor per step, from the clouds' diameter down to --epsilon
    #[arg(long, default_value_t = 0.63)]
    pub eps_scaling: f64,
    /// Sinkhorn: iterations at the final ε
    #[arg(long, default_value_t = 10)]
    pub sinkhorn_iters: usize,
    /// Validation jets (the first of the validation split) for the early-stopping score
    #[arg(long, default_value_t = 2000)]
    pub val_jets: usize,
}

impl Default for VaeSettings {
    fn default() -> Self {
        defaults()
    }
}

impl Settings for VaeSettings {
    fn run(&self) -> &RunSettings {
        &self.run
    }
    fn run_mut(&mut self) -> &mut RunSettings {
        &mut self.run
    }
    fn validate(&self) -> Result<()> {
        VaeSettings::validate(self)
    }
}

impl VaeSettings {
    /// β at `step` of `steps` (1-based) under the schedule: log-linear interpolation.
    pub fn beta_at(&self, step: usize, steps: usize) -> f64 {
        let end = self.beta_end.unwrap_or(self.beta);
        let t = if steps <= 1 {
            1.0
        } else {
            (step.saturating_sub(1)) as f64 / (steps - 1) as f64
        };
        let t = match self.beta_schedule {
            BetaSchedule::Constant => return self.beta,
            BetaSchedule::Anneal => t,
            BetaSchedule::AnnealAndBack => 1.0 - (2.0 * t - 1.0).abs(),
        };
        (self.beta.ln() + t * (end.ln() - self.beta.ln())).exp()
    }

    /// Every option in range, before anything is read or written.
    pub fn validate(&self) -> Result<()> {
        self.run.validate()?;
        let bad = |m: String| Err(Error::invalid(m));
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(format!(
                "--beta must be positive and finite, got {}",
                self.beta
            ));
        }
        if let Some(e) = self.beta_end {
            if !(e.is_finite() && e > 0.0) {
                return bad(format!("--beta-end must be positive and finite, got {e}"));
            }
        } else if self.beta_schedule != BetaSchedule::Constant {
            return bad("--beta-schedule anneal needs --beta-end".into());
        }
        for (name, v, lo, hi) in [
            ("--latent", self.latent, 1, 4096),
            ("--particles", self.particles, 1, 1024),
            ("--sinkhorn-iters", self.sinkhorn_iters, 1, 100_000),
            ("--val-jets", self.val_jets, 1, 1 << 24),
        ] {
            if v < lo || v > hi {
                return bad(format!("{name} must be in {lo}..={hi}, got {v}"));
            }
        }
        if self.hidden.is_empty() || self.hidden.iter().any(|&h| h == 0 || h > 1 << 15) {
            return bad(format!(
                "--hidden must list widths in 1..=32768, got {:?}",
                self.hidden
            ));
        }
        for (name, v) in [
            ("--alpha", self.alpha),
            ("--gamma-pt", self.gamma_pt),
            ("--gamma-mass", self.gamma_mass),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be ≥ 0 and finite, got {v}"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad(format!("--epsilon must be positive, got {}", self.epsilon));
        }
        if !(self.eps_scaling > 0.0 && self.eps_scaling < 1.0) {
            return bad(format!(
                "--eps-scaling must be in (0, 1), got {}",
                self.eps_scaling
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_schedules_interpolate_log_linearly() {
        let mut s = VaeSettings {
            beta: 1e-3,
            beta_end: Some(1e-1),
            beta_schedule: BetaSchedule::Anneal,
            ..Default::default()
        };
        s.validate().unwrap();
        assert!((s.beta_at(1, 101) - 1e-3).abs() < 1e-12);
        assert!((s.beta_at(51, 101) - 1e-2).abs() < 1e-9);
        assert!((s.beta_at(101, 101) - 1e-1).abs() < 1e-9);
        s.beta_schedule = BetaSchedule::AnnealAndBack;
        assert!((s.beta_at(51, 101) - 1e-1).abs() < 1e-9);
        assert!((s.beta_at(101, 101) - 1e-3).abs() < 1e-12);
        s.beta_end = None;
        assert!(s.validate().unwrap_err().to_string().contains("--beta-end"));
        let d = VaeSettings::default();
        assert_eq!(
            (d.latent, d.particles, d.loss),
            (20, 30, ReconLoss::Chamfer)
        );
        assert_eq!(d.beta_at(7, 10), 0.1);
    }
}
