//! Reading users: the group list (`UserGetListInGroupRequest`), split by extension prefix
//! when `responseSizeLimit` cuts it, and each user's own record (`UserGetRequest`), read
//! tolerantly. See `docs/compatibility.md`, "Netaxis APIO", for the sources.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json, value::RawValue};

use super::{
    super::{
        Error, Listing, Unreadable,
        common::Answer,
        http::Retry,
        lenient,
        paging::{Page, Pager},
        resync::{self, Reading},
    },
    Apio, EXTENSION_MAX, LANGUAGE, TIME_ZONE, Target,
    detail::{Detail, Listed, Row},
};
use crate::plan::{Account, Attributes};

/// One row of the group list: its id and extension (names and e-mail, when the row shows
/// them, are read apart: [`Listed`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedUser {
    #[serde(default, deserialize_with = "lenient::text")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    extension: Option<String>,
}

/// A user's own record (`GET users/{userId}`, and the create answer). BroadWorks'
/// `UserGetResponse` carries no `userId`: the id is the request's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserRecord {
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    extension: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    email_address: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    mobile_phone_number: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    language: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    time_zone: Option<String>,
}

/// An extension criterion of the group list.
#[derive(Clone, Debug)]
enum Criterion {
    Starts(String),
    Equals(String),
}

impl Criterion {
    fn name(&self) -> &'static str {
        match self {
            Criterion::Starts(_) => "insensitiveExtensionStarts",
            Criterion::Equals(_) => "insensitiveExtensionEquals",
        }
    }

    fn value(&self) -> &str {
        match self {
            Criterion::Starts(v) | Criterion::Equals(v) => v,
        }
    }

    fn fits(&self, extension: &str) -> bool {
        match self {
            Criterion::Starts(p) => extension.starts_with(p.as_str()),
            Criterion::Equals(e) => extension == e,
        }
    }
}

/// One list answer, record by record.
struct Found {
    /// The `userId` and the rest of every row that could be read.
    users: Vec<(String, Row)>,
    unreadable: Vec<Unreadable>,
    /// The shape of the answer, in words.
    shape: String,
}

impl Found {
    fn records(&self) -> usize {
        self.users.len() + self.unreadable.len()
    }

    /// Keys for the pager: the id, else what can be made out of an unreadable row.
    fn keys(&self) -> Vec<String> {
        let ids = self.users.iter().map(|(id, _)| id.clone());
        let unread = self.unreadable.iter().map(|u| format!("{:?}/{:?}/{}", u.id, u.extension, u.problem));
        ids.chain(unread).collect()
    }
}

/// How an answer stands against the `responseSizeLimit` it was asked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// Fewer than asked: everything that matched.
    Whole,
    /// Exactly as many as asked: more may exist (OCI cuts without a word).
    AtLimit,
    /// More than asked: the server does not apply the limit, so nothing was cut.
    Ignored,
}

/// What the listings so far showed about the server.
#[derive(Default)]
pub(super) struct Seen {
    /// Search criteria in the query string were ignored: they go in a JSON body.
    pub(super) criteria_in_body: AtomicBool,
    /// Some answer held more users than its `responseSizeLimit`.
    limit_ignored: AtomicBool,
    /// Some answer was cut at its `responseSizeLimit`.
    limit_honoured: AtomicBool,
    /// The list showed user ids without a domain
    /// (`DISPLAY_USER_ID_WITH_SYSTEM_DEFAULT_DOMAIN` off).
    pub(super) bare_ids: AtomicBool,
    /// Domains the list shows in user ids, and domains it leaves out (the system default
    /// one, when `DISPLAY_USER_ID_WITH_SYSTEM_DEFAULT_DOMAIN` is off): an account's id is
    /// always the list's form, so that a claim made at create time still names it.
    domains: Mutex<Domains>,
}

#[derive(Default)]
struct Domains {
    shown: HashSet<String>,
    left_out: HashSet<String>,
}

/// How the list writes a user id in `domain`, as far as seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IdForm {
    WithDomain,
    WithoutDomain,
    Unknown,
}

impl Seen {
    fn domains(&self) -> std::sync::MutexGuard<'_, Domains> {
        self.domains.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shown(&self, id: &str) {
        if let Some((_, domain)) = id.split_once('@') {
            self.domains().shown.insert(domain.to_owned());
        }
    }

    pub(super) fn id_form(&self, domain: &str) -> IdForm {
        let d = self.domains();
        if d.shown.contains(domain) {
            IdForm::WithDomain
        } else if d.left_out.contains(domain) {
            IdForm::WithoutDomain
        } else {
            IdForm::Unknown
        }
    }

