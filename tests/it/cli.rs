//! `plan` and `sync` over a folder, against the simulators.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use serde_json::Value;
use switchboard::{
    api::BackendKind,
    cli::{self, Format, Verdict},
    sim::{self, Running},
};

struct Setup {
    dir: PathBuf,
    state: PathBuf,
    sims: BTreeMap<BackendKind, Running>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The examples in a fresh folder, pointed at fresh simulators.
async fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("employees")).unwrap();
    let mut sims = BTreeMap::new();
    for kind in BackendKind::ALL {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        sims.insert(kind, sim::spawn(sim::default_simulator(kind), addr).await.unwrap());
    }
    for (file, text) in switchboard::demo::EXAMPLES {
        let mut text = (*text).to_owned();
        for (kind, running) in &sims {
            let real = match kind {
                BackendKind::Mikopbx => "https://pbx.example.com",
                BackendKind::Thulium => "https://acme.thulium.com",
                BackendKind::Apio => "https://apio.example.com",
                BackendKind::Telphin => "https://apiproxy.telphin.ru",
                BackendKind::Ringostat => "https://api.ringostat.net",
            };
            text = text.replace(real, &running.url);
        }
        let path = dir.join(file.trim_start_matches("examples/").replace("phone-systems/", ""));
        std::fs::write(path, text).unwrap();
    }
    let state = dir.join("state.json");
    Setup { dir, state, sims }
}

