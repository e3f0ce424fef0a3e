//! Employee status writes and generated passwords.
//!
//! Status is written by server-side apply, one field manager per writer, so that no write
//! needs a read first and none can conflict with another of ours:
//! - each PhoneSystem's passes own that system's entry in `status.phoneSystems` (a list
//!   map keyed by `name`) under their own manager, [`pass_manager`]. One manager for all
//!   passes would not do: an apply drops whatever its manager applied before and does not
//!   send again, so a pass of one system would remove the entries of the others;
//! - the Employee controller owns the conditions, `syncedSystems` and
//!   `observedGeneration` ([`CONDITIONS_MANAGER`]).
//!
//! Applies are forced, as the Kubernetes documentation advises controllers: a field a
//! person (or an older switchboard, which wrote status with `PUT`) last set is taken
//! over. A field such a writer set to the value we apply stays theirs too, and would
//! outlive our apply that drops it; the answer shows it, and a JSON patch of ours then
//! removes it (once: after it, nobody else owns it).
//!
//! The answer of every write is kept in the Employee cache ([`super::watches::Cache`]),
//! so the next pass plans from it even if the watch has not delivered it yet.

use std::collections::BTreeSet;

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
use serde_json::{Value, json};

use super::{Context, Error, MANAGER};
use crate::{
    api::{
        AccountState, AccountStatus, Employee, EmployeeStatus,
        conditions::{self, Abnormal, READY, SYNCED, reason},
    },
    backends::Secret as Password,
    plan::Owner,
};

/// The field manager of the Employee controller: conditions and summary.
pub const CONDITIONS_MANAGER: &str = "switchboard-employees";

/// Field managers are at most 128 characters.
const MAX_MANAGER: usize = 128;

/// The field manager of the passes of PhoneSystem `system` (one per system: see the
/// module's notes).
pub fn pass_manager(system: &str) -> String {
    let manager = format!("switchboard-pbx.{system}");
    if manager.len() <= MAX_MANAGER {
        return manager;
    }
    // Names may be 253 characters: a long one is cut and made unique again by a digest.
    let digest = ring::digest::digest(&ring::digest::SHA256, system.as_bytes());
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX_MANAGER - hex.len() - 1;
    while !manager.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hex}", &manager[..cut])
}

/// What became of an entry write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written, already as wanted, or the Employee is gone.
    Done,
    /// Not written: the write was guarded by the version the pass planned from, and the
    /// Employee changed since (someone else wrote it).
    Stale,
}

fn apply_body(e: &Employee, guarded: bool) -> Value {
    let mut metadata = json!({ "name": e.name_any(), "namespace": e.namespace() });
    if guarded {
        metadata["resourceVersion"] = json!(e.resource_version());
    }
    json!({ "apiVersion": Employee::api_version(&()), "kind": Employee::kind(&()), "metadata": metadata })
}

/// Puts `entry` as the Employee's entry for `system` (with `None`, removes it).
///
/// `guarded`: only if the Employee is still at the version `e` has (a 409 otherwise),
/// for a write that must not replace an entry the pass did not see: an entry that claims
/// nothing, written where the pass saw no claim, would hide a claim it missed.
pub async fn apply_entry(
    ctx: &Context,
    e: &Employee,
    system: &str,
    entry: Option<&AccountStatus>,
    guarded: bool,
) -> Result<Written, Error> {
    let mut body = apply_body(e, guarded);
    if let Some(entry) = entry {
        body["status"] = json!({ "phoneSystems": [entry] });
    }
    let api: Api<Employee> = Api::namespaced(ctx.client.clone(), &e.namespace().ok_or(Error::Unnamed)?);
    let manager = pass_manager(system);
    let written = match api
        .patch_status(&e.name_any(), &PatchParams::apply(&manager).force(), &Patch::Apply(&body))
        .await
    {
        Ok(written) => written,
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Written::Stale),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Written::Done),
        Err(err) => return Err(err.into()),
    };
    let entries = written.status.as_ref().map(|s| s.phone_systems.as_slice()).unwrap_or_default();
    let index = entries.iter().position(|p| p.name == system);
    let left = index.map(|i| &entries[i]);
    let written = match (index, left == entry) {
        (_, true) | (None, false) => written,
        // Someone else's ownership kept what we dropped: replace it by ours.
        (Some(i), false) => {
            let path = format!("/status/phoneSystems/{i}");
            let mut ops = vec![json!({"op": "test", "path": format!("{path}/name"), "value": system})];
            ops.push(match entry {
                Some(entry) => json!({"op": "replace", "path": path, "value": entry}),
                None => json!({"op": "remove", "path": path}),
            });
            match json_patch(&api, &e.name_any(), &manager, ops).await? {
                Some(fixed) => fixed,
                None => return Ok(Written::Stale),
            }
        }
    };
    ctx.employees.record(written);
    Ok(Written::Done)
}

