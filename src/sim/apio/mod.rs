//! Netaxis APIO simulator: APIO core's login/refresh/M2M authentication in front of the
//! BroadWorks end-user API (list, create, get, update, delete users of one group).
//!
//! `docs/compatibility.md` ("Netaxis APIO") gives the public source behind each behaviour.
//! Where the evidence allows more than one answer, the simulator serves each as a dialect
//! ([`dialect::ApioDialect`]: a user's record with or without `userId`, the list's shape,
//! `responseSizeLimit` honoured or ignored, where criteria are read, ids without the
//! default domain, no-slash paths answered or redirected, the password keys of a PUT,
//! unknown fields refused or dropped, the create answer, the duplicate status, the
//! department's shape); its defaults are the most faithful reading.
//!
//! What it enforces (from the seed document 002 and `pbx-apis/apio-telphin-ringostat.md` §1):
//! - `POST /api/v01/auth/login` with `{"username","password"[,"proxy"]}` only (no other
//!   properties, lengths 200/200/70) answers `access_token` (JWT, short-lived),
//!   `refresh_token` (JWT, long-lived, usable only at the refresh endpoint) and `token`
//!   (the M2M token, never expires); a wrong login is 401 `{"error": ...}`.
//! - `GET /api/v01/auth/access_token` with `Authorization: Bearer <refresh_token>` answers a
//!   new `access_token`, plus a new `refresh_token` only when the current one is close to
//!   expiry; any other token there is 401 `{"error": ...}`.
//! - Every provisioning call needs `Authorization: Bearer <access_token | M2M token>`;
//!   missing, unknown, expired or refresh tokens are 401 `{"error": ...}`.
//! - Users live under `{prefix}/tenants/{t}/groups/{g}/users/` and `.../users/{userId}/`,
//!   each with or without the trailing slash (the current vendor UI lists and reads
//!   without it, the docs and the older UI use it). An id without a domain is in the
//!   system default domain (OCI `UserId`). Unknown tenant or group is 404.
//! - List answers `{"users":[...]}` (dialect: a bare array) without hidden users unless
//!   `includeHiddenUsers`, and
//!   applies exactly the seed's search criteria (`sensitive*`/`insensitive*` +
//!   `Starts`/`Contains`/`Equals`, ANDed, each at most once) and `responseSizeLimit` (>= 1).
//!   Criteria are read from a JSON body on the GET (as the docs show) and from the query
//!   string (as the vendor UI sends them on `/search/users`), or from one of them only
//!   (dialect); a criterion given twice or an unknown criterion is 400.
//! - Create requires `firstName` and `lastName` (BroadWorks `UserAddRequest`); generates
//!   `userId` with `USER_ID_RULE` (default `{{group_id}}_u{{RND_4}}@{{domain}}`) when absent
//!   and appends `@domain` to a given id without one; `userId` is unique system-wide,
//!   `extension` unique in the group, `phoneNumber` unique system-wide; the password is
//!   checked against the local rule (`VALIDATE_PASSWORD_LOCAL_RULE`: min 8 chars, 1 upper,
//!   1 lower) and generated from `MINIMUM_PASSWORD_RULES.END_USER` when absent;
//!   calling-line-id names must not contain `%`, `+`, `\`, `"` or non-ASCII characters;
//!   `trunkEndpoint` and `accessDeviceEndpoint` are mutually exclusive.
//! - PUT is a partial update (BroadWorks `UserModifyRequest` semantics; the vendor UI sends a
//!   subset of the fields), `null` clears an optional field. A new password is `password`
//!   (the UI) or `newPassword` with an optional `oldPassword` that must be the current one
//!   (the docs, OCI), or either (dialect). Passwords are never returned; a user's record
//!   carries no `userId` unless the dialect says so (OCI `UserGetResponse` has none).
//! - Errors are `{"errors":[{"message": ...}]}` (auth errors `{"error": ...}`).
//! - Also served because the vendor UI reads them: `GET /api/v01/apio/provisioning/gateways`,
//!   `{prefix}/tenants/{t}/groups/{g}/password_rules/`, `{prefix}/system/languages`.
//!
//! Choices where the sources are silent (constants in [`ApioConfig::default`] and the
//! consts below):
//! - Prefixes served: `/api/v1` (the BroadWorks docs and the seed), `/api/v01/p1` (the
//!   APIO-core gateway form, listed by the gateways endpoint) and
//!   `/api/v01/apio/sync/api/v1` (the older UI's path). All three are documented forms of
//!   the same API, so a client configured with any of them works; anything else is 404.
//! - Status codes: create 201 with the created user (without password; dialect: without
//!   `userId`, or `{}`); get/update 200 with the user; delete 200 `{}` (the UI parses a
//!   JSON body); validation 400; duplicate userId/extension/phoneNumber 409 (dialect: 400);
//!   unknown tenant/group/user 404; POST/PUT without a JSON content type 415.
//! - Unknown body fields on create/update are 400 (a misspelt field must not be silently
//!   dropped; dialect: dropped). `callingLineIdFirstName`/`callingLineIdLastName` are accepted as aliases of
//!   `cliFirstName`/`cliLastName` (stored under the cli names, which the UI reads); the cli
//!   names default to first/last name on create.
//! - `{{RND_N}}` is N random decimal digits; rule variables supported: `group_id`,
//!   `tenant_id`, `domain`, `phone_number_e164`, `RND_N` (others make the create fail 400).
//! - Generated passwords are [`GENERATED_PASSWORD_LEN`] characters and are not returned by
//!   the API (BroadWorks never returns passwords); `dump` shows them.
//! - Field limits (BroadWorks schema sizes): names 1..=30 chars, email <= 80 and `x@y.z`,
//!   extension 2..=6 digits (group setting), phone number `+?` and 3..=15 digits,
//!   password <= 60, userId <= 161 chars without whitespace.
//! - `language` must be one of the configured languages (default `English`); templates
//!   (`templateName`) must be configured (none by default); departments are not checked
//!   against a department list.
//! - The seed's list example sends `sensitiveUserNameContains`, which its criteria table
//!   lacks; it is accepted (that one name only) and matches the `userId`.
//! - `responseSizeLimit` truncates silently (the list is sorted by `userId`; dialect:
//!   ignored); there is no server-side maximum and no pagination, as documented.
//! - JWTs are HS256-shaped but the signature is random bytes: the simulator validates tokens
//!   by lookup, clients only decode `exp`. Lifetimes: access 300 s, refresh 24 h, a new
//!   refresh token is issued when less than 1 h remains.
//! - Defaults: tenant `foo` with group `foogroup` (the seed's example names), domain
//!   `example.com`, login `sim-admin`. Get/create/update answers add `tenantId`, `groupId`
//!   and `inTrunkGroup` (true when a `trunkEndpoint` is set) to the stored fields.
//! - Hidden users (the APIO's service-feature users) can only be made via `seed` with
//!   `"hidden": true`; `expire_tokens` invalidates access and refresh tokens but not the
//!   M2M token (documented as immutable until regenerated).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Map, Value, json};

