//! Server-side apply on the fake API server, as a real kube-apiserver does it: field
//! ownership in `managedFields`, list maps merged by their keys (from the CRD's schema),
//! a manager's apply removing what it applied before and no longer does, 409 conflicts
//! on another manager's fields unless forced, and shared ownership of equal values.
//! These are the rules the controller's status writes rely on.

use std::collections::BTreeSet;

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use switchboard::api::{Employee, PhoneSystem};

use crate::support::apiserver::{self, FakeApiServer};

const NS: &str = "team";

async fn jan() -> (FakeApiServer, Api<Employee>) {
    let server = apiserver::start().await;
    let api: Api<Employee> = Api::namespaced(server.client(), NS);
    let jan: Employee = serde_json::from_value(json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
        "metadata": {"name": "jan", "namespace": NS},
        "spec": {"givenName": "Jan", "familyName": "Kowalski", "email": "jan@example.com", "extension": "101",
                 "phoneSystems": [{"name": "a"}, {"name": "b"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &jan).await.unwrap();
    (server, api)
}

fn entry(system: &str, state: &str) -> Value {
    json!({"name": system, "state": state, "externalId": format!("{system}-1")})
}

/// An apply of `status` to jan's status subresource.
fn status(status: Value) -> Value {
    json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
           "metadata": {"name": "jan", "namespace": NS}, "status": status})
}

/// An apply that sets nothing of jan's status. (`status: {}` would claim `status`
/// itself: an empty map in an applied configuration is a field of its own.)
fn nothing() -> Value {
    json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee", "metadata": {"name": "jan", "namespace": NS}})
}

async fn apply(api: &Api<Employee>, manager: &str, force: bool, body: Value) -> kube::Result<Employee> {
    let mut params = PatchParams::apply(manager);
    params.force = force;
    api.patch_status("jan", &params, &Patch::Apply(&body)).await
}

fn entries(e: &Employee) -> Vec<(String, String)> {
    let s = e.status.as_ref().map(|s| s.phone_systems.clone()).unwrap_or_default();
    s.into_iter().map(|p| (p.name, format!("{:?}", p.state))).collect()
}

/// The managers of `e` with their operation and subresource.
fn managers<K: kube::Resource>(e: &K) -> BTreeSet<(String, String, String)> {
    e.managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The `fieldsV1` of `manager`'s entry.
fn fields_of(e: &Employee, manager: &str) -> Value {
    let m = e.managed_fields().iter().find(|m| m.manager.as_deref() == Some(manager)).cloned();
    m.and_then(|m| m.fields_v1).map(|f| f.0).unwrap_or(Value::Null)
}

#[tokio::test]
async fn two_managers_own_one_entry_each_of_a_list_map_and_drop_only_their_own() {
    let (_server, api) = jan().await;
    apply(&api, "pass-a", true, status(json!({"phoneSystems": [entry("a", "Pending")]}))).await.unwrap();
    let e =
        apply(&api, "pass-b", true, status(json!({"phoneSystems": [entry("b", "InSync")]}))).await.unwrap();
    assert_eq!(entries(&e), [("a".into(), "Pending".into()), ("b".into(), "InSync".into())]);

    // a's entry changes: b's stays.
    let e =
        apply(&api, "pass-a", true, status(json!({"phoneSystems": [entry("a", "InSync")]}))).await.unwrap();
    assert_eq!(entries(&e), [("a".into(), "InSync".into()), ("b".into(), "InSync".into())]);
    assert_eq!(
        fields_of(&e, "pass-a"),
        json!({"f:status": {"f:phoneSystems": {"k:{\"name\":\"a\"}": {".": {}, "f:externalId": {}, "f:name": {}, "f:state": {}}}}}),
        "ownership as the real server writes it"
    );
    assert!(managers(&e).contains(&("pass-a".into(), "Apply".into(), "status".into())));

    // a applies without its entry: the entry goes, b's stays, and so does a's record.
    let e = apply(&api, "pass-a", true, nothing()).await.unwrap();
    assert_eq!(entries(&e), [("b".into(), "InSync".into())]);
    assert!(!managers(&e).iter().any(|(m, _, _)| m == "pass-a"), "a manager that owns nothing has no entry");
}

#[tokio::test]
async fn changing_another_managers_field_is_a_conflict_unless_forced() {
    let (server, api) = jan().await;
    let conditions = |reason: &str| {
        status(json!({"conditions": [{"type": "Ready", "status": "True", "reason": reason, "message": "",
                                       "lastTransitionTime": "2030-01-01T00:00:00Z"}]}))
    };
    apply(&api, "employees", false, conditions("InSync")).await.unwrap();
    let before = server.resource_version();
    let Err(kube::Error::Api(e)) = apply(&api, "intruder", false, conditions("Other")).await else {
        panic!("an apply over another manager's field must fail")
    };
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("conflict with \"employees\"")
            && e.message.contains(".status.conditions[type=\"Ready\"].reason"),
        "{}",
        e.message
    );
    assert_eq!(server.resource_version(), before, "nothing written");

    // Forced: the field changes hands.
    let e = apply(&api, "intruder", true, conditions("Other")).await.unwrap();
    let reason = &e.status.as_ref().unwrap().conditions[0].reason;
    assert_eq!(reason, "Other");
    let theirs = fields_of(&e, "employees").to_string();
    assert!(!theirs.contains("f:reason"), "the field left its old manager: {theirs}");
    assert!(fields_of(&e, "intruder").to_string().contains("f:reason"));
}

#[tokio::test]
async fn an_equal_value_is_shared_and_outlives_one_owners_apply_that_drops_it() {
    let (_server, api) = jan().await;
    // A merge patch (an update) writes entry a, as an older switchboard's PUT did.
    let patch = json!({"status": {"phoneSystems": [entry("a", "InSync")]}});
    let e = api.patch_status("jan", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert!(managers(&e).iter().any(|(_, op, sub)| op == "Update" && sub == "status"), "{:?}", managers(&e));

    // The same values applied: no conflict, both own them.
    let e =
        apply(&api, "pass-a", false, status(json!({"phoneSystems": [entry("a", "InSync")]}))).await.unwrap();
    assert_eq!(entries(&e), [("a".into(), "InSync".into())]);
    // Dropped by the applier: still owned by the updater, so it stays.
    let e = apply(&api, "pass-a", true, nothing()).await.unwrap();
    assert_eq!(entries(&e), [("a".into(), "InSync".into())], "what someone else owns stays");
}

#[tokio::test]
async fn a_resource_version_in_an_apply_is_a_precondition_and_a_no_op_writes_nothing() {
    let (server, api) = jan().await;
    let e =
        apply(&api, "pass-a", true, status(json!({"phoneSystems": [entry("a", "InSync")]}))).await.unwrap();
    let rv = e.resource_version().unwrap();
    let again =
        apply(&api, "pass-a", true, status(json!({"phoneSystems": [entry("a", "InSync")]}))).await.unwrap();
    assert_eq!(again.resource_version().unwrap(), rv, "the same apply again is not a write");
    assert_eq!(server.resource_version().to_string(), rv);

    let mut stale = status(json!({"phoneSystems": [entry("a", "Conflict")]}));
    stale["metadata"]["resourceVersion"] = json!("1");
    let Err(kube::Error::Api(e)) = apply(&api, "pass-a", true, stale).await else { panic!("a stale apply") };
    assert_eq!(e.code, 409);
    let mut current = status(json!({"phoneSystems": [entry("a", "Conflict")]}));
    current["metadata"]["resourceVersion"] = json!(rv);
    let e = apply(&api, "pass-a", true, current).await.unwrap();
    assert_eq!(entries(&e), [("a".into(), "Conflict".into())]);
}

#[tokio::test]
async fn updates_take_what_they_change_and_removed_fields_leave_every_owner() {
    let (_server, api) = jan().await;
    apply(&api, "pass-a", true, status(json!({"phoneSystems": [entry("a", "Pending")]}))).await.unwrap();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/status/phoneSystems/0/name", "value": "a"},
        {"op": "remove", "path": "/status/phoneSystems/0/externalId"},
        {"op": "replace", "path": "/status/phoneSystems/0/state", "value": "InSync"},
    ]))
    .unwrap();
    let params = PatchParams { field_manager: Some("fixer".into()), ..PatchParams::default() };
    let e = api.patch_status("jan", &params, &Patch::Json::<()>(ops)).await.unwrap();
    let a = fields_of(&e, "pass-a").to_string();
    assert!(!a.contains("f:state") && !a.contains("f:externalId"), "taken or gone: {a}");
    assert!(fields_of(&e, "fixer").to_string().contains("f:state"));
    assert!(managers(&e).contains(&("fixer".into(), "Update".into(), "status".into())));
}

