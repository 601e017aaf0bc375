//! The library generator (the "library approach" of fast simulation): the "no model"
//! baseline every generative model must beat. It keeps the training jets, indexed by jet
//! conditions (relative mass, pT, multiplicity), and answers a requested condition with the
//! nearest training jet (k = 1) or a displacement interpolation between the k nearest
//! along optimal transport plans (k > 1), so particles move rather than blur.
//! * [`kdtree`] — exact k-nearest-neighbour search in condition space, ties at random;
//! * [`interpolate`] — displacement interpolation of particle clouds (exact OT plans);
//! * [`library`] — the index and the generation rule;
//! * [`settings`] — `jetgen train library`'s options (`--k`, `--condition`);
//! * [`checkpoint`], [`generator`] — the saved library and its [`Generator`];
//! * [`training`] — the run: split, build, checkpoint, evaluation.
//!
//! [`Generator`]: crate::runs::generator::Generator

pub mod checkpoint;
pub mod generator;
pub mod interpolate;
pub mod kdtree;
#[allow(clippy::module_inception)]
pub mod library;
pub mod settings;
pub mod training;

pub use checkpoint::{load_library, save_library, FAMILY};
pub use generator::LibraryGenerator;
pub use library::Library;
pub use settings::{LibraryCondition, LibrarySettings};
pub use training::train_library;