use super::{OpName, SimError, Simulator, lock};

mod auth;
pub mod dialect;
mod list;
mod table;
mod ui;
mod users;

use auth::{login, refresh};
pub use dialect::ApioDialect;
use dialect::{Department, NoSlash};
use list::list_users;
use ui::{gateways, languages, password_rules};
use users::{create_user, delete_user, get_user, update_user};

/// Length of a password the simulator generates when a create has none.
pub const GENERATED_PASSWORD_LEN: usize = 12;
const NAME_MAX: usize = 30;
const EMAIL_MAX: usize = 80;
const USER_ID_MAX: usize = 161;
const TITLE_MAX: usize = 50;
const LOGIN_FIELD_MAX: usize = 200;
const PROXY_MAX: usize = 70;
/// Characters BroadWorks refuses in calling-line-id names (besides non-ASCII).
const CLI_FORBIDDEN: &[char] = &['%', '+', '\\', '"'];
const SPECIALS: &[u8] = b"!#$%&*+-=?@_";

/// The group's password rule, as `password_rules/` reports it and create/update enforce it.
#[derive(Clone, Debug)]
pub struct PasswordRule {
    pub min_length: usize,
    pub max_length: usize,
    pub min_uppercase: usize,
    pub min_lowercase: usize,
    pub min_digits: usize,
    pub min_special: usize,
}

