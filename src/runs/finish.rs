//! The end of every training run: generate jets from the best checkpoint, evaluate them
//! against the validation split with the full JetNet suite, put the truth floor beside them
//! (as many *training* jets against the same validation jets: what a perfect generator would
//! score at these sample sizes), and write `generated.hdf5`, `metrics.json` and the plots.

use std::path::PathBuf;

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::{
    evaluate, memorisation, EvalConfig, EvalReport, Memorisation, MemorisationConfig, Protocol,
};
use crate::runs::generator::Generator;
use crate::runs::split::Split;
use crate::runs::train_loop::{LoopOutcome, LoopSettings};
use crate::runs::RunDir;

/// How a run ends.
#[derive(Clone, Debug)]
pub struct FinishSettings {
    /// Jets to generate (at most the validation split's size, at least 1).
    pub generate: usize,
    /// The whole suite (FPD, KPD, COV, MMD too) or only the W1s.
    pub full_eval: bool,
    /// Write PNG plots into `<run>/plots`.
    pub plots: bool,
    /// Seed of the generation (`seed ^ 0x5EED`) and of the metrics' bootstraps.
    pub seed: u64,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub run_dir: PathBuf,
    /// The last step that moved the parameters.
    pub steps_run: usize,
    /// Training loss of the first step.
    pub first_loss: f64,
    /// Best value of the monitored validation score, and its key.
    pub best_score: f64,
    pub monitor: &'static str,
    /// The early-stopping patience the run had.
    pub patience: usize,
    /// Generated vs validation jets (MPGAN protocol, W1 batches of ≤ 10,000 jets).
    pub metrics: EvalReport,
    /// The same metrics for as many training jets against the validation jets.
    pub truth_floor: EvalReport,
    /// PNG files written (empty without plots).
    pub plots: Vec<PathBuf>,
    /// EMD to the nearest training jet, generated vs held-apart validation jets (with the
    /// full evaluation only).
    pub memorisation: Option<Memorisation>,
}

/// Generate from `best` (the reloaded best checkpoint), evaluate against the validation jets
/// of `split`, write `generated.hdf5`, `metrics.json` (with the truth floor and the loop's
/// summary) and, when asked, the plots (comparison histograms and the loss curve).
pub fn finish_run(
    run: &RunDir,
    best: &dyn Generator,
    data: &JetNetData,
    split: &Split,
    loop_settings: &LoopSettings,
    outcome: &LoopOutcome,
    settings: &FinishSettings,
) -> Result<RunReport> {
    let n_gen = settings.generate.min(split.validation.len()).max(1);
    let generated = best.generate(n_gen, settings.seed ^ 0x5EED)?;
    generated.write_hdf5(&run.generated())?;
    if generated.non_empty_jets().is_empty() {
        return Err(finish_collapsed(
            run,
            best,
            loop_settings,
            outcome,
            settings,
            n_gen,
        ));
    }
    let real = data.select(&split.validation)?;
    let eval_cfg = EvalConfig {
        w1_batch_size: Some(n_gen.min(10_000)),
        full: settings.full_eval,
        ..EvalConfig::new(Protocol::Mpgan, settings.seed)
    };
    let metrics = evaluate(&real, &generated, &eval_cfg, &mut |_| {})?;
    let truth = data.select(&split.train[..n_gen.min(split.train.len())])?;
    let truth_floor = evaluate(&real, &truth, &eval_cfg, &mut |_| {})?;
    let memo = if settings.full_eval {
        let train = data.select(&split.train)?;
        let heldout = data.select(&split.validation[..n_gen])?;
        Some(memorisation(
            &train,
            &generated,
            &heldout,
            &MemorisationConfig::default(),
        )?)
    } else {
        None
    };
    let mut json = metrics.to_json();
    json["truth_floor"] = truth_floor.to_json();
    if let Some(m) = &memo {
        json["memorisation"] = m.to_json();
    }
    json["truth_floor"]["note"] =
        "training jets (as many as generated) vs the same validation jets".into();
    json[format!("best_{}", loop_settings.monitor)] = outcome.best_score.into();
    json["steps_run"] = outcome.steps_run.into();
    json[format!("first_{}", loop_settings.loss_key)] = outcome.first_loss.into();
    json["model"] = best.name().into();
    json["real"] = "validation split".into();
    crate::io::write_json(&run.metrics(), &json)?;
    let mut plots = Vec::new();
    if settings.plots {
        plots = crate::plots::comparison_plots(&real, &generated, &run.plots())?;
        plots.extend(loss_curve(run, loop_settings, outcome)?);
    }
    Ok(RunReport {
        run_dir: run.root().to_path_buf(),
        steps_run: outcome.steps_run,
        first_loss: outcome.first_loss,
        best_score: outcome.best_score,
        monitor: loop_settings.monitor,
        patience: loop_settings.patience,
        metrics,
        truth_floor,
        plots,
        memorisation: memo,
    })
}

