//! Eight f32 lanes for the CPU kernels whose inner loops the compiler does not vectorise on
//! its own (per-lane selects mixed with index bookkeeping, exponentials inside short rows).
//!
//! [`F32x8`] is one AVX register when the crate is compiled for AVX2 + FMA (the default here:
//! `.cargo/config.toml` asks for x86-64-v3), and a plain `[f32; 8]` with the same methods
//! everywhere else, so every kernel written on it builds and gives the same results (up to
//! FMA rounding) on any target. [`M32x8`] is a lane mask from a comparison.
//!
//! The transcendental functions are the lane-wise twins of [`crate::real::exp_f32`] and
//! [`crate::real::ln_f32`]: same reductions, same polynomials, same operation order and no
//! FMA, so they return the same bits (tested), and a kernel written as the same sequence of
//! operations on lanes as on scalars reproduces the scalar path exactly.

pub use imp::{F32x8, M32x8};

/// Lanes per vector.
pub const WIDTH: usize = 8;

/// What [`F32x8`] compiles to in this build: `"AVX2 + FMA"` or `"portable (array)"`.
pub const BACKEND: &str = if cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)) {
    "AVX2 + FMA"
} else {
    "portable (array)"
};

impl F32x8 {
    /// All lanes 0.
    #[inline(always)]
    pub fn zero() -> Self {
        Self::splat(0.0)
    }

