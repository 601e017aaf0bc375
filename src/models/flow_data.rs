//! Turning JetNet particle clouds into flow inputs and back (the DESY "normalising flows
//! for particle cloud generation" preprocessing):
//! * each jet's P particles × (η_rel, φ_rel, pT_rel), pT-ordered as stored, flattened to 3P
//!   dims (the mask column is dropped);
//! * padded entries replaced by |N(0, 1)|·1e-7, so no dimension has a delta peak at 0;
//! * every dimension standardised with the training set's mean and std.
//!
//! Generated vectors are de-standardised, negative pT clipped to 0, and particles with pT
//! below `min_pt` (default 1e-4 of the jet pT) become padding (all zero, mask 0).

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::rng::{normal_at, Rng};

/// Per-dimension mean and standard deviation fitted on training data.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fit on `rows` (each `dim` long), in f64; a constant dimension gets std 1.
    pub fn fit(rows: &[f32], dim: usize) -> Result<Standardizer> {
        if dim == 0 || rows.is_empty() || !rows.len().is_multiple_of(dim) {
            return Err(Error::shape(
                "standardizer",
                format!("{} values are not rows of {dim}", rows.len()),
            ));
        }
        let n = (rows.len() / dim) as f64;
        let mut mean = vec![0f64; dim];
        for r in rows.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; dim];
        for r in rows.chunks_exact(dim) {
            for k in 0..dim {
                var[k] += (r[k] as f64 - mean[k]).powi(2);
            }
        }
        let std: Vec<f32> = var
            .iter()
            .map(|v| (v / n).sqrt())
            .map(|s| if s > 1e-12 { s as f32 } else { 1.0 })
            .collect();
        Ok(Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }
    /// (x − mean) / std, in place.
    pub fn apply(&self, rows: &mut [f32]) {
        let d = self.mean.len();
        for r in rows.chunks_exact_mut(d) {
            for k in 0..d {
                r[k] = (r[k] - self.mean[k]) / self.std[k];
            }
        }
    }
    /// x·std + mean, in place.
    pub fn invert(&self, rows: &mut [f32]) {
        let d = self.mean.len();
        for r in rows.chunks_exact_mut(d) {
            for k in 0..d {
                r[k] = r[k] * self.std[k] + self.mean[k];
            }
        }
    }
}

/// Flatten jets `idx` of `data` into `[len(idx), 3P]` flow inputs (before standardisation),
/// replacing padded entries by |N(0,1)|·1e-7 drawn from `rng`.
pub fn to_flow_vectors(data: &JetNetData, idx: &[usize], rng: &mut Rng) -> Vec<f32> {
    let p = data.n_particles;
    let seed = rng.next_u64();
    let mut out = Vec::with_capacity(idx.len() * p * 3);
    for (row, &i) in idx.iter().enumerate() {
        for j in 0..p {
            let part = data.particle(i, j);
            for k in 0..3 {
                if part[3] != 0.0 {
                    out.push(part[k]);
                } else {
                    let counter = ((row * p + j) * 3 + k) as u64;
                    out.push((normal_at(seed, counter).abs() * 1e-7) as f32);
                }
            }
        }
    }
    out
}

/// Generated flow vectors `[n, 3P]` (already de-standardised) → JetNet layout: negative pT
/// clipped to 0, particles with pT < `min_pt` zeroed (mask 0), real particles first in pT
/// order; jet features [Σ pT-vector / (relative units: pT_jet), η, m/pT, n] computed from
/// the generated constituents in relative units.
pub fn from_flow_vectors(vectors: &[f32], n_particles: usize, min_pt: f32) -> Result<JetNetData> {
    let dim = n_particles * 3;
    if !vectors.len().is_multiple_of(dim) || vectors.is_empty() {
        return Err(Error::shape(
            "from_flow_vectors",
            format!("{} values are not jets of {dim}", vectors.len()),
        ));
    }
    let n = vectors.len() / dim;
    let mut particles = Vec::with_capacity(n * n_particles * 4);
    let mut jets = Vec::with_capacity(n * 4);
    for v in vectors.chunks_exact(dim) {
        let mut parts: Vec<[f32; 4]> = v
            .chunks_exact(3)
            .map(|c| {
                let pt = if c[2].is_finite() { c[2].max(0.0) } else { 0.0 };
                if pt < min_pt || !c[0].is_finite() || !c[1].is_finite() {
                    [0.0; 4]
                } else {
                    [c[0], c[1], pt, 1.0]
                }
            })
            .collect();
        parts.sort_by(|a, b| b[2].total_cmp(&a[2]));
        let flat: Vec<f32> = parts.iter().flatten().copied().collect();
        let p4 = crate::physics::jet_p4(&flat, 4);
        let count = parts.iter().filter(|p| p[3] != 0.0).count();
        jets.extend([
            p4.pt() as f32,
            p4.eta() as f32,
            p4.mass() as f32,
            count as f32,
        ]);
        particles.extend(flat);
    }
    JetNetData::new(particles, jets, n, n_particles, "generated jets")
}

/// Reflect one standardised flow vector about the jet axis: η_rel → −η_rel when `eta`,
/// φ_rel → −φ_rel when `phi`, for the particles flagged in `real` (one flag per particle;
/// padded entries keep their noise). In standardised units x' = −x − 2·mean/std.
pub fn reflect_standardized(
    row: &mut [f32],
    real: &[bool],
    eta: bool,
    phi: bool,
    standardizer: &Standardizer,
) {
    for (j, &is_real) in real.iter().enumerate() {
        if !is_real {
            continue;
        }
        for (k, flip) in [(0, eta), (1, phi)] {
            if flip {
                let dim = j * 3 + k;
                row[dim] = -row[dim] - 2.0 * standardizer.mean[dim] / standardizer.std[dim];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_negates_real_angles_and_is_an_involution() {
        // two particles: one real, one padded; raw rows (η, φ, pT)
        let raw = [0.3f32, -0.2, 0.6, 1e-7, 2e-7, 3e-7];
        let st = Standardizer::fit(
            &[
                0.3, -0.2, 0.6, 1e-7, 2e-7, 3e-7, 0.1, 0.4, 0.2, 0.0, 0.0, 0.0,
            ],
            6,
        )
        .unwrap();
        let mut row = raw.to_vec();
        st.apply(&mut row);
        let start = row.clone();
        reflect_standardized(&mut row, &[true, false], true, true, &st);
        let mut back = row.clone();
        st.invert(&mut back);
        assert!((back[0] + 0.3).abs() < 1e-6 && (back[1] - 0.2).abs() < 1e-6);
        assert!((back[2] - 0.6).abs() < 1e-6, "pT untouched");
        assert_eq!(&row[3..], &start[3..], "padded particle untouched");
        reflect_standardized(&mut row, &[true, false], true, true, &st);
        for (a, b) in row.iter().zip(&start) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
