//! kstatus, as Flux's health checks judge objects: its `Compute` rules
//! (`sigs.k8s.io/cli-utils/pkg/kstatus/status`, `status.go` and `generic.go`) in Rust,
//! run over the statuses the operator really writes, after real passes on the fake API
//! server and the simulators.
//!
//! The rules, in their order: a `deletionTimestamp` is Terminating; an
//! `observedGeneration` that differs from `metadata.generation` is InProgress; then the
//! first condition, in list order, that is `Reconciling=True` (InProgress) or
//! `Stalled=True` (Failed); then, for a custom resource, `Ready`: `True` is Current,
//! `False` or `Unknown` InProgress; with none of these, Current.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use switchboard::api::{BackendKind, employee::SecretKeyRef};

use crate::controller::{World, employee, eventually};

/// kstatus's verdict on `object` and its message.
pub(crate) fn compute(object: &Value) -> (&'static str, String) {
    if object["metadata"]["deletionTimestamp"].as_str().is_some_and(|t| !t.is_empty()) {
        return ("Terminating", "Resource scheduled for deletion".into());
    }
    // `checkGeneration`: only when both are there.
    if let (Some(generation), Some(observed)) =
        (object["metadata"]["generation"].as_i64(), object["status"]["observedGeneration"].as_i64())
        && generation != observed
    {
        return (
            "InProgress",
            format!("generation is {generation}, but latest observed generation is {observed}"),
        );
    }
    let conditions = object["status"]["conditions"].as_array().cloned().unwrap_or_default();
    for c in &conditions {
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return ("InProgress", text(&c["message"])),
            (Some("Stalled"), Some("True")) => return ("Failed", text(&c["message"])),
            _ => {}
        }
    }
    // `checkReadyCondition`, the fallback for custom resources.
    for c in &conditions {
        if c["type"] != "Ready" {
            continue;
        }
        match c["status"].as_str() {
            Some("True") => return ("Current", "Resource is Ready".into()),
            Some("False" | "Unknown") => return ("InProgress", text(&c["message"])),
            _ => {}
        }
    }
    ("Current", "Resource is current".into())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The rules themselves, on hand-made objects: so that a wrong `compute` cannot make the