#[tokio::test]
async fn the_main_resource_and_its_status_are_owned_apart() {
    let server = apiserver::start().await;
    let api: Api<PhoneSystem> = Api::namespaced(server.client(), NS);
    let system = json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "PhoneSystem",
                        "metadata": {"name": "pbx", "namespace": NS, "labels": {"team": "a"}},
                        "spec": {"mikopbx": switchboard::sim::backend_block(switchboard::api::BackendKind::Mikopbx, "http://127.0.0.1:1")}});
    let created = api.patch("pbx", &PatchParams::apply("manifests"), &Patch::Apply(&system)).await.unwrap();
    assert_eq!(managers(&created), [("manifests".into(), "Apply".into(), String::new())].into());
    let st = json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "PhoneSystem",
                    "metadata": {"name": "pbx", "namespace": NS}, "status": {"observedGeneration": 1}});
    let written = api
        .patch_status("pbx", &PatchParams::apply("switchboard").force(), &Patch::Apply(&st))
        .await
        .unwrap();
    assert_eq!(written.status.unwrap().observed_generation, Some(1));
    // The manifests' next apply (without status) leaves the status alone.
    let again = api.patch("pbx", &PatchParams::apply("manifests"), &Patch::Apply(&system)).await.unwrap();
    assert_eq!(again.status.as_ref().unwrap().observed_generation, Some(1));
    assert_eq!(again.labels().get("team").map(String::as_str), Some("a"));
}
