//! What the operator tells the platform: Prometheus metrics on `/metrics`, liveness on
//! `/healthz`, readiness on `/readyz` (ready once the watch caches are filled, on the
//! leader and on a standby alike: a standby is healthy, it just does not write), and the
//! log format.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{api::BackendKind, backends::http::Observer, engine::Report};

/// Labels of one phone system.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SystemLabels {
    pub namespace: String,
    pub phone_system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub namespace: String,
    pub phone_system: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub namespace: String,
    pub phone_system: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppliedLabels {
    pub namespace: String,
    pub phone_system: String,
    pub operation: String,
    pub result: String,
}

/// One PBX request: the PhoneSystem, its backend (`system`), the operation (method and
/// path template, never a raw id) and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub namespace: String,
    pub phone_system: String,
    pub system: String,
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub namespace: String,
    pub phone_system: String,
    pub state: String,
}

/// Every metric switchboard exports.
pub struct Metrics {
    pub sync_duration: Family<SystemLabels, Histogram>,
    pub syncs: Family<OutcomeLabels, Counter>,
    pub planned: Family<OperationLabels, Counter>,
    pub applied: Family<AppliedLabels, Counter>,
    pub pbx_requests: Family<RequestLabels, Counter>,
    pub pbx_request_duration: Family<RequestLabels, Histogram>,
    pub accounts: Family<StateLabels, Gauge>,
    pub drift_corrections: Family<SystemLabels, Counter>,
    pub guard_trips: Family<SystemLabels, Counter>,
    pub leader: Gauge,
    /// Secrets whose data the operator holds: credentials of the backends it built, and
    /// the Secrets of Employees' `passwordSecretRef`s (of every other Secret, only
    /// metadata).
    pub secrets_held: Gauge,
    /// Accounts left on a phone system when its namespace was deleted (each also named
    /// in the log and an `AccountsLeft` event).
    pub accounts_left: Counter,
    registry: Registry,
}

