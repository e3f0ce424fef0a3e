//! An in-process Kubernetes API server for the controller's tests: real HTTP, the
//! real wire protocol, so `kube::Client`, `Api<K>`, `watcher`, `reflector`,
//! `Controller` and the event `Recorder` run unchanged against it.
//!
//! Nothing on crates.io fits: `kube-fake-client` has no watch and targets older kube;
//! `envtest` needs Go and downloads kube-apiserver and etcd.
//!
//! Resources are the one-line-each table [`RESOURCES`]: both switchboard CRDs, core
//! `secrets`, `configmaps`, `namespaces`, `events`, `events.k8s.io` `events` and
//! `coordination.k8s.io` `leases`, namespaced and cluster-wide (`/apis/g/v/employees`).
//!
//! # Faithful
//! - One global `resourceVersion` counter, as a string. Create answers 201 and sets
//!   `uid`, `creationTimestamp`, `resourceVersion`, `generation: 1` (CRDs), resolves
//!   `generateName`, rejects a set `resourceVersion` (500, as etcd3 storage does);
//!   409 AlreadyExists, 404 NotFound, 409 Conflict on a stale `resourceVersion`,
//!   422 Invalid, 410 Expired, 400 BadRequest, 415, all as `metav1.Status`.
//! - `PUT` without `resourceVersion` is 422 for CRDs, unconditional for built-ins;
//!   `PUT` creates Events and Leases (`AllowCreateOnUpdate`).
//! - Status subresource: create drops `status`; main-resource writes keep the stored
//!   status; `/status` writes change only `status` (metadata too is ignored there).
//!   `metadata.generation` bumps only when something outside metadata and status
//!   changes (and when `deletionTimestamp` is set). A write that changes nothing is
//!   not written: no new `resourceVersion`, no watch event.
//! - Patches: JSON merge (`application/merge-patch+json`), JSON patch
//!   (`application/json-patch+json`, 422 when an op fails), server-side apply
//!   (`application/apply-patch+yaml`, `fieldManager` required, creates a missing
//!   object with 201), on the resource and on `/status`. A `resourceVersion` in a
//!   patch is a precondition.
//! - Field ownership ([`managed`]), as structured-merge-diff keeps it: every write
//!   records `metadata.managedFields` (manager from `fieldManager`, else the user agent
//!   up to its first `/`; operation `Apply` or `Update`; subresource `status`) in the
//!   `fieldsV1` format. Apply merges by the schema (the CRDs' own
//!   `x-kubernetes-list-type`/`-map-keys`, `ObjectMeta`'s markers for built-ins: list
//!   maps item by item, sets by value), prunes what its manager applied before and
//!   not now unless another manager owns it, and answers 409 Conflict (naming each
//!   field and manager) when it would change a field another manager owns, unless
//!   `force=true`, which takes the field over; equal values are shared. Updates take
//!   the fields they change; removed fields leave every manager. An apply or update
//!   that changes neither the object nor any ownership is not written.
//! - Delete: with finalizers it sets `deletionTimestamp` (once) and returns the object;
//!   the update that removes the last finalizer deletes it; adding a finalizer to a
//!   deleting object is 422; without finalizers it answers a success `Status`.
//!   Preconditions (`uid`, `resourceVersion`) are honoured. Dependents whose every
//!   `ownerReference` is gone are deleted (the garbage collector), unless
//!   `propagationPolicy=Orphan`.
//! - List: `labelSelector` (full grammar), `fieldSelector` (`metadata.name`,
//!   `metadata.namespace`), `limit`/`continue` with a consistent snapshot,
//!   `resourceVersion` with `resourceVersionMatch=Exact` (rebuilt from the history) or
//!   `NotOlderThan`; built-in list items carry no `apiVersion`/`kind`.
//! - Watch: newline-delimited `ADDED`/`MODIFIED`/`DELETED` from a `resourceVersion`
//!   (or synthetic `ADDED`s for `0`/unset), selectors with objects entering/leaving
//!   them seen as `ADDED`/`DELETED`, `BOOKMARK`s every [`Options::bookmark_interval`]
//!   and before `timeoutSeconds` ends the stream, `sendInitialEvents` with the
//!   `k8s.io/initial-events-end` bookmark, and an in-stream `ERROR` 410 Expired when
//!   the `resourceVersion` is older than the kept history ([`Options::history_limit`]
//!   changes, or [`FakeApiServer::compact`]). Open watches are counted per resource and
//!   client ([`FakeApiServer::open_watches_of`]), as the real server's
//!   `apiserver_longrunning_requests{verb="WATCH"}` gauge counts them.
//! - Secret `stringData` is folded into `data`; `Accept: ...;as=PartialObjectMetadata`
//!   is served for gets, lists and watches (kube's `Api<PartialObjectMeta<K>>`), and
//!   recorded ([`RequestRecord::metadata_only`]); discovery documents for `/version`, `/api`,
//!   `/apis`, `/api/v1`, `/apis/{group}/{version}`.
//!
//! # Simplified
//! - Field ownership knows the stored version only (no conversion), and untyped parts
//!   of built-ins (Events, Leases) as granular maps and atomic lists.
//! - Strategic merge patch is accepted for built-ins only, as a JSON merge patch (lists
//!   replaced, not merged by key); CRDs answer 415 as the real server does.
//! - No schema validation, defaulting, pruning or CEL rules; no admission (but
//!   `NamespaceLifecycle`'s 403 on a create in a terminating namespace); no RBAC or
//!   authentication; namespaces need not exist (`default`, `kube-system`,
//!   `kube-public` and `kube-node-lease` do, and a Namespace's deletion is the real
//!   one's: [`namespaces`]); `dryRun` is refused (400);
//!   `deletecollection` is 405; `gracePeriodSeconds` is ignored; garbage collection is
//!   immediate and Foreground behaves as Background; `get` ignores `resourceVersion`.
//! - One history for all resources; a watch or list `resourceVersion` newer than the
//!   store is not waited for (list: 504 at once; watch: nothing until it is reached).
//!
//! [`client_for_tests`] runs the same tests against a real cluster when
//! `SWITCHBOARD_TEST_KUBECONFIG` names a kubeconfig.

