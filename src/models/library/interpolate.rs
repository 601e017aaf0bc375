//! Displacement interpolation between particle clouds along their optimal transport plan
//! (McCann's interpolation, the W2 geodesic), so that particles *move* between two jets
//! rather than the two jets being blended (which would double the particles and blur them).
//!
//! Clouds are particles (η, φ, pT) with pT > 0. For clouds A (weights a_i, total s_A) and
//! B (b_j, s_B):
//! 1. the exact transport plan F between the normalised weights a/s_A and b/s_B with ground
//!    cost ‖x_i − y_j‖² in (η, φ) ([`transport_exact`], at most n + m − 1 cells);
//! 2. at time t every plan cell (i, j, F_ij) is an *atom* at (1 − t)·x_i + t·y_j carrying
//!    pT F_ij·((1 − t)·s_A + t·s_B);
//! 3. the atoms are brought back to at most `max_particles` particles: atoms at the same
//!    position are merged first (at t = 0 every atom of particle i sits at x_i, at t = 1
//!    every atom of j at y_j, so the endpoints are A and B themselves), then, while too many
//!    remain, the pair with the smallest Ward cost w₁w₂/(w₁+w₂)·‖p₁ − p₂‖² is merged into its
//!    pT-weighted centroid (which keeps Σ pT and the pT-weighted centre).
//!
//! [`transport_exact`]: crate::metrics::emd::transport_exact

use crate::error::{Error, Result};
use crate::metrics::emd::transport_exact;

/// One particle: (η_rel, φ_rel, pT_rel).
pub type Cloud = Vec<[f64; 3]>;

/// The cloud at time `t ∈ [0, 1]` on the displacement interpolation from `a` (t = 0) to `b`
/// (t = 1), with at most `max_particles` particles (see the module documentation). Errors on
/// an empty cloud, a non-positive or non-finite pT, `t` outside [0, 1] or
/// `max_particles < max(|a|, |b|)`.
pub fn displacement_interpolation(
    a: &[[f64; 3]],
    b: &[[f64; 3]],
    t: f64,
    max_particles: usize,
) -> Result<Cloud> {
    if !(0.0..=1.0).contains(&t) {
        return Err(Error::invalid(format!(
            "interpolation time must be in [0, 1], got {t}"
        )));
    }
    if a.is_empty() || b.is_empty() {
        return Err(Error::invalid(
            "displacement interpolation needs two non-empty clouds",
        ));
    }
    if max_particles < a.len().max(b.len()) {
        return Err(Error::invalid(format!(
            "cannot interpolate clouds of {} and {} particles into {max_particles}",
            a.len(),
            b.len()
        )));
    }
    for p in a.iter().chain(b) {
        if !(p.iter().all(|v| v.is_finite()) && p[2] > 0.0) {
            return Err(Error::invalid(format!(
                "a particle to interpolate has non-finite coordinates or pT ≤ 0: {p:?}"
            )));
        }
    }
    let (sa, sb): (f64, f64) = (a.iter().map(|p| p[2]).sum(), b.iter().map(|p| p[2]).sum());
    let wa: Vec<f64> = a.iter().map(|p| p[2] / sa).collect();
    let mut wb: Vec<f64> = b.iter().map(|p| p[2] / sb).collect();
    // make Σb equal Σa to the last bit (the solver wants a balanced problem)
    let residue = wa.iter().sum::<f64>() - wb.iter().sum::<f64>();
    if let Some(last) = wb.iter_mut().max_by(|x, y| x.total_cmp(y)) {
        *last += residue;
    }
    let m = b.len();
    let mut cost = vec![0.0; a.len() * m];
    for (i, p) in a.iter().enumerate() {
        for (j, q) in b.iter().enumerate() {
            cost[i * m + j] = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
        }
    }
    let plan = transport_exact(&wa, &wb, &cost)?;
    let total = (1.0 - t) * sa + t * sb;
    let atoms: Cloud = plan
        .flows
        .iter()
        .filter(|(_, _, f)| *f > 0.0)
        .map(|&(i, j, f)| {
            let (x, y) = (a[i], b[j]);
            [
                (1.0 - t) * x[0] + t * y[0],
                (1.0 - t) * x[1] + t * y[1],
                f * total,
            ]
        })
        .collect();
    Ok(reduce_atoms(atoms, max_particles))
}

/// Merge atoms at identical positions, then Ward-merge until at most `max` remain.
pub fn reduce_atoms(mut atoms: Cloud, max: usize) -> Cloud {
    // identical positions: sort by position and merge runs (pT adds, position is kept)
    atoms.sort_by(|p, q| p[0].total_cmp(&q[0]).then(p[1].total_cmp(&q[1])));
    let mut merged: Cloud = Vec::with_capacity(atoms.len());
    for p in atoms {
        match merged.last_mut() {
            Some(last) if last[0] == p[0] && last[1] == p[1] => last[2] += p[2],
            _ => merged.push(p),
        }
    }
    while merged.len() > max.max(1) {
        let (mut best, mut pair) = (f64::INFINITY, (0, 1));
        for i in 0..merged.len() {
            for j in i + 1..merged.len() {
                let (p, q) = (merged[i], merged[j]);
                let d2 = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
                let ward = p[2] * q[2] / (p[2] + q[2]) * d2;
                if ward < best {
                    best = ward;
                    pair = (i, j);
                }
            }
        }
        let q = merged.swap_remove(pair.1);
        let p = &mut merged[pair.0];
        let w = q[2] / (p[2] + q[2]);
        p[0] += (q[0] - p[0]) * w;
        p[1] += (q[1] - p[1]) * w;
        p[2] += q[2];
    }
    merged
}

