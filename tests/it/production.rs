//! Running in production, end to end on the fake API server: two instances elect one
//! writer through a Lease and the other takes over when the first dies or shuts down;
//! shutdown lets passes in flight finish, or abandons them at the deadline; a scrape of
//! `/metrics` finds every family with sensible values; every request the controller
//! makes is allowed by `src/rbac.rs`.
//!
//! Each instance's API requests are tagged ([`FakeApiServer::client_as`]), so the fake
//! server's request log tells which instance wrote what.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::Lease,
    jiff::{SignedDuration, Timestamp},
};
use serde_json::json;
use switchboard::{
    api::BackendKind,
    controller::{
        self as operator,
        lease::{Elector, LeaseConfig},
    },
    rbac,
    telemetry::{self, Health, Metrics},
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpListener};

use crate::{
    controller::{CONTROLLER, Controller, World, employee, eventually},
    support::apiserver::{self, FakeApiServer},
};

/// Where the Lease lives: the operator's own namespace, not the watched one.
const LEASE_NAMESPACE: &str = "switchboard-system";
const LEASE: &str = "switchboard";

// ---- RBAC ------------------------------------------------------------------------------

/// Every request `client` made (as far as the log holds them), in RBAC terms, is in the
/// table of `src/rbac.rs`, and Leases are touched only in the operator's namespace.
pub(crate) fn assert_allowed_by_rbac(fake: &FakeApiServer, client: &str) {
    let requests = fake.requests_of(client);
    let mut refused = BTreeSet::new();
    for r in &requests {
        // `plural.group`, `plural` for the core group; the fake's verbs are RBAC's.
        let (plural, group) = r.resource.split_once('.').unwrap_or((r.resource.as_str(), ""));
        let resource =
            if r.subresource.is_empty() { plural.to_owned() } else { format!("{plural}/{}", r.subresource) };
        if !rbac::allows(group, &resource, r.verb) {
            refused.insert(format!("{} {group}/{resource}", r.verb));
        }
        let scope =
            rbac::PERMISSIONS.iter().find(|p| p.group == group && p.resource == resource).map(|p| p.scope);
        if scope == Some(rbac::Scope::Own) {
            assert_eq!(
                r.namespace.as_deref(),
                Some(LEASE_NAMESPACE),
                "{r:?}: not in the operator's namespace"
            );
        }
    }
    assert!(refused.is_empty(), "{client} made requests src/rbac.rs does not allow: {refused:?}");
}

// ---- harness ---------------------------------------------------------------------------

