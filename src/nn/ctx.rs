//! The per-forward context: which tape to record on, train or eval mode, and the random
//! stream for dropout.

use std::cell::RefCell;

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::rng::Rng;

/// Forward-pass context shared by all layers of a model.
pub struct Ctx {
    pub tape: Tape,
    /// Train mode: batch statistics in BatchNorm, active dropout.
    pub train: bool,
    rng: RefCell<Rng>,
}

impl Ctx {
    /// A context on a fresh tape.
    pub fn new(train: bool, seed: u64) -> Ctx {
        Ctx {
            tape: Tape::new(),
            train,
            rng: RefCell::new(Rng::new(seed)),
        }
    }
    /// A context on an existing tape.
    pub fn with_tape(tape: Tape, train: bool, rng: Rng) -> Ctx {
        Ctx {
            tape,
            train,
            rng: RefCell::new(rng),
        }
    }
    /// A fresh seed from the context's random stream (for fused ops that draw their own
    /// dropout multipliers, e.g. [`Var::edge_mlp`]).
    pub fn next_seed(&self) -> u64 {
        self.rng.borrow_mut().next_u64()
    }
    /// Inverted dropout (identity in eval mode).
    pub fn dropout(&self, x: &Var, p: f32) -> Result<Var> {
        x.dropout(p, self.train, &mut self.rng.borrow_mut())
    }
}
