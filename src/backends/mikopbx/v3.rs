//! The REST API v3 (MikoPBX 2026.1 and later): `/pbxcore/api/v3/employees`. See the
//! parent module for the endpoints and the capability table.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{Client, RequestBuilder, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::{
    DEFAULT_PAGE_SIZE, FWD_FORWARDING, FWD_RING_LENGTH, Generation, SIP_ENABLE_RECORDING, account_of,
    admin_login, capabilities, check_generation, create_values, error_messages, field_of, generate_password,
    id_text, is_duplicate, is_loopback, parse, planned_values,
};
use crate::{
    api::{
        BackendKind, EmployeeSpec, Membership,
        phone_system::{MikoPbx, MikoPbxApiGeneration},
    },
    backends::{
        Backend, Credentials, Error, Listing, Secret,
        http::{self, Http, Reply, Retry},
    },
    plan::{Account, Attributes, Capabilities, Change, Desired},
};

const EMPLOYEES: &str = "/pbxcore/api/v3/employees";
const LOGIN: &str = "/pbxcore/api/v3/auth:login";
/// A JWT is renewed this long before it expires (or at 90% of a shorter lifetime).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// How this client proves who it is.
#[derive(Debug)]
enum Auth {
    /// Loopback callers without a bearer are trusted.
    None,
    ApiKey(Secret),
    /// Admin login for a JWT (15 minutes on 2026.1), renewed by logging in again: the
    /// refresh cookie would need a cookie jar for no gain.
    Password {
        username: Secret,
        password: Secret,
    },
}

/// The v3 answer.
#[derive(Deserialize)]
struct Envelope {
    result: bool,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    messages: Value,
}

/// What a request addresses: the collection, or one employee (whose absence is then
/// NotFound rather than a missing API).
#[derive(Clone, Copy)]
enum Target<'a> {
    Collection,
    Record(&'a str),
}

/// A list item: `id` and `disabled` are all we take from it (the rest comes with the
/// full record).
struct Item {
    id: String,
    number: String,
    disabled: bool,
}

/// MikoPBX 2026.1 and later through `/pbxcore/api/v3/employees`.
#[derive(Debug)]
pub struct MikoPbxV3 {
    http: Http,
    auth: Auth,
    /// The JWT in use and when to renew it; the lock makes concurrent requests log in
    /// once.
    token: Mutex<Option<(Secret, Instant)>>,
    caps: Capabilities,
    page_size: usize,
    concurrency: usize,
}

impl MikoPbxV3 {
    pub fn new(block: &MikoPbx, credentials: &Credentials, settings: http::Settings) -> Result<Self, Error> {
        check_generation(block, MikoPbxApiGeneration::V3)?;
        let auth = match (credentials.get("apiKey"), admin_login(credentials)?) {
            (Some(key), _) => Auth::ApiKey(key.clone()),
            (None, Some((username, password))) => Auth::Password { username, password },
            (None, None) if is_loopback(&block.url) => Auth::None,
            (None, None) => return Err(Error::Credentials { key: "apiKey" }),
        };
        let concurrency = settings.max_concurrency.max(1);
        let http = Http::new(BackendKind::Mikopbx, &block.url, settings, credentials.values())?;
        Ok(MikoPbxV3 {
            http,
            auth,
            token: Mutex::new(None),
            caps: capabilities(),
            page_size: DEFAULT_PAGE_SIZE,
            concurrency,
        })
    }

    /// Employees per list page (tests use small pages to cross page boundaries).
    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    // --- auth ----------------------------------------------------------------------------

