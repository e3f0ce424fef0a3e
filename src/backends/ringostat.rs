//! Ringostat: the employees of one project over JSON-RPC 2.0, authenticated by the
//! project's `Auth-key` header on every call (no tokens, so nothing to cache, refresh or
//! expire).
//!
//! What each call sends and accepts, and the public page behind it, is in
//! `docs/compatibility.md` (section Ringostat). In short:
//! - `POST /a/v2`, method `Api\V2\Staff.addStaff`, headers `Auth-key` and `x-project-id`.
//!   The page names `/a/v2` as the address and then posts to `/v2` in its own examples:
//!   we post to `/a/v2`, and to `/v2` from the first time `/a/v2` answers 404. Params:
//!   `projectId`, `creatorId` (both from the PhoneSystem block), `access`, `fio`, `email`,
//!   `extensionNumber`, `directions`, `departments`, `isHasAccessToPowerDialer`. Success
//!   is `{"result": {"result": true}}` with no id: the new employee is found by listing.
//! - `POST /api/json-rpc`, method `getProjectStaffListAndDirections` with `projectId`:
//!   every employee, no paging. The result is read in any shape (an object keyed by staff
//!   id, as a public client assumes, or an array), record by record; no `filters` are
//!   sent (their shape is not documented). "No employee matches" is an error object whose
//!   code is not published: an application error (any code outside JSON-RPC's protocol
//!   codes) answering the unfiltered list is read as an empty project, never by its text.
//! - Errors: HTTP or code 401/403 -> `Auth`; -32700/-32600/-32601 -> `Protocol`; -32602
//!   -> `Validation` (the param named in `data.errors[].field` when given); -32603 ->
//!   `Transient`. Any other code on `addStaff` is a conflict when the listing shows the
//!   extension or e-mail held, a validation error otherwise.
//!
//! | operation | supported | why |
//! |-----------|-----------|-----|
//! | create    | yes | `Api\V2\Staff.addStaff` |
//! | list/find | yes | `getProjectStaffListAndDirections` (find looks the extension up in the whole list) |
//! | update    | no  | no update method is documented or found anywhere; `Unsupported` |
//! | delete    | no  | no delete method is documented or found anywhere; `Unsupported` |
//!
//! Mapping: `fio` is the Employee's display name (default "givenName familyName"), with
//! runs of spaces collapsed; the extension is `extensionNumber` and also the login of the
//! one SIP account made in `directions.main` (as in the docs' example), which carries the
//! password. `access` is sent as the table's code, a string: admin "1", analyst "2",
//! manager "4"; unset, the employee is created as a manager: the least access the API
//! offers (no statistics, no settings), enough for a person who only takes calls. The
//! list's `access` is read as a number, a numeric string or a level's name. Ringostat has
//! no field to block an employee, so `enabled` has nowhere to go and is not declared.
//!
//! Readable: extension, displayName (`fio`), email and the `access`, `departments`,
//! `isHasAccessToPowerDialer` settings; a listing whose departments are bare ids (which
//! cannot be compared with names) or whose records lack `fio` leaves those fields out of
//! [`Backend::capabilities`] until a listing shows them again. Writable lists what
//! `create` sets; with `update: false` the planner turns any later difference into a
//! manual task.
//!
//! Rules checked before any call, from the seed's limits: extension 2–5 digits; name of
//! letters (any alphabet) and spaces only, so hyphens and apostrophes are refused; a valid
//! e-mail. The SIP password (at least 14 characters) is not part of the desired attributes,
//! so `create` checks it before sending and refuses a shorter one as `Unfit` on
//! `spec.passwordSecretRef`; generated ones are 20 letters and digits.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering},
};

use rand::{Rng, seq::SliceRandom};
use reqwest::{StatusCode, header::ACCEPT};
use serde::{
    Deserialize,
    de::{DeserializeOwned, IgnoredAny},
};
use serde_json::{Map, Value, json, value::RawValue};

