//! Thulium: contact-centre agents over a small REST API (`https://<system>.thulium.com/api/`),
//! JSON both ways, HTTP Basic auth with an API user on every request (no tokens, so
//! nothing to cache, refresh or expire).
//!
//! What each call sends and accepts, and the public page behind it, is in
//! `docs/compatibility.md` (section Thulium). In short:
//! - `POST /api/agents`: create. `name`, `surname`, `login`, `password`, `number` required;
//!   `email`, `active`, `roles`, `language`, `outbound_mode`, `callerid` optional. Answers
//!   201 `{"agent_id": "11", "agent_login": "jkowalski"}` (before 2024: no login).
//! - `GET /api/agents/{login}`: one agent; 404 when unknown.
//! - `GET /api/agents?limit=100&offset=N`: the list. Its page is not public. Read as
//!   Thulium's other lists are documented: a bare array (`agents_work_report`) or
//!   `{"count": total, "result": [...]}` (`tickets`), `limit` at most 100 and `offset`.
//!   Paging trusts no page size (see [`Thulium::read_list`]).
//! - Errors: `{"errors": [{"message", "code"}]}` with 400 (the codes are not published),
//!   401 wrong credentials, 403 API user lacks the method. A refused create is told a
//!   conflict or a validation error by asking the system whether the login or number is
//!   taken, never by reading the message.
//!
//! The id switchboard keeps for an agent is its **login**: `GET agents/:login` (and every
//! other per-agent endpoint: status, call, pause...) takes the login, no endpoint takes
//! `agent_id`, and `agent_id` even changes type between pages (string in the create
//! answer, integer in GET). The login cannot change (there is no update), so it is stable.
//!
//! | operation | supported | why |
//! |-----------|-----------|-----|
//! | create    | yes | `POST agents` |
//! | list/find | yes | `GET agents` (paged); find filters the list by `number` (no filter is documented) |
//! | get one   | yes | `GET agents/:login` ([`Thulium::get`]) |
//! | update    | no  | the public index has no `PUT`/`PATCH agents/:login`; `Unsupported` |
//! | delete    | no  | the public index has no `DELETE agents/:login`; `Unsupported` |
//!
//! Readable (what the list returns): extension (`number`), givenName (`name`), familyName
//! (`surname`), email, login, enabled (`active`) and the `outbound_mode` setting. `roles`,
//! `language` and `callerid` are set at creation but never returned, so drift in them
//! cannot be seen. Writable lists what `create` sets; with `update: false` the planner
//! turns any later difference into a manual task.
//!
//! Rules checked before any call: the extension is 1–9 digits without a leading zero
//! (GET returns `number` as an integer, so "0345" would come back as 345 and never match);
//! the login is a URL path segment of ASCII letters, digits and `._@-` (at most 64);
//! names and caller id are not blank. The password has no documented rule; generated ones
//! are 16 characters mixing cases, digits and symbols, like the docs' example.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, seq::SliceRandom};
use reqwest::{RequestBuilder, StatusCode, Url, header::ACCEPT};
use serde::Deserialize;
use serde_json::{Map, Value, json, value::RawValue};

