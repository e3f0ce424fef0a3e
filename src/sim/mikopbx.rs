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
// The store

#[derive(Clone, Debug)]
struct UserRow {
    username: String,
    email: String,
    avatar: String,
    // Written like the real row, never read back by any API.
    #[allow(dead_code)]
    language: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExtKind {
    Sip,
    External,
}

#[derive(Clone, Debug)]
struct ExtRow {
    number: String,
    kind: ExtKind,
    userid: Option<u64>,
    callerid: String,
    show_in_phonebook: String,
    public_access: String,
    is_general_user_number: String,
}

#[derive(Clone, Debug)]
struct SipRow {
    uniqid: String,
    extension: String,
    secret: String,
    sip_type: String,
    qualify: String,
    qualifyfreq: i64,
    enable_recording: String,
    dtmfmode: String,
    transport: String,
    networkfilterid: String,
    manualattributes: String,
    // Written like the real row, never read back by any API.
    #[allow(dead_code)]
    description: String,
    disabled: String,
}

#[derive(Clone, Debug)]
struct PhoneRow {
    uniqid: String,
    extension: String,
    dialstring: String,
    // Written like the real row, never read back by any API.
    #[allow(dead_code)]
    description: String,
}

#[derive(Clone, Debug, Default)]
struct FwdRow {
    extension: String,
    ringlength: i64,
    forwarding: String,
    onbusy: String,
    onunavailable: String,
}

#[derive(Clone, Debug, Default)]
struct Store {
    users: BTreeMap<u64, UserRow>,
    exts: BTreeMap<u64, ExtRow>,
    sips: BTreeMap<u64, SipRow>,
    phones: BTreeMap<u64, PhoneRow>,
    fwds: BTreeMap<u64, FwdRow>,
    next_user: u64,
    next_ext: u64,
    next_row: u64,
    /// The joins of the admin table, kept while nothing changes (a listing reads every
    /// record right after the table: with them, each read no longer scans the tables).
    /// Every `&mut self` method that changes rows drops them first.
    joins: std::sync::OnceLock<Arc<Joins>>,
}

/// One employee as the joins show it.
#[derive(Clone, Debug, Default)]
struct Record {
    id: Option<u64>,
    user_id: Option<u64>,
    number: String,
    show_in_phonebook: String,
    is_general_user_number: String,
    public_access: String,
    user_username: String,
    user_email: String,
    user_avatar: String,
    /// (uniqid, number, dialstring)
    mobile: Option<(String, String, String)>,
    sip_uniqid: String,
    sip_secret: String,
    sip_type: String,
    sip_qualify: String,
    sip_qualifyfreq: i64,
    sip_enable_recording: String,
    sip_dtmfmode: String,
    sip_transport: String,
    sip_networkfilterid: String,
    sip_manualattributes: String,
    sip_disabled: String,
    fwd_ringlength: i64,
    fwd_forwarding: String,
    fwd_onbusy: String,
    fwd_onunavailable: String,
}

impl Record {
    fn legacy_json(&self, mobile_uniqid_fallback: &str) -> Map<String, Value> {
        let (m_uniqid, m_number, m_dial) = match &self.mobile {
            Some((u, n, d)) => (u.clone(), n.clone(), d.clone()),
            None => (mobile_uniqid_fallback.to_string(), String::new(), String::new()),
        };
        let mut m = Map::new();
        if let Some(id) = self.id {
            m.insert("id".into(), Value::String(id.to_string()));
        }
        let s = |v: &str| Value::String(v.to_string());
        m.insert("type".into(), s("SIP"));
        m.insert("show_in_phonebook".into(), s(&self.show_in_phonebook));
        m.insert("is_general_user_number".into(), s(&self.is_general_user_number));
        m.insert("public_access".into(), s(&self.public_access));
        m.insert("number".into(), s(&self.number));
        let uid = self.user_id.map(|u| u.to_string()).unwrap_or_default();
        m.insert("user_id".into(), Value::String(uid));
        m.insert("user_avatar".into(), s(&self.user_avatar));
        m.insert("user_username".into(), s(&self.user_username));
        m.insert("user_email".into(), s(&self.user_email));
        m.insert("mobile_uniqid".into(), Value::String(m_uniqid));
        m.insert("mobile_number".into(), Value::String(m_number));
        m.insert("mobile_dialstring".into(), Value::String(m_dial));
        m.insert("sip_uniqid".into(), s(&self.sip_uniqid));
        m.insert("sip_secret".into(), s(&self.sip_secret));
        m.insert("sip_type".into(), s(&self.sip_type));
        m.insert("sip_qualify".into(), s(&self.sip_qualify));
        m.insert("sip_qualifyfreq".into(), json!(self.sip_qualifyfreq));
        m.insert("sip_enableRecording".into(), s(&self.sip_enable_recording));
        m.insert("sip_dtmfmode".into(), s(&self.sip_dtmfmode));
        m.insert("sip_transport".into(), s(&self.sip_transport));
        m.insert("sip_networkfilterid".into(), s(&self.sip_networkfilterid));
        m.insert("sip_manualattributes".into(), s(&self.sip_manualattributes));
        m.insert("fwd_ringlength".into(), json!(self.fwd_ringlength));
        m.insert("fwd_forwarding".into(), s(&self.fwd_forwarding));
        m.insert("fwd_forwardingonbusy".into(), s(&self.fwd_onbusy));
        m.insert("fwd_forwardingonunavailable".into(), s(&self.fwd_onunavailable));
        m
    }

    fn mobile_number(&self) -> &str {
        self.mobile.as_ref().map(|m| m.1.as_str()).unwrap_or("")
    }

    fn mobile_dialstring(&self) -> &str {
        self.mobile.as_ref().map(|m| m.2.as_str()).unwrap_or("")
    }
}

/// How a record's rows are found: by scanning (one record), or through [`Joins`] (all).
trait Find {
    fn sip_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64>;
    fn mobile_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64>;
    fn sip_for(&self, s: &Store, number: &str) -> Option<u64>;
    fn fwd_for(&self, s: &Store, number: &str) -> Option<u64>;
    fn phone_for(&self, s: &Store, number: &str) -> Option<u64>;
}

struct Scan;

impl Find for Scan {
    fn sip_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64> {
        s.sip_ext_of_user(uid)
    }
    fn mobile_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64> {
        s.mobile_ext_of_user(uid)
    }
    fn sip_for(&self, s: &Store, number: &str) -> Option<u64> {
        s.sip_for(number)
    }
    fn fwd_for(&self, s: &Store, number: &str) -> Option<u64> {
        s.fwd_for(number)
    }
    fn phone_for(&self, s: &Store, number: &str) -> Option<u64> {
        s.phone_for(number)
    }
}

/// The scans of [`Scan`] done once, keeping the first match in id order as they do.
#[derive(Debug)]
struct Joins {
    sip_ext_of_user: HashMap<u64, u64>,
    mobile_ext_of_user: HashMap<u64, u64>,
    sip_for: HashMap<String, u64>,
    fwd_for: HashMap<String, u64>,
    phone_for: HashMap<String, u64>,
    /// Every record, built through these joins (each table page reads them all).
    records: std::sync::OnceLock<Arc<Vec<Record>>>,
}

impl Joins {
    fn new(s: &Store) -> Self {
        let mut j = Joins {
            sip_ext_of_user: HashMap::new(),
            mobile_ext_of_user: HashMap::new(),
            sip_for: HashMap::new(),
            fwd_for: HashMap::new(),
            phone_for: HashMap::new(),
            records: std::sync::OnceLock::new(),
        };
        for (id, e) in &s.exts {
            let Some(uid) = e.userid else { continue };
            if e.kind == ExtKind::Sip && e.is_general_user_number == "1" {
                j.sip_ext_of_user.entry(uid).or_insert(*id);
            }
            if e.kind == ExtKind::External {
                j.mobile_ext_of_user.entry(uid).or_insert(*id);
            }
        }
        for (id, r) in &s.sips {
            j.sip_for.entry(r.extension.clone()).or_insert(*id);
        }
        for (id, r) in &s.fwds {
            j.fwd_for.entry(r.extension.clone()).or_insert(*id);
        }
        for (id, r) in &s.phones {
            j.phone_for.entry(r.extension.clone()).or_insert(*id);
        }
        j
    }
}

impl Find for Joins {
    fn sip_ext_of_user(&self, _: &Store, uid: u64) -> Option<u64> {
        self.sip_ext_of_user.get(&uid).copied()
    }
    fn mobile_ext_of_user(&self, _: &Store, uid: u64) -> Option<u64> {
        self.mobile_ext_of_user.get(&uid).copied()
    }
    fn sip_for(&self, _: &Store, number: &str) -> Option<u64> {
        self.sip_for.get(number).copied()
    }
    fn fwd_for(&self, _: &Store, number: &str) -> Option<u64> {
        self.fwd_for.get(number).copied()
    }
    fn phone_for(&self, _: &Store, number: &str) -> Option<u64> {
        self.phone_for.get(number).copied()
    }
}

impl Store {
    fn new(cfg: &MikoPbxConfig) -> Self {
        Self {
            next_user: cfg.first_user_id,
            next_ext: cfg.first_extension_id,
            next_row: 1,
            ..Self::default()
        }
    }

    fn alloc_user(&mut self) -> u64 {
        self.next_user += 1;
        self.next_user - 1
    }

    fn alloc_ext(&mut self) -> u64 {
        self.next_ext += 1;
        self.next_ext - 1
    }

    fn alloc_row(&mut self) -> u64 {
        self.next_row += 1;
        self.next_row - 1
    }

    fn sip_ext_of_user(&self, uid: u64) -> Option<u64> {
        self.exts
            .iter()
            .find(|(_, e)| e.userid == Some(uid) && e.kind == ExtKind::Sip && e.is_general_user_number == "1")
            .map(|(id, _)| *id)
    }

    fn mobile_ext_of_user(&self, uid: u64) -> Option<u64> {
        self.exts
            .iter()
            .find(|(_, e)| e.userid == Some(uid) && e.kind == ExtKind::External)
            .map(|(id, _)| *id)
    }

    fn ext_with_number(&self, number: &str, except: Option<u64>) -> Option<u64> {
        self.exts.iter().find(|(id, e)| e.number == number && Some(**id) != except).map(|(id, _)| *id)
    }

    fn sip_for(&self, number: &str) -> Option<u64> {
        self.sips.iter().find(|(_, s)| s.extension == number).map(|(id, _)| *id)
    }

    fn sip_by_uniqid(&self, uniqid: &str) -> Option<u64> {
        self.sips.iter().find(|(_, s)| s.uniqid == uniqid).map(|(id, _)| *id)
    }

    fn phone_for(&self, number: &str) -> Option<u64> {
        self.phones.iter().find(|(_, p)| p.extension == number).map(|(id, _)| *id)
    }

