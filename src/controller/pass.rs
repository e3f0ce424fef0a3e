//! The PhoneSystem controller's reconcile: one engine pass over one system.
//!
//! A pass reads the Employees from the shared cache (as this instance's own writes left
//! them), reads the passwords they refer to, records its create intents, lets the engine
//! list, plan and apply, and then writes what changed: each Employee's entry for this
//! system, the events, and the system's status.
//!
//! Create intents are recorded in the PhoneSystem's status (`pendingCreates`), all of a
//! pass's in one write before any create is sent: a create costs no write of its
//! Employee before the one that records its account. The next pass (in this process or
//! another, after a crash or a leader change) sees an intent as that Employee's pending
//! claim, so the account it made is claimed, never made twice. An intent goes once the
//! Employee's entry is written. Past [`MAX_PENDING`] intents in one status, the rest are
//! recorded on their Employees, as one entry write each.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use kube::{
    Resource, ResourceExt,
    runtime::{
        controller::Action,
        events::{Event as KubeEvent, EventType},
        reflector::ObjectRef,
    },
};
use tracing::Instrument;

use super::{
    ALLOW_DELETIONS, Admission, CachedBackend, Context, Error, secrets,
    status::{self, Written},
    system_status,
    teardown::{self, Ended},
};
use crate::{
    api::{
        AccountState, AccountStatus, Employee, PhoneSystem, conditions, conditions::reason,
        phone_system::PendingCreate,
    },
    backends::{self, AnyBackend, Credentials},
    engine::{self, EmployeeView, IntentStore, Options},
    plan::Owner,
    telemetry::PbxObserver,
};

/// Intents kept in one PhoneSystem's status at most: about 100 bytes each, against the
/// API server's 1.5 MiB per object (and every watcher of PhoneSystems gets each write).
pub const MAX_PENDING: usize = 1000;

/// How soon a pass that met a stale cache runs again: the watch is usually milliseconds
/// behind.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// How long after a request quota's announced reset the pass that waits for it runs:
/// the reset is given in whole seconds, and clocks differ.
const QUOTA_MARGIN: Duration = Duration::from_secs(2);

/// Generated passwords stored (Secret creates) at once.
const SECRET_WRITES_AT_ONCE: usize = 16;

/// Entry writes at once, at the end of a pass.
const ENTRY_WRITES_AT_ONCE: usize = 16;

/// Events posted at once after a pass.
const EVENTS_AT_ONCE: usize = 8;

/// Event reasons of the engine that describe a state rather than an action.
const STANDING: [&str; 4] = ["Conflict", "ManualActionRequired", "SyncFailed", "DeletionGuardTripped"];

/// The message of an entry that stands for a create sent.
const SENT: &str = "create sent; its result is checked before any retry";

pub async fn reconcile(system: Arc<PhoneSystem>, ctx: Arc<Context>) -> Result<Action, Error> {
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

pub fn error_policy(_system: Arc<PhoneSystem>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "phone system pass failed");
    Action::requeue(Duration::from_secs(15))
}

/// How a pass ended, as the `outcome` label of `switchboard_syncs_total` says it:
/// `synced`, `failures` (some accounts failed), `stale` (planned from a cache that was
/// behind; retried), `unready` (credentials or spec unusable), `unreachable` (the PBX
/// could not be listed), `rate_limited` (the system's request quota is spent; writes or
/// the whole pass wait for its reset), `error` (the Kubernetes API failed), `abandoned`.
type Outcome = &'static str;

/// An Employee as the pass read it.
struct Seen {
    /// The object (from the cache, or our last write of it).
    object: Arc<Employee>,
    /// Its entry for this system, as stored.
    stored: Option<AccountStatus>,
    /// The entry the pass planned from: the stored one, or a recorded intent.
    planned: Option<AccountStatus>,
}

/// The entry that stands for a create intent recorded in the system's status.
pub(super) fn intent_entry(
    system: &str,
    pending: &PendingCreate,
    stored: Option<&AccountStatus>,
) -> AccountStatus {
    AccountStatus {
        name: system.to_owned(),
        external_id: None,
        extension: Some(pending.extension.clone()),
        state: AccountState::Pending,
        message: Some(SENT.to_owned()),
        last_sync: stored.and_then(|s| s.last_sync.clone()),
        password_fingerprint: pending.password_fingerprint.clone(),
    }
}

