//! Chaos: 200 Employees across the five simulators with about 20% injected faults of every
//! kind, the engine killed at random points and restarted from its state file, Employees
//! deleted along the way; then faults stop. Nothing may be duplicated, lost, or touched
//! that switchboard does not own, and no secret may appear in any log, status or error.
//!
//! `SWITCHBOARD_SOAK=1` runs longer, with more Employees.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use switchboard::{
    api::{BackendKind, EmployeeSpec, PhoneSystemSpec},
    backends::{self, AnyBackend, Credentials, Secret, http::Settings},
    engine::{self, EmployeeView, Options, Vault},
    plan::Owner,
    sim::{self, FaultConfig, Running},
    state::State,
};

struct Passwords(BTreeMap<Owner, Secret>);

impl Vault for Passwords {
    fn password(&self, owner: &Owner) -> Option<Secret> {
        self.0.get(owner).cloned()
    }
}

struct System {
    kind: BackendKind,
    name: String,
    spec: PhoneSystemSpec,
    server: Running,
    backend: AnyBackend,
    /// Accounts switchboard does not own, as first seen: they must never change.
    unmanaged: Vec<Value>,
}

/// Captures every log line of the run, to search for secrets.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const FAMILY: [&str; 6] = ["Kowalski", "Петренко", "Nowak", "Шевченко", "Müller", "Dvořák"];
const GIVEN: [&str; 6] = ["Jan", "Иван", "Zofia", "Ольга", "Jürgen", "Tomáš"];

/// What identifies person `i`'s account in each simulator's dump: the extension, or on
/// Telphin (whose users point at an extension record by id) the login.
fn key_of(kind: BackendKind, i: usize) -> String {
    match kind {
        BackendKind::Telphin => format!("person{i}"),
        _ => format!("{}", 300 + i),
    }
}

