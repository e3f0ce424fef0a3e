//! Ringostat: the employees of one project over JSON-RPC 2.0, authenticated by the
//! project's `Auth-key` header on every call (no tokens, so nothing to cache, refresh or
//! expire).
//!
//! Endpoints used (seed 004, `pbx-apis/apio-telphin-ringostat.md` §3):
//! - `POST /a/v2`, method `Api\V2\Staff.addStaff`, headers `Auth-key` and `x-project-id`.
//!   The page gives `/a/v2` as "API request address" and then posts to `/v2` in its own
//!   examples; we use the address it names as the address. Params: `projectId`,
//!   `creatorId` (both from the PhoneSystem block), `access`, `fio`, `email`,
//!   `extensionNumber`, `directions`, `departments`, `isHasAccessToPowerDialer`. Success
//!   is `{"result": {"result": true}}` with no id: the new employee is found by listing.
//! - `POST /api/json-rpc`, method `getProjectStaffListAndDirections` with `projectId`:
//!   every employee, no paging. An empty project answers the error "User does not exist",
//!   which we read as an empty list. The result is read as an object keyed by staff id
//!   (what a public client assumes) or an array. After `addStaff`, the new employee is
//!   looked up with `filters.email` (partial match; the e-mail is unique in a project), so
//!   a create costs two requests whatever the size of the project.
//! - Errors are JSON-RPC error objects; their codes are not documented. We read: HTTP or
//!   code 401/403 -> `Auth`; -32602 (invalid params) and 422 -> `Validation` with the
//!   param named in `data.errors[].field`; 409 -> `Conflict`; -32603 and the -32000..-32099
//!   server range -> `Transient`; the rest -> `Protocol`.
//!
//! | operation | supported | why |
//! |-----------|-----------|-----|
//! | create    | yes | `Api\V2\Staff.addStaff` |
//! | list/find | yes | `getProjectStaffListAndDirections` (find filters it by `extensionNumber`: its filters are staffId, fio and email only) |
//! | update    | no  | no update method is documented or found anywhere; `Unsupported` |
//! | delete    | no  | no delete method is documented or found anywhere; `Unsupported` |
//!
//! Mapping: `fio` is the Employee's display name (default "givenName familyName"), with
//! runs of spaces collapsed; the extension is `extensionNumber` and also the login of the
//! one SIP account made in `directions.main` (as in the docs' example), which carries the
//! password. `access` comes from `accessLevel` (admin "1", analyst "2", manager "4");
//! unset, the employee is created as a manager: the least access the API offers (no
//! statistics, no settings), enough for a person who only takes calls. Ringostat has no
//! field to block an employee, so `enabled` has nowhere to go and is not declared.
//!
//! Readable: extension, displayName (`fio`), email and the `access`, `departments`,
//! `isHasAccessToPowerDialer` settings. Writable lists what `create` sets; with
//! `update: false` the planner turns any later difference into a manual task.
//!
//! Rules checked before any call, from the seed's limits: extension 2–5 digits; name of
//! letters (any alphabet) and spaces only, so hyphens and apostrophes are refused; a valid
//! e-mail. The SIP password (at least 14 characters) is not part of the desired attributes,
//! so `create` checks it before sending and refuses a shorter one as `Unfit` on
//! `spec.passwordSecretRef`; generated ones are 20 letters and digits.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicU64, Ordering},
};

use rand::{Rng, seq::SliceRandom};
use reqwest::{StatusCode, header::ACCEPT};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value, json};

