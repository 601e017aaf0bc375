//! Real-vs-generated histograms with a ratio panel and statistical error bars.
//!
//! Upper panel: both samples normalised to unit area over the shown range, the real one
//! filled, the generated one as a line with its Poisson error bars (σ_k = √N_k / (N·w)).
//! Lower panel: the ratio R_k = (G_k/G)/(R_k/R) of the two normalised histograms, with the
//! Poisson errors of both counts propagated, σ_R = R·√(1/G_k + 1/R_k); a bin the generator
//! left empty shows R = 0 with the 68 % upper limit of a zero count (1.84 events) instead.
//! Bins without real entries have no ratio. Ratios outside the panel show as triangles at
//! its edge.

use std::path::{Path, PathBuf};

use plotters::element::{Circle, PathElement, Polygon, Rectangle};
use plotters::prelude::Color;

use super::frame::{close_frame, legend, legend_line, panel, Axis, LegendPos, PanelSpec, Scale};
use super::quantile;
use super::render::{draw_error, render_png};
use super::style::{px, rgb, upx, GEN, GREY, REAL};
use super::xy::draw_title;
use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::physics::{jet_p4, multiplicities, relative_masses};

/// Unit-area histogram (density) of `values` in `bins` equal bins over [lo, hi]; values
/// outside are ignored.
pub fn density(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let counts = counts(values, lo, hi, bins);
    let w = (hi - lo) / bins as f64;
    let total: f64 = counts.iter().sum::<f64>() * w;
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

/// Entries of `values` per bin of `bins` equal bins over [lo, hi] (the last bin closed).
pub fn counts(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0f64; bins];
    let w = (hi - lo) / bins as f64;
    for &v in values {
        if v >= lo && v <= hi && v.is_finite() {
            h[(((v - lo) / w) as usize).min(bins - 1)] += 1.0;
        }
    }
    h
}

/// How to bin one comparison.
#[derive(Clone, Copy, Debug)]
pub struct Binning {
    /// Explicit range, or None for the 0.2–99.8 % quantiles of both samples (+5 %).
    pub range: Option<(f64, f64)>,
    pub bins: usize,
    pub log_y: bool,
}

/// The 68 % CL upper limit on the mean of a Poisson count of 0 (Garwood), in events.
const ZERO_COUNT_UPPER: f64 = 1.841;

/// Ratio gen/real per bin with its lower and upper statistical error, from the counts and
/// the in-range totals; `None` where the real bin is empty.
fn ratios(real: &[f64], gen: &[f64]) -> Vec<Option<(f64, f64, f64)>> {
    let (nr, ng): (f64, f64) = (real.iter().sum(), gen.iter().sum());
    real.iter()
        .zip(gen)
        .map(|(&r, &g)| {
            if r <= 0.0 || ng <= 0.0 {
                return None;
            }
            let scale = nr / (ng * r); // R = g·scale
            if g > 0.0 {
                let ratio = g * scale;
                let err = ratio * (1.0 / g + 1.0 / r).sqrt();
                Some((ratio, err, err))
            } else {
                Some((0.0, 0.0, ZERO_COUNT_UPPER * scale))
            }
        })
        .collect()
}

