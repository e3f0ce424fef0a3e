//! The MikoPBX simulator's dialects against what the server code of each release does
//! (`docs/compatibility.md`, MikoPBX).

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::sim::{
    Simulator,
    mikopbx::{Dialect, Generation, Integers, Language, MikoPbxConfig, RestrictedUser},
};

use super::{H, STRONG, release, start, start_default};

fn dialect(d: Dialect) -> MikoPbxConfig {
    MikoPbxConfig { dialect: d, ..MikoPbxConfig::default() }
}

impl H {
    async fn xhr_get(&self, path: &str) -> (reqwest::StatusCode, String) {
        let r =
            self.http.get(self.u(path)).header("X-Requested-With", "XMLHttpRequest").send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn table(&self, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
        let r = self
            .http
            .post(self.u("/admin-cabinet/extensions/getNewRecords"))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn each_generation_serves_only_its_own_apis() {
    let old = start(release(Generation::V2023_2)).await;
    let mid = start(release(Generation::V2024_1)).await;
    let new = start(release(Generation::V2026_1)).await;
    for h in [&old, &mid] {
        let (status, body) = h.v3(Method::GET, "/pbxcore/api/v3/employees", None, None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["errors"], json!(["404 (Not Found)"]));
        let (status, body) = h.get_json("/pbxcore/api/extensions/getRecord?id=").await;
        assert_eq!((status.as_u16(), &body["result"]), (200, &json!(true)));
    }
    let (status, body) = new.get_json("/pbxcore/api/extensions/getRecord?id=").await;
    assert_eq!(status, 404, "2026.1 removed the legacy controllers: {body}");
    let (status, _) = new.v3(Method::GET, "/pbxcore/api/v3/employees", None, None).await;
    assert_eq!(status, 200);

    // A cabinet action a release lacks: HTTP 200 and success:false (ErrorsController).
    for h in [&old, &new] {
        let (status, body) = h.table(&[("draw", "1")]).await;
        assert_eq!(status, 200);
        assert_eq!(body["success"], false);
        assert_eq!(body["message"], "Page not found - 404");
    }
    let (status, body) = mid.table(&[("draw", "1")]).await;
    assert_eq!((status.as_u16(), &body["recordsFiltered"]), (200, &json!(0)));
}

#[tokio::test]
async fn the_2023_2_page_lists_every_employee_with_its_id() {
    let h = start(release(Generation::V2023_2)).await;
    let (_, empty) = h.xhr_get("/admin-cabinet/extensions/index").await;
    let empty: Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(empty["extensions"], json!([]), "PHP's json_encode of an empty array");

    let a =
        h.create(json!({"user_username": "Ann", "mobile_number": "79990000001", "sip_secret": STRONG})).await;
    let b = h.create(json!({"user_username": "Bob"})).await;
    let (status, text) = h.xhr_get("/admin-cabinet/extensions/index").await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["success"], true);
    let list = page["extensions"].as_object().unwrap();
    assert_eq!(list.len(), 2, "keyed by user id: {page}");
    let ann = &list[a["user_id"].as_str().unwrap()];
    assert_eq!(ann["id"].to_string(), a["id"].as_str().unwrap());
    assert_eq!(ann["number"], a["number"]);
    assert_eq!(ann["mobile"], "79990000001");
    assert_eq!(ann["secret"], STRONG, "the page holds the SIP secrets");
    assert_eq!(ann["status"], "");

    // Without XHR: the HTML table, each row with its id and number.
    let html = h.http.get(h.u("/admin-cabinet/extensions/index")).send().await.unwrap().text().await.unwrap();
    let row =
        format!("id=\"{}\" data-value=\"{}\"", b["id"].as_str().unwrap(), b["number"].as_str().unwrap());
    assert!(html.contains(&row), "{html}");

    // From 2024.1 on the page is empty; the table loads through getNewRecords.
    let mid = start_default().await;
    mid.create(json!({"user_username": "Cy"})).await;
    let (_, text) = mid.xhr_get("/admin-cabinet/extensions/index").await;
    let page: Value = serde_json::from_str(&text).unwrap();
    assert!(page.get("extensions").is_none(), "{page}");

    // The cabinet trusts 127.0.0.1; anyone else needs a session, or gets 403.
    let remote = start(MikoPbxConfig { trust_loopback: false, ..release(Generation::V2023_2) }).await;
    let (status, _) = remote.xhr_get("/admin-cabinet/extensions/index").await;
    assert_eq!(status, 403);
    let reader = start(MikoPbxConfig {
        trust_loopback: false,
        restricted_users: vec![RestrictedUser {
            login: "reader".into(),
            password: "reader-pass".into(),
            allowed_actions: vec!["getRecord".into()],
        }],
        ..release(Generation::V2023_2)
    })
    .await;
    let (_, cookie) = reader.login("reader", "reader-pass").await;
    let r = reader
        .http
        .get(reader.u("/admin-cabinet/extensions/index"))
        .header("X-Requested-With", "XMLHttpRequest")
        .header("Cookie", cookie.unwrap())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"success": false, "reload": false, "message": "Unauthorized - 401"}));
}

