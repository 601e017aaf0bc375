//! Monotonic rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows") with
//! linear tails, exactly nflows' `unconstrained_rational_quadratic_spline`.
//!
//! Per element, K bins on [−B, B] from unnormalised parameters `uw [K]`, `uh [K]`, `ud [K−1]`:
//! ```text
//! w = m_w + (1 − K m_w)·softmax(uw)           knots  x_0 = −B, x_k = 2B·Σ_{j<k} w_j − B, x_K = B
//! h = m_h + (1 − K m_h)·softmax(uh)           knots  y_k likewise
//! δ_0 = δ_K = 1,  δ_k = m_d + softplus(ud_{k−1})  (interior knots)
//! in bin b:  W = x_{b+1} − x_b,  H = y_{b+1} − y_b,  s = H/W,  ξ = (x − x_b)/W,  θ = ξ(1 − ξ)
//!   y = y_b + H(sξ² + δ_b θ) / (s + (δ_b + δ_{b+1} − 2s)θ)
//!   dy/dx = s²(δ_{b+1}ξ² + 2sθ + δ_b(1 − ξ)²) / (s + (δ_b + δ_{b+1} − 2s)θ)²
//! ```
//! Outside [−B, B] the map is the identity with log-det 0. The inverse solves the quadratic
//! for ξ with the cancellation-free root ξ = 2c / (−b − √(b² − 4ac)) (discriminant clamped at
//! 0). Inputs are clamped into the domain before the math and the identity is selected after,
//! so the unused branch can never produce NaN; an input exactly on the last knot uses the
//! last bin.
//!
//! Gradients: a hand-written reverse pass through the bin formulas gives ∂/∂(x, knots, δ);
//! knots map to widths through the cumulative sum and widths to `uw` through the softmax
//! Jacobian (same for heights); δ to `ud` through the sigmoid. The inverse direction uses the
//! implicit function theorem at the solution (dx/dy = 1/f′, dx/dθ = −f_θ/f′), so it needs no
//! iteration. Layout: `x [...]`, `uw, uh [..., K]`, `ud [..., K−1]`; outputs `y, logdet [...]`.
//!
//! CPU: the scalar functions below ([`rqs_scalar`], [`rqs_scalar_grad`]) are the reference
//! and run f64 and K > 16; f32 with K ≤ 16 runs eight elements per SIMD register
//! (`rqs/lanes.rs`, branch-free bin search and lookup) through the same bin formulas, and
//! gives the same bits. CUDA: `kernels/rqs.cu`, one thread per element, K a template
//! constant.
//!
//! Counted work (operations, transcendentals, bytes) and the roofline bound it gives:
//! [`crate::ops::work::rqs`].

use cudarc::driver::PushKernelArg;
use rayon::prelude::*;

use std::any::Any;

use crate::autograd::{CustomForward, CustomOp, Var};
use crate::device::cuda::grid_for;
use crate::error::{Error, Result};
use crate::ops::{filled, n_u32};
use crate::real::{Arith, Real};
use crate::simd::Lanes;
use crate::tensor::{Storage, Tensor};
use crate::with_real;

mod lanes;

/// Elements per parallel task of the CPU paths (a multiple of the 8 SIMD lanes).
const BLOCK: usize = 1024;

/// Spline hyper-parameters (nflows defaults for the minima: 1e-3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RqsConfig {
    /// Number of bins K.
    pub bins: usize,
    /// B: the spline acts on [−B, B], identity outside.
    pub tail_bound: f64,
    pub min_bin_width: f64,
    pub min_bin_height: f64,
    pub min_derivative: f64,
}

impl RqsConfig {
    /// K bins on [−B, B] with nflows' default minima.
    pub fn new(bins: usize, tail_bound: f64) -> Self {
        RqsConfig {
            bins,
            tail_bound,
            min_bin_width: 1e-3,
            min_bin_height: 1e-3,
            min_derivative: 1e-3,
        }
    }

    fn validate(&self) -> Result<()> {
        let k = self.bins as f64;
        if self.bins < 2 || self.bins > 64 {
            return Err(Error::invalid(format!(
                "RQS needs 2..=64 bins, got {}",
                self.bins
            )));
        }
        if !(self.tail_bound > 0.0) || !self.tail_bound.is_finite() {
            return Err(Error::invalid(format!(
                "RQS tail bound must be positive, got {}",
                self.tail_bound
            )));
        }
        if self.min_bin_width * k >= 1.0
            || self.min_bin_height * k >= 1.0
            || self.min_derivative < 0.0
        {
            return Err(Error::invalid(
                "RQS minimal bin width/height too large for the number of bins",
            ));
        }
        Ok(())
    }
}

