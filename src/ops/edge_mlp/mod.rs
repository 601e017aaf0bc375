//! MPGAN's whole edge network as one fused op: the edge MLP on every (receiver, real sender)
//! pair of the fully connected particle graph and the masked sum of its messages, without
//! ever storing a per-pair tensor.
//!
//! With `a = x W_iᵀ + b₀`, `c = x W_jᵀ` (`[B, N, H₀]`, the first layer split by columns as in
//! [`crate::ops::message`]), layers `W_k [H_k, H_{k−1}]`, `b_k [H_k]` (k = 1..L), φ =
//! LeakyReLU(α) (α ≥ 0) and dropout multipliers `d_k ∈ {0, 1/(1−p)}`:
//! ```text
//! u⁰_bij = d⁰ ⊙ φ(a_bi + c_bj)
//! uᵏ_bij = dᵏ ⊙ φ(W_k u^{k−1}_bij + b_k)           k = 1..L
//! out_bi = Σ_{j: mask_bj ≠ 0} uᴸ_bij               [B, N, H_L]
//! ```
//! Padded senders are skipped (their pairs are never computed), every receiver — padded ones
//! too — gets its sum, so the result equals the composed `edge_input → (Linear → φ →
//! dropout)* → aggregate` chain of [`crate::models::gan::mp::MpLayer`] given the same dropout
//! multipliers.
//!
//! **Dropout** is counter-based: `d^k_bij,h` keeps when `fmix32(s ⊕ h·φ₃₂) ≥ p·2³²` with the
//! row seed `s = mix64(seed ⊕ k·2⁵⁶ ⊕ ((b·N + i)·N + j)·φ₆₄)`, so the backward regenerates the
//! forward's multipliers from the seed instead of storing them ([`dropout_scales`] writes
//! them out, for the reference chain and the second-order path).
//!
//! **Backward** (the forward is recomputed per chunk of jets): with G^L_bij = [mask_bj ≠ 0]·
//! dᴸ ⊙ φ′ ⊙ g_bi and G^{k−1} = d^{k−1} ⊙ φ′ ⊙ (G^k W_k),
//! ∂W_k = Σ G^kᵀ u^{k−1}, ∂b_k = Σ G^k, ∂a_bi = Σ_j G⁰_bij, ∂c_bj = Σ_i G⁰_bij.
//! φ′ is read off the activation (φ(z) > 0 ⇔ z > 0 for α ≥ 0). Twice differentiable: the
//! backward graph is the composed chain's vector–Jacobian product (gradient penalties).
//!
//! **Work**: per computed pair Σ_k H_{k−1}·H_k multiply-adds forward (MPGAN's 96-160-192:
//! 46,080), twice that backward plus the recomputed forward. **Memory**: one chunk of
//! ≈ [`CHUNK_ROWS`] pairs at a time (activations and inputs of every layer: ≈ 15 MB in f32
//! at MPGAN's widths), instead of the B·N²·ΣH values of every layer the composed chain keeps
//! on the tape (≈ 0.4 GB per MP layer at batch 256).
//!
//! CPU (f32, f64): whole jets are grouped into chunks of ≥ [`CHUNK_ROWS`] pair rows; each
//! layer is one GEMM over the chunk (matrixmultiply, threaded) and row-parallel elementwise
//! work (rayon); chunks run in order and the weight gradients are summed chunk by chunk, so the
//! result does not depend on the thread count. CUDA (f32, [`cuda`]): the same algorithm on
//! chunks of ≥ [`cuda::CUDA_CHUNK_ROWS`] rows, cuBLAS GEMMs and the kernels of
//! `kernels/edge_mlp.cu`.

use std::any::Any;

use rayon::prelude::*;

use crate::autograd::{CreateGraph, CustomForward, CustomOp, Var};
use crate::error::{Error, Result};
use crate::ops::expect_shape;
use crate::ops::matmul::{gemm_strided, gemm_strided_add};
use crate::ops::{leaky_relu, leaky_relu_grad};
use crate::real::Real;
use crate::rng::mix64;
use crate::tensor::{Storage, Tensor};
use crate::with_real;

