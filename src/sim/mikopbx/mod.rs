//! MikoPBX simulator: ONE server with both API generations over one data store, so a client
//! of either generation (or both) sees the same employees.
//!
//! The store is relational like the real one, because the legacy API's data-loss traps come
//! from how rows are found: `Users` (id), `Extensions` (SIP and EXTERNAL rows share one id
//! sequence), `Sip` peers (found by `uniqid`), `ExternalPhones` (by `uniqid`) and
//! `ExtensionForwardingRights` (by number). Reads join by number and take the first row.
//!
//! What it enforces (sources: seed 000, `shared/pbx-apis/mikopbx-thulium.md` Part 1):
//! - Legacy `/pbxcore/api/extensions/{getRecord,getForSelect,available}` (GET) and
//!   `{saveRecord,deleteRecord}` (POST): the `jsonapi` envelope with `meta` and an `E-Tag`
//!   header; business errors are HTTP 200 with `result:false`; 401/403/404 carry `errors`.
//!   `getRecord` of an unknown or empty id answers a fresh template without `id`.
//!   `saveRecord` reads form bodies only (a JSON body is an empty `$_POST`: "Empty number");
//!   it is an upsert per row (Users by `user_id`, SIP extension by user, Sip by `sip_uniqid`,
//!   forwarding by the new number, mobile by user + `mobile_uniqid`) and every omitted field
//!   takes its default: an omitted `sip_secret` is a new random secret, an omitted
//!   `sip_uniqid` a second Sip row, an omitted `mobile_number` deletes the mobile.
//!   Extension numbers are unique over SIP and mobile rows; length is not validated.
//!   `deleteRecord` takes `Extensions.id` and refuses while another employee forwards to
//!   the number.
//! - Legacy auth: a request from 127.0.0.1 needs none (`trust_loopback`); others need the
//!   `PHPSESSID` cookie from `POST /admin-cabinet/session/start` (idle lifetime, and in
//!   2024.1 10 failed logins per 300 s per address lock the login out).
//! - `POST /admin-cabinet/extensions/getNewRecords` (2024.1 only): the DataTables list that
//!   maps numbers to `Extensions.id`; it is the admin UI, so it always needs the session
//!   cookie (loopback is trusted only by `/pbxcore`) and `X-Requested-With` for JSON.
//! - v3 `/pbxcore/api/v3/employees` (id = `Users.id`): list (`limit`/`offset`/`search`,
//!   all rows when neither is given, limit <=0 -> 50, cap 1000), get, `:getDefault`,
//!   create (201), PUT, PATCH, DELETE; the sanitiser (trim, strip non-digits from a
//!   pattern field that does not match, truncate to the maximum length), required-field
//!   errors keyed by field, schema and business errors as 422, duplicate number 422.
//!   Not-found codes as the code reads: GET and DELETE 422, PUT and PATCH 404 (config
//!   `v3_not_found_always_404` switches to the documented 404 everywhere).
//! - v3 auth: `Authorization: Bearer` with the API key or a JWT from
//!   `POST /pbxcore/api/v3/auth:login` (refresh cookie, `auth:refresh`, `auth:logout`);
//!   a bad bearer is 401 even from loopback; no bearer is trusted only from 127.0.0.1/::1.
//!   The legacy session cookie is not accepted by v3.
//!
//! Choices where the sources are silent (constants in [`MikoPbxConfig`] and the `MSG_*`
//! consts below):
//! - Legacy behaviour follows 2024.1 by default (`legacy_release`); 2023.2 differs in
//!   processor names, `sip_transport` default `" "`, fwd keywords stripped, the empty-id
//!   message, no login throttling and no `getNewRecords`.
//! - Processor names other than `GetRecord`/`SaveRecord`/`DeleteRecord` are guesses.
//! - `meta.hash` = sha1 of the timestamp, `E-Tag` = sha1 of the body; time is UTC.
//! - Duplicate number (legacy, and v3 model-level): "Specified number is already used for
//!   - <represent>" (the 2026 English text of the same message key).
//! - Next free number: highest SIP number with at most `extension_length` digits + 1,
//!   starting at `first_internal_number`, skipping taken numbers; past the range, the lowest
//!   free number in it; none left -> "" (save then fails with "Empty number").
//! - `getRecord` of an employee without a mobile answers a fresh `mobile_uniqid`; reads of
//!   missing joined rows give "" / 0. Missing or EMPTY legacy fields take the default.
//! - Legacy `number` "0" counts as empty (PHP `empty()`); ints are parsed like PHP `(int)`.
//! - A JSON or multipart body to a legacy POST is treated as an empty `$_POST`.
//! - Legacy wrong method on a known action or an unknown action: HTTP 200 "Unknown action".
//! - Restricted users (`restricted_users`, the "employee rights" module) get 403 on actions
//!   not in their list; delete refused by a forwarding reference: `MSG_RESTRICT`.
//! - Sessions expire after `session_lifetime` of idleness; a failed-login counter is per
//!   client address, separate for legacy and v3, reset by a successful login.
//! - Login answers: XHR JSON `{"success":true,"reload":...}` / `{"success":false,
//!   "message":...}`; without XHR a 302 (success) or an HTML page. `getNewRecords` without a
//!   session: 403 for XHR, else 302 to the login page; without XHR: an HTML page; a missing
//!   or non-positive `length` returns all rows; order by `columns[i][data]`, default number.
//! - JWTs are HS256-shaped but checked by lookup in the issued-token table (so
//!   `expire_tokens` is exact); v3 login errors: 400 `auth_LoginPasswordRequired`, 401
//!   `MSG_V3_BAD_LOGIN`, 429 `MSG_THROTTLED`.
//! - v3 required-field keys `ex_ValidateUsernameIsEmpty`, `ex_ValidateSecretIsEmpty`;
//!   pattern/integer/boolean schema texts; the password strength rule (`password_score`,
//!   a stand-in for the dictionary + score >= 60 rule; `v3_password_policy` turns it off);
//!   "dangerous content" = `<script`, `javascript:` or `<?php` in `user_username`.
//! - v3 format checks (schema, email, mobile, password) apply to the fields the client sent;
//!   uniqueness, ring length with forwarding and own-number forwarding to the merged record.
//! - v3 `sip_enableRecording` is true unless the stored value is "0" or ""; `user_avatar` is
//!   stored as sent; list `avatar` falls back to `DEFAULT_AVATAR`; default list order is
//!   `Users.id`; `reload` uses `Users.id`; a POST with an `id` acts as a PUT of that id.
//! - v3 unknown paths: 404 with the v3 error skeleton; wrong methods 405.
//! - v3 create: `mobile_dialstring` stays as sent (""), unlike legacy, which copies the
//!   mobile number. Changing the number in v3 moves the Sip and forwarding rows along.
//! - Not modelled: parking slots, queues/IVR owners of numbers, `getPhoneRepresent(s)`,
//!   `/pbxcore/api/v3/extensions`, v3 bulk methods, avatar uploads, `debugMode`.

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
mod legacy;
mod reply;
mod session;
mod store;
mod util;
mod v3;
mod v3_fields;
mod writes;

