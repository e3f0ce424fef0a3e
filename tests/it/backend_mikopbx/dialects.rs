//! The MikoPBX clients against every dialect of the simulator: each generation's own
//! server code (2023.2, 2024.1, 2026.1), its answer shapes and its languages
//! (`docs/compatibility.md`, MikoPBX). Each scenario ends with exactly the expected
//! accounts.

use std::collections::BTreeSet;

use serde_json::json;
use switchboard::{
    api::{PhoneSystemSpec, employee::AccountState},
    backends::{Backend, Credentials, Error, Listing, Secret},
    engine::{Report, Vault},
    plan::{Field, Owner},
    sim::{
        Simulator,
        mikopbx::{Dialect, Generation, Integers, Language, MikoPbxConfig, RestrictedUser},
    },
    state::State,
};

use super::{
    MikoPbxApiGeneration, MikoPbxLegacy, MikoPbxV3, PASSWORD, Pbx, admin, api_key, block, change, desired,
    dump, employee, numbers, office, pbx_with, seed, settings,
};

fn config(dialect: Dialect, trusted: bool) -> MikoPbxConfig {
    MikoPbxConfig { dialect, trust_loopback: trusted, ..MikoPbxConfig::default() }
}

fn generation(generation: Generation) -> Dialect {
    Dialect { generation, ..Dialect::default() }
}

fn legacy_client(p: &Pbx, credentials: &Credentials) -> MikoPbxLegacy {
    MikoPbxLegacy::new(&block(&p.running.url, MikoPbxApiGeneration::Legacy), credentials, settings()).unwrap()
}

fn extensions(listing: &Listing) -> Vec<String> {
    let mut out: Vec<String> = listing.accounts.iter().map(|a| a.extension.clone()).collect();
    out.sort();
    out
}

fn dialect_of(listing: &Listing, aspect: &str) -> String {
    listing.dialect.iter().find(|(k, _)| *k == aspect).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// Creates three (one forwarding to a `+` number), updates one, deletes one, lists: the
/// PBX then holds exactly `seeded` and the two kept, and the listing says so.
async fn converge<B: Backend>(p: &Pbx, b: &B, seeded: &[&str], what: &str) -> Listing {
    let fwd = office(json!({"forwarding": {"onNoAnswer": "+48600999888", "ringLength": 20}}));
    let people = [
        employee("201", "Ann", Some("+48600201201")),
        employee("202", "Ben", None),
        employee("203", "Cy", None),
    ];
    let mut made = Vec::new();
    for e in &people {
        made.push(
            b.create(&desired(b, e, &fwd), Some(&Secret::new(PASSWORD)))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}")),
        );
    }
    let mut ben = people[1].clone();
    ben.email = "ben.new@example.com".into();
    b.update(&made[1], &desired(b, &ben, &fwd), &[change(Field::Email)], None).await.unwrap();
    b.delete(&made[2]).await.unwrap();
    b.delete(&made[2]).await.unwrap_or_else(|e| panic!("{what}: a second delete: {e}"));
    let listing = b.list().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut expected: Vec<String> =
        seeded.iter().map(|s| (*s).to_owned()).chain(["201".into(), "202".into()]).collect();
    expected.sort();
    assert_eq!(extensions(&listing), expected, "{what}");
    assert!(listing.complete && listing.unreadable.is_empty(), "{what}: {listing:?}");
    assert_eq!(numbers(p), expected, "{what}");
    let all = dump(p);
    assert_eq!(all["202"]["user_email"], "ben.new@example.com", "{what}");
    assert_eq!(all["201"]["fwd_forwarding"], "48600999888", "{what}: stored digits-only");
    // What was listed compares equal to what is declared: a next pass writes nothing.
    let ann = listing.accounts.iter().find(|a| a.extension == "201").unwrap();
    let want = desired(b, &people[0], &fwd);
    for field in want.attributes.declared() {
        if b.capabilities().readable.contains(&field) {
            assert_eq!(ann.attributes.get(&field), want.attributes.get(&field), "{what}: {field}");
        }
    }
    assert_eq!(b.find("202").await.unwrap().map(|a| a.id), Some(made[1].id.clone()), "{what}");
    assert_eq!(b.find("203").await.unwrap(), None, "{what}");
    listing
}