/// How soon a namespace teardown looks again at accounts still being deleted.
const TEARDOWN_RETRY: Duration = Duration::from_secs(1);

async fn sync_system(
    system: Arc<PhoneSystem>,
    ctx: Arc<Context>,
    ns: String,
    name: String,
) -> Result<(Outcome, Action), Error> {
    let system = ctx.systems.fresh(system);
    if system.metadata.deletion_timestamp.is_some() {
        return deleted(system, ctx, ns, name).await;
    }
    let system = teardown::hold(&ctx, system).await?;
    pass(system, ctx, ns, name, false).await
}

/// A deleted PhoneSystem ([`teardown`]): in a namespace teardown, passes go on until
/// nothing is claimed on it (or the wait is over); deleted alone, its accounts are
/// released.
async fn deleted(
    system: Arc<PhoneSystem>,
    ctx: Arc<Context>,
    ns: String,
    name: String,
) -> Result<(Outcome, Action), Error> {
    if !teardown::held(&system) {
        return Ok(("deleted", Action::await_change()));
    }
    if !teardown::namespace_terminating(&ctx, &ns).await? {
        teardown::release(&ctx, &system, &ns, &name).await?;
        return Ok(("released", Action::await_change()));
    }
    let since = teardown::since(&ctx, &ObjectRef::from(system.as_ref()));
    let (outcome, _) = match pass(system.clone(), ctx.clone(), ns.clone(), name.clone(), true).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, "teardown pass failed");
            ("error", Action::requeue(TEARDOWN_RETRY))
        }
    };
    // Without credentials (none were read before the Secret went), nothing can change.
    let hopeless = outcome == "unready";
    let system = ctx.systems.fresh(system);
    match teardown::after_pass(&ctx, &system, &ns, &name, since, hopeless).await? {
        Ended::Gone => Ok(("teardown", Action::await_change())),
        Ended::Waiting => Ok(("teardown", Action::requeue(TEARDOWN_RETRY))),
    }
}

