//! The jet VAE (and plain AE): an MLP encoder from the flattened standardised cloud
//! `[B, P·3]` to (μ, log σ²) `[B, L]` each (the AE: to z directly), an MLP decoder from z
//! back to `[B, P·3]`; ReLU between layers, linear outputs.
//!
//! ```text
//! VAE:  (μ, log σ²) = enc(x),  z = μ + σ ⊙ ε (ε ~ N(0, I)),  x̂ = dec(z)
//!       KL(q(z|x) ‖ N(0, I)) = ½ Σ_d (μ_d² + σ_d² − log σ_d² − 1)   per jet
//! AE:   z = enc(x),  x̂ = dec(z)
//! ```
//! Parameter names: `encoder.{2i}.weight`, `decoder.{2i}.bias`, … (a PyTorch
//! `nn.Sequential` of Linear/ReLU modules).

use serde::{Deserialize, Serialize};

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Activation, Ctx, Mlp, Module, Param};
use crate::rng::Rng;

/// Architecture of a [`JetVae`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Particles per jet (P).
    pub particles: usize,
    /// Latent dimensions (L).
    pub latent: usize,
    /// Encoder hidden widths; the decoder uses them in reverse.
    pub hidden: Vec<usize>,
    /// Whether the encoder is variational (outputs μ and log σ²) or a plain AE.
    pub variational: bool,
}

impl VaeConfig {
    /// Flattened input width P·3.
    pub fn input(&self) -> usize {
        self.particles * 3
    }
    /// Sizes in range: every size positive, particles ≤ 4096, latent ≤ 4096, at most 16 hidden
    /// layers of ≤ 65536, and at most 2³⁰ parameters in all (checked before anything is
    /// allocated, from the command line and from checkpoint metadata alike).
    pub fn validate(&self) -> Result<()> {
        if self.particles == 0 || self.latent == 0 || self.hidden.contains(&0) {
            return Err(Error::invalid(format!(
                "VAE sizes must be positive: {self:?}"
            )));
        }
        if self.particles > 4096
            || self.latent > 4096
            || self.hidden.len() > 16
            || self.hidden.iter().any(|&h| h > 65536)
        {
            return Err(Error::invalid(format!(
                "VAE sizes out of range (particles and latent ≤ 4096, at most 16 hidden layers \
                 of ≤ 65536): {self:?}"
            )));
        }
        if self.parameter_count() > 1 << 30 {
            return Err(Error::invalid(format!(
                "a VAE of {} parameters is too large (at most 2^30): {self:?}",
                self.parameter_count()
            )));
        }
        Ok(())
    }

    /// Weights and biases of the encoder and decoder (saturating; sizes unchecked).
    pub fn parameter_count(&self) -> u128 {
        let out = if self.variational { 2 } else { 1 } * self.latent as u128;
        let mut widths = vec![self.input() as u128];
        widths.extend(self.hidden.iter().map(|&h| h as u128));
        let layers = |w: &[u128]| -> u128 {
            w.windows(2).fold(0u128, |acc, p| {
                acc.saturating_add(p[0].saturating_mul(p[1]).saturating_add(p[1]))
            })
        };
        let mut enc = widths.clone();
        enc.push(out);
        let mut dec = vec![self.latent as u128];
        dec.extend(widths.iter().skip(1).rev());
        dec.push(self.input() as u128);
        layers(&enc).saturating_add(layers(&dec))
    }
}

/// The encoder's output for a batch.
pub struct Encoded {
    /// `[B, L]` posterior means (the AE's codes).
    pub mu: Var,
    /// `[B, L]` log-variances (None for the AE).
    pub logvar: Option<Var>,
}

/// Encoder and decoder.
pub struct JetVae {
    pub config: VaeConfig,
    pub encoder: Mlp,
    pub decoder: Mlp,
}

/// log σ² is clamped to this range before use, so e^{log σ²} never overflows.
pub const LOGVAR_RANGE: (f64, f64) = (-30.0, 20.0);

impl JetVae {
    /// Freshly initialised networks (PyTorch's Linear initialisation).
    pub fn new(config: VaeConfig, rng: &mut Rng, device: Device) -> Result<JetVae> {
        config.validate()?;
        let enc_out = if config.variational {
            2 * config.latent
        } else {
            config.latent
        };
        let mut enc = vec![config.input()];
        enc.extend(&config.hidden);
        enc.push(enc_out);
        let mut dec = vec![config.latent];
        dec.extend(config.hidden.iter().rev());
        dec.push(config.input());
        Ok(JetVae {
            encoder: Mlp::new("encoder", &enc, Activation::Relu, rng, device)?,
            decoder: Mlp::new("decoder", &dec, Activation::Relu, rng, device)?,
            config,
        })
    }

    /// `x [B, P·3]` → (μ, log σ²).
    pub fn encode(&self, ctx: &Ctx, x: &Var) -> Result<Encoded> {
        let h = self.encoder.forward(ctx, x)?;
        if !self.config.variational {
            return Ok(Encoded {
                mu: h,
                logvar: None,
            });
        }
        let l = self.config.latent;
        let mu = h.narrow(1, 0, l)?;
        let logvar = h.narrow(1, l, l)?.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1)?;
        Ok(Encoded {
            mu,
            logvar: Some(logvar),
        })
    }

    /// `z [B, L]` → `x̂ [B, P·3]`.
    pub fn decode(&self, ctx: &Ctx, z: &Var) -> Result<Var> {
        self.decoder.forward(ctx, z)
    }
}

impl Module for JetVae {
    fn params(&self) -> Vec<Param> {
        let mut p = self.encoder.params();
        p.extend(self.decoder.params());
        p
    }
}

/// The reparameterisation z = μ + e^{½ log σ²} ⊙ ε for given noise `eps [B, L]`: gradients
/// reach μ (∂z/∂μ = 1) and log σ² (∂z/∂log σ² = ½ σ ε).
pub fn reparameterize(mu: &Var, logvar: &Var, eps: &Var) -> Result<Var> {
    mu.add(&logvar.mul_scalar(0.5)?.exp()?.mul(eps)?)
}

/// KL(N(μ, σ²) ‖ N(0, I)) per latent dimension and jet, `[B, L]`:
/// ½ (μ² + e^{log σ²} − log σ² − 1).
pub fn kl_per_dim(mu: &Var, logvar: &Var) -> Result<Var> {
    mu.square()?
        .add(&logvar.exp()?)?
        .sub(logvar)?
        .add_scalar(-1.0)?
        .mul_scalar(0.5)
}

/// KL per jet summed over the latent dimensions and averaged over the batch (a scalar).
pub fn kl_mean(mu: &Var, logvar: &Var) -> Result<Var> {
    kl_per_dim(mu, logvar)?.sum(&[1], false)?.mean_all()
}
