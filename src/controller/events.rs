//! Events, written as kube's `Recorder` writes them (`events.k8s.io/v1`; the same event
//! again within [`SERIES_WINDOW`] patches the first one's `series` instead of creating
//! another), but remembering only what a repeat needs.
//!
//! kube's `Recorder` keeps every event it posted, whole, for six minutes, and scans them
//! all on every post: a first pass over 10,000 Employees posts 10,000 "Created" events,
//! so it held about 20 MB and did 50 million comparisons (measured with heaptrack on the
//! operator bench). Here a posted event is remembered as a 64-bit hash of what makes it
//! "the same event" (kube's key: type, action, reason, the object it regards and the
//! related one, the reporter) and the event's name and count: under 100 bytes. Entries
//! older than the window are dropped at most once a minute.
//!
//! A hash collision would add a count to another object's event; at 10,000 events in a
//! window its chance is about 3·10⁻¹², and it would cost nothing but that count.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, Time},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Reporter},
};
use serde_json::json;

/// How long a repeat counts as the same event (kube's `Recorder` uses six minutes too).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// How often the remembered events are swept of those past the window.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_mins(1);

/// What is remembered of a posted event.
struct Posted {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

#[derive(Default)]
struct Memory {
    posted: HashMap<u64, Posted>,
    swept: Option<Timestamp>,
}

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    now: Arc<dyn Fn() -> Time + Send + Sync>,
    memory: Arc<Mutex<Memory>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter, now: Arc<dyn Fn() -> Time + Send + Sync>) -> Self {
        Self { client, reporter, now, memory: Arc::default() }
    }

    /// Posts `event` about `regarding`, in its namespace (`default` for a cluster-scoped
    /// object), or counts it into the same event posted within the window.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let Time(now) = (self.now)();
        let key = self.key(event, regarding);
        let repeat = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            memory.sweep(now);
            memory
                .posted
                .get(&key)
                .filter(|p| p.last + SERIES_WINDOW > now)
                .map(|p| (p.namespace.clone(), p.name.clone(), p.count + 1))
        };
        let posted = match repeat {
            Some((namespace, name, count)) => match self.count(&namespace, &name, count, now).await {
                Ok(()) => Posted { namespace, name, count, last: now },
                // Gone already (the API server keeps events an hour by default): a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => self.create(event, regarding, now).await?,
                Err(e) => return Err(e),
            },
            None => self.create(event, regarding, now).await?,
        };
        self.memory.lock().unwrap_or_else(|e| e.into_inner()).posted.insert(key, posted);
        Ok(())
    }

    fn key(&self, event: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = DefaultHasher::new();
        matches!(event.type_, EventType::Warning).hash(&mut h);
        event.action.hash(&mut h);
        event.reason.hash(&mut h);
        self.reporter.controller.hash(&mut h);
        self.reporter.instance.hash(&mut h);
        for r in [Some(regarding), event.secondary.as_ref()] {
            r.map(|r| (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid)).hash(&mut h);
        }
        h.finish()
    }

    async fn create(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Posted, kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.reporter.controller),
            now.as_nanosecond()
        );
        let body = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter.instance.clone().unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &body).await?;
        Ok(Posted { namespace, name, count: 1, last: now })
    }

    /// The `series` of a repeated event, as `kubectl describe` shows it ("x3 over 2m").
    async fn count(
        &self,
        namespace: &str,
        name: &str,
        count: i32,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }

    /// How many posted events are remembered.
    pub fn remembered(&self) -> usize {
        self.memory.lock().unwrap_or_else(|e| e.into_inner()).posted.len()
    }
}

impl Memory {
    fn sweep(&mut self, now: Timestamp) {
        if self.swept.is_some_and(|at| at + SWEEP_EVERY > now) {
            return;
        }
        self.posted.retain(|_, p| p.last + SERIES_WINDOW > now);
        self.swept = Some(now);
    }
}
