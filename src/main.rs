//! The `switchboard` binary: thin wiring around the library.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::{
    api::BackendKind,
    sim::{self, FaultConfig},
    telemetry::{self, LogFormat},
};

/// Keeps the user accounts of phone systems in line with Employee manifests.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about)]
struct Cli {
    /// Log format on stderr (`RUST_LOG` filters it).
    #[arg(long, global = true, value_enum, env = "SWITCHBOARD_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the Employee and PhoneSystem CRDs as YAML (what `crds/` holds).
    Crd,
    /// Print the ClusterRole switchboard needs (or, with --namespace, a Role; with
    /// --lease-namespace, the Role for its leader-election Lease).
    Rbac {
        /// A Role for an operator watching only this namespace.
        #[arg(long, conflicts_with = "lease_namespace")]
        namespace: Option<String>,
        /// The Role for the leader-election Lease in the operator's own namespace.
        #[arg(long)]
        lease_namespace: Option<String>,
    },
    /// Run the operator: watch Employees and PhoneSystems and keep the PBXs in line.
    Run(RunArgs),
    /// The whole job on the built-in examples and simulators: no cluster, no set-up.
    Demo,
    /// Show what a sync of the manifests in a folder would do. Exit 0: nothing; 2: changes;
    /// 1: errors.
    Plan(FolderArgs),
    /// Apply the manifests in a folder to the phone systems, without a cluster.
    Sync(FolderArgs),
    /// Write one Employee manifest per account of an existing phone system.
    Import(ImportArgs),
    /// A read-only look at a live system: authenticate, list, read one record, and say
    /// whether switchboard can manage it. Exit 0 when it can, 1 when it cannot.
    Probe(ProbeArgs),
    /// Serve simulators of the five PBX APIs on loopback until interrupted.
    Sim(SimArgs),
    /// For when the operator is gone: say what switchboard leaves on each PBX, then remove
    /// its finalizers from Employees and PhoneSystems (nothing else is changed).
    Release(ReleaseArgs),
    /// Measure switchboard against MikoPBX's own load-test script, on the simulators.
    Bench(BenchArgs),
    /// The simulators of `bench`, in their own process (so that switchboard's memory is
    /// measured alone): announces them as JSON lines, serves until stdin closes.
    #[command(hide = true)]
    BenchSimulators {
        #[arg(value_enum, required = true)]
        systems: Vec<SimKind>,
    },
}

#[derive(clap::Args, Debug)]
struct ReleaseArgs {
    /// The namespace to release.
    #[arg(short = 'n', long, required_unless_present = "all_namespaces", conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Release every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Say what would be left and released; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Go on although the operator's Lease is held and fresh (the operator seems to run).
    #[arg(long)]
    force: bool,
    /// The operator's leader-election Lease, checked to be stale.
    #[arg(long, default_value = "switchboard")]
    lease_name: String,
    #[arg(long, default_value = "switchboard-system")]
    lease_namespace: String,
}

#[derive(clap::Args, Debug)]
struct ProbeArgs {
    /// A file with the PhoneSystem (and its Secret), or the PhoneSystem's name in `-f DIR`.
    #[arg(long)]
    system: String,
    /// Folder of manifests to find the PhoneSystem and its Secret in, by name.
    #[arg(short = 'f', long = "filename")]
    dir: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: OutputFormat,
}

#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// A file with the PhoneSystem (and its Secret), or the PhoneSystem's name in `-f DIR`.
    #[arg(long)]
    system: String,
    /// Folder of manifests to find the PhoneSystem and its Secret in, by name.
    #[arg(short = 'f', long = "filename")]
    dir: Option<PathBuf>,
    /// Where to write the Employee manifests.
    #[arg(short = 'o', long = "output-dir")]
    out: PathBuf,
    /// State file to record the claims in, so a `plan` of the result changes nothing.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "SWITCHBOARD_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Run passes only while holding the Lease, so that several replicas never write at
    /// once. Off: this instance writes from the start (run a single replica).
    #[arg(long)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "switchboard")]
    lease_name: String,
    /// Namespace of the Lease: the operator's own (the Deployment sets POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "switchboard-system")]
    lease_namespace: String,
    /// How long passes in flight at SIGTERM or Ctrl-C may take before they are abandoned
    /// (`20s`, `1m`, or seconds).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: std::time::Duration,
}

/// `20s`, `500ms`, `2m`, or a number of seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 20s"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{text:?}: unit must be ms, s or m")),
    }
}