use super::{
    Backend, Credentials, Error, Listing, Secret, check_settings_block, extension_field,
    http::{self, Http, Reply, Retry},
    lenient,
    paging::Pager,
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
/// addStaff's address as the page names it, and as its examples post to.
const ADD_PATHS: [&str; 2] = ["/a/v2", "/v2"];
const LIST_PATH: &str = "/api/json-rpc";
/// Where a list result may hold its records, besides being them.
const WRAPPERS: [&str; 5] = ["staff", "employees", "items", "list", "data"];
/// The access an employee gets when the Employee does not say (manager).
const DEFAULT_ACCESS: &str = "4";
const EXTENSION_DIGITS: std::ops::RangeInclusive<usize> = 2..=5;
const SIP_PASSWORD_MIN: usize = 14;
const PASSWORD_LEN: usize = 20;

/// One Ringostat project.
pub struct Ringostat {
    http: Http,
    auth_key: Secret,
    project_id: String,
    creator_id: String,
    /// JSON-RPC request ids, so an answer can be matched to its request.
    next_id: AtomicU64,
    /// Which of [`ADD_PATHS`] addStaff is posted to: the second once the first is unknown.
    add_path: AtomicU8,
    /// What the last listing let us compare: departments by name, the display name.
    departments_readable: AtomicBool,
    fio_readable: AtomicBool,
    /// Indexed by (departments readable, fio readable).
    capabilities: [Capabilities; 4],
    /// Whether a listing of this client has shown employees.
    held_staff: AtomicBool,
    /// "No employee" errors answered in a row since the project last showed employees.
    empty_errors: AtomicU32,
}

/// How many "no employee" errors in a row a project that held employees must answer
/// before it is believed empty. The error's code is not published, so an application
/// error of another kind could read the same; taken at once, it would release every
/// claim on the system as gone and send a create for each Employee.
const EMPTY_CONFIRMATIONS: u32 = 3;

/// How a JSON-RPC error code reads, by code alone.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Auth,
    /// Our request was malformed or named an unknown method.
    Protocol,
    InvalidParams,
    Internal,
    /// Any other code: the method's own errors, whose codes are not published.
    Application,
}

