//! The internal-number-level users (`/user/extension/`).

use super::*;

impl TelphinSim {
    /// Validates the user fields present in `body` (create or update).
    pub(super) fn check_user_fields(
        &self,
        inner: &Inner,
        client_id: u64,
        body: &Map<String, Value>,
        allowed: &[&str],
        self_id: Option<u64>,
    ) -> Result<(), ApiErr> {
        for (k, v) in body {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiErr::invalid(format!("Unknown field: {k}")));
            }
            match k.as_str() {
                "name" => match v.as_str() {
                    Some(s) if !s.trim().is_empty() && s.chars().count() <= NAME_MAX => {}
                    _ => {
                        return Err(ApiErr::invalid(format!(
                            "name must be a non-empty string of at most {NAME_MAX} characters"
                        )));
                    }
                },
                "extension_id" => {
                    let id = v.as_u64().ok_or_else(|| ApiErr::invalid("extension_id must be an integer"))?;
                    let ours = inner
                        .extensions
                        .get(&id)
                        .is_some_and(|e| e.get("client_id") == Some(&json!(client_id)));
                    if !ours {
                        return Err(ApiErr(
                            StatusCode::BAD_REQUEST,
                            Some("extension_not_found"),
                            format!("Extension {id} not found"),
                        ));
                    }
                }
                "login" => {
                    let s = v.as_str().ok_or_else(|| ApiErr::invalid("login must be a string"))?;
                    let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
                    if !ok_chars || !(LOGIN_MIN..=LOGIN_MAX).contains(&s.len()) {
                        return Err(ApiErr::invalid(format!(
                            "login must be {LOGIN_MIN} to {LOGIN_MAX} characters of A-Z a-z 0-9 . _ @ + -"
                        )));
                    }
                    let lower = s.to_lowercase();
                    let holders = inner.logins.ids(&lower, || user_logins(&inner.users));
                    let taken = holders.iter().any(|id| Some(*id) != self_id);
                    if taken {
                        return Err(ApiErr(
                            StatusCode::BAD_REQUEST,
                            Some("already_exists"),
                            format!("Login {s} already exists"),
                        ));
                    }
                }
                "password" => {
                    let n = v
                        .as_str()
                        .ok_or_else(|| ApiErr::invalid("password must be a string"))?
                        .chars()
                        .count();
                    if n < self.cfg.min_password_len || n > PASSWORD_MAX {
                        return Err(ApiErr::invalid(format!(
                            "password must be {} to {PASSWORD_MAX} characters",
                            self.cfg.min_password_len
                        )));
                    }
                }
                "email" | "email_for_notify" => match v {
                    Value::String(s) if valid_email(s) => {}
                    Value::Null if k == "email_for_notify" => {}
                    _ => {
                        return Err(ApiErr::invalid(format!("{k} is not a valid e-mail address")));
                    }
                },
                "status" => Self::check_enum(k, v, STATUSES)?,
                "access" => Self::check_enum(k, v, ACCESSES)?,
                "timezone" => match v.as_str() {
                    Some(s) if !s.trim().is_empty() => {}
                    _ => return Err(ApiErr::invalid("timezone must be a non-empty string")),
                },
                "email_notify" => {
                    if !v.is_boolean() {
                        return Err(ApiErr::invalid("email_notify must be a boolean"));
                    }
                }
                _ => self.check_text(k, v)?,
            }
        }
        Ok(())
    }

    pub(super) fn create_user(
        &self,
        inner: &mut Inner,
        client_id: u64,
        body: &Map<String, Value>,
    ) -> Result<(u64, Map<String, Value>), ApiErr> {
        for k in ["name", "extension_id", "login", "password", "email"] {
            if body.get(k).is_none_or(Value::is_null) {
                return Err(ApiErr::invalid(format!("{k} is required")));
            }
        }
        self.check_user_fields(inner, client_id, body, USER_CREATE_FIELDS, None)?;
        let id = inner.next_user;
        inner.next_user += 1;
        let field = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
        let mut fields = Map::new();
        fields.insert("id".into(), json!(id));
        for k in ["name", "login", "email", "extension_id"] {
            fields.insert(k.into(), field(k, Value::Null));
        }
        fields.insert("status".into(), field("status", json!("active")));
        fields.insert("access".into(), field("access", json!("full")));
        fields.insert("timezone".into(), field("timezone", json!(self.cfg.default_timezone)));
        fields.insert("comment".into(), field("comment", Value::Null));
        fields.insert("extra_params".into(), field("extra_params", Value::Null));
        let password = body.get("password").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(login) = fields.get("login").and_then(Value::as_str) {
            inner.logins.added(login.to_lowercase(), id);
        }
        inner.users.insert(id, ExtUser { password, fields: fields.clone() });
        Ok((id, fields))
    }

    pub(super) fn update_user(
        &self,
        inner: &mut Inner,
        client_id: u64,
        id: u64,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiErr> {
        if !inner.users.contains_key(&id) {
            return Err(ApiErr::not_found());
        }
        if let Some(k) = ["name", "extension_id", "password", "email", "status", "access", "timezone"]
            .into_iter()
            .find(|k| body.get(*k).is_some_and(Value::is_null))
        {
            return Err(ApiErr::invalid(format!("{k} cannot be null")));
        }
        self.check_user_fields(inner, client_id, body, USER_UPDATE_FIELDS, Some(id))?;
        inner.logins.drop_index();
        let user = inner.users.get_mut(&id).ok_or_else(ApiErr::not_found)?;
        for (k, v) in body {
            if k == "password" {
                user.password = v.as_str().unwrap_or_default().to_string();
            } else {
                user.fields.insert(k.clone(), v.clone());
            }
        }
        Ok(user.fields.clone())
    }
}

