//! The Ringostat backend against the Ringostat simulator over HTTP.
//!
//! Ringostat sends the project's Auth-key on every call: there are no tokens, so there is
//! no token-expiry test here. Its list has no pages (one answer holds every employee);
//! the list test still uses more employees than any page size of the other systems.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::faults::{converge, engine_pass, list_eventually};
use switchboard::{
    api::{BackendKind, EmployeeSpec, phone_system},
    backends::{Backend, Credentials, Error, Secret, http::Settings, ringostat::Ringostat},
    plan::{Account, Change, Desired, Field, Owner},
    sim::{FaultConfig, Running, default_simulator, spawn},
};

const PASSWORD: &str = "Canary-Sip-Passw0rd-Ringostat";

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
    spawn(default_simulator(BackendKind::Ringostat), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn block(running: &Running) -> phone_system::Ringostat {
    phone_system::Ringostat { url: running.url.clone(), project_id: "123".into(), creator_id: "456".into() }
}

fn backend_with(running: &Running, key: &str) -> Ringostat {
    Ringostat::new(&block(running), &Credentials::new([("authKey".into(), key.into())]), settings()).unwrap()
}

fn backend(running: &Running) -> Ringostat {
    backend_with(running, &running.sim.credentials()["authKey"])
}

fn employee(n: u32, extra: Value) -> EmployeeSpec {
    let mut spec = json!({
        "givenName": "Ivan",
        "familyName": "Petrenko",
        "email": format!("staff{n}@example.com"),
        "extension": (100 + n).to_string(),
        "phoneSystems": [{"name": "rs"}],
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    serde_json::from_value(spec).unwrap()
}

fn desired(backend: &Ringostat, e: &EmployeeSpec) -> Desired {
    let m = &e.phone_systems[0];
    Desired {
        owner: Owner::new("default", e.email.clone()),
        rank: 0,
        extension: e.extension_on(m).to_owned(),
        attributes: backend.desired(e, m).unwrap(),
        password_fingerprint: None,
    }
}

fn password() -> Secret {
    Secret::new(PASSWORD)
}

fn staff(running: &Running) -> Vec<Value> {
    running.sim.dump().as_array().unwrap().clone()
}

/// Seeds `n` unmanaged employees on extensions 10000.. straight into the simulator.
fn seed(running: &Running, n: u32) {
    for i in 0..n {
        let ext = (10000 + i).to_string();
        running
            .sim
            .seed(&json!({"access": "4", "fio": "Seed Person", "email": format!("seed{i}@example.com"),
                          "extensionNumber": ext,
                          "directions": {"main": [{"type": "sip", "direction": format!("s{ext}"),
                                                   "password": "seed-password-long"}]},
                          "departments": null}))
            .unwrap();
    }
}

async fn survives(faults: FaultConfig, mode: &str, n: u32, seeded: u32) {
    let running = start().await;
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

    let dump = staff(&running);
    assert_eq!(dump.len(), (n + seeded) as usize, "duplicates or losses: {dump:#?}");
    let extensions: BTreeSet<String> =
        dump.iter().map(|s| s["extensionNumber"].as_str().unwrap().to_owned()).collect();
    let expected: BTreeSet<String> =
        (0..n).map(|i| (100 + i).to_string()).chain((0..seeded).map(|i| (10000 + i).to_string())).collect();
    assert_eq!(extensions, expected);
    let made_ext: BTreeSet<String> = made.iter().map(|a| a.extension.clone()).collect();
    assert_eq!(made_ext, (0..n).map(|i| (100 + i).to_string()).collect());
    let listed_ids: BTreeSet<String> = listed.iter().map(|a| a.id.clone()).collect();
    let dumped_ids: BTreeSet<String> = dump.iter().map(|s| s["staffId"].to_string()).collect();
    assert_eq!(listed_ids, dumped_ids);
    for account in &made {
        assert!(dumped_ids.contains(&account.id), "create returned an id the system does not hold");
    }
}

#[test]
fn capabilities_say_create_and_read_only() {
    let b = Ringostat::new(
        &phone_system::Ringostat {
            url: "https://api.ringostat.net".into(),
            project_id: "1".into(),
            creator_id: "2".into(),
        },
        &Credentials::new([("authKey".into(), "k".into())]),
        Settings::default(),
    )
    .unwrap();
    let caps = b.capabilities();
    assert!(caps.create && !caps.update && !caps.delete);
    assert!(!caps.readable.contains(&Field::Password));
    assert!(caps.readable.contains(&Field::DisplayName) && caps.readable.contains(&Field::Extension));
    assert!(!caps.readable.contains(&Field::Enabled), "Ringostat has nothing to block an employee with");
    let err = Ringostat::new(
        &phone_system::Ringostat {
            url: "https://api.ringostat.net".into(),
            project_id: "1".into(),
            creator_id: "2".into(),
        },
        &Credentials::default(),
        Settings::default(),
    )
    .err()
    .unwrap();
    assert_eq!(err, Error::Credentials { key: "authKey" });
}

#[tokio::test]
async fn desired_refuses_what_ringostat_cannot_hold() {
    let running = start().await;
    let b = backend(&running);
    let unfit = |e: EmployeeSpec| match b.desired(&e, &e.phone_systems[0]) {
        Err(Error::Unfit { field, rule, .. }) => (field, rule),
        other => panic!("expected Unfit, got {other:?}"),
    };
    assert_eq!(
        unfit(employee(0, json!({"extension": "123456"}))),
        ("spec.extension".into(), "must be 2–5 digits".into())
    );
    assert_eq!(
        unfit(employee(0, json!({"phoneSystems": [{"name": "rs", "extension": "100000"}]}))).0,
        "spec.phoneSystems[name=rs].extension"
    );
    assert_eq!(unfit(employee(0, json!({"givenName": "Anna-Maria"}))).0, "spec.givenName");
    assert_eq!(unfit(employee(0, json!({"familyName": "O'Brien"}))).0, "spec.familyName");
    assert_eq!(unfit(employee(0, json!({"givenName": "Agent7"}))).0, "spec.givenName");
    assert_eq!(unfit(employee(0, json!({"displayName": "Agent 007"}))).0, "spec.displayName");
    assert_eq!(unfit(employee(0, json!({"email": "ivan@example.c0m"}))).0, "spec.email");
    assert_eq!(
        unfit(employee(0, json!({"phoneSystems": [{"name": "rs", "thulium": {"language": "en"}}]}))).0,
        "spec.phoneSystems[name=rs].thulium"
    );
    // Any alphabet is fine; runs of spaces are collapsed.
    let e = employee(0, json!({"givenName": "Олена", "familyName": "Коваль  Шевченко"}));
    let attrs = b.desired(&e, &e.phone_systems[0]).unwrap();
    assert_eq!(attrs.display_name.as_deref(), Some("Олена Коваль Шевченко"));
    assert_eq!(running.stats().requests, 0, "desired makes no calls");
}

#[tokio::test]
async fn create_sends_every_field_and_returns_the_employee_as_held() {
    let running = start().await;
    let b = backend(&running);
    let e = employee(
        5,
        json!({"phoneSystems": [{"name": "rs", "ringostat": {
            "accessLevel": "analyst", "departments": ["main", "SECONDARY"], "powerDialer": true}}]}),
    );
    let d = desired(&b, &e);
    let account = b.create(&d, Some(&password())).await.unwrap();
    assert_eq!(account.extension, "105");
    for field in b.capabilities().readable.iter().filter(|f| **f != Field::Extension) {
        assert_eq!(account.attributes.get(field), d.attributes.get(field), "{field}");
    }
    let stored = &staff(&running)[0];
    assert_eq!(account.id, stored["staffId"].to_string());
    assert_eq!(stored["access"], "2");
    assert_eq!(stored["fio"], "Ivan Petrenko");
    assert_eq!(stored["creatorId"], "456");
    assert_eq!(stored["departments"], json!(["Main", "Secondary"]));
    assert_eq!(stored["isHasAccessToPowerDialer"], true);
    let sip = &stored["directions"]["main"][0];
    assert_eq!((sip["type"].as_str(), sip["direction"].as_str()), (Some("sip"), Some("105")));
    assert_eq!(sip["password"], PASSWORD);
    // The documented address, with the project header.
    assert_eq!(running.stats().count("Api\\V2\\Staff.addStaff", 200), 1);

    assert_eq!(b.find("105").await.unwrap(), Some(account));
    assert_eq!(b.find("106").await.unwrap(), None);
}

#[tokio::test]
async fn access_defaults_to_manager_and_departments_to_none() {
    let running = start().await;
    let b = backend(&running);
    let d = desired(&b, &employee(1, json!({})));
    assert!(d.attributes.settings.is_empty(), "nothing declared, nothing compared");
    b.create(&d, None).await.unwrap();
    let stored = &staff(&running)[0];
    assert_eq!(stored["access"], "4");
    assert_eq!(stored["departments"], Value::Null);
    assert_eq!(stored["isHasAccessToPowerDialer"], false);
    // A generated SIP password meets the 14-character rule.
    assert!(stored["directions"]["main"][0]["password"].as_str().unwrap().len() >= 16);
    assert!(b.generate_password().expose().len() >= 16);
}

#[tokio::test]
async fn a_short_sip_password_is_refused_before_any_call() {
    let running = start().await;
    let b = backend(&running);
    let err = b.create(&desired(&b, &employee(1, json!({}))), Some(&Secret::new("only13chars!!"))).await;
    match err {
        Err(Error::Unfit { field, rule, .. }) => {
            assert_eq!(field, "spec.passwordSecretRef");
            assert!(rule.contains("14"), "{rule}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(running.stats().requests, 0);
}

#[tokio::test]
async fn list_returns_every_employee() {
    let running = start().await;
    seed(&running, 150);
    let b = backend(&running);
    b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();
    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 151);
    let extensions: BTreeSet<&str> = listing.accounts.iter().map(|a| a.extension.as_str()).collect();
    assert_eq!(extensions.len(), 151);
    assert!(extensions.contains("10000") && extensions.contains("10149") && extensions.contains("101"));
    let seeded = listing.accounts.iter().find(|a| a.extension == "10000").unwrap();
    assert_eq!(seeded.attributes.display_name.as_deref(), Some("Seed Person"));
    assert_eq!(seeded.attributes.settings.get("access").map(String::as_str), Some("4"));
    assert_eq!(seeded.attributes.settings.get("departments").map(String::as_str), Some("[]"));
}

#[tokio::test]
async fn an_empty_project_lists_nothing() {
    // The API answers "User does not exist" for an empty project.
    let running = start().await;
    let listing = backend(&running).list().await.unwrap();
    assert!(listing.complete && listing.accounts.is_empty());
    assert_eq!(backend(&running).find("101").await.unwrap(), None);
}

#[tokio::test]
async fn update_and_delete_are_unsupported_and_change_nothing() {
    let running = start().await;
    let b = backend(&running);
    let d = desired(&b, &employee(1, json!({})));
    let account = b.create(&d, Some(&password())).await.unwrap();
    let before = running.sim.dump();
    running.reset_stats();
    let change =
        Change { field: Field::Email, from: Some("a@example.com".into()), to: Some("b@example.com".into()) };
    let err = b.update(&account, &d, &[change], Some(&password())).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { system: BackendKind::Ringostat, .. }), "{err:?}");
    let err = b.delete(&account).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { system: BackendKind::Ringostat, .. }), "{err:?}");
    assert_eq!(running.sim.dump(), before);
    assert_eq!(running.stats().requests, 0);
}

#[tokio::test]
async fn refusals_map_to_validation_conflict_and_auth() {
    let running = start().await;
    let b = backend(&running);
    b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();

    // Extension taken; e-mail taken.
    for e in [employee(2, json!({"extension": "101"})), employee(1, json!({"extension": "102"}))] {
        match b.create(&desired(&b, &e), Some(&password())).await {
            Err(Error::Conflict { detail, .. }) => assert!(detail.contains("already"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }
    let unknown_dept =
        employee(3, json!({"phoneSystems": [{"name": "rs", "ringostat": {"departments": ["Sales"]}}]}));
    match b.create(&desired(&b, &unknown_dept), Some(&password())).await {
        Err(Error::Validation { field, message, .. }) => {
            assert_eq!(field.as_deref(), Some("departments"));
            assert!(message.contains("sales"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(staff(&running).len(), 1);

    let wrong = backend_with(&running, "not-the-auth-key");
    assert!(matches!(wrong.list().await, Err(Error::Auth { .. })));
    let err = wrong.create(&desired(&b, &employee(4, json!({}))), Some(&password())).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");

    let other_project = Ringostat::new(
        &phone_system::Ringostat { project_id: "999".into(), ..block(&running) },
        &Credentials::new(running.sim.credentials()),
        settings(),
    )
    .unwrap();
    assert!(matches!(other_project.list().await, Err(Error::Auth { .. })));
    assert_eq!(staff(&running).len(), 1);
}

#[tokio::test]
async fn survives_server_errors() {
    survives(FaultConfig { error_rate: 0.4, seed: 11, ..FaultConfig::default() }, "error", 5, 20).await;
}

#[tokio::test]
async fn survives_rate_limits() {
    let faults =
        FaultConfig { rate_limit_rate: 0.5, retry_after_secs: 0, seed: 12, ..FaultConfig::default() };
    survives(faults, "rate_limit", 5, 0).await;
}

#[tokio::test]
async fn a_rate_limited_create_waits_for_retry_after_and_makes_one_employee() {
    let running = Arc::new(start().await);
    let b = backend(&running);
    running.set_faults(FaultConfig { rate_limit_rate: 1.0, retry_after_secs: 1, ..FaultConfig::default() });
    let r = running.clone();
    let lift = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.set_faults(FaultConfig::default());
    });
    let started = Instant::now();
    let account = b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();
    lift.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After was not honoured");
    assert_eq!(account.extension, "101");
    assert_eq!(running.stats().fault_count("rate_limit"), 1);
    assert_eq!(staff(&running).len(), 1);
}

#[tokio::test]
async fn survives_hangs_past_the_timeout() {
    let faults = FaultConfig { hang_rate: 0.3, hang_secs: 5, seed: 3, ..FaultConfig::default() };
    survives(faults, "hang", 3, 0).await;
}

#[tokio::test]
async fn survives_garbage_answers() {
    survives(FaultConfig { garbage_rate: 0.3, seed: 14, ..FaultConfig::default() }, "garbage", 5, 0).await;
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
    survives(FaultConfig { drop_rate: 0.4, seed: 15, ..FaultConfig::default() }, "drop", 5, 20).await;
}

#[tokio::test]
async fn survives_commit_then_fail() {
    let faults = FaultConfig { commit_then_fail_rate: 0.5, seed: 16, ..FaultConfig::default() };
    survives(faults, "commit_then_fail", 5, 0).await;
}

#[tokio::test]
async fn survives_commit_then_hang() {
    let faults = FaultConfig {
        commit_then_fail_rate: 0.4,
        commit_then_fail_hang: true,
        hang_secs: 5,
        seed: 17,
        ..FaultConfig::default()
    };
    survives(faults, "commit_then_fail", 3, 0).await;
}

#[tokio::test]
async fn no_password_or_credential_appears_in_any_error() {
    let running = start().await;
    let key = running.sim.credentials()["authKey"].clone();
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
    // The commit-then-fail above made the employee: the same create is now a conflict.
    errors.push(b.create(&d, Some(&password())).await.unwrap_err());
    let unknown_dept =
        employee(2, json!({"phoneSystems": [{"name": "rs", "ringostat": {"departments": ["Sales"]}}]}));
    errors.push(b.create(&desired(&b, &unknown_dept), Some(&password())).await.unwrap_err());
    errors.push(b.create(&d, Some(&Secret::new("too-short-pw"))).await.unwrap_err());
    let wrong = backend_with(&running, PASSWORD);
    errors.push(wrong.create(&desired(&b, &employee(3, json!({}))), Some(&password())).await.unwrap_err());
    errors.push(wrong.list().await.unwrap_err());

    let kinds: BTreeSet<&str> = errors
        .iter()
        .map(|e| match e {
            Error::Transient { .. } => "transient",
            Error::Protocol { .. } => "protocol",
            Error::Conflict { .. } => "conflict",
            Error::Validation { .. } => "validation",
            Error::Auth { .. } => "auth",
            Error::Unfit { .. } => "unfit",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["auth", "conflict", "protocol", "transient", "unfit", "validation"].into());
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(PASSWORD), "password in {text}");
            assert!(!text.contains("too-short-pw"), "password in {text}");
            assert!(!text.contains(&key), "auth key in {text}");
        }
    }
}

/// The real backend, with listings that fail from the `fail_from`-th on: the pass's own
/// listing works, the one that finds the new employees does not.
struct ListFailsAfter {
    inner: Ringostat,
    lists: std::sync::atomic::AtomicUsize,
    fail_from: usize,
}

impl Backend for ListFailsAfter {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn capabilities(&self) -> &switchboard::plan::Capabilities {
        self.inner.capabilities()
    }
    fn desired(
        &self,
        e: &EmployeeSpec,
        m: &switchboard::api::Membership,
    ) -> Result<switchboard::plan::Attributes, Error> {
        self.inner.desired(e, m)
    }
    fn generate_password(&self) -> Secret {
        self.inner.generate_password()
    }
    async fn list(&self) -> Result<switchboard::backends::Listing, Error> {
        if self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= self.fail_from {
            return Err(Error::Transient {
                system: BackendKind::Ringostat,
                detail: "listing refused".into(),
                retry_after: None,
            });
        }
        self.inner.list().await
    }
    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        self.inner.find(extension).await
    }
    async fn create(&self, d: &Desired, p: Option<&Secret>) -> Result<Account, Error> {
        self.inner.create(d, p).await
    }
    async fn create_unresolved(&self, d: &Desired, p: Option<&Secret>) -> Result<Option<Account>, Error> {
        self.inner.create_unresolved(d, p).await
    }
    async fn update(&self, a: &Account, d: &Desired, c: &[Change], p: Option<&Secret>) -> Result<(), Error> {
        self.inner.update(a, d, c, p).await
    }
    async fn delete(&self, a: &Account) -> Result<(), Error> {
        self.inner.delete(a).await
    }
}

/// addStaff names no id: a pass finds its new employees with one listing after the
/// creates. When that listing fails they stay pending, and the next pass takes them
/// over as its own creates: every employee once, none made twice.
#[tokio::test]
async fn new_employees_are_found_by_one_listing_or_taken_over_by_the_next_pass() {
    use switchboard::{
        api::{PhoneSystemSpec, employee::AccountState},
        sim::ringostat::{ADD_STAFF, LIST_STAFF},
        state::State,
    };

    let running = start().await;
    let system: PhoneSystemSpec = serde_json::from_value(json!({
        "ringostat": {"url": running.url, "projectId": "123", "creatorId": "456"},
        "credentialsSecretRef": {"name": "rs-credentials"},
    }))
    .unwrap();
    let person = |n: u32| (Owner::new("default", format!("e{n}")), employee(n, json!({})));
    let mut people: Vec<(Owner, EmployeeSpec)> = (0..12).map(person).collect();
    let state = State::in_memory();
    let entries = |state: &State, people: &[(Owner, EmployeeSpec)]| {
        people
            .iter()
            .map(|(owner, _)| state.status(owner).unwrap().phone_systems[0].clone())
            .collect::<Vec<_>>()
    };
    let flaky = |fail_from| ListFailsAfter { inner: backend(&running), lists: Default::default(), fail_from };

    // The listing after the creates fails: all twelve are made, and all wait.
    running.reset_stats();
    let report = engine_pass(&flaky(2), "rs", &system, &people, &state).await;
    assert_eq!(report.writes, 12);
    assert_eq!(staff(&running).len(), 12);
    assert!(entries(&state, &people).iter().all(|e| e.state == AccountState::Pending));
    assert_eq!(running.stats().total(ADD_STAFF), 12);

    // The next pass finds them in its listing and takes them over: no create, no lookup.
    running.reset_stats();
    let report = engine_pass(&flaky(usize::MAX), "rs", &system, &people, &state).await;
    assert_eq!((report.writes, report.failures), (0, 0));
    assert_eq!(staff(&running).len(), 12);
    assert!(entries(&state, &people).iter().all(|e| e.state == AccountState::InSync));
    let stats = running.stats();
    assert_eq!((stats.total(ADD_STAFF), stats.total(LIST_STAFF)), (0, 1), "{stats:?}");

    // New employees and a working listing: named in the same pass, by one more listing.
    people.extend((12..15).map(person));
    running.reset_stats();
    let report = engine_pass(&backend(&running), "rs", &system, &people, &state).await;
    assert_eq!((report.writes, report.failures), (3, 0));
    let stats = running.stats();
    assert_eq!((stats.total(ADD_STAFF), stats.total(LIST_STAFF)), (3, 2), "{stats:?}");
    for entry in entries(&state, &people) {
        assert_eq!(entry.state, AccountState::InSync, "{entry:?}");
        assert!(entry.external_id.as_deref().is_some_and(|id| !id.is_empty()), "{entry:?}");
    }
}

fn dialect(patch: &Value) -> serde_json::Map<String, Value> {
    patch.as_object().unwrap().clone()
}

/// The dialects of the simulator, in combinations that turn every setting: the contract
/// tests run the client against each.
fn dialects() -> Vec<Value> {
    vec![
        json!({}),
        json!({"result": "array", "departments": "names", "access": "number", "empty": "result"}),
        json!({"departments": "ids", "access": "word", "error_codes": "server", "add_path": "v2"}),
        json!({"result": "array", "fio": "absent", "error_codes": "zero", "project_header": "required"}),
        json!({"departments": "ids", "fio": "absent", "empty": "result", "add_path": "a_v2",
               "error_codes": "server"}),
        json!({"result": "array", "departments": "objects", "access": "word", "error_codes": "zero",
               "add_path": "v2", "project_header": "required"}),
    ]
}

/// Every dialect: successive syncs from an empty project, then from one holding others,
/// end with exactly the expected employees, each found again, none made twice.
#[tokio::test]
async fn every_dialect_ends_with_exactly_the_expected_employees() {
    for patch in dialects() {
        for seeded in [0, 20] {
            let running = start().await;
            running.sim.set_dialect(&dialect(&patch)).unwrap();
            seed(&running, seeded);
            let b = backend(&running);
            let person = |n: u32| {
                employee(
                    n,
                    json!({"phoneSystems": [{"name": "rs", "ringostat": {
                    "accessLevel": "analyst", "departments": ["main"]}}]}),
                )
            };
            let mut made = Vec::new();
            for i in 0..4 {
                made.push(converge(&b, &desired(&b, &person(i)), &password()).await);
            }
            for i in 0..4 {
                let again = converge(&b, &desired(&b, &person(i)), &password()).await;
                assert_eq!(again.id, made[i as usize].id, "{patch}");
            }
            let listing = b.list().await.unwrap();
            assert!(listing.complete && listing.unreadable.is_empty(), "{patch}");
            let dump = staff(&running);
            assert_eq!(dump.len(), 4 + seeded as usize, "{patch}");
            let listed: BTreeSet<String> = listing.accounts.iter().map(|a| a.id.clone()).collect();
            let held: BTreeSet<String> = dump.iter().map(|s| s["staffId"].to_string()).collect();
            assert_eq!(listed, held, "{patch}");
            let one = listing.accounts.iter().find(|a| a.extension == "102").unwrap();
            assert_eq!(one.attributes.settings.get("access").map(String::as_str), Some("2"), "{patch}");
            let caps = b.capabilities();
            let ids = patch["departments"] == "ids";
            let no_fio = patch["fio"] == "absent";
            assert_eq!(caps.readable.contains(&Field::Setting("departments".into())), !ids, "{patch}");
            assert_eq!(caps.readable.contains(&Field::DisplayName), !no_fio, "{patch}");
            if !ids {
                assert_eq!(
                    one.attributes.settings.get("departments").map(String::as_str),
                    Some(r#"["main"]"#)
                );
            }
        }
    }
}

/// Whatever the dialect, a second pass over the same Employees writes nothing and leaves
/// every one in sync: what the listing cannot show (departments as ids, no `fio`) is not
/// taken for drift.
#[tokio::test]
async fn a_second_pass_is_quiet_on_every_dialect() {
    use switchboard::{
        api::{PhoneSystemSpec, employee::AccountState},
        state::State,
    };
    for patch in dialects() {
        let running = start().await;
        running.sim.set_dialect(&dialect(&patch)).unwrap();
        let system: PhoneSystemSpec = serde_json::from_value(json!({
            "ringostat": {"url": running.url, "projectId": "123", "creatorId": "456"},
            "credentialsSecretRef": {"name": "rs-credentials"},
        }))
        .unwrap();
        let people: Vec<(Owner, EmployeeSpec)> = (0..5)
            .map(|n| {
                let e = employee(
                    n,
                    json!({"phoneSystems": [{"name": "rs", "ringostat": {
                    "accessLevel": "manager", "departments": ["Secondary"], "powerDialer": true}}]}),
                );
                (Owner::new("default", format!("e{n}")), e)
            })
            .collect();
        let state = State::in_memory();
        let b = backend(&running);
        let first = engine_pass(&b, "rs", &system, &people, &state).await;
        assert_eq!((first.writes, first.failures), (5, 0), "{patch}");
        let second = engine_pass(&b, "rs", &system, &people, &state).await;
        assert_eq!((second.writes, second.failures), (0, 0), "{patch}");
        for (owner, _) in &people {
            let entry = &state.status(owner).unwrap().phone_systems[0];
            assert_eq!(entry.state, AccountState::InSync, "{patch}: {entry:?}");
        }
        assert_eq!(staff(&running).len(), 5, "{patch}");
    }
}

/// addStaff at the address the page names, else at its examples' address: one 404, then
/// every create goes straight to the address that answers.
#[tokio::test]
async fn add_staff_finds_its_address() {
    let running = start().await;
    running.sim.set_dialect(&dialect(&json!({"add_path": "v2", "project_header": "required"}))).unwrap();
    let b = backend(&running);
    for i in 0..3 {
        b.create_unresolved(&desired(&b, &employee(i, json!({}))), Some(&password())).await.unwrap();
    }
    let stats = running.stats();
    assert_eq!(stats.count("POST /a/v2", 404), 1, "{stats:?}");
    assert_eq!(stats.count(ADD_STAFF_OP, 200), 3, "{stats:?}");
    assert_eq!(staff(&running).len(), 3);
}

const ADD_STAFF_OP: &str = switchboard::sim::ringostat::ADD_STAFF;

/// Refusals are told by the listing, whatever code the project uses for its own errors:
/// a clash with a listed employee is a conflict, anything else a validation error.
#[tokio::test]
async fn refusals_are_told_apart_whatever_the_error_codes() {
    for codes in ["http", "server", "zero"] {
        let running = start().await;
        running.sim.set_dialect(&dialect(&json!({"error_codes": codes}))).unwrap();
        let b = backend(&running);
        b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();
        match b.create(&desired(&b, &employee(2, json!({"extension": "101"}))), Some(&password())).await {
            Err(Error::Conflict { detail, .. }) => {
                assert!(detail.contains("extension 101"), "{codes}: {detail}")
            }
            other => panic!("{codes}: {other:?}"),
        }
        let unknown =
            employee(3, json!({"phoneSystems": [{"name": "rs", "ringostat": {"departments": ["Sales"]}}]}));
        match b.create(&desired(&b, &unknown), Some(&password())).await {
            Err(Error::Validation { field, .. }) => {
                assert_eq!(field.as_deref(), Some("departments"), "{codes}")
            }
            other => panic!("{codes}: {other:?}"),
        }
        assert_eq!(staff(&running).len(), 1);
    }
}

/// A canned list answer (with the request's id), served from loopback: records no
/// simulator dialect holds.
async fn canned(result: Value) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/api/json-rpc",
        axum::routing::post(move |body: axum::Json<Value>| {
            let result = result.clone();
            async move { axum::Json(json!({"jsonrpc": "2.0", "result": result, "id": body["id"]})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// A project that showed employees and then answers "no employee" is believed only when
/// it says so three times in a row: before that the listing is partial, so a glitch of
/// the API cannot release every claim as gone and send a create per Employee.
#[tokio::test]
async fn a_project_that_suddenly_answers_none_is_believed_only_on_the_third_time() {
    use std::sync::{Arc, atomic::AtomicUsize};
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/api/json-rpc",
        axum::routing::post(move |body: axum::Json<Value>| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let answer = match n {
                    0 | 3 => json!({"jsonrpc": "2.0", "id": body["id"], "result": {"231": {
                        "staffId": 231, "fio": "Ivan Petrenko", "email": "i@example.com", "extensionNumber": "101"}}}),
                    _ => json!({"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32000, "message": "User does not exist"}}),
                };
                axum::Json(answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let b = Ringostat::new(
        &phone_system::Ringostat { url, project_id: "123".into(), creator_id: "456".into() },
        &Credentials::new([("authKey".into(), "k".into())]),
        settings(),
    )
    .unwrap();
    let first = b.list().await.unwrap();
    assert!(first.complete && first.accounts.len() == 1);
    for _ in 0..2 {
        let glitch = b.list().await.unwrap();
        assert!(!glitch.complete, "{:?}", glitch.dialect);
        assert!(glitch.accounts.is_empty());
    }
    // The employees are back: the count starts again.
    assert_eq!(b.list().await.unwrap().accounts.len(), 1);
    for expected in [false, false, true] {
        assert_eq!(b.list().await.unwrap().complete, expected);
    }
    assert!(b.find("101").await.is_ok(), "believed empty: the extension is free");
    task.abort();
}

#[tokio::test]
async fn a_record_that_cannot_be_read_fails_alone_and_names_its_field() {
    let (url, task) = canned(json!({
        "231": {"staffId": 231, "fio": "Ivan Petrenko", "email": "i@example.com", "extensionNumber": "101",
                "access": 4, "departments": [{"id": 1, "name": "Main"}]},
        "232": {"staffId": "232", "fio": "Olena Koval", "extensionNumber": {"n": 102}},
        "233": {"fio": "No Id", "extensionNumber": 103, "departments": [true]},
        "234": {"id": 234, "email": "p@example.com", "extensionNumber": 104, "isHasAccessToPowerDialer": 1},
    }))
    .await;
    let b = Ringostat::new(
        &phone_system::Ringostat { url, project_id: "123".into(), creator_id: "456".into() },
        &Credentials::new([("authKey".into(), "k".into())]),
        settings(),
    )
    .unwrap();
    let listing = b.list().await.unwrap();
    task.abort();
    assert!(listing.complete);
    let ids: Vec<&str> = listing.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["231", "234"]);
    assert_eq!(listing.accounts[1].attributes.display_name, None);
    assert_eq!(listing.accounts[1].attributes.settings.get("isHasAccessToPowerDialer").unwrap(), "true");
    assert_eq!(listing.unreadable.len(), 2);
    assert_eq!(listing.unreadable[0].id.as_deref(), Some("232"));
    assert!(listing.unreadable[0].problem.starts_with("extensionNumber"), "{:?}", listing.unreadable);
    assert_eq!(listing.unreadable[1].id.as_deref(), Some("233"), "the key names the record");
    assert_eq!(listing.unreadable[1].extension.as_deref(), Some("103"));
    assert!(listing.unreadable[1].problem.starts_with("departments[0]"), "{:?}", listing.unreadable);
    // One record without fio: names are not compared until a listing shows them all.
    assert!(!b.capabilities().readable.contains(&Field::DisplayName));
    assert!(
        listing.dialect.iter().any(|(k, v)| *k == "fio" && v.contains("1 of 2")),
        "{:?}",
        listing.dialect
    );
}

/// A project that wants unique full names refuses a second Ivan Petrenko. Names repeat in
/// most projects, so the refusal stays a validation error naming `fio`, not a conflict.
#[tokio::test]
async fn a_second_employee_of_the_same_name_is_refused_where_names_are_unique() {
    let running = start().await;
    running.sim.set_dialect(&dialect(&json!({"fio_unique": true, "error_codes": "zero"}))).unwrap();
    let b = backend(&running);
    b.create(&desired(&b, &employee(1, json!({}))), Some(&password())).await.unwrap();
    match b.create(&desired(&b, &employee(2, json!({}))), Some(&password())).await {
        Err(Error::Validation { field, message, .. }) => {
            assert_eq!(field.as_deref(), Some("fio"));
            assert!(message.contains("Ivan Petrenko"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    b.create(&desired(&b, &employee(3, json!({"givenName": "Petro"}))), Some(&password())).await.unwrap();
    assert_eq!(staff(&running).len(), 2);
}
