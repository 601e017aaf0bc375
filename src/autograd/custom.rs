//! The extension point for fused ops (like candle's `CustomOp1/2/3`): implement
//! [`CustomOp`] — a CPU forward, a CUDA forward and a backward — and apply it with
//! [`Var::custom`]. The tape records it as one node; nothing central is edited. Chamfer,
//! Sinkhorn and RQS are built this way (`ops/chamfer.rs`, `ops/sinkhorn.rs`, `ops/rqs.rs`).

use std::any::Any;
use std::rc::Rc;

use super::{Op, Var};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What a fused op's forward returns: its value and whatever its backward needs besides the
/// inputs and the value (nearest-neighbour indices, dual potentials, …).
pub struct CustomForward {
    /// The output tensor recorded on the tape.
    pub value: Tensor,
    /// State for the backward; downcast it there (`saved.downcast_ref::<T>()`).
    pub saved: Box<dyn Any>,
}

impl CustomForward {
    /// An output with nothing saved.
    pub fn new(value: Tensor) -> CustomForward {
        CustomForward {
            value,
            saved: Box::new(()),
        }
    }
}

/// A fused op with hand-written kernels. The inputs all live on one device; the tape calls
/// the matching forward. Once-differentiable unless [`CustomOp::backward_graph`] is given.
pub trait CustomOp {
    /// Name for messages (e.g. `"chamfer"`).
    fn name(&self) -> &'static str;
    /// Forward on CPU tensors.
    fn cpu_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward>;
    /// Forward on CUDA tensors; by default the op is CPU-only and says so.
    fn cuda_forward(&self, inputs: &[&Tensor]) -> Result<CustomForward> {
        let _ = inputs;
        Err(Error::CudaUnavailable(format!(
            "{} has no CUDA kernel",
            self.name()
        )))
    }
    /// ∂L/∂inputs from g = ∂L/∂output (on the inputs' device); `needs[i]` says which
    /// inputs want a gradient (`None` for the others is fine).
    fn backward(
        &self,
        inputs: &[&Tensor],
        saved: &dyn Any,
        output: &Tensor,
        g: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>>;
    /// The backward in differentiable ops, for higher-order derivatives. `None` (the
    /// default) makes the op once-differentiable: differentiating its gradient is an
    /// [`Error::NotDifferentiable`] naming it.
    fn backward_graph(
        &self,
        inputs: &[Var],
        saved: &dyn Any,
        output: &Var,
        g: &Var,
        needs: &[bool],
    ) -> Option<Result<Vec<Option<Var>>>> {
        let _ = (inputs, saved, output, g, needs);
        None
    }
}

impl Var {
    /// Apply a fused op to `inputs` (at least one; all on one tape and one device) and
    /// record it.
    pub fn custom(op: impl CustomOp + 'static, inputs: &[&Var]) -> Result<Var> {
        let first = inputs
            .first()
            .ok_or_else(|| Error::invalid(format!("{} needs at least one input", op.name())))?;
        let values: Vec<&Tensor> = inputs.iter().map(|v| v.value()).collect();
        for v in &values[1..] {
            v.same_place(op.name(), values[0])?;
        }
        let out = match values[0].device() {
            Device::Cpu => op.cpu_forward(&values)?,
            Device::Cuda(_) => op.cuda_forward(&values)?,
        };
        first.tape().push(
            Op::Custom {
                op: Rc::new(op),
                saved: Rc::from(out.saved),
            },
            inputs,
            out.value,
        )
    }
}

/// The forward's saved state as a `T`, or an error naming the op.
pub fn saved_as<'a, T: 'static>(saved: &'a dyn Any, op: &'static str) -> Result<&'a T> {
    saved
        .downcast_ref::<T>()
        .ok_or_else(|| Error::invalid(format!("internal: {op} saved state of the wrong type")))
}
