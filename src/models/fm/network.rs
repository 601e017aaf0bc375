//! The EPiC velocity network (Buhmann, Ewen, Kasieczka et al., "EPiC-ly fast particle cloud
//! generation", and its flow-matching use in EPiC-FM, arXiv:2310.00049): per-particle MLPs
//! exchanging information with a small global vector through masked mean and sum pooling in
//! every layer, with a time embedding fed to both paths.
//!
//! Shapes: particles `x [B, P, 3]`, mask `m [B, P]` (1 = real), time `t [B]`, optional
//! context `c [B, C]` (e.g. the standardised relative jet mass); out: velocity `[B, P, 3]`.
//! ```text
//! τ   = [cos(ω_k t), sin(ω_k t)]_k            time embedding [B, T], ω_k = 1000^{k/(T/2−1)}
//! pool(h) = [Σ_p m h / max(Σ_p m, 1),  s·Σ_p m h]            masked mean and sum (s = sum_scale)
//! h⁰  = σ(local_0([x, τ])) ⊙ m                                 [B, P, H]
//! g⁰  = σ(global_0([pool(h⁰), τ, c]))                          [B, G]
//! per layer ℓ:
//!   g  ← σ(fc_global2(σ(fc_global1([pool(h), g, τ, c]))) + g)
//!   h  ← σ(fc_local2(σ(fc_local1([h, g, τ]))) + h) ⊙ m
//! v   = out(h) ⊙ m
//! ```
//! σ = leaky ReLU (slope 0.01). Padded particles are zeroed after every layer and left out
//! of the pooling, so they never influence real ones, and every operation is per particle
//! or a symmetric pooling: v is permutation-equivariant. (The reference wraps its layers in
//! weight normalisation; these are plain linear layers with PyTorch's initialisation.)

use serde::{Deserialize, Serialize};

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Ctx, Linear, Module, Param};
use crate::ops::epic::{epic_global, epic_particle};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Leaky ReLU slope of every layer.
pub const SLOPE: f64 = 0.01;

/// Architecture of an [`EpicNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpicConfig {
    /// Particles per jet (P).
    pub particles: usize,
    /// EPiC layers.
    pub layers: usize,
    /// Width of the particle path (H).
    pub hidden: usize,
    /// Size of the global vector (G).
    pub global: usize,
    /// Size of the time embedding (T, even).
    pub time_embed: usize,
    /// Size of the context vector (C; 0 = unconditional).
    pub context: usize,
    /// Scale of the masked sum pooling.
    pub sum_scale: f64,
}

impl EpicConfig {
    /// The reference configuration: 6 layers, hidden 128, global 10, time embedding 32,
    /// sum scale 1e-2, for `particles` particles and `context` condition features.
    pub fn reference(particles: usize, context: usize) -> EpicConfig {
        EpicConfig {
            particles,
            layers: 6,
            hidden: 128,
            global: 10,
            time_embed: 32,
            context,
            sum_scale: 1e-2,
        }
    }

    /// Every size positive and in range (particles ≤ 4096, layers ≤ 64, widths ≤ 8192,
    /// context ≤ 16, an even time embedding), sum scale finite.
    pub fn validate(&self) -> Result<()> {
        let ok = (1..=4096).contains(&self.particles)
            && (1..=64).contains(&self.layers)
            && (1..=8192).contains(&self.hidden)
            && (1..=8192).contains(&self.global)
            && (2..=1024).contains(&self.time_embed)
            && self.time_embed.is_multiple_of(2)
            && self.context <= 16
            && self.sum_scale.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "EPiC sizes out of range (particles 1..=4096, layers 1..=64, hidden and \
                 global 1..=8192, an even time embedding 2..=1024, context ≤ 16): {self:?}"
            )))
        }
    }

    /// Weights and biases in all (saturating).
    pub fn parameter_count(&self) -> u128 {
        let lin = |i: usize, o: usize| (i as u128) * (o as u128) + o as u128;
        let (h, g, t, c) = (self.hidden, self.global, self.time_embed, self.context);
        let layer = lin(2 * h + g + t + c, h) + lin(h, g) + lin(h + g + t, h) + lin(h, h);
        lin(3 + t, h)
            + lin(2 * h + t + c, g)
            + (self.layers as u128).saturating_mul(layer)
            + lin(h, 3)
    }
}