    /// `full` (`name@domain`, as a create answer gave it) is listed as `listed`.
    pub(super) fn learn(&self, full: &str, listed: &str) {
        if let Some((name, domain)) = full.split_once('@')
            && listed == name
        {
            self.domains().left_out.insert(domain.to_owned());
        } else {
            self.shown(listed);
        }
    }
}

/// The ids a scan of the group found.
struct Scan {
    users: BTreeMap<String, Row>,
    unreadable: Vec<Unreadable>,
    complete: bool,
    shape: String,
    pages: Vec<Page>,
    split: bool,
}

/// A user's own record as read: the account, or why it could not be read.
enum Read {
    Account(Account),
    Unreadable(Unreadable),
}

impl Apio {
    /// One list request: `criterion` and the limit in the query string (what the vendor
    /// UI does on `/search/users`), or in a JSON body on the GET (what the docs show).
    async fn list_request(
        &self,
        criterion: Option<&Criterion>,
        limit: usize,
        in_body: bool,
    ) -> Result<Answer, Error> {
        let url = self.users_url();
        if in_body {
            let mut body = Map::new();
            if let Some(c) = criterion {
                body.insert(c.name().into(), json!(c.value()));
            }
            body.insert("responseSizeLimit".into(), json!(limit));
            let body = Value::Object(body);
            self.call(Retry::Idempotent, &[], |c| c.get(&url).json(&body)).await
        } else {
            let limit = limit.to_string();
            let mut params: Vec<(&str, &str)> = Vec::new();
            if let Some(c) = criterion {
                params.push((c.name(), c.value()));
            }
            params.push(("responseSizeLimit", &limit));
            self.call(Retry::Idempotent, &[], |c| c.get(&url).query(&params)).await
        }
    }

    /// The rows of a list answer; a row that cannot be read fails alone.
    fn read_list(&self, answer: &Answer) -> Result<Found, Error> {
        let records = lenient::records(&answer.reply.body, &["users"]).map_err(|problem| {
            answer.scrub(
                self.http
                    .protocol(&format!("the user list is not a list ({problem}): {}", answer.text(None))),
            )
        })?;
        let mut found = Found { users: Vec::new(), unreadable: Vec::new(), shape: records.shape };
        for (key, raw) in records.items {
            match lenient::read::<ListedUser>(raw) {
                Ok(ListedUser { user_id: Some(id), extension }) if !id.is_empty() => {
                    if id.contains('@') {
                        self.seen.shown(&id);
                    } else {
                        self.seen.bare_ids.store(true, Ordering::Relaxed);
                    }
                    let row = Row { extension, listed: Listed::read(raw), digest: resync::digest(raw.get()) };
                    found.users.push((id, row));
                }
                Ok(ListedUser { extension, .. }) => found.unreadable.push(Unreadable {
                    id: key,
                    extension,
                    problem: "userId: missing or empty".into(),
                }),
                Err(problem) => found.unreadable.push(lenient::unreadable(
                    raw,
                    key.as_deref(),
                    &["userId"],
                    &["extension"],
                    problem,
                )),
            }
        }
        Ok(found)
    }

    /// One list query, asking for one more than a page. Criteria go in the query string
    /// until an answer proves the server ignores them there (a row outside the
    /// criterion); then, for good, in a JSON body. A server that ignores them both ways
    /// is an error: a split built on it would be short.
    async fn query(&self, criterion: Option<&Criterion>) -> Result<Found, Error> {
        let limit = self.page + 1;
        let mut in_body = self.seen.criteria_in_body.load(Ordering::Relaxed);
        loop {
            let answer = self.list_request(criterion, limit, in_body).await?;
            if !answer.reply.status.is_success() {
                return Err(self.fail(&answer, Target::Group).await);
            }
            let found = self.read_list(&answer)?;
            let Some(c) = criterion else { return Ok(found) };
            let stray = found.users.iter().find(|(_, r)| !c.fits(r.extension.as_deref().unwrap_or("")));
            match stray {
                None => return Ok(found),
                Some(_) if !in_body => {
                    in_body = true;
                    self.seen.criteria_in_body.store(true, Ordering::Relaxed);
                }
                Some((id, r)) => {
                    return Err(self.http.protocol(&format!(
                        "the user list ignored the criterion {}={:?} (got user {id} with extension {:?})",
                        c.name(),
                        c.value(),
                        r.extension.as_deref().unwrap_or("")
                    )));
                }
            }
        }
    }

