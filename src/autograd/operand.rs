//! What a backward rule computes with: [`Operand`] is implemented by [`Tensor`] (the fast
//! path: plain tensor ops, nothing recorded) and by [`Var`] (every step recorded on the
//! tape, so the gradient is itself differentiable). Each op's rule in `ops/` is written
//! once, generic over it; only the few places where the two differ (a fused backward
//! kernel, a piecewise-constant derivative) are methods here.

use super::Var;
use crate::error::{Error, Result};
use crate::ops::elementwise::{self, BinaryOp, UnaryOp};
use crate::ops::index::{self, Indices};
use crate::ops::{matmul, movement, reduce};
use crate::tensor::Tensor;

/// The tensor-like values a backward rule works on (see the module doc).
pub(crate) trait Operand: Clone + Sized {
    /// The value (for a `Var`, its forward value).
    fn value(&self) -> &Tensor;
    /// Wrap a constant tensor alongside `self` (for a `Var`: a constant on its tape).
    fn constant_like(&self, t: Tensor) -> Self;
    /// Shape of the value.
    fn shape(&self) -> &[usize] {
        self.value().shape()
    }
    /// Elementwise unary op.
    fn unary(&self, op: UnaryOp) -> Result<Self>;
    /// Elementwise binary op with broadcasting.
    fn binary(&self, op: BinaryOp, other: &Self) -> Result<Self>;
    /// `cond ≠ 0 ? a : b` with a constant `cond`.
    fn select(cond: &Tensor, a: &Self, b: &Self) -> Result<Self>;
    /// Batched matrix product with optional transposes.
    fn matmul_t(&self, other: &Self, trans_a: bool, trans_b: bool) -> Result<Self>;
    /// Same elements, new shape.
    fn reshape(&self, shape: &[usize]) -> Result<Self>;
    /// Reorder axes.
    fn permute(&self, perm: &[usize]) -> Result<Self>;
    /// Broadcast to `shape`.
    fn broadcast_to(&self, shape: &[usize]) -> Result<Self>;
    /// Elements `start..start+len` along `axis`.
    fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Self>;
    /// Zeros of `full_shape` with `self` at `start` along `axis`.
    fn pad(&self, full_shape: &[usize], axis: usize, start: usize) -> Result<Self>;
    /// Σ over one axis.
    fn sum_axis(&self, axis: usize, keepdim: bool) -> Result<Self>;
    /// Inclusive cumulative sum (from the end when `reverse`).
    fn cumsum(&self, axis: usize, reverse: bool) -> Result<Self>;
    /// Slices `idx` along `axis`.
    fn index_select(&self, axis: usize, idx: &Indices) -> Result<Self>;
    /// index_select's adjoint into zeros of `shape`.
    fn index_add(&self, shape: &[usize], axis: usize, idx: &Indices) -> Result<Self>;
    /// torch.gather.
    fn gather(&self, axis: usize, idx: &Indices) -> Result<Self>;
    /// gather's adjoint into zeros of `shape`.
    fn scatter_add(&self, shape: &[usize], axis: usize, idx: &Indices) -> Result<Self>;
    /// ∂L/∂x of y = f(x) from g = ∂L/∂y.
    fn unary_grad(op: UnaryOp, x: &Self, y: &Self, g: &Self) -> Result<Self>;
    /// `out[.., j, ..] = j == argmax ? g : 0` of `shape` (max's backward; `g` keeps the axis).
    fn onehot_scatter(g: &Self, argmax: &Indices, shape: &[usize], axis: usize) -> Result<Self>;

    /// a + b
    fn add(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Add, other)
    }
    /// a − b
    fn sub(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Sub, other)
    }
    /// a · b
    fn mul(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Mul, other)
    }
    /// a / b
    fn div(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Div, other)
    }
    /// −a
    fn neg(&self) -> Result<Self> {
        self.unary(UnaryOp::Neg)
    }
    /// zeros of the same shape (a constant)
    fn zeros_like(&self) -> Result<Self> {
        Ok(self.constant_like(self.value().zeros_like()?))
    }
    /// Sum a broadcast result down to `shape` (the adjoint of broadcasting).
    fn sum_to_shape(&self, shape: &[usize]) -> Result<Self> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let mut t = self.clone();
        while t.shape().len() > shape.len() {
            t = t.sum_axis(0, false)?;
        }
        for (d, &n) in shape.iter().enumerate() {
            if n == 1 && t.shape()[d] != 1 {
                t = t.sum_axis(d, true)?;
            }
        }
        if t.shape() != shape {
            return Err(Error::shape(
                "sum_to_shape",
                format!("cannot reduce {:?} to {shape:?}", self.shape()),
            ));
        }
        Ok(t)
    }
}

