//! `docs/gitops.md`: the Argo CD health checks (Lua) and the Flux health-check expressions
//! (CEL) it shows are taken from the page itself and run against statuses: built from the
//! operator's own condition constructors here, and read from the API server after real
//! passes in `tryit.rs` and `observe.rs`.
//!
//! The Lua runs under a Lua 5.1 interpreter (Argo CD's gopher-lua speaks 5.1): Debian's
//! `lua5.1` (`.ci/run` installs it). Without one, the Lua checks are skipped, loudly; the
//! CEL checks always run (the `cel` crate, as kube-cel re-exports it).

use std::{collections::BTreeMap, io::Write, process::Command, sync::OnceLock};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube_cel::cel;
use serde_json::{Value, json};
use switchboard::api::conditions::{self, Abnormal, reason};

fn page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gitops.md")).expect("docs/gitops.md")
}

/// The fenced YAML blocks of the page, parsed.
fn yaml_blocks() -> Vec<Value> {
    let text = page();
    let mut blocks = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("\n```").expect("a closed block");
        if let Ok(doc) = serde_saphyr::from_str::<Value>(&body[..end]) {
            blocks.push(doc);
        }
        rest = &body[end..];
    }
    blocks
}

/// The Lua health script the page gives for `kind`.
fn lua_script(kind: &str) -> String {
    let key = format!("resource.customizations.health.switchboard.dev_{kind}");
    yaml_blocks()
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "argocd-cm")
        .and_then(|d| d["data"][&key].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("docs/gitops.md: argocd-cm has no {key}"))
}

/// A Lua 5.1 interpreter, if the machine has one.
fn lua() -> Option<&'static str> {
    static FOUND: OnceLock<Option<&'static str>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let found = ["lua5.1", "lua", "luajit"].into_iter().find(|bin| {
            Command::new(bin)
                .args(["-e", "assert(_VERSION == 'Lua 5.1')"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if found.is_none() {
            eprintln!("gitops: no Lua 5.1 interpreter (apt-get install lua5.1): the Argo CD health checks are not run");
        }
        found
    })
}