/// One EPiC layer: the global update from the pooled particles, then the particle update
/// from the new global vector (see the module doc).
pub struct EpicLayer {
    pub fc_global1: Linear,
    pub fc_global2: Linear,
    pub fc_local1: Linear,
    pub fc_local2: Linear,
}

/// The velocity network.
pub struct EpicNet {
    pub config: EpicConfig,
    /// Run each EPiC layer as the two fused ops of [`crate::ops::epic`] (CPU or CUDA; the
    /// default); false composes it from basic tape ops (the reference, and the path that is
    /// differentiable to any order).
    pub fused: bool,
    pub local_0: Linear,
    pub global_0: Linear,
    pub layers: Vec<EpicLayer>,
    pub out: Linear,
}

/// The constants of one forward pass: the mask as `[B, P, 1]`, the time embedding as
/// `[B, T]` and broadcast over particles `[B, P, T]`, the particle count per jet `[B, 1]`.
pub struct Frame {
    pub mask: Var,
    pub tau: Var,
    pub tau_particles: Var,
    pub count: Var,
}

/// The cosine time embedding `[B, T]` of times `t` (see the module doc).
pub fn time_embedding(t: &[f32], size: usize) -> Vec<f32> {
    let half = size / 2;
    let mut out = Vec::with_capacity(t.len() * size);
    for &tt in t {
        for k in 0..half {
            let w = if half > 1 {
                1000f64.powf(k as f64 / (half - 1) as f64)
            } else {
                1.0
            };
            out.push((w * tt as f64).cos() as f32);
        }
        for k in 0..half {
            let w = if half > 1 {
                1000f64.powf(k as f64 / (half - 1) as f64)
            } else {
                1.0
            };
            out.push((w * tt as f64).sin() as f32);
        }
    }
    out
}

fn leaky(x: &Var) -> Result<Var> {
    x.leaky_relu(SLOPE)
}

