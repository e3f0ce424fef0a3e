//! Status conditions as the Kubernetes API conventions describe them, and the reasons
//! switchboard uses. Pure: the caller passes the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
/// kstatus ("abnormal-true", as Flux's controllers use them): present, and `True`, only
/// while the object is in flight ([`RECONCILING`]) or cannot get on without a person's
/// change ([`STALLED`]); absent otherwise, which kstatus reads as "nothing abnormal".
/// Never both at once.
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Reasons a person can act on. One place, so docs and alerts can rely on them.
pub mod reason {
    pub const IN_SYNC: &str = "InSync";
    pub const SYNCED: &str = "Synced";
    pub const PENDING: &str = "Pending";
    pub const PBX_UNREACHABLE: &str = "PbxUnreachable";
    pub const AUTH_FAILED: &str = "AuthFailed";
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    pub const EXTENSION_TAKEN: &str = "ExtensionTaken";
    pub const UPDATE_UNSUPPORTED: &str = "UpdateUnsupported";
    pub const DELETE_UNSUPPORTED: &str = "DeleteUnsupported";
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const PHONE_SYSTEM_NOT_FOUND: &str = "PhoneSystemNotFound";
    pub const DELETION_GUARD: &str = "DeletionGuardTripped";
    pub const SUSPENDED: &str = "Suspended";
    /// `policy: observe`: switchboard plans but writes nothing; the message says what a
    /// `sync` would change.
    pub const OBSERVING: &str = "Observing";
    /// The system listed records switchboard cannot read: no delete, and no create on
    /// their extensions, until they can be read.
    pub const UNREADABLE_RECORDS: &str = "UnreadableRecords";
    /// The system's request quota is spent: the work waits for its reset (the message
    /// says when).
    pub const RATE_LIMITED: &str = "RateLimited";
    /// The Employee's `passwordSecretRef` names a Secret or key that does not exist
    /// (yet): no account until it does (the message names both).
    pub const PASSWORD_SECRET_MISSING: &str = "PasswordSecretMissing";
    /// The Employee's spec changed and a pass of one of its systems has not planned from
    /// it yet (the message names the systems): the Employee's `Reconciling`.
    pub const PASS_PENDING: &str = "PassPending";
    /// A pass is sending the creates it recorded: the PhoneSystem's `Reconciling`.
    pub const CREATING: &str = "Creating";
}

/// What a reason means to kstatus: which of its conditions it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abnormal {
    /// It settles without anyone's change: a pass in flight or due, a quota, a PBX that
    /// is retried, a Secret that GitOps delivers late.
    Reconciling,
    /// Only a person's change helps (the spec, the PBX, the credentials, an annotation).
    Stalled,
    /// Neither: all is well, or a state held on purpose that reports itself otherwise.
    Neither,
}

/// The kstatus meaning of a `Ready`/`Synced` reason, the same for both kinds. What each
/// reason means is in `docs/gitops.md`; the choices worth a word:
/// - `PasswordSecretMissing` settles: GitOps tools deliver Secrets after the Employee
///   (External Secrets, SOPS), and a wait for it must not fail the sync that applies both.
/// - `CredentialsMissing` (a PhoneSystem's Secret) stalls, as the issue asks: without
///   credentials nothing is listed, so nothing of the system can be judged.
/// - `PhoneSystemNotFound` stalls: a name that resolves to nothing is a typo or a missing
///   manifest (the docs put PhoneSystems in an earlier wave); it recovers by itself once
///   the PhoneSystem exists, as kstatus allows.
/// - `ValidationFailed` stalls: the engine gives it only to a refusal of the account's
///   data; a write that failed on the way is `PbxUnreachable` and is retried.
/// - `PbxUnreachable` settles (it is retried). The PhoneSystem's own `Ready=False
///   PbxUnreachable` is the exception, left to `Ready` (`controller::system_status`):
///   kstatus reads that as InProgress anyway, and the health checks report the outage
///   itself as Degraded.
/// - `Observing` and `Suspended` are held on purpose: `Neither`.
pub fn abnormal(reason: &str) -> Abnormal {
    match reason {
        reason::PENDING
        | reason::RATE_LIMITED
        | reason::PBX_UNREACHABLE
        | reason::PASSWORD_SECRET_MISSING
        | reason::PASS_PENDING
        | reason::CREATING => Abnormal::Reconciling,
        reason::EXTENSION_TAKEN
        | reason::UPDATE_UNSUPPORTED
        | reason::DELETE_UNSUPPORTED
        | reason::AUTH_FAILED
        | reason::VALIDATION_FAILED
        | reason::INVALID_SPEC
        | reason::CREDENTIALS_MISSING
        | reason::DELETION_GUARD
        | reason::UNREADABLE_RECORDS
        | reason::PHONE_SYSTEM_NOT_FOUND => Abnormal::Stalled,
        _ => Abnormal::Neither,
    }
}