/// One operator instance with its own metrics and health, as one pod would have.
struct Instance {
    controller: Controller,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Instance {
    /// Starts an instance taking part in the election for [`LEASE`].
    fn start(world: &World, name: &'static str, lease: Duration, shutdown_timeout: Duration) -> Instance {
        Self::start_with(world, name, lease, shutdown_timeout, |_| {})
    }

    /// [`Self::start`], with the configuration changed by `adjust`.
    fn start_with(
        world: &World,
        name: &'static str,
        lease: Duration,
        shutdown_timeout: Duration,
        adjust: impl FnOnce(&mut operator::Config),
    ) -> Instance {
        let (metrics, health) = (Arc::new(Metrics::default()), Arc::new(Health::default()));
        let controller = world.start_controller_as(name, |config| {
            adjust(config);
            config.metrics = metrics.clone();
            config.health = health.clone();
            config.shutdown_timeout = shutdown_timeout;
            config.leader_election = Some(LeaseConfig {
                duration: lease,
                renew_deadline: lease * 2 / 3,
                retry_period: Duration::from_millis(100),
                ..LeaseConfig::new(LEASE, LEASE_NAMESPACE, name)
            });
        });
        Instance { controller, metrics, health }
    }

    /// The sum of the samples of `family` whose labels include `labels`.
    fn metric(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        sum(&self.metrics.encode(), family, labels)
    }
}

/// The sum of the samples of `family` (a full sample name, `switchboard_syncs_total`) in
/// the exposition `text` whose labels include every one of `labels`.
fn sum(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(family).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn lease(fake: &FakeApiServer) -> Option<Lease> {
    fake.get::<Lease>(LEASE_NAMESPACE, LEASE)
}

fn holder(fake: &FakeApiServer) -> Option<String> {
    lease(fake)?.spec?.holder_identity.filter(|h| !h.is_empty())
}

async fn until_holder(fake: &FakeApiServer, who: &str) {
    eventually(&format!("{who} holds the Lease"), || async {
        match holder(fake) {
            Some(h) if h == who => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
}

/// The requests of `client` that may change something.
fn writes_of(fake: &FakeApiServer, client: &str) -> Vec<String> {
    fake.requests_of(client)
        .into_iter()
        .filter(|r| !matches!(r.verb, "get" | "list" | "watch"))
        .map(|r| format!("{} {}/{} {:?}", r.verb, r.resource, r.subresource, r.name))
        .collect()
}

/// Whether the tests run on the fake API server (these scenarios read its log).
fn on_fake(scenario: &str) -> bool {
    let fake = std::env::var_os("SWITCHBOARD_TEST_KUBECONFIG").is_none();
    if !fake {
        eprintln!("production: {scenario} reads the fake API server's request log; skipped on a cluster");
    }
    fake
}

/// A world on the fake API server with one MikoPBX and `people` Employees on it; `None`
/// on a real cluster.
async fn world_with(scenario: &str, people: &[&str]) -> Option<World> {
    if !on_fake(scenario) {
        return None;
    }
    let mut world = World::new(scenario).await;
    world.add_pbx("office-pbx", BackendKind::Mikopbx, json!({"resyncInterval": "1s"})).await;
    for (i, name) in people.iter().enumerate() {
        world.create_employee(&employee(&world.ns, name, &(401 + i).to_string(), &["office-pbx"])).await;
    }
    Some(world)
}

// ---- leader election -------------------------------------------------------------------

/// Two instances, one Lease: only the holder writes, the other stands by (ready, caches
/// warm, nothing written); when the holder dies without a word the standby takes over
/// once the Lease has gone unrenewed for its duration, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_instances_writes_and_the_other_takes_over_when_it_dies() {
    let Some(world) = world_with("leader-dies", &["ann", "bob", "cid"]).await else { return };
    let fake = world.fake.as_ref().expect("a fake API server");
    let duration = Duration::from_secs(2);
    let a = Instance::start(&world, "a", duration, Duration::from_secs(5));
    until_holder(fake, "a").await;
    let b = Instance::start(&world, "b", duration, Duration::from_secs(5));
    for name in ["ann", "bob", "cid"] {
        world.ready(name).await;
    }
    eventually("the standby ready too", || async {
        if b.health.is_ready() { Ok(()) } else { Err("not ready".to_owned()) }
    })
    .await;
    eventually("three passes by a", || async {
        let passes = a.metric("switchboard_syncs_total", &[("phone_system", "office-pbx")]);
        if passes >= 3.0 { Ok(()) } else { Err(format!("{passes}")) }
    })
    .await;

    assert_eq!(writes_of(fake, "b"), Vec::<String>::new(), "the standby wrote");
    let b_leases: BTreeSet<&str> =
        fake.requests_of("b").iter().filter(|r| r.resource.starts_with("leases.")).map(|r| r.verb).collect();
    assert_eq!(b_leases, BTreeSet::from(["get"]), "the standby only looks at the Lease");
    assert!(
        writes_of(fake, "a").iter().any(|w| w.starts_with("patch employees.switchboard.dev/status")),
        "the leader wrote the claims: {:?}",
        writes_of(fake, "a")
    );
    assert_eq!(b.metric("switchboard_syncs_total", &[]), 0.0, "the standby ran no pass");
    assert_eq!(b.metric("switchboard_pbx_requests_total", &[]), 0.0, "the standby never called the PBX");
    assert_eq!(b.metric("switchboard_leader", &[]), 0.0);
    assert_eq!(a.metric("switchboard_leader", &[]), 1.0);
    assert!(a.metric("switchboard_pbx_requests_total", &[("system", "mikopbx")]) > 0.0);

    // a dies: no shutdown, no release.
    a.controller.task.abort();
    let died = Instant::now();
    // A renewal already on the wire may still land: read the last one after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = lease(fake).and_then(|l| l.spec).expect("the Lease");
    assert_eq!(last.holder_identity.as_deref(), Some("a"), "nobody took over a live Lease");
    until_holder(fake, "b").await;
    let took = died.elapsed();
    eprintln!("production: the standby took over {took:?} after the leader died (lease {duration:?})");
    assert!(took <= duration + Duration::from_secs(1), "took over after {took:?}");
    let now = lease(fake).and_then(|l| l.spec).expect("the Lease");
    let renewed = last.renew_time.expect("a renewTime").0;
    let acquired = now.acquire_time.expect("an acquireTime").0;
    let waited = Duration::try_from(acquired.duration_since(renewed)).unwrap_or(Duration::ZERO);
    assert!(
        waited + Duration::from_millis(10) >= duration,
        "taken {waited:?} after the last renewal: the Lease was still live"
    );
    assert_eq!(now.lease_transitions, Some(1));
    eventually("b's leader gauge", || async {
        if b.metric("switchboard_leader", &[]) == 1.0 { Ok(()) } else { Err("0".to_owned()) }
    })
    .await;

    // b writes now: a new Employee gets its account and claim from b.
    world.create_employee(&employee(&world.ns, "dan", "451", &["office-pbx"])).await;
    world.ready("dan").await;
    assert!(
        writes_of(fake, "b").iter().any(|w| w.starts_with("patch employees.switchboard.dev/status")),
        "the new leader wrote the claim: {:?}",
        writes_of(fake, "b")
    );
    assert!(
        b.metric("switchboard_applied_operations_total", &[("operation", "create"), ("result", "ok")]) >= 1.0
    );
    assert_eq!(world.pbx("office-pbx").accounts().len(), 4, "one account each, none twice");
    b.controller.stop().await;
    assert_allowed_by_rbac(fake, "a");
    assert_allowed_by_rbac(fake, "b");
}

/// A leader that shuts down cleanly releases the Lease: the standby takes over at its
/// next look, long before the Lease would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_releases_the_lease_and_the_standby_takes_over_at_once() {
    let Some(world) = world_with("leader-leaves", &["eva", "fay"]).await else { return };
    let fake = world.fake.as_ref().expect("a fake API server");
    let duration = Duration::from_secs(5);
    let a = Instance::start(&world, "a", duration, Duration::from_secs(5));
    until_holder(fake, "a").await;
    let b = Instance::start(&world, "b", duration, Duration::from_secs(5));
    world.ready("eva").await;
    world.ready("fay").await;
    eventually("the standby ready", || async {
        if b.health.is_ready() { Ok(()) } else { Err("not ready".to_owned()) }
    })
    .await;

    let stopping = Instant::now();
    let Instance { controller, metrics, health, .. } = a;
    controller.stop().await;
    let stopped = stopping.elapsed();
    assert!(!health.is_ready(), "a shut-down instance is not ready");
    assert_eq!(sum(&metrics.encode(), "switchboard_leader", &[]), 0.0);
    let after = holder(fake);
    assert!(matches!(after.as_deref(), None | Some("b")), "a still holds the Lease: {after:?}");
    until_holder(fake, "b").await;
    let took = stopping.elapsed();
    eprintln!("production: a clean shutdown took {stopped:?}; the standby led {took:?} after the signal");
    assert!(took < duration, "took over after {took:?}: the Lease was not released");

    world.create_employee(&employee(&world.ns, "gus", "461", &["office-pbx"])).await;
    world.ready("gus").await;
    assert!(writes_of(fake, "b").iter().any(|w| w.starts_with("patch employees.switchboard.dev/status")));
    b.controller.stop().await;
    assert_allowed_by_rbac(fake, "a");
    assert_allowed_by_rbac(fake, "b");
}

/// A PBX on a loopback port that accepts connections and answers after `answer_after`
/// (a 503), or never (`None`). Returns its URL and a channel that hears each connection.
async fn slow_pbx(answer_after: Option<Duration>) -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = tx.send(());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                match answer_after {
                    Some(after) => {
                        tokio::time::sleep(after).await;
                        let answer = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    // Holds the connection open, silent, until the test ends.
                    None => tokio::time::sleep(Duration::from_secs(600)).await,
                }
            });
        }
    });
    (url, rx)
}

