//! The Sinkhorn iterations at a fixed ε in *absorbed scaling* form (Schmitzer 2019,
//! "stabilized sparse scaling"): the same fixed point as the log-domain updates, with the
//! exponentials taken out of the inner loop.
//!
//! Write the potentials as f = f̄ + ε ln u, g = ḡ + ε ln v around absorbed potentials f̄, ḡ
//! and keep the stabilised kernel K̄_ij = exp((f̄_i + ḡ_j − C_ij)/ε) (0 at padded points).
//! The log-domain update f_i ← −ε ln Σ_j b_j exp((g_j − C_ij)/ε) becomes
//! ```text
//! S_i = Σ_j K̄_ij b_j v_j,     u_i ← 1 / S_i          (and symmetrically for v)
//! ```
//! — one multiply-add per entry instead of an exponential. The weights are folded into the
//! two stored copies of the kernel (K̄_ij b_j for the f update, K̄_ij a_i for the g update),
//! and an entry whose logarithm ln K̄_ij + ln w is below `LN_MIN_NORMAL + 2·LOG_RANGE + 3`
//! is stored as 0: multiplied by a scaling ≥ e^−LOG_RANGE it stays a normal number, so the
//! sums never form a subnormal (an x86 core takes ~100 cycles per subnormal operation; at
//! ε = 0.01 on unit-cube clouds that was 90 % of the iteration time), and what is dropped is
//! at most e^(LN_MIN_NORMAL + 3 + 2·LOG_RANGE) of a row sum ≥ e^−LOG_RANGE (f32: e^−24
//! relative, 1/1500 of the last bit). The factors stay tame: whenever
//! some S_i leaves [e^−20, e^20], that half-step is instead done exactly in the log domain
//! and the result absorbed (f̄ ← f, u ← 1, K̄ recomputed). Between absorptions every u, v is
//! within e^±20, so a kernel entry that underflowed at absorption (< e^−87 in f32) could
//! reach at most e^−67 relative to a row sum ≥ e^−20: below f32 resolution, so the result
//! equals the log-domain iteration's to rounding. The symmetric update f ← ½(f + T(f)) of
//! the debiasing terms is u_i ← √(u_i / S_i) with S_i = Σ_j K̄_ij a_j u_j.

use crate::ops::sinkhorn::{padded, Problem};
use crate::real::Real;
use crate::simd::Lanes;

/// |ln S| beyond which a half-step falls back to the log domain and re-absorbs.
const LOG_RANGE: f64 = 20.0;

/// The smallest kept ln(K̄_ij·w) for the scalar type `T` (see the module doc).
fn kept_log<T: Real>() -> T {
    T::from_f64(T::LN_MIN_NORMAL + 2.0 * LOG_RANGE + 3.0)
}

/// e^±LOG_RANGE, the bounds a scaling sum must stay within (checked by a test).
const RANGE_LO: f64 = 2.061_153_622_438_558e-9;
const RANGE_HI: f64 = 4.851_651_954_097_903e8;

/// Absorbed potentials, scalings and the stabilised kernel of one pair at one ε. Every
/// per-point vector is padded to the kernel strides (weight 0, log weight −∞, scaling 1
/// there), so the loops run over whole lane vectors without remainders or branches.
pub(super) struct Absorbed<T> {
    eps: T,
    /// Weights and log weights, padded.
    a: Vec<T>,
    b: Vec<T>,
    la: Vec<T>,
    lb: Vec<T>,
    /// Absorbed potentials `[n]`, `[m]`.
    fbar: Vec<T>,
    gbar: Vec<T>,
    /// Scalings, padded.
    u: Vec<T>,
    v: Vec<T>,
    /// K̄_ij a_i row-major `[n, padded(m)]` (the g update sweeps rows) and K̄_ij b_j
    /// column-major `[m, padded(n)]` (the f update sweeps columns).
    k_rows: Vec<T>,
    k_cols: Vec<T>,
    /// False until the first absorption: the first half-step always runs in the log domain.
    kernel_ready: bool,
    /// Row or column sums of the current half-step (two partial sums per row, see
    /// [`weighted_sums_body`]).
    sums: Vec<T>,
    /// The previous u of a self problem's half-step.
    previous: Vec<T>,
    /// Absorptions done (diagnostics and tests).
    pub absorptions: usize,
}