use super::{
    Backend, Credentials, Error, Listing, Secret, Unreadable, check_settings_block, extension_field,
    http::{self, Http, Reply, Retry},
    lenient,
    paging::{self, Next, Pager},
};
use crate::{
    api::{
        BackendKind, EmployeeSpec, Membership,
        employee::{OutboundMode, ThuliumLanguage},
        phone_system,
    },
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

/// Settings keys, as Thulium names the fields. `roles`: role ids, ascending, comma-separated.
pub const ROLES: &str = "roles";
/// `pl` | `en`.
pub const LANGUAGE: &str = "language";
/// `manual` | `auto`.
pub const OUTBOUND_MODE: &str = "outbound_mode";
pub const CALLERID: &str = "callerid";

const SYSTEM: BackendKind = BackendKind::Thulium;
/// The largest page Thulium's paged lists document (`agents_work_report`, `tickets`).
const PAGE: usize = 100;
/// Reads of the whole list before giving up when it keeps shifting under the cursor.
const LIST_TRIES: u32 = 3;
/// Where a list answer may hold its records: `{"count": n, "result": [...]}`.
const WRAPPERS: [&str; 2] = ["result", "data"];
const NUMBER_MAX_DIGITS: usize = 9;
const LOGIN_MAX_LEN: usize = 64;
const PASSWORD_LEN: usize = 16;
const PASSWORD_SYMBOLS: &[u8] = b"!@#%^*-_=+?";

/// One Thulium system.
pub struct Thulium {
    http: Http,
    username: Secret,
    password: Secret,
    capabilities: Capabilities,
}

/// One page of the agent list, each record read or refused.
struct AgentPage {
    records: Vec<(String, Result<Account, Unreadable>)>,
    shape: String,
    /// The total the answer announced (`count`), when it did.
    total: Option<usize>,
    /// How the records typed their fields (`number`: `integer`...), for the probe.
    kinds: BTreeSet<(&'static str, &'static str)>,
}

/// How a read of the whole list ended.
enum Read {
    Whole(Listing),
    /// The list shifted under the cursor: an agent came or went ahead of it.
    Shifted,
}

impl Thulium {
    pub fn new(
        block: &phone_system::Thulium,
        credentials: &Credentials,
        settings: http::Settings,
    ) -> Result<Self, Error> {
        let username = credentials.require("username")?.clone();
        let password = credentials.require("password")?.clone();
        let http = Http::new(SYSTEM, &block.url, settings, credentials.values())?;
        Ok(Thulium { http, username, password, capabilities: capabilities() })
    }

    /// The agent with `login` (`GET agents/:login`), or `None` when there is none.
    pub async fn get(&self, login: &str) -> Result<Option<Account>, Error> {
        let mut url = Url::parse(&self.http.url("/api/agents"))
            .map_err(|e| Error::Config(format!("{SYSTEM}: bad url: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("{SYSTEM}: the url cannot take a path")))?
            .push(login);
        let reply = self.http.send(Retry::Idempotent, &[], |c| self.authed(c.get(url.clone()))).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        check(&self.http, &reply)?;
        let raw: Box<RawValue> = self.http.json(&reply)?;
        let agent: AgentOut =
            lenient::read(&raw).map_err(|e| self.http.protocol(&format!("agent {login}: {e}")))?;
        agent.into_account().map(Some).map_err(|e| self.http.protocol(&format!("agent {login}: {e}")))
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        request
            .basic_auth(self.username.expose(), Some(self.password.expose()))
            .header(ACCEPT, "application/json")
    }

    async fn page(&self, offset: usize, limit: usize) -> Result<AgentPage, Error> {
        let url = self.http.url("/api/agents");
        let reply = self
            .http
            .send(Retry::Idempotent, &[], |c| {
                self.authed(c.get(&url).query(&[("limit", limit), ("offset", offset)]))
            })
            .await?;
        check(&self.http, &reply)?;
        let list = lenient::records(&reply.body, &WRAPPERS).map_err(|e| {
            self.http.protocol(&format!("GET agents: {e}: {}", self.http.snippet(&reply.body)))
        })?;
        let total = serde_json::from_slice::<Announced>(&reply.body).ok().and_then(|a| a.total());
        let mut kinds = BTreeSet::new();
        let records = list
            .items
            .iter()
            .map(|(key, raw)| {
                kinds.extend(kinds_of(raw));
                let read = lenient::read::<AgentOut>(raw).and_then(AgentOut::into_account);
                match read {
                    Ok(account) => (account.id.to_lowercase(), Ok(account)),
                    Err(problem) => {
                        let unreadable =
                            lenient::unreadable(raw, key.as_deref(), &["login"], &["number"], problem);
                        let id = unreadable.id.clone().map(|id| id.to_lowercase());
                        (id.unwrap_or_else(|| raw.get().to_owned()), Err(unreadable))
                    }
                }
            })
            .collect();
        Ok(AgentPage { records, shape: list.shape, total, kinds })
    }

    /// One read of the whole list, page after page, trusting no page size.
    ///
    /// Each page is asked from one agent back (`offset` = agents read − 1), so it must
    /// begin with the agent the last one ended with: otherwise an agent came or went ahead
    /// of the cursor while we read (which would silently skip one), and the list is read
    /// again. The list ends at an empty page, at a page that adds no agent (the one-agent
    /// overlap at the end, or a server that ignores `offset`), or once the total an answer
    /// announces is read. A server that ignores `offset` but honours `limit` can show no
    /// more than its first page: such a listing is partial, never taken for whole.
    async fn read_list(&self) -> Result<Read, Error> {
        let mut pager = Pager::new(Some(PAGE));
        let mut listing = Listing::default();
        let mut offset = 0;
        let mut last: Option<String> = None;
        let mut shapes = BTreeSet::new();
        let mut kinds = BTreeSet::new();
        let mut total = None;
        let complete = loop {
            let page = self.page(offset, PAGE).await?;
            shapes.insert(page.shape.clone());
            kinds.extend(page.kinds.iter().copied());
            total = page.total.or(total);
            let got = page.records.len();
            let first = page.records.first().map(|(key, _)| key.clone());
            let adds = page.records.iter().any(|(key, _)| !pager.seen(key));
            let overlaps = offset > 0 && first == last;
            if offset > 0 && adds && !overlaps {
                return Ok(Read::Shifted);
            }
            last = page.records.last().map(|(key, _)| key.clone()).or(last);
            let keys: Vec<String> = page.records.iter().map(|(key, _)| key.clone()).collect();
            for (key, record) in page.records {
                if pager.seen(&key) {
                    continue;
                }
                match record {
                    Ok(account) => listing.accounts.push(account),
                    Err(unreadable) => listing.unreadable.push(unreadable),
                }
            }
            let next = pager.page(&keys);
            if total.is_some_and(|t| pager.distinct() >= t) {
                break true;
            }
            match next {
                Next::More if got == 1 => offset += 1,
                Next::More => offset += got - 1,
                Next::GaveUp => break false,
                Next::Done if got == 0 || overlaps || offset == 0 => break true,
                // The page repeated what we had from another start: `offset` is ignored.
                Next::Done => break self.sends_everything(&pager).await?,
            }
        };
        listing.complete = complete;
        listing.dialect.push(("list shape", shapes.into_iter().collect::<Vec<_>>().join(" and ")));
        if let Some(total) = total {
            listing.dialect.push(("total announced", format!("count {total}")));
        }

        for field in ["agent_id", "number", "active"] {
            let seen: Vec<&str> = kinds.iter().filter(|(f, _)| *f == field).map(|(_, k)| *k).collect();
            if !seen.is_empty() {
                listing.dialect.push((field, seen.join(" and ")));
            }
        }
        let pages = pager.into_pages();
        listing.dialect.push(("paging", paging_of(&pages, complete)));
        listing.pages = pages;
        Ok(Read::Whole(listing))
    }

    /// Whether a server that ignores `offset` sent every agent on its first page: it did
    /// when it also ignores `limit` (asked for one, it sends more), or when its first page
    /// held fewer agents than asked.
    async fn sends_everything(&self, pager: &Pager) -> Result<bool, Error> {
        if pager.distinct() < PAGE {
            return Ok(true);
        }
        Ok(self.page(0, 1).await?.records.len() > 1)
    }
}

/// How the list paged, in words, for the probe.
fn paging_of(pages: &[paging::Page], complete: bool) -> String {
    let first = pages.first().map_or(0, |p| p.got);
    let repeated = pages.iter().skip(1).any(|p| p.new == 0 && p.got > 1);
    match (complete, repeated) {
        (false, true) => "offset ignored: only the first page can be read".to_owned(),
        (true, true) if first > PAGE => format!("limit and offset ignored: all {first} agents at once"),
        (true, true) => "offset ignored, but the first page held every agent".to_owned(),
        _ if first > PAGE => format!("limit ignored: {first} agents on a page of {PAGE} asked"),
        _ if pages.len() > 2 && first < PAGE && first > 0 => {
            format!("limit and offset honoured, pages capped at {first}")
        }
        _ => format!("limit and offset honoured (pages of {PAGE} asked)"),
    }
}

/// The total a wrapped list announces.
#[derive(Deserialize)]
struct Announced {
    #[serde(default, deserialize_with = "lenient::text")]
    count: Option<String>,
}

impl Announced {
    fn total(&self) -> Option<usize> {
        self.count.as_deref().and_then(|c| c.parse().ok())
    }
}

/// How a record types the fields whose type differs between Thulium's pages.
fn kinds_of(raw: &RawValue) -> Vec<(&'static str, &'static str)> {
    #[derive(Deserialize)]
    struct Kinds {
        #[serde(default)]
        agent_id: Option<Value>,
        #[serde(default)]
        number: Option<Value>,
        #[serde(default)]
        active: Option<Value>,
    }
    let Ok(k) = serde_json::from_str::<Kinds>(raw.get()) else {
        return Vec::new();
    };
    let kind = |v: &Value| match v {
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        _ => "other",
    };
    [("agent_id", k.agent_id), ("number", k.number), ("active", k.active)]
        .into_iter()
        .filter_map(|(field, v)| v.map(|v| (field, kind(&v))))
        .collect()
}

fn capabilities() -> Capabilities {
    let readable: BTreeSet<Field> = [
        Field::Extension,
        Field::GivenName,
        Field::FamilyName,
        Field::Email,
        Field::Login,
        Field::Enabled,
        Field::Setting(OUTBOUND_MODE.into()),
    ]
    .into();
    let mut writable = readable.clone();
    writable.extend([
        Field::Password,
        Field::Setting(ROLES.into()),
        Field::Setting(LANGUAGE.into()),
        Field::Setting(CALLERID.into()),
    ]);
    Capabilities { create: true, update: false, delete: false, readable, writable }
}

/// The documented error body: `{"request_id": ..., "errors": [{"message", "code"}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default, deserialize_with = "lenient::text")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    code: Option<String>,
    /// Not documented; read when a server names the field.
    #[serde(default, deserialize_with = "lenient::text")]
    field: Option<String>,
}

/// The problems an error answer lists, for people to read (`message (code 2003)`), and
/// the field the first one names, where a server names one.
fn problems(reply: &Reply) -> (Vec<String>, Option<String>) {
    let errors = serde_json::from_slice::<ErrorBody>(&reply.body).map(|b| b.errors).unwrap_or_default();
    let field = errors.iter().find_map(|e| e.field.clone());
    let texts = errors
        .into_iter()
        .map(|e| match (e.message, e.code) {
            (Some(m), Some(c)) => format!("{m} (code {c})"),
            (Some(m), None) => m,
            (None, Some(c)) => format!("code {c}"),
            (None, None) => "an error without a message".to_owned(),
        })
        .collect();
    (texts, field)
}

/// Maps a non-2xx answer (other than the 404 a GET-one reads as "none") to an error, by
/// status alone.
fn check(http: &Http, reply: &Reply) -> Result<(), Error> {
    if reply.status.is_success() {
        return Ok(());
    }
    let (texts, field) = problems(reply);
    let detail = match texts.is_empty() {
        true => http.snippet(&reply.body),
        false => texts.join("; "),
    };
    match reply.status {
        StatusCode::UNAUTHORIZED => Err(http.auth(&format!("HTTP 401: {detail}"))),
        StatusCode::FORBIDDEN => {
            Err(http.auth(&format!("HTTP 403, the API user may not call this method: {detail}")))
        }
        StatusCode::CONFLICT => Err(http.conflict(&format!("HTTP 409: {detail}"))),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            Err(http.validation(field.as_deref(), &format!("HTTP {}: {detail}", reply.status.as_u16())))
        }
        status => Err(http.protocol(&format!("HTTP {}: {detail}", status.as_u16()))),
    }
}

/// An agent as `GET agents` and `GET agents/:login` return it: the fields we use, each
/// in any type Thulium's pages give it (`number` is an integer in GET and a string in
/// `outbounds/:id/agents`; `active` a boolean, or 0/1 as PHP back-ends often send).
#[derive(Deserialize)]
struct AgentOut {
    #[serde(default, deserialize_with = "lenient::text")]
    login: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    surname: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient::flag")]
    active: Option<bool>,
    #[serde(default, deserialize_with = "lenient::text")]
    number: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    outbound_mode: Option<String>,
}

impl AgentOut {
    /// The account, or the problem naming the field that cannot be used.
    fn into_account(self) -> Result<Account, String> {
        let login = self.login.filter(|l| !l.is_empty()).ok_or("login: missing or empty")?;
        let extension = match self.number {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(n) => return Err(format!("number: {n:?} is not digits")),
            None => return Err("number: missing".to_owned()),
        };
        let mut settings = BTreeMap::new();
        if let Some(mode) = self.outbound_mode {
            settings.insert(OUTBOUND_MODE.to_owned(), mode);
        }
        Ok(Account {
            id: login.clone(),
            extension,
            attributes: Attributes {
                given_name: self.name,
                family_name: self.surname,
                email: self.email.filter(|e| !e.is_empty()),
                login: Some(login),
                enabled: self.active,
                settings,
                ..Attributes::default()
            },
            marker: None,
        })
    }
}

/// The create answer: `agent_id` always, `agent_login` since 2024.
#[derive(Deserialize)]
struct Created {
    #[serde(default, deserialize_with = "lenient::text")]
    agent_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    agent_login: Option<String>,
}

fn is_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= LOGIN_MAX_LEN
        && login.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

fn generate(len: usize) -> String {
    const CLASSES: [&[u8]; 4] =
        [b"abcdefghijkmnopqrstuvwxyz", b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"23456789", PASSWORD_SYMBOLS];
    let all: Vec<u8> = CLASSES.concat();
    let mut rng = rand::rng();
    // One of each class, then any: every class present whatever the draw.
    let mut chars: Vec<u8> = CLASSES.iter().map(|class| class[rng.random_range(0..class.len())]).collect();
    chars.extend((CLASSES.len()..len).map(|_| all[rng.random_range(0..all.len())]));
    chars.shuffle(&mut rng);
    chars.into_iter().map(char::from).collect()
}

impl Backend for Thulium {
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
        if extension.is_empty()
            || extension.len() > NUMBER_MAX_DIGITS
            || !extension.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::unfit(
                SYSTEM,
                extension_field(membership),
                format!("must be 1–{NUMBER_MAX_DIGITS} digits"),
            ));
        }
        if extension.starts_with('0') {
            return Err(Error::unfit(
                SYSTEM,
                extension_field(membership),
                "must not start with 0 (Thulium keeps agent numbers as integers: the zero would be lost)",
            ));
        }
        for (field, value) in
            [("spec.givenName", &employee.given_name), ("spec.familyName", &employee.family_name)]
        {
            if value.trim().is_empty() {
                return Err(Error::unfit(SYSTEM, field, "must not be blank"));
            }
        }
        let login = employee.login();
        if !is_login(login) {
            let rule =
                format!("a login may hold only ASCII letters, digits and . _ @ - (at most {LOGIN_MAX_LEN})");
            return Err(match employee.login {
                Some(_) => Error::unfit(SYSTEM, "spec.login", rule),
                None => Error::unfit(
                    SYSTEM,
                    "spec.email",
                    format!("{rule}; the part before the @ is the login: set spec.login"),
                ),
            });
        }

        let mut settings = BTreeMap::new();
        if let Some(t) = &membership.thulium {
            if let Some(roles) = &t.roles {
                let mut roles = roles.clone();
                roles.sort_unstable();
                roles.dedup();
                let text = roles.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                settings.insert(ROLES.to_owned(), text);
            }
            if let Some(language) = t.language {
                let text = match language {
                    ThuliumLanguage::Pl => "pl",
                    ThuliumLanguage::En => "en",
                };
                settings.insert(LANGUAGE.to_owned(), text.to_owned());
            }
            if let Some(mode) = t.outbound_mode {
                let text = match mode {
                    OutboundMode::Manual => "manual",
                    OutboundMode::Auto => "auto",
                };
                settings.insert(OUTBOUND_MODE.to_owned(), text.to_owned());
            }
            if let Some(callerid) = &t.caller_id {
                if callerid.trim().is_empty() {
                    return Err(Error::unfit(
                        SYSTEM,
                        format!("spec.phoneSystems[name={}].thulium.callerId", membership.name),
                        "must not be blank",
                    ));
                }
                settings.insert(CALLERID.to_owned(), callerid.clone());
            }
        }

        Ok(Attributes {
            given_name: Some(employee.given_name.clone()),
            family_name: Some(employee.family_name.clone()),
            email: Some(employee.email.clone()),
            login: Some(login.to_owned()),
            enabled: Some(employee.enabled),
            settings,
            ..Attributes::default()
        })
    }

    fn generate_password(&self) -> Secret {
        Secret::new(generate(PASSWORD_LEN))
    }

    async fn list(&self) -> Result<Listing, Error> {
        for _ in 0..LIST_TRIES {
            match self.read_list().await? {
                Read::Whole(listing) => return Ok(listing),
                Read::Shifted => {
                    tracing::debug!(system = %SYSTEM, "the agent list shifted while it was read; reading it again")
                }
            }
        }
        Err(self.http.transient("the agent list kept changing while it was read"))
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        // No documented filter on `GET agents`: read the list and look.
        let listing = self.list().await?;
        let found = listing.accounts.into_iter().find(|a| a.extension == extension);
        let hidden = listing.unreadable.iter().any(|u| u.extension.as_deref().is_none_or(|e| e == extension));
        match (found, listing.complete && !hidden) {
            (Some(account), _) => Ok(Some(account)),
            (None, true) => Ok(None),
            // "Not listed" may be "not read": an unclear answer, not an absent agent.
            (None, false) => Err(self.http.transient(&format!(
                "the agent list could not be read whole; extension {extension} may be among what was not"
            ))),
        }
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        let a = &desired.attributes;
        let required = |value: &Option<String>, field: &str| {
            value.clone().ok_or_else(|| Error::unfit(SYSTEM, field, "is required on Thulium"))
        };
        let login = required(&a.login, "spec.login")?;
        // Thulium requires a password; without one given, the agent gets a random one
        // (a person can reset it in the panel).
        let password = super::password_or_generated(self, password);
        let password = password.as_ref();
        let mut body = Map::new();
        body.insert("name".into(), json!(required(&a.given_name, "spec.givenName")?));
        body.insert("surname".into(), json!(required(&a.family_name, "spec.familyName")?));
        body.insert("login".into(), json!(login));
        body.insert("password".into(), json!(password.expose()));
        // A string, as in the documented request ("number": "345").
        body.insert("number".into(), json!(desired.extension));
        if let Some(email) = &a.email {
            body.insert("email".into(), json!(email));
        }
        body.insert("active".into(), json!(a.enabled.unwrap_or(true)));
        if let Some(roles) = a.settings.get(ROLES) {
            let ids = roles
                .split(',')
                .filter(|r| !r.is_empty())
                .map(|r| {
                    r.parse::<u64>().map_err(|_| Error::Config(format!("{SYSTEM}: {r:?} is not a role id")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("roles".into(), json!(ids));
        }
        for key in [LANGUAGE, OUTBOUND_MODE, CALLERID] {
            if let Some(value) = a.settings.get(key) {
                body.insert(key.into(), json!(value));
            }
        }
        let body = Value::Object(body);

        let http = self.http.with_secrets(&[password]);
        let url = http.url("/api/agents");
        let reply = http.send(Retry::Unsafe, &[password], |c| self.authed(c.post(&url).json(&body))).await?;
        if let Err(refusal) = check(&http, &reply) {
            return Err(match refusal {
                Error::Validation { .. } | Error::Conflict { .. } => {
                    self.taken(&http, &login, &desired.extension, refusal).await
                }
                other => other,
            });
        }
        let created: Created = http.json(&reply)?;
        if created.agent_id.is_none() && created.agent_login.is_none() {
            return Err(http.protocol(&format!(
                "HTTP {} without agent_id: {}",
                reply.status.as_u16(),
                http.snippet(&reply.body)
            )));
        }
        let login = created.agent_login.filter(|l| !l.is_empty()).unwrap_or(login);
        // The answer names the agent; the caller needs only its id and number, and the
        // next listing reads it as stored. (A read-back GET here doubled the requests of
        // a create, and with them the time a rate-limited create of N agents takes.)
        let mut settings = BTreeMap::new();
        if let Some(mode) = a.settings.get(OUTBOUND_MODE) {
            settings.insert(OUTBOUND_MODE.to_owned(), mode.clone());
        }
        Ok(Account {
            id: login.clone(),
            extension: desired.extension.clone(),
            attributes: Attributes {
                given_name: a.given_name.clone(),
                family_name: a.family_name.clone(),
                email: a.email.clone().filter(|e| !e.is_empty()),
                login: Some(login),
                enabled: Some(a.enabled.unwrap_or(true)),
                settings,
                ..Attributes::default()
            },
            marker: None,
        })
    }

    async fn update(
        &self,
        _account: &Account,
        _desired: &Desired,
        _changes: &[Change],
        _password: Option<&Secret>,
    ) -> Result<(), Error> {
        Err(Error::Unsupported { system: SYSTEM, operation: "update agents" })
    }

    async fn delete(&self, _account: &Account) -> Result<(), Error> {
        Err(Error::Unsupported { system: SYSTEM, operation: "delete agents" })
    }
}

impl Thulium {
    /// What a refused create was: a conflict when the login or the number is already
    /// held, asked of the system (Thulium publishes no error codes, and its messages
    /// follow the language asked for), else the refusal as it came.
    async fn taken(&self, http: &Http, login: &str, number: &str, refusal: Error) -> Error {
        let detail = match &refusal {
            Error::Validation { message, .. } => message.clone(),
            Error::Conflict { detail, .. } => detail.clone(),
            other => other.to_string(),
        };
        match self.get(login).await {
            Ok(Some(agent)) => {
                return http.conflict(&format!(
                    "login {login} is already held by the agent on number {} ({detail})",
                    agent.extension
                ));
            }
            Ok(None) => {}
            Err(_) => return refusal,
        }
        match self.find(number).await {
            Ok(Some(agent)) => {
                http.conflict(&format!("number {number} is already held by agent {} ({detail})", agent.id))
            }
            _ => refusal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_read_in_every_type_thulium_uses() {
        let read = |text: &str| {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            lenient::read::<AgentOut>(&raw).and_then(AgentOut::into_account)
        };
        let a = read(r#"{"agent_id":"11","login":"jk","number":"345","active":1}"#).unwrap();
        assert_eq!((a.id.as_str(), a.extension.as_str(), a.attributes.enabled), ("jk", "345", Some(true)));
        let b = read(r#"{"agent_id":11,"login":"jk","number":345,"active":false,"email":""}"#).unwrap();
        assert_eq!((b.extension.as_str(), b.attributes.email), ("345", None));
        assert!(read(r#"{"login":"jk","number":"34a"}"#).unwrap_err().starts_with("number"));
        assert!(read(r#"{"login":"jk"}"#).unwrap_err().starts_with("number"));
        assert!(read(r#"{"number":345}"#).unwrap_err().starts_with("login"));
        assert!(read(r#"{"login":"jk","number":345,"active":"maybe"}"#).unwrap_err().starts_with("active"));
    }

    #[test]
    fn generated_passwords_mix_every_class() {
        for _ in 0..50 {
            let p = generate(PASSWORD_LEN);
            assert_eq!(p.len(), PASSWORD_LEN);
            assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
            assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(p.bytes().any(|b| b.is_ascii_digit()));
            assert!(p.bytes().any(|b| PASSWORD_SYMBOLS.contains(&b)));
        }
    }
}
