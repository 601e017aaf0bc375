//! `jetgen train flow` and `jetgen sample`.

use std::path::PathBuf;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::conditions::Conditions;
use crate::models::flow::{FlowConfig, MaskKind};
use crate::models::train_flow::{
    generate, generate_conditional, load_checkpoint, train_flow, LrSchedule, TrainConfig,
};
use crate::nn::CouplingKind;
use crate::ops::rqs::RqsConfig;

/// Command-line settings of `jetgen train flow`.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    pub data: PathBuf,
    pub coupling: String,
    pub layers: usize,
    pub bins: usize,
    pub hidden: usize,
    pub blocks: usize,
    pub tail_bound: f64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub device: String,
    pub seed: u64,
    pub out: PathBuf,
    pub variant: String,
    pub mass_lambda: f64,
    /// Train for this many passes over the training split instead of `steps`.
    pub epochs: Option<usize>,
    /// g, q or t: the file of that class next to `data` (`<dir>/<class>.hdf5`).
    pub class: Option<String>,
    /// Only the W1 metrics at the end (skip FPD, KPD, COV, MMD).
    pub quick_eval: bool,
    /// alternating or random coupling masks.
    pub masks: String,
    /// Jets generated for the final evaluation.
    pub generate: usize,
    /// Dropout in the conditioners' residual blocks.
    pub dropout: f32,
    pub weight_decay: f64,
    /// constant or cosine.
    pub lr_schedule: String,
    /// Random reflections of the training jets about their axis.
    pub reflect: bool,
    /// Validations without improvement before early stopping.
    pub patience: usize,
}

/// Applies a JSON config file (keys = the long option names with '_' for '-', e.g.
/// {"variant": "cnf-m", "layers": 10, "mass_lambda": 500}; a run directory's `config.json`
/// is also understood through its "flow", "train" and "variant" entries). Options given
/// explicitly on the command line (different from their defaults) win over the file.
pub fn apply_config(a: &mut TrainArgs, defaults: &TrainArgs, path: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
    let mut flat = serde_json::Map::new();
    let obj = v
        .as_object()
        .ok_or_else(|| Error::file(path, "expected a JSON object"))?;
    for (k, val) in obj {
        match (k.as_str(), val) {
            ("train", serde_json::Value::Object(m)) => flat.extend(m.clone()),
            // a run's description of its data set (sizes, split), not a path
            ("data", serde_json::Value::Object(_)) => {}
            ("flow", serde_json::Value::Object(m)) => {
                for (fk, fv) in m {
                    match (fk.as_str(), fv) {
                        ("masks", serde_json::Value::Object(m)) => {
                            flat.insert("masks".into(), m["kind"].clone());
                        }
                        ("coupling", serde_json::Value::Object(c)) => {
                            for (ck, cv) in c {
                                let key = if ck == "kind" {
                                    "coupling"
                                } else {
                                    ck.as_str()
                                };
                                flat.insert(key.to_string(), cv.clone());
                            }
                        }
                        _ => {
                            flat.insert(fk.clone(), fv.clone());
                        }
                    }
                }
            }
            _ => {
                flat.insert(k.replace('-', "_"), val.clone());
            }
        }
    }
    let bad = |k: &str| Error::file(path, format!("'{k}' has the wrong type"));
    macro_rules! set {
        ($field:ident, $conv:expr) => {
            if let Some(x) = flat.get(stringify!($field)) {
                if a.$field == defaults.$field {
                    a.$field = $conv(x).ok_or_else(|| bad(stringify!($field)))?;
                }
            }
        };
    }
    let num = |x: &serde_json::Value| x.as_u64().map(|n| n as usize);
    let float = |x: &serde_json::Value| x.as_f64();
    let string = |x: &serde_json::Value| x.as_str().map(str::to_string);
    set!(coupling, string);
    set!(variant, string);
    set!(masks, string);
    set!(generate, num);
    set!(device, string);
    set!(layers, num);
    set!(bins, num);
    set!(hidden, num);
    set!(blocks, num);
    set!(steps, num);
    set!(batch, num);
    set!(tail_bound, float);
    set!(lr, float);
    set!(mass_lambda, float);
    set!(weight_decay, float);
    set!(dropout, |x: &serde_json::Value| x
        .as_f64()
        .map(|v| v as f32));
    set!(lr_schedule, string);
    set!(reflect, |x: &serde_json::Value| x.as_bool());
    set!(patience, num);
    set!(seed, |x: &serde_json::Value| x.as_u64());
    set!(data, |x: &serde_json::Value| x
        .as_str()
        .map(std::path::PathBuf::from));
    set!(out, |x: &serde_json::Value| x
        .as_str()
        .map(std::path::PathBuf::from));
    set!(epochs, |x: &serde_json::Value| Some(
        x.as_u64().map(|n| n as usize)
    ));
    set!(class, |x: &serde_json::Value| Some(
        x.as_str().map(str::to_string)
    ));
    Ok(())
}

