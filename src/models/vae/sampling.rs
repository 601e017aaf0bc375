//! Using a trained VAE/AE: encode jets to codes, reconstruct them, score them (the
//! per-jet reconstruction loss: the anomaly score) and generate new jets by decoding codes
//! drawn from the prior — N(0, I) for a VAE; for an AE (which has none) N(mean, diag std²)
//! of the training codes; or, when the checkpoint carries one, the learned flow prior (in
//! units of the training codes' standardisation). [`VaeGenerator`] is the families'
//! [`Generator`].

use std::path::Path;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::Result;
use crate::models::vae::checkpoint::{load_checkpoint, TrainedVae};
use crate::models::vae::data::Clouds;
use crate::models::vae::loss::{recon_per_jet, LossBatch};
use crate::nn::Ctx;
use crate::rng::Rng;
use crate::runs::generator::{Conditioning, Generator};
use crate::tensor::Tensor;

/// Jets per forward pass when encoding, decoding or scoring many.
pub const CHUNK: usize = 1000;

/// Which prior codes are drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    /// The learned flow prior when the checkpoint has one, else the family's default.
    Auto,
    /// N(0, I) (VAE) or N(mean, std²) of the training codes (AE), ignoring a flow prior.
    Gaussian,
}

/// The codes (μ) and log-variances (empty for an AE) of `clouds`, `[n, L]` each.
pub fn encode(m: &TrainedVae, clouds: &Clouds, device: Device) -> Result<(Vec<f32>, Vec<f32>)> {
    let (p, d) = (clouds.n_particles, clouds.n_particles * 3);
    let (mut mu, mut logvar) = (Vec::new(), Vec::new());
    for start in (0..clouds.n_jets).step_by(CHUNK) {
        let b = CHUNK.min(clouds.n_jets - start);
        let mut x = clouds.features[start * d..(start + b) * d].to_vec();
        m.spec.standardizer.apply(&mut x);
        let ctx = Ctx::new(false, 0);
        let xv = ctx
            .tape
            .constant(Tensor::from_slice(&x, &[b, p * 3], device)?);
        let enc = m.vae.encode(&ctx, &xv)?;
        mu.extend(enc.mu.value().to_vec()?);
        if let Some(lv) = enc.logvar {
            logvar.extend(lv.value().to_vec()?);
        }
    }
    Ok((mu, logvar))
}

/// Decode codes `z [n, L]` into feature rows `[n, P, 3]` in the representation's units.
pub fn decode(m: &TrainedVae, z: &[f32], device: Device) -> Result<Vec<f32>> {
    let l = m.vae.config.latent;
    let mut out = Vec::with_capacity(z.len() / l * m.vae.config.input());
    let s = &m.spec.standardizer;
    for chunk in z.chunks(CHUNK * l) {
        let b = chunk.len() / l;
        let ctx = Ctx::new(false, 0);
        let zv = ctx
            .tape
            .constant(Tensor::from_slice(chunk, &[b, l], device)?);
        let xhat = m.vae.decode(&ctx, &zv)?.value().to_vec()?;
        out.extend(
            xhat.iter()
                .enumerate()
                .map(|(k, &v)| v * s.std[k % 3] + s.mean[k % 3]),
        );
    }
    Ok(out)
}

/// The reconstructions of `clouds` (decoded from z = μ), `[n, P, 3]`.
pub fn reconstruct(m: &TrainedVae, clouds: &Clouds, device: Device) -> Result<Vec<f32>> {
    let (mu, _) = encode(m, clouds, device)?;
    decode(m, &mu, device)
}

/// The reconstruction loss of every jet (z = μ, the model's own loss and weights): the
/// anomaly score.
pub fn recon_scores(m: &TrainedVae, clouds: &Clouds, device: Device) -> Result<Vec<f64>> {
    let (p, d) = (clouds.n_particles, clouds.n_particles * 3);
    let mut scores = Vec::with_capacity(clouds.n_jets);
    for start in (0..clouds.n_jets).step_by(CHUNK) {
        let b = CHUNK.min(clouds.n_jets - start);
        let raw = clouds.features[start * d..(start + b) * d].to_vec();
        let mask = clouds.mask[start * p..(start + b) * p].to_vec();
        let batch = LossBatch::new(raw, mask, p, &m.spec, device)?;
        let ctx = Ctx::new(false, 0);
        let x = ctx.tape.constant(batch.x.clone());
        let enc = m.vae.encode(&ctx, &x)?;
        let xhat = m.vae.decode(&ctx, &enc.mu)?;
        let r = recon_per_jet(&ctx, &m.spec, &batch, &xhat)?;
        scores.extend(r.value().to_vec_f64()?);
    }
    Ok(scores)
}

