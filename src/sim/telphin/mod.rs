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
//! Where the evidence allows more than one answer, the simulator serves each reading as a
//! dialect ([`Dialect`]; `PUT /_sim/dialect`, `switchboard sim --dialect telphin.K=V`):
//! `per_page` honoured, ignored (pages of 50), capped at 20 or refused (400); the
//! extension `name` filter exact (`prefix*NNN` only) or relative (also `NNN`); lists as a
//! bare array or `{"total_count", "result"}`; the undocumented statuses `already_exists`
//! and `extension_not_found` present or left out (a bare `{"message"}`); an unset
//! `extra_params` as `null`, the text `"null"`, or absent; gzip off, when asked, or
//! required; the quota's size and window. `docs/compatibility.md` (section Telphin) gives
//! the source behind each reading; the defaults are the most literal reading of the docs.
//!
//! Choices where the sources are silent (constants in [`TelphinConfig::default`] and the
//! consts below):
//! - Token lifetime 3600 s; no refresh token (client credentials). Opaque 32-char tokens.
//! - Hourly quota 1000 requests per client (the docs' example figure), fixed window that
//!   starts with the first counted request; only authenticated `/api` requests count; a
//!   429 does not count. `/oauth/token` answers carry the headers but do not count.
//! - Pagination on both lists: `page` (default 1) and `per_page` (default 50, max 500),
//!   sorted by `id`. Array filters: repeated `key=v&key=w` or `key[]=v`; a value matches
//!   exactly; different keys AND, values of one key OR. Unknown query parameters are 400.
//! - Statuses (with `error_statuses`): validation 400 `invalid_parameter`; duplicate login
//!   or extension name 400 `already_exists`; unknown/foreign `extension_id` 400
//!   `extension_not_found`; deleting an extension that still has users 400
//!   `extension_has_users` (a client must delete users first). Always: unknown record 404
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

mod auth;
mod dialect;
mod extensions;
mod query;
mod users;

use auth::*;
pub use dialect::*;
use extensions::*;
use query::*;
use users::*;

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

type Sim = State<Arc<TelphinSim>>;

pub struct TelphinSim {
    cfg: TelphinConfig,
    inner: Mutex<Inner>,
    dialect: Mutex<Dialect>,
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

impl TelphinSim {
    pub fn new(cfg: TelphinConfig) -> Arc<Self> {
        let rng = StdRng::seed_from_u64(cfg.seed);
        // The config's quota is where the dialect starts; `/_sim/dialect` changes it.
        let dialect = Dialect {
            quota: cfg.hourly_quota,
            quota_window_secs: cfg.quota_window.as_secs().max(1),
            ..Dialect::default()
        };
        Arc::new(TelphinSim {
            dialect: Mutex::new(dialect),
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

    /// The dialect served now.
    pub fn dialect_now(&self) -> Dialect {
        lock(&self.dialect).clone()
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

    /// Removes an extension behind the client's back (tests of a number that vanished
    /// after a listing); its users go with it.
    pub fn remove_extension(&self, id: u64) -> Result<(), SimError> {
        let mut inner = lock(&self.inner);
        inner.extensions.remove(&id).ok_or_else(|| SimError::NotFound(id.to_string()))?;
        inner.users.retain(|_, u| u.fields.get("extension_id") != Some(&json!(id)));
        inner.names.drop_index();
        inner.logins.drop_index();
        Ok(())
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

    fn dialect(&self) -> Value {
        serde_json::to_value(self.dialect_now()).unwrap_or(Value::Null)
    }

    fn set_dialect(&self, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut dialect = lock(&self.dialect);
        let next: Dialect = super::patch_dialect(&*dialect, patch)?;
        if next.quota_window_secs == 0 {
            return Err(SimError::Invalid("dialect: quota_window_secs must be at least 1".into()));
        }
        *dialect = next;
        Ok(())
    }

    fn expire_tokens(&self) {
        lock(&self.inner).tokens.clear();
    }
}
