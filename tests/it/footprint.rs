//! The operator's footprint on the API server and in memory (issue 15): one watch per
//! kind, Secrets watched as metadata and read only when referred to, at most 5 requests
//! per Employee created, at most 10 passes per PhoneSystem for 300 Employees applied in
//! batches of 100, every edit on the PBX within 10 s against a 5-minute resync, and an
//! operator process whose memory does not grow with other people's Secrets.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::ObjectMeta;
use serde_json::json;
use switchboard::{
    api::{BackendKind, Employee, PhoneSystem},
    footprint,
    telemetry::Metrics,
};

use crate::{
    controller::{CONTROLLER, World, employee, eventually, ready},
    support::apiserver::{FakeApiServer, RequestRecord},
};

/// What a request is about, for the counts: `verb resource[/subresource]`.
fn what(r: &RequestRecord) -> String {
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    match (&r.patch_type, &r.field_manager) {
        (Some(patch), Some(manager)) => format!("{} {resource} ({patch}, {manager})", r.verb),
        (Some(patch), None) => format!("{} {resource} ({patch})", r.verb),
        _ => format!("{} {resource}", r.verb),
    }
}

/// The resources the issue counts per Employee: Employees and their status, Secrets,
/// Events.
fn counted(r: &RequestRecord) -> bool {
    matches!(r.resource.as_str(), "employees.switchboard.dev" | "secrets" | "events" | "events.events.k8s.io")
}

