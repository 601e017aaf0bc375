//! A memorisation diagnostic: how close are generated jets to the *training* jets, compared
//! with how close held-apart real jets are to them?
//!
//! For every jet x of a set, d(x) = min over training jets y of EMD(x, y) (the exact jet EMD
//! of [`jet_emd`], R = 1). A model that reproduces the population has a distribution of
//! d over its generated jets like the one over held-apart real jets; a model that copies its
//! training set has d ≈ 0 for many jets (the library generator with k = 1: all of them).
//!
//! **Search.** All pairs would be hours (10k × 40k exact EMDs), so candidates are ranked by a
//! *lower bound*. For a 1-Lipschitz function f on the (η, φ) plane with |f| ≤ 1, the dual
//! of the jet EMD (the extra particle is at cost 1 from everything, so potential 0 there
//! is feasible) gives EMD(x, y) ≥ |Σ_i pT_i f(x_i) − Σ_j pT'_j f(y_j)|. With a fixed set
//! of such f — 1, clipped projections on 8 directions, cones max(0, ρ − r) about the axis
//! and bumps 1 − min(r, 2) about 9 centres ([`embed`]) — each jet gets an embedding
//! Φ ∈ ℝ²² (Φ_f = Σ pT f), and
//! LB(x, y) = ‖Φ(x) − Φ(y)‖_∞ ≤ EMD(x, y). Training jets are visited in increasing LB and
//! the exact EMD is solved for each until the next LB reaches the best EMD found — then
//! the minimum is *certified* exact — or until `max_candidates` candidates were visited, when
//! the best found is an upper bound and the jet is counted as not certified. A candidate
//! whose tighter pair bound ([`pair_bound`]) already exceeds the best is passed over unsolved.

use std::time::Instant;

use rayon::prelude::*;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::emd::{jet_emd, jet_particles, Particle};

/// Dimension of the lower-bound embedding Φ.
pub const EMBED_DIM: usize = 1 + DIRECTIONS.len() + CONES.len() + BUMPS.len();

/// Settings of the search.
#[derive(Clone, Copy, Debug)]
pub struct MemorisationConfig {
    /// Most candidates visited per jet (so at most this many exact EMDs solved).
    pub max_candidates: usize,
}

impl Default for MemorisationConfig {
    fn default() -> Self {
        MemorisationConfig { max_candidates: 64 }
    }
}

/// Nearest-training-jet distances of one set of jets.
#[derive(Clone, Debug, PartialEq)]
pub struct NearestTrain {
    /// Per jet: the EMD to the nearest training jet found.
    pub emd: Vec<f64>,
    /// Per jet: the index of that training jet.
    pub index: Vec<usize>,
    /// Jets whose minimum is certified exact by the lower bound.
    pub certified: usize,
    /// Exact EMDs solved.
    pub emds_solved: usize,
}

/// The diagnostic: generated and held-apart real jets against the same training jets.
#[derive(Clone, Debug, PartialEq)]
pub struct Memorisation {
    pub n_train: usize,
    pub generated: NearestTrain,
    pub real: NearestTrain,
    pub config_max_candidates: usize,
    /// Wall-clock seconds of the whole diagnostic.
    pub seconds: f64,
}

/// The embedding Φ of one jet (rows [η, φ, pT, …] of `stride` values; pT ≤ 0 ignored):
/// Φ_f = Σ pT f(η, φ) for the test functions f of [`test_functions`].
pub fn embed(rows: &[f32], stride: usize) -> [f64; EMBED_DIM] {
    let mut phi = [0f64; EMBED_DIM];
    for r in rows.chunks_exact(stride).filter(|r| r[2] > 0.0) {
        let w = r[2] as f64;
        for (acc, v) in phi.iter_mut().zip(test_functions(r[0] as f64, r[1] as f64)) {
            *acc += w * v;
        }
    }
    phi
}

