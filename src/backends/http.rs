//! The HTTP policy every backend shares, written once: timeouts, retries with backoff and
//! jitter, `Retry-After`, a token-bucket rate limit and a concurrency cap per phone
//! system, a cap on answer sizes, and scrubbing of secrets from every error.
//!
//! Retries: an idempotent request (a read, a PUT, a DELETE) is retried on every transient
//! failure. A request that may create something ([`Retry::Unsafe`]) is retried only when
//! it surely did not reach the system (connection refused, 429); any other unclear
//! failure goes back to the caller, which checks by natural key before trying again
//! ([`super::create_once`]).
//!
//! Every try is told to the [`Observer`] in the settings, if any (the operator's metrics),
//! as an operation label made of the method and the path with its ids replaced by
//! `{id}`, so backends need not name their requests and no id ever becomes a label.

use std::{
    collections::BTreeSet,
    fmt,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use rand::Rng;
use reqwest::{Client, RequestBuilder, StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::{Error, Quota, Secret};
use crate::api::BackendKind;
use crate::error_chain;

/// Knobs of the HTTP policy. Defaults suit a PBX on a WAN.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Whole request, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Tries per request, the first included.
    pub attempts: u32,
    /// First backoff; doubles per retry, with full jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; longer ones fail the request as transient.
    pub max_retry_after: Duration,
    /// Larger answers are refused: a PBX (or something posing as one) cannot make us
    /// hold unbounded memory.
    pub max_body_bytes: usize,
    /// Sustained requests per second and burst; `None`: unlimited.
    pub rate: Option<(u32, u32)>,
    pub max_concurrency: usize,
    /// Hears every request sent (one per try).
    pub observer: Option<Arc<dyn Observer>>,
}

/// Hears the requests a phone system's client sends.
pub trait Observer: Send + Sync + fmt::Debug {
    /// One try ended: `operation` is the method and path template (`GET
    /// /pbxcore/api/v3/employees/{id}`), `outcome` one of `ok`, `client_error`,
    /// `rate_limited`, `server_error`, `timeout`, `unreachable`, `broken`, `too_large`.
    fn request(&self, system: BackendKind, operation: &str, outcome: &str, elapsed: Duration);
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            attempts: 4,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            max_body_bytes: 32 * 1024 * 1024,
            rate: None,
            max_concurrency: 4,
            observer: None,
        }
    }
}

impl Settings {
    /// These settings with a PhoneSystem's `maxConcurrency` and `rateLimit` (burst
    /// defaulting to the rate) applied: what the controller, `sync` and `bench` use.
    pub fn for_system(mut self, spec: &crate::api::PhoneSystemSpec) -> Self {
        self.max_concurrency = usize::try_from(spec.max_concurrency).unwrap_or(1).max(1);
        self.rate = spec
            .rate_limit
            .as_ref()
            .map(|r| (r.requests_per_second, r.burst.unwrap_or(r.requests_per_second)));
        self
    }
}

/// Whether a request may be sent again after an unclear failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads, PUTs, DELETEs: repeating them changes nothing.
    Idempotent,
    /// Creates: only when the request surely did not arrive.
    Unsafe,
}

/// An answer, read in full (within the size cap).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Replaces every known secret in a text with `***`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

/// Shorter values would scrub ordinary words; no credential is that short.
const MIN_REDACTED_LEN: usize = 4;

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut r = Redactor::default();
        r.extend(secrets);
        r
    }

    pub fn extend<'a>(&mut self, secrets: impl IntoIterator<Item = &'a Secret>) {
        for s in secrets {
            if s.expose().len() >= MIN_REDACTED_LEN && !self.secrets.contains(s) {
                self.secrets.push(s.clone());
            }
        }
        // Longest first, so a secret that contains another is scrubbed whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "***");
            }
            // Form and URL encodings of the same value.
            let encoded: String = url_encode(s.expose());
            if encoded != s.expose() && out.contains(&encoded) {
                out = out.replace(&encoded, "***");
            }
        }
        out
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One phone system's HTTP client.
#[derive(Clone, Debug)]
pub struct Http {
    system: BackendKind,
    base: String,
    client: Client,
    settings: Settings,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    permits: Arc<Semaphore>,
    redactor: Redactor,
    /// Operation labels told to the observer so far: a backstop on their number should
    /// a path template ever keep an id.
    operations: Arc<Mutex<BTreeSet<String>>>,
    /// The quota the system announced in its latest answer (`X-RateLimit-*`).
    quota: Arc<Mutex<Option<Quota>>>,
}

