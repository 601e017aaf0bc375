//! The PointNet-Mix discriminator (MPGAN's baseline, arXiv:2106.11535 §5): a shared
//! per-particle MLP, then the masked max and the masked mean over real particles
//! concatenated ("mix" pooling), then an MLP to the output:
//! ```text
//! h_i = f_p(x_i)                          [B, N, H]   φ = LeakyReLU(0.2) after every layer
//! p   = [max_{i real} h_i, mean_{i real} h_i]   [B, 2H]   (0 for a jet with no particle)
//! D   = f_o(p)                            [B, out]     φ after every layer but the last
//! ```
//! Permutation-invariant; padded particles never enter (they are selected out, not
//! multiplied by 0). Dropout after every hidden layer. The default widths (per particle
//! 64-128-256, head 128) are ours: MPGAN's exact PointNet-Mix sizes were not checked.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::gan::mp::{masked_sum, SLOPE};
use crate::nn::{Ctx, Linear, Module, Param};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The PointNet-Mix critic on `[η, φ, pT, mask]` particles.
pub struct PointNetMix {
    pub particle: Vec<Linear>,
    pub head: Vec<Linear>,
    pub dropout: f32,
}

fn linears(prefix: &str, sizes: &[usize], rng: &mut Rng, device: Device) -> Result<Vec<Linear>> {
    sizes
        .windows(2)
        .enumerate()
        .map(|(k, w)| Linear::new(&format!("{prefix}.{k}"), w[0], w[1], true, rng, device))
        .collect()
}

impl PointNetMix {
    /// Per-particle widths `particle` (from 4), head widths `head` (from 2·last), then `out`
    /// (parameters `critic.particle.*`, `critic.head.*`).
    pub fn new(
        particle: &[usize],
        head: &[usize],
        out: usize,
        dropout: f32,
        rng: &mut Rng,
        device: Device,
    ) -> Result<PointNetMix> {
        if particle.is_empty() || particle.iter().chain(head).any(|&v| v == 0 || v > 4096) {
            return Err(Error::invalid(format!(
                "PointNet-Mix widths must be 1..=4096 with ≥ 1 per-particle layer: {particle:?}, {head:?}"
            )));
        }
        let mut ps = vec![4];
        ps.extend(particle);
        let mut hs = vec![2 * particle[particle.len() - 1]];
        hs.extend(head);
        hs.push(out);
        Ok(PointNetMix {
            particle: linears("critic.particle", &ps, rng, device)?,
            head: linears("critic.head", &hs, rng, device)?,
            dropout,
        })
    }

    /// `x [B, N, 4]`, `mask [B, N]` (the model's dtype) → `[B, out]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var, mask: &Tensor) -> Result<Var> {
        let &[b, n, 4] = x.shape() else {
            return Err(Error::shape(
                "pointnet critic",
                format!("particles must be [B, N, 4], got {:?}", x.shape()),
            ));
        };
        if mask.shape() != [b, n] {
            return Err(Error::shape("pointnet critic", "mask must be [B, N]"));
        }
        let mut h = x.clone();
        for layer in &self.particle {
            h = ctx.dropout(&layer.forward(ctx, &h)?.leaky_relu(SLOPE)?, self.dropout)?;
        }
        let k = h.shape()[2];
        let dev = x.value().device();
        let dtype = x.value().dtype();
        let m = mask.to_vec_f64()?;
        let valid: Vec<f32> = m.iter().map(|&v| (v != 0.0) as u8 as f32).collect();
        let counts: Vec<f32> = valid
            .chunks(n.max(1))
            .map(|c| c.iter().sum::<f32>())
            .collect();
        let cond = Tensor::from_slice(&valid, &[b, n, 1], dev)?.to_dtype(dtype)?;
        let floor = h.constant(Tensor::full(&[], -1e30, dev)?.to_dtype(dtype)?);
        let max = Var::select(&cond, &h, &floor)?.max(1, false)?;
        let any: Vec<f32> = counts.iter().map(|&c| (c > 0.0) as u8 as f32).collect();
        let any = Tensor::from_slice(&any, &[b, 1], dev)?.to_dtype(dtype)?;
        let zero = h.constant(Tensor::zeros(&[], dev)?.to_dtype(dtype)?);
        let max = Var::select(&any, &max, &zero)?;
        let inv: Vec<f32> = counts.iter().map(|&c| 1.0 / c.max(1.0)).collect();
        let inv = h.constant(Tensor::from_slice(&inv, &[b, 1], dev)?.to_dtype(dtype)?);
        let mean = masked_sum(&h, mask)?.mul(&inv)?;
        let mut p = Var::concat(&[&max, &mean], -1)?;
        debug_assert_eq!(p.shape(), [b, 2 * k]);
        for (i, layer) in self.head.iter().enumerate() {
            p = layer.forward(ctx, &p)?;
            if i + 1 < self.head.len() {
                p = ctx.dropout(&p.leaky_relu(SLOPE)?, self.dropout)?;
            }
        }
        Ok(p)
    }
}

impl Module for PointNetMix {
    fn params(&self) -> Vec<Param> {
        self.particle
            .iter()
            .chain(&self.head)
            .flat_map(|l| l.params())
            .collect()
    }
}
