//! MikoPBX, in its three API generations, as its own server code behaves
//! (`github.com/mikopbx/Core` at tags 2023.2.206, 2024.1.114, 2026.1.223). Per call: what
//! is sent, what is accepted, the source that backs it and what is still a guess are in
//! `docs/compatibility.md`, section MikoPBX.
//!
//! MikoPBX keeps an employee in several rows (a user, its SIP extension, the SIP peer, the
//! forwarding rights, an optional mobile extension) and its API lines expose them
//! differently:
//!
//! - **Legacy** (2023.2 / 2024.1, [`MikoPbxLegacy`]): `/pbxcore/api/extensions/*`, trusted
//!   from 127.0.0.1 (not `::1`), otherwise through an admin web session
//!   (`POST /admin-cabinet/session/start`, cookie `PHPSESSID`). Business errors are HTTP
//!   200 with `result:false`. `saveRecord` is a form-encoded upsert that gives every
//!   omitted field its default, so every write is read-modify-write of the FULL record
//!   from `getRecord`. Records are addressed by `Extensions.id`, which no `/pbxcore` list
//!   returns: the admin cabinet's lists map numbers to ids (2024.1's DataTables endpoint
//!   `getNewRecords`; 2023.2's `extensions/index` page, whose JSON to an XHR request holds
//!   every employee), and where neither answers, the ids are enumerated with `getRecord`
//!   until every number `getForSelect` shows is found ([`legacy_list`]).
//! - **v3** (2026.1+, [`MikoPbxV3`]): `/pbxcore/api/v3/employees` (id = `Users.id`) with
//!   `Authorization: Bearer` (API key, or a JWT from `auth:login`), paged list, 201
//!   create, PATCH that merges into the stored record and validates the merged record,
//!   DELETE. Failures are 422 by default.
//!
//! Endpoints used:
//!
//! | operation | legacy | v3 |
//! |---|---|---|
//! | log in | `POST /admin-cabinet/session/start` (XHR, form), only when 127.0.0.1 is not trusted | `POST /pbxcore/api/v3/auth:login` (or the API key) |
//! | list | 2024.1: `getNewRecords` pages; 2023.2: `GET /admin-cabinet/extensions/index` (XHR); else `getForSelect` + `getRecord?id=1,2,…`; then `getRecord?id=` each | `GET …/v3/employees?limit&offset&order_by=number` pages + `GET …/v3/employees/{id}` each |
//! | find | the same, for one number | `GET …/v3/employees?search=number:<n>` + `GET …/{id}` |
//! | create | `POST saveRecord` (+ one `GET getRecord?id=` template per client, for the defaults) | `POST …/v3/employees` |
//! | update | `GET getRecord?id=` + `POST saveRecord` (full record) | `PATCH …/v3/employees/{id}` (changed fields) |
//! | delete | `POST …/extensions/deleteRecord` | `DELETE …/v3/employees/{id}` |
//! | a refusal's cause | `GET …/extensions/available?number=` | `POST …/v3/extensions:available` |
//!
//! Cost of a pass that lists N accounts (+1 login where a session is needed): 2024.1
//! `ceil(N/page)` table pages + N `getRecord`; 2023.2 1 page + N `getRecord`; the id scan
//! 1 `getForSelect` + one `getRecord` per id up to the highest employee's (it reads the
//! records as it goes), at most `1000 + 4 N` ids; v3 `ceil(N/1000)` list pages + N GETs. The
//! per-record reads are what make forwarding, recording and DTMF readable (no list
//! carries them). They run concurrently up to the PhoneSystem's `maxConcurrency`.
//!
//! Capabilities (both generations):
//!
//! | operation / field | supported | why |
//! |---|---|---|
//! | create, update, delete | yes | `saveRecord`/`deleteRecord`; v3 POST/PATCH/DELETE |
//! | extension | read, write | `number`; a legacy move first clears the forwarding row of the old number (it would stay behind and block deletes of its targets) |
//! | displayName | read, write | `user_username` (also the caller id) |
//! | email, mobile | read, write | `user_email`, `mobile_number` |
//! | enabled | read only | the lists show `disabled`; neither API can set it, so a person must |
//! | password | write only | `sip_secret`; never reported as readable |
//! | givenName, familyName, login | no | MikoPBX has a single name and no login per employee |
//! | settings `fwd_forwarding`, `fwd_forwardingonbusy`, `fwd_forwardingonunavailable`, `fwd_ringlength`, `sip_enableRecording`, `sip_dtmfmode` | read, write | from the Employee's `mikopbx` block |
//!
//! Neither generation has a free field for an ownership marker (`Account::marker` is
//! always `None`); ownership lives in the Employees' status. Account ids differ between
//! the generations (`Extensions.id` vs `Users.id`): switching a PhoneSystem's
//! `apiGeneration` orphans the recorded claims.

