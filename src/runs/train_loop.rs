//! The training loop every model family shares: learning-rate schedule, a guard against
//! non-finite steps, periodic validation, `train_log.csv`, progress reports, early stopping
//! on a chosen validation score and a checkpoint of the best model.
//!
//! A family supplies a [`TrainTask`]: one optimisation step, its validation scores and how
//! to save itself. The loop never looks inside the model.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::nn::{clip_grad_norm, Optimizer, Param};
use crate::runs::early_stop::{EarlyStopping, Goal, Verdict};
use crate::runs::progress::{Score, StepInfo};
use crate::runs::schedule::LrSchedule;
use crate::runs::RunDir;

/// What one optimisation step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// The parameters moved; the step's training loss.
    Applied(f64),
    /// The loss or the gradients were not finite: the gradients were dropped, nothing moved.
    Skipped,
}

/// One model family's side of a training run.
pub trait TrainTask {
    /// Jets per step (for jets/s).
    fn batch_size(&self) -> usize;
    /// One optimisation step (`step` is 1-based) at learning rate `lr`.
    fn step(&mut self, step: usize, lr: f64) -> Result<StepOutcome>;
    /// The keys of the scores [`TrainTask::validate`] returns, in its order (the
    /// `train_log.csv` columns).
    fn score_keys(&self) -> Vec<&'static str>;
    /// The validation scores, in eval mode; the loop stops early on the one it monitors.
    fn validate(&mut self) -> Result<Vec<Score>>;
    /// Write the current model as the run's checkpoint.
    fn save_checkpoint(&self, path: &Path) -> Result<()>;
}

/// Settings of the loop itself.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    pub steps: usize,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    /// Validate every this many steps (and at the last).
    pub val_every: usize,
    /// Wall-clock budget in seconds: the first step ending past it is the last one.
    pub time_limit_s: Option<f64>,
    /// Validations without improvement of `monitor` before stopping.
    pub patience: usize,
    /// The validation score early stopping watches (a [`Score::key`]), and its goal.
    pub monitor: &'static str,
    pub goal: Goal,
    /// Name of the training loss column in `train_log.csv` (e.g. `train_nll`).
    pub loss_key: &'static str,
}

/// Consecutive non-finite steps after which a run fails.
pub const MAX_BAD_STEPS: usize = 5;

/// What the loop reports at the end.
#[derive(Clone, Debug)]
pub struct LoopOutcome {
    /// The last step that moved the parameters.
    pub steps_run: usize,
    /// Training loss of the first applied step.
    pub first_loss: f64,
    /// Best value of the monitored score (its checkpoint is the run's checkpoint); NaN when
    /// no validation gave a finite score (the checkpoint is then the last model).
    pub best_score: f64,
    /// (step, mean training loss) at every report, for the loss curve.
    pub train_history: Vec<(f64, f64)>,
    /// (step, monitored score) at every validation.
    pub val_history: Vec<(f64, f64)>,
}

/// The common single-optimizer step ending: clip the global gradient norm to `clip`; if the
/// loss or the norm is not finite drop the gradients ([`StepOutcome::Skipped`]), else set
/// the learning rate and take the optimizer step.
pub fn clip_and_step(
    opt: &mut dyn Optimizer,
    params: &[Param],
    loss: f64,
    clip: f64,
    lr: f64,
) -> Result<StepOutcome> {
    let norm = clip_grad_norm(params, clip)?;
    if !loss.is_finite() || !norm.is_finite() {
        opt.zero_grad();
        return Ok(StepOutcome::Skipped);
    }
    opt.set_lr(lr);
    opt.step()?;
    Ok(StepOutcome::Applied(loss))
}

