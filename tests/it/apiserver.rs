//! The fake Kubernetes API server (`tests/support/apiserver`), driven by kube's real
//! client, watcher and reflector.

use std::{fmt::Debug, future::Future, time::Duration};

use futures_util::{Stream, StreamExt};
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{ConfigMap, Event as CoreEvent, Secret},
        events::v1::Event as EventsEvent,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, CustomResourceExt, Resource, ResourceExt,
    api::{
        DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, VersionMatch, WatchEvent,
        WatchParams,
    },
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector, watcher,
    },
};
use serde_json::{Value, json};
use switchboard::api::{Employee, PhoneSystem};

use crate::support::apiserver::{self, FakeApiServer, Options, RESOURCES};

const NS: &str = "team";
const WAIT: Duration = Duration::from_secs(5);

fn employee(name: &str) -> Employee {
    serde_json::from_value(json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"givenName": "Jan", "familyName": "Kowalski", "email": "jan@example.com", "extension": "101"},
    }))
    .unwrap()
}

async fn employees() -> (FakeApiServer, Api<Employee>) {
    let server = apiserver::start().await;
    let api = Api::namespaced(server.client(), NS);
    (server, api)
}

/// The status code and reason of a failed request.
fn api_error<T: Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn next_event<K: Clone + Debug, S>(stream: &mut S) -> WatchEvent<K>
where
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    within("a watch event", stream.next()).await.expect("the watch ended").unwrap()
}

fn rv<K: Resource>(obj: &K) -> String {
    obj.resource_version().unwrap()
}

#[test]
fn the_resource_table_matches_the_rust_types() {
    fn check<K: Resource<DynamicType = ()>>(status_subresource: bool) {
        let def = RESOURCES
            .iter()
            .find(|r| r.group == K::group(&()) && r.plural == K::plural(&()))
            .unwrap_or_else(|| panic!("{} missing", K::plural(&())));
        assert_eq!((def.kind, def.version), (&*K::kind(&()), &*K::version(&())));
        assert_eq!(def.status_subresource, status_subresource, "{}", def.plural);
    }
    let has_status = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        crd.spec.versions[0].subresources.as_ref().is_some_and(|s| s.status.is_some())
    };
    check::<Employee>(has_status(Employee::crd()));
    check::<PhoneSystem>(has_status(PhoneSystem::crd()));
    check::<Secret>(false);
    check::<ConfigMap>(false);
    check::<CoreEvent>(false);
    check::<EventsEvent>(false);
    check::<Lease>(false);
}

#[tokio::test]
async fn create_get_list_and_their_errors() {
    let (server, api) = employees().await;
    let mut jan = employee("jan");
    jan.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    jan.status = Some(serde_json::from_value(json!({"syncedSystems": "1/1"})).unwrap());
    let created = api.create(&PostParams::default(), &jan).await.unwrap();
    assert!(created.uid().is_some_and(|u| u.len() == 36));
    assert!(created.creation_timestamp().is_some());
    assert_eq!(created.meta().generation, Some(1));
    assert_eq!(rv(&created), server.resource_version().to_string());
    assert!(created.status.is_none(), "create drops status when it is a subresource");

    let got = api.get("jan").await.unwrap();
    assert_eq!((got.metadata.clone(), got.spec.clone()), (created.metadata.clone(), created.spec.clone()));
    assert_eq!(server.get::<Employee>(NS, "jan").unwrap().metadata, created.metadata);

    assert_eq!(
        api_error(api.create(&PostParams::default(), &employee("jan")).await),
        (409, "AlreadyExists".into())
    );
    assert_eq!(api_error(api.get("nobody").await), (404, "NotFound".into()));
    assert_eq!(api_error(api.create(&PostParams::default(), &employee("Not_A_Name")).await).0, 422);
    let mut with_rv = employee("ola");
    with_rv.metadata.resource_version = Some("7".into());
    assert_eq!(api_error(api.create(&PostParams::default(), &with_rv).await).0, 500);

    let mut generated = employee("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = api.create(&PostParams::default(), &generated).await.unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);

    let other: Api<Employee> = Api::namespaced(api.clone().into_client(), "other");
    let mut ola = employee("ola");
    ola.metadata.namespace = Some("other".into());
    other.create(&PostParams::default(), &ola).await.unwrap();

    let in_ns = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(in_ns.items.len(), 2);
    assert_eq!(in_ns.metadata.resource_version, Some(server.resource_version().to_string()));
    let all: Api<Employee> = Api::all(api.clone().into_client());
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 3);
    let names =
        |list: kube::core::ObjectList<Employee>| list.items.iter().map(|e| e.name_any()).collect::<Vec<_>>();
    assert_eq!(names(all.list(&ListParams::default().labels("tier=web")).await.unwrap()), ["jan"]);
    assert_eq!(names(all.list(&ListParams::default().labels("tier notin (web)")).await.unwrap()).len(), 2);
    assert_eq!(names(all.list(&ListParams::default().fields("metadata.name=ola")).await.unwrap()), ["ola"]);
    assert_eq!(api_error(all.list(&ListParams::default().fields("spec.extension=1")).await).0, 400);

    // Pages come from one snapshot: an object created between pages is not in them.
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    api.create(&PostParams::default(), &employee("zed")).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let rest = all.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(rest.clone()), ["jan"], "ordered by namespace, then name; no zed");
    assert_eq!(rest.metadata.continue_, None);
    assert_eq!(rest.metadata.resource_version, first.metadata.resource_version);
}

