//! The Thulium backend against the Thulium simulator over HTTP.
//!
//! Thulium authenticates every request with HTTP Basic: there are no tokens, so there is
//! no token-expiry test here.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use switchboard::sim::thulium::dialect::CAP;

use crate::faults::{converge, engine_pass, list_eventually};
use switchboard::{
    api::{BackendKind, EmployeeSpec, phone_system},
    backends::{Backend, Credentials, Error, Secret, http::Settings, thulium::Thulium},
    plan::{Desired, Field, Owner},
    sim::{FaultConfig, Running, default_simulator, spawn},
};

const PASSWORD: &str = "Canary-Passw0rd-Thulium!";

fn settings() -> Settings {
    Settings {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..Settings::default()
    }
}

async fn start() -> Running {
    spawn(default_simulator(BackendKind::Thulium), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn backend_with(running: &Running, credentials: Credentials, settings: Settings) -> Thulium {
    Thulium::new(&phone_system::Thulium { url: running.url.clone() }, &credentials, settings).unwrap()
}

fn backend(running: &Running) -> Thulium {
    backend_with(running, Credentials::new(running.sim.credentials()), settings())
}

fn employee(n: u32, extra: Value) -> EmployeeSpec {
    let mut spec = json!({
        "givenName": "Jan",
        "familyName": format!("Kowalski{}", "i".repeat(n as usize % 3)),
        "email": format!("agent{n}@example.com"),
        "extension": (100 + n).to_string(),
        "phoneSystems": [{"name": "acme"}],
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    serde_json::from_value(spec).unwrap()
}

fn desired(backend: &Thulium, e: &EmployeeSpec) -> Desired {
    let m = &e.phone_systems[0];
    Desired {
        owner: Owner::new("default", e.login()),
        rank: 0,
        extension: e.extension_on(m).to_owned(),
        attributes: backend.desired(e, m).unwrap(),
        password_fingerprint: None,
    }
}

fn dialect(patch: Value) -> serde_json::Map<String, Value> {
    patch.as_object().unwrap().clone()
}

fn password() -> Secret {
    Secret::new(PASSWORD)
}

fn agents(running: &Running) -> Vec<Value> {
    running.sim.dump().as_array().unwrap().clone()
}

/// Seeds `n` unmanaged agents on numbers 5000.. straight into the simulator.
fn seed(running: &Running, n: u32) {
    for i in 0..n {
        running
            .sim
            .seed(&json!({"name": "Seed", "surname": "Agent", "login": format!("seed{i}"),
                          "password": "seedpass", "number": (5000 + i).to_string()}))
            .unwrap();
    }
}

/// Creates `n` agents under `faults`, lists under them, then checks that the simulator
/// holds exactly the seeded agents plus one per Employee, and that the list showed them.
async fn survives(faults: FaultConfig, mode: &str, n: u32, seeded: u32) {
    survives_in(json!({}), faults, mode, n, seeded).await;
}

/// [`survives`] on a simulator serving `patch`.
async fn survives_in(patch: Value, faults: FaultConfig, mode: &str, n: u32, seeded: u32) {
    let running = start().await;
    running.sim.set_dialect(&dialect(patch)).unwrap();
    seed(&running, seeded);
    let b = backend(&running);
    let hangs = faults.hang_rate > 0.0 || faults.commit_then_fail_hang;
    running.set_faults(faults);
    let started = Instant::now();
    let mut made = Vec::new();
    for i in 0..n {
        made.push(converge(&b, &desired(&b, &employee(i, json!({}))), &password()).await);
    }
    let listed = list_eventually(&b).await;
    running.set_faults(FaultConfig::default());
    if hangs {
        // A hung request is counted only when it ends (after `hang_secs`); the client's
        // timeouts show it instead.
        assert!(started.elapsed() >= settings().timeout, "no request hung");
    } else {
        assert!(running.stats().fault_count(mode) > 0, "no {mode} fault was injected");
    }

    let dump = agents(&running);
    assert_eq!(dump.len(), (n + seeded) as usize, "duplicates or losses: {dump:#?}");
    let numbers: BTreeSet<u64> = dump.iter().map(|a| a["number"].as_u64().unwrap()).collect();
    let expected: BTreeSet<u64> =
        (0..n).map(|i| u64::from(100 + i)).chain((0..seeded).map(|i| u64::from(5000 + i))).collect();
    assert_eq!(numbers, expected);
    let made_ids: BTreeSet<String> = made.iter().map(|a| a.id.clone()).collect();
    assert_eq!(made_ids, (0..n).map(|i| format!("agent{i}")).collect());
    let listed_ids: BTreeSet<&str> = listed.iter().map(|a| a.id.as_str()).collect();
    let dumped_ids: BTreeSet<&str> = dump.iter().map(|a| a["login"].as_str().unwrap()).collect();
    assert_eq!(listed_ids, dumped_ids);
    assert_eq!(listed.len(), dump.len());
}

#[test]
fn capabilities_say_create_and_read_only() {
    let caps = Thulium::new(
        &phone_system::Thulium { url: "https://acme.thulium.com".into() },
        &Credentials::new([("username".into(), "u".into()), ("password".into(), "p".into())]),
        Settings::default(),
    )
    .unwrap();
    let caps = caps.capabilities();
    assert!(caps.create && !caps.update && !caps.delete);
    assert!(!caps.readable.contains(&Field::Password));
    for f in
        [Field::Extension, Field::GivenName, Field::FamilyName, Field::Email, Field::Login, Field::Enabled]
    {
        assert!(caps.readable.contains(&f), "{f}");
    }
    assert!(!caps.readable.contains(&Field::Setting("roles".into())), "roles are never returned");
}

#[test]
fn missing_credentials_are_named() {
    let err = Thulium::new(
        &phone_system::Thulium { url: "https://acme.thulium.com".into() },
        &Credentials::new([("username".into(), "u".into())]),
        Settings::default(),
    )
    .err()
    .unwrap();
    assert_eq!(err, Error::Credentials { key: "password" });
}

#[tokio::test]
async fn desired_refuses_what_thulium_cannot_hold() {
    let running = start().await;
    let b = backend(&running);
    let unfit = |e: EmployeeSpec| match b.desired(&e, &e.phone_systems[0]) {
        Err(Error::Unfit { field, .. }) => field,
        other => panic!("expected Unfit, got {other:?}"),
    };
    assert_eq!(unfit(employee(0, json!({"extension": "0345"}))), "spec.extension");
    assert_eq!(
        unfit(employee(0, json!({"phoneSystems": [{"name": "acme", "extension": "0999"}]}))),
        "spec.phoneSystems[name=acme].extension"
    );
    assert_eq!(unfit(employee(0, json!({"email": "jan+pbx@example.com"}))), "spec.email");
    assert_eq!(unfit(employee(0, json!({"givenName": "  "}))), "spec.givenName");
    assert_eq!(
        unfit(employee(
            0,
            json!({"phoneSystems": [{"name": "acme", "ringostat": {"accessLevel": "admin"}}]})
        )),
        "spec.phoneSystems[name=acme].ringostat"
    );
    // A login given outright is used as it is.
    let e = employee(0, json!({"email": "jan+pbx@example.com", "login": "jan.pbx"}));
    assert_eq!(b.desired(&e, &e.phone_systems[0]).unwrap().login.as_deref(), Some("jan.pbx"));
    assert_eq!(running.stats().requests, 0, "desired makes no calls");
}

#[tokio::test]
async fn create_sends_every_field_and_returns_the_agent_as_held() {
    let running = start().await;
    let b = backend(&running);
    let e = employee(
        7,
        json!({"enabled": false, "phoneSystems": [{"name": "acme", "thulium": {
            "roles": [2, 1], "language": "en", "outboundMode": "auto", "callerId": "Sales Desk"}}]}),
    );
    let d = desired(&b, &e);
    let account = b.create(&d, Some(&password())).await.unwrap();
    assert_eq!(account.id, "agent7");
    assert_eq!(account.extension, "107");
    for field in b.capabilities().readable.iter().filter(|f| **f != Field::Extension) {
        assert_eq!(account.attributes.get(field), d.attributes.get(field), "{field}");
    }
    let stored = &agents(&running)[0];
    assert_eq!(stored["password"], PASSWORD);
    assert_eq!(stored["roles"], json!([1, 2]));
    assert_eq!(stored["language"], "en");
    assert_eq!(stored["callerid"], "Sales Desk");
    assert_eq!(stored["active"], false);
    assert_eq!(stored["email"], "agent7@example.com");

    // get one takes the login
    assert_eq!(b.get("agent7").await.unwrap(), Some(account.clone()));
    assert_eq!(b.get("nobody").await.unwrap(), None);
    assert_eq!(b.find("107").await.unwrap(), Some(account));
    assert_eq!(b.find("108").await.unwrap(), None);
}

#[tokio::test]
async fn create_without_a_password_generates_one() {
    let running = start().await;
    let b = backend(&running);
    b.create(&desired(&b, &employee(1, json!({}))), None).await.unwrap();
    let stored = agents(&running);
    assert_eq!(stored[0]["password"].as_str().unwrap().len(), 16);
    let generated = b.generate_password();
    assert_ne!(generated.expose(), b.generate_password().expose());
}

#[tokio::test]
async fn list_reads_every_page() {
    let running = start().await;
    seed(&running, 250);
    let b = backend(&running);
    b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();
    running.reset_stats();
    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 251);
    let ids: BTreeSet<&str> = listing.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 251);
    assert!(ids.contains("seed0") && ids.contains("seed249") && ids.contains("agent1"));
    // 100 per page, overlapping by one: offsets 0, 99, 198; the announced count ends it.
    assert_eq!(running.stats().count("GET agents", 200), 3);
    assert!(listing.dialect.contains(&("total announced", "count 251".into())), "{:?}", listing.dialect);

    // A bare array announces no total: the list ends at the page that adds nothing (the
    // last agent again, from offset 250).
    running.sim.set_dialect(&dialect(json!({"list_shape": "bare"}))).unwrap();
    running.reset_stats();
    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 251);
    assert_eq!(running.stats().count("GET agents", 200), 4);
    assert_eq!(listing.pages.iter().map(|p| p.got).collect::<Vec<_>>(), [100, 100, 53, 1]);
}

#[tokio::test]
async fn an_empty_system_lists_nothing() {
    let running = start().await;
    let listing = backend(&running).list().await.unwrap();
    assert!(listing.complete && listing.accounts.is_empty());
}

#[tokio::test]
async fn a_list_that_shifts_while_read_is_read_again() {
    let running = start().await;
    seed(&running, 150);
    let b = backend_with(
        &running,
        Credentials::new(running.sim.credentials()),
        Settings { timeout: Duration::from_secs(3), ..settings() },
    );
    // Each request takes 250 ms; the first agent goes away while page 2 is in flight, so
    // page 2 (offset 99) starts one agent later than page 1 ended.
    running.set_faults(FaultConfig { latency_ms: 250, ..FaultConfig::default() });
    let first_id = agents(&running)[0]["agent_id"].to_string();
    let sim = running.sim.clone();
    let remover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(375)).await;
        sim.remove(&first_id).unwrap();
    });
    let listing = b.list().await.unwrap();
    remover.await.unwrap();
    assert!(listing.complete);
    let listed: BTreeSet<String> = listing.accounts.iter().map(|a| a.id.clone()).collect();
    let held: BTreeSet<String> =
        agents(&running).iter().map(|a| a["login"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, held, "an agent was skipped");
    assert_eq!(listed.len(), 149);
    assert!(running.stats().count("GET agents", 200) >= 4, "the list was not read again");
}

