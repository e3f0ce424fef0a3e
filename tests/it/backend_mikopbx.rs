//! Contract tests of the MikoPBX backends (legacy and v3) against the simulator over HTTP.
//!
//! The simulator runs with `trust_loopback: false` unless a test says otherwise, so the
//! session and token paths are what is exercised, as for a PBX on the network.

mod dialects;
mod seed_2023;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use switchboard::{
    api::{
        EmployeeSpec, Membership,
        phone_system::{MikoPbx, MikoPbxApiGeneration},
    },
    backends::{
        Backend, Credentials, Error, Secret, create_once,
        http::Settings,
        mikopbx::{
            FWD_FORWARDING_ON_BUSY, FWD_RING_LENGTH, MikoPbxBackend, MikoPbxLegacy, MikoPbxV3, SIP_DTMF_MODE,
            SIP_ENABLE_RECORDING,
        },
    },
    plan::{Account, Change, Desired, Field, Owner},
    sim::{
        self, FaultConfig, Running, Simulator,
        mikopbx::{MikoPbxConfig, MikoPbxSim},
    },
};

const PASSWORD: &str = "Vq7#pL2m!xR9zT4w";

struct Pbx {
    sim: Arc<MikoPbxSim>,
    running: Running,
}

async fn pbx_with(cfg: MikoPbxConfig) -> Pbx {
    let sim = MikoPbxSim::new(cfg);
    let running = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    Pbx { sim, running }
}

async fn pbx() -> Pbx {
    pbx_with(MikoPbxConfig { trust_loopback: false, ..MikoPbxConfig::default() }).await
}

fn settings() -> Settings {
    Settings {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..Settings::default()
    }
}

fn block(url: &str, api_generation: MikoPbxApiGeneration) -> MikoPbx {
    MikoPbx { url: url.to_owned(), api_generation }
}

fn admin(p: &Pbx) -> Credentials {
    let c = p.sim.credentials();
    Credentials::new([
        ("username".to_owned(), c["username"].clone()),
        ("password".to_owned(), c["password"].clone()),
    ])
}

fn api_key(p: &Pbx) -> Credentials {
    Credentials::new([("apiKey".to_owned(), p.sim.credentials()["apiKey"].clone())])
}

fn legacy(p: &Pbx) -> MikoPbxLegacy {
    MikoPbxLegacy::new(&block(&p.running.url, MikoPbxApiGeneration::Legacy), &admin(p), settings()).unwrap()
}

fn v3(p: &Pbx) -> MikoPbxV3 {
    MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &api_key(p), settings()).unwrap()
}

/// Both generations, as the controller would build them.
fn both(p: &Pbx) -> [MikoPbxBackend; 2] {
    [
        MikoPbxBackend::new(&block(&p.running.url, MikoPbxApiGeneration::Legacy), &admin(p), settings())
            .unwrap(),
        MikoPbxBackend::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &api_key(p), settings())
            .unwrap(),
    ]
}

fn employee(extension: &str, name: &str, mobile: Option<&str>) -> EmployeeSpec {
    let mut e = json!({
        "givenName": name, "familyName": "Tester", "email": format!("{}@example.com", name.to_lowercase()),
        "extension": extension,
    });
    if let Some(m) = mobile {
        e["mobile"] = json!(m);
    }
    serde_json::from_value(e).unwrap()
}

fn office(settings: Value) -> Membership {
    serde_json::from_value(json!({"name": "office", "mikopbx": settings})).unwrap()
}

fn desired<B: Backend>(b: &B, e: &EmployeeSpec, m: &Membership) -> Desired {
    Desired {
        owner: Owner::new("default", e.given_name.to_lowercase()),
        rank: 0,
        extension: e.extension_on(m).to_owned(),
        attributes: b.desired(e, m).unwrap(),
        password_fingerprint: None,
    }
}

fn change(field: Field) -> Change {
    Change { field, from: None, to: None }
}