impl PasswordRule {
    fn check(&self, password: &str) -> Result<(), String> {
        let count = |f: fn(&char) -> bool| password.chars().filter(f).count();
        let len = password.chars().count();
        if len < self.min_length {
            return Err(format!("Password must be at least {} characters long", self.min_length));
        }
        if len > self.max_length {
            return Err(format!("Password must be at most {} characters long", self.max_length));
        }
        if count(char::is_ascii_uppercase) < self.min_uppercase {
            return Err(format!("Password must contain at least {} uppercase letter(s)", self.min_uppercase));
        }
        if count(char::is_ascii_lowercase) < self.min_lowercase {
            return Err(format!("Password must contain at least {} lowercase letter(s)", self.min_lowercase));
        }
        if count(char::is_ascii_digit) < self.min_digits {
            return Err(format!("Password must contain at least {} digit(s)", self.min_digits));
        }
        if count(|c| !c.is_alphanumeric()) < self.min_special {
            return Err(format!(
                "Password must contain at least {} non-alphanumeric character(s)",
                self.min_special
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct ApioConfig {
    /// APIO login user (also owner of the M2M token).
    pub username: String,
    pub password: String,
    /// Machine-to-machine token; empty disables it.
    pub m2m_token: String,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    /// A refresh returns a new refresh token when the current one has less than this left.
    pub refresh_renewal_window: Duration,
    /// Provisioning prefixes served (no trailing slash).
    pub prefixes: Vec<String>,
    /// `(name, prefix)` pairs listed by `/api/v01/apio/provisioning/gateways`.
    pub gateways: Vec<(String, String)>,
    /// The AS system default domain (user ids, `{{domain}}`).
    pub domain: String,
    /// Tenant id -> its group ids.
    pub tenants: BTreeMap<String, Vec<String>>,
    /// `AUTOMATIC_ID_RULES.USER_ID_RULE`.
    pub user_id_rule: String,
    /// `VALIDATE_PASSWORD_LOCAL_RULE`.
    pub validate_password_local_rule: bool,
    pub local_password_rule: PasswordRule,
    /// `MINIMUM_PASSWORD_RULES.END_USER`, used to generate passwords.
    pub generated_password_rule: PasswordRule,
    /// Group extension length bounds (digits).
    pub extension_min_len: usize,
    pub extension_max_len: usize,
    pub languages: Vec<String>,
    pub default_language: String,
    /// User templates that `templateName` may name.
    pub templates: Vec<String>,
    pub seed: u64,
}

impl Default for ApioConfig {
    fn default() -> Self {
        ApioConfig {
            username: "sim-admin".into(),
            password: "Sim-Admin-Passw0rd".into(),
            m2m_token: "sim-apio-m2m-token-0123456789abcdef".into(),
            access_token_lifetime: Duration::from_secs(300),
            refresh_token_lifetime: Duration::from_secs(24 * 3600),
            refresh_renewal_window: Duration::from_secs(3600),
            prefixes: vec!["/api/v1".into(), "/api/v01/p1".into(), "/api/v01/apio/sync/api/v1".into()],
            gateways: vec![("p1".into(), "/api/v01/p1".into())],
            domain: "example.com".into(),
            tenants: BTreeMap::from([("foo".to_string(), vec!["foogroup".to_string()])]),
            user_id_rule: "{{group_id}}_u{{RND_4}}@{{domain}}".into(),
            validate_password_local_rule: true,
            local_password_rule: PasswordRule {
                min_length: 8,
                max_length: 60,
                min_uppercase: 1,
                min_lowercase: 1,
                min_digits: 0,
                min_special: 0,
            },
            generated_password_rule: PasswordRule {
                min_length: 8,
                max_length: 60,
                min_uppercase: 1,
                min_lowercase: 1,
                min_digits: 1,
                min_special: 1,
            },
            extension_min_len: 2,
            extension_max_len: 6,
            languages: vec!["English".into()],
            default_language: "English".into(),
            templates: Vec::new(),
            seed: 0x0a91_0002,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TokenKind {
    Access,
    Refresh,
}

struct Token {
    kind: TokenKind,
    expires: Instant,
}

#[derive(Clone, Debug)]
struct User {
    tenant: String,
    group: String,
    hidden: bool,
    password: String,
    /// The user in APIO's field names, `userId` included, password excluded.
    fields: Map<String, Value>,
}

impl User {
    fn str_field(&self, k: &str) -> &str {
        self.fields.get(k).and_then(Value::as_str).unwrap_or("")
    }

    fn in_trunk_group(&self) -> bool {
        self.fields.get("trunkEndpoint").is_some_and(|v| !v.is_null())
    }

    /// Every stored field, with the group it lives in.
    fn full_view(&self) -> Map<String, Value> {
        let mut m = self.fields.clone();
        m.insert("tenantId".into(), json!(self.tenant));
        m.insert("groupId".into(), json!(self.group));
        m.insert("inTrunkGroup".into(), json!(self.in_trunk_group()));
        m
    }

    /// The user as `GET users/{userId}` (and PUT) answer it.
    fn api_view(&self, dialect: &ApioDialect) -> Value {
        let mut m = self.full_view();
        if !dialect.detail_user_id {
            m.remove("userId");
        }
        department_view(&mut m, dialect);
        Value::Object(m)
    }

    /// One row of the group list. Stored values are passed as they are (a value tampered
    /// into the wrong type shows as such), absent ones as `""`.
    fn list_view(&self, dialect: &ApioDialect, domain: &str) -> Value {
        let mut m = Map::new();
        for k in ["userId", "firstName", "lastName", "extension", "emailAddress", "phoneNumber"] {
            m.insert(k.into(), self.fields.get(k).cloned().unwrap_or_else(|| json!("")));
        }
        if !dialect.list_user_id_domain
            && let Some(local) = self.str_field("userId").strip_suffix(&format!("@{domain}"))
        {
            m.insert("userId".into(), json!(local));
        }
        if let Some(d) = self.fields.get("department") {
            m.insert("department".into(), d.clone());
        }
        department_view(&mut m, dialect);
        m.insert("inTrunkGroup".into(), json!(self.in_trunk_group()));
        Value::Object(m)
    }

    fn dump_view(&self) -> Value {
        let mut m = self.full_view();
        m.insert("password".into(), json!(self.password));
        m.insert("hidden".into(), json!(self.hidden));
        Value::Object(m)
    }
}

/// `department` as the dialect shows it: the stored object, or its name (`""` for none).
fn department_view(m: &mut Map<String, Value>, dialect: &ApioDialect) {
    if dialect.department == Department::Name {
        let name = match m.get("department") {
            Some(Value::Object(d)) => d.get("departmentName").cloned().unwrap_or_else(|| json!("")),
            _ => json!(""),
        };
        m.insert("department".into(), name);
    }
}

struct Inner {
    users: table::Users,
    tokens: HashMap<String, Token>,
    rng: StdRng,
}

pub struct ApioSim {
    cfg: ApioConfig,
    inner: Mutex<Inner>,
    dialect: Mutex<ApioDialect>,
}

/// An API error: `{"errors":[{"message"}]}` with a status.
struct ApiErr(StatusCode, String);

impl ApiErr {
    fn bad(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::BAD_REQUEST, msg.into())
    }
    fn conflict(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::CONFLICT, msg.into())
    }
    fn not_found(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::NOT_FOUND, msg.into())
    }
    /// A duplicate answered with the dialect's status (409, or 400).
    fn duplicate_as(self, status: u16) -> Self {
        match self.0 {
            StatusCode::CONFLICT => {
                ApiErr(StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT), self.1)
            }
            _ => self,
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"errors": [{"message": self.1}]}))).into_response()
    }
}

impl From<ApiErr> for SimError {
    fn from(e: ApiErr) -> Self {
        if e.0 == StatusCode::NOT_FOUND { SimError::NotFound(e.1) } else { SimError::Invalid(e.1) }
    }
}

fn auth_error(msg: &str) -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": msg}))).into_response()
}