    fn cut(&self, found: &Found) -> Cut {
        let n = found.records();
        if n <= self.page {
            Cut::Whole
        } else if n == self.page + 1 {
            self.seen.limit_honoured.store(true, Ordering::Relaxed);
            Cut::AtLimit
        } else {
            self.seen.limit_ignored.store(true, Ordering::Relaxed);
            Cut::Ignored
        }
    }

    /// Every user id in the group. BroadWorks has no pages, only a limit that cuts a list
    /// without saying so; so a list that reaches the limit is read again by extension
    /// prefix (`0`..`9`, one digit longer while a prefix is still cut, level by level,
    /// each level's queries at once), plus the users without an extension. What still
    /// cannot be split counts as incomplete, never as a short complete list.
    async fn scan(&self) -> Result<Scan, Error> {
        let mut pager = Pager::new(Some(self.page + 1));
        let all = self.query(None).await?;
        pager.page(all.keys());
        let shape = all.shape.clone();
        if self.cut(&all) != Cut::AtLimit {
            return Ok(Scan {
                users: all.users.into_iter().collect(),
                unreadable: all.unreadable,
                complete: true,
                shape,
                pages: pager.into_pages(),
                split: false,
            });
        }
        let mut scan = Scan {
            users: BTreeMap::new(),
            unreadable: Vec::new(),
            complete: true,
            shape,
            pages: Vec::new(),
            split: true,
        };
        // Users without an extension: no prefix finds them.
        let bare = self.query(Some(&Criterion::Equals(String::new()))).await?;
        pager.page(bare.keys());
        scan.complete &= self.cut(&bare) != Cut::AtLimit;
        scan.take(bare);
        let mut level: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        while !level.is_empty() {
            let answers: Vec<(String, Found)> = stream::iter(level.into_iter().map(|prefix| async move {
                let found = self.query(Some(&Criterion::Starts(prefix.clone()))).await?;
                Ok::<_, Error>((prefix, found))
            }))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
            let mut split = Vec::new();
            for (prefix, found) in answers {
                pager.page(found.keys());
                if self.cut(&found) == Cut::AtLimit {
                    if prefix.len() >= EXTENSION_MAX {
                        scan.complete = false;
                        scan.take(found);
                    } else {
                        split.push(prefix);
                    }
                } else {
                    scan.take(found);
                }
            }
            // Each cut prefix: itself as a whole extension, then one digit longer.
            let exact: Vec<Found> = stream::iter(
                split
                    .clone()
                    .into_iter()
                    .map(|prefix| async move { self.query(Some(&Criterion::Equals(prefix))).await }),
            )
            .buffered(self.concurrency)
            .try_collect()
            .await?;
            for found in exact {
                pager.page(found.keys());
                scan.complete &= self.cut(&found) != Cut::AtLimit;
                scan.take(found);
            }
            level = split.iter().flat_map(|p| (0..10).map(move |d| format!("{p}{d}"))).collect();
        }
        scan.pages = pager.into_pages();
        Ok(scan)
    }

    /// One user's own record (remembered with the list row's digest, when listed);
    /// `None` when it is gone. `listed` is the extension the list gave, for an unreadable
    /// record's report.
    async fn read_user(
        &self,
        id: &str,
        listed: Option<&str>,
        digest: Option<u64>,
    ) -> Result<Option<Read>, Error> {
        let read = self.read_record(id, listed).await;
        match &read {
            Ok(Some(Read::Account(account))) => self.details.store(id, digest, Detail::of(account)),
            _ => self.details.forget(id),
        }
        read
    }

    async fn read_record(&self, id: &str, listed: Option<&str>) -> Result<Option<Read>, Error> {
        let url = self.user_read_url(id);
        let answer = self.call(Retry::Idempotent, &[], |c| c.get(&url)).await?;
        if answer.reply.status == StatusCode::NOT_FOUND {
            return match self.fail(&answer, Target::User(id)).await {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            };
        }
        if !answer.reply.status.is_success() {
            return Err(self.fail(&answer, Target::User(id)).await);
        }
        // Not a JSON object at all (a proxy's page) is no record of anyone: the read fails.
        let raw: Box<RawValue> = answer.json(&self.http)?;
        let raw = &*raw;
        if !raw.get().trim_start().starts_with('{') {
            return Err(answer.unexpected(&self.http, Some("a user's record is not a JSON object")));
        }
        let unreadable = |problem: String| {
            let mut u = lenient::unreadable(raw, Some(id), &[], &["extension"], problem);
            u.extension = u.extension.or_else(|| listed.map(str::to_owned));
            Read::Unreadable(u)
        };
        let record = match lenient::read::<UserRecord>(raw) {
            Ok(record) => record,
            Err(problem) => return Ok(Some(unreadable(problem))),
        };
        match record.user_id.as_deref().filter(|u| !u.is_empty()) {
            None => self.detail_ids.absent.store(true, Ordering::Relaxed),
            Some(named) if same_user(named, id) => self.detail_ids.present.store(true, Ordering::Relaxed),
            Some(named) => {
                return Ok(Some(unreadable(format!("userId: the record of {id} names {named}"))));
            }
        }
        Ok(Some(Read::Account(account(id.to_owned(), record, listed))))
    }

