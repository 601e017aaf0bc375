//! Flow checkpoints: one safetensors file with the flow's weights (nflows names), the
//! standardisation, the training conditions and, in the metadata, the family
//! (`jetgen_model = flow`), the variant, the architecture and the particle count —
//! everything generation needs. PyTorch's `safetensors.torch.load_file` opens it.

use std::collections::HashMap;
use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::{Conditions, Variant};
use crate::models::flow::network::{Flow, FlowConfig, MaskKind};
use crate::models::flow_data::Standardizer;
use crate::nn::{store, CouplingKind, Module};
use crate::ops::rqs::RqsConfig;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The family name flows record in their checkpoints' `jetgen_model` metadata.
pub const FAMILY: &str = "flow";

/// The JSON form of a flow configuration (stored in checkpoints and run directories).
pub fn config_to_json(c: &FlowConfig) -> serde_json::Value {
    let coupling = match c.coupling {
        CouplingKind::Affine => serde_json::json!({"kind": "affine"}),
        CouplingKind::Rqs(r) => {
            serde_json::json!({"kind": "rqs", "bins": r.bins, "tail_bound": r.tail_bound})
        }
    };
    serde_json::json!({"features": c.features, "context": c.context, "layers": c.layers, "coupling": coupling,
    "hidden": c.hidden, "blocks": c.blocks, "dropout": c.dropout, "batch_norm": c.batch_norm,
    "masks": match c.masks {
        MaskKind::Alternating => serde_json::json!("alternating"),
        MaskKind::Random { seed } => serde_json::json!({"kind": "random", "seed": seed}),
    }})
}

/// Parse [`config_to_json`]'s output.
pub fn config_from_json(v: &serde_json::Value) -> Result<FlowConfig> {
    let bad = || Error::invalid(format!("not a flow configuration: {v}"));
    let u = |k: &str| v[k].as_u64().map(|x| x as usize).ok_or_else(bad);
    let coupling = match v["coupling"]["kind"].as_str() {
        Some("affine") => CouplingKind::Affine,
        Some("rqs") => CouplingKind::Rqs(RqsConfig::new(
            v["coupling"]["bins"].as_u64().ok_or_else(bad)? as usize,
            v["coupling"]["tail_bound"].as_f64().ok_or_else(bad)?,
        )),
        _ => return Err(bad()),
    };
    Ok(FlowConfig {
        features: u("features")?,
        context: u("context")?,
        layers: u("layers")?,
        coupling,
        hidden: u("hidden")?,
        blocks: u("blocks")?,
        dropout: v["dropout"].as_f64().ok_or_else(bad)? as f32,
        batch_norm: v["batch_norm"].as_bool().ok_or_else(bad)?,
        // absent in checkpoints written before random masks existed
        masks: match (&v["masks"], v["masks"]["kind"].as_str()) {
            (serde_json::Value::Null, _) => MaskKind::Alternating,
            (m, _) if m.as_str() == Some("alternating") => MaskKind::Alternating,
            (m, Some("random")) => MaskKind::Random {
                seed: m["seed"].as_u64().ok_or_else(bad)?,
            },
            _ => return Err(bad()),
        },
    })
}

/// A trained flow with everything generation needs.
pub struct TrainedFlow {
    pub flow: Flow,
    pub standardizer: Standardizer,
    pub n_particles: usize,
    pub variant: Variant,
    /// Condition standardisation [mean_m, std_m, mean_n, std_n].
    pub scale: [f64; 4],
    /// Training conditions (for drawing new ones); empty for the unconditional flow.
    pub conditions: Conditions,
}

impl std::fmt::Debug for TrainedFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TrainedFlow({:?}, {}, {} particles)",
            self.flow,
            self.variant.name(),
            self.n_particles
        )
    }
}

/// Save flow weights, standardisation, conditions and configuration in one safetensors file.
pub fn save_checkpoint(path: &Path, m: &TrainedFlow) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = m
        .flow
        .params()
        .iter()
        .map(|p| (p.name(), p.value()))
        .collect();
    let t = |v: &[f32]| Tensor::from_slice(v, &[v.len()], Device::Cpu);
    let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    tensors.push(("standardizer.mean".into(), t(&m.standardizer.mean)?));
    tensors.push(("standardizer.std".into(), t(&m.standardizer.std)?));
    tensors.push(("conditions.scale".into(), t(&f(&m.scale))?));
    if m.variant != Variant::Vnf {
        tensors.push(("conditions.mass".into(), t(&f(&m.conditions.mass))?));
        tensors.push(("conditions.n".into(), t(&f(&m.conditions.n))?));
    }
    let mut meta = HashMap::new();
    meta.insert("jetgen_model".into(), FAMILY.into());
    meta.insert("jetgen_version".into(), crate::VERSION.into());
    meta.insert(
        "flow_config".into(),
        config_to_json(&m.flow.config).to_string(),
    );
    meta.insert("variant".into(), m.variant.name().into());
    meta.insert("n_particles".into(), m.n_particles.to_string());
    store::save_tensors(path, &tensors, &meta)
}

/// The most particles per jet a flow checkpoint may declare.
pub const MAX_PARTICLES: usize = 1 << 14;

