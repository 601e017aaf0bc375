//! Generative models built from the engine's layers: normalising flows so far.

pub mod conditions;
pub mod flow;
pub mod flow_data;
pub mod pchip;
pub mod train_flow;

pub use flow::{Flow, FlowConfig};
