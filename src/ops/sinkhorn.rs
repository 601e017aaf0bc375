//! Batched entropic optimal transport by log-domain Sinkhorn iterations, with ε-scaling,
//! the debiased Sinkhorn divergence and envelope-theorem gradients.
//!
//! For each pair b: clouds `x [N, D]`, `y [M, D]` with weights `a [N]`, `b [M]` (zero weight
//! = padded point; Σa must equal Σb, e.g. both 1 — jets use pT fractions), cost C_ij =
//! c(x_i, y_j) with [`Cost`], and the KL-regularised problem
//! ```text
//! OT_ε(a, b) = min_{P ≥ 0, P1 = a, Pᵀ1 = b} ⟨P, C⟩ + ε·KL(P | a⊗b)
//!            = ⟨a, f⟩ + ⟨b, g⟩  at the optimal potentials, P_ij = a_i b_j exp((f_i + g_j − C_ij)/ε)
//! updates (alternating, f first, from f = g = 0):
//!   f_i ← −ε log Σ_j b_j exp((g_j − C_ij)/ε)      g_j ← −ε log Σ_i a_i exp((f_i − C_ij)/ε)
//! S_ε(a, b) = OT_ε(a, b) − ½ OT_ε(a, a) − ½ OT_ε(b, b)            (debiased divergence, ≥ 0)
//! ```
//! The symmetric problems OT_ε(a, a), OT_ε(b, b) use the averaged update f ← ½(f + T(f)).
//! Every log-sum-exp is computed with a running max (online), and padded points enter with
//! log weight −∞, so they contribute exactly nothing; a pair with an empty cloud has value 0.
//! On the CPU every iteration, ε-scaling included, runs in the equivalent absorbed scaling
//! form (`sinkhorn/scaled.rs`: a stabilised kernel formed again whenever a scaling leaves
//! e^±20, with the log-domain update as the fallback and the same pass of exponentials
//! forming the new kernel), which gives the same iterates to rounding without an
//! exponential per entry and iteration. Each rayon worker reuses one such state for all its
//! pairs. The CUDA kernel iterates in the log domain throughout.
//!
//! ε-scaling (optional): one iteration at each ε_k = max(ε, ε_0·s^k), ε_0 = c(diameter of
//! the pair's bounding box), before the iterations at the target ε; a tolerance stops each
//! pair once the row-marginal error Σ_i |Σ_j P_ij − a_i| is below it (checked every 10).
//!
//! What is differentiated: the *values* OT_ε and S_ε, by the envelope theorem at the final
//! potentials (exact at convergence; no backpropagation through iterations):
//! ∇_{x_i} OT = Σ_j P_ij ∇₁c(x_i, y_j), ∇_{y_j} OT = Σ_i P_ij ∇₂c(x_i, y_j), ∂OT/∂a = f, ∂OT/∂b = g
//! (potentials in the gauge the iterations produce; with Σa fixed the constant part is
//! irrelevant), and for S_ε the same minus the self terms: ∇_{x_i} −= Σ_k P^{aa}_ik ∇₁c(x_i, x_k),
//! ∂S/∂a = f − f_aa. The transport cost ⟨P, C⟩ and the plan are returned without gradient.
//!
//! Counted work (operations, transcendentals, bytes) and the roofline bound it gives:
//! [`crate::ops::work::sinkhorn`].

use cudarc::driver::{LaunchConfig, PushKernelArg};
use rayon::prelude::*;

use std::any::Any;

use crate::autograd::{saved_as, CustomForward, CustomOp, Var};
use crate::error::{Error, Result};
use crate::ops::{expect_shape, n_u32};
use crate::real::Real;
use crate::simd::Lanes;
use crate::tensor::{DType, Tensor};
use crate::with_real;

mod scaled;

/// Ground cost between points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// c = ‖x − y‖ (p = 1, the EMD ground distance).
    Euclidean,
    /// c = ‖x − y‖² (the convention of POT and of our reference vectors).
    SquaredEuclidean,
    /// c = ½‖x − y‖² (geomloss' p = 2).
    HalfSquaredEuclidean,
}

impl Cost {
    fn code(self) -> i32 {
        self as i32
    }
    /// c(x, y) for coordinate slices.
    pub fn eval<T: Real>(self, x: &[T], y: &[T]) -> T {
        let sq = x
            .iter()
            .zip(y)
            .fold(T::zero(), |acc, (&a, &b)| acc + (a - b) * (a - b));
        match self {
            Cost::Euclidean => sq.sqrt(),
            Cost::SquaredEuclidean => sq,
            Cost::HalfSquaredEuclidean => T::from_f64(0.5) * sq,
        }
    }
    /// ∂c/∂x_k given the coordinate difference `diff` = x_k − y_k and the cost `c` = c(x, y)
    /// (∇_y c = −∇ₓ c for these costs; 0 at x = y for p = 1, where the cost has a kink).
    pub fn grad<T: Real>(self, diff: T, c: T) -> T {
        match self {
            Cost::SquaredEuclidean => T::from_f64(2.0) * diff,
            Cost::HalfSquaredEuclidean => diff,
            Cost::Euclidean => {
                if c > T::zero() {
                    diff / c
                } else {
                    T::zero()
                }
            }
        }
    }
    /// ∂c/∂x_k ÷ (x_k − y_k) given the cost `c` = c(x, y): 2, 1, or 1/c for p = 1 (0 at
    /// x = y, the kink).
    pub fn grad_factor<T: Real>(self, c: T) -> T {
        match self {
            Cost::SquaredEuclidean => T::from_f64(2.0),
            Cost::HalfSquaredEuclidean => T::one(),
            Cost::Euclidean => {
                if c > T::zero() {
                    T::one() / c
                } else {
                    T::zero()
                }
            }
        }
    }
    /// The cost of a distance `r` (for the ε-scaling start).
    fn of_distance(self, r: f64) -> f64 {
        match self {
            Cost::Euclidean => r,
            Cost::SquaredEuclidean => r * r,
            Cost::HalfSquaredEuclidean => 0.5 * r * r,
        }
    }
}

/// Solver settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SinkhornConfig {
    pub cost: Cost,
    /// Target ε, absolute, in the units of the cost.
    pub epsilon: f64,
    /// Iterations at the target ε (an upper bound when `tolerance` is set).
    pub max_iters: usize,
    /// Stop a pair when its row-marginal L1 error is below this (checked every 10 iterations).
    pub tolerance: Option<f64>,
    /// ε-annealing factor s ∈ (0, 1) (geomloss' `scaling`; 0.7–0.9 recommended), or none.
    pub scaling: Option<f64>,
    /// Also solve OT(a, a), OT(b, b) and return the debiased divergence.
    pub debias: bool,
}

impl SinkhornConfig {
    /// Fixed `iters` iterations at ε, squared Euclidean cost, debiased.
    pub fn new(epsilon: f64, iters: usize) -> Self {
        SinkhornConfig {
            cost: Cost::SquaredEuclidean,
            epsilon,
            max_iters: iters,
            tolerance: None,
            scaling: None,
            debias: true,
        }
    }
    fn validate(&self) -> Result<()> {
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(Error::invalid(format!(
                "Sinkhorn ε must be positive, got {}",
                self.epsilon
            )));
        }
        if let Some(s) = self.scaling {
            if !(s > 0.0 && s < 1.0) {
                return Err(Error::invalid(format!(
                    "ε-scaling factor must be in (0, 1), got {s}"
                )));
            }
        }
        Ok(())
    }
}

