//! The legacy API (MikoPBX 2023.2 / 2024.1): `/pbxcore/api/extensions/*`, and the admin
//! cabinet for what that API lacks (a list with ids, [`super::legacy_list`]; the session,
//! [`super::legacy_session`]). Per call: `docs/compatibility.md`, MikoPBX.

use std::sync::Mutex as SyncMutex;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, OnceCell};

use super::{
    DUPLICATE_KEY, FWD_FORWARDING, FWD_FORWARDING_ON_BUSY, FWD_FORWARDING_ON_UNAVAILABLE, Generation,
    SIP_ENABLE_RECORDING, TABLE_PAGE_SIZE, account_of, admin_login, capabilities, check_generation,
    create_values,
    detail::Detail,
    error_messages, id_text, joined,
    legacy_list::Lister,
    legacy_session::{Area, SessionState},
    parse, password, planned_values, strip_tags, trusted_loopback,
};
use crate::{
    api::{
        BackendKind, EmployeeSpec, Membership,
        phone_system::{MikoPbx, MikoPbxApiGeneration},
    },
    backends::{
        Backend, Credentials, Error, Listing, Probe, Secret,
        http::{self, Http, Reply, Retry},
        resync::{self, Details},
    },
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

const GET_RECORD: &str = "/pbxcore/api/extensions/getRecord";
const SAVE_RECORD: &str = "/pbxcore/api/extensions/saveRecord";
const DELETE_RECORD: &str = "/pbxcore/api/extensions/deleteRecord";
const AVAILABLE: &str = "/pbxcore/api/extensions/available";

/// The legacy `/pbxcore` answer.
#[derive(Deserialize)]
pub(super) struct Envelope {
    pub(super) result: bool,
    #[serde(default)]
    pub(super) data: Value,
    #[serde(default)]
    pub(super) messages: Value,
}

/// Who holds a number, by `available`.
struct Holder {
    /// `Users.id` of the holder; `None` for a number that is no employee's (a queue).
    user: Option<String>,
    represent: String,
}

/// MikoPBX 2023.2 / 2024.1 through `/pbxcore/api/extensions/*`.
#[derive(Debug)]
pub struct MikoPbxLegacy {
    pub(super) http: Http,
    /// `username`, `password` of the admin (or an "employee rights" module user).
    pub(super) login: Option<(Secret, Secret)>,
    /// The URL is 127.0.0.1, which the PBX trusts without a session.
    pub(super) trusted: bool,
    /// The session; the lock also makes concurrent requests that find it expired log in
    /// once, not once each.
    pub(super) session: Mutex<SessionState>,
    /// See [`MikoPbxLegacy::template`].
    template: OnceCell<Map<String, Value>>,
    /// The way of listing that worked last (see [`super::legacy_list`]).
    pub(super) lister: SyncMutex<Option<Lister>>,
    /// What each record held that no list carries, by `Extensions.id`.
    pub(super) details: Details<Detail>,
    caps: Capabilities,
    pub(super) page_size: usize,
    pub(super) concurrency: usize,
}

impl MikoPbxLegacy {
    pub fn new(block: &MikoPbx, credentials: &Credentials, settings: http::Settings) -> Result<Self, Error> {
        check_generation(block, MikoPbxApiGeneration::Legacy)?;
        let login = admin_login(credentials)?;
        let trusted = trusted_loopback(&block.url, Generation::Legacy);
        if login.is_none() && !trusted {
            return Err(Error::Credentials { key: "username" });
        }
        let concurrency = settings.max_concurrency.max(1);
        let http = Http::new(BackendKind::Mikopbx, &block.url, settings, credentials.values())?;
        Ok(MikoPbxLegacy {
            http,
            login,
            trusted,
            session: Mutex::new(SessionState::default()),
            template: OnceCell::new(),
            lister: SyncMutex::new(None),
            details: Details::new(resync::DEFAULT_REFRESH),
            caps: capabilities(),
            page_size: TABLE_PAGE_SIZE,
            concurrency,
        })
    }

    /// Rows per admin-table page (tests use small pages to cross page boundaries).
    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// How long a record's read stands for it (`detailRefreshInterval`).
    pub fn with_detail_refresh(mut self, max_age: std::time::Duration) -> Self {
        self.details = Details::new(max_age);
        self
    }

    /// Remembers what a saved record holds (saveRecord answers the record as
    /// `getRecord` would [code: `Lib/Extensions/SaveRecord.php`, 2023.2.206;
    /// `SaveRecordAction.php`, 2024.1.114]), or forgets the account when the answer is
    /// not the whole record.
    fn remember_saved(&self, id: &str, saved: &Map<String, Value>) {
        match account_of(id.to_owned(), saved, None) {
            Ok(account) if Detail::answered(saved, Generation::Legacy) => {
                self.details.store(id, None, Detail::of(&account, Generation::Legacy))
            }
            _ => self.details.forget(id),
        }
    }

    // --- /pbxcore ----------------------------------------------------------------------

    pub(super) fn envelope(&self, reply: &Reply) -> Result<Envelope, Error> {
        match reply.status {
            StatusCode::OK => parse(&self.http, reply),
            StatusCode::UNAUTHORIZED if self.login.is_none() => Err(self.http.auth(
                "the PBX does not see this client as 127.0.0.1: add username and password to the credentials",
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

    /// The record with this `Extensions.id`, or `None` when the PBX answered the blank
    /// template (no `id`): what it does for an unknown id, and for the id of a mobile, a
    /// queue or a system number.
    pub(super) async fn get_record(&self, id: &str) -> Result<Option<Map<String, Value>>, Error> {
        let url = self.http.url(GET_RECORD);
        let reply =
            self.call(Area::Core, Retry::Idempotent, &[], |c| c.get(&url).query(&[("id", id)])).await?;
        let envelope = self.envelope(&reply)?;
        if !envelope.result {
            let text = joined(&envelope.messages);
            return Err(self.http.protocol(&format!("getRecord refused id {id}: {text}")));
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

    /// Who holds `number` (`available?number=`); `None` when it is free.
    async fn holder(&self, number: &str) -> Result<Option<Holder>, Error> {
        if number.is_empty() {
            return Ok(None);
        }
        let url = self.http.url(AVAILABLE);
        let reply = self
            .call(Area::Core, Retry::Idempotent, &[], |c| c.get(&url).query(&[("number", number)]))
            .await?;
        let envelope = self.envelope(&reply)?;
        Ok(holder_of(&envelope.data))
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
            return Err(self.refusal(&envelope.messages, record).await);
        }
        match envelope.data {
            Value::Object(saved) if saved.get("id").and_then(id_text).is_some() => Ok(saved),
            _ => Err(self.http.protocol("saveRecord reported success without the saved record")),
        }
    }

    /// A refused save, read by what the PBX holds rather than by its words (which are a
    /// bare key in 2023.2 and 2024.1, and translated where a translation exists): the
    /// record's number held by another user is a conflict; its mobile held by another
    /// user, the mobile's validation error; anything else a validation error with the
    /// PBX's messages. Costs a request or two, on failures only.
    async fn refusal(&self, messages: &Value, record: &Map<String, Value>) -> Error {
        let text = joined(messages);
        let field = |k: &str| record.get(k).and_then(id_text).unwrap_or_default();
        let (number, mobile, user) = (field("number"), field("mobile_number"), field("user_id"));
        let theirs = |h: &Holder| h.user.as_deref() != Some(user.as_str()) || user.is_empty();
        match self.holder(&number).await {
            Ok(Some(h)) if theirs(&h) => {
                return self.http.conflict(&format!(
                    "extension {number} is taken by {} ({text})",
                    strip_tags(&h.represent)
                ));
            }
            Err(e) => return e,
            _ => {}
        }
        match self.holder(&mobile).await {
            Ok(Some(h)) if theirs(&h) => {
                return self.http.validation(
                    Some("mobile_number"),
                    &format!("mobile number {mobile} is taken by {} ({text})", strip_tags(&h.represent)),
                );
            }
            Err(e) => return e,
            _ => {}
        }
        let duplicate = error_messages(messages).iter().any(|(_, m)| m.contains(DUPLICATE_KEY));
        let text = if duplicate {
            format!("a number of this employee is not unique, but no other employee holds it now ({text})")
        } else {
            text
        };
        self.http.validation(None, &text)
    }
}

/// `available`'s data: `{available: false, userId, represent}` for a number taken.
fn holder_of(data: &Value) -> Option<Holder> {
    let available = match data.get("available") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1" || s == "true",
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        _ => true,
    };
    if available {
        return None;
    }
    Some(Holder {
        user: data.get("userId").and_then(id_text),
        represent: data.get("represent").and_then(Value::as_str).unwrap_or("another number").to_owned(),
    })
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
        super::desired(Generation::Legacy, employee, membership)
    }

    fn generate_password(&self) -> Secret {
        password::generate()
    }

    async fn list(&self) -> Result<Listing, Error> {
        self.listing(resync::Reading::Always).await
    }

    async fn list_for(&self, declared: &std::collections::BTreeSet<Field>) -> Result<Listing, Error> {
        self.listing(super::detail::reading(Generation::Legacy, declared)).await
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        self.find_number(extension).await
    }

    /// Lists as a pass does, then reads the first account again by its id (not by its
    /// number: on a PBX listed by the id scan, a find would scan again).
    async fn probe(&self) -> Result<Probe, Error> {
        let listing = self.listing(resync::Reading::Always).await?;
        let sample = match listing.accounts.first() {
            Some(first) => Some(match self.get_record(&first.id).await {
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
        let values = create_values(desired)?;
        let mut record = self.template().await?.clone();
        apply(&mut record, &values);
        if let Some(password) = password {
            record.insert("sip_secret".into(), Value::String(password.expose().to_owned()));
        }
        let answer = self.save(Retry::Unsafe, &record, password).await?;
        let id = answer.get("id").and_then(id_text).unwrap_or_default();
        self.remember_saved(&id, &answer);
        let saved = Detail::saved(&record, answer, Generation::Legacy);
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
        match self.save(Retry::Idempotent, &record, password).await {
            Ok(saved) => {
                self.remember_saved(&account.id, &saved);
                Ok(())
            }
            Err(e) => {
                // What the record holds now is unknown: the next listing reads it.
                self.details.forget(&account.id);
                Err(e)
            }
        }
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        let url = self.http.url(DELETE_RECORD);
        let id = account.id.as_str();
        self.details.forget(id);
        let reply =
            self.call(Area::Core, Retry::Idempotent, &[], |c| c.post(&url).form(&[("id", id)])).await?;
        let envelope = self.envelope(&reply)?;
        if envelope.result {
            return Ok(());
        }
        // Gone already (perhaps by our own earlier try whose answer was lost)? Asked of
        // the PBX rather than read from its words.
        if self.get_record(id).await?.is_none() {
            return Ok(());
        }
        // Refused while something refers to the number (another employee forwards to
        // it, a queue, a route): no field of ours is at fault.
        Err(self.http.validation(None, &joined(&envelope.messages)))
    }
}