/// A lower bound on the parameters of a flow with `c`'s architecture: per coupling layer
/// the residual blocks' `2·blocks` hidden × hidden matrices and the final layer's
/// hidden × (params per feature) weights for at least one transformed feature. Saturating,
/// so a hostile configuration cannot overflow it.
fn parameter_lower_bound(c: &FlowConfig) -> u128 {
    let (h, layers, blocks) = (c.hidden as u128, c.layers as u128, c.blocks as u128);
    let per_feature = match c.coupling {
        CouplingKind::Affine => 2,
        CouplingKind::Rqs(r) => 3 * r.bins as u128 - 1,
    };
    layers.saturating_mul(
        (2 * blocks)
            .saturating_mul(h.saturating_mul(h))
            .saturating_add(h.saturating_mul(per_feature)),
    )
}

/// Load a flow checkpoint onto `device`, validated through the shared
/// [`CheckpointFile`](crate::runs::checkpoint::CheckpointFile): finite weights, every size
/// of the metadata in range and consistent (particles × 3 = features, context = the
/// variant's) before the flow is built, the architecture no larger than the file, every
/// tensor of the expected shape, positive finite standardiser and condition scales,
/// training conditions (mass ≥ 0, multiplicity in 0..=P) for conditional variants, and no
/// unexpected tensors.
pub fn load_checkpoint(path: &Path, device: Device) -> Result<TrainedFlow> {
    use crate::runs::checkpoint::{check_scales, CheckpointFile};
    let mut file = CheckpointFile::open(path, Some(FAMILY))?;
    let bad = |msg: String| Error::file(path, msg);
    let config = config_from_json(&file.meta_json("flow_config")?)
        .map_err(|e| bad(format!("bad flow_config: {e}")))?;
    config
        .validate()
        .map_err(|e| bad(format!("bad flow_config: {e}")))?;
    let variant = Variant::parse(file.meta("variant").unwrap_or("vnf"))
        .map_err(|e| bad(format!("bad variant: {e}")))?;
    let n_particles = file.size("n_particles", 1, MAX_PARTICLES)?;
    if config.context != variant.context_dim() {
        return Err(bad(format!(
            "flow context size {} does not match its variant {} ({})",
            config.context,
            variant.name(),
            variant.context_dim()
        )));
    }
    if n_particles * 3 != config.features {
        return Err(bad(format!(
            "{n_particles} particles need {} features, the flow has {}",
            n_particles * 3,
            config.features
        )));
    }
    file.ensure_room("flow", parameter_lower_bound(&config))?;
    let flow = Flow::new(config, &mut Rng::new(0), device)?;
    for p in flow.params() {
        let shape = p.value().shape().to_vec();
        let t = file.take(&p.name(), &shape)?;
        p.set_value(t.to_device(device)?);
    }
    let d = config.features;
    let standardizer = Standardizer {
        mean: file.take_vec("standardizer.mean", d)?,
        std: file.take_scales("standardizer.std", d)?,
    };
    let sc = file.take_vec("conditions.scale", 4)?;
    check_scales(
        path,
        "conditions.scale (standard deviations)",
        &[sc[1], sc[3]],
    )?;
    let scale = [sc[0] as f64, sc[1] as f64, sc[2] as f64, sc[3] as f64];
    let conditions = if variant == Variant::Vnf {
        Conditions {
            mass: vec![],
            n: vec![],
        }
    } else {
        let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        let mass = back(file.take_any_vec("conditions.mass", 1)?);
        let n = back(file.take_vec("conditions.n", mass.len())?);
        if let Some(k) = mass.iter().position(|&m| m < 0.0) {
            return Err(bad(format!(
                "training condition {k}: mass {} is negative",
                mass[k]
            )));
        }
        if let Some(k) = n
            .iter()
            .position(|&v| v < 0.0 || v > n_particles as f64 || v.fract() != 0.0)
        {
            return Err(bad(format!(
                "training condition {k}: multiplicity {} is not in 0..={n_particles}",
                n[k]
            )));
        }
        Conditions { mass, n }
    };
    file.finish()?;
    Ok(TrainedFlow {
        flow,
        standardizer,
        n_particles,
        variant,
        scale,
        conditions,
    })
}

/// Write the checkpoint of a freshly initialised benchmark flow: 10 RQS layers (8 bins),
/// ResidualNet 128 × 2, 30 particles, unit-free standardisation (mean 0, std 0.1).
/// Generation speed does not depend on training, so `jetgen bench generate` times this.
pub fn write_bench_checkpoint(path: &Path, device: Device) -> Result<()> {
    let d = 90;
    let config = FlowConfig {
        layers: 10,
        ..FlowConfig::default_for(d)
    };
    let model = TrainedFlow {
        flow: Flow::new(config, &mut Rng::new(1), device)?,
        standardizer: Standardizer {
            mean: vec![0.0; d],
            std: vec![0.1; d],
        },
        n_particles: 30,
        variant: Variant::Vnf,
        scale: [0.0, 1.0, 0.0, 1.0],
        conditions: Conditions {
            mass: Vec::new(),
            n: Vec::new(),
        },
    };
    save_checkpoint(path, &model)
}