/// A JSON value as a Lua table constructor, as Argo CD hands objects to the scripts.
fn to_lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for byte in s.bytes() {
                match byte {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    0x20..=0x7e => out.push(char::from(byte)),
                    other => out.push_str(&format!("\\{other}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!("{{{}}}", items.iter().map(to_lua).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", to_lua(&Value::String(k.clone())), to_lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What the page's Argo CD health check says of `object` (`kind` Employee or
/// PhoneSystem): `(status, message)`; `None` without a Lua interpreter.
pub(crate) fn argo_health(kind: &str, object: &Value) -> Option<(String, String)> {
    let lua = lua()?;
    let program = format!(
        "obj = {}\nlocal function health()\n{}\nend\nlocal hs = health()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        to_lua(object),
        lua_script(kind)
    );
    let mut child = Command::new(lua)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start lua");
    child.stdin.take().expect("stdin").write_all(program.as_bytes()).expect("write the program");
    let out = child.wait_with_output().expect("run lua");
    assert!(out.status.success(), "{kind} health check failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (status, message) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    Some((status.to_owned(), message.to_owned()))
}

/// How the page's Flux health-check expressions judge `object`: `inProgress`, `failed`,
/// `current`, in Flux's order; `None` when they cannot be evaluated (no status yet),
/// which Flux treats as not ready.
pub(crate) fn flux_health(kind: &str, object: &Value) -> Option<&'static str> {
    let kustomization = yaml_blocks()
        .into_iter()
        .find(|d| d["kind"] == "Kustomization" && d["spec"]["healthCheckExprs"].is_array())
        .expect("docs/gitops.md: a Kustomization with healthCheckExprs");
    let exprs = kustomization["spec"]["healthCheckExprs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == kind && e["apiVersion"] == "switchboard.dev/v1alpha1")
        .unwrap_or_else(|| panic!("no healthCheckExprs for {kind}"))
        .clone();
    let mut context = cel::Context::default();
    for (name, value) in object.as_object().expect("an object") {
        context.add_variable_from_value(name.clone(), cel::to_value(value).expect("a CEL value"));
    }
    for verdict in ["inProgress", "failed", "current"] {
        let Some(source) = exprs[verdict].as_str() else { continue };
        let program = cel::Program::compile(source).unwrap_or_else(|e| panic!("{kind} {verdict}: {e}"));
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => return Some(verdict),
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => panic!("{kind} {verdict}: not a bool: {other:?}"),
            Err(_) => return None,
        }
    }
    Some("none")
}

fn now() -> Time {
    Time(Timestamp::from_second(1_900_000_000).expect("a time"))
}

/// An object of `kind` at generation 2 with these conditions, as the operator writes them.
fn object(kind: &str, observed: i64, conditions: &[(&str, bool, &str)], spec: Value) -> Value {
    let conditions: Vec<_> = conditions
        .iter()
        .map(|(type_, status, why)| {
            conditions::new(type_, *status, why, format!("{why}: details"), Some(observed), &now())
        })
        .collect();
    json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "telephony", "generation": 2},
        "spec": spec,
        "status": {"observedGeneration": observed, "conditions": conditions},
    })
}

#[test]
fn the_health_checks_read_the_conditions_as_the_page_says() {
    let employee =
        |observed, conditions: &[(&str, bool, &str)]| object("Employee", observed, conditions, json!({}));
    let pbx = |conditions: &[(&str, bool, &str)], spec: Value| object("PhoneSystem", 2, conditions, spec);
    let settles =
        [reason::PENDING, reason::RATE_LIMITED, reason::PBX_UNREACHABLE, reason::PASSWORD_SECRET_MISSING];
    let needs_a_person = [
        reason::EXTENSION_TAKEN,
        reason::UPDATE_UNSUPPORTED,
        reason::DELETE_UNSUPPORTED,
        reason::VALIDATION_FAILED,
        reason::AUTH_FAILED,
        reason::PHONE_SYSTEM_NOT_FOUND,
        reason::DELETION_GUARD,
        reason::UNREADABLE_RECORDS,
    ];
    // (what, kind, object, Argo CD, Flux)
    let mut cases: Vec<(String, &str, Value, &str, Option<&str>)> = vec![
        (
            "an Employee without a status".into(),
            "Employee",
            json!({"metadata": {"name": "x", "generation": 1}, "spec": {}}),
            "Progressing",
            None,
        ),
        (
            "an Employee in sync".into(),
            "Employee",
            employee(2, &[("Ready", true, reason::IN_SYNC)]),
            "Healthy",
            Some("current"),
        ),
        (
            "an Employee whose change is not seen yet".into(),
            "Employee",
            employee(1, &[("Ready", true, reason::IN_SYNC)]),
            "Progressing",
            Some("inProgress"),
        ),
        (
            "an Employee Stalled (kstatus)".into(),
            "Employee",
            employee(
                2,
                &[("Ready", false, reason::EXTENSION_TAKEN), ("Stalled", true, reason::EXTENSION_TAKEN)],
            ),
            "Degraded",
            Some("failed"),
        ),
        (
            "an Employee Reconciling (kstatus)".into(),
            "Employee",
            employee(2, &[("Ready", true, reason::IN_SYNC), ("Reconciling", true, reason::PENDING)]),
            "Progressing",
            Some("inProgress"),
        ),
        (
            "a PhoneSystem in sync".into(),
            "PhoneSystem",
            pbx(&[("Ready", true, reason::IN_SYNC), ("Synced", true, reason::SYNCED)], json!({})),
            "Healthy",
            Some("current"),
        ),
        (
            "a PhoneSystem observing".into(),
            "PhoneSystem",
            pbx(
                &[("Ready", true, reason::IN_SYNC), ("Synced", false, reason::OBSERVING)],
                json!({"policy": "observe"}),
            ),
            "Suspended",
            Some("current"),
        ),
        (
            "a suspended PhoneSystem".into(),
            "PhoneSystem",
            pbx(
                &[("Ready", true, reason::IN_SYNC), ("Synced", true, reason::SYNCED)],
                json!({"suspend": true}),
            ),
            "Suspended",
            Some("current"),
        ),
        (
            "a PhoneSystem waiting for its quota".into(),
            "PhoneSystem",
            pbx(
                &[
                    ("Ready", true, reason::IN_SYNC),
                    ("Synced", false, reason::RATE_LIMITED),
                    ("Reconciling", true, reason::RATE_LIMITED),
                ],
                json!({}),
            ),
            "Progressing",
            Some("inProgress"),
        ),
        (
            "a PhoneSystem whose Employees failed".into(),
            "PhoneSystem",
            pbx(&[("Ready", true, reason::IN_SYNC), ("Synced", false, reason::VALIDATION_FAILED)], json!({})),
            "Healthy",
            Some("current"),
        ),
    ];
    // Each reason with and without the kstatus condition the operator now writes with it
    // (`conditions::abnormal`): statuses of older versions have none.
    let kstatus = |why: &'static str| match conditions::abnormal(why) {
        Abnormal::Reconciling => Some(("Reconciling", true, why)),
        Abnormal::Stalled => Some(("Stalled", true, why)),
        Abnormal::Neither => None,
    };
    for why in settles {
        assert_eq!(conditions::abnormal(why), Abnormal::Reconciling, "{why}");
        for with in [None, kstatus(why)] {
            let conds: Vec<_> = [("Ready", false, why)].into_iter().chain(with).collect();
            let o = employee(2, &conds);
            cases.push((
                format!("an Employee {why} {with:?}"),
                "Employee",
                o,
                "Progressing",
                Some("inProgress"),
            ));
        }
    }
    for why in needs_a_person {
        assert_eq!(conditions::abnormal(why), Abnormal::Stalled, "{why}");
        for with in [None, kstatus(why)] {
            let conds: Vec<_> = [("Ready", false, why)].into_iter().chain(with).collect();
            let o = employee(2, &conds);
            cases.push((format!("an Employee {why} {with:?}"), "Employee", o, "Degraded", Some("failed")));
        }
    }
    cases.push((
        "an Employee whose generation waits for a pass".into(),
        "Employee",
        employee(2, &[("Ready", true, reason::IN_SYNC), ("Reconciling", true, reason::PASS_PENDING)]),
        "Progressing",
        Some("inProgress"),
    ));
    for why in
        [reason::PBX_UNREACHABLE, reason::AUTH_FAILED, reason::CREDENTIALS_MISSING, reason::INVALID_SPEC]
    {
        // The PhoneSystem's own PbxUnreachable is left to Ready (`system_status`).
        let with = kstatus(why).filter(|_| why != reason::PBX_UNREACHABLE);
        let conds: Vec<_> = [("Ready", false, why), ("Synced", false, why)].into_iter().chain(with).collect();
        let o = pbx(&conds, json!({}));
        cases.push((format!("a PhoneSystem {why}"), "PhoneSystem", o, "Degraded", Some("failed")));
    }
    for why in [reason::DELETION_GUARD, reason::UNREADABLE_RECORDS] {
        let conds: Vec<_> = [("Ready", true, reason::IN_SYNC), ("Synced", false, why)]
            .into_iter()
            .chain(kstatus(why))
            .collect();
        let o = pbx(&conds, json!({}));
        cases.push((format!("a PhoneSystem {why}"), "PhoneSystem", o, "Degraded", Some("failed")));
    }
    cases.push((
        "a PhoneSystem sending its creates".into(),
        "PhoneSystem",
        pbx(
            &[
                ("Ready", true, reason::IN_SYNC),
                ("Synced", true, reason::SYNCED),
                ("Reconciling", true, reason::CREATING),
            ],
            json!({}),
        ),
        "Progressing",
        Some("inProgress"),
    ));
    let mut seen = BTreeMap::new();
    for (what, kind, object, argo, flux) in &cases {
        assert_eq!(flux_health(kind, object), *flux, "Flux, {what}");
        // Where the operator wrote its kstatus conditions, kstatus alone agrees with the
        // expressions, but for the two places the page names.
        let (computed, _) = crate::kstatus::compute(object);
        let has_kstatus = object["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Reconciling" || c["type"] == "Stalled"));
        let expected = match *flux {
            Some("inProgress") => "InProgress",
            Some("failed") => "Failed",
            _ => "Current",
        };
        let down = what.ends_with(reason::PBX_UNREACHABLE) && *kind == "PhoneSystem";
        if object.get("status").is_some() && (has_kstatus || expected != "Failed") && !down {
            assert_eq!(computed, expected, "kstatus, {what}");
        }
        if let Some((status, message)) = argo_health(kind, object) {
            assert_eq!(status, *argo, "Argo CD, {what}: {message}");
            *seen.entry(status).or_insert(0) += 1;
        }
    }
    if lua().is_some() {
        assert_eq!(seen.len(), 4, "Healthy, Progressing, Degraded and Suspended all occur: {seen:?}");
    }
}

#[test]
fn a_failing_message_reaches_argo_cd() {
    let o = object("Employee", 2, &[("Ready", false, reason::EXTENSION_TAKEN)], json!({}));
    if let Some((_, message)) = argo_health("Employee", &o) {
        assert_eq!(message, "ExtensionTaken: ExtensionTaken: details");
    }
    // Quotes, backslashes and non-ASCII text survive the trip into Lua.
    let mut o = object("Employee", 2, &[("Ready", true, reason::IN_SYNC)], json!({}));
    o["status"]["conditions"][0]["message"] = json!("Ольга \"O\\k\"\nnext");
    if let Some((status, message)) = argo_health("Employee", &o) {
        assert_eq!((status.as_str(), message.as_str()), ("Healthy", "Ольга \"O\\k\"\nnext"));
    }
}
