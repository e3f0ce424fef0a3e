//! `deploy/`: renders with kustomize, grants exactly the permissions the code lists, and
//! runs the operator locked down.

use std::process::Command;

use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", &root().join(dir).display().to_string()])
        .output()
        .expect("kubectl is needed to render deploy/ (CI machines have it)");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap()
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
    let granted: Vec<(String, String, String)> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| {
            let groups: Vec<String> = rule["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap().to_owned())
                .collect();
            let resources: Vec<String> = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            let verbs: Vec<String> =
                rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            let mut all = Vec::new();
            for g in &groups {
                for r in &resources {
                    for v in &verbs {
                        all.push((g.clone(), r.clone(), v.clone()));
                    }
                }
            }
            all
        })
        .collect();
    for (g, r, v) in &granted {
        assert!(
            switchboard::rbac::allows(g, r, v),
            "the ClusterRole grants {v} on {g}/{r}, which the table lacks"
        );
    }
    let listed: usize = switchboard::rbac::PERMISSIONS.iter().map(|p| p.verbs.len()).sum();
    assert_eq!(granted.len(), listed, "the ClusterRole grants less than the table");
    assert!(!granted.iter().any(|(_, _, v)| v == "*" || v == "delete"), "no wildcard, no delete");
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
    let service = find(&docs, "Service").unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn the_namespaced_install_uses_a_role_in_the_watched_namespace() {
    let docs = kustomize("deploy/namespaced");
    assert!(find(&docs, "ClusterRole").is_none() && find(&docs, "ClusterRoleBinding").is_none());
    let role = find(&docs, "Role").unwrap();
    assert_eq!(role["metadata"]["namespace"], "telephony");
    let binding = find(&docs, "RoleBinding").unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], "switchboard-system");
    let args = &find(&docs, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().iter().any(|a| a == "--namespace=telephony"), "{args}");
}
