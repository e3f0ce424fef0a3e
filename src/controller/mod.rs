//! `switchboard run`: the Kubernetes front end of the sync engine.
//!
//! Two controllers, and one watch (and one cache) per kind that both share
//! ([`watches`]): Employees, PhoneSystems, and Secrets as metadata only ([`secrets`]).
//! - The PhoneSystem controller ([`pass`]) is the unit of work: one engine pass per
//!   system, triggered by the system (its spec or the allow-deletions annotation), by an
//!   Employee that lists it or holds an account on it (created, its spec edited, or being
//!   deleted: not its status), and by the Secrets they read; debounced, so a `kubectl
//!   apply` of 700 Employees is a handful of passes; requeued every `resyncInterval` for
//!   drift correction.
//! - The Employee controller ([`employee`]) keeps the finalizer (an Employee leaves only
//!   once its accounts are deleted or released) and the Employee's conditions (`Ready`,
//!   `Synced`, and kstatus's `Reconciling`/`Stalled`), computed from the per-system
//!   entries the passes write and from which generation each pass planned from.
//!
//! Status is written by server-side apply, one field manager per writer ([`status`],
//! [`system_status`]); nothing is read before it is written, and writes are made only
//! when something changed, so a converged system costs no status write and no event.
//! A create costs its Employee at most five requests: the finalizer, the generated
//! password's Secret, the entry that claims the account, the `Created` event and the
//! conditions (the intent is recorded in the PhoneSystem's status, one write per pass).
//!
//! With leader election ([`Config::leader_election`], [`lease`]) every replica keeps its
//! watches and caches (and is ready once they are filled), but only the Lease holder
//! runs passes: a standby's reconciles wait for leadership, and a pass in flight when
//! leadership is lost is abandoned at once (the passes are crash-safe: create intents are
//! recorded before the creates). On shutdown no new pass starts, the passes in flight
//! get [`Config::shutdown_timeout`] to finish, and then the Lease is released.

mod employee;
pub mod events;
pub mod lease;
mod pass;
mod secrets;
mod status;
mod system_status;
mod teardown;
mod watches;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{StreamExt, future::BoxFuture};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt, controller,
        events::Reporter,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::watch;

use self::{
    events::Recorder,
    secrets::{Passwords, SecretMeta},
    watches::{Cache, Subscriber},
};
use crate::{
    api::{Employee, PhoneSystem},
    backends::{AnyBackend, http::Settings},
    engine,
    plan::Owner,
    telemetry::{Health, Metrics},
};

pub use status::{CONDITIONS_MANAGER, conditions_of, pass_manager};
pub use watches::LAST_APPLIED;

/// The finalizer that holds an Employee until its accounts are deleted or released.
pub const FINALIZER: &str = "switchboard.dev/accounts";
/// PhoneSystem annotation allowing a one-off number of deletions past the guard.
pub const ALLOW_DELETIONS: &str = "switchboard.dev/allow-deletions";
/// The field manager of the PhoneSystems' status and of the generated password Secrets.
pub const MANAGER: &str = "switchboard";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("waiting for: {0}")]
    Waiting(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error("object without a namespace or name")]
    Unnamed,
    #[error("encoding a request: {0}")]
    Encode(String),
}

/// What a controller run needs from outside, so tests control it.
#[derive(Clone)]
pub struct Config {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Settings of every backend's HTTP client.
    pub http: Settings,
    /// Quiet period before a triggered pass runs, gathering a burst of changes.
    pub debounce: Duration,
    /// The clock: status times come from it.
    pub now: Arc<dyn Fn() -> Time + Send + Sync>,
    pub metrics: Arc<Metrics>,
    /// Set ready once the caches are filled.
    pub health: Arc<Health>,
    /// `None`: this instance writes from the start (a single replica).
    pub leader_election: Option<lease::LeaseConfig>,
    /// How long the passes in flight at shutdown may take before they are abandoned.
    pub shutdown_timeout: Duration,
    /// How long a namespace teardown may wait for a PhoneSystem's accounts to be deleted
    /// before it lets the PhoneSystem go and reports what is left ([`teardown`]).
    pub teardown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: None,
            http: Settings::default(),
            debounce: Duration::from_secs(2),
            now: Arc::new(|| Time(Timestamp::now())),
            metrics: Arc::default(),
            health: Arc::default(),
            leader_election: None,
            shutdown_timeout: Duration::from_secs(20),
            // With the namespace controller's own rechecks (8 s), well within a minute.
            teardown_timeout: Duration::from_secs(30),
        }
    }
}

