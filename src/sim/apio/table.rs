//! The users, with the unique keys BroadWorks enforces indexed: a create or update checks
//! its extension and phone number in O(1), not by scanning every user (at 10,000 users
//! the scan made the simulator, not the client, the bench's bottleneck).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::User;

/// Fields whose value may belong to one user only in the whole system.
pub(super) const UNIQUE_IN_SYSTEM: &[&str] = &["phoneNumber"];

#[derive(Default)]
pub(super) struct Users {
    by_id: BTreeMap<String, User>,
    /// Unique key → the users holding it: more than one only after a `/_sim` tamper,
    /// which, like an admin editing the database, bypasses the rules.
    holders: HashMap<Key, BTreeSet<String>>,
}

/// A value that must be unique, with its scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// An extension, unique within its group.
    Extension { tenant: String, group: String, extension: String },
    /// A field of [`UNIQUE_IN_SYSTEM`].
    System { field: &'static str, value: String },
}

impl Key {
    pub(super) fn of(user: &User) -> Vec<Key> {
        let mut keys = Vec::with_capacity(1 + UNIQUE_IN_SYSTEM.len());
        let extension = user.str_field("extension");
        if !extension.is_empty() {
            keys.push(Key::Extension {
                tenant: user.tenant.clone(),
                group: user.group.clone(),
                extension: extension.to_owned(),
            });
        }
        for field in UNIQUE_IN_SYSTEM {
            let value = user.str_field(field);
            if !value.is_empty() {
                keys.push(Key::System { field, value: value.to_owned() });
            }
        }
        keys
    }
}

impl Users {
    pub(super) fn get(&self, id: &str) -> Option<&User> {
        self.by_id.get(id)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &User> {
        self.by_id.values()
    }

    pub(super) fn insert(&mut self, id: String, user: User) {
        self.remove(&id);
        for key in Key::of(&user) {
            self.holders.entry(key).or_default().insert(id.clone());
        }
        self.by_id.insert(id, user);
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<User> {
        let user = self.by_id.remove(id)?;
        for key in Key::of(&user) {
            if let Some(ids) = self.holders.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.holders.remove(&key);
                }
            }
        }
        Some(user)
    }

    /// Changes a user in place, keeping the index true.
    pub(super) fn edit<R>(&mut self, id: &str, f: impl FnOnce(&mut User) -> R) -> Option<R> {
        let mut user = self.remove(id)?;
        let result = f(&mut user);
        self.insert(id.to_owned(), user);
        Some(result)
    }

    /// The first key of `user` that a user other than `except` holds.
    pub(super) fn taken(&self, user: &User, except: Option<&str>) -> Option<Key> {
        Key::of(user).into_iter().find(|key| {
            self.holders.get(key).is_some_and(|ids| ids.iter().any(|id| Some(id.as_str()) != except))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(extension: &str, phone: &str) -> User {
        let mut fields = serde_json::Map::new();
        fields.insert("extension".into(), json!(extension));
        fields.insert("phoneNumber".into(), json!(phone));
        User { tenant: "t".into(), group: "g".into(), hidden: false, password: String::new(), fields }
    }

    #[test]
    fn keys_follow_every_change() {
        let mut users = Users::default();
        users.insert("a".into(), user("100", "+1555"));
        assert!(users.taken(&user("100", ""), None).is_some());
        assert!(users.taken(&user("100", ""), Some("a")).is_none(), "a user does not collide with itself");
        assert!(users.taken(&user("", "+1555"), None).is_some());
        users.edit("a", |u| {
            u.fields.insert("extension".into(), json!("101"));
        });
        assert!(users.taken(&user("100", ""), None).is_none(), "the old extension is free");
        assert!(users.taken(&user("101", ""), None).is_some());
        users.insert("b".into(), user("101", ""));
        users.remove("a");
        assert!(users.taken(&user("101", ""), None).is_some(), "b still holds it after a goes");
        users.remove("b");
        assert!(users.taken(&user("101", "+1555"), None).is_none());
    }
}
