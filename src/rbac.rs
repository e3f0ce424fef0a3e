//! The Kubernetes permissions switchboard needs: one table, from which `switchboard
//! rbac` prints the ClusterRole (or a namespaced Role) that `deploy/` holds. Tests check
//! that `deploy/` matches it and that the controller makes no request it does not list.

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
}

/// Everything the operator does to the API server.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "switchboard.dev",
        resource: "employees",
        verbs: &["get", "list", "watch", "patch"],
        why: "watch cache; the finalizer is added and removed with a JSON patch",
    },
    Permission {
        group: "switchboard.dev",
        resource: "employees/status",
        verbs: &["update"],
        why: "per-system entries (claims) and conditions, read-modify-write with resourceVersion",
    },
    Permission {
        group: "switchboard.dev",
        resource: "employees/finalizers",
        verbs: &["update"],
        why: "generated password Secrets are owned by their Employee (blockOwnerDeletion)",
    },
    Permission {
        group: "switchboard.dev",
        resource: "phonesystems",
        verbs: &["get", "list", "watch"],
        why: "the unit of work",
    },
    Permission {
        group: "switchboard.dev",
        resource: "phonesystems/status",
        verbs: &["patch"],
        why: "conditions and counts",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch", "create", "patch"],
        why: "credentials and passwords (read); generated passwords (create, patch)",
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        why: "events on Employees and PhoneSystems",
    },
];

fn rules() -> Vec<PolicyRule> {
    // One rule per group and verb set, resources together: the form people review.
    let mut grouped: BTreeMap<(&str, Vec<&str>), Vec<&str>> = BTreeMap::new();
    for p in PERMISSIONS {
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
        rules: Some(rules()),
        ..ClusterRole::default()
    }
}

/// The Role of an operator watching only `namespace`.
pub fn role(namespace: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some("switchboard".into()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(rules()),
    }
}

/// Whether the table allows `verb` on `resource` (`employees/status` form) of `group`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS.iter().any(|p| p.group == group && p.resource == resource && p.verbs.contains(&verb))
}
