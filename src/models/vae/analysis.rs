//! What a VAE run writes besides the shared evaluation: reconstruction quality (JetNet W1
//! metrics of reconstructed vs input jets, the same histograms with ratio panels), the
//! average jet images of input, reconstructed and generated jets side by side, the latent
//! space (a scatter of the two most informative dimensions coloured by jet mass), the KL
//! per latent dimension, and for β schedules the sweep: KL per dimension against β and
//! the dimensionality estimate D = dKL/d log β (Collins, arXiv:2109.10919).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::metrics::{evaluate, EvalConfig, Protocol};
use crate::models::vae::checkpoint::TrainedVae;
use crate::models::vae::data::Clouds;
use crate::models::vae::sampling::{decode, encode, generate_jets, Prior};
use crate::plots::style::PALETTE;
use crate::plots::{Heatmap, LegendPos, Scale, Series, XyPlot};
use crate::runs::RunDir;

/// One validation of a run: its step, β, mean reconstruction loss and KL per dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct BetaPoint {
    pub step: usize,
    pub beta: f64,
    pub recon: f64,
    pub kl_per_dim: Vec<f64>,
}

/// Mean KL per latent dimension of `clouds` under the model (zeros for an AE).
pub fn kl_report(m: &TrainedVae, clouds: &Clouds, device: Device) -> Result<Vec<f64>> {
    let l = m.vae.config.latent;
    let (mu, logvar) = encode(m, clouds, device)?;
    let mut kl = vec![0f64; l];
    if logvar.is_empty() {
        return Ok(kl);
    }
    for (k, (&u, &lv)) in mu.iter().zip(&logvar).enumerate() {
        let (u, lv) = (u as f64, lv as f64);
        kl[k % l] += 0.5 * (u * u + lv.exp() - lv - 1.0);
    }
    let n = (mu.len() / l).max(1) as f64;
    kl.iter_mut().for_each(|v| *v /= n);
    Ok(kl)
}

/// dKL/d log β (= −D, the dimensionality estimate) between consecutive points of a sweep whose β changes, at the
/// geometric mid-point: `(β, D)` pairs.
pub fn dimensionality(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .windows(2)
        .filter(|w| (w[1].0.ln() - w[0].0.ln()).abs() > 1e-9)
        .map(|w| {
            let dlog = w[1].0.ln() - w[0].0.ln();
            ((w[0].0 * w[1].0).sqrt(), (w[1].1 - w[0].1) / dlog)
        })
        .collect()
}