mod detail;
mod legacy;
mod legacy_list;
mod legacy_session;
mod password;
mod v3;

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub use legacy::MikoPbxLegacy;
pub use v3::MikoPbxV3;

use super::{Backend, Credentials, Error, Listing, Secret, http};
use crate::{
    api::{
        BackendKind, EmployeeSpec, Membership,
        employee::DtmfMode,
        phone_system::{MikoPbx, MikoPbxApiGeneration},
    },
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

/// Forward target when a call is not answered within the ring length.
pub const FWD_FORWARDING: &str = "fwd_forwarding";
/// Forward target when the line is busy.
pub const FWD_FORWARDING_ON_BUSY: &str = "fwd_forwardingonbusy";
/// Forward target when the phone is not registered.
pub const FWD_FORWARDING_ON_UNAVAILABLE: &str = "fwd_forwardingonunavailable";
/// Seconds to ring before forwarding on no answer (decimal).
pub const FWD_RING_LENGTH: &str = "fwd_ringlength";
/// Call recording, `true`/`false`.
pub const SIP_ENABLE_RECORDING: &str = "sip_enableRecording";
/// DTMF mode: `auto`, `auto_info`, `inband`, `rfc4733`, `info`.
pub const SIP_DTMF_MODE: &str = "sip_dtmfmode";

const SETTINGS: [&str; 6] = [
    FWD_FORWARDING,
    FWD_FORWARDING_ON_BUSY,
    FWD_FORWARDING_ON_UNAVAILABLE,
    FWD_RING_LENGTH,
    SIP_ENABLE_RECORDING,
    SIP_DTMF_MODE,
];

/// Rows per page of the 2024.1 admin table (the admin UI asks for a screenful).
const TABLE_PAGE_SIZE: usize = 100;

/// Employees per v3 list page: the 2026.1 code caps `limit` at 1000 (its OpenAPI
/// attributes advertise 100; a server that caps lower only makes more pages).
const V3_PAGE_SIZE: usize = 1000;

/// The model's duplicate-number message as 2023.2 and 2024.1 send it, whatever the
/// language: the translation key itself, which no message file translates there.
const DUPLICATE_KEY: &str = "mo_ThisNumberNotUniqueForExtensionsModels";

/// v3 `user_username` is 1–100 characters; longer names are silently truncated.
const V3_NAME_MAX: usize = 100;

/// What v3 refuses as "dangerous content" in `user_username`.
const V3_DANGEROUS: [&str; 3] = ["<script", "javascript:", "<?php"];

/// Which API line a client speaks; decides value formats the two store differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Generation {
    Legacy,
    V3,
}

/// The admin login (`username` + `password`), when the Secret has one; half of one is an
/// error naming the missing key.
fn admin_login(credentials: &Credentials) -> Result<Option<(Secret, Secret)>, Error> {
    match (credentials.get("username"), credentials.get("password")) {
        (Some(u), Some(p)) => Ok(Some((u.clone(), p.clone()))),
        (Some(_), None) => Err(Error::Credentials { key: "password" }),
        (None, Some(_)) => Err(Error::Credentials { key: "username" }),
        (None, None) => Ok(None),
    }
}

