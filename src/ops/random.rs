//! Random tensors on the GPU (same numbers as [`crate::rng::Rng`] on the CPU) and dropout.

use cudarc::driver::PushKernelArg;

use crate::autograd::Var;
use crate::device::cuda::{backend, grid_for};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::n_u32;
use crate::rng::Rng;
use crate::shape::numel;
use crate::tensor::Tensor;

/// Fill a new CUDA tensor with counter-based uniforms `U[a, b)` or normals `N(a, b²)`.
pub(crate) fn cuda_random(
    ordinal: usize,
    shape: &[usize],
    seed: u64,
    offset: u64,
    normal: bool,
    a: f32,
    b: f32,
) -> Result<Tensor> {
    let be = backend(ordinal)?;
    let n = numel(shape);
    let mut out = be.alloc::<f32>(n)?;
    let f = be.function("random", "random_fill")?;
    let (nn, flag) = (n_u32("random", n)?, normal as i32);
    let mut lb = be.stream.launch_builder(&f);
    lb.arg(&nn)
        .arg(&seed)
        .arg(&offset)
        .arg(&flag)
        .arg(&a)
        .arg(&b)
        .arg(&mut out);
    // SAFETY: out holds n elements.
    be.check_launch("random_fill", unsafe { lb.launch(grid_for(n)) })?;
    Ok(Tensor::from_cuda(out, be, shape))
}

/// The inverted-dropout mask for probability `p`: `1/(1−p)` where `u ≥ p`, else 0.
pub fn dropout_mask(rng: &mut Rng, shape: &[usize], p: f32, device: Device) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "dropout probability must be in [0, 1), got {p}"
        )));
    }
    let u = rng.uniform(shape, 0.0, 1.0, device)?;
    // (u − p) ≥ 0 ⇔ keep; select keeps NaN-free arithmetic.
    let shifted = crate::ops::elementwise::unary(
        crate::ops::elementwise::UnaryOp::AddScalar(-(p as f64)),
        &u,
    )?;
    let keep = crate::ops::elementwise::unary(crate::ops::elementwise::UnaryOp::Relu, &shifted)?;
    let scale = Tensor::full(&[], 1.0 / (1.0 - p), device)?;
    let zero = Tensor::zeros(&[], device)?;
    // u == p exactly gives relu(0) = 0 → dropped; probability 2^-24, like torch's u < p rule
    crate::ops::elementwise::select(&keep, &scale, &zero)
}

impl Var {
    /// Inverted dropout with probability `p` (seeded by `rng`); identity when `train` is false.
    /// y = x ⊙ mask, mask = 1/(1−p) with probability 1−p else 0; ∂y/∂x = mask.
    pub fn dropout(&self, p: f32, train: bool, rng: &mut Rng) -> Result<Var> {
        if !train || p == 0.0 {
            return Ok(self.clone());
        }
        let mask = dropout_mask(rng, self.shape(), p, self.value().device())?;
        let mask = match self.value().dtype() {
            crate::tensor::DType::F64 => mask.to_dtype(crate::tensor::DType::F64)?,
            _ => mask,
        };
        self.mul(&self.constant(mask))
    }
}
