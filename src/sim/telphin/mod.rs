//! Telphin (Ringme platform "APILink") simulator: OAuth2 client-credentials tokens, the
//! client's internal numbers (`/extension/`) and the internal-number-level users
//! (`/user/extension/`), under the documented hourly request quota.
//!
//! What it enforces (from the seed document 003 and `pbx-apis/apio-telphin-ringostat.md` §2):
//! - `POST /oauth/token`, `application/x-www-form-urlencoded`, `grant_type=client_credentials`
//!   with the trusted application's `client_id`/`client_secret` → `{"access_token",
//!   "token_type": "Bearer", "expires_in"}`; `/oauth` is limited to 20 requests per second.
//! - Every `/api/ver1.0/...` call needs `Authorization: Bearer <token>`; a missing, unknown
//!   or expired token is 401.
//! - Hourly request quota per client: every answer carries `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds to reset); past the quota the
//!   answer is 429 with status `rate_limit_exceeded` until the window ends.
//! - `/api/ver1.0/client/{client_id|@me}/...`: `@me` and the client's own id address the
//!   client; another id is 404 `client_not_found`.
//! - Extensions: `name` is `clientprefix*NNN` or `NNN` (prefix added), NNN exactly the
//!   client's `extension_len` digits, unique in the client, not renamable; `type`
//!   `phone|queue|ivr|fax` (default `phone`), `status` `active|blocked` (default `blocked`).
//! - Users (`/user/extension/`): required `name`, `extension_id`, `login`, `password`,
//!   `email`; `extension_id` must be an extension of this client; `login` unique;
//!   `status` `active|blocked`, `access` `full|read_only`; `comment` and `extra_params`
//!   stored verbatim; the password is never returned; PUT takes the documented fields only
//!   (no `login`); list filters are the documented ones, each an array.
//! - Success codes GET 200, POST 201, PUT 200, DELETE 204 (empty body); errors are JSON
//!   `{"message": ..., "status": ...}` (`status` where the docs name one).
//!
//! Choices where the sources are silent (constants in [`TelphinConfig::default`] and the
//! consts below):
//! - Token lifetime 3600 s; no refresh token (client credentials). Opaque 32-char tokens.
//! - Hourly quota 1000 requests per client (the docs' example figure), fixed window that
//!   starts with the first counted request; only authenticated `/api` requests count; a
//!   429 does not count. `/oauth/token` answers carry the headers but do not count.
//! - Pagination on both lists: `page` (default 1) and `per_page` (default 50, max 500);
//!   the answer is a plain JSON array (as the SDKs read it), sorted by `id`; a client must
//!   page until a short page. Array filters: repeated `key=v&key=w` or `key[]=v`; a value
//!   matches exactly; different keys AND, values of one key OR. Unknown query parameters
//!   are 400.
//! - Status codes/strings: validation 400 `invalid_parameter`; duplicate login or
//!   extension name 400 `already_exists`; unknown/foreign `extension_id` 400
//!   `extension_not_found`; deleting an extension that still has users 400
//!   `extension_has_users` (a client must delete users first); unknown record 404
//!   `{"message": "Not found"}`; 401 `{"message": ...}` with `WWW-Authenticate: Bearer`;
//!   OAuth errors in RFC 6749 shape (`{"error": "invalid_client"}` etc.).
//! - Unknown body fields are 400; JSON bodies need `Content-Type: application/json`.
//! - User defaults: `status` `active`, `access` `full`, `timezone` `Europe/Moscow`;
//!   password at least 6 and at most 128 characters; login 3..=64 of `[A-Za-z0-9._@+-]`,
//!   unique case-insensitively; `comment`/`extra_params` at most 4096 characters;
//!   `extension_id` must be a JSON integer. `email_notify`/`email_for_notify` are
//!   validated and not stored. A user's extension may be of any type.
//! - Client: id 10001, prefix `0001`, extension length 3, domain `sip.sim.test`.
//!   Extension ids count from 1001, user ids from 50001 (disjoint, so a client that
//!   mixes them up fails).
//! - `Accept-Encoding: gzip` (which the docs ask clients to send) is not required.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value, json};

use super::{OpName, SimError, Simulator, lock};

const API: &str = "/api/ver1.0";
const FIRST_EXTENSION_ID: u64 = 1001;
const FIRST_USER_ID: u64 = 50001;
const TOKEN_LEN: usize = 32;
const NAME_MAX: usize = 255;
const PASSWORD_MAX: usize = 128;
const LOGIN_MIN: usize = 3;
const LOGIN_MAX: usize = 64;
const STATUSES: &[&str] = &["active", "blocked"];
const ACCESSES: &[&str] = &["full", "read_only"];
const EXTENSION_TYPES: &[&str] = &["phone", "queue", "ivr", "fax"];

const USER_CREATE_FIELDS: &[&str] = &[
    "comment",
    "status",
    "name",
    "access",
    "extension_id",
    "extra_params",
    "timezone",
    "login",
    "password",
    "email",
    "email_notify",
    "email_for_notify",
];
const USER_UPDATE_FIELDS: &[&str] =
    &["comment", "status", "name", "access", "extension_id", "extra_params", "timezone", "password", "email"];