    fn phone_by_uniqid(&self, uniqid: &str) -> Option<u64> {
        self.phones.iter().find(|(_, p)| p.uniqid == uniqid).map(|(id, _)| *id)
    }

    fn fwd_for(&self, number: &str) -> Option<u64> {
        self.fwds.iter().find(|(_, f)| f.extension == number).map(|(id, _)| *id)
    }

    fn represent(&self, ext_id: u64) -> String {
        let Some(e) = self.exts.get(&ext_id) else {
            return String::new();
        };
        let name = e
            .userid
            .and_then(|u| self.users.get(&u))
            .map(|u| u.username.as_str())
            .unwrap_or(e.callerid.as_str());
        let icon = match e.kind {
            ExtKind::Sip => "<i class=\"user outline icon\"></i>",
            ExtKind::External => {
                "<i class=\"user outline icon\"></i><i class=\"top right corner mobile icon\"></i>"
            }
        };
        format!("<i class=\"icons\">{icon}</i> {name} <{}>", e.number)
    }

    fn represent_number(&self, number: &str) -> String {
        match self.ext_with_number(number, None) {
            Some(id) if !number.is_empty() => self.represent(id),
            _ => number.to_string(),
        }
    }

    fn record(&self, uid: u64, ext_id: Option<u64>) -> Option<Record> {
        match self.joins.get() {
            Some(joins) => self.record_with(uid, ext_id, joins.as_ref()),
            None => self.record_with(uid, ext_id, &Scan),
        }
    }

    /// Rows are about to change: the kept joins no longer hold.
    fn touched(&mut self) {
        self.joins = std::sync::OnceLock::new();
    }

    /// Every employee's record, as `record_of_user` gives them one by one, but joined
    /// through maps built once (one by one, each join scans a table: O(N²) for the list).
    fn all_records(&self) -> Arc<Vec<Record>> {
        let joins = self.joins.get_or_init(|| Arc::new(Joins::new(self))).clone();
        joins
            .records
            .get_or_init(|| {
                Arc::new(
                    self.users
                        .keys()
                        .filter_map(|uid| {
                            self.record_with(*uid, joins.sip_ext_of_user(self, *uid), joins.as_ref())
                        })
                        .collect(),
                )
            })
            .clone()
    }

    fn record_with(&self, uid: u64, ext_id: Option<u64>, find: &impl Find) -> Option<Record> {
        let user = self.users.get(&uid)?;
        let ext = ext_id.and_then(|id| self.exts.get(&id));
        let number = ext.map(|e| e.number.clone()).unwrap_or_default();
        let sip = ext.and_then(|_| find.sip_for(self, &number)).and_then(|r| self.sips.get(&r));
        let fwd = ext.and_then(|_| find.fwd_for(self, &number)).and_then(|r| self.fwds.get(&r));
        let mobile = find.mobile_ext_of_user(self, uid).and_then(|m| self.exts.get(&m)).map(|me| {
            let phone = find.phone_for(self, &me.number).and_then(|r| self.phones.get(&r));
            (
                phone.map(|p| p.uniqid.clone()).unwrap_or_default(),
                me.number.clone(),
                phone.map(|p| p.dialstring.clone()).unwrap_or_default(),
            )
        });
        let sv = |f: fn(&SipRow) -> &String| sip.map(|s| f(s).clone()).unwrap_or_default();
        let fv = |f: fn(&FwdRow) -> &String| fwd.map(|s| f(s).clone()).unwrap_or_default();
        Some(Record {
            id: ext.and(ext_id),
            user_id: Some(uid),
            number,
            show_in_phonebook: ext.map(|e| e.show_in_phonebook.clone()).unwrap_or_default(),
            is_general_user_number: ext.map(|e| e.is_general_user_number.clone()).unwrap_or_default(),
            public_access: ext.map(|e| e.public_access.clone()).unwrap_or_default(),
            user_username: user.username.clone(),
            user_email: user.email.clone(),
            user_avatar: user.avatar.clone(),
            mobile,
            sip_uniqid: sv(|s| &s.uniqid),
            sip_secret: sv(|s| &s.secret),
            sip_type: sv(|s| &s.sip_type),
            sip_qualify: sv(|s| &s.qualify),
            sip_qualifyfreq: sip.map(|s| s.qualifyfreq).unwrap_or(0),
            sip_enable_recording: sv(|s| &s.enable_recording),
            sip_dtmfmode: sv(|s| &s.dtmfmode),
            sip_transport: sv(|s| &s.transport),
            sip_networkfilterid: sv(|s| &s.networkfilterid),
            sip_manualattributes: sv(|s| &s.manualattributes),
            sip_disabled: sv(|s| &s.disabled),
            fwd_ringlength: fwd.map(|f| f.ringlength).unwrap_or(0),
            fwd_forwarding: fv(|f| &f.forwarding),
            fwd_onbusy: fv(|f| &f.onbusy),
            fwd_onunavailable: fv(|f| &f.onunavailable),
        })
    }

    fn record_of_user(&self, uid: u64) -> Option<Record> {
        self.record(uid, self.sip_ext_of_user(uid))
    }

    /// The employee whose SIP extension has this `Extensions.id`.
    fn record_of_ext(&self, ext_id: u64) -> Option<Record> {
        let e = self.exts.get(&ext_id)?;
        if e.kind != ExtKind::Sip {
            return None;
        }
        self.record(e.userid?, Some(ext_id))
    }

    fn next_free_number(&self, cfg: &MikoPbxConfig) -> String {
        let len = cfg.extension_length.min(18);
        let max_allowed = 10u64.pow(len) - 1;
        let highest = self
            .exts
            .values()
            .filter(|e| e.kind == ExtKind::Sip && e.number.len() <= len as usize)
            .filter_map(|e| e.number.parse::<u64>().ok())
            .max();
        let start =
            highest.map(|h| h + 1).unwrap_or(cfg.first_internal_number).max(cfg.first_internal_number);
        let free = |n: &u64| self.ext_with_number(&n.to_string(), None).is_none();
        (start..=max_allowed)
            .find(free)
            .or_else(|| (cfg.first_internal_number..start.min(max_allowed + 1)).find(free))
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    fn delete_ext(&mut self, ext_id: u64) {
        self.touched();
        if let Some(e) = self.exts.remove(&ext_id) {
            self.sips.retain(|_, s| s.extension != e.number);
            self.phones.retain(|_, p| p.extension != e.number);
        }
    }

    fn delete_mobile(&mut self, uid: u64) {
        self.touched();
        let ids: Vec<u64> = self
            .exts
            .iter()
            .filter(|(_, e)| e.userid == Some(uid) && e.kind == ExtKind::External)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.delete_ext(id);
        }
    }

    fn numbers_of_user(&self, uid: u64) -> Vec<String> {
        self.exts.values().filter(|e| e.userid == Some(uid)).map(|e| e.number.clone()).collect()
    }

    /// Forwarding rows of OTHER extensions that point at this user's numbers (the
    /// restrict relations that make a delete fail).
    fn restrict_messages(&self, uid: u64) -> Vec<String> {
        let own = self.numbers_of_user(uid);
        let mut out = Vec::new();
        for f in self.fwds.values() {
            if own.contains(&f.extension) {
                continue;
            }
            for target in [&f.forwarding, &f.onbusy, &f.onunavailable] {
                if !target.is_empty() && own.contains(target) {
                    out.push(format!("{MSG_RESTRICT}{}", self.represent_number(&f.extension)));
                    break;
                }
            }
        }
        out
    }

    fn delete_user(&mut self, uid: u64) {
        self.touched();
        let own = self.numbers_of_user(uid);
        self.fwds.retain(|_, f| !own.contains(&f.extension));
        let ids: Vec<u64> =
            self.exts.iter().filter(|(_, e)| e.userid == Some(uid)).map(|(id, _)| *id).collect();
        for id in ids {
            self.delete_ext(id);
        }
        self.users.remove(&uid);
    }

    fn duplicate(&self, other: u64) -> String {
        format!("{MSG_DUPLICATE}{}", self.represent(other))
    }

