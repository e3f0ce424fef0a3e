//! The legacy API (MikoPBX 2023.2 / 2024.1): `/pbxcore/api/extensions/*` and the admin
//! session. See the parent module for the endpoints and the capability table.

use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{Client, RequestBuilder, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, OnceCell};

use super::{
    DEFAULT_PAGE_SIZE, FWD_FORWARDING, FWD_FORWARDING_ON_BUSY, FWD_FORWARDING_ON_UNAVAILABLE, Generation,
    SIP_ENABLE_RECORDING, account_of, admin_login, capabilities, check_generation, create_values,
    error_messages, field_of, generate_password, id_text, is_duplicate, is_loopback, parse, planned_values,
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

const GET_RECORD: &str = "/pbxcore/api/extensions/getRecord";
const SAVE_RECORD: &str = "/pbxcore/api/extensions/saveRecord";
const DELETE_RECORD: &str = "/pbxcore/api/extensions/deleteRecord";
const SESSION_START: &str = "/admin-cabinet/session/start";
const TABLE: &str = "/admin-cabinet/extensions/getNewRecords";
const SESSION_COOKIE: &str = "PHPSESSID";
/// The admin UI answers JSON instead of HTML only to XHR requests.
const XHR: (&str, &str) = ("X-Requested-With", "XMLHttpRequest");

/// Which part of the PBX a request goes to: `/pbxcore` trusts loopback callers, the admin
/// UI never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Area {
    Core,
    Admin,
}

/// The legacy `/pbxcore` answer.
#[derive(Deserialize)]
struct Envelope {
    result: bool,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    messages: Value,
}

/// A row of the admin table: the only place that maps numbers to `Extensions.id`.
struct Row {
    id: String,
    number: String,
    disabled: bool,
}

/// MikoPBX 2023.2 / 2024.1 through `/pbxcore/api/extensions/*`.
#[derive(Debug)]
pub struct MikoPbxLegacy {
    http: Http,
    /// `username`, `password` of the admin (or an "employee rights" module user).
    login: Option<(Secret, Secret)>,
    /// The `PHPSESSID` in use; the lock also makes concurrent requests that find the
    /// session expired log in once, not once each.
    session: Mutex<Option<Secret>>,
    /// See [`MikoPbxLegacy::template`].
    template: OnceCell<Map<String, Value>>,
    caps: Capabilities,
    page_size: usize,
    concurrency: usize,
}

impl MikoPbxLegacy {
    pub fn new(block: &MikoPbx, credentials: &Credentials, settings: http::Settings) -> Result<Self, Error> {
        check_generation(block, MikoPbxApiGeneration::Legacy)?;
        let login = admin_login(credentials)?;
        if login.is_none() && !is_loopback(&block.url) {
            return Err(Error::Credentials { key: "username" });
        }
        let concurrency = settings.max_concurrency.max(1);
        let http = Http::new(BackendKind::Mikopbx, &block.url, settings, credentials.values())?;
        Ok(MikoPbxLegacy {
            http,
            login,
            session: Mutex::new(None),
            template: OnceCell::new(),
            caps: capabilities(),
            page_size: DEFAULT_PAGE_SIZE,
            concurrency,
        })
    }

    /// Rows per admin-table page (tests use small pages to cross page boundaries).
    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    // --- session ---------------------------------------------------------------------

    async fn session(&self) -> Result<Secret, Error> {
        // The admin table needs a session even where `/pbxcore` trusts loopback.
        let Some((username, password)) = &self.login else {
            return Err(Error::Credentials { key: "username" });
        };
        let mut held = self.session.lock().await;
        if let Some(session) = held.as_ref() {
            return Ok(session.clone());
        }
        let session = self.log_in(username, password).await?;
        *held = Some(session.clone());
        Ok(session)
    }

    /// Drops `used` unless another request already replaced it.
    async fn forget(&self, used: &Secret) {
        let mut held = self.session.lock().await;
        if held.as_ref() == Some(used) {
            *held = None;
        }
    }

