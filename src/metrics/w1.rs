//! 1-D Wasserstein distances and jetnet's bootstrapped W1M / W1P.
//!
//! W1(u, v) = ∫ |F_u(t) − F_v(t)| dt over the empirical CDFs — `scipy.stats.wasserstein_distance`.
//! jetnet: for each of `batches` rounds draw `batch_size` jets *with replacement* from each
//! set, compute W1 of the quantity, report mean ± std (population std, numpy's default) over
//! rounds. Protocols: jetnet ≥ 2023 = 5 × 50,000; MPGAN-era = 5 × 10,000.

use rayon::prelude::*;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::physics::relative_masses;
use crate::rng::Rng;

/// W1 between two unweighted samples.
pub fn wasserstein_1d(u: &[f64], v: &[f64]) -> f64 {
    wasserstein_1d_weighted(u, v, None, None)
}

/// W1 between weighted samples (weights need not be normalised; `None` = uniform), exactly
/// scipy's algorithm: merge the sorted values, integrate |CDF_u − CDF_v| over the gaps.
/// An empty sample gives +∞ (jetnet's convention for an empty particle pool).
pub fn wasserstein_1d_weighted(
    u: &[f64],
    v: &[f64],
    uw: Option<&[f64]>,
    vw: Option<&[f64]>,
) -> f64 {
    if u.is_empty() || v.is_empty() {
        return f64::INFINITY;
    }
    let sorted = |x: &[f64], w: Option<&[f64]>| match w {
        None => {
            let mut vals = x.to_vec();
            vals.sort_unstable_by(f64::total_cmp);
            (vals, None, x.len() as f64)
        }
        Some(w) => {
            let mut idx: Vec<usize> = (0..x.len()).collect();
            idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
            let vals: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
            let ws: Vec<f64> = idx.iter().map(|&i| w[i]).collect();
            let total: f64 = ws.iter().sum();
            (vals, Some(ws), total)
        }
    };
    let (us, uws, ut) = sorted(u, uw);
    let (vs, vws, vt) = sorted(v, vw);
    let weight = |ws: &Option<Vec<f64>>, i: usize| ws.as_ref().map_or(1.0, |w| w[i]);
    sorted_walk(&us, |i| weight(&uws, i), ut, &vs, |i| weight(&vws, i), vt)
}

/// scipy's integral over sorted values `us`, `vs` with weights `uw(i)`, `vw(i)` summing to
/// `ut`, `vt`: walk the merged values; between consecutive values t_k < t_{k+1} the CDFs
/// (weight of values ≤ t_k, searchsorted side='right') are constant.
fn sorted_walk(
    us: &[f64],
    uw: impl Fn(usize) -> f64,
    ut: f64,
    vs: &[f64],
    vw: impl Fn(usize) -> f64,
    vt: f64,
) -> f64 {
    let (mut iu, mut iv) = (0usize, 0usize);
    let (mut cu, mut cv) = (0f64, 0f64);
    let mut total = 0f64;
    let next = |iu: usize, iv: usize| match (us.get(iu), vs.get(iv)) {
        (Some(a), Some(b)) => Some(a.min(*b)),
        (Some(a), None) => Some(*a),
        (None, Some(b)) => Some(*b),
        (None, None) => None,
    };
    let mut t = next(0, 0).unwrap_or(0.0);
    loop {
        while iu < us.len() && us[iu] <= t {
            cu += uw(iu);
            iu += 1;
        }
        while iv < vs.len() && vs[iv] <= t {
            cv += vw(iv);
            iv += 1;
        }
        let Some(t_next) = next(iu, iv) else { break };
        total += (cu / ut - cv / vt).abs() * (t_next - t);
        t = t_next;
    }
    total
}

/// One feature of every (kept) particle of a sample, sorted once: the values and the jet
/// each came from. A bootstrap batch is then a weighting — each particle counts as often as
/// its jet was drawn — and its W1 one linear walk ([`SortedPool::w1`]) instead of a sort of
/// the pooled batch; the integral is the same (integer weights accumulate exactly).
struct SortedPool {
    values: Vec<f64>,
    jets: Vec<u32>,
}

impl SortedPool {
    /// Feature `f` of the particles of `d` that are not all-zero (jetnet's `exclude_zeros`).
    fn new(d: &JetNetData, f: usize) -> Self {
        let mut pairs: Vec<(f64, u32)> = (0..d.n_jets)
            .flat_map(|i| (0..d.n_particles).map(move |j| (i, j)))
            .map(|(i, j)| (i, d.particle(i, j)))
            .filter(|(_, p)| p[0] != 0.0 || p[1] != 0.0 || p[2] != 0.0)
            .map(|(i, p)| (p[f] as f64, i as u32))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let (values, jets) = pairs.into_iter().unzip();
        SortedPool { values, jets }
    }

