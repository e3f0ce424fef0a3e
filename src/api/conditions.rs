//! Status conditions as the Kubernetes API conventions describe them, and the reasons
//! switchboard uses. Pure: the caller passes the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

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
    fn status_flip_moves_transition_time() {
        let mut conds = vec![new(READY, true, reason::IN_SYNC, "ok", Some(1), &at(10))];
        assert!(set(&mut conds, new(READY, false, reason::PBX_UNREACHABLE, "down", Some(1), &at(30))));
        assert_eq!(conds[0].last_transition_time, at(30));
        assert!(!is_true(&conds, READY));
    }
}
