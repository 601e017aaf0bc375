//! Eight f32 lanes for the CPU kernels whose inner loops the compiler does not vectorise on
//! its own (per-lane selects mixed with index bookkeeping, exponentials inside short rows),
//! and the run-time choice of instruction set for every hot CPU loop.
//!
//! [`Lanes`] is the vector API the kernels are written on, generic over two types:
//! [`avx2::F32x8`] (one AVX register) and [`portable::F32x8`] (a plain `[f32; 8]`). The crate
//! is compiled for baseline x86-64, so the library and the binary run on any x86-64 CPU;
//! [`dispatch!`] compiles a kernel twice, once inside a `#[target_feature(enable =
//! "avx2,fma")]` function, and runs the copy the process-wide [`isa()`] names (AVX2 + FMA
//! where the CPU has both, unless `JETGEN_SIMD=portable`). [`Mask`] is a lane mask from a
//! comparison.
//!
//! The transcendental functions are the lane-wise twins of [`crate::real::exp_f32`] and
//! [`crate::real::ln_f32`]: same reductions, same polynomials, same operation order and no
//! FMA, so they return the same bits (tested), and a kernel written as the same sequence of
//! operations on lanes as on scalars reproduces the scalar path exactly, on either path.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
mod isa;
pub mod portable;

pub use isa::{isa, select, selection, Isa, Selection, ENV_VAR};

use crate::real::Arith;

/// Lanes per vector.
pub const WIDTH: usize = 8;

/// Displays the lane path this process takes (`"AVX2 + FMA"` or `"portable"`), so that
/// `format!("{}", BACKEND)` names the run-time choice; see [`selection`] for the reason.
pub const BACKEND: Backend = Backend;

/// See [`BACKEND`].
#[derive(Clone, Copy, Debug)]
pub struct Backend;

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(isa().name())
    }
}

