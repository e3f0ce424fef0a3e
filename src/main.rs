//! The `switchboard` binary: thin wiring around the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

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
    /// Run the operator: watch Employees and PhoneSystems and keep the PBXs in line.
    Run(RunArgs),
    /// The whole job on the built-in examples and simulators: no cluster, no set-up.
    Demo,
    /// Show what a sync of the manifests in a folder would do. Exit 0: nothing; 2: changes;
    /// 1: errors.
    Plan(FolderArgs),
    /// Apply the manifests in a folder to the phone systems, without a cluster.
    Sync(FolderArgs),
    /// Serve simulators of the five PBX APIs on loopback until interrupted.
    Sim(SimArgs),
    /// Measure switchboard against MikoPBX's own load-test script, on the simulators.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "SWITCHBOARD_NAMESPACE")]
    namespace: Option<String>,
}

#[derive(clap::Args, Debug)]
struct FolderArgs {
    /// Folder of Employee, PhoneSystem and Secret manifests (read recursively).
    #[arg(short = 'f', long = "filename")]
    dir: PathBuf,
    /// Where claims (which Employee owns which account) are kept between runs.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OutputFormat {
    Text,
    Json,
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

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Employee counts (per system), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    sizes: Vec<usize>,
    /// Also run N = 10,000 (last: peak RSS is the process's).
    #[arg(long)]
    large: bool,
    /// Latency every simulator adds to every request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// maxConcurrency of every PhoneSystem.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// R of the rate-limited scenario: the simulator allows R requests per second and the
    /// PhoneSystem's rateLimit is R.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
    rate_limit: u32,
    /// Run the rate-limited scenario only up to this N (it takes N / R seconds at least).
    #[arg(long, default_value_t = 1000)]
    rate_limited_max: usize,
    /// Percentage of accounts changed behind switchboard's back in the drift scenario.
    #[arg(long, default_value_t = 1.0)]
    drift_percent: f64,
    /// Systems to run switchboard on (default: all five).
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<SimKind>,
    /// Leave out the seed's script (and the ratios to it): for quick runs.
    #[arg(long)]
    no_baseline: bool,
    /// Folder for bench.md (the table) and bench.svg (time against N).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
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
        Command::Demo => {
            switchboard::demo::run(&mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let mut sizes = args.sizes;
            if args.large {
                sizes.push(10_000);
            }
            anyhow::ensure!(!sizes.is_empty() && !sizes.contains(&0), "--sizes needs counts above 0");
            let config = switchboard::bench::Config {
                sizes,
                latency_ms: args.latency_ms,
                concurrency: args.concurrency,
                rate_limit: args.rate_limit,
                rate_limited_max: args.rate_limited_max,
                drift_percent: args.drift_percent,
                systems: if args.systems.is_empty() {
                    BackendKind::ALL.to_vec()
                } else {
                    args.systems.iter().map(|&k| k.into()).collect()
                },
                baseline: !args.no_baseline,
                out: Some(args.out),
            };
            switchboard::bench::run(&config, &mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => folder(args, false).await,
        Command::Sync(args) => {
            anyhow::ensure!(args.state.is_some(), "sync needs --state FILE: claims must outlive the run");
            folder(args, true).await
        }
        Command::Run(args) => {
            let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
            let config = switchboard::controller::Config { namespace: args.namespace, ..Default::default() };
            let shutdown = Box::pin(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            switchboard::controller::run(client, config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn folder(args: FolderArgs, apply: bool) -> anyhow::Result<ExitCode> {
    let format = match args.output {
        OutputFormat::Text => switchboard::cli::Format::Text,
        OutputFormat::Json => switchboard::cli::Format::Json,
    };
    let env = std::env::vars().collect();
    let verdict = switchboard::cli::run(
        &args.dir,
        args.state.as_deref(),
        apply,
        format,
        &env,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .await?;
    Ok(ExitCode::from(verdict.code()))
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
