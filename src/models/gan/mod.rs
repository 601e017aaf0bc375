//! Generative adversarial networks for particle clouds, trained through [`crate::runs`]:
//! * [`network`] — the fully connected generator and critic on flattened clouds;
//! * [`mp`] — MPGAN's message-passing generator and critic (fused `ops::message`);
//! * [`pointnet`] — the PointNet-Mix critic;
//! * [`particles`] — MPGAN's particle representation, multiplicities and masks;
//! * [`particle_model`] — the MPGAN family's generator, sampling and checkpoint;
//! * [`nets`] — the networks and data as the training steps see them (flat or particles);
//! * [`losses`] — LSGAN, WGAN-GP and CramerGAN losses; the gradient penalty is the true
//!   gradient of the input-gradient norm, recorded on the tape (second-order autodiff);
//! * [`settings`] — `jetgen train gan`'s options (`--generator`, `--discriminator`,
//!   `--loss`, …);
//! * [`checkpoint`] — the saved generator, generation and the [`Generator`];
//! * [`training`] — critic and generator steps, validation FPD, EMA, periodic checkpoints.
//!
//! [`Generator`]: crate::runs::generator::Generator

pub mod checkpoint;
pub mod losses;
pub mod mp;
pub mod nets;
pub mod network;
pub mod particle_model;
pub mod particles;
pub mod pointnet;
pub mod settings;
pub mod training;

pub use checkpoint::{generate, load_gan, save_gan, GanGenerator, TrainedGan, FAMILY};
pub use settings::{DiscriminatorArch, GanLoss, GanOptimizer, GanSettings, GeneratorArch};
pub use training::train_gan;