#[tokio::test]
async fn the_2024_1_table_sorts_by_the_column_the_request_names() {
    let h = start(dialect(Dialect { integers: Integers::String, ..Dialect::default() })).await;
    for number in ["99", "1000", "100"] {
        h.create(json!({"number": number, "user_username": format!("N{number}")})).await;
    }
    let numbers = |body: &Value| -> Vec<String> {
        body["data"].as_array().unwrap().iter().map(|r| r["number"].as_str().unwrap().to_owned()).collect()
    };
    let order = |column: &'static str| {
        [
            ("draw", "1"),
            ("start", "0"),
            ("length", "10"),
            ("order[0][column]", "0"),
            ("order[0][dir]", "asc"),
            ("columns[0][data]", column),
        ]
    };
    let (_, body) = h.table(&order("CAST(Extensions.number AS INTEGER)")).await;
    assert_eq!(numbers(&body), ["99", "100", "1000"]);
    assert_eq!(body["recordsFiltered"], "3", "integers as strings in this dialect");
    assert!(body["data"][0]["id"].is_string());
    assert_eq!(body["data"][0]["disabled"], "0");
    let (_, body) = h.table(&[("draw", "1")]).await;
    assert_eq!(numbers(&body), ["99", "100", "1000"], "no order named: the numeric cast");
    let (_, body) = h.table(&order("Users.username")).await;
    assert_eq!(numbers(&body), ["100", "1000", "99"]);
    // An unqualified `number` is ambiguous to PHQL (two joined models have it).
    let (status, body) = h.table(&order("number")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"success": false, "reload": false, "message": "Server error - 500"}));
}

#[tokio::test]
async fn v3_stores_forwarding_targets_digits_only() {
    let h = start(release(Generation::V2026_1)).await;
    let (status, body) = h
        .v3(
            Method::POST,
            "/pbxcore/api/v3/employees",
            None,
            Some(json!({"number": "201", "user_username": "Fwd", "sip_secret": STRONG,
                        "mobile_number": "+48600111222", "fwd_forwarding": "+48600999888",
                        "fwd_forwardingonbusy": "voicemail", "fwd_ringlength": 30})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["fwd_forwarding"], "48600999888", "SystemSanitizer keeps the digits");
    assert_eq!(body["data"]["fwd_forwardingonbusy"], "voicemail", "system targets stay");
    assert_eq!(body["data"]["mobile_number"], "+48600111222", "a mobile that matches the pattern stays");
}

#[tokio::test]
async fn v3_patch_validates_the_merged_record() {
    let h = start_default().await;
    // Made through the legacy API, which takes any password.
    let legacy = h.create(json!({"user_username": "Weak", "sip_secret": "weakpass"})).await;
    let id = legacy["user_id"].as_str().unwrap();
    let path = format!("/pbxcore/api/v3/employees/{id}");
    let (status, body) = h.v3(Method::PATCH, &path, None, Some(json!({"user_email": "w@example.com"}))).await;
    assert_eq!(status, 422, "the stored password is validated with the e-mail: {body}");
    assert_eq!(body["messages"]["error"], json!(["For security, password must have at least fair strength"]));
    // An empty password keeps the stored one, and fails the same way.
    let (status, _) = h
        .v3(Method::PATCH, &path, None, Some(json!({"user_email": "w@example.com", "sip_secret": ""})))
        .await;
    assert_eq!(status, 422);
    let (status, body) = h
        .v3(Method::PATCH, &path, None, Some(json!({"user_email": "w@example.com", "sip_secret": STRONG})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user_email"], "w@example.com");
    // PUT validates only what it is sent.
    let other = h.create(json!({"user_username": "Other", "sip_secret": "weakpass"})).await;
    let (status, body) = h
        .v3(
            Method::PUT,
            &format!("/pbxcore/api/v3/employees/{}", other["user_id"].as_str().unwrap()),
            None,
            Some(json!({"number": other["number"], "user_username": "Other Two"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn messages_come_in_the_admin_ui_language() {
    let h = start(dialect(Dialect { language: Language::Ru, ..Dialect::default() })).await;
    h.v3_create("201", "Первый").await;
    let (status, body) = h
        .v3(
            Method::POST,
            "/pbxcore/api/v3/employees",
            None,
            Some(json!({"number": "201", "user_username": "Второй", "sip_secret": STRONG})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["messages"]["error"], json!(["Внутренний номер уже занят"]));
    // The legacy duplicate has no translation in 2023.2 or 2024.1: the key, in Russian too.
    let mut twin = h.template().await;
    twin["number"] = json!("201");
    let (_, body) = h.save(&twin).await;
    assert_eq!(body["messages"]["error"], json!(["mo_ThisNumberNotUniqueForExtensionsModels"]));
    let (answer, _) = h.login("sim-admin", "wrong").await;
    assert_eq!(answer["message"]["error"][0], "Ошибка авторизации, у вас осталось 9 попыток");

    // Who holds a number, in any language.
    let (status, body) = h
        .v3(Method::POST, "/pbxcore/api/v3/extensions:available", None, Some(json!({"number": "201"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["available"], false);
    assert!(body["data"]["userId"].is_u64());
}

#[tokio::test]
async fn the_dialect_is_read_and_changed_over_sim() {
    let h = start_default().await;
    let url = h.u("/_sim/dialect");
    let got: Value = h.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        got,
        json!({"generation": "all", "language": "en", "integers": "number", "v3_not_found": 422, "v3_max_limit": 1000, "save_answer": "record"})
    );
    let r = h.http.put(&url).json(&json!({"generation": "2023.2", "language": "ru"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.sim.dialect()["generation"], "2023.2");
    let (status, _) = h.v3(Method::GET, "/pbxcore/api/v3/employees", None, None).await;
    assert_eq!(status, 404, "a 2023.2 has no v3");
    for bad in [json!({"generation": "2025.1"}), json!({"v3_not_found": 500}), json!({"colour": "red"})] {
        let r = h.http.put(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }
    assert_eq!(h.sim.dialect()["language"], "ru", "a refused patch changes nothing");
}