/// A backend kept between passes, so its token cache and rate limiter persist; rebuilt
/// when the spec or the credentials Secret change.
struct CachedBackend {
    generation: Option<i64>,
    /// The version of the credentials Secret it was built from.
    secret_version: Option<String>,
    backend: Arc<AnyBackend>,
}

struct Context {
    client: Client,
    config: Config,
    employees: Arc<Cache<Employee>>,
    systems: Arc<Cache<PhoneSystem>>,
    /// Every visible Secret's metadata; data is read on demand ([`secrets`]).
    secrets: Store<SecretMeta>,
    passwords: Passwords,
    recorder: Recorder,
    backends: Mutex<HashMap<ObjectRef<PhoneSystem>, CachedBackend>>,
    /// Employees waiting for a first pass, and since when ([`employee`]).
    waits: Mutex<employee::Waits>,
    /// The generation each system's last pass planned each Employee from ([`employee`]).
    planned: Mutex<employee::Planned>,
    /// Employees a pass planned from a generation their status does not record yet: the
    /// Employee controller looks at them again.
    replan: tokio::sync::mpsc::UnboundedSender<ObjectRef<Employee>>,
    /// PhoneSystems in a namespace teardown, since when this process saw it.
    teardowns: Mutex<HashMap<ObjectRef<PhoneSystem>, Instant>>,
    /// Whether this instance may write (always, without leader election).
    leading: watch::Receiver<bool>,
    /// Set at shutdown: no pass starts any more.
    stopping: watch::Receiver<bool>,
}

/// Whether a reconcile may go on.
enum Admission {
    Go,
    /// Leadership came after a wait: run again, from the object as it is now.
    Again,
    Stopping,
}

/// Resolves once `rx` holds a value `wanted` accepts, or its sender is gone.
async fn until(mut rx: watch::Receiver<bool>, wanted: impl Fn(bool) -> bool) {
    let _ = rx.wait_for(|v| wanted(*v)).await;
}

impl Context {
    /// The time, to the second: what a `Time` is on the wire, so that what a pass computes
    /// compares equal to what it reads back.
    fn now(&self) -> Time {
        let Time(now) = (self.config.now)();
        Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
    }

    /// Parks a standby's reconcile until this instance leads (or shuts down).
    async fn admit(&self) -> Admission {
        if *self.stopping.borrow() {
            return Admission::Stopping;
        }
        if *self.leading.borrow() {
            return Admission::Go;
        }
        tokio::select! {
            _ = until(self.leading.clone(), |l| l) => {}
            _ = until(self.stopping.clone(), |s| s) => return Admission::Stopping,
        }
        if *self.stopping.borrow() { Admission::Stopping } else { Admission::Again }
    }

    /// Resolves when this instance stops leading.
    async fn lost_leadership(&self) {
        until(self.leading.clone(), |l| !l).await
    }

    /// Since when this process has seen `key` (at `generation`) wait for a first pass.
    fn waiting_since(&self, key: &ObjectRef<Employee>, generation: Option<i64>) -> Instant {
        let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        let entry = waits.entry(key.clone()).or_insert((generation, Instant::now()));
        if entry.0 != generation {
            *entry = (generation, Instant::now());
        }
        entry.1
    }

    fn forget_wait(&self, key: &ObjectRef<Employee>) {
        self.waits.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Records that a pass of `system` planned from these Employees, and hands the
    /// Employee controller those whose status does not record that generation yet.
    fn planned_from<'a>(&self, system: &str, employees: impl Iterator<Item = &'a Employee>) {
        let mut planned = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        for e in employees {
            let key = ObjectRef::from(e);
            planned.entry(key.clone()).or_default().insert(system.to_owned(), e.metadata.generation);
            if status::generation_pending(e) {
                // Only fails once the Employee controller is gone (shutdown).
                let _ = self.replan.send(key);
            }
        }
    }

    /// The systems, of those the Employee concerns, whose last pass in this process did
    /// not plan from its generation.
    fn behind(
        &self,
        e: &Employee,
        existing: &std::collections::BTreeSet<String>,
    ) -> std::collections::BTreeSet<String> {
        let planned = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        let by_system = planned.get(&ObjectRef::from(e));
        status::concerned(e, existing)
            .into_iter()
            .filter(|system| by_system.and_then(|p| p.get(system)).is_none_or(|g| *g < e.metadata.generation))
            .collect()
    }

