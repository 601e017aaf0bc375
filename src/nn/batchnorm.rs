//! Batch normalisation over the feature axis of `[N, C]` inputs (PyTorch `BatchNorm1d`).

use crate::autograd::Var;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Ctx, Module, Param};
use crate::ops::elementwise::{binary, BinaryOp};
use crate::tensor::Tensor;

/// Train: y = γ (x − μ_B)/√(σ²_B + ε) + β with batch mean μ_B and biased variance σ²_B, and
/// running stats updated as r ← (1−momentum)·r + momentum·stat (unbiased variance for
/// `running_var`). Eval: the running stats replace the batch ones.
pub struct BatchNorm1d {
    pub weight: Param,
    pub bias: Param,
    pub running_mean: Param,
    pub running_var: Param,
    pub num_batches_tracked: Param,
    pub eps: f64,
    pub momentum: f64,
    pub features: usize,
}

impl BatchNorm1d {
    /// γ = 1, β = 0, running mean 0 and variance 1.
    pub fn new(
        prefix: &str,
        features: usize,
        eps: f64,
        momentum: f64,
        device: Device,
    ) -> Result<BatchNorm1d> {
        Ok(BatchNorm1d {
            weight: Param::new(
                format!("{prefix}.weight"),
                Tensor::full(&[features], 1.0, device)?,
            ),
            bias: Param::new(
                format!("{prefix}.bias"),
                Tensor::zeros(&[features], device)?,
            ),
            running_mean: Param::buffer(
                format!("{prefix}.running_mean"),
                Tensor::zeros(&[features], device)?,
            ),
            running_var: Param::buffer(
                format!("{prefix}.running_var"),
                Tensor::full(&[features], 1.0, device)?,
            ),
            num_batches_tracked: Param::buffer(
                format!("{prefix}.num_batches_tracked"),
                Tensor::zeros(&[], device)?,
            ),
            eps,
            momentum,
            features,
        })
    }

    /// Normalise `x [N, C]`.
    pub fn forward(&self, ctx: &Ctx, x: &Var) -> Result<Var> {
        if x.shape().len() != 2 || x.shape()[1] != self.features {
            return Err(Error::shape(
                "batch_norm",
                format!("expected [N, {}], got {:?}", self.features, x.shape()),
            ));
        }
        let n = x.shape()[0];
        let (gamma, beta) = (ctx.tape.param(&self.weight), ctx.tape.param(&self.bias));
        let (mean, var) = if ctx.train {
            if n < 2 {
                return Err(Error::shape(
                    "batch_norm",
                    "training needs more than one sample per batch",
                ));
            }
            let mean = x.mean(&[0], true)?;
            let centered = x.sub(&mean)?;
            let var = centered.square()?.mean(&[0], true)?;
            self.update_running(mean.value(), var.value(), n)?;
            (mean, var)
        } else {
            let rm = ctx
                .tape
                .constant(self.running_mean.value().reshape(&[1, self.features])?);
            let rv = ctx
                .tape
                .constant(self.running_var.value().reshape(&[1, self.features])?);
            (rm, rv)
        };
        let std = var.add_scalar(self.eps)?.sqrt()?;
        x.sub(&mean)?.div(&std)?.mul(&gamma)?.add(&beta)
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let m = self.momentum;
        let blend = |old: &Tensor, new: &Tensor, scale: f64| -> Result<Tensor> {
            let new = new.reshape(&[self.features])?;
            let a = binary(BinaryOp::Mul, old, &old.scalar_like(1.0 - m)?)?;
            let b = binary(BinaryOp::Mul, &new, &new.scalar_like(m * scale)?)?;
            binary(BinaryOp::Add, &a, &b)
        };
        self.running_mean
            .set_value(blend(&self.running_mean.value(), mean, 1.0)?);
        self.running_var.set_value(blend(
            &self.running_var.value(),
            var,
            n as f64 / (n as f64 - 1.0),
        )?);
        let t = self.num_batches_tracked.value();
        self.num_batches_tracked
            .set_value(binary(BinaryOp::Add, &t, &t.scalar_like(1.0)?)?);
        Ok(())
    }
}

impl Module for BatchNorm1d {
    fn params(&self) -> Vec<Param> {
        vec![
            self.weight.clone(),
            self.bias.clone(),
            self.running_mean.clone(),
            self.running_var.clone(),
            self.num_batches_tracked.clone(),
        ]
    }
}