impl EpicNet {
    /// A freshly initialised network.
    pub fn new(config: EpicConfig, rng: &mut Rng, device: Device) -> Result<EpicNet> {
        config.validate()?;
        let (h, g, t, c) = (
            config.hidden,
            config.global,
            config.time_embed,
            config.context,
        );
        let mut lin = |name: &str, i: usize, o: usize| Linear::new(name, i, o, true, rng, device);
        let local_0 = lin("local_0", 3 + t, h)?;
        let global_0 = lin("global_0", 2 * h + t + c, g)?;
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let p = format!("layers.{l}");
            layers.push(EpicLayer {
                fc_global1: lin(&format!("{p}.fc_global1"), 2 * h + g + t + c, h)?,
                fc_global2: lin(&format!("{p}.fc_global2"), h, g)?,
                fc_local1: lin(&format!("{p}.fc_local1"), h + g + t, h)?,
                fc_local2: lin(&format!("{p}.fc_local2"), h, h)?,
            });
        }
        let out = lin("out", h, 3)?;
        Ok(EpicNet {
            config,
            fused: true,
            local_0,
            global_0,
            layers,
            out,
        })
    }

    /// The per-pass constants for times `t [B]` and mask `mask [B, P]` (checked).
    pub fn frame(&self, ctx: &Ctx, t: &[f32], mask: &Tensor) -> Result<Frame> {
        let p = self.config.particles;
        let b = t.len();
        if mask.shape() != [b, p] {
            return Err(Error::shape(
                "epic",
                format!("mask must be [{b}, {p}], got {:?}", mask.shape()),
            ));
        }
        let device = mask.device();
        let te = self.config.time_embed;
        let tau = Tensor::from_slice(&time_embedding(t, te), &[b, te], device)?;
        let tau_p = crate::ops::movement::broadcast_to(&tau.reshape(&[b, 1, te])?, &[b, p, te])?;
        let m = mask.to_vec()?;
        let count: Vec<f32> = m
            .chunks_exact(p)
            .map(|r| r.iter().sum::<f32>().max(1.0))
            .collect();
        Ok(Frame {
            mask: ctx.tape.constant(mask.reshape(&[b, p, 1])?),
            tau: ctx.tape.constant(tau),
            tau_particles: ctx.tape.constant(tau_p),
            count: ctx
                .tape
                .constant(Tensor::from_slice(&count, &[b, 1], device)?),
        })
    }

    /// Masked mean and scaled sum of `h [B, P, H]` → `[B, 2H]` (h is already masked).
    fn pool(&self, h: &Var, frame: &Frame) -> Result<Var> {
        let sum = h.sum(&[1], false)?;
        let mean = sum.div(&frame.count)?;
        Var::concat(&[&mean, &sum.mul_scalar(self.config.sum_scale)?], 1)
    }

    /// The velocity `[B, P, 3]` at particles `x [B, P, 3]` (see the module doc); `context`
    /// is `[B, C]` when the network is conditional.
    pub fn forward(&self, ctx: &Ctx, x: &Var, frame: &Frame, context: Option<&Var>) -> Result<Var> {
        let c = &self.config;
        let (b, p) = (frame.tau.shape()[0], c.particles);
        if x.shape() != [b, p, 3] {
            return Err(Error::shape(
                "epic",
                format!("particles must be [{b}, {p}, 3], got {:?}", x.shape()),
            ));
        }
        match (context, c.context) {
            (None, 0) => {}
            (Some(v), k) if k > 0 && v.shape() == [b, k] => {}
            _ => {
                return Err(Error::shape(
                    "epic",
                    format!(
                        "the network takes a context of {} features for {b} jets, got {:?}",
                        c.context,
                        context.map(|v| v.shape().to_vec())
                    ),
                ))
            }
        }
        fn with_ctx<'a>(mut parts: Vec<&'a Var>, context: Option<&'a Var>) -> Result<Var> {
            if let Some(v) = context {
                parts.push(v);
            }
            Var::concat(&parts, 1)
        }
        let m = &frame.mask;
        let mut h = leaky(
            &self
                .local_0
                .forward(ctx, &Var::concat(&[x, &frame.tau_particles], 2)?)?,
        )?
        .mul(m)?;
        let mut g = leaky(&self.global_0.forward(
            ctx,
            &with_ctx(vec![&self.pool(&h, frame)?, &frame.tau], context)?,
        )?)?;
        if self.fused {
            let mask = frame.mask.value().reshape(&[b, p])?;
            let extra = match context {
                Some(v) => Var::concat(&[&frame.tau, v], 1)?,
                None => frame.tau.clone(),
            };
            let param = |p: &Param| ctx.tape.param(p);
            for layer in &self.layers {
                let (g1, g2) = (&layer.fc_global1, &layer.fc_global2);
                let (l1, l2) = (&layer.fc_local1, &layer.fc_local2);
                let bias = |l: &Linear| -> Result<Var> {
                    l.bias
                        .as_ref()
                        .map(param)
                        .ok_or_else(|| Error::invalid("EPiC layers have biases"))
                };
                let wg = [
                    &param(&g1.weight),
                    &bias(g1)?,
                    &param(&g2.weight),
                    &bias(g2)?,
                ];
                g = epic_global(&h, &g, &extra, wg, &mask, c.sum_scale, SLOPE)?;
                let wl = [
                    &param(&l1.weight),
                    &bias(l1)?,
                    &param(&l2.weight),
                    &bias(l2)?,
                ];
                h = epic_particle(&h, &g, &frame.tau, wl, &mask, SLOPE)?;
            }
            return self.out.forward(ctx, &h)?.mul(m);
        }
        for layer in &self.layers {
            let pooled = self.pool(&h, frame)?;
            let g1 = leaky(
                &layer
                    .fc_global1
                    .forward(ctx, &with_ctx(vec![&pooled, &g, &frame.tau], context)?)?,
            )?;
            g = leaky(&layer.fc_global2.forward(ctx, &g1)?.add(&g)?)?;
            let g_p = g
                .reshape(&[b, 1, c.global])?
                .broadcast_to(&[b, p, c.global])?;
            let l_in = Var::concat(&[&h, &g_p, &frame.tau_particles], 2)?;
            let h1 = leaky(&layer.fc_local1.forward(ctx, &l_in)?)?;
            h = leaky(&layer.fc_local2.forward(ctx, &h1)?.add(&h)?)?.mul(m)?;
        }
        self.out.forward(ctx, &h)?.mul(m)
    }
}

impl Module for EpicNet {
    fn params(&self) -> Vec<Param> {
        let mut p = self.local_0.params();
        p.extend(self.global_0.params());
        for l in &self.layers {
            for lin in [&l.fc_global1, &l.fc_global2, &l.fc_local1, &l.fc_local2] {
                p.extend(lin.params());
            }
        }
        p.extend(self.out.params());
        p
    }
}
