//! GAN checkpoints (the flat fc-fc layout here; the MPGAN family's particle layout in
//! [`super::particle_model`], told apart by the `layout` metadata): one safetensors file with the generator's weights (`generator.*`, the
//! EMA weights when the run kept an average), the standardisation of the particle features
//! and, in the metadata, the family (`jetgen_model = gan`), the variant and the generator's
//! shape — everything generation needs (the critic is not needed to generate).

use std::collections::HashMap;
use std::path::Path;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::flow_data::{from_flow_vectors, Standardizer};
use crate::models::gan::network::FcGenerator;
use crate::models::gan::particle_model::{
    generate_particles, is_particle_checkpoint, load_particle_gan, TrainedParticleGan,
};
use crate::nn::{store, Ctx, Module};
use crate::rng::{mix64, Rng};
use crate::runs::generator::{Conditioning, Generator};
use crate::tensor::Tensor;

/// The family name GANs record in their checkpoints' `jetgen_model` metadata.
pub const FAMILY: &str = "gan";

/// Generated particles with pT below this (relative) become padding.
pub const MIN_PT: f32 = 1e-4;

/// A trained generator with what generation needs.
pub struct TrainedGan {
    pub generator: FcGenerator,
    pub standardizer: Standardizer,
    pub n_particles: usize,
    pub hidden: usize,
    pub depth: usize,
    /// e.g. `fc-fc-wgan-gp`.
    pub variant: String,
}

/// Save `m` (its generator's current weights) to `path`.
pub fn save_gan(path: &Path, m: &TrainedGan) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = m
        .generator
        .params()
        .iter()
        .map(|p| (p.name(), p.value()))
        .collect();
    let t = |v: &[f32]| Tensor::from_slice(v, &[v.len()], Device::Cpu);
    tensors.push(("standardizer.mean".into(), t(&m.standardizer.mean)?));
    tensors.push(("standardizer.std".into(), t(&m.standardizer.std)?));
    let mut meta = HashMap::new();
    meta.insert("jetgen_model".into(), FAMILY.into());
    meta.insert("jetgen_version".into(), crate::VERSION.into());
    meta.insert("variant".into(), m.variant.clone());
    meta.insert("latent".into(), m.generator.latent.to_string());
    meta.insert("hidden".into(), m.hidden.to_string());
    meta.insert("depth".into(), m.depth.to_string());
    meta.insert("n_particles".into(), m.n_particles.to_string());
    store::save_tensors(path, &tensors, &meta)
}

/// Read a GAN checkpoint's tensors and metadata (checked: the family).
fn read_gan(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let (tensors, meta) = store::load_tensors(path)?;
    if meta.get("jetgen_model").map(String::as_str) != Some(FAMILY) {
        return Err(Error::file(
            path,
            "not a jetgen GAN checkpoint (metadata jetgen_model != gan)",
        ));
    }
    Ok((tensors, meta))
}

/// Load a flat (fc-fc) GAN checkpoint onto `device` (checked: family, sizes, every weight's
/// shape).
pub fn load_gan(path: &Path, device: Device) -> Result<TrainedGan> {
    let (tensors, meta) = read_gan(path)?;
    flat_from_tensors(path, tensors, &meta, device)
}

fn flat_from_tensors(
    path: &Path,
    mut tensors: HashMap<String, Tensor>,
    meta: &HashMap<String, String>,
    device: Device,
) -> Result<TrainedGan> {
    let num = |k: &str| -> Result<usize> {
        meta.get(k)
            .and_then(|s| s.parse().ok())
            .filter(|&v: &usize| v > 0 && v <= 1 << 16)
            .ok_or_else(|| Error::file(path, format!("checkpoint has no valid '{k}'")))
    };
    let (latent, hidden, depth, p) = (
        num("latent")?,
        num("hidden")?,
        num("depth")?,
        num("n_particles")?,
    );
    let variant = meta
        .get("variant")
        .cloned()
        .unwrap_or_else(|| "fc-fc".into());
    // the generator's weights (latent → hidden, depth − 1 hidden → hidden, hidden → 3P) must
    // be in the file before a model of that size is built
    let (l, h, d, o) = (latent as u128, hidden as u128, depth as u128, 3 * p as u128);
    let needed = l * h + h + (d - 1) * (h * h + h) + h * o + o;
    crate::runs::checkpoint::ensure_room_in(
        path,
        "GAN generator",
        needed,
        crate::runs::checkpoint::values_in(&tensors),
    )?;
    let generator = FcGenerator::new(latent, hidden, depth, 3 * p, &mut Rng::new(0), device)?;
    for param in generator.params() {
        let t = tensors
            .remove(&param.name())
            .ok_or_else(|| Error::file(path, format!("missing tensor '{}'", param.name())))?;
        if t.shape() != param.value().shape() {
            return Err(Error::file(
                path,
                format!(
                    "tensor '{}' has shape {:?}, expected {:?}",
                    param.name(),
                    t.shape(),
                    param.value().shape()
                ),
            ));
        }
        param.set_value(t.to_device(device)?);
    }
    let mut take = |k: &str| -> Result<Vec<f32>> {
        tensors
            .remove(k)
            .ok_or_else(|| Error::file(path, format!("missing tensor '{k}'")))?
            .to_vec()
    };
    let standardizer = Standardizer {
        mean: take("standardizer.mean")?,
        std: take("standardizer.std")?,
    };
    if standardizer.mean.len() != 3 * p || standardizer.std.len() != 3 * p {
        return Err(Error::file(
            path,
            "standardisation does not match the particle count",
        ));
    }
    Ok(TrainedGan {
        generator,
        standardizer,
        n_particles: p,
        hidden,
        depth,
        variant,
    })
}

