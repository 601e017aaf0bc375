//! Jet kinematics from constituents, treated as massless: p = pT(cos φ, sin φ, sinh η),
//! E = pT cosh η, summed over the constituents (padded particles have pT = 0 and add nothing).
//! Sums are in f64.

use crate::data::JetNetData;

/// A four-momentum (E, px, py, pz).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct P4 {
    pub e: f64,
    pub px: f64,
    pub py: f64,
    pub pz: f64,
}

impl P4 {
    /// A massless particle from (pT, η, φ).
    pub fn massless(pt: f64, eta: f64, phi: f64) -> P4 {
        P4 {
            e: pt * eta.cosh(),
            px: pt * phi.cos(),
            py: pt * phi.sin(),
            pz: pt * eta.sinh(),
        }
    }
    /// Transverse momentum √(px² + py²).
    pub fn pt(&self) -> f64 {
        self.px.hypot(self.py)
    }
    /// Pseudorapidity asinh(pz / pT) (0 for pT = 0).
    pub fn eta(&self) -> f64 {
        let pt = self.pt();
        if pt > 0.0 {
            (self.pz / pt).asinh()
        } else {
            0.0
        }
    }
    /// Azimuth atan2(py, px).
    pub fn phi(&self) -> f64 {
        self.py.atan2(self.px)
    }
    /// Invariant mass √(E² − p²); 0 when rounding makes m² negative (as jetnet's
    /// `nan_to_num` of coffea's mass does).
    pub fn mass(&self) -> f64 {
        let m2 = self.e * self.e - self.px * self.px - self.py * self.py - self.pz * self.pz;
        if m2 > 0.0 {
            m2.sqrt()
        } else {
            0.0
        }
    }
}

impl std::ops::Add for P4 {
    type Output = P4;
    fn add(self, o: P4) -> P4 {
        P4 {
            e: self.e + o.e,
            px: self.px + o.px,
            py: self.py + o.py,
            pz: self.pz + o.pz,
        }
    }
}

/// Sum of the constituents of one jet given as rows [η, φ, pT, ...] (`stride` values each).
pub fn jet_p4(rows: &[f32], stride: usize) -> P4 {
    rows.chunks_exact(stride).fold(P4::default(), |acc, r| {
        acc + P4::massless(r[2] as f64, r[0] as f64, r[1] as f64)
    })
}

/// The *relative* jet mass m/pT_jet of every jet, from (η_rel, φ_rel, pT_rel) exactly as
/// jetnet computes it for W1M (massless constituents, relative coordinates).
pub fn relative_masses(data: &JetNetData) -> Vec<f64> {
    let stride = data.n_particles * 4;
    data.particles
        .chunks_exact(stride)
        .map(|jet| jet_p4(jet, 4).mass())
        .collect()
}

/// Number of real (mask = 1) particles per jet.
pub fn multiplicities(data: &JetNetData) -> Vec<usize> {
    data.particles
        .chunks_exact(data.n_particles * 4)
        .map(|jet| jet.chunks_exact(4).filter(|p| p[3] != 0.0).count())
        .collect()
}

/// Constituents in (px, py, pz) GeV from relative coordinates and the jet's (pT, η, φ):
/// pT_i = pT_rel·pT_jet, η_i = η_rel + η_jet, φ_i = φ_rel + φ_jet. Returns `[P, 3]`.
pub fn to_cartesian(rows: &[f32], jet_pt: f64, jet_eta: f64, jet_phi: f64) -> Vec<[f64; 3]> {
    rows.chunks_exact(4)
        .map(|r| {
            let p = P4::massless(
                r[2] as f64 * jet_pt,
                r[0] as f64 + jet_eta,
                r[1] as f64 + jet_phi,
            );
            [p.px, p.py, p.pz]
        })
        .collect()
}

/// Relative coordinates [η_rel, φ_rel, pT_rel] of Cartesian constituents (px, py, pz) w.r.t.
/// their sum; φ_rel wrapped into [−π, π]; zero-momentum (padded) rows give zeros.
pub fn from_cartesian(momenta: &[[f64; 3]]) -> (P4, Vec<[f64; 3]>) {
    let parts: Vec<P4> = momenta
        .iter()
        .map(|p| P4 {
            e: (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt(),
            px: p[0],
            py: p[1],
            pz: p[2],
        })
        .collect();
    let jet = parts.iter().fold(P4::default(), |a, &b| a + b);
    let (jpt, jeta, jphi) = (jet.pt(), jet.eta(), jet.phi());
    let rel = parts
        .iter()
        .map(|p| {
            if p.pt() == 0.0 {
                return [0.0; 3];
            }
            let mut dphi = p.phi() - jphi;
            while dphi > std::f64::consts::PI {
                dphi -= std::f64::consts::TAU;
            }
            while dphi < -std::f64::consts::PI {
                dphi += std::f64::consts::TAU;
            }
            [p.eta() - jeta, dphi, p.pt() / jpt]
        })
        .collect();
    (jet, rel)
}