/// Operation labels one client tells its observer; later ones are told as `other`.
const MAX_OPERATIONS: usize = 32;

impl Http {
    /// `base` is the system's URL without a trailing slash; `secrets` are scrubbed from
    /// every error this client builds.
    pub fn new<'a>(
        system: BackendKind,
        base: &str,
        settings: Settings,
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> Result<Self, Error> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!("{system}: url {base:?} is not http(s)")));
        }
        // Several clients may race to install it; the first one wins and that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("{system}: cannot build an HTTP client: {e}")))?;
        let limiter = match settings.rate {
            Some((rps, burst)) => {
                let rps = NonZeroU32::new(rps).ok_or_else(|| Error::Config("rate of 0 requests/s".into()))?;
                let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rps);
                Some(Arc::new(RateLimiter::direct(governor::Quota::per_second(rps).allow_burst(burst))))
            }
            None => None,
        };
        let permits = Arc::new(Semaphore::new(settings.max_concurrency.max(1)));
        Ok(Http {
            system,
            base: base.trim_end_matches('/').to_owned(),
            client,
            settings,
            limiter,
            permits,
            redactor: Redactor::new(secrets),
            operations: Arc::default(),
            quota: Arc::default(),
        })
    }

    pub fn system(&self) -> BackendKind {
        self.system
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The quota the system announced in its latest answer, if it announces one.
    pub fn quota(&self) -> Option<Quota> {
        *self.quota.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This client with `secrets` (a password being set) scrubbed from its errors too, for
    /// the requests that carry them: reading their answers then scrubs them as well.
    /// The copy shares the rate limit and the concurrency cap.
    pub fn with_secrets(&self, secrets: &[&Secret]) -> Http {
        let mut http = self.clone();
        http.redactor.extend(secrets.iter().copied());
        http
    }

    /// Sends the request `build` makes (called once per try), under the rate limit and
    /// concurrency cap, retrying as `retry` allows. 4xx answers come back as replies for
    /// the backend to read; 5xx, 429, timeouts and broken connections are retried and
    /// end as [`Error::Transient`]. `secrets` are values in this request (a password
    /// being set) to scrub from errors, besides the credentials.
    pub async fn send(
        &self,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, Error> {
        let mut redactor = self.redactor.clone();
        if !secrets.is_empty() {
            redactor.extend(secrets.iter().copied());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.try_once(&build, &redactor).await;
            let (err, arrived) = match outcome {
                Ok(reply) => return Ok(reply),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Retryable { error, arrived }) => (error, arrived),
            };
            let retry_after = match &err {
                Error::Transient { retry_after, .. } => *retry_after,
                _ => None,
            };
            let may_retry = attempt < self.settings.attempts && (retry == Retry::Idempotent || !arrived);
            if !may_retry {
                return Err(err);
            }
            let wait = match retry_after {
                Some(after) if after > self.settings.max_retry_after => return Err(err),
                Some(after) => after,
                None => self.backoff(attempt),
            };
            tracing::debug!(system = %self.system, attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Full jitter: a random wait up to the exponential bound.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.settings.backoff.saturating_mul(1 << attempt.min(16));
        let bound = exp.min(self.settings.max_backoff);
        let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    async fn try_once(
        &self,
        build: &impl Fn(&Client) -> RequestBuilder,
        redactor: &Redactor,
    ) -> Result<Reply, Failure> {
        let _permit =
            self.permits.acquire().await.map_err(|_| Failure::Final(self.transient("client closed")))?;
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        // Built here rather than sent from the builder, so the observer can be told the
        // method and path.
        let started = Instant::now();
        let (operation, result) = match build(&self.client).build() {
            Ok(request) => {
                let operation = self.observed_operation(request.method(), request.url().path());
                (operation, self.client.execute(request).await)
            }
            Err(e) => (None, Err(e)),
        };
        let (outcome, result) = self.answer(result, redactor).await;
        if let (Some(observer), Some(operation)) = (&self.settings.observer, operation) {
            observer.request(self.system, &operation, outcome, started.elapsed());
        }
        result
    }

    /// The operation label of a request, if an observer listens.
    fn observed_operation(&self, method: &reqwest::Method, path: &str) -> Option<String> {
        self.settings.observer.as_ref()?;
        let operation = operation(method.as_str(), path);
        let mut seen = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&operation) || seen.len() < MAX_OPERATIONS {
            seen.insert(operation.clone());
            Some(operation)
        } else {
            Some(format!("{} other", method.as_str()))
        }
    }

    /// Reads the answer to one try, and names how it ended.
    async fn answer(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
        redactor: &Redactor,
    ) -> (&'static str, Result<Reply, Failure>) {
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let arrived = !e.is_connect();
                let (outcome, detail) = if e.is_timeout() {
                    ("timeout", format!("no answer within {}s", self.settings.timeout.as_secs()))
                } else if e.is_connect() {
                    ("unreachable", "cannot connect".to_owned())
                } else {
                    ("broken", format!("connection failed: {}", redactor.redact(&error_chain(&e))))
                };
                return (outcome, Err(Failure::Retryable { error: self.transient(&detail), arrived }));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(quota) = quota(&headers, Instant::now()) {
            let mut slot = self.quota.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(later(*slot, quota, Instant::now()));
        }
        let body = match self.read_capped(response, redactor).await {
            Ok(body) => body,
            Err(failure @ Failure::Final(_)) => return ("too_large", Err(failure)),
            Err(failure) => return ("broken", Err(failure)),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = retry_after(&headers);
            let failure = Failure::Retryable {
                error: Error::Transient {
                    system: self.system,
                    detail: "rate limited (429)".into(),
                    retry_after,
                },
                // A 429 was refused before any work was done.
                arrived: false,
            };
            return ("rate_limited", Err(failure));
        }
        if status.is_server_error() {
            let detail = format!("HTTP {}: {}", status.as_u16(), snippet(&body, redactor));
            return (
                "server_error",
                Err(Failure::Retryable { error: self.transient(&detail), arrived: true }),
            );
        }
        let outcome = if status.is_client_error() { "client_error" } else { "ok" };
        (outcome, Ok(Reply { status, headers, body }))
    }

    async fn read_capped(
        &self,
        mut response: reqwest::Response,
        redactor: &Redactor,
    ) -> Result<Bytes, Failure> {
        let max = self.settings.max_body_bytes;
        if response.content_length().is_some_and(|len| len > max as u64) {
            return Err(Failure::Final(self.protocol(&format!("answer larger than {max} bytes"))));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(Failure::Final(
                            self.protocol(&format!("answer larger than {max} bytes")),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(Bytes::from(body)),
                Err(e) => {
                    let detail =
                        format!("connection dropped mid-answer: {}", redactor.redact(&error_chain(&e)));
                    return Err(Failure::Retryable { error: self.transient(&detail), arrived: true });
                }
            }
        }
    }

    /// Parses a JSON answer; garbage becomes [`Error::Protocol`] with a scrubbed snippet.
    pub fn json<T: DeserializeOwned>(&self, reply: &Reply) -> Result<T, Error> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            self.protocol(&format!(
                "HTTP {} with a body that is not the expected JSON ({e}): {}",
                reply.status.as_u16(),
                snippet(&reply.body, &self.redactor)
            ))
        })
    }

    /// A short, scrubbed excerpt of a body, for error messages.
    pub fn snippet(&self, body: &[u8]) -> String {
        snippet(body, &self.redactor)
    }

    pub fn transient(&self, detail: &str) -> Error {
        Error::Transient { system: self.system, detail: self.redactor.redact(detail), retry_after: None }
    }

    pub fn protocol(&self, detail: &str) -> Error {
        Error::Protocol { system: self.system, detail: self.redactor.redact(detail) }
    }

    pub fn auth(&self, detail: &str) -> Error {
        Error::Auth { system: self.system, detail: self.redactor.redact(detail) }
    }

    pub fn validation(&self, field: Option<&str>, message: &str) -> Error {
        Error::Validation {
            system: self.system,
            field: field.map(str::to_owned),
            message: self.redactor.redact(message),
        }
    }

    pub fn conflict(&self, detail: &str) -> Error {
        Error::Conflict { system: self.system, detail: self.redactor.redact(detail) }
    }

    pub fn not_found(&self, id: &str) -> Error {
        Error::NotFound { system: self.system, id: id.to_owned() }
    }
}

/// `METHOD /path/template`: path segments that look like ids (digits, `@`, `%`, odd
/// characters, or following a collection name) become `{id}`; version segments (`v3`,
/// `ver1.0`) stay.
fn operation(method: &str, path: &str) -> String {
    /// Collections whose next segment names one member.
    const COLLECTIONS: [&str; 7] =
        ["users", "employees", "extension", "agents", "tenants", "groups", "client"];
    let mut out = format!("{method} ");
    let mut previous = "";
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let word = segment.len() <= 40
            && (segment.chars().all(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '_' | ':' | '.'))
                || is_version(segment));
        if word && !COLLECTIONS.contains(&previous) {
            out.push_str(segment);
        } else {
            out.push_str("{id}");
        }
        previous = segment;
    }
    if path.ends_with('/') || out.ends_with(' ') {
        out.push('/');
    }
    out
}

