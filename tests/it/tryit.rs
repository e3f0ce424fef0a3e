//! "Try it on a cluster": `switchboard sim --print-manifests` points the examples at the
//! simulators `switchboard sim` serves, `deploy/try/` runs the simulators in the cluster,
//! and with either the example Employees turn Ready under the operator.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{ResourceExt, api::PostParams};
use serde_json::Value;
use switchboard::{
    api::{BackendKind, Employee, PhoneSystem},
    sim,
    tryit::{self, Served},
};

use crate::{
    controller::{World, eventually, ready},
    deploy::kustomize,
    gitops::{argo_health, flux_health},
};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn switchboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().expect("run switchboard")
}

fn parse(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Each PhoneSystem passes the CRD's schema and CEL rules, names a Secret printed with
/// it, and that Secret has the keys its backend needs.
fn check_manifests(docs: &[Value]) -> Vec<(BackendKind, String)> {
    let mut urls = Vec::new();
    for system in docs.iter().filter(|d| d["kind"] == "PhoneSystem") {
        let refusals = switchboard::api::validate::refusals("PhoneSystem", system);
        assert!(refusals.is_empty(), "{refusals:?}: {system}");
        let parsed: PhoneSystem = serde_json::from_value(system.clone()).expect("a PhoneSystem");
        let backend = parsed.spec.backend().expect("one backend block");
        let secret_name = system["spec"]["credentialsSecretRef"]["name"].as_str().expect("a Secret named");
        let secret = docs
            .iter()
            .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret_name)
            .unwrap_or_else(|| panic!("the Secret {secret_name} is printed"));
        assert_eq!(secret["metadata"]["namespace"], system["metadata"]["namespace"]);
        let data: std::collections::BTreeMap<String, String> = secret["stringData"]
            .as_object()
            .expect("stringData")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let credentials = switchboard::backends::Credentials::new(data);
        switchboard::backends::connect(&parsed.spec, &credentials, Default::default())
            .unwrap_or_else(|e| panic!("{}: {e}", backend.kind()));
        urls.push((backend.kind(), backend.url().to_owned()));
    }
    urls
}

#[test]
fn printed_manifests_pass_the_schema_and_point_where_sim_serves() {
    let out = switchboard(&["sim", "--print-manifests", "--port", "18000", "--namespace", "trial"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = parse(&String::from_utf8(out.stdout).unwrap());
    assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "trial"));
    let urls = check_manifests(&docs);
    let expected: Vec<(BackendKind, String)> =
        BackendKind::ALL.iter().zip(18000..).map(|(k, p)| (*k, format!("http://127.0.0.1:{p}"))).collect();
    assert_eq!(urls, expected, "one PhoneSystem per system, on consecutive ports in the order served");
    let names: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "PhoneSystem")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["office-pbx", "contact-center", "broadworks", "cloud-pbx", "call-tracking"],
        "the names examples/employees/ list"
    );

    // Two systems, through a Service, a legacy MikoPBX.
    let out = switchboard(&[
        "sim",
        "thulium",
        "mikopbx",
        "--dialect",
        "mikopbx.generation=2023.2",
        "--print-manifests",
        "--port",
        "9000",
        "--base-url",
        "http://sim.trial.svc",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = parse(&String::from_utf8(out.stdout).unwrap());
    let urls = check_manifests(&docs);
    assert_eq!(
        urls,
        [
            (BackendKind::Thulium, "http://sim.trial.svc:9000".to_owned()),
            (BackendKind::Mikopbx, "http://sim.trial.svc:9001".to_owned())
        ]
    );
    let miko = docs.iter().find(|d| d["kind"] == "PhoneSystem" && d["spec"]["mikopbx"].is_object()).unwrap();
    assert_eq!(miko["spec"]["mikopbx"]["apiGeneration"], "legacy", "2023.2 serves only the legacy API");
    assert!(docs.iter().all(|d| d["metadata"].get("namespace").is_none()), "no --namespace: kubectl's");

    // Port 0 serves on free ports nobody can know beforehand.
    let out = switchboard(&["sim", "--print-manifests"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--print-manifests needs --port"));
    let out = switchboard(&["sim", "--print-manifests", "--port", "18000", "--base-url", "http://sim:80"]);
    assert!(!out.status.success(), "a base URL with its own port would hide the systems' ports");
}

/// Five consecutive ports free on loopback right now.
fn free_ports() -> u16 {
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let first = probe.local_addr().expect("address").port();
        drop(probe);
        if first > 65530 {
            continue;
        }
        let all: Vec<_> = (first..first + 5).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
        if all.iter().all(Result::is_ok) {
            return first;
        }
    }
    panic!("no five consecutive free ports");
}

#[test]
fn print_manifests_names_the_urls_sim_serves_with_the_same_port() {
    let port = free_ports().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sim", "--port", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchboard sim");
    let stdout = child.stdout.take().expect("its stdout");
    let mut served = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if line.starts_with("Control:") {
            break;
        }
        if let Some((kind, url)) = line.split_once(' ')
            && !kind.is_empty()
        {
            served.push((kind.to_owned(), url.trim().to_owned()));
        }
    }
    child.kill().expect("stop the simulators");
    let _ = child.wait();
    let out = switchboard(&["sim", "--print-manifests", "--port", &port]);
    let printed: Vec<(String, String)> = check_manifests(&parse(&String::from_utf8(out.stdout).unwrap()))
        .into_iter()
        .map(|(kind, url)| (kind.to_string(), url))
        .collect();
    assert_eq!(printed, served, "what --print-manifests points at is what sim served");
}

