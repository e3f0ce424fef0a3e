//! MikoPBX simulator: the three API generations of MikoPBX's own server code
//! (`github.com/mikopbx/Core`, tags `2023.2.206`, `2024.1.114`, `2026.1.223`) over one
//! relational store, so a client of either generation sees the same employees. Which
//! generation (and language, and answer shapes) it serves is its dialect
//! ([`Dialect`]); every behaviour below, and the source it comes from, is listed per call
//! in `docs/compatibility.md`, section MikoPBX.
//!
//! The store is relational like the real one, because the legacy API's data-loss traps come
//! from how rows are found: `Users` (id), `Extensions` (SIP, EXTERNAL and the system and
//! application numbers share one id sequence, which starts with the system numbers),
//! `Sip` peers (found by `uniqid`), `ExternalPhones` (by `uniqid`) and
//! `ExtensionForwardingRights` (by number). Reads join by number and take the first row.
//!
//! One file per concern: [`store`] and [`writes`] (the tables; the legacy upsert, the v3
//! save), [`legacy`] (`/pbxcore/api/extensions/*`), [`admin`] (the admin cabinet's lists:
//! 2023.2's `extensions/index`, 2024.1's `getNewRecords`), [`session`] (the admin login
//! with 2024.1's throttling, v3's JWTs, who may call what), [`v3`] and [`v3_fields`]
//! (`/pbxcore/api/v3/employees`: the sanitiser, PATCH's merge, the validation of the
//! merged record), [`dialect`] (the settings and the translated messages).
//!
//! Choices where the sources are silent (simulator choices, not MikoPBX's):
//! - `meta.hash` = sha1 of the timestamp, `E-Tag` = sha1 of the body; time is UTC.
//! - Next free number: highest SIP number with at most `extension_length` digits + 1,
//!   starting at `first_internal_number`, skipping taken numbers; past the range, the lowest
//!   free number in it; none left -> "" (save then fails with "Empty number").
//! - `getRecord` of an employee without a mobile answers a fresh `mobile_uniqid`; reads of
//!   missing joined rows give "" / 0. Missing or EMPTY legacy fields take the default.
//! - 2024.1's login throttle counts every `session/start` of an address in a window that
//!   starts at its first attempt (the real one buckets by wall clock: `floor(now/300)`).
//! - JWTs are HS256-shaped but checked by lookup in the issued-token table (so
//!   `expire_tokens` is exact).
//! - The SIP password rule is `PasswordService`'s score ported as written; its dictionary
//!   (rockyou) is stood in for by [`COMMON_PASSWORDS`].
//! - Restricted users (`restricted_users`, the "employee rights" module) get 403 on actions
//!   not in their list; a delete refused by a forwarding reference answers `MSG_RESTRICT`.
//! - Not modelled: parking slots, `getPhoneRepresent(s)`, the v3 bulk methods, avatar
//!   uploads, `debugMode`, the "remember me" cookie.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::{OpName, SimError, Simulator, lock};

mod admin;
mod dialect;
mod legacy;
mod reply;
mod session;
mod store;
mod util;
mod v3;
mod v3_fields;
mod writes;

pub use dialect::{Dialect, Generation, Integers, Language};

use admin::*;
use dialect::text;
use legacy::*;
use reply::*;
use session::*;
use store::*;
use util::*;
use v3::*;
use v3_fields::*;

// Messages the code writes as literals (not translated).
const MSG_EMPTY_NUMBER: &str = "Empty number value in POST/GET data";
const MSG_NOT_AUTHENTICATED: &str = "The user isn't authenticated.";
const MSG_ROUTE_NOT_ALLOWED: &str = "The route is not allowed";
const MSG_NOT_FOUND: &str = "404 (Not Found)";
/// The model's duplicate message: a bare translation key in 2023.2 and 2024.1, which have
/// no text for it (`Extensions::validation`, no entry in `src/Common/Messages/*.php`).
const MSG_DUPLICATE_KEY: &str = "mo_ThisNumberNotUniqueForExtensionsModels";
const MSG_RESTRICT: &str = "The record cannot be deleted, it is a call forwarding target of ";
const MSG_V3_BAD_LOGIN: &str = "Invalid login or password";
const MSG_V3_THROTTLED: &str = "Too many login attempts, try again later";
const MSG_V3_DENIED: &str = "Access denied. You do not have permission to access this resource.";
/// The admin cabinet's `ErrorsController` (not translated), answered with HTTP 200 to XHR.
const MSG_PAGE_NOT_FOUND: &str = "Page not found - 404";
const MSG_SERVER_ERROR: &str = "Server error - 500";
const DEFAULT_AVATAR: &str = "/admin-cabinet/assets/img/unknownPerson.jpg";
const LEGACY_NS: &str = "MikoPBX\\PBXCoreREST\\Lib\\Extensions\\";
const V3_NS: &str = "MikoPBX\\PBXCoreREST\\Lib\\Employees\\";
/// Stand-in for PasswordService's dictionary (the rockyou list) and its common defaults.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "123456",
    "12345678",
    "123456789",
    "qwerty",
    "admin",
    "secret",
    "letmein",
    "welcome",
    "1234567890",
    "password1",
    "qwerty123",
    "1234",
    "12345",
];

