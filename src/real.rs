//! The scalar types a CPU tensor can hold (f32 for work, f64 for references and
//! gradient checks), with the elementary functions the CPU kernels need.

/// The field operations (+ − × ÷, negation, +=) of a copyable number: a scalar [`Real`] or
/// a SIMD vector of them ([`crate::simd::F32x8`]). Implemented for every such type.
pub trait Arith:
    Copy
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
{
}

impl<T> Arith for T where
    T: Copy
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>
        + std::ops::Neg<Output = T>
        + std::ops::AddAssign
{
}

/// A real floating-point scalar: `f32` or `f64`.
pub trait Real: Arith + Send + Sync + PartialOrd + std::fmt::Debug + 'static {
    /// Convert from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Widen to f64.
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn ln_1p(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn is_finite(self) -> bool;
    /// `max` that propagates NaN from `self` (like torch.max).
    fn max_nan(self, other: Self) -> Self;
    /// ln of the smallest positive normal number (f32: −87.34, f64: −708.40): kernels that
    /// multiply small exponentials keep their arguments above this, so that no subnormal
    /// (slow on x86, and below every resolution that matters) is ever formed.
    const LN_MIN_NORMAL: f64;
    /// eˣ for hot loops: for f32 a branch-free polynomial that vectorises (≤ 2 ulp, exactly 0
    /// below −87.3, see [`exp_f32`]); for f64 the libm `exp` (reference precision).
    fn exp_fast(self) -> Self {
        self.exp()
    }
    /// ln x for hot loops: for f32 a branch-free vectorisable version ([`ln_f32`]); for f64
    /// the libm `ln`.
    fn ln_fast(self) -> Self {
        self.ln()
    }
    /// The slice as f32 when `Self` is f32 (for kernels with an explicit [`crate::simd`]
    /// path), `None` for f64.
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]>;
    /// Mutable twin of [`Real::as_f32_slice`].
    fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]>;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

macro_rules! impl_real {
    ($t:ty, $fast_exp:path, $fast_ln:path, $as_f32:expr, $as_f32_mut:expr) => {
        impl Real for $t {
            const LN_MIN_NORMAL: f64 = -(<$t>::MAX_EXP as f64 - 2.0) * std::f64::consts::LN_2;
            #[inline(always)]
            fn as_f32_slice(s: &[Self]) -> Option<&[f32]> {
                $as_f32(s)
            }
            #[inline(always)]
            fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]> {
                $as_f32_mut(s)
            }
            #[inline(always)]
            fn exp_fast(self) -> Self {
                $fast_exp(self)
            }
            #[inline(always)]
            fn ln_fast(self) -> Self {
                $fast_ln(self)
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline]
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            #[inline]
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn max_nan(self, other: Self) -> Self {
                if self.is_nan() || self >= other {
                    self
                } else {
                    other
                }
            }
        }
    };
}
impl_real!(f32, exp_f32, ln_f32, Some, Some);
impl_real!(f64, f64::exp, f64::ln, |_| None, |_| None);

/// Vectorisable single-precision ln x for normal positive x: x = m·2ᵉ with m ∈ [√½, √2),
/// ln m = 2 atanh(s) = 2(s + s³/3 + … + s¹¹/11), s = (m − 1)/(m + 1), |s| ≤ 0.172 (truncation
/// < 1e-10). 0 → −∞, +∞ → +∞, negative or NaN → NaN; subnormals are flushed (→ −∞ side).
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits() as i32;
    // shift the exponent so that the mantissa lands in [√½, √2)
    // wrapping: negative inputs (sign bit set) go on to the NaN branch below
    let adj = bits.wrapping_sub(0x3f35_04f3); // bits of √½
    let e = (adj >> 23) as f32;
    let m = f32::from_bits(bits.wrapping_sub((adj >> 23) << 23) as u32);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 2.0
        * s
        * (1.0
            + s2 * (1.0 / 3.0
                + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0))))));
    let y = e * std::f32::consts::LN_2 + poly;
    if x < f32::MIN_POSITIVE {
        if x >= 0.0 {
            f32::NEG_INFINITY
        } else {
            f32::NAN
        }
    } else if x == f32::INFINITY || x.is_nan() {
        x
    } else {
        y
    }
}

/// Vectorisable single-precision eˣ: e^x = 2^k·e^r with k = round(x·log₂e) and r = x − k·ln2
/// (ln2 split in two for exactness), e^r by its degree-7 Taylor polynomial on |r| ≤ ln2/2
/// (truncation < 6e-9 relative, so the result is within 2 ulp of the true value). Inputs
/// below −87.3 give exactly 0 (also −∞), above 88.7 give +∞; NaN gives NaN.
#[inline(always)]
#[allow(clippy::eq_op)] // `x - x` is deliberate: it is NaN exactly when x is NaN
pub fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds to an integer and leaves it in the low mantissa bits, so 2^k can
    // be built with integer ops only (no float→int conversion, no libm call: it vectorises).
    const SHIFT: f32 = 12_582_912.0;
    // max/min, not clamp: NaN maps into the range here exactly as the lane twin's does. The
    // lower bound is the cut-off below which the result is 0 anyway: clamped there, 2^k·p is a
    // normal number (k = −126, p ≈ 1.04). Clamped at ln 2^−126 = −87.3365, p rounds just below
    // 1 and the product is subnormal: a microcode assist of ~100 cycles per value on x86, which
    // was most of the time of the Sinkhorn kernels (at ε = 0.01 most entries are far below).
    #[allow(clippy::manual_clamp)]
    let xc = x.max(-87.3).min(88.722_83);
    let shifted = xc * LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = xc - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // bits(shifted) = 0x4B40_0000 + k  →  bits(2^k) = (k + 127) << 23
    let scale = f32::from_bits(
        (shifted
            .to_bits()
            .wrapping_sub(0x4B40_0000)
            .wrapping_add(127))
            << 23,
    );
    let y = p * scale;
    if x < -87.3 {
        0.0
    } else if x > 88.72 {
        f32::INFINITY
    } else {
        y + (x - x) // NaN in, NaN out
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "max relative error {worst:e}");
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn fast_ln_is_accurate() {
        use super::ln_f32;
        let mut worst = 0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            let want = (x as f64).ln();
            let got = ln_f32(x) as f64;
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
            x *= 1.0137;
        }
        assert!(worst < 2.5e-7, "max error {worst:e}");
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_f32(-1.0).is_nan() && ln_f32(f32::NAN).is_nan());
        assert_eq!(ln_f32(1.0), 0.0);
    }
}
