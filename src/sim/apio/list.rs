//! The group user list: search criteria and `responseSizeLimit`.

use super::{
    dialect::{Criteria, ListShape, SizeLimit},
    *,
};

const LIST_CRITERIA: &[&str] = &[
    "sensitiveUserIdStarts",
    "sensitiveUserIdContains",
    "sensitiveUserIdEquals",
    "insensitiveUserIdStarts",
    "insensitiveUserIdContains",
    "insensitiveUserIdEquals",
    "sensitiveUserLastNameStarts",
    "sensitiveUserLastNameContains",
    "sensitiveUserLastNameEquals",
    "insensitiveUserLastNameStarts",
    "insensitiveUserLastNameContains",
    "insensitiveUserLastNameEquals",
    "sensitiveUserFirstNameStarts",
    "sensitiveUserFirstNameContains",
    "sensitiveUserFirstNameEquals",
    "insensitiveUserFirstNameStarts",
    "insensitiveUserFirstNameContains",
    "insensitiveUserFirstNameEquals",
    "insensitivePhoneNumberStarts",
    "insensitivePhoneNumberContains",
    "insensitivePhoneNumberEquals",
    "sensitiveEmailAddressStarts",
    "sensitiveEmailAddressContains",
    "sensitiveEmailAddressEquals",
    "insensitiveEmailAddressStarts",
    "insensitiveEmailAddressContains",
    "insensitiveEmailAddressEquals",
    "insensitiveExtensionStarts",
    "insensitiveExtensionContains",
    "insensitiveExtensionEquals",
    "insensitiveUserInTrunkGroupEquals",
    "sensitiveDepartmentEquals",
    // Not in the seed's table, but its own list example sends it ("username" = user id).
    "sensitiveUserNameContains",
];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Starts,
    Contains,
    Equals,
}

#[derive(Debug)]
enum Criterion {
    Text { field: &'static str, mode: Mode, sensitive: bool, value: String },
    Department(Map<String, Value>),
}

impl Criterion {
    fn parse(name: &str, value: &Value) -> Result<Self, ApiErr> {
        if !LIST_CRITERIA.contains(&name) {
            return Err(ApiErr::bad(format!("Unknown search criterion: {name}")));
        }
        if name == "sensitiveDepartmentEquals" {
            return match value {
                Value::Object(m) => Ok(Criterion::Department(m.clone())),
                // A query string can only carry the department name.
                Value::String(s) => {
                    Ok(Criterion::Department(Map::from_iter([("departmentName".to_string(), json!(s))])))
                }
                _ => Err(ApiErr::bad(format!("{name} must be an object"))),
            };
        }
        let Value::String(value) = value else {
            return Err(ApiErr::bad(format!("{name} must be a string")));
        };
        let (sensitive, rest) = match name.strip_prefix("insensitive") {
            Some(r) => (false, r),
            None => (true, name.strip_prefix("sensitive").unwrap_or(name)),
        };
        let (mode, subject) = if let Some(s) = rest.strip_suffix("Starts") {
            (Mode::Starts, s)
        } else if let Some(s) = rest.strip_suffix("Contains") {
            (Mode::Contains, s)
        } else {
            (Mode::Equals, rest.strip_suffix("Equals").unwrap_or(rest))
        };
        let field = match subject {
            "UserId" | "UserName" => "userId",
            "UserLastName" => "lastName",
            "UserFirstName" => "firstName",
            "PhoneNumber" => "phoneNumber",
            "EmailAddress" => "emailAddress",
            "Extension" => "extension",
            _ => "inTrunkGroup",
        };
        Ok(Criterion::Text { field, mode, sensitive, value: value.clone() })
    }

    fn matches(&self, u: &User) -> bool {
        match self {
            Criterion::Department(want) => {
                let Some(Value::Object(have)) = u.fields.get("department") else {
                    return false;
                };
                want.iter().all(|(k, v)| have.get(k) == Some(v))
            }
            Criterion::Text { field, mode, sensitive, value } => {
                let have = if *field == "inTrunkGroup" {
                    u.in_trunk_group().to_string()
                } else {
                    u.str_field(field).to_string()
                };
                let (have, want) = if *sensitive {
                    (have, value.clone())
                } else {
                    (have.to_lowercase(), value.to_lowercase())
                };
                match mode {
                    Mode::Starts => have.starts_with(&want),
                    Mode::Contains => have.contains(&want),
                    Mode::Equals => have == want,
                }
            }
        }
    }
}

impl ApioSim {
    fn list_users(
        &self,
        tenant: &str,
        group: &str,
        raw_query: Option<&str>,
        body: &[u8],
    ) -> Result<Value, ApiErr> {
        self.group_exists(tenant, group)?;
        let dialect = self.dialect_now();
        // A source the dialect does not read is ignored, not refused: a server that reads
        // no GET body never sees one, and one that reads no query string never parses it.
        let (read_body, read_query) = match dialect.criteria {
            Criteria::Both => (true, true),
            Criteria::Body => (true, false),
            Criteria::Query => (false, true),
        };
        let mut given: Vec<(String, Value)> = Vec::new();
        if read_body && !body.iter().all(u8::is_ascii_whitespace) {
            let m = json_object(body).map_err(ApiErr::bad)?;
            given.extend(m);
        }
        if read_query {
            given.extend(
                crate::sim::form_pairs(raw_query.unwrap_or("").as_bytes())
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v))),
            );
        }
        let mut seen = BTreeSet::new();
        let mut criteria = Vec::new();
        let mut limit: Option<usize> = None;
        let mut include_hidden = false;
        for (k, v) in &given {
            if !seen.insert(k.as_str()) {
                return Err(ApiErr::bad(format!("{k} given more than once")));
            }
            match k.as_str() {
                "responseSizeLimit" => {
                    let n = match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    };
                    match n {
                        Some(n) if n >= 1 => limit = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                        _ => {
                            return Err(ApiErr::bad("responseSizeLimit must be an integer greater than 0"));
                        }
                    }
                }
                "includeHiddenUsers" => {
                    include_hidden = match v {
                        Value::Bool(b) => *b,
                        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                        _ => return Err(ApiErr::bad("includeHiddenUsers must be a boolean")),
                    }
                }
                _ => criteria.push(Criterion::parse(k, v)?),
            }
        }
        let inner = lock(&self.inner);
        let users: Vec<Value> = inner
            .users
            .values()
            .filter(|u| u.tenant == tenant && u.group == group)
            .filter(|u| include_hidden || !u.hidden)
            .filter(|u| criteria.iter().all(|c| c.matches(u)))
            .take(match dialect.size_limit {
                SizeLimit::Honoured => limit.unwrap_or(usize::MAX),
                SizeLimit::Ignored => usize::MAX,
            })
            .map(|u| u.list_view(&dialect, &self.cfg.domain))
            .collect();
        Ok(match dialect.list_shape {
            ListShape::Users => json!({ "users": users }),
            ListShape::Bare => Value::Array(users),
        })
    }
}

pub(super) async fn list_users(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("listUsers", auth_error(msg));
    }
    match sim.list_users(&tenant, &group, query.as_deref(), &body) {
        Ok(v) => named("listUsers", axum::Json(v)),
        Err(e) => named("listUsers", e),
    }
}