const USER_FILTERS: &[&str] =
    &["comment", "status", "name", "id", "access", "extension_id", "timezone", "login", "email"];
const EXTENSION_CREATE_FIELDS: &[&str] =
    &["name", "type", "status", "label", "caller_id_name", "extra_params", "public_caller_id_number"];
const EXTENSION_FILTERS: &[&str] = &["id", "name", "type", "status", "label"];
const INTEGER_FIELDS: &[&str] = &["id", "extension_id"];

#[derive(Clone, Debug)]
pub struct TelphinConfig {
    /// The trusted application's App ID and secret.
    pub client_id: String,
    pub client_secret: String,
    /// The numeric id of the client (company account) the application belongs to.
    pub account_id: u64,
    pub client_prefix: String,
    pub domain: String,
    /// Digits of an extension number (2, 3 or 4 on the real platform).
    pub extension_len: usize,
    pub token_lifetime: Duration,
    /// Requests per `quota_window` per client.
    pub hourly_quota: u64,
    pub quota_window: Duration,
    /// `/oauth` requests per second.
    pub oauth_per_second: u64,
    pub default_per_page: usize,
    pub max_per_page: usize,
    pub min_password_len: usize,
    pub max_text_len: usize,
    pub default_timezone: String,
    pub seed: u64,
}

impl Default for TelphinConfig {
    fn default() -> Self {
        TelphinConfig {
            client_id: "sim-telphin-app".into(),
            client_secret: "sim-telphin-secret-0123456789".into(),
            account_id: 10001,
            client_prefix: "0001".into(),
            domain: "sip.sim.test".into(),
            extension_len: 3,
            token_lifetime: Duration::from_secs(3600),
            hourly_quota: 1000,
            quota_window: Duration::from_secs(3600),
            oauth_per_second: 20,
            default_per_page: 50,
            max_per_page: 500,
            min_password_len: 6,
            max_text_len: 4096,
            default_timezone: "Europe/Moscow".into(),
            seed: 0x7e1f_0003,
        }
    }
}

#[derive(Clone, Debug)]
struct ExtUser {
    password: String,
    /// The user in Telphin's field names, `id` included, password excluded.
    fields: Map<String, Value>,
}

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    used: u64,
}

impl Window {
    /// Restarts the window when it has run out; returns the time left in it.
    fn roll(&mut self, now: Instant, length: Duration) -> Duration {
        match self.start {
            Some(s) if now < s + length => s + length - now,
            _ => {
                self.start = None;
                self.used = 0;
                length
            }
        }
    }
}

struct Inner {
    /// Extension id -> extension (the client's own and, for tests, other clients').
    extensions: BTreeMap<u64, Map<String, Value>>,
    users: BTreeMap<u64, ExtUser>,
    /// (client id, full name) -> extension id, for the uniqueness check of a create.
    names: Lookup<(u64, String)>,
    /// Lower-cased login -> user ids (more than one only if a test tampered).
    logins: Lookup<String>,
    tokens: HashMap<String, Instant>,
    next_extension: u64,
    next_user: u64,
    quota: Window,
    oauth: Window,
    rng: StdRng,
}

/// An index of a table, kept up to date by creates (the hot path: each would otherwise
/// scan every row) and dropped by any other change, to be rebuilt from the table when next
/// asked; so no edit path has to keep it right.
struct Lookup<K>(RefCell<Option<HashMap<K, Vec<u64>>>>);

impl<K> Default for Lookup<K> {
    fn default() -> Self {
        Lookup(RefCell::new(None))
    }
}

impl<K: std::hash::Hash + Eq> Lookup<K> {
    /// The ids under `key`, building the index with `rows` first if it was dropped.
    fn ids(&self, key: &K, rows: impl FnOnce() -> Vec<(K, u64)>) -> Vec<u64> {
        let mut index = self.0.borrow_mut();
        let index = index.get_or_insert_with(|| {
            let mut map: HashMap<K, Vec<u64>> = HashMap::new();
            for (k, id) in rows() {
                map.entry(k).or_default().push(id);
            }
            map
        });
        index.get(key).cloned().unwrap_or_default()
    }

    fn added(&self, key: K, id: u64) {
        if let Some(index) = self.0.borrow_mut().as_mut() {
            index.entry(key).or_default().push(id);
        }
    }

    fn drop_index(&self) {
        self.0.borrow_mut().take();
    }
}

pub struct TelphinSim {
    cfg: TelphinConfig,
    inner: Mutex<Inner>,
}

struct ApiErr(StatusCode, Option<&'static str>, String);

impl ApiErr {
    fn invalid(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::BAD_REQUEST, Some("invalid_parameter"), msg.into())
    }
    fn not_found() -> Self {
        ApiErr(StatusCode::NOT_FOUND, None, "Not found".into())
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.2 });
        if let Some(s) = self.1 {
            body["status"] = json!(s);
        }
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<ApiErr> for SimError {
    fn from(e: ApiErr) -> Self {
        if e.0 == StatusCode::NOT_FOUND { SimError::NotFound(e.2) } else { SimError::Invalid(e.2) }
    }
}

