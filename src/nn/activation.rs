//! Activation functions as a value (so model configs can name them).

use crate::autograd::Var;
use crate::error::{Error, Result};

/// A pointwise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f64),
    Elu(f64),
    Tanh,
    Sigmoid,
    Softplus,
    Identity,
}

impl Activation {
    /// Apply to `x`.
    pub fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(a) => x.leaky_relu(a),
            Activation::Elu(a) => x.elu(a),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softplus => x.softplus(),
            Activation::Identity => Ok(x.clone()),
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    /// `relu`, `leaky_relu` (slope 0.01), `elu`, `tanh`, `sigmoid`, `softplus`, `identity`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu(0.01),
            "elu" => Activation::Elu(1.0),
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "softplus" => Activation::Softplus,
            "identity" | "none" => Activation::Identity,
            _ => return Err(Error::invalid(format!("unknown activation '{s}'"))),
        })
    }
}

/// Gated linear unit along `axis`: split x into halves (a, b), return a ⊙ σ(b).
pub fn glu(x: &Var, axis: isize) -> Result<Var> {
    let nd = x.shape().len();
    let ax = crate::shape::normalize_axis("glu", axis, nd)?;
    let n = x.shape()[ax];
    if !n.is_multiple_of(2) {
        return Err(Error::shape("glu", format!("axis {ax} has odd size {n}")));
    }
    let a = x.narrow(ax as isize, 0, n / 2)?;
    let b = x.narrow(ax as isize, n / 2, n / 2)?;
    a.mul(&b.sigmoid()?)
}
