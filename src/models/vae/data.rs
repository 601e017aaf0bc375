//! The jets a VAE sees: clouds of P particles × 3 features, in one of two representations —
//! the 2020 study's Cartesian momenta (px, py, pz) in GeV, or JetNet's relative
//! (η_rel, φ_rel, pT_rel) — with the real-particle mask, the per-feature standardisation
//! and the conversions to and from JetNet layout (what generation returns).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::jetnet::read_npy_f32;
use crate::data::{CartesianJets, JetNetData};
use crate::error::{Error, Result};
use crate::models::flow_data::{from_flow_vectors, Standardizer};
use crate::physics::{from_cartesian, P4};

/// The three features of every particle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Representation {
    /// (px, py, pz) in GeV, lab frame (`g100_cartesian.npy`).
    Cartesian,
    /// (η_rel, φ_rel, pT_rel) relative to the jet (the JetNet files).
    Relative,
}

impl Representation {
    /// The name recorded in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Representation::Cartesian => "cartesian",
            Representation::Relative => "relative",
        }
    }
    /// Parse [`Representation::name`].
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cartesian" => Ok(Representation::Cartesian),
            "relative" => Ok(Representation::Relative),
            _ => Err(Error::invalid(format!("unknown representation '{s}'"))),
        }
    }
    /// The transverse momentum of a particle's feature row (GeV or pT fraction).
    pub fn pt(self, row: &[f32]) -> f32 {
        match self {
            Representation::Cartesian => row[0].hypot(row[1]),
            Representation::Relative => row[2],
        }
    }
    /// The massless four-momentum of a feature row.
    pub fn p4(self, row: &[f32]) -> P4 {
        match self {
            Representation::Cartesian => {
                let (px, py, pz) = (row[0] as f64, row[1] as f64, row[2] as f64);
                P4 {
                    e: (px * px + py * py + pz * pz).sqrt(),
                    px,
                    py,
                    pz,
                }
            }
            Representation::Relative => P4::massless(row[2] as f64, row[0] as f64, row[1] as f64),
        }
    }
}

/// Jets as clouds: `features [n_jets, P, 3]` in the representation's units and `mask
/// [n_jets, P]` (1 = real particle, 0 = zero padding).
#[derive(Clone, Debug, PartialEq)]
pub struct Clouds {
    pub features: Vec<f32>,
    pub mask: Vec<f32>,
    pub n_jets: usize,
    pub n_particles: usize,
    pub representation: Representation,
}

impl Clouds {
    /// The rows of the jets `idx`.
    pub fn select(&self, idx: &[usize]) -> Clouds {
        let (p, d) = (self.n_particles, self.n_particles * 3);
        Clouds {
            features: idx
                .iter()
                .flat_map(|&i| &self.features[i * d..(i + 1) * d])
                .copied()
                .collect(),
            mask: idx
                .iter()
                .flat_map(|&i| &self.mask[i * p..(i + 1) * p])
                .copied()
                .collect(),
            n_jets: idx.len(),
            n_particles: p,
            representation: self.representation,
        }
    }

    /// Jet pT and mass of every jet from its massless constituents (GeV, or relative to the
    /// jet pT for the relative representation), in f64 as [`crate::physics`] sums them.
    pub fn jet_pt_mass(&self) -> Vec<(f64, f64)> {
        self.features
            .chunks_exact(self.n_particles * 3)
            .map(|jet| {
                let p = jet
                    .chunks_exact(3)
                    .fold(P4::default(), |acc, r| acc + self.representation.p4(r));
                (p.pt(), p.mass())
            })
            .collect()
    }

    /// The clouds in JetNet layout (η_rel, φ_rel, pT_rel, mask; jet pT, η, mass, n).
    pub fn to_jetnet(&self) -> Result<JetNetData> {
        match self.representation {
            Representation::Cartesian => cartesian_to_jetnet(&self.features, self.n_particles),
            Representation::Relative => from_flow_vectors(&self.features, self.n_particles, 0.0),
        }
    }
}

/// Read `path` as VAE clouds of the first `particles` particles: a `[N, P, 3]` `.npy`
/// file is Cartesian momenta, anything else a JetNet-layout file (relative features).
/// Returns the clouds and the same jets in JetNet layout (the evaluation's real jets).
pub fn read_clouds(path: &Path, particles: usize) -> Result<(Clouds, JetNetData)> {
    let is_npy = path.extension().is_some_and(|e| e == "npy");
    if is_npy {
        let (momenta, shape) = read_npy_f32(path)?;
        if shape.len() == 3 && shape[2] == 3 && shape[0] > 0 && shape[1] > 0 {
            if let Some(k) = momenta.iter().position(|v| !v.is_finite()) {
                return Err(Error::file(
                    path,
                    format!("non-finite momentum at flat index {k}"),
                ));
            }
            let cart = CartesianJets {
                momenta,
                n_jets: shape[0],
                n_particles: shape[1],
            };
            return cartesian_clouds(&cart, particles, path);
        }
    }
    let data = JetNetData::read(path)?;
    let clouds = relative_clouds(&data, particles, path)?;
    let truncated = clouds.to_jetnet_keeping(&data)?;
    Ok((clouds, truncated))
}

fn too_many(path: &Path, particles: usize, have: usize) -> Error {
    Error::file(
        path,
        format!("--particles {particles}: the file has only {have} particles per jet"),
    )
}

