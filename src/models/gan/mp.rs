//! MPGAN's message-passing networks (arXiv:2106.11535) on the fully connected particle graph
//! with self-loops, masked: node features `x [B, N, F]`, mask `[B, N]` (non-zero = real).
//!
//! One [`MpLayer`], with φ = LeakyReLU(0.2):
//! ```text
//! e_ij = f_e([x_i, x_j])        edge MLP, φ after every layer (fused first layer, see below)
//! m_i  = Σ_{j real} e_ij         padded senders are skipped
//! x′_i = f_n([m_i, x_i])         node MLP, φ after every layer but the last
//! ```
//! The edge MLP's first layer W[x_i; x_j] + b = (W_i x_i + b) + W_j x_j is computed per node.
//! The whole edge network and the sum over senders is one fused op ([`Var::edge_mlp`],
//! `ops/edge_mlp/`, CPU and CUDA) that keeps no per-pair tensor. The composed chain
//! ([`MpLayer::composed_messages`]: the fused [`Var::edge_input`] and [`Var::aggregate`] of
//! `ops/message.rs` around per-pair Linear layers) is its reference.
//! Padded particles never influence real ones: their messages are dropped and real nodes
//! only read their own features. Every layer is permutation-equivariant.
//!
//! * [`MpGenerator`]: noise `z [B, N, L]` → `iters` layers (L → L → … → 3) → tanh → `[B, N, 3]`.
//! * [`MpCritic`]: `[η, φ, pT, mask] [B, N, 4]` → `iters` layers (4 → L → … → L) → masked
//!   sum over particles → Linear → `[B, out]` (permutation-invariant); dropout in every MLP.

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Ctx, Linear, Module, Param};
use crate::ops::edge_mlp::EdgeDropout;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// LeakyReLU slope of every MPGAN MLP.
pub const SLOPE: f64 = 0.2;

/// The sizes of an MPGAN network.
#[derive(Clone, Debug, PartialEq)]
pub struct MpConfig {
    /// Hidden node features (and the generator's per-particle noise size), MPGAN's 32.
    pub node_features: usize,
    /// Edge MLP widths (MPGAN's `fe` = 96, 160, 192); φ after each.
    pub edge: Vec<usize>,
    /// Node MLP hidden widths (MPGAN's `fn` = 256, 256).
    pub node: Vec<usize>,
    /// Message-passing layers (MPGAN's `mp_iters` = 2).
    pub iters: usize,
}

impl MpConfig {
    /// Parameters of one layer `input → output` (the loaders' size check).
    pub fn layer_params(&self, input: usize, output: usize) -> u128 {
        let lin = |i: usize, o: usize| (i as u128 + 1) * o as u128;
        let e0 = self.edge[0];
        let mut n = lin(input, e0) + (input * e0) as u128;
        n += self.edge.windows(2).map(|w| lin(w[0], w[1])).sum::<u128>();
        let mut sizes = vec![self.edge[self.edge.len() - 1] + input];
        sizes.extend(&self.node);
        sizes.push(output);
        n + sizes.windows(2).map(|w| lin(w[0], w[1])).sum::<u128>()
    }

    /// The (input, output) sizes of the `iters` layers from `input` to `output`.
    fn layer_sizes(&self, input: usize, output: usize) -> Vec<(usize, usize)> {
        (0..self.iters)
            .map(|k| {
                let i = if k == 0 { input } else { self.node_features };
                let o = if k + 1 == self.iters {
                    output
                } else {
                    self.node_features
                };
                (i, o)
            })
            .collect()
    }

    /// Parameters of the generator (the loaders' size check).
    pub fn generator_params(&self) -> u128 {
        self.layer_sizes(self.node_features, 3)
            .iter()
            .map(|&(i, o)| self.layer_params(i, o))
            .sum()
    }

    /// Every size in range.
    pub fn validate(&self) -> Result<()> {
        let ok = |v: usize| (1..=4096).contains(&v);
        if !ok(self.node_features)
            || self.edge.is_empty()
            || self.edge.len() > 8
            || self.node.len() > 8
            || !self.edge.iter().chain(&self.node).all(|&v| ok(v))
            || !(1..=8).contains(&self.iters)
        {
            return Err(Error::invalid(format!(
                "message passing sizes out of range (node features 1..=4096, 1..=8 edge layers, \
                 ≤ 8 node layers, widths 1..=4096, 1..=8 iterations): {self:?}"
            )));
        }
        Ok(())
    }
}