impl<T: Real> Absorbed<T> {
    /// Start from potentials `f [n]`, `g [m]` at ε. No kernel is formed yet: the first
    /// half-step is taken exactly in the log domain and its result absorbed (starting from
    /// f = g = 0 at a small ε it would leave the scaling range anyway).
    pub fn new(p: &Problem<T>, f: &[T], g: &[T], eps: T) -> Self {
        let (n, m) = (p.n(), p.m());
        let (np, mp) = (padded(n), padded(m));
        let pad = |lw: &[T], len: usize| -> Vec<T> {
            let mut out = vec![T::from_f64(f64::NEG_INFINITY); len];
            out[..lw.len()].copy_from_slice(lw);
            out
        };
        let (la, lb) = (pad(&p.la, np), pad(&p.lb, mp));
        let weight = |lw: &[T]| -> Vec<T> { lw.iter().map(|&l| l.exp()).collect() };
        Absorbed {
            eps,
            a: weight(&la),
            b: weight(&lb),
            la,
            lb,
            fbar: f.to_vec(),
            gbar: g.to_vec(),
            u: vec![T::one(); np],
            v: vec![T::one(); mp],
            k_rows: vec![T::zero(); n * mp],
            k_cols: vec![T::zero(); m * np],
            kernel_ready: false,
            sums: vec![T::zero(); 2 * padded(n.max(m))],
            previous: vec![T::zero(); n],
            absorptions: 0,
        }
    }

    /// f̄ ← f, ḡ ← g, u = v = 1, K̄ recomputed (n·m exponentials).
    fn absorb(&mut self, p: &Problem<T>, f: Vec<T>, g: Vec<T>) {
        let (n, m) = (p.n(), p.m());
        let zero_padded = |x: &[T], len: usize| -> Vec<T> {
            let mut out = vec![T::zero(); len];
            out[..x.len()].copy_from_slice(x);
            out
        };
        let k = Kernel {
            la: &self.la,
            lb: &self.lb,
            a: &self.a,
            b: &self.b,
            f: &f,
            g: &zero_padded(&g, padded(m)),
            c: &p.c,
            inv_eps: T::one() / self.eps,
        };
        stabilised_kernel(crate::simd::isa(), k, &mut self.k_rows, &mut self.k_cols);
        debug_assert_eq!(f.len(), n);
        self.fbar = f;
        self.gbar = g;
        self.u.fill(T::one());
        self.v.fill(T::one());
        self.kernel_ready = true;
        self.absorptions += 1;
    }

    /// Absorb the current potentials if no kernel has been formed yet.
    fn ensure_kernel(&mut self, p: &Problem<T>) {
        if !self.kernel_ready {
            let (f, g) = self.potentials();
            self.absorb(p, f, g);
        }
    }

    /// The potentials f = f̄ + ε ln u, g = ḡ + ε ln v (0 at padded points).
    pub fn potentials(&self) -> (Vec<T>, Vec<T>) {
        let pot = |bar: &[T], s: &[T], w: &[T]| -> Vec<T> {
            (0..bar.len())
                .map(|k| {
                    if w[k] > T::zero() {
                        bar[k] + self.eps * s[k].ln()
                    } else {
                        T::zero()
                    }
                })
                .collect()
        };
        (
            pot(&self.fbar, &self.u, &self.a),
            pot(&self.gbar, &self.v, &self.b),
        )
    }

    /// One half-step in scaling form: S = K̄·(other scalings) (the weights are in the
    /// kernel), then `own = 1/S` (1 at padded points). Returns false, writing nothing to
    /// `own`, when there is no kernel yet or some valid S leaves e^±LOG_RANGE: the caller
    /// then takes the exact log-domain step.
    fn scaling_half_step(
        ready: bool,
        kernel: &[T],
        other: &[T],
        cols: usize,
        own_weights: &[T],
        own: &mut [T],
        sums: &mut [T],
    ) -> bool {
        ready
            && half_step(
                crate::simd::isa(),
                kernel,
                &other[..cols],
                own_weights,
                own,
                sums,
                Update::Reciprocal,
            )
    }

    /// One alternating iteration: f (u_i = 1/Σ_j K̄_ij b_j v_j) then g (v_j = 1/Σ_i K̄_ij a_i u_i).
    pub fn step(&mut self, p: &Problem<T>) {
        let (n, m) = (p.n(), p.m());
        if !Self::scaling_half_step(
            self.kernel_ready,
            &self.k_cols,
            &self.v,
            m,
            &self.a,
            &mut self.u,
            &mut self.sums,
        ) {
            let (f, g) = self.potentials();
            let f_new = self.exact(p, &g, &f, false);
            self.absorb(p, f_new, g);
        }
        if !Self::scaling_half_step(
            self.kernel_ready,
            &self.k_rows,
            &self.u,
            n,
            &self.b,
            &mut self.v,
            &mut self.sums,
        ) {
            let (f, g) = self.potentials();
            let g_new = self.exact(p, &f, &g, true);
            self.absorb(p, f, g_new);
        }
    }

