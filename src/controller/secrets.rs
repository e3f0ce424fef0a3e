//! Secrets: watched as metadata only, their data read with a GET when something refers
//! to them, as cert-manager does.
//!
//! The watch ([`super::watches`]) keeps every visible Secret's metadata (name,
//! resourceVersion, labels; not `kubectl apply`'s copy of the data), so a change of a
//! referred Secret still triggers its passes and is noticed by its resourceVersion, but
//! no Secret's data is ever held unless it is referred to:
//! - a PhoneSystem's `credentialsSecretRef`: read when its backend is built (once, then
//!   again only when the Secret's resourceVersion moves); the backend keeps the decoded
//!   credentials it logs in with, nothing else of the Secret;
//! - an Employee's `passwordSecretRef`: the referred key is read before a pass that needs
//!   it and kept, decoded, while some Employee refers to it, re-read when the Secret's
//!   resourceVersion moves; the other keys of the Secret are dropped at once.
//!
//! The generated `<employee>-credentials` Secrets are written, never read.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
};

use futures_util::StreamExt;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, ResourceExt, core::PartialObjectMeta, runtime::reflector::ObjectRef};

use super::{Context, Error};
use crate::{
    api::{Employee, PhoneSystem},
    backends::Secret as Password,
    engine::{EmployeeView, Vault},
    plan::Owner,
};

/// Metadata of every Secret the operator can see.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// GETs of Secrets at once, when a pass needs many passwords for the first time.
const READS_AT_ONCE: usize = 16;

/// Whether the version we read (`held`) is current, given the watch's (`seen`).
pub fn current(held: &str, seen: &str) -> bool {
    // The GET may be newer than the watch (KEP-5504: versions are integers).
    held == seen || matches!((held.parse::<u64>(), seen.parse::<u64>()), (Ok(h), Ok(s)) if h >= s)
}

/// The resourceVersion of Secret `ns/name` as the watch last saw it; `None`: it does not
/// exist (as far as the watch knows).
pub fn version_of(ctx: &Context, ns: &str, name: &str) -> Option<String> {
    let meta = ctx.secrets.get(&ObjectRef::new(name).within(ns))?;
    Some(meta.resource_version().unwrap_or_default())
}

/// Reads a Secret's data: `None` when it is gone. Values are decoded as UTF-8 (lossily):
/// what the backends log in with and the PBXs take as passwords.
pub async fn read(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<(String, BTreeMap<String, String>)>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api.get_opt(name).await? else { return Ok(None) };
    let version = secret.resource_version().unwrap_or_default();
    let mut data: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    // Only a write sets `stringData`; a server folds it into `data`. Kept for servers
    // that echo it.
    data.extend(secret.string_data.unwrap_or_default());
    Ok(Some((version, data)))
}

/// One referred Secret: the keys Employees refer to, decoded (`None`: the Secret has no
/// such key), at the version read.
struct Held {
    version: String,
    keys: BTreeMap<String, Option<Password>>,
}

/// The passwords of `passwordSecretRef`s, held while referred to.
#[derive(Default)]
pub struct Passwords {
    held: Mutex<HashMap<(String, String), Held>>,
}

impl Passwords {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many Secrets' values are held, and how many values: for the tests and the
    /// `switchboard_secrets_held` gauge.
    pub fn held_counts(&self) -> (usize, usize) {
        let held = self.held();
        (held.len(), held.values().map(|h| h.keys.values().flatten().count()).sum())
    }

    /// Lets go of every Secret no Employee (not being deleted) refers to.
    pub fn retain_referred(&self, employees: &[std::sync::Arc<Employee>]) {
        let referred: BTreeSet<(String, String)> = employees
            .iter()
            .filter(|e| e.metadata.deletion_timestamp.is_none())
            .filter_map(|e| Some((e.namespace()?, e.spec.password_secret_ref.as_ref()?.name.clone())))
            .collect();
        self.held().retain(|key, _| referred.contains(key));
    }

    fn password(&self, ns: &str, name: &str, key: &str) -> Option<Password> {
        let held = self.held();
        held.get(&(ns.to_owned(), name.to_owned()))?.keys.get(key)?.clone()
    }
}

