//! Axes and panels: a linear or logarithmic axis with readable ticks, and a plotters chart
//! on such axes, with grid, tick labels, axis titles, a closed frame and a legend.
//!
//! A panel's coordinates are the axis values *after* the scale (log₁₀ v on a log axis), so
//! every point goes through [`Axis::t`] on its way in; ticks are placed by us (1-2-5 steps,
//! decades with 2…9 minor lines) and labelled in data units (10ⁿ on log axes).

use std::ops::Range;

use plotters::chart::{ChartContext, SeriesLabelPosition};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::{BitMapBackend, ChartBuilder, Color, Rectangle, WHITE};

use super::render::{draw_error, Area};
use super::style::{font, px, rgb, upx, Rgb, AXIS_TITLE, BLACK, LEGEND, TICK_LABEL};
use crate::error::{Error, Result};

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scale {
    #[default]
    Linear,
    /// log₁₀ (only positive values are shown).
    Log,
}

/// One axis: its scale, range (in transformed units) and ticks.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub scale: Scale,
    /// Range after the scale.
    pub lo: f64,
    pub hi: f64,
    /// Major ticks (labelled) and minor ticks (grid only), after the scale.
    major: Vec<f64>,
    minor: Vec<f64>,
    /// Spacing of the major ticks on a linear axis (sets the decimals of the labels).
    step: f64,
}

impl Axis {
    /// An axis over [lo, hi] in data units; a log axis widens to whole decades. `what` names
    /// the axis in errors.
    pub fn new(scale: Scale, lo: f64, hi: f64, what: &str) -> Result<Axis> {
        let bad = || Error::invalid(format!("plot {what} range [{lo}, {hi}] is not usable"));
        if !(lo.is_finite() && hi.is_finite()) || hi < lo {
            return Err(bad());
        }
        match scale {
            Scale::Linear => {
                let (lo, hi) = if hi > lo {
                    (lo, hi)
                } else {
                    (lo - 0.5 * lo.abs().max(1e-9), hi + 0.5 * hi.abs().max(1e-9))
                };
                let (major, step) = nice_ticks(lo, hi, 6);
                Ok(Axis {
                    scale,
                    lo,
                    hi,
                    major,
                    minor: Vec::new(),
                    step,
                })
            }
            Scale::Log => {
                if lo <= 0.0 {
                    return Err(bad());
                }
                let a = lo.log10().floor();
                let b = hi.log10().ceil().max(a + 1.0);
                let decades = (b - a) as i64;
                let every = (decades / 7 + 1) as usize;
                let major: Vec<f64> = (a as i64..=b as i64)
                    .step_by(every)
                    .map(|k| k as f64)
                    .collect();
                let minor = if decades <= 6 {
                    (a as i64..b as i64)
                        .flat_map(|k| (2..10).map(move |m| k as f64 + (m as f64).log10()))
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(Axis {
                    scale,
                    lo: a,
                    hi: b,
                    major,
                    minor,
                    step: 1.0,
                })
            }
        }
    }

    /// A linear axis over [lo, hi] labelled at exactly `ticks` (e.g. a ratio panel whose
    /// edge labels would collide with the panel above).
    pub fn linear_with_ticks(lo: f64, hi: f64, ticks: &[f64], step: f64) -> Axis {
        Axis {
            scale: Scale::Linear,
            lo,
            hi,
            major: ticks.to_vec(),
            minor: Vec::new(),
            step,
        }
    }

    /// A value in panel coordinates (log₁₀ on a log axis; NaN for v ≤ 0 there).
    pub fn t(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log if v > 0.0 => v.log10(),
            Scale::Log => f64::NAN,
        }
    }

    /// The plotters coordinate of this axis.
    pub fn coord(&self) -> Ticked {
        Ticked {
            lo: self.lo,
            hi: self.hi,
            major: self.major.clone(),
            minor: self.minor.clone(),
        }
    }

