//! The fake API server's namespaces (`tests/support/apiserver/namespaces.rs`): what a
//! real kube-apiserver with kube-controller-manager does on `kubectl delete namespace`.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use switchboard::api::Employee;

use crate::support::apiserver::{self, Options};

const WAIT: Duration = Duration::from_secs(5);

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn a_deleted_namespace_terminates_refuses_new_content_and_waits_for_finalizers() {
    let fake = apiserver::start_with(Options {
        namespace_recheck: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let client = fake.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let default = namespaces.get("default").await.expect("every cluster has default");
    assert_eq!(default.status.and_then(|s| s.phase).as_deref(), Some("Active"));

    let doomed = Namespace {
        metadata: ObjectMeta { name: Some("doomed".into()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    let created = namespaces.create(&PostParams::default(), &doomed).await.expect("create a namespace");
    assert_eq!(created.spec.and_then(|s| s.finalizers), Some(vec!["kubernetes".to_owned()]));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    config_maps.create(&PostParams::default(), &config_map("plain")).await.expect("create");
    let employees: Api<Employee> = Api::namespaced(client.clone(), "doomed");
    let held: Employee = serde_json::from_value(json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
        "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]},
        "spec": {"givenName": "Jan", "familyName": "Kowalski", "email": "jan@example.com", "extension": "101"},
    }))
    .unwrap();
    let held = employees.create(&PostParams::default(), &held).await.expect("create");

    let answer = namespaces.delete("doomed", &DeleteParams::default()).await.expect("delete the namespace");
    let terminating = answer.left().expect("the namespace is answered, not a Status: it has finalizers");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));

    let refused = config_maps.create(&PostParams::default(), &config_map("late")).await.expect_err("refused");
    match refused {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert!(
                s.message.contains(
                    "unable to create new content in namespace doomed because it is being terminated"
                ),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }

    // The content goes; what a finalizer holds stays, marked, and so does the namespace.
    let started = Instant::now();
    loop {
        let plain = config_maps.get_opt("plain").await.unwrap();
        let e = employees.get_opt("held").await.unwrap().expect("held by its finalizer");
        if plain.is_none() && e.metadata.deletion_timestamp.is_some() {
            break;
        }
        assert!(started.elapsed() < WAIT, "the namespace controller deletes the content");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(namespaces.get_opt("doomed").await.unwrap().is_some(), "held while content remains");
    // Updates go on in a terminating namespace.
    let patch = json!({"metadata": {"finalizers": null}});
    employees.patch(&held.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("release");
    let started = Instant::now();
    while namespaces.get_opt("doomed").await.unwrap().is_some() {
        assert!(started.elapsed() < WAIT, "the namespace goes once its content has");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
