//! The PointNet-Mix discriminator (MPGAN's baseline, arXiv:2106.11535 §5), as the authors'
//! `PointNetMixD` (rkansal47/MPGAN `ext_models/ext_models.py` at a1da9a1, L160–207): a shared
//! per-particle MLP on (η, φ, pT), then the max and the mean over all N particle slots
//! concatenated ("mix" pooling), then an MLP to the output:
//! ```text
//! x̃_i = mask_i ? (η, φ, pT)_i : (0, 0, −0.5)   the padding value, whatever the slot holds
//! h_i = f_p(x̃_i)                     [B, N, H]    φ = LeakyReLU(0.2) after every layer
//! p   = [max_i h_i, (1/N) Σ_i h_i]     [B, 2H]
//! D   = f_o(p)                       [B, out]     φ after every layer but the last
//! ```
//! As in the reference, padded slots enter the pooling as the fixed padding particle (the
//! data's and the generator's padding are that same value), so what a padded slot holds
//! never matters; the network is permutation-invariant. MPGAN's sizes are the defaults:
//! per particle 64-128-1024, head 512; the reference has no dropout (its `disc_dropout` is
//! not used by this class), so the MPGAN training passes 0. The sigmoid of the LSGAN loss is
//! applied in the loss (`losses.rs`), as the reference's last layer does.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::gan::mp::SLOPE;
use crate::nn::{Ctx, Linear, Module, Param};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// (η, φ, pT) of a padded particle in MPGAN's normalised features (pT −0.5 is zero pT).
pub const PADDING: [f32; 3] = [0.0, 0.0, -0.5];

/// The PointNet-Mix critic on `[η, φ, pT, mask]` particles (the mask feature only selects).
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
    /// Per-particle widths `particle` (from 3), head widths `head` (from 2·last), then `out`
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
        let mut ps = vec![3];
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
        let (dev, dtype) = (x.value().device(), x.value().dtype());
        let real: Vec<f32> = mask
            .to_vec_f64()?
            .iter()
            .map(|&v| (v != 0.0) as u8 as f32)
            .collect();
        let cond = Tensor::from_slice(&real, &[b, n, 1], dev)?.to_dtype(dtype)?;
        let pad = x.constant(Tensor::from_slice(&PADDING, &[3], dev)?.to_dtype(dtype)?);
        let mut h = Var::select(&cond, &x.narrow(-1, 0, 3)?, &pad)?;
        for layer in &self.particle {
            h = ctx.dropout(&layer.forward(ctx, &h)?.leaky_relu(SLOPE)?, self.dropout)?;
        }
        let k = h.shape()[2];
        let (max, mean) = (h.max(1, false)?, h.mean(&[1], false)?);
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
