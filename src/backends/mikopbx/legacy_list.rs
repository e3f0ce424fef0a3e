//! Listing a legacy MikoPBX: no `/pbxcore` call lists the `Extensions.id` that
//! `getRecord`, `saveRecord` and `deleteRecord` need, so the ids come from the admin
//! cabinet, whose list differs per release (`docs/compatibility.md`, MikoPBX, "List"):
//!
//! - [`Lister::Table`], 2024.1: `POST /admin-cabinet/extensions/getNewRecords`, the
//!   admin UI's DataTables endpoint, in pages of `recordsFiltered` users in all, ordered
//!   by the expression the request names (`CAST(Extensions.number AS INTEGER)`, as the UI
//!   sends; an unqualified `number` is ambiguous to PHQL). Cost `ceil(N/page)` requests.
//! - [`Lister::Page`], 2023.2: `GET /admin-cabinet/extensions/index`, whose view holds
//!   every employee with its id (rendered into the HTML table; sent as JSON to an XHR
//!   request). Cost 1 request, the fewest of all.
//! - [`Lister::Scan`], wherever neither answers (a login whose role may not open the
//!   cabinet, a proxy that hides it): `getForSelect?type=internal` for the numbers the
//!   phone book shows, then `getRecord?id=1, 2, …` (each answers the record, or the blank
//!   template for an id that is no employee's: a gap left by a deletion, a mobile, a
//!   queue, a system number) until every one of those numbers is found, at most
//!   `1000 + 4 × numbers` ids. Past that cap the listing is partial (the numbers not found
//!   are reported unreadable), never wrong. The scan reads each record as it finds it.
//!
//! A cabinet action a release does not have answers HTTP 200 `{"success": false,
//! "message": "Page not found - 404"}` (and one the login may not open,
//! "Unauthorized - 401"): any `success: false` means "not this way", and the next way is
//! tried. The way that worked is remembered per client.

use std::collections::{BTreeSet, HashSet};

use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue};

use super::{
    Generation, MikoPbxLegacy, account_of,
    detail::{Detail, Listed},
    legacy_session::{Area, XHR},
};
use crate::{
    backends::{
        Error, Listing, Unreadable,
        http::{Reply, Retry},
        lenient,
        paging::{Next, Page, Pager},
        resync::{self, Reading},
    },
    plan::Account,
};

const TABLE: &str = "/admin-cabinet/extensions/getNewRecords";
const INDEX: &str = "/admin-cabinet/extensions/index";
const GET_FOR_SELECT: &str = "/pbxcore/api/extensions/getForSelect";
/// What the admin UI sends as the table's sort column: the extension as an integer.
const ORDER_BY_NUMBER: &str = "CAST(Extensions.number AS INTEGER)";
/// Ids the scan reads besides four per number the phone book shows (a SIP and a mobile
/// extension each, and room for deleted ones): system numbers, applications, old gaps.
const SCAN_SLACK: usize = 1000;
const SCAN_PER_NUMBER: usize = 4;

/// How a legacy PBX lists its employees with their ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lister {
    Table,
    Page,
    Scan,
}

impl Lister {
    fn describe(self) -> &'static str {
        match self {
            Lister::Table => "2024.1: the admin table (getNewRecords)",
            Lister::Page => "2023.2: the admin page (extensions/index)",
            Lister::Scan => "getForSelect, then getRecord by id",
        }
    }
}

/// A listed employee: its `Extensions.id`, number and state, from a cabinet list.
struct Row {
    id: String,
    number: String,
    disabled: bool,
    /// The name, e-mail and mobile the row shows, when it shows them all.
    listed: Option<Listed>,
    /// The row as sent, digested: a changed row means a changed record.
    digest: u64,
}

/// One cabinet list row as the lists send it (either list's field names).
#[derive(Deserialize)]
struct RawRow {
    #[serde(default, deserialize_with = "lenient::text")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    number: Option<String>,
    /// The table's `Sip.disabled`.
    #[serde(default, deserialize_with = "lenient::flag")]
    disabled: Option<bool>,
    /// The 2023.2 page's `status`: "disabled" or "".
    #[serde(default, deserialize_with = "lenient::text")]
    status: Option<String>,
}