/// One message-passing layer `[B, N, in] → [B, N, out]`.
pub struct MpLayer {
    /// W_i x_i + b of the edge MLP's first layer.
    pub receiver: Linear,
    /// W_j x_j of the edge MLP's first layer (no bias).
    pub sender: Linear,
    /// The edge MLP's further layers.
    pub edge: Vec<Linear>,
    /// The node MLP on `[m_i, x_i]`.
    pub node: Vec<Linear>,
    /// Dropout probability after every MLP layer (train mode only).
    pub dropout: f32,
}

impl MpLayer {
    /// A layer named `prefix.*`.
    pub fn new(
        prefix: &str,
        input: usize,
        output: usize,
        c: &MpConfig,
        dropout: f32,
        rng: &mut Rng,
        device: Device,
    ) -> Result<MpLayer> {
        let e0 = c.edge[0];
        let receiver = Linear::new(&format!("{prefix}.edge.0"), input, e0, true, rng, device)?;
        // PyTorch initialises the joint [x_i, x_j] layer with bound 1/√(2·in): do the same
        let sender = Linear::new(&format!("{prefix}.edge.0j"), input, e0, false, rng, device)?;
        let bound = 1.0 / ((2 * input) as f32).sqrt();
        receiver.init_uniform(bound, rng)?;
        sender
            .weight
            .set_value(rng.uniform(&[e0, input], -bound, bound, device)?);
        let edge = c
            .edge
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                Linear::new(
                    &format!("{prefix}.edge.{}", k + 1),
                    w[0],
                    w[1],
                    true,
                    rng,
                    device,
                )
            })
            .collect::<Result<_>>()?;
        let mut sizes = vec![c.edge[c.edge.len() - 1] + input];
        sizes.extend(&c.node);
        sizes.push(output);
        let node = sizes
            .windows(2)
            .enumerate()
            .map(|(k, w)| Linear::new(&format!("{prefix}.node.{k}"), w[0], w[1], true, rng, device))
            .collect::<Result<_>>()?;
        Ok(MpLayer {
            receiver,
            sender,
            edge,
            node,
            dropout,
        })
    }

    /// `x [B, N, in]`, `mask [B, N]` (the model's dtype) → `[B, N, out]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var, mask: &Tensor) -> Result<Var> {
        let a = self.receiver.forward(ctx, x)?;
        let c = self.sender.forward(ctx, x)?;
        let m = self.fused_messages(ctx, &a, &c, mask)?;
        let mut h = Var::concat(&[&m, x], -1)?;
        for (k, layer) in self.node.iter().enumerate() {
            h = layer.forward(ctx, &h)?;
            if k + 1 < self.node.len() {
                h = ctx.dropout(&h.leaky_relu(SLOPE)?, self.dropout)?;
            }
        }
        Ok(h)
    }
}

impl MpLayer {
    /// The messages Σ_j f_e(x_i, x_j) by the fused edge network ([`Var::edge_mlp`]):
    /// no per-pair tensor is kept; dropout multipliers from a seed of `ctx`.
    pub fn fused_messages(&self, ctx: &Ctx, a: &Var, c: &Var, mask: &Tensor) -> Result<Var> {
        let layers = self
            .edge
            .iter()
            .map(|l| {
                let bias = l
                    .bias
                    .as_ref()
                    .ok_or_else(|| Error::invalid("internal: edge layers have biases"))?;
                Ok((ctx.tape.param(&l.weight), ctx.tape.param(bias)))
            })
            .collect::<Result<Vec<_>>>()?;
        let dropout = (ctx.train && self.dropout > 0.0).then(|| EdgeDropout {
            p: self.dropout,
            seed: ctx.next_seed(),
        });
        a.edge_mlp(c, &layers, mask, SLOPE, dropout)
    }

    /// The same messages by the composed chain `edge_input → (Linear → φ → dropout)* →
    /// aggregate`: the reference the fused op is tested against.
    pub fn composed_messages(&self, ctx: &Ctx, a: &Var, c: &Var, mask: &Tensor) -> Result<Var> {
        let mut e = ctx.dropout(&a.edge_input(c, SLOPE)?, self.dropout)?;
        for layer in &self.edge {
            e = ctx.dropout(&layer.forward(ctx, &e)?.leaky_relu(SLOPE)?, self.dropout)?;
        }
        e.aggregate(mask)
    }
}

