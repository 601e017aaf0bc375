//! Fréchet and kernel physics distances (Kansal et al. 2023, arXiv:2211.10295) exactly as
//! jetnet 0.2.5's `fpd` and `kpd` define them, on any per-jet feature matrix — for jets the 36
//! EFPs with d ≤ 4 ([`fpd_kpd_features`]).
//!
//! Both first divide every feature of both samples by max |x| of that feature over the *real*
//! sample (features that are identically 0 are left alone).
//!
//! **FPD.** For 10 batch sizes N spread uniformly in 1/N between 20,000 and 50,000
//! (`int32(1 / linspace(1/20000, 1/50000, 10))`), 20 batches of N real and N generated rows are
//! drawn with replacement; each gives the Fréchet distance between Gaussian fits,
//! FD = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁Σ₂)^{1/2} (unbiased covariances). The 20 values are
//! averaged and FD(N) = a + b/N is fitted by least squares with a, b ≥ 0; FPD = a ± √Var(a).
//! Tr (Σ₁Σ₂)^{1/2} is computed as Σ √λ of the symmetric PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2}
//! (the same eigenvalues as Σ₁Σ₂; scipy's `sqrtm` of the product gives the same trace).
//!
//! **KPD.** 10 batches of 5,000 rows per sample drawn with replacement; each gives the unbiased
//! quadratic MMD² with the kernel k(x, y) = (x·y/d + 1)⁴:
//! MMD² = Σ_{i≠j} k(x_i,x_j)/(m(m−1)) + Σ_{i≠j} k(y_i,y_j)/(n(n−1)) − 2 mean k(x_i,y_j).
//! KPD = median over batches ± half the 16.275–83.725 % percentile range (numpy's linear
//! interpolation). Kernel sums are accumulated in f64 tiles, never as 5,000² matrices.
//!
//! Random draws use jetgen's seeded generator, not numpy's, so values agree with jetnet's
//! within their errors, not digit for digit.

use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::efpset::{efp_graphs_d4, jet_efp_features};
use crate::metrics::w1::W1Result;
use crate::rng::Rng;

/// A row-major feature matrix `[rows, dim]` in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f64>,
}

impl Features {
    /// Wraps `data` (`rows × dim` values). Errors on a size mismatch or non-finite values.
    pub fn new(rows: usize, dim: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * dim {
            return Err(Error::invalid(format!(
                "features: {} values for {rows} rows × {dim} features",
                data.len()
            )));
        }
        if let Some(k) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                what: format!(
                    "features (row {}, feature {})",
                    k / dim.max(1),
                    k % dim.max(1)
                ),
                count: data.iter().filter(|x| !x.is_finite()).count(),
                total: data.len(),
            });
        }
        Ok(Features { rows, dim, data })
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn gather(&self, idx: &[usize]) -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect()
    }
}

/// The 36 EFPs (d ≤ 4, hadronic measure, β = 1, unnormalised) of every jet: jetnet's
/// `get_fpd_kpd_jet_features`.
pub fn fpd_kpd_features(data: &JetNetData) -> Result<Features> {
    let graphs = efp_graphs_d4();
    Features::new(data.n_jets, graphs.len(), jet_efp_features(data, graphs)?)
}

/// Divides both samples' features by max |x| of the real sample (jetnet's normalisation).
pub fn normalise(real: &Features, gen: &Features) -> Result<(Features, Features)> {
    if real.dim != gen.dim {
        return Err(Error::invalid(format!(
            "real and generated features differ in width: {} vs {}",
            real.dim, gen.dim
        )));
    }
    let mut maxes = vec![0f64; real.dim];
    for i in 0..real.rows {
        for (m, x) in maxes.iter_mut().zip(real.row(i)) {
            *m = m.max(x.abs());
        }
    }
    maxes
        .iter_mut()
        .filter(|m| **m == 0.0)
        .for_each(|m| *m = 1.0);
    let scale = |f: &Features| Features {
        rows: f.rows,
        dim: f.dim,
        data: f
            .data
            .iter()
            .enumerate()
            .map(|(k, x)| x / maxes[k % f.dim])
            .collect(),
    };
    Ok((scale(real), scale(gen)))
}

/// C = A·Bᵀ for row-major A `[ra, d]`, B `[rb, d]`; returns `[ra, rb]`.
fn a_bt(a: &[f64], ra: usize, b: &[f64], rb: usize, d: usize) -> Vec<f64> {
    let mut c = vec![0f64; ra * rb];
    if ra == 0 || rb == 0 || d == 0 {
        return c;
    }
    assert!(a.len() >= ra * d && b.len() >= rb * d);
    // SAFETY: the slices hold ra·d, rb·d and ra·rb elements, matching the strides below.
    unsafe {
        matrixmultiply::dgemm(
            ra,
            d,
            rb,
            1.0,
            a.as_ptr(),
            d as isize,
            1,
            b.as_ptr(),
            1,
            d as isize,
            0.0,
            c.as_mut_ptr(),
            rb as isize,
            1,
        );
    }
    c
}

