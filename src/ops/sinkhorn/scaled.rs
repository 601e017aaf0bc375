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
//!
//! The exact step and its absorption share one pass of exponentials
//! ([`Absorbed::exact_absorbed`]): the soft-min's terms are the new kernel up to a factor
//! per row and per column, and only rows where an underflowed term could hide a kept entry
//! of the other half-step's kernel are formed again directly. Each ε of an ε-scaling
//! schedule starts this way ([`Absorbed::restart`]), so an annealing step costs one pass of
//! exponentials and one scaled half-step.
//!
//! Counted against the roofline (issue 18, B = 256, N = M = 30, ε = 0.01, 100 iterations,
//! both threads of the Zen 5 VM): 13–24 % of the bound in session 13. The half-steps take
//! about half the time. For f32 rows of up to 32 they are one fused pass, with fused
//! multiply-add sums held in registers, and run at ~85 cycles against 60 cycles of FMA
//! throughput; the 15-deep chains and the divide/sqrt epilogue cost the rest. The pass of
//! exponentials (~17 %), the cost matrices (~7 %) and per-pair work make up the remainder.

use crate::ops::sinkhorn::{padded, Problem};
use crate::real::Real;
use crate::simd::{Lanes, Mask};

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
    /// Buffers of the exact half-steps, kept between pairs (see [`Absorbed::reset`]).
    work: ExactWork<T>,
    /// Absorptions done (diagnostics and tests).
    pub absorptions: usize,
}

/// The buffers of [`Absorbed::exact_absorbed`]: the current potentials, the soft-min's
/// result and its shifts and sums, the row factors and validity (padded) and the column
/// factors, and one column of the transposed kernel.
struct ExactWork<T> {
    f: Vec<T>,
    g: Vec<T>,
    soft: Vec<T>,
    scratch: Vec<T>,
    row: Vec<T>,
    row_valid: Vec<T>,
    col: Vec<T>,
    column: Vec<T>,
}

impl<T> Default for ExactWork<T> {
    fn default() -> Self {
        ExactWork {
            f: Vec::new(),
            g: Vec::new(),
            soft: Vec::new(),
            scratch: Vec::new(),
            row: Vec::new(),
            row_valid: Vec::new(),
            col: Vec::new(),
            column: Vec::new(),
        }
    }
}

/// `v` ← `len` copies of `value`, reusing its allocation.
fn refill<T: Copy>(v: &mut Vec<T>, len: usize, value: T) {
    v.clear();
    v.resize(len, value);
}

impl<T: Real> Absorbed<T> {
    /// Start from potentials `f [n]`, `g [m]` at ε. No kernel is formed yet: the first
    /// half-step is taken exactly in the log domain and its result absorbed (starting from
    /// f = g = 0 at a small ε it would leave the scaling range anyway).
    #[cfg(test)]
    pub fn new(p: &Problem<T>, f: &[T], g: &[T], eps: T) -> Self {
        let mut state = Self::empty();
        state.reset(p, f, g, eps);
        state
    }

    /// A state with no buffers yet, for [`Absorbed::reset`].
    pub fn empty() -> Self {
        Absorbed {
            eps: T::one(),
            a: Vec::new(),
            b: Vec::new(),
            la: Vec::new(),
            lb: Vec::new(),
            fbar: Vec::new(),
            gbar: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
            k_rows: Vec::new(),
            k_cols: Vec::new(),
            kernel_ready: false,
            sums: Vec::new(),
            previous: Vec::new(),
            work: ExactWork::default(),
            absorptions: 0,
        }
    }

    /// [`Absorbed::new`] in place, reusing every buffer (one state serves all the pairs a
    /// thread solves, so a pair costs no allocations once the buffers have grown).
    pub fn reset(&mut self, p: &Problem<T>, f: &[T], g: &[T], eps: T) {
        let (n, m) = (p.n(), p.m());
        let (np, mp) = (padded(n), padded(m));
        let ninf = T::from_f64(f64::NEG_INFINITY);
        for (lw, w, src, len) in [
            (&mut self.la, &mut self.a, &p.la, np),
            (&mut self.lb, &mut self.b, &p.lb, mp),
        ] {
            refill(lw, len, ninf);
            lw[..src.len()].copy_from_slice(src);
            w.clear();
            w.extend(lw.iter().map(|&l| l.exp()));
        }
        self.eps = eps;
        self.fbar.clear();
        self.fbar.extend_from_slice(f);
        self.gbar.clear();
        self.gbar.extend_from_slice(g);
        refill(&mut self.u, np, T::one());
        refill(&mut self.v, mp, T::one());
        refill(&mut self.k_rows, n * mp, T::zero());
        refill(&mut self.k_cols, m * np, T::zero());
        self.kernel_ready = false;
        refill(&mut self.sums, 2 * padded(n.max(m)), T::zero());
        refill(&mut self.previous, n, T::zero());
        self.absorptions = 0;
    }

