//! Telphin (Ringme platform "APILink"): the internal-number-level users of one client.
//!
//! The API: JSON under `{url}/api/ver1.0`, OAuth2 client credentials of a trusted
//! application (`POST {url}/oauth/token`, form-encoded, answers `access_token` and
//! `expires_in`; no refresh token). The token is cached until shortly before it expires
//! and fetched again on a 401, once. Every answer carries `X-RateLimit-Limit/Remaining/
//! Reset` of an hourly per-client quota; past it the API answers 429 without
//! `Retry-After`, so the shared HTTP layer takes the wait from `X-RateLimit-Reset` (a wait
//! past its `max_retry_after` fails at once as transient, carrying the wait).
//!
//! An account is an extension-level user (`/user/extension/`) bound to an internal number
//! (`/extension/`, `name` `clientprefix*NNN`). Endpoints used, under
//! `/api/ver1.0/client/{clientId}` (`@me`: the application's own client):
//! - `GET extension/?name=NNN`, `POST extension/` (`type: phone`, `status: active`): the
//!   number is found, or created when missing, before its user; numbers are never
//!   deleted (they carry phone settings, and a recreated user reuses its number). A
//!   number the last listing did not have is created straight away (and looked up only
//!   if that answers `already_exists`): a create of a new number is then 2 requests,
//!   not 3.
//! - `GET user/extension/` (paged with `page`/`per_page` until a short page; filter
//!   `extension_id`), `GET extension/` to turn `extension_id` into the number.
//! - `POST user/extension/` with `extension_id`, `name` (display name), `login`,
//!   `password`, `email`, `status` (`active`/`blocked` from `enabled`), `access`,
//!   `timezone`, and `extra_params` = `switchboard:<namespace>/<name>`, the ownership
//!   marker `list` reads back into [`Account::marker`].
//! - `PUT user/extension/{id}`: partial (only what changed); it cannot change `login`.
//! - `DELETE user/extension/{id}`.
//!
//! Errors are `{"message", "status"}`: 400 `already_exists` is a conflict, other 400s a
//! validation error (field from the message), 403 an auth error, 404 a gone record (or,
//! with `client_not_found`, a wrong `clientId`).
//!
//! | operation | supported | why |
//! |---|---|---|
//! | list | yes | all pages of users, numbers resolved through the extension list |
//! | find by extension | yes | extension by `name`, then its users by `extension_id` |
//! | create | yes | number found or created, then the user (a password is required) |
//! | update | yes | name, e-mail, status, access, time zone, password, number (`extension_id`) |
//! | change login | no | the PUT has no `login` field: delete and recreate by hand |
//! | delete | yes | the user only; the number stays |
//! | ownership marker | yes | `extra_params` (free field); never overwrites foreign content |

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::{
    Backend, Credentials, Error, Listing, Secret, check_settings_block,
    common::{Answer, bearer_call, random_password, unsupported},
    extension_field,
    http::{Http, Retry, Settings},
};
use crate::{
    api::{BackendKind, EmployeeSpec, Membership, employee::TelphinAccess, phone_system},
    plan::{Account, Attributes, Capabilities, Change, Desired, Field, Owner},
};

/// `Attributes.settings` key: `full` or `read_only`.
pub const ACCESS: &str = "access";
/// `Attributes.settings` key: the user's time zone.
pub const TIMEZONE: &str = "timezone";
/// What `extra_params` starts with on accounts switchboard created.
pub const MARKER_PREFIX: &str = "switchboard:";

const SYSTEM: BackendKind = BackendKind::Telphin;
const API: &str = "/api/ver1.0";
const TOKEN_PATH: &str = "/oauth/token";
/// Users per page. Kept well under any plausible server maximum: a server that capped
/// `per_page` below it would make the first page look like the last.
pub const DEFAULT_PER_PAGE: usize = 100;
/// A listing longer than this many pages is reported incomplete rather than read on.
const MAX_PAGES: usize = 10_000;
/// Renew a token this long before `expires_in` runs out, or at half its life if shorter.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// Telphin numbers are 2, 3 or 4 digits (fixed per client when it is created).
const EXTENSION_DIGITS: std::ops::RangeInclusive<usize> = 2..=4;
const LOGIN_LEN: std::ops::RangeInclusive<usize> = 3..=64;
const NAME_MAX: usize = 255;
const PASSWORD_LEN: usize = 16;
const PASSWORD_SPECIALS: &[u8] = b"!#$*-=?@_";

