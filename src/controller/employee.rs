//! The Employee controller: the finalizer (an Employee leaves only once its accounts are
//! deleted or released) and the Employee's `Ready`/`Synced` conditions, computed from the
//! per-system entries the passes write.
//!
//! Conditions are applied only when they change, and not while the only news would be
//! that a system's first pass has not reached the Employee yet ("not synced yet"), nor
//! while a pass of one of its systems has yet to plan from its generation: those states
//! normally last the few seconds until the pass, and writing them would cost every new
//! or edited Employee one more write. Meanwhile `status.observedGeneration` stays behind
//! `metadata.generation`, which kstatus (and the health checks in `docs/gitops.md`) read
//! as in progress: the status never claims a generation no pass has planned from. If the
//! wait lasts past [`FIRST_PASS_GRACE`] (a system that cannot be listed), it is written,
//! as `Reconciling` with reason `PassPending`.
//!
//! Which generation each system's last pass planned an Employee from is kept in memory
//! ([`Planned`]); a pass reports to this controller the Employees it planned from a
//! generation their status does not record yet, as its entry write would not when the
//! entry stayed the same (an edit the account already matched, a field that system does
//! not keep).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{self, Event as FinalizerEvent},
        reflector::ObjectRef,
    },
};

use super::{Admission, Context, Error, FINALIZER, status};
use crate::api::Employee;

/// How long an Employee may wait for the first pass of a system without its conditions
/// saying so.
pub const FIRST_PASS_GRACE: Duration = Duration::from_secs(30);

pub async fn reconcile(employee: Arc<Employee>, ctx: Arc<Context>) -> Result<Action, Error> {
    match ctx.admit().await {
        Admission::Go => {}
        Admission::Again => return Ok(Action::requeue(Duration::ZERO)),
        Admission::Stopping => return Ok(Action::await_change()),
    }
    tokio::select! {
        result = keep(employee, ctx.clone()) => result,
        _ = ctx.lost_leadership() => Ok(Action::requeue(Duration::ZERO)),
    }
}

async fn keep(employee: Arc<Employee>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = employee.namespace().ok_or(Error::Unnamed)?;
    let api: Api<Employee> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, employee, |event| async {
        match event {
            FinalizerEvent::Apply(e) => conditions(&ctx, &e).await,
            FinalizerEvent::Cleanup(e) => {
                let e = ctx.employees.fresh(e);
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
    .or_else(|e| match e {
        // Our copy was behind: an earlier pass removed the finalizer and the Employee is
        // gone, which is what removing it was for.
        finalizer::Error::RemoveFinalizer(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => Err(e),
        other => Err(Error::Finalizer(other.to_string())),
    })
}

/// Keeps the Employee's conditions in line with its entries.
async fn conditions(ctx: &Context, e: &Arc<Employee>) -> Result<Action, Error> {
    // As our own last writes left it: conditions computed from an older copy would be
    // written now and corrected at the next event.
    let e = ctx.employees.fresh(e.clone());
    let key = ObjectRef::from(e.as_ref());
    let existing = status::systems_in(ctx, &e);
    let behind = if status::generation_pending(&e) { ctx.behind(&e, &existing) } else { BTreeSet::new() };
    let wanted = status::conditions_of(&e, &existing, &behind, &ctx.now());
    if status::owned_by_conditions(e.status.as_ref()) == wanted {
        ctx.forget_wait(&key);
        return Ok(Action::await_change());
    }
    if !behind.is_empty() || status::awaiting_first_pass(&e, &existing) {
        let waited = ctx.waiting_since(&key, e.metadata.generation).elapsed();
        if waited < FIRST_PASS_GRACE {
            return Ok(Action::requeue(FIRST_PASS_GRACE - waited));
        }
    }
    ctx.forget_wait(&key);
    status::apply_conditions(ctx, &e, &wanted).await?;
    Ok(Action::await_change())
}

pub fn error_policy(_e: Arc<Employee>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::Waiting(what) => tracing::debug!(%what, "employee deletion waits"),
        other => tracing::warn!(error = %other, "employee pass failed"),
    }
    Action::requeue(Duration::from_secs(5))
}

/// When this process first saw an Employee (at a generation) waiting for a first pass.
pub type Waits = HashMap<ObjectRef<Employee>, (Option<i64>, Instant)>;

/// The generation each system's last pass planned each Employee from: by Employee, by
/// system name.
pub type Planned = HashMap<ObjectRef<Employee>, HashMap<String, Option<i64>>>;
