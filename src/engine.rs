//! The sync engine: one phone system, one pass. Shared by the controller and the
//! cluster-free CLI (one engine, two front ends).
//!
//! A pass: turn the Employees that list the system into desired accounts (the backend
//! judges what fits), read the claims from their statuses, list the system, plan, record
//! the intent of every create before sending it, apply the plan in its documented order
//! with the system's concurrency, and report the new status entries, counts and events.
//! The caller persists what changed; an entry whose content did not change keeps its
//! `lastSync`, so a converged pass produces nothing to write.

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream::FuturesUnordered};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        AccountState, AccountStatus, EmployeeSpec, EmployeeStatus, PhoneSystemSpec, conditions::reason,
        employee::DeletionPolicy, phone_system::AccountCounts,
    },
    backends::{self, Backend, Secret},
    plan::{self, Claim, Desired, Guard, Inputs, ManualKind, Observed, Owner, Plan},
};

/// An Employee as the engine needs it.
#[derive(Clone, Debug)]
pub struct EmployeeView {
    pub owner: Owner,
    pub spec: EmployeeSpec,
    pub status: Option<EmployeeStatus>,
    /// Seniority for contested extensions (creation time in seconds).
    pub rank: i64,
    /// Being deleted (deletionTimestamp set).
    pub deleting: bool,
}

/// Where intents are recorded before creates are sent.
pub trait IntentStore: Sync {
    /// Persists a `Pending` entry per create, durably, before returning.
    fn record_intents(
        &self,
        system: &str,
        intents: &[(Owner, AccountStatus)],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Passwords of Employees.
pub trait Vault: Sync {
    /// The Employee's own password (from `passwordSecretRef`), if any.
    fn password(&self, owner: &Owner) -> Option<Secret>;
}

/// What one pass decided and did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub plan: Plan,
    /// The entry each Employee should now have for this system; `None`: remove it.
    pub entries: BTreeMap<Owner, Option<AccountStatus>>,
    pub counts: AccountCounts,
    pub events: Vec<Event>,
    /// Passwords generated for creates, to be kept by the caller (the controller writes
    /// them to `<name>-credentials`).
    pub generated: Vec<(Owner, Secret)>,
    /// Writes sent to the system.
    pub writes: usize,
    pub failures: usize,
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
}

/// Options of one pass.
#[derive(Clone, Debug)]
pub struct Options {
    /// Plan and report, but write nothing to the system.
    pub dry_run: bool,
    /// Deletions allowed past `maxDeletionsPerSync` (the allow-deletions annotation).
    pub allow_deletions: Option<u32>,
    pub now: Time,
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
    employees: &[EmployeeView],
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
        if e.deleting {
            continue;
        }
        let Some(membership) = e.spec.membership(name) else { continue };
        match backend.desired(&e.spec, membership) {
            Ok(attributes) => desired.push(Desired {
                owner: e.owner.clone(),
                rank: e.rank,
                extension: e.spec.extension_on(membership).to_owned(),
                attributes,
                password_fingerprint: vault.password(&e.owner).map(|p| fingerprint(&e.owner, &p)),
            }),
            Err(err) => {
                report.failures += 1;
                let status = entry_with(entry, name, AccountState::Failed, Some(err.to_string()));
                entries.insert(e.owner.clone(), Some(status));
            }
        }
    }
    let declared = desired.len() + entries.values().filter(|s| s.is_some()).count();

    let listing = backend.list().await?;
    let observed = Observed { accounts: listing.accounts, complete: listing.complete };
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

