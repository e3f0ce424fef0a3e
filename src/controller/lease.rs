//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas
//! only one writes (to the PBXs and to the API) at a time.
//!
//! The algorithm is client-go's `leaderelection`: every `retry_period` each instance reads
//! the Lease; the holder renews it, the others wait until it has not changed for its
//! `leaseDurationSeconds` *by their own clock* (so clock skew between nodes does not
//! matter) and then take it. Every write is an update guarded by the `resourceVersion`
//! just read: of two candidates racing for an expired Lease one gets 409 and stays
//! standby. A leader that cannot renew for `renew_deadline` (shorter than the duration)
//! stops writing before anyone else may take over. On shutdown the leader clears the
//! holder, and a standby takes over at its next look instead of after a whole duration.
//!
//! Written here rather than taken from a crate: `kube-leader-election` needs kube 4,
//! `kubert` kube 1.1; `kube-lease-manager` fits kube 5 but decides races through
//! server-side-apply field ownership (which the tests' API server does not model, so
//! exclusion could not be tested) and reads the system clock (tests could not control
//! time). Time and identity are passed in here.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;

/// The time as the elector sees it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Where the Lease is, who this instance is, and the timing.
#[derive(Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per instance (the pod's name).
    pub identity: String,
    /// How long a Lease holds without renewal: what a standby waits before taking over.
    pub duration: Duration,
    /// A leader that has not renewed for this long stops writing. Shorter than
    /// `duration`, so it has stopped before a standby may take over.
    pub renew_deadline: Duration,
    /// How often the leader renews and standbys look.
    pub retry_period: Duration,
    pub now: Clock,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            now: Arc::new(Timestamp::now),
        }
    }
}

/// What one look at the Lease decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// Ours: renew it.
    Renew,
    /// Free, released or expired: take it.
    Take,
    /// Another instance holds it and it has not expired.
    Wait,
}

/// The record a standby watches for change, and when (by its clock) it last changed.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<Timestamp>,
    transitions: Option<i32>,
    duration: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Record {
            holder: holder(spec).map(str::to_owned),
            renew: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions,
            duration: spec.lease_duration_seconds,
        }
    }
}

fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// `now - since`, zero if the clock went back.
fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// The pure decision: `lease` as read (`None`: there is none), `observed_at` when this
/// instance first saw its current record, `now` by this instance's clock.
pub fn decide(
    lease: Option<&LeaseSpec>,
    me: &str,
    observed_at: Timestamp,
    now: Timestamp,
    default_duration: Duration,
) -> Step {
    let Some(spec) = lease else { return Step::Create };
    match holder(spec) {
        Some(h) if h == me => Step::Renew,
        None => Step::Take,
        Some(_) => {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(default_duration);
            if elapsed(observed_at, now) >= duration { Step::Take } else { Step::Wait }
        }
    }
}

/// One instance's side of the election.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The record last seen, and when it was first seen.
    observed: Option<(Record, Timestamp)>,
    /// When this instance last wrote the Lease as its holder.
    renewed: Option<Timestamp>,
    leading: bool,
    /// Who holds the Lease, as last seen (for the logs).
    pub holder: Option<String>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Elector { api, config, observed: None, renewed: None, leading: false, holder: None }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// One look at the Lease, and the write it calls for. Returns whether this instance
    /// leads afterwards.
    pub async fn tick(&mut self) -> bool {
        let now = (self.config.now)();
        // A leader's look may take only as long as its renew deadline leaves; a
        // candidate's as long as the deadline itself.
        let budget = match (self.leading, self.renewed) {
            (true, Some(renewed)) => self.config.renew_deadline.saturating_sub(elapsed(renewed, now)),
            _ => self.config.renew_deadline,
        };
        let outcome = match tokio::time::timeout(budget, self.try_acquire_or_renew(now)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failed::Api(format!("no answer within {budget:?}"))),
        };
        match outcome {
            Ok(true) => {
                self.renewed = Some(now);
                self.leading = true;
            }
            Ok(false) => self.leading = false,
            Err(failed) => {
                let deadline_passed = self.renewed.is_none_or(|renewed| {
                    elapsed(renewed, (self.config.now)()) >= self.config.renew_deadline
                });
                if self.leading && deadline_passed {
                    tracing::warn!(lease = %self.config.name, error = %failed, "cannot renew the lease within its renew deadline: stepping down");
                    self.leading = false;
                } else {
                    tracing::debug!(lease = %self.config.name, error = %failed, "lease not renewed or acquired");
                }
            }
        }
        self.leading
    }

    /// Reads the Lease and writes it if it is ours or free. `Ok(false)`: another
    /// instance holds it (or won the race for it).
    async fn try_acquire_or_renew(&mut self, now: Timestamp) -> Result<bool, Failed> {
        let found = self.api.get_opt(&self.config.name).await.map_err(|e| Failed::Api(e.to_string()))?;
        let spec = found.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let observed_at = match &spec {
            Some(spec) => self.observe(spec, now),
            None => now,
        };
        self.holder = spec.as_ref().and_then(|s| holder(s).map(str::to_owned));
        let step = decide(spec.as_ref(), &self.config.identity, observed_at, now, self.config.duration);
        let duration_seconds = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX).max(1);
        match (step, found) {
            (Step::Wait, _) => Ok(false),
            (Step::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(duration_seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => {
                        self.holder = Some(self.config.identity.clone());
                        Ok(true)
                    }
                    // Another instance created it first: it leads.
                    Err(e) if is_conflict(&e) => Ok(false),
                    Err(e) => Err(Failed::Api(e.to_string())),
                }
            }
            (step, Some(mut lease)) => {
                let mut spec = lease.spec.take().unwrap_or_default();
                if step == Step::Take {
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.lease_duration_seconds = Some(duration_seconds);
                spec.renew_time = Some(MicroTime(now));
                lease.spec = Some(spec);
                // `lease` keeps the resourceVersion it was read with: the update is refused
                // (409) if anyone wrote the Lease since.
                match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
                    Ok(_) => {
                        self.holder = Some(self.config.identity.clone());
                        Ok(true)
                    }
                    // A candidate lost the race. A leader has not lost anything yet: someone
                    // touched its Lease, and the next look tells; until its renew deadline
                    // passes it stays leader (nobody may take over before the duration).
                    Err(e) if is_conflict(&e) && step == Step::Renew => {
                        Err(Failed::Api("the lease changed while renewing it".into()))
                    }
                    Err(e) if is_conflict(&e) => Ok(false),
                    Err(e) => Err(Failed::Api(e.to_string())),
                }
            }
        }
    }

    /// Notes the record read; returns when it was first seen in this form.
    fn observe(&mut self, spec: &LeaseSpec, now: Timestamp) -> Timestamp {
        let record = Record::of(spec);
        match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                self.observed = Some((record, now));
                now
            }
        }
    }

    /// Gives the Lease up, if this instance holds it: clears the holder so that a
    /// standby takes over at its next look. Guarded by the resourceVersion read, so it
    /// never clears another instance's hold.
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        self.leading = false;
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else { return Ok(false) };
        let mut spec = lease.spec.take().unwrap_or_default();
        if holder(&spec) != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime((self.config.now)()));
        lease.spec = Some(spec);
        self.api.replace(&self.config.name, &PostParams::default(), &lease).await?;
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("{0}")]
    Api(String),
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