impl Module for MpLayer {
    fn params(&self) -> Vec<Param> {
        let mut p = self.receiver.params();
        p.extend(self.sender.params());
        p.extend(self.edge.iter().flat_map(|l| l.params()));
        p.extend(self.node.iter().flat_map(|l| l.params()));
        p
    }
}

/// `x [B, N, F]` checked against `mask [B, N]`.
fn check_nodes(what: &'static str, x: &Var, mask: &Tensor, features: usize) -> Result<()> {
    match x.shape() {
        &[b, n, f] if f == features && mask.shape() == [b, n] => Ok(()),
        s => Err(Error::shape(
            what,
            format!(
                "nodes must be [B, N, {features}] with a [B, N] mask, got {s:?} and {:?}",
                mask.shape()
            ),
        )),
    }
}

/// MPGAN's generator: per-particle noise → particles `[B, N, 3]` in (−1, 1).
pub struct MpGenerator {
    pub layers: Vec<MpLayer>,
    pub config: MpConfig,
}

impl MpGenerator {
    /// A new generator (parameters `generator.mp.{k}.*`).
    pub fn new(c: &MpConfig, rng: &mut Rng, device: Device) -> Result<MpGenerator> {
        c.validate()?;
        let layers = c
            .layer_sizes(c.node_features, 3)
            .into_iter()
            .enumerate()
            .map(|(k, (i, o))| {
                MpLayer::new(&format!("generator.mp.{k}"), i, o, c, 0.0, rng, device)
            })
            .collect::<Result<_>>()?;
        Ok(MpGenerator {
            layers,
            config: c.clone(),
        })
    }

    /// `z [B, N, L]`, `mask [B, N]` → tanh output `[B, N, 3]`.
    pub fn forward(&self, ctx: &Ctx, z: &Var, mask: &Tensor) -> Result<Var> {
        check_nodes("mp generator", z, mask, self.config.node_features)?;
        let mut h = z.clone();
        for layer in &self.layers {
            h = layer.forward(ctx, &h, mask)?;
        }
        h.tanh()
    }
}

impl Module for MpGenerator {
    fn params(&self) -> Vec<Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }
}

/// MPGAN's discriminator: `[B, N, 4]` → `[B, out]` (raw; the loss applies any sigmoid).
pub struct MpCritic {
    pub layers: Vec<MpLayer>,
    pub head: Linear,
}

impl MpCritic {
    /// A new critic (parameters `critic.mp.{k}.*`, `critic.head.*`) with dropout `dropout`.
    pub fn new(
        c: &MpConfig,
        out: usize,
        dropout: f32,
        rng: &mut Rng,
        device: Device,
    ) -> Result<MpCritic> {
        c.validate()?;
        let l = c.node_features;
        let layers = c
            .layer_sizes(4, l)
            .into_iter()
            .enumerate()
            .map(|(k, (i, o))| {
                MpLayer::new(&format!("critic.mp.{k}"), i, o, c, dropout, rng, device)
            })
            .collect::<Result<_>>()?;
        Ok(MpCritic {
            layers,
            head: Linear::new("critic.head", l, out, true, rng, device)?,
        })
    }

    /// `x [B, N, 4]` (mask feature last), `mask [B, N]` → `[B, out]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var, mask: &Tensor) -> Result<Var> {
        check_nodes("mp critic", x, mask, 4)?;
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(ctx, &h, mask)?;
        }
        self.head.forward(ctx, &masked_sum(&h, mask)?)
    }
}

impl Module for MpCritic {
    fn params(&self) -> Vec<Param> {
        let mut p: Vec<Param> = self.layers.iter().flat_map(|l| l.params()).collect();
        p.extend(self.head.params());
        p
    }
}

/// Σ over real particles: `h [B, N, H]`, `mask [B, N]` → `[B, H]` (the fused aggregate with
/// one receiver).
pub fn masked_sum(h: &Var, mask: &Tensor) -> Result<Var> {
    let &[b, n, k] = h.shape() else {
        return Err(Error::shape("masked_sum", format!("got {:?}", h.shape())));
    };
    h.reshape(&[b, 1, n, k])?.aggregate(mask)?.reshape(&[b, k])
}