/// At shutdown a pass in flight may finish within `--shutdown-timeout`; one that would
/// take longer is abandoned at the deadline. Either way the Lease is released after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_pass_in_flight_finish_or_abandons_it_at_the_deadline() {
    if !on_fake("shutdown") {
        return;
    }
    for (answer_after, timeout) in
        [(Some(Duration::from_millis(700)), Duration::from_secs(10)), (None, Duration::from_millis(300))]
    {
        let world = World::new("shutdown").await;
        let fake = world.fake.as_ref().expect("a fake API server");
        let (url, mut connections) = slow_pbx(answer_after).await;
        let credentials = [("username".to_owned(), "u".to_owned()), ("password".to_owned(), "p".to_owned())];
        world.create_secret("slow-credentials", credentials.into()).await;
        // Long HTTP timeouts: only the shutdown deadline may cut this pass short.
        world.create_phone_system("slow", BackendKind::Thulium, &url, json!({})).await;
        world.create_employee(&employee(&world.ns, "hal", "471", &["slow"])).await;
        let instance = Instance::start_with(&world, "a", Duration::from_secs(2), timeout, |config| {
            config.http.timeout = Duration::from_secs(60);
            config.http.attempts = 1;
        });
        until_holder(fake, "a").await;
        tokio::time::timeout(Duration::from_secs(20), connections.recv())
            .await
            .expect("the pass reaches the PBX");

        let signalled = Instant::now();
        let Instance { controller, metrics, .. } = instance;
        controller.stop().await;
        let took = signalled.elapsed();
        let passes = sum(&metrics.encode(), "switchboard_syncs_total", &[("phone_system", "slow")]);
        match answer_after {
            Some(after) => {
                eprintln!("production: a pass in flight finished at shutdown, {took:?} after the signal");
                assert!(took >= after / 2, "ended after {took:?}: the pass did not finish");
                assert!(passes >= 1.0, "the pass in flight was recorded as finished");
            }
            None => {
                eprintln!("production: a stuck pass was abandoned {took:?} after the signal ({timeout:?})");
                assert!(took >= timeout && took < timeout + Duration::from_secs(3), "{took:?}");
                assert_eq!(passes, 0.0, "the stuck pass never finished");
            }
        }
        assert_eq!(holder(fake), None, "the Lease released after the passes");
        assert_allowed_by_rbac(fake, "a");
    }
}

