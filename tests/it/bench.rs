//! `switchboard bench` at a small N with no latency: it runs, and every scenario costs
//! exactly the requests it should. No timing is asserted.

use std::collections::BTreeMap;

use switchboard::{
    api::BackendKind,
    bench::{self, Config, Measurement, Scenario, writes_in},
};

/// Requests by operation, any status.
fn ops(m: &Measurement) -> BTreeMap<String, u64> {
    m.stats.by_operation.iter().map(|(op, statuses)| (op.clone(), statuses.values().sum())).collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(op, n)| ((*op).to_owned(), *n)).collect()
}

/// A system, a scenario and its requests by operation.
type Expected = (&'static str, Scenario, &'static [(&'static str, u64)]);

fn row<'a>(rows: &'a [Measurement], scenario: Scenario, system: &str) -> &'a Measurement {
    rows.iter()
        .find(|m| m.scenario == scenario && m.system == system)
        .unwrap_or_else(|| panic!("no {scenario:?} row for {system}"))
}

/// N = 10 on every system, no latency, maxConcurrency 4.
fn small() -> Config {
    Config {
        sizes: vec![10],
        latency_ms: 0,
        concurrency: 4,
        rate_limit: 200,
        rate_limited_max: 10,
        drift_percent: 1.0,
        systems: BackendKind::ALL.to_vec(),
        baseline: true,
        out: None,
        program: env!("CARGO_BIN_EXE_switchboard").into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_makes_exactly_the_requests_it_should() {
    let config = small();
    let mut out = Vec::new();
    let rows = bench::run(&config, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Targets:"), "{text}");

    // The seed's method: one getRecord and one saveRecord per employee, nothing else.
    let base = row(&rows, Scenario::Baseline, "mikopbx, seed script");
    assert_eq!(base.requests("getRecord"), 10, "{:?}", base.stats);
    assert_eq!(base.requests("saveRecord"), 10);
    assert_eq!(base.stats.requests, 20);
    assert_eq!((base.writes, base.failures), (10, 0));

    let updatable = [BackendKind::Mikopbx, BackendKind::Apio, BackendKind::Telphin];
    for kind in BackendKind::ALL {
        let name = kind.as_str();
        let cold = row(&rows, Scenario::Cold, name);
        assert_eq!((cold.writes, cold.failures), (10, 0), "{name}: {:?}", cold.stats);
        assert_eq!(
            writes_in(&cold.stats),
            10 + u64::from(kind == BackendKind::Telphin) * 10,
            "{name}: {:?}",
            cold.stats
        );

        let steady = row(&rows, Scenario::Steady, name);
        assert_eq!(steady.writes, 0, "{name}");
        assert_eq!(writes_in(&steady.stats), 0, "{name}: {:?}", steady.stats);
        assert_eq!(steady.failures, 0, "{name}");
        assert!(steady.stats.requests > 0, "{name}: a resync lists");
        // No record is read on a resync of what this client created and read: the lists
        // show nothing changed, and what only records hold is remembered.
        assert_eq!(bench::record_reads_in(&steady.stats), 0, "{name}: {:?}", steady.stats);

        let drift = row(&rows, Scenario::Drift, name);
        assert_eq!(drift.changed, 1, "{name}");
        if updatable.contains(&kind) {
            assert_eq!(drift.writes, 1, "{name}: {:?}", drift.stats);
            assert_eq!(writes_in(&drift.stats), 1, "{name}: {:?}", drift.stats);
        } else {
            // No update API: the change is reported for a person, never written.
            assert_eq!((drift.writes, drift.manual), (0, 1), "{name}");
            assert_eq!(writes_in(&drift.stats), 0, "{name}: {:?}", drift.stats);
        }

        let limited = row(&rows, Scenario::RateLimited, name);
        assert_eq!((limited.writes, limited.failures), (10, 0), "{name}: {:?}", limited.stats);
    }

    // Every request of every scenario, exactly (N = 10, 1 account changed).
    const LIST: &str = switchboard::sim::ringostat::LIST_STAFF;
    const ADD: &str = switchboard::sim::ringostat::ADD_STAFF;
    let expected: [Expected; 18] = [
        // Legacy MikoPBX on 127.0.0.1 (trusted: no login): the admin page, empty from
        // 2024.1 on, then the admin table (remembered); one template for the defaults,
        // then one saveRecord per create.
        (
            "mikopbx",
            Scenario::Cold,
            &[("extensionsIndex", 1), ("getNewRecords", 1), ("getRecord", 1), ("saveRecord", 10)],
        ),
        // The table alone: forwarding is only in the records, but each was remembered
        // from its saveRecord answer, and no row changed since.
        ("mikopbx", Scenario::Steady, &[("getNewRecords", 1)]),
        // The changed row's record is read; the update is read-modify-write of it.
        ("mikopbx", Scenario::Drift, &[("getNewRecords", 1), ("getRecord", 2), ("saveRecord", 1)]),
        // v3: creates answer the record; a PATCH of a record this pass read sends no GET.
        ("mikopbx v3", Scenario::Cold, &[("getList", 1), ("create", 10)]),
        ("mikopbx v3", Scenario::Steady, &[("getList", 1)]),
        ("mikopbx v3", Scenario::Drift, &[("getList", 1), ("getRecord", 1), ("patch", 1)]),
        ("thulium", Scenario::Cold, &[("GET agents", 1), ("POST agents", 10)]),
        ("thulium", Scenario::Steady, &[("GET agents", 1)]),
        ("thulium", Scenario::Drift, &[("GET agents", 1)]),
        // The first create on an empty group looks its user up once, to learn whether the
        // list writes ids with their domain (the id a claim records must be the list's).
        ("apio", Scenario::Cold, &[("listUsers", 2), ("getUser", 1), ("createUser", 10)]),
        // The mobile is only in the records: remembered from the creates.
        ("apio", Scenario::Steady, &[("listUsers", 1)]),
        // The changed row's record is read again.
        ("apio", Scenario::Drift, &[("listUsers", 1), ("getUser", 1), ("updateUser", 1)]),
        // A number the listing did not have is created straight away.
        (
            "telphin",
            Scenario::Cold,
            &[
                ("token", 1),
                ("listUsers", 1),
                ("listExtensions", 1),
                ("createExtension", 10),
                ("createUser", 10),
            ],
        ),
        // A short page proves no end on Telphin (page sizes are undocumented there): each
        // list ends with the empty page after it.
        ("telphin", Scenario::Steady, &[("listUsers", 2), ("listExtensions", 2)]),
        ("telphin", Scenario::Drift, &[("listUsers", 2), ("listExtensions", 2), ("updateUser", 1)]),
        // addStaff answers no id: the new employees are found with one more listing.
        ("ringostat", Scenario::Cold, &[(LIST, 2), (ADD, 10)]),
        ("ringostat", Scenario::Steady, &[(LIST, 1)]),
        ("ringostat", Scenario::Drift, &[(LIST, 1)]),
    ];
    for (system, scenario, pairs) in expected {
        assert_eq!(ops(row(&rows, scenario, system)), expect(pairs), "{system} {scenario:?}");
    }

    // All five at once: the same work, side by side.
    let all = "all 5 at once";
    let cold = row(&rows, Scenario::Cold, all);
    assert_eq!((cold.writes, cold.failures, cold.accounts), (50, 0, 50));
    assert_eq!(row(&rows, Scenario::Steady, all).writes, 0);
    assert_eq!(writes_in(&row(&rows, Scenario::Steady, all).stats), 0);
    let drift = row(&rows, Scenario::Drift, all);
    assert_eq!((drift.changed, drift.writes, drift.manual), (5, 3, 2));
    // maxConcurrency holds at the systems, though the engine runs twice as many
    // operations; the seed's script is serial.
    assert_eq!(base.stats.peak_in_flight, 1);
    for m in rows.iter().filter(|m| m.scenario != Scenario::Baseline) {
        assert!(
            (1..=4).contains(&m.stats.peak_in_flight),
            "{} {:?}: {} requests at once",
            m.system,
            m.scenario,
            m.stats.peak_in_flight
        );
    }

    // Both processes' peaks are measured, each on its own.
    assert!(rows.iter().all(|m| m.peak_rss_kib.is_some() && m.sim_peak_rss_kib.is_some()));
}

#[test]
fn the_table_and_the_chart_are_written() {
    let rows = vec![];
    let config = Config::default();
    assert!(bench::markdown(&config, &rows).starts_with("# switchboard bench"));
    let svg = bench::svg(&config, &rows);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

/// The engine runs twice maxConcurrency operations at once, and Telphin's creates take
/// two requests each: every request slot is used, and never more than maxConcurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_fill_max_concurrency_and_never_pass_it() {
    let config = Config {
        sizes: vec![24],
        latency_ms: 10,
        rate_limited_max: 0,
        systems: vec![BackendKind::Telphin],
        baseline: false,
        ..small()
    };
    let rows = bench::run(&config, &mut Vec::new()).await.unwrap();
    let cold = row(&rows, Scenario::Cold, "telphin");
    assert_eq!(cold.requests("createExtension") + cold.requests("createUser"), 48);
    assert_eq!(cold.stats.peak_in_flight, 4, "{:?}", cold.stats);
}
