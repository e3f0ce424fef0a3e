//! Secrets that arrive after their Employee (External Secrets, Sealed Secrets, SOPS in
//! GitOps): an Employee whose `passwordSecretRef` names a Secret or key that does not
//! exist gets no account and says which Secret and key it waits for; once they exist,
//! the account is created with that password within seconds. Nothing else of the pass
//! waits for it.

use std::time::{Duration, Instant};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use switchboard::api::{AccountState, BackendKind, Employee, employee::SecretKeyRef};

use crate::controller::{World, employee, entry, eventually, text};

fn ready_condition(e: &Employee) -> Option<(String, String, String)> {
    let c = e.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `name`'s Ready condition is False with `reason` and a message that
/// contains every one of `words`.
async fn waits_for(world: &World, name: &str, reason: &str, words: &[&str]) -> String {
    eventually(&format!("{name} Ready=False ({reason}) naming {words:?}"), || async {
        let e = world.employee(name).await.ok_or("no such Employee")?;
        match ready_condition(&e) {
            Some((status, r, message))
                if status == "False" && r == reason && words.iter().all(|w| message.contains(w)) =>
            {
                Ok(message)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Thulium cannot update an account: a password generated in place of the late one
/// could never be replaced there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_employee_waits_for_its_password_secret_and_key_then_gets_its_account() {
    let mut world = World::new("late-secret").await;
    world.add_pbx("contact-center", BackendKind::Thulium, json!({})).await;
    let mut lea = employee(&world.ns, "lea", "381", &["contact-center"]);
    lea.spec.password_secret_ref = Some(SecretKeyRef { name: "lea-password".into(), key: "password".into() });
    world.create_employee(&lea).await;
    world.create_employee(&employee(&world.ns, "max", "382", &["contact-center"])).await;
    let controller = world.start_controller();

    // The rest of the pass goes on.
    world.ready("max").await;
    let message = waits_for(&world, "lea", "PasswordSecretMissing", &["lea-password", "password"]).await;
    eprintln!("late secrets: lea says: {message}");
    let pbx = world.pbx("contact-center");
    assert!(pbx.by_email("lea@example.com").is_none(), "no account before the Secret exists");
    let e = world.employee("lea").await.expect("lea");
    let waiting = entry(&e, "contact-center").expect("lea's entry for contact-center");
    assert_eq!((waiting.state, waiting.external_id.as_deref()), (AccountState::Pending, None));
    assert_eq!(waiting.extension, None, "an entry that waits claims no create");

    // The Secret arrives, without the key.
    world.create_secret("lea-password", [("other".to_owned(), "Not-This-0ne".to_owned())].into()).await;
    waits_for(&world, "lea", "PasswordSecretMissing", &["lea-password", "no key password"]).await;
    assert!(pbx.by_email("lea@example.com").is_none(), "no account before the key exists");

    // The key arrives: the account follows within seconds, with that password.
    let started = Instant::now();
    let patch = json!({"data": {"password": ByteString(b"Late-Passw0rd".to_vec())}});
    world
        .api::<Secret>()
        .patch("lea-password", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("add the key");
    world.ready("lea").await;
    let took = started.elapsed();
    eprintln!("late secrets: account created {took:?} after the key appeared");
    assert!(took < Duration::from_secs(10), "the Secret's change triggers the pass: {took:?}");
    let account = pbx.by_email("lea@example.com").expect("lea's account");
    assert_eq!(text(&account["password"]), "Late-Passw0rd");
    let generated = world.api::<Secret>().get_opt("lea-credentials").await.expect("read");
    assert!(generated.is_none(), "no password generated for an Employee that refers to one");
    world.finish(controller).await;
}