    /// eˣ per lane, the twin of [`crate::real::exp_f32`] (≤ 2 ulp; below −87.3 exactly 0,
    /// above 88.72 +∞, NaN → NaN).
    #[inline(always)]
    pub fn exp(self) -> Self {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        const SHIFT: f32 = 12_582_912.0;
        let xc = self
            .max(Self::splat(-87.336_55))
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
    pub fn ln(self) -> Self {
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
    pub fn sigmoid(self) -> Self {
        let one = Self::splat(1.0);
        one / (one + (-self).exp())
    }

    /// ln(1 + eˣ) = max(x, 0) + ln(1 + e^{−|x|}) per lane.
    #[inline(always)]
    pub fn softplus(self) -> Self {
        self.max(Self::zero()) + (Self::splat(1.0) + (-self.abs()).exp()).ln()
    }

    /// |x| per lane.
    #[inline(always)]
    pub fn abs(self) -> Self {
        self.max(-self)
    }
}

impl std::ops::AddAssign for F32x8 {
    #[inline(always)]
    fn add_assign(&mut self, o: F32x8) {
        *self = *self + o;
    }
}

impl std::ops::Neg for F32x8 {
    type Output = F32x8;
    #[inline(always)]
    fn neg(self) -> F32x8 {
        F32x8::zero() - self
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod imp {
    use std::arch::x86_64::*;

    /// Calls AVX/AVX2/FMA intrinsics. SAFETY: this module is compiled only when the build
    /// enables avx2 and fma (the `cfg` above), so every CPU the binary may run on has them.
    macro_rules! avx {
        ($e:expr) => {{
            // the casts among them are safe functions; the rest need the block
            #[allow(unused_unsafe)]
            let value = unsafe { $e };
            value
        }};
    }

    /// Eight f32 lanes in one AVX register.
    #[derive(Clone, Copy, Debug)]
    pub struct F32x8(__m256);

    /// A lane mask (all bits set in a true lane).
    #[derive(Clone, Copy, Debug)]
    pub struct M32x8(__m256);

    macro_rules! binop {
        ($tr:ident, $f:ident, $intr:ident) => {
            impl std::ops::$tr for F32x8 {
                type Output = F32x8;
                #[inline(always)]
                fn $f(self, o: F32x8) -> F32x8 {
                    F32x8(avx!($intr(self.0, o.0)))
                }
            }
        };
    }
    binop!(Add, add, _mm256_add_ps);
    binop!(Sub, sub, _mm256_sub_ps);
    binop!(Mul, mul, _mm256_mul_ps);
    binop!(Div, div, _mm256_div_ps);

    impl F32x8 {
        /// Every lane `v`.
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            F32x8(avx!(_mm256_set1_ps(v)))
        }
        /// The first eight values of `s` (panics if shorter).
        #[inline(always)]
        pub fn load(s: &[f32]) -> Self {
            let s = &s[..8];
            // SAFETY: `s` holds 8 f32 (checked by the slice above); unaligned load.
            F32x8(avx!(_mm256_loadu_ps(s.as_ptr())))
        }
        /// Write the lanes to the first eight values of `s` (panics if shorter).
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            let s = &mut s[..8];
            // SAFETY: `s` has room for 8 f32 (checked by the slice above); unaligned store.
            avx!(_mm256_storeu_ps(s.as_mut_ptr(), self.0))
        }
        /// The lanes as an array.
        #[inline(always)]
        pub fn to_array(self) -> [f32; 8] {
            let mut a = [0f32; 8];
            self.store(&mut a);
            a
        }
        /// self·a + b with one rounding.
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            F32x8(avx!(_mm256_fmadd_ps(self.0, a.0, b.0)))
        }
        /// Per lane min(self, o) (as `minps`: `o` where either is NaN).
        #[inline(always)]
        pub fn min(self, o: Self) -> Self {
            F32x8(avx!(_mm256_min_ps(self.0, o.0)))
        }
        /// Per lane max(self, o) (as `maxps`: `o` where either is NaN).
        #[inline(always)]
        pub fn max(self, o: Self) -> Self {
            F32x8(avx!(_mm256_max_ps(self.0, o.0)))
        }
        /// Per lane √x.
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            F32x8(avx!(_mm256_sqrt_ps(self.0)))
        }
        /// Per lane self < o (false where either is NaN).
        #[inline(always)]
        pub fn lt(self, o: Self) -> M32x8 {
            M32x8(avx!(_mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0)))
        }
        /// Per lane self ≤ o (false where either is NaN).
        #[inline(always)]
        pub fn le(self, o: Self) -> M32x8 {
            M32x8(avx!(_mm256_cmp_ps::<_CMP_LE_OQ>(self.0, o.0)))
        }
        /// Per lane self > o (false where either is NaN).
        #[inline(always)]
        pub fn gt(self, o: Self) -> M32x8 {
            M32x8(avx!(_mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0)))
        }
        /// Per lane self ≥ o (false where either is NaN).
        #[inline(always)]
        pub fn ge(self, o: Self) -> M32x8 {
            M32x8(avx!(_mm256_cmp_ps::<_CMP_GE_OQ>(self.0, o.0)))
        }
        /// Per lane self = o (false where either is NaN).
        #[inline(always)]
        pub fn eq(self, o: Self) -> M32x8 {
            M32x8(avx!(_mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0)))
        }
        /// Not equal, or unordered (so `x.ne(x)` is the NaN test).
        #[inline(always)]
        pub fn ne(self, o: Self) -> M32x8 {
            M32x8(avx!(_mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, o.0)))
        }
        /// Per lane: `a` where `mask`, else `b`.
        #[inline(always)]
        pub fn select(mask: M32x8, a: Self, b: Self) -> Self {
            F32x8(avx!(_mm256_blendv_ps(b.0, a.0, mask.0)))
        }
        /// 2^k from `shifted` = k + 1.5·2²³ (k in the low mantissa bits), by integer ops.
        #[inline(always)]
        pub(super) fn pow2_of_shifted(self) -> Self {
            avx!({
                let bits = _mm256_castps_si256(self.0);
                let k = _mm256_add_epi32(
                    _mm256_sub_epi32(bits, _mm256_set1_epi32(0x4B40_0000)),
                    _mm256_set1_epi32(127),
                );
                F32x8(avx!(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(k))))
            })
        }
        /// x = m·2ᵉ with m ∈ [√½, √2): (e, m), by integer ops on the bits.
        #[inline(always)]
        pub(super) fn split_exponent(self) -> (Self, Self) {
            avx!({
                let bits = _mm256_castps_si256(self.0);
                let adj = _mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f35_04f3));
                let e = _mm256_srai_epi32::<23>(adj);
                let m = _mm256_sub_epi32(bits, _mm256_slli_epi32::<23>(e));
                (F32x8(_mm256_cvtepi32_ps(e)), F32x8(_mm256_castsi256_ps(m)))
            })
        }
    }

    impl M32x8 {
        /// Lanes set in both masks.
        #[inline(always)]
        pub fn and(self, o: Self) -> Self {
            M32x8(avx!(_mm256_and_ps(self.0, o.0)))
        }
        /// Lanes set in either mask.
        #[inline(always)]
        pub fn or(self, o: Self) -> Self {
            M32x8(avx!(_mm256_or_ps(self.0, o.0)))
        }
        /// Lane i set ⇔ bit i set.
        #[inline(always)]
        pub fn bits(self) -> u32 {
            avx!(_mm256_movemask_ps(self.0)) as u32
        }
    }
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
mod imp {
    /// Eight f32 lanes (portable fallback: a plain array).
    #[derive(Clone, Copy, Debug)]
    pub struct F32x8([f32; 8]);