    /// W1 between the pools of two batches given as draw counts per jet (+∞ when either
    /// batch has no particles, as [`wasserstein_1d`]).
    fn w1(&self, counts: &[u32], other: &SortedPool, other_counts: &[u32]) -> f64 {
        let total = |p: &SortedPool, c: &[u32]| -> f64 {
            p.jets.iter().map(|&j| c[j as usize] as f64).sum()
        };
        let (ut, vt) = (total(self, counts), total(other, other_counts));
        if ut == 0.0 || vt == 0.0 {
            return f64::INFINITY;
        }
        sorted_walk(
            &self.values,
            |i| counts[self.jets[i] as usize] as f64,
            ut,
            &other.values,
            |i| other_counts[other.jets[i] as usize] as f64,
            vt,
        )
    }
}

/// How often each of `n` jets occurs in `draws`.
fn draw_counts(draws: &[usize], n: usize) -> Vec<u32> {
    let mut c = vec![0u32; n];
    for &i in draws {
        c[i] += 1;
    }
    c
}

/// Bootstrap settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    pub batches: usize,
    pub batch_size: usize,
    pub seed: u64,
}

impl Bootstrap {
    /// jetnet ≥ 2023 defaults: 5 batches × 50,000 jets.
    pub fn jetnet(seed: u64) -> Self {
        Bootstrap {
            batches: 5,
            batch_size: 50_000,
            seed,
        }
    }
    /// MPGAN-era protocol: 5 batches × 10,000 jets.
    pub fn mpgan(seed: u64) -> Self {
        Bootstrap {
            batches: 5,
            batch_size: 10_000,
            seed,
        }
    }
}

/// Mean and (population) standard deviation over bootstrap batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct W1Result {
    pub mean: f64,
    pub std: f64,
}

pub(crate) fn mean_std(v: &[f64]) -> W1Result {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    W1Result {
        mean,
        std: var.sqrt(),
    }
}

fn draws(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    (0..k).map(|_| rng.below(n)).collect()
}

fn check(b: &Bootstrap, real: &JetNetData, gen: &JetNetData) -> Result<()> {
    if b.batches == 0 || b.batch_size == 0 {
        return Err(Error::invalid(
            "bootstrap needs at least one batch of at least one jet",
        ));
    }
    if real.n_jets == 0 || gen.n_jets == 0 {
        return Err(Error::invalid(
            "W1 needs non-empty real and generated samples",
        ));
    }
    Ok(())
}

/// W1 of the relative jet mass m/pT between real and generated jets.
pub fn w1m(real: &JetNetData, gen: &JetNetData, b: &Bootstrap) -> Result<W1Result> {
    check(b, real, gen)?;
    let (mr, mg) = (relative_masses(real), relative_masses(gen));
    let mut rng = Rng::new(b.seed);
    let values: Vec<f64> = (0..b.batches)
        .map(|_| {
            let ir = draws(&mut rng, mr.len(), b.batch_size);
            let ig = draws(&mut rng, mg.len(), b.batch_size);
            let (sr, sg): (Vec<f64>, Vec<f64>) = (
                ir.iter().map(|&i| mr[i]).collect(),
                ig.iter().map(|&i| mg[i]).collect(),
            );
            wasserstein_1d(&sr, &sg)
        })
        .collect();
    Ok(mean_std(&values))
}

/// W1 of each particle feature (η_rel, φ_rel, pT_rel) over the pooled particles of the
/// sampled jets, excluding particles whose three features are all exactly 0 (jetnet's
/// `exclude_zeros`). Returns one result per feature.
pub fn w1p(real: &JetNetData, gen: &JetNetData, b: &Bootstrap) -> Result<[W1Result; 3]> {
    check(b, real, gen)?;
    let mut rng = Rng::new(b.seed);
    let draws_per_batch: Vec<(Vec<u32>, Vec<u32>)> = (0..b.batches)
        .map(|_| {
            let ir = draws(&mut rng, real.n_jets, b.batch_size);
            let ig = draws(&mut rng, gen.n_jets, b.batch_size);
            (draw_counts(&ir, real.n_jets), draw_counts(&ig, gen.n_jets))
        })
        .collect();
    // each feature's particles sorted once per sample; every batch is a weighted walk
    let pools: Vec<(SortedPool, SortedPool)> = (0..3)
        .into_par_iter()
        .map(|f| rayon::join(|| SortedPool::new(real, f), || SortedPool::new(gen, f)))
        .collect();
    let values: Vec<f64> = (0..b.batches * 3)
        .into_par_iter()
        .map(|k| {
            let ((cr, cg), (pr, pg)) = (&draws_per_batch[k / 3], &pools[k % 3]);
            pr.w1(cr, pg, cg)
        })
        .collect();
    let per_feature =
        |f: usize| -> Vec<f64> { values.iter().skip(f).step_by(3).copied().collect() };
    Ok([
        mean_std(&per_feature(0)),
        mean_std(&per_feature(1)),
        mean_std(&per_feature(2)),
    ])
}