    /// Legacy `SaveRecord`: an upsert per row, every omitted field takes its default.
    fn legacy_save(
        &mut self,
        form: &HashMap<String, String>,
        cfg: &MikoPbxConfig,
        rng: &mut StdRng,
    ) -> Result<u64, Vec<String>> {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let raw_number = get("number");
        if raw_number.is_empty() || raw_number == "0" {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        let mut number = digits(raw_number);
        if number.is_empty() {
            number = self.next_free_number(cfg);
        }
        if number.is_empty() {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        if self.save_may_clash(form, &number) {
            // It may be refused half-way: work on a copy, so a refusal changes nothing.
            let mut st = self.clone();
            let ext_id = st.legacy_save_rows(form, cfg, rng, number)?;
            *self = st;
            Ok(ext_id)
        } else {
            // It cannot be refused: no copy of the whole store (an O(N) copy per save
            // made the simulator, not the client, the bottleneck at thousands of rows).
            self.legacy_save_rows(form, cfg, rng, number)
        }
    }

    /// Whether [`Store::legacy_save`] of `form` could be refused: its number, or its
    /// mobile, held by a row other than the employee's own. Conservative: `false` means
    /// it cannot be refused.
    fn save_may_clash(&self, form: &HashMap<String, String>, number: &str) -> bool {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let uid = match get("user_id").parse::<u64>() {
            Ok(u) if self.users.contains_key(&u) => u,
            _ => self.next_user,
        };
        let taken =
            |n: &str, own: Option<u64>| self.exts.iter().any(|(id, e)| e.number == n && Some(*id) != own);
        let mobile = digits(get("mobile_number"));
        taken(number, self.sip_ext_of_user(uid))
            || (!mobile.is_empty() && (mobile == number || taken(&mobile, self.mobile_ext_of_user(uid))))
    }

    /// The row writes of [`Store::legacy_save`], with `number` already settled.
    fn legacy_save_rows(
        &mut self,
        form: &HashMap<String, String>,
        cfg: &MikoPbxConfig,
        rng: &mut StdRng,
        number: String,
    ) -> Result<u64, Vec<String>> {
        self.touched();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let or_default = |k: &str, d: String| {
            let v = get(k);
            if v.is_empty() { d } else { v.to_string() }
        };
        let username = get("user_username").to_string();
        let fwd = |k: &str| legacy_fwd(get(k), cfg.legacy_release);
        let int_or = |k: &str, d: i64| {
            let v = get(k);
            if v.is_empty() { d } else { php_int(v) }
        };
        let st = self;
        let uid = match get("user_id").parse::<u64>() {
            Ok(u) if st.users.contains_key(&u) => u,
            _ => st.alloc_user(),
        };
        st.users.insert(
            uid,
            UserRow {
                username: username.clone(),
                email: get("user_email").to_string(),
                avatar: get("user_avatar").to_string(),
                language: cfg.language.clone(),
            },
        );

        let ext_id = match st.sip_ext_of_user(uid) {
            Some(id) => id,
            None => st.alloc_ext(),
        };
        if let Some(other) = st.ext_with_number(&number, Some(ext_id)) {
            return Err(vec![st.duplicate(other)]);
        }
        st.exts.insert(
            ext_id,
            ExtRow {
                number: number.clone(),
                kind: ExtKind::Sip,
                userid: Some(uid),
                callerid: username.clone(),
                show_in_phonebook: or_default("show_in_phonebook", "1".into()),
                public_access: or_default("public_access", "0".into()),
                is_general_user_number: "1".into(),
            },
        );

        let sip_uniqid = or_default("sip_uniqid", new_uniqid("SIP-PHONE-", rng));
        let row = match st.sip_by_uniqid(&sip_uniqid) {
            Some(r) => r,
            None => st.alloc_row(),
        };
        let disabled = st.sips.get(&row).map(|s| s.disabled.clone()).unwrap_or_else(|| "0".into());
        let sip = SipRow {
            uniqid: sip_uniqid,
            extension: number.clone(),
            secret: or_default("sip_secret", new_legacy_secret(rng)),
            sip_type: or_default("sip_type", "peer".into()),
            qualify: or_default("sip_qualify", "1".into()),
            qualifyfreq: int_or("sip_qualifyfreq", 60),
            enable_recording: or_default("sip_enableRecording", "1".into()),
            dtmfmode: or_default("sip_dtmfmode", "auto".into()),
            transport: form
                .get("sip_transport")
                .cloned()
                .unwrap_or_else(|| legacy_transport_default(cfg.legacy_release).into()),
            networkfilterid: or_default("sip_networkfilterid", "none".into()),
            manualattributes: get("sip_manualattributes").to_string(),
            description: username.clone(),
            disabled,
        };
        st.sips.insert(row, sip);

        let row = match st.fwd_for(&number) {
            Some(r) => r,
            None => st.alloc_row(),
        };
        st.fwds.insert(
            row,
            FwdRow {
                extension: number.clone(),
                ringlength: int_or("fwd_ringlength", 45),
                forwarding: fwd("fwd_forwarding"),
                onbusy: fwd("fwd_forwardingonbusy"),
                onunavailable: fwd("fwd_forwardingonunavailable"),
            },
        );

        let mobile = digits(get("mobile_number"));
        if mobile.is_empty() {
            st.delete_mobile(uid);
        } else {
            let mext = match st.mobile_ext_of_user(uid) {
                Some(id) => id,
                None => st.alloc_ext(),
            };
            if let Some(other) = st.ext_with_number(&mobile, Some(mext)) {
                return Err(vec![st.duplicate(other)]);
            }
            st.exts.insert(
                mext,
                ExtRow {
                    number: mobile.clone(),
                    kind: ExtKind::External,
                    userid: Some(uid),
                    callerid: username.clone(),
                    show_in_phonebook: "1".into(),
                    public_access: "0".into(),
                    is_general_user_number: "1".into(),
                },
            );
            let uniqid = or_default("mobile_uniqid", new_uniqid("EXTERNAL-", rng));
            let row = match st.phone_by_uniqid(&uniqid) {
                Some(r) => r,
                None => st.alloc_row(),
            };
            st.phones.insert(
                row,
                PhoneRow {
                    uniqid,
                    extension: mobile.clone(),
                    dialstring: or_default("mobile_dialstring", mobile),
                    description: username,
                },
            );
        }
        Ok(ext_id)
    }

    /// v3 save of an effective record (create when `uid` is None).
    fn v3_save(
        &mut self,
        uid: Option<u64>,
        f: &V3Fields,
        cfg: &MikoPbxConfig,
        rng: &mut StdRng,
    ) -> Result<u64, Vec<String>> {
        self.touched();
        let mut st = self.clone();
        let uid = match uid {
            Some(u) => u,
            None => st.alloc_user(),
        };
        let user = st.users.entry(uid).or_insert_with(|| UserRow {
            username: String::new(),
            email: String::new(),
            avatar: String::new(),
            language: cfg.language.clone(),
        });
        if let Some(v) = &f.user_username {
            user.username = v.clone();
        }
        if let Some(v) = &f.user_email {
            user.email = v.clone();
        }
        if let Some(v) = &f.user_avatar {
            user.avatar = v.clone();
        }
        let username = user.username.clone();
        let number = f.number.clone().unwrap_or_default();

        let (ext_id, old_number) = match st.sip_ext_of_user(uid) {
            Some(id) => (id, st.exts.get(&id).map(|e| e.number.clone())),
            None => (st.alloc_ext(), None),
        };
        if let Some(other) = st.ext_with_number(&number, Some(ext_id)) {
            return Err(vec![format!("Failed to save SIP extension: {}", st.duplicate(other))]);
        }
        let ext = st.exts.entry(ext_id).or_insert_with(|| ExtRow {
            number: String::new(),
            kind: ExtKind::Sip,
            userid: Some(uid),
            callerid: String::new(),
            show_in_phonebook: "1".into(),
            public_access: "1".into(),
            is_general_user_number: "1".into(),
        });
        ext.number = number.clone();
        ext.callerid = username.clone();

        let old = old_number.unwrap_or_else(|| number.clone());
        let row = match st.sip_for(&old) {
            Some(r) => r,
            None => {
                let r = st.alloc_row();
                st.sips.insert(
                    r,
                    SipRow {
                        uniqid: new_uniqid("SIP-PHONE-", rng),
                        extension: number.clone(),
                        secret: String::new(),
                        sip_type: "peer".into(),
                        qualify: "1".into(),
                        qualifyfreq: 60,
                        enable_recording: "1".into(),
                        dtmfmode: "auto".into(),
                        transport: "udp".into(),
                        networkfilterid: "none".into(),
                        manualattributes: String::new(),
                        description: String::new(),
                        disabled: "0".into(),
                    },
                );
                r
            }
        };
        if let Some(sip) = st.sips.get_mut(&row) {
            sip.extension = number.clone();
            sip.description = username.clone();
            set(&mut sip.secret, &f.sip_secret);
            set(&mut sip.dtmfmode, &f.sip_dtmfmode);
            set(&mut sip.transport, &f.sip_transport);
            set(&mut sip.manualattributes, &f.sip_manualattributes);
            set(&mut sip.networkfilterid, &f.sip_networkfilterid);
            if let Some(b) = f.sip_enable_recording {
                sip.enable_recording = if b { "1" } else { "0" }.into();
            }
        }

        let row = match st.fwd_for(&old) {
            Some(r) => r,
            None => {
                let r = st.alloc_row();
                st.fwds.insert(r, FwdRow::default());
                r
            }
        };
        if let Some(fwd) = st.fwds.get_mut(&row) {
            fwd.extension = number.clone();
            if let Some(r) = f.fwd_ringlength {
                fwd.ringlength = r;
            }
            set(&mut fwd.forwarding, &f.fwd_forwarding);
            set(&mut fwd.onbusy, &f.fwd_onbusy);
            set(&mut fwd.onunavailable, &f.fwd_onunavailable);
        }

        match f.mobile_number.as_deref() {
            None | Some("") => st.delete_mobile(uid),
            Some(mobile) => {
                let (mext, old_mobile) = match st.mobile_ext_of_user(uid) {
                    Some(id) => (id, st.exts.get(&id).map(|e| e.number.clone())),
                    None => (st.alloc_ext(), None),
                };
                if let Some(other) = st.ext_with_number(mobile, Some(mext)) {
                    return Err(vec![format!("Failed to save mobile extension: {}", st.duplicate(other))]);
                }
                st.exts.insert(
                    mext,
                    ExtRow {
                        number: mobile.to_string(),
                        kind: ExtKind::External,
                        userid: Some(uid),
                        callerid: username.clone(),
                        show_in_phonebook: "1".into(),
                        public_access: "0".into(),
                        is_general_user_number: "1".into(),
                    },
                );
                let found = old_mobile.and_then(|m| st.phone_for(&m));
                let row = match found {
                    Some(r) => r,
                    None => {
                        let r = st.alloc_row();
                        st.phones.insert(
                            r,
                            PhoneRow {
                                uniqid: new_uniqid("EXTERNAL-", rng),
                                extension: String::new(),
                                dialstring: String::new(),
                                description: String::new(),
                            },
                        );
                        r
                    }
                };
                if let Some(p) = st.phones.get_mut(&row) {
                    p.extension = mobile.to_string();
                    p.description = username;
                    set(&mut p.dialstring, &f.mobile_dialstring);
                }
            }
        }
        *self = st;
        Ok(uid)
    }

    /// Direct row edits for `Simulator::tamper` (legacy field names).
    fn tamper(&mut self, ext_id: u64, patch: &Map<String, Value>) -> Result<(), String> {
        self.touched();
        let rec =
            self.record_of_ext(ext_id).ok_or_else(|| format!("no employee with extension id {ext_id}"))?;
        let uid = rec.user_id.unwrap_or_default();
        let mut number = rec.number.clone();
        let sip_row = self.sip_for(&number);
        let fwd_row = self.fwd_for(&number);
        for (key, value) in patch {
            let v = value_to_form(value);
            match key.as_str() {
                "user_username" | "user_email" | "user_avatar" => {
                    if let Some(u) = self.users.get_mut(&uid) {
                        match key.as_str() {
                            "user_username" => u.username = v,
                            "user_email" => u.email = v,
                            _ => u.avatar = v,
                        }
                    }
                }
                "number" => {
                    if let Some(other) = self.ext_with_number(&v, Some(ext_id)) {
                        return Err(self.duplicate(other));
                    }
                    for s in self.sips.values_mut().filter(|s| s.extension == number) {
                        s.extension = v.clone();
                    }
                    for f in self.fwds.values_mut().filter(|f| f.extension == number) {
                        f.extension = v.clone();
                    }
                    if let Some(e) = self.exts.get_mut(&ext_id) {
                        e.number = v.clone();
                    }
                    number = v;
                }
                "show_in_phonebook" | "public_access" => {
                    if let Some(e) = self.exts.get_mut(&ext_id) {
                        if key == "show_in_phonebook" {
                            e.show_in_phonebook = v;
                        } else {
                            e.public_access = v;
                        }
                    }
                }
                k if k.starts_with("sip_") && k != "sip_uniqid" => {
                    let s = sip_row
                        .and_then(|r| self.sips.get_mut(&r))
                        .ok_or_else(|| format!("extension {ext_id} has no Sip row"))?;
                    match k {
                        "sip_secret" => s.secret = v,
                        "sip_type" => s.sip_type = v,
                        "sip_qualify" => s.qualify = v,
                        "sip_qualifyfreq" => s.qualifyfreq = php_int(&v),
                        "sip_enableRecording" => s.enable_recording = v,
                        "sip_dtmfmode" => s.dtmfmode = v,
                        "sip_transport" => s.transport = v,
                        "sip_networkfilterid" => s.networkfilterid = v,
                        "sip_manualattributes" => s.manualattributes = v,
                        "sip_disabled" => s.disabled = v,
                        _ => return Err(format!("unknown field {k}")),
                    }
                }
                k if k.starts_with("fwd_") => {
                    let row = match fwd_row {
                        Some(r) => r,
                        None => return Err(format!("extension {ext_id} has no forwarding row")),
                    };
                    let f = self
                        .fwds
                        .get_mut(&row)
                        .ok_or_else(|| format!("extension {ext_id} has no forwarding row"))?;
                    match k {
                        "fwd_ringlength" => f.ringlength = php_int(&v),
                        "fwd_forwarding" => f.forwarding = v,
                        "fwd_forwardingonbusy" => f.onbusy = v,
                        "fwd_forwardingonunavailable" => f.onunavailable = v,
                        _ => return Err(format!("unknown field {k}")),
                    }
                }
                "mobile_number" => {
                    if v.is_empty() {
                        self.delete_mobile(uid);
                        continue;
                    }
                    let mext = match self.mobile_ext_of_user(uid) {
                        Some(id) => id,
                        None => {
                            let id = self.alloc_ext();
                            self.exts.insert(
                                id,
                                ExtRow {
                                    number: String::new(),
                                    kind: ExtKind::External,
                                    userid: Some(uid),
                                    callerid: rec.user_username.clone(),
                                    show_in_phonebook: "1".into(),
                                    public_access: "0".into(),
                                    is_general_user_number: "1".into(),
                                },
                            );
                            id
                        }
                    };
                    if let Some(other) = self.ext_with_number(&v, Some(mext)) {
                        return Err(self.duplicate(other));
                    }
                    let old = self.exts.get(&mext).map(|e| e.number.clone()).unwrap_or_default();
                    match self.phone_for(&old).filter(|_| !old.is_empty()) {
                        Some(r) => {
                            if let Some(p) = self.phones.get_mut(&r) {
                                p.extension = v.clone();
                            }
                        }
                        None => {
                            let r = self.alloc_row();
                            let uniqid = format!("EXTERNAL-{:08X}", self.next_row * 7919);
                            self.phones.insert(
                                r,
                                PhoneRow {
                                    uniqid,
                                    extension: v.clone(),
                                    dialstring: v.clone(),
                                    description: rec.user_username.clone(),
                                },
                            );
                        }
                    }
                    if let Some(e) = self.exts.get_mut(&mext) {
                        e.number = v;
                    }
                }
                "mobile_dialstring" => {
                    let mobile = self
                        .mobile_ext_of_user(uid)
                        .and_then(|m| self.exts.get(&m))
                        .map(|e| e.number.clone())
                        .ok_or_else(|| format!("extension {ext_id} has no mobile"))?;
                    let row =
                        self.phone_for(&mobile).ok_or_else(|| format!("extension {ext_id} has no mobile"))?;
                    if let Some(p) = self.phones.get_mut(&row) {
                        p.dialstring = v;
                    }
                }
                other => return Err(format!("field {other} cannot be tampered with")),
            }
        }
        Ok(())
    }
}

fn set(target: &mut String, value: &Option<String>) {
    if let Some(v) = value {
        target.clone_from(v);
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

    fn check_login(&self, login: &str, password: &str) -> Option<Role> {
        if login == self.cfg.admin_login && password == self.cfg.admin_password {
            return Some(Role::Admin);
        }
        self.cfg
            .restricted_users
            .iter()
            .find(|u| u.login == login && u.password == password)
            .map(|u| Role::Restricted(u.allowed_actions.clone()))
    }

    fn session_role(&self, headers: &HeaderMap) -> Option<Role> {
        let sid = cookie(headers, "PHPSESSID")?;
        let mut st = lock(&self.state);
        let now = Instant::now();
        let lifetime = self.cfg.session_lifetime;
        st.sessions.retain(|_, s| now.duration_since(s.last_used) < lifetime);
        let s = st.sessions.get_mut(&sid)?;
        s.last_used = now;
        Some(s.role.clone())
    }

    fn legacy_auth(&self, peer: IpAddr, headers: &HeaderMap, action: &str) -> Option<Response> {
        if self.cfg.trust_loopback && peer == IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return None;
        }
        match self.session_role(headers) {
            None => Some(self.legacy_framework_error(StatusCode::UNAUTHORIZED, MSG_NOT_AUTHENTICATED)),
            Some(role) if !role.allows(action) => {
                Some(self.legacy_framework_error(StatusCode::FORBIDDEN, MSG_ROUTE_NOT_ALLOWED))
            }
            Some(_) => None,
        }
    }

    fn v3_auth(&self, peer: IpAddr, headers: &HeaderMap, action: &str) -> Option<Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        if let Some(token) = bearer {
            let role = {
                let mut st = lock(&self.state);
                let now = Instant::now();
                st.access.retain(|_, t| t.expires > now);
                st.access.get(&token).map(|t| t.role.clone())
            };
            let role = match role {
                Some(r) => r,
                None if !self.cfg.api_key.is_empty() && token == self.cfg.api_key => Role::Admin,
                None => {
                    return Some(self.v3_error(StatusCode::UNAUTHORIZED, MSG_NOT_AUTHENTICATED));
                }
            };
            if !role.allows(action) {
                return Some(self.v3_error(StatusCode::FORBIDDEN, MSG_V3_DENIED));
            }
            return None;
        }
        let loopback = peer == IpAddr::V4(Ipv4Addr::LOCALHOST) || peer == IpAddr::V6(Ipv6Addr::LOCALHOST);
        if self.cfg.trust_loopback && loopback {
            return None;
        }
        Some(self.v3_error(StatusCode::UNAUTHORIZED, MSG_NOT_AUTHENTICATED))
    }

    // --- responses --------------------------------------------------------------------

    fn payload(
        &self,
        result: bool,
        function: &str,
        processor: &str,
        data: Value,
        errors: Value,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("result".into(), Value::Bool(result));
        m.insert("data".into(), data);
        m.insert("messages".into(), errors);
        m.insert("function".into(), Value::String(function.into()));
        m.insert("processor".into(), Value::String(processor.into()));
        m.insert("pid".into(), json!(self.cfg.pid));
        m
    }

    fn legacy_reply(&self, action: &str, result: Result<Value, Vec<String>>) -> Response {
        let processor = legacy_processor(self.cfg.legacy_release, action);
        let mut body = match result {
            Ok(data) => self.payload(true, action, &processor, data, json!([])),
            Err(errors) => self.payload(false, action, &processor, json!([]), json!({"error": errors})),
        };
        body.insert("jsonapi".into(), json!({"version": "1.0"}));
        send(StatusCode::OK, body, legacy_op(action))
    }

    fn legacy_framework_error(&self, status: StatusCode, message: &str) -> Response {
        let mut body = Map::new();
        body.insert("jsonapi".into(), json!({"version": "1.0"}));
        body.insert("errors".into(), json!([message]));
        send(status, body, "framework")
    }

    fn v3_error(&self, status: StatusCode, message: &str) -> Response {
        let body = self.payload(false, "", "", json!([]), json!({"error": [message]}));
        send(status, body, "framework")
    }

    fn v3_reply(
        &self,
        status: StatusCode,
        function: &'static str,
        result: Result<Value, Value>,
        extra: Vec<(&'static str, Value)>,
    ) -> Response {
        let processor = format!("{V3_NS}{}::main", v3_action_class(function));
        let mut body = match result {
            Ok(data) => self.payload(true, function, &processor, data, json!([])),
            Err(messages) => self.payload(false, function, &processor, json!([]), json!({"error": messages})),
        };
        for (k, v) in extra {
            body.insert(k.into(), v);
        }
        send(status, body, function)
    }

    fn v3_fail(
        &self,
        status: StatusCode,
        function: &'static str,
        errors: Vec<String>,
        explicit: bool,
    ) -> Response {
        let extra = if explicit { vec![("httpCode", json!(status.as_u16()))] } else { vec![] };
        self.v3_reply(status, function, Err(json!(errors)), extra)
    }

    // --- legacy actions ------------------------------------------------------------------

    fn legacy(
        &self,
        method: &Method,
        action: &str,
        peer: IpAddr,
        headers: &HeaderMap,
        query: HashMap<String, String>,
        post: HashMap<String, String>,
    ) -> Response {
        if let Some(resp) = self.legacy_auth(peer, headers, action) {
            return resp;
        }
        let result = match (method.as_str(), action) {
            ("GET", "getRecord") => {
                Ok(self.legacy_get_record(query.get("id").map(String::as_str).unwrap_or("")))
            }
            ("GET", "getForSelect") => {
                Ok(self.legacy_get_for_select(query.get("type").map(String::as_str).unwrap_or("all")))
            }
            ("GET", "available") => {
                self.legacy_available(query.get("number").map(String::as_str).unwrap_or(""))
            }
            ("POST", "saveRecord") => {
                let mut st = lock(&self.state);
                let Inner { store, rng, .. } = &mut *st;
                store.legacy_save(&post, &self.cfg, rng).map(|ext_id| legacy_record_json(store, ext_id, rng))
            }
            ("POST", "deleteRecord") => self.legacy_delete(post.get("id").map(String::as_str).unwrap_or("")),
            _ => Err(vec![format!(
                "Unknown action - {action} in MikoPBX\\PBXCoreREST\\Lib\\ExtensionsManagementProcessor"
            )]),
        };
        self.legacy_reply(action, result)
    }

    fn legacy_get_record(&self, id: &str) -> Value {
        let mut st = lock(&self.state);
        let Inner { store, rng, .. } = &mut *st;
        if let Ok(ext_id) = id.parse::<u64>()
            && store.record_of_ext(ext_id).is_some()
        {
            return legacy_record_json(store, ext_id, rng);
        }
        let template = Record {
            number: store.next_free_number(&self.cfg),
            show_in_phonebook: "1".into(),
            is_general_user_number: "1".into(),
            public_access: "0".into(),
            sip_uniqid: new_uniqid("SIP-PHONE-", rng),
            sip_secret: new_legacy_secret(rng),
            sip_type: "peer".into(),
            sip_qualify: "1".into(),
            sip_qualifyfreq: 60,
            sip_enable_recording: "1".into(),
            sip_dtmfmode: "auto".into(),
            sip_transport: legacy_transport_default(self.cfg.legacy_release).into(),
            sip_networkfilterid: "none".into(),
            fwd_ringlength: 45,
            ..Record::default()
        };
        Value::Object(template.legacy_json(&new_uniqid("EXTERNAL-", rng)))
    }

    fn legacy_get_for_select(&self, kind: &str) -> Value {
        let st = lock(&self.state);
        let s = &st.store;
        let mut items: Vec<(u8, String, Value)> = s
            .exts
            .iter()
            .filter(|(_, e)| e.show_in_phonebook == "1")
            .filter(|(_, e)| kind != "internal" || e.kind == ExtKind::Sip)
            .map(|(id, e)| {
                let item = json!({
                    "name": s.represent(*id),
                    "value": e.number,
                    "type": "_USER",
                    "typeLocalized": "Employees",
                });
                (u8::from(e.kind == ExtKind::External), e.number.clone(), item)
            })
            .collect();
        items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Value::Array(items.into_iter().map(|i| i.2).collect())
    }

    fn legacy_available(&self, number: &str) -> Result<Value, Vec<String>> {
        if number.is_empty() {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        let st = lock(&self.state);
        let s = &st.store;
        Ok(match s.ext_with_number(number, None) {
            None => json!({"available": true}),
            Some(id) => {
                let uid = s.exts.get(&id).and_then(|e| e.userid).map(|u| u.to_string());
                json!({"available": false, "userId": uid, "represent": s.represent(id)})
            }
        })
    }

    fn legacy_delete(&self, id: &str) -> Result<Value, Vec<String>> {
        if id.is_empty() {
            let msg = match self.cfg.legacy_release {
                LegacyRelease::V2023_2 => "empty ID in POST/GET data",
                LegacyRelease::V2024_1 => "Empty ID in POST/GET data",
            };
            return Err(vec![msg.into()]);
        }
        let mut st = lock(&self.state);
        let store = &mut st.store;
        let ext = id.parse::<u64>().ok().and_then(|i| store.exts.get(&i).map(|e| (i, e.userid)));
        match ext {
            None => Err(vec![format!("Extension with id {id} does not exist")]),
            Some((ext_id, None)) => {
                store.delete_ext(ext_id);
                Ok(json!({"id": id}))
            }
            Some((_, Some(uid))) => {
                let refused = store.restrict_messages(uid);
                if !refused.is_empty() {
                    return Err(refused);
                }
                store.delete_user(uid);
                Ok(json!({"id": id}))
            }
        }
    }

    // --- admin cabinet -------------------------------------------------------------------

    fn session_start(&self, peer: IpAddr, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
        let xhr = is_xhr(headers);
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let now = Instant::now();
        let throttling = self.cfg.legacy_release == LegacyRelease::V2024_1;
        let outcome = {
            let mut st = lock(&self.state);
            if throttling && throttled(&mut st.legacy_failures, peer, &self.cfg) {
                Err(MSG_THROTTLED)
            } else {
                match self.check_login(get("login"), get("password")) {
                    Some(role) => {
                        st.legacy_failures.remove(&peer);
                        let sid = random_token(&mut st.rng, 26);
                        st.sessions.insert(sid.clone(), Session { role, last_used: now });
                        Ok(sid)
                    }
                    None => {
                        st.legacy_failures.entry(peer).or_default().push(now);
                        Err(MSG_LOGIN_FAILED)
                    }
                }
            }
        };
        let back = match get("backUri") {
            "" => "/admin-cabinet/extensions/index/",
            b => b,
        };
        let mut resp = match (&outcome, xhr) {
            (Ok(_), true) => axum::Json(json!({"success": true, "reload": back})).into_response(),
            (Err(msg), true) => axum::Json(json!({"success": false, "message": msg})).into_response(),
            (Ok(_), false) => (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response(),
            (Err(msg), false) => html(
                StatusCode::OK,
                &format!(
                    "<html><body><form id=\"login-form\"><div class=\"ui error message\">{msg}</div></form></body></html>"
                ),
            ),
        };
        if let Ok(sid) = outcome
            && let Ok(v) = HeaderValue::from_str(&format!("PHPSESSID={sid}; path=/; HttpOnly"))
        {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp.extensions_mut().insert(OpName("sessionStart"));
        resp
    }

    fn admin_get_new_records(&self, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
        let op = OpName("getNewRecords");
        let mut resp = self.admin_get_new_records_inner(headers, form);
        resp.extensions_mut().insert(op);
        resp
    }

    fn admin_get_new_records_inner(&self, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
        if self.cfg.legacy_release == LegacyRelease::V2023_2 {
            return html(StatusCode::NOT_FOUND, "<html><body>Page not found</body></html>");
        }
        let xhr = is_xhr(headers);
        match self.session_role(headers) {
            None if xhr => {
                return (StatusCode::FORBIDDEN, "This user is not authorized").into_response();
            }
            None => {
                return (StatusCode::FOUND, [(header::LOCATION, "/admin-cabinet/session/index")])
                    .into_response();
            }
            Some(role) if !role.allows("getNewRecords") => {
                return (StatusCode::FORBIDDEN, "This user is not authorized").into_response();
            }
            Some(_) => {}
        }
        if !xhr {
            return html(StatusCode::OK, "<html><body><table id=\"extensions-table\"></table></body></html>");
        }
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let search = get("search[value]").to_lowercase();
        let st = lock(&self.state);
        let s = &st.store;
        let all = s.all_records();
        let mut rows: Vec<&Record> = all
            .iter()
            .filter(|r| r.id.is_some())
            .filter(|r| {
                search.is_empty()
                    || [&r.user_username, &r.number, &r.user_email]
                        .iter()
                        .any(|v| v.to_lowercase().contains(&search))
                    || r.mobile_number().contains(&search)
            })
            .collect();
        let column = get(&format!("columns[{}][data]", get("order[0][column]")));
        let key = |r: &Record| -> String {
            match column {
                "username" => r.user_username.clone(),
                "mobile" => r.mobile_number().to_string(),
                "email" => r.user_email.clone(),
                _ => r.number.clone(),
            }
        };
        rows.sort_by_cached_key(|r| key(r));
        if get("order[0][dir]").eq_ignore_ascii_case("desc") {
            rows.reverse();
        }
        let filtered = rows.len();
        let start = usize::try_from(php_int(get("start"))).unwrap_or(0);
        let length = usize::try_from(php_int(get("length"))).ok().filter(|l| *l > 0).unwrap_or(usize::MAX);
        let data: Vec<Value> = rows
            .iter()
            .skip(start)
            .take(length)
            .map(|r| {
                let id = r.id.map(|i| i.to_string()).unwrap_or_default();
                let disabled = r.sip_disabled == "1";
                json!({
                    "id": id,
                    "username": r.user_username,
                    "number": r.number,
                    "mobile": r.mobile_number(),
                    "user_id": r.user_id.map(|u| u.to_string()).unwrap_or_default(),
                    "disabled": disabled,
                    "email": r.user_email,
                    "type": "SIP",
                    "avatar": if r.user_avatar.is_empty() { DEFAULT_AVATAR } else { r.user_avatar.as_str() },
                    "DT_RowId": id,
                    "DT_RowClass": if disabled { "extension-row disabled" } else { "extension-row" },
                })
            })
            .collect();
        axum::Json(json!({"draw": php_int(get("draw")), "recordsFiltered": filtered, "data": data}))
            .into_response()
    }

    // --- v3 --------------------------------------------------------------------------------

    fn v3_data(
        &self,
        headers: &HeaderMap,
        query: &str,
        body: &[u8],
    ) -> Result<Map<String, Value>, Box<Response>> {
        let ct = content_type(headers);
        let mut data = Map::new();
        if ct.starts_with("application/json") {
            if !body.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(m)) => data = m,
                    _ => {
                        let msg = "Invalid JSON in request body";
                        return Err(Box::new(self.v3_error(StatusCode::BAD_REQUEST, msg)));
                    }
                }
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            for (k, v) in super::form_pairs(body) {
                data.insert(k, Value::String(v));
            }
        }
        for (k, v) in super::form_pairs(query.as_bytes()) {
            data.insert(k, Value::String(v));
        }
        Ok(data)
    }

    fn v3_record_json(&self, s: &Store, rec: &Record) -> Value {
        let rep = |v: &str| Value::String(s.represent_number(v));
        json!({
            "id": rec.user_id.map(|u| u.to_string()).unwrap_or_default(),
            "user_username": rec.user_username,
            "user_email": rec.user_email,
            "user_avatar": rec.user_avatar,
            "number": rec.number,
            "extensions_length": self.cfg.extension_length,
            "sip_secret": rec.sip_secret,
            "sip_enableRecording": !(rec.sip_enable_recording.is_empty() || rec.sip_enable_recording == "0"),
            "sip_dtmfmode": rec.sip_dtmfmode,
            "sip_transport": rec.sip_transport,
            "sip_manualattributes": rec.sip_manualattributes,
            "sip_networkfilterid": rec.sip_networkfilterid,
            "sip_networkfilterid_represent": if rec.sip_networkfilterid == "none" { "Any network".to_string() } else { format!("Network filter {}", rec.sip_networkfilterid) },
            "fwd_ringlength": rec.fwd_ringlength,
            "fwd_forwarding": rec.fwd_forwarding,
            "fwd_forwarding_represent": rep(&rec.fwd_forwarding),
            "fwd_forwardingonbusy": rec.fwd_onbusy,
            "fwd_forwardingonbusy_represent": rep(&rec.fwd_onbusy),
            "fwd_forwardingonunavailable": rec.fwd_onunavailable,
            "fwd_forwardingonunavailable_represent": rep(&rec.fwd_onunavailable),
            "mobile_number": rec.mobile_number(),
            "mobile_dialstring": rec.mobile_dialstring(),
        })
    }

    fn v3_list(&self, query: &str) -> Response {
        let q: HashMap<String, String> = super::form_pairs(query.as_bytes()).into_iter().collect();
        let st = lock(&self.state);
        let s = &st.store;
        let search = q.get("search").map(|v| v.trim().to_lowercase()).unwrap_or_default();
        let mut rows: Vec<Record> = s
            .users
            .keys()
            .filter_map(|u| s.record_of_user(*u))
            .filter(|r| v3_search_matches(r, &search))
            .collect();
        let key = |r: &Record| -> String {
            match q.get("order_by").map(String::as_str) {
                Some("username") => r.user_username.clone(),
                Some("number") => r.number.clone(),
                Some("mobile") => r.mobile_dialstring().to_string(),
                Some("email") => r.user_email.clone(),
                _ => String::new(),
            }
        };
        rows.sort_by(|a, b| key(a).cmp(&key(b)).then(a.user_id.cmp(&b.user_id)));
        if q.get("order_direction").is_some_and(|d| d.eq_ignore_ascii_case("desc")) {
            rows.reverse();
        }
        let total = rows.len();
        let page: Vec<&Record> = if q.contains_key("limit") || q.contains_key("offset") {
            let limit = q.get("limit").map(|l| php_int(l)).unwrap_or(0);
            let limit = if limit <= 0 {
                self.cfg.v3_default_limit
            } else {
                usize::try_from(limit).unwrap_or(usize::MAX)
            };
            let limit = limit.min(self.cfg.v3_max_limit);
            let offset = q.get("offset").map(|o| php_int(o)).unwrap_or(0);
            let offset = usize::try_from(offset).unwrap_or(0);
            rows.iter().skip(offset).take(limit).collect()
        } else {
            rows.iter().collect()
        };
        let items: Vec<Value> = page
            .iter()
            .map(|r| {
                let mobile =
                    if r.mobile_dialstring().is_empty() { r.mobile_number() } else { r.mobile_dialstring() };
                json!({
                    "id": r.user_id,
                    "number": r.number,
                    "user_username": r.user_username,
                    "user_email": r.user_email,
                    "mobile": mobile,
                    "avatar": if r.user_avatar.is_empty() { DEFAULT_AVATAR } else { r.user_avatar.as_str() },
                    "disabled": r.sip_disabled == "1",
                })
            })
            .collect();
        let data = json!({"data": items, "recordsTotal": total, "recordsFiltered": total});
        self.v3_reply(StatusCode::OK, "getList", Ok(data), vec![])
    }

    fn v3_get(&self, id: &str) -> Response {
        let st = lock(&self.state);
        let rec = id.parse::<u64>().ok().and_then(|u| st.store.record_of_user(u));
        match rec {
            Some(rec) => {
                let data = self.v3_record_json(&st.store, &rec);
                self.v3_reply(StatusCode::OK, "getRecord", Ok(data), vec![])
            }
            None => {
                let (status, explicit) = self.v3_soft_not_found();
                self.v3_fail(
                    status,
                    "getRecord",
                    vec![format!("Employee with user_id {id} not found")],
                    explicit,
                )
            }
        }
    }

    fn v3_soft_not_found(&self) -> (StatusCode, bool) {
        if self.cfg.v3_not_found_always_404 {
            (StatusCode::NOT_FOUND, true)
        } else {
            (StatusCode::UNPROCESSABLE_ENTITY, false)
        }
    }

    fn v3_get_default(&self) -> Response {
        let mut st = lock(&self.state);
        let Inner { store, rng, .. } = &mut *st;
        let rec = Record {
            number: store.next_free_number(&self.cfg),
            sip_secret: new_v3_secret(rng),
            sip_enable_recording: "1".into(),
            sip_dtmfmode: "auto".into(),
            sip_transport: "udp".into(),
            sip_networkfilterid: "none".into(),
            fwd_ringlength: 45,
            ..Record::default()
        };
        let data = self.v3_record_json(store, &rec);
        self.v3_reply(StatusCode::OK, "getDefault", Ok(data), vec![])
    }

    fn v3_delete(&self, id: &str) -> Response {
        let mut st = lock(&self.state);
        let uid = id.parse::<u64>().ok().filter(|u| st.store.users.contains_key(u));
        let Some(uid) = uid else {
            let (status, explicit) = self.v3_soft_not_found();
            return self.v3_fail(status, "delete", vec![format!("Employee not found (ID: {id})")], explicit);
        };
        let refused = st.store.restrict_messages(uid);
        if !refused.is_empty() {
            return self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, "delete", refused, false);
        }
        st.store.delete_user(uid);
        self.v3_reply(StatusCode::OK, "delete", Ok(json!({"deleted_id": id})), vec![])
    }

    fn v3_write(&self, op: V3Op, id: Option<&str>, data: &Map<String, Value>) -> Response {
        let function = match op {
            V3Op::Create => "create",
            V3Op::Put => "update",
            V3Op::Patch => "patch",
        };
        let mut st = lock(&self.state);
        let uid = match id {
            None => None,
            Some(id) => match id.parse::<u64>().ok().filter(|u| st.store.users.contains_key(u)) {
                Some(u) => Some(u),
                None => {
                    let msg = match op {
                        V3Op::Patch => format!("Employee not found for patch operation (ID: {id})"),
                        _ => "Employee not found".to_string(),
                    };
                    return self.v3_fail(StatusCode::NOT_FOUND, function, vec![msg], true);
                }
            },
        };
        let current = uid.and_then(|u| st.store.record_of_user(u));
        let (sent, mut schema) = v3_sanitize(data);
        let eff = v3_effective(op, &sent, current.as_ref());

        // Required fields: keyed by field, untranslated.
        let mut required = Map::new();
        if eff.number.as_deref().unwrap_or("").is_empty() {
            required.insert("number".into(), json!("ex_ValidateNumberIsEmpty"));
        }
        if eff.user_username.as_deref().unwrap_or("").is_empty() {
            required.insert("user_username".into(), json!("ex_ValidateUsernameIsEmpty"));
        }
        if op == V3Op::Create && eff.sip_secret.as_deref().unwrap_or("").is_empty() {
            required.insert("sip_secret".into(), json!("ex_ValidateSecretIsEmpty"));
        }
        if !required.is_empty() {
            return self.v3_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                function,
                Err(Value::Object(required)),
                vec![],
            );
        }

        // Schema checks on what was sent.
        if let Some(n) = &sent.number
            && !number_pattern(n)
        {
            schema.push("Field 'number' does not match the required pattern ^[0-9]{2,8}$".into());
        }
        if let Some(v) = &sent.sip_dtmfmode
            && !["auto", "auto_info", "inband", "rfc4733", "info"].contains(&v.as_str())
        {
            schema.push("Field 'sip_dtmfmode' must be one of: auto, auto_info, inband, rfc4733, info".into());
        }
        if let Some(v) = &sent.sip_transport
            && !["udp", "tcp", "tls", "udp,tcp"].contains(&v.as_str())
        {
            schema.push("Field 'sip_transport' must be one of: udp, tcp, tls, udp,tcp".into());
        }
        if let Some(v) = &sent.sip_networkfilterid
            && !(v == "none" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())))
        {
            schema.push(
                "Field 'sip_networkfilterid' does not match the required pattern ^([0-9]+|none)$".into(),
            );
        }
        if let Some(r) = sent.fwd_ringlength {
            if r > 180 {
                schema.push(format!("Field 'fwd_ringlength' must be at most 180 (got {r})"));
            } else if r < 0 {
                schema.push(format!("Field 'fwd_ringlength' must be at least 0 (got {r})"));
            }
        }
        if !schema.is_empty() {
            return self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, function, schema, false);
        }

