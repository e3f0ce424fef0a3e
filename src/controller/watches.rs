//! One watch per kind, shared by both controllers.
//!
//! Each kind (Employees, PhoneSystems, Secrets as metadata) has exactly one watch. Its
//! events fill one store ([`Cache`]) that the passes, the Employee controller and the
//! trigger mappers all read, and are handed on to the controllers that want them
//! ([`Subscriber`]). A pass is therefore never triggered by an event its cache has not
//! seen: the object is in the store before any controller hears of it. (With a watch
//! per controller, as kube's `Controller::new` and `watches` make, the PhoneSystem
//! controller could be woken by one watch and plan from another that had not caught up:
//! the edit would then wait for the next resync.)
//!
//! A [`Cache`] also remembers the objects this instance's own writes returned, until the
//! watch delivers them (server-side apply answers with the whole object): the next pass
//! plans from what it wrote, not from an older event still on its way, without reading
//! anything back. Resource versions are compared as integers, as Kubernetes guarantees
//! from v1.35 on (KEP-5504, "Comparable Resource Version"); one that is not an integer
//! is only ever compared for equality, and the watch's copy wins.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
};

use futures_util::{Stream, StreamExt};
use kube::{
    Resource, ResourceExt,
    runtime::{
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tokio::sync::mpsc;

/// `kubectl apply`'s copy of the last applied object: as large as the object itself (for a
/// Secret, its data), and never read here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the caches keep of an object: without its managed fields and `kubectl apply`'s
/// copy, which together are often larger than the rest of it. 10,000 Employees live in
/// memory for the process's life.
pub fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().remove(LAST_APPLIED);
}

/// The resource version as the integer it is on every kube-apiserver (KEP-5504).
fn version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// Whether `a` is a newer version of the object than `b`.
fn newer<K: Resource>(a: &K, b: &K) -> bool {
    matches!((version(a), version(b)), (Some(a), Some(b)) if a > b)
}

/// One kind's watch cache, with this instance's own writes laid over it until the watch
/// delivers them.
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    written: Mutex<HashMap<ObjectRef<K>, Arc<K>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    pub fn new(store: Store<K>) -> Self {
        Cache { store, written: Mutex::default() }
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, Arc<K>>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest of the watch's copy and the one a write of ours returned.
    pub fn fresh(&self, cached: Arc<K>) -> Arc<K> {
        let key = ObjectRef::from(cached.as_ref());
        let mut written = self.written();
        match written.get(&key) {
            Some(mine) if newer(mine.as_ref(), cached.as_ref()) => mine.clone(),
            Some(_) => {
                written.remove(&key);
                cached
            }
            None => cached,
        }
    }

    /// The object, as fresh as this instance knows it; `None` once the watch saw it go.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.store.get(key).map(|cached| self.fresh(cached))
    }

    /// Every object, each as fresh as this instance knows it.
    pub fn state(&self) -> Vec<Arc<K>> {
        let state = self.store.state();
        let mut written = self.written();
        if written.is_empty() {
            return state;
        }
        let mut seen = 0;
        let fresh: Vec<Arc<K>> = state
            .into_iter()
            .map(|cached| match written.get(&ObjectRef::from(cached.as_ref())) {
                Some(mine) if newer(mine.as_ref(), cached.as_ref()) => {
                    seen += 1;
                    mine.clone()
                }
                _ => cached,
            })
            .collect();
        // Caught up with (or deleted): the watch's copy is the truth again.
        if seen < written.len() {
            written
                .retain(|key, mine| self.store.get(key).is_some_and(|cached| newer(mine.as_ref(), &cached)));
        }
        fresh
    }

    /// Remembers what a write of ours returned, until the watch brings it or a newer one.
    pub fn record(&self, mut object: K) -> Arc<K> {
        slim(&mut object);
        let object = Arc::new(object);
        let key = ObjectRef::from(object.as_ref());
        if self.store.get(&key).is_none_or(|cached| newer(object.as_ref(), &cached)) {
            self.written().insert(key, object.clone());
        }
        object
    }

    /// The watch delivered `cached`: our write of it is no longer needed if it was not
    /// newer. Keeps the overlay to the writes still in flight (milliseconds' worth).
    fn delivered(&self, cached: &K) {
        let key = ObjectRef::from(cached);
        let mut written = self.written();
        if written.get(&key).is_some_and(|mine| !newer(mine.as_ref(), cached)) {
            written.remove(&key);
        }
    }

    /// The watch saw `object` deleted.
    fn deleted(&self, object: &K) {
        self.written().remove(&ObjectRef::from(object));
    }

    /// How many of our writes the watch has not delivered yet.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.written().len()
    }
}

/// Which objects a subscriber hears of.
pub trait Filter<K>: Send {
    /// Whether to pass `object` on.
    fn pass(&mut self, object: &K) -> bool;
    /// `object` was deleted: whatever is remembered of it can go.
    fn forget(&mut self, _object: &K) {}
}

/// A controller that hears of a kind's changes.
pub struct Subscriber<K> {
    tx: mpsc::UnboundedSender<Arc<K>>,
    /// Passes only the objects it lets through.
    filter: Option<Box<dyn Filter<K>>>,
    /// Also hears of deletions (the object as last seen).
    deletions: bool,
}

impl<K: Send + Sync + 'static> Subscriber<K> {
    /// A subscriber and the stream of objects it hears of, for
    /// `Controller::for_shared_stream` or `watches_shared_stream`.
    pub fn new() -> (Self, impl Stream<Item = Arc<K>> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) });
        (Subscriber { tx, filter: None, deletions: false }, stream)
    }

    pub fn filtered(mut self, filter: impl Filter<K> + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    pub fn with_deletions(mut self) -> Self {
        self.deletions = true;
        self
    }

    fn send(&mut self, object: &Arc<K>) {
        if self.filter.as_mut().is_none_or(|f| f.pass(object)) {
            // A closed receiver is a controller that has stopped: nothing to tell it.
            let _ = self.tx.send(object.clone());
        }
    }
}