pub(super) fn user_logins(users: &BTreeMap<u64, ExtUser>) -> Vec<(String, u64)> {
    users.iter().filter_map(|(id, u)| Some((u.fields.get("login")?.as_str()?.to_lowercase(), *id))).collect()
}

pub(super) async fn list_users(State(sim): Sim, Path(cid): Path<String>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let dialect = sim.dialect_now();
        let q = ListQuery::parse(q.as_deref(), USER_FILTERS, &sim.cfg, &dialect)?;
        let inner = lock(&sim.inner);
        let client = json!(client);
        let own = |u: &&ExtUser| {
            u.fields
                .get("extension_id")
                .and_then(Value::as_u64)
                .and_then(|e| inner.extensions.get(&e))
                .is_some_and(|e| e.get("client_id") == Some(&client))
        };
        let items = inner.users.values().filter(own).filter(|u| q.matches(&u.fields, |_, _| false));
        Ok::<_, ApiErr>(q.answer(items, |u| Value::Object(shown(&u.fields, &dialect)), dialect.list_shape))
    })();
    match res {
        Ok(v) => named("listUsers", axum::Json(v)),
        Err(e) => named("listUsers", e),
    }
}

pub(super) async fn create_user(
    State(sim): Sim,
    Path(cid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        sim.create_user(&mut inner, client, &m)
    })();
    match res {
        Ok((_, u)) => named("createUser", (StatusCode::CREATED, axum::Json(sim.shown(&u)))),
        Err(e) => named("createUser", e),
    }
}

pub(super) fn own_user(sim: &TelphinSim, cid: &str, uid: &str) -> Result<(u64, u64), ApiErr> {
    let client = sim.resolve_client(cid)?;
    let id = uid.parse::<u64>().map_err(|_| ApiErr::not_found())?;
    let inner = lock(&sim.inner);
    let ours = inner
        .users
        .get(&id)
        .and_then(|u| u.fields.get("extension_id"))
        .and_then(Value::as_u64)
        .and_then(|e| inner.extensions.get(&e))
        .is_some_and(|e| e.get("client_id") == Some(&json!(client)));
    if ours { Ok((client, id)) } else { Err(ApiErr::not_found()) }
}

pub(super) async fn get_user(State(sim): Sim, Path((cid, uid)): Path<(String, String)>) -> Response {
    let res = own_user(&sim, &cid, &uid)
        .map(|(_, id)| lock(&sim.inner).users.get(&id).map(|u| sim.shown(&u.fields)).unwrap_or_default());
    match res {
        Ok(u) => named("getUser", axum::Json(u)),
        Err(e) => named("getUser", e),
    }
}

pub(super) async fn update_user(
    State(sim): Sim,
    Path((cid, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let (client, id) = own_user(&sim, &cid, &uid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        sim.update_user(&mut inner, client, id, &m)
    })();
    match res {
        Ok(u) => named("updateUser", axum::Json(sim.shown(&u))),
        Err(e) => named("updateUser", e),
    }
}

pub(super) async fn delete_user(State(sim): Sim, Path((cid, uid)): Path<(String, String)>) -> Response {
    let res = own_user(&sim, &cid, &uid).map(|(_, id)| {
        let mut inner = lock(&sim.inner);
        inner.users.remove(&id);
        inner.logins.drop_index();
    });
    match res {
        Ok(()) => named("deleteUser", StatusCode::NO_CONTENT),
        Err(e) => named("deleteUser", e),
    }
}

/// A user as the dialect shows it: an unset `extra_params` as `null`, `"null"`, or left
/// out.
pub(super) fn shown(fields: &Map<String, Value>, dialect: &Dialect) -> Map<String, Value> {
    let mut out = fields.clone();
    if out.get("extra_params").is_none_or(Value::is_null) {
        match dialect.unset_extra_params {
            UnsetExtra::Null => {
                out.insert("extra_params".into(), Value::Null);
            }
            UnsetExtra::TextNull => {
                out.insert("extra_params".into(), json!("null"));
            }
            UnsetExtra::Absent => {
                out.remove("extra_params");
            }
        }
    }
    out
}

impl TelphinSim {
    pub(super) fn shown(&self, fields: &Map<String, Value>) -> Map<String, Value> {
        shown(fields, &self.dialect_now())
    }
}
