//! Netaxis APIO simulator: APIO core's login/refresh/M2M authentication in front of the
//! BroadWorks end-user API (list, create, get, update, delete users of one group).
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
//! - Users live under `{prefix}/tenants/{t}/groups/{g}/users/` (collection, trailing slash)
//!   and `.../users/{userId}` (with or without trailing slash: the vendor UI uses both).
//!   Unknown tenant or group is 404.
//! - List answers `{"users":[...]}` without hidden users unless `includeHiddenUsers`, and
//!   applies exactly the seed's search criteria (`sensitive*`/`insensitive*` +
//!   `Starts`/`Contains`/`Equals`, ANDed, each at most once) and `responseSizeLimit` (>= 1).
//!   Criteria are read from a JSON body on the GET (as the docs show) AND from the query
//!   string (as the vendor UI sends them); both may be mixed, but a criterion given twice or
//!   an unknown criterion is 400.
//! - Create requires `firstName` and `lastName` (BroadWorks `UserAddRequest`); generates
//!   `userId` with `USER_ID_RULE` (default `{{group_id}}_u{{RND_4}}@{{domain}}`) when absent
//!   and appends `@domain` to a given id without one; `userId` is unique system-wide,
//!   `extension` unique in the group, `phoneNumber` unique system-wide; the password is
//!   checked against the local rule (`VALIDATE_PASSWORD_LOCAL_RULE`: min 8 chars, 1 upper,
//!   1 lower) and generated from `MINIMUM_PASSWORD_RULES.END_USER` when absent;
//!   calling-line-id names must not contain `%`, `+`, `\`, `"` or non-ASCII characters;
//!   `trunkEndpoint` and `accessDeviceEndpoint` are mutually exclusive.
//! - PUT is a partial update (BroadWorks `UserModifyRequest` semantics; the vendor UI sends a
//!   subset of the fields), `null` clears an optional field. Passwords are never returned.
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
//! - Collection paths without the trailing slash are 404 (docs and UI always use it).
//! - Status codes: create 201 with the created user (without password); get/update 200
//!   with the user; delete 200 `{}` (the UI parses a JSON body); validation 400; duplicate
//!   userId/extension/phoneNumber 409; unknown tenant/group/user 404; POST/PUT without a
//!   JSON content type 415.
//! - Unknown body fields on create/update are 400 (a misspelt field must not be silently
//!   dropped). `callingLineIdFirstName`/`callingLineIdLastName` are accepted as aliases of
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
//! - `responseSizeLimit` truncates silently (the list is sorted by `userId`); there is no
//!   server-side maximum and no pagination, as documented.
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
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Map, Value, json};

use super::{OpName, SimError, Simulator, lock};

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

    fn api_view(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert("tenantId".into(), json!(self.tenant));
        m.insert("groupId".into(), json!(self.group));
        m.insert("inTrunkGroup".into(), json!(self.in_trunk_group()));
        Value::Object(m)
    }

    fn list_view(&self) -> Value {
        let mut m = Map::new();
        for k in ["userId", "firstName", "lastName", "extension", "emailAddress"] {
            m.insert(k.into(), json!(self.str_field(k)));
        }
        if let Some(d) = self.fields.get("department").filter(|d| d.is_object()) {
            m.insert("department".into(), d.clone());
        }
        m.insert("phoneNumber".into(), json!(self.str_field("phoneNumber")));
        m.insert("inTrunkGroup".into(), json!(self.in_trunk_group()));
        Value::Object(m)
    }

    fn dump_view(&self) -> Value {
        let mut m = self.api_view();
        if let Value::Object(m) = &mut m {
            m.insert("password".into(), json!(self.password));
            m.insert("hidden".into(), json!(self.hidden));
        }
        m
    }
}

struct Inner {
    users: BTreeMap<String, User>,
    tokens: HashMap<String, Token>,
    rng: StdRng,
}

