//! The velocity network's CPU inference path: the math of [`EpicNet::forward`] (module doc of
//! [`crate::models::fm::network`]) for f32 on the CPU without the tape, for generation,
//! where nothing is differentiated.
//!
//! Jets go in chunks of [`JETS_PER_TASK`], one rayon task each, through the whole network:
//! only the real particles are kept (compact rows), every buffer of a chunk stays in L2,
//! and every product is one [`gemm_packed`] call on the task's thread against weights packed
//! once per [`EpicInference`]. Per jet and layer the global and time columns of the particle
//! MLP's first layer are applied once (`base`), as in the fused op. What it computes, per
//! chunk (R real rows, J jets):
//! ```text
//! h    = m ⊙ σ(x W₀ₓᵀ + [τ W₀τᵀ + b₀]_jet)                            [R, H]
//! g    = σ(W_G0 [Σh/n, s·Σh, τ, c] + b)                                [J, G]
//! layer: g ← σ(W₂ σ(W₁ [Σmh/n, s·Σmh, g, τ, c] + b₁) + b₂ + g)
//!        h ← m ⊙ σ(W₄ σ(h W₃ₕᵀ + [W₃_gτ [g, τ] + b₃]_jet) + b₄ + h)
//! v    = m ⊙ (h W_outᵀ + b_out)                                        [R, 3] → [J, P, 3]
//! ```
//! It agrees with the fused tape forward to f32 rounding for 0/1 masks and finite inputs
//! (tested; sums run in another order). Two differences by design: padded particles are never
//! read (a NaN there stays out of every output, where the tape's first pooling would spread
//! it), and the layers pool `Σ m·h` as the fused ops do (the same as `Σ h` for 0/1 masks).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::models::fm::network::{time_embedding, EpicNet, SLOPE};
use crate::nn::Linear;
use crate::ops::leaky_relu;
use crate::ops::panel_gemm::{gemm_packed, PackedW};
use crate::simd::{isa, Isa};
use crate::tensor::DType;

/// Jets per parallel task (about 250 particle rows at 30 particles: a chunk's buffers fit
/// in L2).
pub const JETS_PER_TASK: usize = 8;

/// A linear layer's weight split into packed column blocks, and its bias.
struct Layer {
    blocks: Vec<PackedW>,
    bias: Vec<f32>,
}

impl Layer {
    /// Packs `lin`'s weight `[out, in]` as the column blocks `widths` (summing to `in`);
    /// `out` must be the width the network's next step reads.
    fn new(lin: &Linear, widths: &[usize], out: usize) -> Result<Layer> {
        let inp = lin.in_features;
        let bad = |what: String| Err(Error::invalid(format!("EPiC inference: {what}")));
        if widths.iter().sum::<usize>() != inp || lin.out_features != out {
            return bad(format!(
                "a layer of {inp} → {} where the network needs {} → {out}",
                lin.out_features,
                widths.iter().sum::<usize>()
            ));
        }
        let w = lin.weight.value();
        if w.shape() != [out, inp] {
            return bad(format!("weight {:?}, want [{out}, {inp}]", w.shape()));
        }
        if let Some(b) = &lin.bias {
            if b.value().shape() != [out] {
                return bad(format!("bias {:?}, want [{out}]", b.value().shape()));
            }
        }
        let w = w.cpu::<f32>()?;
        let mut off = 0;
        let mut blocks = Vec::with_capacity(widths.len());
        for &k in widths {
            blocks.push(PackedW::pack(w, inp, off, out, k));
            off += k;
        }
        let bias = match &lin.bias {
            Some(b) => b.value().cpu::<f32>()?.to_vec(),
            None => vec![0.0; out],
        };
        Ok(Layer { blocks, bias })
    }
}

/// The packed weights of one EPiC layer.
struct EpicBlock {
    global1: Layer,
    global2: Layer,
    local1: Layer,
    local2: Layer,
}

/// An [`EpicNet`]'s weights packed for the CPU inference path; build it once per generation
/// (it copies the weights: later changes to the network are not seen).
pub struct EpicInference {
    isa: Isa,
    particles: usize,
    hidden: usize,
    global: usize,
    time_embed: usize,
    context: usize,
    sum_scale: f32,
    local_0: Layer,
    global_0: Layer,
    layers: Vec<EpicBlock>,
    out: Layer,
}