pub mod cuda;

/// Pair rows per chunk (whole jets are added until a chunk holds at least this many).
pub const CHUNK_ROWS: usize = 2048;

/// Dropout inside the fused edge MLP: probability `p` ∈ [0, 1) after every layer, multipliers
/// drawn from `seed` (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdgeDropout {
    pub p: f32,
    pub seed: u64,
}

impl EdgeDropout {
    pub(crate) fn threshold(&self) -> u32 {
        (self.p as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32
    }
    /// 1/(1 − p), rounded to f32 so that both dtypes and [`dropout_scales`] use one value.
    pub(crate) fn scale(&self) -> f64 {
        (1.0 / (1.0 - self.p as f64)) as f32 as f64
    }
    /// The seed of pair row `pair = (b·N + i)·N + j` of layer `layer`.
    fn row_seed(&self, layer: usize, pair: usize) -> u32 {
        mix64(
            self.seed ^ ((layer as u64) << 56) ^ (pair as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ) as u32
    }
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// `row[h] *= d_h` for one pair row: 0 where dropped, `scale` where kept.
#[inline]
fn apply_dropout<T: Real>(row: &mut [T], seed: u32, threshold: u32, scale: T) {
    for (h, v) in row.iter_mut().enumerate() {
        let bits = fmix32(seed ^ (h as u32).wrapping_mul(0x9E37_79B9));
        *v = if bits >= threshold {
            *v * scale
        } else {
            T::zero()
        };
    }
}

/// The dropout multipliers of layer `layer` for every pair: `[B, N, N, H]` values in
/// {0, 1/(1−p)} (f32), as the fused op applies them.
pub fn dropout_scales(drop: &EdgeDropout, layer: usize, b: usize, n: usize, h: usize) -> Vec<f32> {
    let (threshold, scale) = (drop.threshold(), drop.scale() as f32);
    let mut out = vec![1f32; b * n * n * h];
    for (pair, row) in out.chunks_exact_mut(h.max(1)).enumerate() {
        apply_dropout(row, drop.row_seed(layer, pair), threshold, scale);
    }
    out
}

/// Sizes of one application: `widths = [H₀, H₁, …, H_L]`.
#[derive(Clone, Debug)]
pub(crate) struct Dims {
    b: usize,
    n: usize,
    widths: Vec<usize>,
}

impl Dims {
    fn layers(&self) -> usize {
        self.widths.len() - 1
    }
}

/// One computed pair: receiver row `b·N + i`, sender row `b·N + j`, pair index `(b·N + i)·N + j`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    pub(crate) recv: usize,
    pub(crate) send: usize,
    pub(crate) pair: usize,
}

/// The jets of the chunks (whole jets until a chunk holds ≥ `target` rows) and their pairs,
/// receiver-major (each receiver's pairs contiguous, the same senders for each).
pub(crate) fn chunks(d: &Dims, real: &[bool], target: usize) -> Vec<Vec<Pair>> {
    let n = d.n;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for b in 0..d.b {
        let senders: Vec<usize> = (0..n).filter(|&j| real[b * n + j]).collect();
        for i in 0..n {
            for &j in &senders {
                cur.push(Pair {
                    recv: b * n + i,
                    send: b * n + j,
                    pair: (b * n + i) * n + j,
                });
            }
        }
        if cur.len() >= target {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The operands of one application, as slices.
struct Operands<'a, T> {
    a: &'a [T],
    c: &'a [T],
    w: Vec<&'a [T]>,
    bias: Vec<&'a [T]>,
}

/// Buffers reused by every chunk of one call: `act[k]` = φ(z_k) and, with dropout,
/// `dropped[k]` = d_k ⊙ act[k] (each `[R, H_k]` for the chunk's R rows); `grad`, `up` for the
/// backward.
struct Workspace<T> {
    act: Vec<Vec<T>>,
    dropped: Vec<Vec<T>>,
    grad: Vec<T>,
    up: Vec<T>,
}

impl<T: Real> Workspace<T> {
    fn new(d: &Dims, max_rows: usize, dropout: bool, backward: bool) -> Self {
        let per_layer = |on: bool| -> Vec<Vec<T>> {
            d.widths
                .iter()
                .map(|&h| vec![T::zero(); if on { max_rows * h } else { 0 }])
                .collect()
        };
        let widest = d.widths.iter().copied().max().unwrap_or(0);
        let scratch = if backward { max_rows * widest } else { 0 };
        Workspace {
            act: per_layer(true),
            dropped: per_layer(dropout),
            grad: vec![T::zero(); scratch],
            up: vec![T::zero(); scratch],
        }
    }

    /// u^k of the chunk's `len` values: the dropped-out activations, or the activations.
    fn input(&self, k: usize, len: usize) -> &[T] {
        if self.dropped[k].is_empty() {
            &self.act[k][..len]
        } else {
            &self.dropped[k][..len]
        }
    }
}

/// Rows of `x` (`[R, h]`) in parallel when the chunk is large.
fn par_rows<T: Send>(x: &mut [T], h: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if h == 0 {
        return;
    }
    if x.len() <= crate::ops::PAR_MIN {
        x.chunks_exact_mut(h)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    } else {
        x.par_chunks_exact_mut(h)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    }
}

/// Dropout (multipliers, seed, threshold, scale) in the dtype of the op.
type DropoutIn<'a, T> = Option<(&'a EdgeDropout, u32, T)>;

fn dropout_in<T: Real>(drop: Option<&EdgeDropout>) -> DropoutIn<'_, T> {
    drop.map(|dr| (dr, dr.threshold(), T::from_f64(dr.scale())))
}

/// The chunk's forward into `ws`.
fn chunk_forward<T: Real>(
    ops: &Operands<T>,
    d: &Dims,
    pairs: &[Pair],
    alpha: T,
    drop: Option<&EdgeDropout>,
    ws: &mut Workspace<T>,
) {
    let r = pairs.len();
    let h0 = d.widths[0];
    let dropout = dropout_in::<T>(drop);
    let Workspace { act, dropped, .. } = ws;
    let drop_layer = |layer: usize, from: &[T], to: &mut [T], h: usize| {
        if let Some((dr, threshold, scale)) = dropout {
            to.copy_from_slice(from);
            par_rows(to, h, |row, o| {
                apply_dropout(o, dr.row_seed(layer, pairs[row].pair), threshold, scale)
            });
        }
    };
    par_rows(&mut act[0][..r * h0], h0, |row, o| {
        let p = pairs[row];
        let (ar, cr) = (
            &ops.a[p.recv * h0..(p.recv + 1) * h0],
            &ops.c[p.send * h0..(p.send + 1) * h0],
        );
        for k in 0..h0 {
            o[k] = leaky_relu(ar[k] + cr[k], alpha);
        }
    });
    if dropout.is_some() {
        drop_layer(0, &act[0][..r * h0], &mut dropped[0][..r * h0], h0);
    }
    for k in 1..=d.layers() {
        let (hi, ho) = (d.widths[k - 1], d.widths[k]);
        let (done, rest) = act.split_at_mut(k);
        let z = &mut rest[0][..r * ho];
        let u = if dropout.is_some() {
            &dropped[k - 1][..r * hi]
        } else {
            &done[k - 1][..r * hi]
        };
        // z = u^{k−1} · W_kᵀ: W_k is [ho, hi] row-major, so Wᵀ has strides (1, hi)
        gemm_strided(r, hi, ho, (u, hi, 1), (ops.w[k - 1], 1, hi), z, ho);
        let bias = ops.bias[k - 1];
        par_rows(z, ho, |_, o| {
            for (v, &bv) in o.iter_mut().zip(bias) {
                *v = leaky_relu(*v + bv, alpha);
            }
        });
        if dropout.is_some() {
            drop_layer(k, &rest[0][..r * ho], &mut dropped[k][..r * ho], ho);
        }
    }
}

/// out_bi += Σ over the chunk's pairs of receiver (b, i) of `u [R, H]`.
fn sum_by_receiver<T: Real>(pairs: &[Pair], u: &[T], h: usize, out: &mut [T]) {
    for (p, row) in pairs.iter().zip(u.chunks_exact(h.max(1))) {
        out[p.recv * h..(p.recv + 1) * h]
            .iter_mut()
            .zip(row)
            .for_each(|(o, &v)| *o += v);
    }
}

pub(crate) fn max_rows(chunks: &[Vec<Pair>]) -> usize {
    chunks.iter().map(Vec::len).max().unwrap_or(0)
}

fn cpu_forward<T: Real>(
    ops: &Operands<T>,
    d: &Dims,
    real: &[bool],
    alpha: f64,
    drop: Option<&EdgeDropout>,
) -> Vec<T> {
    let (l, hl) = (d.layers(), d.widths[d.layers()]);
    let mut out = vec![T::zero(); d.b * d.n * hl];
    let chunks = chunks(d, real, CHUNK_ROWS);
    let mut ws = Workspace::new(d, max_rows(&chunks), drop.is_some(), false);
    for pairs in &chunks {
        chunk_forward(ops, d, pairs, T::from_f64(alpha), drop, &mut ws);
        sum_by_receiver(pairs, ws.input(l, pairs.len() * hl), hl, &mut out);
    }
    out
}

/// ∂a, ∂c and (∂W_k, ∂b_k) for k = 1..L.
type Grads<T> = (Vec<T>, Vec<T>, Vec<(Vec<T>, Vec<T>)>);

fn cpu_backward<T: Real>(
    ops: &Operands<T>,
    d: &Dims,
    real: &[bool],
    alpha: f64,
    drop: Option<&EdgeDropout>,
    g: &[T],
) -> Grads<T> {
    let (l, h0) = (d.layers(), d.widths[0]);
    let al = T::from_f64(alpha);
    let dropout = dropout_in::<T>(drop);
    let mut ga = vec![T::zero(); d.b * d.n * h0];
    let mut gc = vec![T::zero(); d.b * d.n * h0];
    let mut gw: Vec<(Vec<T>, Vec<T>)> = (1..=l)
        .map(|k| {
            (
                vec![T::zero(); d.widths[k] * d.widths[k - 1]],
                vec![T::zero(); d.widths[k]],
            )
        })
        .collect();
    let chunks = chunks(d, real, CHUNK_ROWS);
    let mut ws = Workspace::new(d, max_rows(&chunks), drop.is_some(), true);
    for pairs in &chunks {
        let r = pairs.len();
        chunk_forward(ops, d, pairs, al, drop, &mut ws);
        let (mut grad, mut up) = (std::mem::take(&mut ws.grad), std::mem::take(&mut ws.up));
        // G = d ⊙ φ′(act) ⊙ upstream, row by row
        let local = |layer: usize, upstream: &mut [T], h: usize| {
            let act = &ws.act[layer];
            par_rows(upstream, h, |row, o| {
                if let Some((dr, threshold, scale)) = dropout {
                    apply_dropout(o, dr.row_seed(layer, pairs[row].pair), threshold, scale);
                }
                for (v, &s) in o.iter_mut().zip(&act[row * h..(row + 1) * h]) {
                    *v = *v * leaky_relu_grad(s, al);
                }
            });
        };
        let hl = d.widths[l];
        par_rows(&mut grad[..r * hl], hl, |row, o| {
            let recv = pairs[row].recv;
            o.copy_from_slice(&g[recv * hl..(recv + 1) * hl]);
        });
        local(l, &mut grad[..r * hl], hl);
        for k in (1..=l).rev() {
            let (hi, ho) = (d.widths[k - 1], d.widths[k]);
            let gk = &grad[..r * ho];
            let (w_acc, b_acc) = &mut gw[k - 1];
            // ∂W_k += Gᵀ u^{k−1}: Gᵀ [ho, R] has strides (1, ho); chunks in order
            gemm_strided_add(
                ho,
                r,
                hi,
                (gk, 1, ho),
                (ws.input(k - 1, r * hi), hi, 1),
                w_acc,
                hi,
            );
            for row in gk.chunks_exact(ho) {
                b_acc.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
            // upstream of layer k − 1: G · W_k ([R, ho] · [ho, hi])
            gemm_strided(
                r,
                ho,
                hi,
                (gk, ho, 1),
                (ops.w[k - 1], hi, 1),
                &mut up[..r * hi],
                hi,
            );
            local(k - 1, &mut up[..r * hi], hi);
            std::mem::swap(&mut grad, &mut up);
        }
        for (p, row) in pairs.iter().zip(grad[..r * h0].chunks_exact(h0.max(1))) {
            let ar = &mut ga[p.recv * h0..(p.recv + 1) * h0];
            ar.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            let cr = &mut gc[p.send * h0..(p.send + 1) * h0];
            cr.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
        }
        (ws.grad, ws.up) = (grad, up);
    }
    (ga, gc, gw)
}

/// The tape op: inputs `[a, c, W₁, b₁, …, W_L, b_L]`, the mask a constant.
struct EdgeMlpOp {
    alpha: f64,
    dropout: Option<EdgeDropout>,
    /// Which senders are real, `[B·N]`.
    real: Vec<bool>,
    mask: Tensor,
    dims: Dims,
}

impl EdgeMlpOp {
    fn operands<'a, T: Real>(&self, inputs: &[&'a Tensor]) -> Result<Operands<'a, T>> {
        let l = self.dims.layers();
        Ok(Operands {
            a: inputs[0].cpu::<T>()?,
            c: inputs[1].cpu::<T>()?,
            w: (0..l)
                .map(|k| inputs[2 + 2 * k].cpu::<T>())
                .collect::<Result<_>>()?,
            bias: (0..l)
                .map(|k| inputs[3 + 2 * k].cpu::<T>())
                .collect::<Result<_>>()?,
        })
    }