use super::{
    Backend, Credentials, Error, Listing, Secret, check_settings_block, extension_field,
    http::{self, Http, Reply, Retry},
};
use crate::{
    api::{BackendKind, EmployeeSpec, Membership, employee::RingostatAccess, phone_system},
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

/// Settings keys, as Ringostat names the params. `access`: "1" admin, "2" analyst,
/// "4" manager.
pub const ACCESS: &str = "access";
/// Department names, lower-cased (Ringostat compares them case-insensitively), sorted,
/// as a JSON array.
pub const DEPARTMENTS: &str = "departments";
/// `true` | `false`.
pub const POWER_DIALER: &str = "isHasAccessToPowerDialer";

pub const ADD_STAFF: &str = "Api\\V2\\Staff.addStaff";
pub const LIST_STAFF: &str = "getProjectStaffListAndDirections";

const SYSTEM: BackendKind = BackendKind::Ringostat;
const ADD_PATH: &str = "/a/v2";
const LIST_PATH: &str = "/api/json-rpc";
/// The access an employee gets when the Employee does not say (manager).
const DEFAULT_ACCESS: &str = "4";
const EXTENSION_DIGITS: std::ops::RangeInclusive<usize> = 2..=5;
const SIP_PASSWORD_MIN: usize = 14;
const PASSWORD_LEN: usize = 20;
/// The documented answer when no employee matches.
const NO_USERS: &str = "User does not exist";

/// One Ringostat project.
pub struct Ringostat {
    http: Http,
    auth_key: Secret,
    project_id: String,
    creator_id: String,
    /// JSON-RPC request ids, so an answer can be matched to its request.
    next_id: AtomicU64,
    capabilities: Capabilities,
}

impl Ringostat {
    pub fn new(
        block: &phone_system::Ringostat,
        credentials: &Credentials,
        settings: http::Settings,
    ) -> Result<Self, Error> {
        let auth_key = credentials.require("authKey")?.clone();
        let http = Http::new(SYSTEM, &block.url, settings, credentials.values())?;
        Ok(Ringostat {
            http,
            auth_key,
            project_id: block.project_id.clone(),
            creator_id: block.creator_id.clone(),
            next_id: AtomicU64::new(1),
            capabilities: capabilities(),
        })
    }

    /// One JSON-RPC call. `Ok(Err(..))` is the system's own error object, for the caller
    /// to read (the list reads "User does not exist" as empty) or [`Self::rpc_error`] to map.
    /// The result is read straight into `T`: the staff list of a large project is one
    /// answer, and a `Value` of it costs several times its size.
    async fn call<T: DeserializeOwned>(
        &self,
        http: &Http,
        path: &str,
        method: &str,
        params: Value,
        retry: Retry,
        secrets: &[&Secret],
    ) -> Result<Result<T, RpcFailure>, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let url = http.url(path);
        let with_project = path == ADD_PATH;
        let reply = http
            .send(retry, secrets, |c| {
                let r = c
                    .post(&url)
                    .header("Auth-key", self.auth_key.expose())
                    .header(ACCEPT, "application/json")
                    .json(&request);
                if with_project { r.header("x-project-id", &self.project_id) } else { r }
            })
            .await?;
        self.envelope(http, &reply, id)
    }

    fn envelope<T: DeserializeOwned>(
        &self,
        http: &Http,
        reply: &Reply,
        id: u64,
    ) -> Result<Result<T, RpcFailure>, Error> {
        if !reply.status.is_success() {
            return Err(self.refused(http, reply));
        }
        let envelope: Envelope<T> = http.json(reply)?;
        if envelope.jsonrpc != "2.0" {
            return Err(http.protocol(&format!("not a JSON-RPC 2.0 answer: {}", http.snippet(&reply.body))));
        }
        let ours = match &envelope.id {
            Value::Number(n) => n.as_u64() == Some(id),
            Value::String(s) => s.parse::<u64>().ok() == Some(id),
            _ => false,
        };
        match (envelope.result, envelope.error) {
            // An error may carry a null id (the server could not read ours).
            (None, Some(error)) if ours || envelope.id.is_null() => Ok(Err(error)),
            (Some(result), None) if ours => Ok(Ok(result)),
            _ => {
                Err(http
                    .protocol(&format!("answer does not match request {id}: {}", http.snippet(&reply.body))))
            }
        }
    }

    /// The error of an answer that is not a success: its error object where it has one.
    fn refused(&self, http: &Http, reply: &Reply) -> Error {
        let parsed = serde_json::from_slice::<Envelope<IgnoredAny>>(&reply.body);
        if reply.status == StatusCode::UNAUTHORIZED || reply.status == StatusCode::FORBIDDEN {
            let detail = match &parsed {
                Ok(Envelope { error: Some(e), .. }) => e.message.clone(),
                _ => http.snippet(&reply.body),
            };
            return http.auth(&format!("HTTP {}: {detail}", reply.status.as_u16()));
        }
        match parsed {
            Ok(Envelope { error: Some(e), .. }) => self.rpc_error(http, e),
            _ => http.protocol(&format!("HTTP {}: {}", reply.status.as_u16(), http.snippet(&reply.body))),
        }
    }

    fn rpc_error(&self, http: &Http, e: RpcFailure) -> Error {
        let problems: Vec<(Option<String>, String)> = e
            .data
            .as_ref()
            .and_then(|d| d.get("errors"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|p| {
                        let message = p.get("message")?.as_str()?.to_owned();
                        Some((p.get("field").and_then(Value::as_str).map(str::to_owned), message))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let detail = match problems.is_empty() {
            true => e.message.clone(),
            false => problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        };
        let field = problems.iter().find_map(|(f, _)| f.as_deref());
        match e.code {
            401 | 403 => http.auth(&format!("code {}: {}", e.code, e.message)),
            -32602 | 422 => http.validation(field, &detail),
            409 => http.conflict(&detail),
            -32603 | -32099..=-32000 => http.transient(&format!("code {}: {detail}", e.code)),
            code => http.protocol(&format!("JSON-RPC error {code}: {detail}")),
        }
    }

    /// `addStaff`; returns the e-mail the employee was made with. The answer names no id.
    async fn add_staff(&self, desired: &Desired, password: Option<&Secret>) -> Result<String, Error> {
        // A SIP account needs a password; without one given it gets a random one (a
        // person can set another in Ringostat).
        let password = super::password_or_generated(self, password);
        let password = password.as_ref();
        if password.expose().chars().count() < SIP_PASSWORD_MIN {
            return Err(Error::unfit(
                SYSTEM,
                "spec.passwordSecretRef",
                format!("the SIP password must be at least {SIP_PASSWORD_MIN} characters"),
            ));
        }
        let a = &desired.attributes;
        let fio = a
            .display_name
            .clone()
            .ok_or_else(|| Error::unfit(SYSTEM, "spec.displayName", "is required on Ringostat"))?;
        let email =
            a.email.clone().ok_or_else(|| Error::unfit(SYSTEM, "spec.email", "is required on Ringostat"))?;
        let departments = match a.settings.get(DEPARTMENTS) {
            Some(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| Error::Config(format!("{SYSTEM}: departments {text:?}: {e}")))?,
            None => Value::Null,
        };
        let mut params = Map::new();
        params.insert("projectId".into(), json!(self.project_id));
        params.insert("creatorId".into(), json!(self.creator_id));
        params.insert("access".into(), json!(a.settings.get(ACCESS).map_or(DEFAULT_ACCESS, String::as_str)));
        params.insert("fio".into(), json!(fio));
        params.insert("email".into(), json!(email));
        params.insert("extensionNumber".into(), json!(desired.extension));
        params.insert(
            "directions".into(),
            json!({
                "main": [{
                    "type": "sip",
                    "direction": desired.extension,
                    "password": password.expose(),
                    "enabledForAwd": true,
                    "isMobile": false,
                }],
                "additional": [],
            }),
        );
        params.insert("departments".into(), departments);
        if let Some(dialer) = a.settings.get(POWER_DIALER) {
            params.insert("isHasAccessToPowerDialer".into(), json!(dialer == "true"));
        }

        let http = self.http.with_secrets(&[password]);
        let result: Value = self
            .call(&http, ADD_PATH, ADD_STAFF, Value::Object(params), Retry::Unsafe, &[password])
            .await?
            .map_err(|e| self.rpc_error(&http, e))?;
        if result != json!({"result": true}) && result != json!(true) {
            return Err(http.protocol(&format!(
                "{ADD_STAFF} answered {} instead of success",
                http.snippet(result.to_string().as_bytes())
            )));
        }
        Ok(email)
    }

    /// Every employee, or those `filters` (`staffId`, `fio`, `email`) match.
    async fn list_all(&self, filters: Option<Value>) -> Result<Vec<Account>, Error> {
        let mut params = json!({"projectId": self.project_id});
        if let Some(filters) = filters {
            params["filters"] = filters;
        }
        let staff: StaffList = match self
            .call(&self.http, LIST_PATH, LIST_STAFF, params, Retry::Idempotent, &[])
            .await?
        {
            Ok(staff) => staff,
            Err(e) if e.message.trim_end_matches('.').eq_ignore_ascii_case(NO_USERS) => return Ok(Vec::new()),
            Err(e) => return Err(self.rpc_error(&self.http, e)),
        };
        staff.0.into_iter().map(|s| s.into_account(&self.http)).collect()
    }
}

fn capabilities() -> Capabilities {
    let readable: BTreeSet<Field> = [
        Field::Extension,
        Field::DisplayName,
        Field::Email,
        Field::Setting(ACCESS.into()),
        Field::Setting(DEPARTMENTS.into()),
        Field::Setting(POWER_DIALER.into()),
    ]
    .into();
    let mut writable = readable.clone();
    writable.insert(Field::Password);
    Capabilities { create: true, update: false, delete: false, readable, writable }
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    jsonrpc: String,
    #[serde(default)]
    id: Value,
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<RpcFailure>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
struct RpcFailure {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

/// A value sent as a number or a string, depending on the page.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Number(u64),
    String(String),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Number(n) => n.to_string(),
            Text::String(s) => s,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Department {
    Full { name: String },
    Name(String),
}

/// An employee as the list returns it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StaffOut {
    #[serde(default)]
    staff_id: Option<Text>,
    #[serde(default)]
    id: Option<Text>,
    fio: String,
    #[serde(default)]
    email: Option<String>,
    /// Absent or null for employees without an internal number.
    #[serde(default)]
    extension_number: Option<Text>,
    #[serde(default)]
    access: Option<Text>,
    #[serde(default)]
    departments: Option<Vec<Department>>,
    #[serde(default)]
    is_has_access_to_power_dialer: Option<bool>,
}

impl StaffOut {
    fn into_account(self, http: &Http) -> Result<Account, Error> {
        let id = self
            .staff_id
            .or(self.id)
            .map(Text::into_string)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| http.protocol(&format!("{LIST_STAFF}: employee {:?} has no id", self.fio)))?;
        let mut settings = BTreeMap::new();
        if let Some(access) = self.access {
            settings.insert(ACCESS.to_owned(), access.into_string());
        }
        let departments: Vec<String> = self
            .departments
            .unwrap_or_default()
            .into_iter()
            .map(|d| match d {
                Department::Full { name } | Department::Name(name) => name,
            })
            .collect();
        settings.insert(DEPARTMENTS.to_owned(), departments_text(&departments));
        if let Some(dialer) = self.is_has_access_to_power_dialer {
            settings.insert(POWER_DIALER.to_owned(), dialer.to_string());
        }
        Ok(Account {
            id,
            // An employee without an internal number holds none: it clashes with nobody.
            extension: self.extension_number.map(Text::into_string).unwrap_or_default(),
            attributes: Attributes {
                display_name: Some(self.fio),
                email: self.email.filter(|e| !e.is_empty()),
                settings,
                ..Attributes::default()
            },
            marker: None,
        })
    }
}

/// The list's result: an object keyed by staff id (what the API answers) or an array,
/// read record by record without a `Value` of the whole project in between.
struct StaffList(Vec<StaffOut>);

impl<'de> Deserialize<'de> for StaffList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = StaffList;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the employees, as an object by id or an array")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StaffList, A::Error> {
                let mut staff = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((_, one)) = map.next_entry::<IgnoredAny, StaffOut>()? {
                    staff.push(one);
                }
                Ok(StaffList(staff))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StaffList, A::Error> {
                let mut staff = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(one) = seq.next_element::<StaffOut>()? {
                    staff.push(one);
                }
                Ok(StaffList(staff))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// Lower-cased (Ringostat matches names case-insensitively), sorted, unique, as JSON.
fn departments_text(names: &[String]) -> String {
    let set: BTreeSet<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
    Value::from(set.into_iter().collect::<Vec<_>>()).to_string()
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "Only letters and spaces": letters of any alphabet, at least one.
fn is_fio(s: &str) -> bool {
    s.chars().all(|c| c.is_alphabetic() || c == ' ') && s.chars().any(char::is_alphabetic)
}

/// "Valid email format": a dot-atom local part, `@`, a domain of two or more labels
/// ending in an alphabetic top-level label.
fn is_email(s: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let atoms_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c)));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = s.len() <= 254
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    atoms_ok && domain_ok
}

fn generate(len: usize) -> String {
    // Letters and digits only: SIP phones and their config files choke on some symbols,
    // and 20 of these hold about 119 bits.
    const CLASSES: [&[u8]; 3] = [b"abcdefghijkmnopqrstuvwxyz", b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"23456789"];
    let all: Vec<u8> = CLASSES.concat();
    let mut rng = rand::rng();
    let mut chars: Vec<u8> = CLASSES.iter().map(|class| class[rng.random_range(0..class.len())]).collect();
    chars.extend((CLASSES.len()..len).map(|_| all[rng.random_range(0..all.len())]));
    chars.shuffle(&mut rng);
    chars.into_iter().map(char::from).collect()
}

impl Backend for Ringostat {
    fn quota(&self) -> Option<super::Quota> {
        self.http.quota()
    }

    fn kind(&self) -> BackendKind {
        SYSTEM
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn desired(&self, employee: &EmployeeSpec, membership: &Membership) -> Result<Attributes, Error> {
        check_settings_block(SYSTEM, membership)?;
        let extension = employee.extension_on(membership);
        if !EXTENSION_DIGITS.contains(&extension.len()) || !extension.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::unfit(SYSTEM, extension_field(membership), "must be 2–5 digits"));
        }
        let rule = "may hold only letters and spaces (no digits, hyphens, apostrophes or other punctuation)";
        let fio = collapse_spaces(&employee.full_name());
        if !is_fio(&fio) {
            let field = match (&employee.display_name, is_fio(&collapse_spaces(&employee.given_name))) {
                (Some(_), _) => "spec.displayName",
                (None, false) => "spec.givenName",
                (None, true) => "spec.familyName",
            };
            return Err(Error::unfit(SYSTEM, field, rule));
        }
        if !is_email(&employee.email) {
            return Err(Error::unfit(SYSTEM, "spec.email", "is not an e-mail address Ringostat accepts"));
        }

        let mut settings = BTreeMap::new();
        if let Some(r) = &membership.ringostat {
            if let Some(level) = r.access_level {
                let code = match level {
                    RingostatAccess::Admin => "1",
                    RingostatAccess::Analyst => "2",
                    RingostatAccess::Manager => "4",
                };
                settings.insert(ACCESS.to_owned(), code.to_owned());
            }
            if let Some(departments) = &r.departments {
                settings.insert(DEPARTMENTS.to_owned(), departments_text(departments));
            }
            if let Some(dialer) = r.power_dialer {
                settings.insert(POWER_DIALER.to_owned(), dialer.to_string());
            }
        }
        Ok(Attributes {
            display_name: Some(fio),
            email: Some(employee.email.clone()),
            settings,
            ..Attributes::default()
        })
    }

    fn generate_password(&self) -> Secret {
        Secret::new(generate(PASSWORD_LEN))
    }

    async fn list(&self) -> Result<Listing, Error> {
        // One answer holds every employee: there are no pages to lose.
        Ok(Listing::whole(self.list_all(None).await?))
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        Ok(self.list_all(None).await?.into_iter().find(|a| a.extension == extension))
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        let email = self.add_staff(desired, password).await?;
        // addStaff returns no id: the list has it. The e-mail is unique in a project, so
        // the list filtered by it (a documented filter; the extension is not one) answers
        // this employee alone, not the whole project: a create costs the same at any size.
        let found = self.list_all(Some(json!({"email": email}))).await?;
        found.into_iter().find(|a| a.extension == desired.extension).ok_or_else(|| {
            self.http.protocol(&format!(
                "{ADD_STAFF} reported success, but no employee has extension {}",
                desired.extension
            ))
        })
    }

    /// Only `addStaff`: the engine finds a pass's new employees with the one listing
    /// request Ringostat needs for a whole project, where a lookup per create would
    /// double the requests a create costs against a rate limit.
    async fn create_unresolved(
        &self,
        desired: &Desired,
        password: Option<&Secret>,
    ) -> Result<Option<Account>, Error> {
        self.add_staff(desired, password).await.map(|_| None)
    }

    async fn update(
        &self,
        _account: &Account,
        _desired: &Desired,
        _changes: &[Change],
        _password: Option<&Secret>,
    ) -> Result<(), Error> {
        Err(Error::Unsupported { system: SYSTEM, operation: "update employees" })
    }

    async fn delete(&self, _account: &Account) -> Result<(), Error> {
        Err(Error::Unsupported { system: SYSTEM, operation: "delete employees" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_any_alphabet_pass_and_punctuation_does_not() {
        assert!(is_fio("Ivan Petrenko"));
        assert!(is_fio("Łukasz Żółć"));
        assert!(is_fio("Олена Коваль"));
        assert!(is_fio("山田 太郎"));
        assert!(!is_fio("Anna-Maria Nowak"));
        assert!(!is_fio("Jan O'Brien"));
        assert!(!is_fio("Agent 007"));
        assert!(!is_fio("   "));
    }

    #[test]
    fn emails_are_checked_for_format() {
        assert!(is_email("ivan.petrenko@example.com"));
        assert!(is_email("a+b@mail.example.ua"));
        assert!(!is_email("ivan@localhost"));
        assert!(!is_email("ivan@example.c0m"));
        assert!(!is_email("iv..an@example.com"));
        assert!(!is_email("ivan.example.com"));
    }

    #[test]
    fn departments_compare_regardless_of_case_and_order() {
        let a = departments_text(&["Secondary".into(), "main".into()]);
        let b = departments_text(&["Main".into(), "SECONDARY".into(), "main".into()]);
        assert_eq!(a, b);
        assert_eq!(a, r#"["main","secondary"]"#);
    }

    #[test]
    fn generated_passwords_are_long_enough_for_sip() {
        for _ in 0..50 {
            let p = generate(PASSWORD_LEN);
            assert!(p.chars().count() >= SIP_PASSWORD_MIN);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(p.bytes().any(|b| b.is_ascii_digit()));
        }
    }
}
