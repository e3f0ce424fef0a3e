//! The Telphin backend against the Telphin simulator, over HTTP: CRUD with the number
//! found or made first, the ownership marker, pagination, token expiry, the hourly
//! quota, every fault mode, and secrets kept out of errors.

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use switchboard::{
    api::{EmployeeSpec, phone_system},
    backends::{
        Backend, Credentials, Error, Secret, create_once,
        telphin::{self, Telphin},
    },
    plan::{Account, Change, Desired, Field, Owner},
    sim::{
        self, FaultConfig, Running, Simulator,
        telphin::{TelphinConfig, TelphinSim},
    },
};

use crate::backend_apio::{
    ECHO_TOKEN, assert_clean, echo, eventually, eventually_create, fault_modes, owner, settings,
};

struct Fx {
    run: Running,
    sim: Arc<TelphinSim>,
}

async fn start(cfg: TelphinConfig) -> Fx {
    let sim = TelphinSim::new(cfg);
    let run = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    Fx { run, sim }
}

fn block(url: &str) -> phone_system::Telphin {
    phone_system::Telphin { url: url.to_owned(), client_id: "@me".into() }
}

impl Fx {
    fn backend(&self) -> Telphin {
        self.backend_with(settings())
    }

    fn backend_with(&self, settings: switchboard::backends::http::Settings) -> Telphin {
        let c = self.sim.credentials();
        let creds = Credentials::new([
            ("clientId".to_string(), c["clientId"].clone()),
            ("clientSecret".to_string(), c["clientSecret"].clone()),
        ]);
        Telphin::new(&block(&self.run.url), &creds, settings).unwrap()
    }

    fn users(&self) -> Vec<Value> {
        let Value::Array(all) = self.sim.dump() else { panic!("dump is not an array") };
        all
    }

    fn extensions(&self) -> Vec<Value> {
        let Value::Array(all) = self.sim.extensions() else { panic!("not an array") };
        all
    }

    /// The user on number `n` (`0001*n`), exactly one.
    fn user(&self, n: &str) -> Value {
        let ext = self.extension(n);
        let found: Vec<Value> = self.users().into_iter().filter(|u| u["extension_id"] == ext["id"]).collect();
        assert_eq!(found.len(), 1, "users on {n}: {found:?}");
        found.into_iter().next().unwrap()
    }

    fn extension(&self, n: &str) -> Value {
        let name = format!("0001*{n}");
        let found: Vec<Value> = self.extensions().into_iter().filter(|e| e["name"] == json!(name)).collect();
        assert_eq!(found.len(), 1, "extensions {n}: {found:?}");
        found.into_iter().next().unwrap()
    }
}

fn employee(spec: Value) -> EmployeeSpec {
    let mut base = json!({
        "givenName": "Anna",
        "familyName": "Nowak",
        "email": "anna.nowak@example.com",
        "extension": "301",
        "phoneSystems": [{"name": "cloud-pbx"}],
    });
    if let (Value::Object(b), Value::Object(s)) = (&mut base, spec) {
        b.extend(s);
    }
    serde_json::from_value(base).unwrap()
}

fn desired(b: &Telphin, name: &str, e: &EmployeeSpec) -> Desired {
    let m = &e.phone_systems[0];
    Desired {
        owner: owner(name),
        rank: 0,
        extension: e.extension_on(m).to_owned(),
        attributes: b.desired(e, m).unwrap(),
        password_fingerprint: None,
    }
}

fn person(b: &Telphin, name: &str, extension: &str) -> Desired {
    let e =
        employee(json!({"email": format!("{name}@example.com"), "extension": extension, "givenName": name}));
    desired(b, name, &e)
}

fn password() -> Secret {
    Secret::new("Tp-pass-Word-91")
}

