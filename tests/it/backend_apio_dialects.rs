//! The APIO client against every dialect of the APIO simulator (each answer shape the
//! vendor's evidence leaves open, alone and combined): the same pass of creates, reads,
//! updates, a password change, refusals and deletes must end with exactly the expected
//! users, with the values and passwords sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde_json::{Map, Value, json};
use switchboard::{
    api::{EmployeeSpec, phone_system},
    backends::{
        Backend, Credentials, Error, Secret, apio::Apio, create_once, create_once_unresolved, http::Settings,
    },
    plan::{Account, Change, Desired, Field},
    sim::{
        self, Running, Simulator,
        apio::{ApioConfig, ApioSim},
    },
};

use crate::backend_apio::{owner, settings};

/// Every setting away from its default, alone, then the combinations that pull the
/// client hardest in opposite directions.
pub fn dialects() -> Vec<(&'static str, Value)> {
    vec![
        ("default", json!({})),
        ("detail with userId", json!({"detail_user_id": true})),
        ("bare list", json!({"list_shape": "bare"})),
        ("limit ignored", json!({"size_limit": "ignored"})),
        ("criteria in the query string only", json!({"criteria": "query"})),
        ("criteria in a JSON body only", json!({"criteria": "body"})),
        ("ids without the default domain", json!({"list_user_id_domain": false})),
        ("no-slash paths redirected", json!({"no_slash": "redirect"})),
        ("password only", json!({"password_change": "password"})),
        ("newPassword only", json!({"password_change": "old_new"})),
        ("unknown fields dropped", json!({"unknown_fields": "ignore"})),
        (
            "unknown fields dropped, password only",
            json!({"unknown_fields": "ignore", "password_change": "password"}),
        ),
        (
            "unknown fields dropped, newPassword only",
            json!({"unknown_fields": "ignore", "password_change": "old_new"}),
        ),
        ("create answers the user without userId", json!({"create_answer": "user_without_id"})),
        ("create answers {}", json!({"create_answer": "empty"})),
        ("duplicates are 400", json!({"duplicate_status": 400})),
        ("departments by name", json!({"department": "name"})),
        (
            "the docs read strictly",
            json!({"criteria": "body", "password_change": "old_new", "create_answer": "empty",
                   "duplicate_status": 400, "list_user_id_domain": false}),
        ),
        (
            "the UI read loosely",
            json!({"criteria": "query", "password_change": "password", "unknown_fields": "ignore",
                   "no_slash": "redirect", "detail_user_id": true, "department": "name"}),
        ),
        (
            "everything the other way",
            json!({"detail_user_id": true, "list_shape": "bare", "size_limit": "ignored",
                   "criteria": "body", "list_user_id_domain": false, "no_slash": "redirect",
                   "password_change": "old_new", "unknown_fields": "ignore",
                   "create_answer": "user_without_id", "duplicate_status": 400, "department": "name"}),
        ),
    ]
}

/// The simulator, serving `dialect`.
pub async fn serve(dialect: &Value) -> (Running, std::sync::Arc<ApioSim>) {
    let sim = ApioSim::new(ApioConfig::default());
    let patch: Map<String, Value> = dialect.as_object().cloned().unwrap_or_default();
    sim.set_dialect(&patch).unwrap();
    let run = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (run, sim)
}

fn client(run: &Running, sim: &ApioSim) -> Apio {
    let c = sim.credentials();
    let creds = Credentials::new([
        ("username".to_string(), c["username"].clone()),
        ("password".to_string(), c["password"].clone()),
    ]);
    let block = phone_system::Apio {
        url: run.url.clone(),
        path_prefix: "/api/v01/p1".into(),
        tenant: "foo".into(),
        group: "foogroup".into(),
    };
    // Twenty simulators at once on a loaded machine: no request may time out (faults are
    // another test's concern).
    let settings = Settings { timeout: Duration::from_secs(20), ..settings() };
    // Pages of 3: eight users reach the limit, so the listing splits by prefix.
    Apio::new(&block, &creds, settings).unwrap().with_page_size(3)
}