/// The unit directions of the linear test functions: 8 angles, 22.5° apart.
const DIRECTIONS: [(f64, f64); 8] = [
    (1.0, 0.0),
    (0.923_879_532_511_286_7, 0.382_683_432_365_089_8),
    (
        std::f64::consts::FRAC_1_SQRT_2,
        std::f64::consts::FRAC_1_SQRT_2,
    ),
    (0.382_683_432_365_089_8, 0.923_879_532_511_286_7),
    (0.0, 1.0),
    (-0.382_683_432_365_089_8, 0.923_879_532_511_286_7),
    (
        -std::f64::consts::FRAC_1_SQRT_2,
        std::f64::consts::FRAC_1_SQRT_2,
    ),
    (-0.923_879_532_511_286_7, 0.382_683_432_365_089_8),
];

/// Radii of the cones max(0, ρ − r) about the jet axis.
const CONES: [f64; 4] = [0.05, 0.1, 0.2, 0.4];

/// Centres of the bumps 1 − min(r, 2).
const BUMPS: [(f64, f64); 9] = [
    (0.0, 0.0),
    (0.2, 0.0),
    (-0.2, 0.0),
    (0.0, 0.2),
    (0.0, -0.2),
    (0.1, 0.1),
    (0.1, -0.1),
    (-0.1, 0.1),
    (-0.1, -0.1),
];

/// The test functions at (η, φ), each 1-Lipschitz with |f| ≤ 1: the constant 1, the
/// clipped projections clip(u·(η, φ)) on [`DIRECTIONS`], the cones of [`CONES`] and the
/// bumps of [`BUMPS`] (r the distance to the axis or the bump's centre).
fn test_functions(e: f64, p: f64) -> [f64; EMBED_DIM] {
    let mut f = [0f64; EMBED_DIM];
    f[0] = 1.0;
    let mut k = 1;
    for (a, b) in DIRECTIONS {
        f[k] = (a * e + b * p).clamp(-1.0, 1.0);
        k += 1;
    }
    let r = e.hypot(p);
    for rho in CONES {
        f[k] = (rho - r).max(0.0);
        k += 1;
    }
    for (ce, cp) in BUMPS {
        f[k] = 1.0 - (e - ce).hypot(p - cp).min(2.0);
        k += 1;
    }
    f
}

