//! `Tensor`: a shape plus contiguous storage on the host (f32, or f64 for references) or on
//! a CUDA device (f32). Tensors are immutable values that share storage cheaply (`Arc`);
//! ops return new tensors. Autodiff lives one layer up, in [`crate::autograd`].

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::CudaSlice;

use crate::device::cuda::{self, CudaBackend};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::real::Real;
use crate::shape::numel;

/// Element type of a tensor. CUDA tensors are always `F32`; `F64` exists on the CPU for
/// reference computations and gradient checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

/// A device buffer together with the backend (context + stream) that owns it.
pub struct CudaBuffer {
    pub slice: CudaSlice<f32>,
    pub backend: Arc<CudaBackend>,
}

/// Where a tensor's elements are.
pub enum Storage {
    CpuF32(Vec<f32>),
    CpuF64(Vec<f64>),
    Cuda(CudaBuffer),
}

/// An n-dimensional array, row-major and contiguous.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {})",
            self.shape,
            self.dtype(),
            self.device()
        )
    }
}

/// Run `$body` with `$T` bound to the Rust scalar type of the CPU tensor `$t`
/// (callers handle the CUDA case before).
#[macro_export]
#[doc(hidden)]
macro_rules! with_real {
    ($t:expr, $T:ident => $body:expr) => {
        match $t.dtype() {
            $crate::tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::tensor::DType::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}

impl Tensor {
    // ---------------------------------------------------------------- construction

    /// Wrap a host vector of `f32` or `f64` as a CPU tensor of `shape`.
    pub fn from_cpu_vec<T: Real>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "from_vec",
                format!("{} elements do not fill shape {shape:?}", data.len()),
            ));
        }
        let boxed: Box<dyn Any> = Box::new(data);
        let storage = match boxed.downcast::<Vec<f32>>() {
            Ok(v) => Storage::CpuF32(*v),
            Err(b) => match b.downcast::<Vec<f64>>() {
                Ok(v) => Storage::CpuF64(*v),
                Err(_) => unreachable!("Real is implemented only for f32 and f64"),
            },
        };
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(storage),
        })
    }

    /// An f32 tensor from host data, placed on `device`.
    pub fn from_slice(data: &[f32], shape: &[usize], device: Device) -> Result<Tensor> {
        Tensor::from_cpu_vec(data.to_vec(), shape)?.to_device(device)
    }

    /// An f64 CPU tensor (references, gradient checks).
    pub fn from_f64(data: &[f64], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_cpu_vec(data.to_vec(), shape)
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::from_cpu_vec(vec![value; numel(shape)], shape),
            Device::Cuda(i) => {
                let be = cuda::backend(i)?;
                let n = numel(shape);
                let mut slice = be.alloc::<f32>(n)?;
                crate::device::buffers::fill(&be, &mut slice, n, value)?;
                Ok(Tensor::from_cuda(slice, be, shape))
            }
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::from_cpu_vec(vec![0f32; numel(shape)], shape),
            Device::Cuda(i) => {
                let be = cuda::backend(i)?;
                let slice = be.alloc_zeros::<f32>(numel(shape))?;
                Ok(Tensor::from_cuda(slice, be, shape))
            }
        }
    }

    /// A tensor of zeros with the dtype and device of `self`.
    pub fn zeros_like(&self) -> Result<Tensor> {
        match self.dtype() {
            DType::F64 => Tensor::from_cpu_vec(vec![0f64; self.numel()], &self.shape),
            DType::F32 => Tensor::zeros(&self.shape, self.device()),
        }
    }

    /// A tensor of `value` with the dtype, device and shape of `self`.
    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        match self.dtype() {
            DType::F64 => Tensor::from_cpu_vec(vec![value; self.numel()], &self.shape),
            DType::F32 => Tensor::full(&self.shape, value as f32, self.device()),
        }
    }

    /// A scalar (shape `[]`) with the dtype and device of `self`.
    pub fn scalar_like(&self, value: f64) -> Result<Tensor> {
        match self.dtype() {
            DType::F64 => Tensor::from_cpu_vec(vec![value], &[]),
            DType::F32 => Tensor::full(&[], value as f32, self.device()),
        }
    }

    /// Wrap an existing device buffer (at least `numel(shape)` elements).
    pub fn from_cuda(slice: CudaSlice<f32>, backend: Arc<CudaBackend>, shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(Storage::Cuda(CudaBuffer { slice, backend })),
        }
    }

    // ---------------------------------------------------------------- inspection

    /// The shape (`[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    /// The storage (for op implementations).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        match &*self.storage {
            Storage::CpuF64(_) => DType::F64,
            _ => DType::F32,
        }
    }
    /// The device the elements live on.
    pub fn device(&self) -> Device {
        match &*self.storage {
            Storage::Cuda(b) => Device::Cuda(b.backend.ordinal),
            _ => Device::Cpu,
        }
    }

    /// The host slice when this is a CPU tensor of scalar type `T`.
    pub fn cpu<T: Real>(&self) -> Result<&[T]> {
        let any: &dyn Any = match &*self.storage {
            Storage::CpuF32(v) => v,
            Storage::CpuF64(v) => v,
            Storage::Cuda(_) => {
                return Err(Error::DeviceMismatch {
                    op: "cpu access",
                    a: self.device().to_string(),
                    b: "cpu".into(),
                })
            }
        };
        any.downcast_ref::<Vec<T>>()
            .map(|v| v.as_slice())
            .ok_or_else(|| Error::DType {
                op: "cpu access",
                msg: format!(
                    "tensor holds {:?}, not {}",
                    self.dtype(),
                    std::any::type_name::<T>()
                ),
            })
    }

    /// The device buffer when this is a CUDA tensor.
    pub fn cuda(&self) -> Result<&CudaBuffer> {
        match &*self.storage {
            Storage::Cuda(b) => Ok(b),
            _ => Err(Error::DeviceMismatch {
                op: "cuda access",
                a: "cpu".into(),
                b: "cuda".into(),
            }),
        }
    }

    /// Copy out all elements as f32 (from any device/dtype).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &*self.storage {
            Storage::CpuF32(v) => Ok(v.clone()),
            Storage::CpuF64(v) => Ok(v.iter().map(|&x| x as f32).collect()),
            Storage::Cuda(b) => b.backend.dtoh(&b.slice, self.numel()),
        }
    }

    /// Copy out all elements as f64 (from any device/dtype).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        match &*self.storage {
            Storage::CpuF64(v) => Ok(v.clone()),
            _ => Ok(self.to_vec()?.into_iter().map(f64::from).collect()),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("needs one element, shape is {:?}", self.shape),
            ));
        }
        Ok(self.to_vec_f64()?[0])
    }

    // ---------------------------------------------------------------- conversion

    /// Copy to `device` (no copy when already there). f64 tensors become f32 on CUDA.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() && !(device.is_cuda() && self.dtype() == DType::F64) {
            return Ok(self.clone());
        }
        match device {
            Device::Cpu => Tensor::from_cpu_vec(self.to_vec()?, &self.shape),
            Device::Cuda(i) => {
                let be = cuda::backend(i)?;
                let host = self.to_vec()?;
                let slice = be.htod(&host)?;
                Ok(Tensor::from_cuda(slice, be, &self.shape))
            }
        }
    }

    /// Convert a CPU tensor to `dtype` (CUDA supports only f32).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        if self.device().is_cuda() {
            return Err(Error::DType {
                op: "to_dtype",
                msg: "CUDA tensors are f32 only".into(),
            });
        }
        match dtype {
            DType::F32 => Tensor::from_cpu_vec(self.to_vec()?, &self.shape),
            DType::F64 => Tensor::from_cpu_vec(self.to_vec_f64()?, &self.shape),
        }
    }

    /// Same elements, new shape (same count). Shares storage.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot reshape {:?} to {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
        })
    }

    /// Error unless `other` is on the same device with the same dtype.
    pub fn same_place(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device() != other.device() {
            return Err(Error::DeviceMismatch {
                op,
                a: self.device().to_string(),
                b: other.device().to_string(),
            });
        }
        if self.dtype() != other.dtype() {
            return Err(Error::DType {
                op,
                msg: format!("{:?} vs {:?}", self.dtype(), other.dtype()),
            });
        }
        Ok(())
    }

    /// Number of NaN/inf elements (counted on the device for CUDA tensors).
    pub fn count_non_finite(&self) -> Result<usize> {
        match &*self.storage {
            Storage::CpuF32(v) => Ok(count_non_finite_bits(v, |x| {
                x.to_bits() & 0x7f80_0000 == 0x7f80_0000
            })),
            Storage::CpuF64(v) => Ok(count_non_finite_bits(v, |x| {
                x.to_bits() & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
            })),
            Storage::Cuda(b) => {
                Ok(crate::device::buffers::count_non_finite_many(&[(b, self.numel())])?[0])
            }
        }
    }

    /// `Err(Error::NonFinite)` naming `what` when any element is NaN or inf.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        let count = self.count_non_finite()?;
        if count > 0 {
            return Err(Error::NonFinite {
                what: what.into(),
                count,
                total: self.numel(),
            });
        }
        Ok(())
    }

    /// [`Tensor::check_finite`] for all of an op's inputs `(name, tensor)` at once: on CUDA one
    /// counting launch per input and a single read-back (one host sync, not one per input);
    /// the error names the first input, in order, that holds NaN or ∞.
    pub fn check_all_finite(inputs: &[(&str, &Tensor)]) -> Result<()> {
        let on_device: Vec<(&CudaBuffer, usize)> = inputs
            .iter()
            .filter_map(|(_, t)| match &*t.storage {
                Storage::Cuda(b) => Some((b, t.numel())),
                _ => None,
            })
            .collect();
        let mut device_counts =
            crate::device::buffers::count_non_finite_many(&on_device)?.into_iter();
        for (what, t) in inputs {
            let count = match &*t.storage {
                Storage::Cuda(_) => device_counts.next().unwrap_or(0),
                _ => t.count_non_finite()?,
            };
            if count > 0 {
                return Err(Error::NonFinite {
                    what: (*what).into(),
                    count,
                    total: t.numel(),
                });
            }
        }
        Ok(())
    }

    /// The first element as f32, read back to the host (forces completion of queued device
    /// work — benchmarks use it to synchronise). Errors for an empty tensor.
    pub fn first_value(&self) -> Result<f32> {
        if self.numel() == 0 {
            return Err(Error::shape("first_value", "the tensor is empty"));
        }
        match &*self.storage {
            Storage::CpuF32(v) => Ok(v[0]),
            Storage::CpuF64(v) => Ok(v[0] as f32),
            Storage::Cuda(b) => Ok(b.backend.dtoh(&b.slice, 1)?[0]),
        }
    }

    /// Mutable access to the storage, copying it first when shared (copy-on-write).
    pub fn storage_mut(&mut self) -> Result<&mut Storage> {
        if Arc::get_mut(&mut self.storage).is_none() {
            let copy = match &*self.storage {
                Storage::CpuF32(v) => Storage::CpuF32(v.clone()),
                Storage::CpuF64(v) => Storage::CpuF64(v.clone()),
                Storage::Cuda(b) => {
                    let n = self.numel();
                    let mut slice = b.backend.alloc::<f32>(n)?;
                    b.backend
                        .stream
                        .memcpy_dtod(&b.slice.slice(0..n.max(1)), &mut slice)
                        .map_err(|e| Error::Cuda {
                            what: "device copy".into(),
                            msg: format!("{e:?}"),
                        })?;
                    Storage::Cuda(CudaBuffer {
                        slice,
                        backend: b.backend.clone(),
                    })
                }
            };
            self.storage = Arc::new(copy);
        }
        Ok(Arc::get_mut(&mut self.storage).expect("unique after copy"))
    }
}

