//! Reductions and scans along an axis: sum, mean, max, logsumexp, softmax, log-softmax,
//! cumsum. The tensor is viewed as `[outer, n, inner]` around the axis; every
//! `(outer, inner)` line is independent. CPU sums accumulate in f64.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use rayon::prelude::*;

use crate::autograd::{Op, Var};
use crate::error::Result;
use crate::ops::index::Indices;
use crate::ops::{map_range, n_u32};
use crate::real::Real;
use crate::shape::{normalize_axis, outer_axis_inner};
use crate::tensor::{Storage, Tensor};
use crate::with_real;

pub(crate) fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

/// Launch shape for line kernels: a warp per line when the line is contiguous (inner = 1),
/// else a thread per line (see reduce.cu).
fn line_config(lines: usize, inner: usize) -> LaunchConfig {
    let threads = if inner == 1 { lines * 32 } else { lines };
    crate::device::cuda::grid_for(threads)
}

/// Run a reduce.cu line kernel `name(outer, n, inner, [flag], x, out, [argmax])`.
fn launch_lines(
    name: &'static str,
    x: &Tensor,
    axis: usize,
    flag: Option<i32>,
    out_len: usize,
    with_argmax: bool,
) -> Result<(
    cudarc::driver::CudaSlice<f32>,
    Option<cudarc::driver::CudaSlice<u32>>,
)> {
    let buf = x.cuda()?;
    let be = &buf.backend;
    let (outer, n, inner) = outer_axis_inner(x.shape(), axis);
    let mut out = be.alloc::<f32>(out_len)?;
    let mut argmax = if with_argmax {
        Some(be.alloc::<u32>(outer * inner)?)
    } else {
        None
    };
    let f = be.function("reduce", name)?;
    let (o, nn, i) = (n_u32(name, outer)?, n_u32(name, n)?, n_u32(name, inner)?);
    let mut b = be.stream.launch_builder(&f);
    b.arg(&o).arg(&nn).arg(&i);
    if let Some(flag) = flag.as_ref() {
        b.arg(flag);
    }
    b.arg(&buf.slice).arg(&mut out);
    if let Some(a) = argmax.as_mut() {
        b.arg(a);
    }
    let cfg = if name == "cumsum_forward" {
        crate::device::cuda::grid_for(outer * inner)
    } else {
        line_config(outer * inner, inner)
    };
    // SAFETY: argument lists match reduce.cu; out holds out_len elements.
    be.check_launch(name, unsafe { b.launch(cfg) })?;
    Ok((out, argmax))
}

/// Apply `f(line_values) -> value` to every line on the CPU; returns `[outer·inner]`.
fn cpu_lines<T: Real, F: Fn(&mut dyn Iterator<Item = T>) -> T + Sync>(
    xs: &[T],
    shape: &[usize],
    axis: usize,
    f: F,
) -> Vec<T> {
    let (outer, n, inner) = outer_axis_inner(shape, axis);
    map_range(outer * inner, xs.len(), |line| {
        let (o, i) = (line / inner, line % inner);
        let base = o * n * inner + i;
        f(&mut (0..n).map(|j| xs[base + j * inner]))
    })
}

/// Σ over `axis`: `[.., n, ..] → [.., ..]` (or `[.., 1, ..]` with keepdim).
/// An empty axis sums to 0 (`[0, 3]` over axis 0 → `[3]` of zeros); an empty output
/// (`[0, 0]` over axis 0 → `[0]`) is an empty tensor.
pub fn sum_axis(x: &Tensor, axis: usize, keepdim: bool) -> Result<Tensor> {
    if axis >= x.shape().len() {
        return Err(crate::error::Error::shape(
            "sum",
            format!("axis {axis} out of range for shape {:?}", x.shape()),
        ));
    }
    let shape = reduced_shape(x.shape(), axis, keepdim);
    if x.numel() == 0 {
        return match x.dtype() {
            crate::tensor::DType::F64 => {
                Tensor::from_cpu_vec(vec![0f64; crate::shape::numel(&shape)], &shape)
            }
            crate::tensor::DType::F32 => Tensor::zeros(&shape, x.device()),
        };
    }
    if let Storage::Cuda(buf) = x.storage() {
        let (out, _) = launch_lines(
            "reduce_sum",
            x,
            axis,
            None,
            crate::shape::numel(&shape),
            false,
        )?;
        return Ok(Tensor::from_cuda(out, buf.backend.clone(), &shape));
    }
    with_real!(x, T => {
        let out = cpu_sum_axis(x.cpu::<T>()?, x.shape(), axis);
        Tensor::from_cpu_vec(out, &shape)
    })
}