/// The buffers of one chunk.
struct Scratch {
    /// Real rows: (jet in chunk, particle, mask value).
    rows: Vec<(usize, usize, f32)>,
    h: Vec<f32>,
    a: Vec<f32>,
    c: Vec<f32>,
    q: Vec<f32>,
    g: Vec<f32>,
    ga: Vec<f32>,
    gt: Vec<f32>,
    base: Vec<f32>,
}

impl EpicInference {
    /// True where [`EpicInference::new`] applies: the fused network (whose pooling this
    /// path reproduces) with f32 weights on the CPU.
    pub fn applies_to(net: &EpicNet) -> bool {
        let w = net.out.weight.value();
        net.fused && w.device() == crate::device::Device::Cpu && w.dtype() == DType::F32
    }

    /// Packs `net` (the fused network, f32, on the CPU, every layer of the sizes its config
    /// names); an error naming the problem otherwise.
    pub fn new(net: &EpicNet) -> Result<EpicInference> {
        let c = &net.config;
        c.validate()?;
        if !net.fused {
            return Err(Error::invalid(
                "EPiC inference reproduces the fused network (its masked pooling); this one \
                 is composed",
            ));
        }
        let (h, g, t, k) = (c.hidden, c.global, c.time_embed, c.context);
        if net.layers.len() != c.layers {
            return Err(Error::invalid(format!(
                "EPiC inference: {} layers where the config names {}",
                net.layers.len(),
                c.layers
            )));
        }
        let mut layers = Vec::with_capacity(net.layers.len());
        for l in &net.layers {
            let (h1, h2) = (l.fc_global1.out_features, l.fc_local1.out_features);
            layers.push(EpicBlock {
                global1: Layer::new(&l.fc_global1, &[2 * h + g + t + k], h1)?,
                global2: Layer::new(&l.fc_global2, &[h1], g)?,
                local1: Layer::new(&l.fc_local1, &[h, g + t], h2)?,
                local2: Layer::new(&l.fc_local2, &[h2], h)?,
            });
        }
        Ok(EpicInference {
            isa: isa(),
            particles: c.particles,
            hidden: h,
            global: g,
            time_embed: t,
            context: k,
            sum_scale: c.sum_scale as f32,
            local_0: Layer::new(&net.local_0, &[3, t], h)?,
            global_0: Layer::new(&net.global_0, &[2 * h + t + k], g)?,
            layers,
            out: Layer::new(&net.out, &[h], 3)?,
        })
    }

    /// v_θ(x, t) `[B, P, 3]` for particles `x [B, P, 3]`, times `t [B]`, mask `[B, P]` and
    /// context `[B, C]` (empty when unconditional), all row-major f32.
    pub fn velocity(
        &self,
        x: &[f32],
        t: &[f32],
        mask: &[f32],
        context: &[f32],
    ) -> Result<Vec<f32>> {
        let (b, p) = (t.len(), self.particles);
        if x.len() != b * p * 3 || mask.len() != b * p || context.len() != b * self.context {
            return Err(Error::shape(
                "epic inference",
                format!(
                    "for {b} jets of {p} particles: x has {}, mask {}, context {} values \
                     (want {}, {}, {})",
                    x.len(),
                    mask.len(),
                    context.len(),
                    b * p * 3,
                    b * p,
                    b * self.context
                ),
            ));
        }
        let tau = time_embedding(t, self.time_embed);
        let mut out = vec![0.0f32; b * p * 3];
        let per = JETS_PER_TASK;
        out.par_chunks_mut(per * p * 3)
            .enumerate()
            .for_each(|(ci, out)| {
                let j0 = ci * per;
                let nj = out.len() / (p * 3);
                let (te, k) = (self.time_embed, self.context);
                self.chunk(
                    &x[j0 * p * 3..(j0 + nj) * p * 3],
                    &tau[j0 * te..(j0 + nj) * te],
                    &mask[j0 * p..(j0 + nj) * p],
                    &context[j0 * k..(j0 + nj) * k],
                    out,
                );
            });
        Ok(out)
    }

    /// `c[rows, n] (+)= a[rows, k] · Wᵀ` for one packed block.
    fn mm(&self, a: &[f32], lda: usize, rows: usize, w: &PackedW, c: &mut [f32], acc: bool) {
        gemm_packed(self.isa, a, lda, rows, w, c, w.n(), acc);
    }