/// Write `analysis.json` and (with `plots`) the VAE plots into the run directory.
#[allow(clippy::too_many_arguments)]
pub fn write_analysis(
    run: &RunDir,
    m: &TrainedVae,
    clouds: &Clouds,
    real: &JetNetData,
    history: &[BetaPoint],
    plots: bool,
    seed: u64,
    device: Device,
) -> Result<()> {
    let (mu, _) = encode(m, clouds, device)?;
    let rows = decode(m, &mu, device)?;
    let recon = m.decoded_jets(&rows)?;
    let gauss = generate_jets(m, real.n_jets, seed ^ 0x5EED, Prior::Gaussian, device)?;
    let cfg = EvalConfig {
        w1_batch_size: Some(real.n_jets.min(10_000)),
        full: false,
        ..EvalConfig::new(Protocol::Mpgan, seed)
    };
    let recon_metrics = evaluate(real, &recon, &cfg, &mut |_| {})?;
    let kl = kl_report(m, clouds, device)?;
    let sweep: Vec<(f64, f64)> = history
        .iter()
        .map(|h| (h.beta, h.kl_per_dim.iter().sum()))
        .collect();
    crate::io::write_json(
        &run.root().join("analysis.json"),
        &json!({
            "reconstruction_vs_input": recon_metrics.to_json(),
            "note": "validation jets reconstructed from z = μ, against themselves (W1 metrics)",
            "kl_per_dim": kl,
            "kl_total": kl.iter().sum::<f64>(),
            "active_dims_kl_gt_0.1": kl.iter().filter(|&&v| v > 0.1).count(),
            "beta_sweep": history.iter().map(|h| json!({
                "step": h.step, "beta": h.beta, "recon": h.recon,
                "kl": h.kl_per_dim.iter().sum::<f64>(), "kl_per_dim": h.kl_per_dim,
            })).collect::<Vec<_>>(),
            "dKL_dlogbeta_vs_beta": dimensionality(&sweep),
            "note_D": "the dimensionality estimate is D = −dKL/d log β (KL falls as β grows)",
        }),
    )?;
    write_sweep_csv(&run.root().join("beta_sweep.csv"), history)?;
    if !plots {
        return Ok(());
    }
    let dir = run.plots();
    crate::plots::comparison_plots(real, &recon, &dir.join("reconstructed"))?;
    crate::plots::comparison_plots(real, &gauss, &dir.join("generated_gaussian_prior"))?;
    jet_images(&dir.join("jet_images.png"), real, &recon, &gauss)?;
    let l = m.vae.config.latent;
    // a VAE's informative dimensions carry KL; an AE's (no KL) are ranked by their spread
    let rank: Vec<f64> = if m.vae.config.variational {
        kl.clone()
    } else {
        let (_, sd) = crate::models::vae::training::column_stats(&mu, l);
        sd.iter().map(|&v| v as f64).collect()
    };
    let what = if m.vae.config.variational {
        "KL"
    } else {
        "std"
    };
    latent_scatter(&dir.join("latent_scatter.png"), &mu, l, &rank, what, real)?;
    if m.vae.config.variational {
        kl_plot(&dir.join("kl_per_dim.png"), &kl)?;
    }
    let distinct = {
        let mut b: Vec<f64> = history.iter().map(|h| h.beta).collect();
        b.dedup();
        b.len()
    };
    if distinct >= 3 {
        sweep_plots(&dir, history)?;
    }
    Ok(())
}

fn write_sweep_csv(path: &Path, history: &[BetaPoint]) -> Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path)
            .map_err(|e| Error::file(path, format!("cannot create: {e}")))?,
    );
    let l = history.first().map_or(0, |h| h.kl_per_dim.len());
    let dims: Vec<String> = (0..l).map(|k| format!("kl_{k}")).collect();
    writeln!(f, "step,beta,recon,kl,{}", dims.join(","))?;
    for h in history {
        let v: Vec<String> = h.kl_per_dim.iter().map(|x| format!("{x:.6}")).collect();
        writeln!(
            f,
            "{},{:.6e},{:.6},{:.6},{}",
            h.step,
            h.beta,
            h.recon,
            h.kl_per_dim.iter().sum::<f64>(),
            v.join(",")
        )?;
    }
    f.flush()?;
    Ok(())
}

/// Average jet images (100 × 100 pixels over |η_rel|, |φ_rel| ≤ 0.8, pT-weighted) of
/// input, reconstructed and generated jets side by side on one log colour scale.
pub fn jet_images(
    path: &Path,
    input: &JetNetData,
    recon: &JetNetData,
    gen: &JetNetData,
) -> Result<()> {
    let img = |d: &JetNetData| crate::plots::average_jet_image(d, 100, 0.8);
    let (a, b, c) = (img(input)?, img(recon)?, img(gen)?);
    let spec = Heatmap {
        title: "Average jet image".into(),
        xlabel: "η_rel".into(),
        ylabel: "φ_rel (rad)".into(),
        zlabel: "Mean pT fraction per pixel".into(),
        log_z: true,
    };
    crate::plots::heatmaps(
        path,
        &spec,
        &[("Input", &a), ("Reconstructed", &b), ("Generated", &c)],
    )
}