    /// The tick label at panel coordinate `t`.
    pub fn label(&self, t: f64) -> String {
        match self.scale {
            Scale::Log => decade_label(t.round() as i32),
            Scale::Linear => linear_label(t, self.step),
        }
    }
}

/// A plotters coordinate over [lo, hi] whose bold (labelled) and light grid points are ours.
#[derive(Clone, Debug)]
pub(crate) struct Ticked {
    lo: f64,
    hi: f64,
    major: Vec<f64>,
    minor: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = ((v - self.lo) / (self.hi - self.lo)).clamp(-10.0, 10.0);
        let f = if f.is_nan() { 0.0 } else { f };
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks at multiples of 1, 2 or 5 × 10^k covering [lo, hi] with about `target` steps, and
/// the step.
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// A linear tick label with as many decimals as the step needs (×10ⁿ for very large or
/// small values).
fn linear_label(v: f64, step: f64) -> String {
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    if v.abs() >= 1e5 || step < 1e-4 {
        let e = v.abs().log10().floor() as i32;
        let m = v / 10f64.powi(e);
        let m = format!("{m:.2}");
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}×{}", decade_label(e));
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil() as usize
    };
    format!("{v:.decimals$}").replace('-', "−")
}

/// 10ⁿ with a superscript exponent.
fn decade_label(n: i32) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut s = String::from("10");
    if n < 0 {
        s.push('⁻');
    }
    for d in n.unsigned_abs().to_string().chars() {
        s.push(SUP[d.to_digit(10).unwrap_or(0) as usize]);
    }
    s
}

/// A plotters chart on two [`Axis`].
pub(crate) type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// Where a panel's labels go and how much room they get (output pixels).
pub(crate) struct PanelSpec<'s> {
    pub x: &'s Axis,
    pub y: &'s Axis,
    /// The x-axis title; `None`: no x tick labels either (a panel above another).
    pub xlabel: Option<&'s str>,
    pub ylabel: &'s str,
    /// Whether the y ticks are labelled (false for a panel beside another on the same y).
    pub y_tick_labels: bool,
    pub left: f64,
    pub bottom: f64,
    pub top: f64,
    pub right: f64,
}

/// A chart on `area` with grid, ticks, tick labels and axis titles drawn.
pub(crate) fn panel<'a, 'b>(
    area: &'a Area<'b>,
    path: &std::path::Path,
    s: &PanelSpec,
) -> Result<Chart<'a, 'b>> {
    let err = |e| draw_error(path, e);
    let bottom = if s.xlabel.is_some() { s.bottom } else { 0.0 };
    let mut chart = ChartBuilder::on(area)
        .margin_top(px(s.top))
        .margin_right(px(s.right))
        .margin_bottom(px(if s.xlabel.is_some() { 0.0 } else { s.bottom }))
        .x_label_area_size(px(bottom))
        .y_label_area_size(px(s.left))
        .build_cartesian_2d(s.x.coord(), s.y.coord())
        .map_err(err)?;
    let (x, y) = (s.x, s.y);
    let xfmt = |t: &f64| x.label(*t);
    let yfmt = |t: &f64| y.label(*t);
    let none = |_: &f64| String::new();
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(rgb([222, 222, 222]).stroke_width(upx(1.0)))
        .light_line_style(rgb([240, 240, 240]).stroke_width(upx(1.0)))
        .axis_style(rgb(BLACK).stroke_width(upx(1.2)))
        .set_all_tick_mark_size(px(5.0))
        .label_style(font(TICK_LABEL, BLACK))
        .axis_desc_style(font(AXIS_TITLE, BLACK));
    if s.y_tick_labels {
        mesh.y_label_formatter(&yfmt);
    } else {
        mesh.y_label_formatter(&none);
    }
    match s.xlabel {
        Some(label) => mesh.x_desc(label).x_label_formatter(&xfmt),
        None => mesh.x_label_formatter(&none),
    };
    mesh.draw().map_err(err)?;
    if !s.ylabel.is_empty() {
        // the y title rotated, centred on the plotting area, at the area's left edge
        let (_, rows) = chart.plotting_area().get_pixel_range();
        let (_, top) = area.get_base_pixel();
        let centre = (rows.start + rows.end) / 2 - top;
        vertical_text(
            area,
            s.ylabel,
            px(4.0 + AXIS_TITLE * 0.6),
            centre,
            true,
            path,
        )?;
    }
    Ok(chart)
}