fn named(op: &'static str, r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.extensions_mut().insert(OpName(op));
    r
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), the format of `create_date`.
fn format_datetime(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), as in Howard Hinnant's date algorithms.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(want))
}

fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiErr> {
    if !content_type_is(headers, "application/json") {
        return Err(ApiErr::invalid("Expected a JSON body (Content-Type: application/json)"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiErr::invalid("The request body must be a JSON object")),
        Err(e) => Err(ApiErr::invalid(format!("Invalid JSON body: {e}"))),
    }
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
}

/// The list query: array filters plus `page`/`per_page`.
struct ListQuery {
    filters: BTreeMap<String, Vec<String>>,
    page: usize,
    per_page: usize,
}

impl ListQuery {
    fn parse(raw: Option<&str>, allowed: &[&str], cfg: &TelphinConfig) -> Result<Self, ApiErr> {
        let mut q = ListQuery { filters: BTreeMap::new(), page: 1, per_page: cfg.default_per_page };
        for (k, v) in super::form_pairs(raw.unwrap_or("").as_bytes()) {
            let key = k.strip_suffix("[]").unwrap_or(&k);
            let positive = |v: &str| v.trim().parse::<usize>().ok().filter(|n| *n >= 1);
            match key {
                "page" => {
                    q.page =
                        positive(&v).ok_or_else(|| ApiErr::invalid("page must be a positive integer"))?;
                }
                "per_page" => {
                    q.per_page = positive(&v).filter(|n| *n <= cfg.max_per_page).ok_or_else(|| {
                        ApiErr::invalid(format!("per_page must be an integer from 1 to {}", cfg.max_per_page))
                    })?;
                }
                k if allowed.contains(&k) => {
                    if INTEGER_FIELDS.contains(&k) && v.trim().parse::<u64>().is_err() {
                        return Err(ApiErr::invalid(format!("{k} must be an array of integers")));
                    }
                    q.filters.entry(k.to_string()).or_default().push(v);
                }
                k => return Err(ApiErr::invalid(format!("Unknown parameter: {k}"))),
            }
        }
        Ok(q)
    }

    fn matches(&self, record: &Map<String, Value>, alt: impl Fn(&str, &str) -> bool) -> bool {
        self.filters.iter().all(|(k, wanted)| {
            let have = match record.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return false,
            };
            wanted.iter().any(|w| {
                *w == have || (INTEGER_FIELDS.contains(&k.as_str()) && w.trim() == have) || alt(k, w)
            })
        })
    }

    fn page<T>(&self, items: impl Iterator<Item = T>) -> Vec<T> {
        items.skip((self.page - 1).saturating_mul(self.per_page)).take(self.per_page).collect()
    }
}

impl TelphinSim {
    pub fn new(cfg: TelphinConfig) -> Arc<Self> {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Arc::new(TelphinSim {
            cfg,
            inner: Mutex::new(Inner {
                extensions: BTreeMap::new(),
                users: BTreeMap::new(),
                names: Lookup::default(),
                logins: Lookup::default(),
                tokens: HashMap::new(),
                next_extension: FIRST_EXTENSION_ID,
                next_user: FIRST_USER_ID,
                quota: Window::default(),
                oauth: Window::default(),
                rng,
            }),
        })
    }

    pub fn config(&self) -> &TelphinConfig {
        &self.cfg
    }

    /// Every extension (all clients), as the API shows them, sorted by id.
    pub fn extensions(&self) -> Value {
        let inner = lock(&self.inner);
        Value::Array(inner.extensions.values().cloned().map(Value::Object).collect())
    }

    /// Creates an extension for `client_id` (default: the simulated client) with the API's
    /// rules; tests use another client id to check that foreign extensions are refused.
    pub fn seed_extension(&self, client_id: Option<u64>, ext: &Value) -> Result<u64, SimError> {
        let Value::Object(m) = ext else {
            return Err(SimError::Invalid("extension must be a JSON object".into()));
        };
        let mut inner = lock(&self.inner);
        let id = self.create_extension(&mut inner, client_id.unwrap_or(self.cfg.account_id), m)?;
        Ok(id)
    }

    fn resolve_client(&self, cid: &str) -> Result<u64, ApiErr> {
        if cid == "@me" || cid == self.cfg.account_id.to_string() {
            Ok(self.cfg.account_id)
        } else {
            Err(ApiErr(StatusCode::NOT_FOUND, Some("client_not_found"), format!("Client {cid} not found")))
        }
    }

