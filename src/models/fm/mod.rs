//! Flow matching with EPiC velocity networks (EPiC-FM, arXiv:2310.00049), trained through
//! [`crate::runs`]:
//! * [`network`] — the permutation-equivariant EPiC network with masked pooling;
//! * [`path`] — the straight probability path (σ_min) and the flow-matching loss;
//! * [`coupling`] — mini-batch OT pairing of noise and jets (OT-CFM; exact or Sinkhorn);
//! * [`settings`] — `jetgen train fm`'s options;
//! * [`checkpoint`] — the saved model (EMA weights, standardisation, multiplicities);
//! * [`inference`] — the tape-free CPU forward that generation runs on;
//! * [`sampling`] — generation by integrating the ODE ([`crate::ode`]), the [`Generator`];
//! * [`likelihood`] — exact log-densities (exact or Hutchinson divergence along the ODE);
//! * [`training`] — the run-layer task: steps, EMA, validation FPD.
//!
//! [`Generator`]: crate::runs::generator::Generator

pub mod checkpoint;
pub mod coupling;
pub mod inference;
pub mod likelihood;
pub mod network;
pub mod path;
pub mod sampling;
pub mod settings;
pub mod training;

pub use checkpoint::{load_checkpoint, save_checkpoint, write_bench_checkpoint, TrainedFm, FAMILY};
pub use network::{EpicConfig, EpicNet};
pub use sampling::FmGenerator;
pub use settings::{Coupling, FmCondition, FmSettings};
pub use training::train_fm;
