//! `jetgen eval`: the JetNet metric suite (W1M, W1P, W1EFP, FPD, KPD, COV, MMD) between real
//! and generated jets, as a table, JSON and plots.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::data::JetNetData;
use crate::error::{Error, Result};
use crate::metrics::{evaluate, EvalConfig, Protocol};
use crate::runs::split::{run_split, Part};

/// Command-line settings of `jetgen eval`.
#[derive(Clone, Debug)]
pub struct EvalArgs {
    pub real: PathBuf,
    /// Generated jets, or
    pub generated: Option<PathBuf>,
    /// a trained model to generate `n` jets from (seeded by `seed`) on `device`.
    pub model: Option<PathBuf>,
    pub n: Option<usize>,
    pub device: String,
    pub protocol: String,
    pub seed: u64,
    pub json: Option<PathBuf>,
    pub plots: Option<PathBuf>,
    /// Only the W1 metrics (skip FPD, KPD, COV, MMD).
    pub quick: bool,
    /// FPND against jetnet's real jets of this class (g, q, t).
    pub fpnd: Option<String>,
    /// Training jets for the memorisation diagnostic (the real jets are the held-apart set).
    pub train: Option<PathBuf>,
}

/// A spinner that names the running step (hidden when stderr is not a terminal).
pub fn stage_spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Jets from a file, or with `run:DIR` the `part` of the split the run in DIR trained with
/// ([`run_split`]: its validation jets for `--real`, its training jets for `--train`).
fn read_jets(path: &std::path::Path, part: Part) -> Result<JetNetData> {
    match path.to_str().and_then(|s| s.strip_prefix("run:")) {
        Some(dir) => run_split(std::path::Path::new(dir), part),
        None => JetNetData::read(path),
    }
}

/// Read both files, run the suite, print the table, write JSON and plots when asked.
pub fn run(a: EvalArgs) -> Result<()> {
    // The metrics run their GEMMs (FPD's covariances, KPD's kernels) inside rayon's parallel
    // loops; matrixmultiply's own threads on top of those contend for the same cores
    // (FPD 1.9 s → 0.95 s and KPD 1.3 s → 1.0 s at 40k × 40k on 2 cores without them).
    // matrixmultiply reads this once, at its first use; a value the user set is kept.
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    let protocol = Protocol::parse(&a.protocol)?;
    if let Some(json) = &a.json {
        let mut inputs = vec![a.real.as_path()];
        inputs.extend(a.generated.as_deref());
        inputs.extend(a.model.as_deref());
        inputs.extend(a.train.as_deref());
        crate::io::refuse_input_as_output(json, &inputs)?;
    }
    let real = read_jets(&a.real, Part::Validation)?;
    let train = a
        .train
        .as_deref()
        .map(|p| read_jets(p, Part::Train))
        .transpose()?;
    let (gen, gen_name) = match (&a.generated, &a.model) {
        (Some(path), None) => (JetNetData::read(path)?, path.display().to_string()),
        (None, Some(model)) => {
            let device = crate::device::Device::parse(&a.device)?;
            device.ensure_available()?;
            let g = crate::runs::load_generator(model, device)?;
            let n = a.n.unwrap_or(real.n_jets);
            let jets = crate::on_thread_pool(|| {
                crate::runs::generator::generate_in_pieces(&*g, n, a.seed, None)
            })?;
            (
                jets,
                format!("{} jets from {} ({})", n, model.display(), g.name()),
            )
        }
        _ => {
            return Err(Error::invalid(
                "give --gen FILE or --model RUN (one of them)",
            ))
        }
    };
    for (what, name, d) in [
        ("real", a.real.display().to_string(), &real),
        ("gen ", gen_name.clone(), &gen),
    ] {
        println!(
            "{what}: {name} ({} jets × {} particles)",
            d.n_jets, d.n_particles
        );
    }
    let fpnd = match a.fpnd.as_deref() {
        None => None,
        Some(c @ ("g" | "q" | "t")) => c.chars().next(),
        Some(other) => {
            return Err(Error::invalid(format!(
                "--fpnd takes g, q or t, got '{other}'"
            )))
        }
    };
    let cfg = EvalConfig {
        full: !a.quick,
        fpnd,
        ..EvalConfig::new(protocol, a.seed)
    };
    let bar = stage_spinner();
    let report = crate::on_thread_pool(|| {
        evaluate(&real, &gen, &cfg, &mut |s| {
            bar.set_message(format!("computing {s}"))
        })
    })?;
    bar.finish_and_clear();
    println!(
        "protocol: {} (W1: 5 batches × {} jets with replacement), seed {}",
        protocol.name(),
        match protocol {
            Protocol::Jetnet => 50_000,
            Protocol::Mpgan => 10_000,
        },
        a.seed
    );
    print!("{}", report.table());
    for note in &report.notes {
        eprintln!("warning: {note}");
    }
    let steps: Vec<String> = report
        .timings
        .iter()
        .map(|(k, v)| format!("{k} {v:.2} s"))
        .collect();
    println!("time: {:.2} s ({})", report.seconds, steps.join(", "));
    let memo = match &train {
        Some(train) => {
            let m = crate::on_thread_pool(|| {
                crate::metrics::memorisation(train, &gen, &real, &Default::default())
            })?;
            print!("{}", m.table());
            Some(m)
        }
        None => None,
    };
    if let Some(path) = &a.json {
        let mut value = report.to_json();
        value["real"] = a.real.display().to_string().into();
        value["generated"] = gen_name.into();
        value["seed"] = a.seed.into();
        if let Some(m) = &memo {
            value["memorisation"] = m.to_json();
            value["train"] = a.train.as_ref().map(|p| p.display().to_string()).into();
        }
        let text =
            serde_json::to_string_pretty(&value).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(dir) = &a.plots {
        let files = crate::plots::comparison_plots(&real, &gen, dir)?;
        println!("plots: {} ({} PNG files)", dir.display(), files.len());
    }
    Ok(())
}
