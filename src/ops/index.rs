//! Integer indices and the indexing ops: `index_select` (pick whole slices along an axis)
//! and `gather` (pick one element per position along an axis), with their deterministic
//! scatter-add backwards (no atomics: each output element loops over its contributors).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::autograd::{Op, Var};
use crate::device::cuda::{grid_for, CudaBackend};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::n_u32;
use crate::real::Real;
use crate::shape::{normalize_axis, numel, outer_axis_inner};
use crate::tensor::Tensor;
use crate::with_real;

/// Where index data lives.
pub enum IndexStorage {
    Cpu(Vec<u32>),
    Cuda(CudaSlice<u32>, Arc<CudaBackend>),
}

/// A tensor of `u32` indices (particle positions, argmax results, ...).
#[derive(Clone)]
pub struct Indices {
    shape: Vec<usize>,
    storage: Arc<IndexStorage>,
}

impl std::fmt::Debug for Indices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Indices({:?}, {})", self.shape, self.device())
    }
}

impl Indices {
    /// Host indices of `shape`.
    pub fn new(data: Vec<u32>, shape: &[usize]) -> Result<Indices> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "indices",
                format!("{} values do not fill {shape:?}", data.len()),
            ));
        }
        Ok(Indices {
            shape: shape.to_vec(),
            storage: Arc::new(IndexStorage::Cpu(data)),
        })
    }
    /// Wrap a device buffer.
    pub fn from_cuda(slice: CudaSlice<u32>, be: Arc<CudaBackend>, shape: &[usize]) -> Indices {
        Indices {
            shape: shape.to_vec(),
            storage: Arc::new(IndexStorage::Cuda(slice, be)),
        }
    }
    /// Shape of the index tensor.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Device of the indices.
    pub fn device(&self) -> Device {
        match &*self.storage {
            IndexStorage::Cpu(_) => Device::Cpu,
            IndexStorage::Cuda(_, be) => Device::Cuda(be.ordinal),
        }
    }
    /// Copy to the host.
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        match &*self.storage {
            IndexStorage::Cpu(v) => Ok(v.clone()),
            IndexStorage::Cuda(s, be) => be.dtoh(s, numel(&self.shape)),
        }
    }
    /// Copy to `device`.
    pub fn to_device(&self, device: Device) -> Result<Indices> {
        if device == self.device() {
            return Ok(self.clone());
        }
        match device {
            Device::Cpu => Indices::new(self.to_vec()?, &self.shape),
            Device::Cuda(i) => {
                let be = crate::device::cuda::backend(i)?;
                let s = be.htod(&self.to_vec()?)?;
                Ok(Indices::from_cuda(s, be, &self.shape))
            }
        }
    }
    /// Host slice (CPU indices only).
    pub fn cpu(&self) -> Result<&[u32]> {
        match &*self.storage {
            IndexStorage::Cpu(v) => Ok(v),
            IndexStorage::Cuda(..) => Err(Error::DeviceMismatch {
                op: "indices",
                a: self.device().to_string(),
                b: "cpu".into(),
            }),
        }
    }
    /// Device slice (CUDA indices only).
    pub fn cuda(&self) -> Result<&CudaSlice<u32>> {
        match &*self.storage {
            IndexStorage::Cuda(s, _) => Ok(s),
            IndexStorage::Cpu(_) => Err(Error::DeviceMismatch {
                op: "indices",
                a: "cpu".into(),
                b: "cuda".into(),
            }),
        }
    }
    fn check_bound(&self, op: &'static str, bound: usize) -> Result<()> {
        if let Some(&bad) = self.to_vec()?.iter().find(|&&i| i as usize >= bound) {
            return Err(Error::shape(
                op,
                format!("index {bad} out of range for axis of size {bound}"),
            ));
        }
        Ok(())
    }
}

