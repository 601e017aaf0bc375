//! The model-agnostic run layer: everything between "here are jets and settings" and "here
//! is a trained model with its metrics", shared by every model family.
//!
//! * [`settings`] — the shared options and the one-source settings machinery (CLI, config
//!   file, `config.json`);
//! * [`split`] — the seeded train/validation split; [`batch`] — mini-batches;
//! * [`schedule`] — learning-rate schedules; [`early_stop`] — early stopping on a chosen
//!   validation score;
//! * [`train_loop`] — the loop itself over a family's [`train_loop::TrainTask`];
//! * [`progress`] — step reports and the terminal progress bar;
//! * [`dir`] — the run directory's files; [`checkpoint`] — the checkpoint validator every
//!   family's loader goes through;
//! * [`finish`] — end-of-run generation, the full evaluation against the validation split
//!   with the truth floor, `metrics.json` and the plots;
//! * [`generator`] — the [`Generator`](generator::Generator) interface every trained model
//!   implements; [`registry`] — the families, and checkpoint → family dispatch.

pub mod batch;
pub mod checkpoint;
pub mod dir;
pub mod early_stop;
pub mod finish;
pub mod generator;
pub mod progress;
pub mod registry;
pub mod schedule;
pub mod settings;
pub mod split;
pub mod train_loop;

pub use dir::RunDir;
pub use finish::RunReport;
pub use generator::{Conditioning, Generator};
pub use registry::load_generator;