mod http;
mod managed;
mod namespaces;
pub mod resources;
mod selectors;
mod store;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Client, Config, Resource,
    config::{KubeConfigOptions, Kubeconfig},
};
pub use resources::RESOURCES;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::{net::TcpListener, sync::OwnedRwLockWriteGuard, task::JoinHandle};

use self::{http::Shared, store::Store};

/// Knobs of a fake server.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many changes the watch history keeps; a watch from before them gets 410.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one (the real server: about 1 min).
    pub bookmark_interval: Duration,
    /// Resource types (`plural.group`) a namespace deletion deletes first, in this
    /// order; the others follow ([`namespaces`]).
    pub namespace_deletion_order: Vec<String>,
    /// The time between two resource types of a namespace deletion (zero: all at once).
    pub namespace_deletion_gap: Duration,
    /// How long the namespace controller waits before it looks again at a namespace
    /// whose content is held by finalizers (the real one: `15/2+1` s).
    pub namespace_recheck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(1),
            namespace_deletion_order: Vec::new(),
            namespace_deletion_gap: Duration::ZERO,
            namespace_recheck: Duration::from_secs(8),
        }
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'static str,
    /// `plural.group`, or `plural` for the core group: `employees.switchboard.dev`,
    /// `secrets`, `events.events.k8s.io`.
    pub resource: String,
    /// `""` or `"status"`.
    pub subresource: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// For patches: `merge`, `json`, `apply`, `strategic` or `unknown`.
    pub patch_type: Option<&'static str>,
    pub field_manager: Option<String>,
    /// The [`CLIENT_HEADER`] of the request: which client made it ([`FakeApiServer::client_as`]).
    pub client: Option<String>,
    /// Asked for `PartialObjectMetadata` (metadata only, as `metadata_watcher` does).
    pub metadata_only: bool,
    /// The HTTP status answered (200 for a watch that started, even if it then sent 410).
    pub code: u16,
}

