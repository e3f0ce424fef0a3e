//! Thulium REST API simulator: the agents part of `https://<system>.thulium.com/api/`.
//!
//! What it enforces, and the public page behind each rule, is in `docs/compatibility.md`
//! (section Thulium); where the pages leave a choice open it serves each plausible answer
//! as a dialect ([`dialect::Dialect`], `GET/PUT /_sim/dialect`). In short:
//! - HTTP Basic auth on every route; otherwise 401 with the documented error body
//!   `{"request_id": "...", "errors": [{"message": ..., "code": ...}]}`.
//! - `POST /api/agents` (JSON): `name`, `surname`, `login`, `password`, `number` required;
//!   optional `email`, `change_password` (default false), `callerid` (default first letter
//!   of the name + "." + surname, e.g. "J.Kowalski"), `language` (`pl`|`en`, default `pl`),
//!   `active` (default true), `outbound_mode` (`manual`|`auto`, default `manual`), `roles`
//!   (array of role ids). 201 with `{"agent_id": "<string>", "agent_login": <login>}`.
//!   Validation errors: 400 with every problem found listed in `errors`.
//! - `GET /api/agents/{login}`: the documented GET-one shape (`agent_id` and `number` as
//!   integers by default, although the create call sends `number` as a string and answers
//!   `agent_id` as a string). Unknown login: 404.
//! - `GET /api/agents`: the list; its page is not public: shape and paging are dialects.
//! - No update and no delete: the public index has none for agents, so any other method or
//!   path answers 404 with the error body (the docs' general table: 404 = "URI or object
//!   not found"; a PHP router of that kind answers an unknown method+path pair the same
//!   way as an unknown path, so no 405).
//!
//! Choices where the sources are silent (constants in [`ThuliumConfig`] and [`codes`]):
//! - `GET /api/agents` (dialect `paged`): query `limit` (default 100, max 100) and
//!   `offset` (default 0), as `agents_work_report` documents, records sorted by
//!   `agent_id`. A `limit` above the maximum, or a non-numeric/negative `limit` or
//!   `offset`, is a 400 (not clamped), so a client that thinks it got everything with one
//!   big page fails loudly.
//! - Error codes (`code` in each error) are the simulator's own, gathered in [`codes`];
//!   messages are English only (`Accept-Language: pl` is ignored).
//! - Duplicate `login` (compared case-insensitively, as a default MySQL collation would)
//!   and duplicate `number` (compared as integers, since GET returns it as one, so "0345"
//!   and "345" clash) are validation errors (status: dialect `duplicate_status`).
//!   `GET /api/agents/{login}` also matches the login case-insensitively.
//! - `number` must be a JSON string of 1 to 9 digits, not a JSON number: the documented
//!   request sends a string; the value is stored as an integer (leading zeros are lost,
//!   as the GET-one type implies).
//! - `login`: 1 to 64 characters out of ASCII letters, digits and `._@-` (it is a URL
//!   path segment). `name`, `surname`: non-blank, at most 100 characters. `password`:
//!   non-empty (the docs' own example uses "pass"), no other rule. `email`: optional; if
//!   present and non-empty it must look like an e-mail address; absent, null or "" means
//!   none, shown as `null`. `callerid`: non-blank if given.
//! - Booleans must be JSON booleans and `roles` an array of known role ids
//!   ([`ThuliumConfig::role_ids`], default 1 to 5); a wrong type is a 400.
//! - Unknown fields in the create body are ignored (PHP back-ends usually do).
//! - The body is parsed as JSON whatever the `Content-Type`; a body that is not a JSON
//!   object is a 400.
//! - New agents get `group_id` [`ThuliumConfig::default_group_id`] (create cannot set it)
//!   and `agent_id`s counting up from [`ThuliumConfig::first_agent_id`].
//! - Authentication is checked before routing, so an unknown path without credentials is
//!   a 401, with credentials a 404. The 401 carries `WWW-Authenticate: Basic`.
//! - Control plane: an account's id is its `agent_id` as a string; `seed` takes the create
//!   body; `tamper` takes the create field names plus `group_id`, with the same checks.

pub mod dialect;
mod validate;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value, json};

use self::{
    dialect::{CAP, Dialect, Paging},
    validate::{Agent, ApiError, err, login_key},
};
use super::{OpName, SimError, Simulator, lock, patch_dialect, table::Table};

/// The simulator's own error codes (the docs publish none).
pub mod codes {
    pub const AUTH_FAILED: u32 = 1001;
    pub const INVALID_JSON: u32 = 2000;
    pub const REQUIRED: u32 = 2001;
    pub const INVALID_VALUE: u32 = 2002;
    pub const DUPLICATE_LOGIN: u32 = 2003;
    pub const DUPLICATE_NUMBER: u32 = 2004;
    pub const INVALID_QUERY: u32 = 2005;
    pub const NOT_FOUND: u32 = 4004;
}

