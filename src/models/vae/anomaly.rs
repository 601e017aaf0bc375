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
use crate::models::vae::checkpoint::{load_checkpoint, TrainedVae};
use crate::models::vae::data::read_clouds;
use crate::models::vae::sampling::{latent_scores, recon_scores};
use crate::models::vae::settings::ReconLoss;
use crate::plots::style::{GEN, REAL};
use crate::plots::{Binning, Roc, Series, XyPlot};
use crate::rng::Rng;
use crate::runs::split::Split;

/// `jetgen anomaly`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct AnomalyArgs {
    /// Run directory (or checkpoint) of a trained `ae` or `vae`. Given more than once, the
    /// models are scored as an ensemble: a jet's score is the mean over the models of its
    /// standardised log loss, (ln s − μ)/σ with μ, σ of that model's ln s over the background
    /// jets (no signal label is used). Models trained on the background file must share its
    /// split (the same --split-seed), so that no model scores jets it trained on
    #[arg(long, required = true)]
    pub model: Vec<PathBuf>,
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
    /// What scores a jet: its reconstruction loss, the negative log-density of its code
    /// under the model's prior (the learned flow prior of `jetgen latent` when the
    /// checkpoint has one — pass that checkpoint as --model — else the Gaussian), or both
    /// (each standardised over the background and averaged, as for an ensemble)
    #[arg(long, value_enum, default_value_t = ScoreBy::Reconstruction)]
    pub by: ScoreBy,
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
    /// Write every scored jet as CSV here: `sample,jet,score,mass` (sample = background or
    /// signal, jet = its index in the file), for cuts and combinations of one's own
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// What `jetgen anomaly` scores a jet by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScoreBy {
    /// The reconstruction loss (z = μ).
    #[value(alias = "recon")]
    Reconstruction,
    /// −ln p(z) of the code z = μ(x) under the prior ([`latent_scores`]).
    Latent,
    /// Both, standardised over the background and averaged.
    Both,
}