/// A JSON patch of the status; `None` when its test failed (the entry moved).
async fn json_patch(
    api: &Api<Employee>,
    name: &str,
    manager: &str,
    ops: Vec<Value>,
) -> Result<Option<Employee>, Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|e| Error::Encode(e.to_string()))?;
    let params = PatchParams { field_manager: Some(manager.to_owned()), ..PatchParams::default() };
    match api.patch_status(name, &params, &Patch::Json::<()>(patch)).await {
        Ok(fixed) => Ok(Some(fixed)),
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 || s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The names of the PhoneSystems that exist in the Employee's namespace.
pub fn systems_in(ctx: &Context, e: &Employee) -> BTreeSet<String> {
    let ns = e.namespace().unwrap_or_default();
    ctx.systems
        .store()
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// What keeps an Employee from being Ready, system by system.
struct Problem {
    reason: &'static str,
    message: String,
    /// Only that no pass of an existing system has reached it yet.
    first_pass: bool,
}

fn problems(e: &Employee, existing: &BTreeSet<String>) -> (Vec<Problem>, usize) {
    let entries = e.status.as_ref().map(|s| s.phone_systems.as_slice()).unwrap_or_default();
    let mut problems = Vec::new();
    let mut in_sync = 0;
    for m in &e.spec.phone_systems {
        let problem = |reason, message: String, first_pass| Problem { reason, message, first_pass };
        match entries.iter().find(|p| p.name == m.name) {
            None if !existing.contains(&m.name) => problems.push(problem(
                reason::PHONE_SYSTEM_NOT_FOUND,
                format!("{}: no PhoneSystem of that name in this namespace", m.name),
                false,
            )),
            None => problems.push(problem(reason::PENDING, format!("{}: not synced yet", m.name), true)),
            Some(p) if p.state == AccountState::InSync => in_sync += 1,
            Some(p) => {
                let why = match p.state {
                    AccountState::Released => reason::PHONE_SYSTEM_NOT_FOUND,
                    AccountState::Conflict => reason::EXTENSION_TAKEN,
                    AccountState::ManualActionRequired => {
                        if p.message.as_deref().is_some_and(|m| m.starts_with(reason::DELETE_UNSUPPORTED)) {
                            reason::DELETE_UNSUPPORTED
                        } else {
                            reason::UPDATE_UNSUPPORTED
                        }
                    }
                    AccountState::Failed => reason_in(p.message.as_deref()),
                    // Pending: the reasons its message starts with that a person may act
                    // on or wait for; any other wait is `Pending`.
                    _ => [
                        reason::RATE_LIMITED,
                        reason::PASSWORD_SECRET_MISSING,
                        reason::DELETION_GUARD,
                        reason::UNREADABLE_RECORDS,
                    ]
                    .into_iter()
                    .find(|r| p.message.as_deref().is_some_and(|m| m.starts_with(r)))
                    .unwrap_or(reason::PENDING),
                };
                let message = format!("{}: {}", m.name, p.message.as_deref().unwrap_or("pending"));
                problems.push(problem(why, message, false));
            }
        }
    }
    (problems, in_sync)
}

/// Whether the only thing keeping the Employee from Ready is that some existing system's
/// pass has not reached it yet: a state that normally lasts seconds, not worth a write.
pub fn awaiting_first_pass(e: &Employee, existing: &BTreeSet<String>) -> bool {
    let (problems, _) = problems(e, existing);
    !problems.is_empty() && problems.iter().all(|p| p.first_pass)
}

/// Whether the Employee's generation is still being waited for: not yet recorded in its
/// status, or recorded as waiting for a pass ([`reason::PASS_PENDING`]). Only then do
/// the passes' plans count ([`conditions_of`]'s `behind`): a status that recorded this
/// generation as handled stays so, even in a process that has seen no pass yet.
pub fn generation_pending(e: &Employee) -> bool {
    let status = e.status.as_ref();
    status.and_then(|s| s.observed_generation) != e.metadata.generation
        || status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == conditions::RECONCILING && c.reason == reason::PASS_PENDING)
        })
}

