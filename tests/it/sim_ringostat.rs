//! The Ringostat simulator against what seed 004 and the public docs say.

use std::sync::Arc;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use switchboard::sim::{
    Running, Simulator,
    ringostat::{RingostatConfig, RingostatSim, codes},
    spawn,
};

/// The seed's cURL body as the stored page has it (the e-mail was obfuscated by the page
/// host into "[email protected]").
const SEED_CURL_BODY: &str = r#"{
"jsonrpc": "2.0",
"method": "Api\\V2\\Staff.addStaff",
"params": {
"projectId": "123",
"creatorId": "456",
"access": "user",
"fio": "Ivan Petrenko",
"email": "[email protected]",
"extensionNumber": "1001",
"directions": {
"main": [
{
"type": "sip",
"direction": "1001",
"password": "securePassword1234!",
"enabledForAwd": true,
"isMobile": false
}
],
"additional": []
},
"departments": ["Main"],
"isHasAccessToPowerDialer": true
},
"id": 1
}"#;

async fn start() -> (Running, Client) {
    let sim: Arc<dyn Simulator> = RingostatSim::new(RingostatConfig::default());
    let running = spawn(sim, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (running, crate::http().build().unwrap())
}

fn key(running: &Running) -> String {
    running.sim.credentials()["authKey"].clone()
}

/// A valid addStaff params object (the seed's, with a real e-mail and a table access code).
fn params(fio: &str, email: &str, ext: &str) -> Value {
    json!({
        "projectId": "123", "creatorId": "456", "access": "4",
        "fio": fio, "email": email, "extensionNumber": ext,
        "directions": {"main": [{"type": "sip", "direction": ext,
                                  "password": "securePassword123",
                                  "enabledForAwd": true, "isMobile": false}],
                       "additional": []},
        "departments": ["Main"], "isHasAccessToPowerDialer": true
    })
}

async fn rpc(running: &Running, client: &Client, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = client
        .post(format!("{}{path}", running.url))
        .header("Auth-key", key(running))
        .header("x-project-id", "123")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn add(running: &Running, client: &Client, params: &Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": "Api\\V2\\Staff.addStaff",
                      "params": params, "id": 1});
    let (status, answer) = rpc(running, client, "/a/v2", &body).await;
    assert_eq!(status, StatusCode::OK);
    answer
}

async fn list(running: &Running, client: &Client, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": "getProjectStaffListAndDirections",
                      "params": params, "id": "list-1"});
    let (status, answer) = rpc(running, client, "/api/json-rpc", &body).await;
    assert_eq!(status, StatusCode::OK);
    answer
}

fn ok() -> Value {
    json!({"jsonrpc": "2.0", "result": {"result": true}, "id": 1})
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"].as_i64().unwrap_or_else(|| panic!("no error in {answer}"))
}

fn error_fields(answer: &Value) -> Vec<String> {
    answer["error"]["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

fn staff_count(running: &Running) -> usize {
    running.sim.dump().as_array().unwrap().len()
}

#[tokio::test]
async fn the_seed_curl_body_is_refused_for_its_access_value_and_obfuscated_email() {
    let (running, client) = start().await;
    let response = client
        .post(format!("{}/v2", running.url))
        .header("Content-Type", "application/json")
        .header("Auth-key", key(&running))
        .body(SEED_CURL_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["jsonrpc"], "2.0");
    assert_eq!(answer["id"], 1);
    assert_eq!(error_code(&answer), codes::VALIDATION);
    assert_eq!(error_fields(&answer), ["access", "email"]);
    assert_eq!(staff_count(&running), 0);
}

#[tokio::test]
async fn the_seed_body_with_a_table_access_code_gets_the_documented_result() {
    let (running, client) = start().await;
    let body = SEED_CURL_BODY
        .replace(r#""access": "user""#, r#""access": "4""#)
        .replace("[email protected]", "ivan.petrenko@example.com");
    // Exactly as the seed's cURL: path /v2, Auth-key only.
    let response = client
        .post(format!("{}/v2", running.url))
        .header("Content-Type", "application/json")
        .header("Auth-key", key(&running))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), ok());

    let dump = running.sim.dump();
    let stored = &dump[0];
    assert_eq!(stored["fio"], "Ivan Petrenko");
    assert_eq!(stored["extensionNumber"], "1001");
    assert_eq!(stored["access"], "4");
    assert_eq!(stored["directions"]["main"][0]["password"], "securePassword1234!");
    assert_eq!(stored["departments"], json!(["Main"]));
    assert_eq!(stored["isHasAccessToPowerDialer"], true);
}

#[tokio::test]
async fn the_node_example_password_of_17_characters_is_accepted_on_both_paths() {
    let (running, client) = start().await;
    assert_eq!(add(&running, &client, &params("Ivan Petrenko", "ivan@example.com", "1001")).await, ok());
    let body = json!({"jsonrpc": "2.0", "method": "Api\\V2\\Staff.addStaff",
                      "params": params("Petro Ivanenko", "petro@example.com", "1002"), "id": 1});
    let (status, answer) = rpc(&running, &client, "/v2", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, ok());
    assert_eq!(staff_count(&running), 2);
}

#[tokio::test]
async fn access_must_be_a_table_code() {
    let (running, client) = start().await;
    for (i, access) in ["1", "2", "4"].iter().enumerate() {
        let mut p = params("Ivan Petrenko", &format!("i{i}@example.com"), &format!("10{i}"));
        p["access"] = json!(access);
        assert_eq!(add(&running, &client, &p).await, ok(), "{access}");
    }
    for access in [json!("user"), json!("3"), json!("admin")] {
        let mut p = params("Ivan Petrenko", "x@example.com", "200");
        p["access"] = access.clone();
        let answer = add(&running, &client, &p).await;
        assert_eq!(error_code(&answer), codes::VALIDATION, "{access}");
    }
    let mut p = params("Ivan Petrenko", "x@example.com", "200");
    p["access"] = json!(4);
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::INVALID_PARAMS);
    assert_eq!(staff_count(&running), 3);
}

