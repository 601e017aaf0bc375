//! Flow-matching checkpoints: one safetensors file with the velocity network's weights (the
//! EMA weights when the run kept an average), the per-feature standardisation (η, φ, pT),
//! the training jets' multiplicities (and relative masses when conditioned on the mass) to
//! draw new ones from, and in the metadata the family (`jetgen_model = fm`), the network,
//! the condition, σ_min and the default ODE solver — everything generation and log-densities
//! need.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::models::flow_data::Standardizer;
use crate::models::fm::network::{EpicConfig, EpicNet};
use crate::models::fm::settings::FmCondition;
use crate::nn::{store, Module};
use crate::ode::{Method, SolverSettings};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The family name flow-matching models record as `jetgen_model`.
pub const FAMILY: &str = "fm";

/// A trained flow-matching model with everything generation needs.
pub struct TrainedFm {
    pub net: EpicNet,
    /// Per-feature (η_rel, φ_rel, pT_rel) standardisation, fitted on real particles.
    pub standardizer: Standardizer,
    pub condition: FmCondition,
    /// The training jets' conditions (multiplicities always; masses used when conditioned).
    pub conditions: Conditions,
    /// Condition standardisation [mean_m, std_m, mean_n, std_n].
    pub scale: [f64; 4],
    /// The training jets' pT (GeV), aligned with `conditions`; empty unless conditioned on it.
    pub pt: Vec<f64>,
    /// Standardisation [mean, std] of the jet pT condition.
    pub pt_scale: [f64; 2],
    pub sigma_min: f64,
    /// The default generation solver.
    pub sampler: SolverSettings,
}

impl TrainedFm {
    /// Particles per jet.
    pub fn particles(&self) -> usize {
        self.net.config.particles
    }
}

fn config_json(m: &TrainedFm) -> serde_json::Value {
    json!({
        "network": serde_json::to_value(&m.net.config).unwrap_or_default(),
        "condition": m.condition.name(),
        "sigma_min": m.sigma_min,
        "solver": m.sampler.method.name(),
        "solver_steps": m.sampler.steps,
        "rtol": m.sampler.rtol,
        "atol": m.sampler.atol,
    })
}

/// Save `m` (the network's current weights) in one safetensors file.
pub fn save_checkpoint(path: &Path, m: &TrainedFm) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = m
        .net
        .params()
        .iter()
        .map(|p| (p.name(), p.value()))
        .collect();
    let t = |v: &[f32]| Tensor::from_slice(v, &[v.len()], Device::Cpu);
    let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    tensors.push(("standardizer.mean".into(), t(&m.standardizer.mean)?));
    tensors.push(("standardizer.std".into(), t(&m.standardizer.std)?));
    tensors.push(("conditions.scale".into(), t(&f(&m.scale))?));
    tensors.push(("conditions.n".into(), t(&f(&m.conditions.n))?));
    if m.condition.uses_mass() {
        tensors.push(("conditions.mass".into(), t(&f(&m.conditions.mass))?));
    }
    if m.condition.uses_pt() {
        tensors.push(("conditions.pt".into(), t(&f(&m.pt))?));
        tensors.push(("conditions.pt_scale".into(), t(&f(&m.pt_scale))?));
    }
    let mut meta = HashMap::new();
    meta.insert("jetgen_model".into(), FAMILY.into());
    meta.insert("jetgen_version".into(), crate::VERSION.into());
    meta.insert("fm_config".into(), config_json(m).to_string());
    meta.insert("variant".into(), m.condition.name().into());
    meta.insert("n_particles".into(), m.particles().to_string());
    store::save_tensors(path, &tensors, &meta)
}