/// One Telphin client's extension-level users.
pub struct Telphin {
    http: Http,
    /// `/api/ver1.0/client/{clientId}`.
    client_path: String,
    client_id: Secret,
    client_secret: Secret,
    token: Mutex<Option<Token>>,
    caps: Capabilities,
    per_page: usize,
    /// The numbers the last listing found; `None` before the first. Only decides whether
    /// a create looks its number up first or creates it first: both handle the other case.
    numbers: std::sync::Mutex<Option<HashSet<String>>>,
}

struct Token {
    value: Secret,
    /// `None`: the answer gave no `expires_in`; used until refused.
    renew_at: Option<Instant>,
    stale: bool,
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Collection,
    Item(&'a str),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    extension_id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    access: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    extra_params: Option<String>,
}

#[derive(Deserialize)]
struct Extension {
    id: u64,
    name: String,
}

/// A record of a paged list: pages are told apart by their records' ids.
trait Record: DeserializeOwned {
    fn id(&self) -> u64;
}

impl Record for User {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Record for Extension {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Telphin {
    pub fn new(
        block: &phone_system::Telphin,
        credentials: &Credentials,
        settings: Settings,
    ) -> Result<Self, Error> {
        let client_id = credentials.require("clientId")?.clone();
        let client_secret = credentials.require("clientSecret")?.clone();
        let http = Http::new(SYSTEM, &block.url, settings, credentials.values())?;
        let client = &block.client_id;
        if !(client == "@me" || (!client.is_empty() && client.bytes().all(|b| b.is_ascii_digit()))) {
            return Err(Error::Config(format!("telphin: clientId {client:?} is neither @me nor a number")));
        }
        let readable: BTreeSet<Field> = [
            Field::Extension,
            Field::DisplayName,
            Field::Email,
            Field::Login,
            Field::Enabled,
            Field::Setting(ACCESS.into()),
            Field::Setting(TIMEZONE.into()),
        ]
        .into();
        let mut writable = readable.clone();
        writable.remove(&Field::Login);
        writable.insert(Field::Password);
        Ok(Telphin {
            http,
            client_path: format!("{API}/client/{client}"),
            client_id,
            client_secret,
            token: Mutex::new(None),
            caps: Capabilities { create: true, update: true, delete: true, readable, writable },
            per_page: DEFAULT_PER_PAGE,
            numbers: std::sync::Mutex::new(None),
        })
    }

    /// Sets the page size of listings (tests use a small one).
    pub fn with_per_page(mut self, per_page: usize) -> Self {
        self.per_page = per_page.max(1);
        self
    }

    fn url(&self, path: &str) -> String {
        self.http.url(&format!("{}/{path}", self.client_path))
    }

    // ---- authentication ----------------------------------------------------------

    async fn bearer(&self) -> Result<Secret, Error> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && !t.stale
            && t.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    async fn refused(&self, used: &Secret) {
        if let Some(t) = self.token.lock().await.as_mut()
            && t.value == *used
        {
            t.stale = true;
        }
    }

    async fn fetch_token(&self) -> Result<Token, Error> {
        let url = self.http.url(TOKEN_PATH);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.expose()),
            ("client_secret", self.client_secret.expose()),
        ];
        // Asking for a token twice is harmless.
        let reply = self.http.send(Retry::Idempotent, &[], |c| c.post(&url).form(&form)).await?;
        let answer = Answer { redactor: self.http.redactor().clone(), reply };
        let status = answer.reply.status;
        if status.is_client_error() {
            let v: Value = serde_json::from_slice(&answer.reply.body).unwrap_or(Value::Null);
            let text = ["error_description", "error", "message"]
                .iter()
                .filter_map(|k| v.get(k).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(": ");
            let text = answer.text(Some(text.as_str()).filter(|t| !t.is_empty()));
            return Err(
                answer.scrub(self.http.auth(&format!("token refused (HTTP {}): {text}", status.as_u16())))
            );
        }
        if !status.is_success() {
            return Err(answer.unexpected(&self.http, error_of(&answer.reply.body).0.as_deref()));
        }
        let t: TokenAnswer = answer.json(&self.http)?;
        if t.access_token.is_empty() {
            return Err(self.http.protocol("the token answer carries an empty access_token"));
        }
        let renew_at = t.expires_in.map(|secs| {
            let life = Duration::from_secs(secs);
            Instant::now() + (life - RENEW_MARGIN.min(life / 2))
        });
        Ok(Token { value: Secret::new(t.access_token), renew_at, stale: false })
    }