    fn full_extension_name(&self, name: &str) -> Result<String, ApiErr> {
        let number = match name.split_once('*') {
            Some((prefix, n)) if prefix == self.cfg.client_prefix => n,
            Some(_) => {
                return Err(ApiErr::invalid(format!(
                    "Extension name {name} does not carry the client prefix {}",
                    self.cfg.client_prefix
                )));
            }
            None => name,
        };
        if number.len() != self.cfg.extension_len || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(ApiErr::invalid(format!(
                "Extension number must be {} digits",
                self.cfg.extension_len
            )));
        }
        Ok(format!("{}*{number}", self.cfg.client_prefix))
    }

    fn check_text(&self, k: &str, v: &Value) -> Result<(), ApiErr> {
        match v {
            Value::Null => Ok(()),
            Value::String(s) if s.chars().count() <= self.cfg.max_text_len => Ok(()),
            Value::String(_) => {
                Err(ApiErr::invalid(format!("{k} must be at most {} characters", self.cfg.max_text_len)))
            }
            _ => Err(ApiErr::invalid(format!("{k} must be a string"))),
        }
    }

    fn check_enum(k: &str, v: &Value, allowed: &[&str]) -> Result<(), ApiErr> {
        match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(()),
            _ => Err(ApiErr::invalid(format!("{k} must be one of: {}", allowed.join(", ")))),
        }
    }

    fn create_extension(
        &self,
        inner: &mut Inner,
        client_id: u64,
        body: &Map<String, Value>,
    ) -> Result<u64, ApiErr> {
        if let Some(k) = body.keys().find(|k| !EXTENSION_CREATE_FIELDS.contains(&k.as_str())) {
            return Err(ApiErr::invalid(format!("Unknown field: {k}")));
        }
        let name = match body.get("name") {
            Some(Value::String(n)) => self.full_extension_name(n)?,
            _ => return Err(ApiErr::invalid("name is required")),
        };
        let taken =
            !inner.names.ids(&(client_id, name.clone()), || extension_names(&inner.extensions)).is_empty();
        if taken {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                Some("already_exists"),
                format!("Extension {name} already exists"),
            ));
        }
        let kind = body.get("type").cloned().unwrap_or(json!("phone"));
        Self::check_enum("type", &kind, EXTENSION_TYPES)?;
        let status = body.get("status").cloned().unwrap_or(json!("blocked"));
        Self::check_enum("status", &status, STATUSES)?;
        for k in ["label", "caller_id_name", "extra_params", "public_caller_id_number"] {
            if let Some(v) = body.get(k) {
                self.check_text(k, v)?;
            }
        }
        let id = inner.next_extension;
        inner.next_extension += 1;
        let field = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
        let ext = json!({
            "id": id,
            "client_id": client_id,
            "name": name,
            "type": kind,
            "status": status,
            "label": field("label"),
            "domain": self.cfg.domain,
            "create_date": format_datetime(unix_now()),
            "caller_id_name": field("caller_id_name"),
            "extra_params": field("extra_params"),
            "public_caller_id_number": field("public_caller_id_number"),
            "from_public_caller_id_number": false,
            "rfc_public_caller_id_number": Value::Null,
            "ani_rfc3325": false,
            "did_as_transfer_caller_id": Value::Null,
            "extension_group_id": Value::Null,
            "dial_rule_id": Value::Null,
            "dial_rule_limit": Value::Null,
            "message_did": Value::Null,
        });
        if let Value::Object(m) = ext {
            inner.extensions.insert(id, m);
            inner.names.added((client_id, name), id);
        }
        Ok(id)
    }

    fn update_extension(
        &self,
        inner: &mut Inner,
        client_id: u64,
        id: u64,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiErr> {
        let mut ext = match inner.extensions.get(&id) {
            Some(e) if e.get("client_id") == Some(&json!(client_id)) => e.clone(),
            _ => return Err(ApiErr::not_found()),
        };
        for (k, v) in body {
            match k.as_str() {
                "name" => {
                    let same =
                        v.as_str().and_then(|n| self.full_extension_name(n).ok()).map(Value::from).as_ref()
                            == ext.get("name");
                    if !same {
                        return Err(ApiErr::invalid(
                            "An extension cannot be renamed (delete and recreate it)",
                        ));
                    }
                }
                "type" => {
                    if Some(v) != ext.get("type") {
                        return Err(ApiErr::invalid("The type of an extension cannot be changed"));
                    }
                }
                "status" => {
                    Self::check_enum(k, v, STATUSES)?;
                    ext.insert(k.clone(), v.clone());
                }
                "label" | "caller_id_name" | "extra_params" | "public_caller_id_number" => {
                    self.check_text(k, v)?;
                    ext.insert(k.clone(), v.clone());
                }
                _ => return Err(ApiErr::invalid(format!("Unknown field: {k}"))),
            }
        }
        inner.extensions.insert(id, ext.clone());
        inner.names.drop_index();
        Ok(ext)
    }

    /// Validates the user fields present in `body` (create or update).
    fn check_user_fields(
        &self,
        inner: &Inner,
        client_id: u64,
        body: &Map<String, Value>,
        allowed: &[&str],
        self_id: Option<u64>,
    ) -> Result<(), ApiErr> {
        for (k, v) in body {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiErr::invalid(format!("Unknown field: {k}")));
            }
            match k.as_str() {
                "name" => match v.as_str() {
                    Some(s) if !s.trim().is_empty() && s.chars().count() <= NAME_MAX => {}
                    _ => {
                        return Err(ApiErr::invalid(format!(
                            "name must be a non-empty string of at most {NAME_MAX} characters"
                        )));
                    }
                },
                "extension_id" => {
                    let id = v.as_u64().ok_or_else(|| ApiErr::invalid("extension_id must be an integer"))?;
                    let ours = inner
                        .extensions
                        .get(&id)
                        .is_some_and(|e| e.get("client_id") == Some(&json!(client_id)));
                    if !ours {
                        return Err(ApiErr(
                            StatusCode::BAD_REQUEST,
                            Some("extension_not_found"),
                            format!("Extension {id} not found"),
                        ));
                    }
                }
                "login" => {
                    let s = v.as_str().ok_or_else(|| ApiErr::invalid("login must be a string"))?;
                    let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
                    if !ok_chars || !(LOGIN_MIN..=LOGIN_MAX).contains(&s.len()) {
                        return Err(ApiErr::invalid(format!(
                            "login must be {LOGIN_MIN} to {LOGIN_MAX} characters of A-Z a-z 0-9 . _ @ + -"
                        )));
                    }
                    let lower = s.to_lowercase();
                    let holders = inner.logins.ids(&lower, || user_logins(&inner.users));
                    let taken = holders.iter().any(|id| Some(*id) != self_id);
                    if taken {
                        return Err(ApiErr(
                            StatusCode::BAD_REQUEST,
                            Some("already_exists"),
                            format!("Login {s} already exists"),
                        ));
                    }
                }
                "password" => {
                    let n = v
                        .as_str()
                        .ok_or_else(|| ApiErr::invalid("password must be a string"))?
                        .chars()
                        .count();
                    if n < self.cfg.min_password_len || n > PASSWORD_MAX {
                        return Err(ApiErr::invalid(format!(
                            "password must be {} to {PASSWORD_MAX} characters",
                            self.cfg.min_password_len
                        )));
                    }
                }
                "email" | "email_for_notify" => match v {
                    Value::String(s) if valid_email(s) => {}
                    Value::Null if k == "email_for_notify" => {}
                    _ => {
                        return Err(ApiErr::invalid(format!("{k} is not a valid e-mail address")));
                    }
                },
                "status" => Self::check_enum(k, v, STATUSES)?,
                "access" => Self::check_enum(k, v, ACCESSES)?,
                "timezone" => match v.as_str() {
                    Some(s) if !s.trim().is_empty() => {}
                    _ => return Err(ApiErr::invalid("timezone must be a non-empty string")),
                },
                "email_notify" => {
                    if !v.is_boolean() {
                        return Err(ApiErr::invalid("email_notify must be a boolean"));
                    }
                }
                _ => self.check_text(k, v)?,
            }
        }
        Ok(())
    }

    fn create_user(
        &self,
        inner: &mut Inner,
        client_id: u64,
        body: &Map<String, Value>,
    ) -> Result<(u64, Map<String, Value>), ApiErr> {
        for k in ["name", "extension_id", "login", "password", "email"] {
            if body.get(k).is_none_or(Value::is_null) {
                return Err(ApiErr::invalid(format!("{k} is required")));
            }
        }
        self.check_user_fields(inner, client_id, body, USER_CREATE_FIELDS, None)?;
        let id = inner.next_user;
        inner.next_user += 1;
        let field = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
        let mut fields = Map::new();
        fields.insert("id".into(), json!(id));
        for k in ["name", "login", "email", "extension_id"] {
            fields.insert(k.into(), field(k, Value::Null));
        }
        fields.insert("status".into(), field("status", json!("active")));
        fields.insert("access".into(), field("access", json!("full")));
        fields.insert("timezone".into(), field("timezone", json!(self.cfg.default_timezone)));
        fields.insert("comment".into(), field("comment", Value::Null));
        fields.insert("extra_params".into(), field("extra_params", Value::Null));
        let password = body.get("password").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(login) = fields.get("login").and_then(Value::as_str) {
            inner.logins.added(login.to_lowercase(), id);
        }
        inner.users.insert(id, ExtUser { password, fields: fields.clone() });
        Ok((id, fields))
    }

    fn update_user(
        &self,
        inner: &mut Inner,
        client_id: u64,
        id: u64,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiErr> {
        if !inner.users.contains_key(&id) {
            return Err(ApiErr::not_found());
        }
        if let Some(k) = ["name", "extension_id", "password", "email", "status", "access", "timezone"]
            .into_iter()
            .find(|k| body.get(*k).is_some_and(Value::is_null))
        {
            return Err(ApiErr::invalid(format!("{k} cannot be null")));
        }
        self.check_user_fields(inner, client_id, body, USER_UPDATE_FIELDS, Some(id))?;
        inner.logins.drop_index();
        let user = inner.users.get_mut(&id).ok_or_else(ApiErr::not_found)?;
        for (k, v) in body {
            if k == "password" {
                user.password = v.as_str().unwrap_or_default().to_string();
            } else {
                user.fields.insert(k.clone(), v.clone());
            }
        }
        Ok(user.fields.clone())
    }

    fn issue_token(&self, inner: &mut Inner) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let now = Instant::now();
        inner.tokens.retain(|_, exp| *exp > now);
        let token: String =
            (0..TOKEN_LEN).map(|_| char::from(ALPHABET[inner.rng.random_range(0..ALPHABET.len())])).collect();
        inner.tokens.insert(token.clone(), now + self.cfg.token_lifetime);
        token
    }

    fn rate_headers(&self, inner: &mut Inner, headers: &mut HeaderMap) {
        let left = inner.quota.roll(Instant::now(), self.cfg.quota_window);
        let remaining = self.cfg.hourly_quota.saturating_sub(inner.quota.used);
        let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.cfg.hourly_quota));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    }
}

