//! Simulators of the five phone-system APIs, and the control plane they share.
//!
//! Each simulator (`thulium.rs`, `ringostat.rs`, ...) serves only its system's own API.
//! [`spawn`] puts one middleware around it that injects faults and counts requests, and
//! adds control routes under `/_sim` that tests and the demo use to inspect the accounts,
//! tamper with them behind the operator's back, read statistics and switch faults on.
//! The control routes are never faulted and never counted, so a test can always see
//! what really happened.
//!
//! Fault model: every request to the simulator's API first waits `latency_ms`, then one
//! uniform draw from a seeded RNG picks at most one fault, in this fixed order of
//! ranges: rate limit (429), error (500/502/503), hang, garbage (200 + HTML), drop
//! (connection broken mid-body), commit-then-fail. Rates add up along [0, 1); whatever is
//! past 1 is cut off. Every fault except commit-then-fail is decided and answered BEFORE
//! the simulator sees the request, so it changes nothing. Commit-then-fail passes the
//! request to the simulator (the change is applied) and then throws the answer away and
//! answers 502 (or hangs, with `commit_then_fail_hang`): the real-world case of a proxy
//! timing out after the backend committed, which a client must survive without creating
//! a second account.
//!
//! Besides the random faults, `max_rps` enforces a request rate: a token bucket that
//! holds one second's worth of requests and refills continuously; a request that finds
//! it empty is answered 429 with `Retry-After` (whole seconds until a token is free, at
//! least 1), before the simulator sees it. It is what a real API's rate limiter does, so
//! a client's own limit can be measured against it.

pub mod apio;
pub mod mikopbx;
pub mod ringostat;
mod table;
pub mod telphin;
pub mod thulium;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{MatchedPath, Path, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::{any, get, patch, post},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::{sync::watch, task::JoinHandle};

/// What every simulator exposes to the shared control plane (faults, inspection, drift).
pub trait Simulator: Send + Sync + 'static {
    /// "mikopbx" | "thulium" | "apio" | "telphin" | "ringostat"
    fn kind(&self) -> &'static str;
    /// The system's own API routes. Faults, stats and the control endpoints are layered
    /// on top by mod.rs; a simulator's routes must not use the `/_sim` prefix.
    fn router(self: Arc<Self>) -> axum::Router;
    /// Every account, in the system's own JSON field names, as a JSON array sorted by id.
    /// Passwords/secrets ARE included (tests check what the client sent).
    fn dump(&self) -> Value;
    /// Change fields of one account behind the operator's back (drift). `patch` uses the
    /// system's own field names. Unknown id -> SimError::NotFound.
    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError>;
    /// Delete one account behind the operator's back.
    fn remove(&self, id: &str) -> Result<(), SimError>;
    /// Insert an account directly (tests seed unmanaged accounts). The same rules as the
    /// API's create apply (uniqueness etc.); returns the new id.
    fn seed(&self, account: &Value) -> Result<String, SimError>;
    /// What a client needs to log in, as Secret keys (see the table below) -> values.
    fn credentials(&self) -> BTreeMap<String, String>;
    /// Invalidate every issued token/session now (tests of token expiry). Default: none.
    fn expire_tokens(&self) {}
    /// The dialect served: the answer shapes and behaviours where the vendor's evidence
    /// allows more than one reading (see `docs/compatibility.md`), as a JSON object of
    /// setting -> value. Default: none.
    fn dialect(&self) -> Value {
        Value::Object(Map::new())
    }
    /// Changes the settings named in `patch` (the others stay). Unknown settings or
    /// values -> [`SimError::Invalid`], naming them.
    fn set_dialect(&self, patch: &Map<String, Value>) -> Result<(), SimError> {
        match patch.keys().next() {
            None => Ok(()),
            Some(key) => Err(SimError::Invalid(format!("{} has no dialect setting {key:?}", self.kind()))),
        }
    }
}