/// ‖Φ(x) − Φ(y)‖_∞, a lower bound of EMD(x, y).
pub fn lower_bound(a: &[f64; EMBED_DIM], b: &[f64; EMBED_DIM]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A skipped pair's LB must exceed the best EMD by this much relative to (1 + best): the
/// bound holds exactly, its rounding and the EMD's do not (the bound's test allows 10⁻¹²).
pub const SLACK: f64 = 1e-9;

/// Whether a pair with lower bound `lb` can be skipped against the best EMD `best` so far.
pub fn beyond(lb: f64, best: f64) -> bool {
    lb - best > SLACK * (1.0 + best)
}

/// A tighter lower bound of EMD(x, y) for one pair, tried before solving it: with the test
/// function f(z) = min(1, dist(z, y's particles)) (1-Lipschitz, 0 ≤ f ≤ 1, zero on y) on
/// x's side, EMD(x, y) ≥ Σ_i pT_i f(x_i), and symmetrically. When x is the lighter jet its
/// extra particle (mass Σ pT_y − Σ pT_x, at cost 1 from everything) sits on x's side and
/// takes potential 1, which adds that mass to x's side of the bound. The larger side.
pub fn pair_bound(x: &[Particle], y: &[Particle]) -> f64 {
    let side = |a: &[Particle], b: &[Particle]| -> f64 {
        a.iter()
            .map(|p| {
                let d2 = b.iter().fold(f64::INFINITY, |m, q| {
                    let (de, dp) = (p.eta - q.eta, p.phi - q.phi);
                    m.min(de * de + dp * dp)
                });
                p.pt * d2.sqrt().min(1.0)
            })
            .sum()
    };
    let total = |a: &[Particle]| a.iter().map(|p| p.pt).sum::<f64>();
    let (sx, sy) = (total(x), total(y));
    (side(x, y) + (sy - sx).max(0.0)).max(side(y, x) + (sx - sy).max(0.0))
}

/// Training jets prepared for nearest-EMD queries.
pub struct TrainIndex {
    particles: Vec<Vec<Particle>>,
    embedding: Vec<[f64; EMBED_DIM]>,
}

impl TrainIndex {
    /// Index `train` (every jet's particles and embedding).
    pub fn new(train: &JetNetData) -> Result<TrainIndex> {
        check_pt(train, "training")?;
        let stride = train.n_particles * 4;
        let jets: Vec<&[f32]> = train.particles.chunks_exact(stride).collect();
        Ok(TrainIndex {
            particles: jets.par_iter().map(|j| jet_particles(j, 4)).collect(),
            embedding: jets.par_iter().map(|j| embed(j, 4)).collect(),
        })
    }

    /// Number of training jets.
    pub fn len(&self) -> usize {
        self.particles.len()
    }

    /// True for an index of no jets (never: [`JetNetData`] holds ≥ 1).
    pub fn is_empty(&self) -> bool {
        self.particles.is_empty()
    }

    /// The nearest training jet (by exact EMD) of every jet of `jets` (see the module
    /// documentation for the search and when it is certified).
    pub fn nearest(&self, jets: &JetNetData, cfg: &MemorisationConfig) -> Result<NearestTrain> {
        if cfg.max_candidates == 0 {
            return Err(Error::invalid("memorisation: max_candidates must be ≥ 1"));
        }
        check_pt(jets, "query")?;
        let stride = jets.n_particles * 4;
        let found: Vec<(f64, usize, bool, usize)> = jets
            .particles
            .par_chunks_exact(stride)
            .map(|rows| self.nearest_one(rows, cfg.max_candidates))
            .collect::<Result<_>>()?;
        Ok(NearestTrain {
            emd: found.iter().map(|f| f.0).collect(),
            index: found.iter().map(|f| f.1).collect(),
            certified: found.iter().filter(|f| f.2).count(),
            emds_solved: found.iter().map(|f| f.3).sum(),
        })
    }

    /// (EMD, index, certified, EMDs solved) for one jet.
    fn nearest_one(&self, rows: &[f32], max: usize) -> Result<(f64, usize, bool, usize)> {
        let (x, phi) = (jet_particles(rows, 4), embed(rows, 4));
        let mut order: Vec<(f64, usize)> = self
            .embedding
            .iter()
            .enumerate()
            .map(|(i, e)| (lower_bound(&phi, e), i))
            .collect();
        let take = max.min(order.len());
        // the `take` smallest bounds, sorted; `next` is the smallest bound not visited
        let next = if take < order.len() {
            order.select_nth_unstable_by(take, |a, b| a.0.total_cmp(&b.0));
            order[take].0
        } else {
            f64::INFINITY
        };
        order.truncate(take);
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut best, mut arg, mut solved) = (f64::INFINITY, 0usize, 0usize);
        for &(lb, i) in &order {
            if lb >= best {
                return Ok((best, arg, true, solved));
            }
            if beyond(pair_bound(&x, &self.particles[i]), best) {
                continue; // (it cannot be strictly nearer)
            }
            let d = jet_emd(&x, &self.particles[i])?;
            solved += 1;
            if d < best {
                best = d;
                arg = i;
            }
        }
        Ok((best, arg, next >= best, solved))
    }
}

fn check_pt(d: &JetNetData, what: &str) -> Result<()> {
    match d
        .particles
        .chunks_exact(4)
        .position(|p| p[2] < 0.0 || !p[2].is_finite())
    {
        Some(k) => Err(Error::invalid(format!(
            "memorisation: {what} jet {} has a negative or non-finite pT",
            k / d.n_particles
        ))),
        None => Ok(()),
    }
}