    /// The whole network on one chunk of jets (see the module doc).
    fn chunk(&self, x: &[f32], tau: &[f32], mask: &[f32], ctx: &[f32], out: &mut [f32]) {
        let (p, hd, gd, te, kd) = (
            self.particles,
            self.hidden,
            self.global,
            self.time_embed,
            self.context,
        );
        let nj = mask.len() / p;
        let rows: Vec<(usize, usize, f32)> = (0..nj * p)
            .filter(|&i| mask[i] != 0.0)
            .map(|i| (i / p, i % p, mask[i]))
            .collect();
        let r = rows.len();
        let mut s = Scratch {
            rows,
            h: vec![0.0; r * hd],
            a: Vec::new(),
            c: Vec::new(),
            q: Vec::new(),
            g: vec![0.0; nj * gd],
            ga: Vec::new(),
            gt: Vec::with_capacity(nj * (gd + te)),
            base: Vec::new(),
        };
        // h⁰ = m σ(x W₀ₓᵀ + τ W₀τᵀ + b₀)
        let l0 = &self.local_0;
        s.base = per_jet_bias(&l0.bias, nj);
        self.mm(tau, te, nj, &l0.blocks[1], &mut s.base, true);
        let xr: Vec<f32> = s
            .rows
            .iter()
            .flat_map(|&(j, pp, _)| x[(j * p + pp) * 3..(j * p + pp) * 3 + 3].iter().copied())
            .collect();
        broadcast_rows(&s.base, &s.rows, hd, &mut s.h);
        self.mm(&xr, 3, r, &l0.blocks[0], &mut s.h, true);
        for (row, &(_, _, mv)) in s.h.chunks_exact_mut(hd.max(1)).zip(&s.rows) {
            row.iter_mut()
                .for_each(|v| *v = mv * leaky_relu(*v, SLOPE as f32));
        }
        // g⁰ = σ(W [Σh/n, s·Σh, τ, c] + b)   (h is masked: the plain sum)
        self.pool(&s.h, &s.rows, false, nj, &mut s.q, 2 * hd + te + kd);
        for j in 0..nj {
            let q = &mut s.q[j * (2 * hd + te + kd) + 2 * hd..(j + 1) * (2 * hd + te + kd)];
            q[..te].copy_from_slice(&tau[j * te..(j + 1) * te]);
            q[te..].copy_from_slice(&ctx[j * kd..(j + 1) * kd]);
        }
        let g0 = &self.global_0;
        s.g = per_jet_bias(&g0.bias, nj);
        self.mm(&s.q, 2 * hd + te + kd, nj, &g0.blocks[0], &mut s.g, true);
        s.g.iter_mut()
            .for_each(|v| *v = leaky_relu(*v, SLOPE as f32));
        for layer in &self.layers {
            self.layer(layer, tau, ctx, nj, &mut s);
        }
        // v = m (h W_outᵀ + b)
        let o = &self.out;
        let mut v = per_jet_bias(&o.bias, r);
        self.mm(&s.h, hd, r, &o.blocks[0], &mut v, true);
        for (vr, &(j, pp, mv)) in v.chunks_exact(3).zip(&s.rows) {
            let dst = &mut out[(j * p + pp) * 3..(j * p + pp) * 3 + 3];
            for (d, &val) in dst.iter_mut().zip(vr) {
                *d = mv * val;
            }
        }
    }

