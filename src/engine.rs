//! The sync engine: one phone system, one pass. Shared by the controller and the
//! cluster-free CLI (one engine, two front ends).
//!
//! A pass: turn the Employees that list the system into desired accounts (the backend
//! judges what fits), read the claims from their statuses, list the system, plan, record
//! the intent of every create before sending it, apply the plan in its documented order
//! with the system's concurrency, and report the new status entries, counts and events.
//! The caller persists what changed; an entry whose content did not change keeps its
//! `lastSync`, so a converged pass produces nothing to write.

pub mod memory;
mod observe;
pub mod quota;

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        AccountState, AccountStatus, EmployeeSpec, EmployeeStatus, PhoneSystemSpec,
        conditions::reason,
        employee::DeletionPolicy,
        phone_system::{AccountCounts, PendingChanges, RequestQuota},
    },
    backends::{self, Backend, Secret, Write},
    plan::{
        self, Account, Attributes, Claim, Desired, Guard, Inputs, ManualKind, Observed, Owner, Plan,
        Unreadable, WaitReason,
    },
};

/// An Employee as the engine needs it. It borrows the spec (and the status, where the
/// caller holds one) from wherever the caller keeps Employees: a pass over 10,000 of them
/// must not copy 10,000 specs per phone system.
#[derive(Clone, Debug)]
pub struct EmployeeView<'a> {
    pub owner: Owner,
    pub spec: &'a EmployeeSpec,
    pub status: Option<Cow<'a, EmployeeStatus>>,
    /// Seniority for contested extensions (creation time in seconds).
    pub rank: i64,
    /// Being deleted (deletionTimestamp set).
    pub deleting: bool,
}

/// Where intents are recorded before creates are sent.
pub trait IntentStore: Sync {
    /// Persists a `Pending` entry per create, durably, before returning; and with it the
    /// password generated for the create, where the store keeps passwords, so a crash
    /// after the create cannot leave an account whose password nobody knows.
    fn record_intents(
        &self,
        system: &str,
        intents: &[Intent],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A create about to be sent.
#[derive(Clone, Debug)]
pub struct Intent {
    pub owner: Owner,
    /// The `Pending` entry that claims whatever the create makes.
    pub entry: AccountStatus,
    /// A password generated for it (the Employee has none of its own).
    pub generated: Option<Secret>,
}

/// Passwords of Employees.
pub trait Vault: Sync {
    /// The Employee's own password (from `passwordSecretRef`), if any.
    fn password(&self, owner: &Owner) -> Option<Secret>;

    /// Why the password the Employee refers to cannot be had (its Secret or key does
    /// not exist yet), naming them; `None` when it has one or refers to none. Such an
    /// Employee gets no account until it can: a generated password in its place could
    /// never be replaced on a system that cannot update.
    fn missing(&self, _owner: &Owner) -> Option<String> {
        None
    }
}

/// What one pass decided and did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub plan: Plan,
    /// The entry each Employee should now have for this system; `None`: remove it.
    pub entries: BTreeMap<Owner, Option<AccountStatus>>,
    pub counts: AccountCounts,
    pub events: Vec<Event>,
    /// Writes sent to the system.
    pub writes: usize,
    pub failures: usize,
    /// Operations applied, by kind (`create`, `update`, `delete`, `adopt`) and result
    /// (`ok`, `failed`, `unclear`: a create whose answer was lost).
    pub applied: BTreeMap<(&'static str, &'static str), usize>,
    /// Updates made to accounts that were in sync before this pass: drift put back (or
    /// an edit of the Employee: the status keeps no copy of what was last applied).
    /// Password-only updates are not counted: a password cannot be read back, so such an
    /// update always comes from a changed Secret.
    pub drift_corrections: usize,
    /// Records the system listed that could not be read (each named in an event).
    pub unreadable: usize,
    /// The request quota the system announced at the end of the pass, if it has one.
    pub quota: Option<RequestQuota>,
    /// Writes not sent because the quota could not pay for them: they wait for its reset.
    pub rate_limited: usize,
    /// How long until that reset, when writes wait for it.
    pub resumes_in: Option<Duration>,
    /// What was planned and not written: the whole plan under `policy: observe`,
    /// `suspend` or a dry run; otherwise the writes held for the quota.
    pub pending: PendingChanges,
}

/// Something a person may want to know, as a Kubernetes event would say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The Employee concerned, or the system itself.
    pub owner: Option<Owner>,
    pub reason: &'static str,
    pub message: String,
    pub warning: bool,
}

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] backends::Error),
    #[error("cannot record create intents: {0}")]
    Intents(String),
    /// The request quota cannot pay for a listing and a write after it: the pass waits
    /// for its reset rather than spend the rest on reading.
    #[error("the request quota is spent ({} requests left, a listing takes {cost}); the pass waits {}s for its reset", .quota.remaining, .wait.as_secs())]
    RateLimited { quota: RequestQuota, cost: u64, wait: Duration },
}