/// Everything one batched solve returns (all per pair; `[B]` unless noted).
#[derive(Clone, Debug)]
pub struct SinkhornOutput {
    /// OT_ε(a, b) = ⟨a, f⟩ + ⟨b, g⟩.
    pub ot: Tensor,
    /// Transport cost ⟨P, C⟩ of the entropic plan (POT's `sinkhorn2`).
    pub transport_cost: Tensor,
    /// S_ε(a, b) when debiased.
    pub divergence: Option<Tensor>,
    /// OT_ε(a, a), OT_ε(b, b) when debiased.
    pub ot_aa: Option<Tensor>,
    pub ot_bb: Option<Tensor>,
    /// Potentials `[B, N]`, `[B, M]` (0 at padded points).
    pub f: Tensor,
    pub g: Tensor,
    /// Self-transport potentials when debiased.
    pub f_aa: Option<Tensor>,
    pub g_bb: Option<Tensor>,
    /// Row-marginal L1 error at the end.
    pub marginal_error: Tensor,
    /// Iterations run at the target ε, per pair.
    pub iterations: Vec<u32>,
}

fn check(
    x: &Tensor,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    cfg: &SinkhornConfig,
) -> Result<(usize, usize, usize, usize)> {
    cfg.validate()?;
    if x.ndim() != 3
        || y.ndim() != 3
        || x.shape()[0] != y.shape()[0]
        || x.shape()[2] != y.shape()[2]
    {
        return Err(Error::shape(
            "sinkhorn",
            format!(
                "clouds must be [B, N, D] and [B, M, D], got {:?} and {:?}",
                x.shape(),
                y.shape()
            ),
        ));
    }
    let (bs, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let m = y.shape()[1];
    if a.shape() != [bs, n] || b.shape() != [bs, m] {
        return Err(Error::shape(
            "sinkhorn",
            format!(
                "weights must be [{bs}, {n}] and [{bs}, {m}], got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    for t in [y, a, b] {
        x.same_place("sinkhorn", t)?;
    }
    Tensor::check_all_finite(&[
        ("sinkhorn x", x),
        ("sinkhorn y", y),
        ("sinkhorn a", a),
        ("sinkhorn b", b),
    ])?;
    if x.device().is_cuda() && d > 8 {
        return Err(Error::shape(
            "sinkhorn",
            format!("CUDA Sinkhorn supports D ≤ 8, got {d}"),
        ));
    }
    let (av, bv) = (a.to_vec_f64()?, b.to_vec_f64()?);
    if av.iter().chain(&bv).any(|&w| w < 0.0) {
        return Err(Error::invalid("Sinkhorn weights must be non-negative"));
    }
    for p in 0..bs {
        let (sa, sb): (f64, f64) = (
            av[p * n..(p + 1) * n].iter().sum(),
            bv[p * m..(p + 1) * m].iter().sum(),
        );
        if sa > 0.0 && sb > 0.0 && (sa - sb).abs() > 1e-4 * sa.max(sb) {
            return Err(Error::invalid(format!(
                "pair {p}: total weights differ (Σa = {sa}, Σb = {sb}); normalise them"
            )));
        }
    }
    Ok((bs, n, m, d))
}

/// One transport problem on the CPU: rows (log weights `la`) against columns (log weights
/// `lb`), with the cost matrix computed once: `c` is N × M_pad and `ct` (its transpose)
/// M × N_pad, rows padded with zeros to a multiple of 8 so the vector loops never fall back
/// to a scalar remainder.
pub(super) struct Problem<T> {
    la: Vec<T>,
    lb: Vec<T>,
    c: Vec<T>,
    ct: Vec<T>,
    /// The second cloud coordinate-major, a buffer of the cost computation.
    by_coord: Vec<T>,
}

/// `k` rounded up to a multiple of 8 (one AVX2 vector of f32).
pub(super) fn padded(k: usize) -> usize {
    k.div_ceil(8) * 8
}

/// ln w, or −∞ for a padded point (w = 0).
fn log_weight<T: Real>(v: T) -> T {
    if v > T::zero() {
        v.ln()
    } else {
        T::from_f64(f64::NEG_INFINITY)
    }
}

pub(super) fn log_weights<T: Real>(w: &[T]) -> Vec<T> {
    w.iter().map(|&v| log_weight(v)).collect()
}

impl<T: Real> Problem<T> {
    #[cfg(test)]
    fn new(q: &[T], r: &[T], la: Vec<T>, lb: Vec<T>, d: usize, cost: Cost) -> Self {
        let mut p = Self::empty();
        p.la = la;
        p.lb = lb;
        p.fill_costs(q, r, d, cost);
        p
    }

    /// A problem with no buffers yet, for [`Problem::set`].
    fn empty() -> Self {
        Problem {
            la: Vec::new(),
            lb: Vec::new(),
            c: Vec::new(),
            ct: Vec::new(),
            by_coord: Vec::new(),
        }
    }

    /// The problem of clouds `q`, `r` with weights `wq`, `wr` (log weights −∞ where 0),
    /// reusing this one's buffers (a worker sets one problem per pair).
    fn set(&mut self, q: &[T], r: &[T], wq: &[T], wr: &[T], d: usize, cost: Cost) {
        for (lw, w) in [(&mut self.la, wq), (&mut self.lb, wr)] {
            lw.clear();
            lw.extend(w.iter().map(|&v| log_weight(v)));
        }
        self.fill_costs(q, r, d, cost);
    }

    /// The cost matrices of the current weights' sizes.
    fn fill_costs(&mut self, q: &[T], r: &[T], d: usize, cost: Cost) {
        let (n, m) = (self.la.len(), self.lb.len());
        let (np, mp) = (padded(n), padded(m));
        self.c.resize(n * mp, T::zero());
        self.ct.clear();
        self.ct.resize(m * np, T::zero());
        self.by_coord.resize(d * mp, T::zero());
        cost_matrices(
            crate::simd::isa(),
            &q[..n * d],
            &r[..m * d],
            d,
            cost,
            &mut self.c,
            &mut self.ct,
            &mut self.by_coord,
        );
    }
    fn n(&self) -> usize {
        self.la.len()
    }
    fn m(&self) -> usize {
        self.lb.len()
    }

    /// out_i = −ε log Σ_j exp(lb_j + (g_j − C_ij)/ε) for valid rows i (0 for padded rows),
    /// a stabilised log-sum-exp: Σ_j e^{v_ij − s_i} with the shift s_i = −prev_i/ε taken from
    /// the previous value of the same potential (close to the answer once iterations settle),
    /// and for any row whose sum leaves [1e-17, 1e17] — early iterations, large jumps — the
    /// exact two-pass form (max first, then Σ e^{v − max}). Either way no term overflows and
    /// none that matters in f32 underflows. Rows are short (30–150 points), so the loops sweep
    /// all rows at once for one column at a time (vector operations across rows, padded to
    /// 8, no horizontal reductions). Padded columns are skipped; `transposed` swaps rows and
    /// columns; `scratch` holds at least 2·padded(rows) elements, and on return the shifts
    /// and the sums.
    ///
    /// With `terms` (`[cols, padded(rows)]`, column-major like the cost it reads) every term
    /// e_ij = e^{v_ij − s_i} is kept there (0 in the columns of padded points), and for a row
    /// that took the exact form its terms are e^{v_ij − max}/Σ, its shift −out_i/ε and its
    /// sum 1; so for every valid row, e_ij/sum_i = e^{v_ij + out_i/ε} (what absorbing the
    /// result needs, see `scaled.rs`).
    #[allow(clippy::too_many_arguments)]
    fn soft_min(
        &self,
        g: &[T],
        eps: T,
        transposed: bool,
        prev: &[T],
        out: &mut [T],
        scratch: &mut [T],
        mut terms: Option<&mut [T]>,
    ) {
        // column-major cost for the row update: column j of C is row j of Cᵀ
        let (rows, cols, by_col, row_w, col_w) = if transposed {
            (self.m(), self.n(), &self.c, &self.lb, &self.la)
        } else {
            (self.n(), self.m(), &self.ct, &self.la, &self.lb)
        };
        let inv_eps = T::one() / eps;
        let ninf = T::from_f64(f64::NEG_INFINITY);
        let stride = padded(rows);
        let (shift, sum) = scratch.split_at_mut(stride);
        let sum = &mut sum[..stride];
        for i in 0..stride {
            shift[i] = if i < rows {
                -prev[i] * inv_eps
            } else {
                T::zero()
            };
        }
        column_exp_sums(
            crate::simd::isa(),
            by_col,
            stride,
            &col_w[..cols],
            g,
            inv_eps,
            shift,
            sum,
            terms.as_deref_mut(),
        );
        let (lo, hi) = (T::from_f64(1e-17), T::from_f64(1e17));
        for i in 0..rows {
            out[i] = if row_w[i] == ninf {
                T::zero()
            } else if sum[i] > lo && sum[i] < hi {
                -eps * (shift[i] + sum[i].ln_fast())
            } else {
                // exact two-pass log-sum-exp for this row
                let v = |j: usize| col_w[j] + (g[j] - by_col[j * stride + i]) * inv_eps;
                let valid = || (0..cols).filter(|&j| col_w[j] != ninf);
                let mx = valid().map(v).fold(ninf, |m, x| if x > m { x } else { m });
                let total = valid()
                    .map(|j| (v(j) - mx).exp_fast())
                    .fold(T::zero(), |acc, x| acc + x);
                let value = -eps * (mx + total.ln_fast());
                if let Some(t) = terms.as_deref_mut() {
                    let inv_total = T::one() / total;
                    for j in valid() {
                        t[j * stride + i] = (v(j) - mx).exp_fast() * inv_total;
                    }
                    (shift[i], sum[i]) = (-value * inv_eps, T::one());
                }
                value
            };
        }
    }
}

crate::simd::dispatch! {
    /// The cost matrix `c [n, padded(m)]`, C_ij = c(q_i, r_j) (the same operations in the
    /// same order as [`Cost::eval`], so the same bits), and its transpose `ct [m, padded(n)]`,
    /// zeros in the padding; compiled for `isa`.
    fn cost_matrices<T: Real>(
        isa: Isa,
        q: &[T],
        r: &[T],
        d: usize,
        cost: Cost,
        c: &mut [T],
        ct: &mut [T],
        by_coord: &mut [T],
    ) = cost_matrices_body;
}

/// The body of [`cost_matrices`]: r copied coordinate-major once, then each row of C as
/// whole-vector loops over the padded row.
#[inline(always)]
fn cost_matrices_body<T: Real>(
    q: &[T],
    r: &[T],
    d: usize,
    cost: Cost,
    c: &mut [T],
    ct: &mut [T],
    by_coord: &mut [T],
) {
    let (n, m) = (q.len() / d, r.len() / d);
    let (np, mp) = (padded(n), padded(m));
    by_coord.fill(T::zero());
    for (j, point) in r.chunks_exact(d).enumerate() {
        for (k, &v) in point.iter().enumerate() {
            by_coord[k * mp + j] = v;
        }
    }
    let half = T::from_f64(0.5);
    for (i, point) in q.chunks_exact(d).enumerate() {
        let row = &mut c[i * mp..(i + 1) * mp];
        row.fill(T::zero());
        for (k, &qk) in point.iter().enumerate() {
            for (x, &rk) in row.iter_mut().zip(&by_coord[k * mp..(k + 1) * mp]) {
                let t = qk - rk;
                *x += t * t;
            }
        }
        match cost {
            Cost::SquaredEuclidean => {}
            Cost::Euclidean => row.iter_mut().for_each(|x| *x = x.sqrt()),
            Cost::HalfSquaredEuclidean => row.iter_mut().for_each(|x| *x = half * *x),
        }
        row[m..].fill(T::zero());
        for (j, &v) in row[..m].iter().enumerate() {
            ct[j * np + i] = v;
        }
    }
}

crate::simd::dispatch! {
    /// `sum[i] = Σ_j e^{col_w_j + g_j/ε − C_ij/ε − shift_i}` over the columns j with finite
    /// log weight, all `stride` rows at once per column (`by_col` column-major, rows padded
    /// to `stride`), the loop of [`Problem::soft_min`] compiled for `isa`.
    fn column_exp_sums<T: Real>(
        isa: Isa,
        by_col: &[T],
        stride: usize,
        col_w: &[T],
        g: &[T],
        inv_eps: T,
        shift: &[T],
        sum: &mut [T],
        terms: Option<&mut [T]>,
    ) = column_exp_sums_body;
}

/// The body of [`column_exp_sums`].
#[inline(always)]
fn column_exp_sums_body<T: Real>(
    by_col: &[T],
    stride: usize,
    col_w: &[T],
    g: &[T],
    inv_eps: T,
    shift: &[T],
    sum: &mut [T],
    mut terms: Option<&mut [T]>,
) {
    let ninf = T::from_f64(f64::NEG_INFINITY);
    let (shift, sum) = (&shift[..stride], &mut sum[..stride]);
    sum.fill(T::zero());
    for (j, &w) in col_w.iter().enumerate() {
        let column = terms
            .as_deref_mut()
            .map(|t| &mut t[j * stride..(j + 1) * stride]);
        if w == ninf {
            if let Some(t) = column {
                t.fill(T::zero());
            }
            continue;
        }
        let base = w + g[j] * inv_eps;
        let c = &by_col[j * stride..(j + 1) * stride];
        match column {
            Some(t) => {
                for i in 0..stride {
                    let e = (base - c[i] * inv_eps - shift[i]).exp_fast();
                    t[i] = e;
                    sum[i] += e;
                }
            }
            None => {
                for i in 0..stride {
                    sum[i] += (base - c[i] * inv_eps - shift[i]).exp_fast();
                }
            }
        }
    }
}

/// The ε sequence: annealing steps (if any) then the target.
pub fn epsilon_schedule(cfg: &SinkhornConfig, diameter: f64) -> Vec<f64> {
    let mut eps = Vec::new();
    if let Some(s) = cfg.scaling {
        let mut e = cfg.cost.of_distance(diameter);
        while e > cfg.epsilon {
            eps.push(e);
            e *= s;
        }
    }
    eps
}

fn diameter<T: Real>(q: &[T], r: &[T], d: usize) -> f64 {
    let mut lo = vec![f64::INFINITY; d];
    let mut hi = vec![f64::NEG_INFINITY; d];
    for p in q.chunks_exact(d).chain(r.chunks_exact(d)) {
        for k in 0..d {
            lo[k] = lo[k].min(p[k].to_f64());
            hi[k] = hi[k].max(p[k].to_f64());
        }
    }
    (0..d)
        .map(|k| (hi[k] - lo[k]).max(0.0).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// One solved pair: the potentials, the iterations run at the target ε, the row-marginal
/// error and the transport cost ⟨P, C⟩ (0 for a self problem, where nobody asks for it).
struct Solved<T> {
    f: Vec<T>,
    g: Vec<T>,
    iters: u32,
    err: f64,
    transport_cost: f64,
}

/// Solve one pair. `symmetric`: the self problem (q = r, la = lb) with averaged updates;
/// then g = f.
fn solve<T: Real>(
    p: &Problem<T>,
    cfg: &SinkhornConfig,
    schedule: &[f64],
    symmetric: bool,
    state: &mut scaled::Absorbed<T>,
) -> Solved<T> {
    let (n, m) = (p.n(), p.m());
    // every ε in the absorbed scaling form (same fixed point, no exponentials in the inner
    // loop; see `scaled`): each ε starts with an exact half-step whose one pass of
    // exponentials also forms that ε's kernel, so an annealing step costs one pass, not two
    let (f, g) = (
        vec![T::zero(); n],
        vec![T::zero(); if symmetric { n } else { m }],
    );
    let first = schedule.first().copied().unwrap_or(cfg.epsilon);
    state.reset(p, &f, &g, T::from_f64(first));
    for (k, &e) in schedule.iter().enumerate() {
        if k > 0 {
            state.restart(T::from_f64(e));
        }
        if symmetric {
            state.step_symmetric(p);
        } else {
            state.step(p);
        }
    }
    if !schedule.is_empty() {
        state.restart(T::from_f64(cfg.epsilon));
    }
    let mut iters = 0u32;
    let mut err = f64::NAN;
    for it in 0..cfg.max_iters {
        if symmetric {
            state.step_symmetric(p);
        } else {
            state.step(p);
        }
        iters += 1;
        if let Some(tol) = cfg.tolerance {
            if (it + 1) % 10 == 0 {
                err = state.marginal_error(p, symmetric);
                if err < tol {
                    break;
                }
            }
        }
    }
    if err.is_nan() || cfg.tolerance.is_none() {
        err = state.marginal_error(p, symmetric);
    }
    let transport_cost = if symmetric {
        0.0
    } else {
        state.transport_cost(p)
    };
    let (f, mut g) = state.potentials();
    if symmetric {
        g = f.clone();
    }
    Solved {
        f,
        g,
        iters,
        err,
        transport_cost,
    }
}

/// Dual value ⟨a, f⟩ + ⟨b, g⟩ of a solved pair (f64 sums).
fn dual_value<T: Real>(p: &Problem<T>, f: &[T], g: &[T]) -> f64 {
    let side = |lw: &[T], pot: &[T]| -> f64 {
        lw.iter()
            .zip(pot)
            .filter(|(&l, _)| l != T::from_f64(f64::NEG_INFINITY))
            .map(|(&l, &v)| l.exp().to_f64() * v.to_f64())
            .sum()
    };
    side(&p.la, f) + side(&p.lb, g)
}

/// Solve all pairs; see the module doc.
pub fn sinkhorn(
    x: &Tensor,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    cfg: &SinkhornConfig,
) -> Result<SinkhornOutput> {
    let (bs, n, m, d) = check(x, y, a, b, cfg)?;
    if x.device().is_cuda() {
        return cuda_solve(x, y, a, b, cfg, (bs, n, m, d));
    }
    with_real!(x, T => {
        let (xs, ys, aw, bw) = (x.cpu::<T>()?, y.cpu::<T>()?, a.cpu::<T>()?, b.cpu::<T>()?);
        struct PairResult<T> { f: Vec<T>, g: Vec<T>, faa: Vec<T>, gbb: Vec<T>, vals: [f64; 5], iters: u32 }
        // one scaling state and one problem per worker, reused by all the pairs it solves
        let results: Vec<PairResult<T>> = (0..bs).into_par_iter().map_init(|| (scaled::Absorbed::empty(), Problem::empty()), |(state, problem), pi| {
            let (xq, yr) = (&xs[pi * n * d..(pi + 1) * n * d], &ys[pi * m * d..(pi + 1) * m * d]);
            let (wa, wb) = (&aw[pi * n..(pi + 1) * n], &bw[pi * m..(pi + 1) * m]);
            let empty = wa.iter().all(|&v| v <= T::zero()) || wb.iter().all(|&v| v <= T::zero());
            if empty {
                return PairResult { f: vec![T::zero(); n], g: vec![T::zero(); m], faa: vec![T::zero(); n], gbb: vec![T::zero(); m], vals: [0.0; 5], iters: 0 };
            }
            let schedule = epsilon_schedule(cfg, diameter(xq, yr, d));
            problem.set(xq, yr, wa, wb, d, cfg.cost);
            let Solved { f, g, iters, err, transport_cost: primal } = solve(problem, cfg, &schedule, false, state);
            let ot = dual_value(problem, &f, &g);
            let (mut faa, mut gbb, mut ot_aa, mut ot_bb) = (vec![T::zero(); n], vec![T::zero(); m], 0.0, 0.0);
            if cfg.debias {
                problem.set(xq, xq, wa, wa, d, cfg.cost);
                let f1 = solve(problem, cfg, &schedule, true, state).f;
                ot_aa = dual_value(problem, &f1, &f1);
                problem.set(yr, yr, wb, wb, d, cfg.cost);
                let g1 = solve(problem, cfg, &schedule, true, state).f;
                ot_bb = dual_value(problem, &g1, &g1);
                faa = f1;
                gbb = g1;
            }
            PairResult { f, g, faa, gbb, vals: [ot, primal, ot_aa, ot_bb, err], iters }
        }).collect();
        let col = |k: usize| Tensor::from_cpu_vec(results.iter().map(|r| T::from_f64(r.vals[k])).collect::<Vec<T>>(), &[bs]);
        let cat = |sel: &dyn Fn(&PairResult<T>) -> &Vec<T>, len: usize| Tensor::from_cpu_vec(results.iter().flat_map(|r| sel(r).iter().copied()).collect::<Vec<T>>(), &[bs, len]);
        let (ot, ot_aa, ot_bb) = (col(0)?, col(2)?, col(3)?);
        let divergence = if cfg.debias { Some(divergence_of(&ot, &ot_aa, &ot_bb)?) } else { None };
        Ok(SinkhornOutput {
            ot,
            transport_cost: col(1)?,
            divergence,
            ot_aa: cfg.debias.then_some(ot_aa),
            ot_bb: cfg.debias.then_some(ot_bb),
            f: cat(&|r| &r.f, n)?,
            g: cat(&|r| &r.g, m)?,
            f_aa: if cfg.debias { Some(cat(&|r| &r.faa, n)?) } else { None },
            g_bb: if cfg.debias { Some(cat(&|r| &r.gbb, m)?) } else { None },
            marginal_error: col(4)?,
            iterations: results.iter().map(|r| r.iters).collect(),
        })
    })
}

/// S = OT_ab − ½ OT_aa − ½ OT_bb.
fn divergence_of(ot: &Tensor, aa: &Tensor, bb: &Tensor) -> Result<Tensor> {
    use crate::ops::elementwise::{binary, unary, BinaryOp, UnaryOp};
    let self_terms = unary(UnaryOp::MulScalar(0.5), &binary(BinaryOp::Add, aa, bb)?)?;
    binary(BinaryOp::Sub, ot, &self_terms)
}

/// The entropic plan `[B, N, M]` from solved potentials (for small problems and tests).
pub fn sinkhorn_plan(
    x: &Tensor,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    out: &SinkhornOutput,
    cfg: &SinkhornConfig,
) -> Result<Tensor> {
    let (bs, n, m, d) = check(x, y, a, b, cfg)?;
    let (xs, ys, av, bv, f, g) = (
        x.to_vec_f64()?,
        y.to_vec_f64()?,
        a.to_vec_f64()?,
        b.to_vec_f64()?,
        out.f.to_vec_f64()?,
        out.g.to_vec_f64()?,
    );
    let mut plan = vec![0f64; bs * n * m];
    for p in 0..bs {
        for i in 0..n {
            for j in 0..m {
                if av[p * n + i] > 0.0 && bv[p * m + j] > 0.0 {
                    let c = cfg.cost.eval(
                        &xs[(p * n + i) * d..(p * n + i + 1) * d],
                        &ys[(p * m + j) * d..(p * m + j + 1) * d],
                    );
                    plan[(p * n + i) * m + j] = av[p * n + i]
                        * bv[p * m + j]
                        * ((f[p * n + i] + g[p * m + j] - c) / cfg.epsilon).exp();
                }
            }
        }
    }
    let t = Tensor::from_f64(&plan, &[bs, n, m])?;
    match x.dtype() {
        DType::F64 => Ok(t),
        DType::F32 => t.to_dtype(DType::F32)?.to_device(x.device()),
    }
}

/// One transport plan's gradient terms, for [`plan_gradient`]: the clouds `q [N, D]`,
/// `r [M, D]`, their log weights (−∞ = padded) and potentials, ε, the cost and the factor
/// `scale` applied to every term.
#[derive(Clone, Copy)]
struct PlanTerms<'a, T> {
    q: &'a [T],
    r: &'a [T],
    lwq: &'a [T],
    lwr: &'a [T],
    fq: &'a [T],
    gr: &'a [T],
    eps: T,
    cost: Cost,
    d: usize,
    scale: T,
}

crate::simd::dispatch! {
    /// With P_ij = exp(lwq_i + lwr_j + (fq_i + gr_j − c_ij)/ε): adds scale·Σ_j P_ij ∇₁c(q_i, r_j)
    /// to every row i of `out_q [N, D]` and, when given, scale·Σ_i P_ij ∇₂c(q_i, r_j) (= −the
    /// same terms, for these costs) to every row j of `out_r [M, D]` — both gradients of a
    /// pair from one pass over its plan, one exponential per entry. Padded points get and
    /// give nothing. Compiled for `isa`.
    fn plan_gradient<T: Real>(
        isa: Isa,
        t: PlanTerms<'_, T>,
        out_q: &mut [T],
        out_r: Option<&mut [T]>,
    ) = plan_gradient_body::<lanes>;
}

/// The body of [`plan_gradient`]: r copied coordinate-major and padded to whole vectors once;
/// per row i, branch-free loops over the padded row form the coordinate differences, the
/// costs, the plan and each entry's coefficient w_ij = scale·P_ij·∂c/∂(q−r)/(q−r); the row's
/// own gradient is summed in eight interleaved partial sums (one lane vector), the column
/// gradients are updated as vectors.
#[inline(always)]
fn plan_gradient_body<T: Real, V: Lanes>(
    t: PlanTerms<'_, T>,
    out_q: &mut [T],
    out_r: Option<&mut [T]>,
) {
    const L: usize = 8;
    let d = t.d;
    let (n, m) = (t.lwq.len(), t.lwr.len());
    let mp = padded(m);
    let ninf = T::from_f64(f64::NEG_INFINITY);
    let mut by_coord = vec![T::zero(); d * mp];
    for (j, point) in t.r.chunks_exact(d).enumerate() {
        for (k, &v) in point.iter().enumerate() {
            by_coord[k * mp + j] = v;
        }
    }
    let (mut lwr, mut gr) = (vec![ninf; mp], vec![T::zero(); mp]);
    lwr[..m].copy_from_slice(t.lwr);
    gr[..m].copy_from_slice(&t.gr[..m]);
    let mut diff = vec![T::zero(); d * mp];
    let (mut cost, mut coef) = (vec![T::zero(); mp], vec![T::zero(); mp]);
    let mut col_grad = out_r.as_ref().map(|_| vec![T::zero(); d * mp]);
    let inv_eps = T::one() / t.eps;
    let zero = T::zero();
    for i in (0..n).filter(|&i| t.lwq[i] != ninf) {
        let qi = &t.q[i * d..(i + 1) * d];
        cost.fill(zero);
        for (k, &qk) in qi.iter().enumerate() {
            let (dk, rk) = (
                &mut diff[k * mp..(k + 1) * mp],
                &by_coord[k * mp..(k + 1) * mp],
            );
            for ((dd, &rv), c) in dk.iter_mut().zip(rk).zip(cost.iter_mut()) {
                *dd = qk - rv;
                *c += *dd * *dd;
            }
        }
        if t.cost == Cost::Euclidean {
            cost.iter_mut().for_each(|c| *c = c.sqrt());
        } else if t.cost == Cost::HalfSquaredEuclidean {
            cost.iter_mut().for_each(|c| *c = T::from_f64(0.5) * *c);
        }
        let base = t.lwq[i] + t.fq[i] * inv_eps;
        let lane_slices = (
            T::as_f32_slice(&lwr),
            T::as_f32_slice(&gr),
            T::as_f32_slice(&cost),
            T::as_f32_slice_mut(&mut coef),
        );
        if let (Some(lwr), Some(gr), Some(cost), Some(coef)) = lane_slices {
            let f = |v: T| v.to_f64() as f32;
            let coefs = PlanCoefficients {
                base: f(base),
                inv_eps: f(inv_eps),
                scale: f(t.scale),
                cost: t.cost,
            };
            coefs.row::<V>(lwr, gr, cost, coef);
        } else {
            plan_coefficients_scalar(&t, base, &lwr, &gr, &cost, &mut coef);
        }
        let oi = &mut out_q[i * d..(i + 1) * d];
        for (k, o) in oi.iter_mut().enumerate() {
            let dk = &diff[k * mp..(k + 1) * mp];
            let mut part = [zero; L];
            for (cb, db) in coef.chunks_exact(L).zip(dk.chunks_exact(L)) {
                for l in 0..L {
                    part[l] += cb[l] * db[l];
                }
            }
            *o += part.iter().fold(zero, |acc, &v| acc + v);
            if let Some(cg) = col_grad.as_mut() {
                for ((g, &c), &dv) in cg[k * mp..(k + 1) * mp].iter_mut().zip(&coef).zip(dk) {
                    *g += c * dv;
                }
            }
        }
    }
    if let (Some(out_r), Some(cg)) = (out_r, col_grad) {
        for (j, o) in out_r.chunks_exact_mut(d).enumerate().take(m) {
            for (k, v) in o.iter_mut().enumerate() {
                *v += -cg[k * mp + j];
            }
        }
    }
}

/// One row of plan coefficients w_j = scale·P_ij·∂c/∂(q−r)/(q−r) with
/// P_ij = exp(base + lwr_j + (gr_j − c_ij)/ε), `base` = lwq_i + fq_i/ε; 0 at padded columns.
fn plan_coefficients_scalar<T: Real>(
    t: &PlanTerms<'_, T>,
    base: T,
    lwr: &[T],
    gr: &[T],
    cost: &[T],
    coef: &mut [T],
) {
    let (inv_eps, zero) = (T::one() / t.eps, T::zero());
    let ninf = T::from_f64(f64::NEG_INFINITY);
    for j in 0..coef.len() {
        let arg = base + lwr[j] + (gr[j] - cost[j]) * inv_eps;
        let p = t.scale * arg.exp_fast();
        coef[j] = if lwr[j] == ninf {
            zero
        } else {
            p * t.cost.grad_factor(cost[j])
        };
    }
}

/// The f32 scalars of one row of [`plan_coefficients_scalar`], for its lane twin.
struct PlanCoefficients {
    base: f32,
    inv_eps: f32,
    scale: f32,
    cost: Cost,
}

impl PlanCoefficients {
    /// [`plan_coefficients_scalar`] on lanes (the compiler leaves that loop's exponential
    /// scalar): the same operations in the same order, so the same bits. Slices are padded
    /// to whole vectors.
    #[inline(always)]
    fn row<V: Lanes>(&self, lwr: &[f32], gr: &[f32], cost: &[f32], coef: &mut [f32]) {
        let (base, inv_eps, scale) = (
            V::splat(self.base),
            V::splat(self.inv_eps),
            V::splat(self.scale),
        );
        let (zero, ninf) = (V::zero(), V::splat(f32::NEG_INFINITY));
        for j in (0..coef.len()).step_by(8) {
            let (lw, c) = (V::load(&lwr[j..]), V::load(&cost[j..]));
            let arg = base + lw + (V::load(&gr[j..]) - c) * inv_eps;
            let p = scale * arg.exp();
            let factor = match self.cost {
                Cost::SquaredEuclidean => V::splat(2.0),
                Cost::HalfSquaredEuclidean => V::splat(1.0),
                Cost::Euclidean => V::select(c.gt(zero), V::splat(1.0) / c, zero),
            };
            V::select(lw.eq(ninf), zero, p * factor).store(&mut coef[j..]);
        }
    }
}

/// Gradients of L = Σ_p g_p V_p, V = OT_ε (or S_ε when `divergence`), w.r.t. (x, y, a, b).
pub fn sinkhorn_backward(
    x: &Tensor,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    out: &SinkhornOutput,
    cfg: &SinkhornConfig,
    divergence: bool,
    g: &Tensor,
) -> Result<[Tensor; 4]> {
    const OP: &str = "sinkhorn_backward";
    if x.ndim() != 3 || y.ndim() != 3 {
        return Err(Error::shape(
            OP,
            format!(
                "clouds must be [B, N, D], got {:?} and {:?}",
                x.shape(),
                y.shape()
            ),
        ));
    }
    let (bs, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let m = y.shape()[1];
    expect_shape(OP, "y", y.shape(), &[bs, m, d])?;
    expect_shape(OP, "the weights a", a.shape(), &[bs, n])?;
    expect_shape(OP, "the weights b", b.shape(), &[bs, m])?;
    expect_shape(OP, "the potential f", out.f.shape(), &[bs, n])?;
    expect_shape(OP, "the potential g", out.g.shape(), &[bs, m])?;
    if let Some(t) = &out.f_aa {
        expect_shape(OP, "the potential f_aa", t.shape(), &[bs, n])?;
    }
    if let Some(t) = &out.g_bb {
        expect_shape(OP, "the potential g_bb", t.shape(), &[bs, m])?;
    }
    expect_shape(OP, "the upstream gradient", g.shape(), &[bs])?;
    for t in [y, a, b, &out.f, &out.g, g] {
        x.same_place(OP, t)?;
    }
    if divergence && out.f_aa.is_none() {
        return Err(Error::invalid(
            "the divergence gradient needs a debiased solve",
        ));
    }
    if x.device().is_cuda() {
        return cuda_backward(x, y, a, b, out, cfg, divergence, g);
    }
    with_real!(x, T => {
        let (xs, ys, aw, bw) = (x.cpu::<T>()?, y.cpu::<T>()?, a.cpu::<T>()?, b.cpu::<T>()?);
        let (f, gp) = (out.f.cpu::<T>()?, out.g.cpu::<T>()?);
        let faa = out.f_aa.as_ref().map(|t| t.cpu::<T>()).transpose()?;
        let gbb = out.g_bb.as_ref().map(|t| t.cpu::<T>()).transpose()?;
        let up = g.cpu::<T>()?;
        let eps = T::from_f64(cfg.epsilon);
        let mut gx = vec![T::zero(); bs * n * d];
        let mut gy = vec![T::zero(); bs * m * d];
        let mut ga = vec![T::zero(); bs * n];
        let mut gb = vec![T::zero(); bs * m];
        gx.par_chunks_mut((n * d).max(1)).zip(gy.par_chunks_mut((m * d).max(1))).zip(ga.par_chunks_mut(n.max(1)).zip(gb.par_chunks_mut(m.max(1)))).enumerate().for_each(|(p, ((gxp, gyp), (gap, gbp)))| {
            let (xq, yr) = (&xs[p * n * d..(p + 1) * n * d], &ys[p * m * d..(p + 1) * m * d]);
            let (la, lb) = (log_weights(&aw[p * n..(p + 1) * n]), log_weights(&bw[p * m..(p + 1) * m]));
            let ninf = T::from_f64(f64::NEG_INFINITY);
            if la.iter().all(|v| *v == ninf) || lb.iter().all(|v| *v == ninf) {
                return; // a pair with an empty cloud has value 0: zero gradients (not the self plans of zeroed potentials)
            }
            let (fp, gpp) = (&f[p * n..(p + 1) * n], &gp[p * m..(p + 1) * m]);
            let s = up[p];
            let terms = |q, r, lwq, lwr, fq, gr, scale| PlanTerms { q, r, lwq, lwr, fq, gr, eps, cost: cfg.cost, d, scale };
            let isa = crate::simd::isa();
            plan_gradient(isa, terms(xq, yr, &la, &lb, fp, gpp, s), gxp, Some(gyp));
            for i in 0..n { gap[i] = s * fp[i]; }
            for j in 0..m { gbp[j] = s * gpp[j]; }
            if divergence {
                let (fa, gbv) = (&faa.unwrap()[p * n..(p + 1) * n], &gbb.unwrap()[p * m..(p + 1) * m]);
                plan_gradient(isa, terms(xq, xq, &la, &la, fa, fa, -s), gxp, None);
                plan_gradient(isa, terms(yr, yr, &lb, &lb, gbv, gbv, -s), gyp, None);
                for i in 0..n { gap[i] -= s * fa[i]; }
                for j in 0..m { gbp[j] -= s * gbv[j]; }
            }
        });
        Ok([Tensor::from_cpu_vec(gx, x.shape())?, Tensor::from_cpu_vec(gy, y.shape())?, Tensor::from_cpu_vec(ga, a.shape())?, Tensor::from_cpu_vec(gb, b.shape())?])
    })
}

// ------------------------------------------------------------------ CUDA

/// Dynamic shared memory one block needs: two clouds (the larger one twice for the self
/// problems), their log weights and potentials, and 64 floats of reduction scratch.
fn shared_bytes(n: usize, m: usize, d: usize, debias: bool) -> usize {
    let pair = (n + m) * (d + 2) * 4;
    let selfp = 2 * n.max(m) * (d + 2) * 4;
    (if debias { pair.max(selfp) } else { pair }) + 64 * 4
}

fn cuda_solve(
    x: &Tensor,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    cfg: &SinkhornConfig,
    (bs, n, m, d): (usize, usize, usize, usize),
) -> Result<SinkhornOutput> {
    let be = x.cuda()?.backend.clone();
    let smem = shared_bytes(n, m, d, cfg.debias);
    if smem > 48 * 1024 {
        return Err(Error::shape("sinkhorn", format!("clouds of {n} + {m} points in {d}-d exceed one block's shared memory on CUDA (48 KiB)")));
    }
    let problems = if cfg.debias { 3 } else { 1 };
    let mut f = be.alloc_zeros::<f32>(bs * n)?;
    let mut g = be.alloc_zeros::<f32>(bs * m)?;
    let mut faa = be.alloc_zeros::<f32>(bs * n)?;
    let mut gbb = be.alloc_zeros::<f32>(bs * m)?;
    let mut vals = be.alloc_zeros::<f32>(bs * 5)?;
    let mut iters = be.alloc_zeros::<u32>(bs)?;
    if bs > 0 {
        let func = be.function("sinkhorn", "sinkhorn_solve")?;
        let (nu, mu, du) = (n_u32("sinkhorn", n)?, n_u32("sinkhorn", m)?, d as u32);
        let (cost, eps, scaling) = (
            cfg.cost.code(),
            cfg.epsilon as f32,
            cfg.scaling.unwrap_or(0.0) as f32,
        );
        let (max_iters, tol) = (
            cfg.max_iters as u32,
            cfg.tolerance.map(|t| t as f32).unwrap_or(-1.0),
        );
        let mut lb = be.stream.launch_builder(&func);
        lb.arg(&nu)
            .arg(&mu)
            .arg(&du)
            .arg(&cost)
            .arg(&eps)
            .arg(&scaling)
            .arg(&max_iters)
            .arg(&tol);
        lb.arg(&x.cuda()?.slice)
            .arg(&y.cuda()?.slice)
            .arg(&a.cuda()?.slice)
            .arg(&b.cuda()?.slice);
        lb.arg(&mut f)
            .arg(&mut g)
            .arg(&mut faa)
            .arg(&mut gbb)
            .arg(&mut vals)
            .arg(&mut iters);
        let cfg_launch = LaunchConfig {
            grid_dim: (bs as u32, problems, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        // SAFETY: shapes checked; outputs sized per pair as allocated above.
        be.check_launch("sinkhorn_solve", unsafe { lb.launch(cfg_launch) })?;
    }
    let vals = Tensor::from_cuda(vals, be.clone(), &[bs, 5]);
    let col = |k: usize| -> Result<Tensor> {
        crate::ops::movement::narrow(&vals, 1, k, 1)?.reshape(&[bs])
    };
    let (ot, ot_aa, ot_bb) = (col(0)?, col(2)?, col(3)?);
    let divergence = if cfg.debias {
        Some(divergence_of(&ot, &ot_aa, &ot_bb)?)
    } else {
        None
    };
    Ok(SinkhornOutput {
        ot,
        transport_cost: col(1)?,
        divergence,
        ot_aa: cfg.debias.then_some(ot_aa),
        ot_bb: cfg.debias.then_some(ot_bb),
        f: Tensor::from_cuda(f, be.clone(), &[bs, n]),
        g: Tensor::from_cuda(g, be.clone(), &[bs, m]),
        f_aa: cfg
            .debias
            .then(|| Tensor::from_cuda(faa, be.clone(), &[bs, n])),
        g_bb: cfg
            .debias
            .then(|| Tensor::from_cuda(gbb, be.clone(), &[bs, m])),
        marginal_error: col(4)?,
        iterations: be.dtoh(&iters, bs)?,
    })
}

#[allow(clippy::too_many_arguments)]
fn cuda_backward(
    x: &Tensor,
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    out: &SinkhornOutput,
    cfg: &SinkhornConfig,
    divergence: bool,
    g: &Tensor,
) -> Result<[Tensor; 4]> {
    let be = x.cuda()?.backend.clone();
    let (bs, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let m = y.shape()[1];
    let mut gx = be.alloc::<f32>(bs * n * d)?;
    let mut gy = be.alloc::<f32>(bs * m * d)?;
    let mut ga = be.alloc::<f32>(bs * n)?;
    let mut gb = be.alloc::<f32>(bs * m)?;
    let func = be.function("sinkhorn", "sinkhorn_grad")?;
    let (cost, eps, du, div) = (
        cfg.cost.code(),
        cfg.epsilon as f32,
        d as u32,
        divergence as i32,
    );
    let self_f = out.f_aa.as_ref().unwrap_or(&out.f);
    let self_g = out.g_bb.as_ref().unwrap_or(&out.g);
    // rows of x against y (plan P) and x (plan P^aa); then rows of y against x (Pᵀ) and y (P^bb)
    for (q, r, wq, wr, fq, gr, fself, nq, nr, gq, gw) in [
        (x, y, a, b, &out.f, &out.g, self_f, n, m, &mut gx, &mut ga),
        (y, x, b, a, &out.g, &out.f, self_g, m, n, &mut gy, &mut gb),
    ] {
        if bs * nq == 0 {
            continue;
        }
        let (nqu, nru) = (n_u32("sinkhorn", nq)?, n_u32("sinkhorn", nr)?);
        let mut lb = be.stream.launch_builder(&func);
        lb.arg(&nqu)
            .arg(&nru)
            .arg(&du)
            .arg(&cost)
            .arg(&eps)
            .arg(&div);
        lb.arg(&q.cuda()?.slice)
            .arg(&r.cuda()?.slice)
            .arg(&wq.cuda()?.slice)
            .arg(&wr.cuda()?.slice);
        lb.arg(&fq.cuda()?.slice)
            .arg(&gr.cuda()?.slice)
            .arg(&fself.cuda()?.slice)
            .arg(&g.cuda()?.slice);
        lb.arg(gq).arg(gw);
        let launch = LaunchConfig {
            grid_dim: (nqu.div_ceil(128), bs as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: shapes as in the solve; outputs [B, nq, D] and [B, nq].
        be.check_launch("sinkhorn_grad", unsafe { lb.launch(launch) })?;
    }
    Ok([
        Tensor::from_cuda(gx, be.clone(), x.shape()),
        Tensor::from_cuda(gy, be.clone(), y.shape()),
        Tensor::from_cuda(ga, be.clone(), a.shape()),
        Tensor::from_cuda(gb, be, b.shape()),
    ])
}

// ------------------------------------------------------------------ tape op

/// Entropic OT as a fused tape op (inputs x, y, a, b; the dual potentials are saved).
/// Its backward is the envelope gradient from the potentials: once-differentiable.
struct SinkhornOp {
    config: SinkhornConfig,
}

impl SinkhornOp {
    fn forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let cfg = &self.config;
        let out = sinkhorn(inputs[0], inputs[1], inputs[2], inputs[3], cfg)?;
        let value = match (&out.divergence, cfg.debias) {
            (Some(divergence), true) => divergence.clone(),
            (None, true) => {
                return Err(Error::invalid(
                    "internal: debiased Sinkhorn returned no divergence",
                ))
            }
            (_, false) => out.ot.clone(),
        };
        Ok(CustomForward {
            value,
            saved: Box::new(out),
        })
    }
}

impl CustomOp for SinkhornOp {
    fn name(&self) -> &'static str {
        "sinkhorn"
    }
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        self.forward(inputs)
    }
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        self.forward(inputs)
    }
    fn backward(
        &self,
        x: &[&Tensor],
        saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let out = saved_as::<SinkhornOutput>(saved, "sinkhorn")?;
        let cfg = &self.config;
        let grads = sinkhorn_backward(x[0], x[1], x[2], x[3], out, cfg, cfg.debias, g)?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

impl Var {
    /// Entropic OT between `self [B, N, D]` (weights `a [B, N]`) and `y [B, M, D]` (weights
    /// `b`): the per-pair Sinkhorn divergence S_ε when `cfg.debias`, else OT_ε; shape `[B]`.
    /// Gradients by the envelope theorem flow to the positions and the weights
    /// (once-differentiable).
    pub fn sinkhorn(&self, y: &Var, a: &Var, b: &Var, cfg: &SinkhornConfig) -> Result<Var> {
        Var::custom(SinkhornOp { config: *cfg }, &[self, y, a, b])
    }
}

#[cfg(test)]
mod simd_tests {
    use super::*;
    use crate::simd::Isa;

    /// Weights far apart (1e-12 and 1e-30 next to 1): the potentials at the tiny-weight points
    /// in f32 equal the f64 solve's. The fused absorption once lost the entries of the other
    /// half-step's kernel there (their soft-min terms, which carry the tiny weight, underflow).
    #[test]
    fn tiny_weights_keep_their_potentials_in_f32() {
        let cases: [([f64; 4], [f64; 4], f64); 2] = [
            ([0.0, 0.0, -0.0195, 0.6242], [0.0, 0.0, 0.4359, 0.0], 1e-12),
            ([0.0, 0.0, 0.2373, 0.44], [0.0, 0.0, 0.3162, 0.0], 1e-30),
        ];
        for (x, y, tiny) in cases {
            let solve = |dtype: DType| {
                let t = |v: &[f64], shape: &[usize]| {
                    Tensor::from_f64(v, shape).unwrap().to_dtype(dtype).unwrap()
                };
                let b = [1.0 / (1.0 + tiny), tiny / (1.0 + tiny)];
                let cfg = SinkhornConfig {
                    debias: false,
                    ..SinkhornConfig::new(0.01, 200)
                };
                let out = sinkhorn(
                    &t(&x, &[1, 2, 2]),
                    &t(&y, &[1, 2, 2]),
                    &t(&[0.5, 0.5], &[1, 2]),
                    &t(&b, &[1, 2]),
                    &cfg,
                )
                .unwrap();
                let mut pot = out.f.to_vec_f64().unwrap();
                pot.extend(out.g.to_vec_f64().unwrap());
                pot
            };
            let (single, double) = (solve(DType::F32), solve(DType::F64));
            for (s, d) in single.iter().zip(&double) {
                assert!(
                    (s - d).abs() < 2e-5,
                    "weight {tiny}: f32 {single:?} vs f64 {double:?}"
                );
            }
        }
    }

    /// The soft-min's column loop gives the same bits on every instruction set this CPU has,
    /// with a padded (−∞ log weight) column, in f32 and f64.
    #[test]
    fn column_exp_sums_are_the_same_on_every_isa() {
        fn check<T: Real>() {
            let (rows, cols) = (13usize, 9usize);
            let stride = padded(rows);
            let val = |k: usize, s: f64| T::from_f64(((k as f64 * 0.731 + s).sin()) * 2.0);
            let by_col: Vec<T> = (0..cols * stride).map(|k| val(k, 0.1)).collect();
            let mut col_w: Vec<T> = (0..cols).map(|k| val(k, 0.2) - T::from_f64(3.0)).collect();
            col_w[4] = T::from_f64(f64::NEG_INFINITY);
            let g: Vec<T> = (0..cols).map(|k| val(k, 0.3)).collect();
            let shift: Vec<T> = (0..stride).map(|k| val(k, 0.4)).collect();
            let run = |isa: Isa| {
                let mut sum = vec![T::from_f64(7.0); stride];
                let inv_eps = T::from_f64(1.0 / 0.7);
                column_exp_sums(
                    isa, &by_col, stride, &col_w, &g, inv_eps, &shift, &mut sum, None,
                );
                sum.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>()
            };
            let reference = run(Isa::PORTABLE);
            for isa in Isa::available() {
                assert_eq!(run(isa), reference, "{isa}");
            }
        }
        check::<f32>();
        check::<f64>();
    }

    /// The plan gradient gives the same bits on every instruction set (f32 and f64, every
    /// cost, padded points on both sides), and its f32 lane coefficients equal the scalar
    /// loop's bit for bit.
    #[test]
    fn plan_gradient_is_the_same_on_every_isa_and_as_the_scalar_loop() {
        fn check<T: Real>(cost: Cost) {
            let (n, m, d) = (11usize, 13usize, 3usize);
            let val = |k: usize, s: f64| T::from_f64((k as f64 * 0.731 + s).sin());
            let q: Vec<T> = (0..n * d).map(|k| val(k, 0.1)).collect();
            let mut r: Vec<T> = (0..m * d).map(|k| val(k, 0.2)).collect();
            r[..d].copy_from_slice(&q[..d]); // a zero distance: the p = 1 kink
            let ninf = T::from_f64(f64::NEG_INFINITY);
            let mut lwq: Vec<T> = (0..n).map(|k| val(k, 0.3) - T::from_f64(2.5)).collect();
            let mut lwr: Vec<T> = (0..m).map(|k| val(k, 0.4) - T::from_f64(2.5)).collect();
            (lwq[2], lwr[5]) = (ninf, ninf);
            let fq: Vec<T> = (0..n).map(|k| val(k, 0.5) * T::from_f64(0.1)).collect();
            let gr: Vec<T> = (0..m).map(|k| val(k, 0.6) * T::from_f64(0.1)).collect();
            let terms = PlanTerms {
                q: &q,
                r: &r,
                lwq: &lwq,
                lwr: &lwr,
                fq: &fq,
                gr: &gr,
                eps: T::from_f64(0.05),
                cost,
                d,
                scale: T::from_f64(0.75),
            };
            let run = |isa: Isa| {
                let (mut gq, mut gr) = (vec![T::zero(); n * d], vec![T::zero(); m * d]);
                plan_gradient(isa, terms, &mut gq, Some(&mut gr));
                gq.iter()
                    .chain(&gr)
                    .map(|x| x.to_f64().to_bits())
                    .collect::<Vec<_>>()
            };
            let reference = run(Isa::PORTABLE);
            assert!(
                reference.iter().any(|&b| b != 0),
                "{cost:?}: all-zero gradient"
            );
            for isa in Isa::available() {
                assert_eq!(run(isa), reference, "{isa}, {cost:?}");
            }
            // one row's coefficients, lanes against the scalar loop
            let mp = padded(m);
            let pad = |x: &[T], fill: T| {
                let mut out = vec![fill; mp];
                out[..m].copy_from_slice(x);
                out
            };
            let (lw, g) = (pad(&lwr, ninf), pad(&gr, T::zero()));
            let c: Vec<T> = (0..mp)
                .map(|j| if j == 3 { T::zero() } else { val(j, 0.7).abs() })
                .collect();
            let base = T::from_f64(1.5);
            let mut scalar = vec![T::zero(); mp];
            plan_coefficients_scalar(&terms, base, &lw, &g, &c, &mut scalar);
            if let (Some(lw), Some(g), Some(c)) = (
                T::as_f32_slice(&lw),
                T::as_f32_slice(&g),
                T::as_f32_slice(&c),
            ) {
                let mut lanes = vec![0f32; mp];
                let row = PlanCoefficients {
                    base: 1.5,
                    inv_eps: (T::one() / terms.eps).to_f64() as f32,
                    scale: 0.75,
                    cost,
                };
                row.row::<crate::simd::portable::F32x8>(lw, g, c, &mut lanes);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let scalar: Vec<f32> = scalar.iter().map(|x| x.to_f64() as f32).collect();
                assert_eq!(bits(&lanes), bits(&scalar), "{cost:?}: lanes vs scalar");
            }
        }
        for cost in [
            Cost::Euclidean,
            Cost::SquaredEuclidean,
            Cost::HalfSquaredEuclidean,
        ] {
            check::<f32>(cost);
            check::<f64>(cost);
        }
    }
}