/// How many of `values` satisfy `non_finite` (all exponent bits set: ±∞ or NaN), as a
/// branch-free count that vectorises, split over the rayon pool for large buffers (every op
/// checks its inputs, so this runs over every input of every kernel).
fn count_non_finite_bits<T: Copy + Sync>(
    values: &[T],
    non_finite: impl Fn(T) -> bool + Sync,
) -> usize {
    const CHUNK: usize = 1 << 16;
    let count = |chunk: &[T]| -> usize {
        chunk
            .iter()
            .fold(0u32, |n, &x| n + u32::from(non_finite(x))) as usize
    };
    if values.len() >= 8 * CHUNK {
        use rayon::prelude::*;
        values.par_chunks(CHUNK).map(count).sum()
    } else {
        values.chunks(CHUNK).map(count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Tensor;
    use crate::device::Device;

    #[test]
    fn check_all_finite_names_the_first_bad_input() {
        let fine = Tensor::from_slice(&[1.0f32, 2.0], &[2], Device::Cpu).unwrap();
        let bad = Tensor::from_slice(&[f32::NAN, 1.0, f32::INFINITY], &[3], Device::Cpu).unwrap();
        let empty = Tensor::from_slice(&[] as &[f32], &[0], Device::Cpu).unwrap();
        Tensor::check_all_finite(&[]).unwrap();
        Tensor::check_all_finite(&[("a", &fine), ("e", &empty)]).unwrap();
        let err = Tensor::check_all_finite(&[("a", &fine), ("b", &bad), ("c", &bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("in b: 2 of 3"), "{err}");
    }

    /// The bit-test count agrees with `is_finite` on every special value, in f32 and f64, on a
    /// small buffer and on one large enough to be split over threads.
    #[test]
    fn non_finite_count_matches_is_finite() {
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            0.0,
            -0.0,
            1.0,
            3.4e38,
            1e39, // finite in f64, +∞ in f32
        ];
        for len in [specials.len(), (1 << 20) + 13] {
            let values: Vec<f64> = (0..len)
                .map(|i| specials[(i * 7) % specials.len()])
                .collect();
            let t = Tensor::from_f64(&values, &[len]).unwrap();
            let expected = values.iter().filter(|x| !x.is_finite()).count();
            assert_eq!(t.count_non_finite().unwrap(), expected, "f64, {len}");
            let as_f32: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            let t = Tensor::from_slice(&as_f32, &[len], Device::Cpu).unwrap();
            let expected = as_f32.iter().filter(|x| !x.is_finite()).count();
            assert_eq!(t.count_non_finite().unwrap(), expected, "f32, {len}");
        }
    }
}
