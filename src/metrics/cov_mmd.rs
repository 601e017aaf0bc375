//! Coverage (COV) and minimum matching distance (MMD) over the exact jet EMD, as jetnet 0.2.5's
//! `cov_mmd` defines them (Achlioptas et al. 2018, used for jets by Kansal et al. 2021).
//!
//! Per batch, `n` real and `n` generated jets are drawn with replacement and the n×n matrix
//! D_gr = EMD(gen_g, real_r) ([`jet_emd`]: R = 1, β = 1, unnormalised pT) is computed.
//! - MMD = (1/n) Σ_r min_g D_gr — for every *real* jet, the distance to its nearest generated
//!   jet, averaged (jetnet's code does this per real jet; its comment says otherwise);
//! - COV = |{argmin_r D_gr : g}| / n — the fraction of real jets that are the nearest
//!   neighbour of at least one generated jet.
//!
//! Both are averaged over the batches; jetnet reports no error for them, we also return the
//! standard deviation over batches.
//!
//! **Pruning.** Neither reduction needs the whole matrix: only each row's argmin and each
//! column's minimum. With the lower bound LB(x, y) = ‖Φ(x) − Φ(y)‖_∞ ≤ EMD(x, y) of
//! [`crate::metrics::memorisation`], each generated jet visits the real jets in increasing
//! LB and solves exact EMDs until the next LB exceeds the best EMD found; then each real jet
//! does the same over the generated jets, starting from the EMDs already solved. A skipped
//! pair has EMD ≥ LB > the minimum, so it can be neither a minimum nor a tie: the results are
//! those of the full matrix ([`cov_mmd_from_matrix`]) to the last bit, ties to the first
//! index included. Rows, then columns, run in parallel (rayon).

use rayon::prelude::*;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::emd::{jet_emd, jet_particles, Particle};
use crate::metrics::memorisation::{beyond, embed, lower_bound, pair_bound, EMBED_DIM};
use crate::metrics::w1::W1Result;
use crate::rng::Rng;

/// COV and MMD with their spread over batches.
#[derive(Clone, Debug, PartialEq)]
pub struct CovMmd {
    /// Coverage, mean over batches (higher is better, ≤ 1).
    pub cov: W1Result,
    /// Minimum matching distance, mean over batches (lower is better).
    pub mmd: W1Result,
}

/// Settings: jets per batch (jetnet: 100) and number of batches (jetnet: 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CovMmdConfig {
    pub batch_size: usize,
    pub batches: usize,
    pub seed: u64,
}

impl CovMmdConfig {
    /// jetnet's defaults: 10 batches of 100 vs 100 jets.
    pub fn jetnet(seed: u64) -> Self {
        CovMmdConfig {
            batch_size: 100,
            batches: 10,
            seed,
        }
    }
}

/// The EMD matrix `[gen.len()][real.len()]` (row-major) between two lists of jets.
pub fn emd_matrix(gen: &[Vec<Particle>], real: &[Vec<Particle>]) -> Result<Vec<f64>> {
    let m = real.len();
    (0..gen.len() * m)
        .into_par_iter()
        .map(|p| jet_emd(&gen[p / m], &real[p % m]))
        .collect()
}

/// A jet's particles and its lower-bound embedding Φ.
struct Jet {
    particles: Vec<Particle>,
    phi: [f64; EMBED_DIM],
}

fn particles(d: &JetNetData, what: &str) -> Result<Vec<Jet>> {
    let stride = d.n_particles * 4;
    if let Some(k) = d
        .particles
        .chunks_exact(4)
        .position(|p| p[2] < 0.0 || !p[2].is_finite())
    {
        return Err(Error::invalid(format!(
            "cov_mmd: {what} jet {} has a negative or non-finite pT (jetnet asserts pT ≥ 0)",
            k / d.n_particles
        )));
    }
    Ok(d.particles
        .par_chunks_exact(stride)
        .map(|jet| Jet {
            particles: jet_particles(jet, 4),
            phi: embed(jet, 4),
        })
        .collect())
}

