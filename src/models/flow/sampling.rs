//! Generation and density evaluation with a trained flow: draw z ~ N(0, I) (and conditions
//! like the training jets', or given ones), run the inverse, de-standardise, turn the
//! vectors into JetNet jets; and log p(x) of given jets. [`FlowGenerator`] is the flow's
//! [`Generator`].

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::{ConditionSampler, Conditions, Variant};
use crate::models::flow::checkpoint::{TrainedFlow, FAMILY};
use crate::models::flow::network::Flow;
use crate::models::flow_data::from_flow_vectors;
use crate::nn::Ctx;
use crate::rng::Rng;
use crate::runs::generator::{Conditioning, Generator};
use crate::tensor::Tensor;

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

/// log p of every row of `rows` (standardised, `[n, d]`, context `[n, c]`) in eval mode, in
/// chunks of 1,000.
pub(crate) fn log_probs(
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

/// A trained flow on its device, as a [`Generator`].
pub struct FlowGenerator {
    pub model: TrainedFlow,
    pub device: Device,
}

impl FlowGenerator {
    /// Load a flow checkpoint onto `device`.
    pub fn load(path: &std::path::Path, device: Device) -> Result<FlowGenerator> {
        Ok(FlowGenerator {
            model: crate::models::flow::checkpoint::load_checkpoint(path, device)?,
            device,
        })
    }
}

impl Generator for FlowGenerator {
    fn family(&self) -> &'static str {
        FAMILY
    }
    fn variant(&self) -> String {
        self.model.variant.name().to_string()
    }
    fn particles(&self) -> usize {
        self.model.n_particles
    }
    fn conditioning(&self) -> Conditioning {
        Conditioning {
            mass: self.model.variant.context_dim() >= 1,
            multiplicity: self.model.variant.has_multiplicity(),
        }
    }
    fn device(&self) -> Device {
        self.device
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        generate(&self.model, n, seed, self.device)
    }
    fn generate_conditional(&self, given: &Conditions, seed: u64) -> Result<JetNetData> {
        generate_conditional(&self.model, given, seed, self.device)
    }
    fn log_prob(&self, jets: &JetNetData) -> Result<Vec<f64>> {
        log_prob_jets(&self.model, jets, self.device)
    }
    fn training_mass_range(&self) -> Option<(f64, f64)> {
        crate::runs::generator::range_of(&self.model.conditions.mass)
    }
}
