//! `switchboard bench`: switchboard against the seed's own method, on the built-in
//! simulators, in one process and one run.
//!
//! The baseline is MikoPBX's load test (seed 000): for each employee, one `getRecord`
//! for a template and one `saveRecord`, one after the other. switchboard runs the same
//! Employees through the engine the controller and the demo use (`engine::sync`, claims
//! in an in-memory [`State`]), on each of the five systems and on all five at once:
//! from empty (cold), again with nothing changed (steady state), after 1% of the
//! accounts were changed behind its back (drift), and from empty against a simulator that
//! enforces a request rate (rate-limited). Every simulator adds the same latency to every
//! request; request counts come from the simulators' own statistics.
//!
//! The simulators run in a child process (this executable's hidden `bench-simulators`
//! command, controlled through their `/_sim` routes), so that the peak RSS measured is
//! switchboard's own, as it would be next to a real PBX; the child's is shown beside it.
//! Both peaks (`VmHWM`) are reset before each scenario (`clear_refs`), so a row shows the
//! peak of that scenario alone.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt::Write as _,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::try_join_all;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};

use crate::{
    api::{BackendKind, EmployeeSpec, PhoneSystemSpec},
    backends::{self, Credentials, Secret, http::Settings},
    engine::{self, EmployeeView, Options, Report, Vault},
    plan::Owner,
    sim::{self, FaultConfig, Simulator, Stats},
    state::State,
};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Employee counts, run in ascending order.
    pub sizes: Vec<usize>,
    /// Added by every simulator to every request.
    pub latency_ms: u64,
    /// `maxConcurrency` of every PhoneSystem.
    pub concurrency: u32,
    /// R of the rate-limited scenario: the simulator allows R requests per second and the
    /// PhoneSystem's `rateLimit` is R.
    pub rate_limit: u32,
    /// The rate-limited scenario runs for sizes up to this (it takes at least N / R
    /// seconds per system by construction).
    pub rate_limited_max: usize,
    /// Share of the accounts changed behind switchboard's back in the drift scenario.
    pub drift_percent: f64,
    /// The systems switchboard runs on.
    pub systems: Vec<BackendKind>,
    /// Run the seed's script too (without it, no ratios to it).
    pub baseline: bool,
    /// Where `bench.md` and `bench.svg` go; `None`: nowhere.
    pub out: Option<PathBuf>,
    /// The switchboard executable that serves the simulators (`bench-simulators`).
    pub program: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sizes: vec![100, 1000],
            latency_ms: 20,
            concurrency: 32,
            rate_limit: 100,
            rate_limited_max: 1000,
            drift_percent: 1.0,
            systems: BackendKind::ALL.to_vec(),
            baseline: true,
            out: Some(PathBuf::from("target/bench")),
            program: PathBuf::from("switchboard"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting a simulator: {0}")]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Backend(#[from] backends::Error),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    State(#[from] crate::state::Error),
    #[error("baseline: {0}")]
    Baseline(String),
    #[error("bench set-up: {0}")]
    Setup(String),
    #[error("the simulators' process: {0}")]
    Simulators(String),
    #[error("writing the results: {0}")]
    Output(#[from] std::io::Error),
}

/// The scenarios, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// The seed's script: sequential getRecord + saveRecord per employee.
    Baseline,
    Cold,
    Steady,
    Drift,
    /// Cold, with the simulator enforcing R requests per second.
    RateLimited,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Cold => "cold",
            Scenario::Steady => "steady",
            Scenario::Drift => "drift",
            Scenario::RateLimited => "cold, rate-limited",
        }
    }
}

/// What the physical limit of a scenario is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// `writes / rps`: the simulator allows `rps` requests per second.
    RateLimited { writes: u64, rps: u32 },
    /// `writes × latency / concurrency`: every write costs one round trip at least.
    Unthrottled { writes: u64, latency_ms: u64, concurrency: u32 },
}

impl Limit {
    pub fn seconds(&self) -> f64 {
        match *self {
            Limit::RateLimited { writes, rps } => writes as f64 / f64::from(rps.max(1)),
            Limit::Unthrottled { writes, latency_ms, concurrency } => {
                writes as f64 * latency_ms as f64 / 1000.0 / f64::from(concurrency.max(1))
            }
        }
    }

    fn formula(&self) -> String {
        match *self {
            Limit::RateLimited { writes, rps } => format!("{writes}/{rps} rps"),
            Limit::Unthrottled { writes, latency_ms, concurrency } => {
                format!("{writes}×{latency_ms} ms/{concurrency}")
            }
        }
    }
}

/// One scenario on one system (or on all of them at once).
#[derive(Clone, Debug)]
pub struct Measurement {
    pub scenario: Scenario,
    /// A system's name, or "all five".
    pub system: String,
    /// Employees (per system).
    pub n: usize,
    /// Accounts the scenario handled over all its systems (N × systems).
    pub accounts: usize,
    pub wall: Duration,
    /// The simulators' request counts (summed over the systems).
    pub stats: Stats,
    /// Writes the engine sent (the baseline: saveRecord calls).
    pub writes: u64,
    /// Drift: accounts changed behind switchboard's back.
    pub changed: usize,
    /// Accounts the engine could not bring in line, and manual actions it reported.
    pub failures: usize,
    pub manual: usize,
    /// Throughput (accounts per second) over the baseline's at the same N.
    pub vs_baseline: Option<f64>,
    pub limit: Option<Limit>,
    /// switchboard's peak resident set during the scenario (`VmHWM`), in KiB.
    pub peak_rss_kib: Option<u64>,
    /// The simulators' process's, likewise.
    pub sim_peak_rss_kib: Option<u64>,
}

