//! Generative adversarial networks for particle clouds, trained through [`crate::runs`]:
//! * [`network`] — the fully connected generator and critic on flattened clouds;
//! * [`losses`] — LSGAN, WGAN-GP and CramerGAN losses; the gradient penalty is the true
//!   gradient of the input-gradient norm, recorded on the tape (second-order autodiff);
//! * [`settings`] — `jetgen train gan`'s options (`--generator`, `--discriminator`,
//!   `--loss`, …);
//! * [`checkpoint`] — the saved generator, generation and the [`Generator`];
//! * [`training`] — critic and generator steps, validation FPD, EMA, periodic checkpoints.
//!
//! Not yet here: MPGAN's message-passing generator and discriminator and the PointNet-Mix
//! discriminator (`--generator mp`, `--discriminator mp|pointnet` are refused).
//!
//! [`Generator`]: crate::runs::generator::Generator

pub mod checkpoint;
pub mod losses;
pub mod network;
pub mod settings;
pub mod training;

pub use checkpoint::{generate, load_gan, save_gan, GanGenerator, TrainedGan, FAMILY};
pub use settings::{DiscriminatorArch, GanLoss, GanSettings, GeneratorArch};
pub use training::train_gan;