use admin::*;
use legacy::*;
use reply::*;
use session::*;
use store::*;
use util::*;
use v3::*;
use v3_fields::*;

const MSG_EMPTY_NUMBER: &str = "Empty number value in POST/GET data";
const MSG_NOT_AUTHENTICATED: &str = "The user isn't authenticated.";
const MSG_ROUTE_NOT_ALLOWED: &str = "The route is not allowed";
const MSG_NOT_FOUND: &str = "404 (Not Found)";
const MSG_DUPLICATE: &str = "Specified number is already used for - ";
const MSG_RESTRICT: &str = "The record cannot be deleted, it is a call forwarding target of ";
const MSG_LOGIN_FAILED: &str = "Incorrect login or password";
const MSG_THROTTLED: &str = "Too many login attempts, try again later";
const MSG_V3_BAD_LOGIN: &str = "Invalid login or password";
const MSG_V3_DENIED: &str = "Access denied. You do not have permission to access this resource.";
const MSG_V3_OCCUPIED: &str = "Extension already occupied";
const MSG_V3_SECRET_SHORT: &str = "SIP password must be longer than 4 characters";
const MSG_V3_SECRET_LONG: &str = "Password must not be longer than 64 characters";
const MSG_V3_SECRET_WEAK: &str = "Password is too weak for security requirements";
const MSG_V3_EMAIL: &str = "Likely the email address is invalid";
const MSG_V3_MOBILE_TAKEN: &str = "The mobile number is already used by another employee";
const MSG_V3_MOBILE_BAD: &str = "Check the correctness of entering the mobile number";
const MSG_V3_RINGLENGTH: &str = "In the routing settings, the time before forwarding is specified incorrectly. Choose a value between 3-180.";
const MSG_V3_OWN_NUMBER: &str = "You cannot set up forwarding to your own number";
const DEFAULT_AVATAR: &str = "/admin-cabinet/assets/img/unknownPerson.jpg";
const LEGACY_NS: &str = "MikoPBX\\PBXCoreREST\\Lib\\Extensions\\";
const V3_NS: &str = "MikoPBX\\PBXCoreREST\\Lib\\Employees\\";
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
];

/// Which legacy release the `/pbxcore/api/extensions/*` routes behave like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyRelease {
    V2023_2,
    V2024_1,
}

