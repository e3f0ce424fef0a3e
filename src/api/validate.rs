//! Admission checks without an API server: a manifest read from a file is judged by the
//! same OpenAPI schema the CRDs carry (generated from the types, so the rules have one
//! source), plus the two rules the CRDs state in CEL. Used by the cluster-free commands,
//! where nothing else would refuse a bad manifest before a PBX sees it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Employee, PhoneSystem};
use kube::CustomResourceExt;

/// One refusal: the field's path and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct Refusal {
    pub field: String,
    pub rule: String,
}

/// What the API server would refuse in an Employee or PhoneSystem manifest (`spec` only:
/// metadata is the API server's own business).
pub fn refusals(kind: &str, manifest: &Value) -> Vec<Refusal> {
    let crd = match kind {
        "Employee" => Employee::crd(),
        "PhoneSystem" => PhoneSystem::crd(),
        _ => {
            return vec![Refusal {
                field: "kind".into(),
                rule: format!("{kind:?} is not a switchboard kind"),
            }];
        }
    };
    let Some(schema) = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (Some(spec_schema), spec) = (schema.pointer("/properties/spec"), manifest.get("spec")) {
        match spec {
            Some(spec) => check("spec", spec_schema, spec, &mut out),
            None => out.push(Refusal { field: "spec".into(), rule: "Required value".into() }),
        }
    }
    if let Some(spec) = manifest.get("spec") {
        cel_rules(kind, spec, &mut out);
    }
    out
}

fn refuse(out: &mut Vec<Refusal>, field: &str, rule: impl Into<String>) {
    out.push(Refusal { field: field.to_owned(), rule: rule.into() });
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Walks `value` against `schema` the way the API server's structural validation does.
fn check(path: &str, schema: &Value, value: &Value, out: &mut Vec<Refusal>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            refuse(out, path, "must not be null");
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            return refuse(out, path, format!("must be of type {expected}, not {actual}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().filter(|v| !v.is_null()).map(Value::to_string).collect();
        refuse(out, path, format!("{value} is not one of {}", names.join(", ")));
    }
    match value {
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                refuse(out, path, format!("may not be longer than {max} characters"));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                refuse(out, path, format!("must be at least {min} characters"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => refuse(out, path, format!("does not match {pattern}")),
                    Ok(_) => {}
                    Err(e) => refuse(out, path, format!("pattern {pattern} cannot be checked: {e}")),
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                refuse(out, path, format!("must be at most {max}"));
            }
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                refuse(out, path, format!("must be at least {min}"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                refuse(out, path, format!("may not have more than {max} items"));
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys.iter().map(|k| item[*k].to_string()).collect();
                    if !seen.insert(key.clone()) {
                        refuse(out, &format!("{path}[{i}]"), format!("Duplicate value: {}", key.join(", ")));
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(&format!("{path}[{i}]"), item_schema, item, out);
                }
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(name) = required.as_str()
                    && !map.contains_key(name)
                {
                    refuse(out, &format!("{path}.{name}"), "Required value");
                }
            }
            for (key, sub) in map {
                let here = format!("{path}.{key}");
                match props.and_then(|p| p.get(key)) {
                    Some(sub_schema) => check(&here, sub_schema, sub, out),
                    // kubectl's default strict field validation refuses these.
                    None if props.is_some() => refuse(out, &here, "unknown field"),
                    None => {}
                }
            }
        }
        _ => {}
    }
}

/// The CRDs' two CEL rules, evaluated here by hand.
fn cel_rules(kind: &str, spec: &Value, out: &mut Vec<Refusal>) {
    const BLOCKS: [&str; 5] = ["mikopbx", "thulium", "apio", "telphin", "ringostat"];
    let count = |v: &Value| BLOCKS.iter().filter(|b| v.get(**b).is_some_and(|x| !x.is_null())).count();
    match kind {
        "PhoneSystem" if count(spec) != 1 => refuse(
            out,
            "spec",
            "exactly one backend block must be set: mikopbx, thulium, apio, telphin or ringostat",
        ),
        "Employee" => {
            for (i, m) in spec.get("phoneSystems").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                if count(m) > 1 {
                    refuse(
                        out,
                        &format!("spec.phoneSystems[{i}]"),
                        "at most one settings block (mikopbx, thulium, apio, telphin or ringostat) per phone system",
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn employee(spec: Value) -> Vec<String> {
        refusals("Employee", &json!({ "spec": spec })).iter().map(ToString::to_string).collect()
    }

    fn good() -> Value {
        json!({"givenName": "Łukasz", "familyName": "Wąsowski", "email": "lw@example.com", "extension": "203",
               "phoneSystems": [{"name": "office-pbx"}]})
    }

    #[test]
    fn a_good_employee_passes() {
        assert_eq!(employee(good()), Vec::<String>::new());
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut bad = good();
        bad["email"] = json!("no-at-sign");
        bad["extension"] = json!("7");
        bad["givenName"] = json!("Bell\u{7}");
        bad["familyName"] = json!("W".repeat(5000));
        bad["mobile"] = json!(48_600_111_222_u64);
        bad["shoeSize"] = json!(44);
        bad["phoneSystems"] = json!([{"name": "a"}, {"name": "a", "mikopbx": {}, "thulium": {}}]);
        let refusals = employee(bad).join("\n");
        for expected in [
            "spec.email: does not match",
            "spec.extension: does not match",
            "spec.givenName: does not match",
            "spec.familyName: may not be longer than 64 characters",
            "spec.mobile: must be of type string, not integer",
            "spec.shoeSize: unknown field",
            "spec.phoneSystems[1]: Duplicate value",
            "spec.phoneSystems[1]: at most one settings block",
        ] {
            assert!(refusals.contains(expected), "{expected} missing from:\n{refusals}");
        }
    }

    #[test]
    fn a_phone_system_needs_exactly_one_backend() {
        let two = json!({"spec": {"mikopbx": {"url": "https://a.example.com"}, "thulium": {"url": "https://b.example.com"}}});
        let refusals: Vec<String> = refusals("PhoneSystem", &two).iter().map(ToString::to_string).collect();
        assert_eq!(
            refusals,
            vec!["spec: exactly one backend block must be set: mikopbx, thulium, apio, telphin or ringostat"]
        );
        let policy = json!({"spec": {"thulium": {"url": "https://b.example.com"}, "policy": "mirror"}});
        let refusals: Vec<String> =
            super::refusals("PhoneSystem", &policy).iter().map(ToString::to_string).collect();
        assert!(refusals[0].starts_with("spec.policy: \"mirror\" is not one of"), "{refusals:?}");
    }
}
