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
/// The decay of an exponential moving average of the weights at its update number `updates`
/// (0 for the first): min(target, (1 + n)/(10 + n)), TensorFlow's `num_updates` warm-up.
/// Without it the average keeps target^n of the random initial weights (0.999^875 = 42 %
/// after 875 steps); with it the first updates mostly take the trained weights and the decay
/// reaches the target after ~10/(1 − target) updates.
pub fn ema_decay(target: f64, updates: u64) -> f32 {
    let n = updates as f64;
    target.min((1.0 + n) / (10.0 + n)) as f32
}

/// One step of the weight average: avg ← d·avg + (1 − d)·θ for every parameter, with
/// d = [`ema_decay`]`(target, updates)`; `avg` holds host copies in `params`' order.
pub fn ema_update(avg: &mut [Vec<f32>], params: &[Param], target: f64, updates: u64) -> Result<()> {
    let decay = ema_decay(target, updates);
    for (a, p) in avg.iter_mut().zip(params) {
        for (x, v) in a.iter_mut().zip(p.value().to_vec()?) {
            *x = decay * *x + (1.0 - decay) * v;
        }
    }
    Ok(())
}

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

/// What the training loop needs of an optimizer: clear gradients, set the learning rate
/// (schedules), take a step. [`Adam`] and [`RmsProp`] implement it.
pub trait Optimizer {
    /// Clear all parameter gradients.
    fn zero_grad(&self);
    /// Set the learning rate of the next steps.
    fn set_lr(&mut self, lr: f64);
    /// Apply one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
}

impl Optimizer for Adam {
    fn zero_grad(&self) {
        Adam::zero_grad(self)
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn step(&mut self) -> Result<()> {
        Adam::step(self)
    }
}

/// RMSprop hyper-parameters (PyTorch defaults: α 0.99, ε 1e-8; lr has no default there,
/// 1e-2 here).
#[derive(Clone, Copy, Debug)]
pub struct RmsPropConfig {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
        }
    }
}

/// RMSprop with PyTorch's update (no momentum, not centred, no weight decay), per element:
/// ```text
/// v ← α·v + (1 − α)·g²        p ← p − lr · g / (√v + ε)
/// ```
/// The update is composed of elementwise tensor ops, so it runs on every device.
pub struct RmsProp {
    pub config: RmsPropConfig,
    params: Vec<Param>,
    square_avg: Vec<Option<Tensor>>,
}

impl RmsProp {
    /// An optimizer for `params` (those without `requires_grad` are skipped).
    pub fn new(params: Vec<Param>, config: RmsPropConfig) -> RmsProp {
        let params: Vec<Param> = params.into_iter().filter(|p| p.requires_grad()).collect();
        let square_avg = vec![None; params.len()];
        RmsProp {
            config,
            params,
            square_avg,
        }
    }
}

impl Optimizer for RmsProp {
    fn zero_grad(&self) {
        self.params.iter().for_each(|p| p.zero_grad());
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (param, avg) in self.params.iter().zip(self.square_avg.iter_mut()) {
            let Some(grad) = param.grad() else { continue };
            let value = param.value();
            if grad.shape() != value.shape() {
                return Err(Error::shape(
                    "rmsprop",
                    format!(
                        "{}: grad {:?} vs param {:?}",
                        param.name(),
                        grad.shape(),
                        value.shape()
                    ),
                ));
            }
            grad.same_place("rmsprop", &value)?;
            let v = match avg.take() {
                Some(v) => v,
                None => value.zeros_like()?,
            };
            let g2 = unary(UnaryOp::Square, &grad)?;
            let v = binary(
                BinaryOp::Add,
                &unary(UnaryOp::MulScalar(c.alpha), &v)?,
                &unary(UnaryOp::MulScalar(1.0 - c.alpha), &g2)?,
            )?;
            let denom = unary(UnaryOp::AddScalar(c.eps), &unary(UnaryOp::Sqrt, &v)?)?;
            let update = unary(
                UnaryOp::MulScalar(c.lr),
                &binary(BinaryOp::Div, &grad, &denom)?,
            )?;
            param.set_value(binary(BinaryOp::Sub, &value, &update)?);
            *avg = Some(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod rmsprop_tests {
    use super::*;
    use crate::device::Device;

    /// Two steps against the update worked by hand (PyTorch's rule, α = 0.9, ε = 1e-8):
    /// p = 1, g = 0.5: v₁ = 0.1·0.25 = 0.025, p₁ = 1 − 0.1·0.5/(√0.025 + ε) = 0.683772…;
    /// g = −0.2: v₂ = 0.9·0.025 + 0.1·0.04 = 0.0265, p₂ = p₁ + 0.1·0.2/(√0.0265 + ε) = 0.806631….
    #[test]
    fn two_steps_match_the_hand_computed_update() {
        let p = Param::new("p", Tensor::from_slice(&[1.0], &[1], Device::Cpu).unwrap());
        let mut opt = RmsProp::new(
            vec![p.clone()],
            RmsPropConfig {
                lr: 0.1,
                alpha: 0.9,
                eps: 1e-8,
            },
        );
        let mut got = vec![];
        for g in [0.5f32, -0.2] {
            opt.zero_grad();
            p.accumulate_grad(&Tensor::from_slice(&[g], &[1], Device::Cpu).unwrap())
                .unwrap();
            opt.step().unwrap();
            got.push(p.value().to_vec().unwrap()[0] as f64);
        }
        let p1 = 1.0 - 0.1 * 0.5 / (0.025f64.sqrt() + 1e-8);
        let p2 = p1 + 0.1 * 0.2 / (0.0265f64.sqrt() + 1e-8);
        assert!((p1 - 0.683772).abs() < 1e-6, "{p1}");
        assert!((got[0] - p1).abs() < 1e-6, "{got:?} vs {p1}");
        assert!((got[1] - p2).abs() < 1e-6, "{got:?} vs {p2}");
    }
}

#[cfg(test)]
mod ema_tests {
    use super::ema_decay;

    /// The warm-up starts at 0.1, rises as (1 + n)/(10 + n) and stops at the target.
    #[test]
    fn ema_decay_warms_up_to_its_target() {
        assert!((ema_decay(0.999, 0) - 0.1).abs() < 1e-7);
        assert!((ema_decay(0.999, 90) - 0.91).abs() < 1e-6);
        assert_eq!(ema_decay(0.999, 1_000_000), 0.999);
        assert_eq!(ema_decay(0.5, 0), 0.1);
        assert_eq!(ema_decay(0.5, 100), 0.5);
        // the initial weights' share after 875 updates: the product of the decays
        let kept: f64 = (0..875).map(|n| ema_decay(0.999, n) as f64).product();
        assert!(kept < 1e-6, "initial weights keep {kept}");
    }
}