#[tokio::test]
async fn create_list_update_delete_round_trip_with_the_marker() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let e = employee(json!({
        "givenName": "Иван",
        "familyName": "Петренко",
        "email": "ivan.petrenko@example.com",
        "extension": "201",
        "login": "ivan.p",
        "phoneSystems": [{"name": "cloud-pbx", "telphin": {"access": "read_only", "timeZone": "Europe/Kyiv"}}],
    }));
    let d = desired(&b, "ivan-petrenko", &e);
    let pw = b.generate_password();
    let created = create_once(&b, &d, Some(&pw)).await.unwrap();
    assert_eq!(created.extension, "201");
    assert_eq!(created.marker, Some(owner("ivan-petrenko")));

    let ext = fx.extension("201");
    assert_eq!(ext["type"], json!("phone"));
    assert_eq!(ext["status"], json!("active"));
    let held = fx.user("201");
    assert_eq!(held["id"].to_string(), created.id);
    assert_eq!(held["name"], json!("Иван Петренко"));
    assert_eq!(held["login"], json!("ivan.p"));
    assert_eq!(held["password"], json!(pw.expose()));
    assert_eq!(held["status"], json!("active"));
    assert_eq!(held["access"], json!("read_only"));
    assert_eq!(held["timezone"], json!("Europe/Kyiv"));
    assert_eq!(held["extra_params"], json!("switchboard:default/ivan-petrenko"));

    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts, vec![created.clone()]);
    assert_eq!(listing.accounts[0].attributes, d.attributes, "everything declared reads back equal");
    assert_eq!(b.find("201").await.unwrap(), Some(created.clone()));
    assert_eq!(b.find("299").await.unwrap(), None);

    let later = employee(json!({
        "givenName": "Ivan",
        "familyName": "Petrenko",
        "email": "i.petrenko@example.com",
        "extension": "202",
        "login": "ivan.p",
        "enabled": false,
        "phoneSystems": [{"name": "cloud-pbx", "telphin": {"access": "full", "timeZone": "Europe/Warsaw"}}],
    }));
    let d2 = desired(&b, "ivan-petrenko", &later);
    let changes = vec![
        Change { field: Field::Extension, from: Some("201".into()), to: Some("202".into()) },
        Change { field: Field::DisplayName, from: None, to: Some("Ivan Petrenko".into()) },
        Change { field: Field::Email, from: None, to: Some("i.petrenko@example.com".into()) },
        Change { field: Field::Enabled, from: Some("true".into()), to: Some("false".into()) },
        Change { field: Field::Setting(telphin::ACCESS.into()), from: None, to: Some("full".into()) },
        Change {
            field: Field::Setting(telphin::TIMEZONE.into()),
            from: None,
            to: Some("Europe/Warsaw".into()),
        },
        Change { field: Field::Password, from: None, to: None },
    ];
    let pw2 = Secret::new("Second-Pass-88");
    b.update(&created, &d2, &changes, Some(&pw2)).await.unwrap();
    let held = fx.user("202");
    assert_eq!(held["id"].to_string(), created.id, "the same user, moved to a new number");
    assert_eq!(held["status"], json!("blocked"));
    assert_eq!(held["password"], json!("Second-Pass-88"));
    assert_eq!(held["timezone"], json!("Europe/Warsaw"));
    let listed = b.list().await.unwrap().accounts;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attributes, d2.attributes);

    b.delete(&listed[0]).await.unwrap();
    assert!(fx.users().is_empty());
    b.delete(&listed[0]).await.unwrap();
    assert_eq!(fx.extensions().len(), 2, "numbers stay for the next user");

    // A number left behind is reused, not made twice.
    let again = create_once(&b, &d, Some(&pw)).await.unwrap();
    assert_eq!(again.extension, "201");
    assert_eq!(fx.extensions().len(), 2);
}

#[tokio::test]
async fn the_marker_is_set_on_adoption_but_foreign_content_is_kept() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let base = json!({"name": "Old", "login": "old.one", "password": "secret-1", "email": "o@example.com"});
    let mut mine = base.clone();
    mine["extension"] = json!("301");
    fx.sim.seed(&mine).unwrap();
    let mut theirs =
        json!({"name": "CRM", "login": "crm.user", "password": "secret-2", "email": "c@example.com"});
    theirs["extension"] = json!("302");
    theirs["extra_params"] = json!("{\"crm_id\": 17}");
    fx.sim.seed(&theirs).unwrap();

    let listing = b.list().await.unwrap();
    assert!(listing.accounts.iter().all(|a| a.marker.is_none()));
    let change = |name: &str| vec![Change { field: Field::DisplayName, from: None, to: Some(name.into()) }];
    for (ext, who) in [("301", "anna"), ("302", "bob")] {
        let account = listing.accounts.iter().find(|a| a.extension == ext).unwrap();
        b.update(account, &person(&b, who, ext), &change(who), None).await.unwrap();
    }
    assert_eq!(fx.user("301")["extra_params"], json!("switchboard:default/anna"));
    assert_eq!(fx.user("302")["extra_params"], json!("{\"crm_id\": 17}"));
    let markers: Vec<_> =
        b.list().await.unwrap().accounts.into_iter().map(|a| (a.extension, a.marker)).collect();
    assert_eq!(markers, vec![("301".to_string(), Some(owner("anna"))), ("302".to_string(), None)]);
}

#[tokio::test]
async fn list_reads_every_page() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend().with_per_page(50);
    for n in 0..120 {
        let ext = format!("{}", 100 + n);
        fx.sim
            .seed(&json!({
                "name": format!("User {n}"),
                "login": format!("user{n}"),
                "password": "secret-pw",
                "email": format!("user{n}@example.com"),
                "extension": ext,
            }))
            .unwrap();
    }
    // A number without a user is not an account.
    fx.sim.seed_extension(None, &json!({"name": "999"})).unwrap();
    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 120);
    let numbers: BTreeSet<String> = listing.accounts.iter().map(|a| a.extension.clone()).collect();
    assert_eq!(numbers, (100..220).map(|n| n.to_string()).collect());
    assert_eq!(
        fx.run.stats().total("listUsers"),
        4,
        "pages of 50, 50, 20 and the empty one that ends the list"
    );
}