/// COV and MMD between real and generated jets (see the module documentation).
pub fn cov_mmd(real: &JetNetData, gen: &JetNetData, cfg: &CovMmdConfig) -> Result<CovMmd> {
    if cfg.batches == 0 || cfg.batch_size == 0 {
        return Err(Error::invalid(
            "cov_mmd needs at least one batch of at least one jet",
        ));
    }
    if real.n_jets == 0 || gen.n_jets == 0 {
        return Err(Error::invalid(
            "cov_mmd needs non-empty real and generated samples",
        ));
    }
    let (pr, pg) = (particles(real, "real")?, particles(gen, "generated")?);
    let mut rng = Rng::new(cfg.seed);
    let n = cfg.batch_size;
    let (mut covs, mut mmds) = (Vec::new(), Vec::new());
    for _ in 0..cfg.batches {
        let br: Vec<&Jet> = (0..n).map(|_| &pr[rng.below(pr.len())]).collect();
        let bg: Vec<&Jet> = (0..n).map(|_| &pg[rng.below(pg.len())]).collect();
        let (cov, mmd, _) = pruned_cov_mmd(&bg, &br)?;
        covs.push(cov);
        mmds.push(mmd);
    }
    Ok(CovMmd {
        cov: crate::metrics::w1::mean_std(&covs),
        mmd: crate::metrics::w1::mean_std(&mmds),
    })
}

/// Indices `0..lbs.len()` in increasing `lbs` (ties by index).
fn by_bound(lbs: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lbs.len()).collect();
    order.sort_by(|&a, &b| lbs[a].total_cmp(&lbs[b]).then(a.cmp(&b)));
    order
}

/// COV and MMD of one batch (`gen`, `real`: n each) as [`cov_mmd_from_matrix`] of the full
/// EMD matrix gives them, solving only the EMDs the pruning needs (see the module doc);
/// also returns how many it solved.
fn pruned_cov_mmd(gen: &[&Jet], real: &[&Jet]) -> Result<(f64, f64, usize)> {
    let (n_gen, n_real) = (gen.len(), real.len());
    // rows: each generated jet's nearest real jet (first index on ties)
    let rows: Vec<(usize, Vec<(usize, f64)>)> = gen
        .par_iter()
        .map(|g| {
            let lbs: Vec<f64> = real.iter().map(|r| lower_bound(&g.phi, &r.phi)).collect();
            let (mut best, mut arg, mut solved) = (f64::INFINITY, 0, Vec::new());
            for r in by_bound(&lbs) {
                if beyond(lbs[r], best) {
                    break;
                }
                if beyond(pair_bound(&g.particles, &real[r].particles), best) {
                    continue;
                }
                let d = jet_emd(&g.particles, &real[r].particles)?;
                if d < best || (d == best && r < arg) {
                    (best, arg) = (d, r);
                }
                solved.push((r, d));
            }
            Ok((arg, solved))
        })
        .collect::<Result<_>>()?;
    let mut known = vec![f64::NAN; n_gen * n_real];
    for (g, (_, solved)) in rows.iter().enumerate() {
        for &(r, d) in solved {
            known[g * n_real + r] = d;
        }
    }
    // columns: each real jet's distance to its nearest generated jet
    let columns: Vec<(f64, usize)> = (0..n_real)
        .into_par_iter()
        .map(|r| {
            let column = |g: usize| known[g * n_real + r];
            let mut best = (0..n_gen)
                .map(column)
                .filter(|d| !d.is_nan())
                .fold(f64::INFINITY, f64::min);
            let lbs: Vec<f64> = gen
                .iter()
                .map(|g| lower_bound(&g.phi, &real[r].phi))
                .collect();
            let mut solved = 0;
            for g in by_bound(&lbs) {
                if beyond(lbs[g], best) {
                    break;
                }
                let (x, y) = (&gen[g].particles, &real[r].particles);
                if column(g).is_nan() && !beyond(pair_bound(x, y), best) {
                    best = best.min(jet_emd(x, y)?);
                    solved += 1;
                }
            }
            Ok((best, solved))
        })
        .collect::<Result<_>>()?;
    let mut covered = vec![false; n_real];
    for (arg, _) in &rows {
        covered[*arg] = true;
    }
    let cov = covered.iter().filter(|&&c| c).count() as f64 / n_real as f64;
    let mmd = columns.iter().map(|c| c.0).sum::<f64>() / n_real as f64;
    let solved =
        rows.iter().map(|r| r.1.len()).sum::<usize>() + columns.iter().map(|c| c.1).sum::<usize>();
    Ok((cov, mmd, solved))
}

