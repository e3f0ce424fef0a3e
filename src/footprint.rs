//! `switchboard bench --operator`: the operator's memory, measured.
//!
//! The operator runs as it does in production, `switchboard run` watching every
//! namespace, in a child process whose resident set is read from `/proc`; this process
//! plays `kubectl` and the PBX. Against the Kubernetes API of `KUBECONFIG` (a real
//! cluster, or the tests' fake API server), it:
//! 1. creates a PhoneSystem on a MikoPBX simulator (served here) and N Employees on it,
//!    in namespace `switchboard-bench`, and starts the operator;
//! 2. waits until every Employee is Ready, then for the operator to settle, and reads its
//!    resident set (`VmRSS`, the largest of a few samples) and peak (`VmHWM`);
//! 3. creates M Secrets of S KiB each in another namespace (`switchboard-bench-unrelated`,
//!    nothing of switchboard's), as Helm releases and TLS certificates would be, waits
//!    for the operator's watch to have had them, and reads its resident set again;
//! 4. deletes what it made (the Employees first, while the operator can still release
//!    their finalizers) and stops the operator.
//!
//! The difference of the two readings is what other people's Secrets cost the operator:
//! near nothing when it watches Secrets as metadata only, about M x S when it caches
//! their data.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams},
};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::{
    api::{BackendKind, Employee, PhoneSystem, conditions},
    bench, sim,
};

/// The namespace of the bench's Employees, PhoneSystem and credentials.
pub const NAMESPACE: &str = "switchboard-bench";
/// The namespace of the unrelated Secrets.
pub const UNRELATED: &str = "switchboard-bench-unrelated";
const SYSTEM: &str = "office-pbx";
/// Between two batches of Employees.
pub const BATCH_PAUSE: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct Config {
    /// Employees on the PhoneSystem.
    pub employees: usize,
    /// Created in this many batches, [`BATCH_PAUSE`] apart, as `kubectl apply` of one
    /// folder after another would: the operator runs a pass per batch.
    pub batches: usize,
    /// Unrelated Secrets created once the operator converged.
    pub unrelated_secrets: usize,
    /// Size of each unrelated Secret's data, in KiB.
    pub secret_kib: usize,
    /// The switchboard executable the operator runs as (`switchboard run`).
    pub program: PathBuf,
    /// `KUBECONFIG` of the operator; `None`: it inherits this process's.
    pub kubeconfig: Option<PathBuf>,
    /// How long convergence may take.
    pub deadline: Duration,
    /// How long the operator is given to take in the unrelated Secrets.
    pub settle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            employees: 1000,
            batches: 10,
            unrelated_secrets: 600,
            secret_kib: 200,
            program: PathBuf::from("switchboard"),
            kubeconfig: None,
            deadline: Duration::from_secs(600),
            settle: Duration::from_secs(15),
        }
    }
}

/// What was measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub employees: usize,
    pub converged_in: Duration,
    /// The operator's resident set once converged, in KiB.
    pub rss_kib: u64,
    /// ... and with the unrelated Secrets in the cluster.
    pub rss_with_secrets_kib: u64,
    /// Its peak resident set over the whole run, in KiB.
    pub peak_kib: u64,
    /// The unrelated Secrets' data, in bytes.
    pub unrelated_bytes: usize,
}