#[tokio::test]
async fn a_token_expired_mid_run_is_fetched_again_once() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    b.list().await.unwrap();
    fx.sim.expire_tokens();
    let d = person(&b, "anna", "301");
    create_once(&b, &d, Some(&password())).await.unwrap();
    let stats = fx.run.stats();
    assert_eq!(stats.count("token", 200), 2);
    assert_eq!(fx.users().len(), 1);
    assert_eq!(fx.extensions().len(), 1);

    // Credentials that stop working are an auth error, not a loop.
    let creds = Credentials::new([
        ("clientId".to_string(), "sim-telphin-app".to_string()),
        ("clientSecret".to_string(), "a-wrong-client-secret".to_string()),
    ]);
    let err = Telphin::new(&block(&fx.run.url), &creds, settings()).unwrap().list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_clean(&err, &["a-wrong-client-secret"]);
}

#[tokio::test]
async fn a_token_is_renewed_before_expires_in_runs_out() {
    let fx =
        start(TelphinConfig { token_lifetime: Duration::from_secs(2), ..TelphinConfig::default() }).await;
    let b = fx.backend();
    b.list().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.list().await.unwrap();
    let stats = fx.run.stats();
    assert_eq!(stats.count("token", 200), 2);
    let refused: u64 = stats.by_operation.values().map(|m| m.get(&401).copied().unwrap_or(0)).sum();
    assert_eq!(refused, 0, "renewed before the server refused it");
}

#[tokio::test]
async fn the_hourly_quota_waits_for_its_reset() {
    // A short window: the wait is honoured and the work completes.
    let fx = start(TelphinConfig {
        hourly_quota: 3,
        quota_window: Duration::from_secs(1),
        ..TelphinConfig::default()
    })
    .await;
    let b = fx.backend();
    let started = Instant::now();
    for _ in 0..3 {
        b.list().await.unwrap();
    }
    let limited: u64 = fx.run.stats().by_operation.values().map(|m| m.get(&429).copied().unwrap_or(0)).sum();
    assert!(limited >= 1);
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for X-RateLimit-Reset");

    // An hour-long wait is not slept through: it fails at once and says how long.
    let fx = start(TelphinConfig { hourly_quota: 2, ..TelphinConfig::default() }).await;
    let b = fx.backend();
    let started = Instant::now();
    b.list().await.unwrap();
    match b.list().await {
        Err(Error::Transient { retry_after: Some(wait), .. }) => assert!(wait > Duration::from_secs(3000)),
        other => panic!("expected a transient error with a wait, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn refusals_map_to_precise_errors() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let d = person(&b, "anna", "301");
    create_once(&b, &d, Some(&password())).await.unwrap();

    let mut twin = person(&b, "bob", "302");
    twin.attributes.login = d.attributes.login.clone();
    let err = b.create(&twin, Some(&password())).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(fx.extensions().len(), 1, "the number made for a refused user is taken back");

    match b.create(&person(&b, "carl", "303"), Some(&Secret::new("abc"))).await.unwrap_err() {
        Error::Validation { field, .. } => assert_eq!(field.as_deref(), Some("password")),
        err => panic!("{err:?}"),
    }
    match b.create(&person(&b, "dora", "3044"), Some(&password())).await.unwrap_err() {
        Error::Validation { .. } => {}
        err => panic!("a 4-digit number on a 3-digit client: {err:?}"),
    }
    assert!(matches!(b.create(&person(&b, "eve", "305"), None).await, Err(Error::Validation { .. })));
    assert_eq!(fx.users().len(), 1);

    let account = b.find("301").await.unwrap().unwrap();
    let login = [Change { field: Field::Login, from: None, to: Some("new.login".into()) }];
    assert!(matches!(b.update(&account, &d, &login, None).await, Err(Error::Unsupported { .. })));
    assert!(!b.capabilities().writable.contains(&Field::Login));
    assert!(!b.capabilities().readable.contains(&Field::Password));

    let ghost = Account { id: "99999".into(), ..account };
    let change = [Change { field: Field::Email, from: None, to: Some("x@example.com".into()) }];
    assert!(matches!(b.update(&ghost, &d, &change, None).await, Err(Error::NotFound { .. })));
    b.delete(&ghost).await.unwrap();

    let other_client = phone_system::Telphin { url: fx.run.url.clone(), client_id: "424242".into() };
    let c = fx.sim.credentials();
    let creds = Credentials::new([
        ("clientId".to_string(), c["clientId"].clone()),
        ("clientSecret".to_string(), c["clientSecret"].clone()),
    ]);
    assert!(matches!(
        Telphin::new(&other_client, &creds, settings()).unwrap().list().await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn employees_that_telphin_cannot_hold_are_unfit_before_any_call() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let check = |spec: Value, want: &str| {
        let e = employee(spec);
        match b.desired(&e, &e.phone_systems[0]) {
            Err(Error::Unfit { field, .. }) => assert_eq!(field, want),
            other => panic!("{want}: {other:?}"),
        }
    };
    check(json!({"extension": "20001"}), "spec.extension");
    check(
        json!({"phoneSystems": [{"name": "cloud-pbx", "extension": "12345"}]}),
        "spec.phoneSystems[name=cloud-pbx].extension",
    );
    check(json!({"login": "ab"}), "spec.login");
    check(json!({"email": "x@example.com"}), "spec.email");
    check(
        json!({"phoneSystems": [{"name": "cloud-pbx", "apio": {"language": "English"}}]}),
        "spec.phoneSystems[name=cloud-pbx].apio",
    );
    assert_eq!(fx.run.stats().requests, 0);
}

/// Creates three, lists, updates one, deletes one, all under `fault`; then, faults off,
/// the simulator must hold exactly the two expected users, each on its own number.
async fn survives(mode: &str, fault: FaultConfig) {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    fx.run.set_faults(fault);
    let started = Instant::now();
    let people = [person(&b, "anna", "301"), person(&b, "bob", "302"), person(&b, "carl", "303")];
    for d in &people {
        eventually_create(&b, d, &password()).await;
    }
    let listing = eventually("list", || b.list()).await;
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 3, "{mode}: {:?}", listing.accounts);
    let on = |ext: &str| listing.accounts.iter().find(|a| a.extension == ext).unwrap().clone();
    let change = [Change { field: Field::Email, from: None, to: Some("anna.new@example.com".into()) }];
    let (anna, carl) = (on("301"), on("303"));
    eventually("update", || b.update(&anna, &people[0], &change, None)).await;
    eventually("delete", || b.delete(&carl)).await;

    let injected = fx.run.stats().fault_count(mode);
    fx.run.set_faults(FaultConfig::default());
    if mode == "hang" {
        // A hanging request is counted only when it ends, seconds from now; the time
        // spent waiting for answers that never came shows it happened.
        assert!(started.elapsed() >= settings().timeout, "no request hung");
    } else {
        assert!(injected > 0, "{mode} was never injected");
    }
    let users = fx.users();
    assert_eq!(users.len(), 2, "{mode}: {users:?}");
    assert_eq!(fx.user("301")["email"], json!("anna.new@example.com"), "{mode}");
    fx.user("302");
    assert_eq!(fx.extensions().len(), 3, "{mode}: one number each, none twice");
    let listed = b.list().await.unwrap().accounts;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|a| a.marker.is_some()), "{mode}");
}

#[tokio::test]
async fn every_fault_mode_ends_with_exactly_the_expected_users() {
    let runs = fault_modes().into_iter().map(|(mode, fault)| survives(mode, fault));
    futures_util::future::join_all(runs).await;
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    fx.run.set_faults(FaultConfig { rate_limit_rate: 1.0, retry_after_secs: 1, ..FaultConfig::default() });
    let run = &fx.run;
    let started = Instant::now();
    let (listed, ()) = tokio::join!(b.list(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        run.set_faults(FaultConfig::default());
    });
    listed.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
}

#[tokio::test]
async fn garbage_is_never_taken_for_an_answer() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let d = person(&b, "anna", "301");
    let account = create_once(&b, &d, Some(&password())).await.unwrap();
    fx.run.set_faults(FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() });
    assert!(matches!(b.list().await, Err(Error::Protocol { .. })));
    assert!(matches!(b.delete(&account).await, Err(Error::Protocol { .. })));
    let change = [Change { field: Field::Email, from: None, to: Some("x@example.com".into()) }];
    assert!(matches!(b.update(&account, &d, &change, None).await, Err(Error::Protocol { .. })));
    fx.run.set_faults(FaultConfig::default());
    assert_eq!(fx.users().len(), 1);
}