/// Applies a `/_sim/dialect` patch to a simulator's dialect struct `D`: the current
/// settings with `patch` merged over them must still read as a `D` (serde names the
/// unknown setting or bad value).
pub fn patch_dialect<D: Serialize + serde::de::DeserializeOwned>(
    current: &D,
    patch: &Map<String, Value>,
) -> Result<D, SimError> {
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    merged.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
    serde_json::from_value(Value::Object(merged)).map_err(|e| SimError::Invalid(format!("dialect: {e}")))
}

/// `KEY=VALUE` as a dialect patch entry: `true`, `false`, `null` and whole numbers as
/// such, anything else (`2023.2`, `ru`) as a string.
pub fn dialect_setting(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let value = match serde_json::from_str::<Value>(value) {
        Ok(v @ (Value::Bool(_) | Value::Null)) => v,
        Ok(Value::Number(n)) if n.is_u64() && !value.contains('.') => Value::Number(n),
        _ => Value::String(value.to_owned()),
    };
    Ok((key.trim().to_owned(), value))
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no account with id {0}")]
    NotFound(String),
    #[error("rejected: {0}")]
    Invalid(String),
    #[error("cannot bind the simulator's listener: {0}")]
    Bind(#[from] std::io::Error),
}

/// A handler puts this in its response's extensions so stats count by operation
/// (e.g. JSON-RPC method names, "saveRecord"); absent, mod.rs uses the matched route.
#[derive(Clone, Copy, Debug)]
pub struct OpName(pub &'static str);

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Faults injected into the simulator's API (never into `/_sim`). All rates are
/// fractions in [0, 1]; everything is off by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added to every API request before anything else.
    pub latency_ms: u64,
    /// Answered 500, 502 or 503 with the kind of body a web server or proxy sends.
    pub error_rate: f64,
    /// Answered 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_rate: f64,
    pub retry_after_secs: u64,
    /// No answer for `hang_secs` (past any sane client timeout), then 504.
    pub hang_rate: f64,
    pub hang_secs: u64,
    /// Answered 200 with an HTML page instead of the API's JSON.
    pub garbage_rate: f64,
    /// Answered 200 whose body breaks off: the client sees the connection close mid-message.
    pub drop_rate: f64,
    /// The request IS applied, then the answer is replaced by a 502 (or a hang).
    pub commit_then_fail_rate: f64,
    /// Commit-then-fail hangs for `hang_secs` (then 504) instead of answering 502.
    pub commit_then_fail_hang: bool,
    /// Seeds the RNG that decides which request gets which fault, so runs repeat.
    pub seed: u64,
    /// Requests per second the API accepts (token bucket, burst of one second's worth);
    /// past it, 429 with `Retry-After`. 0: no limit.
    pub max_rps: u32,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            hang_rate: 0.0,
            hang_secs: 600,
            garbage_rate: 0.0,
            drop_rate: 0.0,
            commit_then_fail_rate: 0.0,
            commit_then_fail_hang: false,
            seed: 0,
            max_rps: 0,
        }
    }
}

impl FaultConfig {
    fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("hang_rate", self.hang_rate),
            ("garbage_rate", self.garbage_rate),
            ("drop_rate", self.drop_rate),
            ("commit_then_fail_rate", self.commit_then_fail_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1 (got {rate})"));
            }
        }
        Ok(())
    }
}

/// Request counts of the simulator's API since start or the last reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every API request answered (or broken off), faulted or not.
    pub requests: u64,
    /// operation -> HTTP status -> count. The operation is the handler's [`OpName`], else
    /// "METHOD /matched/route", else "METHOD (no route)". A faulted request never reaches
    /// the handler, so it is counted under its route.
    pub by_operation: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Fault mode ("rate_limit", "error", "hang", "garbage", "drop", "commit_then_fail")
    /// -> how many times it was injected.
    pub faults: BTreeMap<String, u64>,
    /// Sum of the time from receiving a request to sending its response head.
    pub latency_ms_sum: f64,
    /// The most API requests that were being answered at once: what a client's
    /// concurrency limit is checked against.
    #[serde(default)]
    pub peak_in_flight: u64,
}

