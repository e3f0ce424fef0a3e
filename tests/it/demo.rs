//! `switchboard demo`, the README's first command, run in-process.

#[tokio::test]
async fn the_demo_converges_corrects_drift_and_then_writes_nothing() {
    let mut out = Vec::new();
    switchboard::demo::run(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    for system in [
        "office-pbx (mikopbx)",
        "contact-center (thulium)",
        "broadworks (apio)",
        "cloud-pbx (telphin)",
        "call-tracking (ringostat)",
    ] {
        assert!(text.contains(system), "{system} missing from:\n{text}");
    }
    assert!(!text.contains("Failed") && !text.contains("Conflict"), "{text}");
    assert!(text.contains("updated email (changed-by-hand@example.com -> "), "{text}");
    let steady = text.split("4. Steady state").nth(1).unwrap();
    assert_eq!(steady.matches(" 0 write(s)").count(), 5, "{steady}");
}

#[test]
fn every_example_file_is_embedded_in_the_demo() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut on_disk = Vec::new();
    for dir in ["examples/phone-systems", "examples/employees"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            on_disk.push(format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy()));
        }
    }
    on_disk.sort();
    let mut embedded: Vec<String> =
        switchboard::demo::EXAMPLES.iter().map(|(f, _)| (*f).to_owned()).collect();
    embedded.sort();
    assert_eq!(embedded, on_disk);
    for (file, text) in switchboard::demo::EXAMPLES {
        assert_eq!(*text, std::fs::read_to_string(root.join(file)).unwrap(), "{file}");
    }
}