/// One PNG: normalised histograms of real (filled) and generated (line, with Poisson error
/// bars) values with a generated/real ratio panel below (propagated Poisson errors).
pub fn compare_histograms(
    path: &Path,
    title: &str,
    xlabel: &str,
    real: &[f64],
    gen: &[f64],
    binning: Binning,
) -> Result<()> {
    let (lo, hi) = match binning.range {
        Some(r) => r,
        None => {
            let (Some(a0), Some(b0)) = (quantile(real, 0.002), quantile(real, 0.998)) else {
                return Err(Error::invalid(format!(
                    "{title}: the real sample has no finite value to plot"
                )));
            };
            let a = quantile(gen, 0.002).map_or(a0, |g| g.min(a0));
            let b = quantile(gen, 0.998).map_or(b0, |g| g.max(b0));
            let pad = ((b - a) * 0.05).max(1e-9);
            (a - pad, b + pad)
        }
    };
    if !(lo.is_finite() && hi.is_finite() && hi > lo) || binning.bins == 0 {
        return Err(Error::invalid(format!(
            "{title}: histogram range [{lo}, {hi}] with {} bins is not usable",
            binning.bins
        )));
    }
    let bins = binning.bins;
    let w = (hi - lo) / bins as f64;
    let (cr, cg) = (counts(real, lo, hi, bins), counts(gen, lo, hi, bins));
    let (nr, ng): (f64, f64) = (cr.iter().sum(), cg.iter().sum());
    let norm = |c: &[f64], n: f64| -> Vec<f64> {
        c.iter()
            .map(|v| if n > 0.0 { v / (n * w) } else { 0.0 })
            .collect()
    };
    let (hr, hg) = (norm(&cr, nr), norm(&cg, ng));
    let sigma_g: Vec<f64> = cg
        .iter()
        .map(|c| if ng > 0.0 { c.sqrt() / (ng * w) } else { 0.0 })
        .collect();
    let ymax = hr
        .iter()
        .zip(&hg)
        .zip(&sigma_g)
        .fold(0f64, |m, ((r, g), s)| m.max(*r).max(g + s))
        .max(1e-12);
    let (yscale, ylo, yhi) = if binning.log_y {
        let ymin = hr
            .iter()
            .chain(&hg)
            .filter(|v| **v > 0.0)
            .fold(ymax, |m, v| m.min(*v));
        (Scale::Log, ymin * 0.5, ymax * 5.0)
    } else {
        (Scale::Linear, 0.0, ymax * 1.25)
    };
    let x_axis = Axis::new(Scale::Linear, lo, hi, "x")?;
    let y_axis = Axis::new(yscale, ylo, yhi, "y")?;
    // no labels at the panel's edges, where they would meet the upper panel's
    let r_axis = Axis::linear_with_ticks(0.0, 2.0, &[0.5, 1.0, 1.5], 0.5);
    let edges = |k: usize| (lo + k as f64 * w, lo + (k + 1) as f64 * w);
    let ratio = ratios(&cr, &cg);

    render_png(path, 900, 760, |root| {
        let err = |e| draw_error(path, e);
        let (head, body) = root.split_vertically(px(44.0));
        draw_title(&head, title, path)?;
        let (upper, lower) = body.split_vertically(px(470.0));
        let (left, right) = (92.0, 24.0);
        let spec = PanelSpec {
            x: &x_axis,
            y: &y_axis,
            xlabel: None,
            y_tick_labels: true,
            ylabel: "Density (normalised to unit area)",
            left,
            bottom: 6.0,
            top: 4.0,
            right,
        };
        let mut chart = panel(&upper, path, &spec)?;
        let floor = y_axis.lo;
        let yt = |v: f64| {
            let t = y_axis.t(v);
            if t.is_nan() {
                floor
            } else {
                t.clamp(y_axis.lo, y_axis.hi)
            }
        };
        // real: filled bars plus their outline
        let fill = rgb(REAL).mix(0.30).filled();
        chart
            .draw_series((0..bins).filter(|&k| hr[k] > 0.0).map(|k| {
                let (a, b) = edges(k);
                Rectangle::new([(a, floor), (b, yt(hr[k]))], fill)
            }))
            .map_err(err)?;
        let step = |h: &[f64]| -> Vec<(f64, f64)> {
            let mut pts = vec![(lo, floor)];
            for (k, &v) in h.iter().enumerate() {
                let (a, b) = edges(k);
                pts.push((a, yt(v)));
                pts.push((b, yt(v)));
            }
            pts.push((hi, floor));
            pts
        };
        let real_label = format!("Real ({} entries)", thousands(nr));
        let gen_label = format!("Generated ({} entries)", thousands(ng));
        chart
            .draw_series(std::iter::once(PathElement::new(
                step(&hr),
                rgb(REAL).stroke_width(upx(2.0)),
            )))
            .map_err(err)?
            .label(real_label)
            .legend(move |(x, y)| {
                Rectangle::new(
                    [(x, y - px(6.0)), (x + px(26.0), y + px(6.0))],
                    rgb(REAL).mix(0.45).filled(),
                )
            });
        chart
            .draw_series(std::iter::once(PathElement::new(
                step(&hg),
                rgb(GEN).stroke_width(upx(2.2)),
            )))
            .map_err(err)?
            .label(gen_label)
            .legend(legend_line(GEN, 2.2));
        // generated: Poisson error bars at the bin centres
        chart
            .draw_series((0..bins).filter(|&k| cg[k] > 0.0).map(|k| {
                let c = lo + (k as f64 + 0.5) * w;
                PathElement::new(
                    vec![(c, yt(hg[k] - sigma_g[k])), (c, yt(hg[k] + sigma_g[k]))],
                    rgb(GEN).stroke_width(upx(1.3)),
                )
            }))
            .map_err(err)?;
        close_frame(&mut chart, &x_axis, &y_axis, path)?;
        legend(&mut chart, LegendPos::UpperRight, path)?;

        let spec = PanelSpec {
            x: &x_axis,
            y: &r_axis,
            xlabel: Some(xlabel),
            y_tick_labels: true,
            ylabel: "Gen / Real",
            left,
            bottom: 62.0,
            top: 6.0,
            right,
        };
        let mut chart = panel(&lower, path, &spec)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(lo, 1.0), (hi, 1.0)],
                rgb(GREY).stroke_width(upx(1.2)),
            )))
            .map_err(err)?;
        let (rlo, rhi) = (r_axis.lo, r_axis.hi);
        let cap = (w * 0.25).min((hi - lo) * 0.006);
        let mut bars = Vec::new();
        let mut dots = Vec::new();
        let mut off = Vec::new();
        for (k, r) in ratio.iter().enumerate() {
            let Some((v, down, up)) = *r else { continue };
            let c = lo + (k as f64 + 0.5) * w;
            let (a, b) = ((v - down).clamp(rlo, rhi), (v + up).clamp(rlo, rhi));
            if b > a {
                bars.push(vec![(c, a), (c, b)]);
                if v - down >= rlo {
                    bars.push(vec![(c - cap, a), (c + cap, a)]);
                }
                if v + up <= rhi {
                    bars.push(vec![(c - cap, b), (c + cap, b)]);
                }
            }
            if v > rhi {
                off.push((c, true));
            } else if v < rlo {
                off.push((c, false));
            } else {
                dots.push((c, v));
            }
        }
        let style = rgb(GEN).stroke_width(upx(1.3));
        chart
            .draw_series(bars.into_iter().map(|p| PathElement::new(p, style)))
            .map_err(err)?;
        chart
            .draw_series(
                dots.into_iter()
                    .map(|p| Circle::new(p, upx(2.6), rgb(GEN).filled())),
            )
            .map_err(err)?;
        let dy = (rhi - rlo) * 0.05;
        let dx = (hi - lo) * 0.006;
        chart
            .draw_series(off.into_iter().map(|(c, up)| {
                let (tip, base) = if up { (rhi, rhi - dy) } else { (rlo, rlo + dy) };
                Polygon::new(
                    vec![(c, tip), (c - dx, base), (c + dx, base)],
                    rgb(GEN).filled(),
                )
            }))
            .map_err(err)?;
        close_frame(&mut chart, &x_axis, &r_axis, path)?;
        Ok(())
    })
}

