//! `switchboard run`: the Kubernetes front end of the sync engine.
//!
//! Two controllers share three watch caches (Employees, PhoneSystems, Secrets):
//! - the PhoneSystem controller is the unit of work: one engine pass per system,
//!   triggered by the system itself, by any Employee that lists it (or holds an account on
//!   it), and by the Secrets they read; debounced, so a `kubectl apply` of 700 Employees is
//!   a handful of passes; requeued every `resyncInterval` for drift correction;
//! - the Employee controller keeps the finalizer (an Employee leaves only once its accounts
//!   are deleted or released) and the Employee's `Ready`/`Synced` conditions, computed from
//!   the per-system entries the passes write.
//!
//! Writes are made only when something changed, so a converged system costs no status
//! patch and no event.
//!
//! With leader election ([`Config::leader_election`], [`lease`]) every replica keeps its
//! watches and caches (and is ready once they are filled), but only the Lease holder
//! runs passes: a standby's reconciles wait for leadership, and a pass in flight when
//! leadership is lost is abandoned at once (the passes are crash-safe: create intents are
//! recorded before the creates). On shutdown no new pass starts, the passes in flight
//! get [`Config::shutdown_timeout`] to finish, and then the Lease is released.

pub mod lease;
mod status;

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use k8s_openapi::{
    ByteString,
    api::core::v1::{ObjectReference, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        finalizer::{self, Event as FinalizerEvent},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::{
    api::{
        AccountStatus, Employee, PhoneSystem,
        conditions::{self, reason},
    },
    backends::{self, AnyBackend, Credentials, Secret as Password, http::Settings},
    engine::{self, EmployeeView, IntentStore, Options, Vault},
    plan::Owner,
    telemetry::{Health, Metrics, PbxObserver},
};

/// The finalizer that holds an Employee until its accounts are deleted or released.
pub const FINALIZER: &str = "switchboard.dev/accounts";
/// PhoneSystem annotation allowing a one-off number of deletions past the guard.
pub const ALLOW_DELETIONS: &str = "switchboard.dev/allow-deletions";
/// The field manager of every write.
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
        }
    }
}

/// A backend kept between passes, so its token cache and rate limiter persist; rebuilt
/// when the spec or the credentials change.
struct CachedBackend {
    generation: Option<i64>,
    secret_version: Option<String>,
    backend: Arc<AnyBackend>,
}