    /// Continue at another ε from the current potentials: f̄ ← f, ḡ ← g, u = v = 1, and no
    /// kernel until the next half-step (taken exactly, forming the kernel at the new ε).
    pub fn restart(&mut self, eps: T) {
        let mut work = std::mem::take(&mut self.work);
        self.potentials_into(&mut work.f, &mut work.g);
        std::mem::swap(&mut self.fbar, &mut work.f);
        std::mem::swap(&mut self.gbar, &mut work.g);
        self.work = work;
        self.eps = eps;
        self.u.fill(T::one());
        self.v.fill(T::one());
        self.kernel_ready = false;
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

    /// [`Absorbed::potentials`] into reused buffers.
    fn potentials_into(&self, f: &mut Vec<T>, g: &mut Vec<T>) {
        for (out, bar, s, w) in [
            (f, &self.fbar, &self.u, &self.a),
            (g, &self.gbar, &self.v, &self.b),
        ] {
            out.clear();
            out.extend((0..bar.len()).map(|k| {
                if w[k] > T::zero() {
                    bar[k] + self.eps * s[k].ln_fast()
                } else {
                    T::zero()
                }
            }));
        }
    }

    /// The potentials f = f̄ + ε ln u, g = ḡ + ε ln v (0 at padded points).
    pub fn potentials(&self) -> (Vec<T>, Vec<T>) {
        let (mut f, mut g) = (Vec::new(), Vec::new());
        self.potentials_into(&mut f, &mut g);
        (f, g)
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
            self.exact_absorbed(p, Side::F);
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
            self.exact_absorbed(p, Side::G);
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
            self.exact_absorbed(p, Side::Symmetric);
        }
    }

