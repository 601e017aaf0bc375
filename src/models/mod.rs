//! Generative model families built from the engine's layers, one folder each; every family
//! trains through [`crate::runs`] and generates through
//! [`Generator`](crate::runs::generator::Generator). So far: coupling normalising flows, flow matching, GANs, VAEs and the library generator.
//! Shared by the families: jet conditions (mass, multiplicity) and their sampler.

pub mod conditions;
pub mod flow;
pub mod flow_data;
pub mod fm;
pub mod gan;
pub mod library;
pub mod pchip;
pub mod vae;

pub use flow::{Flow, FlowConfig};
