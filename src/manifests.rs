//! Manifests read from files (a GitOps folder, or the embedded examples), for the
//! cluster-free commands. A bad document is reported with its file, its index in the
//! file and the field at fault, and never stops the others from loading.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use serde_json::Value;

use crate::api::{Employee, PhoneSystem};

/// One document that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file} (document {index}): {field}: {message}")]
pub struct Problem {
    pub file: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    /// Path of the field at fault (`spec.extension`), or `-` for the whole document.
    pub field: String,
    pub message: String,
}

/// What a folder holds.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub employees: Vec<Employee>,
    pub systems: Vec<PhoneSystem>,
    pub secrets: Vec<Secret>,
    pub problems: Vec<Problem>,
}

/// Namespace given to documents that name none (as `kubectl apply` would).
pub const DEFAULT_NAMESPACE: &str = "default";

impl Manifests {
    /// Reads every `.yaml`/`.yml` file under `dir`, recursively, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, std::io::Error> {
        let mut files = Vec::new();
        collect(dir, &mut files)?;
        files.sort();
        let mut manifests = Manifests::default();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            manifests.add_text(&file.display().to_string(), &text);
        }
        Ok(manifests)
    }

    /// Adds the documents of one file.
    pub fn add_text(&mut self, file: &str, text: &str) {
        let problem = |index: usize, field: &str, message: String| Problem {
            file: file.to_owned(),
            index,
            field: field.to_owned(),
            message,
        };
        let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
            Ok(docs) => docs,
            Err(e) => {
                self.problems.push(problem(1, "-", format!("not valid YAML: {e}")));
                return;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            let index = i + 1;
            if doc.is_null() {
                continue;
            }
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            // What the API server would refuse is refused here too, field by field.
            if kind == "Employee" || kind == "PhoneSystem" {
                let refusals = crate::api::validate::refusals(&kind, &doc);
                if !refusals.is_empty() {
                    for r in refusals {
                        self.problems.push(problem(index, &r.field, r.rule));
                    }
                    continue;
                }
            }
            let outcome = match kind.as_str() {
                "Employee" => parse::<Employee>(doc).map(|mut e| {
                    default_namespace(&mut e.metadata);
                    self.employees.push(e)
                }),
                "PhoneSystem" => parse::<PhoneSystem>(doc).map(|mut p| {
                    default_namespace(&mut p.metadata);
                    self.systems.push(p)
                }),
                "Secret" => parse::<Secret>(doc).map(|mut s| {
                    default_namespace(&mut s.metadata);
                    self.secrets.push(s)
                }),
                other => {
                    Err(("kind".to_owned(), format!("{other:?} is not Employee, PhoneSystem or Secret")))
                }
            };
            if let Err((field, message)) = outcome {
                self.problems.push(problem(index, &field, message));
            }
        }
    }

    /// The data of Secret `name` in `namespace` (`stringData` over `data`, as the API
    /// server merges them).
    pub fn secret_data(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let secret = self.secrets.iter().find(|s| {
            s.metadata.name.as_deref() == Some(name) && s.metadata.namespace.as_deref() == Some(namespace)
        })?;
        let mut data: BTreeMap<String, String> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, ByteString(v))| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        data.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        Some(data)
    }
}

fn default_namespace(meta: &mut kube::core::ObjectMeta) {
    if meta.namespace.is_none() {
        meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
}

fn parse<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "-".to_owned() } else { path };
        (field, e.into_inner().to_string())
    })
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_document_is_named_and_the_rest_load() {
        let mut m = Manifests::default();
        m.add_text(
            "team.yaml",
            "apiVersion: switchboard.dev/v1alpha1\nkind: Employee\nmetadata: {name: a}\nspec:\n  givenName: A\n  familyName: B\n  email: a@x.io\n  extension: \"201\"\n---\napiVersion: switchboard.dev/v1alpha1\nkind: Employee\nmetadata: {name: b}\nspec:\n  givenName: C\n  familyName: D\n  email: c@x.io\n  extension: [201]\n",
        );
        assert_eq!(m.employees.len(), 1);
        assert_eq!(m.employees[0].metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!(m.problems.len(), 1);
        let p = &m.problems[0];
        assert_eq!((p.file.as_str(), p.index, p.field.as_str()), ("team.yaml", 2, "spec.extension"));
        assert!(p.message.contains("must be of type string"), "{}", p.message);
    }

    #[test]
    fn unknown_kinds_and_broken_yaml_are_problems() {
        let mut m = Manifests::default();
        m.add_text("x.yaml", "kind: Deployment\n");
        m.add_text("y.yaml", "kind: [unclosed\n");
        assert_eq!(m.problems.len(), 2);
        assert_eq!(m.problems[0].field, "kind");
        assert_eq!(m.problems[1].file, "y.yaml");
    }

    #[test]
    fn string_data_wins_over_data() {
        let mut m = Manifests::default();
        m.add_text(
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: YQ==, j: Yg==}\nstringData: {k: z}\n",
        );
        let data = m.secret_data(DEFAULT_NAMESPACE, "s").unwrap();
        assert_eq!(data.get("k").map(String::as_str), Some("z"));
        assert_eq!(data.get("j").map(String::as_str), Some("b"));
    }
}