/// What the bin formulas need of a number: one scalar (`T: Real`) or eight lanes
/// ([`Lanes`], see `lanes.rs`), so that the formulas below are written once for both paths.
pub(crate) trait BinMath: Arith {
    /// The constant `v` (in every lane).
    fn c(v: f64) -> Self;
    /// max(self, 0).
    fn max0(self) -> Self;
    /// √self.
    fn sqrt(self) -> Self;
    /// ln, the fast one ([`Real::ln_fast`]).
    fn ln(self) -> Self;
}

impl<T: Real> BinMath for T {
    #[inline(always)]
    fn c(v: f64) -> Self {
        T::from_f64(v)
    }
    #[inline(always)]
    fn max0(self) -> Self {
        if self > T::zero() {
            self
        } else {
            T::zero()
        }
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        Real::sqrt(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        self.ln_fast()
    }
}

/// The lane types: [`BinMath`] on both of [`crate::simd`]'s implementations of [`Lanes`].
macro_rules! bin_math_on_lanes {
    ($($t:ty),*) => {$(
        impl BinMath for $t {
            #[inline(always)]
            fn c(v: f64) -> Self {
                <$t>::splat(v as f32)
            }
            #[inline(always)]
            fn max0(self) -> Self {
                Lanes::max(self, <$t>::zero())
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                Lanes::sqrt(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                Lanes::ln(self)
            }
        }
    )*};
}
bin_math_on_lanes!(crate::simd::portable::F32x8);
#[cfg(target_arch = "x86_64")]
bin_math_on_lanes!(crate::simd::avx2::F32x8);

/// The bin an input fell into: its left knot, size and end-point derivatives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bin<T> {
    x0: T,
    width: T,
    y0: T,
    height: T,
    d0: T,
    d1: T,
}

/// softmax(u) of one row into `p[..K]` (K ≤ 64): each exponential is computed once and
/// shared by the bin search and the backward. The exponentials use [`Real::exp_fast`]
/// (within 2 ulp for f32, exact libm for f64) so the K of a row vectorise.
#[inline(always)]
fn softmax_into<T: Real>(u: &[T], p: &mut [T]) {
    let m = u.iter().fold(u[0], |a, &b| if b > a { b } else { a });
    for (pi, &v) in p.iter_mut().zip(u) {
        *pi = (v - m).exp_fast();
    }
    let s = p[..u.len()].iter().fold(T::zero(), |acc, &x| acc + x);
    p.iter_mut().take(u.len()).for_each(|pi| *pi = *pi / s);
}

/// softplus(x) = max(x, 0) + ln(1 + e^{−|x|}) with the fast exp/log (f32: within a few ulp
/// of 1 + e^{−|x|}, i.e. ~1e-7 absolute on a derivative that is ≥ min_derivative anyway).
#[inline(always)]
fn softplus<T: Real>(x: T) -> T {
    (if x > T::zero() { x } else { T::zero() }) + (T::one() + (-x.abs()).exp_fast()).ln_fast()
}

#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp_fast())
}

/// The constants of an [`RqsConfig`] in the working precision, computed once per call:
/// K, B, 2B, the width/height scales 1 − K·min, the minimum width, height and derivative.
#[derive(Clone, Copy, Debug)]
pub struct SplineConsts<T> {
    pub k: usize,
    pub b: T,
    pub two_b: T,
    pub scale_w: T,
    pub scale_h: T,
    pub min_w: T,
    pub min_h: T,
    pub min_d: T,
}

impl<T: Real> SplineConsts<T> {
    pub fn new(cfg: &RqsConfig) -> Self {
        let f = T::from_f64;
        let k = cfg.bins;
        SplineConsts {
            k,
            b: f(cfg.tail_bound),
            two_b: f(2.0 * cfg.tail_bound),
            scale_w: f(1.0 - cfg.min_bin_width * k as f64),
            scale_h: f(1.0 - cfg.min_bin_height * k as f64),
            min_w: f(cfg.min_bin_width),
            min_h: f(cfg.min_bin_height),
            min_d: f(cfg.min_derivative),
        }
    }
}

