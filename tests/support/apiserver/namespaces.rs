//! Namespaces as the real server keeps them, and the namespace controller's part of
//! `kubectl delete namespace`, after kube-apiserver's namespace registry and
//! kube-controller-manager's `pkg/controller/namespace/deletion`:
//! - a created Namespace gets `spec.finalizers: [kubernetes]` and `status.phase: Active`;
//! - its delete sets `deletionTimestamp` and `status.phase: Terminating` and answers the
//!   object; from then on nothing may be created in it (the `NamespaceLifecycle`
//!   admission plugin: 403 "unable to create new content in namespace X because it is
//!   being terminated"), while updates, patches and deletes go on;
//! - the namespace controller deletes every namespaced resource of it, resource type by
//!   resource type, each object as a delete would (those with finalizers get
//!   `deletionTimestamp` and stay until their finalizers are removed), and checks again
//!   until nothing is left, every [`super::Options::namespace_recheck`] (the real one
//!   requeues after `15/2+1` s while finalizers remain); then it removes its
//!   `kubernetes` finalizer and the Namespace goes.
//!
//! The order in which resource types go is [`super::Options::namespace_deletion_order`]
//! (the real controller deletes them in parallel, so any order can happen), with
//! [`super::Options::namespace_deletion_gap`] between two types, so a test can make the
//! PhoneSystems and their Secrets go first, or the Employees.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use super::{
    http::Shared,
    resources::{RESOURCES, ResourceDef},
    store::ApiError,
};

/// The finalizer the namespace controller removes once the content is gone.
const KUBERNETES: &str = "kubernetes";

fn is_namespaces(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}

/// The registry's create strategy, on every written Namespace (the update strategy
/// keeps both as they were).
pub(crate) fn defaults(obj: &mut Value) {
    if obj.pointer("/spec/finalizers").is_none() {
        obj["spec"]["finalizers"] = json!([KUBERNETES]);
    }
    if obj.pointer("/status/phase").is_none() {
        obj["status"]["phase"] = json!("Active");
    }
}

/// A Namespace whose content the namespace controller has yet to delete.
pub(crate) fn has_spec_finalizers(def: &ResourceDef, obj: &Value) -> bool {
    is_namespaces(def)
        && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

/// What the namespace registry's delete adds to `deletionTimestamp`.
pub(crate) fn mark_terminating(def: &ResourceDef, obj: &mut Value) {
    if is_namespaces(def) {
        obj["status"]["phase"] = json!("Terminating");
    }
}

pub(crate) fn forbidden_in_terminating(def: &ResourceDef, name: &str, namespace: &str) -> ApiError {
    let mut error = ApiError::new(
        403,
        "Forbidden",
        format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
            def.group_resource()
        ),
    );
    error.details = Some(json!({
        "name": name, "group": def.group, "kind": def.plural,
        "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is terminating"), "field": "metadata.namespace"}],
    }));
    error
}

/// Whether a delete of `res` just made a Namespace terminate: the caller starts
/// [`terminate`] for it.
pub(crate) fn started_terminating(res: usize) -> bool {
    is_namespaces(&RESOURCES[res])
}

/// The namespace controller's work on Namespace `name`, until it is gone.
pub(crate) async fn terminate(shared: Arc<Shared>, name: String) {
    let Some(ns_res) = RESOURCES.iter().position(is_namespaces) else { return };
    let order = deletion_order(&shared.options.namespace_deletion_order);
    loop {
        {
            let store = shared.store.lock().unwrap();
            if !store.terminating(&name) {
                return;
            }
        }
        for (i, res) in order.iter().enumerate() {
            if i > 0 && !shared.options.namespace_deletion_gap.is_zero() {
                tokio::time::sleep(shared.options.namespace_deletion_gap).await;
            }
            let mut store = shared.store.lock().unwrap();
            for object in store.names_in(*res, &name) {
                // As `deletecollection` with background propagation does, item by item.
                let _ = store.delete(*res, &name, &object, &json!({"propagationPolicy": "Background"}));
            }
        }
        {
            let mut store = shared.store.lock().unwrap();
            let left: usize = order.iter().map(|res| store.names_in(*res, &name).len()).sum();
            if left == 0 {
                store.purge(ns_res, "", &name);
                return;
            }
        }
        tokio::time::sleep(shared.options.namespace_recheck.max(Duration::from_millis(10))).await;
    }
}

/// Every namespaced resource: those named in `first` (as `plural.group`), in that order,
/// then the others.
fn deletion_order(first: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = first
        .iter()
        .filter_map(|r| super::resources::find_group_resource(r))
        .filter(|res| RESOURCES[*res].namespaced)
        .collect();
    for (res, def) in RESOURCES.iter().enumerate() {
        if def.namespaced && !order.contains(&res) {
            order.push(res);
        }
    }
    order
}