impl Stats {
    /// Requests of `op` answered with `status`.
    pub fn count(&self, op: &str, status: u16) -> u64 {
        self.by_operation.get(op).and_then(|m| m.get(&status)).copied().unwrap_or(0)
    }

    /// Requests of `op`, any status.
    pub fn total(&self, op: &str) -> u64 {
        self.by_operation.get(op).map_or(0, |m| m.values().sum())
    }

    /// Times fault `mode` was injected.
    pub fn fault_count(&self, mode: &str) -> u64 {
        self.faults.get(mode).copied().unwrap_or(0)
    }
}

struct FaultState {
    config: FaultConfig,
    rng: StdRng,
    bucket: Bucket,
}

/// The `max_rps` token bucket.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(rps: u32) -> Self {
        Bucket { tokens: f64::from(rps), refilled: Instant::now() }
    }

    /// Takes a token, or says how long until one is free.
    fn take(&mut self, rps: u32) -> Result<(), Duration> {
        let rate = f64::from(rps);
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

struct Shared {
    faults: Mutex<FaultState>,
    stats: Mutex<Stats>,
    in_flight: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn set_faults(&self, config: FaultConfig) {
        let mut state = lock(&self.faults);
        // Re-seeding on every change is what makes a run repeat from the moment faults
        // are switched on, whatever traffic came before.
        state.rng = StdRng::seed_from_u64(config.seed);
        state.bucket = Bucket::full(config.max_rps);
        state.config = config;
    }

    fn record(&self, op: String, status: u16, fault: Option<Fault>, elapsed: Duration) {
        let mut stats = lock(&self.stats);
        stats.requests += 1;
        *stats.by_operation.entry(op).or_default().entry(status).or_default() += 1;
        if let Some(fault) = fault {
            *stats.faults.entry(fault.name().to_string()).or_default() += 1;
        }
        stats.latency_ms_sum += elapsed.as_secs_f64() * 1000.0;
    }

    /// Sleeps, but gives up when the server shuts down, so a hanging request never
    /// holds up a graceful shutdown for ten minutes.
    async fn sleep(&self, duration: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    RateLimit,
    /// Over `max_rps`; the seconds to wait.
    Throttled(u64),
    Error(u16),
    Hang,
    Garbage,
    Drop,
    CommitThenFail,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::RateLimit => "rate_limit",
            Fault::Throttled(_) => "max_rps",
            Fault::Error(_) => "error",
            Fault::Hang => "hang",
            Fault::Garbage => "garbage",
            Fault::Drop => "drop",
            Fault::CommitThenFail => "commit_then_fail",
        }
    }
}

fn decide(state: &mut FaultState) -> Option<Fault> {
    let c = &state.config;
    let ranges = [
        (c.rate_limit_rate, Fault::RateLimit),
        (c.error_rate, Fault::Error(0)),
        (c.hang_rate, Fault::Hang),
        (c.garbage_rate, Fault::Garbage),
        (c.drop_rate, Fault::Drop),
        (c.commit_then_fail_rate, Fault::CommitThenFail),
    ];
    if ranges.iter().all(|(rate, _)| *rate <= 0.0) {
        // No draw when faults are off: the sequence then starts at the first request
        // after they are switched on.
        return None;
    }
    let draw: f64 = state.rng.random();
    let mut upper = 0.0;
    for (rate, fault) in ranges {
        upper += rate;
        if draw < upper {
            return Some(match fault {
                Fault::Error(_) => Fault::Error([500, 502, 503][state.rng.random_range(0..3)]),
                other => other,
            });
        }
    }
    None
}

