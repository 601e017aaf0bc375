//! Batched matrix product `C = op(A) · op(B)` with optional transposes.
//!
//! Shapes: `A [..., m, k]` (or `[..., k, m]` with `trans_a`), `B [..., k, n]` (or `[..., n, k]`
//! with `trans_b`) → `C [..., m, n]`. Batch dims must be equal, or one operand is 2-D and is
//! shared by the whole batch (a Linear layer on `[B, N, F]`). CPU: f32 on the AVX2 + FMA path
//! through [`panel_gemm::gemm_strided_f32`] (B packed, row blocks over rayon), f64 and the
//! portable path through `matrixmultiply`'s dgemm / sgemm (strides make transposes free). CUDA: cuBLAS strided
//! batched sgemm, row-major via the transposed column-major product.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use rayon::prelude::*;

use crate::autograd::{Op, Operand, Var};
use crate::error::{Error, Result};
use crate::ops::panel_gemm;
use crate::real::Real;
use crate::shape::numel;
use crate::tensor::{DType, Storage, Tensor};

/// Problem sizes of one `matmul` call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    a_batched: bool,
    b_batched: bool,
}

fn dims(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<(Dims, Vec<usize>)> {
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::shape(
            "matmul",
            format!("operands must be at least 2-d, got {a:?} and {b:?}"),
        ));
    }
    let (ra, ca) = (a[a.len() - 2], a[a.len() - 1]);
    let (rb, cb) = (b[b.len() - 2], b[b.len() - 1]);
    let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if tb { (cb, rb) } else { (rb, cb) };
    if k != kb {
        return Err(Error::shape(
            "matmul",
            format!(
                "inner sizes differ: {a:?}{} x {b:?}{}",
                if ta { "ᵀ" } else { "" },
                if tb { "ᵀ" } else { "" }
            ),
        ));
    }
    let (ba, bb) = (&a[..a.len() - 2], &b[..b.len() - 2]);
    let batch_shape = if ba == bb || bb.is_empty() {
        ba.to_vec()
    } else if ba.is_empty() {
        bb.to_vec()
    } else {
        return Err(Error::shape(
            "matmul",
            format!("batch dims differ: {a:?} x {b:?}"),
        ));
    };
    let mut out = batch_shape.clone();
    out.extend([m, n]);
    let d = Dims {
        batch: numel(&batch_shape),
        m,
        k,
        n,
        a_batched: !ba.is_empty(),
        b_batched: !bb.is_empty(),
    };
    Ok((d, out))
}

/// `op(A) · op(B)`; see the module doc for shapes.
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    a.same_place("matmul", b)?;
    let (mut d, out_shape) = dims(a.shape(), b.shape(), trans_a, trans_b)?;
    // A batched A against a shared B without transpose is one tall GEMM.
    if d.a_batched && !d.b_batched && !trans_a {
        d = Dims {
            batch: 1,
            m: d.batch * d.m,
            a_batched: false,
            ..d
        };
    }
    match a.storage() {
        Storage::Cuda(_) => cuda_matmul(a, b, trans_a, trans_b, d, &out_shape),
        _ => match a.dtype() {
            DType::F32 => Tensor::from_cpu_vec(
                cpu_matmul::<f32>(a.cpu()?, b.cpu()?, trans_a, trans_b, d),
                &out_shape,
            ),
            DType::F64 => Tensor::from_cpu_vec(
                cpu_matmul::<f64>(a.cpu()?, b.cpu()?, trans_a, trans_b, d),
                &out_shape,
            ),
        },
    }
}