// ---- middleware and handlers ----------------------------------------------------------

type Sim = State<Arc<TelphinSim>>;

/// Authentication and the hourly quota for `/api`, rate headers on every answer.
async fn guard(State(sim): Sim, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(API) {
        let mut resp = next.run(req).await;
        sim.rate_headers(&mut lock(&sim.inner), resp.headers_mut());
        return resp;
    }
    let verdict = {
        let mut inner = lock(&sim.inner);
        let now = Instant::now();
        let valid = bearer(req.headers()).and_then(|t| inner.tokens.get(t)).is_some_and(|exp| *exp > now);
        if !valid {
            Err((StatusCode::UNAUTHORIZED, None, "Token is missing, expired or invalid"))
        } else {
            inner.quota.roll(now, sim.cfg.quota_window);
            if inner.quota.used >= sim.cfg.hourly_quota {
                Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    Some("rate_limit_exceeded"),
                    "Hourly request limit exceeded, retry in the next hour",
                ))
            } else {
                inner.quota.start.get_or_insert(now);
                inner.quota.used += 1;
                Ok(())
            }
        }
    };
    let mut resp = match verdict {
        Ok(()) => next.run(req).await,
        Err((status, code, msg)) => {
            let mut r = ApiErr(status, code, msg.into()).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            r
        }
    };
    sim.rate_headers(&mut lock(&sim.inner), resp.headers_mut());
    resp
}