    /// Sends an authenticated request; on a 401 fetches a new token once and sends again.
    async fn call(
        &self,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Answer, Error> {
        bearer_call(
            &self.http,
            retry,
            secrets,
            build,
            || self.bearer(),
            |used| async move {
                self.refused(&used).await;
                true
            },
            |answer| error_of(&answer.reply.body).0.unwrap_or_default(),
        )
        .await
    }

    // ---- reading -----------------------------------------------------------------

    /// Every record of a paged list, and whether the listing is known to be complete.
    /// Read straight into `T`, page by page: 10,000 users as `Value`s first would cost
    /// several times what the records themselves do.
    async fn pages<T: Record>(&self, path: &str, filters: &[(&str, &str)]) -> Result<(Vec<T>, bool), Error> {
        let url = self.url(path);
        let per_page = self.per_page.to_string();
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut complete = true;
        for page in 1..=MAX_PAGES {
            let page_no = page.to_string();
            let mut params: Vec<(&str, &str)> = filters.to_vec();
            params.extend([("page", page_no.as_str()), ("per_page", per_page.as_str())]);
            let answer = self.call(Retry::Idempotent, &[], |c| c.get(&url).query(&params)).await?;
            if !answer.reply.status.is_success() {
                return Err(self.fail(&answer, Target::Collection));
            }
            let batch: Vec<T> = answer.json(&self.http)?;
            let n = batch.len();
            if n > self.per_page {
                return Err(self.http.protocol(&format!(
                    "page {page} of {path} holds {n} records, more than the {} asked for",
                    self.per_page
                )));
            }
            let mut new = 0;
            for item in batch {
                if seen.insert(item.id()) {
                    new += 1;
                    items.push(item);
                }
            }
            if n > 0 && new == 0 {
                return Err(self.http.protocol(&format!("page {page} of {path} repeats page {}", page - 1)));
            }
            if new < n {
                // Records shifted between pages (something was added or removed while
                // reading): one may have been skipped as well.
                complete = false;
            }
            if n < self.per_page {
                return Ok((items, complete));
            }
        }
        Ok((items, false))
    }

    async fn extension_by_id(&self, id: u64) -> Result<Option<String>, Error> {
        let url = self.url(&format!("extension/{id}"));
        let answer = self.call(Retry::Idempotent, &[], |c| c.get(&url)).await?;
        if answer.reply.status == StatusCode::NOT_FOUND {
            return match self.fail(&answer, Target::Item(&id.to_string())) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            };
        }
        if !answer.reply.status.is_success() {
            return Err(self.fail(&answer, Target::Item(&id.to_string())));
        }
        let e: Extension = answer.json(&self.http)?;
        Ok(Some(number(&e.name).to_owned()))
    }

    /// The id of the client's extension numbered `extension`.
    async fn find_extension(&self, extension: &str) -> Result<Option<u64>, Error> {
        let (found, _) = self.pages::<Extension>("extension/", &[("name", extension)]).await?;
        for e in found {
            if number(&e.name) == extension {
                return Ok(Some(e.id));
            }
        }
        Ok(None)
    }

    /// The extension numbered `extension`, created (a phone, active) when missing.
    /// Returns its id and whether this call created it.
    async fn ensure_extension(&self, extension: &str, label: Option<&str>) -> Result<(u64, bool), Error> {
        let listed_absent = self
            .numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|numbers| !numbers.contains(extension));
        if !listed_absent && let Some(id) = self.find_extension(extension).await? {
            return Ok((id, false));
        }
        let mut body = json!({"name": extension, "type": "phone", "status": "active"});
        if let Some(label) = label {
            body["label"] = json!(label);
        }
        let url = self.url("extension/");
        let answer = self.call(Retry::Unsafe, &[], |c| c.post(&url).json(&body)).await?;
        if answer.reply.status.is_success() {
            let e: Extension = answer.json(&self.http)?;
            return Ok((e.id, true));
        }
        match self.fail(&answer, Target::Collection) {
            // Made meanwhile (by an earlier try whose answer was lost, say): take it.
            Error::Conflict { .. } => match self.find_extension(extension).await? {
                Some(id) => Ok((id, false)),
                None => Err(self.http.conflict(&format!("extension {extension} exists but cannot be found"))),
            },
            other => Err(other),
        }
    }

