//! Telphin (Ringme platform "APILink"): the internal-number-level users of one client.
//!
//! What each call sends and accepts, and the public source behind it, is in
//! `docs/compatibility.md` (section Telphin); what follows is how the client is built.
//!
//! The API: JSON under `{url}/api/ver1.0`, OAuth2 client credentials of a trusted
//! application (`POST {url}/oauth/token`, form-encoded, answers `access_token` and maybe
//! `expires_in`; no refresh token). The token is cached until shortly before it expires
//! and fetched again on a 401, once. Answers may come gzip-compressed (the docs ask
//! clients to send `Accept-Encoding: gzip`; the HTTP client does).
//!
//! Every answer carries `X-RateLimit-Limit/Remaining/Reset` of an hourly per-client
//! quota whose size is not published; past it the API answers 429 without `Retry-After`,
//! so the shared HTTP layer takes the wait from `X-RateLimit-Reset` (a wait past its
//! `max_retry_after` fails at once as transient, carrying the wait). [`Backend::cost`]
//! and [`Backend::list_cost`] tell the engine what each write and the listing will
//! spend, so a pass spends the quota on writes first.
//!
//! An account is an extension-level user (`/user/extension/`) bound to an internal number
//! (`/extension/`, `name` `clientprefix*NNN`). Under `/api/ver1.0/client/{clientId}`
//! (`@me`: the application's own client):
//! - `GET user/extension/` and `GET extension/`, both read whole at every listing, paged
//!   with `page`/`per_page` (neither documented for these lists: a server may ignore
//!   `per_page`, cap it, or refuse it, which is then dropped) until a page is empty or
//!   adds nothing new. A list answer may be a bare array or wrapped (`{total_count,
//!   result}`, as the admin search answers); a record that cannot be read is reported
//!   unreadable, not a failed listing.
//! - The numbers the listing read are kept (number -> extension id), so a create on a
//!   known number is one request (`POST user/extension/`), and on a new one two (`POST
//!   extension/` first); no lookup per create. Numbers are never deleted (they carry
//!   phone settings, and a recreated user reuses its number), except one made for a user
//!   that was then refused.
//! - `GET extension/?name=`: the docs leave open whether the filter takes the number
//!   relative to the client prefix or only the full `prefix*NNN`; the full name is sent
//!   once the prefix is known, else the bare number, and every answer is checked record
//!   by record, so a filter read either way (or ignored) finds the same number.
//! - `POST user/extension/` with `extension_id`, `name`, `login`, `password`, `email`,
//!   `status`, `access`, `timezone`, and `extra_params` = `switchboard:<namespace>/<name>`,
//!   the ownership marker `list` reads back into [`Account::marker`]. `extra_params` may
//!   come back absent, `null`, the string `"null"`, or anyone's text: only a well-formed
//!   marker is a claim, and only an empty field (or a marker) is ever overwritten.
//! - `PUT user/extension/{id}`: partial (only what changed); it cannot change `login`.
//! - `DELETE user/extension/{id}`.
//!
//! Errors are decided by HTTP status and structure, never by text: the statuses
//! `already_exists` and `extension_not_found` are used when present but are not
//! documented, so a refused number is looked up to tell a duplicate from a bad request,
//! and a refused user on a number the listing knew has its number checked, made again
//! when gone, and is sent once more.
//!
//! | operation | supported | why |
//! |---|---|---|
//! | list | yes | all pages of users, numbers resolved through the extension list |
//! | find by extension | yes | extension by `name`, then its users by `extension_id` |
//! | create | yes | number known or created, then the user (a password is required) |
//! | update | yes | name, e-mail, status, access, time zone, password, number (`extension_id`) |
//! | change login | no | the PUT has no `login` field: delete and recreate by hand |
//! | delete | yes | the user only; the number stays |
//! | ownership marker | yes | `extra_params` (free field); never overwrites foreign content |

