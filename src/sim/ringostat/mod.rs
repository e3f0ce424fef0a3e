//! Ringostat API simulator: staff creation and listing over JSON-RPC 2.0.
//!
//! Enforces what the sources say (seed 004, `pbx-apis/apio-telphin-ringostat.md` §3):
//! - `POST /a/v2` and `POST /v2` (the page names both), method `Api\V2\Staff.addStaff`;
//!   `POST /api/json-rpc`, method `getProjectStaffListAndDirections`. Each endpoint knows
//!   only its own method; there is no update or delete method (method not found).
//! - `Auth-key` header on every call; `x-project-id` and `params.projectId` must name
//!   this project.
//! - addStaff: required `projectId`, `creatorId`, `access`, `fio`, `email`,
//!   `extensionNumber`, `directions`, `departments` (may be null);
//!   `isHasAccessToPowerDialer` optional (default false). `extensionNumber` 2–5 digits;
//!   SIP password at least 14 characters; `fio` only letters (any alphabet) and spaces;
//!   valid e-mail; at most 6 directions per employee, at most 3 SIP and 3 phone numbers in
//!   `main`, and as many in `additional`. Success: `{"result": {"result": true}}`, with no
//!   id: a client must list to learn it.
//! - list: `projectId` required, optional `filters` `staffId` (exact), `fio` and `email`
//!   (partial); nothing found is the error "User does not exist".
//!
//! Choices where the sources are silent (constants in [`RingostatConfig`] and [`codes`]):
//! - `access` must be one of the table's codes as a JSON string: "1" (admin), "2"
//!   (analyst), "4" (manager). The page's example value "user" is rejected: it is none of
//!   the product's access levels (administrator, analyst, manager, agent), so it reads as
//!   a documentation slip; the table is the specification.
//! - `x-project-id` is optional (the page's own examples omit it) and checked when
//!   present; `/api/json-rpc` ignores it. Unknown params are ignored.
//! - E-mail format: an ASCII dot-atom local part `@` a domain of two or more labels.
//! - Types are enforced as documented, with no coercion: `projectId`, `creatorId`,
//!   `access`, `extensionNumber` must be JSON strings, not numbers.
//! - `creatorId` must be the project's creator ([`RingostatConfig::creator_id`]) or an
//!   existing employee with access "1".
//! - Uniqueness inside the project: `extensionNumber`; `email` (case-insensitive; it is
//!   the employee's login to Ringostat); SIP logins (`direction` of `sip` directions).
//!   A clash is application error [`codes::DUPLICATE`].
//! - Direction items: `type` is `"sip"` or `"phone"` (the page names "SIP accounts" and
//!   "phone numbers"; only "sip" appears in its example). `direction` of a SIP item is
//!   its login (1–32 of ASCII letters, digits, `_.-`); of a phone item, a number of 7 to
//!   15 digits with an optional leading `+`. `password` is required for SIP and ignored
//!   for phones. `enabledForAwd`, `isMobile` optional booleans (default false).
//!   `directions.main` is required (may be empty), `directions.additional` optional.
//! - `departments`: each name must match a department of the project
//!   ([`RingostatConfig::departments`], default "Main", "Secondary" as in the examples),
//!   case-insensitively; stored under the project's spelling.
//! - `fio`: trimmed, at least one letter, at most 100 characters; "letters" are Unicode
//!   alphabetic characters, so hyphens and apostrophes are rejected, as the rule reads.
//! - JSON-RPC: errors are answered with HTTP 200 and the standard codes -32700 (parse),
//!   -32600 (invalid request: not an object, batch arrays, `jsonrpc` not "2.0", no `id`:
//!   notifications are not supported), -32601 (method not found), -32602 (a param
//!   missing or of the wrong type). Rule violations are application code 422 (all of them
//!   listed in `data.errors`), clashes 409, "User does not exist" 404. Only the first
//!   class of problems found is reported: wrong shape, else rule violations, else clashes. A missing or wrong
//!   `Auth-key` is HTTP 401 with JSON-RPC error code 401; a project mismatch is code 403.
//! - List result: an object keyed by staff id (a public client assumes this shape), each
//!   item `{id, staffId, fio, email, extensionNumber, access, phones: {main, additional},
//!   sip: [{login, online, main}], directions: {main, additional} (no passwords),
//!   departments: [{id, name}], isHasAccessToPowerDialer}`; `id` = `staffId`, integers.
//!   `departmentsFullFormat` is accepted (boolean) and changes nothing. No pagination.
//!   An empty project answers "User does not exist" too (the page says so for "no
//!   employee matches"; [`RingostatConfig::empty_list_is_error`]).
//! - Staff ids are integers from [`RingostatConfig::first_staff_id`] up by a seeded random
//!   step, so they never look like extension numbers.
//! - Control plane: an account's id is its staffId; `seed` takes addStaff params
//!   (`projectId`, `creatorId` default to the project's); `tamper` takes addStaff param
//!   names, with the same checks.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value, json};

