//! Reverse-mode automatic differentiation on a tape.
//!
//! A [`Tape`] records every op applied to its [`Var`]s, in execution order (which is a
//! topological order). [`Var::backward`] walks the tape once in reverse, calling each op's
//! hand-written backward (in the op's own file under `ops/`) to turn ∂L/∂output into
//! ∂L/∂inputs, and accumulates gradients for leaves. Parameters ([`crate::nn::Param`])
//! receive their gradient in `param.grad`. Use a new tape per training step (or
//! [`Tape::reset`]): nothing from one step survives into the next.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::nn::Param;
use crate::ops::elementwise::{self, BinaryOp, UnaryOp};
use crate::ops::index::Indices;
use crate::ops::{matmul, movement, reduce};
use crate::tensor::Tensor;

/// What produced a tape node, with whatever its backward needs besides inputs and output.
#[derive(Clone, Debug)]
pub enum Op {
    /// An input: data (no grad) or a leaf that requires grad.
    Leaf,
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `cond ≠ 0 ? a : b`, cond constant.
    Select(Tensor),
    /// Batched matrix product with optional transposes.
    MatMul {
        trans_a: bool,
        trans_b: bool,
    },
    /// Sum over one axis.
    Sum {
        axis: usize,
        keepdim: bool,
    },
    /// Max over one axis; the gradient goes to the first maximal element.
    Max {
        axis: usize,
        keepdim: bool,
        argmax: Indices,
    },
    LogSumExp {
        axis: usize,
        keepdim: bool,
    },
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    Cumsum {
        axis: usize,
    },
    Reshape,
    Permute(Vec<usize>),
    BroadcastTo,
    Narrow {
        axis: usize,
        start: usize,
    },
    Concat {
        axis: usize,
    },
    IndexSelect {
        axis: usize,
        indices: Indices,
    },
    Gather {
        axis: usize,
        indices: Indices,
    },
    /// Batched Chamfer distance (inputs x, y); the forward's neighbours are kept.
    Chamfer {
        output: Box<crate::ops::chamfer::ChamferOutput>,
        reduction: crate::ops::chamfer::PointReduction,
    },
    /// Entropic OT / Sinkhorn divergence (inputs x, y, a, b); potentials kept for backward.
    Sinkhorn {
        output: Box<crate::ops::sinkhorn::SinkhornOutput>,
        config: crate::ops::sinkhorn::SinkhornConfig,
    },
    /// Rational-quadratic spline (inputs x, uw, uh, ud; value = [out; logdet]).
    Rqs {
        config: crate::ops::rqs::RqsConfig,
        inverse: bool,
    },
}

struct Node {
    op: Op,
    inputs: Vec<usize>,
    value: Tensor,
    requires_grad: bool,
    param: Option<Param>,
}

#[derive(Default)]
struct TapeInner {
    nodes: Vec<Node>,
    /// Param identity → node, so a parameter used twice is one leaf.
    params: HashMap<usize, usize>,
}

/// A recording of operations for one forward/backward pass. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Tape {
    inner: Rc<RefCell<TapeInner>>,
}

/// A tensor on a tape: its value plus its position for backward.
#[derive(Clone)]
pub struct Var {
    tape: Tape,
    id: usize,
    value: Tensor,
    requires_grad: bool,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var#{}({:?}, grad={})",
            self.id, self.value, self.requires_grad
        )
    }
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Tape {
        Tape::default()
    }

    /// Drop every recorded node (start a new step with the same handle).
    pub fn reset(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.nodes.clear();
        inner.params.clear();
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_node(
        &self,
        op: Op,
        inputs: Vec<usize>,
        value: Tensor,
        requires_grad: bool,
        param: Option<Param>,
    ) -> Var {
        let mut inner = self.inner.borrow_mut();
        let id = inner.nodes.len();
        inner.nodes.push(Node {
            op,
            inputs,
            value: value.clone(),
            requires_grad,
            param,
        });
        Var {
            tape: self.clone(),
            id,
            value,
            requires_grad,
        }
    }

    /// A leaf whose gradient is wanted (∂L/∂x is returned by backward).
    pub fn var(&self, value: Tensor) -> Var {
        self.push_node(Op::Leaf, vec![], value, true, None)
    }

    /// A constant input (no gradient).
    pub fn constant(&self, value: Tensor) -> Var {
        self.push_node(Op::Leaf, vec![], value, false, None)
    }

    /// The leaf for a parameter (one per tape, however often it is used).
    pub fn param(&self, p: &Param) -> Var {
        if let Some(&id) = self.inner.borrow().params.get(&p.key()) {
            let inner = self.inner.borrow();
            let n = &inner.nodes[id];
            return Var {
                tape: self.clone(),
                id,
                value: n.value.clone(),
                requires_grad: n.requires_grad,
            };
        }
        let v = self.push_node(
            Op::Leaf,
            vec![],
            p.value(),
            p.requires_grad(),
            Some(p.clone()),
        );
        self.inner.borrow_mut().params.insert(p.key(), v.id);
        v
    }

    /// Record an op applied to `inputs` that produced `value`.
    pub fn push(&self, op: Op, inputs: &[&Var], value: Tensor) -> Result<Var> {
        for v in inputs {
            if !Rc::ptr_eq(&v.tape.inner, &self.inner) {
                return Err(Error::invalid("operands belong to different tapes"));
            }
        }
        let requires_grad = inputs.iter().any(|v| v.requires_grad);
        Ok(self.push_node(
            op,
            inputs.iter().map(|v| v.id).collect(),
            value,
            requires_grad,
            None,
        ))
    }
}