fn class(code: i64) -> Class {
    match code {
        401 | 403 => Class::Auth,
        -32700 | -32600 | -32601 => Class::Protocol,
        -32602 => Class::InvalidParams,
        -32603 => Class::Internal,
        _ => Class::Application,
    }
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
            add_path: AtomicU8::new(0),
            departments_readable: AtomicBool::new(true),
            fio_readable: AtomicBool::new(true),
            held_staff: AtomicBool::new(false),
            empty_errors: AtomicU32::new(0),
            capabilities: [
                capabilities(false, false),
                capabilities(false, true),
                capabilities(true, false),
                capabilities(true, true),
            ],
        })
    }

    /// One JSON-RPC call. `Ok(Err(..))` is the system's own error object, for the caller
    /// to read or [`Self::rpc_error`] to map; `Ok(Ok(None))` a `null` or absent result.
    /// The result is read straight into `T`: the staff list of a large project is one
    /// answer, and a `Value` of it costs several times its size.
    async fn call<T: DeserializeOwned>(
        &self,
        http: &Http,
        path: &str,
        method: &str,
        params: &Value,
        retry: Retry,
        secrets: &[&Secret],
    ) -> Result<Answer<T>, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let url = http.url(path);
        let with_project = path != LIST_PATH;
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
        if reply.status == StatusCode::NOT_FOUND && with_project {
            return Ok(Answer::NoSuchPath);
        }
        self.envelope(http, &reply, id).map(Answer::Rpc)
    }

    fn envelope<T: DeserializeOwned>(
        &self,
        http: &Http,
        reply: &Reply,
        id: u64,
    ) -> Result<Result<Option<T>, RpcFailure>, Error> {
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
            (result, None) if ours => Ok(Ok(result)),
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

    /// An error object as an error, by its code alone (an application error stays a
    /// protocol error here: the caller decides what it means for its method).
    fn rpc_error(&self, http: &Http, e: RpcFailure) -> Error {
        let (detail, field) = e.detail();
        match class(e.code) {
            Class::Auth => http.auth(&format!("code {}: {detail}", e.code)),
            Class::InvalidParams => http.validation(field.as_deref(), &detail),
            Class::Internal => http.transient(&format!("code {}: {detail}", e.code)),
            Class::Protocol | Class::Application => {
                http.protocol(&format!("JSON-RPC error {}: {detail}", e.code))
            }
        }
    }

    /// `addStaff`. The answer names no id.
    async fn add_staff(&self, desired: &Desired, password: Option<&Secret>) -> Result<(), Error> {
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
        let params = Value::Object(params);

        let http = self.http.with_secrets(&[password]);
        let first = usize::from(self.add_path.load(Ordering::Relaxed)).min(ADD_PATHS.len() - 1);
        for (n, path) in ADD_PATHS.iter().enumerate().skip(first) {
            let answer =
                self.call::<Value>(&http, path, ADD_STAFF, &params, Retry::Unsafe, &[password]).await?;
            let result = match answer {
                // The address the page names is unknown here: its examples' address.
                Answer::NoSuchPath => {
                    self.add_path.store(u8::try_from(n + 1).unwrap_or(u8::MAX), Ordering::Relaxed);
                    continue;
                }
                Answer::Rpc(Ok(result)) => result,
                Answer::Rpc(Err(e)) if class(e.code) == Class::Application => {
                    return Err(self.taken(&http, desired, &email, e).await);
                }
                Answer::Rpc(Err(e)) => return Err(self.rpc_error(&http, e)),
            };
            return match result {
                Some(v) if v == json!({"result": true}) || v == json!(true) => Ok(()),
                other => Err(http.protocol(&format!(
                    "{ADD_STAFF} answered {} instead of success",
                    http.snippet(other.unwrap_or(Value::Null).to_string().as_bytes())
                ))),
            };
        }
        Err(http.protocol(&format!(
            "{ADD_STAFF}: neither {} nor {} is known here (HTTP 404)",
            ADD_PATHS[0], ADD_PATHS[1]
        )))
    }

    /// What an application error on addStaff was: a conflict when the project already
    /// holds the extension or the e-mail, asked of the listing (the codes are not
    /// published, and the messages follow the language of the project).
    async fn taken(&self, http: &Http, desired: &Desired, email: &str, e: RpcFailure) -> Error {
        let (detail, field) = e.detail();
        let detail = format!("code {}: {detail}", e.code);
        let listing = match self.list().await {
            Ok(listing) => listing,
            Err(_) => return http.validation(field.as_deref(), &detail),
        };
        // Not the name: names repeat in most projects, and a refusal for another reason
        // would be taken for a clash with a namesake.
        let holder = listing.accounts.iter().find_map(|a| {
            if a.extension == desired.extension {
                Some(format!("extension {} is already held by employee {}", desired.extension, a.id))
            } else if a.attributes.email.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(email)) {
                Some(format!("e-mail {email} is already held by employee {}", a.id))
            } else {
                None
            }
        });
        match holder {
            Some(holder) => http.conflict(&format!("{holder} ({detail})")),
            None => http.validation(field.as_deref(), &detail),
        }
    }

    /// Every employee, read record by record.
    async fn list_all(&self) -> Result<Listing, Error> {
        let params = json!({"projectId": self.project_id});
        let answer = self
            .call::<Box<RawValue>>(&self.http, LIST_PATH, LIST_STAFF, &params, Retry::Idempotent, &[])
            .await?;
        let raw = match answer {
            Answer::Rpc(Ok(raw)) => raw,
            // The documented answer when no employee matches; its code is not published.
            Answer::Rpc(Err(e)) if class(e.code) == Class::Application => {
                let mut listing = Listing::whole(Vec::new());
                listing.pages = one_page(&[]);
                listing.dialect.push(("empty list", format!("an error object, code {}", e.code)));
                let in_a_row = self.empty_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if self.held_staff.load(Ordering::Relaxed) && in_a_row < EMPTY_CONFIRMATIONS {
                    listing.complete = false;
                    listing.dialect.push((
                        "empty list",
                        format!(
                            "the project held employees and now answers none ({in_a_row} of {EMPTY_CONFIRMATIONS} times in a row before that is believed): a partial listing"
                        ),
                    ));
                }
                return Ok(listing);
            }
            Answer::Rpc(Err(e)) => return Err(self.rpc_error(&self.http, e)),
            Answer::NoSuchPath => return Err(self.http.protocol("the list's address answered 404")),
        };
        let body = raw.as_ref().map_or("null", |r| r.get());
        // An empty project may answer an empty object: no records, not an object that
        // holds none under a known key.
        let opening: String = body.chars().filter(|c| !c.is_whitespace()).take(3).collect();
        let empty_object = opening == "{}";
        let body = if empty_object { "[]" } else { body };
        let list = lenient::records(body.as_bytes(), &WRAPPERS).map_err(|e| {
            self.http.protocol(&format!("{LIST_STAFF}: {e}: {}", self.http.snippet(body.as_bytes())))
        })?;
        let mut listing = Listing::whole(Vec::with_capacity(list.items.len()));
        let mut keys = Vec::with_capacity(list.items.len());
        let mut seen = Seen::default();
        for (key, raw) in &list.items {
            let read = lenient::read::<StaffOut>(raw).and_then(|s| s.into_account(key.as_deref(), &mut seen));
            match read {
                Ok(account) => {
                    keys.push(account.id.clone());
                    listing.accounts.push(account);
                }
                Err(problem) => {
                    let unreadable = lenient::unreadable(
                        raw,
                        key.as_deref(),
                        &["staffId", "id"],
                        &["extensionNumber"],
                        problem,
                    );
                    keys.push(unreadable.id.clone().unwrap_or_else(|| raw.get().to_owned()));
                    listing.unreadable.push(unreadable);
                }
            }
        }
        listing.pages = one_page(&keys);
        let shape = if empty_object { "empty object".to_owned() } else { list.shape };
        listing.dialect.push(("list shape", shape));
        listing.dialect.extend(seen.describe(listing.accounts.len()));
        self.empty_errors.store(0, Ordering::Relaxed);
        self.held_staff.store(!list.items.is_empty(), Ordering::Relaxed);
        self.departments_readable.store(!seen.department_ids, Ordering::Relaxed);
        self.fio_readable.store(seen.without_fio == 0, Ordering::Relaxed);
        Ok(listing)
    }
}

