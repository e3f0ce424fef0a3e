//! The Telphin simulator against the seed document's fields and the documented rules.

use std::{sync::Arc, time::Duration};

use reqwest::{Client, Response};
use serde_json::{Map, Value, json};
use switchboard::sim::{
    self, Running, Simulator,
    telphin::{TelphinConfig, TelphinSim},
};

const USERS: &str = "/api/ver1.0/client/@me/user/extension/";
const EXTS: &str = "/api/ver1.0/client/@me/extension/";

struct Fx {
    run: Running,
    sim: Arc<TelphinSim>,
    http: Client,
    token: String,
}

impl Fx {
    async fn new(cfg: TelphinConfig) -> Fx {
        let sim = TelphinSim::new(cfg);
        let run = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut fx = Fx { run, sim, http: crate::http().build().unwrap(), token: String::new() };
        fx.token = fx.new_token().await;
        fx
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.run.url)
    }

    async fn token_response(&self, form: &[(&str, &str)]) -> Response {
        self.http.post(self.url("/oauth/token")).form(form).send().await.unwrap()
    }

    async fn new_token(&self) -> String {
        let cfg = self.sim.config();
        let r = self
            .token_response(&[
                ("grant_type", "client_credentials"),
                ("client_id", &cfg.client_id),
                ("client_secret", &cfg.client_secret),
            ])
            .await;
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(&self.token).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(self.url(path)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.put(self.url(path)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn delete(&self, path: &str) -> (u16, String) {
        let r = self.http.delete(self.url(path)).bearer_auth(&self.token).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn dialect(&self, patch: Value) {
        let Value::Object(patch) = patch else { panic!("a dialect patch is an object") };
        self.sim.set_dialect(&patch).unwrap();
    }

    async fn extension(&self, name: &str) -> u64 {
        let (s, v) = self.post(EXTS, json!({"name": name, "type": "phone", "status": "active"})).await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_u64().unwrap()
    }

    async fn list_logins(&self, query: &str) -> Vec<String> {
        let (s, v) = self.get(&format!("{USERS}?{query}")).await;
        assert_eq!(s, 200, "{query}: {v}");
        v.as_array().unwrap().iter().map(|u| u["login"].as_str().unwrap().to_string()).collect()
    }
}

/// The seed's create fields, all of them.
fn seed_user(extension_id: u64, login: &str) -> Value {
    json!({
        "comment": "managed-by: switchboard",
        "status": "active",
        "name": "Ivanov Peter",
        "access": "full",
        "extension_id": extension_id,
        "extra_params": "{\"switchboard\":{\"employee\":\"default/ivanov\"}}",
        "timezone": "Europe/Moscow",
        "login": login,
        "password": "s3cret-pass",
        "email": "ivanov@example.com",
        "email_notify": false
    })
}

#[tokio::test]
async fn token_flow_and_expiry() {
    let fx =
        Fx::new(TelphinConfig { token_lifetime: Duration::from_millis(300), ..TelphinConfig::default() })
            .await;
    let cfg = fx.sim.config().clone();
    let r = fx
        .token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cfg.client_id),
            ("client_secret", "wrong"),
        ])
        .await;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = fx.token_response(&[("grant_type", "password"), ("client_id", &cfg.client_id)]).await;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    // JSON instead of a form is refused.
    let r = fx
        .http
        .post(fx.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": cfg.client_id,
                      "client_secret": cfg.client_secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let r = fx
        .token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
        ])
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].is_u64());
    let token = v["access_token"].as_str().unwrap();
    let call = |t: Option<String>| {
        let mut req = fx.http.get(fx.url(USERS));
        if let Some(t) = t {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(call(Some(token.into())).await.unwrap().status().as_u16(), 200);
    assert_eq!(call(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(call(Some("bogus".into())).await.unwrap().status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = call(Some(token.into())).await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "expired token");
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());
    let fresh = fx.new_token().await;
    assert_eq!(call(Some(fresh.clone())).await.unwrap().status().as_u16(), 200);
    fx.sim.expire_tokens();
    assert_eq!(call(Some(fresh)).await.unwrap().status().as_u16(), 401);
}

#[tokio::test]
async fn create_extension_then_user_with_seed_fields() {
    let fx = Fx::new(TelphinConfig::default()).await;
    let (s, ext) = fx
        .post(EXTS, json!({"name": "100", "type": "phone", "status": "active", "label": "Ivanov Peter"}))
        .await;
    assert_eq!(s, 201, "{ext}");
    assert_eq!(ext["name"], "0001*100");
    assert_eq!(ext["domain"], "sip.sim.test");
    assert!(ext["create_date"].as_str().unwrap().len() == 19);
    let ext_id = ext["id"].as_u64().unwrap();

    let body = seed_user(ext_id, "ivanov");
    let (s, u) = fx.post(USERS, body.clone()).await;
    assert_eq!(s, 201, "{u}");
    for k in
        ["comment", "status", "name", "access", "extension_id", "extra_params", "timezone", "login", "email"]
    {
        assert_eq!(u[k], body[k], "field {k}");
    }
    assert!(u["id"].is_u64());
    assert!(u.get("password").is_none() && u.get("email_notify").is_none());
    let id = u["id"].as_u64().unwrap();
    let (s, got) = fx.get(&format!("{USERS}{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(got, u);
    // Numeric client id works like @me.
    let (s, _) = fx.get(&format!("/api/ver1.0/client/10001/user/extension/{id}")).await;
    assert_eq!(s, 200);
    let dump = fx.sim.dump();
    assert_eq!(dump[0]["password"], "s3cret-pass");
    assert_eq!(dump[0]["extra_params"], body["extra_params"]);

    // Defaults when the optional fields are absent.
    let (s, u) = fx
        .post(
            USERS,
            json!({"name": "N", "extension_id": ext_id, "login": "second",
                   "password": "secret1", "email": "n@example.com"}),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    assert_eq!(u["status"], "active");
    assert_eq!(u["access"], "full");
    assert!(u["comment"].is_null() && u["extra_params"].is_null());
}

/// Uniqueness is checked through indexes that creates keep and other changes drop:
/// they must follow renames, deletions and tampering like a scan of the table would.
#[tokio::test]
async fn uniqueness_follows_every_change() {
    let fx = Fx::new(TelphinConfig::default()).await;
    fx.dialect(json!({"error_statuses": true}));
    let ext = fx.extension("101").await;
    let (_, u) = fx.post(USERS, seed_user(ext, "anna")).await;
    let id = u["id"].as_u64().unwrap();
    let taken = |(s, v): (u16, Value)| s == 400 && v["status"] == "already_exists";

    assert!(taken(fx.post(USERS, seed_user(ext, "ANNA")).await));
    // A login changed by hand (the API cannot change one): the old one is free, the new
    // one taken; and once the user is deleted, that one is free too.
    let mut patch = serde_json::Map::new();
    patch.insert("login".into(), json!("bea"));
    fx.sim.tamper(&id.to_string(), &patch).unwrap();
    assert!(taken(fx.post(USERS, seed_user(ext, "Bea")).await));
    let (s, v) = fx.post(USERS, seed_user(ext, "anna")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(fx.delete(&format!("{USERS}{id}")).await.0, 204);
    let (s, v) = fx.post(USERS, seed_user(ext, "bea")).await;
    assert_eq!(s, 201, "{v}");

    // A deleted number's name can be made again; a live one cannot.
    let spare = fx.extension("102").await;
    let again = |name: &str| json!({"name": name, "type": "phone", "status": "active"});
    assert!(taken(fx.post(EXTS, again("102")).await));
    assert_eq!(fx.delete(&format!("{EXTS}{spare}")).await.0, 204);
    assert_eq!(fx.post(EXTS, again("102")).await.0, 201);
    assert!(taken(fx.post(EXTS, again("102")).await));
}

#[tokio::test]
async fn user_validation() {
    let fx = Fx::new(TelphinConfig::default()).await;
    fx.dialect(json!({"error_statuses": true}));
    let ext = fx.extension("101").await;
    let foreign = fx.sim.seed_extension(Some(99999), &json!({"name": "101"})).unwrap();
    assert_eq!(fx.post(USERS, seed_user(ext, "first")).await.0, 201);

    let (s, v) = fx.post(USERS, seed_user(424242, "x1")).await;
    assert_eq!((s, v["status"].as_str()), (400, Some("extension_not_found")));
    let (s, _) = fx.post(USERS, seed_user(foreign, "x2")).await;
    assert_eq!(s, 400, "extension of another client");
    let (s, v) = fx.post(USERS, seed_user(ext, "FIRST")).await;
    assert_eq!((s, v["status"].as_str()), (400, Some("already_exists")), "{v}");

    for k in ["name", "extension_id", "login", "password", "email"] {
        let mut b = seed_user(ext, "x3");
        b.as_object_mut().unwrap().remove(k);
        let (s, v) = fx.post(USERS, b).await;
        assert_eq!(s, 400, "missing {k}");
        assert!(v["message"].as_str().unwrap().contains(k), "{v}");
    }
    for (k, bad) in [
        ("status", json!("enabled")),
        ("access", json!("admin")),
        ("extension_id", json!(ext.to_string())),
        ("email", json!("not-an-email")),
        ("password", json!("abc")),
        ("login", json!("a b")),
        ("extra_params", json!({"k": "v"})),
        ("email_notify", json!("yes")),
        ("bogus", json!(1)),
    ] {
        let mut b = seed_user(ext, "x4");
        b[k] = bad;
        let (s, v) = fx.post(USERS, b).await;
        assert_eq!(s, 400, "{k}: {v}");
        assert!(v["message"].is_string());
    }
    assert!(fx.sim.dump().as_array().unwrap().len() == 1);

    let (s, v) = fx.get("/api/ver1.0/client/777/user/extension/").await;
    assert_eq!((s, v["status"].as_str()), (404, Some("client_not_found")));
    let r = fx
        .http
        .post(fx.url(USERS))
        .bearer_auth(&fx.token)
        .body(seed_user(ext, "x5").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "no JSON content type");

    // Without the undocumented statuses, the same refusals say only their message.
    fx.dialect(json!({"error_statuses": false}));
    for body in [seed_user(ext, "FIRST"), seed_user(424242, "x6")] {
        let (s, v) = fx.post(USERS, body).await;
        assert_eq!(s, 400);
        assert!(v.get("status").is_none() && v["message"].is_string(), "{v}");
    }
    let (s, v) = fx.get("/api/ver1.0/client/777/user/extension/").await;
    assert_eq!((s, v["status"].as_str()), (404, Some("client_not_found")), "documented: kept");
}

#[tokio::test]
async fn list_filters_and_pages() {
    let fx = Fx::new(TelphinConfig::default()).await;
    let e1 = fx.extension("201").await;
    let e2 = fx.extension("202").await;
    for (ext, login, status, access) in [
        (e1, "anna", "active", "full"),
        (e1, "boris", "blocked", "read_only"),
        (e2, "clara", "active", "read_only"),
    ] {
        let mut b = seed_user(ext, login);
        b["status"] = json!(status);
        b["access"] = json!(access);
        assert_eq!(fx.post(USERS, b).await.0, 201);
    }
    assert_eq!(fx.list_logins("").await, vec!["anna", "boris", "clara"]);
    assert_eq!(fx.list_logins("login=anna").await, vec!["anna"]);
    assert_eq!(fx.list_logins("login=anna&login=clara").await, vec!["anna", "clara"]);
    assert_eq!(fx.list_logins("login[]=boris&login[]=clara").await, vec!["boris", "clara"]);
    assert_eq!(fx.list_logins("status=blocked").await, vec!["boris"]);
    assert_eq!(fx.list_logins(&format!("extension_id={e1}")).await, vec!["anna", "boris"]);
    assert_eq!(fx.list_logins(&format!("extension_id={e1}&access=read_only")).await, vec!["boris"]);
    assert_eq!(fx.list_logins("email=ivanov%40example.com&name=Ivanov+Peter").await.len(), 3);
    assert_eq!(fx.list_logins("comment=managed-by%3A+switchboard").await.len(), 3);
    assert!(fx.list_logins("status=nothing").await.is_empty());
    let first_id = fx.sim.dump()[0]["id"].as_u64().unwrap();
    assert_eq!(fx.list_logins(&format!("id={first_id}")).await, vec!["anna"]);
    assert_eq!(fx.list_logins("per_page=2").await, vec!["anna", "boris"]);
    assert_eq!(fx.list_logins("per_page=2&page=2").await, vec!["clara"]);
    assert!(fx.list_logins("per_page=2&page=3").await.is_empty());
    for bad in ["extra_params=x", "loginn=anna", "id=abc", "page=0", "per_page=100000"] {
        let (s, _) = fx.get(&format!("{USERS}?{bad}")).await;
        assert_eq!(s, 400, "{bad}");
    }
    // Extension list: type/name filters and the prefixless name.
    fx.post(EXTS, json!({"name": "0001*300", "type": "queue"})).await;
    let (s, v) = fx.get(&format!("{EXTS}?type=phone")).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = fx.get(&format!("{EXTS}?name=0001*300")).await;
    assert_eq!(v[0]["type"], "queue");
    assert_eq!(v[0]["status"], "blocked", "documented default");
    // The name filter matches the stored name; in the relative dialect also the number.
    let (_, v) = fx.get(&format!("{EXTS}?name=300")).await;
    assert_eq!(v, json!([]), "exact: the bare number is not the name");
    fx.dialect(json!({"name_filter": "relative"}));
    let (_, v) = fx.get(&format!("{EXTS}?name=300")).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["name"], "0001*300");
}

#[tokio::test]
async fn extension_rules() {
    let fx = Fx::new(TelphinConfig::default()).await;
    let id = fx.extension("150").await;
    for bad in [
        json!({"name": "150"}),
        json!({"name": "15"}),
        json!({"name": "9999*151"}),
        json!({"name": "151", "type": "pager"}),
        json!({"type": "phone"}),
    ] {
        assert_eq!(fx.post(EXTS, bad.clone()).await.0, 400, "{bad}");
    }
    let path = format!("{EXTS}{id}");
    let (s, v) = fx.put(&path, json!({"label": "New label", "name": "0001*150"})).await;
    assert_eq!((s, v["label"].as_str()), (200, Some("New label")));
    assert_eq!(fx.put(&path, json!({"name": "151"})).await.0, 400, "rename");
    // An extension with users cannot be deleted before them.
    let (_, u) = fx.post(USERS, seed_user(id, "holder")).await;
    let (s, v) = fx.delete(&path).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(fx.delete(&format!("{USERS}{}", u["id"])).await.0, 204);
    let (s, body) = fx.delete(&path).await;
    assert_eq!((s, body.as_str()), (204, ""));
    assert_eq!(fx.get(&path).await.0, 404);
}

#[tokio::test]
async fn update_and_delete_user() {
    let fx = Fx::new(TelphinConfig::default()).await;
    let e1 = fx.extension("301").await;
    let e2 = fx.extension("302").await;
    let (_, u) = fx.post(USERS, seed_user(e1, "petrov")).await;
    let path = format!("{USERS}{}", u["id"]);
    let (s, v) = fx
        .put(
            &path,
            json!({"name": "Petrov Ivan", "status": "blocked", "extension_id": e2,
                            "password": "n3w-pass", "comment": null}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Petrov Ivan");
    assert_eq!(v["status"], "blocked");
    assert_eq!(v["extension_id"], e2);
    assert!(v["comment"].is_null());
    assert_eq!(v["login"], "petrov");
    assert_eq!(v["email"], "ivanov@example.com", "partial update keeps the rest");
    assert_eq!(fx.sim.dump()[0]["password"], "n3w-pass");
    for bad in [
        json!({"login": "other"}),
        json!({"extension_id": 999_999}),
        json!({"access": "root"}),
        json!({"name": null}),
        json!({"email_notify": true}),
    ] {
        assert_eq!(fx.put(&path, bad.clone()).await.0, 400, "{bad}");
    }
    assert_eq!(fx.put(&format!("{USERS}123"), json!({"name": "x"})).await.0, 404);

    let (s, body) = fx.delete(&path).await;
    assert_eq!((s, body.as_str()), (204, ""));
    let (s, v) = fx.get(&path).await;
    assert_eq!(s, 404);
    assert!(v["message"].is_string());
    assert_eq!(fx.delete(&path).await.0, 404);
    assert!(fx.list_logins("").await.is_empty());
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let fx = Fx::new(TelphinConfig {
        hourly_quota: 4,
        quota_window: Duration::from_millis(1500),
        ..TelphinConfig::default()
    })
    .await;
    let header = |r: &Response, k: &str| -> u64 {
        r.headers().get(k).unwrap_or_else(|| panic!("missing {k}")).to_str().unwrap().parse().unwrap()
    };
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let r = fx.http.get(fx.url(USERS)).bearer_auth(&fx.token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), 4);
        assert!((1..=2).contains(&header(&r, "x-ratelimit-reset")));
        remaining.push(header(&r, "x-ratelimit-remaining"));
    }
    assert_eq!(remaining, vec![3, 2, 1, 0]);
    let r = fx.http.get(fx.url(USERS)).bearer_auth(&fx.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "rate_limit_exceeded");
    // Unauthenticated answers and the token endpoint carry the headers too.
    let r = fx.http.get(fx.url(USERS)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(header(&r, "x-ratelimit-limit"), 4);
    let cfg = fx.sim.config().clone();
    let r = fx
        .token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
        ])
        .await;
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = fx.http.get(fx.url(USERS)).bearer_auth(&fx.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "a new window");
    assert_eq!(header(&r, "x-ratelimit-remaining"), 3);
}

#[tokio::test]
async fn oauth_per_second_limit() {
    let fx = Fx::new(TelphinConfig { oauth_per_second: 3, ..TelphinConfig::default() }).await;
    // Fx::new used one; two more fit in the same second, the next does not.
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = fx.token_response(&[("grant_type", "client_credentials")]).await;
        codes.push(r.status().as_u16());
    }
    assert!(codes.contains(&429), "{codes:?}");
}

#[tokio::test]
async fn simulator_trait() {
    let fx = Fx::new(TelphinConfig::default()).await;
    assert_eq!(fx.sim.kind(), "telphin");
    let creds = fx.sim.credentials();
    assert_eq!(creds["clientId"], "sim-telphin-app");
    assert!(creds.contains_key("clientSecret"));
    let a = fx
        .sim
        .seed(&json!({"name": "Seeded", "extension": "555", "login": "seeded",
                      "password": "secret9", "email": "s@example.com"}))
        .unwrap();
    assert!(
        fx.sim
            .seed(&json!({"name": "Dup", "extension": "555", "login": "SEEDED",
                          "password": "secret9", "email": "s@example.com"}))
            .is_err()
    );
    let b = fx
        .sim
        .seed(&json!({"name": "Other", "extension": "555", "login": "other",
                      "password": "secret9", "email": "o@example.com"}))
        .unwrap();
    let dump = fx.sim.dump();
    assert_eq!(dump[0]["id"].to_string(), a);
    assert_eq!(dump[1]["id"].to_string(), b);
    assert_eq!(dump[0]["extension_id"], dump[1]["extension_id"]);
    let mut patch = Map::new();
    patch.insert("extra_params".into(), json!("tampered"));
    fx.sim.tamper(&a, &patch).unwrap();
    let (_, v) = fx.get(&format!("{USERS}{a}")).await;
    assert_eq!(v["extra_params"], "tampered");
    assert!(fx.sim.tamper("1", &patch).is_err());
    fx.sim.remove(&a).unwrap();
    assert!(fx.sim.remove(&a).is_err());
    assert_eq!(fx.list_logins("").await, vec!["other"]);
}

/// Each dialect serves what it says: page sizes, list shapes, unset free fields, gzip, the
/// quota; and the dialect endpoint refuses what is not a setting.
#[tokio::test]
async fn dialects_serve_each_reading() {
    let fx = Fx::new(TelphinConfig::default()).await;
    let ext = fx.extension("101").await;
    for i in 0..25 {
        assert_eq!(fx.post(USERS, seed_user(ext, &format!("user{i:02}"))).await.0, 201);
    }
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    let (_, v) = fx.get(&format!("{USERS}?per_page=10")).await;
    assert_eq!(count(&v), 10, "honoured");
    fx.dialect(json!({"per_page": "ignored"}));
    let (_, v) = fx.get(&format!("{USERS}?per_page=10")).await;
    assert_eq!(count(&v), 25, "ignored: the server's pages of 50");
    fx.dialect(json!({"per_page": "capped"}));
    let (_, v) = fx.get(&format!("{USERS}?per_page=100")).await;
    assert_eq!(count(&v), 20, "capped at 20");
    let (_, v) = fx.get(&format!("{USERS}?per_page=100&page=2")).await;
    assert_eq!(count(&v), 5);
    fx.dialect(json!({"per_page": "refused"}));
    assert_eq!(fx.get(&format!("{USERS}?per_page=10")).await.0, 400);
    assert_eq!(count(&fx.get(&format!("{USERS}?page=1")).await.1), 25);

    fx.dialect(json!({"per_page": "honoured", "list_shape": "wrapped"}));
    let (_, v) = fx.get(&format!("{USERS}?per_page=10&page=3")).await;
    assert_eq!(v["total_count"], 25);
    assert_eq!(count(&v["result"]), 5);
    let (_, v) = fx.get(EXTS).await;
    assert_eq!(v["total_count"], 1);

    let mut plain_user = seed_user(ext, "plain");
    plain_user.as_object_mut().unwrap().remove("extra_params");
    assert_eq!(fx.post(USERS, plain_user).await.0, 201);
    fx.dialect(json!({"list_shape": "bare", "unset_extra_params": "text_null"}));
    let (_, v) = fx.get(&format!("{USERS}?login=plain")).await;
    assert_eq!(v[0]["extra_params"], "null");
    fx.dialect(json!({"unset_extra_params": "absent"}));
    let (_, v) = fx.get(&format!("{USERS}?login=plain")).await;
    assert!(v[0].get("extra_params").is_none(), "{v}");
    let stored = fx.sim.dump().as_array().unwrap().iter().find(|u| u["login"] == "plain").cloned().unwrap();
    assert!(stored["extra_params"].is_null(), "stored as nothing, whatever is shown");

    // gzip: the test client asks for it (and decodes); a request that does not is refused
    // in the strict dialect.
    let plain = || {
        fx.http
            .get(fx.url(USERS))
            .bearer_auth(&fx.token)
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .send()
    };
    let r = plain().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let raw = crate::http().no_gzip().build().unwrap();
    let r = raw
        .get(fx.url(USERS))
        .bearer_auth(&fx.token)
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip stream");
    fx.dialect(json!({"gzip": "off"}));
    let r = raw
        .get(fx.url(USERS))
        .bearer_auth(&fx.token)
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    fx.dialect(json!({"gzip": "required"}));
    assert_eq!(plain().await.unwrap().status().as_u16(), 400);
    assert_eq!(fx.get(USERS).await.0, 200, "the test client sends Accept-Encoding: gzip");

    // The quota is a dialect setting too (its number is not published).
    fx.dialect(json!({"gzip": "when_asked", "quota": 3, "quota_window_secs": 60}));
    let r = fx.http.get(fx.url(USERS)).bearer_auth(&fx.token).send().await.unwrap();
    assert_eq!(r.headers()["x-ratelimit-limit"], "3");

    for bad in [json!({"per_page": "sometimes"}), json!({"colour": "blue"}), json!({"quota_window_secs": 0})]
    {
        let Value::Object(patch) = bad.clone() else { unreachable!() };
        assert!(fx.sim.set_dialect(&patch).is_err(), "{bad}");
    }
    let r =
        fx.http.put(fx.url("/_sim/dialect")).json(&json!({"name_filter": "relative"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["name_filter"], "relative");
}
