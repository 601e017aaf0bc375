//! Evaluation metrics as the `jetnet` package (0.2.5) defines them.

pub mod efp;
pub mod w1;

pub use efp::{efps_d4, jet_efps, N_EFP};
pub use w1::{w1efp, w1m, w1p, wasserstein_1d, wasserstein_1d_weighted, Bootstrap, W1Result};