    /// One EPiC layer: the global update, then the particle update (module doc).
    fn layer(&self, l: &EpicBlock, tau: &[f32], ctx: &[f32], nj: usize, s: &mut Scratch) {
        let (hd, gd, te, kd) = (self.hidden, self.global, self.time_embed, self.context);
        let slope = SLOPE as f32;
        let nq = 2 * hd + gd + te + kd;
        // global: q = [Σmh/n, s·Σmh, g, τ, c]
        self.pool(&s.h, &s.rows, true, nj, &mut s.q, nq);
        for j in 0..nj {
            let q = &mut s.q[j * nq + 2 * hd..(j + 1) * nq];
            q[..gd].copy_from_slice(&s.g[j * gd..(j + 1) * gd]);
            q[gd..gd + te].copy_from_slice(&tau[j * te..(j + 1) * te]);
            q[gd + te..].copy_from_slice(&ctx[j * kd..(j + 1) * kd]);
        }
        let h1 = l.global1.bias.len();
        s.ga = per_jet_bias(&l.global1.bias, nj);
        self.mm(&s.q, nq, nj, &l.global1.blocks[0], &mut s.ga, true);
        s.ga.iter_mut().for_each(|v| *v = leaky_relu(*v, slope));
        let mut cg = per_jet_bias(&l.global2.bias, nj);
        cg.iter_mut().zip(&s.g).for_each(|(c, &g)| *c += g);
        self.mm(&s.ga, h1, nj, &l.global2.blocks[0], &mut cg, true);
        s.g = cg.into_iter().map(|v| leaky_relu(v, slope)).collect();
        // particle: base = [g, τ] W₃_gτᵀ + b₃ per jet
        let h2 = l.local1.bias.len();
        s.gt.clear();
        for j in 0..nj {
            s.gt.extend_from_slice(&s.g[j * gd..(j + 1) * gd]);
            s.gt.extend_from_slice(&tau[j * te..(j + 1) * te]);
        }
        s.base = per_jet_bias(&l.local1.bias, nj);
        self.mm(&s.gt, gd + te, nj, &l.local1.blocks[1], &mut s.base, true);
        let r = s.rows.len();
        s.a.resize(r * h2, 0.0);
        broadcast_rows(&s.base, &s.rows, h2, &mut s.a);
        self.mm(&s.h, hd, r, &l.local1.blocks[0], &mut s.a, true);
        s.a.iter_mut().for_each(|v| *v = leaky_relu(*v, slope));
        // c = σ(a) W₄ᵀ + b₄ + h;  h = m σ(c)
        s.c.clear();
        for row in s.h.chunks_exact(hd.max(1)) {
            s.c.extend(row.iter().zip(&l.local2.bias).map(|(&hv, &bv)| hv + bv));
        }
        self.mm(&s.a, h2, r, &l.local2.blocks[0], &mut s.c, true);
        for ((hrow, crow), &(_, _, mv)) in
            s.h.chunks_exact_mut(hd.max(1))
                .zip(s.c.chunks_exact(hd.max(1)))
                .zip(&s.rows)
        {
            for (hv, &cv) in hrow.iter_mut().zip(crow) {
                *hv = mv * leaky_relu(cv, slope);
            }
        }
    }

    /// The first 2H columns of `q [J, width]`: [S/max(n, 1), s·S] with S = Σ_p h_p, or
    /// S = Σ_p m_p h_p with `weighted` (the fused layers' pooling), n = Σ_p m_p.
    fn pool(
        &self,
        h: &[f32],
        rows: &[(usize, usize, f32)],
        weighted: bool,
        nj: usize,
        q: &mut Vec<f32>,
        width: usize,
    ) {
        let hd = self.hidden;
        q.clear();
        q.resize(nj * width, 0.0);
        let mut cnt = vec![0.0f32; nj];
        for (row, &(j, _, mv)) in h.chunks_exact(hd.max(1)).zip(rows) {
            cnt[j] += mv;
            let w = if weighted { mv } else { 1.0 };
            q[j * width..j * width + hd]
                .iter_mut()
                .zip(row)
                .for_each(|(acc, &v)| *acc += w * v);
        }
        for j in 0..nj {
            let n = cnt[j].max(1.0);
            let qj = &mut q[j * width..j * width + 2 * hd];
            for k in 0..hd {
                let sum = qj[k];
                qj[k] = sum / n;
                qj[hd + k] = self.sum_scale * sum;
            }
        }
    }
}

/// `bias` repeated for `nj` rows.
fn per_jet_bias(bias: &[f32], nj: usize) -> Vec<f32> {
    bias.iter().copied().cycle().take(bias.len() * nj).collect()
}

/// Row r of `dst [R, n]` = row `jet(r)` of `per_jet [J, n]`.
fn broadcast_rows(per_jet: &[f32], rows: &[(usize, usize, f32)], n: usize, dst: &mut [f32]) {
    for (d, &(j, _, _)) in dst.chunks_exact_mut(n.max(1)).zip(rows) {
        d.copy_from_slice(&per_jet[j * n..(j + 1) * n]);
    }
}