#[tokio::test]
async fn a_13_character_sip_password_is_rejected_and_14_accepted() {
    let (running, client) = start().await;
    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["directions"]["main"][0]["password"] = json!("abcdefghijklm");
    let answer = add(&running, &client, &p).await;
    assert_eq!(error_code(&answer), codes::VALIDATION);
    assert!(answer["error"]["message"].as_str().unwrap().contains("14"));
    assert_eq!(staff_count(&running), 0);
    p["directions"]["main"][0]["password"] = json!("abcdefghijklmn");
    assert_eq!(add(&running, &client, &p).await, ok());
}

#[tokio::test]
async fn a_sip_direction_without_password_is_rejected() {
    let (running, client) = start().await;
    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["directions"]["main"][0].as_object_mut().unwrap().remove("password");
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::INVALID_PARAMS);
}

#[tokio::test]
async fn names_are_letters_and_spaces_in_any_alphabet() {
    let (running, client) = start().await;
    for (i, bad) in
        ["Ivan Petrenko 2", "R2D2", "Anne-Marie", "O'Brien", "   ", "Ivan_Petrenko"].iter().enumerate()
    {
        let answer = add(&running, &client, &params(bad, &format!("b{i}@example.com"), "1001")).await;
        assert_eq!(error_code(&answer), codes::VALIDATION, "{bad}");
        assert_eq!(error_fields(&answer), ["fio"], "{bad}");
    }
    for (i, good) in ["Іван Петренко", "Иван Петров", "王小明", "Zoë Ångström"].iter().enumerate()
    {
        let answer =
            add(&running, &client, &params(good, &format!("g{i}@example.com"), &format!("20{i}"))).await;
        assert_eq!(answer, ok(), "{good}");
    }
    let stored: Vec<String> = running
        .sim
        .dump()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fio"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, ["Іван Петренко", "Иван Петров", "王小明", "Zoë Ångström"]);
}

#[tokio::test]
async fn extensions_have_2_to_5_digits() {
    let (running, client) = start().await;
    for (i, bad) in ["1", "123456", "12a", "", "+123"].iter().enumerate() {
        let mut p = params("Ivan Petrenko", &format!("b{i}@example.com"), bad);
        p["directions"]["main"][0]["direction"] = json!(format!("sip{i}"));
        let answer = add(&running, &client, &p).await;
        assert_eq!(error_code(&answer), codes::VALIDATION, "{bad:?}");
        assert_eq!(error_fields(&answer), ["extensionNumber"], "{bad:?}");
    }
    for (i, good) in ["12", "12345"].iter().enumerate() {
        let p = params("Ivan Petrenko", &format!("g{i}@example.com"), good);
        assert_eq!(add(&running, &client, &p).await, ok(), "{good}");
    }
    let mut p = params("Ivan Petrenko", "n@example.com", "1001");
    p["extensionNumber"] = json!(1001);
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::INVALID_PARAMS);
}

