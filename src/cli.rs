//! The cluster-free front end: `plan` and `sync` over a folder of manifests, with the
//! same engine the controller uses. Claims live in a state file instead of Employee
//! statuses.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde::Serialize;

use crate::{
    api::{Employee, PhoneSystem},
    backends::{self, Credentials, Secret, http::Settings},
    engine::{self, EmployeeView, Options, Report, Vault},
    manifests::{Manifests, Problem},
    plan::{Owner, Plan},
    state::State,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    State(#[from] crate::state::Error),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode the plan as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// How `plan` and `sync` ended, as an exit code: 0 nothing (left) to do, 2 changes
/// (planned, or applied by `sync` with some still pending), 1 errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    InLine,
    Changes,
    Errors,
}

impl Verdict {
    pub fn code(self) -> u8 {
        match self {
            Verdict::InLine => 0,
            Verdict::Changes => 2,
            Verdict::Errors => 1,
        }
    }
}

/// Output format of `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Credentials of a PhoneSystem may come from the environment instead of a Secret
/// manifest: `SWITCHBOARD_<NAME>_<KEY>`, the PhoneSystem's name upper-cased with `-` and
/// `.` as `_`, the key as in the Secret (e.g. `SWITCHBOARD_OFFICE_PBX_apiKey`).
pub fn env_credentials(system: &str, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let prefix = format!("SWITCHBOARD_{}_", system.to_uppercase().replace(['-', '.'], "_"));
    env.iter().filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone()))).collect()
}

/// Employees' own passwords, from the Secret manifests their `passwordSecretRef` names.
struct ManifestVault {
    passwords: BTreeMap<Owner, Secret>,
}

impl ManifestVault {
    fn new(manifests: &Manifests) -> Self {
        let passwords = manifests
            .employees
            .iter()
            .filter_map(|e| {
                let owner = owner_of(e);
                let r = e.spec.password_secret_ref.as_ref()?;
                let value = manifests.secret_data(&owner.namespace, &r.name)?.remove(&r.key)?;
                Some((owner, Secret::new(value)))
            })
            .collect();
        ManifestVault { passwords }
    }
}

impl Vault for ManifestVault {
    fn password(&self, owner: &Owner) -> Option<Secret> {
        self.passwords.get(owner).cloned()
    }
}

pub fn owner_of(e: &Employee) -> Owner {
    Owner::new(e.metadata.namespace.clone().unwrap_or_default(), e.metadata.name.clone().unwrap_or_default())
}

/// Seniority from `creationTimestamp` when the manifest has one (exported from a
/// cluster), else all equal and the name decides.
fn rank_of(e: &Employee) -> i64 {
    e.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(0)
}

/// One system's result, as `plan --output json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SystemResult {
    namespace: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Plan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    writes: Option<usize>,
}

/// `plan` (`apply: false`) or `sync` (`apply: true`) over the manifests in `dir`.
pub async fn run(
    dir: &Path,
    state_file: Option<&Path>,
    apply: bool,
    format: Format,
    env: &BTreeMap<String, String>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Verdict, Error> {
    let state = match state_file {
        Some(path) => State::open(path)?,
        None => State::in_memory(),
    };
    run_with(dir, &state, apply, format, env, out, err).await
}

/// [`run`] with claims from elsewhere: a [`State::from_cluster_export`] for a `plan` that
/// judges as the operator of that cluster would.
pub async fn run_with(
    dir: &Path,
    state: &State,
    apply: bool,
    format: Format,
    env: &BTreeMap<String, String>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Verdict, Error> {
    let manifests =
        Manifests::load_dir(dir).map_err(|source| Error::Read { path: dir.to_owned(), source })?;
    let mut verdict = Verdict::InLine;
    for problem in &manifests.problems {
        report_problem(err, problem)?;
        verdict = Verdict::Errors;
    }
    let vault = ManifestVault::new(&manifests);
    let mut results = Vec::new();
    // Changes `sync` planned for a `policy: observe` system and, by design, did not make.
    let mut observed = false;
    for system in &manifests.systems {
        let (result, changed) = one_system(system, &manifests, state, &vault, apply, env).await;
        let writes = apply && system.spec.policy.writes();
        observed |= apply && changed && !writes;
        if result.error.is_some() {
            verdict = Verdict::Errors;
        } else if changed && verdict == Verdict::InLine {
            verdict = Verdict::Changes;
        }
        if format == Format::Text {
            print_text(out, &result, writes)?;
        }
        results.push(result);
    }
    // `sync` applied what it planned: only errors leave it unfinished.
    if apply && verdict == Verdict::Changes && !observed {
        verdict = Verdict::InLine;
    }
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, &results)?;
        writeln!(out)?;
    }
    Ok(verdict)
}

