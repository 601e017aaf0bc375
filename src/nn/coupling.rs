//! Coupling transforms (Dinh et al.; Durkan et al.): split the features by a binary mask,
//! keep one part (`identity_features`) and transform the other elementwise with parameters
//! computed from the kept part (and an optional context) by a [`ResidualNet`].
//!
//! Matches nflows' `AffineCouplingTransform` and `PiecewiseRationalQuadraticCouplingTransform`
//! (linear tails), including parameter names (`transform_net.*`, the two index buffers) and
//! the layout of the conditioner output: per transformed feature, contiguous
//! `[uw (K), uh (K), ud (K−1)]`, with uw and uh divided by √hidden_features. Direction
//! convention (nflows): `forward` maps data → noise and returns log|det ∂z/∂x| per example.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Ctx, Module, Param, ResidualNet, ResidualNetConfig};
use crate::ops::index::Indices;
use crate::ops::rqs::RqsConfig;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// What a coupling layer does to its transformed features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CouplingKind {
    /// z = x·scale + shift with scale = σ(u + 2) + 1e-3 (nflows; conditioner output = [shift, u]).
    Affine,
    /// Rational-quadratic spline with linear tails.
    Rqs(RqsConfig),
}

impl CouplingKind {
    /// Conditioner outputs per transformed feature.
    pub fn params_per_feature(&self) -> usize {
        match self {
            CouplingKind::Affine => 2,
            CouplingKind::Rqs(c) => 3 * c.bins - 1,
        }
    }
}

/// nflows' alternating mask: feature i is transformed iff i is even (`even`) or odd.
pub fn alternating_mask(features: usize, even: bool) -> Vec<bool> {
    (0..features).map(|i| (i % 2 == 0) == even).collect()
}

/// One coupling layer.
pub struct CouplingTransform {
    pub kind: CouplingKind,
    pub mask: Vec<bool>,
    pub net: ResidualNet,
    identity: Vec<u32>,
    transform: Vec<u32>,
    /// Inverse of the permutation `[identity..., transform...]` (to put features back).
    unpermute: Vec<u32>,
    buffers: [Param; 2],
}

impl CouplingTransform {
    /// A coupling layer named `prefix` (nflows: `_transform._transforms.{i}`) over
    /// `mask.len()` features; the conditioner is a ResidualNet with the given sizes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: &str,
        mask: Vec<bool>,
        kind: CouplingKind,
        hidden_features: usize,
        num_blocks: usize,
        context_features: usize,
        dropout: f32,
        batch_norm: bool,
        rng: &mut Rng,
        device: Device,
    ) -> Result<CouplingTransform> {
        let identity: Vec<u32> = (0..mask.len() as u32)
            .filter(|&i| !mask[i as usize])
            .collect();
        let transform: Vec<u32> = (0..mask.len() as u32)
            .filter(|&i| mask[i as usize])
            .collect();
        if identity.is_empty() || transform.is_empty() {
            return Err(Error::invalid(
                "a coupling mask must keep and transform at least one feature each",
            ));
        }
        let mut unpermute = vec![0u32; mask.len()];
        for (pos, &f) in identity.iter().chain(&transform).enumerate() {
            unpermute[f as usize] = pos as u32;
        }
        let config = ResidualNetConfig {
            in_features: identity.len(),
            out_features: transform.len() * kind.params_per_feature(),
            hidden_features,
            context_features,
            num_blocks,
            activation: crate::nn::Activation::Relu,
            dropout,
            batch_norm,
        };
        let net = ResidualNet::new(&format!("{prefix}.transform_net"), config, rng, device)?;
        let as_tensor = |v: &[u32]| {
            Tensor::from_slice(
                &v.iter().map(|&i| i as f32).collect::<Vec<_>>(),
                &[v.len()],
                device,
            )
        };
        let buffers = [
            Param::buffer(format!("{prefix}.identity_features"), as_tensor(&identity)?),
            Param::buffer(
                format!("{prefix}.transform_features"),
                as_tensor(&transform)?,
            ),
        ];
        Ok(CouplingTransform {
            kind,
            mask,
            net,
            identity,
            transform,
            unpermute,
            buffers,
        })
    }

    /// Data → noise: `(z, log|det ∂z/∂x|)` for `x [B, D]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var, context: Option<&Var>) -> Result<(Var, Var)> {
        self.apply(ctx, x, context, false)
    }

    /// Noise → data: `(x, log|det ∂x/∂z|)`.
    pub fn inverse(&self, ctx: &Ctx, z: &Var, context: Option<&Var>) -> Result<(Var, Var)> {
        self.apply(ctx, z, context, true)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        x: &Var,
        context: Option<&Var>,
        inverse: bool,
    ) -> Result<(Var, Var)> {
        let d = self.mask.len();
        if x.shape().len() != 2 || x.shape()[1] != d {
            return Err(Error::shape(
                "coupling",
                format!("expected [B, {d}], got {:?}", x.shape()),
            ));
        }
        let batch = x.shape()[0];
        let nt = self.transform.len();
        let identity_idx = Indices::new(self.identity.clone(), &[self.identity.len()])?;
        let transform_idx = Indices::new(self.transform.clone(), &[nt])?;
        let kept = x.index_select(1, &identity_idx)?;
        let changed = x.index_select(1, &transform_idx)?;
        let params = self.net.forward(ctx, &kept, context)?.reshape(&[
            batch,
            nt,
            self.kind.params_per_feature(),
        ])?;
        let (out, logdet) = match self.kind {
            CouplingKind::Rqs(cfg) => {
                let k = cfg.bins;
                let scale = 1.0 / (self.net.config.hidden_features as f64).sqrt();
                let uw = params.narrow(2, 0, k)?.mul_scalar(scale)?;
                let uh = params.narrow(2, k, k)?.mul_scalar(scale)?;
                let ud = params.narrow(2, 2 * k, k - 1)?;
                changed.rqs(&uw, &uh, &ud, &cfg, inverse)?
            }
            CouplingKind::Affine => {
                // nflows: shift = params[:, :nt], unconstrained scale = params[:, nt:] (feature-major
                // within the flat output), scale = σ(u + 2) + 1e-3
                let flat = params.reshape(&[batch, 2 * nt])?;
                let shift = flat.narrow(1, 0, nt)?;
                let scale = flat
                    .narrow(1, nt, nt)?
                    .add_scalar(2.0)?
                    .sigmoid()?
                    .add_scalar(1e-3)?;
                let log_scale = scale.log()?;
                if inverse {
                    (changed.sub(&shift)?.div(&scale)?, log_scale.neg()?)
                } else {
                    (changed.mul(&scale)?.add(&shift)?, log_scale)
                }
            }
        };
        let merged = Var::concat(&[&kept, &out], 1)?;
        let unpermute = Indices::new(self.unpermute.clone(), &[d])?;
        Ok((
            merged.index_select(1, &unpermute)?,
            logdet.sum(&[1], false)?,
        ))
    }
}

impl Module for CouplingTransform {
    fn params(&self) -> Vec<Param> {
        let mut v = self.buffers.to_vec();
        v.extend(self.net.params());
        v
    }
}