/// Two candidates racing for a Lease that does not exist yet, or that was just released:
/// the resourceVersion-guarded writes let exactly one win, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_racing_for_a_free_lease_never_both_win() {
    if !on_fake("race") {
        return;
    }
    let fake = apiserver::start().await;
    for round in 0..20 {
        let name = format!("race-{round}");
        let config = |who: &str| LeaseConfig::new(name.clone(), LEASE_NAMESPACE, who);
        if round >= 10 {
            // Held and released by a third instance: free, with a resourceVersion to race on.
            let mut c = Elector::new(fake.client_as("c"), config("c"));
            assert!(c.tick().await);
            assert!(c.release().await.expect("release"));
        }
        let mut a = Elector::new(fake.client_as("a"), config("a"));
        let mut b = Elector::new(fake.client_as("b"), config("b"));
        let (a_leads, b_leads) = tokio::join!(a.tick(), b.tick());
        assert!(a_leads != b_leads, "round {round}: a leads {a_leads}, b leads {b_leads}");
    }
    let conflicts =
        fake.requests().iter().filter(|r| r.resource.starts_with("leases.") && r.code == 409).count();
    eprintln!("production: 20 races for a free Lease, {conflicts} lost on a 409");
    for who in ["a", "b", "c"] {
        assert_allowed_by_rbac(&fake, who);
    }
}

