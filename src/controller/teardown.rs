//! What happens to the accounts of a PhoneSystem that is deleted.
//!
//! Every PhoneSystem a pass has reached carries the finalizer [`FINALIZER`], so that its
//! deletion is seen and decided here, whatever order things go in:
//! - **The namespace is being deleted** (`kubectl delete namespace`; the Namespace has a
//!   `deletionTimestamp`): its Employees go too, so their accounts are deleted (or left,
//!   as each one's `deletionPolicy` says). The PhoneSystem is held until no Employee
//!   claims an account on it any more; the passes go on meanwhile with the backend
//!   built from the credentials last read, so a credentials Secret deleted first does not
//!   stop them. The wait is bounded ([`super::Config::teardown_timeout`], and at once
//!   when nothing can change: no credentials were ever read by this process, or only
//!   accounts the system cannot delete, or that the deletion guard holds, are left; the
//!   guard holds here as anywhere, since a namespace deleted by mistake is the mass
//!   deletion it is for): what is left then is reported, in the
//!   log and in an event on the Namespace (nothing can be created in a terminating
//!   namespace, events included), and the PhoneSystem is let go.
//! - **The PhoneSystem alone is deleted** (its namespace stays, and so do its
//!   Employees): deleting every account it holds would be a mass deletion by accident.
//!   Each Employee's entry is marked `Released` (the claim stays, so a PhoneSystem
//!   created again under that name takes the accounts back, whatever its `adoption`
//!   says), one event per Employee and one on the PhoneSystem say so, and the finalizer
//!   goes at once.
//!
//! Which of the two is told by the Namespace object (one GET, when a deleted
//! PhoneSystem is first seen): the namespace controller sets its `deletionTimestamp`
//! before it deletes anything in it.

use std::{sync::Arc, time::Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        events::{Event as KubeEvent, EventType},
        reflector::ObjectRef,
    },
};
use serde_json::{Value, json};

use super::{Context, Error, FINALIZER, status};
use crate::{
    api::{AccountState, AccountStatus, PhoneSystem, conditions::reason},
    engine,
};

/// Whether the system carries our finalizer.
pub fn held(system: &PhoneSystem) -> bool {
    system.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer to a PhoneSystem that has none (one JSON patch, once per system).
pub async fn hold(ctx: &Context, system: Arc<PhoneSystem>) -> Result<Arc<PhoneSystem>, Error> {
    if held(&system) || system.metadata.deletion_timestamp.is_some() {
        return Ok(system);
    }
    let ops = if system.finalizers().is_empty() {
        vec![
            json!({"op": "test", "path": "/metadata/finalizers", "value": Value::Null}),
            json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}),
        ]
    } else {
        vec![
            json!({"op": "test", "path": "/metadata/finalizers", "value": system.finalizers()}),
            json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}),
        ]
    };
    match patch(ctx, &system, ops).await? {
        Some(written) => Ok(ctx.systems.record(written)),
        // Changed meanwhile (or gone): the next pass adds it.
        None => Ok(system),
    }
}

/// Removes the finalizer: the PhoneSystem may go.
async fn let_go(ctx: &Context, system: &PhoneSystem) -> Result<(), Error> {
    let finalizers = system.finalizers();
    let Some(i) = finalizers.iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{i}");
    let ops =
        vec![json!({"op": "test", "path": path, "value": FINALIZER}), json!({"op": "remove", "path": path})];
    if let Some(written) = patch(ctx, system, ops).await? {
        ctx.systems.record(written);
    }
    Ok(())
}

