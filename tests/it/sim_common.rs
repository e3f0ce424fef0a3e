//! The shared control plane of the simulators: faults, stats, `/_sim` endpoints and
//! shutdown, exercised through the Thulium simulator (the simplest API).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use switchboard::sim::{
    FaultConfig, Running, Simulator, Stats, default_simulator, spawn,
    thulium::{ThuliumConfig, ThuliumSim},
};

async fn start() -> Running {
    let sim: Arc<dyn Simulator> = ThuliumSim::new(ThuliumConfig::default());
    spawn(sim, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn creds(running: &Running) -> (String, String) {
    let c = running.sim.credentials();
    (c["username"].clone(), c["password"].clone())
}

async fn list(running: &Running, client: &Client) -> reqwest::Result<reqwest::Response> {
    let (user, pass) = creds(running);
    client.get(format!("{}/api/agents", running.url)).basic_auth(user, Some(pass)).send().await
}

async fn create(running: &Running, client: &Client, login: &str, number: &str) -> reqwest::Response {
    let (user, pass) = creds(running);
    client
        .post(format!("{}/api/agents", running.url))
        .basic_auth(user, Some(pass))
        .json(&json!({"name": "Jan", "surname": "Kowalski", "login": login,
                      "password": "pass", "number": number}))
        .send()
        .await
        .unwrap()
}

fn agents(running: &Running) -> Vec<Value> {
    running.sim.dump().as_array().unwrap().clone()
}

#[test]
fn every_backend_kind_has_a_simulator_of_that_kind() {
    for kind in switchboard::api::BackendKind::ALL {
        assert_eq!(default_simulator(kind).kind(), kind.as_str());
    }
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_changes_nothing() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    running.set_faults(FaultConfig { rate_limit_rate: 1.0, retry_after_secs: 7, ..FaultConfig::default() });
    let response = create(&running, &client, "jkowalski", "345").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert!(agents(&running).is_empty(), "a faulted request must not commit");
    let stats = running.stats();
    assert_eq!(stats.fault_count("rate_limit"), 1);
    assert_eq!(stats.count("POST /api/agents", 429), 1);
}

#[tokio::test]
async fn max_rps_answers_429_past_the_rate_and_lets_requests_through_as_tokens_refill() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    // Two per second: the bucket holds two, and refills one every 500 ms (slow enough
    // that the requests below cannot outrun the test on a busy machine).
    running.set_faults(FaultConfig { max_rps: 2, ..FaultConfig::default() });
    assert_eq!(list(&running, &client).await.unwrap().status(), StatusCode::OK);
    assert_eq!(list(&running, &client).await.unwrap().status(), StatusCode::OK);
    let refused = list(&running, &client).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    // A throttled create changes nothing.
    let create_refused = create(&running, &client, "jkowalski", "345").await;
    assert_eq!(create_refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(agents(&running).is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(list(&running, &client).await.unwrap().status(), StatusCode::OK);
    let stats = running.stats();
    assert_eq!(stats.fault_count("max_rps"), 2, "{stats:?}");
    assert_eq!(stats.count("GET /api/agents", 429), 1);
    assert_eq!(stats.count("POST /api/agents", 429), 1);
    assert_eq!(stats.fault_count("rate_limit"), 0, "an enforced limit is not the random fault");

    // 0 switches it off.
    running.set_faults(FaultConfig::default());
    for _ in 0..10 {
        assert_eq!(list(&running, &client).await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn error_answers_5xx_html_and_changes_nothing() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    running.set_faults(FaultConfig { error_rate: 1.0, ..FaultConfig::default() });
    let response = create(&running, &client, "jkowalski", "345").await;
    let status = response.status().as_u16();
    assert!([500, 502, 503].contains(&status), "got {status}");
    let body = response.text().await.unwrap();
    assert!(body.contains("<html>"), "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_err());
    assert!(agents(&running).is_empty());
    assert_eq!(running.stats().fault_count("error"), 1);
}

#[tokio::test]
async fn hang_holds_the_answer_past_the_client_timeout() {
    let running = start().await;
    running.set_faults(FaultConfig { hang_rate: 1.0, hang_secs: 2, ..FaultConfig::default() });
    let client = crate::http().timeout(Duration::from_millis(300)).build().unwrap();
    let started = Instant::now();
    let err = list(&running, &client).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Without a client timeout the hang ends in a gateway timeout.
    let started = Instant::now();
    let response = list(&running, &crate::http().build().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_hanging_request() {
    let running = start().await;
    running.set_faults(FaultConfig {
        hang_rate: 1.0,
        ..FaultConfig::default() // the default 600 s
    });
    let url = running.url.clone();
    let (user, pass) = creds(&running);
    let pending = tokio::spawn(async move {
        crate::http()
            .build()
            .unwrap()
            .get(format!("{url}/api/agents"))
            .basic_auth(user, Some(pass))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    running.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // The cut-short hang still answers (or the connection closes): never ten minutes.
    let outcome = tokio::time::timeout(Duration::from_secs(3), pending)
        .await
        .expect("the hanging request finished after shutdown");
    if let Ok(Ok(response)) = outcome {
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}

#[tokio::test]
async fn garbage_answers_200_with_a_body_that_is_not_json() {
    let running = start().await;
    running.set_faults(FaultConfig { garbage_rate: 1.0, ..FaultConfig::default() });
    let response = list(&running, &crate::http().build().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.json::<Value>().await.is_err());
    assert_eq!(running.stats().fault_count("garbage"), 1);
}

#[tokio::test]
async fn drop_breaks_the_connection_mid_message() {
    let running = start().await;
    running.set_faults(FaultConfig { drop_rate: 1.0, ..FaultConfig::default() });
    let (user, pass) = creds(&running);
    let sent = crate::http()
        .build()
        .unwrap()
        .post(format!("{}/api/agents", running.url))
        .basic_auth(user, Some(pass))
        .json(&json!({"name": "Jan", "surname": "Kowalski", "login": "jk",
                      "password": "pass", "number": "345"}))
        .send()
        .await;
    // The head arrives, then the body breaks off.
    let response = sent.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await;
    assert!(body.is_err(), "the body must break off: {body:?}");
    assert!(agents(&running).is_empty());
    assert_eq!(running.stats().fault_count("drop"), 1);
}

#[tokio::test]
async fn commit_then_fail_applies_the_request_and_answers_502() {
    let running = start().await;
    running.set_faults(FaultConfig { commit_then_fail_rate: 1.0, ..FaultConfig::default() });
    let client = crate::http().build().unwrap();
    let response = create(&running, &client, "jkowalski", "345").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let dump = agents(&running);
    assert_eq!(dump.len(), 1, "the change must be committed");
    assert_eq!(dump[0]["login"], "jkowalski");
    // Counted under the handler's operation name, since the handler did run.
    assert_eq!(running.stats().count("POST agents", 502), 1);

    // A blind retry now meets the committed agent.
    running.set_faults(FaultConfig::default());
    let retry = create(&running, &client, "jkowalski", "345").await;
    assert_eq!(retry.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn commit_then_hang_applies_the_request_and_never_answers_in_time() {
    let running = start().await;
    running.set_faults(FaultConfig {
        commit_then_fail_rate: 1.0,
        commit_then_fail_hang: true,
        hang_secs: 5,
        ..FaultConfig::default()
    });
    let client = crate::http().timeout(Duration::from_millis(300)).build().unwrap();
    let (user, pass) = creds(&running);
    let err = client
        .post(format!("{}/api/agents", running.url))
        .basic_auth(user, Some(pass))
        .json(&json!({"name": "Jan", "surname": "Kowalski", "login": "jk",
                      "password": "pass", "number": "345"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(agents(&running).len(), 1);
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let running = start().await;
    running.set_faults(FaultConfig { latency_ms: 150, ..FaultConfig::default() });
    let started = Instant::now();
    let response = list(&running, &crate::http().build().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let stats = running.stats();
    assert!(stats.latency_ms_sum >= 150.0, "{stats:?}");
    assert!(stats.faults.is_empty(), "latency alone is not a fault");
}

async fn statuses(running: &Running, client: &Client, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match list(running, client).await {
            Ok(r) => {
                let status = r.status().as_u16();
                // Read the body so a dropped connection shows as 0.
                if r.bytes().await.is_err() { 0 } else { status }
            }
            Err(_) => 0,
        });
    }
    out
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    let config = FaultConfig {
        error_rate: 0.25,
        rate_limit_rate: 0.25,
        garbage_rate: 0.1,
        drop_rate: 0.1,
        seed: 42,
        ..FaultConfig::default()
    };
    running.set_faults(config.clone());
    let first = statuses(&running, &client, 40).await;
    // Faults are set again through the control endpoint this time: same sequence.
    let put = client.put(format!("{}/_sim/faults", running.url)).json(&config).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let second = statuses(&running, &client, 40).await;
    assert_eq!(first, second);
    // The mix really is mixed: successes and several kinds of failure.
    for expected in [200, 429, 0] {
        assert!(first.contains(&expected), "{expected} missing in {first:?}");
    }
    assert!(first.iter().any(|s| [500, 502, 503].contains(s)), "{first:?}");

    running.set_faults(FaultConfig { seed: 43, ..config });
    let other = statuses(&running, &client, 40).await;
    assert_ne!(first, other, "a different seed gives a different sequence");
}

#[tokio::test]
async fn stats_count_by_operation_and_status() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    assert_eq!(create(&running, &client, "jkowalski", "345").await.status(), 201);
    assert_eq!(create(&running, &client, "jkowalski", "346").await.status(), 400);
    list(&running, &client).await.unwrap();
    list(&running, &client).await.unwrap();
    let (user, pass) = creds(&running);
    let unknown = client
        .delete(format!("{}/api/agents/jkowalski", running.url))
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // Control calls are not counted.
    client.get(format!("{}/_sim/accounts", running.url)).send().await.unwrap();

    let stats = running.stats();
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.count("POST agents", 201), 1);
    assert_eq!(stats.count("POST agents", 400), 1);
    assert_eq!(stats.count("GET agents", 200), 2);
    assert_eq!(stats.total("not found"), 1);
    assert_eq!(stats.total("GET agents"), 2);

    let over_http: Stats =
        client.get(format!("{}/_sim/stats", running.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(over_http, stats);

    let reset = client.post(format!("{}/_sim/stats/reset", running.url)).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(running.stats(), Stats::default());
    list(&running, &client).await.unwrap();
    assert_eq!(running.stats().requests, 1);
    running.reset_stats();
    assert_eq!(running.stats().requests, 0);
}

#[tokio::test]
async fn control_endpoints_seed_tamper_remove_and_dump() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    let base = format!("{}/_sim", running.url);

    let seeded = client
        .post(format!("{base}/accounts"))
        .json(&json!({"name": "Anna", "surname": "Nowak", "login": "anowak",
                      "password": "secret", "number": "201"}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::CREATED);
    let id = seeded.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    let dump: Value = client.get(format!("{base}/accounts")).send().await.unwrap().json().await.unwrap();
    assert_eq!(dump[0]["login"], "anowak");
    assert_eq!(dump[0]["password"], "secret");
    assert_eq!(dump[0]["agent_id"].to_string(), id);

    // The same rules as the API: a clashing seed is refused.
    let clash = client
        .post(format!("{base}/accounts"))
        .json(&json!({"name": "A", "surname": "B", "login": "other",
                      "password": "x", "number": "201"}))
        .send()
        .await
        .unwrap();
    assert_eq!(clash.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(clash.json::<Value>().await.unwrap()["error"].is_string());

    let tamper = client
        .patch(format!("{base}/accounts/{id}"))
        .json(&json!({"active": false, "surname": "Nowak-Kowalska"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tamper.status(), StatusCode::NO_CONTENT);
    let (user, pass) = creds(&running);
    let one: Value = client
        .get(format!("{}/api/agents/anowak", running.url))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["active"], false);
    assert_eq!(one["surname"], "Nowak-Kowalska");

    let bad =
        client.patch(format!("{base}/accounts/{id}")).json(&json!({"language": "de"})).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let not_json = client.patch(format!("{base}/accounts/{id}")).body("{nope").send().await.unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert!(not_json.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("invalid JSON"));
    let unknown =
        client.patch(format!("{base}/accounts/999")).json(&json!({"active": false})).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "no account with id 999");

    let removed = client.delete(format!("{base}/accounts/{id}")).send().await.unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert!(agents(&running).is_empty());
    let gone = client
        .get(format!("{}/api/agents/anowak", running.url))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let again = client.delete(format!("{base}/accounts/{id}")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    let expire = client.post(format!("{base}/expire-tokens")).send().await.unwrap();
    assert_eq!(expire.status(), StatusCode::NO_CONTENT);
    let nowhere = client.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    assert!(nowhere.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn fault_endpoints_read_write_and_validate() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    let url = format!("{}/_sim/faults", running.url);
    let current: FaultConfig = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(current, FaultConfig::default());
    assert_eq!(current.hang_secs, 600);
    assert_eq!(current.retry_after_secs, 1);

    let put = client.put(&url).json(&json!({"error_rate": 0.5, "seed": 9})).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(running.faults().error_rate, 0.5);
    assert_eq!(running.faults().seed, 9);
    assert_eq!(running.faults().hang_secs, 600, "omitted fields take defaults");

    for body in [json!({"error_rate": 1.5}), json!({"no_such_fault": 1}), json!({"drop_rate": "often"})] {
        let rejected = client.put(&url).json(&body).send().await.unwrap();
        assert_eq!(rejected.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(rejected.json::<Value>().await.unwrap()["error"].is_string());
    }
    assert_eq!(running.faults().error_rate, 0.5, "a rejected PUT changes nothing");
}

#[tokio::test]
async fn control_routes_are_never_faulted_nor_counted() {
    let running = start().await;
    let client = crate::http().build().unwrap();
    running.set_faults(FaultConfig { error_rate: 0.5, rate_limit_rate: 0.5, ..FaultConfig::default() });
    for _ in 0..20 {
        let dump = client.get(format!("{}/_sim/accounts", running.url)).send().await.unwrap();
        assert_eq!(dump.status(), StatusCode::OK);
        let stats = client.get(format!("{}/_sim/stats", running.url)).send().await.unwrap();
        assert_eq!(stats.status(), StatusCode::OK);
    }
    assert_eq!(running.stats().requests, 0);
    // While every API request fails.
    let api = list(&running, &client).await.unwrap();
    assert_ne!(api.status(), StatusCode::OK);
    assert_eq!(running.stats().requests, 1);
}

#[tokio::test]
async fn a_dropped_running_stops_serving() {
    let running = start().await;
    let url = running.url.clone();
    drop(running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = crate::http()
        .build()
        .unwrap()
        .get(format!("{url}/_sim/accounts"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn every_simulator_shows_its_dialect_and_refuses_settings_it_does_not_have() {
    let client = crate::http().build().unwrap();
    for kind in switchboard::api::BackendKind::ALL {
        let running = spawn(default_simulator(kind), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!("{}/_sim/dialect", running.url);
        let shown: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert!(shown.is_object(), "{kind}: {shown}");
        let refused = client.put(&url).json(&json!({"no_such_setting": true})).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{kind}");
        let body = refused.text().await.unwrap();
        assert!(body.contains("no_such_setting"), "{kind}: {body}");
        // Putting back what it shows changes nothing.
        let same = client.put(&url).json(&shown).send().await.unwrap();
        assert_eq!(same.status(), StatusCode::OK, "{kind}");
        assert_eq!(same.json::<Value>().await.unwrap(), shown, "{kind}");
    }
}

#[test]
fn dialect_settings_read_from_the_command_line() {
    use switchboard::sim::dialect_setting;
    assert_eq!(dialect_setting("generation=2023.2").unwrap(), ("generation".into(), json!("2023.2")));
    assert_eq!(dialect_setting("per_page=20").unwrap(), ("per_page".into(), json!(20)));
    assert_eq!(dialect_setting("user_id=false").unwrap(), ("user_id".into(), json!(false)));
    assert_eq!(dialect_setting("language=ru").unwrap(), ("language".into(), json!("ru")));
    assert!(dialect_setting("nonsense").is_err());
}