#[derive(Clone, Debug)]
pub struct ThuliumConfig {
    /// API user (HTTP Basic).
    pub username: String,
    pub password: String,
    /// Seeds the request ids in error bodies.
    pub seed: u64,
    pub list_default_limit: usize,
    pub list_max_limit: usize,
    pub first_agent_id: u64,
    pub default_group_id: u64,
    /// Role ids that exist on this system.
    pub role_ids: Vec<u64>,
    pub number_max_digits: usize,
    pub login_max_len: usize,
    pub name_max_len: usize,
    pub languages: Vec<String>,
    pub outbound_modes: Vec<String>,
}

impl Default for ThuliumConfig {
    fn default() -> Self {
        Self {
            username: "sim-admin".into(),
            password: "sim-thulium-pass".into(),
            seed: 1,
            list_default_limit: 100,
            list_max_limit: 100,
            first_agent_id: 11,
            default_group_id: 1,
            role_ids: vec![1, 2, 3, 4, 5],
            number_max_digits: 9,
            login_max_len: 64,
            name_max_len: 100,
            languages: vec!["pl".into(), "en".into()],
            outbound_modes: vec!["manual".into(), "auto".into()],
        }
    }
}

struct Store {
    agents: Table<Agent>,
    next_id: u64,
    rng: StdRng,
}

pub struct ThuliumSim {
    config: ThuliumConfig,
    state: Mutex<Store>,
    dialect: Mutex<Dialect>,
}

impl ThuliumSim {
    pub fn new(config: ThuliumConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Store {
                agents: Table::default(),
                next_id: config.first_agent_id,
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

    fn request_id(&self) -> String {
        // Looks like PHP's uniqid(), as in the docs' example "53678450401cf".
        let n: u64 = lock(&self.state).rng.random_range(0..(1u64 << 52));
        format!("{n:013x}")
    }

    fn error_response(&self, status: StatusCode, errors: Vec<ApiError>, op: &'static str) -> Response {
        let errors: Vec<Value> =
            errors.into_iter().map(|e| json!({"message": e.message, "code": e.code})).collect();
        let body = json!({"request_id": self.request_id(), "errors": errors});
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(OpName(op));
        response
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, encoded)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        decoded
            .split_once(':')
            .is_some_and(|(user, pass)| user == self.config.username && pass == self.config.password)
    }

    fn unauthorized(&self, op: &'static str) -> Response {
        let mut response = self.error_response(
            StatusCode::UNAUTHORIZED,
            vec![err(codes::AUTH_FAILED, "Authorization failed: wrong user or password.")],
            op,
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Thulium API\""));
        response
    }

    fn create(&self, input: &Map<String, Value>) -> Result<Agent, Vec<ApiError>> {
        let mut state = lock(&self.state);
        let mut agent = self.validate(input, &state.agents, None)?;
        agent.agent_id = state.next_id;
        state.next_id += 1;
        state.agents.insert(agent.agent_id, agent.clone());
        Ok(agent)
    }
}

async fn create_agent(State(sim): State<Arc<ThuliumSim>>, headers: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "POST agents";
    if !sim.authorized(&headers) {
        return sim.unauthorized(OP);
    }
    let input = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return sim.error_response(
                StatusCode::BAD_REQUEST,
                vec![err(codes::INVALID_JSON, "Request body must be a JSON object.")],
                OP,
            );
        }
    };
    let dialect = sim.current();
    match sim.create(&input) {
        Ok(agent) => {
            let mut response = (StatusCode::CREATED, Json(dialect.created(&agent))).into_response();
            response.extensions_mut().insert(OpName(OP));
            response
        }
        Err(errors) => {
            let duplicate =
                |e: &ApiError| e.code == codes::DUPLICATE_LOGIN || e.code == codes::DUPLICATE_NUMBER;
            let status = match errors.iter().all(duplicate) {
                true => StatusCode::from_u16(dialect.duplicate_status).unwrap_or(StatusCode::BAD_REQUEST),
                false => StatusCode::BAD_REQUEST,
            };
            sim.error_response(status, errors, OP)
        }
    }
}