/// Σ over the axis with f64 accumulators. Contiguous lines (inner = 1) are summed per line;
/// otherwise whole rows `x[o, j, :]` are added into an accumulator row, in column blocks
/// spread over threads, so memory is read in order.
fn cpu_sum_axis<T: Real>(xs: &[T], shape: &[usize], axis: usize) -> Vec<T> {
    let (outer, n, inner) = outer_axis_inner(shape, axis);
    if outer * inner == 0 {
        return Vec::new();
    }
    if inner == 1 {
        return map_range(outer, xs.len(), |o| {
            T::from_f64(sum_f64(&xs[o * n..(o + 1) * n]))
        });
    }
    let block = 256.min(inner);
    let blocks_per_row = inner.div_ceil(block);
    let pieces: Vec<Vec<T>> = map_range(outer * blocks_per_row, xs.len(), |t| {
        let (o, i0) = (t / blocks_per_row, (t % blocks_per_row) * block);
        let width = block.min(inner - i0);
        let mut acc = vec![0f64; width];
        for j in 0..n {
            let row = &xs[(o * n + j) * inner + i0..][..width];
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v.to_f64();
            }
        }
        acc.into_iter().map(T::from_f64).collect()
    });
    pieces.concat()
}

/// max over `axis` and the index of its first occurrence (NaN counts as largest).
pub fn max_axis(x: &Tensor, axis: usize, keepdim: bool) -> Result<(Tensor, Indices)> {
    let shape = reduced_shape(x.shape(), axis, keepdim);
    if x.shape()[axis] == 0 {
        return Err(crate::error::Error::shape(
            "max",
            "cannot take the max of an empty axis",
        ));
    }
    if let Storage::Cuda(buf) = x.storage() {
        let (out, am) = launch_lines(
            "reduce_max",
            x,
            axis,
            None,
            crate::shape::numel(&shape),
            true,
        )?;
        let be = buf.backend.clone();
        return Ok((
            Tensor::from_cuda(out, be.clone(), &shape),
            Indices::from_cuda(am.expect("requested"), be, &shape),
        ));
    }
    let (outer, n, inner) = outer_axis_inner(x.shape(), axis);
    with_real!(x, T => {
        let xs = x.cpu::<T>()?;
        let (vals, idx): (Vec<T>, Vec<u32>) = (0..outer * inner).into_par_iter().map(|line| {
            let (o, i) = (line / inner, line % inner);
            let base = o * n * inner + i;
            let mut best = (xs[base], 0u32);
            for j in 1..n {
                let v = xs[base + j * inner];
                let v_nan = v.to_f64().is_nan();
                let b_nan = best.0.to_f64().is_nan();
                if !b_nan && (v > best.0 || v_nan) {
                    best = (v, j as u32);
                }
            }
            best
        }).unzip();
        Ok((Tensor::from_cpu_vec(vals, &shape)?, Indices::new(idx, &shape)?))
    })
}

/// log Σ exp over `axis`, stabilised by the line max; −∞ for an all −∞ line.
pub fn logsumexp_axis(x: &Tensor, axis: usize, keepdim: bool) -> Result<Tensor> {
    let shape = reduced_shape(x.shape(), axis, keepdim);
    if let Storage::Cuda(buf) = x.storage() {
        let (out, _) = launch_lines(
            "reduce_logsumexp",
            x,
            axis,
            None,
            crate::shape::numel(&shape),
            false,
        )?;
        return Ok(Tensor::from_cuda(out, buf.backend.clone(), &shape));
    }
    with_real!(x, T => {
        let out = cpu_lines(x.cpu::<T>()?, x.shape(), axis, |it| {
            let vals: Vec<f64> = it.map(|v| v.to_f64()).collect();
            T::from_f64(lse_f64(&vals))
        });
        Tensor::from_cpu_vec(out, &shape)
    })
}

/// Σ of a contiguous slice in f64 with 8 independent accumulators (keeps the adder
/// pipeline full; the order is fixed, so results are deterministic).
fn sum_f64<T: Real>(xs: &[T]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|v| v.to_f64()).sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k].to_f64();
        }
    }
    acc.iter().sum::<f64>() + tail
}

