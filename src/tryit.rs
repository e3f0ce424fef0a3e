//! "Try it on a cluster" without a PBX: `switchboard sim --print-manifests` prints the
//! PhoneSystems of `examples/` (and their credentials Secrets) pointing at the simulators
//! `switchboard sim` serves, so `examples/employees/` turn Ready on any cluster.
//!
//! The manifests are the examples' own, with the URL (and, for a legacy MikoPBX dialect,
//! the API generation) changed and the Secrets holding the simulators' credentials: the
//! systems keep the names the example Employees list, and the settings the examples show.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::{api::BackendKind, demo};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--base-url {0:?}: give a scheme and a host only, as http://switchboard-sim.switchboard-system.svc; the ports come from --port"
    )]
    BaseUrl(String),
    #[error(
        "--print-manifests needs --port N: the simulators serve on N, N+1, ... (port 0 picks free ports, which nothing can know in advance)"
    )]
    NoPort,
    #[error("port {first} + {index} is past 65535")]
    PortRange { first: u16, index: usize },
    #[error("the examples have no PhoneSystem for {0}")]
    NoExample(BackendKind),
    #[error("example: {0}")]
    Example(String),
    #[error("cannot encode the manifests as YAML: {0}")]
    Yaml(String),
}

/// One simulator as `switchboard sim` serves it.
#[derive(Clone, Debug)]
pub struct Served {
    pub kind: BackendKind,
    /// Where the operator reaches it, e.g. `http://127.0.0.1:18000`.
    pub url: String,
    /// Its credentials, as Secret keys (the simulator's [`crate::sim::Simulator::credentials`]).
    pub credentials: BTreeMap<String, String>,
    /// A MikoPBX simulator serving only the legacy API (dialect generation 2023.2 or
    /// 2024.1): its PhoneSystem says `apiGeneration: legacy`.
    pub legacy: bool,
}

/// The port of the `index`-th system served from `first`: how `switchboard sim --port`
/// lays them out, and so where the printed manifests point.
pub fn port_of(first: u16, index: usize) -> Result<u16, Error> {
    u16::try_from(index).ok().and_then(|i| first.checked_add(i)).ok_or(Error::PortRange { first, index })
}

/// The URLs of `count` systems served from `first` on loopback, or behind `base_url` (a
/// Service in front of the simulators' pod: the same ports, another host).
pub fn urls(first: u16, count: usize, base_url: Option<&str>) -> Result<Vec<String>, Error> {
    if first == 0 {
        return Err(Error::NoPort);
    }
    let base = match base_url {
        None => "http://127.0.0.1".to_owned(),
        Some(url) => {
            let trimmed = url.trim_end_matches('/');
            let host = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("https://"));
            match host {
                Some(host) if !host.is_empty() && !host.contains([':', '/', '?', '#', ' ', '@']) => {
                    trimmed.to_owned()
                }
                _ => return Err(Error::BaseUrl(url.to_owned())),
            }
        }
    };
    (0..count).map(|i| Ok(format!("{base}:{}", port_of(first, i)?))).collect()
}

/// The YAML `switchboard sim --print-manifests` prints: per simulator, its credentials
/// Secret and a PhoneSystem pointing at it, in `namespace` (none: kubectl's current one).
pub fn manifests(served: &[Served], namespace: Option<&str>, command: &str) -> Result<String, Error> {
    let mut docs: Vec<Value> = Vec::new();
    for file in demo::EXAMPLES.iter().filter(|(f, _)| f.starts_with("examples/phone-systems/")) {
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(file.1).map_err(|e| Error::Example(format!("{}: {e}", file.0)))?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    let mut out = format!(
        "# The PhoneSystems of examples/ and their Secrets, pointing at the simulators of\n# `{command}`. Apply them, then examples/employees/.\n"
    );
    for s in served {
        let system = docs
            .iter()
            .find(|d| d["kind"] == "PhoneSystem" && d["spec"].get(s.kind.as_str()).is_some())
            .ok_or(Error::NoExample(s.kind))?;
        let mut system = system.clone();
        let secret_name = system["spec"]["credentialsSecretRef"]["name"].as_str().map(str::to_owned);
        let block = &mut system["spec"][s.kind.as_str()];
        block["url"] = json!(s.url);
        if s.kind == BackendKind::Mikopbx {
            block["apiGeneration"] = json!(if s.legacy { "legacy" } else { "v3" });
        }
        if let Some(secret_name) = secret_name {
            let example =
                docs.iter().find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret_name.as_str());
            // The keys the example Secret shows (those its backend reads), with the values
            // this simulator takes.
            let mut keys: Vec<String> = example
                .and_then(|d| d["stringData"].as_object())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            if s.kind == BackendKind::Mikopbx && s.legacy {
                // The legacy API knows no API key: it logs in as the admin.
                keys = vec!["username".to_owned(), "password".to_owned()];
            }
            let data: Map<String, Value> =
                keys.into_iter().filter_map(|k| Some((k.clone(), json!(s.credentials.get(&k)?)))).collect();
            let mut secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name},
                "type": "Opaque",
                "stringData": data,
            });
            set_namespace(&mut secret, namespace);
            out.push_str(&document(&secret)?);
        }
        set_namespace(&mut system, namespace);
        out.push_str(&document(&system)?);
    }
    Ok(out)
}

fn set_namespace(doc: &mut Value, namespace: Option<&str>) {
    if let Some(ns) = namespace {
        doc["metadata"]["namespace"] = json!(ns);
    }
}

fn document(doc: &Value) -> Result<String, Error> {
    let yaml = serde_saphyr::to_string(doc).map_err(|e| Error::Yaml(e.to_string()))?;
    Ok(format!("---\n{yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_order_served_and_base_urls_keep_them() {
        assert_eq!(urls(18000, 2, None).unwrap(), ["http://127.0.0.1:18000", "http://127.0.0.1:18001"]);
        assert_eq!(
            urls(18000, 1, Some("http://switchboard-sim.switchboard-system.svc/")).unwrap(),
            ["http://switchboard-sim.switchboard-system.svc:18000"]
        );
        assert!(matches!(urls(0, 5, None), Err(Error::NoPort)));
        assert!(matches!(urls(65534, 5, None), Err(Error::PortRange { .. })));
        for bad in ["sim.svc", "http://sim.svc:80", "http://sim.svc/path", "ftp://sim", "http://"] {
            assert!(matches!(urls(18000, 1, Some(bad)), Err(Error::BaseUrl(_))), "{bad}");
        }
    }
}