/// Find the bin of `value` among the x-knots (forward) or y-knots (inverse), building both
/// knot sequences on the fly. `value` must already be clamped into [−B, B].
#[inline(always)]
fn locate<T: Real>(
    value: T,
    pw: &[T],
    ph: &[T],
    ud: &[T],
    c: &SplineConsts<T>,
    inverse: bool,
) -> (usize, Bin<T>) {
    let SplineConsts {
        k,
        b,
        two_b,
        scale_w,
        scale_h,
        min_w,
        min_h,
        min_d,
    } = *c;
    let knot = |cum: T, i: usize| {
        if i == 0 {
            -b
        } else if i == k {
            b
        } else {
            two_b * cum - b
        }
    };
    let (mut cum_w, mut cum_h) = (T::zero(), T::zero());
    let (mut left_x, mut left_y) = (-b, -b);
    let mut found = None;
    for i in 0..k {
        cum_w += min_w + scale_w * pw[i];
        cum_h += min_h + scale_h * ph[i];
        let (right_x, right_y) = (knot(cum_w, i + 1), knot(cum_h, i + 1));
        // searchsorted semantics: the last knot counts as +1e-6, so value = B is in the last bin
        let right = if inverse { right_y } else { right_x };
        if i + 1 == k || value < right {
            found = Some((i, left_x, right_x - left_x, left_y, right_y - left_y));
            break;
        }
        left_x = right_x;
        left_y = right_y;
    }
    let (index, x0, width, y0, height) = found.expect("loop always returns at the last bin");
    let d0 = if index == 0 {
        T::one()
    } else {
        min_d + softplus(ud[index - 1])
    };
    let d1 = if index + 1 == k {
        T::one()
    } else {
        min_d + softplus(ud[index])
    };
    (
        index,
        Bin {
            x0,
            width,
            y0,
            height,
            d0,
            d1,
        },
    )
}

/// Forward spline inside a bin: (y, log dy/dx).
#[inline(always)]
pub(crate) fn forward_in_bin<V: BinMath>(x: V, bin: &Bin<V>) -> (V, V) {
    let (one, two) = (V::c(1.0), V::c(2.0));
    let xi = (x - bin.x0) / bin.width;
    let s = bin.height / bin.width;
    let th = xi * (one - xi);
    let den = s + (bin.d0 + bin.d1 - two * s) * th;
    let y = bin.y0 + bin.height * (s * xi * xi + bin.d0 * th) / den;
    let omx = one - xi;
    let q = bin.d1 * xi * xi + two * s * th + bin.d0 * omx * omx;
    // log dy/dx = ln(s²q / den²): one (vectorisable for f32) logarithm
    (y, (s * s * q / (den * den)).ln())
}

/// Inverse spline inside a bin: (x, log dx/dy), with the cancellation-free quadratic root.
#[inline(always)]
pub(crate) fn inverse_in_bin<V: BinMath>(y: V, bin: &Bin<V>) -> (V, V) {
    let x = inverse_root(y, bin);
    let (_, logdet) = forward_in_bin(x, bin);
    (x, -logdet)
}

/// The x in the bin with y(x) = `y`: ξ solves aξ² + bξ + c = 0 with the discriminant clamped
/// at 0, taken as ξ = 2c / (−b − √disc) (no cancellation between b and √disc).
#[inline(always)]
pub(crate) fn inverse_root<V: BinMath>(y: V, bin: &Bin<V>) -> V {
    let (two, four) = (V::c(2.0), V::c(4.0));
    let s = bin.height / bin.width;
    let dy = y - bin.y0;
    let sum = bin.d0 + bin.d1 - two * s;
    let a = bin.height * (s - bin.d0) + dy * sum;
    let b = bin.height * bin.d0 - dy * sum;
    let c = -s * dy;
    let disc = (b * b - four * a * c).max0();
    let root = two * c / (-b - disc.sqrt());
    root * bin.width + bin.x0
}

/// Slope of the forward spline at x and the slope of its log: (dy/dx, dℓ/dx) with
/// dy/dx = s²q/den², ℓ = ln dy/dx, dℓ/dx = (q'/q − 2 den'/den)/W (primes: d/dξ), no exp or log.
#[inline(always)]
pub(crate) fn forward_slope<V: BinMath>(x: V, bin: &Bin<V>) -> (V, V) {
    let (one, two) = (V::c(1.0), V::c(2.0));
    let (w, d0, d1) = (bin.width, bin.d0, bin.d1);
    let s = bin.height / w;
    let xi = (x - bin.x0) / w;
    let omx = one - xi;
    let th = xi * omx;
    let sum = d0 + d1 - two * s;
    let den = s + sum * th;
    let q = d1 * xi * xi + two * s * th + d0 * omx * omx;
    let dq = two * (d1 * xi + s * (omx - xi) - d0 * omx);
    let dden = sum * (omx - xi);
    (s * s * q / (den * den), (dq / q - two * dden / den) / w)
}