fn named(op: &'static str, r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.extensions_mut().insert(OpName(op));
    r
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("The request body must be a JSON object".into()),
        Err(e) => Err(format!("Invalid JSON body: {e}")),
    }
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

impl ApioSim {
    pub fn new(cfg: ApioConfig) -> Arc<Self> {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Arc::new(ApioSim {
            cfg,
            inner: Mutex::new(Inner { users: table::Users::default(), tokens: HashMap::new(), rng }),
            dialect: Mutex::new(ApioDialect::default()),
        })
    }

    /// The dialect served now.
    pub fn dialect_now(&self) -> ApioDialect {
        lock(&self.dialect).clone()
    }

    /// A user id as the path gave it: BroadWorks takes an id without a domain to be in
    /// the system default domain (OCI `UserId`), which is how a list that shows ids
    /// without it (`list_user_id_domain` off) can be followed.
    fn resolve_id(&self, id: &str) -> String {
        if id.contains('@') { id.to_owned() } else { format!("{id}@{}", self.cfg.domain) }
    }

    pub fn config(&self) -> &ApioConfig {
        &self.cfg
    }

    /// Invalidate the access tokens only (refresh tokens stay valid), so a test can check
    /// that a client refreshes instead of logging in again.
    pub fn expire_access_tokens(&self) {
        lock(&self.inner).tokens.retain(|_, t| t.kind != TokenKind::Access);
    }

