//! `switchboard release`: for when the operator is gone for good (uninstalled, its
//! namespace deleted) and its finalizers would hold Employees, PhoneSystems, their
//! namespaces and the CRDs in `Terminating` for ever. It first says what switchboard
//! leaves on each PBX (every account an Employee's status claims, and whether its
//! Employee wanted it deleted), then removes switchboard's finalizers (`switchboard.dev/…`),
//! and nothing else: no PBX is contacted, other finalizers stay.
//!
//! A running operator would put its finalizers back and delete accounts meanwhile, so the
//! command refuses while the operator's Lease is held and renewed (unless `--force`).

use std::{collections::BTreeMap, io::Write, time::Duration};

use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::{Employee, PhoneSystem, employee::DeletionPolicy};

/// The prefix of every finalizer switchboard sets.
pub const FINALIZER_PREFIX: &str = "switchboard.dev/";

/// Tries of a finalizer removal that met a concurrent change.
const RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "the operator still runs: {holder} renewed the Lease {namespace}/{name} {ago}s ago. Stop it first (kubectl -n {namespace} scale deployment/switchboard --replicas=0, or delete it), or pass --force"
    )]
    OperatorRunning { holder: String, namespace: String, name: String, ago: i64 },
    #[error("{what} kept changing while its finalizers were removed")]
    Contended { what: String },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What to release, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// One namespace, or (`None`) all of them.
    pub namespace: Option<String>,
    /// Say what would be done; change nothing.
    pub dry_run: bool,
    /// Go on although the operator's Lease looks held.
    pub force: bool,
    /// The operator's leader-election Lease: namespace, name.
    pub lease: (String, String),
    pub now: Timestamp,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Accounts switchboard leaves on the PBXs, as claimed in Employee statuses.
    pub accounts: usize,
    /// Of those, accounts whose Employee is being deleted with `deletionPolicy: Delete`.
    pub not_deleted: usize,
    pub employees: usize,
    pub phone_systems: usize,
}

/// One account switchboard leaves behind.
struct Left {
    employee: String,
    id: Option<String>,
    extension: Option<String>,
    note: Option<&'static str>,
}

/// Says what is left on each PBX, then (unless a dry run) removes switchboard's
/// finalizers.
pub async fn run(client: Client, options: &Options, out: &mut impl Write) -> Result<Summary, Error> {
    if !options.force {
        check_lease(&client, options, out).await?;
    }
    let employees: Vec<Employee> = list(&client, options.namespace.as_deref()).await?;
    let systems: Vec<PhoneSystem> = list(&client, options.namespace.as_deref()).await?;
    let mut summary = Summary::default();

    // (namespace, PhoneSystem) -> what its Employees' statuses claim there.
    let mut left: BTreeMap<(String, String), Vec<Left>> = BTreeMap::new();
    for e in &employees {
        let ns = e.namespace().unwrap_or_default();
        let deleting = e.metadata.deletion_timestamp.is_some();
        for entry in e.status.iter().flat_map(|s| &s.phone_systems) {
            let pending = entry.external_id.is_none() && entry.extension.is_some();
            if entry.external_id.is_none() && !pending {
                continue;
            }
            let note = match (deleting, e.spec.deletion_policy, pending) {
                (_, _, true) => Some(
                    "a create was sent and its answer never recorded: look for an account on this extension",
                ),
                (true, DeletionPolicy::Delete, false) => {
                    summary.not_deleted += 1;
                    Some(
                        "its Employee is being deleted with deletionPolicy: Delete; the account is NOT deleted",
                    )
                }
                (true, DeletionPolicy::Orphan, false) => Some("left as its deletionPolicy: Orphan says"),
                (false, ..) => None,
            };
            summary.accounts += 1;
            left.entry((ns.clone(), entry.name.clone())).or_default().push(Left {
                employee: e.name_any(),
                id: entry.external_id.clone(),
                extension: entry.extension.clone(),
                note,
            });
        }
    }
    for s in &systems {
        left.entry((s.namespace().unwrap_or_default(), s.name_any())).or_default();
    }

    let scope =
        options.namespace.as_deref().map_or("all namespaces".to_owned(), |ns| format!("namespace {ns}"));
    writeln!(out, "switchboard release, {scope}: what switchboard leaves on each PBX\n")?;
    for ((ns, name), accounts) in &left {
        let system = systems.iter().find(|s| s.namespace().as_deref() == Some(ns) && s.name_any() == *name);
        let what = match system.map(|s| s.spec.backend()) {
            Some(Ok(backend)) => format!("{} at {}", backend.kind(), backend.url()),
            Some(Err(_)) => "no valid backend block".to_owned(),
            None => "the PhoneSystem no longer exists".to_owned(),
        };
        writeln!(out, "PhoneSystem {ns}/{name} ({what}): {} account(s) stay", accounts.len())?;
        for a in accounts {
            let account = match (&a.id, &a.extension) {
                (Some(id), Some(ext)) => format!("account {id} (extension {ext})"),
                (Some(id), None) => format!("account {id}"),
                (None, Some(ext)) => format!("extension {ext}"),
                (None, None) => continue,
            };
            write!(out, "  {account}, Employee {}", a.employee)?;
            match a.note {
                Some(note) => writeln!(out, ": {note}")?,
                None => writeln!(out)?,
            }
        }
    }
    if summary.accounts > 0 {
        writeln!(
            out,
            "\nPasswords switchboard generated are in the Secrets <employee>-credentials, which are deleted with their Employees: copy them first if the accounts stay in use."
        )?;
    }

    let employees_held: Vec<&Employee> = employees.iter().filter(|e| held(*e)).collect();
    let systems_held: Vec<&PhoneSystem> = systems.iter().filter(|s| held(*s)).collect();
    let deleting = employees_held.iter().filter(|e| e.metadata.deletion_timestamp.is_some()).count()
        + systems_held.iter().filter(|s| s.metadata.deletion_timestamp.is_some()).count();
    if options.dry_run {
        writeln!(
            out,
            "\nDry run: would remove switchboard's finalizers from {} Employee(s) and {} PhoneSystem(s) ({deleting} being deleted); nothing changed.",
            employees_held.len(),
            systems_held.len()
        )?;
        return Ok(summary);
    }
    for e in &employees_held {
        release(&client, *e).await?;
        summary.employees += 1;
    }
    for s in &systems_held {
        release(&client, *s).await?;
        summary.phone_systems += 1;
    }
    writeln!(
        out,
        "\nRemoved switchboard's finalizers from {} Employee(s) and {} PhoneSystem(s); the {deleting} being deleted go now, unless other finalizers hold them.",
        summary.employees, summary.phone_systems
    )?;
    Ok(summary)
}