async fn token(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = lock(&sim.inner);
    let now = Instant::now();
    inner.oauth.roll(now, Duration::from_secs(1));
    if inner.oauth.used >= sim.cfg.oauth_per_second {
        return named(
            "token",
            ApiErr(
                StatusCode::TOO_MANY_REQUESTS,
                Some("rate_limit_exceeded"),
                "Too many requests to /oauth".into(),
            ),
        );
    }
    inner.oauth.start.get_or_insert(now);
    inner.oauth.used += 1;
    if !content_type_is(&headers, "application/x-www-form-urlencoded") {
        return named(
            "token",
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Expected application/x-www-form-urlencoded",
            ),
        );
    }
    let form: BTreeMap<String, String> = super::form_pairs(&body).into_iter().collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        None => {
            return named(
                "token",
                oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
            );
        }
        Some(_) => {
            return named(
                "token",
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "This application may only use client_credentials",
                ),
            );
        }
    }
    let id_ok = form.get("client_id") == Some(&sim.cfg.client_id);
    let secret_ok = form.get("client_secret") == Some(&sim.cfg.client_secret);
    if !id_ok || !secret_ok {
        return named(
            "token",
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unknown client or wrong secret"),
        );
    }
    let token = sim.issue_token(&mut inner);
    named(
        "token",
        axum::Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": sim.cfg.token_lifetime.as_secs(),
        })),
    )
}

async fn get_client(State(sim): Sim, Path(cid): Path<String>) -> Response {
    match sim.resolve_client(&cid) {
        Ok(id) => named(
            "getClient",
            axum::Json(json!({
                "id": id,
                "prefix": sim.cfg.client_prefix,
                "extension_len": sim.cfg.extension_len,
                "domain": sim.cfg.domain,
                "status": "active",
            })),
        ),
        Err(e) => named("getClient", e),
    }
}

fn extension_names(extensions: &BTreeMap<u64, Map<String, Value>>) -> Vec<((u64, String), u64)> {
    extensions
        .iter()
        .filter_map(|(id, e)| {
            let client = e.get("client_id")?.as_u64()?;
            Some(((client, e.get("name")?.as_str()?.to_owned()), *id))
        })
        .collect()
}

fn user_logins(users: &BTreeMap<u64, ExtUser>) -> Vec<(String, u64)> {
    users.iter().filter_map(|(id, u)| Some((u.fields.get("login")?.as_str()?.to_lowercase(), *id))).collect()
}