    fn group_exists(&self, tenant: &str, group: &str) -> Result<(), ApiErr> {
        match self.cfg.tenants.get(tenant) {
            None => Err(ApiErr::not_found(format!("Tenant {tenant} not found"))),
            Some(groups) if !groups.iter().any(|g| g == group) => {
                Err(ApiErr::not_found(format!("Group {group} not found in tenant {tenant}")))
            }
            Some(_) => Ok(()),
        }
    }
}

// ---- handlers -------------------------------------------------------------------------

type Sim = State<Arc<ApioSim>>;

/// With `no_slash: redirect`, a user path without its trailing slash is answered 308 to
/// the slash form (method and body kept), as a framework with strict slashes does.
async fn strict_slashes(State(sim): Sim, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let users_path = path.ends_with("/users") || path.contains("/users/");
    if sim.dialect_now().no_slash == NoSlash::Redirect && users_path && !path.ends_with('/') {
        let location = match req.uri().query() {
            Some(q) => format!("{path}/?{q}"),
            None => format!("{path}/"),
        };
        return named("redirect", (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]));
    }
    next.run(req).await
}

/// Prefixes that can be registered as routes: absolute, no trailing slash, no route
/// syntax, not under the control plane, no duplicates (axum refuses those at startup).
fn usable_prefixes(prefixes: &[String]) -> BTreeSet<String> {
    prefixes
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| {
            p.starts_with('/')
                && !p.starts_with("/_sim")
                && !p.contains(['{', '}', '*', ':'])
                && !p.contains("//")
        })
        .collect()
}

