//! The registry and storage: what the API server does to objects, without HTTP.
//! Every method runs under the server's one lock, so each write is atomic and
//! watchers see changes in `resourceVersion` order.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::Arc,
};

use base64::Engine;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{
    RequestRecord,
    managed::{self, Managers, Op, Shape, Writer},
    namespaces,
    resources::{RESOURCES, ResourceDef},
    selectors::{FieldSelector, LabelSelector},
};

/// Resource index in [`RESOURCES`], namespace (`""` when cluster-scoped), name.
pub(crate) type Key = (usize, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed change: an entry of the watch history.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub res: usize,
    pub namespace: String,
    pub kind: ChangeKind,
    /// The object after the change; for `Deleted`, its last state at the deletion's
    /// resourceVersion (what etcd's delete event carries).
    pub object: Value,
    /// The object before the change; `None` for `Added`.
    pub old: Option<Value>,
}

struct WatchSub {
    res: usize,
    namespace: Option<String>,
    /// Who opened it ([`super::CLIENT_HEADER`]).
    client: Option<String>,
    /// Asked for metadata only.
    metadata_only: bool,
    tx: UnboundedSender<Arc<Change>>,
}

/// An error answer, sent as a `metav1.Status`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub(crate) fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(crate) fn not_found_path() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            ),
        )
    }

    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    fn with_details(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }

    fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", def.group_resource()))
            .with_details(def, name)
    }

    fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", def.group_resource()))
            .with_details(def, name)
    }

    fn conflict(def: &ResourceDef, name: &str, why: &str) -> Self {
        let message = format!("Operation cannot be fulfilled on {} \"{name}\": {why}", def.group_resource());
        Self::new(409, "Conflict", message).with_details(def, name)
    }

    /// An apply that would change fields other managers own, as the real server words it.
    pub(crate) fn field_conflicts(def: &ResourceDef, conflicts: &managed::Conflicts) -> Self {
        let api_version = def.api_version();
        let lines: Vec<String> = conflicts
            .0
            .iter()
            .map(|(manager, path)| {
                format!("conflict with \"{manager}\" using {api_version}: {}", managed::display(path))
            })
            .collect();
        let message = match lines.as_slice() {
            [one] => format!("Apply failed with 1 conflict: {one}"),
            many => format!("Apply failed with {} conflicts: {}", many.len(), many.join("\n")),
        };
        let causes: Vec<Value> = conflicts
            .0
            .iter()
            .map(|(manager, path)| {
                json!({"reason": "FieldManagerConflict",
                       "message": format!("conflict with \"{manager}\" using {api_version}"),
                       "field": managed::display(path)})
            })
            .collect();
        let mut error = Self::new(409, "Conflict", message);
        error.details = Some(json!({"causes": causes}));
        error
    }

    fn invalid(def: &ResourceDef, name: &str, field: &str, detail: &str) -> Self {
        let qualified =
            if def.group.is_empty() { def.kind.to_string() } else { format!("{}.{}", def.kind, def.group) };
        let mut error =
            Self::new(422, "Invalid", format!("{qualified} \"{name}\" is invalid: {field}: {detail}"));
        error.details = Some(json!({
            "name": name, "group": def.group, "kind": def.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        }));
        error
    }
}

/// What a list request asks for.
#[derive(Debug, Default)]
pub(crate) struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<String>,
    pub exact: bool,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// What a watch starts with.
pub(crate) enum WatchStart {
    /// The requested resourceVersion is older than the kept history: the stream
    /// carries one `ERROR` event with this 410 and ends.
    Gone(ApiError),
    Started {
        /// Changes the watcher missed (or synthetic `ADDED` events for every object).
        initial: Vec<Arc<Change>>,
        /// Changes at or below this resourceVersion are not sent again.
        from_rv: u64,
        live: UnboundedReceiver<Arc<Change>>,
    },
}