struct Context {
    client: Client,
    config: Config,
    employees: Store<Employee>,
    systems: Store<PhoneSystem>,
    secrets: Store<Secret>,
    recorder: Recorder,
    backends: Mutex<HashMap<ObjectRef<PhoneSystem>, CachedBackend>>,
    /// Serialises writes of one Employee's status across concurrent passes.
    status_locks: Mutex<HashMap<Owner, Arc<tokio::sync::Mutex<()>>>>,
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
    fn now(&self) -> Time {
        (self.config.now)()
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

    fn employee_lock(&self, owner: &Owner) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.status_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(owner.clone()).or_default().clone()
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

/// `kubectl apply`'s copy of the last applied object: as large as the object itself, and
/// never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the caches keep of an object: without its managed fields and `kubectl apply`'s
/// copy, which together are often larger than the rest of it. 10,000 Employees, and every
/// Secret of the watched namespaces, live in memory for the process's life.
fn slim<K: kube::Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().remove(LAST_APPLIED);
}

/// Runs both controllers until `shutdown` resolves.
pub async fn run(client: Client, config: Config, shutdown: BoxFuture<'static, ()>) -> Result<(), Error> {
    let ns = config.namespace.as_deref();
    let employees_api: Api<Employee> = api_for(&client, ns);
    let systems_api: Api<PhoneSystem> = api_for(&client, ns);
    let secrets_api: Api<Secret> = api_for(&client, ns);

    let (employees, employees_writer) = reflector::store();
    let (secrets, secrets_writer) = reflector::store();
    // The caches the passes read; the controllers below keep their own watches to be
    // triggered by the same objects.
    let employee_cache = reflector::reflector(
        employees_writer,
        watcher(employees_api.clone(), watcher::Config::default()).modify(slim::<Employee>),
    )
    .default_backoff()
    .for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!(error = %e, "watching Employees");
        }
    });
    let secret_cache = reflector::reflector(
        secrets_writer,
        watcher(secrets_api.clone(), watcher::Config::default()).modify(slim::<Secret>),
    )
    .default_backoff()
    .for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!(error = %e, "watching Secrets");
        }
    });

    let systems_controller = Controller::new(systems_api, watcher::Config::default())
        .with_config(controller::Config::default().debounce(config.debounce));
    let systems_store = systems_controller.store();
    let reporter = Reporter { controller: "switchboard".into(), instance: std::env::var("POD_NAME").ok() };
    let (leading_tx, leading) = watch::channel(config.leader_election.is_none());
    let (stopping_tx, stopping) = watch::channel(false);
    let metrics = config.metrics.clone();
    metrics.leader.set(i64::from(config.leader_election.is_none()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        employees: employees.clone(),
        systems: systems_store.clone(),
        secrets: secrets.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        backends: Mutex::new(HashMap::new()),
        status_locks: Mutex::new(HashMap::new()),
        leading,
        stopping: stopping.clone(),
    });

    let by_employee = {
        let employees_store = employees.clone();
        move |e: Employee| systems_of_employee(&e, &employees_store)
    };
    let by_secret = {
        let systems_store = systems_store.clone();
        let employees_store = employees.clone();
        move |s: Secret| systems_of_secret(&s, &systems_store, &employees_store)
    };
    let stopped = |rx: watch::Receiver<bool>| until(rx, |s| s);
    let systems = systems_controller
        .watches(employees_api.clone(), watcher::Config::default(), by_employee)
        .watches(secrets_api, watcher::Config::default(), by_secret)
        .graceful_shutdown_on(stopped(stopping.clone()))
        .run(reconcile_system, system_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "phone system pass did not complete");
            }
        });

    let employees_controller = Controller::new(employees_api, watcher::Config::default())
        .with_config(controller::Config::default().debounce(Duration::from_millis(200)))
        .graceful_shutdown_on(stopped(stopping))
        .run(reconcile_employee, employee_error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "employee pass did not complete");
            }
        });

    // No pass before the caches hold every Employee and Secret: a pass on a half-filled
    // cache would report present credentials missing and count half the Employees.
    let caches_ready = {
        let (employees, secrets) = (employees.clone(), secrets.clone());
        async move {
            let _ = tokio::join!(employees.wait_until_ready(), secrets.wait_until_ready());
        }
    };
    // Ready once every cache is filled, the PhoneSystems' too (the controller's own,
    // which it fills once it runs): on a standby as on the leader.
    let health = config.health.clone();
    let readiness = async move {
        let _ = systems_store.wait_until_ready().await;
        health.set_ready(true);
        tracing::info!("caches filled: ready");
    };
    let controllers = async move {
        caches_ready.await;
        tokio::join!(systems, employees_controller, readiness);
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
    // The caches end with the process; the controllers end on the signal, the election
    // after them.
    tokio::select! {
        _ = async { tokio::join!(work, elector) } => {}
        _ = employee_cache => {}
        _ = secret_cache => {}
    }
    metrics.leader.set(0);
    Ok(())
}

/// The PhoneSystems an Employee concerns: those it lists and those it holds accounts on.
fn systems_of_employee(e: &Employee, _store: &Store<Employee>) -> Vec<ObjectRef<PhoneSystem>> {
    let Some(ns) = e.namespace() else { return Vec::new() };
    let mut names: Vec<&str> = e.spec.phone_systems.iter().map(|m| m.name.as_str()).collect();
    names.extend(e.status.iter().flat_map(|s| s.phone_systems.iter().map(|p| p.name.as_str())));
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(|n| ObjectRef::new(n).within(&ns)).collect()
}

/// The PhoneSystems a Secret matters to: by credentials, or by an Employee's password.
fn systems_of_secret(
    s: &Secret,
    systems: &Store<PhoneSystem>,
    employees: &Store<Employee>,
) -> Vec<ObjectRef<PhoneSystem>> {
    let (Some(ns), name) = (s.namespace(), s.name_any()) else { return Vec::new() };
    let mut refs: Vec<ObjectRef<PhoneSystem>> = systems
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| p.spec.credentials_secret_ref.as_ref().is_some_and(|r| r.name == name))
        .map(|p| ObjectRef::from(p.as_ref()))
        .collect();
    for e in employees.state() {
        if e.namespace().as_deref() == Some(ns.as_str())
            && e.spec.password_secret_ref.as_ref().is_some_and(|r| r.name == name)
        {
            refs.extend(systems_of_employee(&e, employees));
        }
    }
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs.dedup();
    refs
}