/// The negative log-density of every jet's code z = μ(x) under the model's generation prior
/// (the anomaly score of the latent space; higher = less typical), up to one constant per
/// model: with a learned flow prior, −ln p_flow(ẑ) of the standardised code ẑ = (z − m)/s
/// (m, s the training codes' mean and spread, as the flow was fitted); without one,
/// ½‖z‖² for a VAE (N(0, I)) and ½‖ẑ‖² for an AE (the Gaussian of its training codes).
pub fn latent_scores(m: &TrainedVae, clouds: &Clouds, device: Device) -> Result<Vec<f64>> {
    let l = m.vae.config.latent;
    let (mut z, _) = encode(m, clouds, device)?;
    let standardised = m.prior.is_some() || !m.vae.config.variational;
    if standardised {
        super::prior::standardise(&mut z, m);
    }
    let Some(flow) = &m.prior else {
        return Ok(z
            .chunks_exact(l)
            .map(|c| 0.5 * c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>())
            .collect());
    };
    let mut scores = Vec::with_capacity(clouds.n_jets);
    for chunk in z.chunks(CHUNK * l) {
        let ctx = Ctx::new(false, 0);
        let zv = ctx
            .tape
            .constant(Tensor::from_slice(chunk, &[chunk.len() / l, l], device)?);
        let lp = flow.log_prob(&ctx, &zv, None)?.value().to_vec_f64()?;
        scores.extend(lp.iter().map(|&v| -v));
    }
    Ok(scores)
}

/// `n` codes `[n, L]` drawn from `prior` (seeded).
pub fn sample_codes(
    m: &TrainedVae,
    n: usize,
    seed: u64,
    prior: Prior,
    device: Device,
) -> Result<Vec<f32>> {
    let l = m.vae.config.latent;
    let mut rng = Rng::new(seed);
    let eps = rng.normal(&[n, l], 0.0, 1.0, Device::Cpu)?.to_vec()?;
    let shift = |v: Vec<f32>| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(k, &e)| e * m.latent_std[k % l] + m.latent_mean[k % l])
            .collect()
    };
    match (&m.prior, prior) {
        (Some(flow), Prior::Auto) => {
            let mut out = Vec::with_capacity(n * l);
            for chunk in eps.chunks(CHUNK * l) {
                let b = chunk.len() / l;
                let ctx = Ctx::new(false, 0);
                let z = ctx
                    .tape
                    .constant(Tensor::from_slice(chunk, &[b, l], device)?);
                let (x, _) = flow.sample_from_noise(&ctx, &z, None)?;
                out.extend(x.value().to_vec()?);
            }
            Ok(shift(out))
        }
        _ if m.vae.config.variational => Ok(eps),
        _ => Ok(shift(eps)),
    }
}

/// `n` generated jets (JetNet layout) decoded from codes of `prior`.
pub fn generate_jets(
    m: &TrainedVae,
    n: usize,
    seed: u64,
    prior: Prior,
    device: Device,
) -> Result<JetNetData> {
    let z = sample_codes(m, n.max(1), seed, prior, device)?;
    m.decoded_jets(&decode(m, &z, device)?)
}

/// A trained VAE or AE as a [`Generator`].
pub struct VaeGenerator {
    pub model: TrainedVae,
    pub device: Device,
}

impl VaeGenerator {
    /// Load a checkpoint onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<VaeGenerator> {
        device.ensure_available()?;
        Ok(VaeGenerator {
            model: load_checkpoint(path, device)?,
            device,
        })
    }
}

impl Generator for VaeGenerator {
    fn family(&self) -> &'static str {
        self.model.family()
    }
    fn variant(&self) -> String {
        let prior = if self.model.prior.is_some() {
            "+flow-prior"
        } else {
            ""
        };
        format!("{}{prior}", self.model.spec.loss.name())
    }
    fn particles(&self) -> usize {
        self.model.vae.config.particles
    }
    fn conditioning(&self) -> Conditioning {
        Conditioning::default()
    }
    fn device(&self) -> Device {
        self.device
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        generate_jets(&self.model, n, seed, Prior::Auto, self.device)
    }
}