#[tokio::test]
async fn no_password_or_credential_shows_in_any_error() {
    const ID: &str = "telphin-app-identifier";
    const SECRET: &str = "telphin-app-secret-value";
    let pw = Secret::new("User-Pass-Word-55");
    let secrets = [ID, SECRET, ECHO_TOKEN, pw.expose()];
    let creds = Credentials::new([
        ("clientId".to_string(), ID.to_string()),
        ("clientSecret".to_string(), SECRET.to_string()),
    ]);
    let server = echo().await;
    let mut errors = Vec::new();
    for (status, grant) in
        [200, 400, 401, 403, 404, 500, 502].into_iter().flat_map(|s| [(s, false), (s, true)])
    {
        server.status.store(status, Ordering::SeqCst);
        server.grant.store(grant, Ordering::SeqCst);
        let b = Telphin::new(&block(&server.url), &creds, settings()).unwrap();
        let d = person(&b, "anna", "301");
        let account =
            Account { id: "5".into(), extension: "301".into(), attributes: Default::default(), marker: None };
        let change = [Change { field: Field::Password, from: None, to: None }];
        errors.extend(b.list().await.err());
        errors.extend(b.create(&d, Some(&pw)).await.err());
        errors.extend(create_once(&b, &d, Some(&pw)).await.err());
        errors.extend(b.update(&account, &d, &change, Some(&pw)).await.err());
        errors.extend(b.delete(&account).await.err());
    }
    // The token works, the API echoes: the bearer token must not show either.
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let d = person(&b, "anna", "301");
    fx.run.set_faults(FaultConfig { error_rate: 0.5, garbage_rate: 0.5, ..FaultConfig::default() });
    errors.extend(b.create(&d, Some(&pw)).await.err());
    errors.extend(b.list().await.err());
    assert!(errors.len() > 30, "the failure paths were taken: {}", errors.len());
    for err in &errors {
        assert_clean(err, &secrets);
    }
}