    async fn log_in(&self, username: &Secret, password: &Secret) -> Result<Secret, Error> {
        let url = self.http.url(SESSION_START);
        let reply = self
            .http
            .send(Retry::Idempotent, &[], |c| {
                c.post(&url)
                    .header(XHR.0, XHR.1)
                    .form(&[("login", username.expose()), ("password", password.expose())])
            })
            .await?;
        if reply.status != StatusCode::OK {
            return Err(self.http.protocol(&format!(
                "admin login answered HTTP {}: {}",
                reply.status.as_u16(),
                self.http.snippet(&reply.body)
            )));
        }
        #[derive(Deserialize)]
        struct Answer {
            success: bool,
            #[serde(default)]
            message: Value,
        }
        let answer: Answer = self.http.json(&reply)?;
        if !answer.success {
            let why = match answer.message {
                Value::String(s) => s,
                Value::Null => "no reason given".to_owned(),
                other => other.to_string(),
            };
            return Err(self.http.auth(&format!("admin login refused: {why}")));
        }
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
            .map(Secret::new)
            .ok_or_else(|| self.http.protocol("admin login succeeded without a session cookie"))
    }

    /// Sends a request with the session when one is needed, logging in again once if the
    /// PBX says the session is gone (idle expiry, restart).
    async fn call(
        &self,
        area: Area,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder + Send + Sync,
    ) -> Result<Reply, Error> {
        let mut renewed = false;
        loop {
            let session = match area {
                Area::Core if self.login.is_none() => None,
                _ => Some(self.session().await?),
            };
            let mut all = secrets.to_vec();
            all.extend(session.as_ref());
            let reply = self
                .http
                .send(retry, &all, |c| match &session {
                    Some(s) => build(c).header(header::COOKIE, format!("{SESSION_COOKIE}={}", s.expose())),
                    None => build(c),
                })
                .await?;
            let refused = match area {
                Area::Core => reply.status == StatusCode::UNAUTHORIZED,
                // The admin UI answers a lost session with 403 (XHR) or a redirect.
                Area::Admin => {
                    matches!(reply.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                        || reply.status.is_redirection()
                }
            };
            match session {
                Some(used) if refused && !renewed => {
                    self.forget(&used).await;
                    renewed = true;
                }
                _ => return Ok(reply),
            }
        }
    }

    // --- /pbxcore ----------------------------------------------------------------------

    fn envelope(&self, reply: &Reply) -> Result<Envelope, Error> {
        match reply.status {
            StatusCode::OK => parse(&self.http, reply),
            StatusCode::UNAUTHORIZED if self.login.is_none() => Err(self.http.auth(
                "the PBX does not see this client as local: add username and password to the credentials",
            )),
            StatusCode::UNAUTHORIZED => Err(self.http.auth("a fresh admin session was refused (HTTP 401)")),
            StatusCode::FORBIDDEN => Err(self.http.auth("this login may not call the action (HTTP 403)")),
            StatusCode::NOT_FOUND => Err(Error::Config(format!(
                "mikopbx: no legacy API at {}: MikoPBX 2025 and later speak v3 (apiGeneration: v3)",
                self.http.url("")
            ))),
            status => Err(self.http.protocol(&format!(
                "HTTP {}: {}",
                status.as_u16(),
                self.http.snippet(&reply.body)
            ))),
        }
    }

    /// `result:false`, mapped: a taken extension is a conflict (a taken mobile number is
    /// the mobile's validation error), anything else a validation error with the PBX's
    /// messages.
    fn refusal(&self, messages: &Value, mobile: Option<&str>) -> Error {
        let messages = error_messages(messages);
        let text = messages.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
        let text = if text.is_empty() { "refused without a message".to_owned() } else { text };
        if let Some((_, dup)) = messages.iter().find(|(_, m)| is_duplicate(m)) {
            // The message names the holder as `Name <number>`.
            let about_mobile = mobile.is_some_and(|m| !m.is_empty() && dup.contains(&format!("<{m}>")));
            if !about_mobile {
                return self.http.conflict(&text);
            }
            return self.http.validation(Some("mobile_number"), &text);
        }
        let field = messages.iter().find_map(|(f, m)| f.clone().or_else(|| field_of(m)));
        self.http.validation(field.as_deref(), &text)
    }

    /// The record with this `Extensions.id`, or `None` when the PBX answered its
    /// template (what it does for unknown ids).
    async fn get_record(&self, id: &str) -> Result<Option<Map<String, Value>>, Error> {
        let url = self.http.url(GET_RECORD);
        let reply =
            self.call(Area::Core, Retry::Idempotent, &[], |c| c.get(&url).query(&[("id", id)])).await?;
        let envelope = self.envelope(&reply)?;
        if !envelope.result {
            return Err(self.refusal(&envelope.messages, None));
        }
        let Value::Object(record) = envelope.data else {
            return Err(self.http.protocol("getRecord answered data that is not a record"));
        };
        match record.get("id").and_then(id_text) {
            None => Ok(None),
            Some(found) if found == id => Ok(Some(record)),
            Some(found) => Err(self.http.protocol(&format!("getRecord for id {id} answered id {found}"))),
        }
    }

    /// The PBX's defaults for a new employee, read once per client: the vendor's flow reads
    /// a template before every save, which doubles the requests a create costs against a
    /// rate limit. Only the defaults are kept. The row keys (`sip_uniqid`, `mobile_uniqid`)
    /// and the random `sip_secret` are left out, so that `saveRecord` makes fresh ones for
    /// each employee (a shared `sip_uniqid` would make every create overwrite the same SIP
    /// peer); the suggested `number` is replaced by the Employee's anyway.
    async fn template(&self) -> Result<&Map<String, Value>, Error> {
        self.template
            .get_or_try_init(|| async {
                let url = self.http.url(GET_RECORD);
                let reply = self
                    .call(Area::Core, Retry::Idempotent, &[], |c| c.get(&url).query(&[("id", "")]))
                    .await?;
                let envelope = self.envelope(&reply)?;
                let Value::Object(mut record) = envelope.data else {
                    return Err(self.http.protocol("getRecord answered no template"));
                };
                let fresh = record.get("sip_uniqid").and_then(Value::as_str).is_some_and(|u| !u.is_empty());
                if !envelope.result || !fresh || record.get("id").and_then(id_text).is_some() {
                    return Err(self.http.protocol("getRecord answered no usable template"));
                }
                for key in ["id", "sip_uniqid", "mobile_uniqid", "sip_secret"] {
                    record.remove(key);
                }
                record.insert("user_id".into(), Value::String(String::new()));
                Ok(record)
            })
            .await
    }

    /// Sends a full record to `saveRecord`; returns the record as saved (with its id).
    async fn save(
        &self,
        retry: Retry,
        record: &Map<String, Value>,
        password: Option<&Secret>,
    ) -> Result<Map<String, Value>, Error> {
        let form: Vec<(String, String)> = record.iter().map(|(k, v)| (k.clone(), form_text(v))).collect();
        // The record's current secret travels too: keep it out of any error.
        let current = record.get("sip_secret").and_then(Value::as_str).map(Secret::new);
        let secrets: Vec<&Secret> = password.into_iter().chain(current.as_ref()).collect();
        let url = self.http.url(SAVE_RECORD);
        let reply = self.call(Area::Core, retry, &secrets, |c| c.post(&url).form(&form)).await?;
        let envelope = self.envelope(&reply)?;
        if !envelope.result {
            let mobile = record.get("mobile_number").and_then(Value::as_str);
            return Err(self.refusal(&envelope.messages, mobile));
        }
        match envelope.data {
            Value::Object(saved) if saved.get("id").and_then(id_text).is_some() => Ok(saved),
            _ => Err(self.http.protocol("saveRecord reported success without the saved record")),
        }
    }

    // --- admin table -------------------------------------------------------------------

    /// Every row of the admin table matching `search` (all rows for ""); `false` when
    /// fewer rows came than the table said it holds (it changed meanwhile). The first page
    /// says how many rows there are, so the others are read `maxConcurrency` at a time
    /// (one after the other, 10,000 rows were 100 round trips before the first record).
    async fn table(&self, search: &str) -> Result<(Vec<Row>, bool), Error> {
        let (first, mut total) = self.table_at(search, 0).await?;
        let full = first.len() >= self.page_size;
        let mut pages = vec![first];
        if full && self.page_size < total {
            let rest: Vec<_> = (1..)
                .map(|k| k * self.page_size)
                .take_while(|start| *start < total)
                .map(|start| self.table_at(search, start))
                .collect();
            let read: Vec<(Vec<Row>, usize)> =
                stream::iter(rest).buffered(self.concurrency).try_collect().await?;
            for (page, records) in read {
                // A table that grew meanwhile: the larger count, so the listing is incomplete.
                total = total.max(records);
                pages.push(page);
            }
        }
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        for row in pages.into_iter().flatten() {
            if seen.insert(row.id.clone()) {
                rows.push(row);
            }
        }
        let complete = rows.len() >= total;
        Ok((rows, complete))
    }

    /// One page of the admin table, from row `start`, and the rows it says match.
    async fn table_at(&self, search: &str, start: usize) -> Result<(Vec<Row>, usize), Error> {
        let url = self.http.url(TABLE);
        let length = self.page_size.to_string();
        let offset = start.to_string();
        let form = [
            ("draw", "1"),
            ("start", offset.as_str()),
            ("length", length.as_str()),
            ("search[value]", search),
            ("search[regex]", "false"),
            ("order[0][column]", "0"),
            ("order[0][dir]", "asc"),
            ("columns[0][data]", "number"),
        ];
        let reply = self
            .call(Area::Admin, Retry::Idempotent, &[], |c| c.post(&url).header(XHR.0, XHR.1).form(&form))
            .await?;
        self.table_page(&reply)
    }

    fn table_page(&self, reply: &Reply) -> Result<(Vec<Row>, usize), Error> {
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                // 2023.2 renders the list as HTML only: nothing maps numbers to ids.
                return Err(Error::Unsupported {
                    system: BackendKind::Mikopbx,
                    operation: "list employees with their ids before 2024.1 (no admin table endpoint)",
                });
            }
            status if status.is_redirection() || status == StatusCode::FORBIDDEN => {
                return Err(self.http.auth("the admin table refused a fresh session"));
            }
            status => {
                return Err(self.http.protocol(&format!(
                    "admin table answered HTTP {}: {}",
                    status.as_u16(),
                    self.http.snippet(&reply.body)
                )));
            }
        }
        #[derive(Deserialize)]
        struct Table {
            #[serde(rename = "recordsFiltered")]
            records_filtered: Value,
            data: Vec<Map<String, Value>>,
        }
        let table: Table = self.http.json(reply)?;
        let total = id_text(&table.records_filtered)
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or_else(|| self.http.protocol("admin table without a row count"))?;
        let rows = table
            .data
            .iter()
            .map(|row| {
                let id = row.get("id").and_then(id_text)?;
                let number = row.get("number").and_then(id_text).unwrap_or_default();
                let disabled = match row.get("disabled") {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => s == "1" || s == "true",
                    Some(Value::Number(n)) => n.as_i64() != Some(0),
                    _ => false,
                };
                Some(Row { id, number, disabled })
            })
            .collect::<Option<Vec<Row>>>()
            .ok_or_else(|| self.http.protocol("admin table row without an id"))?;
        Ok((rows, total))
    }

    /// The full record of a table row as an account; `None` when it vanished meanwhile.
    async fn account(&self, row: Row) -> Result<Option<Account>, Error> {
        let Some(record) = self.get_record(&row.id).await? else {
            return Ok(None);
        };
        account_of(row.id, &record, Some(!row.disabled)).map(Some).map_err(|e| self.http.protocol(&e))
    }
}