/// The clock is passed in: a standby judges a held Lease expired by its own clock, a
/// whole duration after it last saw the Lease change, whatever `renewTime` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_whole_duration_after_the_lease_last_changed_by_its_clock() {
    if !on_fake("clock") {
        return;
    }
    let fake = apiserver::start().await;
    let clock = Arc::new(Mutex::new(Timestamp::from_second(1_900_000_000).expect("a time")));
    let config = |who: &str, clock: Arc<Mutex<Timestamp>>| LeaseConfig {
        now: Arc::new(move || *clock.lock().expect("not poisoned")),
        ..LeaseConfig::new(LEASE, LEASE_NAMESPACE, who)
    };
    // The leader's clock runs an hour ahead: its renewTime would look fresh for an hour.
    let ahead = Arc::new(Mutex::new(Timestamp::from_second(1_900_003_600).expect("a time")));
    let mut a = Elector::new(fake.client_as("a"), config("a", ahead));
    let mut b = Elector::new(fake.client_as("b"), config("b", clock.clone()));
    assert!(a.tick().await, "a creates the Lease");
    assert!(!b.tick().await, "b first sees it held");
    let advance = |s: i64| {
        let mut now = clock.lock().expect("not poisoned");
        *now = now.checked_add(SignedDuration::from_secs(s)).expect("in range");
    };
    advance(14);
    assert!(!b.tick().await, "14 s unchanged: still a's");
    advance(1);
    assert!(b.tick().await, "15 s unchanged: b takes it");
    let spec = lease(&fake).and_then(|l| l.spec).expect("the Lease");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(!a.tick().await, "a, back, finds it taken and stands by");
}

// ---- metrics and health ----------------------------------------------------------------

