//! The `switchboard` binary: thin wiring around the library.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::{
    api::BackendKind,
    sim::{self, FaultConfig},
};

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
    /// Serve simulators of the five PBX APIs on loopback until interrupted.
    Sim(SimArgs),
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// Which systems to start (default: all five).
    #[arg(value_enum)]
    systems: Vec<SimKind>,
    /// First port; the systems take consecutive ports from it. 0: any free ports.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Seed for every random choice the faults make.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SimKind {
    Mikopbx,
    Thulium,
    Apio,
    Telphin,
    Ringostat,
}

impl From<SimKind> for BackendKind {
    fn from(kind: SimKind) -> Self {
        match kind {
            SimKind::Mikopbx => BackendKind::Mikopbx,
            SimKind::Thulium => BackendKind::Thulium,
            SimKind::Apio => BackendKind::Apio,
            SimKind::Telphin => BackendKind::Telphin,
            SimKind::Ringostat => BackendKind::Ringostat,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd => {
            print!("{}", switchboard::api::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(args) => serve_simulators(args).await,
    }
}

async fn serve_simulators(args: SimArgs) -> anyhow::Result<ExitCode> {
    let kinds: Vec<BackendKind> = if args.systems.is_empty() {
        BackendKind::ALL.to_vec()
    } else {
        args.systems.iter().map(|&k| k.into()).collect()
    };
    let faults = FaultConfig {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        seed: args.seed,
        ..FaultConfig::default()
    };
    let mut running = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let port = match args.port {
            0 => 0,
            base => base.checked_add(u16::try_from(i)?).context("port out of range")?,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = sim::spawn(sim::default_simulator(kind), addr)
            .await
            .with_context(|| format!("starting the {kind} simulator on {addr}"))?;
        server.set_faults(faults.clone());
        println!("{kind:<10} {}", server.url);
        for (key, value) in server.sim.credentials() {
            println!("           {key}: {value}");
        }
        running.push(server);
    }
    println!(
        "\nControl: GET <url>/_sim/accounts, GET <url>/_sim/stats, PUT <url>/_sim/faults. Ctrl-C stops."
    );
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    for server in running {
        server.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