        // Business checks.
        let mut business = Vec::new();
        if let Some(secret) = sent.sip_secret.as_deref().filter(|s| !s.is_empty()) {
            let len = secret.chars().count();
            if len < 5 {
                business.push(MSG_V3_SECRET_SHORT.to_string());
            } else if self.cfg.v3_password_policy && len > 64 {
                business.push(MSG_V3_SECRET_LONG.to_string());
            } else if self.cfg.v3_password_policy && password_score(secret) < 60 {
                business.push(MSG_V3_SECRET_WEAK.to_string());
            }
        }
        if let Some(email) = sent.user_email.as_deref().filter(|e| !e.is_empty())
            && !email_valid(email)
        {
            business.push(MSG_V3_EMAIL.to_string());
        }
        let s = &st.store;
        let number = eff.number.clone().unwrap_or_default();
        let taken = s.exts.values().any(|e| e.number == number && e.userid.is_some() && e.userid != uid);
        if taken {
            business.push(MSG_V3_OCCUPIED.to_string());
        }
        if let Some(m) = eff.mobile_number.as_deref().filter(|m| !m.is_empty()) {
            if sent.mobile_number.is_some() && !mobile_pattern(m) {
                business.push(MSG_V3_MOBILE_BAD.to_string());
            }
            let other = s.exts.values().any(|e| {
                e.number == m && e.kind == ExtKind::External && e.userid.is_some() && e.userid != uid
            });
            if other {
                business.push(MSG_V3_MOBILE_TAKEN.to_string());
            }
        }
        let forwarding = eff
            .fwd_forwarding
            .clone()
            .or_else(|| current.as_ref().map(|c| c.fwd_forwarding.clone()))
            .unwrap_or_default();
        let ring = eff.fwd_ringlength.or_else(|| current.as_ref().map(|c| c.fwd_ringlength)).unwrap_or(0);
        if !forwarding.is_empty() && !(3..=180).contains(&ring) {
            business.push(MSG_V3_RINGLENGTH.to_string());
        }
        let targets = [
            eff.fwd_forwarding.clone().or_else(|| current.as_ref().map(|c| c.fwd_forwarding.clone())),
            eff.fwd_onbusy.clone().or_else(|| current.as_ref().map(|c| c.fwd_onbusy.clone())),
            eff.fwd_onunavailable.clone().or_else(|| current.as_ref().map(|c| c.fwd_onunavailable.clone())),
        ];
        if targets.iter().flatten().any(|t| !t.is_empty() && *t == number) {
            business.push(MSG_V3_OWN_NUMBER.to_string());
        }
        if !business.is_empty() {
            return self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, function, business, false);
        }

        let Inner { store, rng, .. } = &mut *st;
        match store.v3_save(uid, &eff, &self.cfg, rng) {
            Err(errors) => self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, function, errors, false),
            Ok(uid) => {
                let data =
                    store.record_of_user(uid).map(|r| self.v3_record_json(store, &r)).unwrap_or(Value::Null);
                if op == V3Op::Create {
                    let extra =
                        vec![("httpCode", json!(201)), ("reload", json!(format!("extensions/modify/{uid}")))];
                    self.v3_reply(StatusCode::CREATED, function, Ok(data), extra)
                } else {
                    self.v3_reply(StatusCode::OK, function, Ok(data), vec![])
                }
            }
        }
    }

    fn v3_login(&self, peer: IpAddr, data: &Map<String, Value>) -> Response {
        let s = |k: &str| data.get(k).map(value_to_form).unwrap_or_default();
        let (login, password) = (s("login"), s("password"));
        if login.is_empty() || password.is_empty() {
            return self.v3_auth_fail(StatusCode::BAD_REQUEST, "login", "auth_LoginPasswordRequired");
        }
        let remember = matches!(s("rememberMe").as_str(), "1" | "true" | "on");
        let mut st = lock(&self.state);
        if throttled(&mut st.v3_failures, peer, &self.cfg) {
            drop(st);
            return self.v3_auth_fail(StatusCode::TOO_MANY_REQUESTS, "login", MSG_THROTTLED);
        }
        let Some(role) = self.check_login(&login, &password) else {
            st.v3_failures.entry(peer).or_default().push(Instant::now());
            drop(st);
            return self.v3_auth_fail(StatusCode::UNAUTHORIZED, "login", MSG_V3_BAD_LOGIN);
        };
        st.v3_failures.remove(&peer);
        drop(st);
        self.issue_tokens(role, &login, remember, "login")
    }

    fn issue_tokens(&self, role: Role, login: &str, remember: bool, function: &'static str) -> Response {
        let mut st = lock(&self.state);
        let now = Instant::now();
        let issued_at = unix_now();
        let lifetime = self.cfg.access_token_lifetime.as_secs();
        let role_name = match role {
            Role::Admin => "admins",
            Role::Restricted(_) => "restricted",
        };
        let mut sig = [0u8; 32];
        st.rng.fill(&mut sig[..]);
        let jwt = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(
                json!({"sub": login, "role": role_name, "iat": issued_at, "exp": issued_at + lifetime})
                    .to_string()
            ),
            URL_SAFE_NO_PAD.encode(sig)
        );
        let refresh = random_hex(&mut st.rng, 64);
        st.access
            .insert(jwt.clone(), Token { role: role.clone(), expires: now + self.cfg.access_token_lifetime });
        st.refresh.insert(
            refresh.clone(),
            RefreshToken { role, login: login.to_string(), expires: now + self.cfg.refresh_token_lifetime },
        );
        drop(st);
        let data = json!({"accessToken": jwt, "tokenType": "Bearer", "expiresIn": lifetime, "login": login});
        let mut resp = self.v3_auth_reply(function, data);
        let max_age = if remember {
            format!("; Max-Age={}", self.cfg.refresh_token_lifetime.as_secs())
        } else {
            String::new()
        };
        let c =
            format!("refreshToken={refresh}; Path=/pbxcore/api/v3/auth; HttpOnly; SameSite=Strict{max_age}");
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    }

    fn v3_auth_reply(&self, function: &'static str, data: Value) -> Response {
        let processor = format!("MikoPBX\\PBXCoreREST\\Lib\\Auth\\{}Action::main", capitalize(function));
        let body = self.payload(true, function, &processor, data, json!([]));
        send(StatusCode::OK, body, function)
    }

    fn v3_auth_fail(&self, status: StatusCode, function: &'static str, msg: &str) -> Response {
        let processor = format!("MikoPBX\\PBXCoreREST\\Lib\\Auth\\{}Action::main", capitalize(function));
        let mut body = self.payload(false, function, &processor, json!([]), json!({"error": [msg]}));
        body.insert("httpCode".into(), json!(status.as_u16()));
        send(status, body, function)
    }

    fn v3_refresh(&self, headers: &HeaderMap) -> Response {
        let token = cookie(headers, "refreshToken");
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.refresh.retain(|_, t| t.expires > now);
        let found = token.and_then(|t| st.refresh.remove(&t));
        drop(st);
        match found {
            Some(rt) => self.issue_tokens(rt.role, &rt.login, true, "refresh"),
            None => {
                self.v3_auth_fail(StatusCode::UNAUTHORIZED, "refresh", "Invalid or expired refresh token")
            }
        }
    }

    fn v3_logout(&self, headers: &HeaderMap) -> Response {
        let mut st = lock(&self.state);
        if let Some(t) = cookie(headers, "refreshToken") {
            st.refresh.remove(&t);
        }
        if let Some(b) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            st.access.remove(b.trim());
        }
        drop(st);
        self.v3_auth_reply("logout", json!({"success": true}))
    }
}