/// Options of one pass.
#[derive(Clone)]
pub struct Options {
    /// Plan and report, but write nothing to the system.
    pub dry_run: bool,
    /// Deletions allowed past `maxDeletionsPerSync` (the allow-deletions annotation).
    pub allow_deletions: Option<u32>,
    pub now: Time,
    /// Told as writes complete, for long passes.
    pub progress: Option<std::sync::Arc<dyn Progress>>,
}

/// Hears how far a pass's writes have got.
pub trait Progress: Send + Sync {
    /// `done` of `total` writes to `system` have finished (successfully or not).
    fn advanced(&self, system: &str, done: usize, total: usize);
}

/// Counts finished writes for a [`Progress`].
struct Ticker<'a> {
    progress: Option<&'a dyn Progress>,
    system: &'a str,
    total: usize,
    done: std::sync::atomic::AtomicUsize,
}

impl Ticker<'_> {
    fn tick(&self) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(p) = self.progress {
            p.advanced(self.system, done, self.total);
        }
    }
}

/// Records the system listed but switchboard could not read, as one warning on the
/// PhoneSystem: the first few, each naming the field that failed.
fn unreadable_event(system: &str, unreadable: &[Unreadable]) -> Event {
    const SHOWN: usize = 5;
    let mut message = format!(
        "{} record(s) on {system} could not be read; no account is deleted, nor created on their extensions, until they can be: ",
        unreadable.len()
    );
    let shown: Vec<String> = unreadable.iter().take(SHOWN).map(ToString::to_string).collect();
    message.push_str(&shown.join("; "));
    if unreadable.len() > SHOWN {
        message.push_str(&format!("; and {} more", unreadable.len() - SHOWN));
    }
    tracing::warn!(system, count = unreadable.len(), "{message}");
    Event { owner: None, reason: "UnreadableRecords", message, warning: true }
}

/// Every field some Employee of the pass declares: what the listing must read.
fn declared_fields(desired: &[Arc<Desired>]) -> BTreeSet<plan::Field> {
    desired.iter().flat_map(|d| d.attributes.declared()).collect()
}