/// Gradients from one backward pass, by variable.
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// ∂L/∂v, or `None` when `v` does not influence the loss or needs no grad.
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.grads.get(v.id).and_then(|g| g.as_ref())
    }
}

impl Var {
    /// The value computed in the forward pass.
    pub fn value(&self) -> &Tensor {
        &self.value
    }
    /// The tape this variable is recorded on.
    pub fn tape(&self) -> &Tape {
        &self.tape
    }
    /// Shape of the value.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    /// Whether gradients flow to this variable.
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }
    /// A constant on the same tape (no gradient flows into it).
    pub fn constant(&self, value: Tensor) -> Var {
        self.tape.constant(value)
    }

    /// Reverse pass from this scalar: returns ∂self/∂v for every leaf `v` that requires grad
    /// and adds ∂self/∂p to `p.grad` for every parameter `p` used.
    pub fn backward(&self) -> Result<Gradients> {
        if self.value.numel() != 1 {
            return Err(Error::NotScalar {
                shape: self.value.shape().to_vec(),
            });
        }
        let inner = self.tape.inner.borrow();
        let mut grads: Vec<Option<Tensor>> = vec![None; self.id + 1];
        grads[self.id] = Some(self.value.full_like(1.0)?);
        for id in (0..=self.id).rev() {
            let node = &inner.nodes[id];
            let Some(g) = grads[id].take() else { continue };
            if !node.requires_grad {
                continue;
            }
            if node.inputs.is_empty() {
                grads[id] = Some(g);
                continue;
            }
            let inputs: Vec<&Tensor> = node.inputs.iter().map(|&i| &inner.nodes[i].value).collect();
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|&i| inner.nodes[i].requires_grad)
                .collect();
            let input_grads = backward_op(&node.op, &inputs, &needs, &node.value, &g)?;
            for (&input, ig) in node.inputs.iter().zip(input_grads) {
                let (Some(ig), true) = (ig, inner.nodes[input].requires_grad) else {
                    continue;
                };
                grads[input] = Some(match grads[input].take() {
                    Some(acc) => elementwise::binary(BinaryOp::Add, &acc, &ig)?,
                    None => ig,
                });
            }
        }
        for (id, node) in inner.nodes.iter().enumerate().take(self.id + 1) {
            if let (Some(p), Some(g)) = (&node.param, &grads[id]) {
                p.accumulate_grad(g)?;
            }
        }
        Ok(Gradients { grads })
    }
}

/// Dispatch to each op's backward (which lives beside its forward in `ops/`).
/// `needs[i]` tells whether input i wants a gradient (ops with costly per-input work, like
/// matmul, skip the others).
fn backward_op(
    op: &Op,
    x: &[&Tensor],
    needs: &[bool],
    y: &Tensor,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    match op {
        Op::Leaf => Ok(vec![]),
        Op::Unary(u) => elementwise::backward_unary(*u, x[0], y, g),
        Op::Binary(b) => elementwise::backward_binary(*b, x[0], x[1], y, g),
        Op::Select(cond) => elementwise::backward_select(cond, x[0], x[1], g),
        Op::MatMul { trans_a, trans_b } => {
            matmul::backward_matmul(x[0], x[1], *trans_a, *trans_b, g, needs)
        }
        Op::Sum { axis, keepdim } => reduce::backward_sum(x[0], *axis, *keepdim, g),
        Op::Max {
            axis,
            keepdim,
            argmax,
        } => reduce::backward_max(x[0], *axis, *keepdim, argmax, g),
        Op::LogSumExp { axis, keepdim } => reduce::backward_logsumexp(x[0], y, *axis, *keepdim, g),
        Op::Softmax { axis } => reduce::backward_softmax(y, *axis, g),
        Op::LogSoftmax { axis } => reduce::backward_log_softmax(y, *axis, g),
        Op::Cumsum { axis } => reduce::backward_cumsum(*axis, g),
        Op::Reshape => Ok(vec![Some(g.reshape(x[0].shape())?)]),
        Op::Permute(perm) => movement::backward_permute(perm, g),
        Op::BroadcastTo => Ok(vec![Some(elementwise::sum_to_shape(g, x[0].shape())?)]),
        Op::Narrow { axis, start } => movement::backward_narrow(x[0].shape(), *axis, *start, g),
        Op::Concat { axis } => movement::backward_concat(x, *axis, g),
        Op::IndexSelect { axis, indices } => {
            crate::ops::index::backward_index_select(x[0].shape(), *axis, indices, g)
        }
        Op::Chamfer { output, reduction } => {
            crate::ops::chamfer::backward_chamfer(x, output, *reduction, g)
        }
        Op::Sinkhorn { output, config } => {
            crate::ops::sinkhorn::backward_sinkhorn(x, output, config, g)
        }
        Op::Rqs { config, inverse } => crate::ops::rqs::backward_rqs(x, config, *inverse, g),
        Op::Gather { axis, indices } => {
            crate::ops::index::backward_gather(x[0].shape(), *axis, indices, g)
        }
    }
}
