//! Movement ops: permute/transpose, broadcast, narrow (slice), pad, concat. All are one
//! strided copy (`movement.cu::strided_copy`) with different source/destination strides.

use cudarc::driver::PushKernelArg;

use crate::autograd::{Op, Var};
use crate::device::cuda::grid_for;
use crate::error::{Error, Result};
use crate::ops::{n_u32, Strided3};
use crate::shape::{
    broadcast_shapes, broadcast_strides, contiguous_strides, normalize_axis, numel, StridedLayout,
};
use crate::tensor::{Storage, Tensor};
use crate::with_real;

/// Copy `src` into `dst` (both contiguous buffers) over `shape`, reading at `src_offset +
/// Σ idx·src_strides` and writing at `dst_offset + Σ idx·dst_strides`.
fn strided_copy_into(
    src: &Tensor,
    src_strides: Vec<usize>,
    src_offset: usize,
    dst: &mut Tensor,
    dst_strides: Vec<usize>,
    dst_offset: usize,
    shape: &[usize],
) -> Result<()> {
    let layout = StridedLayout::new(shape, vec![src_strides, dst_strides]);
    let n = numel(shape);
    if n == 0 {
        return Ok(());
    }
    src.same_place("copy", dst)?;
    match (src.storage(), dst.dtype()) {
        (Storage::Cuda(sbuf), _) => {
            let be = sbuf.backend.clone();
            let l = Strided3::from_layout("copy", &layout)?;
            let f = be.function("movement", "strided_copy")?;
            let (nn, so, dso) = (
                n_u32("copy", n)?,
                n_u32("copy", src_offset)?,
                n_u32("copy", dst_offset)?,
            );
            let src_slice = &sbuf.slice;
            let Storage::Cuda(dbuf) = dst.storage_mut()? else {
                unreachable!("same device checked")
            };
            let mut b = be.stream.launch_builder(&f);
            b.arg(&l)
                .arg(&nn)
                .arg(src_slice)
                .arg(&so)
                .arg(&mut dbuf.slice)
                .arg(&dso);
            // SAFETY: the layout addresses elements inside src and dst.
            be.check_launch("strided_copy", unsafe { b.launch(grid_for(n)) })
        }
        _ => with_real!(src, T => {
            let s = src.cpu::<T>()?;
            let d = match dst.storage_mut()? {
                Storage::CpuF32(v) => (v as &mut dyn std::any::Any).downcast_mut::<Vec<T>>(),
                Storage::CpuF64(v) => (v as &mut dyn std::any::Any).downcast_mut::<Vec<T>>(),
                Storage::Cuda(_) => None,
            }.ok_or_else(|| Error::invalid("copy: dtype mismatch"))?;
            // one index decomposition per innermost row, then a strided inner loop
            let row = layout.row_len().max(1);
            let (ss, ds) = (layout.inner_stride(0), layout.inner_stride(1));
            for start in (0..n).step_by(row) {
                let (so, dof) = (src_offset + layout.offset(0, start), dst_offset + layout.offset(1, start));
                if ss == 1 && ds == 1 {
                    d[dof..dof + row].copy_from_slice(&s[so..so + row]);
                } else {
                    for j in 0..row {
                        d[dof + j * ds] = s[so + j * ss];
                    }
                }
            }
            Ok(())
        }),
    }
}

fn empty_like(src: &Tensor, shape: &[usize]) -> Result<Tensor> {
    match src.dtype() {
        crate::tensor::DType::F64 => Tensor::from_cpu_vec(vec![0f64; numel(shape)], shape),
        crate::tensor::DType::F32 => Tensor::zeros(shape, src.device()),
    }
}

/// Reorder axes: `out.shape[d] = x.shape[perm[d]]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let nd = x.ndim();
    let mut seen = vec![false; nd];
    if perm.len() != nd
        || perm
            .iter()
            .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::shape(
            "permute",
            format!("{perm:?} is not a permutation of {nd} axes"),
        ));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let xs = contiguous_strides(x.shape());
    let src_strides: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let mut out = empty_like(x, &shape)?;
    strided_copy_into(
        x,
        src_strides,
        0,
        &mut out,
        contiguous_strides(&shape),
        0,
        &shape,
    )?;
    Ok(out)
}

/// Materialise `x` broadcast (NumPy rules) to `shape`.
pub fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    if broadcast_shapes("broadcast_to", x.shape(), shape)? != shape {
        return Err(Error::shape(
            "broadcast_to",
            format!("cannot broadcast {:?} to {shape:?}", x.shape()),
        ));
    }
    let mut out = empty_like(x, shape)?;
    strided_copy_into(
        x,
        broadcast_strides(x.shape(), shape),
        0,
        &mut out,
        contiguous_strides(shape),
        0,
        shape,
    )?;
    Ok(out)
}