/// Salted fingerprint of a password: tells a changed Secret without keeping the password.
pub fn fingerprint(owner: &Owner, password: &Secret) -> String {
    use std::fmt::Write;
    let input = format!("switchboard/v1\0{owner}\0{}", password.expose());
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    digest.as_ref()[..16].iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Runs one pass over system `name`.
pub async fn sync<B: Backend, S: IntentStore, V: Vault>(
    backend: &B,
    name: &str,
    spec: &PhoneSystemSpec,
    employees: &[EmployeeView<'_>],
    store: &S,
    vault: &V,
    options: &Options,
) -> Result<Report, Error> {
    let mut report = Report::default();
    let mut desired = Vec::new();
    let mut claims = Vec::new();
    let mut entries: BTreeMap<Owner, Option<AccountStatus>> = BTreeMap::new();
    let previous: BTreeMap<&Owner, &AccountStatus> = employees
        .iter()
        .filter_map(|e| Some((&e.owner, e.status.as_ref()?.phone_systems.iter().find(|s| s.name == name)?)))
        .collect();

    for e in employees {
        let entry = previous.get(&e.owner).copied();
        let releasing = e.deleting && e.spec.deletion_policy == DeletionPolicy::Orphan;
        if let Some(entry) = entry
            && !releasing
            && let Some(claim) = claim_of(&e.owner, entry)
        {
            claims.push(claim);
        }
        if releasing && entry.is_some() {
            entries.insert(e.owner.clone(), None);
            report.events.push(Event {
                owner: Some(e.owner.clone()),
                reason: "Orphaned",
                message: format!("account on {name} left in place (deletionPolicy: Orphan)"),
                warning: false,
            });
        }
        // An entry that claims nothing (a conflict, a refusal) of an Employee that no
        // longer wants an account here has nothing left to release: it goes, or it would
        // hold the Employee's finalizer for ever.
        let membership = if e.deleting { None } else { e.spec.membership(name) };
        if membership.is_none() && entry.is_some_and(|entry| claim_of(&e.owner, entry).is_none()) {
            entries.insert(e.owner.clone(), None);
        }
        let Some(membership) = membership else { continue };
        // Waits for its password only while it has no account: one it claims is kept in
        // line without it (no password change is planned without a fingerprint).
        if let Some(why) = vault.missing(&e.owner)
            && entry.is_none_or(|entry| claim_of(&e.owner, entry).is_none())
        {
            let message =
                format!("{}: {why}; no account is created until it exists", reason::PASSWORD_SECRET_MISSING);
            let mut waiting = entry_with(entry, name, AccountState::Pending, Some(message));
            // A pending entry with an extension is a claim on a create: this is none.
            waiting.extension = None;
            entries.insert(e.owner.clone(), Some(waiting));
            continue;
        }
        match backend.desired(e.spec, membership) {
            Ok(attributes) => desired.push(Arc::new(Desired {
                owner: e.owner.clone(),
                rank: e.rank,
                extension: e.spec.extension_on(membership).to_owned(),
                attributes,
                password_fingerprint: vault.password(&e.owner).map(|p| fingerprint(&e.owner, &p)),
            })),
            Err(err) => {
                report.failures += 1;
                let status = entry_with(entry, name, AccountState::Failed, Some(err.to_string()));
                entries.insert(e.owner.clone(), Some(status));
            }
        }
    }
    let declared = desired.len() + entries.values().filter(|s| s.is_some()).count();

    let cost = backend.list_cost();
    if let Some(q) = backend.quota()
        && let Some(wait) = quota::wait_for(&q, cost.saturating_add(1))
    {
        return Err(Error::RateLimited { quota: quota::status_of(&q, &options.now), cost, wait });
    }
    let wanted = declared_fields(&desired);
    let listing = backend.list_for(&wanted).await?;
    if !listing.unreadable.is_empty() {
        report.unreadable = listing.unreadable.len();
        report.events.push(unreadable_event(name, &listing.unreadable));
    }
    let observed =
        Observed { accounts: listing.accounts, complete: listing.complete, unreadable: listing.unreadable };
    let max_deletes = spec.max_deletions_per_sync.max(options.allow_deletions.unwrap_or(0));
    let plan = plan::plan(Inputs {
        desired: &desired,
        observed: &observed,
        claims: &claims,
        capabilities: backend.capabilities(),
        policy: spec.policy,
        adoption: spec.adoption,
        guard: Guard { max_deletes },
    });
    // The plan holds what applying it needs: the listing, the claims and the desired
    // accounts it does not hold go now, before the writes and the status entries (at
    // 10,000 accounts on five systems at once, they are tens of MB).
    drop((observed, claims, desired));

    // `observe` plans as `sync` (the planner knows); here is where it writes nothing.
    let observing = !spec.policy.writes();
    let suspended = spec.suspend || options.dry_run || observing;
    let mut outcome = Outcome::default();
    if !suspended {
        let ticker = Ticker {
            progress: options.progress.as_deref(),
            system: name,
            total: plan.system_writes(),
            done: Default::default(),
        };
        outcome = apply(backend, spec, &plan, store, vault, &previous, &ticker).await?;
    }
    report.writes = outcome.writes;
    report.drift_corrections = outcome.drift_corrections;
    for (_, operation, result) in &outcome.results {
        *report.applied.entry((operation, result.label())).or_default() += 1;
        if matches!(result, Applied::RateLimited { .. }) {
            let slot = match *operation {
                "create" => &mut report.pending.create,
                "update" => &mut report.pending.update,
                "delete" => &mut report.pending.delete,
                _ => &mut report.pending.adopt,
            };
            *slot = slot.saturating_add(1);
        }
    }
    if suspended {
        report.pending = PendingChanges {
            create: to_u32(plan.creates.len()),
            update: to_u32(plan.updates.len()),
            delete: to_u32(plan.deletes.len()),
            adopt: to_u32(plan.adoptions.len()),
        };
    }

    // Status entries, from the plan and what applying it did.
    let mut entries = Entries { name, previous: &previous, map: entries };
    for (owner, id) in &plan.in_sync {
        entries.set(owner, AccountState::InSync, None, Some(id.clone()), None);
    }
    for kept in &plan.kept {
        let what = describe_changes(&kept.changes);
        entries.set(
            &kept.owner,
            AccountState::InSync,
            Some(format!("differs, kept by policy create-only: {what}")),
            None,
            None,
        );
    }
    for wait in &plan.waits {
        let message = match wait.reason {
            WaitReason::IncompleteList => "the system's list was incomplete; waiting".to_owned(),
            WaitReason::UnreadableRecord => format!(
                "{}: {name} listed a record on this extension (or this Employee's account) that switchboard cannot read; waiting, so as not to create a second account",
                reason::UNREADABLE_RECORDS
            ),
        };
        entries.set(&wait.owner, AccountState::Pending, Some(message), None, None);
    }
    for conflict in &plan.conflicts {
        let by = match &conflict.holder {
            plan::Holder::Unmanaged { id } => {
                format!("account {id}, which switchboard does not manage (adoption: refuse)")
            }
            plan::Holder::Employee(other) => format!("Employee {other}"),
        };
        let message =
            format!("{}: extension {} is held by {by}", reason::EXTENSION_TAKEN, conflict.extension);
        report.events.push(Event {
            owner: Some(conflict.owner.clone()),
            reason: "Conflict",
            message: message.clone(),
            warning: true,
        });
        entries.set(&conflict.owner, AccountState::Conflict, Some(message), None, None);
    }
    for manual in &plan.manual {
        let message = match &manual.kind {
            ManualKind::Create => format!(
                "{}: {} cannot create accounts through its API; create it by hand",
                reason::PENDING,
                backend.kind()
            ),
            ManualKind::Update { changes } => format!(
                "{}: {} cannot change {} through its API; change it by hand",
                reason::UPDATE_UNSUPPORTED,
                backend.kind(),
                describe_changes(changes)
            ),
            ManualKind::Delete => format!(
                "{}: {} cannot delete accounts through its API; delete account {} by hand",
                reason::DELETE_UNSUPPORTED,
                backend.kind(),
                manual.account_id.as_deref().unwrap_or("?")
            ),
        };
        report.events.push(Event {
            owner: Some(manual.owner.clone()),
            reason: "ManualActionRequired",
            message: message.clone(),
            warning: true,
        });
        entries.set(&manual.owner, AccountState::ManualActionRequired, Some(message), None, None);
    }
    for held in &plan.held_deletes {
        entries.set(&held.owner, AccountState::Pending, Some(format!(
            "{}: deletion held: this sync would delete {} accounts, more than maxDeletionsPerSync ({}); raise it or set the annotation switchboard.dev/allow-deletions",
            reason::DELETION_GUARD, plan.held_deletes.len(), spec.max_deletions_per_sync
        )), None, None);
    }
    if plan.guard_tripped() {
        report.events.push(Event {
            owner: None,
            reason: "DeletionGuardTripped",
            message: format!(
                "{} deletions held back: more than maxDeletionsPerSync ({})",
                plan.held_deletes.len(),
                spec.max_deletions_per_sync
            ),
            warning: true,
        });
    }
    for release in &plan.releases {
        entries.map.insert(release.owner.clone(), None);
    }
    for (owner, _, result) in outcome.results {
        match result {
            Applied::Present { id, extension, fingerprint, event } => {
                let prev_fp = previous.get(&owner).and_then(|s| s.password_fingerprint.clone());
                entries.set(&owner, AccountState::InSync, None, Some(id), Some(extension));
                if let Some(Some(entry)) = entries.map.get_mut(&owner) {
                    entry.password_fingerprint = fingerprint.or(prev_fp);
                }
                report.events.push(Event {
                    owner: Some(owner),
                    reason: event.0,
                    message: event.1,
                    warning: false,
                });
            }
            Applied::Gone { event } => {
                entries.map.insert(owner.clone(), None);
                report.events.push(Event {
                    owner: Some(owner),
                    reason: event.0,
                    message: event.1,
                    warning: false,
                });
            }
            Applied::Unclear { extension, message } => {
                report.failures += 1;
                entries.set(&owner, AccountState::Pending, Some(message), None, Some(extension));
            }
            Applied::RateLimited { what, extension } => {
                report.rate_limited += 1;
                let message = rate_limited_note(backend, name, what, &options.now);
                entries.set(&owner, AccountState::Pending, Some(message), None, extension);
            }
            // Resolved by `resolve_created` before this; kept pending if one slipped by.
            Applied::Accepted { extension } => {
                report.failures += 1;
                let message = format!("{}: created; waiting for {name} to list it", reason::PENDING);
                entries.set(&owner, AccountState::Pending, Some(message), None, Some(extension));
            }
            Applied::Failed { message } => {
                report.failures += 1;
                report.events.push(Event {
                    owner: Some(owner.clone()),
                    reason: "SyncFailed",
                    message: message.clone(),
                    warning: true,
                });
                entries.set(&owner, AccountState::Failed, Some(message), None, None);
            }
        }
    }
    if observing {
        observe::tell(&mut entries, &mut report.events, &plan);
    } else if suspended {
        for c in &plan.creates {
            entries.set(
                &c.desired.owner,
                AccountState::Pending,
                Some(pending_note(spec.suspend, "create")),
                None,
                None,
            );
        }
        for u in &plan.updates {
            entries.set(
                &u.desired.owner,
                AccountState::Pending,
                Some(pending_note(spec.suspend, "update")),
                None,
                None,
            );
        }
        for a in &plan.adoptions {
            entries.set(
                &a.desired.owner,
                AccountState::Pending,
                Some(pending_note(spec.suspend, "adopt")),
                None,
                None,
            );
        }
    }

    // Only entries whose content changed get a new lastSync.
    let mut entries = entries.map;
    for (owner, entry) in entries.iter_mut() {
        if let Some(status) = entry {
            let old = previous.get(owner).copied();
            if old.is_some_and(|old| same_content(old, status)) {
                if let Some(old) = old {
                    status.last_sync = old.last_sync.clone();
                }
            } else {
                status.last_sync = Some(options.now.clone());
            }
        }
    }
    let count = |state| entries.values().flatten().filter(|s| s.state == state).count();
    report.counts = AccountCounts {
        declared: to_u32(declared),
        in_sync: to_u32(count(AccountState::InSync)),
        pending: to_u32(count(AccountState::Pending)),
        failed: to_u32(
            count(AccountState::Failed)
                + count(AccountState::Conflict)
                + count(AccountState::ManualActionRequired),
        ),
        unmanaged: to_u32(plan.unmanaged),
    };
    report.entries = entries;
    report.plan = plan;
    let quota = backend.quota();
    report.quota = quota.as_ref().map(|q| quota::status_of(q, &options.now));
    if report.rate_limited > 0 {
        report.resumes_in =
            quota.and_then(|q| q.reset_at).map(|at| at.saturating_duration_since(std::time::Instant::now()));
        report.events.push(Event {
            owner: None,
            reason: reason::RATE_LIMITED,
            message: format!(
                "{} write(s) wait for the request quota of {name} to reset{}",
                report.rate_limited,
                quota
                    .and_then(|q| q.reset_at)
                    .map(|at| format!(" at {}", quota::wall(&options.now, at).0))
                    .unwrap_or_default()
            ),
            warning: true,
        });
    }
    memory::release_freed();
    Ok(report)
}

/// A write that failed, its message led by the reason the Employee's conditions give
/// it: one the PBX is retried past (`PbxUnreachable`), or one only a person can mend.
fn failed(what: &str, e: &backends::Error) -> Applied {
    let why = match e {
        backends::Error::Transient { .. } | backends::Error::Protocol { .. } => reason::PBX_UNREACHABLE,
        backends::Error::Auth { .. } => reason::AUTH_FAILED,
        backends::Error::Conflict { .. } => reason::EXTENSION_TAKEN,
        _ => reason::VALIDATION_FAILED,
    };
    Applied::Failed { message: format!("{why}: {what} failed: {e}") }
}

/// What an Employee whose write waits for the quota's reset is told.
fn rate_limited_note<B: Backend>(backend: &B, name: &str, what: &str, now: &Time) -> String {
    let reset = backend.quota().and_then(|q| q.reset_at).map(|at| quota::wall(now, at).0.to_string());
    match reset {
        Some(at) => {
            format!("{}: {what} waits: the request quota of {name} is spent until {at}", reason::RATE_LIMITED)
        }
        None => format!("{}: {what} waits: the request quota of {name} is spent", reason::RATE_LIMITED),
    }
}

/// The status entries a pass builds, starting from each Employee's previous one.
struct Entries<'a> {
    name: &'a str,
    previous: &'a BTreeMap<&'a Owner, &'a AccountStatus>,
    map: BTreeMap<Owner, Option<AccountStatus>>,
}

impl Entries<'_> {
    fn set(
        &mut self,
        owner: &Owner,
        state: AccountState,
        message: Option<String>,
        id: Option<String>,
        extension: Option<String>,
    ) {
        let mut status = entry_with(self.previous.get(owner).copied(), self.name, state, message);
        if id.is_some() {
            status.external_id = id;
        }
        if extension.is_some() {
            status.extension = extension;
        }
        self.map.insert(owner.clone(), Some(status));
    }
}

