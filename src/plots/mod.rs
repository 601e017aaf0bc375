//! PNG plots a physicist would rather look at than read, drawn with plotters (bitmap
//! backend, the embedded DejaVu Sans registered at first use: no system fonts needed),
//! supersampled and written atomically:
//!
//! - [`compare_histograms`] / [`comparison_plots`]: real vs generated distributions (jet
//!   mass, jet pT, multiplicity, particle η_rel/φ_rel/pT_rel) with a ratio panel carrying
//!   propagated Poisson error bars;
//! - [`xy_plot`] / [`line_plot`]: line and scatter plots of several series with a legend,
//!   linear or log axes (training curves, scans);
//! - [`roc_plot`] with [`Roc`]: classifier ROC curves as ε_S vs 1/ε_B with the AUC;
//! - [`heatmaps`] / [`jet_images`] with [`Hist2d`], [`average_jet_image`]: 2-D histograms
//!   with a colour bar, e.g. average jet images.

pub mod chart;
mod frame;
mod hist;
mod image;
mod render;
mod roc;
pub mod style;
mod xy;

pub use frame::{LegendPos, Scale};
pub use hist::{compare_histograms, comparison_plots, counts, density, Binning};
pub use image::{average_jet_image, heatmap, heatmaps, jet_images, Heatmap, Hist2d};
pub use roc::{roc_plot, Roc};
pub use style::Rgb;
pub use xy::{line_plot, xy_plot, Series, Style, XyPlot};

/// The `q` quantile of the finite values (nearest rank), `None` if there is none.
pub(crate) fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[((v.len() - 1) as f64 * q).round() as usize])
}