/// A user of the "employee rights" module: logs in like the admin, but may only call the
/// listed actions (legacy names such as `getRecord`, v3 names such as `getList`, `create`,
/// admin cabinet ones such as `getNewRecords`, `index`).
#[derive(Clone, Debug)]
pub struct RestrictedUser {
    pub login: String,
    pub password: String,
    pub allowed_actions: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct MikoPbxConfig {
    /// The dialect at start (`/_sim/dialect` changes it later).
    pub dialect: Dialect,
    /// `WebAdminLogin` / `WebAdminPassword`: the legacy session login and the v3 JWT login.
    pub admin_login: String,
    pub admin_password: String,
    pub restricted_users: Vec<RestrictedUser>,
    /// v3 API key with full permissions; "" disables it.
    pub api_key: String,
    /// Requests from loopback skip authentication (the real rule: 127.0.0.1 for the
    /// legacy API and the admin cabinet, 127.0.0.1 and ::1 for v3). Tests turn it off to
    /// exercise the remote path on 127.0.0.1.
    pub trust_loopback: bool,
    /// Legacy admin session idle lifetime (Redis 3600 s on the real one).
    pub session_lifetime: Duration,
    /// Logins per address within `login_attempts_window`: 2024.1 counts every
    /// `session/start`, v3 every failed `auth:login`.
    pub login_attempts: usize,
    pub login_attempts_window: Duration,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    /// `PBXInternalExtensionLength`: only used to pick the next free number.
    pub extension_length: u32,
    pub first_internal_number: u64,
    /// First `Users.id`, and the first `Extensions.id` (taken by the system numbers).
    pub first_user_id: u64,
    pub first_extension_id: u64,
    pub v3_default_limit: usize,
    pub v3_password_policy: bool,
    /// `PBXLanguage`, written into `Users.language`.
    pub language: String,
    pub pid: u32,
    pub seed: u64,
}

impl Default for MikoPbxConfig {
    fn default() -> Self {
        Self {
            dialect: Dialect::default(),
            admin_login: "sim-admin".into(),
            admin_password: "sim-admin-password".into(),
            restricted_users: Vec::new(),
            api_key: "5a1b7c3d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b".into(),
            trust_loopback: true,
            session_lifetime: Duration::from_secs(3600),
            login_attempts: 10,
            login_attempts_window: Duration::from_secs(300),
            access_token_lifetime: Duration::from_secs(900),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 3600),
            extension_length: 3,
            first_internal_number: 201,
            first_user_id: 1,
            first_extension_id: 1,
            v3_default_limit: 50,
            v3_password_policy: true,
            language: "en-en".into(),
            pid: 42448,
            seed: 0x4d1c_0b0c,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The simulator

#[derive(Clone, Debug)]
enum Role {
    Admin,
    Restricted(Vec<String>),
}

impl Role {
    fn allows(&self, action: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Restricted(actions) => actions.iter().any(|a| a == action),
        }
    }
}

struct Session {
    /// `None`: a session PHP started without a login (what a refused or throttled
    /// `session/start` leaves the caller with).
    role: Option<Role>,
    last_used: Instant,
}

struct Token {
    role: Role,
    expires: Instant,
}

struct RefreshToken {
    role: Role,
    login: String,
    expires: Instant,
}

struct Inner {
    store: Store,
    rng: StdRng,
    sessions: HashMap<String, Session>,
    /// 2024.1's `session/start` counter per address: when its window began, and the count.
    legacy_logins: HashMap<IpAddr, (Instant, usize)>,
    v3_failures: HashMap<IpAddr, Vec<Instant>>,
    access: HashMap<String, Token>,
    refresh: HashMap<String, RefreshToken>,
}

/// The MikoPBX simulator (every API generation, one store).
pub struct MikoPbxSim {
    cfg: MikoPbxConfig,
    dialect: Mutex<Dialect>,
    state: Mutex<Inner>,
}

impl MikoPbxSim {
    pub fn new(cfg: MikoPbxConfig) -> Arc<Self> {
        let state = Inner {
            store: Store::new(&cfg),
            rng: StdRng::seed_from_u64(cfg.seed),
            sessions: HashMap::new(),
            legacy_logins: HashMap::new(),
            v3_failures: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
        };
        let dialect = Mutex::new(cfg.dialect.clone());
        Arc::new(Self { cfg, dialect, state: Mutex::new(state) })
    }

