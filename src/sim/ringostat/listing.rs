//! The Ringostat simulator's `getProjectStaffListAndDirections`: the filters and every
//! answer shape of [`Dialect`].

use serde_json::{Map, Value, json};

use super::{
    RingostatSim, codes,
    dialect::{Access, Departments, Dialect, Empty, Fio, ResultShape},
    validate::{Direction, Kind, Problems, RpcError, Staff, bool_field, rpc_err, string_param},
};
use crate::sim::lock;

impl RingostatSim {
    fn list_item(&self, s: &Staff, dialect: &Dialect) -> Value {
        let phones = |list: &[Direction]| -> Vec<String> {
            list.iter().filter(|d| d.kind == Kind::Phone).map(|d| d.direction.clone()).collect()
        };
        let sip: Vec<Value> = s
            .main
            .iter()
            .map(|d| (d, true))
            .chain(s.additional.iter().map(|d| (d, false)))
            .filter(|(d, _)| d.kind == Kind::Sip)
            .map(|(d, main)| json!({"login": d.direction, "online": false, "main": main}))
            .collect();
        let departments: Vec<Value> = s
            .departments
            .iter()
            .flatten()
            .map(|name| {
                let id = self.config.departments.iter().position(|d| d == name).map_or(0, |i| i + 1);
                match dialect.departments {
                    Departments::Objects => json!({"id": id, "name": name}),
                    Departments::Names => json!(name),
                    Departments::Ids => json!(id),
                }
            })
            .collect();
        let access = match dialect.access {
            Access::String => json!(s.access),
            Access::Number => s.access.parse::<u64>().map_or_else(|_| json!(s.access), |n| json!(n)),
            Access::Word => json!(match s.access.as_str() {
                "1" => "admin",
                "2" => "analyst",
                "4" => "manager",
                other => other,
            }),
        };
        let mut item = json!({
            "id": s.staff_id,
            "staffId": s.staff_id,
            "fio": s.fio,
            "email": s.email,
            "extensionNumber": s.extension,
            "access": access,
            "phones": {"main": phones(&s.main), "additional": phones(&s.additional)},
            "sip": sip,
            "directions": s.directions_json(false),
            "departments": departments,
            "isHasAccessToPowerDialer": s.power_dialer,
        });
        if let (Fio::Absent, Value::Object(m)) = (dialect.fio, &mut item) {
            m.remove("fio");
        }
        item
    }

    pub(super) fn list(&self, params: &Map<String, Value>, dialect: &Dialect) -> Result<Value, RpcError> {
        let mut p = Problems::default();
        if let Some(project) = string_param(params, "projectId", &mut p)
            && project != self.config.project_id
        {
            return Err(rpc_err(codes::FORBIDDEN, format!("Access to project {project} denied")));
        }
        bool_field(params, "departmentsFullFormat", "departmentsFullFormat", &mut p);
        let (mut staff_id, mut fio, mut email) = (None, None, None);
        match params.get("filters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(f)) => {
                match f.get("staffId") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => staff_id = Some(s.clone()),
                    Some(Value::Number(n)) => staff_id = Some(n.to_string()),
                    Some(_) => p.param("filters.staffId", "'filters.staffId' must be a string or a number"),
                }
                for (key, slot) in [("fio", &mut fio), ("email", &mut email)] {
                    match f.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => *slot = Some(s.to_lowercase()),
                        Some(_) => p.param(key, format!("'filters.{key}' must be a string")),
                    }
                }
            }
            Some(_) => p.param("filters", "'filters' must be an object"),
        }
        if let Some(error) = p.into_error() {
            return Err(error);
        }
        let store = lock(&self.state);
        let found: Vec<&Staff> = store
            .staff
            .values()
            .filter(|s| staff_id.as_ref().is_none_or(|id| s.staff_id.to_string() == *id))
            .filter(|s| fio.as_ref().is_none_or(|f| contains_lowercase(&s.fio, f)))
            .filter(|s| email.as_ref().is_none_or(|e| contains_lowercase(&s.email, e)))
            .collect();
        let filtered = staff_id.is_some() || fio.is_some() || email.is_some();
        let empty_is_error = self.config.empty_list_is_error && dialect.empty == Empty::Error;
        if found.is_empty() && (filtered || empty_is_error) {
            return Err(rpc_err(dialect.error_codes.code(codes::NOT_FOUND), "User does not exist"));
        }
        Ok(match dialect.result {
            ResultShape::Keyed => Value::Object(
                found.into_iter().map(|s| (s.staff_id.to_string(), self.list_item(s, dialect))).collect(),
            ),
            ResultShape::Array => {
                Value::Array(found.into_iter().map(|s| self.list_item(s, dialect)).collect())
            }
        })
    }
}

/// Whether `text`, lowercased, contains `needle` (already lowercase); ASCII text is
/// compared in place rather than copied once per staff member and lookup.
fn contains_lowercase(text: &str, needle: &str) -> bool {
    if !text.is_ascii() {
        return text.to_lowercase().contains(needle);
    }
    let needle = needle.as_bytes();
    needle.is_empty() || text.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