/// The simulator's employees by number (legacy field names, secrets included).
fn dump(p: &Pbx) -> BTreeMap<String, Value> {
    let all = p.sim.dump();
    let mut out = BTreeMap::new();
    for r in all.as_array().unwrap() {
        let number = r["number"].as_str().unwrap().to_owned();
        assert!(out.insert(number.clone(), r.clone()).is_none(), "number {number} twice");
    }
    out
}

fn numbers(p: &Pbx) -> Vec<String> {
    dump(p).into_keys().collect()
}

fn seed(p: &Pbx, number: &str, name: &str) -> String {
    p.sim
        .seed(&json!({
            "number": number, "user_username": name, "user_email": format!("{number}@example.com"),
            "mobile_number": format!("48600{number}"), "sip_secret": format!("seed-secret-{number}"),
            "fwd_forwardingonbusy": "", "fwd_ringlength": 25, "sip_dtmfmode": "rfc4733", "sip_enableRecording": "0",
        }))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Listing

#[tokio::test]
async fn both_generations_list_every_page_with_the_settings() {
    let p = pbx().await;
    for i in 0..7 {
        seed(&p, &format!("{}", 301 + i), &format!("Seeded {i}"));
    }
    let legacy = legacy(&p).with_page_size(3);
    let v3 = v3(&p).with_page_size(3);

    p.running.reset_stats();
    let listing = legacy.list().await.unwrap();
    let stats = p.running.stats();
    assert!(listing.complete);
    assert_eq!(listing.accounts.len(), 7);
    // The cost the module documents: ceil(7/3) table pages + one getRecord per account
    // (+ one login).
    assert_eq!(stats.total("getNewRecords"), 3, "{stats:?}");
    assert_eq!(stats.total("getRecord"), 7, "{stats:?}");
    assert_eq!(stats.total("sessionStart"), 1, "{stats:?}");

    p.running.reset_stats();
    let listing3 = v3.list().await.unwrap();
    let stats = p.running.stats();
    assert!(listing3.complete);
    assert_eq!(listing3.accounts.len(), 7);
    assert_eq!(stats.total("getList"), 3, "{stats:?}");
    assert_eq!(stats.total("getRecord"), 7, "{stats:?}");

    for accounts in [&listing.accounts, &listing3.accounts] {
        let a = accounts.iter().find(|a| a.extension == "303").unwrap();
        assert_eq!(a.attributes.display_name.as_deref(), Some("Seeded 2"));
        assert_eq!(a.attributes.email.as_deref(), Some("303@example.com"));
        assert_eq!(a.attributes.mobile.as_deref(), Some("48600303"));
        assert_eq!(a.attributes.enabled, Some(true));
        assert_eq!(a.attributes.settings[FWD_RING_LENGTH], "25");
        assert_eq!(a.attributes.settings[SIP_DTMF_MODE], "rfc4733");
        assert_eq!(a.attributes.settings[SIP_ENABLE_RECORDING], "false");
        assert_eq!(a.attributes.settings[FWD_FORWARDING_ON_BUSY], "");
        assert_eq!(a.marker, None);
    }
    // The ids are each generation's own: Extensions.id vs Users.id.
    let d = dump(&p);
    let a = listing.accounts.iter().find(|a| a.extension == "303").unwrap();
    let b = listing3.accounts.iter().find(|a| a.extension == "303").unwrap();
    assert_eq!(d["303"]["id"], json!(a.id));
    assert_eq!(d["303"]["user_id"], json!(b.id));

    // find: the natural-key lookup behind safe creates.
    for backend in both(&p) {
        let found = backend.find("305").await.unwrap().unwrap();
        assert_eq!(found.attributes.display_name.as_deref(), Some("Seeded 4"));
        assert_eq!(backend.find("399").await.unwrap(), None);
    }
}

// ---------------------------------------------------------------------------------------
// Create, update, delete

#[tokio::test]
async fn both_generations_create_update_and_delete() {
    let p = pbx().await;
    for backend in both(&p) {
        let e = employee("201", "Anna", Some("+48600111222"));
        let m = office(json!({
            "forwarding": {"onBusy": "+48600999888", "ringLength": 30},
            "recording": false, "dtmfMode": "rfc4733",
        }));
        let d = desired(&backend, &e, &m);
        let created = backend.create(&d, Some(&Secret::new(PASSWORD))).await.unwrap();
        assert_eq!(created.extension, "201");
        let rec = &dump(&p)["201"];
        assert_eq!(rec["sip_secret"], PASSWORD);
        assert_eq!(rec["user_username"], "Anna Tester");
        assert_eq!(rec["user_email"], "anna@example.com");
        assert_eq!(rec["mobile_number"].as_str().unwrap().trim_start_matches('+'), "48600111222");
        assert_eq!(rec["fwd_forwardingonbusy"].as_str().unwrap().trim_start_matches('+'), "48600999888");
        assert_eq!(rec["fwd_ringlength"], 30);
        assert_eq!(rec["sip_enableRecording"], "0");
        assert_eq!(rec["sip_dtmfmode"], "rfc4733");

        // What list reads back equals what was declared: nothing to update.
        let listed = backend.find("201").await.unwrap().unwrap();
        assert_eq!(listed.id, created.id);
        for field in d.attributes.declared() {
            if backend.capabilities().readable.contains(&field) {
                assert_eq!(listed.attributes.get(&field), d.attributes.get(&field), "{field}");
            }
        }

        // Update: a new name, extension and ring length; the rest stays.
        let mut e2 = e.clone();
        e2.display_name = Some("Anna Maria Tester".into());
        e2.extension = "211".into();
        let m2 = office(json!({"forwarding": {"onBusy": "+48600999888", "ringLength": 40}}));
        let d2 = desired(&backend, &e2, &m2);
        let changes = [
            change(Field::DisplayName),
            change(Field::Extension),
            change(Field::Setting(FWD_RING_LENGTH.into())),
        ];
        backend.update(&listed, &d2, &changes, None).await.unwrap();
        let all = dump(&p);
        assert!(!all.contains_key("201"));
        let rec = &all["211"];
        assert_eq!(rec["user_username"], "Anna Maria Tester");
        assert_eq!(rec["fwd_ringlength"], 40);
        assert_eq!(rec["sip_secret"], PASSWORD);
        assert_eq!(rec["sip_dtmfmode"], "rfc4733");
        assert_eq!(rec["fwd_forwardingonbusy"].as_str().unwrap().trim_start_matches('+'), "48600999888");

        // A new password.
        let moved = backend.find("211").await.unwrap().unwrap();
        backend
            .update(&moved, &d2, &[change(Field::Password)], Some(&Secret::new("Zx9!kP3#qW7m$Lr2")))
            .await
            .unwrap();
        assert_eq!(dump(&p)["211"]["sip_secret"], "Zx9!kP3#qW7m$Lr2");

        backend.delete(&moved).await.unwrap();
        assert!(numbers(&p).is_empty());
        // Gone already is not an error.
        backend.delete(&moved).await.unwrap();
        let err = backend.update(&moved, &d2, &changes, None).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        // Nothing is left but (legacy) the emptied forwarding row of the number moved away
        // from: saveRecord cannot delete it, and empty it forwards nowhere.
        let rows = p.sim.row_counts();
        assert_eq!(rows.iter().filter(|(k, _)| **k != "forwarding_rights").map(|(_, n)| n).sum::<usize>(), 0);
        assert!(rows["forwarding_rights"] <= 1, "{rows:?}");
    }
}

#[tokio::test]
async fn updating_one_field_keeps_the_sip_secret_and_the_mobile() {
    let p = pbx().await;
    for backend in both(&p) {
        let e = employee("202", "Bob", Some("48600222333"));
        let m = office(json!({"forwarding": {"onNoAnswer": "203", "ringLength": 20}}));
        let d = desired(&backend, &e, &m);
        let account = backend.create(&d, Some(&Secret::new(PASSWORD))).await.unwrap();
        let rows = p.sim.row_counts();
        let before = dump(&p)["202"].clone();

        let mut e2 = e.clone();
        e2.email = "bob.new@example.com".into();
        let d2 = desired(&backend, &e2, &m);
        backend.update(&account, &d2, &[change(Field::Email)], None).await.unwrap();

        let after = dump(&p)["202"].clone();
        assert_eq!(after["user_email"], "bob.new@example.com");
        for key in [
            "sip_secret",
            "sip_uniqid",
            "mobile_number",
            "mobile_dialstring",
            "mobile_uniqid",
            "fwd_forwarding",
            "fwd_ringlength",
            "user_username",
        ] {
            assert_eq!(after[key], before[key], "{key} changed");
        }
        // No stray rows (a second Sip peer, a second mobile).
        assert_eq!(p.sim.row_counts(), rows);

        // A forwarding change alone keeps the ring length (v3 PATCH would reset it to 45).
        let m3 = office(json!({"forwarding": {"onNoAnswer": "204"}}));
        let d3 = desired(&backend, &e2, &m3);
        let current = backend.find("202").await.unwrap().unwrap();
        backend
            .update(&current, &d3, &[change(Field::Setting("fwd_forwarding".into()))], None)
            .await
            .unwrap();
        let after = dump(&p)["202"].clone();
        assert_eq!(after["fwd_forwarding"], "204");
        assert_eq!(after["fwd_ringlength"], 20);
        assert_eq!(after["sip_secret"], PASSWORD);
        assert_eq!(after["mobile_number"], "48600222333");

        backend.delete(&current).await.unwrap();
    }
}

/// The legacy client reads the template once, not once per create; every create must
/// still get its own SIP peer, mobile row and secret (a reused `sip_uniqid` would make
/// each save overwrite the previous employee's peer).
#[tokio::test]
async fn legacy_creates_share_the_defaults_but_no_row() {
    let p = pbx().await;
    let backend = legacy(&p);
    p.running.reset_stats();
    let people =
        [("301", "Ann", Some("48600301301")), ("302", "Ben", Some("48600302302")), ("303", "Cy", None)];
    for (number, name, mobile) in people {
        let e = employee(number, name, mobile);
        let m = office(json!({}));
        let d = desired(&backend, &e, &m);
        // No password: the PBX makes one, as its template would have.
        backend.create(&d, None).await.unwrap();
    }
    let stats = p.running.stats();
    assert_eq!(stats.total("getRecord"), 1, "{stats:?}");
    assert_eq!(stats.total("saveRecord"), 3, "{stats:?}");

    let all = dump(&p);
    let distinct = |key: &str| {
        all.values()
            .map(|r| r[key].as_str().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(all.len(), 3);
    assert_eq!(distinct("sip_uniqid"), 3, "{all:?}");
    assert_eq!(distinct("sip_secret"), 3, "{all:?}");
    assert_eq!(distinct("mobile_uniqid"), 3, "{all:?}");
    assert_eq!(all["301"]["mobile_number"], "48600301301");
    assert_eq!(all["303"]["mobile_number"], "");
    // The template's defaults arrived.
    assert!(all.values().all(|r| r["sip_dtmfmode"] == "auto" && r["fwd_ringlength"] == 45), "{all:?}");
    // One Sip peer and one SIP extension per employee, nothing shared or left over.
    let rows = p.sim.row_counts();
    assert_eq!((rows["users"], rows["sip"], rows["external_phones"]), (3, 3, 2), "{rows:?}");
    // SIP extensions, and the two mobiles' EXTERNAL ones.
    assert_eq!(rows["extensions"], 5, "{rows:?}");
}

#[tokio::test]
async fn a_legacy_move_leaves_no_forwarding_behind_that_blocks_deletes() {
    let p = pbx().await;
    let b = legacy(&p);
    let m = office(json!({}));
    let target = b.create(&desired(&b, &employee("220", "Target", None), &m), None).await.unwrap();
    let fwd = office(json!({"forwarding": {"onBusy": "220"}}));
    let e = employee("221", "Mover", None);
    let mover = b.create(&desired(&b, &e, &fwd), None).await.unwrap();

    let mut moved = e.clone();
    moved.extension = "222".into();
    b.update(&mover, &desired(&b, &moved, &fwd), &[change(Field::Extension)], None).await.unwrap();
    assert_eq!(dump(&p)["222"]["fwd_forwardingonbusy"], "220");

    // The mover now forwards to 220 from 222, and only from there: once it stops,
    // nothing holds 220 any more.
    let none = office(json!({"forwarding": {"onBusy": "229"}}));
    let mover = b.find("222").await.unwrap().unwrap();
    b.update(
        &mover,
        &desired(&b, &moved, &none),
        &[change(Field::Setting(FWD_FORWARDING_ON_BUSY.into()))],
        None,
    )
    .await
    .unwrap();
    b.delete(&target).await.unwrap();
    assert_eq!(numbers(&p), ["222"]);
}

// ---------------------------------------------------------------------------------------
// Errors the PBX gives

#[tokio::test]
async fn duplicates_conflict_and_refusals_name_the_pbx_field() {
    let p = pbx().await;
    seed(&p, "230", "Holder");
    for backend in both(&p) {
        let d = desired(&backend, &employee("230", "Other", None), &office(json!({})));
        let err = backend.create(&d, Some(&Secret::new(PASSWORD))).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    }
    // The mobile of another employee is the mobile's problem, not the extension's.
    for backend in both(&p) {
        let d = desired(&backend, &employee("231", "Mobile", Some("48600230")), &office(json!({})));
        let err = backend.create(&d, Some(&Secret::new(PASSWORD))).await.unwrap_err();
        assert!(matches!(&err, Error::Validation { field: Some(f), .. } if f == "mobile_number"), "{err:?}");
    }
    let backend = v3(&p);
    let d = desired(&backend, &employee("232", "Weak", None), &office(json!({})));
    let err = backend.create(&d, Some(&Secret::new("password"))).await.unwrap_err();
    assert!(matches!(&err, Error::Validation { field: Some(f), .. } if f == "sip_secret"), "{err:?}");
    assert_eq!(numbers(&p), ["230"]);
}

#[tokio::test]
async fn unsupported_where_the_api_lacks_it() {
    let p = pbx().await;
    let b = legacy(&p);
    // Enabling/disabling works in neither generation.
    let d = desired(&b, &employee("240", "Old", None), &office(json!({})));
    let account = b.create(&d, None).await.unwrap();
    let err = b.update(&account, &d, &[change(Field::Enabled)], None).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(!b.capabilities().writable.contains(&Field::Enabled));
    assert!(b.capabilities().readable.contains(&Field::Enabled));
    assert!(!b.capabilities().readable.contains(&Field::Password));
}

// ---------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn expired_sessions_and_tokens_are_renewed_once() {
    let p = pbx().await;
    seed(&p, "250", "Someone");
    let l = legacy(&p);
    let jwt =
        MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &admin(&p), settings()).unwrap();
    assert_eq!(l.list().await.unwrap().accounts.len(), 1);
    assert_eq!(jwt.list().await.unwrap().accounts.len(), 1);
    p.running.reset_stats();
    p.sim.expire_tokens();
    assert_eq!(l.list().await.unwrap().accounts.len(), 1);
    assert_eq!(jwt.list().await.unwrap().accounts.len(), 1);
    let stats = p.running.stats();
    assert_eq!(stats.total("sessionStart"), 1, "{stats:?}");
    assert_eq!(stats.total("login"), 1, "{stats:?}");
    // Each refused request was sent again once, after the new login.
    assert_eq!(stats.count("getNewRecords", 403), 1, "{stats:?}");
    assert_eq!(stats.count("getList", 401), 0, "{stats:?}");
    assert_eq!(stats.count("framework", 401), 1, "{stats:?}");
}

#[tokio::test]
async fn refused_credentials_are_auth_errors() {
    let p = pbx().await;
    let bad = Credentials::new([
        ("username".to_owned(), "sim-admin".to_owned()),
        ("password".to_owned(), "wrong-pw".to_owned()),
    ]);
    let l =
        MikoPbxLegacy::new(&block(&p.running.url, MikoPbxApiGeneration::Legacy), &bad, settings()).unwrap();
    let err = l.list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let v = MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &bad, settings()).unwrap();
    let err = v.list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let key = Credentials::new([("apiKey".to_owned(), "0".repeat(64))]);
    let v = MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &key, settings()).unwrap();
    let err = v.list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    // Without credentials the PBX sees a remote caller and refuses.
    let none = Credentials::default();
    let v = MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &none, settings()).unwrap();
    let err = v.list().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    // A remote URL without credentials is refused before any request.
    for generation in [MikoPbxApiGeneration::Legacy, MikoPbxApiGeneration::V3] {
        let err = MikoPbxBackend::new(&block("https://pbx.example.com", generation), &none, settings())
            .unwrap_err();
        assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    }
    let half = Credentials::new([("username".to_owned(), "admin".to_owned())]);
    let err = MikoPbxBackend::new(
        &block("https://pbx.example.com", MikoPbxApiGeneration::Legacy),
        &half,
        settings(),
    )
    .unwrap_err();
    assert_eq!(err, Error::Credentials { key: "password" });
}

