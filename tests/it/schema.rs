//! What the API server would admit, judged from the committed CRDs without a cluster:
//! the OpenAPI schema (types, patterns, enums, lengths, required), unknown fields (as
//! `kubectl apply`'s default strict field validation rejects them), list-map key
//! uniqueness, and the CEL rules (`x-kubernetes-validations`, evaluated by kube-cel).

use serde_json::{Value, json};

/// The admission checks of both CRDs.
pub struct Admission {
    schemas: Vec<(String, Value)>,
}

impl Admission {
    pub fn from_crds_dir() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let schemas = docs
            .into_iter()
            .map(|crd| {
                let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
                (kind, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone())
            })
            .collect();
        Admission { schemas }
    }

    /// The reasons the API server would refuse `manifest`, each starting with the path of
    /// the field at fault. Empty: admitted.
    pub fn refusals(&self, manifest: &Value) -> Vec<String> {
        let kind = manifest["kind"].as_str().unwrap_or_default();
        let Some((_, schema)) = self.schemas.iter().find(|(k, _)| k == kind) else {
            return vec![format!("kind: no CRD for {kind:?}")];
        };
        let mut errors = Vec::new();
        let object = without_root_meta(manifest);

        let structural = jsonschema::validator_for(&as_json_schema(schema)).unwrap();
        for err in structural.iter_errors(&object) {
            errors.push(format!("{}: {err}", dotted(&err.instance_path().to_string())));
        }
        unknown_fields("", schema, &object, &mut errors);
        list_map_keys("", schema, &object, &mut errors);
        if let Err(cel) = kube_cel::validate(schema, &object, None) {
            for e in cel.into_vec() {
                errors.push(format!("{}: {}", e.field_path, e.message));
            }
        }
        errors
    }
}

fn without_root_meta(manifest: &Value) -> Value {
    let mut object = manifest.clone();
    if let Some(map) = object.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
    }
    object
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// OpenAPI 3.0's `nullable` is not JSON Schema: spell it as a type union.
fn as_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if !k.starts_with("x-kubernetes-") {
                    out.insert(k.clone(), as_json_schema(v));
                }
            }
            if out.get("nullable") == Some(&json!(true))
                && let Some(Value::String(t)) = out.get("type").cloned()
            {
                out.insert("type".into(), json!([t, "null"]));
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            out.remove("nullable");
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(as_json_schema).collect()),
        other => other.clone(),
    }
}

fn unknown_fields(path: &str, schema: &Value, value: &Value, errors: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (key, sub) in map {
                let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match props.get(key) {
                    Some(sub_schema) => unknown_fields(&here, sub_schema, sub, errors),
                    None => errors.push(format!("{here}: unknown field \"{key}\"")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(&format!("{path}.{i}"), item_schema, item, errors);
                }
            }
        }
        _ => {}
    }
}

fn list_map_keys(path: &str, schema: &Value, value: &Value, errors: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (key, sub) in map {
                if let Some(sub_schema) = props.and_then(|p| p.get(key)) {
                    let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    list_map_keys(&here, sub_schema, sub, errors);
                }
            }
        }
        Value::Array(items) => {
            if schema.get("x-kubernetes-list-type") == Some(&json!("map")) {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
                    if seen.contains(&key) {
                        errors.push(format!("{path}.{i}: Duplicate value: {key:?}"));
                    }
                    seen.push(key);
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    list_map_keys(&format!("{path}.{i}"), item_schema, item, errors);
                }
            }
        }
        _ => {}
    }
}

fn employee(spec: Value) -> Value {
    json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
           "metadata": {"name": "x"}, "spec": spec})
}

fn phone_system(spec: Value) -> Value {
    json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "PhoneSystem",
           "metadata": {"name": "x"}, "spec": spec})
}

fn good_employee() -> Value {
    json!({"givenName": "Łukasz", "familyName": "Wąsowski", "email": "lw@example.com",
           "extension": "203", "phoneSystems": [{"name": "office-pbx"}]})
}

fn with(mut base: Value, path: &[&str], value: Option<Value>) -> Value {
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut base;
    for p in parents {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*p],
        };
    }
    match value {
        Some(v) => at[*last] = v,
        None => {
            at.as_object_mut().unwrap().remove(*last);
        }
    }
    base
}

#[test]
fn every_example_is_admitted() {
    let admission = Admission::from_crds_dir();
    let mut checked = 0;
    for dir in ["examples/phone-systems", "examples/employees"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
                if doc["kind"] == "Secret" {
                    continue;
                }
                let refusals = admission.refusals(&doc);
                assert!(refusals.is_empty(), "{}: {refusals:#?}", path.display());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 + 12, "five PhoneSystems and a dozen Employees");
}