/// Train the default (or configured) flow, printing progress and the final metric table.
pub fn run_train(a: TrainArgs) -> Result<()> {
    let device = Device::parse(&a.device)?;
    device.ensure_available()?;
    let data_path = match &a.class {
        None => a.data.clone(),
        Some(c) if ["g", "q", "t"].contains(&c.as_str()) => a
            .data
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("{c}.hdf5")),
        Some(c) => return Err(Error::invalid(format!("unknown jet class '{c}' (g, q, t)"))),
    };
    let data = JetNetData::read(&data_path)?;
    let coupling = match a.coupling.as_str() {
        "rqs" => CouplingKind::Rqs(RqsConfig::new(a.bins, a.tail_bound)),
        "affine" => CouplingKind::Affine,
        other => {
            return Err(Error::invalid(format!(
                "unknown coupling '{other}' (rqs, affine)"
            )))
        }
    };
    let flow = FlowConfig {
        coupling,
        layers: a.layers,
        hidden: a.hidden,
        blocks: a.blocks,
        dropout: a.dropout,
        masks: match a.masks.as_str() {
            "alternating" => MaskKind::Alternating,
            "random" => MaskKind::Random { seed: a.seed },
            other => {
                return Err(Error::invalid(format!(
                    "unknown masks '{other}' (alternating, random)"
                )))
            }
        },
        ..FlowConfig::default_for(data.n_particles * 3)
    };
    let variant = crate::models::conditions::Variant::parse(&a.variant)?;
    let cfg = TrainConfig {
        variant,
        mass_lambda: a.mass_lambda,
        steps: match a.epochs {
            // the training split is 70 % of the jets
            Some(e) => (e * (data.n_jets * 7).div_ceil(10))
                .div_ceil(a.batch.max(1))
                .max(1),
            None => a.steps,
        },
        full_eval: !a.quick_eval,
        generate: a.generate.max(1),
        batch: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        lr_schedule: LrSchedule::parse(&a.lr_schedule)?,
        reflect: a.reflect,
        patience: a.patience.max(1),
        seed: a.seed,
        device,
        ..Default::default()
    };
    println!(
        "training a {} {}-layer {} coupling flow on {} ({} jets × {} particles → {} dims) on {device}, {} steps of {} jets",
        variant.name(), flow.layers, a.coupling, data_path.display(), data.n_jets, data.n_particles, flow.features, cfg.steps, cfg.batch
    );
    let bar = indicatif::ProgressBar::new(cfg.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos:>5}/{len} steps  {elapsed_precise} < {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = crate::on_thread_pool(|| {
        train_flow(&data, flow, &cfg, &a.out, |s| {
            bar.set_position(s.step as u64);
            bar.set_message(format!(
                "loss {:8.2}  {:>6.0} jets/s",
                s.train_nll, s.jets_per_s
            ));
            if let Some(v) = s.val_nll {
                let line = format!(
                    "step {:>5}: train loss {:8.2}, validation NLL {v:8.2}, {:>6.0} jets/s",
                    s.step, s.train_nll, s.jets_per_s
                );
                // a hidden bar (output not a terminal) drops println; logs still want it
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.println(line);
                }
            }
        })
    });
    bar.finish_and_clear();
    let report = report?;
    println!();
    println!(
        "steps run: {} (early stopping patience {})",
        report.steps_run, cfg.patience
    );
    println!(
        "NLL: first step {:.2} → best validation {:.2}",
        report.first_train_nll, report.best_val_nll
    );
    println!(
        "generated vs validation jets ({} generated, {} real; W1: 5 batches of {} with replacement):",
        report.metrics.n_generated,
        report.metrics.n_real,
        report.metrics.n_generated.min(10_000)
    );
    print!(
        "{}",
        report.metrics.table_with_floor(Some(&report.truth_floor))
    );
    println!(
        "run directory: {} (config.json, checkpoint.safetensors, train_log.csv, generated.hdf5, metrics.json)",
        report.run_dir.display()
    );
    if let Some(first) = report.plots.first() {
        println!(
            "plots: {} ({} PNG files)",
            first.parent().unwrap_or(first).display(),
            report.plots.len()
        );
    }
    Ok(())
}

/// Generate `n` jets from a trained run directory (or checkpoint file) into a JetNet file.
pub fn run_sample(
    model: PathBuf,
    n: usize,
    seed: u64,
    out: PathBuf,
    device: &str,
    mass: Option<f64>,
    multiplicity: Option<usize>,
) -> Result<()> {
    let device = Device::parse(device)?;
    let ckpt = if model.is_dir() {
        model.join("checkpoint.safetensors")
    } else {
        model
    };
    let model = load_checkpoint(&ckpt, device)?;
    if n == 0 {
        return Err(Error::invalid("--n must be at least 1"));
    }
    let jets = match (mass, multiplicity) {
        (None, None) => crate::on_thread_pool(|| generate(&model, n, seed, device))?,
        (Some(m), k) => {
            if k.is_some() && !model.variant.has_multiplicity() {
                return Err(Error::invalid(format!(
                    "a {} flow is not conditioned on the multiplicity",
                    model.variant.name()
                )));
            }
            let given = Conditions {
                mass: vec![m; n],
                n: vec![k.unwrap_or(model.n_particles) as f64; n],
            };
            crate::on_thread_pool(|| generate_conditional(&model, &given, seed, device))?
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--multiplicity needs --mass too (the flows condition on m, or on m and n)",
            ))
        }
    };
    jets.write_hdf5(&out)?;
    println!(
        "wrote {n} jets ({} particles each, {} flow) to {}",
        model.n_particles,
        model.variant.name(),
        out.display()
    );
    Ok(())
}