fn html(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

const HTML_500: &str = "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const HTML_503: &str = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const HTML_504: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const HTML_MAINTENANCE: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Scheduled maintenance</title></head>\n<body><h1>We'll be back soon</h1><p>The service is undergoing scheduled maintenance. Please try again later.</p></body>\n</html>\n";

fn error_page(status: u16) -> Response {
    match status {
        502 => html(StatusCode::BAD_GATEWAY, HTML_502),
        503 => html(StatusCode::SERVICE_UNAVAILABLE, HTML_503),
        _ => html(StatusCode::INTERNAL_SERVER_ERROR, HTML_500),
    }
}

/// A 200 whose body breaks off: the head and the first bytes go out, then the body
/// stream fails and hyper aborts the connection, so the client has already seen a 200
/// when the message turns out incomplete (the nastier order for a client).
fn broken_response() -> Response {
    use futures_util::StreamExt;
    let head = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"result\":"))]);
    let fail = futures_util::stream::once(async {
        // The pause lets hyper flush the head before the failure aborts the connection.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated connection drop"))
    });
    let mut response = Response::new(Body::from_stream(head.chain(fail)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Counts a request as being answered while it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut stats = lock(&shared.stats);
        stats.peak_in_flight = stats.peak_in_flight.max(now);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn faults_and_stats(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = InFlight::enter(&shared);
    let route_op = match req.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", req.method(), path.as_str()),
        None => format!("{} (no route)", req.method()),
    };
    let (latency, hang, retry_after, commit_hang, fault) = {
        let mut state = lock(&shared.faults);
        let rps = state.config.max_rps;
        let fault = match rps {
            0 => decide(&mut state),
            _ => match state.bucket.take(rps) {
                Ok(()) => decide(&mut state),
                Err(wait) => Some(Fault::Throttled(wait.as_secs_f64().ceil().max(1.0) as u64)),
            },
        };
        let c = &state.config;
        (
            Duration::from_millis(c.latency_ms),
            Duration::from_secs(c.hang_secs),
            c.retry_after_secs,
            c.commit_then_fail_hang,
            fault,
        )
    };
    if !latency.is_zero() {
        shared.sleep(latency).await;
    }
    let (op, response) = match fault {
        Some(Fault::RateLimit | Fault::Throttled(_)) => {
            let retry_after = match fault {
                Some(Fault::Throttled(wait)) => wait,
                _ => retry_after,
            };
            let body = Json(json!({"error": "Too Many Requests", "retry_after": retry_after}));
            let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            (route_op, response)
        }
        Some(Fault::Error(status)) => (route_op, error_page(status)),
        Some(Fault::Hang) => {
            shared.sleep(hang).await;
            (route_op, html(StatusCode::GATEWAY_TIMEOUT, HTML_504))
        }
        Some(Fault::Garbage) => (route_op, html(StatusCode::OK, HTML_MAINTENANCE)),
        Some(Fault::Drop) => (route_op, broken_response()),
        Some(Fault::CommitThenFail) => {
            let applied = next.run(req).await;
            let op = op_of(&applied).unwrap_or(route_op);
            if commit_hang {
                shared.sleep(hang).await;
                (op, html(StatusCode::GATEWAY_TIMEOUT, HTML_504))
            } else {
                (op, html(StatusCode::BAD_GATEWAY, HTML_502))
            }
        }
        None => {
            let response = next.run(req).await;
            (op_of(&response).unwrap_or(route_op), response)
        }
    };
    shared.record(op, response.status().as_u16(), fault, started.elapsed());
    response
}

fn op_of(response: &Response) -> Option<String> {
    response.extensions().get::<OpName>().map(|op| op.0.to_string())
}

// ---- control plane (`/_sim`) ----

#[derive(Clone)]
struct Control {
    sim: Arc<dyn Simulator>,
    shared: Arc<Shared>,
}

fn control_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn sim_error(err: SimError) -> Response {
    let status = match err {
        SimError::NotFound(_) => StatusCode::NOT_FOUND,
        SimError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SimError::Bind(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    control_error(status, err.to_string())
}

/// Parses the body by hand so a bad body gets a JSON error, not axum's plain text.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn ctl_accounts(State(c): State<Control>) -> Response {
    Json(c.sim.dump()).into_response()
}

async fn ctl_seed(State(c): State<Control>, body: Bytes) -> Response {
    let account: Value = match json_body(&body) {
        Ok(v) => v,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    if !account.is_object() {
        return control_error(StatusCode::BAD_REQUEST, "body must be a JSON object");
    }
    match c.sim.seed(&account) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => sim_error(e),
    }
}

async fn ctl_tamper(State(c): State<Control>, Path(id): Path<String>, body: Bytes) -> Response {
    let patch: Value = match json_body(&body) {
        Ok(v) => v,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    let Value::Object(patch) = patch else {
        return control_error(StatusCode::BAD_REQUEST, "body must be a JSON object");
    };
    match c.sim.tamper(&id, &patch) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(e),
    }
}

async fn ctl_remove(State(c): State<Control>, Path(id): Path<String>) -> Response {
    match c.sim.remove(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(e),
    }
}

async fn ctl_stats(State(c): State<Control>) -> Response {
    Json(lock(&c.shared.stats).clone()).into_response()
}

async fn ctl_reset_stats(State(c): State<Control>) -> Response {
    *lock(&c.shared.stats) = Stats::default();
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_get_faults(State(c): State<Control>) -> Response {
    Json(lock(&c.shared.faults).config.clone()).into_response()
}

async fn ctl_put_faults(State(c): State<Control>, body: Bytes) -> Response {
    let config: FaultConfig = match json_body(&body) {
        Ok(v) => v,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    if let Err(message) = config.validate() {
        return control_error(StatusCode::BAD_REQUEST, message);
    }
    c.shared.set_faults(config.clone());
    Json(config).into_response()
}

async fn ctl_get_dialect(State(c): State<Control>) -> Response {
    Json(c.sim.dialect()).into_response()
}

async fn ctl_put_dialect(State(c): State<Control>, body: Bytes) -> Response {
    let patch: Value = match json_body(&body) {
        Ok(v) => v,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    let Value::Object(patch) = patch else {
        return control_error(StatusCode::BAD_REQUEST, "body must be a JSON object");
    };
    match c.sim.set_dialect(&patch) {
        Ok(()) => Json(c.sim.dialect()).into_response(),
        Err(e) => sim_error(e),
    }
}

async fn ctl_expire_tokens(State(c): State<Control>) -> Response {
    c.sim.expire_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_not_found() -> Response {
    control_error(StatusCode::NOT_FOUND, "no such control endpoint")
}

fn control_router(control: Control) -> Router {
    Router::new()
        .route("/_sim/accounts", get(ctl_accounts).post(ctl_seed))
        .route("/_sim/accounts/{id}", patch(ctl_tamper).delete(ctl_remove))
        .route("/_sim/stats", get(ctl_stats))
        .route("/_sim/stats/reset", post(ctl_reset_stats))
        .route("/_sim/faults", get(ctl_get_faults).put(ctl_put_faults))
        .route("/_sim/expire-tokens", post(ctl_expire_tokens))
        .route("/_sim/dialect", get(ctl_get_dialect).put(ctl_put_dialect))
        .route("/_sim", any(ctl_not_found))
        .route("/_sim/{*rest}", any(ctl_not_found))
        .method_not_allowed_fallback(|| async {
            control_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .with_state(control)
}

// ---- serving ----

/// A simulator serving on loopback.
pub struct Running {
    /// e.g. "http://127.0.0.1:41234" (no trailing slash)
    pub url: String,
    pub sim: Arc<dyn Simulator>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// The address actually bound (useful when spawned on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    pub fn faults(&self) -> FaultConfig {
        lock(&self.shared.faults).config.clone()
    }

    /// Replaces the fault configuration and re-seeds the fault RNG from `config.seed`.
    /// Rates outside [0, 1] are clamped.
    pub fn set_faults(&self, mut config: FaultConfig) {
        for rate in [
            &mut config.error_rate,
            &mut config.rate_limit_rate,
            &mut config.hang_rate,
            &mut config.garbage_rate,
            &mut config.drop_rate,
            &mut config.commit_then_fail_rate,
        ] {
            *rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        }
        self.shared.set_faults(config);
    }

    /// Stops accepting connections, cuts short any injected latency or hang, and waits
    /// (a few seconds at most) for the requests in flight to finish.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The server task sees this and finishes on its own; nothing to wait for here.
        self.stop.send_replace(true);
    }
}

/// Serves `sim` on `addr` (use port 0 for a free port) with the fault/stats middleware
/// and the `/_sim` control routes. The server stops when the returned [`Running`] is
/// dropped or shut down.
pub async fn spawn(sim: Arc<dyn Simulator>, addr: SocketAddr) -> Result<Running, SimError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let defaults = FaultConfig::default();
    let shared = Arc::new(Shared {
        faults: Mutex::new(FaultState {
            rng: StdRng::seed_from_u64(defaults.seed),
            bucket: Bucket::full(defaults.max_rps),
            config: defaults,
        }),
        stats: Mutex::new(Stats::default()),
        in_flight: AtomicU64::new(0),
        shutdown: stopped.clone(),
    });
    let control = Control { sim: sim.clone(), shared: shared.clone() };
    let app = Arc::clone(&sim)
        .router()
        .layer(from_fn_with_state(shared.clone(), faults_and_stats))
        .merge(control_router(control));
    let mut signal = stopped;
    let task = tokio::spawn(async move {
        // MikoPBX trusts loopback callers: the simulators need the peer address.
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = signal.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "simulator server stopped with an error");
        }
    });
    tracing::info!(kind = sim.kind(), %addr, "simulator listening");
    Ok(Running { url: format!("http://{addr}"), sim, addr, shared, stop, task: Some(task) })
}

/// A practical e-mail check shared by the simulators whose docs say "valid e-mail":
/// one `@`, a dot-atom local part, and an ASCII domain of at least two labels with an
/// alphabetic top-level label. Not RFC 5322 in full (no quoted local parts, no IP
/// literals), which is also what web back-ends usually accept.
pub(crate) fn is_valid_email(s: &str) -> bool {
    const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty() && atom.chars().all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// The simulator of `kind` with its default configuration (the credentials `switchboard
/// sim` prints and `examples/` uses).
pub fn default_simulator(kind: crate::api::BackendKind) -> Arc<dyn Simulator> {
    use crate::api::BackendKind;
    match kind {
        BackendKind::Mikopbx => mikopbx::MikoPbxSim::new(mikopbx::MikoPbxConfig::default()),
        BackendKind::Thulium => thulium::ThuliumSim::new(thulium::ThuliumConfig::default()),
        BackendKind::Apio => apio::ApioSim::new(apio::ApioConfig::default()),
        BackendKind::Telphin => telphin::TelphinSim::new(telphin::TelphinConfig::default()),
        BackendKind::Ringostat => ringostat::RingostatSim::new(ringostat::RingostatConfig::default()),
    }
}

/// The backend block of a PhoneSystem that points at the default simulator of `kind` at
/// `url`: its tenant, group and project are the simulators' defaults (MikoPBX speaks v3;
/// set `apiGeneration` for the legacy API).
pub fn backend_block(kind: crate::api::BackendKind, url: &str) -> Value {
    use crate::api::BackendKind;
    match kind {
        BackendKind::Mikopbx => json!({"url": url, "apiGeneration": "v3"}),
        BackendKind::Thulium => json!({"url": url}),
        BackendKind::Apio => {
            json!({"url": url, "pathPrefix": "/api/v01/p1", "tenant": "foo", "group": "foogroup"})
        }
        BackendKind::Telphin => json!({"url": url, "clientId": "@me"}),
        BackendKind::Ringostat => json!({"url": url, "projectId": "123", "creatorId": "456"}),
    }
}

/// `application/x-www-form-urlencoded` pairs (a form body or a query string), in order,
/// repeated keys kept.
pub(crate) fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}
