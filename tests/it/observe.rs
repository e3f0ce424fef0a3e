//! `policy: observe` end to end: the operator lists and plans as usual, writes nothing to
//! the PBX, counts what it would change in the PhoneSystem's status and tells each
//! Employee; switching the policy to `sync` then makes exactly that plan.

use std::collections::BTreeMap;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use switchboard::{
    api::{AccountState, BackendKind, Employee, PhoneSystem, phone_system::PendingChanges},
    sim::Stats,
};

use crate::{
    controller::{World, employee, entry, eventually, writes},
    gitops::{argo_health, flux_health},
};

/// The write requests in a simulator's stats, however answered.
fn write_count(stats: &Stats) -> u64 {
    writes(stats).values().sum()
}

fn pending_of(system: &PhoneSystem) -> Option<PendingChanges> {
    system.status.as_ref()?.pending_changes
}

fn synced_reason(system: &PhoneSystem) -> Option<String> {
    let status = system.status.as_ref()?;
    status.conditions.iter().find(|c| c.type_ == "Synced").map(|c| c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_writes_nothing_counts_the_plan_and_sync_then_makes_exactly_it() {
    let mut world = World::new("observe").await;
    world
        .add_pbx("office-pbx", BackendKind::Mikopbx, json!({"resyncInterval": "1s", "adoption": "adopt"}))
        .await;
    let ns = world.ns.clone();

    // Two accounts switchboard owns, made under `sync`.
    world.create_employee(&employee(&ns, "dave", "203", &["office-pbx"])).await;
    world.create_employee(&employee(&ns, "erin", "204", &["office-pbx"])).await;
    let controller = world.start_controller();
    world.ready("dave").await;
    world.ready("erin").await;

    // Observe from here on.
    world
        .api::<PhoneSystem>()
        .patch("office-pbx", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"policy": "observe"}})))
        .await
        .expect("switch to observe");
    eventually("the controller sees the observe policy", || async {
        let system = world.phone_system("office-pbx").await;
        let seen = system.status.as_ref().and_then(|s| s.observed_generation) == system.metadata.generation;
        if seen { Ok(()) } else { Err(format!("{:?}", system.status)) }
    })
    .await;
    let pbx = &world.pbx("office-pbx").running;
    pbx.reset_stats();

    // What a sync would change: dave's account edited by hand (an update), erin deleted
    // (a delete), anna and bob new (two creates), carl on an account nobody owns (an
    // adoption, with an update: its e-mail differs).
    let dave = world.pbx("office-pbx").by_email("dave@example.com").expect("dave's account");
    let dave_id = world.pbx("office-pbx").id_of(&dave);
    pbx.sim
        .tamper(&dave_id, json!({"user_email": "dave.by.hand@example.com"}).as_object().expect("an object"))
        .expect("edit dave's account by hand");
    pbx.sim
        .seed(&json!({"number": "301", "user_username": "Carl Old", "user_email": "old.carl@example.com",
                      "sip_secret": "Seeded-Secret-1"}))
        .expect("an account nobody owns");
    world.api::<Employee>().delete("erin", &DeleteParams::default()).await.expect("delete erin");
    for (name, extension) in [("anna", "201"), ("bob", "202"), ("carl", "301")] {
        world.create_employee(&employee(&ns, name, extension, &["office-pbx"])).await;
    }

    let want = PendingChanges { create: 2, update: 1, delete: 1, adopt: 1 };
    eventually("the PhoneSystem counts what a sync would change", || async {
        let system = world.phone_system("office-pbx").await;
        match (pending_of(&system), synced_reason(&system)) {
            (Some(p), Some(r)) if p == want && r == "Observing" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // docs/gitops.md: Argo CD shows an observing system as Suspended, its Employees as
    // Progressing; Flux takes the system as current and waits for the Employees.
    let object = serde_json::to_value(world.phone_system("office-pbx").await).expect("JSON");
    assert_eq!(flux_health("PhoneSystem", &object), Some("current"));
    if let Some((status, message)) = argo_health("PhoneSystem", &object) {
        assert_eq!(status, "Suspended", "{message}");
    }
    let said = [
        ("anna", "WouldCreate"),
        ("bob", "WouldCreate"),
        ("dave", "WouldUpdate"),
        ("erin", "WouldDelete"),
        ("carl", "WouldAdopt"),
    ];
    for (name, reason) in said {
        eventually(&format!("{name}: a {reason} event"), || async {
            let reasons = world.event_reasons(name).await;
            if reasons.iter().any(|r| r == reason) { Ok(()) } else { Err(format!("{reasons:?}")) }
        })
        .await;
        let e = world.employee(name).await.expect("still there");
        let entry = entry(&e, "office-pbx").expect("an entry");
        assert_eq!(entry.state, AccountState::Pending, "{name}: {entry:?}");
        let message = entry.message.unwrap_or_default();
        assert!(message.starts_with("Observing: would "), "{name}: {message}");
        if name != "erin" {
            eventually(&format!("{name}: in progress to Flux and Argo CD"), || async {
                let e = world.employee(name).await.ok_or("gone")?;
                let object = serde_json::to_value(&e).map_err(|e| e.to_string())?;
                let flux = flux_health("Employee", &object);
                let argo = argo_health("Employee", &object);
                match (flux, &argo) {
                    (Some("inProgress"), None) => Ok(()),
                    (Some("inProgress"), Some((status, _))) if status == "Progressing" => Ok(()),
                    _ => Err(format!("Flux {flux:?}, Argo CD {argo:?}")),
                }
            })
            .await;
        }
    }
    let carl = world.employee("carl").await.expect("carl");
    let carl_says = entry(&carl, "office-pbx").and_then(|e| e.message).unwrap_or_default();
    assert!(
        carl_says.starts_with("Observing: would take over account ")
            && carl_says.contains("(adoption: adopt) and update ")
            && carl_says.contains("email (old.carl@example.com -> carl@example.com)"),
        "{carl_says}"
    );
    // Several passes ran (resyncInterval 1s); not one of them wrote to the PBX.
    eventually("three more listings", || async {
        let lists = pbx.stats().total("getList");
        if lists >= 3 { Ok(()) } else { Err(format!("{lists} listing(s)")) }
    })
    .await;
    assert_eq!(writes(&pbx.stats()), BTreeMap::new(), "observe writes nothing to the PBX");
    let erin = world.employee("erin").await.expect("erin waits for her account's deletion");
    assert!(erin.metadata.deletion_timestamp.is_some());
    assert_eq!(pbx.sim.dump().as_array().map(Vec::len), Some(3), "dave, erin and the unowned account");

    // Sync: exactly the plan observed.
    let before = pbx.stats();
    world
        .api::<PhoneSystem>()
        .patch("office-pbx", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"policy": "sync"}})))
        .await
        .expect("switch to sync");
    for name in ["anna", "bob", "carl", "dave"] {
        world.ready(name).await;
    }
    world.gone("erin").await;
    eventually("nothing left pending", || async {
        let system = world.phone_system("office-pbx").await;
        match pending_of(&system) {
            Some(p) if p == PendingChanges::default() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let done = [("anna", "Created"), ("bob", "Created"), ("dave", "Updated"), ("carl", "Adopted")];
    for (name, reason) in done {
        let reasons = world.event_reasons(name).await;
        assert!(reasons.iter().any(|r| r == reason), "{name}: {reasons:?}");
    }
    let accounts = world.pbx("office-pbx").emails();
    assert_eq!(
        accounts,
        ["anna@example.com", "bob@example.com", "carl@example.com", "dave@example.com"],
        "erin's account deleted, carl's taken over, dave's put back, two created"
    );
    // Two creates, one update, one update of the adopted account, one delete.
    let after = pbx.stats();
    let made = write_count(&after) - write_count(&before);
    assert_eq!(made, 5, "writes after the switch: {:?}", writes(&after));
    world.finish(controller).await;
}