/// Elements `start..start+len` along `axis`.
pub fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    if start + len > x.shape()[axis] {
        return Err(Error::shape(
            "narrow",
            format!(
                "{start}..{} exceeds axis {axis} of {:?}",
                start + len,
                x.shape()
            ),
        ));
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    let xs = contiguous_strides(x.shape());
    let mut out = empty_like(x, &shape)?;
    strided_copy_into(
        x,
        xs.clone(),
        start * xs[axis],
        &mut out,
        contiguous_strides(&shape),
        0,
        &shape,
    )?;
    Ok(out)
}

/// Zeros of `full_shape` with `x` written at `start` along `axis` (narrow's adjoint).
pub fn pad_axis(x: &Tensor, full_shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
    let fits = axis < full_shape.len()
        && x.ndim() == full_shape.len()
        && (0..x.ndim()).all(|d| {
            if d == axis {
                start + x.shape()[d] <= full_shape[d]
            } else {
                x.shape()[d] == full_shape[d]
            }
        });
    if !fits {
        return Err(Error::shape(
            "pad",
            format!(
                "{:?} at {start} on axis {axis} does not fit in {full_shape:?}",
                x.shape()
            ),
        ));
    }
    let mut out = empty_like(x, full_shape)?;
    let os = contiguous_strides(full_shape);
    strided_copy_into(
        x,
        contiguous_strides(x.shape()),
        0,
        &mut out,
        os.clone(),
        start * os[axis],
        x.shape(),
    )?;
    Ok(out)
}

/// Join tensors along `axis` (all other sizes equal).
pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| Error::shape("concat", "nothing to concatenate"))?;
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for p in parts {
        let ok = p.ndim() == first.ndim()
            && (0..p.ndim()).all(|d| d == axis || p.shape()[d] == first.shape()[d]);
        if !ok {
            return Err(Error::shape(
                "concat",
                format!(
                    "{:?} does not fit {:?} on axis {axis}",
                    p.shape(),
                    first.shape()
                ),
            ));
        }
        p.same_place("concat", first)?;
        shape[axis] += p.shape()[axis];
    }
    let mut out = empty_like(first, &shape)?;
    let os = contiguous_strides(&shape);
    let mut at = 0;
    for p in parts {
        strided_copy_into(
            p,
            contiguous_strides(p.shape()),
            0,
            &mut out,
            os.clone(),
            at * os[axis],
            p.shape(),
        )?;
        at += p.shape()[axis];
    }
    Ok(out)
}

// ------------------------------------------------------------------ tape ops

impl Var {
    /// Same elements, new shape.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let y = self.value().reshape(shape)?;
        self.tape().push(Op::Reshape, &[self], y)
    }
    /// Reorder axes.
    pub fn permute(&self, perm: &[usize]) -> Result<Var> {
        let y = permute(self.value(), perm)?;
        self.tape().push(Op::Permute(perm.to_vec()), &[self], y)
    }
    /// Swap two axes.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Var> {
        let nd = self.shape().len();
        let (a, b) = (
            normalize_axis("transpose", a, nd)?,
            normalize_axis("transpose", b, nd)?,
        );
        let mut perm: Vec<usize> = (0..nd).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }
    /// Broadcast to `shape` (materialised).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var> {
        let y = broadcast_to(self.value(), shape)?;
        self.tape().push(Op::BroadcastTo, &[self], y)
    }
    /// Elements `start..start+len` along `axis`.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Var> {
        let axis = normalize_axis("narrow", axis, self.shape().len())?;
        let y = narrow(self.value(), axis, start, len)?;
        self.tape().push(Op::Narrow { axis, start }, &[self], y)
    }
    /// Zeros of `full_shape` with `self` written at `start` along `axis` (narrow's adjoint).
    pub fn pad(&self, full_shape: &[usize], axis: isize, start: usize) -> Result<Var> {
        let axis = normalize_axis("pad", axis, self.shape().len())?;
        let y = pad_axis(self.value(), full_shape, axis, start)?;
        self.tape().push(Op::Pad { axis, start }, &[self], y)
    }
    /// Join along `axis`.
    pub fn concat(parts: &[&Var], axis: isize) -> Result<Var> {
        let first = parts
            .first()
            .ok_or_else(|| Error::shape("concat", "nothing to concatenate"))?;
        let axis = normalize_axis("concat", axis, first.shape().len())?;
        let values: Vec<&Tensor> = parts.iter().map(|v| v.value()).collect();
        let y = concat(&values, axis)?;
        first.tape().push(Op::Concat { axis }, parts, y)
    }
}