/// Sets the kstatus conditions: `which` (`Reconciling` or `Stalled`) `True` with this
/// reason and message, the other removed; `None` removes both.
pub fn set_abnormal(
    conditions: &mut Vec<Condition>,
    which: Option<(&str, &str, String)>,
    generation: Option<i64>,
    now: &Time,
) {
    let keep = which.as_ref().map(|(type_, _, _)| *type_);
    conditions
        .retain(|c| !matches!(c.type_.as_str(), RECONCILING | STALLED) || Some(c.type_.as_str()) == keep);
    if let Some((type_, reason, message)) = which {
        set(conditions, new(type_, true, reason, message, generation, now));
    }
}

/// Builds a condition for `generation`.
pub fn new(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Puts `new` into `conditions`, keeping `lastTransitionTime` when the status did not
/// change (the conventions' meaning of "transition"). Returns whether anything a reader
/// would see changed, so a converged sync can skip its status write.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            if *old == new {
                false
            } else {
                *old = new;
                true
            }
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn same_status_keeps_transition_time_and_reports_no_change() {
        let mut conds = vec![];
        assert!(set(&mut conds, new(READY, true, reason::IN_SYNC, "ok", Some(1), &at(10))));
        assert!(!set(&mut conds, new(READY, true, reason::IN_SYNC, "ok", Some(1), &at(20))));
        assert_eq!(conds[0].last_transition_time, at(10));
    }

    #[test]
    fn new_message_is_a_change_but_not_a_transition() {
        let mut conds = vec![new(READY, true, reason::IN_SYNC, "ok", Some(1), &at(10))];
        assert!(set(&mut conds, new(READY, true, reason::IN_SYNC, "still ok", Some(2), &at(20))));
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].observed_generation, Some(2));
    }

    #[test]
    fn every_reason_has_its_kstatus_meaning() {
        use reason::*;
        let reconciling =
            [PENDING, RATE_LIMITED, PBX_UNREACHABLE, PASSWORD_SECRET_MISSING, PASS_PENDING, CREATING];
        let stalled = [
            EXTENSION_TAKEN,
            UPDATE_UNSUPPORTED,
            DELETE_UNSUPPORTED,
            AUTH_FAILED,
            VALIDATION_FAILED,
            INVALID_SPEC,
            CREDENTIALS_MISSING,
            DELETION_GUARD,
            UNREADABLE_RECORDS,
            PHONE_SYSTEM_NOT_FOUND,
        ];
        let neither = [IN_SYNC, SYNCED, OBSERVING, SUSPENDED, "SomethingNew"];
        for r in reconciling {
            assert_eq!(abnormal(r), Abnormal::Reconciling, "{r}");
        }
        for r in stalled {
            assert_eq!(abnormal(r), Abnormal::Stalled, "{r}");
        }
        for r in neither {
            assert_eq!(abnormal(r), Abnormal::Neither, "{r}");
        }
    }

    #[test]
    fn one_abnormal_condition_at_most_and_none_when_all_is_well() {
        let mut conds = vec![new(READY, false, reason::PENDING, "x", Some(1), &at(10))];
        set_abnormal(&mut conds, Some((RECONCILING, reason::PENDING, "x".into())), Some(1), &at(10));
        set_abnormal(&mut conds, Some((STALLED, reason::EXTENSION_TAKEN, "y".into())), Some(1), &at(20));
        let types: Vec<_> = conds.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(types, [(READY, "False"), (STALLED, "True")]);
        set_abnormal(&mut conds, None, Some(1), &at(30));
        assert_eq!(conds.len(), 1, "kstatus's conditions are absent when nothing is abnormal");
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut conds = vec![new(READY, true, reason::IN_SYNC, "ok", Some(1), &at(10))];
        assert!(set(&mut conds, new(READY, false, reason::PBX_UNREACHABLE, "down", Some(1), &at(30))));
        assert_eq!(conds[0].last_transition_time, at(30));
        assert!(!is_true(&conds, READY));
    }
}
