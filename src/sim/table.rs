//! A simulator's table of rows by id, with the columns its rules look rows up by indexed
//! (MikoPBX: `number`, `extension`, `uniqid`, a user's extensions; Thulium: login and
//! number; Ringostat: name, e-mail, number, SIP accounts), so that a save finds its rows
//! in O(log N) instead of scanning: at 10,000 employees the scans made the simulators,
//! not the clients, the bench's bottleneck. Reads go through `Deref` to the rows; every
//! change goes through a method here, so the index cannot go stale.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::{Deref, DerefMut},
};

/// The columns a row is looked up by, each as a key string (`column:value`).
pub(in crate::sim) trait Indexed {
    fn keys(&self) -> Vec<String>;
}

#[derive(Clone, Debug)]
pub(in crate::sim) struct Table<R> {
    rows: BTreeMap<u64, R>,
    index: HashMap<String, BTreeSet<u64>>,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Self { rows: BTreeMap::new(), index: HashMap::new() }
    }
}

impl<R> Deref for Table<R> {
    type Target = BTreeMap<u64, R>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl<R: Indexed> Table<R> {
    /// The first row, in id order (as the scans it replaces found it), holding `key`.
    pub(in crate::sim) fn find(&self, key: &str) -> Option<u64> {
        self.index.get(key).and_then(|ids| ids.first().copied())
    }

    /// The first row holding `key` other than `except`.
    pub(in crate::sim) fn find_except(&self, key: &str, except: Option<u64>) -> Option<u64> {
        self.index.get(key).and_then(|ids| ids.iter().copied().find(|id| Some(*id) != except))
    }

    /// Every row holding `key`, in id order.
    pub(in crate::sim) fn all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a R> + use<'a, R> {
        self.index.get(key).into_iter().flatten().filter_map(|id| self.rows.get(id))
    }

    pub(in crate::sim) fn insert(&mut self, id: u64, row: R) {
        self.remove(&id);
        for key in row.keys() {
            self.index.entry(key).or_default().insert(id);
        }
        self.rows.insert(id, row);
    }

    pub(in crate::sim) fn remove(&mut self, id: &u64) -> Option<R> {
        let row = self.rows.remove(id)?;
        for key in row.keys() {
            if let Some(ids) = self.index.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        Some(row)
    }

    /// Row `id` to change in place; the index follows when the guard goes.
    pub(in crate::sim) fn get_mut(&mut self, id: &u64) -> Option<RowMut<'_, R>> {
        let Table { rows, index } = self;
        let row = rows.get_mut(id)?;
        let before = row.keys();
        Some(RowMut { row, index, id: *id, before })
    }

    /// Changes row `id` in place, if there is one.
    pub(in crate::sim) fn update<T>(&mut self, id: &u64, f: impl FnOnce(&mut R) -> T) -> Option<T> {
        self.get_mut(id).map(|mut row| f(&mut row))
    }

    /// Changes every row `keep` selects.
    pub(in crate::sim) fn update_where(&mut self, select: impl Fn(&R) -> bool, f: impl Fn(&mut R)) {
        let ids: Vec<u64> = self.rows.iter().filter(|(_, r)| select(r)).map(|(id, _)| *id).collect();
        for id in ids {
            self.update(&id, &f);
        }
    }

    pub(in crate::sim) fn retain(&mut self, keep: impl Fn(&R) -> bool) {
        let ids: Vec<u64> = self.rows.iter().filter(|(_, r)| !keep(r)).map(|(id, _)| *id).collect();
        for id in ids {
            self.remove(&id);
        }
    }
}

/// A row being changed: its keys are indexed again when it goes.
pub(in crate::sim) struct RowMut<'a, R: Indexed> {
    row: &'a mut R,
    index: &'a mut HashMap<String, BTreeSet<u64>>,
    id: u64,
    before: Vec<String>,
}

impl<R: Indexed> Deref for RowMut<'_, R> {
    type Target = R;

    fn deref(&self) -> &R {
        self.row
    }
}

impl<R: Indexed> DerefMut for RowMut<'_, R> {
    fn deref_mut(&mut self) -> &mut R {
        self.row
    }
}

impl<R: Indexed> Drop for RowMut<'_, R> {
    fn drop(&mut self) {
        let after = self.row.keys();
        if after == self.before {
            return;
        }
        for key in &self.before {
            if let Some(ids) = self.index.get_mut(key) {
                ids.remove(&self.id);
                if ids.is_empty() {
                    self.index.remove(key);
                }
            }
        }
        for key in after {
            self.index.entry(key).or_default().insert(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug)]
    struct Row(String);

    impl Indexed for Row {
        fn keys(&self) -> Vec<String> {
            vec![format!("n:{}", self.0)]
        }
    }

    #[test]
    fn the_index_follows_every_change() {
        let mut t = Table::default();
        t.insert(2, Row("a".into()));
        t.insert(1, Row("a".into()));
        assert_eq!(t.find("n:a"), Some(1), "the first in id order, as a scan finds it");
        assert_eq!(t.find_except("n:a", Some(1)), Some(2));
        if let Some(mut r) = t.get_mut(&1) {
            r.0 = "b".into();
        }
        assert_eq!((t.find("n:a"), t.find("n:b")), (Some(2), Some(1)));
        t.update_where(|r| r.0 == "a", |r| r.0 = "c".into());
        assert_eq!((t.find("n:a"), t.find("n:c")), (None, Some(2)));
        t.retain(|r| r.0 != "c");
        assert_eq!((t.find("n:c"), t.len()), (None, 1));
        t.update(&1, |r| r.0 = "d".into());
        assert_eq!((t.find("n:b"), t.find("n:d")), (None, Some(1)));
        t.remove(&1);
        assert!(t.find("n:d").is_none() && t.is_empty());
    }
}