fn owner_of(e: &Employee) -> Option<Owner> {
    Some(Owner::new(e.namespace()?, e.metadata.name.clone()?))
}

fn secret_data(
    store: &Store<Secret>,
    ns: &str,
    name: &str,
) -> Option<(BTreeMap<String, String>, Option<String>)> {
    let secret = store.get(&ObjectRef::new(name).within(ns))?;
    let mut data: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, ByteString(v))| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    data.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
    Some((data, secret.resource_version()))
}

/// Passwords from the Employees' `passwordSecretRef`s, read from the watch cache.
struct StoreVault<'a> {
    ctx: &'a Context,
    namespace: &'a str,
}

impl Vault for StoreVault<'_> {
    fn password(&self, owner: &Owner) -> Option<Password> {
        let e = self.ctx.employees.get(&ObjectRef::new(&owner.name).within(self.namespace))?;
        let r = e.spec.password_secret_ref.as_ref()?;
        let (mut data, _) = secret_data(&self.ctx.secrets, self.namespace, &r.name)?;
        data.remove(&r.key).filter(|p| !p.is_empty()).map(Password::new)
    }
}

const INTENT_WRITES_AT_ONCE: usize = 16;

/// Event reasons of the engine that describe a state rather than an action.
const STANDING: [&str; 4] = ["Conflict", "ManualActionRequired", "SyncFailed", "DeletionGuardTripped"];

/// Create intents go into the Employees' statuses before the creates are sent.
struct StatusIntents<'a> {
    ctx: &'a Context,
    /// The Employees the pass planned from.
    read: &'a Read<'a>,
    /// The intents written, by Employee: what the pass's final writes expect to find.
    written: Mutex<BTreeMap<Owner, AccountStatus>>,
    /// An intent met an entry the pass did not plan from: no create may follow.
    stale: std::sync::atomic::AtomicBool,
}

impl StatusIntents<'_> {
    fn written(&self) -> BTreeMap<Owner, AccountStatus> {
        self.written.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl IntentStore for StatusIntents<'_> {
    async fn record_intents(&self, system: &str, intents: &[engine::Intent]) -> Result<(), String> {
        // The passwords first: an intent on record means the create may be sent, and the
        // account it makes must never have a password nobody kept.
        for intent in intents {
            if let Some(password) = &intent.generated {
                status::store_generated_password(self.ctx, &intent.owner, system, password)
                    .await
                    .map_err(|e| format!("cannot keep the generated password of {}: {e}", intent.owner))?;
            }
        }
        // A few at a time: a burst of 700 creates must not open 700 requests at once.
        for chunk in intents.chunks(INTENT_WRITES_AT_ONCE) {
            let writes = chunk.iter().map(|intent| async move {
                let (owner, entry) = (&intent.owner, &intent.entry);
                let expected = self.read.entry(owner, system);
                let written =
                    status::write_entry(self.ctx, owner, system, expected.as_ref(), Some(entry.clone()))
                        .await?;
                if written == status::Written::Done {
                    self.written
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(owner.clone(), entry.clone());
                }
                Ok::<_, Error>(written)
            });
            let results = futures_util::future::try_join_all(writes).await.map_err(|e| e.to_string())?;
            if results.contains(&status::Written::Stale) {
                self.stale.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err("an Employee's status changed after this pass read it; planning again".into());
            }
        }
        Ok(())
    }
}

/// The Employees a pass read, by owner: every entry of a pass is looked up here, so a
/// scan of them would cost 10,000 x 10,000 comparisons a pass.
struct Read<'a>(HashMap<&'a Owner, &'a EmployeeView<'a>>);

impl<'a> Read<'a> {
    fn new(views: &'a [EmployeeView<'a>]) -> Self {
        Read(views.iter().map(|v| (&v.owner, v)).collect())
    }

    /// The entry of `owner` for `system`, as the pass read it.
    fn entry(&self, owner: &Owner, system: &str) -> Option<AccountStatus> {
        let view = self.0.get(owner)?;
        view.status.as_ref()?.phone_systems.iter().find(|p| p.name == system).cloned()
    }
}

