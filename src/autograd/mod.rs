//! Reverse-mode automatic differentiation on a tape, to any order.
//!
//! A [`Tape`] records every op applied to its [`Var`]s, in execution order (a topological
//! order). Two reverse passes walk it (see [`walk`]):
//!
//! - [`Var::backward`] — training: ∂L/∂v for every leaf that requires grad, added to the
//!   gradient of every parameter leaf ([`Leaf::accumulate_grad`]). Each op's rule runs on
//!   plain tensors (the fast path: fused backward kernels, nothing recorded).
//! - [`Tape::grad`] / [`Tape::vjp`] — ∂L/∂xᵢ for chosen inputs only, returned as values;
//!   parameter gradients are left alone and nodes that do not lead to an input are skipped.
//!   With [`CreateGraph::Yes`] every rule is written in differentiable ops and recorded on
//!   the same tape, so the returned gradients are ordinary [`Var`]s: a loss built from them
//!   (a gradient penalty, a Hessian–vector product) can be differentiated again, to any order.
//!
//! Fused ops (Chamfer, Sinkhorn, RQS, …) enter through the [`CustomOp`] trait without
//! editing this module. They may be once-differentiable: their first-order gradient is then
//! recorded as a node whose own derivative is an [`Error::NotDifferentiable`] naming the op.
//!
//! The tape knows no `nn` types: a parameter is any [`Leaf`] (identity + value + a place for
//! its gradient), recorded once per tape however often it is used. Use a new tape per
//! training step (or [`Tape::reset`]).

mod custom;
mod operand;
mod rules;
mod walk;

pub use custom::{saved_as, CustomForward, CustomOp};
pub(crate) use operand::Operand;

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::index::Indices;
use crate::tensor::Tensor;

/// What produced a tape node, with whatever its backward needs besides inputs and output.
#[derive(Clone)]
pub enum Op {
    /// An input: data (no grad), a variable, or a parameter leaf.
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
    /// Inclusive cumulative sum along `axis` (from the end when `reverse`).
    Cumsum {
        axis: usize,
        reverse: bool,
    },
    Reshape,
    Permute(Vec<usize>),
    BroadcastTo,
    Narrow {
        axis: usize,
        start: usize,
    },
    /// Zeros of a larger shape with the input written at `start` along `axis`.
    Pad {
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
    /// out[.., indices[k], ..] += x[.., k, ..] (index_select's adjoint).
    IndexAdd {
        axis: usize,
        indices: Indices,
    },
    Gather {
        axis: usize,
        indices: Indices,
    },
    /// out[.., indices[.., k, ..], ..] += x[.., k, ..] (gather's adjoint).
    ScatterAdd {
        axis: usize,
        indices: Indices,
    },
    /// A fused op with its forward's saved state.
    Custom {
        op: Rc<dyn CustomOp>,
        saved: Rc<dyn Any>,
    },
    /// The recorded first-order gradient of a once-differentiable op (inputs: the op's
    /// inputs and the incoming gradient). Differentiating it again is an error.
    OnceDifferentiable {
        op: &'static str,
    },
}

impl Op {
    /// The op's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "leaf",
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Select(_) => "select",
            Op::MatMul { .. } => "matmul",
            Op::Sum { .. } => "sum",
            Op::Max { .. } => "max",
            Op::LogSumExp { .. } => "logsumexp",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Cumsum { .. } => "cumsum",
            Op::Reshape => "reshape",
            Op::Permute(_) => "permute",
            Op::BroadcastTo => "broadcast_to",
            Op::Narrow { .. } => "narrow",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::IndexSelect { .. } => "index_select",
            Op::IndexAdd { .. } => "index_add",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::Custom { op, .. } => op.name(),
            Op::OnceDifferentiable { op } => op,
        }
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Unary(u) => write!(f, "Unary({u:?})"),
            Op::Binary(b) => write!(f, "Binary({b:?})"),
            other => f.write_str(other.name()),
        }
    }
}

/// A tensor that lives outside the tape and receives gradients from [`Var::backward`]:
/// a model parameter. The tape identifies it by [`Leaf::leaf_key`], so a parameter used
/// many times is one leaf.
pub trait Leaf {
    /// Identity of the shared storage (equal for clones of the same parameter).
    fn leaf_key(&self) -> usize;
    /// The current value.
    fn leaf_value(&self) -> Tensor;
    /// Whether gradients should reach it.
    fn leaf_requires_grad(&self) -> bool;
    /// `grad += g`.
    fn accumulate_grad(&self, g: &Tensor) -> Result<()>;
}

/// Whether [`Tape::grad`] records its backward pass (so the gradients are differentiable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateGraph {
    /// Record every rule in differentiable ops: higher-order derivatives work.
    Yes,
    /// Plain tensors, nothing recorded (the fast path).
    No,
}

pub(crate) struct Node {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<usize>,
    pub(crate) value: Tensor,
    pub(crate) requires_grad: bool,
    pub(crate) leaf: Option<Rc<dyn Leaf>>,
}