#[test]
fn the_try_overlay_is_what_print_manifests_prints() {
    let on_disk = std::fs::read_to_string(root().join("deploy/try/phone-systems.yaml")).unwrap();
    let out = switchboard(&[
        "sim",
        "--port",
        "18000",
        "--print-manifests",
        "--namespace",
        "switchboard-try",
        "--base-url",
        "http://switchboard-sim.switchboard-system.svc",
    ]);
    assert!(
        out.stdout == on_disk.as_bytes(),
        "deploy/try/phone-systems.yaml is stale: regenerate it with the command in deploy/try/kustomization.yaml"
    );
}

#[test]
fn the_try_overlay_runs_the_simulators_behind_a_service_the_phone_systems_use() {
    let docs = kustomize("deploy/try");
    let deployment = |name: &str| {
        docs.iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("Deployment {name}"))
    };
    // The operator as deploy/ installs it.
    let operator = deployment("switchboard");
    assert_eq!(operator["metadata"]["namespace"], "switchboard-system");
    assert!(docs.iter().any(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "switchboard"));

    let sim = deployment("switchboard-sim");
    assert_eq!(sim["metadata"]["namespace"], "switchboard-system");
    let pod = &sim["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], operator["spec"]["template"]["spec"]["containers"][0]["image"]);
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(args, ["sim", "--port", "18000", "--bind", "0.0.0.0"]);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let container_port = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].clone())
    };

    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "switchboard-sim")
        .expect("the simulators' Service");
    assert_eq!(service["spec"]["selector"], sim["spec"]["selector"]["matchLabels"]);
    let host = format!("switchboard-sim.{}.svc", service["metadata"]["namespace"].as_str().unwrap());

    let systems: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "PhoneSystem").collect();
    assert_eq!(systems.len(), 5);
    for (i, kind) in BackendKind::ALL.iter().enumerate() {
        let system = systems.iter().find(|s| s["spec"][kind.as_str()].is_object()).expect("a PhoneSystem");
        assert_eq!(system["metadata"]["namespace"], "switchboard-try");
        // The Service port named after the system, onto the container port `sim --port
        // 18000` serves it on.
        let port = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == kind.as_str())
            .unwrap_or_else(|| panic!("a Service port for {kind}"));
        assert_eq!(container_port(kind.as_str()), Some(Value::from(18000 + i)), "{kind}");
        assert_eq!(port["targetPort"], kind.as_str());
        assert_eq!(system["spec"][kind.as_str()]["url"], format!("http://{host}:{}", port["port"]), "{kind}");
    }
    assert!(docs.iter().any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == "switchboard-try"));
}

