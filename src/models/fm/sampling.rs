//! Generation with a trained flow-matching model: multiplicities (and relative masses, for
//! the mass-conditioned model) drawn like the training jets' or given, the mask of each jet
//! from its multiplicity (the first n particles real), noise x₀ ~ N(0, I) on the real
//! particles, the ODE dx/dt = v_θ(x, t) integrated from t = 0 to 1 with the chosen solver,
//! de-standardised, written in JetNet layout. [`FmGenerator`] is the family's
//! [`Generator`]; it reports the network evaluations of its last generation.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::{ConditionSampler, Conditions};
use crate::models::fm::checkpoint::{load_checkpoint, TrainedFm, FAMILY};
use crate::models::fm::inference::EpicInference;
use crate::models::fm::settings::FmCondition;
use crate::nn::Ctx;
use crate::ode::{solve, SolverSettings};
use crate::rng::{mix64, Rng};
use crate::runs::generator::{Conditioning, Generator};
use crate::tensor::Tensor;

/// Jets per ODE solve (bounds the working memory).
pub const CHUNK: usize = 1000;

/// v_θ(x, t) `[B, P, 3]` of the model at one time for all jets of a batch, with the jets'
/// `mask [B, P]` and standardised `context [B, C]` (empty when unconditional).
pub fn velocity(
    m: &TrainedFm,
    x: &Tensor,
    t: f64,
    mask: &Tensor,
    context: &[f32],
) -> Result<Tensor> {
    let ctx = Ctx::new(false, 0);
    let b = mask.shape()[0];
    let frame = m.net.frame(&ctx, &vec![t as f32; b], mask)?;
    let c = context_var(&ctx, m, context, b, x.device())?;
    let v = m
        .net
        .forward(&ctx, &ctx.tape.constant(x.clone()), &frame, c.as_ref())?;
    Ok(v.value().clone())
}

/// The context rows as a constant of `ctx` (None for an unconditional model).
pub fn context_var(
    ctx: &Ctx,
    m: &TrainedFm,
    context: &[f32],
    b: usize,
    device: Device,
) -> Result<Option<crate::autograd::Var>> {
    let k = m.condition.context_dim();
    if k == 0 {
        return Ok(None);
    }
    Ok(Some(ctx.tape.constant(Tensor::from_slice(
        context,
        &[b, k],
        device,
    )?)))
}

/// The standardised context row of a jet of relative mass `mass` and pT `pt` (GeV; empty
/// when unconditional).
pub fn context_of(m: &TrainedFm, mass: f64, pt: f64) -> Vec<f32> {
    let sm = ((mass - m.scale[0]) / m.scale[1]) as f32;
    match m.condition {
        FmCondition::None => vec![],
        FmCondition::Mass => vec![sm],
        FmCondition::MassPt => vec![sm, ((pt - m.pt_scale[0]) / m.pt_scale[1]) as f32],
    }
}

/// The jet pT condition of jets of the given relative masses: the pT of a training jet
/// drawn among the 10 nearest in mass.
pub fn pt_for_masses(m: &TrainedFm, masses: &[f64], rng: &mut Rng) -> Vec<f64> {
    let mut order: Vec<usize> = (0..m.pt.len()).collect();
    order.sort_by(|&a, &b| m.conditions.mass[a].total_cmp(&m.conditions.mass[b]));
    let sorted: Vec<f64> = order.iter().map(|&k| m.conditions.mass[k]).collect();
    masses
        .iter()
        .map(|&x| {
            if order.is_empty() {
                return 0.0;
            }
            let at = sorted.partition_point(|&v| v < x);
            let lo = at.saturating_sub(5);
            let hi = (at + 5).min(order.len());
            let lo = lo.min(hi.saturating_sub(1));
            m.pt[order[lo + rng.below(hi - lo)]]
        })
        .collect()
}

/// Masks `[n, P]` with the first `counts[i]` particles real.
pub fn masks_of(counts: &[usize], p: usize) -> Vec<f32> {
    counts
        .iter()
        .flat_map(|&k| (0..p).map(move |j| f32::from(j < k)))
        .collect()
}