impl Measurement {
    /// Wall time over the physical limit (1.0: at the limit).
    pub fn over_limit(&self) -> Option<f64> {
        let limit = self.limit?.seconds();
        (limit > 0.0).then(|| self.wall.as_secs_f64() / limit)
    }

    /// Requests of an operation, any status.
    pub fn requests(&self, op: &str) -> u64 {
        self.stats.total(op)
    }
}

/// The systems' PhoneSystem names (also what the Employees list).
fn system_name(kind: BackendKind) -> &'static str {
    kind.as_str()
}

/// The largest N Telphin can hold: its numbers have at most 4 digits.
const TELPHIN_MAX: usize = 10_000;

/// Runs every scenario, printing rows to `out` as they finish; writes the markdown table
/// and the chart when the config names a folder.
pub async fn run(config: &Config, out: &mut impl Write) -> Result<Vec<Measurement>, Error> {
    // Plain-HTTP reqwest clients still want a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut sizes = config.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    writeln!(
        out,
        "switchboard bench: N = {} Employees; {} ms latency per request; maxConcurrency {}; \
         rate-limited scenario at {} rps for N <= {}; drift {}%",
        sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
        config.latency_ms,
        config.concurrency,
        config.rate_limit,
        config.rate_limited_max,
        config.drift_percent
    )?;
    writeln!(out, "{}", header())?;
    let mut all = Vec::new();
    for &n in &sizes {
        let systems: Vec<BackendKind> = config
            .systems
            .iter()
            .copied()
            .filter(|k| *k != BackendKind::Telphin || n <= TELPHIN_MAX)
            .collect();
        if systems.len() < config.systems.len() {
            writeln!(out, "(telphin skipped at N = {n}: its numbers have at most 4 digits)")?;
        }
        let employees = employees(n, config.systems.contains(&BackendKind::Telphin) && n <= TELPHIN_MAX);
        let mut rows = Vec::new();

        let mut base_rate = None;
        if config.baseline {
            let mut base = baseline(&config.program, &employees, config.latency_ms).await?;
            base.vs_baseline = Some(1.0);
            emit(out, &base)?;
            base_rate = Some(base.accounts as f64 / base.wall.as_secs_f64().max(f64::EPSILON));
            rows.push(base);
        }

        let mut fleets: Vec<Vec<BackendKind>> = systems.iter().map(|k| vec![*k]).collect();
        if systems.len() > 1 {
            fleets.push(systems.clone());
        }
        let mut runs: Vec<(Vec<BackendKind>, bool)> =
            fleets.into_iter().map(|kinds| (kinds, false)).collect();
        if systems.contains(&BackendKind::Mikopbx) {
            // MikoPBX's current API too: its list lacks other fields than the legacy one's.
            runs.push((vec![BackendKind::Mikopbx], true));
        }
        for (kinds, v3) in &runs {
            let fleet = Fleet::start(kinds, config, None, *v3).await?;
            for scenario in [Scenario::Cold, Scenario::Steady, Scenario::Drift] {
                let mut m = fleet.scenario(scenario, &employees, config).await?;
                m.vs_baseline =
                    base_rate.map(|b| m.accounts as f64 / m.wall.as_secs_f64().max(f64::EPSILON) / b);
                emit(out, &m)?;
                rows.push(m);
            }
            fleet.shutdown().await;
        }
        if n <= config.rate_limited_max {
            for kind in &systems {
                let fleet = Fleet::start(&[*kind], config, Some(config.rate_limit), false).await?;
                let mut m = fleet.scenario(Scenario::RateLimited, &employees, config).await?;
                m.vs_baseline =
                    base_rate.map(|b| m.accounts as f64 / m.wall.as_secs_f64().max(f64::EPSILON) / b);
                emit(out, &m)?;
                rows.push(m);
                fleet.shutdown().await;
            }
        }
        all.extend(rows);
        if let Some(dir) = &config.out {
            write_files(dir, config, &all)?;
        }
    }
    writeln!(out)?;
    for line in verdicts(config, &all) {
        writeln!(out, "{line}")?;
    }
    if let Some(dir) = &config.out {
        writeln!(out, "\nwrote {} and {}", dir.join("bench.md").display(), dir.join("bench.svg").display())?;
    }
    Ok(all)
}

// ---- the Employees ----------------------------------------------------------------------

/// Names in the alphabets the seed's script draws from (Russian, English, Chinese,
/// Japanese), and Polish.
const NAMES: [(&[&str], &[&str], bool); 5] = [
    (
        &["Иван", "Ольга", "Сергей", "Анна", "Дмитрий", "Мария", "Алексей", "Елена"],
        &["Петров", "Смирнова", "Иванов", "Кузнецова", "Соколов", "Попова", "Лебедев", "Новикова"],
        false,
    ),
    (
        &["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda"],
        &["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis"],
        false,
    ),
    (
        &["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳"],
        &["王", "李", "张", "刘", "陈", "杨", "黄", "赵"],
        true,
    ),
    (
        &["太郎", "花子", "一郎", "美咲", "翔", "さくら", "健", "陽菜"],
        &["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"],
        true,
    ),
    (
        &["Łukasz", "Zofia", "Paweł", "Małgorzata", "Grzegorz", "Agnieszka", "Wojciech", "Joanna"],
        &["Wąsowski", "Żółkiewska", "Nowak", "Wiśniewska", "Wójcik", "Kamińska", "Lewandowski", "Zielińska"],
        false,
    ),
];

/// The namespace of the bench's Employees.
const NAMESPACE: &str = "bench";

