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
    probe_three(BackendKind::Thulium).await;
}

#[tokio::test]
async fn apio_is_probed_without_a_write() {
    probe_three(BackendKind::Apio).await;
}

#[tokio::test]
async fn telphin_is_probed_without_a_write() {
    probe_three(BackendKind::Telphin).await;
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