pub struct ApioSim {
    cfg: ApioConfig,
    inner: Mutex<Inner>,
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

/// The search criteria the seed documents for the group user list, verbatim.
const LIST_CRITERIA: &[&str] = &[
    "sensitiveUserIdStarts",
    "sensitiveUserIdContains",
    "sensitiveUserIdEquals",
    "insensitiveUserIdStarts",
    "insensitiveUserIdContains",
    "insensitiveUserIdEquals",
    "sensitiveUserLastNameStarts",
    "sensitiveUserLastNameContains",
    "sensitiveUserLastNameEquals",
    "insensitiveUserLastNameStarts",
    "insensitiveUserLastNameContains",
    "insensitiveUserLastNameEquals",
    "sensitiveUserFirstNameStarts",
    "sensitiveUserFirstNameContains",
    "sensitiveUserFirstNameEquals",
    "insensitiveUserFirstNameStarts",
    "insensitiveUserFirstNameContains",
    "insensitiveUserFirstNameEquals",
    "insensitivePhoneNumberStarts",
    "insensitivePhoneNumberContains",
    "insensitivePhoneNumberEquals",
    "sensitiveEmailAddressStarts",
    "sensitiveEmailAddressContains",
    "sensitiveEmailAddressEquals",
    "insensitiveEmailAddressStarts",
    "insensitiveEmailAddressContains",
    "insensitiveEmailAddressEquals",
    "insensitiveExtensionStarts",
    "insensitiveExtensionContains",
    "insensitiveExtensionEquals",
    "insensitiveUserInTrunkGroupEquals",
    "sensitiveDepartmentEquals",
    // Not in the seed's table, but its own list example sends it ("username" = user id).
    "sensitiveUserNameContains",
];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Starts,
    Contains,
    Equals,
}

#[derive(Debug)]
enum Criterion {
    Text { field: &'static str, mode: Mode, sensitive: bool, value: String },
    Department(Map<String, Value>),
}

impl Criterion {
    fn parse(name: &str, value: &Value) -> Result<Self, ApiErr> {
        if !LIST_CRITERIA.contains(&name) {
            return Err(ApiErr::bad(format!("Unknown search criterion: {name}")));
        }
        if name == "sensitiveDepartmentEquals" {
            return match value {
                Value::Object(m) => Ok(Criterion::Department(m.clone())),
                // A query string can only carry the department name.
                Value::String(s) => {
                    Ok(Criterion::Department(Map::from_iter([("departmentName".to_string(), json!(s))])))
                }
                _ => Err(ApiErr::bad(format!("{name} must be an object"))),
            };
        }
        let Value::String(value) = value else {
            return Err(ApiErr::bad(format!("{name} must be a string")));
        };
        let (sensitive, rest) = match name.strip_prefix("insensitive") {
            Some(r) => (false, r),
            None => (true, name.strip_prefix("sensitive").unwrap_or(name)),
        };
        let (mode, subject) = if let Some(s) = rest.strip_suffix("Starts") {
            (Mode::Starts, s)
        } else if let Some(s) = rest.strip_suffix("Contains") {
            (Mode::Contains, s)
        } else {
            (Mode::Equals, rest.strip_suffix("Equals").unwrap_or(rest))
        };
        let field = match subject {
            "UserId" | "UserName" => "userId",
            "UserLastName" => "lastName",
            "UserFirstName" => "firstName",
            "PhoneNumber" => "phoneNumber",
            "EmailAddress" => "emailAddress",
            "Extension" => "extension",
            _ => "inTrunkGroup",
        };
        Ok(Criterion::Text { field, mode, sensitive, value: value.clone() })
    }