#[tokio::test]
async fn a_loopback_pbx_needs_no_login() {
    let p = pbx_with(MikoPbxConfig::default()).await;
    let none = Credentials::default();
    let v = MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &none, settings()).unwrap();
    let d = desired(&v, &employee("260", "Local", None), &office(json!({})));
    v.create(&d, None).await.unwrap();
    assert_eq!(v.list().await.unwrap().accounts.len(), 1);

    // The legacy API and the admin cabinet trust 127.0.0.1 alike (2023.2 and 2024.1).
    let l =
        MikoPbxLegacy::new(&block(&p.running.url, MikoPbxApiGeneration::Legacy), &none, settings()).unwrap();
    let d = desired(&l, &employee("261", "Local", None), &office(json!({})));
    let account = l.create(&d, None).await.unwrap();
    assert_eq!(l.list().await.unwrap().accounts.len(), 2);
    l.delete(&account).await.unwrap();
    // With credentials too, a trusted client never logs in (2024.1 counts every login).
    let with =
        MikoPbxLegacy::new(&block(&p.running.url, MikoPbxApiGeneration::Legacy), &admin(&p), settings())
            .unwrap();
    assert_eq!(with.list().await.unwrap().accounts.len(), 1);
    let stats = p.running.stats();
    assert_eq!(stats.total("sessionStart") + stats.total("login"), 0, "{stats:?}");
    assert_eq!(numbers(&p), ["260"]);
}