fn person(b: &Apio, given: &str, family: &str, extension: &str) -> Desired {
    let e: EmployeeSpec = serde_json::from_value(json!({
        "givenName": given, "familyName": family,
        "email": format!("{}@example.com", given.to_lowercase()),
        "extension": extension,
        "mobile": "+48601000".to_owned() + extension,
        "phoneSystems": [{"name": "broadworks", "apio": {"language": "English", "timeZone": "Europe/Warsaw"}}],
    }))
    .unwrap();
    let m = &e.phone_systems[0];
    Desired {
        owner: owner(&given.to_lowercase()),
        rank: 0,
        extension: e.extension_on(m).to_owned(),
        attributes: b.desired(&e, m).unwrap(),
        password_fingerprint: None,
    }
}

/// The users the simulator holds: extension -> the user, passwords included.
fn held(sim: &ApioSim) -> BTreeMap<String, Value> {
    let Value::Array(all) = sim.dump() else { panic!("dump is not an array") };
    all.into_iter().map(|u| (u["extension"].as_str().unwrap_or("").to_owned(), u)).collect()
}

fn on<'a>(accounts: &'a [Account], extension: &str) -> &'a Account {
    accounts.iter().find(|a| a.extension == extension).unwrap_or_else(|| panic!("nothing on {extension}"))
}

/// One pass of everything switchboard does on APIO, under `dialect`; panics naming the
/// dialect on the first difference.
async fn contract(name: &str, dialect: Value) {
    let (run, sim) = serve(&dialect).await;
    // Accounts nobody manages: in a department, and one without an extension.
    sim.seed(&json!({"firstName": "Seed", "lastName": "Sales", "extension": "100",
                     "department": {"departmentName": "sales"}}))
        .unwrap();
    sim.seed(&json!({"firstName": "Seed", "lastName": "Desk", "extension": "101"})).unwrap();
    sim.seed(&json!({"firstName": "Seed", "lastName": "Fax"})).unwrap();
    let b = client(&run, &sim);
    let pw = Secret::new("Kx7-pass-Word9");
    let people: Vec<Desired> = [
        ("Anna", "Nowak", "201"),
        ("Bogdan", "Петренко", "202"),
        ("Chen", "王", "203"),
        ("Dora", "Dunn", "204"),
        ("Emil", "Łukasiewicz", "205"),
    ]
    .iter()
    .map(|(g, f, e)| person(&b, g, f, e))
    .collect();

    // Creates as a test drives them (resolved) and as the engine does (maybe unresolved).
    let mut created: BTreeMap<String, Account> = BTreeMap::new();
    for d in &people[..3] {
        let a = create_once(&b, d, Some(&pw)).await.unwrap_or_else(|e| panic!("{name}: create: {e}"));
        assert_eq!(a.extension, d.extension, "{name}");
        created.insert(d.extension.clone(), a);
    }
    let mut unresolved = Vec::new();
    for d in &people[3..] {
        match create_once_unresolved(&b, d, Some(&pw)).await.unwrap_or_else(|e| panic!("{name}: {e}")) {
            Some(a) => {
                created.insert(d.extension.clone(), a);
            }
            None => unresolved.push(d.extension.clone()),
        }
    }

    let listing = b.list().await.unwrap_or_else(|e| panic!("{name}: list: {e}"));
    assert!(listing.complete, "{name}: the listing is complete");
    assert!(listing.unreadable.is_empty(), "{name}: {:?}", listing.unreadable);
    assert_eq!(listing.accounts.len(), 8, "{name}: {:?}", listing.accounts);
    for d in &people {
        let listed = on(&listing.accounts, &d.extension);
        assert_eq!(listed.attributes, d.attributes, "{name}: everything declared reads back");
        if let Some(a) = created.get(&d.extension) {
            // A claim recorded at create time must name the account the listing shows.
            assert_eq!(a.id, listed.id, "{name}: the id a create gave is the id the list shows");
        }
    }
    for ext in &unresolved {
        created.insert(ext.clone(), on(&listing.accounts, ext).clone());
    }
    assert_eq!(b.find("203").await.unwrap().as_ref(), Some(on(&listing.accounts, "203")), "{name}");
    assert_eq!(b.find("299").await.unwrap(), None, "{name}");

    // An e-mail and a password change on one, a new name on another.
    let anna = &created["201"];
    let pw2 = Secret::new("New-pass-Word7");
    let changes = [
        Change { field: Field::Email, from: None, to: Some("anna.nowak@example.com".into()) },
        Change { field: Field::Password, from: None, to: None },
    ];
    b.update(anna, &people[0], &changes, Some(&pw2)).await.unwrap_or_else(|e| panic!("{name}: update: {e}"));
    let rename = [Change { field: Field::FamilyName, from: None, to: Some("Petrenko-Nowak".into()) }];
    b.update(&created["202"], &people[1], &rename, None).await.unwrap_or_else(|e| panic!("{name}: {e}"));

    // Refusals: a taken extension is a conflict, a weak password a validation error.
    let twin = person(&b, "Zed", "Twin", "202");
    match b.create(&twin, Some(&pw)).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("{name}: a duplicate extension gave {other:?}"),
    }
    let weak = person(&b, "Weak", "Pass", "299");
    match b.create(&weak, Some(&Secret::new("alllowercase"))).await {
        Err(Error::Validation { .. }) => {}
        other => panic!("{name}: a weak password gave {other:?}"),
    }

    // Deletes: one, again (already gone), and an update of a user that is gone.
    let dora = created["204"].clone();
    b.delete(&dora).await.unwrap_or_else(|e| panic!("{name}: delete: {e}"));
    b.delete(&dora).await.unwrap_or_else(|e| panic!("{name}: delete again: {e}"));
    let gone = b.update(&dora, &people[3], &rename, None).await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{name}: {gone:?}");

    let users = held(&sim);
    let extensions: BTreeSet<&str> = users.keys().map(String::as_str).collect();
    assert_eq!(extensions, BTreeSet::from(["", "100", "101", "201", "202", "203", "205"]), "{name}");
    assert_eq!(users["201"]["password"], json!(pw2.expose()), "{name}: the new password was set");
    assert_eq!(users["201"]["emailAddress"], json!("anna.nowak@example.com"), "{name}");
    assert_eq!(users["203"]["password"], json!(pw.expose()), "{name}");
    assert_eq!(users["202"]["lastName"], json!("Petrenko-Nowak"), "{name}");
    assert_eq!(users["202"]["cliLastName"], json!("Petrenko-Nowak"), "{name}");
    assert_eq!(users["205"]["cliLastName"], json!("Lukasiewicz"), "{name}: calling-line names are ASCII");
    assert_eq!(users["205"]["mobilePhoneNumber"], json!("+48601000205"), "{name}");

    let again = b.list().await.unwrap();
    assert!(again.complete && again.unreadable.is_empty(), "{name}");
    assert_eq!(again.accounts.len(), 7, "{name}");
    assert_eq!(on(&again.accounts, "201").id, anna.id, "{name}: ids are stable across listings");
}

