//! Adam and AdamW with PyTorch's exact single-tensor update rule, and gradient clipping.

use cudarc::driver::PushKernelArg;

use crate::device::cuda::grid_for;
use crate::error::{Error, Result};
use crate::nn::Param;
use crate::ops::elementwise::{binary, unary, BinaryOp, UnaryOp};
use crate::ops::n_u32;
use crate::real::Real;
use crate::tensor::{Storage, Tensor};

/// Adam hyper-parameters (PyTorch defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8).
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW (decoupled decay `p ← p(1 − lr·wd)`) instead of L2 (`g ← g + wd·p`).
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch `AdamW` defaults (weight decay 0.01).
    pub fn adamw(lr: f64) -> Self {
        AdamConfig {
            lr,
            weight_decay: 0.01,
            decoupled: true,
            ..Default::default()
        }
    }
}

/// Adam/AdamW over a fixed list of parameters. Per step t, for each element:
/// ```text
/// AdamW: p ← p·(1 − lr·wd)          Adam: g ← g + wd·p
/// m ← m + (1−β₁)(g − m)              v ← β₂v + (1−β₂)g²
/// p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε)
/// ```
pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Param>,
    moments: Vec<Option<(Tensor, Tensor)>>,
    step: u64,
}

impl Adam {
    /// An optimizer for `params` (those without `requires_grad` are skipped).
    pub fn new(params: Vec<Param>, config: AdamConfig) -> Adam {
        let params: Vec<Param> = params.into_iter().filter(|p| p.requires_grad()).collect();
        let moments = vec![None; params.len()];
        Adam {
            config,
            params,
            moments,
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Clear all parameter gradients.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(|p| p.zero_grad());
    }

    /// Apply one update to every parameter that has a gradient.
    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        for (param, moments) in self.params.iter().zip(self.moments.iter_mut()) {
            let Some(grad) = param.grad() else { continue };
            let mut value = param.value();
            if grad.shape() != value.shape() {
                return Err(Error::shape(
                    "adam",
                    format!(
                        "{}: grad {:?} vs param {:?}",
                        param.name(),
                        grad.shape(),
                        value.shape()
                    ),
                ));
            }
            grad.same_place("adam", &value)?;
            let (m, v) = moments.get_or_insert_with(|| {
                (
                    value.zeros_like().expect("zeros"),
                    value.zeros_like().expect("zeros"),
                )
            });
            update(&mut value, &grad, m, v, c, bc1, bc2_sqrt)?;
            param.set_value(value);
        }
        Ok(())
    }
}

fn update(
    p: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    c: AdamConfig,
    bc1: f64,
    bc2_sqrt: f64,
) -> Result<()> {
    let n = p.numel();
    if let Storage::Cuda(gbuf) = g.storage() {
        let be = gbuf.backend.clone();
        let f = be.function("optim", "adam_step")?;
        let nn = n_u32("adam", n)?;
        let (lr, b1, b2, eps, wd) = (
            c.lr as f32,
            c.beta1 as f32,
            c.beta2 as f32,
            c.eps as f32,
            c.weight_decay as f32,
        );
        let (dec, bc1, bc2s) = (c.decoupled as i32, bc1 as f32, bc2_sqrt as f32);
        let Storage::Cuda(pb) = p.storage_mut()? else {
            unreachable!()
        };
        let Storage::Cuda(mb) = m.storage_mut()? else {
            unreachable!()
        };
        let Storage::Cuda(vb) = v.storage_mut()? else {
            unreachable!()
        };
        let mut b = be.stream.launch_builder(&f);
        b.arg(&nn)
            .arg(&mut pb.slice)
            .arg(&gbuf.slice)
            .arg(&mut mb.slice)
            .arg(&mut vb.slice);
        b.arg(&lr)
            .arg(&b1)
            .arg(&b2)
            .arg(&eps)
            .arg(&wd)
            .arg(&dec)
            .arg(&bc1)
            .arg(&bc2s);
        // SAFETY: all four buffers hold n elements.
        return be.check_launch("adam_step", unsafe { b.launch(grid_for(n)) });
    }
    fn cpu<T: Real>(
        p: &mut [T],
        g: &[T],
        m: &mut [T],
        v: &mut [T],
        c: AdamConfig,
        bc1: f64,
        bc2_sqrt: f64,
    ) {
        let f = T::from_f64;
        let (lr, b1, b2, eps, wd) = (f(c.lr), f(c.beta1), f(c.beta2), f(c.eps), f(c.weight_decay));
        let (one, bc1, bc2_sqrt) = (T::one(), f(bc1), f(bc2_sqrt));
        for i in 0..p.len() {
            let mut grad = g[i];
            let mut param = p[i];
            if c.decoupled {
                param = param * (one - lr * wd);
            } else {
                grad += wd * param;
            }
            m[i] = m[i] + (one - b1) * (grad - m[i]);
            v[i] = b2 * v[i] + (one - b2) * grad * grad;
            let denom = v[i].sqrt() / bc2_sqrt + eps;
            p[i] = param - (lr / bc1) * m[i] / denom;
        }
    }
    match (p.storage_mut()?, m.storage_mut()?, v.storage_mut()?) {
        (Storage::CpuF32(p), Storage::CpuF32(m), Storage::CpuF32(v)) => {
            cpu(p, g.cpu::<f32>()?, m, v, c, bc1, bc2_sqrt)
        }
        (Storage::CpuF64(p), Storage::CpuF64(m), Storage::CpuF64(v)) => {
            cpu(p, g.cpu::<f64>()?, m, v, c, bc1, bc2_sqrt)
        }
        _ => {
            return Err(Error::invalid(
                "adam: parameter and optimizer state differ in dtype/device",
            ))
        }
    }
    Ok(())
}

/// Scale all gradients so their global L2 norm is at most `max_norm` (PyTorch
/// `clip_grad_norm_`: coef = max_norm / (‖g‖ + 1e-6), applied when < 1). Returns ‖g‖
/// before clipping; a non-finite norm is returned unchanged and nothing is scaled, so the
/// caller can skip the step.
pub fn clip_grad_norm(params: &[Param], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for p in params {
        if let Some(g) = p.grad() {
            let sq = unary(UnaryOp::Square, &g)?;
            let s = crate::ops::reduce::sum_axis(&sq.reshape(&[sq.numel()])?, 0, false)?;
            total += s.item()?;
        }
    }
    let norm = total.sqrt();
    if !norm.is_finite() {
        return Ok(norm);
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for p in params {
            if let Some(g) = p.grad() {
                p.set_grad(Some(binary(BinaryOp::Mul, &g, &g.scalar_like(coef)?)?));
            }
        }
    }
    Ok(norm)
}