fn metric(metrics: &Metrics, family: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(family) && labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The open watches of `K` that `client` holds: (count, all metadata-only).
fn watches_of<K: kube::Resource<DynamicType = ()>>(
    fake: &FakeApiServer,
    client: Option<&str>,
) -> (usize, bool) {
    let open: Vec<bool> = fake
        .open_watches_of::<K>()
        .into_iter()
        .filter(|(c, _)| c.as_deref() == client)
        .map(|(_, meta)| meta)
        .collect();
    (open.len(), open.iter().all(|m| *m))
}

fn secret(ns: &str, name: &str, data: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            // `kubectl apply` keeps a copy of the whole Secret here.
            annotations: Some(
                [(
                    switchboard::controller::LAST_APPLIED.to_owned(),
                    format!("{{\"data\":\"{}\"}}", data.len()),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        data: Some([("token".to_owned(), ByteString(data))].into()),
        ..Secret::default()
    }
}

/// The operator opens exactly one watch per kind, Secrets as metadata only; it reads the
/// data of the Secrets it is referred to and of no other, and lets go of a password no
/// Employee refers to any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_per_kind_and_only_referred_secrets_are_read() {
    let mut world = World::new("watches").await;
    if world.fake.is_none() {
        eprintln!("footprint: watch counts come from the fake API server; skipped on a cluster");
        return;
    }
    world.add_pbx("office-pbx", BackendKind::Apio, json!({})).await;
    let fake = world.fake.as_ref().expect("a fake API server");
    world.create_secret("ann-password", [("password".to_owned(), "Ann-Passw0rd-1".to_owned())].into()).await;
    for i in 0..20 {
        fake.insert(&secret("elsewhere", &format!("helm-release-{i}"), vec![b'x'; 10_000]));
    }
    let mut ann = employee(&world.ns, "ann", "301", &["office-pbx"]);
    ann.spec.password_secret_ref = Some(switchboard::api::employee::SecretKeyRef {
        name: "ann-password".into(),
        key: "password".into(),
    });
    world.create_employee(&ann).await;
    world.create_employee(&employee(&world.ns, "bob", "302", &["office-pbx"])).await;
    let metrics = Arc::new(Metrics::default());
    let controller = world.start_controller_as(CONTROLLER, |c| {
        c.namespace = None;
        c.metrics = metrics.clone();
    });
    world.ready("ann").await;
    world.ready("bob").await;
    assert_eq!(
        world.pbx("office-pbx").by_email("ann@example.com").map(|a| a["password"].clone()),
        Some(json!("Ann-Passw0rd-1")),
        "the referred password was read and used"
    );

    let me = Some(CONTROLLER);
    assert_eq!(watches_of::<Employee>(fake, me).0, 1, "one watch of Employees");
    assert_eq!(watches_of::<PhoneSystem>(fake, me).0, 1, "one watch of PhoneSystems");
    assert_eq!(watches_of::<Secret>(fake, me), (1, true), "one watch of Secrets, metadata only");
    let secret_reads: Vec<RequestRecord> =
        fake.requests_of(CONTROLLER).into_iter().filter(|r| r.resource == "secrets").collect();
    let data_lists: Vec<&RequestRecord> =
        secret_reads.iter().filter(|r| matches!(r.verb, "list" | "watch") && !r.metadata_only).collect();
    assert!(data_lists.is_empty(), "Secrets listed or watched with their data: {data_lists:?}");
    let got: BTreeSet<&str> =
        secret_reads.iter().filter(|r| r.verb == "get").filter_map(|r| r.name.as_deref()).collect();
    assert_eq!(
        got,
        BTreeSet::from(["ann-password", "office-pbx-credentials"]),
        "only referred Secrets are read"
    );
    assert_eq!(metric(&metrics, "switchboard_secrets_held", &[]), 2.0, "credentials and one password held");

    // Nobody refers to ann's password any more: it is let go at the next pass.
    world.api::<Employee>().delete("ann", &Default::default()).await.expect("delete ann");
    world.gone("ann").await;
    eventually("ann's password let go", || async {
        match metric(&metrics, "switchboard_secrets_held", &[]) {
            1.0 => Ok(()),
            n => Err(format!("{n} held")),
        }
    })
    .await;
    world.finish(controller).await;
}

/// `kubectl apply` of 300 Employees in batches of 100: at most 5 requests per Employee
/// (reads and writes of Employees, their status, Secrets and Events) and at most 10
/// passes of the PhoneSystem, with the operator's default debounce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_employees_in_batches_of_a_hundred_cost_at_most_five_requests_each() {
    let mut world = World::new("batches").await;
    world.add_pbx("office-pbx", BackendKind::Mikopbx, json!({"resyncInterval": "5m"})).await;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(switchboard::telemetry::Health::default());
    let controller = world.start_controller_as(CONTROLLER, |c| {
        c.debounce = switchboard::controller::Config::default().debounce;
        c.metrics = metrics.clone();
        c.health = health.clone();
    });
    // The operator was running before the apply: its first pass (the backend built, the
    // credentials read) is not the apply's cost.
    eventually("the operator's first pass", || async {
        let passes = metric(&metrics, "switchboard_syncs_total", &[("phone_system", "office-pbx")]);
        if health.is_ready() && passes >= 1.0 { Ok(()) } else { Err(format!("{passes} passes")) }
    })
    .await;
    let passes_before = metric(&metrics, "switchboard_syncs_total", &[("phone_system", "office-pbx")]);
    if let Some(fake) = &world.fake {
        fake.clear_requests();
    }
    let started = Instant::now();
    for batch in 0..3 {
        for i in 0..100 {
            let n = batch * 100 + i;
            world
                .create_employee(&employee(
                    &world.ns,
                    &format!("p-{n:03}"),
                    &(1000 + n).to_string(),
                    &["office-pbx"],
                ))
                .await;
        }
        // kubectl's next batch comes after this one's round trips.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    eventually("300 Employees Ready", || async {
        let list = world.api::<Employee>().list(&Default::default()).await.map_err(|e| e.to_string())?;
        let not_ready: Vec<_> = list.items.iter().filter(|e| ready(e).is_err()).collect();
        if list.items.len() == 300 && not_ready.is_empty() {
            Ok(())
        } else {
            Err(format!("{} not Ready", not_ready.len()))
        }
    })
    .await;
    let converged = started.elapsed();
    assert_eq!(world.pbx("office-pbx").accounts().len(), 300);
    // Whatever the conditions and events still had to write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let passes =
        metric(&metrics, "switchboard_syncs_total", &[("phone_system", "office-pbx")]) - passes_before;
    eprintln!("footprint: 300 Employees in 3 batches Ready in {converged:?}, {passes} passes");
    assert!(passes <= 10.0, "{passes} passes of office-pbx");
    let Some(fake) = &world.fake else {
        eprintln!("footprint: requests are counted on the fake API server only");
        world.finish(controller).await;
        return;
    };
    let requests = fake.requests_of(CONTROLLER);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *by_kind.entry(what(r)).or_default() += 1;
    }
    let per_employee = requests.iter().filter(|r| counted(r)).count() as f64 / 300.0;
    eprintln!("footprint: {per_employee:.3} requests per Employee created: {by_kind:#?}");
    assert!(per_employee <= 5.0, "{per_employee:.3} requests per Employee: {by_kind:#?}");
    let reads = requests.iter().filter(|r| counted(r) && r.verb == "get").count();
    assert_eq!(reads, 0, "nothing is read before it is written: {by_kind:#?}");
    world.finish(controller).await;
}

/// 20 Employees edited one after another, each as soon as the last edit landed, with a
/// resync of 5 minutes: every edit reaches the PBX within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edit_reaches_the_pbx_within_ten_seconds() {
    let mut world = World::new("edits").await;
    world.add_pbx("office-pbx", BackendKind::Mikopbx, json!({"resyncInterval": "5m"})).await;
    for i in 0..20 {
        world
            .create_employee(&employee(
                &world.ns,
                &format!("e-{i:02}"),
                &(500 + i).to_string(),
                &["office-pbx"],
            ))
            .await;
    }
    let controller = world.start_controller_as(CONTROLLER, |c| {
        c.debounce = switchboard::controller::Config::default().debounce
    });
    for i in 0..20 {
        world.ready(&format!("e-{i:02}")).await;
    }
    let pbx = world.pbx("office-pbx");
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let name = format!("e-{i:02}");
        let email = format!("{name}.edited@example.com");
        let started = Instant::now();
        world.patch_employee(&name, json!({"spec": {"email": email}})).await;
        loop {
            if pbx.by_email(&email).is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "edit {i} of {name} not on the PBX in 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("footprint: 20 edits, the slowest reached the PBX in {slowest:?}");
    world.finish(controller).await;
}