fn legacy_record_json(store: &Store, ext_id: u64, rng: &mut StdRng) -> Value {
    match store.record_of_ext(ext_id) {
        Some(r) => Value::Object(r.legacy_json(&new_uniqid("EXTERNAL-", rng))),
        None => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------
// v3 field handling

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V3Op {
    Create,
    Put,
    Patch,
}

/// v3 writable fields; `None` = not sent (or: keep).
#[derive(Clone, Debug, Default)]
struct V3Fields {
    number: Option<String>,
    user_username: Option<String>,
    user_email: Option<String>,
    user_avatar: Option<String>,
    sip_secret: Option<String>,
    sip_dtmfmode: Option<String>,
    sip_transport: Option<String>,
    sip_manualattributes: Option<String>,
    sip_enable_recording: Option<bool>,
    sip_networkfilterid: Option<String>,
    fwd_ringlength: Option<i64>,
    fwd_forwarding: Option<String>,
    fwd_onbusy: Option<String>,
    fwd_onunavailable: Option<String>,
    mobile_number: Option<String>,
    mobile_dialstring: Option<String>,
}

/// Keep known fields, trim, strip non-digits from a pattern field that does not match,
/// truncate to the maximum length. Returns type errors for the schema stage.
fn v3_sanitize(data: &Map<String, Value>) -> (V3Fields, Vec<String>) {
    let mut errors = Vec::new();
    let mut text = |key: &str, max: usize, pattern: Option<fn(&str) -> bool>| -> Option<String> {
        let v = data.get(key)?;
        let raw = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Value::Null => String::new(),
            _ => {
                errors.push(format!("Field '{key}' must be a string"));
                return None;
            }
        };
        let mut s = raw.trim().to_string();
        if let Some(p) = pattern
            && !s.is_empty()
            && !p(&s)
        {
            s = digits(&s);
        }
        Some(s.chars().take(max).collect())
    };
    let mut f = V3Fields {
        number: text("number", 8, Some(number_pattern)),
        user_username: text("user_username", 100, None),
        user_email: text("user_email", 255, None),
        user_avatar: text("user_avatar", usize::MAX, None),
        sip_secret: text("sip_secret", 100, None),
        sip_dtmfmode: text("sip_dtmfmode", 64, None),
        sip_transport: text("sip_transport", 64, None),
        sip_manualattributes: text("sip_manualattributes", 1024, None),
        sip_networkfilterid: text(
            "sip_networkfilterid",
            64,
            Some(|s| s == "none" || s.bytes().all(|b| b.is_ascii_digit())),
        ),
        fwd_forwarding: text("fwd_forwarding", 64, None),
        fwd_onbusy: text("fwd_forwardingonbusy", 64, None),
        fwd_onunavailable: text("fwd_forwardingonunavailable", 64, None),
        mobile_number: text("mobile_number", 50, Some(mobile_pattern)),
        mobile_dialstring: text("mobile_dialstring", 255, None),
        ..V3Fields::default()
    };
    if f.user_email.as_deref() == Some("_@_._") {
        f.user_email = Some(String::new());
    }
    if let Some(name) = &f.user_username {
        let lower = name.to_lowercase();
        if ["<script", "javascript:", "<?php"].iter().any(|d| lower.contains(d)) {
            errors.push("Dangerous content detected in fields: user_username".into());
        }
    }
    match data.get("sip_enableRecording") {
        None => {}
        Some(Value::Bool(b)) => f.sip_enable_recording = Some(*b),
        Some(v) => match value_to_form(v).trim() {
            "1" | "true" | "on" => f.sip_enable_recording = Some(true),
            "0" | "false" | "off" | "" => f.sip_enable_recording = Some(false),
            _ => errors.push("Field 'sip_enableRecording' must be a boolean".into()),
        },
    }
    match data.get("fwd_ringlength") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => f.fwd_ringlength = Some(i),
            None => errors.push("Field 'fwd_ringlength' must be an integer".into()),
        },
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => f.fwd_ringlength = Some(i),
            Err(_) => errors.push("Field 'fwd_ringlength' must be an integer".into()),
        },
        Some(_) => errors.push("Field 'fwd_ringlength' must be an integer".into()),
    }
    (f, errors)
}

