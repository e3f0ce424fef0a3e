//! The five phone systems behind one interface.
//!
//! The planner never knows which system it plans for: every backend lists its accounts in
//! the neutral [`Account`] model, says what it can do in [`Capabilities`], and carries out
//! creates, updates and deletes. The HTTP policy they share (timeouts, retries, rate limit,
//! concurrency cap, size caps, redaction) is written once, in [`http`].

pub mod any;
pub mod apio;
pub mod common;
pub mod http;
pub mod lenient;
pub mod mikopbx;
pub mod paging;
pub mod resync;
pub mod ringostat;
pub mod telphin;
pub mod thulium;

pub use any::{AnyBackend, connect};

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    fmt,
    future::Future,
    time::Duration,
};

use crate::{
    api::{BackendKind, EmployeeSpec, Membership},
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

pub use crate::plan::Unreadable;

/// A password, token or key. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The data of a PhoneSystem's credentials Secret.
#[derive(Clone, Debug, Default)]
pub struct Credentials(BTreeMap<String, Secret>);

impl Credentials {
    pub fn new(data: impl IntoIterator<Item = (String, String)>) -> Self {
        Credentials(data.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
    }

    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.0.get(key).filter(|s| !s.expose().is_empty())
    }

    /// The value of `key`, or an error naming the key the Secret lacks.
    pub fn require(&self, key: &'static str) -> Result<&Secret, Error> {
        self.get(key).ok_or(Error::Credentials { key })
    }

    /// Every value, so errors and logs can be scrubbed of them.
    pub fn values(&self) -> impl Iterator<Item = &Secret> {
        self.0.values()
    }
}

/// What went wrong talking to a phone system. Every message has been scrubbed of the
/// credentials and passwords in play before it is built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Worth trying again later: timeouts, dropped connections, 5xx, 429.
    #[error("{system} unreachable: {detail}")]
    Transient { system: BackendKind, detail: String, retry_after: Option<Duration> },
    /// The credentials were refused.
    #[error("{system} refused the credentials: {detail}")]
    Auth { system: BackendKind, detail: String },
    /// The system refused the data; `field` is the system's own field name when known.
    #[error("{system} rejected {}: {message}", field.as_deref().unwrap_or("the request"))]
    Validation { system: BackendKind, field: Option<String>, message: String },
    #[error("{system}: no account {id}")]
    NotFound { system: BackendKind, id: String },
    /// Something already holds what we tried to take (an extension, a login).
    #[error("{system}: {detail}")]
    Conflict { system: BackendKind, detail: String },
    #[error("{system} has no API to {operation}")]
    Unsupported { system: BackendKind, operation: &'static str },
    /// The answer made no sense: not JSON, wrong types, too large, claims success but
    /// holds nothing.
    #[error("{system} gave an unexpected answer: {detail}")]
    Protocol { system: BackendKind, detail: String },
    /// The credentials Secret lacks a key this backend needs.
    #[error("the credentials Secret has no key {key:?}")]
    Credentials { key: &'static str },
    /// The Employee cannot be represented on this system (e.g. a 6-digit extension on
    /// Ringostat). `field` is the Employee's field.
    #[error("{field}: {rule} on {system}")]
    Unfit { system: BackendKind, field: String, rule: String },
    /// The PhoneSystem's own settings are unusable (e.g. a malformed URL).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The Employee's `field` breaks `system`'s `rule`.
    pub fn unfit(system: BackendKind, field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Unfit { system, field: field.into(), rule: rule.into() }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }
}

/// What `list` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub accounts: Vec<Account>,
    /// `false` when the system said the list was cut short, or paging could not be
    /// followed to its end.
    pub complete: bool,
    /// Records the system listed that could not be read. The planner treats the listing
    /// as partial around them (no delete; no create on their extensions), and the pass
    /// reports them.
    pub unreadable: Vec<Unreadable>,
    /// How the system paged the list, one entry per page read (for `switchboard probe`).
    pub pages: Vec<paging::Page>,
    /// What the backend recognised of the system while listing: API generation, answer
    /// shapes (`("list shape", "{count, result}")`). For `switchboard probe`.
    pub dialect: Vec<(&'static str, String)>,
}

impl Listing {
    /// A listing of every account, read whole.
    pub fn whole(accounts: Vec<Account>) -> Self {
        Listing { accounts, complete: true, ..Listing::default() }
    }
}

/// The request quota a system announced in its last answer (`X-RateLimit-*` headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per window, when announced.
    pub limit: Option<u64>,
    /// Requests left in this window.
    pub remaining: u64,
    /// When the window starts again, when announced.
    pub reset_at: Option<std::time::Instant>,
}

/// A write, as [`Backend::cost`] weighs it.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    Create(&'a Desired),
    Update { account: &'a Account, desired: &'a Desired, changes: &'a [Change] },
    Delete(&'a Account),
}

/// What a read-only look at a live system found (`switchboard probe`).
#[derive(Debug)]
pub struct Probe {
    /// The whole listing, as a pass would read it.
    pub listing: Listing,
    /// One record read on its own (the first listed): `None` when the list was empty.
    pub sample: Option<Result<Option<Account>, Error>>,
}

/// A phone system's API, in neutral terms.
///
/// Implementations must make `update` and `delete` safe to repeat, and must not retry a
/// `create` on their own after an unclear failure: [`create_once`] does that, checking by
/// extension first, so a retry never makes a second account.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    fn capabilities(&self) -> &Capabilities;

    /// The neutral attributes of `employee` on this system, or why it cannot be there.
    /// Pure; checks the system's own rules (lengths, alphabets, number ranges).
    fn desired(&self, employee: &EmployeeSpec, membership: &Membership) -> Result<Attributes, Error>;

    /// A password that meets this system's rules, for Employees without one.
    fn generate_password(&self) -> Secret;

    /// Every account, all pages, every field the backend can read.
    fn list(&self) -> impl Future<Output = Result<Listing, Error>> + Send;

    /// Every account, all pages, as a pass needs it: `declared` holds every field the
    /// pass's Employees declare, so a system whose list lacks some fields reads a
    /// record's own detail only when one of them is declared and what it remembers of
    /// that record is stale ([`resync`]). Fields no Employee declares may be missing
    /// from the accounts. Systems whose list carries everything just list.
    fn list_for(&self, declared: &BTreeSet<Field>) -> impl Future<Output = Result<Listing, Error>> + Send {
        let _ = declared;
        self.list()
    }

    /// The account on `extension`, if any (the natural-key lookup behind safe creates).
    fn find(&self, extension: &str) -> impl Future<Output = Result<Option<Account>, Error>> + Send;

    /// Creates the account; returns it as the system now holds it.
    fn create(
        &self,
        desired: &Desired,
        password: Option<&Secret>,
    ) -> impl Future<Output = Result<Account, Error>> + Send;

    /// Sends the create, and returns the account where the answer names it. A system
    /// whose answer carries no id (Ringostat's `addStaff`) returns `None`: the caller
    /// finds all of a pass's new accounts with one listing afterwards, instead of one
    /// lookup per create. The same retry rule as for [`Backend::create`] applies.
    fn create_unresolved(
        &self,
        desired: &Desired,
        password: Option<&Secret>,
    ) -> impl Future<Output = Result<Option<Account>, Error>> + Send {
        async move { self.create(desired, password).await.map(Some) }
    }

    /// Writes `changes` to `account`. `password` is set when `changes` has the password.
    fn update(
        &self,
        account: &Account,
        desired: &Desired,
        changes: &[Change],
        password: Option<&Secret>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Deletes the account; an account already gone is not an error.
    fn delete(&self, account: &Account) -> impl Future<Output = Result<(), Error>> + Send;

    /// The request quota the system announced last, if it announces one.
    fn quota(&self) -> Option<Quota> {
        None
    }

    /// Requests `write` will send at most, so a pass under a request quota
    /// ([`Backend::quota`]) starts only the writes the quota can pay for.
    fn cost(&self, _write: Write<'_>) -> u64 {
        1
    }

    /// Requests the next listing will send (as many as the last one did): a pass under a
    /// request quota does not list when what is left cannot pay for the listing and a
    /// write after it.
    fn list_cost(&self) -> u64 {
        1
    }

    /// A read-only look at the live system, for `switchboard probe`: authenticate, list
    /// every page as a pass does, read the first record on its own. Never writes.
    /// Backends that can tell more (the API generation) add it to the listing's
    /// `dialect`.
    fn probe(&self) -> impl Future<Output = Result<Probe, Error>> + Send {
        async move {
            let listing = self.list().await?;
            let sample = match listing.accounts.first() {
                Some(first) => Some(self.find(&first.extension).await),
                None => None,
            };
            Ok(Probe { listing, sample })
        }
    }
}

/// `password`, or one `backend` makes to its system's rules: for systems that require a
/// password where an Employee names none (a person can set another on the system).
pub fn password_or_generated<'a, B: Backend>(backend: &B, password: Option<&'a Secret>) -> Cow<'a, Secret> {
    match password {
        Some(p) => Cow::Borrowed(p),
        None => Cow::Owned(backend.generate_password()),
    }
}

