//! Evaluation metrics as the `jetnet` package (0.2.5) defines them.

pub mod cov_mmd;
pub mod efp;
pub mod efp_plan;
pub mod efpset;
pub mod emd;
pub mod evaluate;
pub mod fpd_kpd;
pub mod fpnd;
pub mod memorisation;
pub mod w1;

pub use cov_mmd::{cov_mmd, cov_mmd_from_matrix, emd_matrix, CovMmd, CovMmdConfig};
pub use efp::{efps_d4, jet_efps, N_EFP};
pub use efpset::{efp, efp_graphs, efp_graphs_d4, jet_efp_features, Graph, JetAngles};
pub use emd::{jet_emd, jet_particles, transport_exact, Particle, TransportSolution};
pub use evaluate::{evaluate, EvalConfig, EvalReport, Metric, Protocol};
pub use fpd_kpd::{
    fpd, fpd_kpd_features, frechet_distance, kpd, normalise, Features, FpdConfig, KpdConfig,
};
pub use fpnd::{fpnd, ParticleNet, FPND_MAX_JETS};
pub use memorisation::{memorisation, Memorisation, MemorisationConfig};
pub use w1::{w1efp, w1m, w1p, wasserstein_1d, wasserstein_1d_weighted, Bootstrap, W1Result};