    fn matches(&self, u: &User) -> bool {
        match self {
            Criterion::Department(want) => {
                let Some(Value::Object(have)) = u.fields.get("department") else {
                    return false;
                };
                want.iter().all(|(k, v)| have.get(k) == Some(v))
            }
            Criterion::Text { field, mode, sensitive, value } => {
                let have = if *field == "inTrunkGroup" {
                    u.in_trunk_group().to_string()
                } else {
                    u.str_field(field).to_string()
                };
                let (have, want) = if *sensitive {
                    (have, value.clone())
                } else {
                    (have.to_lowercase(), value.to_lowercase())
                };
                match mode {
                    Mode::Starts => have.starts_with(&want),
                    Mode::Contains => have.contains(&want),
                    Mode::Equals => have == want,
                }
            }
        }
    }
}

/// Fields accepted in a create or update body (the aliases are normalised first).
const STRING_FIELDS: &[&str] = &[
    "userId",
    "firstName",
    "lastName",
    "cliFirstName",
    "cliLastName",
    "extension",
    "phoneNumber",
    "emailAddress",
    "password",
    "language",
    "timeZone",
    "title",
    "mobilePhoneNumber",
];
const OBJECT_FIELDS: &[&str] = &["department", "trunkEndpoint", "accessDeviceEndpoint"];
const REQUIRED_FIELDS: &[&str] = &["firstName", "lastName", "cliFirstName", "cliLastName"];
const UNIQUE_IN_SYSTEM: &[&str] = &["phoneNumber"];

impl ApioSim {
    pub fn new(cfg: ApioConfig) -> Arc<Self> {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Arc::new(ApioSim {
            cfg,
            inner: Mutex::new(Inner { users: BTreeMap::new(), tokens: HashMap::new(), rng }),
        })
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

    fn issue_token(&self, inner: &mut Inner, kind: TokenKind) -> String {
        let lifetime = match kind {
            TokenKind::Access => self.cfg.access_token_lifetime,
            TokenKind::Refresh => self.cfg.refresh_token_lifetime,
        };
        let now = Instant::now();
        inner.tokens.retain(|_, t| t.expires > now);
        let mut jti = [0u8; 16];
        inner.rng.fill(&mut jti);
        let mut sig = [0u8; 32];
        inner.rng.fill(&mut sig);
        let iat = unix_now();
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let payload = json!({
            "sub": self.cfg.username,
            "iat": iat,
            "exp": iat + lifetime.as_secs(),
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "type": match kind { TokenKind::Access => "access", TokenKind::Refresh => "refresh" },
        });
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        );
        inner.tokens.insert(token.clone(), Token { kind, expires: now + lifetime });
        token
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(token) = bearer(headers) else {
            return Err("Missing Authorization: Bearer token");
        };
        if !self.cfg.m2m_token.is_empty() && token == self.cfg.m2m_token {
            return Ok(());
        }
        let inner = lock(&self.inner);
        match inner.tokens.get(token) {
            None => Err("Invalid token"),
            Some(t) if t.expires <= Instant::now() => Err("Token has expired"),
            Some(t) if t.kind == TokenKind::Refresh => {
                Err("A refresh token can only be used to get an access token")
            }
            Some(_) => Ok(()),
        }
    }