#[tokio::test]
async fn every_legacy_dialect_converges_to_exactly_the_expected_accounts() {
    for release in [Generation::V2023_2, Generation::V2024_1, Generation::All] {
        for integers in [Integers::String, Integers::Number] {
            for trusted in [true, false] {
                let language = if trusted { Language::En } else { Language::Ru };
                let dialect = Dialect { generation: release, integers, language, ..Dialect::default() };
                let what = format!("{dialect:?}, 127.0.0.1 trusted: {trusted}");
                let p = pbx_with(config(dialect, trusted)).await;
                seed(&p, "302", "Seeded");
                let gap = seed(&p, "303", "Gone");
                p.sim.remove(&gap).unwrap();
                p.sim.add_application("700", "Sales queue").unwrap();
                let credentials = if trusted { Credentials::default() } else { admin(&p) };
                let b = legacy_client(&p, &credentials).with_page_size(2);
                let listing = converge(&p, &b, &["302"], &what).await;
                let stats = p.running.stats();
                let generation = dialect_of(&listing, "API generation");
                if release == Generation::V2023_2 {
                    assert!(generation.contains("2023.2"), "{what}: {generation}");
                    assert_eq!(stats.total("getNewRecords"), 0, "{what}: {stats:?}");
                } else {
                    assert!(generation.contains("2024.1"), "{what}: {generation}");
                    assert!(stats.total("getNewRecords") > 0, "{what}: {stats:?}");
                    // The empty page is asked once, then the table is remembered.
                    assert_eq!(stats.total("extensionsIndex"), 1, "{what}: {stats:?}");
                }
                // A trusted client never logs in; another logs in once and keeps its session.
                assert_eq!(stats.total("sessionStart"), u64::from(!trusted), "{what}: {stats:?}");
            }
        }
    }
}

#[tokio::test]
async fn every_v3_dialect_converges_to_exactly_the_expected_accounts() {
    for release in [Generation::V2026_1, Generation::All] {
        for (not_found, language) in [(422, Language::En), (404, Language::Ru)] {
            for max_limit in [1000, 2] {
                let dialect = Dialect {
                    generation: release,
                    language,
                    v3_not_found: not_found,
                    v3_max_limit: max_limit,
                    ..Dialect::default()
                };
                let what = format!("{dialect:?}");
                let p = pbx_with(config(dialect, false)).await;
                for n in ["301", "302", "303", "304"] {
                    seed(&p, n, &format!("Seeded {n}"));
                }
                let b = MikoPbxV3::new(
                    &block(&p.running.url, MikoPbxApiGeneration::V3),
                    &api_key(&p),
                    settings(),
                )
                .unwrap()
                .with_page_size(3);
                let listing = converge(&p, &b, &["301", "302", "303", "304"], &what).await;
                assert_eq!(dialect_of(&listing, "API generation"), "v3 (2026.1)");
                if max_limit == 2 {
                    assert!(
                        switchboard::backends::paging::describe(&listing.pages).contains("caps pages at 2"),
                        "{what}: {listing:?}"
                    );
                }
                // An account gone behind our back: NotFound for an update, nothing for a delete.
                let gone = listing.accounts.iter().find(|a| a.extension == "304").unwrap().clone();
                p.sim.remove(dump(&p)["304"]["id"].as_str().unwrap()).unwrap();
                let d = desired(&b, &employee("304", "Gone", None), &office(json!({})));
                let err = b.update(&gone, &d, &[change(Field::Email)], None).await.unwrap_err();
                assert!(matches!(err, Error::NotFound { .. }), "{what}: {err:?}");
                b.delete(&gone).await.unwrap();
            }
        }
    }
}

