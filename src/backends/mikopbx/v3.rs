//! The REST API v3 (MikoPBX 2026.1 and later): `/pbxcore/api/v3/employees`. Per call:
//! `docs/compatibility.md`, MikoPBX.
//!
//! A PATCH is merged into the stored record and the merged record validated as a whole
//! (`PatchRecordAction::intelligentMerge`, then `SaveRecordAction`), the stored SIP
//! password included. A record whose stored password MikoPBX's own rule refuses today
//! (accounts made by the legacy API, or by hand, before that rule) takes no change
//! unless the change brings a new password. So switchboard checks the stored password
//! (read with the record in every listing) before it sends a change without one, and
//! says what to do instead of sending a PATCH that must fail; and a PATCH refused for a
//! reason it cannot tell in advance is not sent again while neither the stored record
//! nor the change has changed.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex as SyncMutex,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{Client, RequestBuilder, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::{
    FWD_FORWARDING, FWD_RING_LENGTH, Generation, SIP_ENABLE_RECORDING, V3_PAGE_SIZE, account_of, admin_login,
    capabilities, check_generation, create_values,
    detail::{self, Detail, Listed},
    error_messages, id_text, joined, parse, password, planned_values, strip_tags, trusted_loopback,
};
use crate::{
    api::{
        BackendKind, EmployeeSpec, Membership,
        phone_system::{MikoPbx, MikoPbxApiGeneration},
    },
    backends::{
        Backend, Credentials, Error, Listing, Probe, Secret, Unreadable,
        http::{self, Http, Reply, Retry},
        lenient,
        paging::{Next, Pager},
        resync::{self, Details, Reading},
    },
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

const EMPLOYEES: &str = "/pbxcore/api/v3/employees";
const AVAILABLE: &str = "/pbxcore/api/v3/extensions:available";
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

/// A list item: its id, number and state, and what else it shows of the fields lists
/// carry (the rest comes with the full record).
#[derive(Deserialize)]
struct Item {
    #[serde(deserialize_with = "lenient::text_required")]
    id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    number: Option<String>,
    #[serde(default, deserialize_with = "lenient::flag")]
    disabled: Option<bool>,
    #[serde(skip)]
    listed: Option<Listed>,
    /// The item as sent, digested: a changed item means a changed record.
    #[serde(skip)]
    digest: u64,
}

/// What a PATCH without a new password depends on of the stored record.
#[derive(Clone, Debug)]
struct Stored {
    /// A hash of the whole record: a PATCH refused for it is not sent again until it (or
    /// the PATCH) changes.
    fingerprint: u64,
    /// Why MikoPBX's own rule refuses the stored SIP password, if it does.
    weak_secret: Option<String>,
    ring_length: Option<i64>,
}

impl Stored {
    fn of(record: &Map<String, Value>) -> Stored {
        let weak_secret = record
            .get("sip_secret")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .and_then(password::refusal);
        let ring_length = record.get(FWD_RING_LENGTH).and_then(id_text).and_then(|r| r.trim().parse().ok());
        Stored { fingerprint: record_fingerprint(record), weak_secret, ring_length }
    }
}

/// A PATCH the PBX refused, and the record and body it refused.
#[derive(Clone, Debug)]
struct Refused {
    record: u64,
    body: u64,
    error: Error,
}

/// MikoPBX 2026.1 and later through `/pbxcore/api/v3/employees`.
#[derive(Debug)]
pub struct MikoPbxV3 {
    http: Http,
    auth: Auth,
    /// The JWT in use and when to renew it; the lock makes concurrent requests log in
    /// once.
    token: Mutex<Option<(Secret, Instant)>>,
    /// What each record held that no list carries, by employee id.
    details: Details<Detail>,
    /// By employee id.
    refused: SyncMutex<HashMap<String, Refused>>,
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
            (None, None) if trusted_loopback(&block.url, Generation::V3) => Auth::None,
            (None, None) => return Err(Error::Credentials { key: "apiKey" }),
        };
        let concurrency = settings.max_concurrency.max(1);
        let http = Http::new(BackendKind::Mikopbx, &block.url, settings, credentials.values())?;
        Ok(MikoPbxV3 {
            http,
            auth,
            token: Mutex::new(None),
            details: Details::new(resync::DEFAULT_REFRESH),
            refused: SyncMutex::new(HashMap::new()),
            caps: capabilities(),
            page_size: V3_PAGE_SIZE,
            concurrency,
        })
    }

    /// Employees per list page (tests use small pages to cross page boundaries).
    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// How long a record's read stands for it (`detailRefreshInterval`).
    pub fn with_detail_refresh(mut self, max_age: Duration) -> Self {
        self.details = Details::new(max_age);
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
                    Ok(e) => joined(&e.messages),
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
            #[serde(rename = "expiresIn", default, deserialize_with = "lenient::text")]
            expires_in: Option<String>,
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
        let seconds = answer.data.expires_in.and_then(|s| s.parse::<u64>().ok()).unwrap_or(900);
        Ok((Secret::new(answer.data.access_token), Duration::from_secs(seconds)))
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

    /// The `data` of a successful answer, or what the answer says went wrong: `Ok(Err)`
    /// for a refusal with its messages (HTTP 400/409/422 or `result: false`), to be
    /// read by the caller, who knows what it sent.
    fn data(&self, reply: &Reply, target: Target<'_>) -> Result<Result<Value, Refusal>, Error> {
        match reply.status {
            StatusCode::OK | StatusCode::CREATED => {
                let envelope: Envelope = parse(&self.http, reply)?;
                Ok(match envelope.result {
                    true => Ok(envelope.data),
                    false => Err(Refusal { status: reply.status, messages: envelope.messages }),
                })
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
            status @ (StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY) => {
                let envelope: Envelope = parse(&self.http, reply)?;
                Ok(Err(Refusal { status, messages: envelope.messages }))
            }
            status => Err(self.http.protocol(&format!(
                "HTTP {}: {}",
                status.as_u16(),
                self.http.snippet(&reply.body)
            ))),
        }
    }

    // --- reads -------------------------------------------------------------------------

    /// One list page: its items, read one by one (an unreadable one is reported, not
    /// fatal), the total the PBX announces, and the page's shape.
    async fn page(
        &self,
        query: &[(&str, &str)],
    ) -> Result<(Vec<Result<Item, Unreadable>>, Option<usize>, String), Error> {
        let url = self.http.url(EMPLOYEES);
        let reply = self.call(Retry::Idempotent, &[], |c| c.get(&url).query(query)).await?;
        let data = match self.data(&reply, Target::Collection)? {
            Ok(data) => data,
            Err(refusal) => {
                return Err(self
                    .http
                    .protocol(&format!("the employee list was refused: {}", joined(&refusal.messages))));
            }
        };
        let body = serde_json::to_vec(&data).unwrap_or_default();
        let records = lenient::records(&body, &["data"])
            .map_err(|e| self.http.protocol(&format!("the employee list: {e}")))?;
        let total = ["recordsTotal", "recordsFiltered", "total", "count"]
            .iter()
            .find_map(|k| data.get(*k).and_then(id_text))
            .and_then(|t| t.parse::<usize>().ok());
        let items = records
            .items
            .iter()
            .map(|(key, raw)| {
                let mut item = lenient::read::<Item>(raw)
                    .map_err(|p| lenient::unreadable(raw, key.as_deref(), &["id"], &["number"], p))?;
                item.listed = Listed::read(raw, Generation::V3);
                item.digest = resync::digest(raw.get());
                Ok(item)
            })
            .collect();
        Ok((items, total, records.shape))
    }

    /// The full record of an employee; `None` when there is none with this id (404, or
    /// the 422 2026.1 answers a GET of an unknown id).
    async fn get(&self, id: &str) -> Result<Option<Map<String, Value>>, Error> {
        if !is_id(id) {
            return Ok(None);
        }
        let url = self.http.url(&format!("{EMPLOYEES}/{id}"));
        let reply = self.call(Retry::Idempotent, &[], |c| c.get(&url)).await?;
        match self.data(&reply, Target::Record(id)) {
            Ok(Ok(Value::Object(record))) => Ok(Some(record)),
            Ok(Ok(_)) => Err(self.http.protocol("an employee record that is not an object")),
            Ok(Err(_)) | Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The record of a listed item as an account (and what it holds remembered);
    /// `None` when it vanished meanwhile.
    async fn account(&self, item: Item) -> Result<Option<Result<Account, Unreadable>>, Error> {
        let Some(record) = self.get(&item.id).await? else {
            self.details.forget(&item.id);
            return Ok(None);
        };
        self.remember(&item.id, &record, Some(item.digest));
        let enabled = Some(!item.disabled.unwrap_or(false));
        Ok(Some(account_of(item.id.clone(), &record, enabled).map_err(|problem| Unreadable {
            id: Some(item.id),
            extension: item.number,
            problem,
        })))
    }

    /// The account of a listed item without reading its record, where the item and what
    /// is remembered of the record hold every field the pass needs (the item is then
    /// spent); `None`: its record must be read.
    fn listed_account(&self, item: &mut Item, reading: Reading) -> Option<Account> {
        // Taken either way: an item whose record is read needs no more of it.
        let listed = item.listed.take()?;
        let detail = match reading {
            Reading::Never => None,
            Reading::WhenStale => Some(self.details.lookup(&item.id, item.digest)?),
            Reading::Always => return None,
        };
        let number = item.number.clone().filter(|n| !n.is_empty())?;
        let enabled = !item.disabled.unwrap_or(false);
        let mut account = listed.account(std::mem::take(&mut item.id), number, enabled, Generation::V3);
        if let Some(detail) = detail {
            detail.fill(&mut account);
        }
        Some(account)
    }

    /// Remembers what `record` holds, with the list item it was listed with (`None`: a
    /// write's answer); a record that cannot be read is forgotten, so that its next
    /// listing reads it again.
    fn remember(&self, id: &str, record: &Map<String, Value>, listed: Option<u64>) {
        match account_of(id.to_owned(), record, None) {
            Ok(account) => {
                let stored = Stored::of(record);
                let mut detail = Detail::of(&account, Generation::V3);
                detail.fingerprint = stored.fingerprint;
                detail.weak_secret = stored.weak_secret.map(Into::into);
                self.details.store(id, listed, detail);
            }
            Err(_) => self.details.forget(id),
        }
    }

    /// Remembers what a write's answer holds, when it is the whole record; otherwise the
    /// next pass that needs the record reads it.
    fn remember_answer(&self, id: &str, record: &Map<String, Value>) {
        if Detail::answered(record, Generation::V3) {
            self.remember(id, record, None);
        } else {
            self.details.forget(id);
        }
    }

    /// What a PATCH of `id` depends on, as the PBX holds it now: read with this pass's
    /// listing, or read now (a remembered copy may be older than a hand edit). `None`
    /// when the employee is gone.
    async fn stored(&self, id: &str) -> Result<Option<Stored>, Error> {
        if let Some(detail) = self.details.read_this_pass(id) {
            return Ok(Some(Stored {
                fingerprint: detail.fingerprint,
                weak_secret: detail.weak_secret.as_deref().map(str::to_owned),
                ring_length: Some(detail.ring_length()),
            }));
        }
        let Some(record) = self.get(id).await? else {
            self.details.forget(id);
            return Ok(None);
        };
        self.remember(id, &record, None);
        Ok(Some(Stored::of(&record)))
    }

    /// Who holds `number` (`POST …/extensions:available`): `Some(holder)` when taken,
    /// `None` when free or when the PBX cannot say.
    async fn holder(&self, number: &str) -> Result<Option<(Option<String>, String)>, Error> {
        if number.is_empty() {
            return Ok(None);
        }
        let url = self.http.url(AVAILABLE);
        let body = serde_json::json!({"number": number});
        let reply = self.call(Retry::Idempotent, &[], |c| c.post(&url).json(&body)).await?;
        let data = match self.data(&reply, Target::Collection) {
            Ok(Ok(data)) => data,
            // An older 2025 build without the call, or a refusal: no answer either way.
            Ok(Err(_)) | Err(Error::Config(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let available = match data.get("available") {
            Some(Value::Bool(b)) => *b,
            Some(v) => id_text(v).is_none_or(|t| t == "1" || t == "true"),
            None => true,
        };
        Ok((!available).then(|| {
            let represent = data.get("represent").and_then(Value::as_str).unwrap_or("another number");
            (data.get("userId").and_then(id_text), strip_tags(represent))
        }))
    }

    /// A refused write, read by what the PBX holds and by MikoPBX's own rules rather than
    /// by its messages, which are translated into its admin UI's language: the number held
    /// by another is a conflict; the mobile held by another, or a value (sent, or stored
    /// and merged in by a PATCH) that MikoPBX's rules refuse, names its field.
    async fn refusal(&self, refusal: Refusal, own: Option<&str>, body: &Map<String, Value>) -> Error {
        let text = joined(&refusal.messages);
        let sent = |k: &str| body.get(k).and_then(id_text).filter(|v| !v.is_empty());
        let theirs = |user: &Option<String>| own.is_none() || user.as_deref() != own;
        if refusal.status == StatusCode::CONFLICT {
            return self.http.conflict(&text);
        }
        // Worth retrying later: the maintainers' own test client retries these.
        if ["database is locked", "worker not responding"].iter().any(|m| text.contains(m)) {
            return self.http.transient(&text);
        }
        if let Some(number) = sent("number") {
            match self.holder(&number).await {
                Ok(Some((user, represent))) if theirs(&user) => {
                    return self
                        .http
                        .conflict(&format!("extension {number} is taken by {represent} ({text})"));
                }
                Err(e) => return e,
                _ => {}
            }
        }
        if let Some(mobile) = sent("mobile_number") {
            match self.holder(&mobile).await {
                Ok(Some((user, represent))) if theirs(&user) => {
                    return self.http.validation(
                        Some("mobile_number"),
                        &format!("mobile number {mobile} is taken by {represent} ({text})"),
                    );
                }
                Err(e) => return e,
                _ => {}
            }
        }
        if let Some(why) = sent("sip_secret").and_then(|s| password::refusal(&s)) {
            return self.http.validation(Some("sip_secret"), &format!("the SIP password is {why} ({text})"));
        }
        if let Some(id) = own
            && sent("sip_secret").is_none()
        {
            // A PATCH: the stored record was validated with it. Look at the stored password.
            match self.get(id).await {
                Ok(Some(record)) => {
                    self.remember(id, &record, None);
                    if let Some(why) = Stored::of(&record).weak_secret {
                        return weak_stored(&self.http, &why, &text);
                    }
                }
                Ok(None) => return self.http.not_found(id),
                Err(e) => return e,
            }
        }
        // Required fields come keyed by field (`{"number": "ex_ValidateNumberIsEmpty"}`).
        let field = error_messages(&refusal.messages).into_iter().find_map(|(f, _)| f);
        self.http.validation(field.as_deref(), &text)
    }

    /// Each listed item's account, reading its record where `reading` and what is
    /// remembered of it ask for (`maxConcurrency` at a time); and how many were read.
    async fn accounts(
        &self,
        items: Vec<Item>,
        reading: Reading,
    ) -> Result<(Vec<Account>, Vec<Unreadable>, usize), Error> {
        let mut accounts = Vec::with_capacity(items.len());
        let mut to_read = Vec::new();
        for mut item in items {
            match self.listed_account(&mut item, reading) {
                Some(account) => accounts.push(account),
                None => to_read.push(item),
            }
        }
        let records = to_read.len();
        let read: Vec<Option<Result<Account, Unreadable>>> = stream::iter(to_read)
            .map(|item| self.account(item))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let mut unreadable = Vec::new();
        for entry in read.into_iter().flatten() {
            match entry {
                Ok(a) => accounts.push(a),
                Err(u) => unreadable.push(u),
            }
        }
        Ok((accounts, unreadable, records))
    }

    /// Pages ordered by number (unique; the default order, by name, can tie across pages),
    /// read until a page brings nothing new or the announced total is reached; each
    /// record read as `reading` says.
    async fn listing(&self, reading: Reading) -> Result<Listing, Error> {
        self.details.begin();
        let limit = self.page_size.to_string();
        let mut pager = Pager::new(Some(self.page_size));
        let mut items = Vec::new();
        let mut seen_here = HashSet::new();
        let mut unreadable = Vec::new();
        let mut offset = 0usize;
        let mut shape = String::new();
        let mut announced = None;
        let mut next = Next::More;
        while next == Next::More {
            let at = offset.to_string();
            let query = [("limit", limit.as_str()), ("offset", at.as_str()), ("order_by", "number")];
            let (page, total, page_shape) = self.page(&query).await?;
            shape = page_shape;
            announced = total.or(announced);
            offset += page.len();
            let mut keys = Vec::with_capacity(page.len());
            for entry in page {
                match entry {
                    Ok(item) => {
                        keys.push(item.id.clone());
                        if !pager.seen(&item.id) && seen_here.insert(item.id.clone()) {
                            items.push(item);
                        }
                    }
                    Err(u) => {
                        let key = format!("unreadable {u}");
                        if !pager.seen(&key) {
                            unreadable.push(u);
                        }
                        keys.push(key);
                    }
                }
            }
            next = pager.page(keys);
            if announced.is_some_and(|t| pager.distinct() >= t) {
                break;
            }
        }
        drop(seen_here);
        let complete = next != Next::GaveUp && announced.is_none_or(|t| pager.distinct() >= t);
        let pages = pager.into_pages();
        let listed = items.len();
        let (accounts, more, records) = self.accounts(items, reading).await?;
        unreadable.extend(more);
        if complete {
            let mut ids: HashSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
            ids.extend(unreadable.iter().filter_map(|u| u.id.as_deref()));
            self.details.retain(&ids);
        }
        let dialect = vec![
            ("API generation", "v3 (2026.1)".to_owned()),
            ("list shape", shape),
            ("records read", format!("{records} of {listed}")),
        ];
        Ok(Listing { accounts, complete, unreadable, pages, dialect })
    }
}

/// A refusal's status and messages.
struct Refusal {
    status: StatusCode,
    messages: Value,
}

/// The error of a change refused for the stored SIP password: what to fix.
fn weak_stored(http: &Http, why: &str, pbx: &str) -> Error {
    http.validation(
        Some("sip_secret"),
        &format!(
            "MikoPBX checks the whole stored record on every change, and the SIP password it holds for this \
             account is {why}, so it takes no change that does not bring a new password: give the Employee a \
             passwordSecretRef with a strong password (switchboard sends it with the change), or set a strong \
             password on the PBX{}",
            if pbx.is_empty() { String::new() } else { format!(" (PBX: {pbx})") }
        ),
    )
}

fn fingerprint<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn record_fingerprint(record: &Map<String, Value>) -> u64 {
    fingerprint(&serde_json::to_string(record).unwrap_or_default())
}

/// Employee ids are `Users.id`, digits only; anything else would change the path.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
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
    fn quota(&self) -> Option<crate::backends::Quota> {
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
        password::generate()
    }

    async fn list(&self) -> Result<Listing, Error> {
        self.listing(Reading::Always).await
    }

    async fn list_for(&self, declared: &BTreeSet<Field>) -> Result<Listing, Error> {
        self.listing(detail::reading(Generation::V3, declared)).await
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        let search = format!("number:{extension}");
        // Without limit/offset the PBX answers every match: at most one here.
        let (items, _, _) = self.page(&[("search", &search)]).await?;
        let item = items.into_iter().flatten().find(|i| i.number.as_deref() == Some(extension));
        match item {
            Some(item) => match self.account(item).await? {
                Some(Ok(account)) => Ok(Some(account)),
                Some(Err(u)) => Err(self.http.protocol(&u.to_string())),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Lists as a pass does, then reads the first account again by its id.
    async fn probe(&self) -> Result<Probe, Error> {
        let listing = self.listing(Reading::Always).await?;
        let sample = match listing.accounts.first() {
            Some(first) => Some(match self.get(&first.id).await {
                Ok(Some(record)) => account_of(first.id.clone(), &record, first.attributes.enabled)
                    .map(Some)
                    .map_err(|e| self.http.protocol(&e)),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }),
            None => None,
        };
        Ok(Probe { listing, sample })
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        let mut body = body_of(&create_values(desired)?)?;
        // v3 requires a secret on create; without one given, the account gets a strong
        // random one (as the legacy template would).
        let generated;
        let secret = match password {
            Some(p) => p,
            None => {
                generated = password::generate();
                &generated
            }
        };
        body.insert("sip_secret".into(), Value::String(secret.expose().to_owned()));
        let url = self.http.url(EMPLOYEES);
        let reply = self.call(Retry::Unsafe, &[secret], |c| c.post(&url).json(&body)).await?;
        match self.data(&reply, Target::Collection)? {
            Ok(Value::Object(record)) => {
                let id = record
                    .get("id")
                    .and_then(id_text)
                    .ok_or_else(|| self.http.protocol("the saved employee has no id"))?;
                // The code answers the record as saved; an answer that is not (an id
                // alone) is read back, once, rather than taken for blank fields.
                let record = if Detail::answered(&record, Generation::V3) {
                    record
                } else {
                    self.get(&id)
                        .await?
                        .ok_or_else(|| self.http.protocol("the created employee cannot be read"))?
                };
                self.remember(&id, &record, None);
                account_of(id, &record, Some(true)).map_err(|e| self.http.protocol(&e))
            }
            Ok(_) => Err(self.http.protocol("the PBX reported success without the saved employee")),
            Err(refusal) => Err(self.refusal(refusal, None, &body).await),
        }
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
        let id = account.id.as_str();
        let Some(stored) = self.stored(id).await? else {
            return Err(self.http.not_found(id));
        };
        // PATCH merges into the stored record, except that a forwarding target sent
        // without a ring length resets the ring length to 45: send the one it holds.
        if body.contains_key(FWD_FORWARDING)
            && !body.contains_key(FWD_RING_LENGTH)
            && let Some(ring) = stored.ring_length
        {
            body.insert(FWD_RING_LENGTH.to_owned(), Value::from(ring));
        }
        if !body.contains_key("sip_secret")
            && let Some(why) = stored.weak_secret.as_deref()
        {
            // The merged record keeps the stored password, which MikoPBX would refuse.
            return Err(weak_stored(&self.http, why, ""));
        }
        let body_hash = record_fingerprint(&body);
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        if let Some(r) = refused.filter(|r| r.record == stored.fingerprint && r.body == body_hash) {
            // Refused before, and neither the stored record nor the change differs.
            return Err(r.error);
        }
        let url = self.http.url(&format!("{EMPLOYEES}/{id}"));
        let secrets: Vec<&Secret> = password.into_iter().collect();
        // The same PATCH twice leaves the same record: safe to retry.
        let reply = self.call(Retry::Idempotent, &secrets, |c| c.patch(&url).json(&body)).await?;
        match self.data(&reply, Target::Record(id)) {
            Ok(Ok(data)) => {
                self.refused.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                // The PBX answers the record as saved [code: `PatchRecordAction.php`,
                // through `SaveRecordAction::main`, 2026.1.223].
                match data {
                    Value::Object(record) => self.remember_answer(id, &record),
                    _ => self.details.forget(id),
                }
                Ok(())
            }
            Ok(Err(refusal)) => {
                let error = self.refusal(refusal, Some(id), &body).await;
                if let Error::Validation { .. } = &error {
                    let entry = Refused { record: stored.fingerprint, body: body_hash, error: error.clone() };
                    self.refused.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), entry);
                }
                Err(error)
            }
            Err(e) => {
                self.details.forget(id);
                Err(e)
            }
        }
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        if !is_id(&account.id) {
            // No such employee can exist (ids are `[0-9]+`); never put it in a path.
            return Ok(());
        }
        self.details.forget(&account.id);
        let url = self.http.url(&format!("{EMPLOYEES}/{}", account.id));
        let reply = self.call(Retry::Idempotent, &[], |c| c.delete(&url)).await?;
        match self.data(&reply, Target::Record(&account.id)) {
            Ok(Ok(_)) | Err(Error::NotFound { .. }) => Ok(()),
            Ok(Err(refusal)) => {
                // Gone already (2026.1 answers an unknown id 422), or refused while
                // something refers to the number: asked of the PBX, not read from words.
                match self.get(&account.id).await? {
                    None => Ok(()),
                    Some(_) => Err(self.http.validation(None, &joined(&refusal.messages))),
                }
            }
            Err(e) => Err(e),
        }
    }
}
