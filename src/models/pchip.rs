//! Monotone piecewise-cubic Hermite interpolation (PCHIP, Fritsch–Carlson; what
//! `scipy.interpolate.PchipInterpolator` does) and an inverse-CDF sampler built on it, used
//! to draw jet masses for a given multiplicity as the DESY flows do.

use crate::error::{Error, Result};

/// A monotone cubic through (x_k, y_k) with x strictly increasing. Between knots the
/// Hermite cubic uses slopes d_k: 0 where the secants change sign or vanish, otherwise the
/// weighted harmonic mean (w1 + w2)/(w1/Δ_{k−1} + w2/Δ_k), w1 = 2h_k + h_{k−1},
/// w2 = h_k + 2h_{k−1}; end slopes by the one-sided three-point formula, limited so the
/// curve stays monotone. Outside [x_0, x_last] the end values are returned.
#[derive(Clone, Debug)]
pub struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
}

impl Pchip {
    /// Fit through the points; needs ≥ 2 points with strictly increasing x.
    pub fn new(x: Vec<f64>, y: Vec<f64>) -> Result<Pchip> {
        let n = x.len();
        if n < 2 || y.len() != n || x.windows(2).any(|w| !(w[1] > w[0])) {
            return Err(Error::invalid(
                "PCHIP needs ≥ 2 points with strictly increasing x",
            ));
        }
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let delta: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut d = vec![0f64; n];
        if n == 2 {
            d[0] = delta[0];
            d[1] = delta[0];
        } else {
            for k in 1..n - 1 {
                if delta[k - 1] * delta[k] > 0.0 {
                    let w1 = 2.0 * h[k] + h[k - 1];
                    let w2 = h[k] + 2.0 * h[k - 1];
                    d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k]);
                }
            }
            d[0] = end_slope(h[0], h[1], delta[0], delta[1]);
            d[n - 1] = end_slope(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
        }
        Ok(Pchip { x, y, d })
    }

    /// The interpolant at `t`.
    pub fn eval(&self, t: f64) -> f64 {
        let n = self.x.len();
        if t <= self.x[0] {
            return self.y[0];
        }
        if t >= self.x[n - 1] {
            return self.y[n - 1];
        }
        let k = self.x.partition_point(|&v| v <= t) - 1;
        let h = self.x[k + 1] - self.x[k];
        let s = (t - self.x[k]) / h;
        let (h00, h10, h01, h11) = (
            (1.0 + 2.0 * s) * (1.0 - s) * (1.0 - s),
            s * (1.0 - s) * (1.0 - s),
            s * s * (3.0 - 2.0 * s),
            s * s * (s - 1.0),
        );
        h00 * self.y[k] + h10 * h * self.d[k] + h01 * self.y[k + 1] + h11 * h * self.d[k + 1]
    }
}

/// scipy's `_edge_case`-style end slope: three-point estimate, zeroed if it has the wrong
/// sign, capped at 3Δ when the secants change sign.
fn end_slope(h0: f64, h1: f64, m0: f64, m1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
    if d.signum() != m0.signum() {
        0.0
    } else if m0.signum() != m1.signum() && d.abs() > 3.0 * m0.abs() {
        3.0 * m0
    } else {
        d
    }
}

/// Inverse of an empirical CDF: the sorted sample (made strictly increasing by a tiny
/// relative jitter for ties) against plotting positions (i + ½)/N, interpolated by PCHIP
/// in the inverse direction, so u ∈ [0, 1] → a value; monotone and smooth.
#[derive(Clone, Debug)]
pub struct InverseCdf {
    curve: Pchip,
}

impl InverseCdf {
    /// Build from a non-empty sample of finite values.
    pub fn new(sample: &[f64]) -> Result<InverseCdf> {
        if sample.is_empty() || sample.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "inverse CDF needs a non-empty sample of finite values",
            ));
        }
        let mut v = sample.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        if n == 1 {
            v.push(v[0] * (1.0 + 1e-9) + 1e-12);
        }
        for k in 1..v.len() {
            if v[k] <= v[k - 1] {
                v[k] = v[k - 1] + (v[k - 1].abs() * 1e-12).max(1e-15);
            }
        }
        let m = v.len();
        let u: Vec<f64> = (0..m).map(|i| (i as f64 + 0.5) / m as f64).collect();
        Ok(InverseCdf {
            curve: Pchip::new(u, v)?,
        })
    }
    /// The value at cumulative probability `u`.
    pub fn quantile(&self, u: f64) -> f64 {
        self.curve.eval(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pchip_interpolates_and_stays_monotone() {
        let x = vec![0.0, 1.0, 2.0, 3.0, 4.0];
        let y = vec![0.0, 0.1, 0.15, 0.9, 1.0];
        let p = Pchip::new(x.clone(), y.clone()).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((p.eval(*a) - b).abs() < 1e-12);
        }
        let mut prev = f64::NEG_INFINITY;
        for k in 0..=400 {
            let v = p.eval(k as f64 / 100.0);
            assert!(v >= prev - 1e-15, "not monotone at {k}");
            prev = v;
        }
        // flat segment stays flat (no overshoot)
        let q = Pchip::new(vec![0.0, 1.0, 2.0, 3.0], vec![0.0, 1.0, 1.0, 2.0]).unwrap();
        assert!((q.eval(1.5) - 1.0).abs() < 1e-12);
        assert!(Pchip::new(vec![0.0, 0.0], vec![1.0, 2.0]).is_err());
    }

    #[test]
    fn inverse_cdf_reproduces_the_distribution() {
        let sample: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect(); // ~U[0,1)
        let inv = InverseCdf::new(&sample).unwrap();
        assert!((inv.quantile(0.5) - 0.5).abs() < 0.01);
        assert!((inv.quantile(0.9) - 0.9).abs() < 0.01);
        let ties = InverseCdf::new(&[3.0, 3.0, 3.0]).unwrap();
        assert!((ties.quantile(0.5) - 3.0).abs() < 1e-9);
        assert!(InverseCdf::new(&[]).is_err());
    }
}
