//! A trained generator of the MPGAN family (MPGAN's particle representation, see
//! [`super::particles`]): the MP generator or the r-GAN FC generator, the training
//! multiplicity histogram, and its checkpoint — one safetensors file with `generator.*`,
//! `multiplicity` `[P + 1]` and, in the metadata, `jetgen_model = gan`,
//! `layout = particles`, the variant and every size.
//!
//! Sampling a batch of B jets: multiplicities N_b ~ histogram; then
//! * MP: z ~ N(0, σ²) `[B, P, L]` (σ = `noise_sd`, MPGAN's 0.2), mask_c from z's first
//!   feature, x = G(z, mask) `[B, P, 3]`;
//! * FC (r-GAN): z ~ N(0, 1) `[B, latent]` with N_b / P appended, x = tanh(G(z)) reshaped
//!   to `[B, P, 3]`, the first N_b particles real;
//!
//! and the critic's input is `[x, mask − 0.5]` `[B, P, 4]`, padded particles set to the
//! data's padding `[0, 0, −0.5, −0.5]`. The drawn mask decides which particles are real:
//! generation keeps them all (pT floored at [`super::particles::MIN_PT`]).

use std::collections::HashMap;
use std::path::Path;

use crate::autograd::Var;
use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::gan::mp::{MpConfig, MpGenerator};
use crate::models::gan::network::FcGenerator;
use crate::models::gan::particles::{from_particles, leading_mask, mask_from_noise, Multiplicity};
use crate::nn::{store, Ctx, Module, Param};
use crate::rng::{mix64, Rng};
use crate::tensor::Tensor;

/// The generator network of a particle-layout GAN.
pub enum ParticleGenerator {
    Mp(MpGenerator),
    /// `[latent + 1] → … → [3P]` (the +1 is N_b / P).
    Fc(FcGenerator),
}

impl ParticleGenerator {
    fn params(&self) -> Vec<Param> {
        match self {
            ParticleGenerator::Mp(g) => g.params(),
            ParticleGenerator::Fc(g) => g.params(),
        }
    }
}

/// The FC generator's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcSizes {
    pub latent: usize,
    pub hidden: usize,
    pub depth: usize,
}

/// A particle-layout generator with what sampling needs.
pub struct TrainedParticleGan {
    pub generator: ParticleGenerator,
    pub multiplicity: Multiplicity,
    pub n_particles: usize,
    /// σ of the MP generator's noise.
    pub noise_sd: f32,
    pub mp: MpConfig,
    pub fc: FcSizes,
    /// e.g. `mp-mp-ls`.
    pub variant: String,
}

/// A batch from the generator: the critic's input `[B, P, 4]` (on `ctx`'s tape, gradients
/// reach the generator) and the mask `[B, P]`.
pub struct ParticleBatch {
    pub x: Var,
    pub mask: Tensor,
}

impl TrainedParticleGan {
    /// A new generator: MP (`fc = None`) or FC.
    pub fn new(
        mp: &MpConfig,
        fc: Option<FcSizes>,
        multiplicity: Multiplicity,
        noise_sd: f32,
        variant: String,
        rng: &mut Rng,
        device: Device,
    ) -> Result<TrainedParticleGan> {
        multiplicity.validate()?;
        let p = multiplicity.counts.len() - 1;
        let (generator, fc) = match fc {
            None => (
                ParticleGenerator::Mp(MpGenerator::new(mp, rng, device)?),
                FcSizes {
                    latent: 0,
                    hidden: 0,
                    depth: 0,
                },
            ),
            Some(s) => (
                ParticleGenerator::Fc(FcGenerator::new(
                    s.latent + 1,
                    s.hidden,
                    s.depth,
                    3 * p,
                    rng,
                    device,
                )?),
                s,
            ),
        };
        Ok(TrainedParticleGan {
            generator,
            multiplicity,
            n_particles: p,
            noise_sd,
            mp: mp.clone(),
            fc,
            variant,
        })
    }

    /// The generator's parameters.
    pub fn params(&self) -> Vec<Param> {
        self.generator.params()
    }