/// A JSON patch of the PhoneSystem; `None` when a test failed or it is gone.
async fn patch(ctx: &Context, system: &PhoneSystem, ops: Vec<Value>) -> Result<Option<PhoneSystem>, Error> {
    let api: Api<PhoneSystem> =
        Api::namespaced(ctx.client.clone(), &system.namespace().ok_or(Error::Unnamed)?);
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|e| Error::Encode(e.to_string()))?;
    let params = PatchParams { field_manager: Some(super::MANAGER.to_owned()), ..PatchParams::default() };
    match api.patch(&system.name_any(), &params, &Patch::Json::<()>(patch)).await {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 || s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether namespace `ns` is being deleted. A Namespace that cannot be read (no
/// permission, or not found) counts as staying: accounts are then released, never
/// deleted.
pub async fn namespace_terminating(ctx: &Context, ns: &str) -> Result<bool, Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api.get_opt(ns).await {
        Ok(Some(namespace)) => Ok(namespace.metadata.deletion_timestamp.is_some()
            || namespace.status.and_then(|s| s.phase).as_deref() == Some("Terminating")),
        // A namespace goes only once its content has: not seen with a PhoneSystem in it.
        Ok(None) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::warn!(
                namespace = ns,
                "cannot read the Namespace (RBAC): a deleted PhoneSystem's accounts are released, not deleted"
            );
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// An account some Employee still claims on a system.
pub struct Left {
    pub employee: String,
    pub entry: AccountStatus,
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.employee)?;
        match (&self.entry.external_id, &self.entry.extension) {
            (Some(id), Some(ext)) => write!(f, "account {id} (extension {ext})")?,
            (Some(id), None) => write!(f, "account {id}")?,
            (None, Some(ext)) => write!(f, "a create on extension {ext}")?,
            (None, None) => write!(f, "an account")?,
        }
        let says = |why: &str| self.entry.message.as_deref().is_some_and(|m| m.starts_with(why));
        if self.entry.state == AccountState::ManualActionRequired {
            write!(f, ", which the system cannot delete through its API")?;
        } else if says(reason::DELETION_GUARD) {
            write!(
                f,
                ", held by the deletion guard (more deletions than maxDeletionsPerSync; the annotation {} lets them through)",
                super::ALLOW_DELETIONS
            )?;
        }
        Ok(())
    }
}

/// The accounts Employees of `ns` still claim on system `name`.
pub fn claims_left(ctx: &Context, ns: &str, name: &str) -> Vec<Left> {
    ctx.employees
        .state()
        .iter()
        .filter(|e| e.namespace().as_deref() == Some(ns))
        .filter_map(|e| {
            let owner = super::owner_of(e)?;
            let entry = e.status.as_ref()?.phone_systems.iter().find(|p| p.name == name)?;
            engine::claim_of(&owner, entry)?;
            Some(Left { employee: owner.name, entry: entry.clone() })
        })
        .collect()
}

/// How a deleted PhoneSystem's reconcile ended.
pub enum Ended {
    /// Let go: nothing claimed on it any more, or what is left was reported.
    Gone,
    /// Held: accounts of Employees being deleted are still being deleted.
    Waiting,
}

/// A namespace teardown, after a pass: lets the PhoneSystem go once nothing is claimed
/// on it, or once waiting cannot help (`hopeless`) or has lasted its bound, reporting
/// what is left.
pub async fn after_pass(
    ctx: &Context,
    system: &PhoneSystem,
    ns: &str,
    name: &str,
    since: Instant,
    hopeless: bool,
) -> Result<Ended, Error> {
    let left = claims_left(ctx, ns, name);
    if left.is_empty() {
        tracing::info!(namespace = ns, phone_system = name, "namespace teardown: every account handled");
        let_go(ctx, system).await?;
        return Ok(Ended::Gone);
    }
    // What the pass just found it cannot delete without a person (no delete API, or
    // held by the deletion guard): no later pass can either.
    let says = |l: &Left, why: &str| l.entry.message.as_deref().is_some_and(|m| m.starts_with(why));
    let unsupported =
        |l: &Left| l.entry.state == AccountState::ManualActionRequired && says(l, reason::DELETE_UNSUPPORTED);
    let guarded = |l: &Left| l.entry.state == AccountState::Pending && says(l, reason::DELETION_GUARD);
    let undeletable = left.iter().all(|l| unsupported(l) || guarded(l));
    let timed_out = since.elapsed() >= ctx.config.teardown_timeout;
    if !(hopeless || undeletable || timed_out) {
        return Ok(Ended::Waiting);
    }
    let why = if hopeless {
        "no credentials for it were read before its Secret went"
    } else if undeletable && left.iter().any(guarded) {
        "switchboard may not delete them: each says why"
    } else if undeletable {
        "the system cannot delete them through its API"
    } else {
        "the system could not be brought to delete them in time"
    };
    let listed: Vec<String> = left.iter().map(ToString::to_string).collect();
    let message = format!(
        "namespace {ns} deleted: {} account(s) left on PhoneSystem {name} ({why}); delete them by hand: {}",
        left.len(),
        listed.join("; ")
    );
    tracing::warn!(namespace = ns, phone_system = name, left = left.len(), "{message}");
    ctx.config.metrics.accounts_left.inc_by(u64::try_from(left.len()).unwrap_or(u64::MAX));
    // Events cannot be created in a terminating namespace: this one is about the
    // Namespace itself (and so lives in `default`).
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some(ns.to_owned()),
        ..Default::default()
    };
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "AccountsLeft".into(),
        note: Some(super::pass::truncate(&message, 1000)),
        action: "Teardown".into(),
        secondary: Some(system.object_ref(&())),
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, namespace = ns, "cannot publish the AccountsLeft event; the log above says it");
    }
    let_go(ctx, system).await?;
    Ok(Ended::Gone)
}

