//! The operator's event recorder on an API server: a repeat within the window is counted
//! into the first event's `series`, a repeat after it is a new event, and what it
//! remembers of posted events is swept once they are past the window.

use std::sync::{Arc, Mutex};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api,
    runtime::events::{Event, EventType, Reporter},
};
use switchboard::controller::events::Recorder;

fn regarding(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("switchboard.dev/v1alpha1".into()),
        kind: Some("Employee".into()),
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..ObjectReference::default()
    }
}

fn created(note: &str) -> Event {
    Event {
        type_: EventType::Normal,
        reason: "Created".into(),
        note: Some(note.into()),
        action: "Sync".into(),
        secondary: None,
    }
}

async fn events_about(api: &Api<KubeEvent>, name: &str) -> Vec<KubeEvent> {
    let list = api.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

#[tokio::test]
async fn a_repeat_is_counted_in_the_window_and_new_after_it_and_memory_is_swept() {
    let (client, _fake) = crate::support::apiserver::client_for_tests().await;
    let clock = Arc::new(Mutex::new(Timestamp::now()));
    let now = {
        let clock = clock.clone();
        Arc::new(move || Time(*clock.lock().unwrap()))
    };
    let advance = |by: SignedDuration| {
        let mut t = clock.lock().unwrap();
        *t += by;
    };
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "switchboard".into(), instance: None }, now);
    let api: Api<KubeEvent> = Api::namespaced(client, "default");
    let anna = format!("anna-{}", std::process::id());

    recorder.publish(&created("account 101 created"), &regarding(&anna)).await.expect("post");
    advance(SignedDuration::from_mins(1));
    recorder.publish(&created("account 101 created again"), &regarding(&anna)).await.expect("count");
    let events = events_about(&api, &anna).await;
    assert_eq!(events.len(), 1, "a repeat within the window is the same event: {events:?}");
    let series = events[0].series.as_ref().expect("the repeat is counted in a series");
    assert_eq!(series.count, 2);
    assert_eq!(events[0].note.as_deref(), Some("account 101 created"));
    assert_eq!(events[0].reporting_controller.as_deref(), Some("switchboard"));

    // Another reason about the same object is another event.
    let mut warning = created("conflict");
    warning.reason = "Conflict".into();
    warning.type_ = EventType::Warning;
    recorder.publish(&warning, &regarding(&anna)).await.expect("post");
    assert_eq!(events_about(&api, &anna).await.len(), 2);

    advance(SignedDuration::from_mins(7));
    recorder.publish(&created("account 101 created"), &regarding(&anna)).await.expect("post");
    let events = events_about(&api, &anna).await;
    assert_eq!(events.len(), 3, "past the window a repeat is a new event: {events:?}");

    for i in 0..50 {
        recorder.publish(&created("created"), &regarding(&format!("{anna}-{i}"))).await.expect("post");
    }
    // The first two, past the window, were swept when the third was posted.
    assert_eq!(recorder.remembered(), 51);
    advance(SignedDuration::from_mins(7));
    recorder.publish(&created("created"), &regarding(&anna)).await.expect("post");
    assert_eq!(recorder.remembered(), 1, "events past the window are forgotten");
}