/// Eight f32 lanes: the operations the lane kernels use, each with the semantics of the AVX
/// instruction of the same name (so both implementations give the same bits).
pub trait Lanes: Arith + std::fmt::Debug + Send + Sync + 'static {
    /// What a comparison returns.
    type Mask: Mask;
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// The first eight values of `s` (panics if shorter).
    fn load(s: &[f32]) -> Self;
    /// Write the lanes to the first eight values of `s` (panics if shorter).
    fn store(self, s: &mut [f32]);
    /// The lanes as an array.
    fn to_array(self) -> [f32; 8];
    /// self·a + b with one rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Per lane min(self, o) (as `minps`: `o` where either is NaN).
    fn min(self, o: Self) -> Self;
    /// Per lane max(self, o) (as `maxps`: `o` where either is NaN).
    fn max(self, o: Self) -> Self;
    /// Per lane √x.
    fn sqrt(self) -> Self;
    /// Per lane self < o (false where either is NaN).
    fn lt(self, o: Self) -> Self::Mask;
    /// Per lane self ≤ o (false where either is NaN).
    fn le(self, o: Self) -> Self::Mask;
    /// Per lane self > o (false where either is NaN).
    fn gt(self, o: Self) -> Self::Mask;
    /// Per lane self ≥ o (false where either is NaN).
    fn ge(self, o: Self) -> Self::Mask;
    /// Per lane self = o (false where either is NaN).
    fn eq(self, o: Self) -> Self::Mask;
    /// Not equal, or unordered (so `x.ne(x)` is the NaN test).
    fn ne(self, o: Self) -> Self::Mask;
    /// Per lane: `a` where `mask`, else `b`.
    fn select(mask: Self::Mask, a: Self, b: Self) -> Self;
    /// Per lane: `a` where the sign bit of `sign` is set (negative numbers, −0, and NaNs
    /// with the sign bit), else `b` — `blendvps` with `sign` as its mask, no compare.
    fn select_by_sign(sign: Self, a: Self, b: Self) -> Self;
    /// 2^k from `shifted` = k + 1.5·2²³ (k in the low mantissa bits), by integer ops.
    fn pow2_of_shifted(self) -> Self;
    /// x = m·2ᵉ with m ∈ [√½, √2): (e, m), by integer ops on the bits.
    fn split_exponent(self) -> (Self, Self);
    /// The 8 × 8 transpose: lane j of `out[i]` is lane i of `rows[j]` (a register shuffle
    /// network on AVX2: 24 shuffles instead of 64 scalar moves through memory).
    fn transpose8(rows: [Self; 8]) -> [Self; 8];

    /// All lanes 0.
    #[inline(always)]
    fn zero() -> Self {
        Self::splat(0.0)
    }

    /// eˣ per lane, the twin of [`crate::real::exp_f32`] (≤ 2 ulp; below −87.3 exactly 0,
    /// above 88.72 +∞, NaN → NaN).
    #[inline(always)]
    fn exp(self) -> Self {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        const SHIFT: f32 = 12_582_912.0;
        let xc = self
            .max(Self::splat(-87.3)) // the scalar twin's clamp: 2^k·p stays normal
            .min(Self::splat(88.722_83));
        // no FMA anywhere: each step rounds as in the scalar twin, so both give the same bits
        let shifted = xc * Self::splat(std::f32::consts::LOG2_E) + Self::splat(SHIFT);
        let k = shifted - Self::splat(SHIFT);
        let r = xc - k * Self::splat(LN2_HI) - k * Self::splat(LN2_LO);
        let mut p = Self::splat(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = Self::splat(c) + r * p;
        }
        let y = p * shifted.pow2_of_shifted();
        let y = Self::select(self.lt(Self::splat(-87.3)), Self::zero(), y);
        let y = Self::select(self.gt(Self::splat(88.72)), Self::splat(f32::INFINITY), y);
        Self::select(self.ne(self), self, y) // NaN in, NaN out
    }

    /// ln x per lane, the twin of [`crate::real::ln_f32`] (0 → −∞, +∞ → +∞, negative or NaN →
    /// NaN, subnormals flushed to −∞).
    #[inline(always)]
    fn ln(self) -> Self {
        let (e, m) = self.split_exponent();
        let one = Self::splat(1.0);
        let s = (m - one) / (m + one);
        let s2 = s * s;
        let mut poly = Self::splat(1.0 / 11.0);
        for c in [1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
            poly = Self::splat(c) + s2 * poly;
        }
        let y = e * Self::splat(std::f32::consts::LN_2) + Self::splat(2.0) * s * poly;
        let tiny = self.lt(Self::splat(f32::MIN_POSITIVE));
        let nonneg = self.ge(Self::zero());
        let low = Self::select(
            nonneg,
            Self::splat(f32::NEG_INFINITY),
            Self::splat(f32::NAN),
        );
        let y = Self::select(tiny, low, y);
        // +∞ and NaN pass through
        let passthrough = self.eq(Self::splat(f32::INFINITY)).or(self.ne(self));
        Self::select(passthrough, self, y)
    }

    /// 1 / (1 + e^{−x}) per lane.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        let one = Self::splat(1.0);
        one / (one + (-self).exp())
    }

    /// ln(1 + eˣ) = max(x, 0) + ln(1 + e^{−|x|}) per lane.
    #[inline(always)]
    fn softplus(self) -> Self {
        self.max(Self::zero()) + (Self::splat(1.0) + (-self.abs()).exp()).ln()
    }

    /// |x| per lane.
    #[inline(always)]
    fn abs(self) -> Self {
        self.max(-self)
    }
}

/// A lane mask (the result of a [`Lanes`] comparison).
pub trait Mask: Copy {
    /// Lanes set in both masks.
    fn and(self, o: Self) -> Self;
    /// Lanes set in either mask.
    fn or(self, o: Self) -> Self;
    /// Lane i set ⇔ bit i set.
    fn bits(self) -> u32;
}

/// `-x` as 0 − x and `+=`, for a lane type with `Sub` and `Add`.
macro_rules! neg_and_add_assign {
    ($t:ty) => {
        impl std::ops::Neg for $t {
            type Output = $t;
            #[inline(always)]
            fn neg(self) -> $t {
                <$t as $crate::simd::Lanes>::zero() - self
            }
        }
        impl std::ops::AddAssign for $t {
            #[inline(always)]
            fn add_assign(&mut self, o: $t) {
                *self = *self + o;
            }
        }
    };
}
use neg_and_add_assign;