/// Load a flow-matching checkpoint onto `device`, validated through the shared
/// [`CheckpointFile`](crate::runs::checkpoint::CheckpointFile): finite weights, the network's
/// sizes in range and no larger than the file, every tensor of its shape, positive scales,
/// multiplicities in 1..=P (at least one), masses ≥ 0, no tensor left over.
pub fn load_checkpoint(path: &Path, device: Device) -> Result<TrainedFm> {
    use crate::runs::checkpoint::{check_scales, CheckpointFile};
    let mut file = CheckpointFile::open(path, Some(FAMILY))?;
    let bad = |msg: String| Error::file(path, msg);
    let v = file.meta_json("fm_config")?;
    let config: EpicConfig = serde_json::from_value(v["network"].clone())
        .map_err(|e| bad(format!("bad fm_config network: {e}")))?;
    config
        .validate()
        .map_err(|e| bad(format!("bad fm_config: {e}")))?;
    let condition = FmCondition::parse(v["condition"].as_str().unwrap_or("?"))
        .map_err(|e| bad(e.to_string()))?;
    if config.context != condition.context_dim() {
        return Err(bad(format!(
            "the network takes {} context features, condition {} needs {}",
            config.context,
            condition.name(),
            condition.context_dim()
        )));
    }
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| bad(format!("fm_config: bad '{k}'")))
    };
    let sigma_min = num("sigma_min")?;
    if !(0.0..1.0).contains(&sigma_min) {
        return Err(bad(format!("σ_min {sigma_min} is not in [0, 1)")));
    }
    let sampler = SolverSettings {
        method: Method::parse(v["solver"].as_str().unwrap_or("?"))
            .map_err(|e| bad(e.to_string()))?,
        steps: num("solver_steps")? as usize,
        rtol: num("rtol")?,
        atol: num("atol")?,
        ..Default::default()
    };
    sampler.validate().map_err(|e| bad(e.to_string()))?;
    let p = config.particles;
    file.ensure_room("EPiC network", config.parameter_count())?;
    let net = EpicNet::new(config, &mut Rng::new(0), device)?;
    for param in net.params() {
        let shape = param.value().shape().to_vec();
        let t = file.take(&param.name(), &shape)?;
        param.set_value(t.to_device(device)?);
    }
    let standardizer = Standardizer {
        mean: file.take_vec("standardizer.mean", 3)?,
        std: file.take_scales("standardizer.std", 3)?,
    };
    let sc = file.take_vec("conditions.scale", 4)?;
    check_scales(
        path,
        "conditions.scale (standard deviations)",
        &[sc[1], sc[3]],
    )?;
    let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    let n = back(file.take_any_vec("conditions.n", 1)?);
    if let Some(k) = n
        .iter()
        .position(|&x| x < 1.0 || x > p as f64 || x.fract() != 0.0)
    {
        return Err(bad(format!(
            "training multiplicity {k} is {}, not in 1..={p}",
            n[k]
        )));
    }
    let mass = if condition.uses_mass() {
        let m = back(file.take_vec("conditions.mass", n.len())?);
        if let Some(k) = m.iter().position(|&x| x < 0.0) {
            return Err(bad(format!("training mass {k} is negative")));
        }
        m
    } else {
        vec![]
    };
    let (pt, pt_scale) = if condition.uses_pt() {
        let pt = back(file.take_vec("conditions.pt", n.len())?);
        if let Some(k) = pt.iter().position(|&x| x <= 0.0) {
            return Err(bad(format!("training jet pT {k} is not positive")));
        }
        let s = file.take_vec("conditions.pt_scale", 2)?;
        check_scales(path, "conditions.pt_scale (standard deviation)", &s[1..])?;
        (pt, [s[0] as f64, s[1] as f64])
    } else {
        (vec![], [0.0, 1.0])
    };
    file.finish()?;
    Ok(TrainedFm {
        pt,
        pt_scale,
        net,
        standardizer,
        condition,
        conditions: Conditions { mass, n },
        scale: [sc[0] as f64, sc[1] as f64, sc[2] as f64, sc[3] as f64],
        sigma_min,
        sampler,
    })
}

/// Write the checkpoint of a freshly initialised benchmark model: the reference EPiC
/// network (6 layers × 128, global 10) for 30 particles, unconditional, multiplicities
/// 10..=30, standardisation mean 0 / std 0.1, midpoint 10 steps (20 network evaluations:
/// `jetgen bench generate` times 10,000 jets per call).
pub fn write_bench_checkpoint(path: &Path, device: Device) -> Result<()> {
    let m = TrainedFm {
        net: EpicNet::new(EpicConfig::reference(30, 0), &mut Rng::new(1), device)?,
        standardizer: Standardizer {
            mean: vec![0.0; 3],
            std: vec![0.1; 3],
        },
        condition: FmCondition::None,
        conditions: Conditions {
            mass: vec![],
            n: (10..=30).map(f64::from).collect(),
        },
        scale: [0.0, 1.0, 0.0, 1.0],
        pt: vec![],
        pt_scale: [0.0, 1.0],
        sigma_min: 1e-4,
        sampler: SolverSettings::fixed(Method::Midpoint, 10),
    };
    save_checkpoint(path, &m)
}
