//! Tensor operations, one file per family. Each file holds the op's math (doc comments),
//! its CPU implementation (generic over f32/f64, parallel with rayon), its CUDA dispatch,
//! and — in the `impl Var` block — the tape op. The basic ops' derivative rules form one
//! table in `autograd/rules.rs` (written once for tensors and for recorded `Var`s, so they
//! are differentiable to any order); the fused ops (Chamfer, Sinkhorn, RQS) implement
//! `autograd::CustomOp` here, with their hand-written fused backward.

pub mod chamfer;
pub mod edge_mlp;
pub mod elementwise;
pub mod epic;
pub mod index;
pub mod matmul;
pub mod message;
pub mod movement;
pub mod panel_gemm;
pub mod random;
pub mod reduce;
pub mod rqs;
pub mod sinkhorn;
pub mod work;

use cudarc::driver::DeviceRepr;

use crate::error::{Error, Result};
use crate::shape::{StridedLayout, MAX_DIMS};

/// Kernel-side copy of a [`StridedLayout`] with up to 3 operands (`Strided3` in common.cuh).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Strided3 {
    pub ndim: u32,
    pub shape: [u32; MAX_DIMS],
    pub stride: [[u32; MAX_DIMS]; 3],
}

// SAFETY: plain-old-data with the same layout as the CUDA struct.
unsafe impl DeviceRepr for Strided3 {}

impl Strided3 {
    /// Pack a layout for a kernel; errors for more than 8 (merged) dims or 2^32 elements.
    pub fn from_layout(op: &'static str, l: &StridedLayout) -> Result<Strided3> {
        if l.shape.len() > MAX_DIMS || l.strides.len() > 3 {
            return Err(Error::shape(
                op,
                format!("at most {MAX_DIMS} non-mergeable dims on CUDA"),
            ));
        }
        let mut k = Strided3 {
            ndim: l.shape.len() as u32,
            ..Default::default()
        };
        for (d, &n) in l.shape.iter().enumerate() {
            k.shape[d] =
                u32::try_from(n).map_err(|_| Error::shape(op, "dimension exceeds 2^32"))?;
            for (o, s) in l.strides.iter().enumerate() {
                k.stride[o][d] =
                    u32::try_from(s[d]).map_err(|_| Error::shape(op, "stride exceeds 2^32"))?;
            }
        }
        Ok(k)
    }
}

/// `Err` naming `op` and `what` unless `shape == want` (the public backward functions check
/// every buffer they are given, so no kernel ever runs on buffers of the wrong size).
pub(crate) fn expect_shape(
    op: &'static str,
    what: &str,
    shape: &[usize],
    want: &[usize],
) -> Result<()> {
    if shape == want {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("{what} must be {want:?}, got {shape:?}"),
        ))
    }
}

/// Element count as the `u32` kernels take.
pub(crate) fn n_u32(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| Error::shape(op, format!("{n} elements exceed the 2^32 kernel limit")))
}

/// Elements below which CPU loops run on the calling thread: handing small jobs to the
/// rayon pool (a cross-thread wake-up) costs more than the work.
pub(crate) const PAR_MIN: usize = 1 << 17;

/// Writes `value` into every slot of `slots` and returns them as initialised values: lets a
/// parallel kernel fill an output chunk by chunk, in the thread that then writes the chunk,
/// instead of one serial memset of the whole buffer first.
pub(crate) fn filled<T: Copy>(slots: &mut [std::mem::MaybeUninit<T>], value: T) -> &mut [T] {
    slots.fill(std::mem::MaybeUninit::new(value));
    // SAFETY: every element was just initialised, and MaybeUninit<T> has T's layout.
    unsafe { &mut *(slots as *mut [std::mem::MaybeUninit<T>] as *mut [T]) }
}

/// `f(chunk_index, chunk)` over `chunk`-sized pieces of `out`, in parallel only when `out`
/// is larger than one chunk.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    if out.len() <= chunk {
        f(0, out);
    } else {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// `(0..n).map(f).collect()`, in parallel when `work` (elements touched) is large.
pub(crate) fn map_range<R: Send>(
    n: usize,
    work: usize,
    f: impl Fn(usize) -> R + Sync + Send,
) -> Vec<R> {
    use rayon::prelude::*;
    if work <= PAR_MIN {
        (0..n).map(f).collect()
    } else {
        (0..n).into_par_iter().map(f).collect()
    }
}

/// Leaky ReLU of a scalar: u for u > 0, else slope·u (the fused CPU ops' activation: the
/// EPiC layers and MPGAN's edge network).
#[inline(always)]
pub(crate) fn leaky_relu<T: crate::real::Real>(u: T, slope: T) -> T {
    if u > T::zero() {
        u
    } else {
        slope * u
    }
}

/// d leaky_relu / du: 1 for u > 0, else slope. With slope > 0 the activation has the sign of
/// its input, so either may be passed.
#[inline(always)]
pub(crate) fn leaky_relu_grad<T: crate::real::Real>(u: T, slope: T) -> T {
    if u > T::zero() {
        T::one()
    } else {
        slope
    }
}