/// One bench Employee.
#[derive(Clone, Debug)]
pub struct BenchEmployee {
    pub owner: Owner,
    pub spec: EmployeeSpec,
}

/// `n` Employees on every system: extensions 10000 and up (5 digits fit every system but
/// Telphin, whose entry overrides it with 4 digits), unique e-mails and mobiles, random
/// names in several alphabets, and the seed's forwarding (no answer and busy go to the
/// mobile) on MikoPBX.
pub fn employees(n: usize, telphin: bool) -> Vec<BenchEmployee> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    (0..n)
        .map(|i| {
            let (given, family, family_first) = NAMES[rng.random_range(0..NAMES.len())];
            let given = given.choose(&mut rng).copied().unwrap_or("Anna");
            let family = family.choose(&mut rng).copied().unwrap_or("Nowak");
            let mobile = format!("7900{:07}", i);
            let mut systems = vec![json!({
                "name": system_name(BackendKind::Mikopbx),
                "mikopbx": {"forwarding": {"onNoAnswer": mobile, "onBusy": mobile}},
            })];
            for kind in [BackendKind::Thulium, BackendKind::Apio, BackendKind::Ringostat] {
                systems.push(json!({"name": system_name(kind)}));
            }
            if telphin {
                systems
                    .push(json!({"name": system_name(BackendKind::Telphin), "extension": format!("{i:04}")}));
            }
            let mut spec = json!({
                "givenName": given,
                "familyName": family,
                "email": format!("emp{i:05}@example.com"),
                "extension": (10_000 + i).to_string(),
                "mobile": format!("+{mobile}"),
                "phoneSystems": systems,
            });
            if family_first {
                spec["displayName"] = json!(format!("{family}{given}"));
            }
            let spec = serde_json::from_value(spec).unwrap_or_else(|_| fallback_spec(i));
            BenchEmployee { owner: Owner::new(NAMESPACE, format!("emp-{i:05}")), spec }
        })
        .collect()
}

/// Never used: the JSON above always parses. Keeps `employees` free of panics.
fn fallback_spec(i: usize) -> EmployeeSpec {
    EmployeeSpec {
        given_name: "Anna".into(),
        family_name: "Nowak".into(),
        display_name: None,
        email: format!("emp{i:05}@example.com"),
        extension: (10_000 + i).to_string(),
        mobile: None,
        login: None,
        enabled: true,
        password_secret_ref: None,
        phone_systems: Vec::new(),
        deletion_policy: Default::default(),
    }
}

// ---- the baseline -----------------------------------------------------------------------

const GET_RECORD: &str = "/pbxcore/api/extensions/getRecord";
const SAVE_RECORD: &str = "/pbxcore/api/extensions/saveRecord";

/// The seed's script, ported: for each employee, `getRecord?id=` for a template, the
/// person's fields written into it, `saveRecord` of the whole form; one at a time, on
/// loopback (no login). Two changes: the number is the Employee's (the script keeps the
/// PBX's next free 3-digit number, which runs out before 1,000), and one HTTP client is
/// reused (Python's `requests.get` opens a connection per call; this only helps it).
async fn baseline(
    program: &Path,
    employees: &[BenchEmployee],
    latency_ms: u64,
) -> Result<Measurement, Error> {
    let sims = Simulators::start(program, &[BackendKind::Mikopbx]).await?;
    let server = &sims.sims[0];
    server.set_faults(&FaultConfig { latency_ms, ..FaultConfig::default() }).await?;
    let client = reqwest::Client::new();
    reset_peak_rss(None);
    sims.reset_peak_rss();
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Baseline(format!("{what}: {e}"));
    let mut failures = 0;
    let mut saved = 0;
    let started = Instant::now();
    for e in employees {
        let got: Value = client
            .get(format!("{}{GET_RECORD}", server.url))
            .query(&[("id", "")])
            .send()
            .await
            .map_err(|err| fail("getRecord", &err))?
            .json()
            .await
            .map_err(|err| fail("getRecord", &err))?;
        let Some(Value::Object(mut data)) = (got["result"] == json!(true)).then(|| got["data"].clone())
        else {
            failures += 1;
            continue;
        };
        let mobile: String =
            e.spec.mobile.as_deref().unwrap_or_default().chars().filter(char::is_ascii_digit).collect();
        let set = |data: &mut Map<String, Value>, key: &str, value: &str| {
            data.insert(key.to_owned(), Value::String(value.to_owned()));
        };
        set(&mut data, "number", &e.spec.extension);
        set(&mut data, "user_username", &e.spec.full_name());
        set(&mut data, "user_email", &e.spec.email);
        set(&mut data, "mobile_number", &mobile);
        set(&mut data, "fwd_forwarding", &mobile);
        set(&mut data, "fwd_forwardingonbusy", &mobile);
        let form: Vec<(String, String)> = data.iter().map(|(k, v)| (k.clone(), form_text(v))).collect();
        let answer: Value = client
            .post(format!("{}{SAVE_RECORD}", server.url))
            .form(&form)
            .send()
            .await
            .map_err(|err| fail("saveRecord", &err))?
            .json()
            .await
            .map_err(|err| fail("saveRecord", &err))?;
        saved += 1;
        if answer["result"] != json!(true) {
            failures += 1;
        }
    }
    let wall = started.elapsed();
    let stats = server.stats().await?;
    let (peak_rss_kib, sim_peak_rss_kib) = (peak_rss_kib(None), sims.peak_rss_kib());
    sims.shutdown().await;
    let n = employees.len();
    Ok(Measurement {
        scenario: Scenario::Baseline,
        system: "mikopbx, seed script".into(),
        n,
        accounts: n,
        wall,
        stats,
        writes: saved,
        changed: 0,
        failures,
        manual: 0,
        vs_baseline: None,
        limit: Some(Limit::Unthrottled { writes: n as u64, latency_ms, concurrency: 1 }),
        peak_rss_kib,
        sim_peak_rss_kib,
    })
}