    /// The composed chain on the tape (the reference, and the second-order path).
    fn composed(&self, inputs: &[Var]) -> Result<Var> {
        let d = &self.dims;
        let scales = |layer: usize, h: usize| -> Result<Option<Var>> {
            let Some(drop) = &self.dropout else {
                return Ok(None);
            };
            let s = dropout_scales(drop, layer, d.b, d.n, h);
            let t = Tensor::from_slice(&s, &[d.b, d.n, d.n, h], inputs[0].value().device())?
                .to_dtype(inputs[0].value().dtype())?;
            Ok(Some(inputs[0].constant(t)))
        };
        let with_dropout = |x: Var, layer: usize, h: usize| -> Result<Var> {
            match scales(layer, h)? {
                Some(s) => x.mul(&s),
                None => Ok(x),
            }
        };
        let mut e = with_dropout(
            inputs[0].edge_input(&inputs[1], self.alpha)?,
            0,
            d.widths[0],
        )?;
        for k in 1..=d.layers() {
            let z = e
                .matmul_t(&inputs[2 * k], false, true)?
                .add(&inputs[2 * k + 1])?
                .leaky_relu(self.alpha)?;
            e = with_dropout(z, k, d.widths[k])?;
        }
        e.aggregate(&self.mask)
    }
}

