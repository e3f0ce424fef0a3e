//! Status writes: Employee entries and conditions, PhoneSystem conditions and counts,
//! generated passwords. Each write happens only when it changes something.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::reflector::ObjectRef,
};
use serde_json::json;

use super::{Context, Error, MANAGER, owner_of};
use crate::{
    api::{
        AccountState, AccountStatus, BackendKind, Employee, EmployeeStatus, PhoneSystem, PhoneSystemStatus,
        conditions::{self, READY, SYNCED, reason},
        phone_system::RequestQuota,
    },
    backends::Secret as Password,
    engine::Report,
    plan::Owner,
};

/// Tries of a read-modify-write that lost a race.
const CONFLICT_RETRIES: usize = 5;

/// What became of an entry write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written, or already as wanted.
    Done,
    /// Not written: the stored entry is no longer the one the pass planned from (the
    /// watch cache was behind, often with this controller's own last write).
    Stale,
}

/// Puts (or, with `None`, removes) `owner`'s entry for `system`, if the stored entry is
/// still `expected`, the one the pass planned from. Read-modify-write on the status
/// subresource with the object's resourceVersion: a concurrent writer makes it retry,
/// never lose an entry; and a pass that planned from a stale cache cannot overwrite a
/// newer entry (say, replace a claim it did not see with a conflict).
pub async fn write_entry(
    ctx: &Context,
    owner: &Owner,
    system: &str,
    expected: Option<&AccountStatus>,
    entry: Option<AccountStatus>,
) -> Result<Written, Error> {
    let stale = std::sync::atomic::AtomicBool::new(false);
    update_status(ctx, owner, |status| {
        let stored = status.phone_systems.iter().find(|p| p.name == system);
        if stored == entry.as_ref() {
            stale.store(false, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        if stored != expected {
            stale.store(true, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        stale.store(false, std::sync::atomic::Ordering::Relaxed);
        status.phone_systems.retain(|p| p.name != system);
        if let Some(entry) = entry.clone() {
            status.phone_systems.push(entry);
        }
        status.phone_systems.sort_by(|a, b| a.name.cmp(&b.name));
        true
    })
    .await?;
    Ok(if stale.into_inner() { Written::Stale } else { Written::Done })
}

/// Applies `change` to the Employee's status and writes it if `change` says it changed.
async fn update_status(
    ctx: &Context,
    owner: &Owner,
    change: impl Fn(&mut EmployeeStatus) -> bool,
) -> Result<(), Error> {
    let lock = ctx.employee_lock(owner);
    let _held = lock.lock().await;
    let api: Api<Employee> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut employee) = api.get_opt(&owner.name).await? else { return Ok(()) };
        let mut status = employee.status.take().unwrap_or_default();
        if !change(&mut status) {
            return Ok(());
        }
        employee.status = Some(status);
        match api.replace_status(&owner.name, &PostParams::default(), &employee).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Waiting(format!("status of {owner}: too many concurrent writers")))
}

/// The names of the PhoneSystems that exist in the Employee's namespace.
pub fn systems_in(ctx: &Context, e: &Employee) -> BTreeSet<String> {
    let ns = e.namespace().unwrap_or_default();
    ctx.systems
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// An Employee's conditions and summary, from its entries. Pure; `now` stamps a
/// transition.
pub fn conditions_of(e: &Employee, existing: &BTreeSet<String>, now: &Time) -> EmployeeStatus {
    let mut status = e.status.clone().unwrap_or_default();
    let generation = e.metadata.generation;
    let entry = |name: &str| status.phone_systems.iter().find(|p| p.name == name);
    let declared = e.spec.phone_systems.len();
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let mut in_sync = 0;
    for m in &e.spec.phone_systems {
        match entry(&m.name) {
            None if !existing.contains(&m.name) => problems.push((
                reason::PHONE_SYSTEM_NOT_FOUND,
                format!("{}: no PhoneSystem of that name in this namespace", m.name),
            )),
            None => problems.push((reason::PENDING, format!("{}: not synced yet", m.name))),
            Some(p) => match p.state {
                AccountState::InSync => in_sync += 1,
                state => {
                    let why = match state {
                        AccountState::Conflict => reason::EXTENSION_TAKEN,
                        AccountState::ManualActionRequired => {
                            if p.message.as_deref().is_some_and(|m| m.starts_with(reason::DELETE_UNSUPPORTED))
                            {
                                reason::DELETE_UNSUPPORTED
                            } else {
                                reason::UPDATE_UNSUPPORTED
                            }
                        }
                        AccountState::Failed => reason_in(p.message.as_deref()),
                        _ if p.message.as_deref().is_some_and(|m| m.starts_with(reason::RATE_LIMITED)) => {
                            reason::RATE_LIMITED
                        }
                        _ => reason::PENDING,
                    };
                    problems
                        .push((why, format!("{}: {}", m.name, p.message.as_deref().unwrap_or("pending"))));
                }
            },
        }
    }
    let ready = match problems.first() {
        None => {
            conditions::new(READY, true, reason::IN_SYNC, "every account matches the spec", generation, now)
        }
        Some((why, _)) => {
            let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            conditions::new(READY, false, why, message, generation, now)
        }
    };
    let failed: Vec<&AccountStatus> =
        status.phone_systems.iter().filter(|p| p.state == AccountState::Failed).collect();
    let synced = match failed.first() {
        None => conditions::new(
            SYNCED,
            true,
            reason::SYNCED,
            "the last pass of every system succeeded",
            generation,
            now,
        ),
        Some(p) => conditions::new(
            SYNCED,
            false,
            reason_in(p.message.as_deref()),
            format!("{}: {}", p.name, p.message.as_deref().unwrap_or("failed")),
            generation,
            now,
        ),
    };
    conditions::set(&mut status.conditions, ready);
    conditions::set(&mut status.conditions, synced);
    status.synced_systems = Some(format!("{in_sync}/{declared}"));
    status.observed_generation = generation;
    status
}

/// The reason a failure message starts with, as the engine writes them.
fn reason_in(message: Option<&str>) -> &'static str {
    let known = [
        reason::PBX_UNREACHABLE,
        reason::VALIDATION_FAILED,
        reason::AUTH_FAILED,
        reason::EXTENSION_TAKEN,
        reason::RATE_LIMITED,
    ];
    message.and_then(|m| known.into_iter().find(|r| m.starts_with(r))).unwrap_or(reason::VALIDATION_FAILED)
}

/// Keeps the Employee's conditions in line with its entries.
pub async fn employee_conditions(ctx: &Context, e: &Employee) -> Result<(), Error> {
    let Some(owner) = owner_of(e) else { return Ok(()) };
    let existing = systems_in(ctx, e);
    let wanted = conditions_of(e, &existing, &ctx.now());
    if e.status.as_ref() == Some(&wanted) {
        return Ok(());
    }
    let now = ctx.now();
    update_status(ctx, &owner, |status| {
        // Recomputed on the fresh object: entries may have moved since the cache saw them.
        let mut fresh = e.clone();
        fresh.status = Some(status.clone());
        let next = conditions_of(&fresh, &existing, &now);
        let changed = *status != next;
        *status = next;
        changed
    })
    .await
}

async fn patch_system_status(
    ctx: &Context,
    system: &PhoneSystem,
    status: PhoneSystemStatus,
) -> Result<(), Error> {
    let ns = system.namespace().unwrap_or_default();
    let api: Api<PhoneSystem> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({ "status": status });
    api.patch_status(&system.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn kind_of(system: &PhoneSystem) -> Option<BackendKind> {
    system.spec.backend().ok().map(|b| b.kind())
}

/// Records a pass that waits for the system's request quota to reset: the system is
/// reachable, nothing was listed or written.
pub async fn system_rate_limited(
    ctx: &Context,
    system: &PhoneSystem,
    quota: &RequestQuota,
    message: &str,
) -> Result<(), Error> {
    let now = ctx.now();
    let generation = system.metadata.generation;
    let mut status = system.status.clone().unwrap_or_default();
    let before = status.clone();
    conditions::set(
        &mut status.conditions,
        conditions::new(READY, true, reason::IN_SYNC, "reachable, credentials accepted", generation, &now),
    );
    conditions::set(
        &mut status.conditions,
        conditions::new(SYNCED, false, reason::RATE_LIMITED, message, generation, &now),
    );
    status.backend = kind_of(system);
    status.observed_generation = generation;
    status.quota = Some(quota.clone());
    if status == before {
        return Ok(());
    }
    patch_system_status(ctx, system, status).await
}

/// Whether the quota moved enough to be worth a status write on its own: a pass that
/// changed nothing else writes nothing, but a status that kept the quota of hours ago
/// would mislead.
fn quota_moved(before: Option<&RequestQuota>, now: Option<&RequestQuota>) -> bool {
    match (before, now) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            let step = a.limit.or(b.limit).map_or(1, |l| (l / 10).max(1));
            a.limit != b.limit || a.remaining.abs_diff(b.remaining) >= step
        }
        _ => true,
    }
}

/// Marks the system not ready (unreachable, credentials missing, invalid spec).
pub async fn system_unready(
    ctx: &Context,
    system: &PhoneSystem,
    why: &'static str,
    message: &str,
) -> Result<(), Error> {
    let now = ctx.now();
    let generation = system.metadata.generation;
    let mut status = system.status.clone().unwrap_or_default();
    let before = status.clone();
    conditions::set(&mut status.conditions, conditions::new(READY, false, why, message, generation, &now));
    conditions::set(&mut status.conditions, conditions::new(SYNCED, false, why, message, generation, &now));
    status.backend = kind_of(system);
    status.observed_generation = generation;
    if status == before {
        return Ok(());
    }
    patch_system_status(ctx, system, status).await
}

/// Records a completed pass, if it changed anything a reader would see.
pub async fn system_synced(
    ctx: &Context,
    system: &PhoneSystem,
    report: &Report,
    took: Duration,
) -> Result<(), Error> {
    let now = ctx.now();
    let generation = system.metadata.generation;
    let mut status = system.status.clone().unwrap_or_default();
    let before = status.clone();
    conditions::set(
        &mut status.conditions,
        conditions::new(READY, true, reason::IN_SYNC, "reachable, credentials accepted", generation, &now),
    );
    let synced = if report.plan.guard_tripped() {
        conditions::new(
            SYNCED,
            false,
            reason::DELETION_GUARD,
            format!(
                "{} deletions held: more than maxDeletionsPerSync; raise it or annotate {}",
                report.plan.held_deletes.len(),
                super::ALLOW_DELETIONS
            ),
            generation,
            &now,
        )
    } else if report.unreadable > 0 {
        conditions::new(
            SYNCED,
            false,
            reason::UNREADABLE_RECORDS,
            format!(
                "{} record(s) on the system could not be read (see the events); no account is deleted, nor created on their extensions, until they can be",
                report.unreadable
            ),
            generation,
            &now,
        )
    } else if report.rate_limited > 0 {
        conditions::new(
            SYNCED,
            false,
            reason::RATE_LIMITED,
            format!(
                "{} write(s) wait for the request quota to reset{}; see the Employees",
                report.rate_limited,
                report
                    .quota
                    .as_ref()
                    .and_then(|q| q.reset_time.as_ref())
                    .map(|t| format!(" at {}", t.0))
                    .unwrap_or_default()
            ),
            generation,
            &now,
        )
    } else if !system.spec.policy.writes() && report.pending.total() > 0 {
        // policy: observe (issue #16): planned, deliberately not written.
        conditions::new(
            SYNCED,
            false,
            reason::OBSERVING,
            format!("policy observe: nothing written; a sync would make {}", report.pending),
            generation,
            &now,
        )
    } else if report.failures > 0 {
        conditions::new(
            SYNCED,
            false,
            reason::VALIDATION_FAILED,
            format!("{} account(s) could not be brought in line; see the Employees", report.failures),
            generation,
            &now,
        )
    } else {
        conditions::new(SYNCED, true, reason::SYNCED, "every planned change was applied", generation, &now)
    };
    conditions::set(&mut status.conditions, synced);
    status.backend = kind_of(system);
    status.counts = Some(report.counts.clone());
    // policy: observe (issue #16): what the pass planned and did not write.
    status.pending_changes = Some(report.pending);
    status.observed_generation = generation;
    // The quota goes with any other change, or alone once it moved by a tenth.
    if status != before || report.writes > 0 || quota_moved(before.quota.as_ref(), report.quota.as_ref()) {
        status.quota = report.quota.clone();
    }
    // The times move only with a change: a converged pass writes nothing at all.
    if status == before && report.writes == 0 {
        return Ok(());
    }
    status.last_sync_time = Some(now);
    status.last_sync_duration = Some(format!("{}ms", took.as_millis()));
    patch_system_status(ctx, system, status).await
}

/// Keeps a generated password in the Employee's `<name>-credentials` Secret, under the
/// PhoneSystem's name, owned by the Employee so it goes with it.
pub async fn store_generated_password(
    ctx: &Context,
    owner: &Owner,
    system: &str,
    password: &Password,
) -> Result<(), Error> {
    // Passes of different systems keep passwords of one Employee at the same time: the
    // lock orders them, and a create that still meets the Secret falls back to a patch.
    let lock = ctx.employee_lock(owner);
    let _held = lock.lock().await;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let name = format!("{}-credentials", owner.name);
    let value = ByteString(password.expose().as_bytes().to_vec());
    // A merge patch: `force` belongs to server-side apply only, and kube refuses the
    // request before sending it when both are given.
    let patch = json!({ "data": { system: value } });
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        other => return other.map(|_| ()).map_err(Error::from),
    }
    let employee = ctx.employees.get(&ObjectRef::new(&owner.name).within(&owner.namespace));
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(owner.namespace.clone()),
            owner_references: employee.and_then(|e| e.controller_owner_ref(&())).map(|r| vec![r]),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some([(system.to_owned(), value)].into()),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok(())
        }
        other => other.map(|_| ()).map_err(Error::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit: Option<u64>, remaining: u64) -> RequestQuota {
        RequestQuota { limit, remaining, reset_time: None }
    }

    #[test]
    fn the_quota_alone_is_written_once_it_moved_by_a_tenth() {
        let (a, b) = (quota(Some(1000), 900), quota(Some(1000), 850));
        assert!(!quota_moved(Some(&a), Some(&b)), "a listing or two: no write of its own");
        assert!(quota_moved(Some(&a), Some(&quota(Some(1000), 800))));
        assert!(quota_moved(Some(&quota(Some(1000), 3)), Some(&quota(Some(1000), 1000))), "a new window");
        assert!(quota_moved(None, Some(&a)) && quota_moved(Some(&a), None));
        assert!(quota_moved(Some(&a), Some(&quota(Some(500), 900))), "another limit");
        assert!(!quota_moved(None, None));
    }

    #[test]
    fn an_employee_that_waits_for_the_quota_says_rate_limited() {
        let mut e = Employee::new(
            "anna",
            serde_json::from_value(serde_json::json!({
                "givenName": "Anna", "familyName": "Nowak", "email": "anna@example.com",
                "extension": "301", "phoneSystems": [{"name": "cloud-pbx"}],
            }))
            .unwrap(),
        );
        e.status = Some(EmployeeStatus {
            phone_systems: vec![AccountStatus {
                name: "cloud-pbx".into(),
                external_id: None,
                extension: None,
                state: AccountState::Pending,
                message: Some(format!(
                    "{}: create waits: the request quota of cloud-pbx is spent until 2030-01-01T00:00:00Z",
                    reason::RATE_LIMITED
                )),
                last_sync: None,
                password_fingerprint: None,
            }],
            ..EmployeeStatus::default()
        });
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap());
        let status = conditions_of(&e, &["cloud-pbx".to_owned()].into(), &now);
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason::RATE_LIMITED));
        assert!(ready.message.contains("2030-01-01T00:00:00Z"), "{}", ready.message);
    }
}
