//! Line and scatter plots of several series, linear or logarithmic on either axis, with a
//! legend.

use std::path::Path;

use plotters::element::{Circle, PathElement};
use plotters::prelude::Color;

use super::frame::{close_frame, legend, legend_line, panel, Axis, LegendPos, PanelSpec, Scale};
use super::quantile;
use super::render::{draw_error, render_png};
use super::style::{font, px, rgb, upx, Rgb, BLACK, TITLE};
use crate::error::{Error, Result};

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Style {
    /// Points joined in order.
    #[default]
    Line,
    /// Points joined in order, dashed.
    Dashed,
    /// Markers only (a scatter plot).
    Markers,
    /// Line and markers.
    LineMarkers,
}

/// One series: (x, y) points, a legend label (empty: no legend entry), colour and style.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: Rgb,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A line through `points`.
    pub fn line(label: impl Into<String>, color: Rgb, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            color,
            style: Style::Line,
            points,
        }
    }
    /// Markers at `points` (scatter).
    pub fn markers(label: impl Into<String>, color: Rgb, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            color,
            style: Style::Markers,
            points,
        }
    }
    /// The same series drawn in `style`.
    pub fn with_style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }
}

/// Titles, scales and (optional) ranges of an [`xy_plot`].
#[derive(Clone, Debug, Default)]
pub struct XyPlot {
    pub title: String,
    /// Axis titles, with units, e.g. "Training step" and "Loss (NLL per jet)".
    pub xlabel: String,
    pub ylabel: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Data ranges; `None`: from the finite (and, on a log axis, positive) points.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    pub legend: LegendPos,
}

/// The points of `series` that a plot with these scales can show.
fn shown(points: &[(f64, f64)], xs: Scale, ys: Scale) -> impl Iterator<Item = (f64, f64)> + '_ {
    let ok = |v: f64, s: Scale| v.is_finite() && (s == Scale::Linear || v > 0.0);
    points
        .iter()
        .copied()
        .filter(move |&(x, y)| ok(x, xs) && ok(y, ys))
}

/// The range of the shown values, padded by `pad` of the span on a linear axis.
fn span(vals: impl Iterator<Item = f64>, scale: Scale, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return None;
    }
    Some(match scale {
        Scale::Linear => {
            let p = (hi - lo) * pad;
            (lo - p, hi + p)
        }
        Scale::Log => (lo, hi),
    })
}

/// One PNG with every series of `series` on shared axes. Non-finite points (and, on a log
/// axis, non-positive ones) are left out; an error if no point of any series is left.
pub fn xy_plot(path: &Path, plot: &XyPlot, series: &[Series]) -> Result<()> {
    let (xs, ys) = (plot.x_scale, plot.y_scale);
    let all = || series.iter().flat_map(|s| shown(&s.points, xs, ys));
    let nothing = || Error::invalid(format!("{}: nothing to plot", path.display()));
    let (x0, x1) = match plot.x_range {
        Some(r) => r,
        None => span(all().map(|p| p.0), xs, 0.0).ok_or_else(nothing)?,
    };
    let (y0, y1) = match plot.y_range {
        Some(r) => r,
        None => span(all().map(|p| p.1), ys, 0.06).ok_or_else(nothing)?,
    };
    let x_axis = Axis::new(xs, x0, x1, "x")?;
    let y_axis = Axis::new(ys, y0, y1, "y")?;
    render_png(path, 900, 640, |root| {
        let err = |e| draw_error(path, e);
        let (head, body) = root.split_vertically(px(44.0));
        draw_title(&head, &plot.title, path)?;
        let spec = PanelSpec {
            x: &x_axis,
            y: &y_axis,
            xlabel: Some(&plot.xlabel),
            y_tick_labels: true,
            ylabel: &plot.ylabel,
            left: 92.0,
            bottom: 62.0,
            top: 4.0,
            right: 28.0,
        };
        let mut chart = panel(&body, path, &spec)?;
        let (xr, yr) = ((x_axis.lo, x_axis.hi), (y_axis.lo, y_axis.hi));
        let inside = |&(x, y): &(f64, f64)| x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1;
        for s in series {
            let pts: Vec<(f64, f64)> = shown(&s.points, xs, ys)
                .map(|(x, y)| (x_axis.t(x), y_axis.t(y)))
                .collect();
            let color = rgb(s.color);
            let labelled = !s.label.is_empty();
            let line = matches!(s.style, Style::Line | Style::LineMarkers | Style::Dashed);
            let markers = matches!(s.style, Style::Markers | Style::LineMarkers);
            // lines are clipped to the panel by plotters; markers outside are dropped
            if line {
                let style = color.stroke_width(upx(2.0));
                let anno = if s.style == Style::Dashed {
                    chart
                        .draw_series(
                            dashes(&pts, (xr.1 - xr.0) / 90.0, (yr.1 - yr.0) / 60.0)
                                .map(|seg| PathElement::new(seg, style)),
                        )
                        .map_err(err)?
                } else {
                    chart
                        .draw_series(std::iter::once(PathElement::new(pts.clone(), style)))
                        .map_err(err)?
                };
                if labelled && !markers {
                    anno.label(&s.label).legend(legend_line(s.color, 2.0));
                }
            }
            if markers {
                let anno = chart
                    .draw_series(
                        pts.iter()
                            .copied()
                            .filter(inside)
                            .map(|p| Circle::new(p, upx(3.0), color.mix(0.75).filled())),
                    )
                    .map_err(err)?;
                if labelled {
                    let c = s.color;
                    anno.label(&s.label).legend(move |(x, y)| {
                        Circle::new((x + px(13.0), y), upx(4.0), rgb(c).filled())
                    });
                }
            }
        }
        close_frame(&mut chart, &x_axis, &y_axis, path)?;
        if series.iter().any(|s| !s.label.is_empty()) {
            legend(&mut chart, plot.legend, path)?;
        }
        Ok(())
    })
}

