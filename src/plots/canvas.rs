//! A tiny RGB raster canvas: filled rectangles, anti-aliased-free thick lines, text rendered
//! with the embedded DejaVu Sans (ab_glyph), PNG encoding (png). Pure Rust and
//! self-contained, so plots render identically on a machine without system fonts.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};

use crate::error::{Error, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/LICENSE), compiled in.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Where a text's anchor point sits relative to the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Left,
    Center,
    Right,
}

/// A `w × h` RGB image, row-major from the top-left corner.
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            pixels: vec![255; w * h * 3],
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return;
        }
        let k = (y as usize * self.w + x as usize) * 3;
        for (p, &ch) in self.pixels[k..k + 3].iter_mut().zip(&c) {
            *p = (*p as f32 * (1.0 - alpha) + ch as f32 * alpha).round() as u8;
        }
    }

    /// Fills the rectangle [x0, x1) × [y0, y1) (clipped), blending with opacity `alpha`.
    pub fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb, alpha: f32) {
        let (xa, xb) = (x0.min(x1).round() as i64, x0.max(x1).round() as i64);
        let (ya, yb) = (y0.min(y1).round() as i64, y0.max(y1).round() as i64);
        for y in ya.max(0)..yb.min(self.h as i64) {
            for x in xa.max(0)..xb.min(self.w as i64) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    /// A straight line of the given width in pixels.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64, c: Rgb) {
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return;
        }
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).clamp(1, 20_000);
        let r = (width / 2.0).max(0.5);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            self.fill_rect(x - r + 0.5, y - r + 0.5, x + r + 0.5, y + r + 0.5, c, 1.0);
        }
    }

    /// A dashed horizontal line.
    pub fn dashed_hline(&mut self, x0: f64, x1: f64, y: f64, c: Rgb) {
        let mut x = x0;
        while x < x1 {
            self.line(x, y, (x + 6.0).min(x1), y, 1.0, c);
            x += 10.0;
        }
    }

    /// Width in pixels of `text` at `size` px.
    pub fn text_width(&self, text: &str, size: f32) -> f64 {
        let Some(f) = font() else { return 0.0 };
        let sf = f.as_scaled(PxScale::from(size));
        text.chars()
            .map(|ch| sf.h_advance(f.glyph_id(ch)) as f64)
            .sum()
    }

    /// Draws `text` with its baseline at y, anchored at x; `vertical` rotates it by 90°
    /// counter-clockwise (for y-axis labels; then x is the baseline and y the anchor).
    pub fn text(
        &mut self,
        text: &str,
        x: f64,
        y: f64,
        size: f32,
        c: Rgb,
        anchor: Anchor,
        vertical: bool,
    ) {
        let Some(f) = font() else { return };
        let scale = PxScale::from(size);
        let sf = f.as_scaled(scale);
        let width = self.text_width(text, size);
        let shift = match anchor {
            Anchor::Left => 0.0,
            Anchor::Center => width / 2.0,
            Anchor::Right => width,
        };
        let mut pen = 0.0f32;
        for ch in text.chars() {
            let id = f.glyph_id(ch);
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(pen, 0.0));
            pen += sf.h_advance(id);
            let Some(outlined) = f.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, cov| {
                if cov <= 0.01 {
                    return;
                }
                // glyph pixel (u along the text, v below the baseline)
                let u = bounds.min.x as f64 + gx as f64 - shift;
                let v = bounds.min.y as f64 + gy as f64;
                let (px, py) = if vertical {
                    (x + v, y - u)
                } else {
                    (x + u, y + v)
                };
                self.blend(px.round() as i64, py.round() as i64, c, cov.min(1.0));
            });
        }
    }

    /// Encodes as PNG and writes it atomically (temporary file + rename).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.w as u32, self.h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| Error::file(path, e.to_string()))?;
            writer
                .write_image_data(&self.pixels)
                .map_err(|e| Error::file(path, e.to_string()))?;
        }
        crate::nn::store::write_atomic(path, &bytes)
    }
}