    /// The exact log-domain half-step of `side` and the absorption of its result, with one
    /// exponential per entry for both (absorbing separately would take a second pass).
    ///
    /// The soft-min keeps its terms e_rc = exp(lw_c + (h_c − C_rc)/ε − s_r) (r the updated
    /// side's points, c the other side's, h the other potential, s_r the row's shift) in the
    /// kernel of the same layout, with e_rc/S_r = exp(lw_c + (h_c + h'_r − C_rc)/ε) for the
    /// new potential h'_r = −ε(s_r + ln S_r). So the new stabilised kernel is
    /// K̄_rc = e_rc·R_r·X_c/w_c with R_r = 1/S_r (for the averaged update of a self problem,
    /// R_r = exp(h'_r/ε + s_r)) and X_c = 1 (a self problem: X_c = exp((h'_c − h_c)/ε), the
    /// other side moves too). The kernel of the same layout stores K̄·w_c = e·R·X, the other
    /// one K̄·w_r; both with the kept-entry rule of [`stabilised_kernel`] (an entry below
    /// e^[`kept_log`] is 0) and 0 at padded points.
    fn exact_absorbed(&mut self, p: &Problem<T>, side: Side) {
        let mut work = std::mem::take(&mut self.work);
        self.potentials_into(&mut work.f, &mut work.g);
        let ExactWork {
            f,
            g,
            soft,
            scratch,
            row,
            row_valid,
            col,
            column,
        } = &mut work;
        let (own, other, transposed) = match side {
            Side::F => (&*f, &*g, false),
            Side::G => (&*g, &*f, true),
            Side::Symmetric => (&*f, &*f, false),
        };
        let (rows, cols) = (own.len(), other.len());
        let stride = padded(rows);
        let (own_lw, other_lw, own_w, other_w, same, across) = if transposed {
            (
                &self.lb,
                &self.la,
                &self.b,
                &self.a,
                &mut self.k_rows,
                &mut self.k_cols,
            )
        } else {
            (
                &self.la,
                &self.lb,
                &self.a,
                &self.b,
                &mut self.k_cols,
                &mut self.k_rows,
            )
        };
        refill(soft, rows, T::zero());
        refill(scratch, 2 * stride, T::zero());
        p.soft_min(
            other,
            self.eps,
            transposed,
            own,
            soft,
            scratch,
            Some(&mut same[..]),
        );
        let (shift, sums) = scratch.split_at(stride);
        let inv_eps = T::one() / self.eps;
        let zero = T::zero();
        let ninf = T::from_f64(f64::NEG_INFINITY);
        if side == Side::Symmetric {
            let half = T::from_f64(0.5);
            soft.iter_mut()
                .zip(own)
                .for_each(|(t, &o)| *t = half * (o + *t));
        }
        let new_own = &*soft;
        refill(row, stride, zero);
        refill(row_valid, stride, zero);
        for r in (0..rows).filter(|&r| own_lw[r] != ninf) {
            row_valid[r] = T::one();
            row[r] = match side {
                Side::Symmetric => (new_own[r] * inv_eps + shift[r]).exp(),
                _ => T::one() / sums[r],
            };
        }
        col.clear();
        col.extend((0..cols).map(|c| match side {
            Side::Symmetric => ((new_own[c] - own[c]) * inv_eps).exp(),
            _ => T::one(),
        }));
        let factors = Factors {
            rows,
            row,
            row_valid,
            own_w,
            col,
            other_w,
            other_lw,
        };
        refill(column, stride, zero);
        absorb_terms(crate::simd::isa(), factors, same, across, column);
        // A term e_rc below the exp cut-off (e^−87.3) is 0, but its entry in `across`,
        // e·R_r·X_c·w_r/w_c, need not be small: where R_r·w_r·max_c(X_c/w_c) > e^40 (a row
        // whose sum was tiny, weights far apart) that row of `across` is formed directly.
        let widest = (0..cols)
            .filter(|&c| other_lw[c] != ninf)
            .map(|c| col[c].ln() - other_lw[c])
            .fold(
                T::from_f64(f64::NEG_INFINITY),
                |m, v| if v > m { v } else { m },
            );
        let limit = T::from_f64(40.0);
        let other_new: &[T] = if side == Side::Symmetric { soft } else { other };
        let (cost, cost_stride) = if transposed {
            (&p.ct, padded(p.n()))
        } else {
            (&p.c, padded(p.m()))
        };
        let kept = T::from_f64(kept_log::<T>().to_f64());
        for r in (0..rows).filter(|&r| row_valid[r] > zero) {
            if row[r].ln() + own_lw[r] + widest <= limit {
                continue;
            }
            let out = &mut across[r * cost_stride..r * cost_stride + cols];
            let c_row = &cost[r * cost_stride..r * cost_stride + cols];
            for (c, o) in out.iter_mut().enumerate() {
                let arg = own_lw[r] + (soft[r] + other_new[c] - c_row[c]) * inv_eps;
                *o = if other_lw[c] != ninf && arg >= kept {
                    arg.exp()
                } else {
                    zero
                };
            }
        }
        // the other side's scalings are reset too, so its ε·ln v goes into its ḡ
        let (fbar, gbar) = match side {
            Side::F => (&*soft, &*g),
            Side::G => (&*f, &*soft),
            Side::Symmetric => (&*soft, &*soft),
        };
        self.fbar.clear();
        self.fbar.extend_from_slice(fbar);
        self.gbar.clear();
        self.gbar.extend_from_slice(gbar);
        self.u.fill(T::one());
        self.v.fill(T::one());
        self.kernel_ready = true;
        self.absorptions += 1;
        self.work = work;
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
        const L: usize = 8;
        let vb = &mut self.work.col;
        vb.clear();
        vb.extend(self.v.iter().zip(&self.b).map(|(&v, &b)| v * b));
        let mut total = 0f64;
        for i in 0..p.n() {
            let (k, c) = (
                &self.k_rows[i * mp..(i + 1) * mp],
                &p.c[i * mp..(i + 1) * mp],
            );
            // eight interleaved partial sums (rows are padded to whole vectors)
            let mut part = [T::zero(); L];
            for ((k, c), w) in k
                .chunks_exact(L)
                .zip(c.chunks_exact(L))
                .zip(vb.chunks_exact(L))
            {
                for l in 0..L {
                    part[l] += k[l] * c[l] * w[l];
                }
            }
            let row = part.iter().fold(T::zero(), |acc, &v| acc + v);
            total += (row * self.u[i]).to_f64();
        }
        total
    }
}