/// What one way of listing gave: rows to read, or accounts read already (the scan).
struct Found {
    rows: Vec<Row>,
    accounts: Vec<Account>,
    unreadable: Vec<Unreadable>,
    complete: bool,
    pages: Vec<Page>,
    dialect: Vec<(&'static str, String)>,
}

impl MikoPbxLegacy {
    /// Every employee, by the way that works on this PBX, each record read as `reading`
    /// says.
    pub(super) async fn listing(&self, reading: Reading) -> Result<Listing, Error> {
        self.details.begin();
        let (lister, found) = self.found(None).await?;
        let listing = self.read_rows(lister, found, reading).await?;
        if listing.complete {
            let mut ids: HashSet<&str> = listing.accounts.iter().map(|a| a.id.as_str()).collect();
            ids.extend(listing.unreadable.iter().filter_map(|u| u.id.as_deref()));
            self.details.retain(&ids);
        }
        Ok(listing)
    }

    /// The employee on `extension`, if any.
    pub(super) async fn find_number(&self, extension: &str) -> Result<Option<Account>, Error> {
        let (lister, mut found) = self.found(Some(extension)).await?;
        // The table's search also matches names, e-mails and parts of numbers.
        found.rows.retain(|r| r.number == extension);
        let mut listing = self.read_rows(lister, found, Reading::Always).await?;
        Ok(listing
            .accounts
            .iter()
            .position(|a| a.extension == extension)
            .map(|at| listing.accounts.swap_remove(at)))
    }

    /// Tries the remembered way first, then the others in order of cost.
    async fn found(&self, search: Option<&str>) -> Result<(Lister, Found), Error> {
        let remembered = *self.lister.lock().unwrap_or_else(|e| e.into_inner());
        let mut order = vec![Lister::Page, Lister::Table, Lister::Scan];
        if let Some(first) = remembered {
            order.retain(|l| *l != first);
            order.insert(0, first);
        }
        for lister in order {
            let found = match lister {
                Lister::Table => self.table(search.unwrap_or("")).await?,
                Lister::Page => self.page().await?,
                Lister::Scan => Some(self.scan(search).await?),
            };
            if let Some(found) = found {
                *self.lister.lock().unwrap_or_else(|e| e.into_inner()) = Some(lister);
                return Ok((lister, found));
            }
        }
        Err(Error::Unsupported { system: self.http.system(), operation: "list employees" })
    }

    /// Turns rows into accounts, reading a row's record only where `reading` and what
    /// is remembered of it ask for (the scan has read every record already).
    async fn read_rows(&self, lister: Lister, found: Found, reading: Reading) -> Result<Listing, Error> {
        let Found { rows, mut accounts, mut unreadable, complete, pages, mut dialect } = found;
        accounts.reserve_exact(rows.len());
        let mut to_read = Vec::new();
        for mut row in rows {
            match self.listed_account(&mut row, reading) {
                Some(account) => accounts.push(account),
                None => to_read.push(row),
            }
        }
        let records = to_read.len();
        let read: Vec<Option<Result<Account, Unreadable>>> = stream::iter(to_read)
            .map(|row| self.account(row))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        for entry in read.into_iter().flatten() {
            match entry {
                Ok(account) => accounts.push(account),
                Err(u) => unreadable.push(u),
            }
        }
        dialect.insert(0, ("API generation", format!("legacy, listed by {}", lister.describe())));
        if lister != Lister::Scan {
            dialect.push(("records read", format!("{records} of {}", accounts.len() + unreadable.len())));
        }
        Ok(Listing { accounts, complete, unreadable, pages, dialect })
    }

    /// The account of a row without reading its record, where the row and what is
    /// remembered of the record hold every field the pass needs (the row is then spent);
    /// `None`: its record must be read.
    fn listed_account(&self, row: &mut Row, reading: Reading) -> Option<Account> {
        // Taken either way: a row whose record is read needs no more of it.
        let listed = row.listed.take()?;
        let detail = match reading {
            Reading::Never => None,
            Reading::WhenStale => Some(self.details.lookup(&row.id, row.digest)?),
            Reading::Always => return None,
        };
        let (id, number) = (std::mem::take(&mut row.id), std::mem::take(&mut row.number));
        let mut account = listed.account(id, number, !row.disabled, Generation::Legacy);
        if let Some(detail) = detail {
            detail.fill(&mut account);
        }
        Some(account)
    }

