//! The library itself: training jets indexed by their conditions, and the rule that makes a
//! jet from a requested condition.
//!
//! Conditions c ∈ ℝᵈ (a chosen subset of relative mass, pT, multiplicity) are standardised
//! over the library, c̃ = (c − mean)/std, and put in a [`KdTree`]. For a requested c:
//! * k = 1 — the training jet with the nearest c̃ (ties at random), returned unchanged
//!   (particles and jet features);
//! * k > 1 — the k nearest N₁…N_k (nearest first), weights λ ~ Dirichlet(1, …, 1), and the
//!   cloud [`interpolate_many`]`(N₁…N_k, λ)`: successive displacement interpolations along
//!   optimal transport plans. Its jet features are Σ λ_j·features(N_j) (the count rounded).
//!
//! Unconditional generation draws c from the library itself (a uniformly chosen training
//! jet's conditions), so k = 1 reproduces the training set's distribution exactly.

use rayon::prelude::*;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::models::library::interpolate::{interpolate_many, Cloud};
use crate::models::library::kdtree::KdTree;
use crate::models::library::settings::{validate_choice, LibraryCondition};
use crate::rng::{mix64, Rng};

/// Training jets indexed by their conditions.
pub struct Library {
    /// The library's jets (JetNet layout).
    pub jets: JetNetData,
    /// The conditions neighbours are looked up by, in this order.
    pub conditions: Vec<LibraryCondition>,
    /// Neighbours per generated jet.
    pub k: usize,
    /// Per condition (mean, std) over the library.
    pub scale: Vec<(f64, f64)>,
    /// Standardised conditions of every library jet, `[n, d]`.
    points: Vec<f64>,
    tree: KdTree,
    /// Each jet's real particles (η, φ, pT), for the interpolation.
    clouds: Vec<Cloud>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Library(k = {}, {} jets, conditions {:?})",
            self.k, self.jets.n_jets, self.conditions
        )
    }
}

/// The raw condition values of every jet of `data`, `[n, conditions.len()]`.
pub fn condition_values(data: &JetNetData, conditions: &[LibraryCondition]) -> Vec<f64> {
    let all: Vec<usize> = (0..data.n_jets).collect();
    let c = Conditions::of(data, &all);
    let c = &c;
    (0..data.n_jets)
        .flat_map(|i| {
            conditions.iter().map(move |k| match k {
                LibraryCondition::Mass => c.mass[i],
                LibraryCondition::Pt => data.jet(i)[0] as f64,
                LibraryCondition::Multiplicity => c.n[i],
            })
        })
        .collect::<Vec<_>>()
}

