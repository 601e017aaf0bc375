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
//! — one multiply-add per entry instead of an exponential. The factors stay tame: whenever
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

/// Absorbed potentials, scalings and the stabilised kernel of one pair at one ε.
pub(super) struct Absorbed<T> {
    eps: T,
    /// Weights (0 at padded points), padded to the kernel strides.
    a: Vec<T>,
    b: Vec<T>,
    fbar: Vec<T>,
    gbar: Vec<T>,
    u: Vec<T>,
    v: Vec<T>,
    /// K̄ row-major `[n, padded(m)]` (the g update sweeps rows) and column-major
    /// `[m, padded(n)]` (the f update sweeps columns).
    k_rows: Vec<T>,
    k_cols: Vec<T>,
    /// Row or column sums of the current half-step.
    sums: Vec<T>,
    /// Absorptions done (diagnostics and tests).
    pub absorptions: usize,
}

impl<T: Real> Absorbed<T> {
    /// Start from potentials `f [n]`, `g [m]` at ε (absorbs them at once).
    pub fn new(p: &Problem<T>, f: &[T], g: &[T], eps: T) -> Self {
        let (n, m) = (p.n(), p.m());
        let weight = |lw: &[T], len: usize| -> Vec<T> {
            (0..len)
                .map(|k| if k < lw.len() { lw[k].exp() } else { T::zero() })
                .collect()
        };
        let mut s = Absorbed {
            eps,
            a: weight(&p.la, padded(n)),
            b: weight(&p.lb, padded(m)),
            fbar: f.to_vec(),
            gbar: g.to_vec(),
            u: vec![T::one(); n],
            v: vec![T::one(); m],
            k_rows: vec![T::zero(); n * padded(m)],
            k_cols: vec![T::zero(); m * padded(n)],
            sums: vec![T::zero(); padded(n.max(m))],
            absorptions: 0,
        };
        s.absorb(p, f.to_vec(), g.to_vec());
        s
    }