/// 12345 → "12,345".
fn thousands(v: f64) -> String {
    let s = format!("{}", v.round() as u64);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
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
            "Relative jet mass  m / pT,jet",
            relative_masses(real),
            relative_masses(gen),
            auto(50, false),
        ),
        (
            "jet_pt.png",
            "Jet pT",
            "Relative jet pT  (Σ pT,rel of the constituents)",
            jet_pt(real),
            jet_pt(gen),
            auto(50, false),
        ),
        (
            "multiplicity.png",
            "Particle multiplicity",
            "Number of particles per jet",
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
            "Particle η_rel  (η − η_jet)",
            feature(real, 0),
            feature(gen, 0),
            auto(60, false),
        ),
        (
            "particle_phi_rel.png",
            "Particle φ_rel",
            "Particle φ_rel  (φ − φ_jet, rad)",
            feature(real, 1),
            feature(gen, 1),
            auto(60, false),
        ),
        (
            "particle_pt_rel.png",
            "Particle pT_rel",
            "Particle pT_rel  (pT / pT,jet)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_errors_propagate_both_poisson_counts() {
        // real 100 / 200 entries in two bins, gen 50 / 50: totals 300 and 100
        let r = ratios(&[100.0, 200.0], &[50.0, 50.0]);
        let (v, lo, hi) = r[0].unwrap();
        assert!((v - 1.5).abs() < 1e-12); // (50/100) / (100/300)
        let want = 1.5 * (1.0f64 / 50.0 + 1.0 / 100.0).sqrt();
        assert!((lo - want).abs() < 1e-12 && (hi - want).abs() < 1e-12);
        // an empty generated bin: R = 0, upper error from 1.84 events
        let r = ratios(&[10.0, 10.0], &[0.0, 20.0]);
        assert_eq!(
            r[0],
            Some((0.0, 0.0, ZERO_COUNT_UPPER * 20.0 / (20.0 * 10.0)))
        );
        // an empty real bin: no ratio
        assert_eq!(ratios(&[0.0, 5.0], &[3.0, 5.0])[0], None);
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