    pub fn config(&self) -> &MikoPbxConfig {
        &self.cfg
    }

    /// The dialect in force.
    pub fn current(&self) -> Dialect {
        lock(&self.dialect).clone()
    }

    /// Row counts per table, so tests can see the stray rows a partial save leaves behind
    /// (keys: users, extensions, sip, external_phones, forwarding_rights).
    pub fn row_counts(&self) -> BTreeMap<&'static str, usize> {
        let st = lock(&self.state);
        let s = &st.store;
        BTreeMap::from([
            ("users", s.users.len()),
            ("extensions", s.exts.values().filter(|e| e.kind != ExtKind::Other).count()),
            ("sip", s.sips.len()),
            ("external_phones", s.phones.len()),
            ("forwarding_rights", s.fwds.len()),
        ])
    }

    /// Adds an extension that is no employee (a queue, an IVR menu: `type` other than
    /// SIP, no user), taking the next `Extensions.id`; returns that id.
    pub fn add_application(&self, number: &str, name: &str) -> Result<u64, SimError> {
        let mut st = lock(&self.state);
        st.store.add_other(number, name).map_err(SimError::Invalid)
    }

    /// Deletes an extension of any type by its `Extensions.id` (what deleting a queue in
    /// the admin UI does): leaves a gap in the id sequence.
    pub fn remove_extension(&self, id: u64) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        if !st.store.exts.contains_key(&id) {
            return Err(SimError::NotFound(id.to_string()));
        }
        match st.store.exts.get(&id).and_then(|e| e.userid) {
            Some(uid) => st.store.delete_user(uid),
            None => st.store.delete_ext(id),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Simulator trait

impl Simulator for MikoPbxSim {
    fn kind(&self) -> &'static str {
        "mikopbx"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/pbxcore/api/extensions/{action}",
                get(legacy_get).post(legacy_post).fallback(pbxcore_not_found),
            )
            .route("/admin-cabinet/session/start", post(session_start))
            .route("/admin-cabinet/extensions/getNewRecords", post(get_new_records))
            .route("/admin-cabinet/extensions/index", get(extensions_index))
            .route("/admin-cabinet/extensions", get(extensions_index))
            .route("/pbxcore/api/v3/auth:login", post(v3_login).fallback(v3_method_not_allowed))
            .route("/pbxcore/api/v3/auth:refresh", post(v3_refresh).fallback(v3_method_not_allowed))
            .route("/pbxcore/api/v3/auth:logout", post(v3_logout).fallback(v3_method_not_allowed))
            .route(
                "/pbxcore/api/v3/employees",
                get(v3_list_handler).post(v3_create_handler).fallback(v3_method_not_allowed),
            )
            .route(
                "/pbxcore/api/v3/employees:getDefault",
                get(v3_get_default_handler).fallback(v3_method_not_allowed),
            )
            .route(
                "/pbxcore/api/v3/employees/{id}",
                get(v3_get_handler)
                    .put(v3_put_handler)
                    .patch(v3_patch_handler)
                    .delete(v3_delete_handler)
                    .fallback(v3_method_not_allowed),
            )
            .route(
                "/pbxcore/api/v3/extensions:available",
                post(v3_available_handler).fallback(v3_method_not_allowed),
            )
            .route("/pbxcore/{*rest}", any(pbxcore_not_found))
            .route("/admin-cabinet/{*rest}", any(admin_not_found))
            .with_state(self)
    }

