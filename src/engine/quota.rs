//! Spending a system's request quota (Telphin's hourly quota; any backend whose answers
//! carry `X-RateLimit-*`) on writes first.
//!
//! A pass does not list when what is left of the quota cannot pay for the listing and
//! one write after it: it waits for the reset instead ([`super::Error::RateLimited`]). A
//! pass that lists starts only the writes the rest can pay for, each weighed by
//! [`Backend::cost`]; the others wait for the reset, their Employees told so (reason
//! `RateLimited`, with the time), and no create intent is recorded for a create that
//! was not sent.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::SignedDuration};

use crate::{
    api::phone_system::RequestQuota,
    backends::{Backend, Quota},
};

/// The quota as the PhoneSystem's status shows it: its reset on the wall clock, `now`
/// being the pass's time.
pub fn status_of(quota: &Quota, now: &Time) -> RequestQuota {
    RequestQuota {
        limit: quota.limit,
        remaining: quota.remaining,
        reset_time: quota.reset_at.map(|at| wall(now, at)),
    }
}

/// `at` on the wall clock, to the second.
pub fn wall(now: &Time, at: Instant) -> Time {
    let ahead = at.saturating_duration_since(Instant::now()).as_secs();
    let secs = i64::try_from(ahead).unwrap_or(i64::MAX);
    let whole =
        now.0.checked_sub(SignedDuration::from_nanos(i64::from(now.0.subsec_nanosecond()))).unwrap_or(now.0);
    Time(whole.checked_add(SignedDuration::from_secs(secs)).unwrap_or(whole))
}

/// How long until `quota` can pay for `need` requests: `None` when it can now (or when
/// it does not say when it resets: then the system's 429 tells).
pub fn wait_for(quota: &Quota, need: u64) -> Option<Duration> {
    let at = quota.reset_at?;
    let wait = at.checked_duration_since(Instant::now())?;
    (quota.remaining < need).then_some(wait)
}

/// Whether the last answer said the quota is spent (a 429 past it).
pub fn spent<B: Backend>(backend: &B) -> bool {
    backend.quota().is_some_and(|q| wait_for(&q, 1).is_some())
}

/// What is left of the quota for this pass's writes; unlimited where the system
/// announces none.
pub struct Budget {
    left: Option<Mutex<u64>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Budget {
    /// The quota the backend announced last (after the listing: fresh).
    pub fn of<B: Backend>(backend: &B) -> Self {
        let left = backend
            .quota()
            .filter(|q| q.reset_at.is_none_or(|at| at > Instant::now()))
            .map(|q| Mutex::new(q.remaining));
        Budget { left, stopped: Default::default() }
    }

    /// Whether the system refused a write for the quota: what was paid for but not yet
    /// started waits too.
    pub fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes `cost` requests, or says the quota cannot pay for them.
    pub fn take(&self, cost: u64) -> bool {
        let Some(left) = &self.left else { return true };
        let mut left = left.lock().unwrap_or_else(|e| e.into_inner());
        if *left >= cost {
            *left -= cost;
            true
        } else {
            false
        }
    }

    /// The system said the quota is spent (shared with other applications of the same
    /// client, it may go faster than this pass spends it): nothing more is started.
    pub fn exhaust(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(left) = &self.left {
            *left.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn quota(remaining: u64, reset_in: Option<u64>) -> Quota {
        Quota {
            limit: Some(100),
            remaining,
            reset_at: reset_in.map(|s| Instant::now() + Duration::from_secs(s)),
        }
    }

    #[test]
    fn a_quota_waits_only_when_short_and_its_reset_is_known() {
        assert!(wait_for(&quota(3, Some(60)), 4).is_some_and(|w| w > Duration::from_secs(58)));
        assert_eq!(wait_for(&quota(4, Some(60)), 4), None);
        assert_eq!(wait_for(&quota(0, None), 4), None, "no reset announced: the 429 tells");
    }

    #[test]
    fn the_budget_pays_until_it_is_spent() {
        let b = Budget { left: Some(Mutex::new(5)), stopped: Default::default() };
        assert!(b.take(2) && b.take(2));
        assert!(!b.take(2), "1 left");
        assert!(b.take(1));
        assert!(!b.stopped());
        b.exhaust();
        assert!(!b.take(1) && b.stopped());
        assert!(
            Budget { left: None, stopped: Default::default() }.take(u64::MAX),
            "no quota announced: no limit"
        );
    }

    #[test]
    fn the_reset_is_shown_on_the_wall_clock() {
        let now = Time(Timestamp::from_second(1_700_000_000).unwrap());
        let shown = status_of(&quota(7, Some(90)), &now);
        let at = shown.reset_time.unwrap().0.as_second();
        assert!((1_700_000_089..=1_700_000_090).contains(&at), "{at}");
        assert_eq!((shown.limit, shown.remaining), (Some(100), 7));
    }
}
