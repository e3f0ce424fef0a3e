//! The MikoPBX simulator against what the sources say the real one does.

mod dialects;
mod v3;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Map, Value, json};
use switchboard::sim::mikopbx::{Dialect, Generation, MikoPbxConfig, MikoPbxSim, RestrictedUser};
use switchboard::sim::{self, Running, SimError, Simulator};

/// The template the seed document shows (2023.2).
const SEED_TEMPLATE: &str = r#"{"type":"SIP","show_in_phonebook":"1","is_general_user_number":"1","public_access":"0",
  "number":"275","user_id":"","user_avatar":"","user_username":"","user_email":"",
  "mobile_uniqid":"EXTERNAL-7870338E","mobile_number":"","mobile_dialstring":"",
  "sip_uniqid":"SIP-PHONE-5A230111","sip_secret":"Nk9oOFI2ZXdDMEU9","sip_type":"peer",
  "sip_qualify":"1","sip_qualifyfreq":60,"sip_enableRecording":"1","sip_dtmfmode":"auto",
  "sip_transport":" ","sip_networkfilterid":"none","sip_manualattributes":"",
  "fwd_ringlength":45,"fwd_forwarding":"","fwd_forwardingonbusy":"","fwd_forwardingonunavailable":""}"#;

const STRONG: &str = "Vq7#pL2m!xR9zT4w";

struct H {
    sim: Arc<MikoPbxSim>,
    _running: Running,
    url: String,
    http: Client,
}

async fn start(cfg: MikoPbxConfig) -> H {
    let sim = MikoPbxSim::new(cfg);
    let running = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = running.url.clone();
    let http = crate::http().no_proxy().build().unwrap();
    H { sim, _running: running, url, http }
}

async fn start_default() -> H {
    start(MikoPbxConfig::default()).await
}

/// A simulator of one release (and the default of everything else).
fn release(generation: Generation) -> MikoPbxConfig {
    MikoPbxConfig { dialect: Dialect { generation, ..Dialect::default() }, ..MikoPbxConfig::default() }
}

fn form_of(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("PHPSESSID="))
        .map(|v| v.split(';').next().unwrap().to_string())
}