async fn list_extensions(State(sim): Sim, Path(cid): Path<String>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let q = ListQuery::parse(q.as_deref(), EXTENSION_FILTERS, &sim.cfg)?;
        let inner = lock(&sim.inner);
        // A name filter may be given with or without the client prefix.
        let same_name = |e: &Map<String, Value>, k: &str, w: &str| {
            k == "name" && sim.full_extension_name(w).ok().map(Value::from).as_ref() == e.get("name")
        };
        let items = inner
            .extensions
            .values()
            .filter(|e| e.get("client_id") == Some(&json!(client)))
            .filter(|e| q.matches(e, |k, w| same_name(e, k, w)))
            .cloned()
            .map(Value::Object);
        Ok::<_, ApiErr>(Value::Array(q.page(items)))
    })();
    match res {
        Ok(v) => named("listExtensions", axum::Json(v)),
        Err(e) => named("listExtensions", e),
    }
}

async fn create_extension(
    State(sim): Sim,
    Path(cid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        let id = sim.create_extension(&mut inner, client, &m)?;
        Ok::<_, ApiErr>(inner.extensions.get(&id).cloned().unwrap_or_default())
    })();
    match res {
        Ok(e) => named("createExtension", (StatusCode::CREATED, axum::Json(e))),
        Err(e) => named("createExtension", e),
    }
}

fn own_extension(sim: &TelphinSim, cid: &str, eid: &str) -> Result<(u64, u64), ApiErr> {
    let client = sim.resolve_client(cid)?;
    let id = eid.parse::<u64>().map_err(|_| ApiErr::not_found())?;
    let inner = lock(&sim.inner);
    match inner.extensions.get(&id) {
        Some(e) if e.get("client_id") == Some(&json!(client)) => Ok((client, id)),
        _ => Err(ApiErr::not_found()),
    }
}

async fn get_extension(State(sim): Sim, Path((cid, eid)): Path<(String, String)>) -> Response {
    let res = own_extension(&sim, &cid, &eid)
        .map(|(_, id)| lock(&sim.inner).extensions.get(&id).cloned().unwrap_or_default());
    match res {
        Ok(e) => named("getExtension", axum::Json(e)),
        Err(e) => named("getExtension", e),
    }
}

async fn update_extension(
    State(sim): Sim,
    Path((cid, eid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let (client, id) = own_extension(&sim, &cid, &eid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        sim.update_extension(&mut inner, client, id, &m)
    })();
    match res {
        Ok(e) => named("updateExtension", axum::Json(e)),
        Err(e) => named("updateExtension", e),
    }
}

async fn delete_extension(State(sim): Sim, Path((cid, eid)): Path<(String, String)>) -> Response {
    let res = (|| {
        let (_, id) = own_extension(&sim, &cid, &eid)?;
        let mut inner = lock(&sim.inner);
        let in_use = inner.users.values().any(|u| u.fields.get("extension_id") == Some(&json!(id)));
        if in_use {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                Some("extension_has_users"),
                format!("Extension {id} still has users; delete them first"),
            ));
        }
        inner.extensions.remove(&id);
        inner.names.drop_index();
        Ok(())
    })();
    match res {
        Ok(()) => named("deleteExtension", StatusCode::NO_CONTENT),
        Err(e) => named("deleteExtension", e),
    }
}

async fn list_users(State(sim): Sim, Path(cid): Path<String>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let q = ListQuery::parse(q.as_deref(), USER_FILTERS, &sim.cfg)?;
        let inner = lock(&sim.inner);
        let own = |u: &&ExtUser| {
            u.fields
                .get("extension_id")
                .and_then(Value::as_u64)
                .and_then(|e| inner.extensions.get(&e))
                .is_some_and(|e| e.get("client_id") == Some(&json!(client)))
        };
        let items = inner
            .users
            .values()
            .filter(own)
            .filter(|u| q.matches(&u.fields, |_, _| false))
            .map(|u| Value::Object(u.fields.clone()));
        Ok::<_, ApiErr>(Value::Array(q.page(items)))
    })();
    match res {
        Ok(v) => named("listUsers", axum::Json(v)),
        Err(e) => named("listUsers", e),
    }
}

async fn create_user(State(sim): Sim, Path(cid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        sim.create_user(&mut inner, client, &m)
    })();
    match res {
        Ok((_, u)) => named("createUser", (StatusCode::CREATED, axum::Json(u))),
        Err(e) => named("createUser", e),
    }
}

fn own_user(sim: &TelphinSim, cid: &str, uid: &str) -> Result<(u64, u64), ApiErr> {
    let client = sim.resolve_client(cid)?;
    let id = uid.parse::<u64>().map_err(|_| ApiErr::not_found())?;
    let inner = lock(&sim.inner);
    let ours = inner
        .users
        .get(&id)
        .and_then(|u| u.fields.get("extension_id"))
        .and_then(Value::as_u64)
        .and_then(|e| inner.extensions.get(&e))
        .is_some_and(|e| e.get("client_id") == Some(&json!(client)));
    if ours { Ok((client, id)) } else { Err(ApiErr::not_found()) }
}

