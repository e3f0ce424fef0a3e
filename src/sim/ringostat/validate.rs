//! The addStaff checks of the Ringostat simulator, shared by the API, `seed` and
//! `tamper`, and the employee they make.

use serde_json::{Map, Value, json};

use super::{RingostatSim, Store, codes};
use crate::sim::is_valid_email;
use crate::sim::table::Indexed;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
    Sip,
    Phone,
}

#[derive(Clone, Debug)]
pub(super) struct Direction {
    pub(super) kind: Kind,
    pub(super) direction: String,
    pub(super) password: Option<String>,
    pub(super) enabled_for_awd: bool,
    pub(super) is_mobile: bool,
}

impl Direction {
    pub(super) fn to_json(&self, with_secret: bool) -> Value {
        let mut m = Map::new();
        let kind = if self.kind == Kind::Sip { "sip" } else { "phone" };
        m.insert("type".into(), json!(kind));
        m.insert("direction".into(), json!(self.direction));
        if with_secret && let Some(p) = &self.password {
            m.insert("password".into(), json!(p));
        }
        m.insert("enabledForAwd".into(), json!(self.enabled_for_awd));
        m.insert("isMobile".into(), json!(self.is_mobile));
        Value::Object(m)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Staff {
    pub(super) staff_id: u64,
    pub(super) creator_id: String,
    pub(super) access: String,
    pub(super) fio: String,
    pub(super) email: String,
    pub(super) extension: String,
    pub(super) main: Vec<Direction>,
    pub(super) additional: Vec<Direction>,
    pub(super) departments: Option<Vec<String>>,
    pub(super) power_dialer: bool,
}

impl Staff {
    pub(super) fn directions_json(&self, with_secret: bool) -> Value {
        json!({
            "main": self.main.iter().map(|d| d.to_json(with_secret)).collect::<Vec<_>>(),
            "additional": self.additional.iter().map(|d| d.to_json(with_secret)).collect::<Vec<_>>(),
        })
    }

    /// The addStaff params this employee would be created with.
    pub(super) fn as_params(&self, project_id: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("projectId".into(), json!(project_id));
        m.insert("creatorId".into(), json!(self.creator_id));
        m.insert("access".into(), json!(self.access));
        m.insert("fio".into(), json!(self.fio));
        m.insert("email".into(), json!(self.email));
        m.insert("extensionNumber".into(), json!(self.extension));
        m.insert("directions".into(), self.directions_json(true));
        m.insert("departments".into(), json!(self.departments));
        m.insert("isHasAccessToPowerDialer".into(), json!(self.power_dialer));
        m
    }

    pub(super) fn sip_logins(&self) -> impl Iterator<Item = &str> {
        self.main.iter().chain(&self.additional).filter(|d| d.kind == Kind::Sip).map(|d| d.direction.as_str())
    }
}

/// A JSON-RPC failure before or during a call.
#[derive(Debug)]
pub(super) struct RpcError {
    pub(super) code: i64,
    pub(super) message: String,
    pub(super) data: Option<Value>,
}

pub(super) fn rpc_err(code: i64, message: impl Into<String>) -> RpcError {
    RpcError { code, message: message.into(), data: None }
}

/// Collects rule violations, so one answer lists all of them.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) structural: Vec<(String, String)>,
    pub(super) rules: Vec<(String, String)>,
    pub(super) clashes: Vec<(String, String)>,
}

impl Problems {
    pub(super) fn param(&mut self, field: &str, message: impl Into<String>) {
        self.structural.push((field.to_string(), message.into()));
    }
    pub(super) fn rule(&mut self, field: &str, message: impl Into<String>) {
        self.rules.push((field.to_string(), message.into()));
    }
    pub(super) fn clash(&mut self, field: &str, message: impl Into<String>) {
        self.clashes.push((field.to_string(), message.into()));
    }

