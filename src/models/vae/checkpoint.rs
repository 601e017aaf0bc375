//! VAE/AE checkpoints: one safetensors file with the encoder and decoder weights
//! (`encoder.*`, `decoder.*`), the per-feature standardisation, the training codes' mean and
//! spread, an optional learned prior (a flow, `prior.*`) and, in the metadata, the family
//! (`jetgen_model = vae | ae`), the architecture, the representation and the loss — all
//! that generation, reconstruction and anomaly scores need.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::flow::checkpoint::{config_from_json, config_to_json};
use crate::models::flow::network::Flow;
use crate::models::flow_data::Standardizer;
use crate::models::vae::data::{decoded_to_jetnet, Representation};
use crate::models::vae::loss::{sinkhorn_config, LossSpec};
use crate::models::vae::network::{JetVae, VaeConfig};
use crate::models::vae::settings::{ChamferPadding, ReconLoss};
use crate::nn::{store, Module, Param};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The family name of variational autoencoders.
pub const FAMILY_VAE: &str = "vae";
/// The family name of plain autoencoders.
pub const FAMILY_AE: &str = "ae";

/// A trained VAE or AE with everything generation and scoring need.
pub struct TrainedVae {
    pub vae: JetVae,
    pub spec: LossSpec,
    /// The KL weight it was trained with (β; dimensionful for the EMD loss).
    pub beta: f64,
    /// pT below which a decoded particle is padding.
    pub threshold: f32,
    /// Sinkhorn (EMD) models: the training jets' mean Σ pT_rel. The EMD sees only pT
    /// *fractions*, so the decoder's pT scale is untrained; decoded jets are rescaled to this
    /// sum over their kept particles ([`TrainedVae::decoded_jets`]). `None` for the other
    /// losses (and checkpoints written before it existed).
    pub pt_sum: Option<f32>,
    /// Mean and standard deviation of the training jets' codes (μ), per latent dimension.
    pub latent_mean: Vec<f32>,
    pub latent_std: Vec<f32>,
    /// A flow fitted to the training codes, used instead of N(0, I) when present.
    pub prior: Option<Flow>,
}

impl TrainedVae {
    /// Decoded feature rows `[n, P, 3]` (representation units) as JetNet jets: particles
    /// below the padding threshold dropped and, for an EMD model, each jet's kept pT_rel
    /// scaled to sum to [`TrainedVae::pt_sum`] (its decoded fractions kept).
    pub fn decoded_jets(&self, rows: &[f32]) -> Result<JetNetData> {
        let p = self.vae.config.particles;
        let representation = self.spec.representation;
        let Some(target) = self
            .pt_sum
            .filter(|s| s.is_finite() && *s > 0.0 && representation == Representation::Relative)
        else {
            return decoded_to_jetnet(rows, p, representation, self.threshold);
        };
        // the cut on the decoded pT (the scale the threshold was calibrated on): rows under it
        // become padding, the rest are scaled, and no second cut follows
        let cut = self.threshold.max(f32::MIN_POSITIVE);
        let mut r = rows.to_vec();
        for jet in r.chunks_exact_mut(p * 3) {
            for row in jet
                .chunks_exact_mut(3)
                .filter(|row| row[2].is_nan() || row[2] < cut)
            {
                row.fill(0.0);
            }
            let sum: f32 = jet.chunks_exact(3).map(|row| row[2]).sum();
            if sum > 0.0 && sum.is_finite() {
                jet.chunks_exact_mut(3)
                    .for_each(|row| row[2] *= target / sum);
            }
        }
        decoded_to_jetnet(&r, p, representation, f32::MIN_POSITIVE)
    }

    /// `vae` or `ae`.
    pub fn family(&self) -> &'static str {
        if self.vae.config.variational {
            FAMILY_VAE
        } else {
            FAMILY_AE
        }
    }
}

fn spec_to_json(m: &TrainedVae, beta: f64) -> serde_json::Value {
    let s = &m.spec;
    json!({
        "network": serde_json::to_value(&m.vae.config).unwrap_or_default(),
        "representation": s.representation.name(),
        "loss": s.loss.name(),
        "beta": beta,
        "alpha": s.alpha, "gamma_pt": s.gamma_pt, "gamma_mass": s.gamma_mass,
        "chamfer_padding": match s.padding { ChamferPadding::Points => "points", ChamferPadding::Masked => "masked" },
        "scale_pt": s.scale_pt, "scale_mass": s.scale_mass,
        "epsilon": s.sinkhorn.epsilon, "eps_scaling": s.sinkhorn.scaling.unwrap_or(0.5),
        "sinkhorn_iters": s.sinkhorn.max_iters,
        "threshold": m.threshold,
        "pt_sum": m.pt_sum,
    })
}

/// Save a trained VAE/AE in one safetensors file.
pub fn save_checkpoint(path: &Path, m: &TrainedVae) -> Result<()> {
    save_with(path, m, &m.latent_mean, &m.latent_std, m.beta)
}

/// [`save_checkpoint`] with the codes' statistics and β given (a run saving its current
/// model).
pub fn save_with(
    path: &Path,
    m: &TrainedVae,
    latent_mean: &[f32],
    latent_std: &[f32],
    beta: f64,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = m
        .vae
        .params()
        .iter()
        .map(|p| (p.name(), p.value()))
        .collect();
    let t = |v: &[f32]| Tensor::from_slice(v, &[v.len()], Device::Cpu);
    tensors.push(("standardizer.mean".into(), t(&m.spec.standardizer.mean)?));
    tensors.push(("standardizer.std".into(), t(&m.spec.standardizer.std)?));
    tensors.push(("latent.mean".into(), t(latent_mean)?));
    tensors.push(("latent.std".into(), t(latent_std)?));
    let mut meta = HashMap::new();
    meta.insert("jetgen_model".into(), m.family().into());
    meta.insert("jetgen_version".into(), crate::VERSION.into());
    meta.insert("vae_config".into(), spec_to_json(m, beta).to_string());
    meta.insert("n_particles".into(), m.vae.config.particles.to_string());
    if let Some(prior) = &m.prior {
        for p in prior.params() {
            tensors.push((format!("prior.{}", p.name()), p.value()));
        }
        meta.insert(
            "prior_config".into(),
            config_to_json(&prior.config).to_string(),
        );
    }
    store::save_tensors(path, &tensors, &meta)
}

