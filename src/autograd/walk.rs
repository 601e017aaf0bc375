//! The reverse pass shared by [`Var::backward`](super::Var::backward), [`Tape::grad`] and
//! [`Tape::vjp`]: one walk over the tape from the root down, generic over what a gradient is
//! (a plain [`Tensor`](crate::Tensor) on the fast path, a recorded [`Var`](super::Var) when
//! the graph is kept).
//!
//! The tape is borrowed only to look a node up, never while a rule runs, so rules may
//! record new nodes (they land after the root and are not visited by this walk).

use std::rc::Rc;

use super::{Node, Operand, Tape};
use crate::error::Result;

/// A backward rule: ∂L/∂inputs of node `id` from g = ∂L/∂output, `needs[i]` telling which
/// inputs want one.
pub(super) type Rule<G> = fn(
    tape: &Tape,
    id: usize,
    node: &Node,
    inputs: &[Rc<Node>],
    g: &G,
    needs: &[bool],
) -> Result<Vec<Option<G>>>;

/// `reach[id]`: node `id` (up to `root`) depends on one of `wanted`, so gradients for them
/// pass through it. Nodes before the earliest wanted one cannot.
pub(super) fn reaching(tape: &Tape, root: usize, wanted: &[usize]) -> Vec<bool> {
    let inner = tape.inner.borrow();
    let mut reach = vec![false; root + 1];
    for &w in wanted {
        if w <= root {
            reach[w] = true;
        }
    }
    let start = wanted.iter().copied().min().unwrap_or(root + 1);
    for id in start..=root {
        if !reach[id] {
            reach[id] = inner.nodes[id].inputs.iter().any(|&i| reach[i]);
        }
    }
    reach
}

/// Walk from `root` (gradient `seed`) down through the nodes with `reach`; returns the
/// gradient of every leaf reached and of every node in `keep` (others are dropped as soon
/// as they are passed on, to free memory).
pub(super) fn reverse<G: Operand>(
    tape: &Tape,
    root: usize,
    seed: G,
    reach: &[bool],
    keep: &[usize],
    rule: Rule<G>,
) -> Result<Vec<Option<G>>> {
    let mut grads: Vec<Option<G>> = vec![None; root + 1];
    if !reach[root] {
        return Ok(grads);
    }
    grads[root] = Some(seed);
    for id in (0..=root).rev() {
        if !reach[id] || grads[id].is_none() {
            continue;
        }
        let (node, inputs) = {
            let inner = tape.inner.borrow();
            let node = inner.nodes[id].clone();
            let inputs: Vec<Rc<Node>> = node
                .inputs
                .iter()
                .map(|&i| inner.nodes[i].clone())
                .collect();
            (node, inputs)
        };
        if node.inputs.is_empty() {
            continue; // a leaf keeps its gradient
        }
        let needs: Vec<bool> = node.inputs.iter().map(|&i| reach[i]).collect();
        if !needs.iter().any(|&n| n) {
            continue;
        }
        let g = if keep.contains(&id) {
            grads[id].clone()
        } else {
            grads[id].take()
        };
        let Some(g) = g else { continue };
        let input_grads = rule(tape, id, &node, &inputs, &g, &needs)?;
        for ((&input, ig), need) in node.inputs.iter().zip(input_grads).zip(&needs) {
            let (Some(ig), true) = (ig, *need) else {
                continue;
            };
            grads[input] = Some(match grads[input].take() {
                Some(acc) => acc.add(&ig)?,
                None => ig,
            });
        }
    }
    Ok(grads)
}