    let suspended = spec.suspend || options.dry_run;
    let mut outcome = Outcome::default();
    if !suspended {
        outcome = apply(backend, name, spec, &plan, store, vault, &previous).await?;
    }
    report.writes = outcome.writes;
    report.generated = outcome.generated;

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
        entries.set(
            &wait.owner,
            AccountState::Pending,
            Some("the system's list was incomplete; waiting".into()),
            None,
            None,
        );
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
    for (owner, result) in outcome.results {
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
    if suspended {
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
    Ok(report)
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
    /// A create whose result is unknown: the intent stays recorded.
    Unclear {
        extension: String,
        message: String,
    },
    Failed {
        message: String,
    },
}

#[derive(Default)]
struct Outcome {
    results: Vec<(Owner, Applied)>,
    writes: usize,
    generated: Vec<(Owner, Secret)>,
}

/// Applies `plan` in its documented order: deletes, updates, adoptions, creates.
async fn apply<B: Backend, S: IntentStore, V: Vault>(
    backend: &B,
    name: &str,
    spec: &PhoneSystemSpec,
    plan: &Plan,
    store: &S,
    vault: &V,
    previous: &BTreeMap<&Owner, &AccountStatus>,
) -> Result<Outcome, Error> {
    let width = usize::try_from(spec.max_concurrency.max(1)).unwrap_or(1);
    let mut out = Outcome::default();

    let deletes = bounded(
        (0..plan.deletes.len()).map(|i| {
            let d = &plan.deletes[i];
            async move {
                let result = match backend.delete(&d.account).await {
                    Ok(()) => Applied::Gone {
                        event: ("Deleted", format!("deleted account {} on {name}", d.account.id)),
                    },
                    Err(e) => Applied::Failed { message: format!("delete failed: {e}") },
                };
                (d.owner.clone(), result)
            }
        }),
        width,
    )
    .await;
    out.writes += plan.deletes.len();
    out.results.extend(deletes);

    let updates = bounded(
        (0..plan.updates.len()).map(|i| {
            let u = &plan.updates[i];
            async move {
                let password = password_for(vault, &u.desired, &u.changes);
                let result = match backend.update(&u.account, &u.desired, &u.changes, password.as_ref()).await
                {
                    Ok(()) => Applied::Present {
                        id: u.account.id.clone(),
                        extension: u.desired.extension.clone(),
                        fingerprint: password.as_ref().map(|p| fingerprint(&u.desired.owner, p)),
                        event: ("Updated", format!("updated {} on {name}", describe_changes(&u.changes))),
                    },
                    Err(e) => Applied::Failed { message: format!("update failed: {e}") },
                };
                (u.desired.owner.clone(), result)
            }
        }),
        width,
    )
    .await;
    out.writes += plan.updates.len();
    out.results.extend(updates);

    let adoptions = bounded(
        (0..plan.adoptions.len()).map(|i| {
            let a = &plan.adoptions[i];
            async move {
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
                    Err(e) => {
                        Applied::Failed { message: format!("adopting account {} failed: {e}", a.account.id) }
                    }
                };
                (a.desired.owner.clone(), result)
            }
        }),
        width,
    )
    .await;
    out.writes += plan.adoptions.iter().filter(|a| !a.changes.is_empty()).count();
    out.results.extend(adoptions);

    if plan.creates.is_empty() {
        return Ok(out);
    }
    let intents: Vec<(Owner, AccountStatus)> = plan
        .creates
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
            (c.desired.owner.clone(), status)
        })
        .collect();
    store.record_intents(name, &intents).await.map_err(Error::Intents)?;

    let creates = bounded(
        (0..plan.creates.len()).map(|i| {
            let c = &plan.creates[i];
            async move {
                let (password, generated) = match vault.password(&c.desired.owner) {
                    Some(p) => (p, false),
                    None => (backend.generate_password(), true),
                };
                let result = match backends::create_once(backend, &c.desired, Some(&password)).await {
                    Ok(account) => Applied::Present {
                        id: account.id.clone(),
                        extension: account.extension.clone(),
                        fingerprint: (!generated).then(|| fingerprint(&c.desired.owner, &password)),
                        event: (
                            "Created",
                            format!(
                                "created account {} on {name} (extension {})",
                                account.id, account.extension
                            ),
                        ),
                    },
                    Err(e) if e.is_transient() || matches!(e, backends::Error::Protocol { .. }) => {
                        Applied::Unclear {
                            extension: c.desired.extension.clone(),
                            message: format!(
                                "{}: create may not have reached {name}: {e}; checked before retrying",
                                reason::PBX_UNREACHABLE
                            ),
                        }
                    }
                    Err(e) => Applied::Failed {
                        message: format!("{}: create refused: {e}", reason::VALIDATION_FAILED),
                    },
                };
                let keep = generated && matches!(result, Applied::Present { .. });
                (c.desired.owner.clone(), result, keep.then_some(password))
            }
        }),
        width,
    )
    .await;
    out.writes += plan.creates.len();
    for (owner, result, generated) in creates {
        if let Some(secret) = generated {
            out.generated.push((owner.clone(), secret));
        }
        out.results.push((owner, result));
    }
    Ok(out)
}

/// Runs the futures `futures` yields, at most `width` at a time, making each only when a
/// slot is free: a plan of N creates holds `width` futures at once, not N (collected
/// first, 10,000 create futures took 25 MB). The callers map indices, not borrowed items:
/// a closure over borrowed items trips the compiler's `Send` inference in spawned tasks.
async fn bounded<F: Future>(mut futures: impl Iterator<Item = F>, width: usize) -> Vec<F::Output> {
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
            Some(output) => done.push(output),
            None => return done,
        }
    }
}

fn password_for<V: Vault>(vault: &V, desired: &Desired, changes: &[plan::Change]) -> Option<Secret> {
    changes.iter().any(|c| c.field == plan::Field::Password).then(|| vault.password(&desired.owner)).flatten()
}