/// Which potential an exact half-step updates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// f (rows) of a pair.
    F,
    /// g (columns) of a pair.
    G,
    /// The averaged update of a self problem (f = g).
    Symmetric,
}

/// What [`absorb_terms`] reads: the updated side's row factors R_r and validity (1 or 0),
/// padded to the stride, and weights (padded); the other side's factors X_c, weights and log
/// weights (−∞ = padded point).
#[derive(Clone, Copy)]
struct Factors<'a, T> {
    rows: usize,
    row: &'a [T],
    row_valid: &'a [T],
    own_w: &'a [T],
    col: &'a [T],
    other_w: &'a [T],
    other_lw: &'a [T],
}

crate::simd::dispatch! {
    /// The two stabilised kernels from a soft-min's terms (see [`Absorbed::exact_absorbed`]):
    /// `same [cols, stride]` ← keep(e_rc·R_r·X_c) in place, and `across [rows, padded(cols)]`
    /// ← keep(that/w_c·w_r), 0 at padded points of either side; compiled for `isa`.
    fn absorb_terms<T: Real>(
        isa: Isa,
        k: Factors<'_, T>,
        same: &mut [T],
        across: &mut [T],
        column_across: &mut [T],
    ) = absorb_terms_lanes::<lanes>;
}

/// The body of [`absorb_terms`]: one pass down each column of `same` as whole vectors (f32) or
/// scalars (f64), the value for `across` from the same product, written transposed.
#[inline(always)]
fn absorb_terms_lanes<T: Real, V: Lanes>(
    k: Factors<'_, T>,
    same: &mut [T],
    across: &mut [T],
    column_across: &mut [T],
) {
    let (stride, cols) = (k.row.len(), k.col.len());
    let other_stride = padded(cols);
    let ninf = T::from_f64(f64::NEG_INFINITY);
    let kept = kept_log::<T>().to_f64().exp();
    for c in 0..cols {
        let column = &mut same[c * stride..(c + 1) * stride];
        if k.other_lw[c] == ninf {
            column.fill(T::zero());
            column_across.fill(T::zero());
        } else if let (Some(col), Some(row), Some(valid), Some(own_w), Some(out)) = (
            T::as_f32_slice_mut(column),
            T::as_f32_slice(k.row),
            T::as_f32_slice(k.row_valid),
            T::as_f32_slice(k.own_w),
            T::as_f32_slice_mut(column_across),
        ) {
            let (x, w) = (
                V::splat(k.col[c].to_f64() as f32),
                V::splat(k.other_w[c].to_f64() as f32),
            );
            let (kept, zero) = (V::splat(kept as f32), V::zero());
            for r in (0..stride).step_by(8) {
                // (a padded own point's term may be +∞: chosen away, not multiplied by 0)
                let ok = V::load(&valid[r..]).gt(zero);
                let v = V::select(ok, V::load(&col[r..]) * V::load(&row[r..]) * x, zero);
                V::select(v.ge(kept), v, zero).store(&mut col[r..]);
                let a = v / w * V::load(&own_w[r..]);
                V::select(a.ge(kept), a, zero).store(&mut out[r..]);
            }
        } else {
            let kept = T::from_f64(kept);
            let keep = |v: T| if v >= kept { v } else { T::zero() };
            for r in 0..stride {
                let v = if k.row_valid[r] > T::zero() {
                    column[r] * k.row[r] * k.col[c]
                } else {
                    T::zero()
                };
                column[r] = keep(v);
                column_across[r] = keep(v / k.other_w[c] * k.own_w[r]);
            }
        }
        for r in 0..k.rows {
            across[r * other_stride + c] = column_across[r];
        }
    }
    for r in 0..k.rows {
        across[r * other_stride + cols..(r + 1) * other_stride].fill(T::zero());
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

/// The body of [`half_step`]. For f32 rows of up to 32 (the jets' clouds) it is one pass
/// with the sums in registers ([`held_half_step`]); otherwise the sums, then branch-free loops
/// over the padded length (the range test as an integer OR, the update as a select), so that
/// they vectorise. Both give the same bits.
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
    if let (Some(k), Some(s), Some(w), Some(o)) = (
        T::as_f32_slice(kernel),
        T::as_f32_slice(scalings),
        T::as_f32_slice(own_weights),
        T::as_f32_slice_mut(own),
    ) {
        let held = HeldStep {
            kernel: k,
            scalings: s,
            weights: w,
            update,
        };
        match stride {
            8 => return held.run::<V, 1>(o),
            16 => return held.run::<V, 2>(o),
            24 => return held.run::<V, 3>(o),
            32 => return held.run::<V, 4>(o),
            _ => {}
        }
    }
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

/// One f32 half-step with its rows held in lane registers: what [`half_step`] reads.
struct HeldStep<'a> {
    kernel: &'a [f32],
    scalings: &'a [f32],
    weights: &'a [f32],
    update: Update,
}

impl HeldStep<'_> {
    /// The half-step for `own.len()` = 8·R rows: the sums of [`held_sums`] stay in registers,
    /// the range test and the update follow on them, and `own` is written only if every
    /// valid sum is in range. The same operations as the in-memory path, so the same bits.
    #[inline(always)]
    fn run<V: Lanes, const R: usize>(&self, own: &mut [f32]) -> bool {
        let sums = held_sums::<V, R>(self.kernel, 8 * R, self.scalings);
        let (lo, hi, zero, one) = (
            V::splat(RANGE_LO as f32),
            V::splat(RANGE_HI as f32),
            V::zero(),
            V::splat(1.0),
        );
        let valid: [_; R] = std::array::from_fn(|r| V::load(&self.weights[8 * r..]).gt(zero));
        let mut outside = 0u32;
        for (s, v) in sums.iter().zip(&valid) {
            outside |= v.bits() & !s.gt(lo).and(s.lt(hi)).bits();
        }
        if outside != 0 {
            return false;
        }
        for (r, (&s, &v)) in sums.iter().zip(&valid).enumerate() {
            let slot = &mut own[8 * r..8 * r + 8];
            let new = match self.update {
                Update::Reciprocal => one / s,
                Update::SqrtRatio => (V::load(slot) / s).sqrt(),
            };
            V::select(v, new, one).store(slot);
        }
        true
    }
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
    ) = stabilised_kernel_lanes::<lanes>;
}