/// Reverse pass through the bin formulas at fixed bin: given ∂L/∂y (`gy`) and ∂L/∂logdet
/// (`gl`) of the *forward* map at `x`, returns ∂L/∂x and the adjoints of the bin's knots and
/// derivatives: (gx, g_xshift, g_xknot[b+1], g_yshift, g_yknot[b+1], g_δ_b, g_δ_{b+1}), where a
/// shift moves both knots of the bin together (x_b and x_{b+1}, or y_b and y_{b+1}) and the
/// knot adjoint moves the right knot alone (the left knot's own adjoint is the difference).
/// The shift form is what the logits need (see [`knots_to_logits`]); forming the left knot's
/// adjoint and adding the right one back would lose digits to cancellation in narrow bins.
#[inline(always)]
pub(crate) fn forward_adjoint<V: BinMath>(x: V, bin: &Bin<V>, gy: V, gl: V) -> [V; 7] {
    let (one, two) = (V::c(1.0), V::c(2.0));
    let (w, h, d0, d1) = (bin.width, bin.height, bin.d0, bin.d1);
    // four reciprocals instead of eleven divisions
    let inv_w = one / w;
    let xi = (x - bin.x0) * inv_w;
    let s = h * inv_w;
    let omx = one - xi;
    let th = xi * omx;
    let den = s + (d0 + d1 - two * s) * th;
    let inv_den = one / den;
    let num = h * (s * xi * xi + d0 * th);
    let q = d1 * xi * xi + two * s * th + d0 * omx * omx;
    let g_num = gy * inv_den;
    let g_den = -(gy * num * inv_den + two * gl) * inv_den;
    let g_q = gl / q;
    let mut g_s = two * gl / s;
    // q = δ1 ξ² + 2sθ + δ0 (1 − ξ)²
    let mut g_d1 = g_q * xi * xi;
    g_s += two * th * g_q;
    let mut g_th = two * s * g_q;
    let mut g_d0 = g_q * omx * omx;
    let mut g_xi = g_q * (two * d1 * xi - two * d0 * omx);
    // den = s + (δ0 + δ1 − 2s)θ
    g_s += g_den * (one - two * th);
    g_d0 += g_den * th;
    g_d1 += g_den * th;
    g_th += g_den * (d0 + d1 - two * s);
    // num = H(sξ² + δ0 θ)
    let mut g_h = g_num * (s * xi * xi + d0 * th);
    g_s += g_num * h * xi * xi;
    g_xi += g_num * h * two * s * xi;
    g_d0 += g_num * h * th;
    g_th += g_num * h * d0;
    // θ = ξ − ξ²
    g_xi += g_th * (one - two * xi);
    // s = H/W, ξ = (x − x_b)/W
    g_h += g_s * inv_w;
    let mut g_w = -g_s * s * inv_w;
    let g_x = g_xi * inv_w;
    let g_x0 = -g_xi * inv_w;
    g_w += -g_xi * xi * inv_w;
    // shifting the bin moves neither its width nor its height: ∂/∂shift = ∂/∂x_b at fixed W
    let (g_xshift, g_yshift) = (g_x0, gy);
    [g_x, g_xshift, g_w, g_yshift, g_h, g_d0, g_d1]
}

/// Push the adjoints of bin b (`g_shift`: moving both its knots, `g_right`: its right knot
/// alone) back to the unnormalised parameters `u` of one softmax row (writes `grad`):
/// interior knot k = 2B·Σ_{j<k} (m + (1 − Km)·p_j) − B, so a logit j < b moves both knots of
/// the bin (only the left one when the right knot is the fixed end B), logit b the right knot
/// alone, later logits neither.
#[inline(always)]
fn knots_to_logits<T: Real>(
    p: &[T],
    b: usize,
    g_shift: T,
    g_right: T,
    c: &SplineConsts<T>,
    scale: T,
    grad: &mut [T],
) {
    let (k, two_b) = (c.k, c.two_b);
    // G_w[j]: piecewise constant, `below` for j < b, `at` for j = b, 0 beyond; then the
    // softmax Jacobian ∂L/∂u_j = p_j (G_w[j] − Σ_i p_i G_w[i]). Writes (not adds) the row.
    let right_interior = b + 1 < k;
    let below = two_b
        * scale
        * if right_interior {
            g_shift
        } else {
            g_shift - g_right
        };
    let at = if right_interior {
        two_b * scale * g_right
    } else {
        T::zero()
    };
    let g_w = |j: usize| {
        if j < b {
            below
        } else if j == b {
            at
        } else {
            T::zero()
        }
    };
    let dot = (0..k).fold(T::zero(), |acc, j| acc + p[j] * g_w(j));
    for j in 0..k {
        grad[j] = p[j] * (g_w(j) - dot);
    }
}

