//! Fully connected layers.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::Result;
use crate::nn::{Activation, Ctx, Module, Param};
use crate::rng::Rng;

/// `y = x · Wᵀ + b` with `W [out, in]`, `b [out]`; x is `[..., in]`.
/// Initialised like PyTorch's `nn.Linear`: W, b ~ U(−1/√in, 1/√in).
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    /// A new layer named `prefix.weight` / `prefix.bias`.
    pub fn new(
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut Rng,
        device: Device,
    ) -> Result<Linear> {
        let bound = 1.0 / (in_features.max(1) as f32).sqrt();
        let weight = Param::new(
            format!("{prefix}.weight"),
            rng.uniform(&[out_features, in_features], -bound, bound, device)?,
        );
        let bias = if bias {
            Some(Param::new(
                format!("{prefix}.bias"),
                rng.uniform(&[out_features], -bound, bound, device)?,
            ))
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// Re-initialise W and b uniformly in [−a, a] (nflows' near-zero last residual layer).
    pub fn init_uniform(&self, a: f32, rng: &mut Rng) -> Result<()> {
        let dev = self.weight.value().device();
        self.weight
            .set_value(rng.uniform(&[self.out_features, self.in_features], -a, a, dev)?);
        if let Some(b) = &self.bias {
            b.set_value(rng.uniform(&[self.out_features], -a, a, dev)?);
        }
        Ok(())
    }

    /// Apply to `x [..., in]` → `[..., out]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        let y = x.matmul_t(&ctx.tape.param(&self.weight), false, true)?;
        match &self.bias {
            Some(b) => y.add(&ctx.tape.param(b)),
            None => Ok(y),
        }
    }
}

impl Module for Linear {
    fn params(&self) -> Vec<Param> {
        std::iter::once(self.weight.clone())
            .chain(self.bias.clone())
            .collect()
    }
}

/// A multilayer perceptron: Linear → act → … → Linear (no activation after the last).
/// Layer `i` is named `prefix.{2i}` so names match a PyTorch `nn.Sequential` of
/// alternating Linear/activation modules.
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub activation: Activation,
}

impl Mlp {
    /// `sizes = [in, hidden..., out]`.
    pub fn new(
        prefix: &str,
        sizes: &[usize],
        activation: Activation,
        rng: &mut Rng,
        device: Device,
    ) -> Result<Mlp> {
        if sizes.len() < 2 {
            return Err(crate::error::Error::invalid(
                "an MLP needs at least input and output sizes",
            ));
        }
        let sep = if prefix.is_empty() { "" } else { "." };
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Linear::new(
                    &format!("{prefix}{sep}{}", 2 * i),
                    w[0],
                    w[1],
                    true,
                    rng,
                    device,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Mlp { layers, activation })
    }

    /// Apply to `x [..., in]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(ctx, &h)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}

impl Module for Mlp {
    fn params(&self) -> Vec<Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }
}