/// Whether the PBX will see this client as the local caller it trusts without a login.
/// The legacy API and admin cabinet trust `REMOTE_ADDR === '127.0.0.1'` only (2023.2 and
/// 2024.1 `isLocalHostRequest`), so a URL on `::1` or `localhost` (which may resolve to
/// `::1`) is a remote one there; v3 trusts 127.0.0.1 and ::1 (2026.1).
fn trusted_loopback(url: &str, generation: Generation) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match (generation, bare.parse::<std::net::IpAddr>()) {
        (Generation::Legacy, Ok(ip)) => ip == std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        (Generation::Legacy, Err(_)) => false,
        (Generation::V3, Ok(ip)) => ip.is_loopback(),
        (Generation::V3, Err(_)) => bare.eq_ignore_ascii_case("localhost"),
    }
}

fn check_generation(block: &MikoPbx, wanted: MikoPbxApiGeneration) -> Result<(), Error> {
    if block.api_generation == wanted {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "mikopbx: apiGeneration is {:?}, this client speaks {wanted:?}",
            block.api_generation
        )))
    }
}

fn capabilities() -> Capabilities {
    let mut readable: BTreeSet<Field> =
        [Field::Extension, Field::DisplayName, Field::Email, Field::Mobile].into_iter().collect();
    readable.extend(SETTINGS.iter().map(|k| Field::Setting((*k).to_owned())));
    let mut writable = readable.clone();
    writable.insert(Field::Password);
    // The lists show `disabled`, but no API can set it.
    readable.insert(Field::Enabled);
    Capabilities { create: true, update: true, delete: true, readable, writable }
}

/// The Employee as MikoPBX would store it: values normalised the way each generation
/// saves them, so that what is read back compares equal to what was written.
fn desired(
    generation: Generation,
    employee: &EmployeeSpec,
    membership: &Membership,
) -> Result<Attributes, Error> {
    let unfit = |field: String, rule: &str| Error::Unfit {
        system: BackendKind::Mikopbx,
        field,
        rule: rule.to_owned(),
    };
    let entry = format!("spec.phoneSystems[{}]", membership.name);
    let others = [
        ("thulium", membership.thulium.is_some()),
        ("apio", membership.apio.is_some()),
        ("telphin", membership.telphin.is_some()),
        ("ringostat", membership.ringostat.is_some()),
    ];
    if let Some((block, _)) = others.iter().find(|(_, set)| *set) {
        return Err(unfit(format!("{entry}.{block}"), "is a settings block for another system type"));
    }

    let extension = employee.extension_on(membership);
    let extension_field = if membership.extension.is_some() {
        format!("{entry}.extension")
    } else {
        "spec.extension".to_owned()
    };
    if !(2..=8).contains(&extension.len()) || !extension.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unfit(extension_field, "must be 2–8 digits"));
    }

    let mut name = employee.full_name();
    if generation == Generation::V3 {
        // v3 trims what it stores; compare with what it will hold.
        name = name.trim().to_owned();
        let field = if employee.display_name.is_some() { "spec.displayName" } else { "spec.givenName" };
        if name.chars().count() > V3_NAME_MAX {
            return Err(unfit(field.to_owned(), "the name may have at most 100 characters"));
        }
        let lower = name.to_lowercase();
        if V3_DANGEROUS.iter().any(|d| lower.contains(d)) {
            return Err(unfit(field.to_owned(), "must not contain markup or script"));
        }
    }
    if name.is_empty() {
        return Err(unfit("spec.displayName".to_owned(), "must not be empty"));
    }

    let digits = |n: &str| -> String { n.chars().filter(char::is_ascii_digit).collect() };
    // The legacy API keeps only the digits of the numbers it stores; v3 keeps a mobile
    // that matches `^\+?[1-9]\d{1,14}$` as sent (the CRD's pattern is that one).
    let mobile = |n: &str| match generation {
        Generation::Legacy => digits(n),
        Generation::V3 => n.trim().to_owned(),
    };

    let mut attributes = Attributes {
        display_name: Some(name),
        email: Some(employee.email.trim().to_owned()),
        mobile: employee.mobile.as_deref().map(mobile),
        enabled: Some(employee.enabled),
        ..Attributes::default()
    };

    if let Some(settings) = &membership.mikopbx {
        if let Some(fwd) = &settings.forwarding {
            let targets = [
                (FWD_FORWARDING, "onNoAnswer", &fwd.on_no_answer),
                (FWD_FORWARDING_ON_BUSY, "onBusy", &fwd.on_busy),
                (FWD_FORWARDING_ON_UNAVAILABLE, "onUnavailable", &fwd.on_unavailable),
            ];
            for (key, field, target) in targets {
                let Some(target) = target else { continue };
                // Both generations store only the digits of a forwarding target (2023.2
                // `SaveRecord`; 2026.1 `SystemSanitizer`: `+48600999888` is stored as
                // `48600999888`), so that is what is compared and sent.
                let target = digits(target);
                if target == extension {
                    return Err(unfit(
                        format!("{entry}.mikopbx.forwarding.{field}"),
                        "must not be the person's own extension",
                    ));
                }
                attributes.settings.insert(key.to_owned(), target);
            }
            if let Some(ring) = fwd.ring_length {
                if !(3..=180).contains(&ring) {
                    return Err(unfit(
                        format!("{entry}.mikopbx.forwarding.ringLength"),
                        "must be 3–180 seconds",
                    ));
                }
                attributes.settings.insert(FWD_RING_LENGTH.to_owned(), ring.to_string());
            }
        }
        if let Some(recording) = settings.recording {
            attributes.settings.insert(SIP_ENABLE_RECORDING.to_owned(), recording.to_string());
        }
        if let Some(mode) = settings.dtmf_mode {
            attributes.settings.insert(SIP_DTMF_MODE.to_owned(), dtmf_name(mode).to_owned());
        }
    }
    Ok(attributes)
}

