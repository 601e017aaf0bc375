//! The coupling normalising flow family (nflows semantics; the DESY particle-cloud flows):
//! * [`network`] — the flow itself: coupling layers with ResidualNet conditioners;
//! * [`settings`] — `jetgen train flow`'s options, config file and `config.json` (one struct);
//! * [`checkpoint`] — the trained model with its standardisation and conditions, saved and
//!   loaded as one safetensors file;
//! * [`sampling`] — generation (drawn or given conditions), log-densities, the [`Generator`];
//! * [`training`] — the flow's [`crate::runs`] task: steps, validation NLL, mass constraint.
//!
//! [`Generator`]: crate::runs::generator::Generator

pub mod checkpoint;
pub mod network;
pub mod sampling;
pub mod settings;
pub mod training;

pub use checkpoint::{load_checkpoint, save_checkpoint, TrainedFlow, FAMILY};
pub use network::{standard_normal_log_prob, Flow, FlowConfig, MaskKind};
pub use sampling::{generate, generate_conditional, log_prob_jets, FlowGenerator};
pub use settings::{CouplingChoice, FlowSettings, MaskChoice};
pub use training::train_flow;
