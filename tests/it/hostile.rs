//! Hostile PBXs: every backend against a server that answers huge, deeply nested, wrongly
//! typed or empty-but-successful bodies, and against random JSON (proptest). Nothing may
//! panic, memory stays bounded by the size cap, and a create never reports an account
//! it cannot name.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{StatusCode, header},
    response::Response,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard::{
    api::{EmployeeSpec, Membership, PhoneSystemSpec},
    backends::{self, Backend, Credentials, Secret, http::Settings},
    plan::{Attributes, Desired, Owner},
};

#[derive(Clone)]
struct Hostile {
    status: StatusCode,
    body: Arc<Vec<u8>>,
}

/// A server that logs everyone in and then answers `answer` to everything.
struct Server {
    url: String,
    answer: Arc<Mutex<Hostile>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn server() -> Server {
    let answer = Arc::new(Mutex::new(Hostile { status: StatusCode::OK, body: Arc::new(b"{}".to_vec()) }));
    let shared = answer.clone();
    let app = Router::new().fallback(move |req: axum::extract::Request| {
        let shared = shared.clone();
        async move {
            let path = req.uri().path().to_owned();
            // Log-ins succeed, so the hostile answers reach the parsers behind them.
            if path.ends_with("/session/start") {
                return Response::builder()
                    .header(header::SET_COOKIE, "PHPSESSID=hostile; path=/")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"success":true,"reload":"/admin-cabinet/extensions/index"}"#))
                    .unwrap();
            }
            if path.ends_with("/oauth/token") {
                return Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        r#"{"access_token":"tok-hostile","token_type":"bearer","expires_in":3600}"#,
                    ))
                    .unwrap();
            }
            let h = shared.lock().unwrap().clone();
            Response::builder()
                .status(h.status)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(h.body.as_ref().clone()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url, answer, _task: task }
}

/// One PhoneSystem per backend (both MikoPBX generations), pointed at `url`.
fn systems(url: &str) -> Vec<(PhoneSystemSpec, Credentials)> {
    let specs = [
        json!({"mikopbx": {"url": url, "apiGeneration": "legacy"}}),
        json!({"mikopbx": {"url": url, "apiGeneration": "v3"}}),
        json!({"thulium": {"url": url}}),
        json!({"apio": {"url": url, "tenant": "t", "group": "g"}}),
        json!({"telphin": {"url": url}}),
        json!({"ringostat": {"url": url, "projectId": "123", "creatorId": "456"}}),
    ];
    let creds = Credentials::new(
        [
            ("username", "sim-admin"),
            ("password", "hostile-password-1"),
            ("apiKey", "hostile-api-key-1"),
            ("token", "hostile-m2m-token-1"),
            ("clientId", "hostile-client"),
            ("clientSecret", "hostile-client-secret-1"),
            ("authKey", "hostile-auth-key-1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    specs.into_iter().map(|s| (serde_json::from_value(s).unwrap(), creds.clone())).collect()
}

fn settings() -> Settings {
    Settings {
        timeout: Duration::from_millis(500),
        attempts: 1,
        backoff: Duration::from_millis(1),
        max_body_bytes: 256 * 1024,
        ..Settings::default()
    }
}

fn employee() -> (EmployeeSpec, Membership) {
    let spec: EmployeeSpec = serde_json::from_value(json!({
        "givenName": "Jan", "familyName": "Kowalski", "email": "jan@example.com", "extension": "201",
        "phoneSystems": [{"name": "pbx"}]
    }))
    .unwrap();
    let membership = spec.phone_systems[0].clone();
    (spec, membership)
}

/// Every operation of every backend against the current answer: no panic; a create
/// that "succeeds" names its account.
async fn exercise(url: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let (spec, membership) = employee();
    for (system, creds) in systems(url) {
        let backend = backends::connect(&system, &creds, settings()).unwrap();
        let attributes = backend.desired(&spec, &membership).unwrap_or_else(|_| Attributes::default());
        let desired = Desired {
            owner: Owner::new("default", "jan"),
            rank: 0,
            extension: "201".into(),
            attributes,
            password_fingerprint: None,
        };
        let password = Secret::new("Hostile-Passw0rd-123456");
        match backend.list().await {
            Ok(listing) => {
                for a in &listing.accounts {
                    assert!(!a.id.is_empty(), "{}: a listed account without an id", backend.kind());
                }
            }
            Err(e) => seen.push(e.to_string()),
        }
        if let Err(e) = backend.find("201").await {
            seen.push(e.to_string());
        }
        match backend.create(&desired, Some(&password)).await {
            Ok(account) => {
                assert!(!account.id.is_empty(), "{}: created an account it cannot name", backend.kind())
            }
            Err(e) => seen.push(e.to_string()),
        }
    }
    seen
}

#[tokio::test]
async fn hostile_answers_give_clear_errors_and_no_panic() {
    let s = server().await;
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = format!("{{\"data\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, StatusCode, Vec<u8>)> = vec![
        ("huge", StatusCode::OK, huge.into_bytes()),
        ("nested", StatusCode::OK, nested.into_bytes()),
        ("html", StatusCode::OK, b"<html><body>Bad Gateway</body></html>".to_vec()),
        (
            "wrong types",
            StatusCode::OK,
            br#"{"result":"yes","data":{"data":7},"users":"none","jsonrpc":1}"#.to_vec(),
        ),
        ("empty success", StatusCode::OK, br#"{"result":true,"data":{}}"#.to_vec()),
        ("created nothing", StatusCode::CREATED, b"{}".to_vec()),
        ("null", StatusCode::OK, b"null".to_vec()),
        ("binary", StatusCode::OK, vec![0xff, 0xfe, 0x00, 0x01, 0x80]),
    ];
    for (name, status, body) in cases {
        *s.answer.lock().unwrap() = Hostile { status, body: Arc::new(body) };
        let errors = exercise(&s.url).await;
        assert!(!errors.is_empty(), "{name}: every backend took it as a fine answer");
        for e in &errors {
            assert!(e.len() < 2_000, "{name}: an error quotes too much ({} bytes)", e.len());
            for secret in [
                "hostile-password-1",
                "hostile-api-key-1",
                "hostile-m2m-token-1",
                "hostile-client-secret-1",
                "hostile-auth-key-1",
                "Hostile-Passw0rd-123456",
                "tok-hostile",
            ] {
                assert!(!e.contains(secret), "{name}: a secret leaked into {e}");
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9@.]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("result".to_owned()),
                    Just("data".to_owned()),
                    Just("id".to_owned()),
                    Just("users".to_owned()),
                    Just("number".to_owned()),
                    Just("extension".to_owned()),
                    Just("jsonrpc".to_owned()),
                    Just("error".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random JSON in every answer: the parsers of all backends neither panic nor take
    /// nonsense for an account.
    #[test]
    fn random_json_answers_never_panic(body in arb_json(), created in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = server().await;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            *s.answer.lock().unwrap() = Hostile { status, body: Arc::new(serde_json::to_vec(&body).unwrap()) };
            exercise(&s.url).await;
        });
    }
}
