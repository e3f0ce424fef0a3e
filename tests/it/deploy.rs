//! `deploy/`: renders with kustomize, grants exactly the permissions the code lists, and
//! runs the operator locked down.

use std::process::Command;

use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize` of a folder of this repository, as documents.
pub(crate) fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", &root().join(dir).display().to_string()])
        .output()
        .expect("kubectl is needed to render deploy/ (CI machines have it)");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

#[test]
fn role_files_are_what_the_code_generates() {
    let cluster: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/base/clusterrole.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cluster,
        serde_json::to_value(switchboard::rbac::cluster_role()).unwrap(),
        "deploy/base/clusterrole.yaml is stale: run `cargo run -- rbac > deploy/base/clusterrole.yaml`"
    );
    let role: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root().join("deploy/namespaced/role.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        role,
        serde_json::to_value(switchboard::rbac::role("telephony")).unwrap(),
        "deploy/namespaced/role.yaml is stale: run `cargo run -- rbac --namespace telephony > deploy/namespaced/role.yaml`"
    );
    let leases: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/base/leader-election-role.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        leases,
        serde_json::to_value(switchboard::rbac::leader_election_role("switchboard-system")).unwrap(),
        "deploy/base/leader-election-role.yaml is stale: run `cargo run -- rbac --lease-namespace switchboard-system > deploy/base/leader-election-role.yaml`"
    );
}

/// Every (group, resource, verb) a role's rules grant.
fn grants(role: &Value) -> Vec<(String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
    };
    let mut all = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    all.push((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    all
}

/// What the table lists for `scope`.
fn listed(scope: switchboard::rbac::Scope) -> usize {
    switchboard::rbac::PERMISSIONS.iter().filter(|p| p.scope == scope).map(|p| p.verbs.len()).sum()
}

/// The Lease's Role and binding, in the operator's own namespace, granting just that.
fn check_leader_election_role(docs: &[Value]) {
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "switchboard-leader-election")
        .expect("the leader-election Role");
    assert_eq!(role["metadata"]["namespace"], "switchboard-system");
    let granted = grants(role);
    assert!(granted.iter().all(|(g, r, _)| g == "coordination.k8s.io" && r == "leases"), "{granted:?}");
    assert_eq!(granted.len(), listed(switchboard::rbac::Scope::Own));
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding" && d["metadata"]["name"] == "switchboard-leader-election")
        .expect("the leader-election RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "switchboard-system");
    assert_eq!(binding["roleRef"]["name"], "switchboard-leader-election");
    assert_eq!(binding["subjects"][0]["namespace"], "switchboard-system");
}

#[test]
fn the_cluster_install_renders_and_grants_only_the_table() {
    let docs = kustomize("deploy");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let role = find(&docs, "ClusterRole").unwrap();
    let granted = grants(role);
    for (g, r, v) in &granted {
        assert!(
            switchboard::rbac::allows(g, r, v),
            "the ClusterRole grants {v} on {g}/{r}, which the table lacks"
        );
    }
    assert_eq!(
        granted.len(),
        listed(switchboard::rbac::Scope::Watched),
        "the ClusterRole grants less than the table"
    );
    assert!(!granted.iter().any(|(_, _, v)| v == "*" || v == "delete"), "no wildcard, no delete");
    assert!(!granted.iter().any(|(_, r, _)| r == "leases"), "Leases only in the operator's namespace");
    check_leader_election_role(&docs);
}

#[test]
fn the_operator_runs_locked_down() {
    let docs = kustomize("deploy");
    let deploy = find(&docs, "Deployment").unwrap();
    assert_eq!(deploy["metadata"]["namespace"], "switchboard-system");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(
        c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Two replicas are safe only because of the Lease.
    let args = c["args"].as_array().unwrap();
    assert!(args.iter().any(|a| a == "--leader-election"), "{args:?}");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let env = c["env"].as_array().unwrap();
    let pod_namespace =
        env.iter().find(|e| e["name"] == "POD_NAMESPACE").expect("POD_NAMESPACE for the Lease");
    assert_eq!(pod_namespace["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    let service = find(&docs, "Service").unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn the_namespaced_install_uses_a_role_in_the_watched_namespace() {
    let docs = kustomize("deploy/namespaced");
    assert!(find(&docs, "ClusterRole").is_none() && find(&docs, "ClusterRoleBinding").is_none());
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "switchboard")
        .expect("the watched namespace's Role");
    assert_eq!(role["metadata"]["namespace"], "telephony");
    assert!(!grants(role).iter().any(|(_, r, _)| r == "leases"), "the Lease is not in the watched namespace");
    check_leader_election_role(&docs);
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding" && d["metadata"]["name"] == "switchboard")
        .expect("the watched namespace's RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "telephony");
    assert_eq!(binding["subjects"][0]["namespace"], "switchboard-system");
    let args = &find(&docs, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().iter().any(|a| a == "--namespace=telephony"), "{args}");
}