fn seconds_buckets() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let m = Metrics {
            sync_duration: Family::new_with_constructor(seconds_buckets),
            syncs: Family::default(),
            planned: Family::default(),
            applied: Family::default(),
            pbx_requests: Family::default(),
            pbx_request_duration: Family::new_with_constructor(seconds_buckets),
            accounts: Family::default(),
            drift_corrections: Family::default(),
            guard_trips: Family::default(),
            leader: Gauge::default(),
            secrets_held: Gauge::default(),
            accounts_left: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sync_duration_seconds",
            "Time of one pass over a phone system",
            m.sync_duration.clone(),
        );
        registry.register("syncs", "Passes over a phone system, by outcome", m.syncs.clone());
        registry.register("planned_operations", "Operations planned, by kind", m.planned.clone());
        registry.register("applied_operations", "Operations applied, by kind and result", m.applied.clone());
        registry.register(
            "pbx_requests",
            "Requests to phone systems, by operation and outcome",
            m.pbx_requests.clone(),
        );
        registry.register(
            "pbx_request_duration_seconds",
            "Latency of requests to phone systems",
            m.pbx_request_duration.clone(),
        );
        registry.register("accounts", "Accounts by state, from the last pass", m.accounts.clone());
        registry.register(
            "drift_corrections",
            "Accounts changed by hand and put back",
            m.drift_corrections.clone(),
        );
        registry.register(
            "deletion_guard_trips",
            "Passes whose deletions the guard held",
            m.guard_trips.clone(),
        );
        registry.register("leader", "1 while this instance is the one that writes", m.leader.clone());
        registry.register(
            "secrets_held",
            "Secrets whose data is held in memory (referred credentials and passwords; of others only metadata)",
            m.secrets_held.clone(),
        );
        registry.register(
            "accounts_left",
            "Accounts left on a phone system by a namespace teardown (see the AccountsLeft events)",
            m.accounts_left.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition format Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// One pass over a PhoneSystem ended with `outcome` after `elapsed`.
    pub fn record_pass(&self, namespace: &str, phone_system: &str, outcome: &str, elapsed: Duration) {
        let system = SystemLabels { namespace: namespace.to_owned(), phone_system: phone_system.to_owned() };
        self.sync_duration.get_or_create(&system).observe(elapsed.as_secs_f64());
        let labels = OutcomeLabels {
            namespace: namespace.to_owned(),
            phone_system: phone_system.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.syncs.get_or_create(&labels).inc();
    }

    /// What a pass planned and applied, and the accounts by state it left.
    pub fn record_report(&self, namespace: &str, phone_system: &str, report: &Report) {
        let plan = &report.plan;
        for (operation, n) in [
            ("create", plan.creates.len()),
            ("update", plan.updates.len()),
            ("delete", plan.deletes.len()),
            ("adopt", plan.adoptions.len()),
            ("manual", plan.manual.len()),
        ] {
            if n > 0 {
                let labels = OperationLabels {
                    namespace: namespace.to_owned(),
                    phone_system: phone_system.to_owned(),
                    operation: operation.to_owned(),
                };
                self.planned.get_or_create(&labels).inc_by(n as u64);
            }
        }
        for ((operation, result), n) in &report.applied {
            let labels = AppliedLabels {
                namespace: namespace.to_owned(),
                phone_system: phone_system.to_owned(),
                operation: (*operation).to_owned(),
                result: (*result).to_owned(),
            };
            self.applied.get_or_create(&labels).inc_by(*n as u64);
        }
        let counts = &report.counts;
        for (state, n) in [
            ("InSync", counts.in_sync),
            ("Pending", counts.pending),
            ("Failed", counts.failed),
            ("Unmanaged", counts.unmanaged),
        ] {
            let labels = StateLabels {
                namespace: namespace.to_owned(),
                phone_system: phone_system.to_owned(),
                state: state.to_owned(),
            };
            self.accounts.get_or_create(&labels).set(i64::from(n));
        }
        let system = SystemLabels { namespace: namespace.to_owned(), phone_system: phone_system.to_owned() };
        if report.drift_corrections > 0 {
            self.drift_corrections.get_or_create(&system).inc_by(report.drift_corrections as u64);
        }
        if plan.guard_tripped() {
            self.guard_trips.get_or_create(&system).inc();
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Records the PBX requests of one PhoneSystem's backend.
#[derive(Debug)]
pub struct PbxObserver {
    metrics: Arc<Metrics>,
    namespace: String,
    phone_system: String,
}

impl PbxObserver {
    pub fn new(metrics: Arc<Metrics>, namespace: &str, phone_system: &str) -> Self {
        PbxObserver { metrics, namespace: namespace.to_owned(), phone_system: phone_system.to_owned() }
    }
}

impl Observer for PbxObserver {
    fn request(&self, system: BackendKind, operation: &str, outcome: &str, elapsed: Duration) {
        let labels = RequestLabels {
            namespace: self.namespace.clone(),
            phone_system: self.phone_system.clone(),
            system: system.as_str().to_owned(),
            operation: operation.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.metrics.pbx_requests.get_or_create(&labels).inc();
        self.metrics.pbx_request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}

/// Shared between the controller (which sets readiness) and the HTTP server.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The `/metrics`, `/healthz` and `/readyz` routes.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(Shared { metrics, health })
}

async fn metrics_handler(State(s): State<Shared>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

async fn ready_handler(State(s): State<Shared>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves the routes on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, health: Arc<Health>) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(addr).await?, metrics, health).await
}

/// Serves the routes on a bound listener (bound first, so a taken port fails start-up).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health)).await
}

/// Log output: `text` for people, `json` for log pipelines. `RUST_LOG` filters either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Logs go to stderr, so command output on stdout
/// stays clean.
pub fn init_logs(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_with_its_prefix() {
        let m = Metrics::default();
        let sys = SystemLabels { namespace: "ns".into(), phone_system: "pbx".into() };
        let outcome =
            OutcomeLabels { namespace: "ns".into(), phone_system: "pbx".into(), outcome: "ok".into() };
        let op = OperationLabels {
            namespace: "ns".into(),
            phone_system: "pbx".into(),
            operation: "create".into(),
        };
        let applied = AppliedLabels {
            namespace: "ns".into(),
            phone_system: "pbx".into(),
            operation: "create".into(),
            result: "ok".into(),
        };
        let req = RequestLabels {
            namespace: "ns".into(),
            phone_system: "pbx".into(),
            system: "mikopbx".into(),
            operation: "GET /api/users".into(),
            outcome: "ok".into(),
        };
        let state =
            StateLabels { namespace: "ns".into(), phone_system: "pbx".into(), state: "InSync".into() };
        m.sync_duration.get_or_create(&sys).observe(0.2);
        m.syncs.get_or_create(&outcome).inc();
        m.planned.get_or_create(&op).inc();
        m.applied.get_or_create(&applied).inc();
        m.pbx_requests.get_or_create(&req).inc();
        m.pbx_request_duration.get_or_create(&req).observe(0.01);
        m.accounts.get_or_create(&state).set(3);
        m.drift_corrections.get_or_create(&sys).inc();
        m.guard_trips.get_or_create(&sys).inc();
        m.leader.set(1);
        let text = m.encode();
        for line in [
            "switchboard_sync_duration_seconds_count{namespace=\"ns\",phone_system=\"pbx\"} 1",
            "switchboard_syncs_total{namespace=\"ns\",phone_system=\"pbx\",outcome=\"ok\"} 1",
            "switchboard_planned_operations_total{namespace=\"ns\",phone_system=\"pbx\",operation=\"create\"} 1",
            "switchboard_applied_operations_total{namespace=\"ns\",phone_system=\"pbx\",operation=\"create\",result=\"ok\"} 1",
            "switchboard_pbx_requests_total{namespace=\"ns\",phone_system=\"pbx\",system=\"mikopbx\",operation=\"GET /api/users\",outcome=\"ok\"} 1",
            "switchboard_pbx_request_duration_seconds_count{namespace=\"ns\",phone_system=\"pbx\",system=\"mikopbx\",operation=\"GET /api/users\",outcome=\"ok\"} 1",
            "switchboard_accounts{namespace=\"ns\",phone_system=\"pbx\",state=\"InSync\"} 3",
            "switchboard_drift_corrections_total{namespace=\"ns\",phone_system=\"pbx\"} 1",
            "switchboard_deletion_guard_trips_total{namespace=\"ns\",phone_system=\"pbx\"} 1",
            "switchboard_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