fn launch_index_kernel(
    name: &'static str,
    x: &Tensor,
    out_n: usize,
    dims: [u32; 4],
    idx: &Indices,
    out_shape: &[usize],
) -> Result<Tensor> {
    let buf = x.cuda()?;
    let be = &buf.backend;
    let idx = idx.to_device(x.device())?;
    let mut out = be.alloc::<f32>(out_n)?;
    let f = be.function("index", name)?;
    let n = n_u32(name, out_n)?;
    let mut b = be.stream.launch_builder(&f);
    b.arg(&n)
        .arg(&dims[0])
        .arg(&dims[1])
        .arg(&dims[2])
        .arg(&dims[3])
        .arg(&buf.slice)
        .arg(idx.cuda()?)
        .arg(&mut out);
    // SAFETY: indices were bounds-checked; dims describe x and out.
    be.check_launch(name, unsafe { b.launch(grid_for(out_n)) })?;
    Ok(Tensor::from_cuda(out, be.clone(), out_shape))
}

/// `out[o, j, i] = x[o, idx[j], i]` for a 1-D `idx` of length k: out has size k along `axis`.
pub fn index_select(x: &Tensor, axis: usize, idx: &Indices) -> Result<Tensor> {
    if idx.shape().len() != 1 {
        return Err(Error::shape(
            "index_select",
            format!("indices must be 1-d, got {:?}", idx.shape()),
        ));
    }
    let (outer, n, inner) = outer_axis_inner(x.shape(), axis);
    idx.check_bound("index_select", n)?;
    let k = idx.shape()[0];
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] = k;
    let out_n = outer * k * inner;
    if x.device().is_cuda() {
        let dims = [
            n_u32("index_select", outer)?,
            n as u32,
            k as u32,
            inner as u32,
        ];
        return launch_index_kernel("index_select_forward", x, out_n, dims, idx, &out_shape);
    }
    let ids = idx.cpu()?;
    with_real!(x, T => {
        let xs = x.cpu::<T>()?;
        let out: Vec<T> = (0..out_n).map(|p| {
            let (o, j, i) = (p / (k * inner), (p / inner) % k, p % inner);
            xs[(o * n + ids[j] as usize) * inner + i]
        }).collect();
        Tensor::from_cpu_vec(out, &out_shape)
    })
}

/// Backward of `index_select`: `dx[o, m, i] = Σ_{j: idx[j] = m} g[o, j, i]`.
pub fn index_add(g: &Tensor, x_shape: &[usize], axis: usize, idx: &Indices) -> Result<Tensor> {
    let fits = idx.shape().len() == 1
        && axis < x_shape.len()
        && g.ndim() == x_shape.len()
        && (0..x_shape.len()).all(|d| {
            g.shape()[d]
                == if d == axis {
                    idx.shape()[0]
                } else {
                    x_shape[d]
                }
        });
    if !fits {
        return Err(Error::shape(
            "index_add",
            format!(
                "g {:?} and 1-d indices {:?} do not fit output {x_shape:?} on axis {axis}",
                g.shape(),
                idx.shape()
            ),
        ));
    }
    let (outer, n, inner) = outer_axis_inner(x_shape, axis);
    idx.check_bound("index_add", n)?;
    let k = idx.shape()[0];
    let out_n = outer * n * inner;
    if g.device().is_cuda() {
        let dims = [n_u32("index_add", outer)?, n as u32, k as u32, inner as u32];
        return launch_index_kernel("index_add", g, out_n, dims, idx, x_shape);
    }
    let ids = idx.cpu()?;
    with_real!(g, T => {
        let gs = g.cpu::<T>()?;
        let mut out = vec![T::zero(); out_n];
        for o in 0..outer {
            for (j, &m) in ids.iter().enumerate() {
                for i in 0..inner {
                    out[(o * n + m as usize) * inner + i] += gs[(o * k + j) * inner + i];
                }
            }
        }
        Tensor::from_cpu_vec(out, x_shape)
    })
}

/// `out[o, j, i] = x[o, idx[o, j, i], i]` (torch.gather): idx has x's shape except along
/// `axis`, where it has any size k; out has idx's shape.
pub fn gather(x: &Tensor, axis: usize, idx: &Indices) -> Result<Tensor> {
    let xs_shape = x.shape();
    let is = idx.shape();
    let ok = is.len() == xs_shape.len() && (0..is.len()).all(|d| d == axis || is[d] == xs_shape[d]);
    if !ok {
        return Err(Error::shape(
            "gather",
            format!("indices {is:?} do not fit input {xs_shape:?} on axis {axis}"),
        ));
    }
    let (outer, n, inner) = outer_axis_inner(xs_shape, axis);
    idx.check_bound("gather", n)?;
    let k = is[axis];
    let out_n = outer * k * inner;
    if x.device().is_cuda() {
        let dims = [n_u32("gather", outer)?, n as u32, k as u32, inner as u32];
        return launch_index_kernel("gather_forward", x, out_n, dims, idx, is);
    }
    let ids = idx.cpu()?;
    with_real!(x, T => {
        let xs = x.cpu::<T>()?;
        let out: Vec<T> = (0..out_n).map(|p| {
            let (o, i) = (p / (k * inner), p % inner);
            xs[(o * n + ids[p] as usize) * inner + i]
        }).collect();
        Tensor::from_cpu_vec(out, is)
    })
}