#[tokio::test]
async fn a_watch_sees_changes_in_order_and_resumes_from_a_resource_version() {
    let (_server, api) = employees().await;
    let start = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let params = WatchParams::default().disable_bookmarks();
    let mut stream = api.watch(&params, &start).await.unwrap().boxed();

    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let patch = json!({"spec": {"extension": "102"}});
    api.patch("jan", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    api.delete("jan", &DeleteParams::default()).await.unwrap();

    let WatchEvent::Added(added) = next_event(&mut stream).await else { panic!("expected ADDED") };
    assert_eq!(added.spec.extension, "101");
    let WatchEvent::Modified(modified) = next_event(&mut stream).await else { panic!("expected MODIFIED") };
    assert_eq!(modified.spec.extension, "102");
    let WatchEvent::Deleted(deleted) = next_event(&mut stream).await else { panic!("expected DELETED") };
    assert!(rv(&deleted).parse::<u64>().unwrap() > rv(&modified).parse::<u64>().unwrap());

    // Resuming from the MODIFIED event's resourceVersion replays only what followed it.
    let mut resumed = api.watch(&params, &rv(&modified)).await.unwrap().boxed();
    let WatchEvent::Deleted(again) = next_event(&mut resumed).await else { panic!("expected DELETED") };
    assert_eq!(rv(&again), rv(&deleted));

    // "0" starts with the current objects as ADDED.
    api.create(&PostParams::default(), &employee("ola")).await.unwrap();
    let mut from_zero = api.watch(&params, "0").await.unwrap().boxed();
    let WatchEvent::Added(ola) = next_event(&mut from_zero).await else { panic!("expected ADDED") };
    assert_eq!(ola.name_any(), "ola");
}

#[tokio::test]
async fn a_watch_with_a_selector_sees_objects_enter_and_leave_it() {
    let (_server, api) = employees().await;
    let params = WatchParams::default().disable_bookmarks().labels("tier=web");
    let mut stream = api.watch(&params, "0").await.unwrap().boxed();
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let label = |value: Value| json!({"metadata": {"labels": {"tier": value}}});
    api.patch("jan", &PatchParams::default(), &Patch::Merge(label(json!("web")))).await.unwrap();
    api.patch("jan", &PatchParams::default(), &Patch::Merge(label(Value::Null))).await.unwrap();
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Added(e) if e.labels().contains_key("tier")));
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Deleted(e) if !e.labels().contains_key("tier"))
    );
}

