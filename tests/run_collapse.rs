//! A run whose validations never give a score (a generator that only makes empty jets):
//! the loop keeps the last model, `train_log.csv` says NA, and the finish completes the run
//! directory (`metrics.json` with `"collapsed": true`) and then fails naming the cause.

mod common;

use std::path::Path;

use jetgen::data::JetNetData;
use jetgen::models::conditions::Conditions;
use jetgen::runs::early_stop::Goal;
use jetgen::runs::finish::{finish_run, FinishSettings};
use jetgen::runs::progress::Score;
use jetgen::runs::schedule::LrSchedule;
use jetgen::runs::split::Split;
use jetgen::runs::train_loop::{train_loop, LoopSettings, StepOutcome, TrainTask};
use jetgen::runs::{Conditioning, Generator, RunDir};
use jetgen::{Device, Rng};

/// A task whose steps succeed and whose validation has nothing to score (NaN).
struct NothingToScore;

impl TrainTask for NothingToScore {
    fn batch_size(&self) -> usize {
        4
    }
    fn step(&mut self, step: usize, _lr: f64) -> jetgen::Result<StepOutcome> {
        Ok(StepOutcome::Applied(1.0 / step as f64))
    }
    fn score_keys(&self) -> Vec<&'static str> {
        vec!["val_fpd"]
    }
    fn validate(&mut self) -> jetgen::Result<Vec<Score>> {
        Ok(vec![Score {
            key: "val_fpd",
            label: "validation FPD",
            value: f64::NAN,
        }])
    }
    fn save_checkpoint(&self, path: &Path) -> jetgen::Result<()> {
        std::fs::write(path, b"last model").map_err(|e| jetgen::Error::file(path, e.to_string()))
    }
}

/// A generator of empty jets only.
struct Empty;

impl Generator for Empty {
    fn family(&self) -> &'static str {
        "gan"
    }
    fn variant(&self) -> String {
        "collapsed".into()
    }
    fn particles(&self) -> usize {
        30
    }
    fn conditioning(&self) -> Conditioning {
        Conditioning::default()
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn generate(&self, n: usize, _seed: u64) -> jetgen::Result<JetNetData> {
        JetNetData::new(vec![0.0; n * 30 * 4], vec![0.0; n * 4], n, 30, "empty")
    }
    fn generate_conditional(&self, _: &Conditions, _: u64) -> jetgen::Result<JetNetData> {
        unreachable!()
    }
}

#[test]
fn a_run_that_never_scores_keeps_its_last_model_and_fails_naming_the_collapse() {
    let root = std::env::temp_dir().join(format!("jetgen-collapse-{}", std::process::id()));
    let run = RunDir::new(&root);
    let _lock = run.prepare(true).unwrap();
    let settings = LoopSettings {
        steps: 6,
        lr: 1e-3,
        lr_schedule: LrSchedule::Constant,
        val_every: 2,
        time_limit_s: None,
        patience: 10,
        monitor: "val_fpd",
        goal: Goal::Minimize,
        loss_key: "train_d_loss",
    };
    let mut task = NothingToScore;
    let mut shown = Vec::new();
    let outcome = train_loop(&mut task, &settings, &run, &mut |s| shown.push(s.clone())).unwrap();
    assert_eq!(outcome.steps_run, 6);
    assert!(outcome.best_score.is_nan(), "{}", outcome.best_score);
    assert_eq!(
        std::fs::read(run.checkpoint()).unwrap(),
        b"last model",
        "the last model is the checkpoint"
    );
    let log = std::fs::read_to_string(run.train_log()).unwrap();
    let rows: Vec<&str> = log.lines().collect();
    assert_eq!(rows[0], "step,train_d_loss,val_fpd,jets_per_s");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("2,") && r.split(',').nth(2) == Some("NA")),
        "{log}"
    );
    assert!(!log.contains("NaN") && !log.contains("inf"), "{log}");
    assert_eq!(
        jetgen::runs::progress::shown_score(f64::NAN).trim(),
        "none",
        "on screen"
    );

    let data = JetNetData::read(&common::sample_dir().join("g.hdf5")).unwrap();
    let split = Split::new(data.n_jets, 0.7, &mut Rng::new(1)).unwrap();
    let err = finish_run(
        &run,
        &Empty,
        &data,
        &split,
        &settings,
        &outcome,
        &FinishSettings {
            generate: 50,
            full_eval: false,
            plots: true,
            seed: 3,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("collapsed") && err.contains("empty"), "{err}");
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.metrics()).unwrap()).unwrap();
    assert_eq!(metrics["collapsed"], true, "{metrics}");
    assert!(metrics["best_val_fpd"].is_null(), "{metrics}");
    assert_eq!(metrics["steps_run"], 6);
    assert!(run.generated().exists() && run.plots().join("loss.png").exists());
    let generated = JetNetData::read(&run.generated()).unwrap();
    assert_eq!(generated.n_jets, 50);
    std::fs::remove_dir_all(&root).ok();
}