    /// Every account in the group, each record read where `reading` and what is
    /// remembered of it ask for (the list lacks language, time zone and mobile); the
    /// reads run `maxConcurrency` at a time.
    pub(super) async fn listing(&self, reading: Reading) -> Result<Listing, Error> {
        self.details.begin();
        let scan = self.scan().await?;
        let listed = scan.users.len();
        let mut accounts = Vec::with_capacity(listed);
        let mut to_read = Vec::new();
        for (id, mut row) in scan.users {
            match self.listed_account(&id, &mut row, reading) {
                Some(account) => accounts.push(account),
                None => to_read.push((id, row)),
            }
        }
        let records = to_read.len();
        let reads: Vec<Option<Read>> = stream::iter(to_read.into_iter().map(|(id, row)| async move {
            self.read_user(&id, row.extension.as_deref(), Some(row.digest)).await
        }))
        .buffer_unordered(self.concurrency)
        .try_collect()
        .await?;
        let mut unreadable = scan.unreadable;
        // A user deleted between the list and its read is gone: not listed.
        for read in reads.into_iter().flatten() {
            match read {
                Read::Account(a) => accounts.push(a),
                Read::Unreadable(u) => unreadable.push(u),
            }
        }
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        if scan.complete {
            let mut ids: HashSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
            ids.extend(unreadable.iter().filter_map(|u| u.id.as_deref()));
            self.details.retain(&ids);
        }
        let mut dialect = vec![("list shape", scan.shape)];
        dialect.extend(self.seen_dialect(scan.split));
        dialect.push(("records read", format!("{records} of {listed}")));
        Ok(Listing { accounts, complete: scan.complete, unreadable, pages: scan.pages, dialect })
    }

    /// The account of a listed user without reading its record, where the row and what
    /// is remembered of the record hold every field the pass needs; `None`: its record
    /// must be read.
    fn listed_account(&self, id: &str, row: &mut Row, reading: Reading) -> Option<Account> {
        // Taken either way: a row whose record is read needs no more of it.
        let listed = row.listed.take()?;
        let detail = match reading {
            Reading::Never => None,
            Reading::WhenStale => Some(self.details.lookup(id, row.digest)?),
            Reading::Always => return None,
        };
        let mut account = listed.account(id.to_owned(), row.extension.clone()?);
        if let Some(detail) = detail {
            detail.fill(&mut account);
        }
        Some(account)
    }

    /// What this client has seen of the server, in words, for `switchboard probe`.
    fn seen_dialect(&self, split: bool) -> Vec<(&'static str, String)> {
        let flag = |b: &AtomicBool| b.load(Ordering::Relaxed);
        let mut out = Vec::new();
        out.push((
            "user ids in the list",
            match flag(&self.seen.bare_ids) {
                true => "without the system default domain (DISPLAY_USER_ID_WITH_SYSTEM_DEFAULT_DOMAIN off)",
                false => "with their domain",
            }
            .to_owned(),
        ));
        let (present, absent) = (flag(&self.detail_ids.present), flag(&self.detail_ids.absent));
        if present || absent {
            let text = match (present, absent) {
                (true, false) => "present",
                (false, true) => "absent (as in BroadWorks' UserGetResponse): the id is the request's",
                _ => "present in some records only: the id is the request's",
            };
            out.push(("userId in a user's record", text.to_owned()));
        }
        let limit = match (flag(&self.seen.limit_honoured), flag(&self.seen.limit_ignored)) {
            (_, true) => Some("ignored: more users came than asked, so nothing was cut"),
            (true, false) if split => {
                Some("honoured: the list was cut at the limit and read again by extension prefix")
            }
            (true, false) => Some("honoured: answers are cut at the limit"),
            (false, false) => None,
        };
        if let Some(text) = limit {
            out.push(("responseSizeLimit", text.to_owned()));
        }
        out
    }

