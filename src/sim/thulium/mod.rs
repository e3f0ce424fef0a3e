//! Thulium REST API simulator: the agents part of `https://<system>.thulium.com/api/`.
//!
//! Enforces what the public docs say (seed 001, `pbx-apis/mikopbx-thulium.md` Part 2):
//! - HTTP Basic auth on every route; otherwise 401 with the documented error body
//!   `{"request_id": "...", "errors": [{"message": ..., "code": ...}]}`.
//! - `POST /api/agents` (JSON): `name`, `surname`, `login`, `password`, `number` required;
//!   optional `email`, `change_password` (default false), `callerid` (default first letter
//!   of the name + "." + surname, e.g. "J.Kowalski"), `language` (`pl`|`en`, default `pl`),
//!   `active` (default true), `outbound_mode` (`manual`|`auto`, default `manual`), `roles`
//!   (array of role ids). 201 with `{"agent_id": "<string>", "agent_login": <login>}`.
//!   Validation errors: 400 with every problem found listed in `errors`.
//! - `GET /api/agents/{login}`: the documented GET-one shape, with its type differences
//!   kept on purpose: `agent_id` and `number` are integers here although the create call
//!   sends `number` as a string and answers `agent_id` as a string. Unknown login: 404.
//! - `GET /api/agents`: list (its page is not public, see below).
//! - No update and no delete: the public index has none for agents, so any other method or
//!   path answers 404 with the error body (the docs' general table: 404 = "URI or object
//!   not found"; a PHP router of that kind answers an unknown method+path pair the same
//!   way as an unknown path, so no 405).
//!
//! Choices where the sources are silent (constants in [`ThuliumConfig`] and [`codes`]):
//! - `GET /api/agents`: query `limit` (default 100, max 100) and `offset` (default 0), as
//!   `agents_work_report` documents; answers a bare JSON array of GET-one objects sorted by
//!   `agent_id`, no total. A `limit` above the maximum, or a non-numeric/negative `limit`
//!   or `offset`, is a 400 (not clamped), so a client that thinks it got everything with
//!   one big page fails loudly. Clients page until a page is shorter than `limit`.
//! - Error codes (`code` in each error) are the simulator's own, gathered in [`codes`];
//!   messages are English only (`Accept-Language: pl` is ignored).
//! - Duplicate `login` (compared case-insensitively, as a default MySQL collation would)
//!   and duplicate `number` (compared as integers, since GET returns it as one, so "0345"
//!   and "345" clash) are 400 validation errors. `GET /api/agents/{login}` also matches
//!   the login case-insensitively, for the same reason.
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

use super::{OpName, SimError, Simulator, is_valid_email, lock};

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

#[derive(Clone, Debug)]
struct Agent {
    agent_id: u64,
    login: String,
    name: String,
    surname: String,
    email: Option<String>,
    password: String,
    number: u64,
    change_password: bool,
    callerid: String,
    language: String,
    active: bool,
    outbound_mode: String,
    roles: Vec<u64>,
    group_id: u64,
}

impl Agent {
    /// The documented `GET agents/:login` shape.
    fn public(&self) -> Value {
        json!({
            "agent_id": self.agent_id,
            "login": self.login,
            "name": self.name,
            "surname": self.surname,
            "email": self.email,
            "active": self.active,
            "number": self.number,
            "outbound_mode": self.outbound_mode,
            "group_id": self.group_id,
        })
    }

    fn full(&self) -> Value {
        let mut v = self.public();
        if let Value::Object(m) = &mut v {
            m.insert("password".into(), json!(self.password));
            m.insert("change_password".into(), json!(self.change_password));
            m.insert("callerid".into(), json!(self.callerid));
            m.insert("language".into(), json!(self.language));
            m.insert("roles".into(), json!(self.roles));
        }
        v
    }