// ---- the hourly quota, end to end through the engine ----------------------------------

fn system_spec(url: &str) -> switchboard::api::PhoneSystemSpec {
    serde_json::from_value(json!({
        "telphin": {"url": url, "clientId": "@me"},
        "credentialsSecretRef": {"name": "telphin-credentials"},
    }))
    .unwrap()
}

/// One engine pass over `people`, their statuses kept in `state`, as a process runs it.
async fn pass(
    backend: &impl Backend,
    system: &switchboard::api::PhoneSystemSpec,
    people: &[(Owner, EmployeeSpec)],
    state: &switchboard::state::State,
) -> Result<switchboard::engine::Report, switchboard::engine::Error> {
    crate::faults::engine_pass_with(backend, "cloud-pbx", system, people, state, &crate::faults::NoPasswords)
        .await
}

fn people(n: u32) -> Vec<(Owner, EmployeeSpec)> {
    (0..n)
        .map(|i| {
            let spec = employee(json!({
                "givenName": format!("Person{i}"),
                "email": format!("person{i}@example.com"),
                "extension": format!("{}", 300 + i),
            }));
            (owner(&format!("person{i}")), spec)
        })
        .collect()
}

fn rate_limited(run: &Running) -> u64 {
    run.stats().by_operation.values().map(|m| m.get(&429).copied().unwrap_or(0)).sum()
}

/// A quota of 30 requests per 3-second window and 20 new Employees (each create costs 2
/// requests: its number, then its user): the first pass spends what is left after its
/// listing on 14 creates and stops before the quota is spent; the rest wait, told
/// `RateLimited` with the reset time; a pass before the reset does not even list; the
/// pass after it finishes, with every Employee once.
#[tokio::test]
async fn the_quota_is_spent_on_writes_and_the_rest_waits_for_its_reset() {
    use switchboard::{api::employee::AccountState, engine::Error as PassError, state::State};

    let fx = start(TelphinConfig {
        hourly_quota: 30,
        quota_window: Duration::from_secs(3),
        ..TelphinConfig::default()
    })
    .await;
    let b = fx.backend();
    let system = system_spec(&fx.run.url);
    let everyone = people(20);
    let state = State::in_memory();
    let entry = |who: &Owner| state.status(who).unwrap().phone_systems[0].clone();

    let first = pass(&b, &system, &everyone, &state).await.unwrap();
    assert_eq!(b.list_cost(), 2, "two empty lists, a page each");
    assert_eq!((first.writes, first.rate_limited), (14, 6), "28 requests left after the listing");
    assert_eq!(fx.users().len(), 14);
    assert_eq!(rate_limited(&fx.run), 0, "stopped before the quota was spent");
    let quota = first.quota.clone().unwrap();
    assert_eq!((quota.limit, quota.remaining), (Some(30), 0));
    let reset = quota.reset_time.clone().expect("the reset time is reported");
    let resumes = first.resumes_in.expect("the wait is known");
    assert!(resumes <= Duration::from_secs(3), "{resumes:?}");
    let waiting: Vec<_> =
        everyone.iter().map(|(o, _)| entry(o)).filter(|e| e.state == AccountState::Pending).collect();
    assert_eq!(waiting.len(), 6);
    for e in &waiting {
        let message = e.message.as_deref().unwrap_or_default();
        assert!(message.starts_with("RateLimited: create waits"), "{message}");
        assert!(message.contains(&reset.0.to_string()), "the reset time: {message}");
        assert_eq!(e.extension, None, "a create not sent claims nothing");
    }
    assert!(first.events.iter().any(|e| e.reason == "RateLimited" && e.owner.is_none()));

    // Before the reset: not one request, not even a listing.
    let sent = fx.run.stats().requests;
    match pass(&b, &system, &everyone, &state).await {
        Err(PassError::RateLimited { quota, wait, .. }) => {
            assert_eq!(quota.remaining, 0);
            assert!(wait <= resumes);
        }
        other => panic!("expected the pass to wait for the reset, got {other:?}"),
    }
    assert_eq!(fx.run.stats().requests, sent);

    tokio::time::sleep(resumes + Duration::from_millis(300)).await;
    let last = pass(&b, &system, &everyone, &state).await.unwrap();
    assert_eq!((last.writes, last.rate_limited), (6, 0));
    assert_eq!(rate_limited(&fx.run), 0);
    let users = fx.users();
    assert_eq!(users.len(), 20);
    let logins: BTreeSet<&str> = users.iter().filter_map(|u| u["login"].as_str()).collect();
    assert_eq!(logins.len(), 20, "no Employee twice");
    assert_eq!(fx.extensions().len(), 20, "one number each");
    assert!(everyone.iter().all(|(o, _)| entry(o).state == AccountState::InSync));
    assert!(pass(&b, &system, &everyone, &state).await.is_ok_and(|r| r.writes == 0), "converged");
}

/// A Telphin client whose listing is followed, before the pass's writes, by another
/// application of the same client spending `spend` listings' worth of the shared quota.
struct Shared {
    inner: Telphin,
    other: Telphin,
    spend: usize,
}