#[tokio::test]
async fn bookmarks_arrive_when_asked_and_timeouts_end_the_stream() {
    let server =
        apiserver::start_with(Options { bookmark_interval: Duration::from_millis(50), ..Options::default() })
            .await;
    let api: Api<Employee> = Api::namespaced(server.client(), NS);
    let start = server.resource_version().to_string();
    let mut stream = api.watch(&WatchParams::default(), &start).await.unwrap().boxed();
    let WatchEvent::Bookmark(first) = next_event(&mut stream).await else { panic!("expected BOOKMARK") };
    assert_eq!(first.metadata.resource_version, start);

    // A change elsewhere moves the bookmark on: the watcher is up to date to there.
    let other: Api<Employee> = Api::namespaced(server.client(), "other");
    let mut ola = employee("ola");
    ola.metadata.namespace = Some("other".into());
    let ola = other.create(&PostParams::default(), &ola).await.unwrap();
    loop {
        match next_event(&mut stream).await {
            WatchEvent::Bookmark(b) if b.metadata.resource_version == rv(&ola) => break,
            WatchEvent::Bookmark(_) => continue,
            event => panic!("a change in another namespace leaked into the watch: {event:?}"),
        }
    }

    // Without bookmarks: nothing, and `timeoutSeconds` ends the stream.
    let quiet = api.watch(&WatchParams::default().disable_bookmarks().timeout(1), &start).await.unwrap();
    let events: Vec<_> = within("the watch timeout", quiet.collect::<Vec<_>>()).await;
    assert!(events.is_empty(), "{}", events.len());

    // Streaming list: current objects, then the initial-events-end bookmark.
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let mut streaming = api.watch(&WatchParams::default().initial_events(), "0").await.unwrap().boxed();
    assert!(matches!(next_event(&mut streaming).await, WatchEvent::Added(e) if e.name_any() == "jan"));
    let WatchEvent::Bookmark(end) = next_event(&mut streaming).await else { panic!("expected BOOKMARK") };
    assert_eq!(end.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
}

#[tokio::test]
async fn a_too_old_resource_version_is_410_and_the_watcher_relists() {
    let (server, api) = employees().await;
    let old = server.resource_version().to_string();
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    server.compact();

    let mut stream = api.watch(&WatchParams::default(), &old).await.unwrap().boxed();
    let WatchEvent::Error(gone) = next_event(&mut stream).await else { panic!("expected ERROR") };
    assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
    assert!(within("the stream to end", stream.next()).await.is_none());
    let exact = ListParams::default().at(&old).matching(VersionMatch::Exact);
    assert_eq!(api_error(api.list(&exact).await), (410, "Expired".into()));

    // kube's watcher + reflector, running as a controller would.
    server.clear_requests();
    let (reader, writer) = reflector::store::<Employee>();
    let (tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    let watched = api.clone();
    let task = tokio::spawn(async move {
        let mut stream = reflector(writer, watcher(watched, watcher::Config::default())).boxed();
        while let Some(item) = stream.next().await {
            let _ = tx.send(item.map(|_| ()));
        }
    });
    within("the first sync", reader.wait_until_ready()).await.unwrap();
    assert_eq!(reader.state().len(), 1);
    let lists = server.count_of::<Employee>("list", "");
    assert_eq!(lists, 1);

    // The watch is cut; while it is down, a change is made and the history compacted.
    within("the watch", async {
        while server.active_watches() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let pause = server.pause_watches().await;
    assert_eq!(server.drop_watches(), 1);
    api.create(&PostParams::default(), &employee("ola")).await.unwrap();
    server.compact();
    drop(pause);

    within("the 410", async {
        loop {
            if let Err(watcher::Error::WatchError(status)) = results.recv().await.unwrap() {
                assert_eq!(status.code, 410);
                break;
            }
        }
    })
    .await;
    within("the relist", async {
        while reader.get(&reflector::ObjectRef::new("ola").within(NS)).is_none() {
            results.recv().await.unwrap().ok();
        }
    })
    .await;
    assert_eq!(server.count_of::<Employee>("list", ""), 2);
    task.abort();
}

#[tokio::test]
async fn a_stale_replace_is_a_conflict() {
    let (_server, api) = employees().await;
    let jan = api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let mut fresh = jan.clone();
    fresh.spec.extension = "102".into();
    let fresh = api.replace("jan", &PostParams::default(), &fresh).await.unwrap();
    assert_eq!(fresh.meta().generation, Some(2));

    let mut stale = jan.clone();
    stale.spec.extension = "103".into();
    assert_eq!(api_error(api.replace("jan", &PostParams::default(), &stale).await), (409, "Conflict".into()));
    let stale_patch = json!({"metadata": {"resourceVersion": rv(&jan)}, "spec": {"extension": "104"}});
    let patched = api.patch("jan", &PatchParams::default(), &Patch::Merge(&stale_patch)).await;
    assert_eq!(api_error(patched), (409, "Conflict".into()));

    // Custom resources need a resourceVersion on PUT; built-ins update unconditionally.
    stale.metadata.resource_version = None;
    assert_eq!(api_error(api.replace("jan", &PostParams::default(), &stale).await).0, 422);
    let secrets: Api<Secret> = Api::namespaced(api.into_client(), NS);
    let mut secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    secret.string_data = Some([("k".to_string(), "v".to_string())].into());
    let replaced = secrets.replace("s", &PostParams::default(), &secret).await.unwrap();
    assert_eq!(replaced.data.unwrap()["k"].0, b"v", "stringData is folded into data");
}

#[tokio::test]
async fn status_writes_never_bump_generation_and_spec_writes_do() {
    let (server, api) = employees().await;
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let generation = |e: &Employee| e.meta().generation.unwrap();

    // A status merge patch changes status only, even when it carries spec.
    let patch =
        json!({"status": {"observedGeneration": 1, "syncedSystems": "0/1"}, "spec": {"extension": "999"}});
    let jan = api.patch_status("jan", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!((generation(&jan), jan.spec.extension.as_str()), (1, "101"));
    assert_eq!(jan.status.as_ref().unwrap().synced_systems.as_deref(), Some("0/1"));

    // Server-side apply of status, as the controller does.
    let applied = json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
                         "status": {"syncedSystems": "1/1"}});
    let jan = api
        .patch_status("jan", &PatchParams::apply("switchboard").force(), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(generation(&jan), 1);
    let status = jan.status.as_ref().unwrap();
    assert_eq!((status.synced_systems.as_deref(), status.observed_generation), (Some("1/1"), Some(1)));

    // Metadata alone does not bump generation; spec does; status on the main resource is ignored.
    let label = json!({"metadata": {"labels": {"a": "b"}}});
    let jan = api.patch("jan", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    assert_eq!(generation(&jan), 1);
    let spec = json!({"spec": {"extension": "102"}, "status": {"syncedSystems": "lost"}});
    let jan = api.patch("jan", &PatchParams::default(), &Patch::Merge(&spec)).await.unwrap();
    assert_eq!(generation(&jan), 2);
    assert_eq!(jan.status.as_ref().unwrap().synced_systems.as_deref(), Some("1/1"));

    // replace_status keeps spec too.
    let mut edited = jan.clone();
    edited.spec.extension = "555".into();
    edited.status.as_mut().unwrap().observed_generation = Some(2);
    let jan = api.replace_status("jan", &PostParams::default(), &edited).await.unwrap();
    assert_eq!((generation(&jan), jan.spec.extension.as_str()), (2, "102"));
    assert_eq!(jan.status.as_ref().unwrap().observed_generation, Some(2));

    // A write that changes nothing is not a write.
    let before = server.resource_version();
    let same = api.patch("jan", &PatchParams::default(), &Patch::Merge(&spec)).await.unwrap();
    assert_eq!((rv(&same), server.resource_version()), (rv(&jan), before));
}

#[tokio::test]
async fn a_json_patch_applies_and_a_failed_test_is_422() {
    let (_server, api) = employees().await;
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let ops = |expected: &str| -> json_patch::Patch {
        serde_json::from_value(json!([
            {"op": "test", "path": "/spec/extension", "value": expected},
            {"op": "replace", "path": "/spec/extension", "value": "103"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["switchboard.dev/accounts"]},
        ]))
        .unwrap()
    };
    let jan = api.patch("jan", &PatchParams::default(), &Patch::Json::<()>(ops("101"))).await.unwrap();
    assert_eq!((jan.spec.extension.as_str(), jan.meta().generation), ("103", Some(2)));
    assert_eq!(jan.finalizers(), ["switchboard.dev/accounts"]);
    let failed = api.patch("jan", &PatchParams::default(), &Patch::Json::<()>(ops("101"))).await;
    assert_eq!(api_error(failed), (422, "Invalid".into()));
}

#[tokio::test]
async fn a_json_patch_testing_null_passes_on_a_missing_member_as_the_real_server_does() {
    // kube's finalizer helper adds the first finalizer with exactly these two operations.
    let (_server, api) = employees().await;
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let first: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["switchboard.dev/accounts"]},
    ]))
    .unwrap();
    let jan = api.patch("jan", &PatchParams::default(), &Patch::Json::<()>(first.clone())).await.unwrap();
    assert_eq!(jan.finalizers(), ["switchboard.dev/accounts"]);
    // Now the member exists and is not null: the same test fails, and nothing is written.
    let again = api.patch("jan", &PatchParams::default(), &Patch::Json::<()>(first)).await;
    assert_eq!(api_error(again), (422, "Invalid".into()));
}

#[tokio::test]
async fn apply_creates_merges_and_prunes_what_the_manager_dropped() {
    let (server, api) = employees().await;
    let config = |labels: Value| {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Employee",
               "metadata": {"name": "jan", "labels": labels},
               "spec": {"givenName": "Jan", "familyName": "Kowalski", "email": "jan@example.com",
                        "extension": "101"}})
    };
    let params = PatchParams::apply("manifests");
    api.patch("jan", &params, &Patch::Apply(config(json!({"a": "1", "b": "2"})))).await.unwrap();
    assert_eq!(server.requests().last().unwrap().code, 201, "apply creates a missing object");
    let other = json!({"metadata": {"labels": {"c": "3"}}});
    api.patch("jan", &PatchParams::default(), &Patch::Merge(&other)).await.unwrap();

    let jan = api.patch("jan", &params, &Patch::Apply(config(json!({"a": "1"})))).await.unwrap();
    let labels: Vec<_> = jan.labels().keys().cloned().collect();
    assert_eq!(labels, ["a", "c"], "b was dropped by its manager, c belongs to another");
    assert_eq!(jan.meta().generation, Some(1));
    let record = server.requests().pop().unwrap();
    assert_eq!((record.patch_type, record.field_manager.as_deref()), (Some("apply"), Some("manifests")));
}