// ---------------------------------------------------------------------------------------
// Faults: every mode, both generations

/// Creates as a controller with a pending claim would: look the extension up first,
/// then `create_once`. Errors are collected; a conflict or a validation error would mean
/// a blind retry ran into our own earlier create.
async fn ensure<B: Backend>(b: &B, d: &Desired, errors: &mut Vec<Error>) -> Account {
    for _ in 0..40 {
        match b.find(&d.extension).await {
            Ok(Some(account)) => return account,
            Ok(None) => {}
            Err(e) => {
                errors.push(e);
                continue;
            }
        }
        match create_once(b, d, Some(&Secret::new(PASSWORD))).await {
            Ok(account) => return account,
            Err(e) => errors.push(e),
        }
    }
    panic!("no create after 40 rounds: {errors:?}");
}

macro_rules! until_ok {
    ($errors:expr, $call:expr) => {{
        let mut rounds = 0;
        loop {
            match $call.await {
                Ok(v) => break v,
                Err(e) => {
                    $errors.push(e);
                    rounds += 1;
                    assert!(rounds < 40, "no success after 40 rounds: {:?}", $errors);
                }
            }
        }
    }};
}

/// Create three, update one, delete one, list, under `faults`; then check that the PBX
/// holds exactly the two expected employees with the expected data, once each.
async fn scenario(faults: FaultConfig, mode: &str) {
    let p = pbx().await;
    for (i, backend) in both(&p).into_iter().enumerate() {
        let base = 200 + 10 * i;
        let m = office(json!({"forwarding": {"onUnavailable": "299", "ringLength": 15}}));
        let people: Vec<EmployeeSpec> = (0..3)
            .map(|k| {
                employee(&(base + k).to_string(), &format!("Person{k}"), Some(&format!("4860000{base}{k}")))
            })
            .collect();
        let wanted: Vec<Desired> = people.iter().map(|e| desired(&backend, e, &m)).collect();

        p.running.set_faults(faults.clone());
        let started = Instant::now();
        let mut errors = Vec::new();
        let mut accounts = Vec::new();
        for d in &wanted {
            accounts.push(ensure(&backend, d, &mut errors).await);
        }
        let mut renamed = people[1].clone();
        renamed.email = "renamed@example.com".into();
        let d1 = desired(&backend, &renamed, &m);
        until_ok!(errors, backend.update(&accounts[1], &d1, &[change(Field::Email)], None));
        until_ok!(errors, backend.delete(&accounts[2]));
        let listing = until_ok!(errors, backend.list());
        p.running.set_faults(FaultConfig::default());

        if mode == "hang" {
            // A hang is counted only when the simulator gives up on it (after
            // `hang_secs`); nothing else here takes a whole client timeout.
            assert!(started.elapsed() >= settings().timeout, "no hang was met");
        } else {
            assert!(p.running.stats().fault_count(mode) > 0, "no {mode} fault was injected");
        }
        for e in &errors {
            assert!(
                matches!(e, Error::Transient { .. } | Error::Protocol { .. }),
                "{mode}: an error that is not a fault's: {e:?}"
            );
        }
        let mut listed: Vec<String> = listing.accounts.iter().map(|a| a.extension.clone()).collect();
        listed.sort();
        let expected = vec![base.to_string(), (base + 1).to_string()];
        assert_eq!(listed, expected, "{mode}");
        let all = dump(&p);
        assert_eq!(all.keys().cloned().collect::<Vec<_>>(), expected, "{mode}");
        assert_eq!(all[&expected[1]]["user_email"], "renamed@example.com");
        for rec in all.values() {
            assert_eq!(rec["sip_secret"], PASSWORD, "{mode}");
            assert_eq!(rec["fwd_ringlength"], 15, "{mode}");
            assert!(!rec["mobile_number"].as_str().unwrap().is_empty(), "{mode}");
        }
        let rows = p.sim.row_counts();
        assert_eq!((rows["users"], rows["sip"], rows["external_phones"]), (2, 2, 2), "{mode}: {rows:?}");
        for account in &accounts[..2] {
            backend.delete(account).await.unwrap();
        }
    }
}