/// The cloud at the weighted "barycentre" of several clouds, by successive geodesic steps:
/// Z₁ = C₁, Z_j = interpolation(Z_{j−1}, C_j, t = λ_j / (λ₁ + … + λ_j)). For two clouds
/// this is exactly the displacement interpolation at t = λ₂/(λ₁+λ₂). Weights must be ≥ 0
/// with a positive sum.
pub fn interpolate_many(
    clouds: &[&[[f64; 3]]],
    weights: &[f64],
    max_particles: usize,
) -> Result<Cloud> {
    if clouds.is_empty() || clouds.len() != weights.len() {
        return Err(Error::invalid(format!(
            "interpolate_many: {} clouds and {} weights",
            clouds.len(),
            weights.len()
        )));
    }
    if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || weights[0] <= 0.0 {
        return Err(Error::invalid(
            "interpolate_many: weights must be finite, ≥ 0, the first > 0",
        ));
    }
    let mut z: Cloud = clouds[0].to_vec();
    let mut acc = weights[0];
    for (c, &w) in clouds.iter().zip(weights).skip(1) {
        acc += w;
        if w > 0.0 {
            z = displacement_interpolation(&z, c, w / acc, max_particles)?;
        }
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(seed: u64, n: usize) -> Cloud {
        let mut rng = crate::rng::Rng::new(seed);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (0..n).map(|_| [u() - 0.5, u() - 0.5, 0.01 + u()]).collect()
    }

    fn sorted(mut c: Cloud) -> Cloud {
        c.sort_by(|p, q| p[0].total_cmp(&q[0]).then(p[1].total_cmp(&q[1])));
        c
    }

    fn close(x: &Cloud, y: &Cloud, tol: f64) -> bool {
        x.len() == y.len()
            && sorted(x.clone())
                .iter()
                .zip(&sorted(y.clone()))
                .all(|(p, q)| (0..3).all(|k| (p[k] - q[k]).abs() <= tol))
    }

    #[test]
    fn the_endpoints_are_the_clouds_themselves() {
        for (na, nb) in [(30, 30), (12, 30), (30, 7), (1, 5)] {
            let (a, b) = (cloud(na as u64, na), cloud(100 + nb as u64, nb));
            let at0 = displacement_interpolation(&a, &b, 0.0, 30).unwrap();
            let at1 = displacement_interpolation(&a, &b, 1.0, 30).unwrap();
            assert!(close(&at0, &a, 1e-12), "t = 0, {na}/{nb}");
            assert!(close(&at1, &b, 1e-12), "t = 1, {na}/{nb}");
        }
    }

    #[test]
    fn particles_move_along_the_plan() {
        let (a, b) = (cloud(1, 20), cloud(2, 25));
        let (sa, sb): (f64, f64) = (a.iter().map(|p| p[2]).sum(), b.iter().map(|p| p[2]).sum());
        let centre = |c: &Cloud| {
            let s: f64 = c.iter().map(|p| p[2]).sum();
            [0, 1].map(|k| c.iter().map(|p| p[2] * p[k]).sum::<f64>() / s)
        };
        for t in [0.25, 0.5, 0.8] {
            let z = displacement_interpolation(&a, &b, t, 30).unwrap();
            assert!(z.len() <= 30);
            // Σ pT and the pT-weighted centre move linearly (merging keeps both)
            let s: f64 = z.iter().map(|p| p[2]).sum();
            assert!((s - ((1.0 - t) * sa + t * sb)).abs() < 1e-9);
            let (ca, cb, cz) = (centre(&a), centre(&b), centre(&z));
            for k in 0..2 {
                assert!((cz[k] - ((1.0 - t) * ca[k] + t * cb[k])).abs() < 1e-9);
            }
        }
        // a single displaced particle moves in a straight line
        let z =
            displacement_interpolation(&[[0.0, 0.0, 1.0]], &[[0.4, -0.2, 3.0]], 0.5, 30).unwrap();
        assert!(close(&z, &vec![[0.2, -0.1, 2.0]], 1e-12));
    }

    #[test]
    fn many_clouds_reduce_to_pairs_and_bad_input_is_refused() {
        let (a, b) = (cloud(5, 30), cloud(6, 30));
        let two = interpolate_many(&[&a, &b], &[3.0, 1.0], 30).unwrap();
        let direct = displacement_interpolation(&a, &b, 0.25, 30).unwrap();
        assert_eq!(two, direct);
        assert_eq!(interpolate_many(&[&a, &b], &[1.0, 0.0], 30).unwrap(), a);
        assert!(displacement_interpolation(&a, &b, 1.5, 30).is_err());
        assert!(displacement_interpolation(&a, &b, 0.5, 10).is_err());
        assert!(displacement_interpolation(&[], &b, 0.5, 30).is_err());
        assert!(displacement_interpolation(&[[0.0, 0.0, -1.0]], &b, 0.5, 30).is_err());
        assert!(interpolate_many(&[&a], &[1.0, 2.0], 30).is_err());
    }
}