#[tokio::test]
async fn a_bad_email_is_rejected() {
    let (running, client) = start().await;
    for bad in
        ["ivan", "ivan@", "@example.com", "ivan@example", "ivan petrenko@example.com", "ivan@@example.com"]
    {
        let answer = add(&running, &client, &params("Ivan Petrenko", bad, "1001")).await;
        assert_eq!(error_code(&answer), codes::VALIDATION, "{bad}");
        assert_eq!(error_fields(&answer), ["email"], "{bad}");
    }
    assert_eq!(staff_count(&running), 0);
}

#[tokio::test]
async fn extension_email_and_sip_login_are_unique() {
    let (running, client) = start().await;
    assert_eq!(add(&running, &client, &params("Ivan Petrenko", "ivan@example.com", "1001")).await, ok());

    let answer = add(&running, &client, &params("Petro Ivanenko", "petro@example.com", "1001")).await;
    assert_eq!(error_code(&answer), codes::DUPLICATE);
    assert_eq!(error_fields(&answer), ["extensionNumber", "directions"]);

    let answer = add(&running, &client, &params("Petro Ivanenko", "IVAN@example.com", "1002")).await;
    assert_eq!(error_code(&answer), codes::DUPLICATE);
    assert_eq!(error_fields(&answer), ["email"]);

    let mut p = params("Petro Ivanenko", "petro@example.com", "1002");
    p["directions"]["main"][0]["direction"] = json!("1001");
    let answer = add(&running, &client, &p).await;
    assert_eq!(error_fields(&answer), ["directions"]);
    assert_eq!(staff_count(&running), 1);
}

fn sip(login: &str) -> Value {
    json!({"type": "sip", "direction": login, "password": "securePassword123"})
}

fn phone(number: &str) -> Value {
    json!({"type": "phone", "direction": number})
}

#[tokio::test]
async fn direction_limits_are_enforced() {
    let (running, client) = start().await;
    let with = |main: Vec<Value>, additional: Vec<Value>| {
        let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
        p["directions"] = json!({"main": main, "additional": additional});
        p
    };
    let cases = [
        (vec![sip("a1"), sip("a2"), sip("a3"), sip("a4")], vec![], "SIP accounts in the main"),
        (vec![], vec![sip("a1"), sip("a2"), sip("a3"), sip("a4")], "SIP accounts in additional"),
        (
            vec![
                phone("+380501110001"),
                phone("+380501110002"),
                phone("+380501110003"),
                phone("+380501110004"),
            ],
            vec![],
            "phone numbers in the main",
        ),
        (
            vec![],
            vec![
                phone("+380501110001"),
                phone("+380501110002"),
                phone("+380501110003"),
                phone("+380501110004"),
            ],
            "phone numbers in additional",
        ),
        (
            vec![sip("a1"), sip("a2"), sip("a3"), phone("+380501110001")],
            vec![sip("a4"), sip("a5"), phone("+380501110002")],
            "6 directions per employee",
        ),
    ];
    for (main, additional, expected) in cases {
        let answer = add(&running, &client, &with(main, additional)).await;
        assert_eq!(error_code(&answer), codes::VALIDATION, "{expected}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(expected), "{answer}");
    }
    // Exactly at the limits: 3 SIP + 3 phones = 6.
    let full = with(
        vec![sip("a1"), sip("a2"), phone("+380501110001")],
        vec![sip("a3"), phone("+380501110002"), phone("0501110003")],
    );
    assert_eq!(add(&running, &client, &full).await, ok());

    let mut p = with(vec![json!({"type": "fax", "direction": "1"})], vec![]);
    p["email"] = json!("other@example.com");
    p["extensionNumber"] = json!("1002");
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::VALIDATION);
    assert_eq!(staff_count(&running), 1);
}

