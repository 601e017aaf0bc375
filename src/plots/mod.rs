//! PNG plots where a physicist looks rather than reads: real-vs-generated histograms with a
//! ratio panel (jet mass, jet pT, multiplicity, particle η_rel/φ_rel/pT_rel) and training
//! curves. Rendered by our own small raster layer ([`canvas`], [`chart`]) with an embedded
//! font, so they need nothing from the system.

pub mod canvas;
pub mod chart;

use std::path::{Path, PathBuf};

use canvas::{Anchor, Canvas, Rgb};
use chart::{Axes, BLACK, GEN, GREY, REAL};

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::physics::{jet_p4, multiplicities, relative_masses};

/// Unit-area histogram (density) of `values` in `bins` equal bins over [lo, hi]; values
/// outside are ignored.
pub fn density(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0f64; bins];
    let w = (hi - lo) / bins as f64;
    for &v in values {
        if v >= lo && v <= hi && v.is_finite() {
            h[(((v - lo) / w) as usize).min(bins - 1)] += 1.0;
        }
    }
    let total: f64 = h.iter().sum::<f64>() * w;
    if total > 0.0 {
        h.iter_mut().for_each(|x| *x /= total);
    }
    h
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// How to bin one comparison.
#[derive(Clone, Copy, Debug)]
pub struct Binning {
    /// Explicit range, or None for the 0.2–99.8 % quantiles of both samples (+5 %).
    pub range: Option<(f64, f64)>,
    pub bins: usize,
    pub log_y: bool,
}

/// One PNG: normalised histograms of real (filled) and generated (line) values with a
/// generated/real ratio panel below.
pub fn compare_histograms(
    path: &Path,
    title: &str,
    xlabel: &str,
    real: &[f64],
    gen: &[f64],
    binning: Binning,
) -> Result<()> {
    let (lo, hi) = binning.range.unwrap_or_else(|| {
        let a = quantile(real, 0.002).min(quantile(gen, 0.002));
        let b = quantile(real, 0.998).max(quantile(gen, 0.998));
        let pad = ((b - a) * 0.05).max(1e-9);
        (a - pad, b + pad)
    });
    let bins = binning.bins.max(1);
    let (hr, hg) = (density(real, lo, hi, bins), density(gen, lo, hi, bins));
    let mut c = Canvas::new(800, 640);
    let ymax = hr.iter().chain(&hg).fold(0f64, |m, v| m.max(*v)).max(1e-12);
    let (y0, y1) = if binning.log_y {
        let ymin = hr
            .iter()
            .chain(&hg)
            .filter(|v| **v > 0.0)
            .fold(ymax, |m, v| m.min(*v));
        (ymin.log10().floor(), ymax.log10() + 0.3)
    } else {
        (0.0, ymax * 1.15)
    };
    let main = Axes {
        x0: lo,
        x1: hi,
        y0,
        y1,
        left: 90.0,
        top: 50.0,
        right: 770.0,
        bottom: 440.0,
        log_y: binning.log_y,
    };
    main.bars(&mut c, &hr, REAL, 0.35);
    main.step(&mut c, &hr, REAL, 2.0);
    main.step(&mut c, &hg, GEN, 2.0);
    main.draw_frame(&mut c, false, 5);
    c.text(title, 430.0, 32.0, 18.0, BLACK, Anchor::Center, false);
    c.text("density", 30.0, 245.0, 15.0, BLACK, Anchor::Center, true);
    legend(
        &mut c,
        600.0,
        75.0,
        &[
            (format!("real ({})", real.len()), REAL),
            (format!("generated ({})", gen.len()), GEN),
        ],
    );
    let ratio: Vec<f64> = hr
        .iter()
        .zip(&hg)
        .map(|(r, g)| if *r > 0.0 { g / r } else { f64::NAN })
        .collect();
    let low = Axes {
        x0: lo,
        x1: hi,
        y0: 0.0,
        y1: 2.0,
        left: 90.0,
        top: 455.0,
        right: 770.0,
        bottom: 590.0,
        log_y: false,
    };
    low.dashed_one(&mut c);
    let w = (hi - lo) / bins as f64;
    for (k, &r) in ratio.iter().enumerate() {
        if r.is_finite() {
            let (xa, xb) = (low.px(lo + k as f64 * w), low.px(lo + (k + 1) as f64 * w));
            c.line(xa, low.py(r.min(2.0)), xb, low.py(r.min(2.0)), 2.0, GEN);
        }
    }
    low.draw_frame(&mut c, true, 2);
    c.text("gen / real", 30.0, 522.0, 15.0, BLACK, Anchor::Center, true);
    c.text(xlabel, 430.0, 628.0, 15.0, BLACK, Anchor::Center, false);
    c.save_png(path)
}

