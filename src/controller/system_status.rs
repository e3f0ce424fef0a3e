//! PhoneSystem status: conditions, counts, quota and the pending creates, applied whole
//! by the system's passes (its only writer). Each write happens only when it changes
//! something a reader would see.
//!
//! kstatus's `Reconciling`/`Stalled` ride on these same writes ([`abnormal`]):
//! `Reconciling` while a pass sends the creates it recorded (the intents' write, made
//! before any create anyway) and while writes or the pass wait for the request quota;
//! `Stalled` for what only a person mends (`AuthFailed`, `CredentialsMissing`,
//! `InvalidSpec`, `DeletionGuardTripped`, `UnreadableRecords`); neither otherwise. A new
//! generation needs no condition: `observedGeneration` is written only by the pass that
//! planned from it, so until then kstatus reads the lag as in progress.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{Context, Error, MANAGER};
use crate::{
    api::{
        PhoneSystem, PhoneSystemStatus,
        conditions::{self, Abnormal, READY, SYNCED, reason},
        phone_system::{PendingCreate, RequestQuota},
    },
    engine::Report,
};

/// The creates a system's status records as sent and not yet claimed by an Employee.
pub fn pending(system: &PhoneSystem) -> &[PendingCreate] {
    system.status.as_ref().map(|s| s.pending_creates.as_slice()).unwrap_or_default()
}

/// Records create intents: `pending` replaces the list, and the system is
/// `Reconciling` while they are sent (the pass's last write says how it ended).
pub async fn record_pending(
    ctx: &Context,
    system: &PhoneSystem,
    pending: Vec<PendingCreate>,
) -> Result<(), Error> {
    let mut status = system.status.clone().unwrap_or_default();
    if !pending.is_empty() {
        let message = format!("sending {} create(s)", pending.len());
        let generation = status.observed_generation;
        let creating = Some((conditions::RECONCILING, reason::CREATING, message));
        conditions::set_abnormal(&mut status.conditions, creating, generation, &ctx.now());
    }
    status.pending_creates = pending;
    apply(ctx, system, status).await
}

/// kstatus's condition for the system's `Ready` and `Synced` as a pass leaves them: the
/// first abnormal of the two. A PBX that is down is left to `Ready=False` (see
/// [`conditions::abnormal`]); `Synced=False ValidationFailed` says that some Employees
/// failed, which stalls them, not the system.
fn abnormal(status: &mut PhoneSystemStatus, generation: Option<i64>, now: &Time) {
    let found = [READY, SYNCED].into_iter().find_map(|type_| {
        let c = status.conditions.iter().find(|c| c.type_ == type_ && c.status != "True")?;
        let which = match conditions::abnormal(&c.reason) {
            _ if c.reason == reason::PBX_UNREACHABLE => return None,
            _ if c.type_ == SYNCED && c.reason == reason::VALIDATION_FAILED => return None,
            Abnormal::Reconciling => conditions::RECONCILING,
            Abnormal::Stalled => conditions::STALLED,
            Abnormal::Neither => return None,
        };
        Some((which, c.reason.clone(), c.message.clone()))
    });
    let found = found.as_ref().map(|(which, why, message)| (*which, why.as_str(), message.clone()));
    conditions::set_abnormal(&mut status.conditions, found, generation, now);
}