use super::{OpName, SimError, Simulator, is_valid_email, lock};

pub const ADD_STAFF: &str = "Api\\V2\\Staff.addStaff";
pub const LIST_STAFF: &str = "getProjectStaffListAndDirections";

/// JSON-RPC error codes: the standard ones, then the simulator's application codes.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const UNAUTHORIZED: i64 = 401;
    pub const FORBIDDEN: i64 = 403;
    pub const NOT_FOUND: i64 = 404;
    pub const DUPLICATE: i64 = 409;
    pub const VALIDATION: i64 = 422;
}

#[derive(Clone, Debug)]
pub struct RingostatConfig {
    pub auth_key: String,
    pub project_id: String,
    pub creator_id: String,
    /// Seeds the staff id steps.
    pub seed: u64,
    pub first_staff_id: u64,
    pub departments: Vec<String>,
    pub access_levels: Vec<String>,
    pub extension_min_digits: usize,
    pub extension_max_digits: usize,
    pub sip_password_min_len: usize,
    pub fio_max_len: usize,
    pub max_directions: usize,
    pub max_sip_main: usize,
    pub max_sip_additional: usize,
    pub max_phones_main: usize,
    pub max_phones_additional: usize,
    pub empty_list_is_error: bool,
}

impl Default for RingostatConfig {
    fn default() -> Self {
        Self {
            auth_key: "sim-ringostat-auth-key".into(),
            // The seed's examples use these, so its bodies replay as they are.
            project_id: "123".into(),
            creator_id: "456".into(),
            seed: 4,
            first_staff_id: 230_000,
            departments: vec!["Main".into(), "Secondary".into()],
            access_levels: vec!["1".into(), "2".into(), "4".into()],
            extension_min_digits: 2,
            extension_max_digits: 5,
            sip_password_min_len: 14,
            fio_max_len: 100,
            max_directions: 6,
            max_sip_main: 3,
            max_sip_additional: 3,
            max_phones_main: 3,
            max_phones_additional: 3,
            empty_list_is_error: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Sip,
    Phone,
}

#[derive(Clone, Debug)]
struct Direction {
    kind: Kind,
    direction: String,
    password: Option<String>,
    enabled_for_awd: bool,
    is_mobile: bool,
}

impl Direction {
    fn to_json(&self, with_secret: bool) -> Value {
        let mut m = Map::new();
        let kind = if self.kind == Kind::Sip { "sip" } else { "phone" };
        m.insert("type".into(), json!(kind));
        m.insert("direction".into(), json!(self.direction));
        if with_secret && let Some(p) = &self.password {
            m.insert("password".into(), json!(p));
        }
        m.insert("enabledForAwd".into(), json!(self.enabled_for_awd));
        m.insert("isMobile".into(), json!(self.is_mobile));
        Value::Object(m)
    }
}

#[derive(Clone, Debug)]
struct Staff {
    staff_id: u64,
    creator_id: String,
    access: String,
    fio: String,
    email: String,
    extension: String,
    main: Vec<Direction>,
    additional: Vec<Direction>,
    departments: Option<Vec<String>>,
    power_dialer: bool,
}

impl Staff {
    fn directions_json(&self, with_secret: bool) -> Value {
        json!({
            "main": self.main.iter().map(|d| d.to_json(with_secret)).collect::<Vec<_>>(),
            "additional": self.additional.iter().map(|d| d.to_json(with_secret)).collect::<Vec<_>>(),
        })
    }

    /// The addStaff params this employee would be created with.
    fn as_params(&self, project_id: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("projectId".into(), json!(project_id));
        m.insert("creatorId".into(), json!(self.creator_id));
        m.insert("access".into(), json!(self.access));
        m.insert("fio".into(), json!(self.fio));
        m.insert("email".into(), json!(self.email));
        m.insert("extensionNumber".into(), json!(self.extension));
        m.insert("directions".into(), self.directions_json(true));
        m.insert("departments".into(), json!(self.departments));
        m.insert("isHasAccessToPowerDialer".into(), json!(self.power_dialer));
        m
    }

    fn sip_logins(&self) -> impl Iterator<Item = &str> {
        self.main.iter().chain(&self.additional).filter(|d| d.kind == Kind::Sip).map(|d| d.direction.as_str())
    }
}

/// A JSON-RPC failure before or during a call.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

fn rpc_err(code: i64, message: impl Into<String>) -> RpcError {
    RpcError { code, message: message.into(), data: None }
}

/// Collects rule violations, so one answer lists all of them.
#[derive(Default)]
struct Problems {
    structural: Vec<(String, String)>,
    rules: Vec<(String, String)>,
    clashes: Vec<(String, String)>,
}

impl Problems {
    fn param(&mut self, field: &str, message: impl Into<String>) {
        self.structural.push((field.to_string(), message.into()));
    }
    fn rule(&mut self, field: &str, message: impl Into<String>) {
        self.rules.push((field.to_string(), message.into()));
    }
    fn clash(&mut self, field: &str, message: impl Into<String>) {
        self.clashes.push((field.to_string(), message.into()));
    }

    /// Wrong shape first (the call is malformed), then rule violations, then clashes with
    /// existing employees; the answer's message is the first problem of that class.
    fn into_error(self) -> Option<RpcError> {
        let (code, list) = if !self.structural.is_empty() {
            (codes::INVALID_PARAMS, self.structural)
        } else if !self.rules.is_empty() {
            (codes::VALIDATION, self.rules)
        } else if !self.clashes.is_empty() {
            (codes::DUPLICATE, self.clashes)
        } else {
            return None;
        };
        let message = list.first().map(|(_, m)| m.clone()).unwrap_or_default();
        let errors: Vec<Value> =
            list.into_iter().map(|(field, message)| json!({"field": field, "message": message})).collect();
        Some(RpcError { code, message, data: Some(json!({"errors": errors})) })
    }
}

struct Store {
    staff: BTreeMap<u64, Staff>,
    last_id: u64,
    rng: StdRng,
}

pub struct RingostatSim {
    config: RingostatConfig,
    state: Mutex<Store>,
}

fn string_param(params: &Map<String, Value>, field: &str, p: &mut Problems) -> Option<String> {
    match params.get(field) {
        None | Some(Value::Null) => {
            p.param(field, format!("Parameter '{field}' is required"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.param(field, format!("Parameter '{field}' must be a string"));
            None
        }
    }
}

fn bool_field(obj: &Map<String, Value>, field: &str, label: &str, p: &mut Problems) -> bool {
    match obj.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.param(label, format!("'{label}' must be a boolean"));
            false
        }
    }
}

fn is_fio(s: &str) -> bool {
    s.chars().all(|c| c.is_alphabetic() || c == ' ') && s.chars().any(char::is_alphabetic)
}

fn is_phone(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_sip_login(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl RingostatSim {
    pub fn new(config: RingostatConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Store {
                staff: BTreeMap::new(),
                last_id: config.first_staff_id,
                rng: StdRng::seed_from_u64(config.seed),
            }),
            config,
        })
    }

    fn directions(&self, list: &[Value], section: &str, p: &mut Problems) -> Vec<Direction> {
        let c = &self.config;
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let label = format!("directions.{section}[{i}]");
            let Value::Object(obj) = item else {
                p.param(&label, format!("'{label}' must be an object"));
                continue;
            };
            let kind = match obj.get("type") {
                Some(Value::String(t)) if t == "sip" => Some(Kind::Sip),
                Some(Value::String(t)) if t == "phone" => Some(Kind::Phone),
                Some(Value::String(t)) => {
                    p.rule(&label, format!("Unknown direction type '{t}' (expected sip or phone)"));
                    None
                }
                _ => {
                    p.param(&label, format!("'{label}.type' is required"));
                    None
                }
            };
            let direction = match obj.get("direction") {
                Some(Value::String(d)) => Some(d.clone()),
                _ => {
                    p.param(&label, format!("'{label}.direction' must be a string"));
                    None
                }
            };
            let enabled_for_awd = bool_field(obj, "enabledForAwd", &format!("{label}.enabledForAwd"), p);
            let is_mobile = bool_field(obj, "isMobile", &format!("{label}.isMobile"), p);
            let mut password = None;
            match (&kind, &direction) {
                (Some(Kind::Sip), Some(d)) => {
                    if !is_sip_login(d) {
                        p.rule(&label, format!("Invalid SIP login '{d}'"));
                    }
                    match obj.get("password") {
                        Some(Value::String(pw)) if pw.chars().count() >= c.sip_password_min_len => {
                            password = Some(pw.clone());
                        }
                        Some(Value::String(_)) => p.rule(
                            &label,
                            format!(
                                "SIP password must be at least {} characters long",
                                c.sip_password_min_len
                            ),
                        ),
                        _ => p.param(&label, format!("'{label}.password' is required for a SIP account")),
                    }
                }
                (Some(Kind::Phone), Some(d)) if !is_phone(d) => {
                    p.rule(&label, format!("Invalid phone number '{d}'"));
                }
                _ => {}
            }
            if let (Some(kind), Some(direction)) = (kind, direction) {
                out.push(Direction { kind, direction, password, enabled_for_awd, is_mobile });
            }
        }
        out
    }

