//! Deleting things with the operator running: a whole namespace (its Employees,
//! PhoneSystems and Secrets, in whatever order the namespace controller takes them),
//! and a PhoneSystem on its own.
//!
//! On the fake API server each scenario gets a Namespace of its own, deleted as the real
//! namespace controller deletes one (`tests/support/apiserver/namespaces.rs`), with the
//! resource types in the order the scenario asks for; on a real cluster
//! (`SWITCHBOARD_TEST_KUBECONFIG`), in the order that cluster takes.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::{core::v1::Namespace, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};
use serde_json::json;
use switchboard::{
    api::{AccountState, BackendKind, Employee, PhoneSystem, employee::DeletionPolicy},
    controller::FINALIZER,
};

use crate::{
    controller::{World, employee, entry, eventually},
    support::apiserver::{self, Options},
};

/// What a namespace teardown must take at most, operator included (the bound).
const TEARDOWN_BOUND: Duration = Duration::from_secs(60);

/// A world in a Namespace of its own; on the fake, one whose deletion takes the resource
/// types in `order` (`plural.group`), a second apart.
async fn world_in_namespace(scenario: &str, order: &[&str]) -> World {
    let mut world = World::new(scenario).await;
    if world.fake.is_some() {
        let fake = apiserver::start_with(Options {
            namespace_deletion_order: order.iter().map(|s| (*s).to_owned()).collect(),
            namespace_deletion_gap: Duration::from_secs(1),
            ..Options::default()
        })
        .await;
        world.client = fake.client();
        world.fake = Some(fake);
        world.ns = format!("teardown-{scenario}");
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(world.ns.clone()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(world.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the scenario's namespace");
    }
    world
}

/// The AccountsLeft events about Namespace `ns` (they live in `default`).
async fn accounts_left(world: &World, ns: &str) -> Vec<String> {
    let events: Api<KubeEvent> = Api::namespaced(world.client.clone(), "default");
    let list = events.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(ns))
        .filter(|e| e.reason.as_deref() == Some("AccountsLeft"))
        .filter_map(|e| e.note)
        .collect()
}

async fn namespace_teardown(scenario: &str, order: &[&str]) {
    let mut world = world_in_namespace(scenario, order).await;
    world.add_pbx("office-pbx", BackendKind::Mikopbx, json!({})).await;
    // A guard of one: a namespace deleted by mistake is a mass deletion too, so the
    // guard holds its two deletions, and they are reported as left.
    world.add_pbx("broadworks", BackendKind::Apio, json!({"maxDeletionsPerSync": 1})).await;
    // Ringostat cannot delete accounts through its API.
    world.add_pbx("call-tracking", BackendKind::Ringostat, json!({})).await;
    for (name, extension) in [("dora", "311"), ("dan", "313")] {
        world.create_employee(&employee(&world.ns, name, extension, &["office-pbx", "broadworks"])).await;
    }
    let mut otto = employee(&world.ns, "otto", "312", &["office-pbx", "broadworks"]);
    otto.spec.deletion_policy = DeletionPolicy::Orphan;
    world.create_employee(&otto).await;
    world.create_employee(&employee(&world.ns, "rita", "314", &["call-tracking"])).await;
    let controller = world.start_controller();
    for name in ["dora", "dan", "otto", "rita"] {
        world.ready(name).await;
    }
    for system in ["office-pbx", "broadworks", "call-tracking"] {
        eventually(&format!("{system} held by the finalizer"), || async {
            let p = world.phone_system(system).await;
            if p.finalizers().iter().any(|f| f == FINALIZER) {
                Ok(())
            } else {
                Err(format!("{:?}", p.finalizers()))
            }
        })
        .await;
    }

    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(world.client.clone());
    namespaces.delete(&world.ns, &DeleteParams::default()).await.expect("delete the namespace");
    loop {
        match namespaces.get_opt(&world.ns).await.expect("read the namespace") {
            None => break,
            Some(ns) if started.elapsed() > TEARDOWN_BOUND => {
                let left: Vec<String> = world.api::<Employee>().list(&Default::default()).await.map_or_else(
                    |e| vec![e.to_string()],
                    |l| l.items.iter().map(|e| format!("{}: {:?}", e.name_any(), e.finalizers())).collect(),
                );
                let systems: Vec<String> =
                    world.api::<PhoneSystem>().list(&Default::default()).await.map_or_else(
                        |e| vec![e.to_string()],
                        |l| {
                            l.items
                                .iter()
                                .map(|p| format!("{}: {:?}", p.name_any(), p.finalizers()))
                                .collect()
                        },
                    );
                panic!(
                    "namespace still there after {TEARDOWN_BOUND:?}: {:?}; {left:?}; {systems:?}",
                    ns.status
                );
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let took = started.elapsed();
    eprintln!("teardown ({scenario}): namespace gone {took:?} after its delete");

    assert_eq!(
        world.pbx("office-pbx").emails(),
        ["otto@example.com"],
        "office-pbx: the Delete accounts are gone, the Orphan one stays"
    );
    assert_eq!(
        world.pbx("broadworks").emails(),
        ["dan@example.com", "dora@example.com", "otto@example.com"],
        "broadworks: its guard of one holds both deletions"
    );
    assert_eq!(world.pbx("call-tracking").emails(), ["rita@example.com"], "Ringostat cannot delete");
    let notes = accounts_left(&world, &world.ns).await;
    eprintln!("teardown ({scenario}): AccountsLeft: {notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("call-tracking") && n.contains("rita") && n.contains("cannot delete")),
        "the account left on call-tracking is reported: {notes:?}"
    );
    let guarded: Vec<&String> = notes.iter().filter(|n| n.contains("PhoneSystem broadworks")).collect();
    assert!(
        guarded.len() == 1 && ["dora", "dan", "maxDeletionsPerSync"].iter().all(|w| guarded[0].contains(w)),
        "the accounts the guard held on broadworks are reported: {notes:?}"
    );
    assert!(
        !notes.iter().any(|n| n.contains("PhoneSystem office-pbx")),
        "nothing is left on office-pbx: {notes:?}"
    );
    world.finish(controller).await;
}

/// The PhoneSystems and their credentials Secrets go first: the passes go on with the
/// credentials last read, and the PhoneSystems stay until their accounts are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_teardown_deletes_the_accounts_when_the_phone_systems_go_first() {
    namespace_teardown(
        "systems-first",
        &["phonesystems.switchboard.dev", "secrets", "employees.switchboard.dev"],
    )
    .await;
}

/// The Employees go first, the PhoneSystems and Secrets after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_teardown_deletes_the_accounts_when_the_employees_go_first() {
    namespace_teardown(
        "employees-first",
        &["employees.switchboard.dev", "secrets", "phonesystems.switchboard.dev"],
    )
    .await;
}

/// A PhoneSystem deleted on its own, its Employees staying: nothing is deleted from the
/// PBX, the entries say the accounts are released, the PhoneSystem goes at once, an
/// Employee deleted meanwhile does not hang, and the PhoneSystem created again takes the
/// accounts back (with `adoption: refuse`: they were ours) without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_system_deleted_alone_releases_its_accounts_and_takes_them_back() {
    let mut world = World::new("lone-system").await;
    world.add_pbx("office-pbx", BackendKind::Mikopbx, json!({"adoption": "refuse"})).await;
    world.create_employee(&employee(&world.ns, "dora", "321", &["office-pbx"])).await;
    world.create_employee(&employee(&world.ns, "emil", "322", &["office-pbx"])).await;
    let controller = world.start_controller();
    let before = entry(&world.ready("dora").await, "office-pbx").expect("dora's entry");
    world.ready("emil").await;
    eventually("office-pbx held by the finalizer", || async {
        let p = world.phone_system("office-pbx").await;
        if p.finalizers().iter().any(|f| f == FINALIZER) {
            Ok(())
        } else {
            Err(format!("{:?}", p.finalizers()))
        }
    })
    .await;

    let systems = world.api::<PhoneSystem>();
    systems.delete("office-pbx", &DeleteParams::default()).await.expect("delete the PhoneSystem");
    eventually("office-pbx gone", || async {
        match systems.get_opt("office-pbx").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) => Err(format!("still there: {:?}", p.finalizers())),
        }
    })
    .await;
    let pbx = world.pbx("office-pbx");
    assert_eq!(pbx.emails(), ["dora@example.com", "emil@example.com"], "nothing deleted");
    for name in ["dora", "emil"] {
        let released = world
            .entry_when(name, "office-pbx", "entry released", |p| p.state == AccountState::Released)
            .await;
        assert!(released.external_id.is_some(), "{name}: the claim stays: {released:?}");
        assert!(released.message.as_deref().is_some_and(|m| m.contains("deleted")), "{released:?}");
        let reasons = world.event_reasons(name).await;
        assert!(reasons.iter().any(|r| r == "Released"), "{name}: {reasons:?}");
    }
    let reasons = world.event_reasons("office-pbx").await;
    assert!(reasons.iter().any(|r| r == "Released"), "the PhoneSystem's event: {reasons:?}");
    let dora = world.employee("dora").await.expect("dora");
    let ready = dora.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).cloned();
    eventually("dora says her PhoneSystem is gone", || async {
        let dora = world.employee("dora").await.ok_or("no dora")?;
        let c = dora.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).cloned();
        match c {
            Some(c) if c.status == "False" && c.reason == "PhoneSystemNotFound" => Ok(()),
            other => Err(format!("{other:?} (before: {ready:?})")),
        }
    })
    .await;

    // An Employee deleted while its PhoneSystem is gone leaves at once; its account stays.
    world.api::<Employee>().delete("emil", &DeleteParams::default()).await.expect("delete emil");
    world.gone("emil").await;
    assert_eq!(pbx.emails(), ["dora@example.com", "emil@example.com"]);

    // Created again: the claim is taken back, not refused as someone else's account.
    let url = pbx.running.url.clone();
    world.create_phone_system("office-pbx", BackendKind::Mikopbx, &url, json!({"adoption": "refuse"})).await;
    let dora = world.ready("dora").await;
    let after = entry(&dora, "office-pbx").expect("dora's entry");
    assert_eq!(after.external_id, before.external_id, "the same account");
    assert_eq!(pbx.by_extension("321").len(), 1, "no duplicate");
    world.finish(controller).await;
}