/// The polyline `pts` cut into dashes of about `len` (in panel units, x and y scaled by
/// `sx`, `sy` to make the length isotropic), every other one kept.
fn dashes(pts: &[(f64, f64)], sx: f64, sy: f64) -> impl Iterator<Item = Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let (mut on, mut left, mut cur) = (true, 1.0, Vec::new());
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let d = (((b.0 - a.0) / sx).powi(2) + ((b.1 - a.1) / sy).powi(2)).sqrt();
        let mut t = 0.0;
        if on && cur.is_empty() {
            cur.push(a);
        }
        while d > 0.0 && d - t > left {
            t += left;
            let p = (a.0 + (b.0 - a.0) * t / d, a.1 + (b.1 - a.1) * t / d);
            if on {
                cur.push(p);
                out.push(std::mem::take(&mut cur));
            } else {
                cur = vec![p];
            }
            on = !on;
            left = 1.0;
        }
        left -= d - t;
        if on {
            cur.push(b);
        }
    }
    if cur.len() > 1 {
        out.push(cur);
    }
    out.into_iter()
}

/// The figure title, centred in `head`.
pub(crate) fn draw_title(head: &super::render::Area, title: &str, path: &Path) -> Result<()> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let (w, _) = head.dim_in_pixel();
    head.draw_text(
        title,
        &font(TITLE, BLACK).pos(Pos::new(HPos::Center, VPos::Center)),
        (w as i32 / 2, px(26.0)),
    )
    .map_err(|e| draw_error(path, e))
}

/// A line plot of several series (e.g. training and validation NLL against step). The y
/// range is robust to the huge first steps of a fresh model (up to the 97 % quantile).
pub fn line_plot(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(&str, Rgb, Vec<(f64, f64)>)],
) -> Result<()> {
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().filter(|p| p.0.is_finite()).map(|p| p.1))
        .collect();
    let (Some(ylo), Some(yhi)) = (quantile(&ys, 0.0), quantile(&ys, 0.97)) else {
        return Err(Error::invalid(format!(
            "{}: nothing to plot",
            path.display()
        )));
    };
    let pad = ((yhi - ylo) * 0.08).max(1e-9);
    let plot = XyPlot {
        title: title.into(),
        xlabel: xlabel.into(),
        ylabel: ylabel.into(),
        y_range: Some((ylo - pad, yhi + pad)),
        ..Default::default()
    };
    let series: Vec<Series> = series
        .iter()
        .map(|(label, color, pts)| Series::line(*label, *color, pts.clone()))
        .collect();
    xy_plot(path, &plot, &series)
}