impl ScoreBy {
    /// The components a model contributes: (reconstruction, latent).
    fn parts(self) -> (bool, bool) {
        match self {
            ScoreBy::Reconstruction => (true, false),
            ScoreBy::Latent => (false, true),
            ScoreBy::Both => (true, true),
        }
    }
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
    if args.score.is_some() && args.by == ScoreBy::Latent {
        return Err(Error::invalid(
            "--score picks the reconstruction loss, and --by latent scores without one: use --by reconstruction or --by both with --score",
        ));
    }
    let mut trainings = Vec::with_capacity(args.model.len());
    let mut models = Vec::with_capacity(args.model.len());
    for dir in &args.model {
        let ckpt = crate::runs::dir::checkpoint_of(dir);
        for out in [&args.json, &args.scores].into_iter().flatten() {
            crate::io::refuse_input_as_output(out, &[&ckpt, &args.background, &args.signal])?;
        }
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
        // the training data's checksum and the run's split seed, when the model is a run
        // directory
        let training = crate::io::read_json(&crate::runs::RunDir::of_model(dir).config())
            .ok()
            .and_then(|c| {
                let sum = c["data"]["checksum"].as_str()?.to_string();
                let seed = crate::runs::settings::RunSettings::split_seed_of(&c).unwrap_or(0);
                Some((sum, seed))
            });
        if let Some(first) = models.first() {
            let (a, b): (&TrainedVae, &TrainedVae) = (first, &model);
            if a.vae.config.particles != b.vae.config.particles
                || a.spec.representation != b.spec.representation
            {
                return Err(Error::invalid(format!(
                    "the ensemble's models see different jets: {} ({} particles, {}) and {} ({} particles, {})",
                    args.model[0].display(),
                    a.vae.config.particles,
                    a.spec.representation.name(),
                    dir.display(),
                    b.vae.config.particles,
                    b.spec.representation.name()
                )));
            }
        }
        models.push(model);
        trainings.push(training);
    }
    let p = models[0].vae.config.particles;
    let representation = models[0].spec.representation;
    let (by_recon, by_latent) = args.by.parts();
    // per sample: each component's scores and whether it is a loss (see [`Component`])
    type Scored = (Vec<(Vec<f64>, bool)>, Vec<f64>, Vec<usize>);
    let load = |path: &PathBuf| -> Result<Scored> {
        let (clouds, jets) = read_clouds(path, p)?;
        if clouds.representation != representation {
            return Err(Error::file(
                path,
                format!(
                    "holds {} jets but the model was trained on {} ones",
                    clouds.representation.name(),
                    representation.name()
                ),
            ));
        }
        // jets of a model's own training file: only its validation split (never scored on
        // jets it was trained on); every model trained on this file must share the split
        let seeds: Vec<u64> = trainings
            .iter()
            .flatten()
            .filter(|(sum, _)| *sum == jets.checksum())
            .map(|&(_, seed)| seed)
            .collect();
        if seeds.iter().any(|&s| s != seeds[0]) {
            return Err(Error::file(
                path,
                format!(
                    "the ensemble's models were trained on different splits of it (split seeds {seeds:?}): \
                     each would score jets another trained on; train them with one --split-seed"
                ),
            ));
        }
        let pool: Vec<usize> = match seeds.first() {
            Some(&seed) => {
                let split = Split::new(clouds.n_jets, 0.7, &mut Rng::new(seed))?;
                println!(
                    "{}: the model's training data; scoring its validation split ({} jets)",
                    path.display(),
                    split.validation.len()
                );
                split.validation
            }
            None => (0..clouds.n_jets).collect(),
        };
        let idx = pool[..args.n.min(pool.len())].to_vec();
        let chosen = clouds.select(&idx);
        let mut scores = Vec::new();
        for m in &models {
            if by_recon {
                scores.push((recon_scores(m, &chosen, device)?, true));
            }
            if by_latent {
                scores.push((latent_scores(m, &chosen, device)?, false));
            }
        }
        let mass = idx.iter().map(|&i| jets.jet(i)[2] as f64).collect();
        Ok((scores, mass, idx))
    };
    let (bkg_each, bkg_mass, bkg_idx) = load(&args.background)?;
    let (sig_each, sig_mass, sig_idx) = load(&args.signal)?;
    let parts: Vec<Component> = bkg_each
        .into_iter()
        .zip(sig_each)
        .map(|((background, is_loss), (signal, _))| Component {
            background,
            signal,
            is_loss,
        })
        .collect();
    let (bkg, sig) = ensemble_scores(&parts);
    let model = &models[0];
    let report = AnomalyReport::new(&sig, &bkg, &sig_mass, &bkg_mass)?;
    let prior = match model.prior {
        Some(_) => "flow prior",
        None => "Gaussian prior",
    };
    let recon_name = model.spec.loss.name();
    let score_name = match args.by {
        ScoreBy::Reconstruction => recon_name.to_string(),
        ScoreBy::Latent => format!("latent −ln p(z), {prior}"),
        ScoreBy::Both => format!("{recon_name} + latent −ln p(z), {prior}"),
    };
    let scorer = match (models.len(), parts.len()) {
        (1, 1) => format!("a {}", model.family()),
        (1, _) => format!("a {} (mean standardised score)", model.family()),
        (n, _) => format!("an ensemble of {n} models (mean standardised score)"),
    };
    let score_name = score_name.as_str();
    println!(
        "anomaly score: {score_name} of {scorer} ({} background, {} signal jets)",
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
        j["model"] = match args.model.as_slice() {
            [one] => one.display().to_string().into(),
            many => many
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .into(),
        };
        j["background"] = args.background.display().to_string().into();
        j["signal"] = args.signal.display().to_string().into();
        j["n_background"] = bkg.len().into();
        j["n_signal"] = sig.len().into();
        crate::io::write_json(path, &j)?;
    }
    if let Some(path) = &args.scores {
        let mut csv = String::from("sample,jet,score,mass\n");
        for (name, scores, mass, idx) in [
            ("background", &bkg, &bkg_mass, &bkg_idx),
            ("signal", &sig, &sig_mass, &sig_idx),
        ] {
            for ((s, m), i) in scores.iter().zip(mass).zip(idx) {
                csv.push_str(&format!("{name},{i},{s:e},{m}\n"));
            }
        }
        crate::io::write_atomic(path, csv.as_bytes())?;
    }
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e.to_string()))?;
        let title = match models.len() {
            1 => format!("{} anomaly score: {score_name}", model.family()),
            n => format!("ensemble of {n} models, anomaly score: {score_name}"),
        };
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
                ylabel: match (parts.len(), args.by) {
                    (1, ScoreBy::Reconstruction) => format!("{score_name} reconstruction loss"),
                    (1, _) => "−ln p(z) of the code".into(),
                    _ => "mean standardised score".into(),
                },
                // a lone loss is positive; a log-density or a combination is of either sign
                y_scale: match (parts.len(), args.by) {
                    (1, ScoreBy::Reconstruction) => crate::plots::Scale::Log,
                    _ => crate::plots::Scale::Linear,
                },
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