/// Where the admin cabinet does not answer (a login whose role may not open it), the
/// ids are scanned with getRecord: past gaps, mobiles, queues and system numbers, until
/// every number of the phone book is found.
#[tokio::test]
async fn the_id_scan_finds_every_employee_and_past_its_cap_is_partial_never_wrong() {
    let reader = RestrictedUser {
        login: "pbx-api".into(),
        password: "pbx-api-pass".into(),
        allowed_actions: ["getRecord", "getForSelect", "saveRecord", "deleteRecord", "available"]
            .map(String::from)
            .to_vec(),
    };
    let p = pbx_with(MikoPbxConfig {
        restricted_users: vec![reader],
        ..config(generation(Generation::V2023_2), false)
    })
    .await;
    let credentials = Credentials::new([
        ("username".to_owned(), "pbx-api".to_owned()),
        ("password".to_owned(), "pbx-api-pass".to_owned()),
    ]);
    seed(&p, "201", "First");
    let gone = seed(&p, "202", "Gone");
    p.sim.add_application("700", "Queue").unwrap();
    p.sim
        .seed(&json!({"number": "203", "user_username": "Hidden", "show_in_phonebook": "0", "sip_secret": PASSWORD}))
        .unwrap();
    let last = seed(&p, "204", "Last");
    p.sim.remove(&gone).unwrap();
    let b = legacy_client(&p, &credentials);
    p.running.reset_stats();
    let listing = b.list().await.unwrap();
    assert_eq!(extensions(&listing), ["201", "203", "204"], "{listing:?}");
    assert!(listing.complete && listing.unreadable.is_empty(), "{listing:?}");
    assert!(dialect_of(&listing, "API generation").contains("getRecord by id"), "{listing:?}");
    let stats = p.running.stats();
    let highest: u64 = last.parse().unwrap();
    // getForSelect once; getRecord for ids 1 up to the last employee's, in batches of
    // maxConcurrency, and no record read twice.
    assert_eq!(stats.total("getForSelect"), 1, "{stats:?}");
    let batch = settings().max_concurrency as u64;
    assert_eq!(stats.total("getRecord"), highest.div_ceil(batch) * batch, "{stats:?}");
    // The cabinet: refused without a session (the PBX does not see 127.0.0.1 here), then
    // "Unauthorized" for this login's role, page and table alike.
    assert_eq!(stats.total("extensionsIndex") + stats.total("getNewRecords"), 3, "{stats:?}");
    assert_eq!(stats.total("sessionStart"), 1, "{stats:?}");
    // The scan is remembered: the next pass asks the cabinet no more.
    p.running.reset_stats();
    b.list().await.unwrap();
    assert_eq!(p.running.stats().total("extensionsIndex"), 0);

    // Past the cap (1000 ids + 4 per phone-book number) the listing is partial and says
    // which number it could not find; what it found is right.
    for n in 0..1020 {
        p.sim.add_application(&format!("9{n:04}"), "Filler").unwrap();
    }
    seed(&p, "205", "Far");
    let listing = b.list().await.unwrap();
    assert!(!listing.complete);
    assert_eq!(extensions(&listing), ["201", "203", "204"]);
    assert_eq!(listing.unreadable.len(), 1, "{:?}", listing.unreadable);
    assert_eq!(listing.unreadable[0].extension.as_deref(), Some("205"));
}

#[tokio::test]
async fn a_client_of_the_wrong_generation_is_told_which_to_set() {
    let new = pbx_with(config(generation(Generation::V2026_1), true)).await;
    let err = legacy_client(&new, &Credentials::default()).list().await.unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("apiGeneration: v3")), "{err:?}");
    let old = pbx_with(config(generation(Generation::V2023_2), true)).await;
    let v3 = MikoPbxV3::new(
        &block(&old.running.url, MikoPbxApiGeneration::V3),
        &Credentials::default(),
        settings(),
    )
    .unwrap();
    let err = v3.list().await.unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("apiGeneration: legacy")), "{err:?}");
}

#[tokio::test]
async fn a_duplicate_in_any_language_is_a_conflict_and_a_taken_mobile_the_mobiles() {
    for language in [Language::En, Language::Ru] {
        let p = pbx_with(config(Dialect { language, ..Dialect::default() }, false)).await;
        seed(&p, "230", "Holder");
        let legacy = legacy_client(&p, &admin(&p));
        let v3 = MikoPbxV3::new(&block(&p.running.url, MikoPbxApiGeneration::V3), &api_key(&p), settings())
            .unwrap();
        let taken = employee("230", "Other", None);
        let their_mobile = employee("231", "Mobile", Some("48600230"));
        let err = legacy.create(&desired(&legacy, &taken, &office(json!({}))), None).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{language:?}: {err:?}");
        let err = v3.create(&desired(&v3, &taken, &office(json!({}))), None).await.unwrap_err();
        assert!(
            matches!(&err, Error::Conflict { detail, .. } if detail.contains("230")),
            "{language:?}: {err:?}"
        );
        for err in [
            legacy.create(&desired(&legacy, &their_mobile, &office(json!({}))), None).await.unwrap_err(),
            v3.create(&desired(&v3, &their_mobile, &office(json!({}))), None).await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Validation { field: Some(f), .. } if f == "mobile_number"),
                "{language:?}: {err:?}"
            );
        }
        // A queue holds a number too.
        p.sim.add_application("700", "Queue").unwrap();
        let err = v3
            .create(&desired(&v3, &employee("700", "Q", None), &office(json!({}))), None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{language:?}: {err:?}");
        assert_eq!(numbers(&p), ["230"]);
    }
}