pub(crate) enum PatchKind {
    Merge,
    Json,
}

pub(crate) struct Store {
    pub rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Watches and exact lists from below this resourceVersion are too old (410).
    compacted_rv: u64,
    watchers: Vec<WatchSub>,
    /// How field ownership sees each resource's objects, by index into [`RESOURCES`].
    shapes: Vec<Shape>,
    pub requests: Vec<RequestRecord>,
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Self {
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 1,
            watchers: Vec::new(),
            shapes: RESOURCES.iter().map(|r| (r.shape)()).collect(),
            requests: Vec::new(),
        }
    }

    fn key(res: usize, namespace: &str, name: &str) -> Key {
        let namespace = if RESOURCES[res].namespaced { namespace } else { "" };
        (res, namespace.to_string(), name.to_string())
    }

    pub(crate) fn object(&self, res: usize, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(res, namespace, name))
    }

    pub(crate) fn objects(&self, res: usize) -> Vec<Value> {
        self.objects.iter().filter(|(k, _)| k.0 == res).map(|(_, v)| v.clone()).collect()
    }

    /// Forgets the watch history, as an etcd compaction does: watches and exact lists
    /// from any earlier resourceVersion get 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Ends every open watch stream (clients see the stream close and re-watch).
    pub(crate) fn drop_watches(&mut self) -> usize {
        let open = self.active_watches();
        self.watchers.clear();
        open
    }

    pub(crate) fn active_watches(&mut self) -> usize {
        self.watchers.retain(|w| !w.tx.is_closed());
        self.watchers.len()
    }

    /// Open watch streams of one resource, by client and whether metadata-only, as the
    /// real server's `apiserver_longrunning_requests{verb="WATCH"}` gauge counts them.
    pub(crate) fn open_watches(&mut self, res: usize) -> Vec<(Option<String>, bool)> {
        self.watchers.retain(|w| !w.tx.is_closed());
        self.watchers.iter().filter(|w| w.res == res).map(|w| (w.client.clone(), w.metadata_only)).collect()
    }

    /// Stores (or removes) an object at the next resourceVersion and tells watchers.
    fn commit(&mut self, key: Key, kind: ChangeKind, mut object: Value, old: Option<Value>) -> Value {
        self.rv += 1;
        meta_mut(&mut object).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        if kind == ChangeKind::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let change = Arc::new(Change {
            rv: self.rv,
            res: key.0,
            namespace: key.1.clone(),
            kind,
            object: object.clone(),
            old,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            let dropped = self.history.pop_front().expect("history is not empty");
            self.compacted_rv = dropped.rv;
        }
        self.watchers.retain(|w| {
            if w.res != key.0 || w.namespace.as_ref().is_some_and(|ns| *ns != key.1) {
                return !w.tx.is_closed();
            }
            w.tx.send(change.clone()).is_ok()
        });
        object
    }

    /// Whether namespace `name` exists and is being deleted (its content goes; nothing
    /// new may be created in it).
    pub(crate) fn terminating(&self, name: &str) -> bool {
        let Some(res) = RESOURCES.iter().position(|r| r.group.is_empty() && r.plural == "namespaces") else {
            return false;
        };
        self.object(res, "", name).is_some_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_some())
    }

    /// The objects of resource `res` in namespace `ns`, by name.
    pub(crate) fn names_in(&self, res: usize, ns: &str) -> Vec<String> {
        self.objects.keys().filter(|k| k.0 == res && k.1 == ns).map(|k| k.2.clone()).collect()
    }

    /// Removes an object whatever holds it (the namespace controller's last step, once
    /// its own finalizer is done and the content is gone).
    pub(crate) fn purge(&mut self, res: usize, namespace: &str, name: &str) {
        let key = Self::key(res, namespace, name);
        if let Some(old) = self.objects.get(&key).cloned() {
            self.remove(key, old, true);
        }
    }

    pub(crate) fn get(&self, res: usize, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.object(res, namespace, name).cloned().ok_or_else(|| ApiError::not_found(&RESOURCES[res], name))
    }

    pub(crate) fn create(
        &mut self,
        res: usize,
        namespace: &str,
        mut obj: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[res];
        check_types(def, &obj)?;
        let meta = meta_mut(&mut obj);
        check_namespace(def, namespace, meta)?;
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if def.namespaced && self.terminating(namespace) {
            return Err(namespaces::forbidden_in_terminating(def, &name, namespace));
        }
        if name.is_empty() {
            let prefix = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    def,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            name = loop {
                let candidate = format!("{prefix}{}", random_suffix());
                if self.object(res, namespace, &candidate).is_none() {
                    break candidate;
                }
            };
        }
        if let Err(why) = validate_name(&name) {
            return Err(ApiError::invalid(
                def,
                &name,
                "metadata.name",
                &format!("Invalid value: \"{name}\": {why}"),
            ));
        }
        let meta = meta_mut(&mut obj);
        if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::new(
                500,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let key = Self::key(res, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &name));
        }
        meta.insert("name".into(), Value::String(name));
        meta.insert("uid".into(), Value::String(new_uid()));
        meta.insert("creationTimestamp".into(), now());
        if def.tracks_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"] {
            meta.remove(field);
        }
        normalize_meta(meta);
        if def.status_subresource {
            obj.as_object_mut().expect("checked to be an object").remove("status");
        }
        if let Some(normalize) = def.normalize {
            normalize(&mut obj);
        }
        let empty = json!({});
        self.set_managers(def, &empty, &mut obj, writer)?;
        Ok(self.commit(key, ChangeKind::Added, obj, None))
    }

    /// Records in `new.metadata.managedFields` who owns what once `writer` has written
    /// `new` over `old` (`{}` for a create).
    fn set_managers(
        &self,
        def: &ResourceDef,
        old: &Value,
        new: &mut Value,
        writer: &Writer,
    ) -> Result<(), ApiError> {
        let shape = &self.shapes
            [RESOURCES.iter().position(|r| std::ptr::eq(r, def)).expect("a resource of the table")];
        let sub = writer.subresource;
        let before = managed::scoped(old, def.status_subresource, sub);
        let after = managed::scoped(new, def.status_subresource, sub);
        let cmp = managed::compare(&before, &after, shape);
        let managers = managed::update(&Managers::of(old), &cmp, writer, &def.api_version())
            .map_err(|c| ApiError::field_conflicts(def, &c))?;
        let meta = meta_mut(new);
        if managers.0.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), managers.to_value());
        }
        Ok(())
    }

    /// `PUT`: `(201, created)` when the resource creates on update, else `(200, updated)`.
    pub(crate) fn replace(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        status: bool,
        mut body: Value,
        writer: &Writer,
    ) -> Result<(u16, Value), ApiError> {
        let def = &RESOURCES[res];
        check_types(def, &body)?;
        check_name(name, meta_mut(&mut body))?;
        let key = Self::key(res, namespace, name);
        match self.objects.get(&key).cloned() {
            Some(old) => self.write(key, old, body, status, true, writer).map(|o| (200, o)),
            None if def.create_on_update && !status => {
                meta_mut(&mut body).remove("resourceVersion");
                self.create(res, namespace, body, writer).map(|o| (201, o))
            }
            None => Err(ApiError::not_found(def, name)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        status: bool,
        kind: PatchKind,
        body: &[u8],
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let key = Self::key(res, namespace, name);
        let old = self.get(res, namespace, name)?;
        let mut candidate = old.clone();
        match kind {
            PatchKind::Merge => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                json_patch::merge(&mut candidate, &patch);
            }
            PatchKind::Json => {
                let patch: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                // One operation at a time: the API server's JSON patch library (evanphx
                // json-patch) lets `test` of a null value pass on a missing member, which
                // kube's finalizer helper relies on to add the first finalizer.
                for op in &patch.0 {
                    if let json_patch::PatchOperation::Test(test) = op
                        && test.value.is_null()
                        && candidate.pointer(test.path.as_str()).is_none_or(Value::is_null)
                    {
                        continue;
                    }
                    json_patch::patch(&mut candidate, std::slice::from_ref(op)).map_err(|e| {
                        ApiError::new(422, "Invalid", format!("the patch could not be applied: {e}"))
                    })?;
                }
            }
        }
        self.write(key, old, candidate, status, false, writer)
    }

    /// Server-side apply: `(201, created)` when the object did not exist. The applied
    /// configuration is merged by the schema, what `manager` applied before and not now is
    /// pruned unless someone else owns it, and changing another manager's field is a 409
    /// unless `force` (see [`managed`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        status: bool,
        mut applied: Value,
        manager: &str,
        force: bool,
    ) -> Result<(u16, Value), ApiError> {
        let def = &RESOURCES[res];
        check_types(def, &applied)?;
        check_name(name, meta_mut(&mut applied))?;
        if meta_mut(&mut applied).get("managedFields").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let subresource = if status { "status" } else { "" };
        let shape = &self.shapes[res];
        let set = managed::field_set(&managed::scoped(&applied, def.status_subresource, subresource), shape);
        let writer =
            Writer { manager: manager.to_owned(), subresource, op: Op::Apply { set: set.clone(), force } };
        let key = Self::key(res, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            if status {
                return Err(ApiError::not_found(def, name));
            }
            return self.create(res, namespace, applied, &writer).map(|o| (201, o));
        };
        // Only what this endpoint writes is merged; the precondition travels along.
        let mut config = applied.clone();
        if let Some(map) = config.as_object_mut() {
            if status {
                let rv = applied.pointer("/metadata/resourceVersion").cloned();
                map.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind");
                if let Some(rv) = rv {
                    map.insert("metadata".into(), json!({ "resourceVersion": rv }));
                }
            } else if def.status_subresource {
                map.remove("status");
            }
        }
        let mut candidate = old.clone();
        managed::merge(&mut candidate, &config, shape);
        let managers = Managers::of(&old);
        let last = managers.applied(manager, subresource);
        managed::prune(&mut candidate, &last, &managers.owned_with(manager, subresource, &set), shape);
        let result = self.write(key, old, candidate, status, false, &writer)?;
        Ok((200, result))
    }

    /// The update pipeline shared by `PUT`, patches and apply: `new` is the whole object
    /// the client asked for.
    fn write(
        &mut self,
        key: Key,
        old: Value,
        mut new: Value,
        status: bool,
        put: bool,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[key.0];
        let name = key.2.clone();
        check_types(def, &new)?;
        let meta = meta_mut(&mut new);
        check_name(&name, meta)?;
        check_namespace(def, &key.1, meta)?;
        let old_rv = str_at(&old, "/metadata/resourceVersion").to_string();
        match meta.get("resourceVersion").and_then(Value::as_str).filter(|rv| !rv.is_empty()) {
            Some(rv) if rv != old_rv => {
                return Err(ApiError::conflict(
                    def,
                    &name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            None if put && !def.builtin => {
                return Err(ApiError::invalid(
                    def,
                    &name,
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                ));
            }
            _ => {}
        }
        let mut result = if status {
            // The status strategy: everything but `status` stays as stored.
            let mut result = old.clone();
            match new.get("status") {
                Some(s) => result["status"] = s.clone(),
                None => {
                    result.as_object_mut().expect("stored objects are objects").remove("status");
                }
            }
            result
        } else {
            let meta = meta_mut(&mut new);
            let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
            for field in
                ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]
            {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            // The server keeps its own record of who owns what.
            match old_meta.get("managedFields") {
                Some(v) => meta.insert("managedFields".into(), v.clone()),
                None => meta.remove("managedFields"),
            };
            meta.remove("selfLink");
            normalize_meta(meta);
            if def.status_subresource {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().expect("checked to be an object").remove("status");
                    }
                }
            }
            if let Some(normalize) = def.normalize {
                normalize(&mut new);
            }
            new
        };
        meta_mut(&mut result).insert("resourceVersion".into(), Value::String(old_rv));
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before = finalizers(&old);
            let added: Vec<&str> = finalizers(&result).into_iter().filter(|f| !before.contains(f)).collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    def,
                    &name,
                    "metadata.finalizers",
                    &format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }
        if def.tracks_generation && !status && spec_of(def, &result) != spec_of(def, &old) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut result).insert("generation".into(), json!(generation + 1));
        }
        self.set_managers(def, &old, &mut result, writer)?;
        if result == old {
            // A no-op write is not written: no new resourceVersion, no watch event.
            return Ok(old);
        }
        if result.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&result).is_empty() {
            // The last finalizer is gone: the object is deleted instead of updated.
            let deleted = self.remove(key, old, true);
            meta_mut(&mut result)
                .insert("resourceVersion".into(), deleted["metadata"]["resourceVersion"].clone());
            return Ok(result);
        }
        Ok(self.commit(key, ChangeKind::Modified, result, Some(old)))
    }

    /// `DELETE`: the object with `deletionTimestamp` set while finalizers remain, else a
    /// success Status.
    pub(crate) fn delete(
        &mut self,
        res: usize,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[res];
        let key = Self::key(res, namespace, name);
        let old = self.get(res, namespace, name)?;
        let (uid, rv) = (str_at(&old, "/metadata/uid"), str_at(&old, "/metadata/resourceVersion"));
        if let Some(want) = options.pointer("/preconditions/uid").and_then(Value::as_str)
            && want != uid
        {
            let why = format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}");
            return Err(ApiError::conflict(def, name, &why));
        }
        if let Some(want) = options.pointer("/preconditions/resourceVersion").and_then(Value::as_str)
            && want != rv
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
            );
            return Err(ApiError::conflict(def, name, &why));
        }
        let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
            || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        if !finalizers(&old).is_empty() || namespaces::has_spec_finalizers(def, &old) {
            return Ok(self.mark_deleted(key, old));
        }
        let deleted = self.remove(key, old, !orphan);
        Ok(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": def.group, "kind": def.plural,
                        "uid": deleted["metadata"]["uid"]},
        }))
    }

    /// Sets `deletionTimestamp` (once) on an object that has finalizers.
    fn mark_deleted(&mut self, key: Key, old: Value) -> Value {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return old;
        }
        let def = &RESOURCES[key.0];
        let mut new = old.clone();
        let meta = meta_mut(&mut new);
        meta.insert("deletionTimestamp".into(), now());
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if def.tracks_generation {
            let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            meta.insert("generation".into(), json!(generation + 1));
        }
        namespaces::mark_terminating(def, &mut new);
        self.commit(key, ChangeKind::Modified, new, Some(old))
    }

    /// Removes an object; with `cascade`, its dependents go too (the garbage
    /// collector's background deletion, done at once).
    fn remove(&mut self, key: Key, old: Value, cascade: bool) -> Value {
        let deleted = self.commit(key, ChangeKind::Deleted, old.clone(), Some(old));
        let uid = str_at(&deleted, "/metadata/uid").to_string();
        if cascade && !uid.is_empty() {
            self.collect_garbage(&uid);
        }
        deleted
    }

    fn collect_garbage(&mut self, owner_uid: &str) {
        let live: HashSet<String> =
            self.objects.values().map(|o| str_at(o, "/metadata/uid").to_string()).collect();
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                let owners: Vec<&str> = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str()).collect())
                    .unwrap_or_default();
                owners.contains(&owner_uid) && owners.iter().all(|u| !live.contains(*u))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in dependents {
            let Some(obj) = self.objects.get(&key).cloned() else { continue };
            if finalizers(&obj).is_empty() {
                self.remove(key, obj, true);
            } else {
                self.mark_deleted(key, obj);
            }
        }
    }

    /// The objects of one resource as they were at `at`, rebuilt from the history;
    /// borrowed, so that a page of a list of 10,000 objects copies only its page.
    fn snapshot(&self, res: usize, at: u64) -> Option<BTreeMap<(String, String), &Value>> {
        if at < self.compacted_rv && at < self.rv {
            return None;
        }
        let mut map: BTreeMap<(String, String), &Value> = self
            .objects
            .range((res, String::new(), String::new())..)
            .take_while(|(k, _)| k.0 == res)
            .map(|(k, v)| ((k.1.clone(), k.2.clone()), v))
            .collect();
        for change in self.history.iter().rev().take_while(|c| c.rv > at).filter(|c| c.res == res) {
            let key = (change.namespace.clone(), str_at(&change.object, "/metadata/name").to_string());
            match (&change.kind, &change.old) {
                (ChangeKind::Added, _) => {
                    map.remove(&key);
                }
                (_, Some(old)) => {
                    map.insert(key, old);
                }
                (_, None) => unreachable!("modifications and deletions keep the old object"),
            }
        }
        Some(map)
    }

    pub(crate) fn list(
        &self,
        res: usize,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        let def = &RESOURCES[res];
        let (at, after) = match &query.continue_token {
            Some(token) => decode_continue(token)?,
            None => match query.resource_version.as_deref() {
                None | Some("") | Some("0") => (self.rv, None),
                Some(text) => {
                    let rv = parse_rv(text)?;
                    if rv > self.rv {
                        return Err(ApiError::new(
                            504,
                            "Timeout",
                            format!("Too large resource version: {rv}, current: {}", self.rv),
                        ));
                    }
                    (if query.exact { rv } else { self.rv }, None)
                }
            },
        };
        let snapshot = self.snapshot(res, at).ok_or_else(|| {
            if query.continue_token.is_some() {
                ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can \
                     start a new list without the continue parameter.",
                )
            } else {
                ApiError::gone(format!("too old resource version: {at} ({})", self.compacted_rv))
            }
        })?;
        let mut items: Vec<((String, String), &Value)> = snapshot
            .into_iter()
            .filter(|((ns, _), o)| {
                namespace.is_none_or(|want| want == ns) && query.labels.matches(o) && query.fields.matches(o)
            })
            .filter(|(k, _)| after.as_ref().is_none_or(|after| k > after))
            .collect();
        let mut metadata = json!({"resourceVersion": at.to_string()});
        if let Some(limit) = query.limit.filter(|l| *l > 0)
            && items.len() > limit
        {
            metadata["remainingItemCount"] = json!(items.len() - limit);
            items.truncate(limit);
            metadata["continue"] = json!(encode_continue(at, &items.last().expect("limit > 0").0));
        }
        let items: Vec<Value> = items
            .into_iter()
            .map(|(_, o)| {
                let mut o = o.clone();
                if def.builtin {
                    let o = o.as_object_mut().expect("stored objects are objects");
                    o.remove("apiVersion");
                    o.remove("kind");
                }
                o
            })
            .collect();
        Ok(json!({
            "kind": format!("{}List", def.kind), "apiVersion": def.api_version(),
            "metadata": metadata, "items": items,
        }))
    }

    pub(crate) fn watch(
        &mut self,
        res: usize,
        namespace: Option<String>,
        resource_version: Option<&str>,
        client: Option<String>,
        metadata_only: bool,
    ) -> Result<WatchStart, ApiError> {
        let in_namespace = |ns: &str| namespace.as_deref().is_none_or(|want| want == ns);
        let (initial, from_rv) = match resource_version {
            None | Some("") | Some("0") => {
                let initial = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.0 == res && in_namespace(&k.1))
                    .map(|(k, o)| {
                        Arc::new(Change {
                            rv: parse_rv(str_at(o, "/metadata/resourceVersion")).unwrap_or(0),
                            res,
                            namespace: k.1.clone(),
                            kind: ChangeKind::Added,
                            object: o.clone(),
                            old: None,
                        })
                    })
                    .collect();
                (initial, self.rv)
            }
            Some(text) => {
                let rv = parse_rv(text)?;
                if rv < self.compacted_rv {
                    return Ok(WatchStart::Gone(ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        self.compacted_rv
                    ))));
                }
                let initial = self
                    .history
                    .iter()
                    .filter(|c| c.rv > rv && c.res == res && in_namespace(&c.namespace))
                    .cloned()
                    .collect();
                (initial, rv.max(self.rv))
            }
        };
        let (tx, live) = unbounded_channel();
        self.watchers.push(WatchSub { res, namespace, client, metadata_only, tx });
        Ok(WatchStart::Started { initial, from_rv, live })
    }
}