    /// f̄ ← f, ḡ ← g, u = v = 1, K̄ recomputed (n·m exponentials).
    fn absorb(&mut self, p: &Problem<T>, f: Vec<T>, g: Vec<T>) {
        let (n, m) = (p.n(), p.m());
        let k = Kernel {
            a: &self.a[..n],
            b: &self.b[..m],
            f: &f,
            g: &g,
            c: &p.c,
            inv_eps: T::one() / self.eps,
        };
        stabilised_kernel(crate::simd::isa(), k, &mut self.k_rows, &mut self.k_cols);
        self.fbar = f;
        self.gbar = g;
        self.u.iter_mut().for_each(|x| *x = T::one());
        self.v.iter_mut().for_each(|x| *x = T::one());
        self.absorptions += 1;
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

    /// `sums[r] = Σ_c kernel[c·stride + r]·weights_c·scalings_c` for all rows r at once (a
    /// vector update per column c with non-zero weight; rows padded to `stride`).
    fn weighted_sums(
        kernel: &[T],
        stride: usize,
        weights: &[T],
        scalings: &[T],
        cols: usize,
        sums: &mut [T],
    ) {
        weighted_sums_on(
            crate::simd::isa(),
            kernel,
            stride,
            &weights[..cols],
            &scalings[..cols],
            sums,
        );
    }

    /// True when every valid row's sum is within e^±LOG_RANGE.
    fn in_range(sums: &[T], weights: &[T], len: usize) -> bool {
        let (lo, hi) = (
            T::from_f64((-LOG_RANGE).exp()),
            T::from_f64(LOG_RANGE.exp()),
        );
        (0..len).all(|k| weights[k] == T::zero() || (sums[k] > lo && sums[k] < hi))
    }

    /// One half-step in scaling form: S = K̄·(other weights ∘ other scalings), then
    /// `own = 1/S` (1 at padded points). Returns false, writing nothing to `own`, when some
    /// valid S leaves e^±LOG_RANGE: the caller then takes the exact log-domain step.
    fn scaling_half_step(
        kernel: &[T],
        stride: usize,
        other_weights: &[T],
        other: &[T],
        own_weights: &[T],
        own: &mut [T],
        sums: &mut [T],
    ) -> bool {
        Self::weighted_sums(kernel, stride, other_weights, other, other.len(), sums);
        if !Self::in_range(sums, own_weights, own.len()) {
            return false;
        }
        for (k, s) in own.iter_mut().enumerate() {
            *s = if own_weights[k] > T::zero() {
                T::one() / sums[k]
            } else {
                T::one()
            };
        }
        true
    }

    /// One alternating iteration: f (u_i = 1/Σ_j K̄_ij b_j v_j) then g (v_j = 1/Σ_i K̄_ij a_i u_i).
    pub fn step(&mut self, p: &Problem<T>) {
        let n = p.n();
        let m = p.m();
        if !Self::scaling_half_step(
            &self.k_cols,
            padded(n),
            &self.b,
            &self.v,
            &self.a,
            &mut self.u,
            &mut self.sums,
        ) {
            let (f, g) = self.potentials();
            let f_new = self.exact(p, &g, &f, false);
            self.absorb(p, f_new, g);
        }
        if !Self::scaling_half_step(
            &self.k_rows,
            padded(m),
            &self.a,
            &self.u,
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
        Self::weighted_sums(&self.k_cols, padded(n), &self.a, &self.u, n, &mut self.sums);
        if Self::in_range(&self.sums, &self.a, n) {
            for i in 0..n {
                if self.a[i] > T::zero() {
                    self.u[i] = (self.u[i] / self.sums[i]).sqrt();
                }
            }
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
        let n = p.n();
        let (weights, scalings) = if symmetric {
            (&self.a, &self.u)
        } else {
            (&self.b, &self.v)
        };
        let cols = scalings.len();
        Self::weighted_sums(
            &self.k_cols,
            padded(n),
            weights,
            scalings,
            cols,
            &mut self.sums,
        );
        (0..n)
            .filter(|&i| self.a[i] > T::zero())
            .map(|i| self.a[i].to_f64() * (self.u[i].to_f64() * self.sums[i].to_f64() - 1.0).abs())
            .sum()
    }
}

/// What [`stabilised_kernel`] reads: valid-point weights `a [n]`, `b [m]` (0 = padded), the
/// potentials to absorb, the cost `c [n, padded(m)]` and 1/ε.
#[derive(Clone, Copy)]
struct Kernel<'a, T> {
    a: &'a [T],
    b: &'a [T],
    f: &'a [T],
    g: &'a [T],
    c: &'a [T],
    inv_eps: T,
}

crate::simd::dispatch! {
    /// K̄_ij = exp((f_i + g_j − C_ij)/ε) (0 where either point is padded) into `k_rows`
    /// `[n, padded(m)]` and `k_cols` `[m, padded(n)]`, compiled for `isa`.
    fn stabilised_kernel<T: Real>(
        isa: Isa,
        k: Kernel<'_, T>,
        k_rows: &mut [T],
        k_cols: &mut [T],
    ) = stabilised_kernel_body;
}

/// The body of [`stabilised_kernel`]: the exponentials row by row (they vectorise), then the
/// transposed copy.
#[inline(always)]
fn stabilised_kernel_body<T: Real>(k: Kernel<'_, T>, k_rows: &mut [T], k_cols: &mut [T]) {
    let (n, m) = (k.a.len(), k.b.len());
    let (np, mp) = (padded(n), padded(m));
    for i in 0..n {
        let row = &mut k_rows[i * mp..i * mp + m];
        let cost = &k.c[i * mp..i * mp + m];
        if k.a[i] > T::zero() {
            for j in 0..m {
                let v = ((k.f[i] + k.g[j] - cost[j]) * k.inv_eps).exp_fast();
                row[j] = if k.b[j] > T::zero() { v } else { T::zero() };
            }
        } else {
            row.fill(T::zero());
        }
        for j in 0..m {
            k_cols[j * np + i] = row[j];
        }
    }
}

crate::simd::dispatch! {
    /// `sums[r] = Σ_c kernel[c·stride + r]·weights_c·scalings_c` for all rows r at once (a
    /// vector update per column c with non-zero weight), compiled for `isa`.
    fn weighted_sums_on<T: Real>(
        isa: Isa,
        kernel: &[T],
        stride: usize,
        weights: &[T],
        scalings: &[T],
        sums: &mut [T],
    ) = weighted_sums_lanes::<lanes>;
}

/// The body of [`weighted_sums_on`]: for f32 rows of up to 32 (the jets' clouds) the sums stay
/// in up to four lane registers while the columns stream past ([`held_sums`]); otherwise
/// [`weighted_sums_body`] updates them in memory. Same operations in the same order, so the
/// same bits.
#[inline(always)]
fn weighted_sums_lanes<T: Real, V: Lanes>(
    kernel: &[T],
    stride: usize,
    weights: &[T],
    scalings: &[T],
    sums: &mut [T],
) {
    let f32s = (
        T::as_f32_slice(kernel),
        T::as_f32_slice(weights),
        T::as_f32_slice(scalings),
    );
    if let ((Some(k), Some(w), Some(s)), Some(out)) = (f32s, T::as_f32_slice_mut(sums)) {
        match stride {
            8 => return held_sums::<V, 1>(k, stride, w, s, out),
            16 => return held_sums::<V, 2>(k, stride, w, s, out),
            24 => return held_sums::<V, 3>(k, stride, w, s, out),
            32 => return held_sums::<V, 4>(k, stride, w, s, out),
            _ => {}
        }
    }
    weighted_sums_body(kernel, stride, weights, scalings, sums);
}

/// [`weighted_sums_body`] for f32 with `stride` = 8·R rows held in R lane registers.
#[inline(always)]
fn held_sums<V: Lanes, const R: usize>(
    kernel: &[f32],
    stride: usize,
    weights: &[f32],
    scalings: &[f32],
    sums: &mut [f32],
) {
    let mut acc = [V::zero(); R];
    for (c, (&w, &s)) in weights.iter().zip(scalings).enumerate() {
        if w != 0.0 {
            let wc = V::splat(w * s);
            let col = &kernel[c * stride..(c + 1) * stride];
            for (r, a) in acc.iter_mut().enumerate() {
                // multiply, then add: the rounding of `*s += k * wc` below
                *a += V::load(&col[8 * r..]) * wc;
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        a.store(&mut sums[8 * r..]);
    }
}

/// `sums[r] = Σ_c kernel[c·stride + r]·weights_c·scalings_c`, the sums updated in memory.
#[inline(always)]
fn weighted_sums_body<T: Real>(
    kernel: &[T],
    stride: usize,
    weights: &[T],
    scalings: &[T],
    sums: &mut [T],
) {
    let sums = &mut sums[..stride];
    sums.fill(T::zero());
    for (c, (&w, &s)) in weights.iter().zip(scalings).enumerate() {
        if w != T::zero() {
            let wc = w * s;
            for (s, &k) in sums.iter_mut().zip(&kernel[c * stride..(c + 1) * stride]) {
                *s += k * wc;
            }
        }
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
                let k = Kernel {
                    a: &a,
                    b: &b,
                    f: &f,
                    g: &g,
                    c: &c,
                    inv_eps: T::from_f64(1.0 / 0.3),
                };
                let (mut rows, mut cols) = (vec![T::zero(); n * mp], vec![T::zero(); m * np]);
                stabilised_kernel(isa, k, &mut rows, &mut cols);
                let mut sums = vec![T::zero(); np];
                weighted_sums_on(isa, &cols, np, &b, &scalings, &mut sums);
                let mut in_memory = vec![T::zero(); np];
                weighted_sums_body(&cols, np, &b, &scalings, &mut in_memory);
                assert_eq!(
                    bits(&sums),
                    bits(&in_memory),
                    "{isa}, n {n}: held vs in-memory"
                );
                (bits(&rows), bits(&cols), bits(&sums))
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
