//! The f32 CPU path of the splines, eight elements at a time (one [`Lanes`] lane each), on
//! the instruction set [`crate::simd::isa`] picks (AVX2 + FMA or portable: same bits).
//!
//! The bin formulas are the scalar path's own (`forward_in_bin`, `forward_adjoint`, ... are
//! generic over [`super::BinMath`]); what changes is how the two data-dependent steps are done
//! without branches:
//! - **bin search**: the bin index is the number of interior knots at or below the value,
//!   counted over all K − 1 knots (the scalar path stops at the first knot above it);
//! - **bin lookup**: the bin's knots and the two unnormalised derivatives are picked with one
//!   select per bin, and only those two go through softplus (and sigmoid in the backward).
//!
//! Element i's parameters are the rows `uw[i·K..]`, `uh[i·K..]`, `ud[i·(K−1)..]`; a block of
//! eight rows is transposed into one vector per bin on the way in (and the gradient rows on
//! the way out). Elements after the last multiple of eight go through the scalar path.

use super::{
    forward_adjoint, forward_in_bin, forward_slope, inverse_in_bin, inverse_root, rqs_scalar,
    rqs_scalar_grad, Bin, BinMath, SplineConsts,
};
use crate::simd::{Lanes, Mask, WIDTH};

/// Most bins the lane path handles (parameters of eight elements kept on the stack); more
/// bins take the scalar path.
pub(super) const MAX_BINS: usize = 16;

/// The working set of one block of eight elements, one vector per bin: the unnormalised
/// parameters (`ud`: K − 1 used), the two softmaxes and their knots. Made once per kernel
/// call and refilled for every block, so that no block copies it around (returned by value,
/// the 1.7 KB went through `memcpy` calls).
struct Scratch<V> {
    uw: [V; MAX_BINS],
    uh: [V; MAX_BINS],
    ud: [V; MAX_BINS],
    pw: [V; MAX_BINS],
    ph: [V; MAX_BINS],
    kx: [V; MAX_BINS + 1],
    ky: [V; MAX_BINS + 1],
}

impl<V: Lanes> Scratch<V> {
    #[inline(always)]
    fn new() -> Self {
        let z = [V::zero(); MAX_BINS];
        let zk = [V::zero(); MAX_BINS + 1];
        Scratch {
            uw: z,
            uh: z,
            ud: z,
            pw: z,
            ph: z,
            kx: zk,
            ky: zk,
        }
    }

    /// Transpose elements i..i+8's rows `[8, K]` (and `[8, K − 1]`) into the parameter vectors.
    #[inline(always)]
    fn gather(&mut self, p: &Params, i: usize, k: usize) {
        transpose_in(&p.uw[i * k..], k, &mut self.uw);
        transpose_in(&p.uh[i * k..], k, &mut self.uh);
        transpose_in(&p.ud[i * (k - 1)..], k - 1, &mut self.ud);
    }
}

/// `out[j]` lane l = `rows[l·k + j]` for j < k: eight columns at a time, each an 8 × 8
/// register transpose of the rows' next eight values. A row with fewer than eight left runs
/// on into the next row (those lanes are not used); where that would run past the end of
/// `rows` (the last block of a run) the chunk goes through memory instead.
#[inline(always)]
fn transpose_in<V: Lanes>(rows: &[f32], k: usize, out: &mut [V]) {
    for c0 in (0..k).step_by(WIDTH) {
        let width = WIDTH.min(k - c0);
        if (WIDTH - 1) * k + c0 + WIDTH <= rows.len() {
            let mut r = [V::zero(); WIDTH];
            for (l, v) in r.iter_mut().enumerate() {
                *v = V::load(&rows[l * k + c0..]);
            }
            let cols = V::transpose8(r);
            // element by element: a slice copy of run-time length becomes a memmove call
            for (j, col) in cols.into_iter().enumerate() {
                if j < width {
                    out[c0 + j] = col;
                }
            }
        } else {
            let mut t = [[0f32; WIDTH]; WIDTH];
            for (l, row) in rows[..WIDTH * k].chunks_exact(k).enumerate() {
                for (j, &v) in row[c0..c0 + width].iter().enumerate() {
                    t[j][l] = v;
                }
            }
            for (o, col) in out[c0..c0 + width].iter_mut().zip(&t) {
                *o = V::load(col);
            }
        }
    }
}