#[tokio::test]
async fn delete_with_a_finalizer_waits_for_the_finalizer() {
    let (_server, api) = employees().await;
    let mut jan = employee("jan");
    jan.metadata.finalizers = Some(vec!["switchboard.dev/accounts".into()]);
    let jan = api.create(&PostParams::default(), &jan).await.unwrap();
    let mut stream = api.watch(&WatchParams::default().disable_bookmarks(), &rv(&jan)).await.unwrap().boxed();

    let deleting = api.delete("jan", &DeleteParams::default()).await.unwrap().left().expect("the object");
    assert!(deleting.meta().deletion_timestamp.is_some());
    assert_eq!(deleting.meta().generation, Some(2));
    let again = api.delete("jan", &DeleteParams::default()).await.unwrap().left().expect("the object");
    assert_eq!(rv(&again), rv(&deleting), "a second delete changes nothing");
    assert!(api.get("jan").await.unwrap().meta().deletion_timestamp.is_some());

    let add = json!({"metadata": {"finalizers": ["switchboard.dev/accounts", "other"]}});
    assert_eq!(api_error(api.patch("jan", &PatchParams::default(), &Patch::Merge(&add)).await).0, 422);
    let remove = json!({"metadata": {"finalizers": null}});
    api.patch("jan", &PatchParams::default(), &Patch::Merge(&remove)).await.unwrap();
    assert_eq!(api_error(api.get("jan").await).0, 404);

    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Modified(e) if e.meta().deletion_timestamp.is_some())
    );
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Deleted(e) if e.name_any() == "jan"));

    // Without finalizers: gone at once, answered with a Status; preconditions hold.
    let ola = api.create(&PostParams::default(), &employee("ola")).await.unwrap();
    let wrong = Preconditions { uid: Some("not-the-uid".into()), resource_version: None };
    let refused = api.delete("ola", &DeleteParams::default().preconditions(wrong)).await;
    assert_eq!(api_error(refused), (409, "Conflict".into()));
    let right = Preconditions { uid: ola.uid(), resource_version: Some(rv(&ola)) };
    let status = api.delete("ola", &DeleteParams::default().preconditions(right)).await.unwrap();
    assert!(status.right().unwrap().is_success());
    assert_eq!(api_error(api.get("ola").await).0, 404);
}