    fn render_user_id(
        &self,
        rng: &mut StdRng,
        tenant: &str,
        group: &str,
        body: &Map<String, Value>,
    ) -> Result<String, ApiErr> {
        let rule = &self.cfg.user_id_rule;
        let mut out = String::new();
        let mut rest = rule.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| ApiErr::bad("USER_ID_RULE is malformed"))?;
            let name = after[..end].trim();
            if let Some(n) = name.strip_prefix("RND_") {
                let n: usize =
                    n.parse().map_err(|_| ApiErr::bad(format!("USER_ID_RULE: bad variable {name}")))?;
                for _ in 0..n {
                    out.push(char::from(b'0' + rng.random_range(0..10u8)));
                }
            } else {
                let v = match name {
                    "group_id" => group.to_string(),
                    "tenant_id" => tenant.to_string(),
                    "domain" => self.cfg.domain.clone(),
                    "phone_number_e164" => match body.get("phoneNumber").and_then(Value::as_str) {
                        Some(p) if !p.is_empty() => p.to_string(),
                        _ => {
                            return Err(ApiErr::bad(
                                "Cannot generate the user id: the rule needs a phone number",
                            ));
                        }
                    },
                    _ => {
                        return Err(ApiErr::bad(format!(
                            "Cannot generate the user id: unsupported variable {name}"
                        )));
                    }
                };
                out.push_str(&v);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn generate_password(&self, rng: &mut StdRng) -> String {
        const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
        const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
        const DIGITS: &[u8] = b"23456789";
        let r = &self.cfg.generated_password_rule;
        let pick = |set: &[u8], rng: &mut StdRng| char::from(set[rng.random_range(0..set.len())]);
        let mut chars = Vec::new();
        for (set, n) in [
            (UPPER, r.min_uppercase.max(self.cfg.local_password_rule.min_uppercase)),
            (LOWER, r.min_lowercase.max(self.cfg.local_password_rule.min_lowercase)),
            (DIGITS, r.min_digits.max(self.cfg.local_password_rule.min_digits)),
            (SPECIALS, r.min_special.max(self.cfg.local_password_rule.min_special)),
        ] {
            for _ in 0..n {
                chars.push(pick(set, rng));
            }
        }
        let all: Vec<u8> = [UPPER, LOWER, DIGITS].concat();
        let len = GENERATED_PASSWORD_LEN.max(r.min_length).max(self.cfg.local_password_rule.min_length);
        while chars.len() < len {
            chars.push(pick(&all, rng));
        }
        chars.shuffle(rng);
        chars.into_iter().collect()
    }

    fn check_password(&self, password: &str) -> Result<(), ApiErr> {
        let rule = if self.cfg.validate_password_local_rule {
            &self.cfg.local_password_rule
        } else {
            // Without the local rule the AS still refuses what it cannot store.
            &PasswordRule {
                min_length: 1,
                max_length: self.cfg.local_password_rule.max_length,
                min_uppercase: 0,
                min_lowercase: 0,
                min_digits: 0,
                min_special: 0,
            }
        };
        rule.check(password).map_err(ApiErr::bad)
    }

    /// Validates one provided field and returns the value to store.
    fn check_field(&self, k: &str, v: &Value) -> Result<Value, ApiErr> {
        if OBJECT_FIELDS.contains(&k) {
            let Value::Object(m) = v else {
                return Err(ApiErr::bad(format!("{k} must be an object")));
            };
            if k == "department" {
                match m.get("departmentName") {
                    Some(Value::String(n)) if !n.is_empty() => {}
                    _ => return Err(ApiErr::bad("department.departmentName is required")),
                }
            }
            return Ok(v.clone());
        }
        let Value::String(s) = v else {
            return Err(ApiErr::bad(format!("{k} must be a string")));
        };
        let len = s.chars().count();
        match k {
            "firstName" | "lastName" | "cliFirstName" | "cliLastName" => {
                if len == 0 || len > NAME_MAX {
                    return Err(ApiErr::bad(format!("{k} must be between 1 and {NAME_MAX} characters")));
                }
                if k.starts_with("cli") && s.chars().any(|c| CLI_FORBIDDEN.contains(&c) || !c.is_ascii()) {
                    return Err(ApiErr::bad(format!(
                        "{k} must not contain %, +, \\, \" or extended ASCII characters"
                    )));
                }
            }
            "extension" => {
                let (lo, hi) = (self.cfg.extension_min_len, self.cfg.extension_max_len);
                if !s.is_empty() && (!s.chars().all(|c| c.is_ascii_digit()) || len < lo || len > hi) {
                    return Err(ApiErr::bad(format!(
                        "Invalid extension {s}: it must be {lo} to {hi} digits"
                    )));
                }
            }
            "phoneNumber" | "mobilePhoneNumber" => {
                let digits = s.strip_prefix('+').unwrap_or(s);
                if !s.is_empty()
                    && (!digits.chars().all(|c| c.is_ascii_digit()) || !(3..=15).contains(&digits.len()))
                {
                    return Err(ApiErr::bad(format!("Invalid phone number {s}")));
                }
            }
            "emailAddress" if !s.is_empty() && (len > EMAIL_MAX || !valid_email(s)) => {
                return Err(ApiErr::bad(format!("Invalid email address {s}")));
            }
            "language" if !self.cfg.languages.iter().any(|l| l == s) => {
                return Err(ApiErr::bad(format!("Unknown language {s}")));
            }
            "title" if len > TITLE_MAX => {
                return Err(ApiErr::bad(format!("title must be at most {TITLE_MAX} characters")));
            }
            _ => {}
        }
        Ok(v.clone())
    }

    /// Renames the documented aliases and rejects fields the API does not know.
    fn normalise(body: &Map<String, Value>, creating: bool) -> Result<Map<String, Value>, ApiErr> {
        let mut out = Map::new();
        for (k, v) in body {
            let key = match k.as_str() {
                "callingLineIdFirstName" => "cliFirstName",
                "callingLineIdLastName" => "cliLastName",
                "templateName" if creating => "templateName",
                k if STRING_FIELDS.contains(&k) || OBJECT_FIELDS.contains(&k) => k,
                _ => return Err(ApiErr::bad(format!("Unknown field: {k}"))),
            };
            if let Some(prev) = out.get(key)
                && prev != v
            {
                return Err(ApiErr::bad(format!(
                    "{k} conflicts with another field naming the same property"
                )));
            }
            out.insert(key.to_string(), v.clone());
        }
        Ok(out)
    }

    fn check_unique(inner: &Inner, user: &User, exclude: Option<&str>) -> Result<(), ApiErr> {
        let id = user.str_field("userId");
        for (other_id, other) in &inner.users {
            if Some(other_id.as_str()) == exclude {
                continue;
            }
            if other_id == id {
                return Err(ApiErr::conflict(format!("User {id} already exists")));
            }
            let ext = user.str_field("extension");
            if !ext.is_empty()
                && other.tenant == user.tenant
                && other.group == user.group
                && other.str_field("extension") == ext
            {
                return Err(ApiErr::conflict(format!(
                    "Extension {ext} is already assigned in group {}",
                    user.group
                )));
            }
            for k in UNIQUE_IN_SYSTEM {
                let v = user.str_field(k);
                if !v.is_empty() && other.str_field(k) == v {
                    return Err(ApiErr::conflict(format!("Phone number {v} is already assigned")));
                }
            }
        }
        Ok(())
    }

    fn cross_checks(fields: &Map<String, Value>) -> Result<(), ApiErr> {
        let set = |k: &str| fields.get(k).is_some_and(|v| !v.is_null());
        if set("trunkEndpoint") && set("accessDeviceEndpoint") {
            return Err(ApiErr::bad("accessDeviceEndpoint and trunkEndpoint are mutually exclusive"));
        }
        Ok(())
    }

    fn create_user(
        &self,
        inner: &mut Inner,
        tenant: &str,
        group: &str,
        body: &Map<String, Value>,
        hidden: bool,
    ) -> Result<User, ApiErr> {
        self.group_exists(tenant, group)?;
        let body = Self::normalise(body, true)?;
        let mut fields = Map::new();
        for (k, v) in &body {
            if v.is_null() || k == "templateName" || k == "password" {
                continue;
            }
            fields.insert(k.clone(), self.check_field(k, v)?);
        }
        if let Some(t) = body.get("templateName") {
            let ok = t.as_str().is_some_and(|t| self.cfg.templates.iter().any(|c| c == t));
            if !ok {
                return Err(ApiErr::bad(format!("Unknown user template {t}")));
            }
        }
        for (cli, name) in [("cliFirstName", "firstName"), ("cliLastName", "lastName")] {
            if !fields.contains_key(cli)
                && let Some(v) = fields.get(name).cloned()
            {
                fields.insert(cli.into(), self.check_field(cli, &v)?);
            }
        }
        for k in REQUIRED_FIELDS {
            if !fields.contains_key(*k) {
                return Err(ApiErr::bad(format!("Missing required field: {k}")));
            }
        }
        fields.entry("language").or_insert_with(|| json!(self.cfg.default_language));
        Self::cross_checks(&fields)?;
        let password = match body.get("password") {
            Some(Value::String(p)) => {
                self.check_password(p)?;
                p.clone()
            }
            None | Some(Value::Null) => self.generate_password(&mut inner.rng),
            Some(_) => return Err(ApiErr::bad("password must be a string")),
        };
        let mut user =
            User { tenant: tenant.to_string(), group: group.to_string(), hidden, password, fields };
        match user.fields.get("userId").and_then(Value::as_str) {
            Some(id) => {
                let id = if id.contains('@') { id.to_string() } else { format!("{id}@{}", self.cfg.domain) };
                let local = id.split('@').next().unwrap_or("");
                if local.is_empty()
                    || id.chars().count() > USER_ID_MAX
                    || id.chars().any(char::is_whitespace)
                    || id.contains('/')
                {
                    return Err(ApiErr::bad(format!("Invalid userId {id}")));
                }
                user.fields.insert("userId".into(), json!(id));
                Self::check_unique(inner, &user, None)?;
            }
            None => {
                // RND collisions are retried; a rule without randomness collides for good.
                let mut attempt = 0;
                loop {
                    let id = self.render_user_id(&mut inner.rng, tenant, group, &body)?;
                    user.fields.insert("userId".into(), json!(id));
                    match Self::check_unique(inner, &user, None) {
                        Ok(()) => break,
                        Err(e) if attempt >= 50 || !self.cfg.user_id_rule.contains("RND_") => {
                            return Err(e);
                        }
                        Err(_) => attempt += 1,
                    }
                }
            }
        }
        let id = user.str_field("userId").to_string();
        inner.users.insert(id, user.clone());
        Ok(user)
    }

    fn update_user(
        &self,
        inner: &mut Inner,
        tenant: &str,
        group: &str,
        user_id: &str,
        body: &Map<String, Value>,
    ) -> Result<User, ApiErr> {
        self.group_exists(tenant, group)?;
        let mut user = match inner.users.get(user_id) {
            Some(u) if u.tenant == tenant && u.group == group => u.clone(),
            _ => return Err(ApiErr::not_found(format!("User {user_id} not found"))),
        };
        let body = Self::normalise(body, false)?;
        for (k, v) in &body {
            match (k.as_str(), v) {
                ("userId", v) => {
                    if v.as_str() != Some(user_id) {
                        return Err(ApiErr::bad("userId cannot be changed"));
                    }
                }
                ("password", Value::String(p)) => {
                    self.check_password(p)?;
                    user.password = p.clone();
                }
                ("password", _) => return Err(ApiErr::bad("password must be a string")),
                (k, Value::Null) => {
                    if REQUIRED_FIELDS.contains(&k) || k == "language" {
                        return Err(ApiErr::bad(format!("{k} cannot be removed")));
                    }
                    user.fields.remove(k);
                }
                (k, v) => {
                    let v = self.check_field(k, v)?;
                    user.fields.insert(k.to_string(), v);
                }
            }
        }
        Self::cross_checks(&user.fields)?;
        Self::check_unique(inner, &user, Some(user_id))?;
        inner.users.insert(user_id.to_string(), user.clone());
        Ok(user)
    }

    fn list_users(
        &self,
        tenant: &str,
        group: &str,
        raw_query: Option<&str>,
        body: &[u8],
    ) -> Result<Value, ApiErr> {
        self.group_exists(tenant, group)?;
        let mut given: Vec<(String, Value)> = Vec::new();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let m = json_object(body).map_err(ApiErr::bad)?;
            given.extend(m);
        }
        given.extend(
            super::form_pairs(raw_query.unwrap_or("").as_bytes())
                .into_iter()
                .map(|(k, v)| (k, Value::String(v))),
        );
        let mut seen = BTreeSet::new();
        let mut criteria = Vec::new();
        let mut limit: Option<usize> = None;
        let mut include_hidden = false;
        for (k, v) in &given {
            if !seen.insert(k.as_str()) {
                return Err(ApiErr::bad(format!("{k} given more than once")));
            }
            match k.as_str() {
                "responseSizeLimit" => {
                    let n = match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    match n {
                        Some(n) if n >= 1 => limit = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                        _ => {
                            return Err(ApiErr::bad("responseSizeLimit must be an integer greater than 0"));
                        }
                    }
                }
                "includeHiddenUsers" => {
                    include_hidden = match v {
                        Value::Bool(b) => *b,
                        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                        _ => return Err(ApiErr::bad("includeHiddenUsers must be a boolean")),
                    }
                }
                _ => criteria.push(Criterion::parse(k, v)?),
            }
        }
        let inner = lock(&self.inner);
        let users: Vec<Value> = inner
            .users
            .values()
            .filter(|u| u.tenant == tenant && u.group == group)
            .filter(|u| include_hidden || !u.hidden)
            .filter(|u| criteria.iter().all(|c| c.matches(u)))
            .take(limit.unwrap_or(usize::MAX))
            .map(User::list_view)
            .collect();
        Ok(json!({ "users": users }))
    }
}

// ---- handlers -------------------------------------------------------------------------

type Sim = State<Arc<ApioSim>>;

async fn login(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let res = (|| {
        if !is_json(&headers) {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "Expected application/json"));
        }
        let m = json_object(&body).map_err(|_| (StatusCode::BAD_REQUEST, "Invalid JSON body"))?;
        for (k, v) in &m {
            let max = match k.as_str() {
                "username" | "password" => LOGIN_FIELD_MAX,
                "proxy" => PROXY_MAX,
                _ => {
                    return Err((StatusCode::BAD_REQUEST, "Additional properties are not allowed"));
                }
            };
            match v.as_str() {
                Some(s) if s.chars().count() <= max => {}
                _ => return Err((StatusCode::BAD_REQUEST, "Invalid login field")),
            }
        }
        let user = m.get("username").and_then(Value::as_str);
        let pass = m.get("password").and_then(Value::as_str);
        let (Some(user), Some(pass)) = (user, pass) else {
            return Err((StatusCode::BAD_REQUEST, "username and password are required"));
        };
        if user != sim.cfg.username || pass != sim.cfg.password {
            return Err((StatusCode::UNAUTHORIZED, "Invalid username or password"));
        }
        Ok(())
    })();
    if let Err((status, msg)) = res {
        return named("login", (status, axum::Json(json!({"error": msg}))));
    }
    let mut inner = lock(&sim.inner);
    let access = sim.issue_token(&mut inner, TokenKind::Access);
    let refresh = sim.issue_token(&mut inner, TokenKind::Refresh);
    let mut out = json!({"access_token": access, "refresh_token": refresh});
    if !sim.cfg.m2m_token.is_empty() {
        out["token"] = json!(sim.cfg.m2m_token);
    }
    named("login", axum::Json(out))
}

