//! What a resync reads of each record, on systems whose list lacks fields switchboard
//! compares (MikoPBX, APIO): each record's own read (its *detail*) is needed only for those
//! fields, so a client keeps, per account, a compact copy of the detail-only fields it
//! last read and a digest of the list entry it last saw beside them. A pass then reads a
//! record's detail only when
//!
//! - the Employees declare a field the list does not carry ([`Reading::WhenStale`];
//!   otherwise [`Reading::Never`]: the list alone is read), and
//! - the copy is missing, its list entry has changed since (an edit of the record that
//!   shows in the list: its detail may have changed with it), or it is older than the
//!   PhoneSystem's `detailRefreshInterval`.
//!
//! What this cannot see: an edit made by hand to a detail-only field alone (a forwarding
//! target, say) leaves the list entry as it was, so it is seen when the copy expires,
//! within `detailRefreshInterval` (each record's copy expires between half of it and all
//! of it, spread by id so the re-reads do not all fall on one pass). `docs/resync.md`
//! says which fields force a detail read on each system.
//!
//! The copy never decides a write on its own: deletes come from the list, which is read
//! whole every time, and a client that needs a stored value to write (MikoPBX v3's ring
//! length, its stored-password check) reads the record first unless it was read since the
//! listing began ([`Details::read_this_pass`]).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use crate::plan::Field;

/// How much of each record a listing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Every record's detail, whatever is remembered (import, probe, a client's `list`).
    Always,
    /// The detail of records whose remembered copy is missing or stale.
    WhenStale,
    /// None: no Employee declares a field only the detail holds.
    Never,
}

impl Reading {
    /// What a pass reads when the Employees declare `declared`: the details where any of
    /// those fields is one only the detail holds (`detail_only`), nothing otherwise.
    pub fn of(declared: &BTreeSet<Field>, detail_only: impl Fn(&Field) -> bool) -> Self {
        if declared.iter().any(detail_only) { Reading::WhenStale } else { Reading::Never }
    }
}

/// The default of `detailRefreshInterval`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// A digest of a list entry as the system sent it (its JSON text).
pub fn digest(entry: &str) -> u64 {
    let mut h = DefaultHasher::new();
    entry.hash(&mut h);
    h.finish()
}

/// The remembered detail-only fields of each account of one system, by account id.
#[derive(Debug)]
pub struct Details<D> {
    entries: Mutex<HashMap<Box<str>, Entry<D>>>,
    /// How long a copy is trusted at most; zero: never.
    max_age: Duration,
    /// When this was made: entries keep their age as tenths of a second from it (4
    /// bytes, not an `Instant`'s 16; 13 years).
    born: Instant,
    /// Listings begun: an entry read during the current one carries its number.
    epoch: AtomicU32,
}

#[derive(Debug)]
struct Entry<D> {
    /// The list entry seen with this detail; `None` after a write of ours, whose answer
    /// gave the detail but not the list entry (the next listing's is taken as current).
    list: Option<u64>,
    detail: D,
    /// Tenths of a second from `born` to when the detail was read.
    read_at: u32,
    /// The listing during (or after) which it was read.
    epoch: u32,
}