/// Each bad manifest, the field the refusal must name, and a word of the rule.
#[test]
fn bad_manifests_are_refused_naming_the_field() {
    let admission = Admission::from_crds_dir();
    let good_pbx = json!({"mikopbx": {"url": "https://pbx.example.com"}});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("missing email", employee(with(good_employee(), &["email"], None)), "spec", "email"),
        (
            "7-letter extension",
            employee(with(good_employee(), &["extension"], Some(json!("abcdefg")))),
            "spec.extension",
            "does not match",
        ),
        (
            "1-digit extension",
            employee(with(good_employee(), &["extension"], Some(json!("7")))),
            "spec.extension",
            "does not match",
        ),
        (
            "9-digit extension",
            employee(with(good_employee(), &["extension"], Some(json!("123456789")))),
            "spec.extension",
            "does not match",
        ),
        (
            "email without @",
            employee(with(good_employee(), &["email"], Some(json!("lw.example.com")))),
            "spec.email",
            "does not match",
        ),
        (
            "control character in a name",
            employee(with(good_employee(), &["givenName"], Some(json!("Łukasz\u{7}")))),
            "spec.givenName",
            "does not match",
        ),
        (
            "huge name",
            employee(with(good_employee(), &["familyName"], Some(json!("W".repeat(10_000))))),
            "spec.familyName",
            "longer than 64",
        ),
        (
            "mobile with letters",
            employee(with(good_employee(), &["mobile"], Some(json!("+48 600 CALL")))),
            "spec.mobile",
            "does not match",
        ),
        (
            "extension as a number",
            employee(with(good_employee(), &["extension"], Some(json!(203)))),
            "spec.extension",
            "not of type",
        ),
        (
            "unknown field",
            employee(with(good_employee(), &["phone"], Some(json!("203")))),
            "spec.phone",
            "unknown field",
        ),
        (
            "the same phone system twice",
            employee(with(
                good_employee(),
                &["phoneSystems"],
                Some(json!([{"name": "office-pbx"}, {"name": "office-pbx", "extension": "204"}])),
            )),
            "spec.phoneSystems.1",
            "Duplicate",
        ),
        (
            "two settings blocks for one system",
            employee(with(
                good_employee(),
                &["phoneSystems"],
                Some(json!([{"name": "office-pbx", "mikopbx": {}, "thulium": {}}])),
            )),
            "spec.phoneSystems[0]",
            "at most one settings block",
        ),
        (
            "unknown deletion policy",
            employee(with(good_employee(), &["deletionPolicy"], Some(json!("Shred")))),
            "spec.deletionPolicy",
            "is not one of",
        ),
        (
            "ring length out of range",
            employee(with(
                good_employee(),
                &["phoneSystems"],
                Some(json!([{"name": "office-pbx", "mikopbx": {"forwarding": {"ringLength": 600}}}])),
            )),
            "spec.phoneSystems.0.mikopbx.forwarding.ringLength",
            "maximum",
        ),
        ("no backend block", phone_system(json!({})), "spec", "exactly one backend block"),
        (
            "two backend blocks",
            phone_system(json!({"mikopbx": {"url": "https://a.example.com"},
                                "thulium": {"url": "https://b.example.com"}})),
            "spec",
            "exactly one backend block",
        ),
        (
            "unknown policy",
            phone_system(with(good_pbx.clone(), &["policy"], Some(json!("mirror")))),
            "spec.policy",
            "is not one of",
        ),
        (
            "URL that is not one",
            phone_system(json!({"thulium": {"url": "acme.thulium.com"}})),
            "spec.thulium.url",
            "does not match",
        ),
        (
            "resync interval in words",
            phone_system(with(good_pbx.clone(), &["resyncInterval"], Some(json!("5 minutes")))),
            "spec.resyncInterval",
            "does not match",
        ),
        (
            "zero concurrency",
            phone_system(with(good_pbx.clone(), &["maxConcurrency"], Some(json!(0)))),
            "spec.maxConcurrency",
            "minimum",
        ),
        (
            "APIO without a group",
            phone_system(json!({"apio": {"url": "https://apio.example.com", "tenant": "t"}})),
            "spec.apio",
            "group",
        ),
        (
            "unknown MikoPBX API generation",
            phone_system(json!({"mikopbx": {"url": "https://pbx.example.com", "apiGeneration": "v2"}})),
            "spec.mikopbx.apiGeneration",
            "is not one of",
        ),
    ];
    let mut failures = Vec::new();
    for (name, manifest, field, rule) in &cases {
        let refusals = admission.refusals(manifest);
        let named = refusals.iter().any(|r| {
            let (path, message) = r.split_once(": ").unwrap_or((r, ""));
            path == *field && (message.contains(rule) || r.contains(rule))
        });
        if !named {
            failures.push(format!("{name}: expected `{field}: ...{rule}...`, got {refusals:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_good_base_cases_are_admitted() {
    // Guards the table above: each bad case must fail for its own reason, not the base's.
    let admission = Admission::from_crds_dir();
    assert_eq!(admission.refusals(&employee(good_employee())), Vec::<String>::new());
    let pbx = phone_system(json!({"mikopbx": {"url": "https://pbx.example.com"}}));
    assert_eq!(admission.refusals(&pbx), Vec::<String>::new());
}