async fn refresh(State(sim): Sim, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return named("refresh", auth_error("Missing Authorization: Bearer token"));
    };
    let mut inner = lock(&sim.inner);
    let now = Instant::now();
    let remaining = match inner.tokens.get(token) {
        Some(t) if t.kind == TokenKind::Refresh && t.expires > now => t.expires - now,
        Some(t) if t.kind == TokenKind::Refresh => {
            return named("refresh", auth_error("Refresh token has expired"));
        }
        _ => return named("refresh", auth_error("Invalid refresh token")),
    };
    let access = sim.issue_token(&mut inner, TokenKind::Access);
    let mut out = json!({ "access_token": access });
    if remaining < sim.cfg.refresh_renewal_window {
        out["refresh_token"] = json!(sim.issue_token(&mut inner, TokenKind::Refresh));
    }
    named("refresh", axum::Json(out))
}

async fn gateways(State(sim): Sim, headers: HeaderMap) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("gateways", auth_error(msg));
    }
    let list: Vec<Value> =
        sim.cfg.gateways.iter().map(|(name, prefix)| json!({"name": name, "prefix": prefix})).collect();
    named("gateways", axum::Json(json!({ "gateways": list })))
}

async fn languages(State(sim): Sim, headers: HeaderMap) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("languages", auth_error(msg));
    }
    let langs: Vec<Value> = sim
        .cfg
        .languages
        .iter()
        .map(|l| json!({"locale": if l == "English" { "en_US" } else { "" }, "name": l}))
        .collect();
    named(
        "languages",
        axum::Json(json!({"defaultLangue": sim.cfg.default_language, "availableLanguages": langs})),
    )
}

