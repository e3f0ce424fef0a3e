//! The APIO simulator against the seed document's examples and the documented rules.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::{Client, Response};
use serde_json::{Map, Value, json};
use switchboard::sim::{
    self, Running, Simulator,
    apio::{ApioConfig, ApioSim},
};

const GROUP: &str = "/api/v1/tenants/foo/groups/foogroup";

struct Fx {
    run: Running,
    sim: Arc<ApioSim>,
    http: Client,
    token: String,
}

impl Fx {
    async fn new(cfg: ApioConfig) -> Fx {
        let sim = ApioSim::new(cfg);
        let run = sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let token = sim.config().m2m_token.clone();
        Fx { run, sim, http: crate::http().build().unwrap(), token }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.run.url)
    }

    async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(&self.token).send().await.unwrap()
    }

    async fn list(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(&format!("{GROUP}/users/")))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn list_ids(&self, body: Value) -> Vec<String> {
        let (status, v) = self.list(body.clone()).await;
        assert_eq!(status, 200, "{body} -> {v}");
        ids(&v)
    }

    async fn create(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("{GROUP}/users/")))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn put(&self, user_id: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(&format!("{GROUP}/users/{user_id}/")))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn login(&self) -> Value {
        let cfg = self.sim.config();
        let r = self
            .http
            .post(self.url("/api/v01/auth/login"))
            .json(&json!({"username": cfg.username, "password": cfg.password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    async fn status_with(&self, token: &str) -> (u16, Value) {
        let r = self.http.get(self.url(&format!("{GROUP}/users/"))).bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        let r =
            self.http.get(self.url("/api/v01/auth/access_token")).bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["users"].as_array().unwrap().iter().map(|u| u["userId"].as_str().unwrap().to_string()).collect()
}

fn message(v: &Value) -> &str {
    v["errors"][0]["message"].as_str().unwrap_or("")
}

fn seed_users(sim: &ApioSim) {
    for u in [
        json!({"userId": "TestAlpha@example.com", "firstName": "Tom", "lastName": "Smith",
               "extension": "1234", "emailAddress": "tom.smith@Example.com",
               "phoneNumber": "+3225126777"}),
        json!({"userId": "testbeta@example.com", "firstName": "john", "lastName": "doe",
               "extension": "4321", "emailAddress": "", "phoneNumber": "+3225125757",
               "department": {"departmentName": "sales"}}),
        json!({"userId": "gamma@example.com", "firstName": "Anna", "lastName": "Smithers",
               "extension": "1235",
               "trunkEndpoint": {"trunkGroupDeviceEndpoint": {"name": "tg1", "linePort": "gamma@example.com"}}}),
        json!({"userId": "TestHidden@example.com", "firstName": "svc", "lastName": "hidden",
               "hidden": true}),
    ] {
        sim.seed(&u).unwrap();
    }
}

fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT shape");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["typ"], "JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn login_refresh_and_m2m() {
    let fx = Fx::new(ApioConfig::default()).await;
    // Wrong password and schema violations.
    let r = fx
        .http
        .post(fx.url("/api/v01/auth/login"))
        .json(&json!({"username": "sim-admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string());
    let cfg = fx.sim.config().clone();
    let r = fx
        .http
        .post(fx.url("/api/v01/auth/login"))
        .json(&json!({"username": cfg.username, "password": cfg.password, "extra": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let tokens = fx.login().await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(tokens["token"], cfg.m2m_token);
    let claims = jwt_claims(&access);
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now() && exp <= now() + cfg.access_token_lifetime.as_secs() + 1);
    assert!(jwt_claims(&refresh)["exp"].as_u64().unwrap() > exp);

    assert_eq!(fx.status_with(&access).await.0, 200);
    assert_eq!(fx.status_with(&cfg.m2m_token).await.0, 200);
    let (s, v) = fx.status_with(&refresh).await;
    assert_eq!(s, 401, "a refresh token is not an API token");
    assert!(v["error"].is_string());
    assert_eq!(fx.status_with("garbage").await.0, 401);
    let r = fx.http.get(fx.url(&format!("{GROUP}/users/"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string(), "documented 401 body: {v}");

    // Refresh: only with the refresh token; a far-from-expiry refresh token is not renewed.
    let (s, v) = fx.refresh(&refresh).await;
    assert_eq!(s, 200);
    assert!(v.get("refresh_token").is_none());
    let new_access = v["access_token"].as_str().unwrap();
    assert_eq!(fx.status_with(new_access).await.0, 200);
    assert_eq!(fx.refresh(&access).await.0, 401);
    assert_eq!(fx.refresh(&cfg.m2m_token).await.0, 401);
}

#[tokio::test]
async fn expired_access_token_then_refresh() {
    let fx = Fx::new(ApioConfig {
        access_token_lifetime: Duration::from_millis(300),
        refresh_renewal_window: Duration::from_secs(48 * 3600),
        ..ApioConfig::default()
    })
    .await;
    let tokens = fx.login().await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(fx.status_with(access).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, v) = fx.status_with(access).await;
    assert_eq!(s, 401);
    assert!(v["error"].is_string());
    let (s, v) = fx.refresh(refresh).await;
    assert_eq!(s, 200);
    // Close to expiry (renewal window longer than the lifetime): a new refresh token too.
    assert!(v["refresh_token"].is_string());
    assert_eq!(fx.status_with(v["access_token"].as_str().unwrap()).await.0, 200);

    // expire_access_tokens keeps refresh tokens; expire_tokens does not; M2M survives both.
    let tokens = fx.login().await;
    fx.sim.expire_access_tokens();
    assert_eq!(fx.status_with(tokens["access_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(fx.refresh(tokens["refresh_token"].as_str().unwrap()).await.0, 200);
    fx.sim.expire_tokens();
    assert_eq!(fx.refresh(tokens["refresh_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(fx.status_with(&fx.sim.config().m2m_token).await.0, 200);
    let again = fx.login().await;
    assert_eq!(fx.status_with(again["access_token"].as_str().unwrap()).await.0, 200);
}

#[tokio::test]
async fn seed_create_example_generates_user_id_and_password() {
    let fx = Fx::new(ApioConfig::default()).await;
    // The seed's create request, verbatim.
    let (s, v) = fx
        .create(json!({
           "firstName": "tom",
           "lastName": "smith",
           "extension": "1234",
           "emailAddress": "test_email@netaxis.be",
           "phoneNumber": "+3225126777"
        }))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["userId"].as_str().unwrap().to_string();
    let rnd = id
        .strip_prefix("foogroup_u")
        .and_then(|r| r.strip_suffix("@example.com"))
        .unwrap_or_else(|| panic!("{id} does not follow {{{{group_id}}}}_u{{{{RND_4}}}}@{{{{domain}}}}"));
    assert!(rnd.len() == 4 && rnd.chars().all(|c| c.is_ascii_digit()), "{id}");
    assert!(v.get("password").is_none());
    assert_eq!(v["cliFirstName"], "tom");
    assert_eq!(v["language"], "English");

    let r = fx.get(&format!("{GROUP}/users/{id}")).await;
    assert_eq!(r.status().as_u16(), 200);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["extension"], "1234");
    assert_eq!(got["phoneNumber"], "+3225126777");
    assert!(got.get("password").is_none());

    // A password was generated following MINIMUM_PASSWORD_RULES.END_USER.
    let dump = fx.sim.dump();
    let pw = dump[0]["password"].as_str().unwrap();
    assert!(pw.len() >= 8);
    assert!(pw.chars().any(|c| c.is_ascii_uppercase()));
    assert!(pw.chars().any(|c| c.is_ascii_lowercase()));
    assert!(pw.chars().any(|c| c.is_ascii_digit()));
    assert!(pw.chars().any(|c| !c.is_alphanumeric()));

    // The list shows it in the documented item shape.
    let (s, list) = fx.list(json!({})).await;
    assert_eq!(s, 200);
    let item = &list["users"][0];
    assert_eq!(item["userId"], id);
    assert_eq!(item["inTrunkGroup"], false);
    assert_eq!(item["emailAddress"], "test_email@netaxis.be");

    // A given id without domain gets the system default domain.
    let (s, v) = fx
        .create(json!({"userId": "jdoe01", "firstName": "John", "lastName": "Doe",
                       "password": "Secret123"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["userId"], "jdoe01@example.com");
}

#[tokio::test]
async fn seed_list_examples() {
    let fx = Fx::new(ApioConfig::default()).await;
    seed_users(&fx.sim);
    // "List the users (without service users) ... case sensitive username containing".
    assert_eq!(
        fx.list_ids(json!({"sensitiveUserNameContains": "Test"})).await,
        vec!["TestAlpha@example.com"]
    );
    // "List all the users ...": hidden users included.
    assert_eq!(
        fx.list_ids(json!({"sensitiveUserNameContains": "Test", "includeHiddenUsers": true})).await,
        vec!["TestAlpha@example.com", "TestHidden@example.com"]
    );
    let (_, v) = fx.list(json!({})).await;
    let find = |id: &str| v["users"].as_array().unwrap().iter().find(|u| u["userId"] == id).unwrap().clone();
    let beta = find("testbeta@example.com");
    assert_eq!(beta["department"]["departmentName"], "sales");
    assert_eq!(beta["emailAddress"], "");
    let gamma = find("gamma@example.com");
    assert_eq!(gamma["inTrunkGroup"], true);
}

#[tokio::test]
async fn search_criteria_semantics() {
    let fx = Fx::new(ApioConfig::default()).await;
    seed_users(&fx.sim);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"sensitiveUserIdStarts": "Test"}), vec!["TestAlpha@example.com"]),
        (json!({"insensitiveUserIdStarts": "test"}), vec!["TestAlpha@example.com", "testbeta@example.com"]),
        (json!({"sensitiveUserIdEquals": "gamma@example.com"}), vec!["gamma@example.com"]),
        (json!({"sensitiveUserIdEquals": "GAMMA@example.com"}), vec![]),
        (json!({"insensitiveUserIdEquals": "GAMMA@EXAMPLE.COM"}), vec!["gamma@example.com"]),
        (json!({"sensitiveUserLastNameStarts": "Smith"}), vec!["TestAlpha@example.com", "gamma@example.com"]),
        (json!({"sensitiveUserLastNameEquals": "Smith"}), vec!["TestAlpha@example.com"]),
        (json!({"sensitiveUserLastNameContains": "smith"}), vec![]),
        (
            json!({"insensitiveUserLastNameContains": "SMITH"}),
            vec!["TestAlpha@example.com", "gamma@example.com"],
        ),
        (json!({"sensitiveUserFirstNameEquals": "John"}), vec![]),
        (json!({"insensitiveUserFirstNameEquals": "John"}), vec!["testbeta@example.com"]),
        (json!({"insensitivePhoneNumberContains": "5125"}), vec!["testbeta@example.com"]),
        (
            json!({"insensitivePhoneNumberStarts": "+32251"}),
            vec!["TestAlpha@example.com", "testbeta@example.com"],
        ),
        (json!({"sensitiveEmailAddressContains": "example"}), vec![]),
        (json!({"insensitiveEmailAddressContains": "example"}), vec!["TestAlpha@example.com"]),
        (json!({"insensitiveExtensionEquals": "4321"}), vec!["testbeta@example.com"]),
        (json!({"insensitiveExtensionStarts": "123"}), vec!["TestAlpha@example.com", "gamma@example.com"]),
        (json!({"insensitiveUserInTrunkGroupEquals": "TRUE"}), vec!["gamma@example.com"]),
        (json!({"sensitiveDepartmentEquals": {"departmentName": "sales"}}), vec!["testbeta@example.com"]),
        // Criteria combine with AND.
        (
            json!({"insensitiveUserLastNameStarts": "smith", "insensitiveExtensionEquals": "1235"}),
            vec!["gamma@example.com"],
        ),
    ];
    for (body, want) in cases {
        assert_eq!(fx.list_ids(body.clone()).await, want, "criteria {body}");
    }
    // The same criteria as a query string (what the vendor UI sends).
    let r = fx
        .http
        .get(fx.url(&format!("{GROUP}/users/")))
        .bearer_auth(&fx.token)
        .query(&[("insensitiveUserIdContains", "TEST"), ("responseSizeLimit", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(ids(&r.json().await.unwrap()), vec!["TestAlpha@example.com"]);
    // Unknown criterion, wrong type, and the same criterion twice (body + query) are refused.
    assert_eq!(fx.list(json!({"insensitiveGroupIdContains": "x"})).await.0, 400);
    assert_eq!(fx.list(json!({"sensitiveUserIdStarts": 3})).await.0, 400);
    assert_eq!(fx.list(json!({"includeHiddenUsers": "yes"})).await.0, 400);
    let r = fx
        .http
        .get(fx.url(&format!("{GROUP}/users/?sensitiveUserIdStarts=T")))
        .bearer_auth(&fx.token)
        .json(&json!({"sensitiveUserIdStarts": "T"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(!message(&v).is_empty());
}

#[tokio::test]
async fn response_size_limit() {
    let fx = Fx::new(ApioConfig::default()).await;
    for i in 0..5 {
        fx.sim
            .seed(&json!({"userId": format!("u{i}@example.com"), "firstName": "F", "lastName": format!("L{i}")}))
            .unwrap();
    }
    assert_eq!(fx.list_ids(json!({})).await.len(), 5);
    assert_eq!(fx.list_ids(json!({"responseSizeLimit": 2})).await, vec!["u0@example.com", "u1@example.com"]);
    assert_eq!(fx.list_ids(json!({"responseSizeLimit": 50})).await.len(), 5);
    assert_eq!(fx.list(json!({"responseSizeLimit": 0})).await.0, 400);
    assert_eq!(fx.list(json!({"responseSizeLimit": "many"})).await.0, 400);
}

#[tokio::test]
async fn password_rules_are_enforced() {
    let fx = Fx::new(ApioConfig::default()).await;
    let base = json!({"firstName": "A", "lastName": "B"});
    for bad in ["Sh0rt", "alllowercase1", "ALLUPPERCASE1"] {
        let mut body = base.clone();
        body["password"] = json!(bad);
        let (s, v) = fx.create(body).await;
        assert_eq!(s, 400, "password {bad} accepted");
        assert!(message(&v).contains("Password"), "{v}");
        assert!(!message(&v).contains(bad), "the error must not echo the password");
    }
    let mut body = base.clone();
    body["password"] = json!("GoodPassword");
    let (s, v) = fx.create(body).await;
    assert_eq!(s, 201, "{v}");
    let id = v["userId"].as_str().unwrap().to_string();
    assert_eq!(fx.put(&id, json!({"password": "weak"})).await.0, 400);
    assert_eq!(fx.put(&id, json!({"password": "Better-One"})).await.0, 200);
    assert_eq!(fx.sim.dump()[0]["password"], "Better-One");

    let r = fx.get(&format!("{GROUP}/password_rules/")).await;
    let rules: Value = r.json().await.unwrap();
    assert_eq!(rules["minLength"], 8);
    assert_eq!(rules["minUpperCaseLetters"], 1);
    assert_eq!(rules["minLowerCaseLetters"], 1);
}

#[tokio::test]
async fn duplicates_and_validation() {
    let mut tenants = BTreeMap::new();
    tenants.insert("foo".to_string(), vec!["foogroup".to_string(), "other".to_string()]);
    let fx = Fx::new(ApioConfig { tenants, ..ApioConfig::default() }).await;
    let u = json!({"userId": "dup@example.com", "firstName": "A", "lastName": "B",
                   "extension": "100", "phoneNumber": "+3221234567"});
    assert_eq!(fx.create(u.clone()).await.0, 201);
    let (s, v) = fx.create(u.clone()).await;
    assert_eq!(s, 409, "duplicate userId");
    assert!(message(&v).contains("dup@example.com"));
    let (s, _) =
        fx.create(json!({"userId": "other1", "firstName": "A", "lastName": "B", "extension": "100"})).await;
    assert_eq!(s, 409, "duplicate extension in the group");
    let (s, _) = fx
        .create(json!({"userId": "other2", "firstName": "A", "lastName": "B", "phoneNumber": "+3221234567"}))
        .await;
    assert_eq!(s, 409, "duplicate phone number");
    // The same extension in another group is fine; the same userId is not (system-wide).
    let r = fx
        .http
        .post(fx.url("/api/v1/tenants/foo/groups/other/users/"))
        .bearer_auth(&fx.token)
        .json(&json!({"userId": "other3", "firstName": "A", "lastName": "B", "extension": "100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = fx
        .http
        .post(fx.url("/api/v1/tenants/foo/groups/other/users/"))
        .bearer_auth(&fx.token)
        .json(&u)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);

    // Required fields, unknown fields, calling-line-id characters, exclusive endpoints.
    for (body, why) in [
        (json!({"firstName": "A"}), "lastName missing"),
        (json!({"firstName": "A", "lastName": "B", "email": "x@y.z"}), "unknown field"),
        (json!({"firstName": "A", "lastName": "B", "cliFirstName": "A+B"}), "cli +"),
        (json!({"firstName": "Zoë", "lastName": "B"}), "cli non-ASCII (defaulted)"),
        (json!({"firstName": "A", "lastName": "B", "extension": "12ab"}), "extension"),
        (json!({"firstName": "A", "lastName": "B", "emailAddress": "nope"}), "email"),
        (json!({"firstName": "A", "lastName": "B", "language": "Klingon"}), "language"),
        (
            json!({"firstName": "A", "lastName": "B", "trunkEndpoint": {}, "accessDeviceEndpoint": {}}),
            "exclusive endpoints",
        ),
    ] {
        let (s, v) = fx.create(body).await;
        assert_eq!(s, 400, "{why}: {v}");
        assert!(!message(&v).is_empty(), "{why}: errors shape {v}");
    }
    // Unknown tenant / group.
    for path in ["/api/v1/tenants/nope/groups/foogroup/users/", "/api/v1/tenants/foo/groups/nope/users/"] {
        let r = fx.get(path).await;
        assert_eq!(r.status().as_u16(), 404);
        let v: Value = r.json().await.unwrap();
        assert!(!message(&v).is_empty());
    }
    // A body that is not declared JSON.
    let r = fx
        .http
        .post(fx.url(&format!("{GROUP}/users/")))
        .bearer_auth(&fx.token)
        .body(r#"{"firstName":"A","lastName":"B"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
}

#[tokio::test]
async fn update_is_partial() {
    let fx = Fx::new(ApioConfig::default()).await;
    fx.sim
        .seed(&json!({"userId": "jane@example.com", "firstName": "Jane", "lastName": "Roe",
                      "extension": "200", "emailAddress": "jane@example.com"}))
        .unwrap();
    fx.sim
        .seed(
            &json!({"userId": "joe@example.com", "firstName": "Joe", "lastName": "Roe", "extension": "201"}),
        )
        .unwrap();
    let (s, v) = fx.put("jane@example.com", json!({"firstName": "Janet"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["firstName"], "Janet");
    assert_eq!(v["extension"], "200");
    assert_eq!(v["emailAddress"], "jane@example.com");
    // The UI's PUT payload works, with callingLineId aliases too.
    let (s, v) = fx
        .put(
            "jane@example.com",
            json!({"emailAddress": "j@example.com", "firstName": "Janet", "lastName": "Roe",
                   "callingLineIdFirstName": "Janet", "cliLastName": "Roe", "language": "English"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cliFirstName"], "Janet");
    // null clears an optional field; required ones cannot be cleared.
    let (s, v) = fx.put("jane@example.com", json!({"extension": null})).await;
    assert_eq!(s, 200);
    assert!(v.get("extension").is_none());
    assert_eq!(fx.put("jane@example.com", json!({"lastName": null})).await.0, 400);
    assert_eq!(fx.put("jane@example.com", json!({"extension": "201"})).await.0, 409);
    assert_eq!(fx.put("jane@example.com", json!({"userId": "x@example.com"})).await.0, 400);
    assert_eq!(fx.put("jane@example.com", json!({"bogus": 1})).await.0, 400);
    assert_eq!(fx.put("nobody@example.com", json!({"firstName": "X"})).await.0, 404);
    // GET without the trailing slash (vendor UI) and with it (docs).
    for p in ["users/jane@example.com", "users/jane@example.com/"] {
        let r = fx.get(&format!("{GROUP}/{p}")).await;
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["emailAddress"], "j@example.com");
    }
}

#[tokio::test]
async fn delete_user() {
    let fx = Fx::new(ApioConfig::default()).await;
    let id = fx.sim.seed(&json!({"firstName": "Del", "lastName": "Me"})).unwrap();
    let r =
        fx.http.delete(fx.url(&format!("{GROUP}/users/{id}/"))).bearer_auth(&fx.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v.is_object());
    assert_eq!(fx.get(&format!("{GROUP}/users/{id}")).await.status().as_u16(), 404);
    let r =
        fx.http.delete(fx.url(&format!("{GROUP}/users/{id}/"))).bearer_auth(&fx.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(fx.list_ids(json!({})).await.is_empty());
}

#[tokio::test]
async fn prefixes_and_paths() {
    let fx = Fx::new(ApioConfig::default()).await;
    let r = fx.get("/api/v01/apio/provisioning/gateways").await;
    let v: Value = r.json().await.unwrap();
    let prefix = v["gateways"][0]["prefix"].as_str().unwrap().to_string();
    assert_eq!(prefix, "/api/v01/p1");
    fx.sim.seed(&json!({"userId": "p@example.com", "firstName": "P", "lastName": "Q"})).unwrap();
    for p in [prefix.as_str(), "/api/v1", "/api/v01/apio/sync/api/v1"] {
        let r = fx.get(&format!("{p}/tenants/foo/groups/foogroup/users/")).await;
        assert_eq!(r.status().as_u16(), 200, "{p}");
        assert_eq!(ids(&r.json().await.unwrap()), vec!["p@example.com"]);
    }
    assert_eq!(fx.get("/api/v2/tenants/foo/groups/foogroup/users/").await.status().as_u16(), 404);
    // The current UI lists without the trailing slash, the docs and the older UI with it.
    let r = fx.get(&format!("{GROUP}/users")).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(ids(&r.json().await.unwrap()), vec!["p@example.com"]);
}

#[tokio::test]
async fn simulator_trait() {
    let fx = Fx::new(ApioConfig::default()).await;
    assert_eq!(fx.sim.kind(), "apio");
    let creds = fx.sim.credentials();
    assert_eq!(creds["username"], "sim-admin");
    assert!(creds.contains_key("password") && creds.contains_key("token"));
    let b = fx
        .sim
        .seed(&json!({"userId": "b@example.com", "firstName": "B", "lastName": "B", "extension": "300"}))
        .unwrap();
    let a = fx.sim.seed(&json!({"userId": "a@example.com", "firstName": "A", "lastName": "A"})).unwrap();
    assert!(
        fx.sim
            .seed(&json!({"userId": "x@example.com", "firstName": "X", "lastName": "X", "extension": "300"}))
            .is_err()
    );
    let dump = fx.sim.dump();
    assert_eq!(dump[0]["userId"], a);
    assert_eq!(dump[1]["userId"], b);
    assert_eq!(dump[1]["groupId"], "foogroup");
    let mut patch = Map::new();
    patch.insert("lastName".into(), json!("Drifted"));
    fx.sim.tamper(&b, &patch).unwrap();
    let v: Value = fx.get(&format!("{GROUP}/users/{b}")).await.json().await.unwrap();
    assert_eq!(v["lastName"], "Drifted");
    assert!(fx.sim.tamper("zzz@example.com", &patch).is_err());
    fx.sim.remove(&a).unwrap();
    assert!(fx.sim.remove(&a).is_err());
    assert_eq!(fx.list_ids(json!({})).await, vec![b]);
}

// ---- dialects ---------------------------------------------------------------------------

impl Fx {
    async fn dialect(&self, patch: Value) -> (u16, Value) {
        let r = self.http.put(self.url("/_sim/dialect")).json(&patch).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_dialect_is_shown_changed_and_checked() {
    let fx = Fx::new(ApioConfig::default()).await;
    let shown: Value = fx.http.get(fx.url("/_sim/dialect")).send().await.unwrap().json().await.unwrap();
    // The defaults are the most faithful reading of the evidence.
    assert_eq!(shown["detail_user_id"], false, "BroadWorks' UserGetResponse has no userId");
    assert_eq!(shown["list_shape"], "users");
    assert_eq!(shown["list_user_id_domain"], true, "DISPLAY_USER_ID_WITH_SYSTEM_DEFAULT_DOMAIN");
    assert_eq!(shown["duplicate_status"], 409);
    let (s, v) = fx.dialect(json!({"password_change": "old_new"})).await;
    assert_eq!(s, 200);
    assert_eq!(v["password_change"], "old_new");
    assert_eq!(v["list_shape"], "users", "the other settings stay");
    assert_eq!(fx.dialect(json!({"password_change": "oldNew"})).await.0, 422, "unknown value");
    assert_eq!(fx.dialect(json!({"duplicate_status": 418})).await.0, 422, "400 or 409 only");
    assert_eq!(fx.sim.dialect_now().duplicate_status, 409, "a refused patch changes nothing");
}

#[tokio::test]
async fn a_users_record_carries_user_id_only_in_that_dialect() {
    let fx = Fx::new(ApioConfig::default()).await;
    seed_users(&fx.sim);
    let path = format!("{GROUP}/users/TestAlpha@example.com");
    let (s, v) = fx.get_json(&path).await;
    assert_eq!(s, 200);
    assert!(v.get("userId").is_none(), "as BroadWorks' UserGetResponse: {v}");
    assert_eq!(v["firstName"], "Tom");
    fx.dialect(json!({"detail_user_id": true})).await;
    assert_eq!(fx.get_json(&path).await.1["userId"], "TestAlpha@example.com");
    // The PUT answer is the record too.
    let (s, v) = fx.put("TestAlpha@example.com", json!({"title": "CEO"})).await;
    assert_eq!(s, 200);
    assert_eq!(v["userId"], "TestAlpha@example.com");
}

#[tokio::test]
async fn list_shapes_limits_and_where_criteria_are_read() {
    let fx = Fx::new(ApioConfig::default()).await;
    seed_users(&fx.sim);
    fx.dialect(json!({"list_shape": "bare"})).await;
    let (_, v) = fx.get_json(&format!("{GROUP}/users")).await;
    assert_eq!(v.as_array().map(Vec::len), Some(3), "a bare array: {v}");
    fx.dialect(json!({"list_shape": "users", "size_limit": "ignored"})).await;
    assert_eq!(fx.list_ids(json!({"responseSizeLimit": 1})).await.len(), 3, "the limit is ignored");
    fx.dialect(json!({"size_limit": "honoured"})).await;
    assert_eq!(fx.list_ids(json!({"responseSizeLimit": 1})).await.len(), 1, "and honoured");

    let by_query = format!("{GROUP}/users?insensitiveExtensionEquals=1234");
    let body = json!({"insensitiveExtensionEquals": "1234"});
    fx.dialect(json!({"criteria": "body"})).await;
    assert_eq!(ids(&fx.get_json(&by_query).await.1).len(), 3, "the query string is ignored");
    assert_eq!(fx.list_ids(body.clone()).await, vec!["TestAlpha@example.com"]);
    fx.dialect(json!({"criteria": "query"})).await;
    assert_eq!(ids(&fx.get_json(&by_query).await.1), vec!["TestAlpha@example.com"]);
    assert_eq!(fx.list_ids(body).await.len(), 3, "a GET body is ignored");
}

#[tokio::test]
async fn ids_without_the_default_domain_are_listed_and_followed() {
    let fx = Fx::new(ApioConfig::default()).await;
    seed_users(&fx.sim);
    fx.sim.seed(&json!({"userId": "far@other.org", "firstName": "F", "lastName": "O"})).unwrap();
    fx.dialect(json!({"list_user_id_domain": false})).await;
    let listed = fx.list_ids(json!({})).await;
    assert!(listed.contains(&"TestAlpha".to_owned()), "{listed:?}");
    assert!(listed.contains(&"far@other.org".to_owned()), "only the default domain is left out");
    // BroadWorks takes an id without a domain to be in the system default domain.
    let (s, v) = fx.get_json(&format!("{GROUP}/users/TestAlpha")).await;
    assert_eq!((s, v["firstName"].clone()), (200, json!("Tom")));
    assert_eq!(fx.put("TestAlpha", json!({"title": "CTO"})).await.0, 200);
    let r = fx.http.delete(fx.url(&format!("{GROUP}/users/TestAlpha/"))).bearer_auth(&fx.token).send();
    assert_eq!(r.await.unwrap().status().as_u16(), 200);
    assert!(!fx.sim.dump().as_array().unwrap().iter().any(|u| u["userId"] == "TestAlpha@example.com"));
}

#[tokio::test]
async fn paths_without_the_slash_can_be_redirected() {
    let fx = Fx::new(ApioConfig::default()).await;
    seed_users(&fx.sim);
    fx.dialect(json!({"no_slash": "redirect"})).await;
    let client = crate::http().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client
        .get(fx.url(&format!("{GROUP}/users?responseSizeLimit=1")))
        .bearer_auth(&fx.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 308);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{GROUP}/users/?responseSizeLimit=1"));
    // A client that follows it gets the list, with the query kept.
    assert_eq!(ids(&fx.get_json(&format!("{GROUP}/users?responseSizeLimit=1")).await.1).len(), 1);
    let r = client.get(fx.url(&format!("{GROUP}/users/gamma@example.com"))).bearer_auth(&fx.token).send();
    assert_eq!(r.await.unwrap().status().as_u16(), 308);
    // The slash forms are answered as they are.
    assert_eq!(fx.get(&format!("{GROUP}/users/gamma@example.com/")).await.status().as_u16(), 200);
}

#[tokio::test]
async fn password_keys_follow_the_dialect() {
    let fx = Fx::new(ApioConfig::default()).await;
    fx.sim
        .seed(&json!({"userId": "jane@example.com", "firstName": "Jane", "lastName": "Roe",
                      "password": "First-Pass1"}))
        .unwrap();
    let password = || fx.sim.dump()[0]["password"].as_str().unwrap().to_owned();
    // Both keys (the default): either alone, or both with one value.
    assert_eq!(fx.put("jane@example.com", json!({"password": "Second-Pass2"})).await.0, 200);
    assert_eq!(fx.put("jane@example.com", json!({"newPassword": "Third-Pass3"})).await.0, 200);
    let both = json!({"password": "Fourth-Pass4", "newPassword": "Fourth-Pass4"});
    assert_eq!(fx.put("jane@example.com", both).await.0, 200);
    assert_eq!(password(), "Fourth-Pass4");
    let differ = json!({"password": "Fifth-Pass5", "newPassword": "Other-Pass5"});
    assert_eq!(fx.put("jane@example.com", differ).await.0, 400);

    // The docs: newPassword, with an oldPassword that must be the current one if given.
    fx.dialect(json!({"password_change": "old_new"})).await;
    assert_eq!(fx.put("jane@example.com", json!({"password": "Fifth-Pass5"})).await.0, 400);
    let wrong_old = json!({"oldPassword": "nope", "newPassword": "Fifth-Pass5"});
    assert_eq!(fx.put("jane@example.com", wrong_old).await.0, 400);
    assert_eq!(fx.put("jane@example.com", json!({"oldPassword": "Fourth-Pass4"})).await.0, 400);
    let right_old = json!({"oldPassword": "Fourth-Pass4", "newPassword": "Fifth-Pass5"});
    assert_eq!(fx.put("jane@example.com", right_old).await.0, 200);
    assert_eq!(password(), "Fifth-Pass5");

    // The UI: password; newPassword is unknown, refused or dropped as the dialect says.
    fx.dialect(json!({"password_change": "password"})).await;
    assert_eq!(fx.put("jane@example.com", json!({"newPassword": "Sixth-Pass6"})).await.0, 400);
    fx.dialect(json!({"unknown_fields": "ignore"})).await;
    assert_eq!(fx.put("jane@example.com", json!({"newPassword": "Sixth-Pass6"})).await.0, 200);
    assert_eq!(password(), "Fifth-Pass5", "a dropped field changes nothing");
    // A create is a UserAddRequest: `password` whatever the dialect.
    let (s, _) = fx.create(json!({"firstName": "N", "lastName": "P", "password": "Create-Pass7"})).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn create_answers_duplicates_and_departments_follow_the_dialect() {
    let fx = Fx::new(ApioConfig::default()).await;
    let user = |ext: &str| json!({"firstName": "A", "lastName": "B", "extension": ext});
    let (s, v) = fx.create(user("301")).await;
    assert_eq!(s, 201);
    assert!(v["userId"].is_string(), "the UI reads userId from it: {v}");
    fx.dialect(json!({"create_answer": "user_without_id"})).await;
    let (s, v) = fx.create(user("302")).await;
    assert_eq!(s, 201);
    assert!(v.get("userId").is_none() && v["extension"] == "302", "{v}");
    fx.dialect(json!({"create_answer": "empty"})).await;
    assert_eq!(fx.create(user("303")).await, (201, json!({})));

    assert_eq!(fx.create(user("301")).await.0, 409);
    fx.dialect(json!({"duplicate_status": 400})).await;
    let (s, v) = fx.create(user("301")).await;
    assert_eq!(s, 400);
    assert!(!message(&v).is_empty(), "{v}");

    fx.sim
        .seed(&json!({"userId": "d@example.com", "firstName": "D", "lastName": "E", "extension": "304",
                      "department": {"departmentName": "sales", "tenantId": "foo"}}))
        .unwrap();
    let (_, v) = fx.get_json(&format!("{GROUP}/users/d@example.com")).await;
    assert_eq!(v["department"]["departmentName"], "sales");
    fx.dialect(json!({"department": "name"})).await;
    assert_eq!(fx.get_json(&format!("{GROUP}/users/d@example.com")).await.1["department"], "sales");
    let (_, list) = fx.list(json!({})).await;
    let departments: Vec<&Value> =
        list["users"].as_array().unwrap().iter().map(|u| &u["department"]).collect();
    assert!(departments.contains(&&json!("sales")) && departments.contains(&&json!("")), "{departments:?}");
}