/// The codes' two dimensions of largest `kl` (KL, or spread for an AE: `what`), coloured by
/// the jet mass quartile.
fn latent_scatter(
    path: &Path,
    mu: &[f32],
    l: usize,
    kl: &[f64],
    what: &str,
    real: &JetNetData,
) -> Result<()> {
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]));
    let (d0, d1) = (order[0], order.get(1).copied().unwrap_or(order[0]));
    let mass: Vec<f64> = (0..real.n_jets).map(|i| real.jet(i)[2] as f64).collect();
    let mut sorted = mass.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f) as usize];
    let edges = [f64::NEG_INFINITY, q(0.25), q(0.5), q(0.75), f64::INFINITY];
    let series: Vec<Series> = (0..4)
        .map(|k| {
            let pts = mu
                .chunks_exact(l)
                .zip(&mass)
                .filter(|(_, &m)| m >= edges[k] && m < edges[k + 1])
                .map(|(z, _)| (z[d0] as f64, z[d1] as f64))
                .collect();
            let label = match k {
                0 => format!("m < {:.0}", edges[1]),
                3 => format!("m ≥ {:.0}", edges[3]),
                _ => format!("{:.0} ≤ m < {:.0}", edges[k], edges[k + 1]),
            };
            Series::markers(label, PALETTE[k], pts)
        })
        .collect();
    let plot = XyPlot {
        title: "Latent codes (μ), coloured by jet mass [GeV]".into(),
        xlabel: format!("z_{d0} ({what} {:.2})", kl[d0]),
        ylabel: format!("z_{d1} ({what} {:.2})", kl[d1]),
        legend: LegendPos::UpperRight,
        ..Default::default()
    };
    crate::plots::xy_plot(path, &plot, &series)
}

fn kl_plot(path: &Path, kl: &[f64]) -> Result<()> {
    let pts: Vec<(f64, f64)> = kl
        .iter()
        .enumerate()
        .map(|(k, &v)| (k as f64, v.max(1e-6)))
        .collect();
    let plot = XyPlot {
        title: "KL per latent dimension (validation jets)".into(),
        xlabel: "latent dimension".into(),
        ylabel: "KL (nats)".into(),
        y_scale: Scale::Log,
        x_range: Some((-0.5, kl.len() as f64 - 0.5)),
        ..Default::default()
    };
    crate::plots::xy_plot(path, &plot, &[Series::markers("", PALETTE[0], pts)])
}

/// KL (nats) against β, both axes logarithmic: the KL-per-dimension plots of a run's own
/// sweep and of `jetgen dimensionality`.
pub(crate) fn kl_vs_beta_plot(path: &Path, title: String, series: &[Series]) -> Result<()> {
    crate::plots::xy_plot(
        path,
        &XyPlot {
            title,
            xlabel: "β".into(),
            ylabel: "KL (nats)".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            ..Default::default()
        },
        series,
    )
}

fn sweep_plots(dir: &Path, history: &[BetaPoint]) -> Result<()> {
    let l = history[0].kl_per_dim.len();
    let series: Vec<Series> = (0..l)
        .map(|k| {
            let pts = history
                .iter()
                .map(|h| (h.beta, h.kl_per_dim[k].max(1e-6)))
                .collect();
            Series::line("", PALETTE[k % PALETTE.len()], pts)
        })
        .collect();
    kl_vs_beta_plot(
        &dir.join("kl_per_dim_vs_beta.png"),
        "KL per latent dimension over the β sweep".into(),
        &series,
    )?;
    let sweep: Vec<(f64, f64)> = history
        .iter()
        .map(|h| (h.beta, h.kl_per_dim.iter().sum()))
        .collect();
    let d: Vec<(f64, f64)> = dimensionality(&sweep)
        .into_iter()
        .map(|(b, v)| (b, -v))
        .collect();
    crate::plots::xy_plot(
        &dir.join("d_vs_beta.png"),
        &XyPlot {
            title: "Dimensionality D = −dKL/d log β".into(),
            xlabel: "β".into(),
            ylabel: "D".into(),
            x_scale: Scale::Log,
            ..Default::default()
        },
        &[Series::markers("", PALETTE[1], d)],
    )
}