impl Axes {
    fn dashed_one(&self, c: &mut Canvas) {
        c.dashed_hline(self.left, self.right, self.py(1.0), GREY);
    }
}

fn legend(c: &mut Canvas, x: f64, y: f64, entries: &[(String, Rgb)]) {
    for (k, (label, color)) in entries.iter().enumerate() {
        let yy = y + k as f64 * 22.0;
        c.line(x, yy - 5.0, x + 28.0, yy - 5.0, 3.0, *color);
        c.text(label, x + 36.0, yy, 14.0, BLACK, Anchor::Left, false);
    }
}

/// A line plot of several series (e.g. training and validation NLL against step).
pub fn line_plot(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(&str, Rgb, Vec<(f64, f64)>)],
) -> Result<()> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(Error::invalid(format!(
            "{}: nothing to plot",
            path.display()
        )));
    }
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    // y range: robust to the huge first steps of a fresh model
    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let (ylo, yhi) = (quantile(&ys, 0.0), quantile(&ys, 0.97));
    let pad = ((yhi - ylo) * 0.08).max(1e-9);
    let ax = Axes {
        x0: xmin,
        x1: if xmax > xmin { xmax } else { xmin + 1.0 },
        y0: ylo - pad,
        y1: yhi + pad,
        left: 90.0,
        top: 50.0,
        right: 770.0,
        bottom: 520.0,
        log_y: false,
    };
    let mut c = Canvas::new(800, 580);
    for (_, color, s) in series {
        ax.polyline(&mut c, s, *color, 2.0);
    }
    ax.draw_frame(&mut c, true, 6);
    c.text(title, 430.0, 32.0, 18.0, BLACK, Anchor::Center, false);
    c.text(ylabel, 30.0, 285.0, 15.0, BLACK, Anchor::Center, true);
    c.text(xlabel, 430.0, 566.0, 15.0, BLACK, Anchor::Center, false);
    let entries: Vec<(String, Rgb)> = series.iter().map(|s| (s.0.to_string(), s.1)).collect();
    legend(&mut c, 560.0, 75.0, &entries);
    c.save_png(path)
}

/// The standard real-vs-generated set into `dir` (created if missing): jet_mass.png,
/// jet_pt.png, multiplicity.png, particle_eta_rel.png, particle_phi_rel.png,
/// particle_pt_rel.png. Returns the files written.
pub fn comparison_plots(real: &JetNetData, gen: &JetNetData, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e.to_string()))?;
    let jet_pt = |d: &JetNetData| -> Vec<f64> {
        d.particles
            .chunks_exact(d.n_particles * 4)
            .map(|j| jet_p4(j, 4).pt())
            .collect()
    };
    let mult =
        |d: &JetNetData| -> Vec<f64> { multiplicities(d).into_iter().map(|n| n as f64).collect() };
    let feature = |d: &JetNetData, f: usize| -> Vec<f64> {
        d.particles
            .chunks_exact(4)
            .filter(|p| p[3] > 0.0 || p[2] != 0.0)
            .map(|p| p[f] as f64)
            .collect()
    };
    let n_max = real.n_particles.max(gen.n_particles) as f64;
    let auto = |bins, log_y| Binning {
        range: None,
        bins,
        log_y,
    };
    let plots: Vec<(&str, &str, &str, Vec<f64>, Vec<f64>, Binning)> = vec![
        (
            "jet_mass.png",
            "Jet mass",
            "m / pT (relative jet mass)",
            relative_masses(real),
            relative_masses(gen),
            auto(50, false),
        ),
        (
            "jet_pt.png",
            "Jet pT",
            "pT / pT_jet (sum of constituents)",
            jet_pt(real),
            jet_pt(gen),
            auto(50, false),
        ),
        (
            "multiplicity.png",
            "Particle multiplicity",
            "number of particles",
            mult(real),
            mult(gen),
            Binning {
                range: Some((-0.5, n_max + 0.5)),
                bins: n_max as usize + 1,
                log_y: false,
            },
        ),
        (
            "particle_eta_rel.png",
            "Particle η_rel",
            "η_rel",
            feature(real, 0),
            feature(gen, 0),
            auto(60, false),
        ),
        (
            "particle_phi_rel.png",
            "Particle φ_rel",
            "φ_rel",
            feature(real, 1),
            feature(gen, 1),
            auto(60, false),
        ),
        (
            "particle_pt_rel.png",
            "Particle pT_rel",
            "pT_rel",
            feature(real, 2),
            feature(gen, 2),
            auto(60, true),
        ),
    ];
    let mut files = Vec::new();
    for (file, title, xlabel, r, g, binning) in plots {
        let path = dir.join(file);
        compare_histograms(&path, title, xlabel, &r, &g, binning)?;
        files.push(path);
    }
    Ok(files)
}