/// One part of an ensemble's score: one model's scores of the background and the signal
/// jets, and whether they are a loss (`is_loss`: combined as ln s) or already a negative
/// log-density (combined as they are).
pub struct Component {
    pub background: Vec<f64>,
    pub signal: Vec<f64>,
    pub is_loss: bool,
}

/// The combined score from its components: a lone component's own scores; for several, per
/// jet the mean over components of (t − μ)/σ, with t = ln s for a loss (losses of 0 count as
/// the smallest positive number) and t = s for a log-density, and μ, σ the mean and standard
/// deviation of t over the background jets (σ = 1 where it is 0). No signal label is used.
pub fn ensemble_scores(parts: &[Component]) -> (Vec<f64>, Vec<f64>) {
    if let [one] = parts {
        return (one.background.clone(), one.signal.clone());
    }
    let (mut bkg, mut sig) = (
        vec![0.0; parts[0].background.len()],
        vec![0.0; parts[0].signal.len()],
    );
    let k = parts.len() as f64;
    for part in parts {
        let t = |v: &[f64]| -> Vec<f64> {
            match part.is_loss {
                true => v.iter().map(|&s| s.max(f64::MIN_POSITIVE).ln()).collect(),
                false => v.to_vec(),
            }
        };
        let (lb, ls) = (t(&part.background), t(&part.signal));
        let n = lb.len().max(1) as f64;
        let mu = lb.iter().sum::<f64>() / n;
        let sd = (lb.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / n).sqrt();
        let sd = if sd > 0.0 { sd } else { 1.0 };
        for (o, x) in bkg.iter_mut().zip(&lb) {
            *o += (x - mu) / sd / k;
        }
        for (o, x) in sig.iter_mut().zip(&ls) {
            *o += (x - mu) / sd / k;
        }
    }
    (bkg, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two models: per model ln s standardised over the background, then averaged. Model A's
    /// background ln-scores are {0, 2} (μ 1, σ 1), model B's {0, 4} (μ 2, σ 2): a signal jet
    /// with s = (e³, e⁶) scores ((3 − 1)/1 + (6 − 2)/2)/2 = 2.
    #[test]
    fn ensemble_scores_average_the_standardised_logs() {
        let e = std::f64::consts::E;
        let part = |background: Vec<f64>, signal: Vec<f64>, is_loss| Component {
            background,
            signal,
            is_loss,
        };
        let parts = [
            part(vec![1.0, e * e], vec![e.powi(3)], true),
            part(vec![1.0, e.powi(4)], vec![e.powi(6)], true),
        ];
        let (b, s) = ensemble_scores(&parts);
        assert!(
            (b[0] + 1.0).abs() < 1e-12 && (b[1] - 1.0).abs() < 1e-12,
            "{b:?}"
        );
        assert!((s[0] - 2.0).abs() < 1e-12, "{s:?}");
        // one model: its own scores, untouched
        let (b1, s1) = ensemble_scores(&parts[..1]);
        assert_eq!(
            (b1, s1),
            (parts[0].background.clone(), parts[0].signal.clone())
        );
        // a log-density is standardised as it is: {−1, 3} (μ 1, σ 2) beside model A's
        // losses, a signal density of 5 adds (5 − 1)/2 = 2 to A's 2
        let mixed = [
            part(vec![1.0, e * e], vec![e.powi(3)], true),
            part(vec![-1.0, 3.0], vec![5.0], false),
        ];
        let (b2, s2) = ensemble_scores(&mixed);
        assert!(
            (b2[0] + 1.0).abs() < 1e-12 && (b2[1] - 1.0).abs() < 1e-12,
            "{b2:?}"
        );
        assert!((s2[0] - 2.0).abs() < 1e-12, "{s2:?}");
    }

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