    /// One averaged iteration of a self problem (x = y, a = b): f ← ½(f + T(f)), i.e.
    /// u_i ← √(u_i / S_i) with S_i = Σ_j K̄_ij a_j u_j. Only f̄, u are used (ḡ = f̄, v = u).
    pub fn step_symmetric(&mut self, p: &Problem<T>) {
        let n = p.n();
        self.previous.copy_from_slice(&self.u[..n]);
        let scaled = self.kernel_ready
            && half_step(
                crate::simd::isa(),
                &self.k_cols,
                &self.previous,
                &self.a,
                &mut self.u,
                &mut self.sums,
                Update::SqrtRatio,
            );
        if scaled {
            self.v.copy_from_slice(&self.u);
        } else {
            let (f, _) = self.potentials();
            let t = self.exact(p, &f, &f, false);
            let half = T::from_f64(0.5);
            let f_new: Vec<T> = f.iter().zip(&t).map(|(&a, &b)| half * (a + b)).collect();
            self.absorb(p, f_new.clone(), f_new);
        }
    }

    /// The exact log-domain half-step: the soft-min of `other` (rows when `transposed` is
    /// false: the f update), shifted by the current values `prev`.
    fn exact(&self, p: &Problem<T>, other: &[T], prev: &[T], transposed: bool) -> Vec<T> {
        let rows = if transposed { p.m() } else { p.n() };
        let mut out = vec![T::zero(); rows];
        let mut scratch = vec![T::zero(); 2 * padded(p.n().max(p.m()))];
        p.soft_min(other, self.eps, transposed, prev, &mut out, &mut scratch);
        out
    }

    /// Row-marginal L1 error Σ_i a_i |u_i S_i − 1| of the current iterate (S from the
    /// current v; for a self problem from u): the log-domain Σ_i a_i |exp((f_i − f̃_i)/ε) − 1|.
    pub fn marginal_error(&mut self, p: &Problem<T>, symmetric: bool) -> f64 {
        self.ensure_kernel(p);
        let (n, m) = (p.n(), p.m());
        let (scalings, cols) = if symmetric {
            (&self.u, n)
        } else {
            (&self.v, m)
        };
        weighted_sums_on(
            crate::simd::isa(),
            &self.k_cols,
            self.u.len(),
            &scalings[..cols],
            &mut self.sums,
        );
        (0..n)
            .filter(|&i| self.a[i] > T::zero())
            .map(|i| self.a[i].to_f64() * (self.u[i].to_f64() * self.sums[i].to_f64() - 1.0).abs())
            .sum()
    }

    /// The transport cost ⟨P, C⟩ of the current iterate, P_ij = (K̄_ij a_i)·u_i·v_j·b_j,
    /// from the stored kernel (no exponentials; the entries it dropped weigh < e^−24 of a
    /// row in f32). Row sums in `T`, the total in f64.
    pub fn transport_cost(&mut self, p: &Problem<T>) -> f64 {
        self.ensure_kernel(p);
        let mp = self.v.len();
        let vb: Vec<T> = self.v.iter().zip(&self.b).map(|(&v, &b)| v * b).collect();
        let mut total = 0f64;
        for i in 0..p.n() {
            let (k, c) = (
                &self.k_rows[i * mp..(i + 1) * mp],
                &p.c[i * mp..(i + 1) * mp],
            );
            let row = k
                .iter()
                .zip(c)
                .zip(&vb)
                .fold(T::zero(), |acc, ((&k, &c), &w)| acc + k * c * w);
            total += (row * self.u[i]).to_f64();
        }
        total
    }
}

/// How a half-step turns its sums S into the new scalings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Update {
    /// own ← 1/S (the alternating iterations).
    Reciprocal,
    /// own ← √(own/S) (the averaged update of a self problem).
    SqrtRatio,
}

crate::simd::dispatch! {
    /// One scaling half-step, compiled for `isa`: S = Σ_c kernel[c·stride + ·]·scalings_c
    /// (stride = `own.len()`), then — only if every S with positive own weight is within
    /// e^±LOG_RANGE — `own` updated by `update` (1 where the weight is 0). Returns whether
    /// it was updated.
    fn half_step<T: Real>(
        isa: Isa,
        kernel: &[T],
        scalings: &[T],
        own_weights: &[T],
        own: &mut [T],
        sums: &mut [T],
        update: Update,
    ) -> bool = half_step_lanes::<lanes>;
}

