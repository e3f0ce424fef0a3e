//! Claims kept without a cluster: the Employee statuses the controller would keep in the
//! API server, held in memory and, for `switchboard sync --state FILE`, in a file written
//! atomically (a temporary file renamed over the old one), so a crash never leaves half a
//! state and never loses a recorded create intent.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use crate::{
    api::{AccountStatus, EmployeeStatus},
    engine::{Intent, IntentStore, Report},
    plan::Owner,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the state file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the state file {path} is not valid")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write the state file {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an export of Employees (`kubectl get employees -A -o yaml`): {message}")]
    Export { path: PathBuf, message: String },
}

/// Every Employee's status, keyed by `namespace/name`. Each is shared with the passes
/// that read it ([`State::shared`]): a pass over 10,000 Employees borrows their statuses
/// instead of copying them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub employees: BTreeMap<String, Arc<EmployeeStatus>>,
}

/// The claim store of the cluster-free commands.
#[derive(Debug, Default)]
pub struct State {
    path: Option<PathBuf>,
    snapshot: Mutex<Snapshot>,
}

impl State {
    /// A state that lives only as long as the process (the demo).
    pub fn in_memory() -> Self {
        State::default()
    }

    /// The state in `path`; a missing file is an empty state.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let snapshot = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::Parse { path: path.to_owned(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(source) => return Err(Error::Read { path: path.to_owned(), source }),
        };
        Ok(State { path: Some(path.to_owned()), snapshot: Mutex::new(snapshot) })
    }

    /// The claims the operator keeps in a cluster, from an export of its Employees
    /// (`kubectl get employees -A -o yaml` or `-o json`: a List, or Employee documents):
    /// what `plan` needs to judge a change as the operator would. Read-only: never saved.
    pub fn from_cluster_export(path: &Path) -> Result<Self, Error> {
        let export = |message: String| Error::Export { path: path.to_owned(), message };
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| export(e.to_string()))?;
        let mut snapshot = Snapshot::default();
        let items = docs.iter().flat_map(|doc| match doc.get("items").and_then(|i| i.as_array()) {
            Some(items) => items.iter().collect::<Vec<_>>(),
            None => vec![doc],
        });
        for item in items.filter(|i| i.get("kind").is_none_or(|k| k == "Employee") && !i.is_null()) {
            let meta = &item["metadata"];
            let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
                return Err(export("an item without metadata.namespace and metadata.name".into()));
            };
            let Some(status) = item.get("status").filter(|s| !s.is_null()) else { continue };
            let status: EmployeeStatus = serde_json::from_value(status.clone())
                .map_err(|e| export(format!("{ns}/{name}: status: {e}")))?;
            snapshot.employees.insert(format!("{ns}/{name}"), Arc::new(status));
        }
        Ok(State { path: None, snapshot: Mutex::new(snapshot) })
    }

    pub fn status(&self, owner: &Owner) -> Option<EmployeeStatus> {
        self.shared(owner).map(Arc::unwrap_or_clone)
    }

    /// The status of `owner`, shared rather than copied. A status written while this is
    /// held is copied then (the holder keeps what it read).
    pub fn shared(&self, owner: &Owner) -> Option<Arc<EmployeeStatus>> {
        self.lock().employees.get(&owner.to_string()).cloned()
    }

    /// Puts a pass's entries for `system` into the statuses, and saves.
    pub fn record(&self, system: &str, report: &Report) -> Result<(), Error> {
        let mut snapshot = self.lock();
        for (owner, entry) in &report.entries {
            set_entry(&mut snapshot, owner, system, entry.clone());
        }
        self.save(&snapshot)
    }

    /// Sets (or removes) one Employee's entry for `system`, and saves.
    pub fn set(&self, owner: &Owner, system: &str, entry: Option<AccountStatus>) -> Result<(), Error> {
        let mut snapshot = self.lock();
        set_entry(&mut snapshot, owner, system, entry);
        self.save(&snapshot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let Some(path) = &self.path else { return Ok(()) };
        let write = |source| Error::Write { path: path.clone(), source };
        let bytes = serde_json::to_vec_pretty(snapshot).map_err(|e| write(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(write)?;
        // fsync before the rename, so the rename never exposes an empty file.
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    }
}

fn set_entry(snapshot: &mut Snapshot, owner: &Owner, system: &str, entry: Option<AccountStatus>) {
    let key = owner.to_string();
    let held = snapshot.employees.entry(key.clone()).or_default();
    let current = held.phone_systems.iter().find(|s| s.name == system);
    if current == entry.as_ref() {
        // Unchanged (what a converged pass reports): no copy of a shared status.
        if held.phone_systems.is_empty() {
            snapshot.employees.remove(&key);
        }
        return;
    }
    let status = Arc::make_mut(held);
    status.phone_systems.retain(|s| s.name != system);
    if let Some(entry) = entry {
        // Exactly as many as held: statuses are kept by the thousand.
        status.phone_systems.reserve_exact(1);
        status.phone_systems.push(entry);
        status.phone_systems.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if status.phone_systems.is_empty() {
        snapshot.employees.remove(&key);
    }
}

/// Generated passwords are not kept: a state file is no place for them. Without a cluster,
/// give Employees a `passwordSecretRef` to know their passwords.
impl IntentStore for State {
    async fn record_intents(&self, system: &str, intents: &[Intent]) -> Result<(), String> {
        let mut snapshot = self.lock();
        for intent in intents {
            set_entry(&mut snapshot, &intent.owner, system, Some(intent.entry.clone()));
        }
        self.save(&snapshot).map_err(|e| crate::error_chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AccountState;

    fn entry(system: &str) -> AccountStatus {
        AccountStatus {
            name: system.into(),
            external_id: None,
            extension: Some("201".into()),
            state: AccountState::Pending,
            message: None,
            last_sync: None,
            password_fingerprint: None,
        }
    }

    #[tokio::test]
    async fn intents_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("switchboard-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);
        let owner = Owner::new("default", "ann");
        {
            let state = State::open(&path).unwrap();
            let intent = Intent { owner: owner.clone(), entry: entry("pbx"), generated: None };
            state.record_intents("pbx", &[intent]).await.unwrap();
        }
        let reopened = State::open(&path).unwrap();
        let status = reopened.status(&owner).unwrap();
        assert_eq!(status.phone_systems, vec![entry("pbx")]);
        assert!(!path.with_extension("tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removed_entry_leaves_no_empty_status() {
        let mut snapshot = Snapshot::default();
        let owner = Owner::new("default", "ann");
        set_entry(&mut snapshot, &owner, "pbx", Some(entry("pbx")));
        set_entry(&mut snapshot, &owner, "pbx", None);
        assert!(snapshot.employees.is_empty());
    }
}
