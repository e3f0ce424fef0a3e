//! MikoPBX 2023.2, the release the seed's own script was written for: the script
//! provisions its accounts, then `switchboard sync` takes them over with
//! `adoption: adopt`, and a converged pass costs what the README says.

use std::{collections::BTreeMap, time::Duration};

use switchboard::{
    cli::{self, Format, Verdict},
    sim::mikopbx::{Dialect, Generation, MikoPbxConfig},
};

use super::{dump, pbx_with};

/// Runs the seed's script (50 employees, numbers 201–250) against `url`.
async fn seed_script(url: &str) -> String {
    let check = tokio::process::Command::new("python3").args(["-c", "import faker, requests"]).output().await;
    match check {
        Err(e) => panic!("python3 is required for this test (CI installs it): {e}"),
        Ok(out) => assert!(
            out.status.success(),
            "python3 lacks faker/requests; run `pip install faker requests`: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mikopbx_seed_script.py");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("python3")
            .arg(script)
            .env("MIKOPBX_URL", url)
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .output(),
    )
    .await
    .expect("the seed script did not finish in 180 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "script failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_script_provisions_a_2023_2_and_sync_adopts_every_account() {
    let p = pbx_with(MikoPbxConfig {
        dialect: Dialect { generation: Generation::V2023_2, ..Dialect::default() },
        ..MikoPbxConfig::default()
    })
    .await;
    let out = seed_script(&p.running.url).await;
    assert_eq!(out.lines().filter(|l| l.starts_with("Created user ")).count(), 50, "{out}");
    assert_eq!(dump(&p).len(), 50);

    // A folder with the PhoneSystem (the legacy API, on 127.0.0.1: no credentials) and
    // one Employee per number the script used.
    let dir = std::env::temp_dir().join(format!("switchboard-mikopbx-2023-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pbx.yaml"),
        format!(
            "apiVersion: switchboard.dev/v1alpha1\nkind: PhoneSystem\nmetadata: {{name: office-pbx, namespace: default}}\n\
             spec:\n  mikopbx: {{url: \"{}\", apiGeneration: legacy}}\n  adoption: adopt\n  maxConcurrency: 4\n",
            p.running.url
        ),
    )
    .unwrap();
    let mut employees = String::new();
    for n in 201..=250 {
        employees.push_str(&format!(
            "---\napiVersion: switchboard.dev/v1alpha1\nkind: Employee\nmetadata: {{name: person-{n}, namespace: default}}\n\
             spec:\n  givenName: Person\n  familyName: \"{n}\"\n  email: person{n}@example.com\n  extension: \"{n}\"\n\
             \x20 phoneSystems: [{{name: office-pbx}}]\n"
        ));
    }
    std::fs::write(dir.join("employees.yaml"), employees).unwrap();
    let state = dir.join("state.json");
    let run = |apply: bool| {
        let (dir, state) = (dir.clone(), state.clone());
        async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let verdict =
                cli::run(&dir, Some(&state), apply, Format::Text, &BTreeMap::new(), &mut out, &mut err)
                    .await
                    .unwrap();
            (verdict, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
        }
    };

    p.running.reset_stats();
    let (verdict, out, err) = run(true).await;
    assert_eq!(verdict, Verdict::InLine, "{out}\n{err}");
    let adopted = p.running.stats();
    let all = dump(&p);
    assert_eq!(all.len(), 50, "adopted, none created: {out}");
    for n in 201..=250 {
        let rec = &all[&n.to_string()];
        assert_eq!(rec["user_username"], format!("Person {n}"), "{out}");
        assert_eq!(rec["user_email"], format!("person{n}@example.com"));
        // What the Employee does not declare stays as the script made it.
        assert_eq!(rec["fwd_forwarding"], rec["mobile_number"]);
    }
    // The 2023.2 listing: the admin page (once) and a getRecord per account; no login.
    assert_eq!(adopted.total("extensionsIndex"), 1, "{adopted:?}");
    assert_eq!(adopted.total("getNewRecords"), 0, "{adopted:?}");
    assert_eq!(adopted.total("saveRecord"), 50, "{adopted:?}");
    assert_eq!(adopted.total("sessionStart"), 0, "{adopted:?}");

    // Converged: a second sync changes nothing, and costs the page alone: it carries
    // every field these Employees declare (none of forwarding, recording, DTMF), so no
    // record is read, even by a new process that remembers none.
    p.running.reset_stats();
    let (verdict, out, _) = run(true).await;
    assert_eq!(verdict, Verdict::InLine, "{out}");
    let steady = p.running.stats();
    assert_eq!(steady.total("saveRecord"), 0, "{steady:?}");
    assert_eq!(steady.total("extensionsIndex"), 1, "{steady:?}");
    assert_eq!(steady.total("getRecord"), 0, "{steady:?}");
    assert_eq!(steady.requests, 1, "{steady:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
