//! A GAN's two networks and its training data as the training steps see them ([`GanNets`]),
//! for the two data layouts:
//! * [`FlatNets`] — fc-fc on standardised flat vectors `[B, 3P]`;
//! * [`ParticleNets`] — the MPGAN family on MPGAN's particles `[B, P, 4]` (see
//!   [`super::particles`]); the critic reads the mask from the mask feature (> 0 = real).

use std::path::Path;

use crate::autograd::Var;
use crate::data::JetNetData;
use crate::device::Device;
use crate::error::Result;
use crate::models::gan::checkpoint::{generate, save_gan, TrainedGan};
use crate::models::gan::mp::MpCritic;
use crate::models::gan::network::FcCritic;
use crate::models::gan::particle_model::{
    generate_particles, save_particle_gan, TrainedParticleGan,
};
use crate::models::gan::pointnet::PointNetMix;
use crate::nn::{Ctx, Module, Param};
use crate::rng::Rng;
use crate::runs::batch::{draw_with_replacement, gather_rows};
use crate::tensor::Tensor;

/// What the training steps need of a GAN.
pub trait GanNets {
    /// `b` training jets drawn with replacement, as a constant of `ctx`.
    fn real_batch(&self, ctx: &Ctx, rng: &mut Rng, b: usize) -> Result<Var>;
    /// `b` generated jets recorded on `ctx` (gradients reach the generator).
    fn fake_batch(&self, ctx: &Ctx, rng: &mut Rng, b: usize) -> Result<Var>;
    /// The critic's raw output `[B, out]` on a batch of the layout.
    fn critic(&self, ctx: &Ctx, x: &Var) -> Result<Var>;
    /// The generator's parameters.
    fn g_params(&self) -> Vec<Param>;
    /// The critic's parameters.
    fn d_params(&self) -> Vec<Param>;
    /// Write the generator's checkpoint.
    fn save(&self, path: &Path) -> Result<()>;
    /// `n` jets from the generator (seeded).
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData>;
}

/// fc-fc on flat standardised vectors.
pub struct FlatNets {
    pub model: TrainedGan,
    pub critic: FcCritic,
    /// Standardised training vectors `[n_train, 3P]`.
    pub train: Vec<f32>,
    pub device: Device,
}

impl GanNets for FlatNets {
    fn real_batch(&self, ctx: &Ctx, rng: &mut Rng, b: usize) -> Result<Var> {
        let d = 3 * self.model.n_particles;
        let picks = draw_with_replacement(rng, self.train.len() / d, b);
        let rows = gather_rows(&self.train, d, &picks);
        Ok(ctx
            .tape
            .constant(Tensor::from_slice(&rows, &[b, d], self.device)?))
    }
    fn fake_batch(&self, ctx: &Ctx, rng: &mut Rng, b: usize) -> Result<Var> {
        let z = rng.normal(&[b, self.model.generator.latent], 0.0, 1.0, self.device)?;
        self.model.generator.forward(ctx, &ctx.tape.constant(z))
    }
    fn critic(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        self.critic.forward(ctx, x)
    }
    fn g_params(&self) -> Vec<Param> {
        self.model.generator.params()
    }
    fn d_params(&self) -> Vec<Param> {
        self.critic.params()
    }
    fn save(&self, path: &Path) -> Result<()> {
        save_gan(path, &self.model)
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        generate(&self.model, n, seed, self.device)
    }
}

/// The discriminators of the MPGAN family.
pub enum ParticleCritic {
    Mp(MpCritic),
    PointNet(PointNetMix),
    /// The FC critic on the flattened `[B, 4P]` particles, padded particles zeroed.
    Fc(FcCritic),
}

impl ParticleCritic {
    /// `x [B, P, 4]` → `[B, out]`, the mask read from x's last feature (> 0 = real).
    pub fn forward(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        let mask = mask_of(x)?;
        match self {
            ParticleCritic::Mp(d) => d.forward(ctx, x, &mask),
            ParticleCritic::PointNet(d) => d.forward(ctx, x, &mask),
            ParticleCritic::Fc(d) => {
                let (b, p) = (x.shape()[0], x.shape()[1]);
                let keep = x.constant(mask.reshape(&[b, p, 1])?);
                d.forward(ctx, &x.mul(&keep)?.reshape(&[b, 4 * p])?)
            }
        }
    }

    /// The critic's parameters.
    pub fn params(&self) -> Vec<Param> {
        match self {
            ParticleCritic::Mp(d) => d.params(),
            ParticleCritic::PointNet(d) => d.params(),
            ParticleCritic::Fc(d) => d.params(),
        }
    }
}

/// The mask `[B, P]` (x's dtype) of particles `x [B, P, 4]`: 1 where the mask feature > 0.
pub fn mask_of(x: &Var) -> Result<Tensor> {
    let &[b, p, 4] = x.shape() else {
        return Err(crate::error::Error::shape(
            "gan critic",
            format!("particles must be [B, P, 4], got {:?}", x.shape()),
        ));
    };
    let v = x.value().to_vec_f64()?;
    let m: Vec<f32> = v.chunks(4).map(|q| (q[3] > 0.0) as u8 as f32).collect();
    Tensor::from_slice(&m, &[b, p], x.value().device())?.to_dtype(x.value().dtype())
}

/// The MPGAN family on particles.
pub struct ParticleNets {
    pub model: TrainedParticleGan,
    pub critic: ParticleCritic,
    /// Normalised training particles `[n_train, P, 4]`.
    pub train: Vec<f32>,
    pub device: Device,
}

impl GanNets for ParticleNets {
    fn real_batch(&self, ctx: &Ctx, rng: &mut Rng, b: usize) -> Result<Var> {
        let (p, d) = (self.model.n_particles, 4 * self.model.n_particles);
        let picks = draw_with_replacement(rng, self.train.len() / d, b);
        let rows = gather_rows(&self.train, d, &picks);
        Ok(ctx
            .tape
            .constant(Tensor::from_slice(&rows, &[b, p, 4], self.device)?))
    }
    fn fake_batch(&self, ctx: &Ctx, rng: &mut Rng, b: usize) -> Result<Var> {
        Ok(self.model.sample(ctx, b, rng, self.device)?.x)
    }
    fn critic(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        self.critic.forward(ctx, x)
    }
    fn g_params(&self) -> Vec<Param> {
        self.model.params()
    }
    fn d_params(&self) -> Vec<Param> {
        self.critic.params()
    }
    fn save(&self, path: &Path) -> Result<()> {
        save_particle_gan(path, &self.model)
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        generate_particles(&self.model, n, seed, self.device)
    }
}