#[tokio::test]
async fn a_locked_out_login_is_waited_out_not_repeated() {
    let p =
        pbx_with(MikoPbxConfig { login_attempts: 3, ..config(generation(Generation::V2024_1), false) }).await;
    let b = legacy_client(&p, &admin(&p));
    // Someone else used two of the address's three logins.
    let client = crate::http().build().unwrap();
    for _ in 0..2 {
        client
            .post(format!("{}/admin-cabinet/session/start", p.running.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("login", "sim-admin"), ("password", "sim-admin-password")])
            .send()
            .await
            .unwrap();
    }
    p.running.reset_stats();
    let err = b.list().await.unwrap_err();
    let Error::Transient { retry_after: Some(wait), .. } = &err else { panic!("{err:?}") };
    assert!(wait.as_secs() >= 1 && wait.as_secs() <= 301, "{wait:?}");
    let err = b.list().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(p.running.stats().total("sessionStart"), 1, "no login while locked out");

    // A client that is not locked out logs in once and keeps its session.
    let p = pbx_with(config(generation(Generation::V2024_1), false)).await;
    let b = legacy_client(&p, &admin(&p));
    for _ in 0..5 {
        b.list().await.unwrap();
    }
    assert_eq!(p.running.stats().total("sessionStart"), 1);
}

/// The legacy API trusts `REMOTE_ADDR === '127.0.0.1'`, so a client on `::1` must log in;
/// v3 trusts `::1` too.
#[tokio::test]
async fn only_127_0_0_1_is_trusted_by_the_legacy_api() {
    let sim = switchboard::sim::mikopbx::MikoPbxSim::new(MikoPbxConfig::default());
    let Ok(running) = switchboard::sim::spawn(sim.clone(), "[::1]:0".parse().unwrap()).await else {
        eprintln!("no IPv6 loopback here: nothing to test");
        return;
    };
    let url = running.url.clone();
    let none = Credentials::default();
    let err = MikoPbxLegacy::new(&block(&url, MikoPbxApiGeneration::Legacy), &none, settings()).unwrap_err();
    assert_eq!(err, Error::Credentials { key: "username" });
    let creds = Credentials::new(sim.credentials().into_iter().filter(|(k, _)| k != "apiKey"));
    let legacy = MikoPbxLegacy::new(&block(&url, MikoPbxApiGeneration::Legacy), &creds, settings()).unwrap();
    let d = desired(&legacy, &employee("250", "Six", None), &office(json!({})));
    legacy.create(&d, None).await.unwrap();
    assert_eq!(legacy.list().await.unwrap().accounts.len(), 1);
    assert_eq!(running.stats().total("sessionStart"), 1, "logged in: ::1 is not trusted");
    let v3 = MikoPbxV3::new(&block(&url, MikoPbxApiGeneration::V3), &none, settings()).unwrap();
    assert_eq!(v3.list().await.unwrap().accounts.len(), 1, "v3 trusts ::1");
}

// ---------------------------------------------------------------------------------------
// Through the engine: what a pass writes

struct Passwords(Option<Secret>);

impl Vault for Passwords {
    fn password(&self, _owner: &Owner) -> Option<Secret> {
        self.0.clone()
    }
}

fn system(url: &str, generation: &str) -> PhoneSystemSpec {
    serde_json::from_value(json!({
        "mikopbx": {"url": url, "apiGeneration": generation},
        "credentialsSecretRef": {"name": "pbx"},
        "adoption": "adopt",
    }))
    .unwrap()
}

async fn pass(
    backend: &impl Backend,
    spec: &PhoneSystemSpec,
    people: &[(Owner, switchboard::api::EmployeeSpec)],
    state: &State,
    vault: &Passwords,
) -> Report {
    crate::faults::engine_pass_with(backend, "office", spec, people, state, vault).await.unwrap()
}

fn person(
    extension: &str,
    name: &str,
    mikopbx: serde_json::Value,
) -> (Owner, switchboard::api::EmployeeSpec) {
    let spec = serde_json::from_value(json!({
        "givenName": name, "familyName": "Tester", "email": format!("{}@example.com", name.to_lowercase()),
        "extension": extension, "mobile": format!("+48600111{extension}"),
        "phoneSystems": [{"name": "office", "mikopbx": mikopbx}],
    }))
    .unwrap();
    (Owner::new("default", name.to_lowercase()), spec)
}