#[tokio::test]
async fn server_errors_are_retried_without_duplicates() {
    scenario(FaultConfig { error_rate: 0.3, seed: 11, ..FaultConfig::default() }, "error").await;
}

#[tokio::test]
async fn rate_limits_are_retried_without_duplicates() {
    // Retry-After 0 keeps the test fast; the wait itself is checked below.
    scenario(
        FaultConfig { rate_limit_rate: 0.3, retry_after_secs: 0, seed: 12, ..FaultConfig::default() },
        "rate_limit",
    )
    .await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let p = pbx().await;
    let b = v3(&p);
    // Seed 6 makes the first try a 429 and the second pass.
    p.running.set_faults(FaultConfig {
        rate_limit_rate: 0.5,
        retry_after_secs: 1,
        seed: 6,
        ..FaultConfig::default()
    });
    let started = Instant::now();
    // One request (an empty list), retried after each 429.
    b.list().await.unwrap();
    let limited = p.running.stats().fault_count("rate_limit");
    assert_eq!(limited, 1);
    assert!(started.elapsed() >= Duration::from_secs(limited), "{limited} 429s in {:?}", started.elapsed());
}

#[tokio::test]
async fn hangs_past_the_timeout_are_retried_without_duplicates() {
    scenario(FaultConfig { hang_rate: 0.25, hang_secs: 5, seed: 13, ..FaultConfig::default() }, "hang").await;
}