fn v3_effective(op: V3Op, sent: &V3Fields, current: Option<&Record>) -> V3Fields {
    let or = |v: &Option<String>, d: &str| Some(v.clone().unwrap_or_else(|| d.to_string()));
    match (op, current) {
        (V3Op::Patch, Some(cur)) => {
            let pick = |v: &Option<String>, c: &str| Some(v.clone().unwrap_or_else(|| c.to_string()));
            let mut f = V3Fields {
                number: pick(&sent.number, &cur.number),
                user_username: pick(&sent.user_username, &cur.user_username),
                user_email: pick(&sent.user_email, &cur.user_email),
                user_avatar: pick(&sent.user_avatar, &cur.user_avatar),
                sip_secret: sent.sip_secret.clone().filter(|s| !s.is_empty()),
                sip_dtmfmode: pick(&sent.sip_dtmfmode, &cur.sip_dtmfmode),
                sip_transport: pick(&sent.sip_transport, &cur.sip_transport),
                sip_manualattributes: pick(&sent.sip_manualattributes, &cur.sip_manualattributes),
                sip_enable_recording: sent
                    .sip_enable_recording
                    .or(Some(!(cur.sip_enable_recording.is_empty() || cur.sip_enable_recording == "0"))),
                sip_networkfilterid: pick(&sent.sip_networkfilterid, &cur.sip_networkfilterid),
                fwd_ringlength: sent.fwd_ringlength.or(Some(cur.fwd_ringlength)),
                fwd_forwarding: pick(&sent.fwd_forwarding, &cur.fwd_forwarding),
                fwd_onbusy: pick(&sent.fwd_onbusy, &cur.fwd_onbusy),
                fwd_onunavailable: pick(&sent.fwd_onunavailable, &cur.fwd_onunavailable),
                mobile_number: pick(&sent.mobile_number, cur.mobile_number()),
                mobile_dialstring: pick(&sent.mobile_dialstring, cur.mobile_dialstring()),
            };
            if sent.mobile_number.as_deref() == Some("") && sent.mobile_dialstring.is_none() {
                f.mobile_dialstring = Some(String::new());
            }
            if sent.fwd_forwarding.as_deref().is_some_and(|v| !v.is_empty()) && sent.fwd_ringlength.is_none()
            {
                f.fwd_ringlength = Some(45);
            }
            f
        }
        (V3Op::Put, cur) | (V3Op::Patch, cur) => {
            let mut f = sent.clone();
            if f.mobile_number.is_none() {
                f.mobile_number = Some(String::new());
            }
            if f.sip_secret.as_deref() == Some("") {
                f.sip_secret = None;
            }
            let forwarding = f
                .fwd_forwarding
                .clone()
                .or_else(|| cur.map(|c| c.fwd_forwarding.clone()))
                .unwrap_or_default();
            if f.fwd_ringlength.is_none() && forwarding.is_empty() {
                f.fwd_ringlength = Some(0);
            }
            f
        }
        (V3Op::Create, _) => V3Fields {
            number: sent.number.clone(),
            user_username: sent.user_username.clone(),
            user_email: or(&sent.user_email, ""),
            user_avatar: or(&sent.user_avatar, ""),
            sip_secret: sent.sip_secret.clone(),
            sip_dtmfmode: or(&sent.sip_dtmfmode, "auto"),
            sip_transport: or(&sent.sip_transport, "udp"),
            sip_manualattributes: or(&sent.sip_manualattributes, ""),
            sip_enable_recording: Some(sent.sip_enable_recording.unwrap_or(true)),
            sip_networkfilterid: or(&sent.sip_networkfilterid, "none"),
            fwd_ringlength: Some(sent.fwd_ringlength.unwrap_or(45)),
            fwd_forwarding: or(&sent.fwd_forwarding, ""),
            fwd_onbusy: or(&sent.fwd_onbusy, ""),
            fwd_onunavailable: or(&sent.fwd_onunavailable, ""),
            mobile_number: or(&sent.mobile_number, ""),
            mobile_dialstring: or(&sent.mobile_dialstring, ""),
        },
    }
}

