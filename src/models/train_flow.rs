//! Training a particle-cloud flow on JetNet jets, end to end: split, preprocess, train with
//! AdamW (gradient clipping, a guard against non-finite steps, early stopping on the
//! validation NLL), keep the best checkpoint, generate jets and evaluate them.
//!
//! A run directory holds `config.json`, `checkpoint.safetensors` (flow weights, the
//! standardisation and the config in the metadata — everything `sample` needs),
//! `train_log.csv` (step, train NLL, val NLL, jets/s), `generated.hdf5` (JetNet layout) and
//! `metrics.json` (W1M, W1P, W1EFP against the validation jets).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::metrics::{evaluate, EvalConfig, EvalReport, Protocol};
use crate::models::conditions::{ConditionSampler, Conditions, Variant};
use crate::models::flow::{Flow, FlowConfig, MaskKind};
use crate::models::flow_data::{
    from_flow_vectors, reflect_standardized, to_flow_vectors, Standardizer,
};
use crate::nn::{clip_grad_norm, store, Adam, AdamConfig, CouplingKind, Ctx, Module};
use crate::ops::rqs::RqsConfig;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Optimisation settings.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Max global gradient norm.
    pub clip: f64,
    /// Validate every this many steps.
    pub val_every: usize,
    /// Stop after this many validations without improvement.
    pub patience: usize,
    pub seed: u64,
    pub device: Device,
    /// Jets to generate for the final evaluation (at most the validation size).
    pub generate: usize,
    /// Unconditional or conditioned on mass (and multiplicity).
    pub variant: Variant,
    /// λ of the mass constraint λ·MSE(m(x_gen), m_cond) for the CCNF variants (our loss is the
    /// NLL per jet, not per dimension, so this is ~90× the DESY code's λ).
    pub mass_lambda: f64,
    /// Steps before the mass constraint switches on.
    pub mass_delay: usize,
    /// Final evaluation: the full JetNet suite (FPD, KPD, COV, MMD too) or only the W1s.
    pub full_eval: bool,
    /// Write PNG plots (loss curves, real-vs-generated histograms) into `<out>/plots`.
    pub plots: bool,
    /// Learning rate over the steps.
    pub lr_schedule: LrSchedule,
    /// Reflect each training jet at random about its axis (η_rel → −η_rel and/or
    /// φ_rel → −φ_rel, each with probability ½): the jet mass, the pT fractions and the
    /// multiplicity are unchanged, so the conditions stay valid and the training set is
    /// effectively four times larger.
    pub reflect: bool,
}

/// How the learning rate evolves over `steps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrSchedule {
    /// lr at every step.
    Constant,
    /// lr · ½(1 + cos(π t / steps)): from lr down to 0 at the last step.
    Cosine,
}

impl LrSchedule {
    /// Parse `constant` or `cosine`.
    pub fn parse(s: &str) -> Result<LrSchedule> {
        match s {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" => Ok(LrSchedule::Cosine),
            _ => Err(Error::invalid(format!(
                "unknown learning-rate schedule '{s}' (constant, cosine)"
            ))),
        }
    }
    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        }
    }
    /// The learning rate of step `t` (1-based) of `steps`, starting from `lr`.
    pub fn at(self, lr: f64, t: usize, steps: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let frac = (t.saturating_sub(1)) as f64 / steps.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
            }
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1500,
            batch: 256,
            lr: 1e-3,
            weight_decay: 1e-5,
            clip: 5.0,
            val_every: 100,
            patience: 5,
            seed: 0,
            device: Device::Cpu,
            generate: 2000,
            variant: Variant::Vnf,
            mass_lambda: 1000.0,
            mass_delay: 0,
            full_eval: true,
            plots: true,
            lr_schedule: LrSchedule::Constant,
            reflect: false,
        }
    }
}