impl H {
    fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.u(path)).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn template(&self) -> Value {
        let (status, body) = self.get_json("/pbxcore/api/extensions/getRecord?id=").await;
        assert_eq!(status, 200);
        assert_eq!(body["result"], true, "{body}");
        body["data"].clone()
    }

    async fn get_record(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/pbxcore/api/extensions/getRecord?id={id}")).await;
        assert_eq!(status, 200);
        body["data"].clone()
    }

    async fn save(&self, record: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.u("/pbxcore/api/extensions/saveRecord"))
            .form(&form_of(record))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// Template + the given fields, saved; returns the saved record.
    async fn create(&self, fields: Value) -> Value {
        let mut t = self.template().await;
        for (k, v) in fields.as_object().unwrap() {
            t[k] = v.clone();
        }
        let (status, body) = self.save(&t).await;
        assert_eq!(status, 200);
        assert_eq!(body["result"], true, "{body}");
        body["data"].clone()
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self.http.post(self.u(path)).form(form).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn delete(&self, id: &str) -> (StatusCode, Value) {
        self.post_form("/pbxcore/api/extensions/deleteRecord", &[("id", id)]).await
    }

    async fn login(&self, login: &str, password: &str) -> (Value, Option<String>) {
        let r = self
            .http
            .post(self.u("/admin-cabinet/session/start"))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("login", login), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = session_cookie(r.headers());
        (r.json().await.unwrap(), cookie)
    }

    async fn v3(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.u(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn v3_create(&self, number: &str, name: &str) -> Value {
        let (status, body) = self
            .v3(
                reqwest::Method::POST,
                "/pbxcore/api/v3/employees",
                None,
                Some(json!({"number": number, "user_username": name, "sip_secret": STRONG})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }
}

fn is_upper_hex8(s: &str) -> bool {
    s.len() == 8 && s.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

// ---------------------------------------------------------------------------------------
// Legacy API

#[tokio::test]
async fn legacy_seed_flow_template_then_save() {
    let h = start_default().await;
    let r = h.http.get(h.u("/pbxcore/api/extensions/getRecord?id=")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers().get("e-tag").unwrap().to_str().unwrap().to_string();
    assert_eq!(etag.len(), 40);
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    for k in ["jsonapi", "result", "data", "messages", "function", "processor", "pid", "meta"] {
        assert!(keys.contains(&k), "envelope lacks {k}: {body}");
    }
    assert_eq!(body["jsonapi"], json!({"version": "1.0"}));
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["function"], "getRecord");
    assert_eq!(body["processor"], "MikoPBX\\PBXCoreREST\\Lib\\Extensions\\GetRecordAction::main");
    assert!(body["pid"].is_u64());
    assert_eq!(body["meta"]["hash"].as_str().unwrap().len(), 40);
    assert!(body["meta"]["timestamp"].as_str().unwrap().ends_with("+00:00"));

    // Same keys and JSON types as the seed's template, no `id`.
    let tpl = &body["data"];
    let seed: Value = serde_json::from_str(SEED_TEMPLATE).unwrap();
    let mut ours: Vec<&String> = tpl.as_object().unwrap().keys().collect();
    let mut theirs: Vec<&String> = seed.as_object().unwrap().keys().collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    for (k, v) in seed.as_object().unwrap() {
        assert_eq!(v.is_string(), tpl[k].is_string(), "type of {k}");
        assert_eq!(v.is_u64(), tpl[k].is_u64(), "type of {k}");
    }
    for k in [
        "type",
        "show_in_phonebook",
        "is_general_user_number",
        "public_access",
        "user_id",
        "sip_type",
        "sip_qualify",
        "sip_qualifyfreq",
        "sip_enableRecording",
        "sip_dtmfmode",
        "sip_networkfilterid",
        "fwd_ringlength",
        "mobile_number",
    ] {
        assert_eq!(tpl[k], seed[k], "{k}");
    }
    assert_eq!(tpl["sip_transport"], "", "2024.1 default");
    assert_eq!(tpl["number"], "201");
    let sip_uniqid = tpl["sip_uniqid"].as_str().unwrap().to_string();
    let mobile_uniqid = tpl["mobile_uniqid"].as_str().unwrap().to_string();
    assert!(is_upper_hex8(sip_uniqid.strip_prefix("SIP-PHONE-").unwrap()));
    assert!(is_upper_hex8(mobile_uniqid.strip_prefix("EXTERNAL-").unwrap()));
    assert_eq!(tpl["sip_secret"].as_str().unwrap().len(), 16);

    // Save the template the way the seed's script does.
    let mut rec = tpl.clone();
    rec["user_username"] = json!("Анна Петрова");
    rec["user_email"] = json!("anna@example.com");
    rec["mobile_number"] = json!("79991234567");
    rec["fwd_forwarding"] = json!("79991234567");
    rec["fwd_forwardingonbusy"] = json!("79991234567");
    let (status, saved) = h.save(&rec).await;
    assert_eq!(status, 200);
    assert_eq!(saved["result"], true, "{saved}");
    assert_eq!(saved["function"], "saveRecord");
    let data = &saved["data"];
    let id = data["id"].as_str().unwrap().to_string();
    assert_ne!(data["user_id"], "");
    assert_ne!(data["user_id"].as_str(), Some(id.as_str()), "two different ids");

    let got = h.get_record(&id).await;
    assert_eq!(&got, data);
    assert_eq!(got["user_username"], "Анна Петрова");
    assert_eq!(got["user_email"], "anna@example.com");
    assert_eq!(got["mobile_number"], "79991234567");
    assert_eq!(got["mobile_dialstring"], "79991234567");
    assert_eq!(got["mobile_uniqid"], mobile_uniqid.as_str());
    assert_eq!(got["sip_uniqid"], sip_uniqid.as_str());
    assert_eq!(got["sip_secret"], tpl["sip_secret"]);
    assert_eq!(got["fwd_forwarding"], "79991234567");
    assert_eq!(got["fwd_forwardingonbusy"], "79991234567");
    assert_eq!(got["fwd_ringlength"], 45);

    // The mobile is an extension of its own.
    let counts = h.sim.row_counts();
    assert_eq!(counts["extensions"], 2);
    assert_eq!(counts["external_phones"], 1);
    let (_, phones) = h.get_json("/pbxcore/api/extensions/getForSelect?type=phones").await;
    let values: Vec<&str> =
        phones["data"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert_eq!(values, vec!["201", "79991234567"]);
    assert_eq!(h.sim.dump().as_array().unwrap().len(), 1);
    assert_eq!(h.template().await["number"], "202");

    // 2023.2 flavour: the seed's own values.
    let old = start(release(Generation::V2023_2)).await;
    let (_, body) = old.get_json("/pbxcore/api/extensions/getRecord?id=").await;
    assert_eq!(body["data"]["sip_transport"], " ");
    assert_eq!(body["processor"], "MikoPBX\\PBXCoreREST\\Lib\\Extensions\\GetRecord::main");
}

#[tokio::test]
async fn legacy_save_has_full_record_semantics() {
    let h = start_default().await;
    let rec =
        h.create(json!({"user_username": "Bob", "mobile_number": "79990000001", "fwd_ringlength": 30})).await;
    let id = rec["id"].as_str().unwrap().to_string();
    assert_eq!(rec["fwd_ringlength"], 30);

    // Without sip_secret: a new random secret, and the omitted fwd_ringlength is back to 45.
    let mut partial = rec.clone();
    partial.as_object_mut().unwrap().remove("sip_secret");
    partial.as_object_mut().unwrap().remove("fwd_ringlength");
    let (_, body) = h.save(&partial).await;
    assert_eq!(body["result"], true, "{body}");
    let after = h.get_record(&id).await;
    assert_ne!(after["sip_secret"], rec["sip_secret"]);
    assert_eq!(after["sip_secret"].as_str().unwrap().len(), 16);
    assert_eq!(after["fwd_ringlength"], 45);
    assert_eq!(after["mobile_number"], "79990000001");

    // Without mobile_number: the mobile is deleted.
    let mut partial = after.clone();
    partial.as_object_mut().unwrap().remove("mobile_number");
    let (_, body) = h.save(&partial).await;
    assert_eq!(body["result"], true);
    let after = h.get_record(&id).await;
    assert_eq!(after["mobile_number"], "");
    assert_eq!(h.sim.row_counts()["extensions"], 1);
    assert_eq!(h.sim.row_counts()["external_phones"], 0);

    // Without sip_uniqid: a second Sip row; reads still show the first one.
    let mut partial = after.clone();
    partial.as_object_mut().unwrap().remove("sip_uniqid");
    partial["sip_secret"] = json!("changed-secret");
    let (_, body) = h.save(&partial).await;
    assert_eq!(body["result"], true);
    assert_eq!(h.sim.row_counts()["sip"], 2);
    let again = h.get_record(&id).await;
    assert_eq!(again["sip_uniqid"], after["sip_uniqid"]);
    assert_eq!(again["sip_secret"], after["sip_secret"]);

    // Without user_id: a new user, whose number collides with the existing one.
    let mut partial = again.clone();
    partial.as_object_mut().unwrap().remove("user_id");
    let (status, body) = h.save(&partial).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], false);
    assert_eq!(h.sim.dump().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn legacy_duplicate_numbers_are_rejected_with_http_200() {
    let h = start_default().await;
    h.create(json!({"user_username": "First", "mobile_number": "79990000002"})).await;
    let mut second = h.template().await;
    second["number"] = json!("201");
    second["user_username"] = json!("Second");
    let (status, body) = h.save(&second).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], false);
    assert_eq!(body["data"], json!([]));
    // The model's message key, bare: 2023.2 and 2024.1 have no text for it, in any language.
    assert_eq!(body["messages"]["error"], json!(["mo_ThisNumberNotUniqueForExtensionsModels"]));

    // A mobile number is an extension number too.
    let mut third = h.template().await;
    third["user_username"] = json!("Third");
    third["mobile_number"] = json!("79990000002");
    let (status, body) = h.save(&third).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], false, "{body}");
    assert_eq!(body["messages"]["error"], json!(["mo_ThisNumberNotUniqueForExtensionsModels"]));
    assert_eq!(h.sim.dump().as_array().unwrap().len(), 1);
    assert_eq!(h.sim.row_counts()["users"], 1, "the failed save rolled back");
}

#[tokio::test]
async fn legacy_save_rejects_a_json_body() {
    let h = start_default().await;
    let mut t = h.template().await;
    t["user_username"] = json!("Json Client");
    let r = h.http.post(h.u("/pbxcore/api/extensions/saveRecord")).json(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"], false);
    assert_eq!(body["messages"]["error"], json!(["Empty number value in POST/GET data"]));
    assert_eq!(h.sim.dump(), json!([]));
}

#[tokio::test]
async fn legacy_remote_callers_need_a_session() {
    let h = start(MikoPbxConfig {
        trust_loopback: false,
        restricted_users: vec![RestrictedUser {
            login: "reader".into(),
            password: "reader-pass".into(),
            allowed_actions: vec!["getRecord".into()],
        }],
        ..MikoPbxConfig::default()
    })
    .await;
    let (status, body) = h.get_json("/pbxcore/api/extensions/getRecord?id=").await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"], json!(["The user isn't authenticated."]));
    assert!(body.get("result").is_none());
    assert_eq!(body["jsonapi"]["version"], "1.0");

    let (status, body) = h.get_json("/pbxcore/api/nothing/here").await;
    assert_eq!(status, 404);
    assert_eq!(body["errors"], json!(["404 (Not Found)"]));

    let (answer, refused) = h.login("sim-admin", "wrong").await;
    assert_eq!(answer["success"], false);
    assert_eq!(answer["message"]["error"][0], "Authorization failed, you have 9 attempts left");
    // PHP started a session for the refused login too; it is logged in to nothing.
    let r = h
        .http
        .get(h.u("/pbxcore/api/extensions/getRecord?id="))
        .header("Cookie", refused.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let creds = h.sim.credentials();
    let (answer, cookie) = h.login(&creds["username"], &creds["password"]).await;
    assert_eq!(answer["success"], true, "{answer}");
    let cookie = cookie.unwrap();
    let r = h
        .http
        .get(h.u("/pbxcore/api/extensions/getRecord?id="))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"], true);

    let r = h
        .http
        .get(h.u("/pbxcore/api/extensions/getRecord?id="))
        .header("Cookie", "PHPSESSID=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A module user may only call its actions.
    let (_, reader) = h.login("reader", "reader-pass").await;
    let r = h
        .http
        .post(h.u("/pbxcore/api/extensions/deleteRecord"))
        .header("Cookie", reader.unwrap())
        .form(&[("id", "1001")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"], json!(["The route is not allowed"]));

    h.sim.expire_tokens();
    let r = h
        .http
        .get(h.u("/pbxcore/api/extensions/getRecord?id="))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn legacy_session_idles_out() {
    let h = start(MikoPbxConfig {
        trust_loopback: false,
        session_lifetime: Duration::from_millis(1000),
        ..MikoPbxConfig::default()
    })
    .await;
    let (_, cookie) = h.login("sim-admin", "sim-admin-password").await;
    let cookie = cookie.unwrap();
    let get = || h.http.get(h.u("/pbxcore/api/extensions/getForSelect")).header("Cookie", &cookie).send();
    assert_eq!(get().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get().await.unwrap().status(), 200, "use keeps it alive");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get().await.unwrap().status(), 200, "use keeps it alive");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get().await.unwrap().status(), 401);
}

#[tokio::test]
async fn legacy_login_is_throttled_in_2024_1_only() {
    // 2024.1 counts every login of an address, successful or not: the tenth within the
    // window is locked out, and answered `success: true`, back to the login page, with a
    // session that is logged in to nothing.
    let h = start(MikoPbxConfig { trust_loopback: false, ..MikoPbxConfig::default() }).await;
    for _ in 0..9 {
        let (answer, _) = h.login("sim-admin", "sim-admin-password").await;
        assert_eq!(answer["success"], true);
    }
    let (answer, cookie) = h.login("sim-admin", "sim-admin-password").await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["reload"], "/admin-cabinet/session/index");
    assert!(answer["message"]["error"][0].as_str().unwrap().starts_with("Too many login attempts"));
    let r = h
        .http
        .get(h.u("/pbxcore/api/extensions/getRecord?id="))
        .header("Cookie", cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a locked-out login gives no session");

    let old = start(MikoPbxConfig { trust_loopback: false, ..release(Generation::V2023_2) }).await;
    for _ in 0..12 {
        old.login("sim-admin", "wrong").await;
    }
    let (answer, cookie) = old.login("sim-admin", "sim-admin-password").await;
    assert_eq!(answer["success"], true);
    assert_eq!(answer["reload"], "/admin-cabinet/extensions/index");
    let r = old
        .http
        .get(old.u("/pbxcore/api/extensions/getRecord?id="))
        .header("Cookie", cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "2023.2 has no throttle");
}

#[tokio::test]
async fn legacy_delete_record() {
    let h = start_default().await;
    let a = h.create(json!({"user_username": "A"})).await;
    let b = h.create(json!({"user_username": "B", "fwd_forwardingonunavailable": "201"})).await;
    let a_id = a["id"].as_str().unwrap().to_string();
    let b_id = b["id"].as_str().unwrap().to_string();

    // B forwards to A: A cannot go first.
    let (status, body) = h.delete(&a_id).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], false, "{body}");
    // An id no extension has.
    let (_, body) = h.delete("4711").await;
    assert_eq!(body["result"], false);
    assert_eq!(body["messages"]["error"][0], "Extension with id 4711 does not exist");
    // The id of a system number: "deleted" (its forwarding rights and user, of which it
    // has none); the number stays.
    let (_, body) = h.delete("1").await;
    assert_eq!(body["result"], true, "{body}");
    let (_, body) = h.get_json("/pbxcore/api/extensions/available?number=hangup").await;
    assert_eq!(body["data"]["available"], false);

    let (_, body) = h.delete(&b_id).await;
    assert_eq!(body["result"], true, "{body}");
    assert_eq!(body["data"], json!({"id": b_id}));
    let (_, body) = h.delete(&a_id).await;
    assert_eq!(body["result"], true);
    assert_eq!(h.sim.dump(), json!([]));
    assert_eq!(h.sim.row_counts().values().sum::<usize>(), 0, "cascade");

    let (_, body) = h.delete("").await;
    assert_eq!(body["messages"]["error"], json!(["Empty ID in POST/GET data"]));
    // The id is a form field, not a query parameter.
    let (_, body) = h.post_form(&format!("/pbxcore/api/extensions/deleteRecord?id={a_id}"), &[]).await;
    assert_eq!(body["result"], false);
    // getRecord of a deleted id is a template again.
    assert!(h.get_record(&a_id).await.get("id").is_none());
}

#[tokio::test]
async fn legacy_get_for_select_and_available() {
    let h = start_default().await;
    let rec = h.create(json!({"user_username": "Carol Smith", "mobile_number": "79990000003"})).await;
    let (_, body) = h.get_json("/pbxcore/api/extensions/getForSelect?type=internal").await;
    assert_eq!(body["result"], true);
    let items = body["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["value"], "201");
    assert_eq!(items[0]["type"], "_USER");
    let name = items[0]["name"].as_str().unwrap();
    assert!(name.contains("<i class=") && name.ends_with("Carol Smith <201>"), "{name}");
    let (_, body) = h.get_json("/pbxcore/api/extensions/getForSelect").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    let (_, body) = h.get_json("/pbxcore/api/extensions/available?number=201").await;
    assert_eq!(body["result"], true);
    assert_eq!(body["data"]["available"], false);
    assert_eq!(
        body["data"]["userId"].to_string(),
        rec["user_id"].as_str().unwrap(),
        "an integer (PDO, PHP 8.1+)"
    );
    let (_, body) = h.get_json("/pbxcore/api/extensions/available?number=79990000003").await;
    assert_eq!(body["data"]["available"], false);
    let (_, body) = h.get_json("/pbxcore/api/extensions/available?number=555").await;
    assert_eq!(body["data"], json!({"available": true}));
    let (_, body) = h.get_json("/pbxcore/api/extensions/available").await;
    assert_eq!(body["result"], false);

    // Actions exist per method only.
    let (status, body) = h.get_json("/pbxcore/api/extensions/saveRecord?number=300").await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], false);
    assert!(body["messages"]["error"][0].as_str().unwrap().starts_with("Unknown action"));
}

#[tokio::test]
async fn admin_table_maps_numbers_to_extension_ids() {
    let h = start_default().await;
    let mut ids = Vec::new();
    for (name, mobile) in [("Dave", "79990000004"), ("Eve", ""), ("Frank", "")] {
        let rec = h.create(json!({"user_username": name, "mobile_number": mobile})).await;
        ids.push((rec["number"].clone(), rec["id"].clone()));
    }
    let table = |cookie: Option<String>, form: Vec<(&'static str, &'static str)>| {
        let mut req = h
            .http
            .post(h.u("/admin-cabinet/extensions/getNewRecords"))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&form);
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send()
    };
    // The admin cabinet, like /pbxcore, trusts 127.0.0.1 (SecurityPlugin).
    let r = table(None, vec![("draw", "1")]).await.unwrap();
    assert_eq!(r.status(), 200);

    let (_, cookie) = h.login("sim-admin", "sim-admin-password").await;
    let r = table(cookie.clone(), vec![("draw", "7"), ("start", "0"), ("length", "-1")]).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["draw"], "7", "echoed as posted");
    assert_eq!(body["recordsFiltered"], 3);
    let rows = body["data"].as_array().unwrap();
    for (number, id) in &ids {
        let row = rows.iter().find(|r| &r["number"] == number).unwrap();
        assert_eq!(row["id"].to_string(), id.as_str().unwrap());
        assert_eq!(row["DT_RowId"], row["id"]);
    }
    assert_eq!(rows[0]["mobile"], "79990000004");

    let r = table(
        cookie.clone(),
        vec![("draw", "2"), ("search[value]", "eve"), ("start", "0"), ("length", "10")],
    )
    .await
    .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["recordsFiltered"], 1);
    assert_eq!(body["data"][0]["username"], "Eve");

    let r = table(cookie.clone(), vec![("start", "2"), ("length", "2")]).await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["recordsFiltered"], 3);

    // Without X-Requested-With the admin UI answers HTML.
    let r = h
        .http
        .post(h.u("/admin-cabinet/extensions/getNewRecords"))
        .header("Cookie", cookie.unwrap())
        .form(&[("draw", "1")])
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn both_generations_share_one_store() {
    let h = start_default().await;
    let legacy = h.create(json!({"user_username": "Legacy Lena", "mobile_number": "79990000005"})).await;
    let v3 = h.v3_create("250", "Modern Max").await;

    let (_, body) = h.v3(Method::GET, "/pbxcore/api/v3/employees", None, None).await;
    let items = body["data"]["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let lena = items.iter().find(|i| i["user_username"] == "Legacy Lena").unwrap();
    assert_eq!(lena["id"].to_string(), legacy["user_id"].as_str().unwrap());
    assert_eq!(lena["mobile"], "79990000005");

    let dump = h.sim.dump();
    let max = dump.as_array().unwrap().iter().find(|r| r["user_id"] == v3["id"]).unwrap();
    let rec = h.get_record(max["id"].as_str().unwrap()).await;
    assert_eq!(rec["user_username"], "Modern Max");
    assert_eq!(rec["number"], "250");
    assert_eq!(rec["public_access"], "1");
}

#[tokio::test]
async fn simulator_trait_seed_tamper_remove() {
    let sim = MikoPbxSim::new(MikoPbxConfig::default());
    let id = sim
        .seed(&json!({"number": "240", "user_username": "Seeded", "sip_secret": "s3cret-Seed", "mobile_number": "79990000006"}))
        .unwrap();
    assert!(matches!(
        sim.seed(&json!({"number": "240", "user_username": "Twin"})),
        Err(SimError::Invalid(_))
    ));
    assert!(matches!(sim.seed(&json!({"user_username": "No number"})), Err(SimError::Invalid(_))));

    let patch = json!({"sip_secret": "drifted", "user_email": "x@example.com", "mobile_number": "", "fwd_ringlength": 20});
    sim.tamper(&id, patch.as_object().unwrap()).unwrap();
    let dump = sim.dump();
    let rec = &dump[0];
    assert_eq!(rec["id"], id.as_str());
    assert_eq!(rec["sip_secret"], "drifted");
    assert_eq!(rec["user_email"], "x@example.com");
    assert_eq!(rec["mobile_number"], "");
    assert_eq!(rec["fwd_ringlength"], 20);
    assert!(matches!(sim.tamper("999", &Map::new()), Err(SimError::NotFound(_))));
    let bad = json!({"sip_uniqid": "SIP-PHONE-00000000"});
    assert!(matches!(sim.tamper(&id, bad.as_object().unwrap()), Err(SimError::Invalid(_))));

    sim.remove(&id).unwrap();
    assert_eq!(sim.dump(), json!([]));
    assert!(matches!(sim.remove(&id), Err(SimError::NotFound(_))));
    let creds = sim.credentials();
    for k in ["apiKey", "username", "password"] {
        assert!(!creds[k].is_empty());
    }
    assert_eq!(sim.kind(), "mikopbx");
}

// ---------------------------------------------------------------------------------------
// The seed's own script

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_python_script_creates_50_accounts() {
    let check = tokio::process::Command::new("python3").args(["-c", "import faker, requests"]).output().await;
    match check {
        Err(e) => panic!("python3 is required for this test (CI installs it): {e}"),
        Ok(out) => assert!(
            out.status.success(),
            "python3 lacks faker/requests; run `pip install faker requests`: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    let h = start_default().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mikopbx_seed_script.py");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("python3")
            .arg(script)
            .env("MIKOPBX_URL", &h.url)
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .output(),
    )
    .await
    .expect("the seed script did not finish in 180 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "script failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let created: Vec<(String, String, String)> = stdout
        .lines()
        .filter(|l| l.starts_with("Created user "))
        .map(|l| {
            let rest = l.split_once(" -> Username: ").unwrap().1;
            let (name, rest) = rest.rsplit_once(", Email: ").unwrap();
            let (email, mobile) = rest.rsplit_once(", Mobile: ").unwrap();
            (name.to_string(), email.to_string(), mobile.to_string())
        })
        .collect();
    assert_eq!(created.len(), 50, "{stdout}");

    let dump = h.sim.dump();
    let accounts = dump.as_array().unwrap();
    assert_eq!(accounts.len(), 50);
    let mut held: Vec<(String, String, String)> = accounts
        .iter()
        .map(|a| {
            assert_eq!(a["fwd_forwarding"], a["mobile_number"]);
            assert_eq!(a["fwd_forwardingonbusy"], a["mobile_number"]);
            (
                a["user_username"].as_str().unwrap().to_string(),
                a["user_email"].as_str().unwrap().to_string(),
                a["mobile_number"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut printed = created.clone();
    held.sort();
    printed.sort();
    assert_eq!(held, printed);
    let mut numbers: Vec<&str> = accounts.iter().map(|a| a["number"].as_str().unwrap()).collect();
    numbers.dedup();
    assert_eq!(numbers.len(), 50);
    assert_eq!(numbers[0], "201");
    assert_eq!(numbers[49], "250");
}