impl Backend for Shared {
    fn kind(&self) -> switchboard::api::BackendKind {
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
        let listing = self.inner.list().await;
        for _ in 0..self.spend {
            let _ = self.other.list().await;
        }
        listing
    }
    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        self.inner.find(extension).await
    }
    async fn create(&self, d: &Desired, p: Option<&Secret>) -> Result<Account, Error> {
        self.inner.create(d, p).await
    }
    async fn update(&self, a: &Account, d: &Desired, c: &[Change], p: Option<&Secret>) -> Result<(), Error> {
        self.inner.update(a, d, c, p).await
    }
    async fn delete(&self, a: &Account) -> Result<(), Error> {
        self.inner.delete(a).await
    }
    fn quota(&self) -> Option<switchboard::backends::Quota> {
        self.inner.quota()
    }
    fn cost(&self, write: switchboard::backends::Write<'_>) -> u64 {
        self.inner.cost(write)
    }
    fn list_cost(&self) -> u64 {
        self.inner.list_cost()
    }
}

/// Other applications of the same client spend the quota too: the 429 that comes
/// mid-pass stops the pass's writes (it does not burn the rest of the plan on refusals),
/// a refused create keeps its claim, and the pass after the reset finishes without a
/// second account.
#[tokio::test]
async fn a_quota_spent_by_others_stops_the_pass_without_a_duplicate() {
    use switchboard::{api::employee::AccountState, state::State};

    let fx = start(TelphinConfig {
        hourly_quota: 40,
        quota_window: Duration::from_secs(3),
        ..TelphinConfig::default()
    })
    .await;
    // A reset further away than the client waits for: the 429 fails at once, as an
    // hourly reset does with the default settings.
    let quick =
        switchboard::backends::http::Settings { max_retry_after: Duration::from_millis(100), ..settings() };
    // The pass's listing leaves 38, enough for its 10 creates; the other application
    // then spends 30 of them (15 listings of two requests).
    let b = Shared { inner: fx.backend_with(quick.clone()), other: fx.backend_with(quick), spend: 15 };
    let system = system_spec(&fx.run.url);
    let everyone = people(10);
    let state = State::in_memory();
    let first = pass(&b, &system, &everyone, &state).await.unwrap();
    assert!(first.rate_limited > 0, "{first:?}");
    let made = fx.users().len();
    assert!(made < 10);
    let refused = rate_limited(&fx.run);
    assert!(
        refused > 0 && refused <= 8,
        "the pass stopped at its first refusals, not after each write: {refused}"
    );
    let b = Shared { spend: 0, ..b };
    tokio::time::sleep(first.resumes_in.unwrap_or(Duration::from_secs(3)) + Duration::from_millis(300)).await;
    let last = pass(&b, &system, &everyone, &state).await.unwrap();
    assert_eq!(last.rate_limited, 0, "{last:?}");
    let users = fx.users();
    assert_eq!(users.len(), 10, "every Employee once: {users:?}");
    assert_eq!(fx.extensions().len(), 10, "one number each");
    assert!(
        everyone.iter().all(|(o, _)| state.status(o).unwrap().phone_systems[0].state == AccountState::InSync)
    );
}

// ---- every dialect ----------------------------------------------------------------------

/// Every reading of the evidence the simulator serves, one at a time and all together.
fn dialects() -> Vec<Value> {
    vec![
        json!({}),
        json!({"per_page": "ignored"}),
        json!({"per_page": "capped"}),
        json!({"per_page": "refused"}),
        json!({"name_filter": "relative"}),
        json!({"list_shape": "wrapped"}),
        json!({"error_statuses": true}),
        json!({"unset_extra_params": "text_null"}),
        json!({"unset_extra_params": "absent"}),
        json!({"gzip": "off"}),
        json!({"gzip": "required"}),
        json!({"per_page": "capped", "name_filter": "relative", "list_shape": "wrapped",
               "error_statuses": true, "unset_extra_params": "text_null", "gzip": "required"}),
    ]
}