/// Defines a function that runs a kernel on the instruction set its first argument names.
///
/// ```ignore
/// simd::dispatch! {
///     /// docs of the dispatcher
///     pub(super) fn forward(isa: Isa, x: &[f32], y: &mut [f32]) = forward_lanes::<lanes>;
/// }
/// #[inline(always)]
/// fn forward_lanes<V: Lanes>(x: &[f32], y: &mut [f32]) { /* written on V */ }
/// ```
///
/// The kernel (here `forward_lanes`) must be `#[inline(always)]`, and so must everything it
/// calls in its hot loop — and lane code must not sit in closures (nor in std helpers that
/// take them, such as `array::from_fn` or `map`), which the compiler may leave out of line
/// and so compile without AVX (each intrinsic then becomes a call; check with objdump that
/// no `core_arch` call remains): the kernel is then compiled twice, once into a function with
/// `#[target_feature(enable = "avx2,fma")]` (with `V` = [`avx2::F32x8`], and every loop the
/// compiler vectorises on its own using 256-bit vectors) and once for the baseline target
/// (`V` = [`portable::F32x8`]). With `= name::<lanes>` the lane type is passed as the last
/// generic argument; with `= name` none is (a plain loop, compiled twice the same way).
/// Generic parameters of the dispatcher (`fn f<T: Real>(…)`, one bound each) come first.
macro_rules! dispatch {
    (
        $(#[$m:meta])* $vis:vis fn $name:ident $(<$($g:ident: $gb:path),+ $(,)?>)?
        ($isa:ident: Isa $(, $a:ident: $t:ty)* $(,)?) $(-> $r:ty)? = $imp:ident::<lanes>;
    ) => {
        $crate::simd::dispatch!(@emit [$(#[$m])*] [$vis] $name [$($($g: $gb),+)?] $isa
            [$($a: $t),*] [$($r)?] $imp [$crate::simd::avx2::F32x8] [$crate::simd::portable::F32x8]);
    };
    (
        $(#[$m:meta])* $vis:vis fn $name:ident $(<$($g:ident: $gb:path),+ $(,)?>)?
        ($isa:ident: Isa $(, $a:ident: $t:ty)* $(,)?) $(-> $r:ty)? = $imp:ident;
    ) => {
        $crate::simd::dispatch!(@emit [$(#[$m])*] [$vis] $name [$($($g: $gb),+)?] $isa
            [$($a: $t),*] [$($r)?] $imp [] []);
    };
    (
        @emit [$($m:tt)*] [$($vis:tt)*] $name:ident [$($g:ident: $gb:path),*] $isa:ident
        [$($a:ident: $t:ty),*] [$($r:ty)?] $imp:ident [$($avx:ty)?] [$($port:ty)?]
    ) => {
        $($m)*
        #[allow(clippy::too_many_arguments)]
        $($vis)* fn $name<$($g: $gb),*>($isa: $crate::simd::Isa, $($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2<$($g: $gb),*>($($a: $t),*) $(-> $r)? {
                    $imp::<$($g,)* $($avx)?>($($a),*)
                }
                if $isa.is_avx2_fma() {
                    // SAFETY: an `Isa` naming AVX2 + FMA exists only where the CPU has both.
                    return unsafe { avx2::<$($g),*>($($a),*) };
                }
            }
            $imp::<$($g,)* $($port)?>($($a),*)
        }
    };
}
pub(crate) use dispatch;

#[cfg(test)]
mod tests {
    use super::{portable, Isa, Lanes, Mask};
    use crate::real::{exp_f32, ln_f32};

    dispatch! {
        /// exp and ln of `x` (a multiple of 8 long) on lanes, into `e` and `l`.
        fn exp_ln(isa: Isa, x: &[f32], e: &mut [f32], l: &mut [f32]) = exp_ln_lanes::<lanes>;
    }

    #[inline(always)]
    fn exp_ln_lanes<V: Lanes>(x: &[f32], e: &mut [f32], l: &mut [f32]) {
        for i in (0..x.len()).step_by(8) {
            let v = V::load(&x[i..]);
            v.exp().store(&mut e[i..]);
            v.ln().store(&mut l[i..]);
        }
    }

    #[test]
    fn lane_exp_and_ln_match_the_scalar_twins_on_every_path() {
        let special = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40,
            -87.4,
            88.8,
            f32::MIN_POSITIVE,
            3.4e38,
        ];
        let mut values: Vec<f32> = (0..4000).map(|i| -90.0 + i as f32 * 0.045).collect();
        values.extend_from_slice(&special);
        values.extend((0..4000).map(|i| 10f32.powf(-37.0 + i as f32 * 0.019)));
        while !values.len().is_multiple_of(8) {
            values.push(0.5);
        }
        for isa in Isa::available() {
            let (mut e, mut l) = (vec![0f32; values.len()], vec![0f32; values.len()]);
            exp_ln(isa, &values, &mut e, &mut l);
            for (what, lanes, scalar) in [
                ("exp", &e, exp_f32 as fn(f32) -> f32),
                ("ln", &l, ln_f32 as fn(f32) -> f32),
            ] {
                for (&x, &got) in values.iter().zip(lanes) {
                    let want = scalar(x);
                    let same = (got.is_nan() && want.is_nan()) || got.to_bits() == want.to_bits();
                    assert!(same, "{isa} {what}({x}): lanes {got}, scalar {want}");
                }
            }
        }
    }

    dispatch! {
        /// Masks, selects and the rest of the API on `a`, as plain numbers.
        fn api(isa: Isa, a: &[f32]) -> (Vec<u32>, Vec<f32>) = api_lanes::<lanes>;
    }

    #[inline(always)]
    fn api_lanes<V: Lanes>(a: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let (x, b, nan) = (V::load(a), V::splat(4.5), V::splat(f32::NAN));
        let masks = vec![
            x.lt(b).bits(),
            x.ge(b).bits(),
            x.le(b).and(x.gt(V::splat(2.0))).bits(),
            x.eq(V::splat(3.0)).or(x.ne(x)).bits(),
            nan.ne(nan).bits(),
        ];
        let mut vals = V::select(x.lt(b), x, b).to_array().to_vec();
        vals.extend(x.mul_add(x, b).to_array());
        vals.extend((-x).abs().to_array());
        vals.extend(x.min(nan).to_array()); // minps: the second operand (NaN)
        vals.extend(nan.max(x).to_array()); // maxps: the second operand (x)
        vals.extend(x.sqrt().to_array());
        vals.extend(x.sigmoid().to_array());
        vals.extend(x.softplus().to_array());
        vals.extend(V::select_by_sign(x - b, x, b).to_array()); // NaN − 4.5 keeps a + sign
        vals.extend(V::select_by_sign(V::splat(-0.0), b, x).to_array());
        (masks, vals)
    }

    #[test]
    fn selects_compares_and_masks_agree_on_every_path() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, f32::NAN, -8.0];
        let (masks, vals) = api(Isa::PORTABLE, &a);
        assert_eq!(
            masks,
            [0b1000_1111, 0b0011_0000, 0b0000_1100, 0b0100_0100, 0xff]
        );
        assert_eq!(&vals[..6], &[1.0, 2.0, 3.0, 4.0, 4.5, 4.5]);
        assert_eq!(vals[8 + 2], 13.5);
        assert!(vals[24..32].iter().all(|v| v.is_nan()));
        assert_eq!(vals[32], 1.0);
        assert_eq!(&vals[64..72], &[1.0, 2.0, 3.0, 4.0, 4.5, 4.5, 4.5, -8.0]);
        assert_eq!(&vals[72..80], &[4.5; 8]);
        for isa in Isa::available() {
            let (m, v) = api(isa, &a);
            assert_eq!(m, masks, "{isa}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v), bits(&vals), "{isa}");
        }
        // the portable type also works outside any dispatch
        let p = portable::F32x8::splat(2.0);
        assert_eq!((p * p).to_array(), [4.0; 8]);
    }

    dispatch! {
        /// The 8 × 8 transpose of the rows `a[8i..8i + 8]`, flattened.
        fn transpose(isa: Isa, a: &[f32]) -> Vec<f32> = transpose_lanes::<lanes>;
    }

    #[inline(always)]
    fn transpose_lanes<V: Lanes>(a: &[f32]) -> Vec<f32> {
        let mut rows = [V::zero(); 8];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = V::load(&a[8 * i..]);
        }
        V::transpose8(rows)
            .iter()
            .flat_map(|v| v.to_array())
            .collect()
    }

    #[test]
    fn transpose8_swaps_rows_and_columns_on_every_path() {
        let a: Vec<f32> = (0..64).map(|v| v as f32).collect();
        for isa in Isa::available() {
            let t = transpose(isa, &a);
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(t[8 * i + j], a[8 * j + i], "{isa}: ({i}, {j})");
                }
            }
        }
    }
}
