//! [`F32x8`] as one AVX register, for the AVX2 + FMA path.
//!
//! The crate is not compiled for AVX2, so these methods are only correct where the CPU has
//! AVX2 and FMA, and only fast inside a function compiled with those features (where the
//! intrinsics inline into single instructions). Both hold for the one way kernel code gets
//! here: [`crate::simd::dispatch`], which enters a `#[target_feature(enable = "avx2,fma")]`
//! function only with an [`crate::simd::Isa`] proving the CPU has them. Nothing else in the
//! crate may use this type.

use std::arch::x86_64::*;

use super::{Lanes, Mask};

/// Calls AVX/AVX2/FMA intrinsics. SAFETY: values of [`F32x8`] exist only inside code
/// reached through [`crate::simd::dispatch`] on a CPU with AVX2 + FMA (see the module doc).
macro_rules! avx {
    ($e:expr) => {{
        // some intrinsics (the casts) are safe functions; the rest need the block
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
super::neg_and_add_assign!(F32x8);

impl Lanes for F32x8 {
    type Mask = M32x8;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        F32x8(avx!(_mm256_set1_ps(v)))
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        let s = &s[..8];
        // SAFETY (beyond the module's): `s` holds 8 f32 (checked by the slice); unaligned load.
        F32x8(avx!(_mm256_loadu_ps(s.as_ptr())))
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        let s = &mut s[..8];
        // SAFETY (beyond the module's): `s` has room for 8 f32 (checked); unaligned store.
        avx!(_mm256_storeu_ps(s.as_mut_ptr(), self.0))
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        let mut a = [0f32; 8];
        self.store(&mut a);
        a
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        F32x8(avx!(_mm256_fmadd_ps(self.0, a.0, b.0)))
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        F32x8(avx!(_mm256_min_ps(self.0, o.0)))
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        F32x8(avx!(_mm256_max_ps(self.0, o.0)))
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        F32x8(avx!(_mm256_sqrt_ps(self.0)))
    }
    #[inline(always)]
    fn lt(self, o: Self) -> M32x8 {
        M32x8(avx!(_mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0)))
    }
    #[inline(always)]
    fn le(self, o: Self) -> M32x8 {
        M32x8(avx!(_mm256_cmp_ps::<_CMP_LE_OQ>(self.0, o.0)))
    }
    #[inline(always)]
    fn gt(self, o: Self) -> M32x8 {
        M32x8(avx!(_mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0)))
    }
    #[inline(always)]
    fn ge(self, o: Self) -> M32x8 {
        M32x8(avx!(_mm256_cmp_ps::<_CMP_GE_OQ>(self.0, o.0)))
    }
    #[inline(always)]
    fn eq(self, o: Self) -> M32x8 {
        M32x8(avx!(_mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0)))
    }
    #[inline(always)]
    fn ne(self, o: Self) -> M32x8 {
        M32x8(avx!(_mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, o.0)))
    }
    #[inline(always)]
    fn select(mask: M32x8, a: Self, b: Self) -> Self {
        F32x8(avx!(_mm256_blendv_ps(b.0, a.0, mask.0)))
    }
    #[inline(always)]
    fn select_by_sign(sign: Self, a: Self, b: Self) -> Self {
        F32x8(avx!(_mm256_blendv_ps(b.0, a.0, sign.0)))
    }
    #[inline(always)]
    fn pow2_of_shifted(self) -> Self {
        avx!({
            let bits = _mm256_castps_si256(self.0);
            let k = _mm256_add_epi32(
                _mm256_sub_epi32(bits, _mm256_set1_epi32(0x4B40_0000)),
                _mm256_set1_epi32(127),
            );
            F32x8(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(k)))
        })
    }
    #[inline(always)]
    fn transpose8(r: [Self; 8]) -> [Self; 8] {
        avx!({
            // pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped
            let t0 = _mm256_unpacklo_ps(r[0].0, r[1].0);
            let t1 = _mm256_unpackhi_ps(r[0].0, r[1].0);
            let t2 = _mm256_unpacklo_ps(r[2].0, r[3].0);
            let t3 = _mm256_unpackhi_ps(r[2].0, r[3].0);
            let t4 = _mm256_unpacklo_ps(r[4].0, r[5].0);
            let t5 = _mm256_unpackhi_ps(r[4].0, r[5].0);
            let t6 = _mm256_unpacklo_ps(r[6].0, r[7].0);
            let t7 = _mm256_unpackhi_ps(r[6].0, r[7].0);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                F32x8(_mm256_permute2f128_ps::<0x20>(u0, u4)),
                F32x8(_mm256_permute2f128_ps::<0x20>(u1, u5)),
                F32x8(_mm256_permute2f128_ps::<0x20>(u2, u6)),
                F32x8(_mm256_permute2f128_ps::<0x20>(u3, u7)),
                F32x8(_mm256_permute2f128_ps::<0x31>(u0, u4)),
                F32x8(_mm256_permute2f128_ps::<0x31>(u1, u5)),
                F32x8(_mm256_permute2f128_ps::<0x31>(u2, u6)),
                F32x8(_mm256_permute2f128_ps::<0x31>(u3, u7)),
            ]
        })
    }
    #[inline(always)]
    fn split_exponent(self) -> (Self, Self) {
        avx!({
            let bits = _mm256_castps_si256(self.0);
            let adj = _mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f35_04f3));
            let e = _mm256_srai_epi32::<23>(adj);
            let m = _mm256_sub_epi32(bits, _mm256_slli_epi32::<23>(e));
            (F32x8(_mm256_cvtepi32_ps(e)), F32x8(_mm256_castsi256_ps(m)))
        })
    }
}

impl Mask for M32x8 {
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        M32x8(avx!(_mm256_and_ps(self.0, o.0)))
    }
    #[inline(always)]
    fn or(self, o: Self) -> Self {
        M32x8(avx!(_mm256_or_ps(self.0, o.0)))
    }
    #[inline(always)]
    fn bits(self) -> u32 {
        avx!(_mm256_movemask_ps(self.0)) as u32
    }
}