/// How soon a pass that met a stale cache runs again: the watch is usually milliseconds
/// behind.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// How long after a request quota's announced reset the pass that waits for it runs:
/// the reset is given in whole seconds, and clocks differ.
const QUOTA_MARGIN: Duration = Duration::from_secs(2);

async fn reconcile_system(system: Arc<PhoneSystem>, ctx: Arc<Context>) -> Result<Action, Error> {
    match ctx.admit().await {
        Admission::Go => {}
        Admission::Again => return Ok(Action::requeue(Duration::ZERO)),
        Admission::Stopping => return Ok(Action::await_change()),
    }
    let ns = system.namespace().ok_or(Error::Unnamed)?;
    let name = system.metadata.name.clone().ok_or(Error::Unnamed)?;
    // Instrumented, not entered: a guard held across `.await` would leave the span
    // entered on whatever pass the worker thread runs next.
    let span = tracing::info_span!("sync", namespace = %ns, phone_system = %name);
    let started = std::time::Instant::now();
    let pass = sync_system(system, ctx.clone(), ns.clone(), name.clone()).instrument(span.clone());
    let (outcome, result) = tokio::select! {
        result = pass => match result {
            Ok((outcome, action)) => (outcome, Ok(action)),
            Err(e) => ("error", Err(e)),
        },
        // Another instance may take over from now on: not one more write from here.
        _ = ctx.lost_leadership() => {
            span.in_scope(|| tracing::warn!("leadership lost: pass abandoned"));
            ("abandoned", Ok(Action::requeue(Duration::ZERO)))
        }
    };
    ctx.config.metrics.record_pass(&ns, &name, outcome, started.elapsed());
    result
}

/// How a pass ended, as the `outcome` label of `switchboard_syncs_total` says it:
/// `synced`, `failures` (some accounts failed), `stale` (planned from a cache that was
/// behind; retried), `unready` (credentials or spec unusable), `unreachable` (the PBX
/// could not be listed), `rate_limited` (the system's request quota is spent; writes or
/// the whole pass wait for its reset), `error` (the Kubernetes API failed), `abandoned`.
type Outcome = &'static str;