async fn pass(
    system: Arc<PhoneSystem>,
    ctx: Arc<Context>,
    ns: String,
    name: String,
    teardown: bool,
) -> Result<(Outcome, Action), Error> {
    let resync = system.spec.resync_interval().unwrap_or(Duration::from_secs(300));
    let started = std::time::Instant::now();

    let backend = match backend_for(&ctx, &system, &ns, teardown).await? {
        Ok(backend) => backend,
        Err((reason, message)) => {
            system_status::unready(&ctx, &system, reason, &message).await?;
            return Ok(("unready", Action::requeue(resync)));
        }
    };

    // The Employees this pass concerns, each with the entry it plans from: an intent
    // recorded in the system's status stands for a create whose result no entry holds.
    let pending: HashMap<&str, &PendingCreate> =
        system_status::pending(&system).iter().map(|p| (p.employee.as_str(), p)).collect();
    let stored = ctx.employees.state();
    let mut seen: HashMap<Owner, Seen> = HashMap::new();
    let mut statuses = Vec::new();
    for e in stored.iter().filter(|e| e.namespace().as_deref() == Some(ns.as_str())) {
        let Some(owner) = super::owner_of(e) else { continue };
        let entry = e.status.as_ref().and_then(|s| s.phone_systems.iter().find(|p| p.name == name)).cloned();
        let intent = pending.get(owner.name.as_str()).copied();
        if e.spec.membership(&name).is_none() && entry.is_none() && intent.is_none() {
            continue;
        }
        let planned = match intent {
            Some(p) => Some(intent_entry(&name, p, entry.as_ref())),
            None => entry.clone(),
        };
        let status = match (&planned, intent) {
            (Some(p), Some(_)) => {
                let mut status = e.status.clone().unwrap_or_default();
                status.phone_systems.retain(|s| s.name != name);
                status.phone_systems.push(p.clone());
                Some(Cow::Owned(status))
            }
            _ => e.status.as_ref().map(Cow::Borrowed),
        };
        statuses.push((owner.clone(), status));
        seen.insert(owner, Seen { object: e.clone(), stored: entry, planned });
    }
    let views: Vec<EmployeeView> = statuses
        .into_iter()
        .filter_map(|(owner, status)| {
            let e = &seen.get(&owner)?.object;
            Some(EmployeeView {
                rank: e.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(0),
                // In a namespace teardown every Employee goes: its account is handled
                // now, as its deletionPolicy says, not once the namespace controller
                // reaches it.
                deleting: teardown || e.metadata.deletion_timestamp.is_some(),
                spec: &e.spec,
                status,
                owner,
            })
        })
        .collect();
    secrets::prepare(&ctx, &ns, &views).await?;

    // The guard holds in a namespace teardown too: a namespace deleted by mistake is the
    // mass deletion it is there for. What it holds is reported as left (`teardown`).
    let allow_deletions =
        system.annotations().get(ALLOW_DELETIONS).and_then(|v| v.trim().parse::<u32>().ok());
    let options = Options { dry_run: false, allow_deletions, now: ctx.now(), progress: None };
    let vault = secrets::HeldVault { ctx: &ctx, namespace: &ns };
    let intents = Intents {
        ctx: &ctx,
        system: &system,
        seen: &seen,
        recorded: Mutex::default(),
        stale: AtomicBool::new(false),
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
            system_status::rate_limited(&ctx, &system, &quota, &message).await?;
            return Ok(("rate_limited", Action::requeue(wait + QUOTA_MARGIN)));
        }
        Err(engine::Error::Backend(e)) if e.is_transient() && engine::quota::spent(backend.as_ref()) => {
            // A 429 while listing: the quota was spent by others sharing it.
            let quota = backends::Backend::quota(backend.as_ref())
                .map(|q| (engine::quota::status_of(&q, &ctx.now()), q.reset_at));
            if let Some((quota, Some(at))) = quota {
                let message = format!("the request quota is spent: {e}");
                system_status::rate_limited(&ctx, &system, &quota, &message).await?;
                let wait = at.saturating_duration_since(std::time::Instant::now());
                return Ok(("rate_limited", Action::requeue(wait + QUOTA_MARGIN)));
            }
            system_status::unready(&ctx, &system, reason::PBX_UNREACHABLE, &e.to_string()).await?;
            return Ok(("unreachable", Action::requeue(resync.min(Duration::from_secs(30)))));
        }
        Err(engine::Error::Backend(e)) => {
            let reason = match &e {
                backends::Error::Auth { .. } => reason::AUTH_FAILED,
                backends::Error::Credentials { .. } => reason::CREDENTIALS_MISSING,
                _ => reason::PBX_UNREACHABLE,
            };
            system_status::unready(&ctx, &system, reason, &e.to_string()).await?;
            // Unreachable systems are retried sooner than the resync, with the backoff
            // the error policy would give.
            return Ok(("unreachable", Action::requeue(resync.min(Duration::from_secs(30)))));
        }
        Err(engine::Error::Intents(why)) if intents.stale.load(Ordering::Relaxed) => {
            tracing::debug!(%why, "pass planned from a stale cache; nothing was created");
            return Ok(("stale", Action::requeue(STALE_RETRY)));
        }
        Err(e) => return Err(e.into()),
    };
    ctx.config.metrics.record_report(&ns, &name, &report);
    // Before the entries are written: the Employee controller, woken by their writes,
    // must find this pass's plan on record.
    ctx.planned_from(&name, seen.values().map(|s| s.object.as_ref()));

    // Entries: each Employee whose stored entry is not what the pass found gets its own.
    let recorded = intents.recorded.into_inner().unwrap_or_else(|e| e.into_inner());
    let writes: Vec<(&Owner, &Option<AccountStatus>)> = report
        .entries
        .iter()
        .filter(|(owner, entry)| {
            seen.get(*owner).is_some_and(|s| s.stored != **entry) || recorded.contains_key(*owner)
        })
        .collect();
    let results = futures_util::stream::iter(0..writes.len())
        .map(|i| {
            let (ctx, seen, name, writes) = (&ctx, &seen, &name, &writes);
            async move {
                let (owner, entry) = writes[i];
                let Some(s) = seen.get(owner) else { return Ok((i, Written::Done)) };
                let claims = |e: &Option<AccountStatus>| {
                    e.as_ref().is_some_and(|e| engine::claim_of(owner, e).is_some())
                };
                if entry.is_some() && !claims(entry) && !claims(&s.planned) {
                    let Some(object) = unchanged(ctx, s, name) else { return Ok((i, Written::Stale)) };
                    return status::apply_entry(ctx, &object, name, entry.as_ref(), true)
                        .await
                        .map(|w| (i, w));
                }
                status::apply_entry(ctx, &s.object, name, entry.as_ref(), false).await.map(|w| (i, w))
            }
        })
        .buffer_unordered(ENTRY_WRITES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut changed: HashSet<&Owner> = HashSet::new();
    let mut stale = false;
    for result in results {
        match result? {
            (i, Written::Done) => {
                changed.insert(writes[i].0);
            }
            (i, Written::Stale) => {
                let owner = writes[i].0;
                tracing::debug!(employee = %owner, "the Employee changed since the pass read it; entry not written");
                stale = true;
            }
        }
    }

    // An intent goes once its Employee's entry is written (or the Employee is gone).
    let still_pending: Vec<PendingCreate> = system_status::pending(&ctx.systems.fresh(system.clone()))
        .iter()
        .filter(|p| {
            let owner = Owner::new(ns.clone(), p.employee.clone());
            seen.contains_key(&owner)
                && !changed.contains(&owner)
                && report
                    .entries
                    .get(&owner)
                    .is_none_or(|entry| seen.get(&owner).is_some_and(|s| s.stored != *entry))
        })
        .cloned()
        .collect();

    // An action is news every time; a standing state (a conflict, a held deletion) only
    // when it begins, or every resync would post (and patch) an event again.
    let guard_was_tripped = system.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == conditions::SYNCED && c.reason == reason::DELETION_GUARD)
    });
    let news = report.events.iter().filter(|event| match (&event.owner, STANDING.contains(&event.reason)) {
        (_, false) => true,
        (Some(owner), true) => changed.contains(owner),
        (None, true) => !guard_was_tripped,
    });
    // A first pass over 10,000 Employees has 10,000 to post; one at a time they took
    // longer than the pass.
    futures_util::stream::iter(news)
        .for_each_concurrent(EVENTS_AT_ONCE, |event| publish(&ctx, &system, event))
        .await;
    // From the status as this pass left it (its intents included).
    let system = ctx.systems.fresh(system);
    system_status::synced(&ctx, &system, &report, started.elapsed(), still_pending).await?;
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