#[tokio::test]
async fn owned_objects_are_garbage_collected_with_their_owner() {
    let (server, api) = employees().await;
    let jan = api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let owner: OwnerReference = jan.controller_owner_ref(&()).unwrap();
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    let mut secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "jan-credentials"}})).unwrap();
    secret.metadata.owner_references = Some(vec![owner]);
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    api.delete("jan", &DeleteParams::default()).await.unwrap();
    assert!(server.get::<Secret>(NS, "jan-credentials").is_none());
}

#[tokio::test]
async fn request_counters_count() {
    let (server, api) = employees().await;
    api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    api.get("jan").await.unwrap();
    let status = json!({"status": {"syncedSystems": "0/0"}});
    api.patch_status("jan", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    api.patch_status("jan", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(api_error(api.get("nobody").await).0, 404);

    assert_eq!(server.count("create", "employees.switchboard.dev", ""), 1);
    assert_eq!(server.count("get", "employees.switchboard.dev", ""), 2);
    assert_eq!(server.count("patch", "employees.switchboard.dev", "status"), 2);
    assert_eq!(server.count_of::<Employee>("patch", ""), 0);
    assert_eq!(server.count_of::<Secret>("get", ""), 0);
    let last = server.requests().pop().unwrap();
    assert_eq!((last.verb, last.name.as_deref(), last.code), ("get", Some("nobody"), 404));
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_event_recorder_writes_events_k8s_io_events() {
    let (server, api) = employees().await;
    let jan = api.create(&PostParams::default(), &employee("jan")).await.unwrap();
    let reporter = Reporter { controller: "switchboard".into(), instance: Some("test".into()) };
    let recorder = Recorder::new(server.client(), reporter);
    let event = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all accounts in sync".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder.publish(&event, &jan.object_ref(&())).await.unwrap();
    recorder.publish(&event, &jan.object_ref(&())).await.unwrap();
    let events = server.list::<EventsEvent>();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(server.count_of::<EventsEvent>("create", ""), 1);
    assert_eq!(server.count("patch", "events.events.k8s.io", ""), 1);
}

#[tokio::test]
async fn leases_are_created_by_put() {
    let server = apiserver::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), NS);
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "switchboard-leader"},
                                                     "spec": {"holderIdentity": "pod-a"}}))
    .unwrap();
    leases.replace("switchboard-leader", &PostParams::default(), &lease).await.unwrap();
    assert_eq!(server.requests().pop().unwrap().code, 201);
    let stored = server.get::<Lease>(NS, "switchboard-leader").unwrap();
    assert_eq!(stored.spec.unwrap().holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(stored.metadata.generation, None, "built-ins here keep no generation");
}