/// `v3`, `v01`, `ver1.0`.
fn is_version(segment: &str) -> bool {
    let digits = segment.strip_prefix("ver").or_else(|| segment.strip_prefix('v')).unwrap_or("");
    !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
}

enum Failure {
    Final(Error),
    Retryable { error: Error, arrived: bool },
}

/// How much of a body an error message quotes.
const SNIPPET_CHARS: usize = 200;

fn snippet(body: &[u8], redactor: &Redactor) -> String {
    // Scrubbed before the cut: a cut through a secret would leave its start unscrubbed.
    let text = redactor.redact(&String::from_utf8_lossy(body));
    let mut cut: String = text.chars().filter(|c| !c.is_control()).take(SNIPPET_CHARS).collect();
    if text.chars().count() > SNIPPET_CHARS {
        cut.push('…');
    }
    cut
}

/// `Retry-After` in seconds (the HTTP-date form is rare on APIs and treated as absent).
/// Without one, a quota answer that says it is spent (`X-RateLimit-Remaining: 0`) gives
/// the wait in `X-RateLimit-Reset`: Telphin's hourly quota answers 429 that way, and
/// retrying it after a short backoff would only burn the attempts.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if headers.contains_key(reqwest::header::RETRY_AFTER) {
        return header(reqwest::header::RETRY_AFTER.as_str()).map(Duration::from_secs);
    }
    if header("x-ratelimit-remaining")? != 0 {
        return None;
    }
    let reset = header("x-ratelimit-reset")?;
    // Some APIs give the reset as a Unix time rather than seconds from now.
    if reset >= UNIX_TIME_FLOOR {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    Some(Duration::from_secs(reset))
}

