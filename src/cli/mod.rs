//! The `jetgen` command line: a thin shell over the library.

mod info;

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
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info::run(),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