async fn sync_system(
    system: Arc<PhoneSystem>,
    ctx: Arc<Context>,
    ns: String,
    name: String,
) -> Result<(Outcome, Action), Error> {
    let resync = system.spec.resync_interval().unwrap_or(Duration::from_secs(300));
    let started = std::time::Instant::now();

    let backend = match backend_for(&ctx, &system, &ns) {
        Ok(backend) => backend,
        Err((reason, message)) => {
            status::system_unready(&ctx, &system, reason, &message).await?;
            return Ok(("unready", Action::requeue(resync)));
        }
    };

    let stored = ctx.employees.state();
    let views: Vec<EmployeeView> = stored
        .iter()
        .filter(|e| e.namespace().as_deref() == Some(ns.as_str()))
        .filter(|e| {
            e.spec.membership(&name).is_some()
                || e.status.as_ref().is_some_and(|s| s.phone_systems.iter().any(|p| p.name == name))
        })
        .filter_map(|e| {
            Some(EmployeeView {
                owner: owner_of(e)?,
                spec: &e.spec,
                status: e.status.as_ref().map(Cow::Borrowed),
                rank: e.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(0),
                deleting: e.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect();
    let allow_deletions =
        system.annotations().get(ALLOW_DELETIONS).and_then(|v| v.trim().parse::<u32>().ok());
    let options = Options { dry_run: false, allow_deletions, now: ctx.now(), progress: None };
    let vault = StoreVault { ctx: &ctx, namespace: &ns };
    let read = Read::new(&views);
    let intents = StatusIntents {
        ctx: &ctx,
        read: &read,
        written: Mutex::new(BTreeMap::new()),
        stale: std::sync::atomic::AtomicBool::new(false),
    };
    let report = match engine::sync(backend.as_ref(), &name, &system.spec, &views, &intents, &vault, &options)
        .await
    {
        Ok(report) => report,
        Err(engine::Error::RateLimited { quota, cost, wait }) => {
            let message = format!(
                "the request quota is spent ({} left, a listing takes {cost}): the next pass waits for its reset",
                quota.remaining
            );
            status::system_rate_limited(&ctx, &system, &quota, &message).await?;
            return Ok(("rate_limited", Action::requeue(wait + QUOTA_MARGIN)));
        }
        Err(engine::Error::Backend(e)) if e.is_transient() && engine::quota::spent(backend.as_ref()) => {
            // A 429 while listing: the quota was spent by others sharing it.
            let quota = backends::Backend::quota(backend.as_ref())
                .map(|q| (engine::quota::status_of(&q, &ctx.now()), q.reset_at));
            if let Some((quota, Some(at))) = quota {
                let message = format!("the request quota is spent: {e}");
                status::system_rate_limited(&ctx, &system, &quota, &message).await?;
                let wait = at.saturating_duration_since(std::time::Instant::now());
                return Ok(("rate_limited", Action::requeue(wait + QUOTA_MARGIN)));
            }
            status::system_unready(&ctx, &system, reason::PBX_UNREACHABLE, &e.to_string()).await?;
            return Ok(("unreachable", Action::requeue(resync.min(Duration::from_secs(30)))));
        }
        Err(engine::Error::Backend(e)) => {
            let reason = match &e {
                backends::Error::Auth { .. } => reason::AUTH_FAILED,
                backends::Error::Credentials { .. } => reason::CREDENTIALS_MISSING,
                _ => reason::PBX_UNREACHABLE,
            };
            status::system_unready(&ctx, &system, reason, &e.to_string()).await?;
            // Unreachable systems are retried sooner than the resync, with the backoff
            // the error policy would give.
            return Ok(("unreachable", Action::requeue(resync.min(Duration::from_secs(30)))));
        }
        Err(engine::Error::Intents(why)) if intents.stale.load(std::sync::atomic::Ordering::Relaxed) => {
            tracing::debug!(%why, "pass planned from a stale cache; nothing was created");
            return Ok(("stale", Action::requeue(STALE_RETRY)));
        }
        Err(e) => return Err(e.into()),
    };
    ctx.config.metrics.record_report(&ns, &name, &report);

    let mut changed = Vec::new();
    let mut stale = false;
    let recorded = intents.written();
    for (owner, entry) in &report.entries {
        let current = read.entry(owner, &name);
        if current == *entry {
            continue;
        }
        // What the store holds now, as far as this pass knows: its own intent, or what
        // it read.
        let expected = recorded.get(owner).cloned().or(current);
        match status::write_entry(&ctx, owner, &name, expected.as_ref(), entry.clone()).await? {
            status::Written::Done => changed.push(owner),
            status::Written::Stale => {
                tracing::debug!(employee = %owner, "entry changed since the pass read it; not overwritten");
                stale = true;
            }
        }
    }
    // An action is news every time; a standing state (a conflict, a held deletion) only
    // when it begins, or every resync would post (and patch) an event again.
    let guard_was_tripped = system.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == conditions::SYNCED && c.reason == reason::DELETION_GUARD)
    });
    for event in &report.events {
        let news = match (&event.owner, STANDING.contains(&event.reason)) {
            (_, false) => true,
            (Some(owner), true) => changed.contains(&owner),
            (None, true) => !guard_was_tripped,
        };
        if news {
            publish(&ctx, &system, event).await;
        }
    }
    status::system_synced(&ctx, &system, &report, started.elapsed()).await?;
    let outcome = if report.rate_limited > 0 {
        "rate_limited"
    } else if report.failures > 0 {
        "failures"
    } else {
        "synced"
    };
    // Writes that wait for the quota run at its reset, not a resync later.
    let next = match report.resumes_in {
        Some(wait) if report.rate_limited > 0 => resync.min(wait + QUOTA_MARGIN),
        _ => resync,
    };
    if stale {
        Ok(("stale", Action::requeue(STALE_RETRY.min(next))))
    } else {
        Ok((outcome, Action::requeue(next)))
    }
}

fn system_error_policy(_system: Arc<PhoneSystem>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "phone system pass failed");
    Action::requeue(Duration::from_secs(15))
}