async fn run(setup: &Setup, apply: bool, format: Format) -> (Verdict, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let verdict =
        cli::run(&setup.dir, Some(&setup.state), apply, format, &BTreeMap::new(), &mut out, &mut err)
            .await
            .unwrap();
    (verdict, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn accounts(setup: &Setup, kind: BackendKind) -> Vec<Value> {
    setup.sims[&kind].sim.dump().as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn plan_exits_2_with_changes_and_writes_nothing() {
    let s = setup("plan").await;
    let (verdict, out, err) = run(&s, false, Format::Text).await;
    assert_eq!(verdict, Verdict::Changes, "{out}\n{err}");
    assert_eq!(verdict.code(), 2);
    assert!(out.contains("default/office-pbx: switchboard would do:"), "{out}");
    assert!(out.contains("+ create  default/ivan-petrenko (extension 201)"), "{out}");
    for kind in BackendKind::ALL {
        assert!(accounts(&s, kind).is_empty(), "plan wrote to {kind}");
    }
    assert!(!s.state.exists(), "plan must not write the state");
}

#[tokio::test]
async fn plan_json_lists_every_system_and_its_creates() {
    let s = setup("json").await;
    let (_, out, _) = run(&s, false, Format::Json).await;
    let systems: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(systems.len(), 5);
    let pbx = systems.iter().find(|s| s["name"] == "office-pbx").unwrap();
    assert_eq!(pbx["plan"]["creates"].as_array().unwrap().len(), 8);
    assert_eq!(pbx["plan"]["creates"][0]["desired"]["owner"]["namespace"], "default");
}

#[tokio::test]
async fn sync_converges_and_a_second_plan_has_nothing_to_do() {
    let s = setup("sync").await;
    let (verdict, out, err) = run(&s, true, Format::Text).await;
    assert_eq!(verdict, Verdict::InLine, "{out}\n{err}");
    assert_eq!(accounts(&s, BackendKind::Mikopbx).len(), 8);
    assert_eq!(accounts(&s, BackendKind::Thulium).len(), 4);
    assert_eq!(accounts(&s, BackendKind::Apio).len(), 5);
    assert_eq!(accounts(&s, BackendKind::Telphin).len(), 5);
    assert_eq!(accounts(&s, BackendKind::Ringostat).len(), 5);
    let (verdict, out, _) = run(&s, false, Format::Json).await;
    assert_eq!(verdict, Verdict::InLine, "{out}");
    let systems: Vec<Value> = serde_json::from_str(&out).unwrap();
    for system in systems {
        for kind in ["creates", "updates", "adoptions", "deletes", "conflicts"] {
            assert_eq!(system["plan"][kind].as_array().map(Vec::len), Some(0), "{kind} in {system}");
        }
    }
}

/// The process dies after the PBX created the account and before the state recorded
/// it: the state holds only the intent. The next sync claims the account.
#[tokio::test]
async fn a_crash_between_create_and_state_write_makes_no_duplicate() {
    let s = setup("crash").await;
    let ext = s.sims[&BackendKind::Mikopbx]
        .sim
        .seed(&serde_json::json!({"number": "201", "user_username": "Иван Петренко",
                                  "user_email": "ivan.petrenko@example.com", "sip_secret": "Secret-12345"}))
        .unwrap();
    let intent = serde_json::json!({"employees": {"default/ivan-petrenko": {"phoneSystems": [
        {"name": "office-pbx", "extension": "201", "state": "Pending"}]}}});
    std::fs::write(&s.state, serde_json::to_vec(&intent).unwrap()).unwrap();
    let (verdict, out, err) = run(&s, true, Format::Text).await;
    assert_eq!(verdict, Verdict::InLine, "{out}\n{err}");
    assert!(out.contains("= adopt   default/ivan-petrenko takes account"), "{out}");
    let on_201: Vec<Value> =
        accounts(&s, BackendKind::Mikopbx).into_iter().filter(|a| a["number"] == "201").collect();
    assert_eq!(on_201.len(), 1, "duplicate on 201: {on_201:#?} (seeded {ext})");
}

#[tokio::test]
async fn a_broken_file_is_reported_and_the_rest_is_planned() {
    let s = setup("broken").await;
    std::fs::write(
        s.dir.join("employees/broken.yaml"),
        "apiVersion: switchboard.dev/v1alpha1\nkind: Employee\nmetadata: {name: broken}\nspec:\n  givenName: X\n  familyName: Y\n  email: x@example.com\n  extension: {nested: true}\n",
    )
    .unwrap();
    let (verdict, out, err) = run(&s, false, Format::Text).await;
    assert_eq!(verdict, Verdict::Errors);
    assert!(err.contains("broken.yaml (document 1): spec.extension:"), "{err}");
    assert!(out.contains("+ create  default/jane-doe"), "the rest must still be planned: {out}");
}

#[tokio::test]
async fn credentials_can_come_from_the_environment() {
    let s = setup("env").await;
    std::fs::write(
        s.dir.join("mikopbx.yaml"),
        std::fs::read_to_string(s.dir.join("mikopbx.yaml")).unwrap().replace("apiKey: ", "unused: "),
    )
    .unwrap();
    let key = s.sims[&BackendKind::Mikopbx].sim.credentials()["apiKey"].clone();
    let env = BTreeMap::from([("SWITCHBOARD_OFFICE_PBX_apiKey".to_owned(), key)]);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let verdict = cli::run(&s.dir, None, false, Format::Json, &env, &mut out, &mut err).await.unwrap();
    let systems: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let pbx = systems.iter().find(|s| s["name"] == "office-pbx").unwrap();
    assert!(pbx.get("error").is_none(), "{pbx}");
    assert_eq!(verdict, Verdict::Changes);
}

#[tokio::test]
async fn import_then_plan_shows_no_changes() {
    let s = setup("import").await;
    let (verdict, out, err) = run(&s, true, Format::Text).await;
    assert_eq!(verdict, Verdict::InLine, "{out}\n{err}");

    // A second repository, started from what the PBXs hold.
    let repo = s.dir.join("imported");
    std::fs::create_dir_all(&repo).unwrap();
    let state = switchboard::state::State::open(&repo.join("state.json")).unwrap();
    let mut manifests = switchboard::manifests::Manifests::default();
    let mut imported = 0;
    for file in ["mikopbx.yaml", "thulium.yaml", "apio.yaml", "telphin.yaml", "ringostat.yaml"] {
        let text = std::fs::read_to_string(s.dir.join(file)).unwrap();
        std::fs::write(repo.join(file), &text).unwrap();
        manifests.add_text(file, &text);
    }
    for system in &manifests.systems {
        let r = system.spec.credentials_secret_ref.as_ref().unwrap();
        let data = manifests.secret_data("default", &r.name).unwrap();
        let out_dir = repo.join(system.metadata.name.as_deref().unwrap());
        let done = switchboard::import::run(
            system,
            &switchboard::backends::Credentials::new(data),
            &out_dir,
            Some(&state),
        )
        .await
        .unwrap();
        assert!(done.skipped.is_empty(), "{:?}", done.skipped);
        imported += done.written.len();
    }
    assert_eq!(imported, 8 + 4 + 5 + 5 + 5);
    drop(state);

    let mut out = Vec::new();
    let mut err = Vec::new();
    let verdict = cli::run(
        &repo,
        Some(&repo.join("state.json")),
        false,
        Format::Text,
        &BTreeMap::new(),
        &mut out,
        &mut err,
    )
    .await
    .unwrap();
    let (out, err) = (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap());
    assert_eq!(verdict, Verdict::InLine, "{out}\n{err}");
    assert_eq!(out.matches(": in line (").count(), 5, "{out}");
}

/// A table of bad Employees and PhoneSystems dropped into a good folder: each is
/// refused with a message naming the field and the rule, and the good Employees still
/// converge.
#[tokio::test]
async fn hostile_input_is_refused_by_name_and_disturbs_no_one() {
    let s = setup("hostile").await;
    let employee = |name: &str, spec: &str| {
        format!(
            "apiVersion: switchboard.dev/v1alpha1\nkind: Employee\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
        )
    };
    let base = |ext: &str, system: &str| {
        format!(
            "  givenName: Ann\n  familyName: Lee\n  email: ann@example.com\n  extension: \"{ext}\"\n  phoneSystems: [{{name: {system}}}]"
        )
    };
    // (file, content, what the refusal must say)
    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong-type.yaml", employee("wrong-type", &base("301", "office-pbx").replace("\"301\"", "[301]")), "spec.extension: must be of type string"),
        ("huge.yaml", employee("huge", &base("302", "office-pbx").replace("Lee", &"L".repeat(100_000))), "spec.familyName: may not be longer than 64"),
        ("control.yaml", employee("control", &base("303", "office-pbx").replace("Ann", "\"A\\u0007nn\"")), "spec.givenName: does not match"),
        ("one-digit.yaml", employee("one-digit", &base("7", "office-pbx")), "spec.extension: does not match"),
        ("no-at.yaml", employee("no-at", &base("304", "office-pbx").replace("ann@example.com", "ann.example.com")), "spec.email: does not match"),
        ("unknown-field.yaml", employee("unknown-field", &format!("{}\n  shoeSize: 44", base("305", "office-pbx"))), "spec.shoeSize: unknown field"),
        ("two-blocks.yaml", "apiVersion: switchboard.dev/v1alpha1\nkind: PhoneSystem\nmetadata: {name: two-blocks}\nspec:\n  mikopbx: {url: \"http://127.0.0.1:9\"}\n  thulium: {url: \"http://127.0.0.1:9\"}\n".into(), "spec: exactly one backend block"),
    ];
    // Judged by the backend, not the schema: reported on the system's result.
    let backend_cases: Vec<(&str, String)> = vec![
        (
            "digits-in-name.yaml",
            employee("digits-in-name", &base("306", "call-tracking").replace("Lee", "Lee2")),
        ),
        ("six-digits.yaml", employee("six-digits", &base("123456", "call-tracking").replace("ann@", "six@"))),
    ];
    let systems_cases: Vec<(&str, String, &str)> = vec![
        ("no-secret.yaml", "apiVersion: switchboard.dev/v1alpha1\nkind: PhoneSystem\nmetadata: {name: no-secret}\nspec:\n  thulium: {url: \"https://thulium.example.com\"}\n  credentialsSecretRef: {name: missing}\n".into(), "no key \"username\""),
        ("no-key.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: partial}\nstringData: {username: u}\n---\napiVersion: switchboard.dev/v1alpha1\nkind: PhoneSystem\nmetadata: {name: no-key}\nspec:\n  thulium: {url: \"https://thulium.example.com\"}\n  credentialsSecretRef: {name: partial}\n".into(), "no key \"password\""),
        ("nowhere.yaml", "apiVersion: switchboard.dev/v1alpha1\nkind: PhoneSystem\nmetadata: {name: nowhere}\nspec:\n  mikopbx: {url: \"http://127.0.0.1:9\"}\n".into(), "unreachable"),
    ];
    for (file, text, _) in cases.iter().chain(systems_cases.iter()) {
        std::fs::write(s.dir.join(file), text).unwrap();
    }
    for (file, text) in &backend_cases {
        std::fs::write(s.dir.join(file), text).unwrap();
    }
    let (verdict, out, err) = run(&s, true, Format::Text).await;
    assert_eq!(verdict, Verdict::Errors);
    for (file, _, says) in &cases {
        let line =
            err.lines().find(|l| l.contains(file)).unwrap_or_else(|| panic!("{file} not reported:\n{err}"));
        assert!(line.contains(says), "{file}: expected {says:?} in {line:?}");
    }
    for (name, _, says) in &systems_cases {
        let name = name.trim_end_matches(".yaml");
        let line = out
            .lines()
            .find(|l| l.contains(&format!("default/{name}")))
            .unwrap_or_else(|| panic!("{name}:\n{out}"));
        assert!(line.contains(says), "{name}: expected {says:?} in {line:?}");
    }
    let state = std::fs::read_to_string(&s.state).unwrap();
    assert!(
        state.contains("spec.givenName") || state.contains("spec.familyName"),
        "digits in a Ringostat name: {state}"
    );
    assert!(state.contains("2–5 digits"), "a 6-digit Ringostat extension: {state}");
    // Nobody else was disturbed: every example account is there, once.
    assert_eq!(accounts(&s, BackendKind::Mikopbx).len(), 8);
    assert_eq!(accounts(&s, BackendKind::Ringostat).len(), 5);
    assert_eq!(accounts(&s, BackendKind::Thulium).len(), 4);
}