/// `rows[l·k + j]` = `vals[j]` lane l for j < k: the inverse of [`transpose_in`]. Row l is
/// stored eight values at a time; a store that runs past the row's end writes into row
/// l + 1, which is stored after it (and the next block's rows after this block's), so every
/// value ends as its own row wrote it. Only a store past the end of `rows` is cut short.
#[inline(always)]
fn transpose_out<V: Lanes>(vals: &[V], k: usize, rows: &mut [f32]) {
    const CHUNKS: usize = MAX_BINS / WIDTH;
    let chunks = k.div_ceil(WIDTH);
    let mut t = [[V::zero(); WIDTH]; CHUNKS];
    for (c, tc) in t.iter_mut().enumerate().take(chunks) {
        let mut cols = [V::zero(); WIDTH];
        for (j, col) in cols.iter_mut().enumerate() {
            if c * WIDTH + j < k {
                *col = vals[c * WIDTH + j];
            }
        }
        *tc = V::transpose8(cols);
    }
    for l in 0..WIDTH {
        for (c, tc) in t.iter().enumerate().take(chunks) {
            let at = l * k + c * WIDTH;
            if at + WIDTH <= rows.len() {
                tc[l].store(&mut rows[at..]);
            } else {
                let width = WIDTH.min(k - c * WIDTH);
                for (r, v) in rows[at..at + width].iter_mut().zip(tc[l].to_array()) {
                    *r = v;
                }
            }
        }
    }
}

/// softmax over the first K vectors of `u`, per lane, into `p`.
#[inline(always)]
fn softmax<V: Lanes>(u: &[V], k: usize, p: &mut [V]) {
    let mut m = u[0];
    for &v in &u[1..k] {
        m = m.max(v);
    }
    let mut sum = V::zero();
    for j in 0..k {
        p[j] = (u[j] - m).exp();
        sum += p[j];
    }
    for pj in p.iter_mut().take(k) {
        *pj = *pj / sum;
    }
}

/// The bin of each lane and what the backward needs besides it.
struct Located<V> {
    /// Bin index, as f32.
    index: V,
    bin: Bin<V>,
    /// The unnormalised derivatives at the bin's left and right knots (interior knots only).
    u_left: V,
    u_right: V,
}

/// Knots of one softmax row into `out`: `out[0] = −B`, `out[k] = 2B·Σ_{j<k}(m + s·p_j) − B`,
/// `out[K] = B`, accumulated in the same order as the scalar path.
#[inline(always)]
fn knots<V: Lanes>(p: &[V], k: usize, min: f32, scale: f32, c: &SplineConsts<f32>, out: &mut [V]) {
    out[0] = V::splat(-c.b);
    let mut cum = V::zero();
    for j in 0..k {
        cum += V::splat(min) + V::splat(scale) * p[j];
        out[j + 1] = V::splat(c.two_b) * cum - V::splat(c.b);
    }
    out[k] = V::splat(c.b);
}

