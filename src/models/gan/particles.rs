//! MPGAN's particle representation and masks:
//! * features per particle `[η/1.6212, φ/0.5207, pT/0.8935 − 0.5, mask − 0.5]` (JetNet's
//!   FPND normalisation by the real maxima, the mask feature ±0.5) → `[n, P, 4]`; padded
//!   particles are `[0, 0, −0.5, −0.5]`;
//! * "mask_c": each generated jet's multiplicity N_b is drawn from the training jets'
//!   multiplicity histogram; with per-particle noise the N_b particles with the largest first
//!   noise feature are real (permutation-equivariant), with the FC generator the first N_b
//!   (pT-ordered positions, as in the data).

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::models::flow_data::from_flow_vectors;
use crate::rng::Rng;

/// JetNet's maxima of (η_rel, φ_rel, pT_rel) used by the FPND normalisation.
pub const FEATURE_MAX: [f32; 3] = [1.621_198_5, 0.520_724_9, 0.893_471_7];

/// The smallest pT_rel of a generated real particle (lower outputs are raised to it).
pub const MIN_PT: f32 = 1e-4;

/// Jets `idx` of `data` in the normalised representation `[len, P, 4]`.
pub fn to_particles(data: &JetNetData, idx: &[usize]) -> Vec<f32> {
    let p = data.n_particles;
    let mut out = Vec::with_capacity(idx.len() * p * 4);
    for &i in idx {
        for j in 0..p {
            let part = data.particle(i, j);
            if part[3] != 0.0 {
                out.extend([
                    part[0] / FEATURE_MAX[0],
                    part[1] / FEATURE_MAX[1],
                    part[2] / FEATURE_MAX[2] - 0.5,
                    0.5,
                ]);
            } else {
                out.extend([0.0, 0.0, -0.5, -0.5]);
            }
        }
    }
    out
}

/// Generated `[n, P, 3]` normalised features and `mask [n, P]` → JetNet jets: the mask
/// decides which particles are real (their pT floored at [`MIN_PT`], so a tanh output at or
/// below the −0.5 padding value does not silently drop a drawn particle); padded and
/// non-finite particles zeroed; pT-ordered, jet features recomputed.
pub fn from_particles(features: &[f32], mask: &[f32], n_particles: usize) -> Result<JetNetData> {
    if features.len() != mask.len() * 3 || n_particles == 0 || mask.is_empty() {
        return Err(Error::shape(
            "from_particles",
            format!(
                "{} features do not match a mask of {}",
                features.len(),
                mask.len()
            ),
        ));
    }
    let vectors: Vec<f32> = features
        .chunks_exact(3)
        .zip(mask)
        .flat_map(|(f, &m)| {
            if m != 0.0 {
                let pt = (f[2] + 0.5) * FEATURE_MAX[2];
                // NaN stays NaN (and is padded below); f32::max would turn it into MIN_PT
                let pt = if pt.is_nan() { pt } else { pt.max(MIN_PT) };
                [f[0] * FEATURE_MAX[0], f[1] * FEATURE_MAX[1], pt]
            } else {
                [0.0; 3]
            }
        })
        .collect();
    from_flow_vectors(&vectors, n_particles, MIN_PT)
}

/// The multiplicity of each jet in a normalised particle array `[n, P, 4]`.
pub fn multiplicities(particles: &[f32], n_particles: usize) -> Vec<usize> {
    particles
        .chunks(n_particles * 4)
        .map(|jet| jet.chunks(4).filter(|p| p[3] > 0.0).count())
        .collect()
}

/// A histogram of multiplicities 0..=P to draw "mask_c" multiplicities from.
#[derive(Clone, Debug, PartialEq)]
pub struct Multiplicity {
    /// `counts[k]` = training jets with k real particles.
    pub counts: Vec<f32>,
}

impl Multiplicity {
    /// The histogram of `multiplicities` (each ≤ `n_particles`).
    pub fn fit(multiplicities: &[usize], n_particles: usize) -> Multiplicity {
        let mut counts = vec![0f32; n_particles + 1];
        for &m in multiplicities {
            counts[m.min(n_particles)] += 1.0;
        }
        Multiplicity { counts }
    }

    /// Checked: finite, non-negative integer counts up to 2^24, not all zero.
    pub fn validate(&self) -> Result<()> {
        let total: f64 = self.counts.iter().map(|&c| c as f64).sum();
        if self.counts.len() < 2
            || self
                .counts
                .iter()
                .any(|&c| !(c.is_finite() && c >= 0.0 && c.fract() == 0.0 && c <= 16_777_216.0))
            || total <= 0.0
        {
            return Err(Error::invalid(
                "multiplicity histogram must hold ≥ 2 non-negative integer counts, not all zero",
            ));
        }
        Ok(())
    }

    /// `n` multiplicities drawn with probability counts[k] / Σ counts.
    pub fn sample(&self, rng: &mut Rng, n: usize) -> Vec<usize> {
        let total: u64 = self.counts.iter().map(|&c| c as u64).sum();
        (0..n)
            .map(|_| {
                let mut u = rng.below(total.max(1) as usize) as u64;
                for (k, &c) in self.counts.iter().enumerate() {
                    if u < c as u64 {
                        return k;
                    }
                    u -= c as u64;
                }
                self.counts.len() - 1
            })
            .collect()
    }
}

/// mask_c from noise: `first [B·N]` (each particle's first noise feature), `counts [B]` →
/// mask `[B·N]` with 1 at the counts[b] largest values of jet b (ties by lower index).
pub fn mask_from_noise(first: &[f32], counts: &[usize], n_particles: usize) -> Vec<f32> {
    let mut mask = vec![0f32; first.len()];
    for (b, &count) in counts.iter().enumerate() {
        let row = &first[b * n_particles..(b + 1) * n_particles];
        let mut order: Vec<usize> = (0..n_particles).collect();
        order.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
        for &i in order.iter().take(count) {
            mask[b * n_particles + i] = 1.0;
        }
    }
    mask
}

/// The first counts[b] particles of each jet real: mask `[B·N]`.
pub fn leading_mask(counts: &[usize], n_particles: usize) -> Vec<f32> {
    counts
        .iter()
        .flat_map(|&c| (0..n_particles).map(move |i| (i < c) as u8 as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_pick_the_largest_noise_and_the_sampled_counts() {
        let first = [0.3, -1.0, 2.0, 0.5, /* jet 2 */ 1.0, 1.0, 0.0, -2.0];
        assert_eq!(
            mask_from_noise(&first, &[2, 3], 4),
            [0., 0., 1., 1., 1., 1., 1., 0.]
        );
        assert_eq!(leading_mask(&[1, 0], 3), [1., 0., 0., 0., 0., 0.]);
        let h = Multiplicity::fit(&[2, 2, 2, 0], 3);
        assert_eq!(h.counts, [1., 0., 3., 0.]);
        let draws = h.sample(&mut Rng::new(1), 4000);
        let twos = draws.iter().filter(|&&k| k == 2).count() as f64 / 4000.0;
        assert!(draws.iter().all(|&k| k == 0 || k == 2));
        assert!((twos - 0.75).abs() < 0.03, "{twos}");
    }
}
