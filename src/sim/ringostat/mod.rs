//! Ringostat API simulator: staff creation and listing over JSON-RPC 2.0.
//!
//! What it enforces, and the public page behind each rule, is in `docs/compatibility.md`
//! (section Ringostat); where the pages leave a choice open it serves each plausible
//! answer as a dialect ([`dialect::Dialect`], `GET/PUT /_sim/dialect`): the list's result
//! shape, departments, `access` and `fio`, the empty answer, the error codes, addStaff's
//! address and header. Files: `validate.rs` (addStaff's checks), `listing.rs` (the list).
//! In short (seed 004, `pbx-apis/apio-telphin-ringostat.md` §3):
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
//!   listed in `data.errors`), clashes 409, "User does not exist" 404 (dialect
//!   `error_codes`: all -32000, or all 0). Only the first class of problems found is
//!   reported: wrong shape, else rule violations, else clashes. A missing or wrong
//!   `Auth-key` is HTTP 401 with JSON-RPC error code 401; a project mismatch is code 403.
//! - List result (the default dialect): an object keyed by staff id (a public client
//!   assumes this shape), each
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

use self::{
    dialect::{AddPath, Dialect, ProjectHeader},
    validate::{RpcError, Staff, rpc_err},
};
use super::{OpName, SimError, Simulator, lock, patch_dialect, table::Table};

pub mod dialect;
mod listing;
mod validate;

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

struct Store {
    staff: Table<Staff>,
    last_id: u64,
    rng: StdRng,
}

pub struct RingostatSim {
    config: RingostatConfig,
    state: Mutex<Store>,
    dialect: Mutex<Dialect>,
}

impl RingostatSim {
    pub fn new(config: RingostatConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Store {
                staff: Table::default(),
                last_id: config.first_staff_id,
                rng: StdRng::seed_from_u64(config.seed),
            }),
            dialect: Mutex::new(Dialect::default()),
            config,
        })
    }

    /// The dialect served now.
    pub fn current(&self) -> Dialect {
        lock(&self.dialect).clone()
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
    let dialect = sim.current();
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
            match (header_project, dialect.project_header) {
                (Some(project), _) if project != c.project_id => {
                    Err(rpc_err(codes::FORBIDDEN, format!("Access to project {project} denied")))
                }
                (None, ProjectHeader::Required) => {
                    Err(rpc_err(codes::FORBIDDEN, "The x-project-id header is required"))
                }
                _ => sim.add(&params).map(|_| json!({"result": true})),
            }
        }
        Endpoint::JsonRpc => sim.list(&params, &dialect),
    };
    // The methods' own errors carry the dialect's codes.
    let outcome = outcome.map_err(|mut e| {
        if [codes::NOT_FOUND, codes::DUPLICATE, codes::VALIDATION].contains(&e.code) {
            e.code = dialect.error_codes.code(e.code);
        }
        e
    });
    rpc_response(id, outcome, Some(op))
}

async fn a_v2(State(sim): State<Arc<RingostatSim>>, headers: HeaderMap, body: Bytes) -> Response {
    match sim.current().add_path {
        AddPath::Both | AddPath::AV2 => handle(sim, Endpoint::V2, headers, body).await,
        AddPath::V2 => no_such_path(),
    }
}

async fn v2(State(sim): State<Arc<RingostatSim>>, headers: HeaderMap, body: Bytes) -> Response {
    match sim.current().add_path {
        AddPath::Both | AddPath::V2 => handle(sim, Endpoint::V2, headers, body).await,
        AddPath::AV2 => no_such_path(),
    }
}

/// What a web server answers for an address it does not serve.
fn no_such_path() -> Response {
    (StatusCode::NOT_FOUND, [(axum::http::header::CONTENT_TYPE, "text/html")], "<h1>404 Not Found</h1>")
        .into_response()
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
            .route("/a/v2", post(a_v2))
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

    fn dialect(&self) -> Value {
        serde_json::to_value(self.current()).unwrap_or_default()
    }

    fn set_dialect(&self, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut dialect = lock(&self.dialect);
        *dialect = patch_dialect(&*dialect, patch)?;
        Ok(())
    }

    fn credentials(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("authKey".to_string(), self.config.auth_key.clone()),
            ("projectId".to_string(), self.config.project_id.clone()),
            ("creatorId".to_string(), self.config.creator_id.clone()),
        ])
    }
}
