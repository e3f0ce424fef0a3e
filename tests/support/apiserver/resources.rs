//! The resources the fake API server serves: one line of [`RESOURCES`] each.

use base64::Engine;
use serde_json::{Map, Value};

/// How one resource (a group, version and plural) behaves.
#[derive(Debug, Clone, Copy)]
pub struct ResourceDef {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: main-resource writes keep the stored status,
    /// status writes change nothing but `status`, and create drops `status`.
    pub status_subresource: bool,
    /// Keeps `metadata.generation` (custom resources do; Secrets, Events and Leases don't).
    pub tracks_generation: bool,
    /// A built-in type: list items carry no `apiVersion`/`kind`, `PUT` without
    /// `metadata.resourceVersion` is an unconditional update, and strategic merge patch
    /// is accepted (applied as a JSON merge patch).
    pub builtin: bool,
    /// `PUT` on a missing object creates it (Events, Leases).
    pub create_on_update: bool,
    /// What the registry's strategy does to every written object (e.g. Secret
    /// `stringData` folded into `data`).
    pub normalize: Option<fn(&mut Value)>,
}

impl ResourceDef {
    /// A namespaced custom resource with a status subresource, as kube-derive's
    /// `#[kube(status = ...)]` declares it.
    pub const fn custom(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        kind: &'static str,
    ) -> Self {
        ResourceDef {
            group,
            version,
            plural,
            kind,
            namespaced: true,
            status_subresource: true,
            tracks_generation: true,
            builtin: false,
            create_on_update: false,
            normalize: None,
        }
    }

    /// A namespaced built-in resource without status subresource or generation.
    pub const fn builtin(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        kind: &'static str,
    ) -> Self {
        ResourceDef {
            group,
            version,
            plural,
            kind,
            namespaced: true,
            status_subresource: false,
            tracks_generation: false,
            builtin: true,
            create_on_update: false,
            normalize: None,
        }
    }

    pub const fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    pub const fn create_on_update(mut self) -> Self {
        self.create_on_update = true;
        self
    }

    pub const fn normalize(mut self, f: fn(&mut Value)) -> Self {
        self.normalize = Some(f);
        self
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (`secrets` for the core group), as error messages and
    /// [`super::FakeApiServer::count`] name resources.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Everything the fake serves. Add a resource with one more line.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef::custom("switchboard.dev", "v1alpha1", "employees", "Employee"),
    ResourceDef::custom("switchboard.dev", "v1alpha1", "phonesystems", "PhoneSystem"),
    ResourceDef::builtin("", "v1", "secrets", "Secret").normalize(secret_string_data),
    ResourceDef::builtin("", "v1", "configmaps", "ConfigMap"),
    ResourceDef::builtin("", "v1", "events", "Event").create_on_update(),
    ResourceDef::builtin("events.k8s.io", "v1", "events", "Event").create_on_update(),
    ResourceDef::builtin("coordination.k8s.io", "v1", "leases", "Lease").create_on_update(),
];

/// Index into [`RESOURCES`] of `group`/`version`/`plural`.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES.iter().position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Index into [`RESOURCES`] of `plural.group` (or `plural` for the core group).
pub(crate) fn find_group_resource(group_resource: &str) -> Option<usize> {
    let (plural, group) = group_resource.split_once('.').unwrap_or((group_resource, ""));
    RESOURCES.iter().position(|r| r.group == group && r.plural == plural)
}

/// The Secret strategy: `stringData` is write-only and merged into `data`, base64-encoded.
fn secret_string_data(obj: &mut Value) {
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let data = obj.as_object_mut().unwrap().entry("data").or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    for (key, value) in string_data {
        let text = value.as_str().unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        data.as_object_mut().unwrap().insert(key, Value::String(encoded));
    }
}