#[tokio::test]
async fn metadata_requests_and_discovery() {
    let (server, api) = employees().await;
    server.insert(&employee("jan"));
    let meta = api.get_metadata("jan").await.unwrap();
    assert_eq!(meta.name_any(), "jan");
    assert_eq!(api.list_metadata(&ListParams::default()).await.unwrap().items.len(), 1);
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    assert!(secrets.list(&ListParams::default()).await.unwrap().items.is_empty());

    // Built-in list items come without apiVersion and kind, as from a real server.
    server.insert(
        &serde_json::from_value::<Secret>(json!({"metadata": {"name": "s", "namespace": NS}})).unwrap(),
    );
    let request = axum::http::Request::get(format!("/api/v1/namespaces/{NS}/secrets")).body(vec![]).unwrap();
    let raw: Value = server.client().request(request).await.unwrap();
    assert_eq!(raw["kind"], "SecretList");
    assert!(raw["items"][0].get("kind").is_none() && raw["items"][0]["metadata"]["name"] == "s", "{raw}");
    assert_eq!(secrets.list(&ListParams::default()).await.unwrap().items[0].name_any(), "s");

    let client = server.client();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "switchboard.dev"));
    let resources = client.list_api_group_resources("switchboard.dev/v1alpha1").await.unwrap();
    let names: Vec<_> = resources.resources.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"employees/status") && names.contains(&"phonesystems"), "{names:?}");
    assert!(
        client.list_core_api_resources("v1").await.unwrap().resources.iter().any(|r| r.name == "secrets")
    );
}

#[tokio::test]
async fn client_for_tests_uses_a_fresh_fake_unless_a_kubeconfig_is_given() {
    let (client, server) = apiserver::client_for_tests().await;
    let Some(server) = server else {
        eprintln!("skipped: SWITCHBOARD_TEST_KUBECONFIG is set, there is no fake to inspect");
        return;
    };
    let api: Api<PhoneSystem> = Api::namespaced(client, NS);
    assert!(api.list(&ListParams::default()).await.unwrap().items.is_empty());
    assert_eq!(server.count_of::<PhoneSystem>("list", ""), 1);
}
