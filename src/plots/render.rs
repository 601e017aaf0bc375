//! Drawing into memory and writing the PNG: plotters' bitmap backend on an RGB buffer at
//! [`SUPERSAMPLE`]× the output size, a box filter down to the output size, PNG encoding and
//! an atomic write (a failed plot never leaves a half-written file).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, IntoDrawingArea, WHITE};

use super::style::{register_font, SUPERSAMPLE};
use crate::error::{Error, Result};

/// The drawing area every plot draws on.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// A plotters error as ours, naming the file being drawn.
pub(crate) fn draw_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("cannot draw the plot: {e}"))
}

/// Draws a `w × h` (output pixels) figure with `draw` and writes it to `path` as PNG.
pub(crate) fn render_png(
    path: &Path,
    w: u32,
    h: u32,
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    register_font()?;
    let (dw, dh) = (w * SUPERSAMPLE, h * SUPERSAMPLE);
    let mut big = vec![255u8; (dw * dh * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut big, (dw, dh)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(path, e))?;
        draw(&root)?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    let pixels = downsample(&big, dw as usize, dh as usize, SUPERSAMPLE as usize);
    write_png(path, w, h, &pixels)
}

/// The mean of each `s × s` block of an RGB image `w × h` (w, h multiples of s).
fn downsample(rgb: &[u8], w: usize, h: usize, s: usize) -> Vec<u8> {
    let (ow, oh) = (w / s, h / s);
    let mut out = vec![0u8; ow * oh * 3];
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..3 {
                let mut sum = 0u32;
                for dy in 0..s {
                    let row = (oy * s + dy) * w;
                    for dx in 0..s {
                        sum += rgb[(row + ox * s + dx) * 3 + ch] as u32;
                    }
                }
                out[(oy * ow + ox) * 3 + ch] = ((sum + (s * s / 2) as u32) / (s * s) as u32) as u8;
            }
        }
    }
    out
}

/// 8-bit RGB PNG of `pixels` (`w × h`, row-major), written atomically.
fn write_png(path: &Path, w: u32, h: u32, pixels: &[u8]) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::file(path, e.to_string()))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| Error::file(path, e.to_string()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e.to_string()))?;
    }
    crate::nn::store::write_atomic(path, &bytes)
}
