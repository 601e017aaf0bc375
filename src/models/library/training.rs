//! `jetgen train library`: the seeded 70/30 split every family uses, the training split
//! indexed as the library, its checkpoint, then generation and the full evaluation against
//! the validation split by [`crate::runs::finish`] (no optimisation: the run has 0 steps).

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::models::library::checkpoint::{save_library, FAMILY};
use crate::models::library::generator::LibraryGenerator;
use crate::models::library::library::Library;
use crate::models::library::settings::{condition_names, LibrarySettings};
use crate::rng::Rng;
use crate::runs::early_stop::Goal;
use crate::runs::finish::{finish_run, FinishSettings, RunReport};
use crate::runs::progress::StepInfo;
use crate::runs::train_loop::{LoopOutcome, LoopSettings};
use crate::runs::RunDir;

/// Build a library from the training split of `data` into the run directory
/// (`--out`, default `runs/library`, or the next free `runs/library-N`), write
/// `config.json` and `checkpoint.safetensors`, then generate and evaluate (`generated.hdf5`,
/// `metrics.json`, `plots/`). `progress` is not called (there are no steps).
pub fn train_library(
    data: &JetNetData,
    settings: &LibrarySettings,
    _progress: &mut dyn FnMut(&StepInfo),
) -> Result<RunReport> {
    settings.validate()?;
    if data.n_jets < 10 {
        return Err(Error::invalid(format!(
            "a library needs ≥ 10 jets, got {}",
            data.n_jets
        )));
    }
    let seed = settings.run.seed;
    let split = settings.run.split(data.n_jets, &mut Rng::new(seed))?;
    let library = Library::new(data.select(&split.train)?, &settings.condition, settings.k)?;

    let run = RunDir::new(settings.run.new_out_dir(FAMILY));
    let _lock = run.prepare(settings.run.overwrite)?;
    let config = serde_json::json!({
        "family": FAMILY,
        "variant": format!("k{}-{}", settings.k, condition_names(&settings.condition)),
        "jetgen_version": crate::VERSION,
        "settings": crate::runs::settings::to_json(settings)?,
        "steps": 0,
        "data": {
            "path": settings.run.data_path().display().to_string(),
            "checksum": data.checksum(),
            "jets": data.n_jets, "particles": data.n_particles,
            "train": split.train.len(), "validation": split.validation.len(), "split": "70/30 seeded",
        },
    });
    crate::io::write_json(&run.config(), &config)?;
    save_library(&run.checkpoint(), &library)?;
    drop(library);
    // evaluate the checkpoint as every other family's: reloaded from disk
    let best = LibraryGenerator::load(&run.checkpoint())?;
    let loop_settings = LoopSettings {
        steps: 0,
        lr: 0.0,
        lr_schedule: settings.run.lr_schedule,
        val_every: 1,
        time_limit_s: None,
        patience: 0,
        monitor: "none",
        goal: Goal::Minimize,
        loss_key: "none",
    };
    let outcome = LoopOutcome {
        steps_run: 0,
        first_loss: f64::NAN,
        best_score: f64::NAN,
        train_history: Vec::new(),
        val_history: Vec::new(),
    };
    finish_run(
        &run,
        &best,
        data,
        &split,
        &loop_settings,
        &outcome,
        &FinishSettings {
            generate: settings.run.generate,
            full_eval: !settings.run.quick_eval,
            plots: settings.run.plots,
            seed,
        },
    )
}
