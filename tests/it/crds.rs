//! `crds/` must be what the code generates: it is what users apply.

#[test]
fn crds_dir_matches_the_code() {
    let generated = switchboard::api::crds_yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "crds/crds.yaml is stale: run `cargo run -- crd > crds/crds.yaml` and commit it"
    );
}

#[test]
fn crds_carry_names_columns_and_status() {
    let crds = switchboard::api::crds();
    let names: Vec<_> = crds.iter().map(|c| c.spec.names.kind.as_str()).collect();
    assert_eq!(names, ["Employee", "PhoneSystem"]);
    for crd in &crds {
        assert_eq!(crd.spec.group, "switchboard.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["switchboard".to_owned()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<_> =
            version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        match crd.spec.names.kind.as_str() {
            "Employee" => {
                assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["emp".to_owned()][..]));
                assert_eq!(columns, ["Extension", "Systems", "Ready", "Age"]);
            }
            _ => {
                assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["pbx".to_owned()][..]));
                assert_eq!(
                    columns,
                    [
                        "Type", "Policy", "Declared", "InSync", "Create", "Update", "Delete", "Adopt",
                        "Ready", "Age"
                    ]
                );
            }
        }
    }
}

/// `kubectl explain employee.spec` reads these: every property must say what it is.
#[test]
fn every_property_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                if sub.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in switchboard::api::crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        walk(&crd.spec.names.kind, &schema["openAPIV3Schema"], &mut missing);
    }
    // Conditions are metav1.Condition, documented by Kubernetes itself.
    missing.retain(|p| !p.contains(".conditions[]."));
    assert!(missing.is_empty(), "undocumented properties: {missing:#?}");
}