/// The backend of `system`, reusing the cached one while spec and credentials hold.
fn backend_for(
    ctx: &Context,
    system: &PhoneSystem,
    ns: &str,
) -> Result<Arc<AnyBackend>, (&'static str, String)> {
    let (data, secret_version) = match &system.spec.credentials_secret_ref {
        Some(r) => secret_data(&ctx.secrets, ns, &r.name)
            .ok_or_else(|| (reason::CREDENTIALS_MISSING, format!("Secret {ns}/{} not found", r.name)))?,
        None => (BTreeMap::new(), None),
    };
    let key = ObjectRef::from(system);
    let mut cache = ctx.backends.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cached) = cache.get(&key)
        && cached.generation == system.metadata.generation
        && cached.secret_version == secret_version
    {
        return Ok(cached.backend.clone());
    }
    let mut settings = ctx.config.http.clone().for_system(&system.spec);
    settings.observer = Some(Arc::new(PbxObserver::new(
        ctx.config.metrics.clone(),
        ns,
        system.metadata.name.as_deref().unwrap_or_default(),
    )));
    let backend = backends::connect(&system.spec, &Credentials::new(data), settings).map_err(|e| {
        let reason = match e {
            backends::Error::Credentials { .. } => reason::CREDENTIALS_MISSING,
            _ => reason::INVALID_SPEC,
        };
        (reason, e.to_string())
    })?;
    let backend = Arc::new(backend);
    cache.insert(
        key,
        CachedBackend { generation: system.metadata.generation, secret_version, backend: backend.clone() },
    );
    Ok(backend)
}

async fn publish(ctx: &Context, system: &PhoneSystem, event: &engine::Event) {
    let reference: ObjectReference = match &event.owner {
        Some(owner) => match ctx.employees.get(&ObjectRef::new(&owner.name).within(&owner.namespace)) {
            Some(e) => e.object_ref(&()),
            None => return,
        },
        None => system.object_ref(&()),
    };
    let ev = KubeEvent {
        type_: if event.warning { EventType::Warning } else { EventType::Normal },
        reason: event.reason.to_owned(),
        note: Some(truncate(&event.message, 1000)),
        action: "Sync".into(),
        secondary: event.owner.as_ref().map(|_| system.object_ref(&())),
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
        tracing::debug!(error = %e, "cannot publish an event");
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

async fn reconcile_employee(employee: Arc<Employee>, ctx: Arc<Context>) -> Result<Action, Error> {
    match ctx.admit().await {
        Admission::Go => {}
        Admission::Again => return Ok(Action::requeue(Duration::ZERO)),
        Admission::Stopping => return Ok(Action::await_change()),
    }
    tokio::select! {
        result = keep_employee(employee, ctx.clone()) => result,
        _ = ctx.lost_leadership() => Ok(Action::requeue(Duration::ZERO)),
    }
}

async fn keep_employee(employee: Arc<Employee>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The PhoneSystems' cache is filled by the other controller's watch: until its first
    // list is in, every system would look missing (PhoneSystemNotFound).
    let _ = ctx.systems.wait_until_ready().await;
    let ns = employee.namespace().ok_or(Error::Unnamed)?;
    let api: Api<Employee> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, employee, |event| async {
        match event {
            FinalizerEvent::Apply(e) => {
                status::employee_conditions(&ctx, &e).await?;
                Ok(Action::await_change())
            }
            FinalizerEvent::Cleanup(e) => {
                let systems = status::systems_in(&ctx, &e);
                let left: Vec<String> = e
                    .status
                    .iter()
                    .flat_map(|s| s.phone_systems.iter())
                    .filter(|p| systems.contains(&p.name))
                    .map(|p| p.name.clone())
                    .collect();
                if left.is_empty() {
                    Ok(Action::await_change())
                } else {
                    Err(Error::Waiting(format!("accounts on {} to be deleted or released", left.join(", "))))
                }
            }
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

fn employee_error_policy(_e: Arc<Employee>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::Waiting(what) => tracing::debug!(%what, "employee deletion waits"),
        other => tracing::warn!(error = %other, "employee pass failed"),
    }
    Action::requeue(Duration::from_secs(5))
}

pub use status::conditions_of;

#[cfg(test)]
mod tests {
    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry};
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn the_caches_keep_what_is_read_and_drop_the_bookkeeping() {
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some("pbx-credentials".into()),
                annotations: Some(BTreeMap::from([
                    (LAST_APPLIED.to_owned(), r#"{"data":{"password":"..."}}"#.to_owned()),
                    ("team".to_owned(), "telephony".to_owned()),
                ])),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..ManagedFieldsEntry::default()
                }]),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("password".to_owned(), ByteString(b"s3cret".to_vec()))])),
            ..Secret::default()
        };
        slim(&mut secret);
        assert!(secret.metadata.managed_fields.as_deref().unwrap_or_default().is_empty());
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(secret.data.unwrap()["password"].0, b"s3cret");
    }
}