/// `c = op(a) · op(b)` (or `c += …` with `accumulate`) for raw row-major operands with
/// explicit strides.
///
/// # Safety
/// The pointers and strides must address valid m×k, k×n and m×n matrices (non-null and
/// aligned), and C must not overlap A or B.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    csb: isize,
    c: *mut T,
    rsc: isize,
    accumulate: bool,
) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    let strides = [rsa, csa, rsb, csb, rsc];
    let nonempty = m > 0 && n > 0 && k > 0;
    if nonempty && is_f32 && panel_gemm::fast_path_available() && strides.iter().all(|&s| s >= 0) {
        // the packed-panel GEMM (module doc of `panel_gemm`): slices spanning exactly the
        // elements the strides address
        let span = |rows: usize, cols: usize, rs: isize, cs: isize| {
            if rows == 0 || cols == 0 {
                0
            } else {
                (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1
            }
        };
        let (sa, sb, sc) = (
            span(m, k, rsa, csa),
            span(k, n, rsb, csb),
            span(m, n, rsc, 1),
        );
        // SAFETY: the caller guarantees valid m×k, k×n and m×n matrices at these strides;
        // each slice covers exactly the addressed span.
        let (a, b, c) = (
            std::slice::from_raw_parts(a as *const f32, sa),
            std::slice::from_raw_parts(b as *const f32, sb),
            std::slice::from_raw_parts_mut(c as *mut f32, sc),
        );
        panel_gemm::gemm_strided_f32(
            m,
            k,
            n,
            (a, rsa as usize, csa as usize),
            (b, rsb as usize, csb as usize),
            c,
            rsc as usize,
            accumulate,
        );
        return;
    }
    if is_f32 {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a as *const f32,
            rsa,
            csa,
            b as *const f32,
            rsb,
            csb,
            beta as f32,
            c as *mut f32,
            rsc,
            1,
        );
    } else {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a as *const f64,
            rsa,
            csa,
            b as *const f64,
            rsb,
            csb,
            beta,
            c as *mut f64,
            rsc,
            1,
        );
    }
}

/// A strided matrix operand: (slice, row stride, column stride).
pub(crate) type Strided<'a, T> = (&'a [T], usize, usize);

/// `c[m, n] = a[m, k] · b[k, n]` (overwritten) for strided `a`, `b` and a row-major `c`
/// with row stride `rsc`. Panics (a bug, never user input) if an operand's slice is too
/// short for its strides.
pub(crate) fn gemm_strided<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: Strided<T>,
    b: Strided<T>,
    c: &mut [T],
    rsc: usize,
) {
    gemm_strided_into(m, k, n, a, b, c, rsc, false)
}

/// [`gemm_strided`] adding into `c`: `c[m, n] += a[m, k] · b[k, n]`.
pub(crate) fn gemm_strided_add<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: Strided<T>,
    b: Strided<T>,
    c: &mut [T],
    rsc: usize,
) {
    gemm_strided_into(m, k, n, a, b, c, rsc, true)
}

#[allow(clippy::too_many_arguments)]
fn gemm_strided_into<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: Strided<T>,
    b: Strided<T>,
    c: &mut [T],
    rsc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        rsc >= n && c.len() > last(m, n, rsc, 1),
        "gemm_strided: output too short"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * rsc..r * rsc + n]
                    .iter_mut()
                    .for_each(|v| *v = T::zero());
            }
        }
        return;
    }
    assert!(
        a.0.len() > last(m, k, a.1, a.2),
        "gemm_strided: left operand too short"
    );
    assert!(
        b.0.len() > last(k, n, b.1, b.2),
        "gemm_strided: right operand too short"
    );
    // SAFETY: the asserts above bound every element the strides address.
    unsafe {
        gemm_raw(
            m,
            k,
            n,
            a.0.as_ptr(),
            a.1 as isize,
            a.2 as isize,
            b.0.as_ptr(),
            b.1 as isize,
            b.2 as isize,
            c.as_mut_ptr(),
            rsc as isize,
            accumulate,
        )
    }
}