/// A PhoneSystem deleted on its own: every Employee's entry for it is marked
/// `Released` (claims kept), the events say so, and the PhoneSystem goes.
pub async fn release(ctx: &Context, system: &PhoneSystem, ns: &str, name: &str) -> Result<(), Error> {
    let pending = super::system_status::pending(system);
    let mut released = 0usize;
    for e in ctx.employees.state().iter().filter(|e| e.namespace().as_deref() == Some(ns)) {
        let Some(owner) = super::owner_of(e) else { continue };
        let stored = e.status.as_ref().and_then(|s| s.phone_systems.iter().find(|p| p.name == name));
        let intent = pending.iter().find(|p| p.employee == owner.name);
        let claim = stored.filter(|entry| engine::claim_of(&owner, entry).is_some());
        let entry = match (claim, intent) {
            (Some(entry), _) if entry.state == AccountState::Released => continue,
            (Some(entry), _) => {
                let mut entry = entry.clone();
                entry.state = AccountState::Released;
                entry.message = Some(format!(
                    "PhoneSystem {name} was deleted: its account is left on the system, and taken back if {name} is created again"
                ));
                Some(entry)
            }
            // A create whose result no entry holds: kept as the claim it is.
            (None, Some(intent)) => Some(super::pass::intent_entry(name, intent, stored)),
            // Nothing claimed: the entry (a conflict, a wait) has nothing left to say.
            (None, None) if stored.is_some() => None,
            (None, None) => continue,
        };
        let claims = entry.is_some();
        status::apply_entry(ctx, e, name, entry.as_ref(), false).await?;
        if claims {
            released += 1;
            let note = format!(
                "PhoneSystem {name} was deleted: the account is left on the system (released), and taken back if {name} is created again"
            );
            publish(ctx, e.object_ref(&()), "Released", note, Some(system.object_ref(&()))).await;
        }
    }
    let note = format!(
        "deleted on its own (namespace {ns} stays): {released} account(s) released, left on the system; nothing was deleted"
    );
    tracing::info!(namespace = ns, phone_system = name, released, "{note}");
    publish(ctx, system.object_ref(&()), "Released", note, None).await;
    let_go(ctx, system).await
}

async fn publish(
    ctx: &Context,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    reason: &str,
    note: String,
    secondary: Option<k8s_openapi::api::core::v1::ObjectReference>,
) {
    let event = KubeEvent {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Release".into(),
        secondary,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %e, "cannot publish an event");
    }
}

/// Since when this process has seen `key` being torn down.
pub fn since(ctx: &Context, key: &ObjectRef<PhoneSystem>) -> Instant {
    let mut teardowns = ctx.teardowns.lock().unwrap_or_else(|e| e.into_inner());
    *teardowns.entry(key.clone()).or_insert_with(Instant::now)
}