/// A filter that passes an object when `property` of it changed since it last passed (or
/// it is new): kube's `predicate_filter` for a shared stream. Every object seen again
/// after a relist with the same property is held back.
pub struct Changed<K: Resource<DynamicType = ()>, F> {
    property: F,
    seen: HashMap<ObjectRef<K>, u64>,
}

pub fn changed<K: Resource<DynamicType = ()>, P: Hash, F: Fn(&K) -> P + Send>(property: F) -> Changed<K, F> {
    Changed { property, seen: HashMap::new() }
}

impl<K: Resource<DynamicType = ()>, P: Hash, F: Fn(&K) -> P + Send> Filter<K> for Changed<K, F> {
    fn pass(&mut self, object: &K) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        object.meta().uid.hash(&mut hasher);
        (self.property)(object).hash(&mut hasher);
        let hash = hasher.finish();
        self.seen.insert(ObjectRef::from(object), hash) != Some(hash)
    }

    fn forget(&mut self, object: &K) {
        self.seen.remove(&ObjectRef::from(object));
    }
}

/// Drives one watch: fills `writer`'s store, then tells the subscribers. Objects are
/// handed on as the store holds them (no copy); the initial list (and every relist) is
/// handed on once complete, when the store holds all of it. Ends only with the stream.
pub async fn run<K>(
    stream: impl Stream<Item = watcher::Result<watcher::Event<K>>>,
    mut writer: Writer<K>,
    cache: Option<Arc<Cache<K>>>,
    mut subscribers: Vec<Subscriber<K>>,
    kind: &'static str,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = writer.as_reader();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, kind, "watch failed; retrying with backoff");
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        match event {
            watcher::Event::Apply(object) => {
                let Some(stored) = store.get(&ObjectRef::from(&object)) else { continue };
                if let Some(cache) = &cache {
                    cache.delivered(&stored);
                }
                for s in &mut subscribers {
                    s.send(&stored);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(cache) = &cache {
                    cache.deleted(&object);
                }
                let object = Arc::new(object);
                for s in &mut subscribers {
                    if s.deletions {
                        s.send(&object);
                    }
                    if let Some(filter) = s.filter.as_mut() {
                        filter.forget(&object);
                    }
                }
            }
            watcher::Event::InitDone => {
                if let Some(cache) = &cache {
                    for object in store.state() {
                        cache.delivered(&object);
                    }
                }
                for object in store.state() {
                    for s in &mut subscribers {
                        s.send(&object);
                    }
                }
                tracing::debug!(kind, objects = store.len(), "watch cache filled");
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        ByteString,
        api::core::v1::{ConfigMap, Secret},
        apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
    };
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn the_caches_keep_what_is_read_and_drop_the_bookkeeping() {
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some("pbx-credentials".into()),
                annotations: Some(
                    [
                        (LAST_APPLIED.to_owned(), r#"{"data":{"password":"..."}}"#.to_owned()),
                        ("team".to_owned(), "telephony".to_owned()),
                    ]
                    .into(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..ManagedFieldsEntry::default()
                }]),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            data: Some([("password".to_owned(), ByteString(b"s3cret".to_vec()))].into()),
            ..Secret::default()
        };
        slim(&mut secret);
        assert!(secret.metadata.managed_fields.as_deref().unwrap_or_default().is_empty());
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("42"));
    }

    fn config_map(name: &str, rv: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            data: Some([("v".to_owned(), value.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    fn value(c: &ConfigMap) -> &str {
        c.data.as_ref().and_then(|d| d.get("v")).map_or("", String::as_str)
    }

    #[test]
    fn our_own_write_is_read_back_until_the_watch_brings_it_or_something_newer() {
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&watcher::Event::Apply(config_map("a", "10", "watch")));
        let cache = Cache::new(store);
        let key = ObjectRef::new("a").within("ns");

        cache.record(config_map("a", "12", "mine"));
        assert_eq!(value(&cache.get(&key).unwrap()), "mine", "the watch is behind our write");
        assert_eq!(value(&cache.state()[0]), "mine");

        writer.apply_watcher_event(&watcher::Event::Apply(config_map("a", "12", "mine")));
        assert_eq!(value(&cache.get(&key).unwrap()), "mine");
        assert_eq!(cache.pending(), 0, "caught up: the watch's copy is the truth again");

        // A write whose answer comes after the watch brought something newer is not kept.
        writer.apply_watcher_event(&watcher::Event::Apply(config_map("a", "15", "someone else")));
        cache.record(config_map("a", "14", "mine, older"));
        assert_eq!(value(&cache.get(&key).unwrap()), "someone else");
        assert_eq!(cache.pending(), 0);

        // Versions that are not integers are never taken as newer.
        cache.record(config_map("a", "x", "opaque"));
        assert_eq!(value(&cache.get(&key).unwrap()), "someone else");
    }

    #[test]
    fn a_changed_filter_passes_new_objects_and_changes_of_the_property_only() {
        let mut by_value = changed(|c: &ConfigMap| value(c).to_owned());
        assert!(by_value.pass(&config_map("a", "1", "x")), "new");
        assert!(!by_value.pass(&config_map("a", "2", "x")), "same property, another version");
        assert!(by_value.pass(&config_map("a", "3", "y")));
        assert!(by_value.pass(&config_map("b", "3", "y")), "another object");
        by_value.forget(&config_map("b", "3", "y"));
        assert!(by_value.pass(&config_map("b", "4", "y")), "deleted and made again: new");
    }
}