/// The body of [`half_step`]: the sums, then branch-free loops over the padded length (the
/// range test as an integer OR, the update as a select), so that they vectorise.
#[inline(always)]
fn half_step_lanes<T: Real, V: Lanes>(
    kernel: &[T],
    scalings: &[T],
    own_weights: &[T],
    own: &mut [T],
    sums: &mut [T],
    update: Update,
) -> bool {
    let stride = own.len();
    weighted_sums_lanes::<T, V>(kernel, stride, scalings, sums);
    let (sums, weights) = (&sums[..stride], &own_weights[..stride]);
    let (lo, hi) = (T::from_f64(RANGE_LO), T::from_f64(RANGE_HI));
    let outside = sums.iter().zip(weights).fold(0u32, |bad, (&s, &w)| {
        bad | ((w > T::zero()) & !((s > lo) & (s < hi))) as u32
    });
    if outside != 0 {
        return false;
    }
    let zero = T::zero();
    match update {
        Update::Reciprocal => {
            for ((o, &w), &s) in own.iter_mut().zip(weights).zip(sums) {
                let r = T::one() / s;
                *o = if w > zero { r } else { T::one() };
            }
        }
        Update::SqrtRatio => {
            for ((o, &w), &s) in own.iter_mut().zip(weights).zip(sums) {
                let r = (*o / s).sqrt();
                *o = if w > zero { r } else { T::one() };
            }
        }
    }
    true
}

/// What [`stabilised_kernel`] reads: padded weights and log weights (0 and −∞ at padded
/// points; `a`, `la` of length padded(n), `b`, `lb`, `g` of padded(m)), the potentials to
/// absorb (`f [n]`), the cost `c [n, padded(m)]` and 1/ε.
#[derive(Clone, Copy)]
struct Kernel<'a, T> {
    la: &'a [T],
    lb: &'a [T],
    a: &'a [T],
    b: &'a [T],
    f: &'a [T],
    g: &'a [T],
    c: &'a [T],
    inv_eps: T,
}

crate::simd::dispatch! {
    /// K̄_ij = exp((f_i + g_j − C_ij)/ε) times a_i into `k_rows` `[n, padded(m)]` and times
    /// b_j into `k_cols` `[m, padded(n)]`, 0 where the logarithm of the product is below
    /// [`kept_log`] (so also where either point is padded), compiled for `isa`.
    fn stabilised_kernel<T: Real>(
        isa: Isa,
        k: Kernel<'_, T>,
        k_rows: &mut [T],
        k_cols: &mut [T],
    ) = stabilised_kernel_body;
}

/// The body of [`stabilised_kernel`]: one exponential per entry, row by row over the padded
/// row (branch-free, whole vectors), then the b-weighted transposed copy.
#[inline(always)]
fn stabilised_kernel_body<T: Real>(k: Kernel<'_, T>, k_rows: &mut [T], k_cols: &mut [T]) {
    let (n, np, mp) = (k.f.len(), k.a.len(), k.b.len());
    let m = k_cols.len() / np;
    let kept = kept_log::<T>();
    let mut by_b = vec![T::zero(); mp];
    for i in 0..n {
        let row = &mut k_rows[i * mp..(i + 1) * mp];
        let cost = &k.c[i * mp..(i + 1) * mp];
        let (fi, la, a) = (k.f[i], k.la[i], k.a[i]);
        for j in 0..mp {
            let arg = (fi + k.g[j] - cost[j]) * k.inv_eps;
            let e = arg.exp_fast();
            row[j] = if arg + la >= kept { e * a } else { T::zero() };
            by_b[j] = if arg + k.lb[j] >= kept {
                e * k.b[j]
            } else {
                T::zero()
            };
        }
        for (j, &v) in by_b[..m].iter().enumerate() {
            k_cols[j * np + i] = v;
        }
    }
}

crate::simd::dispatch! {
    /// `sums[r] = Σ_c kernel[c·stride + r]·scalings_c` for all `stride` rows r at once,
    /// compiled for `isa` (`sums` holds at least 2·stride; see [`weighted_sums_body`]).
    fn weighted_sums_on<T: Real>(
        isa: Isa,
        kernel: &[T],
        stride: usize,
        scalings: &[T],
        sums: &mut [T],
    ) = weighted_sums_lanes::<lanes>;
}