/// One answer holds every employee: the listing's one page, for the probe.
fn one_page(keys: &[String]) -> Vec<super::paging::Page> {
    let mut pager = Pager::new(None);
    pager.page(keys);
    pager.into_pages()
}

/// What a JSON-RPC call came back with.
enum Answer<T> {
    Rpc(Result<Option<T>, RpcFailure>),
    /// HTTP 404: the address is not known.
    NoSuchPath,
}

fn capabilities(departments: bool, fio: bool) -> Capabilities {
    let mut readable: BTreeSet<Field> =
        [Field::Extension, Field::Email, Field::Setting(ACCESS.into()), Field::Setting(POWER_DIALER.into())]
            .into();
    if departments {
        readable.insert(Field::Setting(DEPARTMENTS.into()));
    }
    if fio {
        readable.insert(Field::DisplayName);
    }
    let mut writable = readable.clone();
    writable.extend([Field::Password, Field::DisplayName, Field::Setting(DEPARTMENTS.into())]);
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

impl RpcFailure {
    /// The problems the error lists (`data.errors[].message`), else its message; and the
    /// param the first problem names, where one does.
    fn detail(&self) -> (String, Option<String>) {
        let problems: Vec<(Option<String>, String)> = self
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
            true => self.message.clone(),
            false => problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        };
        (detail, problems.into_iter().find_map(|(f, _)| f))
    }
}