/// Run `task` for `settings.steps` steps into `run` (writes `train_log.csv` and the best
/// `checkpoint.safetensors`), calling `progress` every 10 steps and at every validation.
/// With a time limit, the first step that ends past it is validated and is the last.
/// Fails after [`MAX_BAD_STEPS`] non-finite steps in a row. When no validation gave a
/// finite score the last model is the checkpoint and `best_score` is NaN.
pub fn train_loop(
    task: &mut dyn TrainTask,
    settings: &LoopSettings,
    run: &RunDir,
    progress: &mut dyn FnMut(&StepInfo),
) -> Result<LoopOutcome> {
    if settings.steps == 0 || settings.val_every == 0 {
        return Err(Error::invalid("a run needs ≥ 1 step and val_every ≥ 1"));
    }
    let ckpt = run.checkpoint();
    let log_path = run.train_log();
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path)
            .map_err(|e| Error::file(&log_path, format!("cannot create: {e}")))?,
    );
    let keys = task.score_keys();
    writeln!(
        log,
        "step,{},{},jets_per_s",
        settings.loss_key,
        keys.join(",")
    )?;
    let mut stopping = EarlyStopping::new(settings.goal, settings.patience);
    let (mut bad_steps, mut steps_run, mut first_loss) = (0usize, 0usize, f64::NAN);
    let mut window = (0f64, 0usize, Instant::now());
    let mut out = LoopOutcome {
        steps_run: 0,
        first_loss: f64::NAN,
        best_score: f64::NAN,
        train_history: Vec::new(),
        val_history: Vec::new(),
    };
    let mut saved = false;
    let started = Instant::now();
    for step in 1..=settings.steps {
        let lr = settings.lr_schedule.at(settings.lr, step, settings.steps);
        let loss = match task.step(step, lr)? {
            StepOutcome::Applied(loss) => loss,
            StepOutcome::Skipped => {
                bad_steps += 1;
                if bad_steps >= MAX_BAD_STEPS {
                    return Err(Error::NonFinite {
                        what: format!(
                            "loss/gradients for {bad_steps} steps in a row (step {step})"
                        ),
                        count: bad_steps,
                        total: step,
                    });
                }
                continue;
            }
        };
        bad_steps = 0;
        steps_run = step;
        if first_loss.is_nan() {
            first_loss = loss;
        }
        window.0 += loss;
        window.1 += 1;
        let out_of_time = settings
            .time_limit_s
            .is_some_and(|t| started.elapsed().as_secs_f64() >= t);
        let validating = step % settings.val_every == 0 || step == settings.steps || out_of_time;
        let scores = if validating {
            Some(task.validate()?)
        } else {
            None
        };
        if validating || step % 10 == 0 {
            let elapsed = window.2.elapsed().as_secs_f64();
            let info = StepInfo {
                step,
                steps: settings.steps,
                train_loss: window.0 / window.1 as f64,
                scores: scores.clone(),
                jets_per_s: (window.1 * task.batch_size()) as f64 / elapsed.max(1e-9),
            };
            let values: Vec<String> = keys
                .iter()
                .map(|k| {
                    let found = scores.iter().flatten().find(|s| s.key == *k);
                    // a score that is not finite (nothing to score) is NA, as R and pandas read it
                    found
                        .map(|s| match s.value.is_finite() {
                            true => format!("{:.6}", s.value),
                            false => "NA".into(),
                        })
                        .unwrap_or_default()
                })
                .collect();
            writeln!(
                log,
                "{},{:.6},{},{:.1}",
                step,
                info.train_loss,
                values.join(","),
                info.jets_per_s
            )?;
            // every row reaches the file at once: a killed run keeps its log
            log.flush()?;
            progress(&info);
            out.train_history.push((step as f64, info.train_loss));
            window = (0.0, 0, Instant::now());
        }
        if let Some(scores) = scores {
            let monitored = scores
                .iter()
                .find(|s| s.key == settings.monitor)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "validation gives no '{}' score to monitor",
                        settings.monitor
                    ))
                })?
                .value;
            out.val_history.push((step as f64, monitored));
            match stopping.observe(monitored) {
                Verdict::Improved => {
                    task.save_checkpoint(&ckpt)?;
                    saved = true;
                }
                Verdict::Worse => {}
                Verdict::Stop => break,
            }
        }
        if out_of_time {
            break;
        }
    }
    log.flush()?;
    if !saved {
        // nothing ever scored (e.g. a generator that only made empty jets): keep the last
        // model, so the run can be inspected; `best_score` stays NaN and the finish says why
        task.save_checkpoint(&ckpt)?;
    }
    out.steps_run = steps_run;
    out.first_loss = first_loss;
    out.best_score = stopping.best().unwrap_or(f64::NAN);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::progress::Score;

    /// Steps of ~5 ms whose validation score falls with the step.
    struct Slow;

    impl TrainTask for Slow {
        fn batch_size(&self) -> usize {
            1
        }
        fn step(&mut self, step: usize, _lr: f64) -> Result<StepOutcome> {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(StepOutcome::Applied(1.0 / step as f64))
        }
        fn score_keys(&self) -> Vec<&'static str> {
            vec!["val_loss"]
        }
        fn validate(&mut self) -> Result<Vec<Score>> {
            Ok(vec![Score {
                key: "val_loss",
                label: "validation loss",
                value: 1.0,
            }])
        }
        fn save_checkpoint(&self, path: &Path) -> Result<()> {
            std::fs::write(path, b"model").map_err(|e| Error::file(path, e.to_string()))
        }
    }

    /// A run with a time limit ends at the first step past it, validates that step (so its
    /// checkpoint and log row exist) and reports it as the last step run.
    #[test]
    fn the_time_limit_ends_the_run_at_a_validated_step() {
        let root = std::env::temp_dir().join(format!("jetgen-time-limit-{}", std::process::id()));
        let run = RunDir::new(&root);
        let _lock = run.prepare(true).unwrap();
        let settings = LoopSettings {
            steps: 100_000,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            val_every: 100_000,
            time_limit_s: Some(0.05),
            patience: 5,
            monitor: "val_loss",
            goal: Goal::Minimize,
            loss_key: "train_loss",
        };
        let t = Instant::now();
        let out = train_loop(&mut Slow, &settings, &run, &mut |_| {}).unwrap();
        assert!(t.elapsed().as_secs_f64() < 5.0);
        assert!((2..1000).contains(&out.steps_run), "{}", out.steps_run);
        assert_eq!(out.val_history, [(out.steps_run as f64, 1.0)]);
        assert_eq!(std::fs::read(run.checkpoint()).unwrap(), b"model");
        let log = std::fs::read_to_string(run.train_log()).unwrap();
        let last = log.lines().last().unwrap();
        assert!(last.starts_with(&format!("{},", out.steps_run)), "{log}");
        std::fs::remove_dir_all(&root).ok();
    }
}