    /// The agent as a create body, so tamper can re-run the create checks.
    fn as_input(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("login".into(), json!(self.login));
        m.insert("name".into(), json!(self.name));
        m.insert("surname".into(), json!(self.surname));
        m.insert("email".into(), json!(self.email));
        m.insert("password".into(), json!(self.password));
        m.insert("number".into(), json!(self.number.to_string()));
        m.insert("change_password".into(), json!(self.change_password));
        m.insert("callerid".into(), json!(self.callerid));
        m.insert("language".into(), json!(self.language));
        m.insert("active".into(), json!(self.active));
        m.insert("outbound_mode".into(), json!(self.outbound_mode));
        m.insert("roles".into(), json!(self.roles));
        m
    }
}

#[derive(Debug, Clone)]
struct ApiError {
    message: String,
    code: u32,
}

fn err(code: u32, message: impl Into<String>) -> ApiError {
    ApiError { message: message.into(), code }
}

struct Store {
    agents: BTreeMap<u64, Agent>,
    next_id: u64,
    rng: StdRng,
}

pub struct ThuliumSim {
    config: ThuliumConfig,
    state: Mutex<Store>,
}

impl ThuliumSim {
    pub fn new(config: ThuliumConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Store {
                agents: BTreeMap::new(),
                next_id: config.first_agent_id,
                rng: StdRng::seed_from_u64(config.seed),
            }),
            config,
        })
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

    /// The create checks, shared by the API, `seed` and `tamper` (`exclude` is the agent
    /// being tampered with, so it does not clash with itself).
    fn validate(
        &self,
        input: &Map<String, Value>,
        agents: &BTreeMap<u64, Agent>,
        exclude: Option<u64>,
    ) -> Result<Agent, Vec<ApiError>> {
        let c = &self.config;
        let mut errors = Vec::new();

        let required_string = |field: &str, errors: &mut Vec<ApiError>| -> Option<String> {
            match input.get(field) {
                None | Some(Value::Null) => {
                    errors.push(err(codes::REQUIRED, format!("Field '{field}' is required.")));
                    None
                }
                Some(Value::String(s)) if s.trim().is_empty() => {
                    errors.push(err(codes::REQUIRED, format!("Field '{field}' is required.")));
                    None
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    errors.push(err(codes::INVALID_VALUE, format!("Field '{field}' must be a string.")));
                    None
                }
            }
        };
        let name = required_string("name", &mut errors);
        let surname = required_string("surname", &mut errors);
        let login = required_string("login", &mut errors);
        let password = required_string("password", &mut errors);
        let number_raw = required_string("number", &mut errors);

        for (field, value) in [("name", &name), ("surname", &surname)] {
            if let Some(v) = value
                && v.chars().count() > c.name_max_len
            {
                errors.push(err(
                    codes::INVALID_VALUE,
                    format!("Field '{field}' must be at most {} characters long.", c.name_max_len),
                ));
            }
        }

        if let Some(l) = &login {
            let ok_chars = l.chars().all(|ch| ch.is_ascii_alphanumeric() || "._@-".contains(ch));
            if !ok_chars || l.len() > c.login_max_len {
                errors.push(err(
                    codes::INVALID_VALUE,
                    format!(
                        "Field 'login' may contain only letters, digits and . _ @ - (at most {} characters).",
                        c.login_max_len
                    ),
                ));
            } else if agents.values().any(|a| Some(a.agent_id) != exclude && a.login.eq_ignore_ascii_case(l))
            {
                errors.push(err(codes::DUPLICATE_LOGIN, format!("Agent with login '{l}' already exists.")));
            }
        }

        let mut number = None;
        if let Some(n) = &number_raw {
            if n.is_empty() || n.len() > c.number_max_digits || !n.chars().all(|ch| ch.is_ascii_digit()) {
                errors.push(err(
                    codes::INVALID_VALUE,
                    format!("Field 'number' must be a string of 1 to {} digits.", c.number_max_digits),
                ));
            } else if let Ok(value) = n.parse::<u64>() {
                if agents.values().any(|a| Some(a.agent_id) != exclude && a.number == value) {
                    errors.push(err(
                        codes::DUPLICATE_NUMBER,
                        format!("Number {value} is already assigned to another agent."),
                    ));
                } else {
                    number = Some(value);
                }
            }
        }

        let email = match input.get("email") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if is_valid_email(s) => Some(s.clone()),
            Some(Value::String(_)) => {
                errors.push(err(codes::INVALID_VALUE, "Field 'email' is not a valid e-mail address."));
                None
            }
            Some(_) => {
                errors.push(err(codes::INVALID_VALUE, "Field 'email' must be a string."));
                None
            }
        };

        let boolean = |field: &str, default: bool, errors: &mut Vec<ApiError>| -> bool {
            match input.get(field) {
                None | Some(Value::Null) => default,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    errors.push(err(codes::INVALID_VALUE, format!("Field '{field}' must be true or false.")));
                    default
                }
            }
        };
        let change_password = boolean("change_password", false, &mut errors);
        let active = boolean("active", true, &mut errors);

        let one_of = |field: &str, allowed: &[String], default: &str, errors: &mut Vec<ApiError>| -> String {
            match input.get(field) {
                None | Some(Value::Null) => default.to_string(),
                Some(Value::String(s)) if allowed.iter().any(|a| a == s) => s.clone(),
                Some(_) => {
                    errors.push(err(
                        codes::INVALID_VALUE,
                        format!("Field '{field}' must be one of: {}.", allowed.join(", ")),
                    ));
                    default.to_string()
                }
            }
        };
        let language = one_of("language", &c.languages, "pl", &mut errors);
        let outbound_mode = one_of("outbound_mode", &c.outbound_modes, "manual", &mut errors);

        let callerid = match input.get("callerid") {
            None | Some(Value::Null) => match (&name, &surname) {
                (Some(n), Some(s)) => {
                    let initial: String = n.trim().chars().take(1).collect();
                    format!("{initial}.{}", s.trim())
                }
                _ => String::new(),
            },
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(_) => {
                errors.push(err(codes::INVALID_VALUE, "Field 'callerid' must be a non-empty string."));
                String::new()
            }
        };

        let mut roles = Vec::new();
        match input.get("roles") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_u64() {
                        Some(id) if c.role_ids.contains(&id) => {
                            if !roles.contains(&id) {
                                roles.push(id);
                            }
                        }
                        Some(id) => {
                            errors.push(err(codes::INVALID_VALUE, format!("Role {id} does not exist.")))
                        }
                        None => errors
                            .push(err(codes::INVALID_VALUE, "Field 'roles' must be an array of role ids.")),
                    }
                }
            }
            Some(_) => errors.push(err(codes::INVALID_VALUE, "Field 'roles' must be an array of role ids.")),
        }

        match (errors.is_empty(), name, surname, login, password, number) {
            (true, Some(name), Some(surname), Some(login), Some(password), Some(number)) => Ok(Agent {
                agent_id: 0,
                login,
                name,
                surname,
                email,
                password,
                number,
                change_password,
                callerid,
                language,
                active,
                outbound_mode,
                roles,
                group_id: c.default_group_id,
            }),
            _ => Err(errors),
        }
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
    match sim.create(&input) {
        Ok(agent) => {
            let body = json!({"agent_id": agent.agent_id.to_string(), "agent_login": agent.login});
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            response.extensions_mut().insert(OpName(OP));
            response
        }
        Err(errors) => sim.error_response(StatusCode::BAD_REQUEST, errors, OP),
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
    if limit == 0 || limit > c.list_max_limit {
        return sim.error_response(
            StatusCode::BAD_REQUEST,
            vec![err(
                codes::INVALID_QUERY,
                format!("Parameter 'limit' must be between 1 and {}.", c.list_max_limit),
            )],
            OP,
        );
    }
    let page: Vec<Value> =
        lock(&sim.state).agents.values().skip(offset).take(limit).map(Agent::public).collect();
    let mut response = Json(Value::Array(page)).into_response();
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
    let found =
        lock(&sim.state).agents.values().find(|a| a.login.eq_ignore_ascii_case(&login)).map(Agent::public);
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

    fn credentials(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("username".to_string(), self.config.username.clone()),
            ("password".to_string(), self.config.password.clone()),
        ])
    }
}