    /// The addStaff checks, shared by the API, `seed` and `tamper` (`exclude` is the
    /// employee being tampered with).
    fn validate(
        &self,
        params: &Map<String, Value>,
        store: &Store,
        exclude: Option<u64>,
    ) -> Result<Staff, RpcError> {
        let c = &self.config;
        let mut p = Problems::default();

        let project_id = string_param(params, "projectId", &mut p);
        let creator_id = string_param(params, "creatorId", &mut p);
        let access = string_param(params, "access", &mut p);
        let fio = string_param(params, "fio", &mut p).map(|f| f.trim().to_string());
        let email = string_param(params, "email", &mut p);
        let extension = string_param(params, "extensionNumber", &mut p);

        if let Some(project) = &project_id
            && project != &c.project_id
        {
            return Err(rpc_err(codes::FORBIDDEN, format!("Access to project {project} denied")));
        }
        let others = || store.staff.values().filter(move |s| Some(s.staff_id) != exclude);
        if let Some(creator) = &creator_id {
            let known = creator == &c.creator_id
                || others().any(|s| s.staff_id.to_string() == *creator && s.access == "1");
            if !known {
                p.rule("creatorId", format!("Creator {creator} is not an administrator of this project"));
            }
        }
        if let Some(a) = &access
            && !c.access_levels.contains(a)
        {
            p.rule("access", format!("Invalid access level '{a}' (allowed: {})", c.access_levels.join(", ")));
        }
        if let Some(f) = &fio {
            if !is_fio(f) {
                p.rule("fio", "Name may contain only letters and spaces");
            } else if f.chars().count() > c.fio_max_len {
                p.rule("fio", format!("Name must be at most {} characters long", c.fio_max_len));
            }
        }
        if let Some(e) = &email {
            if !is_valid_email(e) {
                p.rule("email", "Invalid email format");
            } else if others().any(|s| s.email.eq_ignore_ascii_case(e)) {
                p.clash("email", format!("Email {e} is already used by another employee"));
            }
        }
        if let Some(x) = &extension {
            let digits = x.len();
            if digits < c.extension_min_digits
                || digits > c.extension_max_digits
                || !x.chars().all(|ch| ch.is_ascii_digit())
            {
                p.rule(
                    "extensionNumber",
                    format!(
                        "Internal number must be {}-{} digits",
                        c.extension_min_digits, c.extension_max_digits
                    ),
                );
            } else if others().any(|s| &s.extension == x) {
                p.clash("extensionNumber", format!("Internal number {x} is already in use"));
            }
        }

        let (mut main, mut additional) = (Vec::new(), Vec::new());
        match params.get("directions") {
            Some(Value::Object(d)) => {
                match d.get("main") {
                    Some(Value::Array(list)) => main = self.directions(list, "main", &mut p),
                    _ => p.param("directions", "'directions.main' must be an array"),
                }
                match d.get("additional") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(list)) => additional = self.directions(list, "additional", &mut p),
                    Some(_) => p.param("directions", "'directions.additional' must be an array"),
                }
            }
            None | Some(Value::Null) => p.param("directions", "Parameter 'directions' is required"),
            Some(_) => p.param("directions", "Parameter 'directions' must be an object"),
        }
        let count = |list: &[Direction], kind: Kind| list.iter().filter(|d| d.kind == kind).count();
        if main.len() + additional.len() > c.max_directions {
            p.rule("directions", format!("A maximum of {} directions per employee", c.max_directions));
        }
        for (n, max, what) in [
            (count(&main, Kind::Sip), c.max_sip_main, "SIP accounts in the main directions"),
            (count(&additional, Kind::Sip), c.max_sip_additional, "SIP accounts in additional directions"),
            (count(&main, Kind::Phone), c.max_phones_main, "phone numbers in the main directions"),
            (
                count(&additional, Kind::Phone),
                c.max_phones_additional,
                "phone numbers in additional directions",
            ),
        ] {
            if n > max {
                p.rule("directions", format!("A maximum of {max} {what}"));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for d in main.iter().chain(&additional).filter(|d| d.kind == Kind::Sip) {
            if seen.contains(&d.direction.as_str()) {
                p.rule("directions", format!("SIP account {} is listed twice", d.direction));
            } else if others().any(|s| s.sip_logins().any(|l| l == d.direction)) {
                p.clash("directions", format!("SIP account {} already exists", d.direction));
            }
            seen.push(&d.direction);
        }

        let departments = match params.get("departments") {
            None => {
                p.param("departments", "Parameter 'departments' is required (it may be null)");
                None
            }
            Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(name) => {
                            match c.departments.iter().find(|d| d.to_lowercase() == name.to_lowercase()) {
                                Some(canonical) => {
                                    if !names.contains(canonical) {
                                        names.push(canonical.clone());
                                    }
                                }
                                None => p.rule("departments", format!("Department '{name}' not found")),
                            }
                        }
                        None => p.param("departments", "'departments' must be an array of names"),
                    }
                }
                Some(names)
            }
            Some(_) => {
                p.param("departments", "'departments' must be an array of names or null");
                None
            }
        };
        let power_dialer = bool_field(params, "isHasAccessToPowerDialer", "isHasAccessToPowerDialer", &mut p);

        if let Some(error) = p.into_error() {
            return Err(error);
        }
        match (creator_id, access, fio, email, extension) {
            (Some(creator_id), Some(access), Some(fio), Some(email), Some(extension)) => Ok(Staff {
                staff_id: 0,
                creator_id,
                access,
                fio,
                email,
                extension,
                main,
                additional,
                departments,
                power_dialer,
            }),
            _ => Err(rpc_err(codes::INVALID_PARAMS, "Invalid params")),
        }
    }

    fn add(&self, params: &Map<String, Value>) -> Result<u64, RpcError> {
        let mut store = lock(&self.state);
        let mut staff = self.validate(params, &store, None)?;
        let step = store.rng.random_range(1..=97);
        store.last_id += step;
        staff.staff_id = store.last_id;
        store.staff.insert(staff.staff_id, staff);
        Ok(store.last_id)
    }

    fn list_item(&self, s: &Staff) -> Value {
        let phones = |list: &[Direction]| -> Vec<String> {
            list.iter().filter(|d| d.kind == Kind::Phone).map(|d| d.direction.clone()).collect()
        };
        let sip: Vec<Value> = s
            .main
            .iter()
            .map(|d| (d, true))
            .chain(s.additional.iter().map(|d| (d, false)))
            .filter(|(d, _)| d.kind == Kind::Sip)
            .map(|(d, main)| json!({"login": d.direction, "online": false, "main": main}))
            .collect();
        let departments: Vec<Value> = s
            .departments
            .iter()
            .flatten()
            .map(|name| {
                let id = self.config.departments.iter().position(|d| d == name).map_or(0, |i| i + 1);
                json!({"id": id, "name": name})
            })
            .collect();
        json!({
            "id": s.staff_id,
            "staffId": s.staff_id,
            "fio": s.fio,
            "email": s.email,
            "extensionNumber": s.extension,
            "access": s.access,
            "phones": {"main": phones(&s.main), "additional": phones(&s.additional)},
            "sip": sip,
            "directions": s.directions_json(false),
            "departments": departments,
            "isHasAccessToPowerDialer": s.power_dialer,
        })
    }

    fn list(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let mut p = Problems::default();
        if let Some(project) = string_param(params, "projectId", &mut p)
            && project != self.config.project_id
        {
            return Err(rpc_err(codes::FORBIDDEN, format!("Access to project {project} denied")));
        }
        bool_field(params, "departmentsFullFormat", "departmentsFullFormat", &mut p);
        let (mut staff_id, mut fio, mut email) = (None, None, None);
        match params.get("filters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(f)) => {
                match f.get("staffId") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => staff_id = Some(s.clone()),
                    Some(Value::Number(n)) => staff_id = Some(n.to_string()),
                    Some(_) => p.param("filters.staffId", "'filters.staffId' must be a string or a number"),
                }
                for (key, slot) in [("fio", &mut fio), ("email", &mut email)] {
                    match f.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => *slot = Some(s.to_lowercase()),
                        Some(_) => p.param(key, format!("'filters.{key}' must be a string")),
                    }
                }
            }
            Some(_) => p.param("filters", "'filters' must be an object"),
        }
        if let Some(error) = p.into_error() {
            return Err(error);
        }
        let store = lock(&self.state);
        let result: Map<String, Value> = store
            .staff
            .values()
            .filter(|s| staff_id.as_ref().is_none_or(|id| s.staff_id.to_string() == *id))
            .filter(|s| fio.as_ref().is_none_or(|f| contains_lowercase(&s.fio, f)))
            .filter(|s| email.as_ref().is_none_or(|e| contains_lowercase(&s.email, e)))
            .map(|s| (s.staff_id.to_string(), self.list_item(s)))
            .collect();
        let filtered = staff_id.is_some() || fio.is_some() || email.is_some();
        if result.is_empty() && (filtered || self.config.empty_list_is_error) {
            return Err(rpc_err(codes::NOT_FOUND, "User does not exist"));
        }
        Ok(Value::Object(result))
    }
}