/// Refuses while the operator's Lease is held and was renewed within its duration.
async fn check_lease(client: &Client, options: &Options, out: &mut impl Write) -> Result<(), Error> {
    let (namespace, name) = &options.lease;
    let lease = match Api::<Lease>::namespaced(client.clone(), namespace).get_opt(name).await {
        Ok(lease) => lease,
        Err(kube::Error::Api(e)) if e.code == 403 => {
            writeln!(
                out,
                "note: cannot read the Lease {namespace}/{name} ({}); is the operator stopped?",
                e.message
            )?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let Some(spec) = lease.and_then(|l| l.spec) else { return Ok(()) };
    let holder = spec.holder_identity.unwrap_or_default();
    let (Some(renewed), Some(duration)) = (spec.renew_time, spec.lease_duration_seconds) else {
        return Ok(());
    };
    let ago = options.now.duration_since(renewed.0).as_secs();
    let fresh = ago < i64::from(duration);
    if !holder.is_empty() && fresh {
        return Err(Error::OperatorRunning {
            holder,
            namespace: namespace.clone(),
            name: name.clone(),
            ago: ago.max(0),
        });
    }
    Ok(())
}

async fn list<K>(client: &Client, namespace: Option<&str>) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    Ok(api.list(&ListParams::default()).await?.items)
}

fn held<K: Resource>(object: &K) -> bool {
    object.meta().finalizers.iter().flatten().any(|f| f.starts_with(FINALIZER_PREFIX))
}

/// Removes switchboard's finalizers from `object`, and only those: a merge patch of the
/// list without them, conditional on the `resourceVersion` it was read at, so a
/// concurrent change to the list is re-read rather than overwritten.
async fn release<K>(client: &Client, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let ns = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let mut current = object.clone();
    for _ in 0..RETRIES {
        if !held(&current) {
            return Ok(());
        }
        let kept: Vec<&String> =
            current.meta().finalizers.iter().flatten().filter(|f| !f.starts_with(FINALIZER_PREFIX)).collect();
        let patch = json!({"metadata": {
            "finalizers": kept,
            "resourceVersion": current.meta().resource_version,
        }});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                match api.get_opt(&name).await? {
                    Some(fresh) => current = fresh,
                    None => return Ok(()),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended { what: format!("{ns}/{name}") })
}