    async fn bearer(&self) -> Result<Option<Secret>, Error> {
        let (username, password) = match &self.auth {
            Auth::None => return Ok(None),
            Auth::ApiKey(key) => return Ok(Some(key.clone())),
            Auth::Password { username, password } => (username, password),
        };
        let mut held = self.token.lock().await;
        if let Some((token, renew_at)) = held.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(Some(token.clone()));
        }
        let (token, lifetime) = self.log_in(username, password).await?;
        let margin = RENEW_MARGIN.min(lifetime / 10);
        *held = Some((token.clone(), Instant::now() + lifetime.saturating_sub(margin)));
        Ok(Some(token))
    }

    async fn forget(&self, used: &Secret) {
        let mut held = self.token.lock().await;
        if held.as_ref().is_some_and(|(token, _)| token == used) {
            *held = None;
        }
    }

    async fn log_in(&self, username: &Secret, password: &Secret) -> Result<(Secret, Duration), Error> {
        let url = self.http.url(LOGIN);
        let body = serde_json::json!({"login": username.expose(), "password": password.expose()});
        let reply = self.http.send(Retry::Idempotent, &[], |c| c.post(&url).json(&body)).await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(self.no_api()),
            status if status.is_client_error() => {
                let detail = match parse::<Envelope>(&self.http, &reply) {
                    Ok(e) => {
                        error_messages(&e.messages).into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ")
                    }
                    Err(_) => self.http.snippet(&reply.body),
                };
                return Err(self.http.auth(&format!("login refused (HTTP {}): {detail}", status.as_u16())));
            }
            status => {
                return Err(self.http.protocol(&format!(
                    "login answered HTTP {}: {}",
                    status.as_u16(),
                    self.http.snippet(&reply.body)
                )));
            }
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(rename = "accessToken")]
            access_token: String,
            #[serde(rename = "expiresIn", default)]
            expires_in: Option<u64>,
        }
        #[derive(Deserialize)]
        struct Answer {
            result: bool,
            data: Token,
        }
        let answer: Answer = parse(&self.http, &reply)?;
        if !answer.result || answer.data.access_token.is_empty() {
            return Err(self.http.protocol("login succeeded without a token"));
        }
        // 900 s is what 2026.1 issues; a missing lifetime is taken as that.
        let lifetime = Duration::from_secs(answer.data.expires_in.unwrap_or(900));
        Ok((Secret::new(answer.data.access_token), lifetime))
    }

    /// Sends a request with the bearer; on a 401 with a JWT, logs in again once.
    async fn call(
        &self,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder + Send + Sync,
    ) -> Result<Reply, Error> {
        let mut renewed = false;
        loop {
            let bearer = self.bearer().await?;
            let mut all = secrets.to_vec();
            all.extend(bearer.as_ref());
            let reply = self
                .http
                .send(retry, &all, |c| match &bearer {
                    Some(token) => {
                        build(c).header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
                    }
                    None => build(c),
                })
                .await?;
            let jwt = matches!(self.auth, Auth::Password { .. });
            match bearer {
                Some(used) if jwt && reply.status == StatusCode::UNAUTHORIZED && !renewed => {
                    self.forget(&used).await;
                    renewed = true;
                }
                _ => return Ok(reply),
            }
        }
    }

    fn no_api(&self) -> Error {
        Error::Config(format!(
            "mikopbx: no v3 API at {}: MikoPBX before 2025 speaks the legacy API (apiGeneration: legacy)",
            self.http.url("")
        ))
    }

    /// The `data` of a successful answer, or the error the answer means.
    fn data(&self, reply: &Reply, target: Target<'_>) -> Result<Value, Error> {
        match reply.status {
            StatusCode::OK | StatusCode::CREATED => {
                let envelope: Envelope = parse(&self.http, reply)?;
                if envelope.result {
                    Ok(envelope.data)
                } else {
                    Err(self.refusal(&envelope.messages, target))
                }
            }
            StatusCode::UNAUTHORIZED => Err(self.http.auth(match self.auth {
                Auth::None => "the PBX does not see this client as local: add an apiKey to the credentials",
                Auth::ApiKey(_) => "the API key was refused (HTTP 401)",
                Auth::Password { .. } => "a fresh token was refused (HTTP 401)",
            })),
            StatusCode::FORBIDDEN => {
                Err(self.http.auth("this login may not use the employees API (HTTP 403)"))
            }
            StatusCode::NOT_FOUND => match target {
                Target::Record(id) => Err(self.http.not_found(id)),
                Target::Collection => Err(self.no_api()),
            },
            StatusCode::METHOD_NOT_ALLOWED => Err(self.no_api()),
            StatusCode::CONFLICT => {
                let envelope: Option<Envelope> = parse(&self.http, reply).ok();
                let text =
                    envelope.map(|e| joined(&e.messages)).unwrap_or_else(|| self.http.snippet(&reply.body));
                Err(self.http.conflict(&text))
            }
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                let envelope: Envelope = parse(&self.http, reply)?;
                Err(self.refusal(&envelope.messages, target))
            }
            status => Err(self.http.protocol(&format!(
                "HTTP {}: {}",
                status.as_u16(),
                self.http.snippet(&reply.body)
            ))),
        }
    }

    /// A refused request, by its messages (2026.1 answers most failures 422).
    fn refusal(&self, messages: &Value, target: Target<'_>) -> Error {
        let list = error_messages(messages);
        let text = joined(messages);
        let any = |needle: &str| list.iter().any(|(_, m)| m.to_lowercase().contains(needle));
        if let Target::Record(id) = target
            && any("not found")
        {
            return self.http.not_found(id);
        }
        // Worth retrying later: the maintainers' own client retries these.
        if any("database is locked") || any("worker not responding") {
            return self.http.transient(&text);
        }
        if let Some((_, dup)) = list.iter().find(|(_, m)| is_duplicate(m)) {
            if dup.to_lowercase().contains("mobile") {
                return self.http.validation(Some("mobile_number"), &text);
            }
            return self.http.conflict(&text);
        }
        let field = list.iter().find_map(|(f, m)| f.clone().or_else(|| field_of(m)));
        self.http.validation(field.as_deref(), &text)
    }

    // --- reads -------------------------------------------------------------------------

    async fn items(&self, query: &[(&str, &str)]) -> Result<(Vec<Item>, usize), Error> {
        let url = self.http.url(EMPLOYEES);
        let reply = self.call(Retry::Idempotent, &[], |c| c.get(&url).query(query)).await?;
        let data = self.data(&reply, Target::Collection)?;
        #[derive(Deserialize)]
        struct Page {
            data: Vec<Map<String, Value>>,
            #[serde(rename = "recordsTotal")]
            records_total: Value,
        }
        let page: Page = serde_json::from_value(data)
            .map_err(|e| self.http.protocol(&format!("the employee list is not the expected shape: {e}")))?;
        let total = id_text(&page.records_total)
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or_else(|| self.http.protocol("the employee list has no total"))?;
        let items = page
            .data
            .iter()
            .map(|item| {
                Some(Item {
                    id: item.get("id").and_then(id_text)?,
                    number: item.get("number").and_then(id_text).unwrap_or_default(),
                    disabled: item.get("disabled").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect::<Option<Vec<Item>>>()
            .ok_or_else(|| self.http.protocol("an employee in the list has no id"))?;
        Ok((items, total))
    }

    /// The full record of an employee; `None` when there is none with this id.
    async fn get(&self, id: &str) -> Result<Option<Map<String, Value>>, Error> {
        if !is_id(id) {
            return Ok(None);
        }
        let url = self.http.url(&format!("{EMPLOYEES}/{id}"));
        let reply = self.call(Retry::Idempotent, &[], |c| c.get(&url)).await?;
        match self.data(&reply, Target::Record(id)) {
            Ok(Value::Object(record)) => Ok(Some(record)),
            Ok(_) => Err(self.http.protocol("an employee record that is not an object")),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn account(&self, item: Item) -> Result<Option<Account>, Error> {
        let Some(record) = self.get(&item.id).await? else {
            return Ok(None);
        };
        account_of(item.id, &record, Some(!item.disabled)).map(Some).map_err(|e| self.http.protocol(&e))
    }

    /// A write's answer (the saved record) as an account.
    fn saved(&self, data: Value, enabled: Option<bool>) -> Result<Account, Error> {
        let Value::Object(record) = data else {
            return Err(self.http.protocol("the PBX reported success without the saved employee"));
        };
        let id = record
            .get("id")
            .and_then(id_text)
            .ok_or_else(|| self.http.protocol("the saved employee has no id"))?;
        account_of(id, &record, enabled).map_err(|e| self.http.protocol(&e))
    }
}

/// Employee ids are `Users.id`, digits only; anything else would change the path.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

fn joined(messages: &Value) -> String {
    let list = error_messages(messages);
    if list.is_empty() {
        return "refused without a message".to_owned();
    }
    list.iter()
        .map(|(f, m)| match f {
            Some(f) => format!("{f}: {m}"),
            None => m.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Neutral values as v3 JSON (a boolean and an integer among the strings).
fn body_of(values: &[(&'static str, String)]) -> Result<Map<String, Value>, Error> {
    let mut body = Map::new();
    for (field, value) in values {
        let json = match *field {
            SIP_ENABLE_RECORDING => Value::Bool(value == "true"),
            FWD_RING_LENGTH => Value::from(value.parse::<i64>().map_err(|_| Error::Validation {
                system: BackendKind::Mikopbx,
                field: Some(FWD_RING_LENGTH.to_owned()),
                message: format!("{value:?} is not a number of seconds"),
            })?),
            _ => Value::String(value.clone()),
        };
        if *field == "mobile_number" {
            // The PBX dials the dial string; a stale one would keep calling the old mobile.
            body.insert("mobile_dialstring".into(), Value::String(value.clone()));
        }
        body.insert((*field).to_owned(), json);
    }
    Ok(body)
}

impl Backend for MikoPbxV3 {
    fn quota(&self) -> Option<super::super::Quota> {
        self.http.quota()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Mikopbx
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn desired(&self, employee: &EmployeeSpec, membership: &Membership) -> Result<Attributes, Error> {
        super::desired(Generation::V3, employee, membership)
    }

    fn generate_password(&self) -> Secret {
        generate_password()
    }

    async fn list(&self) -> Result<Listing, Error> {
        let limit = self.page_size.to_string();
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0usize;
        let mut total;
        loop {
            let at = offset.to_string();
            let (page, records) = self.items(&[("limit", &limit), ("offset", &at)]).await?;
            total = records;
            let got = page.len();
            for item in page {
                if seen.insert(item.id.clone()) {
                    items.push(item);
                }
            }
            offset += got;
            // A short page ends the list; the PBX caps `limit` at 1000, so a larger page
            // size shows up here as a short page and the total check below.
            if got == 0 || got < self.page_size || offset >= total {
                break;
            }
        }
        let complete = items.len() >= total;
        let accounts: Vec<Option<Account>> = stream::iter(items)
            .map(|item| self.account(item))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        Ok(Listing { accounts: accounts.into_iter().flatten().collect(), complete, ..Listing::default() })
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        let search = format!("number:{extension}");
        // Without limit/offset the PBX answers every match: at most one here.
        let (items, _) = self.items(&[("search", &search)]).await?;
        match items.into_iter().find(|i| i.number == extension) {
            Some(item) => self.account(item).await,
            None => Ok(None),
        }
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        let mut body = body_of(&create_values(desired)?)?;
        // v3 requires a secret on create; without one given, the account gets a strong
        // random one (as the legacy template would).
        let generated;
        let secret = match password {
            Some(p) => p,
            None => {
                generated = generate_password();
                &generated
            }
        };
        body.insert("sip_secret".into(), Value::String(secret.expose().to_owned()));
        let url = self.http.url(EMPLOYEES);
        let reply = self.call(Retry::Unsafe, &[secret], |c| c.post(&url).json(&body)).await?;
        let data = self.data(&reply, Target::Collection)?;
        self.saved(data, Some(true))
    }

    async fn update(
        &self,
        account: &Account,
        desired: &Desired,
        changes: &[Change],
        password: Option<&Secret>,
    ) -> Result<(), Error> {
        if !is_id(&account.id) {
            return Err(self.http.not_found(&account.id));
        }
        let values = planned_values(desired, changes)?;
        let mut body = body_of(&values)?;
        if let Some(password) = password {
            body.insert("sip_secret".into(), Value::String(password.expose().to_owned()));
        }
        if body.is_empty() {
            return Ok(());
        }
        // PATCH merges into the stored record, except that a forwarding target sent
        // without a ring length resets the ring length to 45: send the one we know.
        if body.contains_key(FWD_FORWARDING)
            && !body.contains_key(FWD_RING_LENGTH)
            && let Some(ring) =
                account.attributes.settings.get(FWD_RING_LENGTH).and_then(|r| r.parse::<i64>().ok())
        {
            body.insert(FWD_RING_LENGTH.to_owned(), Value::from(ring));
        }
        let url = self.http.url(&format!("{EMPLOYEES}/{}", account.id));
        let secrets: Vec<&Secret> = password.into_iter().collect();
        // The same PATCH twice leaves the same record: safe to retry.
        let reply = self.call(Retry::Idempotent, &secrets, |c| c.patch(&url).json(&body)).await?;
        self.data(&reply, Target::Record(&account.id)).map(|_| ())
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        if !is_id(&account.id) {
            // No such employee can exist (ids are `[0-9]+`); never put it in a path.
            return Ok(());
        }
        let url = self.http.url(&format!("{EMPLOYEES}/{}", account.id));
        let reply = self.call(Retry::Idempotent, &[], |c| c.delete(&url)).await?;
        match self.data(&reply, Target::Record(&account.id)) {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