/// One element: (output, logdet) of the forward or inverse spline.
pub fn rqs_scalar<T: Real>(
    value: T,
    uw: &[T],
    uh: &[T],
    ud: &[T],
    c: &SplineConsts<T>,
    inverse: bool,
) -> (T, T) {
    let b = c.b;
    let inside = value >= -b && value <= b;
    let clamped = if value < -b {
        -b
    } else if value > b {
        b
    } else {
        value
    };
    with_scratch(uw.len(), |pw: &mut [T], ph: &mut [T]| {
        softmax_into(uw, pw);
        softmax_into(uh, ph);
        let (_, bin) = locate(clamped, pw, ph, ud, c, inverse);
        let (out, ld) = if inverse {
            inverse_in_bin(clamped, &bin)
        } else {
            forward_in_bin(clamped, &bin)
        };
        if inside {
            (out, ld)
        } else {
            (value, T::zero())
        }
    })
}

/// One element's gradients: writes ∂L/∂(uw, uh, ud) into the given rows and returns ∂L/∂value,
/// for upstream `gy` (output) and `gl` (logdet).
#[allow(clippy::too_many_arguments)]
pub fn rqs_scalar_grad<T: Real>(
    value: T,
    uw: &[T],
    uh: &[T],
    ud: &[T],
    c: &SplineConsts<T>,
    inverse: bool,
    gy: T,
    gl: T,
    guw: &mut [T],
    guh: &mut [T],
    gud: &mut [T],
) -> T {
    gud.iter_mut().for_each(|g| *g = T::zero());
    let b = c.b;
    if !(value >= -b && value <= b) {
        // identity: dx = g, parameters untouched
        guw.iter_mut()
            .chain(guh.iter_mut())
            .for_each(|g| *g = T::zero());
        return gy;
    }
    with_scratch(uw.len(), |pw: &mut [T], ph: &mut [T]| {
        softmax_into(uw, pw);
        softmax_into(uh, ph);
        let (index, bin) = locate(value, pw, ph, ud, c, inverse);
        let (g_value, adj) = if inverse {
            // x* = f⁻¹(value); outputs X = x*, Λ = −ℓ(x*) with ℓ = forward log-det.
            // Implicit differentiation of y(x*) = value: ∂L/∂value = α = (gy − gl·ℓ'(x*))/y'(x*),
            // and the parameters get the forward adjoint at x* with (−α, −gl).
            // Shifting the bin's x-knots shifts x* with them (Λ unchanged), so the x-shift
            // adjoint is exactly gy; the adjoint pass would form it as a difference of two
            // terms ~1/W apart.
            let x = inverse_root(value, &bin);
            let (slope, ell_x) = forward_slope(x, &bin);
            let alpha = (gy - gl * ell_x) / slope;
            let mut adj = forward_adjoint(x, &bin, -alpha, -gl);
            adj[1] = gy;
            (alpha, adj)
        } else {
            let adj = forward_adjoint(value, &bin, gy, gl);
            (adj[0], adj)
        };
        knots_to_logits(pw, index, adj[1], adj[2], c, c.scale_w, guw);
        knots_to_logits(ph, index, adj[3], adj[4], c, c.scale_h, guh);
        if index >= 1 {
            gud[index - 1] += adj[5] * sigmoid(ud[index - 1]);
        }
        if index + 1 < c.k {
            gud[index] += adj[6] * sigmoid(ud[index]);
        }
        g_value
    })
}

/// Runs `f` with two zeroed scratch rows of length `k` for the softmaxes: on the stack for
/// K ≤ 16 (the usual 4–10 bins), on the heap beyond.
fn with_scratch<T: Real, R>(k: usize, f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
    if k <= 16 {
        let (mut a, mut b) = ([T::zero(); 16], [T::zero(); 16]);
        f(&mut a[..k], &mut b[..k])
    } else {
        let (mut a, mut b) = (vec![T::zero(); k], vec![T::zero(); k]);
        f(&mut a, &mut b)
    }
}

fn check_shapes(x: &Tensor, uw: &Tensor, uh: &Tensor, ud: &Tensor, cfg: &RqsConfig) -> Result<()> {
    cfg.validate()?;
    let with = |extra: usize| [x.shape(), &[extra]].concat();
    for (name, t, want) in [
        ("widths", uw, with(cfg.bins)),
        ("heights", uh, with(cfg.bins)),
        ("derivatives", ud, with(cfg.bins - 1)),
    ] {
        if t.shape() != want.as_slice() {
            return Err(Error::shape(
                "rqs",
                format!(
                    "{name} must be {want:?} for inputs {:?}, got {:?}",
                    x.shape(),
                    t.shape()
                ),
            ));
        }
        x.same_place("rqs", t)?;
    }
    Ok(())
}