/// The whole life of a client's accounts under `dialect`: 40 creates (more than any page),
/// the listing, finds, a number made and one removed behind the client's back, a
/// duplicate login, an update that moves a user, adoption that marks an empty free
/// field and leaves foreign content, a delete; then the simulator holds exactly the
/// expected users.
async fn lives_through(dialect: Value) {
    let fx = start(TelphinConfig::default()).await;
    let Value::Object(patch) = &dialect else { unreachable!() };
    fx.sim.set_dialect(patch).unwrap();
    let b = fx.backend().with_per_page(30);
    let seed = |n: &str, login: &str, extra: Option<&str>| {
        let mut u = json!({"name": "Old", "login": login, "password": "secret-1",
                           "email": format!("{login}@example.com"), "extension": n});
        if let Some(extra) = extra {
            u["extra_params"] = json!(extra);
        }
        fx.sim.seed(&u).unwrap()
    };
    seed("200", "bare.user", None);
    seed("201", "crm.user", Some("{\"crm_id\": 17}"));
    let people: Vec<Desired> =
        (0..40).map(|i| person(&b, &format!("per{i}"), &format!("{}", 300 + i))).collect();
    for d in &people {
        create_once(&b, d, Some(&password())).await.unwrap_or_else(|e| panic!("{dialect}: {e}"));
    }

    let listing = b.list().await.unwrap();
    assert!(listing.complete, "{dialect}");
    assert!(listing.unreadable.is_empty(), "{dialect}: {:?}", listing.unreadable);
    assert_eq!(listing.accounts.len(), 42, "{dialect}");
    let marked = listing.accounts.iter().filter(|a| a.marker.is_some()).count();
    assert_eq!(marked, 40, "{dialect}: only switchboard's carry a marker");
    let on = |ext: &str| listing.accounts.iter().find(|a| a.extension == ext).unwrap().clone();
    assert_eq!(b.find("305").await.unwrap(), Some(on("305")), "{dialect}");
    assert_eq!(b.find("399").await.unwrap(), None, "{dialect}");

    // A number made behind the client's back after its listing: taken, not made twice.
    fx.sim.seed_extension(None, &json!({"name": "390", "status": "active"})).unwrap();
    let late = person(&b, "late", "390");
    create_once(&b, &late, Some(&password())).await.unwrap_or_else(|e| panic!("{dialect}: {e}"));
    // A number the listing knew, removed since: made again for its user.
    let gone = fx.sim.seed_extension(None, &json!({"name": "391", "status": "active"})).unwrap();
    b.list().await.unwrap();
    fx.sim.remove_extension(gone).unwrap();
    let again = person(&b, "again", "391");
    create_once(&b, &again, Some(&password())).await.unwrap_or_else(|e| panic!("{dialect}: {e}"));

    // A login already taken is a conflict, whatever status the refusal carries.
    let mut twin = person(&b, "twin", "392");
    twin.attributes.login = Some("per1".into());
    let err = b.create(&twin, Some(&password())).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{dialect}: {err:?}");

    // Update: a new e-mail and a move to a new number.
    let moved = person(&b, "per0", "393");
    let changes = [
        Change { field: Field::Extension, from: Some("300".into()), to: Some("393".into()) },
        Change { field: Field::Email, from: None, to: Some("per0.new@example.com".into()) },
    ];
    b.update(&on("300"), &moved, &changes, None).await.unwrap_or_else(|e| panic!("{dialect}: {e}"));
    // Adoption marks an empty free field, and keeps someone else's.
    let name = [Change { field: Field::DisplayName, from: None, to: Some("Adopted".into()) }];
    b.update(&on("200"), &person(&b, "bare", "200"), &name, None).await.unwrap();
    b.update(&on("201"), &person(&b, "crm", "201"), &name, None).await.unwrap();
    b.delete(&on("339")).await.unwrap();

    let users = fx.users();
    assert_eq!(users.len(), 43, "{dialect}: 2 seeded + 40 + late + again - 1 deleted");
    let logins: BTreeSet<&str> = users.iter().filter_map(|u| u["login"].as_str()).collect();
    assert_eq!(logins.len(), 43, "{dialect}: no user twice");
    assert!(!logins.contains("per39") && logins.contains("late") && logins.contains("again"), "{dialect}");
    assert_eq!(fx.user("393")["email"], json!("per0.new@example.com"), "{dialect}");
    assert_eq!(fx.user("200")["extra_params"], json!("switchboard:default/bare"), "{dialect}");
    assert_eq!(fx.user("201")["extra_params"], json!("{\"crm_id\": 17}"), "{dialect}");
    let numbers: BTreeSet<String> =
        fx.extensions().iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
    assert_eq!(numbers.len(), fx.extensions().len(), "{dialect}: no number twice");
    let listed = b.list().await.unwrap();
    assert!(listed.complete, "{dialect}");
    assert_eq!(listed.accounts.len(), 43, "{dialect}");
}

#[tokio::test]
async fn the_client_lives_through_every_dialect() {
    futures_util::future::join_all(dialects().into_iter().map(lives_through)).await;
}

/// What the listing recognised of each dialect, for `switchboard probe`.
#[tokio::test]
async fn the_listing_names_the_dialect_it_met() {
    for (dialect, aspect, want) in [
        (json!({}), "page size", "honoured (30)"),
        (json!({"per_page": "ignored"}), "page size", "ignored"),
        (json!({"per_page": "capped"}), "page size", "capped at 20"),
        (json!({"per_page": "refused"}), "per_page", "refused"),
        (json!({}), "user list shape", "bare array"),
        (json!({"list_shape": "wrapped"}), "user list shape", "{result: [...]}"),
        (json!({"unset_extra_params": "text_null"}), "extra_params", "hold the text \"null\""),
        (json!({}), "client prefix", "0001"),
    ] {
        let fx = start(TelphinConfig::default()).await;
        let Value::Object(patch) = &dialect else { unreachable!() };
        fx.sim.set_dialect(patch).unwrap();
        for i in 0..45 {
            fx.sim
                .seed(&json!({"name": "U", "login": format!("usr{i}"), "password": "secret-1",
                              "email": format!("usr{i}@example.com"), "extension": format!("{}", 500 + i)}))
                .unwrap();
        }
        let listing = fx.backend().with_per_page(30).list().await.unwrap();
        assert_eq!(listing.accounts.len(), 45, "{dialect}");
        let said = listing.dialect.iter().find(|(k, _)| *k == aspect).map(|(_, v)| v.as_str());
        assert!(said.is_some_and(|v| v.contains(want)), "{dialect}: {aspect} = {said:?}, want {want}");
    }
}

