//! The resources the fake API server serves: one line of [`RESOURCES`] each.

use std::collections::BTreeMap;

use base64::Engine;
use kube::CustomResourceExt;
use serde_json::{Map, Value};
use switchboard::api::{Employee, PhoneSystem};

use super::managed::{self, Shape};

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
    /// How field ownership sees the objects: from the CRD's schema, or the built-in
    /// type's list and map markers.
    pub shape: fn() -> Shape,
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
            shape: untyped,
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
            shape: untyped,
        }
    }

    pub const fn shape(mut self, f: fn() -> Shape) -> Self {
        self.shape = f;
        self
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
    ResourceDef::custom("switchboard.dev", "v1alpha1", "employees", "Employee").shape(employee_shape),
    ResourceDef::custom("switchboard.dev", "v1alpha1", "phonesystems", "PhoneSystem")
        .shape(phone_system_shape),
    ResourceDef::builtin("", "v1", "secrets", "Secret").normalize(secret_string_data).shape(secret_shape),
    ResourceDef::builtin("", "v1", "configmaps", "ConfigMap"),
    ResourceDef::builtin("", "v1", "namespaces", "Namespace")
        .cluster_scoped()
        .normalize(super::namespaces::defaults),
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

/// Built-ins without a schema here: `metadata` as every object has it, the rest untyped
/// (objects granular, lists atomic), which is what their Go types say for the fields
/// switchboard and its tests write.
fn untyped() -> Shape {
    Shape::Struct(BTreeMap::from([
        ("metadata".into(), managed::object_meta()),
        ("apiVersion".into(), Shape::Atomic),
        ("kind".into(), Shape::Atomic),
    ]))
}

fn secret_shape() -> Shape {
    let Shape::Struct(mut fields) = untyped() else { unreachable!("untyped() is a struct") };
    fields.insert("data".into(), Shape::Map(Box::new(Shape::Atomic)));
    fields.insert("stringData".into(), Shape::Map(Box::new(Shape::Atomic)));
    fields.insert("type".into(), Shape::Atomic);
    Shape::Struct(fields)
}

fn crd_shape(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Shape {
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
    let schema = serde_json::to_value(schema).expect("a CRD schema serializes");
    managed::from_openapi(&schema)
}

fn employee_shape() -> Shape {
    crd_shape(Employee::crd())
}

fn phone_system_shape() -> Shape {
    crd_shape(PhoneSystem::crd())
}