async fn get_user(State(sim): Sim, Path((cid, uid)): Path<(String, String)>) -> Response {
    let res = own_user(&sim, &cid, &uid)
        .map(|(_, id)| lock(&sim.inner).users.get(&id).map(|u| u.fields.clone()).unwrap_or_default());
    match res {
        Ok(u) => named("getUser", axum::Json(u)),
        Err(e) => named("getUser", e),
    }
}

async fn update_user(
    State(sim): Sim,
    Path((cid, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let (client, id) = own_user(&sim, &cid, &uid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        sim.update_user(&mut inner, client, id, &m)
    })();
    match res {
        Ok(u) => named("updateUser", axum::Json(u)),
        Err(e) => named("updateUser", e),
    }
}

async fn delete_user(State(sim): Sim, Path((cid, uid)): Path<(String, String)>) -> Response {
    let res = own_user(&sim, &cid, &uid).map(|(_, id)| {
        let mut inner = lock(&sim.inner);
        inner.users.remove(&id);
        inner.logins.drop_index();
    });
    match res {
        Ok(()) => named("deleteUser", StatusCode::NO_CONTENT),
        Err(e) => named("deleteUser", e),
    }
}

impl Simulator for TelphinSim {
    fn kind(&self) -> &'static str {
        "telphin"
    }

    fn router(self: Arc<Self>) -> Router {
        let client = format!("{API}/client/{{cid}}");
        Router::new()
            .route("/oauth/token", post(token))
            .route(&client, get(get_client))
            .route(&format!("{client}/"), get(get_client))
            .route(&format!("{client}/extension/"), get(list_extensions).post(create_extension))
            .route(
                &format!("{client}/extension/{{eid}}"),
                get(get_extension).put(update_extension).delete(delete_extension),
            )
            .route(
                &format!("{client}/extension/{{eid}}/"),
                get(get_extension).put(update_extension).delete(delete_extension),
            )
            .route(&format!("{client}/user/extension/"), get(list_users).post(create_user))
            .route(
                &format!("{client}/user/extension/{{uid}}"),
                get(get_user).put(update_user).delete(delete_user),
            )
            .route(
                &format!("{client}/user/extension/{{uid}}/"),
                get(get_user).put(update_user).delete(delete_user),
            )
            .layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self)
    }

    fn dump(&self) -> Value {
        let inner = lock(&self.inner);
        Value::Array(
            inner
                .users
                .values()
                .map(|u| {
                    let mut m = u.fields.clone();
                    m.insert("password".into(), json!(u.password));
                    Value::Object(m)
                })
                .collect(),
        )
    }

    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut inner = lock(&self.inner);
        inner.logins.drop_index();
        let user = id
            .parse::<u64>()
            .ok()
            .and_then(|n| inner.users.get_mut(&n))
            .ok_or_else(|| SimError::NotFound(id.to_string()))?;
        for (k, v) in patch {
            match (k.as_str(), v) {
                ("id", _) => return Err(SimError::Invalid("id cannot be tampered with".into())),
                ("password", Value::String(p)) => user.password = p.clone(),
                ("password", _) => {
                    return Err(SimError::Invalid("password must be a string".into()));
                }
                (k, v) => {
                    user.fields.insert(k.to_string(), v.clone());
                }
            }
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), SimError> {
        let mut inner = lock(&self.inner);
        inner.logins.drop_index();
        id.parse::<u64>()
            .ok()
            .and_then(|n| inner.users.remove(&n))
            .map(|_| ())
            .ok_or_else(|| SimError::NotFound(id.to_string()))
    }

    /// `account`: the create body; instead of `extension_id` it may carry the sim-only
    /// `"extension": "NNN"`, which finds or creates that phone extension of the client.
    fn seed(&self, account: &Value) -> Result<String, SimError> {
        let Value::Object(m) = account else {
            return Err(SimError::Invalid("account must be a JSON object".into()));
        };
        let mut body = m.clone();
        let mut inner = lock(&self.inner);
        if let Some(ext) = body.remove("extension") {
            let name = ext.as_str().ok_or_else(|| SimError::Invalid("extension must be a string".into()))?;
            let full = self.full_extension_name(name)?;
            let client = self.cfg.account_id;
            let existing = inner.extensions.iter().find_map(|(id, e)| {
                (e.get("client_id") == Some(&json!(client)) && e.get("name") == Some(&json!(full)))
                    .then_some(*id)
            });
            let id = match existing {
                Some(id) => id,
                None => {
                    let spec = Map::from_iter([
                        ("name".to_string(), json!(full)),
                        ("status".to_string(), json!("active")),
                    ]);
                    self.create_extension(&mut inner, client, &spec)?
                }
            };
            body.insert("extension_id".into(), json!(id));
        }
        let (id, _) = self.create_user(&mut inner, self.cfg.account_id, &body)?;
        Ok(id.to_string())
    }

    fn credentials(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("clientId".to_string(), self.cfg.client_id.clone()),
            ("clientSecret".to_string(), self.cfg.client_secret.clone()),
        ])
    }

    fn expire_tokens(&self) {
        lock(&self.inner).tokens.clear();
    }
}
