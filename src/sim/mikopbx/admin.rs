//! The admin cabinet: the 2024.1 DataTables list (`getNewRecords`) and its 404 page.

use super::*;

impl MikoPbxSim {
    pub(super) fn admin_get_new_records(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Response {
        let op = OpName("getNewRecords");
        let mut resp = self.admin_get_new_records_inner(headers, form);
        resp.extensions_mut().insert(op);
        resp
    }

    pub(super) fn admin_get_new_records_inner(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Response {
        if self.cfg.legacy_release == LegacyRelease::V2023_2 {
            return html(StatusCode::NOT_FOUND, "<html><body>Page not found</body></html>");
        }
        let xhr = is_xhr(headers);
        match self.session_role(headers) {
            None if xhr => {
                return (StatusCode::FORBIDDEN, "This user is not authorized").into_response();
            }
            None => {
                return (StatusCode::FOUND, [(header::LOCATION, "/admin-cabinet/session/index")])
                    .into_response();
            }
            Some(role) if !role.allows("getNewRecords") => {
                return (StatusCode::FORBIDDEN, "This user is not authorized").into_response();
            }
            Some(_) => {}
        }
        if !xhr {
            return html(StatusCode::OK, "<html><body><table id=\"extensions-table\"></table></body></html>");
        }
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let search = get("search[value]").to_lowercase();
        let st = lock(&self.state);
        let s = &st.store;
        let all = s.all_records();
        let mut rows: Vec<&Record> = all
            .iter()
            .filter(|r| r.id.is_some())
            .filter(|r| {
                search.is_empty()
                    || [&r.user_username, &r.number, &r.user_email]
                        .iter()
                        .any(|v| v.to_lowercase().contains(&search))
                    || r.mobile_number().contains(&search)
            })
            .collect();
        let column = get(&format!("columns[{}][data]", get("order[0][column]")));
        let key = |r: &Record| -> String {
            match column {
                "username" => r.user_username.clone(),
                "mobile" => r.mobile_number().to_string(),
                "email" => r.user_email.clone(),
                _ => r.number.clone(),
            }
        };
        rows.sort_by_cached_key(|r| key(r));
        if get("order[0][dir]").eq_ignore_ascii_case("desc") {
            rows.reverse();
        }
        let filtered = rows.len();
        let start = usize::try_from(php_int(get("start"))).unwrap_or(0);
        let length = usize::try_from(php_int(get("length"))).ok().filter(|l| *l > 0).unwrap_or(usize::MAX);
        let data: Vec<Value> = rows
            .iter()
            .skip(start)
            .take(length)
            .map(|r| {
                let id = r.id.map(|i| i.to_string()).unwrap_or_default();
                let disabled = r.sip_disabled == "1";
                json!({
                    "id": id,
                    "username": r.user_username,
                    "number": r.number,
                    "mobile": r.mobile_number(),
                    "user_id": r.user_id.map(|u| u.to_string()).unwrap_or_default(),
                    "disabled": disabled,
                    "email": r.user_email,
                    "type": "SIP",
                    "avatar": if r.user_avatar.is_empty() { DEFAULT_AVATAR } else { r.user_avatar.as_str() },
                    "DT_RowId": id,
                    "DT_RowClass": if disabled { "extension-row disabled" } else { "extension-row" },
                })
            })
            .collect();
        axum::Json(json!({"draw": php_int(get("draw")), "recordsFiltered": filtered, "data": data}))
            .into_response()
    }
}

pub(super) async fn get_new_records(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let form = if content_type(&headers).starts_with("application/x-www-form-urlencoded") {
        crate::sim::form_pairs(&body).into_iter().collect()
    } else {
        HashMap::new()
    };
    sim.admin_get_new_records(&headers, &form)
}

pub(super) async fn admin_not_found() -> Response {
    html(StatusCode::NOT_FOUND, "<html><body>Page not found</body></html>")
}