impl Report {
    /// What the unrelated Secrets cost the operator, in KiB (negative: it shrank).
    pub fn delta_kib(&self) -> i64 {
        i64::try_from(self.rss_with_secrets_kib).unwrap_or(i64::MAX)
            - i64::try_from(self.rss_kib).unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("starting the simulator: {0}")]
    Sim(#[from] sim::SimError),
    #[error("the operator: {0}")]
    Operator(String),
    #[error("{0}")]
    Timeout(String),
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the whole measurement with `client` (the API the operator is pointed at too).
pub async fn run(client: Client, config: &Config, out: &mut impl std::io::Write) -> Result<Report, Error> {
    let mut bench = Bench::start(client, config, out).await?;
    let result = async {
        bench.converge(out).await?;
        bench.add_unrelated_secrets(out).await
    }
    .await;
    let cleaned = bench.clean_up().await;
    let report = result?;
    cleaned?;
    Ok(report)
}

/// A measurement under way: the operator running, the simulator serving.
pub struct Bench {
    client: Client,
    config: Config,
    pbx: sim::Running,
    operator: Child,
    pid: u32,
    report: Report,
}

impl Bench {
    /// Makes the PhoneSystem and its simulator, starts the operator, and applies the
    /// Employees batch by batch.
    pub async fn start(
        client: Client,
        config: &Config,
        out: &mut impl std::io::Write,
    ) -> Result<Bench, Error> {
        let pbx =
            sim::spawn(sim::default_simulator(BackendKind::Mikopbx), ([127, 0, 0, 1], 0).into()).await?;
        for ns in [NAMESPACE, UNRELATED] {
            ensure_namespace(&client, ns).await?;
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        let credentials = Secret {
            metadata: ObjectMeta { name: Some(format!("{SYSTEM}-credentials")), ..ObjectMeta::default() },
            string_data: Some(pbx.sim.credentials()),
            ..Secret::default()
        };
        create(&secrets, &credentials).await?;
        let system: PhoneSystem = serde_json::from_value(json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "PhoneSystem",
            "metadata": {"name": SYSTEM, "namespace": NAMESPACE},
            "spec": {"mikopbx": sim::backend_block(BackendKind::Mikopbx, &pbx.url),
                     "credentialsSecretRef": {"name": format!("{SYSTEM}-credentials")},
                     "resyncInterval": "5m", "maxConcurrency": 32},
        }))
        .map_err(|e| Error::Operator(format!("the bench's PhoneSystem: {e}")))?;
        create(&Api::namespaced(client.clone(), NAMESPACE), &system).await?;
        writeln!(
            out,
            "operator bench: {} Employees on one MikoPBX, applied in {} batch(es) to a running `switchboard run`",
            config.employees,
            config.batches.max(1)
        )?;
        let operator = start_operator(config)?;
        let pid = operator.id().ok_or_else(|| Error::Operator("the operator has no process id".into()))?;
        let report = Report { employees: config.employees, ..Report::default() };
        let bench = Bench { client, config: config.clone(), pbx, operator, pid, report };
        // Its caches filled and its first pass made before the apply.
        tokio::time::sleep(BATCH_PAUSE).await;
        Ok(bench)
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Applies the Employees, batch after batch.
    pub async fn apply_employees(&mut self) -> Result<(), Error> {
        let employees: Api<Employee> = Api::namespaced(self.client.clone(), NAMESPACE);
        let people = bench::employees(self.config.employees, false);
        let batch = self.config.employees.div_ceil(self.config.batches.max(1)).max(1);
        for (n, chunk) in people.chunks(batch).enumerate() {
            if n > 0 {
                tokio::time::sleep(BATCH_PAUSE).await;
            }
            let created = futures_util::stream::iter(chunk.iter().cloned())
                .map(|person| {
                    let employees = employees.clone();
                    async move {
                        let mut spec = person.spec;
                        spec.phone_systems.truncate(1);
                        if let Some(m) = spec.phone_systems.first_mut() {
                            m.name = SYSTEM.to_owned();
                        }
                        // Released, not deleted, when the bench cleans up: no deletion
                        // guard to lift, and the accounts are the simulator's anyway.
                        spec.deletion_policy = crate::api::employee::DeletionPolicy::Orphan;
                        let mut e = Employee::new(&person.owner.name, spec);
                        e.metadata.namespace = Some(NAMESPACE.to_owned());
                        create(&employees, &e).await
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await;
            created.into_iter().collect::<Result<Vec<()>, Error>>()?;
        }
        Ok(())
    }

    /// Applies the Employees and waits until every one is Ready; then reads the
    /// operator's resident set.
    pub async fn converge(&mut self, out: &mut impl std::io::Write) -> Result<Duration, Error> {
        self.apply_employees().await?;
        let started = Instant::now();
        let employees: Api<Employee> = Api::namespaced(self.client.clone(), NAMESPACE);
        let systems: Api<PhoneSystem> = Api::namespaced(self.client.clone(), NAMESPACE);
        let want = u32::try_from(self.config.employees).unwrap_or(u32::MAX);
        loop {
            if let Some(status) = self.operator.try_wait()? {
                return Err(Error::Operator(format!("`switchboard run` exited: {status}")));
            }
            // The PhoneSystem's counts first (one small object); the Employees (a list of
            // all of them, as heavy on the API server as it sounds) only once they match.
            let counts = systems.get(SYSTEM).await?.status.and_then(|s| s.counts);
            let ready = if counts.as_ref().is_some_and(|c| c.in_sync == want) {
                let list = employees.list(&ListParams::default()).await?;
                list.items
                    .iter()
                    .filter(|e| {
                        e.status
                            .as_ref()
                            .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
                    })
                    .count()
            } else {
                0
            };
            if ready == self.config.employees {
                break;
            }
            if started.elapsed() > self.config.deadline {
                return Err(Error::Timeout(format!(
                    "{ready} of {} Employees Ready after {:?} (the PhoneSystem counts {counts:?})",
                    self.config.employees, self.config.deadline
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.report.converged_in = started.elapsed();
        writeln!(
            out,
            "  every Employee Ready {:.1} s after the last batch",
            self.report.converged_in.as_secs_f64()
        )?;
        self.report.rss_kib = settled_rss(self.pid, Duration::from_secs(3)).await;
        Ok(self.report.converged_in)
    }

    /// Creates the unrelated Secrets, gives the operator time to take them in, and reads
    /// its resident set again.
    pub async fn add_unrelated_secrets(&mut self, out: &mut impl std::io::Write) -> Result<Report, Error> {
        let config = &self.config;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), UNRELATED);
        let data = unrelated_data(config.secret_kib);
        let made = futures_util::stream::iter(0..config.unrelated_secrets)
            .map(|i| {
                let (secrets, data) = (secrets.clone(), data.clone());
                async move {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(format!("unrelated-{i:04}")),
                            labels: Some([("owner".to_owned(), "helm".to_owned())].into()),
                            ..ObjectMeta::default()
                        },
                        data: Some([("release".to_owned(), ByteString(data))].into()),
                        ..Secret::default()
                    };
                    create(&secrets, &secret).await
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        made.into_iter().collect::<Result<Vec<()>, Error>>()?;
        let unrelated_bytes = config.unrelated_secrets * config.secret_kib * 1024;
        writeln!(
            out,
            "  created {} unrelated Secrets of {} KiB ({:.0} MiB) in {UNRELATED}",
            config.unrelated_secrets,
            config.secret_kib,
            unrelated_bytes as f64 / 1_048_576.0
        )?;
        tokio::time::sleep(config.settle).await;
        self.report.rss_with_secrets_kib = settled_rss(self.pid, Duration::from_secs(3)).await;
        self.report.peak_kib = bench::peak_rss_kib(Some(self.pid)).unwrap_or(0);
        self.report.unrelated_bytes = unrelated_bytes;
        let report = self.report.clone();
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(out, "  operator RSS, converged:                  {:>7.1} MiB", mib(report.rss_kib))?;
        writeln!(
            out,
            "  operator RSS, with the unrelated Secrets: {:>7.1} MiB",
            mib(report.rss_with_secrets_kib)
        )?;
        writeln!(
            out,
            "  difference:                               {:>+7.1} MiB",
            report.delta_kib() as f64 / 1024.0
        )?;
        writeln!(out, "  operator peak RSS:                        {:>7.1} MiB", mib(report.peak_kib))?;
        Ok(report)
    }

    /// Removes what the bench made. The Employees go first, while the operator runs to
    /// release their finalizers; then the operator stops.
    pub async fn clean_up(mut self) -> Result<(), Error> {
        let result = clean_up(&self.client, &self.config, &mut self.operator).await;
        let _ = self.operator.kill().await;
        self.pbx.shutdown().await;
        result
    }
}

/// Data that does not compress, so no layer can make it look small.
fn unrelated_data(kib: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..kib * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// The largest `VmRSS` of `pid` over `over`, sampled every 250 ms: the operator's
/// footprint once its work is done, with what the allocator has not yet given back.
async fn settled_rss(pid: u32, over: Duration) -> u64 {
    let until = Instant::now() + over;
    let mut max = 0;
    while Instant::now() < until {
        max = max.max(rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    max
}

/// The current resident set of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn start_operator(config: &Config) -> Result<Child, Error> {
    let mut command = Command::new(&config.program);
    command
        .args(["run", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(path) = &config.kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command.spawn().map_err(|e| Error::Operator(format!("starting {}: {e}", config.program.display())))
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<(), Error> {
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    create(&Api::<Namespace>::all(client.clone()), &namespace).await
}

/// Creates `object`; one that exists already is fine.
async fn create<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes what the bench made. The Employees go first, while the operator runs to
/// release their finalizers (their accounts go with them, on the simulator).
async fn clean_up(client: &Client, config: &Config, operator: &mut Child) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), UNRELATED);
    for i in 0..config.unrelated_secrets {
        let _ = secrets.delete(&format!("unrelated-{i:04}"), &DeleteParams::default()).await;
    }
    let employees: Api<Employee> = Api::namespaced(client.clone(), NAMESPACE);
    let names: Vec<String> =
        employees.list(&ListParams::default()).await?.items.iter().map(|e| e.name_any()).collect();
    let deleted = futures_util::stream::iter(names)
        .map(|name| {
            let employees = employees.clone();
            async move { employees.delete(&name, &DeleteParams::default()).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    deleted.into_iter().collect::<Result<Vec<()>, kube::Error>>()?;
    let until = Instant::now() + config.deadline;
    while !employees.list(&ListParams::default().limit(1)).await?.items.is_empty() {
        if Instant::now() > until || operator.try_wait()?.is_some() {
            return Err(Error::Timeout("the bench's Employees were not released".into()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = Api::<PhoneSystem>::namespaced(client.clone(), NAMESPACE)
        .delete(SYSTEM, &DeleteParams::default())
        .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let _ = secrets.delete(&format!("{SYSTEM}-credentials"), &DeleteParams::default()).await;
    for ns in [NAMESPACE, UNRELATED] {
        let _ = Api::<Namespace>::all(client.clone()).delete(ns, &DeleteParams::default()).await;
    }
    Ok(())
}