/// One line of progress.
#[derive(Clone, Debug)]
pub struct StepInfo {
    pub step: usize,
    pub steps: usize,
    pub train_nll: f64,
    pub val_nll: Option<f64>,
    pub jets_per_s: f64,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub run_dir: PathBuf,
    pub steps_run: usize,
    pub first_train_nll: f64,
    pub best_val_nll: f64,
    /// Generated vs validation jets (MPGAN-era W1 protocol with ≤ 10,000-jet batches).
    pub metrics: EvalReport,
    /// The same metrics for as many *training* jets against the validation jets: the
    /// truth-vs-truth floor at these sample sizes.
    pub truth_floor: EvalReport,
    /// PNG files written (empty without `plots`).
    pub plots: Vec<PathBuf>,
}

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
    meta.insert("jetgen_model".into(), "flow".into());
    meta.insert("jetgen_version".into(), crate::VERSION.into());
    meta.insert(
        "flow_config".into(),
        config_to_json(&m.flow.config).to_string(),
    );
    meta.insert("variant".into(), m.variant.name().into());
    meta.insert("n_particles".into(), m.n_particles.to_string());
    store::save_tensors(path, &tensors, &meta)
}

/// Load a flow checkpoint onto `device`.
pub fn load_checkpoint(path: &Path, device: Device) -> Result<TrainedFlow> {
    let (mut tensors, meta) = store::load_tensors(path)?;
    if meta.get("jetgen_model").map(String::as_str) != Some("flow") {
        return Err(Error::file(
            path,
            "not a jetgen flow checkpoint (metadata jetgen_model != flow)",
        ));
    }
    let cfg_text = meta
        .get("flow_config")
        .ok_or_else(|| Error::file(path, "checkpoint has no flow_config"))?;
    let cfg_json: serde_json::Value = serde_json::from_str(cfg_text)
        .map_err(|e| Error::file(path, format!("bad flow_config: {e}")))?;
    let config = config_from_json(&cfg_json)?;
    let variant = Variant::parse(meta.get("variant").map(String::as_str).unwrap_or("vnf"))?;
    let n_particles: usize = meta
        .get("n_particles")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::file(path, "checkpoint has no n_particles"))?;
    if config.context != variant.context_dim() {
        return Err(Error::file(
            path,
            "flow context size does not match its variant",
        ));
    }
    let flow = Flow::new(config, &mut Rng::new(0), device)?;
    for p in flow.params() {
        let t = tensors
            .remove(&p.name())
            .ok_or_else(|| Error::file(path, format!("missing tensor '{}'", p.name())))?;
        if t.shape() != p.value().shape() {
            return Err(Error::file(
                path,
                format!(
                    "tensor '{}' has shape {:?}, expected {:?}",
                    p.name(),
                    t.shape(),
                    p.value().shape()
                ),
            ));
        }
        p.set_value(t.to_device(device)?);
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
    let sc = take("conditions.scale")?;
    if sc.len() != 4 {
        return Err(Error::file(path, "conditions.scale must have 4 values"));
    }
    let scale = [sc[0] as f64, sc[1] as f64, sc[2] as f64, sc[3] as f64];
    let conditions = if variant == Variant::Vnf {
        Conditions {
            mass: vec![],
            n: vec![],
        }
    } else {
        let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        Conditions {
            mass: back(take("conditions.mass")?),
            n: back(take("conditions.n")?),
        }
    };
    if standardizer.mean.len() != config.features
        || standardizer.std.len() != config.features
        || n_particles * 3 != config.features
    {
        return Err(Error::file(
            path,
            "standardisation does not match the flow's dimension",
        ));
    }
    Ok(TrainedFlow {
        flow,
        standardizer,
        n_particles,
        variant,
        scale,
        conditions,
    })
}

/// Generate `n` jets (seeded) as JetNet-layout data. Conditional flows draw their
/// conditions from the training distribution; with the multiplicity known, particles beyond
/// it are dropped.
pub fn generate(m: &TrainedFlow, n: usize, seed: u64, device: Device) -> Result<JetNetData> {
    generate_with(m, n, seed, None, device)
}