    /// A lane mask.
    #[derive(Clone, Copy, Debug)]
    pub struct M32x8([bool; 8]);

    #[inline(always)]
    fn map(a: F32x8, f: impl Fn(f32) -> f32) -> F32x8 {
        F32x8(std::array::from_fn(|l| f(a.0[l])))
    }
    #[inline(always)]
    fn zip(a: F32x8, b: F32x8, f: impl Fn(f32, f32) -> f32) -> F32x8 {
        F32x8(std::array::from_fn(|l| f(a.0[l], b.0[l])))
    }
    #[inline(always)]
    fn cmp(a: F32x8, b: F32x8, f: impl Fn(f32, f32) -> bool) -> M32x8 {
        M32x8(std::array::from_fn(|l| f(a.0[l], b.0[l])))
    }

    macro_rules! binop {
        ($tr:ident, $f:ident, $op:tt) => {
            impl std::ops::$tr for F32x8 {
                type Output = F32x8;
                #[inline(always)]
                fn $f(self, o: F32x8) -> F32x8 {
                    zip(self, o, |a, b| a $op b)
                }
            }
        };
    }
    binop!(Add, add, +);
    binop!(Sub, sub, -);
    binop!(Mul, mul, *);
    binop!(Div, div, /);

    impl F32x8 {
        /// Every lane `v`.
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            F32x8([v; 8])
        }
        /// The first eight values of `s` (panics if shorter).
        #[inline(always)]
        pub fn load(s: &[f32]) -> Self {
            F32x8(s[..8].try_into().expect("8 values"))
        }
        /// Write the lanes to the first eight values of `s` (panics if shorter).
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            s[..8].copy_from_slice(&self.0)
        }
        /// The lanes as an array.
        #[inline(always)]
        pub fn to_array(self) -> [f32; 8] {
            self.0
        }
        /// self·a + b with one rounding.
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            F32x8(std::array::from_fn(|l| self.0[l].mul_add(a.0[l], b.0[l])))
        }
        /// Per lane min(self, o) (as `minps`: `o` where either is NaN).
        #[inline(always)]
        pub fn min(self, o: Self) -> Self {
            // as minps: the second operand where either is NaN
            zip(self, o, |a, b| if a < b { a } else { b })
        }
        /// Per lane max(self, o) (as `maxps`: `o` where either is NaN).
        #[inline(always)]
        pub fn max(self, o: Self) -> Self {
            zip(self, o, |a, b| if a > b { a } else { b })
        }
        /// Per lane √x.
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            map(self, f32::sqrt)
        }
        /// Per lane self < o (false where either is NaN).
        #[inline(always)]
        pub fn lt(self, o: Self) -> M32x8 {
            cmp(self, o, |a, b| a < b)
        }
        /// Per lane self ≤ o (false where either is NaN).
        #[inline(always)]
        pub fn le(self, o: Self) -> M32x8 {
            cmp(self, o, |a, b| a <= b)
        }
        /// Per lane self > o (false where either is NaN).
        #[inline(always)]
        pub fn gt(self, o: Self) -> M32x8 {
            cmp(self, o, |a, b| a > b)
        }
        /// Per lane self ≥ o (false where either is NaN).
        #[inline(always)]
        pub fn ge(self, o: Self) -> M32x8 {
            cmp(self, o, |a, b| a >= b)
        }
        /// Per lane self = o (false where either is NaN).
        #[inline(always)]
        pub fn eq(self, o: Self) -> M32x8 {
            cmp(self, o, |a, b| a == b)
        }
        /// Not equal, or unordered (so `x.ne(x)` is the NaN test).
        #[inline(always)]
        pub fn ne(self, o: Self) -> M32x8 {
            cmp(self, o, |a, b| a != b)
        }
        /// Per lane: `a` where `mask`, else `b`.
        #[inline(always)]
        pub fn select(mask: M32x8, a: Self, b: Self) -> Self {
            F32x8(std::array::from_fn(
                |l| if mask.0[l] { a.0[l] } else { b.0[l] },
            ))
        }
        #[inline(always)]
        pub(super) fn pow2_of_shifted(self) -> Self {
            map(self, |s| {
                f32::from_bits((s.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23)
            })
        }
        #[inline(always)]
        pub(super) fn split_exponent(self) -> (Self, Self) {
            let e = map(self, |x| {
                ((x.to_bits() as i32).wrapping_sub(0x3f35_04f3) >> 23) as f32
            });
            let m = zip(self, e, |x, e| {
                f32::from_bits((x.to_bits() as i32).wrapping_sub((e as i32) << 23) as u32)
            });
            (e, m)
        }
    }

    impl M32x8 {
        /// Lanes set in both masks.
        #[inline(always)]
        pub fn and(self, o: Self) -> Self {
            M32x8(std::array::from_fn(|l| self.0[l] && o.0[l]))
        }
        /// Lanes set in either mask.
        #[inline(always)]
        pub fn or(self, o: Self) -> Self {
            M32x8(std::array::from_fn(|l| self.0[l] || o.0[l]))
        }
        /// Lane i set ⇔ bit i set.
        #[inline(always)]
        pub fn bits(self) -> u32 {
            (0..8).fold(0, |acc, l| acc | ((self.0[l] as u32) << l))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::F32x8;
    use crate::real::{exp_f32, ln_f32};

    #[test]
    fn lane_exp_and_ln_match_the_scalar_twins() {
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
        for chunk in values.chunks_exact(8) {
            let v = F32x8::load(chunk);
            for (what, lanes, scalar) in [
                ("exp", v.exp().to_array(), exp_f32 as fn(f32) -> f32),
                ("ln", v.ln().to_array(), ln_f32 as fn(f32) -> f32),
            ] {
                for (l, &x) in chunk.iter().enumerate() {
                    let (got, want) = (lanes[l], scalar(x));
                    let same = (got.is_nan() && want.is_nan()) || got.to_bits() == want.to_bits();
                    assert!(same, "{what}({x}): lanes {got}, scalar {want}");
                }
            }
        }
    }

    #[test]
    fn selects_compares_and_masks() {
        let a = F32x8::load(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let b = F32x8::splat(4.5);
        assert_eq!(a.lt(b).bits(), 0b0000_1111);
        assert_eq!(a.ge(b).bits(), 0b1111_0000);
        let s = F32x8::select(a.lt(b), a, b).to_array();
        assert_eq!(s, [1.0, 2.0, 3.0, 4.0, 4.5, 4.5, 4.5, 4.5]);
        let nan = F32x8::splat(f32::NAN);
        assert_eq!(nan.ne(nan).bits(), 0xff);
        assert_eq!(a.mul_add(a, b).to_array()[2], 13.5);
        assert_eq!((-a).abs().to_array(), a.to_array());
    }
}