/// A value as Python's `requests` form-encodes it.
fn form_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        other => other.to_string(),
    }
}

// ---- switchboard ------------------------------------------------------------------------

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The simulator of `kind` as the bench needs it: limits that would stop N = 10,000 for
/// reasons unrelated to switchboard are widened (APIO's generated user ids get 8 random
/// digits instead of 4, Telphin takes 4-digit numbers and its hourly quota of 1,000
/// requests is lifted).
fn simulator(kind: BackendKind) -> Arc<dyn Simulator> {
    match kind {
        BackendKind::Apio => sim::apio::ApioSim::new(sim::apio::ApioConfig {
            user_id_rule: "{{group_id}}_u{{RND_8}}@{{domain}}".into(),
            ..sim::apio::ApioConfig::default()
        }),
        BackendKind::Telphin => sim::telphin::TelphinSim::new(sim::telphin::TelphinConfig {
            extension_len: 4,
            hourly_quota: u64::MAX,
            ..sim::telphin::TelphinConfig::default()
        }),
        other => sim::default_simulator(other),
    }
}

/// The PhoneSystem of `kind` at `url`. MikoPBX speaks the legacy API, the seed's, unless
/// `v3`.
fn phone_system(
    kind: BackendKind,
    url: &str,
    concurrency: u32,
    rate: Option<u32>,
    v3: bool,
) -> Result<PhoneSystemSpec, Error> {
    let mut block = sim::backend_block(kind, url);
    if kind == BackendKind::Mikopbx {
        block["apiGeneration"] = json!(if v3 { "v3" } else { "legacy" });
    }
    let mut spec = json!({
        kind.as_str(): block,
        "credentialsSecretRef": {"name": format!("{kind}-credentials")},
        "policy": "sync",
        "maxConcurrency": concurrency,
    });
    if let Some(rps) = rate {
        // No burst: the client never sends faster than R, whatever the server's bucket holds.
        spec["rateLimit"] = json!({"requestsPerSecond": rps, "burst": 1});
    }
    serde_json::from_value(spec).map_err(|e| Error::Setup(format!("PhoneSystem {kind}: {e}")))
}

/// Employees without a `passwordSecretRef` get generated passwords, as in the demo.
struct NoPasswords;

impl Vault for NoPasswords {
    fn password(&self, _owner: &Owner) -> Option<Secret> {
        None
    }
}

struct Member {
    kind: BackendKind,
    spec: PhoneSystemSpec,
    backend: backends::AnyBackend,
}

/// Systems synced together, with one claim store.
struct Fleet {
    sims: Simulators,
    members: Vec<Member>,
    state: State,
    latency_ms: u64,
    concurrency: u32,
    rate: Option<u32>,
    /// MikoPBX through its v3 API.
    v3: bool,
}

impl Fleet {
    async fn start(
        kinds: &[BackendKind],
        config: &Config,
        rate: Option<u32>,
        v3: bool,
    ) -> Result<Fleet, Error> {
        let sims = Simulators::start(&config.program, kinds).await?;
        let mut members = Vec::new();
        for server in &sims.sims {
            let kind = server.kind;
            server
                .set_faults(&FaultConfig {
                    latency_ms: config.latency_ms,
                    max_rps: rate.unwrap_or(0),
                    ..FaultConfig::default()
                })
                .await?;
            let spec = phone_system(kind, &server.url, config.concurrency, rate, v3)?;
            let credentials = Credentials::new(server.credentials.clone());
            let backend = backends::connect(&spec, &credentials, Settings::default().for_system(&spec))?;
            members.push(Member { kind, spec, backend });
        }
        Ok(Fleet {
            sims,
            members,
            state: State::in_memory(),
            latency_ms: config.latency_ms,
            concurrency: config.concurrency,
            rate,
            v3,
        })
    }

    fn label(&self) -> String {
        match self.members.as_slice() {
            [one] if self.v3 => format!("{} v3", one.kind),
            [one] => one.kind.to_string(),
            many => format!("all {} at once", many.len()),
        }
    }

    /// One pass over every member at once, as the controller would run them.
    async fn sync(&self, employees: &[BenchEmployee]) -> Result<Vec<Report>, Error> {
        // The statuses are borrowed, as the controller borrows them from its cache.
        let statuses: Vec<_> = employees.iter().map(|e| self.state.shared(&e.owner)).collect();
        let views: Vec<EmployeeView> = employees
            .iter()
            .zip(&statuses)
            .enumerate()
            .map(|(i, (e, status))| EmployeeView {
                owner: e.owner.clone(),
                spec: &e.spec,
                status: status.as_deref().map(Cow::Borrowed),
                rank: i64::try_from(i).unwrap_or(i64::MAX),
                deleting: false,
            })
            .collect();
        let options =
            Options { dry_run: false, allow_deletions: None, now: Time(Timestamp::now()), progress: None };
        let reports = try_join_all(self.members.iter().map(|m| {
            engine::sync(
                &m.backend,
                system_name(m.kind),
                &m.spec,
                &views,
                &self.state,
                &NoPasswords,
                &options,
            )
        }))
        .await?;
        // Released first, so that recording changes the statuses in place.
        drop(views);
        drop(statuses);
        for (m, report) in self.members.iter().zip(&reports) {
            self.state.record(system_name(m.kind), report)?;
        }
        Ok(reports)
    }