impl CustomOp for EdgeMlpOp {
    fn name(&self) -> &'static str {
        "edge_mlp"
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let out = cuda::forward(
            inputs,
            &self.dims,
            &self.real,
            self.alpha,
            self.dropout.as_ref(),
        )?;
        Ok(CustomForward::new(out))
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let d = &self.dims;
        let shape = [d.b, d.n, d.widths[d.layers()]];
        with_real!(inputs[0], T => {
            let ops = self.operands::<T>(inputs)?;
            let out = cpu_forward(&ops, d, &self.real, self.alpha, self.dropout.as_ref());
            Ok(CustomForward::new(Tensor::from_cpu_vec(out, &shape)?))
        })
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        _saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let d = &self.dims;
        if matches!(inputs[0].storage(), Storage::Cuda(_)) {
            let grads =
                cuda::backward(inputs, d, &self.real, self.alpha, self.dropout.as_ref(), g)?;
            return Ok(grads.into_iter().map(Some).collect());
        }
        let rows = [d.b, d.n, d.widths[0]];
        with_real!(inputs[0], T => {
            let ops = self.operands::<T>(inputs)?;
            let g = g.cpu::<T>()?;
            let (ga, gc, gw) =
                cpu_backward(&ops, d, &self.real, self.alpha, self.dropout.as_ref(), g);
            let mut out = vec![
                Some(Tensor::from_cpu_vec(ga, &rows)?),
                Some(Tensor::from_cpu_vec(gc, &rows)?),
            ];
            for (k, (w, b)) in gw.into_iter().enumerate() {
                let (hi, ho) = (d.widths[k], d.widths[k + 1]);
                out.push(Some(Tensor::from_cpu_vec(w, &[ho, hi])?));
                out.push(Some(Tensor::from_cpu_vec(b, &[ho])?));
            }
            Ok(out)
        })
    }
    fn backward_graph(
        &self,
        inputs: &[Var],
        _saved: &dyn Any,
        _output: &Var,
        g: &Var,
        _needs: &[bool],
    ) -> Option<Result<Vec<Option<Var>>>> {
        Some((|| {
            let out = self.composed(inputs)?;
            let refs: Vec<&Var> = inputs.iter().collect();
            let grads = out.tape().vjp(&out, g, &refs, CreateGraph::Yes)?;
            Ok(grads.into_iter().map(Some).collect())
        })())
    }
}

