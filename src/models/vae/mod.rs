//! Variational autoencoders and plain autoencoders for jets (the 2020 "sparse data
//! generation" jet VAE, Collins' EMD-VAE, the anomaly-detection AE), two families sharing
//! one code path — `vae` and `ae` (`jetgen train vae|ae`):
//! * [`settings`] — the options (loss, β and its schedule, latent size, particles, widths);
//! * [`data`] — jets as clouds (Cartesian momenta or relative features), standardisation,
//!   conversions to JetNet layout;
//! * [`network`] — the MLP encoder/decoder, the reparameterisation, the KL;
//! * [`loss`] — MSE, Chamfer, Chamfer + jet pT/mass, Sinkhorn-EMD reconstruction losses;
//! * [`checkpoint`] — one safetensors file per model (with an optional learned prior);
//! * [`sampling`] — encoding, reconstruction, anomaly scores, generation, the [`Generator`];
//! * [`training`] — the run-layer task; [`analysis`] — the VAE plots and reports;
//! * [`anomaly`] — `jetgen anomaly`: ROC, AUC, rejections, the score's mass correlation;
//! * [`prior`] — `jetgen latent`: a flow fitted to the training codes as the prior;
//! * [`dimensionality`] — `jetgen dimensionality`: D(β) = −dKL/d ln β across constant-β runs.
//!
//! [`Generator`]: crate::runs::generator::Generator

pub mod analysis;
pub mod anomaly;
pub mod checkpoint;
pub mod data;
pub mod dimensionality;
pub mod loss;
pub mod network;
pub mod prior;
pub mod sampling;
pub mod settings;
pub mod training;

pub use anomaly::AnomalyArgs;
pub use checkpoint::{load_checkpoint, save_checkpoint, TrainedVae, FAMILY_AE, FAMILY_VAE};
pub use dimensionality::DimensionalityArgs;
pub use prior::LatentArgs;
pub use sampling::VaeGenerator;
pub use settings::{ReconLoss, VaeSettings};
pub use training::{train_from_matches, train_vae};

use std::path::Path;

use crate::device::Device;
use crate::error::Result;

/// Write the checkpoint of a freshly initialised benchmark VAE (30 relative particles,
/// latent 20, hidden 512, 256; Chamfer loss, unit standardisation).
pub fn write_bench_checkpoint(path: &Path, device: Device) -> Result<()> {
    use crate::models::flow_data::Standardizer;
    let settings = VaeSettings::default();
    let spec = loss::LossSpec::new(
        &settings,
        data::Representation::Relative,
        30,
        Standardizer {
            mean: vec![0.0, 0.0, 0.03],
            std: vec![0.1, 0.1, 0.05],
        },
        (0.1, 0.05),
    )?;
    let config = network::VaeConfig {
        particles: 30,
        latent: 20,
        hidden: settings.hidden.clone(),
        variational: true,
    };
    let m = TrainedVae {
        vae: network::JetVae::new(config, &mut crate::rng::Rng::new(1), device)?,
        spec,
        beta: settings.beta,
        threshold: 1e-4,
        pt_sum: None,
        latent_mean: vec![0.0; 20],
        latent_std: vec![1.0; 20],
        prior: None,
    };
    save_checkpoint(path, &m)
}