#[tokio::test]
async fn every_dialect_ends_with_exactly_the_expected_users() {
    let runs = dialects().into_iter().map(|(name, dialect)| contract(name, dialect));
    futures_util::future::join_all(runs).await;
}

/// The id form is learned once: the first create on a group whose list leaves the
/// default domain out costs a lookup, the next ones none.
#[tokio::test]
async fn ids_without_the_default_domain_are_learned_once() {
    let (run, sim) = serve(&json!({"list_user_id_domain": false})).await;
    let b = client(&run, &sim);
    let pw = Secret::new("Kx7-pass-Word9");
    let first = create_once(&b, &person(&b, "Anna", "Nowak", "201"), Some(&pw)).await.unwrap();
    assert!(!first.id.contains('@'), "the list's form: {}", first.id);
    let lookups = run.stats().total("listUsers");
    for (i, ext) in ["202", "203", "204"].into_iter().enumerate() {
        let a = create_once(&b, &person(&b, &format!("User{i}"), "X", ext), Some(&pw)).await.unwrap();
        assert!(!a.id.contains('@'), "{}", a.id);
    }
    assert_eq!(run.stats().total("listUsers"), lookups, "no lookup once the form is known");
    let listed: BTreeSet<String> = b.list().await.unwrap().accounts.into_iter().map(|a| a.id).collect();
    assert!(listed.contains(&first.id));
}