/// The first `particles` Cartesian constituents of every jet.
pub fn cartesian_clouds(
    cart: &CartesianJets,
    particles: usize,
    path: &Path,
) -> Result<(Clouds, JetNetData)> {
    if particles > cart.n_particles {
        return Err(too_many(path, particles, cart.n_particles));
    }
    let (p_in, p) = (cart.n_particles, particles);
    let features: Vec<f32> = cart
        .momenta
        .chunks_exact(p_in * 3)
        .flat_map(|jet| &jet[..p * 3])
        .copied()
        .collect();
    let mask = features
        .chunks_exact(3)
        .map(|r| f32::from(r[0] != 0.0 || r[1] != 0.0))
        .collect();
    let clouds = Clouds {
        features,
        mask,
        n_jets: cart.n_jets,
        n_particles: p,
        representation: Representation::Cartesian,
    };
    let jetnet = clouds.to_jetnet()?;
    Ok((clouds, jetnet))
}

/// The first `particles` particles of JetNet jets as relative clouds.
pub fn relative_clouds(data: &JetNetData, particles: usize, path: &Path) -> Result<Clouds> {
    if particles > data.n_particles {
        return Err(too_many(path, particles, data.n_particles));
    }
    let p = particles;
    let mut features = Vec::with_capacity(data.n_jets * p * 3);
    let mut mask = Vec::with_capacity(data.n_jets * p);
    for i in 0..data.n_jets {
        for j in 0..p {
            let r = data.particle(i, j);
            let real = r[3] != 0.0;
            if real {
                features.extend_from_slice(&r[..3]);
            } else {
                features.extend([0.0; 3]);
            }
            mask.push(f32::from(real));
        }
    }
    Ok(Clouds {
        features,
        mask,
        n_jets: data.n_jets,
        n_particles: p,
        representation: Representation::Relative,
    })
}

impl Clouds {
    /// JetNet jets truncated to these clouds' particles, keeping the file's jet features.
    fn to_jetnet_keeping(&self, data: &JetNetData) -> Result<JetNetData> {
        let p = self.n_particles;
        let particles = (0..data.n_jets)
            .flat_map(|i| (0..p).flat_map(move |j| data.particle(i, j).iter().copied()))
            .collect();
        JetNetData::new(
            particles,
            data.jets.clone(),
            data.n_jets,
            p,
            "truncated jets",
        )
    }
}

/// Cartesian momenta `[n, P, 3]` (GeV) in JetNet layout: zero-momentum rows are padding,
/// real particles sorted by pT, coordinates relative to the constituent sum.
pub fn cartesian_to_jetnet(momenta: &[f32], p: usize) -> Result<JetNetData> {
    let n = momenta.len() / (p * 3).max(1);
    let mut particles = Vec::with_capacity(n * p * 4);
    let mut jets = Vec::with_capacity(n * 4);
    for jet in momenta.chunks_exact(p * 3) {
        let rows: Vec<[f64; 3]> = jet
            .chunks_exact(3)
            .map(|r| {
                if r.iter().all(|v| v.is_finite()) {
                    [r[0] as f64, r[1] as f64, r[2] as f64]
                } else {
                    [0.0; 3]
                }
            })
            .collect();
        let (sum, rel) = from_cartesian(&rows);
        let mut parts: Vec<[f32; 4]> = rel
            .iter()
            .map(|r| {
                if r[2] > 0.0 {
                    [r[0] as f32, r[1] as f32, r[2] as f32, 1.0]
                } else {
                    [0.0; 4]
                }
            })
            .collect();
        parts.sort_by(|a, b| b[2].total_cmp(&a[2]));
        let count = parts.iter().filter(|q| q[3] != 0.0).count();
        particles.extend(parts.iter().flatten());
        jets.extend([
            sum.pt() as f32,
            sum.eta() as f32,
            sum.mass() as f32,
            count as f32,
        ]);
    }
    JetNetData::new(particles, jets, n, p, "cartesian jets")
}

/// Per-feature standardisation (3 means and standard deviations, one per feature, shared
/// by every particle so that permuting particles commutes with it), fitted on the real
/// particles of `clouds`.
pub fn fit_standardizer(clouds: &Clouds) -> Result<Standardizer> {
    let rows: Vec<f32> = clouds
        .features
        .chunks_exact(3)
        .zip(&clouds.mask)
        .filter(|(_, &m)| m != 0.0)
        .flat_map(|(r, _)| r.iter().copied())
        .collect();
    if rows.is_empty() {
        return Err(Error::invalid("no real particle to standardise on"));
    }
    Standardizer::fit(&rows, 3)
}

/// The pT below which a decoded particle counts as padding: half the 1 % quantile of the
/// real particles' pT (padding decodes near 0, real particles above this).
pub fn padding_threshold(clouds: &Clouds) -> f32 {
    let mut pts: Vec<f32> = clouds
        .features
        .chunks_exact(3)
        .zip(&clouds.mask)
        .filter(|(_, &m)| m != 0.0)
        .map(|(r, _)| clouds.representation.pt(r))
        .collect();
    if pts.is_empty() {
        return 0.0;
    }
    pts.sort_by(f32::total_cmp);
    0.5 * pts[(pts.len() - 1) / 100]
}

/// Decoded feature rows `[n, P, 3]` (representation units) as JetNet jets: particles with
/// pT below `threshold` are padding.
pub fn decoded_to_jetnet(
    features: &[f32],
    p: usize,
    representation: Representation,
    threshold: f32,
) -> Result<JetNetData> {
    match representation {
        Representation::Relative => {
            from_flow_vectors(features, p, threshold.max(f32::MIN_POSITIVE))
        }
        Representation::Cartesian => {
            let cut: Vec<f32> = features
                .chunks_exact(3)
                .flat_map(|r| {
                    if r[0].hypot(r[1]) < threshold {
                        [0.0; 3]
                    } else {
                        [r[0], r[1], r[2]]
                    }
                })
                .collect();
            cartesian_to_jetnet(&cut, p)
        }
    }
}
