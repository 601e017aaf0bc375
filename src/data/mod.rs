//! Jet data: the JetNet file layout (HDF5 and `.npy`), validated on load.

pub mod jetnet;

pub use jetnet::{JetNetData, JET_FEATURES, PARTICLE_FEATURES};