/// A scrape of `/metrics` served by `telemetry::router` finds every family with values
/// that match what the controller did; `/readyz` turns ready once the caches are filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_finds_the_passes_accounts_requests_drift_and_guard() {
    let people = ["ida", "jan", "kim"];
    let mut world = World::new("metrics").await;
    world
        .add_pbx(
            "office-pbx",
            BackendKind::Mikopbx,
            json!({"resyncInterval": "1s", "maxDeletionsPerSync": 1}),
        )
        .await;
    for (i, name) in people.iter().enumerate() {
        world.create_employee(&employee(&world.ns, name, &(481 + i).to_string(), &["office-pbx"])).await;
    }
    let (metrics, health) = (Arc::new(Metrics::default()), Arc::new(Health::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let server = tokio::spawn(telemetry::serve_on(listener, metrics.clone(), health.clone()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = crate::http().build().unwrap();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let reply = http.get(url).send().await.expect("the telemetry server answers");
            (reply.status().as_u16(), reply.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_owned()));
    assert_eq!(get("/readyz").await.0, 503, "not ready before the caches are filled");

    let controller = world.start_controller_as(CONTROLLER, |config| {
        config.metrics = metrics.clone();
        config.health = health.clone();
    });
    for name in people {
        world.ready(name).await;
    }
    eventually("ready", || async {
        match get("/readyz").await {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let system = [("namespace", world.ns.as_str()), ("phone_system", "office-pbx")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = system.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    // A resync after the creates counts every account in sync.
    let text = eventually("three accounts InSync in a scrape", || async {
        let (_, text) = get("/metrics").await;
        let in_sync = sum(&text, "switchboard_accounts", &with(&[("state", "InSync")]));
        if in_sync == 3.0 { Ok(text) } else { Err(format!("{in_sync}")) }
    })
    .await;
    assert!(sum(&text, "switchboard_syncs_total", &with(&[("outcome", "synced")])) >= 1.0);
    assert!(sum(&text, "switchboard_sync_duration_seconds_count", &system) >= 1.0);
    assert!(sum(&text, "switchboard_sync_duration_seconds_sum", &system) > 0.0);
    assert!(sum(&text, "switchboard_planned_operations_total", &with(&[("operation", "create")])) >= 3.0);
    assert_eq!(
        sum(
            &text,
            "switchboard_applied_operations_total",
            &with(&[("operation", "create"), ("result", "ok")])
        ),
        3.0,
        "three creates, each once"
    );
    assert_eq!(sum(&text, "switchboard_accounts", &with(&[("state", "Pending")])), 0.0);
    assert_eq!(sum(&text, "switchboard_accounts", &with(&[("state", "Failed")])), 0.0);
    let requests = &with(&[("system", "mikopbx"), ("outcome", "ok")]);
    assert!(
        sum(&text, "switchboard_pbx_requests_total", requests) >= 4.0,
        "a list and three creates at least"
    );
    assert!(sum(&text, "switchboard_pbx_request_duration_seconds_count", requests) >= 4.0);
    assert_eq!(sum(&text, "switchboard_leader", &[]), 1.0, "without leader election an instance leads");
    let pbx = world.pbx("office-pbx");
    // A change by hand is put back: a drift correction.
    let account = pbx.by_email("jan@example.com").expect("jan's account");
    let patch = json!({"user_email": "by-hand@example.com"});
    pbx.running.sim.tamper(&pbx.id_of(&account), patch.as_object().expect("an object")).expect("tamper");
    eventually("a drift correction counted", || async {
        let (_, text) = get("/metrics").await;
        let drift = sum(&text, "switchboard_drift_corrections_total", &system);
        let updates = sum(
            &text,
            "switchboard_applied_operations_total",
            &with(&[("operation", "update"), ("result", "ok")]),
        );
        if drift >= 1.0 && updates >= 1.0 { Ok(()) } else { Err(format!("drift {drift}, updates {updates}")) }
    })
    .await;
    assert!(pbx.by_email("jan@example.com").is_some(), "the e-mail put back");

    // No id in a label: every operation is a method and a path of words, versions and {id}.
    let (_, text) = get("/metrics").await;
    let ids: BTreeSet<String> = pbx.accounts().iter().map(|a| pbx.id_of(a)).collect();
    let operations: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("switchboard_pbx_requests_total{"))
        .filter_map(|l| l.split("operation=\"").nth(1)?.split('"').next())
        .collect();
    eprintln!("production: PBX operations {operations:?}");
    assert!(operations.iter().any(|op| op.contains("{id}")), "the update names its account: {operations:?}");
    for op in &operations {
        let path = op.split_once(' ').map_or("", |(_, p)| p);
        for segment in path.split('/') {
            assert!(!ids.contains(segment), "{op}: an account id in a label");
            assert!(
                segment == "{id}" || segment == "v3" || !segment.chars().any(|c| c.is_ascii_digit()),
                "{op}: looks like an id"
            );
        }
    }

    // Two deletions past maxDeletionsPerSync 1: the guard holds them, and says so.
    for name in ["ida", "jan"] {
        world.patch_employee(name, json!({"spec": {"phoneSystems": []}})).await;
    }
    eventually("a guard trip counted", || async {
        let (_, text) = get("/metrics").await;
        let trips = sum(&text, "switchboard_deletion_guard_trips_total", &system);
        let pending = sum(&text, "switchboard_accounts", &with(&[("state", "Pending")]));
        if trips >= 1.0 && pending == 2.0 { Ok(()) } else { Err(format!("trips {trips}, pending {pending}")) }
    })
    .await;
    assert_eq!(pbx.accounts().len(), 3, "nothing deleted");
    server.abort();
    world.finish(controller).await;
}