    /// Wrong shape first (the call is malformed), then rule violations, then clashes with
    /// existing employees; the answer's message is the first problem of that class.
    pub(super) fn into_error(self) -> Option<RpcError> {
        let (code, list) = if !self.structural.is_empty() {
            (codes::INVALID_PARAMS, self.structural)
        } else if !self.rules.is_empty() {
            (codes::VALIDATION, self.rules)
        } else if !self.clashes.is_empty() {
            (codes::DUPLICATE, self.clashes)
        } else {
            return None;
        };
        let message = list.first().map(|(_, m)| m.clone()).unwrap_or_default();
        let errors: Vec<Value> =
            list.into_iter().map(|(field, message)| json!({"field": field, "message": message})).collect();
        Some(RpcError { code, message, data: Some(json!({"errors": errors})) })
    }
}

pub(super) fn string_param(params: &Map<String, Value>, field: &str, p: &mut Problems) -> Option<String> {
    match params.get(field) {
        None | Some(Value::Null) => {
            p.param(field, format!("Parameter '{field}' is required"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.param(field, format!("Parameter '{field}' must be a string"));
            None
        }
    }
}

pub(super) fn bool_field(obj: &Map<String, Value>, field: &str, label: &str, p: &mut Problems) -> bool {
    match obj.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.param(label, format!("'{label}' must be a boolean"));
            false
        }
    }
}

pub(super) fn is_fio(s: &str) -> bool {
    s.chars().all(|c| c.is_alphabetic() || c == ' ') && s.chars().any(char::is_alphabetic)
}

pub(super) fn is_phone(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn is_sip_login(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl RingostatSim {
    fn directions(&self, list: &[Value], section: &str, p: &mut Problems) -> Vec<Direction> {
        let c = &self.config;
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let label = format!("directions.{section}[{i}]");
            let Value::Object(obj) = item else {
                p.param(&label, format!("'{label}' must be an object"));
                continue;
            };
            let kind = match obj.get("type") {
                Some(Value::String(t)) if t == "sip" => Some(Kind::Sip),
                Some(Value::String(t)) if t == "phone" => Some(Kind::Phone),
                Some(Value::String(t)) => {
                    p.rule(&label, format!("Unknown direction type '{t}' (expected sip or phone)"));
                    None
                }
                _ => {
                    p.param(&label, format!("'{label}.type' is required"));
                    None
                }
            };
            let direction = match obj.get("direction") {
                Some(Value::String(d)) => Some(d.clone()),
                _ => {
                    p.param(&label, format!("'{label}.direction' must be a string"));
                    None
                }
            };
            let enabled_for_awd = bool_field(obj, "enabledForAwd", &format!("{label}.enabledForAwd"), p);
            let is_mobile = bool_field(obj, "isMobile", &format!("{label}.isMobile"), p);
            let mut password = None;
            match (&kind, &direction) {
                (Some(Kind::Sip), Some(d)) => {
                    if !is_sip_login(d) {
                        p.rule(&label, format!("Invalid SIP login '{d}'"));
                    }
                    match obj.get("password") {
                        Some(Value::String(pw)) if pw.chars().count() >= c.sip_password_min_len => {
                            password = Some(pw.clone());
                        }
                        Some(Value::String(_)) => p.rule(
                            &label,
                            format!(
                                "SIP password must be at least {} characters long",
                                c.sip_password_min_len
                            ),
                        ),
                        _ => p.param(&label, format!("'{label}.password' is required for a SIP account")),
                    }
                }
                (Some(Kind::Phone), Some(d)) if !is_phone(d) => {
                    p.rule(&label, format!("Invalid phone number '{d}'"));
                }
                _ => {}
            }
            if let (Some(kind), Some(direction)) = (kind, direction) {
                out.push(Direction { kind, direction, password, enabled_for_awd, is_mobile });
            }
        }
        out
    }

    /// The addStaff checks, shared by the API, `seed` and `tamper` (`exclude` is the
    /// employee being tampered with).
    pub(super) fn validate(
        &self,
        params: &Map<String, Value>,
        store: &Store,
        exclude: Option<u64>,
    ) -> Result<Staff, RpcError> {
        let c = &self.config;
        let mut p = Problems::default();

        let project_id = string_param(params, "projectId", &mut p);
        let creator_id = string_param(params, "creatorId", &mut p);
        let access = string_param(params, "access", &mut p);
        let fio = string_param(params, "fio", &mut p).map(|f| f.trim().to_string());
        let email = string_param(params, "email", &mut p);
        let extension = string_param(params, "extensionNumber", &mut p);

        if let Some(project) = &project_id
            && project != &c.project_id
        {
            return Err(rpc_err(codes::FORBIDDEN, format!("Access to project {project} denied")));
        }
        let staff = &store.staff;
        if let Some(creator) = &creator_id {
            let known = creator == &c.creator_id
                || creator.parse::<u64>().ok().and_then(|id| staff.get(&id)).is_some_and(|s| {
                    Some(s.staff_id) != exclude && s.staff_id.to_string() == *creator && s.access == "1"
                });
            if !known {
                p.rule("creatorId", format!("Creator {creator} is not an administrator of this project"));
            }
        }
        if let Some(a) = &access
            && !c.access_levels.contains(a)
        {
            p.rule("access", format!("Invalid access level '{a}' (allowed: {})", c.access_levels.join(", ")));
        }
        if let Some(f) = &fio {
            if !is_fio(f) {
                p.rule("fio", "Name may contain only letters and spaces");
            } else if f.chars().count() > c.fio_max_len {
                p.rule("fio", format!("Name must be at most {} characters long", c.fio_max_len));
            } else if self.current().fio_unique && staff.find_except(&name_key(f), exclude).is_some() {
                p.clash("fio", format!("An employee named {f} already exists"));
            }
        }
        if let Some(e) = &email {
            if !is_valid_email(e) {
                p.rule("email", "Invalid email format");
            } else if staff.find_except(&email_key(e), exclude).is_some() {
                p.clash("email", format!("Email {e} is already used by another employee"));
            }
        }
        if let Some(x) = &extension {
            let digits = x.len();
            if digits < c.extension_min_digits
                || digits > c.extension_max_digits
                || !x.chars().all(|ch| ch.is_ascii_digit())
            {
                p.rule(
                    "extensionNumber",
                    format!(
                        "Internal number must be {}-{} digits",
                        c.extension_min_digits, c.extension_max_digits
                    ),
                );
            } else if staff.find_except(&extension_key(x), exclude).is_some() {
                p.clash("extensionNumber", format!("Internal number {x} is already in use"));
            }
        }

        let (mut main, mut additional) = (Vec::new(), Vec::new());
        match params.get("directions") {
            Some(Value::Object(d)) => {
                match d.get("main") {
                    Some(Value::Array(list)) => main = self.directions(list, "main", &mut p),
                    _ => p.param("directions", "'directions.main' must be an array"),
                }
                match d.get("additional") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(list)) => additional = self.directions(list, "additional", &mut p),
                    Some(_) => p.param("directions", "'directions.additional' must be an array"),
                }
            }
            None | Some(Value::Null) => p.param("directions", "Parameter 'directions' is required"),
            Some(_) => p.param("directions", "Parameter 'directions' must be an object"),
        }
        let count = |list: &[Direction], kind: Kind| list.iter().filter(|d| d.kind == kind).count();
        if main.len() + additional.len() > c.max_directions {
            p.rule("directions", format!("A maximum of {} directions per employee", c.max_directions));
        }
        for (n, max, what) in [
            (count(&main, Kind::Sip), c.max_sip_main, "SIP accounts in the main directions"),
            (count(&additional, Kind::Sip), c.max_sip_additional, "SIP accounts in additional directions"),
            (count(&main, Kind::Phone), c.max_phones_main, "phone numbers in the main directions"),
            (
                count(&additional, Kind::Phone),
                c.max_phones_additional,
                "phone numbers in additional directions",
            ),
        ] {
            if n > max {
                p.rule("directions", format!("A maximum of {max} {what}"));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for d in main.iter().chain(&additional).filter(|d| d.kind == Kind::Sip) {
            if seen.contains(&d.direction.as_str()) {
                p.rule("directions", format!("SIP account {} is listed twice", d.direction));
            } else if staff.find_except(&sip_key(&d.direction), exclude).is_some() {
                p.clash("directions", format!("SIP account {} already exists", d.direction));
            }
            seen.push(&d.direction);
        }

        let departments = match params.get("departments") {
            None => {
                p.param("departments", "Parameter 'departments' is required (it may be null)");
                None
            }
            Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(name) => {
                            match c.departments.iter().find(|d| d.to_lowercase() == name.to_lowercase()) {
                                Some(canonical) => {
                                    if !names.contains(canonical) {
                                        names.push(canonical.clone());
                                    }
                                }
                                None => p.rule("departments", format!("Department '{name}' not found")),
                            }
                        }
                        None => p.param("departments", "'departments' must be an array of names"),
                    }
                }
                Some(names)
            }
            Some(_) => {
                p.param("departments", "'departments' must be an array of names or null");
                None
            }
        };
        let power_dialer = bool_field(params, "isHasAccessToPowerDialer", "isHasAccessToPowerDialer", &mut p);