/// De-standardised particles `[n, P, 3]` with their multiplicities as JetNet jets: the
/// first `counts[i]` particles real (mask 1, negative pT clipped to 0, sorted by pT), the
/// rest zero; jet features [pT, η, m/pT, n] from the constituents (relative units).
pub fn to_jetnet(rows: &[f32], counts: &[usize], p: usize) -> Result<JetNetData> {
    let mut particles = Vec::with_capacity(counts.len() * p * 4);
    let mut jets = Vec::with_capacity(counts.len() * 4);
    for (jet, &k) in rows.chunks_exact(p * 3).zip(counts) {
        let mut parts: Vec<[f32; 4]> = jet
            .chunks_exact(3)
            .take(k)
            .map(|r| {
                let fin = |v: f32| if v.is_finite() { v } else { 0.0 };
                [fin(r[0]), fin(r[1]), fin(r[2]).max(0.0), 1.0]
            })
            .collect();
        parts.sort_by(|a, b| b[2].total_cmp(&a[2]));
        parts.resize(p, [0.0; 4]);
        let flat: Vec<f32> = parts.iter().flatten().copied().collect();
        let p4 = crate::physics::jet_p4(&flat, 4);
        jets.extend([p4.pt() as f32, p4.eta() as f32, p4.mass() as f32, k as f32]);
        particles.extend(flat);
    }
    JetNetData::new(particles, jets, counts.len(), p, "generated jets")
}

/// The conditions of `n` new jets: multiplicities drawn from the training jets' (and for
/// the mass-conditioned model masses from the PCHIP inverse CDF of those with that
/// multiplicity).
pub fn draw_conditions(m: &TrainedFm, n: usize, rng: &mut Rng) -> Result<(Conditions, Vec<f64>)> {
    match m.condition {
        FmCondition::Mass => Ok((ConditionSampler::new(&m.conditions)?.sample(rng, n), vec![])),
        FmCondition::MassPt => {
            let len = m.pt.len().min(m.conditions.n.len());
            if len == 0 {
                return Err(Error::invalid("the model has no training conditions"));
            }
            let picks: Vec<usize> = (0..n).map(|_| rng.below(len)).collect();
            Ok((
                Conditions {
                    mass: picks.iter().map(|&k| m.conditions.mass[k]).collect(),
                    n: picks.iter().map(|&k| m.conditions.n[k]).collect(),
                },
                picks.iter().map(|&k| m.pt[k]).collect(),
            ))
        }
        FmCondition::None => {
            let all = &m.conditions.n;
            if all.is_empty() {
                return Err(Error::invalid("the model has no training multiplicities"));
            }
            Ok((
                Conditions {
                    mass: vec![0.0; n],
                    n: (0..n).map(|_| all[rng.below(all.len())]).collect(),
                },
                vec![],
            ))
        }
    }
}

/// `given.len()` jets (conditions given or drawn; `pts` the jet pT per jet for the
/// mass-pt model, else empty) integrated with `solver`; returns the jets and the network
/// evaluations along each jet's trajectory (the most of any chunk). Chunk c's noise is
/// seeded by `mix64(seed ^ c)`.
pub fn generate_with(
    m: &TrainedFm,
    given: &Conditions,
    pts: &[f64],
    seed: u64,
    solver: &SolverSettings,
    device: Device,
) -> Result<(JetNetData, usize)> {
    let p = m.particles();
    let n = given.n.len();
    if n == 0 {
        return Err(Error::invalid("asked for 0 jets"));
    }
    let counts: Vec<usize> = given
        .n
        .iter()
        .map(|&k| {
            if k.is_finite() && k >= 0.0 && k <= p as f64 {
                Ok(k as usize)
            } else {
                Err(Error::invalid(format!(
                    "multiplicity must be in 0..={p}, got {k}"
                )))
            }
        })
        .collect::<Result<_>>()?;
    if m.condition.uses_mass() && given.mass.len() != n {
        return Err(Error::invalid(format!(
            "{} masses for {n} jets",
            given.mass.len()
        )));
    }
    if m.condition.uses_pt() && pts.len() != n {
        return Err(Error::invalid(format!(
            "{} jet pTs for {n} jets",
            pts.len()
        )));
    }
    let s = &m.standardizer;
    let mut rows = Vec::with_capacity(n * p * 3);
    let mut nfe = 0;
    // The tape-free path where it applies: the fused network, f32 weights on the CPU (an
    // inconsistent network is an error, not a silent fallback)
    let fast = (device == Device::Cpu && EpicInference::applies_to(&m.net))
        .then(|| EpicInference::new(&m.net))
        .transpose()?;
    for (c, start) in (0..n).step_by(CHUNK).enumerate() {
        let b = CHUNK.min(n - start);
        let mask_rows = masks_of(&counts[start..start + b], p);
        let mask = Tensor::from_slice(&mask_rows, &[b, p], device)?;
        let context: Vec<f32> = (start..start + b)
            .flat_map(|i| {
                let mass = given.mass.get(i).copied().unwrap_or(0.0);
                context_of(m, mass, pts.get(i).copied().unwrap_or(0.0))
            })
            .collect();
        let mut noise = Rng::new(mix64(seed ^ c as u64))
            .normal(&[b, p, 3], 0.0, 1.0, Device::Cpu)?
            .to_vec()?;
        for (k, v) in noise.iter_mut().enumerate() {
            *v *= mask_rows[k / 3];
        }
        let x0 = Tensor::from_slice(&noise, &[b, p, 3], device)?;
        let mut rhs = |t: f64, y: &[Tensor]| -> Result<Vec<Tensor>> {
            if let Some(fast) = &fast {
                let v = fast.velocity(&y[0].to_vec()?, &vec![t as f32; b], &mask_rows, &context)?;
                return Ok(vec![Tensor::from_cpu_vec(v, &[b, p, 3])?]);
            }
            Ok(vec![velocity(m, &y[0], t, &mask, &context)?])
        };
        let sol = solve(&mut rhs, vec![x0], 0.0, 1.0, solver)?;
        nfe = nfe.max(sol.nfe);
        let x1 = sol.y[0].to_vec()?;
        rows.extend(
            x1.iter()
                .enumerate()
                .map(|(k, &v)| v * s.std[k % 3] + s.mean[k % 3]),
        );
    }
    Ok((to_jetnet(&rows, &counts, p)?, nfe))
}