fn v3_search_matches(r: &Record, search: &str) -> bool {
    if search.is_empty() {
        return true;
    }
    if let Some(id) = search.strip_prefix("id:") {
        return r.user_id.map(|u| u.to_string()).as_deref() == Some(id.trim());
    }
    if let Some(e) = search.strip_prefix("email:") {
        return r.user_email.to_lowercase().contains(e.trim());
    }
    if let Some(n) = search.strip_prefix("number:") {
        return r.number == n.trim();
    }
    if let Some(m) = search.strip_prefix("mobile:") {
        return r.mobile_dialstring().contains(m.trim());
    }
    let index =
        format!("{} {} {} {}", r.user_username, r.number, r.mobile_number(), r.user_email).to_lowercase();
    r.user_username.to_lowercase().contains(search) || index.contains(search)
}

fn number_pattern(s: &str) -> bool {
    (2..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn mobile_pattern(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or(s);
    (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

fn email_valid(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(char::is_whitespace)
}

/// Stand-in for PasswordService's dictionary + score rule: length and character classes,
/// zero for common passwords and single repeated characters, a penalty for runs like 1234.
fn password_score(p: &str) -> u32 {
    let len = p.chars().count();
    if COMMON_PASSWORDS.contains(&p.to_lowercase().as_str()) {
        return 0;
    }
    let mut chars = p.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return 0;
    }
    let mut score = 0u32;
    for (min, pts) in [(8, 25), (12, 15), (16, 10)] {
        if len >= min {
            score += pts;
        }
    }
    let classes = [
        p.chars().any(|c| c.is_lowercase()),
        p.chars().any(|c| c.is_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_alphanumeric()),
    ];
    score += 10 * classes.iter().filter(|c| **c).count() as u32;
    let lower = p.to_lowercase();
    let runs = ["0123", "1234", "2345", "3456", "4567", "5678", "6789", "abcd", "qwer", "asdf"];
    if runs.iter().any(|r| lower.contains(r)) {
        score = score.saturating_sub(20);
    }
    score
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
    super::form_pairs(q.as_deref().unwrap_or("").as_bytes()).into_iter().collect()
}

async fn legacy_get(
    State(sim): Sim,
    Path(action): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    sim.legacy(&Method::GET, &action, ip, &headers, query_map(&q), HashMap::new())
}

async fn legacy_post(
    State(sim): Sim,
    Path(action): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    // PHP fills $_POST only from form bodies.
    let post = if content_type(&headers).starts_with("application/x-www-form-urlencoded") {
        super::form_pairs(&body).into_iter().collect()
    } else {
        HashMap::new()
    };
    sim.legacy(&Method::POST, &action, ip, &headers, query_map(&q), post)
}

async fn session_start(State(sim): Sim, Peer(ip): Peer, headers: HeaderMap, body: Bytes) -> Response {
    let form = if content_type(&headers).starts_with("application/x-www-form-urlencoded") {
        super::form_pairs(&body).into_iter().collect()
    } else {
        HashMap::new()
    };
    sim.session_start(ip, &headers, &form)
}

async fn get_new_records(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let form = if content_type(&headers).starts_with("application/x-www-form-urlencoded") {
        super::form_pairs(&body).into_iter().collect()
    } else {
        HashMap::new()
    };
    sim.admin_get_new_records(&headers, &form)
}

async fn pbxcore_not_found(State(sim): Sim, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/pbxcore/api/v3/") {
        sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND)
    } else {
        sim.legacy_framework_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND)
    }
}

