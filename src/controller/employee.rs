//! The Employee controller: the finalizer (an Employee leaves only once its accounts are
//! deleted or released) and the Employee's `Ready`/`Synced` conditions, computed from the
//! per-system entries the passes write.
//!
//! Conditions are applied only when they change, and not while the only news would be
//! that a system's first pass has not reached the Employee yet ("not synced yet"): that
//! state normally lasts the few seconds until the pass writes the Employee's entry, and
//! writing it would cost every new Employee one more write. If it lasts past
//! [`FIRST_PASS_GRACE`], it is written.

use std::{
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
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// Keeps the Employee's conditions in line with its entries.
async fn conditions(ctx: &Context, e: &Arc<Employee>) -> Result<Action, Error> {
    // As our own last writes left it: conditions computed from an older copy would be
    // written now and corrected at the next event.
    let e = ctx.employees.fresh(e.clone());
    let key = ObjectRef::from(e.as_ref());
    let existing = status::systems_in(ctx, &e);
    let wanted = status::conditions_of(&e, &existing, &ctx.now());
    if status::owned_by_conditions(e.status.as_ref()) == wanted {
        ctx.forget_wait(&key);
        return Ok(Action::await_change());
    }
    if status::awaiting_first_pass(&e, &existing) {
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
pub type Waits = std::collections::HashMap<ObjectRef<Employee>, (Option<i64>, Instant)>;