/// `n` jets from `m`: z ~ N(0, 1) in chunks of 10,000 (chunk c seeded by
/// `mix64(seed ^ c)`), G(z) de-standardised, particles with pT < [`MIN_PT`] padded.
pub fn generate(m: &TrainedGan, n: usize, seed: u64, device: Device) -> Result<JetNetData> {
    if n == 0 {
        return Err(Error::invalid("asked for 0 jets"));
    }
    let (l, d) = (m.generator.latent, 3 * m.n_particles);
    let mut out = Vec::with_capacity(n * d);
    for (c, start) in (0..n).step_by(10_000).enumerate() {
        let len = (n - start).min(10_000);
        let ctx = Ctx::new(false, 0);
        let z = ctx.tape.constant(Rng::new(mix64(seed ^ c as u64)).normal(
            &[len, l],
            0.0,
            1.0,
            device,
        )?);
        out.extend(m.generator.forward(&ctx, &z)?.value().to_vec()?);
    }
    m.standardizer.invert(&mut out);
    from_flow_vectors(&out, m.n_particles, MIN_PT)
}

/// A trained GAN generator of either layout.
pub enum GanModel {
    /// fc-fc on standardised flat vectors.
    Flat(TrainedGan),
    /// The MPGAN family on particles.
    Particles(TrainedParticleGan),
}

/// A trained GAN generator on its device, as a [`Generator`].
pub struct GanGenerator {
    pub model: GanModel,
    pub device: Device,
}

impl GanGenerator {
    /// Load a GAN checkpoint (either layout, told by its `layout` metadata) onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<GanGenerator> {
        let (tensors, meta) = read_gan(path)?;
        let model = if is_particle_checkpoint(&meta) {
            GanModel::Particles(load_particle_gan(path, tensors, &meta, device)?)
        } else {
            GanModel::Flat(flat_from_tensors(path, tensors, &meta, device)?)
        };
        Ok(GanGenerator { model, device })
    }
}

impl Generator for GanGenerator {
    fn family(&self) -> &'static str {
        FAMILY
    }
    fn variant(&self) -> String {
        match &self.model {
            GanModel::Flat(m) => m.variant.clone(),
            GanModel::Particles(m) => m.variant.clone(),
        }
    }
    fn particles(&self) -> usize {
        match &self.model {
            GanModel::Flat(m) => m.n_particles,
            GanModel::Particles(m) => m.n_particles,
        }
    }
    fn conditioning(&self) -> Conditioning {
        Conditioning::default()
    }
    fn device(&self) -> Device {
        self.device
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        match &self.model {
            GanModel::Flat(m) => generate(m, n, seed, self.device),
            GanModel::Particles(m) => generate_particles(m, n, seed, self.device),
        }
    }
}

/// Write the checkpoint of a freshly initialised benchmark generator (FC, latent 128,
/// 3 × 256, 30 particles, standardisation mean 0, std 0.1).
pub fn write_bench_checkpoint(path: &Path, device: Device) -> Result<()> {
    let m = TrainedGan {
        generator: FcGenerator::new(128, 256, 3, 90, &mut Rng::new(1), device)?,
        standardizer: Standardizer {
            mean: vec![0.0; 90],
            std: vec![0.1; 90],
        },
        n_particles: 30,
        hidden: 256,
        depth: 3,
        variant: "fc-fc-wgan-gp".into(),
    };
    save_gan(path, &m)
}