use std::{
    collections::{BTreeSet, HashMap},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::{
    Backend, Credentials, Error, Listing, Probe, Secret, Unreadable, Write, check_settings_block,
    common::{Answer, bearer_call, random_password, unsupported},
    extension_field,
    http::{Http, Retry, Settings},
    lenient,
    paging::{Next, Page, Pager},
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

mod auth;
mod errors;
mod records;

use auth::*;
use errors::*;
use records::*;

const SYSTEM: BackendKind = BackendKind::Telphin;
const API: &str = "/api/ver1.0";
const TOKEN_PATH: &str = "/oauth/token";
/// Users per page asked for. A server may send fewer (a cap) or more (no paging): the
/// pages are followed either way.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Where a list answer may wrap its records (the admin search answers `{total_count,
/// result}`).
const WRAPPERS: &[&str] = &["result", "data", "items"];
/// Renew a token this long before `expires_in` runs out, or at half its life if shorter.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// Telphin numbers are 2, 3 or 4 digits (fixed per client when it is created).
const EXTENSION_DIGITS: std::ops::RangeInclusive<usize> = 2..=4;
const LOGIN_LEN: std::ops::RangeInclusive<usize> = 3..=64;
const NAME_MAX: usize = 255;
const PASSWORD_LEN: usize = 16;
const PASSWORD_SPECIALS: &[u8] = b"!#$*-=?@_";
/// A listing before the first one: two lists, each a page and the empty page after it.
const FIRST_LIST_COST: u64 = 4;

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
    /// Cleared when the server refused `per_page`: pages are then asked by `page` alone.
    send_per_page: AtomicBool,
    /// API requests sent (each try counted), for the cost of a listing.
    sent: AtomicU64,
    known: std::sync::Mutex<Known>,
}

/// What the last listing (and the writes since) taught the client.
#[derive(Default)]
struct Known {
    /// Number -> extension id; `None` before the first listing.
    numbers: Option<HashMap<String, String>>,
    /// The client prefix (`0001` of `0001*101`), once a full name was seen.
    prefix: Option<String>,
    /// User id -> whether its `extra_params` may take our marker (empty, `"null"`, or a
    /// marker already), as listed.
    free: HashMap<String, bool>,
    /// Requests the last listing sent.
    list_cost: Option<u64>,
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Collection,
    Item(&'a str),
}

/// What became of a user's create.
enum Sent {
    Done(Answer),
    /// Refused, and the number it named is gone.
    NumberGone,
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
            send_per_page: AtomicBool::new(true),
            sent: AtomicU64::new(0),
            known: std::sync::Mutex::new(Known::default()),
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

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns the client prefix from a full extension name.
    fn learn_prefix(&self, name: &str) {
        if let Some((prefix, _)) = name.rsplit_once('*')
            && !prefix.is_empty()
        {
            self.known().prefix.get_or_insert_with(|| prefix.to_owned());
        }
    }

    fn remember_number(&self, number: &str, id: &str) {
        if let Some(numbers) = self.known().numbers.as_mut() {
            numbers.insert(number.to_owned(), id.to_owned());
        }
    }

    fn forget_number(&self, number: &str) {
        if let Some(numbers) = self.known().numbers.as_mut() {
            numbers.remove(number);
        }
    }

    /// The extension id of `number`, as last listed.
    fn cached_number(&self, number: &str) -> Option<String> {
        self.known().numbers.as_ref()?.get(number).cloned()
    }

    async fn extension_by_id(&self, id: &str) -> Result<Option<Extension>, Error> {
        let url = self.url(&format!("extension/{id}"));
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
        let e: Extension = answer.json(&self.http)?;
        self.learn_prefix(&e.name);
        Ok(Some(e))
    }

    /// The extensions `name=filter` answers, all pages.
    async fn extensions_named(&self, filter: &str) -> Result<Vec<Extension>, Error> {
        let found = self.pages::<Extension>("extension/", &[("name", filter)]).await?;
        for e in &found.items {
            self.learn_prefix(&e.name);
        }
        Ok(found.items)
    }

    /// The id of the client's extension numbered `number`. The name filter may take the
    /// full `prefix*NNN` only, or the number relative to the prefix: the full name is
    /// asked once the prefix is known (both readings find it), the bare number before,
    /// and then, if that found nothing, the whole list.
    async fn find_extension(&self, number: &str) -> Result<Option<String>, Error> {
        let prefix = self.known().prefix.clone();
        let filter = match &prefix {
            Some(p) => format!("{p}*{number}"),
            None => number.to_owned(),
        };
        let found = self.extensions_named(&filter).await?;
        if let Some(e) = found.iter().find(|e| self::number(&e.name) == number) {
            return Ok(Some(e.id.clone()));
        }
        if prefix.is_some() {
            return Ok(None);
        }
        let all = self.pages::<Extension>("extension/", &[]).await?;
        for e in &all.items {
            self.learn_prefix(&e.name);
        }
        Ok(all.items.into_iter().find(|e| self::number(&e.name) == number).map(|e| e.id))
    }

    /// The extension numbered `number`, created (a phone, active) when missing.
    /// Returns its id and whether this call created it.
    async fn ensure_extension(&self, number: &str, label: Option<&str>) -> Result<(String, bool), Error> {
        if let Some(id) = self.cached_number(number) {
            return Ok((id, false));
        }
        // Listed and absent: made straight away. Never listed: looked up first.
        let listed = self.known().numbers.is_some();
        if !listed && let Some(id) = self.find_extension(number).await? {
            self.remember_number(number, &id);
            return Ok((id, false));
        }
        let mut body = json!({"name": number, "type": "phone", "status": "active"});
        if let Some(label) = label {
            body["label"] = json!(label);
        }
        let url = self.url("extension/");
        let answer = self.call(Retry::Unsafe, &[], |c| c.post(&url).json(&body)).await?;
        if answer.reply.status.is_success() {
            let e: Extension = answer.json(&self.http)?;
            self.learn_prefix(&e.name);
            self.remember_number(number, &e.id);
            return Ok((e.id, true));
        }
        let refused = self.fail(&answer, Target::Collection);
        if !answer.reply.status.is_client_error() {
            return Err(refused);
        }
        // Made meanwhile (by an earlier try whose answer was lost, by a person), or a bad
        // request: the list tells, whatever status string the refusal carried.
        match self.find_extension(number).await? {
            Some(id) => {
                self.remember_number(number, &id);
                Ok((id, false))
            }
            None => Err(refused),
        }
    }

    async fn delete_extension(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&format!("extension/{id}"));
        let answer = self.call(Retry::Idempotent, &[], |c| c.delete(&url)).await?;
        if answer.reply.status.is_success() || answer.reply.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail(&answer, Target::Item(id)))
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

    /// Sends the user's create. A refusal of a user on a number the listing knew checks
    /// that number: [`Sent::NumberGone`] when it is no longer there.
    async fn post_user(
        &self,
        body: &Value,
        password: &Secret,
        extension_id: &str,
        known_number: bool,
    ) -> Result<Sent, Error> {
        let url = self.url("user/extension/");
        let answer = self.call(Retry::Unsafe, &[password], |c| c.post(&url).json(body)).await?;
        if answer.reply.status.is_success() {
            return Ok(Sent::Done(answer));
        }
        let err = self.fail(&answer, Target::Collection);
        let about_other_field =
            matches!(&err, Error::Validation { field: Some(f), .. } if f != "extension_id");
        let number_may_be_gone = known_number
            && answer.reply.status.is_client_error()
            && !matches!(err, Error::Conflict { .. } | Error::Auth { .. })
            && !about_other_field;
        if number_may_be_gone && self.extension_by_id(extension_id).await?.is_none() {
            return Ok(Sent::NumberGone);
        }
        // A duplicate login need not say so (`already_exists` is not documented): a
        // refusal the status does not explain is checked against the list.
        let unexplained =
            matches!(&err, Error::Validation { field, .. } if field.as_deref().is_none_or(|f| f == "login"));
        if unexplained
            && let Some(login) = body.get("login").and_then(Value::as_str)
            && self.login_taken(login).await?
        {
            return Err(
                answer.scrub(self.http.conflict(&format!("login {login} is taken: {}", answer.text(None))))
            );
        }
        Err(err)
    }

    /// Whether a user with `login` exists (logins compare without case).
    async fn login_taken(&self, login: &str) -> Result<bool, Error> {
        let found = self.pages::<User>("user/extension/", &[("login", login)]).await?;
        Ok(found.items.iter().any(|u| u.login.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(login))))
    }
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

/// `extension_id` as the docs type it (an integer), when it is one.
fn id_value(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), Value::from)
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
    let marker = match &u.extra_params {
        Some(Value::String(s)) => parse_marker(s),
        _ => None,
    };
    Account { id: u.id, extension, attributes, marker }
}

