//! 2-D histograms as colour maps with a colour bar, e.g. average jet images: the mean pT
//! fraction per (η_rel, φ_rel) pixel over many jets.

use std::path::Path;

use plotters::element::Rectangle;
use plotters::prelude::{ChartBuilder, Color, WHITE};
use plotters::style::colors::colormaps::ViridisRGB;

use super::frame::{close_frame, panel, vertical_text, Axis, PanelSpec, Scale};
use super::render::{draw_error, render_png};
use super::style::{font, px, rgb, upx, AXIS_TITLE, BLACK, TICK_LABEL};
use super::xy::draw_title;
use crate::data::JetNetData;
use crate::error::{Error, Result};

/// A 2-D histogram: `nx × ny` equal bins over [x0, x1] × [y0, y1], `values[iy·nx + ix]`
/// (row 0 at the lowest y).
#[derive(Clone, Debug, PartialEq)]
pub struct Hist2d {
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub nx: usize,
    pub ny: usize,
    pub values: Vec<f64>,
}

impl Hist2d {
    /// An empty histogram; an error for no bins or an empty or non-finite range.
    pub fn new(x: (f64, f64), y: (f64, f64), nx: usize, ny: usize) -> Result<Hist2d> {
        let ok = |r: (f64, f64)| r.0.is_finite() && r.1.is_finite() && r.1 > r.0;
        if nx == 0 || ny == 0 || !ok(x) || !ok(y) {
            return Err(Error::invalid(format!(
                "2-D histogram needs bins and ranges, got {nx} × {ny} bins over {x:?} × {y:?}"
            )));
        }
        Ok(Hist2d {
            x,
            y,
            nx,
            ny,
            values: vec![0.0; nx * ny],
        })
    }

    /// Adds `w` at (x, y); points outside the range (or not finite) are ignored. Returns
    /// whether the point was inside.
    pub fn fill(&mut self, x: f64, y: f64, w: f64) -> bool {
        let bin = |v: f64, (lo, hi): (f64, f64), n: usize| {
            if v.is_finite() && v >= lo && v <= hi {
                Some((((v - lo) / (hi - lo) * n as f64) as usize).min(n - 1))
            } else {
                None
            }
        };
        match (bin(x, self.x, self.nx), bin(y, self.y, self.ny)) {
            (Some(ix), Some(iy)) => {
                self.values[iy * self.nx + ix] += w;
                true
            }
            _ => false,
        }
    }
}

/// The average jet image of `data`: Σ pT_rel per (η_rel, φ_rel) pixel on a `bins × bins`
/// grid over [−half_width, half_width]², divided by the number of jets (so a pixel is the
/// mean pT fraction it holds). Masked particles are skipped.
pub fn average_jet_image(data: &JetNetData, bins: usize, half_width: f64) -> Result<Hist2d> {
    let r = (-half_width, half_width);
    let mut h = Hist2d::new(r, r, bins, bins)?;
    let jets = data.particles.len() / (data.n_particles * 4).max(1);
    if jets == 0 {
        return Err(Error::invalid("average jet image of no jets"));
    }
    for p in data.particles.chunks_exact(4) {
        if p[3] > 0.0 || p[2] != 0.0 {
            h.fill(p[0] as f64, p[1] as f64, p[2] as f64);
        }
    }
    h.values.iter_mut().for_each(|v| *v /= jets as f64);
    Ok(h)
}

/// Decades a log colour scale spans at most.
const LOG_DECADES: i32 = 4;

/// Titles and colour scale of [`heatmaps`].
#[derive(Clone, Debug, Default)]
pub struct Heatmap {
    pub title: String,
    pub xlabel: String,
    pub ylabel: String,
    /// The colour bar's title (what a pixel holds, with units).
    pub zlabel: String,
    /// Logarithmic colours (empty pixels stay white).
    pub log_z: bool,
}