/// [`generate`] with the conditions given per jet instead of drawn: relative masses m/pT
/// (and multiplicities for the (C)CNF(m, n) variants) of length `n`. Errors for an
/// unconditional flow, on a length mismatch, on non-finite or negative masses and on
/// multiplicities outside 0..=n_particles.
pub fn generate_conditional(
    m: &TrainedFlow,
    given: &Conditions,
    seed: u64,
    device: Device,
) -> Result<JetNetData> {
    if m.variant == Variant::Vnf {
        return Err(Error::invalid(
            "this flow is unconditional (vnf): it cannot take a jet mass or multiplicity",
        ));
    }
    let n = given.mass.len();
    if given.n.len() != n && m.variant.has_multiplicity() {
        return Err(Error::invalid(format!(
            "{} masses but {} multiplicities",
            n,
            given.n.len()
        )));
    }
    if let Some(x) = given.mass.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
        return Err(Error::invalid(format!(
            "jet mass must be finite and ≥ 0, got {x}"
        )));
    }
    if m.variant.has_multiplicity() {
        if let Some(k) = given
            .n
            .iter()
            .find(|k| !(**k >= 0.0 && **k <= m.n_particles as f64))
        {
            return Err(Error::invalid(format!(
                "multiplicity must be in 0..={}, got {k}",
                m.n_particles
            )));
        }
    }
    let full = Conditions {
        mass: given.mass.clone(),
        n: if m.variant.has_multiplicity() {
            given.n.clone()
        } else {
            vec![m.n_particles as f64; n]
        },
    };
    generate_with(m, n, seed, Some(&full), device)
}

/// log p(x | conditions) of each jet of `data` under the flow, in the units of the
/// (η_rel, φ_rel, pT_rel) vectors: the flow's density of the standardised vector minus
/// Σ_d log σ_d. Conditional flows use each jet's own mass (and multiplicity). Padded
/// entries are scored as exact zeros (training saw them as |N(0,1)|·1e-7 noise, so a
/// padded jet's density is only comparable between jets of the same multiplicity).
pub fn log_prob_jets(m: &TrainedFlow, data: &JetNetData, device: Device) -> Result<Vec<f64>> {
    if data.n_particles != m.n_particles {
        return Err(Error::invalid(format!(
            "jets have {} particles, the model {}",
            data.n_particles, m.n_particles
        )));
    }
    let d = m.flow.config.features;
    let idx: Vec<usize> = (0..data.n_jets).collect();
    let mut rows: Vec<f32> = data
        .particles
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    m.standardizer.apply(&mut rows);
    let context = Conditions::of(data, &idx).context(m.variant, &m.scale);
    let log_std: f64 = m.standardizer.std.iter().map(|s| (*s as f64).ln()).sum();
    let lp = log_probs(&m.flow, &rows, &context, d, device)?;
    let out: Vec<f64> = lp.iter().map(|v| *v as f64 - log_std).collect();
    Ok(out)
}

