//! Jet data: the JetNet file layout (HDF5 and `.npy`), validated on load; the Cartesian
//! representation, splits and jet images; the built-in sample ([`builtin`]).

pub mod builtin;
pub mod cartesian;
pub mod jetnet;

pub use cartesian::{average_jet_image, split_indices, CartesianJets};
pub use jetnet::{JetNetData, JET_FEATURES, PARTICLE_FEATURES};
