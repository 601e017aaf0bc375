//! The fully connected GAN networks on flattened particle clouds x ∈ ℝ^{3P} (standardised
//! η_rel, φ_rel, pT_rel per particle, pT-ordered):
//! * generator G: z ∈ ℝ^L, z ~ N(0, 1) → Linear → LeakyReLU(0.2) → … → Linear → x;
//! * critic D: x → Linear → LeakyReLU(0.2) → … → Linear → ℝ^out (out = 1 for LSGAN and
//!   WGAN-GP, the Cramér critic's h dimension for CramerGAN). No normalisation layers, so the
//!   gradient penalty sees per-sample gradients.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::Result;
use crate::nn::{Activation, Ctx, Mlp, Module, Param};
use crate::rng::Rng;

/// Sizes of a GAN MLP: `[input, hidden × depth, output]`.
pub fn mlp_sizes(input: usize, hidden: usize, depth: usize, output: usize) -> Vec<usize> {
    std::iter::once(input)
        .chain(std::iter::repeat_n(hidden, depth))
        .chain(std::iter::once(output))
        .collect()
}

/// The FC generator.
pub struct FcGenerator {
    pub mlp: Mlp,
    pub latent: usize,
}

impl FcGenerator {
    /// A new generator `latent → hidden^depth → features` (parameters `generator.*`).
    pub fn new(
        latent: usize,
        hidden: usize,
        depth: usize,
        features: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Result<FcGenerator> {
        Ok(FcGenerator {
            mlp: Mlp::new(
                "generator",
                &mlp_sizes(latent, hidden, depth, features),
                Activation::LeakyRelu(0.2),
                rng,
                device,
            )?,
            latent,
        })
    }
    /// `z [B, L]` → `x [B, 3P]`.
    pub fn forward(&self, ctx: &Ctx, z: &Var) -> Result<Var> {
        self.mlp.forward(ctx, z)
    }
}

impl Module for FcGenerator {
    fn params(&self) -> Vec<Param> {
        self.mlp.params()
    }
}

/// The FC critic.
pub struct FcCritic {
    pub mlp: Mlp,
}

impl FcCritic {
    /// A new critic `features → hidden^depth → out` (parameters `critic.*`).
    pub fn new(
        features: usize,
        hidden: usize,
        depth: usize,
        out: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Result<FcCritic> {
        Ok(FcCritic {
            mlp: Mlp::new(
                "critic",
                &mlp_sizes(features, hidden, depth, out),
                Activation::LeakyRelu(0.2),
                rng,
                device,
            )?,
        })
    }
    /// `x [B, 3P]` → `[B, out]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        self.mlp.forward(ctx, x)
    }
}

impl Module for FcCritic {
    fn params(&self) -> Vec<Param> {
        self.mlp.params()
    }
}