    /// Whether the group answers (a list of at most one user): what tells a user that is
    /// gone (404 on the user, the group answers) from a PhoneSystem that points at
    /// nothing (404 on the group too), by status alone.
    pub(super) async fn group_answers(&self) -> Result<bool, Error> {
        let in_body = self.seen.criteria_in_body.load(Ordering::Relaxed);
        let answer = self.list_request(None, 1, in_body).await?;
        match answer.reply.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(answer.unexpected(&self.http, super::error_message(&answer.reply.body).as_deref())),
        }
    }

    /// How many users one list request asked for one gives: whether the server applies
    /// `responseSizeLimit` (for `switchboard probe`, when the listing did not show it).
    pub(super) async fn limit_probe(&self) -> Result<Option<&'static str>, Error> {
        let in_body = self.seen.criteria_in_body.load(Ordering::Relaxed);
        let answer = self.list_request(None, 1, in_body).await?;
        if !answer.reply.status.is_success() {
            return Err(self.fail(&answer, Target::Group).await);
        }
        Ok(match self.read_list(&answer)?.records() {
            0 => None,
            1 => Some("honoured: asked for 1 user, got 1"),
            _ => Some("ignored: asked for 1 user, got more"),
        })
    }

    /// The account on `extension`, if any. A row on it that cannot be read is an error:
    /// saying "none" could make a retried create a second account.
    pub(super) async fn find_on(&self, extension: &str) -> Result<Option<Account>, Error> {
        let found = self.query(Some(&Criterion::Equals(extension.to_owned()))).await?;
        if let Some(u) =
            found.unreadable.iter().find(|u| u.extension.as_deref().is_none_or(|e| e == extension))
        {
            return Err(self.http.protocol(&format!("a user on extension {extension} cannot be read: {u}")));
        }
        let mut ids: Vec<(&String, u64)> = found
            .users
            .iter()
            .filter(|(_, r)| r.extension.as_deref() == Some(extension))
            .map(|(id, r)| (id, r.digest))
            .collect();
        ids.sort();
        for (id, digest) in ids {
            match self.read_user(id, Some(extension), Some(digest)).await? {
                None => {}
                Some(Read::Account(a)) => return Ok(Some(a)),
                Some(Read::Unreadable(u)) => {
                    return Err(self
                        .http
                        .protocol(&format!("the user on extension {extension} cannot be read: {u}")));
                }
            }
        }
        Ok(None)
    }
}

/// Which records of users carried their own id, for `switchboard probe`.
#[derive(Default)]
pub(super) struct DetailIds {
    present: AtomicBool,
    absent: AtomicBool,
}

impl Scan {
    fn take(&mut self, found: Found) {
        self.users.extend(found.users);
        for u in found.unreadable {
            if !self.unreadable.contains(&u) {
                self.unreadable.push(u);
            }
        }
    }
}

/// Whether `named` (a record's own `userId`) is the user asked for as `asked`: the same,
/// or the same but for the default domain one of them leaves out.
fn same_user(named: &str, asked: &str) -> bool {
    named == asked
        || named.strip_prefix(asked).is_some_and(|rest| rest.starts_with('@') && !asked.contains('@'))
        || asked.strip_prefix(named).is_some_and(|rest| rest.starts_with('@') && !named.contains('@'))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The account `id` (the request's key, the form the list shows) as `record` holds it.
pub(super) fn account(id: String, r: UserRecord, listed: Option<&str>) -> Account {
    let mut attributes = Attributes {
        given_name: non_empty(r.first_name),
        family_name: non_empty(r.last_name),
        email: non_empty(r.email_address),
        mobile: non_empty(r.mobile_phone_number),
        ..Attributes::default()
    };
    for (key, value) in [(LANGUAGE, r.language), (TIME_ZONE, r.time_zone)] {
        if let Some(v) = non_empty(value) {
            attributes.settings.insert(key.to_owned(), v);
        }
    }
    let extension = r.extension.or_else(|| listed.map(str::to_owned)).unwrap_or_default();
    Account { id, extension, attributes, marker: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_user_with_or_without_the_default_domain() {
        assert!(same_user("u1@example.com", "u1@example.com"));
        assert!(same_user("u1@example.com", "u1"));
        assert!(same_user("u1", "u1@example.com"));
        assert!(!same_user("u12@example.com", "u1"));
        assert!(!same_user("u1@other.com", "u1@example.com"));
    }

    #[test]
    fn a_record_without_user_id_is_read_with_the_requested_id() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"firstName":"Tom","extension":1234,"department":"","language":"English"}"#,
        )
        .unwrap();
        let record: UserRecord = lenient::read(&raw).unwrap();
        assert_eq!(record.user_id, None);
        let a = account("tom@example.com".into(), record, None);
        assert_eq!(a.id, "tom@example.com");
        assert_eq!(a.extension, "1234", "an extension sent as a number");
        assert_eq!(a.attributes.given_name.as_deref(), Some("Tom"));
    }
}