/// The existing systems whose passes the Employee's conditions wait for: those it lists
/// or holds an entry on (a removed membership is a delete or release to come).
pub fn concerned(e: &Employee, existing: &BTreeSet<String>) -> BTreeSet<String> {
    let listed = e.spec.phone_systems.iter().map(|m| &m.name);
    let held = e.status.iter().flat_map(|s| s.phone_systems.iter().map(|p| &p.name));
    listed.chain(held).filter(|n| existing.contains(*n)).cloned().collect()
}

/// An Employee's conditions and summary, from its entries: the fields the Employee
/// controller owns (entries are left out). `behind`: the systems whose passes have not
/// planned from this generation yet. Pure; `now` stamps a transition.
///
/// kstatus: `Reconciling` while anything settles by itself (an entry waiting, a pass
/// due), else `Stalled` while a problem needs a person; neither when all is well
/// ([`conditions::abnormal`] says which reason is which).
pub fn conditions_of(
    e: &Employee,
    existing: &BTreeSet<String>,
    behind: &BTreeSet<String>,
    now: &Time,
) -> EmployeeStatus {
    let current = e.status.clone().unwrap_or_default();
    let generation = e.metadata.generation;
    let (problems, in_sync) = problems(e, existing);
    let ready = match problems.first() {
        None => {
            conditions::new(READY, true, reason::IN_SYNC, "every account matches the spec", generation, now)
        }
        Some(first) => {
            let message = problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
            conditions::new(READY, false, first.reason, message, generation, now)
        }
    };
    let failed = current.phone_systems.iter().find(|p| p.state == AccountState::Failed);
    let synced = match failed {
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
    let mut conditions = current.conditions;
    conditions::set(&mut conditions, ready);
    conditions::set(&mut conditions, synced);
    let of = |kind: Abnormal| {
        problems
            .iter()
            .filter(|p| conditions::abnormal(p.reason) == kind)
            .map(|p| (p.reason, p.message.clone()))
            .collect::<Vec<_>>()
    };
    let mut reconciling = of(Abnormal::Reconciling);
    if !behind.is_empty() {
        let names = behind.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
        let generation = generation.map(|g| format!(" {g}")).unwrap_or_default();
        reconciling.push((
            reason::PASS_PENDING,
            format!("{names}: no pass has planned from generation{generation} yet"),
        ));
    }
    let stalled = of(Abnormal::Stalled);
    let join =
        |found: &[(&str, String)]| found.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
    // While anything still moves on its own, the object is in progress, not stalled.
    let abnormal = match (reconciling.first(), stalled.first()) {
        (Some((why, _)), _) => Some((conditions::RECONCILING, *why, join(&reconciling))),
        (None, Some((why, _))) => Some((conditions::STALLED, *why, join(&stalled))),
        (None, None) => None,
    };
    conditions::set_abnormal(&mut conditions, abnormal, generation, now);
    EmployeeStatus {
        observed_generation: generation,
        conditions,
        synced_systems: Some(format!("{in_sync}/{}", e.spec.phone_systems.len())),
        phone_systems: Vec::new(),
    }
}

/// The part of a status the Employee controller owns. (It never drops a field, so
/// unlike an entry nothing of it can outlive an apply.)
pub fn owned_by_conditions(status: Option<&EmployeeStatus>) -> EmployeeStatus {
    let status = status.cloned().unwrap_or_default();
    EmployeeStatus { phone_systems: Vec::new(), ..status }
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

/// Applies the Employee's conditions and summary.
pub async fn apply_conditions(ctx: &Context, e: &Employee, wanted: &EmployeeStatus) -> Result<(), Error> {
    let mut body = apply_body(e, false);
    body["status"] = serde_json::to_value(wanted).map_err(|err| Error::Encode(err.to_string()))?;
    let api: Api<Employee> = Api::namespaced(ctx.client.clone(), &e.namespace().ok_or(Error::Unnamed)?);
    let params = PatchParams::apply(CONDITIONS_MANAGER).force();
    let written = match api.patch_status(&e.name_any(), &params, &Patch::Apply(&body)).await {
        Ok(written) => written,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    ctx.employees.record(written);
    Ok(())
}

/// Keeps a generated password in the Employee's `<name>-credentials` Secret, under the
/// PhoneSystem's name, owned by the Employee so it goes with it. The Secret is created
/// whole, owner reference included (one request); one that exists already (another
/// system's password) gets the key by a merge patch.
pub async fn store_generated_password(
    ctx: &Context,
    owner: &Owner,
    system: &str,
    password: &Password,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let name = format!("{}-credentials", owner.name);
    let value = ByteString(password.expose().as_bytes().to_vec());
    let employee = ctx.employees.get(&ObjectRef::new(&owner.name).within(&owner.namespace));
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(owner.namespace.clone()),
            owner_references: employee.and_then(|e| e.controller_owner_ref(&())).map(|r| vec![r]),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some([(system.to_owned(), value.clone())].into()),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let params = PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() };
    match api.create(&params, &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // A merge patch: `force` belongs to server-side apply only, and kube refuses
            // the request before sending it when both are given.
            let patch = json!({ "data": { system: value } });
            let params = PatchParams { field_manager: Some(MANAGER.to_owned()), ..PatchParams::default() };
            api.patch(&name, &params, &Patch::Merge(&patch)).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anna(entries: Vec<AccountStatus>) -> Employee {
        let mut e = Employee::new(
            "anna",
            serde_json::from_value(serde_json::json!({
                "givenName": "Anna", "familyName": "Nowak", "email": "anna@example.com",
                "extension": "301", "phoneSystems": [{"name": "cloud-pbx"}],
            }))
            .unwrap(),
        );
        e.status = Some(EmployeeStatus { phone_systems: entries, ..EmployeeStatus::default() });
        e
    }

    fn entry(state: AccountState, message: Option<String>) -> AccountStatus {
        AccountStatus {
            name: "cloud-pbx".into(),
            external_id: None,
            extension: None,
            state,
            message,
            last_sync: None,
            password_fingerprint: None,
        }
    }

    #[test]
    fn an_employee_that_waits_for_the_quota_says_rate_limited() {
        let e = anna(vec![entry(
            AccountState::Pending,
            Some(format!(
                "{}: create waits: the request quota of cloud-pbx is spent until 2030-01-01T00:00:00Z",
                reason::RATE_LIMITED
            )),
        )]);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap());
        let status = conditions_of(&e, &["cloud-pbx".to_owned()].into(), &BTreeSet::new(), &now);
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason::RATE_LIMITED));
        assert!(ready.message.contains("2030-01-01T00:00:00Z"), "{}", ready.message);
        assert!(status.phone_systems.is_empty(), "entries belong to the passes");
        assert!(!awaiting_first_pass(&e, &["cloud-pbx".to_owned()].into()));
    }

    fn abnormal_of(status: &EmployeeStatus) -> Vec<(String, String)> {
        status
            .conditions
            .iter()
            .filter(|c| [conditions::RECONCILING, conditions::STALLED].contains(&c.type_.as_str()))
            .map(|c| (c.type_.clone(), c.reason.clone()))
            .collect()
    }

    #[test]
    fn each_entry_state_sets_the_kstatus_condition_its_reason_means() {
        let systems: BTreeSet<String> = ["cloud-pbx".to_owned()].into();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap());
        let msg = |r: &str| Some(format!("{r}: details"));
        let cases = [
            (entry(AccountState::InSync, None), None),
            (entry(AccountState::Pending, Some(SENT_LIKE.into())), Some(("Reconciling", reason::PENDING))),
            (
                entry(AccountState::Pending, msg(reason::RATE_LIMITED)),
                Some(("Reconciling", reason::RATE_LIMITED)),
            ),
            (
                entry(AccountState::Pending, msg(reason::PASSWORD_SECRET_MISSING)),
                Some(("Reconciling", reason::PASSWORD_SECRET_MISSING)),
            ),
            (
                entry(AccountState::Failed, msg(reason::PBX_UNREACHABLE)),
                Some(("Reconciling", reason::PBX_UNREACHABLE)),
            ),
            (
                entry(AccountState::Conflict, msg(reason::EXTENSION_TAKEN)),
                Some(("Stalled", reason::EXTENSION_TAKEN)),
            ),
            (
                entry(AccountState::ManualActionRequired, msg(reason::UPDATE_UNSUPPORTED)),
                Some(("Stalled", reason::UPDATE_UNSUPPORTED)),
            ),
            (
                entry(AccountState::ManualActionRequired, msg(reason::DELETE_UNSUPPORTED)),
                Some(("Stalled", reason::DELETE_UNSUPPORTED)),
            ),
            (entry(AccountState::Failed, msg(reason::AUTH_FAILED)), Some(("Stalled", reason::AUTH_FAILED))),
            (
                entry(AccountState::Failed, msg(reason::VALIDATION_FAILED)),
                Some(("Stalled", reason::VALIDATION_FAILED)),
            ),
            (
                entry(AccountState::Pending, msg(reason::DELETION_GUARD)),
                Some(("Stalled", reason::DELETION_GUARD)),
            ),
            (
                entry(AccountState::Pending, msg(reason::UNREADABLE_RECORDS)),
                Some(("Stalled", reason::UNREADABLE_RECORDS)),
            ),
            (entry(AccountState::Released, None), Some(("Stalled", reason::PHONE_SYSTEM_NOT_FOUND))),
        ];
        for (entry, want) in cases {
            let what = format!("{entry:?}");
            let status = conditions_of(&anna(vec![entry]), &systems, &BTreeSet::new(), &now);
            let want: Vec<(String, String)> =
                want.into_iter().map(|(t, r)| (t.to_owned(), r.to_owned())).collect();
            assert_eq!(abnormal_of(&status), want, "{what}");
        }
        // A system that does not exist needs a person too.
        let status = conditions_of(&anna(vec![]), &BTreeSet::new(), &BTreeSet::new(), &now);
        assert_eq!(abnormal_of(&status), [("Stalled".to_owned(), reason::PHONE_SYSTEM_NOT_FOUND.to_owned())]);
    }

    /// A message the engine gives a pending entry without a reason of its own.
    const SENT_LIKE: &str = "create sent; its result is checked before any retry";

    #[test]
    fn a_pass_due_for_the_generation_keeps_it_reconciling_even_when_ready() {
        let systems: BTreeSet<String> = ["cloud-pbx".to_owned()].into();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap());
        let mut e = anna(vec![entry(AccountState::InSync, None)]);
        e.metadata.generation = Some(3);
        let status = conditions_of(&e, &systems, &systems, &now);
        assert_eq!(abnormal_of(&status), [("Reconciling".to_owned(), reason::PASS_PENDING.to_owned())]);
        let c = status.conditions.iter().find(|c| c.type_ == conditions::RECONCILING).unwrap();
        assert!(c.message.contains("cloud-pbx") && c.message.contains("generation 3"), "{}", c.message);
        // Something still moving outweighs something stuck: in progress, not failed.
        let mut e = anna(vec![entry(AccountState::Conflict, Some("ExtensionTaken: x".into()))]);
        e.spec.phone_systems.push(serde_json::from_value(serde_json::json!({"name": "office-pbx"})).unwrap());
        let both: BTreeSet<String> = ["cloud-pbx".to_owned(), "office-pbx".to_owned()].into();
        let status = conditions_of(&e, &both, &BTreeSet::new(), &now);
        assert_eq!(abnormal_of(&status), [("Reconciling".to_owned(), reason::PENDING.to_owned())]);
        // The status remembers the wait; a status that recorded the generation does not.
        e.status.as_mut().unwrap().observed_generation = e.metadata.generation;
        assert!(!generation_pending(&e));
        let mut conditions = status.conditions;
        conditions.iter_mut().filter(|c| c.type_ == conditions::RECONCILING).for_each(|c| {
            c.reason = reason::PASS_PENDING.into();
        });
        e.status.as_mut().unwrap().conditions = conditions;
        assert!(generation_pending(&e));
    }

    #[test]
    fn only_a_system_no_pass_has_reached_yet_is_waited_for() {
        let systems: BTreeSet<String> = ["cloud-pbx".to_owned()].into();
        assert!(awaiting_first_pass(&anna(vec![]), &systems));
        assert!(!awaiting_first_pass(&anna(vec![]), &BTreeSet::new()), "a missing system is news at once");
        assert!(!awaiting_first_pass(&anna(vec![entry(AccountState::InSync, None)]), &systems));
        assert!(!awaiting_first_pass(&anna(vec![entry(AccountState::Failed, Some("x".into()))]), &systems));
    }

    #[test]
    fn pass_managers_fit_the_api_servers_limit_and_stay_distinct() {
        assert_eq!(pass_manager("office-pbx"), "switchboard-pbx.office-pbx");
        let long = "a".repeat(253);
        let (a, b) = (pass_manager(&long), pass_manager(&format!("{}b", "a".repeat(252))));
        assert!(a.len() <= MAX_MANAGER && b.len() <= MAX_MANAGER);
        assert_ne!(a, b);
    }
}
