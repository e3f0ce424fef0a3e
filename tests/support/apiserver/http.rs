//! The HTTP face: routing, discovery, query parameters, and the watch stream.

use std::{
    collections::{BTreeSet, HashMap},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::{
    sync::{RwLock, mpsc},
    time::Instant,
};

use super::{
    Options, RequestRecord,
    managed::{Op, Writer},
    namespaces,
    resources::{self, RESOURCES, ResourceDef},
    selectors::{FieldSelector, LabelSelector},
    store::{ApiError, Change, ChangeKind, ListQuery, PatchKind, Store, WatchStart},
};

/// A watch without `timeoutSeconds` ends after this (the real server picks 30–60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub options: Options,
    /// New watches take it for reading while they register; `pause_watches` holds it.
    pub watch_gate: Arc<RwLock<()>>,
    pub addr: SocketAddr,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Which object(s) a resource path names.
struct Target {
    res: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_target(segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(*sub)),
        _ => return None,
    };
    let res = resources::find(group, version, plural)?;
    let def = &RESOURCES[res];
    if namespace.is_some() != def.namespaced && (namespace.is_some() || name.is_some()) {
        return None;
    }
    let status = match subresource {
        None => false,
        Some("status") if def.status_subresource => true,
        Some(_) => return None,
    };
    Some(Target { res, namespace, name, status })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    if method == Method::GET
        && let Some(doc) = discovery(&shared, &segments)
    {
        return json_response(200, &doc);
    }
    let Some(target) = parse_target(&segments) else {
        return error_response(&ApiError::not_found_path());
    };
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let partial = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, &target.name) {
        (&Method::GET, None) if is_watch => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => "unknown",
    };
    let patch_type = (verb == "patch").then_some(match content_type.as_str() {
        "application/merge-patch+json" => "merge",
        "application/json-patch+json" => "json",
        "application/apply-patch+yaml" => "apply",
        "application/strategic-merge-patch+json" => "strategic",
        _ => "unknown",
    });
    let mut record = RequestRecord {
        verb,
        resource: RESOURCES[target.res].group_resource(),
        subresource: if target.status { "status" } else { "" },
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        patch_type,
        field_manager: query.get("fieldManager").cloned(),
        client: headers.get(super::CLIENT_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned),
        metadata_only: partial,
        code: 0,
    };
    if verb == "watch" {
        return watch(shared, target, &query, partial, record).await;
    }
    // Who a write is recorded as: `fieldManager`, else the user agent up to its first `/`
    // (the API server's `managerOrUserAgent`).
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let manager = query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| user_agent.split('/').next().unwrap_or("").to_owned());
    let writer = Writer { manager, subresource: if target.status { "status" } else { "" }, op: Op::Update };
    let mut store = shared.store.lock().unwrap();
    let namespace_delete = verb == "delete" && namespaces::started_terminating(target.res);
    let was_terminating = namespace_delete && target.name.as_deref().is_some_and(|n| store.terminating(n));
    let result = serve(&mut store, &target, verb, patch_type, &content_type, &query, &body, &writer);
    record.code = match &result {
        Ok((code, _)) => *code,
        Err(e) => e.code,
    };
    let terminating =
        namespace_delete && !was_terminating && target.name.as_deref().is_some_and(|n| store.terminating(n));
    store.requests.push(record);
    drop(store);
    if let (true, Some(name)) = (terminating, target.name.clone()) {
        // The namespace controller's part, started once per deletion.
        tokio::spawn(namespaces::terminate(shared.clone(), name));
    }
    match result {
        Ok((code, doc)) => {
            let doc = if !partial {
                doc
            } else if verb == "list" {
                partial_list(&doc)
            } else {
                partial_object(&doc)
            };
            json_response(code, &doc)
        }
        Err(e) => error_response(&e),
    }
}