    async fn delete_extension(&self, id: u64) -> Result<(), Error> {
        let url = self.url(&format!("extension/{id}"));
        let answer = self.call(Retry::Idempotent, &[], |c| c.delete(&url)).await?;
        if answer.reply.status.is_success() || answer.reply.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail(&answer, Target::Item(&id.to_string())))
        }
    }

    async fn user(&self, id: &str) -> Result<Option<User>, Error> {
        let url = self.url(&format!("user/extension/{id}"));
        let answer = self.call(Retry::Idempotent, &[], |c| c.get(&url)).await?;
        if answer.reply.status == StatusCode::NOT_FOUND {
            return match self.fail(&answer, Target::Item(id)) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            };
        }
        if !answer.reply.status.is_success() {
            return Err(self.fail(&answer, Target::Item(id)));
        }
        answer.json(&self.http).map(Some)
    }

    // ---- errors ------------------------------------------------------------------

    fn fail(&self, answer: &Answer, target: Target<'_>) -> Error {
        let status = answer.reply.status;
        let (message, code) = error_of(&answer.reply.body);
        let text = answer.text(message.as_deref());
        let err = match (status, code.as_deref(), target) {
            (StatusCode::BAD_REQUEST, Some("already_exists"), _) => self.http.conflict(&text),
            (StatusCode::BAD_REQUEST, Some("extension_not_found"), _) => {
                self.http.validation(Some("extension_id"), &text)
            }
            (StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY, _, _) => {
                self.http.validation(field_of(&text), &text)
            }
            (StatusCode::FORBIDDEN, code, _) => {
                self.http.auth(&format!("HTTP 403 {}: {text}", code.unwrap_or("access_denied")))
            }
            (StatusCode::NOT_FOUND, Some("client_not_found"), _)
            | (StatusCode::NOT_FOUND, _, Target::Collection) => Error::Config(format!(
                "telphin: {} answered 404 ({text}): check url and clientId",
                self.client_path
            )),
            (StatusCode::NOT_FOUND, _, Target::Item(id)) => self.http.not_found(id),
            _ => return answer.unexpected(&self.http, Some(&text)),
        };
        answer.scrub(err)
    }
}

/// `{"message", "status"}`.
fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    (text("message"), text("status"))
}

/// The Telphin field a validation message names (messages start with it).
fn field_of(message: &str) -> Option<&'static str> {
    const FIELDS: &[&str] = &[
        "extension_id",
        "extra_params",
        "email_for_notify",
        "email_notify",
        "name",
        "login",
        "password",
        "email",
        "status",
        "access",
        "timezone",
        "comment",
    ];
    let first = message.split_whitespace().next()?.to_lowercase();
    FIELDS.iter().find(|f| **f == first).copied()
}

/// `0001*101` -> `101`.
fn number(name: &str) -> &str {
    name.rsplit('*').next().unwrap_or(name)
}

fn marker(owner: &Owner) -> String {
    format!("{MARKER_PREFIX}{}/{}", owner.namespace, owner.name)
}

/// The Employee named by an `extra_params` marker, if it is one.
fn parse_marker(extra: &str) -> Option<Owner> {
    let (namespace, name) = extra.trim().strip_prefix(MARKER_PREFIX)?.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && !s.contains(['/', ' ']);
    (valid(namespace) && valid(name)).then(|| Owner::new(namespace, name))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn account(u: User, extension: String) -> Account {
    let mut attributes = Attributes {
        display_name: non_empty(u.name),
        email: non_empty(u.email),
        login: non_empty(u.login),
        enabled: match u.status.as_deref() {
            Some("active") => Some(true),
            Some("blocked") => Some(false),
            _ => None,
        },
        ..Attributes::default()
    };
    for (key, value) in [(ACCESS, u.access), (TIMEZONE, u.timezone)] {
        if let Some(v) = non_empty(value) {
            attributes.settings.insert(key.to_owned(), v);
        }
    }
    let marker = u.extra_params.as_deref().and_then(parse_marker);
    Account { id: u.id.to_string(), extension, attributes, marker }
}

fn status(enabled: bool) -> &'static str {
    if enabled { "active" } else { "blocked" }
}

impl Backend for Telphin {
    fn quota(&self) -> Option<super::Quota> {
        self.http.quota()
    }