    /// The full record of a listed row as an account (remembered with its row);
    /// `None` when it vanished meanwhile.
    async fn account(&self, row: Row) -> Result<Option<Result<Account, Unreadable>>, Error> {
        let Some(record) = self.get_record(&row.id).await? else {
            self.details.forget(&row.id);
            return Ok(None);
        };
        let account = account_of(row.id.clone(), &record, Some(!row.disabled));
        match &account {
            Ok(account) => {
                self.details.store(&row.id, Some(row.digest), Detail::of(account, Generation::Legacy))
            }
            Err(_) => self.details.forget(&row.id),
        }
        Ok(Some(account.map_err(|problem| Unreadable {
            id: Some(row.id),
            extension: Some(row.number),
            problem,
        })))
    }

    // --- 2024.1: the admin table ----------------------------------------------------------

    /// Every row of the table matching `search`; `None` when the PBX has no such table.
    /// The first page says how many users there are and how many rows the PBX gives per
    /// page; the others are then read `maxConcurrency` at a time at that stride, and read
    /// on one by one while rows are missing.
    async fn table(&self, search: &str) -> Result<Option<Found>, Error> {
        let mut pager = Pager::new(Some(self.page_size));
        let mut rows = Vec::new();
        let mut unreadable = Vec::new();
        let Some((first, total)) = self.table_at(search, 0).await? else {
            return Ok(None);
        };
        let stride = first.len().max(1);
        let mut next = self.take(&mut pager, first, &mut rows, &mut unreadable);
        let mut offset = stride;
        if next == Next::More && offset < total {
            let starts: Vec<usize> = (1..).map(|k| k * stride).take_while(|s| *s < total).collect();
            offset = starts.last().map_or(offset, |s| s + stride);
            let pages: Vec<Option<(Vec<Box<RawValue>>, usize)>> = stream::iter(starts)
                .map(|start| self.table_at(search, start))
                .buffered(self.concurrency)
                .try_collect()
                .await?;
            for (page, _) in pages.into_iter().flatten() {
                if next == Next::More {
                    next = self.take(&mut pager, page, &mut rows, &mut unreadable);
                }
            }
        }
        // Rows missing (the table changed while it was read, or the PBX pages otherwise
        // than its first page said): read on until a page brings nothing new.
        while next == Next::More && pager.distinct() < total {
            let Some((page, _)) = self.table_at(search, offset).await? else { break };
            offset += page.len().max(1);
            next = self.take(&mut pager, page, &mut rows, &mut unreadable);
        }
        let complete = next != Next::GaveUp && pager.distinct() >= total;
        let pages = pager.into_pages();
        let dialect = vec![("page size", format!("{} asked, {stride} given", self.page_size))];
        Ok(Some(Found { rows, accounts: Vec::new(), unreadable, complete, pages, dialect }))
    }

    /// Records a page's rows (keyed by id; an unreadable row by its text).
    fn take(
        &self,
        pager: &mut Pager,
        page: Vec<Box<RawValue>>,
        rows: &mut Vec<Row>,
        unreadable: &mut Vec<Unreadable>,
    ) -> Next {
        let mut keys = Vec::with_capacity(page.len());
        for raw in page {
            match row_of(&raw) {
                Ok(Some(row)) => {
                    keys.push(row.id.clone());
                    if !pager.seen(&row.id) && !keys[..keys.len() - 1].contains(&row.id) {
                        rows.push(row);
                    }
                }
                Ok(None) => keys.push(raw.get().to_owned()),
                Err(u) => {
                    let key = raw.get().to_owned();
                    if !pager.seen(&key) {
                        unreadable.push(u);
                    }
                    keys.push(key);
                }
            }
        }
        pager.page(keys)
    }

    /// One page of the table from row `start`, and the users it says match; `None` when
    /// the PBX has no table (2023.2, 2026.1: "Page not found").
    async fn table_at(
        &self,
        search: &str,
        start: usize,
    ) -> Result<Option<(Vec<Box<RawValue>>, usize)>, Error> {
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
            ("columns[0][data]", ORDER_BY_NUMBER),
            ("columns[0][name]", "number"),
        ];
        let reply = self
            .call(Area::Admin, Retry::Idempotent, &[], |c| c.post(&url).header(XHR.0, XHR.1).form(&form))
            .await?;
        let Some(body) = self.cabinet_json(&reply, "admin table")? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Table {
            #[serde(rename = "recordsFiltered", deserialize_with = "lenient::text_required")]
            records_filtered: String,
            #[serde(default)]
            data: Option<Vec<Box<RawValue>>>,
        }
        let table: Table = match serde_json::from_str(body.get()) {
            Ok(t) => t,
            // A JSON answer that is no table (`{"success": false, ...}`): not this way.
            Err(_) => return Ok(None),
        };
        let total = table
            .records_filtered
            .trim()
            .parse::<usize>()
            .map_err(|_| self.http.protocol("admin table whose row count is not a number"))?;
        Ok(Some((table.data.unwrap_or_default(), total)))
    }