/// scenarios below pass.
#[test]
fn compute_follows_kstatus() {
    let object = |generation: i64, observed: Option<i64>, conditions: Value| {
        let mut o = json!({"metadata": {"name": "x", "generation": generation}, "status": {"conditions": conditions}});
        if let Some(observed) = observed {
            o["status"]["observedGeneration"] = json!(observed);
        }
        o
    };
    let c = |type_: &str, status: &str| json!({"type": type_, "status": status, "message": type_});
    assert_eq!(compute(&object(1, None, json!([]))).0, "Current", "nothing to go by");
    assert_eq!(compute(&object(2, Some(1), json!([c("Ready", "True")]))).0, "InProgress");
    assert_eq!(compute(&object(2, None, json!([c("Ready", "True")]))).0, "Current", "no observedGeneration");
    assert_eq!(compute(&object(2, Some(2), json!([c("Ready", "False")]))).0, "InProgress");
    assert_eq!(
        compute(&object(2, Some(2), json!([c("Ready", "True"), c("Reconciling", "True")]))).0,
        "InProgress"
    );
    assert_eq!(compute(&object(2, Some(2), json!([c("Ready", "True"), c("Stalled", "True")]))).0, "Failed");
    assert_eq!(
        compute(&object(2, Some(2), json!([c("Stalled", "True"), c("Reconciling", "True")]))).0,
        "Failed"
    );
    assert_eq!(compute(&object(2, Some(2), json!([c("Stalled", "False"), c("Ready", "True")]))).0, "Current");
    let mut gone = object(2, Some(2), json!([c("Ready", "True")]));
    gone["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    assert_eq!(compute(&gone).0, "Terminating");
}

/// What kstatus says of an object as the API server holds it now.
async fn verdict<K: serde::Serialize>(object: &K) -> (&'static str, String, Value) {
    let value = serde_json::to_value(object).expect("JSON");
    let (status, message) = compute(&value);
    (status, message, value)
}

async fn employee_becomes(world: &World, name: &str, wanted: &str) -> (String, Value) {
    eventually(&format!("kstatus: Employee {name} {wanted}"), || async {
        let e = world.employee(name).await.ok_or("no such Employee")?;
        let (status, message, value) = verdict(&e).await;
        if status == wanted {
            Ok((message, value))
        } else {
            Err(format!("{status}: {message}: {:?}", e.status))
        }
    })
    .await
}

/// The abnormal-true conditions an object carries, as `(type, reason)`.
fn abnormal(object: &Value) -> Vec<(String, String)> {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "Reconciling" || c["type"] == "Stalled")
        .map(|c| (text(&c["type"]), text(&c["reason"])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_reads_the_conditions_the_operator_writes() {
    let mut world = World::new("kstatus").await;
    world.add_pbx("office-pbx", BackendKind::Mikopbx, json!({"resyncInterval": "1s"})).await;
    world.add_pbx("broadworks", BackendKind::Apio, json!({})).await;
    // A PhoneSystem whose credentials are refused.
    world.add_pbx_with("cloud-pbx", BackendKind::Telphin, json!({}), false).await;
    let wrong: BTreeMap<String, String> = world
        .pbx("cloud-pbx")
        .running
        .sim
        .credentials()
        .into_keys()
        .map(|k| (k, "Wr0ng-Credentials".to_owned()))
        .collect();
    world.create_secret("cloud-pbx-credentials", wrong).await;
    world.create_employee(&employee(&world.ns, "ada", "401", &["office-pbx", "broadworks"])).await;
    let mut lea = employee(&world.ns, "lea", "402", &["office-pbx"]);
    lea.spec.password_secret_ref = Some(SecretKeyRef { name: "lea-password".into(), key: "password".into() });
    world.create_employee(&lea).await;
    let controller = world.start_controller();

    // Ready: Current, and neither abnormal condition is there.
    let ada = world.ready("ada").await;
    let (status, _, value) = verdict(&ada).await;
    assert_eq!(status, "Current");
    assert_eq!(abnormal(&value), [], "abnormal-true conditions are absent when all is well");

    // Waiting for its password Secret: InProgress, by Reconciling.
    let (message, value) = employee_becomes(&world, "lea", "InProgress").await;
    eventually("lea Reconciling (PasswordSecretMissing)", || async {
        let e = world.employee("lea").await.ok_or("gone")?;
        let value = serde_json::to_value(&e).map_err(|e| e.to_string())?;
        let found = abnormal(&value);
        if found == [("Reconciling".to_owned(), "PasswordSecretMissing".to_owned())] {
            Ok(())
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;
    eprintln!("kstatus: lea: {message} ({:?})", abnormal(&value));

    // Its extension taken by an Employee that came first: Failed, by Stalled.
    world.create_employee(&employee(&world.ns, "bea", "401", &["office-pbx"])).await;
    let (message, value) = employee_becomes(&world, "bea", "Failed").await;
    assert_eq!(abnormal(&value), [("Stalled".to_owned(), "ExtensionTaken".to_owned())]);
    assert!(message.contains("401"), "{message}");

    // A PhoneSystem whose credentials are refused: Failed.
    let (message, value) = eventually("kstatus: cloud-pbx Failed", || async {
        let (status, message, value) = verdict(&world.phone_system("cloud-pbx").await).await;
        if status == "Failed" { Ok((message, value)) } else { Err(format!("{status}: {message}")) }
    })
    .await;
    assert_eq!(abnormal(&value), [("Stalled".to_owned(), "AuthFailed".to_owned())], "{message}");
    // The others are Current.
    for name in ["office-pbx", "broadworks"] {
        let (status, message, _) = verdict(&world.phone_system(name).await).await;
        assert_eq!(status, "Current", "{name}: {message}");
    }

    // A new generation no pass has planned from: InProgress until one has. broadworks
    // is made unreachable first, so its pass cannot plan from ada's edit.
    let down = world.pbxs.iter().position(|p| p.name == "broadworks").expect("broadworks");
    world.pbxs.remove(down).running.shutdown().await;
    world.patch_employee("ada", json!({"spec": {"email": "ada.new@example.com"}})).await;
    eventually("office-pbx has ada's new e-mail", || async {
        let pbx = world.pbx("office-pbx");
        pbx.by_email("ada.new@example.com").map(|_| ()).ok_or(format!("{:?}", pbx.emails()))
    })
    .await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let ada = world.employee("ada").await.expect("ada");
        let (status, message, _) = verdict(&ada).await;
        assert_eq!(
            status, "InProgress",
            "broadworks has not applied generation 2: {message}: {:?}",
            ada.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An edit every system can apply: Current again, at the new generation.
    world.patch_employee("lea", json!({"spec": {"passwordSecretRef": null}})).await;
    let (_, value) = employee_becomes(&world, "lea", "Current").await;
    assert_eq!(value["status"]["observedGeneration"], value["metadata"]["generation"]);
    assert_eq!(abnormal(&value), []);
    world.finish(controller).await;
}