/// The operator under a quota of 14 requests per 4-second window and 10 new Employees:
/// the PhoneSystem shows the quota and `Synced=False RateLimited`, the Employees that
/// wait say `RateLimited` with the reset time, the controller comes back at the reset
/// (not in a loop against the quota), and all 10 end Ready, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reports_the_quota_and_finishes_after_its_reset() {
    use switchboard::api::{BackendKind, PhoneSystem};

    use crate::controller::{World, employee as person_on, entry, eventually};

    let mut world = World::new("telphin-quota").await;
    world.add_pbx("cloud-pbx", BackendKind::Telphin, json!({"resyncInterval": "1h"})).await;
    let sim = world.pbx("cloud-pbx").running.sim.clone();
    // A window long enough that the wait is seen under a loaded test machine too (with 4 s
    // the quota could reset before the Employee's conditions were written).
    let Value::Object(dialect) = json!({"quota": 14, "quota_window_secs": 10}) else { unreachable!() };
    sim.set_dialect(&dialect).unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("quota{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        world.create_employee(&person_on(&world.ns, name, &format!("{}", 400 + i), &["cloud-pbx"])).await;
    }
    let controller = world.start_controller();

    let limited = world.system_condition("cloud-pbx", "Synced", "False", "RateLimited").await;
    eprintln!("controller: {}", limited.message);
    let system: PhoneSystem = world.phone_system("cloud-pbx").await;
    let quota = system.status.and_then(|s| s.quota).expect("the quota is in the status");
    assert_eq!(quota.limit, Some(14));
    assert!(quota.reset_time.is_some(), "{quota:?}");
    let waiting = eventually("an Employee told to wait for the reset", || async {
        for name in &names {
            let Some(e) = world.employee(name).await else { continue };
            let waits = entry(&e, "cloud-pbx").and_then(|p| p.message).filter(|m| {
                m.starts_with("RateLimited: create waits: the request quota of cloud-pbx is spent until")
            });
            let ready =
                e.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
            if let (Some(message), Some(ready)) = (waits, ready)
                && ready.reason == "RateLimited"
            {
                return Ok(message);
            }
        }
        Err("no Employee says RateLimited yet".to_owned())
    })
    .await;
    eprintln!("controller: {waiting}");

    for name in &names {
        world.ready(name).await;
    }
    let users = sim.dump();
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 10, "{users:?}");
    let logins: BTreeSet<&str> = users.iter().filter_map(|u| u["login"].as_str()).collect();
    assert_eq!(logins.len(), 10, "no Employee twice");
    let refused = rate_limited(&world.pbx("cloud-pbx").running);
    assert!(refused <= 8, "the controller waited for the reset instead of pressing on: {refused} refusals");
    world.system_condition("cloud-pbx", "Synced", "True", "Synced").await;
    world.finish(controller).await;
}

/// Records the client cannot read are reported by id and field, the rest listed; and an
/// `extra_params` of any type is never a claim and never overwritten.
#[tokio::test]
async fn a_record_that_cannot_be_read_fails_alone_and_garbage_is_no_claim() {
    let fx = start(TelphinConfig::default()).await;
    let b = fx.backend();
    let seed = |n: &str, login: &str| {
        fx.sim
            .seed(&json!({"name": "Old", "login": login, "password": "secret-1",
                          "email": format!("{login}@example.com"), "extension": n}))
            .unwrap()
    };
    let bad = seed("301", "bad.one");
    let odd = seed("302", "odd.one");
    seed("303", "fine.one");
    let patch = |v: Value| {
        let Value::Object(m) = v else { unreachable!() };
        m
    };
    fx.sim.tamper(&bad, &patch(json!({"login": ["a", "b"]}))).unwrap();
    fx.sim.tamper(&odd, &patch(json!({"extra_params": {"switchboard": "default/odd"}}))).unwrap();
    let listing = b.list().await.unwrap();
    assert_eq!(listing.accounts.len(), 2);
    assert_eq!(listing.unreadable.len(), 1, "{:?}", listing.unreadable);
    let u = &listing.unreadable[0];
    assert_eq!(u.id.as_deref(), Some(bad.as_str()));
    assert!(u.problem.starts_with("login"), "the field is named: {}", u.problem);
    let odd_account = listing.accounts.iter().find(|a| a.extension == "302").unwrap();
    assert_eq!(odd_account.marker, None, "an object is no marker");
    let change = [Change { field: Field::DisplayName, from: None, to: Some("Odd".into()) }];
    b.update(odd_account, &person(&b, "odd", "302"), &change, None).await.unwrap();
    assert_eq!(fx.user("302")["extra_params"], json!({"switchboard": "default/odd"}), "kept as it was");
}
