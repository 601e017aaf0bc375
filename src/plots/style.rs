//! Colours, the embedded font and the sizes every plot shares.
//!
//! Sizes are given in output pixels; plots are drawn at [`SUPERSAMPLE`]× that resolution and
//! averaged down (anti-aliased lines and text), so every size goes through [`px`] or
//! [`font`] on its way to plotters.

use std::sync::OnceLock;

use plotters::style::{Color, FontStyle, RGBColor, TextStyle};

use crate::error::{Error, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

pub const BLACK: Rgb = [0, 0, 0];
pub const GREY: Rgb = [120, 120, 120];
/// The real (reference) sample.
pub const REAL: Rgb = [70, 110, 180];
/// The generated sample.
pub const GEN: Rgb = [215, 60, 40];

/// Colours for further series, in order (Okabe–Ito, distinguishable with colour blindness;
/// the first two are [`REAL`] and [`GEN`]).
pub const PALETTE: [Rgb; 8] = [
    REAL,
    GEN,
    [0, 158, 115],
    [230, 159, 0],
    [204, 121, 167],
    [86, 180, 233],
    [120, 80, 40],
    [40, 40, 40],
];

/// Drawing resolution over output resolution.
pub const SUPERSAMPLE: u32 = 2;

/// The font family every text uses (the embedded DejaVu Sans, registered under this name).
pub(crate) const FAMILY: &str = "sans-serif";

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/LICENSE), compiled in.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font with plotters (once per process; every plot calls this first,
/// so no system font is ever looked up).
pub(crate) fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("the embedded plot font could not be loaded"))
    }
}

/// `v` output pixels in drawing pixels.
pub(crate) fn px(v: f64) -> i32 {
    (v * SUPERSAMPLE as f64).round() as i32
}

/// `v` output pixels in drawing pixels, at least 1.
pub(crate) fn upx(v: f64) -> u32 {
    px(v).max(1) as u32
}

/// The embedded font at `size` output pixels, in `color`.
pub(crate) fn font(size: f64, color: Rgb) -> TextStyle<'static> {
    TextStyle {
        color: rgb(color).to_backend_color(),
        ..TextStyle::from((FAMILY, size * SUPERSAMPLE as f64))
    }
}

/// A plotters colour.
pub(crate) fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Text sizes (output pixels): title, axis titles, tick labels, legend.
pub(crate) const TITLE: f64 = 20.0;
pub(crate) const AXIS_TITLE: f64 = 17.0;
pub(crate) const TICK_LABEL: f64 = 15.0;
pub(crate) const LEGEND: f64 = 15.0;