    /// After a pass: lets go of what belongs to objects that are gone (the backend of a
    /// deleted PhoneSystem holds its credentials; a deleted Employee's password), and
    /// updates the gauge of Secrets whose data is held.
    fn tidy(&self) {
        let backends = {
            let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
            backends.retain(|key, _| self.systems.store().get(key).is_some());
            backends.values().filter(|b| b.secret_version.is_some()).count()
        };
        self.passwords.retain_referred(&self.employees.store().state());
        self.waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| self.employees.store().get(key).is_some());
        self.planned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| self.employees.store().get(key).is_some());
        self.teardowns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| self.systems.store().get(key).is_some());
        let (passwords, _) = self.passwords.held_counts();
        self.config.metrics.secrets_held.set(i64::try_from(backends + passwords).unwrap_or(i64::MAX));
    }
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The PhoneSystems an Employee concerns: those it lists and those it holds accounts on.
fn systems_of_employee(e: &Employee) -> Vec<ObjectRef<PhoneSystem>> {
    let Some(ns) = e.namespace() else { return Vec::new() };
    let mut names: Vec<&str> = e.spec.phone_systems.iter().map(|m| m.name.as_str()).collect();
    names.extend(e.status.iter().flat_map(|s| s.phone_systems.iter().map(|p| p.name.as_str())));
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(|n| ObjectRef::new(n).within(&ns)).collect()
}

fn owner_of(e: &Employee) -> Option<Owner> {
    Some(Owner::new(e.namespace()?, e.metadata.name.clone()?))
}

/// Employee reconciles at once. kube's default is no limit: when a pass has written
/// 10,000 entries, 10,000 reconciles would each hold a request and a connection to the
/// API server at the same moment (about 15 MB of connection buffers at 3,000, measured
/// with heaptrack on the operator bench), for writes the API server serves a few at a
/// time anyway.
const EMPLOYEE_RECONCILES_AT_ONCE: u16 = 16;

