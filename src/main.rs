//! The `switchboard` binary: thin wiring around the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps the user accounts of phone systems in line with Employee manifests.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the Employee and PhoneSystem CRDs as YAML (what `crds/` holds).
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd => {
            print!("{}", switchboard::api::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