fn rpc_response(id: Value, outcome: Result<Value, RpcError>, op: Option<&'static str>) -> Response {
    let body = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(e) => {
            let mut error = json!({"code": e.code, "message": e.message});
            if let (Some(data), Value::Object(m)) = (e.data, &mut error) {
                m.insert("data".into(), data);
            }
            json!({"jsonrpc": "2.0", "error": error, "id": id})
        }
    };
    let mut response = Json(body).into_response();
    if let Some(op) = op {
        response.extensions_mut().insert(OpName(op));
    }
    response
}

enum Endpoint {
    /// `/a/v2`, `/v2`: addStaff.
    V2,
    /// `/api/json-rpc`: listing.
    JsonRpc,
}

async fn handle(sim: Arc<RingostatSim>, endpoint: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    let c = &sim.config;
    let key_ok = headers.get("auth-key").and_then(|v| v.to_str().ok()).is_some_and(|k| k == c.auth_key);
    if !key_ok {
        let mut response =
            rpc_response(Value::Null, Err(rpc_err(codes::UNAUTHORIZED, "Invalid or missing Auth-key")), None);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let request = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v,
        Err(_) => {
            return rpc_response(Value::Null, Err(rpc_err(codes::PARSE_ERROR, "Parse error")), None);
        }
    };
    let Value::Object(request) = request else {
        return rpc_response(
            Value::Null,
            Err(rpc_err(
                codes::INVALID_REQUEST,
                "Invalid Request: expected one JSON-RPC object (batches are not supported)",
            )),
            None,
        );
    };
    let id = match request.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => {
            return rpc_response(
                Value::Null,
                Err(rpc_err(codes::INVALID_REQUEST, "Invalid Request: 'id' (string or number) is required")),
                None,
            );
        }
    };
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return rpc_response(
            id,
            Err(rpc_err(codes::INVALID_REQUEST, "Invalid Request: 'jsonrpc' must be \"2.0\"")),
            None,
        );
    }
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return rpc_response(
            id,
            Err(rpc_err(codes::INVALID_REQUEST, "Invalid Request: 'method' must be a string")),
            None,
        );
    };
    let op = match (&endpoint, method) {
        (Endpoint::V2, ADD_STAFF) => ADD_STAFF,
        (Endpoint::JsonRpc, LIST_STAFF) => LIST_STAFF,
        _ => {
            return rpc_response(id, Err(rpc_err(codes::METHOD_NOT_FOUND, "Method not found")), None);
        }
    };
    let params = match request.get("params") {
        Some(Value::Object(p)) => p.clone(),
        _ => {
            return rpc_response(
                id,
                Err(rpc_err(codes::INVALID_PARAMS, "Invalid params: 'params' must be an object")),
                Some(op),
            );
        }
    };
    let outcome = match endpoint {
        Endpoint::V2 => {
            let header_project = headers.get("x-project-id").and_then(|v| v.to_str().ok());
            match header_project {
                Some(project) if project != c.project_id => {
                    Err(rpc_err(codes::FORBIDDEN, format!("Access to project {project} denied")))
                }
                _ => sim.add(&params).map(|_| json!({"result": true})),
            }
        }
        Endpoint::JsonRpc => sim.list(&params),
    };
    rpc_response(id, outcome, Some(op))
}

