//! The public contract: the `Employee` and `PhoneSystem` custom resources
//! (group `switchboard.dev`, version `v1alpha1`).

pub mod conditions;
pub mod employee;
pub mod phone_system;
pub mod validate;

pub use employee::{AccountState, AccountStatus, Employee, EmployeeSpec, EmployeeStatus, Membership};
pub use phone_system::{Backend, PhoneSystem, PhoneSystemSpec, PhoneSystemStatus, Policy};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of both resources.
pub const GROUP: &str = "switchboard.dev";

/// A DNS-1123 subdomain: the names of Kubernetes objects.
pub(crate) const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// An IANA time zone name such as `Europe/Warsaw` or `UTC`.
pub(crate) const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";

/// Errors in a resource that its schema cannot catch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "spec: exactly one backend block must be set (mikopbx, thulium, apio, telphin or ringostat), found {found}"
    )]
    BackendBlocks { found: usize },
    #[error("{field}: {value:?} is not a duration such as 30s, 5m or 1h")]
    Duration { field: &'static str, value: String },
    #[error("cannot serialize the CRDs: {0}")]
    Serialize(String),
}

/// The five kinds of phone system switchboard speaks to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Mikopbx,
    Thulium,
    Apio,
    Telphin,
    Ringostat,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Mikopbx,
        BackendKind::Thulium,
        BackendKind::Apio,
        BackendKind::Telphin,
        BackendKind::Ringostat,
    ];

    /// The name used in manifests, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Mikopbx => "mikopbx",
            BackendKind::Thulium => "thulium",
            BackendKind::Apio => "apio",
            BackendKind::Telphin => "telphin",
            BackendKind::Ringostat => "ringostat",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Both CRDs, as the API server wants them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Employee::crd(), PhoneSystem::crd()]
}

/// Both CRDs as one multi-document YAML stream: what `switchboard crd` prints and
/// `crds/` holds.
pub fn crds_yaml() -> Result<String, Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).map_err(|e| Error::Serialize(e.to_string()))?);
    }
    Ok(out)
}