/// The scalar launch arguments both RQS kernels start with (see kernels/rqs.cu).
struct RqsScalars {
    n: u32,
    bins: u32,
    inverse: i32,
    tail_bound: f32,
    min_w: f32,
    min_h: f32,
    min_d: f32,
}

impl RqsScalars {
    fn new(n: usize, cfg: &RqsConfig, inverse: bool) -> Result<Self> {
        Ok(RqsScalars {
            n: n_u32("rqs", n)?,
            bins: cfg.bins as u32,
            inverse: inverse as i32,
            tail_bound: cfg.tail_bound as f32,
            min_w: cfg.min_bin_width as f32,
            min_h: cfg.min_bin_height as f32,
            min_d: cfg.min_derivative as f32,
        })
    }
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        b.arg(&self.n)
            .arg(&self.bins)
            .arg(&self.inverse)
            .arg(&self.tail_bound);
        b.arg(&self.min_w).arg(&self.min_h).arg(&self.min_d);
    }
}

/// Push the device pointers of x, uw, uh, ud.
fn push_inputs<'a>(
    b: &mut cudarc::driver::LaunchArgs<'a>,
    x: &'a Tensor,
    uw: &'a Tensor,
    uh: &'a Tensor,
    ud: &'a Tensor,
) -> Result<()> {
    b.arg(&x.cuda()?.slice)
        .arg(&uw.cuda()?.slice)
        .arg(&uh.cuda()?.slice)
        .arg(&ud.cuda()?.slice);
    Ok(())
}

/// Apply the spline (or its inverse) elementwise: returns `(out, logdet)`, both of x's shape.
/// NaN/inf inputs or parameters are an error ([`Error::NonFinite`]).
pub fn rqs(
    x: &Tensor,
    uw: &Tensor,
    uh: &Tensor,
    ud: &Tensor,
    cfg: &RqsConfig,
    inverse: bool,
) -> Result<(Tensor, Tensor)> {
    let stacked = rqs_stacked(x, uw, uh, ud, cfg, inverse)?;
    let n = x.numel();
    let flat = stacked.reshape(&[2, n])?;
    Ok((
        crate::ops::movement::narrow(&flat, 0, 0, 1)?.reshape(x.shape())?,
        crate::ops::movement::narrow(&flat, 0, 1, 1)?.reshape(x.shape())?,
    ))
}

/// `[2, ...x.shape]`: output stacked over log-det (the tape op's single value).
fn rqs_stacked(
    x: &Tensor,
    uw: &Tensor,
    uh: &Tensor,
    ud: &Tensor,
    cfg: &RqsConfig,
    inverse: bool,
) -> Result<Tensor> {
    check_shapes(x, uw, uh, ud, cfg)?;
    Tensor::check_all_finite(&[
        ("rqs inputs", x),
        ("rqs widths", uw),
        ("rqs heights", uh),
        ("rqs derivatives", ud),
    ])?;
    let n = x.numel();
    let k = cfg.bins;
    let shape = [&[2], x.shape()].concat();
    if let Storage::Cuda(buf) = x.storage() {
        let be = &buf.backend;
        let mut out = be.alloc::<f32>(2 * n)?;
        let f = be.function("rqs", "rqs_forward")?;
        let scalars = RqsScalars::new(n, cfg, inverse)?;
        let mut b = be.stream.launch_builder(&f);
        scalars.push(&mut b);
        push_inputs(&mut b, x, uw, uh, ud)?;
        b.arg(&mut out);
        // SAFETY: shapes checked above: x n, uw/uh n·K, ud n·(K−1), out 2n.
        be.check_launch("rqs_forward", unsafe { b.launch(grid_for(n)) })?;
        return Ok(Tensor::from_cuda(out, be.clone(), &shape));
    }
    with_real!(x, T => {
        let (xs, ws, hs, ds) = (x.cpu::<T>()?, uw.cpu::<T>()?, uh.cpu::<T>()?, ud.cpu::<T>()?);
        let consts = SplineConsts::new(cfg);
        // out = [y; logdet], each half written in place
        let mut out = vec![T::zero(); 2 * n];
        let (ys, lds) = out.split_at_mut(n);
        let as_f32 = (T::as_f32_slice(xs), T::as_f32_slice(ws), T::as_f32_slice(hs), T::as_f32_slice(ds), T::as_f32_slice_mut(ys), T::as_f32_slice_mut(lds));
        if let (Some(xs), Some(ws), Some(hs), Some(ds), Some(ys), Some(lds)) = as_f32 {
            if k <= lanes::MAX_BINS {
                let c32 = SplineConsts::<f32>::new(cfg);
                let params = lanes::Params { uw: ws, uh: hs, ud: ds };
                ys.par_chunks_mut(BLOCK).zip(lds.par_chunks_mut(BLOCK)).enumerate().for_each(|(blk, (y, ld))| {
                    let (lo, hi) = (blk * BLOCK, blk * BLOCK + y.len());
                    lanes::forward(crate::simd::isa(), &xs[lo..hi], params.range(lo, hi, k), &c32, inverse, y, ld);
                });
                return Tensor::from_cpu_vec(out, &shape);
            }
        }
        let (ys, lds) = out.split_at_mut(n);
        ys.par_iter_mut().zip(lds.par_iter_mut()).enumerate().with_min_len(1024).for_each(|(i, (y, ld))| {
            (*y, *ld) = rqs_scalar(xs[i], &ws[i * k..(i + 1) * k], &hs[i * k..(i + 1) * k], &ds[i * (k - 1)..(i + 1) * (k - 1)], &consts, inverse);
        });
        Tensor::from_cpu_vec(out, &shape)
    })
}

