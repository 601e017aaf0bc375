//! The `jetgen` command line: a thin shell over the library.

mod bench;
mod eval;
mod info;
mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jetgen: generative models for particle jets.
#[derive(Parser, Debug)]
#[command(name = "jetgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Version, the device `auto` picks and why, CPU threads, kernel build mode.
    Info,
    /// Train a generative model (`flow`, the default) on JetNet-layout jets; with no
    /// arguments, a small RQS flow on the built-in gluon sample in a few minutes on 2 cores.
    Train {
        /// Model family (flow)
        #[arg(default_value = "flow")]
        model: String,
        /// Jets to train on (JetNet layout, .hdf5 or .npy pair)
        #[arg(long, default_value = "data/sample/g.hdf5")]
        data: PathBuf,
        /// rqs or affine coupling layers
        #[arg(long, default_value = "rqs")]
        coupling: String,
        /// vnf (unconditional), cnf-m (jet mass), cnf-mn (mass and multiplicity), ccnf-m / ccnf-mn
        /// (the same with the mass constraint)
        #[arg(long, default_value = "vnf")]
        variant: String,
        /// λ of the CCNF mass constraint (loss = NLL per jet + λ·MSE of the relative mass)
        #[arg(long, default_value_t = 1000.0)]
        mass_lambda: f64,
        #[arg(long, default_value_t = 6)]
        layers: usize,
        #[arg(long, default_value_t = 8)]
        bins: usize,
        #[arg(long, default_value_t = 128)]
        hidden: usize,
        #[arg(long, default_value_t = 2)]
        blocks: usize,
        /// Spline range [−B, B] in standardised units
        #[arg(long, default_value_t = 8.0)]
        tail_bound: f64,
        #[arg(long, default_value_t = 1500)]
        steps: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// auto, cpu, cuda or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run directory
        #[arg(long, default_value = "runs/flow")]
        out: PathBuf,
        /// Passes over the training split (overrides --steps)
        #[arg(long)]
        epochs: Option<usize>,
        /// g, q or t: use <directory of --data>/<class>.hdf5
        #[arg(long)]
        class: Option<String>,
        /// JSON file of settings (option names as keys; a run's config.json works too);
        /// options given on the command line win
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only W1M/W1P/W1EFP at the end (skip FPD, KPD, COV and MMD)
        #[arg(long)]
        quick_eval: bool,
        /// Coupling masks: alternating (even/odd features) or random (seeded by --seed)
        #[arg(long, default_value = "alternating")]
        masks: String,
        /// Jets generated for the final evaluation against the validation split (at most
        /// its size)
        #[arg(long, default_value_t = 2000)]
        generate: usize,
        /// Dropout probability inside the conditioners' residual blocks
        #[arg(long, default_value_t = 0.0)]
        dropout: f32,
        /// AdamW decoupled weight decay
        #[arg(long, default_value_t = 1e-5)]
        weight_decay: f64,
        /// constant, or cosine (from --lr down to 0 at the last step)
        #[arg(long, default_value = "constant")]
        lr_schedule: String,
        /// Reflect training jets at random about their axis (η_rel → −η_rel, φ_rel → −φ_rel):
        /// mass, pT fractions and multiplicity unchanged, four times the distinct jets
        /// (`--reflect false` trains on the jets as they are)
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        reflect: bool,
        /// Early stopping: validations (every 100 steps) without improvement before stopping
        #[arg(long, default_value_t = 5)]
        patience: usize,
    },
    /// Generate jets from a trained model into a JetNet-layout HDF5 file.
    Sample {
        /// Run directory (or checkpoint file) of `jetgen train`
        #[arg(long, default_value = "runs/flow")]
        model: PathBuf,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "generated.hdf5")]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Relative jet mass m/pT of every jet (conditional flows; default: drawn from the
        /// training distribution)
        #[arg(long)]
        mass: Option<f64>,
        /// Number of particles of every jet (cnf-mn / ccnf-mn flows)
        #[arg(long)]
        multiplicity: Option<usize>,
    },
    /// Compare generated jets with real ones (JetNet layout, .hdf5 or .npy): W1M, W1P,
    /// W1EFP, FPD, KPD, COV and MMD exactly as jetnet defines them.
    Eval {
        /// Real jets (default: the built-in gluon sample)
        #[arg(long, default_value = "data/sample/g.hdf5")]
        real: PathBuf,
        /// Generated jets
        #[arg(long = "gen")]
        generated: PathBuf,
        /// jetnet (5 × 50,000) or mpgan (5 × 10,000)
        #[arg(long, default_value = "jetnet")]
        protocol: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write PNG histograms (jet mass, pT, multiplicity, particle features; real vs
        /// generated with ratio panels) into this directory.
        #[arg(long)]
        plots: Option<PathBuf>,
        /// Only the W1 metrics (skip FPD, KPD, COV and MMD).
        #[arg(long)]
        quick: bool,
        /// Also FPND against jetnet's real jets of this class: g, q or t (JetNet-30 jets;
        /// ParticleNet on up to 50,000 generated jets, ~2 minutes on 2 cores)
        #[arg(long)]
        fpnd: Option<String>,
    },
    /// Benchmarks as tables: `engine` (GEMM, MLP training step), `kernels` (Chamfer,
    /// Sinkhorn, RQS), `generate` (flow generation through the Rust and the C API), or
    /// `all`; `--json` writes the rows for machines.
    Bench {
        /// engine, kernels, generate or all
        #[arg(default_value = "engine")]
        suite: String,
        /// CPU threads (0 = all cores)
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Minimum seconds per kernel case (at least 5 runs, at most 200).
        #[arg(long, default_value_t = 1.0)]
        min_time: f64,
        /// auto, cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
        /// Timed repetitions per benchmark (the median is reported).
        #[arg(long, default_value_t = 30)]
        iters: usize,
        /// Also write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Kernel suite only: run just these ops (comma-separated: chamfer, sinkhorn, rqs).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info::run(),
        cmd @ Command::Train { .. } => run_train_command(cmd),
        Command::Sample {
            model,
            n,
            seed,
            out,
            device,
            mass,
            multiplicity,
        } => train::run_sample(model, n, seed, out, &device, mass, multiplicity),
        Command::Eval {
            real,
            generated,
            protocol,
            seed,
            json,
            plots,
            quick,
            fpnd,
        } => eval::run(eval::EvalArgs {
            real,
            generated,
            protocol,
            seed,
            json,
            plots,
            quick,
            fpnd,
        }),
        Command::Bench {
            suite,
            device,
            iters,
            json,
            threads,
            min_time,
            only,
        } => bench::run(&bench::BenchArgs {
            suite,
            device,
            iters: iters.max(1),
            threads,
            min_time,
            json,
            only,
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The settings of a `train` command: model name, arguments, config file.
fn train_args(cmd: Command) -> Option<(String, train::TrainArgs, Option<PathBuf>)> {
    let Command::Train {
        model,
        data,
        coupling,
        variant,
        mass_lambda,
        layers,
        bins,
        hidden,
        blocks,
        tail_bound,
        steps,
        batch,
        lr,
        device,
        seed,
        out,
        epochs,
        class,
        config,
        quick_eval,
        masks,
        generate,
        dropout,
        weight_decay,
        lr_schedule,
        reflect,
        patience,
    } = cmd
    else {
        return None;
    };
    let args = train::TrainArgs {
        data,
        coupling,
        variant,
        mass_lambda,
        layers,
        bins,
        hidden,
        blocks,
        tail_bound,
        steps,
        batch,
        lr,
        device,
        seed,
        out,
        epochs,
        class,
        quick_eval,
        masks,
        generate,
        dropout,
        weight_decay,
        lr_schedule,
        reflect,
        patience,
    };
    Some((model, args, config))
}

fn run_train_command(cmd: Command) -> crate::error::Result<()> {
    let Some((model, mut args, config)) = train_args(cmd) else {
        return Ok(());
    };
    if model != "flow" {
        return Err(crate::error::Error::invalid(format!(
            "unknown model '{model}' (available: flow)"
        )));
    }
    if let Some(path) = config {
        let defaults = Cli::try_parse_from(["jetgen", "train"])
            .ok()
            .and_then(|c| train_args(c.command))
            .map(|(_, a, _)| a)
            .ok_or_else(|| crate::error::Error::invalid("internal: no default train settings"))?;
        train::apply_config(&mut args, &defaults, &path)?;
    }
    train::run_train(args)
}