#[tokio::test]
async fn update_and_delete_are_unsupported_and_change_nothing() {
    let running = start().await;
    let b = backend(&running);
    let d = desired(&b, &employee(1, json!({})));
    let account = b.create(&d, Some(&password())).await.unwrap();
    let before = running.sim.dump();
    running.reset_stats();
    let change = switchboard::plan::Change {
        field: Field::Enabled,
        from: Some("true".into()),
        to: Some("false".into()),
    };
    let err = b.update(&account, &d, &[change], None).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { system: BackendKind::Thulium, .. }), "{err:?}");
    let err = b.delete(&account).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { system: BackendKind::Thulium, .. }), "{err:?}");
    assert_eq!(running.sim.dump(), before);
    assert_eq!(running.stats().requests, 0);
}

#[tokio::test]
async fn refusals_map_to_validation_conflict_and_auth() {
    let running = start().await;
    let b = backend(&running);
    running
        .sim
        .seed(&json!({"name": "Old", "surname": "Hand", "login": "agent1", "password": "x", "number": "999"}))
        .unwrap();
    running
        .sim
        .seed(&json!({"name": "Old", "surname": "Hand", "login": "other", "password": "x", "number": "102"}))
        .unwrap();

    let bad_role = employee(3, json!({"phoneSystems": [{"name": "acme", "thulium": {"roles": [99]}}]}));
    match b.create(&desired(&b, &bad_role), Some(&password())).await {
        // The documented error names no field, and its message is not read.
        Err(Error::Validation { field, message, .. }) => {
            assert_eq!(field, None);
            assert!(message.contains("99"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Login taken (on another number), then number taken (by another login): told by
    // asking the system, whatever status the refusal came with.
    for status in [400, 409, 422] {
        running.sim.set_dialect(&dialect(json!({"duplicate_status": status}))).unwrap();
        for (n, holder) in
            [(1, "login agent1 is already held"), (2, "number 102 is already held by agent other")]
        {
            match b.create(&desired(&b, &employee(n, json!({}))), Some(&password())).await {
                Err(Error::Conflict { detail, .. }) => assert!(detail.contains(holder), "{status}: {detail}"),
                other => panic!("{status}: {other:?}"),
            }
        }
    }
    assert_eq!(agents(&running).len(), 2);

    let wrong = backend_with(
        &running,
        Credentials::new([("username".into(), "sim-admin".into()), ("password".into(), "wrong-pass".into())]),
        settings(),
    );
    assert!(matches!(wrong.list().await, Err(Error::Auth { .. })));
    let err = wrong.create(&desired(&b, &employee(4, json!({}))), Some(&password())).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(agents(&running).len(), 2);
}

#[tokio::test]
async fn survives_server_errors() {
    survives(FaultConfig { error_rate: 0.4, seed: 1, ..FaultConfig::default() }, "error", 5, 150).await;
}

#[tokio::test]
async fn survives_rate_limits() {
    let faults = FaultConfig { rate_limit_rate: 0.5, retry_after_secs: 0, seed: 2, ..FaultConfig::default() };
    survives(faults, "rate_limit", 5, 0).await;
}

#[tokio::test]
async fn a_rate_limited_create_waits_for_retry_after_and_makes_one_agent() {
    let running = start().await;
    let b = backend(&running);
    running.set_faults(FaultConfig { rate_limit_rate: 1.0, retry_after_secs: 1, ..FaultConfig::default() });
    let running = std::sync::Arc::new(running);
    let r = running.clone();
    let lift = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.set_faults(FaultConfig::default());
    });
    let started = Instant::now();
    let account = b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();
    lift.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After was not honoured");
    assert_eq!(account.id, "agent1");
    assert_eq!(running.stats().fault_count("rate_limit"), 1);
    assert_eq!(agents(&running).len(), 1);
}

#[tokio::test]
async fn survives_hangs_past_the_timeout() {
    let faults = FaultConfig { hang_rate: 0.25, hang_secs: 5, seed: 3, ..FaultConfig::default() };
    survives(faults, "hang", 3, 0).await;
}

#[tokio::test]
async fn survives_garbage_answers() {
    survives(FaultConfig { garbage_rate: 0.3, seed: 6, ..FaultConfig::default() }, "garbage", 5, 0).await;
}

#[tokio::test]
async fn garbage_is_never_a_successful_list() {
    let running = start().await;
    seed(&running, 3);
    let b = backend(&running);
    running.set_faults(FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() });
    let err = b.list().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn survives_dropped_connections() {
    survives(FaultConfig { drop_rate: 0.4, seed: 5, ..FaultConfig::default() }, "drop", 5, 150).await;
}

#[tokio::test]
async fn survives_commit_then_fail() {
    let faults = FaultConfig { commit_then_fail_rate: 0.5, seed: 6, ..FaultConfig::default() };
    survives(faults, "commit_then_fail", 5, 0).await;
}

#[tokio::test]
async fn survives_commit_then_hang() {
    let faults = FaultConfig {
        commit_then_fail_rate: 0.4,
        commit_then_fail_hang: true,
        hang_secs: 5,
        seed: 7,
        ..FaultConfig::default()
    };
    survives(faults, "commit_then_fail", 3, 0).await;
}

#[tokio::test]
async fn no_password_or_credential_appears_in_any_error() {
    let running = start().await;
    let credentials = running.sim.credentials();
    let b = backend(&running);
    let d = desired(&b, &employee(1, json!({})));
    let mut errors = Vec::new();
    for faults in [
        FaultConfig { error_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { drop_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { hang_rate: 1.0, hang_secs: 5, ..FaultConfig::default() },
        FaultConfig { commit_then_fail_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { rate_limit_rate: 1.0, retry_after_secs: 3600, ..FaultConfig::default() },
    ] {
        running.set_faults(faults);
        errors.push(b.create(&d, Some(&password())).await.unwrap_err());
        errors.push(b.list().await.unwrap_err());
    }
    running.set_faults(FaultConfig::default());
    // The commit-then-fail above made the agent: the same create is now a conflict.
    errors.push(b.create(&d, Some(&password())).await.unwrap_err());
    let bad_role = employee(2, json!({"phoneSystems": [{"name": "acme", "thulium": {"roles": [99]}}]}));
    errors.push(b.create(&desired(&b, &bad_role), Some(&password())).await.unwrap_err());
    let wrong = backend_with(
        &running,
        Credentials::new([("username".into(), "sim-admin".into()), ("password".into(), PASSWORD.into())]),
        settings(),
    );
    errors.push(wrong.create(&d, Some(&password())).await.unwrap_err());
    errors.push(wrong.list().await.unwrap_err());

    let kinds: BTreeSet<&str> = errors
        .iter()
        .map(|e| match e {
            Error::Transient { .. } => "transient",
            Error::Protocol { .. } => "protocol",
            Error::Conflict { .. } => "conflict",
            Error::Validation { .. } => "validation",
            Error::Auth { .. } => "auth",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["auth", "conflict", "protocol", "transient", "validation"].into());
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(PASSWORD), "password in {text}");
            for secret in credentials.values() {
                assert!(!text.contains(secret.as_str()), "credential in {text}");
            }
        }
    }
}

/// Every dialect of the simulator (list shape × paging, with the field types turned): the
/// client lists every agent, finds each by number, and successive syncs end with exactly
/// the seeded agents plus one per Employee.
#[tokio::test]
async fn every_dialect_ends_with_exactly_the_expected_agents() {
    let typings = ["integer", "string", "mixed"];
    let mut case = 0;
    for shape in ["wrapped", "bare"] {
        for paging in ["paged", "unpaged", "capped"] {
            case += 1;
            let typing = typings[case % 3];
            let patch = json!({"list_shape": shape, "paging": paging, "number": typing,
                               "agent_id": typings[(case + 1) % 3],
                               "active": if case % 2 == 0 { "integer" } else { "boolean" },
                               "create_answer": if case % 2 == 0 { "legacy" } else { "current" }});
            let running = start().await;
            running.sim.set_dialect(&dialect(patch.clone())).unwrap();
            seed(&running, 130);
            let b = backend(&running);
            let mut made = Vec::new();
            for i in 0..4 {
                made.push(converge(&b, &desired(&b, &employee(i, json!({}))), &password()).await);
            }
            // A second round of syncs finds them all: nothing is made twice.
            for i in 0..4 {
                let again = converge(&b, &desired(&b, &employee(i, json!({}))), &password()).await;
                assert_eq!(again.id, made[i as usize].id, "{patch}");
            }
            let listing = b.list().await.unwrap();
            assert!(listing.complete && listing.unreadable.is_empty(), "{patch}");
            let dump = agents(&running);
            assert_eq!(dump.len(), 134, "{patch}");
            let listed: BTreeSet<&str> = listing.accounts.iter().map(|a| a.id.as_str()).collect();
            let held: BTreeSet<&str> = dump.iter().map(|a| a["login"].as_str().unwrap()).collect();
            assert_eq!(listed, held, "{patch}");
            assert_eq!(listing.accounts.len(), 134, "{patch}");
            let one = listing.accounts.iter().find(|a| a.id == "agent3").unwrap();
            assert_eq!((one.extension.as_str(), one.attributes.enabled), ("103", Some(true)), "{patch}");
            let shape_seen = &listing.dialect[0].1;
            assert!(
                shape_seen.contains(if shape == "bare" { "bare" } else { "result" }),
                "{patch}: {shape_seen}"
            );
            if paging == "capped" {
                assert!(listing.pages.iter().all(|p| p.got <= CAP), "{patch}");
            }
        }
    }
}

/// A server that honours `limit` but ignores `offset` can show no more than its first
/// page: with more agents than that, the listing is partial, never taken for whole, and
/// no create goes through a lookup that may have missed its number.
#[tokio::test]
async fn a_server_that_ignores_the_offset_gives_a_partial_listing() {
    let running = start().await;
    running.sim.set_dialect(&dialect(json!({"paging": "offset_ignored", "list_shape": "bare"}))).unwrap();
    seed(&running, 150);
    let b = backend(&running);
    let listing = b.list().await.unwrap();
    assert!(!listing.complete);
    assert_eq!(listing.accounts.len(), 100);
    let paging = listing.dialect.iter().find(|(k, _)| *k == "paging").unwrap();
    assert!(paging.1.contains("offset ignored"), "{paging:?}");
    let err = b.find("9999").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    // With fewer agents than a page, the first page is all there is.
    let running = start().await;
    running.sim.set_dialect(&dialect(json!({"paging": "offset_ignored"}))).unwrap();
    seed(&running, 30);
    let listing = backend(&running).list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 30);
}

/// An unpaged server with exactly a page's worth of agents: asked for one agent, it sends
/// them all, so the first page was the whole list.
#[tokio::test]
async fn an_unpaged_server_with_exactly_a_page_is_read_whole() {
    let running = start().await;
    running.sim.set_dialect(&dialect(json!({"paging": "unpaged", "list_shape": "bare"}))).unwrap();
    seed(&running, 100);
    running.reset_stats();
    let listing = backend(&running).list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 100);
    assert_eq!(running.stats().count("GET agents", 200), 3);
}

/// A canned `GET /api/agents` answer, served from loopback: what no simulator dialect
/// holds (records switchboard cannot read).
async fn canned(body: Value) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/api/agents",
        axum::routing::get(move || {
            let body = body.clone();
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn a_record_that_cannot_be_read_fails_alone_and_names_its_field() {
    let (url, task) = canned(json!({"count": 4, "result": [
        {"agent_id": 1, "login": "jk", "number": 345, "active": true},
        {"agent_id": "2", "login": "an", "number": {"n": 346}},
        {"agent_id": 3, "number": "347"},
        {"agent_id": 4, "login": "pw", "number": "348", "active": 0},
    ]}))
    .await;
    let b = Thulium::new(
        &phone_system::Thulium { url },
        &Credentials::new([("username".into(), "u".into()), ("password".into(), "p".into())]),
        settings(),
    )
    .unwrap();
    let listing = b.list().await.unwrap();
    task.abort();
    assert!(listing.complete);
    let ids: Vec<&str> = listing.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["jk", "pw"]);
    assert_eq!(listing.accounts[1].attributes.enabled, Some(false));
    assert_eq!(listing.unreadable.len(), 2);
    assert_eq!(listing.unreadable[0].id.as_deref(), Some("an"));
    assert!(listing.unreadable[0].problem.starts_with("number"), "{:?}", listing.unreadable);
    assert_eq!(listing.unreadable[1].extension.as_deref(), Some("347"));
    assert!(listing.unreadable[1].problem.starts_with("login"), "{:?}", listing.unreadable);
}

#[tokio::test]
async fn survives_dropped_connections_on_a_capped_bare_list() {
    let faults = FaultConfig { drop_rate: 0.3, seed: 8, ..FaultConfig::default() };
    survives_in(json!({"list_shape": "bare", "paging": "capped", "number": "mixed"}), faults, "drop", 4, 70)
        .await;
}

/// Two engine passes on every list dialect: the first makes the agents, the second writes
/// nothing and leaves every Employee in sync.
#[tokio::test]
async fn a_second_pass_is_quiet_on_every_dialect() {
    use switchboard::{
        api::{PhoneSystemSpec, employee::AccountState},
        state::State,
    };
    for patch in [
        json!({}),
        json!({"list_shape": "bare", "paging": "unpaged", "number": "string", "active": "integer"}),
        json!({"paging": "capped", "agent_id": "string", "create_answer": "legacy"}),
        json!({"list_shape": "bare", "paging": "capped", "number": "mixed", "duplicate_status": 409}),
    ] {
        let running = start().await;
        running.sim.set_dialect(&dialect(patch.clone())).unwrap();
        seed(&running, 45);
        let system: PhoneSystemSpec = serde_json::from_value(json!({
            "thulium": {"url": running.url},
            "credentialsSecretRef": {"name": "thulium-credentials"},
        }))
        .unwrap();
        let people: Vec<(Owner, EmployeeSpec)> =
            (0..6).map(|n| (Owner::new("default", format!("e{n}")), employee(n, json!({})))).collect();
        let state = State::in_memory();
        let b = backend(&running);
        let first = engine_pass(&b, "acme", &system, &people, &state).await;
        assert_eq!((first.writes, first.failures), (6, 0), "{patch}");
        let second = engine_pass(&b, "acme", &system, &people, &state).await;
        assert_eq!((second.writes, second.failures), (0, 0), "{patch}");
        for (owner, _) in &people {
            let entry = &state.status(owner).unwrap().phone_systems[0];
            assert_eq!(entry.state, AccountState::InSync, "{patch}: {entry:?}");
        }
        assert_eq!(agents(&running).len(), 51, "{patch}");
    }
}