/// The diagnostic for `generated` and `heldout` real jets against `train`.
pub fn memorisation(
    train: &JetNetData,
    generated: &JetNetData,
    heldout: &JetNetData,
    cfg: &MemorisationConfig,
) -> Result<Memorisation> {
    let start = Instant::now();
    let index = TrainIndex::new(train)?;
    let generated = index.nearest(generated, cfg)?;
    let real = index.nearest(heldout, cfg)?;
    Ok(Memorisation {
        n_train: index.len(),
        generated,
        real,
        config_max_candidates: cfg.max_candidates,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The `q`-quantile (linear interpolation, numpy's default) of `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Jets closer than this EMD to a training jet count as copies.
pub const COPY_EMD: f64 = 1e-6;

impl Memorisation {
    /// Fraction of generated jets closer to a training jet than the 5% quantile of the
    /// held-apart real jets' distances (≈ 0.05 for a generator that does not memorise).
    pub fn below_real_q05(&self) -> f64 {
        let q = quantile(&self.real.emd, 0.05);
        frac(&self.generated.emd, |d| d < q)
    }

    /// Fraction of generated jets that are copies (EMD < [`COPY_EMD`]) of a training jet.
    pub fn copies(&self) -> f64 {
        frac(&self.generated.emd, |d| d < COPY_EMD)
    }

    /// Median nearest-training EMD of generated ÷ of real jets (≈ 1 when the generator
    /// neither copies (≪ 1) nor misses the population (≫ 1)).
    pub fn median_ratio(&self) -> f64 {
        quantile(&self.generated.emd, 0.5) / quantile(&self.real.emd, 0.5)
    }

    /// JSON: quantiles of both distributions, the summary ratios, the search's cost.
    pub fn to_json(&self) -> serde_json::Value {
        let side = |n: &NearestTrain| {
            serde_json::json!({
                "jets": n.emd.len(),
                "mean": n.emd.iter().sum::<f64>() / n.emd.len().max(1) as f64,
                "quantiles": {"q05": quantile(&n.emd, 0.05), "q25": quantile(&n.emd, 0.25),
                    "q50": quantile(&n.emd, 0.5), "q75": quantile(&n.emd, 0.75), "q95": quantile(&n.emd, 0.95)},
                "certified_exact": n.certified,
                "emds_solved": n.emds_solved,
            })
        };
        serde_json::json!({
            "what": "EMD from each jet to its nearest training jet (exact jet EMD, R = 1)",
            "n_train": self.n_train,
            "generated": side(&self.generated),
            "heldout_real": side(&self.real),
            "copies": self.copies(),
            "below_real_q05": self.below_real_q05(),
            "median_ratio": self.median_ratio(),
            "max_candidates": self.config_max_candidates,
            "seconds": self.seconds,
        })
    }

    /// A short table for the terminal.
    pub fn table(&self) -> String {
        let row = |name: &str, n: &NearestTrain| {
            format!(
                "{name:<22} {:>8.4} {:>8.4} {:>8.4} {:>8.4}   {}/{} certified exact\n",
                quantile(&n.emd, 0.05),
                quantile(&n.emd, 0.25),
                quantile(&n.emd, 0.5),
                quantile(&n.emd, 0.95),
                n.certified,
                n.emd.len()
            )
        };
        let mut s = format!(
            "memorisation: EMD to the nearest of {} training jets\n{:<22} {:>8} {:>8} {:>8} {:>8}\n",
            self.n_train, "", "q05", "q25", "median", "q95"
        );
        s += &row("generated", &self.generated);
        s += &row("held-apart real", &self.real);
        s += &format!(
            "copies (EMD < 1e-6): {:.1}%   generated below the real q05: {:.1}% (≈ 5% without memorisation)   median ratio gen/real: {:.2}\n",
            100.0 * self.copies(),
            100.0 * self.below_real_q05(),
            self.median_ratio()
        );
        s += &format!(
            "cost: {} + {} exact EMDs (≤ {} per jet, lower-bound pruning) in {:.1} s\n",
            self.generated.emds_solved,
            self.real.emds_solved,
            self.config_max_candidates,
            self.seconds
        );
        s
    }
}

fn frac(v: &[f64], keep: impl Fn(f64) -> bool) -> f64 {
    v.iter().filter(|&&d| keep(d)).count() as f64 / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jets(seed: u64, n: usize) -> JetNetData {
        let mut rng = crate::rng::Rng::new(seed);
        let mut u = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
        let p = 10;
        let mut parts = vec![0f32; n * p * 4];
        for r in parts.chunks_exact_mut(4) {
            r.copy_from_slice(&[0.6 * (u() - 0.5), 0.6 * (u() - 0.5), 0.02 + 0.1 * u(), 1.0]);
        }
        JetNetData::new(parts, vec![0.0; n * 4], n, p, "test").unwrap()
    }

    #[test]
    fn the_embedding_bound_never_exceeds_the_emd() {
        let (a, b) = (jets(1, 60), jets(2, 60));
        let stride = 40;
        for i in 0..60 {
            for j in 0..60 {
                let (x, y) = (
                    &a.particles[i * stride..(i + 1) * stride],
                    &b.particles[j * stride..(j + 1) * stride],
                );
                let lb = lower_bound(&embed(x, 4), &embed(y, 4));
                let emd = jet_emd(&jet_particles(x, 4), &jet_particles(y, 4)).unwrap();
                assert!(lb <= emd + 1e-12, "{lb} > {emd}");
            }
        }
    }

    /// The pair bound holds with unequal total pTs (each jet's pT scaled by a random factor)
    /// and is exact for a jet against a copy of itself with every pT doubled (EMD = Σ pT).
    #[test]
    fn the_pair_bound_never_exceeds_the_emd_and_counts_the_pt_difference() {
        let (a, b) = (jets(5, 40), jets(6, 40));
        let mut rng = crate::rng::Rng::new(9);
        let stride = 40;
        let mut tight = 0;
        for i in 0..40 {
            for j in 0..40 {
                let x = jet_particles(&a.particles[i * stride..(i + 1) * stride], 4);
                let mut y = jet_particles(&b.particles[j * stride..(j + 1) * stride], 4);
                let scale = 0.5 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                y.iter_mut().for_each(|p| p.pt *= scale);
                let (pb, emd) = (pair_bound(&x, &y), jet_emd(&x, &y).unwrap());
                assert!(pb <= emd + 1e-12, "{pb} > {emd}");
                tight += (pb > 0.5 * emd) as usize;
            }
        }
        assert!(tight > 0, "the bound is never within 2× of the EMD");
        let x = jet_particles(&a.particles[..stride], 4);
        let mut y = x.clone();
        y.iter_mut().for_each(|p| p.pt *= 2.0);
        let sum: f64 = x.iter().map(|p| p.pt).sum();
        let emd = jet_emd(&x, &y).unwrap();
        assert!((emd - sum).abs() < 1e-9 * sum, "{emd} vs {sum}");
        assert!((pair_bound(&x, &y) - emd).abs() < 1e-9 * sum);
        assert!((pair_bound(&y, &x) - emd).abs() < 1e-9 * sum);
    }

    #[test]
    fn nearest_matches_brute_force_and_copies_are_found() {
        let train = jets(3, 300);
        let query = jets(4, 40);
        let index = TrainIndex::new(&train).unwrap();
        let got = index
            .nearest(
                &query,
                &MemorisationConfig {
                    max_candidates: 300,
                },
            )
            .unwrap();
        assert_eq!(got.certified, 40);
        assert!(
            got.emds_solved < 40 * 300,
            "the bound prunes ({})",
            got.emds_solved
        );
        let stride = 40;
        for q in 0..40 {
            let x = jet_particles(&query.particles[q * stride..(q + 1) * stride], 4);
            let best = (0..300)
                .map(|i| {
                    jet_emd(
                        &x,
                        &jet_particles(&train.particles[i * stride..(i + 1) * stride], 4),
                    )
                    .unwrap()
                })
                .fold(f64::INFINITY, f64::min);
            assert_eq!(got.emd[q], best);
        }
        // training jets themselves are copies; a copying "generator" is flagged
        let copies = train.select(&(0..50).collect::<Vec<_>>()).unwrap();
        let m = memorisation(&train, &copies, &query, &MemorisationConfig::default()).unwrap();
        assert_eq!(m.copies(), 1.0);
        assert_eq!(m.below_real_q05(), 1.0);
        assert!(m.median_ratio() < 1e-6);
        assert!(m.table().contains("certified"));
        assert!(
            m.to_json()["generated"]["quantiles"]["q50"]
                .as_f64()
                .unwrap()
                < 1e-9
        );
        assert!(index
            .nearest(&query, &MemorisationConfig { max_candidates: 0 })
            .is_err());
    }
}