fn generate_with(
    m: &TrainedFlow,
    n: usize,
    seed: u64,
    given: Option<&Conditions>,
    device: Device,
) -> Result<JetNetData> {
    let d = m.flow.config.features;
    let mut rng = Rng::new(seed);
    let sampler = if m.variant == Variant::Vnf || given.is_some() {
        None
    } else {
        Some(ConditionSampler::new(&m.conditions)?)
    };
    let mut out: Vec<f32> = Vec::with_capacity(n * d);
    let mut counts: Vec<usize> = Vec::with_capacity(n);
    let mut done = 0;
    while done < n {
        let b = (n - done).min(1000);
        let ctx = Ctx::new(false, seed);
        let z = ctx.tape.constant(rng.normal(&[b, d], 0.0, 1.0, device)?);
        let drawn = match (&sampler, given) {
            (Some(s), _) => Some(s.sample(&mut rng, b)),
            (None, Some(g)) => Some(Conditions {
                mass: g.mass[done..done + b].to_vec(),
                n: g.n[done..done + b].to_vec(),
            }),
            (None, None) => None,
        };
        let context = match drawn {
            Some(c) => {
                counts.extend(c.n.iter().map(|&k| k as usize));
                let rows = c.context(m.variant, &m.scale);
                Some(ctx.tape.constant(Tensor::from_slice(
                    &rows,
                    &[b, m.variant.context_dim()],
                    device,
                )?))
            }
            None => {
                counts.extend(std::iter::repeat_n(m.n_particles, b));
                None
            }
        };
        let (x, _) = m.flow.sample_from_noise(&ctx, &z, context.as_ref())?;
        out.extend(x.value().to_vec()?);
        done += b;
    }
    m.standardizer.invert(&mut out);
    if m.variant.has_multiplicity() {
        // keep each jet's n highest-pT particles
        for (jet, &keep) in out.chunks_exact_mut(d).zip(&counts) {
            let mut order: Vec<usize> = (0..m.n_particles).collect();
            order.sort_by(|&a, &b| jet[3 * b + 2].total_cmp(&jet[3 * a + 2]));
            for &j in &order[keep.min(m.n_particles)..] {
                jet[3 * j..3 * j + 3].fill(0.0);
            }
        }
    }
    from_flow_vectors(&out, m.n_particles, 1e-4)
}

/// The CCNF mass constraint MSE(m(x_gen), m_cond): one jet generated per condition of the
/// batch through the flow's inverse (so gradients reach every layer), de-standardised, its
/// relative mass computed from massless constituents (p clamped to ±100 as in the DESY
/// code) and compared with the conditioning mass.
fn mass_constraint(
    ctx: &Ctx,
    m: &TrainedFlow,
    cond: Option<&crate::autograd::Var>,
    target: &[f32],
    rng: &mut Rng,
    device: Device,
) -> Result<crate::autograd::Var> {
    let (b, d, p) = (target.len(), m.flow.config.features, m.n_particles);
    let z = ctx.tape.constant(rng.normal(&[b, d], 0.0, 1.0, device)?);
    let (x, _) = m.flow.sample_from_noise(ctx, &z, cond)?;
    let std = ctx
        .tape
        .constant(Tensor::from_slice(&m.standardizer.std, &[1, d], device)?);
    let mean = ctx
        .tape
        .constant(Tensor::from_slice(&m.standardizer.mean, &[1, d], device)?);
    let parts = x.mul(&std)?.add(&mean)?.reshape(&[b, p, 3])?;
    let (eta, phi, pt) = (
        parts.narrow(2, 0, 1)?,
        parts.narrow(2, 1, 1)?,
        parts.narrow(2, 2, 1)?,
    );
    let sum = |v: crate::autograd::Var| -> Result<crate::autograd::Var> {
        v.clamp(-100.0, 100.0)?.sum(&[1, 2], false)
    };
    let px = sum(pt.mul(&phi.cos()?)?)?;
    let py = sum(pt.mul(&phi.sin()?)?)?;
    let pz = sum(pt.mul(&eta.sinh()?)?)?;
    let e = sum(pt.mul(&eta.cosh()?)?)?;
    let m2 = e
        .square()?
        .sub(&px.square()?)?
        .sub(&py.square()?)?
        .sub(&pz.square()?)?;
    let mass = m2.relu()?.add_scalar(1e-12)?.sqrt()?;
    let goal = ctx.tape.constant(Tensor::from_slice(target, &[b], device)?);
    mass.sub(&goal)?.square()?.mean_all()
}