/// Makes sure the passwords the Employees of a pass refer to are held at the Secrets'
/// current versions (a GET for each that is not), and lets go of those no Employee of
/// the namespace refers to any more.
pub async fn prepare(ctx: &Context, ns: &str, views: &[EmployeeView<'_>]) -> Result<(), Error> {
    // An Employee being deleted needs no password: its account is deleted or left.
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in views.iter().filter(|v| !v.deleting) {
        if let Some(r) = &v.spec.password_secret_ref {
            wanted.entry(r.name.clone()).or_default().insert(r.key.clone());
        }
    }
    let referred: BTreeSet<String> = ctx
        .employees
        .store()
        .state()
        .iter()
        .filter(|e| e.namespace().as_deref() == Some(ns) && e.metadata.deletion_timestamp.is_none())
        .filter_map(|e| e.spec.password_secret_ref.as_ref().map(|r| r.name.clone()))
        .collect();
    let stale: Vec<(String, BTreeSet<String>)> = {
        let mut held = ctx.passwords.held();
        held.retain(|(held_ns, name), _| {
            held_ns != ns || referred.contains(name) || wanted.contains_key(name)
        });
        wanted
            .into_iter()
            .filter(|(name, keys)| {
                let seen = version_of(ctx, ns, name);
                match (held.get(&(ns.to_owned(), name.clone())), seen) {
                    (_, None) => {
                        held.remove(&(ns.to_owned(), name.clone()));
                        false
                    }
                    (Some(h), Some(seen)) => {
                        !current(&h.version, &seen) || !keys.iter().all(|k| h.keys.contains_key(k))
                    }
                    (None, Some(_)) => true,
                }
            })
            .collect()
    };
    let reads = futures_util::stream::iter(stale)
        .map(|(name, keys)| async move {
            let read = read(ctx, ns, &name).await?;
            Ok::<_, Error>((name, keys, read))
        })
        .buffer_unordered(READS_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut held = ctx.passwords.held();
    for result in reads {
        let (name, keys, read) = result?;
        let key = (ns.to_owned(), name);
        match read {
            None => {
                held.remove(&key);
            }
            Some((version, mut data)) => {
                let keys = keys
                    .into_iter()
                    .map(|k| {
                        let value = data.remove(&k).filter(|p| !p.is_empty()).map(Password::new);
                        (k, value)
                    })
                    .collect();
                held.insert(key, Held { version, keys });
            }
        }
    }
    Ok(())
}

/// Passwords from the Employees' `passwordSecretRef`s, as [`prepare`] left them.
pub struct HeldVault<'a> {
    pub ctx: &'a Context,
    pub namespace: &'a str,
}

impl Vault for HeldVault<'_> {
    fn password(&self, owner: &Owner) -> Option<Password> {
        let e = self.ctx.employees.get(&ObjectRef::<Employee>::new(&owner.name).within(self.namespace))?;
        let r = e.spec.password_secret_ref.as_ref()?;
        self.ctx.passwords.password(self.namespace, &r.name, &r.key)
    }

    fn missing(&self, owner: &Owner) -> Option<String> {
        let e = self.ctx.employees.get(&ObjectRef::<Employee>::new(&owner.name).within(self.namespace))?;
        let r = e.spec.password_secret_ref.as_ref()?;
        let ns = self.namespace;
        let held = self.ctx.passwords.held();
        match held.get(&(ns.to_owned(), r.name.clone())) {
            None => Some(format!("Secret {ns}/{} (key {}) not found", r.name, r.key)),
            Some(h) if !matches!(h.keys.get(&r.key), Some(Some(_))) => {
                Some(format!("Secret {ns}/{} has no key {} (or it is empty)", r.name, r.key))
            }
            Some(_) => None,
        }
    }
}

/// The PhoneSystems a Secret matters to: by credentials, or by an Employee's password.
pub fn systems_of_secret(ctx: &Context, secret: &SecretMeta) -> Vec<ObjectRef<PhoneSystem>> {
    let (Some(ns), name) = (secret.namespace(), secret.name_any()) else { return Vec::new() };
    let mut refs: Vec<ObjectRef<PhoneSystem>> = ctx
        .systems
        .store()
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| p.spec.credentials_secret_ref.as_ref().is_some_and(|r| r.name == name))
        .map(|p| ObjectRef::from(p.as_ref()))
        .collect();
    for e in ctx.employees.store().state() {
        if e.namespace().as_deref() == Some(ns.as_str())
            && e.spec.password_secret_ref.as_ref().is_some_and(|r| r.name == name)
        {
            refs.extend(super::systems_of_employee(&e));
        }
    }
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs.dedup();
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_read_is_current_until_the_watch_sees_a_newer_one() {
        assert!(current("42", "42"));
        assert!(current("43", "42"), "the GET was newer than the watch");
        assert!(!current("42", "43"));
        assert!(!current("a", "b"), "opaque versions: equality only");
        assert!(current("a", "a"));
    }
}