/// A reset value this large is a Unix time (2001-09-09), not a number of seconds.
const UNIX_TIME_FLOOR: u64 = 1_000_000_000;

/// The quota in `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds from now, or a
/// Unix time), read at `now`; `None` without a `Remaining`.
fn quota(headers: &HeaderMap, now: Instant) -> Option<Quota> {
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    let remaining = header("x-ratelimit-remaining")?;
    let reset_at = header("x-ratelimit-reset").map(|reset| {
        let secs = if reset >= UNIX_TIME_FLOOR {
            let unix_now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            reset.saturating_sub(unix_now)
        } else {
            reset
        };
        now + Duration::from_secs(secs)
    });
    Some(Quota { limit: header("x-ratelimit-limit"), remaining, reset_at })
}

/// The quota to keep when `new` arrives after `old`. Answers to concurrent requests
/// arrive in any order, but within one window the quota only shrinks: a larger count
/// for the same reset is an earlier answer arriving late.
fn later(old: Option<Quota>, new: Quota, now: Instant) -> Quota {
    const SAME_RESET: Duration = Duration::from_secs(2);
    let Some(old) = old else { return new };
    let same_window = match (old.reset_at, new.reset_at) {
        (Some(a), Some(b)) => a > now && a.max(b).duration_since(a.min(b)) <= SAME_RESET,
        _ => false,
    };
    if same_window && new.remaining > old.remaining { Quota { remaining: old.remaining, ..new } } else { new }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_answer_does_not_raise_the_quota_of_its_window() {
        let now = Instant::now();
        let at = |s: u64| Some(now + Duration::from_secs(s));
        let q = |remaining, reset_at| Quota { limit: Some(100), remaining, reset_at };
        assert_eq!(later(Some(q(40, at(600))), q(42, at(601)), now).remaining, 40);
        assert_eq!(later(Some(q(40, at(600))), q(38, at(600)), now).remaining, 38);
        assert_eq!(later(Some(q(0, at(600))), q(100, at(3600)), now).remaining, 100, "a new window");
        assert_eq!(later(None, q(7, None), now).remaining, 7);
    }

    #[test]
    fn operations_keep_no_ids() {
        let cases = [
            ("GET", "/pbxcore/api/v3/employees", "GET /pbxcore/api/v3/employees"),
            ("PATCH", "/pbxcore/api/v3/employees/15", "PATCH /pbxcore/api/v3/employees/{id}"),
            ("POST", "/pbxcore/api/v3/auth:login", "POST /pbxcore/api/v3/auth:login"),
            (
                "PUT",
                "/api/v01/p1/tenants/foo/groups/foogroup/users/foogroup_u1234@example.com/",
                "PUT /api/v01/{id}/tenants/{id}/groups/{id}/users/{id}/",
            ),
            (
                "GET",
                "/api/v01/p1/tenants/foo/groups/bar/users/",
                "GET /api/v01/{id}/tenants/{id}/groups/{id}/users/",
            ),
            (
                "DELETE",
                "/api/ver1.0/client/@me/user/extension/77",
                "DELETE /api/ver1.0/client/{id}/user/extension/{id}",
            ),
            ("GET", "/api/agents/jan.kowalski", "GET /api/agents/{id}"),
            ("GET", "/api/agents", "GET /api/agents"),
            ("POST", "/a/v2", "POST /a/v2"),
            ("GET", "/", "GET /"),
            ("GET", "/x/3f2a9c0e-1b7d-4e8a-9c3b-2d1e0f9a8b7c", "GET /x/{id}"),
        ];
        for (method, path, want) in cases {
            assert_eq!(operation(method, path), want, "{path}");
        }
    }

    #[test]
    fn redaction_scrubs_plain_and_encoded_secrets() {
        let r = Redactor::new(&[Secret::new("p@ss word!"), Secret::new("tok")]);
        assert_eq!(r.redact("password=p%40ss%20word%21&x=1"), "password=***&x=1");
        assert_eq!(r.redact("got p@ss word! back"), "got *** back");
        assert_eq!(r.redact("tok stays: too short to scrub safely"), "tok stays: too short to scrub safely");
    }

    #[test]
    fn longer_secrets_are_scrubbed_before_the_ones_they_contain() {
        let r = Redactor::new(&[Secret::new("abcd"), Secret::new("abcdefgh")]);
        assert_eq!(r.redact("x abcdefgh y"), "x *** y");
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        let body = format!("<html>\n{}</html>", "x".repeat(1000));
        let s = snippet(body.as_bytes(), &Redactor::default());
        assert!(s.chars().count() <= SNIPPET_CHARS + 1);
        assert!(!s.contains('\n'));
    }

    #[test]
    fn a_secret_cut_by_the_snippet_does_not_leave_its_start() {
        let r = Redactor::new(&[Secret::new("secret-value-123")]);
        let body = format!("{}secret-value-123 and more", "x".repeat(SNIPPET_CHARS - 5));
        assert!(!snippet(body.as_bytes(), &r).contains("secr"));
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn the_announced_quota_is_read() {
        let now = Instant::now();
        let mut h = HeaderMap::new();
        assert_eq!(quota(&h, now), None);
        h.insert("x-ratelimit-limit", "1000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "998".parse().unwrap());
        h.insert("x-ratelimit-reset", "1800".parse().unwrap());
        let q = quota(&h, now).unwrap();
        assert_eq!((q.limit, q.remaining), (Some(1000), 998));
        assert_eq!(q.reset_at, Some(now + Duration::from_secs(1800)));
    }

    #[test]
    fn a_spent_quota_waits_for_its_reset() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", "1000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", "1800".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(1800)));
        h.insert("x-ratelimit-remaining", "3".parse().unwrap());
        assert_eq!(retry_after(&h), None, "a quota not spent says nothing about this 429");
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)), "Retry-After wins");
    }
}