/// COV and MMD of one distance matrix `d[g * n_real + r]` (jetnet's reductions; ties go to
/// the first index, as numpy's argmin).
pub fn cov_mmd_from_matrix(d: &[f64], n_gen: usize, n_real: usize) -> (f64, f64) {
    let mut mmd = 0.0;
    for r in 0..n_real {
        mmd += (0..n_gen)
            .map(|g| d[g * n_real + r])
            .fold(f64::INFINITY, f64::min);
    }
    let mut covered = vec![false; n_real];
    for g in 0..n_gen {
        let row = &d[g * n_real..(g + 1) * n_real];
        let best = (0..n_real).fold(0, |b, r| if row[r] < row[b] { r } else { b });
        covered[best] = true;
    }
    let cov = covered.iter().filter(|&&c| c).count() as f64 / n_real as f64;
    (cov, mmd / n_real as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pruned batch equals the full matrix's reductions bit for bit — on real jets of
    /// two classes, on one class against itself, with jets drawn twice (exact ties, which go
    /// to the first index), and with empty jets — and solves fewer EMDs than the matrix.
    #[test]
    fn pruning_gives_the_full_matrix_results() {
        let g = JetNetData::read(std::path::Path::new("data/sample/g.hdf5")).unwrap();
        let t = JetNetData::read(std::path::Path::new("data/sample/t.hdf5")).unwrap();
        let (pg, pt) = (particles(&g, "g").unwrap(), particles(&t, "t").unwrap());
        // two jets with no particle at all
        let empty = JetNetData::new(vec![0.0; 2 * 30 * 4], vec![0.0; 8], 2, 30, "e").unwrap();
        let pe = particles(&empty, "empty").unwrap();
        let mut rng = Rng::new(7);
        let mut pick = |from: &'static str, n: usize| -> Vec<&Jet> {
            let pool = match from {
                "g" => &pg,
                "t" => &pt,
                _ => &pe,
            };
            (0..n).map(|_| &pool[rng.below(pool.len())]).collect()
        };
        let cases = [
            (pick("g", 60), pick("t", 60)),
            (pick("g", 100), pick("g", 100)),
            (pick("t", 40), pick("g", 40)),
            (pick("t", 100), pick("t", 100)),
        ];
        let full_of = |gen: &[&Jet], real: &[&Jet]| {
            let own = |js: &[&Jet]| js.iter().map(|j| j.particles.clone()).collect::<Vec<_>>();
            let d = emd_matrix(&own(gen), &own(real)).unwrap();
            cov_mmd_from_matrix(&d, gen.len(), real.len())
        };
        for (k, (gen, real)) in cases.iter().enumerate() {
            // duplicates of the first real jets at later indices: ties in every row
            let mut real = real.clone();
            real[30] = real[3];
            real[31] = real[3];
            let (cov, mmd, solved) = pruned_cov_mmd(gen, &real).unwrap();
            let (want_cov, want_mmd) = full_of(gen, &real);
            assert_eq!(
                (cov.to_bits(), mmd.to_bits()),
                (want_cov.to_bits(), want_mmd.to_bits()),
                "case {k}"
            );
            let all = gen.len() * real.len();
            eprintln!("case {k}: solved {solved} of {all}");
            assert!(solved < all * 3 / 4, "case {k}: solved {solved} of {all}");
        }
        // empty jets on either side (EMD = the other's Σ pT)
        let (mut gen, real) = (pick("g", 10), pick("t", 10));
        gen[4] = &pe[0];
        let (cov, mmd, _) = pruned_cov_mmd(&gen, &real).unwrap();
        assert_eq!((cov, mmd), full_of(&gen, &real));
        let (cov, mmd, _) = pruned_cov_mmd(&real, &gen).unwrap();
        assert_eq!((cov, mmd), full_of(&real, &gen));
    }
}