/// `<run>/plots/loss.png` (training loss and the monitored score against step), when the
/// loop reported anything; the validations without a score are left out of the curve.
fn loss_curve(
    run: &RunDir,
    loop_settings: &LoopSettings,
    outcome: &LoopOutcome,
) -> Result<Option<PathBuf>> {
    if outcome.train_history.is_empty() {
        return Ok(None);
    }
    let curve = run.plots().join("loss.png");
    let scored: Vec<(f64, f64)> = outcome
        .val_history
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    crate::plots::line_plot(
        &curve,
        "Training",
        "step",
        "loss",
        &[
            (
                "train",
                crate::plots::chart::REAL,
                outcome.train_history.clone(),
            ),
            (loop_settings.monitor, crate::plots::chart::GEN, scored),
        ],
    )?;
    Ok(Some(curve))
}

/// A run whose best model generates only empty jets (a collapsed generator): the run
/// directory is completed — `metrics.json` with `"collapsed": true` and the loop's summary,
/// the loss curve — and the error that ends the run names the cause.
fn finish_collapsed(
    run: &RunDir,
    best: &dyn Generator,
    loop_settings: &LoopSettings,
    outcome: &LoopOutcome,
    settings: &FinishSettings,
    n_gen: usize,
) -> Error {
    let json = serde_json::json!({
        "collapsed": true,
        "note": format!("all {n_gen} generated jets are empty (no particle with mask 1): nothing to evaluate"),
        format!("best_{}", loop_settings.monitor): outcome.best_score,
        "steps_run": outcome.steps_run,
        format!("first_{}", loop_settings.loss_key): outcome.first_loss,
        "model": best.name(),
        "real": "validation split",
    });
    let written = crate::io::write_json(&run.metrics(), &json).and_then(|_| match settings.plots {
        true => loss_curve(run, loop_settings, outcome).map(|_| ()),
        false => Ok(()),
    });
    let dir = run.root().display();
    match written {
        Ok(()) => Error::invalid(format!(
            "the generator collapsed: all {n_gen} jets generated from the checkpoint are empty \
             (no particle with mask 1), so there is nothing to evaluate; {dir} holds the config, \
             train_log.csv, the checkpoint, generated.hdf5 and metrics.json (\"collapsed\": true)"
        )),
        Err(e) => Error::invalid(format!(
            "the generator collapsed: all {n_gen} generated jets are empty; writing the report \
             into {dir} failed too: {e}"
        )),
    }
}

impl RunReport {
    /// The summary printed at the end of `jetgen train`: steps, loss → best score, the
    /// metric table with the truth-floor column, where the files are.
    pub fn summary(&self) -> String {
        let patience = self.patience;
        let mut s = String::new();
        if self.steps_run > 0 {
            s += &format!(
                "\nsteps run: {} (early stopping patience {patience})\n",
                self.steps_run
            );
            s += &format!(
                "loss: first step {:.2} → best {} {}\n",
                self.first_loss,
                self.monitor,
                crate::runs::progress::shown_score(self.best_score).trim()
            );
        } else {
            s += "\n";
        }
        s += &format!(
            "generated vs validation jets ({} generated, {} real; W1: 5 batches of {} with replacement):\n",
            self.metrics.n_generated,
            self.metrics.n_real,
            self.metrics.n_generated.min(10_000)
        );
        s += &self.metrics.table_with_floor(Some(&self.truth_floor));
        if let Some(m) = &self.memorisation {
            s += &m.table();
        }
        s += &format!(
            "run directory: {} (config.json, checkpoint.safetensors, train_log.csv, generated.hdf5, metrics.json)\n",
            self.run_dir.display()
        );
        if let Some(first) = self.plots.first() {
            s += &format!(
                "plots: {} ({} PNG files)\n",
                first.parent().unwrap_or(first).display(),
                self.plots.len()
            );
        }
        s
    }
}