/// Everything but watch, under the store's lock.
#[allow(clippy::too_many_arguments)]
fn serve(
    store: &mut Store,
    target: &Target,
    verb: &str,
    patch_type: Option<&str>,
    content_type: &str,
    query: &HashMap<String, String>,
    body: &[u8],
    writer: &Writer,
) -> Result<(u16, Value), ApiError> {
    let def = &RESOURCES[target.res];
    let namespace = target.namespace.as_deref().unwrap_or("");
    let name = target.name.as_deref().unwrap_or("");
    if query.contains_key("dryRun") {
        return Err(ApiError::bad_request("dryRun is not supported by the fake API server"));
    }
    let json_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}")))
    };
    match verb {
        "list" => {
            let query = list_query(query)?;
            store.list(target.res, target.namespace.as_deref(), &query).map(|doc| (200, doc))
        }
        "get" => store.get(target.res, namespace, name).map(|doc| (200, doc)),
        "create" if target.namespace.is_none() && def.namespaced => Err(ApiError::method_not_allowed()),
        "create" => store.create(target.res, namespace, json_body()?, writer).map(|doc| (201, doc)),
        "update" => store.replace(target.res, namespace, name, target.status, json_body()?, writer),
        "patch" => match patch_type {
            Some("merge") => {
                store.patch(target.res, namespace, name, target.status, PatchKind::Merge, body, writer)
            }
            Some("strategic") if def.builtin => {
                store.patch(target.res, namespace, name, target.status, PatchKind::Merge, body, writer)
            }
            Some("json") => {
                store.patch(target.res, namespace, name, target.status, PatchKind::Json, body, writer)
            }
            Some("apply") => {
                let manager = query
                    .get("fieldManager")
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| ApiError::bad_request("PATCH apply requests require fieldManager"))?;
                let force = match query.get("force").map(String::as_str) {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => return Err(ApiError::bad_request(format!("invalid force {other:?}"))),
                };
                let applied = parse_apply_body(body)?;
                return store.apply(target.res, namespace, name, target.status, applied, manager, force);
            }
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
        .map(|doc| (200, doc)),
        "delete" => {
            let options = if body.is_empty() { json!({}) } else { json_body()? };
            let mut options = options;
            if let Some(policy) = query.get("propagationPolicy") {
                options["propagationPolicy"] = json!(policy);
            }
            store.delete(target.res, namespace, name, &options).map(|doc| (200, doc))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Apply bodies are YAML (JSON is YAML too).
fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

fn list_query(query: &HashMap<String, String>) -> Result<ListQuery, ApiError> {
    Ok(ListQuery {
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
        resource_version: query.get("resourceVersion").cloned(),
        exact: query.get("resourceVersionMatch").map(String::as_str) == Some("Exact"),
        limit: match query.get("limit") {
            Some(l) => Some(l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?),
            None => None,
        },
        continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

struct WatchFilter {
    def: &'static ResourceDef,
    labels: LabelSelector,
    fields: FieldSelector,
    partial: bool,
}

impl WatchFilter {
    /// The event a watcher with these selectors sees for a change, if any: an object
    /// that starts (stops) matching is ADDED (DELETED) for it.
    fn event(&self, change: &Change) -> Option<Bytes> {
        let matches = |o: &Value| self.labels.matches(o) && self.fields.matches(o);
        let kind = match change.kind {
            ChangeKind::Added => matches(&change.object).then_some("ADDED"),
            ChangeKind::Deleted => matches(&change.object).then_some("DELETED"),
            ChangeKind::Modified => match (matches(&change.object), change.old.as_ref().is_some_and(matches))
            {
                (true, true) => Some("MODIFIED"),
                (true, false) => Some("ADDED"),
                (false, true) => Some("DELETED"),
                (false, false) => None,
            },
        }?;
        let object = if self.partial { partial_object(&change.object) } else { change.object.clone() };
        Some(line(&json!({"type": kind, "object": object})))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let (kind, api_version) = if self.partial {
            ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string())
        } else {
            (self.def.kind.to_string(), self.def.api_version())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}}),
        )
    }
}

async fn watch(
    shared: Arc<Shared>,
    target: Target,
    query: &HashMap<String, String>,
    partial: bool,
    mut record: RequestRecord,
) -> Response {
    let flag = |name: &str| matches!(query.get(name).map(String::as_str), Some("true" | "1"));
    let selectors = (|| -> Result<_, ApiError> {
        let list = list_query(query)?;
        Ok((list.labels, list.fields))
    })();
    let gate = shared.watch_gate.clone().read_owned().await;
    let started = {
        let mut store = shared.store.lock().unwrap();
        let started = selectors.and_then(|selectors| {
            let rv = query.get("resourceVersion").map(String::as_str);
            let (client, metadata_only) = (record.client.clone(), record.metadata_only);
            store
                .watch(target.res, target.namespace.clone(), rv, client, metadata_only)
                .map(|start| (selectors, start))
        });
        record.code = started.as_ref().map_or_else(|e| e.code, |_| 200);
        store.requests.push(record);
        started
    };
    drop(gate);
    let ((labels, fields), start) = match started {
        Ok(started) => started,
        Err(e) => return error_response(&e),
    };
    let filter = WatchFilter { def: &RESOURCES[target.res], labels, fields, partial };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let task = WatchTask {
        shared,
        filter,
        bookmarks: flag("allowWatchBookmarks"),
        send_initial_events: flag("sendInitialEvents"),
        deadline: Instant::now() + timeout,
        tx,
    };
    tokio::spawn(task.run(start));
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
}

struct WatchTask {
    shared: Arc<Shared>,
    filter: WatchFilter,
    bookmarks: bool,
    send_initial_events: bool,
    deadline: Instant,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

impl WatchTask {
    async fn send(&self, bytes: Bytes) -> Result<(), ()> {
        self.tx.send(Ok(bytes)).await.map_err(|_| ())
    }

    async fn run(self, start: WatchStart) {
        let (initial, from_rv, mut live) = match start {
            WatchStart::Gone(error) => {
                let _ = self.send(line(&json!({"type": "ERROR", "object": error.status()}))).await;
                return;
            }
            WatchStart::Started { initial, from_rv, live } => (initial, from_rv, live),
        };
        for change in &initial {
            if let Some(event) = self.filter.event(change)
                && self.send(event).await.is_err()
            {
                return;
            }
        }
        if self.send_initial_events && self.send(self.filter.bookmark(from_rv, true)).await.is_err() {
            return;
        }
        let interval = self.shared.options.bookmark_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tokio::time::sleep_until(self.deadline) => {
                    if self.bookmarks {
                        let _ = self.flush_and_bookmark(&mut live, from_rv).await;
                    }
                    return;
                }
                change = live.recv() => match change {
                    None => return,
                    Some(change) => {
                        if change.rv > from_rv
                            && let Some(event) = self.filter.event(&change)
                            && self.send(event).await.is_err()
                        {
                            return;
                        }
                    }
                },
                _ = ticker.tick(), if self.bookmarks => {
                    if self.flush_and_bookmark(&mut live, from_rv).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends what is queued, then a bookmark at the store's resourceVersion: taken
    /// under the lock, so every change up to it has been sent.
    async fn flush_and_bookmark(
        &self,
        live: &mut mpsc::UnboundedReceiver<Arc<Change>>,
        from_rv: u64,
    ) -> Result<(), ()> {
        let (pending, rv) = {
            let store = self.shared.store.lock().unwrap();
            let mut pending = Vec::new();
            while let Ok(change) = live.try_recv() {
                pending.push(change);
            }
            (pending, store.rv)
        };
        for change in pending.iter().filter(|c| c.rv > from_rv) {
            if let Some(event) = self.filter.event(change) {
                self.send(event).await?;
            }
        }
        self.send(self.filter.bookmark(rv.max(from_rv), false)).await
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn partial_object(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

fn partial_list(list: &Value) -> Value {
    let items: Vec<Value> = list["items"].as_array().into_iter().flatten().map(partial_object).collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
           "metadata": list["metadata"], "items": items})
}

fn json_response(code: u16, doc: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(doc).expect("JSON values serialize"),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.status())
}

/// `/version`, `/api`, `/apis`, `/api/v1` and `/apis/{group}/{version}`.
fn discovery(shared: &Shared, segments: &[&str]) -> Option<Value> {
    let group_versions: BTreeSet<(&str, &str)> =
        RESOURCES.iter().filter(|r| !r.group.is_empty()).map(|r| (r.group, r.version)).collect();
    match segments {
        ["version"] => Some(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-switchboard-fake", "gitCommit": "",
            "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64",
        })),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
        })),
        ["apis"] => {
            let groups: Vec<Value> = group_versions
                .iter()
                .map(|(group, version)| {
                    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
                    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", "v1"] => Some(resource_list("", "v1")),
        ["apis", group, version] if group_versions.contains(&(*group, *version)) => {
            Some(resource_list(group, version))
        }
        _ => None,
    }
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for def in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        resources.push(json!({
            "name": def.plural, "singularName": def.kind.to_lowercase(), "namespaced": def.namespaced,
            "kind": def.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }));
        if def.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", def.plural), "singularName": "", "namespaced": def.namespaced,
                "kind": def.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}