/// An employee as the list returns it: the fields we use, each in any type the evidence
/// allows (a public client types ids as numbers, departments as numbers and `fio` as
/// optional; the docs type `access` as a string and show it as a word).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StaffOut {
    #[serde(default, deserialize_with = "lenient::text")]
    staff_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    fio: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    email: Option<String>,
    /// Absent or null for employees without an internal number.
    #[serde(default, deserialize_with = "lenient::text")]
    extension_number: Option<String>,
    #[serde(default)]
    access: Option<Value>,
    #[serde(default)]
    departments: Option<Value>,
    #[serde(default, deserialize_with = "lenient::flag")]
    is_has_access_to_power_dialer: Option<bool>,
}

/// What the records of one listing showed, for the probe and the capabilities.
#[derive(Default)]
struct Seen {
    departments: BTreeSet<&'static str>,
    department_ids: bool,
    access: BTreeSet<&'static str>,
    without_fio: usize,
}

impl Seen {
    fn describe(&self, records: usize) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.departments.is_empty() {
            let mut text = self.departments.iter().copied().collect::<Vec<_>>().join(" and ");
            if self.department_ids {
                text.push_str(": departments are not compared");
            }
            out.push(("departments", text));
        }
        if !self.access.is_empty() {
            out.push(("access", self.access.iter().copied().collect::<Vec<_>>().join(" and ")));
        }
        if self.without_fio > 0 {
            out.push((
                "fio",
                format!("missing on {} of {records}: names are not compared", self.without_fio),
            ));
        }
        out
    }
}

/// `access` as the table's code: numbers and numeric strings as they are, the levels'
/// names as their codes; any other word kept, lower-cased, so it shows as a difference.
fn access_code(value: &Value, seen: &mut Seen) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            seen.access.insert("number");
            Ok(Some(n.to_string()))
        }
        Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
            seen.access.insert("numeric string");
            Ok(Some(s.clone()))
        }
        Value::String(s) => {
            seen.access.insert("word");
            let code = match s.trim().to_lowercase().as_str() {
                "admin" | "administrator" => "1".to_owned(),
                "analyst" => "2".to_owned(),
                "manager" => "4".to_owned(),
                other => other.to_owned(),
            };
            Ok(Some(code))
        }
        other => Err(format!("access: {other} is neither a number nor a string")),
    }
}

/// Department names, from names, `{id, name}` objects, or an object of id -> name; `None`
/// when some are bare ids (they cannot be compared with names).
fn department_names(value: &Value, seen: &mut Seen) -> Result<Option<Vec<String>>, String> {
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(Some(Vec::new())),
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map.values().collect(),
        other => return Err(format!("departments: {other} is not a list")),
    };
    let mut names = Vec::new();
    let mut ids = false;
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(name) => {
                seen.departments.insert("names");
                names.push(name.clone());
            }
            Value::Number(_) => {
                seen.departments.insert("ids");
                ids = true;
            }
            Value::Object(o) => match (o.get("name"), o.get("id")) {
                (Some(Value::String(name)), _) => {
                    seen.departments.insert("objects with a name");
                    names.push(name.clone());
                }
                (_, Some(Value::Number(_) | Value::String(_))) => {
                    seen.departments.insert("objects with an id only");
                    ids = true;
                }
                _ => return Err(format!("departments[{i}]: an object with neither name nor id")),
            },
            other => return Err(format!("departments[{i}]: {other} is neither a name nor an id")),
        }
    }
    seen.department_ids |= ids;
    Ok((!ids).then_some(names))
}