impl Library {
    /// Index `jets` by `conditions` for `k` neighbours per generated jet.
    pub fn new(jets: JetNetData, conditions: &[LibraryCondition], k: usize) -> Result<Library> {
        validate_choice(k, conditions)?;
        let d = conditions.len();
        let raw = condition_values(&jets, conditions);
        let n = jets.n_jets as f64;
        let scale: Vec<(f64, f64)> = (0..d)
            .map(|c| {
                let col = raw.iter().skip(c).step_by(d);
                let mean = col.clone().sum::<f64>() / n;
                let var = col.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                (mean, if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 })
            })
            .collect();
        let points: Vec<f64> = raw
            .chunks_exact(d)
            .flat_map(|row| row.iter().zip(&scale).map(|(v, (m, s))| (v - m) / s))
            .collect();
        let tree = KdTree::new(&points, d)?;
        let p = jets.n_particles;
        let clouds = (0..jets.n_jets)
            .map(|i| {
                jets.particles[i * p * 4..(i + 1) * p * 4]
                    .chunks_exact(4)
                    .filter(|r| r[3] != 0.0 && r[2] > 0.0)
                    .map(|r| [r[0] as f64, r[1] as f64, r[2] as f64])
                    .collect()
            })
            .collect();
        Ok(Library {
            jets,
            conditions: conditions.to_vec(),
            k,
            scale,
            points,
            tree,
            clouds,
        })
    }

    /// `n` jets with conditions drawn from the library (see the module documentation);
    /// jet g uses the stream `mix64(seed ^ mix64(g))`, so results do not depend on threads.
    pub fn generate(&self, n: usize, seed: u64) -> Result<JetNetData> {
        let d = self.conditions.len();
        self.assemble(n, |g| {
            let salt = jet_salt(seed, g);
            let anchor = Rng::new(salt ^ 0xA5).below(self.jets.n_jets);
            self.make_jet(&self.points[anchor * d..(anchor + 1) * d], salt)
        })
    }

    /// One jet per row of `raw` (`[n, d]`, raw condition values in the library's order).
    pub fn generate_at(&self, raw: &[f64], seed: u64) -> Result<JetNetData> {
        let d = self.conditions.len();
        if raw.is_empty() || !raw.len().is_multiple_of(d) {
            return Err(Error::invalid(format!(
                "{} condition values are not rows of {d} ({})",
                raw.len(),
                crate::models::library::settings::condition_names(&self.conditions)
            )));
        }
        if let Some(v) = raw.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("non-finite condition {v}")));
        }
        self.assemble(raw.len() / d, |g| {
            let q: Vec<f64> = raw[g * d..(g + 1) * d]
                .iter()
                .zip(&self.scale)
                .map(|(v, (m, s))| (v - m) / s)
                .collect();
            self.make_jet(&q, jet_salt(seed, g))
        })
    }

    /// One jet per condition of `given` (mass and multiplicity as [`Conditions`] hold them).
    /// A library that looks up by pT refuses (pT is not among [`Conditions`]).
    pub fn generate_conditional(&self, given: &Conditions, seed: u64) -> Result<JetNetData> {
        let n = given.mass.len().max(given.n.len());
        let mut raw = Vec::with_capacity(n * self.conditions.len());
        for i in 0..n {
            for c in &self.conditions {
                let v = match c {
                    LibraryCondition::Mass => given.mass.get(i),
                    LibraryCondition::Multiplicity => given.n.get(i),
                    LibraryCondition::Pt => {
                        return Err(Error::invalid(
                            "this library looks jets up by pT, which conditional generation \
                             cannot be given; use Library::generate_at",
                        ))
                    }
                };
                raw.push(*v.ok_or_else(|| {
                    Error::invalid(format!(
                        "conditional generation needs a {} for every jet ({} masses, {} multiplicities given)",
                        c.name(),
                        given.mass.len(),
                        given.n.len()
                    ))
                })?);
            }
        }
        self.generate_at(&raw, seed)
    }

    /// The `k` library jets nearest to the standardised condition `q` (ties at random by
    /// `salt`), nearest first.
    pub fn neighbours(&self, q: &[f64], salt: u64) -> Result<Vec<usize>> {
        Ok(self
            .tree
            .nearest(q, self.k, salt)?
            .into_iter()
            .map(|nb| nb.index)
            .collect())
    }

    /// One jet's particle rows `[P·4]` and jet features for standardised condition `q`.
    fn make_jet(&self, q: &[f64], salt: u64) -> Result<(Vec<f32>, [f32; 4])> {
        let p = self.jets.n_particles;
        let nbs = self.neighbours(q, salt)?;
        let rows = |i: usize| self.jets.particles[i * p * 4..(i + 1) * p * 4].to_vec();
        let features = |i: usize| -> [f32; 4] {
            let f = self.jets.jet(i);
            [f[0], f[1], f[2], f[3]]
        };
        // clouds without particles cannot be transported; a jet of them is returned as is
        let usable: Vec<usize> = nbs
            .iter()
            .copied()
            .filter(|&i| !self.clouds[i].is_empty())
            .collect();
        if usable.len() <= 1 {
            let i = usable.first().copied().unwrap_or(nbs[0]);
            return Ok((rows(i), features(i)));
        }
        let mut rng = Rng::new(salt ^ 0xD1);
        let mut weights: Vec<f64> = usable
            .iter()
            .map(|_| {
                let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                -u.ln()
            })
            .collect();
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let clouds: Vec<&[[f64; 3]]> = usable.iter().map(|&i| self.clouds[i].as_slice()).collect();
        let cloud = interpolate_many(&clouds, &weights, p)?;
        Ok((
            cloud_rows(cloud, p),
            mixed_features(&self.jets, &usable, &weights),
        ))
    }

    fn assemble(
        &self,
        n: usize,
        one: impl Fn(usize) -> Result<(Vec<f32>, [f32; 4])> + Sync + Send,
    ) -> Result<JetNetData> {
        if n == 0 {
            return Err(Error::invalid("asked for 0 jets"));
        }
        let made: Vec<(Vec<f32>, [f32; 4])> =
            (0..n).into_par_iter().map(one).collect::<Result<_>>()?;
        let mut particles = Vec::with_capacity(n * self.jets.n_particles * 4);
        let mut jets = Vec::with_capacity(n * 4);
        for (rows, f) in made {
            particles.extend(rows);
            jets.extend(f);
        }
        JetNetData::new(particles, jets, n, self.jets.n_particles, "library jets")
    }
}

/// The random stream of generated jet `g`.
fn jet_salt(seed: u64, g: usize) -> u64 {
    mix64(seed ^ mix64(g as u64 ^ 0x11B_0000))
}

/// JetNet rows `[P·4]` of a cloud: sorted by pT (highest first), mask 1, zero padding.
fn cloud_rows(mut cloud: Cloud, p: usize) -> Vec<f32> {
    cloud.sort_by(|a, b| b[2].total_cmp(&a[2]));
    let mut rows = vec![0.0f32; p * 4];
    for (r, c) in rows.chunks_exact_mut(4).zip(&cloud) {
        r.copy_from_slice(&[c[0] as f32, c[1] as f32, c[2] as f32, 1.0]);
    }
    rows
}

/// Σ λ_j·features(jet_j), the particle count rounded.
fn mixed_features(jets: &JetNetData, idx: &[usize], weights: &[f64]) -> [f32; 4] {
    let mut f = [0f64; 4];
    for (&i, &w) in idx.iter().zip(weights) {
        for (acc, v) in f.iter_mut().zip(jets.jet(i)) {
            *acc += w * *v as f64;
        }
    }
    [f[0] as f32, f[1] as f32, f[2] as f32, f[3].round() as f32]
}