async fn list_agents(
    State(sim): State<Arc<ThuliumSim>>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    const OP: &str = "GET agents";
    if !sim.authorized(&headers) {
        return sim.unauthorized(OP);
    }
    let query = query.map(|q| q.0).unwrap_or_default();
    let c = &sim.config;
    let parse = |key: &str, default: usize| -> Result<usize, ApiError> {
        match query.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| {
                err(codes::INVALID_QUERY, format!("Parameter '{key}' must be a non-negative integer."))
            }),
        }
    };
    let (limit, offset) = match (parse("limit", c.list_default_limit), parse("offset", 0)) {
        (Ok(l), Ok(o)) => (l, o),
        (l, o) => {
            let errors = [l.err(), o.err()].into_iter().flatten().collect();
            return sim.error_response(StatusCode::BAD_REQUEST, errors, OP);
        }
    };
    let dialect = sim.current();
    if dialect.paging == Paging::Paged && (limit == 0 || limit > c.list_max_limit) {
        return sim.error_response(
            StatusCode::BAD_REQUEST,
            vec![err(
                codes::INVALID_QUERY,
                format!("Parameter 'limit' must be between 1 and {}.", c.list_max_limit),
            )],
            OP,
        );
    }
    let (skip, take) = match dialect.paging {
        Paging::Paged => (offset, limit),
        Paging::Unpaged => (0, usize::MAX),
        Paging::Capped => (offset, limit.min(CAP)),
        Paging::OffsetIgnored => (0, limit.min(c.list_max_limit)),
    };
    let state = lock(&sim.state);
    let page: Vec<Value> = state.agents.values().skip(skip).take(take).map(|a| dialect.agent(a)).collect();
    let body = dialect.list(page, state.agents.len());
    drop(state);
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(OpName(OP));
    response
}

async fn get_agent(
    State(sim): State<Arc<ThuliumSim>>,
    headers: HeaderMap,
    Path(login): Path<String>,
) -> Response {
    const OP: &str = "GET agents/:login";
    if !sim.authorized(&headers) {
        return sim.unauthorized(OP);
    }
    let dialect = sim.current();
    let found = {
        let state = lock(&sim.state);
        let id = state.agents.find(&login_key(&login));
        id.and_then(|id| state.agents.get(&id)).map(|a| dialect.agent(a))
    };
    match found {
        Some(agent) => {
            let mut response = Json(agent).into_response();
            response.extensions_mut().insert(OpName(OP));
            response
        }
        None => sim.error_response(
            StatusCode::NOT_FOUND,
            vec![err(codes::NOT_FOUND, format!("Agent '{login}' not found."))],
            OP,
        ),
    }
}

async fn not_found(State(sim): State<Arc<ThuliumSim>>, headers: HeaderMap) -> Response {
    const OP: &str = "not found";
    if !sim.authorized(&headers) {
        return sim.unauthorized(OP);
    }
    sim.error_response(StatusCode::NOT_FOUND, vec![err(codes::NOT_FOUND, "Resource not found.")], OP)
}

fn parse_id(id: &str) -> Result<u64, SimError> {
    id.parse::<u64>().map_err(|_| SimError::NotFound(id.to_string()))
}

fn invalid(errors: Vec<ApiError>) -> SimError {
    let messages: Vec<String> = errors.into_iter().map(|e| e.message).collect();
    SimError::Invalid(messages.join(" "))
}

impl Simulator for ThuliumSim {
    fn kind(&self) -> &'static str {
        "thulium"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/agents", get(list_agents).post(create_agent))
            .route("/api/agents/{login}", get(get_agent))
            .method_not_allowed_fallback(not_found)
            .fallback(not_found)
            .with_state(self)
    }

    fn dump(&self) -> Value {
        Value::Array(lock(&self.state).agents.values().map(Agent::full).collect())
    }

    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError> {
        let agent_id = parse_id(id)?;
        let mut state = lock(&self.state);
        let current =
            state.agents.get(&agent_id).cloned().ok_or_else(|| SimError::NotFound(id.to_string()))?;
        let mut input = current.as_input();
        let mut group_id = current.group_id;
        for (key, value) in patch {
            match key.as_str() {
                "group_id" => {
                    group_id = value
                        .as_u64()
                        .ok_or_else(|| SimError::Invalid("group_id must be an integer".into()))?;
                }
                // The dump shows number as an integer; accept that form back.
                "number" if value.is_u64() => {
                    input.insert(key.clone(), Value::String(value.to_string()));
                }
                "login" | "name" | "surname" | "email" | "password" | "number" | "change_password"
                | "callerid" | "language" | "active" | "outbound_mode" | "roles" => {
                    input.insert(key.clone(), value.clone());
                }
                other => {
                    return Err(SimError::Invalid(format!("unknown or read-only field '{other}'")));
                }
            }
        }
        let mut agent = self.validate(&input, &state.agents, Some(agent_id)).map_err(invalid)?;
        agent.agent_id = agent_id;
        agent.group_id = group_id;
        state.agents.insert(agent_id, agent);
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), SimError> {
        let agent_id = parse_id(id)?;
        lock(&self.state)
            .agents
            .remove(&agent_id)
            .map(|_| ())
            .ok_or_else(|| SimError::NotFound(id.to_string()))
    }

    fn seed(&self, account: &Value) -> Result<String, SimError> {
        let Value::Object(input) = account else {
            return Err(SimError::Invalid("an agent must be a JSON object".into()));
        };
        self.create(input).map(|a| a.agent_id.to_string()).map_err(invalid)
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
            ("username".to_string(), self.config.username.clone()),
            ("password".to_string(), self.config.password.clone()),
        ])
    }
}