/// Gradients of L w.r.t. (x, uw, uh, ud) given `g = ∂L/∂[out; logdet]` of shape `[2, ...]`.
pub fn rqs_backward(
    x: &Tensor,
    uw: &Tensor,
    uh: &Tensor,
    ud: &Tensor,
    cfg: &RqsConfig,
    inverse: bool,
    g: &Tensor,
) -> Result<[Tensor; 4]> {
    check_shapes(x, uw, uh, ud, cfg)?;
    if g.numel() != 2 * x.numel() {
        return Err(Error::shape(
            "rqs_backward",
            format!(
                "the upstream gradient [out; logdet] must hold 2 × {:?} elements, got {:?}",
                x.shape(),
                g.shape()
            ),
        ));
    }
    x.same_place("rqs_backward", g)?;
    let n = x.numel();
    let k = cfg.bins;
    if let Storage::Cuda(buf) = x.storage() {
        let be = &buf.backend;
        let mut gx = be.alloc::<f32>(n)?;
        let mut gw = be.alloc::<f32>(n * k)?;
        let mut gh = be.alloc::<f32>(n * k)?;
        let mut gd = be.alloc::<f32>(n * (k - 1))?;
        let f = be.function("rqs", "rqs_backward")?;
        let scalars = RqsScalars::new(n, cfg, inverse)?;
        let mut b = be.stream.launch_builder(&f);
        scalars.push(&mut b);
        push_inputs(&mut b, x, uw, uh, ud)?;
        b.arg(&g.cuda()?.slice)
            .arg(&mut gx)
            .arg(&mut gw)
            .arg(&mut gh)
            .arg(&mut gd);
        // SAFETY: as in the forward; g holds 2n elements.
        be.check_launch("rqs_backward", unsafe { b.launch(grid_for(n)) })?;
        let be = be.clone();
        return Ok([
            Tensor::from_cuda(gx, be.clone(), x.shape()),
            Tensor::from_cuda(gw, be.clone(), uw.shape()),
            Tensor::from_cuda(gh, be.clone(), uh.shape()),
            Tensor::from_cuda(gd, be, ud.shape()),
        ]);
    }
    with_real!(x, T => {
        let (xs, ws, hs, ds, gs) = (x.cpu::<T>()?, uw.cpu::<T>()?, uh.cpu::<T>()?, ud.cpu::<T>()?, g.cpu::<T>()?);
        let consts = SplineConsts::new(cfg);
        let as_f32 = (T::as_f32_slice(xs), T::as_f32_slice(ws), T::as_f32_slice(hs), T::as_f32_slice(ds), T::as_f32_slice(gs));
        if let ((Some(xs), Some(ws), Some(hs), Some(ds), Some(gs)), true) = (as_f32, k <= lanes::MAX_BINS) {
            let c32 = SplineConsts::<f32>::new(cfg);
            let params = lanes::Params { uw: ws, uh: hs, ud: ds };
            // the outputs are zeroed block by block by the thread that writes the block (no
            // serial memset of all four buffers first)
            let (mut gx, mut gw, mut gh, mut gd) = (Vec::with_capacity(n), Vec::with_capacity(n * k), Vec::with_capacity(n * k), Vec::with_capacity(n * (k - 1)));
            gx.spare_capacity_mut()[..n].par_chunks_mut(BLOCK)
                .zip(gw.spare_capacity_mut()[..n * k].par_chunks_mut(BLOCK * k))
                .zip(gh.spare_capacity_mut()[..n * k].par_chunks_mut(BLOCK * k))
                .zip(gd.spare_capacity_mut()[..n * (k - 1)].par_chunks_mut(BLOCK * (k - 1)))
                .enumerate()
                .for_each(|(blk, (((gxb, gwb), ghb), gdb))| {
                    let (lo, hi) = (blk * BLOCK, blk * BLOCK + gxb.len());
                    let out = lanes::Grads { x: filled(gxb, 0.0), uw: filled(gwb, 0.0), uh: filled(ghb, 0.0), ud: filled(gdb, 0.0) };
                    lanes::backward(crate::simd::isa(), &xs[lo..hi], params.range(lo, hi, k), &c32, inverse, &gs[lo..hi], &gs[n + lo..n + hi], out);
                });
            // SAFETY: the blocks above cover the first n, n·K, n·K and n·(K − 1) slots
            // exactly, each initialised by `filled` before anything else ran (a panic would
            // unwind past this line, leaving the lengths at 0).
            unsafe {
                gx.set_len(n);
                gw.set_len(n * k);
                gh.set_len(n * k);
                gd.set_len(n * (k - 1));
            }
            return Ok([
                Tensor::from_cpu_vec(gx, x.shape())?,
                Tensor::from_cpu_vec(gw, uw.shape())?,
                Tensor::from_cpu_vec(gh, uh.shape())?,
                Tensor::from_cpu_vec(gd, ud.shape())?,
            ]);
        }
        let mut gw = vec![T::zero(); n * k];
        let mut gh = vec![T::zero(); n * k];
        let mut gd = vec![T::zero(); n * (k - 1)];
        let mut gx = vec![T::zero(); n];
        gx.par_iter_mut()
            .zip(gw.par_chunks_mut(k))
            .zip(gh.par_chunks_mut(k))
            .zip(gd.par_chunks_mut(k - 1))
            .enumerate()
            .with_min_len(512)
            .for_each(|(i, (((gxi, gwi), ghi), gdi))| {
                let (w, h, d) = (&ws[i * k..(i + 1) * k], &hs[i * k..(i + 1) * k], &ds[i * (k - 1)..(i + 1) * (k - 1)]);
                *gxi = rqs_scalar_grad(xs[i], w, h, d, &consts, inverse, gs[i], gs[n + i], gwi, ghi, gdi);
            });
        Ok([
            Tensor::from_cpu_vec(gx, x.shape())?,
            Tensor::from_cpu_vec(gw, uw.shape())?,
            Tensor::from_cpu_vec(gh, uh.shape())?,
            Tensor::from_cpu_vec(gd, ud.shape())?,
        ])
    })
}

