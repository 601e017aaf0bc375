//! The `jetgen` command line: a thin shell over the library.

mod bench;
mod eval;
mod info;
mod sample;

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
    /// `jetgen train <family> --help` lists a family's options.
    Train(TrainCommand),
    /// Generate jets from a trained model (any family) into a JetNet-layout HDF5 file.
    #[command(allow_negative_numbers = true)]
    Sample {
        /// Run directory (or checkpoint file) of `jetgen train`
        #[arg(long, default_value = "runs/flow")]
        model: PathBuf,
        /// Jets to generate
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "generated.hdf5")]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Relative jet mass m/pT of every jet (conditional models; default: drawn from the
        /// training distribution)
        #[arg(long)]
        mass: Option<f64>,
        /// Number of particles of every jet (models conditioned on it, e.g. cnf-mn flows)
        #[arg(long)]
        multiplicity: Option<usize>,
        /// ODE solver of models that integrate one (flow matching): euler, midpoint, rk4 or
        /// dopri5 [default: the checkpoint's]
        #[arg(long, value_enum)]
        solver: Option<crate::ode::Method>,
        /// Steps of a fixed-step --solver [default: the checkpoint's]
        #[arg(long)]
        steps: Option<usize>,
        /// Relative and absolute tolerance of --solver dopri5 [default: the checkpoint's]
        #[arg(long)]
        tol: Option<f64>,
    },
    /// Compare generated jets with real ones (JetNet layout, .hdf5 or .npy): W1M, W1P,
    /// W1EFP, FPD, KPD, COV and MMD exactly as jetnet defines them.
    Eval {
        /// Real jets (default: the built-in gluon sample, builtin:g; builtin:t is the top one);
        /// run:DIR = the validation split of the run in DIR (rebuilt from its config.json)
        #[arg(long, default_value = crate::data::builtin::DEFAULT_DATA)]
        real: PathBuf,
        /// Generated jets (JetNet layout)
        #[arg(
            long = "gen",
            required_unless_present = "model",
            conflicts_with = "model"
        )]
        generated: Option<PathBuf>,
        /// Or: a trained model (run directory or checkpoint, any family) to generate --n
        /// jets from
        #[arg(long)]
        model: Option<PathBuf>,
        /// Jets to generate with --model [default: as many as the real jets]
        #[arg(long, requires = "model")]
        n: Option<usize>,
        /// auto, cpu, cuda or cuda:N (for --model)
        #[arg(long, default_value = "cpu")]
        device: String,
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
        /// Also the memorisation diagnostic: the EMD from each generated jet to its nearest
        /// jet of this training set, against the same for the real jets (which must be
        /// held apart from it); run:DIR = the training split of the run in DIR
        #[arg(long)]
        train: Option<PathBuf>,
    },
    /// Anomaly detection with a trained autoencoder or VAE: its reconstruction loss scores
    /// background and signal jets; ROC, AUC, rejections at ε_S = 30 % and 50 %, the
    /// score's correlation with the jet mass.
    Anomaly(crate::models::vae::AnomalyArgs),
    /// The learned prior of a trained VAE/AE: fit a flow to the training jets' codes, save
    /// the model with it, compare generation from it and from the Gaussian prior.
    Latent(crate::models::vae::LatentArgs),
    /// The EMD-VAE study's dimensionality D(β) = −dKL/d ln β across VAE runs trained at
    /// one constant β each: the KL per dimension and reconstruction averaged over each
    /// run's last validations, D with its error between neighbouring β, plots and JSON.
    Dimensionality(crate::models::vae::DimensionalityArgs),
    /// Benchmarks as tables: `engine` (GEMM, MLP training step), `kernels` (Chamfer,
    /// Sinkhorn, RQS, each with its roofline bound and the fraction reached), `scaling` (the
    /// same kernels over a grid of sizes: how cost grows; run it at --threads 1 and 2 for the
    /// parallel efficiency), `roofline` (the
    /// machine model alone: FMA peak, STREAM bandwidth, lane exp/ln), `generate` (every
    /// family's generation through the Rust and the C API), `vae` (Chamfer- and Sinkhorn-EMD-VAE
    /// training steps), `fm` (EPiC-FM training step and generation), `mpgan` (MPGAN D+G training steps) or `all`; `--json` writes the rows
    /// for machines.
    Bench {
        /// engine, kernels, scaling (the kernels over N, B and K grids), roofline, generate,
        /// vae (Chamfer- and Sinkhorn-VAE training steps),
        /// fm (EPiC flow-matching training step and generation at NFE 20/100),
        /// mpgan (MPGAN D+G training steps) or all
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
        /// Kernel suite only: run just these ops (comma-separated: chamfer, sinkhorn, rqs, edge_mlp — MPGAN's fused edge network).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Jets per training step and generation of the fm suite
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
}

/// `jetgen train [<family>] [options]`: the options of the default family, or a family
/// subcommand with its own; both built from the family registry, so a new family needs no
/// change here.
#[derive(Clone, Debug)]
pub struct TrainCommand {
    matches: clap::ArgMatches,
}

impl clap::FromArgMatches for TrainCommand {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(TrainCommand { matches: m.clone() })
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.matches = m.clone();
        Ok(())
    }
}

impl clap::Args for TrainCommand {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let families = crate::runs::registry::FAMILIES;
        // `--lr -1` reaches the range check as a number instead of looking like a flag
        let mut cmd = (families[0].train_args)(cmd)
            .args_conflicts_with_subcommands(true)
            .allow_negative_numbers(true);
        for f in families {
            // about after the family's args: their struct doc would replace it
            let sub = (f.train_args)(clap::Command::new(f.name))
                .about(f.about)
                .allow_negative_numbers(true);
            cmd = cmd.subcommand(sub);
        }
        cmd
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl TrainCommand {
    /// Train the chosen family and print the run's summary.
    fn run(&self) -> crate::error::Result<()> {
        use crate::runs::registry::{family, FAMILIES};
        let (fam, matches) = match self.matches.subcommand() {
            Some((name, sub)) => (family(name)?, sub),
            None => (&FAMILIES[0], &self.matches),
        };
        let report = (fam.train)(matches)?;
        print!("{}", report.summary());
        Ok(())
    }
}

/// Parse arguments and run; returns the process exit code. Bad arguments print clap's
/// message and exit with 2; failures print `error: …` and exit with 1.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Train(t) => t.run(),
        Command::Anomaly(a) => crate::models::vae::anomaly::run(&a),
        Command::Latent(a) => crate::models::vae::prior::run(&a),
        Command::Dimensionality(a) => crate::models::vae::dimensionality::run(&a),
        Command::Sample {
            model,
            n,
            seed,
            out,
            device,
            mass,
            multiplicity,
            solver,
            steps,
            tol,
        } => sample::run(
            model,
            n,
            seed,
            out,
            &device,
            mass,
            multiplicity,
            sample::SolverChoice { solver, steps, tol },
        ),
        Command::Eval {
            real,
            generated,
            model,
            n,
            device,
            protocol,
            seed,
            json,
            plots,
            quick,
            fpnd,
            train,
        } => eval::run(eval::EvalArgs {
            real,
            generated,
            model,
            n,
            device,
            protocol,
            seed,
            json,
            plots,
            quick,
            fpnd,
            train,
        }),
        Command::Bench {
            suite,
            device,
            iters,
            json,
            threads,
            min_time,
            only,
            batch,
        } => bench::run(&bench::BenchArgs {
            suite,
            device,
            iters: iters.max(1),
            threads,
            min_time,
            json,
            only,
            batch,
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