/// Applies the whole status: the passes are its only writer.
pub async fn apply(ctx: &Context, system: &PhoneSystem, status: PhoneSystemStatus) -> Result<(), Error> {
    let ns = system.namespace().ok_or(Error::Unnamed)?;
    let api: Api<PhoneSystem> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": PhoneSystem::api_version(&()),
        "kind": PhoneSystem::kind(&()),
        "metadata": { "name": system.name_any(), "namespace": ns },
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    match api.patch_status(&system.name_any(), &params, &Patch::Apply(&body)).await {
        Ok(written) => {
            ctx.systems.record(written);
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `Ready` is true whenever a pass got as far as the system's answer.
const REACHABLE: (bool, &str, &str) = (true, reason::IN_SYNC, "reachable, credentials accepted");

/// The status `system` gets with these `Ready` and `Synced` conditions (the kstatus
/// conditions, backend and observedGeneration follow from them), and the one it has, to
/// tell whether anything changed.
fn conditioned(
    system: &PhoneSystem,
    now: &Time,
    ready: (bool, &str, &str),
    synced: (bool, &str, &str),
) -> (PhoneSystemStatus, PhoneSystemStatus) {
    let generation = system.metadata.generation;
    let before = system.status.clone().unwrap_or_default();
    let mut status = before.clone();
    for (type_, (ok, why, message)) in [(READY, ready), (SYNCED, synced)] {
        conditions::set(&mut status.conditions, conditions::new(type_, ok, why, message, generation, now));
    }
    abnormal(&mut status, generation, now);
    status.backend = system.spec.backend().ok().map(|b| b.kind());
    status.observed_generation = generation;
    (status, before)
}

/// Records a pass that waits for the system's request quota to reset: the system is
/// reachable, nothing was listed or written.
pub async fn rate_limited(
    ctx: &Context,
    system: &PhoneSystem,
    quota: &RequestQuota,
    message: &str,
) -> Result<(), Error> {
    let (mut status, before) =
        conditioned(system, &ctx.now(), REACHABLE, (false, reason::RATE_LIMITED, message));
    status.quota = Some(quota.clone());
    if status == before {
        return Ok(());
    }
    apply(ctx, system, status).await
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
pub async fn unready(
    ctx: &Context,
    system: &PhoneSystem,
    why: &'static str,
    message: &str,
) -> Result<(), Error> {
    let (status, before) = conditioned(system, &ctx.now(), (false, why, message), (false, why, message));
    if status == before {
        return Ok(());
    }
    apply(ctx, system, status).await
}

/// What `Synced` says of a completed pass: the first thing that kept it from applying
/// its whole plan, or that it did.
fn synced_condition(system: &PhoneSystem, report: &Report) -> (bool, &'static str, String) {
    if report.plan.guard_tripped() {
        let message = format!(
            "{} deletions held: more than maxDeletionsPerSync; raise it or annotate {}",
            report.plan.held_deletes.len(),
            super::ALLOW_DELETIONS
        );
        (false, reason::DELETION_GUARD, message)
    } else if report.unreadable > 0 {
        let message = format!(
            "{} record(s) on the system could not be read (see the events); no account is deleted, nor created on their extensions, until they can be",
            report.unreadable
        );
        (false, reason::UNREADABLE_RECORDS, message)
    } else if report.rate_limited > 0 {
        let reset = report.quota.as_ref().and_then(|q| q.reset_time.as_ref());
        let message = format!(
            "{} write(s) wait for the request quota to reset{}; see the Employees",
            report.rate_limited,
            reset.map(|t| format!(" at {}", t.0)).unwrap_or_default()
        );
        (false, reason::RATE_LIMITED, message)
    } else if !system.spec.policy.writes() && report.pending.total() > 0 {
        // policy: observe: planned, deliberately not written.
        let message = format!("policy observe: nothing written; a sync would make {}", report.pending);
        (false, reason::OBSERVING, message)
    } else if report.failures > 0 {
        let message =
            format!("{} account(s) could not be brought in line; see the Employees", report.failures);
        (false, reason::VALIDATION_FAILED, message)
    } else {
        (true, reason::SYNCED, "every planned change was applied".to_owned())
    }
}

/// Records a completed pass, if it changed anything a reader would see.
pub async fn synced(
    ctx: &Context,
    system: &PhoneSystem,
    report: &Report,
    took: Duration,
    pending: Vec<PendingCreate>,
) -> Result<(), Error> {
    let now = ctx.now();
    let (ok, why, message) = synced_condition(system, report);
    let (mut status, before) = conditioned(system, &now, REACHABLE, (ok, why, &message));
    status.counts = Some(report.counts.clone());
    // policy: observe: what the pass planned and did not write.
    status.pending_changes = Some(report.pending);
    status.pending_creates = pending;
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
    apply(ctx, system, status).await
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
}
