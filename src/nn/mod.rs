//! Neural-network building blocks on the tape: parameters, layers, optimizers, checkpoints.
//!
//! A training loop (the README's example, compiled and run as a doc test):
//! ```
//! use jetgen::nn::{Activation, Adam, AdamConfig, Ctx, Mlp, Module};
//! use jetgen::{Device, Rng};
//! # fn main() -> jetgen::Result<()> {
//! let device = Device::Cpu;
//! let mut rng = Rng::new(0);
//! let mlp = Mlp::new("mlp", &[90, 64, 90], Activation::Relu, &mut rng, device)?;
//! let mut opt = Adam::new(mlp.params(), AdamConfig { lr: 1e-3, ..Default::default() });
//! let (x, y) = (rng.normal(&[32, 90], 0.0, 1.0, device)?, rng.normal(&[32, 90], 0.0, 1.0, device)?);
//! let mut losses = Vec::new();
//! for step in 0..20u64 {
//!     opt.zero_grad();
//!     let ctx = Ctx::new(true, step); // a fresh tape per step
//!     let out = mlp.forward(&ctx, &ctx.tape.constant(x.clone()))?;
//!     let loss = out.sub(&ctx.tape.constant(y.clone()))?.square()?.mean_all()?;
//!     losses.push(loss.value().item()?);
//!     loss.backward()?; // gradients land in each Param
//!     opt.step()?;
//! }
//! assert!(losses[19] < losses[0]);
//! let path = std::env::temp_dir().join("jetgen-doc-mlp.safetensors");
//! jetgen::nn::store::save_params(&path, &mlp.params(), &Default::default())?;
//! # std::fs::remove_file(&path).ok();
//! # Ok(())
//! # }
//! ```

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
pub use optim::{clip_grad_norm, Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig};
pub use param::{Module, Param};
pub use residual::{ResidualBlock, ResidualNet, ResidualNetConfig};