/// One GEMM `c[m, n] = op(a) · op(b)` on row-major slices. f32 on the AVX2 + FMA path goes
/// to [`panel_gemm::gemm_strided_f32`] (B packed once, row blocks over rayon; 1.3–1.7×
/// matrixmultiply at the network shapes on a Zen 5 core with AVX-512, session 12); f64 and
/// the portable path use matrixmultiply, which parallelises a large GEMM itself.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Real>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize, ta: bool, tb: bool) {
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.iter_mut().for_each(|v| *v = T::zero());
        return;
    }
    // SAFETY: strides describe exactly the buffers passed in.
    unsafe {
        gemm_raw(
            m,
            k,
            n,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            c.as_mut_ptr(),
            n as isize,
            false,
        )
    };
}

fn cpu_matmul<T: Real>(a: &[T], b: &[T], ta: bool, tb: bool, d: Dims) -> Vec<T> {
    let Dims {
        batch,
        m,
        k,
        n,
        a_batched,
        b_batched,
    } = d;
    let mut out = vec![T::zero(); batch * m * n];
    if m * n == 0 {
        return out;
    }
    let item = |bi: usize, c: &mut [T]| {
        let a_item = if a_batched {
            &a[bi * m * k..(bi + 1) * m * k]
        } else {
            &a[..m * k]
        };
        let b_item = if b_batched {
            &b[bi * k * n..(bi + 1) * k * n]
        } else {
            &b[..k * n]
        };
        gemm(a_item, b_item, c, m, k, n, ta, tb);
    };
    // Many small products: one per rayon task. Few large ones: each GEMM splits its own rows.
    if batch >= rayon::current_num_threads() && m * k * n <= 64 * 64 * 64 {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(bi, c)| item(bi, c));
    } else {
        out.chunks_mut(m * n)
            .enumerate()
            .for_each(|(bi, c)| item(bi, c));
    }
    out
}

/// The column-major cuBLAS configuration of the row-major product C[m, n] = op(A)·op(B) + β·C
/// with op(A) `[m, k]` and op(B) `[k, n]`: column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so the caller
/// passes B as cuBLAS's first operand and A as its second. `what` names the op in the error
/// for a dimension beyond i32.
pub(crate) fn row_major_gemm(
    what: &'static str,
    (ta, tb): (bool, bool),
    (m, k, n): (usize, usize, usize),
    beta: f32,
) -> Result<GemmConfig<f32>> {
    let int = |v: usize| {
        i32::try_from(v).map_err(|_| Error::shape(what, "dimension exceeds i32 for cuBLAS"))
    };
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    Ok(GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: int(n)?,
        n: int(m)?,
        k: int(k)?,
        alpha: 1.0f32,
        lda: int(if tb { k } else { n })?,
        ldb: int(if ta { m } else { k })?,
        beta,
        ldc: int(n)?,
    })
}

fn cuda_matmul(
    a: &Tensor,
    b: &Tensor,
    ta: bool,
    tb: bool,
    d: Dims,
    out_shape: &[usize],
) -> Result<Tensor> {
    let (abuf, bbuf) = (a.cuda()?, b.cuda()?);
    let be = &abuf.backend;
    let Dims {
        batch,
        m,
        k,
        n,
        a_batched,
        b_batched,
    } = d;
    let mut out = be.alloc::<f32>(batch * m * n)?;
    if m * n > 0 && k == 0 {
        crate::device::buffers::fill(be, &mut out, batch * m * n, 0.0)?;
    }
    if m * n * k > 0 {
        let blas = be.blas()?;
        let int = |v: usize| {
            i32::try_from(v).map_err(|_| Error::shape("matmul", "dimension exceeds i32 for cuBLAS"))
        };
        let gemm = row_major_gemm("matmul", (ta, tb), (m, k, n), 0.0)?;
        let cfg = StridedBatchedConfig {
            gemm,
            batch_size: int(batch)?,
            stride_a: if b_batched { (k * n) as i64 } else { 0 },
            stride_b: if a_batched { (m * k) as i64 } else { 0 },
            stride_c: (m * n) as i64,
        };
        // SAFETY: leading dimensions and strides describe the row-major buffers exactly.
        unsafe { blas.gemm_strided_batched(cfg, &bbuf.slice, &abuf.slice, &mut out) }.map_err(
            |e| Error::Cuda {
                what: "cublasSgemmStridedBatched".into(),
                msg: format!("{e:?}"),
            },
        )?;
    }
    Ok(Tensor::from_cuda(out, be.clone(), out_shape))
}

