//! A coupling normalising flow (nflows' `Flow(CompositeTransform([...]), StandardNormal)`):
//! layers alternate which half of the features they transform (even, odd, even, ...; or a
//! seeded random half per layer, see [`MaskKind`]), each
//! conditioned by a ResidualNet on the other half (and an optional context), with a
//! standard normal base.
//!
//! log p(x) = log N(f(x); 0, I) + Σ_layers log|det ∂f_k/∂x| (data → noise through the
//! layers in order); sampling runs the inverses in reverse order from z ~ N(0, I).
//! Parameter names follow nflows (`_transform._transforms.{k}.transform_net...`).

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{alternating_mask, CouplingKind, CouplingTransform, Ctx, Module, Param};
use crate::ops::rqs::RqsConfig;
use crate::rng::Rng;

/// Architecture of a [`Flow`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowConfig {
    /// Dimension of x (90 = 30 particles × 3 features).
    pub features: usize,
    /// Dimension of the condition (0 = unconditional).
    pub context: usize,
    pub layers: usize,
    /// Affine or RQS (with its bins and tail bound).
    pub coupling: CouplingKind,
    pub hidden: usize,
    pub blocks: usize,
    pub dropout: f32,
    pub batch_norm: bool,
    /// Which features each layer transforms.
    pub masks: MaskKind,
}

/// How coupling layers split the features into transformed and conditioning halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKind {
    /// Even features in even layers, odd features in odd layers (nflows' checkerboard).
    Alternating,
    /// Layer k transforms a random half (⌈D/2⌉ features) drawn from `seed` and k; the seed
    /// is stored with the model, so a checkpoint rebuilds the same masks.
    Random { seed: u64 },
}

impl MaskKind {
    /// The mask of layer `k` (true = transformed, as [`alternating_mask`]'s even entries).
    pub fn mask(self, features: usize, k: usize) -> Vec<bool> {
        match self {
            MaskKind::Alternating => alternating_mask(features, k.is_multiple_of(2)),
            MaskKind::Random { seed } => {
                let mut rng = Rng::new(crate::rng::mix64(
                    seed ^ (k as u64).wrapping_mul(0x9E37_79B9),
                ));
                // a seeded shuffle; the first ⌈D/2⌉ positions are transformed
                let mut order: Vec<usize> = (0..features).collect();
                rng.shuffle(&mut order);
                let mut mask = vec![false; features];
                for &i in &order[..features.div_ceil(2)] {
                    mask[i] = true;
                }
                mask
            }
        }
    }
}

impl FlowConfig {
    /// The default particle-cloud flow: RQS couplings (8 bins, tail bound 8 in standardised
    /// units), 6 layers, ResidualNet 128 wide with 2 blocks. The tail bound matters: outside
    /// [−B, B] every layer is the identity, so the model's mass beyond B σ is the normal
    /// base's; with B = 4 about 1 % of the particles' η_rel/φ_rel (heavy-tailed) fell there
    /// and the generated angular and mass distributions came out too narrow (gluon W1M 10 vs
    /// 3 ×10⁻³ at B = 8; the DESY searches picked B = 8–10).
    pub fn default_for(features: usize) -> Self {
        FlowConfig {
            features,
            context: 0,
            layers: 6,
            coupling: CouplingKind::Rqs(RqsConfig::new(8, 8.0)),
            hidden: 128,
            blocks: 2,
            dropout: 0.0,
            batch_norm: false,
            masks: MaskKind::Alternating,
        }
    }
}

impl FlowConfig {
    /// Every size in range before anything is allocated: features 2..=65,536, context
    /// 0..=64, layers 1..=256, hidden 1..=16,384, blocks 1..=64, RQS bins 2..=64 with a
    /// positive finite tail bound, dropout in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let range = |name: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(Error::invalid(format!(
                    "flow {name} must be in {lo}..={hi}, got {v}"
                )))
            } else {
                Ok(())
            }
        };
        range("features", self.features, 2, 1 << 16)?;
        range("context", self.context, 0, 64)?;
        range("layers", self.layers, 1, 256)?;
        range("hidden", self.hidden, 1, 1 << 14)?;
        range("blocks", self.blocks, 1, 64)?;
        if let CouplingKind::Rqs(r) = self.coupling {
            range("bins", r.bins, 2, 64)?;
            if !(r.tail_bound.is_finite() && r.tail_bound > 0.0) {
                return Err(Error::invalid(format!(
                    "flow tail bound must be positive and finite, got {}",
                    r.tail_bound
                )));
            }
        }
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return Err(Error::invalid(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// A stack of coupling layers with a standard normal base.
pub struct Flow {
    pub config: FlowConfig,
    pub layers: Vec<CouplingTransform>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flow({:?})", self.config)
    }
}

impl Flow {
    /// A freshly initialised flow.
    pub fn new(config: FlowConfig, rng: &mut Rng, device: Device) -> Result<Flow> {
        config.validate()?;
        let layers = (0..config.layers)
            .map(|k| {
                CouplingTransform::new(
                    &format!("_transform._transforms.{k}"),
                    config.masks.mask(config.features, k),
                    config.coupling,
                    config.hidden,
                    config.blocks,
                    config.context,
                    config.dropout,
                    config.batch_norm,
                    rng,
                    device,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Flow { config, layers })
    }

    /// Data → noise: `(z, Σ log|det|)` for `x [B, D]`.
    pub fn transform(&self, ctx: &Ctx, x: &Var, context: Option<&Var>) -> Result<(Var, Var)> {
        let mut h = x.clone();
        let mut logdet: Option<Var> = None;
        for layer in &self.layers {
            let (next, ld) = layer.forward(ctx, &h, context)?;
            h = next;
            logdet = Some(match logdet {
                Some(acc) => acc.add(&ld)?,
                None => ld,
            });
        }
        Ok((h, logdet.expect("at least one layer")))
    }

    /// log p(x) per example, `[B]`.
    pub fn log_prob(&self, ctx: &Ctx, x: &Var, context: Option<&Var>) -> Result<Var> {
        let (z, logdet) = self.transform(ctx, x, context)?;
        standard_normal_log_prob(&z)?.add(&logdet)
    }

    /// Noise → data: `(x, log p(x))` for base noise `z [B, D]` (gradients flow through, as
    /// the mass-constraint loss needs).
    pub fn sample_from_noise(
        &self,
        ctx: &Ctx,
        z: &Var,
        context: Option<&Var>,
    ) -> Result<(Var, Var)> {
        let base = standard_normal_log_prob(z)?;
        let mut h = z.clone();
        let mut log_q = base;
        for layer in self.layers.iter().rev() {
            let (next, ld) = layer.inverse(ctx, &h, context)?;
            h = next;
            log_q = log_q.sub(&ld)?;
        }
        Ok((h, log_q))
    }
}

/// log N(z; 0, I) per row: −½‖z‖² − (D/2) log 2π.
pub fn standard_normal_log_prob(z: &Var) -> Result<Var> {
    let d = *z.shape().last().unwrap_or(&1) as f64;
    z.square()?
        .sum(&[-1], false)?
        .mul_scalar(-0.5)?
        .add_scalar(-0.5 * d * (2.0 * std::f64::consts::PI).ln())
}

impl Module for Flow {
    fn params(&self) -> Vec<Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }
}
