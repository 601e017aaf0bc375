//! Neural-network building blocks on the tape: parameters, layers, optimizers, checkpoints.

mod activation;
mod batchnorm;
pub mod coupling;
mod ctx;
mod linear;
pub mod optim;
mod param;
mod residual;
pub mod store;

pub use activation::{glu, Activation};
pub use batchnorm::BatchNorm1d;
pub use coupling::{alternating_mask, CouplingKind, CouplingTransform};
pub use ctx::Ctx;
pub use linear::{Linear, Mlp};
pub use optim::{clip_grad_norm, Adam, AdamConfig};
pub use param::{Module, Param};
pub use residual::{ResidualBlock, ResidualNet, ResidualNetConfig};