    fn dump(&self) -> Value {
        let st = lock(&self.state);
        let s = &st.store;
        let list: Vec<Value> = s
            .exts
            .keys()
            .filter_map(|id| s.record_of_ext(*id))
            .map(|r| {
                let mut m = r.legacy_json("");
                m.insert("sip_disabled".into(), Value::String(r.sip_disabled.clone()));
                Value::Object(m)
            })
            .collect();
        Value::Array(list)
    }

    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let ext_id = id
            .parse::<u64>()
            .ok()
            .filter(|e| st.store.record_of_ext(*e).is_some())
            .ok_or_else(|| SimError::NotFound(id.to_string()))?;
        let mut copy = st.store.clone();
        copy.tamper(ext_id, patch).map_err(SimError::Invalid)?;
        st.store = copy;
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let uid = id
            .parse::<u64>()
            .ok()
            .and_then(|e| st.store.exts.get(&e))
            .and_then(|e| e.userid)
            .ok_or_else(|| SimError::NotFound(id.to_string()))?;
        st.store.delete_user(uid);
        Ok(())
    }

    fn seed(&self, account: &Value) -> Result<String, SimError> {
        let obj =
            account.as_object().ok_or_else(|| SimError::Invalid("account must be a JSON object".into()))?;
        let form: HashMap<String, String> = obj
            .iter()
            .filter(|(k, v)| k.as_str() != "id" && k.as_str() != "user_id" && !v.is_null())
            .map(|(k, v)| (k.clone(), value_to_form(v)))
            .collect();
        let release = self.current().legacy_release();
        let mut st = lock(&self.state);
        let Inner { store, rng, .. } = &mut *st;
        store
            .legacy_save(&form, &self.cfg, release, rng)
            .map(|id| id.to_string())
            .map_err(|e| SimError::Invalid(e.join("; ")))
    }

    fn credentials(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("apiKey".to_string(), self.cfg.api_key.clone()),
            ("username".to_string(), self.cfg.admin_login.clone()),
            ("password".to_string(), self.cfg.admin_password.clone()),
        ])
    }

    fn expire_tokens(&self) {
        let mut st = lock(&self.state);
        st.sessions.clear();
        st.access.clear();
        st.refresh.clear();
    }

    fn dialect(&self) -> Value {
        serde_json::to_value(self.current()).unwrap_or(Value::Null)
    }

    fn set_dialect(&self, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut dialect = lock(&self.dialect);
        let next: Dialect = crate::sim::patch_dialect(&*dialect, patch)?;
        next.check().map_err(SimError::Invalid)?;
        *dialect = next;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Handlers

type Sim = State<Arc<MikoPbxSim>>;

/// The client address. Without `ConnectInfo` (a server not started with
/// `into_make_service_with_connect_info`) every caller counts as 127.0.0.1.
struct Peer(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        Ok(Peer(ip))
    }
}

fn query_map(q: &Option<String>) -> HashMap<String, String> {
    crate::sim::form_pairs(q.as_deref().unwrap_or("").as_bytes()).into_iter().collect()
}

/// A form body as PHP's `$_POST` sees it: only `application/x-www-form-urlencoded` fills it.
fn post_form(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    if content_type(headers).starts_with("application/x-www-form-urlencoded") {
        crate::sim::form_pairs(body).into_iter().collect()
    } else {
        HashMap::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339_utc(1_693_990_311), "2023-09-06T08:51:51+00:00");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn form_decoding() {
        let f = crate::sim::form_pairs(b"a=1&b=x+y%20z&c=&search%5Bvalue%5D=%D0%98&bad=%zz");
        assert_eq!(
            f,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("search[value]".into(), "И".into()),
                ("bad".into(), "%zz".into()),
            ]
        );
    }

    #[test]
    fn php_int_cast() {
        assert_eq!(php_int("45"), 45);
        assert_eq!(php_int(" 45abc"), 45);
        assert_eq!(php_int("abc"), 0);
        assert_eq!(php_int("-3"), -3);
    }

    #[test]
    fn next_free_number_skips_taken_and_wraps() {
        let cfg = MikoPbxConfig { extension_length: 3, ..MikoPbxConfig::default() };
        let mut s = Store::new(&cfg);
        assert_eq!(s.next_free_number(&cfg), "201");
        let mut rng = StdRng::seed_from_u64(1);
        let form: HashMap<String, String> = [("number".to_string(), "998".to_string())].into();
        s.legacy_save(&form, &cfg, Generation::V2024_1, &mut rng).unwrap();
        assert_eq!(s.next_free_number(&cfg), "999");
        let form: HashMap<String, String> = [("number".to_string(), "999".to_string())].into();
        s.legacy_save(&form, &cfg, Generation::V2024_1, &mut rng).unwrap();
        assert_eq!(s.next_free_number(&cfg), "201");
    }
}