/// One PNG with the histograms of `panels` (panel title, histogram) side by side on one
/// shared colour scale, and its colour bar on the right.
pub fn heatmaps(path: &Path, spec: &Heatmap, panels: &[(&str, &Hist2d)]) -> Result<()> {
    if panels.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no histogram to draw",
            path.display()
        )));
    }
    let values = || panels.iter().flat_map(|p| p.1.values.iter().copied());
    if let Some(bad) = values().find(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{}: histogram value {bad} is not finite",
            path.display()
        )));
    }
    let max = values().fold(0f64, f64::max);
    let z = if spec.log_z {
        // at most LOG_DECADES decades below the maximum: lower values take the lowest colour
        let min = values()
            .filter(|v| *v > 0.0)
            .fold(max, f64::min)
            .max(max * 10f64.powi(-LOG_DECADES));
        if max <= 0.0 {
            return Err(Error::invalid(format!(
                "{}: a log colour scale needs a positive value",
                path.display()
            )));
        }
        Axis::new(Scale::Log, min, max, "colour")?
    } else {
        Axis::new(Scale::Linear, 0.0, max.max(1e-300), "colour")?
    };
    let colour_of = |v: f64| -> Option<plotters::style::RGBColor> {
        if spec.log_z && v <= 0.0 {
            return None;
        }
        let t = z.t(v);
        let h = ((t - z.lo) / (z.hi - z.lo)).clamp(0.0, 1.0) as f32;
        Some(ViridisRGB::get_color(h))
    };
    let n = panels.len() as u32;
    let (side, left, bar) = (430u32, 84u32, 150u32);
    let width = left + n * side + bar;
    render_png(path, width, 44 + side + 20, |root| {
        let err = |e| draw_error(path, e);
        let (head, body) = root.split_vertically(px(44.0));
        draw_title(&head, &spec.title, path)?;
        let (maps, colour_bar) = body.split_horizontally(px((left + n * side) as f64));
        let mut rest = maps;
        for (k, (name, h)) in panels.iter().enumerate() {
            let first = k == 0;
            let w = if first { left + side } else { side };
            let (area, next) = rest.split_horizontally(px(w as f64));
            rest = next;
            let x_axis = Axis::new(Scale::Linear, h.x.0, h.x.1, "x")?;
            let y_axis = Axis::new(Scale::Linear, h.y.0, h.y.1, "y")?;
            let spec_p = PanelSpec {
                x: &x_axis,
                y: &y_axis,
                xlabel: Some(&spec.xlabel),
                y_tick_labels: first,
                ylabel: if first { &spec.ylabel } else { "" },
                left: if first { left as f64 } else { 24.0 },
                bottom: 62.0,
                top: 30.0,
                right: 12.0,
            };
            let mut chart = panel(&area, path, &spec_p)?;
            let (dx, dy) = ((h.x.1 - h.x.0) / h.nx as f64, (h.y.1 - h.y.0) / h.ny as f64);
            chart
                .draw_series(
                    (0..h.ny)
                        .flat_map(|iy| (0..h.nx).map(move |ix| (ix, iy)))
                        .map(|(ix, iy)| {
                            let (x0, y0) = (h.x.0 + ix as f64 * dx, h.y.0 + iy as f64 * dy);
                            let c = colour_of(h.values[iy * h.nx + ix]);
                            let style = c.map_or(WHITE.filled(), |c| c.filled());
                            Rectangle::new([(x0, y0), (x0 + dx, y0 + dy)], style)
                        }),
                )
                .map_err(err)?;
            close_frame(&mut chart, &x_axis, &y_axis, path)?;
            let (aw, _) = area.dim_in_pixel();
            let centre = (aw as i32 + px(spec_p.left) - px(spec_p.right)) / 2;
            use plotters::style::text_anchor::{HPos, Pos, VPos};
            area.draw_text(
                name,
                &font(AXIS_TITLE, BLACK).pos(Pos::new(HPos::Center, VPos::Center)),
                (centre, px(14.0)),
            )
            .map_err(err)?;
        }
        // the colour bar: the colour scale as 256 strips on the z axis
        let strip = Axis::new(Scale::Linear, 0.0, 1.0, "bar")?;
        let mut chart = ChartBuilder::on(&colour_bar)
            .margin_top(px(30.0))
            .margin_bottom(px(62.0))
            .margin_left(px(20.0))
            .right_y_label_area_size(px(bar as f64 - 56.0))
            .build_cartesian_2d(strip.lo..strip.hi, z.coord())
            .map_err(err)?;
        let zfmt = |t: &f64| z.label(*t);
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .axis_style(rgb(BLACK).stroke_width(upx(1.2)))
            .set_all_tick_mark_size(px(5.0))
            .label_style(font(TICK_LABEL, BLACK))
            .y_label_formatter(&zfmt)
            .draw()
            .map_err(err)?;
        let steps = 256;
        chart
            .draw_series((0..steps).map(|k| {
                let (a, b) = (
                    z.lo + (z.hi - z.lo) * k as f64 / steps as f64,
                    z.lo + (z.hi - z.lo) * (k + 1) as f64 / steps as f64,
                );
                let h = ((k as f64 + 0.5) / steps as f64) as f32;
                Rectangle::new([(0.0, a), (1.0, b)], ViridisRGB::get_color(h).filled())
            }))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, z.lo), (1.0, z.hi)],
                rgb(BLACK).stroke_width(upx(1.2)),
            )))
            .map_err(err)?;
        let (_, rows) = chart.plotting_area().get_pixel_range();
        let (_, y0) = colour_bar.get_base_pixel();
        let (bw, _) = colour_bar.dim_in_pixel();
        let centre = (rows.start + rows.end) / 2 - y0;
        let x = bw as i32 - px(4.0 + AXIS_TITLE * 0.6);
        vertical_text(&colour_bar, &spec.zlabel, x, centre, false, path)?;
        Ok(())
    })
}

/// One PNG of a single 2-D histogram with its colour bar (see [`heatmaps`]).
pub fn heatmap(path: &Path, spec: &Heatmap, hist: &Hist2d) -> Result<()> {
    heatmaps(path, spec, &[("", hist)])
}

/// Real and generated average jet images side by side on one log colour scale, `bins ×
/// bins` pixels over |η_rel|, |φ_rel| ≤ `half_width`.
pub fn jet_images(
    path: &Path,
    real: &JetNetData,
    gen: &JetNetData,
    bins: usize,
    half_width: f64,
) -> Result<()> {
    let (r, g) = (
        average_jet_image(real, bins, half_width)?,
        average_jet_image(gen, bins, half_width)?,
    );
    let spec = Heatmap {
        title: "Average jet image".into(),
        xlabel: "η_rel".into(),
        ylabel: "φ_rel (rad)".into(),
        zlabel: "Mean pT fraction per pixel".into(),
        log_z: true,
    };
    heatmaps(path, &spec, &[("Real", &r), ("Generated", &g)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_bins_points_and_skips_outside() {
        let mut h = Hist2d::new((0.0, 1.0), (0.0, 2.0), 2, 2).unwrap();
        assert!(h.fill(0.25, 1.5, 2.0));
        assert!(h.fill(1.0, 0.0, 1.0)); // upper edge: last bin
        assert!(!h.fill(1.5, 0.5, 1.0));
        assert!(!h.fill(f64::NAN, 0.5, 1.0));
        assert_eq!(h.values, [0.0, 1.0, 2.0, 0.0]);
        assert!(Hist2d::new((0.0, 0.0), (0.0, 1.0), 2, 2).is_err());
        assert!(Hist2d::new((0.0, 1.0), (0.0, 1.0), 0, 2).is_err());
    }
}