fn entry(state: &State, owner: &Owner) -> switchboard::api::employee::AccountStatus {
    state.status(owner).unwrap().phone_systems[0].clone()
}

#[tokio::test]
async fn a_plus_forwarding_target_costs_no_write_on_a_converged_pass() {
    for (release, api) in
        [(Generation::V2026_1, "v3"), (Generation::V2023_2, "legacy"), (Generation::V2024_1, "legacy")]
    {
        let p = pbx_with(config(generation(release), true)).await;
        let spec = system(&p.running.url, api);
        let backend = switchboard::backends::connect(&spec, &Credentials::default(), settings()).unwrap();
        let people = [
            person(
                "201",
                "Ann",
                json!({"forwarding": {"onNoAnswer": "+48600999888", "onBusy": "+48600999777", "ringLength": 30}}),
            ),
            person("202", "Ben", json!({"forwarding": {"onUnavailable": "+380501234567"}})),
        ];
        let state = State::in_memory();
        let vault = Passwords(None);
        let first = pass(&backend, &spec, &people, &state, &vault).await;
        assert_eq!((first.writes, first.failures), (2, 0), "{release:?}: {:?}", first.events);
        p.running.reset_stats();
        for _ in 0..3 {
            let again = pass(&backend, &spec, &people, &state, &vault).await;
            assert_eq!((again.writes, again.failures), (0, 0), "{release:?}: {:?}", again.plan);
        }
        let stats = p.running.stats();
        for write in ["patch", "saveRecord", "create"] {
            assert_eq!(stats.total(write), 0, "{release:?}: {write} in {stats:?}");
        }
    }
}

#[tokio::test]
async fn an_adopted_account_with_a_weak_stored_password_says_what_to_fix_and_is_not_patched_again() {
    let p = pbx_with(config(generation(Generation::V2026_1), true)).await;
    // Made before 2026.1's password rule (through the legacy API, say).
    p.sim.seed(&json!({"number": "201", "user_username": "Old Name", "sip_secret": "weakpass"})).unwrap();
    let spec = system(&p.running.url, "v3");
    let backend = switchboard::backends::connect(&spec, &Credentials::default(), settings()).unwrap();
    let people = [person("201", "Ann", json!({}))];
    let owner = &people[0].0;
    let state = State::in_memory();
    for round in 0..3 {
        let report = pass(&backend, &spec, &people, &state, &Passwords(None)).await;
        assert_eq!(report.failures, 1, "round {round}");
        let e = entry(&state, owner);
        assert_eq!(e.state, AccountState::Failed, "round {round}: {e:?}");
        let message = e.message.unwrap_or_default();
        assert!(message.contains("passwordSecretRef") && message.contains("sip_secret"), "{message}");
        assert!(!message.contains("weakpass"), "{message}");
    }
    assert_eq!(p.running.stats().total("patch"), 0, "a PATCH that must fail is never sent");
    assert_eq!(dump(&p)["201"]["user_username"], "Old Name");

    // With a password of its own, the change carries it and goes through.
    let strong = Passwords(Some(Secret::new("Zx9!kP3#qW7m$Lr2")));
    let report = pass(&backend, &spec, &people, &state, &strong).await;
    assert_eq!(report.failures, 0, "{:?}", report.events);
    assert_eq!(entry(&state, owner).state, AccountState::InSync);
    let rec = &dump(&p)["201"];
    assert_eq!(rec["user_username"], "Ann Tester");
    assert_eq!(rec["sip_secret"], "Zx9!kP3#qW7m$Lr2");
}

#[tokio::test]
async fn a_patch_refused_for_the_stored_record_is_not_sent_again_until_something_changes() {
    let p = pbx_with(config(generation(Generation::V2026_1), true)).await;
    // A mobile the legacy API took and v3's pattern refuses; a strong password.
    let id = p
        .sim
        .seed(&json!({"number": "201", "user_username": "Old Name", "sip_secret": PASSWORD, "mobile_number": "0601234567"}))
        .unwrap();
    let spec = system(&p.running.url, "v3");
    let backend = switchboard::backends::connect(&spec, &Credentials::default(), settings()).unwrap();
    let (owner, mut ann) = person("201", "Ann", json!({}));
    ann.mobile = None;
    let people = [(owner.clone(), ann)];
    let state = State::in_memory();
    let report = pass(&backend, &spec, &people, &state, &Passwords(None)).await;
    assert_eq!(report.failures, 1);
    assert_eq!(p.running.stats().total("patch"), 1);
    for _ in 0..2 {
        pass(&backend, &spec, &people, &state, &Passwords(None)).await;
    }
    assert_eq!(p.running.stats().total("patch"), 1, "the same PATCH on the same record is not sent again");
    assert_eq!(entry(&state, &owner).state, AccountState::Failed);

    // The record is fixed on the PBX: the change goes through.
    p.sim.tamper(&id, json!({"mobile_number": "48601234567"}).as_object().unwrap()).unwrap();
    let report = pass(&backend, &spec, &people, &state, &Passwords(None)).await;
    assert_eq!(report.failures, 0, "{:?}", report.events);
    assert_eq!(entry(&state, &owner).state, AccountState::InSync);
    assert_eq!(dump(&p)["201"]["user_username"], "Ann Tester");
}

