//! Trainable parameters and buffers: a named tensor plus its accumulated gradient, shared
//! between the model that owns it, the tape that reads it and the optimizer that updates it.

use std::sync::{Arc, RwLock};

use crate::error::Result;
use crate::ops::elementwise::{binary, BinaryOp};
use crate::tensor::Tensor;

struct ParamData {
    name: String,
    value: Tensor,
    grad: Option<Tensor>,
    requires_grad: bool,
}

/// A named tensor a model owns: a trainable parameter (`requires_grad`) or a buffer such as
/// BatchNorm's running mean. Clones share the same data. Thread-safe (`RwLock`).
#[derive(Clone)]
pub struct Param {
    inner: Arc<RwLock<ParamData>>,
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Param({}, {:?})", self.name(), self.value())
    }
}

impl Param {
    /// A trainable parameter.
    pub fn new(name: impl Into<String>, value: Tensor) -> Param {
        Param {
            inner: Arc::new(RwLock::new(ParamData {
                name: name.into(),
                value,
                grad: None,
                requires_grad: true,
            })),
        }
    }
    /// A buffer: saved with the model, never trained.
    pub fn buffer(name: impl Into<String>, value: Tensor) -> Param {
        let p = Param::new(name, value);
        p.write().requires_grad = false;
        p
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, ParamData> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ParamData> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
    /// Identity of the shared data (for de-duplication on a tape).
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }
    /// The full (state-dict style) name, e.g. `blocks.0.linear_layers.1.weight`.
    pub fn name(&self) -> String {
        self.read().name.clone()
    }
    /// Current value.
    pub fn value(&self) -> Tensor {
        self.read().value.clone()
    }
    /// Replace the value (same shape expected; not checked here).
    pub fn set_value(&self, value: Tensor) {
        self.write().value = value;
    }
    /// Whether an optimizer should train it.
    pub fn requires_grad(&self) -> bool {
        self.read().requires_grad
    }
    /// Freeze or unfreeze.
    pub fn set_requires_grad(&self, on: bool) {
        self.write().requires_grad = on;
    }
    /// Accumulated gradient, if any backward reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.read().grad.clone()
    }
    /// Replace the gradient (clipping, tests).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        self.write().grad = grad;
    }
    /// Forget the gradient.
    pub fn zero_grad(&self) {
        self.write().grad = None;
    }
    /// `grad += g` (first call sets it).
    pub fn accumulate_grad(&self, g: &Tensor) -> Result<()> {
        let mut d = self.write();
        d.grad = Some(match d.grad.take() {
            Some(acc) => binary(BinaryOp::Add, &acc, g)?,
            None => g.clone(),
        });
        Ok(())
    }
    /// Move value (and drop grad) to `device`.
    pub fn to_device(&self, device: crate::device::Device) -> Result<()> {
        let mut d = self.write();
        d.value = d.value.to_device(device)?;
        d.grad = None;
        Ok(())
    }
}

impl crate::autograd::Leaf for Param {
    fn leaf_key(&self) -> usize {
        self.key()
    }
    fn leaf_value(&self) -> Tensor {
        self.value()
    }
    fn leaf_requires_grad(&self) -> bool {
        self.requires_grad()
    }
    fn accumulate_grad(&self, g: &Tensor) -> Result<()> {
        Param::accumulate_grad(self, g)
    }
}

/// Anything that owns parameters.
pub trait Module {
    /// Every parameter and buffer, in a stable order, with unique names.
    fn params(&self) -> Vec<Param>;

    /// Only the trainable ones.
    fn trainable(&self) -> Vec<Param> {
        self.params()
            .into_iter()
            .filter(|p| p.requires_grad())
            .collect()
    }

    /// Move all parameters to `device`.
    fn to_device(&self, device: crate::device::Device) -> Result<()> {
        self.params().iter().try_for_each(|p| p.to_device(device))
    }
}