/// The spline as a fused tape op (inputs x, uw, uh, ud; value = [out; logdet] stacked).
/// Its backward is the fused adjoint kernel: once-differentiable.
struct RqsOp {
    config: RqsConfig,
    inverse: bool,
}

impl RqsOp {
    fn forward(&self, x: &[&Tensor]) -> Result<CustomForward> {
        let stacked = rqs_stacked(x[0], x[1], x[2], x[3], &self.config, self.inverse)?;
        Ok(CustomForward::new(stacked))
    }
}

impl CustomOp for RqsOp {
    fn name(&self) -> &'static str {
        "rqs"
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
        _saved: &dyn Any,
        _output: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let grads = rqs_backward(x[0], x[1], x[2], x[3], &self.config, self.inverse, g)?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

impl Var {
    /// The spline (or its inverse) of `self` with per-element parameters: returns
    /// `(out, logdet)` as variables; gradients flow to `self`, `uw`, `uh`, `ud`
    /// (once-differentiable).
    pub fn rqs(
        &self,
        uw: &Var,
        uh: &Var,
        ud: &Var,
        cfg: &RqsConfig,
        inverse: bool,
    ) -> Result<(Var, Var)> {
        let op = RqsOp {
            config: *cfg,
            inverse,
        };
        let both = Var::custom(op, &[self, uw, uh, ud])?;
        let n = self.value().numel();
        let flat = both.reshape(&[2, n])?;
        Ok((
            flat.narrow(0, 0, 1)?.reshape(self.shape())?,
            flat.narrow(0, 1, 1)?.reshape(self.shape())?,
        ))
    }
}