#[tokio::test]
async fn the_first_listing_names_the_generation_for_the_probe() {
    let mut seen = BTreeSet::new();
    for (release, api) in
        [(Generation::V2023_2, "legacy"), (Generation::V2024_1, "legacy"), (Generation::V2026_1, "v3")]
    {
        let p = pbx_with(config(generation(release), true)).await;
        seed(&p, "201", "One");
        let spec = system(&p.running.url, api);
        let backend = switchboard::backends::connect(&spec, &Credentials::default(), settings()).unwrap();
        let probe = backend.probe().await.unwrap();
        let generation = dialect_of(&probe.listing, "API generation");
        assert!(matches!(probe.sample, Some(Ok(Some(_)))), "{release:?}: {:?}", probe.sample);
        seen.insert(generation);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

/// What README.md says a pass costs, per generation: a converged listing of 50 accounts
/// (each with a mobile, as the seed's script makes them).
#[tokio::test]
async fn a_pass_costs_what_the_readme_says() {
    let scanner = RestrictedUser {
        login: "pbx-api".into(),
        password: "pbx-api-pass".into(),
        allowed_actions: ["getRecord", "getForSelect"].map(String::from).to_vec(),
    };
    let cases = [
        (Generation::V2023_2, "legacy", false, 51),
        (Generation::V2024_1, "legacy", false, 51),
        (Generation::V2026_1, "v3", false, 51),
        // The id scan: getForSelect, then ids 1–104 (4 system numbers, then a SIP and a
        // mobile extension per employee), in batches of 4.
        (Generation::V2023_2, "legacy", true, 105),
    ];
    for (release, api, scan, cost) in cases {
        let p = pbx_with(MikoPbxConfig {
            restricted_users: vec![scanner.clone()],
            ..config(generation(release), !scan)
        })
        .await;
        for n in 0..50 {
            seed(&p, &(201 + n).to_string(), &format!("Person {n}"));
        }
        let credentials = match scan {
            true => Credentials::new([
                ("username".to_owned(), "pbx-api".to_owned()),
                ("password".to_owned(), "pbx-api-pass".to_owned()),
            ]),
            false => Credentials::default(),
        };
        let spec = system(&p.running.url, api);
        let backend = switchboard::backends::connect(&spec, &credentials, settings()).unwrap();
        assert_eq!(backend.list().await.unwrap().accounts.len(), 50);
        p.running.reset_stats();
        let listing = backend.list().await.unwrap();
        assert_eq!(listing.accounts.len(), 50);
        let stats = p.running.stats();
        assert_eq!(stats.requests, cost, "{release:?} scan {scan}: {stats:?}");
    }
}

/// The way of listing is remembered, not trusted: a cabinet that stops answering it
/// ("Page not found - 404", HTTP 200) sends the client to the next way, never to an
/// empty list.
#[tokio::test]
async fn a_remembered_way_that_stops_answering_is_replaced() {
    let p = pbx_with(config(generation(Generation::V2024_1), true)).await;
    seed(&p, "201", "One");
    let b = legacy_client(&p, &Credentials::default());
    assert!(dialect_of(&b.list().await.unwrap(), "API generation").contains("2024.1"));
    // The same PBX, now answering as a 2023.2 (the table is gone, the page lists).
    p.sim.set_dialect(json!({"generation": "2023.2"}).as_object().unwrap()).unwrap();
    p.running.reset_stats();
    let listing = b.list().await.unwrap();
    assert_eq!(extensions(&listing), ["201"]);
    assert!(dialect_of(&listing, "API generation").contains("2023.2"), "{listing:?}");
    let stats = p.running.stats();
    assert_eq!((stats.count("getNewRecords", 200), stats.total("extensionsIndex")), (1, 1), "{stats:?}");
}