    /// An admin cabinet answer to an XHR request: its JSON, or `None` when the cabinet
    /// says the action is not there for this login (`success: false`).
    fn cabinet_json(&self, reply: &Reply, what: &str) -> Result<Option<Box<RawValue>>, Error> {
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status if status.is_redirection() || status == StatusCode::FORBIDDEN => {
                return Err(self.http.auth(&format!(
                    "the {what} refused {}",
                    if self.login.is_some() {
                        "a fresh admin session"
                    } else {
                        "this client: add username and password to the credentials"
                    }
                )));
            }
            status => {
                return Err(self.http.protocol(&format!(
                    "{what} answered HTTP {}: {}",
                    status.as_u16(),
                    self.http.snippet(&reply.body)
                )));
            }
        }
        // Not quoted in errors: the 2023.2 page holds SIP secrets.
        let body: Box<RawValue> = super::parse(&self.http, reply)?;
        #[derive(Deserialize)]
        struct Flag {
            #[serde(default)]
            success: Option<Value>,
        }
        let refused = serde_json::from_str::<Flag>(body.get())
            .ok()
            .and_then(|f| f.success)
            .is_some_and(|s| matches!(s, Value::Bool(false)));
        Ok((!refused).then_some(body))
    }

    // --- 2023.2: the admin page -----------------------------------------------------------

    /// Every employee from `extensions/index`; `None` when the page holds no list (every
    /// release after 2023.2 loads it through `getNewRecords`).
    async fn page(&self) -> Result<Option<Found>, Error> {
        let url = self.http.url(INDEX);
        let reply =
            self.call(Area::Admin, Retry::Idempotent, &[], |c| c.get(&url).header(XHR.0, XHR.1)).await?;
        let Some(body) = self.cabinet_json(&reply, "admin page")? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct View<'a> {
            #[serde(borrow, default)]
            extensions: Option<&'a RawValue>,
        }
        let view: View = serde_json::from_str(body.get())
            .map_err(|e| self.http.protocol(&format!("the admin page is not an object: {e}")))?;
        let Some(extensions) = view.extensions else {
            return Ok(None);
        };
        let list = lenient::records(extensions.get().as_bytes(), &[])
            .map_err(|e| self.http.protocol(&format!("the admin page's employees: {e}")))?;
        let mut pager = Pager::new(None);
        let mut rows = Vec::new();
        let mut unreadable = Vec::new();
        let mut keys = Vec::new();
        for (key, raw) in &list.items {
            match row_of(raw) {
                Ok(Some(row)) => {
                    keys.push(row.id.clone());
                    rows.push(row);
                }
                // A user with a mobile and no internal number: no account.
                Ok(None) => {}
                Err(mut u) => {
                    u.id = u.id.or_else(|| key.clone());
                    keys.push(raw.get().to_owned());
                    unreadable.push(u);
                }
            }
        }
        pager.page(keys);
        let dialect = vec![("list shape", list.shape)];
        Ok(Some(Found {
            rows,
            accounts: Vec::new(),
            unreadable,
            complete: true,
            pages: pager.into_pages(),
            dialect,
        }))
    }

    // --- anywhere: the id scan ------------------------------------------------------------

    /// Every employee by reading `getRecord?id=` for ids 1, 2, … until every number the
    /// phone book shows is found (or, for `search`, that one), within the cap.
    async fn scan(&self, search: Option<&str>) -> Result<Found, Error> {
        let mut wanted = self.phone_book().await?;
        if let Some(number) = search {
            wanted.retain(|n| n == number);
            if wanted.is_empty() {
                // Not in the phone book: a hidden employee may still hold it; the whole
                // scan would be needed to tell, so it is not searched for.
                let dialect = vec![("scan", format!("{number} is not in the phone book"))];
                return Ok(Found {
                    rows: Vec::new(),
                    accounts: Vec::new(),
                    unreadable: Vec::new(),
                    complete: true,
                    pages: Vec::new(),
                    dialect,
                });
            }
        }
        let shown = wanted.len();
        let cap = SCAN_SLACK + SCAN_PER_NUMBER * shown;
        let batch = self.concurrency.max(1);
        let mut accounts = Vec::new();
        let mut unreadable = Vec::new();
        let mut next_id = 1usize;
        while !wanted.is_empty() && next_id <= cap {
            let ids: Vec<String> = (next_id..(next_id + batch).min(cap + 1)).map(|i| i.to_string()).collect();
            next_id += ids.len();
            let records: Vec<(String, Option<Map<String, Value>>)> = stream::iter(ids)
                .map(|id| async move { self.get_record(&id).await.map(|r| (id, r)) })
                .buffered(batch)
                .try_collect()
                .await?;
            for (id, record) in records {
                let Some(record) = record else { continue };
                let number = super::text(&record, "number").unwrap_or_default();
                wanted.remove(&number);
                if search.is_some_and(|s| s != number) {
                    continue;
                }
                // getRecord carries no `disabled`: taken as enabled (a guess, see the page).
                match account_of(id.clone(), &record, Some(true)) {
                    Ok(account) => accounts.push(account),
                    Err(problem) => {
                        unreadable.push(Unreadable { id: Some(id), extension: non_empty(number), problem })
                    }
                }
            }
        }
        let complete = wanted.is_empty();
        for number in &wanted {
            unreadable.push(Unreadable {
                id: None,
                extension: Some(number.clone()),
                problem: format!(
                    "in the phone book (getForSelect), but no getRecord of ids 1–{cap} holds it"
                ),
            });
        }
        let dialect = vec![(
            "scan",
            format!(
                "{} of {shown} phone-book numbers found reading ids 1–{}, {} employees",
                shown - wanted.len(),
                next_id - 1,
                accounts.len()
            ),
        )];
        Ok(Found { rows: Vec::new(), accounts, unreadable, complete, pages: Vec::new(), dialect })
    }

    /// The internal numbers of users the phone book shows (`getForSelect?type=internal`:
    /// SIP extensions with `show_in_phonebook` "1"; a user's typed `_USER`, a SIP
    /// extension of no user typed `SIP` and left out).
    async fn phone_book(&self) -> Result<BTreeSet<String>, Error> {
        let url = self.http.url(GET_FOR_SELECT);
        let reply = self
            .call(Area::Core, Retry::Idempotent, &[], |c| c.get(&url).query(&[("type", "internal")]))
            .await?;
        let envelope = self.envelope(&reply)?;
        if !envelope.result {
            return Err(self.http.protocol("getForSelect refused to list the phone book"));
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default, deserialize_with = "lenient::text")]
            value: Option<String>,
            #[serde(default, rename = "type", deserialize_with = "lenient::text")]
            kind: Option<String>,
        }
        let data = serde_json::to_vec(&envelope.data).unwrap_or_default();
        let items =
            lenient::records(&data, &[]).map_err(|e| self.http.protocol(&format!("getForSelect: {e}")))?;
        let mut seen = HashSet::new();
        Ok(items
            .items
            .iter()
            .filter_map(|(_, raw)| lenient::read::<Item>(raw).ok())
            .filter(|i| i.kind.as_deref() != Some("SIP"))
            .filter_map(|i| i.value)
            .filter(|v| !v.is_empty() && seen.insert(v.clone()))
            .collect())
    }
}

/// A cabinet list row: `None` for an entry that is no account (a user with a mobile and
/// no internal number: neither id nor number).
fn row_of(raw: &RawValue) -> Result<Option<Row>, Unreadable> {
    let row: RawRow = lenient::read(raw)
        .map_err(|problem| lenient::unreadable(raw, None, &["id"], &["number"], problem))?;
    let number = row.number.filter(|n| !n.is_empty());
    match (row.id.filter(|i| !i.is_empty()), number) {
        (Some(id), Some(number)) => {
            let disabled = row.disabled.unwrap_or(false) || row.status.as_deref() == Some("disabled");
            let listed = Listed::read(raw, Generation::Legacy);
            Ok(Some(Row { id, number, disabled, listed, digest: resync::digest(raw.get()) }))
        }
        (None, None) => Ok(None),
        (id, number) => Err(Unreadable {
            id,
            extension: number,
            problem: "a listed employee without an id or a number".into(),
        }),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}
