//! `jetgen anomaly`: an autoencoder (or VAE) trained on one jet class scores jets by their
//! reconstruction loss; jets of another class (the signal, e.g. tops against a gluon or
//! light-quark background) should score higher. Reported: the ROC curve (ε_S vs ε_B), its
//! AUC, the background rejection 1/ε_B at 30 % and 50 % signal efficiency, and the
//! correlation of the score with the jet mass in each sample (Pearson and Spearman) — a
//! score that mostly measures the mass sculpts the background mass spectrum, which the
//! plot of the background mass before and after a cut on the score shows.

use std::path::PathBuf;

use serde_json::json;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::vae::checkpoint::load_checkpoint;
use crate::models::vae::data::read_clouds;
use crate::models::vae::sampling::recon_scores;
use crate::models::vae::settings::ReconLoss;
use crate::plots::style::{GEN, REAL};
use crate::plots::{Binning, Roc, Series, XyPlot};
use crate::rng::Rng;
use crate::runs::split::Split;

/// `jetgen anomaly`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct AnomalyArgs {
    /// Run directory (or checkpoint) of a trained `ae` or `vae`
    #[arg(long)]
    pub model: PathBuf,
    /// Background jets (the class the model was trained on; same layout as its training
    /// data). When this is the model's own training file, only its validation split is scored
    #[arg(long)]
    pub background: PathBuf,
    /// Signal jets (the anomaly, e.g. t.hdf5)
    #[arg(long)]
    pub signal: PathBuf,
    /// Score with this reconstruction loss instead of the model's own (mse, chamfer,
    /// chamfer-physics, sinkhorn)
    #[arg(long, value_enum)]
    pub score: Option<ReconLoss>,
    /// Jets per sample (the first ones of each file)
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Write the ROC curve, the score-vs-mass scatter and the background mass before and
    /// after a score cut into this directory
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Write the results (AUC, rejections, ROC points, correlations) as JSON here
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The separation of signal from background by a score (higher = more anomalous).
#[derive(Clone, Debug)]
pub struct AnomalyReport {
    pub roc: Roc,
    /// 1/ε_B at ε_S = 0.3 and 0.5.
    pub rejection_30: f64,
    pub rejection_50: f64,
    /// Correlations of the score with the jet mass: (Pearson, Spearman) for background and
    /// signal.
    pub background_mass_corr: (f64, f64),
    pub signal_mass_corr: (f64, f64),
}

/// Pearson correlation of two samples (0 when either is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()).max(1) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Ranks 0..n−1 with ties given their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

impl AnomalyReport {
    /// The report for given scores and jet masses.
    pub fn new(
        signal: &[f64],
        background: &[f64],
        signal_mass: &[f64],
        background_mass: &[f64],
    ) -> Result<Self> {
        let roc = Roc::from_scores(signal, background)?;
        Ok(AnomalyReport {
            rejection_30: roc.rejection_at(0.3),
            rejection_50: roc.rejection_at(0.5),
            roc,
            background_mass_corr: (
                pearson(background, background_mass),
                spearman(background, background_mass),
            ),
            signal_mass_corr: (pearson(signal, signal_mass), spearman(signal, signal_mass)),
        })
    }

    /// The JSON form, with at most `max_points` ROC points (evenly thinned).
    pub fn to_json(&self, max_points: usize) -> serde_json::Value {
        let n = self.roc.fpr.len();
        let stride = n.div_ceil(max_points.max(2)).max(1);
        let mut pts: Vec<[f64; 2]> = (0..n)
            .step_by(stride)
            .map(|k| [self.roc.fpr[k], self.roc.tpr[k]])
            .collect();
        if !(n - 1).is_multiple_of(stride) {
            pts.push([self.roc.fpr[n - 1], self.roc.tpr[n - 1]]);
        }
        let finite = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
        json!({
            "auc": self.roc.auc,
            "rejection_at_eff_s_0.3": finite(self.rejection_30),
            "rejection_at_eff_s_0.5": finite(self.rejection_50),
            "roc_points_eff_b_eff_s": pts,
            "background_score_mass_correlation": {"pearson": self.background_mass_corr.0, "spearman": self.background_mass_corr.1},
            "signal_score_mass_correlation": {"pearson": self.signal_mass_corr.0, "spearman": self.signal_mass_corr.1},
        })
    }
}