/// [`stabilised_kernel_body`] with explicit lanes for f32 (the compiler leaves the body's
/// exponentials scalar): the same operations in the same order ([`Lanes::exp`] is the twin of
/// the scalar one), so the same bits. Rows go in blocks of eight so that the b-weighted copy
/// is written to `k_cols` as whole vectors of eight rows.
#[inline(always)]
fn stabilised_kernel_lanes<T: Real, V: Lanes>(
    k: Kernel<'_, T>,
    k_rows: &mut [T],
    k_cols: &mut [T],
) {
    let f32s = (
        T::as_f32_slice(k.la),
        T::as_f32_slice(k.lb),
        T::as_f32_slice(k.a),
        T::as_f32_slice(k.b),
        T::as_f32_slice(k.f),
        T::as_f32_slice(k.g),
        T::as_f32_slice(k.c),
        T::as_f32_slice_mut(k_rows),
        T::as_f32_slice_mut(k_cols),
    );
    let (Some(la), Some(lb), Some(a), Some(b), Some(f), Some(g), Some(c), Some(rows), Some(cols)) =
        f32s
    else {
        return stabilised_kernel_body(k, k_rows, k_cols);
    };
    let (n, np, mp) = (f.len(), a.len(), b.len());
    let m = cols.len() / np;
    let inv_eps = V::splat(k.inv_eps.to_f64() as f32);
    let (kept, zero) = (V::splat(kept_log::<f32>()), V::zero());
    let ninf = V::splat(f32::NEG_INFINITY);
    // the b-weighted values of eight rows, row-major, then stored transposed
    let mut block = vec![0f32; 8 * mp];
    for i0 in (0..n).step_by(8) {
        block.fill(0.0);
        for i in i0..(i0 + 8).min(n) {
            let (fi, lai, ai) = (V::splat(f[i]), V::splat(la[i]), V::splat(a[i]));
            let out = &mut block[(i - i0) * mp..(i - i0 + 1) * mp];
            for j in (0..mp).step_by(8) {
                let arg = (fi + V::load(&g[j..]) - V::load(&c[i * mp + j..])) * inv_eps;
                let e = arg.exp();
                // select, then multiply: a dropped entry times its weight could be subnormal
                let (lbj, bj) = (V::load(&lb[j..]), V::load(&b[j..]));
                // 0 in padded columns too: an overflowing entry there must not meet b_j = 0
                let keep_row = (arg + lai).ge(kept).and(lbj.gt(ninf));
                (V::select(keep_row, e, zero) * ai).store(&mut rows[i * mp + j..]);
                (V::select((arg + lbj).ge(kept), e, zero) * bj).store(&mut out[j..]);
            }
        }
        for j in 0..m {
            let col = &mut cols[j * np + i0..j * np + i0 + 8];
            for (r, v) in col.iter_mut().enumerate() {
                *v = block[r * mp + j];
            }
        }
    }
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
            // choose, then multiply (a dropped entry times its weight could be subnormal)
            let keep_row = arg + la >= kept && k.lb[j] > T::from_f64(f64::NEG_INFINITY);
            row[j] = if keep_row { e } else { T::zero() } * a;
            by_b[j] = if arg + k.lb[j] >= kept { e } else { T::zero() } * k.b[j];
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

/// The body of [`weighted_sums_on`]. For f32 the products are fused multiply-adds, and the
/// rows go in blocks of up to 32 whose sums stay in up to eight lane registers while the
/// columns stream past ([`held_sums`]; one block for the jets' clouds). Each row's chains do
/// the same operations in the same order as with the sums in memory, so the bits do not
/// depend on the blocking. f64 takes [`weighted_sums_body`].
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
        // blocks of up to 32 rows, each held in registers while all columns stream past
        for r0 in (0..stride).step_by(32) {
            let block = &k[r0..];
            let held: &[V] = match (stride - r0).min(32) {
                8 => &held_sums::<V, 1>(block, stride, s),
                16 => &held_sums::<V, 2>(block, stride, s),
                24 => &held_sums::<V, 3>(block, stride, s),
                _ => &held_sums::<V, 4>(block, stride, s),
            };
            for (r, v) in held.iter().enumerate() {
                v.store(&mut out[r0 + 8 * r..]);
            }
        }
        return;
    }
    weighted_sums_body(kernel, stride, scalings, sums);
}