impl<D: Clone> Details<D> {
    pub fn new(max_age: Duration) -> Self {
        Details {
            entries: Mutex::new(HashMap::new()),
            max_age,
            born: Instant::now(),
            epoch: AtomicU32::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry<D>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u32 {
        u32::try_from(self.born.elapsed().as_millis() / 100).unwrap_or(u32::MAX)
    }

    /// A listing begins: what is read from now on is fresh for this pass.
    pub fn begin(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// How long the copy of `id` is trusted: between half of `max_age` and all of it,
    /// by a hash of the id, so copies read in one pass do not all expire in one pass.
    fn lifetime(&self, id: &str) -> Duration {
        let spread = (digest(id) % 1024) as u32;
        self.max_age / 2 + (self.max_age / 2) * spread / 1023
    }

    /// The remembered detail of `id` when it can stand for a read: read within its
    /// lifetime, and seen last with this list entry (or with none yet: then this entry
    /// becomes the one it is seen with).
    pub fn lookup(&self, id: &str, list: u64) -> Option<D> {
        if self.max_age.is_zero() {
            return None;
        }
        let lifetime = self.lifetime(id);
        let now = self.now();
        let mut entries = self.entries();
        let entry = entries.get_mut(id)?;
        let age = Duration::from_millis(u64::from(now.saturating_sub(entry.read_at)) * 100);
        if age >= lifetime || entry.list.is_some_and(|seen| seen != list) {
            return None;
        }
        entry.list = Some(list);
        Some(entry.detail.clone())
    }

    /// Remembers the detail of `id` as read now, with the list entry it was listed with
    /// (`None`: read outside a listing, by a write's answer or a lookup).
    pub fn store(&self, id: &str, list: Option<u64>, detail: D) {
        let entry = Entry { list, detail, read_at: self.now(), epoch: self.epoch.load(Ordering::Relaxed) };
        self.entries().insert(id.into(), entry);
    }

    /// Forgets `id`: its next listing reads it.
    pub fn forget(&self, id: &str) {
        self.entries().remove(id);
    }

    /// The detail of `id` if it was read since the current listing began.
    pub fn read_this_pass(&self, id: &str) -> Option<D> {
        let epoch = self.epoch.load(Ordering::Relaxed);
        self.entries().get(id).filter(|e| e.epoch == epoch).map(|e| e.detail.clone())
    }

    /// The detail of `id`, however old.
    pub fn any(&self, id: &str) -> Option<D> {
        self.entries().get(id).map(|e| e.detail.clone())
    }

    /// Keeps only the accounts a whole listing showed.
    pub fn retain(&self, listed: &HashSet<&str>) {
        self.entries().retain(|id, _| listed.contains(&**id));
    }

    /// Accounts remembered.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_stands_for_a_read_while_its_list_entry_holds() {
        let details = Details::new(Duration::from_secs(3600));
        details.begin();
        details.store("1", Some(digest("{\"a\":1}")), "fwd 100");
        assert_eq!(details.lookup("1", digest("{\"a\":1}")), Some("fwd 100"));
        assert_eq!(details.lookup("1", digest("{\"a\":2}")), None, "the entry changed: read again");
        assert_eq!(details.lookup("2", digest("{\"a\":1}")), None, "never read");
    }

    #[test]
    fn a_copy_from_a_write_takes_the_next_list_entry_as_its_own() {
        let details = Details::new(Duration::from_secs(3600));
        details.store("1", None, 7);
        assert_eq!(details.lookup("1", 42), Some(7));
        assert_eq!(details.lookup("1", 42), Some(7));
        assert_eq!(details.lookup("1", 43), None);
    }

    #[test]
    fn no_copy_is_trusted_with_a_zero_interval_and_none_past_its_lifetime() {
        let details = Details::new(Duration::ZERO);
        details.store("1", Some(1), ());
        assert_eq!(details.lookup("1", 1), None);

        let details = Details::new(Duration::from_secs(10));
        details.store("1", Some(1), ());
        details.entries().get_mut("1").unwrap().read_at = 0;
        let lifetime = details.lifetime("1");
        assert!(lifetime >= Duration::from_secs(5) && lifetime <= Duration::from_secs(10));
        // Read 11 s before now: older than any lifetime.
        let mut details = details;
        details.born -= Duration::from_secs(11);
        assert_eq!(details.lookup("1", 1), None);
    }

    #[test]
    fn lifetimes_spread_between_half_and_all_of_the_interval() {
        let details: Details<()> = Details::new(Duration::from_secs(1000));
        let lifetimes: Vec<Duration> = (0..200).map(|i| details.lifetime(&i.to_string())).collect();
        assert!(lifetimes.iter().all(|l| *l >= Duration::from_secs(500) && *l <= Duration::from_secs(1000)));
        let early = lifetimes.iter().filter(|l| **l < Duration::from_secs(750)).count();
        assert!((50..150).contains(&early), "{early} of 200 in the first half");
    }

    #[test]
    fn read_this_pass_means_since_the_listing_began() {
        let details = Details::new(Duration::from_secs(3600));
        details.begin();
        details.store("1", Some(1), "a");
        assert_eq!(details.read_this_pass("1"), Some("a"));
        details.begin();
        assert_eq!(details.read_this_pass("1"), None);
        assert_eq!(details.any("1"), Some("a"));
        details.forget("1");
        assert_eq!(details.any("1"), None);
    }

    #[test]
    fn retain_drops_what_the_listing_no_longer_shows() {
        let details = Details::new(Duration::from_secs(3600));
        for id in ["1", "2", "3"] {
            details.store(id, None, ());
        }
        details.retain(&["1", "3"].into_iter().collect());
        assert_eq!(details.len(), 2);
        assert!(details.any("2").is_none());
    }
}