/// A user of the "employee rights" module: logs in like the admin, but may only call the
/// listed actions (legacy names such as `getRecord`, v3 names such as `getList`, `create`).
#[derive(Clone, Debug)]
pub struct RestrictedUser {
    pub login: String,
    pub password: String,
    pub allowed_actions: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct MikoPbxConfig {
    pub legacy_release: LegacyRelease,
    /// `WebAdminLogin` / `WebAdminPassword`: the legacy session login and the v3 JWT login.
    pub admin_login: String,
    pub admin_password: String,
    pub restricted_users: Vec<RestrictedUser>,
    /// v3 API key with full permissions; "" disables it.
    pub api_key: String,
    /// Requests from loopback skip authentication (the real rule). Tests turn it off to
    /// exercise the remote path on 127.0.0.1.
    pub trust_loopback: bool,
    /// Legacy admin session idle lifetime (Redis 3600 s on the real one).
    pub session_lifetime: Duration,
    /// Failed logins per address within `login_attempts_window` before logins are refused.
    pub login_attempts: usize,
    pub login_attempts_window: Duration,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    /// `PBXInternalExtensionLength`: only used to pick the next free number.
    pub extension_length: u32,
    pub first_internal_number: u64,
    /// First `Users.id` and first `Extensions.id`; far apart so a client that mixes the two
    /// ids up fails.
    pub first_user_id: u64,
    pub first_extension_id: u64,
    pub v3_default_limit: usize,
    pub v3_max_limit: usize,
    pub v3_not_found_always_404: bool,
    pub v3_password_policy: bool,
    pub language: String,
    pub pid: u32,
    pub seed: u64,
}

impl Default for MikoPbxConfig {
    fn default() -> Self {
        Self {
            legacy_release: LegacyRelease::V2024_1,
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
            first_extension_id: 1001,
            v3_default_limit: 50,
            v3_max_limit: 1000,
            v3_not_found_always_404: false,
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
    role: Role,
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
    legacy_failures: HashMap<IpAddr, Vec<Instant>>,
    v3_failures: HashMap<IpAddr, Vec<Instant>>,
    access: HashMap<String, Token>,
    refresh: HashMap<String, RefreshToken>,
}

/// The MikoPBX simulator (both API generations, one store).
pub struct MikoPbxSim {
    cfg: MikoPbxConfig,
    state: Mutex<Inner>,
}

impl MikoPbxSim {
    pub fn new(cfg: MikoPbxConfig) -> Arc<Self> {
        let state = Inner {
            store: Store::new(&cfg),
            rng: StdRng::seed_from_u64(cfg.seed),
            sessions: HashMap::new(),
            legacy_failures: HashMap::new(),
            v3_failures: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
        };
        Arc::new(Self { cfg, state: Mutex::new(state) })
    }

    pub fn config(&self) -> &MikoPbxConfig {
        &self.cfg
    }

    /// Row counts per table, so tests can see the stray rows a partial save leaves behind
    /// (keys: users, extensions, sip, external_phones, forwarding_rights).
    pub fn row_counts(&self) -> BTreeMap<&'static str, usize> {
        let st = lock(&self.state);
        let s = &st.store;
        BTreeMap::from([
            ("users", s.users.len()),
            ("extensions", s.exts.len()),
            ("sip", s.sips.len()),
            ("external_phones", s.phones.len()),
            ("forwarding_rights", s.fwds.len()),
        ])
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
        let mut st = lock(&self.state);
        let Inner { store, rng, .. } = &mut *st;
        store
            .legacy_save(&form, &self.cfg, rng)
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
    fn password_rule() {
        assert!(password_score("Vq7#pL2m!xR9zT4w") >= 60);
        assert!(password_score("Nk9oOFI2ZXdDMEU9") >= 60);
        assert!(password_score("password") < 60);
        assert!(password_score("abcdefgh12") < 60);
        assert!(password_score("aaaaaaaaaaaaaaaaaaaa") < 60);
    }

    #[test]
    fn patterns() {
        assert!(number_pattern("201"));
        assert!(!number_pattern("1"));
        assert!(!number_pattern("123456789"));
        assert!(mobile_pattern("+79991234567"));
        assert!(!mobile_pattern("0123"));
    }

    #[test]
    fn sanitizer_truncates_and_strips() {
        let data =
            json!({"number": "123456789", "mobile_number": "+7 (999) 123-45-67", "user_username": "  Ann  "});
        let (f, errors) = v3_sanitize(data.as_object().unwrap_or(&Map::new()));
        assert!(errors.is_empty());
        assert_eq!(f.number.as_deref(), Some("12345678"));
        assert_eq!(f.mobile_number.as_deref(), Some("79991234567"));
        assert_eq!(f.user_username.as_deref(), Some("Ann"));
    }

    #[test]
    fn next_free_number_skips_taken_and_wraps() {
        let cfg = MikoPbxConfig { extension_length: 3, ..MikoPbxConfig::default() };
        let mut s = Store::new(&cfg);
        assert_eq!(s.next_free_number(&cfg), "201");
        let mut rng = StdRng::seed_from_u64(1);
        let form: HashMap<String, String> = [("number".to_string(), "998".to_string())].into();
        s.legacy_save(&form, &cfg, &mut rng).unwrap();
        assert_eq!(s.next_free_number(&cfg), "999");
        let form: HashMap<String, String> = [("number".to_string(), "999".to_string())].into();
        s.legacy_save(&form, &cfg, &mut rng).unwrap();
        assert_eq!(s.next_free_number(&cfg), "201");
    }
}