/// Backward of `gather`: `dx[o, m, i] = Σ_{j: idx[o, j, i] = m} g[o, j, i]`.
pub fn scatter_add(g: &Tensor, x_shape: &[usize], axis: usize, idx: &Indices) -> Result<Tensor> {
    let is = idx.shape();
    let fits = g.shape() == is
        && axis < x_shape.len()
        && is.len() == x_shape.len()
        && (0..is.len()).all(|d| d == axis || is[d] == x_shape[d]);
    if !fits {
        return Err(Error::shape(
            "scatter_add",
            format!(
                "g {:?} and indices {is:?} do not fit output {x_shape:?} on axis {axis}",
                g.shape()
            ),
        ));
    }
    let (outer, n, inner) = outer_axis_inner(x_shape, axis);
    idx.check_bound("scatter_add", n)?;
    let k = idx.shape()[axis];
    let out_n = outer * n * inner;
    if g.device().is_cuda() {
        let dims = [
            n_u32("scatter_add", outer)?,
            n as u32,
            k as u32,
            inner as u32,
        ];
        return launch_index_kernel("scatter_add", g, out_n, dims, idx, x_shape);
    }
    let ids = idx.cpu()?;
    with_real!(g, T => {
        let gs = g.cpu::<T>()?;
        let mut out = vec![T::zero(); out_n];
        for (p, &m) in ids.iter().enumerate() {
            let (o, i) = (p / (k * inner), p % inner);
            out[(o * n + m as usize) * inner + i] += gs[p];
        }
        Tensor::from_cpu_vec(out, x_shape)
    })
}

impl Var {
    /// index_select's adjoint: zeros of `shape` with `self`'s slices added at `idx` along
    /// `axis` (`out[.., idx[j], ..] += self[.., j, ..]`).
    pub fn index_add(&self, shape: &[usize], axis: isize, idx: &Indices) -> Result<Var> {
        let axis = normalize_axis("index_add", axis, shape.len())?;
        let y = index_add(self.value(), shape, axis, idx)?;
        let op = Op::IndexAdd {
            axis,
            indices: idx.clone(),
        };
        self.tape().push(op, &[self], y)
    }
    /// gather's adjoint: zeros of `shape` with `out[.., idx[.., j, ..], ..] += self[.., j, ..]`
    /// along `axis` (`idx` has `self`'s shape).
    pub fn scatter_add(&self, shape: &[usize], axis: isize, idx: &Indices) -> Result<Var> {
        let axis = normalize_axis("scatter_add", axis, shape.len())?;
        let y = scatter_add(self.value(), shape, axis, idx)?;
        let op = Op::ScatterAdd {
            axis,
            indices: idx.clone(),
        };
        self.tape().push(op, &[self], y)
    }
    /// Select slices `idx` along `axis` (e.g. particles by position).
    pub fn index_select(&self, axis: isize, idx: &Indices) -> Result<Var> {
        let axis = normalize_axis("index_select", axis, self.shape().len())?;
        let y = index_select(self.value(), axis, idx)?;
        self.tape().push(
            Op::IndexSelect {
                axis,
                indices: idx.clone(),
            },
            &[self],
            y,
        )
    }
    /// torch.gather along `axis`.
    pub fn gather(&self, axis: isize, idx: &Indices) -> Result<Var> {
        let axis = normalize_axis("gather", axis, self.shape().len())?;
        let y = gather(self.value(), axis, idx)?;
        self.tape().push(
            Op::Gather {
                axis,
                indices: idx.clone(),
            },
            &[self],
            y,
        )
    }
}