#[tokio::test]
async fn garbage_answers_are_protocol_errors_without_duplicates() {
    scenario(FaultConfig { garbage_rate: 0.25, seed: 14, ..FaultConfig::default() }, "garbage").await;
}

#[tokio::test]
async fn dropped_connections_are_retried_without_duplicates() {
    scenario(FaultConfig { drop_rate: 0.3, seed: 15, ..FaultConfig::default() }, "drop").await;
}

#[tokio::test]
async fn commit_then_fail_never_creates_twice() {
    scenario(
        FaultConfig { commit_then_fail_rate: 0.4, seed: 16, ..FaultConfig::default() },
        "commit_then_fail",
    )
    .await;
}

#[tokio::test]
async fn garbage_never_passes_for_a_listing() {
    let p = pbx().await;
    seed(&p, "280", "Listed");
    for backend in both(&p) {
        p.running.set_faults(FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() });
        let err = backend.list().await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        p.running.set_faults(FaultConfig::default());
    }
}

// ---------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn no_error_shows_a_password_or_a_credential() {
    let p = pbx().await;
    let creds = p.sim.credentials();
    let secret_values: Vec<String> = vec![
        PASSWORD.to_owned(),
        creds["apiKey"].clone(),
        creds["password"].clone(),
        "wrong-admin-pw".to_owned(),
    ];
    let mut errors = Vec::new();

    let bad = Credentials::new([
        ("username".to_owned(), "sim-admin".to_owned()),
        ("password".to_owned(), "wrong-admin-pw".to_owned()),
    ]);
    for generation in [MikoPbxApiGeneration::Legacy, MikoPbxApiGeneration::V3] {
        let b = MikoPbxBackend::new(&block(&p.running.url, generation), &bad, settings()).unwrap();
        errors.push(b.list().await.unwrap_err());
    }
    seed(&p, "290", "Taken");
    let faults = [
        FaultConfig { error_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { drop_rate: 1.0, ..FaultConfig::default() },
        FaultConfig { commit_then_fail_rate: 1.0, ..FaultConfig::default() },
    ];
    for backend in both(&p) {
        let password = Secret::new(PASSWORD);
        let taken = desired(&backend, &employee("290", "Dup", None), &office(json!({})));
        errors.push(backend.create(&taken, Some(&password)).await.unwrap_err());
        let fresh = desired(&backend, &employee("291", "Fresh", None), &office(json!({})));
        for f in &faults {
            p.running.set_faults(f.clone());
            errors.push(backend.create(&fresh, Some(&password)).await.unwrap_err());
            errors.push(backend.list().await.unwrap_err());
            p.running.set_faults(FaultConfig::default());
            if let Some(account) = backend.find("291").await.unwrap() {
                p.running.set_faults(f.clone());
                if let Err(e) =
                    backend.update(&account, &fresh, &[change(Field::Password)], Some(&password)).await
                {
                    errors.push(e);
                }
                p.running.set_faults(FaultConfig::default());
                backend.delete(&account).await.unwrap();
            }
        }
    }
    let weak = v3(&p);
    let d = desired(&weak, &employee("292", "Weak", None), &office(json!({})));
    errors.push(weak.create(&d, Some(&Secret::new("qwerty123"))).await.unwrap_err());
    assert!(errors.len() > 15, "{}", errors.len());
    for e in &errors {
        let shown = format!("{e} {e:?}");
        for s in &secret_values {
            assert!(!shown.contains(s.as_str()), "{shown}");
        }
        assert!(!shown.contains("qwerty123"), "{shown}");
    }
}