fn status(enabled: bool) -> &'static str {
    if enabled { "active" } else { "blocked" }
}

impl Backend for Telphin {
    fn quota(&self) -> Option<super::Quota> {
        self.http.quota()
    }

    fn cost(&self, write: Write<'_>) -> u64 {
        let known = |number: &str| self.cached_number(number).is_some();
        match write {
            // The user; and its number first when the listing did not have it.
            Write::Create(d) => 1 + u64::from(!known(&d.extension)),
            Write::Update { account, desired, changes } => {
                let moves = changes.iter().any(|c| c.field == Field::Extension) && !known(&desired.extension);
                let marks = account.marker.as_ref() != Some(&desired.owner)
                    && !self.known().free.contains_key(&account.id);
                1 + u64::from(moves) + u64::from(marks)
            }
            Write::Delete(_) => 1,
        }
    }

    fn list_cost(&self) -> u64 {
        self.known().list_cost.unwrap_or(FIRST_LIST_COST)
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
        let before = self.sent.load(Ordering::Relaxed);
        // Both lists at once. A user whose number is not in the numbers read is looked up
        // alone below: the number was made after its list was read, or it is gone, and
        // with it the user (Telphin deletes no number that still has users).
        let (users, extensions) = tokio::try_join!(
            self.pages::<User>("user/extension/", &[]),
            self.pages::<Extension>("extension/", &[])
        )?;
        let mut numbers: HashMap<String, String> = HashMap::new();
        let mut by_id: HashMap<String, String> = HashMap::new();
        for e in &extensions.items {
            self.learn_prefix(&e.name);
            numbers.insert(number(&e.name).to_owned(), e.id.clone());
            by_id.insert(e.id.clone(), number(&e.name).to_owned());
        }
        let mut unreadable = users.unreadable;
        // An extension record that cannot be read hides the number of its users: they
        // are reported too, so nothing is created on what may be theirs.
        unreadable.extend(extensions.unreadable.into_iter().map(|mut u| {
            u.problem = format!("extension record: {}", u.problem);
            u
        }));
        let mut accounts = Vec::with_capacity(users.items.len());
        let mut free = HashMap::with_capacity(users.items.len());
        let mut null_texts = 0;
        for u in users.items {
            let extension = match by_id.get(&u.extension_id) {
                Some(n) => n.clone(),
                // Made after the extension list was read: ask for it alone.
                None => match self.extension_by_id(&u.extension_id).await? {
                    Some(e) => {
                        let n = number(&e.name).to_owned();
                        numbers.insert(n.clone(), e.id);
                        n
                    }
                    // Its number is gone, and so (Telphin keeps no user without one) is it.
                    None => continue,
                },
            };
            null_texts += usize::from(u.extra_params.as_ref().is_some_and(null_text));
            free.insert(u.id.clone(), free_field(u.extra_params.as_ref()));
            accounts.push(account(u, extension));
        }
        let cost = self.sent.load(Ordering::Relaxed).saturating_sub(before);
        let prefix = {
            let mut known = self.known();
            known.numbers = Some(numbers);
            known.free = free;
            known.list_cost = Some(cost.max(1));
            known.prefix.clone()
        };
        let sized = users.pages.first().and_then(|p| p.asked).is_some();
        let mut dialect = vec![
            ("user list shape", users.shape),
            ("extension list shape", extensions.shape),
            ("page size", page_size(&users.pages, self.per_page)),
            ("requests per listing", cost.to_string()),
        ];
        if !sized {
            dialect.push(("per_page", "refused by the server; dropped".into()));
        }
        if let Some(p) = prefix {
            dialect.push(("client prefix", p));
        }
        if null_texts > 0 {
            dialect.push(("extra_params", format!("{null_texts} user(s) hold the text \"null\": no marker")));
        }
        Ok(Listing {
            accounts,
            complete: users.complete && extensions.complete,
            unreadable,
            pages: users.pages,
            dialect,
        })
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        let Some(ext_id) = self.find_extension(extension).await? else {
            return Ok(None);
        };
        let mut users = self.pages::<User>("user/extension/", &[("extension_id", &ext_id)]).await?.items;
        users.retain(|u| u.extension_id == ext_id);
        users.sort_by_key(|u| (u.id.len(), u.id.clone()));
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
        let mut body = json!({
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
        let (mut extension_id, mut made) = self.ensure_extension(&desired.extension, Some(name)).await?;
        body["extension_id"] = id_value(&extension_id);
        let sent = match self.post_user(&body, password, &extension_id, !made).await {
            Ok(Sent::NumberGone) => {
                // The number the listing knew is gone: make it again, and send once more.
                self.forget_number(&desired.extension);
                (extension_id, made) = self.ensure_extension(&desired.extension, Some(name)).await?;
                body["extension_id"] = id_value(&extension_id);
                self.post_user(&body, password, &extension_id, false).await
            }
            other => other,
        };
        let answer = match sent {
            Ok(Sent::Done(answer)) => answer,
            Ok(Sent::NumberGone) => {
                return Err(self.http.conflict(&format!("extension {} vanished twice", desired.extension)));
            }
            Err(err) => {
                let refused = !(err.is_transient() || matches!(err, Error::Protocol { .. }));
                if made && refused {
                    // The user was refused for good: take back the number made for it.
                    // Best effort: a number left behind is reused by the next create.
                    if let Err(e) = self.delete_extension(&extension_id).await {
                        tracing::warn!(system = %SYSTEM, extension = %desired.extension, error = %e, "could not remove the number made for a refused user");
                    } else {
                        self.forget_number(&desired.extension);
                    }
                }
                return Err(err);
            }
        };
        let user: User = match answer.json(&self.http) {
            Ok(user) => user,
            // A success without the user: find what was made rather than fail it.
            Err(_) => {
                return self.find(&desired.extension).await?.ok_or_else(|| {
                    self.http.protocol("the user was created but is not found on its number")
                });
            }
        };
        if user.extension_id != extension_id {
            return Err(self.http.protocol("the created user is on another extension than asked"));
        }
        self.known().free.insert(user.id.clone(), true);
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
                    body.insert("extension_id".into(), id_value(&id));
                }
                other => return Err(Error::Unsupported { system: SYSTEM, operation: unsupported(other) }),
            }
        }
        if account.marker.as_ref() != Some(&desired.owner) {
            // Mark it ours, unless the free field holds something that is not a marker.
            let listed = self.known().free.get(&account.id).copied();
            let free = match listed {
                Some(free) => free,
                None => {
                    let current =
                        self.user(&account.id).await?.ok_or_else(|| self.http.not_found(&account.id))?;
                    free_field(current.extra_params.as_ref())
                }
            };
            if free {
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
        // An answer that is not JSON (a proxy's page) proves nothing was done.
        answer.json::<Value>(&self.http).map(|_| ())
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

    /// The default probe, and how the extension name filter reads a bare number: one
    /// more read, never a write.
    async fn probe(&self) -> Result<Probe, Error> {
        let mut listing = self.list().await?;
        let Some(first) = listing.accounts.first().cloned() else {
            return Ok(Probe { listing, sample: None });
        };
        let sample = Some(self.find(&first.extension).await);
        let bare = self.extensions_named(&first.extension).await?;
        let matching = bare.iter().filter(|e| number(&e.name) == first.extension).count();
        let filter = match (bare.len(), matching) {
            (0, _) => "exact: name=NNN finds nothing, the full prefix*NNN is needed".to_owned(),
            (1, 1) => "relative: name=NNN finds prefix*NNN".to_owned(),
            (n, _) => format!("ignored or loose: name=NNN answered {n} extensions"),
        };
        listing.dialect.push(("extension name filter", filter));
        Ok(Probe { listing, sample })
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
}