/// Create intents, recorded before the creates are sent.
struct Intents<'a> {
    ctx: &'a Context,
    system: &'a PhoneSystem,
    seen: &'a HashMap<Owner, Seen>,
    /// The intents this pass recorded, by Employee.
    recorded: Mutex<BTreeMap<Owner, AccountStatus>>,
    /// An intent recorded on an Employee met a version the pass did not plan from: no
    /// create may follow.
    stale: AtomicBool,
}

impl IntentStore for Intents<'_> {
    async fn record_intents(&self, system: &str, intents: &[engine::Intent]) -> Result<(), String> {
        // The passwords first: an intent on record means the create may be sent, and the
        // account it makes must never have a password nobody kept.
        // Indices, not borrowed items: a closure over borrowed items trips the compiler's
        // `Send` inference (as in the engine).
        let generated: Vec<usize> = (0..intents.len()).filter(|i| intents[*i].generated.is_some()).collect();
        let stored = futures_util::stream::iter(generated)
            .map(|i| async move {
                let intent = &intents[i];
                let Some(password) = &intent.generated else { return Ok(()) };
                status::store_generated_password(self.ctx, &intent.owner, system, password)
                    .await
                    .map_err(|e| format!("cannot keep the generated password of {}: {e}", intent.owner))
            })
            .buffer_unordered(SECRET_WRITES_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        stored.into_iter().collect::<Result<Vec<()>, String>>()?;

        // Then the intents: in the system's status, one write for all (up to a bound).
        let mut pending: Vec<PendingCreate> = system_status::pending(self.system).to_vec();
        let mut overflow = Vec::new();
        for (i, intent) in intents.iter().enumerate() {
            pending.retain(|p| p.employee != intent.owner.name);
            let record = PendingCreate {
                employee: intent.owner.name.clone(),
                extension: intent.entry.extension.clone().unwrap_or_default(),
                password_fingerprint: intent.entry.password_fingerprint.clone(),
            };
            if pending.len() < MAX_PENDING {
                pending.push(record);
            } else {
                overflow.push(i);
            }
        }
        system_status::record_pending(self.ctx, self.system, pending)
            .await
            .map_err(|e| format!("cannot record the create intents: {e}"))?;
        {
            let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
            recorded.extend(intents.iter().map(|i| (i.owner.clone(), i.entry.clone())));
        }

        // Past the bound, on each Employee, only where the pass saw what is stored.
        let written = futures_util::stream::iter(overflow)
            .map(|i| async move {
                let intent = &intents[i];
                let Some(object) = self.seen.get(&intent.owner).and_then(|s| unchanged(self.ctx, s, system))
                else {
                    return Ok(Written::Stale);
                };
                status::apply_entry(self.ctx, &object, system, Some(&intent.entry), true).await
            })
            .buffer_unordered(ENTRY_WRITES_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        for w in written {
            if w.map_err(|e| e.to_string())? == Written::Stale {
                self.stale.store(true, Ordering::Relaxed);
                return Err("an Employee changed after this pass read it; planning again".into());
            }
        }
        Ok(())
    }
}

/// The Employee as this instance knows it now, if its entry for `system` is still the
/// one the pass read: a guarded write is then guarded by the newest version known (a
/// write of someone else's since would make it a 409), rather than by the version the
/// pass started from, which our own finalizer or conditions writes may have moved on.
fn unchanged(ctx: &Context, seen: &Seen, system: &str) -> Option<Arc<Employee>> {
    let now = ctx.employees.get(&ObjectRef::from(seen.object.as_ref()))?;
    let entry = now.status.as_ref().and_then(|s| s.phone_systems.iter().find(|p| p.name == system));
    (entry == seen.stored.as_ref()).then_some(now)
}

/// The backend of `system`, reusing the cached one while its spec and the version of
/// its credentials Secret hold; the Secret is read (one GET) only to build a new one.
/// `Ok(Err(_))`: the system cannot be used as it is (the reason and message say why).
///
/// `teardown`: the namespace is being deleted, and its credentials Secret may be gone
/// before the PhoneSystem: the backend built from the credentials last read serves on.
async fn backend_for(
    ctx: &Context,
    system: &PhoneSystem,
    ns: &str,
    teardown: bool,
) -> Result<Result<Arc<AnyBackend>, (&'static str, String)>, Error> {
    let key = ObjectRef::from(system);
    let last = || {
        let cache = ctx.backends.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&key).map(|cached| cached.backend.clone())
    };
    let missing = |name: &str| match last().filter(|_| teardown) {
        Some(backend) => Ok(backend),
        None => Err((reason::CREDENTIALS_MISSING, format!("Secret {ns}/{name} not found"))),
    };
    let secret = system.spec.credentials_secret_ref.as_ref().map(|r| r.name.as_str());
    let seen = match secret {
        Some(name) => match secrets::version_of(ctx, ns, name) {
            Some(version) => Some(version),
            None => return Ok(missing(name)),
        },
        None => None,
    };
    {
        let cache = ctx.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = cache.get(&key)
            && cached.generation == system.metadata.generation
            && match (&cached.secret_version, &seen) {
                (Some(held), Some(seen)) => secrets::current(held, seen),
                (None, None) => true,
                _ => false,
            }
        {
            return Ok(Ok(cached.backend.clone()));
        }
    }
    let (data, version) = match secret {
        Some(name) => match secrets::read(ctx, ns, name).await? {
            Some((version, data)) => (data, Some(version)),
            None => return Ok(missing(name)),
        },
        None => (BTreeMap::new(), None),
    };
    let mut settings = ctx.config.http.clone().for_system(&system.spec);
    settings.observer = Some(Arc::new(PbxObserver::new(
        ctx.config.metrics.clone(),
        ns,
        system.metadata.name.as_deref().unwrap_or_default(),
    )));
    let backend = match backends::connect(&system.spec, &Credentials::new(data), settings) {
        Ok(backend) => Arc::new(backend),
        Err(e) => {
            let reason = match e {
                backends::Error::Credentials { .. } => reason::CREDENTIALS_MISSING,
                _ => reason::INVALID_SPEC,
            };
            return Ok(Err((reason, e.to_string())));
        }
    };
    let mut cache = ctx.backends.lock().unwrap_or_else(|e| e.into_inner());
    cache.insert(
        key,
        CachedBackend {
            generation: system.metadata.generation,
            secret_version: version,
            backend: backend.clone(),
        },
    );
    Ok(Ok(backend))
}

async fn publish(ctx: &Context, system: &PhoneSystem, event: &engine::Event) {
    let reference = match &event.owner {
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

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