    /// `b` generated jets recorded on `ctx` (noise and multiplicities from `rng`).
    pub fn sample(
        &self,
        ctx: &Ctx,
        b: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Result<ParticleBatch> {
        let p = self.n_particles;
        let counts = self.multiplicity.sample(rng, b);
        let (x, mask) = match &self.generator {
            ParticleGenerator::Mp(g) => {
                let l = self.mp.node_features;
                let z = rng.normal(&[b, p, l], 0.0, self.noise_sd, device)?;
                let zv = z.to_vec()?;
                let first: Vec<f32> = zv.iter().step_by(l).copied().collect();
                let mask = mask_from_noise(&first, &counts, p);
                let mask = Tensor::from_slice(&mask, &[b, p], device)?;
                (g.forward(ctx, &ctx.tape.constant(z), &mask)?, mask)
            }
            ParticleGenerator::Fc(g) => {
                let l = self.fc.latent;
                let z = rng.normal(&[b, l], 0.0, 1.0, device)?.to_vec()?;
                let mut zl = Vec::with_capacity(b * (l + 1));
                for (row, &c) in z.chunks(l.max(1)).zip(&counts) {
                    zl.extend_from_slice(row);
                    zl.push(c as f32 / p as f32);
                }
                let z = Tensor::from_slice(&zl, &[b, l + 1], device)?;
                let out = g.forward(ctx, &ctx.tape.constant(z))?.tanh()?;
                let mask = Tensor::from_slice(&leading_mask(&counts, p), &[b, p], device)?;
                (out.reshape(&[b, p, 3])?, mask)
            }
        };
        // padded particles look exactly like the data's padding [0, 0, −0.5, −0.5]: a critic
        // that reads them (FC, PointNet) cannot tell generated jets by their padding
        let m3 = mask.reshape(&[b, p, 1])?;
        let padding = Tensor::from_slice(&[0.0, 0.0, -0.5], &[1, 1, 3], device)?;
        let x = Var::select(&m3, &x, &ctx.tape.constant(padding))?;
        let feature = ctx.tape.constant(m3).add_scalar(-0.5)?;
        Ok(ParticleBatch {
            x: Var::concat(&[&x, &feature], -1)?,
            mask,
        })
    }
}

/// `n` jets from `m`: chunks of 10,000 (chunk c seeded by `mix64(seed ^ c)`), de-normalised.
pub fn generate_particles(
    m: &TrainedParticleGan,
    n: usize,
    seed: u64,
    device: Device,
) -> Result<JetNetData> {
    if n == 0 {
        return Err(Error::invalid("asked for 0 jets"));
    }
    let mut feats = Vec::with_capacity(n * m.n_particles * 3);
    let mut masks = Vec::with_capacity(n * m.n_particles);
    for (c, start) in (0..n).step_by(10_000).enumerate() {
        let len = (n - start).min(10_000);
        let ctx = Ctx::new(false, 0);
        let mut rng = Rng::new(mix64(seed ^ c as u64));
        let batch = m.sample(&ctx, len, &mut rng, device)?;
        let x = batch.x.value().to_vec()?;
        feats.extend(x.chunks_exact(4).flat_map(|q| [q[0], q[1], q[2]]));
        masks.extend(batch.mask.to_vec()?);
    }
    from_particles(&feats, &masks, m.n_particles)
}

/// Save `m` (its generator's current weights) to `path`.
pub fn save_particle_gan(path: &Path, m: &TrainedParticleGan) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> =
        m.params().iter().map(|p| (p.name(), p.value())).collect();
    let counts = &m.multiplicity.counts;
    tensors.push((
        "multiplicity".into(),
        Tensor::from_slice(counts, &[counts.len()], Device::Cpu)?,
    ));
    let join = |v: &[usize]| {
        v.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let kind = match m.generator {
        ParticleGenerator::Mp(_) => "mp",
        ParticleGenerator::Fc(_) => "fc",
    };
    let meta: HashMap<String, String> = [
        ("jetgen_model", super::FAMILY.to_string()),
        ("jetgen_version", crate::VERSION.to_string()),
        ("layout", "particles".into()),
        ("variant", m.variant.clone()),
        ("generator", kind.into()),
        ("n_particles", m.n_particles.to_string()),
        ("noise_sd", m.noise_sd.to_string()),
        ("node_features", m.mp.node_features.to_string()),
        ("edge", join(&m.mp.edge)),
        ("node", join(&m.mp.node)),
        ("iters", m.mp.iters.to_string()),
        ("latent", m.fc.latent.to_string()),
        ("hidden", m.fc.hidden.to_string()),
        ("depth", m.fc.depth.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    store::save_tensors(path, &tensors, &meta)
}

/// Writes the (untrained) MPGAN generator of `jetgen bench generate`: MPGAN's `args.txt`
/// sizes (2 message-passing layers, 32 node features, edge MLP 96-160-192, node MLP
/// 256-256, noise σ 0.2) and every jet at the full 30 particles (the most work per jet).
pub fn write_bench_checkpoint(path: &Path, device: Device) -> Result<()> {
    let mut counts = vec![0f32; 31];
    counts[30] = 1.0;
    let m = TrainedParticleGan::new(
        &MpConfig {
            node_features: 32,
            edge: vec![96, 160, 192],
            node: vec![256, 256],
            iters: 2,
        },
        None,
        Multiplicity { counts },
        0.2,
        "mp-mp-ls".into(),
        &mut Rng::new(1),
        device,
    )?;
    save_particle_gan(path, &m)
}

/// Whether a checkpoint's metadata says particle layout.
pub fn is_particle_checkpoint(meta: &HashMap<String, String>) -> bool {
    meta.get("layout").map(String::as_str) == Some("particles")
}

/// Load a particle-layout GAN checkpoint (already read into `tensors`, `meta`) onto
/// `device`: every size checked, the file large enough for the model before it is built,
/// every weight's shape checked.
pub fn load_particle_gan(
    path: &Path,
    mut tensors: HashMap<String, Tensor>,
    meta: &HashMap<String, String>,
    device: Device,
) -> Result<TrainedParticleGan> {
    let bad = |m: String| Error::file(path, m);
    let num = |k: &str, zero_ok: bool| -> Result<usize> {
        meta.get(k)
            .and_then(|s| s.parse().ok())
            .filter(|&v: &usize| (zero_ok || v > 0) && v <= 1 << 16)
            .ok_or_else(|| bad(format!("checkpoint has no valid '{k}'")))
    };
    let list = |k: &str| -> Result<Vec<usize>> {
        let s = meta
            .get(k)
            .ok_or_else(|| bad(format!("checkpoint has no '{k}'")))?;
        if s.is_empty() {
            return Ok(vec![]);
        }
        s.split(',')
            .map(|v| v.parse().map_err(|_| bad(format!("bad '{k}' = {s:?}"))))
            .collect()
    };
    let p = num("n_particles", false)?;
    let mp = MpConfig {
        node_features: num("node_features", false)?,
        edge: list("edge")?,
        node: list("node")?,
        iters: num("iters", false)?,
    };
    mp.validate().map_err(|e| bad(e.to_string()))?;
    let fc = FcSizes {
        latent: num("latent", true)?,
        hidden: num("hidden", true)?,
        depth: num("depth", true)?,
    };
    let noise_sd: f32 = meta
        .get("noise_sd")
        .and_then(|s| s.parse().ok())
        .filter(|v: &f32| v.is_finite() && *v > 0.0)
        .ok_or_else(|| bad("checkpoint has no valid 'noise_sd'".into()))?;
    let is_fc = match meta.get("generator").map(String::as_str) {
        Some("mp") => false,
        Some("fc") => true,
        other => return Err(bad(format!("unknown generator {other:?}"))),
    };
    let needed = if is_fc {
        if fc.latent == 0 || fc.hidden == 0 || fc.depth == 0 {
            return Err(bad("FC generator sizes must be positive".into()));
        }
        let (l, h, d, o) = (
            fc.latent as u128 + 1,
            fc.hidden as u128,
            fc.depth as u128,
            3 * p as u128,
        );
        l * h + h + (d - 1) * (h * h + h) + h * o + o
    } else {
        mp.generator_params()
    };
    crate::runs::checkpoint::ensure_room_in(
        path,
        "GAN generator",
        needed,
        crate::runs::checkpoint::values_in(&tensors),
    )?;
    let counts = tensors
        .remove("multiplicity")
        .ok_or_else(|| bad("missing tensor 'multiplicity'".into()))?
        .to_vec()?;
    if counts.len() != p + 1 {
        return Err(bad(format!(
            "multiplicity histogram has {} bins, expected {}",
            counts.len(),
            p + 1
        )));
    }
    let multiplicity = Multiplicity { counts };
    multiplicity.validate().map_err(|e| bad(e.to_string()))?;
    let variant = meta.get("variant").cloned().unwrap_or_default();
    let m = TrainedParticleGan::new(
        &mp,
        is_fc.then_some(fc),
        multiplicity,
        noise_sd,
        variant,
        &mut Rng::new(0),
        device,
    )?;
    for param in m.params() {
        let t = tensors
            .remove(&param.name())
            .ok_or_else(|| bad(format!("missing tensor '{}'", param.name())))?;
        if t.shape() != param.value().shape() {
            return Err(bad(format!(
                "tensor '{}' has shape {:?}, expected {:?}",
                param.name(),
                t.shape(),
                param.value().shape()
            )));
        }
        if t.count_non_finite()? > 0 {
            return Err(bad(format!("tensor '{}' is not finite", param.name())));
        }
        param.set_value(t.to_device(device)?);
    }
    Ok(m)
}