/// Mean and unbiased covariance (`np.cov(rowvar=False)`) of `n` rows of width `d`.
pub fn mean_cov(x: &[f64], n: usize, d: usize) -> (Vec<f64>, DMatrix<f64>) {
    let idx: Vec<usize> = (0..n).collect();
    mean_cov_rows(x, d, &idx)
}

/// Mean and unbiased covariance of the rows `idx` (repeats allowed) of the row-major
/// `[_, d]` matrix `x`. A row drawn c times counts c times: the distinct rows are taken once
/// each, in row order, with weight c — the mean Σ c_i x_i / n, and Σ = CᵀC/(n − 1) with the
/// centred rows scaled by √c_i, accumulated by strided GEMMs over blocks of [`COV_BLOCK`]
/// rows so the centred copy stays in cache. (Draws with replacement of 20,000–50,000 rows
/// from 40,000 hold 40–65 % distinct ones: that much less GEMM.)
pub fn mean_cov_rows(x: &[f64], d: usize, idx: &[usize]) -> (Vec<f64>, DMatrix<f64>) {
    let n = idx.len();
    let rows = x.len().checked_div(d).unwrap_or(0);
    let mut counts = vec![0u32; rows];
    for &i in idx {
        counts[i] += 1;
    }
    let drawn: Vec<(usize, f64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| (i, c as f64))
        .collect();
    let mut mu = vec![0f64; d];
    for &(i, c) in &drawn {
        mu.iter_mut()
            .zip(&x[i * d..(i + 1) * d])
            .for_each(|(m, v)| *m += c * v);
    }
    mu.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut s = vec![0f64; d * d];
    let mut centred = Vec::with_capacity(COV_BLOCK.min(drawn.len()) * d);
    for block in drawn.chunks(COV_BLOCK) {
        centred.clear();
        for &(i, c) in block {
            let root = c.sqrt();
            centred.extend(
                x[i * d..(i + 1) * d]
                    .iter()
                    .zip(&mu)
                    .map(|(v, m)| (v - m) * root),
            );
        }
        let rows = block.len();
        if d > 0 {
            // SAFETY: Cᵀ is read from `centred` ([rows, d]) with strides (1, d), C with
            // (d, 1); the output is d × d row-major, accumulated (β = 1); all slices hold
            // the elements those strides reach.
            unsafe {
                matrixmultiply::dgemm(
                    d,
                    rows,
                    d,
                    1.0,
                    centred.as_ptr(),
                    1,
                    d as isize,
                    centred.as_ptr(),
                    d as isize,
                    1,
                    1.0,
                    s.as_mut_ptr(),
                    d as isize,
                    1,
                );
            }
        }
    }
    let denom = (n as f64 - 1.0).max(1.0);
    (mu, DMatrix::from_row_slice(d, d, &s).map(|v| v / denom))
}

/// Rows per block of [`mean_cov_rows`]' covariance GEMMs (4096 × 36 f64 = 1.2 MB).
const COV_BLOCK: usize = 4096;

/// Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).
pub fn frechet_distance(mu1: &[f64], s1: &DMatrix<f64>, mu2: &[f64], s2: &DMatrix<f64>) -> f64 {
    let diff: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let e1 = SymmetricEigen::new(s1.clone());
    let sqrt1 = &e1.eigenvectors
        * DMatrix::from_diagonal(&e1.eigenvalues.map(|l| l.max(0.0).sqrt()))
        * e1.eigenvectors.transpose();
    let inner = &sqrt1 * s2 * &sqrt1;
    let inner = (&inner + inner.transpose()) * 0.5;
    let tr_covmean: f64 = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    diff + s1.trace() + s2.trace() - 2.0 * tr_covmean
}

/// FPD settings (jetnet's defaults via [`FpdConfig::jetnet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpdConfig {
    pub min_samples: usize,
    pub max_samples: usize,
    pub batches: usize,
    pub points: usize,
    pub seed: u64,
}

impl FpdConfig {
    /// 10 batch sizes from 20,000 to 50,000, 20 batches each.
    pub fn jetnet(seed: u64) -> Self {
        FpdConfig {
            min_samples: 20_000,
            max_samples: 50_000,
            batches: 20,
            points: 10,
            seed,
        }
    }

    /// The batch sizes `int32(1 / linspace(1/min, 1/max, points))`.
    pub fn batch_sizes(&self) -> Vec<usize> {
        let (lo, hi) = (1.0 / self.min_samples as f64, 1.0 / self.max_samples as f64);
        (0..self.points)
            .map(|k| {
                let t = if self.points == 1 {
                    0.0
                } else {
                    k as f64 / (self.points - 1) as f64
                };
                (1.0 / (lo + (hi - lo) * t)) as usize
            })
            .collect()
    }
}