async fn v2(State(sim): State<Arc<RingostatSim>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(sim, Endpoint::V2, headers, body).await
}

async fn json_rpc(State(sim): State<Arc<RingostatSim>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(sim, Endpoint::JsonRpc, headers, body).await
}

fn parse_id(id: &str) -> Result<u64, SimError> {
    id.parse::<u64>().map_err(|_| SimError::NotFound(id.to_string()))
}

fn invalid(e: RpcError) -> SimError {
    let detail = e
        .data
        .as_ref()
        .and_then(|d| d.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or(e.message);
    SimError::Invalid(detail)
}

impl Simulator for RingostatSim {
    fn kind(&self) -> &'static str {
        "ringostat"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/a/v2", post(v2))
            .route("/v2", post(v2))
            .route("/api/json-rpc", post(json_rpc))
            .with_state(self)
    }

    fn dump(&self) -> Value {
        let store = lock(&self.state);
        let list = store
            .staff
            .values()
            .map(|s| {
                let mut m = s.as_params(&self.config.project_id);
                m.insert("staffId".into(), json!(s.staff_id));
                Value::Object(m)
            })
            .collect();
        Value::Array(list)
    }

    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError> {
        const FIELDS: [&str; 7] = [
            "access",
            "fio",
            "email",
            "extensionNumber",
            "directions",
            "departments",
            "isHasAccessToPowerDialer",
        ];
        let staff_id = parse_id(id)?;
        let mut store = lock(&self.state);
        let current = store.staff.get(&staff_id).ok_or_else(|| SimError::NotFound(id.to_string()))?;
        let mut params = current.as_params(&self.config.project_id);
        for (key, value) in patch {
            if !FIELDS.contains(&key.as_str()) {
                return Err(SimError::Invalid(format!("unknown or read-only field '{key}'")));
            }
            params.insert(key.clone(), value.clone());
        }
        let mut staff = self.validate(&params, &store, Some(staff_id)).map_err(invalid)?;
        staff.staff_id = staff_id;
        store.staff.insert(staff_id, staff);
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), SimError> {
        let staff_id = parse_id(id)?;
        lock(&self.state)
            .staff
            .remove(&staff_id)
            .map(|_| ())
            .ok_or_else(|| SimError::NotFound(id.to_string()))
    }

    fn seed(&self, account: &Value) -> Result<String, SimError> {
        let Value::Object(params) = account else {
            return Err(SimError::Invalid("an employee must be a JSON object".into()));
        };
        let mut params = params.clone();
        params.entry("projectId").or_insert_with(|| json!(self.config.project_id));
        params.entry("creatorId").or_insert_with(|| json!(self.config.creator_id));
        self.add(&params).map(|id| id.to_string()).map_err(invalid)
    }

    fn credentials(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("authKey".to_string(), self.config.auth_key.clone()),
            ("projectId".to_string(), self.config.project_id.clone()),
            ("creatorId".to_string(), self.config.creator_id.clone()),
        ])
    }
}

/// Whether `text`, lowercased, contains `needle` (already lowercase); ASCII text is
/// compared in place rather than copied once per staff member and lookup.
fn contains_lowercase(text: &str, needle: &str) -> bool {
    if !text.is_ascii() {
        return text.to_lowercase().contains(needle);
    }
    let needle = needle.as_bytes();
    needle.is_empty() || text.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
