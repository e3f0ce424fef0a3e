//! The create checks of the Thulium simulator, shared by `POST agents`, `seed` and
//! `tamper`, and the agent they make.

use serde_json::{Map, Value, json};

use super::{ThuliumSim, codes};
use crate::sim::is_valid_email;
use crate::sim::table::{Indexed, Table};

#[derive(Clone, Debug)]
pub(super) struct Agent {
    pub(super) agent_id: u64,
    pub(super) login: String,
    pub(super) name: String,
    pub(super) surname: String,
    pub(super) email: Option<String>,
    pub(super) password: String,
    pub(super) number: u64,
    pub(super) change_password: bool,
    pub(super) callerid: String,
    pub(super) language: String,
    pub(super) active: bool,
    pub(super) outbound_mode: String,
    pub(super) roles: Vec<u64>,
    pub(super) group_id: u64,
}

impl Agent {
    /// The documented `GET agents/:login` shape, with its documented types.
    pub(super) fn public(&self) -> Value {
        json!({
            "agent_id": self.agent_id,
            "login": self.login,
            "name": self.name,
            "surname": self.surname,
            "email": self.email,
            "active": self.active,
            "number": self.number,
            "outbound_mode": self.outbound_mode,
            "group_id": self.group_id,
        })
    }

    pub(super) fn full(&self) -> Value {
        let mut v = self.public();
        if let Value::Object(m) = &mut v {
            m.insert("password".into(), json!(self.password));
            m.insert("change_password".into(), json!(self.change_password));
            m.insert("callerid".into(), json!(self.callerid));
            m.insert("language".into(), json!(self.language));
            m.insert("roles".into(), json!(self.roles));
        }
        v
    }

    /// The agent as a create body, so tamper can re-run the create checks.
    pub(super) fn as_input(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("login".into(), json!(self.login));
        m.insert("name".into(), json!(self.name));
        m.insert("surname".into(), json!(self.surname));
        m.insert("email".into(), json!(self.email));
        m.insert("password".into(), json!(self.password));
        m.insert("number".into(), json!(self.number.to_string()));
        m.insert("change_password".into(), json!(self.change_password));
        m.insert("callerid".into(), json!(self.callerid));
        m.insert("language".into(), json!(self.language));
        m.insert("active".into(), json!(self.active));
        m.insert("outbound_mode".into(), json!(self.outbound_mode));
        m.insert("roles".into(), json!(self.roles));
        m
    }
}

/// Logins compare case-insensitively (ASCII: the only letters a login may hold).
pub(super) fn login_key(login: &str) -> String {
    format!("login:{}", login.to_ascii_lowercase())
}

fn number_key(number: u64) -> String {
    format!("number:{number}")
}

/// Logins and numbers are unique: every create checks both.
impl Indexed for Agent {
    fn keys(&self) -> Vec<String> {
        vec![login_key(&self.login), number_key(self.number)]
    }
}

#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub(super) message: String,
    pub(super) code: u32,
}

pub(super) fn err(code: u32, message: impl Into<String>) -> ApiError {
    ApiError { message: message.into(), code }
}