async fn password_rules(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group)): Path<(String, String)>,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("passwordRules", auth_error(msg));
    }
    if let Err(e) = sim.group_exists(&tenant, &group) {
        return named("passwordRules", e);
    }
    let r = &sim.cfg.local_password_rule;
    named(
        "passwordRules",
        axum::Json(json!({
            "minLength": r.min_length,
            "minDigits": r.min_digits,
            "minUpperCaseLetters": r.min_uppercase,
            "minLowerCaseLetters": r.min_lowercase,
            "minNonAlphanumericCharacters": r.min_special,
        })),
    )
}

async fn list_users(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("listUsers", auth_error(msg));
    }
    match sim.list_users(&tenant, &group, query.as_deref(), &body) {
        Ok(v) => named("listUsers", axum::Json(v)),
        Err(e) => named("listUsers", e),
    }
}

async fn create_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("createUser", auth_error(msg));
    }
    let res = (|| {
        if !is_json(&headers) {
            return Err(ApiErr(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a JSON body (Content-Type: application/json)".into(),
            ));
        }
        let m = json_object(&body).map_err(ApiErr::bad)?;
        let mut inner = lock(&sim.inner);
        sim.create_user(&mut inner, &tenant, &group, &m, false)
    })();
    match res {
        Ok(u) => named("createUser", (StatusCode::CREATED, axum::Json(u.api_view()))),
        Err(e) => named("createUser", e),
    }
}