async fn admin_not_found() -> Response {
    html(StatusCode::NOT_FOUND, "<html><body>Page not found</body></html>")
}

async fn v3_method_not_allowed() -> Response {
    let body = json!({"result": false, "messages": {"error": ["Method not allowed"]}});
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    resp.extensions_mut().insert(OpName("methodNotAllowed"));
    resp
}

async fn v3_login(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(data) => sim.v3_login(ip, &data),
        Err(resp) => *resp,
    }
}

async fn v3_refresh(State(sim): Sim, headers: HeaderMap) -> Response {
    sim.v3_refresh(&headers)
}

async fn v3_logout(State(sim): Sim, headers: HeaderMap) -> Response {
    sim.v3_logout(&headers)
}

async fn v3_list_handler(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(r) = sim.v3_auth(ip, &headers, "getList") {
        return r;
    }
    sim.v3_list(q.as_deref().unwrap_or(""))
}

async fn v3_get_default_handler(State(sim): Sim, Peer(ip): Peer, headers: HeaderMap) -> Response {
    if let Some(r) = sim.v3_auth(ip, &headers, "getDefault") {
        return r;
    }
    sim.v3_get_default()
}

async fn v3_create_handler(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(r) = sim.v3_auth(ip, &headers, "create") {
        return r;
    }
    let data = match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    // A POST that carries an id is a save of that record, not a create.
    match data.get("id").map(value_to_form).filter(|i| !i.is_empty()) {
        Some(id) => sim.v3_write(V3Op::Put, Some(&id), &data),
        None => sim.v3_write(V3Op::Create, None, &data),
    }
}

async fn v3_get_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
) -> Response {
    if !is_digits(&id) {
        return sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "getRecord") {
        return r;
    }
    sim.v3_get(&id)
}

async fn v3_put_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    v3_update(sim, id, ip, headers, q, body, V3Op::Put, "update")
}

async fn v3_patch_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    v3_update(sim, id, ip, headers, q, body, V3Op::Patch, "patch")
}

#[allow(clippy::too_many_arguments)]
fn v3_update(
    sim: Arc<MikoPbxSim>,
    id: String,
    ip: IpAddr,
    headers: HeaderMap,
    q: Option<String>,
    body: Bytes,
    op: V3Op,
    action: &str,
) -> Response {
    if !is_digits(&id) {
        return sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    }
    if let Some(r) = sim.v3_auth(ip, &headers, action) {
        return r;
    }
    match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(data) => sim.v3_write(op, Some(&id), &data),
        Err(r) => *r,
    }
}

async fn v3_delete_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
) -> Response {
    if !is_digits(&id) {
        return sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "delete") {
        return r;
    }
    sim.v3_delete(&id)
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Adds `meta` (timestamp, hash), serialises, sets the `E-Tag` header and the stats name.
fn send(status: StatusCode, mut body: Map<String, Value>, op: &'static str) -> Response {
    let timestamp = rfc3339_utc(unix_now());
    let hash = sha1_hex(timestamp.as_bytes());
    body.insert("meta".into(), json!({"timestamp": timestamp, "hash": hash}));
    let text = Value::Object(body).to_string();
    let etag = sha1_hex(text.as_bytes());
    let mut resp =
        (status, [(header::CONTENT_TYPE, "application/json; charset=UTF-8")], text).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(HeaderName::from_static("e-tag"), v);
    }
    resp.extensions_mut().insert(OpName(op));
    resp
}

fn html(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=UTF-8")], body.to_string()).into_response()
}

fn legacy_op(action: &str) -> &'static str {
    match action {
        "getRecord" => "getRecord",
        "saveRecord" => "saveRecord",
        "deleteRecord" => "deleteRecord",
        "getForSelect" => "getForSelect",
        "available" => "available",
        _ => "unknownAction",
    }
}

fn legacy_processor(release: LegacyRelease, action: &str) -> String {
    let class = match (release, action) {
        (LegacyRelease::V2023_2, "getRecord") => "GetRecord::main",
        (LegacyRelease::V2023_2, "saveRecord") => "SaveRecord::main",
        (LegacyRelease::V2023_2, "deleteRecord") => "DeleteRecord::main",
        (LegacyRelease::V2023_2, "getForSelect") => "Dropdowns::getForSelect",
        (LegacyRelease::V2023_2, "available") => "Utils::ifNumberAvailable",
        (LegacyRelease::V2024_1, "getRecord") => "GetRecordAction::main",
        (LegacyRelease::V2024_1, "saveRecord") => "SaveRecordAction::main",
        (LegacyRelease::V2024_1, "deleteRecord") => "DeleteRecordAction::main",
        (LegacyRelease::V2024_1, "getForSelect") => "DropdownsAction::main",
        (LegacyRelease::V2024_1, "available") => "AvailableAction::main",
        _ => return "MikoPBX\\PBXCoreREST\\Lib\\ExtensionsManagementProcessor::callBack".into(),
    };
    format!("{LEGACY_NS}{class}")
}

fn v3_action_class(function: &str) -> &'static str {
    match function {
        "getList" => "GetListAction",
        "getRecord" => "GetRecordAction",
        "getDefault" => "GetDefaultAction",
        "create" => "SaveRecordAction",
        "update" => "UpdateRecordAction",
        "patch" => "PatchRecordAction",
        "delete" => "DeleteRecordAction",
        _ => "UnknownAction",
    }
}

fn legacy_transport_default(release: LegacyRelease) -> &'static str {
    match release {
        LegacyRelease::V2023_2 => " ",
        LegacyRelease::V2024_1 => "",
    }
}

/// 2023.2 strips every forwarding value to digits; 2024.1 keeps the routing keywords.
fn legacy_fwd(value: &str, release: LegacyRelease) -> String {
    if release == LegacyRelease::V2024_1 && ["voicemail", "busy", "hangup"].contains(&value) {
        return value.to_string();
    }
    digits(value)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// PHP `(int)` cast: optional sign and leading digits, 0 otherwise.
fn php_int(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let n = rest
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |acc, b| acc.saturating_mul(10).saturating_add(i64::from(b - b'0')));
    if neg { -n } else { n }
}

fn value_to_form(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase()
}

fn is_xhr(headers: &HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// True when `ip` has used up its failed logins within the window.
fn throttled(failures: &mut HashMap<IpAddr, Vec<Instant>>, ip: IpAddr, cfg: &MikoPbxConfig) -> bool {
    let now = Instant::now();
    let list = failures.entry(ip).or_default();
    list.retain(|t| now.duration_since(*t) < cfg.login_attempts_window);
    list.len() >= cfg.login_attempts
}

fn new_uniqid(prefix: &str, rng: &mut StdRng) -> String {
    format!("{prefix}{:08X}", rng.random::<u32>())
}

/// The shape the seed shows: base64 of base64 of 8 random bytes (16 characters).
fn new_legacy_secret(rng: &mut StdRng) -> String {
    let mut raw = [0u8; 8];
    rng.fill(&mut raw[..]);
    STANDARD.encode(STANDARD.encode(raw))
}

/// A v3 template password that passes the strength rule.
fn new_v3_secret(rng: &mut StdRng) -> String {
    const SETS: [&[u8]; 4] =
        [b"abcdefghjkmnpqrstuvwxyz", b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"23456789", b"#!%*+-"];
    (0..16)
        .map(|i| {
            let set = SETS[i % 4];
            char::from(set[rng.random_range(0..set.len())])
        })
        .collect()
}

fn random_token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

fn random_hex(rng: &mut StdRng, len: usize) -> String {
    (0..len).map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)])).collect()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `2023-09-06T08:51:51+00:00` (PHP `date('c')` in UTC).
fn rfc3339_utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    h.iter().map(|v| format!("{v:08x}")).collect()
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
