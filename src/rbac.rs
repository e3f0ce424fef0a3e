//! The Kubernetes permissions switchboard needs: one table, from which `switchboard
//! rbac` prints the ClusterRole (or a namespaced Role) that `deploy/` holds. Tests check
//! that `deploy/` matches it and that the controller makes no request it does not list.
//!
//! Two scopes: what the operator watches and writes (Employees, PhoneSystems, Secrets,
//! Events: cluster-wide, or in the watched namespace), and its leader-election Lease,
//! which lives in the operator's own namespace. The Lease gets a Role there in every
//! install: a ClusterRole would let switchboard update every Lease in the cluster,
//! kube-controller-manager's among them.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::core::ObjectMeta;

/// One rule: API group, resource (with subresource), verbs.
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Why switchboard needs it.
    pub why: &'static str,
    pub scope: Scope,
}

/// Where a permission applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace the operator watches.
    Watched,
    /// Only the operator's own namespace.
    Own,
}

/// Everything the operator does to the API server.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "switchboard.dev",
        resource: "employees",
        verbs: &["list", "watch", "patch"],
        why: "the one watch (and cache) of Employees; the finalizer is added and removed with a JSON patch",
        scope: Scope::Watched,
    },
    Permission {
        group: "switchboard.dev",
        resource: "employees/status",
        verbs: &["patch"],
        why: "per-system entries (claims) and conditions, by server-side apply (a JSON patch removes what another writer's ownership kept)",
        scope: Scope::Watched,
    },
    Permission {
        group: "switchboard.dev",
        resource: "employees/finalizers",
        verbs: &["update"],
        why: "generated password Secrets are owned by their Employee (blockOwnerDeletion)",
        scope: Scope::Watched,
    },
    Permission {
        group: "switchboard.dev",
        resource: "phonesystems",
        verbs: &["list", "watch", "patch"],
        why: "the unit of work; its finalizer (added and removed with a JSON patch) holds it until its accounts are handled",
        scope: Scope::Watched,
    },
    Permission {
        group: "switchboard.dev",
        resource: "phonesystems/status",
        verbs: &["patch"],
        why: "conditions, counts and create intents, by server-side apply",
        scope: Scope::Watched,
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch", "create", "patch"],
        why: "metadata watched (list, watch); the data of referred credentials and passwords read with a GET; generated passwords (create, patch)",
        scope: Scope::Watched,
    },
    Permission {
        group: "",
        resource: "namespaces",
        verbs: &["get"],
        why: "a deleted PhoneSystem: is its namespace being deleted (accounts deleted) or not (accounts released)",
        scope: Scope::Watched,
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        why: "events on Employees and PhoneSystems",
        scope: Scope::Watched,
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        why: "leader election: only the holder of the Lease writes; updates are resourceVersion-guarded",
        scope: Scope::Own,
    },
];

fn rules(scope: Scope) -> Vec<PolicyRule> {
    // One rule per group and verb set, resources together: the form people review.
    let mut grouped: BTreeMap<(&str, Vec<&str>), Vec<&str>> = BTreeMap::new();
    for p in PERMISSIONS.iter().filter(|p| p.scope == scope) {
        let mut verbs = p.verbs.to_vec();
        verbs.sort_unstable();
        grouped.entry((p.group, verbs)).or_default().push(p.resource);
    }
    grouped
        .into_iter()
        .map(|((group, verbs), mut resources)| {
            resources.sort_unstable();
            PolicyRule {
                api_groups: Some(vec![group.to_owned()]),
                resources: Some(resources.into_iter().map(str::to_owned).collect()),
                verbs: verbs.into_iter().map(str::to_owned).collect(),
                ..PolicyRule::default()
            }
        })
        .collect()
}

/// The ClusterRole of an operator watching every namespace.
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta { name: Some("switchboard".into()), ..ObjectMeta::default() },
        rules: Some(rules(Scope::Watched)),
        ..ClusterRole::default()
    }
}

/// The Role of an operator watching only `namespace`.
pub fn role(namespace: &str) -> Role {
    named_role("switchboard", namespace, Scope::Watched)
}

/// The Role for the leader-election Lease, in the operator's own `namespace`.
pub fn leader_election_role(namespace: &str) -> Role {
    named_role("switchboard-leader-election", namespace, Scope::Own)
}

fn named_role(name: &str, namespace: &str, scope: Scope) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(rules(scope)),
    }
}

/// Whether the table allows `verb` on `resource` (`employees/status` form) of `group`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS.iter().any(|p| p.group == group && p.resource == resource && p.verbs.contains(&verb))
}