/// Lane twin of the scalar `locate`: `value` clamped into [−B, B].
#[inline(always)]
/// The softmaxes and knots are left in `s` (the backward needs the softmaxes).
fn locate<V: Lanes>(
    value: V,
    s: &mut Scratch<V>,
    c: &SplineConsts<f32>,
    inverse: bool,
) -> Located<V> {
    let k = c.k;
    softmax(&s.uw, k, &mut s.pw);
    softmax(&s.uh, k, &mut s.ph);
    knots(&s.pw, k, c.min_w, c.scale_w, c, &mut s.kx);
    knots(&s.ph, k, c.min_h, c.scale_h, c, &mut s.ky);
    let (kx, ky, ud) = (&s.kx, &s.ky, &s.ud);
    let search = if inverse { ky } else { kx };
    let (zero, one) = (V::zero(), V::splat(1.0));
    let mut index = zero;
    for knot in &search[1..k] {
        index += V::select(value.ge(*knot), one, zero);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (kx[0], kx[1], ky[0], ky[1]);
    let (mut u_left, mut u_right) = (zero, ud[0]);
    for j in 1..k {
        let here = index.eq(V::splat(j as f32));
        x0 = V::select(here, kx[j], x0);
        x1 = V::select(here, kx[j + 1], x1);
        y0 = V::select(here, ky[j], y0);
        y1 = V::select(here, ky[j + 1], y1);
        u_left = V::select(here, ud[j - 1], u_left);
        if j + 1 < k {
            u_right = V::select(here, ud[j], u_right);
        }
    }
    let min_d = V::splat(c.min_d);
    let first = index.eq(zero);
    let last = index.eq(V::splat((k - 1) as f32));
    let d0 = V::select(first, one, min_d + u_left.softplus());
    let d1 = V::select(last, one, min_d + u_right.softplus());
    Located {
        index,
        bin: Bin {
            x0,
            width: x1 - x0,
            y0,
            height: y1 - y0,
            d0,
            d1,
        },
        u_left,
        u_right,
    }
}

/// Lane twin of the scalar `knots_to_logits`: ∂L/∂u_j = p_j (G_j − Σ_i p_i G_i) with G
/// piecewise constant (`below` for j < b, `at` for j = b, 0 beyond), every row written.
#[inline(always)]
fn knots_to_logits<V: Lanes>(
    p: &[V],
    index: V,
    g_shift: V,
    g_right: V,
    c: &SplineConsts<f32>,
    scale: f32,
) -> [V; MAX_BINS] {
    let k = c.k;
    let zero = V::zero();
    let right_interior = index.lt(V::splat((k - 1) as f32));
    let f = V::splat(c.two_b * scale);
    let below = f * V::select(right_interior, g_shift, g_shift - g_right);
    let at = V::select(right_interior, f * g_right, zero);
    let mut g = [zero; MAX_BINS];
    for (j, gj) in g.iter_mut().enumerate() {
        let jv = V::splat(j as f32);
        *gj = V::select(jv.lt(index), below, V::select(jv.eq(index), at, zero));
    }
    let mut dot = zero;
    for j in 0..k {
        dot += p[j] * g[j];
    }
    let mut out = [zero; MAX_BINS];
    for j in 0..k {
        out[j] = p[j] * (g[j] - dot);
    }
    out
}

/// The unnormalised parameters of a run of elements: element i owns the rows `uw[i·K..]`,
/// `uh[i·K..]` (K values) and `ud[i·(K−1)..]` (K − 1 values).
#[derive(Clone, Copy)]
pub(super) struct Params<'a> {
    pub uw: &'a [f32],
    pub uh: &'a [f32],
    pub ud: &'a [f32],
}

impl<'a> Params<'a> {
    /// Elements `lo..hi` of a run with K bins.
    pub fn range(&self, lo: usize, hi: usize, k: usize) -> Params<'a> {
        Params {
            uw: &self.uw[lo * k..hi * k],
            uh: &self.uh[lo * k..hi * k],
            ud: &self.ud[lo * (k - 1)..hi * (k - 1)],
        }
    }
    /// Element i's three rows.
    fn rows(&self, i: usize, k: usize) -> (&'a [f32], &'a [f32], &'a [f32]) {
        let p = self.range(i, i + 1, k);
        (p.uw, p.uh, p.ud)
    }
}

/// Where [`backward`] writes: ∂L/∂x `[n]` and the parameter gradients as rows (as [`Params`]).
pub(super) struct Grads<'a> {
    pub x: &'a mut [f32],
    pub uw: &'a mut [f32],
    pub uh: &'a mut [f32],
    pub ud: &'a mut [f32],
}

crate::simd::dispatch! {
    /// Forward (or inverse) spline of `x [n]` into `y [n]`, `logdet [n]` on `isa`. Full
    /// blocks of eight on lanes, the rest scalar.
    pub(super) fn forward(
        isa: Isa,
        x: &[f32],
        p: Params,
        c: &SplineConsts<f32>,
        inverse: bool,
        y: &mut [f32],
        logdet: &mut [f32],
    ) = forward_lanes::<lanes>;
}