#[derive(clap::Args, Debug)]
struct FolderArgs {
    /// Folder of Employee, PhoneSystem and Secret manifests (read recursively).
    #[arg(short = 'f', long = "filename")]
    dir: PathBuf,
    /// Where claims (which Employee owns which account) are kept between runs.
    #[arg(long)]
    state: Option<PathBuf>,
    /// `plan` only: the claims the operator keeps in a cluster, from `kubectl get employees
    /// -A -o yaml` saved to a file, so the plan is the operator's (a pull-request check of
    /// a GitOps repository). Read, never written.
    #[arg(long, conflicts_with = "state")]
    claims: Option<PathBuf>,
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
    /// A dialect setting, `SYSTEM.KEY=VALUE` (or `KEY=VALUE` when one system is served):
    /// which of the answer shapes the vendors' evidence allows to serve, e.g.
    /// `mikopbx.generation=2023.2`. Repeatable; see docs/compatibility.md.
    #[arg(long = "dialect", value_name = "[SYSTEM.]KEY=VALUE")]
    dialects: Vec<String>,
    /// First port; the systems take consecutive ports from it. 0: any free ports.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on: 127.0.0.1, or 0.0.0.0 in a pod behind a Service. MikoPBX
    /// trusts only loopback callers without credentials, as the real one does.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Print, as YAML, the PhoneSystems of examples/ and their credentials Secrets
    /// pointing at the simulators `switchboard sim` serves with these arguments, and exit.
    /// Needs --port.
    #[arg(long)]
    print_manifests: bool,
    /// With --print-manifests: the namespace of the manifests (default: kubectl's).
    #[arg(long, requires = "print_manifests")]
    namespace: Option<String>,
    /// With --print-manifests: reach the simulators at this scheme and host instead of
    /// 127.0.0.1 (a Service in front of `switchboard sim --bind 0.0.0.0`), on the same ports.
    #[arg(long, requires = "print_manifests")]
    base_url: Option<String>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction answered 429 with `Retry-After`.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    /// Fraction that hang past any sane client timeout.
    #[arg(long, default_value_t = 0.0)]
    hang_rate: f64,
    /// Fraction answered with a body that is not JSON.
    #[arg(long, default_value_t = 0.0)]
    garbage_rate: f64,
    /// Fraction whose connection drops mid-answer.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction applied and then answered 502, as a proxy timing out after the PBX
    /// committed.
    #[arg(long, default_value_t = 0.0)]
    commit_then_fail_rate: f64,
    /// Seed for every random choice the faults make.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Employee counts (per system), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    sizes: Vec<usize>,
    /// Also run N = 10,000 (slow: the baseline alone takes minutes).
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
    /// Measure the operator instead: `switchboard run` with --employees Employees on the
    /// cluster of KUBECONFIG, its RSS without and with unrelated Secrets.
    #[arg(long)]
    operator: bool,
    /// Employees of the operator bench.
    #[arg(long, default_value_t = 1000, requires = "operator")]
    employees: usize,
    /// ... applied in this many batches, 3 s apart.
    #[arg(long, default_value_t = 10, requires = "operator")]
    batches: usize,
    /// Unrelated Secrets the operator bench creates in another namespace.
    #[arg(long, default_value_t = 600, requires = "operator")]
    unrelated_secrets: usize,
    /// Size of each unrelated Secret, in KiB.
    #[arg(long, default_value_t = 200, requires = "operator")]
    secret_kib: usize,
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
    switchboard::engine::memory::tune_malloc();
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" };
    telemetry::init_logs(cli.log_format, default_filter);
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
        Command::Rbac { namespace, lease_namespace } => {
            let yaml = match (namespace, lease_namespace) {
                (_, Some(ns)) => serde_saphyr::to_string(&switchboard::rbac::leader_election_role(&ns)),
                (Some(ns), None) => serde_saphyr::to_string(&switchboard::rbac::role(&ns)),
                (None, None) => serde_saphyr::to_string(&switchboard::rbac::cluster_role()),
            };
            print!("{}", yaml.context("encoding the role")?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(args) => serve_simulators(args).await,
        Command::Release(args) => {
            let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
            let options = switchboard::release::Options {
                namespace: args.namespace,
                dry_run: args.dry_run,
                force: args.force,
                lease: (args.lease_namespace, args.lease_name),
                now: k8s_openapi::jiff::Timestamp::now(),
            };
            switchboard::release::run(client, &options, &mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            switchboard::demo::run(&mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) if args.operator => {
            let config = switchboard::footprint::Config {
                employees: args.employees,
                batches: args.batches,
                unrelated_secrets: args.unrelated_secrets,
                secret_kib: args.secret_kib,
                program: std::env::current_exe().context("finding this executable to run the operator")?,
                ..Default::default()
            };
            let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
            switchboard::footprint::run(client, &config, &mut std::io::stdout().lock()).await?;
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
                program: std::env::current_exe()
                    .context("finding this executable to serve the simulators")?,
            };
            switchboard::bench::run(&config, &mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchSimulators { systems } => {
            let kinds: Vec<BackendKind> = systems.iter().map(|&k| k.into()).collect();
            switchboard::bench::serve_simulators(&kinds).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => folder(args, false).await,
        Command::Sync(args) => {
            anyhow::ensure!(args.state.is_some(), "sync needs --state FILE: claims must outlive the run");
            anyhow::ensure!(args.claims.is_none(), "--claims is for plan: sync keeps its claims in --state");
            folder(args, true).await
        }
        Command::Import(args) => import(args).await,
        Command::Probe(args) => probe(args).await,
        Command::Run(args) => operate(args).await,
    }
}

/// `switchboard run`.
async fn operate(args: RunArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    let metrics = Arc::new(telemetry::Metrics::default());
    let health = Arc::new(telemetry::Health::default());
    // Bound before anything else, so a taken port fails start-up instead of leaving an
    // operator without probes.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let server = tokio::spawn(telemetry::serve_on(listener, metrics.clone(), health.clone()));
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let leader_election = args.leader_election.then(|| {
        let identity = identity();
        tracing::info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "leader election on");
        switchboard::controller::lease::LeaseConfig::new(args.lease_name, args.lease_namespace, identity)
    });
    let config = switchboard::controller::Config {
        namespace: args.namespace,
        metrics,
        health,
        leader_election,
        shutdown_timeout: args.shutdown_timeout,
        ..Default::default()
    };
    let shutdown = Box::pin(async {
        match terminated().await {
            Ok(signal) => tracing::info!(signal, "shutdown requested"),
            Err(e) => tracing::error!(error = %e, "cannot listen for signals; shutting down"),
        }
    });
    switchboard::controller::run(client, config, shutdown).await?;
    server.abort();
    Ok(ExitCode::SUCCESS)
}

/// This instance's name in the Lease: the pod's name (set by the Deployment), else the
/// host's, with a random suffix so that two processes never share one.
fn identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        // A pod runs one operator process: its restart may take its own Lease back at once.
        return pod;
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "switchboard".into());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn terminated() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}

async fn folder(args: FolderArgs, apply: bool) -> anyhow::Result<ExitCode> {
    let format = match args.output {
        OutputFormat::Text => switchboard::cli::Format::Text,
        OutputFormat::Json => switchboard::cli::Format::Json,
    };
    let env = std::env::vars().collect();
    let (out, err) = (&mut std::io::stdout().lock(), &mut std::io::stderr().lock());
    let verdict = match &args.claims {
        Some(export) => {
            let state = switchboard::state::State::from_cluster_export(export)?;
            switchboard::cli::run_with(&args.dir, &state, apply, format, &env, out, err).await?
        }
        None => {
            switchboard::cli::run(&args.dir, args.state.as_deref(), apply, format, &env, out, err).await?
        }
    };
    Ok(ExitCode::from(verdict.code()))
}

/// The PhoneSystem `--system` names (a file, or a name in `-f DIR`) and its credentials:
/// from its Secret in the manifests, overridden by `SWITCHBOARD_<SYSTEM>_<key>`.
fn load_system(
    system: &str,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<(switchboard::api::PhoneSystem, switchboard::backends::Credentials)> {
    use switchboard::manifests::Manifests;
    let path = PathBuf::from(system);
    let (manifests, wanted) = if path.is_file() {
        let mut m = Manifests::default();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        m.add_text(&path.display().to_string(), &text);
        (m, None)
    } else {
        let dir = dir.context("--system names no file: give the folder with -f DIR")?;
        (
            Manifests::load_dir(dir).with_context(|| format!("reading {}", dir.display()))?,
            Some(system.to_owned()),
        )
    };
    let found = manifests
        .systems
        .iter()
        .find(|s| wanted.is_none() || s.metadata.name == wanted)
        .with_context(|| format!("no PhoneSystem {system} found"))?;
    let namespace = found.metadata.namespace.clone().unwrap_or_default();
    let name = found.metadata.name.clone().unwrap_or_default();
    let mut data = found
        .spec
        .credentials_secret_ref
        .as_ref()
        .and_then(|r| manifests.secret_data(&namespace, &r.name))
        .unwrap_or_default();
    data.extend(switchboard::cli::env_credentials(&name, &std::env::vars().collect()));
    Ok((found.clone(), switchboard::backends::Credentials::new(data)))
}

async fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let (system, credentials) = load_system(&args.system, args.dir.as_deref())?;
    let settings = switchboard::backends::http::Settings::default().for_system(&system.spec);
    let report = switchboard::probe::run(&system, &credentials, settings).await?;
    match args.output {
        OutputFormat::Text => print!("{report}"),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.manageable() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (system, credentials) = load_system(&args.system, args.dir.as_deref())?;
    let state = args.state.as_deref().map(switchboard::state::State::open).transpose()?;
    let done = switchboard::import::run(&system, &credentials, &args.out, state.as_ref()).await?;
    println!("{} Employee manifest(s) written to {}", done.written.len(), args.out.display());
    for (id, why) in &done.skipped {
        println!("skipped account {id}: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--dialect` values as one patch per system. A bare `KEY=VALUE` needs exactly one
/// system served.
fn dialect_patches(
    settings: &[String],
    kinds: &[BackendKind],
) -> anyhow::Result<BTreeMap<BackendKind, serde_json::Map<String, serde_json::Value>>> {
    let mut patches: BTreeMap<BackendKind, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for text in settings {
        let (key, value) = sim::dialect_setting(text).map_err(|e| anyhow::anyhow!("--dialect: {e}"))?;
        let named = key.split_once('.').and_then(|(system, key)| {
            kinds.iter().chain(BackendKind::ALL.iter()).find(|k| k.to_string() == system).map(|k| (*k, key))
        });
        let (kind, key) = match (named, kinds) {
            (Some((kind, key)), _) => (kind, key.to_owned()),
            (None, [only]) => (*only, key),
            (None, _) => {
                anyhow::bail!("--dialect {text}: name the system (SYSTEM.KEY=VALUE) when serving several")
            }
        };
        anyhow::ensure!(kinds.contains(&kind), "--dialect {text}: {kind} is not being served");
        patches.entry(kind).or_default().insert(key, value);
    }
    Ok(patches)
}

/// `switchboard sim --print-manifests`: where the same arguments would serve, as manifests.
fn print_manifests(
    args: &SimArgs,
    kinds: &[BackendKind],
    dialects: &BTreeMap<BackendKind, serde_json::Map<String, serde_json::Value>>,
) -> anyhow::Result<ExitCode> {
    let urls = switchboard::tryit::urls(args.port, kinds.len(), args.base_url.as_deref())?;
    let mut served = Vec::new();
    for (kind, url) in kinds.iter().zip(urls) {
        // The simulator these arguments would start, asked for its credentials and for
        // the API generation its dialect serves.
        let simulator = sim::default_simulator(*kind);
        if let Some(patch) = dialects.get(kind) {
            simulator.set_dialect(patch).with_context(|| format!("--dialect for {kind}"))?;
        }
        let generation = simulator.dialect().get("generation").and_then(|g| g.as_str()).map(str::to_owned);
        served.push(switchboard::tryit::Served {
            kind: *kind,
            url,
            credentials: simulator.credentials(),
            legacy: matches!(generation.as_deref(), Some("2023.2" | "2024.1")),
        });
    }
    let mut command = format!("switchboard sim --port {}", args.port);
    for kind in kinds.iter().filter(|_| !args.systems.is_empty()) {
        command.push_str(&format!(" {kind}"));
    }
    for dialect in &args.dialects {
        command.push_str(&format!(" --dialect {dialect}"));
    }
    print!("{}", switchboard::tryit::manifests(&served, args.namespace.as_deref(), &command)?);
    Ok(ExitCode::SUCCESS)
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
        rate_limit_rate: args.rate_limit_rate,
        hang_rate: args.hang_rate,
        garbage_rate: args.garbage_rate,
        drop_rate: args.drop_rate,
        commit_then_fail_rate: args.commit_then_fail_rate,
        seed: args.seed,
        ..FaultConfig::default()
    };
    let dialects = dialect_patches(&args.dialects, &kinds)?;
    if args.print_manifests {
        return print_manifests(&args, &kinds, &dialects);
    }
    let mut running = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let port = match args.port {
            0 => 0,
            first => switchboard::tryit::port_of(first, i)?,
        };
        let addr = SocketAddr::new(args.bind, port);
        let simulator = sim::default_simulator(kind);
        if let Some(patch) = dialects.get(&kind) {
            simulator.set_dialect(patch).with_context(|| format!("--dialect for {kind}"))?;
        }
        let server = sim::spawn(simulator, addr)
            .await
            .with_context(|| format!("starting the {kind} simulator on {addr}"))?;
        server.set_faults(faults.clone());
        println!("{kind:<10} {}", server.url);
        let dialect = server.sim.dialect();
        if dialect.as_object().is_some_and(|d| !d.is_empty()) {
            println!("           dialect: {dialect}");
        }
        for (key, value) in server.sim.credentials() {
            println!("           {key}: {value}");
        }
        running.push(server);
    }
    println!(
        "\nControl: GET <url>/_sim/accounts, GET <url>/_sim/stats, PUT <url>/_sim/faults. Ctrl-C stops."
    );
    // SIGTERM too: in a pod the simulators are PID 1, which ignores a signal it has no
    // handler for.
    let signal = terminated().await.context("waiting for Ctrl-C or SIGTERM")?;
    tracing::info!(signal, "simulators stopping");
    for server in running {
        server.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