/// The body of [`weighted_sums_on`]: for f32 rows of up to 32 (the jets' clouds) the sums stay
/// in up to eight lane registers while the columns stream past ([`held_sums`]); otherwise
/// [`weighted_sums_body`] updates them in memory. Same operations in the same order, so the
/// same bits.
#[inline(always)]
fn weighted_sums_lanes<T: Real, V: Lanes>(
    kernel: &[T],
    stride: usize,
    scalings: &[T],
    sums: &mut [T],
) {
    if let (Some(k), Some(s), Some(out)) = (
        T::as_f32_slice(kernel),
        T::as_f32_slice(scalings),
        T::as_f32_slice_mut(sums),
    ) {
        match stride {
            8 => return held_sums::<V, 1>(k, stride, s, out),
            16 => return held_sums::<V, 2>(k, stride, s, out),
            24 => return held_sums::<V, 3>(k, stride, s, out),
            32 => return held_sums::<V, 4>(k, stride, s, out),
            _ => {}
        }
    }
    weighted_sums_body(kernel, stride, scalings, sums);
}

/// [`weighted_sums_body`] for f32 with `stride` = 8·R rows held in 2·R lane registers.
#[inline(always)]
fn held_sums<V: Lanes, const R: usize>(
    kernel: &[f32],
    stride: usize,
    scalings: &[f32],
    sums: &mut [f32],
) {
    let (mut even, mut odd) = ([V::zero(); R], [V::zero(); R]);
    let pairs = scalings.len() / 2;
    for c in 0..pairs {
        let (s0, s1) = (V::splat(scalings[2 * c]), V::splat(scalings[2 * c + 1]));
        let cols = &kernel[2 * c * stride..(2 * c + 2) * stride];
        for r in 0..R {
            // multiply, then add: the rounding of the in-memory loop
            even[r] += V::load(&cols[8 * r..]) * s0;
            odd[r] += V::load(&cols[stride + 8 * r..]) * s1;
        }
    }
    if scalings.len() % 2 == 1 {
        let c = scalings.len() - 1;
        let s = V::splat(scalings[c]);
        for (r, e) in even.iter_mut().enumerate() {
            *e += V::load(&kernel[c * stride + 8 * r..]) * s;
        }
    }
    for r in 0..R {
        (even[r] + odd[r]).store(&mut sums[8 * r..]);
    }
}

