//! [`F32x8`] as a plain `[f32; 8]`: the path for any CPU. Each method is the lane-wise
//! scalar operation with the AVX instruction's semantics (`minps`/`maxps` NaN rules,
//! unordered `ne`, fused `mul_add`), so both paths give the same bits; the compiler turns
//! the eight-element loops into whatever vectors the target has (two SSE registers on
//! baseline x86-64).

use super::{Lanes, Mask};

/// Eight f32 lanes (portable: a plain array).
#[derive(Clone, Copy, Debug)]
pub struct F32x8([f32; 8]);

/// A lane mask.
#[derive(Clone, Copy, Debug)]
pub struct M32x8([bool; 8]);

// Plain loops rather than `array::from_fn`: the std helper's closures do not always inline,
// and these run inside the kernels' hottest loops.
#[inline(always)]
fn map(a: F32x8, f: impl Fn(f32) -> f32) -> F32x8 {
    let mut out = [0f32; 8];
    for l in 0..8 {
        out[l] = f(a.0[l]);
    }
    F32x8(out)
}
#[inline(always)]
fn zip(a: F32x8, b: F32x8, f: impl Fn(f32, f32) -> f32) -> F32x8 {
    let mut out = [0f32; 8];
    for l in 0..8 {
        out[l] = f(a.0[l], b.0[l]);
    }
    F32x8(out)
}
#[inline(always)]
fn cmp(a: F32x8, b: F32x8, f: impl Fn(f32, f32) -> bool) -> M32x8 {
    let mut out = [false; 8];
    for l in 0..8 {
        out[l] = f(a.0[l], b.0[l]);
    }
    M32x8(out)
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
super::neg_and_add_assign!(F32x8);

impl Lanes for F32x8 {
    type Mask = M32x8;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        F32x8([v; 8])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        F32x8(s[..8].try_into().expect("8 values"))
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..8].copy_from_slice(&self.0)
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        self.0
    }
    #[inline(always)]
    fn transpose8(rows: [Self; 8]) -> [Self; 8] {
        let mut out = [F32x8([0.0; 8]); 8];
        for (i, o) in out.iter_mut().enumerate() {
            for (j, r) in rows.iter().enumerate() {
                o.0[j] = r.0[i];
            }
        }
        out
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        // one rounding, as vfmadd (a libm call where the CPU has no FMA: same bits, slower)
        let mut out = [0f32; 8];
        for l in 0..8 {
            out[l] = self.0[l].mul_add(a.0[l], b.0[l]);
        }
        F32x8(out)
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // as minps: the second operand where either is NaN
        zip(self, o, |a, b| if a < b { a } else { b })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        zip(self, o, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        map(self, f32::sqrt)
    }
    #[inline(always)]
    fn lt(self, o: Self) -> M32x8 {
        cmp(self, o, |a, b| a < b)
    }
    #[inline(always)]
    fn le(self, o: Self) -> M32x8 {
        cmp(self, o, |a, b| a <= b)
    }
    #[inline(always)]
    fn gt(self, o: Self) -> M32x8 {
        cmp(self, o, |a, b| a > b)
    }
    #[inline(always)]
    fn ge(self, o: Self) -> M32x8 {
        cmp(self, o, |a, b| a >= b)
    }
    #[inline(always)]
    fn eq(self, o: Self) -> M32x8 {
        cmp(self, o, |a, b| a == b)
    }
    #[inline(always)]
    fn ne(self, o: Self) -> M32x8 {
        cmp(self, o, |a, b| a != b)
    }
    #[inline(always)]
    fn select(mask: M32x8, a: Self, b: Self) -> Self {
        let mut out = [0f32; 8];
        for l in 0..8 {
            out[l] = if mask.0[l] { a.0[l] } else { b.0[l] };
        }
        F32x8(out)
    }
    #[inline(always)]
    fn select_by_sign(sign: Self, a: Self, b: Self) -> Self {
        let mut out = [0f32; 8];
        for l in 0..8 {
            out[l] = if sign.0[l].is_sign_negative() {
                a.0[l]
            } else {
                b.0[l]
            };
        }
        F32x8(out)
    }
    #[inline(always)]
    fn pow2_of_shifted(self) -> Self {
        map(self, |s| {
            f32::from_bits((s.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23)
        })
    }
    #[inline(always)]
    fn split_exponent(self) -> (Self, Self) {
        let e = map(self, |x| {
            ((x.to_bits() as i32).wrapping_sub(0x3f35_04f3) >> 23) as f32
        });
        let m = zip(self, e, |x, e| {
            f32::from_bits((x.to_bits() as i32).wrapping_sub((e as i32) << 23) as u32)
        });
        (e, m)
    }
}

impl Mask for M32x8 {
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        let mut out = [false; 8];
        for l in 0..8 {
            out[l] = self.0[l] && o.0[l];
        }
        M32x8(out)
    }
    #[inline(always)]
    fn or(self, o: Self) -> Self {
        let mut out = [false; 8];
        for l in 0..8 {
            out[l] = self.0[l] || o.0[l];
        }
        M32x8(out)
    }
    #[inline(always)]
    fn bits(self) -> u32 {
        (0..8).fold(0, |acc, l| acc | ((self.0[l] as u32) << l))
    }
}
