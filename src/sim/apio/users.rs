//! Creating, reading, updating and deleting users, with the rules BroadWorks enforces.

use super::{
    dialect::{CreateAnswer, PasswordChange, UnknownFields},
    table::Key,
    *,
};

/// Fields accepted in a create or update body (the aliases are normalised first).
const STRING_FIELDS: &[&str] = &[
    "userId",
    "firstName",
    "lastName",
    "cliFirstName",
    "cliLastName",
    "extension",
    "phoneNumber",
    "emailAddress",
    "language",
    "timeZone",
    "title",
    "mobilePhoneNumber",
];
const OBJECT_FIELDS: &[&str] = &["department", "trunkEndpoint", "accessDeviceEndpoint"];
const REQUIRED_FIELDS: &[&str] = &["firstName", "lastName", "cliFirstName", "cliLastName"];

impl ApioSim {
    fn render_user_id(
        &self,
        rng: &mut StdRng,
        tenant: &str,
        group: &str,
        body: &Map<String, Value>,
    ) -> Result<String, ApiErr> {
        let rule = &self.cfg.user_id_rule;
        let mut out = String::new();
        let mut rest = rule.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| ApiErr::bad("USER_ID_RULE is malformed"))?;
            let name = after[..end].trim();
            if let Some(n) = name.strip_prefix("RND_") {
                let n: usize =
                    n.parse().map_err(|_| ApiErr::bad(format!("USER_ID_RULE: bad variable {name}")))?;
                for _ in 0..n {
                    out.push(char::from(b'0' + rng.random_range(0..10u8)));
                }
            } else {
                let v = match name {
                    "group_id" => group.to_string(),
                    "tenant_id" => tenant.to_string(),
                    "domain" => self.cfg.domain.clone(),
                    "phone_number_e164" => match body.get("phoneNumber").and_then(Value::as_str) {
                        Some(p) if !p.is_empty() => p.to_string(),
                        _ => {
                            return Err(ApiErr::bad(
                                "Cannot generate the user id: the rule needs a phone number",
                            ));
                        }
                    },
                    _ => {
                        return Err(ApiErr::bad(format!(
                            "Cannot generate the user id: unsupported variable {name}"
                        )));
                    }
                };
                out.push_str(&v);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn generate_password(&self, rng: &mut StdRng) -> String {
        const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
        const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
        const DIGITS: &[u8] = b"23456789";
        let r = &self.cfg.generated_password_rule;
        let pick = |set: &[u8], rng: &mut StdRng| char::from(set[rng.random_range(0..set.len())]);
        let mut chars = Vec::new();
        for (set, n) in [
            (UPPER, r.min_uppercase.max(self.cfg.local_password_rule.min_uppercase)),
            (LOWER, r.min_lowercase.max(self.cfg.local_password_rule.min_lowercase)),
            (DIGITS, r.min_digits.max(self.cfg.local_password_rule.min_digits)),
            (SPECIALS, r.min_special.max(self.cfg.local_password_rule.min_special)),
        ] {
            for _ in 0..n {
                chars.push(pick(set, rng));
            }
        }
        let all: Vec<u8> = [UPPER, LOWER, DIGITS].concat();
        let len = GENERATED_PASSWORD_LEN.max(r.min_length).max(self.cfg.local_password_rule.min_length);
        while chars.len() < len {
            chars.push(pick(&all, rng));
        }
        chars.shuffle(rng);
        chars.into_iter().collect()
    }

    fn check_password(&self, password: &str) -> Result<(), ApiErr> {
        let rule = if self.cfg.validate_password_local_rule {
            &self.cfg.local_password_rule
        } else {
            // Without the local rule the AS still refuses what it cannot store.
            &PasswordRule {
                min_length: 1,
                max_length: self.cfg.local_password_rule.max_length,
                min_uppercase: 0,
                min_lowercase: 0,
                min_digits: 0,
                min_special: 0,
            }
        };
        rule.check(password).map_err(ApiErr::bad)
    }

    /// Validates one provided field and returns the value to store.
    fn check_field(&self, k: &str, v: &Value) -> Result<Value, ApiErr> {
        if OBJECT_FIELDS.contains(&k) {
            let Value::Object(m) = v else {
                return Err(ApiErr::bad(format!("{k} must be an object")));
            };
            if k == "department" {
                match m.get("departmentName") {
                    Some(Value::String(n)) if !n.is_empty() => {}
                    _ => return Err(ApiErr::bad("department.departmentName is required")),
                }
            }
            return Ok(v.clone());
        }
        let Value::String(s) = v else {
            return Err(ApiErr::bad(format!("{k} must be a string")));
        };
        let len = s.chars().count();
        match k {
            "firstName" | "lastName" | "cliFirstName" | "cliLastName" => {
                if len == 0 || len > NAME_MAX {
                    return Err(ApiErr::bad(format!("{k} must be between 1 and {NAME_MAX} characters")));
                }
                if k.starts_with("cli") && s.chars().any(|c| CLI_FORBIDDEN.contains(&c) || !c.is_ascii()) {
                    return Err(ApiErr::bad(format!(
                        "{k} must not contain %, +, \\, \" or extended ASCII characters"
                    )));
                }
            }
            "extension" => {
                let (lo, hi) = (self.cfg.extension_min_len, self.cfg.extension_max_len);
                if !s.is_empty() && (!s.chars().all(|c| c.is_ascii_digit()) || len < lo || len > hi) {
                    return Err(ApiErr::bad(format!(
                        "Invalid extension {s}: it must be {lo} to {hi} digits"
                    )));
                }
            }
            "phoneNumber" | "mobilePhoneNumber" => {
                let digits = s.strip_prefix('+').unwrap_or(s);
                if !s.is_empty()
                    && (!digits.chars().all(|c| c.is_ascii_digit()) || !(3..=15).contains(&digits.len()))
                {
                    return Err(ApiErr::bad(format!("Invalid phone number {s}")));
                }
            }
            "emailAddress" if !s.is_empty() && (len > EMAIL_MAX || !valid_email(s)) => {
                return Err(ApiErr::bad(format!("Invalid email address {s}")));
            }
            "language" if !self.cfg.languages.iter().any(|l| l == s) => {
                return Err(ApiErr::bad(format!("Unknown language {s}")));
            }
            "title" if len > TITLE_MAX => {
                return Err(ApiErr::bad(format!("title must be at most {TITLE_MAX} characters")));
            }
            _ => {}
        }
        Ok(v.clone())
    }

    /// Renames the documented aliases (`callingLineId*` for `cli*`; on an update,
    /// `newPassword` for `password` where the dialect takes it) and refuses or drops, as
    /// the dialect says, the fields the API does not know.
    fn normalise(
        body: &Map<String, Value>,
        creating: bool,
        dialect: &ApioDialect,
    ) -> Result<Map<String, Value>, ApiErr> {
        // A create is a `UserAddRequest`, whose field is `password`; an update is a
        // `UserModifyRequest` (`newPassword`, `oldPassword`) behind APIO's own mapping.
        let (plain, old_new) = match (creating, dialect.password_change) {
            (true, _) => (true, false),
            (false, PasswordChange::Both) => (true, true),
            (false, PasswordChange::Password) => (true, false),
            (false, PasswordChange::OldNew) => (false, true),
        };
        let mut out = Map::new();
        for (k, v) in body {
            let key = match k.as_str() {
                "callingLineIdFirstName" => "cliFirstName",
                "callingLineIdLastName" => "cliLastName",
                "templateName" if creating => "templateName",
                "password" if plain => "password",
                "newPassword" if old_new => "password",
                "oldPassword" if old_new => "oldPassword",
                k if STRING_FIELDS.contains(&k) || OBJECT_FIELDS.contains(&k) => k,
                _ => match dialect.unknown_fields {
                    UnknownFields::Reject => return Err(ApiErr::bad(format!("Unknown field: {k}"))),
                    UnknownFields::Ignore => continue,
                },
            };
            if let Some(prev) = out.get(key)
                && prev != v
            {
                return Err(ApiErr::bad(format!(
                    "{k} conflicts with another field naming the same property"
                )));
            }
            out.insert(key.to_string(), v.clone());
        }
        Ok(out)
    }

    fn check_unique(inner: &Inner, user: &User, exclude: Option<&str>) -> Result<(), ApiErr> {
        let id = user.str_field("userId");
        if Some(id) != exclude && inner.users.get(id).is_some() {
            return Err(ApiErr::conflict(format!("User {id} already exists")));
        }
        match inner.users.taken(user, exclude) {
            None => Ok(()),
            Some(Key::Extension { extension, group, .. }) => {
                Err(ApiErr::conflict(format!("Extension {extension} is already assigned in group {group}")))
            }
            Some(Key::System { value, .. }) => {
                Err(ApiErr::conflict(format!("Phone number {value} is already assigned")))
            }
        }
    }

    fn cross_checks(fields: &Map<String, Value>) -> Result<(), ApiErr> {
        let set = |k: &str| fields.get(k).is_some_and(|v| !v.is_null());
        if set("trunkEndpoint") && set("accessDeviceEndpoint") {
            return Err(ApiErr::bad("accessDeviceEndpoint and trunkEndpoint are mutually exclusive"));
        }
        Ok(())
    }

    pub(super) fn create_user(
        &self,
        inner: &mut Inner,
        tenant: &str,
        group: &str,
        body: &Map<String, Value>,
        hidden: bool,
    ) -> Result<User, ApiErr> {
        self.group_exists(tenant, group)?;
        let body = Self::normalise(body, true, &self.dialect_now())?;
        let mut fields = Map::new();
        for (k, v) in &body {
            if v.is_null() || k == "templateName" || k == "password" {
                continue;
            }
            fields.insert(k.clone(), self.check_field(k, v)?);
        }
        if let Some(t) = body.get("templateName") {
            let ok = t.as_str().is_some_and(|t| self.cfg.templates.iter().any(|c| c == t));
            if !ok {
                return Err(ApiErr::bad(format!("Unknown user template {t}")));
            }
        }
        for (cli, name) in [("cliFirstName", "firstName"), ("cliLastName", "lastName")] {
            if !fields.contains_key(cli)
                && let Some(v) = fields.get(name).cloned()
            {
                fields.insert(cli.into(), self.check_field(cli, &v)?);
            }
        }
        for k in REQUIRED_FIELDS {
            if !fields.contains_key(*k) {
                return Err(ApiErr::bad(format!("Missing required field: {k}")));
            }
        }
        fields.entry("language").or_insert_with(|| json!(self.cfg.default_language));
        Self::cross_checks(&fields)?;
        let password = match body.get("password") {
            Some(Value::String(p)) => {
                self.check_password(p)?;
                p.clone()
            }
            None | Some(Value::Null) => self.generate_password(&mut inner.rng),
            Some(_) => return Err(ApiErr::bad("password must be a string")),
        };
        let mut user =
            User { tenant: tenant.to_string(), group: group.to_string(), hidden, password, fields };
        match user.fields.get("userId").and_then(Value::as_str) {
            Some(id) => {
                let id = if id.contains('@') { id.to_string() } else { format!("{id}@{}", self.cfg.domain) };
                let local = id.split('@').next().unwrap_or("");
                if local.is_empty()
                    || id.chars().count() > USER_ID_MAX
                    || id.chars().any(char::is_whitespace)
                    || id.contains('/')
                {
                    return Err(ApiErr::bad(format!("Invalid userId {id}")));
                }
                user.fields.insert("userId".into(), json!(id));
                Self::check_unique(inner, &user, None)?;
            }
            None => {
                // RND collisions are retried; a rule without randomness collides for good.
                let mut attempt = 0;
                loop {
                    let id = self.render_user_id(&mut inner.rng, tenant, group, &body)?;
                    user.fields.insert("userId".into(), json!(id));
                    match Self::check_unique(inner, &user, None) {
                        Ok(()) => break,
                        Err(e) if attempt >= 50 || !self.cfg.user_id_rule.contains("RND_") => {
                            return Err(e);
                        }
                        Err(_) => attempt += 1,
                    }
                }
            }
        }
        let id = user.str_field("userId").to_string();
        inner.users.insert(id, user.clone());
        Ok(user)
    }

    fn update_user(
        &self,
        inner: &mut Inner,
        tenant: &str,
        group: &str,
        user_id: &str,
        body: &Map<String, Value>,
    ) -> Result<User, ApiErr> {
        self.group_exists(tenant, group)?;
        let mut user = match inner.users.get(user_id) {
            Some(u) if u.tenant == tenant && u.group == group => u.clone(),
            _ => return Err(ApiErr::not_found(format!("User {user_id} not found"))),
        };
        let body = Self::normalise(body, false, &self.dialect_now())?;
        // OCI: "When oldPassword is specified, all password rule applies"; it proves the
        // caller knows the password it replaces, and means nothing without a new one.
        if let Some(old) = body.get("oldPassword") {
            if !body.contains_key("password") {
                return Err(ApiErr::bad("oldPassword is only taken with newPassword"));
            }
            if old.as_str() != Some(user.password.as_str()) {
                return Err(ApiErr::bad("oldPassword is not the user's current password"));
            }
        }
        for (k, v) in &body {
            match (k.as_str(), v) {
                ("oldPassword", _) => {}
                ("userId", v) => {
                    if v.as_str() != Some(user_id) {
                        return Err(ApiErr::bad("userId cannot be changed"));
                    }
                }
                ("password", Value::String(p)) => {
                    self.check_password(p)?;
                    user.password = p.clone();
                }
                ("password", _) => return Err(ApiErr::bad("password must be a string")),
                (k, Value::Null) => {
                    if REQUIRED_FIELDS.contains(&k) || k == "language" {
                        return Err(ApiErr::bad(format!("{k} cannot be removed")));
                    }
                    user.fields.remove(k);
                }
                (k, v) => {
                    let v = self.check_field(k, v)?;
                    user.fields.insert(k.to_string(), v);
                }
            }
        }
        Self::cross_checks(&user.fields)?;
        Self::check_unique(inner, &user, Some(user_id))?;
        inner.users.insert(user_id.to_string(), user.clone());
        Ok(user)
    }
}

pub(super) async fn create_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("createUser", auth_error(msg));
    }
    let res = (|| {
        if !is_json(&headers) {
            return Err(ApiErr(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a JSON body (Content-Type: application/json)".into(),
            ));
        }
        let m = json_object(&body).map_err(ApiErr::bad)?;
        let mut inner = lock(&sim.inner);
        sim.create_user(&mut inner, &tenant, &group, &m, false)
    })();
    let dialect = sim.dialect_now();
    let answer = |user: &User, with_id: bool| {
        let mut m = user.full_view();
        if !with_id {
            m.remove("userId");
        }
        department_view(&mut m, &dialect);
        Value::Object(m)
    };
    match res {
        Ok(u) => {
            let body = match dialect.create_answer {
                CreateAnswer::User => answer(&u, true),
                CreateAnswer::UserWithoutId => answer(&u, false),
                CreateAnswer::Empty => json!({}),
            };
            named("createUser", (StatusCode::CREATED, axum::Json(body)))
        }
        Err(e) => named("createUser", e.duplicate_as(dialect.duplicate_status)),
    }
}