/// `sums[r] = Σ_c kernel[c·stride + r]·scalings_c` for r < `stride`, in memory: the even
/// columns summed into `sums[..stride]`, the odd ones into `sums[stride..2·stride]` (two
/// independent chains, so the adds overlap), then added. Columns of padded points are zero
/// in the kernel and add nothing.
#[inline(always)]
fn weighted_sums_body<T: Real>(kernel: &[T], stride: usize, scalings: &[T], sums: &mut [T]) {
    let (even, odd) = sums[..2 * stride].split_at_mut(stride);
    even.fill(T::zero());
    odd.fill(T::zero());
    for (c, &s) in scalings.iter().enumerate() {
        let acc = if c % 2 == 0 { &mut *even } else { &mut *odd };
        for (a, &k) in acc.iter_mut().zip(&kernel[c * stride..(c + 1) * stride]) {
            *a += k * s;
        }
    }
    for (e, &o) in even.iter_mut().zip(odd.iter()) {
        *e += o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::sinkhorn::{log_weights, Cost};
    use crate::rng::Rng;
    use crate::simd::Isa;

    fn uniform(rng: &mut Rng) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The plain log-domain alternating iterations, for comparison.
    fn log_domain(p: &Problem<f64>, eps: f64, iters: usize) -> (Vec<f64>, Vec<f64>) {
        let (n, m) = (p.n(), p.m());
        let (mut f, mut g) = (vec![0.0; n], vec![0.0; m]);
        let mut scratch = vec![0.0; 2 * padded(n.max(m))];
        for _ in 0..iters {
            let mut nf = vec![0.0; n];
            p.soft_min(&g, eps, false, &f, &mut nf, &mut scratch);
            f = nf;
            let mut ng = vec![0.0; m];
            p.soft_min(&f, eps, true, &g, &mut ng, &mut scratch);
            g = ng;
        }
        (f, g)
    }

    /// The dispatched loops of the scaled iterations give the same bits on every instruction
    /// set this CPU has (f32 and f64), and the register-held sums the same as the in-memory
    /// ones, for row strides 8 to 40.
    #[test]
    fn scaled_loops_are_the_same_on_every_isa() {
        fn check<T: Real>(rng: &mut Rng, n: usize) {
            let m = 21usize;
            let (np, mp) = (padded(n), padded(m));
            let mut draw = |len: usize| -> Vec<T> {
                (0..len)
                    .map(|_| T::from_f64(uniform(rng) * 3.0 - 1.0))
                    .collect()
            };
            let (f, g, c) = (draw(n), draw(m), draw(n * mp));
            let mut a = draw(n);
            a[3] = T::zero();
            let b: Vec<T> = draw(m).into_iter().map(|v| v.abs()).collect();
            let scalings = draw(m);
            let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            let run = |isa: Isa| {
                let pad = |x: &[T], len: usize, fill: f64| {
                    let mut out = vec![T::from_f64(fill); len];
                    out[..x.len()].copy_from_slice(x);
                    out
                };
                let (la, lb) = (log_weights(&a), log_weights(&b));
                let (la, lb) = (
                    pad(&la, np, f64::NEG_INFINITY),
                    pad(&lb, mp, f64::NEG_INFINITY),
                );
                let (ap, bp) = (pad(&a, np, 0.0), pad(&b, mp, 0.0));
                let gp = pad(&g, mp, 0.0);
                let k = Kernel {
                    la: &la,
                    lb: &lb,
                    a: &ap,
                    b: &bp,
                    f: &f,
                    g: &gp,
                    c: &c,
                    inv_eps: T::from_f64(1.0 / 0.3),
                };
                let (mut rows, mut cols) = (vec![T::zero(); n * mp], vec![T::zero(); m * np]);
                stabilised_kernel(isa, k, &mut rows, &mut cols);
                let mut sums = vec![T::zero(); 2 * np];
                weighted_sums_on(isa, &cols, np, &scalings, &mut sums);
                let mut in_memory = vec![T::zero(); 2 * np];
                weighted_sums_body(&cols, np, &scalings, &mut in_memory);
                assert_eq!(
                    bits(&sums[..np]),
                    bits(&in_memory[..np]),
                    "{isa}, n {n}: held vs in-memory"
                );
                (bits(&rows), bits(&cols), bits(&sums[..np]))
            };
            let reference = run(Isa::PORTABLE);
            for isa in Isa::available() {
                assert_eq!(run(isa), reference, "{isa}, n {n}");
            }
        }
        let mut rng = Rng::new(3);
        for n in [5, 13, 21, 30, 37] {
            check::<f32>(&mut rng, n);
            check::<f64>(&mut rng, n);
        }
    }

    #[test]
    fn range_bounds_are_e_to_the_range() {
        assert_eq!(RANGE_LO, (-LOG_RANGE).exp());
        assert_eq!(RANGE_HI, LOG_RANGE.exp());
    }

    #[test]
    fn scaled_iterations_equal_log_domain_ones() {
        let mut rng = Rng::new(7);
        let (n, m, d) = (13, 21, 3);
        // the second cloud shifted far away: costs ≫ ε, the first half-steps must fall back
        let x: Vec<f64> = (0..n * d).map(|_| uniform(&mut rng)).collect();
        let y: Vec<f64> = (0..m * d).map(|_| uniform(&mut rng) + 2.0).collect();
        let mut a: Vec<f64> = (0..n).map(|_| uniform(&mut rng) + 0.1).collect();
        a[4] = 0.0; // a padded point
        let sa: f64 = a.iter().sum();
        a.iter_mut().for_each(|v| *v /= sa);
        let b = vec![1.0 / m as f64; m];
        let p = Problem::new(
            &x,
            &y,
            log_weights(&a),
            log_weights(&b),
            d,
            Cost::SquaredEuclidean,
        );
        for eps in [0.5, 0.05, 0.005] {
            let (f0, g0) = log_domain(&p, eps, 60);
            let mut s = Absorbed::new(&p, &vec![0.0; n], &vec![0.0; m], eps);
            for _ in 0..60 {
                s.step(&p);
            }
            let (f1, g1) = s.potentials();
            for (u, v) in f0.iter().zip(&f1).chain(g0.iter().zip(&g1)) {
                assert!(
                    (u - v).abs() <= 1e-9 * (1.0 + u.abs()),
                    "ε {eps}: {u} vs {v}"
                );
            }
            assert_eq!(f1[4], 0.0);
            if eps < 0.01 {
                assert!(s.absorptions > 1, "ε {eps}: no fallback exercised");
            }
        }
    }
}