    fn kind(&self) -> BackendKind {
        SYSTEM
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn desired(&self, employee: &EmployeeSpec, membership: &Membership) -> Result<Attributes, Error> {
        check_settings_block(SYSTEM, membership)?;
        let extension = employee.extension_on(membership);
        if !EXTENSION_DIGITS.contains(&extension.len()) || !extension.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::unfit(SYSTEM, extension_field(membership), "must be 2 to 4 digits"));
        }
        let login = employee.login();
        let login_ok = LOGIN_LEN.contains(&login.len())
            && login.chars().all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
        if !login_ok {
            let (field, rule) = match employee.login {
                Some(_) => ("spec.login", "must be 3 to 64 characters of A-Z a-z 0-9 . _ @ + -"),
                None => (
                    "spec.email",
                    "the login (the part before @, as spec.login is unset) must be 3 to 64 characters of A-Z a-z 0-9 . _ @ + -",
                ),
            };
            return Err(Error::unfit(SYSTEM, field, rule));
        }
        let name = employee.full_name().trim().to_owned();
        if name.is_empty() || name.chars().count() > NAME_MAX {
            let field = if employee.display_name.is_some() { "spec.displayName" } else { "spec.givenName" };
            return Err(Error::unfit(SYSTEM, field, "the name must be 1 to 255 characters"));
        }
        let mut attributes = Attributes {
            display_name: Some(name),
            email: Some(employee.email.clone()),
            login: Some(login.to_owned()),
            enabled: Some(employee.enabled),
            ..Attributes::default()
        };
        if let Some(s) = &membership.telphin {
            if let Some(access) = s.access {
                let v = match access {
                    TelphinAccess::Full => "full",
                    TelphinAccess::ReadOnly => "read_only",
                };
                attributes.settings.insert(ACCESS.into(), v.into());
            }
            if let Some(tz) = &s.time_zone {
                attributes.settings.insert(TIMEZONE.into(), tz.clone());
            }
        }
        Ok(attributes)
    }

    fn generate_password(&self) -> Secret {
        random_password(PASSWORD_LEN, PASSWORD_SPECIALS)
    }

    async fn list(&self) -> Result<Listing, Error> {
        // Both lists at once. A user whose number is not in the numbers read is looked up
        // alone below: the number was made after its list was read, or it is gone, and
        // with it the user (Telphin deletes no number that still has users).
        let ((users, complete), (extensions, _)) = tokio::try_join!(
            self.pages::<User>("user/extension/", &[]),
            self.pages::<Extension>("extension/", &[])
        )?;
        let mut numbers: HashMap<u64, String> = HashMap::new();
        for e in extensions {
            numbers.insert(e.id, number(&e.name).to_owned());
        }
        *self.numbers.lock().unwrap_or_else(|e| e.into_inner()) = Some(numbers.values().cloned().collect());
        let mut accounts = Vec::with_capacity(users.len());
        for u in users {
            let extension = match numbers.get(&u.extension_id) {
                Some(n) => n.clone(),
                // Made after the extension list was read: ask for it alone.
                None => match self.extension_by_id(u.extension_id).await? {
                    Some(n) => n,
                    // Its number is gone, and so (Telphin keeps no user without one) is it.
                    None => continue,
                },
            };
            accounts.push(account(u, extension));
        }
        Ok(Listing { accounts, complete, ..Listing::default() })
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        let Some(ext_id) = self.find_extension(extension).await? else {
            return Ok(None);
        };
        let id = ext_id.to_string();
        let (mut users, _) = self.pages::<User>("user/extension/", &[("extension_id", &id)]).await?;
        users.retain(|u| u.extension_id == ext_id);
        users.sort_by_key(|u| u.id);
        Ok(users.into_iter().next().map(|u| account(u, extension.to_owned())))
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        let a = &desired.attributes;
        let password = password.ok_or_else(|| {
            self.http.validation(Some("password"), "Telphin requires a password for a new user")
        })?;
        let (Some(name), Some(login), Some(email)) = (&a.display_name, &a.login, &a.email) else {
            return Err(Error::Config("telphin: a user needs a name, a login and an e-mail".into()));
        };
        let (extension_id, made) = self.ensure_extension(&desired.extension, Some(name)).await?;
        let mut body = json!({
            "extension_id": extension_id,
            "name": name,
            "login": login,
            "password": password.expose(),
            "email": email,
            "status": status(a.enabled.unwrap_or(true)),
            "extra_params": marker(&desired.owner),
        });
        for key in [ACCESS, TIMEZONE] {
            if let Some(v) = a.settings.get(key) {
                body[key] = json!(v);
            }
        }
        let url = self.url("user/extension/");
        let answer = self.call(Retry::Unsafe, &[password], |c| c.post(&url).json(&body)).await?;
        if !answer.reply.status.is_success() {
            let err = self.fail(&answer, Target::Collection);
            if made {
                // The user was refused for good: take back the number made for it. Best
                // effort: a number left behind is reused by the next create.
                if let Err(e) = self.delete_extension(extension_id).await {
                    tracing::warn!(system = %SYSTEM, extension = %desired.extension, error = %e, "could not remove the number made for a refused user");
                }
            }
            return Err(err);
        }
        let user: User = answer.json(&self.http)?;
        if user.extension_id != extension_id {
            return Err(self.http.protocol("the created user is on another extension than asked"));
        }
        Ok(account(user, desired.extension.clone()))
    }

    async fn update(
        &self,
        account: &Account,
        desired: &Desired,
        changes: &[Change],
        password: Option<&Secret>,
    ) -> Result<(), Error> {
        let mut body = Map::new();
        for change in changes {
            let to = || {
                change
                    .to
                    .clone()
                    .ok_or_else(|| Error::Config(format!("telphin: {} cannot be cleared", change.field)))
            };
            match &change.field {
                Field::DisplayName => {
                    body.insert("name".into(), json!(to()?));
                }
                Field::Email => {
                    body.insert("email".into(), json!(to()?));
                }
                Field::Enabled => {
                    body.insert("status".into(), json!(status(to()? == "true")));
                }
                Field::Setting(key) if key == ACCESS || key == TIMEZONE => {
                    body.insert(key.clone(), json!(to()?));
                }
                Field::Password => {
                    let p = password.ok_or_else(|| {
                        Error::Config("telphin: a password change without a password".into())
                    })?;
                    body.insert("password".into(), json!(p.expose()));
                }
                Field::Extension => {
                    let label = desired.attributes.display_name.as_deref();
                    let (id, _) = self.ensure_extension(&desired.extension, label).await?;
                    body.insert("extension_id".into(), json!(id));
                }
                other => return Err(Error::Unsupported { system: SYSTEM, operation: unsupported(other) }),
            }
        }
        if account.marker.as_ref() != Some(&desired.owner) {
            // Mark it ours, unless the free field holds something that is not a marker.
            let current = self.user(&account.id).await?.ok_or_else(|| self.http.not_found(&account.id))?;
            let extra = current.extra_params.unwrap_or_default();
            if extra.trim().is_empty() || parse_marker(&extra).is_some() {
                body.insert("extra_params".into(), json!(marker(&desired.owner)));
            }
        }
        if body.is_empty() {
            return Ok(());
        }
        let body = Value::Object(body);
        let url = self.url(&format!("user/extension/{}", account.id));
        let secrets: Vec<&Secret> = password.into_iter().collect();
        let answer = self.call(Retry::Idempotent, &secrets, |c| c.put(&url).json(&body)).await?;
        if !answer.reply.status.is_success() {
            return Err(self.fail(&answer, Target::Item(&account.id)));
        }
        // An answer that is not the user's JSON (a proxy's page) proves nothing was done.
        answer.json::<Map<String, Value>>(&self.http).map(|_| ())
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        let url = self.url(&format!("user/extension/{}", account.id));
        let answer = self.call(Retry::Idempotent, &[], |c| c.delete(&url)).await?;
        let status = answer.reply.status;
        if status == StatusCode::NOT_FOUND {
            return match self.fail(&answer, Target::Item(&account.id)) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            };
        }
        if !status.is_success() {
            return Err(self.fail(&answer, Target::Item(&account.id)));
        }
        // Telphin answers 204 with nothing; a 200 page from something else proves nothing.
        if status == StatusCode::NO_CONTENT || answer.reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        answer.json::<Value>(&self.http).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_foreign_content_is_not_one() {
        let owner = Owner::new("sales", "ivan-petrenko");
        assert_eq!(marker(&owner), "switchboard:sales/ivan-petrenko");
        assert_eq!(parse_marker(&marker(&owner)), Some(owner));
        assert_eq!(parse_marker("{\"crm\": 12}"), None);
        assert_eq!(parse_marker("switchboard:/x"), None);
        assert_eq!(parse_marker("switchboard:a/b/c"), None);
    }

    #[test]
    fn numbers_drop_the_client_prefix() {
        assert_eq!(number("0001*101"), "101");
        assert_eq!(number("101"), "101");
    }

    #[test]
    fn fields_are_read_from_messages() {
        assert_eq!(field_of("login must be 3 to 64 characters"), Some("login"));
        assert_eq!(field_of("Login x already exists"), Some("login"));
        assert_eq!(field_of("Extension number must be 3 digits"), None);
    }
}
