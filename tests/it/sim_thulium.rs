//! The Thulium simulator against what seed 001 and the public docs say.

use std::sync::Arc;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use switchboard::sim::{
    Running, Simulator, spawn,
    thulium::{ThuliumConfig, ThuliumSim, codes},
};

/// The seed's cURL body, byte for byte.
const SEED_BODY: &str = r#"{"name":"Jan","surname":"Kowalski","login":"jkowalski","email":"jk@foo.bar","password":"pass","number":"345","roles":[1,2]}"#;

async fn start_with(config: ThuliumConfig) -> (Running, Client) {
    let sim: Arc<dyn Simulator> = ThuliumSim::new(config);
    let running = spawn(sim, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (running, crate::http().build().unwrap())
}

async fn start() -> (Running, Client) {
    start_with(ThuliumConfig::default()).await
}

fn auth(running: &Running, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let c = running.sim.credentials();
    builder.basic_auth(&c["username"], Some(&c["password"]))
}

async fn post(running: &Running, client: &Client, body: &Value) -> (StatusCode, Value) {
    let response =
        auth(running, client.post(format!("{}/api/agents", running.url))).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn get(running: &Running, client: &Client, path: &str) -> (StatusCode, Value) {
    let response = auth(running, client.get(format!("{}{path}", running.url))).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn agent(login: &str, number: &str) -> Value {
    json!({"name": "Jan", "surname": "Kowalski", "login": login,
           "password": "somepass123!QAZ", "number": number})
}

fn error_codes(body: &Value) -> Vec<u64> {
    body["errors"].as_array().unwrap().iter().map(|e| e["code"].as_u64().unwrap()).collect()
}

#[test]
fn credentials_are_the_api_user() {
    let sim = ThuliumSim::new(ThuliumConfig::default());
    let c = sim.credentials();
    assert_eq!(c["username"], "sim-admin");
    assert_eq!(c.len(), 2);
    assert!(c.contains_key("password"));
}

#[tokio::test]
async fn the_seed_request_gets_the_documented_answer() {
    let (running, client) = start().await;
    let c = running.sim.credentials();
    let response = client
        .post(format!("{}/api/agents", running.url))
        .basic_auth(&c["username"], Some(&c["password"]))
        .header("Content-type", "application/json")
        .body(SEED_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"agent_id": "11", "agent_login": "jkowalski"}));

    let dump = running.sim.dump();
    let stored = &dump[0];
    assert_eq!(stored["email"], "jk@foo.bar");
    assert_eq!(stored["password"], "pass");
    assert_eq!(stored["number"], 345);
    assert_eq!(stored["roles"], json!([1, 2]));
}

#[tokio::test]
async fn get_one_has_the_documented_shape_and_types() {
    let (running, client) = start().await;
    let (status, created) = post(&running, &client, &agent("jkowalski", "559933")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(created["agent_id"].is_string(), "POST answers agent_id as a string");

    let (status, one) = get(&running, &client, "/api/agents/jkowalski").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one,
        json!({"agent_id": 11, "login": "jkowalski", "name": "Jan", "surname": "Kowalski",
               "email": null, "active": true, "number": 559933,
               "outbound_mode": "manual", "group_id": 1})
    );
    assert!(one["agent_id"].is_u64() && one["number"].is_u64());
}

#[tokio::test]
async fn defaults_are_applied() {
    let (running, client) = start().await;
    let (status, _) = post(&running, &client, &agent("jkowalski", "345")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, one) = get(&running, &client, "/api/agents/jkowalski").await;
    assert_eq!(one["active"], true);
    assert_eq!(one["outbound_mode"], "manual");

    let stored = &running.sim.dump()[0];
    assert_eq!(stored["callerid"], "J.Kowalski");
    assert_eq!(stored["language"], "pl");
    assert_eq!(stored["change_password"], false);
    assert_eq!(stored["roles"], json!([]));
}

#[tokio::test]
async fn optional_fields_are_kept() {
    let (running, client) = start().await;
    let body = json!({"name": "Łucja", "surname": "Żak", "login": "lzak", "password": "p",
                      "number": "346", "callerid": "Sales", "language": "en", "active": false,
                      "outbound_mode": "auto", "change_password": true, "roles": [3]});
    let (status, _) = post(&running, &client, &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, one) = get(&running, &client, "/api/agents/lzak").await;
    assert_eq!(one["active"], false);
    assert_eq!(one["outbound_mode"], "auto");
    let stored = &running.sim.dump()[0];
    assert_eq!(stored["callerid"], "Sales");
    assert_eq!(stored["language"], "en");
    assert_eq!(stored["change_password"], true);
}

#[tokio::test]
async fn the_default_callerid_uses_the_first_letter_of_a_non_ascii_name() {
    let (running, client) = start().await;
    let body = json!({"name": "Łucja", "surname": "Żak", "login": "lzak", "password": "p",
                      "number": "346"});
    post(&running, &client, &body).await;
    assert_eq!(running.sim.dump()[0]["callerid"], "Ł.Żak");
}

#[tokio::test]
async fn every_required_field_is_enforced() {
    let (running, client) = start().await;
    for field in ["name", "surname", "login", "password", "number"] {
        let mut body = agent("jkowalski", "345");
        body.as_object_mut().unwrap().remove(field);
        let (status, answer) = post(&running, &client, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
        assert!(answer["request_id"].as_str().is_some_and(|r| r.len() == 13));
        assert_eq!(error_codes(&answer), vec![codes::REQUIRED as u64], "{field}");
        assert!(answer["errors"][0]["message"].as_str().unwrap().contains(field));
    }
    // Every problem is reported at once.
    let (status, answer) = post(&running, &client, &json!({"name": "Jan"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["errors"].as_array().unwrap().len(), 4);
    assert!(running.sim.dump().as_array().unwrap().is_empty());
}

#[tokio::test]
async fn wrong_values_and_types_are_rejected() {
    let (running, client) = start().await;
    let cases = [
        ("language", json!("de")),
        ("outbound_mode", json!("blending")),
        ("active", json!("true")),
        ("change_password", json!(1)),
        ("email", json!("not-an-email")),
        ("roles", json!([99])),
        ("roles", json!("1,2")),
        ("number", json!(345)),
        ("number", json!("34a")),
        ("number", json!("1234567890")),
        ("login", json!("j kowalski")),
    ];
    for (field, value) in cases {
        let mut body = agent("jkowalski", "345");
        body[field] = value.clone();
        let (status, answer) = post(&running, &client, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field} = {value}");
        assert_eq!(error_codes(&answer), vec![codes::INVALID_VALUE as u64], "{field} = {value}");
    }
    let response = auth(&running, client.post(format!("{}/api/agents", running.url)))
        .body("name=Jan&surname=Kowalski")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(error_codes(&answer), vec![codes::INVALID_JSON as u64]);
    assert!(running.sim.dump().as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_duplicate_login_is_rejected() {
    let (running, client) = start().await;
    assert_eq!(post(&running, &client, &agent("jkowalski", "345")).await.0, StatusCode::CREATED);
    let (status, answer) = post(&running, &client, &agent("JKowalski", "346")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(&answer), vec![codes::DUPLICATE_LOGIN as u64]);
    assert_eq!(running.sim.dump().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_duplicate_number_is_rejected() {
    let (running, client) = start().await;
    assert_eq!(post(&running, &client, &agent("jkowalski", "345")).await.0, StatusCode::CREATED);
    for number in ["345", "0345"] {
        let (status, answer) = post(&running, &client, &agent("anowak", number)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{number}");
        assert_eq!(error_codes(&answer), vec![codes::DUPLICATE_NUMBER as u64]);
    }
    assert_eq!(running.sim.dump().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_basic_auth_is_401_with_the_error_body() {
    let (running, client) = start().await;
    let url = format!("{}/api/agents", running.url);
    let attempts = [
        client.get(&url).basic_auth("sim-admin", Some("wrong")),
        client.get(&url).basic_auth("someone", Some("sim-thulium-pass")),
        client.get(&url),
        client.get(&url).bearer_auth("sim-thulium-pass"),
        client.post(&url).json(&agent("jkowalski", "345")),
    ];
    for attempt in attempts {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_codes(&body), vec![codes::AUTH_FAILED as u64]);
        assert!(body["request_id"].is_string());
    }
    assert!(running.sim.dump().as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_login_is_404() {
    let (running, client) = start().await;
    let (status, body) = get(&running, &client, "/api/agents/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_codes(&body), vec![codes::NOT_FOUND as u64]);
}

#[tokio::test]
async fn there_is_no_update_or_delete() {
    let (running, client) = start().await;
    post(&running, &client, &agent("jkowalski", "345")).await;
    let url = format!("{}/api/agents/jkowalski", running.url);
    for request in [
        client.put(&url).json(&json!({"active": false})),
        client.patch(&url).json(&json!({"active": false})),
        client.delete(&url),
        client.delete(format!("{}/api/agents", running.url)),
    ] {
        let response = auth(&running, request).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_codes(&body), vec![codes::NOT_FOUND as u64]);
    }
    let (_, one) = get(&running, &client, "/api/agents/jkowalski").await;
    assert_eq!(one["active"], true);
}

fn logins(page: &Value) -> Vec<String> {
    let list = page.get("result").unwrap_or(page);
    list.as_array().unwrap().iter().map(|a| a["login"].as_str().unwrap().to_string()).collect()
}

async fn set_dialect(running: &Running, client: &Client, patch: Value) -> (StatusCode, Value) {
    let response = client.put(format!("{}/_sim/dialect", running.url)).json(&patch).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_list_pages_with_limit_and_offset() {
    let (running, client) =
        start_with(ThuliumConfig { list_default_limit: 2, list_max_limit: 3, ..ThuliumConfig::default() })
            .await;
    for i in 0..5 {
        let (status, _) = post(&running, &client, &agent(&format!("agent{i}"), &format!("10{i}"))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, page) = get(&running, &client, "/api/agents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(logins(&page), ["agent0", "agent1"]);
    assert_eq!(page["count"], 5, "the total, whatever the limit");
    assert_eq!(page["result"][0]["number"], 100, "items have the GET-one shape");
    assert_eq!(page["result"][0]["agent_id"], 11);

    let (_, page) = get(&running, &client, "/api/agents?limit=3&offset=3").await;
    assert_eq!(logins(&page), ["agent3", "agent4"]);
    let (_, page) = get(&running, &client, "/api/agents?offset=10").await;
    assert_eq!(page, json!({"count": 5, "result": []}));

    for bad in ["limit=4", "limit=0", "limit=-1", "offset=x"] {
        let (status, body) = get(&running, &client, &format!("/api/agents?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_codes(&body), vec![codes::INVALID_QUERY as u64]);
    }

    // The bare dialect: the same page as a JSON array.
    set_dialect(&running, &client, json!({"list_shape": "bare"})).await;
    let (_, page) = get(&running, &client, "/api/agents?limit=3&offset=3").await;
    assert_eq!(logins(&page), ["agent3", "agent4"]);
    assert!(page.is_array());
}

#[tokio::test]
async fn the_default_page_is_100() {
    let (running, client) = start().await;
    for i in 0..101 {
        running.sim.seed(&agent(&format!("a{i}"), &format!("{}", 1000 + i))).unwrap();
    }
    let (_, page) = get(&running, &client, "/api/agents").await;
    assert_eq!(logins(&page).len(), 100);
    let (_, page) = get(&running, &client, "/api/agents?offset=100").await;
    assert_eq!(logins(&page), ["a100"]);
    let (status, _) = get(&running, &client, "/api/agents?limit=101").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_paging_dialect_answers_as_it_says() {
    let (running, client) = start().await;
    for i in 0..150 {
        running.sim.seed(&agent(&format!("a{i}"), &format!("{}", 1000 + i))).unwrap();
    }
    let cases = [
        ("unpaged", "/api/agents?limit=10&offset=100", 150, "a0"),
        ("capped", "/api/agents?limit=100&offset=100", 20, "a100"),
        ("offset_ignored", "/api/agents?limit=10&offset=100", 10, "a0"),
        ("paged", "/api/agents?limit=10&offset=100", 10, "a100"),
    ];
    for (paging, path, len, first) in cases {
        let (status, _) = set_dialect(&running, &client, json!({"paging": paging})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, page) = get(&running, &client, path).await;
        assert_eq!(status, StatusCode::OK, "{paging}");
        let logins = logins(&page);
        assert_eq!((logins.len(), logins[0].as_str()), (len, first), "{paging}");
        assert_eq!(page["count"], 150, "{paging}");
    }
    // Only the paged dialect refuses a limit above 100.
    set_dialect(&running, &client, json!({"paging": "capped"})).await;
    assert_eq!(get(&running, &client, "/api/agents?limit=500").await.0, StatusCode::OK);
}

#[tokio::test]
async fn field_types_follow_the_dialect() {
    let (running, client) = start().await;
    post(&running, &client, &agent("a", "100")).await;
    post(&running, &client, &agent("b", "101")).await;
    let (_, dialect) =
        set_dialect(&running, &client, json!({"number": "string", "agent_id": "mixed", "active": "integer"}))
            .await;
    assert_eq!(dialect["number"], "string");
    let (_, page) = get(&running, &client, "/api/agents").await;
    let a = &page["result"][0];
    let b = &page["result"][1];
    assert_eq!((a["number"].clone(), a["active"].clone()), (json!("100"), json!(1)));
    assert!(a["agent_id"].is_u64() && b["agent_id"].is_string(), "{page}");
    let (_, one) = get(&running, &client, "/api/agents/b").await;
    assert_eq!(one["agent_id"], "12");
    // Unknown settings and values are refused, naming them.
    for bad in [json!({"colour": "red"}), json!({"paging": "sometimes"})] {
        let (status, body) = set_dialect(&running, &client, bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(body["error"].as_str().unwrap().contains("dialect"), "{body}");
    }
}

#[tokio::test]
async fn duplicates_and_the_create_answer_follow_the_dialect() {
    let (running, client) = start().await;
    assert_eq!(post(&running, &client, &agent("jkowalski", "345")).await.0, StatusCode::CREATED);
    for status in [409u16, 422] {
        set_dialect(&running, &client, json!({"duplicate_status": status})).await;
        let (got, body) = post(&running, &client, &agent("jkowalski", "346")).await;
        assert_eq!(got.as_u16(), status);
        assert_eq!(error_codes(&body), vec![codes::DUPLICATE_LOGIN as u64]);
        // A refusal for other reasons stays a 400.
        let (got, _) = post(&running, &client, &agent("j k", "347")).await;
        assert_eq!(got, StatusCode::BAD_REQUEST);
    }
    set_dialect(&running, &client, json!({"create_answer": "legacy"})).await;
    let (status, body) = post(&running, &client, &agent("anowak", "350")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({"agent_id": "12"}));
}

#[tokio::test]
async fn tamper_keeps_the_create_rules() {
    let (running, _client) = start().await;
    let a = running.sim.seed(&agent("a", "100")).unwrap();
    let b = running.sim.seed(&agent("b", "101")).unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("11", "12"));
    let clash = serde_json::Map::from_iter([("number".to_string(), json!(100))]);
    assert!(running.sim.tamper(&b, &clash).is_err());
    let fine =
        serde_json::Map::from_iter([("number".to_string(), json!(102)), ("group_id".to_string(), json!(7))]);
    running.sim.tamper(&b, &fine).unwrap();
    let dump = running.sim.dump();
    assert_eq!(dump[1]["number"], 102);
    assert_eq!(dump[1]["group_id"], 7);
    let unknown = serde_json::Map::from_iter([("agent_id".to_string(), json!(1))]);
    assert!(running.sim.tamper(&b, &unknown).is_err());
}