/// A password goes as `password` and `newPassword` at once; a server that refuses the
/// pair teaches the client its one form, which it then sends alone.
#[tokio::test]
async fn the_password_form_a_server_takes_is_kept() {
    for (form, key) in [("password", "password"), ("old_new", "newPassword")] {
        let (run, sim) = serve(&json!({"password_change": form})).await;
        let b = client(&run, &sim);
        let d = person(&b, "Anna", "Nowak", "201");
        let a = create_once(&b, &d, Some(&Secret::new("Kx7-pass-Word9"))).await.unwrap();
        let change = [Change { field: Field::Password, from: None, to: None }];
        run.reset_stats();
        b.update(&a, &d, &change, Some(&Secret::new("New-pass-Word7"))).await.unwrap();
        let tries = run.stats().total("updateUser");
        assert!(tries >= 2, "{form}: the pair is refused first ({tries})");
        run.reset_stats();
        b.update(&a, &d, &change, Some(&Secret::new("Third-pass-Word5"))).await.unwrap();
        assert_eq!(run.stats().total("updateUser"), 1, "{form}: {key} alone, at once");
        assert_eq!(held(&sim)["201"]["password"], json!("Third-pass-Word5"), "{form}");
    }
}

/// A row or a record that cannot be read fails alone: the listing names it, with its
/// field, and reads every other user.
#[tokio::test]
async fn a_record_that_cannot_be_read_is_reported_not_fatal() {
    let (run, sim) = serve(&json!({})).await;
    let b = client(&run, &sim);
    let pw = Secret::new("Kx7-pass-Word9");
    let mut ids = Vec::new();
    for (g, ext) in [("Anna", "201"), ("Bob", "202"), ("Carl", "203")] {
        ids.push(create_once(&b, &person(&b, g, "X", ext), Some(&pw)).await.unwrap().id);
    }
    // A list row whose extension is an object, and a record whose first name is a list.
    let mut bad_row = Map::new();
    bad_row.insert("extension".into(), json!({"digits": "202"}));
    sim.tamper(&ids[1], &bad_row).unwrap();
    let mut bad_record = Map::new();
    bad_record.insert("firstName".into(), json!(["Carl"]));
    sim.tamper(&ids[2], &bad_record).unwrap();

    let listing = b.list().await.unwrap();
    assert_eq!(listing.accounts.len(), 1, "{:?}", listing.accounts);
    assert_eq!(listing.accounts[0].extension, "201");
    assert_eq!(listing.unreadable.len(), 2, "{:?}", listing.unreadable);
    let row = listing.unreadable.iter().find(|u| u.id.as_deref() == Some(ids[1].as_str())).unwrap();
    assert!(row.problem.starts_with("extension"), "{}", row.problem);
    let record = listing.unreadable.iter().find(|u| u.id.as_deref() == Some(ids[2].as_str())).unwrap();
    assert!(record.problem.starts_with("firstName"), "{}", record.problem);
    assert_eq!(record.extension.as_deref(), Some("203"), "the extension the list gave");
    // Looking the unreadable one up by extension is an error, never "nobody".
    assert!(matches!(b.find("203").await, Err(Error::Protocol { .. })));
}

/// What a pass costs: a listing is one list request plus one read per user (the list
/// lacks language, time zone and mobile); a create is one request once the id form is
/// known, which the listing before it teaches.
#[tokio::test]
async fn requests_per_pass() {
    let (run, sim) = serve(&json!({})).await;
    for i in 0..20 {
        sim.seed(
            &json!({"firstName": "Seed", "lastName": format!("N{i}"), "extension": format!("{}", 400 + i)}),
        )
        .unwrap();
    }
    let b = client(&run, &sim).with_page_size(500);
    run.reset_stats();
    assert_eq!(b.list().await.unwrap().accounts.len(), 20);
    let stats = run.stats();
    assert_eq!((stats.total("listUsers"), stats.total("getUser")), (1, 20), "{stats:?}");

    run.reset_stats();
    let pw = Secret::new("Kx7-pass-Word9");
    for ext in ["501", "502", "503"] {
        create_once_unresolved(&b, &person(&b, &format!("P{ext}"), "X", ext), Some(&pw))
            .await
            .unwrap()
            .unwrap();
    }
    let stats = run.stats();
    assert_eq!(stats.requests, 3 + stats.count("login", 200), "one request per create: {stats:?}");
}