    async fn scenario(
        &self,
        scenario: Scenario,
        employees: &[BenchEmployee],
        config: &Config,
    ) -> Result<Measurement, Error> {
        let changed = match scenario {
            Scenario::Drift => self.drift(employees.len(), config.drift_percent).await?,
            _ => 0,
        };
        for server in &self.sims.sims {
            server.reset_stats().await?;
        }
        reset_peak_rss(None);
        self.sims.reset_peak_rss();
        let started = Instant::now();
        let reports = self.sync(employees).await?;
        let wall = started.elapsed();
        let (peak_rss_kib, sim_peak_rss_kib) = (peak_rss_kib(None), self.sims.peak_rss_kib());
        let mut stats = Stats::default();
        for server in &self.sims.sims {
            merge(&mut stats, &server.stats().await?);
        }
        let writes: u64 = reports.iter().map(|r| r.writes as u64).sum();
        let n = employees.len();
        // The fewest writes the scenario needs on one system: the systems run side by side.
        let needed = match scenario {
            Scenario::Cold | Scenario::RateLimited => n as u64,
            Scenario::Drift => (changed / self.members.len().max(1)) as u64,
            _ => 0,
        };
        let limit = match self.rate {
            Some(rps) => Limit::RateLimited { writes: needed, rps },
            None => Limit::Unthrottled {
                writes: needed,
                latency_ms: self.latency_ms,
                concurrency: self.concurrency,
            },
        };
        Ok(Measurement {
            scenario,
            system: self.label(),
            n,
            accounts: n * self.members.len(),
            wall,
            stats,
            writes,
            changed,
            failures: reports.iter().map(|r| r.failures).sum(),
            manual: reports.iter().map(|r| r.plan.manual.len()).sum(),
            vs_baseline: None,
            limit: Some(limit),
            peak_rss_kib,
            sim_peak_rss_kib,
        })
    }

