//! # jetgen
//!
//! Generative models for particle jets on a from-scratch numerical engine: tensors on CPU
//! (rayon) and CUDA (cudarc + hand-written kernels), a reverse-mode autodiff tape, neural
//! network layers and optimizers.
//!
//! Layers, bottom to top: [`tensor`] / [`device`] (storage, no autodiff) → [`ops`] (math on
//! tensors, each op with its backward) → [`autograd`] (the tape) → [`nn`] (layers,
//! optimizers, checkpoints) → [`models`] (one folder per family) → [`runs`] (training,
//! evaluation, the `Generator` interface) → the CLI and the C API.

// `jetgen::` paths inside the crate too: the bench workloads (src/cli/bench/workloads.rs)
// are also compiled into the criterion benches.
extern crate self as jetgen;

pub mod autograd;
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod ffi;
pub mod io;
pub mod malloc_tuning;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod ode;
pub mod ops;
pub mod physics;
pub mod plots;
pub mod quiet_panic;
pub mod real;
pub mod rng;
pub mod runs;
pub mod shape;
pub mod simd;
pub mod tensor;

pub use autograd::{Gradients, Tape, Var};
pub use device::Device;
pub use error::{Error, Result};
pub use rng::Rng;
pub use tensor::{DType, Tensor};

/// Library version (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Run `f` on one of rayon's worker threads and wait for it. CPU ops called from a worker
/// run small jobs inline and split large ones with work stealing, instead of injecting every
/// job into the pool from outside (a wake-up round trip per op). Training loops and
/// benchmarks wrap their whole loop in this; calling ops from any thread stays correct.
pub fn on_thread_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
