//! The APIO backend against the APIO simulator, over HTTP: CRUD, the size-limit cut,
//! token expiry, every fault mode, and secrets kept out of errors.

use std::{
    collections::BTreeSet,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{extract::Request, http::StatusCode, response::IntoResponse};
use serde_json::{Value, json};
use switchboard::{
    api::{EmployeeSpec, PhoneSystem, phone_system},
    backends::{
        Backend, Credentials, Error, Secret,
        apio::{self, Apio},
        create_once,
        http::Settings,
    },
    plan::{Account, Change, Desired, Field, Owner},
    sim::{
        self, FaultConfig, Running, Simulator,
        apio::{ApioConfig, ApioSim},
    },
};

// ---- shared with backend_telphin ------------------------------------------------------

/// Short timeouts and backoffs so faults cost milliseconds.
pub fn settings() -> Settings {
    Settings {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// What the controller's next sync would do after a failure, as often as needed: an
/// operation that keeps failing for 40 tries fails the test.
pub async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut last = None;
    for _ in 0..40 {
        match op().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
    }
    panic!("{what} never succeeded: {last:?}")
}

/// A create as the planner drives it across syncs: an account already on the extension
/// (a create whose answer was lost) is taken, otherwise `create_once`.
pub async fn eventually_create<B: Backend>(b: &B, d: &Desired, password: &Secret) -> Account {
    for _ in 0..40 {
        if let Ok(Some(found)) = b.find(&d.extension).await {
            return found;
        }
        if let Ok(created) = create_once(b, d, Some(password)).await {
            return created;
        }
    }
    panic!("creating {} never succeeded", d.extension)
}

/// Every fault mode the simulators inject, each at a rate that fires several times in
/// a test, with the name its stats count it under.
pub fn fault_modes() -> Vec<(&'static str, FaultConfig)> {
    let base = FaultConfig { seed: 7, hang_secs: 5, retry_after_secs: 0, ..FaultConfig::default() };
    vec![
        ("error", FaultConfig { error_rate: 0.3, ..base.clone() }),
        ("rate_limit", FaultConfig { rate_limit_rate: 0.3, ..base.clone() }),
        ("hang", FaultConfig { hang_rate: 0.15, ..base.clone() }),
        ("garbage", FaultConfig { garbage_rate: 0.3, ..base.clone() }),
        ("drop", FaultConfig { drop_rate: 0.3, ..base.clone() }),
        ("commit_then_fail", FaultConfig { commit_then_fail_rate: 0.3, ..base }),
    ]
}

/// A server that answers every request with `status` and a body quoting the whole
/// request (headers, query, body), in the error shapes of every API: the worst case for
/// a client that puts answers into error messages.
pub struct Echo {
    pub url: String,
    pub status: Arc<AtomicU16>,
    /// Answer the token endpoints (APIO login/refresh, Telphin `/oauth/token`) with
    /// [`ECHO_TOKEN`], so the API calls carry a token for the echo to quote.
    pub grant: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The token the echo server issues when it grants one.
pub const ECHO_TOKEN: &str = "echo-issued-bearer-token";

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn echo() -> Echo {
    let status = Arc::new(AtomicU16::new(400));
    let grant = Arc::new(AtomicBool::new(false));
    let (shared, granting) = (status.clone(), grant.clone());
    let app = axum::Router::new().fallback(move |req: Request| {
        let status = shared.load(Ordering::SeqCst);
        let grant = granting.load(Ordering::SeqCst);
        async move {
            let path = req.uri().path();
            if grant && (path == "/oauth/token" || path.starts_with("/api/v01/auth/")) {
                let token =
                    json!({"access_token": ECHO_TOKEN, "refresh_token": ECHO_TOKEN, "expires_in": 3600});
                return axum::Json(token).into_response();
            }
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let text = format!(
                "{} {} {:?} {}",
                parts.method,
                parts.uri,
                parts.headers,
                String::from_utf8_lossy(&body)
            );
            let reply = json!({"errors": [{"message": text}], "error": text, "message": text});
            (StatusCode::from_u16(status).unwrap(), axum::Json(reply)).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Echo { url: format!("http://{addr}"), status, grant, task }
}

/// Fails if any of `secrets` shows in the error, printed either way.
pub fn assert_clean(err: &Error, secrets: &[&str]) {
    let shown = format!("{err} {err:?}");
    for s in secrets {
        assert!(!shown.contains(s), "{s:?} leaked into {shown}");
    }
}

pub fn owner(name: &str) -> Owner {
    Owner::new("default", name)
}

// ---- APIO fixtures --------------------------------------------------------------------

struct Fx {
    run: Running,
    sim: Arc<ApioSim>,
}

async fn start(cfg: ApioConfig) -> Fx {
    let sim = ApioSim::new(cfg);
    let run = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    Fx { run, sim }
}

impl Fx {
    fn block(&self) -> phone_system::Apio {
        block(&self.run.url, "/api/v01/p1")
    }

    /// Username and password only: the login/refresh flow.
    fn login(&self) -> Apio {
        let c = self.sim.credentials();
        let creds = Credentials::new([
            ("username".to_string(), c["username"].clone()),
            ("password".to_string(), c["password"].clone()),
        ]);
        Apio::new(&self.block(), &creds, settings()).unwrap()
    }

    fn m2m(&self) -> Apio {
        let creds = Credentials::new([("token".to_string(), self.sim.credentials()["token"].clone())]);
        Apio::new(&self.block(), &creds, settings()).unwrap()
    }

    /// The visible (not hidden) users, as the simulator holds them.
    fn users(&self) -> Vec<Value> {
        let Value::Array(all) = self.sim.dump() else { panic!("dump is not an array") };
        all.into_iter().filter(|u| u["hidden"] != json!(true)).collect()
    }

    fn user(&self, extension: &str) -> Value {
        let found: Vec<Value> =
            self.users().into_iter().filter(|u| u["extension"] == json!(extension)).collect();
        assert_eq!(found.len(), 1, "users on {extension}: {found:?}");
        found.into_iter().next().unwrap()
    }

    fn seed(&self, body: Value) -> String {
        self.sim.seed(&body).unwrap()
    }
}

fn block(url: &str, prefix: &str) -> phone_system::Apio {
    phone_system::Apio {
        url: url.to_owned(),
        path_prefix: prefix.to_owned(),
        tenant: "foo".into(),
        group: "foogroup".into(),
    }
}

fn employee(spec: Value) -> EmployeeSpec {
    let mut base = json!({
        "givenName": "Anna",
        "familyName": "Nowak",
        "email": "anna.nowak@example.com",
        "extension": "301",
        "phoneSystems": [{"name": "broadworks"}],
    });
    if let (Value::Object(b), Value::Object(s)) = (&mut base, spec) {
        b.extend(s);
    }
    serde_json::from_value(base).unwrap()
}

fn desired(b: &Apio, name: &str, e: &EmployeeSpec) -> Desired {
    let m = &e.phone_systems[0];
    Desired {
        owner: owner(name),
        rank: 0,
        extension: e.extension_on(m).to_owned(),
        attributes: b.desired(e, m).unwrap(),
        password_fingerprint: None,
    }
}

fn person(b: &Apio, name: &str, given: &str, family: &str, extension: &str) -> Desired {
    let e = employee(json!({
        "givenName": given,
        "familyName": family,
        "email": format!("{name}@example.com"),
        "extension": extension,
    }));
    desired(b, name, &e)
}

fn password() -> Secret {
    Secret::new("Kx7-pass-Word9")
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn create_list_update_delete_round_trip() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.login();
    let e = employee(json!({
        "givenName": "Иван",
        "familyName": "Петренко",
        "email": "ivan.petrenko@example.com",
        "extension": "201",
        "mobile": "+380501234567",
        "phoneSystems": [{"name": "broadworks", "apio": {"language": "English", "timeZone": "Europe/Kyiv"}}],
    }));
    let d = desired(&b, "ivan", &e);
    let pw = b.generate_password();

    let created = create_once(&b, &d, Some(&pw)).await.unwrap();
    assert!(created.id.starts_with("foogroup_u") && created.id.ends_with("@example.com"), "{}", created.id);
    assert_eq!(created.extension, "201");
    let held = fx.user("201");
    assert_eq!(held["userId"], json!(created.id), "the generated id is read back");
    assert_eq!(held["password"], json!(pw.expose()));
    assert_eq!(held["firstName"], json!("Иван"));
    assert_eq!(held["cliFirstName"], json!("Ivan"), "calling-line-id names are ASCII");
    assert_eq!(held["cliLastName"], json!("Petrenko"));
    assert_eq!(held["timeZone"], json!("Europe/Kyiv"));
    assert_eq!(held["mobilePhoneNumber"], json!("+380501234567"));

    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.accounts, vec![created.clone()]);
    assert_eq!(listing.accounts[0].attributes, d.attributes, "everything declared reads back equal");
    assert_eq!(b.find("201").await.unwrap(), Some(created.clone()));
    assert_eq!(b.find("299").await.unwrap(), None);

    let moved = employee(json!({
        "givenName": "Ivan",
        "familyName": "Petrenko",
        "email": "i.petrenko@example.com",
        "extension": "202",
        "phoneSystems": [{"name": "broadworks", "apio": {"timeZone": "Europe/Warsaw"}}],
    }));
    let d2 = desired(&b, "ivan", &moved);
    let changes = vec![
        Change { field: Field::Extension, from: Some("201".into()), to: Some("202".into()) },
        Change { field: Field::GivenName, from: Some("Иван".into()), to: Some("Ivan".into()) },
        Change {
            field: Field::FamilyName, from: Some("Петренко".into()), to: Some("Petrenko".into())
        },
        Change { field: Field::Email, from: None, to: Some("i.petrenko@example.com".into()) },
        Change {
            field: Field::Setting(apio::TIME_ZONE.into()),
            from: None,
            to: Some("Europe/Warsaw".into()),
        },
        Change { field: Field::Mobile, from: Some("+380501234567".into()), to: None },
        Change { field: Field::Password, from: None, to: None },
    ];
    let pw2 = Secret::new("New-pass-Word7");
    b.update(&created, &d2, &changes, Some(&pw2)).await.unwrap();
    let held = fx.user("202");
    assert_eq!(held["userId"], json!(created.id));
    assert_eq!(held["firstName"], json!("Ivan"));
    assert_eq!(held["emailAddress"], json!("i.petrenko@example.com"));
    assert_eq!(held["timeZone"], json!("Europe/Warsaw"));
    assert_eq!(held["password"], json!("New-pass-Word7"));
    assert!(held.get("mobilePhoneNumber").is_none(), "a cleared field is sent as null: {held}");
    let listed = b.list().await.unwrap().accounts;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].extension, "202");

    b.delete(&listed[0]).await.unwrap();
    assert!(fx.users().is_empty());
    b.delete(&listed[0]).await.unwrap();
}

#[tokio::test]
async fn the_example_phone_system_works_against_the_simulator() {
    let fx = start(ApioConfig::default()).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/phone-systems/apio.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
    let secret = docs.iter().find(|d| d["kind"] == json!("Secret")).unwrap();
    let pbx: PhoneSystem =
        serde_json::from_value(docs.iter().find(|d| d["kind"] == json!("PhoneSystem")).unwrap().clone())
            .unwrap();
    let mut block = pbx.spec.apio.clone().unwrap();
    block.url = fx.run.url.clone();
    let creds = Credentials::new(
        secret["stringData"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
    );
    let b = Apio::new(&block, &creds, settings()).unwrap();
    let d = person(&b, "jan", "Jan", "Kowalski", "310");
    create_once(&b, &d, Some(&password())).await.unwrap();
    assert_eq!(b.list().await.unwrap().accounts.len(), 1);

    // The CRD's default prefix is no provisioning prefix: a clear configuration error.
    let bare = Apio::new(&self::block(&fx.run.url, "/api/v01"), &creds, settings()).unwrap();
    match bare.list().await {
        Err(Error::Config(msg)) => assert!(msg.contains("pathPrefix"), "{msg}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_list_past_the_size_limit_is_read_whole_by_extension_prefix() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.m2m().with_page_size(5);
    let mut extensions: Vec<String> = (100..=112).map(|n| n.to_string()).collect();
    extensions.push("10".into());
    extensions.extend((2001..=2005).map(|n| n.to_string()));
    for (i, ext) in extensions.iter().enumerate() {
        fx.seed(json!({"firstName": "User", "lastName": format!("N{i}"), "extension": ext}));
    }
    for i in 0..3 {
        fx.seed(json!({"firstName": "Bare", "lastName": format!("B{i}")}));
    }
    for i in 0..2 {
        fx.seed(json!({"firstName": "Hidden", "lastName": format!("H{i}"), "hidden": true}));
    }
    let expected: BTreeSet<String> =
        fx.users().iter().map(|u| u["userId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(expected.len(), 22);

    let listing = b.list().await.unwrap();
    assert!(listing.complete);
    let got: BTreeSet<String> = listing.accounts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(got, expected, "every user, once, without the hidden ones");
    assert_eq!(listing.accounts.len(), 22);
    // Without the split, one request with limit 6 would have returned 6 users.
    assert!(fx.run.stats().total("listUsers") > 1);
}

#[tokio::test]
async fn a_cut_that_cannot_be_split_is_reported_incomplete_never_short() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.m2m().with_page_size(5);
    for i in 0..7 {
        fx.seed(json!({"firstName": "Bare", "lastName": format!("B{i}")}));
    }
    for ext in ["401", "402"] {
        fx.seed(json!({"firstName": "User", "lastName": "X", "extension": ext}));
    }
    let listing = b.list().await.unwrap();
    assert!(!listing.complete, "7 users without an extension cannot be listed 5 at a time");
    assert!(listing.accounts.iter().any(|a| a.extension == "401"));

    // The same group under the limit is complete.
    let whole = fx.m2m().with_page_size(20).list().await.unwrap();
    assert!(whole.complete);
    assert_eq!(whole.accounts.len(), 9);
}

#[tokio::test]
async fn tokens_are_refreshed_then_renewed_by_login_when_they_expire_mid_run() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.login();
    b.list().await.unwrap();
    assert_eq!(fx.run.stats().count("login", 200), 1);

    fx.sim.expire_access_tokens();
    let d = person(&b, "anna", "Anna", "Nowak", "301");
    create_once(&b, &d, Some(&password())).await.unwrap();
    let stats = fx.run.stats();
    assert_eq!(stats.count("refresh", 200), 1, "a refused access token is refreshed");
    assert_eq!(stats.count("login", 200), 1, "not logged in again");
    assert_eq!(fx.users().len(), 1, "the create was made once");

    fx.sim.expire_tokens();
    assert_eq!(b.list().await.unwrap().accounts.len(), 1);
    let stats = fx.run.stats();
    assert_eq!(stats.count("refresh", 401), 1, "the refresh token was refused too");
    assert_eq!(stats.count("login", 200), 2, "so it logged in again");

    // M2M tokens do not expire with the session tokens.
    let m = fx.m2m();
    fx.sim.expire_tokens();
    assert_eq!(m.list().await.unwrap().accounts.len(), 1);
}

#[tokio::test]
async fn an_access_token_is_refreshed_before_it_expires() {
    let fx =
        start(ApioConfig { access_token_lifetime: Duration::from_secs(2), ..ApioConfig::default() }).await;
    let b = fx.login();
    b.list().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.list().await.unwrap();
    let stats = fx.run.stats();
    assert_eq!(stats.count("refresh", 200), 1, "renewed at half its life");
    assert_eq!(stats.count("listUsers", 401), 0, "before the server refused it");
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error_without_the_password() {
    let fx = start(ApioConfig::default()).await;
    let creds = Credentials::new([
        ("username".to_string(), "sim-admin".to_string()),
        ("password".to_string(), "Wrong-Secret-123".to_string()),
    ]);
    let b = Apio::new(&fx.block(), &creds, settings()).unwrap();
    let err = b.list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_clean(&err, &["Wrong-Secret-123"]);

    let bad_token = Credentials::new([("token".to_string(), "not-the-m2m-token".to_string())]);
    let err = Apio::new(&fx.block(), &bad_token, settings()).unwrap().list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");

    assert!(matches!(
        Apio::new(&fx.block(), &Credentials::default(), settings()),
        Err(Error::Credentials { .. })
    ));
}

#[tokio::test]
async fn refusals_map_to_precise_errors() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.m2m();
    let d = person(&b, "anna", "Anna", "Nowak", "301");
    create_once(&b, &d, Some(&password())).await.unwrap();

    let twin = person(&b, "anne", "Anne", "Other", "301");
    let err = b.create(&twin, Some(&password())).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");

    let weak = Secret::new("alllowercase");
    let other = person(&b, "bob", "Bob", "Brown", "302");
    match b.create(&other, Some(&weak)).await.unwrap_err() {
        Error::Validation { field, message, .. } => {
            assert_eq!(field.as_deref(), Some("password"), "{message}");
        }
        err => panic!("{err:?}"),
    }
    let too_long = person(&b, "carl", "Carl", "Long", "1234567");
    match b.create(&too_long, Some(&password())).await.unwrap_err() {
        Error::Validation { field, .. } => assert_eq!(field.as_deref(), Some("extension")),
        err => panic!("{err:?}"),
    }
    assert_eq!(fx.users().len(), 1);

    let ghost = Account { id: "nobody@example.com".into(), ..b.find("301").await.unwrap().unwrap() };
    let change = [Change { field: Field::Email, from: None, to: Some("x@example.com".into()) }];
    assert!(matches!(b.update(&ghost, &d, &change, None).await, Err(Error::NotFound { .. })));
    b.delete(&ghost).await.unwrap();

    let enable = [Change { field: Field::Enabled, from: None, to: Some("false".into()) }];
    let account = b.find("301").await.unwrap().unwrap();
    assert!(matches!(b.update(&account, &d, &enable, None).await, Err(Error::Unsupported { .. })));
    assert!(!b.capabilities().readable.contains(&Field::Enabled));
    assert!(!b.capabilities().readable.contains(&Field::Password));
}

#[tokio::test]
async fn employees_that_apio_cannot_hold_are_unfit_before_any_call() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.m2m();
    let long = employee(json!({"givenName": "A".repeat(31)}));
    match b.desired(&long, &long.phone_systems[0]) {
        Err(Error::Unfit { field, .. }) => assert_eq!(field, "spec.givenName"),
        other => panic!("{other:?}"),
    }
    let foreign = employee(json!({"phoneSystems": [{"name": "broadworks", "telphin": {"access": "full"}}]}));
    match b.desired(&foreign, &foreign.phone_systems[0]) {
        Err(Error::Unfit { field, .. }) => assert_eq!(field, "spec.phoneSystems[name=broadworks].telphin"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.run.stats().requests, 0);
}

/// Creates three, lists, updates one, deletes one, all under `fault`; then, faults off,
/// the simulator must hold exactly the two expected users.
async fn survives(mode: &str, fault: FaultConfig) {
    let fx = start(ApioConfig::default()).await;
    let b = fx.login();
    fx.run.set_faults(fault);
    let started = Instant::now();
    let people = [
        person(&b, "anna", "Anna", "Nowak", "301"),
        person(&b, "bob", "Bob", "Brown", "302"),
        person(&b, "carl", "Carl", "Clark", "303"),
    ];
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
    let held: Vec<&str> = users.iter().map(|u| u["extension"].as_str().unwrap()).collect();
    assert_eq!(users.len(), 2, "{mode}: {users:?}");
    assert_eq!(held.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from(["301", "302"]), "{mode}");
    assert_eq!(fx.user("301")["emailAddress"], json!("anna.new@example.com"), "{mode}");
    assert_eq!(b.list().await.unwrap().accounts.len(), 2);
}

#[tokio::test]
async fn every_fault_mode_ends_with_exactly_the_expected_users() {
    let runs = fault_modes().into_iter().map(|(mode, fault)| survives(mode, fault));
    futures_util::future::join_all(runs).await;
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.m2m();
    fx.run.set_faults(FaultConfig { rate_limit_rate: 1.0, retry_after_secs: 1, ..FaultConfig::default() });
    let run = &fx.run;
    let started = Instant::now();
    let (listed, ()) = tokio::join!(b.list(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        run.set_faults(FaultConfig::default());
    });
    listed.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    assert!(fx.run.stats().fault_count("rate_limit") >= 1);
}

#[tokio::test]
async fn garbage_is_never_taken_for_an_answer() {
    let fx = start(ApioConfig::default()).await;
    let b = fx.m2m();
    let d = person(&b, "anna", "Anna", "Nowak", "301");
    let account = create_once(&b, &d, Some(&password())).await.unwrap();
    fx.run.set_faults(FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() });
    assert!(matches!(b.list().await, Err(Error::Protocol { .. })));
    assert!(matches!(b.find("301").await, Err(Error::Protocol { .. })));
    assert!(matches!(b.delete(&account).await, Err(Error::Protocol { .. })));
    let change = [Change { field: Field::Email, from: None, to: Some("x@example.com".into()) }];
    assert!(matches!(b.update(&account, &d, &change, None).await, Err(Error::Protocol { .. })));
    fx.run.set_faults(FaultConfig::default());
    assert_eq!(fx.users().len(), 1);
}

#[tokio::test]
async fn no_password_or_credential_shows_in_any_error() {
    const USER: &str = "apio-admin-name";
    const PASS: &str = "Apio-Login-Pass-42";
    const TOKEN: &str = "apio-m2m-token-secret-value";
    let pw = Secret::new("User-Pass-Word-77");
    let secrets = [USER, PASS, TOKEN, ECHO_TOKEN, pw.expose()];
    let server = echo().await;
    let login = Credentials::new([
        ("username".to_string(), USER.to_string()),
        ("password".to_string(), PASS.to_string()),
    ]);
    let m2m = Credentials::new([("token".to_string(), TOKEN.to_string())]);
    let mut errors = Vec::new();
    for (status, grant) in
        [200, 400, 401, 403, 404, 409, 500, 502].into_iter().flat_map(|s| [(s, false), (s, true)])
    {
        server.status.store(status, Ordering::SeqCst);
        server.grant.store(grant, Ordering::SeqCst);
        for creds in [&login, &m2m] {
            let b = Apio::new(&block(&server.url, "/api/v1"), creds, settings()).unwrap();
            let d = person(&b, "anna", "Anna", "Nowak", "301");
            let account = Account {
                id: "u1@example.com".into(),
                extension: "301".into(),
                attributes: Default::default(),
                marker: None,
            };
            let change = [Change { field: Field::Password, from: None, to: None }];
            errors.extend(b.list().await.err());
            errors.extend(b.create(&d, Some(&pw)).await.err());
            errors.extend(create_once(&b, &d, Some(&pw)).await.err());
            errors.extend(b.update(&account, &d, &change, Some(&pw)).await.err());
            errors.extend(b.delete(&account).await.err());
        }
    }
    // Through the real simulator's failure paths too.
    let fx = start(ApioConfig::default()).await;
    fx.run.set_faults(FaultConfig { error_rate: 0.5, garbage_rate: 0.5, ..FaultConfig::default() });
    let b = Apio::new(&fx.block(), &login, settings()).unwrap();
    errors.extend(b.list().await.err());
    assert!(errors.len() > 40, "the failure paths were taken: {}", errors.len());
    for err in &errors {
        assert_clean(err, &secrets);
    }
}
