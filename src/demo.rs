//! `switchboard demo`: the whole job on the embedded examples, with no cluster and no
//! network beyond loopback. Starts the five simulators, converges every PhoneSystem of
//! `examples/` onto them through the same engine the controller uses, changes an account
//! behind switchboard's back, shows the drift corrected, and shows that a converged
//! system costs no writes.

use std::{borrow::Cow, io::Write, net::SocketAddr, time::Instant};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde_json::{Map, Value, json};

use crate::{
    api::{AccountState, BackendKind, Employee, PhoneSystem},
    backends::{self, Credentials, Secret, http::Settings},
    engine::{self, EmployeeView, Options, Report, Vault},
    manifests::Manifests,
    plan::Owner,
    sim::{self, Running},
    state::State,
};

/// `examples/`, built into the binary so the demo needs no checkout.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("examples/phone-systems/mikopbx.yaml", include_str!("../examples/phone-systems/mikopbx.yaml")),
    ("examples/phone-systems/thulium.yaml", include_str!("../examples/phone-systems/thulium.yaml")),
    ("examples/phone-systems/apio.yaml", include_str!("../examples/phone-systems/apio.yaml")),
    ("examples/phone-systems/telphin.yaml", include_str!("../examples/phone-systems/telphin.yaml")),
    ("examples/phone-systems/ringostat.yaml", include_str!("../examples/phone-systems/ringostat.yaml")),
    ("examples/employees/ivan-petrenko.yaml", include_str!("../examples/employees/ivan-petrenko.yaml")),
    ("examples/employees/jane-doe.yaml", include_str!("../examples/employees/jane-doe.yaml")),
    ("examples/employees/jurgen-muller.yaml", include_str!("../examples/employees/jurgen-muller.yaml")),
    ("examples/employees/li-na.yaml", include_str!("../examples/employees/li-na.yaml")),
    ("examples/employees/lukasz-wasowski.yaml", include_str!("../examples/employees/lukasz-wasowski.yaml")),
    (
        "examples/employees/oleksandr-kovalenko.yaml",
        include_str!("../examples/employees/oleksandr-kovalenko.yaml"),
    ),
    ("examples/employees/olga-smirnova.yaml", include_str!("../examples/employees/olga-smirnova.yaml")),
    ("examples/employees/sato-hanako.yaml", include_str!("../examples/employees/sato-hanako.yaml")),
    ("examples/employees/suzuki-ichiro.yaml", include_str!("../examples/employees/suzuki-ichiro.yaml")),
    ("examples/employees/tomas-dvorak.yaml", include_str!("../examples/employees/tomas-dvorak.yaml")),
    ("examples/employees/wang-wei.yaml", include_str!("../examples/employees/wang-wei.yaml")),
    ("examples/employees/zofia-zolkiewska.yaml", include_str!("../examples/employees/zofia-zolkiewska.yaml")),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("example {0}")]
    Example(String),
    #[error("starting a simulator: {0}")]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Backend(#[from] backends::Error),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    State(#[from] crate::state::Error),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("the demo did not converge: {0}")]
    NotConverged(String),
}

/// The embedded examples, parsed.
pub fn examples() -> Result<Manifests, Error> {
    let mut manifests = Manifests::default();
    for (file, text) in EXAMPLES {
        manifests.add_text(file, text);
    }
    match manifests.problems.first() {
        Some(problem) => Err(Error::Example(problem.to_string())),
        None => Ok(manifests),
    }
}

/// Employees without a `passwordSecretRef` get generated passwords: nothing to look up.
struct NoPasswords;

impl Vault for NoPasswords {
    fn password(&self, _owner: &Owner) -> Option<Secret> {
        None
    }
}

struct System {
    manifest: PhoneSystem,
    kind: BackendKind,
    server: Running,
    backend: backends::AnyBackend,
}