pub(super) async fn get_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group, user_id)): Path<(String, String, String)>,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("getUser", auth_error(msg));
    }
    if let Err(e) = sim.group_exists(&tenant, &group) {
        return named("getUser", e);
    }
    let dialect = sim.dialect_now();
    let inner = lock(&sim.inner);
    match inner.users.get(&sim.resolve_id(&user_id)) {
        Some(u) if u.tenant == tenant && u.group == group => {
            named("getUser", axum::Json(u.api_view(&dialect)))
        }
        _ => named("getUser", ApiErr::not_found(format!("User {user_id} not found"))),
    }
}

pub(super) async fn update_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group, user_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("updateUser", auth_error(msg));
    }
    let res = (|| {
        if !is_json(&headers) {
            return Err(ApiErr(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a JSON body (Content-Type: application/json)".into(),
            ));
        }
        let m = json_object(&body).map_err(ApiErr::bad)?;
        let mut inner = lock(&sim.inner);
        sim.update_user(&mut inner, &tenant, &group, &sim.resolve_id(&user_id), &m)
    })();
    let dialect = sim.dialect_now();
    match res {
        Ok(u) => named("updateUser", axum::Json(u.api_view(&dialect))),
        Err(e) => named("updateUser", e.duplicate_as(dialect.duplicate_status)),
    }
}

pub(super) async fn delete_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group, user_id)): Path<(String, String, String)>,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("deleteUser", auth_error(msg));
    }
    if let Err(e) = sim.group_exists(&tenant, &group) {
        return named("deleteUser", e);
    }
    let user_id = sim.resolve_id(&user_id);
    let mut inner = lock(&sim.inner);
    match inner.users.get(&user_id) {
        Some(u) if u.tenant == tenant && u.group == group => {
            inner.users.remove(&user_id);
            named("deleteUser", axum::Json(json!({})))
        }
        _ => named("deleteUser", ApiErr::not_found(format!("User {user_id} not found"))),
    }
}
