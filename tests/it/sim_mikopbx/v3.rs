//! The simulator's REST API v3 (2026.1) against what its code does.

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::sim::{
    Simulator,
    mikopbx::{Dialect, MikoPbxConfig},
};

use super::{STRONG, start, start_default};

#[tokio::test]
async fn v3_crud_and_status_codes() {
    let h = start_default().await;
    let (status, body) = h
        .v3(
            Method::POST,
            "/pbxcore/api/v3/employees",
            None,
            Some(json!({"number": "201", "user_username": "John Doe", "user_email": "jd@example.com",
                        "sip_secret": STRONG, "mobile_number": "79991234567"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["httpCode"], 201);
    assert_eq!(body["function"], "create");
    assert!(body.get("jsonapi").is_none());
    let id = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["reload"], format!("extensions/modify/{id}"));
    assert_eq!(body["data"]["sip_transport"], "udp");
    assert_eq!(body["data"]["sip_enableRecording"], true);
    assert_eq!(body["data"]["fwd_ringlength"], 45);

    let (status, body) = h.v3(Method::GET, &format!("/pbxcore/api/v3/employees/{id}"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["user_username"], "John Doe");
    assert_eq!(body["data"]["sip_secret"], STRONG);
    assert_eq!(body["data"]["mobile_number"], "79991234567");

    // Duplicate number: 422, not 409.
    let (status, body) = h
        .v3(
            Method::POST,
            "/pbxcore/api/v3/employees",
            None,
            Some(json!({"number": "201", "user_username": "Other", "sip_secret": STRONG})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["messages"]["error"], json!(["Extension already occupied"]));

    // PUT without mobile_number drops the mobile; the secret is kept.
    let path = format!("/pbxcore/api/v3/employees/{id}");
    let (status, body) = h
        .v3(
            Method::PUT,
            &path,
            None,
            Some(json!({"number": "202", "user_username": "John Doe", "user_email": "j@example.com"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["number"], "202");
    assert_eq!(body["data"]["mobile_number"], "");
    assert_eq!(body["data"]["sip_secret"], STRONG);
    assert_eq!(body["data"]["fwd_ringlength"], 0);

    // PATCH touches only what it is sent.
    let (status, body) = h
        .v3(
            Method::PATCH,
            &path,
            None,
            Some(json!({"mobile_number": "79990001122", "fwd_forwarding": "79990001122"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["number"], "202");
    assert_eq!(body["data"]["user_email"], "j@example.com");
    assert_eq!(body["data"]["fwd_ringlength"], 45);
    let (status, body) =
        h.v3(Method::PATCH, &path, None, Some(json!({"user_email": "new@example.com"}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["mobile_number"], "79990001122");
    assert_eq!(body["data"]["user_email"], "new@example.com");

    let (status, body) = h.v3(Method::DELETE, &path, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!({"deleted_id": id}));

    // Not found, as the code reads: GET/DELETE 422, PUT/PATCH 404.
    let (status, _) = h.v3(Method::GET, &path, None, None).await;
    assert_eq!(status, 422);
    let (status, _) = h.v3(Method::DELETE, &path, None, None).await;
    assert_eq!(status, 422);
    let put = json!({"number": "203", "user_username": "X"});
    let (status, body) = h.v3(Method::PUT, &path, None, Some(put.clone())).await;
    assert_eq!(status, 404);
    assert_eq!(body["httpCode"], 404);
    assert_eq!(body["messages"]["error"], json!(["Employee not found"]));
    let (status, _) = h.v3(Method::PATCH, &path, None, Some(put)).await;
    assert_eq!(status, 404);
    let (status, _) = h.v3(Method::GET, "/pbxcore/api/v3/employees/abc", None, None).await;
    assert_eq!(status, 404);
    let (status, _) = h.v3(Method::PUT, "/pbxcore/api/v3/employees", None, None).await;
    assert_eq!(status, 405);

    let strict = start(MikoPbxConfig {
        dialect: Dialect { v3_not_found: 404, ..Dialect::default() },
        ..MikoPbxConfig::default()
    })
    .await;
    let (status, _) = strict.v3(Method::GET, "/pbxcore/api/v3/employees/9", None, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn v3_list_paginates() {
    let h = start_default().await;
    for i in 0..5 {
        h.v3_create(&format!("30{i}"), &format!("Person {i}")).await;
    }
    let list = |q: &'static str| h.v3(Method::GET, q, None, None);
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let path = format!("/pbxcore/api/v3/employees?limit=2&offset={offset}");
        let (status, body) = h.v3(Method::GET, &path, None, None).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["recordsTotal"], 5);
        assert_eq!(body["data"]["recordsFiltered"], 5);
        for item in body["data"]["data"].as_array().unwrap() {
            assert!(item["id"].is_u64(), "list ids are ints");
            seen.push(item["number"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, vec!["300", "301", "302", "303", "304"]);
    let (_, body) = list("/pbxcore/api/v3/employees").await;
    assert_eq!(body["data"]["data"].as_array().unwrap().len(), 5);
    let (_, body) = list("/pbxcore/api/v3/employees?limit=0").await;
    assert_eq!(body["data"]["data"].as_array().unwrap().len(), 5);
    let (_, body) = list("/pbxcore/api/v3/employees?search=number:303").await;
    assert_eq!(body["data"]["recordsTotal"], 1);
    assert_eq!(body["data"]["data"][0]["user_username"], "Person 3");
    let (_, body) = list("/pbxcore/api/v3/employees?search=person%204").await;
    assert_eq!(body["data"]["data"][0]["number"], "304");
    let (_, body) = list("/pbxcore/api/v3/employees?order_by=number&order_direction=DESC&limit=1").await;
    assert_eq!(body["data"]["data"][0]["number"], "304");
}

#[tokio::test]
async fn v3_validation() {
    let h = start_default().await;
    let post = |body: Value| h.v3(Method::POST, "/pbxcore/api/v3/employees", None, Some(body));

    let (status, body) = post(json!({})).await;
    assert_eq!(status, 422);
    let errors = body["messages"]["error"].as_object().unwrap();
    assert_eq!(errors["number"], "ex_ValidateNumberIsEmpty");
    assert!(errors.contains_key("user_username") && errors.contains_key("sip_secret"));

    let base = json!({"number": "201", "user_username": "Val", "sip_secret": STRONG});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            with("sip_transport", json!("sctp")),
            "Field 'sip_transport' must be one of: udp, tcp, tls, udp,tcp",
        ),
        (with("fwd_ringlength", json!(200)), "Field 'fwd_ringlength' must be at most 180 (got 200)"),
        (with("sip_secret", json!("abc")), "SIP password must be longer than 4 characters"),
        (with("sip_secret", json!("password")), "Default password is being used"),
        (with("sip_secret", json!("weakpass")), "For security, password must have at least fair strength"),
        (with("user_email", json!("not-an-email")), "Likely the email address is invalid"),
        (with("mobile_number", json!("0123")), "Check the correctness of entering the mobile number"),
        (with("number", json!("1")), "Field 'number' does not match the required pattern ^[0-9]{2,8}$"),
        (with("fwd_forwarding", json!("201")), "You cannot set up forwarding to your own number"),
    ];
    for (body, expected) in cases {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        let errors = answer["messages"]["error"].as_array().unwrap();
        assert!(errors.iter().any(|e| e == expected), "{body} -> {answer}");
    }
    assert_eq!(h.sim.dump(), json!([]));

    // The sanitiser truncates a 9-digit number instead of rejecting it.
    let (status, body) = post(with("number", json!("123456789"))).await;
    assert_eq!(status, 201);
    assert_eq!(body["data"]["number"], "12345678");
}

#[tokio::test]
async fn v3_authentication() {
    let h = start(MikoPbxConfig { trust_loopback: false, ..MikoPbxConfig::default() }).await;
    let list = "/pbxcore/api/v3/employees";
    let (status, body) = h.v3(Method::GET, list, None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["messages"]["error"], json!(["The user isn't authenticated."]));
    let (status, _) = h.v3(Method::GET, list, Some("not-a-key"), None).await;
    assert_eq!(status, 401);
    let key = h.sim.credentials()["apiKey"].clone();
    let (status, _) = h.v3(Method::GET, list, Some(&key), None).await;
    assert_eq!(status, 200);

    // The legacy session cookie does not count in v3.
    let (_, cookie) = h.login("sim-admin", "sim-admin-password").await;
    let r = h.http.get(h.u(list)).header("Cookie", cookie.unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // JWT login, form body like the maintainers' client.
    let login = |pw: &'static str| {
        h.http
            .post(h.u("/pbxcore/api/v3/auth:login"))
            .form(&[("login", "sim-admin"), ("password", pw)])
            .send()
    };
    let r = login("wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .post(h.u("/pbxcore/api/v3/auth:login"))
        .json(&json!({"login": "sim-admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = login("sim-admin-password").await.unwrap();
    assert_eq!(r.status(), 200);
    let refresh =
        r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(refresh.starts_with("refreshToken="));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["tokenType"], "Bearer");
    assert_eq!(body["data"]["expiresIn"], 900);
    let jwt = body["data"]["accessToken"].as_str().unwrap().to_string();
    assert_eq!(jwt.split('.').count(), 3);
    let (status, _) = h
        .v3(
            Method::POST,
            list,
            Some(&jwt),
            Some(json!({"number": "201", "user_username": "J", "sip_secret": STRONG})),
        )
        .await;
    assert_eq!(status, 201);

    // expire_tokens kills the access token; the refresh cookie is gone too.
    h.sim.expire_tokens();
    let (status, _) = h.v3(Method::GET, list, Some(&jwt), None).await;
    assert_eq!(status, 401);
    let r = h.http.post(h.u("/pbxcore/api/v3/auth:refresh")).header("Cookie", &refresh).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A fresh login can be refreshed; the old refresh token is rotated out.
    let r = login("sim-admin-password").await.unwrap();
    let refresh = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let refreshed =
        h.http.post(h.u("/pbxcore/api/v3/auth:refresh")).header("Cookie", &refresh).send().await.unwrap();
    assert_eq!(refreshed.status(), 200);
    let body: Value = refreshed.json().await.unwrap();
    let jwt2 = body["data"]["accessToken"].as_str().unwrap().to_string();
    let (status, _) = h.v3(Method::GET, list, Some(&jwt2), None).await;
    assert_eq!(status, 200);
    let again =
        h.http.post(h.u("/pbxcore/api/v3/auth:refresh")).header("Cookie", &refresh).send().await.unwrap();
    assert_eq!(again.status(), 401);

    // Throttling: 10 failures, then even the right password gets 429.
    for _ in 0..10 {
        assert_eq!(login("wrong").await.unwrap().status(), 401);
    }
    assert_eq!(login("sim-admin-password").await.unwrap().status(), 429);

    // With loopback trusted, a bad bearer is still refused.
    let trusting = start_default().await;
    let (status, _) = trusting.v3(Method::GET, list, None, None).await;
    assert_eq!(status, 200);
    let (status, _) = trusting.v3(Method::GET, list, Some("garbage"), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn v3_get_default_template() {
    let h = start_default().await;
    let (status, body) = h.v3(Method::GET, "/pbxcore/api/v3/employees:getDefault", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["number"], "201");
    assert_eq!(body["data"]["id"], "");
    let secret = body["data"]["sip_secret"].as_str().unwrap();
    // The template's own secret passes the create rules.
    let (status, _) = h
        .v3(
            Method::POST,
            "/pbxcore/api/v3/employees",
            None,
            Some(json!({"number": "201", "user_username": "T", "sip_secret": secret})),
        )
        .await;
    assert_eq!(status, 201);
}