impl ThuliumSim {
    /// The create checks, shared by the API, `seed` and `tamper` (`exclude` is the agent
    /// being tampered with, so it does not clash with itself).
    pub(super) fn validate(
        &self,
        input: &Map<String, Value>,
        agents: &Table<Agent>,
        exclude: Option<u64>,
    ) -> Result<Agent, Vec<ApiError>> {
        let c = &self.config;
        let mut errors = Vec::new();

        let required_string = |field: &str, errors: &mut Vec<ApiError>| -> Option<String> {
            match input.get(field) {
                None | Some(Value::Null) => {
                    errors.push(err(codes::REQUIRED, format!("Field '{field}' is required.")));
                    None
                }
                Some(Value::String(s)) if s.trim().is_empty() => {
                    errors.push(err(codes::REQUIRED, format!("Field '{field}' is required.")));
                    None
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    errors.push(err(codes::INVALID_VALUE, format!("Field '{field}' must be a string.")));
                    None
                }
            }
        };
        let name = required_string("name", &mut errors);
        let surname = required_string("surname", &mut errors);
        let login = required_string("login", &mut errors);
        let password = required_string("password", &mut errors);
        let number_raw = required_string("number", &mut errors);

        for (field, value) in [("name", &name), ("surname", &surname)] {
            if let Some(v) = value
                && v.chars().count() > c.name_max_len
            {
                errors.push(err(
                    codes::INVALID_VALUE,
                    format!("Field '{field}' must be at most {} characters long.", c.name_max_len),
                ));
            }
        }

        if let Some(l) = &login {
            let ok_chars = l.chars().all(|ch| ch.is_ascii_alphanumeric() || "._@-".contains(ch));
            if !ok_chars || l.len() > c.login_max_len {
                errors.push(err(
                    codes::INVALID_VALUE,
                    format!(
                        "Field 'login' may contain only letters, digits and . _ @ - (at most {} characters).",
                        c.login_max_len
                    ),
                ));
            } else if agents.find_except(&login_key(l), exclude).is_some() {
                errors.push(err(codes::DUPLICATE_LOGIN, format!("Agent with login '{l}' already exists.")));
            }
        }

        let mut number = None;
        if let Some(n) = &number_raw {
            if n.is_empty() || n.len() > c.number_max_digits || !n.chars().all(|ch| ch.is_ascii_digit()) {
                errors.push(err(
                    codes::INVALID_VALUE,
                    format!("Field 'number' must be a string of 1 to {} digits.", c.number_max_digits),
                ));
            } else if let Ok(value) = n.parse::<u64>() {
                if agents.find_except(&number_key(value), exclude).is_some() {
                    errors.push(err(
                        codes::DUPLICATE_NUMBER,
                        format!("Number {value} is already assigned to another agent."),
                    ));
                } else {
                    number = Some(value);
                }
            }
        }

        let email = match input.get("email") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if is_valid_email(s) => Some(s.clone()),
            Some(Value::String(_)) => {
                errors.push(err(codes::INVALID_VALUE, "Field 'email' is not a valid e-mail address."));
                None
            }
            Some(_) => {
                errors.push(err(codes::INVALID_VALUE, "Field 'email' must be a string."));
                None
            }
        };

        let boolean = |field: &str, default: bool, errors: &mut Vec<ApiError>| -> bool {
            match input.get(field) {
                None | Some(Value::Null) => default,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    errors.push(err(codes::INVALID_VALUE, format!("Field '{field}' must be true or false.")));
                    default
                }
            }
        };
        let change_password = boolean("change_password", false, &mut errors);
        let active = boolean("active", true, &mut errors);

        let one_of = |field: &str, allowed: &[String], default: &str, errors: &mut Vec<ApiError>| -> String {
            match input.get(field) {
                None | Some(Value::Null) => default.to_string(),
                Some(Value::String(s)) if allowed.iter().any(|a| a == s) => s.clone(),
                Some(_) => {
                    errors.push(err(
                        codes::INVALID_VALUE,
                        format!("Field '{field}' must be one of: {}.", allowed.join(", ")),
                    ));
                    default.to_string()
                }
            }
        };
        let language = one_of("language", &c.languages, "pl", &mut errors);
        let outbound_mode = one_of("outbound_mode", &c.outbound_modes, "manual", &mut errors);

        let callerid = match input.get("callerid") {
            None | Some(Value::Null) => match (&name, &surname) {
                (Some(n), Some(s)) => {
                    let initial: String = n.trim().chars().take(1).collect();
                    format!("{initial}.{}", s.trim())
                }
                _ => String::new(),
            },
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(_) => {
                errors.push(err(codes::INVALID_VALUE, "Field 'callerid' must be a non-empty string."));
                String::new()
            }
        };

        let mut roles = Vec::new();
        match input.get("roles") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_u64() {
                        Some(id) if c.role_ids.contains(&id) => {
                            if !roles.contains(&id) {
                                roles.push(id);
                            }
                        }
                        Some(id) => {
                            errors.push(err(codes::INVALID_VALUE, format!("Role {id} does not exist.")))
                        }
                        None => errors
                            .push(err(codes::INVALID_VALUE, "Field 'roles' must be an array of role ids.")),
                    }
                }
            }
            Some(_) => errors.push(err(codes::INVALID_VALUE, "Field 'roles' must be an array of role ids.")),
        }

        match (errors.is_empty(), name, surname, login, password, number) {
            (true, Some(name), Some(surname), Some(login), Some(password), Some(number)) => Ok(Agent {
                agent_id: 0,
                login,
                name,
                surname,
                email,
                password,
                number,
                change_password,
                callerid,
                language,
                active,
                outbound_mode,
                roles,
                group_id: c.default_group_id,
            }),
            _ => Err(errors),
        }
    }
}