        if let Some(error) = p.into_error() {
            return Err(error);
        }
        match (creator_id, access, fio, email, extension) {
            (Some(creator_id), Some(access), Some(fio), Some(email), Some(extension)) => Ok(Staff {
                staff_id: 0,
                creator_id,
                access,
                fio,
                email,
                extension,
                main,
                additional,
                departments,
                power_dialer,
            }),
            _ => Err(rpc_err(codes::INVALID_PARAMS, "Invalid params")),
        }
    }
}

/// Names compare case-insensitively in any alphabet.
fn name_key(fio: &str) -> String {
    let mut key = String::from("fio:");
    key.extend(fio.chars().flat_map(char::to_lowercase));
    key
}

/// E-mails compare ASCII-case-insensitively.
fn email_key(email: &str) -> String {
    format!("email:{}", email.to_ascii_lowercase())
}

fn extension_key(extension: &str) -> String {
    format!("ext:{extension}")
}

fn sip_key(login: &str) -> String {
    format!("sip:{login}")
}

/// What the create checks look an employee up by. Names are unique only in one dialect,
/// so a key may be held by several.
impl Indexed for Staff {
    fn keys(&self) -> Vec<String> {
        let mut keys = vec![name_key(&self.fio), email_key(&self.email), extension_key(&self.extension)];
        keys.extend(self.sip_logins().map(sip_key));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::name_key;

    #[test]
    fn names_match_whatever_their_case_in_any_alphabet() {
        assert_eq!(name_key("Ivan Petrenko"), name_key("ivan PETRENKO"));
        assert_eq!(name_key("Иван Петренко"), name_key("иван ПЕТРЕНКО"));
        assert_ne!(name_key("Иван Петренко"), name_key("Иван Петренк"));
        assert_ne!(name_key("Ivan"), name_key("Ivana"));
    }
}