async fn get_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group, user_id)): Path<(String, String, String)>,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("getUser", auth_error(msg));
    }
    if let Err(e) = sim.group_exists(&tenant, &group) {
        return named("getUser", e);
    }
    let inner = lock(&sim.inner);
    match inner.users.get(&user_id) {
        Some(u) if u.tenant == tenant && u.group == group => named("getUser", axum::Json(u.api_view())),
        _ => named("getUser", ApiErr::not_found(format!("User {user_id} not found"))),
    }
}

async fn update_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group, user_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("updateUser", auth_error(msg));
    }
    let res = (|| {
        if !is_json(&headers) {
            return Err(ApiErr(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a JSON body (Content-Type: application/json)".into(),
            ));
        }
        let m = json_object(&body).map_err(ApiErr::bad)?;
        let mut inner = lock(&sim.inner);
        sim.update_user(&mut inner, &tenant, &group, &user_id, &m)
    })();
    match res {
        Ok(u) => named("updateUser", axum::Json(u.api_view())),
        Err(e) => named("updateUser", e),
    }
}

async fn delete_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group, user_id)): Path<(String, String, String)>,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("deleteUser", auth_error(msg));
    }
    if let Err(e) = sim.group_exists(&tenant, &group) {
        return named("deleteUser", e);
    }
    let mut inner = lock(&sim.inner);
    match inner.users.get(&user_id) {
        Some(u) if u.tenant == tenant && u.group == group => {
            inner.users.remove(&user_id);
            named("deleteUser", axum::Json(json!({})))
        }
        _ => named("deleteUser", ApiErr::not_found(format!("User {user_id} not found"))),
    }
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
            r = r
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
        r.with_state(self)
    }

    fn dump(&self) -> Value {
        let inner = lock(&self.inner);
        Value::Array(inner.users.values().map(User::dump_view).collect())
    }

    fn tamper(&self, id: &str, patch: &Map<String, Value>) -> Result<(), SimError> {
        let mut inner = lock(&self.inner);
        let user = inner.users.get_mut(id).ok_or_else(|| SimError::NotFound(id.to_string()))?;
        for (k, v) in patch {
            match (k.as_str(), v) {
                ("userId" | "tenantId" | "groupId", _) => {
                    return Err(SimError::Invalid(format!("{k} cannot be tampered with")));
                }
                ("password", Value::String(p)) => user.password = p.clone(),
                ("hidden", Value::Bool(b)) => user.hidden = *b,
                ("password" | "hidden", _) => {
                    return Err(SimError::Invalid(format!("bad value for {k}")));
                }
                (k, Value::Null) => {
                    user.fields.remove(k);
                }
                (k, v) => {
                    user.fields.insert(k.to_string(), v.clone());
                }
            }
        }
        Ok(())
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