/// Run `jetgen anomaly`.
pub fn run(args: &AnomalyArgs) -> Result<()> {
    let device = Device::parse(&args.device)?;
    device.ensure_available()?;
    if args.n == 0 {
        return Err(Error::invalid("--n must be ≥ 1"));
    }
    let ckpt = crate::runs::dir::checkpoint_of(&args.model);
    let mut model = load_checkpoint(&ckpt, device)?;
    if let Some(score) = args.score {
        if score == ReconLoss::Sinkhorn
            && model.spec.representation != super::data::Representation::Relative
        {
            return Err(Error::invalid(
                "--score sinkhorn needs a model of relative (η, φ, pT) jets",
            ));
        }
        model.spec.loss = score;
    }
    let p = model.vae.config.particles;
    // the training data's checksum and the run's seed, when the model is a run directory
    let training = crate::io::read_json(&crate::runs::RunDir::of_model(&args.model).config())
        .ok()
        .and_then(|c| {
            let sum = c["data"]["checksum"].as_str()?.to_string();
            Some((sum, c["settings"]["seed"].as_u64().unwrap_or(0)))
        });
    let load = |path: &PathBuf| -> Result<(Vec<f64>, Vec<f64>)> {
        let (clouds, jets) = read_clouds(path, p)?;
        if clouds.representation != model.spec.representation {
            return Err(Error::file(
                path,
                format!(
                    "holds {} jets but the model was trained on {} ones",
                    clouds.representation.name(),
                    model.spec.representation.name()
                ),
            ));
        }
        // jets of the model's own training file: only its validation split (never scored
        // on jets it was trained on)
        let pool: Vec<usize> = match &training {
            Some((sum, seed)) if *sum == jets.checksum() => {
                let split = Split::new(clouds.n_jets, 0.7, &mut Rng::new(*seed))?;
                println!(
                    "{}: the model's training data; scoring its validation split ({} jets)",
                    path.display(),
                    split.validation.len()
                );
                split.validation
            }
            _ => (0..clouds.n_jets).collect(),
        };
        let idx = &pool[..args.n.min(pool.len())];
        let scores = recon_scores(&model, &clouds.select(idx), device)?;
        let mass = idx.iter().map(|&i| jets.jet(i)[2] as f64).collect();
        Ok((scores, mass))
    };
    let (bkg, bkg_mass) = load(&args.background)?;
    let (sig, sig_mass) = load(&args.signal)?;
    let report = AnomalyReport::new(&sig, &bkg, &sig_mass, &bkg_mass)?;
    let score_name = model.spec.loss.name();
    println!(
        "anomaly score: {score_name} reconstruction loss of a {} ({} background, {} signal jets)",
        model.family(),
        bkg.len(),
        sig.len()
    );
    println!(
        "AUC {:.4}   1/ε_B at ε_S = 0.3: {:.1}   at ε_S = 0.5: {:.1}",
        report.roc.auc, report.rejection_30, report.rejection_50
    );
    println!(
        "score–mass correlation (Pearson / Spearman): background {:.3} / {:.3}, signal {:.3} / {:.3}",
        report.background_mass_corr.0,
        report.background_mass_corr.1,
        report.signal_mass_corr.0,
        report.signal_mass_corr.1
    );
    if let Some(path) = &args.json {
        let mut j = report.to_json(200);
        j["score"] = score_name.into();
        j["model"] = args.model.display().to_string().into();
        j["background"] = args.background.display().to_string().into();
        j["signal"] = args.signal.display().to_string().into();
        j["n_background"] = bkg.len().into();
        j["n_signal"] = sig.len().into();
        crate::io::write_json(path, &j)?;
    }
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e.to_string()))?;
        let title = format!("{} anomaly score: {score_name}", model.family());
        crate::plots::roc_plot(&dir.join("roc.png"), &title, &[(score_name, &report.roc)])?;
        let thin = |s: &[f64], m: &[f64]| -> Vec<(f64, f64)> {
            let stride = s.len().div_ceil(2000).max(1);
            m.iter()
                .zip(s)
                .step_by(stride)
                .map(|(&a, &b)| (a, b))
                .collect()
        };
        crate::plots::xy_plot(
            &dir.join("score_vs_mass.png"),
            &XyPlot {
                title: format!("{title} vs jet mass"),
                xlabel: "jet mass [GeV]".into(),
                ylabel: format!("{score_name} reconstruction loss"),
                y_scale: crate::plots::Scale::Log,
                ..Default::default()
            },
            &[
                Series::markers("background", REAL, thin(&bkg, &bkg_mass)),
                Series::markers("signal", GEN, thin(&sig, &sig_mass)),
            ],
        )?;
        // the background that passes a cut keeping 50 % of the signal
        let mut s = sig.clone();
        s.sort_by(f64::total_cmp);
        let cut = s[s.len() / 2];
        let passing: Vec<f64> = bkg_mass
            .iter()
            .zip(&bkg)
            .filter(|(_, &v)| v >= cut)
            .map(|(&m, _)| m)
            .collect();
        if passing.len() >= 2 {
            crate::plots::compare_histograms(
                &dir.join("background_mass_after_cut.png"),
                "Background jet mass: all (filled) vs passing the ε_S = 50 % score cut",
                "jet mass [GeV]",
                &bkg_mass,
                &passing,
                Binning {
                    range: None,
                    bins: 40,
                    log_y: false,
                },
            )?;
        }
        println!("plots: {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case worked by hand: signal {0.9, 0.8, 0.4}, background {0.7, 0.3, 0.2, 0.1}.
    /// Pairs (s > b): 0.9 and 0.8 beat all four, 0.4 beats three: AUC = 11/12. ROC points
    /// from the top: (0,1/3), (0,2/3), (1/4,2/3), (1/4,1), then the rest of the background.
    /// At ε_S = 0.5 (between 1/3 and 2/3 at ε_B = 0) the rejection is infinite; at ε_S = 0.3
    /// it interpolates on the first step from (0, 0) to (0, 1/3): ε_B = 0 as well.
    #[test]
    fn roc_auc_and_rejection_on_a_hand_computed_case() {
        let sig = [0.9, 0.8, 0.4];
        let bkg = [0.7, 0.3, 0.2, 0.1];
        let r = AnomalyReport::new(&sig, &bkg, &[1.0, 2.0, 3.0], &[4.0, 3.0, 2.0, 1.0]).unwrap();
        assert!((r.roc.auc - 11.0 / 12.0).abs() < 1e-12, "{}", r.roc.auc);
        assert_eq!(r.roc.tpr[..5], [0.0, 1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(r.roc.fpr[..5], [0.0, 0.0, 0.0, 0.25, 0.25]);
        assert!(r.rejection_50.is_infinite());
        // at ε_S = 5/6, halfway between (1/4, 2/3) and (1/4, 1): ε_B = 1/4
        assert!((r.roc.rejection_at(5.0 / 6.0) - 4.0).abs() < 1e-12);
        // background scores rise with mass monotonically: Spearman 1, Pearson below it
        assert!(r.background_mass_corr.0 > 0.8 && r.background_mass_corr.0 < 1.0);
        assert!((r.background_mass_corr.1 - 1.0).abs() < 1e-12);
        assert!((r.signal_mass_corr.1 + 1.0).abs() < 1e-12);
        // swapped labels: AUC 1/12
        let w = AnomalyReport::new(&bkg, &sig, &[0.0; 4], &[0.0; 3]).unwrap();
        assert!((w.roc.auc - 1.0 / 12.0).abs() < 1e-12);
        let j = r.to_json(200);
        assert_eq!(j["rejection_at_eff_s_0.5"], serde_json::Value::Null);
        assert!(AnomalyReport::new(&[], &bkg, &[], &[0.0; 4]).is_err());
    }

    #[test]
    fn spearman_handles_ties() {
        assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 1.0, 2.0]) - 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[0.0, 5.0]), 0.0);
    }
}
