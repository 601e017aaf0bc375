//! The VAE's reconstruction losses, per jet (`[B]`), on the decoder output `x̂ [B, P·3]`
//! in standardised units against the batch's input:
//!
//! * **MSE**: Σ_{particles, features} (x̂ − x)² of the standardised entries;
//! * **Chamfer**: α·Σ_i min_j ‖x_i − x̂_j‖² + α·Σ_j min_i ‖x_i − x̂_j‖² of the standardised
//!   clouds (padded input rows as zero-momentum points, or masked out);
//! * **Chamfer + physics**: the Chamfer term + γ_pT·((pT(x̂) − pT(x))/s_pT)² +
//!   γ_m·((m(x̂) − m(x))/s_m)², jet pT and mass of the summed massless 4-momenta of the
//!   de-standardised particles (E = |p| for Cartesian momenta; pT(cos φ, sin φ, sinh η),
//!   pT cosh η for relative ones), s = the training jets' standard deviations;
//! * **Sinkhorn (EMD)**: entropic OT between the input's (η, φ) points weighted by pT
//!   fractions and the output's, weights max(pT̂, 0) + 10⁻⁶ normalised to 1, ground distance
//!   Euclidean in (η, φ) with the output φ wrapped into [−π, π], ε annealed from the
//!   clouds' diameter to the target (the [`crate::ops::sinkhorn`] op; balanced OT_ε, not
//!   debiased, as in the EMD-VAE).

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::flow_data::Standardizer;
use crate::models::vae::data::Representation;
use crate::models::vae::settings::{ChamferPadding, ReconLoss, VaeSettings};
use crate::nn::Ctx;
use crate::ops::chamfer::{BatchReduction, PointReduction};
use crate::ops::sinkhorn::{Cost, SinkhornConfig};
use crate::tensor::Tensor;

/// What a reconstruction loss needs besides the networks (all recorded in checkpoints).
#[derive(Clone, Debug)]
pub struct LossSpec {
    pub loss: ReconLoss,
    pub representation: Representation,
    pub particles: usize,
    pub alpha: f64,
    pub gamma_pt: f64,
    pub gamma_mass: f64,
    pub padding: ChamferPadding,
    /// Standard deviations of the training jets' pT and mass (units of the representation).
    pub scale_pt: f64,
    pub scale_mass: f64,
    pub sinkhorn: SinkhornConfig,
    pub standardizer: Standardizer,
}

impl LossSpec {
    /// The loss of `settings` for clouds of `particles` particles in `representation`, with
    /// the training split's standardisation and jet scales.
    pub fn new(
        settings: &VaeSettings,
        representation: Representation,
        particles: usize,
        standardizer: Standardizer,
        scales: (f64, f64),
    ) -> Result<LossSpec> {
        if settings.loss == ReconLoss::Sinkhorn && representation != Representation::Relative {
            return Err(Error::invalid(
                "--loss sinkhorn needs relative (η, φ, pT) jets: train on a JetNet file, not Cartesian momenta",
            ));
        }
        Ok(LossSpec {
            loss: settings.loss,
            representation,
            particles,
            alpha: settings.alpha,
            gamma_pt: settings.gamma_pt,
            gamma_mass: settings.gamma_mass,
            padding: settings.chamfer_padding,
            scale_pt: scales.0.max(1e-12),
            scale_mass: scales.1.max(1e-12),
            sinkhorn: sinkhorn_config(
                settings.epsilon,
                settings.eps_scaling,
                settings.sinkhorn_iters,
            ),
            standardizer,
        })
    }
}

/// The EMD-VAE's Sinkhorn settings: Euclidean ground distance, target ε, ε-scaling from the
/// diameter, `iters` iterations at the target, no debiasing.
pub fn sinkhorn_config(epsilon: f64, scaling: f64, iters: usize) -> SinkhornConfig {
    SinkhornConfig {
        cost: Cost::Euclidean,
        epsilon,
        max_iters: iters,
        tolerance: None,
        scaling: Some(scaling),
        debias: false,
    }
}

/// One batch of input jets, as the losses need them.
pub struct LossBatch {
    /// `[B, P·3]` standardised features.
    pub x: Tensor,
    /// `[B, P]` real-particle mask.
    pub mask: Tensor,
    /// `[B, P, 3]` features in the representation's units.
    pub raw: Vec<f32>,
    /// Input jet pT and mass, `[B]` each.
    pub jet_pt: Vec<f32>,
    pub jet_mass: Vec<f32>,
}