#[tokio::test]
async fn project_creator_and_departments_are_checked() {
    let (running, client) = start().await;
    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["projectId"] = json!("999");
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::FORBIDDEN);

    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["creatorId"] = json!("1");
    assert_eq!(error_fields(&add(&running, &client, &p).await), ["creatorId"]);

    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["departments"] = json!(["Nowhere"]);
    assert_eq!(error_fields(&add(&running, &client, &p).await), ["departments"]);

    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p.as_object_mut().unwrap().remove("departments");
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::INVALID_PARAMS);

    // A mismatching x-project-id header.
    let body = json!({"jsonrpc": "2.0", "method": "Api\\V2\\Staff.addStaff",
                      "params": params("Ivan Petrenko", "ivan@example.com", "1001"), "id": 1});
    let response = client
        .post(format!("{}/a/v2", running.url))
        .header("Auth-key", key(&running))
        .header("x-project-id", "999")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(&response.json().await.unwrap()), codes::FORBIDDEN);
    assert_eq!(staff_count(&running), 0);

    // Departments match case-insensitively and may be null.
    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["departments"] = json!(["secondary"]);
    assert_eq!(add(&running, &client, &p).await, ok());
    let mut p = params("Petro Ivanenko", "petro@example.com", "1002");
    p["departments"] = Value::Null;
    assert_eq!(add(&running, &client, &p).await, ok());
    let dump = running.sim.dump();
    assert_eq!(dump[0]["departments"], json!(["Secondary"]));
    assert_eq!(dump[1]["departments"], Value::Null);
}

#[tokio::test]
async fn the_list_shows_what_was_added() {
    let (running, client) = start().await;
    let empty = list(&running, &client, json!({"projectId": "123"})).await;
    assert_eq!(error_code(&empty), codes::NOT_FOUND);
    assert_eq!(empty["error"]["message"], "User does not exist");

    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p["directions"]["additional"] = json!([phone("+380501234567")]);
    assert_eq!(add(&running, &client, &p).await, ok());
    assert_eq!(add(&running, &client, &params("Олена Коваль", "olena@example.com", "1002")).await, ok());

    let answer = list(&running, &client, json!({"projectId": "123"})).await;
    assert_eq!(answer["id"], "list-1");
    let result = answer["result"].as_object().unwrap();
    assert_eq!(result.len(), 2);
    let (key, ivan) = result.iter().find(|(_, s)| s["fio"] == "Ivan Petrenko").unwrap();
    assert_eq!(ivan["staffId"].to_string(), *key);
    assert_eq!(ivan["email"], "ivan@example.com");
    assert_eq!(ivan["extensionNumber"], "1001");
    assert_eq!(ivan["access"], "4");
    assert_eq!(ivan["phones"], json!({"main": [], "additional": ["+380501234567"]}));
    assert_eq!(ivan["sip"], json!([{"login": "1001", "online": false, "main": true}]));
    assert_eq!(ivan["departments"], json!([{"id": 1, "name": "Main"}]));
    assert_eq!(ivan["isHasAccessToPowerDialer"], true);
    assert!(ivan["directions"]["main"][0].get("password").is_none(), "the list never shows SIP passwords");
    // Ids are not extension numbers.
    assert!(ivan["staffId"].as_u64().unwrap() > 230_000);

    let by_fio = list(&running, &client, json!({"projectId": "123", "filters": {"fio": "олена"}})).await;
    assert_eq!(by_fio["result"].as_object().unwrap().len(), 1);
    let by_email = list(&running, &client, json!({"projectId": "123", "filters": {"email": "IVAN@"}})).await;
    assert_eq!(by_email["result"].as_object().unwrap().len(), 1);
    let by_id = list(&running, &client, json!({"projectId": "123", "filters": {"staffId": key}})).await;
    assert_eq!(by_id["result"][key.as_str()]["fio"], "Ivan Petrenko");
    let none = list(&running, &client, json!({"projectId": "123", "filters": {"fio": "nobody"}})).await;
    assert_eq!(error_code(&none), codes::NOT_FOUND);

    let other = list(&running, &client, json!({"projectId": "999"})).await;
    assert_eq!(error_code(&other), codes::FORBIDDEN);
    let missing = list(&running, &client, json!({})).await;
    assert_eq!(error_code(&missing), codes::INVALID_PARAMS);
}