/// `Σ_c kernel[c·stride + r]·scalings_c` for the `stride` = 8·R rows, in 2·R lane registers:
/// the even columns in one chain per vector, the odd ones in another (so the fused
/// multiply-adds overlap), added at the end.
#[inline(always)]
fn held_sums<V: Lanes, const R: usize>(kernel: &[f32], stride: usize, scalings: &[f32]) -> [V; R] {
    let (mut even, mut odd) = ([V::zero(); R], [V::zero(); R]);
    let pairs = scalings.len() / 2;
    for c in 0..pairs {
        let (s0, s1) = (V::splat(scalings[2 * c]), V::splat(scalings[2 * c + 1]));
        // the two columns' first 8·R rows (`kernel` may start inside a column: a row block)
        let cols = &kernel[2 * c * stride..(2 * c + 1) * stride + 8 * R];
        for r in 0..R {
            even[r] = V::load(&cols[8 * r..]).mul_add(s0, even[r]);
            odd[r] = V::load(&cols[stride + 8 * r..]).mul_add(s1, odd[r]);
        }
    }
    if scalings.len() % 2 == 1 {
        let c = scalings.len() - 1;
        let s = V::splat(scalings[c]);
        for (r, e) in even.iter_mut().enumerate() {
            *e = V::load(&kernel[c * stride + 8 * r..]).mul_add(s, *e);
        }
    }
    std::array::from_fn(|r| even[r] + odd[r])
}

/// [`held_sums`] for any `stride` (a multiple of 8) with the partial sums in memory:
/// `sums[..stride]` the even chain, `sums[stride..2·stride]` the odd one; the reference the
/// register-blocked sums are tested against.
#[cfg(test)]
fn in_memory_sums<V: Lanes>(kernel: &[f32], stride: usize, scalings: &[f32], sums: &mut [f32]) {
    let (even, odd) = sums[..2 * stride].split_at_mut(stride);
    even.fill(0.0);
    odd.fill(0.0);
    for (c, &s) in scalings.iter().enumerate() {
        let acc = if c % 2 == 0 { &mut *even } else { &mut *odd };
        let (col, s) = (&kernel[c * stride..(c + 1) * stride], V::splat(s));
        for r in (0..stride).step_by(8) {
            V::load(&col[r..])
                .mul_add(s, V::load(&acc[r..]))
                .store(&mut acc[r..]);
        }
    }
    for r in (0..stride).step_by(8) {
        (V::load(&even[r..]) + V::load(&odd[r..])).store(&mut even[r..]);
    }
}