/// FPD ± its fit error (value and `std` = error), on already normalised features.
pub fn fpd(real: &Features, gen: &Features, cfg: &FpdConfig) -> Result<W1Result> {
    check(real, gen)?;
    if cfg.points < 2 || cfg.batches == 0 || cfg.min_samples < 2 {
        return Err(Error::invalid(
            "fpd needs ≥ 2 batch sizes, ≥ 1 batch and ≥ 2 samples",
        ));
    }
    let mut rng = Rng::new(cfg.seed);
    let sizes = cfg.batch_sizes();
    let mut values = Vec::new();
    for &n in &sizes {
        let draws: Vec<(Vec<usize>, Vec<usize>)> = (0..cfg.batches)
            .map(|_| {
                let a = (0..n).map(|_| rng.below(real.rows)).collect();
                let b = (0..n).map(|_| rng.below(gen.rows)).collect();
                (a, b)
            })
            .collect();
        let fds: Vec<f64> = draws
            .par_iter()
            .map(|(ia, ib)| {
                let (m1, s1) = mean_cov_rows(&real.data, real.dim, ia);
                let (m2, s2) = mean_cov_rows(&gen.data, gen.dim, ib);
                frechet_distance(&m1, &s1, &m2, &s2)
            })
            .collect();
        values.push(fds.iter().sum::<f64>() / fds.len() as f64);
    }
    let x: Vec<f64> = sizes.iter().map(|&n| 1.0 / n as f64).collect();
    Ok(nonnegative_line_fit_intercept(&x, &values))
}

/// Least-squares fit y = a + b·x with a, b ≥ 0 (scipy `curve_fit` with bounds [0, ∞)); returns
/// a and √Var(a) = √(s² [(JᵀJ)⁻¹]₀₀) with s² = SSR/(n − 2), J = [1, x].
pub fn nonnegative_line_fit_intercept(x: &[f64], y: &[f64]) -> W1Result {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let (mut a, mut b) = (my - sxy / sxx * mx, sxy / sxx);
    if b < 0.0 {
        (a, b) = (my.max(0.0), 0.0);
    } else if a < 0.0 {
        let sx2: f64 = x.iter().map(|v| v * v).sum();
        (a, b) = (
            0.0,
            (x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / sx2).max(0.0),
        );
    }
    let ssr: f64 = x.iter().zip(y).map(|(p, q)| (q - a - b * p).powi(2)).sum();
    let s2 = ssr / (n - 2.0).max(1.0);
    let sx2: f64 = x.iter().map(|v| v * v).sum();
    // [(JᵀJ)⁻¹]₀₀ = Σx² / (n Σx² − (Σx)²) = Σx² / (n·Sxx)
    W1Result {
        mean: a,
        std: (s2 * sx2 / (n * sxx)).sqrt(),
    }
}

/// KPD settings (jetnet's defaults via [`KpdConfig::jetnet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KpdConfig {
    pub batches: usize,
    pub batch_size: usize,
    pub seed: u64,
}

impl KpdConfig {
    /// 10 batches of 5,000.
    pub fn jetnet(seed: u64) -> Self {
        KpdConfig {
            batches: 10,
            batch_size: 5_000,
            seed,
        }
    }
}

