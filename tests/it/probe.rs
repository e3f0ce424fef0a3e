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
    probe_three(BackendKind::Mikopbx).await;
}

#[tokio::test]
async fn thulium_is_probed_without_a_write() {
    probe_three(BackendKind::Thulium).await;
}

#[tokio::test]
async fn apio_is_probed_without_a_write() {
    probe_three(BackendKind::Apio).await;
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
    probe_three(BackendKind::Ringostat).await;
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