impl Var {
    /// `self · other` (batched; see [`matmul`]).
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        self.matmul_t(other, false, false)
    }
    /// `op(self) · op(other)` with optional transposes of the last two axes.
    pub fn matmul_t(&self, other: &Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        let y = matmul(self.value(), other.value(), trans_a, trans_b)?;
        self.tape()
            .push(Op::MatMul { trans_a, trans_b }, &[self, other], y)
    }
}

/// Sum a batched gradient `[..., r, c]` over its batch axes (gradient of a shared 2-D operand).
fn sum_batch<G: Operand>(g: G) -> Result<G> {
    let nd = g.shape().len();
    if nd <= 2 {
        return Ok(g);
    }
    let (r, c) = (g.shape()[nd - 2], g.shape()[nd - 1]);
    let batch = g.value().numel() / (r * c).max(1);
    g.reshape(&[batch, r, c])?.sum_axis(0, false)
}

/// C = op(A)·op(B):  with G = ∂L/∂C,
/// (N,N): dA = G·Bᵀ,   dB = Aᵀ·G
/// (N,T): dA = G·B,    dB = Gᵀ·A
/// (T,N): dA = B·Gᵀ,   dB = A·G
/// (T,T): dA = Bᵀ·Gᵀ,  dB = Gᵀ·Aᵀ
/// A shared 2-D operand's gradient is summed over the batch; for the common Linear case
/// (batched A, shared B, no transpose on A) the batch is folded into the GEMM's rows.
/// Generic over tensors (fast path) and recorded `Var`s (differentiable: each product is
/// itself a matmul on the tape).
pub(crate) fn backward_matmul<G: Operand>(
    a: &G,
    b: &G,
    ta: bool,
    tb: bool,
    g: &G,
    needs: &[bool],
) -> Result<Vec<Option<G>>> {
    let da = if needs[0] {
        Some(grad_a(a, b, ta, tb, g)?)
    } else {
        None
    };
    let db = if needs[1] {
        Some(grad_b(a, b, ta, tb, g)?)
    } else {
        None
    };
    Ok(vec![da, db])
}

fn grad_a<G: Operand>(a: &G, b: &G, ta: bool, tb: bool, g: &G) -> Result<G> {
    let da = match (ta, tb) {
        (false, false) => g.matmul_t(b, false, true)?,
        (false, true) => g.matmul_t(b, false, false)?,
        (true, false) => b.matmul_t(g, false, true)?,
        (true, true) => b.matmul_t(g, true, true)?,
    };
    let da = if a.shape().len() == 2 {
        sum_batch(da)?
    } else {
        da
    };
    da.reshape(a.shape())
}

fn grad_b<G: Operand>(a: &G, b: &G, ta: bool, tb: bool, g: &G) -> Result<G> {
    let (and, gnd) = (a.shape().len(), g.shape().len());
    let db = if b.shape().len() == 2 && and > 2 && !ta {
        let k = a.shape()[and - 1];
        let n = g.shape()[gnd - 1];
        let a2 = a.reshape(&[a.value().numel() / k.max(1), k])?;
        let g2 = g.reshape(&[g.value().numel() / n.max(1), n])?;
        if tb {
            g2.matmul_t(&a2, true, false)?
        } else {
            a2.matmul_t(&g2, true, false)?
        }
    } else {
        let db = match (ta, tb) {
            (false, false) => a.matmul_t(g, true, false)?,
            (false, true) => g.matmul_t(a, true, false)?,
            (true, false) => a.matmul_t(g, false, false)?,
            (true, true) => g.matmul_t(a, true, true)?,
        };
        if b.shape().len() == 2 {
            sum_batch(db)?
        } else {
            db
        }
    };
    db.reshape(b.shape())
}