impl LossBatch {
    /// A batch from raw features `[B, P, 3]` and masks `[B, P]`.
    pub fn new(
        raw: Vec<f32>,
        mask: Vec<f32>,
        p: usize,
        spec: &LossSpec,
        device: Device,
    ) -> Result<LossBatch> {
        let b = mask.len() / p.max(1);
        let mut std = raw.clone();
        spec.standardizer.apply(&mut std);
        let (mut jet_pt, mut jet_mass) = (Vec::with_capacity(b), Vec::with_capacity(b));
        for jet in raw.chunks_exact(p * 3) {
            let s = jet
                .chunks_exact(3)
                .fold(crate::physics::P4::default(), |a, r| {
                    a + spec.representation.p4(r)
                });
            jet_pt.push(s.pt() as f32);
            jet_mass.push(s.mass() as f32);
        }
        Ok(LossBatch {
            x: Tensor::from_slice(&std, &[b, p * 3], device)?,
            mask: Tensor::from_slice(&mask, &[b, p], device)?,
            raw,
            jet_pt,
            jet_mass,
        })
    }
    /// Jets in the batch.
    pub fn len(&self) -> usize {
        self.jet_pt.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.jet_pt.is_empty()
    }
}

/// The reconstruction loss of each jet, `[B]`, of the decoder output `xhat [B, P·3]`.
pub fn recon_per_jet(ctx: &Ctx, spec: &LossSpec, batch: &LossBatch, xhat: &Var) -> Result<Var> {
    let (b, p) = (batch.len(), spec.particles);
    let x = ctx.tape.constant(batch.x.clone());
    match spec.loss {
        ReconLoss::Mse => xhat.sub(&x)?.square()?.sum(&[1], false),
        ReconLoss::Chamfer => chamfer_term(spec, batch, &x, xhat, b, p),
        ReconLoss::ChamferPhysics => {
            let c = chamfer_term(spec, batch, &x, xhat, b, p)?;
            c.add(&physics_term(ctx, spec, batch, xhat)?)
        }
        ReconLoss::Sinkhorn => emd_term(ctx, spec, batch, xhat),
    }
}

fn chamfer_term(
    spec: &LossSpec,
    batch: &LossBatch,
    x: &Var,
    xhat: &Var,
    b: usize,
    p: usize,
) -> Result<Var> {
    let cloud_in = x.reshape(&[b, p, 3])?;
    let cloud_out = xhat.reshape(&[b, p, 3])?;
    let mask = match spec.padding {
        ChamferPadding::Points => None,
        ChamferPadding::Masked => Some(&batch.mask),
    };
    cloud_in
        .chamfer(
            &cloud_out,
            mask,
            None,
            PointReduction::Sum,
            BatchReduction::None,
        )?
        .mul_scalar(spec.alpha)
}

/// `xhat [B, P·3]` de-standardised to `[B, P, 3]` in the representation's units.
pub fn destandardize(ctx: &Ctx, spec: &LossSpec, xhat: &Var) -> Result<Var> {
    let device = xhat.value().device();
    let b = xhat.shape()[0];
    let s = &spec.standardizer;
    let std = ctx
        .tape
        .constant(Tensor::from_slice(&s.std, &[1, 1, 3], device)?);
    let mean = ctx
        .tape
        .constant(Tensor::from_slice(&s.mean, &[1, 1, 3], device)?);
    xhat.reshape(&[b, spec.particles, 3])?.mul(&std)?.add(&mean)
}