#[tokio::test]
async fn a_wrong_auth_key_is_rejected() {
    let (running, client) = start().await;
    let body = json!({"jsonrpc": "2.0", "method": "Api\\V2\\Staff.addStaff",
                      "params": params("Ivan Petrenko", "ivan@example.com", "1001"), "id": 1});
    for path in ["/a/v2", "/v2", "/api/json-rpc"] {
        for key in [Some("wrong-key"), None] {
            let mut request = client.post(format!("{}{path}", running.url)).json(&body);
            if let Some(key) = key {
                request = request.header("Auth-key", key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(error_code(&answer), codes::UNAUTHORIZED);
            assert_eq!(answer["jsonrpc"], "2.0");
        }
    }
    assert_eq!(staff_count(&running), 0);
}

async fn raw_call(running: &Running, client: &Client, path: &str, body: String) -> Value {
    let response = client
        .post(format!("{}{path}", running.url))
        .header("Auth-key", key(running))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()
}

#[tokio::test]
async fn json_rpc_protocol_errors_use_the_standard_codes() {
    let (running, client) = start().await;
    let raw = |path: &'static str, body: &str| raw_call(&running, &client, path, body.to_string());
    assert_eq!(error_code(&raw("/a/v2", "{not json").await), codes::PARSE_ERROR);
    assert_eq!(error_code(&raw("/a/v2", "[]").await), codes::INVALID_REQUEST);
    assert_eq!(
        error_code(&raw("/a/v2", r#"{"jsonrpc":"1.0","method":"x","params":{},"id":1}"#).await),
        codes::INVALID_REQUEST
    );
    assert_eq!(
        error_code(
            &raw("/a/v2", r#"{"jsonrpc":"2.0","method":"Api\\V2\\Staff.addStaff","params":{}}"#).await
        ),
        codes::INVALID_REQUEST,
        "notifications (no id) are not supported"
    );
    for method in [
        "Api\\\\V2\\\\Staff.updateStaff",
        "Api\\\\V2\\\\Staff.deleteStaff",
        "getProjectStaffListAndDirections",
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{{}},"id":7}}"#);
        let answer = raw("/a/v2", &body).await;
        assert_eq!(error_code(&answer), codes::METHOD_NOT_FOUND, "{method}");
        assert_eq!(answer["id"], 7);
    }
    let add_on_list =
        raw("/api/json-rpc", r#"{"jsonrpc":"2.0","method":"Api\\V2\\Staff.addStaff","params":{},"id":1}"#)
            .await;
    assert_eq!(error_code(&add_on_list), codes::METHOD_NOT_FOUND);
    assert_eq!(
        error_code(
            &raw("/a/v2", r#"{"jsonrpc":"2.0","method":"Api\\V2\\Staff.addStaff","params":[],"id":1}"#).await
        ),
        codes::INVALID_PARAMS
    );
}

#[tokio::test]
async fn stats_count_by_json_rpc_method() {
    let (running, client) = start().await;
    add(&running, &client, &params("Ivan Petrenko", "ivan@example.com", "1001")).await;
    add(&running, &client, &params("Ivan Petrenko", "ivan@example.com", "1001")).await;
    list(&running, &client, json!({"projectId": "123"})).await;
    let stats = running.stats();
    assert_eq!(stats.count("Api\\V2\\Staff.addStaff", 200), 2);
    assert_eq!(stats.count("getProjectStaffListAndDirections", 200), 1);
}

#[tokio::test]
async fn seed_and_tamper_use_the_add_staff_rules() {
    let (running, _client) = start().await;
    let mut p = params("Ivan Petrenko", "ivan@example.com", "1001");
    p.as_object_mut().unwrap().remove("projectId");
    p.as_object_mut().unwrap().remove("creatorId");
    let id = running.sim.seed(&p).unwrap();
    assert!(running.sim.seed(&params("Other Person", "o@example.com", "1001")).is_err());

    let patch = serde_json::Map::from_iter([("fio".to_string(), json!("Ivan 2"))]);
    assert!(running.sim.tamper(&id, &patch).is_err());
    let patch = serde_json::Map::from_iter([
        ("extensionNumber".to_string(), json!("1009")),
        ("isHasAccessToPowerDialer".to_string(), json!(false)),
    ]);
    running.sim.tamper(&id, &patch).unwrap();
    let dump = running.sim.dump();
    assert_eq!(dump[0]["extensionNumber"], "1009");
    assert_eq!(dump[0]["isHasAccessToPowerDialer"], false);
    assert_eq!(dump[0]["staffId"].to_string(), id);
    assert!(running.sim.tamper("1", &patch).is_err());
    running.sim.remove(&id).unwrap();
    assert_eq!(staff_count(&running), 0);
    assert_eq!(running.sim.credentials().keys().collect::<Vec<_>>(), ["authKey", "creatorId", "projectId"]);
}

async fn set_dialect(running: &Running, client: &Client, patch: Value) -> (StatusCode, Value) {
    let response = client.put(format!("{}/_sim/dialect", running.url)).json(&patch).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_list_answers_in_every_dialect() {
    let (running, client) = start().await;
    assert_eq!(add(&running, &client, &params("Ivan Petrenko", "ivan@example.com", "1001")).await, ok());
    let (_, dialect) = set_dialect(&running, &client, json!({})).await;
    assert_eq!(dialect["result"], "keyed");
    let item = |answer: &Value| -> Value {
        match &answer["result"] {
            Value::Array(items) => items[0].clone(),
            Value::Object(map) => map.values().next().unwrap().clone(),
            other => panic!("{other}"),
        }
    };
    let cases = [
        (json!({"result": "array"}), "departments", json!([{"id": 1, "name": "Main"}])),
        (json!({"departments": "names"}), "departments", json!(["Main"])),
        (json!({"departments": "ids"}), "departments", json!([1])),
        (json!({"access": "number"}), "access", json!(4)),
        (json!({"access": "word"}), "access", json!("manager")),
        (json!({"access": "string"}), "access", json!("4")),
    ];
    for (patch, field, expected) in cases {
        let (status, _) = set_dialect(&running, &client, patch.clone()).await;
        assert_eq!(status, StatusCode::OK);
        let answer = list(&running, &client, json!({"projectId": "123"})).await;
        assert_eq!(item(&answer)[field], expected, "{patch}");
        if patch["result"] == "array" {
            assert!(answer["result"].is_array());
        }
    }
    set_dialect(&running, &client, json!({"fio": "absent"})).await;
    let answer = list(&running, &client, json!({"projectId": "123"})).await;
    assert!(item(&answer).get("fio").is_none());
    assert_eq!(item(&answer)["email"], "ivan@example.com");
    for bad in [json!({"result": "csv"}), json!({"shape": "array"})] {
        let (status, _) = set_dialect(&running, &client, bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn the_empty_answer_and_error_codes_follow_the_dialect() {
    let (running, client) = start().await;
    for (codes, expected) in [("http", codes::NOT_FOUND), ("server", -32000), ("zero", 0)] {
        set_dialect(&running, &client, json!({"error_codes": codes, "empty": "error"})).await;
        let answer = list(&running, &client, json!({"projectId": "123"})).await;
        assert_eq!(error_code(&answer), expected, "{codes}");
    }
    set_dialect(&running, &client, json!({"empty": "result", "error_codes": "http"})).await;
    assert_eq!(list(&running, &client, json!({"projectId": "123"})).await["result"], json!({}));
    set_dialect(&running, &client, json!({"result": "array"})).await;
    assert_eq!(list(&running, &client, json!({"projectId": "123"})).await["result"], json!([]));
    // A filter that matches nobody is still the documented error.
    let none = list(&running, &client, json!({"projectId": "123", "filters": {"fio": "nobody"}})).await;
    assert_eq!(error_code(&none), codes::NOT_FOUND);

    // Clashes and broken rules carry the dialect's code too; protocol codes do not change.
    set_dialect(&running, &client, json!({"error_codes": "server"})).await;
    add(&running, &client, &params("Ivan Petrenko", "ivan@example.com", "1001")).await;
    let clash = add(&running, &client, &params("Petro Ivanenko", "petro@example.com", "1001")).await;
    assert_eq!(error_code(&clash), -32000);
    let mut p = params("Petro Ivanenko", "petro@example.com", "1002");
    p.as_object_mut().unwrap().remove("departments");
    assert_eq!(error_code(&add(&running, &client, &p).await), codes::INVALID_PARAMS);
}

#[tokio::test]
async fn add_staff_answers_where_the_dialect_says() {
    let (running, client) = start().await;
    let body = |ext: &str| {
        json!({"jsonrpc": "2.0", "method": "Api\\V2\\Staff.addStaff",
               "params": params("Ivan Petrenko", &format!("i{ext}@example.com"), ext), "id": 1})
    };
    let post = |path: &'static str, project: Option<&'static str>, body: Value| {
        let mut request =
            client.post(format!("{}{path}", running.url)).header("Auth-key", key(&running)).json(&body);
        if let Some(project) = project {
            request = request.header("x-project-id", project);
        }
        request.send()
    };
    set_dialect(&running, &client, json!({"add_path": "v2"})).await;
    assert_eq!(post("/a/v2", Some("123"), body("101")).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(post("/v2", Some("123"), body("101")).await.unwrap().json::<Value>().await.unwrap(), ok());
    set_dialect(&running, &client, json!({"add_path": "a_v2", "project_header": "required"})).await;
    assert_eq!(post("/v2", Some("123"), body("102")).await.unwrap().status(), StatusCode::NOT_FOUND);
    let refused = post("/a/v2", None, body("102")).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(error_code(&refused), codes::FORBIDDEN);
    assert_eq!(post("/a/v2", Some("123"), body("102")).await.unwrap().json::<Value>().await.unwrap(), ok());
    assert_eq!(staff_count(&running), 2);
}