/// W1 of each of the 5 EFPs (n = 4, d = 4; see [`crate::metrics::efp`]) between real and
/// generated jets, with jetnet's bootstrap. Papers report the mean over the 5 ×10⁵.
pub fn w1efp(
    real: &JetNetData,
    gen: &JetNetData,
    b: &Bootstrap,
) -> Result<[W1Result; crate::metrics::efp::N_EFP]> {
    check(b, real, gen)?;
    let (er, eg) = (
        crate::metrics::efp::jet_efps(real),
        crate::metrics::efp::jet_efps(gen),
    );
    w1efp_of(&er, &eg, b)
}

/// [`w1efp`] from the 5 EFPs of every real and generated jet (computed elsewhere, e.g. as
/// columns of the 36 of FPD/KPD: [`crate::metrics::efp::columns_in_d4_set`]).
pub fn w1efp_of(
    er: &[[f64; crate::metrics::efp::N_EFP]],
    eg: &[[f64; crate::metrics::efp::N_EFP]],
    b: &Bootstrap,
) -> Result<[W1Result; crate::metrics::efp::N_EFP]> {
    if b.batches == 0 || b.batch_size == 0 || er.is_empty() || eg.is_empty() {
        return Err(Error::invalid(
            "W1EFP needs at least one batch of at least one jet, and non-empty samples",
        ));
    }
    let mut rng = Rng::new(b.seed);
    let mut per = vec![Vec::new(); crate::metrics::efp::N_EFP];
    for _ in 0..b.batches {
        let ir = draws(&mut rng, er.len(), b.batch_size);
        let ig = draws(&mut rng, eg.len(), b.batch_size);
        for (k, out) in per.iter_mut().enumerate() {
            let sr: Vec<f64> = ir.iter().map(|&i| er[i][k]).collect();
            let sg: Vec<f64> = ig.iter().map(|&i| eg[i][k]).collect();
            out.push(wasserstein_1d(&sr, &sg));
        }
    }
    Ok(std::array::from_fn(|k| mean_std(&per[k])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch as draw counts over the once-sorted pool gives the W1 of the pooled batch
    /// (jets drawn twice, jets not drawn, all-zero particles left out), on the built-in jets
    /// whose pT_rel values repeat.
    #[test]
    fn counted_pools_equal_the_pooled_batches() {
        let g = crate::data::builtin::read_builtin("g").unwrap();
        let t = crate::data::builtin::read_builtin("t").unwrap();
        let mut rng = Rng::new(9);
        for f in 0..3 {
            let (pg, pt) = (SortedPool::new(&g, f), SortedPool::new(&t, f));
            let (ig, it) = (
                draws(&mut rng, g.n_jets, 700),
                draws(&mut rng, t.n_jets, 900),
            );
            let pooled = |d: &JetNetData, idx: &[usize]| -> Vec<f64> {
                idx.iter()
                    .flat_map(|&i| (0..d.n_particles).map(move |j| d.particle(i, j)))
                    .filter(|p| p[0] != 0.0 || p[1] != 0.0 || p[2] != 0.0)
                    .map(|p| p[f] as f64)
                    .collect()
            };
            let want = wasserstein_1d(&pooled(&g, &ig), &pooled(&t, &it));
            let got = pg.w1(
                &draw_counts(&ig, g.n_jets),
                &pt,
                &draw_counts(&it, t.n_jets),
            );
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "feature {f}: {got} vs {want}"
            );
        }
        // a batch without particles: +∞, as the pooled form
        let g0 = SortedPool::new(&g, 0);
        assert_eq!(
            g0.w1(&vec![0; g.n_jets], &g0, &vec![1; g.n_jets]),
            f64::INFINITY
        );
    }
}