/// The real operator process, `switchboard run`, on the fake API server: its resident set
/// once 50 Employees converged, and again after 100 Secrets of 200 KiB (20 MiB of data)
/// appeared in another namespace; caching their data would add at least 20 MiB. Its
/// requests are counted too: one watch per kind, Secrets as metadata, none of the
/// unrelated Secrets read, at most 5 requests per Employee.
///
/// `SWITCHBOARD_FOOTPRINT_{EMPLOYEES,BATCHES,SECRETS,PROGRAM}` change the sizes and the
/// executable, to measure (another build of) the operator at scale on this fake; the
/// bounds are asserted at every size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_keeps_no_unrelated_secret_and_few_requests() {
    let (_client, fake) = crate::support::apiserver::client_for_tests().await;
    let Some(fake) = fake else {
        eprintln!("footprint: run `switchboard bench --operator` against a cluster instead; skipped");
        return;
    };
    let knob = |name: &str, default: usize| {
        std::env::var(format!("SWITCHBOARD_FOOTPRINT_{name}"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let kubeconfig = std::env::temp_dir().join(format!("switchboard-footprint-{}.yaml", std::process::id()));
    std::fs::write(&kubeconfig, fake_kubeconfig(&fake)).expect("write a kubeconfig");
    let config = footprint::Config {
        employees: knob("EMPLOYEES", 50),
        batches: knob("BATCHES", 1),
        unrelated_secrets: knob("SECRETS", 100),
        secret_kib: 200,
        program: std::env::var_os("SWITCHBOARD_FOOTPRINT_PROGRAM")
            .map_or_else(|| env!("CARGO_BIN_EXE_switchboard").into(), Into::into),
        kubeconfig: Some(kubeconfig.clone()),
        deadline: Duration::from_secs(600),
        settle: Duration::from_secs(4),
    };
    let n = config.employees as f64;
    let mut out = Vec::new();
    let mut bench = footprint::Bench::start(fake.client_as("bench"), &config, &mut out).await.expect("start");
    // What the operator did before the apply is not the apply's cost.
    fake.clear_requests();
    let converged = bench.converge(&mut out).await;
    let operator: Vec<RequestRecord> = fake.requests().into_iter().filter(|r| r.client.is_none()).collect();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in &operator {
        *by_kind.entry(what(r)).or_default() += 1;
    }
    let open = |watches: Vec<(Option<String>, bool)>| watches.iter().filter(|(c, _)| c.is_none()).count();
    let watches = (
        open(fake.open_watches_of::<Employee>()),
        open(fake.open_watches_of::<PhoneSystem>()),
        open(fake.open_watches_of::<Secret>()),
    );
    let measured = match converged {
        Ok(_) => bench.add_unrelated_secrets(&mut out).await,
        Err(e) => Err(e),
    };
    let operator_reads: Vec<RequestRecord> =
        fake.requests().into_iter().filter(|r| r.client.is_none()).collect();
    // Before the clean-up, which at 10,000 Employees takes longer than the measurement.
    let text = String::from_utf8_lossy(&out).into_owned();
    eprintln!("{text}");
    bench.clean_up().await.expect("clean up");
    let _ = std::fs::remove_file(&kubeconfig);
    let report = measured.expect("the operator bench runs");
    let per_employee = operator.iter().filter(|r| counted(r)).count() as f64 / n;
    eprintln!(
        "footprint: the operator process: {per_employee:.3} requests per Employee, open watches (Employees, PhoneSystems, Secrets) = {watches:?}: {by_kind:#?}"
    );
    assert!(report.rss_kib > 0, "{text}");
    let allowed = (report.unrelated_bytes / 1024 / 2).min(15 * 1024);
    assert!(
        report.delta_kib() < i64::try_from(allowed).unwrap_or(i64::MAX),
        "the operator grew by {} KiB with {} KiB of unrelated Secrets",
        report.delta_kib(),
        report.unrelated_bytes / 1024
    );
    assert_eq!(watches, (1, 1, 1), "one watch per kind");
    for r in operator_reads.iter().filter(|r| r.resource == "secrets") {
        assert!(
            r.metadata_only || !matches!(r.verb, "list" | "watch"),
            "Secrets read with their data: {r:?}"
        );
        assert!(r.verb != "get" || !r.name.as_deref().unwrap_or("").starts_with("unrelated-"), "{r:?}");
    }
    assert!(per_employee <= 5.0, "{per_employee:.3} requests per Employee: {by_kind:#?}");
}

fn fake_kubeconfig(fake: &FakeApiServer) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
        fake.url()
    )
}