impl EdgeMlpOp {
    /// The op for `a`, `c [B, N, H₀]`, `inputs = [W₁, b₁, …]`, `mask [B, N]`: every shape,
    /// the slope, the dropout probability and the device checked.
    fn new(
        a: &Tensor,
        c: &Tensor,
        layers: &[&Tensor],
        mask: &Tensor,
        alpha: f64,
        dropout: Option<EdgeDropout>,
    ) -> Result<EdgeMlpOp> {
        let bad = |m: String| Error::shape("edge_mlp", m);
        let &[b, n, h0] = a.shape() else {
            return Err(bad(format!("a must be [B, N, H], got {:?}", a.shape())));
        };
        if c.shape() != a.shape() || mask.shape() != [b, n] {
            return Err(bad(format!(
                "c {:?} and mask {:?} must be [B, N, H] = {:?} and [B, N]",
                c.shape(),
                mask.shape(),
                a.shape()
            )));
        }
        if !layers.len().is_multiple_of(2) {
            return Err(bad("every layer needs a weight and a bias".into()));
        }
        let mut widths = vec![h0];
        for (k, wb) in layers.chunks(2).enumerate() {
            let prev = widths[k];
            match wb[0].shape() {
                &[ho, hi] if hi == prev && wb[1].shape() == [ho] => widths.push(ho),
                s => {
                    return Err(bad(format!(
                        "layer {}: weight {s:?} and bias {:?} must be [H, {prev}] and [H]",
                        k + 1,
                        wb[1].shape()
                    )))
                }
            }
        }
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::invalid(format!(
                "edge_mlp: the LeakyReLU slope must be finite and ≥ 0, got {alpha}"
            )));
        }
        if let Some(dr) = &dropout {
            if !(0.0..1.0).contains(&dr.p) {
                return Err(Error::invalid(format!(
                    "edge_mlp: dropout probability must be in [0, 1), got {}",
                    dr.p
                )));
            }
        }
        for t in std::iter::once(c).chain(layers.iter().copied()) {
            a.same_place("edge_mlp", t)?;
        }
        let real = mask.to_vec_f64()?.iter().map(|&v| v != 0.0).collect();
        Ok(EdgeMlpOp {
            alpha,
            dropout: dropout.filter(|dr| dr.p > 0.0),
            real,
            mask: mask.clone(),
            dims: Dims { b, n, widths },
        })
    }
}

