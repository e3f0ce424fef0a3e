//! `switchboard probe`: a read-only look at a live phone system before switchboard writes
//! to it. Authenticates, lists every page as a pass would, reads one record on its own,
//! and says what it found: the API generation and answer shapes the backend recognised,
//! how paging behaved, what switchboard can do there, the request quota the system
//! announces, and every record it could not read. It never writes.

use std::{fmt, time::Instant};

use serde::Serialize;

use crate::{
    api::PhoneSystem,
    backends::{self, Backend, Credentials, Quota, http::Settings, paging},
    plan::{Account, Field, Unreadable},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PhoneSystem cannot even be turned into a client (bad URL, missing key).
    #[error(transparent)]
    Backend(#[from] backends::Error),
}

/// What the probe found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub system: String,
    pub backend: String,
    pub url: String,
    /// The listing failed: authentication, reachability or an answer not understood.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub dialect: Vec<(String, String)>,
    pub paging: String,
    pub accounts: usize,
    pub complete: bool,
    pub unreadable: Vec<Unreadable>,
    /// The first account, read on its own, as switchboard sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<Account>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_error: Option<String>,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSeen>,
    /// Why switchboard cannot manage the system; empty when it can.
    pub problems: Vec<String>,
}

/// What switchboard can do on the system.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub create: bool,
    pub update: bool,
    pub delete: bool,
    pub readable: Vec<String>,
    pub writable: Vec<String>,
}

/// The quota in the system's last answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSeen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_in_seconds: Option<u64>,
}

impl QuotaSeen {
    fn new(quota: Quota, now: Instant) -> Self {
        QuotaSeen {
            limit: quota.limit,
            remaining: quota.remaining,
            resets_in_seconds: quota.reset_at.map(|at| at.saturating_duration_since(now).as_secs()),
        }
    }
}

impl Report {
    /// Whether switchboard can manage the system as found.
    pub fn manageable(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Probes `system` with `credentials`. Errors of the system itself end up in the report;
/// only a PhoneSystem that cannot make a client is an error.
pub async fn run(
    system: &PhoneSystem,
    credentials: &Credentials,
    settings: Settings,
) -> Result<Report, Error> {
    let backend = backends::connect(&system.spec, credentials, settings)?;
    let block = system.spec.backend().map_err(|e| backends::Error::Config(e.to_string()))?;
    let caps = backend.capabilities();
    let names = |fields: &std::collections::BTreeSet<Field>| fields.iter().map(ToString::to_string).collect();
    let mut report = Report {
        system: system.metadata.name.clone().unwrap_or_default(),
        backend: backend.kind().to_string(),
        url: block.url().to_owned(),
        error: None,
        dialect: Vec::new(),
        paging: String::new(),
        accounts: 0,
        complete: false,
        unreadable: Vec::new(),
        sample: None,
        sample_error: None,
        capabilities: Capabilities {
            create: caps.create,
            update: caps.update,
            delete: caps.delete,
            readable: names(&caps.readable),
            writable: names(&caps.writable),
        },
        quota: None,
        problems: Vec::new(),
    };
    match backend.probe().await {
        Err(e) => {
            report.problems.push(format!("cannot list the accounts: {e}"));
            report.error = Some(e.to_string());
        }
        Ok(found) => {
            // What a backend can compare may depend on what its listing showed
            // (Ringostat's departments as bare ids).
            report.capabilities.readable = names(&backend.capabilities().readable);
            let listing = found.listing;
            report.dialect = listing.dialect.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            report.paging = paging::describe(&listing.pages);
            report.accounts = listing.accounts.len();
            report.complete = listing.complete;
            report.unreadable = listing.unreadable;
            if !report.complete {
                report
                    .problems
                    .push("the listing was cut short: switchboard would neither create nor delete".into());
            }
            if !report.unreadable.is_empty() {
                report.problems.push(format!(
                    "{} record(s) could not be read: switchboard would delete nothing, nor create on their extensions",
                    report.unreadable.len()
                ));
            }
            match found.sample {
                None => {}
                Some(Ok(Some(account))) => report.sample = Some(account),
                Some(Ok(None)) => {
                    let problem = "the first account listed was not found when looked up by its extension: a create retried after a lost answer could not find what it made";
                    report.problems.push(problem.into());
                    report.sample_error = Some(problem.into());
                }
                Some(Err(e)) => {
                    report.problems.push(format!("cannot read one account on its own: {e}"));
                    report.sample_error = Some(e.to_string());
                }
            }
        }
    }
    report.quota = backend.quota().map(|q| QuotaSeen::new(q, Instant::now()));
    Ok(report)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "system      {} ({}) at {}", self.system, self.backend, self.url)?;
        if let Some(error) = &self.error {
            writeln!(f, "listing     failed: {error}")?;
        } else {
            writeln!(
                f,
                "listing     {} account(s), {}",
                self.accounts,
                if self.complete { "complete" } else { "cut short" }
            )?;
            writeln!(f, "paging      {}", self.paging)?;
            for (aspect, value) in &self.dialect {
                writeln!(f, "dialect     {aspect}: {value}")?;
            }
        }
        for u in &self.unreadable {
            writeln!(f, "unreadable  {u}")?;
        }
        if let Some(a) = &self.sample {
            let fields: Vec<String> = a
                .attributes
                .declared()
                .iter()
                .filter_map(|field| Some(format!("{field}={}", a.attributes.get(field)?)))
                .collect();
            writeln!(f, "one record  id {} on extension {}: {}", a.id, a.extension, fields.join(", "))?;
        }
        if let Some(e) = &self.sample_error {
            writeln!(f, "one record  {e}")?;
        }
        let c = &self.capabilities;
        let yes = |b: bool| if b { "yes" } else { "no (a person does it; switchboard says what)" };
        writeln!(f, "create      {}", yes(c.create))?;
        writeln!(f, "update      {}", yes(c.update))?;
        writeln!(f, "delete      {}", yes(c.delete))?;
        writeln!(f, "reads       {}", c.readable.join(", "))?;
        writeln!(f, "writes      {}", c.writable.join(", "))?;
        match &self.quota {
            None => writeln!(f, "quota       none announced")?,
            Some(q) => {
                let limit = q.limit.map_or("?".to_owned(), |l| l.to_string());
                let reset = q.resets_in_seconds.map_or(String::new(), |s| format!(", resets in {s} s"));
                writeln!(f, "quota       {} of {limit} requests left{reset}", q.remaining)?;
            }
        }
        if self.problems.is_empty() {
            writeln!(f, "verdict     switchboard can manage this system")
        } else {
            writeln!(f, "verdict     switchboard cannot manage this system as it is:")?;
            for p in &self.problems {
                writeln!(f, "            - {p}")?;
            }
            Ok(())
        }
    }
}
