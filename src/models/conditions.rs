//! Conditions of the DESY conditional flows: the jet's relative mass m/pT (from its
//! constituents, as W1M measures it) and its multiplicity n. At generation time n is drawn
//! from the training multiplicities and m from the PCHIP inverse CDF of the training masses
//! with that n (all masses when fewer than 10 jets have it).

use std::collections::BTreeMap;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::models::pchip::InverseCdf;
use crate::physics::jet_p4;
use crate::rng::Rng;

/// Which conditions a flow sees, and whether it trains with the mass constraint. On the
/// command line and in config files: `vnf`, `cnf-m`, `cnf-mn`, `ccnf-m`, `ccnf-mn`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Unconditional ("vanilla") flow.
    Vnf,
    /// Conditioned on the jet mass.
    CnfM,
    /// Conditioned on the jet mass and the multiplicity.
    CnfMn,
    /// CNF(m) trained with the mass constraint λ·MSE(m(x_gen), m).
    CcnfM,
    /// CNF(m, n) trained with the mass constraint.
    CcnfMn,
}

impl Variant {
    /// Parse `vnf`, `cnf-m`, `cnf-mn`, `ccnf-m`, `ccnf-mn`.
    pub fn parse(s: &str) -> Result<Variant> {
        match s {
            "vnf" => Ok(Variant::Vnf),
            "cnf-m" => Ok(Variant::CnfM),
            "cnf-mn" => Ok(Variant::CnfMn),
            "ccnf-m" => Ok(Variant::CcnfM),
            "ccnf-mn" => Ok(Variant::CcnfMn),
            _ => Err(Error::invalid(format!(
                "unknown flow variant '{s}' (vnf, cnf-m, cnf-mn, ccnf-m, ccnf-mn)"
            ))),
        }
    }
    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Vnf => "vnf",
            Variant::CnfM => "cnf-m",
            Variant::CnfMn => "cnf-mn",
            Variant::CcnfM => "ccnf-m",
            Variant::CcnfMn => "ccnf-mn",
        }
    }
    /// Number of context features.
    pub fn context_dim(self) -> usize {
        match self {
            Variant::Vnf => 0,
            Variant::CnfM | Variant::CcnfM => 1,
            Variant::CnfMn | Variant::CcnfMn => 2,
        }
    }
    /// True for the mass-constrained variants.
    pub fn constrained(self) -> bool {
        matches!(self, Variant::CcnfM | Variant::CcnfMn)
    }
    /// True when generated jets know their multiplicity.
    pub fn has_multiplicity(self) -> bool {
        matches!(self, Variant::CnfMn | Variant::CcnfMn)
    }
}

/// Raw per-jet conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conditions {
    /// Relative jet mass m/pT_jet.
    pub mass: Vec<f64>,
    /// Multiplicity (number of real particles).
    pub n: Vec<f64>,
}

impl Conditions {
    /// Conditions of jets `idx` of `data`.
    pub fn of(data: &JetNetData, idx: &[usize]) -> Conditions {
        let p = data.n_particles;
        let rows = |i: usize| &data.particles[i * p * 4..(i + 1) * p * 4];
        Conditions {
            mass: idx.iter().map(|&i| jet_p4(rows(i), 4).mass()).collect(),
            n: idx
                .iter()
                .map(|&i| rows(i).chunks_exact(4).filter(|r| r[3] != 0.0).count() as f64)
                .collect(),
        }
    }

    /// Standardisation [mean_m, std_m, mean_n, std_n] of these conditions.
    pub fn scale(&self) -> [f64; 4] {
        let ms = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            let std =
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt();
            (mean, if std > 1e-12 { std } else { 1.0 })
        };
        let (a, b) = ms(&self.mass);
        let (c, d) = ms(&self.n);
        [a, b, c, d]
    }

    /// Standardised context rows `[len, variant.context_dim()]`.
    pub fn context(&self, variant: Variant, scale: &[f64; 4]) -> Vec<f32> {
        (0..self.mass.len())
            .flat_map(|i| {
                let m = ((self.mass[i] - scale[0]) / scale[1]) as f32;
                let n = ((self.n[i] - scale[2]) / scale[3]) as f32;
                match variant.context_dim() {
                    0 => vec![],
                    1 => vec![m],
                    _ => vec![m, n],
                }
            })
            .collect()
    }
}

/// Draws (m, n) like the training jets: n from their multiplicity distribution, m from the
/// PCHIP-interpolated inverse CDF of the masses of jets with that n.
pub struct ConditionSampler {
    multiplicities: Vec<f64>,
    per_n: BTreeMap<u64, InverseCdf>,
    all: InverseCdf,
}

impl ConditionSampler {
    /// Build from training conditions.
    pub fn new(c: &Conditions) -> Result<ConditionSampler> {
        let mut groups: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for (m, n) in c.mass.iter().zip(&c.n) {
            groups.entry(*n as u64).or_default().push(*m);
        }
        let per_n = groups
            .into_iter()
            .filter(|(_, v)| v.len() >= 10)
            .map(|(n, v)| Ok((n, InverseCdf::new(&v)?)))
            .collect::<Result<_>>()?;
        Ok(ConditionSampler {
            multiplicities: c.n.clone(),
            per_n,
            all: InverseCdf::new(&c.mass)?,
        })
    }

    /// `k` condition pairs.
    pub fn sample(&self, rng: &mut Rng, k: usize) -> Conditions {
        let mut out = Conditions {
            mass: Vec::with_capacity(k),
            n: Vec::with_capacity(k),
        };
        for _ in 0..k {
            let n = self.multiplicities[rng.below(self.multiplicities.len())];
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let inv = self.per_n.get(&(n as u64)).unwrap_or(&self.all);
            out.mass.push(inv.quantile(u).max(0.0));
            out.n.push(n);
        }
        out
    }
}