fn lse_f64(vals: &[f64]) -> f64 {
    let m = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + vals.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// softmax (or log-softmax when `log`) along `axis`: `exp(x − lse(x))`.
pub fn softmax_axis(x: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    if let Storage::Cuda(buf) = x.storage() {
        let (out, _) = launch_lines(
            "softmax_forward",
            x,
            axis,
            Some(log as i32),
            x.numel(),
            false,
        )?;
        return Ok(Tensor::from_cuda(out, buf.backend.clone(), x.shape()));
    }
    let (outer, n, inner) = outer_axis_inner(x.shape(), axis);
    with_real!(x, T => {
        let xs = x.cpu::<T>()?;
        let mut out = vec![T::zero(); xs.len()];
        let lines: Vec<Vec<(usize, T)>> = (0..outer * inner).into_par_iter().map(|line| {
            let (o, i) = (line / inner, line % inner);
            let base = o * n * inner + i;
            let vals: Vec<f64> = (0..n).map(|j| xs[base + j * inner].to_f64()).collect();
            let lse = lse_f64(&vals);
            (0..n).map(|j| (base + j * inner, T::from_f64(if log { vals[j] - lse } else { (vals[j] - lse).exp() }))).collect()
        }).collect();
        for (p, v) in lines.into_iter().flatten() { out[p] = v; }
        Tensor::from_cpu_vec(out, x.shape())
    })
}

/// Inclusive cumulative sum along `axis` (`reverse`: from the end).
pub fn cumsum_axis(x: &Tensor, axis: usize, reverse: bool) -> Result<Tensor> {
    if let Storage::Cuda(buf) = x.storage() {
        let (out, _) = launch_lines(
            "cumsum_forward",
            x,
            axis,
            Some(reverse as i32),
            x.numel(),
            false,
        )?;
        return Ok(Tensor::from_cuda(out, buf.backend.clone(), x.shape()));
    }
    let (outer, n, inner) = outer_axis_inner(x.shape(), axis);
    with_real!(x, T => {
        let xs = x.cpu::<T>()?;
        let mut out = vec![T::zero(); xs.len()];
        for line in 0..outer * inner {
            let (o, i) = (line / inner, line % inner);
            let base = o * n * inner + i;
            let mut acc = 0f64;
            for k in 0..n {
                let j = if reverse { n - 1 - k } else { k };
                acc += xs[base + j * inner].to_f64();
                out[base + j * inner] = T::from_f64(acc);
            }
        }
        Tensor::from_cpu_vec(out, x.shape())
    })
}

/// `out[o, j, i] = j == argmax[o, i] ? g[o, i] : 0`, out of `shape` (max's backward).
pub fn onehot_scatter(
    g: &Tensor,
    argmax: &Indices,
    shape: &[usize],
    axis: usize,
) -> Result<Tensor> {
    let (outer, n, inner) = outer_axis_inner(shape, axis);
    let total = outer * n * inner;
    if let Storage::Cuda(buf) = g.storage() {
        let be = &buf.backend;
        let am = argmax.to_device(g.device())?;
        let mut out = be.alloc::<f32>(total)?;
        let f = be.function("reduce", "onehot_scatter")?;
        let (o, nn, i) = (n_u32("max backward", outer)?, n as u32, inner as u32);
        let mut b = be.stream.launch_builder(&f);
        b.arg(&o)
            .arg(&nn)
            .arg(&i)
            .arg(&buf.slice)
            .arg(am.cuda()?)
            .arg(&mut out);
        // SAFETY: g and argmax hold outer·inner elements, out holds total.
        be.check_launch("onehot_scatter", unsafe {
            b.launch(crate::device::cuda::grid_for(total))
        })?;
        return Ok(Tensor::from_cuda(out, be.clone(), shape));
    }
    let am = argmax.to_device(crate::device::Device::Cpu)?;
    let ids = am.cpu()?;
    with_real!(g, T => {
        let gs = g.cpu::<T>()?;
        let out: Vec<T> = (0..total).map(|p| {
            let (i, j, o) = (p % inner, (p / inner) % n, p / (inner * n));
            let line = o * inner + i;
            if ids[line] as usize == j { gs[line] } else { T::zero() }
        }).collect();
        Tensor::from_cpu_vec(out, shape)
    })
}

// ------------------------------------------------------------------ tape ops

impl Var {
    /// Σ over each of `axes` (negative = from the end); all axes when `axes` is empty.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Var> {
        let ndim = self.shape().len();
        if axes.is_empty() && ndim > 1 {
            // all axes: one flat reduction instead of one per axis
            let flat = self.reshape(&[self.value().numel()])?;
            let s = flat.sum(&[0], false)?;
            return if keepdim {
                s.reshape(&vec![1; ndim])
            } else {
                Ok(s)
            };
        }
        let mut axes: Vec<usize> = if axes.is_empty() {
            (0..ndim).collect()
        } else {
            axes.iter()
                .map(|&a| normalize_axis("sum", a, ndim))
                .collect::<Result<_>>()?
        };
        axes.sort_unstable();
        axes.dedup();
        let mut v = self.clone();
        for &a in axes.iter().rev() {
            let y = sum_axis(v.value(), a, keepdim)?;
            v = self.tape().push(Op::Sum { axis: a, keepdim }, &[&v], y)?;
        }
        Ok(v)
    }
    /// Σ of all elements, shape `[]`.
    pub fn sum_all(&self) -> Result<Var> {
        self.sum(&[], false)
    }
    /// Mean over `axes` (all when empty).
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Var> {
        let before = self.value().numel();
        let s = self.sum(axes, keepdim)?;
        let count = before / s.value().numel().max(1);
        s.mul_scalar(1.0 / count.max(1) as f64)
    }
    /// Mean of all elements, shape `[]`.
    pub fn mean_all(&self) -> Result<Var> {
        self.mean(&[], false)
    }
    /// max over `axis`; the gradient flows to the first maximal element.
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let axis = normalize_axis("max", axis, self.shape().len())?;
        let (y, argmax) = max_axis(self.value(), axis, keepdim)?;
        self.tape().push(
            Op::Max {
                axis,
                keepdim,
                argmax,
            },
            &[self],
            y,
        )
    }
    /// log Σ exp over `axis`.
    pub fn logsumexp(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let axis = normalize_axis("logsumexp", axis, self.shape().len())?;
        let y = logsumexp_axis(self.value(), axis, keepdim)?;
        self.tape()
            .push(Op::LogSumExp { axis, keepdim }, &[self], y)
    }
    /// softmax along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Var> {
        let axis = normalize_axis("softmax", axis, self.shape().len())?;
        let y = softmax_axis(self.value(), axis, false)?;
        self.tape().push(Op::Softmax { axis }, &[self], y)
    }
    /// log-softmax along `axis`.
    pub fn log_softmax(&self, axis: isize) -> Result<Var> {
        let axis = normalize_axis("log_softmax", axis, self.shape().len())?;
        let y = softmax_axis(self.value(), axis, true)?;
        self.tape().push(Op::LogSoftmax { axis }, &[self], y)
    }
    /// Inclusive cumulative sum along `axis`.
    pub fn cumsum(&self, axis: isize) -> Result<Var> {
        let axis = normalize_axis("cumsum", axis, self.shape().len())?;
        self.cumsum_dir(axis, false)
    }
    /// Inclusive cumulative sum along `axis`, from the end when `reverse`.
    pub(crate) fn cumsum_dir(&self, axis: usize, reverse: bool) -> Result<Var> {
        let y = cumsum_axis(self.value(), axis, reverse)?;
        self.tape().push(Op::Cumsum { axis, reverse }, &[self], y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;

    #[test]
    fn sums_over_empty_axes_and_of_empty_tensors() {
        // (shape, axis, expected shape, expected values)
        for (shape, axis, want_shape, want) in [
            (vec![0, 0], 0, vec![0], vec![]),
            (vec![0, 0], 1, vec![0], vec![]),
            (vec![0, 3], 0, vec![3], vec![0.0; 3]),
            (vec![3, 0], 1, vec![3], vec![0.0; 3]),
            (vec![3, 0], 0, vec![0], vec![]),
            (vec![2, 0, 4], 1, vec![2, 4], vec![0.0; 8]),
            (vec![0], 0, vec![], vec![0.0]),
        ] {
            let x = Tensor::zeros(&shape, Device::Cpu).unwrap();
            let s = sum_axis(&x, axis, false).unwrap();
            assert_eq!(s.shape(), &want_shape[..], "{shape:?} axis {axis}");
            assert_eq!(s.to_vec().unwrap(), want, "{shape:?} axis {axis}");
            let k = sum_axis(&x, axis, true).unwrap();
            let mut kept = shape.clone();
            kept[axis] = 1;
            assert_eq!(k.shape(), &kept[..]);
            let x64 = Tensor::from_f64(&[], &shape).unwrap();
            assert_eq!(
                sum_axis(&x64, axis, false).unwrap().shape(),
                &want_shape[..]
            );
        }
        assert!(sum_axis(&Tensor::zeros(&[0, 0], Device::Cpu).unwrap(), 2, false).is_err());
        // the ordinary case is unchanged
        let x =
            Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], Device::Cpu).unwrap();
        assert_eq!(
            sum_axis(&x, 0, false).unwrap().to_vec().unwrap(),
            vec![5.0, 7.0, 9.0]
        );
        assert_eq!(
            sum_axis(&x, 1, false).unwrap().to_vec().unwrap(),
            vec![6.0, 15.0]
        );
    }
}