/// [`forward`] on the lane type `V`.
#[inline(always)]
fn forward_lanes<V: Lanes + BinMath>(
    x: &[f32],
    p: Params,
    c: &SplineConsts<f32>,
    inverse: bool,
    y: &mut [f32],
    logdet: &mut [f32],
) {
    let k = c.k;
    let (lo_b, hi_b) = (V::splat(-c.b), V::splat(c.b));
    let full = x.len() / WIDTH * WIDTH;
    let mut s = Scratch::new();
    for i in (0..full).step_by(WIDTH) {
        let v = V::load(&x[i..]);
        let inside = v.ge(lo_b).and(v.le(hi_b));
        let clamped = v.max(lo_b).min(hi_b);
        s.gather(&p, i, k);
        let loc = locate(clamped, &mut s, c, inverse);
        let (out, ld) = if inverse {
            inverse_in_bin(clamped, &loc.bin)
        } else {
            forward_in_bin(clamped, &loc.bin)
        };
        V::select(inside, out, v).store(&mut y[i..]);
        V::select(inside, ld, V::zero()).store(&mut logdet[i..]);
    }
    for i in full..x.len() {
        let (uw, uh, ud) = p.rows(i, k);
        (y[i], logdet[i]) = rqs_scalar(x[i], uw, uh, ud, c, inverse);
    }
}

crate::simd::dispatch! {
    /// Gradients of L through [`forward`] on `isa`: given ∂L/∂y (`gy`) and ∂L/∂logdet
    /// (`gl`), writes ∂L/∂x and the parameter gradients into `g`.
    pub(super) fn backward(
        isa: Isa,
        x: &[f32],
        p: Params,
        c: &SplineConsts<f32>,
        inverse: bool,
        gy: &[f32],
        gl: &[f32],
        g: Grads,
    ) = backward_lanes::<lanes>;
}

