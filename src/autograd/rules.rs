//! The derivative table: for every basic op, ∂L/∂inputs from g = ∂L/∂output, written once
//! and generic over [`Operand`] — run on tensors it is the fast first-order backward, run
//! on `Var`s it records a differentiable backward (any order). Fused ops bring their own
//! rules through [`CustomOp`](super::CustomOp).
//!
//! Notation: x = inputs, y = output, g = ∂L/∂y; "keep(t)" re-inserts a reduced axis.

use std::rc::Rc;

use super::{Node, Op, Operand, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::elementwise::BinaryOp;
use crate::ops::matmul;
use crate::ops::reduce::reduced_shape;
use crate::tensor::Tensor;

/// The fast path: rules on plain tensors.
pub(super) fn tensor_rule(
    _tape: &Tape,
    _id: usize,
    node: &Node,
    inputs: &[Rc<Node>],
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    match &node.op {
        Op::Custom { op, saved } => {
            let xs: Vec<&Tensor> = inputs.iter().map(|n| &n.value).collect();
            op.backward(&xs, saved.as_ref(), &node.value, g, needs)
        }
        Op::OnceDifferentiable { op } => Err(Error::NotDifferentiable { op }),
        op => {
            let xs: Vec<Tensor> = inputs.iter().map(|n| n.value.clone()).collect();
            basic_rule(op, &xs, &node.value, g, needs)
        }
    }
}

/// The recorded path: rules in differentiable ops on the same tape.
pub(super) fn graph_rule(
    tape: &Tape,
    id: usize,
    node: &Node,
    inputs: &[Rc<Node>],
    g: &Var,
    needs: &[bool],
) -> Result<Vec<Option<Var>>> {
    let var = |id: usize, n: &Node| Var {
        tape: tape.clone(),
        id,
        value: n.value.clone(),
        requires_grad: n.requires_grad,
    };
    let xs: Vec<Var> = node
        .inputs
        .iter()
        .zip(inputs)
        .map(|(&i, n)| var(i, n))
        .collect();
    let y = var(id, node);
    match &node.op {
        Op::Custom { op, saved } => {
            if let Some(rule) = op.backward_graph(&xs, saved.as_ref(), &y, g, needs) {
                return rule;
            }
            // Once-differentiable: the fused backward's result, recorded so that a second
            // derivative through it is an error naming the op rather than a silent zero.
            let values: Vec<&Tensor> = xs.iter().map(|v| v.value()).collect();
            let grads = op.backward(&values, saved.as_ref(), y.value(), g.value(), needs)?;
            let mut deps: Vec<&Var> = xs.iter().collect();
            deps.push(g);
            grads
                .into_iter()
                .map(|gi| match gi {
                    Some(t) => tape
                        .push(Op::OnceDifferentiable { op: op.name() }, &deps, t)
                        .map(Some),
                    None => Ok(None),
                })
                .collect()
        }
        Op::OnceDifferentiable { op } => Err(Error::NotDifferentiable { op }),
        op => basic_rule(op, &xs, &y, g, needs),
    }
}

/// g with a reduced axis put back (size 1), so it broadcasts against the input.
fn keep<G: Operand>(t: &G, x_shape: &[usize], axis: usize, keepdim: bool) -> Result<G> {
    if keepdim {
        Ok(t.clone())
    } else {
        t.reshape(&reduced_shape(x_shape, axis, true))
    }
}

/// The table. `needs[i]`: whether input i wants a gradient (matmul skips the others).
fn basic_rule<G: Operand>(
    op: &Op,
    x: &[G],
    y: &G,
    g: &G,
    needs: &[bool],
) -> Result<Vec<Option<G>>> {
    let one = |t: G| Ok(vec![Some(t)]);
    match op {
        Op::Leaf => Ok(vec![]),
        // g · f′(x): one fused kernel on tensors, an expression in y or x when recorded.
        Op::Unary(u) => one(G::unary_grad(*u, &x[0], y, g)?),
        Op::Binary(b) => binary_rule(*b, &x[0], &x[1], y, g),
        // g to the selected side, zeros to the other.
        Op::Select(cond) => {
            let zero = g.zeros_like()?;
            Ok(vec![
                Some(G::select(cond, g, &zero)?.sum_to_shape(x[0].shape())?),
                Some(G::select(cond, &zero, g)?.sum_to_shape(x[1].shape())?),
            ])
        }
        Op::MatMul { trans_a, trans_b } => {
            matmul::backward_matmul(&x[0], &x[1], *trans_a, *trans_b, g, needs)
        }
        // ∂/∂x Σ_axis x = 1: g broadcast back over the axis.
        Op::Sum { axis, keepdim } => {
            one(keep(g, x[0].shape(), *axis, *keepdim)?.broadcast_to(x[0].shape())?)
        }
        // One-hot at the (first) argmax.
        Op::Max {
            axis,
            keepdim,
            argmax,
        } => one(G::onehot_scatter(
            &keep(g, x[0].shape(), *axis, *keepdim)?,
            argmax,
            x[0].shape(),
            *axis,
        )?),
        // ∂ lse/∂x = softmax(x) = exp(x − y).
        Op::LogSumExp { axis, keepdim } => {
            let yk = keep(y, x[0].shape(), *axis, *keepdim)?;
            let gk = keep(g, x[0].shape(), *axis, *keepdim)?;
            let p = x[0]
                .sub(&yk)?
                .unary(crate::ops::elementwise::UnaryOp::Exp)?;
            one(p.mul(&gk)?)
        }
        // softmax: dx = y ⊙ (g − Σ_axis g ⊙ y).
        Op::Softmax { axis } => {
            let s = g.mul(y)?.sum_axis(*axis, true)?;
            one(y.mul(&g.sub(&s)?)?)
        }
        // log-softmax: dx = g − exp(y) ⊙ Σ_axis g.
        Op::LogSoftmax { axis } => {
            let s = g.sum_axis(*axis, true)?;
            let p = y.unary(crate::ops::elementwise::UnaryOp::Exp)?;
            one(g.sub(&p.mul(&s)?)?)
        }
        // cumsum: dx_j = Σ_{k ≥ j} g_k, a cumsum in the other direction.
        Op::Cumsum { axis, reverse } => one(g.cumsum(*axis, !reverse)?),
        Op::Reshape => one(g.reshape(x[0].shape())?),
        Op::Permute(perm) => {
            let mut inverse = vec![0; perm.len()];
            for (d, &p) in perm.iter().enumerate() {
                inverse[p] = d;
            }
            one(g.permute(&inverse)?)
        }
        Op::BroadcastTo => one(g.sum_to_shape(x[0].shape())?),
        Op::Narrow { axis, start } => one(g.pad(x[0].shape(), *axis, *start)?),
        Op::Pad { axis, start } => one(g.narrow(*axis, *start, x[0].shape()[*axis])?),
        // Each part's slice of g.
        Op::Concat { axis } => {
            let mut at = 0;
            x.iter()
                .map(|part| {
                    let len = part.shape()[*axis];
                    let slice = g.narrow(*axis, at, len)?;
                    at += len;
                    Ok(Some(slice))
                })
                .collect()
        }
        Op::IndexSelect { axis, indices } => one(g.index_add(x[0].shape(), *axis, indices)?),
        Op::IndexAdd { axis, indices } => one(g.index_select(*axis, indices)?),
        Op::Gather { axis, indices } => one(g.scatter_add(x[0].shape(), *axis, indices)?),
        Op::ScatterAdd { axis, indices } => one(g.gather(*axis, indices)?),
        Op::Custom { .. } | Op::OnceDifferentiable { .. } => Err(Error::invalid(format!(
            "internal: {} has no basic backward rule",
            op.name()
        ))),
    }
}

/// (∂/∂a, ∂/∂b), each summed back to its operand's shape.
/// Add: (g, g); Sub: (g, −g); Mul: (g·b, g·a); Div: (g/b, −g·a/b²); Maximum: g to the winner.
fn binary_rule<G: Operand>(op: BinaryOp, a: &G, b: &G, y: &G, g: &G) -> Result<Vec<Option<G>>> {
    let (ga, gb) = match op {
        BinaryOp::Add => (g.clone(), g.clone()),
        BinaryOp::Sub => (g.clone(), g.neg()?),
        BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
        BinaryOp::Div => {
            let ga = g.div(b)?;
            // −g·a/b² = −(g/b)·y; y is the recorded output, so a second derivative still
            // sees its dependence on a and b.
            let gb = ga.mul(y)?.neg()?;
            (ga, gb)
        }
        BinaryOp::Maximum => {
            // a wins where y − a == 0 (ties go to a); the mask is piecewise constant.
            use crate::ops::elementwise::{binary, unary, UnaryOp};
            let a_full = binary(BinaryOp::Add, a.value(), &b.value().zeros_like()?)?;
            let a_lost = unary(UnaryOp::Abs, &binary(BinaryOp::Sub, y.value(), &a_full)?)?;
            let zero = g.zeros_like()?;
            (G::select(&a_lost, &zero, g)?, G::select(&a_lost, g, &zero)?)
        }
    };
    Ok(vec![
        Some(ga.sum_to_shape(a.shape())?),
        Some(gb.sum_to_shape(b.shape())?),
    ])
}
