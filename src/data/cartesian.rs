//! The Cartesian representation of the 2020 VAE study — `[N, P, 3]` momenta (px, py, pz) in
//! GeV, pT-sorted and zero-padded (`g100_cartesian.npy`) — its conversion to the JetNet
//! relative layout, seeded dataset splits, and the average jet image.

use std::path::Path;

use crate::data::jetnet::read_npy_f32;
use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::physics::from_cartesian;
use crate::rng::Rng;

/// Jets as Cartesian constituent momenta: `momenta[n_jets · n_particles · 3]` (px, py, pz).
#[derive(Clone, Debug, PartialEq)]
pub struct CartesianJets {
    pub momenta: Vec<f32>,
    pub n_jets: usize,
    pub n_particles: usize,
}

impl CartesianJets {
    /// Reads a `[N, P, 3]` float `.npy` file (e.g. `g100_cartesian.npy`); errors name the file
    /// and the problem (wrong rank or width, NaN/inf, truncation).
    pub fn read_npy(path: &Path) -> Result<Self> {
        let (momenta, shape) = read_npy_f32(path)?;
        if shape.len() != 3 || shape[2] != 3 || shape[0] == 0 || shape[1] == 0 {
            return Err(Error::file(
                path,
                format!("expected [N, P, 3] momenta, got shape {shape:?}"),
            ));
        }
        if let Some(k) = momenta.iter().position(|v| !v.is_finite()) {
            return Err(Error::file(
                path,
                format!("non-finite momentum at flat index {k}"),
            ));
        }
        Ok(CartesianJets {
            momenta,
            n_jets: shape[0],
            n_particles: shape[1],
        })
    }

    /// The same jets in JetNet layout relative to each jet's constituent sum: particles
    /// (η_rel, φ_rel, pT_rel, mask) for the first `keep` constituents (≤ P; the file is
    /// pT-sorted), jet features (pT, η, mass, n) in GeV of all P constituents.
    pub fn to_jetnet(&self, keep: usize) -> Result<JetNetData> {
        let keep = keep.min(self.n_particles).max(1);
        let mut particles = Vec::with_capacity(self.n_jets * keep * 4);
        let mut jets = Vec::with_capacity(self.n_jets * 4);
        for jet in self.momenta.chunks_exact(self.n_particles * 3) {
            let p: Vec<[f64; 3]> = jet
                .chunks_exact(3)
                .map(|r| [r[0] as f64, r[1] as f64, r[2] as f64])
                .collect();
            let (sum, rel) = from_cartesian(&p);
            let n = p.iter().filter(|q| q[0] != 0.0 || q[1] != 0.0).count();
            for r in rel.iter().take(keep) {
                let real = r[2] > 0.0;
                particles.extend([r[0] as f32, r[1] as f32, r[2] as f32, real as u8 as f32]);
            }
            jets.extend([
                sum.pt() as f32,
                sum.eta() as f32,
                sum.mass() as f32,
                n as f32,
            ]);
        }
        JetNetData::new(particles, jets, self.n_jets, keep, "cartesian jets")
    }
}

/// Seeded split of `n` indices into consecutive parts with the given fractions (summing to
/// 1, e.g. jetnet's 0.7/0.15/0.15 or the MPGAN/flow papers' 0.7/0.3): the run layer's
/// [`crate::runs::split::split_indices`] with a generator seeded by `seed`.
pub fn split_indices(n: usize, fractions: &[f64], seed: u64) -> Result<Vec<Vec<usize>>> {
    crate::runs::split::split_indices(n, fractions, &mut Rng::new(seed))
}

/// The average jet image: pT_rel summed on a `bins × bins` grid over η_rel, φ_rel ∈
/// [−extent, extent] (row = η bin, column = φ bin), averaged over jets; particles outside are
/// dropped. Row-major `[bins, bins]`.
pub fn average_jet_image(data: &JetNetData, bins: usize, extent: f64) -> Vec<f64> {
    let mut img = vec![0f64; bins * bins];
    let cell = 2.0 * extent / bins as f64;
    for p in data.particles.chunks_exact(4) {
        if p[2] == 0.0 {
            continue;
        }
        let (i, j) = ((p[0] as f64 + extent) / cell, (p[1] as f64 + extent) / cell);
        if i >= 0.0 && j >= 0.0 && (i as usize) < bins && (j as usize) < bins {
            img[i as usize * bins + j as usize] += p[2] as f64;
        }
    }
    img.iter_mut().for_each(|v| *v /= data.n_jets.max(1) as f64);
    img
}
