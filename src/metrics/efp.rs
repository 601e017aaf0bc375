//! Energy flow polynomials (Komiske, Metodiev, Thaler 2018) for the 5 prime multigraphs with
//! 4 vertices and 4 edges that JetNet's W1EFP uses, computed in O(M²)–O(M³) instead of the
//! naive O(M⁴) sum.
//!
//! EFP_G = Σ_{i1..i4} z_i1 z_i2 z_i3 z_i4 Π_{(k,l)∈G} θ_{ik il}, with the hadronic measure of
//! energyflow's `EFPSet(("n==",4), ("d==",4), ("p==",1), measure="hadr", beta=1, normed=None)`:
//! z_i = pT_i (unnormalised, κ = 1), θ_ij = (Δy² + Δφ²)^{1/2} with Δφ wrapped as
//! π − ||Δφ| − π|, and JetNet's η_rel used as y. Graphs, in this order:
//! ```text
//! G1 (0,1)(0,2)(0,2)(0,3)  = Σ_a z_a S1_a² S2_a
//! G2 (0,1)(0,2)(0,2)(1,3)  = Σ_ab z_a z_b θ_ab S2_a S1_b
//! G3 (0,1)(0,1)(0,2)(1,3)  = Σ_ab z_a z_b θ²_ab S1_a S1_b
//! G4 (0,1)(0,2)(1,2)(0,3)  = Σ_a z_a S1_a (A Θ Aᵀ)_aa,       A = Θ·diag(z)
//! G5 (0,1)(0,2)(1,3)(2,3)  = Σ_ad z_a z_d (Θ diag(z) Θ)²_ad
//! ```
//! with S1_a = Σ_b z_b θ_ab, S2_a = Σ_b z_b θ²_ab.

use rayon::prelude::*;

use crate::data::JetNetData;

/// Number of EFPs computed by [`efps_d4`].
pub const N_EFP: usize = 5;

/// The 5 EFPs of one jet from rows [η, φ, pT, ...] (`stride` values per particle; rows with
/// pT = 0 contribute nothing).
pub fn efps_d4(rows: &[f32], stride: usize) -> [f64; N_EFP] {
    let parts: Vec<(f64, f64, f64)> = rows
        .chunks_exact(stride)
        .filter(|r| r[2] != 0.0)
        .map(|r| (r[0] as f64, r[1] as f64, r[2] as f64))
        .collect();
    let m = parts.len();
    let z: Vec<f64> = parts.iter().map(|p| p.2).collect();
    let mut theta = vec![0f64; m * m];
    for a in 0..m {
        for b in 0..m {
            let dy = parts[a].0 - parts[b].0;
            let dphi = std::f64::consts::PI
                - ((parts[a].1 - parts[b].1).abs() - std::f64::consts::PI).abs();
            theta[a * m + b] = (dy * dy + dphi * dphi).sqrt();
        }
    }
    let th = |a: usize, b: usize| theta[a * m + b];
    let s1: Vec<f64> = (0..m)
        .map(|a| (0..m).map(|b| z[b] * th(a, b)).sum())
        .collect();
    let s2: Vec<f64> = (0..m)
        .map(|a| (0..m).map(|b| z[b] * th(a, b) * th(a, b)).sum())
        .collect();
    // W = Θ diag(z) Θ  (W_ad = Σ_b θ_ab z_b θ_bd)
    let mut w = vec![0f64; m * m];
    for a in 0..m {
        for b in 0..m {
            let f = th(a, b) * z[b];
            if f == 0.0 {
                continue;
            }
            for d in 0..m {
                w[a * m + d] += f * th(b, d);
            }
        }
    }
    let mut e = [0f64; N_EFP];
    for a in 0..m {
        e[0] += z[a] * s1[a] * s1[a] * s2[a];
        // (A Θ Aᵀ)_aa = Σ_b z_b θ_ab (Σ_c θ_bc z_c θ_ca) = Σ_b z_b θ_ab W_ba
        let t: f64 = (0..m).map(|b| z[b] * th(a, b) * w[b * m + a]).sum();
        e[3] += z[a] * s1[a] * t;
        for b in 0..m {
            let zz = z[a] * z[b];
            e[1] += zz * th(a, b) * s2[a] * s1[b];
            e[2] += zz * th(a, b) * th(a, b) * s1[a] * s1[b];
            e[4] += zz * w[a * m + b] * w[a * m + b];
        }
    }
    e
}

/// The graphs G1..G5 above, as edge lists.
pub const GRAPHS: [[(usize, usize); 4]; N_EFP] = [
    [(0, 1), (0, 2), (0, 2), (0, 3)],
    [(0, 1), (0, 2), (0, 2), (1, 3)],
    [(0, 1), (0, 1), (0, 2), (1, 3)],
    [(0, 1), (0, 2), (1, 2), (0, 3)],
    [(0, 1), (0, 2), (1, 3), (2, 3)],
];

/// Where G1..G5 are among [`crate::metrics::efpset::efp_graphs_d4`] (by canonical form), so
/// that W1EFP can take its 5 EFPs from FPD/KPD's 36 when both are computed.
pub fn columns_in_d4_set() -> [usize; N_EFP] {
    let set = crate::metrics::efpset::efp_graphs_d4();
    GRAPHS.map(|edges| {
        let g = crate::metrics::efpset::Graph::new(&edges).canonical();
        set.iter()
            .position(|h| *h == g)
            .expect("every n = 4, d = 4 graph is in the d ≤ 4 set")
    })
}

/// The 5 EFPs of every jet, `[n_jets][5]`, in parallel.
pub fn jet_efps(data: &JetNetData) -> Vec<[f64; N_EFP]> {
    data.particles
        .par_chunks_exact(data.n_particles * 4)
        .map(|jet| efps_d4(jet, 4))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// W1EFP's 5 EFPs taken as columns of the 36-EFP features equal [`efps_d4`] on the
    /// built-in jets (so the full evaluation may take them from there).
    #[test]
    fn the_five_are_columns_of_the_d4_set() {
        let data = crate::data::builtin::read_builtin("g").unwrap();
        let data = data.select(&(0..64).collect::<Vec<_>>()).unwrap();
        let cols = columns_in_d4_set();
        let graphs = crate::metrics::efpset::efp_graphs_d4();
        let all = crate::metrics::efpset::jet_efp_features(&data, graphs).unwrap();
        for (j, five) in jet_efps(&data).iter().enumerate() {
            for (k, &c) in cols.iter().enumerate() {
                let (got, want) = (all[j * graphs.len() + c], five[k]);
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs(),
                    "jet {j} EFP {k}: {got} vs {want}"
                );
            }
        }
    }
}