pub(crate) fn parse_rv(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {text:?}")))
}

fn encode_continue(rv: u64, (ns, name): &(String, String)) -> String {
    let token = json!({"rv": rv, "namespace": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

fn decode_continue(token: &str) -> Result<(u64, Option<(String, String)>), ApiError> {
    let invalid =
        || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let rv = value["rv"].as_u64().ok_or_else(invalid)?;
    let ns = value["namespace"].as_str().ok_or_else(invalid)?.to_string();
    let name = value["name"].as_str().ok_or_else(invalid)?.to_string();
    Ok((rv, Some((ns, name))))
}

fn check_types(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request is not a JSON object"));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request("Object 'Kind' is missing"));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request("Object 'apiVersion' is missing"));
    }
    if kind != def.kind || api_version != def.api_version() {
        return Err(ApiError::bad_request(format!(
            "the object's {api_version}, Kind={kind} does not match the expected {}, Kind={}",
            def.api_version(),
            def.kind
        )));
    }
    Ok(())
}

fn check_name(name: &str, meta: &mut Map<String, Value>) -> Result<(), ApiError> {
    match meta.get("name").and_then(Value::as_str) {
        Some(body) if !body.is_empty() && body != name => Err(ApiError::bad_request(format!(
            "the name of the object ({body}) does not match the name on the URL ({name})"
        ))),
        _ => {
            meta.insert("name".into(), Value::String(name.to_string()));
            Ok(())
        }
    }
}

fn check_namespace(
    def: &ResourceDef,
    namespace: &str,
    meta: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    if !def.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    match meta.get("namespace").and_then(Value::as_str) {
        Some(body) if !body.is_empty() && body != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
            Ok(())
        }
    }
}

/// A DNS-1123 subdomain, as object names must be.
fn validate_name(name: &str) -> Result<(), &'static str> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() <= 253
        && name.chars().all(ok_char)
        && alnum(name.chars().next())
        && alnum(name.chars().last())
    {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character")
    }
}

/// Drops empty metadata collections, as the typed `ObjectMeta` round trip does.
fn normalize_meta(meta: &mut Map<String, Value>) {
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match meta.get(field) {
            Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let obj = obj.as_object_mut().expect("objects are checked to be JSON objects");
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// What `metadata.generation` follows: everything but metadata (and status, when it
/// is a subresource).
fn spec_of(def: &ResourceDef, obj: &Value) -> Value {
    let mut obj = obj.clone();
    let map = obj.as_object_mut().expect("stored objects are objects");
    map.remove("metadata");
    if def.status_subresource {
        map.remove("status");
    }
    obj
}

fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).expect("a Time serializes")
}

fn new_uid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..])
}

/// The 5 characters generateName appends, from the API server's alphabet.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char).collect()
}
