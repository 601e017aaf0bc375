//! Receiver operating characteristic of a classifier score, drawn as physicists do: signal
//! efficiency ε_S against background rejection 1/ε_B on a log axis, with the area under
//! the curve (AUC) in the legend and a random classifier (1/ε_B = 1/ε_S) for reference.

use std::path::Path;

use super::frame::{LegendPos, Scale};
use super::style::{GREY, PALETTE};
use super::xy::{xy_plot, Series, Style, XyPlot};
use crate::error::{Error, Result};

/// A ROC curve: for each threshold (from the highest score down), the fraction of signal
/// (`tpr` = ε_S) and of background (`fpr` = ε_B) at or above it, from (0, 0) to (1, 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    /// Area under tpr(fpr) (trapezoids; 1 = perfect, 0.5 = random).
    pub auc: f64,
}

impl Roc {
    /// The curve of a score that is higher for signal. Equal scores form one step (so ties
    /// count half, as in the Mann–Whitney AUC). An error if either sample is empty or a
    /// score is not finite.
    pub fn from_scores(signal: &[f64], background: &[f64]) -> Result<Roc> {
        if signal.is_empty() || background.is_empty() {
            return Err(Error::invalid(format!(
                "ROC needs signal and background scores, got {} and {}",
                signal.len(),
                background.len()
            )));
        }
        let bad = signal
            .iter()
            .chain(background)
            .filter(|v| !v.is_finite())
            .count();
        if bad > 0 {
            return Err(Error::NonFinite {
                what: "ROC scores".into(),
                count: bad,
                total: signal.len() + background.len(),
            });
        }
        let mut all: Vec<(f64, bool)> = signal
            .iter()
            .map(|&s| (s, true))
            .chain(background.iter().map(|&b| (b, false)))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (ns, nb) = (signal.len() as f64, background.len() as f64);
        let (mut fpr, mut tpr) = (vec![0.0], vec![0.0]);
        let (mut s, mut b) = (0usize, 0usize);
        let mut i = 0;
        while i < all.len() {
            let score = all[i].0;
            while i < all.len() && all[i].0 == score {
                if all[i].1 {
                    s += 1;
                } else {
                    b += 1;
                }
                i += 1;
            }
            tpr.push(s as f64 / ns);
            fpr.push(b as f64 / nb);
        }
        let auc = fpr
            .windows(2)
            .zip(tpr.windows(2))
            .map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0)
            .sum();
        Ok(Roc { fpr, tpr, auc })
    }

    /// Background rejection 1/ε_B at signal efficiency `eff` (linear between the points).
    pub fn rejection_at(&self, eff: f64) -> f64 {
        let k = self
            .tpr
            .partition_point(|&t| t < eff)
            .min(self.tpr.len() - 1);
        let fpr = if k == 0 || self.tpr[k] == self.tpr[k - 1] {
            self.fpr[k]
        } else {
            let w = (eff - self.tpr[k - 1]) / (self.tpr[k] - self.tpr[k - 1]);
            self.fpr[k - 1] + w * (self.fpr[k] - self.fpr[k - 1])
        };
        1.0 / fpr
    }
}

/// One PNG with the curves of `curves` (label, curve): ε_S on x, 1/ε_B on a log y axis.
/// Points with ε_B = 0 (infinite rejection) are not drawn.
pub fn roc_plot(path: &Path, title: &str, curves: &[(&str, &Roc)]) -> Result<()> {
    let mut series: Vec<Series> = curves
        .iter()
        .enumerate()
        .map(|(k, (label, roc))| {
            let pts = roc
                .tpr
                .iter()
                .zip(&roc.fpr)
                .filter(|(_, &f)| f > 0.0)
                .map(|(&t, &f)| (t, 1.0 / f))
                .collect();
            Series::line(
                format!("{label} (AUC = {:.3})", roc.auc),
                PALETTE[k % PALETTE.len()],
                pts,
            )
        })
        .collect();
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(10.0f64, f64::max);
    let random: Vec<(f64, f64)> = (1..=100)
        .map(|k| (k as f64 / 100.0, 100.0 / k as f64))
        .collect();
    series.push(Series::line("Random classifier", GREY, random).with_style(Style::Dashed));
    let plot = XyPlot {
        title: title.into(),
        xlabel: "Signal efficiency ε_S".into(),
        ylabel: "Background rejection 1 / ε_B".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        x_range: Some((0.0, 1.0)),
        y_range: Some((1.0, ymax)),
        legend: LegendPos::UpperRight,
    };
    xy_plot(path, &plot, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_of_separated_tied_and_random_scores() {
        let perfect = Roc::from_scores(&[2.0, 3.0], &[0.0, 1.0]).unwrap();
        assert_eq!(perfect.auc, 1.0);
        // all tied: one step from (0,0) to (1,1), AUC ½
        let tied = Roc::from_scores(&[1.0, 1.0], &[1.0]).unwrap();
        assert_eq!((tied.fpr.clone(), tied.auc), (vec![0.0, 1.0], 0.5));
        // 3 signal, 2 background: 4 of the 6 (s, b) pairs have s > b
        let r = Roc::from_scores(&[0.9, 0.6, 0.2], &[0.7, 0.1]).unwrap();
        assert!((r.auc - 4.0 / 6.0).abs() < 1e-12, "{}", r.auc);
        assert!(r.rejection_at(1.0 / 3.0).is_infinite());
        assert!((r.rejection_at(2.0 / 3.0) - 2.0).abs() < 1e-12);
        assert!(Roc::from_scores(&[], &[1.0]).is_err());
        assert!(Roc::from_scores(&[f64::NAN], &[1.0]).is_err());
    }
}