/// Runs the demo, writing what a person reads to `out`.
pub async fn run(out: &mut impl Write) -> Result<(), Error> {
    let manifests = examples()?;
    writeln!(
        out,
        "switchboard demo: {} Employees on {} phone systems, against the built-in simulators\n",
        manifests.employees.len(),
        manifests.systems.len()
    )?;
    let mut systems = Vec::new();
    for manifest in &manifests.systems {
        let kind = manifest.spec.backend().map_err(|e| Error::Example(e.to_string()))?.kind();
        let server = sim::spawn(sim::default_simulator(kind), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let mut manifest = manifest.clone();
        point_at(&mut manifest, &server.url);
        let namespace = manifest.metadata.namespace.clone().unwrap_or_default();
        let credentials = manifest
            .spec
            .credentials_secret_ref
            .as_ref()
            .and_then(|r| manifests.secret_data(&namespace, &r.name))
            .map(Credentials::new)
            .unwrap_or_default();
        let backend = backends::connect(&manifest.spec, &credentials, Settings::default())?;
        systems.push(System { manifest, kind, server, backend });
    }
    let state = State::in_memory();

    writeln!(out, "1. First sync: every account is created.\n")?;
    for system in &systems {
        let (report, took) = sync(system, &manifests.employees, &state).await?;
        print_system(out, system, &report, took, &manifests.employees, &state)?;
    }

    let Some(pbx) = systems.iter().find(|s| s.kind == BackendKind::Mikopbx) else {
        return Ok(());
    };
    writeln!(out, "2. Someone edits the PBX by hand: an e-mail on {} is changed.\n", name_of(&pbx.manifest))?;
    let victim = drift(pbx)?;
    writeln!(out, "   account {victim}: user_email -> changed-by-hand@example.com\n")?;
    writeln!(out, "3. The next resync corrects the drift and touches nothing else.\n")?;
    for system in &systems {
        let (report, took) = sync(system, &manifests.employees, &state).await?;
        let events: Vec<String> = report
            .events
            .iter()
            .filter(|e| e.reason == "Updated")
            .map(|e| format!("{}: {}", e.owner.as_ref().map(|o| o.name.as_str()).unwrap_or("-"), e.message))
            .collect();
        writeln!(
            out,
            "   {:<16} {} write(s) in {} ms{}",
            name_of(&system.manifest),
            report.writes,
            took.as_millis(),
            if events.is_empty() { String::new() } else { format!(": {}", events.join("; ")) }
        )?;
        if system.kind == BackendKind::Mikopbx && report.writes == 0 {
            return Err(Error::NotConverged("the drift on the MikoPBX was not corrected".into()));
        }
    }
    writeln!(out, "\n4. Steady state: a resync of a converged system only reads; it writes nothing.\n")?;
    for system in &systems {
        system.server.reset_stats();
        let (report, took) = sync(system, &manifests.employees, &state).await?;
        let stats = system.server.stats();
        writeln!(
            out,
            "   {:<16} {} request(s), {} write(s), {} ms",
            name_of(&system.manifest),
            stats.requests,
            report.writes,
            took.as_millis()
        )?;
        if report.writes != 0 {
            return Err(Error::NotConverged(format!(
                "{} still wrote on a resync",
                name_of(&system.manifest)
            )));
        }
    }
    writeln!(out, "\nDone. `switchboard sim` serves the same simulators for your own experiments.")?;
    Ok(())
}

fn name_of(manifest: &PhoneSystem) -> &str {
    manifest.metadata.name.as_deref().unwrap_or("?")
}

fn point_at(manifest: &mut PhoneSystem, url: &str) {
    let spec = &mut manifest.spec;
    let slot = [
        spec.mikopbx.as_mut().map(|b| &mut b.url),
        spec.thulium.as_mut().map(|b| &mut b.url),
        spec.apio.as_mut().map(|b| &mut b.url),
        spec.telphin.as_mut().map(|b| &mut b.url),
        spec.ringostat.as_mut().map(|b| &mut b.url),
    ];
    for u in slot.into_iter().flatten() {
        *u = url.to_owned();
    }
}

/// Changes one account's e-mail on the simulator, as a person in the web UI would.
fn drift(system: &System) -> Result<String, Error> {
    let dump = system.server.sim.dump();
    let id = dump
        .as_array()
        .and_then(|a| a.first())
        .and_then(|a| a.get("id"))
        .map(|id| match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .ok_or_else(|| Error::NotConverged("no account to change".into()))?;
    let patch: Map<String, Value> =
        json!({"user_email": "changed-by-hand@example.com"}).as_object().cloned().unwrap_or_default();
    system.server.sim.tamper(&id, &patch).map_err(Error::Sim)?;
    Ok(id)
}

async fn sync(
    system: &System,
    employees: &[Employee],
    state: &State,
) -> Result<(Report, std::time::Duration), Error> {
    let name = name_of(&system.manifest);
    let views: Vec<EmployeeView> = employees
        .iter()
        .map(|e| {
            let owner = Owner::new(
                e.metadata.namespace.clone().unwrap_or_default(),
                e.metadata.name.clone().unwrap_or_default(),
            );
            EmployeeView {
                status: state.status(&owner).map(Cow::Owned),
                owner,
                spec: &e.spec,
                rank: 0,
                deleting: false,
            }
        })
        .collect();
    let options =
        Options { dry_run: false, allow_deletions: None, now: Time(Timestamp::now()), progress: None };
    let started = Instant::now();
    let report =
        engine::sync(&system.backend, name, &system.manifest.spec, &views, state, &NoPasswords, &options)
            .await?;
    let took = started.elapsed();
    state.record(name, &report)?;
    Ok((report, took))
}

fn print_system(
    out: &mut impl Write,
    system: &System,
    report: &Report,
    took: std::time::Duration,
    employees: &[Employee],
    state: &State,
) -> Result<(), Error> {
    let name = name_of(&system.manifest);
    let c = &report.counts;
    writeln!(
        out,
        "   {name} ({}): {} declared, {} in sync, {} pending, {} need attention; {} write(s) in {} ms",
        system.kind,
        c.declared,
        c.in_sync,
        c.pending,
        c.failed,
        report.writes,
        took.as_millis()
    )?;
    // The person's name goes last: names in CJK scripts are double width and would
    // shift every column after them.
    writeln!(out, "     {:<9} {:<22} {:<28} PERSON", "EXTENSION", "STATE", "ACCOUNT")?;
    for e in employees {
        let Some(membership) = e.spec.membership(name) else { continue };
        let owner = Owner::new(
            e.metadata.namespace.clone().unwrap_or_default(),
            e.metadata.name.clone().unwrap_or_default(),
        );
        let entry = state.status(&owner).and_then(|s| s.phone_systems.into_iter().find(|p| p.name == name));
        let (state_text, note) = match &entry {
            Some(entry) => (
                format!("{:?}", entry.state),
                match entry.state {
                    AccountState::InSync => entry.external_id.clone().unwrap_or_default(),
                    _ => entry.message.clone().unwrap_or_default(),
                },
            ),
            None => ("-".to_owned(), String::new()),
        };
        let account = entry.as_ref().and_then(|e| e.external_id.clone()).unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "     {:<9} {:<22} {:<28} {}",
            e.spec.extension_on(membership),
            state_text,
            account,
            e.spec.full_name()
        )?;
        if !note.is_empty() && entry.as_ref().is_some_and(|e| e.state != AccountState::InSync) {
            writeln!(out, "               {note}")?;
        }
    }
    writeln!(out)?;
    Ok(())
}
