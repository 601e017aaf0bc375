//! nflows' `ResidualNet`: the conditioner of coupling flows.
//!
//! ```text
//! h   = initial_layer([x, context])                       (context concatenated if given)
//! per block:  t = linear0(act(bn0(h)));  t = linear1(dropout(act(bn1(t))))
//!             if context: t = GLU([t, context_layer(context)]) = t ⊙ σ(context_layer(context))
//!             h = h + t
//! out = final_layer(h)
//! ```
//! Batch norm (eps 1e-3) is optional; each block's last linear layer starts near zero
//! (U[−1e-3, 1e-3]) so a fresh network is close to a linear map. Parameter names match
//! nflows' state dict: `initial_layer`, `blocks.{i}.linear_layers.{0,1}`,
//! `blocks.{i}.context_layer`, `blocks.{i}.batch_norm_layers.{0,1}`, `final_layer`.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{glu, Activation, BatchNorm1d, Ctx, Linear, Module, Param};
use crate::rng::Rng;

/// Hyper-parameters of a [`ResidualNet`].
#[derive(Clone, Debug)]
pub struct ResidualNetConfig {
    pub in_features: usize,
    pub out_features: usize,
    pub hidden_features: usize,
    pub context_features: usize,
    pub num_blocks: usize,
    pub activation: Activation,
    pub dropout: f32,
    pub batch_norm: bool,
}

/// One pre-activation residual block with optional context gating.
pub struct ResidualBlock {
    pub batch_norms: Option<[BatchNorm1d; 2]>,
    pub context_layer: Option<Linear>,
    pub linear: [Linear; 2],
    activation: Activation,
    dropout: f32,
}

/// The nflows residual MLP; see the module doc.
pub struct ResidualNet {
    pub initial_layer: Linear,
    pub blocks: Vec<ResidualBlock>,
    pub final_layer: Linear,
    pub config: ResidualNetConfig,
}

impl ResidualNet {
    /// A freshly initialised network with parameters named under `prefix`.
    pub fn new(
        prefix: &str,
        config: ResidualNetConfig,
        rng: &mut Rng,
        device: Device,
    ) -> Result<ResidualNet> {
        let p = |s: &str| {
            if prefix.is_empty() {
                s.to_string()
            } else {
                format!("{prefix}.{s}")
            }
        };
        let h = config.hidden_features;
        let initial_layer = Linear::new(
            &p("initial_layer"),
            config.in_features + config.context_features,
            h,
            true,
            rng,
            device,
        )?;
        let blocks = (0..config.num_blocks)
            .map(|i| {
                let bp = p(&format!("blocks.{i}"));
                let batch_norms = if config.batch_norm {
                    Some([
                        BatchNorm1d::new(
                            &format!("{bp}.batch_norm_layers.0"),
                            h,
                            1e-3,
                            0.1,
                            device,
                        )?,
                        BatchNorm1d::new(
                            &format!("{bp}.batch_norm_layers.1"),
                            h,
                            1e-3,
                            0.1,
                            device,
                        )?,
                    ])
                } else {
                    None
                };
                let context_layer = if config.context_features > 0 {
                    Some(Linear::new(
                        &format!("{bp}.context_layer"),
                        config.context_features,
                        h,
                        true,
                        rng,
                        device,
                    )?)
                } else {
                    None
                };
                let l0 = Linear::new(&format!("{bp}.linear_layers.0"), h, h, true, rng, device)?;
                let l1 = Linear::new(&format!("{bp}.linear_layers.1"), h, h, true, rng, device)?;
                l1.init_uniform(1e-3, rng)?;
                Ok(ResidualBlock {
                    batch_norms,
                    context_layer,
                    linear: [l0, l1],
                    activation: config.activation,
                    dropout: config.dropout,
                })
            })
            .collect::<Result<_>>()?;
        let final_layer =
            Linear::new(&p("final_layer"), h, config.out_features, true, rng, device)?;
        Ok(ResidualNet {
            initial_layer,
            blocks,
            final_layer,
            config,
        })
    }

    /// `x [B, in]`, `context [B, context_features]` (required iff context_features > 0) → `[B, out]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var, context: Option<&Var>) -> Result<Var> {
        let context = match (context, self.config.context_features) {
            (None, 0) => None,
            (Some(c), n) if n > 0 && c.shape().last() == Some(&n) => Some(c),
            (c, n) => {
                return Err(Error::shape(
                    "ResidualNet",
                    format!(
                        "expects {n} context features, got {:?}",
                        c.map(|c| c.shape().to_vec())
                    ),
                ))
            }
        };
        let input = match context {
            Some(c) => Var::concat(&[x, c], -1)?,
            None => x.clone(),
        };
        let mut h = self.initial_layer.forward(ctx, &input)?;
        for block in &self.blocks {
            h = block.forward(ctx, &h, context)?;
        }
        self.final_layer.forward(ctx, &h)
    }
}

impl ResidualBlock {
    fn forward(&self, ctx: &Ctx, h: &Var, context: Option<&Var>) -> Result<Var> {
        let mut t = h.clone();
        if let Some(bn) = &self.batch_norms {
            t = bn[0].forward(ctx, &t)?;
        }
        t = self.activation.apply(&t)?;
        t = self.linear[0].forward(ctx, &t)?;
        if let Some(bn) = &self.batch_norms {
            t = bn[1].forward(ctx, &t)?;
        }
        t = self.activation.apply(&t)?;
        t = ctx.dropout(&t, self.dropout)?;
        t = self.linear[1].forward(ctx, &t)?;
        if let (Some(layer), Some(c)) = (&self.context_layer, context) {
            let gate = layer.forward(ctx, c)?;
            t = glu(&Var::concat(&[&t, &gate], -1)?, -1)?;
        }
        h.add(&t)
    }
}

impl Module for ResidualBlock {
    fn params(&self) -> Vec<Param> {
        let mut v = Vec::new();
        if let Some(bn) = &self.batch_norms {
            v.extend(bn.iter().flat_map(|b| b.params()));
        }
        if let Some(c) = &self.context_layer {
            v.extend(c.params());
        }
        v.extend(self.linear.iter().flat_map(|l| l.params()));
        v
    }
}

impl Module for ResidualNet {
    fn params(&self) -> Vec<Param> {
        let mut v = self.initial_layer.params();
        v.extend(self.blocks.iter().flat_map(|b| b.params()));
        v.extend(self.final_layer.params());
        v
    }
}