#[derive(Default)]
struct TapeInner {
    nodes: Vec<Rc<Node>>,
    /// Leaf identity → node, so a parameter used twice is one leaf.
    leaves: HashMap<usize, usize>,
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
        inner.leaves.clear();
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
        leaf: Option<Rc<dyn Leaf>>,
    ) -> Var {
        let mut inner = self.inner.borrow_mut();
        let id = inner.nodes.len();
        inner.nodes.push(Rc::new(Node {
            op,
            inputs,
            value: value.clone(),
            requires_grad,
            leaf,
        }));
        Var {
            tape: self.clone(),
            id,
            value,
            requires_grad,
        }
    }

    /// A leaf whose gradient is wanted (∂L/∂x is returned by backward and grad).
    pub fn var(&self, value: Tensor) -> Var {
        self.push_node(Op::Leaf, vec![], value, true, None)
    }

    /// A constant input (no gradient).
    pub fn constant(&self, value: Tensor) -> Var {
        self.push_node(Op::Leaf, vec![], value, false, None)
    }

    /// The leaf for a parameter (one per tape, however often it is used).
    pub fn param<L: Leaf + Clone + 'static>(&self, p: &L) -> Var {
        let key = p.leaf_key();
        let known = self.inner.borrow().leaves.get(&key).copied();
        if let Some(id) = known {
            return self.var_of(id);
        }
        let v = self.push_node(
            Op::Leaf,
            vec![],
            p.leaf_value(),
            p.leaf_requires_grad(),
            Some(Rc::new(p.clone())),
        );
        self.inner.borrow_mut().leaves.insert(key, v.id);
        v
    }

    /// The variable of node `id`.
    fn var_of(&self, id: usize) -> Var {
        let inner = self.inner.borrow();
        let n = &inner.nodes[id];
        Var {
            tape: self.clone(),
            id,
            value: n.value.clone(),
            requires_grad: n.requires_grad,
        }
    }

    fn node(&self, id: usize) -> Rc<Node> {
        self.inner.borrow().nodes[id].clone()
    }

    fn owns(&self, v: &Var) -> Result<()> {
        if Rc::ptr_eq(&v.tape.inner, &self.inner) {
            Ok(())
        } else {
            Err(Error::invalid("operands belong to different tapes"))
        }
    }

    /// Record an op applied to `inputs` that produced `value`.
    pub fn push(&self, op: Op, inputs: &[&Var], value: Tensor) -> Result<Var> {
        for v in inputs {
            self.owns(v)?;
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

    /// ∂output/∂xᵢ for each of `inputs`, for a scalar `output`; an input the output does not
    /// depend on gets zeros. Parameter gradients are not touched. With [`CreateGraph::Yes`]
    /// the gradients are differentiable `Var`s on this tape (gradient penalties, Hessians).
    pub fn grad(&self, output: &Var, inputs: &[&Var], graph: CreateGraph) -> Result<Vec<Var>> {
        check_scalar(output)?;
        let seed = output.value.full_like(1.0)?;
        self.vjp(output, &self.constant(seed), inputs, graph)
    }

    /// Vector–Jacobian product: Σⱼ cotangentⱼ · ∂outputⱼ/∂xᵢ for each of `inputs`
    /// (`cotangent` has the output's shape and may itself be a differentiable `Var`).
    pub fn vjp(
        &self,
        output: &Var,
        cotangent: &Var,
        inputs: &[&Var],
        graph: CreateGraph,
    ) -> Result<Vec<Var>> {
        self.owns(output)?;
        self.owns(cotangent)?;
        for v in inputs {
            self.owns(v)?;
        }
        if cotangent.shape() != output.shape() {
            return Err(Error::shape(
                "vjp",
                format!(
                    "cotangent {:?} does not match the output {:?}",
                    cotangent.shape(),
                    output.shape()
                ),
            ));
        }
        let wanted: Vec<usize> = inputs.iter().map(|v| v.id).collect();
        let reach = walk::reaching(self, output.id, &wanted);
        let found: Vec<Option<Var>> = match graph {
            CreateGraph::No => {
                let grads = walk::reverse(
                    self,
                    output.id,
                    cotangent.value.clone(),
                    &reach,
                    &wanted,
                    rules::tensor_rule,
                )?;
                wanted
                    .iter()
                    .map(|&id| grads[id].clone().map(|g| self.constant(g)))
                    .collect()
            }
            CreateGraph::Yes => {
                let grads = walk::reverse(
                    self,
                    output.id,
                    cotangent.clone(),
                    &reach,
                    &wanted,
                    rules::graph_rule,
                )?;
                wanted.iter().map(|&id| grads[id].clone()).collect()
            }
        };
        found
            .into_iter()
            .zip(inputs)
            .map(|(g, x)| match g {
                Some(g) => Ok(g),
                None => Ok(self.constant(x.value.zeros_like()?)),
            })
            .collect()
    }
}

fn check_scalar(v: &Var) -> Result<()> {
    if v.value.numel() != 1 {
        return Err(Error::NotScalar {
            shape: v.value.shape().to_vec(),
        });
    }
    Ok(())
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
    /// The same value as a constant: gradients stop here (`detach`).
    pub fn detach(&self) -> Var {
        self.tape.constant(self.value.clone())
    }

    /// Reverse pass from this scalar: returns ∂self/∂v for every leaf `v` that requires grad
    /// and adds ∂self/∂p to the gradient of every parameter `p` used ([`Leaf`]).
    pub fn backward(&self) -> Result<Gradients> {
        check_scalar(self)?;
        let tape = &self.tape;
        let reach: Vec<bool> = {
            let inner = tape.inner.borrow();
            inner.nodes[..=self.id]
                .iter()
                .map(|n| n.requires_grad)
                .collect()
        };
        let seed = self.value.full_like(1.0)?;
        let grads = walk::reverse(tape, self.id, seed, &reach, &[], rules::tensor_rule)?;
        for (id, g) in grads.iter().enumerate() {
            if let Some(g) = g {
                if let Some(leaf) = &tape.node(id).leaf {
                    leaf.accumulate_grad(g)?;
                }
            }
        }
        Ok(Gradients { grads })
    }
}