fn report_problem(err: &mut impl Write, problem: &Problem) -> Result<(), Error> {
    writeln!(err, "error: {problem}")?;
    Ok(())
}

async fn one_system(
    system: &PhoneSystem,
    manifests: &Manifests,
    state: &State,
    vault: &ManifestVault,
    apply: bool,
    env: &BTreeMap<String, String>,
) -> (SystemResult, bool) {
    let namespace = system.metadata.namespace.clone().unwrap_or_default();
    let name = system.metadata.name.clone().unwrap_or_default();
    let mut result = SystemResult {
        namespace: namespace.clone(),
        name: name.clone(),
        error: None,
        plan: None,
        writes: None,
    };
    let mut data = system
        .spec
        .credentials_secret_ref
        .as_ref()
        .and_then(|r| manifests.secret_data(&namespace, &r.name))
        .unwrap_or_default();
    data.extend(env_credentials(&name, env));
    let settings = Settings::default().for_system(&system.spec);
    let backend = match backends::connect(&system.spec, &Credentials::new(data), settings) {
        Ok(b) => b,
        Err(e) => {
            result.error = Some(e.to_string());
            return (result, false);
        }
    };
    let views: Vec<EmployeeView> = manifests
        .employees
        .iter()
        .filter(|e| e.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .map(|e| {
            let owner = owner_of(e);
            EmployeeView {
                status: state.status(&owner).map(Cow::Owned),
                owner,
                spec: &e.spec,
                rank: rank_of(e),
                deleting: false,
            }
        })
        .collect();
    let progress: Option<std::sync::Arc<dyn engine::Progress>> =
        apply.then(|| std::sync::Arc::new(Bar::default()) as std::sync::Arc<dyn engine::Progress>);
    let options = Options { dry_run: !apply, allow_deletions: None, now: Time(Timestamp::now()), progress };
    let started = Instant::now();
    match engine::sync(&backend, &name, &system.spec, &views, state, vault, &options).await {
        Ok(report) => {
            tracing::info!(system = %name, took_ms = started.elapsed().as_millis() as u64, "synced");
            let changed = !report.plan.is_noop();
            if apply && let Err(e) = state.record(&name, &report) {
                result.error = Some(crate::error_chain(&e));
            }
            result.writes = apply.then_some(report.writes);
            if report.failures > 0 && apply {
                result.error.get_or_insert_with(|| failures(&report));
            }
            result.plan = Some(report.plan);
            (result, changed)
        }
        Err(e) => {
            result.error = Some(e.to_string());
            (result, false)
        }
    }
}

/// Progress of long passes on stderr: a bar on a terminal, a line per tenth otherwise
/// (logs of CI jobs have no use for carriage returns).
struct Bar {
    tty: bool,
    inner: std::sync::Mutex<(Box<dyn Write + Send>, BTreeMap<String, usize>)>,
}

impl Default for Bar {
    fn default() -> Self {
        use std::io::IsTerminal;
        Bar::new(std::io::stderr().is_terminal(), Box::new(std::io::stderr()))
    }
}

impl Bar {
    fn new(tty: bool, out: Box<dyn Write + Send>) -> Self {
        Bar { tty, inner: std::sync::Mutex::new((out, BTreeMap::new())) }
    }
}

/// Passes shorter than this finish before a bar is worth drawing.
const BAR_FROM: usize = 20;
const BAR_WIDTH: usize = 30;

impl engine::Progress for Bar {
    fn advanced(&self, system: &str, done: usize, total: usize) {
        if total < BAR_FROM {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (out, last) = &mut *inner;
        if self.tty {
            let filled = done * BAR_WIDTH / total;
            let _ = write!(
                out,
                "\r  {system} [{}{}] {done}/{total}",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled)
            );
            if done == total {
                let _ = writeln!(out);
            }
            return;
        }
        let tenth = done * 10 / total;
        if last.get(system) != Some(&tenth) {
            last.insert(system.to_owned(), tenth);
            let _ = writeln!(out, "{system}: {done}/{total} writes done");
        }
    }
}

fn failures(report: &Report) -> String {
    format!("{} account(s) could not be brought in line; see the state file for each", report.failures)
}

fn print_text(out: &mut impl Write, result: &SystemResult, applied: bool) -> Result<(), Error> {
    let title = format!("{}/{}", result.namespace, result.name);
    if let Some(error) = &result.error
        && result.plan.is_none()
    {
        writeln!(out, "{title}: error: {error}")?;
        return Ok(());
    }
    let Some(plan) = &result.plan else { return Ok(()) };
    let verb = if applied { "did" } else { "would do" };
    if plan.is_noop() && plan.conflicts.is_empty() && plan.manual.is_empty() && plan.held_deletes.is_empty() {
        writeln!(
            out,
            "{title}: in line ({} account(s) in sync, {} unmanaged left alone)",
            plan.in_sync.len(),
            plan.unmanaged
        )?;
    } else {
        writeln!(out, "{title}: switchboard {verb}:")?;
    }
    for c in &plan.creates {
        writeln!(out, "  + create  {} (extension {})", c.desired.owner, c.desired.extension)?;
    }
    for u in &plan.updates {
        let fields: Vec<String> = u.changes.iter().map(|c| c.field.to_string()).collect();
        writeln!(out, "  ~ update  {} (account {}): {}", u.desired.owner, u.account.id, fields.join(", "))?;
    }
    for a in &plan.adoptions {
        writeln!(out, "  = adopt   {} takes account {} ({:?})", a.desired.owner, a.account.id, a.reason)?;
    }
    for d in &plan.deletes {
        writeln!(out, "  - delete  account {} of {}", d.account.id, d.owner)?;
    }
    for d in &plan.held_deletes {
        writeln!(out, "  ! held    delete of account {} of {} (deletion guard)", d.account.id, d.owner)?;
    }
    for c in &plan.conflicts {
        writeln!(out, "  ! conflict {}: extension {} is taken ({:?})", c.owner, c.extension, c.holder)?;
    }
    for m in &plan.manual {
        writeln!(out, "  ! by hand {}: {:?}", m.owner, m.kind)?;
    }
    if let Some(error) = &result.error {
        writeln!(out, "  error: {error}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::engine::Progress;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn progress_without_a_terminal_is_a_line_per_tenth() {
        let out = Shared::default();
        let bar = Bar::new(false, Box::new(out.clone()));
        for done in 1..=100 {
            bar.advanced("pbx", done, 100);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.ends_with("pbx: 100/100 writes done\n"));
        assert!(!text.contains('\r'));
    }

    #[test]
    fn progress_on_a_terminal_redraws_one_bar() {
        let out = Shared::default();
        let bar = Bar::new(true, Box::new(out.clone()));
        for done in 1..=40 {
            bar.advanced("pbx", done, 40);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\r').count(), 40);
        assert!(text.ends_with(&format!("[{}] 40/40\n", "#".repeat(BAR_WIDTH))), "{text}");
    }

    #[test]
    fn short_passes_draw_nothing() {
        let out = Shared::default();
        let bar = Bar::new(true, Box::new(out.clone()));
        bar.advanced("pbx", 1, 3);
        assert!(out.0.lock().unwrap().is_empty());
    }

    #[test]
    fn environment_credentials_are_named_after_the_system() {
        let env = BTreeMap::from([
            ("SWITCHBOARD_OFFICE_PBX_apiKey".to_owned(), "k".to_owned()),
            ("SWITCHBOARD_OTHER_apiKey".to_owned(), "x".to_owned()),
        ]);
        assert_eq!(
            env_credentials("office-pbx", &env),
            BTreeMap::from([("apiKey".to_owned(), "k".to_owned())])
        );
    }
}