impl Operand for Tensor {
    fn value(&self) -> &Tensor {
        self
    }
    fn constant_like(&self, t: Tensor) -> Tensor {
        t
    }
    fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        elementwise::unary(op, self)
    }
    fn binary(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        elementwise::binary(op, self, other)
    }
    fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise::select(cond, a, b)
    }
    fn matmul_t(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        matmul::matmul(self, other, trans_a, trans_b)
    }
    fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        Tensor::reshape(self, shape)
    }
    fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        movement::permute(self, perm)
    }
    fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        movement::broadcast_to(self, shape)
    }
    fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        movement::narrow(self, axis, start, len)
    }
    fn pad(&self, full_shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
        movement::pad_axis(self, full_shape, axis, start)
    }
    fn sum_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        reduce::sum_axis(self, axis, keepdim)
    }
    fn cumsum(&self, axis: usize, reverse: bool) -> Result<Tensor> {
        reduce::cumsum_axis(self, axis, reverse)
    }
    fn index_select(&self, axis: usize, idx: &Indices) -> Result<Tensor> {
        index::index_select(self, axis, idx)
    }
    fn index_add(&self, shape: &[usize], axis: usize, idx: &Indices) -> Result<Tensor> {
        index::index_add(self, shape, axis, idx)
    }
    fn gather(&self, axis: usize, idx: &Indices) -> Result<Tensor> {
        index::gather(self, axis, idx)
    }
    fn scatter_add(&self, shape: &[usize], axis: usize, idx: &Indices) -> Result<Tensor> {
        index::scatter_add(self, shape, axis, idx)
    }
    /// One fused kernel: g · f′(x).
    fn unary_grad(op: UnaryOp, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        elementwise::unary_backward(op, x, y, g)
    }
    fn onehot_scatter(
        g: &Tensor,
        argmax: &Indices,
        shape: &[usize],
        axis: usize,
    ) -> Result<Tensor> {
        reduce::onehot_scatter(g, argmax, shape, axis)
    }
}

impl Operand for Var {
    fn value(&self) -> &Tensor {
        Var::value(self)
    }
    fn constant_like(&self, t: Tensor) -> Var {
        self.constant(t)
    }
    fn unary(&self, op: UnaryOp) -> Result<Var> {
        self.unary_op(op)
    }
    fn binary(&self, op: BinaryOp, other: &Var) -> Result<Var> {
        self.binary_op(op, other)
    }
    fn select(cond: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        Var::select(cond, a, b)
    }
    fn matmul_t(&self, other: &Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        Var::matmul_t(self, other, trans_a, trans_b)
    }
    fn reshape(&self, shape: &[usize]) -> Result<Var> {
        Var::reshape(self, shape)
    }
    fn permute(&self, perm: &[usize]) -> Result<Var> {
        Var::permute(self, perm)
    }
    fn broadcast_to(&self, shape: &[usize]) -> Result<Var> {
        Var::broadcast_to(self, shape)
    }
    fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Var> {
        Var::narrow(self, axis as isize, start, len)
    }
    fn pad(&self, full_shape: &[usize], axis: usize, start: usize) -> Result<Var> {
        Var::pad(self, full_shape, axis as isize, start)
    }
    fn sum_axis(&self, axis: usize, keepdim: bool) -> Result<Var> {
        Var::sum(self, &[axis as isize], keepdim)
    }
    fn cumsum(&self, axis: usize, reverse: bool) -> Result<Var> {
        self.cumsum_dir(axis, reverse)
    }
    fn index_select(&self, axis: usize, idx: &Indices) -> Result<Var> {
        Var::index_select(self, axis as isize, idx)
    }
    fn index_add(&self, shape: &[usize], axis: usize, idx: &Indices) -> Result<Var> {
        Var::index_add(self, shape, axis as isize, idx)
    }
    fn gather(&self, axis: usize, idx: &Indices) -> Result<Var> {
        Var::gather(self, axis as isize, idx)
    }
    fn scatter_add(&self, shape: &[usize], axis: usize, idx: &Indices) -> Result<Var> {
        Var::scatter_add(self, shape, axis as isize, idx)
    }
    /// g · f′(x) in differentiable ops (see [`elementwise::unary_grad_graph`]).
    fn unary_grad(op: UnaryOp, x: &Var, y: &Var, g: &Var) -> Result<Var> {
        elementwise::unary_grad_graph(op, x, y, g)
    }
    /// g broadcast over the axis times the (constant) one-hot of the argmax.
    fn onehot_scatter(g: &Var, argmax: &Indices, shape: &[usize], axis: usize) -> Result<Var> {
        let ones = g.value().full_like(1.0)?;
        let onehot = reduce::onehot_scatter(&ones, argmax, shape, axis)?;
        g.broadcast_to(shape)?.mul(&g.constant(onehot))
    }
}
