//! Resyncs that read a record only when they must (`docs/resync.md`): on MikoPBX (2023.2,
//! 2024.1, v3) and APIO, whose lists lack some compared fields, a converged resync costs
//! the list pages alone; a record is read again when its list entry changed, when it was
//! never read by this client, or when the copy kept of it is older than
//! `detailRefreshInterval`; and no copy ever decides a write or hides an account.

use std::time::Duration;

use serde_json::{Map, Value, json};
use switchboard::{
    api::{EmployeeSpec, PhoneSystemSpec},
    backends::{AnyBackend, Credentials, connect, http::Settings},
    engine::Report,
    plan::Owner,
    sim::{
        self, Running, Stats,
        apio::{ApioConfig, ApioSim},
        mikopbx::{Dialect, Generation, MikoPbxConfig, MikoPbxSim},
    },
    state::State,
};

use crate::faults::engine_pass;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Miko2023,
    Miko2024,
    MikoV3,
    Apio,
}

const NAME: &str = "pbx";

struct Fx {
    system: System,
    run: Running,
    spec: PhoneSystemSpec,
    credentials: Credentials,
}

async fn start(system: System, refresh: &str) -> Fx {
    let sim: std::sync::Arc<dyn sim::Simulator> = match system {
        System::Apio => ApioSim::new(ApioConfig::default()),
        miko => {
            let generation = match miko {
                System::Miko2023 => Generation::V2023_2,
                System::Miko2024 => Generation::V2024_1,
                _ => Generation::V2026_1,
            };
            let dialect = Dialect { generation, ..Dialect::default() };
            MikoPbxSim::new(MikoPbxConfig { dialect, trust_loopback: true, ..MikoPbxConfig::default() })
        }
    };
    let run = sim::spawn(sim, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (block, credentials) = match system {
        System::Apio => (
            sim::backend_block(switchboard::api::BackendKind::Apio, &run.url),
            Credentials::new([("token".to_owned(), run.sim.credentials()["token"].clone())]),
        ),
        System::MikoV3 => (json!({"url": run.url, "apiGeneration": "v3"}), Credentials::default()),
        _ => (json!({"url": run.url, "apiGeneration": "legacy"}), Credentials::default()),
    };
    let key = if system == System::Apio { "apio" } else { "mikopbx" };
    let spec = serde_json::from_value(json!({
        key: block,
        "credentialsSecretRef": {"name": "pbx"},
        "maxConcurrency": 32,
        "detailRefreshInterval": refresh,
    }))
    .unwrap();
    Fx { system, run, spec, credentials }
}

impl Fx {
    /// A client, as a process that has just started holds it.
    fn client(&self) -> AnyBackend {
        let settings = Settings { attempts: 1, ..Settings::default() }.for_system(&self.spec);
        connect(&self.spec, &self.credentials, settings).unwrap()
    }

    /// Reads of single records.
    fn record_reads(&self, stats: &Stats) -> u64 {
        match self.system {
            System::Apio => stats.total("getUser"),
            _ => stats.total("getRecord"),
        }
    }

    /// Requests that list.
    fn list_requests(&self, stats: &Stats) -> u64 {
        match self.system {
            System::Miko2023 => stats.total("extensionsIndex"),
            System::Miko2024 => stats.total("getNewRecords"),
            System::MikoV3 => stats.total("getList"),
            System::Apio => stats.total("listUsers"),
        }
    }

    /// The account on `extension` as the simulator holds it.
    fn stored(&self, extension: &str) -> Map<String, Value> {
        let key = if self.system == System::Apio { "extension" } else { "number" };
        let all = self.run.sim.dump();
        let found = all.as_array().unwrap().iter().find(|a| a[key] == json!(extension));
        found.unwrap_or_else(|| panic!("no account on {extension}")).as_object().unwrap().clone()
    }

    /// Changes the account on `extension` behind switchboard's back.
    fn tamper(&self, extension: &str, patch: Value) {
        let id_key = if self.system == System::Apio { "userId" } else { "id" };
        let id = match &self.stored(extension)[id_key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.run.sim.tamper(&id, patch.as_object().unwrap()).unwrap();
    }
}

/// `n` Employees on extensions 2000, 2001, …; `detail_only` gives each a field only the
/// records hold (forwarding on MikoPBX, the mobile on APIO and v3: the mobile is always
/// declared, which on v3 is detail-only too).
fn people(system: System, n: usize, detail_only: bool) -> Vec<(Owner, EmployeeSpec)> {
    (0..n)
        .map(|i| {
            let extension = (2000 + i).to_string();
            let mut entry = json!({"name": NAME});
            if detail_only && system != System::Apio {
                entry["mikopbx"] = json!({"forwarding": {"onNoAnswer": format!("4860099{i:04}")}});
            }
            let mut spec = json!({
                "givenName": "Anna", "familyName": format!("Nowak{i}"), "email": format!("anna{i}@example.com"),
                "extension": extension, "phoneSystems": [entry],
            });
            if detail_only || matches!(system, System::Miko2023 | System::Miko2024) {
                spec["mobile"] = json!(format!("+4860011{i:04}"));
            }
            (Owner::new("default", format!("anna-{i}")), serde_json::from_value(spec).unwrap())
        })
        .collect()
}

async fn pass(fx: &Fx, backend: &AnyBackend, people: &[(Owner, EmployeeSpec)], state: &State) -> Report {
    let report = engine_pass(backend, NAME, &fx.spec, people, state).await;
    assert_eq!(report.failures, 0, "{:?}: {:?} {:?}", fx.system, report.events, report);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_resync_of_1000_accounts_reads_the_list_alone() {
    let systems = [System::Miko2024, System::MikoV3, System::Apio];
    futures_util::future::join_all(systems.map(converged_resync)).await;
}

async fn converged_resync(system: System) {
    let fx = start(system, "1h").await;
    let people = people(system, 1000, true);
    let state = State::in_memory();
    let backend = fx.client();
    let cold = pass(&fx, &backend, &people, &state).await;
    assert_eq!(cold.writes, 1000, "{system:?}");

    // What the creates' answers held is remembered: no record is read.
    fx.run.reset_stats();
    let resync = pass(&fx, &backend, &people, &state).await;
    let stats = fx.run.stats();
    assert_eq!(resync.writes, 0, "{system:?}");
    assert_eq!(fx.record_reads(&stats), 0, "{system:?}: {stats:?}");
    assert_eq!(stats.requests, fx.list_requests(&stats), "{system:?}: only lists: {stats:?}");
    let pages = match system {
        System::Miko2023 | System::MikoV3 => 1,
        System::Miko2024 => 10,
        // Past 500 users, the list is read by extension prefix.
        System::Apio => stats.requests,
    };
    assert_eq!(fx.list_requests(&stats), pages, "{system:?}: {stats:?}");

    // A process that starts anew remembers nothing: it reads every record once.
    let restarted = fx.client();
    fx.run.reset_stats();
    pass(&fx, &restarted, &people, &state).await;
    assert_eq!(fx.record_reads(&fx.run.stats()), 1000, "{system:?}");
    fx.run.reset_stats();
    pass(&fx, &restarted, &people, &state).await;
    assert_eq!(fx.record_reads(&fx.run.stats()), 0, "{system:?}");

    // An edit that shows in the list: that record is read again, and put back.
    let email = if system == System::Apio { "emailAddress" } else { "user_email" };
    fx.tamper("2500", json!({email: "by-hand@example.org"}));
    fx.run.reset_stats();
    let drift = pass(&fx, &restarted, &people, &state).await;
    let stats = fx.run.stats();
    assert_eq!(drift.writes, 1, "{system:?}");
    // The legacy update reads the record again for its read-modify-write.
    let reads = if matches!(system, System::Miko2023 | System::Miko2024) { 2 } else { 1 };
    assert_eq!(fx.record_reads(&stats), reads, "{system:?}: {stats:?}");
    assert_eq!(fx.stored("2500")[email], "anna500@example.com", "{system:?}");
}

#[tokio::test]
async fn without_fields_only_records_hold_no_record_is_ever_read() {
    for system in [System::Miko2023, System::Miko2024, System::MikoV3, System::Apio] {
        let fx = start(system, "0s").await;
        let people = people(system, 20, false);
        let state = State::in_memory();
        fx.run.reset_stats();
        let cold = pass(&fx, &fx.client(), &people, &state).await;
        assert_eq!(cold.writes, 20, "{system:?}");
        // A fresh client each time: nothing remembered, and nothing needed.
        fx.run.reset_stats();
        let again = pass(&fx, &fx.client(), &people, &state).await;
        let stats = fx.run.stats();
        assert_eq!(again.writes, 0, "{system:?}: {:?}", again.plan);
        assert_eq!(fx.record_reads(&stats), 0, "{system:?}: {stats:?}");

        // An edit by hand of a listed field is still seen and put back.
        let (field, value) = match system {
            System::Apio => ("lastName", "Renamed"),
            _ => ("user_username", "Renamed By Hand"),
        };
        fx.tamper("2003", json!({field: value}));
        let fixed = pass(&fx, &fx.client(), &people, &state).await;
        assert_eq!(fixed.writes, 1, "{system:?}");
        assert_ne!(fx.stored("2003")[field], value, "{system:?}");
    }
}

#[tokio::test]
async fn an_edit_of_a_field_only_records_hold_is_put_back_once_its_copy_expires() {
    for system in [System::Miko2024, System::MikoV3, System::Apio] {
        let fx = start(system, "3s").await;
        let people = people(system, 5, true);
        let state = State::in_memory();
        let backend = fx.client();
        pass(&fx, &backend, &people, &state).await;
        let (field, by_hand) = match system {
            System::Apio => ("mobilePhoneNumber", "+48999000111"),
            _ => ("fwd_forwarding", "48999000111"),
        };
        fx.tamper("2001", json!({field: by_hand}));

        // The list shows nothing of it, and the copy is fresh: not seen yet, nothing read.
        fx.run.reset_stats();
        let unseen = pass(&fx, &backend, &people, &state).await;
        assert_eq!(unseen.writes, 0, "{system:?}");
        assert_eq!(fx.record_reads(&fx.run.stats()), 0, "{system:?}");
        assert_eq!(fx.stored("2001")[field], by_hand, "{system:?}");

        // Within detailRefreshInterval every copy has expired: each record is read, and
        // the edit put back.
        tokio::time::sleep(Duration::from_millis(3200)).await;
        fx.run.reset_stats();
        let seen = pass(&fx, &backend, &people, &state).await;
        assert_eq!(seen.writes, 1, "{system:?}: {:?}", seen.plan);
        assert!(fx.record_reads(&fx.run.stats()) >= 5, "{system:?}");
        assert_ne!(fx.stored("2001")[field], by_hand, "{system:?}");
    }
}

#[tokio::test]
async fn with_a_zero_interval_every_needed_record_is_read_on_every_resync() {
    for system in [System::Miko2024, System::MikoV3, System::Apio] {
        let fx = start(system, "0s").await;
        let people = people(system, 5, true);
        let state = State::in_memory();
        let backend = fx.client();
        pass(&fx, &backend, &people, &state).await;
        let field = if system == System::Apio { "mobilePhoneNumber" } else { "fwd_forwarding" };
        fx.tamper("2002", json!({field: "48999000222"}));
        fx.run.reset_stats();
        let report = pass(&fx, &backend, &people, &state).await;
        assert_eq!(report.writes, 1, "{system:?}");
        assert!(fx.record_reads(&fx.run.stats()) >= 5, "{system:?}");
    }
}

#[tokio::test]
async fn a_remembered_copy_never_decides_what_a_write_sends() {
    // A ring length changed by hand shows in no list. A later change of the forwarding
    // target must keep it: the PATCH (v3) or the saved record (legacy) is built from the
    // record as the PBX holds it, not from the copy.
    for system in [System::Miko2024, System::MikoV3] {
        let fx = start(system, "1h").await;
        let mut people = people(system, 3, true);
        let state = State::in_memory();
        let backend = fx.client();
        pass(&fx, &backend, &people, &state).await;
        fx.tamper("2001", json!({"fwd_ringlength": "77"}));
        pass(&fx, &backend, &people, &state).await;
        assert_eq!(fx.stored("2001")["fwd_ringlength"].to_string().trim_matches('"'), "77");

        let membership = &mut people[1].1.phone_systems[0];
        if let Some(settings) = membership.mikopbx.as_mut()
            && let Some(forwarding) = settings.forwarding.as_mut()
        {
            forwarding.on_no_answer = Some("48600555000".into());
        }
        let report = pass(&fx, &backend, &people, &state).await;
        assert_eq!(report.writes, 1, "{system:?}");
        let stored = fx.stored("2001");
        assert_eq!(stored["fwd_forwarding"], "48600555000", "{system:?}");
        assert_eq!(stored["fwd_ringlength"].to_string().trim_matches('"'), "77", "{system:?}: kept");
    }
}

#[tokio::test]
async fn an_account_deleted_by_hand_is_missed_at_once() {
    for system in [System::Miko2024, System::MikoV3, System::Apio] {
        let fx = start(system, "1h").await;
        let people = people(system, 4, true);
        let state = State::in_memory();
        let backend = fx.client();
        pass(&fx, &backend, &people, &state).await;
        let id_key = if system == System::Apio { "userId" } else { "id" };
        let id = match &fx.stored("2002")[id_key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        fx.run.sim.remove(&id).unwrap();
        // The list is read whole every time: the copy of a record it no longer shows
        // stands for nothing, and the account is made again.
        let report = pass(&fx, &backend, &people, &state).await;
        assert_eq!(report.writes, 1, "{system:?}: {:?}", report.plan);
        assert!(fx.run.sim.dump().as_array().unwrap().len() >= 4, "{system:?}");
        fx.stored("2002");
    }
}

/// A save answered with its `id` alone (the `save_answer: id` dialect; the server code
/// answers the whole record): creates still succeed, and the blank fields such an answer
/// lacks are never taken for the record: each record is read once (v3 right after its
/// create, legacy at the next pass), no pass writes again, and then nothing is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_answered_with_its_id_alone_is_read_back_not_trusted() {
    for system in [System::Miko2024, System::MikoV3] {
        let fx = start(system, "1h").await;
        fx.run.sim.set_dialect(json!({"save_answer": "id"}).as_object().unwrap()).unwrap();
        let people = people(system, 20, true);
        let state = State::in_memory();
        let backend = fx.client();
        let cold = pass(&fx, &backend, &people, &state).await;
        assert_eq!(cold.writes, 20, "{system:?}");

        // Legacy reads each record at the next pass; v3 read each back after its create.
        fx.run.reset_stats();
        let second = pass(&fx, &backend, &people, &state).await;
        assert_eq!(second.writes, 0, "{system:?}: converged, no write from a blank copy");
        let reads = if system == System::MikoV3 { 0 } else { 20 };
        assert_eq!(fx.record_reads(&fx.run.stats()), reads, "{system:?}: each record read once");

        fx.run.reset_stats();
        let third = pass(&fx, &backend, &people, &state).await;
        assert_eq!(third.writes, 0, "{system:?}");
        assert_eq!(fx.record_reads(&fx.run.stats()), 0, "{system:?}: the reads now stand");
        assert_eq!(fx.stored("2007")["fwd_forwarding"], "48600990007", "{system:?}");
    }
}