/// How long a release may take at shutdown before the process goes without it (the
/// Lease then expires after its duration).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes part in the election until `stop` turns true: `leading` tells whether this
/// instance may write, `on_change` hears every change of it. Then releases the Lease.
pub async fn campaign(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    on_change: impl Fn(bool) + Send,
    mut stop: watch::Receiver<bool>,
) {
    let mut elector = Elector::new(client, config);
    let (name, identity) = (elector.config.name.clone(), elector.config.identity.clone());
    let mut standby_logged = false;
    loop {
        let now_leading = elector.tick().await;
        if now_leading != *leading.borrow() {
            if now_leading {
                tracing::info!(lease = %name, %identity, "leading: this instance writes now");
            } else {
                tracing::warn!(lease = %name, %identity, "no longer leading: passes stop");
            }
            leading.send_replace(now_leading);
            on_change(now_leading);
        }
        if !now_leading && !standby_logged {
            tracing::info!(lease = %name, %identity, holder = ?elector.holder, "standing by: another instance leads");
            standby_logged = true;
        }
        standby_logged &= !now_leading;
        tokio::select! {
            _ = tokio::time::sleep(elector.config.retry_period) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let was_leading = elector.is_leading();
    leading.send_replace(false);
    if was_leading {
        on_change(false);
    }
    match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
        Ok(Ok(true)) => tracing::info!(lease = %name, %identity, "lease released"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(lease = %name, error = %e, "cannot release the lease; it expires by itself")
        }
        Err(_) => tracing::warn!(lease = %name, "releasing the lease timed out; it expires by itself"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn held_by(who: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn no_lease_is_created_and_our_own_is_renewed() {
        assert_eq!(decide(None, "a", at(0), at(0), D), Step::Create);
        assert_eq!(decide(Some(&held_by("a", 0)), "a", at(0), at(100), D), Step::Renew);
    }

    #[test]
    fn another_holder_is_waited_out_for_the_duration_by_our_clock() {
        let lease = held_by("b", 1_000);
        // Seen first at 50 by our clock: its renewTime (another node's clock) is not
        // trusted, so a skewed clock cannot make us take a live lease.
        assert_eq!(decide(Some(&lease), "a", at(50), at(64), D), Step::Wait);
        assert_eq!(decide(Some(&lease), "a", at(50), at(65), D), Step::Take);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut lease = held_by("b", 0);
        lease.holder_identity = None;
        assert_eq!(decide(Some(&lease), "a", at(10), at(10), D), Step::Take);
        lease.holder_identity = Some(String::new());
        assert_eq!(decide(Some(&lease), "a", at(10), at(10), D), Step::Take);
    }

    #[test]
    fn the_lease_s_own_duration_wins_over_ours() {
        let mut lease = held_by("b", 0);
        lease.lease_duration_seconds = Some(60);
        assert_eq!(decide(Some(&lease), "a", at(0), at(30), D), Step::Wait);
        assert_eq!(decide(Some(&lease), "a", at(0), at(60), D), Step::Take);
    }

    #[test]
    fn a_clock_that_goes_back_never_expires_a_lease() {
        assert_eq!(decide(Some(&held_by("b", 0)), "a", at(100), at(10), D), Step::Wait);
    }
}