/// `n` jets with drawn conditions (seeded) and the evaluations they took.
pub fn generate(
    m: &TrainedFm,
    n: usize,
    seed: u64,
    solver: &SolverSettings,
    device: Device,
) -> Result<(JetNetData, usize)> {
    let mut rng = Rng::new(mix64(seed ^ 0xC0D1));
    let (given, pts) = draw_conditions(m, n, &mut rng)?;
    generate_with(m, &given, &pts, seed, solver, device)
}

/// A trained flow-matching model as a [`Generator`], with its current solver.
pub struct FmGenerator {
    pub model: TrainedFm,
    pub device: Device,
    pub solver: SolverSettings,
    last_nfe: AtomicUsize,
}

impl FmGenerator {
    /// Wrap a model; generation uses its checkpoint's default solver until
    /// [`Generator::set_solver`].
    pub fn new(model: TrainedFm, device: Device) -> FmGenerator {
        let solver = model.sampler;
        FmGenerator {
            model,
            device,
            solver,
            last_nfe: AtomicUsize::new(0),
        }
    }
    /// Load a checkpoint onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<FmGenerator> {
        device.ensure_available()?;
        Ok(FmGenerator::new(load_checkpoint(path, device)?, device))
    }
}

impl Generator for FmGenerator {
    fn family(&self) -> &'static str {
        FAMILY
    }
    fn variant(&self) -> String {
        self.model.condition.name().to_string()
    }
    fn particles(&self) -> usize {
        self.model.particles()
    }
    fn conditioning(&self) -> Conditioning {
        let mass = self.model.condition.uses_mass();
        Conditioning {
            mass,
            multiplicity: mass,
        }
    }
    fn device(&self) -> Device {
        self.device
    }
    fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        let (jets, nfe) = generate(&self.model, n, seed, &self.solver, self.device)?;
        self.last_nfe.store(nfe, Ordering::Relaxed);
        Ok(jets)
    }
    fn generate_conditional(&self, given: &Conditions, seed: u64) -> Result<JetNetData> {
        if !self.model.condition.uses_mass() {
            return Err(Error::invalid(
                "this flow-matching model is unconditional: it cannot take a jet mass",
            ));
        }
        if let Some(x) = given.mass.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
            return Err(Error::invalid(format!(
                "jet mass must be finite and ≥ 0, got {x}"
            )));
        }
        let full = Conditions {
            mass: given.mass.clone(),
            n: if given.n.len() == given.mass.len() {
                given.n.clone()
            } else {
                vec![self.particles() as f64; given.mass.len()]
            },
        };
        let pts = if self.model.condition.uses_pt() {
            pt_for_masses(&self.model, &full.mass, &mut Rng::new(mix64(seed ^ 0x97)))
        } else {
            vec![]
        };
        let (jets, nfe) = generate_with(&self.model, &full, &pts, seed, &self.solver, self.device)?;
        self.last_nfe.store(nfe, Ordering::Relaxed);
        Ok(jets)
    }
    fn log_prob(&self, jets: &JetNetData) -> Result<Vec<f64>> {
        crate::models::fm::likelihood::log_prob_jets(
            &self.model,
            jets,
            crate::models::fm::likelihood::Divergence::Exact,
            &self.solver,
            self.device,
        )
    }
    fn training_mass_range(&self) -> Option<(f64, f64)> {
        crate::runs::generator::range_of(&self.model.conditions.mass)
    }
    fn set_solver(&mut self, solver: &SolverSettings) -> Result<()> {
        solver.validate()?;
        self.solver = *solver;
        Ok(())
    }
    fn solver(&self) -> Option<SolverSettings> {
        Some(self.solver)
    }
    fn last_evaluations(&self) -> Option<usize> {
        Some(self.last_nfe.load(Ordering::Relaxed))
    }
}