fn dtmf_name(mode: DtmfMode) -> &'static str {
    match mode {
        DtmfMode::Auto => "auto",
        DtmfMode::AutoInfo => "auto_info",
        DtmfMode::Inband => "inband",
        DtmfMode::Rfc4733 => "rfc4733",
        DtmfMode::Info => "info",
    }
}

/// A field of a record as text (the legacy API sends some numbers as JSON numbers); a
/// field that is absent or null reads as empty.
fn text(record: &Map<String, Value>, key: &str) -> Result<String, String> {
    match record.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(other) => Err(format!("{key}: {other} is not text")),
    }
}

/// `sip_enableRecording`: `"1"`/`"0"` in legacy records, a boolean in v3.
fn flag(record: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match record.get(key) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim() {
            "1" | "true" | "on" => Ok(true),
            "0" | "false" | "off" | "" => Ok(false),
            other => Err(format!("{key}: {other:?} is not a flag")),
        },
        Some(Value::Number(n)) => Ok(n.as_i64() != Some(0)),
        Some(Value::Null) | None => Err(format!("{key}: missing")),
        Some(other) => Err(format!("{key}: {other} is not a flag")),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// An account from a full record (`getRecord` / v3 GET: both use the same field names).
/// `enabled` comes from the list row: the records do not carry it. The error names the
/// field that could not be read.
fn account_of(id: String, record: &Map<String, Value>, enabled: Option<bool>) -> Result<Account, String> {
    let extension = text(record, "number")?;
    if extension.is_empty() {
        return Err("number: missing".into());
    }
    let mut attributes = Attributes {
        display_name: Some(text(record, "user_username")?),
        email: non_empty(text(record, "user_email")?),
        mobile: non_empty(text(record, "mobile_number")?),
        enabled,
        ..Attributes::default()
    };
    for key in [FWD_FORWARDING, FWD_FORWARDING_ON_BUSY, FWD_FORWARDING_ON_UNAVAILABLE, SIP_DTMF_MODE] {
        attributes.settings.insert(key.to_owned(), text(record, key)?);
    }
    let ring = text(record, FWD_RING_LENGTH)?;
    let ring: i64 = match ring.trim() {
        "" => 0,
        r => r.parse().map_err(|_| format!("{FWD_RING_LENGTH}: {ring:?} is not a number"))?,
    };
    attributes.settings.insert(FWD_RING_LENGTH.to_owned(), ring.to_string());
    attributes
        .settings
        .insert(SIP_ENABLE_RECORDING.to_owned(), flag(record, SIP_ENABLE_RECORDING)?.to_string());
    Ok(Account { id, extension, attributes, marker: None })
}

/// The values `changes` set, as `(PBX field, neutral value)`, taken from `desired` (the
/// normalised form). Fields MikoPBX cannot write are refused rather than dropped.
fn planned_values(desired: &Desired, changes: &[Change]) -> Result<Vec<(&'static str, String)>, Error> {
    let mut out = Vec::new();
    for change in changes {
        let a = &desired.attributes;
        let (field, value) = match &change.field {
            Field::Extension => ("number", Some(desired.extension.clone())),
            Field::DisplayName => ("user_username", a.display_name.clone()),
            Field::Email => ("user_email", Some(a.email.clone().unwrap_or_default())),
            Field::Mobile => ("mobile_number", Some(a.mobile.clone().unwrap_or_default())),
            // Written by the caller from the password it holds.
            Field::Password => continue,
            Field::Setting(key) => match SETTINGS.iter().find(|k| **k == key.as_str()) {
                Some(k) => (*k, a.settings.get(key).cloned()),
                None => {
                    return Err(Error::Unsupported {
                        system: BackendKind::Mikopbx,
                        operation: "set an unknown setting",
                    });
                }
            },
            Field::Enabled => {
                return Err(Error::Unsupported {
                    system: BackendKind::Mikopbx,
                    operation: "enable or disable an employee",
                });
            }
            Field::GivenName | Field::FamilyName | Field::Login => {
                return Err(Error::Unsupported {
                    system: BackendKind::Mikopbx,
                    operation: "set separate names or a login",
                });
            }
        };
        // A field the Employee no longer declares is not compared, so it has no change.
        if let Some(value) = value {
            out.push((field, value));
        }
    }
    Ok(out)
}

/// Every value a new account gets: the extension and each declared field MikoPBX can
/// write (an `enabled: false` is left to the planner, which reports it for a person).
fn create_values(desired: &Desired) -> Result<Vec<(&'static str, String)>, Error> {
    let writable = &capabilities().writable;
    let mut fields = vec![Change { field: Field::Extension, from: None, to: None }];
    fields.extend(
        desired.attributes.declared().into_iter().filter(|f| writable.contains(f)).map(|field| Change {
            field,
            from: None,
            to: None,
        }),
    );
    planned_values(desired, &fields)
}

/// Parses an answer that may hold SIP secrets in clear text (records do): unlike
/// [`http::Http::json`], a body that looks like JSON is never quoted in the error.
fn parse<T: serde::de::DeserializeOwned>(http: &http::Http, reply: &http::Reply) -> Result<T, Error> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        let looks_json = reply.body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{');
        let quote = if looks_json {
            "(not quoted: records hold secrets)".to_owned()
        } else {
            http.snippet(&reply.body)
        };
        http.protocol(&format!(
            "HTTP {} with a body that is not the expected JSON ({e}): {quote}",
            reply.status.as_u16()
        ))
    })
}