/// A header naming the client of a request in the log, so tests tell two controllers (or
/// a controller and the test itself) apart.
pub const CLIENT_HEADER: &str = "x-test-client";

/// A running fake API server on `127.0.0.1`. Dropping it stops it.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    url: String,
    task: JoinHandle<()>,
}

/// Holds new watch requests back (they wait, then start) until dropped.
pub struct WatchPause(#[allow(dead_code)] OwnedRwLockWriteGuard<()>);

/// Starts a fake API server with default [`Options`].
pub async fn start() -> FakeApiServer {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> FakeApiServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr: SocketAddr = listener.local_addr().expect("a bound listener has an address");
    let shared = Arc::new(Shared {
        store: Mutex::new(Store::new(options.history_limit)),
        options,
        watch_gate: Arc::default(),
        addr,
    });
    {
        // The namespaces every cluster has from its start.
        let mut store = shared.store.lock().unwrap();
        let writer =
            managed::Writer { manager: "kube-apiserver".into(), subresource: "", op: managed::Op::Update };
        let res = resources::find("", "v1", "namespaces").expect("namespaces are served");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let namespace =
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            store.create(res, "", namespace, &writer).expect("a fresh store takes the initial namespaces");
        }
    }
    let app = http::router(shared.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeApiServer { shared, url: format!("http://{addr}"), task }
}

/// A client for the controller's end-to-end tests: a real cluster's when
/// `SWITCHBOARD_TEST_KUBECONFIG` names a kubeconfig (then there is no fake, and
/// fake-only assertions must be skipped), else a fresh fake's.
pub async fn client_for_tests() -> (Client, Option<FakeApiServer>) {
    install_crypto_provider();
    match std::env::var_os("SWITCHBOARD_TEST_KUBECONFIG") {
        Some(path) => {
            eprintln!(
                "apiserver: SWITCHBOARD_TEST_KUBECONFIG={} - using that cluster, fake-only checks skipped",
                path.to_string_lossy()
            );
            let kubeconfig = Kubeconfig::read_from(&path).expect("read SWITCHBOARD_TEST_KUBECONFIG");
            let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("a usable kubeconfig in SWITCHBOARD_TEST_KUBECONFIG");
            (Client::try_from(config).expect("a kube client"), None)
        }
        None => {
            let server = start().await;
            (server.client(), Some(server))
        }
    }
}

fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn resource_index<K: Resource<DynamicType = ()>>() -> usize {
    let (group, version, plural) = (K::group(&()), K::version(&()), K::plural(&()));
    resources::find(&group, &version, &plural)
        .unwrap_or_else(|| panic!("{group}/{version} {plural} is not in the fake API server's RESOURCES"))
}

fn group_resource_index(resource: &str) -> usize {
    resources::find_group_resource(resource)
        .unwrap_or_else(|| panic!("{resource} is not in the fake API server's RESOURCES"))
}

impl FakeApiServer {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A plain-http kube config for this server, default namespace `default`.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.url.parse().expect("a valid URL"));
        config.default_namespace = "default".into();
        config
    }

    pub fn client(&self) -> Client {
        install_crypto_provider();
        Client::try_from(self.config()).expect("a kube client for the fake API server")
    }

    /// A client whose requests the log attributes to `name` ([`RequestRecord::client`]).
    pub fn client_as(&self, name: &str) -> Client {
        install_crypto_provider();
        let mut config = self.config();
        config.headers.push((
            axum::http::HeaderName::from_static(CLIENT_HEADER),
            axum::http::HeaderValue::from_str(name).expect("a header-safe client name"),
        ));
        Client::try_from(config).expect("a kube client for the fake API server")
    }

    /// The requests `client` made ([`Self::client_as`]).
    pub fn requests_of(&self, client: &str) -> Vec<RequestRecord> {
        self.store().requests.iter().filter(|r| r.client.as_deref() == Some(client)).cloned().collect()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.store().requests.clone()
    }

    /// Requests by verb, resource (`plural.group`) and subresource (`""` or `"status"`).
    pub fn count(&self, verb: &str, resource: &str, subresource: &str) -> usize {
        self.store()
            .requests
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource && r.subresource == subresource)
            .count()
    }

    /// [`Self::count`] naming the resource by its Rust type.
    pub fn count_of<K: Resource<DynamicType = ()>>(&self, verb: &str, subresource: &str) -> usize {
        self.count(verb, &RESOURCES[resource_index::<K>()].group_resource(), subresource)
    }

    pub fn clear_requests(&self) {
        self.store().requests.clear();
    }

    /// The stored object, read directly (not counted as a request).
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        let obj = self.store().object(resource_index::<K>(), namespace, name).cloned()?;
        Some(serde_json::from_value(obj).expect("stored objects deserialize"))
    }

    /// Every stored object of a type, ordered by namespace and name.
    pub fn list<K: Resource<DynamicType = ()> + DeserializeOwned>(&self) -> Vec<K> {
        let objects = self.store().objects(resource_index::<K>());
        objects.into_iter().map(|o| serde_json::from_value(o).expect("stored objects deserialize")).collect()
    }

    /// The stored JSON of an object of `plural.group`.
    pub fn get_raw(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.store().object(group_resource_index(resource), namespace, name).cloned()
    }

    pub fn list_raw(&self, resource: &str) -> Vec<Value> {
        self.store().objects(group_resource_index(resource))
    }

    /// Creates an object directly, with the semantics of a create request (watchers
    /// see it) but not counted as one. Namespace from the object, else `default`.
    pub fn insert<K>(&self, obj: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let mut value = serde_json::to_value(obj).expect("objects serialize");
        value["apiVersion"] = K::api_version(&()).into();
        value["kind"] = K::kind(&()).into();
        let namespace = obj.meta().namespace.clone().unwrap_or_else(|| "default".into());
        let writer = managed::Writer { manager: "test".into(), subresource: "", op: managed::Op::Update };
        let stored = self
            .store()
            .create(resource_index::<K>(), &namespace, value, &writer)
            .unwrap_or_else(|e| panic!("insert: {}", e.message));
        serde_json::from_value(stored).expect("stored objects deserialize")
    }

    /// The current (last written) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store().rv
    }

    /// Forgets the watch history, like an etcd compaction: watching or exact-listing
    /// from any earlier resourceVersion gets 410 Expired.
    pub fn compact(&self) {
        self.store().compact();
    }

    /// Ends every open watch stream, as an API server restart would; returns how many.
    pub fn drop_watches(&self) -> usize {
        self.store().drop_watches()
    }

    /// Watch streams currently open.
    pub fn active_watches(&self) -> usize {
        self.store().active_watches()
    }

    /// Watch streams of `K` open now, by client ([`Self::client_as`]) and whether they
    /// ask for metadata only: what a real server's `apiserver_longrunning_requests` gauge
    /// counts.
    pub fn open_watches_of<K: Resource<DynamicType = ()>>(&self) -> Vec<(Option<String>, bool)> {
        self.store().open_watches(resource_index::<K>())
    }

    /// Holds new watch requests back until the returned guard is dropped, so a test
    /// can change the store while no watch is open.
    pub async fn pause_watches(&self) -> WatchPause {
        WatchPause(self.shared.watch_gate.clone().write_owned().await)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut store) = self.shared.store.lock() {
            store.drop_watches();
        }
    }
}