/// How many times [`create_once`] tries.
const CREATE_ATTEMPTS: u32 = 3;

/// Creates an account so that unclear failures never make two: after a transient error
/// (the create may have reached the system), it looks the extension up and takes what it
/// finds before trying again.
pub async fn create_once<B: Backend>(
    backend: &B,
    desired: &Desired,
    password: Option<&Secret>,
) -> Result<Account, Error> {
    attempt_create(backend, desired, password, false).await?.ok_or_else(|| {
        Error::Config(format!("create on extension {} answered no account", desired.extension))
    })
}

/// [`create_once`] through [`Backend::create_unresolved`]: `None` when the create was
/// answered without its account, to be found by the caller's next listing.
pub async fn create_once_unresolved<B: Backend>(
    backend: &B,
    desired: &Desired,
    password: Option<&Secret>,
) -> Result<Option<Account>, Error> {
    attempt_create(backend, desired, password, true).await
}

async fn attempt_create<B: Backend>(
    backend: &B,
    desired: &Desired,
    password: Option<&Secret>,
    unresolved: bool,
) -> Result<Option<Account>, Error> {
    let mut last = None;
    for attempt in 0..CREATE_ATTEMPTS {
        if attempt > 0 {
            match backend.find(&desired.extension).await {
                Ok(Some(account)) => return Ok(Some(account)),
                Ok(None) => {}
                Err(err) if told_to_wait(&err) => return Err(err),
                Err(err) => {
                    last = Some(err);
                    continue;
                }
            }
        }
        let sent = match unresolved {
            true => backend.create_unresolved(desired, password).await,
            false => backend.create(desired, password).await.map(Some),
        };
        match sent {
            Ok(account) => return Ok(account),
            // A system that said how long to wait (a spent request quota) is not asked
            // again now: each try would be one more refusal.
            Err(err) if told_to_wait(&err) => return Err(err),
            Err(err) if err.is_transient() => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or(Error::Config("create was never attempted".into())))
}

/// A transient error that came with the system's own wait (longer than the HTTP layer
/// waits for).
fn told_to_wait(err: &Error) -> bool {
    matches!(err, Error::Transient { retry_after: Some(_), .. })
}

/// The Employee field that holds the extension on `membership`: its override when set.
pub fn extension_field(membership: &Membership) -> String {
    match membership.extension {
        Some(_) => format!("spec.phoneSystems[name={}].extension", membership.name),
        None => "spec.extension".to_owned(),
    }
}

/// `Unfit` when `membership` carries a settings block for a system other than `kind`
/// (e.g. `ringostat:` settings on an entry that names a Thulium PhoneSystem).
pub fn check_settings_block(kind: BackendKind, membership: &Membership) -> Result<(), Error> {
    let blocks = [
        (BackendKind::Mikopbx, membership.mikopbx.is_some()),
        (BackendKind::Thulium, membership.thulium.is_some()),
        (BackendKind::Apio, membership.apio.is_some()),
        (BackendKind::Telphin, membership.telphin.is_some()),
        (BackendKind::Ringostat, membership.ringostat.is_some()),
    ];
    match blocks.into_iter().find(|(other, set)| *set && *other != kind) {
        Some((other, _)) => Err(Error::Unfit {
            system: kind,
            field: format!("spec.phoneSystems[name={}].{other}", membership.name),
            rule: format!("holds {other} settings, but this PhoneSystem is {kind}"),
        }),
        None => Ok(()),
    }
}