/// An id the PBX sends as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `messages.error` as texts: a list of strings (or, after a failed user save in the
/// legacy API, of objects), or v3's map of field -> message key. Map keys come first as
/// `field: text` so the field is not lost.
fn error_messages(messages: &Value) -> Vec<(Option<String>, String)> {
    let errors = match messages {
        Value::Object(m) => m.get("error").unwrap_or(messages),
        other => other,
    };
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match errors {
        Value::Array(list) => list.iter().map(|m| (None, as_text(m))).collect(),
        Value::Object(map) => map.iter().map(|(k, v)| (Some(k.clone()), as_text(v))).collect(),
        Value::Null => Vec::new(),
        other => vec![(None, as_text(other))],
    }
}

/// Every message of `messages` in one line, each map key kept as `key: text`.
fn joined(messages: &Value) -> String {
    let list = error_messages(messages);
    if list.is_empty() {
        return "refused without a message".to_owned();
    }
    list.iter()
        .map(|(f, m)| match f {
            Some(f) => format!("{f}: {m}"),
            None => m.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A represent (`<i class="icons">…</i> John Doe <201>`) as text: tags that start with a
/// letter or `/` are dropped, `<201>` stays.
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let tag = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/');
        match (tag, after.find('>')) {
            (true, Some(end)) => rest = &after[end + 1..],
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// One backend for either generation, picked by the PhoneSystem's `apiGeneration`.
#[derive(Debug)]
pub enum MikoPbxBackend {
    Legacy(MikoPbxLegacy),
    V3(MikoPbxV3),
}

impl MikoPbxBackend {
    pub fn new(block: &MikoPbx, credentials: &Credentials, settings: http::Settings) -> Result<Self, Error> {
        Ok(match block.api_generation {
            MikoPbxApiGeneration::Legacy => {
                MikoPbxBackend::Legacy(MikoPbxLegacy::new(block, credentials, settings)?)
            }
            MikoPbxApiGeneration::V3 => MikoPbxBackend::V3(MikoPbxV3::new(block, credentials, settings)?),
        })
    }

    /// How long a record's read stands for it (`detailRefreshInterval`).
    pub fn with_detail_refresh(self, max_age: std::time::Duration) -> Self {
        match self {
            MikoPbxBackend::Legacy(b) => MikoPbxBackend::Legacy(b.with_detail_refresh(max_age)),
            MikoPbxBackend::V3(b) => MikoPbxBackend::V3(b.with_detail_refresh(max_age)),
        }
    }
}

impl Backend for MikoPbxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Mikopbx
    }

    fn capabilities(&self) -> &Capabilities {
        match self {
            MikoPbxBackend::Legacy(b) => b.capabilities(),
            MikoPbxBackend::V3(b) => b.capabilities(),
        }
    }

    fn desired(&self, employee: &EmployeeSpec, membership: &Membership) -> Result<Attributes, Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.desired(employee, membership),
            MikoPbxBackend::V3(b) => b.desired(employee, membership),
        }
    }

    fn generate_password(&self) -> Secret {
        password::generate()
    }

    async fn list(&self) -> Result<Listing, Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.list().await,
            MikoPbxBackend::V3(b) => b.list().await,
        }
    }

    async fn list_for(&self, declared: &BTreeSet<Field>) -> Result<Listing, Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.list_for(declared).await,
            MikoPbxBackend::V3(b) => b.list_for(declared).await,
        }
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.find(extension).await,
            MikoPbxBackend::V3(b) => b.find(extension).await,
        }
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.create(desired, password).await,
            MikoPbxBackend::V3(b) => b.create(desired, password).await,
        }
    }

    async fn update(
        &self,
        account: &Account,
        desired: &Desired,
        changes: &[Change],
        password: Option<&Secret>,
    ) -> Result<(), Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.update(account, desired, changes, password).await,
            MikoPbxBackend::V3(b) => b.update(account, desired, changes, password).await,
        }
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.delete(account).await,
            MikoPbxBackend::V3(b) => b.delete(account).await,
        }
    }

    fn quota(&self) -> Option<super::Quota> {
        match self {
            MikoPbxBackend::Legacy(b) => b.quota(),
            MikoPbxBackend::V3(b) => b.quota(),
        }
    }

    async fn probe(&self) -> Result<super::Probe, Error> {
        match self {
            MikoPbxBackend::Legacy(b) => b.probe().await,
            MikoPbxBackend::V3(b) => b.probe().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::employee::{Forwarding, MikoPbxSettings, ThuliumSettings};

    fn employee() -> EmployeeSpec {
        serde_json::from_value(serde_json::json!({
            "givenName": "Anna", "familyName": "Nowak", "email": "anna@example.com",
            "extension": "201", "mobile": "+48600111222",
        }))
        .unwrap()
    }

    fn membership() -> Membership {
        Membership { name: "office".into(), ..Membership::default() }
    }

    #[test]
    fn settings_use_the_pbx_field_names_and_text_values() {
        let mut m = membership();
        m.mikopbx = Some(Box::new(MikoPbxSettings {
            forwarding: Some(Forwarding {
                on_no_answer: Some("+48600999888".into()),
                on_busy: Some("202".into()),
                on_unavailable: None,
                ring_length: Some(30),
            }),
            recording: Some(false),
            dtmf_mode: Some(DtmfMode::AutoInfo),
        }));
        let legacy = desired(Generation::Legacy, &employee(), &m).unwrap();
        assert_eq!(legacy.mobile.as_deref(), Some("48600111222"));
        assert_eq!(legacy.settings[FWD_FORWARDING], "48600999888");
        assert_eq!(legacy.settings[FWD_FORWARDING_ON_BUSY], "202");
        assert_eq!(legacy.settings[FWD_RING_LENGTH], "30");
        assert_eq!(legacy.settings[SIP_ENABLE_RECORDING], "false");
        assert_eq!(legacy.settings[SIP_DTMF_MODE], "auto_info");
        assert!(!legacy.settings.contains_key(FWD_FORWARDING_ON_UNAVAILABLE));
        let v3 = desired(Generation::V3, &employee(), &m).unwrap();
        assert_eq!(v3.mobile.as_deref(), Some("+48600111222"));
        // What 2026.1 stores of a forwarding target: its digits.
        assert_eq!(v3.settings[FWD_FORWARDING], "48600999888");
        assert_eq!(v3.display_name.as_deref(), Some("Anna Nowak"));
    }

    #[test]
    fn unfit_employees_name_their_field() {
        let mut m = membership();
        m.thulium = Some(Box::new(ThuliumSettings::default()));
        let err = desired(Generation::V3, &employee(), &m).unwrap_err();
        assert!(
            matches!(&err, Error::Unfit { field, .. } if field == "spec.phoneSystems[office].thulium"),
            "{err}"
        );

        let mut m = membership();
        m.mikopbx = Some(Box::new(MikoPbxSettings {
            forwarding: Some(Forwarding { on_busy: Some("201".into()), ..Forwarding::default() }),
            ..MikoPbxSettings::default()
        }));
        let err = desired(Generation::Legacy, &employee(), &m).unwrap_err();
        assert!(
            matches!(&err, Error::Unfit { field, .. } if field == "spec.phoneSystems[office].mikopbx.forwarding.onBusy"),
            "{err}"
        );

        let mut e = employee();
        e.display_name = Some("x".repeat(101));
        let err = desired(Generation::V3, &e, &membership()).unwrap_err();
        assert!(matches!(&err, Error::Unfit { field, .. } if field == "spec.displayName"), "{err}");
        assert!(desired(Generation::Legacy, &e, &membership()).is_ok());

        let mut m = membership();
        m.extension = Some("1".into());
        let err = desired(Generation::V3, &employee(), &m).unwrap_err();
        assert!(
            matches!(&err, Error::Unfit { field, .. } if field == "spec.phoneSystems[office].extension"),
            "{err}"
        );
    }

    #[test]
    fn loopback_urls() {
        for g in [Generation::Legacy, Generation::V3] {
            assert!(trusted_loopback("http://127.0.0.1:8081", g));
            assert!(!trusted_loopback("https://pbx.example.com", g));
            assert!(!trusted_loopback("http://10.0.0.1", g));
        }
        // The legacy API trusts 127.0.0.1 only; v3 also ::1.
        assert!(!trusted_loopback("http://[::1]/", Generation::Legacy));
        assert!(!trusted_loopback("http://localhost/", Generation::Legacy));
        assert!(trusted_loopback("http://[::1]/", Generation::V3));
        assert!(trusted_loopback("http://LOCALHOST", Generation::V3));
    }

    #[test]
    fn messages_keep_their_fields() {
        let v3 = serde_json::json!({"error": {"number": "ex_ValidateNumberIsEmpty"}});
        assert_eq!(error_messages(&v3), vec![(Some("number".into()), "ex_ValidateNumberIsEmpty".into())]);
        let legacy = serde_json::json!({"error": ["a", {"b": 1}]});
        assert_eq!(error_messages(&legacy).len(), 2);
    }
}
