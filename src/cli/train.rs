//! `jetgen train flow` and `jetgen sample`.

use std::io::Write;
use std::path::PathBuf;

use crate::data::JetNetData;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::flow::FlowConfig;
use crate::models::train_flow::{generate, load_checkpoint, train_flow, TrainConfig};
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
}

/// Train the default (or configured) flow, printing progress and the final metric table.
pub fn run_train(a: TrainArgs) -> Result<()> {
    let device = Device::parse(&a.device)?;
    device.ensure_available()?;
    let data = JetNetData::read(&a.data)?;
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
        ..FlowConfig::default_for(data.n_particles * 3)
    };
    let variant = crate::models::conditions::Variant::parse(&a.variant)?;
    let cfg = TrainConfig {
        variant,
        mass_lambda: a.mass_lambda,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        device,
        ..Default::default()
    };
    println!(
        "training a {} {}-layer {} coupling flow on {} ({} jets × {} particles → {} dims) on {device}, {} steps of {} jets",
        variant.name(), flow.layers, a.coupling, a.data.display(), data.n_jets, data.n_particles, flow.features, cfg.steps, cfg.batch
    );
    let report = crate::on_thread_pool(|| {
        train_flow(&data, flow, &cfg, &a.out, |s| {
            let val = s
                .val_nll
                .map(|v| format!("  val NLL {v:8.2}"))
                .unwrap_or_default();
            let bar_len = 30 * s.step / s.steps.max(1);
            print!(
                "\r[{}{}] step {:>5}/{}  NLL {:8.2}{val}  {:>6.0} jets/s   ",
                "#".repeat(bar_len),
                "-".repeat(30 - bar_len),
                s.step,
                s.steps,
                s.train_nll,
                s.jets_per_s
            );
            if s.val_nll.is_some() {
                println!();
            }
            let _ = std::io::stdout().flush();
        })
    })?;
    println!();
    println!(
        "steps run: {} (early stopping patience {})",
        report.steps_run, cfg.patience
    );
    println!(
        "NLL: first step {:.2} → best validation {:.2}",
        report.first_train_nll, report.best_val_nll
    );
    println!("generated vs validation jets (jetnet-style bootstrap, see metrics.json):");
    println!(
        "  W1M   ×10³  {:8.3} ± {:.3}",
        report.w1m.mean * 1e3,
        report.w1m.std * 1e3
    );
    for (k, name) in ["eta_rel", "phi_rel", "pt_rel"].iter().enumerate() {
        println!(
            "  W1P   ×10³  {:8.3} ± {:.3}  ({name})",
            report.w1p[k].mean * 1e3,
            report.w1p[k].std * 1e3
        );
    }
    let e = report.w1efp.iter().map(|r| r.mean).sum::<f64>() / 5.0;
    println!("  W1EFP ×10⁵  {:8.3}  (mean of 5)", e * 1e5);
    println!("run directory: {} (config.json, checkpoint.safetensors, train_log.csv, generated.hdf5, metrics.json)", report.run_dir.display());
    Ok(())
}

/// Generate `n` jets from a trained run directory (or checkpoint file) into a JetNet file.
pub fn run_sample(model: PathBuf, n: usize, seed: u64, out: PathBuf, device: &str) -> Result<()> {
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
    let jets = crate::on_thread_pool(|| generate(&model, n, seed, device))?;
    jets.write_hdf5(&out)?;
    println!(
        "wrote {n} jets ({} particles each, {} flow) to {}",
        model.n_particles,
        model.variant.name(),
        out.display()
    );
    Ok(())
}
