//! `switchboard probe` against every simulator: read-only, and its verdict.

use serde_json::json;
use switchboard::{
    api::{BackendKind, EmployeeSpec, PhoneSystem},
    backends::{self, Backend, Credentials, http::Settings},
    plan::{Desired, Owner},
    probe,
    sim::{self, Running},
};

async fn start(kind: BackendKind) -> Running {
    sim::spawn(sim::default_simulator(kind), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn phone_system(kind: BackendKind, running: &Running) -> PhoneSystem {
    let mut spec = json!({"credentialsSecretRef": {"name": "creds"}});
    spec[kind.as_str()] = sim::backend_block(kind, &running.url);
    serde_json::from_value(json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "PhoneSystem",
        "metadata": {"name": "office", "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

fn employee(n: u32) -> EmployeeSpec {
    serde_json::from_value(json!({
        "givenName": "Anna", "familyName": "Nowak",
        "email": format!("anna{n}@example.com"), "extension": format!("{}", 201 + n),
        "phoneSystems": [{"name": "office"}],
    }))
    .unwrap()
}

/// Three accounts made through the backend, as a pass would make them.
async fn seed(kind: BackendKind, system: &PhoneSystem, credentials: &Credentials) {
    let backend = backends::connect(&system.spec, credentials, Settings::default()).unwrap();
    for n in 0..3 {
        let e = employee(n);
        let m = &e.phone_systems[0];
        let desired = Desired {
            owner: Owner::new("default", format!("anna{n}")),
            rank: 0,
            extension: e.extension_on(m).to_owned(),
            attributes: backend.desired(&e, m).unwrap(),
            password_fingerprint: None,
        };
        let password = backend.generate_password();
        backends::create_once_unresolved(&backend, &desired, Some(&password))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

/// Probes a simulator of `kind` holding three accounts: the verdict is "manageable", and
/// nothing on the system changed.
async fn probe_three(kind: BackendKind) -> probe::Report {
    let running = start(kind).await;
    let system = phone_system(kind, &running);
    let credentials = Credentials::new(running.sim.credentials());
    seed(kind, &system, &credentials).await;
    let before = running.sim.dump();
    running.reset_stats();

    let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();

    assert!(report.manageable(), "{kind}: {report}");
    assert_eq!(report.accounts, 3, "{kind}: {report}");
    assert!(report.complete && report.unreadable.is_empty(), "{kind}");
    assert!(report.sample.is_some(), "{kind}: {report}");
    let backend = backends::connect(&system.spec, &credentials, Settings::default()).unwrap();
    assert_eq!(report.capabilities.update, backend.capabilities().update, "{kind}");
    assert_eq!(running.sim.dump(), before, "{kind}: the probe changed the system");
    for operation in running.stats().by_operation.keys() {
        // Logins and JSON-RPC reads are POSTs that write nothing (the dump above is the
        // proof); what must never be sent is a known write.
        let write = ["saveRecord", "deleteRecord", "addStaff", "POST /api/agents"]
            .iter()
            .any(|w| operation.contains(w))
            || (["POST", "PUT", "PATCH", "DELETE"].iter().any(|m| operation.starts_with(m))
                && operation.contains("employees")
                && !operation.contains("auth"));
        assert!(!write, "{kind}: the probe sent {operation}");
    }
    let text = report.to_string();
    assert!(text.contains("verdict     switchboard can manage this system"), "{kind}: {text}");
    report
}

#[tokio::test]
async fn mikopbx_is_probed_without_a_write() {
    let report = probe_three(BackendKind::Mikopbx).await;
    assert!(report.dialect.iter().any(|(k, v)| k == "API generation" && v.contains("v3")), "{report}");
    // Each generation of its server code, and the answer shapes it leaves open: the
    // probe names the generation (and how it listed), and writes nothing.
    let cases = [
        (json!({"generation": "2023.2"}), "legacy", "2023.2"),
        (json!({"generation": "2023.2", "integers": "string", "language": "ru"}), "legacy", "2023.2"),
        (json!({"generation": "2024.1", "integers": "string"}), "legacy", "2024.1"),
        (json!({"generation": "2024.1", "language": "ru"}), "legacy", "2024.1"),
        (json!({"generation": "2026.1", "v3_max_limit": 2, "language": "ru"}), "v3", "v3"),
        (json!({"generation": "2026.1", "v3_not_found": 404}), "v3", "v3"),
    ];
    for (patch, api, named) in cases {
        let running = start(BackendKind::Mikopbx).await;
        running.sim.set_dialect(patch.as_object().unwrap()).unwrap();
        let mut system = phone_system(BackendKind::Mikopbx, &running);
        if let Some(block) = system.spec.mikopbx.as_mut() {
            block.api_generation = serde_json::from_value(json!(api)).unwrap();
        }
        let credentials = Credentials::new(running.sim.credentials());
        seed(BackendKind::Mikopbx, &system, &credentials).await;
        let before = running.sim.dump();
        running.reset_stats();
        let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();
        assert!(report.manageable(), "{patch}: {report}");
        assert_eq!(report.accounts, 3, "{patch}: {report}");
        assert!(report.complete && report.unreadable.is_empty(), "{patch}: {report}");
        assert!(report.sample.is_some() && report.sample_error.is_none(), "{patch}: {report}");
        let generation = report.dialect.iter().find(|(k, _)| k == "API generation").map(|(_, v)| v.clone());
        assert!(generation.as_deref().is_some_and(|g| g.contains(named)), "{patch}: {report}");
        assert_eq!(running.sim.dump(), before, "{patch}: the probe changed the system");
        for operation in running.stats().by_operation.keys() {
            let write = ["saveRecord", "deleteRecord", "create", "patch", "update", "delete"]
                .iter()
                .any(|w| operation == w);
            assert!(!write, "{patch}: the probe sent {operation}");
        }
    }
}

#[tokio::test]
async fn thulium_is_probed_without_a_write() {
    let report = probe_three(BackendKind::Thulium).await;
    assert_eq!(said(&report, "list shape"), "{result: [...]}");
    assert_eq!(said(&report, "total announced"), "count 3");
    assert_eq!(said(&report, "number"), "integer");
}

/// What the probe says it recognised under `key`.
fn said<'a>(report: &'a probe::Report, key: &str) -> &'a str {
    report.dialect.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

/// [`probe_three`] on a simulator serving `dialect`: three accounts made through the
/// backend, the probe's verdict "manageable", and nothing written by the probe.
async fn probe_three_in_dialect(kind: BackendKind, dialect: serde_json::Value) -> probe::Report {
    let running = start(kind).await;
    running.sim.set_dialect(dialect.as_object().unwrap()).unwrap();
    let system = phone_system(kind, &running);
    let credentials = Credentials::new(running.sim.credentials());
    seed(kind, &system, &credentials).await;
    if kind == BackendKind::Ringostat {
        // Departments, so the probe has some to recognise.
        for staff in running.sim.dump().as_array().unwrap() {
            let patch = json!({"departments": ["Main"]});
            running.sim.tamper(&staff["staffId"].to_string(), patch.as_object().unwrap()).unwrap();
        }
    }
    let before = running.sim.dump();
    running.reset_stats();
    let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();
    assert!(report.manageable(), "{kind} {dialect}: {report}");
    assert_eq!(report.accounts, 3, "{kind} {dialect}: {report}");
    assert!(report.sample.is_some(), "{kind} {dialect}: {report}");
    assert_eq!(running.sim.dump(), before, "{kind} {dialect}: the probe changed the system");
    let writes = ["addStaff", "POST agents", "POST /a/v2", "POST /v2"];
    for operation in running.stats().by_operation.keys() {
        assert!(
            !writes.iter().any(|w| operation.contains(w)),
            "{kind} {dialect}: the probe sent {operation}"
        );
    }
    report
}

#[tokio::test]
async fn every_thulium_dialect_is_reported() {
    let cases = [
        (json!({"list_shape": "bare"}), "list shape", "bare array"),
        (json!({"number": "string"}), "number", "string"),
        (json!({"number": "mixed"}), "number", "integer and string"),
        (json!({"agent_id": "string"}), "agent_id", "string"),
        (json!({"active": "integer"}), "active", "integer"),
        (
            json!({"paging": "unpaged", "list_shape": "bare"}),
            "paging",
            "offset ignored, but the first page held every agent",
        ),
        (json!({"paging": "capped"}), "paging", "limit and offset honoured (pages of 100 asked)"),
    ];
    for (dialect, key, expected) in cases {
        let report = probe_three_in_dialect(BackendKind::Thulium, dialect.clone()).await;
        assert_eq!(said(&report, key), expected, "{dialect}: {report}");
    }
}

/// A Thulium that ignores `offset`, holding more agents than a page: the probe says the
/// listing is partial and that switchboard cannot manage the system.
#[tokio::test]
async fn a_thulium_that_ignores_the_offset_is_not_manageable() {
    let running = start(BackendKind::Thulium).await;
    running.sim.set_dialect(json!({"paging": "offset_ignored"}).as_object().unwrap()).unwrap();
    for i in 0..120 {
        running
            .sim
            .seed(&json!({"name": "Seed", "surname": "Agent", "login": format!("seed{i}"),
                          "password": "seedpass", "number": (5000 + i).to_string()}))
            .unwrap();
    }
    let system = phone_system(BackendKind::Thulium, &running);
    let credentials = Credentials::new(running.sim.credentials());
    let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();
    assert!(!report.manageable(), "{report}");
    assert_eq!(said(&report, "paging"), "offset ignored: only the first page can be read");
    assert!(report.to_string().contains("cut short"), "{report}");
}

#[tokio::test]
async fn apio_is_probed_without_a_write() {
    let report = probe_three(BackendKind::Apio).await;
    for (aspect, expected) in [
        ("list shape", "{users: [...]}"),
        ("user ids in the list", "with their domain"),
        ("userId in a user's record", "absent"),
        ("responseSizeLimit", "honoured"),
        ("search criteria", "query string"),
    ] {
        assert_aspect(&report, aspect, expected);
    }
    assert!(report.paging.starts_with("1 page of 501 asked: 3"), "{}", report.paging);
}

fn assert_aspect(report: &probe::Report, aspect: &str, expected: &str) {
    let found = said(report, aspect);
    assert!(found.contains(expected), "{aspect}: expected {expected:?}, the probe said {found:?}\n{report}");
}

/// Every APIO dialect the probe can see without writing is named in its report; the
/// ones it cannot see (how a server takes a password, answers a create or a duplicate)
/// still leave the system manageable; and no dialect draws a write out of it.
#[tokio::test]
async fn apio_dialects_are_each_reported_without_a_write() {
    let cases = [
        (json!({"list_shape": "bare"}), "list shape", "bare array"),
        (json!({"detail_user_id": true}), "userId in a user's record", "present"),
        (json!({"list_user_id_domain": false}), "user ids in the list", "without the system default domain"),
        (json!({"size_limit": "ignored"}), "responseSizeLimit", "ignored"),
        (json!({"criteria": "body"}), "search criteria", "JSON body"),
        (json!({"criteria": "query"}), "search criteria", "query string"),
        (json!({"no_slash": "redirect"}), "list shape", "{users: [...]}"),
        (json!({"department": "name"}), "list shape", "{users: [...]}"),
        (
            json!({"password_change": "old_new", "create_answer": "empty"}),
            "userId in a user's record",
            "absent",
        ),
        (json!({"duplicate_status": 400, "unknown_fields": "ignore"}), "search criteria", "query string"),
    ];
    for (dialect, aspect, expected) in cases {
        let sim = sim::default_simulator(BackendKind::Apio);
        sim.set_dialect(dialect.as_object().unwrap()).unwrap();
        let running = sim::spawn(sim, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let system = phone_system(BackendKind::Apio, &running);
        let credentials = Credentials::new(running.sim.credentials());
        seed(BackendKind::Apio, &system, &credentials).await;
        let before = running.sim.dump();
        running.reset_stats();

        let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();

        assert!(report.manageable(), "{dialect}: {report}");
        assert_eq!(report.accounts, 3, "{dialect}: {report}");
        assert_aspect(&report, aspect, expected);
        assert_eq!(running.sim.dump(), before, "{dialect}: the probe changed the system");
        let ops: Vec<String> = running.stats().by_operation.keys().cloned().collect();
        for write in ["createUser", "updateUser", "deleteUser"] {
            assert!(!ops.iter().any(|op| op == write), "{dialect}: the probe sent {write}: {ops:?}");
        }
    }
}

/// A record the probe cannot read is named with its field, and makes the verdict "no".
#[tokio::test]
async fn an_unreadable_apio_record_is_named_by_the_probe() {
    let running = start(BackendKind::Apio).await;
    let system = phone_system(BackendKind::Apio, &running);
    let credentials = Credentials::new(running.sim.credentials());
    seed(BackendKind::Apio, &system, &credentials).await;
    let victim = running.sim.dump()[1]["userId"].as_str().unwrap().to_owned();
    let patch = json!({"timeZone": {"zone": "Europe/Warsaw"}});
    running.sim.tamper(&victim, patch.as_object().unwrap()).unwrap();

    let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();

    assert!(!report.manageable(), "{report}");
    assert_eq!(report.unreadable.len(), 1, "{report}");
    assert_eq!(report.unreadable[0].id.as_deref(), Some(victim.as_str()));
    assert!(report.unreadable[0].problem.starts_with("timeZone"), "{report}");
    assert!(report.to_string().contains("unreadable  record"), "{report}");
}

#[tokio::test]
async fn telphin_is_probed_without_a_write() {
    let report = probe_three(BackendKind::Telphin).await;
    let text = report.to_string();
    // Telphin announces its hourly quota on every answer: the probe prints it.
    let quota = report.quota.as_ref().expect("the quota headers were read");
    assert_eq!(quota.limit, Some(1000));
    assert!(quota.remaining < 1000 && quota.resets_in_seconds.is_some(), "{text}");
    assert!(
        text.contains(&format!("quota       {} of 1000 requests left, resets in", quota.remaining)),
        "{text}"
    );
    assert!(text.contains("dialect     extension name filter: exact"), "{text}");
    assert!(text.contains("dialect     user list shape: bare array"), "{text}");
}

/// Each Telphin dialect, probed over 60 accounts: named in the report, and not one write.
#[tokio::test]
async fn telphin_dialects_are_named_by_the_probe() {
    use switchboard::sim::{Simulator, telphin::TelphinSim};

    for (patch, line) in [
        (json!({}), "page size: not tested: the list fits in one page of 100"),
        (json!({"per_page": "capped"}), "page size: capped at 20 (100 asked)"),
        (json!({"per_page": "ignored"}), "page size: capped at 50 (100 asked)"),
        (json!({"per_page": "refused"}), "per_page: refused by the server; dropped"),
        (json!({"name_filter": "relative"}), "extension name filter: relative"),
        (json!({"list_shape": "wrapped"}), "user list shape: {result: [...]}"),
        (json!({"unset_extra_params": "text_null"}), "extra_params: 60 user(s) hold the text \"null\""),
        (json!({"gzip": "required", "error_statuses": true}), "extension name filter: exact"),
    ] {
        let sim = TelphinSim::new(Default::default());
        let running = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let serde_json::Value::Object(dialect) = patch.clone() else { unreachable!() };
        sim.set_dialect(&dialect).unwrap();
        for i in 0..60 {
            sim.seed(&json!({"name": "Anna", "login": format!("anna{i}"), "password": "secret-1",
                             "email": format!("anna{i}@example.com"), "extension": format!("{}", 300 + i)}))
                .unwrap();
        }
        let system = phone_system(BackendKind::Telphin, &running);
        let credentials = Credentials::new(running.sim.credentials());
        let before = running.sim.dump();
        let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();
        let text = report.to_string();
        assert!(report.manageable(), "{patch}: {text}");
        assert_eq!(report.accounts, 60, "{patch}: {text}");
        assert!(text.contains(&format!("dialect     {line}")), "{patch}: {text}");
        assert!(text.contains("quota       "), "{patch}: {text}");
        assert_eq!(running.sim.dump(), before, "{patch}: the probe changed the system");
        for operation in running.stats().by_operation.keys() {
            assert!(
                operation == "token" || operation.starts_with("list") || operation.starts_with("get"),
                "{patch}: the probe sent {operation}"
            );
        }
    }
}

#[tokio::test]
async fn ringostat_is_probed_without_a_write() {
    let report = probe_three(BackendKind::Ringostat).await;
    assert_eq!(said(&report, "list shape"), "object keyed by id");
    assert_eq!(said(&report, "access"), "numeric string");
}

#[tokio::test]
async fn every_ringostat_dialect_is_reported() {
    let cases = [
        (json!({"result": "array"}), "list shape", "bare array"),
        (json!({}), "departments", "objects with a name"),
        (json!({"departments": "names"}), "departments", "names"),
        (json!({"departments": "ids"}), "departments", "ids: departments are not compared"),
        (json!({"access": "number"}), "access", "number"),
        (json!({"access": "word"}), "access", "word"),
        (json!({"fio": "absent"}), "fio", "missing on 3 of 3: names are not compared"),
        (
            json!({"add_path": "v2", "project_header": "required", "error_codes": "zero"}),
            "access",
            "numeric string",
        ),
    ];
    for (dialect, key, expected) in cases {
        let report = probe_three_in_dialect(BackendKind::Ringostat, dialect.clone()).await;
        assert_eq!(said(&report, key), expected, "{dialect}: {report}");
    }
}

/// An empty project answers the error "User does not exist" (its code unpublished): the
/// probe reads it as no employees, by its code's class, and says so.
#[tokio::test]
async fn an_empty_ringostat_project_is_manageable_whatever_its_error_code() {
    for codes in ["http", "server", "zero"] {
        let running = start(BackendKind::Ringostat).await;
        running.sim.set_dialect(json!({"error_codes": codes}).as_object().unwrap()).unwrap();
        let system = phone_system(BackendKind::Ringostat, &running);
        let credentials = Credentials::new(running.sim.credentials());
        let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();
        assert!(report.manageable() && report.accounts == 0, "{codes}: {report}");
        assert!(said(&report, "empty list").starts_with("an error object, code"), "{codes}: {report}");
    }
}

#[tokio::test]
async fn a_system_that_cannot_be_reached_is_not_manageable() {
    let running = start(BackendKind::Thulium).await;
    let system = phone_system(BackendKind::Thulium, &running);
    let credentials = Credentials::new(running.sim.credentials());
    running.shutdown().await;
    let settings = Settings { attempts: 1, ..Settings::default() };
    let report = probe::run(&system, &credentials, settings).await.unwrap();
    assert!(!report.manageable());
    assert!(report.error.is_some());
    assert!(report.to_string().contains("cannot manage"), "{report}");
}

#[tokio::test]
async fn refused_credentials_are_named_and_not_printed() {
    let running = start(BackendKind::Thulium).await;
    let system = phone_system(BackendKind::Thulium, &running);
    let credentials = Credentials::new([
        ("username".to_owned(), "api".to_owned()),
        ("password".to_owned(), "Wrong-Secret-123".to_owned()),
    ]);
    let report = probe::run(&system, &credentials, Settings::default()).await.unwrap();
    assert!(!report.manageable());
    let text = report.to_string();
    assert!(!text.contains("Wrong-Secret-123"), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
}

/// The command itself: a PhoneSystem file with its Secret, exit 0 and the verdict.
#[tokio::test]
async fn the_command_reads_a_manifest_file_and_exits_by_its_verdict() {
    let running = start(BackendKind::Thulium).await;
    let dir = std::env::temp_dir().join(format!("switchboard-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = running.sim.credentials();
    let file = dir.join("pbx.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: switchboard.dev/v1alpha1\nkind: PhoneSystem\nmetadata: {{name: office, namespace: default}}\n\
             spec:\n  thulium: {{url: \"{}\"}}\n  credentialsSecretRef: {{name: creds}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: default}}\n\
             stringData: {{username: \"{}\", password: \"{}\"}}\n",
            running.url, creds["username"], creds["password"]
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let run = |args: Vec<String>| {
        let bin = bin.to_owned();
        tokio::task::spawn_blocking(move || std::process::Command::new(bin).args(args).output().unwrap())
    };
    let out = run(vec!["probe".into(), "--system".into(), file.display().to_string()]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("switchboard can manage this system"), "{text}");
    assert!(!text.contains(&creds["password"]), "{text}");

    let json =
        run(vec!["probe".into(), "--system".into(), file.display().to_string(), "-o".into(), "json".into()])
            .await
            .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["backend"], "thulium");
    assert_eq!(report["problems"], json!([]));

    running.shutdown().await;
    let down = run(vec!["probe".into(), "--system".into(), file.display().to_string()]).await.unwrap();
    assert_eq!(down.status.code(), Some(1), "{}", String::from_utf8_lossy(&down.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the probe says switchboard reads is what the listing let it compare: departments
/// listed as bare ids are not among them.
#[tokio::test]
async fn the_probe_reads_only_what_a_ringostat_listing_shows() {
    let report = probe_three_in_dialect(BackendKind::Ringostat, json!({"departments": "ids"})).await;
    assert!(!report.capabilities.readable.iter().any(|f| f == "departments"), "{report}");
    let report = probe_three_in_dialect(BackendKind::Ringostat, json!({"departments": "names"})).await;
    assert!(report.capabilities.readable.iter().any(|f| f == "departments"), "{report}");
}