/// Σ_{i,j} (a_i·b_j/d + 1)⁴ over all pairs; when `same` (b = a) over the pairs i ≠ j, as
/// twice the sum over i < j (the kernel is symmetric: only the upper triangle is computed).
fn kernel_sum(a: &[f64], b: &[f64], n: usize, d: usize, same: bool) -> f64 {
    const TILE: usize = 256;
    (0..n.div_ceil(TILE))
        .into_par_iter()
        .map(|t| {
            let (r0, r1) = (t * TILE, ((t + 1) * TILE).min(n));
            // against itself, rows r0..r1 need only the columns from r0 on
            let c0 = if same { r0 } else { 0 };
            let cols = n - c0;
            let dots = a_bt(&a[r0 * d..r1 * d], r1 - r0, &b[c0 * d..], cols, d);
            let kernel = |dot: f64| {
                let v = dot / d as f64 + 1.0;
                let v2 = v * v;
                v2 * v2
            };
            let mut s = 0.0;
            for (row, dots) in dots.chunks_exact(cols).enumerate() {
                // the columns right of the diagonal (i < j) when against itself
                let dots = if same { &dots[row + 1..] } else { dots };
                // four partial sums: one chain of dependent additions would cost an add's
                // latency per element
                let mut acc = [0f64; 4];
                let quads = dots.chunks_exact(4);
                let tail: f64 = quads.remainder().iter().map(|&v| kernel(v)).sum();
                for q in quads {
                    for k in 0..4 {
                        acc[k] += kernel(q[k]);
                    }
                }
                s += (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
            }
            if same {
                2.0 * s
            } else {
                s
            }
        })
        .sum()
}

/// Unbiased quadratic MMD² with the polynomial kernel (x·y/d + 1)⁴ between `n`-row samples.
pub fn mmd_poly_unbiased(x: &[f64], y: &[f64], n: usize, d: usize) -> f64 {
    let pairs = (n * (n - 1)) as f64;
    kernel_sum(x, x, n, d, true) / pairs + kernel_sum(y, y, n, d, true) / pairs
        - 2.0 * kernel_sum(x, y, n, d, false) / (n * n) as f64
}

/// KPD: median ± half the 16.275–83.725 % range, on already normalised features.
pub fn kpd(real: &Features, gen: &Features, cfg: &KpdConfig) -> Result<W1Result> {
    check(real, gen)?;
    if cfg.batches == 0 || cfg.batch_size < 2 {
        return Err(Error::invalid("kpd needs ≥ 1 batch of ≥ 2 samples"));
    }
    let n = cfg.batch_size;
    let mut vals = Vec::new();
    for i in 0..cfg.batches {
        let mut rng = Rng::new(cfg.seed.wrapping_add(i as u64 * 1000));
        let ia: Vec<usize> = (0..n).map(|_| rng.below(real.rows)).collect();
        let ib: Vec<usize> = (0..n).map(|_| rng.below(gen.rows)).collect();
        vals.push(mmd_poly_unbiased(
            &real.gather(&ia),
            &gen.gather(&ib),
            n,
            real.dim,
        ));
    }
    let spread = (percentile(&vals, 83.725) - percentile(&vals, 16.275)) / 2.0;
    Ok(W1Result {
        mean: percentile(&vals, 50.0),
        std: spread,
    })
}

/// numpy's `percentile(v, q)` with linear interpolation.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (s.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    if lo + 1 < s.len() {
        s[lo] + frac * (s[lo + 1] - s[lo])
    } else {
        s[lo]
    }
}

fn check(real: &Features, gen: &Features) -> Result<()> {
    if real.rows == 0 || gen.rows == 0 || real.dim == 0 || real.dim != gen.dim {
        return Err(Error::invalid(format!(
            "need non-empty feature matrices of equal width, got {}×{} and {}×{}",
            real.rows, real.dim, gen.rows, gen.dim
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows drawn several times (and rows not drawn) against the covariance of the explicitly
    /// repeated rows.
    #[test]
    fn weighted_distinct_rows_equal_the_repeated_rows() {
        let d = 3;
        let x: Vec<f64> = (0..10 * d)
            .map(|i| ((i * 37) % 11) as f64 * 0.3 - 1.0)
            .collect();
        let idx = [4usize, 1, 4, 9, 4, 0, 1, 7];
        let repeated: Vec<f64> = idx
            .iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].to_vec())
            .collect();
        let (m1, s1) = mean_cov_rows(&x, d, &idx);
        let (m2, s2) = mean_cov(&repeated, idx.len(), d);
        for (a, b) in m1.iter().zip(&m2).chain(s1.iter().zip(s2.iter())) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// The tiled kernel sums (the self-sums from the upper triangle alone) against the
    /// double loop over every pair, on sizes that cut the 256-row tiles unevenly.
    #[test]
    fn kernel_sums_equal_the_double_loop() {
        let d = 5;
        for n in [2usize, 7, 300, 513] {
            let val = |i: usize| ((i * 7919) % 1000) as f64 / 1000.0 - 0.4;
            let a: Vec<f64> = (0..n * d).map(val).collect();
            let b: Vec<f64> = (0..n * d).map(|i| val(i + 17)).collect();
            let k = |x: &[f64], y: &[f64]| {
                let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
                (dot / d as f64 + 1.0).powi(4)
            };
            let (mut same, mut cross) = (0.0, 0.0);
            for i in 0..n {
                for j in 0..n {
                    let (ai, aj, bj) = (&a[i * d..][..d], &a[j * d..][..d], &b[j * d..][..d]);
                    if i != j {
                        same += k(ai, aj);
                    }
                    cross += k(ai, bj);
                }
            }
            let got = (
                kernel_sum(&a, &a, n, d, true),
                kernel_sum(&a, &b, n, d, false),
            );
            assert!(
                (got.0 - same).abs() <= 1e-12 * same.abs(),
                "n {n}: {} vs {same}",
                got.0
            );
            assert!(
                (got.1 - cross).abs() <= 1e-12 * cross.abs(),
                "n {n}: {} vs {cross}",
                got.1
            );
        }
    }
}