impl StaffOut {
    fn into_account(self, key: Option<&str>, seen: &mut Seen) -> Result<Account, String> {
        let id = self
            .staff_id
            .or(self.id)
            .or_else(|| key.map(str::to_owned))
            .filter(|id| !id.is_empty())
            .ok_or("staffId: missing, and no id names the record")?;
        let mut settings = BTreeMap::new();
        if let Some(access) = self.access.as_ref().map(|a| access_code(a, seen)).transpose()?.flatten() {
            settings.insert(ACCESS.to_owned(), access);
        }
        let departments = department_names(self.departments.as_ref().unwrap_or(&Value::Null), seen)?;
        if let Some(names) = departments {
            settings.insert(DEPARTMENTS.to_owned(), departments_text(&names));
        }
        if let Some(dialer) = self.is_has_access_to_power_dialer {
            settings.insert(POWER_DIALER.to_owned(), dialer.to_string());
        }
        if self.fio.is_none() {
            seen.without_fio += 1;
        }
        Ok(Account {
            id,
            // An employee without an internal number holds none: it clashes with nobody.
            extension: self.extension_number.unwrap_or_default(),
            attributes: Attributes {
                display_name: self.fio,
                email: self.email.filter(|e| !e.is_empty()),
                settings,
                ..Attributes::default()
            },
            marker: None,
        })
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
        let departments = usize::from(self.departments_readable.load(Ordering::Relaxed));
        let fio = usize::from(self.fio_readable.load(Ordering::Relaxed));
        &self.capabilities[departments * 2 + fio]
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
        self.list_all().await
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        let listing = self.list_all().await?;
        let hidden = !listing.complete
            || listing.unreadable.iter().any(|u| u.extension.as_deref().is_none_or(|e| e == extension));
        match listing.accounts.into_iter().find(|a| a.extension == extension) {
            Some(account) => Ok(Some(account)),
            // "Not listed" may be "not read": an unclear answer, not an absent employee.
            None if hidden => Err(self.http.transient(&format!(
                "the list was partial or held an employee that could not be read; it may have extension {extension}"
            ))),
            None => Ok(None),
        }
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        self.add_staff(desired, password).await?;
        // addStaff returns no id: the list has it. The whole list, not one filtered by
        // e-mail: the shape of `filters` is not documented, and a filter the server
        // ignored or misread would name the wrong employee.
        self.find(&desired.extension).await?.ok_or_else(|| {
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
        self.add_staff(desired, password).await.map(|()| None)
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
    fn access_is_read_as_the_tables_code_in_every_form() {
        let mut seen = Seen::default();
        for (value, code) in [
            (json!("4"), "4"),
            (json!(4), "4"),
            (json!("Manager"), "4"),
            (json!("admin"), "1"),
            (json!("user"), "user"),
        ] {
            assert_eq!(access_code(&value, &mut seen).unwrap().as_deref(), Some(code), "{value}");
        }
        assert!(access_code(&json!([4]), &mut seen).unwrap_err().starts_with("access"));
        assert_eq!(seen.access.len(), 3);
    }

    #[test]
    fn departments_are_names_or_not_compared() {
        let mut seen = Seen::default();
        let names = |v: Value, seen: &mut Seen| department_names(&v, seen).unwrap();
        assert_eq!(names(json!(["Main"]), &mut seen), Some(vec!["Main".to_owned()]));
        assert_eq!(names(json!([{"id": 1, "name": "Main"}]), &mut seen), Some(vec!["Main".to_owned()]));
        assert_eq!(names(json!(null), &mut seen), Some(vec![]));
        assert!(!seen.department_ids);
        assert_eq!(names(json!([1, 2]), &mut seen), None);
        assert!(seen.department_ids);
        assert!(department_names(&json!([true]), &mut seen).unwrap_err().starts_with("departments[0]"));
    }

    #[test]
    fn only_protocol_codes_are_read_as_protocol_errors() {
        assert_eq!(class(-32602), Class::InvalidParams);
        assert_eq!(class(-32601), Class::Protocol);
        assert_eq!(class(-32603), Class::Internal);
        assert_eq!(class(403), Class::Auth);
        for code in [-32000, 0, 404, 409, 422, 1] {
            assert_eq!(class(code), Class::Application, "{code}");
        }
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