impl Simulator for ApioSim {
    fn kind(&self) -> &'static str {
        "apio"
    }

    fn router(self: Arc<Self>) -> Router {
        let mut r = Router::new()
            .route("/api/v01/auth/login", post(login))
            .route("/api/v01/auth/access_token", get(refresh))
            .route("/api/v01/apio/provisioning/gateways", get(gateways));
        for p in usable_prefixes(&self.cfg.prefixes) {
            let group = format!("{p}/tenants/{{tenant}}/groups/{{group}}");
            // Both forms of every user path: the current UI lists and reads without the
            // trailing slash, creates, updates and deletes with it; the docs and the
            // older UI use it everywhere.
            r = r
                .route(&format!("{group}/users"), get(list_users).post(create_user))
                .route(&format!("{group}/users/"), get(list_users).post(create_user))
                .route(
                    &format!("{group}/users/{{user_id}}"),
                    get(get_user).put(update_user).delete(delete_user),
                )
                .route(
                    &format!("{group}/users/{{user_id}}/"),
                    get(get_user).put(update_user).delete(delete_user),
                )
                .route(&format!("{group}/password_rules/"), get(password_rules))
                .route(&format!("{p}/system/languages"), get(languages));
        }
        r.layer(from_fn_with_state(self.clone(), strict_slashes)).with_state(self)
    }

    fn dialect(&self) -> Value {
        serde_json::to_value(self.dialect_now()).unwrap_or_default()
    }

    fn set_dialect(&self, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut current = lock(&self.dialect);
        let next = super::patch_dialect(&*current, patch)?;
        next.check().map_err(SimError::Invalid)?;
        *current = next;
        Ok(())
    }

    fn dump(&self) -> Value {
        let inner = lock(&self.inner);
        Value::Array(inner.users.values().map(User::dump_view).collect())
    }

    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut inner = lock(&self.inner);
        // Checked before any change: a refused tamper leaves the user as it was.
        for (k, v) in patch {
            match (k.as_str(), v) {
                ("userId" | "tenantId" | "groupId", _) => {
                    return Err(SimError::Invalid(format!("{k} cannot be tampered with")));
                }
                ("password", Value::String(_)) | ("hidden", Value::Bool(_)) => {}
                ("password" | "hidden", _) => {
                    return Err(SimError::Invalid(format!("bad value for {k}")));
                }
                _ => {}
            }
        }
        let edited = inner.users.edit(id, |user| {
            for (k, v) in patch {
                match (k.as_str(), v) {
                    ("password", Value::String(p)) => user.password = p.clone(),
                    ("hidden", Value::Bool(b)) => user.hidden = *b,
                    (k, Value::Null) => {
                        user.fields.remove(k);
                    }
                    (k, v) => {
                        user.fields.insert(k.to_string(), v.clone());
                    }
                }
            }
        });
        edited.ok_or_else(|| SimError::NotFound(id.to_string()))
    }

    fn remove(&self, id: &str) -> Result<(), SimError> {
        lock(&self.inner).users.remove(id).map(|_| ()).ok_or_else(|| SimError::NotFound(id.to_string()))
    }

    /// `account`: the create body, plus optional `tenantId`/`groupId` (default: the first
    /// configured group) and `hidden`.
    fn seed(&self, account: &Value) -> Result<String, SimError> {
        let Value::Object(m) = account else {
            return Err(SimError::Invalid("account must be a JSON object".into()));
        };
        let mut body = m.clone();
        let first = self.cfg.tenants.iter().find_map(|(t, gs)| gs.first().map(|g| (t, g)));
        let tenant = match body.remove("tenantId") {
            Some(Value::String(t)) => t,
            Some(_) => return Err(SimError::Invalid("tenantId must be a string".into())),
            None => first.map(|(t, _)| t.clone()).unwrap_or_default(),
        };
        let group = match body.remove("groupId") {
            Some(Value::String(g)) => g,
            Some(_) => return Err(SimError::Invalid("groupId must be a string".into())),
            None => first.map(|(_, g)| g.clone()).unwrap_or_default(),
        };
        let hidden = match body.remove("hidden") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(SimError::Invalid("hidden must be a boolean".into())),
        };
        let mut inner = lock(&self.inner);
        let user = self.create_user(&mut inner, &tenant, &group, &body, hidden)?;
        Ok(user.str_field("userId").to_string())
    }

    fn credentials(&self) -> BTreeMap<String, String> {
        let mut c = BTreeMap::from([
            ("username".to_string(), self.cfg.username.clone()),
            ("password".to_string(), self.cfg.password.clone()),
        ]);
        if !self.cfg.m2m_token.is_empty() {
            c.insert("token".into(), self.cfg.m2m_token.clone());
        }
        c
    }

    fn expire_tokens(&self) {
        lock(&self.inner).tokens.clear();
    }
}