/// `text` rotated to run bottom-to-top (`up`) or top-to-bottom, centred at (x, y) of `area`.
pub(crate) fn vertical_text(
    area: &Area,
    text: &str,
    x: i32,
    y: i32,
    up: bool,
    path: &std::path::Path,
) -> Result<()> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    use plotters::style::FontTransform;
    let turn = if up {
        FontTransform::Rotate270
    } else {
        FontTransform::Rotate90
    };
    let style = font(AXIS_TITLE, BLACK)
        .transform(turn)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(text, &style, (x, y))
        .map_err(|e| draw_error(path, e))
}

/// The closed black frame around a panel's plotting area (drawn last, over the data).
pub(crate) fn close_frame(
    chart: &mut Chart,
    x: &Axis,
    y: &Axis,
    path: &std::path::Path,
) -> Result<()> {
    let frame = Rectangle::new(
        [(x.lo, y.lo), (x.hi, y.hi)],
        rgb(BLACK).stroke_width(upx(1.2)),
    );
    chart
        .draw_series(std::iter::once(frame))
        .map_err(|e| draw_error(path, e))?;
    Ok(())
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LegendPos {
    #[default]
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
}

/// Draws the legend of the series that were given labels.
pub(crate) fn legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    pos: LegendPos,
    path: &std::path::Path,
) -> Result<()> {
    let position = match pos {
        LegendPos::UpperRight => SeriesLabelPosition::UpperRight,
        LegendPos::UpperLeft => SeriesLabelPosition::UpperLeft,
        LegendPos::LowerRight => SeriesLabelPosition::LowerRight,
        LegendPos::LowerLeft => SeriesLabelPosition::LowerLeft,
    };
    chart
        .configure_series_labels()
        .position(position)
        .margin(px(10.0))
        .legend_area_size(px(34.0))
        .border_style(rgb([170, 170, 170]).stroke_width(upx(1.0)))
        .background_style(WHITE.mix(0.9))
        .label_font(font(LEGEND, BLACK))
        .draw()
        .map_err(|e| draw_error(path, e))
}

/// A short line sample for a legend entry at backend point (x, y).
pub(crate) fn legend_line(
    color: Rgb,
    width: f64,
) -> impl Fn((i32, i32)) -> plotters::element::PathElement<(i32, i32)> {
    move |(x, y)| {
        plotters::element::PathElement::new(
            vec![(x, y), (x + px(26.0), y)],
            rgb(color).stroke_width(upx(width)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels_read_well() {
        let (t, step) = nice_ticks(0.0, 1.0, 6);
        assert_eq!(step, 0.2);
        assert_eq!(t.len(), 6);
        assert_eq!(linear_label(0.6000000001, 0.2), "0.6");
        assert_eq!(linear_label(-2.0, 1.0), "−2");
        assert_eq!(linear_label(2.5e6, 5e5), "2.5×10⁶");
        assert_eq!(decade_label(-3), "10⁻³");
        let log = Axis::new(Scale::Log, 0.003, 0.5, "y").unwrap();
        assert_eq!((log.lo, log.hi), (-3.0, 0.0));
        assert_eq!(log.major, [-3.0, -2.0, -1.0, 0.0]);
        assert_eq!(log.minor.len(), 24);
        assert!(Axis::new(Scale::Log, 0.0, 1.0, "y").is_err());
        assert!(Axis::new(Scale::Linear, f64::NAN, 1.0, "x").is_err());
        let flat = Axis::new(Scale::Linear, 2.0, 2.0, "x").unwrap();
        assert!(flat.lo < 2.0 && flat.hi > 2.0);
    }
}