/// log p of every row of `rows` (standardised, `[n, d]`, context `[n, c]`) in eval mode, in
/// chunks of 1,000.
fn log_probs(
    flow: &Flow,
    rows: &[f32],
    context: &[f32],
    d: usize,
    device: Device,
) -> Result<Vec<f32>> {
    let n = rows.len() / d;
    let c = flow.config.context;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(1000) {
        let len = (n - start).min(1000);
        let ctx = Ctx::new(false, 0);
        let x = ctx.tape.constant(Tensor::from_slice(
            &rows[start * d..(start + len) * d],
            &[len, d],
            device,
        )?);
        let cond = if c > 0 {
            Some(ctx.tape.constant(Tensor::from_slice(
                &context[start * c..(start + len) * c],
                &[len, c],
                device,
            )?))
        } else {
            None
        };
        out.extend(flow.log_prob(&ctx, &x, cond.as_ref())?.value().to_vec()?);
    }
    Ok(out)
}

/// Mean NLL of `rows` (standardised, `[n, d]`) in eval mode.
fn nll_of(flow: &Flow, rows: &[f32], context: &[f32], d: usize, device: Device) -> Result<f64> {
    let lp = log_probs(flow, rows, context, d, device)?;
    Ok(-lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len().max(1) as f64)
}