    /// Changes the e-mail of `percent`% of each system's accounts (at least one), evenly
    /// spread, as a person in the web UI would. Returns how many were changed.
    async fn drift(&self, n: usize, percent: f64) -> Result<usize, Error> {
        let k = ((n as f64 * percent / 100.0).round() as usize).clamp(1, n.max(1));
        let mut changed = 0;
        for server in &self.sims.sims {
            let (id_key, email_key) = match server.kind {
                BackendKind::Mikopbx => ("id", "user_email"),
                BackendKind::Thulium => ("agent_id", "email"),
                BackendKind::Apio => ("userId", "emailAddress"),
                BackendKind::Telphin => ("id", "email"),
                BackendKind::Ringostat => ("staffId", "email"),
            };
            let dump = server.dump().await?;
            let accounts = dump.as_array().map(Vec::as_slice).unwrap_or_default();
            let len = accounts.len();
            for j in 0..k.min(len) {
                let account = &accounts[j * len / k];
                let id = match account.get(id_key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Err(Error::Setup(format!("{} account without {id_key}", server.kind))),
                };
                let mut patch = Map::new();
                patch.insert(email_key.into(), json!(format!("changed-by-hand-{j}@example.org")));
                server.tamper(&id, &patch).await?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn shutdown(self) {
        self.sims.shutdown().await;
    }
}

fn merge(into: &mut Stats, from: &Stats) {
    into.requests += from.requests;
    for (op, statuses) in &from.by_operation {
        let entry = into.by_operation.entry(op.clone()).or_default();
        for (status, count) in statuses {
            *entry.entry(*status).or_default() += count;
        }
    }
    for (fault, count) in &from.faults {
        *into.faults.entry(fault.clone()).or_default() += count;
    }
    into.latency_ms_sum += from.latency_ms_sum;
    into.peak_in_flight = into.peak_in_flight.max(from.peak_in_flight);
}

/// The peak resident set (`VmHWM`) of this process (`None`) or of `pid`, in KiB; `None`
/// off Linux.
pub fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(proc_file(pid, "status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a new peak: `VmHWM` drops to the current resident set (Linux 4.0 and later;
/// elsewhere the peak keeps growing, which only overstates).
fn reset_peak_rss(pid: Option<u32>) {
    let _ = std::fs::write(proc_file(pid, "clear_refs"), "5");
}

fn proc_file(pid: Option<u32>, file: &str) -> PathBuf {
    match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/{file}")),
        None => PathBuf::from(format!("/proc/self/{file}")),
    }
}

// ---- the simulators, in a child process -------------------------------------------------

/// What the child prints about each simulator it serves: one JSON line each.
#[derive(Serialize, Deserialize)]
struct Announcement {
    kind: String,
    url: String,
    credentials: BTreeMap<String, String>,
}

/// The child's side: serves the bench's simulators of `kinds` on loopback, announces them
/// on standard output, and stops when standard input closes (the bench ended or died).
pub async fn serve_simulators(kinds: &[BackendKind]) -> Result<(), Error> {
    let mut running = Vec::new();
    let mut lines = String::new();
    for &kind in kinds {
        let server = sim::spawn(simulator(kind), loopback()).await?;
        let announcement = Announcement {
            kind: kind.as_str().to_owned(),
            url: server.url.clone(),
            credentials: server.sim.credentials(),
        };
        let line = serde_json::to_string(&announcement).map_err(|e| Error::Simulators(e.to_string()))?;
        lines.push_str(&line);
        lines.push('\n');
        running.push(server);
    }
    let mut stdout = tokio::io::stdout();
    stdout.write_all(lines.as_bytes()).await?;
    stdout.flush().await?;
    let mut rest = Vec::new();
    tokio::io::stdin().read_to_end(&mut rest).await?;
    for server in running {
        server.shutdown().await;
    }
    Ok(())
}

/// The bench's side: a child process serving simulators, ended when this is shut down or
/// dropped.
struct Simulators {
    child: Child,
    sims: Vec<RemoteSim>,
}

impl Simulators {
    async fn start(program: &Path, kinds: &[BackendKind]) -> Result<Simulators, Error> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::Simulators(format!("{what} ({}): {e}", program.display()))
        };
        let mut child = Command::new(program)
            .arg("bench-simulators")
            .args(kinds.iter().map(|k| k.as_str()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail("starting", &e))?;
        let stdout = child.stdout.take().ok_or_else(|| fail("reading", &"no standard output"))?;
        let mut lines = BufReader::new(stdout).lines();
        let http = reqwest::Client::new();
        let mut sims = Vec::new();
        for &kind in kinds {
            let line = lines
                .next_line()
                .await
                .map_err(|e| fail("reading", &e))?
                .ok_or_else(|| fail("reading", &"it exited before announcing every simulator"))?;
            let a: Announcement = serde_json::from_str(&line).map_err(|e| fail("reading", &e))?;
            if a.kind != kind.as_str() {
                return Err(fail("reading", &format!("announced {} where {kind} was due", a.kind)));
            }
            sims.push(RemoteSim { kind, url: a.url, credentials: a.credentials, http: http.clone() });
        }
        Ok(Simulators { child, sims })
    }

    fn reset_peak_rss(&self) {
        if let Some(pid) = self.child.id() {
            reset_peak_rss(Some(pid));
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(Some(self.child.id()?))
    }

    /// Closes the child's standard input, its signal to stop, and waits a little for it.
    async fn shutdown(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// One simulator of the child, driven through its `/_sim` routes.
struct RemoteSim {
    kind: BackendKind,
    url: String,
    credentials: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl RemoteSim {
    async fn control<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &[&str],
        body: Option<&Value>,
    ) -> Result<Option<T>, Error> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::Simulators(format!("{} /_sim/{}: {e}", self.kind, path.join("/")))
        };
        let mut url = reqwest::Url::parse(&self.url).map_err(|e| fail(&e))?;
        url.path_segments_mut().map_err(|()| fail(&"not a base URL"))?.push("_sim").extend(path);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| fail(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| fail(&e))?;
        if !status.is_success() {
            return Err(fail(&format!("HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&bytes))));
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| fail(&e))
    }

    async fn set_faults(&self, faults: &FaultConfig) -> Result<(), Error> {
        let body = serde_json::to_value(faults).map_err(|e| Error::Simulators(e.to_string()))?;
        self.control::<Value>(reqwest::Method::PUT, &["faults"], Some(&body)).await.map(drop)
    }

    async fn stats(&self) -> Result<Stats, Error> {
        self.control(reqwest::Method::GET, &["stats"], None)
            .await?
            .ok_or_else(|| Error::Simulators(format!("{}: empty statistics", self.kind)))
    }

    async fn reset_stats(&self) -> Result<(), Error> {
        self.control::<Value>(reqwest::Method::POST, &["stats", "reset"], None).await.map(drop)
    }

    async fn dump(&self) -> Result<Value, Error> {
        Ok(self.control(reqwest::Method::GET, &["accounts"], None).await?.unwrap_or(Value::Null))
    }

    async fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), Error> {
        let body = Value::Object(patch.clone());
        self.control::<Value>(reqwest::Method::PATCH, &["accounts", id], Some(&body)).await.map(drop)
    }
}

// ---- output -----------------------------------------------------------------------------

fn header() -> String {
    format!(
        "{:>6}  {:<19} {:<22} {:>9} {:>7} {:>7} {:>10} {:>21} {:>9} {:>10}  requests by kind",
        "N",
        "scenario",
        "system",
        "wall",
        "writes",
        "req",
        "×baseline",
        "time / physical limit",
        "peak RSS",
        "(sims)"
    )
}

fn emit(out: &mut impl Write, m: &Measurement) -> Result<(), Error> {
    let mut notes = Vec::new();
    if m.changed > 0 {
        notes.push(format!("{} changed", m.changed));
    }
    if m.manual > 0 {
        notes.push(format!("{} manual", m.manual));
    }
    if m.failures > 0 {
        notes.push(format!("{} FAILED", m.failures));
    }
    let notes = if notes.is_empty() { String::new() } else { format!("  [{}]", notes.join(", ")) };
    writeln!(
        out,
        "{:>6}  {:<19} {:<22} {:>9} {:>7} {:>7} {:>10} {:>21} {:>9} {:>10}  {}{notes}",
        m.n,
        m.scenario.label(),
        m.system,
        seconds(m.wall),
        m.writes,
        m.stats.requests,
        m.vs_baseline.map(|r| format!("{r:.1}×")).unwrap_or_else(|| "-".into()),
        limit_text(m),
        rss_text(m.peak_rss_kib),
        format!("({})", rss_text(m.sim_peak_rss_kib)),
        requests_text(&m.stats)
    )?;
    out.flush()?;
    Ok(())
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 { format!("{s:.3} s") } else { format!("{s:.1} s") }
}

fn limit_text(m: &Measurement) -> String {
    match (m.limit, m.over_limit()) {
        (Some(limit), Some(ratio)) => format!("{ratio:.2} of {}", limit.formula()),
        _ => "- (no writes)".into(),
    }
}

fn rss_text(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

/// `op count` per operation, largest first; non-2xx statuses in brackets.
pub fn requests_text(stats: &Stats) -> String {
    let mut ops: Vec<(&String, &BTreeMap<u16, u64>)> = stats.by_operation.iter().collect();
    ops.sort_by_key(|(op, statuses)| (std::cmp::Reverse(statuses.values().sum::<u64>()), op.as_str()));
    ops.iter()
        .map(|(op, statuses)| {
            let total: u64 = statuses.values().sum();
            let odd: Vec<String> = statuses
                .iter()
                .filter(|(status, _)| !(200..300).contains(*status))
                .map(|(status, count)| format!("{status}×{count}"))
                .collect();
            if odd.is_empty() { format!("{op} {total}") } else { format!("{op} {total} [{}]", odd.join(" ")) }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The targets, measured: what the run shows, not assertions.
fn verdicts(config: &Config, rows: &[Measurement]) -> Vec<String> {
    let mut lines = vec!["Targets:".to_owned()];
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    for m in rows.iter().filter(|m| m.scenario == Scenario::Cold) {
        if let Some(r) = m.vs_baseline {
            lines.push(format!(
                "  >= 20× the baseline's throughput at {} ms, N = {}, {}: {r:.1}× ({})",
                config.latency_ms,
                m.n,
                m.system,
                mark(r >= 20.0)
            ));
        }
    }
    for m in rows.iter().filter(|m| m.scenario == Scenario::RateLimited) {
        if let Some(r) = m.over_limit() {
            // What the rate allows for the requests actually needed (k per account).
            let per_request =
                m.wall.as_secs_f64() * f64::from(config.rate_limit) / m.stats.requests.max(1) as f64;
            lines.push(format!(
                "  within 15% of N / R ({} / {} rps), {}: {} = {r:.2} × N/R ({}); {:.1} requests per account, {per_request:.2} × requests/R",
                m.n,
                config.rate_limit,
                m.system,
                seconds(m.wall),
                mark(r <= 1.15),
                m.stats.requests as f64 / m.n.max(1) as f64
            ));
        }
    }
    for m in rows.iter().filter(|m| m.scenario == Scenario::Steady) {
        let no_writes = writes_in(&m.stats) == 0 && m.writes == 0;
        let record_reads = record_reads_in(&m.stats);
        lines.push(format!(
            "  requests per resync (steady state), N = {}, {}: {} = {} to list + {record_reads} reads of single records (list only: {}); {} writes ({})",
            m.n,
            m.system,
            m.stats.requests,
            m.stats.requests.saturating_sub(record_reads),
            mark(record_reads == 0),
            m.writes,
            mark(no_writes)
        ));
    }
    for m in rows.iter().filter(|m| m.scenario == Scenario::Drift) {
        let manual =
            if m.manual > 0 { format!(", {} reported for a person to fix", m.manual) } else { String::new() };
        lines.push(format!(
            "  drift, N = {}, {}: {} changed, {} writes{manual} ({})",
            m.n,
            m.system,
            m.changed,
            m.writes,
            mark(m.writes as usize + m.manual == m.changed && m.writes as usize <= m.changed)
        ));
    }
    let large = rows.iter().filter(|m| m.n >= 10_000 && m.scenario != Scenario::Baseline);
    if let Some(m) = large.max_by_key(|m| m.peak_rss_kib) {
        let mib = m.peak_rss_kib.unwrap_or(0) as f64 / 1024.0;
        lines.push(format!(
            "  <= 150 MiB peak RSS at N = {}: {mib:.1} MiB, switchboard's largest ({} {}; the simulators' process: {}) ({})",
            m.n,
            m.scenario.label(),
            m.system,
            rss_text(m.sim_peak_rss_kib),
            mark(mib <= 150.0)
        ));
    }
    lines
}

/// Requests that change something on a system, by the simulators' operation names.
pub fn writes_in(stats: &Stats) -> u64 {
    stats
        .by_operation
        .iter()
        .filter(|(op, _)| is_write(op))
        .map(|(_, statuses)| statuses.values().sum::<u64>())
        .sum()
}

/// Reads of one account's own record (MikoPBX `getRecord`, legacy and v3; APIO
/// `getUser`): what a listing adds where the list itself lacks fields switchboard
/// compares and what it remembers of the record cannot stand for a read
/// (`docs/resync.md`).
pub fn record_reads_in(stats: &Stats) -> u64 {
    ["getRecord", "getUser"].iter().map(|op| stats.total(op)).sum()
}

/// Whether a simulator operation changes an account (the simulators' operation names:
/// MikoPBX legacy and v3, Thulium, APIO and Telphin, Ringostat).
pub fn is_write(op: &str) -> bool {
    const WRITES: [&str; 14] = [
        "saveRecord",
        "deleteRecord",
        // MikoPBX v3.
        "create",
        "patch",
        "update",
        "delete",
        "POST agents",
        "createUser",
        "updateUser",
        "deleteUser",
        "createExtension",
        "updateExtension",
        "deleteExtension",
        sim::ringostat::ADD_STAFF,
    ];
    WRITES.contains(&op)
}

fn write_files(dir: &std::path::Path, config: &Config, rows: &[Measurement]) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("bench.md"), markdown(config, rows))?;
    std::fs::write(dir.join("bench.svg"), svg(config, rows))?;
    Ok(())
}

/// The table as markdown.
pub fn markdown(config: &Config, rows: &[Measurement]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# switchboard bench\n\n{} ms latency per request; maxConcurrency {}; rate-limited scenario: \
         the simulator allows {} requests/s and the PhoneSystem's rateLimit is {} (burst 1); \
         drift: {}% of the accounts changed by hand. MikoPBX runs the legacy API (the seed's); \
         \"mikopbx v3\" is the same simulator through its current API. \
         \"×baseline\": accounts per second over the seed script's at the same N. \
         \"time / limit\": wall time over the physical limit, writes × latency / maxConcurrency \
         when unthrottled, writes / R when rate-limited. Peak RSS: switchboard's process \
         during the scenario (VmHWM, reset before each); the simulators run in a process of \
         their own, whose peak is in brackets.\n",
        config.latency_ms, config.concurrency, config.rate_limit, config.rate_limit, config.drift_percent
    );
    md.push_str("| N | scenario | system | wall | writes | requests | ×baseline | time / limit | peak RSS | (simulators) | requests by kind |\n");
    md.push_str("|---:|---|---|---:|---:|---:|---:|---|---:|---:|---|\n");
    for m in rows {
        let mut system = m.system.clone();
        if m.changed > 0 {
            let _ = write!(system, " ({} changed)", m.changed);
        }
        if m.manual > 0 {
            let _ = write!(system, " ({} manual)", m.manual);
        }
        if m.failures > 0 {
            let _ = write!(system, " ({} failed)", m.failures);
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | ({}) | {} |",
            m.n,
            m.scenario.label(),
            system,
            seconds(m.wall),
            m.writes,
            m.stats.requests,
            m.vs_baseline.map(|r| format!("{r:.1}×")).unwrap_or_else(|| "-".into()),
            limit_text(m),
            rss_text(m.peak_rss_kib),
            rss_text(m.sim_peak_rss_kib),
            requests_text(&m.stats).replace('|', "\\|")
        );
    }
    md.push('\n');
    for line in verdicts(config, rows) {
        let _ = writeln!(md, "{}", line.trim_start().replace("Targets:", "## Targets\n"));
    }
    md
}

/// Wall time against N, log-log, one line per scenario and system: hand-written SVG.
pub fn svg(config: &Config, rows: &[Measurement]) -> String {
    let mut series: BTreeMap<(Scenario, String), Vec<(f64, f64)>> = BTreeMap::new();
    for m in rows.iter().filter(|m| m.scenario != Scenario::Drift) {
        series
            .entry((m.scenario, m.system.clone()))
            .or_default()
            .push((m.n as f64, m.wall.as_secs_f64().max(1e-3)));
    }
    let (w, h, left, right, top, bottom) = (900.0, 520.0, 70.0, 290.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let xs: Vec<f64> = rows.iter().map(|m| m.n as f64).collect();
    let ys: Vec<f64> = rows
        .iter()
        .filter(|m| m.scenario != Scenario::Drift)
        .map(|m| m.wall.as_secs_f64().max(1e-3))
        .collect();
    let decade =
        |v: f64, up: bool| if up { 10f64.powf(v.log10().ceil()) } else { 10f64.powf(v.log10().floor()) };
    let range = |values: &[f64], floor: f64| {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(floor, f64::max);
        let lo = if lo.is_finite() { decade(lo.max(floor), false) } else { floor };
        let hi = decade(hi, true);
        (lo, if hi <= lo { lo * 10.0 } else { hi })
    };
    let (x0, x1) = range(&xs, 1.0);
    let (y0, y1) = range(&ys, 1e-3);
    let px = |x: f64| left + (x.log10() - x0.log10()) / (x1.log10() - x0.log10()) * pw;
    let py = |y: f64| top + ph - (y.log10() - y0.log10()) / (y1.log10() - y0.log10()) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="15">Wall time against N ({} ms latency, maxConcurrency {}), log-log</text>"#,
        config.latency_ms, config.concurrency
    );
    let mut x = x0;
    while x <= x1 * 1.0001 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            px(x),
            top + ph,
            top + ph + 18.0,
            x
        );
        x *= 10.0;
    }
    let mut y = y0;
    while y <= y1 * 1.0001 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4} s</text>"##,
            py(y),
            left + pw,
            left - 6.0,
            py(y) + 4.0,
            y
        );
        y *= 10.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">N (Employees per system)</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    const COLOURS: [&str; 10] = [
        "#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#17becf",
    ];
    for (i, ((scenario, system), points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = match scenario {
            Scenario::Baseline | Scenario::Cold => "",
            Scenario::Steady => r#" stroke-dasharray="6 3""#,
            _ => r#" stroke-dasharray="2 3""#,
        };
        let path: Vec<String> = points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for (x, y) in points {
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, px(*x), py(*y));
        }
        let ly = top + 10.0 + i as f64 * 17.0;
        let lx = left + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{} ({})</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(system),
            scenario.label()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employees_are_valid_and_distinct() {
        let list = employees(50, true);
        assert_eq!(list.len(), 50);
        let emails: std::collections::BTreeSet<_> = list.iter().map(|e| e.spec.email.clone()).collect();
        assert_eq!(emails.len(), 50);
        assert!(list.iter().all(|e| e.spec.phone_systems.len() == 5));
        assert_eq!(list[7].spec.membership("telphin").and_then(|m| m.extension.as_deref()), Some("0007"));
    }

    #[test]
    fn limits_follow_their_formulas() {
        let r = Limit::RateLimited { writes: 1000, rps: 100 };
        assert!((r.seconds() - 10.0).abs() < 1e-9);
        let u = Limit::Unthrottled { writes: 1000, latency_ms: 20, concurrency: 32 };
        assert!((u.seconds() - 0.625).abs() < 1e-9);
    }

    #[test]
    fn writes_are_told_from_reads() {
        for op in ["saveRecord", sim::ringostat::ADD_STAFF, "POST agents", "createUser"] {
            assert!(is_write(op), "{op}");
        }
        for op in ["getRecord", "getNewRecords", "sessionStart", "GET agents", "listUsers", "token"] {
            assert!(!is_write(op), "{op}");
        }
    }
}
