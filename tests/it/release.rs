//! `switchboard release`, for when the operator is gone: it says what stays on each PBX,
//! then removes switchboard's finalizers and no others; it refuses while the operator's
//! Lease is fresh.

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use switchboard::{
    api::{BackendKind, Employee, PhoneSystem},
    release::{self, Options, Summary},
};

use crate::controller::{World, employee};

async fn with_status(world: &World, e: Employee, finalizers: &[&str], entries: serde_json::Value) {
    let mut e = e;
    e.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
    let name = e.name_any();
    world.create_employee(&e).await;
    world
        .api::<Employee>()
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phoneSystems": entries}})),
        )
        .await
        .expect("write the status");
}

fn entry(system: &str, id: Option<&str>, extension: &str, state: &str) -> serde_json::Value {
    json!({"name": system, "externalId": id, "extension": extension, "state": state})
}

async fn run(world: &World, options: &Options) -> (Result<Summary, release::Error>, String) {
    let mut out = Vec::new();
    let result = release::run(world.client.clone(), options, &mut out).await;
    (result, String::from_utf8(out).expect("UTF-8"))
}

async fn finalizers(world: &World, name: &str) -> Option<Vec<String>> {
    world.employee(name).await.map(|e| e.finalizers().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_says_what_stays_then_removes_only_switchboards_finalizers() {
    let world = World::new("release").await;
    let ns = world.ns.clone();
    world.create_phone_system("office-pbx", BackendKind::Mikopbx, "https://pbx.example.com", json!({})).await;
    let ours = "switchboard.dev/accounts";
    let theirs = "example.com/backup";
    with_status(
        &world,
        employee(&ns, "anna", "201", &["office-pbx"]),
        &[ours],
        json!([entry("office-pbx", Some("12"), "201", "InSync")]),
    )
    .await;
    with_status(
        &world,
        employee(&ns, "bob", "202", &["office-pbx"]),
        &[ours],
        json!([entry("office-pbx", Some("13"), "202", "InSync")]),
    )
    .await;
    // A create whose answer was never recorded, and a finalizer that is not ours.
    with_status(
        &world,
        employee(&ns, "carol", "203", &["office-pbx"]),
        &[theirs, ours],
        json!([entry("office-pbx", None, "203", "Pending")]),
    )
    .await;
    // An entry on a PhoneSystem that is gone.
    with_status(
        &world,
        employee(&ns, "dan", "204", &["old-pbx"]),
        &[ours],
        json!([entry("old-pbx", Some("7"), "204", "InSync")]),
    )
    .await;
    for name in ["bob", "carol"] {
        world.api::<Employee>().delete(name, &DeleteParams::default()).await.expect("delete");
    }
    world
        .api::<PhoneSystem>()
        .patch(
            "office-pbx",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": ["switchboard.dev/cleanup"]}})),
        )
        .await
        .expect("a finalizer on the PhoneSystem");

    // The operator's Lease, renewed a second ago.
    let now = Timestamp::now();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("switchboard".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("switchboard-7d9f-abcde".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - std::time::Duration::from_secs(1))),
            ..Default::default()
        }),
    };
    world.api::<Lease>().create(&PostParams::default(), &lease).await.expect("create the Lease");
    let mut options = Options {
        namespace: Some(ns.clone()),
        dry_run: false,
        force: false,
        lease: (ns.clone(), "switchboard".into()),
        now,
    };
    let (result, _) = run(&world, &options).await;
    assert!(
        matches!(&result, Err(release::Error::OperatorRunning { holder, ago: 1, .. }) if holder == "switchboard-7d9f-abcde"),
        "{result:?}"
    );
    assert_eq!(finalizers(&world, "anna").await, Some(vec![ours.to_owned()]), "nothing changed");

    // A dry run, once the Lease is stale: what stays, and nothing changed.
    options.now = now + std::time::Duration::from_secs(60);
    options.dry_run = true;
    let (result, dry) = run(&world, &options).await;
    assert_eq!(
        result.expect("a dry run"),
        Summary { accounts: 4, not_deleted: 1, employees: 0, phone_systems: 0 }
    );
    assert!(dry.contains("Dry run: would remove switchboard's finalizers from 4 Employee(s) and 1 PhoneSystem(s) (2 being deleted); nothing changed."), "{dry}");
    assert_eq!(finalizers(&world, "bob").await, Some(vec![ours.to_owned()]));

    options.dry_run = false;
    let (result, text) = run(&world, &options).await;
    assert_eq!(
        result.expect("released"),
        Summary { accounts: 4, not_deleted: 1, employees: 4, phone_systems: 1 }
    );
    eprintln!("{text}");
    let office =
        format!("PhoneSystem {ns}/office-pbx (mikopbx at https://pbx.example.com): 3 account(s) stay");
    for line in [
        office.as_str(),
        "  account 12 (extension 201), Employee anna\n",
        "  account 13 (extension 202), Employee bob: its Employee is being deleted with deletionPolicy: Delete; the account is NOT deleted",
        "  extension 203, Employee carol: a create was sent and its answer never recorded: look for an account on this extension",
        &format!("PhoneSystem {ns}/old-pbx (the PhoneSystem no longer exists): 1 account(s) stay"),
        "  account 7 (extension 204), Employee dan\n",
        "Removed switchboard's finalizers from 4 Employee(s) and 1 PhoneSystem(s)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.find("anna").unwrap() > text.find(&office).unwrap(), "accounts under their system");
    assert_eq!(finalizers(&world, "anna").await, Some(vec![]));
    assert_eq!(finalizers(&world, "dan").await, Some(vec![]));
    assert_eq!(finalizers(&world, "bob").await, None, "bob was being deleted: gone now");
    let carol = world.employee("carol").await.expect("carol: another finalizer holds her");
    assert_eq!(carol.finalizers(), [theirs]);
    assert!(carol.metadata.deletion_timestamp.is_some());
    assert_eq!(world.phone_system("office-pbx").await.finalizers(), Vec::<String>::new());

    // Nothing left to release: a second run changes nothing.
    let (result, _) = run(&world, &options).await;
    assert_eq!(result.expect("again").employees, 0);

    let patch = json!({"metadata": {"finalizers": null}});
    world
        .api::<Employee>()
        .patch("carol", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("let go");
    if world.fake.is_none() {
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(world.client.clone());
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    }
}