/// [`backward`] on the lane type `V`.
#[inline(always)]
fn backward_lanes<V: Lanes + BinMath>(
    x: &[f32],
    p: Params,
    c: &SplineConsts<f32>,
    inverse: bool,
    gy: &[f32],
    gl: &[f32],
    g: Grads,
) {
    let k = c.k;
    let (lo_b, hi_b, zero) = (V::splat(-c.b), V::splat(c.b), V::zero());
    let full = x.len() / WIDTH * WIDTH;
    let mut s = Scratch::new();
    for i in (0..full).step_by(WIDTH) {
        let v = V::load(&x[i..]);
        let (g_out, g_ld) = (V::load(&gy[i..]), V::load(&gl[i..]));
        let inside = v.ge(lo_b).and(v.le(hi_b));
        let clamped = v.max(lo_b).min(hi_b);
        s.gather(&p, i, k);
        let loc = locate(clamped, &mut s, c, inverse);
        let bin = &loc.bin;
        let (g_value, adj) = if inverse {
            // implicit differentiation at x* = f⁻¹(value), as in the scalar path
            let xs = inverse_root(clamped, bin);
            let (slope, ell_x) = forward_slope(xs, bin);
            let alpha = (g_out - g_ld * ell_x) / slope;
            let mut adj = forward_adjoint(xs, bin, -alpha, -g_ld);
            adj[1] = g_out; // the x-shift adjoint, exactly (see the scalar path)
            (alpha, adj)
        } else {
            let adj = forward_adjoint(clamped, bin, g_out, g_ld);
            (adj[0], adj)
        };
        // outside [−B, B]: the identity, parameters untouched
        // (selects written out, no closure: see `simd::dispatch!`)
        V::select(inside, g_value, g_out).store(&mut g.x[i..]);
        let mut gw = knots_to_logits(&s.pw, loc.index, adj[1], adj[2], c, c.scale_w);
        let mut gh = knots_to_logits(&s.ph, loc.index, adj[3], adj[4], c, c.scale_h);
        for v in gw.iter_mut().chain(gh.iter_mut()) {
            *v = V::select(inside, *v, zero);
        }
        let (g_left, g_right) = (
            V::select(inside, adj[5] * loc.u_left.sigmoid(), zero),
            V::select(inside, adj[6] * loc.u_right.sigmoid(), zero),
        );
        let mut gd = [zero; MAX_BINS];
        for (j, d) in gd.iter_mut().enumerate() {
            let jv = V::splat(j as f32);
            *d = V::select(jv.eq(loc.index), g_right, zero)
                + V::select((jv + V::splat(1.0)).eq(loc.index), g_left, zero);
        }
        transpose_out(&gw, k, &mut g.uw[i * k..]);
        transpose_out(&gh, k, &mut g.uh[i * k..]);
        transpose_out(&gd, k - 1, &mut g.ud[i * (k - 1)..]);
    }
    for i in full..x.len() {
        let (uw, uh, ud) = p.rows(i, k);
        g.x[i] = rqs_scalar_grad(
            x[i],
            uw,
            uh,
            ud,
            c,
            inverse,
            gy[i],
            gl[i],
            &mut g.uw[i * k..(i + 1) * k],
            &mut g.uh[i * k..(i + 1) * k],
            &mut g.ud[i * (k - 1)..(i + 1) * (k - 1)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RqsConfig, SplineConsts};
    use crate::rng::Rng;

    /// Per element, the lane path against the scalar path: outputs, log-dets and every
    /// gradient, forward and inverse, K from 2 to 16, inputs inside, on and outside the bound,
    /// on every instruction set this CPU has. Same operations in the same order (no FMA on
    /// either side): equal to the last bit.
    #[test]
    fn lanes_match_the_scalar_path_on_every_isa() {
        for isa in crate::simd::Isa::available() {
            lanes_match_the_scalar_path(isa);
        }
    }

    fn lanes_match_the_scalar_path(isa: crate::simd::Isa) {
        let mut rng = Rng::new(5);
        for k in [2usize, 3, 5, 8, 11, 16] {
            let cfg = RqsConfig::new(k, 3.0);
            let c = SplineConsts::<f32>::new(&cfg);
            let n = 8 * 37 + 5;
            let draw = |rng: &mut Rng, len: usize, sd: f32| {
                rng.normal(&[len], 0.0, sd, crate::device::Device::Cpu)
                    .unwrap()
                    .to_vec()
                    .unwrap()
            };
            let mut x = draw(&mut rng, n, 2.0);
            x[0] = 3.0;
            x[1] = -3.0;
            x[2] = 0.0;
            let (uw, uh, ud) = (
                draw(&mut rng, n * k, 1.5),
                draw(&mut rng, n * k, 1.5),
                draw(&mut rng, n * (k - 1), 1.5),
            );
            let (gy, gl) = (draw(&mut rng, n, 1.0), draw(&mut rng, n, 1.0));
            for inverse in [false, true] {
                let (mut y, mut ld) = (vec![0f32; n], vec![0f32; n]);
                let p = super::Params {
                    uw: &uw,
                    uh: &uh,
                    ud: &ud,
                };
                super::forward(isa, &x, p, &c, inverse, &mut y, &mut ld);
                let mut g = [
                    vec![0f32; n],
                    vec![0f32; n * k],
                    vec![0f32; n * k],
                    vec![0f32; n * (k - 1)],
                ];
                {
                    let [gx, gw, gh, gd] = &mut g;
                    let out = super::Grads {
                        x: gx,
                        uw: gw,
                        uh: gh,
                        ud: gd,
                    };
                    super::backward(isa, &x, p, &c, inverse, &gy, &gl, out);
                }
                let mut worst = [0f64; 6];
                for i in 0..n {
                    let (rw, rh, rd) = p.rows(i, k);
                    let (ys, lds) = super::rqs_scalar(x[i], rw, rh, rd, &c, inverse);
                    let (mut gw, mut gh, mut gd) =
                        (vec![0f32; k], vec![0f32; k], vec![0f32; k - 1]);
                    let gxs = super::rqs_scalar_grad(
                        x[i], rw, rh, rd, &c, inverse, gy[i], gl[i], &mut gw, &mut gh, &mut gd,
                    );
                    let err = |a: f32, b: f32| ((a - b).abs() / (1.0 + b.abs())) as f64;
                    worst[0] = worst[0].max(err(y[i], ys));
                    worst[1] = worst[1].max(err(ld[i], lds));
                    worst[2] = worst[2].max(err(g[0][i], gxs));
                    for j in 0..k {
                        worst[3] = worst[3].max(err(g[1][i * k + j], gw[j]));
                        worst[4] = worst[4].max(err(g[2][i * k + j], gh[j]));
                    }
                    for j in 0..k - 1 {
                        worst[5] = worst[5].max(err(g[3][i * (k - 1) + j], gd[j]));
                    }
                }
                assert_eq!(
                    worst, [0.0; 6],
                    "{isa}: K {k} inverse {inverse}: worst differences (y, logdet, gx, guw, guh, gud)"
                );
            }
        }
    }
}