/// A record value as `$_POST` text.
fn form_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Writes neutral values into a legacy record.
fn apply(record: &mut Map<String, Value>, values: &[(&'static str, String)]) {
    for (field, value) in values {
        let text = match *field {
            SIP_ENABLE_RECORDING => if value == "true" { "1" } else { "0" }.to_owned(),
            _ => value.clone(),
        };
        if *field == "mobile_number" {
            // Otherwise the old dial string stays and calls still go to the old mobile
            // (the PBX copies the number only into an EMPTY dial string).
            record.insert("mobile_dialstring".into(), Value::String(text.clone()));
        }
        record.insert((*field).to_owned(), Value::String(text));
    }
}

const FORWARD_TARGETS: [&str; 3] = [FWD_FORWARDING, FWD_FORWARDING_ON_BUSY, FWD_FORWARDING_ON_UNAVAILABLE];

impl Backend for MikoPbxLegacy {
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
        super::desired(Generation::Legacy, employee, membership)
    }

    fn generate_password(&self) -> Secret {
        generate_password()
    }

    async fn list(&self) -> Result<Listing, Error> {
        let (rows, complete) = self.table("").await?;
        let accounts: Vec<Option<Account>> =
            stream::iter(rows).map(|row| self.account(row)).buffered(self.concurrency).try_collect().await?;
        Ok(Listing { accounts: accounts.into_iter().flatten().collect(), complete, ..Listing::default() })
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        let (rows, _) = self.table(extension).await?;
        match rows.into_iter().find(|r| r.number == extension) {
            Some(row) => self.account(row).await,
            None => Ok(None),
        }
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        let values = create_values(desired)?;
        let mut record = self.template().await?.clone();
        apply(&mut record, &values);
        if let Some(password) = password {
            record.insert("sip_secret".into(), Value::String(password.expose().to_owned()));
        }
        let saved = self.save(Retry::Unsafe, &record, password).await?;
        let id = saved.get("id").and_then(id_text).unwrap_or_default();
        // New SIP peers are enabled; the record does not say.
        account_of(id, &saved, Some(true)).map_err(|e| self.http.protocol(&e))
    }

    async fn update(
        &self,
        account: &Account,
        desired: &Desired,
        changes: &[Change],
        password: Option<&Secret>,
    ) -> Result<(), Error> {
        let values = planned_values(desired, changes)?;
        if values.is_empty() && password.is_none() {
            return Ok(());
        }
        // Read-modify-write of the whole record: saveRecord resets whatever is missing.
        let mut record =
            self.get_record(&account.id).await?.ok_or_else(|| self.http.not_found(&account.id))?;
        let current = record.get("number").and_then(id_text).unwrap_or_default();
        let moving = values.iter().any(|(field, value)| *field == "number" && *value != current);
        let forwards = FORWARD_TARGETS
            .iter()
            .any(|k| record.get(*k).and_then(Value::as_str).is_some_and(|t| !t.is_empty()));
        if moving && forwards {
            // saveRecord finds forwarding rights by the NEW number, so the old number's
            // row would stay behind, still forwarding, and refuse the deletion of every
            // account it forwards to. Empty it first; the move below writes the targets
            // again on the new number.
            let mut cleared = record.clone();
            for key in FORWARD_TARGETS {
                cleared.insert(key.to_owned(), Value::String(String::new()));
            }
            self.save(Retry::Idempotent, &cleared, None).await?;
        }
        apply(&mut record, &values);
        if let Some(password) = password {
            record.insert("sip_secret".into(), Value::String(password.expose().to_owned()));
        }
        // Repeating a save of the same full record changes nothing: safe to retry.
        self.save(Retry::Idempotent, &record, password).await.map(|_| ())
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        let url = self.http.url(DELETE_RECORD);
        let id = account.id.as_str();
        let reply =
            self.call(Area::Core, Retry::Idempotent, &[], |c| c.post(&url).form(&[("id", id)])).await?;
        let envelope = self.envelope(&reply)?;
        if envelope.result {
            return Ok(());
        }
        // "Extension with id <id> does not exist": gone already (perhaps by our own
        // earlier try whose answer was lost).
        let messages = error_messages(&envelope.messages);
        if messages.iter().any(|(_, m)| m.contains("does not exist")) {
            return Ok(());
        }
        // Refused while something refers to the number (another employee forwards to
        // it, a queue, a route): no field of ours is at fault.
        let text = messages.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ");
        Err(self.http.validation(None, &text))
    }
}