/// Train a flow on `data` and write the run directory `out`; see the module doc.
pub fn train_flow(
    data: &JetNetData,
    flow_config: FlowConfig,
    cfg: &TrainConfig,
    out: &Path,
    mut progress: impl FnMut(&StepInfo),
) -> Result<TrainReport> {
    let d = data.n_particles * 3;
    if flow_config.features != d {
        return Err(Error::invalid(format!(
            "flow has {} features but jets give {d}",
            flow_config.features
        )));
    }
    if data.n_jets < 10 || cfg.batch == 0 || cfg.steps == 0 {
        return Err(Error::invalid(
            "training needs ≥ 10 jets, a batch size and steps",
        ));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Error::file(out, format!("cannot create run directory: {e}")))?;
    let mut rng = Rng::new(cfg.seed);
    // 70/30 train/validation split (MPGAN / DESY convention), seeded
    let mut order: Vec<usize> = (0..data.n_jets).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let n_train = data.n_jets * 7 / 10;
    let (train_idx, val_idx) = order.split_at(n_train);
    let mut train = to_flow_vectors(data, train_idx, &mut rng);
    let train_real: Vec<bool> = train_idx
        .iter()
        .flat_map(|&i| (0..data.n_particles).map(move |j| data.particle(i, j)[3] != 0.0))
        .collect();
    let mut val = to_flow_vectors(data, val_idx, &mut rng);
    let standardizer = Standardizer::fit(&train, d)?;
    standardizer.apply(&mut train);
    standardizer.apply(&mut val);
    let flow_config = FlowConfig {
        context: cfg.variant.context_dim(),
        ..flow_config
    };
    let c = flow_config.context;
    let train_cond = Conditions::of(data, train_idx);
    let scale = train_cond.scale();
    let train_ctx = train_cond.context(cfg.variant, &scale);
    let val_ctx = Conditions::of(data, val_idx).context(cfg.variant, &scale);

    let config_json = serde_json::json!({
        "model": "flow", "variant": cfg.variant.name(), "flow": config_to_json(&flow_config),
        "train": {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "clip": cfg.clip,
                  "val_every": cfg.val_every, "patience": cfg.patience,
                  "lr_schedule": cfg.lr_schedule.name(), "reflect": cfg.reflect, "seed": cfg.seed, "device": cfg.device.to_string()},
        "data": {"jets": data.n_jets, "particles": data.n_particles, "train": n_train, "validation": val_idx.len(), "split": "70/30 seeded"},
        "jetgen_version": crate::VERSION,
    });
    store::write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(&config_json)
            .unwrap_or_default()
            .as_bytes(),
    )?;

    let model = TrainedFlow {
        flow: Flow::new(flow_config, &mut rng.fork(), cfg.device)?,
        standardizer,
        n_particles: data.n_particles,
        variant: cfg.variant,
        scale,
        conditions: train_cond,
    };
    let flow = &model.flow;
    let mut opt = Adam::new(
        flow.params(),
        AdamConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            decoupled: true,
            ..Default::default()
        },
    );
    let ckpt = out.join("checkpoint.safetensors");
    let log_path = out.join("train_log.csv");
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| Error::file(&log_path, format!("cannot create: {e}")))?;
    writeln!(log, "step,train_nll,val_nll,jets_per_s")?;

    let (mut best, mut since_best, mut bad_steps) = (f64::INFINITY, 0usize, 0usize);
    let mut first_train = f64::NAN;
    let mut steps_run = 0;
    let mut window = (0f64, 0usize, Instant::now());
    let (mut history_train, mut history_val) = (Vec::new(), Vec::new());
    let params = flow.params();
    for step in 1..=cfg.steps {
        let picks: Vec<usize> = (0..cfg.batch).map(|_| rng.below(n_train)).collect();
        let mut rows: Vec<f32> = picks
            .iter()
            .flat_map(|&i| train[i * d..(i + 1) * d].iter().copied())
            .collect();
        if cfg.reflect {
            let p = data.n_particles;
            for (row, &i) in rows.chunks_exact_mut(d).zip(&picks) {
                let flips = rng.below(4);
                let real = &train_real[i * p..(i + 1) * p];
                reflect_standardized(
                    row,
                    real,
                    flips & 1 != 0,
                    flips & 2 != 0,
                    &model.standardizer,
                );
            }
        }
        let cond_rows: Vec<f32> = picks
            .iter()
            .flat_map(|&i| train_ctx[i * c..(i + 1) * c].iter().copied())
            .collect();
        opt.zero_grad();
        let ctx = Ctx::new(true, cfg.seed.wrapping_add(step as u64));
        let x = ctx
            .tape
            .constant(Tensor::from_slice(&rows, &[cfg.batch, d], cfg.device)?);
        let cond = if c > 0 {
            Some(
                ctx.tape
                    .constant(Tensor::from_slice(&cond_rows, &[cfg.batch, c], cfg.device)?),
            )
        } else {
            None
        };
        let nll = flow.log_prob(&ctx, &x, cond.as_ref())?.mean_all()?.neg()?;
        let nll_value = nll.value().item()?;
        let loss = if cfg.variant.constrained() && step > cfg.mass_delay {
            let target: Vec<f32> = picks
                .iter()
                .map(|&i| model.conditions.mass[i] as f32)
                .collect();
            let mse = mass_constraint(&ctx, &model, cond.as_ref(), &target, &mut rng, cfg.device)?;
            nll.add(&mse.mul_scalar(cfg.mass_lambda)?)?
        } else {
            nll
        };
        let loss_value = loss.value().item()?;
        let _ = nll_value;
        loss.backward()?;
        let norm = clip_grad_norm(&params, cfg.clip)?;
        if !loss_value.is_finite() || !norm.is_finite() {
            bad_steps += 1;
            opt.zero_grad();
            if bad_steps >= 5 {
                return Err(Error::NonFinite {
                    what: format!("loss/gradients for {bad_steps} steps in a row (step {step})"),
                    count: bad_steps,
                    total: step,
                });
            }
            continue;
        }
        bad_steps = 0;
        opt.config.lr = cfg.lr_schedule.at(cfg.lr, step, cfg.steps);
        opt.step()?;
        steps_run = step;
        if first_train.is_nan() {
            first_train = loss_value;
        }
        window.0 += loss_value;
        window.1 += 1;
        let validate = step % cfg.val_every == 0 || step == cfg.steps;
        let val_nll = if validate {
            Some(nll_of(flow, &val, &val_ctx, d, cfg.device)?)
        } else {
            None
        };
        if validate || step % 10 == 0 {
            let elapsed = window.2.elapsed().as_secs_f64();
            let info = StepInfo {
                step,
                steps: cfg.steps,
                train_nll: window.0 / window.1 as f64,
                val_nll,
                jets_per_s: (window.1 * cfg.batch) as f64 / elapsed.max(1e-9),
            };
            writeln!(
                log,
                "{},{:.6},{},{:.1}",
                step,
                info.train_nll,
                val_nll.map(|v| format!("{v:.6}")).unwrap_or_default(),
                info.jets_per_s
            )?;
            progress(&info);
            history_train.push((step as f64, info.train_nll));
            if let Some(v) = val_nll {
                history_val.push((step as f64, v));
            }
            window = (0.0, 0, Instant::now());
        }
        if let Some(v) = val_nll {
            if v < best {
                best = v;
                since_best = 0;
                save_checkpoint(&ckpt, &model)?;
            } else {
                since_best += 1;
                if since_best >= cfg.patience {
                    break;
                }
            }
        }
    }
    log.flush()?;
    if !ckpt.exists() {
        return Err(Error::invalid(
            "training produced no finite validation loss; no checkpoint written",
        ));
    }
    // evaluate the best checkpoint on jets generated from it
    let best_model = load_checkpoint(&ckpt, cfg.device)?;
    let n_gen = cfg.generate.min(val_idx.len()).max(1);
    let generated = generate(&best_model, n_gen, cfg.seed ^ 0x5EED, cfg.device)?;
    generated.write_hdf5(&out.join("generated.hdf5"))?;
    let real = subset(data, val_idx)?;
    let eval_cfg = EvalConfig {
        w1_batch_size: Some(n_gen.min(10_000)),
        full: cfg.full_eval,
        ..EvalConfig::new(Protocol::Mpgan, cfg.seed)
    };
    let metrics = evaluate(&real, &generated, &eval_cfg, &mut |_| {})?;
    let truth = subset(data, &train_idx[..n_gen.min(train_idx.len())])?;
    let truth_floor = evaluate(&real, &truth, &eval_cfg, &mut |_| {})?;
    let mut metrics_json = metrics.to_json();
    metrics_json["truth_floor"] = truth_floor.to_json();
    metrics_json["truth_floor"]["note"] =
        "training jets (as many as generated) vs the same validation jets".into();
    metrics_json["best_val_nll"] = best.into();
    metrics_json["steps_run"] = steps_run.into();
    metrics_json["first_train_nll"] = first_train.into();
    metrics_json["real"] = "validation split".into();
    store::write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(&metrics_json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let mut plots = Vec::new();
    if cfg.plots {
        let dir = out.join("plots");
        plots = crate::plots::comparison_plots(&real, &generated, &dir)?;
        let curve = dir.join("loss.png");
        crate::plots::line_plot(
            &curve,
            "Training",
            "step",
            "loss (NLL per jet)",
            &[
                ("train", crate::plots::chart::REAL, history_train),
                ("validation", crate::plots::chart::GEN, history_val),
            ],
        )?;
        plots.push(curve);
    }
    Ok(TrainReport {
        run_dir: out.to_path_buf(),
        steps_run,
        first_train_nll: first_train,
        best_val_nll: best,
        metrics,
        truth_floor,
        plots,
    })
}

/// The jets `idx` of `data` as a new set.
pub fn subset(data: &JetNetData, idx: &[usize]) -> Result<JetNetData> {
    let p = data.n_particles;
    let particles = idx
        .iter()
        .flat_map(|&i| data.particles[i * p * 4..(i + 1) * p * 4].iter().copied())
        .collect();
    let jets = idx
        .iter()
        .flat_map(|&i| data.jet(i).iter().copied())
        .collect();
    JetNetData::new(particles, jets, idx.len(), p, "subset")
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn cosine_schedule_runs_from_lr_to_zero() {
        let c = LrSchedule::Cosine;
        assert_eq!(c.at(1e-3, 1, 100), 1e-3);
        assert!((c.at(1e-3, 51, 100) - 0.5e-3).abs() < 1e-12);
        assert!(c.at(1e-3, 100, 100) < 1e-6);
        assert_eq!(LrSchedule::Constant.at(1e-3, 77, 100), 1e-3);
        assert_eq!(LrSchedule::parse("cosine").unwrap(), c);
        assert!(LrSchedule::parse("linear").is_err());
    }
}