/// Jet (pT, mass) `[B]` each of particles `[B, P, 3]` in `representation`'s units, as
/// summed massless 4-momenta (differentiable; `delta` keeps the square roots smooth at 0).
pub fn jet_pt_mass(parts: &Var, representation: Representation, delta: f64) -> Result<(Var, Var)> {
    let f = |k: usize| parts.narrow(2, k, 1);
    let (px, py, pz, e) = match representation {
        Representation::Cartesian => {
            let (px, py, pz) = (f(0)?, f(1)?, f(2)?);
            let e = px
                .square()?
                .add(&py.square()?)?
                .add(&pz.square()?)?
                .add_scalar(delta)?
                .sqrt()?;
            (px, py, pz, e)
        }
        Representation::Relative => {
            let (eta, phi, pt) = (f(0)?, f(1)?, f(2)?);
            (
                pt.mul(&phi.cos()?)?,
                pt.mul(&phi.sin()?)?,
                pt.mul(&eta.sinh()?)?,
                pt.mul(&eta.cosh()?)?,
            )
        }
    };
    let sum = |v: Var| v.sum(&[1, 2], false);
    let (px, py, pz, e) = (sum(px)?, sum(py)?, sum(pz)?, sum(e)?);
    let pt2 = px.square()?.add(&py.square()?)?;
    let pt = pt2.add_scalar(delta)?.sqrt()?;
    let m2 = e.square()?.sub(&pt2)?.sub(&pz.square()?)?;
    let mass = m2.relu()?.add_scalar(delta)?.sqrt()?;
    Ok((pt, mass))
}

/// The square-root regulator of [`jet_pt_mass`] per representation (GeV² or pT fraction²).
pub fn physics_delta(representation: Representation) -> f64 {
    match representation {
        Representation::Cartesian => 1e-6,
        Representation::Relative => 1e-12,
    }
}

fn physics_term(ctx: &Ctx, spec: &LossSpec, batch: &LossBatch, xhat: &Var) -> Result<Var> {
    let device = xhat.value().device();
    let b = batch.len();
    let parts = destandardize(ctx, spec, xhat)?;
    let (pt, mass) = jet_pt_mass(
        &parts,
        spec.representation,
        physics_delta(spec.representation),
    )?;
    let target =
        |v: &[f32]| -> Result<Var> { Ok(ctx.tape.constant(Tensor::from_slice(v, &[b], device)?)) };
    let dpt = pt
        .sub(&target(&batch.jet_pt)?)?
        .mul_scalar(1.0 / spec.scale_pt)?
        .square()?
        .mul_scalar(spec.gamma_pt)?;
    let dm = mass
        .sub(&target(&batch.jet_mass)?)?
        .mul_scalar(1.0 / spec.scale_mass)?
        .square()?
        .mul_scalar(spec.gamma_mass)?;
    dpt.add(&dm)
}

/// Weight floor of decoded particles in the EMD (so no output weight is exactly 0).
pub const EMD_WEIGHT_FLOOR: f64 = 1e-6;

fn emd_term(ctx: &Ctx, spec: &LossSpec, batch: &LossBatch, xhat: &Var) -> Result<Var> {
    let device = xhat.value().device();
    let (b, p) = (batch.len(), spec.particles);
    // the input: (η, φ) points and pT fractions (padding has weight 0)
    let mut pts = Vec::with_capacity(b * p * 2);
    let mut w = Vec::with_capacity(b * p);
    for jet in batch.raw.chunks_exact(p * 3) {
        let total: f32 = jet.chunks_exact(3).map(|r| r[2].max(0.0)).sum();
        for r in jet.chunks_exact(3) {
            pts.extend([r[0], r[1]]);
            w.push(if total > 0.0 {
                r[2].max(0.0) / total
            } else {
                0.0
            });
        }
    }
    let x = ctx
        .tape
        .constant(Tensor::from_slice(&pts, &[b, p, 2], device)?);
    let a = ctx.tape.constant(Tensor::from_slice(&w, &[b, p], device)?);
    // the output: φ wrapped into [−π, π] (a constant shift of 2π multiples), pT → weights
    let parts = destandardize(ctx, spec, xhat)?;
    let eta = parts.narrow(2, 0, 1)?;
    let phi = parts.narrow(2, 1, 1)?;
    let tau = std::f32::consts::TAU;
    let shift: Vec<f32> = phi
        .value()
        .to_vec()?
        .iter()
        .map(|&v| tau * (v / tau).round())
        .collect();
    let phi = phi.sub(
        &ctx.tape
            .constant(Tensor::from_slice(&shift, &[b, p, 1], device)?),
    )?;
    let y = Var::concat(&[&eta, &phi], 2)?;
    let raw_w = parts
        .narrow(2, 2, 1)?
        .reshape(&[b, p])?
        .relu()?
        .add_scalar(EMD_WEIGHT_FLOOR)?;
    let bw = raw_w.div(&raw_w.sum(&[1], true)?)?;
    x.sinkhorn(&y, &a, &bw, &spec.sinkhorn)
}
