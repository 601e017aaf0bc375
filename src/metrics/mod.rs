//! Evaluation metrics as the `jetnet` package (0.2.5) defines them.

pub mod w1;

pub use w1::{w1m, w1p, wasserstein_1d, wasserstein_1d_weighted, Bootstrap, W1Result};