/// `[a, c, W₁, b₁, …]` as one list.
fn op_inputs<'a>(
    a: &'a Tensor,
    c: &'a Tensor,
    layers: &[(&'a Tensor, &'a Tensor)],
) -> Vec<&'a Tensor> {
    let mut v = vec![a, c];
    for (w, b) in layers {
        v.extend([*w, *b]);
    }
    v
}

/// The fused edge network's value on tensors (CPU or CUDA): `a`, `c [B, N, H₀]`, `layers` = (W_k,
/// b_k), `mask [B, N]` → `[B, N, H_L]` (see the module doc).
pub fn edge_mlp_forward(
    a: &Tensor,
    c: &Tensor,
    layers: &[(&Tensor, &Tensor)],
    mask: &Tensor,
    alpha: f64,
    dropout: Option<EdgeDropout>,
) -> Result<Tensor> {
    let inputs = op_inputs(a, c, layers);
    let op = EdgeMlpOp::new(a, c, &inputs[2..], mask, alpha, dropout)?;
    let out = if matches!(a.storage(), Storage::Cuda(_)) {
        op.cuda_forward(&inputs)?
    } else {
        op.cpu_forward(&inputs)?
    };
    Ok(out.value)
}

/// Its backward on tensors: from `g = ∂L/∂out [B, N, H_L]`, the gradients
/// `[∂a, ∂c, ∂W₁, ∂b₁, …]` (the forward recomputed).
pub fn edge_mlp_backward(
    a: &Tensor,
    c: &Tensor,
    layers: &[(&Tensor, &Tensor)],
    mask: &Tensor,
    alpha: f64,
    dropout: Option<EdgeDropout>,
    g: &Tensor,
) -> Result<Vec<Tensor>> {
    let inputs = op_inputs(a, c, layers);
    let op = EdgeMlpOp::new(a, c, &inputs[2..], mask, alpha, dropout)?;
    let d = &op.dims;
    expect_shape(
        "edge_mlp_backward",
        "g",
        g.shape(),
        &[d.b, d.n, d.widths[d.layers()]],
    )?;
    a.same_place("edge_mlp_backward", g)?;
    let grads = op.backward(&inputs, &(), g, g, &vec![true; inputs.len()])?;
    Ok(grads.into_iter().flatten().collect())
}

impl Var {
    /// The fused edge network (see the module doc): `self = a [B, N, H₀]` (receiver part of
    /// the first layer, bias included), `c [B, N, H₀]` (sender part), `layers` = (W_k
    /// `[H_k, H_{k−1}]`, b_k `[H_k]`), `mask [B, N]` → `Σ_{j real} uᴸ_bij` `[B, N, H_L]`.
    /// CPU (f32, f64) and CUDA (f32); differentiable to any order.
    pub fn edge_mlp(
        &self,
        c: &Var,
        layers: &[(Var, Var)],
        mask: &Tensor,
        alpha: f64,
        dropout: Option<EdgeDropout>,
    ) -> Result<Var> {
        let mut inputs: Vec<&Var> = vec![self, c];
        for (w, bias) in layers {
            inputs.extend([w, bias]);
        }
        let values: Vec<&Tensor> = inputs[2..].iter().map(|v| v.value()).collect();
        let op = EdgeMlpOp::new(self.value(), c.value(), &values, mask, alpha, dropout)?;
        Var::custom(op, &inputs)
    }
}