/// `sums[r] = Σ_c kernel[c·stride + r]·scalings_c` for r < `stride`, in memory, for f64: the
/// even columns summed into `sums[..stride]`, the odd ones into `sums[stride..2·stride]` (two
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
            p.soft_min(&g, eps, false, &f, &mut nf, &mut scratch, None);
            f = nf;
            let mut ng = vec![0.0; m];
            p.soft_min(&f, eps, true, &g, &mut ng, &mut scratch, None);
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
                let (mut body_rows, mut body_cols) =
                    (vec![T::zero(); n * mp], vec![T::zero(); m * np]);
                stabilised_kernel_body(k, &mut body_rows, &mut body_cols);
                assert_eq!(
                    (bits(&rows), bits(&cols)),
                    (bits(&body_rows), bits(&body_cols)),
                    "{isa}, n {n}: lanes vs scalar kernel"
                );
                let mut sums = vec![T::zero(); 2 * np];
                weighted_sums_on(isa, &cols, np, &scalings, &mut sums);
                let mut in_memory = vec![T::zero(); 2 * np];
                match (
                    T::as_f32_slice(&cols),
                    T::as_f32_slice(&scalings),
                    T::as_f32_slice_mut(&mut in_memory),
                ) {
                    (Some(k), Some(s), Some(out)) => {
                        in_memory_sums::<crate::simd::portable::F32x8>(k, np, s, out)
                    }
                    _ => weighted_sums_body(&cols, np, &scalings, &mut in_memory),
                }
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
        for n in [5, 13, 21, 30, 37, 60, 150] {
            check::<f32>(&mut rng, n);
            check::<f64>(&mut rng, n);
        }
    }

    /// The averaged iterations of a self problem (x = y, a = b) in scaling form, with their
    /// fused log-domain fallbacks, equal the log-domain ones f ← ½(f + T(f)).
    #[test]
    fn symmetric_scaled_iterations_equal_log_domain_ones() {
        let mut rng = Rng::new(11);
        let (n, d) = (17, 3);
        let x: Vec<f64> = (0..n * d).map(|_| uniform(&mut rng) * 2.0).collect();
        let mut a: Vec<f64> = (0..n).map(|_| uniform(&mut rng) + 0.1).collect();
        a[6] = 0.0; // a padded point
        let sa: f64 = a.iter().sum();
        a.iter_mut().for_each(|v| *v /= sa);
        let p = Problem::new(
            &x,
            &x,
            log_weights(&a),
            log_weights(&a),
            d,
            Cost::SquaredEuclidean,
        );
        for eps in [0.5, 0.05, 0.002] {
            // a start far from the fixed point (not a constant: that cancels in one step), so
            // that later steps leave the scaling range too
            let mut f0: Vec<f64> = (0..n)
                .map(|i| if a[i] > 0.0 { (i as f64).sin() } else { 0.0 })
                .collect();
            let mut scratch = vec![0.0; 2 * padded(n)];
            let mut t = vec![0.0; n];
            let mut s = Absorbed::new(&p, &f0, &f0, eps);
            for _ in 0..60 {
                p.soft_min(&f0, eps, false, &f0, &mut t, &mut scratch, None);
                f0.iter_mut()
                    .zip(&t)
                    .for_each(|(f, &t)| *f = 0.5 * (*f + t));
                s.step_symmetric(&p);
            }
            let (f1, _) = s.potentials();
            for (u, v) in f0.iter().zip(&f1) {
                assert!(
                    (u - v).abs() <= 1e-9 * (1.0 + u.abs()),
                    "ε {eps}: {u} vs {v}"
                );
            }
            assert_eq!(f1[6], 0.0);
            if eps < 0.01 {
                assert!(s.absorptions > 1, "ε {eps}: no fallback exercised");
            }
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
