//! Axes on a [`Canvas`]: a data rectangle mapped onto a pixel rectangle, "nice" 1-2-5 ticks,
//! frame, tick labels and axis titles; linear or logarithmic y.

use super::canvas::{Anchor, Canvas, Rgb};

pub const BLACK: Rgb = [0, 0, 0];
pub const GREY: Rgb = [120, 120, 120];
pub const REAL: Rgb = [70, 110, 180];
pub const GEN: Rgb = [215, 60, 40];

/// Ticks at multiples of 1, 2 or 5 × 10^k covering [lo, hi] with about `target` steps.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick label with as many decimals as the step needs.
pub fn tick_label(v: f64, step: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        return format!("{v:.0e}");
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

/// A plotting area: data ranges [x0, x1] × [y0, y1] on the pixel box (left, top, right,
/// bottom); with `log_y` the y range is in log10 units.
pub struct Axes {
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    pub log_y: bool,
}

impl Axes {
    /// Pixel x of data x.
    pub fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left)
    }

    /// Pixel y of data y (clamped to the box; ≤ 0 maps to the bottom on a log axis).
    pub fn py(&self, y: f64) -> f64 {
        let v = if self.log_y {
            if y > 0.0 {
                y.log10()
            } else {
                self.y0
            }
        } else {
            y
        };
        let t = ((v - self.y0) / (self.y1 - self.y0)).clamp(-0.02, 1.02);
        self.bottom - t * (self.bottom - self.top)
    }

    /// Frame, ticks and tick labels; `x_labels` false hides the x tick labels (upper panel).
    pub fn draw_frame(&self, c: &mut Canvas, x_labels: bool, y_ticks: usize) {
        c.line(self.left, self.top, self.right, self.top, 1.0, BLACK);
        c.line(self.left, self.bottom, self.right, self.bottom, 1.0, BLACK);
        c.line(self.left, self.top, self.left, self.bottom, 1.0, BLACK);
        c.line(self.right, self.top, self.right, self.bottom, 1.0, BLACK);
        let xt = nice_ticks(self.x0, self.x1, 6);
        let xstep = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
        for &t in &xt {
            let x = self.px(t);
            c.line(x, self.bottom, x, self.bottom - 6.0, 1.0, BLACK);
            if x_labels {
                c.text(
                    &tick_label(t, xstep),
                    x,
                    self.bottom + 18.0,
                    13.0,
                    BLACK,
                    Anchor::Center,
                    false,
                );
            }
        }
        let yt = nice_ticks(self.y0, self.y1, y_ticks);
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
        for &t in &yt {
            let y = self.bottom - (t - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top);
            c.line(self.left, y, self.left + 6.0, y, 1.0, BLACK);
            let label = if self.log_y {
                if (t - t.round()).abs() > 1e-9 {
                    continue;
                }
                format!("1e{}", t.round() as i64)
            } else {
                tick_label(t, ystep)
            };
            c.text(
                &label,
                self.left - 6.0,
                y + 5.0,
                13.0,
                BLACK,
                Anchor::Right,
                false,
            );
        }
    }

    /// A step histogram outline of `counts` over equal bins spanning [x0, x1].
    pub fn step(&self, c: &mut Canvas, counts: &[f64], color: Rgb, width: f64) {
        let w = (self.x1 - self.x0) / counts.len() as f64;
        let mut prev_y = self.py(0.0).min(self.bottom);
        for (k, &v) in counts.iter().enumerate() {
            let (xa, xb) = (
                self.px(self.x0 + k as f64 * w),
                self.px(self.x0 + (k + 1) as f64 * w),
            );
            let y = self.py(v);
            c.line(xa, prev_y, xa, y, width, color);
            c.line(xa, y, xb, y, width, color);
            prev_y = y;
        }
        c.line(
            self.right,
            prev_y,
            self.right,
            self.py(0.0).min(self.bottom),
            width,
            color,
        );
    }

    /// Filled bars of `counts` over equal bins spanning [x0, x1].
    pub fn bars(&self, c: &mut Canvas, counts: &[f64], color: Rgb, alpha: f32) {
        let w = (self.x1 - self.x0) / counts.len() as f64;
        for (k, &v) in counts.iter().enumerate() {
            if v <= 0.0 {
                continue;
            }
            let (xa, xb) = (
                self.px(self.x0 + k as f64 * w),
                self.px(self.x0 + (k + 1) as f64 * w),
            );
            c.fill_rect(xa, self.py(v), xb, self.bottom, color, alpha);
        }
    }

    /// A polyline through (x, y) points, with square markers when there are few points.
    pub fn polyline(&self, c: &mut Canvas, pts: &[(f64, f64)], color: Rgb, width: f64) {
        for w in pts.windows(2) {
            c.line(
                self.px(w[0].0),
                self.py(w[0].1),
                self.px(w[1].0),
                self.py(w[1].1),
                width,
                color,
            );
        }
        if pts.len() < 60 {
            for &(x, y) in pts {
                let (px, py) = (self.px(x), self.py(y));
                c.fill_rect(px - 3.0, py - 3.0, px + 4.0, py + 4.0, color, 1.0);
            }
        }
    }
}