fn pending_note(suspended: bool, what: &str) -> String {
    if suspended {
        format!("{}: {what} waits: the PhoneSystem is suspended", reason::SUSPENDED)
    } else {
        format!("{what} planned (dry run)")
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The claim an Employee's status entry makes: an owned account, or a create whose
/// result was never recorded.
pub fn claim_of(owner: &Owner, entry: &AccountStatus) -> Option<Claim> {
    let pending =
        entry.external_id.is_none() && entry.state == AccountState::Pending && entry.extension.is_some();
    (entry.external_id.is_some() || pending).then(|| Claim {
        owner: owner.clone(),
        external_id: entry.external_id.clone(),
        extension: entry.extension.clone(),
        password_fingerprint: entry.password_fingerprint.clone(),
    })
}

fn entry_with(
    old: Option<&AccountStatus>,
    name: &str,
    state: AccountState,
    message: Option<String>,
) -> AccountStatus {
    let mut status = old.cloned().unwrap_or_else(|| AccountStatus {
        name: name.to_owned(),
        external_id: None,
        extension: None,
        state,
        message: None,
        last_sync: None,
        password_fingerprint: None,
    });
    status.state = state;
    status.message = message;
    status
}

fn same_content(a: &AccountStatus, b: &AccountStatus) -> bool {
    a.external_id == b.external_id
        && a.extension == b.extension
        && a.state == b.state
        && a.message == b.message
        && a.password_fingerprint == b.password_fingerprint
}

fn describe_changes(changes: &[plan::Change]) -> String {
    changes
        .iter()
        .map(|c| match (&c.from, &c.to) {
            (_, _) if c.field == plan::Field::Password => "password".to_owned(),
            (from, to) => format!(
                "{} ({} -> {})",
                c.field,
                from.as_deref().unwrap_or("unset"),
                to.as_deref().unwrap_or("unset")
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

enum Applied {
    /// The account exists and is the Employee's.
    Present {
        id: String,
        extension: String,
        fingerprint: Option<String>,
        event: (&'static str, String),
    },
    /// The account was deleted.
    Gone {
        event: (&'static str, String),
    },
    /// A create the system accepted without naming the account (until it is listed).
    Accepted {
        extension: String,
    },
    /// A create whose result is unknown: the intent stays recorded.
    Unclear {
        extension: String,
        message: String,
    },
    Failed {
        message: String,
    },
    /// Not sent (or refused with a 429): the quota could not pay for it. `extension`:
    /// the recorded intent of a create whose answer was a 429, kept as its claim.
    RateLimited {
        what: &'static str,
        extension: Option<String>,
    },
}

impl Applied {
    /// The `result` label of the applied-operations metric.
    fn label(&self) -> &'static str {
        match self {
            Applied::Present { .. } | Applied::Gone { .. } => "ok",
            Applied::Unclear { .. } | Applied::Accepted { .. } => "unclear",
            Applied::Failed { .. } => "failed",
            Applied::RateLimited { .. } => "deferred",
        }
    }
}

#[derive(Default)]
struct Outcome {
    /// Per Employee: the kind of operation and what came of it.
    results: Vec<(Owner, &'static str, Applied)>,
    writes: usize,
    drift_corrections: usize,
}

/// Applies `plan` in its documented order: deletes, updates, adoptions, creates.
async fn apply<B: Backend, S: IntentStore, V: Vault>(
    backend: &B,
    spec: &PhoneSystemSpec,
    plan: &Plan,
    store: &S,
    vault: &V,
    previous: &BTreeMap<&Owner, &AccountStatus>,
    ticker: &Ticker<'_>,
) -> Result<Outcome, Error> {
    let name = ticker.system;
    // Operations under way, not requests: the HTTP client holds requests in flight to
    // maxConcurrency. With twice as many operations, those of two requests in turn (a
    // Telphin create, a MikoPBX update) queue their second request behind others' first
    // ones, instead of a batch's last few running alone with most slots idle.
    let width = usize::try_from(spec.max_concurrency.max(1)).unwrap_or(1).saturating_mul(2);
    let mut out = Outcome::default();
    // Each write takes what it costs from the quota as it starts; one the rest cannot pay
    // for waits for the reset. A 429 (other applications spend the same quota) stops the
    // rest.
    let budget = quota::Budget::of(backend);
    let budget = &budget;
    let held = |what: &'static str, e: &backends::Error| {
        let spent = e.is_transient() && quota::spent(backend);
        if spent {
            budget.exhaust();
        }
        spent.then_some(Applied::RateLimited { what, extension: None })
    };

    let deletes = bounded(
        (0..plan.deletes.len()).map(|i| {
            let d = &plan.deletes[i];
            async move {
                if !budget.take(backend.cost(Write::Delete(&d.account))) {
                    return (d.owner.clone(), Applied::RateLimited { what: "delete", extension: None });
                }
                let result = match backend.delete(&d.account).await {
                    Ok(()) => Applied::Gone {
                        event: ("Deleted", format!("deleted account {} on {name}", d.account.id)),
                    },
                    Err(e) => held("delete", &e).unwrap_or_else(|| failed("delete", &e)),
                };
                (d.owner.clone(), result)
            }
        }),
        width,
        ticker,
    )
    .await;
    out.writes += sent(&deletes);
    out.results.extend(deletes.into_iter().map(|(owner, result)| (owner, "delete", result)));

    let updates = bounded(
        (0..plan.updates.len()).map(|i| {
            let u = &plan.updates[i];
            async move {
                let write = Write::Update { account: &u.account, desired: &u.desired, changes: &u.changes };
                if !budget.take(backend.cost(write)) {
                    return (
                        u.desired.owner.clone(),
                        Applied::RateLimited { what: "update", extension: None },
                    );
                }
                let password = password_for(vault, &u.desired, &u.changes);
                let result = match backend.update(&u.account, &u.desired, &u.changes, password.as_ref()).await
                {
                    Ok(()) => Applied::Present {
                        id: u.account.id.clone(),
                        extension: u.desired.extension.clone(),
                        fingerprint: password.as_ref().map(|p| fingerprint(&u.desired.owner, p)),
                        event: ("Updated", format!("updated {} on {name}", describe_changes(&u.changes))),
                    },
                    Err(e) => held("update", &e).unwrap_or_else(|| failed("update", &e)),
                };
                (u.desired.owner.clone(), result)
            }
        }),
        width,
        ticker,
    )
    .await;
    out.writes += sent(&updates);
    // In completion order, not the plan's: matched by owner (one account per Employee).
    for (owner, result) in updates {
        let was_in_sync = previous.get(&owner).is_some_and(|s| s.state == AccountState::InSync);
        let not_only_password = plan
            .updates
            .iter()
            .find(|u| u.desired.owner == owner)
            .is_some_and(|u| u.changes.iter().any(|c| c.field != plan::Field::Password));
        if was_in_sync && not_only_password && matches!(result, Applied::Present { .. }) {
            out.drift_corrections += 1;
        }
        out.results.push((owner, "update", result));
    }

    let adoptions = bounded(
        (0..plan.adoptions.len()).map(|i| {
            let a = &plan.adoptions[i];
            async move {
                let write = Write::Update { account: &a.account, desired: &a.desired, changes: &a.changes };
                if !a.changes.is_empty() && !budget.take(backend.cost(write)) {
                    return (
                        a.desired.owner.clone(),
                        Applied::RateLimited { what: "adoption", extension: None },
                    );
                }
                let password = password_for(vault, &a.desired, &a.changes);
                let written = if a.changes.is_empty() {
                    Ok(())
                } else {
                    backend.update(&a.account, &a.desired, &a.changes, password.as_ref()).await
                };
                let before = match a.reason {
                    plan::AdoptReason::PendingCreate => {
                        previous.get(&a.desired.owner).and_then(|s| s.password_fingerprint.clone())
                    }
                    _ => None,
                };
                let result = match written {
                    Ok(()) => Applied::Present {
                        id: a.account.id.clone(),
                        extension: a.desired.extension.clone(),
                        fingerprint: password.as_ref().map(|p| fingerprint(&a.desired.owner, p)).or(before),
                        event: (
                            "Adopted",
                            format!("took over account {} on {name} ({:?})", a.account.id, a.reason),
                        ),
                    },
                    Err(e) => held("adoption", &e)
                        .unwrap_or_else(|| failed(&format!("adopting account {}", a.account.id), &e)),
                };
                (a.desired.owner.clone(), result)
            }
        }),
        width,
        ticker,
    )
    .await;
    out.writes += plan
        .adoptions
        .iter()
        .filter(|a| !a.changes.is_empty())
        .filter(|a| {
            !adoptions.iter().any(|(o, r)| *o == a.desired.owner && matches!(r, Applied::RateLimited { .. }))
        })
        .count();
    out.results.extend(adoptions.into_iter().map(|(owner, result)| (owner, "adopt", result)));

    if plan.creates.is_empty() {
        return Ok(out);
    }
    // Only the creates the quota can pay for are sent, and only theirs are recorded as
    // intents: one not sent must not claim what may later appear on its extension.
    let (sendable, deferred): (Vec<&plan::Create>, Vec<&plan::Create>) =
        plan.creates.iter().partition(|c| budget.take(backend.cost(Write::Create(&c.desired))));
    out.results.extend(deferred.iter().map(|c| {
        (c.desired.owner.clone(), "create", Applied::RateLimited { what: "create", extension: None })
    }));
    if sendable.is_empty() {
        return Ok(out);
    }
    let intents: Vec<Intent> = sendable
        .iter()
        .map(|c| {
            let mut status = entry_with(
                previous.get(&c.desired.owner).copied(),
                name,
                AccountState::Pending,
                Some("create sent; its result is checked before any retry".into()),
            );
            status.external_id = None;
            status.extension = Some(c.desired.extension.clone());
            // The create carries the Employee's password: if its answer is lost, the
            // account it made is claimed with this fingerprint, not taken as unknown.
            status.password_fingerprint = c.desired.password_fingerprint.clone();
            let generated = match vault.password(&c.desired.owner) {
                Some(_) => None,
                None => Some(backend.generate_password()),
            };
            Intent { owner: c.desired.owner.clone(), entry: status, generated }
        })
        .collect();
    store.record_intents(name, &intents).await.map_err(Error::Intents)?;
    // Only the passwords outlive the recording: 10,000 status entries need not wait for
    // 10,000 creates. Keyed by the plan's owners (intents are made in `sendable`'s order),
    // not by copies of them.
    let generated: HashMap<&Owner, Secret> =
        sendable.iter().zip(intents).filter_map(|(c, i)| Some((&c.desired.owner, i.generated?))).collect();
    let generated = &generated;

    let creates = bounded(
        (0..sendable.len()).map(|i| {
            let c = sendable[i];
            async move {
                if budget.stopped() {
                    // Paid for, but the system refused others since: the intent stays.
                    let held =
                        Applied::RateLimited { what: "create", extension: Some(c.desired.extension.clone()) };
                    return (c.desired.owner.clone(), held, None);
                }
                let (password, generated) = match generated.get(&c.desired.owner) {
                    Some(p) => (p.clone(), true),
                    None => (
                        vault.password(&c.desired.owner).unwrap_or_else(|| backend.generate_password()),
                        false,
                    ),
                };
                let fingerprint = (!generated).then(|| fingerprint(&c.desired.owner, &password));
                let result = match backends::create_once_unresolved(backend, &c.desired, Some(&password))
                    .await
                {
                    Ok(Some(account)) => created(name, &account, fingerprint.clone()),
                    // Accepted, but the answer names no account: found below.
                    Ok(None) => Applied::Accepted { extension: c.desired.extension.clone() },
                    Err(e) if e.is_transient() && quota::spent(backend) => {
                        // Refused by the quota; the intent stays, as for any unclear
                        // create.
                        budget.exhaust();
                        Applied::RateLimited { what: "create", extension: Some(c.desired.extension.clone()) }
                    }
                    Err(e) if e.is_transient() || matches!(e, backends::Error::Protocol { .. }) => {
                        Applied::Unclear {
                            extension: c.desired.extension.clone(),
                            message: format!(
                                "{}: create may not have reached {name}: {e}; checked before retrying",
                                reason::PBX_UNREACHABLE
                            ),
                        }
                    }
                    Err(e) => failed("create", &e),
                };
                (c.desired.owner.clone(), result, fingerprint)
            }
        }),
        width,
        ticker,
    )
    .await;
    out.writes += creates.iter().filter(|(_, r, _)| !matches!(r, Applied::RateLimited { .. })).count();
    let creates = resolve_created(backend, name, &plan.creates, creates).await;
    out.results.extend(creates.into_iter().map(|(owner, result)| (owner, "create", result)));
    Ok(out)
}

/// Writes of a phase that were sent (not held back for the quota).
fn sent(results: &[(Owner, Applied)]) -> usize {
    results.iter().filter(|(_, r)| !matches!(r, Applied::RateLimited { .. })).count()
}

/// What a create that names its account leaves.
fn created(name: &str, account: &Account, fingerprint: Option<String>) -> Applied {
    Applied::Present {
        id: account.id.clone(),
        extension: account.extension.clone(),
        fingerprint,
        event: (
            "Created",
            format!("created account {} on {name} (extension {})", account.id, account.extension),
        ),
    }
}

/// Finds, with one listing, the accounts of the creates the system accepted without
/// naming them. An account the listing does not show (or a listing that fails) leaves
/// its create unclear: the intent stays recorded, and the next pass adopts the account
/// as its pending create, never making a second one.
async fn resolve_created<B: Backend>(
    backend: &B,
    name: &str,
    creates: &[plan::Create],
    sent: Vec<(Owner, Applied, Option<String>)>,
) -> Vec<(Owner, Applied)> {
    let accepted = sent.iter().filter(|(_, a, _)| matches!(a, Applied::Accepted { .. })).count();
    // Accounts are matched by extension and e-mail: no record needs its detail read.
    let needed = BTreeSet::from([plan::Field::Email]);
    let listing = match accepted {
        0 => None,
        _ => match backend.list_for(&needed).await {
            Ok(listing) => Some(listing),
            Err(e) => {
                tracing::warn!(system = %name, error = %e, accepted, "could not list the accounts just created; the next pass will");
                None
            }
        },
    };
    let mut by_extension: HashMap<&str, Vec<&Account>> = HashMap::new();
    for account in listing.iter().flat_map(|l| &l.accounts) {
        by_extension.entry(account.extension.as_str()).or_default().push(account);
    }
    let wanted: HashMap<&Owner, &Desired> = creates.iter().map(|c| (&c.desired.owner, &*c.desired)).collect();
    sent.into_iter()
        .map(|(owner, result, fingerprint)| {
            let Applied::Accepted { extension } = result else {
                return (owner, result);
            };
            // The one on the extension made with this e-mail (systems may lower-case it):
            // the planner saw the extension free, but someone may have taken it since.
            let email = |a: &Attributes| a.email.as_deref().map(str::to_lowercase);
            let found = wanted.get(&owner).and_then(|d| {
                let want = email(&d.attributes);
                by_extension.get(extension.as_str())?.iter().find(|a| email(&a.attributes) == want)
            });
            let result = match found {
                Some(account) => created(name, account, fingerprint),
                None => Applied::Unclear {
                    extension,
                    message: format!("{}: created; waiting for {name} to list it", reason::PENDING),
                },
            };
            (owner, result)
        })
        .collect()
}

/// Runs the futures `futures` yields, at most `width` at a time, making each only when a
/// slot is free: a plan of N creates holds `width` futures at once, not N (collected
/// first, 10,000 create futures took 25 MB). The callers map indices, not borrowed items:
/// a closure over borrowed items trips the compiler's `Send` inference in spawned tasks.
async fn bounded<F: Future>(
    mut futures: impl Iterator<Item = F>,
    width: usize,
    ticker: &Ticker<'_>,
) -> Vec<F::Output> {
    let mut running = FuturesUnordered::new();
    let mut done = Vec::new();
    loop {
        while running.len() < width.max(1) {
            match futures.next() {
                Some(future) => running.push(future),
                None => break,
            }
        }
        match running.next().await {
            Some(output) => {
                ticker.tick();
                done.push(output);
            }
            None => return done,
        }
    }
}

fn password_for<V: Vault>(vault: &V, desired: &Desired, changes: &[plan::Change]) -> Option<Secret> {
    changes.iter().any(|c| c.field == plan::Field::Password).then(|| vault.password(&desired.owner)).flatten()
}