/// The README's path with the operator on the laptop: the simulators, the printed
/// manifests and `examples/employees/`, and every Employee turns Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_turn_ready_on_the_printed_manifests() {
    let world = World::new("tryit").await;
    let mut running = Vec::new();
    let mut served = Vec::new();
    for kind in BackendKind::ALL {
        let server = sim::spawn(sim::default_simulator(kind), SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a simulator");
        served.push(Served {
            kind,
            url: server.url.clone(),
            credentials: server.sim.credentials(),
            legacy: false,
        });
        running.push(server);
    }
    let yaml = tryit::manifests(&served, Some(&world.ns), "switchboard sim").expect("manifests");
    for doc in parse(&yaml) {
        match doc["kind"].as_str() {
            Some("Secret") => {
                let secret: Secret = serde_json::from_value(doc).expect("a Secret");
                world.api::<Secret>().create(&PostParams::default(), &secret).await.expect("create");
            }
            Some("PhoneSystem") => {
                let system: PhoneSystem = serde_json::from_value(doc).expect("a PhoneSystem");
                world.api::<PhoneSystem>().create(&PostParams::default(), &system).await.expect("create");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let examples = switchboard::demo::examples().expect("the examples");
    assert_eq!(examples.employees.len(), 12);
    for e in &examples.employees {
        let mut e = e.clone();
        e.metadata.namespace = Some(world.ns.clone());
        world.create_employee(&e).await;
    }
    let controller = world.start_controller();
    eventually("every example Employee Ready", || async {
        let list = world.api::<Employee>().list(&Default::default()).await.map_err(|e| e.to_string())?;
        if list.items.len() != 12 {
            return Err(format!("{} Employees", list.items.len()));
        }
        list.items.iter().try_for_each(ready)
    })
    .await;

    // docs/gitops.md: Argo CD and Flux take them for healthy.
    let employees = world.api::<Employee>().list(&Default::default()).await.expect("list").items;
    for e in &employees {
        let object = serde_json::to_value(e).expect("JSON");
        assert_eq!(flux_health("Employee", &object), Some("current"), "{}", e.name_any());
        if let Some((status, message)) = argo_health("Employee", &object) {
            assert_eq!(status, "Healthy", "{}: {message}", e.name_any());
        }
    }
    eventually("every PhoneSystem healthy to Argo CD and Flux", || async {
        let systems =
            world.api::<PhoneSystem>().list(&Default::default()).await.map_err(|e| e.to_string())?;
        for s in &systems.items {
            let object = serde_json::to_value(s).map_err(|e| e.to_string())?;
            let flux = flux_health("PhoneSystem", &object);
            let argo = argo_health("PhoneSystem", &object);
            if flux != Some("current") || argo.as_ref().is_some_and(|(status, _)| status != "Healthy") {
                return Err(format!("{}: Flux {flux:?}, Argo CD {argo:?}", s.name_any()));
            }
        }
        Ok(())
    })
    .await;

    // docs/gitops.md: `plan --claims` over the repository judges as the operator: nothing
    // to do; without the claims every account looks unowned.
    let dir = std::env::temp_dir().join(format!("switchboard-tryit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("employees")).expect("a folder");
    std::fs::write(dir.join("phone-systems.yaml"), &yaml).expect("write");
    for e in &examples.employees {
        let mut e = e.clone();
        e.metadata.namespace = Some(world.ns.clone());
        let text = serde_saphyr::to_string(&e).expect("YAML");
        std::fs::write(dir.join("employees").join(format!("{}.yaml", e.name_any())), text).expect("write");
    }
    let export =
        serde_saphyr::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": employees}))
            .expect("YAML");
    let claims = dir.with_extension("claims.yaml");
    std::fs::write(&claims, export).expect("write");
    let state = switchboard::state::State::from_cluster_export(&claims).expect("the export");
    let plan = async |state: &switchboard::state::State| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let env = Default::default();
        let format = switchboard::cli::Format::Text;
        let verdict = switchboard::cli::run_with(&dir, state, false, format, &env, &mut out, &mut err)
            .await
            .expect("plan");
        (verdict, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    };
    let (verdict, text, err) = plan(&state).await;
    assert_eq!(verdict, switchboard::cli::Verdict::InLine, "{text}{err}");
    assert_eq!(text.matches(": in line (").count(), 5, "{text}");
    let (verdict, out, _) = plan(&switchboard::state::State::in_memory()).await;
    assert_ne!(verdict, switchboard::cli::Verdict::InLine, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&claims);
    world.finish(controller).await;
}