/// Runs both controllers until `shutdown` resolves.
pub async fn run(client: Client, config: Config, shutdown: BoxFuture<'static, ()>) -> Result<(), Error> {
    let ns = config.namespace.as_deref();
    let watch_config = watcher::Config::default();

    // One watch per kind. Employees: both controllers hear of them; the PhoneSystem
    // controller only of what can change a pass (a new Employee, its spec, its deletion),
    // not of the status writes the passes and the Employee controller make.
    let (employees_store, employees_writer) = reflector::store();
    let employees = Arc::new(Cache::new(employees_store.clone()));
    let (employee_events, for_employee_controller) = Subscriber::new();
    let (employee_triggers, for_system_controller) = Subscriber::new();
    let employee_triggers = employee_triggers.filtered(watches::changed(|e: &Employee| {
        (e.metadata.generation, e.metadata.deletion_timestamp.is_some())
    }));
    let employees_watch = watches::run(
        watcher(api_for::<Employee>(&client, ns), watch_config.clone())
            .default_backoff()
            .modify(watches::slim),
        employees_writer,
        Some(employees.clone()),
        vec![employee_events, employee_triggers],
        "Employee",
    );
    // PhoneSystems: its own passes write its status; only the spec and the annotation
    // that allows deletions start one.
    let (systems_store, systems_writer) = reflector::store();
    let systems = Arc::new(Cache::new(systems_store.clone()));
    let (system_triggers, system_events) = Subscriber::new();
    let system_triggers = system_triggers.filtered(watches::changed(|p: &PhoneSystem| {
        (
            p.metadata.generation,
            p.annotations().get(ALLOW_DELETIONS).cloned(),
            p.metadata.deletion_timestamp.is_some(),
        )
    }));
    let systems_watch = watches::run(
        watcher(api_for::<PhoneSystem>(&client, ns), watch_config.clone())
            .default_backoff()
            .modify(watches::slim),
        systems_writer,
        Some(systems.clone()),
        vec![system_triggers],
        "PhoneSystem",
    );
    // Secrets: metadata only. A change or deletion of one a pass reads starts that pass.
    let (secrets_store, secrets_writer) = reflector::store::<SecretMeta>();
    let (secret_triggers, secret_events) = Subscriber::new();
    let secrets_watch = watches::run(
        // `Api<PartialObjectMeta<_>>` lists and watches as `PartialObjectMetadata`.
        watcher(api_for::<SecretMeta>(&client, ns), watch_config).default_backoff().modify(watches::slim),
        secrets_writer,
        None,
        vec![secret_triggers.with_deletions()],
        "Secret",
    );

    let reporter = Reporter { controller: "switchboard".into(), instance: std::env::var("POD_NAME").ok() };
    let (leading_tx, leading) = watch::channel(config.leader_election.is_none());
    let (stopping_tx, stopping) = watch::channel(false);
    let metrics = config.metrics.clone();
    metrics.leader.set(i64::from(config.leader_election.is_none()));
    let (replan_tx, mut replan_rx) = tokio::sync::mpsc::unbounded_channel();
    let replans = futures_util::stream::poll_fn(move |cx| replan_rx.poll_recv(cx));
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        employees: employees.clone(),
        systems: systems.clone(),
        secrets: secrets_store.clone(),
        passwords: Passwords::default(),
        recorder: Recorder::new(client.clone(), reporter, config.now.clone()),
        backends: Mutex::new(HashMap::new()),
        waits: Mutex::default(),
        planned: Mutex::default(),
        replan: replan_tx,
        teardowns: Mutex::default(),
        leading,
        stopping: stopping.clone(),
    });

    let by_secret = {
        let ctx = ctx.clone();
        move |s: Arc<SecretMeta>| secrets::systems_of_secret(&ctx, &s)
    };
    let stopped = |rx: watch::Receiver<bool>| until(rx, |s| s);
    let systems_controller = Controller::for_shared_stream(system_events, systems_store.clone())
        .with_config(controller::Config::default().debounce(config.debounce))
        .watches_shared_stream(for_system_controller, |e: Arc<Employee>| systems_of_employee(&e))
        .watches_shared_stream(secret_events, by_secret)
        .graceful_shutdown_on(stopped(stopping.clone()))
        .run(pass::reconcile, pass::error_policy, ctx.clone())
        .for_each({
            let ctx = ctx.clone();
            move |result| {
                let ctx = ctx.clone();
                async move {
                    ctx.tidy();
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "phone system pass did not complete");
                    }
                }
            }
        });

    let employees_controller =
        Controller::for_shared_stream(for_employee_controller, employees_store.clone())
            .with_config(
                controller::Config::default()
                    .debounce(Duration::from_millis(200))
                    .concurrency(EMPLOYEE_RECONCILES_AT_ONCE),
            )
            .reconcile_on(replans)
            .graceful_shutdown_on(stopped(stopping))
            .run(employee::reconcile, employee::error_policy, ctx)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "employee pass did not complete");
                }
            });

    // No pass before every cache is filled: a pass on a half-filled cache would report
    // present credentials missing and count half the Employees; the Employee controller
    // would report present PhoneSystems missing. Ready then, on a standby as on the
    // leader.
    let health = config.health.clone();
    let caches_ready = async move {
        let _ = tokio::join!(
            employees_store.wait_until_ready(),
            systems_store.wait_until_ready(),
            secrets_store.wait_until_ready()
        );
        health.set_ready(true);
        tracing::info!("caches filled: ready");
    };
    let controllers = async move {
        caches_ready.await;
        tokio::join!(systems_controller, employees_controller);
    };

    let (elector_stop_tx, elector_stop) = watch::channel(false);
    let elector = {
        let (client, metrics) = (client.clone(), metrics.clone());
        let election = config.leader_election.clone();
        async move {
            match election {
                Some(lease_config) => {
                    let on_change = move |leading: bool| {
                        metrics.leader.set(i64::from(leading));
                    };
                    lease::campaign(client, lease_config, leading_tx, on_change, elector_stop).await;
                }
                // Always leading; the sender lives as long as the controllers.
                None => until(elector_stop, |s| s).await,
            }
        }
    };
    let (health, timeout) = (config.health.clone(), config.shutdown_timeout);
    let work = async move {
        let mut controllers = Box::pin(controllers);
        tokio::select! {
            _ = &mut controllers => {}
            _ = shutdown => {
                tracing::info!(timeout_s = timeout.as_secs_f64(), "shutting down: no new pass; waiting for the passes in flight");
                health.set_ready(false);
                stopping_tx.send_replace(true);
                if tokio::time::timeout(timeout, &mut controllers).await.is_err() {
                    tracing::warn!("passes still running at the shutdown deadline: abandoned");
                }
            }
        }
        // Dropped before the Lease is released: nothing of this instance writes after.
        drop(controllers);
        elector_stop_tx.send_replace(true);
    };
    // The watches end with the process; the controllers end on the signal, the election
    // after them.
    tokio::select! {
        _ = async { tokio::join!(work, elector) } => {}
        _ = employees_watch => {}
        _ = systems_watch => {}
        _ = secrets_watch => {}
    }
    metrics.leader.set(0);
    Ok(())
}