fn load_into(
    params: &[Param],
    prefix: &str,
    tensors: &mut HashMap<String, Tensor>,
    path: &Path,
    device: Device,
) -> Result<()> {
    for p in params {
        let key = format!("{prefix}{}", p.name());
        let t = tensors
            .remove(&key)
            .ok_or_else(|| Error::file(path, format!("missing tensor '{key}'")))?;
        if t.shape() != p.value().shape() {
            return Err(Error::file(
                path,
                format!(
                    "tensor '{key}' has shape {:?}, expected {:?}",
                    t.shape(),
                    p.value().shape()
                ),
            ));
        }
        p.set_value(t.to_device(device)?);
    }
    Ok(())
}

/// Load a VAE or AE checkpoint onto `device`.
pub fn load_checkpoint(path: &Path, device: Device) -> Result<TrainedVae> {
    let (mut tensors, meta) = store::load_tensors(path)?;
    let family = meta.get("jetgen_model").map(String::as_str);
    if family != Some(FAMILY_VAE) && family != Some(FAMILY_AE) {
        return Err(Error::file(
            path,
            "not a jetgen VAE/AE checkpoint (jetgen_model is not vae or ae)",
        ));
    }
    let text = meta
        .get("vae_config")
        .ok_or_else(|| Error::file(path, "checkpoint has no vae_config"))?;
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::file(path, format!("bad vae_config: {e}")))?;
    let bad = |what: &str| Error::file(path, format!("vae_config: bad or missing '{what}'"));
    let config: VaeConfig =
        serde_json::from_value(v["network"].clone()).map_err(|_| bad("network"))?;
    if config.variational != (family == Some(FAMILY_VAE)) {
        return Err(Error::file(
            path,
            "the network's kind does not match jetgen_model",
        ));
    }
    let f = |k: &str| v[k].as_f64().ok_or_else(|| bad(k));
    let representation = Representation::parse(
        v["representation"]
            .as_str()
            .ok_or_else(|| bad("representation"))?,
    )?;
    let loss = ReconLoss::parse(v["loss"].as_str().ok_or_else(|| bad("loss"))?)?;
    let padding = match v["chamfer_padding"].as_str() {
        Some("points") => ChamferPadding::Points,
        Some("masked") => ChamferPadding::Masked,
        _ => return Err(bad("chamfer_padding")),
    };
    config
        .validate()
        .map_err(|e| Error::file(path, e.to_string()))?;
    crate::runs::checkpoint::ensure_room_in(
        path,
        "VAE",
        config.parameter_count(),
        crate::runs::checkpoint::values_in(&tensors),
    )?;
    let vae = JetVae::new(config, &mut Rng::new(0), device)?;
    load_into(&vae.params(), "", &mut tensors, path, device)?;
    let mut take = |k: &str, len: usize| -> Result<Vec<f32>> {
        let t = tensors
            .remove(k)
            .ok_or_else(|| Error::file(path, format!("missing tensor '{k}'")))?
            .to_vec()?;
        if t.len() != len {
            return Err(Error::file(
                path,
                format!("tensor '{k}' has {} values, expected {len}", t.len()),
            ));
        }
        Ok(t)
    };
    let l = vae.config.latent;
    let standardizer = Standardizer {
        mean: take("standardizer.mean", 3)?,
        std: take("standardizer.std", 3)?,
    };
    let latent_mean = take("latent.mean", l)?;
    let latent_std = take("latent.std", l)?;
    let prior = match meta.get("prior_config") {
        None => None,
        Some(text) => {
            let cfg: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Error::file(path, format!("bad prior_config: {e}")))?;
            let cfg = config_from_json(&cfg)?;
            if cfg.features != l || cfg.context != 0 {
                return Err(Error::file(
                    path,
                    "the prior flow does not match the latent size",
                ));
            }
            let flow = Flow::new(cfg, &mut Rng::new(0), device)?;
            load_into(&flow.params(), "prior.", &mut tensors, path, device)?;
            Some(flow)
        }
    };
    let iters = v["sinkhorn_iters"]
        .as_u64()
        .ok_or_else(|| bad("sinkhorn_iters"))? as usize;
    let spec = LossSpec {
        loss,
        representation,
        particles: vae.config.particles,
        alpha: f("alpha")?,
        gamma_pt: f("gamma_pt")?,
        gamma_mass: f("gamma_mass")?,
        padding,
        scale_pt: f("scale_pt")?,
        scale_mass: f("scale_mass")?,
        sinkhorn: sinkhorn_config(f("epsilon")?, f("eps_scaling")?, iters),
        standardizer,
    };
    Ok(TrainedVae {
        vae,
        spec,
        beta: f("beta")?,
        threshold: f("threshold")? as f32,
        // a zero, negative or non-finite scale means "not calibrated": decode unscaled
        pt_sum: v["pt_sum"]
            .as_f64()
            .map(|s| s as f32)
            .filter(|s| s.is_finite() && *s > 0.0),
        latent_mean,
        latent_std,
        prior,
    })
}