fn extension_of(kind: BackendKind, account: &Value) -> String {
    let field = match kind {
        BackendKind::Mikopbx => "number",
        BackendKind::Thulium => "number",
        BackendKind::Apio => "extension",
        BackendKind::Telphin => "login",
        BackendKind::Ringostat => "extensionNumber",
    };
    match &account[field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn unmanaged_seed(kind: BackendKind, i: usize) -> Value {
    let ext = format!("9{i}0");
    match kind {
        BackendKind::Mikopbx => {
            json!({"number": ext, "user_username": "Stranger Danger", "user_email": "s@example.com", "sip_secret": "Stranger-Secret-1"})
        }
        BackendKind::Thulium => {
            json!({"name": "Stranger", "surname": "Danger", "login": format!("stranger{i}"), "password": "Stranger-Secret-1", "number": ext, "email": "s@example.com"})
        }
        BackendKind::Apio => {
            json!({"firstName": "Stranger", "lastName": "Danger", "extension": ext, "emailAddress": "s@example.com"})
        }
        BackendKind::Telphin => {
            json!({"name": "Stranger Danger", "login": format!("stranger{i}"), "password": "Stranger-Secret-1", "email": "s@example.com", "extension": ext})
        }
        BackendKind::Ringostat => {
            json!({"fio": "Stranger Danger", "email": format!("s{i}@example.com"), "extensionNumber": ext, "access": "4",
            "departments": null, "directions": {"main": [{"type": "sip", "direction": ext, "password": "Stranger-Secret-12345"}], "additional": []}})
        }
    }
}

/// One engine pass, from the statuses the state holds (as a restarted process would).
async fn pass(
    state: &State,
    system: &System,
    views: &[EmployeeView<'_>],
    vault: &Passwords,
) -> Result<engine::Report, engine::Error> {
    let views: Vec<EmployeeView> = views
        .iter()
        .cloned()
        .map(|mut v| {
            v.status = state.status(&v.owner).map(Cow::Owned);
            v
        })
        .collect();
    let options =
        Options { dry_run: false, allow_deletions: None, now: Time(Timestamp::now()), progress: None };
    engine::sync(&system.backend, &system.name, &system.spec, &views, state, vault, &options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nothing_duplicated_lost_or_wrongly_touched() {
    let soak = std::env::var("SWITCHBOARD_SOAK").is_ok();
    let (people, rounds) = if soak { (1000, 60) } else { (200, 20) };
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("switchboard=debug")
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _log_guard = tracing::subscriber::set_default(subscriber);
    let mut rng = StdRng::seed_from_u64(2026);

    let settings = Settings {
        timeout: Duration::from_millis(400),
        attempts: 3,
        backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
        ..Settings::default()
    };
    let mut systems = Vec::new();
    let mut secrets: BTreeSet<String> = BTreeSet::new();
    for kind in BackendKind::ALL {
        let server =
            sim::spawn(sim::default_simulator(kind), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let creds = server.sim.credentials();
        secrets.extend(
            creds
                .iter()
                .filter(|(k, _)| !["username", "projectId", "creatorId", "clientId"].contains(&k.as_str()))
                .map(|(_, v)| v.clone()),
        );
        let name = format!("pbx-{kind}");
        let mut block = json!({kind.as_str(): sim::backend_block(kind, &server.url)});
        block["maxConcurrency"] = json!(8);
        block["maxDeletionsPerSync"] = json!(1000);
        let spec: PhoneSystemSpec = serde_json::from_value(block).unwrap();
        let backend = backends::connect(&spec, &Credentials::new(creds), settings.clone()).unwrap();
        for i in 0..3 {
            server.sim.seed(&unmanaged_seed(kind, i)).unwrap();
        }
        let unmanaged = server.sim.dump().as_array().cloned().unwrap();
        systems.push(System { kind, name, spec, server, backend, unmanaged });
    }

    // Employees: each on one system, extensions unique per system.
    let mut specs = Vec::new();
    let mut passwords = BTreeMap::new();
    for i in 0..people {
        let system = &systems[i % systems.len()];
        let given = GIVEN[i % GIVEN.len()];
        let family = FAMILY[(i / 6) % FAMILY.len()];
        let extension = format!("{}", 300 + i);
        let spec: EmployeeSpec = serde_json::from_value(json!({
            "givenName": given, "familyName": family,
            "email": format!("person{i}@example.com"), "login": format!("person{i}"),
            "extension": extension,
            "phoneSystems": [{"name": system.name}],
            "deletionPolicy": if i % 10 == 3 { "Orphan" } else { "Delete" },
        }))
        .unwrap();
        let owner = Owner::new("default", format!("person{i}"));
        if i % 4 == 0 {
            let password = format!("Chaos-Pass-{i:04}-Qx!z");
            secrets.insert(password.clone());
            passwords.insert(owner.clone(), Secret::new(password));
        }
        specs.push((owner, spec));
    }
    let mut views: Vec<EmployeeView> = specs
        .iter()
        .enumerate()
        .map(|(i, (owner, spec))| EmployeeView {
            owner: owner.clone(),
            spec,
            status: None,
            rank: i as i64,
            deleting: false,
        })
        .collect();
    let vault = Passwords(passwords);
    // Deleted along the way: on systems that can delete, half Delete and half Orphan.
    let doomed: BTreeSet<Owner> = views
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 25 == 2 || i % 25 == 3)
        .filter(|(_, v)| {
            ["pbx-mikopbx", "pbx-apio", "pbx-telphin"].contains(&v.spec.phone_systems[0].name.as_str())
        })
        .map(|(_, v)| v.owner.clone())
        .collect();

    let dir = std::env::temp_dir().join(format!("switchboard-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state_file = dir.join("state.json");
    let _ = std::fs::remove_file(&state_file);

    let faults = FaultConfig {
        error_rate: 0.05,
        rate_limit_rate: 0.04,
        retry_after_secs: 0,
        hang_rate: 0.02,
        hang_secs: 1,
        garbage_rate: 0.04,
        drop_rate: 0.03,
        commit_then_fail_rate: 0.02,
        ..FaultConfig::default()
    };
    for (i, s) in systems.iter().enumerate() {
        s.server.set_faults(FaultConfig { seed: 7 + i as u64, ..faults.clone() });
    }

    let mut kills = 0;
    let mut errors_seen: Vec<String> = Vec::new();
    let mut entries_seen: Vec<String> = Vec::new();
    for round in 0..rounds {
        // Each round is a restart: the state comes back from the file alone.
        let state = State::open(&state_file).unwrap();
        if round == rounds / 2 {
            for v in views.iter_mut().filter(|v| doomed.contains(&v.owner)) {
                v.deleting = true;
            }
        }
        for system in &systems {
            let kill_after = Duration::from_millis(rng.random_range(5..400));
            match tokio::time::timeout(kill_after, pass(&state, system, &views, &vault)).await {
                Err(_) => kills += 1,
                Ok(Err(e)) => errors_seen.push(e.to_string()),
                Ok(Ok(report)) => {
                    state.record(&system.name, &report).unwrap();
                    for entry in report.entries.values().flatten() {
                        entries_seen.push(format!("{entry:?}"));
                    }
                    errors_seen.extend(report.events.iter().map(|e| e.message.clone()));
                }
            }
        }
        // A deleted Employee is gone once no entry holds it (the finalizer's rule).
        views.retain(|v| !v.deleting || state.status(&v.owner).is_some_and(|s| !s.phone_systems.is_empty()));
    }

    for s in &systems {
        s.server.set_faults(FaultConfig::default());
    }
    let state = State::open(&state_file).unwrap();
    for _ in 0..10 {
        let mut writes = 0;
        for system in &systems {
            let report = pass(&state, system, &views, &vault).await.unwrap();
            state.record(&system.name, &report).unwrap();
            writes += report.writes;
            for entry in report.entries.values().flatten() {
                entries_seen.push(format!("{entry:?}"));
            }
        }
        views.retain(|v| !v.deleting || state.status(&v.owner).is_some_and(|s| !s.phone_systems.is_empty()));
        if writes == 0 {
            break;
        }
    }

    // Every declared account exists exactly once, with the declared fields.
    let mut checked = 0;
    let mut injected = 0;
    for system in &systems {
        let dump = system.server.sim.dump().as_array().cloned().unwrap();
        injected += system.server.stats().faults.values().sum::<u64>();
        for v in views.iter().filter(|v| v.spec.phone_systems[0].name == system.name) {
            let i: usize = v.owner.name.trim_start_matches("person").parse().unwrap();
            let key = key_of(system.kind, i);
            let holders: Vec<&Value> = dump.iter().filter(|a| extension_of(system.kind, a) == key).collect();
            assert_eq!(
                holders.len(),
                1,
                "{}: {} accounts on {} for {}; its entry: {:?}; first account: {:?}",
                system.name,
                holders.len(),
                v.spec.extension,
                v.owner,
                state.status(&v.owner),
                dump.first()
            );
            let text = holders[0].to_string();
            assert!(
                text.contains(&v.spec.email),
                "{}: {} lacks {}: {text}",
                system.name,
                v.owner,
                v.spec.email
            );
            let entry = state.status(&v.owner).and_then(|s| s.phone_systems.into_iter().next()).unwrap();
            assert_eq!(entry.state, switchboard::api::AccountState::InSync, "{}: {entry:?}", v.owner);
            checked += 1;
        }
        // Accounts nobody owns were neither changed nor deleted.
        for before in &system.unmanaged {
            assert!(dump.contains(before), "{}: unmanaged account changed or gone: {before}", system.name);
        }
        // Deleted Employees: their account is gone (Delete) or kept (Orphan).
        for owner in &doomed {
            let i: usize = owner.name.trim_start_matches("person").parse().unwrap();
            if systems[i % systems.len()].name != system.name {
                continue;
            }
            let key = key_of(system.kind, i);
            let left = dump.iter().filter(|a| extension_of(system.kind, a) == key).count();
            let expected = if i % 10 == 3 { 1 } else { 0 };
            assert_eq!(left, expected, "{}: deleted {owner} left {left} accounts", system.name);
            checked += 1;
        }
    }
    assert!(views.iter().all(|v| !v.deleting), "a deleted Employee is still held");

    // No secret anywhere: logs, status entries, events, errors.
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let haystacks = [
        ("logs", logs.clone()),
        ("entries", entries_seen.join("\n")),
        ("errors and events", errors_seen.join("\n")),
    ];
    let mut searched = 0;
    for secret in &secrets {
        for (what, text) in &haystacks {
            assert!(!text.contains(secret.as_str()), "a secret appears in the {what}");
            searched += 1;
        }
    }
    assert!(injected > 50, "too few faults were injected ({injected}) for this to mean anything");
    assert!(kills >= 10, "too few kills ({kills})");
    eprintln!(
        "chaos: {people} Employees, {rounds} rounds, {injected} faults injected, {kills} kills, {checked} accounts checked, {} secrets searched in {searched} places, {} log bytes",
        secrets.len(),
        logs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
